/* Helper of tests/cli_autoencode.sh (not a test by itself): compares the files `perceiver-cl
 * autoencode` wrote into OUTDIR with a reference of tests/fixtures/autoencode/expected.safetensors
 * (tools/make_autoencode_fixture.py: DeepMind's colab or transformers on the same clip).
 *
 *   check_autoencode EXPECTED.safetensors PREFIX OUTDIR RATE
 *
 * PREFIX is "haiku" or "hf". Checks:
 *  - OUTDIR/frame_TT.png equal to PREFIX.image_u8 (the colab's to_gif truncation of the float
 *    reconstruction). A pixel may differ by 1 only where the reference float x satisfies
 *    |255 x - b| < 255 * noise for the truncation boundary b between the two values, noise being
 *    the atol of the "autoencode-boundary" profile of tests/tolerances.json (float32 noise).
 *  - OUTDIR/audio.wav: mono, 16-bit, RATE Hz, PREFIX.audio_s16 samples; a sample may differ by 1
 *    only where 32767 x is within 32767 * noise of the rounding boundary (a half-integer).
 *  - OUTDIR/classes.txt lists PREFIX.top5 in order.
 *  - OUTDIR/inputs.safetensors, when present (--save-inputs), holds inputs.image and
 *    inputs.audio bit for bit.
 * With PREFIX "inputs:P" only the last check runs (the file must exist), against P.inputs.image
 * and P.inputs.audio. Prints how many values lie within noise of a boundary and how many of them
 * differ. */
#include "perceiver/image.h"
#include "testutil.h"

#include <jansson.h>
#include <math.h>

static const pcv_st_tensor *need(pcv_safetensors *st, const char *prefix, const char *what, pcv_dtype dt)
{
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, what);
    const pcv_st_tensor *t = pcv_st_find(st, name);
    CHECK(t && t->dtype == dt, "%s: no %s tensor %s", pcv_st_path(st), pcv_dtype_name(dt), name);
    return t && t->dtype == dt ? t : NULL;
}

static double noise_from_tolerances(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/../tolerances.json", tu_fixtures());
    json_t *j = json_load_file(path, 0, NULL);
    json_t *p = json_object_get(json_object_get(j, "models"), "autoencode-boundary");
    double v = p ? json_number_value(json_object_get(p, "atol")) : 0;
    CHECK(v > 0, "%s: no models.autoencode-boundary.atol", path);
    json_decref(j);
    return v;
}

static void check_frames(const pcv_st_tensor *u8, const pcv_st_tensor *f, const char *outdir, double noise)
{
    int T = (int)u8->shape[0], H = (int)u8->shape[1], W = (int)u8->shape[2];
    const unsigned char *want = u8->data;
    const float *x = f->data;
    long n = 0, off1 = 0, near = 0, bad = 0;
    for (int t = 0; t < T; t++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/frame_%02d.png", outdir, t);
        pcv_image img;
        pcv_error err = {0};
        if (pcv_image_load(path, &img, &err)) {
            CHECK(0, "%s", err.msg);
            continue;
        }
        CHECK(img.width == W && img.height == H, "%s: %dx%d, want %dx%d", path, img.width, img.height, W, H);
        for (long i = 0; img.width == W && img.height == H && i < (long)H * W * 3; i++, n++) {
            long k = (long)t * H * W * 3 + i;
            double v = 255.0 * x[k], b = rint(v);
            bool is_near = fabs(v - b) < 255.0 * noise && b >= 1 && b <= 255;
            near += is_near;
            int got = img.rgb[i], exp = want[k];
            if (got == exp)
                continue;
            int hi = got > exp ? got : exp;
            if (abs(got - exp) == 1 && fabs(v - hi) < 255.0 * noise) {
                off1++;
                printf("  %s pixel %ld: %d, reference %d (255 x = %.6f, %.2g from the boundary)\n", path, i, got, exp,
                       v, fabs(v - hi));
            } else if (bad++ < 5) {
                fprintf(stderr, "  %s pixel %ld (y %ld x %ld c %ld): %d, reference %d (255 x = %.6f)\n", path, i,
                        i / (3L * W), i / 3 % W, i % 3, got, exp, v);
            }
        }
        pcv_image_free(&img);
    }
    CHECK(bad == 0 && n == (long)T * H * W * 3, "frames: %ld of %ld pixels differ from the reference", bad,
          (long)T * H * W * 3);
    printf("frames: %ld pixels, %ld equal, %ld off by 1 at a truncation boundary (%ld reference values within "
           "float32 noise %.0e of one)\n", n, n - off1 - bad, off1, near, noise);
}

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static void check_wav(const pcv_st_tensor *s16, const pcv_st_tensor *f, const char *outdir, long rate, double noise)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/audio.wav", outdir);
    size_t len = 0;
    unsigned char *d = tu_read_file(path, &len);
    long n = (long)s16->numel;
    CHECK(d && len == 44 + 2 * (size_t)n, "%s: %zu bytes, want a 44-byte header and %ld samples", path, len, n);
    if (!d || len != 44 + 2 * (size_t)n) {
        free(d);
        return;
    }
    CHECK(!memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WAVEfmt ", 8) && d[20] == 1 && d[22] == 1 && d[34] == 16 &&
              le32(d + 24) == (uint32_t)rate && !memcmp(d + 36, "data", 4),
          "%s: not a mono 16-bit PCM WAV at %ld Hz (rate %u)", path, rate, le32(d + 24));
    const int16_t *want = s16->data;
    const float *x = f->data;
    long off1 = 0, near = 0, bad = 0;
    for (long i = 0; i < n; i++) {
        int got = (int16_t)(d[44 + 2 * i] | d[45 + 2 * i] << 8);
        double v = 32767.0 * (x[i] < -1 ? -1 : x[i] > 1 ? 1 : x[i]), h = floor(v) + 0.5;
        near += fabs(v - h) < 32767.0 * noise;
        if (got == want[i])
            continue;
        int lo = got < want[i] ? got : want[i];
        if (abs(got - want[i]) == 1 && fabs(v - (lo + 0.5)) < 32767.0 * noise)
            off1++;
        else if (bad++ < 5)
            fprintf(stderr, "  %s sample %ld: %d, reference %d (32767 x = %.4f)\n", path, i, got, want[i], v);
    }
    CHECK(bad == 0, "audio: %ld of %ld samples differ from the reference", bad, n);
    printf("audio: %ld samples, %ld equal, %ld off by 1 at a rounding boundary (%ld reference values within float32 "
           "noise of one)\n", n, n - off1 - bad, off1, near);
    free(d);
}

static void check_classes(const pcv_st_tensor *top, const char *outdir)
{
    char path[4200], line[4096];
    snprintf(path, sizeof path, "%s/classes.txt", outdir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "%s: missing", path);
    if (!f)
        return;
    const int64_t *want = top->data;
    int r = 0;
    while (fgets(line, sizeof line, f) && r < (int)top->numel) {
        double p;
        int cls;
        CHECK(sscanf(line, "%lf\t%d\t", &p, &cls) == 2 && cls == want[r], "%s line %d: '%.*s', want class %lld", path,
              r + 1, (int)strcspn(line, "\n"), line, (long long)want[r]);
        r++;
    }
    fclose(f);
    CHECK(r == (int)top->numel, "%s: %d classes, want %lld", path, r, (long long)top->numel);
    printf("classes: top %d as the reference\n", r);
}

static void check_inputs(pcv_safetensors *exp, const char *outdir, const char *prefix, bool required)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/inputs.safetensors", outdir);
    CHECK(!required || access(path, F_OK) == 0, "%s: missing", path);
    if (access(path, F_OK) != 0)
        return;
    pcv_safetensors *got = NULL;
    pcv_error err = {0};
    CHECK(pcv_st_open(path, &got, &err) == 0, "%s", err.msg);
    for (int i = 0; got && i < 2; i++) {
        const char *name = i ? "inputs.audio" : "inputs.image";
        char ename[128];
        snprintf(ename, sizeof ename, "%s%s", prefix, name);
        const pcv_st_tensor *a = pcv_st_find(got, name), *b = pcv_st_find(exp, ename);
        CHECK(a && b && a->dtype == b->dtype && a->ndim == b->ndim && a->nbytes == b->nbytes &&
                  !memcmp(a->shape, b->shape, sizeof a->shape[0] * (size_t)a->ndim) && !memcmp(a->data, b->data, a->nbytes),
              "%s: %s differs from the colab's preprocessing (%s)", path, name, ename);
        if (a && b && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes)) {
            const float *x = a->data, *y = b->data;
            for (int64_t k = 0, shown = 0; k < a->numel && shown < 5; k++)
                if (x[k] != y[k] && ++shown)
                    fprintf(stderr, "  %s[%lld] = %.9g, reference %.9g\n", name, (long long)k, x[k], y[k]);
        }
    }
    printf("inputs: bit-identical to the colab's preprocessing\n");
    pcv_st_close(got);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: check_autoencode EXPECTED.safetensors haiku|hf|inputs:PREFIX OUTDIR RATE\n");
        return 2;
    }
    pcv_safetensors *exp = NULL;
    pcv_error err = {0};
    if (pcv_st_open(argv[1], &exp, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    char prefix[32];
    if (!strncmp(argv[2], "inputs:", 7)) { /* the preprocessed inputs only */
        snprintf(prefix, sizeof prefix, "%s.", argv[2] + 7);
        check_inputs(exp, argv[3], prefix, true);
        pcv_st_close(exp);
        return TEST_DONE();
    }
    snprintf(prefix, sizeof prefix, "%s.", argv[2]);
    double noise = noise_from_tolerances();
    const pcv_st_tensor *u8 = need(exp, prefix, "image_u8", PCV_DT_U8), *fi = need(exp, prefix, "image", PCV_DT_F32),
                        *s16 = need(exp, prefix, "audio_s16", PCV_DT_I16), *fa = need(exp, prefix, "audio", PCV_DT_F32),
                        *top = need(exp, prefix, "top5", PCV_DT_I64);
    if (u8 && fi && u8->numel == fi->numel && u8->ndim == 4)
        check_frames(u8, fi, argv[3], noise);
    if (s16 && fa && s16->numel == fa->numel)
        check_wav(s16, fa, argv[3], atol(argv[4]), noise);
    if (top)
        check_classes(top, argv[3]);
    check_inputs(exp, argv[3], "", false);
    pcv_st_close(exp);
    return TEST_DONE();
}
