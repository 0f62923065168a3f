/* Tensors on a backend and the thin layer model code calls: shape checks, dispatch to the
 * backend's operations, FLOP accounting and per-stage timing. */
#ifndef PCV_OPS_H
#define PCV_OPS_H

#include "backend/backend.h"
#include "util/clock.h"

typedef struct pcv_tensor {
    pcv_buffer *buf;
    size_t off; /* elements */
    int ndim;
    int64_t shape[4];
    bool owned; /* buf belongs to this tensor */
} pcv_tensor;

enum { PCV_STAGE_PREPROCESS, PCV_STAGE_ENC_CROSS, PCV_STAGE_ENC_SELF, PCV_STAGE_DECODER,
       PCV_STAGE_POSTPROCESS, PCV_NUM_STAGES };
extern const char *const pcv_stage_names[PCV_NUM_STAGES];

typedef struct pcv_exec {
    pcv_backend *be;
    pcv_error *err;
    int stage;
    bool profile;
    double stage_start;
    double seconds[PCV_NUM_STAGES];
    double flops[PCV_NUM_STAGES];
} pcv_exec;

int64_t pcv_numel(const pcv_tensor *t);

int pcv_tensor_alloc(pcv_exec *ex, pcv_tensor *t, int ndim, const int64_t *shape);
int pcv_tensor_alloc_bytes(pcv_exec *ex, pcv_tensor *t, size_t bytes); /* raw (e.g. int32) */
void pcv_tensor_free(pcv_backend *be, pcv_tensor *t);

void pcv_exec_begin(pcv_exec *ex, pcv_backend *be, pcv_error *err, bool profile);
int pcv_exec_stage(pcv_exec *ex, int stage); /* closes the current stage's timer */

/* y[rows][out] = x[rows][in] W[out][in]^T + b[out]; b may be NULL. */
int op_linear(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *w,
              const pcv_tensor *b, pcv_tensor *y);
int op_layernorm(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *gamma,
                 const pcv_tensor *beta, pcv_tensor *y);
int op_gelu(pcv_exec *ex, pcv_tensor *x, pcv_gelu_kind kind);
int op_add(pcv_exec *ex, pcv_tensor *y, const pcv_tensor *a);
int op_attention(pcv_exec *ex, const pcv_attention_args *args);

#define TRY(expr)                                                                            \
    do {                                                                                     \
        if ((rc = (expr)) != 0)                                                              \
            goto fail;                                                                       \
    } while (0)

#endif
