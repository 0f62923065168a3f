/* perceiver-cl run: named tensors in, named tensors out. */
#include "cli/cli.h"
#include "util/error.h"

#include "formats/sniff.h"
#include "perceiver/image.h"

#include <stdlib.h>
#include <string.h>

static const cli_option options[] = {
    {"model", 'm', "DIR", "model folder or checkpoint file"},
    {"inputs", 'i', "FILE", "input tensors (safetensors)"},
    {"outputs", 'o', "FILE", "output tensors (safetensors), written atomically"},
    {0},
};

const cli_command cli_cmd_run = {
    "run", "--model DIR --inputs IN.safetensors --outputs OUT.safetensors [options]",
    "Runs one forward pass of the model in DIR (a Hugging Face folder: config.json +\n"
    "model.safetensors, or any checkpoint perceiver-cl reads). Input tensors are named like the\n"
    "Hugging Face forward arguments:\n"
    "  PerceiverForMaskedLM, PerceiverForSequenceClassification:\n"
    "      input_ids (or inputs)  integer [batch][seq]\n"
    "      attention_mask         optional, integer or float [batch][seq], 1 = keep, 0 = padding\n"
    "  PerceiverForImageClassification{Learned,Fourier,ConvProcessing}:\n"
    "      pixel_values (or inputs) float [batch][3][height][width], preprocessed\n"
    "  PerceiverForOpticalFlow:\n"
    "      inputs                 float [batch][2][27][H][W]: two frames of 3x3 patches,\n"
    "                             H x W = config train_size; logits are [batch][H][W][2]\n"
    "Outputs (float32): logits, last_hidden_state.\n",
    options, CLI_MODEL | CLI_QUIET, NULL,
};

int cmd_run(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *in_path = NULL, *out_path = NULL;
    cli_parse_begin(&p, &cli_cmd_run, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case 'i': in_path = p.arg; break;
        case 'o': out_path = p.arg; break;
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand < argc)
        return cli_usage_error("run", "unexpected argument '%s' (inputs and outputs are given with -i and -o)",
                               argv[p.first_operand]);
    if (!model_dir || !in_path || !out_path)
        return cli_usage_error("run", "--model, --inputs and --outputs are required");

    pcv_error err = {0};
    pcv_safetensors *in = NULL;
    pcv_model *m = NULL;
    pcv_io_tensor *ins = NULL;
    const pcv_io_tensor *outs = NULL;
    int nout = 0, rc = EXIT_FAIL;
    if (cli_check_output_file(out_path, "--outputs", &err) || cli_check_safetensors(in_path, "--inputs", &err) ||
        pcv_st_open(in_path, &in, &err))
        goto done;
    if (pcv_model_load(model_dir, &opt, &m, &err))
        goto done;
    cli_info("%s on %s", pcv_arch_name(pcv_model_arch(m)), pcv_model_device(m));
    ins = calloc((size_t)(pcv_st_count(in) ? pcv_st_count(in) : 1), sizeof *ins);
    if (!ins) {
        pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    if (pcv_io_from_safetensors(in, ins, &err))
        goto done;
    if (pcv_model_forward(m, ins, pcv_st_count(in), &outs, &nout, &err)) {
        char msg[sizeof err.msg];
        snprintf(msg, sizeof msg, "%s", err.msg);
        pcv_set_error(&err, err.code, "%s: %s", in_path, msg);
        goto done;
    }
    pcv_st_entry e[8];
    for (int i = 0; i < nout && i < 8; i++) {
        e[i].name = outs[i].name;
        e[i].dtype = outs[i].dtype;
        e[i].ndim = outs[i].ndim;
        memcpy(e[i].shape, outs[i].shape, sizeof e[i].shape);
        e[i].data = outs[i].data;
    }
    if (pcv_st_write(out_path, e, nout, &err))
        goto done;
    rc = EXIT_OK;
done:
    if (rc)
        cli_fail(&err);
    free(ins);
    pcv_model_free(m);
    pcv_st_close(in);
    return rc;
}
