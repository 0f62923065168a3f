/* perceiver-cl inspect: what a checkpoint holds (format, tensors, shapes, dtypes, parameter
 * count, detected architecture and the config a run would use). Reads metadata only. */
#include "cli/cli.h"

#include "model/config_path.h"
#include "perceiver/presets.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const cli_option options[] = {
    {"haiku-names", CLI_KEY, NULL, "for a pickle: list the Haiku names and layouts as stored,\n"
                                  "with the Hugging Face name each one becomes"},
    {"architecture", 'a', "A", "the architecture, for checkpoints whose tensor names do not\n"
                               "tell it (see 'convert --help'); it must agree with them"},
    {"summary", 's', NULL, "no tensor list"},
    {0},
};

const cli_command cli_cmd_inspect = {
    "inspect", "FILE|DIR [options]",
    "Lists a checkpoint: format, tensors (name, dtype, shape), parameter count, the architecture\n"
    "detected from the tensor names, the numerics profile a run uses by default, and the config\n"
    "(the config.json of the folder or beside the file, or for a DeepMind pickle without one the\n"
    "built-in preset sized from its tensors): the config that run and convert use.\n"
    "FILE may be model.safetensors, pytorch_model.bin (zip or legacy), a *.index.json of a\n"
    "sharded checkpoint, or a DeepMind Haiku pickle; DIR a Hugging Face or DeepMind folder.\n",
    options, 0, NULL,
};

static void shape_str(char *buf, size_t cap, const pcv_st_tensor *t)
{
    size_t l = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && l < cap; d++)
        l += (size_t)snprintf(buf + l, cap - l, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (l < cap)
        snprintf(buf + l, cap - l, "]");
}

static void print_config(const pcv_config *c)
{
    printf("  architectures                  %s\n", c->architecture[0] ? c->architecture : "(none)");
    printf("  num_latents x d_latents        %d x %d\n", c->num_latents, c->d_latents);
    printf("  d_model                        %d\n", c->d_model);
    printf("  num_blocks x self_attends      %d x %d\n", c->num_blocks, c->num_self_attends_per_block);
    printf("  heads (self / cross)           %d / %d\n", c->num_self_attention_heads, c->num_cross_attention_heads);
    printf("  qk_channels / v_channels       ");
    c->qk_channels ? printf("%d", c->qk_channels) : printf("null");
    printf(" / ");
    c->v_channels ? printf("%d\n", c->v_channels) : printf("null\n");
    printf("  widening (self / cross)        %d / %d\n", c->self_attention_widening_factor,
           c->cross_attention_widening_factor);
    if (strstr(c->architecture, "MaskedLM") || strstr(c->architecture, "Sequence"))
        printf("  vocab_size / max_position      %d / %d\n", c->vocab_size, c->max_position_embeddings);
    if (!strstr(c->architecture, "MaskedLM") && !strstr(c->architecture, "OpticalFlow"))
        printf("  num_labels                     %d%s\n", c->num_labels,
               c->id2label ? " (with id2label)" : "");
    if (strstr(c->architecture, "Learned") || strstr(c->architecture, "Multimodal"))
        printf("  image_size                     %d\n", c->image_size);
}

int cmd_inspect(int argc, char **argv)
{
    cli_parser p;
    const char *path = NULL, *arch = NULL;
    bool raw = false, summary = false;
    cli_parse_begin(&p, &cli_cmd_inspect, argc, argv);
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case CLI_KEY: raw = true; break;
        case 's': summary = true; break;
        case 'a': arch = p.arg; break;
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand + 1 < argc)
        return cli_usage_error("inspect", "only one FILE or DIR (got '%s' and '%s')", argv[p.first_operand],
                               argv[p.first_operand + 1]);
    if (p.first_operand < argc)
        path = argv[p.first_operand];
    if (!path)
        return cli_usage_error("inspect", "FILE or DIR is required");

    pcv_error err = {0};
    pcv_weights *w = NULL, *hf = NULL;
    pcv_weights_info wi = {0};
    pcv_config cfg;
    pcv_config_init(&cfg);
    int rc = EXIT_FAIL;
    pcv_weights_options wo = {.architecture = arch, .haiku_names = raw};
    if (pcv_weights_open(path, &wo, &w, &err))
        goto done;
    pcv_weights_get_info(w, &wi);
    printf("path:          %s\n", wi.path);
    if (strcmp(wi.source, wi.path))
        printf("weights file:  %s\n", wi.source);
    printf("format:        %s\n", wi.format);
    printf("architecture:  %s%s\n", wi.architecture[0] ? wi.architecture : "unknown",
           wi.architecture[0] ? (arch ? " (--architecture)" : " (detected from the tensor names)") : "");
    printf("numerics:      %s by default (--numerics hf|haiku to choose)\n",
           wi.from_haiku ? "haiku (DeepMind's original forward pass)" : "hf (Hugging Face transformers)");
    int counts[PCV_DT_BOOL + 1] = {0};
    for (int i = 0; i < pcv_weights_count(w); i++)
        if ((unsigned)pcv_weights_tensor_at(w, i)->dtype <= PCV_DT_BOOL)
            counts[pcv_weights_tensor_at(w, i)->dtype]++;
    printf("tensors:       %d", pcv_weights_count(w));
    if (wi.dropped)
        printf(" (+%d Haiku entries with no HF counterpart: BatchNorm EMA counters)", wi.dropped);
    printf("\nparameters:    %lld\ndtypes:       ", (long long)pcv_weights_numel(w));
    for (int d = 1; d <= PCV_DT_BOOL; d++)
        if (counts[d])
            printf(" %s x %d", pcv_dtype_name((pcv_dtype)d), counts[d]);
    printf("\n");

    /* the config a run (and convert) would use */
    char cfgpath[4096];
    if (pcv_config_path(path, cfgpath, sizeof cfgpath)) {
        if (pcv_config_load(&cfg, cfgpath, &err) == 0) {
            printf("config:        %s\n", cfgpath);
            if (cfg.architecture[0] && wi.architecture[0] && strcmp(cfg.architecture, wi.architecture))
                printf("               (it says %s, but the tensors are those of %s)\n", cfg.architecture,
                       wi.architecture);
            print_config(&cfg);
        } else {
            printf("config:        %s: %s\n", cfgpath, err.msg);
        }
    } else if (wi.from_haiku && !raw) {
        pcv_config_free(&cfg);
        if (pcv_config_from_weights(w, &cfg, &err) == 0) {
            printf("config:        built-in preset for %s, sized from the tensors\n", cfg.architecture);
            print_config(&cfg);
        } else {
            printf("config:        none (%s)\n", err.msg);
        }
    } else if (!wi.from_haiku) {
        printf("config:        none (no config.json beside the weights)\n");
    }

    if (!summary) {
        /* with --haiku-names, also open the renamed view to show where each entry goes */
        bool mapping = raw && wi.from_haiku && wi.architecture[0];
        if (mapping) {
            pcv_weights_options ho = {.architecture = arch};
            if (pcv_weights_open(path, &ho, &hf, &err))
                mapping = false;
        }
        printf("\n%-4s %-70s %-6s %s\n", "#", "tensor", "dtype", "shape");
        for (int i = 0; i < pcv_weights_count(w); i++) {
            const pcv_st_tensor *t = pcv_weights_tensor_at(w, i);
            char sh[128];
            shape_str(sh, sizeof sh, t);
            printf("%-4d %-70s %-6s %s\n", i, t->name, pcv_dtype_name(t->dtype), sh);
        }
        if (mapping) {
            printf("\nHugging Face names (after renaming, transposes and squeezes):\n");
            for (int i = 0; i < pcv_weights_count(hf); i++) {
                char sh[128];
                shape_str(sh, sizeof sh, pcv_weights_tensor_at(hf, i));
                printf("%-4d %-70s %-6s %s\n", i, pcv_weights_tensor_at(hf, i)->name,
                       pcv_dtype_name(pcv_weights_tensor_at(hf, i)->dtype), sh);
            }
        }
    }
    rc = EXIT_OK;
done:
    if (rc)
        cli_fail(&err);
    pcv_config_free(&cfg);
    pcv_weights_close(hf);
    pcv_weights_close(w);
    return rc;
}
