/* Image preprocessing for the Perceiver image classifiers.
 *
 * Two pipelines (include/perceiver/image.h):
 *  - HF: PerceiverImageProcessor (PIL backend): Pillow's resampler (resample.c), its crop and
 *    normalisation.
 *  - haiku: DeepMind's colab (spec haiku-vs-hf I1-I3): OpenCV INTER_CUBIC (resample.c),
 *    rounded-up crop offsets, float64 normalisation.
 * The processor configuration (preprocessor_config.json) is read here too.
 *
 * Exactness relies on IEEE double/float arithmetic without contraction into FMAs; that is
 * GCC's behaviour in ISO C mode (-std=c11 implies -ffp-contract=off), which the build uses. */
#include "perceiver/image.h"
#include "util/error.h"
#include "util/limits.h"
#include "util/fileutil.h"

#include "util/jsonutil.h"
#include "image/resample.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- processor configuration ---------------------------------------------------------------- */

void pcv_image_processor_init(pcv_image_processor *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->pipeline = PCV_IMAGE_PIPELINE_HF;
    p->do_center_crop = p->do_resize = p->do_rescale = p->do_normalize = true;
    p->crop_h = p->crop_w = 256;
    p->size_h = p->size_w = 224;
    p->resample = PCV_RESAMPLE_BICUBIC;
    p->rescale_factor = 1.0 / 255.0;
    /* IMAGENET_DEFAULT_MEAN / IMAGENET_DEFAULT_STD */
    p->mean[0] = 0.485, p->mean[1] = 0.456, p->mean[2] = 0.406;
    p->std[0] = 0.229, p->std[1] = 0.224, p->std[2] = 0.225;
}

void pcv_image_processor_init_haiku(pcv_image_processor *p)
{
    pcv_image_processor_init(p);
    if (p)
        p->pipeline = PCV_IMAGE_PIPELINE_HAIKU;
}

#define PROC_DIM_MAX 65536
#define PROC_FILE_MAX (1u << 20)


static int j_bool(const char *path, json_t *root, const char *key, bool *out, pcv_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: key '%s': expected true or false, got %s",
                             path, key, pcv_json_kind(v));
    *out = json_is_true(v);
    return 0;
}

static int j_dim(const char *path, const char *what, json_t *v, int *out, pcv_error *err)
{
    double d = json_is_integer(v) ? (double)json_integer_value(v)
               : json_is_real(v)  ? json_real_value(v)
                                  : -1.0;
    if (!json_is_number(v) || d != floor(d) || d < 1 || d > PROC_DIM_MAX)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: key '%s': expected an integer in [1, %d], got %s", path, what,
                             PROC_DIM_MAX, json_is_number(v) ? "an out-of-range number" : pcv_json_kind(v));
    *out = (int)d;
    return 0;
}

/* size / crop_size: an int (square, transformers' default_to_square) or {"height", "width"}. */
static int j_size(const char *path, json_t *root, const char *key, int *h, int *w,
                  pcv_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_number(v)) {
        int s;
        int rc = j_dim(path, key, v, &s, err);
        if (!rc)
            *h = *w = s;
        return rc;
    }
    if (!json_is_object(v))
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: key '%s': expected an integer or {\"height\", \"width\"}, got %s",
                             path, key, pcv_json_kind(v));
    json_t *jh = json_object_get(v, "height"), *jw = json_object_get(v, "width");
    if (!jh || !jw) {
        const char *other = json_object_get(v, "shortest_edge") ? " ('shortest_edge' sizes are "
                                                                  "not used by Perceiver)"
                                                                : "";
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "%s: key '%s': needs 'height' and 'width'%s", path, key, other);
    }
    char what[64];
    int th, tw;
    snprintf(what, sizeof what, "%s.height", key);
    int rc = j_dim(path, what, jh, &th, err);
    if (rc)
        return rc;
    snprintf(what, sizeof what, "%s.width", key);
    rc = j_dim(path, what, jw, &tw, err);
    if (rc)
        return rc;
    *h = th, *w = tw;
    return 0;
}

/* image_mean / image_std: three numbers, or one for all channels. */
static int j_triple(const char *path, json_t *root, const char *key, bool positive, double out[3],
                    pcv_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    double t[3];
    if (json_is_number(v)) {
        t[0] = t[1] = t[2] = json_number_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 3) {
        for (int i = 0; i < 3; i++) {
            json_t *e = json_array_get(v, (size_t)i);
            if (!json_is_number(e))
                return pcv_set_error(err, PCV_ERR_FORMAT,
                                     "%s: key '%s[%d]': expected a number, got %s", path, key, i,
                                     pcv_json_kind(e));
            t[i] = json_number_value(e);
        }
    } else {
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: key '%s': expected 3 numbers (one per RGB channel) or one number",
                             path, key);
    }
    for (int i = 0; i < 3; i++)
        if (!isfinite(t[i]) || (positive && !(t[i] > 0)))
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: key '%s': bad value %g", path, key,
                                 t[i]);
    memcpy(out, t, sizeof t);
    return 0;
}

pcv_status pcv_image_processor_load(pcv_image_processor *p, const char *path, pcv_error *err)
{
    if (!p || !path)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_processor_load: NULL argument");
    pcv_image_processor_init(p);
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if ((size_t)snprintf(file, sizeof file, "%s/preprocessor_config.json", path) >= sizeof file)
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: path too long", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    if (stat(file, &st) != 0) {
        if (errno == ENOENT)
            return 0; /* no preprocessor config: PerceiverImageProcessor defaults */
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot stat: %s", file, strerror(errno));
    }
    json_error_t jerr;
    char *text = NULL;
    size_t tlen = 0;
    int rc = pcv_read_file(file, "an image processor config", PROC_FILE_MAX, &text, &tlen, err);
    if (rc)
        return rc;
    json_t *root = json_loadb(text, tlen, 0, &jerr);
    free(text);
    if (!root)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", file, jerr.line,
                             jerr.column, jerr.text);
    if (!json_is_object(root)) {
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: expected a JSON object", file);
        goto out;
    }
    if ((rc = j_bool(file, root, "do_center_crop", &p->do_center_crop, err)) ||
        (rc = j_bool(file, root, "do_resize", &p->do_resize, err)) ||
        (rc = j_bool(file, root, "do_rescale", &p->do_rescale, err)) ||
        (rc = j_bool(file, root, "do_normalize", &p->do_normalize, err)) ||
        (rc = j_size(file, root, "crop_size", &p->crop_h, &p->crop_w, err)) ||
        (rc = j_size(file, root, "size", &p->size_h, &p->size_w, err)) ||
        (rc = j_triple(file, root, "image_mean", false, p->mean, err)) ||
        (rc = j_triple(file, root, "image_std", true, p->std, err)))
        goto out;
    json_t *v = json_object_get(root, "resample");
    if (v && !json_is_null(v)) {
        int r = -1;
        if (json_is_integer(v))
            r = (int)json_integer_value(v);
        if (!pcv_resample_supported(r)) {
            rc = pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                               "%s: key 'resample': %s is not a supported Pillow filter "
                               "(LANCZOS=1, BILINEAR=2, BICUBIC=3, BOX=4, HAMMING=5)",
                               file, json_is_integer(v) ? pcv_resample_name(r) : pcv_json_kind(v));
            goto out;
        }
        p->resample = r;
    }
    v = json_object_get(root, "rescale_factor");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: key 'rescale_factor': expected a number",
                               file);
            goto out;
        }
        p->rescale_factor = json_number_value(v);
    }
out:
    json_decref(root);
    if (rc)
        pcv_image_processor_init(p);
    return rc;
}

/* ---- pipeline ------------------------------------------------------------------------------- */

static int floordiv2(int v)
{
    return v >= 0 ? v / 2 : -((-v + 1) / 2);
}

/* Crop window (may extend past the image: zero padding) of the input. */
typedef struct crop_win {
    int top, left, h, w; /* output pixel (y, x) reads input (top + y, left + x) */
} crop_win;

/* Side of the center crop: transformers computes int((size / crop_size) * min(H, W)) in double
 * (0.875 * min for the defaults); the colab's int32(0.875 * float32(min)) is the same number. */
static int crop_side(int size, int crop, int min_dim)
{
    double v = ((double)size / crop) * min_dim;
    return v >= (double)INT_MAX ? INT_MAX : (int)v;
}

/* Offset of a crop of side c in a dimension of n pixels.
 * HF (image_transforms.center_crop): top = (n - c) // 2; when c > n the image is first padded
 * by ceil((c - n) / 2) zeros before, so the window starts ceil((c-n)/2) + (n-c)//2 (= 0)
 * padded pixels in, i.e. at input offset (n - c) // 2.
 * haiku (colab): ((n - c) + 1) // 2, rounding up. */
static int crop_offset(int n, int c, bool round_up)
{
    return round_up ? floordiv2(n - c + 1) : floordiv2(n - c);
}

static int plan(const pcv_image_processor *p, int w, int h, crop_win *cw, int *ow, int *oh,
                pcv_error *err)
{
    if (!p)
        return pcv_set_error(err, PCV_ERR_INPUT, "image processor is NULL");
    if (w <= 0 || h <= 0)
        return pcv_set_error(err, PCV_ERR_INPUT, "image has no pixels (%dx%d)", w, h);
    if (p->pipeline != PCV_IMAGE_PIPELINE_HF && p->pipeline != PCV_IMAGE_PIPELINE_HAIKU)
        return pcv_set_error(err, PCV_ERR_INPUT, "unknown image pipeline %d", (int)p->pipeline);
    if ((p->do_center_crop && (p->crop_h <= 0 || p->crop_w <= 0 || p->size_h <= 0 ||
                               p->size_w <= 0)) ||
        (p->do_resize && (p->size_h <= 0 || p->size_w <= 0)))
        return pcv_set_error(err, PCV_ERR_INPUT, "image processor has a bad size (size %dx%d, "
                             "crop_size %dx%d)", p->size_w, p->size_h, p->crop_w, p->crop_h);
    if (p->pipeline == PCV_IMAGE_PIPELINE_HF && p->do_resize && !pcv_resample_supported(p->resample))
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "resampling filter %d (%s) is not supported", p->resample,
                             pcv_resample_name(p->resample));
    crop_win c = {0, 0, h, w};
    if (p->do_center_crop) {
        int m = w < h ? w : h;
        c.h = crop_side(p->size_h, p->crop_h, m);
        c.w = crop_side(p->size_w, p->crop_w, m);
        /* An empty crop (a 1-pixel-wide image with the 0.875 ratio): transformers hands Pillow
         * an empty image, whose resize is all black; we do the same. Without a resize, or in
         * the colab pipeline (cv2.resize refuses empty input), it is an error. */
        if ((c.h < 1 || c.w < 1) && (!p->do_resize || p->pipeline == PCV_IMAGE_PIPELINE_HAIKU))
            return pcv_set_error(err, PCV_ERR_INPUT,
                                 "a %dx%d image is too small: its center crop (%g of the short "
                                 "side) would be empty",
                                 w, h, (double)p->size_h / p->crop_h);
        if ((int64_t)c.h * c.w > pcv_limits_now()->image_pixels)
            return pcv_set_error(err, PCV_ERR_INPUT, "center crop of %dx%d pixels is over %s", c.w, c.h,
                                 PCV_LIMIT_TEXT("image_pixels"));
        bool up = p->pipeline == PCV_IMAGE_PIPELINE_HAIKU;
        c.top = crop_offset(h, c.h, up);
        c.left = crop_offset(w, c.w, up);
    }
    *cw = c;
    *ow = p->do_resize ? p->size_w : c.w;
    *oh = p->do_resize ? p->size_h : c.h;
    if ((int64_t)*ow * *oh > pcv_limits_now()->image_pixels)
        return pcv_set_error(err, PCV_ERR_INPUT, "the processed image of %dx%d pixels (preprocessor size) is over %s",
                             *ow, *oh, PCV_LIMIT_TEXT("image_pixels"));
    return 0;
}

pcv_status pcv_image_output_size(const pcv_image_processor *p, int w, int h, int *out_w, int *out_h,
                          pcv_error *err)
{
    crop_win c = {0, 0, 0, 0};
    int ow = 0, oh = 0;
    int rc = plan(p, w, h, &c, &ow, &oh, err);
    if (rc)
        return rc;
    if (out_w)
        *out_w = ow;
    if (out_h)
        *out_h = oh;
    return 0;
}

pcv_status pcv_image_preprocess_u8(const pcv_image_processor *p, const pcv_image *img, pcv_image *out,
                            pcv_error *err)
{
    if (!img || !img->rgb || !out)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_preprocess_u8: NULL image");
    out->rgb = NULL;
    out->width = out->height = 0;
    crop_win c = {0, 0, 0, 0};
    int ow = 0, oh = 0;
    int rc = plan(p, img->width, img->height, &c, &ow, &oh, err);
    if (rc)
        return rc;
    if (c.h < 1 || c.w < 1) { /* empty crop, resized by Pillow to black (see plan) */
        out->rgb = calloc((size_t)ow * oh, 3);
        if (!out->rgb)
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory for a %dx%d image", ow, oh);
        out->width = ow;
        out->height = oh;
        return 0;
    }
    /* 1. crop, with zeros outside the image */
    unsigned char *crop = malloc((size_t)c.w * c.h * 3);
    if (!crop)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory for a %dx%d crop", c.w, c.h);
    for (int y = 0; y < c.h; y++) {
        unsigned char *o = crop + (size_t)y * c.w * 3;
        int sy = c.top + y;
        if (sy < 0 || sy >= img->height) {
            memset(o, 0, (size_t)c.w * 3);
            continue;
        }
        const unsigned char *in = img->rgb + (size_t)sy * img->width * 3;
        for (int x = 0; x < c.w; x++) {
            int sx = c.left + x;
            if (sx < 0 || sx >= img->width) {
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = 0;
            } else {
                memcpy(o + 3 * x, in + 3 * sx, 3);
            }
        }
    }
    if (!p->do_resize) {
        out->rgb = crop;
        out->width = c.w;
        out->height = c.h;
        return 0;
    }
    /* 2. resize */
    unsigned char *res = malloc((size_t)ow * oh * 3);
    if (!res) {
        free(crop);
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory for a %dx%d image", ow, oh);
    }
    if (p->pipeline == PCV_IMAGE_PIPELINE_HAIKU)
        rc = pcv_image_resize_cv_cubic(crop, c.w, c.h, res, ow, oh, err);
    else
        rc = pcv_image_resize_pil(crop, c.w, c.h, res, ow, oh, p->resample, p->resize_flags,
                                  err);
    free(crop);
    if (rc) {
        free(res);
        return rc;
    }
    out->rgb = res;
    out->width = ow;
    out->height = oh;
    return 0;
}

/* 3-4. uint8 -> float for every possible value, per channel.
 * HF: rescale is float32(float64(v) * factor) (image_transforms.rescale upcasts, then casts);
 * normalize casts mean/std to float32 and computes (x - mean) / std in float32. Without
 * rescale, normalize starts from float32(v).
 * haiku: float32((v - 255*mean) / (255*std)) in float64 when rescaling and normalizing. */
static void value_table(const pcv_image_processor *p, float lut[3][256])
{
    for (int c = 0; c < 3; c++) {
        float m = (float)p->mean[c], s = (float)p->std[c];
        for (int v = 0; v < 256; v++) {
            if (p->pipeline == PCV_IMAGE_PIPELINE_HAIKU && p->do_rescale && p->do_normalize) {
                lut[c][v] = (float)(((double)v - 255.0 * p->mean[c]) / (255.0 * p->std[c]));
                continue;
            }
            float x = p->do_rescale ? (float)((double)v * p->rescale_factor) : (float)v;
            if (p->do_normalize)
                x = (x - m) / s;
            lut[c][v] = x;
        }
    }
}

pcv_status pcv_image_preprocess(const pcv_image_processor *p, const pcv_image *img, float *out_chw,
                         size_t cap, pcv_error *err)
{
    if (!out_chw)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_preprocess: output is NULL");
    int ow = 0, oh = 0;
    int rc = pcv_image_output_size(p, img ? img->width : 0, img ? img->height : 0, &ow, &oh, err);
    if (rc)
        return rc;
    size_t plane = (size_t)ow * oh;
    if (cap < 3 * plane)
        return pcv_set_error(err, PCV_ERR_SHAPE,
                             "output buffer holds %zu floats, [3][%d][%d] needs %zu", cap, oh, ow,
                             3 * plane);
    pcv_image u8;
    rc = pcv_image_preprocess_u8(p, img, &u8, err);
    if (rc)
        return rc;
    float lut[3][256];
    value_table(p, lut);
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++)
            out_chw[(size_t)c * plane + i] = lut[c][u8.rgb[3 * i + c]];
    pcv_image_free(&u8);
    return 0;
}

pcv_status pcv_image_load_batch(const pcv_image_processor *p, const char *const *paths, int n,
                         float **out, int *out_h, int *out_w, pcv_error *err)
{
    if (!out || !paths || n <= 0)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_load_batch: no images");
    *out = NULL;
    float *buf = NULL;
    int bh = 0, bw = 0;
    size_t per = 0;
    for (int i = 0; i < n; i++) {
        pcv_image img;
        pcv_image_load_options lo = {.ignore_exif_orientation = p->ignore_exif_orientation};
        int rc = pcv_image_load_ex(paths[i], &lo, &img, err);
        if (rc) {
            free(buf);
            return rc;
        }
        int ow = 0, oh = 0;
        rc = pcv_image_output_size(p, img.width, img.height, &ow, &oh, err);
        if (rc) {
            /* name the file: the size error itself does not know it */
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            pcv_set_error(err, (pcv_status)rc, "%s: %s", paths[i], msg);
            pcv_image_free(&img);
            free(buf);
            return rc;
        }
        if (i == 0) {
            bh = oh, bw = ow;
            per = (size_t)3 * ow * oh;
            if (per > SIZE_MAX / sizeof(float) / (size_t)n ||
                !(buf = malloc(per * (size_t)n * sizeof(float)))) {
                pcv_image_free(&img);
                return pcv_set_error(err, PCV_ERR_OOM, "out of memory for %d images of %dx%d", n,
                                     ow, oh);
            }
        } else if (oh != bh || ow != bw) {
            pcv_image_free(&img);
            free(buf);
            return pcv_set_error(err, PCV_ERR_SHAPE,
                                 "%s: preprocesses to %dx%d but %s gave %dx%d; a batch needs one "
                                 "size (enable do_resize)",
                                 paths[i], ow, oh, paths[0], bw, bh);
        }
        rc = pcv_image_preprocess(p, &img, buf + per * (size_t)i, per, err);
        pcv_image_free(&img);
        if (rc) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            pcv_set_error(err, (pcv_status)rc, "%s: %s", paths[i], msg);
            free(buf);
            return rc;
        }
    }
    *out = buf;
    if (out_h)
        *out_h = bh;
    if (out_w)
        *out_w = bw;
    return 0;
}
