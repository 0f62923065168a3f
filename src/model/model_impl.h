/* Internals of the model module: the Perceiver core (model.c), the parameter store (params.c),
 * the architecture registry (arch.c) and the heads (head_*.c) share these definitions.
 *
 * A model is a core plus a head. The core is what every Perceiver IO model has: the latent
 * array, one encoder cross-attention, num_blocks applications of the same
 * num_self_attends_per_block self-attention layers, and one decoder cross-attention. A head is
 * what differs between the published models (transformers' input preprocessor, decoder queries
 * and output postprocessor): it declares its own parameters, turns the named inputs into the
 * encoder's input array, supplies the decoder queries and turns the decoder's output into the
 * named outputs. Adding a model is one head file plus one registry row (arch.c). */
#ifndef PCV_MODEL_IMPL_H
#define PCV_MODEL_IMPL_H

#include "formats/formats.h"
#include "model/arch.h"
#include "model/ops.h"
#include "perceiver/model.h"
#include "util/error.h"

/* ---- parameters ----------------------------------------------------------------------------- */

typedef struct pcv_linear_p {
    pcv_tensor w, b; /* w [out][in], b [out] */
} pcv_linear_p;

typedef struct pcv_ln_p {
    pcv_tensor w, b;
} pcv_ln_p;

/* One PerceiverLayer: attention (+ optional query residual), then an MLP with a residual. */
typedef struct pcv_layer {
    bool cross, query_residual;
    int64_t q_dim, kv_dim, qk, v, out, heads, widening;
    pcv_ln_p ln1, ln2, ln_mlp; /* ln2 only for cross-attention */
    pcv_linear_p q, k, vproj, o, mlp1, mlp2;
} pcv_layer;

typedef struct pcv_param {
    char *name;
    pcv_tensor t;
    bool saved; /* a checkpoint tensor (false: derived at load, e.g. a folded BatchNorm) */
} pcv_param;

/* ---- numerics profiles (haiku-vs-hf.md section 9) ----------------------------------------------- */

typedef enum pcv_linspace_kind {
    PCV_LINSPACE_TORCH, /* torch.linspace */
    PCV_LINSPACE_JAX    /* jnp.linspace: a*(1-t) + b*t, t = i/(n-1), last = b */
} pcv_linspace_kind;

typedef struct pcv_profile {
    pcv_numerics numerics;
    bool jax_gelu; /* GELU is DeepMind's (jax.nn.gelu: the tanh form), whatever hidden_act says */
    pcv_attn_mode attn;
    pcv_linspace_kind linspace;
    bool dm_conv_stem;         /* conv classifier: SAME padding 2/3, 56x56 SAME pool, the Haiku
                                  kernel orientation (C1-C4) */
    bool learned_query_residual; /* learned-position classifier decoder: HF yes, DeepMind no (M2) */
    bool mlm_query_mask;       /* the MLM decoder masks padded query rows (G5) */
    float flow_output_scale;   /* optical flow: 1 (transformers' /100 only) or 20 (the colab) */
} pcv_profile;

void pcv_profile_init(pcv_profile *p, pcv_numerics n);

/* ---- one forward pass ---------------------------------------------------------------------------- */

/* What a forward pass's memory plan depends on. Heads fill it from the inputs (their prepare
 * function); two forwards with equal shapes reuse one plan. */
typedef struct pcv_shape {
    int64_t batch;
    int64_t tokens;  /* encoder input tokens per batch entry */
    int64_t queries; /* decoder queries per batch entry */
    int64_t dims[6]; /* head-specific (image size, subsampled point counts, ...) */
} pcv_shape;

typedef struct pcv_fwd pcv_fwd;

/* A named output of a forward pass: host memory owned by the model's plan. */
typedef struct pcv_out_slot {
    pcv_io_tensor io;
    size_t bytes;
} pcv_out_slot;

struct pcv_fwd {
    pcv_model *m;
    pcv_exec *ex;
    pcv_shape shape;
    pcv_tensor x;     /* preprocessed inputs [B * tokens][input_channels] */
    pcv_tensor kmask; /* encoder key mask [B][tokens] (1 keep / 0 padding), buf NULL if none */
    pcv_tensor qmask; /* decoder query mask [B][queries], buf NULL if none */
    pcv_tensor z;     /* latents [B * num_latents][d_latents] */
    int nout;         /* outputs emitted so far */
};

/* Emits a tensor as the named output (downloaded into the plan's host memory). */
int pcv_fwd_emit(pcv_fwd *f, const pcv_tensor *t, const char *name, int ndim, const int64_t *shape);
/* The same for host data (copied). */
int pcv_fwd_emit_host(pcv_fwd *f, const float *data, const char *name, int ndim, const int64_t *shape);
/* The model's compute backend. */
pcv_backend *pcv_fwd_backend(const pcv_fwd *f);

/* ---- heads ---------------------------------------------------------------------------------- */

struct pcv_head {
    /* Declares the head's parameters (pcv_param_*), sets m->input_channels and m->query_channels,
     * and builds the decoder cross-attention m->dec (pcv_build_layer). The head's own state goes
     * in m->head (freed with free_state). */
    int (*build)(pcv_model *m, pcv_error *err);
    void (*free_state)(pcv_model *m);
    /* Checks the named inputs, converts them into host buffers of the head's state and fills
     * the shape. Runs before planning, on the real inputs. */
    int (*prepare)(pcv_model *m, const pcv_io_tensor *in, int n, pcv_shape *s, pcv_error *err);
    /* Allocates and fills f->x (and f->kmask, f->qmask when there are masks) from the prepared
     * inputs. Shape-dependent constants (position features) belong to the plan: plan_constants
     * computes them once per shape. */
    int (*preprocess)(pcv_fwd *f);
    /* Before the decoder: allocate the head's output tensors. */
    int (*decode_begin)(pcv_fwd *f);
    /* The decoder queries of batch entry b, rows [q0, q0 + nq): q is [nq][query_channels]. */
    int (*queries)(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, pcv_tensor *q);
    /* The decoder output h [nq][query_channels] of those rows into the head's outputs. */
    int (*postprocess)(pcv_fwd *f, int64_t b, int64_t q0, int64_t nq, const pcv_tensor *h);
    /* After the decoder: emit the outputs ("logits", ...). */
    int (*decode_end)(pcv_fwd *f);
    /* Optional: shape-dependent constants (e.g. Fourier features), outside the arena; called
     * when the plan changes. */
    int (*plan_constants)(pcv_model *m, const pcv_shape *s, pcv_error *err);
};

/* ---- the model ---------------------------------------------------------------------------------- */

struct pcv_model {
    char *path; /* what pcv_model_load opened (NULL for random models) */
    pcv_config cfg;
    const pcv_arch_info *arch;
    pcv_backend *be;
    pcv_profile prof;
    pcv_activation act; /* of every MLP: config.hidden_act under the profile */
    bool profile, capture;
    int64_t decode_chunk; /* decoder queries per step (bounds the decoder's memory) */

    pcv_weights weights;
    bool have_weights;
    /* parameter source while building: the checkpoint, or seeded random values */
    uint64_t seed;
    bool random;
    pcv_param *params;
    int nparams, capparams;
    int64_t total_params;

    /* core */
    int64_t input_channels; /* encoder kv width: the head's preprocessed channels */
    int64_t query_channels; /* decoder query width */
    pcv_tensor latents;
    pcv_layer enc_cross;
    pcv_layer *self;
    int nself;
    pcv_layer dec;
    void *head; /* the head's state */

    /* the memory plan of the last shape */
    bool planned;
    pcv_shape plan_shape;
    pcv_arena arena;
    pcv_out_slot *outs;
    int nouts, capouts;
    pcv_io_tensor *out_view; /* what pcv_model_forward returns */
    pcv_exec last;
    int64_t forwards, plans;
    int64_t last_allocs; /* backend allocations during the last forward */
};

/* ---- parameters (params.c) ---------------------------------------------------------------------- */

/* Declares a checkpoint tensor of up to 4 dims: loads it (checking dtype and shape) or draws it
 * (random models), and uploads it. */
int pcv_param_nd(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int ndim, const int64_t *shape);
int pcv_param_1d(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int64_t d0);
int pcv_param_2d(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int64_t d0, int64_t d1);
/* A checkpoint tensor as host float32 (malloc'd; free it), for weights transformed at load. The
 * tensor is also declared (uploaded, saved with the model). */
int pcv_param_host(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int ndim, const int64_t *shape,
                   float **host);
/* A tensor derived at load from host data: uploaded, not part of the checkpoint. */
int pcv_param_derived(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, const float *host,
                      int ndim, const int64_t *shape);
/* A Linear layer "prefix.weight" [out][in] and "prefix.bias" [out]. */
int pcv_param_linear(pcv_model *m, pcv_error *err, pcv_linear_p *l, const char *prefix, int64_t out, int64_t in);
/* One PerceiverLayer with the channel rules of perceiver-io.md 3.2 (qk_cfg / v_cfg 0 = None). */
int pcv_build_layer(pcv_model *m, pcv_error *err, pcv_layer *L, const char *prefix, bool cross, int64_t qk_cfg,
                    int64_t v_cfg, int64_t heads, int64_t q_dim, int64_t kv_dim, int64_t widening,
                    bool query_residual);
void pcv_params_free(pcv_model *m);
double pcv_layer_flops(const pcv_layer *L, double nq, double nk);

/* Position features of an index grid (fourier.h) on the model's linspace formula. */
void pcv_model_fourier_grid(const pcv_model *m, int ndims, const int64_t *index_dims, const int64_t *max_res,
                            int64_t num_bands, float *out);

/* Reads an input tensor of any float dtype into float32 (n elements). */
int pcv_io_to_f32(const pcv_io_tensor *t, float *out, int64_t n, pcv_error *err);
/* Reads an integer input tensor into int64 (n elements). */
int pcv_io_to_i64(const pcv_io_tensor *t, int64_t *out, int64_t n, pcv_error *err);
/* Grows a host buffer of the head's state to at least n bytes (kept between forwards). */
int pcv_host_reserve(void **buf, size_t *cap, size_t n, pcv_error *err);

#endif
