/* Pieces shared by several heads: the classification decoder (text and image classifiers) and
 * views of tensors at a row offset. */
#ifndef PCV_HEADS_H
#define PCV_HEADS_H

#include "model/model_impl.h"

/* A view of rows [r0, r0 + n) of a [rows][cols] tensor. */
pcv_tensor pcv_rows(const pcv_tensor *t, int64_t r0, int64_t n, int64_t cols);

/* PerceiverClassificationDecoder: one trainable query [1][d_latents], the decoder
 * cross-attention (1 head, qk = v = d_latents), Linear(d_latents -> num_labels), logits[:, 0]. */
typedef struct pcv_cls_decoder {
    pcv_tensor query;
    pcv_linear_p final;
    pcv_tensor logits; /* [B][num_labels], per forward */
} pcv_cls_decoder;

int pcv_cls_decoder_build(pcv_model *m, pcv_error *err, pcv_cls_decoder *d, bool query_residual);
int pcv_cls_decoder_begin(pcv_fwd *f, pcv_cls_decoder *d);
int pcv_cls_decoder_queries(pcv_fwd *f, pcv_cls_decoder *d, pcv_tensor *q);
int pcv_cls_decoder_post(pcv_fwd *f, pcv_cls_decoder *d, int64_t b, const pcv_tensor *h);
int pcv_cls_decoder_end(pcv_fwd *f, pcv_cls_decoder *d);

/* Fourier position features of an index grid in a device buffer of their own, recomputed only
 * when the grid changes (plan_constants): [prod(dims)][channels]. */
typedef struct pcv_grid_features {
    pcv_tensor t;
    int nd;
    int64_t dims[3];
} pcv_grid_features;

int pcv_grid_features_update(pcv_model *m, pcv_grid_features *g, int nd, const int64_t *dims, const int64_t *max_res,
                             int64_t bands, pcv_error *err);
void pcv_grid_features_free(pcv_model *m, pcv_grid_features *g);

/* SAME padding of TensorFlow/XLA for size n, kernel k, stride s: output ceil(n / s), padding
 * before the data (the total split low-first). */
void pcv_same_pad(int64_t n, int64_t k, int64_t s, int64_t *out, int64_t *pad_lo);

#endif
