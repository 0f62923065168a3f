/* The backend module's front: the device registry, the process-wide runtime options, and the
 * pcv_backend_*() wrappers through which every other module reaches a backend's vtable. */
#include "backend/backend_impl.h"
#include "util/error.h"
#include "backend/opencl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- runtime options ---------------------------------------------------------------------------- */

static pcv_runtime_options g_runtime = {.kernel_cache = -1};
static char g_cache_dir[4096], g_kernel_dir[4096], g_tuning[1024];

pcv_status pcv_runtime_configure(const pcv_runtime_options *opt, pcv_error *err)
{
    pcv_runtime_options o = opt ? *opt : (pcv_runtime_options){.kernel_cache = -1};
    if (o.kernel_cache < -1 || o.kernel_cache > 1)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_runtime_configure: kernel_cache must be -1, 0 or 1");
    const struct {
        const char *src;
        char *dst;
        size_t cap;
        const char **field;
        const char *what;
    } strs[] = {
        {o.cache_dir, g_cache_dir, sizeof g_cache_dir, &o.cache_dir, "cache_dir"},
        {o.kernel_dir, g_kernel_dir, sizeof g_kernel_dir, &o.kernel_dir, "kernel_dir"},
        {o.tuning, g_tuning, sizeof g_tuning, &o.tuning, "tuning"},
    };
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        if (!strs[i].src)
            continue;
        if (strlen(strs[i].src) >= strs[i].cap)
            return pcv_set_error(err, PCV_ERR_INPUT, "pcv_runtime_configure: %s is too long", strs[i].what);
        snprintf(strs[i].dst, strs[i].cap, "%s", strs[i].src);
        *strs[i].field = strs[i].dst;
    }
    g_runtime = o;
    return 0;
}

const pcv_runtime_options *pcv_runtime(void) { return &g_runtime; }

void pcv_progress(const char *what, int64_t done, int64_t total)
{
    if (g_runtime.progress)
        g_runtime.progress(g_runtime.progress_user, what, done, total);
}

/* ---- registry ----------------------------------------------------------------------------------- */

pcv_backend *pcv_backend_open(const pcv_backend_options *opt, pcv_error *err)
{
    pcv_backend_options o = opt ? *opt : (pcv_backend_options){0};
    if (o.device && !*o.device) { /* never silently the CPU: an empty --device is a mistake */
        pcv_set_error(err, PCV_ERR_INPUT, "empty device name: give 'cpu', an OpenCL device index or part of a "
                      "device name (see 'perceiver-cl devices')");
        return NULL;
    }
    if (!o.device || strcasecmp(o.device, "cpu") == 0)
        return pcv_backend_cpu_create(&o, err);
    int index = pcv_cl_find_device(o.device, err);
    if (index < 0)
        return NULL;
    return pcv_backend_opencl_create(index, &o, err);
}

void pcv_backend_close(pcv_backend *be)
{
    if (be)
        be->ops->destroy(be);
}

const char *pcv_backend_name(const pcv_backend *be) { return be->name; }
const char *pcv_backend_device(const pcv_backend *be) { return be->device_name; }
const char *pcv_backend_driver(const pcv_backend *be) { return be->driver; }
bool pcv_backend_is_cpu(const pcv_backend *be) { return strcmp(be->name, "cpu") == 0; }

uint64_t pcv_backend_max_alloc(const pcv_backend *be)
{
    return be->ops->max_alloc ? be->ops->max_alloc(be) : UINT64_MAX / 2;
}

void pcv_backend_get_stats(const pcv_backend *be, pcv_backend_stats *s)
{
    s->allocs = be->allocs;
    s->releases = be->releases;
    s->bytes_in_use = be->bytes_in_use;
    s->peak_bytes = be->peak_bytes;
}

bool pcv_backend_supports(const pcv_backend *be, pcv_backend_feature f)
{
    switch (f) {
    case PCV_FEATURE_HOST_MEMORY:
        return be->ops->wrap_host != NULL;
    case PCV_FEATURE_FP64:
        return be->ops->has_fp64 && be->ops->has_fp64(be);
    }
    return false;
}

/* ---- memory ------------------------------------------------------------------------------------- */

static void count_alloc(pcv_backend *be, pcv_buffer *b)
{
    if (!b)
        return;
    be->allocs++;
    be->bytes_in_use += be->ops->buffer_bytes(b);
    if (be->bytes_in_use > be->peak_bytes)
        be->peak_bytes = be->bytes_in_use;
}

pcv_buffer *pcv_backend_alloc(pcv_backend *be, size_t bytes, pcv_error *err)
{
    pcv_buffer *b = be->ops->alloc(be, bytes, err);
    count_alloc(be, b);
    return b;
}

void pcv_backend_release(pcv_backend *be, pcv_buffer *buf)
{
    if (!buf)
        return;
    be->releases++;
    be->bytes_in_use -= be->ops->buffer_bytes(buf);
    be->ops->release(be, buf);
}

pcv_buffer *pcv_backend_wrap_host(pcv_backend *be, const void *ptr, size_t bytes)
{
    if (!be->ops->wrap_host)
        return NULL;
    pcv_buffer *b = be->ops->wrap_host(be, ptr, bytes);
    count_alloc(be, b);
    return b;
}

int pcv_backend_upload(pcv_backend *be, pcv_buffer *dst, size_t off_bytes, const void *src, size_t bytes,
                       pcv_error *err)
{
    if (off_bytes + bytes > be->ops->buffer_bytes(dst))
        return pcv_set_error(err, PCV_ERR_SHAPE, "%s: upload of %zu bytes at %zu past a %zu-byte buffer", be->name,
                             bytes, off_bytes, be->ops->buffer_bytes(dst));
    return be->ops->upload(be, dst, off_bytes, src, bytes, err);
}

int pcv_backend_download(pcv_backend *be, pcv_buffer *src, size_t off_bytes, void *dst, size_t bytes,
                         pcv_error *err)
{
    if (off_bytes + bytes > be->ops->buffer_bytes(src))
        return pcv_set_error(err, PCV_ERR_SHAPE, "%s: download of %zu bytes at %zu past a %zu-byte buffer", be->name,
                             bytes, off_bytes, be->ops->buffer_bytes(src));
    return be->ops->download(be, src, off_bytes, dst, bytes, err);
}

int pcv_backend_synchronize(pcv_backend *be, pcv_error *err) { return be->ops->synchronize(be, err); }

/* ---- operations ----------------------------------------------------------------------------------
 * Each wrapper checks that every operand it can size lies inside its buffer, so a shape bug in
 * model code is an error naming the operation rather than an out-of-bounds access. */

static bool fits(const pcv_backend *be, const pcv_buffer *b, size_t off, int64_t n, size_t esize)
{
    return b && n >= 0 && (off + (size_t)n) * esize <= be->ops->buffer_bytes(b);
}

#define CHECK_OPERAND(b, off, n, what)                                                                       \
    do {                                                                                                     \
        if (!fits(be, (b), (off), (n), sizeof(float)))                                                       \
            return pcv_set_error(err, PCV_ERR_SHAPE, "%s: %s operand %s (%lld elements at %zu) is outside its " \
                                 "buffer", be->name, __func__ + 12, what, (long long)(n), (size_t)(off));     \
    } while (0)

/* Elements touched by a row-major [rows][cols] view with row stride ld. */
static int64_t span(int64_t rows, int64_t cols, int64_t ld)
{
    return rows <= 0 || cols <= 0 ? 0 : (rows - 1) * ld + cols;
}

int pcv_backend_gemm(pcv_backend *be, const pcv_gemm_args *g, pcv_error *err)
{
    if (g->m < 0 || g->n < 0 || g->k < 0 || g->batch < 0)
        return pcv_set_error(err, PCV_ERR_SHAPE, "%s: gemm with negative size", be->name);
    if (g->m == 0 || g->n == 0 || g->batch == 0)
        return 0;
    int64_t ar = g->trans_a ? g->k : g->m, ac = g->trans_a ? g->m : g->k;
    int64_t br = g->trans_b ? g->n : g->k, bc = g->trans_b ? g->k : g->n;
    if (g->lda < ac || g->ldb < bc || g->ldc < g->n)
        return pcv_set_error(err, PCV_ERR_SHAPE, "%s: gemm leading dimension smaller than a row", be->name);
    int64_t last = g->batch - 1;
    CHECK_OPERAND(g->a, g->a_off, last * g->stride_a + span(ar, ac, g->lda), "A");
    CHECK_OPERAND(g->b, g->b_off, last * g->stride_b + span(br, bc, g->ldb), "B");
    CHECK_OPERAND(g->c, g->c_off, last * g->stride_c + span(g->m, g->n, g->ldc), "C");
    bool epilogue = g->bias || g->gelu || g->res;
    if (!epilogue)
        return be->ops->gemm(be, g, err);
    if (g->batch != 1 || g->ldc != g->n)
        return pcv_set_error(err, PCV_ERR_SHAPE, "%s: gemm epilogue on a batched or strided C", be->name);
    if (g->bias)
        CHECK_OPERAND(g->bias, g->bias_off, g->n, "bias");
    if (g->res)
        CHECK_OPERAND(g->res, g->res_off, g->m * g->n, "res");
    if (be->ops->gemm_epilogue)
        return be->ops->gemm(be, g, err);
    pcv_gemm_args plain = *g;
    plain.bias = plain.res = NULL;
    plain.gelu = false;
    int rc = be->ops->gemm(be, &plain, err);
    if (!rc && g->bias)
        rc = be->ops->bias_add(be, g->c, g->c_off, g->m, g->n, g->bias, g->bias_off, err);
    if (!rc && g->gelu)
        rc = be->ops->activation(be, g->c, g->c_off, g->m * g->n, PCV_ACT_GELU, err);
    if (!rc && g->res)
        rc = be->ops->add(be, g->c, g->c_off, g->res, g->res_off, g->m * g->n, err);
    return rc;
}

int pcv_backend_bias_add(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols, pcv_buffer *bias,
                         size_t bias_off, pcv_error *err)
{
    CHECK_OPERAND(x, x_off, rows * cols, "x");
    CHECK_OPERAND(bias, bias_off, cols, "bias");
    return be->ops->bias_add(be, x, x_off, rows, cols, bias, bias_off, err);
}

int pcv_backend_layernorm(pcv_backend *be, pcv_buffer *x, size_t x_off, pcv_buffer *y, size_t y_off, int64_t rows,
                          int64_t cols, pcv_buffer *gamma, size_t g_off, pcv_buffer *beta, size_t b_off, float eps,
                          pcv_error *err)
{
    CHECK_OPERAND(x, x_off, rows * cols, "x");
    CHECK_OPERAND(y, y_off, rows * cols, "y");
    CHECK_OPERAND(gamma, g_off, cols, "gamma");
    CHECK_OPERAND(beta, b_off, cols, "beta");
    return be->ops->layernorm(be, x, x_off, y, y_off, rows, cols, gamma, g_off, beta, b_off, eps, err);
}

int pcv_backend_activation(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t n, pcv_activation act,
                           pcv_error *err)
{
    CHECK_OPERAND(x, x_off, n, "x");
    if ((unsigned)act >= PCV_ACT_COUNT)
        return pcv_set_error(err, PCV_ERR_INPUT, "activation: unknown kind %d", (int)act);
    if (act == PCV_ACT_LINEAR)
        return 0;
    return be->ops->activation(be, x, x_off, n, act, err);
}

int pcv_backend_add(pcv_backend *be, pcv_buffer *y, size_t y_off, pcv_buffer *a, size_t a_off, int64_t n,
                    pcv_error *err)
{
    CHECK_OPERAND(y, y_off, n, "y");
    CHECK_OPERAND(a, a_off, n, "a");
    return be->ops->add(be, y, y_off, a, a_off, n, err);
}

int pcv_backend_softmax(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols, pcv_buffer *mask,
                        size_t mask_off, pcv_error *err)
{
    CHECK_OPERAND(x, x_off, rows * cols, "x");
    if (mask)
        CHECK_OPERAND(mask, mask_off, cols, "mask");
    return be->ops->softmax(be, x, x_off, rows, cols, mask, mask_off, err);
}

int pcv_backend_gather(pcv_backend *be, pcv_buffer *table, size_t t_off, pcv_buffer *ids, size_t ids_off,
                       pcv_buffer *pos, size_t pos_off, int64_t period, pcv_buffer *out, size_t out_off, int64_t rows,
                       int64_t cols, pcv_error *err)
{
    CHECK_OPERAND(ids, ids_off, rows, "ids"); /* int32: same size as float */
    CHECK_OPERAND(out, out_off, rows * cols, "out");
    if (pos)
        CHECK_OPERAND(pos, pos_off, (period < rows ? period : rows) * cols, "pos");
    return be->ops->gather(be, table, t_off, ids, ids_off, pos, pos_off, period, out, out_off, rows, cols, err);
}

int pcv_backend_repeat(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t n, int64_t times, pcv_buffer *dst,
                       size_t dst_off, pcv_error *err)
{
    CHECK_OPERAND(src, src_off, n, "src");
    CHECK_OPERAND(dst, dst_off, n * times, "dst");
    return be->ops->repeat(be, src, src_off, n, times, dst, dst_off, err);
}

int pcv_backend_attention(pcv_backend *be, const pcv_attention_args *a, pcv_error *err)
{
    if (a->batch <= 0 || a->heads <= 0 || a->nq <= 0 || a->dv <= 0)
        return 0;
    /* a softmax over no keys has no value (the references fail or give NaN): refused on every
     * backend alike */
    if (a->nk <= 0 || a->dqk <= 0)
        return pcv_set_error(err, PCV_ERR_SHAPE, "attention with %lld keys of %lld channels (%s)", (long long)a->nk,
                             (long long)a->dqk, pcv_backend_device(be));
    CHECK_OPERAND(a->q, a->q_off, a->batch * a->nq * a->q_ld - (a->q_ld - a->heads * a->dqk), "Q");
    CHECK_OPERAND(a->k, a->k_off, a->batch * a->nk * a->k_ld - (a->k_ld - a->heads * a->dqk), "K");
    CHECK_OPERAND(a->v, a->v_off, a->batch * a->nk * a->v_ld - (a->v_ld - a->heads * a->dv), "V");
    CHECK_OPERAND(a->o, a->o_off, a->batch * a->nq * a->o_ld - (a->o_ld - a->heads * a->dv), "O");
    if (a->kmask)
        CHECK_OPERAND(a->kmask, a->kmask_off, a->batch * a->nk, "kmask");
    if (a->qmask)
        CHECK_OPERAND(a->qmask, a->qmask_off, a->batch * a->nq, "qmask");
    return be->ops->attention(be, a, err);
}

int pcv_backend_transpose(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t batch, int64_t rows, int64_t cols,
                          pcv_buffer *dst, size_t dst_off, pcv_error *err)
{
    CHECK_OPERAND(src, src_off, batch * rows * cols, "src");
    CHECK_OPERAND(dst, dst_off, batch * rows * cols, "dst");
    return be->ops->transpose(be, src, src_off, batch, rows, cols, dst, dst_off, err);
}

int pcv_backend_copy2d(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t src_ld, int64_t period,
                       pcv_buffer *dst, size_t dst_off, int64_t dst_ld, int64_t rows, int64_t cols, pcv_error *err)
{
    CHECK_OPERAND(src, src_off, span(period < rows ? period : rows, cols, src_ld), "src");
    CHECK_OPERAND(dst, dst_off, span(rows, cols, dst_ld), "dst");
    return be->ops->copy2d(be, src, src_off, src_ld, period, dst, dst_off, dst_ld, rows, cols, err);
}

int pcv_backend_im2col(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t batch, int64_t C, int64_t H,
                       int64_t W, int64_t kh, int64_t kw, int64_t stride, int64_t pad_top, int64_t pad_left,
                       int64_t oh, int64_t ow, pcv_buffer *dst, size_t dst_off, pcv_error *err)
{
    CHECK_OPERAND(src, src_off, batch * C * H * W, "src");
    CHECK_OPERAND(dst, dst_off, batch * oh * ow * C * kh * kw, "dst");
    return be->ops->im2col(be, src, src_off, batch, C, H, W, kh, kw, stride, pad_top, pad_left, oh, ow, dst, dst_off,
                           err);
}

int pcv_backend_channel_affine(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols,
                               pcv_buffer *scale, size_t scale_off, pcv_buffer *shift, size_t shift_off, bool relu,
                               pcv_error *err)
{
    CHECK_OPERAND(x, x_off, rows * cols, "x");
    CHECK_OPERAND(scale, scale_off, cols, "scale");
    CHECK_OPERAND(shift, shift_off, cols, "shift");
    return be->ops->channel_affine(be, x, x_off, rows, cols, scale, scale_off, shift, shift_off, relu, err);
}

int pcv_backend_maxpool(pcv_backend *be, pcv_buffer *src, size_t src_off, int64_t batch, int64_t H, int64_t W,
                        int64_t C, int64_t k, int64_t stride, int64_t pad_top, int64_t pad_left, int64_t oh,
                        int64_t ow, pcv_buffer *dst, size_t dst_off, pcv_error *err)
{
    CHECK_OPERAND(src, src_off, batch * H * W * C, "src");
    CHECK_OPERAND(dst, dst_off, batch * oh * ow * C, "dst");
    return be->ops->maxpool(be, src, src_off, batch, H, W, C, k, stride, pad_top, pad_left, oh, ow, dst, dst_off,
                            err);
}
