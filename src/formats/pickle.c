/* A safe pickle reader: a pickle virtual machine that never executes anything.
 *
 * See pickle.h for the model and shared/spec/checkpoint-formats.md sections 3 to 6 for the byte
 * formats. The machine keeps CPython's semantics for the value stack, the mark stack and the
 * memo (memo entries are shared pointers: the NumPy dtype object is memoized before its BUILD
 * and re-fetched later, so a copy would lose its byte order). Callables are never called: the
 * few whitelisted ones are interpreted here with their documented meaning. */
#include "formats/pickle.h"
#include "util/error.h"
#include "util/limits.h"

#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PK_CHUNK 1024         /* objects per arena block */
#define PK_MEMO_SLACK 65536   /* memo indices may run this far ahead of the puts seen */

struct pk_block {
    pk_block *next;
    size_t n;
    pk_obj objs[PK_CHUNK];
};

/* ---- the whitelist -------------------------------------------------------------------------- */

typedef enum pk_gid {
    G_HAIKU_MAPPING, /* identity on its single dict argument */
    G_ODICT,         /* collections.OrderedDict */
    G_BYTES,         /* bytes(): only without arguments */
    G_NP_RECONSTRUCT,
    G_NP_NDARRAY,
    G_NP_DTYPE,
    G_NP_FROMBUFFER,
    G_NP_SCALAR,
    G_CODECS_ENCODE,
    G_JAX_RECONSTRUCT,
    G_DTYPE_TAG,     /* a scalar type used as numpy.dtype's first argument (ml_dtypes.bfloat16) */
    G_TORCH_REBUILD_V2,
    G_TORCH_REBUILD_V3,
    G_TORCH_REBUILD_PARAM,
    G_TORCH_STORAGE, /* storage class: type tag inside persistent ids */
    G_TORCH_DTYPE    /* torch.float32 etc. (argument of _rebuild_tensor_v3) */
} pk_gid;

static const struct {
    const char *module, *name;
    pk_gid id;
    pcv_dtype dt;
} whitelist[] = {
    /* Haiku: frozendict (<= v0.0.2), FlatMapping (v0.0.3 on; newer versions still pickle their
     * FlatMap under this name), FlatMap for completeness */
    {"haiku._src.data_structures", "FlatMapping", G_HAIKU_MAPPING, 0},
    {"haiku._src.data_structures", "FlatMap", G_HAIKU_MAPPING, 0},
    {"haiku._src.data_structures", "frozendict", G_HAIKU_MAPPING, 0},
    {"collections", "OrderedDict", G_ODICT, 0},
    /* bytes() -- protocol 2 writes an empty bytes object as a call, under both names */
    {"builtins", "bytes", G_BYTES, 0},
    {"__builtin__", "bytes", G_BYTES, 0},
    /* NumPy 1.x and 2.x module paths */
    {"numpy.core.multiarray", "_reconstruct", G_NP_RECONSTRUCT, 0},
    {"numpy._core.multiarray", "_reconstruct", G_NP_RECONSTRUCT, 0},
    {"numpy", "ndarray", G_NP_NDARRAY, 0},
    {"numpy", "dtype", G_NP_DTYPE, 0},
    {"numpy.core.numeric", "_frombuffer", G_NP_FROMBUFFER, 0},
    {"numpy._core.numeric", "_frombuffer", G_NP_FROMBUFFER, 0},
    {"numpy.core.multiarray", "scalar", G_NP_SCALAR, 0},
    {"numpy._core.multiarray", "scalar", G_NP_SCALAR, 0},
    {"_codecs", "encode", G_CODECS_ENCODE, 0},
    {"jax._src.array", "_reconstruct_array", G_JAX_RECONSTRUCT, 0},
    {"ml_dtypes", "bfloat16", G_DTYPE_TAG, PCV_DT_BF16},
    /* torch */
    {"torch._utils", "_rebuild_tensor_v2", G_TORCH_REBUILD_V2, 0},
    {"torch._utils", "_rebuild_tensor_v3", G_TORCH_REBUILD_V3, 0},
    {"torch._utils", "_rebuild_parameter", G_TORCH_REBUILD_PARAM, 0},
    {"torch._utils", "_rebuild_parameter_with_state", G_TORCH_REBUILD_PARAM, 0},
    {"torch", "DoubleStorage", G_TORCH_STORAGE, PCV_DT_F64},
    {"torch", "FloatStorage", G_TORCH_STORAGE, PCV_DT_F32},
    {"torch", "HalfStorage", G_TORCH_STORAGE, PCV_DT_F16},
    {"torch", "BFloat16Storage", G_TORCH_STORAGE, PCV_DT_BF16},
    {"torch", "LongStorage", G_TORCH_STORAGE, PCV_DT_I64},
    {"torch", "IntStorage", G_TORCH_STORAGE, PCV_DT_I32},
    {"torch", "ShortStorage", G_TORCH_STORAGE, PCV_DT_I16},
    {"torch", "CharStorage", G_TORCH_STORAGE, PCV_DT_I8},
    {"torch", "ByteStorage", G_TORCH_STORAGE, PCV_DT_U8},
    {"torch", "BoolStorage", G_TORCH_STORAGE, PCV_DT_BOOL},
    {"torch", "UntypedStorage", G_TORCH_STORAGE, PCV_DT_U8},
    {"torch", "float64", G_TORCH_DTYPE, PCV_DT_F64},
    {"torch", "float32", G_TORCH_DTYPE, PCV_DT_F32},
    {"torch", "float16", G_TORCH_DTYPE, PCV_DT_F16},
    {"torch", "bfloat16", G_TORCH_DTYPE, PCV_DT_BF16},
    {"torch", "int64", G_TORCH_DTYPE, PCV_DT_I64},
    {"torch", "int32", G_TORCH_DTYPE, PCV_DT_I32},
    {"torch", "int16", G_TORCH_DTYPE, PCV_DT_I16},
    {"torch", "int8", G_TORCH_DTYPE, PCV_DT_I8},
    {"torch", "uint8", G_TORCH_DTYPE, PCV_DT_U8},
    {"torch", "uint16", G_TORCH_DTYPE, PCV_DT_U16},
    {"torch", "uint32", G_TORCH_DTYPE, PCV_DT_U32},
    {"torch", "uint64", G_TORCH_DTYPE, PCV_DT_U64},
    {"torch", "bool", G_TORCH_DTYPE, PCV_DT_BOOL},
};
#define NWHITE ((int)(sizeof whitelist / sizeof whitelist[0]))

const char *pk_global_name(const pk_obj *o, char *buf, size_t cap)
{
    if (!o || o->kind != PK_GLOBAL || o->u.global < 0 || o->u.global >= NWHITE)
        snprintf(buf, cap, "?");
    else
        snprintf(buf, cap, "%s.%s", whitelist[o->u.global].module, whitelist[o->u.global].name);
    return buf;
}

static pk_gid gid(const pk_obj *o) { return whitelist[o->u.global].id; }

/* ---- the machine ---------------------------------------------------------------------------- */

typedef struct vm {
    const unsigned char *buf;
    size_t len, pos, op_pos;
    unsigned char op;
    const pk_options *opt;
    pcv_error *err;
    pk_doc *doc;
    pk_obj **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    pk_obj **memo;
    size_t memo_cap, nput;
    pk_obj *none, *t, *f, *empty_tuple; /* shared immutable singletons (in the arena) */
    pk_obj **pend;                      /* arrays made by numpy _reconstruct, BUILD pending */
    size_t npend, cappend;
} vm;

static const char *opname(unsigned char op);

#define FAIL(code, ...) vm_fail(m, code, __VA_ARGS__)

static int vm_fail(vm *m, pcv_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int vm_fail(vm *m, pcv_status code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pcv_set_error(m->err, code, "%s: pickle byte %zu (%s): %s", m->doc->name, m->op_pos,
                         opname(m->op), msg);
}

/* Every allocation goes through the budget so that a hostile file cannot make the reader
 * allocate without bound. */
static int budget(vm *m, size_t n)
{
    pk_doc *d = m->doc;
    if (n > d->limit - d->used)
        return FAIL(PCV_ERR_FORMAT,
                    "the pickle needs more than %zu MiB of memory to decode, over its budget of %zu MiB "
                    "(2 x the %zu-byte file + %s)", (d->used + n) >> 20, d->limit >> 20, d->len,
                    PCV_LIMIT_TEXT("pickle_bytes"));
    d->used += n;
    return 0;
}

int pk_budget_take(pk_doc *d, size_t n, const char *what, pcv_error *err)
{
    if (n > d->limit - d->used)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: %s needs more than %zu MiB of memory, over the pickle's budget of %zu MiB "
                             "(2 x the %zu-byte file + %s)", d->name, what, (d->used + n) >> 20, d->limit >> 20,
                             d->len, PCV_LIMIT_TEXT("pickle_bytes"));
    d->used += n;
    return 0;
}

static int grow(vm *m, void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 8;
    while (nc < need)
        nc *= 2;
    if (nc > SIZE_MAX / elem)
        return FAIL(PCV_ERR_FORMAT, "size overflow");
    int rc = budget(m, (nc - *cap) * elem);
    if (rc)
        return rc;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return FAIL(PCV_ERR_OOM, "out of memory");
    *p = q;
    *cap = nc;
    return 0;
}

/* A buffer owned by the doc (copies of converted data). */
static unsigned char *doc_buf(vm *m, size_t n)
{
    pk_doc *d = m->doc;
    if (budget(m, n) || grow(m, (void **)&d->bufs, &d->capbufs, d->nbufs + 1, sizeof *d->bufs))
        return NULL;
    unsigned char *p = malloc(n ? n : 1);
    if (!p) {
        FAIL(PCV_ERR_OOM, "out of memory (%zu bytes)", n);
        return NULL;
    }
    d->bufs[d->nbufs++] = p;
    return p;
}

static pk_obj *new_obj(vm *m, pk_kind kind)
{
    pk_doc *d = m->doc;
    if (!d->blocks || d->blocks->n == PK_CHUNK) {
        if (budget(m, sizeof(pk_block)))
            return NULL;
        pk_block *b = malloc(sizeof *b);
        if (!b) {
            FAIL(PCV_ERR_OOM, "out of memory");
            return NULL;
        }
        b->n = 0;
        b->next = d->blocks;
        d->blocks = b;
    }
    pk_obj *o = &d->blocks->objs[d->blocks->n++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    return o;
}

static pk_array *new_array(vm *m, pk_obj *o)
{
    pk_array *a = (pk_array *)doc_buf(m, sizeof *a);
    if (a) {
        memset(a, 0, sizeof *a);
        o->u.arr = a;
    }
    return a;
}

/* ---- input ------------------------------------------------------------------------------ */

static int need(vm *m, size_t n)
{
    if (n > m->len - m->pos)
        return FAIL(PCV_ERR_FORMAT, "truncated: needs %zu more bytes, only %zu left", n,
                    m->len - m->pos);
    return 0;
}

static int rd_u8(vm *m, uint64_t *v)
{
    int rc = need(m, 1);
    if (!rc)
        *v = m->buf[m->pos++];
    return rc;
}

static int rd_le(vm *m, int n, uint64_t *v)
{
    int rc = need(m, (size_t)n);
    if (rc)
        return rc;
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--)
        x = x << 8 | m->buf[m->pos + (size_t)i];
    m->pos += (size_t)n;
    *v = x;
    return 0;
}

/* A declared length: checked against the remaining input before anything uses it. */
static int rd_len(vm *m, int n, size_t *out)
{
    uint64_t v;
    int rc = rd_le(m, n, &v);
    if (rc)
        return rc;
    if (n == 4 && m->op == 'T' && (v & 0x80000000u)) /* BINSTRING's length is signed */
        return FAIL(PCV_ERR_FORMAT, "negative length");
    if (v > m->len - m->pos)
        return FAIL(PCV_ERR_FORMAT,
                    "declared length %" PRIu64 " runs past the end of the data (%zu bytes left)",
                    v, m->len - m->pos);
    *out = (size_t)v;
    return 0;
}

/* One '\n'-terminated line (protocol 0 arguments); the newline is not included. */
static int rd_line(vm *m, const unsigned char **p, size_t *n)
{
    const unsigned char *s = m->buf + m->pos;
    const unsigned char *nl = memchr(s, '\n', m->len - m->pos);
    if (!nl)
        return FAIL(PCV_ERR_FORMAT, "truncated: no end of line");
    *p = s;
    *n = (size_t)(nl - s);
    m->pos += *n + 1;
    return 0;
}

/* ---- stack ------------------------------------------------------------------------------ */

static size_t base(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static int push(vm *m, pk_obj *o)
{
    if (!o)
        return m->err ? (int)m->err->code : PCV_ERR_OOM;
    int rc = grow(m, (void **)&m->stack, &m->scap, m->sp + 1, sizeof *m->stack);
    if (rc)
        return rc;
    m->stack[m->sp++] = o;
    return 0;
}

static int pop(vm *m, pk_obj **o)
{
    if (m->sp <= base(m))
        return FAIL(PCV_ERR_FORMAT, "stack underflow");
    *o = m->stack[--m->sp];
    return 0;
}

static int top(vm *m, pk_obj **o)
{
    if (m->sp <= base(m))
        return FAIL(PCV_ERR_FORMAT, "stack underflow");
    *o = m->stack[m->sp - 1];
    return 0;
}

/* Pops everything above the last mark and the mark; returns the items in *items (pointing into
 * the stack, valid until the next push) and their count. */
static int pop_mark(vm *m, pk_obj ***items, size_t *n)
{
    if (!m->nmarks)
        return FAIL(PCV_ERR_FORMAT, "no MARK to pop to");
    size_t b = m->marks[--m->nmarks];
    *items = m->stack ? m->stack + b : NULL; /* a MARK on an empty machine: no stack yet */
    *n = m->sp - b;
    m->sp = b;
    return 0;
}

/* ---- containers ------------------------------------------------------------------------- */

static int seq_append(vm *m, pk_obj *s, pk_obj *v)
{
    int rc = grow(m, (void **)&s->u.seq.v, &s->u.seq.cap, s->u.seq.n + 1, sizeof *s->u.seq.v);
    if (!rc)
        s->u.seq.v[s->u.seq.n++] = v;
    return rc;
}

static pk_obj *make_seq(vm *m, pk_kind kind, pk_obj **items, size_t n)
{
    if (kind == PK_TUPLE && n == 0)
        return m->empty_tuple;
    pk_obj *o = new_obj(m, kind);
    if (!o || grow(m, (void **)&o->u.seq.v, &o->u.seq.cap, n, sizeof *o->u.seq.v))
        return NULL;
    if (n)
        memcpy(o->u.seq.v, items, n * sizeof *items);
    o->u.seq.n = n;
    return o;
}

static int dict_set(vm *m, pk_obj *d, pk_obj *k, pk_obj *v)
{
    if (d->kind != PK_DICT)
        return FAIL(PCV_ERR_FORMAT, "item assignment on a %s (only dicts are allowed)",
                    pk_kind_name(d->kind));
    size_t cap = d->u.dict.cap;
    int rc = grow(m, (void **)&d->u.dict.k, &cap, d->u.dict.n + 1, sizeof *d->u.dict.k);
    if (!rc) {
        cap = d->u.dict.cap;
        rc = grow(m, (void **)&d->u.dict.v, &cap, d->u.dict.n + 1, sizeof *d->u.dict.v);
        d->u.dict.cap = cap;
    }
    if (rc)
        return rc;
    /* duplicates are kept (Python would overwrite); consumers take the last one and the
     * Haiku flattener rejects duplicate names outright */
    d->u.dict.k[d->u.dict.n] = k;
    d->u.dict.v[d->u.dict.n++] = v;
    return 0;
}

static bool is_int(const pk_obj *o) { return o->kind == PK_INT || o->kind == PK_BOOL; }
static int64_t int_val(const pk_obj *o) { return o->kind == PK_BOOL ? o->u.b : o->u.i; }
static bool is_tuple(const pk_obj *o, size_t n) { return o->kind == PK_TUPLE && o->u.seq.n == n; }

bool pk_str_eq(const pk_obj *o, const char *s)
{
    size_t n = strlen(s);
    return o && (o->kind == PK_STR || o->kind == PK_BYTES) && o->u.s.n == n &&
           memcmp(o->u.s.p, s, n) == 0;
}

pk_obj *pk_dict_get(const pk_obj *d, const char *key)
{
    if (!d || d->kind != PK_DICT)
        return NULL;
    for (size_t i = d->u.dict.n; i-- > 0;)
        if (pk_str_eq(d->u.dict.k[i], key))
            return d->u.dict.v[i];
    return NULL;
}

bool pk_is_mapping(const pk_obj *o) { return o && o->kind == PK_DICT; }

const char *pk_kind_name(pk_kind k)
{
    static const char *const names[] = {"None", "bool", "int", "int", "float", "str", "bytes",
                                        "tuple", "list", "set", "dict", "global", "numpy.dtype",
                                        "array", "torch storage", "torch tensor"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

/* ---- strings ---------------------------------------------------------------------------- */

/* UTF-8 as Python's 'surrogatepass' decoder accepts it (encoded surrogates allowed). */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len > n - i)
            return false;
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff)
            return false;
        i += len;
    }
    return true;
}

static pk_obj *make_bytes(vm *m, pk_kind kind, const unsigned char *p, size_t n)
{
    if (kind == PK_STR && !utf8_ok(p, n)) {
        FAIL(PCV_ERR_FORMAT, "string is not valid UTF-8");
        return NULL;
    }
    pk_obj *o = new_obj(m, kind);
    if (o) {
        o->u.s.p = p;
        o->u.s.n = n;
    }
    return o;
}

static size_t put_utf8(unsigned char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* UNICODE (protocol 0): raw-unicode-escape text -> UTF-8 (at most 2 bytes out per byte in). */
static pk_obj *raw_unicode(vm *m, const unsigned char *p, size_t n)
{
    unsigned char *out = doc_buf(m, 2 * n);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] == '\\' && i + 1 < n && (p[i + 1] == 'u' || p[i + 1] == 'U')) {
            size_t digits = p[i + 1] == 'u' ? 4 : 8;
            if (n - i - 2 < digits) {
                FAIL(PCV_ERR_FORMAT, "truncated \\u escape");
                return NULL;
            }
            uint32_t cp = 0;
            for (size_t j = 0; j < digits; j++) {
                int h = hexval(p[i + 2 + j]);
                if (h < 0) {
                    FAIL(PCV_ERR_FORMAT, "bad \\u escape");
                    return NULL;
                }
                cp = cp << 4 | (uint32_t)h;
            }
            if (cp > 0x10ffff) {
                FAIL(PCV_ERR_FORMAT, "\\U escape above U+10FFFF");
                return NULL;
            }
            o += put_utf8(out + o, cp); /* 6 or 10 input bytes -> at most 4 output bytes */
            i += 2 + digits;
        } else {
            o += put_utf8(out + o, p[i++]);
        }
    }
    pk_obj *s = new_obj(m, PK_STR);
    if (s) {
        s->u.s.p = out;
        s->u.s.n = o;
    }
    return s;
}

/* STRING (protocol 0): a Python 2 repr of a byte string, quoted, with escapes -> bytes. */
static pk_obj *quoted_string(vm *m, const unsigned char *p, size_t n)
{
    if (n < 2 || (p[0] != '\'' && p[0] != '"') || p[n - 1] != p[0]) {
        FAIL(PCV_ERR_FORMAT, "STRING argument is not quoted");
        return NULL;
    }
    p++, n -= 2;
    unsigned char *out = doc_buf(m, n);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] != '\\') {
            out[o++] = p[i++];
            continue;
        }
        if (++i >= n) {
            FAIL(PCV_ERR_FORMAT, "STRING ends with a backslash");
            return NULL;
        }
        unsigned char c = p[i++];
        switch (c) {
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case '\\': case '\'': case '"': out[o++] = c; break;
        case 'x': {
            int h1 = i < n ? hexval(p[i]) : -1, h2 = i + 1 < n ? hexval(p[i + 1]) : -1;
            if (h1 < 0 || h2 < 0) {
                FAIL(PCV_ERR_FORMAT, "bad \\x escape in STRING");
                return NULL;
            }
            out[o++] = (unsigned char)(h1 << 4 | h2);
            i += 2;
            break;
        }
        default:
            if (c >= '0' && c <= '7') { /* up to 3 octal digits */
                unsigned v = (unsigned)(c - '0');
                for (int k = 0; k < 2 && i < n && p[i] >= '0' && p[i] <= '7'; k++)
                    v = v * 8 + (unsigned)(p[i++] - '0');
                out[o++] = (unsigned char)v;
            } else {
                FAIL(PCV_ERR_FORMAT, "unsupported escape \\%c in STRING", c);
                return NULL;
            }
        }
    }
    pk_obj *s = new_obj(m, PK_BYTES);
    if (s) {
        s->u.s.p = out;
        s->u.s.n = o;
    }
    return s;
}

/* _codecs.encode(str, 'latin1'): every code point must be < 256 and becomes one byte. */
static pk_obj *latin1_encode(vm *m, const pk_obj *s)
{
    unsigned char *out = doc_buf(m, s->u.s.n);
    if (!out)
        return NULL;
    size_t o = 0;
    const unsigned char *p = s->u.s.p;
    for (size_t i = 0; i < s->u.s.n;) {
        if (p[i] < 0x80) {
            out[o++] = p[i++];
        } else if ((p[i] & 0xe0) == 0xc0 && i + 1 < s->u.s.n) {
            uint32_t cp = (uint32_t)(p[i] & 0x1f) << 6 | (p[i + 1] & 0x3f);
            if (cp > 0xff) {
                FAIL(PCV_ERR_FORMAT, "_codecs.encode: code point U+%04X is not latin-1", cp);
                return NULL;
            }
            out[o++] = (unsigned char)cp;
            i += 2;
        } else {
            FAIL(PCV_ERR_FORMAT, "_codecs.encode: string has characters outside latin-1");
            return NULL;
        }
    }
    pk_obj *b = new_obj(m, PK_BYTES);
    if (b) {
        b->u.s.p = out;
        b->u.s.n = o;
    }
    return b;
}

/* ---- integers --------------------------------------------------------------------------- */

static pk_obj *make_int(vm *m, int64_t v)
{
    pk_obj *o = new_obj(m, PK_INT);
    if (o)
        o->u.i = v;
    return o;
}

/* LONG1/LONG4 payload: two's complement little-endian. Up to 8 bytes become PK_INT, longer
 * ones (the 10-byte torch legacy magic) stay as raw bytes. */
static pk_obj *make_long(vm *m, const unsigned char *p, size_t n)
{
    if (n > 8)
        return make_bytes(m, PK_BIGINT, p, n);
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    if (n > 0 && n < 8 && (p[n - 1] & 0x80))
        v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    return make_int(m, (int64_t)v);
}

/* Decimal text of INT / LONG / PUT / GET. */
static int parse_decimal(vm *m, const unsigned char *p, size_t n, bool allow_L, int64_t *out)
{
    if (allow_L && n && p[n - 1] == 'L')
        n--;
    size_t i = 0;
    bool neg = false;
    if (i < n && (p[i] == '-' || p[i] == '+'))
        neg = p[i++] == '-';
    if (i == n)
        return FAIL(PCV_ERR_FORMAT, "empty number");
    uint64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return FAIL(PCV_ERR_FORMAT, "bad digit in a decimal number");
        if (v > (UINT64_MAX - 9) / 10 || v * 10 + (uint64_t)(p[i] - '0') > (uint64_t)INT64_MAX)
            return FAIL(PCV_ERR_FORMAT, "decimal number does not fit in 64 bits");
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* ---- memo ------------------------------------------------------------------------------- */

static int memo_put(vm *m, uint64_t idx)
{
    pk_obj *o = NULL;
    int rc = top(m, &o);
    if (rc)
        return rc;
    if (idx > m->nput + PK_MEMO_SLACK)
        return FAIL(PCV_ERR_FORMAT, "memo index %" PRIu64 " is out of range (%zu entries so far)",
                    idx, m->nput);
    size_t old = m->memo_cap;
    if ((rc = grow(m, (void **)&m->memo, &m->memo_cap, (size_t)idx + 1, sizeof *m->memo)))
        return rc;
    if (m->memo_cap > old)
        memset(m->memo + old, 0, (m->memo_cap - old) * sizeof *m->memo);
    m->memo[idx] = o;
    m->nput++;
    return 0;
}

static int memo_get(vm *m, uint64_t idx)
{
    if (idx >= m->memo_cap || !m->memo[idx])
        return FAIL(PCV_ERR_FORMAT, "memo index %" PRIu64 " was never stored", idx);
    return push(m, m->memo[idx]);
}

/* ---- globals ---------------------------------------------------------------------------- */

static bool name_is(const unsigned char *p, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(p, s, n) == 0;
}

/* Prints a module/name pair for messages, escaping anything unprintable. */
static void printable(char *out, size_t cap, const unsigned char *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f)
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
    }
    if (n && o + 5 >= cap && o + 3 < cap)
        out[o++] = '.', out[o++] = '.', out[o++] = '.';
    out[o] = '\0';
}

static int push_global(vm *m, const unsigned char *mod, size_t modn, const unsigned char *name,
                       size_t namen)
{
    for (int i = 0; i < NWHITE; i++)
        if (name_is(mod, modn, whitelist[i].module) && name_is(name, namen, whitelist[i].name)) {
            pk_obj *o = new_obj(m, PK_GLOBAL);
            if (o)
                o->u.global = i;
            return push(m, o);
        }
    char a[160], b[160];
    printable(a, sizeof a, mod, modn);
    printable(b, sizeof b, name, namen);
    return FAIL(PCV_ERR_UNSUPPORTED,
                "global '%s.%s' is not allowed: perceiver-cl never imports or runs code from a "
                "checkpoint; it only accepts NumPy arrays, Haiku mappings, OrderedDict and torch "
                "tensors (is this a DeepMind/Hugging Face Perceiver checkpoint?)", a, b);
}

/* ---- NumPy arrays ----------------------------------------------------------------------- */

static pcv_dtype dtype_from_code(const unsigned char *p, size_t n, char *order)
{
    *order = '|';
    if (n && (p[0] == '<' || p[0] == '>' || p[0] == '|' || p[0] == '=')) {
        *order = (char)p[0];
        p++, n--;
    }
    static const struct {
        const char *code;
        pcv_dtype dt;
    } codes[] = {{"f2", PCV_DT_F16}, {"f4", PCV_DT_F32}, {"f8", PCV_DT_F64}, {"i1", PCV_DT_I8},
                 {"i2", PCV_DT_I16}, {"i4", PCV_DT_I32}, {"i8", PCV_DT_I64}, {"u1", PCV_DT_U8},
                 {"u2", PCV_DT_U16}, {"u4", PCV_DT_U32}, {"u8", PCV_DT_U64}, {"b1", PCV_DT_BOOL}};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (name_is(p, n, codes[i].code))
            return codes[i].dt;
    return PCV_DT_INVALID;
}

static bool host_little(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Gathers a strided view into a fresh C-order buffer (elem-sized elements): out element at
 * C-order index r comes from src element sum_i r_i * stride[i]. Strides are known in range. */
static void gather(unsigned char *dst, const unsigned char *src, size_t elem, int ndim,
                   const int64_t *shape, const int64_t *stride, int64_t numel)
{
    int64_t idx[PCV_MAX_DIMS] = {0};
    int64_t off = 0;
    for (int64_t r = 0; r < numel; r++) {
        memcpy(dst + (size_t)r * elem, src + (size_t)off * elem, elem);
        for (int d = ndim - 1; d >= 0; d--) { /* odometer */
            if (++idx[d] < shape[d]) {
                off += stride[d];
                break;
            }
            off -= stride[d] * (idx[d] - 1);
            idx[d] = 0;
        }
    }
}

static void byteswap(unsigned char *p, size_t elem, size_t count)
{
    for (size_t i = 0; i < count; i++, p += elem)
        for (size_t a = 0, b = elem - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

static int shape_from_tuple(vm *m, const pk_obj *t, pk_array *a, const char *what)
{
    if (t->kind != PK_TUPLE && t->kind != PK_LIST)
        return FAIL(PCV_ERR_FORMAT, "%s: shape is a %s, not a tuple", what, pk_kind_name(t->kind));
    if (t->u.seq.n > PCV_MAX_DIMS)
        return FAIL(PCV_ERR_UNSUPPORTED, "%s: %zu dimensions (at most %d supported)", what,
                    t->u.seq.n, PCV_MAX_DIMS);
    a->ndim = (int)t->u.seq.n;
    for (int i = 0; i < a->ndim; i++) {
        const pk_obj *d = t->u.seq.v[i];
        if (!is_int(d) || int_val(d) < 0)
            return FAIL(PCV_ERR_FORMAT, "%s: shape[%d] is not a non-negative integer", what, i);
        a->shape[i] = int_val(d);
    }
    return 0;
}

static int numel_of(vm *m, const pk_array *a, size_t elem, int64_t *numel, size_t *nbytes)
{
    int64_t n = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] != 0 && n > INT64_MAX / a->shape[i])
            return FAIL(PCV_ERR_FORMAT, "array shape overflows 64 bits");
        n *= a->shape[i];
    }
    if (elem && (uint64_t)n > SIZE_MAX / elem)
        return FAIL(PCV_ERR_FORMAT, "array byte size overflows");
    *numel = n;
    *nbytes = (size_t)n * elem;
    return 0;
}

static int check_dtype(vm *m, const pk_obj *dt, const char *what)
{
    if (dt->kind != PK_DTYPE)
        return FAIL(PCV_ERR_FORMAT, "%s: dtype argument is a %s", what, pk_kind_name(dt->kind));
    if (dt->u.dtype.dt == PCV_DT_INVALID)
        return FAIL(PCV_ERR_UNSUPPORTED, "%s: NumPy dtype '%s' is not supported (numeric dtypes "
                    "only)", what, dt->u.dtype.code);
    return 0;
}

/* Fills an array from (shape, dtype, data) in the given layout: order 'C', 'F', or 'K' with
 * axis_order (NumPy >= 2.3: data is the C-order buffer of the array whose shape is `shape`
 * before the transpose by axis_order). The result is C order and little-endian. */
static int fill_array(vm *m, pk_array *a, const pk_obj *dt, const pk_obj *data, char order,
                      const pk_obj *axis_order, const char *what)
{
    int rc = check_dtype(m, dt, what);
    if (rc)
        return rc;
    if (data->kind == PK_LIST)
        return FAIL(PCV_ERR_UNSUPPORTED, "%s: object arrays are not supported", what);
    if (data->kind != PK_BYTES && data->kind != PK_STR)
        return FAIL(PCV_ERR_FORMAT, "%s: array data is a %s, not bytes", what,
                    pk_kind_name(data->kind));
    a->dtype = dt->u.dtype.dt;
    size_t elem = pcv_dtype_size(a->dtype);
    int64_t numel = 0;
    size_t nbytes = 0;
    if ((rc = numel_of(m, a, elem, &numel, &nbytes)))
        return rc;
    if (data->u.s.n != nbytes)
        return FAIL(PCV_ERR_FORMAT, "%s: array data has %zu bytes but shape and dtype %s need %zu",
                    what, data->u.s.n, dt->u.dtype.code, nbytes);
    bool swap = elem > 1 && (dt->u.dtype.order == '>' || (dt->u.dtype.order == '=' && !host_little()));
    int64_t stride[PCV_MAX_DIMS];
    int64_t src_shape[PCV_MAX_DIMS];
    bool permute = false;
    if (order == 'F' && a->ndim > 1) {
        int64_t s = 1;
        for (int i = 0; i < a->ndim; i++) {
            stride[i] = s;
            s *= a->shape[i];
        }
        permute = true;
    } else if (order == 'K' && axis_order) {
        if ((axis_order->kind != PK_TUPLE && axis_order->kind != PK_LIST) ||
            axis_order->u.seq.n != (size_t)a->ndim)
            return FAIL(PCV_ERR_FORMAT, "%s: axis_order does not match the shape", what);
        int64_t cs[PCV_MAX_DIMS], s = 1;
        bool seen[PCV_MAX_DIMS] = {false};
        for (int i = a->ndim - 1; i >= 0; i--) {
            cs[i] = s;
            s *= a->shape[i];
        }
        memcpy(src_shape, a->shape, sizeof src_shape);
        for (int i = 0; i < a->ndim; i++) {
            const pk_obj *ax = axis_order->u.seq.v[i];
            int64_t k = is_int(ax) ? int_val(ax) : -1;
            if (k < 0 || k >= a->ndim || seen[k])
                return FAIL(PCV_ERR_FORMAT, "%s: axis_order is not a permutation", what);
            seen[k] = true;
            a->shape[i] = src_shape[k];
            stride[i] = cs[k];
        }
        permute = true;
    } else if (order != 'C' && order != 'F' && order != 'K') {
        return FAIL(PCV_ERR_FORMAT, "%s: unknown array order '%c'", what, order);
    }
    a->nbytes = nbytes;
    if (!permute && !swap) {
        a->data = data->u.s.p; /* zero-copy */
        return 0;
    }
    unsigned char *out = doc_buf(m, nbytes);
    if (!out)
        return m->err ? (int)m->err->code : PCV_ERR_OOM;
    if (permute)
        gather(out, data->u.s.p, elem, a->ndim, a->shape, stride, numel);
    else
        memcpy(out, data->u.s.p, nbytes);
    if (swap)
        byteswap(out, elem, (size_t)numel);
    a->data = out;
    return 0;
}

/* ndarray.__setstate__: (version, shape, dtype, is_fortran, data) or the 4-tuple without the
 * version. */
static int array_setstate(vm *m, pk_array *a, const pk_obj *state)
{
    const char *what = "ndarray state";
    if (state->kind != PK_TUPLE || (state->u.seq.n != 5 && state->u.seq.n != 4))
        return FAIL(PCV_ERR_FORMAT, "%s is not a 4- or 5-tuple", what);
    pk_obj *const *s = state->u.seq.v + (state->u.seq.n == 5);
    if (state->u.seq.n == 5 && !is_int(state->u.seq.v[0]))
        return FAIL(PCV_ERR_FORMAT, "%s: version is not an integer", what);
    int rc = shape_from_tuple(m, s[0], a, what);
    if (rc)
        return rc;
    if (!is_int(s[2]))
        return FAIL(PCV_ERR_FORMAT, "%s: is_fortran is not a bool", what);
    rc = fill_array(m, a, s[1], s[3], int_val(s[2]) ? 'F' : 'C', NULL, what);
    if (!rc)
        a->pending = false;
    return rc;
}

/* ---- REDUCE / NEWOBJ / BUILD ------------------------------------------------------------ */

static int reduce_np_reconstruct(vm *m, pk_obj *args, pk_obj **out)
{
    /* _reconstruct(ndarray, (0,), b'b'): an empty array that BUILD fills */
    if (!is_tuple(args, 3) || args->u.seq.v[0]->kind != PK_GLOBAL ||
        gid(args->u.seq.v[0]) != G_NP_NDARRAY)
        return FAIL(PCV_ERR_UNSUPPORTED, "numpy _reconstruct: only plain numpy.ndarray is "
                    "supported (not subclasses such as matrices or masked arrays)");
    pk_obj *o = new_obj(m, PK_ARRAY);
    if (!o || !new_array(m, o))
        return m->err ? (int)m->err->code : PCV_ERR_OOM;
    o->u.arr->pending = true;
    o->u.arr->pos = m->op_pos;
    int rc = grow(m, (void **)&m->pend, &m->cappend, m->npend + 1, sizeof *m->pend);
    if (rc)
        return rc;
    m->pend[m->npend++] = o;
    *out = o;
    return 0;
}

static int reduce_dtype(vm *m, pk_obj *args, pk_obj **out)
{
    if (!is_tuple(args, 3))
        return FAIL(PCV_ERR_FORMAT, "numpy.dtype: expected 3 arguments");
    pk_obj *t = args->u.seq.v[0];
    pk_obj *o = new_obj(m, PK_DTYPE);
    if (!o)
        return m->err ? (int)m->err->code : PCV_ERR_OOM;
    if (t->kind == PK_STR || t->kind == PK_BYTES) {
        o->u.dtype.dt = dtype_from_code(t->u.s.p, t->u.s.n, &o->u.dtype.order);
        printable(o->u.dtype.code, sizeof o->u.dtype.code, t->u.s.p, t->u.s.n);
    } else if (t->kind == PK_GLOBAL && gid(t) == G_DTYPE_TAG) {
        o->u.dtype.dt = whitelist[t->u.global].dt;
        o->u.dtype.order = '<';
        snprintf(o->u.dtype.code, sizeof o->u.dtype.code, "%s", whitelist[t->u.global].name);
    } else {
        return FAIL(PCV_ERR_FORMAT, "numpy.dtype: first argument is a %s", pk_kind_name(t->kind));
    }
    *out = o;
    return 0;
}

static int build_dtype(vm *m, pk_obj *d, pk_obj *state)
{
    /* (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]) */
    if (state->kind != PK_TUPLE || state->u.seq.n < 8 || state->u.seq.n > 9)
        return FAIL(PCV_ERR_FORMAT, "numpy.dtype state is not an 8- or 9-tuple");
    pk_obj *const *s = state->u.seq.v;
    if (s[2]->kind != PK_NONE || s[3]->kind != PK_NONE || s[4]->kind != PK_NONE)
        return FAIL(PCV_ERR_UNSUPPORTED, "structured or sub-array NumPy dtypes are not supported");
    if (!pk_str_eq(s[1], "<") && !pk_str_eq(s[1], ">") && !pk_str_eq(s[1], "|") &&
        !pk_str_eq(s[1], "="))
        return FAIL(PCV_ERR_FORMAT, "numpy.dtype: bad byte order");
    d->u.dtype.order = (char)s[1]->u.s.p[0];
    return 0;
}

static int reduce_frombuffer(vm *m, pk_obj *args, pk_obj **out)
{
    /* _frombuffer(buffer, dtype, shape, order[, axis_order]) */
    const char *what = "numpy _frombuffer";
    if (args->kind != PK_TUPLE || (args->u.seq.n != 4 && args->u.seq.n != 5))
        return FAIL(PCV_ERR_FORMAT, "%s: expected 4 or 5 arguments", what);
    pk_obj *const *a = args->u.seq.v;
    if (!(a[3]->kind == PK_STR && a[3]->u.s.n == 1))
        return FAIL(PCV_ERR_FORMAT, "%s: order is not a 1-character string", what);
    pk_obj *o = new_obj(m, PK_ARRAY);
    if (!o || !new_array(m, o))
        return m->err ? (int)m->err->code : PCV_ERR_OOM;
    int rc = shape_from_tuple(m, a[2], o->u.arr, what);
    if (!rc)
        rc = fill_array(m, o->u.arr, a[1], a[0], (char)a[3]->u.s.p[0],
                        args->u.seq.n == 5 ? a[4] : NULL, what);
    *out = o;
    return rc;
}

static int reduce_scalar(vm *m, pk_obj *args, pk_obj **out)
{
    /* numpy scalar(dtype, bytes) -> 0-d array */
    if (!is_tuple(args, 2))
        return FAIL(PCV_ERR_FORMAT, "numpy scalar: expected (dtype, bytes)");
    pk_obj *o = new_obj(m, PK_ARRAY);
    if (!o || !new_array(m, o))
        return m->err ? (int)m->err->code : PCV_ERR_OOM;
    o->u.arr->ndim = 0;
    *out = o;
    return fill_array(m, o->u.arr, args->u.seq.v[0], args->u.seq.v[1], 'C', NULL, "numpy scalar");
}

static int reduce_jax(vm *m, pk_obj *args, pk_obj **out)
{
    /* _reconstruct_array(np._reconstruct, (ndarray, (0,), b'b'), state, aval_state) */
    if (args->kind != PK_TUPLE || args->u.seq.n < 3)
        return FAIL(PCV_ERR_FORMAT, "jax _reconstruct_array: expected 4 arguments");
    pk_obj *fn = args->u.seq.v[0];
    if (fn->kind != PK_GLOBAL || gid(fn) != G_NP_RECONSTRUCT)
        return FAIL(PCV_ERR_UNSUPPORTED, "jax _reconstruct_array: unexpected reconstruct function");
    int rc = reduce_np_reconstruct(m, args->u.seq.v[1], out);
    if (!rc)
        rc = array_setstate(m, (*out)->u.arr, args->u.seq.v[2]);
    return rc;
}

static int reduce_rebuild_tensor(vm *m, pk_gid id, pk_obj *args, pk_obj **out)
{
    const char *what = id == G_TORCH_REBUILD_V3 ? "torch _rebuild_tensor_v3" : "torch _rebuild_tensor_v2";
    if (args->kind != PK_TUPLE || args->u.seq.n < (id == G_TORCH_REBUILD_V3 ? 7u : 4u))
        return FAIL(PCV_ERR_FORMAT, "%s: too few arguments", what);
    pk_obj *const *a = args->u.seq.v;
    if (a[0]->kind != PK_STORAGE)
        return FAIL(PCV_ERR_FORMAT, "%s: first argument is a %s, not a storage", what,
                    pk_kind_name(a[0]->kind));
    if (!is_int(a[1]) || int_val(a[1]) < 0)
        return FAIL(PCV_ERR_FORMAT, "%s: bad storage offset", what);
    pk_obj *o = new_obj(m, PK_TENSOR);
    if (!o || !new_array(m, o))
        return m->err ? (int)m->err->code : PCV_ERR_OOM;
    pk_array *t = o->u.arr;
    int rc = shape_from_tuple(m, a[2], t, what);
    if (rc)
        return rc;
    if ((a[3]->kind != PK_TUPLE && a[3]->kind != PK_LIST) || a[3]->u.seq.n != (size_t)t->ndim)
        return FAIL(PCV_ERR_FORMAT, "%s: stride does not match the size", what);
    for (int i = 0; i < t->ndim; i++) {
        const pk_obj *s = a[3]->u.seq.v[i];
        if (!is_int(s) || int_val(s) < 0)
            return FAIL(PCV_ERR_FORMAT, "%s: stride[%d] is not a non-negative integer", what, i);
        t->stride[i] = int_val(s);
    }
    t->storage = a[0];
    t->offset = int_val(a[1]);
    t->dtype = a[0]->u.st->dtype;
    if (id == G_TORCH_REBUILD_V3) {
        pk_obj *dt = a[6];
        if (dt->kind != PK_GLOBAL || gid(dt) != G_TORCH_DTYPE)
            return FAIL(PCV_ERR_UNSUPPORTED, "%s: unsupported dtype argument", what);
        t->dtype = whitelist[dt->u.global].dt;
    }
    pk_doc *d = m->doc;
    if ((rc = grow(m, (void **)&d->tensors, &d->captensors, d->ntensors + 1, sizeof *d->tensors)))
        return rc;
    d->tensors[d->ntensors++] = o;
    *out = o;
    return 0;
}

static int do_reduce(vm *m, pk_obj *fn, pk_obj *args, pk_obj **out)
{
    char name[128];
    if (fn->kind != PK_GLOBAL)
        return FAIL(PCV_ERR_FORMAT, "REDUCE on a %s (not a callable)", pk_kind_name(fn->kind));
    if (args->kind != PK_TUPLE)
        return FAIL(PCV_ERR_FORMAT, "REDUCE arguments are a %s, not a tuple", pk_kind_name(args->kind));
    size_t n = args->u.seq.n;
    pk_obj *const *a = args->u.seq.v;
    switch (gid(fn)) {
    case G_HAIKU_MAPPING: /* FlatMapping(dict) is that dict */
        if (n != 1 || a[0]->kind != PK_DICT)
            return FAIL(PCV_ERR_FORMAT, "%s: expected one dict argument",
                        pk_global_name(fn, name, sizeof name));
        *out = a[0];
        return 0;
    case G_ODICT: {
        pk_obj *d = new_obj(m, PK_DICT);
        if (!d)
            return m->err ? (int)m->err->code : PCV_ERR_OOM;
        d->u.dict.odict = true;
        if (n == 1 && a[0]->kind == PK_LIST) { /* OrderedDict([(k, v), ...]) */
            for (size_t i = 0; i < a[0]->u.seq.n; i++) {
                pk_obj *kv = a[0]->u.seq.v[i];
                if (!is_tuple(kv, 2) && !(kv->kind == PK_LIST && kv->u.seq.n == 2))
                    return FAIL(PCV_ERR_FORMAT, "OrderedDict: items must be pairs");
                int rc = dict_set(m, d, kv->u.seq.v[0], kv->u.seq.v[1]);
                if (rc)
                    return rc;
            }
        } else if (n != 0) {
            return FAIL(PCV_ERR_FORMAT, "OrderedDict: unsupported arguments");
        }
        *out = d;
        return 0;
    }
    case G_BYTES:
        if (n != 0)
            return FAIL(PCV_ERR_UNSUPPORTED, "bytes(): only the empty form is supported");
        *out = make_bytes(m, PK_BYTES, (const unsigned char *)"", 0);
        return *out ? 0 : (m->err ? (int)m->err->code : PCV_ERR_OOM);
    case G_NP_RECONSTRUCT: return reduce_np_reconstruct(m, args, out);
    case G_NP_DTYPE: return reduce_dtype(m, args, out);
    case G_NP_FROMBUFFER: return reduce_frombuffer(m, args, out);
    case G_NP_SCALAR: return reduce_scalar(m, args, out);
    case G_JAX_RECONSTRUCT: return reduce_jax(m, args, out);
    case G_CODECS_ENCODE:
        if (n != 2 || a[0]->kind != PK_STR ||
            !(pk_str_eq(a[1], "latin1") || pk_str_eq(a[1], "latin-1")))
            return FAIL(PCV_ERR_UNSUPPORTED, "_codecs.encode: only (str, 'latin1') is supported");
        *out = latin1_encode(m, a[0]);
        return *out ? 0 : (m->err ? (int)m->err->code : PCV_ERR_OOM);
    case G_TORCH_REBUILD_V2:
    case G_TORCH_REBUILD_V3: return reduce_rebuild_tensor(m, gid(fn), args, out);
    case G_TORCH_REBUILD_PARAM: /* Parameter(data, requires_grad, hooks[, state]) is data */
        if (n < 1 || (a[0]->kind != PK_TENSOR && a[0]->kind != PK_ARRAY))
            return FAIL(PCV_ERR_FORMAT, "torch _rebuild_parameter: first argument is not a tensor");
        *out = a[0];
        return 0;
    default:
        return FAIL(PCV_ERR_UNSUPPORTED, "'%s' cannot be called",
                    pk_global_name(fn, name, sizeof name));
    }
}

static int do_build(vm *m, pk_obj *obj, pk_obj *state)
{
    if (obj->kind == PK_ARRAY && obj->u.arr->pending)
        return array_setstate(m, obj->u.arr, state);
    if (obj->kind == PK_DTYPE)
        return build_dtype(m, obj, state);
    if (obj->kind == PK_DICT && obj->u.dict.odict)
        return 0; /* OrderedDict attributes (torch's _metadata): not needed */
    return FAIL(PCV_ERR_UNSUPPORTED, "BUILD (setting state) on a %s is not allowed",
                pk_kind_name(obj->kind));
}

static int persistent_load(vm *m, pk_obj *pid, pk_obj **out)
{
    if (!m->opt || !m->opt->allow_persistent)
        return FAIL(PCV_ERR_UNSUPPORTED, "persistent ids are only allowed in PyTorch files");
    /* ('storage', storage_type, key, location, numel[, view_metadata]) */
    if (pid->kind != PK_TUPLE || (pid->u.seq.n != 5 && pid->u.seq.n != 6) ||
        !pk_str_eq(pid->u.seq.v[0], "storage"))
        return FAIL(PCV_ERR_UNSUPPORTED, "persistent id is not a ('storage', ...) tuple");
    pk_obj *const *a = pid->u.seq.v;
    if (a[1]->kind != PK_GLOBAL || gid(a[1]) != G_TORCH_STORAGE)
        return FAIL(PCV_ERR_UNSUPPORTED, "persistent id: unsupported storage type");
    if (a[2]->kind != PK_STR && a[2]->kind != PK_BYTES)
        return FAIL(PCV_ERR_FORMAT, "persistent id: storage key is not a string");
    if (!is_int(a[4]) || int_val(a[4]) < 0)
        return FAIL(PCV_ERR_FORMAT, "persistent id: bad storage size");
    if (pid->u.seq.n == 6 && a[5]->kind != PK_NONE)
        return FAIL(PCV_ERR_UNSUPPORTED, "persistent id: storage views are not supported");
    pk_obj *o = new_obj(m, PK_STORAGE);
    pk_storage *st = o ? (pk_storage *)doc_buf(m, sizeof *st) : NULL;
    if (!st)
        return m->err ? (int)m->err->code : PCV_ERR_OOM;
    memset(st, 0, sizeof *st);
    o->u.st = st;
    st->dtype = whitelist[a[1]->u.global].dt;
    st->key = a[2]->u.s.p;
    st->keylen = a[2]->u.s.n;
    st->numel = int_val(a[4]);
    size_t elem = pcv_dtype_size(st->dtype);
    if ((uint64_t)st->numel > SIZE_MAX / elem)
        return FAIL(PCV_ERR_FORMAT, "persistent id: storage size overflows");
    st->nbytes = (size_t)st->numel * elem;
    pk_doc *d = m->doc;
    int rc = grow(m, (void **)&d->storages, &d->capstorages, d->nstorages + 1, sizeof *d->storages);
    if (rc)
        return rc;
    d->storages[d->nstorages++] = o;
    *out = o;
    return 0;
}

/* ---- the opcode loop -------------------------------------------------------------------- */

static const struct {
    unsigned char op;
    const char *name;
} opnames[] = {
    {0x80, "PROTO"}, {0x95, "FRAME"}, {'.', "STOP"}, {'(', "MARK"}, {'0', "POP"},
    {'1', "POP_MARK"}, {'2', "DUP"}, {'N', "NONE"}, {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"},
    {'I', "INT"}, {'J', "BININT"}, {'K', "BININT1"}, {'M', "BININT2"}, {'L', "LONG"},
    {0x8a, "LONG1"}, {0x8b, "LONG4"}, {'F', "FLOAT"}, {'G', "BINFLOAT"}, {'S', "STRING"},
    {'T', "BINSTRING"}, {'U', "SHORT_BINSTRING"}, {'B', "BINBYTES"}, {'C', "SHORT_BINBYTES"},
    {0x8e, "BINBYTES8"}, {0x96, "BYTEARRAY8"}, {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
    {'V', "UNICODE"}, {'X', "BINUNICODE"}, {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"},
    {')', "EMPTY_TUPLE"}, {0x85, "TUPLE1"}, {0x86, "TUPLE2"}, {0x87, "TUPLE3"}, {'t', "TUPLE"},
    {']', "EMPTY_LIST"}, {'a', "APPEND"}, {'e', "APPENDS"}, {'l', "LIST"}, {'}', "EMPTY_DICT"},
    {'s', "SETITEM"}, {'u', "SETITEMS"}, {'d', "DICT"}, {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"},
    {0x91, "FROZENSET"}, {'p', "PUT"}, {'q', "BINPUT"}, {'r', "LONG_BINPUT"}, {0x94, "MEMOIZE"},
    {'g', "GET"}, {'h', "BINGET"}, {'j', "LONG_BINGET"}, {'c', "GLOBAL"}, {0x93, "STACK_GLOBAL"},
    {'R', "REDUCE"}, {'b', "BUILD"}, {0x81, "NEWOBJ"}, {0x92, "NEWOBJ_EX"}, {'i', "INST"},
    {'o', "OBJ"}, {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"}, {'P', "PERSID"},
    {'Q', "BINPERSID"},
};

static const char *opname(unsigned char op)
{
    for (size_t i = 0; i < sizeof opnames / sizeof *opnames; i++)
        if (opnames[i].op == op)
            return opnames[i].name;
    return "unknown opcode";
}

static int op_tuple(vm *m, size_t n)
{
    if (m->sp - base(m) < n)
        return FAIL(PCV_ERR_FORMAT, "stack underflow");
    m->sp -= n;
    return push(m, make_seq(m, PK_TUPLE, m->stack + m->sp, n));
}

static int op_setitems(vm *m, pk_obj **items, size_t n)
{
    if (n % 2)
        return FAIL(PCV_ERR_FORMAT, "odd number of items for SETITEMS");
    pk_obj *d = NULL;
    int rc = top(m, &d);
    for (size_t i = 0; !rc && i < n; i += 2)
        rc = dict_set(m, d, items[i], items[i + 1]);
    return rc;
}

static int op_appends(vm *m, pk_obj **items, size_t n)
{
    pk_obj *l = NULL;
    int rc = top(m, &l);
    if (rc)
        return rc;
    if (l->kind != PK_LIST && !(l->kind == PK_SET && m->op == 0x90))
        return FAIL(PCV_ERR_FORMAT, "append to a %s", pk_kind_name(l->kind));
    for (size_t i = 0; !rc && i < n; i++)
        rc = seq_append(m, l, items[i]);
    return rc;
}

static int step(vm *m, bool *stop)
{
    uint64_t v = 0;
    size_t n = 0;
    int rc;
    pk_obj *a = NULL, *b = NULL, *c = NULL, **items = NULL;
    const unsigned char *p = NULL;
    m->op_pos = m->pos;
    if ((rc = need(m, 1)))
        return rc;
    m->op = m->buf[m->pos++];
    switch (m->op) {
    case 0x80: /* PROTO */
        if ((rc = rd_u8(m, &v)))
            return rc;
        if (v > 5)
            return FAIL(PCV_ERR_UNSUPPORTED, "pickle protocol %" PRIu64 " (at most 5 supported)", v);
        m->doc->protocol = (int)v;
        return 0;
    case 0x95: /* FRAME: advisory length, checked and skipped */
        if ((rc = rd_le(m, 8, &v)))
            return rc;
        if (v > m->len - m->pos)
            return FAIL(PCV_ERR_FORMAT, "frame of %" PRIu64 " bytes runs past the end of the data", v);
        return 0;
    case '.': /* STOP */
        if (m->nmarks)
            return FAIL(PCV_ERR_FORMAT, "STOP with an unclosed MARK");
        if ((rc = pop(m, &a)))
            return rc;
        /* an array that numpy's _reconstruct made but no BUILD filled is an empty placeholder
         * (no dtype, no data): NumPy would give a 0-size array, which no checkpoint holds */
        for (size_t i = 0; i < m->npend; i++)
            if (m->pend[i]->kind == PK_ARRAY && m->pend[i]->u.arr->pending)
                return FAIL(PCV_ERR_FORMAT, "the numpy array made by _reconstruct at byte %zu was never "
                            "filled by BUILD (truncated or forged pickle)", m->pend[i]->u.arr->pos);
        m->doc->root = a;
        *stop = true;
        return 0;
    case '(': /* MARK */
        if ((rc = grow(m, (void **)&m->marks, &m->mcap, m->nmarks + 1, sizeof *m->marks)))
            return rc;
        m->marks[m->nmarks++] = m->sp;
        return 0;
    case '0': /* POP: the top item, or the mark if the frame is empty */
        if (m->sp == base(m) && m->nmarks) {
            m->nmarks--;
            return 0;
        }
        return pop(m, &a);
    case '1': /* POP_MARK */
        return pop_mark(m, &items, &n);
    case '2': /* DUP */
        if ((rc = top(m, &a)))
            return rc;
        return push(m, a);
    case 'N': return push(m, m->none);
    case 0x88: return push(m, m->t);
    case 0x89: return push(m, m->f);
    case 'J':
        if ((rc = rd_le(m, 4, &v)))
            return rc;
        return push(m, make_int(m, (int32_t)(uint32_t)v));
    case 'K':
        if ((rc = rd_le(m, 1, &v)))
            return rc;
        return push(m, make_int(m, (int64_t)v));
    case 'M':
        if ((rc = rd_le(m, 2, &v)))
            return rc;
        return push(m, make_int(m, (int64_t)v));
    case 0x8a: /* LONG1 */
        if ((rc = rd_len(m, 1, &n)))
            return rc;
        m->pos += n;
        return push(m, make_long(m, m->buf + m->pos - n, n));
    case 0x8b: /* LONG4 */
        if ((rc = rd_len(m, 4, &n)))
            return rc;
        m->pos += n;
        return push(m, make_long(m, m->buf + m->pos - n, n));
    case 'I': case 'L': { /* INT / LONG (protocol 0) */
        int64_t x;
        if ((rc = rd_line(m, &p, &n)))
            return rc;
        if (m->op == 'I' && n == 2 && p[0] == '0' && (p[1] == '0' || p[1] == '1'))
            return push(m, p[1] == '1' ? m->t : m->f);
        if ((rc = parse_decimal(m, p, n, m->op == 'L', &x)))
            return rc;
        return push(m, make_int(m, x));
    }
    case 'F': { /* FLOAT (protocol 0): repr text */
        char tmp[64];
        if ((rc = rd_line(m, &p, &n)))
            return rc;
        if (n == 0 || n >= sizeof tmp)
            return FAIL(PCV_ERR_FORMAT, "bad FLOAT text");
        memcpy(tmp, p, n);
        tmp[n] = '\0';
        char *end;
        double d = strtod(tmp, &end);
        if (*end)
            return FAIL(PCV_ERR_FORMAT, "bad FLOAT text");
        a = new_obj(m, PK_FLOAT);
        if (a)
            a->u.f = d;
        return push(m, a);
    }
    case 'G': { /* BINFLOAT: big-endian double */
        if ((rc = need(m, 8)))
            return rc;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = bits << 8 | m->buf[m->pos + (size_t)i];
        m->pos += 8;
        a = new_obj(m, PK_FLOAT);
        if (a)
            memcpy(&a->u.f, &bits, sizeof bits);
        return push(m, a);
    }
    case 'S': /* STRING */
        if ((rc = rd_line(m, &p, &n)))
            return rc;
        return push(m, quoted_string(m, p, n));
    case 'V': /* UNICODE */
        if ((rc = rd_line(m, &p, &n)))
            return rc;
        return push(m, raw_unicode(m, p, n));
    case 'T': case 'U': case 'B': case 'C': case 0x8e: case 0x96: /* byte strings */
    case 'X': case 0x8c: case 0x8d: {                           /* text strings */
        int w = (m->op == 'U' || m->op == 'C' || m->op == 0x8c) ? 1
              : (m->op == 0x8e || m->op == 0x96 || m->op == 0x8d) ? 8 : 4;
        if ((rc = rd_len(m, w, &n)))
            return rc;
        m->pos += n;
        bool text = m->op == 'X' || m->op == 0x8c || m->op == 0x8d;
        return push(m, make_bytes(m, text ? PK_STR : PK_BYTES, m->buf + m->pos - n, n));
    }
    case 0x97: case 0x98:
        return FAIL(PCV_ERR_UNSUPPORTED, "out-of-band buffers (pickle protocol 5 with a "
                    "buffer_callback) cannot be loaded from a file");
    case ')': return push(m, m->empty_tuple);
    case 0x85: return op_tuple(m, 1);
    case 0x86: return op_tuple(m, 2);
    case 0x87: return op_tuple(m, 3);
    case 't':
        if ((rc = pop_mark(m, &items, &n)))
            return rc;
        return push(m, make_seq(m, PK_TUPLE, items, n));
    case ']': return push(m, new_obj(m, PK_LIST));
    case 'l':
        if ((rc = pop_mark(m, &items, &n)))
            return rc;
        return push(m, make_seq(m, PK_LIST, items, n));
    case 0x8f: return push(m, new_obj(m, PK_SET));
    case 0x91:
        if ((rc = pop_mark(m, &items, &n)))
            return rc;
        return push(m, make_seq(m, PK_SET, items, n));
    case 'a':
        if ((rc = pop(m, &a)))
            return rc;
        return op_appends(m, &a, 1);
    case 'e': case 0x90:
        if ((rc = pop_mark(m, &items, &n)))
            return rc;
        return op_appends(m, items, n);
    case '}': return push(m, new_obj(m, PK_DICT));
    case 'd':
        if ((rc = pop_mark(m, &items, &n)))
            return rc;
        if (n % 2)
            return FAIL(PCV_ERR_FORMAT, "odd number of items for DICT");
        a = new_obj(m, PK_DICT);
        if (!a)
            return m->err ? (int)m->err->code : PCV_ERR_OOM;
        /* items stay valid: nothing was pushed since pop_mark */
        for (size_t i = 0; i < n; i += 2)
            if ((rc = dict_set(m, a, items[i], items[i + 1])))
                return rc;
        return push(m, a);
    case 's':
        if ((rc = pop(m, &b)) || (rc = pop(m, &a)) || (rc = top(m, &c)))
            return rc;
        return dict_set(m, c, a, b);
    case 'u':
        if ((rc = pop_mark(m, &items, &n)))
            return rc;
        return op_setitems(m, items, n);
    case 'p': case 'g': { /* PUT / GET (protocol 0) */
        int64_t x;
        if ((rc = rd_line(m, &p, &n)) || (rc = parse_decimal(m, p, n, false, &x)))
            return rc;
        if (x < 0)
            return FAIL(PCV_ERR_FORMAT, "negative memo index");
        return m->op == 'p' ? memo_put(m, (uint64_t)x) : memo_get(m, (uint64_t)x);
    }
    case 'q': return (rc = rd_le(m, 1, &v)) ? rc : memo_put(m, v);
    case 'r': return (rc = rd_le(m, 4, &v)) ? rc : memo_put(m, v);
    case 0x94: return memo_put(m, m->nput);
    case 'h': return (rc = rd_le(m, 1, &v)) ? rc : memo_get(m, v);
    case 'j': return (rc = rd_le(m, 4, &v)) ? rc : memo_get(m, v);
    case 'c': { /* GLOBAL module\nname\n */
        const unsigned char *mod = NULL;
        size_t modn = 0;
        if ((rc = rd_line(m, &mod, &modn)) || (rc = rd_line(m, &p, &n)))
            return rc;
        return push_global(m, mod, modn, p, n);
    }
    case 0x93: /* STACK_GLOBAL */
        if ((rc = pop(m, &b)) || (rc = pop(m, &a)))
            return rc;
        if (a->kind != PK_STR || b->kind != PK_STR)
            return FAIL(PCV_ERR_FORMAT, "STACK_GLOBAL needs two strings");
        return push_global(m, a->u.s.p, a->u.s.n, b->u.s.p, b->u.s.n);
    case 'R': /* REDUCE */
        if ((rc = pop(m, &b)) || (rc = pop(m, &a)))
            return rc;
        if ((rc = do_reduce(m, a, b, &c)))
            return rc;
        return push(m, c);
    case 'b': /* BUILD */
        if ((rc = pop(m, &b)) || (rc = top(m, &a)))
            return rc;
        return do_build(m, a, b);
    case 0x81: /* NEWOBJ: cls.__new__(cls, *args), only for OrderedDict */
        if ((rc = pop(m, &b)) || (rc = pop(m, &a)))
            return rc;
        if (a->kind == PK_GLOBAL && gid(a) == G_ODICT && b->kind == PK_TUPLE && b->u.seq.n == 0) {
            c = new_obj(m, PK_DICT);
            if (c)
                c->u.dict.odict = true;
            return push(m, c);
        }
        if (a->kind == PK_GLOBAL) {
            char name[128];
            return FAIL(PCV_ERR_UNSUPPORTED, "creating a '%s' object is not allowed",
                        pk_global_name(a, name, sizeof name));
        }
        return FAIL(PCV_ERR_FORMAT, "NEWOBJ on a %s", pk_kind_name(a->kind));
    case 'Q': /* BINPERSID */
        if ((rc = pop(m, &a)) || (rc = persistent_load(m, a, &b)))
            return rc;
        return push(m, b);
    case 'i': { /* INST module\nname\n: name it, never instantiate */
        const unsigned char *mod = NULL;
        size_t modn = 0;
        char x[160], y[160];
        if ((rc = rd_line(m, &mod, &modn)) || (rc = rd_line(m, &p, &n)))
            return rc;
        printable(x, sizeof x, mod, modn);
        printable(y, sizeof y, p, n);
        return FAIL(PCV_ERR_UNSUPPORTED, "instantiating '%s.%s' is not allowed", x, y);
    }
    case 0x92: case 'o': case 0x82: case 0x83: case 0x84: case 'P':
        return FAIL(PCV_ERR_UNSUPPORTED, "opcode %s is not allowed in a checkpoint",
                    opname(m->op));
    default:
        return FAIL(PCV_ERR_FORMAT, "unknown opcode 0x%02x (not a pickle, or corrupt)", m->op);
    }
}

int pk_load(pk_doc *doc, const unsigned char *buf, size_t len, const pk_options *opt,
            pcv_error *err)
{
    memset(doc, 0, sizeof *doc);
    doc->name = opt && opt->name ? opt->name : "pickle";
    size_t lim = opt && opt->max_alloc ? opt->max_alloc : (size_t)pcv_limits_now()->pickle_bytes;
    doc->limit = len > (SIZE_MAX - lim) / 2 ? SIZE_MAX : lim + 2 * len;
    doc->len = len;
    vm m = {.buf = buf, .len = len, .opt = opt, .err = err, .doc = doc};
    int rc = 0;
    if (!(m.none = new_obj(&m, PK_NONE)) || !(m.t = new_obj(&m, PK_BOOL)) ||
        !(m.f = new_obj(&m, PK_BOOL)) || !(m.empty_tuple = new_obj(&m, PK_TUPLE)))
        rc = err ? (int)err->code : PCV_ERR_OOM;
    else
        m.t->u.b = true;
    bool stop = false;
    while (!rc && !stop)
        rc = step(&m, &stop);
    if (!rc)
        doc->end = m.pos;
    free(m.stack);
    free(m.marks);
    free(m.memo);
    free(m.pend);
    if (rc)
        pk_doc_free(doc);
    return rc;
}

void pk_doc_free(pk_doc *doc)
{
    if (!doc)
        return;
    pk_block *b = doc->blocks;
    while (b) {
        for (size_t i = 0; i < b->n; i++) {
            pk_obj *o = &b->objs[i];
            if (o->kind == PK_TUPLE || o->kind == PK_LIST || o->kind == PK_SET)
                free(o->u.seq.v);
            else if (o->kind == PK_DICT) {
                free(o->u.dict.k);
                free(o->u.dict.v);
            }
        }
        pk_block *next = b->next;
        free(b);
        b = next;
    }
    for (size_t i = 0; i < doc->nbufs; i++)
        free(doc->bufs[i]);
    free(doc->bufs);
    free(doc->storages);
    free(doc->tensors);
    memset(doc, 0, sizeof *doc);
}

/* ---- torch tensors ---------------------------------------------------------------------- */

int pk_resolve_tensors(pk_doc *doc, pcv_error *err)
{
    vm m = {.doc = doc, .err = err, .op = 'Q'};
    for (size_t i = 0; i < doc->ntensors; i++) {
        pk_obj *o = doc->tensors[i];
        if (o->kind != PK_TENSOR)
            continue; /* already resolved (a tensor memoized and listed once only anyway) */
        pk_array *t = o->u.arr;
        pk_storage *st = t->storage->u.st;
        size_t elem = pcv_dtype_size(t->dtype);
        char key[64];
        printable(key, sizeof key, st->key, st->keylen);
        if (!st->data && st->nbytes)
            return pcv_set_error(err, PCV_ERR_MISSING, "%s: storage '%s' has no data record",
                                 doc->name, key);
        int64_t numel = 0;
        size_t nbytes = 0;
        if (numel_of(&m, t, elem, &numel, &nbytes))
            return err ? (int)err->code : PCV_ERR_FORMAT;
        /* the highest element the view touches must lie inside the storage */
        bool contiguous = true;
        int64_t expect = 1;
        uint64_t last = (uint64_t)t->offset;
        if (last > UINT64_MAX / 8)
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: storage '%s': offset out of range",
                                 doc->name, key);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (numel == 0)
                break;
            uint64_t span = (uint64_t)(t->shape[d] - 1);
            if (span && (uint64_t)t->stride[d] > (UINT64_MAX / 4 - last) / span)
                return pcv_set_error(err, PCV_ERR_FORMAT, "%s: storage '%s': tensor view overflows",
                                     doc->name, key);
            last += span * (uint64_t)t->stride[d];
            if (t->shape[d] != 1 && t->stride[d] != expect)
                contiguous = false;
            expect *= t->shape[d];
        }
        if (numel > 0 && (last + 1 > SIZE_MAX / elem || (last + 1) * elem > st->nbytes))
            return pcv_set_error(err, PCV_ERR_FORMAT,
                                 "%s: a tensor view (offset %" PRId64 ") reaches element %" PRIu64
                                 " of storage '%s', which holds only %zu bytes (%zu-byte elements)",
                                 doc->name, t->offset, last, key, st->nbytes, elem);
        bool swap = st->big_endian && elem > 1;
        if (numel == 0) {
            t->data = st->data;
        } else if (contiguous && !swap) {
            t->data = st->data + (size_t)t->offset * elem;
        } else {
            if (nbytes > st->nbytes) /* broadcast (stride-0) views could expand without bound */
                return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                                     "%s: a tensor view of storage '%s' is larger than the storage "
                                     "(overlapping strides are not supported)", doc->name, key);
            unsigned char *out = doc_buf(&m, nbytes);
            if (!out)
                return err ? (int)err->code : PCV_ERR_OOM;
            gather(out, st->data + (size_t)t->offset * elem, elem, t->ndim, t->shape, t->stride, numel);
            if (swap)
                byteswap(out, elem, (size_t)numel);
            t->data = out;
        }
        t->nbytes = nbytes;
        o->kind = PK_ARRAY;
    }
    return 0;
}
