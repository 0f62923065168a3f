/* The Perceiver IO core: loading a model, planning its memory, and the forward pass.
 *
 * The forward pass is the paper's: the head turns the inputs into an array x; the latent array
 * cross-attends to x once; num_blocks applications of the same self-attention layers refine the
 * latents; the head's output queries cross-attend to the latents; the head turns the result
 * into outputs. Every layer is a pre-LayerNorm PerceiverLayer (docs/architecture.md):
 *
 *     a   = Attention(LN1(x), LN2(src)) (+ x when the layer has a query residual)
 *     out = a + MLP(LN(a))
 *
 * Semantics follow transformers' modeling_perceiver.py (the hf numerics profile) or DeepMind's
 * Haiku code (the haiku profile); the profile's switches live in m->prof.
 */
#include "model/model_impl.h"
#include "model/config_path.h"
#include "util/error.h"
#include "util/fileutil.h"
#include "util/limits.h"

#include "formats/formats.h"
#include "perceiver/presets.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- numerics profiles ---------------------------------------------------------------------------- */

void pcv_profile_init(pcv_profile *p, pcv_numerics n)
{
    bool dm = n == PCV_NUMERICS_HAIKU;
    *p = (pcv_profile){
        .numerics = dm ? PCV_NUMERICS_HAIKU : PCV_NUMERICS_HF,
        .jax_gelu = dm,                                    /* G1 */
        .attn = dm ? PCV_ATTN_HAIKU : PCV_ATTN_HF,         /* G2-G4 */
        .linspace = dm ? PCV_LINSPACE_JAX : PCV_LINSPACE_TORCH, /* G8 */
        .dm_conv_stem = dm,                                /* C1-C4 */
        .learned_query_residual = !dm,                     /* M2 */
        .mlm_query_mask = dm,                              /* G5 */
        .flow_output_scale = dm ? 20.0f : 1.0f,            /* F1 */
    };
}

/* ---- one Perceiver layer ---------------------------------------------------------------------------- */

/* K = s Wk + bk and V = s Wv + bv for the key/value source s [rows][kv_dim]. */
static int project_kv(pcv_exec *ex, const pcv_layer *L, const pcv_tensor *s, int64_t rows, pcv_tensor *K,
                      pcv_tensor *V)
{
    int rc;
    TRY(op_linear(ex, s, rows, &L->k.w, &L->k.b, K));
    TRY(op_linear(ex, s, rows, &L->vproj.w, &L->vproj.b, V));
fail:
    return rc;
}

/* The K and V of a cross-attention layer: LN2(src) projected. K [rows][qk], V [rows][v]. */
static int cross_kv(pcv_exec *ex, const pcv_layer *L, const pcv_tensor *src, int64_t rows, pcv_tensor *K,
                    pcv_tensor *V)
{
    int rc;
    pcv_arena_mark mk = pcv_arena_mark_get(ex);
    pcv_tensor sn;
    TRY(pcv_tensor_alloc(ex, &sn, 2, (int64_t[]){rows, L->kv_dim}));
    TRY(op_layernorm(ex, src, rows, &L->ln2.w, &L->ln2.b, &sn));
    TRY(project_kv(ex, L, &sn, rows, K, V));
fail:
    pcv_arena_reset(ex, mk);
    return rc;
}

/* The rest of a layer once K and V are known: queries from xn = LN1(x) [B*nq][q_dim], attention
 * over nk keys per batch entry (masks: 1 keep / 0 masked, or NULL), output projection, query
 * residual, MLP with residual. out [B*nq][q_dim] may not alias x. */
static int attend(pcv_exec *ex, const pcv_model *m, const pcv_layer *L, const pcv_tensor *x, const pcv_tensor *xn,
                  int64_t B, int64_t nq, const pcv_tensor *K, const pcv_tensor *V, int64_t nk,
                  const pcv_tensor *kmask, const pcv_tensor *qmask, pcv_tensor *out)
{
    int rc;
    int64_t rows = B * nq;
    pcv_arena_mark mk = pcv_arena_mark_get(ex);
    pcv_tensor Q, O, t, h;
    TRY(pcv_tensor_alloc(ex, &Q, 2, (int64_t[]){rows, L->qk}));
    TRY(pcv_tensor_alloc(ex, &O, 2, (int64_t[]){rows, L->v}));
    TRY(op_linear(ex, xn, rows, &L->q.w, &L->q.b, &Q));
    pcv_attention_args a = {
        .batch = B, .heads = L->heads, .nq = nq, .nk = nk,
        .dqk = L->qk / L->heads, .dv = L->v / L->heads,
        .scale = sqrtf((float)(L->qk / L->heads)), .mode = m->prof.attn,
        .q = Q.buf, .q_off = Q.off, .q_ld = L->qk,
        .k = K->buf, .k_off = K->off, .k_ld = L->qk,
        .v = V->buf, .v_off = V->off, .v_ld = L->v,
        .o = O.buf, .o_off = O.off, .o_ld = L->v,
        .kmask = kmask ? kmask->buf : NULL, .kmask_off = kmask ? kmask->off : 0,
        .qmask = qmask ? qmask->buf : NULL, .qmask_off = qmask ? qmask->off : 0,
    };
    TRY(op_attention(ex, &a));
    /* output projection, plus the query residual in the same pass */
    TRY(op_linear_ex(ex, &O, rows, &L->o.w, &L->o.b, out, &(pcv_linear_epilogue){.res = L->query_residual ? x : NULL}));
    pcv_arena_reset(ex, mk);
    /* MLP with residual: out += W2 act(W1 LN(out) + b1) + b2, the GELU and the residual in the passes of
     * the GEMMs (out accumulates W2's product: no temporary) */
    TRY(pcv_tensor_alloc(ex, &t, 2, (int64_t[]){rows, L->q_dim}));
    TRY(pcv_tensor_alloc(ex, &h, 2, (int64_t[]){rows, L->widening * L->q_dim}));
    TRY(op_layernorm(ex, out, rows, &L->ln_mlp.w, &L->ln_mlp.b, &t));
    const bool gelu = m->act == PCV_ACT_GELU;
    TRY(op_linear_ex(ex, &t, rows, &L->mlp1.w, &L->mlp1.b, &h, &(pcv_linear_epilogue){.gelu = gelu}));
    if (!gelu)
        TRY(op_activation(ex, &h, m->act));
    TRY(op_linear_ex(ex, &h, rows, &L->mlp2.w, &L->mlp2.b, out, &(pcv_linear_epilogue){.accumulate = true}));
fail:
    pcv_arena_reset(ex, mk);
    return rc;
}

/* out = PerceiverLayer(x [B][nq][q_dim], src [B][nk][kv_dim] or NULL for self-attention). */
static int layer(pcv_exec *ex, const pcv_model *m, const pcv_layer *L, const pcv_tensor *x, int64_t B, int64_t nq,
                 const pcv_tensor *src, int64_t nk, const pcv_tensor *kmask, pcv_tensor *out)
{
    int rc;
    if (!src)
        nk = nq;
    pcv_arena_mark mk = pcv_arena_mark_get(ex);
    pcv_tensor K, V, xn;
    TRY(pcv_tensor_alloc(ex, &K, 2, (int64_t[]){B * nk, L->qk}));
    TRY(pcv_tensor_alloc(ex, &V, 2, (int64_t[]){B * nk, L->v}));
    if (src)
        TRY(cross_kv(ex, L, src, B * nk, &K, &V));
    TRY(pcv_tensor_alloc(ex, &xn, 2, (int64_t[]){B * nq, L->q_dim}));
    TRY(op_layernorm(ex, x, B * nq, &L->ln1.w, &L->ln1.b, &xn));
    if (!src) /* self-attention: K and V from the same LN1 output as Q */
        TRY(project_kv(ex, L, &xn, B * nq, &K, &V));
    TRY(attend(ex, m, L, x, &xn, B, nq, &K, &V, nk, kmask, NULL, out));
fail:
    pcv_arena_reset(ex, mk);
    return rc;
}

/* ---- outputs ------------------------------------------------------------------------------------------ */

static int out_slot(pcv_fwd *f, const char *name, int ndim, const int64_t *shape, pcv_out_slot **slot)
{
    pcv_model *m = f->m;
    pcv_exec *ex = f->ex;
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    size_t bytes = n * sizeof(float);
    if (ex->dry) { /* planning: record the slot */
        if (m->nouts == m->capouts) {
            int cap = m->capouts ? 2 * m->capouts : 8;
            pcv_out_slot *s = realloc(m->outs, (size_t)cap * sizeof *s);
            if (!s)
                return pcv_set_error(ex->err, PCV_ERR_OOM, "out of memory");
            m->outs = s;
            m->capouts = cap;
        }
        pcv_out_slot *s = &m->outs[m->nouts++];
        memset(s, 0, sizeof *s);
        snprintf(s->io.name, sizeof s->io.name, "%s", name);
        s->io.dtype = PCV_DT_F32;
        s->io.ndim = ndim;
        memcpy(s->io.shape, shape, (size_t)ndim * sizeof *shape);
        s->bytes = bytes;
        f->nout++;
        *slot = NULL;
        return 0;
    }
    if (f->nout >= m->nouts || strcmp(m->outs[f->nout].io.name, name) || m->outs[f->nout].bytes != bytes)
        return pcv_set_error(ex->err, PCV_ERR_DEVICE, "internal error: output '%s' is not in the memory plan", name);
    *slot = &m->outs[f->nout++];
    return 0;
}

int pcv_fwd_emit(pcv_fwd *f, const pcv_tensor *t, const char *name, int ndim, const int64_t *shape)
{
    pcv_out_slot *s = NULL;
    int rc = out_slot(f, name, ndim, shape, &s);
    if (rc || !s)
        return rc;
    return op_download(f->ex, t, s->io.data, s->bytes);
}

int pcv_fwd_emit_host(pcv_fwd *f, const float *data, const char *name, int ndim, const int64_t *shape)
{
    pcv_out_slot *s = NULL;
    int rc = out_slot(f, name, ndim, shape, &s);
    if (!rc && s)
        memcpy(s->io.data, data, s->bytes);
    return rc;
}

pcv_backend *pcv_fwd_backend(const pcv_fwd *f) { return f->m->be; }

/* ---- the forward pass ------------------------------------------------------------------------------------ */

static int forward_pass(pcv_model *m, pcv_exec *ex, const pcv_shape *s)
{
    const pcv_config *c = &m->cfg;
    const pcv_head *head = m->arch->head;
    pcv_fwd fw = {.m = m, .ex = ex, .shape = *s}, *f = &fw;
    int64_t B = s->batch, S = s->tokens, Q = s->queries, N = c->num_latents, D = c->d_latents;
    int64_t qd = m->query_channels;
    char name[64];
    int rc;

    /* inputs -> x [B*S][input_channels] */
    TRY(head->preprocess(f));
    if (m->capture)
        TRY(pcv_fwd_emit(f, &f->x, "stage.preprocess", 3, (int64_t[]){B, S, m->input_channels}));

    /* encoder: the latents cross-attend to x, then the self-attention blocks */
    TRY(pcv_exec_stage(ex, PCV_STAGE_ENC_CROSS));
    pcv_tensor z, z2, lat;
    TRY(pcv_tensor_alloc(ex, &z, 2, (int64_t[]){B * N, D}));
    TRY(pcv_tensor_alloc(ex, &z2, 2, (int64_t[]){B * N, D}));
    TRY(pcv_tensor_alloc(ex, &lat, 2, (int64_t[]){B * N, D}));
    TRY(op_repeat(ex, &m->latents, N * D, B, &lat, 0));
    TRY(layer(ex, m, &m->enc_cross, &lat, B, N, &f->x, S, f->kmask.buf ? &f->kmask : NULL, &z));
    int64_t nlayers = 2 + (int64_t)c->num_blocks * m->nself, done = 1; /* cross, selfs, decoder */
    if (!ex->dry)
        pcv_progress("forward", done, nlayers);
    if (m->capture)
        TRY(pcv_fwd_emit(f, &z, "stage.encoder.cross", 3, (int64_t[]){B, N, D}));
    TRY(pcv_exec_stage(ex, PCV_STAGE_ENC_SELF));
    for (int blk = 0; blk < c->num_blocks; blk++)
        for (int i = 0; i < m->nself; i++) {
            TRY(layer(ex, m, &m->self[i], &z, B, N, NULL, 0, NULL, &z2));
            pcv_tensor t = z;
            z = z2;
            z2 = t;
            if (m->capture) {
                snprintf(name, sizeof name, "stage.encoder.self.%d", blk * m->nself + i);
                TRY(pcv_fwd_emit(f, &z, name, 3, (int64_t[]){B, N, D}));
            }
            if (!ex->dry)
                pcv_progress("forward", ++done, nlayers);
        }
    f->z = z;

    /* decoder: the head's queries cross-attend to the latents, chunk by chunk */
    TRY(pcv_exec_stage(ex, PCV_STAGE_DECODER));
    const pcv_layer *L = &m->dec;
    pcv_tensor K, V, cap = {0};
    TRY(pcv_tensor_alloc(ex, &K, 2, (int64_t[]){B * N, L->qk}));
    TRY(pcv_tensor_alloc(ex, &V, 2, (int64_t[]){B * N, L->v}));
    TRY(cross_kv(ex, L, &z, B * N, &K, &V));
    TRY(head->decode_begin(f));
    if (m->capture)
        TRY(pcv_tensor_alloc(ex, &cap, 2, (int64_t[]){B * Q, qd}));
    int64_t chunk = m->decode_chunk > 0 && m->decode_chunk < Q ? m->decode_chunk : Q;
    for (int64_t b = 0; b < B; b++)
        for (int64_t q0 = 0; q0 < Q; q0 += chunk) {
            int64_t nq = Q - q0 < chunk ? Q - q0 : chunk;
            pcv_arena_mark mk = pcv_arena_mark_get(ex);
            pcv_tensor q, xn, h;
            TRY(pcv_tensor_alloc(ex, &q, 2, (int64_t[]){nq, qd}));
            TRY(pcv_tensor_alloc(ex, &xn, 2, (int64_t[]){nq, qd}));
            TRY(pcv_tensor_alloc(ex, &h, 2, (int64_t[]){nq, qd}));
            TRY(head->queries(f, b, q0, nq, &q));
            TRY(op_layernorm(ex, &q, nq, &L->ln1.w, &L->ln1.b, &xn));
            pcv_tensor Kb = K, Vb = V, qm = f->qmask;
            Kb.off += (size_t)(b * N * L->qk);
            Vb.off += (size_t)(b * N * L->v);
            qm.off += (size_t)(b * Q + q0);
            TRY(attend(ex, m, L, &q, &xn, 1, nq, &Kb, &Vb, N, NULL, f->qmask.buf ? &qm : NULL, &h));
            if (m->capture)
                TRY(op_copy2d(ex, &h, 0, qd, nq, &cap, (size_t)((b * Q + q0) * qd), qd, nq, qd));
            TRY(pcv_exec_stage(ex, PCV_STAGE_POSTPROCESS));
            TRY(head->postprocess(f, b, q0, nq, &h));
            TRY(pcv_exec_stage(ex, PCV_STAGE_DECODER));
            pcv_arena_reset(ex, mk);
        }
    if (m->capture)
        TRY(pcv_fwd_emit(f, &cap, "stage.decoder", 3, (int64_t[]){B, Q, qd}));

    TRY(pcv_exec_stage(ex, PCV_STAGE_POSTPROCESS));
    TRY(head->decode_end(f));
    TRY(pcv_fwd_emit(f, &z, "last_hidden_state", 3, (int64_t[]){B, N, D}));
    TRY(pcv_exec_stage(ex, PCV_STAGE_POSTPROCESS));
    if (!ex->dry)
        pcv_progress("forward", nlayers, nlayers);
fail:
    return rc;
}

static void plan_free_outputs(pcv_model *m)
{
    for (int i = 0; i < m->nouts; i++)
        free(m->outs[i].io.data);
    m->nouts = 0;
    free(m->out_view);
    m->out_view = NULL;
}

/* Plans the memory of a forward pass for shape s: a dry run sizes the arena and the outputs,
 * then both are allocated (an arena big enough from an earlier plan is kept). */
static int plan(pcv_model *m, const pcv_shape *s, pcv_error *err)
{
    int rc;
    m->planned = false;
    plan_free_outputs(m);
    if (m->arch->head->plan_constants && (rc = m->arch->head->plan_constants(m, s, err)))
        return rc;
    pcv_exec ex;
    pcv_exec_begin(&ex, m->be, &m->arena, err, false, true);
    if ((rc = forward_pass(m, &ex, s)))
        return rc;
    /* what the plan needs, before it is allocated */
    double need = 0;
    for (int i = 0; i < PCV_ARENA_MAX_CHUNKS; i++)
        need += (double)m->arena.peak[i] * sizeof(float);
    for (int i = 0; i < m->nouts; i++)
        need += (double)m->outs[i].bytes;
    if (need > (double)pcv_limits_now()->forward_bytes)
        return pcv_set_error(err, PCV_ERR_INPUT, "one forward pass of batch %lld (%lld tokens, %lld queries each) "
                             "needs %.1f GiB of activations and outputs, over %s", (long long)s->batch,
                             (long long)s->tokens, (long long)s->queries, need / (1 << 30),
                             PCV_LIMIT_TEXT("forward_bytes"));
    if ((rc = pcv_arena_commit(&m->arena, m->be, err)))
        return rc;
    m->out_view = calloc((size_t)(m->nouts ? m->nouts : 1), sizeof *m->out_view);
    if (!m->out_view)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = 0; i < m->nouts; i++) {
        m->outs[i].io.data = malloc(m->outs[i].bytes ? m->outs[i].bytes : 1);
        if (!m->outs[i].io.data)
            return pcv_set_error(err, PCV_ERR_OOM, "cannot allocate %zu bytes for output '%s'", m->outs[i].bytes,
                                 m->outs[i].io.name);
    }
    m->plan_shape = *s;
    m->planned = true;
    m->plans++;
    return 0;
}

pcv_status pcv_model_forward(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs, const pcv_io_tensor **outputs,
                      int *n_outputs, pcv_error *err)
{
    pcv_backend_stats before, after;
    pcv_backend_get_stats(m->be, &before);
    *outputs = NULL;
    *n_outputs = 0;
    pcv_shape s;
    memset(&s, 0, sizeof s);
    int rc = m->arch->head->prepare(m, inputs, n_inputs, &s, err);
    if (rc)
        return rc;
    if (!m->planned || memcmp(&s, &m->plan_shape, sizeof s) != 0) {
        if ((rc = plan(m, &s, err)))
            return rc;
    }
    pcv_exec ex;
    pcv_exec_begin(&ex, m->be, &m->arena, err, m->profile, false);
    rc = forward_pass(m, &ex, &s);
    m->last = ex;
    pcv_backend_get_stats(m->be, &after);
    m->last_allocs = after.allocs - before.allocs;
    m->forwards++;
    if (rc)
        return rc;
    for (int i = 0; i < m->nouts; i++)
        m->out_view[i] = m->outs[i].io;
    *outputs = m->out_view;
    *n_outputs = m->nouts;
    return 0;
}

/* ---- building a model ----------------------------------------------------------------------------------- */

static int check_config(pcv_model *m, const pcv_config *c, pcv_error *err)
{
    int rc = pcv_config_check_limits(c, "config", err);
    if (rc)
        return rc;
    if (c->d_latents % c->num_self_attention_heads || c->d_latents % c->num_cross_attention_heads)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "config: d_latents (%d) must be divisible by num_self_attention_heads (%d) and num_cross_attention_heads (%d)",
                             c->d_latents, c->num_self_attention_heads, c->num_cross_attention_heads);
    /* the MLP activation: config.hidden_act; DeepMind's GELU (G1) for every GELU under haiku */
    rc = pcv_activation_from_name(c->hidden_act, &m->act, err);
    if (rc)
        return rc;
    if (m->prof.jax_gelu && m->act == PCV_ACT_GELU)
        m->act = PCV_ACT_GELU_TANH;
    if (strcmp(c->cross_attention_shape_for_attention, "kv") != 0 &&
        strcmp(c->cross_attention_shape_for_attention, "q") != 0)
        return pcv_set_error(err, PCV_ERR_FORMAT, "config: cross_attention_shape_for_attention must be \"kv\" or \"q\", not \"%s\"",
                             c->cross_attention_shape_for_attention);
    return 0;
}

/* The core's parameters around the head's: latents, encoder cross-attention, self-attention
 * layers; the head declares its preprocessor, decoder and postprocessor. */
static int build_model(pcv_model *m, pcv_error *err)
{
    const pcv_config *c = &m->cfg;
    int rc;
    if ((rc = check_config(m, c, err)))
        return rc;
    if (!m->arch->head)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s models load, convert and inspect, but do not run yet",
                             m->arch->hf_class);
    pcv_arena_init(&m->arena, m->be);
    TRY(m->arch->head->build(m, err)); /* sets input_channels, query_channels and m->dec */
    TRY(pcv_param_2d(m, err, &m->latents, "perceiver.embeddings.latents", c->num_latents, c->d_latents));
    TRY(pcv_build_layer(m, err, &m->enc_cross, "perceiver.encoder.cross_attention", true, c->qk_channels,
                        c->v_channels, c->num_cross_attention_heads, c->d_latents, m->input_channels,
                        c->cross_attention_widening_factor, c->use_query_residual));
    m->nself = c->num_self_attends_per_block;
    m->self = calloc((size_t)m->nself, sizeof *m->self);
    if (!m->self)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = 0; i < m->nself; i++) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "perceiver.encoder.self_attends.%d", i);
        TRY(pcv_build_layer(m, err, &m->self[i], prefix, false, c->qk_channels, c->v_channels,
                            c->num_self_attention_heads, c->d_latents, c->d_latents, c->self_attention_widening_factor,
                            true));
    }
    if (m->have_weights)
        pcv_progress("loading weights", m->total_params, m->total_params);
fail:
    return rc;
}

static int model_new(const pcv_config *cfg, const pcv_model_options *opt, pcv_model **out, pcv_error *err)
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
    pcv_profile_init(&m->prof, opt && opt->numerics == PCV_NUMERICS_HAIKU ? PCV_NUMERICS_HAIKU : PCV_NUMERICS_HF);
    m->profile = opt && opt->profile;
    m->capture = opt && opt->capture;
    m->decode_chunk = opt && opt->decode_chunk > 0 ? opt->decode_chunk : 8192;
    *out = m;
    return 0;
}

static int set_arch(pcv_model *m, pcv_error *err, const char *where)
{
    if (!m->cfg.architecture[0])
        return pcv_set_error(err, PCV_ERR_MISSING,
                             "%s: \"architectures\" is missing; cannot tell which Perceiver head to build", where);
    m->arch = pcv_arch_lookup(m->cfg.architecture);
    if (!m->arch || strcmp(m->arch->hf_class, m->cfg.architecture) != 0) {
        char list[1024] = "";
        size_t len = 0;
        int n;
        const pcv_arch_info *t = pcv_arch_table(&n);
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", t[i].hf_class);
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)", where,
                             m->cfg.architecture, list);
    }
    return 0;
}

/* Loads a model from a Hugging Face folder, a checkpoint file, or a DeepMind pickle (file or
 * folder). The config comes from config.json (in the folder, or beside the file); a DeepMind
 * pickle without one gets the built-in preset of the architecture its names show, with the
 * sizes its tensors determine. Numerics AUTO means haiku for DeepMind pickles, hf otherwise. */
bool pcv_config_path(const char *model_path, char *out, size_t cap)
{
    struct stat sb;
    if (stat(model_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(out, cap, "%s/config.json", model_path);
    } else {
        const char *slash = strrchr(model_path, '/');
        if (slash)
            snprintf(out, cap, "%.*s/config.json", (int)(slash - model_path), model_path);
        else
            snprintf(out, cap, "config.json");
    }
    /* anything there that is not a regular file (a FIFO, a folder) counts: its reader refuses it
     * by name, rather than it being mistaken for a missing config */
    return stat(out, &sb) == 0;
}

pcv_status pcv_model_load(const char *dir, const pcv_model_options *opt, pcv_model **out, pcv_error *err)
{
    char path[4096];
    pcv_model *m = NULL;
    int rc;
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: %s", dir, strerror(errno));
    bool have_cfg = pcv_config_path(dir, path, sizeof path);
    if ((rc = model_new(NULL, opt, &m, err)) != 0)
        return rc;
    if (!(m->path = strdup(dir))) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        goto fail;
    }
    TRY(pcv_weights_load(&m->weights, dir, NULL, err));
    m->have_weights = true;
    if (have_cfg) {
        TRY(pcv_config_load(&m->cfg, path, err));
    } else if (m->weights.from_haiku) {
        pcv_config_free(&m->cfg);
        TRY(pcv_config_from_weights(&m->weights, &m->cfg, err));
        snprintf(path, sizeof path, "%s", m->weights.source);
    } else {
        rc = pcv_set_error(err, PCV_ERR_MISSING, "%s: missing (a Hugging Face checkpoint needs its "
                           "config.json; only DeepMind pickles have built-in configs)", path);
        goto fail;
    }
    if (!m->cfg.architecture[0]) /* config.json without "architectures": go by the tensor names */
        snprintf(m->cfg.architecture, sizeof m->cfg.architecture, "%s", m->weights.architecture);
    if (!opt || opt->numerics == PCV_NUMERICS_AUTO)
        pcv_profile_init(&m->prof, m->weights.from_haiku ? PCV_NUMERICS_HAIKU : PCV_NUMERICS_HF);
    TRY(set_arch(m, err, path));
    TRY(pcv_config_default_labels(&m->cfg, err));
    TRY(build_model(m, err));
    *out = m;
    return 0;
fail:
    pcv_model_free(m);
    return rc;
}

pcv_status pcv_model_create_random(const pcv_config *cfg, uint64_t seed, const pcv_model_options *opt, pcv_model **out,
                            pcv_error *err)
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
    if (m->arch && m->arch->head && m->arch->head->free_state)
        m->arch->head->free_state(m);
    if (m->be) {
        pcv_arena_free(&m->arena, m->be);
        pcv_params_free(m);
    }
    plan_free_outputs(m);
    free(m->outs);
    free(m->self);
    if (m->have_weights)
        pcv_weights_release(&m->weights);
    pcv_backend_close(m->be);
    pcv_config_free(&m->cfg);
    free(m->path);
    free(m);
}

pcv_status pcv_model_save(pcv_model *m, const char *dir, pcv_error *err)
{
    char path[4096 + 64];
    int rc = 0;
    /* written as a whole (util/fileutil.h): dir.partial-PID, then renamed into place; on failure
     * (a full disk) or a signal nothing is left, not even an empty folder */
    static const char *const files[] = {"model.safetensors", "config.json"};
    pcv_outdir od;
    if ((rc = pcv_outdir_begin(&od, dir, files, 2, err)))
        return rc;
    pcv_st_entry *e = calloc((size_t)m->nparams, sizeof *e);
    float **host = calloc((size_t)m->nparams, sizeof *host);
    int n = 0;
    if (!e || !host) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    for (int i = 0; i < m->nparams; i++) {
        if (!m->params[i].saved)
            continue;
        const pcv_tensor *t = &m->params[i].t;
        size_t bytes = (size_t)pcv_numel(t) * sizeof(float);
        host[n] = malloc(bytes ? bytes : 1);
        if (!host[n]) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory saving '%s'", m->params[i].name);
            goto done;
        }
        if ((rc = pcv_backend_download(m->be, t->buf, t->off * sizeof(float), host[n], bytes, err)))
            goto done;
        e[n].name = m->params[i].name;
        e[n].dtype = PCV_DT_F32;
        e[n].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++)
            e[n].shape[d] = t->shape[d];
        e[n].data = host[n];
        n++;
    }
    pcv_outdir_path(&od, "model.safetensors", path, sizeof path);
    if ((rc = pcv_st_write(path, e, n, err)))
        goto done;
    pcv_outdir_path(&od, "config.json", path, sizeof path);
    if ((rc = pcv_config_save(&m->cfg, path, err)))
        goto done;
    rc = pcv_outdir_commit(&od, err);
    od.tmp[0] = '\0';
done:
    pcv_outdir_abort(&od);
    if (host)
        for (int i = 0; i < n; i++)
            free(host[i]);
    free(host);
    free(e);
    return rc;
}

/* ---- queries --------------------------------------------------------------------------------------------- */

const pcv_config *pcv_model_config(const pcv_model *m) { return &m->cfg; }
pcv_arch pcv_model_arch(const pcv_model *m) { return m->arch->arch; }
int64_t pcv_model_num_params(const pcv_model *m) { return m->total_params; }
const char *pcv_model_device(const pcv_model *m) { return pcv_backend_device(m->be); }
pcv_numerics pcv_model_numerics(const pcv_model *m) { return m->prof.numerics; }

const char *pcv_arch_name(pcv_arch a)
{
    const pcv_arch_info *ai = pcv_arch_get(a);
    return ai ? ai->hf_class : "unknown";
}

pcv_arch pcv_arch_from_name(const char *s)
{
    const pcv_arch_info *ai = pcv_arch_lookup(s);
    return ai && !strcmp(ai->hf_class, s) ? ai->arch : PCV_ARCH_UNKNOWN;
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

void pcv_model_memory(const pcv_model *m, pcv_memory_stats *s)
{
    pcv_backend_stats bs;
    pcv_backend_get_stats(m->be, &bs);
    memset(s, 0, sizeof *s);
    s->activation_bytes = pcv_arena_bytes(&m->arena);
    s->device_bytes = bs.bytes_in_use;
    s->device_peak_bytes = bs.peak_bytes;
    for (int i = 0; i < m->nouts; i++)
        s->output_bytes += m->outs[i].bytes;
    s->plans = m->plans;
    s->forwards = m->forwards;
    s->last_forward_allocs = m->last_allocs;
}

/* Runs a planning pass for the shape of the given inputs and returns its FLOPs (matrix
 * multiplications only). */
pcv_status pcv_model_flops(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs, double *flops, pcv_error *err)
{
    pcv_shape s;
    memset(&s, 0, sizeof s);
    int rc = m->arch->head->prepare(m, inputs, n_inputs, &s, err);
    if (rc)
        return rc;
    if (m->arch->head->plan_constants && (rc = m->arch->head->plan_constants(m, &s, err)))
        return rc;
    bool was = m->planned;
    pcv_shape keep = m->plan_shape;
    int nouts = m->nouts;
    pcv_exec ex;
    pcv_exec_begin(&ex, m->be, &m->arena, err, false, true);
    size_t peak[PCV_ARENA_MAX_CHUNKS];
    memcpy(peak, m->arena.peak, sizeof peak);
    rc = forward_pass(m, &ex, &s);
    memcpy(m->arena.peak, peak, sizeof peak);
    m->nouts = nouts; /* the planning pass's output slots are not kept */
    m->planned = was && !memcmp(&keep, &s, sizeof s);
    *flops = 0;
    for (int i = 0; i < PCV_NUM_STAGES; i++)
        *flops += ex.flops[i];
    return rc;
}
