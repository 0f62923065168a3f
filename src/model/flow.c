/* Optical flow of whole frames (perceiver/flow.h): tiling, the colab's input pipeline, blending. */
#include "perceiver/flow.h"

#include "model/model_impl.h"
#include "util/clock.h"
#include "util/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One axis of DeepMind's compute_grid_indices: range(0, size, tile - overlap) with the last entry
 * moved flush with the border; repaired: clamped into the frame, duplicates dropped (first kept). */
static int grid_axis(int size, int tile, int overlap, int *out, int cap)
{
    int step = tile - overlap > 0 ? tile - overlap : 1, n = 0, last = size - tile;
    for (int v = 0; v < size; v += step) {
        int next = v + step >= size ? last : v; /* the last entry is replaced */
        int c = next < last ? next : last; /* non-decreasing: a duplicate follows its twin */
        if ((n == 0 || out[n - 1] != c) && n < cap)
            out[n++] = c;
    }
    return n;
}

int pcv_flow_grid(int h, int w, int tile_h, int tile_w, int min_overlap, int *origins, int cap)
{
    if (h < tile_h || w < tile_w || tile_h < 1 || tile_w < 1)
        return -1;
    /* an axis has at most `size` origins (steps of at least 1 pixel) */
    int *ys = malloc(sizeof(int) * (size_t)h), *xs = malloc(sizeof(int) * (size_t)w);
    if (!ys || !xs) {
        free(ys);
        free(xs);
        return -1;
    }
    int ny = grid_axis(h, tile_h, min_overlap, ys, h), nx = grid_axis(w, tile_w, min_overlap, xs, w);
    int n = 0;
    for (int i = 0; i < ny; i++)
        for (int j = 0; j < nx; j++, n++)
            if (origins && n < cap) {
                origins[2 * n] = ys[i];
                origins[2 * n + 1] = xs[j];
            }
    free(ys);
    free(xs);
    return n;
}

/* float32(u / 255 * 2 - 1) evaluated in float64 and rounded once, as the colab's NumPy
 * normalisation before jnp.stack casts to float32 */
static float norm_lut[256];

static void init_lut(void)
{
    static bool done;
    if (done)
        return;
    for (int u = 0; u < 256; u++)
        norm_lut[u] = (float)((double)u / 255.0 * 2.0 - 1.0);
    done = true;
}

/* One tile of a normalised frame pair as [2][27][th][tw]: the tile is cropped first, then
 * zero-padded by one pixel (so border pixels see padding even inside the frame, as DeepMind's
 * patches_for_flow on the cropped tile), 3x3 neighbourhoods in channel (kh*3 + kw)*3 + c. */
static void tile_patches(const float *const norm[2], int W, int y0, int x0, int th, int tw, float *out)
{
    size_t plane = (size_t)th * (size_t)tw;
    for (int f = 0; f < 2; f++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++)
                for (int c = 0; c < 3; c++) {
                    float *dst = out + ((size_t)f * 27 + (size_t)((kh * 3 + kw) * 3 + c)) * plane;
                    for (int y = 0; y < th; y++) {
                        int sy = y + kh - 1;
                        for (int x = 0; x < tw; x++) {
                            int sx = x + kw - 1;
                            bool in = sy >= 0 && sy < th && sx >= 0 && sx < tw;
                            dst[(size_t)y * tw + x] =
                                in ? norm[f][((size_t)(y0 + sy) * W + (size_t)(x0 + sx)) * 3 + (size_t)c] : 0.0f;
                        }
                    }
                }
}

pcv_status pcv_flow_pair(pcv_model *m, const pcv_image *a, const pcv_image *b, const pcv_flow_options *opt,
                         float *flow, pcv_flow_info *info, pcv_error *err)
{
    double t0 = pcv_now();
    pcv_flow_options o = opt ? *opt : (pcv_flow_options){0};
    if (o.min_overlap <= 0)
        o.min_overlap = 20;
    if (o.scale == 0)
        o.scale = 20.0f;
    if (o.batch <= 0)
        o.batch = 1;
    if (m->arch->arch != PCV_ARCH_OPTICAL_FLOW)
        return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "optical flow needs a PerceiverForOpticalFlow "
                                         "model; this model is %s", m->arch->hf_class);
    if (a->width != b->width || a->height != b->height)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "the frames differ in size: %dx%d and %dx%d", a->width,
                                         a->height, b->width, b->height);
    int th = m->cfg.train_size[0], tw = m->cfg.train_size[1], H = a->height, W = a->width;
    if ((H < th || W < tw) && !o.pad)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "frames of %dx%d are smaller than the model's %dx%d tile "
                                         "(train_size); pass --pad (pcv_flow_options.pad) to pad them",
                                         W, H, tw, th);
    if (o.min_overlap >= th || o.min_overlap >= tw)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "the tile overlap %d must be smaller than the tile %dx%d",
                                         o.min_overlap, tw, th);
    init_lut();
    /* the frames normalised (padded to the tile size when smaller) */
    int PH = H > th ? H : th, PW = W > tw ? W : tw;
    size_t npix = (size_t)PH * (size_t)PW;
    float *norm[2] = {calloc(npix * 3, sizeof(float)), calloc(npix * 3, sizeof(float))};
    int ntiles = pcv_flow_grid(PH, PW, th, tw, o.min_overlap, NULL, 0);
    int *org = malloc((size_t)(ntiles > 0 ? ntiles : 1) * 2 * sizeof *org);
    float *in = malloc((size_t)o.batch * 54 * (size_t)th * (size_t)tw * sizeof *in);
    float *acc = calloc(npix * 2, sizeof *acc);
    int32_t *cnt = calloc(npix, sizeof *cnt);
    int rc = 0;
    if (!norm[0] || !norm[1] || !org || !in || !acc || !cnt || ntiles < 1) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory for a %dx%d frame pair", W, H);
        goto done;
    }
    pcv_flow_grid(PH, PW, th, tw, o.min_overlap, org, ntiles);
    const pcv_image *img[2] = {a, b};
    for (int f = 0; f < 2; f++)
        for (int y = 0; y < H; y++)
            for (size_t i = 0; i < (size_t)W * 3; i++)
                norm[f][(size_t)y * PW * 3 + i] = norm_lut[img[f]->rgb[(size_t)y * W * 3 + i]];
    /* the model's output per network unit: logits = raw/100 x the profile's output scale */
    float factor = o.scale / m->prof.flow_output_scale;
    size_t per = 54 * (size_t)th * (size_t)tw;
    for (int t0i = 0; t0i < ntiles; t0i += o.batch) {
        int nb = ntiles - t0i < o.batch ? ntiles - t0i : o.batch;
        for (int i = 0; i < nb; i++)
            tile_patches((const float *const *)norm, PW, org[2 * (t0i + i)], org[2 * (t0i + i) + 1], th, tw,
                         in + (size_t)i * per);
        pcv_io_tensor input = {.name = "inputs", .dtype = PCV_DT_F32, .ndim = 5, .shape = {nb, 2, 27, th, tw},
                               .data = in};
        const pcv_io_tensor *outs;
        int nout;
        if ((rc = pcv_model_forward(m, &input, 1, &outs, &nout, err)))
            goto done;
        const float *lg = pcv_io_find(outs, nout, "logits")->data;
        for (int i = 0; i < nb; i++) {
            int y0 = org[2 * (t0i + i)], x0 = org[2 * (t0i + i) + 1];
            const float *tl = lg + (size_t)i * (size_t)th * (size_t)tw * 2;
            for (int y = 0; y < th; y++)
                for (int x = 0; x < tw; x++) {
                    int wy = y + 1 < th - y ? y + 1 : th - y, wx = x + 1 < tw - x ? x + 1 : tw - x;
                    int wgt = wy < wx ? wy : wx;
                    size_t p = (size_t)(y0 + y) * PW + (size_t)(x0 + x);
                    for (int c = 0; c < 2; c++) {
                        float v = tl[((size_t)y * tw + x) * 2 + c] * factor;
                        float prod = (float)wgt * v;
                        acc[p * 2 + c] = acc[p * 2 + c] + prod;
                    }
                    cnt[p] += wgt;
                }
        }
        if (o.progress)
            o.progress(o.progress_ctx, t0i + nb, ntiles);
    }
    /* the colab divides by the weight sum; XLA computes it as a multiplication by the rounded
     * reciprocal */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t p = (size_t)y * PW + x, q = (size_t)y * W + x;
            float r = 1.0f / (float)cnt[p];
            flow[q * 2] = acc[p * 2] * r;
            flow[q * 2 + 1] = acc[p * 2 + 1] * r;
        }
    if (info)
        *info = (pcv_flow_info){.tiles = ntiles, .tile_h = th, .tile_w = tw, .seconds = pcv_now() - t0};
done:
    free(norm[0]);
    free(norm[1]);
    free(org);
    free(in);
    free(acc);
    free(cnt);
    return (pcv_status)rc;
}
