/* File helpers shared by the readers and the writers.
 *
 * Reading: every file that comes from a user (checkpoints, configs, images, label files, shards,
 * kernel sources, cache entries) is opened with O_NONBLOCK and checked with fstat before a byte
 * is read, so that a FIFO, a device or a socket is refused at once rather than waited on.
 *
 * Writing: outputs are written to a temporary name and renamed into place; a device, FIFO,
 * socket or folder at the output path is refused before anything is written; temporaries are
 * known to the signal handlers (util/guard.h) and leftovers of dead processes are removed. */
#ifndef PCV_FILEUTIL_H
#define PCV_FILEUTIL_H

#include "perceiver/perceiver.h"

#include <stdio.h>
#include <sys/stat.h>

/* Writes all n bytes (retrying on EINTR); 0 or -1 with errno set. */
int pcv_write_all(int fd, const void *p, size_t n);

/* Opens path read-only without blocking (a FIFO's open returns at once), checks with fstat that it
 * is a regular file (kind names what it should be, "a config file", for the messages), then makes
 * the descriptor blocking again. *sb receives the file's stat. */
int pcv_open_regular(const char *path, const char *kind, int *fd, struct stat *sb, pcv_error *err);
/* The same as a stdio stream ("rb"). */
FILE *pcv_fopen_regular(const char *path, const char *kind, pcv_error *err);

/* Refuses an output path that exists and is not a regular file (a device such as /dev/null, a
 * FIFO, a socket or a folder): writing there would replace it. 0 when path is absent or a regular
 * file (a symbolic link counts as what it points to). */
int pcv_check_output(const char *path, pcv_error *err);

/* Writes a file atomically: fn(fd, ctx) fills "<path>.tmp.<pid>", which is fsync'ed and renamed
 * over path. path must be absent or a regular file (pcv_check_output). On any failure, and on
 * SIGINT/SIGTERM/SIGHUP when the signal handlers are installed, the temporary file is removed and
 * path is left untouched. Temporaries "<path>.tmp.<pid>" of processes that no longer run are
 * removed first. fn returns 0, or -1 with errno set. */
typedef int (*pcv_write_fn)(int fd, void *ctx);
int pcv_write_atomic(const char *path, pcv_write_fn fn, void *ctx, pcv_error *err);

/* Removes the leftovers of dead processes next to path, owned by this user: files
 * "<path>.tmp.<pid>" and, with partial_dirs, folders "<path>.partial-<pid>" (with the files in
 * them) whose pid is not a running process. */
void pcv_remove_stale(const char *path, bool partial_dirs);

/* Maps a whole regular file read-only (opened as pcv_open_regular does). kind names what the file
 * should be ("a safetensors file") in the messages. The mapping is registered so that a SIGBUS
 * in it (the file was truncated while mapped) is reported naming the file (util/guard.h).
 * Release with pcv_unmap_file. */
int pcv_map_file(const char *path, const char *kind, void **map, size_t *size, pcv_error *err);
void pcv_unmap_file(void *map, size_t size);

/* Reads a whole regular file of at most max_bytes into a malloc'd, NUL-terminated buffer. The
 * file is opened without blocking and checked with fstat before anything is read, so a FIFO or
 * device is refused rather than waited on; kind names what the file should be ("a config
 * file") in the messages. */
int pcv_read_file(const char *path, const char *kind, size_t max_bytes, char **out, size_t *len, pcv_error *err);

/* A per-user cache folder: creates path and its missing parents with mode 0700, then checks that
 * it is a folder owned by this user that nobody else can write into (a folder of another user,
 * or one writable by group or others, e.g. a shared /tmp/pocl, could hold planted files). 0 when
 * it is; PCV_ERR_IO when it cannot be created or written; PCV_ERR_INPUT ("refused") when it is
 * not private. kind names it in messages ("the kernel cache folder"). */
int pcv_private_dir(const char *path, const char *kind, pcv_error *err);

/* A folder written as a whole: files go into "<dir>.partial-<pid>", which becomes dir by one
 * rename when dir does not exist yet, or whose files replace dir's one by one (each atomically;
 * the replaced files are restored if a later one fails) when it does. Everything about the
 * destination is checked before anything is written: dir is absent or a folder, and each file
 * of the list is absent or a regular file. On failure or on a signal nothing is left. */
typedef struct pcv_outdir {
    char dir[4096];
    char tmp[4096 + 32];
    const char *const *files;
    int nfiles;
    bool existed;
    int slot;      /* guard registration of tmp */
    int slots[32]; /* and of the files in it */
    int nslots;
} pcv_outdir;
int pcv_outdir_begin(pcv_outdir *o, const char *dir, const char *const *files, int nfiles, pcv_error *err);
/* "<tmp>/<file>" (where the caller writes file), or "" if it does not fit. */
void pcv_outdir_path(const pcv_outdir *o, const char *file, char *buf, size_t cap);
int pcv_outdir_commit(pcv_outdir *o, pcv_error *err);
void pcv_outdir_abort(pcv_outdir *o);

#endif
