/* A small streaming JSON writer for the --json outputs (docs/json.md): valid UTF-8 out whatever
 * the bytes in, numbers in their shortest round-trip form. */
#ifndef PCV_CLI_JSONW_H
#define PCV_CLI_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct jw {
    FILE *f;
    int indent;        /* 0: compact, on one line; N: pretty, N spaces per level */
    int depth;
    bool need_comma[64];
    bool after_key;
} jw;

void jw_init(jw *w, FILE *f, int indent);
void jw_object(jw *w);
void jw_object_end(jw *w);
void jw_array(jw *w);
void jw_array_end(jw *w);
void jw_key(jw *w, const char *key);
/* Text: invalid UTF-8 sequences become U+FFFD (as Python's bytes.decode(errors="replace")). */
void jw_text(jw *w, const char *s, size_t n);
void jw_str(jw *w, const char *s); /* jw_text of a NUL-terminated string; NULL writes null */
/* A file name: jw_str, and when it is not valid UTF-8, also key_bytes: its exact bytes in hex
 * (every JSON parser accepts the pair; lone surrogates, the other way to keep the bytes, are
 * refused by some). */
void jw_path(jw *w, const char *key, const char *path);
/* Whether s is valid UTF-8. */
bool jw_utf8_valid(const char *s, size_t n);
void jw_int(jw *w, long long v);
void jw_float(jw *w, float v);   /* shortest decimal that reads back as the same float32 */
void jw_double(jw *w, double v); /* shortest decimal that reads back as the same double */
void jw_bool(jw *w, bool v);
void jw_null(jw *w);
/* Ends a top-level value with a newline. */
void jw_end(jw *w);

struct pcv_cl_device_info;
/* the fields that name an OpenCL device (index, name, type, platform, platform_version, vendor,
 * driver, version, opencl_c): devices --json and verify --all --json (docs/json.md) */
void jw_cl_device(jw *w, const struct pcv_cl_device_info *d);

/* Shortest "%.*g" form of v that strtof / strtod read back exactly (NaN and infinities: "null"). */
void jw_format_float(char *buf, size_t cap, float v);
void jw_format_double(char *buf, size_t cap, double v);

#endif
