/* Small file helpers shared by the writers. */
#ifndef PCV_FILEUTIL_H
#define PCV_FILEUTIL_H

#include "perceiver/perceiver.h"

/* Writes all n bytes (retrying on EINTR); 0 or -1 with errno set. */
int pcv_write_all(int fd, const void *p, size_t n);

/* Writes a file atomically: fn(fd, ctx) fills "<path>.tmp.<pid>", which is fsync'ed and renamed
 * over path. On any failure the temporary file is removed and path is left untouched.
 * fn returns 0, or -1 with errno set. */
typedef int (*pcv_write_fn)(int fd, void *ctx);
int pcv_write_atomic(const char *path, pcv_write_fn fn, void *ctx, pcv_error *err);

/* Maps a whole regular file read-only. kind names what the file should be ("a safetensors
 * file") in the messages for directories and empty files. Unmap with munmap(*map, *size). */
int pcv_map_file(const char *path, const char *kind, void **map, size_t *size, pcv_error *err);

/* Reads a whole regular file of at most max_bytes into a malloc'd, NUL-terminated buffer. The
 * file is opened without blocking and checked with fstat before anything is read, so a FIFO or
 * device is refused rather than waited on; kind names what the file should be ("a config
 * file") in the messages. */
int pcv_read_file(const char *path, const char *kind, size_t max_bytes, char **out, size_t *len, pcv_error *err);

#endif
