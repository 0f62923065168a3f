/* perceiver-cl: command-line entry point (the subcommands are cmd_*.c; shared options in options.c). */
#include "cli/cli.h"

#include "perceiver/presets.h"

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
    "  flow         optical flow of frame pairs, sequences and videos (.flo, colour PNG)\n"
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
    pcv_error err = {0};
    if (cli_runtime_setup(&err) || cli_process_setup(&err))
        return cli_fail(&err);
    if (!strcmp(cmd, "fill"))
        return cmd_fill(argc, argv);
    if (!strcmp(cmd, "classify"))
        return cmd_classify(argc, argv);
    if (!strcmp(cmd, "flow"))
        return cmd_flow(argc, argv);
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
