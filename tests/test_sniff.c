/* Format sniffing by structure (formats/sniff.c): a safetensors file whose header length has
 * 0x80 as its low byte (a pickle's PROTO byte; about 1 file in 32 written by save_pretrained)
 * is read as safetensors: tests/fixtures/safetensors_0x80 was written by the safetensors library
 * (tools/make_sniff_fixture.py) and must compute what mlm_heads_default computes. The
 * 0x80 0x03 variant (a protocol-3 pickle's first two bytes) is built here by padding a header
 * with spaces, as the format allows. Pickles, torch files and other files keep their kinds. */
#include "formats/sniff.h"
#include "perceiver/model.h"
#include "testutil.h"

#include <string.h>

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static bool write_all(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(a, 1, na, f) == na && (!nb || fwrite(b, 1, nb, f) == nb);
    return f && fclose(f) == 0 && ok;
}

/* every tensor of a equals the one of the same name in b, bytes and shapes */
static void same_weights(const char *pa, const char *pb)
{
    pcv_weights *a = NULL, *b = NULL;
    pcv_error err = {0};
    CHECK(pcv_weights_open(pa, NULL, &a, &err) == 0, "%s: %s", pa, err.msg);
    CHECK(pcv_weights_open(pb, NULL, &b, &err) == 0, "%s: %s", pb, err.msg);
    if (!a || !b)
        goto done;
    pcv_weights_info ia, ib;
    pcv_weights_get_info(a, &ia);
    pcv_weights_get_info(b, &ib);
    CHECK(!strcmp(ia.format, "safetensors") && !strcmp(ib.format, "safetensors"), "formats %s / %s", ia.format,
          ib.format);
    CHECK(pcv_weights_count(a) == pcv_weights_count(b) && pcv_weights_count(a) > 10, "tensor counts %d / %d",
          pcv_weights_count(a), pcv_weights_count(b));
    int differ = 0;
    for (int i = 0; i < pcv_weights_count(a); i++) {
        const pcv_st_tensor *t = pcv_weights_tensor_at(a, i), *u = pcv_weights_find(b, t->name);
        if (!u || u->nbytes != t->nbytes || memcmp(u->data, t->data, t->nbytes))
            differ++;
    }
    CHECK(differ == 0, "%s: %d tensors differ from %s", pa, differ, pb);
done:
    pcv_weights_close(a);
    pcv_weights_close(b);
}

/* the logits of a model folder on an inputs file, copied */
static float *logits(const char *dir, const char *inputs, size_t *n)
{
    pcv_model *m = NULL;
    pcv_safetensors *st = NULL;
    pcv_error err = {0};
    float *out = NULL;
    pcv_io_tensor in[4];
    const pcv_io_tensor *o;
    int no;
    if (pcv_model_load(dir, NULL, &m, &err) || pcv_st_open(inputs, &st, &err) ||
        pcv_io_from_safetensors(st, in, &err) || pcv_model_forward(m, in, pcv_st_count(st), &o, &no, &err)) {
        CHECK(false, "%s: %s", dir, err.msg);
    } else {
        const pcv_io_tensor *l = pcv_io_find(o, no, "logits");
        *n = 1;
        for (int d = 0; d < l->ndim; d++)
            *n *= (size_t)l->shape[d];
        out = malloc(*n * sizeof *out);
        memcpy(out, l->data, *n * sizeof *out);
    }
    pcv_st_close(st);
    pcv_model_free(m);
    return out;
}

int main(void)
{
    char orig[4096], fix[4096], path[4096], inputs[4096];
    snprintf(orig, sizeof orig, "%s/mlm_heads_default", tu_fixtures());
    snprintf(fix, sizeof fix, "%s/safetensors_0x80", tu_fixtures());
    snprintf(inputs, sizeof inputs, "%s/inputs.safetensors", orig);

    /* the file written by the safetensors library */
    snprintf(path, sizeof path, "%s/model.safetensors", fix);
    size_t len = 0;
    unsigned char *b = read_all(path, &len);
    CHECK(b && len > 9 && b[0] == 0x80 && b[8] == '{', "fixture does not begin with 0x80");
    free(b);
    char what[64];
    CHECK(pcv_sniff_file(path, what, sizeof what) == PCV_FILE_SAFETENSORS, "0x80 fixture sniffed as '%s'", what);
    same_weights(fix, orig);
    size_t n1 = 0, n2 = 0;
    float *l1 = logits(fix, inputs, &n1), *l2 = logits(orig, inputs, &n2);
    CHECK(l1 && l2 && n1 == n2 && !memcmp(l1, l2, n1 * sizeof *l1), "0x80 fixture computes differently");
    free(l1);
    free(l2);

    /* 0x80 0x03 ...: the header re-padded with spaces to 0x..0380 bytes */
    snprintf(path, sizeof path, "%s/model.safetensors", orig);
    b = read_all(path, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | b[i];
    uint64_t want = (hl | 0xffff) + 1 + 0x0380;
    unsigned char *nb = malloc(8 + want);
    for (int i = 0; i < 8; i++)
        nb[i] = (unsigned char)(want >> (8 * i));
    memcpy(nb + 8, b + 8, hl);
    memset(nb + 8 + hl, ' ', want - hl);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/sniff_0380", tu_tmpdir());
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/config.json' '%s/'", dir, orig, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(write_all(path, nb, 8 + want, b + 8 + hl, len - 8 - hl), "writing %s", path);
    CHECK(nb[0] == 0x80 && nb[1] == 0x03, "variant begins %02x %02x", nb[0], nb[1]);
    CHECK(pcv_sniff_file(path, what, sizeof what) == PCV_FILE_SAFETENSORS, "0x80 0x03 variant sniffed as '%s'", what);
    same_weights(dir, orig);
    free(nb);

    /* not safetensors: the header does not end with '}' + spaces, or does not fit */
    unsigned char bad[16] = {0x80, 0x03, 0, 0, 0, 0, 0, 0, '{', 'x', 'y', 'z', '.', 0, 0, '.'};
    snprintf(path, sizeof path, "%s/sniff_not.safetensors", tu_tmpdir());
    CHECK(write_all(path, bad, sizeof bad, NULL, 0), "write");
    CHECK(pcv_sniff_file(path, NULL, 0) != PCV_FILE_SAFETENSORS, "a 0x380-byte header in a 16-byte file");
    free(b);

    /* other kinds keep theirs */
    struct {
        const char *file;
        pcv_file_kind kind;
    } kinds[] = {
        {"haiku_mlm/p2_np2_flatmapping.pickle", PCV_FILE_PICKLE},
        {"haiku_mlm/p4_np2_dict.pickle", PCV_FILE_PICKLE},
        {"torch_mlm/pytorch_model.bin", PCV_FILE_TORCH_ZIP},
        {"torch_mlm_legacy/pytorch_model.bin", PCV_FILE_TORCH_LEGACY},
        {"mlm_heads_default/model.safetensors", PCV_FILE_SAFETENSORS},
        {"mlm_heads_default/config.json", PCV_FILE_JSON},
        {"images/photo_china.jpg", PCV_FILE_UNKNOWN},
        {"images/png_rgb8.png", PCV_FILE_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        snprintf(path, sizeof path, "%s/%s", tu_fixtures(), kinds[i].file);
        pcv_file_kind k = pcv_sniff_file(path, what, sizeof what);
        CHECK(k == kinds[i].kind, "%s: kind %d (%s), want %d", kinds[i].file, k, what, kinds[i].kind);
    }
    return TEST_DONE();
}
