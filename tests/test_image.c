/* Image input and preprocessing against Pillow and transformers.
 *
 * tests/fixtures/images/ (written by tools/make_image_fixtures.py) holds real photographs and
 * generated variants of every PNG/JPEG kind, manifest.json describing them and the processor
 * configurations, and expected.safetensors with what Pillow decodes and what
 * PerceiverImageProcessorPil produces. Decoding and the uint8 crop+resize must be bit-exact;
 * pixel_values must be within the "image-preproc" profile of tests/tolerances.json (which is
 * exact). Error cases (truncated, corrupt, other formats, absurd sizes, bad configs) are built
 * here from the fixtures. */
#include "formats/formats.h"
#include "perceiver/image.h"
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

static char dir[2048];
static pcv_safetensors expected;
static json_t *manifest;
static double tol_atol, tol_rtol;

static const char *fx(const char *name)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const pcv_st_tensor *want(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const pcv_st_tensor *want(const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return pcv_st_find(&expected, name);
}

static pcv_status status_from(const char *s)
{
    if (!strcmp(s, "FORMAT"))
        return PCV_ERR_FORMAT;
    if (!strcmp(s, "UNSUPPORTED"))
        return PCV_ERR_UNSUPPORTED;
    if (!strcmp(s, "IO"))
        return PCV_ERR_IO;
    return PCV_OK;
}

/* Counts differing bytes; reports the first. */
static long diff_u8(const char *what, const unsigned char *got, const pcv_st_tensor *t,
                    int h, int w)
{
    if (!t || t->dtype != PCV_DT_U8 || t->ndim != 3 || t->shape[0] != h || t->shape[1] != w ||
        t->shape[2] != 3) {
        CHECK(0, "%s: expected tensor missing or shaped differently from %dx%dx3", what, h, w);
        return -1;
    }
    const unsigned char *e = t->data;
    long bad = 0;
    size_t first = 0;
    for (size_t i = 0; i < (size_t)h * w * 3; i++)
        if (got[i] != e[i] && !bad++)
            first = i;
    CHECK(bad == 0, "%s: %ld of %d values differ; first at y=%zu x=%zu c=%zu: %d vs %d", what,
          bad, h * w * 3, first / 3 / (size_t)w, first / 3 % (size_t)w, first % 3, got[first],
          e[first]);
    return bad;
}

static long diff_f32(const char *what, const float *got, const pcv_st_tensor *t, int64_t n)
{
    if (!t || t->dtype != PCV_DT_F32 || t->numel != n) {
        CHECK(0, "%s: expected float tensor missing or of another size", what);
        return -1;
    }
    float *e = malloc(sizeof(float) * (size_t)n);
    pcv_error err;
    CHECK(e && pcv_st_to_f32(t, e, &err) == 0, "%s: cannot read expected values", what);
    long bad = 0;
    double worst = 0;
    for (int64_t i = 0; e && i < n; i++) {
        double d = fabs((double)got[i] - (double)e[i]);
        if (!(d <= tol_atol + tol_rtol * fabs((double)e[i])))
            bad++;
        if (d > worst)
            worst = d;
    }
    CHECK(bad == 0, "%s: %ld of %lld values outside the image-preproc tolerance (max |err| %g)",
          what, bad, (long long)n, worst);
    free(e);
    return bad;
}

/* ---- decoding ---------------------------------------------------------------------------- */

static uint32_t fnv1a32(const unsigned char *p, size_t n)
{
    uint32_t h = 0x811C9DC5u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x01000193u;
    return h;
}

/* tests/fixtures/images holds what Image.open(f).convert("RGB") gives: the pixels as stored */
static int load_stored(const char *path, pcv_image *img, pcv_error *err)
{
    pcv_image_load_options o = {.ignore_exif_orientation = true};
    return pcv_image_load_ex(path, &o, img, err);
}

static void test_decode(void)
{
    json_t *images = json_object_get(manifest, "images");
    size_t i;
    json_t *e;
    int ok = 0, refused = 0;
    json_array_foreach(images, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *expect = json_string_value(json_object_get(e, "expect"));
        pcv_image img;
        pcv_error err = {0};
        int rc = load_stored(fx(name), &img, &err);
        if (!strcmp(expect, "error")) {
            pcv_status code = status_from(json_string_value(json_object_get(e, "error_code")));
            const char *contains = json_string_value(json_object_get(e, "error_contains"));
            CHECK(rc == (int)code && err.code == code, "%s: expected %s, got rc %d (%s)", name,
                  pcv_status_name(code), rc, rc ? err.msg : "loaded");
            CHECK(rc == 0 || (strstr(err.msg, contains) && strstr(err.msg, name)),
                  "%s: message should name the file and say '%s': %s", name, contains, err.msg);
            CHECK(img.rgb == NULL && img.width == 0, "%s: image not left empty on error", name);
            if (rc == 0)
                pcv_image_free(&img);
            refused++;
            continue;
        }
        int w = (int)json_integer_value(json_object_get(e, "width"));
        int h = (int)json_integer_value(json_object_get(e, "height"));
        CHECK(rc == 0, "%s: %s", name, err.msg);
        if (rc)
            continue;
        CHECK(img.width == w && img.height == h, "%s: %dx%d, Pillow says %dx%d", name, img.width,
              img.height, w, h);
        if (img.width == w && img.height == h) {
            const pcv_st_tensor *d = want("decoded.%s", name);
            const pcv_st_tensor *sum = want("rgbsum.%s", name);
            if (d) {
                char what[600];
                snprintf(what, sizeof what, "decode %s", name);
                diff_u8(what, img.rgb, d, h, w);
            } else if (sum) {
                int64_t s[4] = {0, 0, 0, 0}, e4[4];
                for (size_t k = 0; k < (size_t)w * h * 3; k++)
                    s[k % 3] += img.rgb[k];
                s[3] = fnv1a32(img.rgb, (size_t)w * h * 3);
                CHECK(pcv_st_to_i64(sum, e4, &err) == 0, "%s", err.msg);
                CHECK(!memcmp(s, e4, sizeof s), "decode %s: checksums differ from Pillow's", name);
            } else {
                CHECK(0, "%s: no expected decode in expected.safetensors", name);
            }
        }
        ok++;
        pcv_image_free(&img);
    }
    CHECK(ok >= 30 && refused >= 7, "manifest too small: %d images, %d refusals", ok, refused);
    printf("  decode: %d images equal to Pillow's convert(\"RGB\"), %d refused as expected\n", ok,
           refused);
}

/* ---- preprocessing --------------------------------------------------------------------------- */

static void check_u8_and_pv(const pcv_image_processor *p, const char *cfg, const char *name,
                            int oh, int ow)
{
    pcv_image img, u8;
    pcv_error err;
    if (load_stored(fx(name), &img, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int w = 0, h = 0;
    int rc = pcv_image_output_size(p, img.width, img.height, &w, &h, &err);
    CHECK(rc == 0 && w == ow && h == oh, "%s/%s: output %dx%d, transformers %dx%d (%s)", cfg,
          name, w, h, ow, oh, rc ? err.msg : "");
    if (rc || w != ow || h != oh) {
        pcv_image_free(&img);
        return;
    }
    char what[600];
    const pcv_st_tensor *tu8 = want("u8.%s.%s", cfg, name);
    if (tu8) {
        rc = pcv_image_preprocess_u8(p, &img, &u8, &err);
        CHECK(rc == 0, "%s/%s: %s", cfg, name, err.msg);
        if (!rc) {
            snprintf(what, sizeof what, "%s/%s uint8", cfg, name);
            diff_u8(what, u8.rgb, tu8, h, w);
            pcv_image_free(&u8);
        }
    }
    const pcv_st_tensor *t12 = want("u8p12.%s.%s", cfg, name);
    if (t12) { /* the same with Pillow 12's pass order */
        pcv_image_processor q = *p;
        q.resize_flags = PCV_RESIZE_PILLOW12_ORDER;
        rc = pcv_image_preprocess_u8(&q, &img, &u8, &err);
        CHECK(rc == 0, "%s/%s: %s", cfg, name, err.msg);
        if (!rc) {
            snprintf(what, sizeof what, "%s/%s uint8, Pillow 12 order", cfg, name);
            diff_u8(what, u8.rgb, t12, h, w);
            pcv_image_free(&u8);
        }
    }
    size_t n = (size_t)3 * w * h;
    float *pv = malloc(sizeof(float) * n);
    rc = pcv_image_preprocess(p, &img, pv, n, &err);
    CHECK(rc == 0, "%s/%s: %s", cfg, name, err.msg);
    const pcv_st_tensor *tpv = want("pv.%s.%s", cfg, name);
    if (!rc && tpv) {
        snprintf(what, sizeof what, "%s/%s pixel_values", cfg, name);
        diff_f32(what, pv, tpv, (int64_t)n);
    } else if (!rc && tu8) {
        /* default config: pixel_values = lut.default[uint8] (the generator checked that this
         * is what transformers returns) */
        const pcv_st_tensor *lut = want("lut.default");
        float l[3][256];
        CHECK(lut && pcv_st_to_f32(lut, &l[0][0], &err) == 0, "lut.default missing");
        const unsigned char *e = tu8->data;
        long bad = 0;
        for (size_t i = 0; i < (size_t)w * h; i++)
            for (int c = 0; c < 3; c++)
                bad += pv[(size_t)c * w * h + i] != l[c][e[3 * i + c]];
        CHECK(bad == 0, "%s/%s pixel_values: %ld values differ from lut[uint8]", cfg, name, bad);
    } else if (!rc) {
        CHECK(0, "%s/%s: nothing to compare with", cfg, name);
    }
    free(pv);
    pcv_image_free(&img);
}

static void test_configs(void)
{
    json_t *configs = json_object_get(manifest, "configs");
    size_t i;
    json_t *c;
    int n = 0;
    json_array_foreach(configs, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        pcv_image_processor p;
        pcv_error err;
        int rc = pcv_image_processor_load(&p, fx(json_string_value(json_object_get(c, "dir"))),
                                          &err);
        CHECK(rc == 0, "config %s: %s", name, err.msg);
        if (rc)
            continue;
        if (json_object_get(c, "same_as")) {
            pcv_image_processor d;
            pcv_image_processor_init(&d);
            CHECK(!memcmp(&d, &p, sizeof d), "config %s should load to the defaults", name);
        }
        const char *img;
        json_t *v;
        json_object_foreach(json_object_get(c, "images"), img, v) {
            check_u8_and_pv(&p, name, img, (int)json_integer_value(json_object_get(v, "out_h")),
                            (int)json_integer_value(json_object_get(v, "out_w")));
            n++;
        }
    }
    CHECK(n >= 40, "only %d image/config pairs", n);

    /* An empty center crop (1-pixel side at ratio 0.875): transformers resizes an empty image,
     * which Pillow makes black; without a resize there is nothing to return. */
    pcv_image one = {1, 1, calloc(3, 1)}, u8;
    one.rgb[0] = 200;
    pcv_image_processor p;
    pcv_image_processor_init(&p);
    pcv_error err;
    int rc = pcv_image_preprocess_u8(&p, &one, &u8, &err);
    CHECK(rc == 0 && u8.width == 224 && u8.height == 224 && u8.rgb[0] == 0 &&
              u8.rgb[224 * 224 * 3 - 1] == 0,
          "1x1 image: %s", rc ? err.msg : "not black");
    if (!rc)
        pcv_image_free(&u8);
    p.do_resize = false;
    CHECK(pcv_image_preprocess_u8(&p, &one, &u8, &err) == PCV_ERR_INPUT &&
              strstr(err.msg, "too small"),
          "1x1 without resize: %s", err.msg);
    free(one.rgb);
    printf("  preprocess: %d image/config pairs equal to PerceiverImageProcessorPil\n", n);
}

/* The float stage alone: every uint8 value through rescale + normalize. */
static void test_value_table(void)
{
    pcv_image ramp = {16, 16, malloc(256 * 3)};
    for (int v = 0; v < 256; v++)
        ramp.rgb[3 * v] = ramp.rgb[3 * v + 1] = ramp.rgb[3 * v + 2] = (unsigned char)v;
    pcv_image_processor p;
    pcv_image_processor_init(&p);
    p.do_center_crop = p.do_resize = false;
    float out[3 * 256];
    pcv_error err;
    CHECK(pcv_image_preprocess(&p, &ramp, out, 3 * 256, &err) == 0, "%s", err.msg);
    diff_f32("value table (rescale + normalize)", out, want("lut.default"), 3 * 256);

    const pcv_st_tensor *hl = want("haiku.lut");
    if (hl) {
        pcv_image_processor_init_haiku(&p);
        p.do_center_crop = p.do_resize = false;
        CHECK(pcv_image_preprocess(&p, &ramp, out, 3 * 256, &err) == 0, "%s", err.msg);
        diff_f32("haiku value table", out, hl, 3 * 256);
    }
    /* too small an output buffer */
    CHECK(pcv_image_preprocess(&p, &ramp, out, 3 * 256 - 1, &err) == PCV_ERR_SHAPE,
          "short buffer accepted");
    free(ramp.rgb);
}

/* DeepMind's colab pipeline, against cv2 (IPP off). */
static void test_haiku(void)
{
    int n = 0;
    for (int i = 0; i < expected.count; i++) {
        const char *t = expected.tensors[i].name;
        int size;
        char img[256];
        if (sscanf(t, "haiku.u8.s%d.%255s", &size, img) != 2)
            continue;
        pcv_image_processor p;
        pcv_image_processor_init_haiku(&p);
        p.size_h = p.size_w = size;
        p.crop_h = p.crop_w = size == 224 ? 256 : 18; /* as the generator */
        pcv_image im, u8;
        pcv_error err;
        if (load_stored(fx(img), &im, &err)) {
            CHECK(0, "%s", err.msg);
            continue;
        }
        int rc = pcv_image_preprocess_u8(&p, &im, &u8, &err);
        CHECK(rc == 0, "haiku %s: %s", img, err.msg);
        if (!rc) {
            char what[600];
            snprintf(what, sizeof what, "haiku %d %s uint8", size, img);
            diff_u8(what, u8.rgb, &expected.tensors[i], size, size);
            pcv_image_free(&u8);
        }
        pcv_image_free(&im);
        n++;
    }
    printf("  haiku: %d images equal to cv2.resize INTER_CUBIC (IPP off)\n", n);
    /* a 1-pixel-wide image has an empty crop: cv2 refuses it, so do we */
    pcv_image one = {1, 5, calloc(15, 1)};
    pcv_image_processor p;
    pcv_image_processor_init_haiku(&p);
    pcv_image out;
    pcv_error err;
    CHECK(pcv_image_preprocess_u8(&p, &one, &out, &err) == PCV_ERR_INPUT, "empty haiku crop");
    free(one.rgb);
}

/* OpenCV's cv2.resize INTER_LINEAR (the video-autoencoding colab's resize) against cv2 itself:
 * tests/fixtures/autoencode/cv_linear.safetensors (tools/make_autoencode_fixture.py) holds the
 * outputs (small ones) and FNV-1a hashes (all) of cv2.resize on sources drawn from this
 * xorshift32, up- and downscaling, 1 to 360 pixels, 224-wide outputs included. */
static uint32_t xs_next(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void test_cv_linear(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/autoencode/cv_linear.safetensors", tu_fixtures());
    pcv_safetensors cv;
    pcv_error err;
    if (pcv_st_map(&cv, path, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const pcv_st_tensor *sz = pcv_st_find(&cv, "cv_linear.sizes"), *hs = pcv_st_find(&cv, "cv_linear.fnv1a64");
    CHECK(sz && hs && sz->dtype == PCV_DT_I32 && sz->ndim == 2 && sz->shape[1] == 4 && hs->dtype == PCV_DT_I64 &&
              hs->numel == sz->shape[0],
          "%s: no cv_linear.sizes / cv_linear.fnv1a64", path);
    int n = sz && hs && hs->numel == sz->shape[0] ? (int)sz->shape[0] : 0, same = 0, stored = 0;
    for (int k = 0; k < n; k++) {
        int32_t d4[4];
        uint64_t want_hash;
        memcpy(d4, (const char *)sz->data + 16 * (size_t)k, 16);
        memcpy(&want_hash, (const char *)hs->data + 8 * (size_t)k, 8);
        int sw = d4[0], sh = d4[1], dw = d4[2], dh = d4[3];
        unsigned char *src = malloc((size_t)sw * sh * 3), *dst = malloc((size_t)dw * dh * 3);
        uint32_t x = (uint32_t)k + 1;
        for (int i = 0; i < 8; i++)
            xs_next(&x);
        for (size_t i = 0; i < (size_t)sw * sh * 3; i++)
            src[i] = (unsigned char)(xs_next(&x) >> 24);
        CHECK(pcv_image_resize_cv_linear(src, sw, sh, dst, dw, dh, &err) == 0, "resize %dx%d: %s", sw, sh, err.msg);
        uint64_t h = 0xCBF29CE484222325ull;
        for (size_t i = 0; i < (size_t)dw * dh * 3; i++)
            h = (h ^ dst[i]) * 0x100000001B3ull;
        char name[64], what[128];
        snprintf(name, sizeof name, "cv_linear.out.%d", k);
        snprintf(what, sizeof what, "cv2.resize INTER_LINEAR %dx%d -> %dx%d", sw, sh, dw, dh);
        const pcv_st_tensor *t = pcv_st_find(&cv, name);
        if (t) { /* names the first differing pixel */
            stored++;
            diff_u8(what, dst, t, dh, dw);
        }
        CHECK(h == want_hash, "%s: differs from cv2 (hash)", what);
        same += h == want_hash;
        free(src);
        free(dst);
    }
    printf("  cv2 INTER_LINEAR: %d of %d resizes bit-exact (%d compared pixel by pixel)\n", same, n, stored);
    pcv_st_unmap(&cv);
}

/* ---- errors ------------------------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *len)
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

static int load_mem(const void *d, size_t n, pcv_error *err)
{
    pcv_image img;
    int rc = pcv_image_load_memory(d, n, "mem.img", &img, err);
    if (!rc)
        pcv_image_free(&img);
    return rc;
}

static void test_truncated(const char *name, size_t min_cut)
{
    size_t len;
    unsigned char *d = slurp(fx(name), &len);
    CHECK(d != NULL, "cannot read %s", name);
    if (!d)
        return;
    pcv_error err;
    CHECK(load_mem(d, len, &err) == 0, "%s whole: %s", name, err.msg);
    size_t cuts[] = {min_cut, min_cut + 1, 40, 100, 300, len / 4, len / 2, len - 100, len - 13,
                     len - 4, len - 2, len - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        size_t n = cuts[k];
        if (n < min_cut || n >= len)
            continue;
        int rc = load_mem(d, n, &err);
        CHECK(rc == PCV_ERR_FORMAT && strstr(err.msg, "mem.img"),
              "%s cut to %zu of %zu bytes: rc %d (%s)", name, n, len, rc, rc ? err.msg : "loaded");
    }
    /* bytes after the end of the image are ignored (Pillow ignores them too) */
    unsigned char *more = malloc(len + 64);
    memcpy(more, d, len);
    memset(more + len, 0xAB, 64);
    CHECK(load_mem(more, len + 64, &err) == 0, "%s with trailing junk: %s", name, err.msg);
    free(more);
    free(d);
}

/* Damaged copies of valid files (a few random bytes changed) must either decode or fail with
 * a format error, never crash or leak (run under the sanitizers: -DPCV_SANITIZE=ON). The
 * dimension bytes of JPEG frame headers are left alone so that no mutation asks for a
 * legitimately huge (hundreds of MB) image. */
static void test_mutations(void)
{
    const char *names[] = {"photo_flower.jpg", "jpg_prog.jpg", "jpg_cmyk.jpg", "png_rgb8.png",
                           "png_rgb16_adam7.png", "png_pal4_trns.png"};
    uint32_t s = 2024;
    int decoded = 0, refused = 0;
    for (size_t f = 0; f < sizeof names / sizeof *names; f++) {
        size_t len;
        unsigned char *orig = slurp(fx(names[f]), &len);
        CHECK(orig != NULL, "cannot read %s", names[f]);
        if (!orig)
            continue;
        size_t sof = 0; /* offset of the JPEG frame header's height field, 0 if none */
        for (size_t i = 2; i + 8 < len && orig[0] == 0xFF; i++)
            if (orig[i] == 0xFF && orig[i + 1] >= 0xC0 && orig[i + 1] <= 0xC2) {
                sof = i + 5;
                break;
            }
        unsigned char *d = malloc(len);
        for (int it = 0; it < 60; it++) {
            memcpy(d, orig, len);
            int flips = 1 + (int)((s = s * 1103515245u + 12345u) >> 16) % 8;
            for (int k = 0; k < flips; k++) {
                size_t pos = 8 + ((s = s * 1103515245u + 12345u) >> 8) % (len - 8);
                if (sof && pos >= sof && pos < sof + 4)
                    continue;
                d[pos] = (unsigned char)((s = s * 1103515245u + 12345u) >> 24);
            }
            pcv_error err = {0};
            pcv_image img;
            int rc = pcv_image_load_memory(d, len, names[f], &img, &err);
            if (rc == 0) {
                CHECK(img.width > 0 && img.height > 0 && img.rgb, "%s: empty success", names[f]);
                pcv_image_free(&img);
                decoded++;
            } else {
                CHECK((rc == PCV_ERR_FORMAT || rc == PCV_ERR_UNSUPPORTED) && err.msg[0] &&
                          img.rgb == NULL,
                      "%s mutation %d: rc %d %s", names[f], it, rc, err.msg);
                refused++;
            }
        }
        free(d);
        free(orig);
    }
    printf("  mutations: %d decoded, %d refused, no crash\n", decoded, refused);
}

static void write_file(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        if (n)
            fwrite(d, 1, n, f);
        fclose(f);
    }
}

static void test_errors(void)
{
    pcv_error err;
    pcv_image img;
    char path[4096];

    /* empty file, random bytes, missing file, a directory */
    snprintf(path, sizeof path, "%s/pcv_image_empty.jpg", tu_tmpdir());
    write_file(path, "", 0);
    CHECK(pcv_image_load(path, &img, &err) == PCV_ERR_FORMAT && strstr(err.msg, "empty") &&
              strstr(err.msg, path),
          "empty file: %s", err.msg);
    unsigned char rnd[1000];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (unsigned char)((s = s * 1103515245u + 12345u) >> 24);
    rnd[0] = 0x13; /* make sure no format matches */
    CHECK(load_mem(rnd, sizeof rnd, &err) == PCV_ERR_UNSUPPORTED &&
              strstr(err.msg, "not a PNG or JPEG"),
          "random bytes: %s", err.msg);
    CHECK(pcv_image_load(fx("no_such_file.png"), &img, &err) == PCV_ERR_IO &&
              strstr(err.msg, "no_such_file.png"),
          "missing file: %s", err.msg);
    CHECK(pcv_image_load(dir, &img, &err) == PCV_ERR_IO, "directory: %s", err.msg);
    CHECK(pcv_image_load(NULL, &img, &err) == PCV_ERR_INPUT, "NULL path");

    /* truncation at many points, also inside the headers */
    test_truncated("photo_china.jpg", 3);
    test_truncated("photo_flower.jpg", 3); /* progressive */
    test_truncated("png_rgb8.png", 8);
    test_truncated("png_rgb16_adam7.png", 8);

    /* a JPEG whose frame header declares 60000x60000 pixels */
    size_t len;
    unsigned char *j = slurp(fx("jpg_444.jpg"), &len);
    int patched = 0;
    for (size_t i = 2; j && i + 9 < len; i++) {
        if (j[i] == 0xFF && (j[i + 1] == 0xC0 || j[i + 1] == 0xC2)) {
            j[i + 5] = j[i + 7] = 0xEA; /* 0xEA60 = 60000 */
            j[i + 6] = j[i + 8] = 0x60;
            patched = 1;
            break;
        }
    }
    CHECK(patched, "no SOF marker in jpg_444.jpg");
    CHECK(load_mem(j, len, &err) == PCV_ERR_UNSUPPORTED && strstr(err.msg, "limit"),
          "huge JPEG: %s", err.msg);
    free(j);

    /* format names from the magic bytes */
    struct { const char *bytes; size_t n; const char *name; } magic[] = {
        {"\x89PNG\r\n\x1a\n", 8, "PNG"}, {"\xff\xd8\xff\xe0", 4, "JPEG"},
        {"GIF89a", 6, "GIF"},            {"BM\x36\0\0\0", 6, "BMP"},
        {"RIFF\0\0\0\0WEBPVP8 ", 16, "WebP"}, {"II*\0", 4, "TIFF"},
        {"\0\0\0\x1c" "ftypavif", 12, "AVIF"}, {"\xff\xd8", 2, NULL},
    };
    for (size_t i = 0; i < sizeof magic / sizeof *magic; i++) {
        const char *f = pcv_image_format(magic[i].bytes, magic[i].n);
        CHECK(magic[i].name ? f && !strcmp(f, magic[i].name) : f == NULL, "format of #%zu: %s", i,
              f ? f : "(none)");
    }

    /* resize arguments */
    unsigned char px[3] = {1, 2, 3}, out[12];
    CHECK(pcv_image_resize_pil(px, 1, 1, out, 2, 2, PCV_RESAMPLE_NEAREST, 0, &err) ==
              PCV_ERR_UNSUPPORTED,
          "NEAREST accepted");
    CHECK(pcv_image_resize_pil(px, 1, 1, out, 0, 2, PCV_RESAMPLE_BICUBIC, 0, &err) == PCV_ERR_INPUT,
          "zero size accepted");
    CHECK(pcv_image_resize_pil(px, 1, 1, out, 2, 2, PCV_RESAMPLE_BICUBIC, 0, &err) == 0 &&
              out[0] == 1 && out[10] == 2,
          "1x1 -> 2x2 should replicate");
}

static void test_config_errors(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/pcv_preprocessor_config.json", tu_tmpdir());
    struct { const char *json; pcv_status code; const char *contains; } cases[] = {
        {"{", PCV_ERR_FORMAT, "invalid JSON"},
        {"[1, 2]", PCV_ERR_FORMAT, "object"},
        {"{\"size\": \"big\"}", PCV_ERR_FORMAT, "size"},
        {"{\"size\": {\"shortest_edge\": 224}}", PCV_ERR_UNSUPPORTED, "shortest_edge"},
        {"{\"size\": 0}", PCV_ERR_FORMAT, "size"},
        {"{\"crop_size\": {\"height\": 10}}", PCV_ERR_UNSUPPORTED, "width"},
        {"{\"resample\": 0}", PCV_ERR_UNSUPPORTED, "NEAREST"},
        {"{\"resample\": 9}", PCV_ERR_UNSUPPORTED, "resample"},
        {"{\"image_std\": [0.2, 0, 0.3]}", PCV_ERR_FORMAT, "image_std"},
        {"{\"image_mean\": [0.2, 0.3]}", PCV_ERR_FORMAT, "image_mean"},
        {"{\"do_resize\": 1}", PCV_ERR_FORMAT, "do_resize"},
        {"{\"rescale_factor\": \"x\"}", PCV_ERR_FORMAT, "rescale_factor"},
    };
    pcv_image_processor p, d;
    pcv_image_processor_init(&d);
    pcv_error err;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_file(path, cases[i].json, strlen(cases[i].json));
        memset(&err, 0, sizeof err);
        int rc = pcv_image_processor_load(&p, path, &err);
        CHECK(rc == (int)cases[i].code && strstr(err.msg, cases[i].contains) &&
                  strstr(err.msg, path),
              "config %s: rc %d: %s", cases[i].json, rc, err.msg);
        CHECK(!memcmp(&p, &d, sizeof p), "config %s: processor not reset", cases[i].json);
    }
    /* accepted forms: one number for mean/std, integral reals, nulls keep the default */
    const char *ok = "{\"image_mean\": 0.5, \"image_std\": [0.5, 0.5, 0.5], \"size\": 32.0, "
                     "\"crop_size\": null, \"resample\": 2, \"do_center_crop\": false}";
    write_file(path, ok, strlen(ok));
    CHECK(pcv_image_processor_load(&p, path, &err) == 0, "%s", err.msg);
    CHECK(p.mean[1] == 0.5 && p.std[2] == 0.5 && p.size_h == 32 && p.size_w == 32 &&
              p.crop_h == 256 && p.resample == 2 && !p.do_center_crop,
          "accepted forms not applied");
    /* a folder without preprocessor_config.json, or a missing file: the defaults */
    CHECK(pcv_image_processor_load(&p, tu_tmpdir(), &err) == 0 && !memcmp(&p, &d, sizeof p),
          "folder without config: %s", err.msg);
    snprintf(path, sizeof path, "%s/pcv_no_such_config.json", tu_tmpdir());
    CHECK(pcv_image_processor_load(&p, path, &err) == 0 && !memcmp(&p, &d, sizeof p),
          "missing config: %s", err.msg);
}

/* ---- batch --------------------------------------------------------------------------------- */

static void test_batch(void)
{
    const char *paths[] = {fx("photo_china.jpg"), fx("photo_flower.jpg"), fx("png_3x7.png")};
    pcv_image_processor p;
    pcv_image_processor_init(&p);
    float *b = NULL;
    int h = 0, w = 0;
    pcv_error err;
    int rc = pcv_image_load_batch(&p, paths, 3, &b, &h, &w, &err);
    CHECK(rc == 0 && h == 224 && w == 224, "batch: %s", err.msg);
    size_t per = (size_t)3 * 224 * 224;
    float *one = malloc(sizeof(float) * per);
    for (int i = 0; !rc && i < 3; i++) {
        pcv_image img;
        CHECK(pcv_image_load(paths[i], &img, &err) == 0, "%s", err.msg);
        CHECK(pcv_image_preprocess(&p, &img, one, per, &err) == 0, "%s", err.msg);
        CHECK(!memcmp(one, b + per * (size_t)i, per * sizeof(float)),
              "batch item %d differs from the single-image result", i);
        pcv_image_free(&img);
    }
    free(one);
    free(b);
    /* without resize the sizes differ: refused */
    p.do_resize = false;
    b = NULL;
    rc = pcv_image_load_batch(&p, paths, 2, &b, &h, &w, &err);
    CHECK(rc == PCV_ERR_SHAPE && b == NULL && strstr(err.msg, "photo_flower.jpg"),
          "mixed sizes: rc %d %s", rc, err.msg);
    /* a failing file is named */
    const char *bad[] = {fx("photo_china.jpg"), fx("unsupported.gif")};
    p.do_resize = true;
    rc = pcv_image_load_batch(&p, bad, 2, &b, &h, &w, &err);
    CHECK(rc == PCV_ERR_UNSUPPORTED && b == NULL && strstr(err.msg, "unsupported.gif"),
          "batch with a GIF: rc %d %s", rc, err.msg);
}

/* ---- EXIF orientation (tests/fixtures/exif, tools/make_exif_fixtures.py) --------------------- */

static void test_exif(void)
{
    char edir[4096], path[4600];
    snprintf(edir, sizeof edir, "%s/exif", tu_fixtures());
    snprintf(path, sizeof path, "%s/expected.safetensors", edir);
    pcv_safetensors ex;
    pcv_error err = {0};
    int rc = pcv_st_map(&ex, path, &err);
    CHECK(rc == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/manifest.json", edir);
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    CHECK(m != NULL, "%s: %s", path, je.text);
    if (rc || !m)
        return;
    const char *name;
    json_t *e;
    int n = 0, turned = 0;
    json_object_foreach(json_object_get(m, "files"), name, e) {
        snprintf(path, sizeof path, "%s/%s", edir, name);
        char key[300];
        snprintf(key, sizeof key, "%s", name);
        for (char *c = key; *c; c++)
            if (*c == '.')
                *c = '_';
        /* the orientation Pillow reads */
        FILE *f = fopen(path, "rb");
        unsigned char *buf = malloc(1 << 20);
        size_t len = f ? fread(buf, 1, 1 << 20, f) : 0;
        if (f)
            fclose(f);
        json_int_t want_o = json_integer_value(json_object_get(e, "orientation"));
        int o = pcv_image_orientation(buf, len);
        CHECK(o == (want_o >= 1 && want_o <= 8 ? want_o : 1), "%s: orientation %d, Pillow %lld", name, o,
              (long long)want_o);
        free(buf);
        /* upright by default (ImageOps.exif_transpose), as stored with the option */
        for (int ignore = 0; ignore < 2; ignore++) {
            pcv_image img;
            pcv_image_load_options lo = {.ignore_exif_orientation = ignore};
            char tname[320], what[700];
            snprintf(tname, sizeof tname, "%s.%s", ignore ? "stored" : "upright", key);
            const pcv_st_tensor *t = pcv_st_find(&ex, tname);
            rc = ignore ? pcv_image_load_ex(path, &lo, &img, &err) : pcv_image_load(path, &img, &err);
            CHECK(rc == 0 && t, "%s: %s", name, rc ? err.msg : "no expected tensor");
            if (rc || !t)
                continue;
            CHECK(img.height == t->shape[0] && img.width == t->shape[1], "%s (%s): %dx%d, Pillow %lldx%lld", name,
                  tname, img.width, img.height, (long long)t->shape[1], (long long)t->shape[0]);
            snprintf(what, sizeof what, "exif %s", tname);
            if (img.height == t->shape[0] && img.width == t->shape[1])
                diff_u8(what, img.rgb, t, img.height, img.width);
            turned += !ignore && o > 1;
            pcv_image_free(&img);
        }
        n++;
    }
    CHECK(n >= 25 && turned >= 20, "exif: %d files, %d turned", n, turned);
    /* the preprocessing batch follows the processor's flag */
    snprintf(path, sizeof path, "%s/o6_ii.jpg", edir);
    pcv_image_processor p;
    pcv_image_processor_init(&p);
    p.do_center_crop = false;
    p.size_h = 7, p.size_w = 13; /* the stored shape: upright (13 x 7) is resized, stored is not */
    float *a = NULL, *b = NULL;
    int h, w;
    const char *paths[] = {path};
    CHECK(pcv_image_load_batch(&p, paths, 1, &a, &h, &w, &err) == 0, "%s", err.msg);
    p.ignore_exif_orientation = true;
    CHECK(pcv_image_load_batch(&p, paths, 1, &b, &h, &w, &err) == 0, "%s", err.msg);
    CHECK(a && b && memcmp(a, b, sizeof(float) * 3 * 7 * 13) != 0, "the batch ignores ignore_exif_orientation");
    free(a);
    free(b);
    printf("  exif: %d files, orientation read and applied as Pillow's exif_transpose\n", n);
    json_decref(m);
    pcv_st_unmap(&ex);
}

/* ---- the haiku resize against OpenCV's default (IPP) path: the documented difference -------- */

static void test_cv_ipp(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/cv_ipp/expected.safetensors", tu_fixtures());
    pcv_safetensors ex;
    pcv_error err = {0};
    if (pcv_st_map(&ex, path, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const pcv_st_tensor *t = pcv_st_find(&ex, "ipp.photo_china_jpg");
    pcv_image img, u8;
    pcv_image_processor p;
    pcv_image_processor_init_haiku(&p);
    CHECK(t && load_stored(fx("photo_china.jpg"), &img, &err) == 0, "%s", err.msg);
    if (t && pcv_image_preprocess_u8(&p, &img, &u8, &err) == 0) {
        const unsigned char *ipp = t->data;
        size_t n = (size_t)u8.width * u8.height * 3, differ = 0;
        int maxd = 0;
        for (size_t i = 0; i < n; i++) {
            int d = abs((int)u8.rgb[i] - ipp[i]);
            differ += d != 0;
            maxd = d > maxd ? d : maxd;
        }
        /* docs: +-1 on about 2.5% of the values (IPP's float32 rounding), never more */
        CHECK(maxd <= 1 && differ > 0 && differ * 100 <= n * 3, "haiku resize vs cv2 with IPP: %zu of %zu values differ "
              "(max %d): the documented bound is +-1 on at most 3%%", differ, n, maxd);
        printf("  haiku resize vs cv2's default (IPP) path: %.2f%% of the values differ by 1\n", 100.0 * differ / n);
        pcv_image_free(&u8);
        pcv_image_free(&img);
    }
    pcv_st_unmap(&ex);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/images", tu_fixtures());
    pcv_error err;
    int rc = pcv_st_map(&expected, fx("expected.safetensors"), &err);
    CHECK(rc == 0, "%s", err.msg);
    json_error_t je;
    manifest = json_load_file(fx("manifest.json"), 0, &je);
    CHECK(manifest != NULL, "manifest.json: %s", je.text);
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/../tolerances.json", tu_fixtures());
    json_t *tol = json_load_file(tpath, 0, &je);
    json_t *prof = json_object_get(json_object_get(tol, "models"), "image-preproc");
    CHECK(prof != NULL, "%s: no models.image-preproc profile", tpath);
    tol_atol = json_number_value(json_object_get(prof, "atol"));
    tol_rtol = json_number_value(json_object_get(prof, "rtol"));
    if (rc || !manifest || !prof)
        return TEST_DONE();

    test_decode();
    test_configs();
    test_value_table();
    test_haiku();
    test_cv_linear();
    test_errors();
    test_mutations();
    test_config_errors();
    test_batch();
    test_exif();
    test_cv_ipp();

    json_decref(tol);
    json_decref(manifest);
    pcv_st_unmap(&expected);
    return TEST_DONE();
}
