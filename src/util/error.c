/* Error reporting shared by the whole library. */
#include "util/error.h"
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>

#ifndef PCV_VERSION_STRING
#define PCV_VERSION_STRING "unknown"
#endif

int pcv_set_error(pcv_error *err, pcv_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return (int)code;
}

const char *pcv_status_name(pcv_status code)
{
    switch (code) {
    case PCV_OK: return "ok";
    case PCV_ERR_IO: return "I/O error";
    case PCV_ERR_FORMAT: return "format error";
    case PCV_ERR_SHAPE: return "shape error";
    case PCV_ERR_MISSING: return "missing";
    case PCV_ERR_UNSUPPORTED: return "unsupported";
    case PCV_ERR_OOM: return "out of memory";
    case PCV_ERR_INPUT: return "bad input";
    case PCV_ERR_DEVICE: return "device error";
    }
    return "error";
}

const char *pcv_version(void) { return PCV_VERSION_STRING; }
