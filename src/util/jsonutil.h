/* Small jansson helpers shared by the JSON readers. */
#ifndef PCV_JSONUTIL_H
#define PCV_JSONUTIL_H

#include <jansson.h>

/* "an object", "an array", "a string", ...: for messages about a value of the wrong type. */
const char *pcv_json_kind(const json_t *v);

#endif
