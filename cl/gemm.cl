/* perceiver-cl's own GEMM for CPU OpenCL drivers (PoCL): C = alpha op(A) op(B) + beta C, then the
 * linear layer's epilogue (+ bias[j], GELU, + res[i][j]), row-major, batched by strides.
 *
 * Why: PoCL runs one work-item of a 1x1 work-group as one CPU thread's loop, so a work-item
 * written like a BLAS micro-kernel (a register tile of MR rows x 16 columns: 2 x MR float8
 * accumulators, one broadcast of A and two vector loads of B per k) compiles to the same FMA
 * loop a CPU BLAS runs. CLBlast's kernels, tuned for PoCL, reach 40-50 GFLOP/s on the models'
 * shapes on 2 zen3 cores; this one 150-190 (docs/opencl.md, `perceiver-cl bench-ops -d 0`).
 *
 * Two kernels:
 *   gemm_pack_b   op(B) [K][N] into panels of 16 columns, Bp [batch][N/16][K][16] (zeros past N),
 *                 so that the micro-kernel reads B contiguously whatever its layout;
 *   gemm_tile     one MR x 16 tile of C per work-item over the whole k range, reading A in
 *                 place (MR rows, or MR consecutive columns when A is transposed).
 * Build options: MR (rows of a tile, default 6: 12 accumulators + 2 B vectors + 1 broadcast
 * fill the 16 vector registers of AVX2). Work-groups are 1 x 1 x 1 (the host passes them).
 */
#ifndef MR
#define MR 6
#endif
#define NR 16   /* columns of a tile: two float8 */
#define PACK_K 64 /* k rows a packing work-item copies */

/* Bp[b][jb][k][0..15] = op(B)[k][jb*16 + t] (0 past n); global (ceil(n/16), ceil(k/PACK_K), batch) */
__kernel void gemm_pack_b(__global const float *B, ulong b_off, long ldb, long stride_b, int tb, long k, long n,
                          __global float *Bp)
{
    const long jb = get_global_id(0), k0 = get_global_id(1) * PACK_K, b = get_global_id(2);
    const long njb = (n + NR - 1) / NR, j0 = jb * NR;
    const long kn = min((long)PACK_K, k - k0);
    __global const float *src = B + b_off + b * stride_b;
    __global float *dst = Bp + ((b * njb + jb) * k + k0) * NR;
    if (!tb) { /* B [k][ldb]: a row of 16 columns is contiguous */
        for (long kk = 0; kk < kn; kk++) {
            __global const float *s = src + (k0 + kk) * ldb + j0;
            if (j0 + NR <= n)
                vstore16(vload16(0, s), 0, dst + kk * NR);
            else
                for (int t = 0; t < NR; t++)
                    dst[kk * NR + t] = j0 + t < n ? s[t] : 0.0f;
        }
    } else if (j0 + NR <= n) { /* B [n][ldb], used transposed: 16 rows read side by side */
        __global const float *s = src + j0 * ldb + k0;
        for (long kk = 0; kk < kn; kk++) {
            float16 v;
            v.s0 = s[kk], v.s1 = s[ldb + kk], v.s2 = s[2 * ldb + kk], v.s3 = s[3 * ldb + kk];
            v.s4 = s[4 * ldb + kk], v.s5 = s[5 * ldb + kk], v.s6 = s[6 * ldb + kk], v.s7 = s[7 * ldb + kk];
            v.s8 = s[8 * ldb + kk], v.s9 = s[9 * ldb + kk], v.sa = s[10 * ldb + kk], v.sb = s[11 * ldb + kk];
            v.sc = s[12 * ldb + kk], v.sd = s[13 * ldb + kk], v.se = s[14 * ldb + kk], v.sf = s[15 * ldb + kk];
            vstore16(v, 0, dst + kk * NR);
        }
    } else {
        for (long kk = 0; kk < kn; kk++)
            for (int t = 0; t < NR; t++)
                dst[kk * NR + t] = j0 + t < n ? src[(j0 + t) * ldb + k0 + kk] : 0.0f;
    }
}

/* One MR x 16 tile of C. bfirst chooses which of the first two global dimensions walks the
 * column panels (consecutive work-items share the A rows and stream the panels: right when
 * the packed B is the smaller operand) and which walks the row tiles (they share one panel).
 * global: bfirst ? (ceil(n/16), ceil(m/MR), batch) : (ceil(m/MR), ceil(n/16), batch). */
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
    float8 c0[MR], c1[MR];
    _Pragma("unroll") for (int r = 0; r < MR; r++)
        c0[r] = (float8)0.0f, c1[r] = (float8)0.0f;
    for (long kk = 0; kk < k; kk++) {
        const float8 b0 = vload8(0, bp + kk * NR), b1 = vload8(1, bp + kk * NR);
        __global const float *ap = a + kk * ak;
        _Pragma("unroll") for (int r = 0; r < MR; r++) {
            const float8 av = (float8)ap[ar[r]];
            c0[r] = fma(av, b0, c0[r]);
            c1[r] = fma(av, b1, c1[r]);
        }
    }
    /* epilogue, in the CPU path's order: alpha AB + beta C, + bias, GELU, + res */
    const bool full = j0 + NR <= n;
    float8 bias0 = (float8)0.0f, bias1 = (float8)0.0f;
    if (has_bias) {
        __global const float *bq = bias + bias_off + j0;
        if (full) {
            bias0 = vload8(0, bq), bias1 = vload8(1, bq);
        } else {
            float t[NR];
            for (int q = 0; q < NR; q++)
                t[q] = j0 + q < n ? bq[q] : 0.0f;
            bias0 = vload8(0, t), bias1 = vload8(1, t);
        }
    }
    __global float *cb = C + c_off + b * stride_c;
    _Pragma("unroll") for (int r = 0; r < MR; r++) {
        const long i = i0 + r;
        if (i >= m)
            break;
        __global float *cr = cb + i * ldc + j0;
        __global const float *rr = res + res_off + i * ldc + j0;
        float8 o0 = alpha * c0[r], o1 = alpha * c1[r];
        if (full) {
            if (beta != 0.0f)
                o0 += beta * vload8(0, cr), o1 += beta * vload8(1, cr);
            o0 += bias0, o1 += bias1;
            if (gelu)
                o0 = PCV_GELU_ERF(o0), o1 = PCV_GELU_ERF(o1);
            if (has_res)
                o0 += vload8(0, rr), o1 += vload8(1, rr);
            vstore8(o0, 0, cr);
            vstore8(o1, 1, cr);
        } else {
            float t[NR];
            for (int q = 0; q < NR; q++)
                t[q] = j0 + q < n && beta != 0.0f ? beta * cr[q] : 0.0f;
            o0 += vload8(0, t) + bias0, o1 += vload8(1, t) + bias1;
            if (gelu)
                o0 = PCV_GELU_ERF(o0), o1 = PCV_GELU_ERF(o1);
            vstore8(o0, 0, t);
            vstore8(o1, 1, t);
            for (int q = 0; j0 + q < n; q++)
                cr[q] = t[q] + (has_res ? rr[q] : 0.0f);
        }
    }
}
