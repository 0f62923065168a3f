/* The operation cases of opcases.h: the table, setup with guard regions, execution, and the
 * float64 references. */
#include "backend/opcases.h"

#include "util/error.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const float SENTINEL = 12345.678f;

/* every hidden_act formula in float64 (transformers' ACT2FN definitions) */
static double softplus64(double v) { return v > 20 ? v : log1p(exp(v)); }
static double gelu64(double v) { return 0.5 * v * (1 + erf(v / sqrt(2.0))); }

static double act64(pcv_activation a, double v)
{
    switch (a) {
    case PCV_ACT_GELU: return gelu64(v);
    case PCV_ACT_GELU_TANH: return 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    case PCV_ACT_GELU_10: return fmin(fmax(gelu64(v), -10), 10);
    case PCV_ACT_QUICK_GELU: return v / (1 + exp(-1.702 * v));
    case PCV_ACT_RELU: return v > 0 ? v : 0;
    case PCV_ACT_RELU2: return v > 0 ? v * v : 0;
    case PCV_ACT_RELU6: return fmin(fmax(v, 0), 6);
    case PCV_ACT_LEAKY_RELU: return v > 0 ? v : 0.01 * v;
    case PCV_ACT_SILU: return v / (1 + exp(-v));
    case PCV_ACT_MISH: return v * tanh(softplus64(v));
    case PCV_ACT_SIGMOID: return 1 / (1 + exp(-v));
    case PCV_ACT_TANH: return tanh(v);
    case PCV_ACT_LAPLACE: return 0.5 * (1 + erf((v - 0.707107) / (0.282095 * sqrt(2.0))));
    case PCV_ACT_HARDSWISH: return v * fmin(fmax(v + 3, 0), 6) / 6;
    case PCV_ACT_SQRT_SOFTPLUS: return sqrt(softplus64(v));
    default: return v;
    }
}

/* ---- the table ---------------------------------------------------------------------------------- */

#define GEMM(m_, n_, k_, b_, ta_, tb_, beta_) \
    {.op = PCV_OP_GEMM, .m = m_, .n = n_, .k = k_, .batch = b_, .ta = ta_, .tb = tb_, .beta = beta_}
#define GEMM4(m_, n_, k_, b_)                                                                                  \
    GEMM(m_, n_, k_, b_, false, false, 0), GEMM(m_, n_, k_, b_, true, false, 0), GEMM(m_, n_, k_, b_, false, true, 0), \
        GEMM(m_, n_, k_, b_, true, true, 0.75f)
#define GEMME(m_, n_, k_, tb_, epi_) \
    {.op = PCV_OP_GEMM, .m = m_, .n = n_, .k = k_, .batch = 1, .tb = tb_, .epi = epi_}
#define LN(m_, n_, off_) {.op = PCV_OP_LAYERNORM, .m = m_, .n = n_, .offset = off_}
#define ACT(n_, act_, xs_) {.op = PCV_OP_ACTIVATION, .m = 1, .n = n_, .act = act_, .xscale = xs_}
/* every activation at an odd length (the OpenCL kernels' vector tails), inputs in [-12, 12) */
#define ACT_ALL(n_)                                                                                            \
    ACT(n_, PCV_ACT_GELU, 6), ACT(n_, PCV_ACT_GELU_TANH, 6), ACT(n_, PCV_ACT_GELU_10, 6),                     \
        ACT(n_, PCV_ACT_QUICK_GELU, 6), ACT(n_, PCV_ACT_RELU, 6), ACT(n_, PCV_ACT_RELU2, 6),                  \
        ACT(n_, PCV_ACT_RELU6, 6), ACT(n_, PCV_ACT_LEAKY_RELU, 6), ACT(n_, PCV_ACT_SILU, 6),                  \
        ACT(n_, PCV_ACT_MISH, 6), ACT(n_, PCV_ACT_SIGMOID, 6), ACT(n_, PCV_ACT_TANH, 6),                      \
        ACT(n_, PCV_ACT_LINEAR, 6), ACT(n_, PCV_ACT_LAPLACE, 6), ACT(n_, PCV_ACT_HARDSWISH, 6),               \
        ACT(n_, PCV_ACT_SQRT_SOFTPLUS, 6)
#define ROWOP(op_, m_, n_) {.op = op_, .m = m_, .n = n_}
#define SOFTMAX(m_, n_, mk_) {.op = PCV_OP_SOFTMAX, .m = m_, .n = n_, .masked = mk_}
#define GATHER(m_, n_, pos_) {.op = PCV_OP_GATHER, .m = m_, .n = n_, .masked = pos_}
#define ATTN(mode_, b_, h_, nq_, nk_, dqk_, dv_, mask_)                                                        \
    {.op = PCV_OP_ATTENTION, .mode = mode_, .batch = b_, .heads = h_, .nq = nq_, .nk = nk_, .dqk = dqk_,       \
     .dv = dv_, .mask = mask_}
#define ATTN2(b_, h_, nq_, nk_, dqk_, dv_, mask_)                                                              \
    ATTN(PCV_ATTN_HF, b_, h_, nq_, nk_, dqk_, dv_, mask_), ATTN(PCV_ATTN_HAIKU, b_, h_, nq_, nk_, dqk_, dv_, mask_)
#define IMG(op_, b_, c_, h_, w_) {.op = op_, .batch = b_, .m = c_, .n = h_, .k = w_}
#define IMG5(b_, c_, h_, w_)                                                                                   \
    IMG(PCV_OP_TRANSPOSE, b_, c_, h_, w_), IMG(PCV_OP_COPY2D, b_, c_, h_, w_), IMG(PCV_OP_IM2COL, b_, c_, h_, w_), \
        IMG(PCV_OP_CHANNEL_AFFINE, b_, c_, h_, w_), IMG(PCV_OP_MAXPOOL, b_, c_, h_, w_)
/* a full-size model's operation (perf mode weights it by count) */
#define M_GEMM(model_, label_, count_, m_, n_, k_)                                                              \
    {.op = PCV_OP_GEMM, .model = model_, .label = label_, .count = count_, .m = m_, .n = n_, .k = k_, .batch = 1, \
     .tb = true}
#define M_ATTN(model_, label_, count_, h_, nq_, nk_, dqk_, dv_, mask_)                                           \
    {.op = PCV_OP_ATTENTION, .model = model_, .label = label_, .count = count_, .batch = 1, .heads = h_,         \
     .nq = nq_, .nk = nk_, .dqk = dqk_, .dv = dv_, .mask = mask_}
#define M_ROW(model_, label_, count_, op_, m_, n_)                                                              \
    {.op = op_, .model = model_, .label = label_, .count = count_, .m = m_, .n = n_}

static const pcv_op_case cases[] = {
    /* edges and odd sizes */
    GEMM4(1, 1, 1, 1), GEMM4(7, 5, 3, 1), GEMM4(64, 64, 64, 1), GEMM4(33, 65, 129, 2), GEMM4(128, 17, 256, 3),
    GEMM4(5, 300, 31, 4),
    /* GEMM epilogues (a linear layer's bias, GELU, residual), small and in several CPU tiles */
    GEMME(1, 1, 1, true, PCV_EPI_BIAS), GEMME(33, 65, 129, true, PCV_EPI_BIAS | PCV_EPI_GELU),
    GEMME(70, 301, 61, false, PCV_EPI_BIAS | PCV_EPI_RES), GEMME(70, 301, 61, true, PCV_EPI_RES),
    GEMME(67, 45, 33, true, PCV_EPI_GELU), GEMME(70, 301, 61, true, PCV_EPI_BIAS | PCV_EPI_GELU | PCV_EPI_RES),
    GEMME(256, 640, 96, true, PCV_EPI_BIAS | PCV_EPI_GELU), GEMME(300, 1283, 64, true, PCV_EPI_BIAS | PCV_EPI_RES),
    LN(1, 1, 0), LN(7, 33, 0), LN(300, 1280, 100),
    ACT(1, PCV_ACT_GELU, 1), ACT(100003, PCV_ACT_GELU, 1), ACT(1001, PCV_ACT_GELU_TANH, 1), ACT_ALL(4099),
    ROWOP(PCV_OP_BIAS_ADD, 1, 1), ROWOP(PCV_OP_BIAS_ADD, 67, 45), ROWOP(PCV_OP_ADD, 1, 1), ROWOP(PCV_OP_ADD, 67, 45),
    GATHER(1, 1, false), GATHER(67, 45, false), GATHER(67, 45, true), ROWOP(PCV_OP_REPEAT, 1, 1),
    ROWOP(PCV_OP_REPEAT, 67, 45),
    SOFTMAX(1, 1, false), SOFTMAX(13, 2049, true), SOFTMAX(300, 257, false),
    IMG5(1, 1, 3, 3), IMG5(2, 3, 17, 12), IMG5(1, 64, 9, 11),
    ATTN2(1, 1, 1, 1, 1, 1, PCV_MASK_NONE), ATTN2(2, 3, 65, 47, 8, 5, PCV_MASK_RANDOM),
    ATTN2(1, 8, 130, 300, 32, 20, PCV_MASK_RANDOM), ATTN2(2, 1, 3, 1000, 61, 29, PCV_MASK_ROW0_ALL),
    ATTN2(3, 2, 200, 16, 4, 4, PCV_MASK_NONE),
    /* more than 4096 keys: the CPU path streams keys in blocks of 2048 (online softmax); masked
     * blocks before and after the valid keys, a short last block */
    ATTN2(2, 2, 70, 5000, 24, 16, PCV_MASK_RANDOM), ATTN2(2, 1, 20, 4500, 40, 8, PCV_MASK_PADDING),
    ATTN2(2, 1, 20, 6200, 16, 12, PCV_MASK_LATE), ATTN2(2, 1, 5, 4100, 8, 8, PCV_MASK_ROW0_ALL),
    /* the tiny flow fixture's cross-attention (one head as wide as its 322 input channels) */
    LN(3072, 322, 0), GEMM(3072, 322, 322, 1, false, true, 0), GEMM(8, 322, 32, 1, false, true, 0),
    ATTN2(1, 1, 8, 3072, 322, 322, PCV_MASK_NONE),
    /* a long reduction (CLBlast's loops over k: Mesa's llvmpipe ends loops after 65535 iterations) */
    GEMM(8, 64, 70001, 1, false, true, 0), GEMM(8, 32, 322, 1, false, true, 0),
    /* the full-size language model (deepmind/language-perceiver, 2048 bytes) */
    M_GEMM("lm", "enc.cross K/V proj (in 768 -> 256+1280)", 1, 2048, 1536, 768),
    M_GEMM("lm", "enc.cross Q proj", 1, 256, 256, 1280),
    M_GEMM("lm", "self Q/K/V proj (x26)", 26, 256, 1792, 1280),
    M_GEMM("lm", "self out proj / MLP (x26 x3)", 78, 256, 1280, 1280),
    M_GEMM("lm", "dec Q proj", 1, 2048, 256, 768),
    M_GEMM("lm", "dec out proj / MLP (x3)", 3, 2048, 768, 768),
    M_GEMM("lm", "logits (vocab 262)", 1, 2048, 262, 768),
    M_ATTN("lm", "enc.cross attention", 1, 8, 256, 2048, 32, 160, PCV_MASK_PADDING),
    M_ATTN("lm", "self attention (x26)", 26, 8, 256, 256, 32, 160, PCV_MASK_NONE),
    M_ATTN("lm", "dec attention", 1, 8, 2048, 256, 32, 96, PCV_MASK_NONE),
    M_ROW("lm", "layernorm 2048x768", 2, PCV_OP_LAYERNORM, 2048, 768),
    M_ROW("lm", "layernorm 256x1280 (x~80)", 80, PCV_OP_LAYERNORM, 256, 1280),
    M_ROW("lm", "gelu 256x1280 (x27)", 27, PCV_OP_ACTIVATION, 256, 1280),
    M_ROW("lm", "softmax 2048x262", 0, PCV_OP_SOFTMAX, 2048, 262),
    M_ROW("lm", "add 256x1280 (x54)", 54, PCV_OP_ADD, 256, 1280),
    /* the full-size ImageNet Fourier classifier (50176 pixels, 512 latents of 1024) */
    M_GEMM("image", "enc.cross K/V proj (261 -> 2x261)", 1, 50176, 522, 261),
    M_ATTN("image", "enc.cross attention (1 head, d 261)", 1, 1, 512, 50176, 261, 261, PCV_MASK_NONE),
    M_GEMM("image", "self Q/K/V proj (x48)", 48, 512, 3072, 1024),
    M_GEMM("image", "self out proj / MLP (x48 x3)", 144, 512, 1024, 1024),
    M_ATTN("image", "self attention (x48)", 48, 8, 512, 512, 128, 128, PCV_MASK_NONE),
    /* optical flow, one 368x496 tile (182528 pixels, 2048 latents of 512) */
    M_GEMM("flow", "enc.cross K/V proj (322 -> 2x322)", 1, 182528, 644, 322),
    M_ATTN("flow", "enc.cross attention (1 head, d 322)", 1, 1, 2048, 182528, 322, 322, PCV_MASK_NONE),
    M_GEMM("flow", "self Q/K/V proj (x24)", 24, 2048, 1536, 512),
    M_ATTN("flow", "self attention (x24, 16 heads)", 24, 16, 2048, 2048, 32, 32, PCV_MASK_NONE),
    M_ATTN("flow", "dec attention (1 head, d 512)", 1, 1, 182528, 2048, 512, 512, PCV_MASK_NONE),
    M_GEMM("flow", "dec Q / MLP (322 wide, x3)", 3, 182528, 322, 322),
};

const pcv_op_case *pcv_op_cases(int *n)
{
    *n = (int)(sizeof cases / sizeof *cases);
    return cases;
}

static const char *const op_names[PCV_OP_COUNT] = {
    "gemm", "layernorm", "activation", "bias_add", "add", "softmax", "gather",
    "repeat", "attention", "transpose", "copy2d", "im2col", "channel_affine", "maxpool",
};

const char *pcv_op_name(pcv_op_kind op) { return op >= 0 && op < PCV_OP_COUNT ? op_names[op] : "?"; }

static const char *const mask_names[] = {"", " masked", " padding-masked", " (batch 0 fully masked)",
                                         " (first keys masked)"};

void pcv_op_describe(const pcv_op_case *c, char *buf, size_t cap)
{
    switch (c->op) {
    case PCV_OP_GEMM:
        snprintf(buf, cap, "gemm %c%c m%lld n%lld k%lld b%lld%s%s%s%s", c->ta ? 'T' : 'N', c->tb ? 'T' : 'N',
                 (long long)c->m, (long long)c->n, (long long)c->k, (long long)c->batch, c->beta != 0 ? " beta" : "",
                 c->epi & PCV_EPI_BIAS ? " +bias" : "", c->epi & PCV_EPI_GELU ? " +gelu" : "",
                 c->epi & PCV_EPI_RES ? " +res" : "");
        break;
    case PCV_OP_ATTENTION:
        snprintf(buf, cap, "attention-%s b%lld h%lld nq%lld nk%lld d%lld/%lld%s",
                 c->mode == PCV_ATTN_HAIKU ? "haiku" : "hf", (long long)c->batch, (long long)c->heads,
                 (long long)c->nq, (long long)c->nk, (long long)c->dqk, (long long)c->dv, mask_names[c->mask < 0 || c->mask > PCV_MASK_LATE ? 0 : c->mask]);
        break;
    case PCV_OP_ACTIVATION:
        snprintf(buf, cap, "%s n%lld%s", pcv_activation_name(c->act), (long long)(c->m * c->n),
                 c->xscale > 1 ? " wide" : "");
        break;
    case PCV_OP_TRANSPOSE:
    case PCV_OP_COPY2D:
    case PCV_OP_IM2COL:
    case PCV_OP_CHANNEL_AFFINE:
    case PCV_OP_MAXPOOL:
        snprintf(buf, cap, "%s b%lld c%lld %lldx%lld", pcv_op_name(c->op), (long long)c->batch, (long long)c->m,
                 (long long)c->n, (long long)c->k);
        break;
    default:
        snprintf(buf, cap, "%s %lldx%lld%s%s", pcv_op_name(c->op), (long long)c->m, (long long)c->n,
                 c->masked ? (c->op == PCV_OP_GATHER ? " +pos" : " masked") : "",
                 c->op == PCV_OP_LAYERNORM && c->offset != 0 ? " offset" : "");
    }
}

bool pcv_op_matches(const pcv_op_case *c, const char *filter)
{
    if (!filter || !*filter)
        return true;
    char d[160];
    pcv_op_describe(c, d, sizeof d);
    return strstr(pcv_op_name(c->op), filter) || strstr(d, filter) || (c->label && strstr(c->label, filter)) ||
           (c->model && !strcmp(c->model, filter));
}

double pcv_op_flops(const pcv_op_case *c)
{
    switch (c->op) {
    case PCV_OP_GEMM: return 2.0 * (double)c->batch * (double)c->m * (double)c->n * (double)c->k;
    case PCV_OP_ATTENTION:
        return 2.0 * (double)c->batch * (double)c->heads * (double)c->nq * (double)c->nk * (double)(c->dqk + c->dv);
    default: return 0;
    }
}

double pcv_op_bytes(const pcv_op_case *c)
{
    double rc = (double)c->m * (double)c->n * sizeof(float), img = (double)(c->batch * c->m * c->n * c->k) * 4;
    switch (c->op) {
    case PCV_OP_LAYERNORM:
    case PCV_OP_ACTIVATION:
    case PCV_OP_SOFTMAX:
    case PCV_OP_BIAS_ADD:
    case PCV_OP_GATHER:
    case PCV_OP_REPEAT: return 2 * rc;
    case PCV_OP_ADD: return 3 * rc;
    case PCV_OP_TRANSPOSE:
    case PCV_OP_COPY2D:
    case PCV_OP_CHANNEL_AFFINE:
    case PCV_OP_MAXPOOL: return 2 * img;
    case PCV_OP_IM2COL: return img * 3.25; /* reads the image, writes ~9/4 of it (3x3, stride 2) */
    default: return 0;
    }
}

/* ---- setup ----------------------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static double urand(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (double)(r->s >> 11) / 9007199254740992.0;
}

static float nrand(rng *r) { return (float)(sqrt(-2 * log(urand(r) + 1e-300)) * cos(2 * M_PI * urand(r))); }

/* geometry of the image ops (3x3 stride-2 windows; im2col pads 1 on top, maxpool 1 on the left) */
static void im2col_geom(const pcv_op_case *c, int64_t *oh, int64_t *ow)
{
    *oh = (c->n + 1 + 1 - 3) / 2 + 1;
    *ow = (c->k + 0 + 2 - 3) / 2 + 1;
}

static void pool_geom(const pcv_op_case *c, int64_t *oh, int64_t *ow)
{
    *oh = c->n >= 3 ? (c->n - 3) / 2 + 1 : 0;
    *ow = c->k + 1 >= 3 ? (c->k + 1 - 3) / 2 + 1 : 0;
}

/* strides of a GEMM case (padded between batch entries) */
static void gemm_strides(const pcv_op_case *c, int64_t *sa, int64_t *sb, int64_t *sc)
{
    *sa = c->m * c->k + 3, *sb = c->k * c->n + 5, *sc = c->m * c->n + 7;
}

/* padded row lengths of an attention case */
static void attn_lds(const pcv_op_case *c, int64_t *qld, int64_t *vld, int64_t *old)
{
    *qld = c->heads * c->dqk + 3, *vld = c->heads * c->dv + 1, *old = c->heads * c->dv + 2;
}

enum { VOCAB = 37 };

int pcv_op_setup(pcv_backend *be, const pcv_op_case *c, uint64_t seed, pcv_op_inst *in, pcv_error *err)
{
    memset(in, 0, sizeof *in);
    in->c = c;
    rng r = {seed * 0x9E3779B97F4A7C15ull + 88172645463325252ull};
    int64_t *len = in->len;
    float scale[6] = {1, 1, 1, 1, 1, 1};
    int64_t B = c->batch ? c->batch : 1, rows = c->m, cols = c->n, img = B * c->m * c->n * c->k;
    switch (c->op) {
    case PCV_OP_GEMM: {
        int64_t sa, sb, sc;
        gemm_strides(c, &sa, &sb, &sc);
        len[0] = sa * B, len[1] = sb * B, len[2] = sc * B, in->out = 2;
        len[3] = c->epi & PCV_EPI_BIAS ? c->n : 0, len[4] = c->epi & PCV_EPI_RES ? c->m * c->n : 0;
        break;
    }
    case PCV_OP_LAYERNORM:
        len[0] = len[1] = rows * cols, len[2] = len[3] = cols, in->out = 1, scale[0] = 3;
        break;
    case PCV_OP_ACTIVATION: len[0] = rows * cols, scale[0] = 4 * (c->xscale > 0 ? c->xscale : 1); break;
    case PCV_OP_BIAS_ADD: len[0] = rows * cols, len[1] = cols; break;
    case PCV_OP_ADD: len[0] = len[1] = rows * cols; break;
    case PCV_OP_SOFTMAX: len[0] = rows * cols, len[1] = cols, scale[0] = 5; break;
    case PCV_OP_GATHER: len[0] = VOCAB * cols, len[1] = ((rows + 1) / 2) * cols, len[2] = rows * cols, in->out = 2; break;
    case PCV_OP_REPEAT: len[0] = cols, len[1] = rows * cols, in->out = 1; break;
    case PCV_OP_ATTENTION: {
        int64_t qld, vld, old;
        attn_lds(c, &qld, &vld, &old);
        len[0] = B * c->nq * qld, len[1] = B * c->nk * qld, len[2] = B * c->nk * vld, len[3] = B * c->nq * old;
        len[4] = B * c->nk, len[5] = B * c->nq, in->out = 3;
        break;
    }
    case PCV_OP_TRANSPOSE: len[0] = len[1] = img, in->out = 1; break;
    case PCV_OP_COPY2D: /* [rows][C] ++ broadcast [HW][3] -> [rows][C+3] */
        len[0] = img, len[1] = c->n * c->k * 3, len[2] = B * c->n * c->k * (c->m + 3), in->out = 2;
        break;
    case PCV_OP_IM2COL: {
        int64_t oh, ow;
        im2col_geom(c, &oh, &ow);
        len[0] = img, len[1] = B * oh * ow * c->m * 9, in->out = 1;
        break;
    }
    case PCV_OP_CHANNEL_AFFINE: len[0] = img, len[1] = len[2] = c->m; break;
    case PCV_OP_MAXPOOL: {
        int64_t oh, ow;
        pool_geom(c, &oh, &ow);
        len[0] = img, len[1] = B * oh * ow * c->m, in->out = 1;
        break;
    }
    default: return pcv_set_error(err, PCV_ERR_INPUT, "unknown operation %d", (int)c->op);
    }
    float *guard = malloc(PCV_OP_GUARD * sizeof *guard);
    if (!guard)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = 0; i < PCV_OP_GUARD; i++)
        guard[i] = SENTINEL;
    int rc = 0;
    for (int i = 0; i < 6 && !rc; i++) {
        if (!len[i])
            continue;
        in->host[i] = malloc((size_t)len[i] * sizeof(float));
        if (!in->host[i]) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory (%lld floats)", (long long)len[i]);
            break;
        }
        for (int64_t j = 0; j < len[i]; j++)
            in->host[i][j] = scale[i] * nrand(&r);
    }
    /* inputs with structure */
    if (!rc && c->op == PCV_OP_LAYERNORM)
        for (int64_t j = 0; j < len[0]; j++)
            in->host[0][j] += c->offset; /* a large common offset stresses the variance computation */
    if (!rc && c->op == PCV_OP_SOFTMAX)
        for (int64_t j = 0; j < cols; j++) /* HF's mask: (1 - keep) * finfo.min */
            in->host[1][j] = (urand(&r) < 0.3 && j > 0) ? -FLT_MAX : 0.0f;
    if (!rc && c->op == PCV_OP_GATHER) {
        in->ids = malloc((size_t)(rows ? rows : 1) * sizeof *in->ids);
        if (!in->ids)
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        for (int64_t j = 0; !rc && j < rows; j++)
            in->ids[j] = (int32_t)(urand(&r) * VOCAB);
    }
    if (!rc && c->op == PCV_OP_ATTENTION) {
        float *km = in->host[4], *qm = in->host[5];
        bool haiku = c->mode == PCV_ATTN_HAIKU;
        for (int64_t j = 0; j < B * c->nk; j++)
            km[j] = (urand(&r) < 0.4 && j % c->nk != 0) ? 0.0f : 1.0f;
        if (c->mask == PCV_MASK_PADDING) /* batch entry b keeps its first valid_b keys only */
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < c->nk; j++)
                    km[b * c->nk + j] = j < 1 + (b * 37 + c->nk / 7) % c->nk ? 1.0f : 0.0f;
        if (c->mask == PCV_MASK_LATE) /* batch entry b keeps its last valid_b keys only */
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < c->nk; j++)
                    km[b * c->nk + j] = j >= c->nk - (1 + (b * 37 + c->nk / 7) % c->nk) ? 1.0f : 0.0f;
        if (c->mask == PCV_MASK_ROW0_ALL)
            for (int64_t j = 0; j < c->nk; j++)
                km[j] = 0.0f;
        for (int64_t j = 0; j < B * c->nq; j++)
            qm[j] = (haiku && c->mask == PCV_MASK_RANDOM && urand(&r) < 0.3) ? 0.0f : 1.0f;
    }
    for (int i = 0; i < 6 && !rc; i++) {
        if (!len[i])
            continue;
        size_t bytes = (size_t)len[i] * sizeof(float);
        in->buf[i] = pcv_backend_alloc(be, bytes + PCV_OP_GUARD * sizeof(float), err);
        if (!in->buf[i]) {
            rc = err ? (int)err->code : PCV_ERR_OOM;
            break;
        }
        if ((rc = pcv_backend_upload(be, in->buf[i], 0, in->host[i], bytes, err)) ||
            (rc = pcv_backend_upload(be, in->buf[i], bytes, guard, PCV_OP_GUARD * sizeof(float), err)))
            break;
    }
    if (!rc && c->op == PCV_OP_GATHER) { /* ids go in their own buffer (int32) */
        in->buf[3] = pcv_backend_alloc(be, (size_t)(rows ? rows : 1) * sizeof(int32_t), err);
        rc = in->buf[3] ? pcv_backend_upload(be, in->buf[3], 0, in->ids, (size_t)rows * sizeof(int32_t), err)
                        : (err ? (int)err->code : PCV_ERR_OOM);
    }
    free(guard);
    if (rc)
        pcv_op_free(be, in);
    return rc;
}

void pcv_op_free(pcv_backend *be, pcv_op_inst *in)
{
    for (int i = 0; i < 6; i++) {
        free(in->host[i]);
        if (in->buf[i])
            pcv_backend_release(be, in->buf[i]);
    }
    free(in->ids);
    memset(in, 0, sizeof *in);
}

/* ---- execution ------------------------------------------------------------------------------------- */

int pcv_op_run(pcv_backend *be, pcv_op_inst *in, pcv_error *err)
{
    const pcv_op_case *c = in->c;
    pcv_buffer **b = in->buf;
    int64_t B = c->batch ? c->batch : 1, rows = c->m, cols = c->n;
    switch (c->op) {
    case PCV_OP_GEMM: {
        int64_t sa, sb, sc;
        gemm_strides(c, &sa, &sb, &sc);
        pcv_gemm_args g = {.trans_a = c->ta, .trans_b = c->tb, .m = c->m, .n = c->n, .k = c->k, .batch = B,
                           .alpha = 0.5f, .beta = c->beta, .a = b[0], .lda = c->ta ? c->m : c->k, .stride_a = sa,
                           .b = b[1], .ldb = c->tb ? c->k : c->n, .stride_b = sb, .c = b[2], .ldc = c->n,
                           .stride_c = sc, .bias = c->epi & PCV_EPI_BIAS ? b[3] : NULL,
                           .gelu = (c->epi & PCV_EPI_GELU) != 0, .res = c->epi & PCV_EPI_RES ? b[4] : NULL};
        return pcv_backend_gemm(be, &g, err);
    }
    case PCV_OP_LAYERNORM: return pcv_backend_layernorm(be, b[0], 0, b[1], 0, rows, cols, b[2], 0, b[3], 0, 1e-5f, err);
    case PCV_OP_ACTIVATION: return pcv_backend_activation(be, b[0], 0, rows * cols, c->act, err);
    case PCV_OP_BIAS_ADD: return pcv_backend_bias_add(be, b[0], 0, rows, cols, b[1], 0, err);
    case PCV_OP_ADD: return pcv_backend_add(be, b[0], 0, b[1], 0, rows * cols, err);
    case PCV_OP_SOFTMAX: return pcv_backend_softmax(be, b[0], 0, rows, cols, c->masked ? b[1] : NULL, 0, err);
    case PCV_OP_GATHER:
        return pcv_backend_gather(be, b[0], 0, b[3], 0, c->masked ? b[1] : NULL, 0, (rows + 1) / 2, b[2], 0, rows, cols,
                                  err);
    case PCV_OP_REPEAT: return pcv_backend_repeat(be, b[0], 0, cols, rows, b[1], 0, err);
    case PCV_OP_ATTENTION: {
        int64_t qld, vld, old;
        attn_lds(c, &qld, &vld, &old);
        bool masked = c->mask != PCV_MASK_NONE;
        pcv_attention_args a = {.batch = B, .heads = c->heads, .nq = c->nq, .nk = c->nk, .dqk = c->dqk, .dv = c->dv,
                                .scale = sqrtf((float)c->dqk), .mode = c->mode, .q = b[0], .q_ld = qld, .k = b[1],
                                .k_ld = qld, .v = b[2], .v_ld = vld, .o = b[3], .o_ld = old,
                                .kmask = masked ? b[4] : NULL,
                                .qmask = masked && c->mode == PCV_ATTN_HAIKU ? b[5] : NULL};
        return pcv_backend_attention(be, &a, err);
    }
    case PCV_OP_TRANSPOSE: return pcv_backend_transpose(be, b[0], 0, B, c->m, c->n * c->k, b[1], 0, err);
    case PCV_OP_COPY2D: {
        int64_t n = B * c->n * c->k, ld = c->m + 3;
        int rc = pcv_backend_copy2d(be, b[0], 0, c->m, n, b[2], 0, ld, n, c->m, err);
        return rc ? rc : pcv_backend_copy2d(be, b[1], 0, 3, c->n * c->k, b[2], (size_t)c->m, ld, n, 3, err);
    }
    case PCV_OP_IM2COL: {
        int64_t oh, ow;
        im2col_geom(c, &oh, &ow);
        return pcv_backend_im2col(be, b[0], 0, B, c->m, c->n, c->k, 3, 3, 2, 1, 0, oh, ow, b[1], 0, err);
    }
    case PCV_OP_CHANNEL_AFFINE:
        return pcv_backend_channel_affine(be, b[0], 0, B * c->n * c->k, c->m, b[1], 0, b[2], 0, true, err);
    case PCV_OP_MAXPOOL: {
        int64_t oh, ow;
        pool_geom(c, &oh, &ow);
        if (oh < 1 || ow < 1)
            return 0;
        return pcv_backend_maxpool(be, b[0], 0, B, c->n, c->k, c->m, 3, 2, 0, 1, oh, ow, b[1], 0, err);
    }
    default: return pcv_set_error(err, PCV_ERR_INPUT, "unknown operation %d", (int)c->op);
    }
}

/* ---- float64 references ------------------------------------------------------------------------------ */

static void ref_attention(const pcv_op_inst *in, double *want)
{
    const pcv_op_case *c = in->c;
    int64_t B = c->batch, qld, vld, old, nk = c->nk;
    attn_lds(c, &qld, &vld, &old);
    const float *q = in->host[0], *k = in->host[1], *v = in->host[2], *km = in->host[4], *qm = in->host[5];
    bool haiku = c->mode == PCV_ATTN_HAIKU, masked = c->mask != PCV_MASK_NONE;
    double *s = malloc((size_t)nk * sizeof *s), scale = sqrt((double)c->dqk);
    bool *keep = malloc((size_t)nk * sizeof *keep);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < c->heads; h++)
            for (int64_t i = 0; i < c->nq; i++) {
                double mx = -INFINITY, sum = 0;
                int64_t nkeep = 0;
                for (int64_t j = 0; j < nk; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < c->dqk; d++)
                        dot += (double)q[(b * c->nq + i) * qld + h * c->dqk + d] * k[(b * nk + j) * qld + h * c->dqk + d];
                    s[j] = dot / scale;
                    keep[j] = (!masked || km[b * nk + j] != 0) && (!haiku || !masked || qm[b * c->nq + i] != 0);
                    nkeep += keep[j];
                }
                for (int64_t j = 0; j < nk; j++) {
                    if (nkeep == 0)
                        s[j] = 0; /* HF: every score is finfo.min: uniform weights */
                    else if (!keep[j])
                        s[j] = -INFINITY;
                    mx = fmax(mx, s[j]);
                }
                for (int64_t j = 0; j < nk; j++)
                    sum += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
                for (int64_t d = 0; d < c->dv; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < nk; j++)
                        if (s[j] != -INFINITY)
                            acc += exp(s[j] - mx) / sum * v[(b * nk + j) * vld + h * c->dv + d];
                    want[(b * c->nq + i) * old + h * c->dv + d] = (haiku && nkeep == 0) ? 0.0 : acc;
                }
            }
    free(s);
    free(keep);
}

static void reference(const pcv_op_inst *in, double *want)
{
    const pcv_op_case *c = in->c;
    float *const *x = in->host;
    int64_t B = c->batch ? c->batch : 1, rows = c->m, cols = c->n, n = in->len[in->out];
    for (int64_t i = 0; i < n; i++) /* whatever the operation does not write keeps its value */
        want[i] = x[in->out][i];
    switch (c->op) {
    case PCV_OP_GEMM: {
        int64_t sa, sb, sc, lda = c->ta ? c->m : c->k, ldb = c->tb ? c->k : c->n;
        gemm_strides(c, &sa, &sb, &sc);
        for (int64_t p = 0; p < B; p++)
            for (int64_t i = 0; i < c->m; i++)
                for (int64_t j = 0; j < c->n; j++) {
                    double s = 0;
                    for (int64_t l = 0; l < c->k; l++) {
                        double av = c->ta ? x[0][p * sa + l * lda + i] : x[0][p * sa + i * lda + l];
                        double bv = c->tb ? x[1][p * sb + j * ldb + l] : x[1][p * sb + l * ldb + j];
                        s += av * bv;
                    }
                    double y = 0.5 * s + c->beta * x[2][p * sc + i * c->n + j];
                    if (c->epi & PCV_EPI_BIAS)
                        y += x[3][j];
                    if (c->epi & PCV_EPI_GELU)
                        y = gelu64(y);
                    if (c->epi & PCV_EPI_RES)
                        y += x[4][i * c->n + j];
                    want[p * sc + i * c->n + j] = y;
                }
        break;
    }
    case PCV_OP_LAYERNORM:
        for (int64_t r = 0; r < rows; r++) {
            double mu = 0, var = 0;
            for (int64_t j = 0; j < cols; j++)
                mu += x[0][r * cols + j];
            mu /= (double)cols;
            for (int64_t j = 0; j < cols; j++)
                var += (x[0][r * cols + j] - mu) * (x[0][r * cols + j] - mu);
            var /= (double)cols;
            for (int64_t j = 0; j < cols; j++)
                want[r * cols + j] = (x[0][r * cols + j] - mu) / sqrt(var + 1e-5) * x[2][j] + x[3][j];
        }
        break;
    case PCV_OP_ACTIVATION:
        for (int64_t i = 0; i < n; i++)
            want[i] = act64(c->act, x[0][i]);
        break;
    case PCV_OP_BIAS_ADD:
        for (int64_t i = 0; i < n; i++)
            want[i] = (double)(x[0][i] + x[1][i % cols]); /* exact: one float32 addition */
        break;
    case PCV_OP_ADD:
        for (int64_t i = 0; i < n; i++)
            want[i] = (double)(x[0][i] + x[1][i]);
        break;
    case PCV_OP_SOFTMAX:
        for (int64_t r = 0; r < rows; r++) {
            double mx = -INFINITY, s = 0;
            const float *row = x[0] + r * cols, *mask = x[1];
            for (int64_t j = 0; j < cols; j++)
                if (!c->masked || mask[j] == 0)
                    mx = fmax(mx, row[j]);
            for (int64_t j = 0; j < cols; j++)
                s += (!c->masked || mask[j] == 0) ? exp(row[j] - mx) : 0;
            for (int64_t j = 0; j < cols; j++)
                want[r * cols + j] = (!c->masked || mask[j] == 0) ? exp(row[j] - mx) / s : 0;
        }
        break;
    case PCV_OP_GATHER: {
        int64_t period = (rows + 1) / 2;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) {
                float t = x[0][in->ids[r] * cols + j];
                want[r * cols + j] = c->masked ? (double)(t + x[1][(r % period) * cols + j]) : t;
            }
        break;
    }
    case PCV_OP_REPEAT:
        for (int64_t i = 0; i < n; i++)
            want[i] = x[0][i % cols];
        break;
    case PCV_OP_ATTENTION: ref_attention(in, want); break;
    case PCV_OP_TRANSPOSE: {
        int64_t C = c->m, HW = c->n * c->k;
        for (int64_t b = 0; b < B; b++)
            for (int64_t ch = 0; ch < C; ch++)
                for (int64_t p = 0; p < HW; p++)
                    want[(b * HW + p) * C + ch] = x[0][(b * C + ch) * HW + p];
        break;
    }
    case PCV_OP_COPY2D: {
        int64_t C = c->m, HW = c->n * c->k, ld = C + 3;
        for (int64_t r = 0; r < B * HW; r++) {
            for (int64_t j = 0; j < C; j++)
                want[r * ld + j] = x[0][r * C + j];
            for (int64_t j = 0; j < 3; j++)
                want[r * ld + C + j] = x[1][(r % HW) * 3 + j];
        }
        break;
    }
    case PCV_OP_IM2COL: {
        int64_t C = c->m, H = c->n, W = c->k, oh, ow, ncol = C * 9;
        im2col_geom(c, &oh, &ow);
        for (int64_t b = 0; b < B; b++)
            for (int64_t y = 0; y < oh; y++)
                for (int64_t xx = 0; xx < ow; xx++)
                    for (int64_t ch = 0; ch < C; ch++)
                        for (int64_t i = 0; i < 3; i++)
                            for (int64_t j = 0; j < 3; j++) {
                                int64_t sy = y * 2 + i - 1, sx = xx * 2 + j;
                                bool inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
                                want[((b * oh + y) * ow + xx) * ncol + (ch * 3 + i) * 3 + j] =
                                    inside ? x[0][((b * C + ch) * H + sy) * W + sx] : 0.0;
                            }
        break;
    }
    case PCV_OP_CHANNEL_AFFINE:
        for (int64_t i = 0; i < n; i++) {
            double v = (double)x[0][i] * x[1][i % c->m] + x[2][i % c->m];
            want[i] = v < 0 ? 0 : v;
        }
        break;
    case PCV_OP_MAXPOOL: {
        int64_t C = c->m, H = c->n, W = c->k, oh, ow;
        pool_geom(c, &oh, &ow);
        for (int64_t b = 0; b < B; b++)
            for (int64_t y = 0; y < oh; y++)
                for (int64_t xx = 0; xx < ow; xx++)
                    for (int64_t ch = 0; ch < C; ch++) {
                        double m = -INFINITY;
                        for (int64_t i = 0; i < 3; i++)
                            for (int64_t j = 0; j < 3; j++) {
                                int64_t sy = y * 2 + i, sx = xx * 2 + j - 1;
                                if (sy < H && sx >= 0 && sx < W)
                                    m = fmax(m, x[0][((b * H + sy) * W + sx) * C + ch]);
                            }
                        want[((b * oh + y) * ow + xx) * C + ch] = m;
                    }
        break;
    }
    default: break;
    }
}

int pcv_op_reset(pcv_backend *be, pcv_op_inst *in, pcv_error *err)
{
    for (int i = 0; i < 6; i++)
        if (in->len[i] && in->buf[i] && in->host[i]) {
            int rc = pcv_backend_upload(be, in->buf[i], 0, in->host[i], (size_t)in->len[i] * sizeof(float), err);
            if (rc)
                return rc;
        }
    return 0;
}

double *pcv_op_reference(const pcv_op_inst *in)
{
    int64_t n = in->len[in->out];
    double *want = malloc((size_t)(n ? n : 1) * sizeof *want);
    if (want)
        reference((pcv_op_inst *)in, want);
    return want;
}

int pcv_op_check_against(pcv_backend *be, pcv_op_inst *in, const double *want, double atol, double rtol,
                         pcv_op_result *r, pcv_error *err)
{
    memset(r, 0, sizeof *r);
    int64_t n = in->len[in->out];
    float *got = malloc((size_t)(n + PCV_OP_GUARD) * sizeof *got);
    if (!got)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    int rc = pcv_backend_download(be, in->buf[in->out], 0, got, (size_t)(n + PCV_OP_GUARD) * sizeof(float), err);
    if (!rc) {
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = fabs((double)got[i] - want[i]);
            num += d * d;
            den += want[i] * want[i];
            if (atol >= 0) {
                double lim = atol + rtol * fabs(want[i]);
                if (!(d <= lim))
                    r->bad++;
                if (lim > 0 && d / lim > r->worst)
                    r->worst = d / lim;
            }
            if (!isfinite(got[i]))
                r->nonfinite++;
        }
        r->n = n;
        r->nmse = den > 0 ? num / den : num;
        for (int i = 0; i < PCV_OP_GUARD; i++)
            r->guard_bad += got[n + i] != SENTINEL;
    }
    free(got);
    return rc;
}

int pcv_op_check(pcv_backend *be, pcv_op_inst *in, double atol, double rtol, pcv_op_result *r, pcv_error *err)
{
    double *want = pcv_op_reference(in);
    if (!want) {
        memset(r, 0, sizeof *r);
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    int rc = pcv_op_check_against(be, in, want, atol, rtol, r, err);
    free(want);
    return rc;
}

/* The tolerances (tests/TOLERANCES.md explains the policy). */
pcv_op_tol pcv_op_tolerance(const pcv_op_case *c)
{
    switch (c->op) {
    /* float32 GEMM (any blocking/threading) vs float64; float32 accumulation over K <= 4096 gives
     * NMSE ~1e-13..1e-12 */
    case PCV_OP_GEMM: return (pcv_op_tol){0, 0, 1e-10};
    /* eps 1e-5, biased variance */
    case PCV_OP_LAYERNORM: return (pcv_op_tol){1e-5, 1e-5, 0};
    /* exact erf GELU (the tanh approximation differs by up to ~5e-4 and must fail); every other
     * hidden_act formula (inputs up to |x| ~24): one libm/OpenCL built-in call or two (a few ulp)
     * plus a few roundings */
    case PCV_OP_ACTIVATION: return (pcv_op_tol){1e-6, 1e-5, 0};
    /* row softmax including additive float32-min masking */
    case PCV_OP_SOFTMAX: return (pcv_op_tol){1e-6, 1e-5, 0};
    /* one multi-head attention (scaled scores, masks, softmax, weighted values) */
    case PCV_OP_ATTENTION: return (pcv_op_tol){1e-5, 1e-4, 0};
    /* x*scale+shift (+ReLU): one rounding (or one FMA) */
    case PCV_OP_CHANNEL_AFFINE: return (pcv_op_tol){1e-6, 1e-6, 0};
    /* operations that only move or add float32 values */
    default: return (pcv_op_tol){0, 0, 0};
    }
}
