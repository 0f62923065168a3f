/* perceiver-cl convert: a DeepMind Haiku pickle (or any checkpoint perceiver-cl reads) to a
 * Hugging Face folder (config.json + model.safetensors). Replaces transformers'
 * convert_perceiver_haiku_to_pytorch.py; its flags are accepted as they are. */
#include "cli/cli.h"
#include "util/error.h"

#include "model/config_path.h"
#include "perceiver/presets.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const cli_option options[] = {
    {"pickle_file", 'i', "FILE", "checkpoint to convert (file or folder); also --pickle-file"},
    {"pickle-file", 'i', "FILE", NULL},
    {"pytorch_dump_folder_path", 'o', "DIR", "output folder; also --pytorch-dump-folder-path"},
    {"pytorch-dump-folder-path", 'o', "DIR", NULL},
    {"architecture", 'a', "A", "MLM, image_classification, image_classification_fourier,\n"
                               "image_classification_conv, optical_flow,\n"
                               "multimodal_autoencoding (or an HF class name); default:\n"
                               "detected from the parameter names (it must agree with them)"},
    {"labels", 'l', "FILE", "class names for config.json id2label: a JSON object\n"
                            "{\"0\": name, ...}, a JSON list, or one name per line\n"
                            "(ImageNet-1k is bundled; Kinetics-700 is not)"},
    {"config", 'c', "FILE", "use this config.json (default: the config.json beside the\n"
                            "checkpoint, as run and inspect use it; else the built-in\n"
                            "preset sized from the tensors)"},
    {0},
};

const cli_command cli_cmd_convert = {
    "convert", "--pickle_file FILE --pytorch_dump_folder_path DIR [options]",
    "Converts a DeepMind Perceiver IO checkpoint (one of the six Haiku pickles released with the\n"
    "paper, e.g. language_perceiver_io_bytes.pickle, imagenet_conv_preprocessing.pystate) into a\n"
    "Hugging Face folder that transformers loads with from_pretrained: model.safetensors (float32,\n"
    "Hugging Face names and layouts) and config.json. The pickle is read by perceiver-cl's own safe\n"
    "reader: nothing in it is executed. Any other checkpoint perceiver-cl reads (pytorch_model.bin,\n"
    "sharded folders) can be converted the same way. The flags are those of transformers'\n"
    "convert_perceiver_haiku_to_pytorch.py.\n"
    "\n"
    "The folder is written atomically: on failure nothing is left (an existing folder is only\n"
    "touched once everything has been written, file by file).\n",
    options, CLI_QUIET, NULL,
};

/* ---- labels -------------------------------------------------------------------------------- */

static int load_labels(const char *path, char ***out, int *n, pcv_error *err)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pcv_set_error(err, PCV_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    size_t got;
    while (text && (got = fread(text + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            if (cap > (64u << 20)) {
                free(text);
                fclose(f);
                return pcv_set_error(err, PCV_ERR_INPUT, "%s: label file too large", path);
            }
            char *t = realloc(text, cap *= 2);
            if (!t)
                free(text);
            text = t;
        }
    }
    fclose(f);
    if (!text)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    text[len] = '\0';
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", text[i]))
        i++;
    int rc = 0;
    char **labels = NULL;
    int count = 0;
    if (i < len && (text[i] == '{' || text[i] == '[')) {
        json_error_t je;
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!root) {
            free(text);
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: line %d: %s", path, je.line, je.text);
        }
        json_t *obj = json_object_get(root, "id2label");
        if (!obj)
            obj = root;
        count = (int)(json_is_array(obj) ? json_array_size(obj) : json_object_size(obj));
        labels = calloc(count ? (size_t)count : 1, sizeof *labels);
        for (int k = 0; labels && k < count && !rc; k++) {
            json_t *v;
            if (json_is_array(obj)) {
                v = json_array_get(obj, (size_t)k);
            } else {
                char key[16];
                snprintf(key, sizeof key, "%d", k);
                v = json_object_get(obj, key);
            }
            if (!json_is_string(v))
                rc = pcv_set_error(err, PCV_ERR_INPUT, "%s: label %d is missing or not a string "
                                   "(keys must be \"0\"..\"%d\")", path, k, count - 1);
            else if (!(labels[k] = strdup(json_string_value(v))))
                rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        }
        json_decref(root);
    } else {
        for (size_t k = 0; k < len; k++)
            count += text[k] == '\n';
        count += len && text[len - 1] != '\n';
        labels = calloc(count ? (size_t)count : 1, sizeof *labels);
        int k = 0;
        for (char *line = text, *next; labels && line < text + len && !rc; line = next) {
            char *nl = strchr(line, '\n');
            next = nl ? nl + 1 : text + len;
            size_t l = (size_t)(next - line) - (nl != NULL);
            if (l && line[l - 1] == '\r')
                l--;
            if (!(labels[k++] = strndup(line, l)))
                rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        }
        count = k;
    }
    free(text);
    if (!labels && !rc)
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    if (!rc && count == 0)
        rc = pcv_set_error(err, PCV_ERR_INPUT, "%s: no labels", path);
    if (rc) {
        for (int k = 0; labels && k < count; k++)
            free(labels[k]);
        free(labels);
        return rc;
    }
    *out = labels;
    *n = count;
    return 0;
}

/* ---- output folder --------------------------------------------------------------------------- */

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char p[4096 + 256];
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(dir);
}

/* Moves the finished temporary folder into place: a rename when DIR does not exist (or is
 * empty), otherwise file by file (each rename is atomic). */
static int publish(const char *tmp, const char *dir, pcv_error *err)
{
    if (rename(tmp, dir) == 0)
        return 0;
    if (errno != ENOTEMPTY && errno != EEXIST)
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    static const char *const files[] = {"model.safetensors", "config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char a[4096 + 64], b[4096 + 64];
        snprintf(a, sizeof a, "%s/%s", tmp, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        if (rename(a, b) != 0)
            return pcv_set_error(err, PCV_ERR_IO, "%s: cannot write: %s", b, strerror(errno));
    }
    remove_tree(tmp);
    return 0;
}

static int write_tensors(const pcv_weights *w, const char *path, pcv_error *err)
{
    int count = pcv_weights_count(w);
    pcv_st_entry *e = calloc((size_t)(count ? count : 1), sizeof *e);
    void **bufs = calloc((size_t)(count ? count : 1), sizeof *bufs);
    int rc = 0;
    if (!e || !bufs)
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = 0; !rc && i < count; i++) {
        const pcv_st_tensor *t = pcv_weights_tensor_at(w, i);
        e[i].name = t->name;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        bool is_float = t->dtype == PCV_DT_F32 || t->dtype == PCV_DT_F16 ||
                        t->dtype == PCV_DT_BF16 || t->dtype == PCV_DT_F64;
        if (!is_float || t->dtype == PCV_DT_F32) { /* F32 and integer tensors as they are */
            e[i].dtype = t->dtype;
            e[i].data = t->data;
            continue;
        }
        /* the HF models are float32 */
        float *f = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *f);
        if (!f) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory converting '%s'", t->name);
            break;
        }
        bufs[i] = f;
        rc = pcv_st_to_f32(t, f, err);
        e[i].dtype = PCV_DT_F32;
        e[i].data = f;
    }
    if (!rc)
        rc = pcv_st_write(path, e, count, err);
    for (int i = 0; bufs && i < count; i++)
        free(bufs[i]);
    free(bufs);
    free(e);
    return rc;
}

int cmd_convert(int argc, char **argv)
{
    cli_parser p;
    const char *in = NULL, *out = NULL, *arch = NULL, *labels_path = NULL, *config_path = NULL;
    cli_parse_begin(&p, &cli_cmd_convert, argc, argv);
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'i': in = p.arg; break;
        case 'o': out = p.arg; break;
        case 'a': arch = p.arg; break;
        case 'l': labels_path = p.arg; break;
        case 'c': config_path = p.arg; break;
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand < argc)
        return cli_usage_error("convert", "unexpected argument '%s' (the checkpoint is given with -i)",
                               argv[p.first_operand]);
    if (!in || !out)
        return cli_usage_error("convert", "--pickle_file and --pytorch_dump_folder_path are required");
    if (!out[0])
        return cli_usage_error("convert", "empty output folder name");

    pcv_error err = {0};
    pcv_weights *w = NULL;
    pcv_weights_info wi = {0};
    pcv_config cfg;
    pcv_config_init(&cfg);
    char **labels = NULL;
    int nlabels = 0, rc = EXIT_FAIL;
    char tmp[4096], path[4096 + 64];
    tmp[0] = '\0';
    pcv_weights_options wo = {.architecture = arch};
    if (pcv_weights_open(in, &wo, &w, &err))
        goto done;
    pcv_weights_get_info(w, &wi);
    if (!wi.architecture[0]) {
        pcv_set_error(&err, PCV_ERR_UNSUPPORTED, "%s: cannot tell the architecture from the tensor "
                      "names; pass --architecture", in);
        goto done;
    }
    /* config: --config, else the config.json beside the checkpoint (the rule of run and inspect),
     * else the built-in preset sized from the tensors */
    char incfg[4096];
    const char *cfg_from = config_path;
    if (!cfg_from && pcv_config_path(in, incfg, sizeof incfg))
        cfg_from = incfg;
    if (cfg_from) {
        if (pcv_config_load(&cfg, cfg_from, &err))
            goto done;
        /* the config must describe these weights */
        if (cfg.architecture[0] && strcmp(cfg.architecture, wi.architecture)) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s says %s, but the tensors of %s are those of %s%s", cfg_from,
                          cfg.architecture, in, wi.architecture, arch ? " (--architecture)" : "");
            goto done;
        }
    } else {
        pcv_config_free(&cfg);
        if (pcv_config_from_weights(w, &cfg, &err))
            goto done;
    }
    if (!cfg.architecture[0])
        snprintf(cfg.architecture, sizeof cfg.architecture, "%s", wi.architecture);
    if (labels_path) {
        if (load_labels(labels_path, &labels, &nlabels, &err))
            goto done;
        const pcv_st_tensor *head = pcv_weights_find(w, "perceiver.decoder.decoder.final_layer.weight");
        if (!strcmp(wi.architecture, "PerceiverForMultimodalAutoencoding"))
            head = pcv_weights_find(w, "perceiver.output_postprocessor.modalities.label.classifier.weight");
        if (!strcmp(wi.architecture, "PerceiverForOpticalFlow") || !strcmp(wi.architecture, "PerceiverForMaskedLM"))
            head = NULL;
        if (head && head->ndim == 2 && head->shape[0] != nlabels) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s: %d labels, but the classifier has %lld classes",
                          labels_path, nlabels, (long long)head->shape[0]);
            goto done;
        }
        for (int i = 0; cfg.id2label && i < cfg.num_labels; i++)
            free(cfg.id2label[i]);
        free(cfg.id2label);
        cfg.id2label = labels;
        cfg.num_labels = nlabels;
        labels = NULL;
    } else if (pcv_config_default_labels(&cfg, &err)) { /* ImageNet models: the bundled names */
        goto done;
    }

    /* write everything into a temporary sibling folder, then move it into place */
    snprintf(tmp, sizeof tmp, "%s.partial-%ld", out, (long)getpid());
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/') /* "dir/" -> "dir.partial-N" */
        ol--;
    snprintf(tmp, sizeof tmp, "%.*s.partial-%ld", (int)ol, out, (long)getpid());
    remove_tree(tmp);
    if (mkdir(tmp, 0755) != 0) {
        pcv_set_error(&err, PCV_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        tmp[0] = '\0';
        goto done;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if (write_tensors(w, path, &err))
        goto done;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    if (pcv_config_save(&cfg, path, &err))
        goto done;
    char outdir[4096];
    snprintf(outdir, sizeof outdir, "%.*s", (int)ol, out);
    if (publish(tmp, outdir, &err))
        goto done;
    tmp[0] = '\0';
    printf("converted %s (%s, %s): %d tensors, %lld parameters%s, config from %s -> %s/model.safetensors, "
           "%s/config.json\n", in, wi.format, wi.architecture, pcv_weights_count(w), (long long)pcv_weights_numel(w),
           wi.dropped ? " (BatchNorm EMA counters dropped)" : "", cfg_from ? cfg_from : "the built-in preset",
           outdir, outdir);
    rc = EXIT_OK;
done:
    if (tmp[0])
        remove_tree(tmp);
    if (rc)
        cli_fail(&err);
    for (int i = 0; labels && i < nlabels; i++)
        free(labels[i]);
    free(labels);
    pcv_config_free(&cfg);
    pcv_weights_close(w);
    return rc;
}
