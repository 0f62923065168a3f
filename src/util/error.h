/* Setting a caller's pcv_error (library-internal: users only read errors). */
#ifndef PCV_UTIL_ERROR_H
#define PCV_UTIL_ERROR_H

#include "perceiver/perceiver.h"

/* Sets err (if not NULL) and returns code. printf-style. */
int pcv_set_error(pcv_error *err, pcv_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
