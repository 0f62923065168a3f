/* DeepMind Haiku checkpoints: the renamer table against HF's rules (names.json, produced by
 * tools/make_haiku_fixtures.py from an independent Python port of transformers' conversion
 * script), architecture detection, the derived config, and the tiny masked LM stored as real
 * NumPy / dm-haiku pickles (protocols 2, 4, 5; NumPy 1.x and 2.x; Haiku mappings, dicts, JAX
 * arrays) run with both numerics profiles:
 *   --numerics hf    vs transformers on the same weights (tolerance mlm-tiny)
 *   default (haiku)  vs our JAX/dm-haiku re-implementation of DeepMind's formulas
 *                    (tools/haiku_ref.py; not DeepMind's code; tolerance mlm-haiku-tiny). */
#include "formats/formats.h"
#include "formats/haiku.h"
#include "model/arch.h"
#include "perceiver/presets.h"
#include "perceiver/model.h"
#include "testutil.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *tolerances;

static void tol_of(const char *profile, double *atol, double *rtol)
{
    json_t *p = json_object_get(json_object_get(tolerances, "models"), profile);
    *atol = json_number_value(json_object_get(p, "atol"));
    *rtol = json_number_value(json_object_get(p, "rtol"));
    CHECK(p && (*atol > 0 || *rtol > 0), "tolerance profile %s missing", profile);
}

static void test_names_json(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/haiku_names/names.json", tu_fixtures());
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    CHECK(root != NULL, "%s: %s", path, je.text);
    const char *arch;
    json_t *a;
    int total = 0, dropped = 0;
    json_object_foreach(root, arch, a) {
        const pcv_arch_info *ai = pcv_arch_lookup(arch);
        CHECK(ai && !strcmp(ai->hf_class, json_string_value(json_object_get(a, "hf_class"))),
              "architecture %s", arch);
        if (!ai)
            continue;
        json_t *names = json_object_get(a, "names");
        const char **list = malloc(json_object_size(names) * sizeof *list);
        size_t n = 0;
        const char *hk;
        json_t *hf;
        json_object_foreach(names, hk, hf) {
            list[n++] = hk;
            char out[256];
            hk_transform t;
            int rc = hk_rename(hk, ai->arch, out, sizeof out, &t);
            CHECK(rc == 0, "%s: '%s' not renamed", arch, hk);
            if (json_is_null(hf)) {
                CHECK(rc == 0 && t == HK_T_DROP, "%s: '%s' should be dropped", arch, hk);
                dropped++;
            } else {
                CHECK(rc == 0 && t != HK_T_DROP && !strcmp(out, json_string_value(hf)),
                      "%s: '%s' -> '%s', HF's rules give '%s'", arch, hk, out, json_string_value(hf));
                /* HF transposes every '...weight' except embeddings and squeezes BatchNorm */
                bool want_t = strstr(out, "batchnorm") ? true
                              : (strlen(out) > 6 && !strcmp(out + strlen(out) - 6, "weight") &&
                                 !strstr(out, "embeddings"));
                /* (LayerNorm weights are 1-D: the table does not bother to "transpose" them) */
                if (!strstr(out, "layernorm"))
                    CHECK(want_t == (t == HK_T_REVERSE || t == HK_T_SQUEEZE), "%s: transform of '%s'", arch, hk);
                CHECK((t == HK_T_SQUEEZE) == (strstr(out, "batchnorm") != NULL), "%s: squeeze of '%s'", arch, hk);
            }
            total++;
        }
        CHECK(pcv_arch_detect(list, n) == ai, "%s: detected %s", arch,
              pcv_arch_detect(list, n) ? pcv_arch_detect(list, n)->hf_class : "nothing");
        free(list);
    }
    printf("renamer: %d Haiku names of 6 architectures agree with HF's rules (%d dropped)\n", total, dropped);
    CHECK(total > 400 && dropped == 4, "names.json coverage (%d, %d)", total, dropped);
    json_decref(root);
}

static void test_rename_cases(void)
{
    char out[256];
    hk_transform t;
    CHECK(hk_rename("perceiver_encoder/~/self_attention_25/mlp/linear_1/w", PCV_ARCH_MASKED_LM, out, sizeof out, &t) == 0 &&
              !strcmp(out, "perceiver.encoder.self_attends.25.mlp.dense2.weight") && t == HK_T_REVERSE, "%s", out);
    CHECK(hk_rename("classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs",
                    PCV_ARCH_MULTIMODAL, out, sizeof out, &t) == 0 &&
              !strcmp(out, "perceiver.decoder.modalities.label.decoder.output_position_encodings.position_embeddings"),
          "%s", out);
    CHECK(hk_rename("classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs",
                    PCV_ARCH_IMAGE_FOURIER, out, sizeof out, &t) == 0 &&
              !strcmp(out, "perceiver.decoder.decoder.output_position_encodings.position_embeddings"), "%s", out);
    /* not in the table */
    static const char *const bad[] = {"perceiver_encoder/~/self_attention_07/layer_norm/scale",
                                      "perceiver_encoder/~/self_attention_/layer_norm/scale",
                                      "perceiver_encoder/~/cross_attention/layer_norm_3/scale",
                                      "embed/embeddings/extra", "", "/", "multimodal_preprocessor/_padding/pos_embs",
                                      "some_module/w"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(hk_rename(bad[i], PCV_ARCH_MASKED_LM, out, sizeof out, &t) == -1, "'%s' should be unknown", bad[i]);
    /* output buffer too small is an error, not a truncation */
    CHECK(hk_rename("embed/embeddings", PCV_ARCH_MASKED_LM, out, 8, &t) == -1, "short buffer");
    CHECK(pcv_arch_lookup("mlm") && pcv_arch_lookup("PerceiverForOpticalFlow") &&
              pcv_arch_lookup("vision-perceiver-conv") && !pcv_arch_lookup("bogus"), "arch lookup");
}

/* Same model as tests/fixtures/torch_mlm: every renamed, transposed pickle tensor must equal the
 * HF state dict bit for bit. */
static void test_against_torch(const char *pickle)
{
    pcv_error err = {0};
    pcv_weights w, t;
    char tp[4096];
    snprintf(tp, sizeof tp, "%s/torch_mlm", tu_fixtures());
    CHECK(pcv_weights_load(&w, pickle, NULL, &err) == 0, "%s", err.msg);
    CHECK(pcv_weights_load(&t, tp, NULL, &err) == 0, "%s", err.msg);
    CHECK(w.from_haiku && !t.from_haiku, "from_haiku flags");
    CHECK(!strcmp(w.format, "haiku-pickle") && !strcmp(t.format, "pytorch-zip"), "%s / %s", w.format, t.format);
    CHECK(!strcmp(w.architecture, "PerceiverForMaskedLM"), "architecture %s", w.architecture);
    CHECK(w.count == t.count, "%s: %d tensors, torch has %d", pickle, w.count, t.count);
    int same = 0;
    for (int i = 0; i < t.count; i++) {
        const pcv_st_tensor *a = &t.tensors[i], *b = pcv_weights_find(&w, a->name);
        CHECK(b != NULL, "%s: '%s' missing", pickle, a->name);
        if (!b)
            continue;
        bool ok = a->ndim == b->ndim && a->numel == b->numel && a->dtype == b->dtype;
        for (int d = 0; ok && d < a->ndim; d++)
            ok = a->shape[d] == b->shape[d];
        ok = ok && memcmp(a->data, b->data, a->nbytes) == 0;
        CHECK(ok, "%s: '%s' differs from the HF state dict", pickle, a->name);
        same += ok;
    }
    CHECK(same == t.count, "%d of %d tensors equal", same, t.count);
    pcv_config c;
    CHECK(pcv_config_from_weights(&w, &c, &err) == 0, "%s", err.msg);
    CHECK(c.num_latents == 8 && c.d_latents == 32 && c.d_model == 16 && c.num_self_attends_per_block == 2 &&
              c.vocab_size == 262 && c.max_position_embeddings == 24 && c.qk_channels == 0 && c.v_channels == 0 &&
              !strcmp(c.architecture, "PerceiverForMaskedLM"),
          "derived config");
    pcv_config_free(&c);
    pcv_weights_release(&w);
    pcv_weights_release(&t);
}

static long compare(const pcv_io_tensor *o, const pcv_st_tensor *e, double atol, double rtol, double *maxerr)
{
    float *want = malloc((size_t)e->numel * sizeof *want);
    pcv_error err = {0};
    pcv_st_to_f32(e, want, &err);
    long bad = 0;
    *maxerr = 0;
    for (int64_t i = 0; i < e->numel; i++) {
        double d = fabs((double)((float *)o->data)[i] - want[i]);
        if (!(d <= atol + rtol * fabs(want[i])))
            bad++;
        if (d > *maxerr)
            *maxerr = d;
    }
    free(want);
    return bad;
}

static void run_pickle(const char *pickle, pcv_numerics num, const char *expected_file, const char *profile)
{
    char path[4096];
    pcv_error err = {0};
    double atol, rtol;
    tol_of(profile, &atol, &rtol);
    pcv_safetensors in = {0}, ex = {0};
    snprintf(path, sizeof path, "%s/haiku_mlm/inputs.safetensors", tu_fixtures());
    CHECK(pcv_st_map(&in, path, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/haiku_mlm/%s", tu_fixtures(), expected_file);
    CHECK(pcv_st_map(&ex, path, &err) == 0, "%s", err.msg);
    pcv_model *m = NULL;
    pcv_model_options opt = {.numerics = num};
    CHECK(pcv_model_load(pickle, &opt, &m, &err) == 0, "%s: %s", pickle, err.msg);
    if (m) {
        pcv_io_tensor ios[16];
        CHECK(in.count <= 16 && pcv_io_from_safetensors(&in, ios, &err) == 0, "%s", err.msg);
        const pcv_io_tensor *outs = NULL;
        int nout = 0;
        CHECK(pcv_model_forward(m, ios, in.count, &outs, &nout, &err) == 0, "%s", err.msg);
        for (int i = 0; i < ex.count; i++) {
            const pcv_io_tensor *o = pcv_io_find(outs, nout, ex.tensors[i].name);
            CHECK(o && o->ndim == ex.tensors[i].ndim, "%s: output %s", pickle, ex.tensors[i].name);
            if (!o)
                continue;
            double maxerr;
            long bad = compare(o, &ex.tensors[i], atol, rtol, &maxerr);
            const char *slash = strrchr(pickle, '/');
            printf("  %-28s %-6s %-18s max|err| %.3g\n", slash ? slash + 1 : pickle,
                   num == PCV_NUMERICS_HF ? "hf" : "auto", ex.tensors[i].name, maxerr);
            CHECK(bad == 0, "%s (%s): %ld values of %s outside %s", pickle, expected_file, bad,
                  ex.tensors[i].name, profile);
        }
    }
    pcv_model_free(m);
    pcv_st_unmap(&in);
    pcv_st_unmap(&ex);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_pickles(void)
{
    char dir[4096], *names[32];
    int n = 0;
    snprintf(dir, sizeof dir, "%s/haiku_mlm", tu_fixtures());
    DIR *d = opendir(dir);
    CHECK(d != NULL, "%s", dir);
    struct dirent *de;
    while (d && (de = readdir(d)) && n < 32)
        if (strstr(de->d_name, ".pickle"))
            names[n++] = strdup(de->d_name);
    if (d)
        closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    CHECK(n >= 6, "expected >= 6 pickles in %s, found %d", dir, n);
    bool np1 = false, np2 = false, p2 = false, p4 = false, p5 = false;
    for (int i = 0; i < n; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        np1 |= strstr(names[i], "np1") != NULL;
        np2 |= strstr(names[i], "np2") != NULL;
        p2 |= !strncmp(names[i], "p2", 2);
        p4 |= !strncmp(names[i], "p4", 2);
        p5 |= !strncmp(names[i], "p5", 2);
        test_against_torch(path);
        run_pickle(path, PCV_NUMERICS_HF, "expected_hf.safetensors", "mlm-tiny");
        run_pickle(path, PCV_NUMERICS_AUTO, "expected_haiku.safetensors", "mlm-haiku-tiny");
        free(names[i]);
    }
    CHECK(np1 && np2 && p2 && p4 && p5, "fixture coverage: numpy 1/2, protocols 2/4/5");
}

/* A folder holding only a DeepMind pickle (no config.json) loads with the preset + shapes. */
static void test_no_config(void)
{
    char src[4096], dir[4096], dst[8192], cmd[16384];
    snprintf(src, sizeof src, "%s/haiku_mlm/p4_np2_dict.pickle", tu_fixtures());
    snprintf(dir, sizeof dir, "%s/haiku_noconfig", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s' '%s/'", dir, dir, src, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    pcv_error err = {0};
    pcv_model *m = NULL;
    CHECK(pcv_model_load(dir, NULL, &m, &err) == 0, "%s", err.msg);
    if (m) {
        const pcv_config *c = pcv_model_config(m);
        CHECK(c->d_latents == 32 && c->num_self_attention_heads == 8 && pcv_model_arch(m) == PCV_ARCH_MASKED_LM,
              "preset-based config");
    }
    pcv_model_free(m);
    /* two pickles: ambiguous */
    snprintf(dst, sizeof dst, "cp '%s' '%s/other.pickle'", src, dir);
    CHECK(system(dst) == 0, "%s", dst);
    CHECK(pcv_model_load(dir, NULL, &m, &err) != 0 && strstr(err.msg, "several pickles"), "%s", err.msg);
    /* a safetensors folder without config.json still needs one */
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s/mlm_q_shape/model.safetensors' '%s/'",
             dir, dir, tu_fixtures(), dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    CHECK(pcv_model_load(dir, NULL, &m, &err) != 0 && strstr(err.msg, "config.json"), "%s", err.msg);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void)
{
    char path[4096];
    json_error_t je;
    snprintf(path, sizeof path, "%s/../tolerances.json", tu_fixtures());
    tolerances = json_load_file(path, 0, &je);
    CHECK(tolerances != NULL, "%s: %s", path, je.text);
    test_names_json();
    test_rename_cases();
    test_pickles();
    test_no_config();
    json_decref(tolerances);
    return TEST_DONE();
}
