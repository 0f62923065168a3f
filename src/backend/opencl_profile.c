/* Tuning profiles of OpenCL devices (opencl.h): the files `perceiver-cl tune` writes into the
 * cache folder, and the checks every profile string passes before a device uses it.
 *
 * File: text lines
 *   perceiver-cl tuning profile 1
 *   platform: <CL_PLATFORM_NAME> | <CL_PLATFORM_VERSION>
 *   device: <CL_DEVICE_NAME> | <CL_DEVICE_VENDOR> | <CL_DEVICE_VERSION>
 *   driver: <CL_DRIVER_VERSION>
 *   clblast: <the CLBlast library this process loaded (pcv_cl_clblast_version)>
 *   tuning: <key=value,...>
 *   note: <what was measured>
 * The first five lines are the device's identity: they must match the device exactly, so a
 * profile never outlives the driver or the CLBlast it was measured with. The name is
 * tuned-<64-bit hashes of the identity>.txt. */
#include "backend/opencl.h"
#include "util/error.h"
#include "util/fileutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROFILE_MAGIC "perceiver-cl tuning profile 1"
#define PROFILE_MAX (64 * 1024)

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* the identity lines (everything up to and including "clblast: ...\n") */
static void identity(const pcv_cl_device_info *info, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s\nplatform: %s | %s\ndevice: %s | %s | %s\ndriver: %s\nclblast: %s\n", PROFILE_MAGIC,
             info->platform, info->platform_version, info->name, info->vendor, info->version, info->driver,
             pcv_cl_clblast_version());
}

bool pcv_cl_profile_path(const pcv_cl_device_info *info, char *path, size_t cap)
{
    char dir[4096], id[2048];
    pcv_cl_user_cache_dir(dir, sizeof dir);
    if (!dir[0])
        return false;
    identity(info, id, sizeof id);
    snprintf(path, cap, "%s/tuned-%016llx%016llx.txt", dir, (unsigned long long)fnv1a(id, 1469598103934665603ull),
             (unsigned long long)fnv1a(id, 0x9E3779B97F4A7C15ull));
    return true;
}

/* an unsigned decimal number of at most max, the whole of [p, end) */
static bool number(const char *p, const char *end, unsigned long max, unsigned long *out)
{
    if (p == end || end - p > 9)
        return false;
    unsigned long v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    *out = v;
    return v <= max;
}

static bool one_of(const char *p, size_t n, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == n && !strncasecmp(p, *words, n))
            return true;
    return false;
}

bool pcv_cl_profile_check(const char *tuning, char *why, size_t whycap)
{
    static const char *const layouts[] = {"auto", "row", "swap", NULL};
    static const char *const paths[] = {"auto", "fused", "gemm", NULL};
    static const char *const styles[] = {"cpu", "gpu", NULL};
    static const char *const gemms[] = {"auto", "clblast", "own", NULL};
    if (strlen(tuning) >= 512) {
        snprintf(why, whycap, "longer than 511 characters");
        return false;
    }
    for (const char *p = tuning; *p;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) {
            snprintf(why, whycap, "'%.*s' is not key=value", (int)(end - p), p);
            return false;
        }
        size_t kl = (size_t)(eq - p), vl = (size_t)(end - eq - 1);
        const char *v = eq + 1;
        unsigned long x;
        bool ok;
        if (kl == 5 && !strncmp(p, "xgemm", 5)) {
            int n = 0;
            ok = true;
            for (const char *q = v; ok && q < end; n++) {
                const char *c = memchr(q, ':', (size_t)(end - q));
                if (!c)
                    c = end;
                ok = number(q, c, 4096, &x);
                q = c < end ? c + 1 : end;
            }
            if (ok && n != 16) {
                snprintf(why, whycap, "xgemm needs 16 numbers separated by ':' (it has %d)", n);
                return false;
            }
        } else if (kl == 6 && !strncmp(p, "minind", 6)) {
            ok = number(v, end, 1000000000ul, &x);
        } else if (kl == 6 && !strncmp(p, "splits", 6)) {
            ok = number(v, end, 4096, &x);
        } else if (kl == 7 && !strncmp(p, "clblast", 7)) {
            ok = vl == 1 && (*v == '0' || *v == '1');
        } else if (kl == 6 && !strncmp(p, "layout", 6)) {
            ok = one_of(v, vl, layouts);
        } else if (kl == 4 && !strncmp(p, "gemm", 4)) {
            ok = one_of(v, vl, gemms);
        } else if (kl == 7 && !strncmp(p, "gemm_vw", 7)) {
            ok = number(v, end, 16, &x) && (x == 4 || x == 8 || x == 16);
        } else if (kl == 7 && !strncmp(p, "gemm_mr", 7)) {
            ok = number(v, end, 16, &x) && x >= 1;
        } else if (kl == 9 && !strncmp(p, "attention", 9)) {
            ok = one_of(v, vl, paths);
        } else if (kl == 11 && !strncmp(p, "attn_gemm_d", 11)) {
            ok = number(v, end, 1000000, &x);
        } else if (kl == 2 && !strncmp(p, "as", 2)) {
            ok = one_of(v, vl, styles);
        } else if (kl == 2 && !strncmp(p, "vw", 2)) {
            ok = number(v, end, 16, &x) && (x == 4 || x == 8 || x == 16);
        } else if (kl == 6 && !strncmp(p, "row_ls", 6)) {
            ok = number(v, end, 1024, &x) && x >= 1 && !(x & (x - 1));
        } else {
            snprintf(why, whycap, "'%.*s' is not a key of a profile (xgemm, minind, clblast, gemm, gemm_vw, gemm_mr, layout, attention, attn_gemm_d, splits, as, vw, row_ls)",
                     (int)kl, p);
            return false;
        }
        if (!ok) {
            snprintf(why, whycap, "bad value for %.*s: '%.*s'", (int)kl, p, (int)vl, v);
            return false;
        }
        p = *end ? end + 1 : end;
    }
    return true;
}

int pcv_cl_profile_load(const pcv_cl_device_info *info, char *tuning, size_t cap, char *why, size_t whycap)
{
    char path[4300];
    tuning[0] = '\0';
    if (!pcv_cl_profile_path(info, path, sizeof path))
        return 0;
    struct stat sb;
    if (lstat(path, &sb) != 0 && errno == ENOENT)
        return 0;
    char *text = NULL;
    size_t len = 0;
    pcv_error err = {0};
    if (pcv_read_file(path, "an OpenCL tuning profile", PROFILE_MAX, &text, &len, &err)) {
        snprintf(why, whycap, "%s", err.msg);
        return -1;
    }
    char id[2048];
    identity(info, id, sizeof id);
    int rc = -1;
    size_t il = strlen(id);
    if (len < il || memcmp(text, id, il) != 0) {
        snprintf(why, whycap, "%s is not a profile of this device and driver (its first lines differ)", path);
    } else if (strncmp(text + il, "tuning: ", 8) != 0) {
        snprintf(why, whycap, "%s has no 'tuning: ' line after the device's identity", path);
    } else {
        const char *t = text + il + 8, *nl = strchr(t, '\n');
        size_t tl = nl ? (size_t)(nl - t) : strlen(t);
        char line[512], w[256];
        if (tl >= sizeof line || tl >= cap) {
            snprintf(why, whycap, "%s: the tuning line is too long", path);
        } else {
            memcpy(line, t, tl);
            line[tl] = '\0';
            int xp[16];
            if (!pcv_cl_profile_check(line, w, sizeof w)) {
                snprintf(why, whycap, "%s: %s", path, w);
            } else if (pcv_cl_xgemm_parse(line, xp) && !pcv_cl_xgemm_valid(xp, info)) {
                snprintf(why, whycap, "%s: its xgemm parameters are not a valid CLBlast set for this device", path);
            } else {
                memcpy(tuning, line, tl + 1);
                rc = 1;
            }
        }
    }
    free(text);
    return rc;
}

typedef struct profile_text {
    const char *text;
} profile_text;

static int write_text(int fd, void *ctx)
{
    const char *t = ((profile_text *)ctx)->text;
    return pcv_write_all(fd, t, strlen(t));
}

int pcv_cl_profile_save(const pcv_cl_device_info *info, const char *tuning, const char *comment, pcv_error *err)
{
    char why[256], dir[4096], path[4300];
    if (!pcv_cl_profile_check(tuning, why, sizeof why))
        return pcv_set_error(err, PCV_ERR_INPUT, "tuning profile '%s': %s", tuning, why);
    pcv_cl_user_cache_dir(dir, sizeof dir);
    if (!dir[0] || !pcv_cl_profile_path(info, path, sizeof path))
        return pcv_set_error(err, PCV_ERR_IO,
                             "no cache folder for the tuning profile (set PERCEIVER_CACHE_DIR, XDG_CACHE_HOME or HOME)");
    int rc = pcv_private_dir(dir, "the cache folder", err);
    if (rc)
        return rc;
    char id[2048], text[4096];
    identity(info, id, sizeof id);
    char note[1024];
    snprintf(note, sizeof note, "%s", comment ? comment : "");
    for (char *c = note; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    snprintf(text, sizeof text, "%stuning: %s\nnote: %s\n", id, tuning, note);
    profile_text pt = {text};
    return pcv_write_atomic(path, write_text, &pt, err);
}

int pcv_cl_profile_remove(const pcv_cl_device_info *info, bool *removed, pcv_error *err)
{
    char path[4300];
    *removed = false;
    if (!pcv_cl_profile_path(info, path, sizeof path))
        return 0;
    if (unlink(path) == 0) {
        *removed = true;
        return 0;
    }
    if (errno == ENOENT)
        return 0;
    return pcv_set_error(err, PCV_ERR_IO, "cannot remove the tuning profile %s: %s", path, strerror(errno));
}

/* ---- CLBlast's Xgemm parameters ------------------------------------------------------------ */

enum { GEMMK, KREG, KWG, KWI, MDIMA, MDIMC, MWG, NDIMB, NDIMC, NWG, SA, SB, STRM, STRN, VWM, VWN, NPARAM };

bool pcv_cl_xgemm_parse(const char *tuning, int *p)
{
    const char *x = tuning;
    while ((x = strstr(x, "xgemm=")) && x != tuning && x[-1] != ',')
        x++;
    if (!x)
        return false;
    x += 6;
    for (int i = 0; i < NPARAM; i++) {
        char *end;
        long v = strtol(x, &end, 10);
        if (end == x || v < 0 || v > 4096)
            return false;
        p[i] = (int)v;
        x = *end == ':' ? end + 1 : end;
    }
    return true;
}

/* The constraints of CLBlast's Xgemm kernel (its tuner's): the tile MWG x NWG is covered by
 * MDIMC x NDIMC work-items with VWM/VWN-wide vectors, the local tiles are loaded by MDIMA /
 * NDIMB shaped work-groups, KWG is unrolled by KWI; the work-group and the local memory fit the
 * device. GEMMK 1 (2D register tiling) is not used. */
bool pcv_cl_xgemm_valid(const int *p, const pcv_cl_device_info *info)
{
    int wg = p[MDIMC] * p[NDIMC];
    if (p[GEMMK] != 0 || p[KREG] != 1 || (size_t)wg > info->max_work_group || (size_t)p[MDIMC] > info->max_item_size0)
        return false;
    if (p[MWG] % (p[MDIMC] * p[VWM]) || p[NWG] % (p[NDIMC] * p[VWN]) || p[MWG] % (p[MDIMA] * p[VWM]) ||
        p[NWG] % (p[NDIMB] * p[VWN]))
        return false;
    if (wg % p[MDIMA] || wg % p[NDIMB] || p[KWG] % (wg / p[MDIMA]) || p[KWG] % (wg / p[NDIMB]) || p[KWG] % p[KWI])
        return false;
    uint64_t local = 4ull * ((p[SA] ? (uint64_t)p[KWG] * p[MWG] : 0) + (p[SB] ? (uint64_t)p[KWG] * p[NWG] : 0));
    return local <= info->local_mem;
}
