/* Limits on untrusted input: the defaults, the process-wide setting and the parser of
 * "name=value,..." (PERCEIVER_LIMITS). Every limit is documented in docs/limits.md. */
#include "util/limits.h"
#include "util/error.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS(X)                                                                                    \
    X(image_pixels, 178956970)                                                                       \
    X(batch, 4096)                                                                                   \
    X(forward_bytes, (int64_t)16 << 30)                                                              \
    X(num_blocks, 64)                                                                                \
    X(layers, 1024)                                                                                  \
    X(parameters, (int64_t)1 << 32)                                                                  \
    X(pickle_bytes, (int64_t)128 << 20)                                                              \
    X(pickle_nodes, 65536)                                                                           \
    X(archive_entries, (int64_t)1 << 20)                                                             \
    X(text_bytes, (int64_t)1 << 20)

void pcv_limits_default(pcv_limits *l)
{
#define SET(name, value) l->name = value;
    FIELDS(SET)
#undef SET
}

static pcv_limits g_limits;
static bool g_init;

const pcv_limits *pcv_limits_now(void)
{
    if (!g_init) {
        pcv_limits_default(&g_limits);
        g_init = true;
    }
    return &g_limits;
}

void pcv_get_limits(pcv_limits *l) { *l = *pcv_limits_now(); }

pcv_status pcv_set_limits(const pcv_limits *l, pcv_error *err)
{
    if (!l)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "pcv_set_limits: NULL limits");
    pcv_limits d, n = *l;
    pcv_limits_default(&d);
#define FIX(name, value)                                                                             \
    if (n.name <= 0)                                                                                 \
        n.name = d.name;
    FIELDS(FIX)
#undef FIX
    g_limits = n;
    g_init = true;
    return PCV_OK;
}

static int64_t *field(pcv_limits *l, const char *name, size_t len)
{
#define FIND(f, value)                                                                               \
    if (len == strlen(#f) && memcmp(name, #f, len) == 0)                                             \
        return &l->f;
    FIELDS(FIND)
#undef FIND
    return NULL;
}

pcv_status pcv_parse_limits(const char *spec, pcv_limits *l, pcv_error *err)
{
    const char *p = spec ? spec : "";
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (len == 0) {
            p += end ? 1 : 0;
            continue;
        }
        int64_t *f = eq ? field(l, p, (size_t)(eq - p)) : NULL;
        if (!f)
            return (pcv_status)pcv_set_error(
                err, PCV_ERR_INPUT,
                "limits: '%.*s' is not name=value with a known name (image_pixels, batch, forward_bytes, "
                "num_blocks, layers, parameters, pickle_bytes, pickle_nodes, archive_entries, text_bytes)",
                (int)len, p);
        char num[32];
        size_t vl = len - (size_t)(eq + 1 - p);
        if (vl == 0 || vl >= sizeof num)
            return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "limits: bad value in '%.*s'", (int)len, p);
        memcpy(num, eq + 1, vl);
        num[vl] = '\0';
        int shift = 0;
        char last = num[vl - 1];
        if (last == 'K' || last == 'k')
            shift = 10;
        else if (last == 'M' || last == 'm')
            shift = 20;
        else if (last == 'G' || last == 'g')
            shift = 30;
        if (shift)
            num[--vl] = '\0';
        char *e;
        errno = 0;
        long long v = strtoll(num, &e, 10);
        if (vl == 0 || *e || errno || v <= 0 || v > (INT64_MAX >> shift))
            return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT,
                                             "limits: '%.*s': the value must be a positive integer "
                                             "(optionally with K, M or G)", (int)len, p);
        *f = (int64_t)v << shift;
        p += len + (end ? 1 : 0);
    }
    return PCV_OK;
}

const char *pcv_limit_text(const char *name, char *buf, size_t cap)
{
    pcv_limits l = *pcv_limits_now();
    int64_t *f = field(&l, name, strlen(name));
    snprintf(buf, cap, "the limit %s = %" PRId64 " (raise it with PERCEIVER_LIMITS=%s=N, or pcv_set_limits)", name,
             f ? *f : (int64_t)0, name);
    return buf;
}
