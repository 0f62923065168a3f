/* config.json (Hugging Face PerceiverConfig) saving: the keys sorted, indented by 2, floats in
 * Python's repr, like transformers' save_pretrained, written through a temp file + rename so that
 * an error leaves no half-written file. Loading is config.c. */
#include "perceiver/perceiver.h"
#include "util/error.h"

#include "util/fileutil.h"
#include "formats/formats.h"

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

/* Growable text buffer; any allocation failure sticks in `oom`. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
    bool need_comma;
} sbuf;

static void sb_append(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_append(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_append(b, big, (size_t)n);
    free(big);
}

/* JSON string literal, \u-escaped like Python's json.dumps; false if s is not valid UTF-8. */
static bool sb_string(sbuf *b, const char *s)
{
    json_t *js = json_string(s);
    char *text = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
    json_decref(js);
    if (!text)
        return false;
    sb_append(b, text, strlen(text));
    free(text);
    return true;
}

/* Starts `"key": ` at the given indentation, after a comma if needed. */
static void sb_key(sbuf *b, int indent, const char *key)
{
    sb_printf(b, "%s\n%*s", b->need_comma ? "," : "", indent, "");
    sb_string(b, key);
    sb_append(b, ": ", 2);
    b->need_comma = true;
}

/* Shortest text that reads back as the same double, in the style of Python's repr. */
static void format_double(char *buf, size_t cap, double v)
{
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    snprintf(buf, cap, "%.*g", prec, v);
    const char *e = strchr(buf, 'e');
    double a = fabs(v);
    if (e && a >= 1e-4 && a < 1e16) { /* Python prints these without an exponent */
        int exp10 = atoi(e + 1);
        int decimals = prec - 1 - exp10;
        snprintf(buf, cap, "%.*f", decimals > 0 ? decimals : 0, v);
    }
    if (!strpbrk(buf, ".e"))
        snprintf(buf + strlen(buf), cap - strlen(buf), ".0");
}

static void put_int(sbuf *b, const char *key, int v)
{
    sb_key(b, 2, key);
    sb_printf(b, "%d", v);
}

static void put_null_or_int(sbuf *b, const char *key, int v)
{
    sb_key(b, 2, key);
    if (v > 0)
        sb_printf(b, "%d", v);
    else
        sb_append(b, "null", 4);
}

static void put_double(sbuf *b, const char *key, double v)
{
    char num[64];
    format_double(num, sizeof num, v);
    sb_key(b, 2, key);
    sb_append(b, num, strlen(num));
}

static void put_string(sbuf *b, const char *key, const char *v)
{
    sb_key(b, 2, key);
    sb_string(b, v);
}

static void put_int_array(sbuf *b, const char *key, const int *v, int n)
{
    sb_key(b, 2, key);
    sb_append(b, "[", 1);
    for (int i = 0; i < n; i++)
        sb_printf(b, "%s\n    %d", i ? "," : "", v[i]);
    sb_append(b, "\n  ]", 4);
}

static void put_id2label(sbuf *b, const pcv_config *cfg)
{
    sb_key(b, 2, "id2label");
    sb_append(b, "{", 1);
    b->need_comma = false;
    for (int i = 0; i < cfg->num_labels; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        sb_key(b, 4, k);
        sb_string(b, cfg->id2label[i]);
    }
    sb_append(b, "\n  }", 4);
    b->need_comma = true;
}

typedef struct label_ref {
    const char *label;
    int index;
} label_ref;

static int cmp_label_ref(const void *a, const void *b)
{
    const label_ref *x = a, *y = b;
    int c = strcmp(x->label, y->label);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* label2id sorted by label; for repeated labels the last index wins, as in Python's dict. */
static bool put_label2id(sbuf *b, const pcv_config *cfg)
{
    int n = cfg->num_labels;
    label_ref *order = malloc((size_t)n * sizeof *order);
    if (!order)
        return false;
    for (int i = 0; i < n; i++)
        order[i] = (label_ref){cfg->id2label[i], i};
    qsort(order, (size_t)n, sizeof *order, cmp_label_ref);
    sb_key(b, 2, "label2id");
    sb_append(b, "{", 1);
    b->need_comma = false;
    for (int j = 0; j < n; j++) {
        if (j + 1 < n && strcmp(order[j].label, order[j + 1].label) == 0)
            continue;
        sb_key(b, 4, order[j].label);
        sb_printf(b, "%d", order[j].index);
    }
    sb_append(b, "\n  }", 4);
    b->need_comma = true;
    free(order);
    return true;
}

static bool str_ok(const char *s, size_t cap)
{
    if (memchr(s, '\0', cap) == NULL)
        return false;
    json_t *j = json_string(s); /* NULL for invalid UTF-8 */
    json_decref(j);
    return j != NULL;
}

static int check_savable(const pcv_config *cfg, const char *path, pcv_error *err)
{
    if (!str_ok(cfg->architecture, sizeof cfg->architecture) ||
        !str_ok(cfg->model_type, sizeof cfg->model_type) ||
        !str_ok(cfg->hidden_act, sizeof cfg->hidden_act) ||
        !str_ok(cfg->cross_attention_shape_for_attention,
                sizeof cfg->cross_attention_shape_for_attention))
        return pcv_set_error(err, PCV_ERR_INPUT,
                             "%s: config has an unterminated or non-UTF-8 string",
                             path);
    if (!isfinite(cfg->attention_probs_dropout_prob) || !isfinite(cfg->initializer_range) ||
        !isfinite(cfg->layer_norm_eps))
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: config has a non-finite number", path);
    if (cfg->id2label) {
        if (cfg->num_labels <= 0)
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: id2label with num_labels %d", path,
                                 cfg->num_labels);
        for (int i = 0; i < cfg->num_labels; i++) {
            json_t *j = cfg->id2label[i] ? json_string(cfg->id2label[i]) : NULL;
            json_decref(j);
            if (!j)
                return pcv_set_error(err, PCV_ERR_INPUT,
                                     "%s: label %d is NULL or not valid UTF-8", path, i);
        }
    }
    return 0;
}

/* Keys in sorted order, as transformers writes them (json.dumps(sort_keys=True, indent=2)). */
static bool render_config(sbuf *b, const pcv_config *cfg)
{
    sb_append(b, "{", 1);
    put_int(b, "_label_trainable_num_channels", cfg->label_trainable_num_channels);
    if (cfg->architecture[0]) {
        sb_key(b, 2, "architectures");
        sb_append(b, "[\n    ", 6);
        sb_string(b, cfg->architecture);
        sb_append(b, "\n  ]", 4);
    }
    put_double(b, "attention_probs_dropout_prob", cfg->attention_probs_dropout_prob);
    put_int(b, "audio_samples_per_frame", cfg->audio_samples_per_frame);
    put_string(b, "cross_attention_shape_for_attention", cfg->cross_attention_shape_for_attention);
    put_int(b, "cross_attention_widening_factor", cfg->cross_attention_widening_factor);
    put_int(b, "d_latents", cfg->d_latents);
    put_int(b, "d_model", cfg->d_model);
    put_string(b, "hidden_act", cfg->hidden_act);
    if (cfg->id2label)
        put_id2label(b, cfg);
    put_int(b, "image_size", cfg->image_size);
    put_double(b, "initializer_range", cfg->initializer_range);
    if (cfg->id2label && !put_label2id(b, cfg))
        return false;
    put_double(b, "layer_norm_eps", cfg->layer_norm_eps);
    put_int(b, "max_position_embeddings", cfg->max_position_embeddings);
    put_string(b, "model_type", "perceiver");
    put_int(b, "num_blocks", cfg->num_blocks);
    put_int(b, "num_cross_attention_heads", cfg->num_cross_attention_heads);
    put_int(b, "num_frames", cfg->num_frames);
    if (!cfg->id2label) /* otherwise implied by id2label, as in transformers */
        put_int(b, "num_labels", cfg->num_labels);
    put_int(b, "num_latents", cfg->num_latents);
    put_int(b, "num_self_attends_per_block", cfg->num_self_attends_per_block);
    put_int(b, "num_self_attention_heads", cfg->num_self_attention_heads);
    put_int(b, "output_num_channels", cfg->output_num_channels);
    put_int_array(b, "output_shape", cfg->output_shape, 4);
    put_null_or_int(b, "qk_channels", cfg->qk_channels);
    put_int(b, "samples_per_patch", cfg->samples_per_patch);
    put_int(b, "self_attention_widening_factor", cfg->self_attention_widening_factor);
    put_int_array(b, "train_size", cfg->train_size, 2);
    sb_key(b, 2, "use_query_residual");
    sb_printf(b, "%s", cfg->use_query_residual ? "true" : "false");
    put_null_or_int(b, "v_channels", cfg->v_channels);
    put_int(b, "vocab_size", cfg->vocab_size);
    sb_append(b, "\n}\n", 3);
    return !b->oom;
}

struct buf_ctx {
    const char *data;
    size_t len;
};

static int write_buf_cb(int fd, void *p)
{
    struct buf_ctx *c = p;
    return pcv_write_all(fd, c->data, c->len);
}

/* Refuses to write a file that pcv_config_load would reject (out-of-range sizes, ...). */
static int verify_loadable(const char *path, const char *text, size_t len, pcv_error *err)
{
    pcv_config scratch;
    pcv_config_init(&scratch);
    pcv_error inner = {0};
    int rc = pcv_config_parse_text(&scratch, path, text, len, &inner);
    pcv_config_free(&scratch);
    if (rc)
        return pcv_set_error(err, PCV_ERR_INPUT, "refusing to save an invalid config: %s", inner.msg);
    return 0;
}

pcv_status pcv_config_save(const pcv_config *cfg, const char *path, pcv_error *err)
{
    if (!cfg || !path || !path[0])
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_config_save: invalid arguments");
    int rc = check_savable(cfg, path, err);
    if (rc)
        return rc;
    sbuf b = {0};
    if (!render_config(&b, cfg)) {
        free(b.p);
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", path);
    }
    rc = verify_loadable(path, b.p, b.len, err);
    if (!rc) {
        struct buf_ctx ctx = {b.p, b.len};
        rc = pcv_write_atomic(path, write_buf_cb, &ctx, err);
    }
    free(b.p);
    return rc;
}

