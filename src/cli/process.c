/* Process-wide setup of perceiver-cl that is not about options: the signal handlers (temporary
 * outputs removed on SIGINT/SIGTERM/SIGHUP/SIGQUIT, a clear error for SIGBUS in a mapped model
 * file) and the limits on untrusted input from PERCEIVER_LIMITS (docs/limits.md). */
#include "cli/cli.h"

#include <stdlib.h>

int cli_process_setup(pcv_error *err)
{
    if (pcv_install_signal_handlers("perceiver-cl", err))
        return 1;
    const char *spec = getenv("PERCEIVER_LIMITS");
    if (spec && *spec) {
        pcv_limits l;
        pcv_get_limits(&l);
        if (pcv_parse_limits(spec, &l, err) || pcv_set_limits(&l, err)) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            snprintf(err->msg, sizeof err->msg, "PERCEIVER_LIMITS: %s", msg);
            return 1;
        }
    }
    return 0;
}

int cli_set_limit(const char *name, const char *value, pcv_error *err)
{
    char spec[128];
    snprintf(spec, sizeof spec, "%s=%s", name, value);
    pcv_limits l;
    pcv_get_limits(&l);
    if (pcv_parse_limits(spec, &l, err))
        return 1;
    return pcv_set_limits(&l, err) ? 1 : 0;
}
