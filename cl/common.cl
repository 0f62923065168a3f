/* Shared prelude: the host puts it in front of every other kernel file of cl/ when it builds a program.
 *
 * Build options set by the host (src/backend_opencl.c):
 *   VW       float vector width of the explicit vector code: 4, 8 or 16. CPU OpenCL drivers
 *            (PoCL) vectorize poorly across work-items, so their kernels work on explicit
 *            float16 vectors (one AVX-512 register); GPUs use float4.
 *   ROW_LS   work-items per row in the row kernels (layernorm, softmax): 1 on CPUs, a power of
 *            two on GPUs (the reduction goes through local memory).
 *   PCV_FP64 1 when the device has cl_khr_fp64: row reductions accumulate in double, as the
 *            CPU reference path does; otherwise float with a shifted two-pass formula.
 *
 * No -cl-fast-relaxed-math: the attention kernels rely on -INFINITY and on exact IEEE
 * comparisons for masked keys, and results are compared with the CPU path.
 */
#ifndef VW
#define VW 4
#endif
#ifndef ROW_LS
#define ROW_LS 1
#endif

#define PCV_CAT_(a, b) a##b
#define PCV_CAT(a, b) PCV_CAT_(a, b)
#define floatV PCV_CAT(float, VW)
#define vloadV PCV_CAT(vload, VW)
#define vstoreV PCV_CAT(vstore, VW)
#define intV PCV_CAT(int, VW)

#if PCV_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
#define accV PCV_CAT(double, VW)
#define convert_accV PCV_CAT(convert_double, VW)
#else
typedef float acc_t;
#define accV floatV
#define convert_accV(x) (x)
#endif

/* GELU with erf, for float or any float vector (the CPU path's formula) */
#define PCV_GELU_ERF(v) (0.5f * (v) * (1.0f + erf((v) * 0.70710678118654752440f)))

/* Horizontal sum of a vector. */
inline float hsum(floatV v)
{
#if VW == 16
    float8 a = v.lo + v.hi;
    float4 b = a.lo + a.hi;
#elif VW == 8
    float4 b = v.lo + v.hi;
#else
    float4 b = v;
#endif
    float2 c = b.lo + b.hi;
    return c.x + c.y;
}

inline acc_t hsum_acc(accV v)
{
    acc_t s = 0;
#if VW == 16
    s = v.s0 + v.s1 + v.s2 + v.s3 + v.s4 + v.s5 + v.s6 + v.s7 + v.s8 + v.s9 + v.sa + v.sb + v.sc + v.sd + v.se +
        v.sf;
#elif VW == 8
    s = v.s0 + v.s1 + v.s2 + v.s3 + v.s4 + v.s5 + v.s6 + v.s7;
#else
    s = v.s0 + v.s1 + v.s2 + v.s3;
#endif
    return s;
}

inline float hmax(floatV v)
{
#if VW == 16
    float8 a = fmax(v.lo, v.hi);
    float4 b = fmax(a.lo, a.hi);
#elif VW == 8
    float4 b = fmax(v.lo, v.hi);
#else
    float4 b = v;
#endif
    float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

/* Sum and max over the ROW_LS work-items of a work-group (all of them must call it). */
inline acc_t group_sum(acc_t v, __local acc_t *scratch)
{
#if ROW_LS == 1
    return v;
#else
    const int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = ROW_LS / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    acc_t r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
#endif
}

inline float group_max(float v, __local float *scratch)
{
#if ROW_LS == 1
    return v;
#else
    const int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = ROW_LS / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
#endif
}
