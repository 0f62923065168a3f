/* DeepMind Haiku checkpoints: flattening the parameter tree, renaming Haiku names to the
 * canonical Hugging Face names (with the transposes, squeezes and dropped entries of
 * docs/checkpoints.md). Architecture detection is the registry's (model/arch.h). */
#ifndef PCV_HAIKU_H
#define PCV_HAIKU_H

#include "formats/pickle.h"
#include "perceiver/model.h"

/* One leaf of a Haiku parameter tree: "<module scope>/<param name>". */
typedef struct hk_param {
    char *name;
    const pk_array *arr;
    bool state; /* from the 'state' tree (BatchNorm statistics) */
} hk_param;

/* Flattens a DeepMind pickle's root object: a params mapping, or {'params': ..., 'state': ...}
 * (other top-level keys, e.g. optimizer state, are ignored), each level a plain dict or a Haiku
 * mapping. Sorted by name; duplicate names, non-string keys and non-array leaves are errors.
 * Bounded: depth 8, names of 1024 bytes, the pickle_nodes limit on the values reached (a shared
 * sub-tree counts each time), and the names and table are charged to the doc's memory budget. */
int hk_flatten(pk_doc *doc, const char *file, hk_param **out, size_t *n, pcv_error *err);
void hk_params_free(hk_param *p, size_t n);

typedef enum hk_transform {
    HK_T_NONE,    /* copied as is */
    HK_T_REVERSE, /* np.transpose: all axes reversed (Linear [in,out] -> [out,in]; conv HWIO -> OIWH) */
    HK_T_SQUEEZE, /* reversed then size-1 axes dropped (BatchNorm [1,1,1,C] -> [C]) */
    HK_T_DROP     /* not part of the HF model (BatchNorm EMA counter / hidden) */
} hk_transform;

/* Haiku name -> HF name. Returns 0 when mapped (or dropped, *t == HK_T_DROP), -1 when the name
 * is not in the renamer table. */
int hk_rename(const char *haiku, pcv_arch arch, char *out, size_t cap, hk_transform *t);

#endif
