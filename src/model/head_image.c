/* ImageNet classifier heads: PerceiverForImageClassificationLearned (1x1 conv + learned positions),
 * ...Fourier (raw pixels + 2-D Fourier features) and ...ConvProcessing (7x7 conv stem, BatchNorm,
 * ReLU, max pool + Fourier features), each followed by the classification decoder.
 *
 * Input: "pixel_values" (or "inputs") [batch][3][H][W], any float dtype (PerceiverImageProcessor
 * output, see image/). The conv stem has two variants (haiku-vs-hf.md C1-C4): transformers pads
 * 3 on every side and pools without padding (224 -> 112 -> 55); DeepMind pads SAME (2 before, 3
 * after) and pools SAME (112 -> 56), with its own kernel orientation. */
#include "model/heads.h"
#include "util/error.h"

#include "model/fourier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { IMG_LEARNED, IMG_FOURIER, IMG_CONV };

typedef struct image_state {
    int kind;
    int64_t img_channels; /* channels before the positions: 256 / 3 / 64 */
    /* learned */
    pcv_linear_p conv1x1; /* Conv2d 1x1 3->256 as a [256][3] linear layer */
    pcv_tensor positions; /* projected trainable positions [image_size^2][256] (derived at load) */
    /* conv */
    pcv_tensor kernel;              /* [64][3*7*7] in the profile's orientation */
    pcv_tensor bn_scale, bn_shift;  /* eval BatchNorm folded into a channel affine (derived) */
    /* Fourier */
    int64_t bands, max_res;
    pcv_grid_features grid;
    pcv_cls_decoder cls;
    /* prepared inputs */
    float *pixels;
    size_t pixels_cap;
} image_state;

#define ST(m) ((image_state *)(m)->head)
#define PP "perceiver.input_preprocessor."

/* Eval-mode BatchNorm2d folded into y = x * scale + shift with scale = weight / sqrt(var + eps)
 * and shift = bias - mean * scale, the way PyTorch's CPU kernel evaluates it; computed on the
 * host at load. */
static int build_batchnorm(pcv_model *m, pcv_error *err, image_state *s, int64_t C)
{
    static const char *const names[4] = {"weight", "bias", "running_mean", "running_var"};
    float *host[4] = {0};
    float *fold = malloc((size_t)(2 * C) * sizeof *fold);
    int rc = fold ? 0 : pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = 0; i < 4 && !rc; i++) {
        char name[160];
        pcv_tensor t;
        snprintf(name, sizeof name, PP "convnet.batchnorm.%s", names[i]);
        rc = pcv_param_host(m, err, &t, name, 1, &C, &host[i]);
    }
    if (!rc) {
        float *scale = fold, *shift = fold + C;
        for (int64_t c = 0; c < C; c++) {
            float inv = 1.0f / sqrtf(host[3][c] + 1e-5f);
            scale[c] = host[0][c] * inv;
            shift[c] = host[1][c] - host[2][c] * scale[c];
        }
        rc = pcv_param_derived(m, err, &s->bn_scale, "batchnorm.folded_scale", scale, 1, &C);
        if (!rc)
            rc = pcv_param_derived(m, err, &s->bn_shift, "batchnorm.folded_shift", shift, 1, &C);
    }
    for (int i = 0; i < 4; i++)
        free(host[i]);
    free(fold);
    return rc;
}

/* The 7x7 kernel [64][3][7][7] as a [64][147] matrix. transformers' converter reversed all four
 * axes of DeepMind's HWIO kernel, which spatially transposes it (C2): the DeepMind profile undoes
 * that once, at load: kernel[o][c][a][b] = hf[o][c][b][a]. */
static int build_conv_kernel(pcv_model *m, pcv_error *err, image_state *s)
{
    float *host = NULL;
    int rc = pcv_param_host(m, err, &s->kernel, PP "convnet.conv.weight", 4, (int64_t[]){64, 3, 7, 7}, &host);
    if (rc)
        return rc;
    s->kernel.ndim = 2, s->kernel.shape[0] = 64, s->kernel.shape[1] = 147;
    if (m->prof.dm_conv_stem) {
        float *t = malloc(64 * 147 * sizeof *t);
        if (!t) {
            free(host);
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        }
        for (int oc = 0; oc < 64 * 3; oc++)
            for (int a = 0; a < 7; a++)
                for (int b = 0; b < 7; b++)
                    t[oc * 49 + a * 7 + b] = host[oc * 49 + b * 7 + a];
        rc = pcv_param_derived(m, err, &s->kernel, "convnet.conv.weight.deepmind_orientation", t, 2,
                               (int64_t[]){64, 147});
        free(t);
    }
    free(host);
    return rc;
}

/* The learned model's position channels: Linear(256->256) of the trainable table, input
 * independent, computed once at load. */
static int build_learned_positions(pcv_model *m, pcv_error *err, image_state *s)
{
    const pcv_config *c = &m->cfg;
    int64_t P = (int64_t)c->image_size * c->image_size;
    pcv_tensor table;
    pcv_linear_p proj;
    int rc;
    TRY(pcv_param_2d(m, err, &table, PP "position_embeddings.position_embeddings", P, 256));
    TRY(pcv_param_linear(m, err, &proj, PP "positions_projection", 256, 256));
    float *zero = calloc((size_t)(P * 256), sizeof *zero);
    if (!zero)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    rc = pcv_param_derived(m, err, &s->positions, "positions_projection.output", zero, 2, (int64_t[]){P, 256});
    free(zero);
    if (rc)
        return rc;
    pcv_exec ex;
    pcv_exec_begin(&ex, m->be, NULL, err, false, false);
    TRY(op_linear(&ex, &table, P, &proj.w, &proj.b, &s->positions));
fail:
    return rc;
}

static int image_build(pcv_model *m, pcv_error *err, int kind)
{
    const pcv_config *c = &m->cfg;
    image_state *s = calloc(1, sizeof *s);
    if (!s)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    m->head = s;
    s->kind = kind;
    int rc;
    switch (kind) {
    case IMG_LEARNED:
        TRY(pcv_param_nd(m, err, &s->conv1x1.w, PP "convnet_1x1.weight", 4, (int64_t[]){256, 3, 1, 1}));
        TRY(pcv_param_1d(m, err, &s->conv1x1.b, PP "convnet_1x1.bias", 256));
        s->conv1x1.w.ndim = 2; /* used as a [256][3] linear layer */
        TRY(build_learned_positions(m, err, s));
        s->img_channels = 256;
        m->input_channels = 512;
        break;
    case IMG_FOURIER:
        s->bands = 64, s->max_res = 224;
        s->img_channels = 3;
        m->input_channels = 3 + pcv_fourier_channels(2, 64, true, false);
        break;
    case IMG_CONV:
        TRY(build_conv_kernel(m, err, s));
        TRY(build_batchnorm(m, err, s, 64));
        s->bands = 64, s->max_res = 56;
        s->img_channels = 64;
        m->input_channels = 64 + pcv_fourier_channels(2, 64, true, false);
        break;
    }
    /* DeepMind's learned-position model has no query residual in its decoder (M2) */
    bool residual = kind != IMG_LEARNED || m->prof.learned_query_residual;
    (void)c;
    TRY(pcv_cls_decoder_build(m, err, &s->cls, residual));
fail:
    return rc;
}

static int learned_build(pcv_model *m, pcv_error *err) { return image_build(m, err, IMG_LEARNED); }
static int fourier_build(pcv_model *m, pcv_error *err) { return image_build(m, err, IMG_FOURIER); }
static int conv_build(pcv_model *m, pcv_error *err) { return image_build(m, err, IMG_CONV); }

static void image_free(pcv_model *m)
{
    image_state *s = ST(m);
    if (!s)
        return;
    pcv_grid_features_free(m, &s->grid);
    free(s->pixels);
    free(s);
    m->head = NULL;
}

/* The conv stem's geometry for an H x W input: conv output oh x ow with padding (pt, pl), pool
 * output ph x pw with padding (qt, ql). */
typedef struct stem_geom {
    int64_t oh, ow, pt, pl, ph, pw, qt, ql;
} stem_geom;

static stem_geom conv_geometry(const pcv_model *m, int64_t H, int64_t W)
{
    stem_geom g;
    if (m->prof.dm_conv_stem) { /* SAME conv (2 before / 3 after at 224) and SAME pooling (112 -> 56) */
        pcv_same_pad(H, 7, 2, &g.oh, &g.pt);
        pcv_same_pad(W, 7, 2, &g.ow, &g.pl);
        pcv_same_pad(g.oh, 3, 2, &g.ph, &g.qt);
        pcv_same_pad(g.ow, 3, 2, &g.pw, &g.ql);
    } else { /* transformers: 3 on every side, pooling without padding (112 -> 55) */
        g.pt = g.pl = 3;
        g.oh = (H + 6 - 7) / 2 + 1;
        g.ow = (W + 6 - 7) / 2 + 1;
        g.qt = g.ql = 0;
        g.ph = g.oh >= 3 ? (g.oh - 3) / 2 + 1 : 0;
        g.pw = g.ow >= 3 ? (g.ow - 3) / 2 + 1 : 0;
    }
    return g;
}

static int image_prepare(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs, pcv_shape *sh, pcv_error *err)
{
    image_state *s = ST(m);
    const pcv_io_tensor *in = pcv_io_find(inputs, n_inputs, "pixel_values");
    if (!in)
        in = pcv_io_find(inputs, n_inputs, "inputs");
    if (!in)
        return pcv_set_error(err, PCV_ERR_MISSING, "input 'pixel_values' (or 'inputs') is missing");
    for (int i = 0; i < n_inputs; i++)
        if (&inputs[i] != in)
            return pcv_set_error(err, PCV_ERR_INPUT, "unexpected input '%s' for %s (expected pixel_values)",
                                 inputs[i].name, m->arch->hf_class);
    if (in->ndim != 4 || in->shape[1] != 3 || in->shape[0] < 1 || in->shape[2] < 1 || in->shape[3] < 1)
        return pcv_set_error(err, PCV_ERR_SHAPE, "input '%s' must have shape [batch][3][height][width]", in->name);
    int64_t B = in->shape[0], H = in->shape[2], W = in->shape[3], h = H, w = W;
    if (s->kind == IMG_LEARNED && H * W != s->positions.shape[0])
        return pcv_set_error(err, PCV_ERR_SHAPE,
                             "this model's trainable positions cover %lld pixels (image_size %d); the input is %lldx%lld "
                             "(resizing position tables is not supported)",
                             (long long)s->positions.shape[0], m->cfg.image_size, (long long)H, (long long)W);
    if (s->kind == IMG_CONV) {
        stem_geom g = conv_geometry(m, H, W);
        if (g.ph < 1 || g.pw < 1)
            return pcv_set_error(err, PCV_ERR_SHAPE, "input image %lldx%lld is too small for the conv preprocessor",
                                 (long long)H, (long long)W);
        h = g.ph, w = g.pw;
    }
    int64_t n = B * 3 * H * W;
    int rc = pcv_check_input(in, B, n, sizeof(float), err);
    if (rc)
        return rc;
    rc = pcv_host_reserve((void **)&s->pixels, &s->pixels_cap, (size_t)n * sizeof(float), err);
    if (!rc)
        rc = pcv_io_to_f32(in, s->pixels, n, err);
    if (rc)
        return rc;
    sh->batch = B;
    sh->tokens = h * w;
    sh->queries = 1;
    sh->dims[0] = H, sh->dims[1] = W, sh->dims[2] = h, sh->dims[3] = w;
    return 0;
}

static int image_constants(pcv_model *m, const pcv_shape *sh, pcv_error *err)
{
    image_state *s = ST(m);
    if (s->kind == IMG_LEARNED)
        return 0;
    return pcv_grid_features_update(m, &s->grid, 2, (int64_t[]){sh->dims[2], sh->dims[3]},
                                    (int64_t[]){s->max_res, s->max_res}, s->bands, err);
}

/* pixels [B][3][H][W] -> x [B * tokens][input_channels]: channels last, row-major tokens, the
 * position channels concatenated after the image channels. */
static int image_preprocess(pcv_fwd *f)
{
    pcv_model *m = f->m;
    pcv_exec *ex = f->ex;
    image_state *s = ST(m);
    int64_t B = f->shape.batch, H = f->shape.dims[0], W = f->shape.dims[1], h = f->shape.dims[2],
            w = f->shape.dims[3], n = B * h * w, ci = s->img_channels, C = m->input_channels;
    int rc;
    TRY(pcv_tensor_alloc(ex, &f->x, 2, (int64_t[]){n, C}));
    pcv_arena_mark mk = pcv_arena_mark_get(ex);
    pcv_tensor pix, img;
    TRY(pcv_tensor_alloc(ex, &pix, 4, (int64_t[]){B, 3, H, W}));
    TRY(op_upload(ex, &pix, s->pixels, (size_t)(B * 3 * H * W) * sizeof(float)));
    TRY(pcv_tensor_alloc(ex, &img, 2, (int64_t[]){n, ci}));
    if (s->kind == IMG_CONV) {
        /* Conv2d 7x7 stride 2 (no bias) as im2col + GEMM, BatchNorm + ReLU, max pool 3/2 */
        stem_geom g = conv_geometry(m, H, W);
        pcv_tensor cols, feat;
        TRY(pcv_tensor_alloc(ex, &feat, 2, (int64_t[]){B * g.oh * g.ow, 64}));
        pcv_arena_mark mc = pcv_arena_mark_get(ex);
        TRY(pcv_tensor_alloc(ex, &cols, 2, (int64_t[]){B * g.oh * g.ow, 147}));
        TRY(op_im2col(ex, &pix, B, 3, H, W, 7, 7, 2, g.pt, g.pl, g.oh, g.ow, &cols));
        TRY(op_linear(ex, &cols, B * g.oh * g.ow, &s->kernel, NULL, &feat));
        pcv_arena_reset(ex, mc);
        TRY(op_channel_affine(ex, &feat, B * g.oh * g.ow, 64, &s->bn_scale, &s->bn_shift, true));
        TRY(op_maxpool(ex, &feat, B, g.oh, g.ow, 64, 3, 2, g.qt, g.ql, g.ph, g.pw, &img));
    } else if (s->kind == IMG_LEARNED) {
        pcv_tensor t;
        TRY(pcv_tensor_alloc(ex, &t, 2, (int64_t[]){n, 3}));
        TRY(op_transpose(ex, &pix, B, 3, H * W, &t));                          /* channels last */
        TRY(op_linear(ex, &t, n, &s->conv1x1.w, &s->conv1x1.b, &img));         /* 1x1 conv */
    } else {
        TRY(op_transpose(ex, &pix, B, 3, H * W, &img)); /* channels last */
    }
    const pcv_tensor *pos = s->kind == IMG_LEARNED ? &s->positions : &s->grid.t;
    TRY(op_copy2d(ex, &img, 0, ci, n, &f->x, 0, C, n, ci));
    TRY(op_copy2d(ex, pos, 0, C - ci, h * w, &f->x, (size_t)ci, C, n, C - ci));
fail:
    pcv_arena_reset(ex, mk);
    return rc;
}

static int image_begin(pcv_fwd *f) { return pcv_cls_decoder_begin(f, &ST(f->m)->cls); }
static int image_queries(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, pcv_tensor *q)
{
    return pcv_cls_decoder_queries(f, &ST(f->m)->cls, q);
}
static int image_post(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, const pcv_tensor *h)
{
    return pcv_cls_decoder_post(f, &ST(f->m)->cls, b, h);
}
static int image_end(pcv_fwd *f) { return pcv_cls_decoder_end(f, &ST(f->m)->cls); }

#define IMAGE_HEAD(build_fn)                                                                        \
    {                                                                                               \
        .build = build_fn, .free_state = image_free, .prepare = image_prepare,                      \
        .preprocess = image_preprocess, .decode_begin = image_begin, .queries = image_queries,      \
        .postprocess = image_post, .decode_end = image_end, .plan_constants = image_constants,      \
    }

const pcv_head pcv_head_image_learned = IMAGE_HEAD(learned_build);
const pcv_head pcv_head_image_fourier = IMAGE_HEAD(fourier_build);
const pcv_head pcv_head_image_conv = IMAGE_HEAD(conv_build);
