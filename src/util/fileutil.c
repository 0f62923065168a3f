#include "util/fileutil.h"
#include "util/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
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

int pcv_map_file(const char *path, const char *kind, void **map, size_t *size, pcv_error *err)
{
    /* O_NONBLOCK so that a FIFO does not hang the open; it has no effect on regular files. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) != 0)
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: is a directory, not %s", path, kind);
    else if (!S_ISREG(sb.st_mode))
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: not a regular file", path);
    else if (sb.st_size == 0)
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
    *map = m;
    *size = (size_t)sb.st_size;
    return 0;
}

int pcv_read_file(const char *path, const char *kind, size_t max_bytes, char **out, size_t *out_len, pcv_error *err)
{
    *out = NULL;
    *out_len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) != 0)
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: is a directory, not %s", path, kind);
    else if (!S_ISREG(sb.st_mode))
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: not a regular file (%s expected)", path, kind);
    else if ((unsigned long long)sb.st_size > max_bytes)
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
