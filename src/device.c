/* Device selection: turns a --device string into a backend. */
#include "backend.h"

#include <string.h>

pcv_backend *pcv_backend_create(const char *spec, int threads, pcv_error *err)
{
    if (!spec || !*spec || strcmp(spec, "cpu") == 0)
        return pcv_backend_cpu_create(threads, err);
    pcv_set_error(err, PCV_ERR_DEVICE, "device '%s' is not available (this build has the 'cpu' device only)", spec);
    return NULL;
}
