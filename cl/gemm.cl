/* perceiver-cl's own GEMM for CPU OpenCL drivers (PoCL): C = alpha op(A) op(B) + beta C, then the
 * linear layer's epilogue (+ bias[j], GELU, + res[i][j]), row-major, batched by strides.
 *
 * Why: PoCL runs one work-item of a 1x1 work-group as one CPU thread's loop, so a work-item
 * written like a BLAS micro-kernel (a register tile of MR rows x NR = 2 GW columns: 2 MR vector
 * accumulators, one broadcast of A and two vector loads of B per k) compiles to the same FMA
 * loop a CPU BLAS runs. CLBlast's kernels, tuned for PoCL, reach 35-50 GFLOP/s on the models'
 * shapes on 2 zen3 cores; this one 110-180 (docs/opencl.md, `perceiver-cl bench-ops -d 0`).
 *
 * Two kernels:
 *   gemm_pack_b   op(B) [K][N] into panels of NR columns, Bp [batch][N/NR][K][NR] (zeros past
 *                 N), so that the micro-kernel reads B contiguously whatever its layout;
 *   gemm_tile     one MR x NR tile of C per work-item over the whole k range, reading A in
 *                 place (MR rows, or MR consecutive columns when A is transposed).
 * Build options: GW, the vector width (the device's native float width: 8 with AVX2, 16 with
 * AVX-512), and MR, the rows of a tile (6 for GW 8: 12 accumulators + 2 B vectors + 1 broadcast
 * fill AVX2's 16 registers; 12 for GW 16 and AVX-512's 32). Work-groups are 1 x 1 x 1.
 */
#ifndef MR
#define MR 6
#endif
#ifndef GW
#define GW 8
#endif
#define NR (2 * GW)   /* columns of a tile: two vectors */
#define floatG PCV_CAT(float, GW)
#define vloadG PCV_CAT(vload, GW)
#define vstoreG PCV_CAT(vstore, GW)
#define PACK_K 64     /* k rows a packing work-item copies */

/* Bp[b][jb][k][t] = op(B)[k][jb*NR + t] (0 past n); global (ceil(n/NR), ceil(k/PACK_K), batch) */
__kernel void gemm_pack_b(__global const float *B, ulong b_off, long ldb, long stride_b, int tb, long k, long n,
                          __global float *Bp)
{
    const long jb = get_global_id(0), k0 = get_global_id(1) * PACK_K, b = get_global_id(2);
    const long njb = (n + NR - 1) / NR, j0 = jb * NR;
    const long kn = min((long)PACK_K, k - k0);
    __global const float *src = B + b_off + b * stride_b;
    __global float *dst = Bp + ((b * njb + jb) * k + k0) * NR;
    if (!tb) { /* B [k][ldb]: a row of NR columns is contiguous */
        for (long kk = 0; kk < kn; kk++) {
            __global const float *s = src + (k0 + kk) * ldb + j0;
            if (j0 + NR <= n) {
                vstoreG(vloadG(0, s), 0, dst + kk * NR);
                vstoreG(vloadG(1, s), 1, dst + kk * NR);
            } else {
                for (int t = 0; t < NR; t++)
                    dst[kk * NR + t] = j0 + t < n ? s[t] : 0.0f;
            }
        }
    } else if (j0 + NR <= n) { /* B [n][ldb], used transposed: NR rows read side by side */
        __global const float *s = src + j0 * ldb + k0;
        for (long kk = 0; kk < kn; kk++) {
            float t[NR];
            _Pragma("unroll") for (int q = 0; q < NR; q++)
                t[q] = s[q * ldb + kk];
            vstoreG(vloadG(0, t), 0, dst + kk * NR);
            vstoreG(vloadG(1, t), 1, dst + kk * NR);
        }
    } else {
        for (long kk = 0; kk < kn; kk++)
            for (int t = 0; t < NR; t++)
                dst[kk * NR + t] = j0 + t < n ? src[(j0 + t) * ldb + k0 + kk] : 0.0f;
    }
}

/* One MR x NR tile of C. bfirst chooses which of the first two global dimensions walks the
 * column panels (consecutive work-items share the A rows and stream the panels: right when
 * the packed B is the smaller operand) and which walks the row tiles (they share one panel).
 * global: bfirst ? (ceil(n/NR), ceil(m/MR), batch) : (ceil(m/MR), ceil(n/NR), batch). */
__kernel void gemm_tile(__global const float *A, ulong a_off, long lda, long stride_a, int ta,
                        __global const float *Bp, long k, __global float *C, ulong c_off, long ldc, long stride_c,
                        long m, long n, float alpha, float beta, __global const float *bias, ulong bias_off,
                        int has_bias, int gelu, __global const float *res, ulong res_off, int has_res, int bfirst)
{
    const long it = get_global_id(bfirst ? 1 : 0), jb = get_global_id(bfirst ? 0 : 1), b = get_global_id(2);
    const long njb = (n + NR - 1) / NR, i0 = it * MR, j0 = jb * NR;
    __global const float *bp = Bp + (b * njb + jb) * k * NR;
    __global const float *a = A + a_off + b * stride_a;
    /* rows past m read row m-1 (their results are not stored) */
    long ar[MR];
    _Pragma("unroll") for (int r = 0; r < MR; r++)
        ar[r] = min(i0 + r, m - 1) * (ta ? 1 : lda);
    const long ak = ta ? lda : 1;
    floatG c0[MR], c1[MR];
    _Pragma("unroll") for (int r = 0; r < MR; r++)
        c0[r] = (floatG)0.0f, c1[r] = (floatG)0.0f;
    for (long kk = 0; kk < k; kk++) {
        const floatG b0 = vloadG(0, bp + kk * NR), b1 = vloadG(1, bp + kk * NR);
        __global const float *ap = a + kk * ak;
        _Pragma("unroll") for (int r = 0; r < MR; r++) {
            const floatG av = (floatG)ap[ar[r]];
            c0[r] = fma(av, b0, c0[r]);
            c1[r] = fma(av, b1, c1[r]);
        }
    }
    /* epilogue, in the CPU path's order: alpha AB + beta C, + bias, GELU, + res */
    const bool full = j0 + NR <= n;
    floatG bias0 = (floatG)0.0f, bias1 = (floatG)0.0f;
    if (has_bias) {
        __global const float *bq = bias + bias_off + j0;
        if (full) {
            bias0 = vloadG(0, bq), bias1 = vloadG(1, bq);
        } else {
            float t[NR];
            for (int q = 0; q < NR; q++)
                t[q] = j0 + q < n ? bq[q] : 0.0f;
            bias0 = vloadG(0, t), bias1 = vloadG(1, t);
        }
    }
    __global float *cb = C + c_off + b * stride_c;
    _Pragma("unroll") for (int r = 0; r < MR; r++) {
        const long i = i0 + r;
        if (i >= m)
            break;
        __global float *cr = cb + i * ldc + j0;
        __global const float *rr = res + res_off + i * ldc + j0;
        floatG o0 = alpha * c0[r], o1 = alpha * c1[r];
        if (full) {
            if (beta != 0.0f)
                o0 += beta * vloadG(0, cr), o1 += beta * vloadG(1, cr);
            o0 += bias0, o1 += bias1;
            if (gelu)
                o0 = PCV_GELU_ERF(o0), o1 = PCV_GELU_ERF(o1);
            if (has_res)
                o0 += vloadG(0, rr), o1 += vloadG(1, rr);
            vstoreG(o0, 0, cr);
            vstoreG(o1, 1, cr);
        } else {
            float t[NR];
            for (int q = 0; q < NR; q++)
                t[q] = j0 + q < n && beta != 0.0f ? beta * cr[q] : 0.0f;
            o0 += vloadG(0, t) + bias0, o1 += vloadG(1, t) + bias1;
            if (gelu)
                o0 = PCV_GELU_ERF(o0), o1 = PCV_GELU_ERF(o1);
            vstoreG(o0, 0, t);
            vstoreG(o1, 1, t);
            for (int q = 0; j0 + q < n; q++)
                cr[q] = t[q] + (has_res ? rr[q] : 0.0f);
        }
    }
}
