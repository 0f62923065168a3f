/* Optical flow of whole frames (perceiver/flow.h) against outside references:
 *  - the tile grid against DeepMind's compute_grid_indices where it is valid, and the repairs
 *    where it is not (tools/flow_ref.py documents both);
 *  - tests/fixtures/flow_tiles: frame pairs larger than the tile, exactly the tile, on a grid
 *    DeepMind's code gets wrong, and a 3-frame sequence, against transformers' per-tile logits
 *    blended by tools/flow_ref.py (checked bit for bit against DeepMind's colab code), on the
 *    CPU path and every OpenCL device; the .flo writer byte for byte;
 *  - tests/fixtures/haiku_flow: DeepMind's own Haiku model pickled like
 *    optical_flow_checkpoint.pystate, against DeepMind's colab pipeline run in JAX (x20 flow in
 *    pixels, one tile's logits and latents), and under --numerics hf against transformers;
 *  - tests/fixtures/flow_color: the Middlebury colour wheel against flow_vis;
 *  - bad input: frames of different sizes, frames smaller than the tile (refused; --pad). */
#include "formats/formats.h"
#include "perceiver/flow.h"
#include "backend/opencl.h"
#include "testutil.h"
#include "tu_tolerance.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

static const float *tensor_f32(const pcv_safetensors *st, const char *name, int64_t *n)
{
    const pcv_st_tensor *t = pcv_st_find(st, name);
    CHECK(t && t->dtype == PCV_DT_F32, "fixture tensor '%s' missing or not F32", name);
    if (n)
        *n = t ? t->numel : 0;
    return t ? t->data : NULL; /* safetensors data of these small fixtures are 4-byte aligned */
}

static void test_grid(void)
{
    int o[64];
    /* Sintel 436x1024 with the published 368x496 tile: ys [0, 68], xs [0, 476, 528] */
    int n = pcv_flow_grid(436, 1024, 368, 496, 20, o, 32);
    int want[] = {0, 0, 0, 476, 0, 528, 68, 0, 68, 476, 68, 528};
    CHECK(n == 6 && !memcmp(o, want, sizeof want), "Sintel grid: %d tiles", n);
    /* a frame of exactly the tile size: one tile (DeepMind's list has it four times, #265) */
    n = pcv_flow_grid(368, 496, 368, 496, 20, o, 32);
    CHECK(n == 1 && o[0] == 0 && o[1] == 0, "tile-sized frame: %d tiles", n);
    /* 700 rows: DeepMind's ys are [0, 348, 332] and the tile at 348 leaves the frame; clamped */
    n = pcv_flow_grid(700, 496, 368, 496, 20, o, 32);
    CHECK(n == 2 && o[0] == 0 && o[2] == 332, "700-row frame: %d tiles, second origin %d", n, o[2]);
    CHECK(pcv_flow_grid(300, 496, 368, 496, 20, o, 32) == -1, "a frame smaller than the tile has no grid");
    for (int h = 368; h < 2000; h += 37) /* every origin inside the frame, no duplicates */
        for (int w = 496; w < 2000; w += 53) {
            int org[400];
            int k = pcv_flow_grid(h, w, 368, 496, 20, org, 200);
            bool ok = k > 0 && k <= 200;
            for (int i = 0; ok && i < k; i++) {
                ok = org[2 * i] >= 0 && org[2 * i] + 368 <= h && org[2 * i + 1] >= 0 && org[2 * i + 1] + 496 <= w;
                for (int j = 0; ok && j < i; j++)
                    ok = org[2 * i] != org[2 * j] || org[2 * i + 1] != org[2 * j + 1];
            }
            CHECK(ok, "grid of %dx%d", h, w);
        }
    /* more than 4096 origins on one axis (a tall frame, overlap = tile - 1): every origin is
     * kept, the last one flush with the border (a fixed 4096-entry table dropped the bottom rows,
     * whose pixels then had no tile: NaN flow) */
    int *big = malloc(sizeof(int) * 2 * 5000);
    n = pcv_flow_grid(5000, 64, 48, 64, 47, big, 5000);
    CHECK(n == 5000 - 48 + 1 && big[2 * (n - 1)] == 5000 - 48 && big[2 * 4096] == 4096, "tall frame: %d tiles, last y %d",
          n, n > 0 ? big[2 * (n - 1)] : -1);
    free(big);
}

static bool load_img(const char *dir, const char *name, pcv_image *img)
{
    char path[4200];
    pcv_error err = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(pcv_image_load(path, img, &err) == 0, "%s", err.msg);
    return img->rgb != NULL;
}

/* one flow_tiles case on one device */
static void test_case(const char *casename, const char *device)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/flow_tiles/%s", tu_fixtures(), casename);
    snprintf(path, sizeof path, "%s/meta.json", dir);
    json_error_t je;
    json_t *meta = json_load_file(path, 0, &je);
    CHECK(meta != NULL, "%s: %s", path, je.text);
    if (!meta)
        return;
    pcv_error err = {0};
    pcv_model *m = NULL;
    snprintf(path, sizeof path, "%s/flow_tiles/model", tu_fixtures());
    pcv_model_options opt = {.backend.device = device};
    CHECK(pcv_model_load(path, &opt, &m, &err) == 0, "%s", err.msg);
    pcv_safetensors ex = {0};
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK(pcv_st_map(&ex, path, &err) == 0, "%s", err.msg);
    json_t *pairs = json_object_get(meta, "pairs");
    int ntiles = (int)json_array_size(json_object_get(meta, "tiles"));
    int64_t n;
    const float *want = tensor_f32(&ex, "flow", &n);
    tol t = model_tol(json_string_value(json_object_get(json_object_get(meta, "tolerance"), "flow")));
    printf("flow_tiles/%s on %s: %zu pair(s), %d tiles\n", casename, device ? device : "cpu", json_array_size(pairs),
           ntiles);
    for (size_t p = 0; m && want && p < json_array_size(pairs); p++) {
        json_t *pr = json_array_get(pairs, p);
        pcv_image a = {0}, b = {0};
        if (load_img(dir, json_string_value(json_array_get(pr, 0)), &a) &&
            load_img(dir, json_string_value(json_array_get(pr, 1)), &b)) {
            size_t sz = (size_t)a.width * a.height * 2;
            float *f = malloc(sz * sizeof *f);
            pcv_flow_info info;
            pcv_flow_options fo = {.batch = p == 0 ? 1 : 3}; /* results do not depend on the batch */
            CHECK(pcv_flow_pair(m, &a, &b, &fo, f, &info, &err) == 0, "%s: %s", casename, err.msg);
            CHECK(info.tiles == ntiles, "%s: %d tiles, the fixture %d", casename, info.tiles, ntiles);
            char what[128];
            snprintf(what, sizeof what, "%s pair %zu flow (px)", casename, p);
            CHECK((int64_t)(sz * json_array_size(pairs)) == n, "%s: flow size", casename);
            CHECK(tol_compare(what, f, want + p * sz, (int64_t)sz, t) == 0, "%s: flow outside tolerance", what);
            free(f);
        }
        pcv_image_free(&a);
        pcv_image_free(&b);
    }
    pcv_st_unmap(&ex);
    pcv_model_free(m);
    json_decref(meta);
}

/* .flo: the expected flow written by pcv_flo_write is byte-identical to the fixture's file */
static void test_flo(void)
{
    char dir[4096], path[4200], out[4200];
    pcv_error err = {0};
    snprintf(dir, sizeof dir, "%s/flow_tiles/a_larger", tu_fixtures());
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    pcv_safetensors ex = {0};
    CHECK(pcv_st_map(&ex, path, &err) == 0, "%s", err.msg);
    const pcv_st_tensor *t = pcv_st_find(&ex, "flow");
    if (t) {
        snprintf(out, sizeof out, "%s/test_flow.%d.flo", tu_tmpdir(), (int)getpid());
        CHECK(pcv_flo_write(out, t->data, (int)t->shape[2], (int)t->shape[1], &err) == 0, "%s", err.msg);
        size_t n1, n2;
        unsigned char *a = tu_read_file(out, &n1);
        snprintf(path, sizeof path, "%s/expected.flo", dir);
        unsigned char *b = tu_read_file(path, &n2);
        CHECK(a && b && n1 == n2 && !memcmp(a, b, n1), ".flo bytes differ from the reference writer's");
        float *f = NULL;
        int w = 0, h = 0;
        CHECK(pcv_flo_read(out, &f, &w, &h, &err) == 0 && w == t->shape[2] && h == t->shape[1] &&
                  !memcmp(f, t->data, t->nbytes),
              ".flo round trip: %s", err.msg);
        free(f);
        free(a);
        free(b);
        remove(out);
        /* a file that is not .flo */
        CHECK(pcv_flo_read(path, &f, &w, &h, &err) == 0, "%s", err.msg);
        free(f);
        snprintf(path, sizeof path, "%s/frame1.png", dir);
        memset(&err, 0, sizeof err);
        CHECK(pcv_flo_read(path, &f, &w, &h, &err) == PCV_ERR_FORMAT && strstr(err.msg, "not a .flo"), "png as .flo: %s",
              err.msg);
    }
    pcv_st_unmap(&ex);
}

/* DeepMind's own model from a pickle, haiku numerics (the default for pickles) and hf numerics */
static void test_haiku(const char *device)
{
    char dir[4096], path[4200];
    pcv_error err = {0};
    snprintf(dir, sizeof dir, "%s/haiku_flow", tu_fixtures());
    pcv_safetensors ex = {0}, exhf = {0};
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK(pcv_st_map(&ex, path, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/expected_hf.safetensors", dir);
    CHECK(pcv_st_map(&exhf, path, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/optical_flow_checkpoint.pystate", dir);
    printf("haiku_flow on %s\n", device ? device : "cpu");
    for (int prof = 0; prof < 2; prof++) {
        pcv_model *m = NULL;
        pcv_model_options opt = {.backend.device = device, .numerics = prof ? PCV_NUMERICS_HF : PCV_NUMERICS_AUTO};
        CHECK(pcv_model_load(path, &opt, &m, &err) == 0, "%s", err.msg);
        if (!m)
            continue;
        const pcv_safetensors *e = prof ? &exhf : &ex;
        tol t = model_tol(prof ? "flow-tiny" : "flow-haiku-tiny");
        CHECK(pcv_model_numerics(m) == (prof ? PCV_NUMERICS_HF : PCV_NUMERICS_HAIKU), "numerics of a pickle");
        /* one tile through the model: DeepMind's transformed function (x20) / transformers (/100) */
        const pcv_st_tensor *in = pcv_st_find(&ex, "inputs");
        if (in) {
            pcv_io_tensor io = {.name = "inputs", .dtype = PCV_DT_F32, .ndim = in->ndim, .data = (void *)in->data};
            memcpy(io.shape, in->shape, sizeof in->shape);
            const pcv_io_tensor *outs;
            int nout;
            CHECK(pcv_model_forward(m, &io, 1, &outs, &nout, &err) == 0, "%s", err.msg);
            const char *names[2] = {"logits", "last_hidden_state"};
            for (int k = 0; k < 2 && outs; k++) {
                int64_t n;
                const float *want = tensor_f32(e, names[k], &n);
                const pcv_io_tensor *o = pcv_io_find(outs, nout, names[k]);
                char what[96];
                snprintf(what, sizeof what, "%s (%s numerics)", names[k], prof ? "hf" : "haiku");
                CHECK(o && want && tol_compare(what, o->data, want, n, t) == 0, "haiku_flow %s", what);
            }
        }
        /* the colab's whole pipeline on the frames (haiku numerics: DeepMind's flow) */
        pcv_image a = {0}, b = {0};
        if (!prof && load_img(dir, "frame1.png", &a) && load_img(dir, "frame2.png", &b)) {
            int64_t n;
            const float *want = tensor_f32(&ex, "flow", &n);
            float *f = malloc((size_t)a.width * a.height * 2 * sizeof *f);
            pcv_flow_info info;
            CHECK(pcv_flow_pair(m, &a, &b, NULL, f, &info, &err) == 0, "%s", err.msg);
            CHECK(info.tiles == 4, "haiku_flow: %d tiles", info.tiles);
            CHECK(want && n == (int64_t)a.width * a.height * 2 && tol_compare("flow (colab pipeline, px)", f, want, n, t) == 0,
                  "haiku_flow: flow outside tolerance");
            free(f);
        }
        pcv_image_free(&a);
        pcv_image_free(&b);
        pcv_model_free(m);
    }
    pcv_st_unmap(&ex);
    pcv_st_unmap(&exhf);
}

static void test_errors(void)
{
    char path[4200];
    pcv_error err = {0};
    pcv_model *m = NULL;
    snprintf(path, sizeof path, "%s/flow_tiles/model", tu_fixtures());
    CHECK(pcv_model_load(path, NULL, &m, &err) == 0, "%s", err.msg);
    if (!m)
        return;
    pcv_image a = {.width = 70, .height = 50}, b = {.width = 70, .height = 51}, s = {.width = 40, .height = 30};
    a.rgb = calloc(70 * 51 * 3, 1), b.rgb = calloc(70 * 51 * 3, 1), s.rgb = calloc(40 * 30 * 3, 1);
    float *f = malloc(70 * 51 * 2 * sizeof *f);
    CHECK(pcv_flow_pair(m, &a, &b, NULL, f, NULL, &err) == PCV_ERR_INPUT && strstr(err.msg, "differ in size"),
          "frames of different sizes: %s", err.msg);
    CHECK(pcv_flow_pair(m, &s, &s, NULL, f, NULL, &err) == PCV_ERR_INPUT && strstr(err.msg, "smaller than") &&
              strstr(err.msg, "pad"),
          "a frame below the tile: %s", err.msg);
    pcv_flow_options po = {.pad = true};
    pcv_flow_info info;
    for (int i = 0; i < 40 * 30 * 3; i++)
        s.rgb[i] = (unsigned char)(i * 7);
    CHECK(pcv_flow_pair(m, &s, &s, &po, f, &info, &err) == 0 && info.tiles == 1, "padded small frame: %s", err.msg);
    bool finite = true;
    for (int i = 0; i < 40 * 30 * 2; i++)
        finite = finite && isfinite(f[i]);
    CHECK(finite, "padded flow is finite");
    po.min_overlap = 48;
    CHECK(pcv_flow_pair(m, &a, &a, &po, f, NULL, &err) == PCV_ERR_INPUT && strstr(err.msg, "overlap"),
          "overlap as large as the tile: %s", err.msg);
    free(a.rgb), free(b.rgb), free(s.rgb), free(f);
    pcv_model_free(m);
    /* a model that is not a flow model */
    snprintf(path, sizeof path, "%s/image_fourier", tu_fixtures());
    CHECK(pcv_model_load(path, NULL, &m, &err) == 0, "%s", err.msg);
    pcv_image c = {.width = 64, .height = 64, .rgb = calloc(64 * 64 * 3, 1)};
    float *g = malloc(64 * 64 * 2 * sizeof *g);
    CHECK(m && pcv_flow_pair(m, &c, &c, NULL, g, NULL, &err) == PCV_ERR_UNSUPPORTED, "flow with an image classifier");
    free(c.rgb), free(g);
    pcv_model_free(m);
}

static void test_color(void)
{
    char path[4200];
    pcv_error err = {0};
    snprintf(path, sizeof path, "%s/flow_color/flow.safetensors", tu_fixtures());
    pcv_safetensors st = {0};
    CHECK(pcv_st_map(&st, path, &err) == 0, "%s", err.msg);
    const pcv_st_tensor *fl = pcv_st_find(&st, "flow");
    const char *names[2] = {"rgb_auto", "rgb_max"};
    for (int k = 0; fl && k < 2; k++) {
        const pcv_st_tensor *want = pcv_st_find(&st, names[k]);
        int H = (int)fl->shape[0], W = (int)fl->shape[1];
        unsigned char *rgb = malloc((size_t)W * H * 3);
        float used = pcv_flow_to_rgb(fl->data, W, H, k ? 0.5f : 0.0f, rgb);
        long bad = 0;
        for (size_t i = 0; want && i < (size_t)W * H * 3; i++)
            bad += rgb[i] != ((const unsigned char *)want->data)[i];
        CHECK(want && bad == 0, "flow colours (%s): %ld of %d values differ from flow_vis", names[k], bad, W * H * 3);
        CHECK(k || fabsf(used - 4.8f) < 1e-5f, "normalisation %g", (double)used);
        free(rgb);
    }
    pcv_st_unmap(&st);
}

int main(void)
{
    if (!tu_tolerances_load())
        return TEST_DONE();
    tu_runtime_setup();
    static const char *cases[] = {"a_larger", "b_exact", "c_repaired", "d_sequence"};
    test_grid();
    test_flo();
    test_color();
    test_errors();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        test_case(cases[i], NULL);
    test_haiku(NULL);
    pcv_error err = {0};
    pcv_cl_device_info *devs = NULL;
    int ndev = pcv_cl_list_devices(&devs, &err);
    const char *req = getenv("PCV_REQUIRE_OPENCL");
    CHECK(ndev > 0 || !(req && strcmp(req, "0")), "PCV_REQUIRE_OPENCL=1 but no OpenCL device");
    for (int d = 0; d < ndev; d++) {
        char spec[16];
        snprintf(spec, sizeof spec, "%d", d);
        int64_t before = pcv_cl_launch_count();
        test_case("a_larger", spec);
        test_case("d_sequence", spec);
        test_haiku(spec);
        CHECK(pcv_cl_launch_count() - before > 100, "OpenCL device %d: only %lld kernels ran", d,
              (long long)(pcv_cl_launch_count() - before));
    }
    free(devs);
    tu_tolerances_free();
    return TEST_DONE();
}
