/* perceiver-cl bench: per-stage time and GFLOP/s of one forward pass. */
#include "cli/cli.h"
#include "util/error.h"

#include "util/clock.h"
#include "perceiver/presets.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const cli_option options[] = {
    {"model", 'm', "DIR", "model folder"},
    {"preset", CLI_KEY, "NAME", "built-in config (see --list-presets)"},
    {"config", CLI_KEY + 1, "FILE", "a config.json"},
    {"batch", 'b', "N", "batch size (default 1)"},
    {"seq", CLI_KEY + 2, "N", "sequence length (default: max_position_embeddings)"},
    {"image-size", CLI_KEY + 3, "N", "image height and width for image classifiers (default 224)"},
    {"repeat", 'r', "N", "timed forward passes after one warm-up (default 3)"},
    {"json", CLI_KEY + 4, NULL, "machine-readable output"},
    {"list-presets", CLI_KEY + 5, NULL, "list the built-in configs"},
    {0},
};

const cli_command cli_cmd_bench = {
    "bench", "(--model DIR | --preset NAME | --config FILE) [options]",
    "Times forward passes and prints, per stage, the time, the matrix-multiply FLOPs and\n"
    "GFLOP/s. With --preset or --config the weights are random (no files needed).\n",
    options, CLI_MODEL | CLI_QUIET, NULL,
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cmd_bench(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    opt.profile = true;
    const char *model_dir = NULL, *preset = NULL, *config = NULL;
    long batch = 1, seq = 0, repeat = 3, image_size = 224;
    bool json = false;
    cli_parse_begin(&p, &cli_cmd_bench, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case CLI_KEY: preset = p.arg; break;
        case CLI_KEY + 1: config = p.arg; break;
        case 'b':
            if (!cli_int(&p, 1, 4096, &batch))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 2:
            if (!cli_int(&p, 1, 1 << 20, &seq))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 3:
            if (!cli_int(&p, 1, 8192, &image_size))
                return EXIT_USAGE;
            break;
        case 'r':
            if (!cli_int(&p, 1, 10000, &repeat))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 4: json = true; break;
        case CLI_KEY + 5:
            for (int i = 0; pcv_preset_name(i); i++)
                printf("%-22s %s\n", pcv_preset_name(i), pcv_preset_description(i));
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand < argc)
        return cli_usage_error("bench", "unexpected argument '%s'", argv[p.first_operand]);
    if (!!model_dir + !!preset + !!config != 1)
        return cli_usage_error("bench", "give exactly one of --model, --preset, --config");

    pcv_error err = {0};
    pcv_config cfg;
    pcv_model *m = NULL;
    int64_t *ids = NULL, *mask = NULL;
    float *pixels = NULL;
    double *times = NULL;
    int rc = EXIT_FAIL;
    pcv_config_init(&cfg);
    double t0 = pcv_now();
    if (model_dir) {
        if (pcv_model_load(model_dir, &opt, &m, &err))
            goto done;
    } else {
        if (preset && pcv_config_preset(preset, &cfg, &err))
            goto done;
        if (config && pcv_config_load(&cfg, config, &err))
            goto done;
        if (pcv_model_create_random(&cfg, 1, &opt, &m, &err))
            goto done;
    }
    double load_s = pcv_now() - t0;
    cli_info("%s on %s", pcv_arch_name(pcv_model_arch(m)), pcv_model_device(m));
    const pcv_config *c = pcv_model_config(m);
    pcv_io_tensor in[2];
    int nin;
    pcv_arch arch = pcv_model_arch(m);
    if (arch == PCV_ARCH_MASKED_LM || arch == PCV_ARCH_SEQ_CLASSIFIER) {
        if (seq == 0)
            seq = c->max_position_embeddings;
        if (seq > c->max_position_embeddings) {
            pcv_set_error(&err, PCV_ERR_INPUT, "--seq %ld exceeds max_position_embeddings %d", seq,
                          c->max_position_embeddings);
            goto done;
        }
        /* input: [CLS] sentence [SEP], ' missing.' masked, [PAD] to seq */
        static const char sentence[] = "This is an incomplete sentence where some words are missing.";
        ids = calloc((size_t)(batch * seq), sizeof *ids);
        mask = calloc((size_t)(batch * seq), sizeof *mask);
        if (!ids || !mask)
            goto done;
        for (long b = 0; b < batch; b++) {
            int32_t tok[64];
            size_t n = pcv_tokenize(sentence, sizeof sentence - 1, true, tok, 64);
            for (long s = 0; s < seq && (size_t)s < n; s++) {
                ids[b * seq + s] = (s >= 52 && s < 61) ? PCV_TOK_MASK : tok[s] % c->vocab_size;
                mask[b * seq + s] = 1;
            }
        }
        in[0] = (pcv_io_tensor){.name = "input_ids", .dtype = PCV_DT_I64, .ndim = 2, .shape = {batch, seq}, .data = ids};
        in[1] = (pcv_io_tensor){.name = "attention_mask", .dtype = PCV_DT_I64, .ndim = 2, .shape = {batch, seq},
                                .data = mask};
        nin = 2;
    } else {
        if (arch == PCV_ARCH_IMAGE_LEARNED && image_size * image_size != (long)c->image_size * c->image_size)
            image_size = c->image_size; /* the trainable position table fixes the size */
        size_t n = (size_t)(batch * 3 * image_size * image_size);
        pixels = malloc(n * sizeof *pixels);
        if (!pixels)
            goto done;
        uint64_t st = 12345;
        for (size_t i = 0; i < n; i++) { /* uniform in [-2, 2): roughly normalized pixel values */
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            pixels[i] = (float)((st >> 40) * (4.0 / 16777216.0)) - 2.0f;
        }
        in[0] = (pcv_io_tensor){.name = "pixel_values", .dtype = PCV_DT_F32, .ndim = 4,
                                .shape = {batch, 3, image_size, image_size}, .data = pixels};
        nin = 1;
        seq = image_size * image_size;
    }
    times = calloc((size_t)repeat, sizeof *times);
    if (!times)
        goto done;
    pcv_stage_stats best[16];
    int nstages = 0;
    double best_t = 1e300;
    for (long r = -1; r < repeat; r++) {
        const pcv_io_tensor *outs = NULL;
        int nout = 0;
        double t = pcv_now();
        if (pcv_model_forward(m, in, nin, &outs, &nout, &err))
            goto done;
        t = pcv_now() - t;
        if (r < 0)
            continue; /* warm-up */
        times[r] = t;
        if (t < best_t) {
            best_t = t;
            nstages = pcv_model_stats(m, best, 16);
        }
    }
    pcv_memory_stats mem;
    pcv_model_memory(m, &mem);
    qsort(times, (size_t)repeat, sizeof *times, cmp_double);
    double median = times[repeat / 2];
    double total_flops = 0;
    for (int s = 0; s < nstages; s++)
        total_flops += best[s].flops;

    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "model",
                              model_dir ? model_dir : preset ? preset : config, "device", pcv_model_device(m),
                              "params", (json_int_t)pcv_model_num_params(m), "batch", (json_int_t)batch, "seq",
                              (json_int_t)seq, "repeat", (json_int_t)repeat, "load_s", load_s, "forward_median_s",
                              median, "forward_best_s", best_t, "gflop", total_flops / 1e9, "gflops",
                              total_flops / median / 1e9);
        json_t *st = json_array();
        for (int s = 0; s < nstages; s++)
            json_array_append_new(st, json_pack("{s:s, s:f, s:f, s:f}", "stage", best[s].name, "seconds",
                                                best[s].seconds, "gflop", best[s].flops / 1e9, "gflops",
                                                best[s].seconds > 0 ? best[s].flops / best[s].seconds / 1e9 : 0.0));
        json_object_set_new(o, "stages", st);
        json_object_set_new(o, "memory", json_pack("{s:I, s:I, s:I, s:I, s:I}", "activation_bytes",
                                                   (json_int_t)mem.activation_bytes, "device_bytes",
                                                   (json_int_t)mem.device_bytes, "device_peak_bytes",
                                                   (json_int_t)mem.device_peak_bytes, "plans", (json_int_t)mem.plans,
                                                   "allocs_per_forward", (json_int_t)mem.last_forward_allocs));
        char *s = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("model     %s (%s, %lld parameters)\n", model_dir ? model_dir : preset ? preset : config,
               pcv_arch_name(pcv_model_arch(m)), (long long)pcv_model_num_params(m));
        printf("device    %s\n", pcv_model_device(m));
        if (nin == 1)
            printf("input     batch %ld x 3 x %ld x %ld pixels; load %.2f s; %ld timed runs after 1 warm-up\n", batch,
                   image_size, image_size, load_s, repeat);
        else
            printf("input     batch %ld x %ld tokens; load %.2f s; %ld timed runs after 1 warm-up\n", batch, seq, load_s,
                   repeat);
        printf("speed     %.2f items/s (median)\n", (double)batch / median);
        printf("memory    activations %.1f MiB, device total %.1f MiB (peak %.1f); %lld memory plan%s for %lld "
               "forwards, %lld allocations in the last forward\n",
               mem.activation_bytes / 1048576.0, mem.device_bytes / 1048576.0, mem.device_peak_bytes / 1048576.0,
               (long long)mem.plans, mem.plans == 1 ? "" : "s", (long long)mem.forwards,
               (long long)mem.last_forward_allocs);
        printf("\n%-16s %10s %10s %10s %7s\n", "stage (best run)", "ms", "GFLOP", "GFLOP/s", "time%");
        for (int s = 0; s < nstages; s++)
            printf("%-16s %10.2f %10.3f %10.1f %6.1f%%\n", best[s].name, best[s].seconds * 1e3, best[s].flops / 1e9,
                   best[s].seconds > 0 ? best[s].flops / best[s].seconds / 1e9 : 0.0,
                   100.0 * best[s].seconds / best_t);
        printf("%-16s %10.2f %10.3f %10.1f\n", "total (best)", best_t * 1e3, total_flops / 1e9,
               total_flops / best_t / 1e9);
        printf("%-16s %10.2f %10.3f %10.1f\n", "total (median)", median * 1e3, total_flops / 1e9,
               total_flops / median / 1e9);
        printf("\nforward_median_s=%.6f gflops=%.2f\n", median, total_flops / median / 1e9);
    }
    rc = EXIT_OK;
done:
    if (rc)
        cli_fail(&err);
    free(ids);
    free(mask);
    free(pixels);
    free(times);
    pcv_model_free(m);
    pcv_config_free(&cfg);
    return rc;
}
