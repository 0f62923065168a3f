/* perceiver-cl: the jobs the command-line tool does, as library calls: image classification
 * (softmax and top-k included) and masked-byte filling. A C program needs nothing else:
 *
 *     pcv_model *m;
 *     pcv_error err;
 *     if (pcv_model_load("vision-perceiver-fourier", NULL, &m, &err)) { puts(err.msg); return 1; }
 *     pcv_class_score top[5];
 *     const char *files[] = {"cat.jpg"};
 *     if (pcv_classify_files(m, files, 1, 5, top, &err) == PCV_OK)
 *         printf("%s %.1f%%\n", top[0].label, 100 * top[0].probability);
 *     pcv_model_free(m);
 */
#ifndef PERCEIVER_TASKS_H
#define PERCEIVER_TASKS_H

#include "perceiver/image.h"
#include "perceiver/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- image classification -------------------------------------------------------------------- */

typedef struct pcv_class_score {
    int index;         /* class id */
    float probability; /* softmax over all classes */
    float logit;
    const char *label; /* config id2label (owned by the model), or NULL */
} pcv_class_score;

/* The k largest entries of a softmax over logits[n], most likely first (ties: lower index
 * first). index[k] and prob[k] are filled; k is clamped to n. */
PCV_API void pcv_top_k(const float *logits, int n, int k, int *index, float *prob);

/* The image processor of a model: the preprocessor_config.json beside its checkpoint
 * (PerceiverImageProcessor defaults without one), or DeepMind's colab pipeline when the model
 * runs the haiku numerics profile. */
PCV_API pcv_status pcv_model_image_processor(const pcv_model *m, pcv_image_processor *p, pcv_error *err);

/* Classifies preprocessed images pixel_values [n][3][height][width] in one forward pass.
 * out[i * k + r] receives image i's r-th most likely class (k clamped to num_labels). */
PCV_API pcv_status pcv_classify_pixels(pcv_model *m, const float *pixel_values, int n, int height, int width,
                                       int k, pcv_class_score *out, pcv_error *err);

/* Decodes, preprocesses (pcv_model_image_processor) and classifies n PNG/JPEG files in one
 * forward pass; out as above. */
PCV_API pcv_status pcv_classify_files(pcv_model *m, const char *const *paths, int n, int k, pcv_class_score *out,
                                      pcv_error *err);

/* ---- masked-byte filling ------------------------------------------------------------------------ */

/* One filled text. */
typedef struct pcv_fill_result {
    size_t len;               /* bytes of the text (after mask syntax) */
    unsigned char *filled;    /* the text, each masked byte replaced by its most likely byte; NUL-terminated */
    size_t num_masked;
    size_t *positions;        /* the masked byte positions [num_masked] */
    int top_k;
    unsigned char *candidates; /* [num_masked][top_k] bytes, most likely first */
    float *probabilities;      /* [num_masked][top_k]: softmax over the whole vocabulary */
    bool *has_original;        /* [num_masked]: the original byte is known ({text} syntax) */
    unsigned char *original;   /* [num_masked] original bytes where known */
} pcv_fill_result;

/* Fills the masked bytes of n texts written in the mask syntax of pcv_parse_masked, in one
 * forward pass of a masked language model. Only byte tokens are candidates (special tokens never
 * fill a byte); probabilities are over the whole vocabulary. Texts get [CLS]/[SEP] around them
 * under the hf profile and are fed as raw bytes under the haiku profile (DeepMind's colab).
 * out[n] receives the results (free them with pcv_fill_results_free). Every text is parsed and
 * checked against the model's positions before anything runs. */
PCV_API pcv_status pcv_fill_masked(pcv_model *m, const char *const *texts, int n, int top_k,
                                   pcv_fill_result *out, pcv_error *err);
PCV_API void pcv_fill_results_free(pcv_fill_result *r, int n);

#ifdef __cplusplus
}
#endif
#endif
