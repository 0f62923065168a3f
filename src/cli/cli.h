/* Shared pieces of the perceiver-cl subcommands. */
#ifndef PCV_CLI_H
#define PCV_CLI_H

#include "perceiver/model.h"
#include "perceiver/perceiver.h"

#include <stdio.h>

/* Exit codes (documented in --help and README). */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* A tiny long-option scanner: --name value, --name=value, and short aliases. */
typedef struct cli_args {
    int argc, i;
    char **argv;
    const char *value; /* value of the last matched option */
    char optbuf[64];
} cli_args;

void cli_init(cli_args *a, int argc, char **argv, int start);
/* Returns true and advances when argv[i] is the option (long or short); for options with a
 * value, a missing value prints an error and sets *bad. */
bool cli_opt(cli_args *a, const char *lng, const char *shrt, bool has_value, bool *bad);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_fail(const pcv_error *err);
bool cli_parse_int(const char *s, long lo, long hi, long *out);

/* Model options with the environment's defaults: PERCEIVER_DEVICE, PERCEIVER_MAX_ALLOC. */
pcv_model_options cli_model_options(void);
/* Maps the PERCEIVER_* variables of the OpenCL runtime onto pcv_runtime_configure (main calls it
 * once before any command): PERCEIVER_CACHE_DIR, PERCEIVER_KERNEL_CACHE, PERCEIVER_CL_DIR,
 * PERCEIVER_CL_TRACE, and the tuning overrides PERCEIVER_ATTENTION, PERCEIVER_GEMM_LAYOUT,
 * PERCEIVER_ATTN_SPLITS, PERCEIVER_CLBLAST_TUNE, PERCEIVER_CLBLAST_XGEMM, PERCEIVER_CLBLAST_MININD. */
int cli_runtime_setup(pcv_error *err);
/* Signal handlers and PERCEIVER_LIMITS (process.c; main calls it once before any command). */
int cli_process_setup(pcv_error *err);
/* Sets one limit from an option's value ("image_pixels", "300000000"). */
int cli_set_limit(const char *name, const char *value, pcv_error *err);

/* Common model options: --device, --threads, --numerics. Returns true if consumed. */
bool cli_model_opt(cli_args *a, pcv_model_options *opt, bool *bad);
extern const char *const cli_model_opts_help;

int cmd_fill(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_init_random(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_bench_ops(int argc, char **argv);
int cmd_flow(int argc, char **argv);

#endif
