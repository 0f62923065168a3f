/* perceiver-cl: public C API of libperceiver.
 *
 * Conventions
 *  - Every fallible function returns 0 on success and a nonzero pcv_status on failure, filling a
 *    caller-provided pcv_error with a message that names the file, tensor or device involved.
 *  - Tensors are row-major (C order), float32 unless stated.
 */
#ifndef PERCEIVER_PERCEIVER_H
#define PERCEIVER_PERCEIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version and symbol export ------------------------------------------------------------ */

#define PCV_VERSION_MAJOR 0
#define PCV_VERSION_MINOR 2
#define PCV_VERSION_PATCH 0
#define PCV_VERSION_STRING "0.2.0"

/* The library is built with -fvisibility=hidden; PCV_API marks what it exports. */
#if defined(PCV_BUILDING_LIBRARY) && defined(__GNUC__)
#define PCV_API __attribute__((visibility("default")))
#else
#define PCV_API
#endif

/* ---- errors -------------------------------------------------------------------------------- */

typedef enum pcv_status {
    PCV_OK = 0,
    PCV_ERR_IO = 1,          /* cannot open/read/write a file */
    PCV_ERR_FORMAT = 2,      /* corrupt or malformed file (safetensors, JSON, ...) */
    PCV_ERR_SHAPE = 3,       /* a tensor has the wrong shape */
    PCV_ERR_MISSING = 4,     /* a required tensor or field is missing */
    PCV_ERR_UNSUPPORTED = 5, /* valid but unsupported (dtype, architecture, activation, ...) */
    PCV_ERR_OOM = 6,         /* allocation failed */
    PCV_ERR_INPUT = 7,       /* bad user input (text too long, bad mask syntax, bad arguments) */
    PCV_ERR_DEVICE = 8       /* backend / device failure */
} pcv_status;

typedef struct pcv_error {
    pcv_status code;
    char msg[1024];
} pcv_error;

PCV_API const char *pcv_status_name(pcv_status code);
PCV_API const char *pcv_version(void);

/* ---- devices and the compute runtime -------------------------------------------------------- */

/* Which device runs a model, and how. */
typedef struct pcv_backend_options {
    const char *device; /* NULL, "" or "cpu": the CPU reference path; "N": OpenCL device N (global
                           index over all platforms, as `perceiver-cl devices` lists them);
                           anything else: the first OpenCL device whose "platform / name / vendor"
                           contains it, case-insensitively ("nvidia", "pthread", ...) */
    int threads;        /* CPU path threads; <= 0: all online cores */
    uint64_t max_alloc; /* lowers the device's limit on one allocation (bytes); 0: the device's */
} pcv_backend_options;

/* Process-wide settings of the OpenCL runtime; without pcv_runtime_configure the defaults below
 * apply. The cache folder is fixed when the first device is opened; the other fields apply to
 * devices opened and programs built after the call. The library reads no PERCEIVER_* environment
 * variables: the command-line tool maps them onto these fields. */
typedef struct pcv_runtime_options {
    const char *cache_dir;  /* compiled-kernel cache folder; NULL: $XDG_CACHE_HOME/perceiver-cl or
                               ~/.cache/perceiver-cl; "": no cache */
    int kernel_cache;       /* -1: default (on, except for PoCL, which caches programs itself);
                               0: off; 1: on for every device */
    const char *kernel_dir; /* read the kernels' .cl sources from this folder instead of the
                               copies embedded at build time (kernel development); NULL: embedded */
    const char *tuning;     /* OpenCL developer overrides, "key=value,...": attention=auto|fused|gemm,
                               layout=auto|row|swap, splits=N, clblast=0|1, xgemm=16 numbers
                               separated by ':', minind=N (docs/opencl.md); NULL: none */
    bool trace;             /* wait for and time every OpenCL launch, printed on stderr */
    /* Progress of long operations, on the calling thread: what names the work ("compiling OpenCL
     * kernels (cl/attention.cl)", "loading weights", "forward"), done of total units (parameters
     * for the weights, layers for a forward); done == total once it is finished. NULL: none. */
    void (*progress)(void *user, const char *what, int64_t done, int64_t total);
    void *progress_user;
} pcv_runtime_options;
PCV_API pcv_status pcv_runtime_configure(const pcv_runtime_options *opt, pcv_error *err);

/* ---- dtypes -------------------------------------------------------------------------------- */

typedef enum pcv_dtype {
    PCV_DT_INVALID = 0,
    PCV_DT_F32, PCV_DT_F16, PCV_DT_BF16, PCV_DT_F64,
    PCV_DT_I64, PCV_DT_I32, PCV_DT_I16, PCV_DT_I8,
    PCV_DT_U64, PCV_DT_U32, PCV_DT_U16, PCV_DT_U8, PCV_DT_BOOL
} pcv_dtype;

#define PCV_MAX_DIMS 8

PCV_API const char *pcv_dtype_name(pcv_dtype dt);      /* safetensors spelling: "F32", "BF16", ... */
PCV_API pcv_dtype pcv_dtype_from_name(const char *s);  /* PCV_DT_INVALID if unknown */
PCV_API size_t pcv_dtype_size(pcv_dtype dt);           /* bytes per element, 0 if invalid */

/* ---- safetensors ------------------------------------------------------------------------- */

typedef struct pcv_st_tensor {
    char *name;
    pcv_dtype dtype;
    int ndim;
    int64_t shape[PCV_MAX_DIMS];
    int64_t numel;
    const void *data; /* points into the mapped file; may be unaligned */
    size_t nbytes;
} pcv_st_tensor;

/* A mapped, validated safetensors file (opaque). */
typedef struct pcv_safetensors pcv_safetensors;

/* Maps and validates a safetensors file (header size and JSON, dtypes, shapes, offsets in
 * bounds, contiguous and non-overlapping, no trailing bytes, no duplicate names). */
PCV_API pcv_status pcv_st_open(const char *path, pcv_safetensors **out, pcv_error *err);
PCV_API void pcv_st_close(pcv_safetensors *st);
PCV_API const char *pcv_st_path(const pcv_safetensors *st);
PCV_API int pcv_st_count(const pcv_safetensors *st);
/* The i-th tensor in name order (NULL outside [0, count)); data stay valid until close. */
PCV_API const pcv_st_tensor *pcv_st_tensor_at(const pcv_safetensors *st, int i);
PCV_API const pcv_st_tensor *pcv_st_find(const pcv_safetensors *st, const char *name);
/* Converts any float or integer tensor to float32 (out has t->numel elements). */
PCV_API pcv_status pcv_st_to_f32(const pcv_st_tensor *t, float *out, pcv_error *err);
/* Converts any integer tensor to int64 (out has t->numel elements); floats are refused. */
PCV_API pcv_status pcv_st_to_i64(const pcv_st_tensor *t, int64_t *out, pcv_error *err);

typedef struct pcv_st_entry {
    const char *name;
    pcv_dtype dtype;
    int ndim;
    int64_t shape[PCV_MAX_DIMS];
    const void *data; /* numel * dtype size bytes, little-endian */
} pcv_st_entry;

/* Writes a safetensors file atomically (temporary file + rename); on failure nothing is left. */
PCV_API pcv_status pcv_st_write(const char *path, const pcv_st_entry *entries, int count, pcv_error *err);

/* ---- weights from any checkpoint format -------------------------------------------------- */

/* A set of named tensors, whatever file format they came from (opaque). */
typedef struct pcv_weights pcv_weights;

/* Formats are found by content (structure), not by extension: safetensors; PyTorch zip
 * (pytorch_model.bin) and legacy torch.save files; DeepMind Haiku pickles (*.pickle, *.pystate:
 * renamed to HF names); sharded *.index.json of safetensors or PyTorch files. A folder is
 * searched for model.safetensors, model.safetensors.index.json, pytorch_model.bin,
 * pytorch_model.bin.index.json, then a single *.pickle / *.pystate / *.pkl. */
typedef struct pcv_weights_options {
    const char *architecture; /* Haiku pickles: override the architecture detected from the
                                 names (HF class, convert-script name such as "MLM", or preset) */
    bool haiku_names;         /* Haiku pickles: keep the Haiku names and layouts (inspection) */
} pcv_weights_options;

/* Opens a checkpoint file or a model folder; opt may be NULL. */
PCV_API pcv_status pcv_weights_open(const char *path, const pcv_weights_options *opt, pcv_weights **out,
                                    pcv_error *err);
PCV_API void pcv_weights_close(pcv_weights *w);
PCV_API int pcv_weights_count(const pcv_weights *w);
/* The i-th tensor in name order (NULL outside [0, count)). */
PCV_API const pcv_st_tensor *pcv_weights_tensor_at(const pcv_weights *w, int i);
PCV_API const pcv_st_tensor *pcv_weights_find(const pcv_weights *w, const char *name);
/* Number of values (elements) over all tensors. */
PCV_API int64_t pcv_weights_numel(const pcv_weights *w);

typedef struct pcv_weights_info {
    const char *path;         /* the file or folder opened */
    const char *format;       /* "safetensors", "pytorch-zip", "haiku-pickle", ... */
    const char *architecture; /* HF class detected from the tensor names, "" if unknown */
    const char *source;       /* the file that was read (the index file for shards) */
    bool from_haiku;          /* a DeepMind pickle: names are the renamer's Hugging Face names
                                 (transposes and squeezes applied) */
    int files;                /* files read (shards) */
    int dropped;              /* Haiku entries with no HF counterpart (BatchNorm EMA counters) */
} pcv_weights_info;
PCV_API void pcv_weights_get_info(const pcv_weights *w, pcv_weights_info *info);
/* True when path (a file, or the checkpoint a folder would load) is a DeepMind pickle. */
PCV_API bool pcv_weights_is_haiku_path(const char *path);

/* ---- config.json ----------------------------------------------------------------------------- */

typedef struct pcv_config {
    char architecture[64];  /* architectures[0], e.g. "PerceiverForMaskedLM"; "" if absent */
    char model_type[32];    /* "perceiver" */
    int num_latents;
    int d_latents;
    int d_model;
    int num_blocks;
    int num_self_attends_per_block;
    int num_self_attention_heads;
    int num_cross_attention_heads;
    int qk_channels; /* 0 = null */
    int v_channels;  /* 0 = null */
    char cross_attention_shape_for_attention[8]; /* "kv" or "q" */
    int self_attention_widening_factor;
    int cross_attention_widening_factor;
    char hidden_act[32];
    double attention_probs_dropout_prob;
    double initializer_range;
    double layer_norm_eps; /* unused by the model (LayerNorm eps is 1e-5), kept for round trips */
    bool use_query_residual;
    int vocab_size;
    int max_position_embeddings;
    int image_size;
    int train_size[2];
    int num_frames;
    int audio_samples_per_frame;
    int samples_per_patch;
    int output_shape[4];
    int output_num_channels;
    int label_trainable_num_channels; /* _label_trainable_num_channels */
    int num_labels;
    char **id2label; /* num_labels entries, or NULL */
} pcv_config;

/* The MLP activation of every Perceiver layer, config.hidden_act: each name of transformers'
 * ACT2FN that maps to a fixed formula (prelu and xielu carry learned parameters: refused). */
typedef enum pcv_activation {
    PCV_ACT_GELU = 0,      /* gelu, gelu_python: 0.5 x (1 + erf(x / sqrt 2)) */
    PCV_ACT_GELU_TANH,     /* gelu_new, gelu_pytorch_tanh, gelu_python_tanh, gelu_accurate, gelu_fast:
                              0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); also jax.nn.gelu,
                              DeepMind's GELU (the haiku profile's) */
    PCV_ACT_GELU_10,       /* gelu_10: clip(gelu(x), -10, 10) */
    PCV_ACT_QUICK_GELU,    /* quick_gelu: x sigmoid(1.702 x) */
    PCV_ACT_RELU,          /* relu: max(x, 0) */
    PCV_ACT_RELU2,         /* relu2: max(x, 0)^2 */
    PCV_ACT_RELU6,         /* relu6: min(max(x, 0), 6) */
    PCV_ACT_LEAKY_RELU,    /* leaky_relu: x < 0 ? 0.01 x : x */
    PCV_ACT_SILU,          /* silu, swish: x sigmoid(x) */
    PCV_ACT_MISH,          /* mish: x tanh(softplus(x)) */
    PCV_ACT_SIGMOID,       /* sigmoid */
    PCV_ACT_TANH,          /* tanh */
    PCV_ACT_LINEAR,        /* linear: x */
    PCV_ACT_LAPLACE,       /* laplace: 0.5 (1 + erf((x - 0.707107) / (0.282095 sqrt 2))) */
    PCV_ACT_HARDSWISH,     /* hardswish: x min(max(x + 3, 0), 6) / 6 */
    PCV_ACT_SQRT_SOFTPLUS, /* sqrtsoftplus: sqrt(softplus(x)) */
    PCV_ACT_COUNT
} pcv_activation;
/* softplus(x) above is torch's: log(1 + exp(x)), x itself above 20. */

/* The activation of a hidden_act name; PCV_ERR_UNSUPPORTED naming the supported ones. */
PCV_API pcv_status pcv_activation_from_name(const char *name, pcv_activation *act, pcv_error *err);
/* The first hidden_act name of an activation ("gelu", "gelu_new", ...), or NULL. */
PCV_API const char *pcv_activation_name(pcv_activation act);

PCV_API void pcv_config_init(pcv_config *cfg); /* PerceiverConfig defaults */
PCV_API pcv_status pcv_config_load(pcv_config *cfg, const char *path, pcv_error *err);
PCV_API pcv_status pcv_config_save(const pcv_config *cfg, const char *path, pcv_error *err); /* atomic */
PCV_API void pcv_config_free(pcv_config *cfg);
/* The bundled ImageNet-1k class names (data/imagenet-1k.txt); NULL outside [0, 1000). */
PCV_API const char *pcv_imagenet1k_label(int i);
/* The bundled Kinetics-700 class names (data/kinetics-700.txt); NULL outside [0, 700). */
PCV_API const char *pcv_kinetics700_label(int i);
/* Gives a config without id2label the bundled names: ImageNet-1k for the three ImageNet
 * classifiers with 1000 labels, Kinetics-700 for the multimodal autoencoder with 700 labels;
 * other configs are left alone. */
PCV_API pcv_status pcv_config_default_labels(pcv_config *cfg, pcv_error *err);

/* ---- byte-level tokenizer (PerceiverTokenizer) --------------------------------------------- */

enum { PCV_TOK_PAD = 0, PCV_TOK_BOS = 1, PCV_TOK_EOS = 2, PCV_TOK_MASK = 3, PCV_TOK_CLS = 4,
       PCV_TOK_SEP = 5, PCV_TOK_BYTE_OFFSET = 6, PCV_TOK_VOCAB = 262 };

/* Encodes UTF-8 text as [CLS] bytes+6 ... [SEP] (add_special) or bytes+6 only.
 * Writes at most cap ids; returns the full length (which may exceed cap). */
PCV_API size_t pcv_tokenize(const char *text, size_t len, bool add_special, int32_t *ids, size_t cap);
/* Decodes ids to bytes: ids >= 6 become bytes; special ids are skipped when skip_special, else
 * written as "[PAD]", "[CLS]", .... Returns a malloc'd NUL-terminated string (bytes may be
 * invalid UTF-8; see pcv_utf8_sanitize). */
PCV_API char *pcv_detokenize(const int32_t *ids, size_t n, bool skip_special);
/* Replaces invalid UTF-8 sequences with U+FFFD; returns a malloc'd string. */
PCV_API char *pcv_utf8_sanitize(const char *s, size_t len);

/* Masked-text syntax of `perceiver-cl fill` (documented in README):
 *   [MASK]      one masked byte          [MASK:N] / [MASK*N]   N masked bytes
 *   {text}      the bytes of text, masked (the original is kept for comparison)
 *   \[ \] \{ \} \\   literal characters
 * Result: bytes[] (masked positions hold the original byte from {text}, or 0) and masked[]. */
typedef struct pcv_masked_text {
    unsigned char *bytes;
    bool *masked;
    bool *has_original; /* true where the original byte is known ({text}) */
    size_t len;
    size_t num_masked;
} pcv_masked_text;

PCV_API pcv_status pcv_parse_masked(const char *text, pcv_masked_text *out, pcv_error *err);
PCV_API void pcv_masked_text_free(pcv_masked_text *m);

#ifdef __cplusplus
}
#endif
#endif
