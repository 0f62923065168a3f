/* Minimal test helpers: CHECK(cond, fmt, ...) records a failure and goes on; finish with
 * TEST_DONE() which prints a "N passed, N failed" summary and returns the exit status. */
#ifndef PCV_TESTUTIL_H
#define PCV_TESTUTIL_H
#include "perceiver/perceiver.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tu_pass, tu_fail;

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (cond) {                                                                          \
            tu_pass++;                                                                       \
        } else {                                                                             \
            tu_fail++;                                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                             \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)

#define TEST_DONE()                                                                          \
    (printf("%s: %d checks passed, %d failed\n", __FILE__, tu_pass, tu_fail),               \
     (tu_fail || !tu_pass) ? 1 : 0)

/* Directory of the committed fixtures (set by ctest), and a scratch directory. */
static inline const char *tu_fixtures(void)
{
    const char *d = getenv("PCV_FIXTURES");
    return d ? d : "tests/fixtures";
}
static inline const char *tu_tmpdir(void)
{
    const char *d = getenv("PCV_TEST_TMP");
    return d ? d : "/tmp";
}
/* The whole file (malloc'd, *n bytes), or NULL. */
static inline unsigned char *tu_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = b ? fread(b, 1, sz > 0 ? (size_t)sz : 0, f) : 0;
    fclose(f);
    return b;
}

/* Removes a folder and the files in it (one level: the tests' scratch folders). */
static inline void tu_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* The OpenCL runtime options of a test program: compiled kernels go to $PERCEIVER_CACHE_DIR when
 * ctest's environment sets it, else to the test folder, never the user's cache. */
static inline void tu_runtime_setup(void)
{
    static char cache[4096];
    const char *env = getenv("PERCEIVER_CACHE_DIR");
    if (env && *env)
        snprintf(cache, sizeof cache, "%s", env);
    else
        snprintf(cache, sizeof cache, "%s/kernel-cache", tu_tmpdir());
    /* PCV_TEST_TUNING: OpenCL tuning keys for this run (e.g. as=gpu,wg=16,local=2048: GPU-style
     * kernels under small limits on a CPU device) */
    pcv_runtime_options rt = {.cache_dir = cache, .kernel_cache = -1, .tuning = getenv("PCV_TEST_TUNING")};
    pcv_error err = {0};
    if (pcv_runtime_configure(&rt, &err) != 0)
        fprintf(stderr, "runtime options: %s\n", err.msg);
}
#endif
