/* The Perceiver IO model core, written once against the backend interface (ops.h).
 *
 * Semantics follow Hugging Face transformers' modeling_perceiver.py (see
 * shared/spec/perceiver-io.md sections 2, 3 and 8): pre-LN Perceiver layers with LayerNorm eps
 * 1e-5 and exact-erf GELU, the channel derivation rules of section 3.2, one encoder
 * cross-attention (the only masked attention) followed by num_blocks applications of the same
 * num_self_attends_per_block self-attention layers, then an architecture-specific decoder.
 */
#include "perceiver/model.h"

#include "model/fourier.h"
#include "model/ops.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- parameters ---------------------------------------------------------------------------- */

typedef struct pcv_param {
    char *name;
    pcv_tensor t;
} pcv_param;

typedef struct pcv_linear_p {
    pcv_tensor w, b; /* w [out][in], b [out] */
} pcv_linear_p;

typedef struct pcv_ln_p {
    pcv_tensor w, b;
} pcv_ln_p;

/* One PerceiverLayer: attention (+ optional query residual) then MLP with residual. */
typedef struct pcv_layer {
    bool cross, query_residual;
    int64_t q_dim, kv_dim, qk, v, out, heads, widening;
    pcv_ln_p ln1, ln2, ln_mlp; /* ln2 only for cross-attention */
    pcv_linear_p q, k, vproj, o, mlp1, mlp2;
} pcv_layer;

struct pcv_model {
    pcv_config cfg;
    pcv_arch arch;
    pcv_backend *be;
    pcv_gelu_kind gelu;
    pcv_attn_mode attn_mode;
    pcv_numerics numerics;
    bool profile, capture;

    pcv_weights weights;
    bool have_weights;
    /* parameter source while building: file, or random (seeded) */
    uint64_t seed;
    bool random;
    pcv_param *params;
    int nparams, capparams;
    int64_t total_params;

    /* text preprocessor */
    pcv_tensor embed, pos_embed;
    /* image preprocessors */
    pcv_linear_p conv1x1;          /* learned: Conv2d 1x1 3->256, weight [256][3][1][1] */
    pcv_tensor img_pos;            /* learned: trainable positions [image_size^2][256] */
    pcv_linear_p pos_proj;         /* learned: positions projection 256->256 */
    pcv_tensor conv_w;             /* conv: Conv2d 7x7/2 3->64, [64][3][7][7], no bias */
    pcv_linear_p patches;          /* flow: conv_after_patches, a per-pixel Linear 54->64 */
    pcv_tensor flow_scale;         /* flow: {0.01, 0.01, 0, 0}, the output / 100 as an affine (owned) */
    pcv_tensor bn_scale, bn_shift; /* conv: eval BatchNorm folded into a channel affine (owned) */
    int64_t fourier_bands, fourier_res[2]; /* pixels / conv: Fourier position features */
    int64_t img_channels;          /* channels before the positions: 256 / 3 / 64 */
    pcv_tensor pos_cache;          /* position features for pos_cache_hw (owned) */
    int64_t pos_cache_hw[2];
    /* encoder */
    pcv_tensor latents;
    pcv_layer enc_cross;
    pcv_layer *self;
    int nself;
    /* decoder */
    pcv_tensor dec_query; /* [n_queries][q_dim] */
    pcv_layer dec;
    pcv_linear_p final; /* classification head; absent for MLM */
    int64_t input_channels; /* encoder kv width: the preprocessor's output channels */
    bool has_final;
    pcv_tensor mlm_bias;

    pcv_exec last;
};

/* ---- random parameters (deterministic per name, independent of build order) ---------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(const char *s, uint64_t seed)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void fill_normal(float *x, int64_t n, uint64_t state, float mean, float std)
{
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ((double)(splitmix64(&state) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        double u2 = (double)(splitmix64(&state) >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2.0 * log(u1));
        x[i] = mean + std * (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < n)
            x[i + 1] = mean + std * (float)(r * sin(2 * M_PI * u2));
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && len + 24 < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)shape[i]);
}

/* Declares a parameter of up to 4 dims: loads it from the checkpoint (checking dtype and
 * shape) or generates it, and uploads it to the backend. */
static int param_nd(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int ndim,
                    const int64_t *shape)
{
    int64_t n = 1;
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        n *= (t->shape[i] = shape[i]);
    char want[96];
    shape_str(want, sizeof want, ndim, shape);

    if (m->nparams == m->capparams) {
        int cap = m->capparams ? 2 * m->capparams : 64;
        pcv_param *p = realloc(m->params, (size_t)cap * sizeof *p);
        if (!p)
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        m->params = p;
        m->capparams = cap;
    }

    pcv_backend *be = m->be;
    float *host = NULL;
    if (m->random) {
        host = malloc((size_t)n * sizeof(float));
        if (!host)
            return pcv_set_error(err, PCV_ERR_OOM, "cannot allocate %lld floats for '%s'",
                                 (long long)n, name);
        bool is_norm = strstr(name, "layernorm") != NULL || strstr(name, "batchnorm") != NULL;
        bool around_one = (is_norm && ends_with(name, ".weight")) || ends_with(name, "running_var");
        fill_normal(host, n, hash_name(name, m->seed), around_one ? 1.0f : 0.0f, 0.02f);
        if (ends_with(name, "running_var")) /* a variance must stay positive */
            for (int64_t i = 0; i < n; i++)
                host[i] = fabsf(host[i]);
    } else {
        const pcv_st_tensor *st = pcv_weights_find(&m->weights, name);
        if (!st)
            return pcv_set_error(err, PCV_ERR_MISSING, "%s: missing tensor '%s' (expected shape [%s])",
                                 m->weights.path, name, want);
        bool ok = st->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++)
            ok = st->shape[i] == shape[i];
        if (!ok) {
            char got[256];
            shape_str(got, sizeof got, st->ndim, st->shape);
            return pcv_set_error(err, PCV_ERR_SHAPE, "%s: tensor '%s' has shape [%s], expected [%s]",
                                 m->weights.path, name, got, want);
        }
        if (st->dtype == PCV_DT_F32) {
            t->buf = pcv_backend_wrap_host(be, st->data, st->nbytes);
        } else if (st->dtype != PCV_DT_F16 && st->dtype != PCV_DT_BF16 && st->dtype != PCV_DT_F64) {
            return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; weights must be F32, F16, BF16 or F64",
                                 m->weights.path, name, pcv_dtype_name(st->dtype));
        }
        if (!t->buf) {
            host = malloc((size_t)n * sizeof(float));
            if (!host)
                return pcv_set_error(err, PCV_ERR_OOM, "cannot allocate %lld floats for '%s'",
                                     (long long)n, name);
            int rc = pcv_st_to_f32(st, host, err);
            if (rc) {
                free(host);
                return rc;
            }
        }
    }
    if (!t->buf) {
        t->buf = pcv_backend_alloc(be, (size_t)n * sizeof(float), err);
        int rc = t->buf ? pcv_backend_upload(be, t->buf, 0, host, (size_t)n * sizeof(float), err)
                        : (err ? (int)err->code : PCV_ERR_OOM);
        if (rc) {
            if (t->buf)
                pcv_backend_release(be, t->buf);
            t->buf = NULL;
            free(host);
            return rc;
        }
    }
    free(host);
    t->owned = false; /* owned by the params list */
    pcv_param *p = &m->params[m->nparams++];
    p->name = strdup(name);
    p->t = *t;
    m->total_params += n;
    return p->name ? 0 : pcv_set_error(err, PCV_ERR_OOM, "out of memory");
}

static int param(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int ndim,
                 int64_t d0, int64_t d1)
{
    return param_nd(m, err, t, name, ndim, (int64_t[]){d0, d1});
}

/* ---- layer construction ---------------------------------------------------------------------- */

/* Channel rules of PerceiverAttention / PerceiverSelfAttention (spec section 3.2).
 * qk_cfg / v_cfg: 0 = None. */
static void derive_channels(const pcv_config *cfg, bool cross, int64_t qk_cfg, int64_t v_cfg,
                            int64_t q_dim, int64_t kv_dim, int64_t *qk, int64_t *v)
{
    if (cross && qk_cfg == 0) {
        *qk = strcmp(cfg->cross_attention_shape_for_attention, "q") == 0 ? q_dim : kv_dim;
        *v = v_cfg;
    } else {
        *qk = qk_cfg ? qk_cfg : q_dim;
        *v = v_cfg ? v_cfg : *qk;
    }
    if (*qk == 0)
        *qk = q_dim;
    if (*v == 0)
        *v = *qk;
}

static int build_layer(pcv_model *m, pcv_error *err, pcv_layer *L, const char *prefix, bool cross,
                       int64_t qk_cfg, int64_t v_cfg, int64_t heads, int64_t q_dim, int64_t kv_dim,
                       int64_t widening, bool query_residual)
{
    memset(L, 0, sizeof *L);
    L->cross = cross;
    L->query_residual = query_residual;
    L->q_dim = q_dim;
    L->kv_dim = kv_dim;
    L->heads = heads;
    L->widening = widening;
    derive_channels(&m->cfg, cross, qk_cfg, v_cfg, q_dim, kv_dim, &L->qk, &L->v);
    L->out = cross ? q_dim : L->v;
    if (heads <= 0 || L->qk % heads || L->v % heads)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: qk_channels (%lld) and v_channels (%lld) must be divisible by the number of heads (%lld)",
                             prefix, (long long)L->qk, (long long)L->v, (long long)heads);
    if (L->out != q_dim)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: self-attention v_channels (%lld) must equal the latent width (%lld)",
                             prefix, (long long)L->v, (long long)q_dim);

    char name[256];
    int rc;
#define P(field, nd, a, b, suffix)                                                                \
    do {                                                                                          \
        snprintf(name, sizeof name, "%s.%s", prefix, suffix);                                    \
        if ((rc = param(m, err, field, name, nd, a, b)) != 0)                                     \
            return rc;                                                                            \
    } while (0)
    P(&L->ln1.w, 1, q_dim, 0, "attention.self.layernorm1.weight");
    P(&L->ln1.b, 1, q_dim, 0, "attention.self.layernorm1.bias");
    if (cross) {
        P(&L->ln2.w, 1, kv_dim, 0, "attention.self.layernorm2.weight");
        P(&L->ln2.b, 1, kv_dim, 0, "attention.self.layernorm2.bias");
    }
    P(&L->q.w, 2, L->qk, q_dim, "attention.self.query.weight");
    P(&L->q.b, 1, L->qk, 0, "attention.self.query.bias");
    P(&L->k.w, 2, L->qk, kv_dim, "attention.self.key.weight");
    P(&L->k.b, 1, L->qk, 0, "attention.self.key.bias");
    P(&L->vproj.w, 2, L->v, kv_dim, "attention.self.value.weight");
    P(&L->vproj.b, 1, L->v, 0, "attention.self.value.bias");
    P(&L->o.w, 2, L->out, L->v, "attention.output.dense.weight");
    P(&L->o.b, 1, L->out, 0, "attention.output.dense.bias");
    P(&L->ln_mlp.w, 1, q_dim, 0, "layernorm.weight");
    P(&L->ln_mlp.b, 1, q_dim, 0, "layernorm.bias");
    P(&L->mlp1.w, 2, widening * q_dim, q_dim, "mlp.dense1.weight");
    P(&L->mlp1.b, 1, widening * q_dim, 0, "mlp.dense1.bias");
    P(&L->mlp2.w, 2, q_dim, widening * q_dim, "mlp.dense2.weight");
    P(&L->mlp2.b, 1, q_dim, 0, "mlp.dense2.bias");
#undef P
    return 0;
}

/* ---- architecture ---------------------------------------------------------------------------- */

static const struct {
    pcv_arch arch;
    const char *name;
} arch_names[] = {
    {PCV_ARCH_MASKED_LM, "PerceiverForMaskedLM"},
    {PCV_ARCH_SEQ_CLASSIFIER, "PerceiverForSequenceClassification"},
    {PCV_ARCH_IMAGE_LEARNED, "PerceiverForImageClassificationLearned"},
    {PCV_ARCH_IMAGE_FOURIER, "PerceiverForImageClassificationFourier"},
    {PCV_ARCH_IMAGE_CONV, "PerceiverForImageClassificationConvProcessing"},
    {PCV_ARCH_OPTICAL_FLOW, "PerceiverForOpticalFlow"},
};

const char *pcv_arch_name(pcv_arch a)
{
    for (size_t i = 0; i < sizeof arch_names / sizeof *arch_names; i++)
        if (arch_names[i].arch == a)
            return arch_names[i].name;
    return "unknown";
}

pcv_arch pcv_arch_from_name(const char *s)
{
    for (size_t i = 0; i < sizeof arch_names / sizeof *arch_names; i++)
        if (strcmp(arch_names[i].name, s) == 0)
            return arch_names[i].arch;
    return PCV_ARCH_UNKNOWN;
}

static int check_config(const pcv_config *c, pcv_error *err)
{
    if (c->d_latents % c->num_self_attention_heads || c->d_latents % c->num_cross_attention_heads)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "config: d_latents (%d) must be divisible by num_self_attention_heads (%d) and num_cross_attention_heads (%d)",
                             c->d_latents, c->num_self_attention_heads, c->num_cross_attention_heads);
    if (strcmp(c->hidden_act, "gelu") != 0)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "config: hidden_act '%s' is not supported (Perceiver checkpoints use 'gelu')",
                             c->hidden_act);
    if (strcmp(c->cross_attention_shape_for_attention, "kv") != 0 &&
        strcmp(c->cross_attention_shape_for_attention, "q") != 0)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "config: cross_attention_shape_for_attention must be \"kv\" or \"q\", not \"%s\"",
                             c->cross_attention_shape_for_attention);
    return 0;
}

/* Eval-mode BatchNorm2d folded into y = x * scale + shift with scale = weight / sqrt(var + eps)
 * and shift = bias - mean * scale, the way PyTorch's CPU kernel evaluates it. */
static int build_batchnorm(pcv_model *m, pcv_error *err, const char *prefix, int64_t C)
{
    pcv_tensor w, b, mean, var;
    char name[160];
    int rc;
    float *host = malloc((size_t)(6 * C) * sizeof *host);
    if (!host)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    pcv_tensor *parts[4] = {&w, &b, &mean, &var};
    const char *names[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, names[i]);
        if ((rc = param(m, err, parts[i], name, 1, C, 0)) ||
            (rc = pcv_backend_download(m->be, parts[i]->buf, parts[i]->off * sizeof(float), host + i * C,
                                       (size_t)C * sizeof(float), err))) {
            free(host);
            return rc;
        }
    }
    float *scale = host + 4 * C, *shift = host + 5 * C;
    for (int64_t c = 0; c < C; c++) {
        float inv = 1.0f / sqrtf(host[3 * C + c] + 1e-5f);
        scale[c] = host[c] * inv;
        shift[c] = host[C + c] - host[2 * C + c] * scale[c];
    }
    pcv_exec ex;
    pcv_exec_begin(&ex, m->be, err, false);
    if ((rc = pcv_tensor_alloc(&ex, &m->bn_scale, 1, &C)) || (rc = pcv_tensor_alloc(&ex, &m->bn_shift, 1, &C)) ||
        (rc = pcv_backend_upload(m->be, m->bn_scale.buf, 0, scale, (size_t)C * sizeof(float), err)) ||
        (rc = pcv_backend_upload(m->be, m->bn_shift.buf, 0, shift, (size_t)C * sizeof(float), err))) {
        free(host);
        return rc;
    }
    free(host);
    return 0;
}

static int build_model(pcv_model *m, pcv_error *err)
{
    const pcv_config *c = &m->cfg;
    int rc;
    if ((rc = check_config(c, err)) != 0)
        return rc;

    bool text = m->arch == PCV_ARCH_MASKED_LM || m->arch == PCV_ARCH_SEQ_CLASSIFIER;
    if (text) { /* text preprocessor */
        TRY(param(m, err, &m->embed, "perceiver.input_preprocessor.embeddings.weight", 2, c->vocab_size, c->d_model));
        TRY(param(m, err, &m->pos_embed, "perceiver.input_preprocessor.position_embeddings.weight", 2,
                  c->max_position_embeddings, c->d_model));
    }
    int64_t input_channels = 0;
    switch (m->arch) {
    case PCV_ARCH_MASKED_LM:
    case PCV_ARCH_SEQ_CLASSIFIER:
        input_channels = c->d_model;
        break;
    case PCV_ARCH_IMAGE_LEARNED:
        TRY(param_nd(m, err, &m->conv1x1.w, "perceiver.input_preprocessor.convnet_1x1.weight", 4,
                     (int64_t[]){256, 3, 1, 1}));
        TRY(param(m, err, &m->conv1x1.b, "perceiver.input_preprocessor.convnet_1x1.bias", 1, 256, 0));
        m->conv1x1.w.ndim = 2; /* used as a [256][3] linear layer */
        TRY(param(m, err, &m->img_pos, "perceiver.input_preprocessor.position_embeddings.position_embeddings", 2,
                  (int64_t)c->image_size * c->image_size, 256));
        TRY(param(m, err, &m->pos_proj.w, "perceiver.input_preprocessor.positions_projection.weight", 2, 256, 256));
        TRY(param(m, err, &m->pos_proj.b, "perceiver.input_preprocessor.positions_projection.bias", 1, 256, 0));
        m->img_channels = 256;
        input_channels = 512;
        break;
    case PCV_ARCH_IMAGE_FOURIER:
        m->fourier_bands = 64, m->fourier_res[0] = m->fourier_res[1] = 224;
        m->img_channels = 3;
        input_channels = 3 + pcv_fourier_channels(2, 64, true, false);
        break;
    case PCV_ARCH_IMAGE_CONV:
        TRY(param_nd(m, err, &m->conv_w, "perceiver.input_preprocessor.convnet.conv.weight", 4,
                     (int64_t[]){64, 3, 7, 7}));
        TRY(build_batchnorm(m, err, "perceiver.input_preprocessor.convnet.batchnorm", 64));
        m->fourier_bands = 64, m->fourier_res[0] = m->fourier_res[1] = 56;
        m->img_channels = 64;
        input_channels = 64 + pcv_fourier_channels(2, 64, true, false);
        break;
    case PCV_ARCH_OPTICAL_FLOW:
        TRY(param(m, err, &m->patches.w, "perceiver.input_preprocessor.conv_after_patches.weight", 2, 64, 54));
        TRY(param(m, err, &m->patches.b, "perceiver.input_preprocessor.conv_after_patches.bias", 1, 64, 0));
        m->fourier_bands = 64, m->fourier_res[0] = c->train_size[0], m->fourier_res[1] = c->train_size[1];
        m->img_channels = 64;
        input_channels = 64 + pcv_fourier_channels(2, 64, true, false);
        break;
    default:
        break;
    }
    m->input_channels = input_channels;

    TRY(param(m, err, &m->latents, "perceiver.embeddings.latents", 2, c->num_latents, c->d_latents));
    TRY(build_layer(m, err, &m->enc_cross, "perceiver.encoder.cross_attention", true, c->qk_channels,
                    c->v_channels, c->num_cross_attention_heads, c->d_latents, input_channels,
                    c->cross_attention_widening_factor, c->use_query_residual));

    m->nself = c->num_self_attends_per_block;
    m->self = calloc((size_t)m->nself, sizeof *m->self);
    if (!m->self)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = 0; i < m->nself; i++) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "perceiver.encoder.self_attends.%d", i);
        TRY(build_layer(m, err, &m->self[i], prefix, false, c->qk_channels, c->v_channels,
                        c->num_self_attention_heads, c->d_latents, c->d_latents,
                        c->self_attention_widening_factor, true));
    }

    switch (m->arch) {
    case PCV_ARCH_MASKED_LM:
        /* HF hard-codes the MLM decoder: 8 heads, qk 8*32, v = d_model, no query residual,
         * final_project=False, max_position_embeddings trainable queries. */
        TRY(param(m, err, &m->dec_query, "perceiver.decoder.output_position_encodings.position_embeddings", 2,
                  c->max_position_embeddings, c->d_model));
        TRY(build_layer(m, err, &m->dec, "perceiver.decoder.decoding_cross_attention", true, 8 * 32,
                        c->d_model, 8, c->d_model, c->d_latents, 1, false));
        TRY(param(m, err, &m->mlm_bias, "embedding_decoder.bias", 1, c->vocab_size, 0));
        break;
    case PCV_ARCH_SEQ_CLASSIFIER:
    case PCV_ARCH_IMAGE_LEARNED:
    case PCV_ARCH_IMAGE_FOURIER:
    case PCV_ARCH_IMAGE_CONV:
        /* PerceiverClassificationDecoder: one trainable query, 1 head, qk/v from the channel
         * rules; DeepMind's learned-position model has no query residual (haiku-vs-hf.md M2) */
        TRY(param(m, err, &m->dec_query, "perceiver.decoder.decoder.output_position_encodings.position_embeddings",
                  2, 1, c->d_latents));
        TRY(build_layer(m, err, &m->dec, "perceiver.decoder.decoder.decoding_cross_attention", true, 0, 0, 1,
                        c->d_latents, c->d_latents, 1,
                        !(m->arch == PCV_ARCH_IMAGE_LEARNED && m->numerics == PCV_NUMERICS_HAIKU)));
        TRY(param(m, err, &m->final.w, "perceiver.decoder.decoder.final_layer.weight", 2, c->num_labels, c->d_latents));
        TRY(param(m, err, &m->final.b, "perceiver.decoder.decoder.final_layer.bias", 1, c->num_labels, 0));
        m->has_final = true;
        break;
    case PCV_ARCH_OPTICAL_FLOW:
        /* PerceiverOpticalFlowDecoder: the queries are the preprocessed inputs themselves; 1 head,
         * qk/v from the channel rules, no query residual, Linear(322->2), then / 100 */
        TRY(build_layer(m, err, &m->dec, "perceiver.decoder.decoder.decoding_cross_attention", true, 0, 0, 1,
                        input_channels, c->d_latents, 1, false));
        TRY(param(m, err, &m->final.w, "perceiver.decoder.decoder.final_layer.weight", 2, 2, input_channels));
        TRY(param(m, err, &m->final.b, "perceiver.decoder.decoder.final_layer.bias", 1, 2, 0));
        m->has_final = true;
        {
            static const float sc[4] = {0.01f, 0.01f, 0.0f, 0.0f};
            pcv_exec ex;
            pcv_exec_begin(&ex, m->be, err, false);
            TRY(pcv_tensor_alloc(&ex, &m->flow_scale, 1, (int64_t[]){4}));
            TRY(pcv_backend_upload(m->be, m->flow_scale.buf, 0, sc, sizeof sc, err));
        }
        break;
    default:
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "architecture '%s' is not supported yet",
                             c->architecture);
    }
    return 0;
fail:
    return rc;
}

/* The numerics profile and the switches it implies (haiku-vs-hf.md section 9). */
static void set_numerics(pcv_model *m, pcv_numerics n)
{
    m->numerics = n;
    m->gelu = n == PCV_NUMERICS_HAIKU ? PCV_GELU_TANH : PCV_GELU_ERF;
    m->attn_mode = n == PCV_NUMERICS_HAIKU ? PCV_ATTN_HAIKU : PCV_ATTN_HF;
}

static int model_new(const pcv_config *cfg, const pcv_model_options *opt, pcv_model **out,
                     pcv_error *err)
{
    *out = NULL;
    pcv_model *m = calloc(1, sizeof *m);
    if (!m)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    if (cfg) {
        m->cfg = *cfg;
        m->cfg.id2label = NULL;
        if (cfg->id2label) { /* deep copy: the model owns its config */
            m->cfg.id2label = calloc((size_t)cfg->num_labels, sizeof(char *));
            for (int i = 0; m->cfg.id2label && i < cfg->num_labels; i++)
                m->cfg.id2label[i] = strdup(cfg->id2label[i] ? cfg->id2label[i] : "");
        }
    } else {
        pcv_config_init(&m->cfg);
    }
    m->be = pcv_backend_open(opt ? &opt->backend : NULL, err);
    if (!m->be) {
        pcv_config_free(&m->cfg);
        free(m);
        return err ? (int)err->code : PCV_ERR_DEVICE;
    }
    set_numerics(m, opt && opt->numerics == PCV_NUMERICS_HAIKU ? PCV_NUMERICS_HAIKU : PCV_NUMERICS_HF);
    m->profile = opt && opt->profile;
    m->capture = opt && opt->capture;
    *out = m;
    return 0;
}

static int set_arch(pcv_model *m, pcv_error *err, const char *where)
{
    if (!m->cfg.architecture[0])
        return pcv_set_error(err, PCV_ERR_MISSING,
                             "%s: \"architectures\" is missing; cannot tell which Perceiver head to build", where);
    m->arch = pcv_arch_from_name(m->cfg.architecture);
    if (m->arch == PCV_ARCH_UNKNOWN) {
        char list[512] = "";
        size_t len = 0;
        for (size_t i = 0; i < sizeof arch_names / sizeof *arch_names; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", arch_names[i].name);
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)",
                             where, m->cfg.architecture, list);
    }
    return 0;
}

/* Loads a model from a Hugging Face folder, a checkpoint file, or a DeepMind pickle (file or
 * folder). The config comes from config.json (in the folder, or beside the file); a DeepMind
 * pickle without one gets the built-in preset of the architecture its names show, with the
 * sizes its tensors determine. Numerics AUTO means haiku for DeepMind pickles, hf otherwise. */
int pcv_model_load(const char *dir, const pcv_model_options *opt, pcv_model **out, pcv_error *err)
{
    char path[4096];
    pcv_model *m = NULL;
    int rc;
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: %s", dir, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        snprintf(path, sizeof path, "%s/config.json", dir);
    } else {
        const char *slash = strrchr(dir, '/');
        if (slash)
            snprintf(path, sizeof path, "%.*s/config.json", (int)(slash - dir), dir);
        else
            snprintf(path, sizeof path, "config.json");
    }
    struct stat cs;
    bool have_cfg = stat(path, &cs) == 0 && S_ISREG(cs.st_mode);
    if ((rc = model_new(NULL, opt, &m, err)) != 0)
        return rc;
    TRY(pcv_weights_open(&m->weights, dir, err));
    m->have_weights = true;
    if (have_cfg) {
        TRY(pcv_config_load(&m->cfg, path, err));
    } else if (m->weights.from_haiku) {
        pcv_config_free(&m->cfg);
        TRY(pcv_weights_default_config(&m->weights, &m->cfg, err));
        snprintf(path, sizeof path, "%s", m->weights.source);
    } else {
        rc = pcv_set_error(err, PCV_ERR_MISSING, "%s: missing (a Hugging Face checkpoint needs its "
                           "config.json; only DeepMind pickles have built-in configs)", path);
        goto fail;
    }
    if (!m->cfg.architecture[0]) /* config.json without "architectures": go by the tensor names */
        snprintf(m->cfg.architecture, sizeof m->cfg.architecture, "%s", m->weights.architecture);
    if (!opt || opt->numerics == PCV_NUMERICS_AUTO)
        set_numerics(m, m->weights.from_haiku ? PCV_NUMERICS_HAIKU : PCV_NUMERICS_HF);
    TRY(set_arch(m, err, path));
    TRY(pcv_config_default_labels(&m->cfg, err));
    TRY(build_model(m, err));
    *out = m;
    return 0;
fail:
    pcv_model_free(m);
    return rc;
}

int pcv_model_create_random(const pcv_config *cfg, uint64_t seed, const pcv_model_options *opt,
                            pcv_model **out, pcv_error *err)
{
    pcv_model *m = NULL;
    int rc;
    *out = NULL;
    if ((rc = model_new(cfg, opt, &m, err)) != 0)
        return rc;
    m->random = true;
    m->seed = seed;
    TRY(set_arch(m, err, "config"));
    TRY(build_model(m, err));
    m->random = false;
    *out = m;
    return 0;
fail:
    pcv_model_free(m);
    return rc;
}

void pcv_model_free(pcv_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nparams; i++) {
        if (m->params[i].t.buf)
            pcv_backend_release(m->be, m->params[i].t.buf);
        free(m->params[i].name);
    }
    free(m->params);
    free(m->self);
    pcv_tensor_free(m->be, &m->bn_scale);
    pcv_tensor_free(m->be, &m->bn_shift);
    pcv_tensor_free(m->be, &m->pos_cache);
    pcv_tensor_free(m->be, &m->flow_scale);
    if (m->have_weights)
        pcv_weights_close(&m->weights);
    if (m->be)
        pcv_backend_close(m->be);
    pcv_config_free(&m->cfg);
    free(m);
}

int pcv_model_save(pcv_model *m, const char *dir, pcv_error *err)
{
    char path[4096];
    int rc = 0;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    pcv_st_entry *e = calloc((size_t)m->nparams, sizeof *e);
    float **host = calloc((size_t)m->nparams, sizeof *host);
    if (!e || !host) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    for (int i = 0; i < m->nparams; i++) {
        const pcv_tensor *t = &m->params[i].t;
        size_t bytes = (size_t)pcv_numel(t) * sizeof(float);
        host[i] = malloc(bytes ? bytes : 1);
        if (!host[i]) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory saving '%s'", m->params[i].name);
            goto done;
        }
        if ((rc = pcv_backend_download(m->be, t->buf, t->off * sizeof(float), host[i], bytes, err)))
            goto done;
        e[i].name = m->params[i].name;
        e[i].dtype = PCV_DT_F32;
        e[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++)
            e[i].shape[d] = t->shape[d];
        e[i].data = host[i];
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((rc = pcv_st_write(path, e, m->nparams, err)))
        goto done;
    snprintf(path, sizeof path, "%s/config.json", dir);
    rc = pcv_config_save(&m->cfg, path, err);
done:
    if (host)
        for (int i = 0; i < m->nparams; i++)
            free(host[i]);
    free(host);
    free(e);
    return rc;
}

const pcv_config *pcv_model_config(const pcv_model *m) { return &m->cfg; }
pcv_arch pcv_model_arch(const pcv_model *m) { return m->arch; }
int64_t pcv_model_num_params(const pcv_model *m) { return m->total_params; }
const char *pcv_model_device(const pcv_model *m) { return pcv_backend_device(m->be); }
pcv_numerics pcv_model_numerics(const pcv_model *m) { return m->numerics; }

/* ---- forward --------------------------------------------------------------------------------- */

/* out = PerceiverLayer(x [B][nq][q_dim], src [B][nk][kv_dim] or NULL) with optional 1/0 masks
 * over keys (kmask [B][nk]) and queries (qmask [B][nq], Haiku numerics only).
 * out must be allocated [B][nq][q_dim] and may not alias x. */
static int layer_forward(pcv_exec *ex, const pcv_model *m, const pcv_layer *L, const pcv_tensor *x,
                         int64_t B, int64_t nq, const pcv_tensor *src, int64_t nk,
                         const pcv_tensor *kmask, const pcv_tensor *qmask, pcv_tensor *out)
{
    pcv_backend *be = ex->be;
    pcv_tensor xn = {0}, sn = {0}, Q = {0}, K = {0}, V = {0}, O = {0}, h = {0};
    int rc;
    int64_t rq = B * nq, rk = src ? B * nk : rq;
    if (!src)
        nk = nq;

    TRY(pcv_tensor_alloc(ex, &xn, 2, (int64_t[]){rq, L->q_dim}));
    TRY(op_layernorm(ex, x, rq, &L->ln1.w, &L->ln1.b, &xn));
    const pcv_tensor *kvsrc = &xn;
    if (src) {
        TRY(pcv_tensor_alloc(ex, &sn, 2, (int64_t[]){rk, L->kv_dim}));
        TRY(op_layernorm(ex, src, rk, &L->ln2.w, &L->ln2.b, &sn));
        kvsrc = &sn;
    }
    TRY(pcv_tensor_alloc(ex, &Q, 2, (int64_t[]){rq, L->qk}));
    TRY(pcv_tensor_alloc(ex, &K, 2, (int64_t[]){rk, L->qk}));
    TRY(pcv_tensor_alloc(ex, &V, 2, (int64_t[]){rk, L->v}));
    TRY(op_linear(ex, &xn, rq, &L->q.w, &L->q.b, &Q));
    TRY(op_linear(ex, kvsrc, rk, &L->k.w, &L->k.b, &K));
    TRY(op_linear(ex, kvsrc, rk, &L->vproj.w, &L->vproj.b, &V));
    pcv_tensor_free(be, &sn);

    TRY(pcv_tensor_alloc(ex, &O, 2, (int64_t[]){rq, L->v}));
    pcv_attention_args a = {
        .batch = B, .heads = L->heads, .nq = nq, .nk = nk,
        .dqk = L->qk / L->heads, .dv = L->v / L->heads,
        .scale = sqrtf((float)(L->qk / L->heads)), .mode = m->attn_mode,
        .q = Q.buf, .q_off = Q.off, .q_ld = L->qk,
        .k = K.buf, .k_off = K.off, .k_ld = L->qk,
        .v = V.buf, .v_off = V.off, .v_ld = L->v,
        .o = O.buf, .o_off = O.off, .o_ld = L->v,
        .kmask = kmask ? kmask->buf : NULL, .kmask_off = kmask ? kmask->off : 0,
        .qmask = qmask ? qmask->buf : NULL, .qmask_off = qmask ? qmask->off : 0,
    };
    TRY(op_attention(ex, &a));
    pcv_tensor_free(be, &Q);
    pcv_tensor_free(be, &K);
    pcv_tensor_free(be, &V);

    /* attention output projection, query residual */
    TRY(op_linear(ex, &O, rq, &L->o.w, &L->o.b, out));
    pcv_tensor_free(be, &O);
    if (L->query_residual)
        TRY(op_add(ex, out, x));

    /* MLP with residual: out += W2 gelu(W1 LN(out) + b1) + b2 */
    TRY(op_layernorm(ex, out, rq, &L->ln_mlp.w, &L->ln_mlp.b, &xn));
    TRY(pcv_tensor_alloc(ex, &h, 2, (int64_t[]){rq, L->widening * L->q_dim}));
    TRY(op_linear(ex, &xn, rq, &L->mlp1.w, &L->mlp1.b, &h));
    TRY(op_gelu(ex, &h, m->gelu));
    TRY(op_linear(ex, &h, rq, &L->mlp2.w, &L->mlp2.b, &xn));
    TRY(op_add(ex, out, &xn));
    rc = 0;
fail:
    pcv_tensor_free(be, &xn);
    pcv_tensor_free(be, &sn);
    pcv_tensor_free(be, &Q);
    pcv_tensor_free(be, &K);
    pcv_tensor_free(be, &V);
    pcv_tensor_free(be, &O);
    pcv_tensor_free(be, &h);
    return rc;
}

const pcv_io_tensor *pcv_io_find(const pcv_io_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

int pcv_io_from_safetensors(const pcv_safetensors *st, pcv_io_tensor *out, pcv_error *err)
{
    for (int i = 0; i < st->count; i++) {
        const pcv_st_tensor *t = &st->tensors[i];
        if (strlen(t->name) >= sizeof out[i].name)
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: tensor name '%.40s...' is too long", st->path, t->name);
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].name, sizeof out[i].name, "%s", t->name);
        out[i].dtype = t->dtype;
        out[i].ndim = t->ndim;
        memcpy(out[i].shape, t->shape, sizeof t->shape);
        out[i].data = (void *)(uintptr_t)t->data;
    }
    return 0;
}

void pcv_io_free(pcv_io_tensor *t, int n)
{
    if (!t)
        return;
    for (int i = 0; i < n; i++)
        free(t[i].data);
    free(t);
}

/* Reads an integer input tensor [B][S] into int64 values. */
static int io_to_i64(const pcv_io_tensor *t, int64_t *out, int64_t n, pcv_error *err)
{
    pcv_st_tensor st = {.name = (char *)t->name, .dtype = t->dtype, .ndim = t->ndim, .numel = n,
                        .data = t->data, .nbytes = (size_t)n * pcv_dtype_size(t->dtype)};
    memcpy(st.shape, t->shape, sizeof st.shape);
    return pcv_st_to_i64(&st, out, err);
}

/* The outputs of one forward, grown as tensors are emitted. */
typedef struct out_list {
    pcv_io_tensor *t;
    int n, cap;
} out_list;

static int emit(pcv_exec *ex, out_list *ol, const pcv_tensor *t, const char *name, int ndim,
                const int64_t *shape)
{
    if (ol->n == ol->cap) {
        int cap = ol->cap ? 2 * ol->cap : 8;
        pcv_io_tensor *nt = realloc(ol->t, (size_t)cap * sizeof *nt);
        if (!nt)
            return pcv_set_error(ex->err, PCV_ERR_OOM, "out of memory");
        ol->t = nt;
        ol->cap = cap;
    }
    pcv_io_tensor *o = &ol->t[ol->n];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->dtype = PCV_DT_F32;
    o->ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (o->shape[i] = shape[i]);
    o->data = malloc((size_t)n * sizeof(float));
    if (!o->data)
        return pcv_set_error(ex->err, PCV_ERR_OOM, "cannot allocate output '%s'", name);
    ol->n++;
    return pcv_backend_download(ex->be, t->buf, t->off * sizeof(float), o->data,
                                 (size_t)n * sizeof(float), ex->err);
}

/* Reads the token ids and attention mask of a text model's inputs. */
static int text_inputs(const pcv_model *m, const pcv_io_tensor *inputs, int n_inputs, int64_t *B_out,
                       int64_t *S_out, int32_t **ids_out, float **mask_out, pcv_error *err)
{
    const pcv_config *c = &m->cfg;
    const pcv_io_tensor *in_ids = pcv_io_find(inputs, n_inputs, "input_ids");
    if (!in_ids)
        in_ids = pcv_io_find(inputs, n_inputs, "inputs");
    if (!in_ids)
        return pcv_set_error(err, PCV_ERR_MISSING, "input 'input_ids' (or 'inputs') is missing");
    if (in_ids->ndim != 2 || in_ids->shape[0] < 1 || in_ids->shape[1] < 1)
        return pcv_set_error(err, PCV_ERR_SHAPE, "input '%s' must have shape [batch][seq] with batch, seq >= 1",
                             in_ids->name);
    int64_t B = in_ids->shape[0], S = in_ids->shape[1];
    if (S > c->max_position_embeddings)
        return pcv_set_error(err, PCV_ERR_INPUT,
                             "input '%s' has %lld tokens but the model has only %d positions (max_position_embeddings)",
                             in_ids->name, (long long)S, c->max_position_embeddings);
    const pcv_io_tensor *in_mask = pcv_io_find(inputs, n_inputs, "attention_mask");
    if (in_mask && (in_mask->ndim != 2 || in_mask->shape[0] != B || in_mask->shape[1] != S))
        return pcv_set_error(err, PCV_ERR_SHAPE, "input 'attention_mask' must have shape [%lld][%lld] like '%s'",
                             (long long)B, (long long)S, in_ids->name);
    for (int i = 0; i < n_inputs; i++)
        if (&inputs[i] != in_ids && &inputs[i] != in_mask)
            return pcv_set_error(err, PCV_ERR_INPUT, "unexpected input '%s' for %s (expected input_ids, attention_mask)",
                                 inputs[i].name, pcv_arch_name(m->arch));

    int64_t n = B * S;
    int64_t *tmp = malloc((size_t)n * sizeof *tmp);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    float *mask = in_mask ? malloc((size_t)n * sizeof *mask) : NULL;
    int rc = 0;
    if (!tmp || !ids || (in_mask && !mask)) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    if ((rc = io_to_i64(in_ids, tmp, n, err)))
        goto done;
    for (int64_t i = 0; i < n; i++) {
        if (tmp[i] < 0 || tmp[i] >= c->vocab_size) {
            rc = pcv_set_error(err, PCV_ERR_INPUT, "input '%s'[%lld][%lld] = %lld is outside the vocabulary [0, %d)",
                               in_ids->name, (long long)(i / S), (long long)(i % S), (long long)tmp[i],
                               c->vocab_size);
            goto done;
        }
        ids[i] = (int32_t)tmp[i];
    }
    if (in_mask) {
        pcv_dtype dt = in_mask->dtype;
        if (dt == PCV_DT_F32 || dt == PCV_DT_F16 || dt == PCV_DT_BF16 || dt == PCV_DT_F64) {
            pcv_st_tensor st = {.name = (char *)in_mask->name, .dtype = dt, .ndim = 2, .numel = n,
                                .data = in_mask->data, .nbytes = (size_t)n * pcv_dtype_size(dt)};
            rc = pcv_st_to_f32(&st, mask, err);
        } else if ((rc = io_to_i64(in_mask, tmp, n, err)) == 0) {
            for (int64_t i = 0; i < n; i++)
                mask[i] = (float)tmp[i];
        }
    }
done:
    free(tmp);
    if (rc) {
        free(ids);
        free(mask);
        return rc;
    }
    *B_out = B;
    *S_out = S;
    *ids_out = ids;
    *mask_out = mask;
    return 0;
}

/* Reads "pixel_values" (or "inputs") [B][3][H][W] of any float dtype into float32. */
static int image_inputs(const pcv_model *m, const pcv_io_tensor *inputs, int n_inputs, int64_t dims[4],
                        float **out, pcv_error *err)
{
    const pcv_io_tensor *in = pcv_io_find(inputs, n_inputs, "pixel_values");
    if (!in)
        in = pcv_io_find(inputs, n_inputs, "inputs");
    if (!in)
        return pcv_set_error(err, PCV_ERR_MISSING, "input 'pixel_values' (or 'inputs') is missing");
    for (int i = 0; i < n_inputs; i++)
        if (&inputs[i] != in)
            return pcv_set_error(err, PCV_ERR_INPUT, "unexpected input '%s' for %s (expected pixel_values)",
                                 inputs[i].name, pcv_arch_name(m->arch));
    if (m->arch == PCV_ARCH_OPTICAL_FLOW) {
        const int *ts = m->cfg.train_size;
        if (in->ndim != 5 || in->shape[0] < 1 || in->shape[1] != 2 || in->shape[2] != 27 || in->shape[3] != ts[0] ||
            in->shape[4] != ts[1])
            return pcv_set_error(err, PCV_ERR_SHAPE,
                                 "input '%s' must have shape [batch][2][27][%d][%d] (two frames of 3x3 patches at the "
                                 "model's train_size; larger frames must be tiled)",
                                 in->name, ts[0], ts[1]);
    } else if (in->ndim != 4 || in->shape[1] != 3 || in->shape[0] < 1 || in->shape[2] < 1 || in->shape[3] < 1) {
        return pcv_set_error(err, PCV_ERR_SHAPE, "input '%s' must have shape [batch][3][height][width]", in->name);
    }
    pcv_dtype dt = in->dtype;
    if (dt != PCV_DT_F32 && dt != PCV_DT_F16 && dt != PCV_DT_BF16 && dt != PCV_DT_F64)
        return pcv_set_error(err, PCV_ERR_INPUT, "input '%s' must be a float tensor, not %s", in->name,
                             pcv_dtype_name(dt));
    /* flow: [B][2][27][H][W] is [B][54][H][W] with channel = frame * 27 + patch channel, which is
     * HF's space_to_depth(temporal 2, spatial 1) order */
    int off = in->ndim == 5 ? 1 : 0;
    dims[0] = in->shape[0];
    dims[1] = off ? in->shape[1] * in->shape[2] : in->shape[1];
    dims[2] = in->shape[2 + off];
    dims[3] = in->shape[3 + off];
    int64_t n = dims[0] * dims[1] * dims[2] * dims[3];
    float *x = malloc((size_t)n * sizeof *x);
    if (!x)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory for input '%s'", in->name);
    pcv_st_tensor st = {.name = (char *)in->name, .dtype = dt, .ndim = in->ndim, .numel = n, .data = in->data,
                        .nbytes = (size_t)n * pcv_dtype_size(dt)};
    int rc = pcv_st_to_f32(&st, x, err);
    if (rc) {
        free(x);
        return rc;
    }
    *out = x;
    return 0;
}

/* The input-independent position channels for an h x w token grid, computed once and cached:
 * the projected trainable table (learned model) or Fourier features (others). */
static int image_positions(pcv_exec *ex, pcv_model *m, int64_t h, int64_t w)
{
    if (m->pos_cache.buf && m->pos_cache_hw[0] == h && m->pos_cache_hw[1] == w)
        return 0;
    pcv_tensor_free(m->be, &m->pos_cache);
    int rc;
    int64_t C = m->input_channels - m->img_channels;
    TRY(pcv_tensor_alloc(ex, &m->pos_cache, 2, (int64_t[]){h * w, C}));
    if (m->arch == PCV_ARCH_IMAGE_LEARNED) {
        TRY(op_linear(ex, &m->img_pos, h * w, &m->pos_proj.w, &m->pos_proj.b, &m->pos_cache));
    } else {
        float *f = malloc((size_t)(h * w * C) * sizeof *f);
        if (!f)
            return pcv_set_error(ex->err, PCV_ERR_OOM, "out of memory");
        pcv_fourier_grid(2, (int64_t[]){h, w}, m->fourier_res, m->fourier_bands, true, false, f);
        rc = pcv_backend_upload(m->be, m->pos_cache.buf, 0, f, (size_t)(h * w * C) * sizeof(float), ex->err);
        free(f);
        if (rc)
            goto fail;
    }
    m->pos_cache_hw[0] = h, m->pos_cache_hw[1] = w;
    return 0;
fail:
    pcv_tensor_free(m->be, &m->pos_cache);
    return rc;
}

/* SAME padding of TensorFlow/XLA: output ceil(n / s), total padding split low-first. */
static void same_pad(int64_t n, int64_t k, int64_t s, int64_t *out, int64_t *pad_lo)
{
    *out = (n + s - 1) / s;
    int64_t total = (*out - 1) * s + k - n;
    *pad_lo = total > 0 ? total / 2 : 0;
}

/* Image preprocessors: pixels [B][3][H][W] -> x [B * tokens][input_channels] (channels last,
 * row-major tokens, position channels concatenated after the image channels). */
static int preprocess_image(pcv_exec *ex, pcv_model *m, const pcv_tensor *pix, const int64_t dims[4],
                            pcv_tensor *x, int64_t *tokens)
{
    pcv_backend *be = m->be;
    pcv_tensor t = {0}, cols = {0}, feat = {0}, pooled = {0}, wt = {0};
    int64_t B = dims[0], H = dims[2], W = dims[3], h = H, w = W;
    const pcv_tensor *img = NULL; /* [B*h*w][img_channels] */
    bool haiku = m->numerics == PCV_NUMERICS_HAIKU;
    int rc;

    if (m->arch == PCV_ARCH_IMAGE_CONV) {
        /* pad, Conv2d 7x7 stride 2 (no bias) as im2col + GEMM, BatchNorm + ReLU, max pool 3/2 */
        int64_t oh, ow, pt, pl, ph, pw, qt, ql;
        if (haiku) { /* SAME padding (2 before / 3 after at 224) and SAME pooling (112 -> 56) */
            same_pad(H, 7, 2, &oh, &pt);
            same_pad(W, 7, 2, &ow, &pl);
        } else { /* HF: 3 on every side, pooling without padding (112 -> 55) */
            pt = pl = 3;
            oh = (H + 6 - 7) / 2 + 1;
            ow = (W + 6 - 7) / 2 + 1;
        }
        if (haiku) {
            same_pad(oh, 3, 2, &ph, &qt);
            same_pad(ow, 3, 2, &pw, &ql);
        } else {
            qt = ql = 0;
            ph = oh >= 3 ? (oh - 3) / 2 + 1 : 0;
            pw = ow >= 3 ? (ow - 3) / 2 + 1 : 0;
        }
        if (ph < 1 || pw < 1)
            return pcv_set_error(ex->err, PCV_ERR_SHAPE, "input image %lldx%lld is too small for the conv preprocessor",
                                 (long long)H, (long long)W);
        const pcv_tensor *kernel = &m->conv_w;
        if (haiku) {
            /* HF's converter reversed all four axes of DeepMind's HWIO kernel, which spatially
             * transposes it (haiku-vs-hf.md C2): undo that, kernel[o][c][a][b] = hf[o][c][b][a] */
            TRY(pcv_tensor_alloc(ex, &wt, 2, (int64_t[]){64, 147}));
            TRY(pcv_backend_transpose(be, m->conv_w.buf, m->conv_w.off, 64 * 3, 7, 7, wt.buf, wt.off, ex->err));
            kernel = &wt;
        }
        pcv_tensor kview = *kernel;
        kview.ndim = 2, kview.shape[0] = 64, kview.shape[1] = 147;
        TRY(pcv_tensor_alloc(ex, &cols, 2, (int64_t[]){B * oh * ow, 147}));
        TRY(pcv_backend_im2col(be, pix->buf, pix->off, B, 3, H, W, 7, 7, 2, pt, pl, oh, ow, cols.buf, cols.off,
                            ex->err));
        TRY(pcv_tensor_alloc(ex, &feat, 2, (int64_t[]){B * oh * ow, 64}));
        TRY(op_linear(ex, &cols, B * oh * ow, &kview, NULL, &feat));
        pcv_tensor_free(be, &cols);
        pcv_tensor_free(be, &wt);
        TRY(pcv_backend_channel_affine(be, feat.buf, feat.off, B * oh * ow, 64, m->bn_scale.buf, m->bn_scale.off,
                                    m->bn_shift.buf, m->bn_shift.off, true, ex->err));
        TRY(pcv_tensor_alloc(ex, &pooled, 2, (int64_t[]){B * ph * pw, 64}));
        TRY(pcv_backend_maxpool(be, feat.buf, feat.off, B, oh, ow, 64, 3, 2, qt, ql, ph, pw, pooled.buf, pooled.off,
                             ex->err));
        pcv_tensor_free(be, &feat);
        h = ph, w = pw;
        img = &pooled;
    } else {
        /* channels last: [B][C][H*W] -> [B][H*W][C] */
        int64_t C = dims[1];
        TRY(pcv_tensor_alloc(ex, &t, 2, (int64_t[]){B * H * W, C}));
        TRY(pcv_backend_transpose(be, pix->buf, pix->off, B, C, H * W, t.buf, t.off, ex->err));
        img = &t;
        if (m->arch == PCV_ARCH_OPTICAL_FLOW) { /* conv_after_patches: per-pixel Linear 54->64 */
            TRY(pcv_tensor_alloc(ex, &feat, 2, (int64_t[]){B * H * W, 64}));
            TRY(op_linear(ex, &t, B * H * W, &m->patches.w, &m->patches.b, &feat));
            pcv_tensor_free(be, &t);
            img = &feat;
        }
        if (m->arch == PCV_ARCH_IMAGE_LEARNED) {
            if (H * W != m->img_pos.shape[0]) {
                rc = pcv_set_error(ex->err, PCV_ERR_SHAPE,
                                   "this model's trainable positions cover %lld pixels (image_size %d); the input is %lldx%lld (resizing position tables is not supported)",
                                   (long long)m->img_pos.shape[0], m->cfg.image_size, (long long)H, (long long)W);
                goto fail;
            }
            TRY(pcv_tensor_alloc(ex, &feat, 2, (int64_t[]){B * H * W, 256}));
            TRY(op_linear(ex, &t, B * H * W, &m->conv1x1.w, &m->conv1x1.b, &feat)); /* 1x1 conv */
            pcv_tensor_free(be, &t);
            img = &feat;
        }
    }
    TRY(image_positions(ex, m, h, w));
    int64_t n = B * h * w, ci = m->img_channels, cp = m->input_channels - ci;
    TRY(pcv_tensor_alloc(ex, x, 2, (int64_t[]){n, m->input_channels}));
    TRY(pcv_backend_copy2d(be, img->buf, img->off, ci, n, x->buf, x->off, m->input_channels, n, ci, ex->err));
    TRY(pcv_backend_copy2d(be, m->pos_cache.buf, m->pos_cache.off, cp, h * w, x->buf, x->off + (size_t)ci,
                        m->input_channels, n, cp, ex->err));
    *tokens = h * w;
    rc = 0;
fail:
    pcv_tensor_free(be, &t);
    pcv_tensor_free(be, &cols);
    pcv_tensor_free(be, &feat);
    pcv_tensor_free(be, &pooled);
    pcv_tensor_free(be, &wt);
    return rc;
}

/* Drops trailing positions that are padding in every row of the batch. Only the encoder
 * cross-attention reads input tokens, and a masked key contributes exactly 0 to its softmax in
 * both numerics profiles, so the result is unchanged, unless a row is masked entirely (HF then
 * averages over all S keys): no trimming in that case. */
static void trim_padding(int64_t B, int64_t *S, int32_t *ids, float *mask)
{
    int64_t s0 = *S, keep = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t last = -1;
        for (int64_t t = 0; t < s0; t++)
            if (mask[b * s0 + t] != 0.0f)
                last = t;
        if (last < 0)
            return;
        keep = last + 1 > keep ? last + 1 : keep;
    }
    if (keep == s0)
        return;
    for (int64_t b = 0; b < B; b++) { /* compact the rows in place: [B][s0] -> [B][keep] */
        memmove(ids + b * keep, ids + b * s0, (size_t)keep * sizeof *ids);
        memmove(mask + b * keep, mask + b * s0, (size_t)keep * sizeof *mask);
    }
    *S = keep;
}

int pcv_model_forward(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs,
                      pcv_io_tensor **outputs, int *n_outputs, pcv_error *err)
{
    const pcv_config *c = &m->cfg;
    pcv_backend *be = m->be;
    pcv_exec ex;
    pcv_tensor ids_t = {0}, kmask_t = {0}, qmask_t = {0}, pix = {0}, x = {0}, z = {0}, z2 = {0}, q = {0},
               h = {0}, logits = {0};
    int32_t *ids = NULL;
    float *mask = NULL, *qmaskf = NULL, *pixels = NULL;
    out_list ol = {0};
    int64_t B = 0, S = 0;
    int rc;
    char name[64];
    bool text = m->arch == PCV_ARCH_MASKED_LM || m->arch == PCV_ARCH_SEQ_CLASSIFIER;
    bool flow = m->arch == PCV_ARCH_OPTICAL_FLOW;
    *outputs = NULL;
    *n_outputs = 0;
    pcv_exec_begin(&ex, be, err, m->profile);
    int64_t N = c->num_latents, D = c->d_latents;
    int64_t nqd = m->dec_query.shape[0], qd = m->dec_query.shape[1];

    /* ---- preprocess: x [B * S][input_channels] ---- */
    if (text) {
        if ((rc = text_inputs(m, inputs, n_inputs, &B, &S, &ids, &mask, err)))
            return rc;
        if (mask)
            trim_padding(B, &S, ids, mask);
        if (mask) {
            TRY(pcv_tensor_alloc(&ex, &kmask_t, 2, (int64_t[]){B, S}));
            TRY(pcv_backend_upload(be, kmask_t.buf, 0, mask, (size_t)(B * S) * sizeof(float), err));
            if (m->attn_mode == PCV_ATTN_HAIKU && m->arch == PCV_ARCH_MASKED_LM) {
                /* DeepMind's MLM decoder masks padded query positions (haiku-vs-hf.md G5) */
                qmaskf = calloc((size_t)(B * nqd), sizeof *qmaskf);
                if (!qmaskf) {
                    rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
                    goto fail;
                }
                for (int64_t b = 0; b < B; b++)
                    for (int64_t t = 0; t < S && t < nqd; t++)
                        qmaskf[b * nqd + t] = mask[b * S + t];
                TRY(pcv_tensor_alloc(&ex, &qmask_t, 2, (int64_t[]){B, nqd}));
                TRY(pcv_backend_upload(be, qmask_t.buf, 0, qmaskf, (size_t)(B * nqd) * sizeof(float), err));
            }
        }
        /* x = E[ids] + P[0..S) */
        TRY(pcv_tensor_alloc_bytes(&ex, &ids_t, (size_t)(B * S) * sizeof(int32_t)));
        TRY(pcv_backend_upload(be, ids_t.buf, 0, ids, (size_t)(B * S) * sizeof(int32_t), err));
        TRY(pcv_tensor_alloc(&ex, &x, 2, (int64_t[]){B * S, c->d_model}));
        TRY(pcv_backend_gather(be, m->embed.buf, m->embed.off, ids_t.buf, 0, m->pos_embed.buf, m->pos_embed.off, S,
                            x.buf, x.off, B * S, c->d_model, err));
    } else {
        int64_t dims[4];
        if ((rc = image_inputs(m, inputs, n_inputs, dims, &pixels, err)))
            return rc;
        B = dims[0];
        TRY(pcv_tensor_alloc(&ex, &pix, 4, dims));
        TRY(pcv_backend_upload(be, pix.buf, 0, pixels, (size_t)pcv_numel(&pix) * sizeof(float), err));
        TRY(preprocess_image(&ex, m, &pix, dims, &x, &S));
        pcv_tensor_free(be, &pix);
    }
    if (m->capture)
        TRY(emit(&ex, &ol, &x, "stage.preprocess", 3, (int64_t[]){B, S, m->input_channels}));

    /* ---- encoder ---- */
    TRY(pcv_exec_stage(&ex, PCV_STAGE_ENC_CROSS));
    TRY(pcv_tensor_alloc(&ex, &q, 2, (int64_t[]){B * N, D}));
    TRY(pcv_backend_repeat(be, m->latents.buf, m->latents.off, N * D, B, q.buf, q.off, err));
    TRY(pcv_tensor_alloc(&ex, &z, 2, (int64_t[]){B * N, D}));
    TRY(pcv_tensor_alloc(&ex, &z2, 2, (int64_t[]){B * N, D}));
    TRY(layer_forward(&ex, m, &m->enc_cross, &q, B, N, &x, S, mask ? &kmask_t : NULL, NULL, &z));
    pcv_tensor_free(be, &q);
    if (!flow) /* the flow decoder queries with the preprocessed inputs */
        pcv_tensor_free(be, &x);
    if (m->capture)
        TRY(emit(&ex, &ol, &z, "stage.encoder.cross", 3, (int64_t[]){B, N, D}));
    TRY(pcv_exec_stage(&ex, PCV_STAGE_ENC_SELF));
    for (int blk = 0; blk < c->num_blocks; blk++)
        for (int i = 0; i < m->nself; i++) {
            TRY(layer_forward(&ex, m, &m->self[i], &z, B, N, NULL, 0, NULL, NULL, &z2));
            pcv_tensor t = z;
            z = z2;
            z2 = t;
            if (m->capture) {
                snprintf(name, sizeof name, "stage.encoder.self.%d", blk * m->nself + i);
                TRY(emit(&ex, &ol, &z, name, 3, (int64_t[]){B, N, D}));
            }
        }
    pcv_tensor_free(be, &z2);

    /* ---- decoder ---- */
    TRY(pcv_exec_stage(&ex, PCV_STAGE_DECODER));
    if (flow) {
        nqd = S, qd = m->input_channels;
        q = x;
        x = (pcv_tensor){0};
    } else {
        TRY(pcv_tensor_alloc(&ex, &q, 2, (int64_t[]){B * nqd, qd}));
        TRY(pcv_backend_repeat(be, m->dec_query.buf, m->dec_query.off, nqd * qd, B, q.buf, q.off, err));
    }
    TRY(pcv_tensor_alloc(&ex, &h, 2, (int64_t[]){B * nqd, qd}));
    TRY(layer_forward(&ex, m, &m->dec, &q, B, nqd, &z, N, NULL, qmaskf ? &qmask_t : NULL, &h));
    pcv_tensor_free(be, &q);
    if (m->capture)
        TRY(emit(&ex, &ol, &h, "stage.decoder", 3, (int64_t[]){B, nqd, qd}));

    /* ---- postprocess ---- */
    TRY(pcv_exec_stage(&ex, PCV_STAGE_POSTPROCESS));
    if (m->arch == PCV_ARCH_MASKED_LM) {
        /* logits = h E^T + bias (the embedding decoder reuses the input embedding table) */
        TRY(pcv_tensor_alloc(&ex, &logits, 2, (int64_t[]){B * nqd, c->vocab_size}));
        TRY(op_linear(&ex, &h, B * nqd, &m->embed, &m->mlm_bias, &logits));
        TRY(emit(&ex, &ol, &logits, "logits", 3, (int64_t[]){B, nqd, c->vocab_size}));
    } else if (flow) {
        /* Linear(322 -> 2), then / rescale_factor 100 (as x * 0.01: within 1 ulp) -> [B][H][W][2] */
        TRY(pcv_tensor_alloc(&ex, &logits, 2, (int64_t[]){B * nqd, 2}));
        TRY(op_linear(&ex, &h, B * nqd, &m->final.w, &m->final.b, &logits));
        const pcv_tensor *fs = &m->flow_scale;
        TRY(pcv_backend_channel_affine(be, logits.buf, logits.off, B * nqd, 2, fs->buf, fs->off, fs->buf, fs->off + 2,
                                    false, err));
        TRY(emit(&ex, &ol, &logits, "logits", 4, (int64_t[]){B, c->train_size[0], c->train_size[1], 2}));
    } else {
        /* [B][1][labels] -> [B][labels] */
        TRY(pcv_tensor_alloc(&ex, &logits, 2, (int64_t[]){B * nqd, c->num_labels}));
        TRY(op_linear(&ex, &h, B * nqd, &m->final.w, &m->final.b, &logits));
        TRY(emit(&ex, &ol, &logits, "logits", 2, (int64_t[]){B, c->num_labels}));
    }
    TRY(emit(&ex, &ol, &z, "last_hidden_state", 3, (int64_t[]){B, N, D}));
    TRY(pcv_exec_stage(&ex, PCV_STAGE_POSTPROCESS));
    *outputs = ol.t;
    *n_outputs = ol.n;
    ol.t = NULL;
    ol.n = 0;
    rc = 0;
fail:
    m->last = ex;
    pcv_io_free(ol.t, ol.n);
    pcv_tensor_free(be, &ids_t);
    pcv_tensor_free(be, &kmask_t);
    pcv_tensor_free(be, &qmask_t);
    pcv_tensor_free(be, &pix);
    pcv_tensor_free(be, &x);
    pcv_tensor_free(be, &z);
    pcv_tensor_free(be, &z2);
    pcv_tensor_free(be, &q);
    pcv_tensor_free(be, &h);
    pcv_tensor_free(be, &logits);
    free(ids);
    free(mask);
    free(qmaskf);
    free(pixels);
    return rc;
}

int pcv_model_stats(const pcv_model *m, pcv_stage_stats *out, int cap)
{
    int n = 0;
    for (int s = 0; s < PCV_NUM_STAGES && n < cap; s++, n++) {
        out[n].name = pcv_stage_names[s];
        out[n].seconds = m->last.seconds[s];
        out[n].flops = m->last.flops[s];
    }
    return n;
}

static double layer_flops(const pcv_layer *L, double nq, double nk)
{
    return 2 * nq * L->q_dim * L->qk + 2 * nk * L->kv_dim * (L->qk + L->v) + 2 * nq * nk * (L->qk + L->v) +
           2 * nq * L->v * L->out + 4.0 * L->widening * nq * L->q_dim * L->q_dim;
}

double pcv_model_flops(const pcv_model *m, int64_t batch, int64_t seq)
{
    const pcv_config *c = &m->cfg;
    double f = layer_flops(&m->enc_cross, c->num_latents, (double)seq);
    for (int i = 0; i < m->nself; i++)
        f += c->num_blocks * layer_flops(&m->self[i], c->num_latents, c->num_latents);
    double nqd = (double)m->dec_query.shape[0];
    f += layer_flops(&m->dec, nqd, c->num_latents);
    if (m->arch == PCV_ARCH_MASKED_LM)
        f += 2 * nqd * c->d_model * c->vocab_size;
    else
        f += 2 * nqd * c->d_latents * c->num_labels;
    return f * (double)batch;
}
