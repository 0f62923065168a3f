/* Generators of the hostile inputs of issue 12, shared by the C tests, tests/gen_hostile.c (the
 * shell tests' generator) and the fuzz seed corpus. Everything is built in memory, so no large
 * file is committed: the largest ones (a 4 MB pickle, a decompression-bomb PNG) are made at test
 * time.
 *
 * The pickles are written with the opcodes NumPy and Haiku use (protocol 3: _reconstruct + BUILD
 * arrays, memo PUT/GET for shared objects). */
#ifndef PCV_TEST_HOSTILE_H
#define PCV_TEST_HOSTILE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hbuf {
    unsigned char *p;
    size_t n, cap;
} hbuf;

static inline void hb_put(hbuf *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->n + n)
            c *= 2;
        unsigned char *q = realloc(b->p, c);
        if (!q) {
            fprintf(stderr, "hostile.h: out of memory\n");
            exit(2);
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static inline void hb_u8(hbuf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    hb_put(b, &c, 1);
}

static inline void hb_le(hbuf *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        hb_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}

static inline void hb_be(hbuf *b, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        hb_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}

/* ---- pickle opcodes -------------------------------------------------------------------------- */

static inline void pw_str(hbuf *b, const char *s) /* BINUNICODE */
{
    hb_u8(b, 'X');
    hb_le(b, strlen(s), 4);
    hb_put(b, s, strlen(s));
}

static inline void pw_bytes(hbuf *b, const void *d, size_t n) /* BINBYTES */
{
    hb_u8(b, 'B');
    hb_le(b, n, 4);
    hb_put(b, d, n);
}

static inline void pw_int(hbuf *b, int32_t v) /* BININT */
{
    hb_u8(b, 'J');
    hb_le(b, (uint32_t)v, 4);
}

static inline void pw_put(hbuf *b, uint32_t i) /* LONG_BINPUT */
{
    hb_u8(b, 'r');
    hb_le(b, i, 4);
}

static inline void pw_get(hbuf *b, uint32_t i) /* LONG_BINGET */
{
    hb_u8(b, 'j');
    hb_le(b, i, 4);
}

static inline void pw_global(hbuf *b, const char *mod, const char *name)
{
    hb_u8(b, 'c');
    hb_put(b, mod, strlen(mod));
    hb_u8(b, '\n');
    hb_put(b, name, strlen(name));
    hb_u8(b, '\n');
}

/* numpy.dtype('f4') with its BUILD state */
static inline void pw_dtype_f4(hbuf *b)
{
    pw_global(b, "numpy", "dtype");
    pw_str(b, "f4");
    hb_u8(b, 0x89); /* NEWFALSE */
    hb_u8(b, 0x88); /* NEWTRUE */
    hb_u8(b, 0x87); /* TUPLE3 */
    hb_u8(b, 'R');
    hb_u8(b, '(');
    pw_int(b, 3);
    pw_str(b, "<");
    hb_u8(b, 'N');
    hb_u8(b, 'N');
    hb_u8(b, 'N');
    pw_int(b, -1);
    pw_int(b, -1);
    pw_int(b, 0);
    hb_u8(b, 't');
    hb_u8(b, 'b');
}

/* numpy _reconstruct(ndarray, (0,), b'b') -- the empty array BUILD fills */
static inline void pw_reconstruct(hbuf *b)
{
    pw_global(b, "numpy.core.multiarray", "_reconstruct");
    pw_global(b, "numpy", "ndarray");
    pw_int(b, 0);
    hb_u8(b, 0x85); /* TUPLE1 */
    hb_u8(b, 'C');  /* SHORT_BINBYTES b'b' */
    hb_u8(b, 1);
    hb_u8(b, 'b');
    hb_u8(b, 0x87);
    hb_u8(b, 'R');
}

/* A float32 array [ndim dims] whose data are `data` (nbytes); data_memo >= 0: the bytes object is
 * memo entry data_memo (stored when put_data, fetched otherwise) so that arrays share it. */
static inline void pw_array(hbuf *b, int ndim, const int32_t *dims, const void *data, size_t nbytes, int data_memo,
                     int put_data)
{
    pw_reconstruct(b);
    hb_u8(b, '(');
    pw_int(b, 1);
    hb_u8(b, '(');
    for (int i = 0; i < ndim; i++)
        pw_int(b, dims[i]);
    hb_u8(b, 't');
    pw_dtype_f4(b);
    hb_u8(b, 0x89); /* is_fortran False */
    if (data_memo >= 0 && !put_data) {
        pw_get(b, (uint32_t)data_memo);
    } else {
        pw_bytes(b, data, nbytes);
        if (data_memo >= 0)
            pw_put(b, (uint32_t)data_memo);
    }
    hb_u8(b, 't');
    hb_u8(b, 'b');
}

/* Issue 12 #1: a DAG of shared dicts, `levels` deep with `fanout` keys each, over one 1x1 array:
 * fanout^levels leaves in about 1 KB. */
static inline void gen_dag_pickle(hbuf *b, int levels, int fanout)
{
    hb_u8(b, 0x80);
    hb_u8(b, 3);
    float one = 1.0f;
    hb_u8(b, '}');
    pw_str(b, "w");
    pw_array(b, 2, (const int32_t[]){1, 1}, &one, sizeof one, -1, 0);
    hb_u8(b, 's');
    pw_put(b, 0);
    for (int l = 1; l <= levels; l++) {
        hb_u8(b, '}');
        hb_u8(b, '(');
        for (int k = 0; k < fanout; k++) {
            char key[8];
            snprintf(key, sizeof key, "%c", 'a' + k);
            pw_str(b, key);
            pw_get(b, (uint32_t)(l - 1));
        }
        hb_u8(b, 'u');
        if (l < levels)
            pw_put(b, (uint32_t)l);
    }
    hb_u8(b, '.');
}

/* Issue 12 #2: one [n x n] float32 array (memoized) referenced as the kernel "w" of `refs`
 * attention Linears of the masked LM (perceiver_encoder/~/self_attention_<k>/attention/linear*),
 * each of which the renamer transposes. */
static inline void gen_shared_array_pickle(hbuf *b, int n, int refs)
{
    hb_u8(b, 0x80);
    hb_u8(b, 3);
    size_t nb = (size_t)n * (size_t)n * 4;
    float *data = calloc((size_t)n * (size_t)n, sizeof *data);
    for (size_t i = 0; data && i < (size_t)n * (size_t)n; i++)
        data[i] = (float)(i % 1000) * 1e-3f;
    hb_u8(b, '}');
    hb_u8(b, '(');
    static const char *const lin[] = {"linear", "linear_1", "linear_2", "linear_3"};
    for (int r = 0; r < refs; r++) {
        char scope[128];
        if (r / 4 == 0)
            snprintf(scope, sizeof scope, "perceiver_encoder/~/self_attention/attention/%s", lin[r % 4]);
        else
            snprintf(scope, sizeof scope, "perceiver_encoder/~/self_attention_%d/attention/%s", r / 4, lin[r % 4]);
        pw_str(b, scope);
        hb_u8(b, '}');
        pw_str(b, "w");
        if (r == 0) {
            pw_array(b, 2, (const int32_t[]){n, n}, data, nb, -1, 0);
            pw_put(b, 1);
        } else {
            pw_get(b, 1);
        }
        hb_u8(b, 's');
    }
    hb_u8(b, 'u');
    hb_u8(b, '.');
    free(data);
}

/* Several arrays of different shapes over one shared bytes object of n floats (n divisible by
 * every shape), each transposed by the renamer: the copies add up to `count` x the file. */
static inline void gen_shared_bytes_pickle(hbuf *b, int count)
{
    static const int32_t shapes[][2] = {{1024, 1024}, {512, 2048}, {2048, 512}, {256, 4096},
                                        {4096, 256}, {128, 8192}, {8192, 128}, {64, 16384}};
    size_t n = 1024 * 1024, nb = n * 4;
    float *data = calloc(n, sizeof *data);
    hb_u8(b, 0x80);
    hb_u8(b, 3);
    hb_u8(b, '}');
    hb_u8(b, '(');
    for (int r = 0; r < count && r < 8; r++) {
        char scope[128];
        snprintf(scope, sizeof scope, "perceiver_encoder/~/self_attention%s%.0d/mlp/linear", r ? "_" : "", r);
        pw_str(b, scope);
        hb_u8(b, '}');
        pw_str(b, "w");
        pw_array(b, 2, shapes[r], data, nb, 1, r == 0);
        hb_u8(b, 's');
    }
    hb_u8(b, 'u');
    hb_u8(b, '.');
    free(data);
}

/* Issue 12 #5: an array made by numpy _reconstruct that no BUILD ever fills. */
static inline void gen_unbuilt_pickle(hbuf *b)
{
    hb_u8(b, 0x80);
    hb_u8(b, 3);
    hb_u8(b, '}');
    pw_str(b, "embed");
    hb_u8(b, '}');
    pw_str(b, "embeddings");
    pw_reconstruct(b);
    hb_u8(b, 's');
    hb_u8(b, 's');
    hb_u8(b, '.');
}

/* ---- a tiny PyTorch zip (torch.save of {"w": a 2x2 float32 tensor}) ---------------------------- */

static inline void pw_odict(hbuf *b)
{
    pw_global(b, "collections", "OrderedDict");
    hb_u8(b, ')');
    hb_u8(b, 'R');
}

/* data.pkl: OrderedDict w -> _rebuild_tensor_v2(storage '0' of 4 floats, 0, (2, 2), (2, 1), False, OrderedDict()) */
static inline void gen_torch_pickle(hbuf *b)
{
    hb_u8(b, 0x80);
    hb_u8(b, 2);
    pw_odict(b);
    hb_u8(b, '(');
    pw_str(b, "w");
    pw_global(b, "torch._utils", "_rebuild_tensor_v2");
    hb_u8(b, '(');
    hb_u8(b, '(');
    pw_str(b, "storage");
    pw_global(b, "torch", "FloatStorage");
    pw_str(b, "0");
    pw_str(b, "cpu");
    pw_int(b, 4);
    hb_u8(b, 't');
    hb_u8(b, 'Q'); /* BINPERSID */
    pw_int(b, 0);
    pw_int(b, 2);
    pw_int(b, 2);
    hb_u8(b, 0x86); /* TUPLE2 */
    pw_int(b, 2);
    pw_int(b, 1);
    hb_u8(b, 0x86);
    hb_u8(b, 0x89);
    pw_odict(b);
    hb_u8(b, 't');
    hb_u8(b, 'R');
    hb_u8(b, 'u');
    hb_u8(b, '.');
}

/* A stored ZIP of (name, data) entries as torch writes it; descriptor: sizes and CRC after the
 * data (flag bit 3), as PyTorch's writer does. crc32 is the caller's (zlib's). */
typedef unsigned long (*hb_crc_fn)(unsigned long, const unsigned char *, unsigned);
static inline void gen_zip(hbuf *b, int n, const char *const *names, const hbuf *data, bool descriptor,
                           hb_crc_fn crc32fn)
{
    uint32_t offs[16], crcs[16];
    for (int i = 0; i < n && i < 16; i++) {
        offs[i] = (uint32_t)b->n;
        crcs[i] = (uint32_t)crc32fn(crc32fn(0, NULL, 0), data[i].p, (unsigned)data[i].n);
        hb_le(b, 0x04034b50, 4);
        hb_le(b, 20, 2);
        hb_le(b, descriptor ? 8 : 0, 2);
        hb_le(b, 0, 2); /* stored */
        hb_le(b, 0, 4); /* time, date */
        hb_le(b, descriptor ? 0 : crcs[i], 4);
        hb_le(b, descriptor ? 0 : data[i].n, 4);
        hb_le(b, descriptor ? 0 : data[i].n, 4);
        hb_le(b, strlen(names[i]), 2);
        hb_le(b, 0, 2);
        hb_put(b, names[i], strlen(names[i]));
        hb_put(b, data[i].p, data[i].n);
        if (descriptor) {
            hb_le(b, 0x08074b50, 4);
            hb_le(b, crcs[i], 4);
            hb_le(b, data[i].n, 4);
            hb_le(b, data[i].n, 4);
        }
    }
    uint32_t cd = (uint32_t)b->n;
    for (int i = 0; i < n && i < 16; i++) {
        hb_le(b, 0x02014b50, 4);
        hb_le(b, 20, 2);
        hb_le(b, 20, 2);
        hb_le(b, descriptor ? 8 : 0, 2);
        hb_le(b, 0, 2);
        hb_le(b, 0, 4);
        hb_le(b, crcs[i], 4);
        hb_le(b, data[i].n, 4);
        hb_le(b, data[i].n, 4);
        hb_le(b, strlen(names[i]), 2);
        hb_le(b, 0, 2); /* extra */
        hb_le(b, 0, 2); /* comment */
        hb_le(b, 0, 2); /* disk */
        hb_le(b, 0, 2); /* internal attributes */
        hb_le(b, 0, 4); /* external attributes */
        hb_le(b, offs[i], 4);
        hb_put(b, names[i], strlen(names[i]));
    }
    uint32_t cdsize = (uint32_t)b->n - cd;
    hb_le(b, 0x06054b50, 4);
    hb_le(b, 0, 4);
    hb_le(b, (uint64_t)n, 2);
    hb_le(b, (uint64_t)n, 2);
    hb_le(b, cdsize, 4);
    hb_le(b, cd, 4);
    hb_le(b, 0, 2);
}

static inline void gen_torch_zip(hbuf *b, bool descriptor, hb_crc_fn crc32fn)
{
    hbuf d[3] = {{0}, {0}, {0}};
    gen_torch_pickle(&d[0]);
    const float w[4] = {1.0f, -2.0f, 0.5f, 4.0f};
    hb_put(&d[1], w, sizeof w);
    hb_put(&d[2], "little", 6);
    static const char *const names[] = {"archive/data.pkl", "archive/data/0", "archive/byteorder"};
    gen_zip(b, 3, names, d, descriptor, crc32fn);
    for (int i = 0; i < 3; i++)
        free(d[i].p);
}

#endif
