/* Pieces shared by heads (heads.h): the classification decoder of the text and image
 * classifiers, grid position features, SAME padding. */
#include "model/heads.h"
#include "util/error.h"
#include "util/limits.h"

#include "model/fourier.h"

#include <stdlib.h>
#include <string.h>

pcv_tensor pcv_rows(const pcv_tensor *t, int64_t r0, int64_t n, int64_t cols)
{
    pcv_tensor v = *t;
    v.off += (size_t)(r0 * cols);
    v.ndim = 2;
    v.shape[0] = n;
    v.shape[1] = cols;
    return v;
}

int pcv_cls_decoder_build(pcv_model *m, pcv_error *err, pcv_cls_decoder *d, bool query_residual)
{
    const pcv_config *c = &m->cfg;
    int rc;
    TRY(pcv_param_2d(m, err, &d->query, "perceiver.decoder.decoder.output_position_encodings.position_embeddings", 1,
                     c->d_latents));
    TRY(pcv_build_layer(m, err, &m->dec, "perceiver.decoder.decoder.decoding_cross_attention", true, 0, 0, 1,
                        c->d_latents, c->d_latents, 1, query_residual));
    TRY(pcv_param_linear(m, err, &d->final, "perceiver.decoder.decoder.final_layer", c->num_labels, c->d_latents));
    m->query_channels = c->d_latents;
fail:
    return rc;
}

int pcv_cls_decoder_begin(pcv_fwd *f, pcv_cls_decoder *d)
{
    return pcv_tensor_alloc(f->ex, &d->logits, 2, (int64_t[]){f->shape.batch, f->m->cfg.num_labels});
}

int pcv_cls_decoder_queries(pcv_fwd *f, pcv_cls_decoder *d, pcv_tensor *q)
{
    int64_t n = f->m->cfg.d_latents;
    return op_copy2d(f->ex, &d->query, 0, n, 1, q, 0, n, 1, n);
}

int pcv_cls_decoder_post(pcv_fwd *f, pcv_cls_decoder *d, int64_t b, const pcv_tensor *h)
{
    pcv_tensor row = pcv_rows(&d->logits, b, 1, f->m->cfg.num_labels);
    return op_linear(f->ex, h, 1, &d->final.w, &d->final.b, &row);
}

int pcv_cls_decoder_end(pcv_fwd *f, pcv_cls_decoder *d)
{
    return pcv_fwd_emit(f, &d->logits, "logits", 2, (int64_t[]){f->shape.batch, f->m->cfg.num_labels});
}

int pcv_grid_features_update(pcv_model *m, pcv_grid_features *g, int nd, const int64_t *dims, const int64_t *max_res,
                             int64_t bands, pcv_error *err)
{
    bool same = g->t.buf && g->nd == nd;
    for (int d = 0; same && d < nd; d++)
        same = g->dims[d] == dims[d];
    if (same)
        return 0;
    pcv_grid_features_free(m, g);
    int64_t npos = 1, C = pcv_fourier_channels(nd, bands, true, false);
    for (int d = 0; d < nd; d++)
        npos *= dims[d];
    if (npos * C > pcv_limits_now()->forward_bytes / (int64_t)sizeof(float))
        return pcv_set_error(err, PCV_ERR_INPUT, "the Fourier position features of a %lld-position grid need %.1f GiB, "
                             "over %s", (long long)npos, (double)npos * (double)C * 4 / (1 << 30),
                             PCV_LIMIT_TEXT("forward_bytes"));
    size_t bytes = (size_t)(npos * C) * sizeof(float);
    float *host = malloc(bytes ? bytes : 1);
    if (!host)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory for %lld x %lld position features", (long long)npos,
                             (long long)C);
    pcv_model_fourier_grid(m, nd, dims, max_res, bands, host);
    g->t = (pcv_tensor){.ndim = 2, .shape = {npos, C}};
    g->t.buf = pcv_backend_alloc(m->be, bytes, err);
    int rc = g->t.buf ? pcv_backend_upload(m->be, g->t.buf, 0, host, bytes, err) : (err ? (int)err->code : PCV_ERR_OOM);
    free(host);
    if (rc) {
        pcv_grid_features_free(m, g);
        return rc;
    }
    g->nd = nd;
    memcpy(g->dims, dims, (size_t)nd * sizeof *dims);
    return 0;
}

void pcv_grid_features_free(pcv_model *m, pcv_grid_features *g)
{
    if (g->t.buf)
        pcv_backend_release(m->be, g->t.buf);
    memset(g, 0, sizeof *g);
}

void pcv_same_pad(int64_t n, int64_t k, int64_t s, int64_t *out, int64_t *pad_lo)
{
    *out = (n + s - 1) / s;
    int64_t total = (*out - 1) * s + k - n;
    *pad_lo = total > 0 ? total / 2 : 0;
}
