/* The on-disk cache of compiled OpenCL programs (src/backend/opencl_program.c) and the kernel-source
 * override: an entry is written once and reused; another set of build options or an edited
 * source never meets a stale binary; corrupt, truncated or foreign entries are rebuilt and
 * rewritten; a kernel that does not compile reports its build log and leaves no entry; nothing
 * temporary is left behind. Runs on OpenCL device 0 (with PCV_REQUIRE_OPENCL=1 a machine
 * without one fails). */
#include "backend/opencl_impl.h"
#include "testutil.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef PCV_HAVE_OPENCL

static char dir[4096];

/* Files in the cache folder whose name starts with prefix (and, with tmp, temporary files). */
static int count_files(const char *prefix, bool tmp_only)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (tmp_only ? strstr(de->d_name, ".tmp.") != NULL : strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static bool first_file(const char *prefix, char *path, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *de;
    bool found = false;
    while (!found && (de = readdir(d)))
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(path, cap, "%s/%s", dir, de->d_name);
            found = true;
        }
    closedir(d);
    return found;
}

/* Runs kernel `add` (y += a) of a built program and checks the result. */
static void check_add_kernel(cl_context ctx, cl_device_id dev, cl_program prog, const char *what)
{
    enum { N = 1000 };
    float y[N], a[N];
    for (int i = 0; i < N; i++)
        y[i] = (float)i, a[i] = 0.5f * (float)i;
    cl_int rc;
    cl_command_queue q = clCreateCommandQueue(ctx, dev, 0, &rc);
    cl_kernel k = clCreateKernel(prog, "add", &rc);
    CHECK(k && rc == CL_SUCCESS, "%s: kernel 'add' missing (%d)", what, rc);
    cl_mem yb = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof y, y, &rc);
    cl_mem ab = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof a, a, &rc);
    cl_ulong zero = 0;
    clSetKernelArg(k, 0, sizeof yb, &yb);
    clSetKernelArg(k, 1, sizeof zero, &zero);
    clSetKernelArg(k, 2, sizeof ab, &ab);
    clSetKernelArg(k, 3, sizeof zero, &zero);
    size_t g = N;
    rc = clEnqueueNDRangeKernel(q, k, 1, NULL, &g, NULL, 0, NULL, NULL);
    CHECK(rc == CL_SUCCESS, "%s: launch failed (%d)", what, rc);
    clEnqueueReadBuffer(q, yb, CL_TRUE, 0, sizeof y, y, 0, NULL, NULL);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += y[i] != 1.5f * (float)i;
    CHECK(bad == 0, "%s: %d wrong results", what, bad);
    clReleaseMemObject(yb);
    clReleaseMemObject(ab);
    clReleaseKernel(k);
    clReleaseCommandQueue(q);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int build(cl_context ctx, cl_device_id dev, const pcv_cl_device_info *info, const char *opts, cl_program *p,
                 pcv_error *err)
{
    memset(err, 0, sizeof *err);
    int rc = pcv_cl_build_program(ctx, dev, info, "elementwise.cl", opts, p, err);
    CHECK(rc == 0, "build (%s): %s", opts, err->msg);
    return rc;
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/cache-test-%ld", tu_tmpdir(), (long)getpid());
    /* the cache folder is read once per process, before any OpenCL call; kernel_cache 1: also on
     * PoCL, whose own cache makes ours off by default */
    pcv_runtime_options rt = {.cache_dir = dir, .kernel_cache = 1};
    pcv_error cerr = {0};
    CHECK(pcv_runtime_configure(&rt, &cerr) == 0, "runtime options: %s", cerr.msg);
    CHECK(strcmp(pcv_cl_cache_dir(), dir) == 0, "cache folder is '%s', not %s", pcv_cl_cache_dir(), dir);

    pcv_error err = {0};
    cl_platform_id plat;
    cl_device_id dev;
    pcv_cl_device_info info;
    if (pcv_cl_get_device(0, &plat, &dev, &info, &err) != 0) {
        const char *req = getenv("PCV_REQUIRE_OPENCL");
        CHECK(!(req && strcmp(req, "0")), "PCV_REQUIRE_OPENCL=1 but there is no OpenCL device: %s", err.msg);
        printf("no OpenCL device: the cache tests did not run\n");
        CHECK(true, "%s", "skipped");
        return TEST_DONE();
    }
    printf("device 0: %s (%s), cache %s\n", info.name, info.platform, dir);
    cl_int rc;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &rc);
    CHECK(ctx && rc == CL_SUCCESS, "clCreateContext: %d", rc);
    const char *opts_a = "-cl-std=CL1.2 -D VW=16 -D ROW_LS=1 -D PCV_FP64=0";
    const char *opts_b = "-cl-std=CL1.2 -D VW=8 -D ROW_LS=1 -D PCV_FP64=0";
    cl_program p = NULL;

    /* 1. first build: from source, one entry written */
    pcv_cl_build_stats s0 = pcv_cl_stats;
    if (build(ctx, dev, &info, opts_a, &p, &err) == 0) {
        check_add_kernel(ctx, dev, p, "built from source");
        clReleaseProgram(p);
    }
    CHECK(pcv_cl_stats.from_source == s0.from_source + 1, "first build did not come from source");
    CHECK(pcv_cl_stats.cache_writes == s0.cache_writes + 1, "first build wrote no cache entry");
    CHECK(count_files("elementwise-", false) == 1, "expected 1 cache entry, found %d", count_files("elementwise-", false));

    /* 2. second build: from the cache, and the binary works */
    s0 = pcv_cl_stats;
    if (build(ctx, dev, &info, opts_a, &p, &err) == 0) {
        check_add_kernel(ctx, dev, p, "loaded from the cache");
        clReleaseProgram(p);
    }
    CHECK(pcv_cl_stats.from_cache == s0.from_cache + 1 && pcv_cl_stats.from_source == s0.from_source,
          "second build did not come from the cache");

    /* 3. other build options: another entry */
    s0 = pcv_cl_stats;
    if (build(ctx, dev, &info, opts_b, &p, &err) == 0)
        clReleaseProgram(p);
    CHECK(pcv_cl_stats.from_source == s0.from_source + 1, "other options were served from the cache");
    CHECK(count_files("elementwise-", false) == 2, "expected 2 cache entries");

    /* 4. a corrupt entry (one flipped byte at the end of the binary) is rebuilt and rewritten */
    char path[4600], path_b[4600];
    first_file("elementwise-", path, sizeof path);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL, "cannot open %s", path);
    if (f) {
        fseek(f, -1, SEEK_END);
        int c = fgetc(f);
        fseek(f, -1, SEEK_END);
        fputc(c ^ 0x5a, f);
        fclose(f);
    }
    for (int pass = 0; pass < 2; pass++) {
        s0 = pcv_cl_stats;
        const char *o = pass == 0 ? opts_a : opts_b;
        if (build(ctx, dev, &info, o, &p, &err) == 0) {
            check_add_kernel(ctx, dev, p, "after a corrupt entry");
            clReleaseProgram(p);
        }
    }
    CHECK(pcv_cl_stats.cache_rejects >= 1, "the corrupt entry was not rejected");
    s0 = pcv_cl_stats;
    if (build(ctx, dev, &info, opts_a, &p, &err) == 0)
        clReleaseProgram(p);
    if (build(ctx, dev, &info, opts_b, &p, &err) == 0)
        clReleaseProgram(p);
    CHECK(pcv_cl_stats.from_cache == s0.from_cache + 2, "the rewritten entries are not used");

    /* 5. a truncated entry, and an entry of other options under this key's name */
    first_file("elementwise-", path, sizeof path);
    struct stat sb;
    stat(path, &sb);
    CHECK(truncate(path, sb.st_size / 2) == 0, "truncate %s", path);
    s0 = pcv_cl_stats;
    if (build(ctx, dev, &info, opts_a, &p, &err) == 0)
        clReleaseProgram(p);
    if (build(ctx, dev, &info, opts_b, &p, &err) == 0)
        clReleaseProgram(p);
    CHECK(pcv_cl_stats.cache_rejects == s0.cache_rejects + 1 && pcv_cl_stats.from_source == s0.from_source + 1,
          "the truncated entry was not rebuilt (rejects %d, source builds %d)",
          pcv_cl_stats.cache_rejects - s0.cache_rejects, pcv_cl_stats.from_source - s0.from_source);
    DIR *d = opendir(dir);
    struct dirent *de;
    int k = 0;
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, "elementwise-", 12))
            snprintf(k++ ? path_b : path, sizeof path, "%s/%s", dir, de->d_name);
    if (d)
        closedir(d);
    CHECK(k == 2, "expected 2 entries, found %d", k);
    char entry_a[4600]; /* an entry of options A or B (the later steps build both) */
    snprintf(entry_a, sizeof entry_a, "%s", path);
    if (k == 2) {
        char cmd[10000];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path_b, path); /* entry of B under A's name */
        CHECK(system(cmd) == 0, "%s", cmd);
        s0 = pcv_cl_stats;
        for (int pass = 0; pass < 2; pass++) {
            if (build(ctx, dev, &info, opts_a, &p, &err) == 0) {
                check_add_kernel(ctx, dev, p, "after a foreign entry");
                clReleaseProgram(p);
            }
            if (build(ctx, dev, &info, opts_b, &p, &err) == 0)
                clReleaseProgram(p);
        }
        CHECK(pcv_cl_stats.cache_rejects == s0.cache_rejects + 1, "the foreign entry was not rejected");
        CHECK(pcv_cl_stats.from_cache == s0.from_cache + 3, "entries not reused after the rewrite");
    }

    /* 6. kernel sources from a folder (runtime option kernel_dir): an edited kernel is a new key,
     * never a stale hit */
    char srcdir[4200], cmd[9000];
    snprintf(srcdir, sizeof srcdir, "%s/cl-override", dir);
    mkdir(srcdir, 0755);
    const char *sdir = getenv("PCV_SOURCE_DIR");
    snprintf(cmd, sizeof cmd, "cp '%s'/cl/*.cl '%s'/ && printf '\\n// edited\\n' >> '%s/elementwise.cl'",
             sdir ? sdir : ".", srcdir, srcdir);
    CHECK(system(cmd) == 0, "%s", cmd);
    rt.kernel_dir = srcdir;
    CHECK(pcv_runtime_configure(&rt, &cerr) == 0, "runtime options: %s", cerr.msg);
    s0 = pcv_cl_stats;
    if (build(ctx, dev, &info, opts_a, &p, &err) == 0) {
        check_add_kernel(ctx, dev, p, "edited source");
        clReleaseProgram(p);
    }
    CHECK(pcv_cl_stats.from_source == s0.from_source + 1, "an edited kernel was served from the cache");

    /* 7. a kernel that does not compile: the build log is in the error, nothing is cached */
    char bad[4400];
    snprintf(bad, sizeof bad, "%s/elementwise.cl", srcdir);
    write_file(bad, "__kernel void add(__global float *y) { y[0] = not_declared_here; }\n");
    int before = count_files("elementwise-", false);
    memset(&err, 0, sizeof err);
    p = NULL;
    int r = pcv_cl_build_program(ctx, dev, &info, "elementwise.cl", opts_a, &p, &err);
    CHECK(r == PCV_ERR_DEVICE && p == NULL, "a broken kernel built (rc %d)", r);
    CHECK(strstr(err.msg, "kernel build failed for cl/elementwise.cl") != NULL, "message: %s", err.msg);
    CHECK(strstr(err.msg, "not_declared_here") != NULL && strstr(err.msg, "elementwise.cl:1") != NULL,
          "the build log (with file and line) is missing: %s", err.msg);
    CHECK(count_files("elementwise-", false) == before, "a failed build left a cache entry");
    rt.kernel_dir = NULL;
    CHECK(pcv_runtime_configure(&rt, &cerr) == 0, "runtime options: %s", cerr.msg);

    /* 8. issue 12: a forged entry (the binary replaced, everything else kept) fails its HMAC-SHA-256
     * tag and is rebuilt, never handed to the driver; so is an entry in the old format with a
     * recomputed checksum, and an entry written under another key */
    snprintf(path, sizeof path, "%s", entry_a);
    size_t n = 0;
    unsigned char *orig = tu_read_file(path, &n);
    CHECK(orig && n > 100, "entry %s", path);
    if (orig && n > 100) {
        uint32_t klen;
        memcpy(&klen, orig + 8, 4);
        size_t bin_at = 8 + 4 + klen + 8, blen = n - bin_at - 32;
        unsigned char *forged = malloc(n);
        memcpy(forged, orig, n);
        for (size_t i = 0; i < blen; i++)
            forged[bin_at + i] = (unsigned char)(0xC3 ^ (i * 131));
        FILE *ff = fopen(path, "wb");
        if (ff) {
            fwrite(forged, 1, n, ff);
            fclose(ff);
        }
        s0 = pcv_cl_stats;
        for (int pass = 0; pass < 2; pass++) {
            if (build(ctx, dev, &info, opts_a, &p, &err) == 0)
                clReleaseProgram(p);
            if (build(ctx, dev, &info, opts_b, &p, &err) == 0)
                clReleaseProgram(p);
        }
        CHECK(pcv_cl_stats.cache_forged == s0.cache_forged + 1, "the forged entry was not caught by its tag (%d)",
              pcv_cl_stats.cache_forged - s0.cache_forged);
        CHECK(pcv_cl_stats.from_source == s0.from_source + 1 && pcv_cl_stats.from_cache == s0.from_cache + 3,
              "the forged entry was not rebuilt and reused (source %d, cache %d)",
              pcv_cl_stats.from_source - s0.from_source, pcv_cl_stats.from_cache - s0.from_cache);
        /* the old format: magic PCVCLB01, key, length, FNV-1a checksum of the binary, binary */
        unsigned char *old = malloc(n + 64);
        size_t o = 0;
        memcpy(old, "PCVCLB01", 8), o = 8;
        memcpy(old + o, orig + 8, 4 + klen), o += 4 + klen;
        uint64_t bl = blen, h = 1469598103934665603ull;
        for (size_t i = 0; i < blen; i++)
            h = (h ^ forged[bin_at + i]) * 1099511628211ull;
        memcpy(old + o, &bl, 8), o += 8;
        memcpy(old + o, &h, 8), o += 8;
        memcpy(old + o, forged + bin_at, blen), o += blen;
        snprintf(path, sizeof path, "%s", entry_a);
        ff = fopen(path, "wb");
        if (ff) {
            fwrite(old, 1, o, ff);
            fclose(ff);
        }
        s0 = pcv_cl_stats;
        if (build(ctx, dev, &info, opts_a, &p, &err) == 0)
            clReleaseProgram(p);
        if (build(ctx, dev, &info, opts_b, &p, &err) == 0)
            clReleaseProgram(p);
        CHECK(pcv_cl_stats.cache_rejects == s0.cache_rejects + 1 && pcv_cl_stats.from_source == s0.from_source + 1,
              "an old-format entry with a recomputed checksum was not rejected");
        free(old);
        free(forged);
    }
    free(orig);
    /* the key: 32 bytes, readable by this user only, in a folder only this user can write */
    char keyp[4200];
    snprintf(keyp, sizeof keyp, "%s/key", dir);
    struct stat ks, ds;
    CHECK(stat(keyp, &ks) == 0 && ks.st_size == 32 && (ks.st_mode & 077) == 0, "key file %s (mode %o)", keyp,
          (unsigned)ks.st_mode);
    CHECK(stat(dir, &ds) == 0 && (ds.st_mode & 077) == 0, "cache folder mode %o, want 0700", (unsigned)ds.st_mode);
    /* a FIFO planted under an entry's name is refused without blocking */
    snprintf(path, sizeof path, "%s", entry_a);
    unlink(path);
    CHECK(mkfifo(path, 0600) == 0, "mkfifo %s", path);
    alarm(60); /* a hang would be the failure */
    s0 = pcv_cl_stats;
    if (build(ctx, dev, &info, opts_a, &p, &err) == 0)
        clReleaseProgram(p);
    if (build(ctx, dev, &info, opts_b, &p, &err) == 0)
        clReleaseProgram(p);
    alarm(0);
    CHECK(pcv_cl_stats.cache_rejects >= s0.cache_rejects + 1, "a FIFO entry was not rejected");
    struct stat fs;
    CHECK(stat(path, &fs) == 0 && S_ISREG(fs.st_mode), "the FIFO entry was not replaced by a rebuilt entry");

    CHECK(count_files(NULL, true) == 0, "temporary files were left in %s", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    clReleaseContext(ctx);
    printf("program builds: %d from source, %d from the cache, %d rejected entries, %.2f s\n", pcv_cl_stats.from_source,
           pcv_cl_stats.from_cache, pcv_cl_stats.cache_rejects, pcv_cl_stats.seconds);
    return TEST_DONE();
}

#else

int main(void)
{
    const char *req = getenv("PCV_REQUIRE_OPENCL");
    CHECK(!(req && strcmp(req, "0")), "PCV_REQUIRE_OPENCL=1 but this build has no OpenCL backend");
    printf("this build has no OpenCL backend: the cache tests did not run\n");
    CHECK(true, "%s", "skipped");
    return TEST_DONE();
}

#endif
