/* The bundled trained demo classifier (examples/digits) on its held-out split: perceiver-cl,
 * from the PNG files through decoding, PerceiverImageProcessor-equivalent preprocessing and the
 * model, must give the logits PyTorch gave (tests/fixtures/digits/expected.json, written by
 * tools/train_digits.py) within the "image-demo" tolerance, the same prediction for every
 * image, and therefore the same held-out accuracy. */
#include "perceiver/image.h"
#include "perceiver/model.h"
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

int main(void)
{
    char path[4096], model_dir[4096];
    json_error_t je;
    const char *src = getenv("PCV_SOURCE_DIR") ? getenv("PCV_SOURCE_DIR") : ".";
    snprintf(path, sizeof path, "%s/../tolerances.json", tu_fixtures());
    json_t *tols = json_load_file(path, 0, &je);
    CHECK(tols != NULL, "%s: %s", path, je.text);
    json_t *tp = json_object_get(json_object_get(tols, "models"), "image-demo");
    CHECK(tp != NULL, "tolerances.json has no models.image-demo");
    double atol = json_number_value(json_object_get(tp, "atol")), rtol = json_number_value(json_object_get(tp, "rtol"));

    snprintf(path, sizeof path, "%s/digits/expected.json", tu_fixtures());
    json_t *exp = json_load_file(path, 0, &je);
    CHECK(exp != NULL, "%s: %s", path, je.text);
    if (!exp || !tp)
        return TEST_DONE();
    snprintf(model_dir, sizeof model_dir, "%s/%s", src, json_string_value(json_object_get(exp, "model")));

    pcv_error err = {0};
    pcv_model *m = NULL;
    pcv_model_options opt = {.backend.device = getenv("PCV_TEST_DEVICE")};
    CHECK(pcv_model_load(model_dir, &opt, &m, &err) == 0, "%s", err.msg);
    pcv_image_processor proc;
    CHECK(pcv_image_processor_load(&proc, model_dir, &err) == 0, "%s", err.msg);
    json_t *images = json_object_get(exp, "images");
    size_t n = json_array_size(images);
    CHECK(n >= 100, "expected the held-out split (hundreds of images), found %zu", n);
    if (!m || n == 0)
        return TEST_DONE();

    const char **paths = calloc(n, sizeof *paths);
    char **owned = calloc(n, sizeof *owned);
    for (size_t i = 0; i < n; i++) {
        owned[i] = malloc(4096);
        snprintf(owned[i], 4096, "%s/digits/%s", tu_fixtures(),
                 json_string_value(json_object_get(json_array_get(images, i), "file")));
        paths[i] = owned[i];
    }
    float *pixels = NULL;
    int H = 0, W = 0;
    CHECK(pcv_image_load_batch(&proc, paths, (int)n, &pixels, &H, &W, &err) == 0, "%s", err.msg);
    int correct_engine = 0, correct_torch = 0, same_pred = 0, bad_logits = 0;
    double worst = 0;
    enum { BATCH = 64 };
    for (size_t lo = 0; pixels && lo < n; lo += BATCH) {
        int64_t b = (int64_t)(n - lo < BATCH ? n - lo : BATCH);
        pcv_io_tensor in = {.name = "pixel_values", .dtype = PCV_DT_F32, .ndim = 4, .shape = {b, 3, H, W},
                            .data = pixels + lo * (size_t)(3 * H * W)};
        const pcv_io_tensor *outs = NULL;
        int nout = 0;
        CHECK(pcv_model_forward(m, &in, 1, &outs, &nout, &err) == 0, "%s", err.msg);
        const pcv_io_tensor *lg = outs ? pcv_io_find(outs, nout, "logits") : NULL;
        for (int64_t i = 0; lg && i < b; i++) {
            json_t *e = json_array_get(images, lo + (size_t)i);
            json_t *tl = json_object_get(e, "torch_logits");
            int label = (int)json_integer_value(json_object_get(e, "label"));
            int tpred = (int)json_integer_value(json_object_get(e, "torch_pred"));
            int64_t L = lg->shape[1];
            const float *row = (const float *)lg->data + i * L;
            int pred = 0;
            for (int64_t j = 0; j < L; j++) {
                double want = json_number_value(json_array_get(tl, (size_t)j));
                double d = fabs(row[j] - want), lim = atol + rtol * fabs(want);
                bad_logits += !(d <= lim);
                worst = d / lim > worst ? d / lim : worst;
                if (row[j] > row[pred])
                    pred = (int)j;
            }
            correct_engine += pred == label;
            correct_torch += tpred == label;
            same_pred += pred == tpred;
        }
    }
    double acc_e = (double)correct_engine / (double)n, acc_t = json_number_value(json_object_get(exp, "torch_accuracy"));
    printf("held-out images: %zu; accuracy perceiver-cl %.4f, PyTorch %.4f (recorded %.4f); same prediction %d/%zu; "
           "worst logit err/tol %.3f\n",
           n, acc_e, (double)correct_torch / (double)n, acc_t, same_pred, n, worst);
    CHECK(bad_logits == 0, "%d logits outside the image-demo tolerance", bad_logits);
    CHECK(same_pred == (int)n, "%zu predictions differ from PyTorch's", n - (size_t)same_pred);
    CHECK(correct_engine == correct_torch, "accuracy differs: %d vs %d correct", correct_engine, correct_torch);
    CHECK(fabs(acc_t - (double)correct_torch / (double)n) < 1e-6, "recorded torch_accuracy disagrees with torch_pred");
    CHECK(acc_e >= 0.9, "the demo model should be accurate (>= 90%%), got %.3f", acc_e);
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(paths);
    free(pixels);
    pcv_model_free(m);
    json_decref(exp);
    json_decref(tols);
    return TEST_DONE();
}
