/* Image preprocessing for the Perceiver image classifiers.
 *
 * Two pipelines (include/perceiver/image.h):
 *  - HF: PerceiverImageProcessor (PIL backend). The resize reproduces Pillow's 8-bit resampler
 *    bit for bit: coefficients are computed in double exactly as Pillow does (same expressions,
 *    same evaluation order), converted to 22-bit fixed point with round-half-away-from-zero,
 *    and each pass accumulates in integers from a 0.5 bias and clips to 0..255. Horizontal pass
 *    first (only over the rows the vertical pass will read), then vertical; a pass whose size
 *    does not change is skipped, as in Pillow.
 *  - haiku: DeepMind's colab (spec haiku-vs-hf I1-I3): OpenCV INTER_CUBIC, rounded-up crop
 *    offsets, float64 normalisation.
 *
 * Exactness relies on IEEE double/float arithmetic without contraction into FMAs; that is
 * GCC's behaviour in ISO C mode (-std=c11 implies -ffp-contract=off), which the build uses. */
#include "perceiver/image.h"
#include "util/error.h"

#include "util/jsonutil.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- Pillow resampling filters ------------------------------------------------------------ */

/* The kernels as Pillow evaluates them (including its float constants in the Hamming window). */
static double filt_box(double x)
{
    return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
}

static double filt_bilinear(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filt_hamming(double x)
{
    if (x < 0.0)
        x = -x;
    if (x == 0.0)
        return 1.0;
    if (x >= 1.0)
        return 0.0;
    x = x * M_PI;
    return sin(x) / x * ((double)0.54f + (double)0.46f * cos(x));
}

/* Keys cubic with a = -0.5 (Pillow's BICUBIC). */
static double filt_bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double filt_lanczos(double x)
{
    if (-3.0 <= x && x < 3.0)
        return sinc(x) * sinc(x / 3);
    return 0.0;
}

typedef struct pil_filter {
    double (*fn)(double);
    double support;
} pil_filter;

static const pil_filter *pil_filter_for(int resample)
{
    static const pil_filter box = {filt_box, 0.5}, bilinear = {filt_bilinear, 1.0},
                            hamming = {filt_hamming, 1.0}, bicubic = {filt_bicubic, 2.0},
                            lanczos = {filt_lanczos, 3.0};
    switch (resample) {
    case PCV_RESAMPLE_BOX: return &box;
    case PCV_RESAMPLE_BILINEAR: return &bilinear;
    case PCV_RESAMPLE_HAMMING: return &hamming;
    case PCV_RESAMPLE_BICUBIC: return &bicubic;
    case PCV_RESAMPLE_LANCZOS: return &lanczos;
    }
    return NULL;
}

static const char *resample_name(int r)
{
    switch (r) {
    case PCV_RESAMPLE_NEAREST: return "NEAREST";
    case PCV_RESAMPLE_LANCZOS: return "LANCZOS";
    case PCV_RESAMPLE_BILINEAR: return "BILINEAR";
    case PCV_RESAMPLE_BICUBIC: return "BICUBIC";
    case PCV_RESAMPLE_BOX: return "BOX";
    case PCV_RESAMPLE_HAMMING: return "HAMMING";
    }
    return "unknown";
}

#define PIL_PRECISION_BITS 22 /* 32 - 8 - 2: 8 bits of result, 2 of headroom */

/* Per output index: first input index, number of taps, and ksize fixed-point weights. */
typedef struct pil_coeffs {
    int ksize;
    int *bounds; /* [out][2]: xmin, count */
    int32_t *k;  /* [out][ksize] */
} pil_coeffs;

static void pil_coeffs_free(pil_coeffs *c)
{
    free(c->bounds);
    free(c->k);
    c->bounds = NULL;
    c->k = NULL;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for a box [0, in_size). */
static int pil_precompute(int in_size, int out_size, const pil_filter *f, pil_coeffs *c)
{
    /* Pillow passes the box as float; in1 - in0 is exact for any size below 2^24. */
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->k = malloc(sizeof(int32_t) * (size_t)c->ksize * (size_t)out_size);
    double *w = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->bounds || !c->k || !w) {
        free(w);
        pil_coeffs_free(c);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* truncation, as Pillow's cast */
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        if (xmax > c->ksize) /* cannot happen; keeps the buffers safe regardless */
            xmax = c->ksize;
        for (int x = 0; x < xmax; x++) {
            double v = f->fn((x + xmin - center + 0.5) * ss);
            w[x] = v;
            ww += v;
        }
        int32_t *k = c->k + (size_t)xx * c->ksize;
        for (int x = 0; x < c->ksize; x++) {
            double v = 0.0;
            if (x < xmax)
                v = ww != 0.0 ? w[x] / ww : w[x];
            /* round half away from zero, then truncate: Pillow's conversion */
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PIL_PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PIL_PRECISION_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax < 0 ? 0 : xmax;
    }
    free(w);
    return 0;
}

/* Pillow's clip8: floor(acc / 2^22) clamped to 0..255 (its lookup table does exactly this for
 * every value the accumulators can reach). 64-bit accumulation gives the same sums as Pillow's
 * 32-bit ones, which never overflow for 8-bit input, without any undefined behaviour. */
static inline unsigned char pil_clip8(int64_t acc)
{
    int64_t v = acc >> PIL_PRECISION_BITS; /* arithmetic shift: floor */
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass: rows [y0, y0 + rows) of src (width sw) -> dst (width dw, rows rows). */
static void pil_hpass(const unsigned char *src, int sw, int y0, int rows, const pil_coeffs *c,
                      int dw, unsigned char *dst)
{
    for (int y = 0; y < rows; y++) {
        const unsigned char *in = src + (size_t)(y + y0) * sw * 3;
        unsigned char *o = dst + (size_t)y * dw * 3;
        for (int xx = 0; xx < dw; xx++) {
            int xmin = c->bounds[2 * xx], n = c->bounds[2 * xx + 1];
            const int32_t *k = c->k + (size_t)xx * c->ksize;
            int64_t s0 = 1 << (PIL_PRECISION_BITS - 1), s1 = s0, s2 = s0;
            const unsigned char *p = in + (size_t)xmin * 3;
            for (int x = 0; x < n; x++, p += 3) {
                s0 += (int64_t)p[0] * k[x];
                s1 += (int64_t)p[1] * k[x];
                s2 += (int64_t)p[2] * k[x];
            }
            o[3 * xx] = pil_clip8(s0);
            o[3 * xx + 1] = pil_clip8(s1);
            o[3 * xx + 2] = pil_clip8(s2);
        }
    }
}

/* Vertical pass: src (width w; the bounds index its rows, offset by -y0) -> dst (w x dh).
 * acc holds one output row of accumulators: the taps are added row by row so that the source
 * is read contiguously (integer sums do not depend on the order). */
static void pil_vpass(const unsigned char *src, int w, int y0, const pil_coeffs *c, int dh,
                      unsigned char *dst, int64_t *acc)
{
    const size_t stride = (size_t)w * 3;
    for (int yy = 0; yy < dh; yy++) {
        int ymin = c->bounds[2 * yy] - y0, n = c->bounds[2 * yy + 1];
        const int32_t *k = c->k + (size_t)yy * c->ksize;
        for (size_t xx = 0; xx < stride; xx++)
            acc[xx] = 1 << (PIL_PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) {
            const unsigned char *p = src + (size_t)(ymin + y) * stride;
            const int64_t ky = k[y];
            for (size_t xx = 0; xx < stride; xx++)
                acc[xx] += p[xx] * ky;
        }
        unsigned char *o = dst + (size_t)yy * stride;
        for (size_t xx = 0; xx < stride; xx++)
            o[xx] = pil_clip8(acc[xx]);
    }
}

/* Arguments shared by both resizers: non-empty sizes within PCV_IMAGE_MAX_PIXELS. */
static int check_resize_args(const unsigned char *src, int sw, int sh, const unsigned char *dst, int dw,
                             int dh, pcv_error *err)
{
    if (!src || !dst || sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0)
        return pcv_set_error(err, PCV_ERR_INPUT, "resize: bad arguments (%dx%d -> %dx%d)", sw, sh,
                             dw, dh);
    if ((int64_t)dw * dh > PCV_IMAGE_MAX_PIXELS || (int64_t)sw * sh > PCV_IMAGE_MAX_PIXELS)
        return pcv_set_error(err, PCV_ERR_INPUT, "resize: image too large (%dx%d -> %dx%d)", sw,
                             sh, dw, dh);
    return 0;
}

pcv_status pcv_image_resize_pil(const unsigned char *src, int sw, int sh, unsigned char *dst, int dw,
                         int dh, int filter, int flags, pcv_error *err)
{
    int rc = check_resize_args(src, sw, sh, dst, dw, dh, err);
    if (rc)
        return rc;
    const pil_filter *f = pil_filter_for(filter);
    if (!f)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "resize: resampling filter %d (%s) is not supported (LANCZOS=1, "
                             "BILINEAR=2, BICUBIC=3, BOX=4, HAMMING=5)",
                             filter, resample_name(filter));
    if (sw == dw && sh == dh) { /* Image.resize returns a copy */
        memcpy(dst, src, (size_t)sw * sh * 3);
        return 0;
    }
    bool need_h = sw != dw, need_v = sh != dh;
    /* Pass order. Pillow 13 runs the vertical pass first when the height shrinks by more than
     * twice the width does: sh - dh > 2 * max(sw - dw, 0). This was measured, not read: on 1284
     * random size pairs over all five filters (tools/make_image_fixtures.py --probe-order) the
     * rule predicts which of the two orders Pillow's output equals every time. Square crops
     * resized to squares (the Perceiver case) always go horizontal first. Pillow 10.4, 11.3
     * and 12.0 always go horizontal first (PCV_RESIZE_PILLOW12_ORDER). */
    int dx = sw - dw > 0 ? sw - dw : 0;
    bool v_first = need_h && need_v && !(flags & PCV_RESIZE_PILLOW12_ORDER) &&
                   (int64_t)sh - dh > 2 * (int64_t)dx;
    pil_coeffs cv = {0}, ch = {0};
    unsigned char *tmp = NULL;
    int64_t *acc = NULL;
    if ((need_v && pil_precompute(sh, dh, f, &cv)) || (need_h && pil_precompute(sw, dw, f, &ch)) ||
        (need_v && !(acc = malloc(sizeof(int64_t) * 3 * (size_t)(sw > dw ? sw : dw))))) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "resize: out of memory");
        goto out;
    }
    if (!need_v) {
        pil_hpass(src, sw, 0, sh, &ch, dw, dst);
    } else if (!need_h) {
        pil_vpass(src, sw, 0, &cv, dh, dst, acc);
    } else if (v_first) {
        tmp = malloc((size_t)sw * dh * 3);
        if (!tmp) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "resize: out of memory");
            goto out;
        }
        pil_vpass(src, sw, 0, &cv, dh, tmp, acc);
        pil_hpass(tmp, sw, 0, dh, &ch, dw, dst);
    } else {
        /* Only the source rows the vertical pass reads go through the horizontal pass. */
        int y0 = cv.bounds[0];
        int y1 = cv.bounds[2 * (dh - 1)] + cv.bounds[2 * (dh - 1) + 1];
        int rows = y1 - y0;
        tmp = malloc((size_t)dw * (size_t)(rows > 0 ? rows : 1) * 3);
        if (!tmp) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "resize: out of memory");
            goto out;
        }
        pil_hpass(src, sw, y0, rows, &ch, dw, tmp);
        pil_vpass(tmp, dw, y0, &cv, dh, dst, acc);
    }
out:
    pil_coeffs_free(&cv);
    pil_coeffs_free(&ch);
    free(tmp);
    free(acc);
    return rc;
}

/* ---- OpenCV INTER_CUBIC (haiku pipeline) ---------------------------------------------------- */

#define CV_COEF_BITS 11
#define CV_COEF_SCALE (1 << CV_COEF_BITS)

/* OpenCV's interpolateCubic, in float, A = -0.75. */
static void cv_cubic_coeffs(float x, float c[4])
{
    const float A = -0.75f;
    c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    c[3] = 1.f - c[0] - c[1] - c[2];
}

/* saturate_cast<short>(float): round half to even (the SSE conversion), then clamp. */
static short cv_round_short(float v)
{
    float r = nearbyintf(v); /* default rounding mode: to nearest, ties to even */
    if (r > 32767.f)
        return 32767;
    if (r < -32768.f)
        return -32768;
    return (short)r;
}

/* For each output index: the first of the 4 taps (may be out of range) and their weights. */
static void cv_axis(int in_size, int out_size, int *ofs, short *w)
{
    double inv_scale = (double)out_size / in_size;
    double scale = 1. / inv_scale;
    for (int d = 0; d < out_size; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        int s = (int)floorf(f);
        f -= (float)s;
        float c[4];
        cv_cubic_coeffs(f, c);
        ofs[d] = s - 1;
        for (int k = 0; k < 4; k++)
            w[4 * d + k] = cv_round_short(c[k] * CV_COEF_SCALE);
    }
}

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

pcv_status pcv_image_resize_cv_cubic(const unsigned char *src, int sw, int sh, unsigned char *dst,
                              int dw, int dh, pcv_error *err)
{
    int rc = check_resize_args(src, sw, sh, dst, dw, dh, err);
    if (rc)
        return rc;
    if (sw == dw && sh == dh) { /* cv::resize copies */
        memcpy(dst, src, (size_t)sw * sh * 3);
        return 0;
    }
    int *xofs = malloc(sizeof(int) * (size_t)dw), *yofs = malloc(sizeof(int) * (size_t)dh);
    short *xw = malloc(sizeof(short) * 4 * (size_t)dw);
    short *yw = malloc(sizeof(short) * 4 * (size_t)dh);
    int32_t *rows = malloc(sizeof(int32_t) * 4 * (size_t)dw * 3);
    if (!xofs || !yofs || !xw || !yw || !rows) {
        free(xofs), free(yofs), free(xw), free(yw), free(rows);
        return pcv_set_error(err, PCV_ERR_OOM, "resize: out of memory");
    }
    cv_axis(sw, dw, xofs, xw);
    cv_axis(sh, dh, yofs, yw);
    const int width = dw * 3;
    /* The vertical pass: OpenCV's SIMD loop handles the first width - width % 8 values in
     * float (products of the 11-bit horizontal sums with beta / 2^22, summed in the order
     * S0*b0 + (S1*b1 + (S2*b2 + S3*b3)), rounded half to even); the remaining few use the
     * exact fixed-point formula (sum + 2^21) >> 22. */
    const int vec_end = width - width % 8;
    const float scale = 1.f / (CV_COEF_SCALE * CV_COEF_SCALE);
    for (int dy = 0; dy < dh; dy++) {
        /* Horizontal pass of the 4 source rows (borders replicated), 11-bit fixed point. */
        for (int k = 0; k < 4; k++) {
            const unsigned char *in = src + (size_t)clampi(yofs[dy] + k, 0, sh - 1) * sw * 3;
            int32_t *r = rows + (size_t)k * width;
            for (int dx = 0; dx < dw; dx++) {
                const short *a = xw + 4 * dx;
                for (int c = 0; c < 3; c++) {
                    int32_t v = 0;
                    for (int j = 0; j < 4; j++)
                        v += in[clampi(xofs[dx] + j, 0, sw - 1) * 3 + c] * a[j];
                    r[dx * 3 + c] = v;
                }
            }
        }
        const short *b = yw + 4 * dy;
        const float b0 = b[0] * scale, b1 = b[1] * scale, b2 = b[2] * scale, b3 = b[3] * scale;
        const int32_t *S0 = rows, *S1 = rows + width, *S2 = rows + 2 * width,
                      *S3 = rows + 3 * width;
        unsigned char *o = dst + (size_t)dy * width;
        for (int x = 0; x < width; x++) {
            int v;
            if (x < vec_end) {
                float t = (float)S3[x] * b3;
                t = (float)S2[x] * b2 + t;
                t = (float)S1[x] * b1 + t;
                t = (float)S0[x] * b0 + t;
                float r = nearbyintf(t);
                v = r > 32767.f ? 32767 : r < -32768.f ? -32768 : (int)r;
            } else {
                int64_t s = (int64_t)S0[x] * b[0] + (int64_t)S1[x] * b[1] +
                            (int64_t)S2[x] * b[2] + (int64_t)S3[x] * b[3];
                v = (int)((s + (1 << (2 * CV_COEF_BITS - 1))) >> (2 * CV_COEF_BITS));
            }
            o[x] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(xofs), free(yofs), free(xw), free(yw), free(rows);
    return 0;
}

/* ---- processor configuration ---------------------------------------------------------------- */

void pcv_image_processor_init(pcv_image_processor *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->pipeline = PCV_IMAGE_PIPELINE_HF;
    p->do_center_crop = p->do_resize = p->do_rescale = p->do_normalize = true;
    p->crop_h = p->crop_w = 256;
    p->size_h = p->size_w = 224;
    p->resample = PCV_RESAMPLE_BICUBIC;
    p->rescale_factor = 1.0 / 255.0;
    /* IMAGENET_DEFAULT_MEAN / IMAGENET_DEFAULT_STD */
    p->mean[0] = 0.485, p->mean[1] = 0.456, p->mean[2] = 0.406;
    p->std[0] = 0.229, p->std[1] = 0.224, p->std[2] = 0.225;
}

void pcv_image_processor_init_haiku(pcv_image_processor *p)
{
    pcv_image_processor_init(p);
    if (p)
        p->pipeline = PCV_IMAGE_PIPELINE_HAIKU;
}

#define PROC_DIM_MAX 65536
#define PROC_FILE_MAX (1u << 20)


static int j_bool(const char *path, json_t *root, const char *key, bool *out, pcv_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: key '%s': expected true or false, got %s",
                             path, key, pcv_json_kind(v));
    *out = json_is_true(v);
    return 0;
}

static int j_dim(const char *path, const char *what, json_t *v, int *out, pcv_error *err)
{
    double d = json_is_integer(v) ? (double)json_integer_value(v)
               : json_is_real(v)  ? json_real_value(v)
                                  : -1.0;
    if (!json_is_number(v) || d != floor(d) || d < 1 || d > PROC_DIM_MAX)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: key '%s': expected an integer in [1, %d], got %s", path, what,
                             PROC_DIM_MAX, json_is_number(v) ? "an out-of-range number" : pcv_json_kind(v));
    *out = (int)d;
    return 0;
}

/* size / crop_size: an int (square, transformers' default_to_square) or {"height", "width"}. */
static int j_size(const char *path, json_t *root, const char *key, int *h, int *w,
                  pcv_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_number(v)) {
        int s;
        int rc = j_dim(path, key, v, &s, err);
        if (!rc)
            *h = *w = s;
        return rc;
    }
    if (!json_is_object(v))
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: key '%s': expected an integer or {\"height\", \"width\"}, got %s",
                             path, key, pcv_json_kind(v));
    json_t *jh = json_object_get(v, "height"), *jw = json_object_get(v, "width");
    if (!jh || !jw) {
        const char *other = json_object_get(v, "shortest_edge") ? " ('shortest_edge' sizes are "
                                                                  "not used by Perceiver)"
                                                                : "";
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "%s: key '%s': needs 'height' and 'width'%s", path, key, other);
    }
    char what[64];
    int th, tw;
    snprintf(what, sizeof what, "%s.height", key);
    int rc = j_dim(path, what, jh, &th, err);
    if (rc)
        return rc;
    snprintf(what, sizeof what, "%s.width", key);
    rc = j_dim(path, what, jw, &tw, err);
    if (rc)
        return rc;
    *h = th, *w = tw;
    return 0;
}

/* image_mean / image_std: three numbers, or one for all channels. */
static int j_triple(const char *path, json_t *root, const char *key, bool positive, double out[3],
                    pcv_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    double t[3];
    if (json_is_number(v)) {
        t[0] = t[1] = t[2] = json_number_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 3) {
        for (int i = 0; i < 3; i++) {
            json_t *e = json_array_get(v, (size_t)i);
            if (!json_is_number(e))
                return pcv_set_error(err, PCV_ERR_FORMAT,
                                     "%s: key '%s[%d]': expected a number, got %s", path, key, i,
                                     pcv_json_kind(e));
            t[i] = json_number_value(e);
        }
    } else {
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: key '%s': expected 3 numbers (one per RGB channel) or one number",
                             path, key);
    }
    for (int i = 0; i < 3; i++)
        if (!isfinite(t[i]) || (positive && !(t[i] > 0)))
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: key '%s': bad value %g", path, key,
                                 t[i]);
    memcpy(out, t, sizeof t);
    return 0;
}

pcv_status pcv_image_processor_load(pcv_image_processor *p, const char *path, pcv_error *err)
{
    if (!p || !path)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_processor_load: NULL argument");
    pcv_image_processor_init(p);
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if ((size_t)snprintf(file, sizeof file, "%s/preprocessor_config.json", path) >= sizeof file)
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: path too long", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    if (stat(file, &st) != 0) {
        if (errno == ENOENT)
            return 0; /* no preprocessor config: PerceiverImageProcessor defaults */
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot stat: %s", file, strerror(errno));
    }
    if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size > PROC_FILE_MAX)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: not a regular file of at most %u bytes",
                             file, PROC_FILE_MAX);
    json_error_t jerr;
    json_t *root = json_load_file(file, 0, &jerr);
    if (!root)
        return jerr.line < 0 /* jansson could not read the file */
                   ? pcv_set_error(err, PCV_ERR_IO, "%s: %s", file, jerr.text)
                   : pcv_set_error(err, PCV_ERR_FORMAT,
                                   "%s: invalid JSON at line %d, column %d: %s", file, jerr.line,
                                   jerr.column, jerr.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: expected a JSON object", file);
        goto out;
    }
    if ((rc = j_bool(file, root, "do_center_crop", &p->do_center_crop, err)) ||
        (rc = j_bool(file, root, "do_resize", &p->do_resize, err)) ||
        (rc = j_bool(file, root, "do_rescale", &p->do_rescale, err)) ||
        (rc = j_bool(file, root, "do_normalize", &p->do_normalize, err)) ||
        (rc = j_size(file, root, "crop_size", &p->crop_h, &p->crop_w, err)) ||
        (rc = j_size(file, root, "size", &p->size_h, &p->size_w, err)) ||
        (rc = j_triple(file, root, "image_mean", false, p->mean, err)) ||
        (rc = j_triple(file, root, "image_std", true, p->std, err)))
        goto out;
    json_t *v = json_object_get(root, "resample");
    if (v && !json_is_null(v)) {
        int r = -1;
        if (json_is_integer(v))
            r = (int)json_integer_value(v);
        if (!pil_filter_for(r)) {
            rc = pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                               "%s: key 'resample': %s is not a supported Pillow filter "
                               "(LANCZOS=1, BILINEAR=2, BICUBIC=3, BOX=4, HAMMING=5)",
                               file, json_is_integer(v) ? resample_name(r) : pcv_json_kind(v));
            goto out;
        }
        p->resample = r;
    }
    v = json_object_get(root, "rescale_factor");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: key 'rescale_factor': expected a number",
                               file);
            goto out;
        }
        p->rescale_factor = json_number_value(v);
    }
out:
    json_decref(root);
    if (rc)
        pcv_image_processor_init(p);
    return rc;
}

/* ---- pipeline ------------------------------------------------------------------------------- */

static int floordiv2(int v)
{
    return v >= 0 ? v / 2 : -((-v + 1) / 2);
}

/* Crop window (may extend past the image: zero padding) of the input. */
typedef struct crop_win {
    int top, left, h, w; /* output pixel (y, x) reads input (top + y, left + x) */
} crop_win;

/* Side of the center crop: transformers computes int((size / crop_size) * min(H, W)) in double
 * (0.875 * min for the defaults); the colab's int32(0.875 * float32(min)) is the same number. */
static int crop_side(int size, int crop, int min_dim)
{
    double v = ((double)size / crop) * min_dim;
    return v >= (double)INT_MAX ? INT_MAX : (int)v;
}

/* Offset of a crop of side c in a dimension of n pixels.
 * HF (image_transforms.center_crop): top = (n - c) // 2; when c > n the image is first padded
 * by ceil((c - n) / 2) zeros before, so the window starts ceil((c-n)/2) + (n-c)//2 (= 0)
 * padded pixels in, i.e. at input offset (n - c) // 2.
 * haiku (colab): ((n - c) + 1) // 2, rounding up. */
static int crop_offset(int n, int c, bool round_up)
{
    return round_up ? floordiv2(n - c + 1) : floordiv2(n - c);
}

static int plan(const pcv_image_processor *p, int w, int h, crop_win *cw, int *ow, int *oh,
                pcv_error *err)
{
    if (!p)
        return pcv_set_error(err, PCV_ERR_INPUT, "image processor is NULL");
    if (w <= 0 || h <= 0)
        return pcv_set_error(err, PCV_ERR_INPUT, "image has no pixels (%dx%d)", w, h);
    if (p->pipeline != PCV_IMAGE_PIPELINE_HF && p->pipeline != PCV_IMAGE_PIPELINE_HAIKU)
        return pcv_set_error(err, PCV_ERR_INPUT, "unknown image pipeline %d", (int)p->pipeline);
    if ((p->do_center_crop && (p->crop_h <= 0 || p->crop_w <= 0 || p->size_h <= 0 ||
                               p->size_w <= 0)) ||
        (p->do_resize && (p->size_h <= 0 || p->size_w <= 0)))
        return pcv_set_error(err, PCV_ERR_INPUT, "image processor has a bad size (size %dx%d, "
                             "crop_size %dx%d)", p->size_w, p->size_h, p->crop_w, p->crop_h);
    if (p->pipeline == PCV_IMAGE_PIPELINE_HF && p->do_resize && !pil_filter_for(p->resample))
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "resampling filter %d (%s) is not supported", p->resample,
                             resample_name(p->resample));
    crop_win c = {0, 0, h, w};
    if (p->do_center_crop) {
        int m = w < h ? w : h;
        c.h = crop_side(p->size_h, p->crop_h, m);
        c.w = crop_side(p->size_w, p->crop_w, m);
        /* An empty crop (a 1-pixel-wide image with the 0.875 ratio): transformers hands Pillow
         * an empty image, whose resize is all black; we do the same. Without a resize, or in
         * the colab pipeline (cv2.resize refuses empty input), it is an error. */
        if ((c.h < 1 || c.w < 1) && (!p->do_resize || p->pipeline == PCV_IMAGE_PIPELINE_HAIKU))
            return pcv_set_error(err, PCV_ERR_INPUT,
                                 "a %dx%d image is too small: its center crop (%g of the short "
                                 "side) would be empty",
                                 w, h, (double)p->size_h / p->crop_h);
        if ((int64_t)c.h * c.w > PCV_IMAGE_MAX_PIXELS)
            return pcv_set_error(err, PCV_ERR_INPUT, "center crop of %dx%d pixels is too large",
                                 c.w, c.h);
        bool up = p->pipeline == PCV_IMAGE_PIPELINE_HAIKU;
        c.top = crop_offset(h, c.h, up);
        c.left = crop_offset(w, c.w, up);
    }
    *cw = c;
    *ow = p->do_resize ? p->size_w : c.w;
    *oh = p->do_resize ? p->size_h : c.h;
    if ((int64_t)*ow * *oh > PCV_IMAGE_MAX_PIXELS)
        return pcv_set_error(err, PCV_ERR_INPUT, "output of %dx%d pixels is too large", *ow, *oh);
    return 0;
}

pcv_status pcv_image_output_size(const pcv_image_processor *p, int w, int h, int *out_w, int *out_h,
                          pcv_error *err)
{
    crop_win c = {0, 0, 0, 0};
    int ow = 0, oh = 0;
    int rc = plan(p, w, h, &c, &ow, &oh, err);
    if (rc)
        return rc;
    if (out_w)
        *out_w = ow;
    if (out_h)
        *out_h = oh;
    return 0;
}

pcv_status pcv_image_preprocess_u8(const pcv_image_processor *p, const pcv_image *img, pcv_image *out,
                            pcv_error *err)
{
    if (!img || !img->rgb || !out)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_preprocess_u8: NULL image");
    out->rgb = NULL;
    out->width = out->height = 0;
    crop_win c = {0, 0, 0, 0};
    int ow = 0, oh = 0;
    int rc = plan(p, img->width, img->height, &c, &ow, &oh, err);
    if (rc)
        return rc;
    if (c.h < 1 || c.w < 1) { /* empty crop, resized by Pillow to black (see plan) */
        out->rgb = calloc((size_t)ow * oh, 3);
        if (!out->rgb)
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory for a %dx%d image", ow, oh);
        out->width = ow;
        out->height = oh;
        return 0;
    }
    /* 1. crop, with zeros outside the image */
    unsigned char *crop = malloc((size_t)c.w * c.h * 3);
    if (!crop)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory for a %dx%d crop", c.w, c.h);
    for (int y = 0; y < c.h; y++) {
        unsigned char *o = crop + (size_t)y * c.w * 3;
        int sy = c.top + y;
        if (sy < 0 || sy >= img->height) {
            memset(o, 0, (size_t)c.w * 3);
            continue;
        }
        const unsigned char *in = img->rgb + (size_t)sy * img->width * 3;
        for (int x = 0; x < c.w; x++) {
            int sx = c.left + x;
            if (sx < 0 || sx >= img->width) {
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = 0;
            } else {
                memcpy(o + 3 * x, in + 3 * sx, 3);
            }
        }
    }
    if (!p->do_resize) {
        out->rgb = crop;
        out->width = c.w;
        out->height = c.h;
        return 0;
    }
    /* 2. resize */
    unsigned char *res = malloc((size_t)ow * oh * 3);
    if (!res) {
        free(crop);
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory for a %dx%d image", ow, oh);
    }
    if (p->pipeline == PCV_IMAGE_PIPELINE_HAIKU)
        rc = pcv_image_resize_cv_cubic(crop, c.w, c.h, res, ow, oh, err);
    else
        rc = pcv_image_resize_pil(crop, c.w, c.h, res, ow, oh, p->resample, p->resize_flags,
                                  err);
    free(crop);
    if (rc) {
        free(res);
        return rc;
    }
    out->rgb = res;
    out->width = ow;
    out->height = oh;
    return 0;
}

/* 3-4. uint8 -> float for every possible value, per channel.
 * HF: rescale is float32(float64(v) * factor) (image_transforms.rescale upcasts, then casts);
 * normalize casts mean/std to float32 and computes (x - mean) / std in float32. Without
 * rescale, normalize starts from float32(v).
 * haiku: float32((v - 255*mean) / (255*std)) in float64 when rescaling and normalizing. */
static void value_table(const pcv_image_processor *p, float lut[3][256])
{
    for (int c = 0; c < 3; c++) {
        float m = (float)p->mean[c], s = (float)p->std[c];
        for (int v = 0; v < 256; v++) {
            if (p->pipeline == PCV_IMAGE_PIPELINE_HAIKU && p->do_rescale && p->do_normalize) {
                lut[c][v] = (float)(((double)v - 255.0 * p->mean[c]) / (255.0 * p->std[c]));
                continue;
            }
            float x = p->do_rescale ? (float)((double)v * p->rescale_factor) : (float)v;
            if (p->do_normalize)
                x = (x - m) / s;
            lut[c][v] = x;
        }
    }
}

pcv_status pcv_image_preprocess(const pcv_image_processor *p, const pcv_image *img, float *out_chw,
                         size_t cap, pcv_error *err)
{
    if (!out_chw)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_preprocess: output is NULL");
    int ow = 0, oh = 0;
    int rc = pcv_image_output_size(p, img ? img->width : 0, img ? img->height : 0, &ow, &oh, err);
    if (rc)
        return rc;
    size_t plane = (size_t)ow * oh;
    if (cap < 3 * plane)
        return pcv_set_error(err, PCV_ERR_SHAPE,
                             "output buffer holds %zu floats, [3][%d][%d] needs %zu", cap, oh, ow,
                             3 * plane);
    pcv_image u8;
    rc = pcv_image_preprocess_u8(p, img, &u8, err);
    if (rc)
        return rc;
    float lut[3][256];
    value_table(p, lut);
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++)
            out_chw[(size_t)c * plane + i] = lut[c][u8.rgb[3 * i + c]];
    pcv_image_free(&u8);
    return 0;
}

pcv_status pcv_image_load_batch(const pcv_image_processor *p, const char *const *paths, int n,
                         float **out, int *out_h, int *out_w, pcv_error *err)
{
    if (!out || !paths || n <= 0)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_load_batch: no images");
    *out = NULL;
    float *buf = NULL;
    int bh = 0, bw = 0;
    size_t per = 0;
    for (int i = 0; i < n; i++) {
        pcv_image img;
        pcv_image_load_options lo = {.ignore_exif_orientation = p->ignore_exif_orientation};
        int rc = pcv_image_load_ex(paths[i], &lo, &img, err);
        if (rc) {
            free(buf);
            return rc;
        }
        int ow = 0, oh = 0;
        rc = pcv_image_output_size(p, img.width, img.height, &ow, &oh, err);
        if (rc) {
            /* name the file: the size error itself does not know it */
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            pcv_set_error(err, (pcv_status)rc, "%s: %s", paths[i], msg);
            pcv_image_free(&img);
            free(buf);
            return rc;
        }
        if (i == 0) {
            bh = oh, bw = ow;
            per = (size_t)3 * ow * oh;
            if (per > SIZE_MAX / sizeof(float) / (size_t)n ||
                !(buf = malloc(per * (size_t)n * sizeof(float)))) {
                pcv_image_free(&img);
                return pcv_set_error(err, PCV_ERR_OOM, "out of memory for %d images of %dx%d", n,
                                     ow, oh);
            }
        } else if (oh != bh || ow != bw) {
            pcv_image_free(&img);
            free(buf);
            return pcv_set_error(err, PCV_ERR_SHAPE,
                                 "%s: preprocesses to %dx%d but %s gave %dx%d; a batch needs one "
                                 "size (enable do_resize)",
                                 paths[i], ow, oh, paths[0], bw, bh);
        }
        rc = pcv_image_preprocess(p, &img, buf + per * (size_t)i, per, err);
        pcv_image_free(&img);
        if (rc) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            pcv_set_error(err, (pcv_status)rc, "%s: %s", paths[i], msg);
            free(buf);
            return rc;
        }
    }
    *out = buf;
    if (out_h)
        *out_h = bh;
    if (out_w)
        *out_w = bw;
    return 0;
}
