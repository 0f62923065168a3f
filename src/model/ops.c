#include "model/ops.h"
#include "util/error.h"

#include <string.h>

const char *const pcv_stage_names[PCV_NUM_STAGES] = {"preprocess", "encoder.cross", "encoder.self",
                                                      "decoder", "postprocess"};

int64_t pcv_numel(const pcv_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

/* ---- arena ------------------------------------------------------------------------------------- */

enum { ALIGN = 16 }; /* elements: 64 bytes */

void pcv_arena_init(pcv_arena *a, pcv_backend *be)
{
    memset(a, 0, sizeof *a);
    uint64_t lim = pcv_backend_max_alloc(be) / sizeof(float);
    a->chunk_limit = lim > ((uint64_t)1 << 40) ? ((size_t)1 << 40) : (size_t)lim;
    a->chunk_limit -= a->chunk_limit % ALIGN;
}

void pcv_arena_begin(pcv_arena *a, bool dry)
{
    a->cur = 0;
    a->top = 0;
    if (dry)
        memset(a->peak, 0, sizeof a->peak);
}

int pcv_arena_commit(pcv_arena *a, pcv_backend *be, pcv_error *err)
{
    int n = 0;
    for (int i = 0; i < PCV_ARENA_MAX_CHUNKS; i++)
        if (a->peak[i])
            n = i + 1;
    for (int i = 0; i < PCV_ARENA_MAX_CHUNKS; i++) {
        size_t want = i < n ? a->peak[i] : 0;
        if (a->chunk[i] && (a->cap[i] < want || want == 0)) {
            pcv_backend_release(be, a->chunk[i]);
            a->chunk[i] = NULL;
            a->cap[i] = 0;
        }
        if (want && !a->chunk[i]) {
            a->chunk[i] = pcv_backend_alloc(be, want * sizeof(float), err);
            if (!a->chunk[i])
                return err ? (int)err->code : PCV_ERR_OOM;
            a->cap[i] = want;
        }
    }
    a->nchunks = n;
    return 0;
}

void pcv_arena_free(pcv_arena *a, pcv_backend *be)
{
    for (int i = 0; i < PCV_ARENA_MAX_CHUNKS; i++)
        if (a->chunk[i])
            pcv_backend_release(be, a->chunk[i]);
    memset(a->chunk, 0, sizeof a->chunk);
    memset(a->cap, 0, sizeof a->cap);
    a->nchunks = 0;
}

size_t pcv_arena_bytes(const pcv_arena *a)
{
    size_t n = 0;
    for (int i = 0; i < a->nchunks; i++)
        n += a->cap[i];
    return n * sizeof(float);
}

pcv_arena_mark pcv_arena_mark_get(const pcv_exec *ex) { return (pcv_arena_mark){ex->arena->cur, ex->arena->top}; }

void pcv_arena_reset(pcv_exec *ex, pcv_arena_mark m)
{
    ex->arena->cur = m.cur;
    ex->arena->top = m.top;
}

int pcv_tensor_alloc_bytes(pcv_exec *ex, pcv_tensor *t, size_t bytes)
{
    pcv_arena *a = ex->arena;
    memset(t, 0, sizeof *t);
    size_t n = (bytes + sizeof(float) - 1) / sizeof(float);
    n = (n + ALIGN - 1) / ALIGN * ALIGN;
    if (n == 0)
        n = ALIGN;
    if (n > a->chunk_limit)
        return pcv_set_error(ex->err, PCV_ERR_OOM, "%s: a tensor of %zu bytes exceeds the device's maximum allocation "
                             "of %zu bytes", pcv_backend_device(ex->be), bytes, a->chunk_limit * sizeof(float));
    if (a->top + n > a->chunk_limit) { /* the next chunk, from its start */
        if (a->cur + 1 >= PCV_ARENA_MAX_CHUNKS)
            return pcv_set_error(ex->err, PCV_ERR_OOM, "%s: the activations need more than %d buffers of the "
                                 "device's maximum allocation (%zu bytes)", pcv_backend_device(ex->be),
                                 PCV_ARENA_MAX_CHUNKS, a->chunk_limit * sizeof(float));
        a->cur++;
        a->top = 0;
    }
    if (ex->dry) {
        if (a->top + n > a->peak[a->cur])
            a->peak[a->cur] = a->top + n;
    } else {
        if (a->cur >= a->nchunks || a->top + n > a->cap[a->cur])
            return pcv_set_error(ex->err, PCV_ERR_DEVICE, "internal error: the forward pass left its memory plan "
                                 "(chunk %d, %zu + %zu elements)", a->cur, a->top, n);
        t->buf = a->chunk[a->cur];
    }
    t->off = a->top;
    a->top += n;
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

/* ---- execution context ---------------------------------------------------------------------------- */

void pcv_exec_begin(pcv_exec *ex, pcv_backend *be, pcv_arena *arena, pcv_error *err, bool profile, bool dry)
{
    memset(ex, 0, sizeof *ex);
    ex->be = be;
    ex->err = err;
    ex->arena = arena;
    ex->dry = dry;
    ex->profile = profile && !dry;
    ex->stage = PCV_STAGE_PREPROCESS;
    ex->stage_start = pcv_now();
    if (arena)
        pcv_arena_begin(arena, dry);
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

/* ---- operations ------------------------------------------------------------------------------------ */

int op_linear_ex(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *w, const pcv_tensor *b,
                 pcv_tensor *y, const pcv_linear_epilogue *e)
{
    int64_t out = w->shape[0], in = w->shape[1];
    ex->flops[ex->stage] += 2.0 * (double)rows * (double)in * (double)out;
    if (ex->dry)
        return 0;
    pcv_gemm_args g = {
        .trans_a = false, .trans_b = true, .m = rows, .n = out, .k = in, .batch = 1,
        .alpha = 1.0f, .beta = e && e->accumulate ? 1.0f : 0.0f,
        .a = x->buf, .a_off = x->off, .lda = in,
        .b = w->buf, .b_off = w->off, .ldb = in,
        .c = y->buf, .c_off = y->off, .ldc = out,
        .bias = b ? b->buf : NULL, .bias_off = b ? b->off : 0,
        .gelu = e && e->gelu,
        .res = e && e->res ? e->res->buf : NULL, .res_off = e && e->res ? e->res->off : 0,
    };
    return pcv_backend_gemm(ex->be, &g, ex->err);
}

int op_linear(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *w, const pcv_tensor *b,
              pcv_tensor *y)
{
    return op_linear_ex(ex, x, rows, w, b, y, NULL);
}

int op_layernorm(pcv_exec *ex, const pcv_tensor *x, int64_t rows, const pcv_tensor *gamma, const pcv_tensor *beta,
                 pcv_tensor *y)
{
    if (ex->dry)
        return 0;
    /* LayerNorm eps is PyTorch's and Haiku's default 1e-5 everywhere (config.layer_norm_eps is unused). */
    return pcv_backend_layernorm(ex->be, x->buf, x->off, y->buf, y->off, rows, gamma->shape[0], gamma->buf,
                                 gamma->off, beta->buf, beta->off, 1e-5f, ex->err);
}

int op_activation(pcv_exec *ex, pcv_tensor *x, pcv_activation act)
{
    return ex->dry ? 0 : pcv_backend_activation(ex->be, x->buf, x->off, pcv_numel(x), act, ex->err);
}

int op_add(pcv_exec *ex, pcv_tensor *y, const pcv_tensor *a)
{
    return ex->dry ? 0 : pcv_backend_add(ex->be, y->buf, y->off, a->buf, a->off, pcv_numel(y), ex->err);
}

int op_attention(pcv_exec *ex, const pcv_attention_args *a)
{
    ex->flops[ex->stage] +=
        2.0 * (double)a->batch * (double)a->heads * (double)a->nq * (double)a->nk * (double)(a->dqk + a->dv);
    return ex->dry ? 0 : pcv_backend_attention(ex->be, a, ex->err);
}

int op_repeat(pcv_exec *ex, const pcv_tensor *src, int64_t n, int64_t times, pcv_tensor *dst, size_t dst_off)
{
    return ex->dry ? 0 : pcv_backend_repeat(ex->be, src->buf, src->off, n, times, dst->buf, dst->off + dst_off, ex->err);
}

int op_gather(pcv_exec *ex, const pcv_tensor *table, const pcv_tensor *ids, const pcv_tensor *pos, int64_t period,
              pcv_tensor *out, int64_t rows, int64_t cols)
{
    if (ex->dry)
        return 0;
    return pcv_backend_gather(ex->be, table->buf, table->off, ids->buf, ids->off, pos ? pos->buf : NULL,
                              pos ? pos->off : 0, period, out->buf, out->off, rows, cols, ex->err);
}

int op_transpose(pcv_exec *ex, const pcv_tensor *src, int64_t batch, int64_t rows, int64_t cols, pcv_tensor *dst)
{
    return ex->dry ? 0
                   : pcv_backend_transpose(ex->be, src->buf, src->off, batch, rows, cols, dst->buf, dst->off, ex->err);
}

int op_copy2d(pcv_exec *ex, const pcv_tensor *src, size_t src_off, int64_t src_ld, int64_t period, pcv_tensor *dst,
              size_t dst_off, int64_t dst_ld, int64_t rows, int64_t cols)
{
    if (ex->dry)
        return 0;
    return pcv_backend_copy2d(ex->be, src->buf, src->off + src_off, src_ld, period, dst->buf, dst->off + dst_off,
                              dst_ld, rows, cols, ex->err);
}

int op_im2col(pcv_exec *ex, const pcv_tensor *src, int64_t batch, int64_t C, int64_t H, int64_t W, int64_t kh,
              int64_t kw, int64_t stride, int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow, pcv_tensor *dst)
{
    if (ex->dry)
        return 0;
    return pcv_backend_im2col(ex->be, src->buf, src->off, batch, C, H, W, kh, kw, stride, pad_top, pad_left, oh, ow,
                              dst->buf, dst->off, ex->err);
}

int op_channel_affine(pcv_exec *ex, pcv_tensor *x, int64_t rows, int64_t cols, const pcv_tensor *scale,
                      const pcv_tensor *shift, bool relu)
{
    if (ex->dry)
        return 0;
    return pcv_backend_channel_affine(ex->be, x->buf, x->off, rows, cols, scale->buf, scale->off, shift->buf,
                                      shift->off, relu, ex->err);
}

int op_maxpool(pcv_exec *ex, const pcv_tensor *src, int64_t batch, int64_t H, int64_t W, int64_t C, int64_t k,
               int64_t stride, int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow, pcv_tensor *dst)
{
    if (ex->dry)
        return 0;
    return pcv_backend_maxpool(ex->be, src->buf, src->off, batch, H, W, C, k, stride, pad_top, pad_left, oh, ow,
                               dst->buf, dst->off, ex->err);
}

int op_upload(pcv_exec *ex, pcv_tensor *t, const void *src, size_t bytes)
{
    return ex->dry ? 0 : pcv_backend_upload(ex->be, t->buf, t->off * sizeof(float), src, bytes, ex->err);
}

int op_download(pcv_exec *ex, const pcv_tensor *t, void *dst, size_t bytes)
{
    return ex->dry ? 0 : pcv_backend_download(ex->be, t->buf, t->off * sizeof(float), dst, bytes, ex->err);
}
