/* Row kernels: LayerNorm, softmax, and the masked/scaled softmax of the GEMM attention path.
 *
 * One work-group of ROW_LS work-items per row (global (ROW_LS, rows), local (ROW_LS, 1)). Each
 * work-item walks the row in float vectors of VW lanes (vector v at columns [v*VW, v*VW + VW)),
 * then a scalar tail; group_sum/group_max combine the work-items. On CPUs ROW_LS is 1 and the
 * loops are plain AVX-512 code.
 * Reductions accumulate in acc_t (double where the device has it, like the CPU path).
 */

#define VEC_LOOP(v) for (long v = get_local_id(0); v < nvec; v += ROW_LS)
#define TAIL_LOOP(c) for (long c = nvec * VW + get_local_id(0); c < cols; c += ROW_LS)

/* y[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta (biased variance). y may alias x. */
__kernel void layernorm(__global const float *x, ulong x_off, __global float *y, ulong y_off, long cols,
                        __global const float *gamma, ulong g_off, __global const float *beta, ulong b_off,
                        float eps)
{
    __local acc_t red[ROW_LS];
    const long r = get_global_id(1), nvec = cols / VW;
    __global const float *xr = x + x_off + r * cols;
    __global float *yr = y + y_off + r * cols;
    __global const float *g = gamma + g_off, *b = beta + b_off;

    /* mean, summed relative to the row's first value: a large common offset (activations of
     * a residual stream) then costs no precision even where acc_t is float */
    const acc_t shift = xr[0];
    accV sv = 0;
    acc_t s = 0;
    VEC_LOOP(v) sv += convert_accV(vloadV(v, xr)) - shift;
    TAIL_LOOP(c) s += (acc_t)xr[c] - shift;
    const acc_t mean = shift + group_sum(s + hsum_acc(sv), red) / (acc_t)cols;

    /* biased variance, second pass */
    accV qv = 0;
    acc_t q = 0;
    VEC_LOOP(v)
    {
        accV d = convert_accV(vloadV(v, xr)) - mean;
        qv += d * d;
    }
    TAIL_LOOP(c)
    {
        acc_t d = (acc_t)xr[c] - mean;
        q += d * d;
    }
    const acc_t var = group_sum(q + hsum_acc(qv), red) / (acc_t)cols;
    const float rstd = (float)((acc_t)1 / sqrt(var + (acc_t)eps));
    const float fmean = (float)mean;

    VEC_LOOP(v) vstoreV((vloadV(v, xr) - fmean) * rstd * vloadV(v, g) + vloadV(v, b), v, yr);
    TAIL_LOOP(c) yr[c] = (xr[c] - fmean) * rstd * g[c] + b[c];
}

/* In place softmax of each row of x[rows][cols] after adding mask[cols] when has_mask. */
__kernel void softmax(__global float *x, ulong x_off, long cols, __global const float *mask, ulong m_off,
                      int has_mask)
{
    __local acc_t red[ROW_LS];
    __local float redf[ROW_LS];
    const long r = get_global_id(1), nvec = cols / VW;
    __global float *xr = x + x_off + r * cols;
    __global const float *mk = mask + m_off;

    floatV mv = (floatV)(-INFINITY);
    float m = -INFINITY;
    VEC_LOOP(v) mv = fmax(mv, has_mask ? vloadV(v, xr) + vloadV(v, mk) : vloadV(v, xr));
    TAIL_LOOP(c) m = fmax(m, has_mask ? xr[c] + mk[c] : xr[c]);
    const float mx = group_max(fmax(m, hmax(mv)), redf);

    accV sv = 0;
    acc_t s = 0;
    VEC_LOOP(v)
    {
        floatV e = exp((has_mask ? vloadV(v, xr) + vloadV(v, mk) : vloadV(v, xr)) - mx);
        vstoreV(e, v, xr);
        sv += convert_accV(e);
    }
    TAIL_LOOP(c)
    {
        float e = exp((has_mask ? xr[c] + mk[c] : xr[c]) - mx);
        xr[c] = e;
        s += e;
    }
    const float inv = (float)((acc_t)1 / group_sum(s + hsum_acc(sv), red));
    VEC_LOOP(v) vstoreV(vloadV(v, xr) * inv, v, xr);
    TAIL_LOOP(c) xr[c] *= inv;
}

/* Scores -> attention weights for the GEMM attention path, for one batch entry:
 * s is [heads][nq][nk] = Q K^T (unscaled), one row per (head, query). The two modes of
 * backend.h:
 *   mode 0 (Hugging Face): t = s / scale + (1 - kmask) * -FLT_MAX, softmax (an all-masked row
 *                          gets uniform weights, as in PyTorch)
 *   mode 1 (Haiku):        t = keep ? s * inv_scale : -1e30 with keep = qmask && kmask; a row
 *                          with no kept key becomes 0, so that P V gives an output of 0.
 * global (ROW_LS, heads * nq) */
__kernel void attn_softmax(__global float *s, ulong s_off, long cols, long nq, int mode, float scale,
                           float inv_scale, __global const float *kmask, ulong km_off, int has_kmask,
                           __global const float *qmask, ulong qm_off, int has_qmask)
{
    __local acc_t red[ROW_LS];
    __local float redf[ROW_LS];
    const long r = get_global_id(1), nvec = cols / VW;
    __global float *xr = s + s_off + r * cols;
    __global const float *km = kmask + km_off;
    const float qkeep = has_qmask ? qmask[qm_off + r % nq] : 1.0f;

    /* pass 1: transform in place, row max, and (Haiku) whether any key is kept */
    floatV mv = (floatV)(-INFINITY);
    float m = -INFINITY, kept = 0.0f;
    if (mode == 0) {
        VEC_LOOP(v)
        {
            floatV t = vloadV(v, xr) / scale;
            if (has_kmask)
                t += ((floatV)1.0f - vloadV(v, km)) * -FLT_MAX;
            vstoreV(t, v, xr);
            mv = fmax(mv, t);
        }
        TAIL_LOOP(c)
        {
            float t = xr[c] / scale;
            if (has_kmask)
                t += (1.0f - km[c]) * -FLT_MAX;
            xr[c] = t;
            m = fmax(m, t);
        }
    } else {
        VEC_LOOP(v)
        {
            intV keep = has_kmask ? isnotequal(vloadV(v, km), (floatV)0.0f) : (intV)(-1);
            if (qkeep == 0.0f)
                keep = (intV)0;
            const floatV t = select((floatV)(-1e30f), vloadV(v, xr) * inv_scale, keep);
            vstoreV(t, v, xr);
            mv = fmax(mv, t);
            kept = fmax(kept, hmax(select((floatV)0.0f, (floatV)1.0f, keep)));
        }
        TAIL_LOOP(c)
        {
            const bool keep = qkeep != 0.0f && (!has_kmask || km[c] != 0.0f);
            const float t = keep ? xr[c] * inv_scale : -1e30f;
            xr[c] = t;
            m = fmax(m, t);
            kept = keep ? 1.0f : kept;
        }
        kept = group_max(kept, redf);
        if (kept == 0.0f) { /* no valid key: weights 0, output 0 */
            VEC_LOOP(v) vstoreV((floatV)0.0f, v, xr);
            TAIL_LOOP(c) xr[c] = 0.0f;
            return;
        }
    }
    const float mx = group_max(fmax(m, hmax(mv)), redf);

    accV sv = 0;
    acc_t sum = 0;
    VEC_LOOP(v)
    {
        floatV e = exp(vloadV(v, xr) - mx);
        vstoreV(e, v, xr);
        sv += convert_accV(e);
    }
    TAIL_LOOP(c)
    {
        float e = exp(xr[c] - mx);
        xr[c] = e;
        sum += e;
    }
    const float inv = (float)((acc_t)1 / group_sum(sum + hsum_acc(sv), red));
    VEC_LOOP(v) vstoreV(vloadV(v, xr) * inv, v, xr);
    TAIL_LOOP(c) xr[c] *= inv;
}
