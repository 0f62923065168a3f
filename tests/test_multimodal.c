/* Multimodal autoencoding beyond the golden subsampled outputs (test_golden runs those):
 *  - full reconstruction: every image and audio output point decoded from ONE encoder pass, in
 *    decoder chunks of several sizes (crossing the modality boundaries), against the chunk loops
 *    of transformers (mm_small) and of DeepMind's colab (haiku_multimodal), which recompute the
 *    encoder for every chunk; the chunk size changes nothing;
 *  - the label input is replaced by the mask token (its values do not matter);
 *  - DeepMind's pickle under --numerics hf against transformers on the same weights;
 *  - bad inputs: missing modalities, wrong shapes, points out of range. */
#include "backend/opencl.h"
#include "formats/formats.h"
#include "perceiver/model.h"
#include "testutil.h"
#include "tu_tolerance.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* inputs of a fixture without the subsampled points (= every point) */
static int load_inputs(pcv_safetensors *in, pcv_io_tensor *ios, bool with_points)
{
    pcv_io_tensor all[8];
    pcv_error err = {0};
    int n = 0;
    CHECK(in->count <= 8 && pcv_io_from_safetensors(in, all, &err) == 0, "%s", err.msg);
    for (int i = 0; i < in->count && i < 8; i++)
        if (with_points || strncmp(all[i].name, "subsampled_output_points.", 25))
            ios[n++] = all[i];
    return n;
}

static void test_full(const char *fixture, const char *profile, const char *device)
{
    char dir[4096], path[4200];
    pcv_error err = {0};
    snprintf(dir, sizeof dir, "%s/%s", tu_fixtures(), fixture);
    pcv_safetensors in = {0}, full = {0};
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    CHECK(pcv_st_map(&in, path, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/full.safetensors", dir);
    CHECK(pcv_st_map(&full, path, &err) == 0, "%s", err.msg);
    tol t = model_tol(profile);
    static const int64_t chunks[] = {0, 7, 50};
    float *first[3] = {0};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        pcv_model_options opt = {.backend.device = device, .decode_chunk = chunks[c]};
        pcv_model *m = NULL;
        CHECK(pcv_model_load(dir, &opt, &m, &err) == 0, "%s: %s", fixture, err.msg);
        if (!m)
            continue;
        pcv_io_tensor ios[8];
        int n = load_inputs(&in, ios, false);
        const pcv_io_tensor *outs;
        int nout;
        CHECK(pcv_model_forward(m, ios, n, &outs, &nout, &err) == 0, "%s: %s", fixture, err.msg);
        static const char *names[3][2] = {
            {"logits.image", "full.image"}, {"logits.audio", "full.audio"}, {"logits.label", "full.label"}};
        for (int k = 0; k < 3 && nout; k++) {
            const pcv_io_tensor *o = pcv_io_find(outs, nout, names[k][0]);
            const pcv_st_tensor *e = pcv_st_find(&full, names[k][1]);
            int64_t no = 1;
            for (int d = 0; o && d < o->ndim; d++)
                no *= o->shape[d];
            CHECK(o && e && no == e->numel, "%s: %s has %lld values, %s %lld", fixture, names[k][0], (long long)no,
                  names[k][1], e ? (long long)e->numel : -1LL);
            if (!o || !e || no != e->numel)
                continue;
            char what[160];
            snprintf(what, sizeof what, "%s %s, decode chunk %lld, %s", fixture, names[k][1], (long long)chunks[c],
                     device ? device : "cpu");
            CHECK(tol_compare(what, o->data, e->data, no, t) == 0, "%s: outside tolerance", what);
            if (c == 0) {
                first[k] = malloc((size_t)no * sizeof(float));
                memcpy(first[k], o->data, (size_t)no * sizeof(float));
            } else if (first[k]) { /* a decoder query does not depend on its neighbours in the chunk */
                double worst = 0;
                for (int64_t i = 0; i < no; i++)
                    worst = fmax(worst, fabs((double)((const float *)o->data)[i] - first[k][i]));
                CHECK(worst <= 1e-6 * (1 + fabs(first[k][0])) + 1e-6, "%s: differs from one-chunk decoding by %g", what,
                      worst);
            }
        }
        pcv_model_free(m);
    }
    for (int k = 0; k < 3; k++)
        free(first[k]);
    pcv_st_unmap(&in);
    pcv_st_unmap(&full);
}

/* tests/fixtures/mm_small: its model (NULL and a failed check if it cannot be loaded) and its
 * inputs mapped into *in */
static pcv_model *open_mm_small(pcv_safetensors *in)
{
    char dir[4096], path[4200];
    pcv_error err = {0};
    snprintf(dir, sizeof dir, "%s/mm_small", tu_fixtures());
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    CHECK(pcv_st_map(in, path, &err) == 0, "%s", err.msg);
    pcv_model *m = NULL;
    CHECK(pcv_model_load(dir, NULL, &m, &err) == 0, "%s", err.msg);
    return m;
}

/* the label input's values never matter: it is replaced by the mask token */
static void test_label_masked(void)
{
    pcv_error err = {0};
    pcv_safetensors in = {0};
    pcv_model *m = open_mm_small(&in);
    if (m && in.count) {
        pcv_io_tensor ios[8];
        int n = load_inputs(&in, ios, true);
        const pcv_io_tensor *outs;
        int nout;
        CHECK(pcv_model_forward(m, ios, n, &outs, &nout, &err) == 0, "%s", err.msg);
        const pcv_io_tensor *lg = pcv_io_find(outs, nout, "logits.label");
        int64_t nl = lg ? lg->shape[0] * lg->shape[1] : 0;
        float *before = malloc((size_t)(nl ? nl : 1) * sizeof(float));
        if (lg)
            memcpy(before, lg->data, (size_t)nl * sizeof(float));
        /* a different label input, and none at all */
        pcv_io_tensor ios2[8];
        int n2 = 0;
        float *junk = NULL;
        for (int i = 0; i < n; i++) {
            ios2[n2] = ios[i];
            if (!strcmp(ios[i].name, "inputs.label")) {
                int64_t k = ios[i].shape[0] * ios[i].shape[1];
                junk = malloc((size_t)k * sizeof(float));
                for (int64_t j = 0; j < k; j++)
                    junk[j] = (float)(j % 7) - 3.5f;
                ios2[n2].data = junk;
            }
            n2++;
        }
        for (int pass = 0; pass < 2; pass++) {
            int cnt = 0;
            pcv_io_tensor use[8];
            for (int i = 0; i < n2; i++)
                if (pass == 0 || strcmp(ios2[i].name, "inputs.label"))
                    use[cnt++] = ios2[i];
            CHECK(pcv_model_forward(m, use, cnt, &outs, &nout, &err) == 0, "%s", err.msg);
            lg = pcv_io_find(outs, nout, "logits.label");
            CHECK(lg && !memcmp(lg->data, before, (size_t)nl * sizeof(float)),
                  "the label logits depend on the label input (%s)", pass ? "absent" : "changed");
        }
        free(junk);
        free(before);
    }
    pcv_model_free(m);
    pcv_st_unmap(&in);
}

/* DeepMind's pickle under the hf profile equals transformers on the converted weights */
static void test_haiku_as_hf(void)
{
    char dir[4096], path[4200];
    pcv_error err = {0};
    snprintf(dir, sizeof dir, "%s/haiku_multimodal", tu_fixtures());
    pcv_safetensors in = {0}, ex = {0};
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    CHECK(pcv_st_map(&in, path, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/expected_hf.safetensors", dir);
    CHECK(pcv_st_map(&ex, path, &err) == 0, "%s", err.msg);
    pcv_model *m = NULL;
    pcv_model_options opt = {.numerics = PCV_NUMERICS_HF};
    CHECK(pcv_model_load(dir, &opt, &m, &err) == 0, "%s", err.msg);
    if (m) {
        pcv_io_tensor ios[8];
        int n = load_inputs(&in, ios, true);
        const pcv_io_tensor *outs;
        int nout;
        CHECK(pcv_model_forward(m, ios, n, &outs, &nout, &err) == 0, "%s", err.msg);
        tol t = model_tol("mm-tiny");
        for (int i = 0; i < ex.count; i++) {
            const pcv_st_tensor *e = &ex.tensors[i];
            const pcv_io_tensor *o = pcv_io_find(outs, nout, e->name);
            char what[128];
            snprintf(what, sizeof what, "haiku_multimodal --numerics hf %s", e->name);
            CHECK(o && tol_compare(what, o->data, e->data, e->numel, t) == 0, "%s", what);
        }
    }
    pcv_model_free(m);
    pcv_st_unmap(&in);
    pcv_st_unmap(&ex);
}

static void test_errors(void)
{
    pcv_error err = {0};
    pcv_safetensors in = {0};
    pcv_model *m = open_mm_small(&in);
    if (!m)
        return;
    pcv_io_tensor ios[8];
    int n = load_inputs(&in, ios, true);
    const pcv_io_tensor *outs;
    int nout;
    pcv_io_tensor bad[8];
    /* no audio */
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(ios[i].name, "inputs.audio"))
            bad[k++] = ios[i];
    CHECK(pcv_model_forward(m, bad, k, &outs, &nout, &err) == PCV_ERR_MISSING && strstr(err.msg, "inputs.audio"),
          "missing audio: %s", err.msg);
    /* a point out of range */
    memcpy(bad, ios, (size_t)n * sizeof *ios);
    int64_t pts[2] = {0, 1000000};
    for (int i = 0; i < n; i++)
        if (!strcmp(bad[i].name, "subsampled_output_points.image")) {
            bad[i].data = pts, bad[i].shape[0] = 2, bad[i].dtype = PCV_DT_I64;
        }
    CHECK(pcv_model_forward(m, bad, n, &outs, &nout, &err) == PCV_ERR_INPUT && strstr(err.msg, "1000000"),
          "point out of range: %s", err.msg);
    /* an image whose size is not a multiple of 4 */
    memcpy(bad, ios, (size_t)n * sizeof *ios);
    for (int i = 0; i < n; i++)
        if (!strcmp(bad[i].name, "inputs.image"))
            bad[i].shape[4] -= 1;
    CHECK(pcv_model_forward(m, bad, n, &outs, &nout, &err) == PCV_ERR_SHAPE && strstr(err.msg, "multiples of 4"),
          "image width: %s", err.msg);
    /* an unknown input */
    memcpy(bad, ios, (size_t)n * sizeof *ios);
    snprintf(bad[0].name, sizeof bad[0].name, "inputs.video");
    CHECK(pcv_model_forward(m, bad, n, &outs, &nout, &err) != 0, "unknown input accepted");
    pcv_model_free(m);
    pcv_st_unmap(&in);
}

int main(void)
{
    if (!tu_tolerances_load())
        return TEST_DONE();
    tu_runtime_setup();
    test_full("mm_small", "mm-tiny", NULL);
    test_full("haiku_multimodal", "mm-haiku-tiny", NULL);
    pcv_error err = {0};
    pcv_cl_device_info *devs = NULL;
    int ndev = pcv_cl_list_devices(&devs, &err);
    free(devs);
    const char *req = getenv("PCV_REQUIRE_OPENCL");
    CHECK(ndev > 0 || !(req && strcmp(req, "0")), "PCV_REQUIRE_OPENCL=1 but no OpenCL device");
    for (int d = 0; d < ndev; d++) {
        char spec[16];
        snprintf(spec, sizeof spec, "%d", d);
        test_full("mm_small", "mm-tiny", spec);
        test_full("haiku_multimodal", "mm-haiku-tiny", spec);
    }
    test_label_masked();
    test_haiku_as_hf();
    test_errors();
    tu_tolerances_free();
    return TEST_DONE();
}
