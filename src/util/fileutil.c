#include "util/fileutil.h"
#include "util/error.h"
#include "util/guard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int pcv_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- reading ---------------------------------------------------------------------------------- */

static const char *file_type(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    return "not a regular file";
}

int pcv_open_regular(const char *path, const char *kind, int *out, struct stat *sb, pcv_error *err)
{
    *out = -1;
    /* O_NONBLOCK: the open of a FIFO with no writer returns at once instead of waiting; O_NOCTTY:
     * a terminal never becomes our controlling terminal. Neither changes a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int rc = 0;
    if (fstat(fd, sb) != 0)
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb->st_mode))
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: is a directory, not %s", path, kind);
    else if (!S_ISREG(sb->st_mode))
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: not a regular file (%s; %s expected)", path, file_type(sb->st_mode),
                           kind);
    else {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
            rc = pcv_set_error(err, PCV_ERR_IO, "%s: fcntl: %s", path, strerror(errno));
    }
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

FILE *pcv_fopen_regular(const char *path, const char *kind, pcv_error *err)
{
    int fd;
    struct stat sb;
    if (pcv_open_regular(path, kind, &fd, &sb, err))
        return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        pcv_set_error(err, PCV_ERR_IO, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

int pcv_map_file(const char *path, const char *kind, void **map, size_t *size, pcv_error *err)
{
    int fd;
    struct stat sb;
    int rc = pcv_open_regular(path, kind, &fd, &sb, err);
    if (rc)
        return rc;
    if (sb.st_size == 0)
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: file is empty (not %s)", path, kind);
    else if ((uintmax_t)sb.st_size > SIZE_MAX)
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: file too large to map", path);
    if (rc) {
        close(fd);
        return rc;
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot mmap: %s", path, strerror(e));
    pcv_map_track(m, (size_t)sb.st_size, path);
    *map = m;
    *size = (size_t)sb.st_size;
    return 0;
}

void pcv_unmap_file(void *map, size_t size)
{
    if (!map)
        return;
    pcv_map_untrack(map);
    munmap(map, size);
}

int pcv_read_file(const char *path, const char *kind, size_t max_bytes, char **out, size_t *out_len, pcv_error *err)
{
    *out = NULL;
    *out_len = 0;
    int fd;
    struct stat sb;
    int rc = pcv_open_regular(path, kind, &fd, &sb, err);
    if (rc)
        return rc;
    if ((unsigned long long)sb.st_size > max_bytes)
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: %lld bytes is too large for %s (limit %zu bytes)", path,
                           (long long)sb.st_size, kind, max_bytes);
    char *buf = rc ? NULL : malloc((size_t)sb.st_size + 1);
    if (!rc && !buf)
        rc = pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", path);
    size_t len = 0;
    while (!rc && len < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + len, (size_t)sb.st_size - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = pcv_set_error(err, PCV_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        else if (r == 0)
            break; /* shrank while reading: use what was read */
        else
            len += (size_t)r;
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

/* ---- writing ---------------------------------------------------------------------------------- */

int pcv_check_output(const char *path, pcv_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return pcv_set_error(err, PCV_ERR_IO, "%s: is %s; refusing to replace it with an output file (write to a "
                             "regular file path instead)", path, S_ISDIR(sb.st_mode) ? "a directory"
                                                                                  : file_type(sb.st_mode));
    return 0;
}

/* Splits path into its folder (".", "/" or the part before the last slash) and base name. */
static void split_path(const char *path, char *dir, size_t dcap, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, dcap, ".");
        *base = path;
    } else {
        snprintf(dir, dcap, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        *base = slash + 1;
    }
}

/* Best effort: make the rename durable. */
static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static void fsync_parent_dir(const char *path)
{
    char dir[4096];
    const char *base;
    split_path(path, dir, sizeof dir, &base);
    fsync_dir(dir);
}

/* true when name is "<base><sep><pid>" for a pid that is not a running process (and not ours) */
static bool stale_name(const char *name, const char *base, const char *sep)
{
    size_t bl = strlen(base), sl = strlen(sep);
    if (strncmp(name, base, bl) != 0 || strncmp(name + bl, sep, sl) != 0)
        return false;
    const char *d = name + bl + sl;
    if (!*d || strlen(d) > 10)
        return false;
    long pid = 0;
    for (const char *p = d; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        pid = pid * 10 + (*p - '0');
    }
    if (pid <= 0 || pid == (long)getpid() || pid > 0x7fffffffL)
        return false;
    /* ESRCH: no such process. EPERM means it runs (as another user): not ours to remove. */
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Removes a folder holding regular files only (what a partial output folder is); anything else in
 * it (a subfolder) leaves the folder in place. */
static void remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char p[4096 + 512];
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
                struct stat sb;
                if (lstat(p, &sb) == 0 && !S_ISDIR(sb.st_mode))
                    unlink(p);
            }
        closedir(d);
    }
    rmdir(dir);
}

/* The names in one folder that look like leftovers of dead processes ("*.tmp.<pid>",
 * "*.partial-<pid>"), found by one scan per folder and process: writing many files into one folder
 * (a flow sequence) then costs one scan, not one per file. */
static struct {
    char dir[4096];
    char **names;
    size_t n;
    bool valid;
} g_stale;

static bool dead_pid_suffix(const char *name)
{
    const char *t = strrchr(name, '.'), *q = strrchr(name, '-');
    const char *digits = NULL;
    if (t && t - name >= 4 && !strncmp(t - 4, ".tmp", 4))
        digits = t + 1;
    else if (q && q - name >= 8 && !strncmp(q - 8, ".partial", 8))
        digits = q + 1;
    if (!digits || !*digits || strlen(digits) > 10)
        return false;
    long pid = 0;
    for (const char *c = digits; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        pid = pid * 10 + (*c - '0');
    }
    return pid > 0 && pid != (long)getpid() && pid <= 0x7fffffffL && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static void stale_scan(const char *dir)
{
    for (size_t i = 0; i < g_stale.n; i++)
        free(g_stale.names[i]);
    free(g_stale.names);
    memset(&g_stale, 0, sizeof g_stale);
    snprintf(g_stale.dir, sizeof g_stale.dir, "%s", dir);
    g_stale.valid = true;
    DIR *d = opendir(dir);
    size_t cap = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!dead_pid_suffix(de->d_name))
            continue;
        if (g_stale.n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            char **q = realloc(g_stale.names, nc * sizeof *q);
            if (!q)
                break;
            g_stale.names = q;
            cap = nc;
        }
        if ((g_stale.names[g_stale.n] = strdup(de->d_name)))
            g_stale.n++;
    }
    if (d)
        closedir(d);
}

void pcv_remove_stale(const char *path, bool partial_dirs)
{
    char dir[4096];
    const char *base;
    split_path(path, dir, sizeof dir, &base);
    if (!*base)
        return;
    if (!g_stale.valid || strcmp(g_stale.dir, dir) != 0)
        stale_scan(dir);
    char p[4096 + 512];
    for (size_t i = 0; i < g_stale.n; i++) {
        const char *name = g_stale.names[i];
        if (!name)
            continue;
        bool tmpfile = stale_name(name, base, ".tmp.");
        bool partial = partial_dirs && !tmpfile && stale_name(name, base, ".partial-");
        if (!tmpfile && !partial)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && sb.st_uid == geteuid()) {
            if (tmpfile && S_ISREG(sb.st_mode))
                unlink(p);
            else if (partial && S_ISDIR(sb.st_mode))
                remove_flat_dir(p);
        }
        free(g_stale.names[i]);
        g_stale.names[i] = NULL;
    }
}

int pcv_write_atomic(const char *path, pcv_write_fn fn, void *ctx, pcv_error *err)
{
    int rc = pcv_check_output(path, err);
    if (rc)
        return rc;
    pcv_remove_stale(path, false);
    size_t cap = strlen(path) + 32;
    char *tmp = malloc(cap);
    if (!tmp)
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", path);
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    int slot = pcv_tmp_track(tmp, false);
    int fd = open(tmp, flags, 0644);
    if (fd < 0 && errno == EEXIST) { /* leftover of an earlier process with our pid */
        struct stat sb;
        if (lstat(tmp, &sb) == 0 && S_ISREG(sb.st_mode))
            unlink(tmp);
        fd = open(tmp, flags, 0644);
    }
    if (fd < 0) {
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        pcv_tmp_untrack(slot);
        free(tmp);
        return rc;
    }
    int failed = fn(fd, ctx) != 0 || fsync(fd) != 0;
    int e = errno;
    if (close(fd) != 0 && !failed) {
        failed = 1;
        e = errno;
    }
    if (!failed && (rc = pcv_check_output(path, err)) != 0) { /* replaced by a device meanwhile */
        unlink(tmp);
        pcv_tmp_untrack(slot);
        free(tmp);
        return rc;
    }
    if (!failed && rename(tmp, path) != 0) {
        failed = 1;
        e = errno;
    }
    if (failed) {
        unlink(tmp);
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    } else {
        fsync_parent_dir(path);
    }
    pcv_tmp_untrack(slot);
    free(tmp);
    return rc;
}

/* ---- private folders --------------------------------------------------------------------------- */

int pcv_private_dir(const char *path, const char *kind, pcv_error *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return pcv_set_error(err, PCV_ERR_IO, "%s: bad folder name for %s", path, kind);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++)
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return pcv_set_error(err, PCV_ERR_IO, "%s: cannot create %s: %s", buf, kind, strerror(errno));
            buf[i] = c;
        }
    struct stat sb;
    if (stat(path, &sb) != 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: %s: %s", path, kind, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return pcv_set_error(err, PCV_ERR_IO, "%s: %s is %s, not a folder", path, kind, file_type(sb.st_mode));
    if (sb.st_uid != geteuid())
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: refusing %s owned by another user (uid %ld, not %ld): files "
                             "planted there could be loaded; use a folder of your own", path, kind,
                             (long)sb.st_uid, (long)geteuid());
    if (sb.st_mode & 022)
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: refusing %s that others can write into (mode %04o): files "
                             "planted there could be loaded; chmod go-w it, or use another folder", path, kind,
                             (unsigned)(sb.st_mode & 07777));
    if (access(path, W_OK | X_OK) != 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: %s is not writable: %s", path, kind, strerror(errno));
    return 0;
}

/* ---- folders written as a whole ----------------------------------------------------------------- */

void pcv_outdir_path(const pcv_outdir *o, const char *file, char *buf, size_t cap)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", o->tmp, file) >= cap)
        buf[0] = '\0';
}

/* "<tmp>/.old-<file>": a hard link to the file being replaced, to restore it if a later file
 * cannot be moved */
static void backup_path(const pcv_outdir *o, const char *file, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/.old-%s", o->tmp, file);
}

int pcv_outdir_begin(pcv_outdir *o, const char *dir, const char *const *files, int nfiles, pcv_error *err)
{
    memset(o, 0, sizeof *o);
    o->slot = -1;
    o->files = files;
    o->nfiles = nfiles;
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') /* "out/" -> "out" */
        n--;
    if (n == 0)
        return pcv_set_error(err, PCV_ERR_INPUT, "empty output folder name");
    if (n >= sizeof o->dir - 64)
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: path too long", dir);
    memcpy(o->dir, dir, n);
    o->dir[n] = '\0';
    struct stat sb;
    if (stat(o->dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return pcv_set_error(err, PCV_ERR_IO, "%s: exists and is not a folder (%s); nothing was written", o->dir,
                                 file_type(sb.st_mode));
        if (access(o->dir, W_OK | X_OK) != 0)
            return pcv_set_error(err, PCV_ERR_IO, "%s: cannot write into this folder: %s; nothing was written",
                                 o->dir, strerror(errno));
        o->existed = true;
        for (int i = 0; i < nfiles; i++) {
            char p[4096 + 256];
            snprintf(p, sizeof p, "%s/%s", o->dir, files[i]);
            struct stat fs;
            if (stat(p, &fs) == 0 && !S_ISREG(fs.st_mode))
                return pcv_set_error(err, PCV_ERR_IO, "%s: is %s, not a regular file: refusing to replace it "
                                     "(nothing was written)", p, file_type(fs.st_mode));
            if (stat(p, &fs) != 0 && errno != ENOENT)
                return pcv_set_error(err, PCV_ERR_IO, "%s: %s (nothing was written)", p, strerror(errno));
        }
    } else if (errno != ENOENT) {
        return pcv_set_error(err, PCV_ERR_IO, "%s: %s", o->dir, strerror(errno));
    }
    pcv_remove_stale(o->dir, true);
    snprintf(o->tmp, sizeof o->tmp, "%s.partial-%ld", o->dir, (long)getpid());
    if (lstat(o->tmp, &sb) == 0 && S_ISDIR(sb.st_mode)) /* leftover of an earlier process with our pid */
        remove_flat_dir(o->tmp);
    o->slot = pcv_tmp_track(o->tmp, true);
    if (mkdir(o->tmp, 0755) != 0) {
        int e = errno;
        pcv_tmp_untrack(o->slot);
        o->slot = -1;
        char parent[4096];
        const char *base;
        split_path(o->dir, parent, sizeof parent, &base);
        if (e == ENOENT)
            return pcv_set_error(err, PCV_ERR_IO, "%s: cannot create: the folder %s does not exist", o->dir, parent);
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot create %s: %s", o->dir, o->tmp, strerror(e));
    }
    /* the files written into tmp go with it on a signal */
    for (int i = 0; i < nfiles && o->nslots + 2 <= (int)(sizeof o->slots / sizeof *o->slots); i++) {
        char p[4096 + 256];
        pcv_outdir_path(o, files[i], p, sizeof p);
        o->slots[o->nslots++] = pcv_tmp_track(p, false);
        backup_path(o, files[i], p, sizeof p);
        o->slots[o->nslots++] = pcv_tmp_track(p, false);
    }
    return 0;
}

/* Forgets the registrations of tmp and the files in it. */
static void untrack_all(pcv_outdir *o)
{
    for (int i = 0; i < o->nslots; i++)
        pcv_tmp_untrack(o->slots[i]);
    o->nslots = 0;
    pcv_tmp_untrack(o->slot);
    o->slot = -1;
}

void pcv_outdir_abort(pcv_outdir *o)
{
    if (!o->tmp[0])
        return;
    remove_flat_dir(o->tmp);
    untrack_all(o);
    o->tmp[0] = '\0';
}

int pcv_outdir_commit(pcv_outdir *o, pcv_error *err)
{
    fsync_dir(o->tmp);
    if (!o->existed && rename(o->tmp, o->dir) == 0) {
        fsync_parent_dir(o->dir);
        untrack_all(o);
        o->tmp[0] = '\0';
        return 0;
    }
    if (!o->existed && errno != EEXIST && errno != ENOTEMPTY) {
        int rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot create: %s", o->dir, strerror(errno));
        pcv_outdir_abort(o);
        return rc;
    }
    /* dir exists: replace its files one by one, each by an atomic rename, keeping a hard link to
     * each replaced file until all are in place */
    int rc = 0, moved = 0;
    enum { NEW, BACKED_UP, LOST } state[64];
    for (int i = 0; i < o->nfiles && i < 64 && !rc; i++) {
        char src[4096 + 256], dst[4096 + 256], old[4096 + 256];
        pcv_outdir_path(o, o->files[i], src, sizeof src);
        snprintf(dst, sizeof dst, "%s/%s", o->dir, o->files[i]);
        backup_path(o, o->files[i], old, sizeof old);
        if ((rc = pcv_check_output(dst, err)))
            break;
        if (link(dst, old) == 0)
            state[i] = BACKED_UP;
        else
            state[i] = errno == ENOENT ? NEW : LOST; /* LOST: no hard links here */
        if (rename(src, dst) != 0) {
            rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot write: %s", dst, strerror(errno));
            break;
        }
        moved++;
    }
    if (rc) { /* put back what was replaced */
        for (int i = 0; i < moved; i++) {
            char dst[4096 + 256], old[4096 + 256];
            snprintf(dst, sizeof dst, "%s/%s", o->dir, o->files[i]);
            backup_path(o, o->files[i], old, sizeof old);
            if (state[i] == BACKED_UP)
                rename(old, dst);
            else if (state[i] == NEW)
                unlink(dst);
        }
    }
    fsync_dir(o->dir);
    pcv_outdir_abort(o);
    return rc;
}
