/* The CPU reference backend: plain C loops (OpenMP across rows) and BLIS for GEMMs.
 *
 * Why BLIS: Debian's OpenBLAS 0.3.21 does not know recent Intel cores and silently runs its
 * SSE3 "Prescott" kernels (~35 GFLOP/s on the project machine) unless OPENBLAS_CORETYPE is
 * set. BLIS has its own CPU-feature dispatch; where the CPU has AVX-512 and the user has not
 * chosen with BLIS_ARCH_TYPE, we ask BLIS for its "skx" kernels (see cpu_blis_setup), and we
 * report the kernel set in the backend name so benchmarks say what ran.
 */
#include "backend/backend_impl.h"
#include "backend/cpu_vec.h"
#include "util/error.h"

#include <blis.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pcv_buffer {
    void *data;
    size_t bytes;
    bool owned;
};

typedef struct cpu_ctx {
    int threads;
} cpu_ctx;

#define F(buf, off) ((float *)(buf)->data + (off))

/* Below this many elements an operation runs on one thread: waking a team costs more. */
enum { PAR_MIN = 1 << 15 };

static void cpu_destroy(pcv_backend *be)
{
    if (!be)
        return;
    free(be->ctx);
    free(be);
}

static pcv_buffer *cpu_alloc(pcv_backend *be, size_t bytes, pcv_error *err)
{
    pcv_buffer *b = calloc(1, sizeof *b);
    size_t sz = (bytes + 63) / 64 * 64;
    if (b)
        b->data = aligned_alloc(64, sz ? sz : 64);
    if (!b || !b->data) {
        free(b);
        pcv_set_error(err, PCV_ERR_OOM, "cpu: cannot allocate %zu bytes", bytes);
        return NULL;
    }
    b->bytes = bytes;
    b->owned = true;
    return b;
}

static void cpu_release(pcv_backend *be, pcv_buffer *b)
{
    if (!b)
        return;
    if (b->owned)
        free(b->data);
    free(b);
}

static pcv_buffer *cpu_wrap_host(pcv_backend *be, const void *ptr, size_t bytes)
{
    if (((uintptr_t)ptr % sizeof(float)) != 0)
        return NULL;
    pcv_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->data = (void *)(uintptr_t)ptr; /* read-only by contract: weights are never written */
    b->bytes = bytes;
    b->owned = false;
    return b;
}

static int cpu_upload(pcv_backend *be, pcv_buffer *dst, size_t off, const void *src, size_t n,
                      pcv_error *err)
{
    if (off > dst->bytes || n > dst->bytes - off)
        return pcv_set_error(err, PCV_ERR_DEVICE, "cpu: upload of %zu bytes at %zu exceeds buffer of %zu",
                             n, off, dst->bytes);
    memcpy((char *)dst->data + off, src, n);
    return 0;
}

static int cpu_download(pcv_backend *be, pcv_buffer *src, size_t off, void *dst, size_t n,
                        pcv_error *err)
{
    if (off > src->bytes || n > src->bytes - off)
        return pcv_set_error(err, PCV_ERR_DEVICE, "cpu: download of %zu bytes at %zu exceeds buffer of %zu",
                             n, off, src->bytes);
    memcpy(dst, (const char *)src->data + off, n);
    return 0;
}

static int cpu_synchronize(pcv_backend *be, pcv_error *err) { return 0; }

/* One sgemm through BLIS's typed API (which takes general row and column strides). */
static void blis_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                      float *c, int64_t ldc, rntm_t *rntm)
{
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 m, n, k, &alpha, (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1, NULL,
                 rntm);
}

/* GEMMs are cut into tiles that the OpenMP threads take one at a time (dynamic schedule), each
 * tile one single-threaded BLIS call. BLIS's own threading is not used: its threads meet at
 * spinning barriers inside every call, and when one of them loses its core (a shared machine,
 * a virtual CPU the hypervisor deschedules) the others spin until it comes back; perf on the
 * 2-vCPU project machine under load found 64% of the process's CPU time in that spin loop
 * (bli_thrcomm_barrier). With independent tiles a thread that stalls delays the call by one
 * tile. Tiles split the output columns first (each tile packs a disjoint part of B and all of
 * A), then the rows when there are too few column blocks for the team. One tile per thread: every
 * tile packs A again, and with three per thread the 512-row GEMMs of the image models ran
 * slower (bench-ops, below in the commit history) than with one; on a busy machine the passive
 * OpenMP wait (cli/main.c) keeps a thread that finishes first from spinning. */

/* The runtime of every BLIS call: one thread (ours run the tiles), and BLIS's "sup" path for
 * small dimensions (taken whenever m, n or k is under a few hundred, so for every GEMM of the
 * 256- and 512-row latent arrays) told to pack B. Unpacked, the sup kernels read B through its
 * strides, which for our weights ([out][in], transposed here) and the attention's K^T costs a
 * quarter to a half of the time: single-thread CPU time on zen3, m256 n640 k1280 NT 6.24 ms
 * unpacked, 4.94 ms packed (the conventional path: 4.80 ms); m64 n256 k32 NT (scores of one
 * query tile) 0.05 ms against 0.02 ms. */
static void cpu_rntm_init(rntm_t *rntm)
{
    bli_rntm_init(rntm);
    bli_rntm_set_num_threads(1, rntm);
    bli_rntm_set_pack_b(true, rntm);
}
enum { TILE_COLS_MIN = 128, TILE_ROWS_MIN = 96, TILES_PER_THREAD = 1 };

static int64_t round_up(int64_t v, int64_t q) { return (v + q - 1) / q * q; }

static int cpu_gemm(pcv_backend *be, const pcv_gemm_args *g, pcv_error *err)
{
    cpu_ctx *ctx = be->ctx;
    int threads = ctx->threads;
    if (g->m <= 0 || g->n <= 0 || g->batch <= 0)
        return 0;
    double flops = 2.0 * (double)g->m * (double)g->n * (double)g->k * (double)g->batch;
    /* column tiles (multiples of 16 floats: every x86 micro-kernel's N or M register block
     * divides it), then row tiles, aiming at TILES_PER_THREAD tiles per thread */
    int64_t want = (int64_t)threads * TILES_PER_THREAD;
    int64_t per_batch = g->batch >= want ? 1 : (want + g->batch - 1) / g->batch;
    int64_t cw = round_up((g->n + per_batch - 1) / per_batch, 16);
    if (cw < TILE_COLS_MIN)
        cw = TILE_COLS_MIN;
    if (cw > g->n)
        cw = g->n > 0 ? g->n : 1;
    int64_t ncb = (g->n + cw - 1) / cw;
    int64_t rows_want = (per_batch + ncb - 1) / ncb;
    int64_t rh = round_up((g->m + rows_want - 1) / rows_want, 48);
    if (rh < TILE_ROWS_MIN)
        rh = TILE_ROWS_MIN;
    if (rh > g->m)
        rh = g->m > 0 ? g->m : 1;
    int64_t nrb = (g->m + rh - 1) / rh;
    int64_t ntiles = g->batch * nrb * ncb;
    if (threads < 2 || ntiles < 2 || flops < 4e6)
        threads = 1;
    const bool epilogue = g->bias || g->gelu || g->res; /* batch 1, ldc == n (pcv_backend_gemm) */
    const float *bias = g->bias ? F(g->bias, g->bias_off) : NULL, *res = g->res ? F(g->res, g->res_off) : NULL;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        rntm_t rntm;
        cpu_rntm_init(&rntm);
        if (threads == 1) {
            for (int64_t i = 0; i < g->batch; i++)
                blis_gemm(g->trans_a, g->trans_b, g->m, g->n, g->k, g->alpha,
                          F(g->a, g->a_off + i * g->stride_a), g->lda, F(g->b, g->b_off + i * g->stride_b),
                          g->ldb, g->beta, F(g->c, g->c_off + i * g->stride_c), g->ldc, &rntm);
            if (epilogue)
                pcv_vec_epilogue(F(g->c, g->c_off), g->ldc, g->m, g->n, bias, g->gelu, res, g->ldc);
        } else {
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < ntiles; t++) {
                int64_t cb = t % ncb, rb = (t / ncb) % nrb, i = t / (ncb * nrb);
                int64_t r0 = rb * rh, c0 = cb * cw;
                int64_t mm = g->m - r0 < rh ? g->m - r0 : rh, nn = g->n - c0 < cw ? g->n - c0 : cw;
                /* row r0 of op(A) and column c0 of op(B) */
                size_t a_at = g->a_off + i * g->stride_a + (size_t)(g->trans_a ? r0 : r0 * g->lda);
                size_t b_at = g->b_off + i * g->stride_b + (size_t)(g->trans_b ? c0 * g->ldb : c0);
                float *c = F(g->c, g->c_off + i * g->stride_c + r0 * g->ldc + c0);
                blis_gemm(g->trans_a, g->trans_b, mm, nn, g->k, g->alpha, F(g->a, a_at), g->lda, F(g->b, b_at),
                          g->ldb, g->beta, c, g->ldc, &rntm);
                if (epilogue) /* the tile is still in cache (batch 1: i == 0) */
                    pcv_vec_epilogue(c, g->ldc, mm, nn, bias ? bias + c0 : NULL, g->gelu,
                                     res ? res + r0 * g->ldc + c0 : NULL, g->ldc);
            }
        }
    }
    return 0;
}

static int cpu_bias_add(pcv_backend *be, pcv_buffer *xb, size_t x_off, int64_t rows, int64_t cols,
                        pcv_buffer *bb, size_t b_off, pcv_error *err)
{
    float *x = F(xb, x_off);
    const float *bias = F(bb, b_off);
#pragma omp parallel for schedule(static) if (rows * cols >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            x[r * cols + c] += bias[c];
    return 0;
}

static int cpu_layernorm(pcv_backend *be, pcv_buffer *xb, size_t x_off, pcv_buffer *yb, size_t y_off,
                         int64_t rows, int64_t cols, pcv_buffer *gb, size_t g_off, pcv_buffer *bb,
                         size_t b_off, float eps, pcv_error *err)
{
    const float *x = F(xb, x_off), *gamma = F(gb, g_off), *beta = F(bb, b_off);
    float *y = F(yb, y_off);
#pragma omp parallel for schedule(static) if (rows * cols >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        pcv_vec_layernorm_row(x + r * cols, y + r * cols, cols, gamma, beta, eps);
    return 0;
}

/* The activations in float32, in torch's operation order (cl/elementwise.cl repeats them). */
static inline float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }
static inline float gelu_erf(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }

enum { GELU_BLOCK = 4096 };

#define ACT_LOOP(expr)                                                                                                 \
    _Pragma("omp parallel for schedule(static) if (n >= PAR_MIN)") for (int64_t i = 0; i < n; i++)                    \
    {                                                                                                                  \
        const float v = x[i];                                                                                          \
        x[i] = (expr);                                                                                                 \
    }                                                                                                                  \
    break;

static int cpu_activation(pcv_backend *be, pcv_buffer *xb, size_t x_off, int64_t n, pcv_activation act,
                          pcv_error *err)
{
    float *x = F(xb, x_off);
    const float c = 0.79788456080286535588f;                 /* sqrt(2/pi) */
    const float lap = (float)(0.282095 * 1.41421356237309515); /* laplace: sigma * sqrt(2), as torch */
    switch (act) {
    case PCV_ACT_GELU:
        /* vectorized (cpu_vec.c), in blocks of rows so that both threads get work */
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i += GELU_BLOCK)
            pcv_vec_bias_gelu(x + i, 1, n - i < GELU_BLOCK ? n - i : GELU_BLOCK, NULL);
        break;
    case PCV_ACT_GELU_TANH: ACT_LOOP(0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v))))
    case PCV_ACT_GELU_10: ACT_LOOP(fminf(fmaxf(gelu_erf(v), -10.0f), 10.0f))
    case PCV_ACT_QUICK_GELU: ACT_LOOP(v / (1.0f + expf(-1.702f * v)))
    case PCV_ACT_RELU: ACT_LOOP(v > 0.0f ? v : 0.0f)
    case PCV_ACT_RELU2: ACT_LOOP(v > 0.0f ? v * v : 0.0f)
    case PCV_ACT_RELU6: ACT_LOOP(fminf(fmaxf(v, 0.0f), 6.0f))
    case PCV_ACT_LEAKY_RELU: ACT_LOOP(v > 0.0f ? v : 0.01f * v)
    case PCV_ACT_SILU: ACT_LOOP(v / (1.0f + expf(-v)))
    case PCV_ACT_MISH: ACT_LOOP(v * tanhf(softplus(v)))
    case PCV_ACT_SIGMOID: ACT_LOOP(1.0f / (1.0f + expf(-v)))
    case PCV_ACT_TANH: ACT_LOOP(tanhf(v))
    case PCV_ACT_LAPLACE: ACT_LOOP(0.5f * (1.0f + erff((v - 0.707107f) / lap)))
    case PCV_ACT_HARDSWISH: ACT_LOOP(v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f)
    case PCV_ACT_SQRT_SOFTPLUS: ACT_LOOP(sqrtf(softplus(v)))
    case PCV_ACT_LINEAR:
    case PCV_ACT_COUNT: break;
    }
    return 0;
}

static int cpu_add(pcv_backend *be, pcv_buffer *yb, size_t y_off, pcv_buffer *ab, size_t a_off,
                   int64_t n, pcv_error *err)
{
    float *y = F(yb, y_off);
    const float *a = F(ab, a_off);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] += a[i];
    return 0;
}

static int cpu_softmax(pcv_backend *be, pcv_buffer *xb, size_t x_off, int64_t rows, int64_t cols,
                       pcv_buffer *mb, size_t m_off, pcv_error *err)
{
    float *x = F(xb, x_off);
    const float *mask = mb ? F(mb, m_off) : NULL;
#pragma omp parallel for schedule(static) if (rows * cols >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        pcv_vec_softmax_row(x + r * cols, cols, 1.0f, mask, NULL);
    return 0;
}

static int cpu_gather(pcv_backend *be, pcv_buffer *tb, size_t t_off, pcv_buffer *ib, size_t i_off,
                      pcv_buffer *pb, size_t p_off, int64_t period, pcv_buffer *ob, size_t o_off,
                      int64_t rows, int64_t cols, pcv_error *err)
{
    const float *table = F(tb, t_off);
    const int32_t *ids = (const int32_t *)ib->data + i_off;
    const float *pos = pb ? F(pb, p_off) : NULL;
    float *out = F(ob, o_off);
#pragma omp parallel for schedule(static) if (rows * cols >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *src = table + (int64_t)ids[r] * cols;
        float *dst = out + r * cols;
        if (pos) {
            const float *p = pos + (r % period) * cols;
            for (int64_t c = 0; c < cols; c++)
                dst[c] = src[c] + p[c];
        } else {
            memcpy(dst, src, (size_t)cols * sizeof(float));
        }
    }
    return 0;
}

static int cpu_repeat(pcv_backend *be, pcv_buffer *sb, size_t s_off, int64_t n, int64_t times,
                      pcv_buffer *db, size_t d_off, pcv_error *err)
{
    for (int64_t i = 0; i < times; i++)
        memmove(F(db, d_off + i * n), F(sb, s_off), (size_t)n * sizeof(float));
    return 0;
}

/* Attention in query tiles: each task owns one (batch, head, query tile) and a private score
 * tile of qt x nk floats, so memory stays O(threads * qt * nk) instead of O(nq * nk).
 *
 * Tiles are as tall as QT_MAX rows when the score tile fits in TILE_BYTES and the team still gets
 * a task per thread, never shorter than QT_MIN rows: every tile packs K and V again, and the
 * GEMMs of short tiles run slower (single-thread CPU time on zen3, both GEMMs of one head, nq 512 nk
 * 512 d 128: 2.5 ms in 64-row tiles, 2.2 ms in 256-row tiles; nq 512 nk 4096 d 261 (the image
 * models' cross-attention): 47 ms against 35 ms). */
enum { QT_MIN = 64, QT_MAX = 256 };
#define TILE_BYTES ((size_t)32 << 20)

static int64_t attn_tile_rows(const pcv_attention_args *a, int threads, int64_t tile_keys)
{
    int64_t nq = a->nq, nk = tile_keys > 0 ? tile_keys : 1;
    int64_t cap = (int64_t)(TILE_BYTES / sizeof(float)) / nk;
    cap = cap > QT_MAX ? QT_MAX : cap < QT_MIN ? QT_MIN : cap;
    int64_t ntiles = (nq + cap - 1) / cap;
    /* enough tasks for the team, as long as tiles stay QT_MIN rows tall */
    while (a->batch * a->heads * ntiles < threads && (nq + ntiles) / (ntiles + 1) >= QT_MIN)
        ntiles++;
    int64_t qt = (nq + ntiles - 1) / ntiles;
    qt = (qt + 15) / 16 * 16; /* whole register blocks */
    return qt < 1 ? 1 : qt > QT_MAX ? QT_MAX : qt;
}

/* One task: the attention of nq <= QT_MAX query rows of one (batch, head), keys in blocks of
 * kb (all of them when kb == nk; KEY_BLOCK when there are more than KEYS_STREAM keys, the image
 * models' and optical flow's encoder cross-attention with 50,176 and 182,528 keys), by an
 * online softmax: for each block S = (Q K^T) / scale (the scale folded into the GEMM's alpha),
 * masked per the mode (backend.h), each row's running maximum m and sum l, the output rows so far
 * rescaled by exp(m_old - m_new) when the maximum grows, and the block's exp(S - m) V added; at the
 * end each output row divided by l (dv values a row instead of a pass over nk scores). The score
 * tile is qt x kb whatever the number of keys, so query tiles stay QT_MAX rows tall and K and V
 * are packed once per 256 queries: the flow model's cross-attention (nq 2048, nk 182528, d 322)
 * spent about a third of its time packing K and V again for tiles of 64 rows and streaming a
 * 47 MB score tile through memory (bench-ops -d cpu --model flow: 4.15 s -> 3.0-3.4 s).
 * Haiku mode: masked scores are -1e30 (a selection, not an addition), and a row without any valid
 * key gets an output of 0. HF mode: (1 - kmask) * -FLT_MAX is added; a fully masked row gets
 * uniform weights (all its scores equal -FLT_MAX). */
enum { KEYS_STREAM = 4096, KEY_BLOCK = 2048 };

static void attn_task(const pcv_attention_args *a, int64_t kb, const float *q, const float *k, const float *v,
                      float *o, int64_t nq, const float *kmask, const float *qmask, float *s, rntm_t *rntm)
{
    float mx[QT_MAX];
    double sum[QT_MAX];
    bool any[QT_MAX];
    const bool haiku = a->mode == PCV_ATTN_HAIKU, haiku_masked = haiku && (kmask || qmask);
    for (int64_t i = 0; i < nq; i++) {
        mx[i] = -INFINITY;
        sum[i] = 0.0;
        any[i] = !haiku_masked;
    }
    const float inv = (float)(1.0 / (double)a->scale);
    for (int64_t k0 = 0; k0 < a->nk; k0 += kb) {
        const int64_t kn = a->nk - k0 < kb ? a->nk - k0 : kb;
        blis_gemm(false, true, nq, kn, a->dqk, inv, q, a->q_ld, k + k0 * a->k_ld, a->k_ld, 0.0f, s, kn, rntm);
        for (int64_t i = 0; i < nq; i++) {
            float *row = s + i * kn;
            const float old = mx[i];
            if (haiku_masked) {
                const float qkeep = qmask ? qmask[i] : 1.0f;
                for (int64_t j = 0; j < kn; j++) {
                    bool keep = qkeep != 0.0f && (!kmask || kmask[k0 + j] != 0.0f);
                    row[j] = keep ? row[j] : -1e30f;
                    any[i] |= keep;
                }
            }
            const double bsum = pcv_vec_softmax_block(row, kn, 1.0f, !haiku && kmask ? kmask + k0 : NULL, &mx[i]);
            if (k0 > 0 && mx[i] != old) { /* a new maximum: what came before shrinks */
                const float alpha = expf(old - mx[i]);
                sum[i] *= alpha;
                pcv_vec_scale(o + i * a->o_ld, a->dv, alpha);
            }
            sum[i] += bsum;
        }
        blis_gemm(false, false, nq, a->dv, kn, 1.0f, s, kn, v + k0 * a->v_ld, a->v_ld, k0 > 0 ? 1.0f : 0.0f, o,
                  a->o_ld, rntm);
    }
    for (int64_t i = 0; i < nq; i++) {
        float *orow = o + i * a->o_ld;
        if (!any[i]) /* Haiku, no valid key: 0 */
            memset(orow, 0, (size_t)a->dv * sizeof(float));
        else
            pcv_vec_scale(orow, a->dv, (float)(1.0 / sum[i]));
    }
}

static int cpu_attention(pcv_backend *be, const pcv_attention_args *a, pcv_error *err)
{
    cpu_ctx *ctx = be->ctx;
    const int64_t kb = a->nk > KEYS_STREAM ? KEY_BLOCK : a->nk > 0 ? a->nk : 1;
    const int64_t QT = attn_tile_rows(a, ctx->threads, kb);
    int64_t ntiles = (a->nq + QT - 1) / QT;
    int64_t ntasks = a->batch * a->heads * ntiles;
    int nthreads = ctx->threads;
    size_t tile_floats = (size_t)QT * (size_t)kb;
    size_t stride = (tile_floats * sizeof(float) + 63) / 64 * 64 / sizeof(float);
    float *scratch = aligned_alloc(64, stride * sizeof(float) * (size_t)nthreads);
    if (!scratch)
        return pcv_set_error(err, PCV_ERR_OOM, "cpu attention: cannot allocate %d score tiles of %zu floats",
                             nthreads, tile_floats);
    const float *kmask_base = a->kmask ? F(a->kmask, a->kmask_off) : NULL;
    const float *qmask_base = a->qmask ? F(a->qmask, a->qmask_off) : NULL;

#pragma omp parallel num_threads(nthreads) if (ntasks > 1 && a->nq * a->nk * (a->dqk + a->dv) >= PAR_MIN)
    {
        rntm_t rntm;
        cpu_rntm_init(&rntm); /* one thread: parallelism comes from the task loop */
        float *s = scratch + (size_t)omp_get_thread_num() * stride;
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < ntasks; t++) {
            int64_t tile = t % ntiles, bh = t / ntiles;
            int64_t h = bh % a->heads, b = bh / a->heads;
            int64_t q0 = tile * QT, nq = a->nq - q0 < QT ? a->nq - q0 : QT;
            const float *q = F(a->q, a->q_off + (b * a->nq + q0) * a->q_ld + h * a->dqk);
            const float *k = F(a->k, a->k_off + b * a->nk * a->k_ld + h * a->dqk);
            const float *v = F(a->v, a->v_off + b * a->nk * a->v_ld + h * a->dv);
            float *o = F(a->o, a->o_off + (b * a->nq + q0) * a->o_ld + h * a->dv);
            const float *kmask = kmask_base ? kmask_base + b * a->nk : NULL;
            const float *qmask = qmask_base ? qmask_base + b * a->nq + q0 : NULL;
            attn_task(a, kb, q, k, v, o, nq, kmask, qmask, s, &rntm);
        }
    }
    free(scratch);
    return 0;
}

static int cpu_transpose(pcv_backend *be, pcv_buffer *sb, size_t s_off, int64_t batch, int64_t rows,
                         int64_t cols, pcv_buffer *db, size_t d_off, pcv_error *err)
{
    const float *src = F(sb, s_off);
    float *dst = F(db, d_off);
    enum { T = 32 }; /* cache blocking */
#pragma omp parallel for collapse(2) schedule(static) if (batch * rows * cols >= PAR_MIN)
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i0 = 0; i0 < rows; i0 += T)
            for (int64_t j0 = 0; j0 < cols; j0 += T)
                for (int64_t i = i0; i < rows && i < i0 + T; i++)
                    for (int64_t j = j0; j < cols && j < j0 + T; j++)
                        dst[(b * cols + j) * rows + i] = src[(b * rows + i) * cols + j];
    return 0;
}

static int cpu_copy2d(pcv_backend *be, pcv_buffer *sb, size_t s_off, int64_t src_ld, int64_t period,
                      pcv_buffer *db, size_t d_off, int64_t dst_ld, int64_t rows, int64_t cols, pcv_error *err)
{
    const float *src = F(sb, s_off);
    float *dst = F(db, d_off);
#pragma omp parallel for schedule(static) if (rows * cols >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + r * dst_ld, src + (r % period) * src_ld, (size_t)cols * sizeof(float));
    return 0;
}

static int cpu_im2col(pcv_backend *be, pcv_buffer *sb, size_t s_off, int64_t batch, int64_t C, int64_t H,
                      int64_t W, int64_t kh, int64_t kw, int64_t stride, int64_t pad_top, int64_t pad_left,
                      int64_t oh, int64_t ow, pcv_buffer *db, size_t d_off, pcv_error *err)
{
    const float *src = F(sb, s_off);
    float *dst = F(db, d_off);
    int64_t ncol = C * kh * kw;
#pragma omp parallel for collapse(2) schedule(static) if (batch * oh * ow * ncol >= PAR_MIN)
    for (int64_t b = 0; b < batch; b++)
        for (int64_t y = 0; y < oh; y++)
            for (int64_t x = 0; x < ow; x++) {
                float *row = dst + ((b * oh + y) * ow + x) * ncol;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t i = 0; i < kh; i++) {
                        int64_t sy = y * stride + i - pad_top;
                        for (int64_t j = 0; j < kw; j++) {
                            int64_t sx = x * stride + j - pad_left;
                            bool in = sy >= 0 && sy < H && sx >= 0 && sx < W;
                            row[(c * kh + i) * kw + j] = in ? src[((b * C + c) * H + sy) * W + sx] : 0.0f;
                        }
                    }
            }
    return 0;
}

static int cpu_channel_affine(pcv_backend *be, pcv_buffer *xb, size_t x_off, int64_t rows, int64_t cols,
                              pcv_buffer *scb, size_t sc_off, pcv_buffer *shb, size_t sh_off, bool relu,
                              pcv_error *err)
{
    float *x = F(xb, x_off);
    const float *scale = F(scb, sc_off), *shift = F(shb, sh_off);
#pragma omp parallel for schedule(static) if (rows * cols >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = x[r * cols + c] * scale[c] + shift[c];
            x[r * cols + c] = relu && v < 0.0f ? 0.0f : v;
        }
    return 0;
}

static int cpu_maxpool(pcv_backend *be, pcv_buffer *sb, size_t s_off, int64_t batch, int64_t H, int64_t W,
                       int64_t C, int64_t k, int64_t stride, int64_t pad_top, int64_t pad_left, int64_t oh,
                       int64_t ow, pcv_buffer *db, size_t d_off, pcv_error *err)
{
    const float *src = F(sb, s_off);
    float *dst = F(db, d_off);
#pragma omp parallel for collapse(2) schedule(static) if (batch * oh * ow * C >= PAR_MIN)
    for (int64_t b = 0; b < batch; b++)
        for (int64_t y = 0; y < oh; y++)
            for (int64_t x = 0; x < ow; x++) {
                float *out = dst + ((b * oh + y) * ow + x) * C;
                for (int64_t c = 0; c < C; c++)
                    out[c] = -INFINITY;
                for (int64_t i = 0; i < k; i++) {
                    int64_t sy = y * stride + i - pad_top;
                    if (sy < 0 || sy >= H)
                        continue;
                    for (int64_t j = 0; j < k; j++) {
                        int64_t sx = x * stride + j - pad_left;
                        if (sx < 0 || sx >= W)
                            continue;
                        const float *in = src + ((b * H + sy) * W + sx) * C;
                        for (int64_t c = 0; c < C; c++)
                            out[c] = in[c] > out[c] ? in[c] : out[c];
                    }
                }
            }
    return 0;
}

static size_t cpu_buffer_bytes(const pcv_buffer *b) { return b->bytes; }
static bool cpu_has_fp64(const pcv_backend *be) { return true; }

static const pcv_backend_ops cpu_ops = {
    .buffer_bytes = cpu_buffer_bytes,
    .has_fp64 = cpu_has_fp64,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .wrap_host = cpu_wrap_host,
    .upload = cpu_upload,
    .download = cpu_download,
    .synchronize = cpu_synchronize,
    .gemm = cpu_gemm,
    .gemm_epilogue = true,
    .bias_add = cpu_bias_add,
    .layernorm = cpu_layernorm,
    .activation = cpu_activation,
    .add = cpu_add,
    .softmax = cpu_softmax,
    .gather = cpu_gather,
    .repeat = cpu_repeat,
    .attention = cpu_attention,
    .transpose = cpu_transpose,
    .copy2d = cpu_copy2d,
    .im2col = cpu_im2col,
    .channel_affine = cpu_channel_affine,
    .maxpool = cpu_maxpool,
};

/* Chooses BLIS's kernel set once per process: AVX-512 ("skx") kernels when the CPU has them
 * and the user did not set BLIS_ARCH_TYPE. Must run before the first BLIS call. */
static void cpu_blis_setup(void)
{
    static bool done;
    if (done)
        return;
    done = true;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!getenv("BLIS_ARCH_TYPE") && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        setenv("BLIS_ARCH_TYPE", "skx", 0);
#endif
}

pcv_backend *pcv_backend_cpu_create(const pcv_backend_options *opt, pcv_error *err)
{
    int threads = opt ? opt->threads : 0;
    cpu_blis_setup();
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    pcv_backend *be = calloc(1, sizeof *be);
    cpu_ctx *ctx = calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        pcv_set_error(err, PCV_ERR_OOM, "cpu: out of memory creating the backend");
        return NULL;
    }
    ctx->threads = threads;
    bli_thread_set_num_threads(1); /* every call passes its own rntm_t; threads are ours (cpu_gemm) */
    omp_set_num_threads(threads);
    be->ops = &cpu_ops;
    be->ctx = ctx;
    snprintf(be->name, sizeof be->name, "cpu");
    snprintf(be->device_name, sizeof be->device_name, "CPU reference path (BLIS %s kernels, %d thread%s)",
             bli_arch_string(bli_arch_query_id()), threads, threads == 1 ? "" : "s");
    /* how OpenMP threads wait: perceiver-cl's choice (cli/main.c), the user's, or libgomp's */
    const char *why = getenv("PERCEIVER_OMP_WAIT"), *pol = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    char wait[200];
    if (why && *why)
        snprintf(wait, sizeof wait, "%.150s", why);
    else if (pol || spin)
        snprintf(wait, sizeof wait, "%s%.40s%s%s%.40s (environment)", pol ? "OMP_WAIT_POLICY=" : "", pol ? pol : "",
                 pol && spin ? " " : "", spin ? "GOMP_SPINCOUNT=" : "", spin ? spin : "");
    else
        snprintf(wait, sizeof wait, "the OpenMP runtime's default");
    snprintf(be->driver, sizeof be->driver, "BLIS %s (%s kernels), OpenMP %d, threads wait: %s",
             bli_info_get_version_str(), bli_arch_string(bli_arch_query_id()), _OPENMP, wait);
    return be;
}
