#include "fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Best effort: make the rename durable. */
static void fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int pcv_write_atomic(const char *path, pcv_write_fn fn, void *ctx, pcv_error *err)
{
    size_t cap = strlen(path) + 32;
    char *tmp = malloc(cap);
    if (!tmp)
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", path);
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    int fd = open(tmp, flags, 0644);
    if (fd < 0 && errno == EEXIST) { /* stale leftover of an earlier process with our pid */
        unlink(tmp);
        fd = open(tmp, flags, 0644);
    }
    if (fd < 0) {
        int rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp,
                               strerror(errno));
        free(tmp);
        return rc;
    }
    int failed = fn(fd, ctx) != 0 || fsync(fd) != 0;
    int e = errno;
    if (close(fd) != 0 && !failed) {
        failed = 1;
        e = errno;
    }
    if (!failed && rename(tmp, path) != 0) {
        failed = 1;
        e = errno;
    }
    int rc = 0;
    if (failed) {
        unlink(tmp);
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    } else {
        fsync_parent_dir(path);
    }
    free(tmp);
    return rc;
}
