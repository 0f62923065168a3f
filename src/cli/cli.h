/* Shared pieces of the perceiver-cl subcommands. */
#ifndef PCV_CLI_H
#define PCV_CLI_H

#include "perceiver/model.h"
#include "perceiver/perceiver.h"

#include <getopt.h>
#include <stdio.h>

/* Exit codes (documented in --help and README). */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* ---- options ------------------------------------------------------------------------------
 * Each command describes its options once (a cli_option table); the parser (getopt_long) and
 * --help are both made from it, so that they cannot disagree. */

enum {
    CLI_MAX_OPTIONS = 48,
    CLI_HELP = -2,      /* cli_parse_next: --help was printed */
    CLI_NUMERICS = 256, /* keys of options without a short letter start here */
    CLI_MAX_IMAGE_PIXELS = 257,
    CLI_KEY = 300       /* first key free for the commands */
};
/* common option groups (cli_command.common); CLI_DEVICES: with CLI_MODEL, --device takes a list */
enum { CLI_MODEL = 1, CLI_QUIET = 2, CLI_DEVICES = 4 };

typedef struct cli_option {
    const char *name; /* long name, without "--" */
    int key;          /* the short option letter, or a key >= 256 for a long-only option */
    const char *arg;  /* the value's name in --help ("N", "FILE"); NULL: takes no value */
    const char *help; /* for --help; '\n' separates lines */
} cli_option;

typedef struct cli_command {
    const char *name;          /* "fill" */
    const char *synopsis;      /* after "Usage: perceiver-cl fill " */
    const char *description;   /* paragraphs before the options, each line ending in '\n' */
    const cli_option *options; /* the command's own options, ended by {0} */
    unsigned common;           /* CLI_MODEL: --device, --threads, --numerics; CLI_QUIET: --quiet */
    const char *footer;        /* after the options (examples), or NULL */
} cli_command;

typedef struct cli_parser {
    const cli_command *cmd;
    int argc;
    char **argv;
    const char *arg;             /* the value of the option just returned */
    const cli_option *cur;       /* the option just returned */
    int first_operand;           /* after the last option: argv[first_operand..argc) are the operands */
    pcv_model_options *model;    /* CLI_MODEL options are applied here when set */
    const cli_option *all[CLI_MAX_OPTIONS];
    int n;
    struct option lo[CLI_MAX_OPTIONS + 1];
    char so[2 * CLI_MAX_OPTIONS + 2];
} cli_parser;

/* argv[0] is the command's name (main passes argv + 1). */
void cli_parse_begin(cli_parser *p, const cli_command *c, int argc, char **argv);
/* The next option's key; -1 after the last (operands from p->first_operand); CLI_HELP after
 * printing --help (exit 0); '?' after printing a usage error (exit 2). --quiet and the model
 * options are handled here. */
int cli_parse_next(cli_parser *p);
/* p->arg as a number in [lo, hi], or a usage error naming the option (false). */
bool cli_int(cli_parser *p, long lo, long hi, long *out);
bool cli_double(cli_parser *p, double lo, double hi, double *out);
const cli_option *cli_find_option(const cli_parser *p, int key);
void cli_print_help(const cli_command *c, FILE *f);
/* A command's options in --help order (its own, the common groups, --help); returns the count. */
int cli_all_options(const cli_command *c, const cli_option **out, int cap);
/* manpage.c: the troff man page of the n commands, and one command's options for completions */
void cli_print_man(FILE *f, const cli_command *const *cmds, const char *const *summaries, int n);
void cli_print_option_list(FILE *f, const cli_command *c);

int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_fail(const pcv_error *err);

/* ---- messages on standard error ------------------------------------------------------------ */

extern bool cli_quiet; /* --quiet: no information or progress */
/* "perceiver-cl: ..." information (nothing with --quiet) and warnings (always). */
void cli_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- progress (progress.c) -------------------------------------------------------------------
 * One line on standard error, redrawn in place, only when standard error is a terminal and
 * --quiet is not given: kernel compilation, weight loading, forward passes, batches. */

/* The line (printf-style); redrawn at most 10 times a second unless force. */
void cli_progress(bool force, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* What the command is doing (e.g. "classify 12/2000 images"): shown before the library's
 * progress (loading, forward); NULL clears it. */
void cli_progress_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Erases the line, if one is shown (before anything else is written to the terminal). */
void cli_progress_clear(void);
/* Reports from the calling thread are not shown (the worker threads of several devices). */
void cli_progress_thread_silent(bool silent);
/* The library's callback (pcv_runtime_options.progress). */
void cli_library_progress(void *user, const char *what, int64_t done, int64_t total);

/* Fails when path cannot name an output file (empty, a folder, ends with '/'); role names the
 * option ("--outputs"). */
int cli_check_output_file(const char *path, const char *role, pcv_error *err);

/* Model options with the environment's defaults: PERCEIVER_DEVICE, PERCEIVER_MAX_ALLOC. */
pcv_model_options cli_model_options(void);
/* Maps the PERCEIVER_* variables of the OpenCL runtime onto pcv_runtime_configure (main calls it
 * once before any command): PERCEIVER_CACHE_DIR, PERCEIVER_KERNEL_CACHE, PERCEIVER_CL_DIR,
 * PERCEIVER_CL_TRACE, and the tuning overrides PERCEIVER_GEMM, PERCEIVER_ATTENTION, PERCEIVER_GEMM_LAYOUT,
 * PERCEIVER_ATTN_SPLITS, PERCEIVER_CLBLAST_TUNE, PERCEIVER_CLBLAST_XGEMM, PERCEIVER_CLBLAST_MININD,
 * and PERCEIVER_TUNED=0 (no tuning profiles). */
int cli_runtime_setup(pcv_error *err);
/* Adds "key=value" to the runtime tuning string (after the environment's keys) and applies it. */
int cli_runtime_add_tuning(const char *kv, pcv_error *err);
/* The runtime tuning string so far ("" none). */
const char *cli_runtime_tuning(void);
/* Signal handlers and PERCEIVER_LIMITS (process.c; main calls it once before any command). */
int cli_process_setup(pcv_error *err);
/* Sets one limit from an option's value ("image_pixels", "300000000"). */
int cli_set_limit(const char *name, const char *value, pcv_error *err);


/* Fails with a message naming what the file is when path is recognisably not a safetensors file
 * (an image, a pickle, ...); role says what it was given as ("the input tensors"). */
int cli_check_safetensors(const char *path, const char *role, pcv_error *err);

/* ---- synthetic inputs (bench, verify) ------------------------------------------------------- */

typedef struct cli_inputs {
    pcv_io_tensor t[2];
    int n;
    int64_t tokens; /* sequence length, pixels or flow positions per item */
    void *buf[2];
    char desc[256];
} cli_inputs;

/* A deterministic input of batch items for any architecture: text models get text (mask syntax;
 * default: the Hugging Face test sentence with " missing." masked) as [CLS] text [SEP] (raw bytes
 * under the haiku profile), padded to seq (0: max_position_embeddings); image classifiers random
 * pixel_values of cli_image_size; optical flow random inputs at the config's train_size. */
int cli_make_inputs(pcv_model *m, long batch, long seq, long image_size, const char *text, cli_inputs *in,
                    pcv_error *err);
void cli_inputs_free(cli_inputs *in);
/* The input size of an image classifier: want (0: default) x want; the learned-position model
 * accepts only its config's image_size; the default for the others is its processor's output. */
int cli_image_size(pcv_model *m, long want, int *h, int *w, pcv_error *err);

/* --version: version, the git commit of the build, the backends compiled in. */
void cli_print_version(FILE *f);

/* The commands: argv[0] is the command's name. */
extern const cli_command cli_cmd_fill, cli_cmd_classify, cli_cmd_run, cli_cmd_bench, cli_cmd_init_random,
    cli_cmd_convert, cli_cmd_inspect, cli_cmd_devices, cli_cmd_verify, cli_cmd_bench_ops, cli_cmd_flow, cli_cmd_autoencode,
    cli_cmd_tune;
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
int cmd_autoencode(int argc, char **argv);
int cmd_tune(int argc, char **argv);

/* the build (generated at build time from git) */
extern const char pcv_cli_git_commit[];

#endif
