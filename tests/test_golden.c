/* Golden tests: every fixture folder under tests/fixtures/ that has a meta.json holds a tiny
 * random-weight Hugging Face model (config.json + model.safetensors), its inputs
 * (inputs.safetensors) and the outputs of transformers' forward pass (expected.safetensors),
 * written by tools/make_fixtures.py. The engine must reproduce the outputs within the
 * tolerance profile named in meta.json (tests/tolerances.json), both through the library and
 * through `perceiver-cl run`, on the CPU path and on every OpenCL device (with PCV_REQUIRE_OPENCL=1,
 * as in CI, a machine without an OpenCL device fails). */
#include "formats/formats.h"
#include "backend/opencl.h"
#include "perceiver/model.h"
#include "testutil.h"
#include "tu_tolerance.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

static bool load_tol(const char *profile, tol *t)
{
    json_t *p = json_object_get(json_object_get(tu_tolerances, "models"), profile);
    if (!p)
        return false;
    t->atol = json_number_value(json_object_get(p, "atol"));
    t->rtol = json_number_value(json_object_get(p, "rtol"));
    return t->atol > 0 || t->rtol > 0;
}

/* Counts elements outside atol + rtol*|expected|; reports the worst. */
static long compare(const char *what, const float *got, const float *want, int64_t n, tol t, bool quiet)
{
    long bad = 0;
    double worst = 0, max_abs = 0;
    int64_t worst_i = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double lim = t.atol + t.rtol * fabs((double)want[i]);
        if (!(d <= lim))
            bad++;
        if (d > max_abs)
            max_abs = d;
        if (!(d / lim <= worst)) {
            worst = d / lim;
            worst_i = i;
        }
    }
    if (!quiet)
        printf("  %-28s n=%-8lld max|err|=%.3g  worst err/tol=%.3f at %lld%s\n", what, (long long)n, max_abs, worst,
               (long long)worst_i, bad ? "  FAIL" : "");
    return bad;
}

static void check_outputs(const char *fixture, const char *how, const pcv_safetensors *expected,
                          const pcv_io_tensor *outs, int nout, tol t)
{
    for (int i = 0; i < expected->count; i++) {
        const pcv_st_tensor *e = &expected->tensors[i];
        if (!strncmp(e->name, "stage.", 6))
            continue;
        const pcv_io_tensor *o = pcv_io_find(outs, nout, e->name);
        CHECK(o != NULL, "%s (%s): output '%s' missing", fixture, how, e->name);
        if (!o)
            continue;
        bool same = o->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++)
            same = o->shape[d] == e->shape[d];
        CHECK(same, "%s (%s): output '%s' has the wrong shape", fixture, how, e->name);
        if (!same)
            continue;
        float *want = malloc((size_t)e->numel * sizeof(float));
        pcv_error err = {0};
        CHECK(pcv_st_to_f32(e, want, &err) == 0, "%s", err.msg);
        char what[128];
        snprintf(what, sizeof what, "%s [%s]", e->name, how);
        long bad = compare(what, (const float *)o->data, want, e->numel, t, false);
        CHECK(bad == 0, "%s (%s): %ld of %lld values of '%s' outside tolerance", fixture, how, bad,
              (long long)e->numel, e->name);
        /* the comparison itself must be able to fail: one value moved by 10x the tolerance */
        if (e->numel > 0) {
            float *moved = malloc((size_t)e->numel * sizeof(float));
            memcpy(moved, o->data, (size_t)e->numel * sizeof(float));
            moved[e->numel / 2] += (float)(10 * (t.atol + t.rtol * fabs(want[e->numel / 2])));
            CHECK(compare(what, moved, want, e->numel, t, true) > 0, "comparator did not catch a perturbation");
            free(moved);
        }
        free(want);
    }
}

/* The intermediate states (stages.safetensors, from transformers) against the engine's capture,
 * in the order of the forward pass, so that a failure names the first stage that diverges.
 * stage.preprocess may be shorter on the engine's side: it drops batch-wide trailing padding. */
static void check_stages(const char *fixture, const char *how, const pcv_safetensors *stages,
                         const pcv_io_tensor *outs, int nout, tol t)
{
    char names[260][64];
    int n = 0;
    snprintf(names[n++], 64, "stage.preprocess");
    snprintf(names[n++], 64, "stage.encoder.cross");
    for (int k = 0; k < 256; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "stage.encoder.self.%d", k);
        if (!pcv_st_find(stages, nm))
            break;
        snprintf(names[n++], 64, "%s", nm);
    }
    snprintf(names[n++], 64, "stage.decoder");
    const char *first_bad = NULL;
    int compared = 0;
    for (int i = 0; i < n; i++) {
        const pcv_st_tensor *e = pcv_st_find(stages, names[i]);
        const pcv_io_tensor *o = pcv_io_find(outs, nout, names[i]);
        CHECK(e && o, "%s (%s): stage '%s' missing (%s)", fixture, how, names[i], e ? "engine" : "fixture");
        if (!e || !o)
            continue;
        bool ok = e->ndim == 3 && o->ndim == 3 && o->shape[0] == e->shape[0] && o->shape[2] == e->shape[2] &&
                  o->shape[1] <= e->shape[1] && (o->shape[1] == e->shape[1] || i == 0);
        CHECK(ok, "%s (%s): stage '%s' has shape [%lld][%lld][%lld], the fixture [%lld][%lld][%lld]", fixture, how,
              names[i], (long long)o->shape[0], (long long)o->shape[1], (long long)o->shape[2], (long long)e->shape[0],
              (long long)e->shape[1], (long long)e->shape[2]);
        if (!ok)
            continue;
        float *want = malloc((size_t)e->numel * sizeof(float));
        pcv_error err = {0};
        CHECK(pcv_st_to_f32(e, want, &err) == 0, "%s", err.msg);
        long bad = 0;
        int64_t rows = o->shape[1], C = o->shape[2];
        for (int64_t b = 0; b < o->shape[0]; b++) /* the engine's rows are a prefix of the fixture's */
            bad += compare(names[i], (const float *)o->data + b * rows * C, want + b * e->shape[1] * C, rows * C, t,
                           true);
        if (bad && !first_bad)
            first_bad = names[i];
        compared++;
        free(want);
    }
    CHECK(!first_bad, "%s (%s): the first stage that diverges from transformers is '%s'", fixture, how,
          first_bad ? first_bad : "");
    printf("  %d intermediate stages within tolerance%s\n", compared - (first_bad ? 1 : 0),
           first_bad ? " before the failure" : "");
}

/* device: NULL for the CPU path, else an OpenCL device index ("0", ...) */
static void run_fixture(const char *dir, const char *name, const char *device)
{
    char path[4096];
    pcv_error err = {0};
    snprintf(path, sizeof path, "%s/meta.json", dir);
    json_error_t je;
    json_t *meta = json_load_file(path, 0, &je);
    CHECK(meta != NULL, "%s: %s", path, je.text);
    if (!meta)
        return;
    tol t;
    const char *profile = json_string_value(json_object_get(meta, "tolerance"));
    CHECK(profile && load_tol(profile, &t), "%s: unknown tolerance profile '%s'", name, profile ? profile : "(none)");
    if (!profile || !load_tol(profile, &t)) {
        json_decref(meta);
        return;
    }
    printf("%s (%s, tolerance %s: atol %g rtol %g) on %s\n", name, json_string_value(json_object_get(meta, "class")),
           profile, t.atol, t.rtol, device ? device : "cpu");

    pcv_safetensors in = {0}, expected = {0}, stages = {0};
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    CHECK(pcv_st_map(&in, path, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK(pcv_st_map(&expected, path, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/stages.safetensors", dir);
    struct stat sb;
    bool have_stages = stat(path, &sb) == 0;
    if (have_stages)
        CHECK(pcv_st_map(&stages, path, &err) == 0, "%s", err.msg);

    /* 1. through the library, capturing the intermediate states */
    pcv_model *m = NULL;
    pcv_model_options opt = {.backend.device = device, .capture = have_stages};
    CHECK(pcv_model_load(dir, &opt, &m, &err) == 0, "%s: %s", name, err.msg);
    if (m && device)
        CHECK(strncmp(pcv_model_device(m), "OpenCL", 6) == 0, "%s: device %s gave '%s'", name, device,
              pcv_model_device(m));
    if (m && in.count) {
        pcv_io_tensor ios[16];
        CHECK(in.count <= 16 && pcv_io_from_safetensors(&in, ios, &err) == 0, "%s", err.msg);
        int n = in.count;
        const pcv_io_tensor *outs = NULL;
        int nout = 0;
        CHECK(pcv_model_forward(m, ios, n, &outs, &nout, &err) == 0, "%s: %s", name, err.msg);
        if (outs)
            check_outputs(name, "library", &expected, outs, nout, t);
        if (outs && have_stages)
            check_stages(name, "library", &stages, outs, nout, t);
    }
    pcv_model_free(m);

    /* 2. through the command-line tool */
    const char *bin = getenv("PCV_BIN");
    if (bin) {
        char out[4096], cmd[12288];
        snprintf(out, sizeof out, "%s/golden-%s.safetensors", tu_tmpdir(), name);
        remove(out);
        /* stderr is not hidden: when the command fails, its message is in the test's output */
        snprintf(cmd, sizeof cmd, "'%s' run --model '%s' --inputs '%s/inputs.safetensors' --outputs '%s' --device '%s'",
                 bin, dir, dir, out, device ? device : "cpu");
        CHECK(system(cmd) == 0, "%s: command failed: %s", name, cmd);
        pcv_safetensors got = {0};
        if (pcv_st_map(&got, out, &err) == 0) {
            pcv_io_tensor ios[16];
            CHECK(got.count <= 16 && pcv_io_from_safetensors(&got, ios, &err) == 0, "%s", err.msg);
            int n = got.count;
            check_outputs(name, "perceiver-cl run", &expected, ios, n, t);
            pcv_st_unmap(&got);
        } else {
            CHECK(false, "%s: %s", name, err.msg);
        }
        remove(out);
    }
    pcv_st_unmap(&in);
    pcv_st_unmap(&expected);
    pcv_st_unmap(&stages);
    json_decref(meta);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void)
{
    char path[4096];
    if (!tu_tolerances_load())
        return TEST_DONE();

    DIR *d = opendir(tu_fixtures());
    CHECK(d != NULL, "cannot open fixtures folder %s", tu_fixtures());
    if (!d)
        return TEST_DONE();
    char *names[256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 256) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s/meta.json", tu_fixtures(), de->d_name);
        if (de->d_name[0] != '.' && stat(path, &sb) == 0)
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    CHECK(n >= 5, "expected at least 5 golden fixtures in %s, found %d", tu_fixtures(), n);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", tu_fixtures(), names[i]);
        run_fixture(path, names[i], NULL);
    }

    /* every fixture again on each OpenCL device (compiled kernels go to the test folder) */
    tu_runtime_setup();
    pcv_error err = {0};
    pcv_cl_device_info *devs = NULL;
    int ndev = pcv_cl_list_devices(&devs, &err);
    const char *req = getenv("PCV_REQUIRE_OPENCL");
    bool require = req && strcmp(req, "0") != 0;
    CHECK(ndev >= 0, "listing OpenCL devices: %s", err.msg);
    if (ndev <= 0)
        printf("no OpenCL device: fixtures ran on the CPU path only\n");
    CHECK(ndev > 0 || !require, "PCV_REQUIRE_OPENCL=1 but no OpenCL device was found");
    for (int dev = 0; dev < ndev; dev++) {
        char spec[16];
        snprintf(spec, sizeof spec, "%d", dev);
        int64_t before = pcv_cl_launch_count();
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", tu_fixtures(), names[i]);
            run_fixture(path, names[i], spec);
        }
        CHECK(pcv_cl_launch_count() - before >= 20LL * n, "OpenCL device %d (%s): only %lld kernels ran", dev,
              devs[dev].name, (long long)(pcv_cl_launch_count() - before));
    }
    free(devs);
    for (int i = 0; i < n; i++)
        free(names[i]);
    tu_tolerances_free();
    return TEST_DONE();
}
