/* perceiver-cl: command-line entry point (the subcommands are cmd_*.c; shared options in options.c). */
#include "cli/cli.h"
#include "cli/dispatch.h"
#include "util/cpuload.h"

#include "perceiver/presets.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const cli_command *spec;
    const char *summary;
} command;

static const command commands[] = {
    {"fill", cmd_fill, &cli_cmd_fill, "fill masked bytes of text with a masked language model"},
    {"classify", cmd_classify, &cli_cmd_classify, "top classes of PNG/JPEG images with an image classifier"},
    {"flow", cmd_flow, &cli_cmd_flow, "optical flow of frame pairs, sequences and videos (.flo, colour PNG)"},
    {"autoencode", cmd_autoencode, &cli_cmd_autoencode,
     "reconstruct a video clip and its audio, and name its Kinetics-700 class"},
    {"run", cmd_run, &cli_cmd_run, "run a forward pass: named input tensors in, output tensors out (safetensors)"},
    {"bench", cmd_bench, &cli_cmd_bench, "time forward passes (mean, stddev, GFLOP/s, % of peak); sweeps"},
    {"init-random", cmd_init_random, &cli_cmd_init_random,
     "write a random-weight model folder (config.json + model.safetensors)"},
    {"convert", cmd_convert, &cli_cmd_convert, "DeepMind Haiku pickle (or any checkpoint) -> Hugging Face folder"},
    {"inspect", cmd_inspect, &cli_cmd_inspect, "list a checkpoint's tensors, architecture and config"},
    {"devices", cmd_devices, &cli_cmd_devices, "list the compute devices (--device N picks one)"},
    {"verify", cmd_verify, &cli_cmd_verify, "run a model on two devices (default: one and the CPU path); compare every stage"},
    {"bench-ops", cmd_bench_ops, &cli_cmd_bench_ops, "GFLOP/s of single operations at the shapes of the full-size models"},
    {"tune", cmd_tune, &cli_cmd_tune, "measure and store the fastest verified OpenCL settings for a device"},
};
enum { NCOMMANDS = sizeof commands / sizeof *commands };

static void usage(FILE *f)
{
    fprintf(f, "perceiver-cl %s: DeepMind's Perceiver IO models in C (CPU reference path and OpenCL)\n\n"
               "Usage: perceiver-cl <command> [options]\n\nCommands:\n",
            pcv_version());
    for (int i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'perceiver-cl <command> --help' (or 'perceiver-cl help <command>') for a command's\n"
               "options; 'man perceiver-cl' for all of them.\n"
               "Global: --help, --version.\n\n"
               "Exit status: 0 success, 1 failure (bad model, input or file; the message names it),\n"
               "2 usage error.\n");
}

static const command *find(const char *name)
{
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

/* How OpenMP threads wait at the end of a parallel region for the next one. libgomp spins by
 * default; when the threads share cores with other work (a busy machine, virtual CPUs that the
 * hypervisor deschedules) a spinning thread takes the core from the thread it waits for: perf on
 * the 2-vCPU project machine under load put 40% of a language-model forward's CPU time in
 * libgomp's wait loop. On an idle machine the opposite holds: a thread that sleeps at once pays a
 * wake-up at each of the hundreds of parallel regions of a forward. Measured, language model,
 * `bench -r 5` medians, interleaved on the 2-vCPU machine: idle, passive 0.885-0.932 s, spinning up
 * to 20000 times before sleeping 0.780-0.853 s, always spinning 0.776-0.867 s; beside one busy
 * process, passive 1.44-1.82 s, 20000 spins 1.98 s, 200000 spins 2.63-2.78 s.
 * So the process reads the kernel's CPU pressure (/proc/pressure/cpu "some avg10": the share of
 * the last 10 s in which a runnable task waited for a CPU; 1-2% while perceiver-cl runs alone on
 * the machine, 30% beside one busy process). Under 10% its threads spin up to 20000 times before
 * sleeping (GOMP_SPINCOUNT=20000); at 10% or more, or without pressure information, they sleep at
 * once (OMP_WAIT_POLICY=passive). libgomp reads these once, when it is loaded, so the process
 * starts itself again with the choice (and PERCEIVER_OMP_WAIT saying why, which the CPU backend
 * reports) unless the user chose (OMP_WAIT_POLICY or GOMP_SPINCOUNT set, to anything). If exec
 * fails the command runs on with libgomp's default. */
enum { SPIN_PRESSURE_MAX = 10, SPIN_COUNT = 20000 };

static void omp_wait_policy(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
        return;
    double p = pcv_cpu_pressure();
    char why[160];
    bool spin = p >= 0 && p < SPIN_PRESSURE_MAX;
    if (p < 0)
        snprintf(why, sizeof why, "sleep at once (no /proc/pressure/cpu)");
    else
        snprintf(why, sizeof why, "%s (CPU pressure %.1f%% of the last 10 s, %s %d%%)",
                 spin ? "spin, then sleep" : "sleep at once", p, spin ? "under" : "not under", SPIN_PRESSURE_MAX);
    char count[16];
    snprintf(count, sizeof count, "%d", SPIN_COUNT);
    int rc = spin ? setenv("GOMP_SPINCOUNT", count, 1) : setenv("OMP_WAIT_POLICY", "passive", 1);
    if (rc != 0 || setenv("PERCEIVER_OMP_WAIT", why, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT");
    unsetenv("OMP_WAIT_POLICY");
    unsetenv("PERCEIVER_OMP_WAIT");
}

int main(int argc, char **argv)
{
    omp_wait_policy(argv);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "help")) {
        if (argc < 3) {
            usage(stdout);
            return EXIT_OK;
        }
        /* for the man page and the shell completions (docs/perceiver-cl.1, contrib/completion) */
        if (!strcmp(argv[2], "--man")) {
            const cli_command *specs[NCOMMANDS];
            const char *summaries[NCOMMANDS];
            for (int i = 0; i < NCOMMANDS; i++)
                specs[i] = commands[i].spec, summaries[i] = commands[i].summary;
            cli_print_man(stdout, specs, summaries, NCOMMANDS);
            return EXIT_OK;
        }
        if (!strcmp(argv[2], "--commands")) {
            for (int i = 0; i < NCOMMANDS; i++)
                printf("%s\n", commands[i].name);
            return EXIT_OK;
        }
        if (!strcmp(argv[2], "--options")) {
            const command *oc = argc > 3 ? find(argv[3]) : NULL;
            if (!oc) {
                fprintf(stderr, "perceiver-cl: help --options needs a command\n");
                return EXIT_USAGE;
            }
            cli_print_option_list(stdout, oc->spec);
            return EXIT_OK;
        }
        const command *c = find(argv[2]);
        if (!c) {
            fprintf(stderr, "perceiver-cl: no command '%s'; run 'perceiver-cl --help' for the list\n", argv[2]);
            return EXIT_USAGE;
        }
        cli_print_help(c->spec, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        cli_print_version(stdout);
        return EXIT_OK;
    }
    const command *c = find(cmd);
    if (!c) {
        fprintf(stderr, "perceiver-cl: unknown command '%s'\n\n", cmd);
        usage(stderr);
        return EXIT_USAGE;
    }
    pcv_error err = {0};
    /* started by mpirun: classify, fill and flow share the work between the ranks (dispatch.h);
     * other commands run whole on every rank */
    bool sharded = !strcmp(cmd, "classify") || !strcmp(cmd, "fill") || !strcmp(cmd, "flow");
    if (sharded && cli_mpi_init(&argc, &argv, &err))
        return cli_fail(&err);
    if (cli_runtime_setup(&err) || cli_process_setup(&err)) {
        cli_fail(&err);
        cli_mpi_abort(EXIT_FAIL);
        cli_mpi_finalize();
        return EXIT_FAIL;
    }
    int rc = c->run(argc - 1, argv + 1);
    if (cli_mpi_size() > 1 && rc != EXIT_OK && !cli_dispatch_completed())
        cli_mpi_abort(rc); /* the other ranks may wait for this one */
    cli_mpi_finalize();
    return rc;
}
