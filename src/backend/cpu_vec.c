/* Vector kernels of the CPU path (see cpu_vec.h).
 *
 * Written with GCC's vector extensions, 8 floats per vector: one ymm register with AVX2 and
 * AVX-512, two xmm on the x86-64 baseline (16-float vectors ran 4x slower on AVX2: GCC lowers their
 * comparisons to scalar code); built by clang, 4 floats and no clones (see VBYTES).
 * On x86-64 each entry point is compiled three times (target_clones) and the dynamic loader picks
 * the clone the CPU can run, so one binary serves every machine; elsewhere the generic code is
 * built once. No -ffast-math: the functions below spell out every approximation they make.
 *
 * exp: x = n ln2 + r, |r| <= ln2 / 2, 2^n from the exponent bits and exp(r) from a degree-6
 * polynomial (max relative error 1.9e-9 on [-ln2/2, ln2/2] in exact arithmetic; below float's
 * rounding). erf: erf(z) = z P(z^2) on |z| < 1 (degree 5 in z^2, 4.6e-8 relative), and
 * 1 - exp(-z^2) R(1/z) on 1 <= |z| < 4 (R approximates erfcx, degree 8, 6.5e-8 relative);
 * erf is 1 in float beyond 3.92. The coefficients were fitted for this file (weighted least
 * squares iterated towards minimax, numpy); tests/test_ops checks the results against float64
 * within tests/tolerances.json's "gelu" and "softmax" bounds. */
#include "backend/cpu_vec.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
/* Clang refuses 32-byte vectors as arguments of the (inlined) helpers in code built without AVX,
 * the baseline clone: one build of 4-float vectors instead. */
#define VBYTES 16
#define CLONES
#else
#define VBYTES 32
#if defined(__x86_64__) && defined(__GNUC__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif
#endif

typedef float vf __attribute__((vector_size(VBYTES)));
typedef int32_t vi __attribute__((vector_size(VBYTES)));
enum { W = (int)(sizeof(vf) / sizeof(float)) };

#define INLINE static inline __attribute__((always_inline))

INLINE vf splat(float v) { return (vf){0} + v; }
INLINE vf load(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
INLINE void store(float *p, vf v) { memcpy(p, &v, sizeof v); }
/* The first n < W elements, the rest fill. */
INLINE vf load_part(const float *p, int64_t n, float fill)
{
    vf v = splat(fill);
    memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}
INLINE void store_part(float *p, vf v, int64_t n) { memcpy(p, &v, (size_t)n * sizeof(float)); }
INLINE vf select(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); } /* m ? a : b */
INLINE vf vmax(vf a, vf b) { return select(a > b, a, b); }
INLINE vf vmin(vf a, vf b) { return select(a < b, a, b); }
INLINE float hmax(vf v)
{
    float m = v[0];
    for (int i = 1; i < W; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}
INLINE double hsum(vf v)
{
    double s = 0;
    for (int i = 0; i < W; i++)
        s += v[i];
    return s;
}

/* exp(x); 0 below -87.3 (where float's normal range ends), x clamped at 88.3 above. */
INLINE vf vexp(vf x)
{
    const vi under = x < splat(-87.33f);
    x = vmin(vmax(x, splat(-87.33f)), splat(88.37f));
    const vf magic = splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    vf n = (x * splat(1.44269504088896341f) + magic) - magic;
    vf r = (x - n * splat(0.693145751953125f)) - n * splat(1.42860682030941723212e-6f);
    vf p = splat(1.3836842249800507e-3f);
    p = p * r + splat(8.374816021911678e-3f);
    p = p * r + splat(4.166822565070649e-2f);
    p = p * r + splat(1.6666420167340437e-1f);
    p = p * r + splat(4.999999207939129e-1f);
    p = p * r + splat(1.0000000363237227f);
    p = p * r + splat(1.0f);
    vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    return select(under, splat(0.0f), p * (vf)bits);
}

/* 0.5 x (1 + erf(x / sqrt 2)) */
INLINE vf vgelu(vf x)
{
    const vf z = x * splat(0.70710678118654752440f);
    const vi sign = (vi)z & ((vi){0} + INT32_MIN);
    const vf a = (vf)((vi)z & ~sign); /* |z| */
    const vf a2 = a * a;
    vf ps = splat(-5.66030344668636e-4f);
    ps = ps * a2 + splat(4.924830348563988e-3f);
    ps = ps * a2 + splat(-2.671774825616957e-2f);
    ps = ps * a2 + splat(1.1280413390410099e-1f);
    ps = ps * a2 + splat(-3.7612355996293056e-1f);
    ps = ps * a2 + splat(1.1283791287263298f);
    ps = ps * a;
    const vf ac = vmin(vmax(a, splat(1.0f)), splat(4.0f));
    const vf t = splat(1.0f) / ac;
    vf pl = splat(-1.1374675088373178e-2f);
    pl = pl * t + splat(3.7999293227911346e-2f);
    pl = pl * t + splat(4.027997324477631e-3f);
    pl = pl * t + splat(-2.190705397852224e-1f);
    pl = pl * t + splat(4.8094025281942204e-1f);
    pl = pl * t + splat(-4.6466743894946394e-1f);
    pl = pl * t + splat(4.015976742934474e-2f);
    pl = pl * t + splat(5.593157964101532e-1f);
    pl = pl * t + splat(2.530948288550908e-4f);
    pl = splat(1.0f) - vexp(-(ac * ac)) * pl;
    vf erf_abs = select(a < splat(1.0f), ps, pl);
    vf erf = (vf)((vi)erf_abs | sign);
    return splat(0.5f) * x * (splat(1.0f) + erf);
}

CLONES void pcv_vec_bias_gelu(float *x, int64_t rows, int64_t cols, const float *bias)
{
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * cols;
        int64_t c = 0;
        for (; c + W <= cols; c += W) {
            vf v = load(xr + c);
            if (bias)
                v = v + load(bias + c);
            store(xr + c, vgelu(v));
        }
        if (c < cols) {
            vf v = load_part(xr + c, cols - c, 0.0f);
            if (bias)
                v = v + load_part(bias + c, cols - c, 0.0f);
            store_part(xr + c, vgelu(v), cols - c);
        }
    }
}

INLINE vf epilogue(vf v, const float *bias, bool gelu, const float *res, int64_t m)
{
    if (bias)
        v = v + (m < W ? load_part(bias, m, 0.0f) : load(bias));
    if (gelu)
        v = vgelu(v);
    if (res)
        v = v + (m < W ? load_part(res, m, 0.0f) : load(res));
    return v;
}

CLONES void pcv_vec_epilogue(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *bias, bool gelu,
                             const float *res, int64_t ldr)
{
    for (int64_t r = 0; r < rows; r++) {
        float *cr = c + r * ldc;
        const float *rr = res ? res + r * ldr : NULL;
        int64_t j = 0;
        for (; j + W <= cols; j += W)
            store(cr + j, epilogue(load(cr + j), bias ? bias + j : NULL, gelu, rr ? rr + j : NULL, W));
        if (j < cols)
            store_part(cr + j,
                       epilogue(load_part(cr + j, cols - j, 0.0f), bias ? bias + j : NULL, gelu, rr ? rr + j : NULL,
                                cols - j),
                       cols - j);
    }
}

/* One vector of scores before the softmax: divided, masked. */
INLINE vf scores(vf v, float div, const float *add, const float *keep, int64_t j, int64_t m)
{
    if (div != 1.0f)
        v = v / splat(div);
    if (add)
        v = v + (m < W ? load_part(add + j, m, 0.0f) : load(add + j));
    if (keep)
        v = v + (splat(1.0f) - (m < W ? load_part(keep + j, m, 1.0f) : load(keep + j))) * splat(-FLT_MAX);
    return v;
}

/* The scores of a row (divided, masked: scores()) stored back into x, their maximum taken with
 * *max (stored there), then x = exp(x - max); returns the sum of the exponentials. */
INLINE double softmax_exp(float *x, int64_t n, float div, const float *add, const float *keep, float *max)
{
    int64_t j, tail = n % W, body = n - tail;
    vf mx = splat(*max);
    if (div == 1.0f && !add && !keep) { /* the scores as they are: only their maximum */
        vf mx2 = mx;
        for (j = 0; j + 2 * W <= body; j += 2 * W) {
            mx = vmax(mx, load(x + j));
            mx2 = vmax(mx2, load(x + j + W));
        }
        for (; j < body; j += W)
            mx = vmax(mx, load(x + j));
        mx = vmax(mx, mx2);
        if (tail)
            mx = vmax(mx, load_part(x + j, tail, -INFINITY));
    } else {
        for (j = 0; j < body; j += W) {
            vf v = scores(load(x + j), div, add, keep, j, W);
            store(x + j, v);
            mx = vmax(mx, v);
        }
        if (tail) { /* the lanes past the row stay -inf through scores() */
            vf v = scores(load_part(x + j, tail, -INFINITY), div, add, keep, j, tail);
            store_part(x + j, v, tail);
            mx = vmax(mx, v);
        }
    }
    *max = hmax(mx);
    const vf m = splat(*max);
    vf sum = splat(0.0f);
    for (j = 0; j < body; j += W) {
        vf e = vexp(load(x + j) - m);
        store(x + j, e);
        sum = sum + e;
    }
    if (tail) {
        vf e = vexp(load_part(x + j, tail, -INFINITY) - m);
        store_part(x + j, e, tail);
        sum = sum + e;
    }
    return hsum(sum);
}

CLONES void pcv_vec_softmax_row(float *x, int64_t n, float div, const float *add, const float *keep)
{
    float mx = -INFINITY;
    const vf inv = splat((float)(1.0 / softmax_exp(x, n, div, add, keep, &mx)));
    int64_t j, tail = n % W, body = n - tail;
    for (j = 0; j < body; j += W)
        store(x + j, load(x + j) * inv);
    if (tail)
        store_part(x + j, load_part(x + j, tail, 0.0f) * inv, tail);
}

CLONES double pcv_vec_softmax_block(float *x, int64_t n, float div, const float *keep, float *max)
{
    return softmax_exp(x, n, div, NULL, keep, max);
}

CLONES void pcv_vec_scale(float *x, int64_t n, float s)
{
    int64_t j = 0;
    for (; j + W <= n; j += W)
        store(x + j, load(x + j) * splat(s));
    if (j < n)
        store_part(x + j, load_part(x + j, n - j, 0.0f) * splat(s), n - j);
}

CLONES void pcv_vec_layernorm_row(const float *x, float *y, int64_t n, const float *gamma, const float *beta,
                                  float eps)
{
    int64_t j, tail = n % W, body = n - tail;
    /* two passes, partial sums in float lanes (n / W terms each), lanes added in double; the
     * second pass also sums the deviations, which corrects the mean for the rounding of the first
     * (the "corrected two-pass" algorithm: rows far from zero mean stay exact to float's rounding) */
    vf s = splat(0.0f);
    for (j = 0; j < body; j += W)
        s = s + load(x + j);
    if (tail)
        s = s + load_part(x + j, tail, 0.0f);
    const float mean0 = (float)(hsum(s) / (double)n);
    const vf vm0 = splat(mean0);
    vf sd = splat(0.0f);
    s = splat(0.0f);
    for (j = 0; j < body; j += W) {
        vf d = load(x + j) - vm0;
        sd = sd + d;
        s = s + d * d;
    }
    if (tail) {
        vf d = load_part(x + j, tail, mean0) - vm0;
        sd = sd + d;
        s = s + d * d;
    }
    const double dmean = hsum(sd) / (double)n, var = hsum(s) / (double)n - dmean * dmean;
    const vf vm = splat((float)((double)mean0 + dmean));
    const vf rstd = splat((float)(1.0 / sqrt((var > 0 ? var : 0) + (double)eps)));
    for (j = 0; j < body; j += W)
        store(y + j, (load(x + j) - vm) * rstd * load(gamma + j) + load(beta + j));
    if (tail)
        store_part(y + j,
                   (load_part(x + j, tail, 0.0f) - vm) * rstd * load_part(gamma + j, tail, 0.0f) +
                       load_part(beta + j, tail, 0.0f),
                   tail);
}
