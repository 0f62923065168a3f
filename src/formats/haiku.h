/* DeepMind Haiku checkpoints: flattening the parameter tree, renaming Haiku names to the
 * canonical Hugging Face names (with the transposes, squeezes and dropped entries of
 * shared/spec/perceiver-io.md section 10), detecting the architecture from the names and
 * deriving a config for it. */
#ifndef PCV_HAIKU_H
#define PCV_HAIKU_H

#include "formats/pickle.h"

typedef enum hk_arch {
    HK_ARCH_UNKNOWN = 0,
    HK_ARCH_MLM,
    HK_ARCH_IMAGE_LEARNED,
    HK_ARCH_IMAGE_FOURIER,
    HK_ARCH_IMAGE_CONV,
    HK_ARCH_FLOW,
    HK_ARCH_MULTIMODAL,
    HK_ARCH_SEQCLS, /* no DeepMind file; same names as the classifiers, with a text input */
    HK_ARCH_COUNT
} hk_arch;

typedef struct hk_arch_info {
    hk_arch arch;
    const char *hf_class;    /* "PerceiverForMaskedLM" */
    const char *script_name; /* --architecture of convert_perceiver_haiku_to_pytorch.py */
    const char *preset;      /* built-in config (presets.c) */
    const char *dm_file;     /* the DeepMind release file, or NULL */
} hk_arch_info;

const hk_arch_info *hk_arch_get(hk_arch a);
/* Accepts the script names (MLM, image_classification, ...), HF class names and preset names,
 * case-insensitively; NULL if unknown. */
const hk_arch_info *hk_arch_lookup(const char *name);

/* One leaf of a Haiku parameter tree: "<module scope>/<param name>". */
typedef struct hk_param {
    char *name;
    const pk_array *arr;
    bool state; /* from the 'state' tree (BatchNorm statistics) */
} hk_param;

/* Flattens a DeepMind pickle's root object: a params mapping, or {'params': ..., 'state': ...}
 * (other top-level keys, e.g. optimizer state, are ignored), each level a plain dict or a Haiku
 * mapping. Sorted by name; duplicate names, non-string keys and non-array leaves are errors. */
int hk_flatten(const pk_obj *root, const char *file, hk_param **out, size_t *n, pcv_error *err);
void hk_params_free(hk_param *p, size_t n);

/* Architecture from parameter names, Haiku or Hugging Face spelling. */
hk_arch hk_detect(const char *const *names, size_t n);

typedef enum hk_transform {
    HK_T_NONE,    /* copied as is */
    HK_T_REVERSE, /* np.transpose: all axes reversed (Linear [in,out] -> [out,in]; conv HWIO -> OIWH) */
    HK_T_SQUEEZE, /* reversed then size-1 axes dropped (BatchNorm [1,1,1,C] -> [C]) */
    HK_T_DROP     /* not part of the HF model (BatchNorm EMA counter / hidden) */
} hk_transform;

/* Haiku name -> HF name. Returns 0 when mapped (or dropped, *t == HK_T_DROP), -1 when the name
 * is not in the renamer table. */
int hk_rename(const char *haiku, hk_arch arch, char *out, size_t cap, hk_transform *t);

#endif
