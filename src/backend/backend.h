/* The backend module: compute devices behind one interface.
 *
 * Model code is written once against the pcv_backend_*() calls below; the CPU reference backend
 * (cpu.c) and the OpenCL backend (opencl.c) implement them behind a vtable that only src/backend/
 * sees (backend_impl.h). The registry (backend.c) enumerates the devices and opens a backend for
 * a --device string.
 *
 * Memory is a set of opaque device buffers (pcv_buffer). Operations name their operands as a
 * buffer plus an element offset, like CLBlast's (cl_mem, offset) pairs, so views need no
 * allocation. All float data are float32; token ids are int32. Operations are enqueued in
 * order; results are visible to the host after download(), which synchronizes.
 */
#ifndef PCV_BACKEND_H
#define PCV_BACKEND_H

#include "perceiver/perceiver.h"

typedef struct pcv_buffer pcv_buffer; /* defined by each backend */
typedef struct pcv_backend pcv_backend;

/* The activations are the public pcv_activation (perceiver.h): every hidden_act with a fixed
 * formula. */

/* C[i] = alpha * op(A[i]) * op(B[i]) + beta * C[i] for i < batch, row-major.
 * op(A) is m x k, op(B) is k x n, C is m x n; lda/ldb/ldc are row strides in elements;
 * stride_* are the element distances between consecutive batch entries.
 *
 * The epilogue of a linear layer, each part optional (batch 1 and ldc == n only): then
 * C[r][c] += bias[c]; C = gelu(C) (exact erf GELU) when gelu is set; C[r][c] += res[r][c]. A backend
 * may do it while the output is in cache (the CPU path); the wrapper otherwise runs bias_add,
 * activation and add after the product. res may not alias C. */
typedef struct pcv_gemm_args {
    bool trans_a, trans_b;
    int64_t m, n, k, batch;
    float alpha, beta;
    pcv_buffer *a; size_t a_off; int64_t lda, stride_a;
    pcv_buffer *b; size_t b_off; int64_t ldb, stride_b;
    pcv_buffer *c; size_t c_off; int64_t ldc, stride_c;
    pcv_buffer *bias; size_t bias_off;
    bool gelu;
    pcv_buffer *res; size_t res_off;
} pcv_gemm_args;

/* How masks and scores are treated: the two reference implementations differ (see
 * shared/spec/haiku-vs-hf.md, G2-G4). */
typedef enum pcv_attn_mode {
    /* Hugging Face: S = QK^T / scale; S += (1 - kmask) * finfo(float32).min (additive); a query
     * row whose keys are all masked gets uniform weights. qmask must be NULL. */
    PCV_ATTN_HF = 0,
    /* DeepMind Haiku: S = QK^T * (1/scale); S = (qmask * kmask) ? S : -1e30 (select); a query
     * row with no valid key gets an output of exactly 0. */
    PCV_ATTN_HAIKU = 1
} pcv_attn_mode;

/* Multi-head attention without materializing the full score matrix:
 *   for each batch b and head h: O_bh = softmax_rows(scores(Q_bh, K_bh, masks)) V_bh
 * Q is [batch][nq][q_ld] with head h at columns [h*dqk, (h+1)*dqk); K likewise [batch][nk][k_ld];
 * V is [batch][nk][v_ld] with head h at columns [h*dv, ...); O is [batch][nq][o_ld] with head h
 * at columns [h*dv, ...). Masks are float 1 = keep / 0 = masked: kmask [batch][nk] over keys,
 * qmask [batch][nq] over queries; either may be NULL (nothing masked). scale = sqrt(dqk). */
typedef struct pcv_attention_args {
    int64_t batch, heads, nq, nk, dqk, dv;
    float scale;
    pcv_attn_mode mode;
    pcv_buffer *q; size_t q_off; int64_t q_ld;
    pcv_buffer *k; size_t k_off; int64_t k_ld;
    pcv_buffer *v; size_t v_off; int64_t v_ld;
    pcv_buffer *o; size_t o_off; int64_t o_ld;
    pcv_buffer *kmask; size_t kmask_off;
    pcv_buffer *qmask; size_t qmask_off;
} pcv_attention_args;


/* ---- opening a backend ---------------------------------------------------------------------- */

/* Opens the backend for opt->device: NULL, "" or "cpu" = the CPU reference path; "N" = OpenCL
 * device N (global index, see pcv_devices_list); anything else = the first OpenCL device whose
 * "platform / name / vendor" contains it (case-insensitive). The error for an unknown device
 * lists the devices. */
pcv_backend *pcv_backend_open(const pcv_backend_options *opt, pcv_error *err);
void pcv_backend_close(pcv_backend *be);
const char *pcv_backend_name(const pcv_backend *be);   /* "cpu", "opencl:0" */
const char *pcv_backend_device(const pcv_backend *be); /* human-readable description */
/* The software doing the work ("BLIS 0.9.0 (zen3 kernels), OpenMP 201511"; for OpenCL the platform,
 * its version and the driver version). */
const char *pcv_backend_driver(const pcv_backend *be);
bool pcv_backend_is_cpu(const pcv_backend *be);
/* The largest single buffer the backend can allocate (bytes). */
uint64_t pcv_backend_max_alloc(const pcv_backend *be);

/* Buffer statistics kept by the wrappers: allocations over the backend's life and bytes. */
typedef struct pcv_backend_stats {
    int64_t allocs, releases;
    size_t bytes_in_use, peak_bytes;
} pcv_backend_stats;
void pcv_backend_get_stats(const pcv_backend *be, pcv_backend_stats *s);

/* What a backend supports beyond the required operations. */
typedef enum pcv_backend_feature {
    PCV_FEATURE_HOST_MEMORY, /* buffers can alias host memory (mapped weights are not copied) */
    PCV_FEATURE_FP64         /* the device computes in double precision */
} pcv_backend_feature;
bool pcv_backend_supports(const pcv_backend *be, pcv_backend_feature f);

/* ---- memory ----------------------------------------------------------------------------------- */

pcv_buffer *pcv_backend_alloc(pcv_backend *be, size_t bytes, pcv_error *err);
void pcv_backend_release(pcv_backend *be, pcv_buffer *buf);
/* A read-only buffer aliasing host memory that outlives it (memory-mapped weights), or NULL when
 * the backend cannot alias it (the caller then allocates and uploads). */
pcv_buffer *pcv_backend_wrap_host(pcv_backend *be, const void *ptr, size_t bytes);
int pcv_backend_upload(pcv_backend *be, pcv_buffer *dst, size_t off_bytes, const void *src,
                       size_t bytes, pcv_error *err);
int pcv_backend_download(pcv_backend *be, pcv_buffer *src, size_t off_bytes, void *dst,
                         size_t bytes, pcv_error *err);
int pcv_backend_synchronize(pcv_backend *be, pcv_error *err);

/* ---- operations (offsets and sizes in elements; semantics in backend_impl.h) ------------------ */

/* Reports progress to the runtime options' callback (no-op without one). */
void pcv_progress(const char *what, int64_t done, int64_t total);

int pcv_backend_gemm(pcv_backend *be, const pcv_gemm_args *args, pcv_error *err);
int pcv_backend_bias_add(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols,
                         pcv_buffer *bias, size_t bias_off, pcv_error *err);
int pcv_backend_layernorm(pcv_backend *be, pcv_buffer *x, size_t x_off, pcv_buffer *y, size_t y_off,
                          int64_t rows, int64_t cols, pcv_buffer *gamma, size_t g_off,
                          pcv_buffer *beta, size_t b_off, float eps, pcv_error *err);
int pcv_backend_activation(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t n, pcv_activation act,
                           pcv_error *err);
int pcv_backend_add(pcv_backend *be, pcv_buffer *y, size_t y_off, pcv_buffer *a, size_t a_off,
                    int64_t n, pcv_error *err);
int pcv_backend_softmax(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols,
                        pcv_buffer *mask, size_t mask_off, pcv_error *err);
int pcv_backend_gather(pcv_backend *be, pcv_buffer *table, size_t t_off, pcv_buffer *ids,
                       size_t ids_off, pcv_buffer *pos, size_t pos_off, int64_t period,
                       pcv_buffer *out, size_t out_off, int64_t rows, int64_t cols, pcv_error *err);
int pcv_backend_repeat(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t n, int64_t times,
                       pcv_buffer *dst, size_t dst_off, pcv_error *err);
int pcv_backend_attention(pcv_backend *be, const pcv_attention_args *args, pcv_error *err);
int pcv_backend_transpose(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t batch,
                          int64_t rows, int64_t cols, pcv_buffer *dst, size_t dst_off,
                          pcv_error *err);
int pcv_backend_copy2d(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t src_ld,
                       int64_t period, pcv_buffer *dst, size_t dst_off, int64_t dst_ld,
                       int64_t rows, int64_t cols, pcv_error *err);
int pcv_backend_im2col(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t batch, int64_t C,
                       int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t stride,
                       int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow, pcv_buffer *dst,
                       size_t dst_off, pcv_error *err);
int pcv_backend_channel_affine(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows,
                               int64_t cols, pcv_buffer *scale, size_t scale_off,
                               pcv_buffer *shift, size_t shift_off, bool relu, pcv_error *err);
int pcv_backend_maxpool(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t batch, int64_t H,
                        int64_t W, int64_t C, int64_t k, int64_t stride, int64_t pad_top,
                        int64_t pad_left, int64_t oh, int64_t ow, pcv_buffer *dst, size_t dst_off,
                        pcv_error *err);

#endif
