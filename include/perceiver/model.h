/* perceiver-cl: loading and running Perceiver IO models. */
#ifndef PERCEIVER_MODEL_H
#define PERCEIVER_MODEL_H

#include "perceiver/perceiver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pcv_model pcv_model;

typedef enum pcv_arch {
    PCV_ARCH_UNKNOWN = 0,
    PCV_ARCH_MASKED_LM,      /* PerceiverForMaskedLM */
    PCV_ARCH_SEQ_CLASSIFIER, /* PerceiverForSequenceClassification */
    PCV_ARCH_IMAGE_LEARNED,  /* PerceiverForImageClassificationLearned */
    PCV_ARCH_IMAGE_FOURIER,  /* PerceiverForImageClassificationFourier */
    PCV_ARCH_IMAGE_CONV,     /* PerceiverForImageClassificationConvProcessing */
    PCV_ARCH_OPTICAL_FLOW,   /* PerceiverForOpticalFlow */
    PCV_ARCH_MULTIMODAL      /* PerceiverForMultimodalAutoencoding */
} pcv_arch;

typedef enum pcv_numerics {
    PCV_NUMERICS_AUTO = 0, /* HF for Hugging Face checkpoints, haiku for DeepMind pickles */
    PCV_NUMERICS_HF,
    PCV_NUMERICS_HAIKU
} pcv_numerics;

typedef struct pcv_model_options {
    pcv_backend_options backend; /* the device (default: the CPU path) */
    pcv_numerics numerics;
    bool profile;         /* synchronize and time each stage (small overhead) */
    bool capture;         /* also return intermediate tensors: "stage.preprocess",
                             "stage.encoder.cross", "stage.encoder.self.<k>" (k-th layer
                             application), "stage.decoder" (used by verify) */
    int64_t decode_chunk; /* decoder queries computed at a time (bounds the decoder's memory;
                             results do not depend on it); <= 0: 8192 */
} pcv_model_options;

/* A named host tensor: model inputs (data owned by the caller) and outputs (data owned by the
 * model). */
typedef struct pcv_io_tensor {
    char name[64];
    pcv_dtype dtype;
    int ndim;
    int64_t shape[PCV_MAX_DIMS];
    void *data;
} pcv_io_tensor;

/* Loads a Hugging Face folder (config.json + weights), a checkpoint file, or a DeepMind pickle
 * (file or folder; config.json beside it is used when present). */
PCV_API pcv_status pcv_model_load(const char *path, const pcv_model_options *opt, pcv_model **out,
                                  pcv_error *err);
/* Builds a model with deterministic random weights (N(0, 0.02), LayerNorm weights ~1), for
 * benchmarks and for writing random checkpoints with pcv_model_save. */
PCV_API pcv_status pcv_model_create_random(const pcv_config *cfg, uint64_t seed,
                                           const pcv_model_options *opt, pcv_model **out,
                                           pcv_error *err);
/* Writes config.json + model.safetensors into dir (created if needed) as a whole: into
 * "<dir>.partial-<pid>" first, then renamed into place; on failure nothing is left behind. */
PCV_API pcv_status pcv_model_save(pcv_model *m, const char *dir, pcv_error *err);
PCV_API void pcv_model_free(pcv_model *m);

PCV_API const pcv_config *pcv_model_config(const pcv_model *m);
PCV_API pcv_arch pcv_model_arch(const pcv_model *m);
PCV_API const char *pcv_arch_name(pcv_arch a); /* HF class name */
PCV_API pcv_arch pcv_arch_from_name(const char *hf_class);
PCV_API int64_t pcv_model_num_params(const pcv_model *m);
PCV_API const char *pcv_model_device(const pcv_model *m);
/* The numerics profile in effect (AUTO resolved at load: haiku for DeepMind pickles). */
PCV_API pcv_numerics pcv_model_numerics(const pcv_model *m);

/* Runs one forward pass. Inputs are named like the Hugging Face forward arguments: text models
 * take "input_ids" (or "inputs") and "attention_mask"; image classifiers take "pixel_values"
 * (or "inputs") [batch][3][H][W]; optical flow takes "inputs" [batch][2][27][H][W] (two frames
 * of 3x3 patches, H x W = config train_size). Outputs are "logits" and "last_hidden_state"
 * (plus the stages with options.capture). The output tensors belong to the model and stay valid
 * until its next forward pass or pcv_model_free.
 *
 * Memory is planned once per input shape: the first forward of a shape sizes and allocates the
 * activations; later forwards of the same shape allocate nothing. */
PCV_API pcv_status pcv_model_forward(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs,
                                     const pcv_io_tensor **outputs, int *n_outputs, pcv_error *err);
/* Views every tensor of an open safetensors file as a model input (data not copied: valid while
 * st stays open). out needs room for st->count entries; fails on names of 64 bytes or more. */
PCV_API pcv_status pcv_io_from_safetensors(const pcv_safetensors *st, pcv_io_tensor *out,
                                           pcv_error *err);
PCV_API const pcv_io_tensor *pcv_io_find(const pcv_io_tensor *t, int n, const char *name);

/* Per-stage statistics of the last forward (times only when options.profile was set). */
typedef struct pcv_stage_stats {
    const char *name;
    double seconds;
    double flops; /* matrix-multiply FLOPs (2 per multiply-add) */
} pcv_stage_stats;

PCV_API int pcv_model_stats(const pcv_model *m, pcv_stage_stats *out, int cap);

/* Memory of the model's current plan and the allocation count of the last forward. */
typedef struct pcv_memory_stats {
    size_t activation_bytes;   /* the activation arena */
    size_t output_bytes;       /* host memory of the outputs */
    size_t device_bytes;       /* everything the backend holds (weights, arena, constants) */
    size_t device_peak_bytes;
    int64_t plans, forwards;   /* memory plans made, forwards run */
    int64_t last_forward_allocs; /* device allocations during the last forward (0 once planned) */
} pcv_memory_stats;
PCV_API void pcv_model_memory(const pcv_model *m, pcv_memory_stats *s);

/* FLOPs (matrix multiplications) of one forward on inputs like these, counted by a planning
 * pass that runs nothing. */
PCV_API pcv_status pcv_model_flops(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs,
                                   double *flops, pcv_error *err);

#ifdef __cplusplus
}
#endif
#endif
