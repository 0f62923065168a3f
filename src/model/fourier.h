/* Input-independent position features: linspace grids and Fourier features, computed on the
 * host in float32 the way torch (transformers) or JAX (DeepMind) computes them
 * (docs/architecture.md, "Position features"). */
#ifndef PCV_FOURIER_H
#define PCV_FOURIER_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*pcv_linspace_fn)(float a, float b, int64_t n, float *out);

/* torch.linspace(a, b, n) in float32 as torch's CPU kernel computes it: first half
 * fma(step, i, a), second half fma(-step, n-1-i, b), step = (b-a)/(n-1). */
void pcv_linspace_torch(float a, float b, int64_t n, float *out);
/* jnp.linspace(a, b, n) in float32 as DeepMind's JAX ran it (un-jitted, op by op):
 * t = i/(n-1), a*(1-t) + b*t, every operation rounded on its own, last element b. */
void pcv_linspace_jax(float a, float b, int64_t n, float *out);

/* Number of channels of generate_fourier_features for ndims dimensions and num_bands bands. */
int64_t pcv_fourier_channels(int ndims, int64_t num_bands, bool concat_pos, bool sine_only);

/* Features of the linspace(-1, 1) grid over index_dims (row-major, last index fastest):
 * out[prod(index_dims)][pcv_fourier_channels(...)]. max_res[d] sets band d's frequencies
 * linspace(1, max_res[d] / 2, num_bands). */
void pcv_fourier_grid(int ndims, const int64_t *index_dims, const int64_t *max_res, int64_t num_bands,
                      bool concat_pos, bool sine_only, pcv_linspace_fn linspace, float *out);

/* Features of arbitrary positions pos[npos][ndims] (e.g. subsampled decoder queries). */
void pcv_fourier_points(int ndims, int64_t npos, const float *pos, const int64_t *max_res, int64_t num_bands,
                        bool concat_pos, bool sine_only, pcv_linspace_fn linspace, float *out);

#endif
