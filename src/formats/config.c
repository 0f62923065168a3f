/* config.json (Hugging Face PerceiverConfig) loading, defaults and labels (saving: config_save.c).
 *
 * Loading starts from the PerceiverConfig defaults and overrides every known key; unknown keys
 * (torch_dtype, transformers_version, stale hidden_dropout_prob, ...) are ignored. Values are
 * range-checked so that later code can size buffers from them without overflow worries;
 * divisibility rules (heads vs channels) are the model's business. */
#include "perceiver/perceiver.h"
#include "util/error.h"

#include "util/fileutil.h"
#include "util/limits.h"
#include "formats/formats.h"
#include "util/jsonutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_DIM_MAX (1 << 24)            /* upper bound for every size-like field */
#define CFG_FILE_MAX (64u * 1024 * 1024) /* config.json files are a few KB (ImageNet: ~70 KB) */

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

void pcv_config_init(pcv_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    copy_str(cfg->architecture, sizeof cfg->architecture, "");
    copy_str(cfg->model_type, sizeof cfg->model_type, "perceiver");
    cfg->num_latents = 256;
    cfg->d_latents = 1280;
    cfg->d_model = 768;
    cfg->num_blocks = 1;
    cfg->num_self_attends_per_block = 26;
    cfg->num_self_attention_heads = 8;
    cfg->num_cross_attention_heads = 8;
    cfg->qk_channels = 0;
    cfg->v_channels = 0;
    copy_str(cfg->cross_attention_shape_for_attention,
             sizeof cfg->cross_attention_shape_for_attention, "kv");
    cfg->self_attention_widening_factor = 1;
    cfg->cross_attention_widening_factor = 1;
    copy_str(cfg->hidden_act, sizeof cfg->hidden_act, "gelu");
    cfg->attention_probs_dropout_prob = 0.1;
    cfg->initializer_range = 0.02;
    cfg->layer_norm_eps = 1e-12;
    cfg->use_query_residual = true;
    cfg->vocab_size = 262;
    cfg->max_position_embeddings = 2048;
    cfg->image_size = 56;
    cfg->train_size[0] = 368;
    cfg->train_size[1] = 496;
    cfg->num_frames = 16;
    cfg->audio_samples_per_frame = 1920;
    cfg->samples_per_patch = 16;
    cfg->output_shape[0] = 1;
    cfg->output_shape[1] = 16;
    cfg->output_shape[2] = 224;
    cfg->output_shape[3] = 224;
    cfg->output_num_channels = 512;
    cfg->label_trainable_num_channels = 1024;
    cfg->num_labels = 2;
    cfg->id2label = NULL;
}

void pcv_config_free(pcv_config *cfg)
{
    if (!cfg || !cfg->id2label)
        return;
    for (int i = 0; i < cfg->num_labels; i++)
        free(cfg->id2label[i]);
    free(cfg->id2label);
    cfg->id2label = NULL;
}

/* ---- loading ------------------------------------------------------------------------------ */

typedef struct cfg_ctx {
    const char *path;
    json_t *root;
    pcv_error *err;
} cfg_ctx;

const char *pcv_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Reads an integer in [lo, hi]; integral reals such as 512.0 are accepted too. */
static int int_value(const cfg_ctx *c, const char *what, const json_t *v, int lo, int hi,
                     int *out)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x >= lo && x <= hi) {
            *out = (int)x;
            return 0;
        }
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key '%s': value %lld is out of range [%d, %d]", c->path, what,
                             (long long)x, lo, hi);
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= lo && d <= hi && d == (double)(int)d) {
            *out = (int)d;
            return 0;
        }
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key '%s': expected an integer in [%d, %d], got %g", c->path,
                             what, lo, hi, d);
    }
    return pcv_set_error(c->err, PCV_ERR_FORMAT,
                         "%s: key '%s': expected an integer in [%d, %d], got %s", c->path, what,
                         lo, hi, pcv_json_kind(v));
}

/* Positive bounded integer; an absent key keeps the default. */
static int get_dim(const cfg_ctx *c, const char *key, int *out)
{
    json_t *v = json_object_get(c->root, key);
    return v ? int_value(c, key, v, 1, CFG_DIM_MAX, out) : 0;
}

/* Like get_dim, but null means "derive it" (stored as 0). */
static int get_opt_dim(const cfg_ctx *c, const char *key, int *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v)
        return 0;
    if (json_is_null(v)) {
        *out = 0;
        return 0;
    }
    return int_value(c, key, v, 1, CFG_DIM_MAX, out);
}

static int get_dim_array(const cfg_ctx *c, const char *key, int n, int *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v)
        return 0;
    if (!json_is_array(v))
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key '%s': expected an array of %d positive integers, got %s",
                             c->path, key, n, pcv_json_kind(v));
    if (json_array_size(v) != (size_t)n)
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key '%s': expected %d elements, got %zu", c->path, key, n,
                             json_array_size(v));
    int tmp[8];
    for (int i = 0; i < n; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s[%d]", key, i);
        int rc = int_value(c, what, json_array_get(v, (size_t)i), 1, CFG_DIM_MAX, &tmp[i]);
        if (rc)
            return rc;
    }
    memcpy(out, tmp, (size_t)n * sizeof *out);
    return 0;
}

static int get_number(const cfg_ctx *c, const char *key, double lo, double hi, double *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return pcv_set_error(c->err, PCV_ERR_FORMAT, "%s: key '%s': expected a number, got %s",
                             c->path, key, pcv_json_kind(v));
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key '%s': value %g is out of range [%g, %g]", c->path, key, d,
                             lo, hi);
    *out = d;
    return 0;
}

static int get_bool(const cfg_ctx *c, const char *key, bool *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return pcv_set_error(c->err, PCV_ERR_FORMAT, "%s: key '%s': expected true or false, got %s",
                             c->path, key, pcv_json_kind(v));
    *out = json_is_true(v);
    return 0;
}

static int string_into(const cfg_ctx *c, const char *key, const json_t *v, char *buf, size_t cap)
{
    if (!json_is_string(v))
        return pcv_set_error(c->err, PCV_ERR_FORMAT, "%s: key '%s': expected a string, got %s",
                             c->path, key, pcv_json_kind(v));
    const char *s = json_string_value(v);
    if (json_string_length(v) >= cap || strlen(s) != json_string_length(v))
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key '%s': string too long (at most %zu bytes)", c->path, key,
                             cap - 1);
    copy_str(buf, cap, s);
    return 0;
}

static int get_string(const cfg_ctx *c, const char *key, char *buf, size_t cap)
{
    json_t *v = json_object_get(c->root, key);
    return v ? string_into(c, key, v, buf, cap) : 0;
}

static int load_model_type(const cfg_ctx *c)
{
    json_t *v = json_object_get(c->root, "model_type");
    if (!v)
        return 0;
    if (!json_is_string(v))
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key 'model_type': expected a string, got %s",
                             c->path, pcv_json_kind(v));
    if (strcmp(json_string_value(v), "perceiver") != 0)
        return pcv_set_error(c->err, PCV_ERR_UNSUPPORTED,
                             "%s: model_type '%s' is not supported (expected 'perceiver')",
                             c->path, json_string_value(v));
    return 0;
}

static int load_architecture(const cfg_ctx *c, pcv_config *cfg)
{
    json_t *v = json_object_get(c->root, "architectures");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key 'architectures': expected an array of strings, got %s",
                             c->path, pcv_json_kind(v));
    if (json_array_size(v) == 0)
        return 0;
    return string_into(c, "architectures[0]", json_array_get(v, 0), cfg->architecture,
                       sizeof cfg->architecture);
}

static int load_cross_shape(const cfg_ctx *c, pcv_config *cfg)
{
    const char *key = "cross_attention_shape_for_attention";
    char buf[sizeof cfg->cross_attention_shape_for_attention];
    copy_str(buf, sizeof buf, cfg->cross_attention_shape_for_attention);
    int rc = get_string(c, key, buf, sizeof buf);
    if (!rc && strcmp(buf, "kv") != 0 && strcmp(buf, "q") != 0)
        rc = pcv_set_error(c->err, PCV_ERR_FORMAT,
                           "%s: key '%s': expected \"kv\" or \"q\", got \"%s\"",
                           c->path, key, buf);
    if (!rc)
        copy_str(cfg->cross_attention_shape_for_attention,
                 sizeof cfg->cross_attention_shape_for_attention, buf);
    return rc;
}

/* Parses an id2label key: a decimal index ("0", "17"); -1 if it is not one. */
static long parse_label_index(const char *s)
{
    if (!*s || strlen(s) > 9)
        return -1;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static char *make_label(int i)
{
    char buf[32];
    snprintf(buf, sizeof buf, "LABEL_%d", i);
    return strdup(buf);
}

static int fill_labels(const cfg_ctx *c, json_t *jl, int n, char **labels)
{
    const char *k;
    json_t *v;
    json_object_foreach(jl, k, v) {
        long idx = parse_label_index(k);
        if (idx < 0 || idx >= n)
            return pcv_set_error(c->err, PCV_ERR_FORMAT,
                                 "%s: key 'id2label': key \"%s\" is not a label index in [0, %d)",
                                 c->path, k, n);
        if (labels[idx])
            return pcv_set_error(c->err, PCV_ERR_FORMAT,
                                 "%s: key 'id2label': label index %ld appears twice", c->path, idx);
        if (!json_is_string(v))
            return pcv_set_error(c->err, PCV_ERR_FORMAT,
                                 "%s: key 'id2label': value for \"%s\" is %s, expected a string",
                                 c->path, k, pcv_json_kind(v));
        labels[idx] = strdup(json_string_value(v));
        if (!labels[idx])
            return pcv_set_error(c->err, PCV_ERR_OOM, "%s: out of memory", c->path);
    }
    /* n distinct indices in [0, n) cover every slot; this only guards future relaxations */
    for (int i = 0; i < n; i++)
        if (!labels[i] && !(labels[i] = make_label(i)))
            return pcv_set_error(c->err, PCV_ERR_OOM, "%s: out of memory", c->path);
    return 0;
}

/* num_labels comes from "num_labels", else from id2label's size, else stays 2. Unlike
 * transformers (which warns and lets id2label win) a disagreement between the two is an error. */
static int load_labels(const cfg_ctx *c, pcv_config *cfg)
{
    json_t *jn = json_object_get(c->root, "num_labels");
    json_t *jl = json_object_get(c->root, "id2label");
    bool have_n = jn && !json_is_null(jn);
    if (have_n) {
        int rc = int_value(c, "num_labels", jn, 1, CFG_DIM_MAX, &cfg->num_labels);
        if (rc)
            return rc;
    }
    if (!jl || json_is_null(jl))
        return 0;
    if (!json_is_object(jl))
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key 'id2label': expected an object, got %s",
                             c->path, pcv_json_kind(jl));
    size_t n = json_object_size(jl);
    if (n == 0 || n > CFG_DIM_MAX)
        return pcv_set_error(c->err, PCV_ERR_FORMAT, "%s: key 'id2label': %zu entries (need 1..%d)",
                             c->path, n, CFG_DIM_MAX);
    if (have_n && n != (size_t)cfg->num_labels)
        return pcv_set_error(c->err, PCV_ERR_FORMAT,
                             "%s: key 'num_labels' is %d but 'id2label' has %zu entries", c->path,
                             cfg->num_labels, n);
    char **labels = calloc(n, sizeof *labels);
    if (!labels)
        return pcv_set_error(c->err, PCV_ERR_OOM, "%s: out of memory", c->path);
    int rc = fill_labels(c, jl, (int)n, labels);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            free(labels[i]);
        free(labels);
        return rc;
    }
    cfg->num_labels = (int)n;
    cfg->id2label = labels;
    return 0;
}

static int load_scalars(const cfg_ctx *c, pcv_config *cfg)
{
    struct {
        const char *key;
        int *dst;
    } dims[] = {
        {"num_latents", &cfg->num_latents},
        {"d_latents", &cfg->d_latents},
        {"d_model", &cfg->d_model},
        {"num_blocks", &cfg->num_blocks},
        {"num_self_attends_per_block", &cfg->num_self_attends_per_block},
        {"num_self_attention_heads", &cfg->num_self_attention_heads},
        {"num_cross_attention_heads", &cfg->num_cross_attention_heads},
        {"self_attention_widening_factor", &cfg->self_attention_widening_factor},
        {"cross_attention_widening_factor", &cfg->cross_attention_widening_factor},
        {"vocab_size", &cfg->vocab_size},
        {"max_position_embeddings", &cfg->max_position_embeddings},
        {"image_size", &cfg->image_size},
        {"num_frames", &cfg->num_frames},
        {"audio_samples_per_frame", &cfg->audio_samples_per_frame},
        {"samples_per_patch", &cfg->samples_per_patch},
        {"output_num_channels", &cfg->output_num_channels},
        /* older transformers spelled it without the underscore */
        {"label_trainable_num_channels", &cfg->label_trainable_num_channels},
        {"_label_trainable_num_channels", &cfg->label_trainable_num_channels},
    };
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof dims / sizeof dims[0]; i++)
        rc = get_dim(c, dims[i].key, dims[i].dst);
    if (!rc)
        rc = get_opt_dim(c, "qk_channels", &cfg->qk_channels);
    if (!rc)
        rc = get_opt_dim(c, "v_channels", &cfg->v_channels);
    if (!rc)
        rc = get_dim_array(c, "train_size", 2, cfg->train_size);
    if (!rc)
        rc = get_dim_array(c, "output_shape", 4, cfg->output_shape);
    if (!rc)
        rc = get_number(c, "attention_probs_dropout_prob", 0.0, 1.0,
                        &cfg->attention_probs_dropout_prob);
    if (!rc)
        rc = get_number(c, "initializer_range", 0.0, HUGE_VAL, &cfg->initializer_range);
    if (!rc)
        rc = get_number(c, "layer_norm_eps", 0.0, 1.0, &cfg->layer_norm_eps);
    if (!rc)
        rc = get_bool(c, "use_query_residual", &cfg->use_query_residual);
    if (!rc)
        rc = get_string(c, "hidden_act", cfg->hidden_act, sizeof cfg->hidden_act);
    return rc;
}

int pcv_config_check_limits(const pcv_config *cfg, const char *what, pcv_error *err)
{
    const pcv_limits *l = pcv_limits_now();
    if (cfg->num_blocks > l->num_blocks)
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: num_blocks = %d is over %s", what, cfg->num_blocks,
                             PCV_LIMIT_TEXT("num_blocks"));
    int64_t layers = (int64_t)cfg->num_blocks * cfg->num_self_attends_per_block;
    if (layers > l->layers)
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: num_blocks x num_self_attends_per_block = %d x %d = %lld "
                             "self-attention layers per forward pass, over %s", what, cfg->num_blocks,
                             cfg->num_self_attends_per_block, (long long)layers, PCV_LIMIT_TEXT("layers"));
    return 0;
}

static int load_root(const cfg_ctx *c, pcv_config *cfg)
{
    if (!json_is_object(c->root))
        return pcv_set_error(c->err, PCV_ERR_FORMAT, "%s: config JSON is not an object", c->path);
    int rc = load_model_type(c);
    if (!rc)
        rc = load_architecture(c, cfg);
    if (!rc)
        rc = load_scalars(c, cfg);
    if (!rc)
        rc = load_cross_shape(c, cfg);
    if (!rc)
        rc = load_labels(c, cfg);
    if (!rc)
        rc = pcv_config_check_limits(cfg, c->path, c->err);
    return rc;
}

int pcv_config_parse_text(pcv_config *cfg, const char *path, const char *text, size_t len, pcv_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root)
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: rendered config is not valid JSON: %s", path, jerr.text);
    cfg_ctx c = {path, root, err};
    int rc = load_root(&c, cfg);
    json_decref(root);
    return rc;
}

pcv_status pcv_config_load(pcv_config *cfg, const char *path, pcv_error *err)
{
    if (!cfg || !path)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_config_load: NULL argument");
    pcv_config_init(cfg);
    char *text = NULL;
    size_t len = 0;
    int rc = pcv_read_file(path, "a config file", CFG_FILE_MAX, &text, &len, err);
    if (rc)
        return rc;
    json_error_t jerr;
    /* duplicate keys are allowed (last wins), as with Python's json module */
    json_t *root = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!root)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s",
                             path, jerr.line, jerr.column, jerr.text);
    cfg_ctx c = {path, root, err};
    rc = load_root(&c, cfg);
    json_decref(root);
    if (rc) {
        pcv_config_free(cfg);
        pcv_config_init(cfg);
    }
    return rc;
}

extern const char *const pcv_imagenet1k_labels[1000];
extern const char *const pcv_kinetics700_labels[700];

const char *pcv_imagenet1k_label(int i)
{
    return i >= 0 && i < 1000 ? pcv_imagenet1k_labels[i] : NULL;
}

const char *pcv_kinetics700_label(int i)
{
    return i >= 0 && i < 700 ? pcv_kinetics700_labels[i] : NULL;
}

/* ImageNet classifiers with 1000 labels get the ImageNet-1k names, the multimodal autoencoder
 * with 700 labels the Kinetics-700 names (data/README.md), when the config has no id2label. */
pcv_status pcv_config_default_labels(pcv_config *cfg, pcv_error *err)
{
    const char *const *names = NULL;
    int n = 0;
    if (!cfg->id2label && cfg->num_labels == 1000 && !strncmp(cfg->architecture, "PerceiverForImageClassification", 31))
        names = pcv_imagenet1k_labels, n = 1000;
    else if (!cfg->id2label && cfg->num_labels == 700 && !strcmp(cfg->architecture, "PerceiverForMultimodalAutoencoding"))
        names = pcv_kinetics700_labels, n = 700;
    if (!names)
        return 0;
    char **labels = calloc((size_t)n, sizeof *labels);
    if (!labels)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = 0; i < n; i++)
        if (!(labels[i] = strdup(names[i]))) {
            while (i--)
                free(labels[i]);
            free(labels);
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        }
    cfg->id2label = labels;
    return 0;
}
