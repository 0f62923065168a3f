/* OpenCL programs: kernel sources (embedded, or from the runtime option kernel_dir) and the on-disk cache
 * of compiled program binaries.
 *
 * Why a cache of our own: compiling OpenCL C costs from a fraction of a second (GPU drivers) to
 * seconds (PoCL runs clang + LLVM), every process, unless someone keeps the binary. Some drivers
 * cache internally, others do not; keeping CL_PROGRAM_BINARIES ourselves makes start-up cheap
 * everywhere. The key covers everything that can change the binary: the full source text, the
 * build options, the platform and its version, the device name and version, and the driver
 * version (no path: a cache folder can be copied between identical machines). Entries carry
 * their key and a checksum; anything that does not match, or that the driver refuses, is
 * rebuilt from source and rewritten.
 */
#include "backend/backend_impl.h"
#include "util/error.h"
#include "backend/opencl_impl.h"

#ifdef PCV_HAVE_OPENCL

#include "util/clock.h"
#include "util/fileutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* defined in the generated file (cmake/embed_cl.cmake) */
typedef struct pcv_cl_embedded {
    const char *name;
    const char *source;
} pcv_cl_embedded;
extern const pcv_cl_embedded pcv_cl_sources[];

pcv_cl_build_stats pcv_cl_stats;

static const char *embedded(const char *name)
{
    for (const pcv_cl_embedded *e = pcv_cl_sources; e->name; e++)
        if (strcmp(e->name, name) == 0)
            return e->source;
    return NULL;
}

static char *read_text(const char *path, pcv_error *err)
{
    char *buf = NULL;
    size_t len;
    pcv_error e = {0};
    if (pcv_read_file(path, "an OpenCL kernel source", (size_t)16 << 20, &buf, &len, &e)) {
        pcv_set_error(err, e.code, "kernel source folder: cannot read %s", e.msg);
        return NULL;
    }
    return buf;
}

char *pcv_cl_load_source(const char *name, pcv_error *err)
{
    const char *dir = pcv_runtime()->kernel_dir;
    char *common = NULL, *body = NULL, *out = NULL;
    if (dir && *dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/common.cl", dir);
        if (!(common = read_text(path, err)))
            return NULL;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (!(body = read_text(path, err))) {
            free(common);
            return NULL;
        }
    } else {
        const char *c = embedded("common.cl"), *b = embedded(name);
        if (!c || !b) {
            pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL kernel source '%s' is not embedded in this build", name);
            return NULL;
        }
        common = strdup(c);
        body = strdup(b);
    }
    /* #line makes the driver's build log name the right file and line */
    size_t len = (common ? strlen(common) : 0) + (body ? strlen(body) : 0) + strlen(name) + 64;
    out = common && body ? malloc(len) : NULL;
    if (out)
        snprintf(out, len, "#line 1 \"common.cl\"\n%s\n#line 1 \"%s\"\n%s", common, name, body);
    else
        pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    free(common);
    free(body);
    return out;
}

/* ---- cache ---------------------------------------------------------------------------------- */

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static const char MAGIC[8] = {'P', 'C', 'V', 'C', 'L', 'B', '0', '1'};

/* The entry's path and its key text (what must match on load). */
static void cache_key(const pcv_cl_device_info *info, const char *name, const char *source, const char *options,
                      char *key, size_t keycap, char *path, size_t pathcap)
{
    uint64_t hs = fnv1a(source, strlen(source), 1469598103934665603ull);
    snprintf(key, keycap, "source %016llx/%zu\noptions %s\nplatform %s | %s\ndevice %s | %s | %s\ndriver %s\n",
             (unsigned long long)hs, strlen(source), options, info->platform, info->platform_version, info->name,
             info->vendor, info->version, info->driver);
    uint64_t h1 = fnv1a(key, strlen(key), 1469598103934665603ull);
    uint64_t h2 = fnv1a(key, strlen(key), 0x9E3779B97F4A7C15ull);
    char base[64];
    snprintf(base, sizeof base, "%s", name);
    char *dot = strrchr(base, '.');
    if (dot)
        *dot = '\0';
    snprintf(path, pathcap, "%s/%s-%016llx%016llx.bin", pcv_cl_cache_dir(), base, (unsigned long long)h1,
             (unsigned long long)h2);
}

/* Reads an entry; NULL if absent or not valid for this key. */
static unsigned char *cache_read(const char *path, const char *key, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *bin = NULL;
    char magic[8];
    uint32_t klen = 0;
    uint64_t blen = 0, sum = 0;
    char *k = NULL;
    bool ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, MAGIC, 8) == 0 && fread(&klen, 4, 1, f) == 1 &&
              klen == strlen(key) && (k = malloc(klen + 1)) && fread(k, 1, klen, f) == klen &&
              memcmp(k, key, klen) == 0 && fread(&blen, 8, 1, f) == 1 && fread(&sum, 8, 1, f) == 1 && blen > 0 &&
              blen < ((uint64_t)1 << 32) && (bin = malloc(blen)) && fread(bin, 1, blen, f) == blen &&
              fnv1a(bin, blen, 1469598103934665603ull) == sum && fgetc(f) == EOF;
    fclose(f);
    free(k);
    if (!ok) { /* stale, truncated or corrupt: rebuilt and overwritten by the caller */
        free(bin);
        pcv_cl_stats.cache_rejects++;
        return NULL;
    }
    *len = blen;
    return bin;
}

/* Writes an entry atomically: a temporary file in the same folder, then rename. Failures are
 * silent (the cache is an optimization). */
static void cache_write(const char *path, const char *key, const unsigned char *bin, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return;
    }
    uint32_t klen = (uint32_t)strlen(key);
    uint64_t blen = len, sum = fnv1a(bin, len, 1469598103934665603ull);
    bool ok = fwrite(MAGIC, 1, 8, f) == 8 && fwrite(&klen, 4, 1, f) == 1 && fwrite(key, 1, klen, f) == klen &&
              fwrite(&blen, 8, 1, f) == 1 && fwrite(&sum, 8, 1, f) == 1 && fwrite(bin, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) == 0)
        pcv_cl_stats.cache_writes++;
    else
        unlink(tmp);
}

/* PoCL keeps its own persistent cache of compiled programs (POCL_CACHE_DIR, keyed by source,
 * options, device and PoCL build), and asking it for CL_PROGRAM_BINARIES makes it compile a
 * generic work-group version of every kernel first: measured 2.5 s (elementwise.cl) to 18.6 s
 * (attention.cl) per program on a cold cache, against 0.15 s for a warm build from source.
 * So by default our cache serves the other drivers; the runtime option kernel_cache=1 forces it. */
bool pcv_cl_cache_used(const pcv_cl_device_info *info)
{
    if (pcv_runtime()->kernel_cache == 1)
        return true;
    return strstr(info->platform, "Portable Computing Language") == NULL;
}

/* ---- build ---------------------------------------------------------------------------------- */

static int build_failure(cl_program prog, cl_device_id dev, const pcv_cl_device_info *info, const char *name,
                         const char *options, cl_int rc, pcv_error *err)
{
    size_t n = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) == CL_SUCCESS && n > 0 &&
        (log = malloc(n + 1)) && clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, n, log, NULL) == CL_SUCCESS)
        log[n] = '\0';
    else if (log)
        log[0] = '\0';
    char eb[48];
    const char *l = log && *log ? log : "(the driver gave no build log)";
    /* the message holds the start of the log; the whole log goes to stderr when it is longer */
    size_t room = 560;
    bool cut = strlen(l) > room;
    pcv_set_error(err, PCV_ERR_DEVICE,
                  "OpenCL kernel build failed for cl/%s on device %d '%s' (%s; options: %s):\n%.*s%s", name,
                  info->index, info->name, pcv_cl_error_name(rc, eb, sizeof eb), options, (int)room, l,
                  cut ? "\n[... build log truncated; the whole log is on stderr above]" : "");
    if (cut)
        fprintf(stderr, "perceiver-cl: build log of cl/%s on '%s':\n%s\n", name, info->name, l);
    free(log);
    return PCV_ERR_DEVICE;
}

int pcv_cl_build_program(cl_context ctx, cl_device_id dev, const pcv_cl_device_info *info, const char *name,
                         const char *options, cl_program *out, pcv_error *err)
{
    double t0 = pcv_now();
    char eb[48];
    *out = NULL;
    char *source = pcv_cl_load_source(name, err);
    if (!source)
        return err ? (int)err->code : PCV_ERR_DEVICE;
    char key[2048], path[4600];
    bool use_cache = pcv_cl_cache_dir()[0] != '\0' && pcv_cl_cache_used(info);
    if (use_cache)
        cache_key(info, name, source, options, key, sizeof key, path, sizeof path);

    cl_int rc = CL_SUCCESS;
    cl_program prog = NULL;
    if (use_cache) {
        size_t len = 0;
        unsigned char *bin = cache_read(path, key, &len);
        if (bin) {
            cl_int status = CL_SUCCESS;
            const unsigned char *bins[1] = {bin};
            prog = clCreateProgramWithBinary(ctx, 1, &dev, &len, bins, &status, &rc);
            if (prog && rc == CL_SUCCESS && status == CL_SUCCESS)
                rc = clBuildProgram(prog, 1, &dev, options, NULL, NULL);
            if (!prog || rc != CL_SUCCESS || status != CL_SUCCESS) { /* refused: rebuild from source */
                if (prog)
                    clReleaseProgram(prog);
                prog = NULL;
                pcv_cl_stats.cache_rejects++;
            } else {
                pcv_cl_stats.from_cache++;
            }
            free(bin);
        }
    }
    if (!prog) {
        const char *src = source;
        char what[160];
        snprintf(what, sizeof what, "compiling OpenCL kernels (cl/%s)", name);
        pcv_progress(what, 0, 1);
        prog = clCreateProgramWithSource(ctx, 1, &src, NULL, &rc);
        if (!prog || rc != CL_SUCCESS) {
            free(source);
            return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL: cannot create program cl/%s on '%s': %s", name,
                                 info->name, pcv_cl_error_name(rc, eb, sizeof eb));
        }
        rc = clBuildProgram(prog, 1, &dev, options, NULL, NULL);
        if (rc != CL_SUCCESS) {
            build_failure(prog, dev, info, name, options, rc, err);
            clReleaseProgram(prog);
            free(source);
            return PCV_ERR_DEVICE;
        }
        pcv_cl_stats.from_source++;
        pcv_progress(what, 1, 1);
        size_t len = 0;
        if (use_cache && clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof len, &len, NULL) == CL_SUCCESS &&
            len > 0) {
            unsigned char *bin = malloc(len);
            unsigned char *bins[1] = {bin};
            if (bin && clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS)
                cache_write(path, key, bin, len);
            free(bin);
        }
    }
    free(source);
    pcv_cl_stats.seconds += pcv_now() - t0;
    *out = prog;
    return 0;
}

#else
bool pcv_cl_cache_used(const pcv_cl_device_info *info) { return false; }
#endif
