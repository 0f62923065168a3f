/* Fused streaming-softmax attention: O = softmax(scores(Q K^T, masks)) V without a score matrix.
 *
 * attn_kt first writes K transposed per head (kt[b][h][c][j], rows padded to a multiple of VW
 * keys with zeros), so that the scores of VW consecutive keys are one vector:
 * s[j0..j0+VW) = sum_c q[c] * kt[c][j0..j0+VW). No horizontal reductions, and the exponentials
 * of a tile are one vector exp.
 *
 * attn_fused, global size (ceil(dv / DVT), ceil(nq / QB), batch * heads * nsplit): a work-item
 * owns QB query rows x DVT output columns of one (batch, head) and one key range (a "split").
 * It walks its keys in tiles of VW: scores of the tile for its QB rows, then the online softmax
 * update (running row maximum m and sum l; when the maximum grows from m to m', the sum and the
 * accumulator are rescaled by exp(m - m')), then acc += p * V for the tile's keys. Beyond the
 * inputs it needs the transposed K (the size of K) and nothing that grows with nq * nk, so the
 * 50k-180k-long cross-attentions never build an nq x nk matrix.
 *
 * Large heads: dqk is a run-time loop, so any dqk works; dv is split into chunks of DVT = NV * VW
 * columns, one per work-item along dimension 0 (each chunk recomputes the scores: the price of
 * keeping the accumulator in registers). Few queries and many keys (the encoder's
 * cross-attention) are split over work-items (nsplit > 1): each split writes its partial
 * (m, l, unnormalized accumulator) to `part`, and attn_combine merges them.
 *
 * Build options: VW (common.cl; also the key tile), QB rows per work-item, NV output vectors per
 * work-item. Masks follow backend.h exactly:
 *   mode 0 (Hugging Face): s = qk / scale + (1 - kmask) * -FLT_MAX. A masked key's score rounds
 *       to -FLT_MAX, so a row whose keys are all masked gets uniform weights (as in PyTorch).
 *   mode 1 (Haiku): s = qk * inv_scale where qmask * kmask != 0, else the key is dropped (the
 *       reference's -1e30 gives it a weight of exactly 0 whenever any key is kept); a row with no
 *       kept key ends with l = 0 and gets an output of exactly 0.
 */
#ifndef QB
#define QB 4
#endif
#ifndef NV
#define NV 4
#endif
#define DVT (NV * VW)

/* kt[(bh * dqk + c) * nk_pad + j] = k[b][j][h * dqk + c], 0 for nk <= j < nk_pad;
 * global (nk_pad, dqk, batch * heads) */
__kernel void attn_kt(__global const float *k, ulong k_off, long k_ld, __global float *kt, int heads, int nk,
                      int nk_pad, int dqk)
{
    const int j = get_global_id(0), c = get_global_id(1), bh = get_global_id(2);
    const int h = bh % heads, b = bh / heads;
    kt[((long)bh * dqk + c) * nk_pad + j] = j < nk ? k[k_off + ((long)b * nk + j) * k_ld + (long)h * dqk + c] : 0.0f;
}

/* n < VW floats into a vector (zeros after); never reads past p[n - 1] */
inline floatV load_partial(__global const float *p, int n)
{
    float t[VW];
    for (int e = 0; e < VW; e++)
        t[e] = e < n ? p[e] : 0.0f;
    return vloadV(0, t);
}

inline void store_partial(floatV v, __global float *p, int n)
{
    float t[VW];
    vstoreV(v, 0, t);
    for (int e = 0; e < n; e++)
        p[e] = t[e];
}

inline floatV lane_index(void)
{
#if VW == 16
    return (floatV)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#elif VW == 8
    return (floatV)(0, 1, 2, 3, 4, 5, 6, 7);
#else
    return (floatV)(0, 1, 2, 3);
#endif
}

__kernel void attn_fused(__global const float *q, ulong q_off, long q_ld, __global const float *kt, int nk_pad,
                         __global const float *v, ulong v_off, long v_ld, __global float *o, ulong o_off, long o_ld,
                         __global const float *kmask, ulong km_off, int has_kmask, __global const float *qmask,
                         ulong qm_off, int has_qmask, __global float *part, int nsplit, int split_len, int heads,
                         int nq, int nk, int dqk, int dv, int mode, int scan, float scale, float inv_scale)
{
    const int chunk = get_global_id(0);
    const int i0 = get_global_id(1) * QB;
    const int z = get_global_id(2);
    const int split = z % nsplit, bh = z / nsplit;
    const int h = bh % heads, b = bh / heads;
    const int c0 = chunk * DVT;
    if (i0 >= nq || c0 >= dv)
        return;
    const int ncols = min(DVT, dv - c0);
    const int kbeg = split * split_len, kend = min(nk, kbeg + split_len);

    __global const float *qr[QB];
    float qkeep[QB];
#pragma unroll
    for (int r = 0; r < QB; r++) {
        const int i = min(i0 + r, nq - 1); /* rows past the end repeat the last row, unstored */
        qr[r] = q + q_off + ((long)b * nq + i) * q_ld + (long)h * dqk;
        qkeep[r] = has_qmask ? qmask[qm_off + (long)b * nq + i] : 1.0f;
    }
    __global const float *ktb = kt + (long)bh * dqk * nk_pad;
    __global const float *vb = v + v_off + (long)b * nk * v_ld + (long)h * dv + c0;
    __global const float *km = kmask + km_off + (long)b * nk;
    const floatV lanes = lane_index();

    float m[QB], l[QB];
    floatV acc[QB][NV];
#pragma unroll
    for (int r = 0; r < QB; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int n = 0; n < NV; n++)
            acc[r][n] = (floatV)0.0f;
    }

    /* Tiles whose keys are all masked can be skipped when that changes nothing: always in Haiku
     * mode (masked keys are dropped), and in Hugging Face mode when the batch entry has at
     * least one unmasked key (a masked score then rounds to -FLT_MAX, whose weight exp(-FLT_MAX
     * - max) is exactly 0; only a row with no unmasked key at all weighs masked keys, uniformly).
     * Padded inputs (a short text padded to 2048 bytes) then cost what their real length costs.
     * scan = 0 (devices that end loops early: the scan could take all of the key range) keeps
     * every tile in Hugging Face mode, with the same result. */
    bool skip_masked = has_kmask && mode == 1;
    if (has_kmask && mode == 0 && scan) {
        int j = 0;
        for (; j + VW <= nk && !skip_masked; j += VW)
            skip_masked = any(isnotequal(vloadV(0, km + j), (floatV)0.0f));
        for (; j < nk && !skip_masked; j++)
            skip_masked = km[j] != 0.0f;
    }

    for (int j0 = kbeg; j0 < kend; j0 += VW) {
        const int kt_n = min(VW, kend - j0); /* keys in this tile */
        const floatV kmv = !has_kmask ? (floatV)1.0f
                           : kt_n == VW ? vloadV(0, km + j0)
                                        : load_partial(km + j0, kt_n);
        const intV outside = isgreaterequal(lanes, (floatV)(float)kt_n);
        if (skip_masked && !any(isnotequal(kmv, (floatV)0.0f) & ~outside))
            continue;

        /* scores of VW keys for QB rows */
        floatV s[QB];
#pragma unroll
        for (int r = 0; r < QB; r++)
            s[r] = (floatV)0.0f;
        for (int c = 0; c < dqk; c++) {
            const floatV kv = vloadV(0, ktb + (long)c * nk_pad + j0);
#pragma unroll
            for (int r = 0; r < QB; r++)
                s[r] = fma((floatV)(qr[r][c]), kv, s[r]);
        }

        /* online softmax: scores become weights relative to the new running maximum */
        float p[QB][VW];
#pragma unroll
        for (int r = 0; r < QB; r++) {
            floatV t;
            if (mode == 0) {
                t = s[r] / scale + ((floatV)1.0f - kmv) * -FLT_MAX;
            } else {
                intV keep = isnotequal(kmv, (floatV)0.0f);
                if (qkeep[r] == 0.0f)
                    keep = (intV)0;
                t = select((floatV)(-INFINITY), s[r] * inv_scale, keep);
            }
            t = select(t, (floatV)(-INFINITY), outside);
            const float mnew = fmax(m[r], hmax(t));
            if (mnew == -INFINITY) { /* Haiku: nothing kept so far */
                vstoreV((floatV)0.0f, 0, p[r]);
                continue;
            }
            const float corr = exp(m[r] - mnew); /* 0 while m is -inf */
            const floatV e = exp(t - mnew);
            l[r] = l[r] * corr + hsum(e);
#pragma unroll
            for (int n = 0; n < NV; n++)
                acc[r][n] *= corr;
            m[r] = mnew;
            vstoreV(e, 0, p[r]);
        }

        /* acc += p * V over the tile's keys: the weights of a key are broadcast once, then each
         * vector of V is loaded and used QB times (few live registers: no spills on AVX-512) */
        if (ncols == DVT) {
            for (int jj = 0; jj < kt_n; jj++) {
                __global const float *vr = vb + (long)(j0 + jj) * v_ld;
                floatV pj[QB];
#pragma unroll
                for (int r = 0; r < QB; r++)
                    pj[r] = (floatV)(p[r][jj]);
#pragma unroll
                for (int n = 0; n < NV; n++) {
                    const floatV vv = vloadV(0, vr + n * VW);
#pragma unroll
                    for (int r = 0; r < QB; r++)
                        acc[r][n] = fma(pj[r], vv, acc[r][n]);
                }
            }
        } else { /* the last, partial chunk of dv columns */
            for (int jj = 0; jj < kt_n; jj++) {
                __global const float *vr = vb + (long)(j0 + jj) * v_ld;
                floatV pj[QB];
#pragma unroll
                for (int r = 0; r < QB; r++)
                    pj[r] = (floatV)(p[r][jj]);
#pragma unroll
                for (int n = 0; n < NV; n++) {
                    const int c = n * VW;
                    const floatV vv = c + VW <= ncols ? vloadV(0, vr + c)
                                      : c < ncols     ? load_partial(vr + c, ncols - c)
                                                      : (floatV)0.0f;
#pragma unroll
                    for (int r = 0; r < QB; r++)
                        acc[r][n] = fma(pj[r], vv, acc[r][n]);
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < QB; r++) {
        const int i = i0 + r;
        if (i >= nq)
            break;
        if (nsplit == 1) {
            const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f; /* l = 0: Haiku's empty row -> 0 */
            __global float *orow = o + o_off + ((long)b * nq + i) * o_ld + (long)h * dv + c0;
#pragma unroll
            for (int n = 0; n < NV; n++) {
                const int c = n * VW;
                if (c + VW <= ncols)
                    vstoreV(acc[r][n] * inv, 0, orow + c);
                else if (c < ncols)
                    store_partial(acc[r][n] * inv, orow + c, ncols - c);
            }
        } else {
            /* partial result of this split: m, l, then the unnormalized accumulator */
            __global float *prow = part + (((long)bh * nsplit + split) * nq + i) * (long)(dv + 2);
            if (chunk == 0) {
                prow[0] = m[r];
                prow[1] = l[r];
            }
#pragma unroll
            for (int n = 0; n < NV; n++) {
                const int c = n * VW;
                if (c + VW <= ncols)
                    vstoreV(acc[r][n], 0, prow + 2 + c0 + c);
                else if (c < ncols)
                    store_partial(acc[r][n], prow + 2 + c0 + c, ncols - c);
            }
        }
    }
}

/* Merges the nsplit partial results of each query row: with M the largest split maximum,
 * O = sum_s acc_s exp(m_s - M) / sum_s l_s exp(m_s - M). A split that kept no key has
 * m = -inf and contributes 0; a row with no kept key at all (Haiku) gets 0.
 * global (dv, nq, batch * heads) */
__kernel void attn_combine(__global const float *part, int nsplit, int nq, int dv, int heads, __global float *o,
                           ulong o_off, long o_ld)
{
    const int c = get_global_id(0), i = get_global_id(1), bh = get_global_id(2);
    const int h = bh % heads, b = bh / heads;
    const long row = dv + 2, sstride = (long)nq * row;
    __global const float *p0 = part + ((long)bh * nsplit * nq + i) * row;
    float mx = -INFINITY;
    for (int s = 0; s < nsplit; s++)
        mx = fmax(mx, p0[s * sstride]);
    float lsum = 0.0f, a = 0.0f;
    if (mx != -INFINITY)
        for (int s = 0; s < nsplit; s++) {
            const float w = exp(p0[s * sstride] - mx);
            lsum += p0[s * sstride + 1] * w;
            a += p0[s * sstride + 2 + c] * w;
        }
    o[o_off + ((long)b * nq + i) * o_ld + (long)h * dv + c] = lsum > 0.0f ? a / lsum : 0.0f;
}
