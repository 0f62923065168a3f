/* PyTorch checkpoints: pytorch_model.bin in the zip and the legacy format, and sharded
 * safetensors, all of the same tiny masked LM (tests/fixtures/torch_*), must reproduce
 * transformers' outputs (tolerance mlm-tiny) through the library and `perceiver-cl run`.
 * Broken and hostile archives (central directory or local header offsets out of bounds, a
 * storage record of the wrong size, truncation at many lengths, a data.pkl that would run a
 * shell command) give clear errors and no crash. */
#include "formats/formats.h"
#include "perceiver/model.h"
#include "hostile.h"
#include "testutil.h"

#include <zlib.h>
#include "formats/torchzip.h"

#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static double atol_, rtol_;

static void compare_outputs(const char *what, const pcv_safetensors *ex, const pcv_st_tensor *got, int ngot)
{
    for (int i = 0; i < ex->count; i++) {
        const pcv_st_tensor *e = &ex->tensors[i], *g = NULL;
        for (int j = 0; j < ngot; j++)
            if (!strcmp(got[j].name, e->name))
                g = &got[j];
        CHECK(g && g->numel == e->numel, "%s: output %s", what, e->name);
        if (!g || g->numel != e->numel)
            continue;
        float *a = malloc((size_t)e->numel * 4), *b = malloc((size_t)e->numel * 4);
        pcv_error err = {0};
        pcv_st_to_f32(e, a, &err);
        pcv_st_to_f32(g, b, &err);
        long bad = 0;
        double mx = 0;
        for (int64_t k = 0; k < e->numel; k++) {
            double d = fabs((double)a[k] - b[k]);
            bad += !(d <= atol_ + rtol_ * fabs(a[k]));
            mx = d > mx ? d : mx;
        }
        printf("  %-40s %-18s max|err| %.3g\n", what, e->name, mx);
        CHECK(bad == 0, "%s: %ld values of %s outside mlm-tiny", what, bad, e->name);
        free(a);
        free(b);
    }
}

static void run_fixture(const char *name, const char *format)
{
    char dir[4096], path[8192], out[8192], cmd[32768];
    pcv_error err = {0};
    snprintf(dir, sizeof dir, "%s/%s", tu_fixtures(), name);
    pcv_weights w;
    CHECK(pcv_weights_load(&w, dir, NULL, &err) == 0, "%s: %s", name, err.msg);
    if (w.path) {
        CHECK(strstr(w.format, format) != NULL, "%s: format '%s', want '%s'", name, w.format, format);
        CHECK(!strcmp(w.architecture, "PerceiverForMaskedLM") && !w.from_haiku, "%s: architecture", name);
        pcv_weights_release(&w);
    }
    pcv_safetensors in = {0}, ex = {0}, got = {0};
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    CHECK(pcv_st_map(&in, path, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK(pcv_st_map(&ex, path, &err) == 0, "%s", err.msg);
    /* library */
    pcv_model *m = NULL;
    CHECK(pcv_model_load(dir, NULL, &m, &err) == 0, "%s: %s", name, err.msg);
    if (m && in.count == 2) {
        pcv_io_tensor ios[2];
        CHECK(pcv_io_from_safetensors(&in, ios, &err) == 0, "%s", err.msg);
        const pcv_io_tensor *outs = NULL;
        int nout = 0;
        CHECK(pcv_model_forward(m, ios, 2, &outs, &nout, &err) == 0, "%s", err.msg);
        pcv_st_tensor gt[8];
        for (int i = 0; i < nout && i < 8; i++) {
            memset(&gt[i], 0, sizeof gt[i]);
            gt[i].name = (char *)outs[i].name;
            gt[i].dtype = PCV_DT_F32;
            gt[i].ndim = outs[i].ndim;
            gt[i].numel = 1;
            for (int d = 0; d < outs[i].ndim; d++)
                gt[i].numel *= outs[i].shape[d];
            gt[i].data = outs[i].data;
            gt[i].nbytes = (size_t)gt[i].numel * 4;
        }
        char what[256];
        snprintf(what, sizeof what, "%s (library)", name);
        compare_outputs(what, &ex, gt, nout);
    }
    pcv_model_free(m);
    /* perceiver-cl run */
    const char *bin = getenv("PCV_BIN");
    if (bin) {
        snprintf(out, sizeof out, "%s/torchzip-%s.safetensors", tu_tmpdir(), name);
        snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -i '%s/inputs.safetensors' -o '%s'", bin, dir, dir, out);
        CHECK(system(cmd) == 0, "%s", cmd);
        if (pcv_st_map(&got, out, &err) == 0) {
            char what[256];
            snprintf(what, sizeof what, "%s (perceiver-cl run)", name);
            compare_outputs(what, &ex, got.tensors, got.count);
            pcv_st_unmap(&got);
        } else {
            CHECK(false, "%s", err.msg);
        }
        unlink(out);
    }
    pcv_st_unmap(&in);
    pcv_st_unmap(&ex);
}

/* the central directory entry of a zip member, found by scanning (test helper) */
static unsigned char *find_cd(unsigned char *buf, size_t n, const char *suffix)
{
    size_t sl = strlen(suffix);
    for (size_t i = 0; i + 46 < n; i++)
        if (!memcmp(buf + i, "PK\1\2", 4)) {
            size_t nl = (size_t)(buf[i + 28] | buf[i + 29] << 8);
            if (i + 46 + nl <= n && nl >= sl && !memcmp(buf + i + 46 + nl - sl, suffix, sl))
                return buf + i;
        }
    return NULL;
}

static unsigned le32at(const unsigned char *p) { return (unsigned)(p[0] | p[1] << 8 | p[2] << 16) | (unsigned)p[3] << 24; }
static void put32(unsigned char *p, unsigned v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Makes the CRC-32 of the entry whose central record is cd consistent again after an edit: in the
 * central record, and in the local header or (torch writes them) the data descriptor, which is
 * rewritten right after the entry's data without its optional signature. */
static void fix_crc(unsigned char *buf, unsigned char *cd)
{
    unsigned off = le32at(cd + 42), csize = le32at(cd + 20), usize = le32at(cd + 24);
    unsigned char *lh = buf + off;
    unsigned char *data = lh + 30 + (lh[26] | lh[27] << 8) + (lh[28] | lh[29] << 8);
    unsigned crc = (unsigned)crc32(0L, data, csize);
    put32(cd + 16, crc);
    if (lh[6] & 8) {
        put32(data + csize, crc);
        put32(data + csize + 4, csize);
        put32(data + csize + 8, usize);
    } else {
        put32(lh + 14, crc);
    }
}

static void expect_bad(const char *what, const unsigned char *buf, size_t n, const char *want)
{
    pcv_torch_file f;
    pcv_error err = {0};
    int rc = pcv_torch_parse(&f, buf, n, what, &err);
    CHECK(rc != 0, "%s: accepted", what);
    CHECK(rc == 0 || !want || strstr(err.msg, want), "%s: '%s' lacks '%s'", what, err.msg, want);
    if (!rc)
        pcv_torch_close(&f);
}

static void test_broken(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/torch_mlm/pytorch_model.bin", tu_fixtures());
    size_t n = 0;
    unsigned char *orig = tu_read_file(path, &n);
    CHECK(orig && n > 1000, "%s", path);
    if (!orig)
        return;
    pcv_torch_file f;
    pcv_error err = {0};
    CHECK(pcv_torch_parse(&f, orig, n, "ok", &err) == 0, "%s", err.msg);
    if (!err.msg[0])
        pcv_torch_close(&f);
    unsigned char *b = malloc(n);

    /* EOCD central directory offset out of bounds */
    memcpy(b, orig, n);
    size_t eocd = n - 22;
    while (eocd > 0 && memcmp(b + eocd, "PK\5\6", 4))
        eocd--;
    b[eocd + 16] = 0xf0, b[eocd + 17] = 0xff, b[eocd + 18] = 0xff, b[eocd + 19] = 0x7f;
    expect_bad("cd offset", b, n, "outside");
    /* a local header offset out of bounds */
    memcpy(b, orig, n);
    unsigned char *cd = find_cd(b, n, "/data/0");
    CHECK(cd != NULL, "data/0 entry");
    if (cd) {
        cd[42] = 0xff, cd[43] = 0xff, cd[44] = 0xff, cd[45] = 0x7f;
        expect_bad("local header offset", b, n, "out of bounds");
        /* a storage record shorter than the storage the pickle declares */
        memcpy(b, orig, n);
        cd = find_cd(b, n, "/data/0");
        cd[20] -= 4, cd[24] -= 4;
        fix_crc(b, cd);
        expect_bad("storage size", b, n, "declares");
        /* issue 12 #4: corrupted data (a flipped byte of a weight): the CRC-32 refuses it */
        memcpy(b, orig, n);
        cd = find_cd(b, n, "/data/0");
        unsigned char *lh = b + le32at(cd + 42);
        lh[30 + (lh[26] | lh[27] << 8) + (lh[28] | lh[29] << 8) + 100] ^= 0x40;
        expect_bad("corrupt data", b, n, "'pytorch_model/data/0': CRC-32 mismatch");
        /* a wrong CRC field in the central directory */
        memcpy(b, orig, n);
        cd = find_cd(b, n, "/data/0");
        cd[16] ^= 1;
        expect_bad("central CRC", b, n, "CRC-32 mismatch");
        /* a wrong CRC in the data descriptor (or local header) */
        memcpy(b, orig, n);
        cd = find_cd(b, n, "/data/0");
        fix_crc(b, cd);
        lh = b + le32at(cd + 42);
        if (lh[6] & 8)
            lh[30 + (lh[26] | lh[27] << 8) + (lh[28] | lh[29] << 8) + le32at(cd + 20)] ^= 1;
        else
            lh[14] ^= 1;
        expect_bad("local CRC", b, n, "local CRC-32");
        /* the local header names another file than the central directory */
        memcpy(b, orig, n);
        cd = find_cd(b, n, "/data/0");
        lh = b + le32at(cd + 42);
        lh[30 + (lh[26] | lh[27] << 8) - 1] = '7';
        expect_bad("local name", b, n, "local header names it 'pytorch_model/data/7'");
        /* two central records of one local entry: the same bytes counted twice (overlap) */
        memcpy(b, orig, n);
        cd = find_cd(b, n, "/data/0");
        unsigned char *cd1 = find_cd(b, n, "/data/1");
        size_t reclen = 46 + (size_t)(cd[28] | cd[29] << 8) + (size_t)(cd[30] | cd[31] << 8) + (size_t)(cd[32] | cd[33] << 8);
        size_t reclen1 = 46 + (size_t)(cd1[28] | cd1[29] << 8) + (size_t)(cd1[30] | cd1[31] << 8) + (size_t)(cd1[32] | cd1[33] << 8);
        CHECK(cd1 && reclen == reclen1, "data/1 record");
        if (cd1 && reclen == reclen1) {
            memcpy(cd1, cd, reclen);
            expect_bad("overlap", b, n, "overlap");
        }
        /* the archive_entries limit */
        pcv_limits lim, saved;
        pcv_get_limits(&saved);
        lim = saved;
        lim.archive_entries = 10;
        pcv_set_limits(&lim, &err);
        expect_bad("entries", orig, n, "archive_entries = 10");
        pcv_set_limits(&saved, &err);
        /* deflated entries are refused clearly */
        memcpy(b, orig, n);
        cd = find_cd(b, n, "/data/0");
        cd[10] = 8;
        expect_bad("deflate", b, n, "compressed");
    }
    /* data.pkl missing */
    memcpy(b, orig, n);
    cd = find_cd(b, n, "/data.pkl");
    if (cd) {
        size_t nl = (size_t)(cd[28] | cd[29] << 8);
        cd[46 + nl - 1] = 'x';
        expect_bad("no data.pkl", b, n, "data.pkl");
    }
    /* truncation at many lengths */
    int rejected = 0, tried = 0;
    for (size_t len = 0; len < n; len += (len < 64 ? 1 : 61)) {
        unsigned char *t = malloc(len ? len : 1);
        memcpy(t, orig, len);
        pcv_torch_file g;
        if (pcv_torch_parse(&g, t, len, "trunc", &err) != 0)
            rejected++;
        else
            pcv_torch_close(&g);
        tried++;
        free(t);
    }
    CHECK(rejected == tried, "truncated archives: %d of %d rejected", rejected, tried);
    free(b);
    free(orig);

    /* legacy file truncated */
    snprintf(path, sizeof path, "%s/torch_mlm_legacy/pytorch_model.bin", tu_fixtures());
    orig = tu_read_file(path, &n);
    CHECK(orig != NULL, "%s", path);
    rejected = tried = 0;
    for (size_t len = 0; orig && len < n; len += (len < 256 ? 1 : 97)) {
        unsigned char *t = malloc(len ? len : 1);
        memcpy(t, orig, len);
        pcv_torch_file g;
        if (pcv_torch_parse(&g, t, len, "trunc", &err) != 0)
            rejected++;
        else
            pcv_torch_close(&g);
        tried++;
        free(t);
    }
    CHECK(rejected == tried, "truncated legacy files: %d of %d rejected", rejected, tried);
    free(orig);

    /* a torch.save zip whose data.pkl would run a shell command */
    unlink("/tmp/perceiver-cl-pwned-by-pickle");
    snprintf(path, sizeof path, "%s/haiku_hostile/pytorch_model.bin", tu_fixtures());
    pcv_weights w;
    CHECK(pcv_weights_load(&w, path, NULL, &err) != 0 && strstr(err.msg, "posix.system"), "%s", err.msg);
    struct stat sb;
    CHECK(stat("/tmp/perceiver-cl-pwned-by-pickle", &sb) != 0, "hostile data.pkl ran a command");
}

/* The smallest torch.save file (also the fuzz seed): with and without data descriptors. */
static void test_tiny(void)
{
    for (int dd = 0; dd < 2; dd++) {
        hbuf b = {0};
        gen_torch_zip(&b, dd, (hb_crc_fn)crc32);
        pcv_torch_file f;
        pcv_error err = {0};
        int rc = pcv_torch_parse(&f, b.p, b.n, "tiny", &err);
        CHECK(rc == 0, "tiny torch zip (descriptor %d): %s", dd, err.msg);
        if (rc == 0) {
            const pk_obj *w = pk_dict_get(f.doc.root, "w");
            float v3 = 0; /* the data are unaligned inside the archive */
            if (w && w->kind == PK_ARRAY && w->u.arr->nbytes == 16)
                memcpy(&v3, w->u.arr->data + 12, sizeof v3);
            CHECK(w && w->kind == PK_ARRAY && w->u.arr->ndim == 2 && w->u.arr->shape[0] == 2 && v3 == 4.0f,
                  "tiny torch zip: tensor w");
            pcv_torch_close(&f);
        }
        free(b.p);
    }
}

int main(void)
{
    test_tiny();
    char path[4096];
    json_error_t je;
    snprintf(path, sizeof path, "%s/../tolerances.json", tu_fixtures());
    json_t *t = json_load_file(path, 0, &je);
    json_t *p = json_object_get(json_object_get(t, "models"), "mlm-tiny");
    atol_ = json_number_value(json_object_get(p, "atol"));
    rtol_ = json_number_value(json_object_get(p, "rtol"));
    CHECK(atol_ > 0, "mlm-tiny tolerance");
    json_decref(t);
    run_fixture("torch_mlm", "pytorch-zip");
    run_fixture("torch_mlm_legacy", "pytorch-legacy");
    run_fixture("torch_sharded", "safetensors, 3 shards");
    test_broken();
    return TEST_DONE();
}
