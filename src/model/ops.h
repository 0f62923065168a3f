/* What model code computes with: tensors (views into backend buffers), the execution context
 * of one forward pass with its activation arena, and the operations model code calls (shape
 * checks, FLOP accounting, per-stage timing, dispatch to the backend).
 *
 * Memory is planned, not allocated: a forward pass runs twice the first time it meets a shape.
 * The planning run (ex->dry) executes nothing; its tensor allocations only move a stack pointer
 * through the arena and record the peak. The arena is then allocated once (a few chunks when
 * the device limits one allocation), and every later forward of the same shape runs with no
 * allocation at all: tensors are views at the offsets the plan fixed. Allocation is a stack:
 * pcv_arena_mark / pcv_arena_reset release everything allocated since the mark. */
#ifndef PCV_OPS_H
#define PCV_OPS_H

#include "backend/backend.h"
#include "util/clock.h"

typedef struct pcv_tensor {
    pcv_buffer *buf;
    size_t off; /* elements */
    int ndim;
    int64_t shape[4];
} pcv_tensor;

enum { PCV_STAGE_PREPROCESS, PCV_STAGE_ENC_CROSS, PCV_STAGE_ENC_SELF, PCV_STAGE_DECODER,
       PCV_STAGE_POSTPROCESS, PCV_NUM_STAGES };
extern const char *const pcv_stage_names[PCV_NUM_STAGES];

enum { PCV_ARENA_MAX_CHUNKS = 16 };

/* The activation arena: up to PCV_ARENA_MAX_CHUNKS device buffers used as one stack. */
typedef struct pcv_arena {
    pcv_buffer *chunk[PCV_ARENA_MAX_CHUNKS];
    size_t cap[PCV_ARENA_MAX_CHUNKS];  /* elements of each chunk (from the plan) */
    size_t peak[PCV_ARENA_MAX_CHUNKS]; /* planning: the most each chunk held */
    int nchunks;
    size_t chunk_limit; /* elements one chunk may hold (the device's max allocation) */
    int cur;            /* current chunk and its fill */
    size_t top;
} pcv_arena;

typedef struct pcv_arena_mark {
    int cur;
    size_t top;
} pcv_arena_mark;

typedef struct pcv_exec {
    pcv_backend *be;
    pcv_error *err;
    pcv_arena *arena;
    bool dry; /* planning: allocate from the arena's bookkeeping only, run nothing */
    int stage;
    bool profile;
    double stage_start;
    double seconds[PCV_NUM_STAGES];
    double flops[PCV_NUM_STAGES];
} pcv_exec;

int64_t pcv_numel(const pcv_tensor *t);

/* ---- the arena ---- */

void pcv_arena_init(pcv_arena *a, pcv_backend *be);
/* Allocates the chunks the last planning run needed (keeping chunks that are big enough). */
int pcv_arena_commit(pcv_arena *a, pcv_backend *be, pcv_error *err);
void pcv_arena_free(pcv_arena *a, pcv_backend *be);
size_t pcv_arena_bytes(const pcv_arena *a);
/* Starts a pass: planning (dry) resets the peaks; a real pass requires a committed plan. */
void pcv_arena_begin(pcv_arena *a, bool dry);
pcv_arena_mark pcv_arena_mark_get(const pcv_exec *ex);
void pcv_arena_reset(pcv_exec *ex, pcv_arena_mark m);

/* A tensor from the arena (64-byte aligned); raw bytes for non-float data (int32 ids). */
int pcv_tensor_alloc(pcv_exec *ex, pcv_tensor *t, int ndim, const int64_t *shape);
int pcv_tensor_alloc_bytes(pcv_exec *ex, pcv_tensor *t, size_t bytes);

void pcv_exec_begin(pcv_exec *ex, pcv_backend *be, pcv_arena *arena, pcv_error *err, bool profile, bool dry);
int pcv_exec_stage(pcv_exec *ex, int stage); /* closes the current stage's timer */

/* ---- operations (no-ops in a planning pass, where they only count FLOPs) ---- */

/* y[rows][out] = x[rows][in] W[out][in]^T + b[out]; b may be NULL. x and y are [rows][*] with
 * row strides of their own widths. */
int op_linear(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *w,
              const pcv_tensor *b, pcv_tensor *y);
/* What a linear layer does with its output in the same pass (y must be [rows][out] contiguous):
 * accumulate: y += x W^T + b instead of y = ...; gelu: y = gelu(...) (exact erf GELU); res: y += res
 * after the rest (res [rows][out], not aliasing y). */
typedef struct pcv_linear_epilogue {
    bool accumulate, gelu;
    const pcv_tensor *res;
} pcv_linear_epilogue;
int op_linear_ex(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *w, const pcv_tensor *b,
                 pcv_tensor *y, const pcv_linear_epilogue *e);
int op_layernorm(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *gamma,
                 const pcv_tensor *beta, pcv_tensor *y);
int op_activation(pcv_exec *ex, pcv_tensor *x, pcv_activation act);
int op_add(pcv_exec *ex, pcv_tensor *y, const pcv_tensor *a);
int op_attention(pcv_exec *ex, const pcv_attention_args *args);
/* dst = src repeated `times` times (a block broadcast over the batch) */
int op_repeat(pcv_exec *ex, const pcv_tensor *src, int64_t n, int64_t times, pcv_tensor *dst,
              size_t dst_off);
int op_gather(pcv_exec *ex, const pcv_tensor *table, const pcv_tensor *ids, const pcv_tensor *pos,
              int64_t period, pcv_tensor *out, int64_t rows, int64_t cols);
int op_transpose(pcv_exec *ex, const pcv_tensor *src, int64_t batch, int64_t rows, int64_t cols,
                 pcv_tensor *dst);
/* dst[dst_off + r*dst_ld + j] = src[src_off + (r % period)*src_ld + j] for r < rows, j < cols
 * (offsets in elements from the tensors' starts): concatenation along channels, row slices,
 * broadcasts */
int op_copy2d(pcv_exec *ex, const pcv_tensor *src, size_t src_off, int64_t src_ld, int64_t period,
              pcv_tensor *dst, size_t dst_off, int64_t dst_ld, int64_t rows, int64_t cols);
int op_im2col(pcv_exec *ex, const pcv_tensor *src, int64_t batch, int64_t C, int64_t H, int64_t W,
              int64_t kh, int64_t kw, int64_t stride, int64_t pad_top, int64_t pad_left, int64_t oh,
              int64_t ow, pcv_tensor *dst);
int op_channel_affine(pcv_exec *ex, pcv_tensor *x, int64_t rows, int64_t cols,
                      const pcv_tensor *scale, const pcv_tensor *shift, bool relu);
int op_maxpool(pcv_exec *ex, const pcv_tensor *src, int64_t batch, int64_t H, int64_t W,
               int64_t C, int64_t k, int64_t stride, int64_t pad_top, int64_t pad_left, int64_t oh,
               int64_t ow, pcv_tensor *dst);
/* host -> tensor / tensor -> host (bytes from the tensor's start) */
int op_upload(pcv_exec *ex, pcv_tensor *t, const void *src, size_t bytes);
int op_download(pcv_exec *ex, const pcv_tensor *t, void *dst, size_t bytes);

#define TRY(expr)                                                                            \
    do {                                                                                     \
        if ((rc = (expr)) != 0)                                                              \
            goto fail;                                                                       \
    } while (0)

#endif
