/* Internals shared by the OpenCL source files (src/opencl_*.c, src/backend_opencl.c). */
#ifndef PCV_OPENCL_IMPL_H
#define PCV_OPENCL_IMPL_H

#include "backend/opencl.h"

#ifdef PCV_HAVE_OPENCL
#include <CL/cl.h>

/* "CL_OUT_OF_RESOURCES" for an error code; "CL error -N" for unknown codes (the string is
 * static or in buf). */
const char *pcv_cl_error_name(cl_int code, char *buf, size_t cap);

/* Platform and device handles of a global device index. */
int pcv_cl_get_device(int index, cl_platform_id *platform, cl_device_id *device, pcv_cl_device_info *info,
                      pcv_error *err);

/* Points PoCL at a writable kernel cache when the user has not chosen one and its default
 * location cannot be created (otherwise PoCL hides its device). Runs before the first OpenCL
 * call of the process. */
void pcv_cl_prepare_runtime(void);

/* Source text of cl/<name> with cl/common.cl in front: embedded in the library at build
 * time, or read from $PERCEIVER_CL_DIR/<name> when that variable is set (kernel development).
 * Returns a malloc'd string, or NULL with err. */
char *pcv_cl_load_source(const char *name, pcv_error *err);

/* Statistics of program builds in this process (for `devices --verbose` and the docs). */
typedef struct pcv_cl_build_stats {
    int from_source, from_cache, cache_writes, cache_rejects;
    int cache_forged; /* rejected because the tag did not verify */
    double seconds;
} pcv_cl_build_stats;
extern pcv_cl_build_stats pcv_cl_stats;

/* Builds cl/<name> for one device with the given options, through the on-disk binary cache:
 * the key covers the source text, the options, the platform, device and driver versions, so a
 * new driver or an edited kernel never meets a stale binary. A cache entry that is unreadable,
 * corrupt or rejected by the driver is rebuilt from source and rewritten (atomically). A build
 * failure returns PCV_ERR_DEVICE with the build log in err, and the full log on stderr. */
int pcv_cl_build_program(cl_context ctx, cl_device_id dev, const pcv_cl_device_info *info, const char *name,
                         const char *options, cl_program *out, pcv_error *err);
#endif

#endif
