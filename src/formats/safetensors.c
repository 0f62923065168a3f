/* safetensors reader (mmap + strict validation) and atomic writer.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON, then the data buffer that the
 * per-tensor "data_offsets" index into. The reader follows the validation rules of the
 * reference implementation (see shared/spec/checkpoint-formats.md section 7.3) and additionally
 * rejects duplicate tensor names outright. */
#include "formats/formats.h"
#include "util/error.h"

#include "util/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ull
#define ST_METADATA "__metadata__"

/* ---- little-endian loads (the data may be unaligned and the host could be big-endian) ---- */

static uint16_t ld_u16(const unsigned char *p) { return (uint16_t)(p[0] | (unsigned)p[1] << 8); }

static uint32_t ld_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld_u64(const unsigned char *p)
{
    return (uint64_t)ld_u32(p) | (uint64_t)ld_u32(p + 4) << 32;
}

static float f32_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double f64_from_bits(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* IEEE binary16 -> binary32, exact for every input (subnormals, infinities, NaN payloads). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f)
        return f32_from_bits(sign | 0x7f800000u | mant << 13);
    if (exp != 0)
        return f32_from_bits(sign | (exp + 112u) << 23 | mant << 13); /* rebias 15 -> 127 */
    /* zero or subnormal: mant * 2^-24, exact in float */
    float mag = (float)mant * 0x1p-24f;
    return sign ? -mag : mag;
}

/* "[2,3]" */
static void format_shape(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? "," : "", shape[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
}

/* numel and byte count of a shape, with overflow checks; returns 0 on success. */
static int shape_bytes(const int64_t *shape, int ndim, size_t elem, int64_t *numel,
                       uint64_t *nbytes)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i])
            return -1;
        n *= shape[i];
    }
    if (elem == 0 || n > INT64_MAX / (int64_t)elem)
        return -1;
    *numel = n;
    *nbytes = (uint64_t)n * elem;
    return 0;
}

/* ---- reader ----------------------------------------------------------------------------- */

typedef struct st_span {
    uint64_t begin, end;
    const pcv_st_tensor *t;
} st_span;

static int map_file(pcv_safetensors *st, const char *path, pcv_error *err)
{
    int rc = pcv_map_file(path, "a safetensors file", &st->map, &st->map_size, err);
    if (rc == 0 && st->map_size < 8) {
        rc = pcv_set_error(err, PCV_ERR_FORMAT,
                           "%s: file is only %zu bytes, too short for the 8-byte safetensors "
                           "header length", path, st->map_size);
        pcv_unmap_file(st->map, st->map_size);
        st->map = NULL;
        st->map_size = 0;
    }
    return rc;
}

/* Known safetensors dtypes that this engine does not convert. */
static int is_unsupported_dtype(const char *s)
{
    static const char *const names[] = {"C64",    "F8_E5M2",     "F8_E4M3",     "F8_E8M0",
                                        "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F6_E2M3", "F6_E3M2",
                                        "F4"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0)
            return 1;
    return 0;
}

static int parse_dtype(const char *path, pcv_st_tensor *t, json_t *entry, pcv_error *err)
{
    json_t *jd = json_object_get(entry, "dtype");
    if (!json_is_string(jd))
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: tensor '%s': missing or non-string \"dtype\"",
                             path, t->name);
    const char *s = json_string_value(jd);
    t->dtype = pcv_dtype_from_name(s);
    if (t->dtype != PCV_DT_INVALID)
        return 0;
    if (is_unsupported_dtype(s))
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported",
                             path, t->name, s);
    return pcv_set_error(err, PCV_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path,
                         t->name, s);
}

static int parse_shape(const char *path, pcv_st_tensor *t, json_t *entry, uint64_t *nbytes,
                       pcv_error *err)
{
    json_t *js = json_object_get(entry, "shape");
    if (!json_is_array(js))
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"",
                             path, t->name);
    size_t nd = json_array_size(js);
    if (nd > PCV_MAX_DIMS)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "%s: tensor '%s': %zu dimensions (at most %d supported)", path,
                             t->name, nd, PCV_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *v = json_array_get(js, i);
        if (!json_is_integer(v))
            return pcv_set_error(err, PCV_ERR_FORMAT,
                                 "%s: tensor '%s': shape[%zu] is not an integer", path, t->name, i);
        json_int_t d = json_integer_value(v);
        if (d < 0)
            return pcv_set_error(err, PCV_ERR_FORMAT,
                                 "%s: tensor '%s': shape[%zu] = %lld is negative", path, t->name,
                                 i, (long long)d);
        t->shape[i] = (int64_t)d;
    }
    if (shape_bytes(t->shape, t->ndim, pcv_dtype_size(t->dtype), &t->numel, nbytes) != 0) {
        char sh[256];
        format_shape(sh, sizeof sh, t->shape, t->ndim);
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: tensor '%s': %s shape %s overflows the 64-bit element/byte "
                             "count", path, t->name, pcv_dtype_name(t->dtype), sh);
    }
    return 0;
}

static int parse_offsets(const char *path, const pcv_st_tensor *t, json_t *entry, st_span *sp,
                         pcv_error *err)
{
    json_t *jo = json_object_get(entry, "data_offsets");
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(jb) ||
        !json_is_integer(je))
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: tensor '%s': \"data_offsets\" must be [begin, end] integers",
                             path, t->name);
    json_int_t b = json_integer_value(jb), e = json_integer_value(je);
    if (b < 0 || e < 0)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: tensor '%s': negative data_offsets [%lld,%lld]", path, t->name,
                             (long long)b, (long long)e);
    if (e < b)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets [%lld,%lld] end before they begin",
                             path, t->name, (long long)b, (long long)e);
    sp->begin = (uint64_t)b;
    sp->end = (uint64_t)e;
    sp->t = t;
    return 0;
}

static int parse_entry(const pcv_safetensors *st, pcv_st_tensor *t, json_t *entry, st_span *sp,
                       const unsigned char *data, uint64_t data_len, pcv_error *err)
{
    if (!json_is_object(entry))
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object",
                             st->path, t->name);
    uint64_t nbytes = 0;
    int rc = parse_dtype(st->path, t, entry, err);
    if (!rc)
        rc = parse_shape(st->path, t, entry, &nbytes, err);
    if (!rc)
        rc = parse_offsets(st->path, t, entry, sp, err);
    if (rc)
        return rc;
    if (sp->end - sp->begin != nbytes) {
        char sh[256];
        format_shape(sh, sizeof sh, t->shape, t->ndim);
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] span %" PRIu64
                             " bytes but %s shape %s needs %" PRIu64,
                             st->path, t->name, sp->begin, sp->end, sp->end - sp->begin,
                             pcv_dtype_name(t->dtype), sh, nbytes);
    }
    if (sp->end > data_len)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64
                             "] extend past the %" PRIu64 " data bytes in the file (truncated?)",
                             st->path, t->name, sp->begin, sp->end, data_len);
    t->data = data + sp->begin;
    t->nbytes = (size_t)nbytes;
    return 0;
}

static int check_metadata(const char *path, json_t *meta, pcv_error *err)
{
    if (!json_is_object(meta))
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: \"__metadata__\" is not a JSON object", path);
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return pcv_set_error(err, PCV_ERR_FORMAT,
                                 "%s: \"__metadata__\" value for '%s' is not a string", path, k);
    }
    return 0;
}

static int cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

/* Offsets sorted by begin must tile [0, data_len) exactly: no holes, overlaps or tail. */
static int check_layout(const char *path, st_span *spans, int n, uint64_t data_len,
                        pcv_error *err)
{
    qsort(spans, (size_t)n, sizeof *spans, cmp_span);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const st_span *s = &spans[i];
        if (s->begin > pos) {
            if (i == 0)
                return pcv_set_error(err, PCV_ERR_FORMAT,
                                     "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64
                                     "] leave a hole of %" PRIu64 " bytes at the start of the data",
                                     path, s->t->name, s->begin, s->end, s->begin);
            return pcv_set_error(err, PCV_ERR_FORMAT,
                                 "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64
                                 "] leave a hole of %" PRIu64 " bytes after tensor '%s' [%" PRIu64
                                 ",%" PRIu64 "]",
                                 path, s->t->name, s->begin, s->end, s->begin - pos,
                                 spans[i - 1].t->name, spans[i - 1].begin, spans[i - 1].end);
        }
        if (s->begin < pos)
            return pcv_set_error(err, PCV_ERR_FORMAT,
                                 "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64
                                 "] overlap tensor '%s' [%" PRIu64 ",%" PRIu64 "]",
                                 path, s->t->name, s->begin, s->end, spans[i - 1].t->name,
                                 spans[i - 1].begin, spans[i - 1].end);
        pos = s->end;
    }
    if (pos != data_len)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: %" PRIu64 " trailing bytes after the last tensor's data "
                             "(tensor data ends at %" PRIu64 ", file has %" PRIu64 " data bytes)",
                             path, data_len - pos, pos, data_len);
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const pcv_st_tensor *)a)->name, ((const pcv_st_tensor *)b)->name);
}

static int parse_entries(pcv_safetensors *st, json_t *root, const unsigned char *data,
                         uint64_t data_len, pcv_error *err)
{
    size_t total = json_object_size(root);
    json_t *meta = json_object_get(root, ST_METADATA);
    if (meta) {
        int rc = check_metadata(st->path, meta, err);
        if (rc)
            return rc;
        total--;
    }
    if (total > INT32_MAX)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: too many tensors (%zu)", st->path, total);
    st->tensors = calloc(total ? total : 1, sizeof *st->tensors);
    st_span *spans = calloc(total ? total : 1, sizeof *spans);
    if (!st->tensors || !spans) {
        free(spans);
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory for %zu tensors", st->path,
                             total);
    }
    int rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, ST_METADATA) == 0)
            continue;
        pcv_st_tensor *t = &st->tensors[st->count];
        t->name = strdup(key);
        if (!t->name) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", st->path);
            break;
        }
        st->count++; /* counted as soon as it owns memory, so pcv_st_unmap frees it */
        rc = parse_entry(st, t, val, &spans[st->count - 1], data, data_len, err);
        if (rc)
            break;
    }
    if (!rc)
        rc = check_layout(st->path, spans, st->count, data_len, err);
    free(spans); /* spans point at tensors: drop them before re-sorting by name */
    if (rc)
        return rc;
    qsort(st->tensors, (size_t)st->count, sizeof *st->tensors, cmp_tensor_name);
    for (int i = 1; i < st->count; i++) /* jansson already rejects these; belt and braces */
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0)
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: duplicate tensor name '%s'",
                                 st->path, st->tensors[i].name);
    return 0;
}

static int parse_header(pcv_safetensors *st, pcv_error *err)
{
    const unsigned char *base = st->map;
    uint64_t n = ld_u64(base);
    uint64_t avail = (uint64_t)st->map_size - 8;
    if (n > ST_MAX_HEADER)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: header length %" PRIu64 " exceeds the limit of %llu bytes",
                             st->path, n, ST_MAX_HEADER);
    if (n > avail)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: header length %" PRIu64 " runs past the end of the file (%zu "
                             "bytes)", st->path, n, st->map_size);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return pcv_set_error(err, PCV_ERR_FORMAT,
                                 "%s: duplicate tensor name in header (line %d, column %d): %s",
                                 st->path, jerr.line, jerr.column, jerr.text);
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: header is not valid JSON (line %d, column %d): %s", st->path,
                             jerr.line, jerr.column, jerr.text);
    }
    int rc;
    if (!json_is_object(root))
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: header JSON is not an object", st->path);
    else
        rc = parse_entries(st, root, base + 8 + n, avail - n, err);
    json_decref(root);
    return rc;
}

int pcv_st_map(pcv_safetensors *st, const char *path, pcv_error *err)
{
    if (!st || !path)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_st_map: NULL argument");
    memset(st, 0, sizeof *st);
    st->path = strdup(path);
    if (!st->path)
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", path);
    int rc = map_file(st, path, err);
    if (!rc)
        rc = parse_header(st, err);
    if (rc)
        pcv_st_unmap(st);
    return rc;
}

void pcv_st_unmap(pcv_safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->count; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    if (st->map)
        pcv_unmap_file(st->map, st->map_size);
    free(st->path);
    memset(st, 0, sizeof *st);
}

const pcv_st_tensor *pcv_st_find(const pcv_safetensors *st, const char *name)
{
    if (!st || !name || st->count <= 0)
        return NULL;
    pcv_st_tensor key = {.name = (char *)name};
    return bsearch(&key, st->tensors, (size_t)st->count, sizeof *st->tensors, cmp_tensor_name);
}

/* ---- conversions -------------------------------------------------------------------------- */

static int is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Element i of an integer tensor as int64 (U64 values above INT64_MAX wrap; callers check). */
static int64_t int_elem(pcv_dtype dt, const unsigned char *p, size_t i)
{
    switch (dt) {
    case PCV_DT_I64: return (int64_t)ld_u64(p + 8 * i);
    case PCV_DT_U64: return (int64_t)ld_u64(p + 8 * i);
    case PCV_DT_I32: return (int32_t)ld_u32(p + 4 * i);
    case PCV_DT_U32: return ld_u32(p + 4 * i);
    case PCV_DT_I16: return (int16_t)ld_u16(p + 2 * i);
    case PCV_DT_U16: return ld_u16(p + 2 * i);
    case PCV_DT_I8: return (int8_t)p[i];
    case PCV_DT_U8: return p[i];
    case PCV_DT_BOOL: return p[i] != 0;
    default: return 0;
    }
}

static int is_int_dtype(pcv_dtype dt)
{
    switch (dt) {
    case PCV_DT_I64: case PCV_DT_I32: case PCV_DT_I16: case PCV_DT_I8:
    case PCV_DT_U64: case PCV_DT_U32: case PCV_DT_U16: case PCV_DT_U8: case PCV_DT_BOOL:
        return 1;
    default:
        return 0;
    }
}

static int check_conv_args(const pcv_st_tensor *t, const void *out, const char *fn,
                           pcv_error *err)
{
    if (!t || (!out && t->numel > 0) || (!t->data && t->numel > 0))
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: NULL argument", fn);
    return 0;
}

pcv_status pcv_st_to_f32(const pcv_st_tensor *t, float *out, pcv_error *err)
{
    int rc = check_conv_args(t, out, "pcv_st_to_f32", err);
    if (rc)
        return rc;
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case PCV_DT_F32:
        if (is_little_endian()) {
            if (n)
                memcpy(out, p, n * sizeof(float));
        } else {
            for (size_t i = 0; i < n; i++)
                out[i] = f32_from_bits(ld_u32(p + 4 * i));
        }
        return 0;
    case PCV_DT_F16:
        for (size_t i = 0; i < n; i++)
            out[i] = half_to_float(ld_u16(p + 2 * i));
        return 0;
    case PCV_DT_BF16: /* bfloat16 is the upper half of a float32 */
        for (size_t i = 0; i < n; i++)
            out[i] = f32_from_bits((uint32_t)ld_u16(p + 2 * i) << 16);
        return 0;
    case PCV_DT_F64:
        for (size_t i = 0; i < n; i++)
            out[i] = (float)f64_from_bits(ld_u64(p + 8 * i));
        return 0;
    case PCV_DT_U64:
        for (size_t i = 0; i < n; i++)
            out[i] = (float)ld_u64(p + 8 * i);
        return 0;
    default:
        break;
    }
    if (!is_int_dtype(t->dtype))
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "tensor '%s': cannot convert dtype %s to F32",
                             t->name ? t->name : "?", pcv_dtype_name(t->dtype));
    for (size_t i = 0; i < n; i++)
        out[i] = (float)int_elem(t->dtype, p, i);
    return 0;
}

pcv_status pcv_st_to_i64(const pcv_st_tensor *t, int64_t *out, pcv_error *err)
{
    int rc = check_conv_args(t, out, "pcv_st_to_i64", err);
    if (rc)
        return rc;
    const char *name = t->name ? t->name : "?";
    if (!is_int_dtype(t->dtype))
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "tensor '%s': dtype %s is not an integer type (integer tensor "
                             "required)", name, pcv_dtype_name(t->dtype));
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    for (size_t i = 0; i < n; i++) {
        if (t->dtype == PCV_DT_U64 && ld_u64(p + 8 * i) > (uint64_t)INT64_MAX)
            return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                                 "tensor '%s': U64 value %" PRIu64 " at index %zu does not fit "
                                 "in I64", name, ld_u64(p + 8 * i), i);
        out[i] = int_elem(t->dtype, p, i);
    }
    return 0;
}

/* ---- writer ------------------------------------------------------------------------------- */

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp((*(const pcv_st_entry *const *)a)->name, (*(const pcv_st_entry *const *)b)->name);
}

static int check_duplicates(const char *path, const pcv_st_entry *entries, int count,
                            pcv_error *err)
{
    const pcv_st_entry **sorted = malloc((count ? (size_t)count : 1) * sizeof *sorted);
    if (!sorted)
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", path);
    for (int i = 0; i < count; i++)
        sorted[i] = &entries[i];
    qsort(sorted, (size_t)count, sizeof *sorted, cmp_entry_name);
    int rc = 0;
    for (int i = 1; i < count && !rc; i++)
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
            rc = pcv_set_error(err, PCV_ERR_INPUT, "%s: duplicate tensor name '%s'", path,
                               sorted[i]->name);
    free(sorted);
    return rc;
}

/* Validates the entries and computes each one's byte count. */
static int check_entries(const char *path, const pcv_st_entry *entries, int count,
                         uint64_t *nbytes, pcv_error *err)
{
    uint64_t total = 0;
    for (int i = 0; i < count; i++) {
        const pcv_st_entry *e = &entries[i];
        if (!e->name || !e->name[0] || strcmp(e->name, ST_METADATA) == 0)
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: entry %d has an invalid tensor name",
                                 path, i);
        if (pcv_dtype_size(e->dtype) == 0)
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: tensor '%s': invalid dtype %d", path,
                                 e->name, (int)e->dtype);
        if (e->ndim < 0 || e->ndim > PCV_MAX_DIMS)
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: tensor '%s': invalid ndim %d", path,
                                 e->name, e->ndim);
        int64_t numel;
        if (shape_bytes(e->shape, e->ndim, pcv_dtype_size(e->dtype), &numel, &nbytes[i]) != 0)
            return pcv_set_error(err, PCV_ERR_INPUT,
                                 "%s: tensor '%s': negative or overflowing shape", path, e->name);
        if (nbytes[i] > 0 && !e->data)
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: tensor '%s': NULL data", path, e->name);
        if (nbytes[i] > (uint64_t)INT64_MAX - total)
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: total tensor size overflows", path);
        total += nbytes[i];
    }
    return check_duplicates(path, entries, count, err);
}

static json_t *entry_json(const pcv_st_entry *e, uint64_t begin, uint64_t end)
{
    json_t *shape = json_array();
    for (int d = 0; shape && d < e->ndim; d++)
        if (json_array_append_new(shape, json_integer((json_int_t)e->shape[d])) != 0) {
            json_decref(shape);
            return NULL;
        }
    /* "o" steals the shape reference even on failure */
    return json_pack("{s:s, s:o, s:[I,I]}", "dtype", pcv_dtype_name(e->dtype), "shape", shape,
                     "data_offsets", (json_int_t)begin, (json_int_t)end);
}

/* Builds the header JSON, space-padded to a multiple of 8 bytes. */
static int build_header(const char *path, const pcv_st_entry *entries, int count,
                        const uint64_t *nbytes, char **out, size_t *out_len, pcv_error *err)
{
    json_t *root = json_object();
    if (!root || json_object_set_new(root, ST_METADATA, json_pack("{s:s}", "format", "pt")) != 0) {
        json_decref(root);
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", path);
    }
    uint64_t pos = 0;
    for (int i = 0; i < count; i++) {
        json_t *ej = entry_json(&entries[i], pos, pos + nbytes[i]);
        /* set_new fails (and frees ej) on OOM or when the name is not valid UTF-8 */
        if (!ej || json_object_set_new(root, entries[i].name, ej) != 0) {
            json_decref(root);
            return pcv_set_error(err, PCV_ERR_INPUT,
                                 "%s: tensor '%s': cannot encode header entry (name not valid "
                                 "UTF-8, or out of memory)", path, entries[i].name);
        }
        pos += nbytes[i];
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text)
        return pcv_set_error(err, PCV_ERR_OOM, "%s: cannot serialise header", path);
    size_t len = strlen(text);
    size_t padded = (len + 7) & ~(size_t)7;
    char *buf = malloc(padded ? padded : 1);
    if (!buf) {
        free(text);
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", path);
    }
    memcpy(buf, text, len);
    memset(buf + len, ' ', padded - len);
    free(text);
    *out = buf;
    *out_len = padded;
    return 0;
}

static int write_contents(int fd, const char *header, size_t header_len,
                          const pcv_st_entry *entries, const uint64_t *nbytes, int count)
{
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    if (pcv_write_all(fd, len_le, sizeof len_le) != 0 || pcv_write_all(fd, header, header_len) != 0)
        return -1;
    for (int i = 0; i < count; i++)
        if (nbytes[i] && pcv_write_all(fd, entries[i].data, (size_t)nbytes[i]) != 0)
            return -1;
    return 0;
}

struct st_write_ctx {
    const char *header;
    size_t header_len;
    const pcv_st_entry *entries;
    const uint64_t *nbytes;
    int count;
};

static int write_contents_cb(int fd, void *p)
{
    struct st_write_ctx *c = p;
    return write_contents(fd, c->header, c->header_len, c->entries, c->nbytes, c->count);
}

pcv_status pcv_st_write(const char *path, const pcv_st_entry *entries, int count, pcv_error *err)
{
    if (!path || !path[0] || count < 0 || (count > 0 && !entries))
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_st_write: invalid arguments");
    uint64_t *nbytes = calloc(count ? (size_t)count : 1, sizeof *nbytes);
    if (!nbytes)
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", path);
    char *header = NULL;
    size_t header_len = 0;
    int rc = check_entries(path, entries, count, nbytes, err);
    if (!rc)
        rc = build_header(path, entries, count, nbytes, &header, &header_len, err);
    if (!rc) {
        struct st_write_ctx ctx = {header, header_len, entries, nbytes, count};
        rc = pcv_write_atomic(path, write_contents_cb, &ctx, err);
    }
    free(header);
    free(nbytes);
    return rc;
}

/* ---- the public, allocating API ---- */

pcv_status pcv_st_open(const char *path, pcv_safetensors **out, pcv_error *err)
{
    *out = NULL;
    pcv_safetensors *st = calloc(1, sizeof *st);
    if (!st)
        return (pcv_status)pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    int rc = pcv_st_map(st, path, err);
    if (rc) {
        free(st);
        return (pcv_status)rc;
    }
    *out = st;
    return PCV_OK;
}

void pcv_st_close(pcv_safetensors *st)
{
    if (!st)
        return;
    pcv_st_unmap(st);
    free(st);
}

const char *pcv_st_path(const pcv_safetensors *st) { return st->path; }
int pcv_st_count(const pcv_safetensors *st) { return st->count; }

const pcv_st_tensor *pcv_st_tensor_at(const pcv_safetensors *st, int i)
{
    return i >= 0 && i < st->count ? &st->tensors[i] : NULL;
}
