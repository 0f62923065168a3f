/* perceiver-cl classify: top-k classes of images with a Perceiver image classifier. */
#include "cli/cli.h"
#include "util/error.h"

#include "perceiver/image.h"
#include "perceiver/tasks.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const cli_option options[] = {
    {"model", 'm', "DIR", "model folder (config.json, model.safetensors,\n"
                          "preprocessor_config.json) or checkpoint"},
    {"top", 'k', "K", "classes per image (default 5)"},
    {"labels", CLI_KEY, "FILE", "class names, one per line, line i = class i"},
    {"batch", 'b', "N", "images per forward pass (default 8)"},
    {"json", CLI_KEY + 1, NULL, "one JSON object per image (docs/json.md)"},
    {"no-exif", CLI_KEY + 2, NULL, "keep the pixels as stored: do not turn photos upright by\n"
                                   "their EXIF orientation (transformers' pipeline turns them)"},
    {0},
};

const cli_command cli_cmd_classify = {
    "classify", "--model DIR [options] IMAGE...",
    "Prints the top classes of each PNG or JPEG image under a Perceiver image classifier\n"
    "(PerceiverForImageClassificationLearned, ...Fourier or ...ConvProcessing). Images are\n"
    "decoded as transformers' image-classification pipeline loads them (turned upright by their\n"
    "EXIF orientation, see --no-exif) and preprocessed like its PerceiverImageProcessor: center\n"
    "crop, Pillow-exact bicubic\n"
    "resize, rescale and normalization, with the settings of DIR/preprocessor_config.json\n"
    "(defaults: 224/256 center crop, 224x224, ImageNet mean and std). With --numerics haiku the\n"
    "ImageNet crop and resize of DeepMind's colab are used instead (OpenCV cubic).\n"
    "Labels come from config.json's id2label, or from --labels FILE (one label per line).\n",
    options, CLI_MODEL | CLI_QUIET, NULL,
};

static char **read_labels(const char *path, int *n, pcv_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        pcv_set_error(err, PCV_ERR_IO, "%s: cannot open the label file", path);
        return NULL;
    }
    char **labels = NULL, line[4096];
    int cap = 0;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (*n == cap) {
            cap = cap ? 2 * cap : 1024;
            char **nl = realloc(labels, (size_t)cap * sizeof *nl);
            if (!nl)
                break;
            labels = nl;
        }
        labels[(*n)++] = strdup(line);
    }
    fclose(f);
    return labels;
}

int cmd_classify(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *labels_path = NULL;
    bool json = false, no_exif = false;
    long topk = 5, batch = 8;
    cli_parse_begin(&p, &cli_cmd_classify, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case CLI_KEY: labels_path = p.arg; break;
        case CLI_KEY + 1: json = true; break;
        case CLI_KEY + 2: no_exif = true; break;
        case 'k':
            if (!cli_int(&p, 1, 100000, &topk))
                return EXIT_USAGE;
            break;
        case 'b':
            if (!cli_int(&p, 1, 4096, &batch))
                return EXIT_USAGE;
            break;
        default: return EXIT_USAGE;
        }
    }
    const char **paths = (const char **)argv + p.first_operand;
    int npaths = argc - p.first_operand;
    if (!model_dir || npaths == 0)
        return cli_usage_error("classify", "give --model DIR and at least one image");

    pcv_error err = {0};
    pcv_model *m = NULL;
    pcv_image_processor proc;
    char **file_labels = NULL;
    int nfile_labels = 0, rc = EXIT_FAIL;
    float *pixels = NULL;
    pcv_class_score *top = NULL;

    if (pcv_model_load(model_dir, &opt, &m, &err))
        goto done;
    pcv_arch arch = pcv_model_arch(m);
    if (arch != PCV_ARCH_IMAGE_LEARNED && arch != PCV_ARCH_IMAGE_FOURIER && arch != PCV_ARCH_IMAGE_CONV) {
        pcv_set_error(&err, PCV_ERR_UNSUPPORTED, "%s: classify needs an image classifier, this is %s", model_dir,
                      pcv_arch_name(arch));
        goto done;
    }
    if (pcv_model_image_processor(m, &proc, &err))
        goto done;
    proc.ignore_exif_orientation = no_exif;
    const pcv_config *c = pcv_model_config(m);
    if (labels_path) {
        file_labels = read_labels(labels_path, &nfile_labels, &err);
        if (!file_labels)
            goto done;
        if (nfile_labels != c->num_labels) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s: %d labels, but the model has %d classes", labels_path,
                          nfile_labels, c->num_labels);
            goto done;
        }
    }
    int k = (int)(topk < c->num_labels ? topk : c->num_labels);
    top = malloc((size_t)batch * (size_t)k * sizeof *top);
    if (!top)
        goto done;
    cli_info("%s on %s, %d image%s", pcv_arch_name(arch), pcv_model_device(m), npaths, npaths == 1 ? "" : "s");

    /* decode and preprocess every image first: a bad file stops everything before any output */
    int H = 0, W = 0;
    if (pcv_image_load_batch(&proc, paths, npaths, &pixels, &H, &W, &err))
        goto done;
    size_t per = (size_t)3 * (size_t)H * (size_t)W;
    for (int lo = 0; lo < npaths; lo += (int)batch) {
        int n = npaths - lo < batch ? npaths - lo : (int)batch;
        if (pcv_classify_pixels(m, pixels + (size_t)lo * per, n, H, W, k, top, &err))
            goto done;
        for (int i = 0; i < n; i++) {
            const char *path = paths[lo + i];
            json_t *o = json ? json_object() : NULL, *arr = json ? json_array() : NULL;
            if (!json)
                printf("%s\n", path);
            for (int r = 0; r < k; r++) {
                const pcv_class_score *t = &top[i * k + r];
                int j = t->index;
                char fallback[32];
                const char *label = file_labels ? file_labels[j] : t->label;
                if (!label) {
                    snprintf(fallback, sizeof fallback, "LABEL_%d", j);
                    label = fallback;
                }
                if (json)
                    json_array_append_new(arr, json_pack("{s:i, s:s, s:f, s:f}", "class", j, "label", label,
                                                         "probability", (double)t->probability, "logit", (double)t->logit));
                else
                    printf("  %6.2f%%  %s (%d)\n", 100.0 * t->probability, label, j);
            }
            if (json) {
                json_object_set_new(o, "image", json_string(path));
                json_object_set_new(o, "top", arr);
                char *s = json_dumps(o, JSON_COMPACT);
                if (s)
                    printf("%s\n", s);
                free(s);
                json_decref(o);
            }
        }
    }
    rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (rc && err.msg[0])
        cli_fail(&err);
    for (int i = 0; i < nfile_labels; i++)
        free(file_labels[i]);
    free(file_labels);
    free(pixels);
    free(top);
    pcv_model_free(m);
    return rc;
}
