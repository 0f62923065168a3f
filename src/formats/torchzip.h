/* PyTorch checkpoints (torch.save / pytorch_model.bin) without Python.
 *
 * Two layouts (shared/spec/checkpoint-formats.md section 6):
 *  - the zip format (torch >= 1.6): an uncompressed ZIP (ZIP64-aware) with <dir>/data.pkl,
 *    a protocol-2 pickle whose tensors refer to storages by key, and <dir>/data/<key> records
 *    holding the raw storage bytes;
 *  - the legacy format (torch < 1.6 or _use_new_zipfile_serialization=False): five pickles
 *    (magic number, protocol version, sys_info, the object, the sorted storage keys), then each
 *    storage as an int64 element count followed by its bytes.
 * The pickles go through the safe reader of pickle.h (torch globals only; nothing runs). */
#ifndef PCV_TORCHZIP_H
#define PCV_TORCHZIP_H

#include "formats/pickle.h"

typedef struct pcv_zip_entry {
    const unsigned char *name;
    size_t namelen;
    const unsigned char *data; /* stored (uncompressed) bytes inside the mapped file */
    size_t size;
} pcv_zip_entry;

typedef struct pcv_zip {
    pcv_zip_entry *entries; /* sorted by name */
    size_t count;
} pcv_zip;

/* Reads the central directory of a ZIP held in buf (every offset and size is checked against
 * len; only stored entries can be read). */
int pcv_zip_open(pcv_zip *z, const unsigned char *buf, size_t len, const char *name, pcv_error *err);
const pcv_zip_entry *pcv_zip_find(const pcv_zip *z, const char *name, size_t namelen);
void pcv_zip_close(pcv_zip *z);

typedef struct pcv_torch_file {
    pk_doc doc;       /* the saved object; tensors are PK_ARRAY nodes after a successful parse */
    char format[32];  /* "pytorch-zip" or "pytorch-legacy" */
    pcv_zip zip;
} pcv_torch_file;

/* True when buf starts like a torch checkpoint: "PK\3\4" or the legacy magic number pickle. */
bool pcv_torch_is_zip(const unsigned char *buf, size_t len);
bool pcv_torch_is_legacy(const unsigned char *buf, size_t len);
/* Parses a whole torch file held in memory (buf must outlive f). */
int pcv_torch_parse(pcv_torch_file *f, const unsigned char *buf, size_t len, const char *name,
                    pcv_error *err);
void pcv_torch_close(pcv_torch_file *f);

#endif
