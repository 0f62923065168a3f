/* Multimodal autoencoding head (PerceiverForMultimodalAutoencoding, DeepMind's video autoencoder):
 * video + audio + label in, reconstructed pixels and audio samples and label logits out.
 *
 * Inputs (transformers' forward dict arguments, "inputs.<modality>"):
 *   inputs.image [B][T][3][H][W] float (H, W multiples of 4), inputs.audio [B][S][1] (or [B][S],
 *   S a multiple of samples_per_patch), inputs.label [B][num_labels] (optional: it is replaced by
 *   the mask token anyway), subsampled_output_points.image / .audio: integer [n] indices of the
 *   output points to decode (image: row-major into output_shape[1:4] = (T', H', W'); audio: patch
 *   index into num_frames * audio_samples_per_frame / samples_per_patch); absent = every point.
 * Outputs: logits.image [B][n_i][3], logits.audio [B][n_a * samples_per_patch], logits.label
 *   [B][num_labels], last_hidden_state.
 *
 * Encoder input, in sorted modality order (audio, image, label), every token padded with the
 * modality's trainable padding to C = max(spp + 385, 48 + 195, num_labels) + 4 channels:
 *   audio: patches of samples_per_patch samples ++ 1-D Fourier features (192 bands, resolution
 *     num_frames * audio_samples_per_frame) of linspace(-1, 1, S/spp);
 *   image: space_to_depth by 4 ([T][H/4][W/4][48], channel (dh*4 + dw)*3 + c) ++ 3-D Fourier
 *     features (32 bands, resolution (num_frames, image_size, image_size)) of the (T, H/4, W/4) grid;
 *   label: the mask token (mask probability 1).
 * Decoder queries, padded to Cq = max(385, 195, _label_trainable_num_channels) + 2: Fourier
 *   features of the points' positions -1 + 2*coord/dim (not the linspace grid), and the label's
 *   trainable query. One shared decoder cross-attention, Linear(Cq -> output_num_channels), then
 *   per modality Linear to samples_per_patch / 3 / num_labels.
 *
 * The encoder runs once; the decoder decodes any number of points in chunks of decode_chunk
 * queries (transformers' and the colab's loops recompute the encoder for every chunk). */
#include "model/heads.h"

#include "model/fourier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { AUD, IMG, LAB };
static const char *const mod_names[3] = {"audio", "image", "label"};

typedef struct mm_state {
    int64_t spp, nlab, lab_ch, out_ch, C, Cq;
    int64_t n_audio_samples; /* num_frames * audio_samples_per_frame */
    int64_t aud_points;      /* decoder audio index range: n_audio_samples / spp */
    int64_t img_dims[3];     /* decoder image grid: output_shape[1:4] */
    int64_t img_res[3];      /* image Fourier resolution (num_frames, image_size, image_size) */
    int64_t cin[3];          /* channels of each modality before padding */
    pcv_tensor pad_in[3], mask_in[3], label_query, pad_q[3];
    pcv_linear_p final, post[3];
    pcv_grid_features aud_grid, img_grid;
    /* prepared inputs */
    float *audio, *s2d, *qhost;
    size_t audio_cap, s2d_cap, qhost_cap;
    int64_t *pts[2]; /* requested audio / image points (NULL: all) */
    size_t pts_cap[2];
    bool all[2];
    /* per forward */
    pcv_tensor out[3], fin;
} mm_state;

#define ST(m) ((mm_state *)(m)->head)
#define PP "perceiver.input_preprocessor."

static int64_t max3(int64_t a, int64_t b, int64_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

static int mm_build(pcv_model *m, pcv_error *err)
{
    const pcv_config *c = &m->cfg;
    mm_state *s = calloc(1, sizeof *s);
    if (!s)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    m->head = s;
    int rc;
    s->spp = c->samples_per_patch;
    s->nlab = c->num_labels;
    s->lab_ch = c->label_trainable_num_channels;
    s->out_ch = c->output_num_channels;
    s->n_audio_samples = (int64_t)c->num_frames * c->audio_samples_per_frame;
    if (s->spp < 1 || s->n_audio_samples < s->spp || s->n_audio_samples % s->spp || s->nlab < 1 || s->lab_ch < 1 ||
        s->out_ch < 1 || c->image_size < 1 || c->output_shape[1] < 1 || c->output_shape[2] < 1 || c->output_shape[3] < 1)
        return pcv_set_error(err, PCV_ERR_FORMAT, "config: a multimodal model needs positive samples_per_patch (dividing "
                             "num_frames * audio_samples_per_frame), num_labels, _label_trainable_num_channels, "
                             "output_num_channels, image_size and output_shape");
    s->aud_points = s->n_audio_samples / s->spp;
    for (int d = 0; d < 3; d++)
        s->img_dims[d] = c->output_shape[1 + d];
    s->img_res[0] = c->num_frames, s->img_res[1] = s->img_res[2] = c->image_size;
    int64_t fa = pcv_fourier_channels(1, 192, true, false), fi = pcv_fourier_channels(3, 32, true, false);
    s->cin[AUD] = s->spp + fa, s->cin[IMG] = 48 + fi, s->cin[LAB] = s->nlab;
    s->C = max3(s->cin[AUD], s->cin[IMG], s->cin[LAB]) + 4;
    int64_t qin[3] = {fa, fi, s->lab_ch};
    s->Cq = max3(fa, fi, s->lab_ch) + 2;
    char name[160];
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, PP "padding.%s", mod_names[k]);
        TRY(pcv_param_2d(m, err, &s->pad_in[k], name, 1, s->C - s->cin[k]));
        snprintf(name, sizeof name, PP "mask.%s", mod_names[k]);
        TRY(pcv_param_2d(m, err, &s->mask_in[k], name, 1, s->C));
    }
    TRY(pcv_param_2d(m, err, &s->label_query,
                     "perceiver.decoder.modalities.label.decoder.output_position_encodings.position_embeddings", 1,
                     s->lab_ch));
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "perceiver.decoder.padding.%s", mod_names[k]);
        TRY(pcv_param_2d(m, err, &s->pad_q[k], name, 1, s->Cq - qin[k]));
    }
    /* the shared decoder: 1 head, qk/v from the channel rules (d_latents), no query residual */
    TRY(pcv_build_layer(m, err, &m->dec, "perceiver.decoder.decoder.decoding_cross_attention", true, 0, 0, 1, s->Cq,
                        c->d_latents, 1, false));
    TRY(pcv_param_linear(m, err, &s->final, "perceiver.decoder.decoder.final_layer", s->out_ch, s->Cq));
    int64_t post_out[3] = {s->spp, 3, s->nlab};
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "perceiver.output_postprocessor.modalities.%s.classifier", mod_names[k]);
        TRY(pcv_param_linear(m, err, &s->post[k], name, post_out[k], s->out_ch));
    }
    m->input_channels = s->C;
    m->query_channels = s->Cq;
fail:
    return rc;
}

static void mm_free(pcv_model *m)
{
    mm_state *s = ST(m);
    if (!s)
        return;
    pcv_grid_features_free(m, &s->aud_grid);
    pcv_grid_features_free(m, &s->img_grid);
    free(s->audio);
    free(s->s2d);
    free(s->qhost);
    free(s->pts[0]);
    free(s->pts[1]);
    free(s);
    m->head = NULL;
}

/* The requested points of a modality (k 0 audio, 1 image): integer indices below limit. */
static int read_points(mm_state *s, int k, const pcv_io_tensor *t, int64_t limit, int64_t *n, pcv_error *err)
{
    if (!t) {
        s->all[k] = true;
        *n = limit;
        return 0;
    }
    if (t->ndim != 1 || t->shape[0] < 1)
        return pcv_set_error(err, PCV_ERR_SHAPE, "input '%s' must be a 1-D list of point indices", t->name);
    int rc = pcv_host_reserve((void **)&s->pts[k], &s->pts_cap[k], (size_t)t->shape[0] * sizeof(int64_t), err);
    if (!rc)
        rc = pcv_io_to_i64(t, s->pts[k], t->shape[0], err);
    if (rc)
        return rc;
    for (int64_t i = 0; i < t->shape[0]; i++)
        if (s->pts[k][i] < 0 || s->pts[k][i] >= limit)
            return pcv_set_error(err, PCV_ERR_INPUT, "input '%s'[%lld] = %lld is outside the %s points [0, %lld)", t->name,
                                 (long long)i, (long long)s->pts[k][i], k ? "image" : "audio", (long long)limit);
    s->all[k] = false;
    *n = t->shape[0];
    return 0;
}

static int mm_prepare(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs, pcv_shape *sh, pcv_error *err)
{
    mm_state *s = ST(m);
    const pcv_io_tensor *img = pcv_io_find(inputs, n_inputs, "inputs.image"),
                        *aud = pcv_io_find(inputs, n_inputs, "inputs.audio"),
                        *lab = pcv_io_find(inputs, n_inputs, "inputs.label"),
                        *pi = pcv_io_find(inputs, n_inputs, "subsampled_output_points.image"),
                        *pa = pcv_io_find(inputs, n_inputs, "subsampled_output_points.audio");
    if (!img || !aud)
        return pcv_set_error(err, PCV_ERR_MISSING, "input '%s' is missing (a multimodal model takes inputs.image, "
                             "inputs.audio, optionally inputs.label and subsampled_output_points.image/.audio)",
                             img ? "inputs.audio" : "inputs.image");
    for (int i = 0; i < n_inputs; i++) {
        const pcv_io_tensor *t = &inputs[i];
        if (t != img && t != aud && t != lab && t != pi && t != pa)
            return pcv_set_error(err, PCV_ERR_INPUT, "unexpected input '%s' for %s", t->name, m->arch->hf_class);
    }
    if (img->ndim != 5 || img->shape[0] < 1 || img->shape[1] < 1 || img->shape[2] != 3 || img->shape[3] < 4 ||
        img->shape[4] < 4 || img->shape[3] % 4 || img->shape[4] % 4)
        return pcv_set_error(err, PCV_ERR_SHAPE, "input 'inputs.image' must have shape [batch][frames][3][height][width] "
                             "with height and width multiples of 4");
    int64_t B = img->shape[0], T = img->shape[1], H = img->shape[3], W = img->shape[4], h = H / 4, w = W / 4;
    bool aud_ok = (aud->ndim == 3 && aud->shape[2] == 1) || aud->ndim == 2;
    if (!aud_ok || aud->shape[0] != B || aud->shape[1] < s->spp || aud->shape[1] % s->spp)
        return pcv_set_error(err, PCV_ERR_SHAPE, "input 'inputs.audio' must have shape [%lld][samples][1] with samples a "
                             "multiple of samples_per_patch %lld", (long long)B, (long long)s->spp);
    if (lab && (lab->ndim != 2 || lab->shape[0] != B || lab->shape[1] != s->nlab))
        return pcv_set_error(err, PCV_ERR_SHAPE, "input 'inputs.label' must have shape [%lld][%lld]", (long long)B,
                             (long long)s->nlab);
    int64_t S = aud->shape[1], Sa = S / s->spp, Ti = T * h * w, ni, na;
    int64_t img_points = s->img_dims[0] * s->img_dims[1] * s->img_dims[2];
    int rc;
    if ((rc = read_points(s, 0, pa, s->aud_points, &na, err)) || (rc = read_points(s, 1, pi, img_points, &ni, err)))
        return rc;
    /* the limits (batch, forward_bytes) before anything is sized: the video is held twice (raw
     * and reordered) */
    if ((rc = pcv_check_input(img, B, B * T * 3 * H * W, 2 * sizeof(float), err)) ||
        (rc = pcv_check_input(aud, B, B * S, sizeof(float), err)))
        return rc;
    /* audio samples; video in space_to_depth order [B][T][h][w][(dh*4 + dw)*3 + c] */
    size_t nimg = (size_t)(B * T * 3 * H * W);
    float *raw = malloc(nimg * sizeof *raw);
    if (!raw)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory for a [%lld][%lld][3][%lld][%lld] video", (long long)B,
                             (long long)T, (long long)H, (long long)W);
    if ((rc = pcv_host_reserve((void **)&s->audio, &s->audio_cap, (size_t)(B * S) * sizeof(float), err)) ||
        (rc = pcv_host_reserve((void **)&s->s2d, &s->s2d_cap, nimg * sizeof(float), err)) ||
        (rc = pcv_io_to_f32(aud, s->audio, B * S, err)) || (rc = pcv_io_to_f32(img, raw, (int64_t)nimg, err))) {
        free(raw);
        return rc;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = 0; c < 3; c++)
                for (int64_t y = 0; y < H; y++)
                    for (int64_t x = 0; x < W; x++) {
                        int64_t tok = ((b * T + t) * h + y / 4) * w + x / 4, ch = ((y % 4) * 4 + x % 4) * 3 + c;
                        s->s2d[tok * 48 + ch] = raw[(((b * T + t) * 3 + c) * H + y) * W + x];
                    }
    free(raw);
    sh->batch = B;
    sh->tokens = Sa + Ti + 1;
    sh->queries = na + ni + 1;
    sh->dims[0] = T, sh->dims[1] = h, sh->dims[2] = w, sh->dims[3] = Sa, sh->dims[4] = na, sh->dims[5] = ni;
    return 0;
}

static int mm_constants(pcv_model *m, const pcv_shape *sh, pcv_error *err)
{
    mm_state *s = ST(m);
    int rc = pcv_grid_features_update(m, &s->aud_grid, 1, (int64_t[]){sh->dims[3]}, (int64_t[]){s->n_audio_samples},
                                      192, err);
    if (!rc)
        rc = pcv_grid_features_update(m, &s->img_grid, 3, (int64_t[]){sh->dims[0], sh->dims[1], sh->dims[2]},
                                      s->img_res, 32, err);
    return rc;
}

static int mm_preprocess(pcv_fwd *f)
{
    pcv_exec *ex = f->ex;
    mm_state *s = ST(f->m);
    int64_t B = f->shape.batch, S = f->shape.tokens, Sa = f->shape.dims[3],
            Ti = f->shape.dims[0] * f->shape.dims[1] * f->shape.dims[2], C = s->C, spp = s->spp;
    int rc;
    TRY(pcv_tensor_alloc(ex, &f->x, 2, (int64_t[]){B * S, C}));
    pcv_arena_mark mk = pcv_arena_mark_get(ex);
    pcv_tensor aud, img;
    TRY(pcv_tensor_alloc(ex, &aud, 2, (int64_t[]){B * Sa, spp}));
    TRY(op_upload(ex, &aud, s->audio, (size_t)(B * Sa * spp) * sizeof(float)));
    TRY(pcv_tensor_alloc(ex, &img, 2, (int64_t[]){B * Ti, 48}));
    TRY(op_upload(ex, &img, s->s2d, (size_t)(B * Ti * 48) * sizeof(float)));
    int64_t fa = s->cin[AUD] - spp, fi = s->cin[IMG] - 48;
    for (int64_t b = 0; b < B; b++) {
        size_t r0 = (size_t)(b * S) * (size_t)C, ri = r0 + (size_t)(Sa * C), rl = ri + (size_t)(Ti * C);
        /* audio: samples ++ Fourier features ++ padding */
        TRY(op_copy2d(ex, &aud, (size_t)(b * Sa * spp), spp, Sa, &f->x, r0, C, Sa, spp));
        TRY(op_copy2d(ex, &s->aud_grid.t, 0, fa, Sa, &f->x, r0 + (size_t)spp, C, Sa, fa));
        TRY(op_copy2d(ex, &s->pad_in[AUD], 0, C - s->cin[AUD], 1, &f->x, r0 + (size_t)s->cin[AUD], C, Sa,
                      C - s->cin[AUD]));
        /* image: space_to_depth patches ++ Fourier features ++ padding */
        TRY(op_copy2d(ex, &img, (size_t)(b * Ti * 48), 48, Ti, &f->x, ri, C, Ti, 48));
        TRY(op_copy2d(ex, &s->img_grid.t, 0, fi, Ti, &f->x, ri + 48, C, Ti, fi));
        TRY(op_copy2d(ex, &s->pad_in[IMG], 0, C - s->cin[IMG], 1, &f->x, ri + (size_t)s->cin[IMG], C, Ti,
                      C - s->cin[IMG]));
        /* label: masked with probability 1, i.e. the mask token */
        TRY(op_copy2d(ex, &s->mask_in[LAB], 0, C, 1, &f->x, rl, C, 1, C));
    }
fail:
    pcv_arena_reset(ex, mk);
    return rc;
}

static int mm_begin(pcv_fwd *f)
{
    mm_state *s = ST(f->m);
    int64_t B = f->shape.batch, na = f->shape.dims[4], ni = f->shape.dims[5];
    int rc;
    TRY(pcv_tensor_alloc(f->ex, &s->out[AUD], 2, (int64_t[]){B * na, s->spp}));
    TRY(pcv_tensor_alloc(f->ex, &s->out[IMG], 2, (int64_t[]){B * ni, 3}));
    TRY(pcv_tensor_alloc(f->ex, &s->out[LAB], 2, (int64_t[]){B, s->nlab}));
fail:
    return rc;
}

/* point index of query row r of a modality */
static int64_t point(const mm_state *s, int k, int64_t r) { return s->all[k] ? r : s->pts[k][r]; }

/* Query rows [q0, q0 + nq) (the same for every batch entry): audio points, image points, the
 * label query, in that order. Fourier features of the positions are computed on the host. */
static int mm_queries(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, pcv_tensor *q)
{
    pcv_model *m = f->m;
    pcv_exec *ex = f->ex;
    mm_state *s = ST(m);
    int64_t na = f->shape.dims[4], ni = f->shape.dims[5], Cq = s->Cq;
    int64_t seg_lo[3] = {0, na, na + ni}, seg_hi[3] = {na, na + ni, na + ni + 1};
    pcv_linspace_fn lin = m->prof.linspace == PCV_LINSPACE_JAX ? pcv_linspace_jax : pcv_linspace_torch;
    int rc = 0;
    for (int k = 0; k < 3; k++) {
        int64_t lo = seg_lo[k] > q0 ? seg_lo[k] : q0, hi = seg_hi[k] < q0 + nq ? seg_hi[k] : q0 + nq;
        if (lo >= hi)
            continue;
        int64_t n = hi - lo;
        size_t dst = (size_t)((lo - q0) * Cq);
        if (k == LAB) {
            TRY(op_copy2d(ex, &s->label_query, 0, s->lab_ch, 1, q, dst, Cq, 1, s->lab_ch));
            TRY(op_copy2d(ex, &s->pad_q[LAB], 0, Cq - s->lab_ch, 1, q, dst + (size_t)s->lab_ch, Cq, 1, Cq - s->lab_ch));
            continue;
        }
        int nd = k == AUD ? 1 : 3;
        int64_t F = pcv_fourier_channels(nd, k == AUD ? 192 : 32, true, false);
        pcv_arena_mark mk = pcv_arena_mark_get(ex);
        pcv_tensor feat;
        TRY(pcv_tensor_alloc(ex, &feat, 2, (int64_t[]){n, F}));
        if (!ex->dry) {
            size_t need = (size_t)(n * (F + 3)) * sizeof(float);
            TRY(pcv_host_reserve((void **)&s->qhost, &s->qhost_cap, need, ex->err));
            float *pos = s->qhost + n * F;
            for (int64_t r = 0; r < n; r++) {
                int64_t idx = point(s, k, lo - seg_lo[k] + r);
                if (k == AUD) {
                    pos[r] = -1.0f + (float)(2 * idx) / (float)s->aud_points;
                } else { /* unravel (t, y, x) over output_shape[1:4] */
                    int64_t c[3] = {idx / (s->img_dims[1] * s->img_dims[2]), idx / s->img_dims[2] % s->img_dims[1],
                                    idx % s->img_dims[2]};
                    for (int d = 0; d < 3; d++)
                        pos[r * 3 + d] = -1.0f + (float)(2 * c[d]) / (float)s->img_dims[d];
                }
            }
            const int64_t *res = k == AUD ? &s->n_audio_samples : s->img_res;
            pcv_fourier_points(nd, n, pos, res, k == AUD ? 192 : 32, true, false, lin, s->qhost);
            TRY(op_upload(ex, &feat, s->qhost, (size_t)(n * F) * sizeof(float)));
        }
        TRY(op_copy2d(ex, &feat, 0, F, n, q, dst, Cq, n, F));
        TRY(op_copy2d(ex, &s->pad_q[k], 0, Cq - F, 1, q, dst + (size_t)F, Cq, n, Cq - F));
        pcv_arena_reset(ex, mk);
    }
fail:
    return rc;
}

static int mm_post(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, const pcv_tensor *h)
{
    pcv_exec *ex = f->ex;
    mm_state *s = ST(f->m);
    int64_t na = f->shape.dims[4], ni = f->shape.dims[5];
    int64_t seg_lo[3] = {0, na, na + ni}, seg_hi[3] = {na, na + ni, na + ni + 1};
    int64_t rows_of[3] = {na, ni, 1}, width[3] = {s->spp, 3, s->nlab};
    int rc;
    pcv_arena_mark mk = pcv_arena_mark_get(ex);
    pcv_tensor fin;
    TRY(pcv_tensor_alloc(ex, &fin, 2, (int64_t[]){nq, s->out_ch}));
    TRY(op_linear(ex, h, nq, &s->final.w, &s->final.b, &fin));
    for (int k = 0; k < 3; k++) {
        int64_t lo = seg_lo[k] > q0 ? seg_lo[k] : q0, hi = seg_hi[k] < q0 + nq ? seg_hi[k] : q0 + nq;
        if (lo >= hi)
            continue;
        pcv_tensor src = pcv_rows(&fin, lo - q0, hi - lo, s->out_ch);
        pcv_tensor dst = pcv_rows(&s->out[k], b * rows_of[k] + (lo - seg_lo[k]), hi - lo, width[k]);
        TRY(op_linear(ex, &src, hi - lo, &s->post[k].w, &s->post[k].b, &dst));
    }
fail:
    pcv_arena_reset(ex, mk);
    return rc;
}

static int mm_end(pcv_fwd *f)
{
    mm_state *s = ST(f->m);
    int64_t B = f->shape.batch, na = f->shape.dims[4], ni = f->shape.dims[5];
    int rc;
    TRY(pcv_fwd_emit(f, &s->out[AUD], "logits.audio", 2, (int64_t[]){B, na * s->spp}));
    TRY(pcv_fwd_emit(f, &s->out[IMG], "logits.image", 3, (int64_t[]){B, ni, 3}));
    TRY(pcv_fwd_emit(f, &s->out[LAB], "logits.label", 2, (int64_t[]){B, s->nlab}));
fail:
    return rc;
}

const pcv_head pcv_head_multimodal = {
    .build = mm_build,
    .free_state = mm_free,
    .prepare = mm_prepare,
    .preprocess = mm_preprocess,
    .decode_begin = mm_begin,
    .queries = mm_queries,
    .postprocess = mm_post,
    .decode_end = mm_end,
    .plan_constants = mm_constants,
};
