/* config.json: defaults, loading (minimal, full, malformed) and save -> load round trips. */
#include "perceiver/perceiver.h"
#include "testutil.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[1024]; /* private scratch directory under tu_tmpdir() */

static const char *tmp_path(const char *name)
{
    static char buf[4][1200];
    static int slot;
    char *p = buf[slot++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", g_dir, name);
    return p;
}

static const char *write_text(const char *name, const char *text)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
    return path;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int count_tmp_files(void)
{
    int n = 0;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp."))
            n++;
    if (d)
        closedir(d);
    return n;
}

/* Field-by-field equality, reporting the first difference. */
static int cfg_equal(const pcv_config *a, const pcv_config *b, const char *what)
{
#define SAME_INT(f)                                                                          \
    if (a->f != b->f) {                                                                      \
        fprintf(stderr, "%s: %s differs: %d vs %d\n", what, #f, (int)a->f, (int)b->f);       \
        return 0;                                                                            \
    }
#define SAME_DBL(f)                                                                          \
    if (a->f != b->f) {                                                                      \
        fprintf(stderr, "%s: %s differs: %.17g vs %.17g\n", what, #f, a->f, b->f);           \
        return 0;                                                                            \
    }
#define SAME_STR(f)                                                                          \
    if (strcmp(a->f, b->f) != 0) {                                                           \
        fprintf(stderr, "%s: %s differs: '%s' vs '%s'\n", what, #f, a->f, b->f);             \
        return 0;                                                                            \
    }
    SAME_STR(architecture) SAME_STR(model_type) SAME_INT(num_latents) SAME_INT(d_latents)
    SAME_INT(d_model) SAME_INT(num_blocks) SAME_INT(num_self_attends_per_block)
    SAME_INT(num_self_attention_heads) SAME_INT(num_cross_attention_heads) SAME_INT(qk_channels)
    SAME_INT(v_channels) SAME_STR(cross_attention_shape_for_attention)
    SAME_INT(self_attention_widening_factor) SAME_INT(cross_attention_widening_factor)
    SAME_STR(hidden_act) SAME_DBL(attention_probs_dropout_prob) SAME_DBL(initializer_range)
    SAME_DBL(layer_norm_eps) SAME_INT(use_query_residual) SAME_INT(vocab_size)
    SAME_INT(max_position_embeddings) SAME_INT(image_size) SAME_INT(train_size[0])
    SAME_INT(train_size[1]) SAME_INT(num_frames) SAME_INT(audio_samples_per_frame)
    SAME_INT(samples_per_patch) SAME_INT(output_shape[0]) SAME_INT(output_shape[1])
    SAME_INT(output_shape[2]) SAME_INT(output_shape[3]) SAME_INT(output_num_channels)
    SAME_INT(label_trainable_num_channels) SAME_INT(num_labels)
    if ((a->id2label == NULL) != (b->id2label == NULL)) {
        fprintf(stderr, "%s: id2label presence differs\n", what);
        return 0;
    }
    for (int i = 0; a->id2label && i < a->num_labels; i++)
        SAME_STR(id2label[i])
    return 1;
#undef SAME_INT
#undef SAME_DBL
#undef SAME_STR
}

static void test_defaults(void)
{
    pcv_config c;
    pcv_config_init(&c);
    CHECK(c.num_latents == 256 && c.d_latents == 1280 && c.d_model == 768, "sizes");
    CHECK(c.num_blocks == 1 && c.num_self_attends_per_block == 26, "blocks");
    CHECK(c.num_self_attention_heads == 8 && c.num_cross_attention_heads == 8, "heads");
    CHECK(c.qk_channels == 0 && c.v_channels == 0, "qk/v null");
    CHECK(strcmp(c.cross_attention_shape_for_attention, "kv") == 0, "kv");
    CHECK(c.self_attention_widening_factor == 1 && c.cross_attention_widening_factor == 1, "wf");
    CHECK(strcmp(c.hidden_act, "gelu") == 0, "gelu");
    CHECK(c.attention_probs_dropout_prob == 0.1 && c.initializer_range == 0.02 &&
              c.layer_norm_eps == 1e-12, "doubles");
    CHECK(c.use_query_residual, "use_query_residual");
    CHECK(c.vocab_size == 262 && c.max_position_embeddings == 2048 && c.image_size == 56, "text");
    CHECK(c.train_size[0] == 368 && c.train_size[1] == 496, "train_size");
    CHECK(c.num_frames == 16 && c.audio_samples_per_frame == 1920 && c.samples_per_patch == 16,
          "audio");
    CHECK(c.output_shape[0] == 1 && c.output_shape[1] == 16 && c.output_shape[2] == 224 &&
              c.output_shape[3] == 224, "output_shape");
    CHECK(c.output_num_channels == 512 && c.label_trainable_num_channels == 1024, "channels");
    CHECK(c.num_labels == 2 && c.id2label == NULL, "labels");
    CHECK(c.architecture[0] == '\0' && strcmp(c.model_type, "perceiver") == 0, "names");
    pcv_config_free(&c);
}

static void test_minimal(void)
{
    pcv_config def, c;
    pcv_error err = {0};
    pcv_config_init(&def);
    const char *path = write_text("minimal.json", "{}\n");
    int rc = pcv_config_load(&c, path, &err);
    CHECK(rc == 0, "load {}: %s", err.msg);
    CHECK(rc == 0 && cfg_equal(&c, &def, "minimal"), "{} != defaults");
    pcv_config_free(&c);
}

static const char *k_full_json =
    "{\n"
    "  \"architectures\": [\"PerceiverForImageClassificationLearned\", \"Other\"],\n"
    "  \"model_type\": \"perceiver\",\n"
    "  \"num_latents\": 512, \"d_latents\": 1024, \"d_model\": 512.0,\n"
    "  \"num_blocks\": 8, \"num_self_attends_per_block\": 6,\n"
    "  \"num_self_attention_heads\": 8, \"num_cross_attention_heads\": 1,\n"
    "  \"qk_channels\": null, \"v_channels\": 256,\n"
    "  \"cross_attention_shape_for_attention\": \"q\",\n"
    "  \"self_attention_widening_factor\": 2, \"cross_attention_widening_factor\": 4,\n"
    "  \"hidden_act\": \"gelu_new\", \"attention_probs_dropout_prob\": 0,\n"
    "  \"initializer_range\": 0.5, \"layer_norm_eps\": 1e-5, \"use_query_residual\": false,\n"
    "  \"vocab_size\": 300, \"max_position_embeddings\": 4096, \"image_size\": 224,\n"
    "  \"train_size\": [10, 20], \"num_frames\": 8, \"audio_samples_per_frame\": 48,\n"
    "  \"samples_per_patch\": 4, \"output_shape\": [2, 3, 4, 5], \"output_num_channels\": 7,\n"
    "  \"_label_trainable_num_channels\": 9,\n"
    "  \"id2label\": {\"2\": \"caf\\u00e9\", \"0\": \"tench\", \"1\": \"goldfish\"},\n"
    "  \"label2id\": {\"tench\": 0, \"goldfish\": 1, \"caf\\u00e9\": 2},\n"
    "  \"torch_dtype\": \"float32\", \"transformers_version\": \"4.21.3\",\n"
    "  \"some_unknown_key\": {\"nested\": [1, 2, 3]}, \"seq_len\": 2048\n"
    "}\n";

static void test_full(void)
{
    pcv_config c;
    pcv_error err = {0};
    const char *path = write_text("full.json", k_full_json);
    int rc = pcv_config_load(&c, path, &err);
    CHECK(rc == 0, "load full: %s", err.msg);
    if (rc)
        return;
    CHECK(strcmp(c.architecture, "PerceiverForImageClassificationLearned") == 0, "arch %s",
          c.architecture);
    CHECK(c.num_latents == 512 && c.d_latents == 1024 && c.d_model == 512, "sizes");
    CHECK(c.num_blocks == 8 && c.num_self_attends_per_block == 6, "blocks");
    CHECK(c.num_self_attention_heads == 8 && c.num_cross_attention_heads == 1, "heads");
    CHECK(c.qk_channels == 0 && c.v_channels == 256, "qk %d v %d", c.qk_channels, c.v_channels);
    CHECK(strcmp(c.cross_attention_shape_for_attention, "q") == 0, "q shape");
    CHECK(c.self_attention_widening_factor == 2 && c.cross_attention_widening_factor == 4, "wf");
    CHECK(strcmp(c.hidden_act, "gelu_new") == 0, "act");
    CHECK(c.attention_probs_dropout_prob == 0.0 && c.initializer_range == 0.5 &&
              c.layer_norm_eps == 1e-5, "doubles");
    CHECK(!c.use_query_residual, "use_query_residual");
    CHECK(c.vocab_size == 300 && c.max_position_embeddings == 4096 && c.image_size == 224, "misc");
    CHECK(c.train_size[0] == 10 && c.train_size[1] == 20, "train_size");
    CHECK(c.num_frames == 8 && c.audio_samples_per_frame == 48 && c.samples_per_patch == 4, "av");
    CHECK(c.output_shape[0] == 2 && c.output_shape[3] == 5, "output_shape");
    CHECK(c.output_num_channels == 7 && c.label_trainable_num_channels == 9, "channels");
    CHECK(c.num_labels == 3 && c.id2label, "num_labels %d", c.num_labels);
    if (c.id2label)
        CHECK(strcmp(c.id2label[0], "tench") == 0 && strcmp(c.id2label[1], "goldfish") == 0 &&
                  strcmp(c.id2label[2], "caf\xc3\xa9") == 0, "labels");
    pcv_config_free(&c);
    CHECK(c.id2label == NULL, "free resets id2label");

    /* num_labels alone; and consistent num_labels + id2label */
    path = write_text("num_labels.json", "{\"num_labels\": 5}");
    rc = pcv_config_load(&c, path, &err);
    CHECK(rc == 0 && c.num_labels == 5 && c.id2label == NULL, "num_labels only: %s", err.msg);
    pcv_config_free(&c);
    path = write_text("both.json",
                      "{\"num_labels\": 2, \"id2label\": {\"0\": \"a\", \"1\": \"b\"}}");
    rc = pcv_config_load(&c, path, &err);
    CHECK(rc == 0 && c.num_labels == 2 && c.id2label, "consistent labels: %s", err.msg);
    pcv_config_free(&c);
}

/* Loads `text`, expects `code` and a message naming the file and containing `needle`. */
static void expect_bad(const char *name, const char *text, pcv_status code, const char *needle)
{
    const char *path = text ? write_text(name, text) : tmp_path(name);
    pcv_config c, def;
    pcv_error err = {0};
    pcv_config_init(&def);
    int rc = pcv_config_load(&c, path, &err);
    CHECK(rc == (int)code && err.code == code, "%s: expected %s, got rc=%d (%s)", name,
          pcv_status_name(code), rc, err.msg);
    CHECK(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", name, err.msg);
    if (needle)
        CHECK(strstr(err.msg, needle) != NULL, "%s: message lacks '%s': %s", name, needle, err.msg);
    CHECK(cfg_equal(&c, &def, name), "%s: failed load should leave defaults", name);
    if (getenv("PCV_TEST_VERBOSE"))
        printf("%-22s %s\n", name, err.msg);
    pcv_config_free(&c);
}

static void test_errors(void)
{
    expect_bad("missing.json", NULL, PCV_ERR_IO, "cannot open");
    mkdir(tmp_path("dir.json"), 0755);
    expect_bad("dir.json", NULL, PCV_ERR_IO, "directory");
    rmdir(tmp_path("dir.json"));
    expect_bad("invalid.json", "{\n  \"d_model\": 12,\n  oops\n}\n", PCV_ERR_FORMAT, "line 3");
    expect_bad("empty.json", "", PCV_ERR_FORMAT, "invalid JSON");
    expect_bad("array.json", "[1, 2]", PCV_ERR_FORMAT, "not an object");
    expect_bad("d_model_str.json", "{\"d_model\": \"abc\"}", PCV_ERR_FORMAT, "d_model");
    expect_bad("d_model_real.json", "{\"d_model\": 3.5}", PCV_ERR_FORMAT, "d_model");
    expect_bad("d_model_bool.json", "{\"d_model\": true}", PCV_ERR_FORMAT, "d_model");
    expect_bad("d_model_null.json", "{\"d_model\": null}", PCV_ERR_FORMAT, "d_model");
    expect_bad("neg_latents.json", "{\"num_latents\": -4}", PCV_ERR_FORMAT, "num_latents");
    expect_bad("zero_heads.json", "{\"num_self_attention_heads\": 0}", PCV_ERR_FORMAT,
               "num_self_attention_heads");
    expect_bad("huge_dim.json", "{\"d_latents\": 4294967296}", PCV_ERR_FORMAT, "d_latents");
    expect_bad("zero_qk.json", "{\"qk_channels\": 0}", PCV_ERR_FORMAT, "qk_channels");
    expect_bad("bert.json", "{\"model_type\": \"bert\"}", PCV_ERR_UNSUPPORTED, "bert");
    expect_bad("labels_mismatch.json",
               "{\"num_labels\": 3, \"id2label\": {\"0\": \"a\", \"1\": \"b\"}}", PCV_ERR_FORMAT,
               "id2label");
    expect_bad("labels_range.json", "{\"id2label\": {\"0\": \"a\", \"5\": \"b\"}}",
               PCV_ERR_FORMAT, "\"5\"");
    expect_bad("labels_twice.json", "{\"id2label\": {\"1\": \"a\", \"01\": \"b\"}}",
               PCV_ERR_FORMAT, "twice");
    expect_bad("labels_key.json", "{\"id2label\": {\"x\": \"a\"}}", PCV_ERR_FORMAT, "\"x\"");
    expect_bad("labels_value.json", "{\"id2label\": {\"0\": 7}}", PCV_ERR_FORMAT, "id2label");
    expect_bad("labels_type.json", "{\"id2label\": [\"a\"]}", PCV_ERR_FORMAT, "id2label");
    expect_bad("train_size.json", "{\"train_size\": [1, 2, 3]}", PCV_ERR_FORMAT, "train_size");
    expect_bad("output_shape.json", "{\"output_shape\": [1, 16, -224, 224]}", PCV_ERR_FORMAT,
               "output_shape[2]");
    expect_bad("cross_shape.json", "{\"cross_attention_shape_for_attention\": \"x\"}",
               PCV_ERR_FORMAT, "cross_attention_shape_for_attention");
    expect_bad("arch.json", "{\"architectures\": \"PerceiverForMaskedLM\"}", PCV_ERR_FORMAT,
               "architectures");
    expect_bad("act_long.json",
               "{\"hidden_act\": \"a_very_long_activation_function_name_indeed\"}",
               PCV_ERR_FORMAT, "hidden_act");
    expect_bad("dropout.json", "{\"attention_probs_dropout_prob\": \"0.1\"}", PCV_ERR_FORMAT,
               "attention_probs_dropout_prob");
    expect_bad("residual.json", "{\"use_query_residual\": 1}", PCV_ERR_FORMAT,
               "use_query_residual");
}

static void fill_custom(pcv_config *c)
{
    pcv_config_init(c);
    snprintf(c->architecture, sizeof c->architecture, "PerceiverForMultimodalAutoencoding");
    c->num_latents = 784;
    c->d_latents = 512;
    c->d_model = 704;
    c->num_self_attends_per_block = 8;
    c->num_cross_attention_heads = 1;
    c->qk_channels = 64;
    c->v_channels = 0;
    snprintf(c->cross_attention_shape_for_attention,
             sizeof c->cross_attention_shape_for_attention, "q");
    c->attention_probs_dropout_prob = 0.123456789012345;
    c->initializer_range = 1e20;
    c->layer_norm_eps = 1e-5;
    c->use_query_residual = false;
    c->output_shape[1] = 3;
    c->num_labels = 4;
    c->id2label = calloc(4, sizeof *c->id2label);
    c->id2label[0] = strdup("quote \" and \\ backslash");
    c->id2label[1] = strdup("caf\xc3\xa9 \xe6\x97\xa5");
    c->id2label[2] = strdup("dup");
    c->id2label[3] = strdup("dup");
}

static void test_round_trip(void)
{
    pcv_error err = {0};
    pcv_config a, b;

    /* defaults: no id2label, so num_labels is written explicitly */
    pcv_config_init(&a);
    const char *path = tmp_path("saved_default.json");
    int rc = pcv_config_save(&a, path, &err);
    CHECK(rc == 0, "save defaults: %s", err.msg);
    const char *text = read_text(path);
    CHECK(text && strstr(text, "\"layer_norm_eps\": 1e-12"), "eps text: %s",
          text ? text : "(unreadable)");
    CHECK(text && strstr(text, "\"attention_probs_dropout_prob\": 0.1,"), "dropout text");
    CHECK(text && strstr(text, "\"initializer_range\": 0.02,"), "init text");
    CHECK(text && strstr(text, "\"_label_trainable_num_channels\": 1024"), "label channels");
    CHECK(text && strstr(text, "\"qk_channels\": null"), "null qk");
    CHECK(text && strstr(text, "\"model_type\": \"perceiver\""), "model_type");
    CHECK(text && strstr(text, "\"num_labels\": 2"), "num_labels");
    CHECK(text && !strstr(text, "architectures"), "architectures written though empty");
    rc = pcv_config_load(&b, path, &err);
    CHECK(rc == 0 && cfg_equal(&a, &b, "defaults round trip"), "defaults: %s", err.msg);
    pcv_config_free(&b);

    /* custom values incl. id2label with escapes, UTF-8 and a repeated label */
    fill_custom(&a);
    path = tmp_path("saved_custom.json");
    rc = pcv_config_save(&a, path, &err);
    CHECK(rc == 0, "save custom: %s", err.msg);
    rc = pcv_config_load(&b, path, &err);
    CHECK(rc == 0 && cfg_equal(&a, &b, "custom round trip"), "custom: %s", err.msg);
    pcv_config_free(&b);

    /* the file is valid JSON that transformers can read: architectures list, label2id */
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    CHECK(root != NULL, "saved config is not valid JSON: %s", jerr.text);
    if (root) {
        json_t *arch = json_object_get(root, "architectures");
        CHECK(json_is_array(arch) && json_array_size(arch) == 1 &&
                  strcmp(json_string_value(json_array_get(arch, 0)),
                         "PerceiverForMultimodalAutoencoding") == 0, "architectures");
        json_t *l2i = json_object_get(root, "label2id");
        CHECK(json_is_object(l2i) && json_object_size(l2i) == 3, "label2id size");
        CHECK(json_integer_value(json_object_get(l2i, "dup")) == 3, "label2id last wins");
        CHECK(json_integer_value(json_object_get(l2i, "quote \" and \\ backslash")) == 0,
              "label2id escapes");
        CHECK(json_is_null(json_object_get(root, "v_channels")), "v_channels null");
        CHECK(json_object_get(root, "num_labels") == NULL, "num_labels written with id2label");
        json_decref(root);
    }
    text = read_text(path);
    CHECK(text && strstr(text, "\"initializer_range\": 1e+20"), "1e20 text");
    CHECK(text && strstr(text, "\"layer_norm_eps\": 1e-05"), "1e-5 text");
    pcv_config_free(&a);

    /* a config that would not load back is refused, and nothing is written */
    pcv_config_init(&a);
    a.d_model = 0;
    path = tmp_path("invalid_save.json");
    rc = pcv_config_save(&a, path, &err);
    CHECK(rc == PCV_ERR_INPUT && strstr(err.msg, "d_model"), "save d_model=0: rc=%d %s", rc,
          err.msg);
    CHECK(access(path, F_OK) != 0, "invalid config written");
    a.d_model = 768;
    a.layer_norm_eps = NAN;
    rc = pcv_config_save(&a, path, &err);
    CHECK(rc == PCV_ERR_INPUT && access(path, F_OK) != 0, "NaN saved: rc=%d", rc);

    /* save into a missing directory: error, nothing left behind */
    pcv_config_init(&a);
    const char *bad = tmp_path("no/such/dir/config.json");
    rc = pcv_config_save(&a, bad, &err);
    CHECK(rc == PCV_ERR_IO && strstr(err.msg, bad), "save to missing dir: rc=%d %s", rc, err.msg);
    CHECK(access(bad, F_OK) != 0, "file created");
    CHECK(count_tmp_files() == 0, "temporary files left behind");
}

/* Issue 12 #10: layer counts are capped (1e6 blocks ran for hours), and the limits parser. */
static void test_limits(void)
{
    pcv_config c;
    pcv_error err = {0};
    const char *p = write_text("blocks.json", "{\"num_blocks\": 1000000}");
    CHECK(pcv_config_load(&c, p, &err) == PCV_ERR_INPUT && strstr(err.msg, "blocks.json: num_blocks = 1000000 is over "
                                                                    "the limit num_blocks = 64 (raise it with "
                                                                    "PERCEIVER_LIMITS=num_blocks=N"),
          "1e6 blocks: %s", err.msg);
    p = write_text("layers.json", "{\"num_blocks\": 64, \"num_self_attends_per_block\": 26}");
    CHECK(pcv_config_load(&c, p, &err) == PCV_ERR_INPUT && strstr(err.msg, "64 x 26 = 1664") &&
              strstr(err.msg, "the limit layers = 1024"),
          "1664 layers: %s", err.msg);
    p = write_text("ok.json", "{\"num_blocks\": 8, \"num_self_attends_per_block\": 6}");
    CHECK(pcv_config_load(&c, p, &err) == 0, "the ImageNet models' 8 x 6: %s", err.msg);
    pcv_config_free(&c);

    pcv_limits l, saved;
    pcv_get_limits(&saved);
    l = saved;
    CHECK(pcv_parse_limits("batch=5,forward_bytes=2G,num_blocks=1000000,text_bytes=64k", &l, &err) == 0, "%s",
          err.msg);
    CHECK(l.batch == 5 && l.forward_bytes == (int64_t)2 << 30 && l.num_blocks == 1000000 && l.text_bytes == 65536 &&
              l.image_pixels == saved.image_pixels,
          "parsed limits");
    CHECK(pcv_set_limits(&l, &err) == 0, "%s", err.msg);
    p = write_text("blocks.json", "{\"num_blocks\": 1000000, \"num_self_attends_per_block\": 1}");
    CHECK(pcv_config_load(&c, p, &err) == PCV_ERR_INPUT && strstr(err.msg, "layers = 1024"), "raised num_blocks: %s",
          err.msg);
    static const char *const bad[] = {"batch", "batch=", "batch=0", "batch=-3", "batch=12x", "pixels=5",
                                      "batch=99999999999999999999", "image_pixels=9223372036854775807G"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pcv_limits x = saved;
        CHECK(pcv_parse_limits(bad[i], &x, &err) == PCV_ERR_INPUT, "'%s' accepted", bad[i]);
    }
    pcv_limits d;
    pcv_limits_default(&d);
    CHECK(d.image_pixels == 178956970 && d.batch == 4096 && d.num_blocks == 64 && d.layers == 1024 &&
              d.pickle_nodes == 65536 && d.pickle_bytes == 128 << 20,
          "defaults");
    l = (pcv_limits){0};
    CHECK(pcv_set_limits(&l, &err) == 0, "zero fields restore the defaults");
    pcv_get_limits(&l);
    CHECK(!memcmp(&l, &d, sizeof l), "defaults restored");
    pcv_set_limits(&saved, &err);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "%s/test_config.%ld", tu_tmpdir(), (long)getpid());
    if (mkdir(g_dir, 0755) != 0) {
        fprintf(stderr, "cannot create %s\n", g_dir);
        return 2;
    }
    test_defaults();
    test_minimal();
    test_full();
    test_errors();
    test_round_trip();
    test_limits();
    tu_remove_dir(g_dir);
    return TEST_DONE();
}
