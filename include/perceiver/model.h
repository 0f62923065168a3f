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
    PCV_ARCH_OPTICAL_FLOW    /* PerceiverForOpticalFlow */
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
} pcv_model_options;

/* A named host tensor: model inputs (data owned by the caller) and outputs (data malloc'd by
 * the library; free with pcv_io_free). */
typedef struct pcv_io_tensor {
    char name[64];
    pcv_dtype dtype;
    int ndim;
    int64_t shape[PCV_MAX_DIMS];
    void *data;
} pcv_io_tensor;

/* Loads a Hugging Face folder (config.json + model.safetensors). */
int pcv_model_load(const char *dir, const pcv_model_options *opt, pcv_model **out, pcv_error *err);
/* Builds a model with deterministic random weights (N(0, 0.02), LayerNorm weights ~1), for
 * benchmarks and for writing random checkpoints with pcv_model_save. */
int pcv_model_create_random(const pcv_config *cfg, uint64_t seed, const pcv_model_options *opt,
                            pcv_model **out, pcv_error *err);
/* Writes config.json + model.safetensors into dir (created if needed). */
int pcv_model_save(pcv_model *m, const char *dir, pcv_error *err);
void pcv_model_free(pcv_model *m);

const pcv_config *pcv_model_config(const pcv_model *m);
pcv_arch pcv_model_arch(const pcv_model *m);
const char *pcv_arch_name(pcv_arch a); /* HF class name */
pcv_arch pcv_arch_from_name(const char *hf_class);
int64_t pcv_model_num_params(const pcv_model *m);
const char *pcv_model_device(const pcv_model *m);
/* The numerics profile in effect (AUTO resolved at load: haiku for DeepMind pickles). */
pcv_numerics pcv_model_numerics(const pcv_model *m);

/* Runs one forward pass. Inputs are named like the Hugging Face forward arguments: text models
 * take "input_ids" (or "inputs") and "attention_mask"; image classifiers take "pixel_values"
 * (or "inputs") [batch][3][H][W]; optical flow takes "inputs" [batch][2][27][H][W] (two frames
 * of 3x3 patches, H x W = config train_size). Outputs are "logits" and "last_hidden_state". */
int pcv_model_forward(pcv_model *m, const pcv_io_tensor *inputs, int n_inputs,
                      pcv_io_tensor **outputs, int *n_outputs, pcv_error *err);
void pcv_io_free(pcv_io_tensor *t, int n);
/* Views every tensor of an open safetensors file as a model input (data not copied: valid while
 * st stays open). out needs room for st->count entries; fails on names of 64 bytes or more. */
int pcv_io_from_safetensors(const pcv_safetensors *st, pcv_io_tensor *out, pcv_error *err);
const pcv_io_tensor *pcv_io_find(const pcv_io_tensor *t, int n, const char *name);

/* Per-stage statistics of the last forward (times only when options.profile was set). */
typedef struct pcv_stage_stats {
    const char *name;
    double seconds;
    double flops; /* matrix-multiply FLOPs (2 per multiply-add) */
} pcv_stage_stats;

int pcv_model_stats(const pcv_model *m, pcv_stage_stats *out, int cap);
/* Analytic FLOPs of one forward for batch B and sequence length S (matmuls only). */
double pcv_model_flops(const pcv_model *m, int64_t batch, int64_t seq);

#ifdef __cplusplus
}
#endif
#endif
