#include "model/fourier.h"

#include <math.h>
#include <stdlib.h>

/* torch.linspace on the CPU (ATen's linspace kernel, torch 2.x): step = (b - a) / (n - 1), then
 * a + step*i for the first half and b - step*(n-1-i) for the second, each product-and-sum
 * contracted into one fused multiply-add by ATen's AVX2/AVX-512 builds (what transformers runs on
 * x86-64); fmaf gives the same single rounding on any machine. Checked bit for bit against torch
 * (tests/fixtures/linspace_exact). */
void pcv_linspace_torch(float a, float b, int64_t n, float *out)
{
    if (n == 1) {
        out[0] = a;
        return;
    }
    float step = (b - a) / (float)(n - 1);
    int64_t half = n / 2;
    for (int64_t i = 0; i < n; i++)
        out[i] = i < half ? fmaf(step, (float)i, a) : fmaf(-step, (float)(n - 1 - i), b);
}

/* JAX evaluates a*(1-t) + b*t as separately rounded float32 operations, never as an FMA: the
 * volatile temporaries keep any compiler from contracting them. */
void pcv_linspace_jax(float a, float b, int64_t n, float *out)
{
    if (n == 1) {
        out[0] = a;
        return;
    }
    float den = (float)(n - 1);
    for (int64_t i = 0; i < n; i++) {
        volatile float t = (float)i / den;
        volatile float p = a * (1.0f - t);
        volatile float q = b * t;
        out[i] = p + q;
    }
    out[n - 1] = b;
}

int64_t pcv_fourier_channels(int ndims, int64_t num_bands, bool concat_pos, bool sine_only)
{
    return (int64_t)ndims * num_bands * (sine_only ? 1 : 2) + (concat_pos ? ndims : 0);
}

static void features(int ndims, const float *pos, float *const *freq, int64_t num_bands, bool concat_pos,
                     bool sine_only, float *row)
{
    const float pi = 3.14159265358979323846f;
    int64_t nb = (int64_t)ndims * num_bands, c = 0;
    if (concat_pos)
        for (int d = 0; d < ndims; d++)
            row[c++] = pos[d];
    for (int d = 0; d < ndims; d++)
        for (int64_t k = 0; k < num_bands; k++) {
            float f = pos[d] * freq[d][k];
            float arg = pi * f;
            row[c + d * num_bands + k] = sinf(arg);
            if (!sine_only)
                row[c + nb + d * num_bands + k] = cosf(arg);
        }
}

enum { MAXD = 8 };

static bool make_freqs(int ndims, const int64_t *max_res, int64_t num_bands, pcv_linspace_fn linspace, float **freq)
{
    for (int d = 0; d < ndims; d++) {
        freq[d] = malloc((size_t)num_bands * sizeof(float));
        if (!freq[d])
            return false;
        linspace(1.0f, (float)max_res[d] / 2.0f, num_bands, freq[d]);
    }
    return true;
}

void pcv_fourier_grid(int ndims, const int64_t *index_dims, const int64_t *max_res, int64_t num_bands,
                      bool concat_pos, bool sine_only, pcv_linspace_fn linspace, float *out)
{
    if (ndims > MAXD)
        return;
    int64_t npos = 1;
    for (int d = 0; d < ndims; d++)
        npos *= index_dims[d];
    int64_t C = pcv_fourier_channels(ndims, num_bands, concat_pos, sine_only);
    float *lin[MAXD] = {0}, *freq[MAXD] = {0};
    bool ok = make_freqs(ndims, max_res, num_bands, linspace, freq);
    for (int d = 0; ok && d < ndims; d++) {
        lin[d] = malloc((size_t)index_dims[d] * sizeof(float));
        if ((ok = lin[d] != NULL))
            linspace(-1.0f, 1.0f, index_dims[d], lin[d]);
    }
    for (int64_t p = 0; ok && p < npos; p++) {
        float pos[MAXD];
        int64_t rem = p;
        for (int d = ndims - 1; d >= 0; d--) {
            pos[d] = lin[d][rem % index_dims[d]];
            rem /= index_dims[d];
        }
        features(ndims, pos, freq, num_bands, concat_pos, sine_only, out + p * C);
    }
    for (int d = 0; d < ndims; d++) {
        free(lin[d]);
        free(freq[d]);
    }
}

void pcv_fourier_points(int ndims, int64_t npos, const float *pos, const int64_t *max_res, int64_t num_bands,
                        bool concat_pos, bool sine_only, pcv_linspace_fn linspace, float *out)
{
    if (ndims > MAXD)
        return;
    int64_t C = pcv_fourier_channels(ndims, num_bands, concat_pos, sine_only);
    float *freq[MAXD] = {0};
    if (make_freqs(ndims, max_res, num_bands, linspace, freq))
        for (int64_t p = 0; p < npos; p++)
            features(ndims, pos + p * ndims, freq, num_bands, concat_pos, sine_only, out + p * C);
    for (int d = 0; d < ndims; d++)
        free(freq[d]);
}
