/* The architecture registry: one row per Perceiver architecture, read by every module that
 * needs to know one (the model builds its head from it; the Haiku reader detects and renames
 * with it; convert, inspect and bench name presets and files through it). */
#ifndef PCV_ARCH_H
#define PCV_ARCH_H

#include "perceiver/model.h"

typedef struct pcv_head pcv_head; /* model_impl.h */

typedef struct pcv_arch_info {
    pcv_arch arch;
    const char *hf_class;    /* "PerceiverForMaskedLM" */
    const char *script_name; /* --architecture of transformers' convert_perceiver_haiku_to_pytorch.py */
    const char *preset;      /* built-in config of the published checkpoint (presets.c), or NULL */
    const char *dm_file;     /* DeepMind's release file, or NULL */
    /* Detection from parameter names: every listed prefix occurs (rows are tried in table
     * order, so a row comes before the rows whose names are a subset of its own). */
    const char *haiku_detect[3]; /* DeepMind Haiku spelling */
    const char *hf_detect[3];    /* Hugging Face spelling */
    const pcv_head *head;        /* how it runs */
} pcv_arch_info;

/* Every row, in detection order; n receives the count. */
const pcv_arch_info *pcv_arch_table(int *n);
const pcv_arch_info *pcv_arch_get(pcv_arch a);
/* By HF class, convert-script name or preset name, case-insensitively; NULL if unknown. */
const pcv_arch_info *pcv_arch_lookup(const char *name);
/* From parameter names in either spelling; NULL if no row matches. */
const pcv_arch_info *pcv_arch_detect(const char *const *names, size_t n);

/* The heads (head_*.c). */
extern const pcv_head pcv_head_masked_lm, pcv_head_text_classifier, pcv_head_image_learned,
    pcv_head_image_fourier, pcv_head_image_conv, pcv_head_optical_flow, pcv_head_multimodal;

#endif
