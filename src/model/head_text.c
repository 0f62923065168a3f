/* Text heads: the byte-level masked language model (PerceiverForMaskedLM) and the text classifier
 * (PerceiverForSequenceClassification). Both read the UTF-8 byte tokens through
 * PerceiverTextPreprocessor: x = E[ids] + P[0..S).
 *
 * Inputs: "input_ids" (or "inputs"), any integer dtype [batch][seq], and an optional
 * "attention_mask" (1 = token, 0 = padding; integer or float) of the same shape. */
#include "model/heads.h"
#include "util/error.h"

#include <stdlib.h>
#include <string.h>

typedef struct text_state {
    pcv_tensor embed, pos_embed;
    /* masked LM */
    pcv_tensor queries;  /* [max_position_embeddings][d_model] trainable decoder queries */
    pcv_tensor mlm_bias; /* [vocab] */
    pcv_tensor logits;   /* per forward: [B * Q][vocab] */
    /* classifier */
    pcv_cls_decoder cls;
    /* prepared inputs (host, reused between forwards) */
    int32_t *ids;
    float *mask, *qmask;
    int64_t *tmp;
    size_t ids_cap, mask_cap, qmask_cap, tmp_cap;
    bool has_mask, has_qmask;
} text_state;

#define ST(m) ((text_state *)(m)->head)

static int text_build(pcv_model *m, pcv_error *err)
{
    const pcv_config *c = &m->cfg;
    text_state *s = calloc(1, sizeof *s);
    if (!s)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    m->head = s;
    int rc;
    TRY(pcv_param_2d(m, err, &s->embed, "perceiver.input_preprocessor.embeddings.weight", c->vocab_size, c->d_model));
    TRY(pcv_param_2d(m, err, &s->pos_embed, "perceiver.input_preprocessor.position_embeddings.weight",
                     c->max_position_embeddings, c->d_model));
    m->input_channels = c->d_model;
fail:
    return rc;
}

/* HF hard-codes the MLM decoder: max_position_embeddings trainable queries, 8 heads, qk 8*32,
 * v = d_model, no query residual, final_project=False; logits = h E^T + bias (the embedding
 * decoder reuses the input embedding table). */
static int mlm_build(pcv_model *m, pcv_error *err)
{
    const pcv_config *c = &m->cfg;
    int rc;
    TRY(text_build(m, err));
    text_state *s = ST(m);
    TRY(pcv_param_2d(m, err, &s->queries, "perceiver.decoder.output_position_encodings.position_embeddings",
                     c->max_position_embeddings, c->d_model));
    TRY(pcv_build_layer(m, err, &m->dec, "perceiver.decoder.decoding_cross_attention", true, 8 * 32, c->d_model, 8,
                        c->d_model, c->d_latents, 1, false));
    TRY(pcv_param_1d(m, err, &s->mlm_bias, "embedding_decoder.bias", c->vocab_size));
    m->query_channels = c->d_model;
fail:
    return rc;
}

static int classifier_build(pcv_model *m, pcv_error *err)
{
    int rc;
    TRY(text_build(m, err));
    TRY(pcv_cls_decoder_build(m, err, &ST(m)->cls, true));
fail:
    return rc;
}

static void text_free(pcv_model *m)
{
    text_state *s = ST(m);
    if (!s)
        return;
    free(s->ids);
    free(s->mask);
    free(s->qmask);
    free(s->tmp);
    free(s);
    m->head = NULL;
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

static int text_prepare(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs, pcv_shape *sh, pcv_error *err)
{
    const pcv_config *c = &m->cfg;
    text_state *s = ST(m);
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
                                 inputs[i].name, m->arch->hf_class);
    int64_t n = B * S;
    int rc;
    /* ids (int64 + int32), the mask and the query mask, before anything is sized */
    if ((rc = pcv_check_input(in_ids, B, n, 8 + 4 + 4 + 4, err)))
        return rc;
    if ((rc = pcv_host_reserve((void **)&s->tmp, &s->tmp_cap, (size_t)n * sizeof *s->tmp, err)) ||
        (rc = pcv_host_reserve((void **)&s->ids, &s->ids_cap, (size_t)n * sizeof *s->ids, err)) ||
        (rc = pcv_host_reserve((void **)&s->mask, &s->mask_cap, (size_t)n * sizeof *s->mask, err)))
        return rc;
    if ((rc = pcv_io_to_i64(in_ids, s->tmp, n, err)))
        return rc;
    for (int64_t i = 0; i < n; i++) {
        if (s->tmp[i] < 0 || s->tmp[i] >= c->vocab_size)
            return pcv_set_error(err, PCV_ERR_INPUT, "input '%s'[%lld][%lld] = %lld is outside the vocabulary [0, %d)",
                                 in_ids->name, (long long)(i / S), (long long)(i % S), (long long)s->tmp[i],
                                 c->vocab_size);
        s->ids[i] = (int32_t)s->tmp[i];
    }
    s->has_mask = in_mask != NULL;
    if (in_mask) {
        pcv_dtype dt = in_mask->dtype;
        if (dt == PCV_DT_F32 || dt == PCV_DT_F16 || dt == PCV_DT_BF16 || dt == PCV_DT_F64) {
            if ((rc = pcv_io_to_f32(in_mask, s->mask, n, err)))
                return rc;
        } else {
            if ((rc = pcv_io_to_i64(in_mask, s->tmp, n, err)))
                return rc;
            for (int64_t i = 0; i < n; i++)
                s->mask[i] = (float)s->tmp[i];
        }
        trim_padding(B, &S, s->ids, s->mask);
    }
    int64_t Q = m->arch->arch == PCV_ARCH_MASKED_LM ? c->max_position_embeddings : 1;
    /* DeepMind's MLM decoder masks padded query positions (haiku-vs-hf.md G5) */
    s->has_qmask = s->has_mask && m->prof.mlm_query_mask && m->arch->arch == PCV_ARCH_MASKED_LM;
    if (s->has_qmask) {
        if ((rc = pcv_host_reserve((void **)&s->qmask, &s->qmask_cap, (size_t)(B * Q) * sizeof *s->qmask, err)))
            return rc;
        memset(s->qmask, 0, (size_t)(B * Q) * sizeof *s->qmask);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < S && t < Q; t++)
                s->qmask[b * Q + t] = s->mask[b * S + t];
    }
    sh->batch = B;
    sh->tokens = S;
    sh->queries = Q;
    sh->dims[0] = s->has_mask;
    sh->dims[1] = s->has_qmask;
    return 0;
}

static int text_preprocess(pcv_fwd *f)
{
    pcv_exec *ex = f->ex;
    text_state *s = ST(f->m);
    int64_t B = f->shape.batch, S = f->shape.tokens, Q = f->shape.queries;
    int rc;
    pcv_tensor ids;
    TRY(pcv_tensor_alloc(ex, &f->x, 2, (int64_t[]){B * S, f->m->cfg.d_model}));
    if (s->has_mask) {
        TRY(pcv_tensor_alloc(ex, &f->kmask, 2, (int64_t[]){B, S}));
        TRY(op_upload(ex, &f->kmask, s->mask, (size_t)(B * S) * sizeof(float)));
    }
    if (s->has_qmask) {
        TRY(pcv_tensor_alloc(ex, &f->qmask, 2, (int64_t[]){B, Q}));
        TRY(op_upload(ex, &f->qmask, s->qmask, (size_t)(B * Q) * sizeof(float)));
    }
    pcv_arena_mark mk = pcv_arena_mark_get(ex);
    TRY(pcv_tensor_alloc_bytes(ex, &ids, (size_t)(B * S) * sizeof(int32_t)));
    TRY(op_upload(ex, &ids, s->ids, (size_t)(B * S) * sizeof(int32_t)));
    TRY(op_gather(ex, &s->embed, &ids, &s->pos_embed, S, &f->x, B * S, f->m->cfg.d_model)); /* E[ids] + P[0..S) */
    pcv_arena_reset(ex, mk);
fail:
    return rc;
}

/* ---- masked LM decoder ---- */

static int mlm_begin(pcv_fwd *f)
{
    return pcv_tensor_alloc(f->ex, &ST(f->m)->logits, 2,
                            (int64_t[]){f->shape.batch * f->shape.queries, f->m->cfg.vocab_size});
}

static int mlm_queries(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, pcv_tensor *q)
{
    int64_t d = f->m->cfg.d_model;
    return op_copy2d(f->ex, &ST(f->m)->queries, (size_t)(q0 * d), d, nq, q, 0, d, nq, d);
}

static int mlm_post(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, const pcv_tensor *h)
{
    text_state *s = ST(f->m);
    pcv_tensor rows = pcv_rows(&s->logits, b * f->shape.queries + q0, nq, f->m->cfg.vocab_size);
    return op_linear(f->ex, h, nq, &s->embed, &s->mlm_bias, &rows);
}

static int mlm_end(pcv_fwd *f)
{
    return pcv_fwd_emit(f, &ST(f->m)->logits, "logits", 3,
                        (int64_t[]){f->shape.batch, f->shape.queries, f->m->cfg.vocab_size});
}

/* ---- classifier decoder ---- */

static int cls_begin(pcv_fwd *f) { return pcv_cls_decoder_begin(f, &ST(f->m)->cls); }
static int cls_queries(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, pcv_tensor *q)
{
    return pcv_cls_decoder_queries(f, &ST(f->m)->cls, q);
}
static int cls_post(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, const pcv_tensor *h)
{
    return pcv_cls_decoder_post(f, &ST(f->m)->cls, b, h);
}
static int cls_end(pcv_fwd *f) { return pcv_cls_decoder_end(f, &ST(f->m)->cls); }

const pcv_head pcv_head_masked_lm = {
    .build = mlm_build,
    .free_state = text_free,
    .prepare = text_prepare,
    .preprocess = text_preprocess,
    .decode_begin = mlm_begin,
    .queries = mlm_queries,
    .postprocess = mlm_post,
    .decode_end = mlm_end,
};

const pcv_head pcv_head_text_classifier = {
    .build = classifier_build,
    .free_state = text_free,
    .prepare = text_prepare,
    .preprocess = text_preprocess,
    .decode_begin = cls_begin,
    .queries = cls_queries,
    .postprocess = cls_post,
    .decode_end = cls_end,
};
