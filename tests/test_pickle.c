/* The safe pickle reader: real NumPy pickles of every array layout (tests/fixtures/haiku_dtypes,
 * written by NumPy 1.26 and 2.x in protocols 2, 4 and 5), memo sharing, and hostile or broken
 * input: disallowed globals (real pickles that would run a shell command under Python: the
 * command must not run), truncation at every length, unknown opcodes, absurd lengths, memo
 * indices out of range, recursive structures, unbalanced marks and the allocation budget. */
#include "formats/formats.h"
#include "formats/haiku.h"
#include "formats/pickle.h"
#include "hostile.h"
#include "testutil.h"

#include <sys/resource.h>
#include <time.h>

#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PWNED "/tmp/perceiver-cl-pwned-by-pickle"

static int load(pk_doc *d, const void *buf, size_t n, pcv_error *err)
{
    pk_options o = {.name = "test"};
    return pk_load(d, buf, n, &o, err);
}

/* expects failure with a message containing want */
static void expect_fail(const char *what, const void *buf, size_t n, const char *want)
{
    pk_doc d;
    pcv_error err = {0};
    int rc = load(&d, buf, n, &err);
    CHECK(rc != 0, "%s: accepted", what);
    CHECK(rc == 0 || !want || strstr(err.msg, want), "%s: message '%s' lacks '%s'", what, err.msg, want);
    if (rc == 0)
        pk_doc_free(&d);
}

#define BYTES(s) (const unsigned char *)(s), sizeof(s) - 1

static void test_basics(void)
{
    pk_doc d;
    pcv_error err = {0};
    /* {'a': [1, -2, 300, 70000, True, None, 1.5]} protocol 2 */
    static const unsigned char p[] = "\x80\x02}q\x00X\x01\x00\x00\x00" "aq\x01]q\x02(K\x01J\xfe\xff\xff\xff"
                                     "M,\x01J\x70\x11\x01\x00\x88NG?\xf8\x00\x00\x00\x00\x00\x00" "es.";
    CHECK(load(&d, p, sizeof p - 1, &err) == 0, "%s", err.msg);
    if (d.root) {
        pk_obj *l = pk_dict_get(d.root, "a");
        CHECK(l && l->kind == PK_LIST && l->u.seq.n == 7, "list");
        if (l && l->u.seq.n == 7) {
            CHECK(l->u.seq.v[0]->u.i == 1 && l->u.seq.v[1]->u.i == -2 && l->u.seq.v[2]->u.i == 300 &&
                      l->u.seq.v[3]->u.i == 70000 && l->u.seq.v[4]->kind == PK_BOOL &&
                      l->u.seq.v[5]->kind == PK_NONE && l->u.seq.v[6]->u.f == 1.5,
                  "values");
        }
        pk_doc_free(&d);
    }
    /* memo: the same object, not a copy (DUP + BINGET of a list appended to later) */
    static const unsigned char m[] = "\x80\x02]q\x00h\x00K\x07" "a\x86.";
    CHECK(load(&d, m, sizeof m - 1, &err) == 0, "%s", err.msg);
    if (d.root) {
        CHECK(d.root->kind == PK_TUPLE && d.root->u.seq.v[0] == d.root->u.seq.v[1] &&
                  d.root->u.seq.v[0]->u.seq.n == 1, "memo shares objects");
        pk_doc_free(&d);
    }
    /* protocol 0 text opcodes: (dp0\nS'k'\np1\nI42\ns. */
    CHECK(load(&d, BYTES("(dp0\nS'k'\np1\nI42\nsVh\\u00e9\np2\nL-5L\ns."), &err) == 0, "%s", err.msg);
    if (d.root) {
        pk_obj *v = pk_dict_get(d.root, "k");
        CHECK(v && v->u.i == 42, "protocol 0 int");
        CHECK(d.root->u.dict.n == 2 && d.root->u.dict.k[1]->u.s.n == 3, "raw-unicode-escape");
        pk_doc_free(&d);
    }
    /* LONG1 sign extension and the 10-byte torch magic */
    CHECK(load(&d, BYTES("\x80\x02\x8a\x02\x00\xff."), &err) == 0 && d.root->u.i == -256, "LONG1 negative");
    pk_doc_free(&d);
    CHECK(load(&d, BYTES("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."), &err) == 0 &&
              d.root->kind == PK_BIGINT, "LONG1 10 bytes");
    pk_doc_free(&d);
}

static void test_hostile_bytes(void)
{
    /* globals that are not on the whitelist are refused by name, before anything is called */
    expect_fail("posix.system", BYTES("\x80\x02\x63posix\nsystem\nX\x04\x00\x00\x00true\x85R."), "posix.system");
    expect_fail("os.system", BYTES("cos\nsystem\n(S'true'\ntR."), "os.system");
    expect_fail("builtins.eval stack_global", BYTES("\x80\x04\x8c\x08\x62uiltins\x8c\x04\x65val\x93."), "builtins.eval");
    expect_fail("getattr", BYTES("\x80\x02\x63\x62uiltins\ngetattr\n."), "builtins.getattr");
    expect_fail("numpy subclass", BYTES("\x80\x02\x63numpy.ma\nMaskedArray\n."), "numpy.ma.MaskedArray");
    expect_fail("INST", BYTES("(S'x'\nios\nsystem\n."), "os.system");
    expect_fail("OBJ", BYTES("\x80\x02(\x63\x63ollections\nOrderedDict\no."), "OBJ");
    expect_fail("EXT1", BYTES("\x80\x02\x82\x01."), "EXT1");
    expect_fail("PERSID", BYTES("P1\n."), "PERSID");
    expect_fail("BINPERSID outside torch", BYTES("\x80\x02N\x51."), "persistent");
    expect_fail("NEWOBJ_EX", BYTES("\x80\x04N)}\x92."), "NEWOBJ_EX");
    /* calling a whitelisted name in a way it is never called */
    expect_fail("REDUCE on a non-callable", BYTES("\x80\x02K\x01)R."), "REDUCE");
    expect_fail("BUILD on a dict", BYTES("\x80\x02}}b."), "BUILD");
    expect_fail("ndarray as callable", BYTES("\x80\x02\x63numpy\nndarray\n)R."), "numpy.ndarray");
    /* structure */
    expect_fail("unknown opcode", BYTES("\x80\x02\xff."), "unknown opcode 0xff");
    expect_fail("empty", "", 0, "truncated");
    expect_fail("no STOP", BYTES("\x80\x02K\x01"), "truncated");
    expect_fail("stack underflow", BYTES("\x80\x02."), "underflow");
    expect_fail("unclosed mark", BYTES("\x80\x02(K\x01."), "MARK");
    expect_fail("pop mark without mark", BYTES("\x80\x02K\x01t."), "MARK");
    expect_fail("setitems odd", BYTES("\x80\x02}(K\x01u."), "odd");
    expect_fail("append to int", BYTES("\x80\x02K\x01K\x02" "a."), "append");
    expect_fail("protocol 9", BYTES("\x80\x09N."), "protocol");
    /* lengths that run past the data: nothing is allocated for them */
    expect_fail("BINBYTES8 2^60", BYTES("\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x10."), "declared length");
    expect_fail("BINUNICODE 4G", BYTES("\x80\x04X\xff\xff\xff\xff."), "declared length");
    expect_fail("BYTEARRAY8", BYTES("\x80\x05\x96\xff\xff\xff\xff\xff\xff\xff\xff."), "declared length");
    expect_fail("FRAME", BYTES("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x01N."), "frame");
    expect_fail("BINSTRING negative", BYTES("\x80\x01T\xff\xff\xff\xff."), "negative");
    expect_fail("LONG4 huge", BYTES("\x80\x02\x8b\xff\xff\xff\x7f."), "declared length");
    /* memo */
    expect_fail("BINGET unset", BYTES("\x80\x02h\x05."), "never stored");
    expect_fail("LONG_BINGET 4G", BYTES("\x80\x02j\xff\xff\xff\xff."), "never stored");
    expect_fail("LONG_BINPUT 4G", BYTES("\x80\x02Nr\xff\xff\xff\xff."), "out of range");
    expect_fail("PUT text huge", BYTES("Np99999999999\n."), "out of range");
    expect_fail("GET text negative", BYTES("g-1\n."), "negative");
    /* invalid UTF-8 in a str */
    expect_fail("bad utf8", BYTES("\x80\x04\x8c\x02\xc3\x28."), "UTF-8");
    /* out-of-band buffers cannot come from a file */
    expect_fail("NEXT_BUFFER", BYTES("\x80\x05\x97."), "out-of-band");
    /* numpy: declared shape and data disagree */
    expect_fail("shape/bytes mismatch",
                BYTES("\x80\x05\x63numpy._core.numeric\n_frombuffer\n(\x96\x04\x00\x00\x00\x00\x00\x00\x00"
                      "\x00\x00\x80?\x63numpy\ndtype\nX\x02\x00\x00\x00\x66\x34\x89\x88\x87R"
                      "K\x02\x85X\x01\x00\x00\x00\x43tR."),
                "need 8");
    expect_fail("object dtype",
                BYTES("\x80\x02\x63numpy._core.numeric\n_frombuffer\n(C\x00\x63numpy\ndtype\n"
                      "X\x02\x00\x00\x00O8\x89\x88\x87R)X\x01\x00\x00\x00\x43tR."),
                "not supported");
    /* allocation budget: a stream of EMPTY_DICTs within a tiny budget */
    size_t n = 200000;
    unsigned char *many = malloc(n + 3);
    many[0] = 0x80, many[1] = 2;
    for (size_t i = 2; i < n + 2; i++)
        many[i] = (i % 2) ? '0' : '}';
    many[n + 2] = '.';
    pk_doc d;
    pcv_error err = {0};
    pk_options o = {.name = "budget", .max_alloc = 1 << 16};
    int rc = pk_load(&d, many, n + 3, &o, &err);
    CHECK(rc != 0 && strstr(err.msg, "memory"), "budget: %s", err.msg);
    if (!rc)
        pk_doc_free(&d);
    free(many);
    /* deep nesting: 100000 nested lists are fine for the machine (it never recurses) ... */
    n = 100000;
    unsigned char *deep = malloc(3 * n + 8);
    size_t k = 0;
    deep[k++] = 0x80, deep[k++] = 2;
    for (size_t i = 0; i < n; i++)
        deep[k++] = ']';
    for (size_t i = 0; i + 1 < n; i++)
        deep[k++] = 'a';
    deep[k++] = '.';
    rc = load(&d, deep, k, &err);
    CHECK(rc == 0, "deep lists: %s", err.msg);
    if (!rc)
        pk_doc_free(&d);
    free(deep);
}

/* Recursive structures load, but walking them as a parameter tree stops at a depth limit. */
/* Found by fuzz_haiku: MARK then TUPLE on a machine that never pushed (no stack yet) took an
 * offset of a NULL pointer (undefined behaviour, reported by UBSan). */
static void test_empty_mark(void)
{
    pk_doc d;
    pcv_error err = {0};
    CHECK(load(&d, BYTES("(t."), &err) == 0 && d.root && d.root->kind == PK_TUPLE && d.root->u.seq.n == 0,
          "MARK TUPLE STOP: %s", err.msg);
    if (d.root)
        pk_doc_free(&d);
    CHECK(load(&d, BYTES("(l."), &err) == 0 && d.root && d.root->kind == PK_LIST, "MARK LIST STOP: %s", err.msg);
    if (d.root)
        pk_doc_free(&d);
    expect_fail("MARK SETITEMS", BYTES("(u."), "underflow");
}

static void test_recursive(void)
{
    pk_doc d;
    pcv_error err = {0};
    /* d = {}; d['a'] = d */
    CHECK(load(&d, BYTES("\x80\x02}q\x00X\x01\x00\x00\x00\x61h\x00s."), &err) == 0, "%s", err.msg);
    if (d.root) {
        CHECK(pk_dict_get(d.root, "a") == d.root, "self-reference kept as a reference");
        hk_param *p = NULL;
        size_t n = 0;
        int rc = hk_flatten(&d, "rec", &p, &n, &err);
        CHECK(rc != 0 && strstr(err.msg, "deeper"), "recursive tree: %s", err.msg);
        if (!rc)
            hk_params_free(p, n);
        pk_doc_free(&d);
    }
    /* l = []; l.append(l) */
    CHECK(load(&d, BYTES("\x80\x02]q\x00h\x00" "a."), &err) == 0, "%s", err.msg);
    if (d.root) {
        CHECK(d.root->u.seq.v[0] == d.root, "list contains itself");
        hk_param *p = NULL;
        size_t n = 0;
        CHECK(hk_flatten(&d, "rec", &p, &n, &err) != 0, "list root refused");
        pk_doc_free(&d);
    }
}

/* Every proper prefix of a real pickle is an error (never a crash or a hang). */
static void test_truncation(const char *path)
{
    size_t n = 0;
    unsigned char *buf = tu_read_file(path, &n);
    CHECK(buf != NULL && n > 100, "%s", path);
    if (!buf)
        return;
    int ok = 0;
    for (size_t len = 0; len < n; len++) {
        unsigned char *copy = malloc(len ? len : 1); /* exact size, so ASan sees any overread */
        memcpy(copy, buf, len);
        pk_doc d;
        pcv_error err = {0};
        if (load(&d, copy, len, &err) != 0)
            ok++;
        else
            pk_doc_free(&d);
        free(copy);
    }
    CHECK(ok == (int)n, "%s: %d of %zu prefixes rejected", path, ok, n);
    /* and flipping single bytes never crashes (results vary) */
    for (size_t i = 0; i < n; i += 7) {
        unsigned char *copy = malloc(n);
        memcpy(copy, buf, n);
        copy[i] ^= 0x5a;
        pk_doc d;
        pcv_error err = {0};
        if (load(&d, copy, n, &err) == 0) {
            hk_param *p = NULL;
            size_t np = 0;
            if (hk_flatten(&d, "x", &p, &np, &err) == 0)
                hk_params_free(p, np);
            pk_doc_free(&d);
        }
        free(copy);
    }
    free(buf);
}

static void test_dtypes(const char *tag)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/haiku_dtypes/cases_%s.json", tu_fixtures(), tag);
    json_error_t je;
    json_t *cases = json_load_file(path, 0, &je);
    CHECK(cases != NULL, "%s: %s", path, je.text);
    for (int proto = 2; cases && proto <= 5; proto++) {
        if (proto == 3)
            continue;
        snprintf(path, sizeof path, "%s/haiku_dtypes/dtypes_p%d_%s.pickle", tu_fixtures(), proto, tag);
        size_t n = 0;
        unsigned char *buf = tu_read_file(path, &n);
        CHECK(buf != NULL, "%s", path);
        pk_doc d;
        pcv_error err = {0};
        if (!buf || load(&d, buf, n, &err) != 0) {
            CHECK(false, "%s: %s", path, err.msg);
            free(buf);
            continue;
        }
        pk_obj *arrays = pk_dict_get(d.root, "arrays");
        const char *name;
        json_t *c;
        int checked = 0;
        json_object_foreach(cases, name, c) {
            pk_obj *a = pk_dict_get(arrays, name);
            CHECK(a && a->kind == PK_ARRAY, "%s: %s missing", path, name);
            if (!a || a->kind != PK_ARRAY)
                continue;
            json_t *shape = json_object_get(c, "shape"), *vals = json_object_get(c, "values");
            bool ok = a->u.arr->ndim == (int)json_array_size(shape);
            for (int i = 0; ok && i < a->u.arr->ndim; i++)
                ok = a->u.arr->shape[i] == json_integer_value(json_array_get(shape, (size_t)i));
            CHECK(ok, "%s: %s shape", path, name);
            pcv_st_tensor t = {.name = (char *)name, .dtype = a->u.arr->dtype, .ndim = a->u.arr->ndim,
                               .numel = (int64_t)json_array_size(vals), .data = a->u.arr->data,
                               .nbytes = a->u.arr->nbytes};
            float *f = malloc((json_array_size(vals) + 1) * sizeof *f);
            CHECK(t.nbytes == (size_t)t.numel * pcv_dtype_size(t.dtype), "%s: %s byte count", path, name);
            if (t.nbytes == (size_t)t.numel * pcv_dtype_size(t.dtype) && pcv_st_to_f32(&t, f, &err) == 0) {
                for (size_t i = 0; i < json_array_size(vals); i++) {
                    double want = json_number_value(json_array_get(vals, i));
                    if ((float)want != f[i]) {
                        CHECK(false, "%s: %s[%zu] = %g, want %g", path, name, i, f[i], want);
                        break;
                    }
                }
                checked++;
            }
            free(f);
        }
        CHECK(checked == (int)json_object_size(cases), "%s: %d arrays checked", path, checked);
        pk_doc_free(&d);
        if (proto == 4)
            test_truncation(path);
        free(buf);
    }
    json_decref(cases);
}

static void test_hostile_files(void)
{
    static const char *const files[] = {"os_system_p0.pickle", "os_system_p2.pickle", "os_system_p4.pickle",
                                        "nested_os_system.pickle", "builtins_eval.pickle"};
    unlink(PWNED);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/haiku_hostile/%s", tu_fixtures(), files[i]);
        size_t n = 0;
        unsigned char *buf = tu_read_file(path, &n);
        CHECK(buf != NULL, "%s", path);
        if (buf)
            expect_fail(files[i], buf, n, strstr(files[i], "eval") ? "__builtin__.eval" : "posix.system");
        free(buf);
        /* and through the weights loader, which names the file */
        pcv_weights w;
        pcv_error err = {0};
        CHECK(pcv_weights_load(&w, path, NULL, &err) != 0 && strstr(err.msg, files[i]) &&
                  strstr(err.msg, "not allowed"), "%s: %s", files[i], err.msg);
    }
    struct stat sb;
    CHECK(stat(PWNED, &sb) != 0, "%s exists: a pickle ran a command!", PWNED);
}

static const char *write_tmp(const char *name, const hbuf *b)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s-%ld.pickle", tu_tmpdir(), name, (long)getpid());
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b->p, 1, b->n, f);
        fclose(f);
    }
    return path;
}

static long peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

/* Issue 12 #1, #2, #5: shared sub-trees, shared arrays and shared bytes are bounded in time and
 * memory, and an array never filled by BUILD is refused. */
static void test_shared_graphs(void)
{
    pcv_error err = {0};
    /* a 16^7-leaf DAG in about a kilobyte: the walk stops at the pickle_nodes limit, at once */
    hbuf b = {0};
    gen_dag_pickle(&b, 7, 16);
    CHECK(b.n < 2048, "DAG pickle of %zu bytes", b.n);
    pk_doc d;
    CHECK(load(&d, b.p, b.n, &err) == 0, "DAG pickle loads: %s", err.msg);
    if (d.root) {
        hk_param *p = NULL;
        size_t n = 0;
        clock_t t0 = clock();
        int rc = hk_flatten(&d, "dag", &p, &n, &err);
        double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
        CHECK(rc != 0 && strstr(err.msg, "pickle_nodes = 65536") && strstr(err.msg, "PERCEIVER_LIMITS"),
              "DAG walk: %s", err.msg);
        CHECK(secs < 2.0, "DAG walk took %.1f s", secs);
        if (!rc)
            hk_params_free(p, n);
        pk_doc_free(&d);
    }
    /* through the weights loader too */
    const char *path = write_tmp("dag", &b);
    pcv_weights w;
    CHECK(pcv_weights_load(&w, path, NULL, &err) != 0 && strstr(err.msg, "pickle_nodes"), "DAG file: %s", err.msg);
    unlink(path);
    free(b.p);

    /* one 4 MB array referenced by 300 Linear kernels: transposed once, not 300 times (1.2 GB) */
    memset(&b, 0, sizeof b);
    gen_shared_array_pickle(&b, 1024, 300);
    path = write_tmp("shared", &b);
    long before = peak_rss_mb();
    pcv_weights_options wo = {.architecture = "MLM"};
    int rc = pcv_weights_load(&w, path, &wo, &err);
    long grew = peak_rss_mb() - before;
    CHECK(rc == 0, "shared-array pickle: %s", err.msg);
    if (rc == 0) {
        const void *first = NULL;
        int same = 0, weights = 0;
        for (int i = 0; i < w.count; i++)
            if (strstr(w.tensors[i].name, ".weight")) {
                weights++;
                if (!first)
                    first = w.tensors[i].data;
                same += w.tensors[i].data == first;
            }
        CHECK(weights == 300 && same == 300, "%d of %d transposed kernels share one copy", same, weights);
        pcv_weights_release(&w);
    }
    CHECK(grew < 200, "loading a 4 MB pickle grew the peak memory by %ld MB", grew);
    unlink(path);
    free(b.p);

    /* 8 arrays of different shapes over one 4 MB bytes object: 32 MB of transposes, charged to
     * the pickle's budget (2 x file + pickle_bytes) */
    memset(&b, 0, sizeof b);
    gen_shared_bytes_pickle(&b, 8);
    path = write_tmp("sharedbytes", &b);
    rc = pcv_weights_load(&w, path, &wo, &err);
    CHECK(rc == 0, "shared-bytes pickle within the default budget: %s", err.msg);
    if (rc == 0)
        pcv_weights_release(&w);
    pcv_limits lim, saved;
    pcv_get_limits(&saved);
    lim = saved;
    lim.pickle_bytes = 1024;
    pcv_set_limits(&lim, &err);
    rc = pcv_weights_load(&w, path, &wo, &err);
    CHECK(rc != 0 && strstr(err.msg, "transposing") && strstr(err.msg, "pickle_bytes = 1024"),
          "derived copies over the budget: %s", err.msg);
    if (rc == 0)
        pcv_weights_release(&w);
    pcv_set_limits(&saved, &err);
    unlink(path);
    free(b.p);

    /* _reconstruct without BUILD */
    memset(&b, 0, sizeof b);
    gen_unbuilt_pickle(&b);
    expect_fail("_reconstruct without BUILD", b.p, b.n, "never filled by BUILD");
    free(b.p);
}

int main(void)
{
    test_basics();
    test_hostile_bytes();
    test_empty_mark();
    test_recursive();
    test_dtypes("np1");
    test_dtypes("np2");
    test_hostile_files();
    test_shared_graphs();
    return TEST_DONE();
}
