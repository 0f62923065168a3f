/* Recognising a file's format by its structure, never by its name, strictest format first. */
#ifndef PCV_SNIFF_H
#define PCV_SNIFF_H

#include <stdbool.h>
#include <stddef.h>

typedef enum pcv_file_kind {
    PCV_FILE_UNKNOWN = 0,
    PCV_FILE_SAFETENSORS,  /* 8-byte little-endian header length N that fits the file, a JSON
                              object from byte 8 to 8+N ('{' ... '}', then only space padding) */
    PCV_FILE_TORCH_LEGACY, /* the legacy torch.save magic number, pickled */
    PCV_FILE_TORCH_ZIP,    /* a zip archive: local header at 0, end-of-central-directory record
                              in the last 64 KiB */
    PCV_FILE_PICKLE,       /* PROTO 2..5 first, STOP last */
    PCV_FILE_JSON          /* first non-blank byte '{' */
} pcv_file_kind;

/* The kind of the file at path (PCV_FILE_UNKNOWN when it cannot be read or matches none). When
 * what is not NULL it receives a short description for messages ("a safetensors file", "a
 * pickle", "an empty file"; "" when nothing is recognised). */
pcv_file_kind pcv_sniff_file(const char *path, char *what, size_t cap);

#endif
