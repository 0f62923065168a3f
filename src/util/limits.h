/* The process-wide limits on untrusted input (pcv_limits in perceiver.h, docs/limits.md). */
#ifndef PCV_LIMITS_H
#define PCV_LIMITS_H

#include "perceiver/perceiver.h"

/* The limits in force. */
const pcv_limits *pcv_limits_now(void);

/* "the limit NAME = VALUE (raise it with PERCEIVER_LIMITS=NAME=N or pcv_set_limits)": the tail of
 * every message about a limit, so that each one says which limit and how to raise it. */
const char *pcv_limit_text(const char *name, char *buf, size_t cap);
#define PCV_LIMIT_TEXT(name) pcv_limit_text(name, (char[256]){0}, 256)

#endif
