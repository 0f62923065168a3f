/* Elementwise and data-movement kernels: one output element per work-item.
 *
 * These are memory-bound; the simple form lets GPU drivers coalesce along dimension 0 and lets
 * PoCL vectorize its work-item loop (dimension 0 is the innermost loop of a work-group).
 * Offsets and leading dimensions are in elements (the backend passes buffer + element offset,
 * never sub-buffers, whose origin has alignment rules).
 * Formulas repeat the CPU reference path's (src/backend_cpu.c) operation for operation.
 */

/* x[r][c] += bias[c]; global (cols, rows) */
__kernel void bias_add(__global float *x, ulong x_off, long cols, __global const float *bias, ulong b_off)
{
    const long c = get_global_id(0), r = get_global_id(1);
    x[x_off + r * cols + c] += bias[b_off + c];
}

/* y[i] += a[i]; global (n) */
__kernel void add(__global float *y, ulong y_off, __global const float *a, ulong a_off)
{
    const long i = get_global_id(0);
    y[y_off + i] += a[a_off + i];
}

/* x = act(x) in place; kind: pcv_activation (include/perceiver/perceiver.h), the formulas of the
 * CPU path (src/backend/cpu.c) in the same operation order, but for GELU_TANH (see there).
 * VW elements per work-item, so that erf/tanh/exp run as vector functions (PoCL calls a scalar
 * libm routine per element otherwise: 50x slower); global (ceil(n / VW)) */
inline floatV softplus_v(floatV v)
{
    return select(log1p(exp(v)), v, v > (floatV)20.0f);
}

inline floatV gelu_erf_v(floatV v)
{
    return PCV_GELU_ERF(v);
}

inline floatV act_v(floatV v, int kind)
{
    switch (kind) {
    case 0: return gelu_erf_v(v);                                                                 /* GELU */
    case 1: /* GELU_TANH: 0.5 v (1 + tanh(y)) = v / (1 + exp(-2y)), without the cancellation of 1 + tanh(y)
             * near -1 (OpenCL's tanh may be a few ulp off -1 there, which 0.5 v would amplify) */
        return v / (1.0f + exp(-2.0f * (0.79788456080286535588f * (v + 0.044715f * v * v * v))));
    case 2: return fmin(fmax(gelu_erf_v(v), (floatV)-10.0f), (floatV)10.0f);                   /* GELU_10 */
    case 3: return v / (1.0f + exp(-1.702f * v));                                                /* QUICK_GELU */
    case 4: return select((floatV)0.0f, v, v > (floatV)0.0f);                                    /* RELU */
    case 5: return select((floatV)0.0f, v * v, v > (floatV)0.0f);                                /* RELU2 */
    case 6: return fmin(fmax(v, (floatV)0.0f), (floatV)6.0f);                                    /* RELU6 */
    case 7: return select(0.01f * v, v, v > (floatV)0.0f);                                       /* LEAKY_RELU */
    case 8: return v / (1.0f + exp(-v));                                                         /* SILU */
    case 9: return v * tanh(softplus_v(v));                                                      /* MISH */
    case 10: return 1.0f / (1.0f + exp(-v));                                                     /* SIGMOID */
    case 11: return tanh(v);                                                                     /* TANH */
    case 13: return 0.5f * (1.0f + erf((v - 0.707107f) / 0.39894259f));                         /* LAPLACE */
    case 14: return v * fmin(fmax(v + 3.0f, (floatV)0.0f), (floatV)6.0f) / 6.0f;                 /* HARDSWISH */
    case 15: return sqrt(softplus_v(v));                                                         /* SQRT_SOFTPLUS */
    default: return v;                                                                           /* LINEAR */
    }
}

__kernel void activation(__global float *x, ulong x_off, long n, int kind)
{
    const long i = get_global_id(0) * VW;
    __global float *p = x + x_off + i;
    if (i + VW <= n) {
        vstoreV(act_v(vloadV(0, p), kind), 0, p);
    } else {
        float t[VW];
        for (int e = 0; e < VW; e++)
            t[e] = i + e < n ? p[e] : 0.0f;
        const floatV g = act_v(vloadV(0, t), kind);
        vstoreV(g, 0, t);
        for (int e = 0; i + e < n; e++)
            p[e] = t[e];
    }
}

/* The epilogue of a linear layer after its GEMM, in one pass over C [rows][cols] (the CPU path's
 * order: + bias[c], then GELU, then + res[r][c]; each when its flag is set); VW columns per
 * work-item; global (ceil(cols / VW), rows) */
__kernel void epilogue(__global float *c, ulong c_off, long cols, __global const float *bias, ulong b_off,
                       int has_bias, int gelu, __global const float *res, ulong r_off, int has_res)
{
    const long j = get_global_id(0) * VW, r = get_global_id(1);
    __global float *p = c + c_off + r * cols + j;
    __global const float *bp = bias + b_off + j, *rp = res + r_off + r * cols + j;
    if (j + VW <= cols) {
        floatV v = vloadV(0, p);
        if (has_bias)
            v += vloadV(0, bp);
        if (gelu)
            v = gelu_erf_v(v);
        if (has_res)
            v += vloadV(0, rp);
        vstoreV(v, 0, p);
    } else {
        float t[VW];
        for (int e = 0; e < VW; e++)
            t[e] = j + e < cols ? p[e] + (has_bias ? bp[e] : 0.0f) : 0.0f;
        floatV v = vloadV(0, t);
        if (gelu)
            v = gelu_erf_v(v);
        vstoreV(v, 0, t);
        for (int e = 0; j + e < cols; e++)
            p[e] = t[e] + (has_res ? rp[e] : 0.0f);
    }
}

/* out[r][c] = table[ids[r]][c] (+ pos[r % period][c]); global (cols, rows) */
__kernel void gather(__global const float *table, ulong t_off, __global const int *ids, ulong ids_off,
                     __global const float *pos, ulong p_off, long period, int has_pos, __global float *out,
                     ulong o_off, long cols)
{
    const long c = get_global_id(0), r = get_global_id(1);
    float v = table[t_off + (long)ids[ids_off + r] * cols + c];
    if (has_pos)
        v += pos[p_off + (r % period) * cols + c];
    out[o_off + r * cols + c] = v;
}

/* dst[i*n + j] = src[j]; global (n, times) */
__kernel void repeat(__global const float *src, ulong s_off, long n, __global float *dst, ulong d_off)
{
    const long j = get_global_id(0), i = get_global_id(1);
    dst[d_off + i * n + j] = src[s_off + j];
}

/* C = beta * C for the m x n matrices of a batch (a GEMM with k = 0); beta 0 writes zeros, as
 * BLAS does, so that garbage (NaN) in C does not survive. global (n, m, batch) */
__kernel void scale_matrix(__global float *c, ulong c_off, long ldc, long stride, float beta)
{
    const long j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    const ulong at = c_off + b * stride + i * ldc + j;
    c[at] = beta == 0.0f ? 0.0f : beta * c[at];
}

/* dst[b][j][i] = src[b][i][j]; global (cols, rows, batch) */
__kernel void transpose(__global const float *src, ulong s_off, long rows, long cols, __global float *dst,
                        ulong d_off)
{
    const long j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    dst[d_off + (b * cols + j) * rows + i] = src[s_off + (b * rows + i) * cols + j];
}

/* dst[r*dst_ld + j] = src[(r % period)*src_ld + j]; global (cols, rows) */
__kernel void copy2d(__global const float *src, ulong s_off, long src_ld, long period, __global float *dst,
                     ulong d_off, long dst_ld)
{
    const long j = get_global_id(0), r = get_global_id(1);
    dst[d_off + r * dst_ld + j] = src[s_off + (r % period) * src_ld + j];
}

/* src [batch][C][H][W] -> dst [batch][oh*ow][C*kh*kw]; global (C*kh*kw, oh*ow, batch) */
__kernel void im2col(__global const float *src, ulong s_off, long C, long H, long W, long kh, long kw,
                     long stride, long pad_top, long pad_left, long oh, long ow, __global float *dst, ulong d_off)
{
    const long col = get_global_id(0), p = get_global_id(1), b = get_global_id(2);
    const long ncol = C * kh * kw;
    const long j = col % kw, i = (col / kw) % kh, c = col / (kw * kh);
    const long y = p / ow, x = p % ow;
    const long sy = y * stride + i - pad_top, sx = x * stride + j - pad_left;
    const bool in = sy >= 0 && sy < H && sx >= 0 && sx < W;
    dst[d_off + (b * oh * ow + p) * ncol + col] = in ? src[s_off + ((b * C + c) * H + sy) * W + sx] : 0.0f;
}

/* x[r][c] = x[r][c] * scale[c] + shift[c], then max(x, 0) when relu; global (cols, rows) */
__kernel void channel_affine(__global float *x, ulong x_off, long cols, __global const float *scale, ulong sc_off,
                             __global const float *shift, ulong sh_off, int relu)
{
    const long c = get_global_id(0), r = get_global_id(1);
    const ulong at = x_off + r * cols + c;
    const float v = x[at] * scale[sc_off + c] + shift[sh_off + c];
    x[at] = relu && v < 0.0f ? 0.0f : v;
}

/* channels-last max pooling: src [batch][H][W][C] -> dst [batch][oh][ow][C] (padded cells are
 * ignored); global (C, oh*ow, batch) */
__kernel void maxpool(__global const float *src, ulong s_off, long H, long W, long C, long k, long stride,
                      long pad_top, long pad_left, long oh, long ow, __global float *dst, ulong d_off)
{
    const long c = get_global_id(0), p = get_global_id(1), b = get_global_id(2);
    const long y = p / ow, x = p % ow;
    float m = -INFINITY;
    for (long i = 0; i < k; i++) {
        const long sy = y * stride + i - pad_top;
        if (sy < 0 || sy >= H)
            continue;
        for (long j = 0; j < k; j++) {
            const long sx = x * stride + j - pad_left;
            if (sx < 0 || sx >= W)
                continue;
            const float v = src[s_off + ((b * H + sy) * W + sx) * C + c];
            m = v > m ? v : m;
        }
    }
    dst[d_off + (b * oh * ow + p) * C + c] = m;
}

/* Loop probe, run once when a device is opened: out[0] = n when the device runs a loop of n
 * iterations to the end. Some drivers end loops early (Mesa's llvmpipe stops every work-item
 * after 65535 loop iterations in total, silently); the count they reach is their limit. The
 * loads keep the compiler from replacing the loop by its closed form. */
__kernel void loop_probe(__global const int *ones, __global int *out, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += ones[i & 15];
    out[0] = c;
}
