/* Option handling shared by the subcommands (getopt_long conventions: -mX, -m X, --model=X,
 * --model X, clustered short flags, unique prefixes of long names, "--" ends the options,
 * operands anywhere), and the mapping of the PERCEIVER_* environment variables onto the
 * library's options (the library itself reads none of them). */
#define _GNU_SOURCE /* sched_getaffinity */
#include "cli/cli.h"
#include "cli/dispatch.h"

#include "formats/sniff.h"
#include "perceiver/image.h"
#include "util/error.h"

#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- argument parsing: getopt_long conventions ---------------------------------------------- */

static const cli_option common_model[] = {
    {"device", 'd', "NAME", "cpu (default), an OpenCL device index, or part of its name\n"
                            "(see 'perceiver-cl devices'; $PERCEIVER_DEVICE sets the default)"},
    {"threads", 't', "N", "CPU threads (default: all cores)"},
    {"numerics", CLI_NUMERICS, "P", "hf or haiku (DeepMind's original forward pass); default:\n"
                                     "haiku for DeepMind pickles, hf otherwise"},
    {"max-image-pixels", CLI_MAX_IMAGE_PIXELS, "N", "refuse images of more than N pixels (default 178956970,\n"
                                                    "Pillow's decompression-bomb rule; docs/limits.md)"},
    {0},
};
/* the same, for the commands that share their work between devices and MPI ranks (dispatch.h) */
static const cli_option common_model_devices[] = {
    {"device", 'd', "LIST", "cpu, an OpenCL device index, or part of its name (see 'perceiver-cl\n"
                            "devices'); a list such as 0,1 (the work is shared, results in input\n"
                            "order); all (every OpenCL device); auto (OpenCL device node-local\n"
                            "MPI rank mod count, else cpu). Default: $PERCEIVER_DEVICE, else cpu;\n"
                            "auto under mpirun"},
    {"threads", 't', "N", "CPU threads (default: all cores)"},
    {"numerics", CLI_NUMERICS, "P", "hf or haiku (DeepMind's original forward pass); default:\n"
                                     "haiku for DeepMind pickles, hf otherwise"},
    {"max-image-pixels", CLI_MAX_IMAGE_PIXELS, "N", "refuse images of more than N pixels (default 178956970,\n"
                                                    "Pillow's decompression-bomb rule; docs/limits.md)"},
    {0},
};
static const cli_option common_quiet[] = {
    {"quiet", 'q', NULL, "no progress or information on standard error (errors and\n"
                         "warnings are still printed)"},
    {0},
};
static const cli_option common_help[] = {
    {"help", 'h', NULL, "this text"},
    {0},
};

/* the options of a command in --help order: its own, the common ones, --help */
int cli_all_options(const cli_command *c, const cli_option **out, int cap)
{
    const cli_option *model = (c->common & CLI_DEVICES) ? common_model_devices : common_model;
    const cli_option *lists[4] = {c->options, (c->common & CLI_MODEL) ? model : NULL,
                                  (c->common & CLI_QUIET) ? common_quiet : NULL, common_help};
    int n = 0;
    for (int l = 0; l < 4; l++)
        for (const cli_option *o = lists[l]; o && o->name && n < cap; o++)
            out[n++] = o;
    return n;
}

void cli_print_help(const cli_command *c, FILE *f)
{
    fprintf(f, "Usage: perceiver-cl %s %s\n\n%s", c->name, c->synopsis, c->description);
    const cli_option *all[CLI_MAX_OPTIONS];
    int n = cli_all_options(c, all, CLI_MAX_OPTIONS);
    fprintf(f, "\nOptions:\n");
    for (int i = 0; i < n; i++) {
        const cli_option *o = all[i];
        if (!o->help)
            continue; /* an alias, mentioned in its option's help */
        char left[96];
        int len = snprintf(left, sizeof left, "  %s%c%s--%s%s%s", o->key < 256 ? "-" : " ", o->key < 256 ? o->key : ' ',
                           o->key < 256 ? ", " : "  ", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        const char *h = o->help;
        bool first = true;
        while (*h) {
            const char *nl = strchr(h, '\n');
            int l = nl ? (int)(nl - h) : (int)strlen(h);
            if (first && len < 29)
                fprintf(f, "%-29s %.*s\n", left, l, h);
            else if (first)
                fprintf(f, "%s\n%-29s %.*s\n", left, "", l, h);
            else
                fprintf(f, "%-29s %.*s\n", "", l, h);
            first = false;
            h += l + (nl != NULL);
        }
    }
    if (c->footer)
        fprintf(f, "\n%s", c->footer);
}

void cli_parse_begin(cli_parser *p, const cli_command *c, int argc, char **argv)
{
    memset(p, 0, sizeof *p);
    p->cmd = c;
    p->argc = argc;
    p->argv = argv;
    p->n = cli_all_options(c, p->all, CLI_MAX_OPTIONS);
    size_t k = 0;
    p->so[k++] = ':'; /* a missing value returns ':' */
    for (int i = 0; i < p->n; i++) {
        const cli_option *o = p->all[i];
        p->lo[i] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL, o->key};
        if (o->key < 256 && !strchr(p->so + 1, o->key) && k + 3 < sizeof p->so) {
            p->so[k++] = (char)o->key;
            if (o->arg)
                p->so[k++] = ':';
        }
    }
    p->lo[p->n] = (struct option){0};
    p->so[k] = '\0';
    optind = 0; /* glibc: start over */
    opterr = 0;
}

const cli_option *cli_find_option(const cli_parser *p, int key)
{
    for (int i = 0; i < p->n; i++)
        if (p->all[i]->key == key)
            return p->all[i];
    return NULL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_progress_clear();
    fprintf(stderr, "perceiver-cl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'perceiver-cl %s --help'.\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

static int online_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int cli_parse_next(cli_parser *p)
{
    for (;;) {
        int idx = -1;
        int c = getopt_long(p->argc, p->argv, p->so, p->lo, &idx);
        p->arg = optarg;
        p->cur = c >= 0 ? cli_find_option(p, c) : NULL;
        if (c == -1) {
            p->first_operand = optind;
            return -1;
        }
        if (c == '?') {
            const char *bad = optind > 0 && optind <= p->argc ? p->argv[optind - 1] : "?";
            if (optopt && optopt < 256 && !(bad[0] == '-' && bad[1] == '-'))
                cli_usage_error(p->cmd->name, "unknown option '-%c'", optopt);
            else
                cli_usage_error(p->cmd->name, "unknown option '%s'", bad);
            return '?';
        }
        if (c == ':') {
            const cli_option *o = cli_find_option(p, optopt);
            if (o)
                cli_usage_error(p->cmd->name, "option '--%s' needs a value (%s)", o->name, o->arg);
            else
                cli_usage_error(p->cmd->name, "an option needs a value");
            return '?';
        }
        if (c == 'h') {
            cli_print_help(p->cmd, stdout);
            return CLI_HELP;
        }
        if (c == 'q' && (p->cmd->common & CLI_QUIET)) {
            cli_quiet = true;
            continue;
        }
        if ((p->cmd->common & CLI_MODEL) && c == CLI_MAX_IMAGE_PIXELS) {
            pcv_error e = {0};
            if (cli_set_limit("image_pixels", p->arg, &e)) {
                cli_usage_error(p->cmd->name, "--max-image-pixels needs a positive number, not '%s'", p->arg);
                return '?';
            }
            continue;
        }
        if ((p->cmd->common & CLI_MODEL) && p->model && (c == 'd' || c == 't' || c == CLI_NUMERICS)) {
            long v;
            if (c == 'd') {
                p->model->backend.device = p->arg;
            } else if (c == 't') {
                if (!cli_int(p, 1, 4096, &v))
                    return '?';
                int cpus = online_cpus();
                if (v > cpus)
                    cli_warn("--threads %ld is more than the %d CPU%s this process may use: BLIS and OpenMP "
                             "threads spin while they wait, so this runs slower than --threads %d",
                             v, cpus, cpus == 1 ? "" : "s", cpus);
                p->model->backend.threads = (int)v;
            } else if (!strcmp(p->arg, "hf")) {
                p->model->numerics = PCV_NUMERICS_HF;
            } else if (!strcmp(p->arg, "haiku")) {
                p->model->numerics = PCV_NUMERICS_HAIKU;
            } else {
                cli_usage_error(p->cmd->name, "--numerics must be 'hf' or 'haiku', not '%s'", p->arg);
                return '?';
            }
            continue;
        }
        return c;
    }
}

bool cli_int(cli_parser *p, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = p->arg && *p->arg ? strtol(p->arg, &end, 10) : 0;
    if (!p->arg || !*p->arg || *end || errno || v < lo || v > hi) {
        cli_usage_error(p->cmd->name, "--%s needs a whole number from %ld to %ld, not '%s'",
                        p->cur ? p->cur->name : "?", lo, hi, p->arg ? p->arg : "");
        return false;
    }
    *out = v;
    return true;
}

bool cli_double(cli_parser *p, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = p->arg && *p->arg ? strtod(p->arg, &end) : 0;
    if (!p->arg || !*p->arg || *end || errno || !(v >= lo && v <= hi)) {
        cli_usage_error(p->cmd->name, "--%s needs a number from %g to %g, not '%s'", p->cur ? p->cur->name : "?", lo,
                        hi, p->arg ? p->arg : "");
        return false;
    }
    *out = v;
    return true;
}

int cli_fail(const pcv_error *err)
{
    cli_progress_clear();
    fprintf(stderr, "perceiver-cl: error: %s\n", err->msg);
    return EXIT_FAIL;
}

bool cli_quiet = false;

void cli_info(const char *fmt, ...)
{
    if (cli_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    cli_progress_clear();
    fprintf(stderr, "perceiver-cl: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_progress_clear();
    fprintf(stderr, "perceiver-cl: warning: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_check_output_file(const char *path, const char *role, pcv_error *err)
{
    struct stat sb;
    size_t n = strlen(path);
    if (n == 0)
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: an empty file name", role);
    if ((stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) || path[n - 1] == '/')
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: is a folder; %s needs a file name (e.g. %s%sout.safetensors)",
                             path, role, path, path[n - 1] == '/' ? "" : "/");
    return 0;
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

static char tuning[1024];
static pcv_runtime_options rt;

const char *cli_runtime_tuning(void) { return tuning; }

int cli_runtime_add_tuning(const char *kv, pcv_error *err)
{
    size_t n = strlen(tuning);
    snprintf(tuning + n, sizeof tuning - n, "%s%s", n ? "," : "", kv);
    rt.tuning = tuning;
    return pcv_runtime_configure(&rt, err);
}

int cli_runtime_setup(pcv_error *err)
{
    rt = (pcv_runtime_options){.kernel_cache = -1};
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
    /* PERCEIVER_TUNING: any tuning keys, "key=value,..." (docs/opencl.md); the variables below
     * are older names of single keys and come after it */
    if ((v = getenv("PERCEIVER_TUNING")) && *v)
        snprintf(tuning, sizeof tuning, "%s", v);
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_ATTENTION", "attention");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_GEMM", "gemm");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_GEMM_LAYOUT", "layout");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_ATTN_SPLITS", "splits");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_CLBLAST_TUNE", "clblast");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_CLBLAST_MININD", "minind");
    tuning_from_env(tuning, sizeof tuning, "PERCEIVER_TUNED", "profile"); /* 0: no tuning profiles */
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
    rt.progress = cli_library_progress;
    return pcv_runtime_configure(&rt, err);
}

int cli_check_safetensors(const char *path, const char *role, pcv_error *err)
{
    char what[64];
    pcv_file_kind k = pcv_sniff_file(path, what, sizeof what);
    struct stat sb;
    if (k == PCV_FILE_SAFETENSORS || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0; /* the reader says what is wrong with a missing or special file */
    const char *img = NULL;
    if (k == PCV_FILE_UNKNOWN && sb.st_size > 0) {
        unsigned char h[32] = {0};
        FILE *f = fopen(path, "rb");
        size_t n = f ? fread(h, 1, sizeof h, f) : 0;
        if (f)
            fclose(f);
        img = pcv_image_format(h, n);
        size_t pl = strlen(path);
        if (!img && pl >= 12 && !strcmp(path + pl - 12, ".safetensors"))
            return 0; /* named like one, damaged: the reader says where */
        if (img)
            snprintf(what, sizeof what, "a%s %s image", strchr("AEIOU", img[0]) ? "n" : "", img);
        else
            snprintf(what, sizeof what, "unrecognised content");
    }
    return pcv_set_error(err, PCV_ERR_FORMAT, "%s: not a safetensors file (%s); %s must be a safetensors file%s",
                         path, what, role, img ? " ('perceiver-cl classify' takes images)" : "");
}


/* ---- --version --------------------------------------------------------------------------------- */

void cli_print_version(FILE *f)
{
    fprintf(f, "perceiver-cl %s (git %s)\n", pcv_version(), pcv_cli_git_commit);
    fprintf(f, "backends: cpu (plain C + OpenMP, BLIS GEMMs)%s\n",
#ifdef PCV_HAVE_OPENCL
            ", opencl (OpenCL 1.2 API; GEMMs: CLBlast, or our own kernels on PoCL)"
#else
            "; OpenCL not built (-DPCV_OPENCL=OFF)"
#endif
    );
    /* the MPI of the build: mpirun -n N shares classify, fill and flow (dispatch.h) */
    fprintf(f, "mpi: %s\n", cli_mpi_build());
#if defined(__clang__)
    fprintf(f, "compiler: clang %s\n", __clang_version__);
#elif defined(__GNUC__)
    fprintf(f, "compiler: gcc %s\n", __VERSION__);
#endif
}
