/* Vector kernels of the CPU path (cpu_vec.c): the row operations that libm's scalar calls made slow
 * (erf, exp) and the reductions that plain loops do not vectorize without -ffast-math (max, sums).
 * Each is compiled for several instruction sets and picked at load time by the CPU's features. */
#ifndef PCV_BACKEND_CPU_VEC_H
#define PCV_BACKEND_CPU_VEC_H

#include <stdbool.h>
#include <stdint.h>

/* v = 0.5 v (1 + erf(v / sqrt 2)) (transformers' exact GELU) for every element of a rows x cols
 * array, in place; when bias is not NULL, v = x[r][c] + bias[c] first (the bias add of the linear
 * layer before it, in the same pass). */
void pcv_vec_bias_gelu(float *x, int64_t rows, int64_t cols, const float *bias);

/* The epilogue of a linear layer on a rows x cols block of C (row stride ldc), each part optional:
 * C += bias (per column); C = gelu(C) when gelu; C += res (row stride ldr). */
void pcv_vec_epilogue(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *bias, bool gelu,
                      const float *res, int64_t ldr);

/* Softmax of one row of n scores in place. Before it, each score is divided by div (when div != 1),
 * then add[j] is added (when add is not NULL), then (1 - keep[j]) * -FLT_MAX (when keep is not
 * NULL: transformers' additive attention mask). */
void pcv_vec_softmax_row(float *x, int64_t n, float div, const float *add, const float *keep);

/* One block of keys of a streamed ("online") softmax row: each of the n scores is divided by div
 * (when div != 1) and masked by keep as in pcv_vec_softmax_row; then with m the larger of *max and
 * the block's largest score, x[j] = exp(x[j] - m) and *max = m. Returns the sum of the new x[j].
 * The caller rescales what it accumulated under the old maximum by exp(old - m). */
double pcv_vec_softmax_block(float *x, int64_t n, float div, const float *keep, float *max);

/* x[j] *= s for n floats. */
void pcv_vec_scale(float *x, int64_t n, float s);

/* One LayerNorm row: y = (x - mean) * rstd * gamma + beta (biased variance, two passes). */
void pcv_vec_layernorm_row(const float *x, float *y, int64_t n, const float *gamma, const float *beta, float eps);

#endif
