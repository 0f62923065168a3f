#include "model/ops.h"

#include <string.h>
#include <time.h>

const char *const pcv_stage_names[PCV_NUM_STAGES] = {"preprocess", "encoder.cross", "encoder.self",
                                                      "decoder", "postprocess"};

int64_t pcv_numel(const pcv_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

int pcv_tensor_alloc_bytes(pcv_exec *ex, pcv_tensor *t, size_t bytes)
{
    memset(t, 0, sizeof *t);
    t->buf = pcv_backend_alloc(ex->be, bytes, ex->err);
    if (!t->buf)
        return ex->err ? (int)ex->err->code : PCV_ERR_OOM;
    t->owned = true;
    t->ndim = 1;
    t->shape[0] = (int64_t)(bytes / sizeof(float));
    return 0;
}

int pcv_tensor_alloc(pcv_exec *ex, pcv_tensor *t, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    int rc = pcv_tensor_alloc_bytes(ex, t, (size_t)n * sizeof(float));
    if (rc)
        return rc;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    return 0;
}

void pcv_tensor_free(pcv_backend *be, pcv_tensor *t)
{
    if (t->owned && t->buf)
        pcv_backend_release(be, t->buf);
    memset(t, 0, sizeof *t);
}

void pcv_exec_begin(pcv_exec *ex, pcv_backend *be, pcv_error *err, bool profile)
{
    memset(ex, 0, sizeof *ex);
    ex->be = be;
    ex->err = err;
    ex->profile = profile;
    ex->stage = PCV_STAGE_PREPROCESS;
    ex->stage_start = pcv_now();
}

int pcv_exec_stage(pcv_exec *ex, int stage)
{
    if (ex->profile) {
        int rc = pcv_backend_synchronize(ex->be, ex->err);
        if (rc)
            return rc;
    }
    double t = pcv_now();
    ex->seconds[ex->stage] += t - ex->stage_start;
    ex->stage_start = t;
    ex->stage = stage;
    return 0;
}

int op_linear(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *w,
              const pcv_tensor *b, pcv_tensor *y)
{
    int64_t out = w->shape[0], in = w->shape[1];
    pcv_gemm_args g = {
        .trans_a = false, .trans_b = true, .m = rows, .n = out, .k = in, .batch = 1,
        .alpha = 1.0f, .beta = 0.0f,
        .a = x->buf, .a_off = x->off, .lda = in,
        .b = w->buf, .b_off = w->off, .ldb = in,
        .c = y->buf, .c_off = y->off, .ldc = out,
    };
    int rc = pcv_backend_gemm(ex->be, &g, ex->err);
    if (!rc && b)
        rc = pcv_backend_bias_add(ex->be, y->buf, y->off, rows, out, b->buf, b->off, ex->err);
    ex->flops[ex->stage] += 2.0 * (double)rows * (double)in * (double)out;
    return rc;
}

int op_layernorm(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *gamma,
                 const pcv_tensor *beta, pcv_tensor *y)
{
    /* LayerNorm eps is PyTorch's default 1e-5 everywhere (config.layer_norm_eps is unused). */
    return pcv_backend_layernorm(ex->be, x->buf, x->off, y->buf, y->off, rows, gamma->shape[0],
                                  gamma->buf, gamma->off, beta->buf, beta->off, 1e-5f, ex->err);
}

int op_gelu(pcv_exec *ex, pcv_tensor *x, pcv_gelu_kind kind)
{
    return pcv_backend_gelu(ex->be, x->buf, x->off, pcv_numel(x), kind, ex->err);
}

int op_add(pcv_exec *ex, pcv_tensor *y, const pcv_tensor *a)
{
    return pcv_backend_add(ex->be, y->buf, y->off, a->buf, a->off, pcv_numel(y), ex->err);
}

int op_attention(pcv_exec *ex, const pcv_attention_args *a)
{
    ex->flops[ex->stage] += 2.0 * (double)a->batch * (double)a->heads * (double)a->nq *
                            (double)a->nk * (double)(a->dqk + a->dv);
    return pcv_backend_attention(ex->be, a, ex->err);
}
