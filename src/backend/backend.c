/* Device selection: turns a --device string into a backend.
 *
 *   NULL, "" or "cpu"   the C reference path
 *   "N"                 OpenCL device N (global index over all platforms: `perceiver-cl devices`)
 *   anything else       the first OpenCL device whose "platform / name / vendor" contains it
 *                       (case-insensitive), e.g. "nvidia", "pthread", "Portable"
 */
#include "backend/backend.h"
#include "backend/opencl.h"

#include <string.h>
#include <strings.h>

pcv_backend *pcv_backend_create(const char *spec, int threads, pcv_error *err)
{
    if (!spec || !*spec || strcasecmp(spec, "cpu") == 0)
        return pcv_backend_cpu_create(threads, err);
    int index = pcv_cl_find_device(spec, err);
    if (index < 0)
        return NULL;
    return pcv_backend_opencl_create(index, err);
}
