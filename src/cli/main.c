/* perceiver-cl: command-line entry point and shared option handling. */
#include "cli/cli.h"

#include "perceiver/presets.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "perceiver-cl %s: DeepMind's Perceiver IO models in C (CPU reference path and OpenCL)\n"
    "\n"
    "Usage: perceiver-cl <command> [options]\n"
    "\n"
    "Commands:\n"
    "  fill         fill masked bytes of text with a masked language model\n"
    "  classify     top classes of PNG/JPEG images with an image classifier\n"
    "  run          run a forward pass: named input tensors in, output tensors out (safetensors)\n"
    "  bench        time one forward pass per stage and report GFLOP/s\n"
    "  init-random  write a random-weight model folder (config.json + model.safetensors)\n"
    "  convert      DeepMind Haiku pickle (or any checkpoint) -> Hugging Face folder\n"
    "  inspect      list a checkpoint's tensors, architecture and config\n"
    "  devices      list the compute devices (--device N picks one)\n"
    "  verify       run a model on a device and on the CPU path; compare every stage\n"
    "  bench-ops    GFLOP/s of single operations at the language model's shapes\n"
    "\n"
    "Run 'perceiver-cl <command> --help' for a command's options.\n"
    "Global: --help, --version.\n"
    "\n"
    "Exit status: 0 success, 1 failure (bad model, input or file; the message names it),\n"
    "2 usage error.\n";

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
    "                    DeepMind pickles, hf otherwise\n";

bool cli_model_opt(cli_args *a, pcv_model_options *opt, bool *bad)
{
    long v;
    if (cli_opt(a, "--device", "-d", true, bad)) {
        opt->device = a->value;
    } else if (cli_opt(a, "--threads", "-t", true, bad)) {
        if (a->value && !cli_parse_int(a->value, 1, 1024, &v)) {
            fprintf(stderr, "perceiver-cl: --threads needs a number from 1 to 1024, not '%s'\n", a->value);
            *bad = true;
        } else if (a->value) {
            opt->threads = (int)v;
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, usage, pcv_version());
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        printf(usage, pcv_version());
        return EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("perceiver-cl %s\n", pcv_version());
        return EXIT_OK;
    }
    if (!strcmp(cmd, "fill"))
        return cmd_fill(argc, argv);
    if (!strcmp(cmd, "classify"))
        return cmd_classify(argc, argv);
    if (!strcmp(cmd, "run"))
        return cmd_run(argc, argv);
    if (!strcmp(cmd, "bench"))
        return cmd_bench(argc, argv);
    if (!strcmp(cmd, "init-random"))
        return cmd_init_random(argc, argv);
    if (!strcmp(cmd, "convert"))
        return cmd_convert(argc, argv);
    if (!strcmp(cmd, "inspect"))
        return cmd_inspect(argc, argv);
    if (!strcmp(cmd, "devices"))
        return cmd_devices(argc, argv);
    if (!strcmp(cmd, "verify"))
        return cmd_verify(argc, argv);
    if (!strcmp(cmd, "bench-ops"))
        return cmd_bench_ops(argc, argv);
    fprintf(stderr, "perceiver-cl: unknown command '%s'\n\n", cmd);
    fprintf(stderr, usage, pcv_version());
    return EXIT_USAGE;
}
