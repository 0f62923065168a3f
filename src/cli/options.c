/* Option handling shared by the subcommands, and the mapping of the PERCEIVER_* environment
 * variables onto the library's options (the library itself reads none of them). */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void cli_init(cli_args *a, int argc, char **argv, int start)
{
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->i = start;
}

bool cli_opt(cli_args *a, const char *lng, const char *shrt, bool has_value, bool *bad)
{
    const char *arg = a->argv[a->i];
    size_t n = strlen(lng);
    bool eq = false;
    if (strncmp(arg, lng, n) == 0 && (arg[n] == '\0' || (has_value && arg[n] == '=')))
        eq = arg[n] == '=';
    else if (!(shrt && strcmp(arg, shrt) == 0))
        return false;
    a->i++;
    a->value = NULL;
    if (!has_value)
        return true;
    if (eq) {
        a->value = arg + n + 1;
    } else if (a->i < a->argc) {
        a->value = a->argv[a->i++];
    } else {
        fprintf(stderr, "perceiver-cl: option %s needs a value\n", lng);
        *bad = true;
    }
    return true;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "perceiver-cl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'perceiver-cl %s --help'.\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

int cli_fail(const pcv_error *err)
{
    fprintf(stderr, "perceiver-cl: error: %s\n", err->msg);
    return EXIT_FAIL;
}

bool cli_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    if (!s || !*s)
        return false;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

const char *const cli_model_opts_help =
    "  --device NAME     cpu (default), an OpenCL device index, or part of its name\n"
    "                    (see 'perceiver-cl devices'; $PERCEIVER_DEVICE sets the default)\n"
    "  --threads N       CPU threads (default: all cores)\n"
    "  --numerics P      hf or haiku (DeepMind's original forward pass); default: haiku for\n"
    "                    DeepMind pickles, hf otherwise\n"
    "  --max-image-pixels N  refuse images of more than N pixels (default 178956970,\n"
    "                    Pillow's decompression-bomb rule; docs/limits.md)\n";

bool cli_model_opt(cli_args *a, pcv_model_options *opt, bool *bad)
{
    long v;
    if (cli_opt(a, "--device", "-d", true, bad)) {
        opt->backend.device = a->value;
    } else if (cli_opt(a, "--threads", "-t", true, bad)) {
        if (a->value && !cli_parse_int(a->value, 1, 1024, &v)) {
            fprintf(stderr, "perceiver-cl: --threads needs a number from 1 to 1024, not '%s'\n", a->value);
            *bad = true;
        } else if (a->value) {
            opt->backend.threads = (int)v;
        }
    } else if (cli_opt(a, "--max-image-pixels", NULL, true, bad)) {
        pcv_error e = {0};
        if (a->value && cli_set_limit("image_pixels", a->value, &e)) {
            fprintf(stderr, "perceiver-cl: --max-image-pixels needs a positive number, not '%s'\n", a->value);
            *bad = true;
        }
    } else if (cli_opt(a, "--numerics", NULL, true, bad)) {
        if (a->value && strcmp(a->value, "hf") == 0) {
            opt->numerics = PCV_NUMERICS_HF;
        } else if (a->value && strcmp(a->value, "haiku") == 0) {
            opt->numerics = PCV_NUMERICS_HAIKU;
        } else if (a->value) {
            fprintf(stderr, "perceiver-cl: --numerics must be 'hf' or 'haiku', not '%s'\n", a->value);
            *bad = true;
        }
    } else {
        return false;
    }
    return true;
}

pcv_model_options cli_model_options(void)
{
    pcv_model_options o = {0};
    const char *dev = getenv("PERCEIVER_DEVICE");
    o.backend.device = dev && *dev ? dev : NULL; /* set but empty: as if unset (--device '' is an error) */
    const char *ma = getenv("PERCEIVER_MAX_ALLOC");
    if (ma && *ma)
        o.backend.max_alloc = strtoull(ma, NULL, 10);
    return o;
}

/* Appends "key=value" to the tuning string when the variable is set. */
static void tuning_from_env(char *buf, size_t cap, const char *var, const char *key)
{
    const char *v = getenv(var);
    if (!v || !*v)
        return;
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%s=%s", n ? "," : "", key, v);
}

static bool env_flag(const char *var, int *out)
{
    const char *v = getenv(var);
    if (!v || !*v)
        return false;
    if (!strcmp(v, "0") || !strcasecmp(v, "off") || !strcasecmp(v, "no") || !strcasecmp(v, "false"))
        *out = 0;
    else
        *out = 1;
    return true;
}

int cli_runtime_setup(pcv_error *err)
{
    static char tuning[1024];
    pcv_runtime_options rt = {.kernel_cache = -1};
    const char *v;
    if ((v = getenv("PERCEIVER_CACHE_DIR")) && *v)
        rt.cache_dir = v;
    int flag;
    if (env_flag("PERCEIVER_KERNEL_CACHE", &flag))
        rt.kernel_cache = flag;
    if ((v = getenv("PERCEIVER_CL_DIR")) && *v)
        rt.kernel_dir = v;
    if (env_flag("PERCEIVER_CL_TRACE", &flag))
        rt.trace = flag;
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_ATTENTION", "attention");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_GEMM_LAYOUT", "layout");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_ATTN_SPLITS", "splits");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_CLBLAST_TUNE", "clblast");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_CLBLAST_MININD", "minind");
    if ((v = getenv("PERCEIVER_CLBLAST_XGEMM")) && *v) {
        char x[256];
        snprintf(x, sizeof x, "%s", v);
        for (char *p = x; *p; p++)
            if (*p == ' ' || *p == ',')
                *p = ':';
        size_t n = strlen(tuning);
        snprintf(tuning + n, sizeof tuning - n, "%sxgemm=%s", n ? "," : "", x);
    }
    rt.tuning = tuning[0] ? tuning : NULL;
    return pcv_runtime_configure(&rt, err);
}
