/* Optical flow head (PerceiverForOpticalFlow): two frames of 3x3 patches in, the flow of every
 * pixel out.
 *
 * Input: "inputs" [batch][2][27][H][W] with H x W = config.train_size: per frame, the 3x3
 * neighbourhood of each pixel (channel (kh*3 + kw)*3 + c) of the frame normalised to [-1, 1].
 * Preprocessing: space_to_depth(temporal 2) gives 54 channels (frame*27 + patch channel), a
 * per-pixel Linear(54 -> 64), then 2-D Fourier features over the H x W grid (max_resolution =
 * train_size). The decoder queries are those preprocessed inputs themselves; the decoder output
 * goes through Linear(322 -> 2) and / 100 (transformers' rescale_factor). The haiku profile also
 * multiplies by the colab's FLOW_SCALE_FACTOR 20, so that `run` returns what DeepMind's
 * transformed function returns. Output "logits" [batch][H][W][2], channel 0 = u (+x right),
 * channel 1 = v (+y down). */
#include "model/heads.h"
#include "util/error.h"

#include "model/fourier.h"

#include <stdlib.h>

typedef struct flow_state {
    pcv_linear_p patches; /* conv_after_patches: a per-pixel Linear 54 -> 64 */
    pcv_linear_p final;   /* Linear 322 -> 2 */
    pcv_tensor scale;     /* {s, s, 0, 0}: the output scale as a channel affine (derived) */
    pcv_grid_features grid;
    pcv_tensor logits; /* per forward: [B * H * W][2] */
    float *frames;
    size_t frames_cap;
} flow_state;

#define ST(m) ((flow_state *)(m)->head)

static int flow_build(pcv_model *m, pcv_error *err)
{
    const pcv_config *c = &m->cfg;
    flow_state *s = calloc(1, sizeof *s);
    if (!s)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    m->head = s;
    int rc;
    if (c->train_size[0] < 1 || c->train_size[1] < 1)
        return pcv_set_error(err, PCV_ERR_FORMAT, "config: train_size must be two positive sizes");
    TRY(pcv_param_linear(m, err, &s->patches, "perceiver.input_preprocessor.conv_after_patches", 64, 54));
    m->input_channels = 64 + pcv_fourier_channels(2, 64, true, false);
    m->query_channels = m->input_channels;
    /* PerceiverOpticalFlowDecoder: 1 head, qk/v from the channel rules, no query residual */
    TRY(pcv_build_layer(m, err, &m->dec, "perceiver.decoder.decoder.decoding_cross_attention", true, 0, 0, 1,
                        m->input_channels, c->d_latents, 1, false));
    TRY(pcv_param_linear(m, err, &s->final, "perceiver.decoder.decoder.final_layer", 2, m->input_channels));
    /* / 100 as x * 0.01 (within 1 ulp), times the profile's output scale */
    float k = (float)(m->prof.flow_output_scale / 100.0);
    const float sc[4] = {k, k, 0.0f, 0.0f};
    TRY(pcv_param_derived(m, err, &s->scale, "flow.output_scale", sc, 1, (int64_t[]){4}));
fail:
    return rc;
}

static void flow_free(pcv_model *m)
{
    flow_state *s = ST(m);
    if (!s)
        return;
    pcv_grid_features_free(m, &s->grid);
    free(s->frames);
    free(s);
    m->head = NULL;
}

static int flow_prepare(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs, pcv_shape *sh, pcv_error *err)
{
    flow_state *s = ST(m);
    const pcv_io_tensor *in = pcv_io_find(inputs, n_inputs, "inputs");
    if (!in)
        in = pcv_io_find(inputs, n_inputs, "pixel_values");
    if (!in)
        return pcv_set_error(err, PCV_ERR_MISSING, "input 'inputs' is missing");
    for (int i = 0; i < n_inputs; i++)
        if (&inputs[i] != in)
            return pcv_set_error(err, PCV_ERR_INPUT, "unexpected input '%s' for %s (expected inputs)", inputs[i].name,
                                 m->arch->hf_class);
    const int *ts = m->cfg.train_size;
    if (in->ndim != 5 || in->shape[0] < 1 || in->shape[1] != 2 || in->shape[2] != 27 || in->shape[3] != ts[0] ||
        in->shape[4] != ts[1])
        return pcv_set_error(err, PCV_ERR_SHAPE,
                             "input '%s' must have shape [batch][2][27][%d][%d] (two frames of 3x3 patches at the "
                             "model's train_size; larger frames are tiled by the flow command)",
                             in->name, ts[0], ts[1]);
    int64_t B = in->shape[0], H = ts[0], W = ts[1], n = B * 54 * H * W;
    int rc = pcv_check_input(in, B, n, sizeof(float), err);
    if (rc)
        return rc;
    rc = pcv_host_reserve((void **)&s->frames, &s->frames_cap, (size_t)n * sizeof(float), err);
    if (!rc)
        rc = pcv_io_to_f32(in, s->frames, n, err);
    if (rc)
        return rc;
    sh->batch = B;
    sh->tokens = H * W;
    sh->queries = H * W;
    sh->dims[0] = H, sh->dims[1] = W;
    return 0;
}

static int flow_constants(pcv_model *m, const pcv_shape *sh, pcv_error *err)
{
    const int *ts = m->cfg.train_size;
    return pcv_grid_features_update(m, &ST(m)->grid, 2, (int64_t[]){sh->dims[0], sh->dims[1]},
                                    (int64_t[]){ts[0], ts[1]}, 64, err);
}

static int flow_preprocess(pcv_fwd *f)
{
    pcv_exec *ex = f->ex;
    flow_state *s = ST(f->m);
    int64_t B = f->shape.batch, HW = f->shape.tokens, n = B * HW, C = f->m->input_channels;
    int rc;
    TRY(pcv_tensor_alloc(ex, &f->x, 2, (int64_t[]){n, C}));
    pcv_arena_mark mk = pcv_arena_mark_get(ex);
    pcv_tensor in, t, feat;
    /* [B][2][27][H][W] is [B][54][H*W] with channel = frame * 27 + patch channel: HF's
     * space_to_depth(temporal 2, spatial 1) order */
    TRY(pcv_tensor_alloc(ex, &in, 2, (int64_t[]){B * 54, HW}));
    TRY(op_upload(ex, &in, s->frames, (size_t)(n * 54) * sizeof(float)));
    TRY(pcv_tensor_alloc(ex, &t, 2, (int64_t[]){n, 54}));
    TRY(op_transpose(ex, &in, B, 54, HW, &t));
    TRY(pcv_tensor_alloc(ex, &feat, 2, (int64_t[]){n, 64}));
    TRY(op_linear(ex, &t, n, &s->patches.w, &s->patches.b, &feat)); /* conv_after_patches */
    TRY(op_copy2d(ex, &feat, 0, 64, n, &f->x, 0, C, n, 64));
    TRY(op_copy2d(ex, &s->grid.t, 0, C - 64, HW, &f->x, 64, C, n, C - 64));
fail:
    pcv_arena_reset(ex, mk);
    return rc;
}

static int flow_begin(pcv_fwd *f)
{
    return pcv_tensor_alloc(f->ex, &ST(f->m)->logits, 2, (int64_t[]){f->shape.batch * f->shape.queries, 2});
}

/* the decoder queries are the preprocessed inputs */
static int flow_queries(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, pcv_tensor *q)
{
    int64_t C = f->m->input_channels;
    return op_copy2d(f->ex, &f->x, (size_t)((b * f->shape.tokens + q0) * C), C, nq, q, 0, C, nq, C);
}

static int flow_post(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, const pcv_tensor *h)
{
    flow_state *s = ST(f->m);
    int rc;
    pcv_tensor rows = pcv_rows(&s->logits, b * f->shape.queries + q0, nq, 2);
    pcv_tensor shift = s->scale;
    shift.off += 2;
    TRY(op_linear(f->ex, h, nq, &s->final.w, &s->final.b, &rows));
    TRY(op_channel_affine(f->ex, &rows, nq, 2, &s->scale, &shift, false));
fail:
    return rc;
}

static int flow_end(pcv_fwd *f)
{
    return pcv_fwd_emit(f, &ST(f->m)->logits, "logits", 4,
                        (int64_t[]){f->shape.batch, f->shape.dims[0], f->shape.dims[1], 2});
}

const pcv_head pcv_head_optical_flow = {
    .build = flow_build,
    .free_state = flow_free,
    .prepare = flow_prepare,
    .preprocess = flow_preprocess,
    .decode_begin = flow_begin,
    .queries = flow_queries,
    .postprocess = flow_post,
    .decode_end = flow_end,
    .plan_constants = flow_constants,
};
