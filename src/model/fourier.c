#include "model/fourier.h"

#include <math.h>
#include <stdlib.h>

void pcv_linspace_torch(float a, float b, int64_t n, float *out)
{
    if (n == 1) {
        out[0] = a;
        return;
    }
    float step = (b - a) / (float)(n - 1);
    int64_t half = n / 2;
    for (int64_t i = 0; i < n; i++) {
        float prod = i < half ? step * (float)i : step * (float)(n - 1 - i);
        out[i] = i < half ? a + prod : b - prod;
    }
}

int64_t pcv_fourier_channels(int ndims, int64_t num_bands, bool concat_pos, bool sine_only)
{
    return (int64_t)ndims * num_bands * (sine_only ? 1 : 2) + (concat_pos ? ndims : 0);
}

void pcv_fourier_grid(int ndims, const int64_t *index_dims, const int64_t *max_res, int64_t num_bands,
                      bool concat_pos, bool sine_only, float *out)
{
    int64_t npos = 1;
    for (int d = 0; d < ndims; d++)
        npos *= index_dims[d];
    int64_t C = pcv_fourier_channels(ndims, num_bands, concat_pos, sine_only);
    float *lin[8] = {0}, *freq[8] = {0};
    for (int d = 0; d < ndims && d < 8; d++) {
        lin[d] = malloc((size_t)index_dims[d] * sizeof(float));
        freq[d] = malloc((size_t)num_bands * sizeof(float));
        pcv_linspace_torch(-1.0f, 1.0f, index_dims[d], lin[d]);
        pcv_linspace_torch(1.0f, (float)max_res[d] / 2.0f, num_bands, freq[d]);
    }
    const float pi = 3.14159265358979323846f;
    int64_t nb = (int64_t)ndims * num_bands;
    for (int64_t p = 0; p < npos; p++) {
        float *row = out + p * C;
        float pos[8];
        int64_t rem = p;
        for (int d = ndims - 1; d >= 0; d--) {
            pos[d] = lin[d][rem % index_dims[d]];
            rem /= index_dims[d];
        }
        int64_t c = 0;
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
    for (int d = 0; d < ndims && d < 8; d++) {
        free(lin[d]);
        free(freq[d]);
    }
}
