/* The backend vtable: what a compute backend implements. Private to src/backend/: every other
 * module calls the pcv_backend_*() wrappers of backend.h, which validate arguments, count
 * allocations and dispatch here (the ggml-backend-impl.h pattern). */
#ifndef PCV_BACKEND_IMPL_H
#define PCV_BACKEND_IMPL_H

#include "backend/backend.h"

typedef struct pcv_backend_ops {
    void (*destroy)(pcv_backend *be);

    /* ---- memory ---- */
    pcv_buffer *(*alloc)(pcv_backend *be, size_t bytes, pcv_error *err);
    void (*release)(pcv_backend *be, pcv_buffer *buf);
    size_t (*buffer_bytes)(const pcv_buffer *buf);
    bool (*has_fp64)(const pcv_backend *be); /* optional */
    uint64_t (*max_alloc)(const pcv_backend *be); /* optional: no limit */
    /* Optional (may be NULL): a read-only buffer that aliases host memory which stays valid
     * for the buffer's lifetime (used for memory-mapped weights). Returns NULL if the memory
     * cannot be aliased (e.g. misaligned); the caller then allocates and uploads. */
    pcv_buffer *(*wrap_host)(pcv_backend *be, const void *ptr, size_t bytes);
    int (*upload)(pcv_backend *be, pcv_buffer *dst, size_t off_bytes, const void *src,
                  size_t bytes, pcv_error *err);
    int (*download)(pcv_backend *be, pcv_buffer *src, size_t off_bytes, void *dst,
                    size_t bytes, pcv_error *err);
    int (*synchronize)(pcv_backend *be, pcv_error *err);

    /* ---- operations (offsets and sizes in elements) ---- */
    int (*gemm)(pcv_backend *be, const pcv_gemm_args *args, pcv_error *err);
    bool gemm_epilogue; /* gemm applies the epilogue of pcv_gemm_args itself (else the wrapper does) */
    /* x[r][c] += bias[c] */
    int (*bias_add)(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols,
                    pcv_buffer *bias, size_t bias_off, pcv_error *err);
    /* y[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta over cols (biased variance) */
    int (*layernorm)(pcv_backend *be, pcv_buffer *x, size_t x_off, pcv_buffer *y, size_t y_off,
                     int64_t rows, int64_t cols, pcv_buffer *gamma, size_t g_off,
                     pcv_buffer *beta, size_t b_off, float eps, pcv_error *err);
    /* x[i] = act(x[i]) in place */
    int (*activation)(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t n, pcv_activation act,
                      pcv_error *err);
    /* y[i] += a[i] */
    int (*add)(pcv_backend *be, pcv_buffer *y, size_t y_off, pcv_buffer *a, size_t a_off,
               int64_t n, pcv_error *err);
    /* in place softmax over each row of x[rows][cols], optionally after adding an additive mask
     * mask[cols] (may be NULL) */
    int (*softmax)(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols,
                   pcv_buffer *mask, size_t mask_off, pcv_error *err);
    /* out[r][:] = table[ids[r]][:] (+ pos[r % period][:] if pos != NULL), r < rows;
     * ids are int32 and already validated to lie in [0, table_rows). */
    int (*gather)(pcv_backend *be, pcv_buffer *table, size_t t_off, pcv_buffer *ids,
                  size_t ids_off, pcv_buffer *pos, size_t pos_off, int64_t period,
                  pcv_buffer *out, size_t out_off, int64_t rows, int64_t cols, pcv_error *err);
    /* dst[i*n + j] = src[j] for i < times: broadcast one block over a batch */
    int (*repeat)(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t n, int64_t times,
                  pcv_buffer *dst, size_t dst_off, pcv_error *err);
    int (*attention)(pcv_backend *be, const pcv_attention_args *args, pcv_error *err);

    /* ---- image preprocessing (image classifiers) ---- */
    /* dst[b][j][i] = src[b][i][j]: src is [batch][rows][cols], dst [batch][cols][rows]
     * (NCHW -> NHWC with rows = C, cols = H*W) */
    int (*transpose)(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t batch, int64_t rows,
                     int64_t cols, pcv_buffer *dst, size_t dst_off, pcv_error *err);
    /* dst[r*dst_ld + j] = src[(r % period)*src_ld + j] for r < rows, j < cols: strided 2-D copy
     * whose source repeats every `period` rows (concatenation along channels, broadcasts) */
    int (*copy2d)(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t src_ld, int64_t period,
                  pcv_buffer *dst, size_t dst_off, int64_t dst_ld, int64_t rows, int64_t cols,
                  pcv_error *err);
    /* im2col for a 2-D convolution: src [batch][C][H][W] -> dst [batch][oh*ow][C*kh*kw] with
     * column (c*kh + i)*kw + j = src[c][y*stride + i - pad_top][x*stride + j - pad_left]
     * (0 outside the image) */
    int (*im2col)(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t batch, int64_t C,
                  int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t stride, int64_t pad_top,
                  int64_t pad_left, int64_t oh, int64_t ow, pcv_buffer *dst, size_t dst_off,
                  pcv_error *err);
    /* x[r][c] = x[r][c] * scale[c] + shift[c], then max(x, 0) when relu (eval BatchNorm) */
    int (*channel_affine)(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols,
                          pcv_buffer *scale, size_t scale_off, pcv_buffer *shift, size_t shift_off,
                          bool relu, pcv_error *err);
    /* max pooling on channels-last data: src [batch][H][W][C] -> dst [batch][oh][ow][C],
     * window k x k, stride s, padding pad_top/pad_left (padded cells are ignored) */
    int (*maxpool)(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t batch, int64_t H,
                   int64_t W, int64_t C, int64_t k, int64_t stride, int64_t pad_top,
                   int64_t pad_left, int64_t oh, int64_t ow, pcv_buffer *dst, size_t dst_off,
                   pcv_error *err);
} pcv_backend_ops;

struct pcv_backend {
    const pcv_backend_ops *ops;
    char name[128];        /* "cpu", "opencl:0" */
    char device_name[256]; /* human-readable device description */
    char driver[512];      /* the software doing the work: "BLIS 0.9.0, OpenMP", "PoCL 3.1 ..., driver ..." */
    void *ctx;
    /* kept by the wrappers */
    int64_t allocs, releases; /* buffers allocated and released over the backend's life */
    size_t bytes_in_use, peak_bytes;
};

/* The process-wide runtime options (pcv_runtime_configure); the first call freezes them. */
const pcv_runtime_options *pcv_runtime(void);

/* Constructors of the built-in backends (registry in backend.c). */
pcv_backend *pcv_backend_cpu_create(const pcv_backend_options *opt, pcv_error *err);
pcv_backend *pcv_backend_opencl_create(int index, const pcv_backend_options *opt, pcv_error *err);

#endif
