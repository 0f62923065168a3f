/* config.hidden_act: every name of transformers' ACT2FN with a fixed formula, through a whole
 * model, against transformers (tests/fixtures/activations, tools/make_activation_fixtures.py: one
 * tiny PerceiverForSequenceClassification, the same weights under each activation), on the CPU
 * path and every OpenCL device; the names with learned parameters are refused by name. */
#include "backend/opencl.h"
#include "testutil.h"

#include "perceiver/model.h"

#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static double atol_, rtol_;

static void compare(const char *what, const pcv_io_tensor *got, const pcv_st_tensor *want)
{
    int64_t n = 1;
    for (int d = 0; d < got->ndim; d++)
        n *= got->shape[d];
    CHECK(want && want->numel == n, "%s: shape", what);
    if (!want || want->numel != n)
        return;
    const float *g = got->data, *w = want->data;
    int64_t bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double lim = atol_ + rtol_ * fabs((double)w[i]), d = fabs((double)g[i] - w[i]);
        bad += !(d <= lim);
        worst = d / lim > worst ? d / lim : worst;
    }
    CHECK(bad == 0, "%s: %lld of %lld values outside tolerance (worst err/tol %.3g)", what, (long long)bad,
          (long long)n, worst);
}

/* a model folder whose config.json says hidden_act = act, over the fixture's weights */
static bool make_folder(const char *fix, const char *act, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/act_%s", tu_tmpdir(), act);
    mkdir(dir, 0755);
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/config.json", fix);
    json_error_t je;
    json_t *cfg = json_load_file(src, 0, &je);
    if (!cfg)
        return false;
    json_object_set_new(cfg, "hidden_act", json_string(act));
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    bool ok = json_dump_file(cfg, dst, JSON_INDENT(1)) == 0;
    json_decref(cfg);
    snprintf(src, sizeof src, "%s/model.safetensors", fix);
    if (src[0] != '/') { /* a relative fixture path: link to where it is from here */
        char cwd[2048];
        if (getcwd(cwd, sizeof cwd)) {
            char abs[4200];
            snprintf(abs, sizeof abs, "%s/%s", cwd, src);
            snprintf(src, sizeof src, "%s", abs);
        }
    }
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    unlink(dst);
    return ok && symlink(src, dst) == 0;
}

static void run(const char *fix, const char *act, const char *device, const pcv_safetensors *in,
                const pcv_safetensors *ex)
{
    char dir[4096];
    CHECK(make_folder(fix, act, dir, sizeof dir), "%s: cannot write its folder", act);
    pcv_model *m = NULL;
    pcv_error err = {0};
    pcv_model_options opt = {.backend.device = device};
    CHECK(pcv_model_load(dir, &opt, &m, &err) == 0, "hidden_act %s: %s", act, err.msg);
    if (!m)
        return;
    pcv_io_tensor ios[4];
    const pcv_io_tensor *o;
    int no;
    CHECK(pcv_io_from_safetensors(in, ios, &err) == 0, "%s", err.msg);
    if (pcv_model_forward(m, ios, pcv_st_count(in), &o, &no, &err) == 0) {
        const char *outs[] = {"logits", "last_hidden_state"};
        for (int k = 0; k < 2; k++) {
            char name[128], what[256];
            snprintf(name, sizeof name, "%s.%s", outs[k], act);
            snprintf(what, sizeof what, "hidden_act %s on %s: %s", act, device ? device : "cpu", outs[k]);
            compare(what, pcv_io_find(o, no, outs[k]), pcv_st_find(ex, name));
        }
    } else {
        CHECK(false, "hidden_act %s: %s", act, err.msg);
    }
    pcv_model_free(m);
}

int main(void)
{
    tu_runtime_setup();
    char fix[4096], path[4200];
    snprintf(fix, sizeof fix, "%s/activations", tu_fixtures());
    json_error_t je;
    snprintf(path, sizeof path, "%s/activations.json", fix);
    json_t *meta = json_load_file(path, 0, &je);
    snprintf(path, sizeof path, "%s/../tolerances.json", tu_fixtures());
    json_t *tol = json_load_file(path, 0, &je);
    CHECK(meta && tol, "fixture or tolerances: %s", je.text);
    if (!meta || !tol)
        return TEST_DONE();
    json_t *prof = json_object_get(json_object_get(tol, "models"), json_string_value(json_object_get(meta, "tolerance")));
    atol_ = json_number_value(json_object_get(prof, "atol"));
    rtol_ = json_number_value(json_object_get(prof, "rtol"));
    CHECK(atol_ > 0 && rtol_ > 0, "no tolerance profile");

    pcv_safetensors *in = NULL, *ex = NULL;
    pcv_error err = {0};
    snprintf(path, sizeof path, "%s/inputs.safetensors", fix);
    CHECK(pcv_st_open(path, &in, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/expected.safetensors", fix);
    CHECK(pcv_st_open(path, &ex, &err) == 0, "%s", err.msg);
    if (!in || !ex)
        return TEST_DONE();

    pcv_cl_device_info *devs = NULL;
    int ndev = pcv_cl_list_devices(&devs, &err);
    free(devs);
    const char *req = getenv("PCV_REQUIRE_OPENCL");
    CHECK(ndev > 0 || !(req && strcmp(req, "0")), "PCV_REQUIRE_OPENCL=1 but no OpenCL device was found");
    const char *act;
    json_t *e;
    int n = 0;
    json_object_foreach(json_object_get(meta, "activations"), act, e) {
        pcv_activation a;
        CHECK(pcv_activation_from_name(act, &a, &err) == 0, "ACT2FN name %s: %s", act, err.msg);
        run(fix, act, NULL, in, ex);
        for (int d = 0; d < ndev && d < 4; d++) {
            char spec[8];
            snprintf(spec, sizeof spec, "%d", d);
            run(fix, act, spec, in, ex);
        }
        n++;
    }
    CHECK(n >= 20, "only %d activations in the fixture", n);
    printf("hidden_act: %d ACT2FN names against transformers on the CPU path and %d OpenCL device(s)\n", n,
           ndev > 0 ? ndev : 0);

    /* the ones with learned parameters, and unknown ones, are refused by name */
    pcv_activation a;
    CHECK(pcv_activation_from_name("prelu", &a, &err) == PCV_ERR_UNSUPPORTED && strstr(err.msg, "learned"),
          "prelu: %s", err.msg);
    CHECK(pcv_activation_from_name("wiggle", &a, &err) == PCV_ERR_UNSUPPORTED && strstr(err.msg, "'wiggle'") &&
              strstr(err.msg, "quick_gelu"),
          "unknown: %s", err.msg);
    char dir[4096];
    CHECK(make_folder(fix, "xielu", dir, sizeof dir), "xielu folder");
    pcv_model *m = NULL;
    CHECK(pcv_model_load(dir, NULL, &m, &err) == PCV_ERR_UNSUPPORTED && strstr(err.msg, "hidden_act 'xielu'"),
          "xielu: %s", err.msg);
    pcv_model_free(m);
    pcv_st_close(in);
    pcv_st_close(ex);
    json_decref(meta);
    json_decref(tol);
    return TEST_DONE();
}
