/* The checkpoint readers' shared structures (opaque outside the library, see perceiver.h). */
#ifndef PCV_FORMATS_H
#define PCV_FORMATS_H

#include "perceiver/perceiver.h"

struct pcv_safetensors {
    char *path;
    void *map; /* mmap of the whole file (read-only) */
    size_t map_size;
    int count;
    pcv_st_tensor *tensors; /* sorted by name */
};

/* The limits on a config's layer counts (num_blocks, num_blocks x num_self_attends_per_block):
 * checked when a config.json is read and when a model is built from any config. */
int pcv_config_check_limits(const pcv_config *cfg, const char *what, pcv_error *err);
/* config.json text (len bytes, not NUL-terminated) into cfg, with every check of
 * pcv_config_load; `path` names it in errors (config_save.c checks what it renders) */
int pcv_config_parse_text(pcv_config *cfg, const char *path, const char *text, size_t len, pcv_error *err);

/* Maps st (caller-owned storage) / releases what pcv_st_map set up. */
int pcv_st_map(pcv_safetensors *st, const char *path, pcv_error *err);
void pcv_st_unmap(pcv_safetensors *st);

/* Tensor data point into mapped files or into blocks owned by the set. */
struct pcv_weights {
    char *path;        /* the file or folder opened, for messages */
    char format[32];   /* "safetensors", ... */
    int count, cap;
    pcv_st_tensor *tensors; /* sorted by name */
    pcv_safetensors *files;
    int nfiles;
    void **blocks;
    int nblocks, capblocks;
    bool from_haiku;
    char architecture[64];
    char *source;
    int ndropped;
    void *ext; /* format-specific state (mapped files, parsed pickles) */
};

/* Opens into caller-owned storage / releases it (the model embeds its weight set). */
int pcv_weights_load(pcv_weights *w, const char *path, const pcv_weights_options *opt, pcv_error *err);
void pcv_weights_release(pcv_weights *w);

#endif
