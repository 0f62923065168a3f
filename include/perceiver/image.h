/* perceiver-cl: image input (PNG, JPEG) and the preprocessing of the image classifiers.
 *
 * Decoding (src/image_io.c) produces what Hugging Face pipelines see after
 * `PIL.Image.open(f).convert("RGB")` with Pillow (measured bit-exact on the fixtures and on
 * ~4700 PNG/JPEG files found on a Debian system):
 *  - PNG (libpng): every bit depth and colour type, interlaced or not. 16-bit samples keep their
 *    most significant byte, except 16-bit grayscale without alpha, which Pillow opens as "I;16"
 *    and clips to 255 when converting (so a 16-bit gray value 1000 becomes 255, not 3). Grayscale
 *    is replicated to R=G=B, palettes are looked up, alpha and tRNS transparency are DROPPED
 *    without compositing (convert("RGB") does not blend; transformers v5's optional
 *    do_convert_rgb=True would blend onto white instead, but the Perceiver processor does not
 *    ask for it). Gamma, sRGB and ICC chunks are ignored, as by Pillow.
 *  - JPEG (libjpeg-turbo): baseline, progressive and arithmetic-coded; gray, YCbCr, RGB, CMYK
 *    and YCCK. Four-component files are read as Adobe-inverted CMYK whatever their markers say
 *    and converted with Pillow's formula R = K' - round(C'*K'/255) (C' = 255 - C stored, ...).
 *    ISLOW DCT and fancy upsampling (libjpeg's defaults, which Pillow keeps).
 *  - Truncated files are refused, even when only the final IEND/EOI is missing (Pillow: "image
 *    file is truncated"); bytes after the end are ignored. Stricter than Pillow, which decodes
 *    them silently: a PNG chunk CRC mismatch and corrupt JPEG entropy-coded data ("Corrupt JPEG
 *    data: bad Huffman code" and the like) are errors.
 *  - The EXIF orientation is applied by default, as transformers' load_image does (it calls
 *    PIL.ImageOps.exif_transpose before convert("RGB"); the image-classification pipeline and
 *    DeepMind's colab, through imageio, both turn photos upright): the Orientation tag of the
 *    EXIF block (JPEG APP1, PNG eXIf or a "Raw profile type exif" text chunk), else the XMP
 *    tiff:Orientation, read by Pillow's rules. pcv_image_load_options.ignore_exif_orientation
 *    keeps the stored pixel order (Image.open(f).convert("RGB") alone).
 *  - The format is found from the leading bytes, never from the file name. GIF, BMP, WebP, TIFF
 *    and other recognised formats are refused naming the format; images with more pixels than
 *    the image_pixels limit (pcv_limits; PCV_IMAGE_MAX_PIXELS by default, Pillow's decompression-
 *    bomb rule) are refused from their header, before any pixel buffer is allocated.
 *
 * Preprocessing (src/image_proc.c) is PerceiverImageProcessor's PIL backend (transformers v5
 * PerceiverImageProcessorPil = v4's slow PerceiverImageProcessor; the torchvision processor is
 * not bit-identical to it):
 *  1. center crop to (int(size_h/crop_h * min(H,W)), int(size_w/crop_w * min(H,W))), offsets
 *     (H-ch)//2, (W-cw)//2, zero padding where the crop is larger than the image; an empty crop
 *     (a 1-pixel side) resizes to a black image, as in transformers;
 *  2. Pillow Image.resize to size_h x size_w with the configured filter (BICUBIC by default),
 *     bit-exact with Pillow's 8-bit two-pass fixed-point resampler (pass order: see
 *     PCV_RESIZE_PILLOW12_ORDER);
 *  3. rescale: float32(float64(u8) * rescale_factor);
 *  4. normalize: (x - float32(mean_c)) / float32(std_c) in float32; output channels-first.
 * All four steps are exact: pixel_values equal transformers' bit for bit.
 *
 * PCV_IMAGE_PIPELINE_HAIKU reproduces DeepMind's ImageNet colab instead (spec haiku-vs-hf I1-I3):
 * crop side int(0.875*min(H,W)) with offsets rounded up, OpenCV INTER_CUBIC (a = -0.75, no
 * antialiasing) and float32((u8 - 255*mean) / (255*std)) computed in float64. The resize is
 * OpenCV's own CV_8U code path (11-bit fixed-point coefficients; its SIMD code gives the same
 * bytes), bit-exact with cv2.resize when Intel IPP is off (cv2.ipp.setUseIPP(False) or
 * cv2.setUseOptimized(False), or builds without IPP). The x86-64 opencv-python wheels route this
 * resize through IPP by default, in float32: measured with opencv-python-headless 5.0.0 on 8 photo
 * crops resized to 224x224 (tools/make_cv_ipp_fixture.py, tests/test_image.c), IPP differs by +-1
 * on 2.4% of the 8-bit values (one pixel_values step, 0.0175), which moves the logits of a
 * full-size (random-weight) Fourier ImageNet classifier by at most 2.0e-4 (4e-5 of their range,
 * a tenth of the image-full tolerance) and changes no top-5. IPP's own rounding is not published
 * and could not be reproduced exactly (a float32 two-pass model agrees on all but ~1e-5 of the
 * values; small images skip IPP altogether), and which path the colab's OpenCV took in 2021 is
 * not recorded: the engine keeps the path it reproduces exactly. */
#ifndef PERCEIVER_IMAGE_H
#define PERCEIVER_IMAGE_H

#include "perceiver/perceiver.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default of the image_pixels limit (pcv_limits): the most pixels (width * height) a decoded image
 * may have, Pillow's rule (Image.open raises DecompressionBombError above 2 x MAX_IMAGE_PIXELS =
 * 178,956,970 pixels, 512 MiB of RGB). Raise it with pcv_set_limits. */
#define PCV_IMAGE_MAX_PIXELS ((int64_t)178956970)

/* An 8-bit RGB image: rgb[(y * width + x) * 3 + c], c = R, G, B. */
typedef struct pcv_image {
    int width, height;
    unsigned char *rgb;
} pcv_image;

typedef struct pcv_image_load_options {
    bool ignore_exif_orientation; /* keep the pixels as stored (default: turned upright) */
} pcv_image_load_options;

/* Reads and decodes a PNG or JPEG file, turned upright by its EXIF orientation. On failure img
 * is left empty and err names the file and the problem (PCV_ERR_IO: cannot read;
 * PCV_ERR_FORMAT: empty, truncated or corrupt; PCV_ERR_UNSUPPORTED: another format, or too many
 * pixels; PCV_ERR_OOM). */
PCV_API pcv_status pcv_image_load(const char *path, pcv_image *img, pcv_error *err);
/* The same with options (NULL: the defaults). */
PCV_API pcv_status pcv_image_load_ex(const char *path, const pcv_image_load_options *opt, pcv_image *img,
                                     pcv_error *err);
/* The same from memory; name is used in messages only (may be NULL). */
PCV_API pcv_status pcv_image_load_memory(const void *data, size_t len, const char *name, pcv_image *img,
                          pcv_error *err);
PCV_API pcv_status pcv_image_load_memory_ex(const void *data, size_t len, const char *name,
                                            const pcv_image_load_options *opt, pcv_image *img, pcv_error *err);
/* The EXIF orientation of a PNG or JPEG in memory, 1..8 (1: as stored; 6: the stored image must
 * turn 90 degrees clockwise to be upright), by Pillow's rules (see above). */
PCV_API int pcv_image_orientation(const void *data, size_t len);
PCV_API void pcv_image_free(pcv_image *img);
/* Writes an 8-bit RGB PNG file atomically (temporary file + rename). */
PCV_API pcv_status pcv_image_save_png(const char *path, const pcv_image *img, pcv_error *err);
/* Name of the image format recognised from the leading bytes ("PNG", "JPEG", "GIF", "BMP",
 * "WebP", "TIFF", ...), or NULL if none is recognised. Only PNG and JPEG can be decoded. */
PCV_API const char *pcv_image_format(const void *data, size_t len);

/* ---- preprocessing ------------------------------------------------------------------------ */

/* Pillow's resampling filter numbers, as stored in preprocessor_config.json ("resample": 3). */
typedef enum pcv_resample {
    PCV_RESAMPLE_NEAREST = 0, /* not supported (Pillow uses a different code path for it) */
    PCV_RESAMPLE_LANCZOS = 1,
    PCV_RESAMPLE_BILINEAR = 2,
    PCV_RESAMPLE_BICUBIC = 3,
    PCV_RESAMPLE_BOX = 4,
    PCV_RESAMPLE_HAMMING = 5
} pcv_resample;

typedef enum pcv_image_pipeline {
    PCV_IMAGE_PIPELINE_HF = 0,   /* PerceiverImageProcessor (Pillow) */
    PCV_IMAGE_PIPELINE_HAIKU = 1 /* DeepMind's colab (OpenCV INTER_CUBIC, rounded-up offsets) */
} pcv_image_pipeline;

typedef struct pcv_image_processor {
    pcv_image_pipeline pipeline;
    bool do_center_crop, do_resize, do_rescale, do_normalize;
    int crop_h, crop_w; /* crop_size; the crop side is int(size/crop_size * min(H, W)) */
    int size_h, size_w; /* output size of the resize */
    int resample;       /* pcv_resample; the haiku pipeline always uses OpenCV cubic */
    int resize_flags;   /* PCV_RESIZE_* for pcv_image_resize_pil (0: current Pillow) */
    double rescale_factor;
    double mean[3], std[3]; /* the HF pipeline rounds them to float32, as numpy does */
    bool ignore_exif_orientation; /* pcv_image_load_batch: keep the pixels as stored (default:
                                     upright, as transformers' load_image) */
} pcv_image_processor;

/* PerceiverImageProcessor defaults: crop 256, size 224, BICUBIC, 1/255, ImageNet mean/std. */
PCV_API void pcv_image_processor_init(pcv_image_processor *p);
/* DeepMind colab settings: the haiku pipeline with crop 256 (ratio 0.875), size 224. */
PCV_API void pcv_image_processor_init_haiku(pcv_image_processor *p);
/* Starts from the defaults and applies a preprocessor_config.json (path is the file or a folder
 * holding it). A missing file is not an error: the defaults stay. Recognised keys:
 * do_center_crop, crop_size, do_resize, size (int or {"height", "width"}), resample, do_rescale,
 * rescale_factor, do_normalize, image_mean, image_std (3 numbers or one); others are ignored. */
PCV_API pcv_status pcv_image_processor_load(pcv_image_processor *p, const char *path, pcv_error *err);

/* Size of the preprocessed image for an input of w x h (it depends on the input only when
 * do_resize is off). Fails with PCV_ERR_INPUT when the center crop would be empty. */
PCV_API pcv_status pcv_image_output_size(const pcv_image_processor *p, int w, int h, int *out_w, int *out_h,
                          pcv_error *err);
/* Crop and resize only: the uint8 RGB image the float stage starts from (out is allocated; free
 * it with pcv_image_free). Useful to compare with Pillow bit for bit. */
PCV_API pcv_status pcv_image_preprocess_u8(const pcv_image_processor *p, const pcv_image *img, pcv_image *out,
                            pcv_error *err);
/* The whole pipeline: out_chw receives [3][out_h][out_w] float32 (cap = number of floats
 * available; PCV_ERR_SHAPE if too small). */
PCV_API pcv_status pcv_image_preprocess(const pcv_image_processor *p, const pcv_image *img, float *out_chw,
                         size_t cap, pcv_error *err);
/* Loads and preprocesses n files into a malloc'd [n][3][H][W] array (*out, free() it). All
 * outputs must have the same size (always true with do_resize). */
PCV_API pcv_status pcv_image_load_batch(const pcv_image_processor *p, const char *const *paths, int n,
                         float **out, int *out_h, int *out_w, pcv_error *err);

/* Pillow 13 runs the vertical pass first when the height shrinks much more than the width
 * (see image_proc.c); Pillow 12 and older always run the horizontal pass first. The two differ
 * by +-1 on some pixels of such non-square resizes only; equal-ratio resizes (the Perceiver
 * square crop to 224x224) are identical. */
#define PCV_RESIZE_PILLOW12_ORDER 1

/* Pillow Image.resize((dw, dh), filter) on an 8-bit RGB image (src sw x sh, dst dw x dh, both
 * interleaved RGB): separable, antialiased (support scaled by the downscale factor), 22-bit
 * fixed-point coefficients, rounded and clipped to 8 bits after each pass; bit-exact with
 * Pillow. filter is LANCZOS, BILINEAR, BICUBIC, BOX or HAMMING; flags 0 or PCV_RESIZE_*. */
PCV_API pcv_status pcv_image_resize_pil(const unsigned char *src, int sw, int sh, unsigned char *dst, int dw,
                         int dh, int filter, int flags, pcv_error *err);
/* OpenCV cv2.resize(src, (dw, dh), interpolation=INTER_CUBIC) on 8-bit RGB (a = -0.75, 4 taps,
 * no antialiasing, replicated borders, 11-bit fixed-point coefficients). */
PCV_API pcv_status pcv_image_resize_cv_cubic(const unsigned char *src, int sw, int sh, unsigned char *dst,
                              int dw, int dh, pcv_error *err);

/* OpenCV cv2.resize(src, (dw, dh)) with its default INTER_LINEAR on 8-bit RGB (centre-aligned
 * bilinear, no antialiasing, 11-bit fixed-point weights, OpenCV's SIMD rounding of the vertical
 * pass, rows clipped but their weights kept at the top and bottom): the resize of DeepMind's
 * video-autoencoding colab. Bit-exact with cv2.resize of opencv-python 5.0.0 (IPP on or off) on
 * 3,684 random images of 1 to 1080 pixels per side, up- and downscaling. */
PCV_API pcv_status pcv_image_resize_cv_linear(const unsigned char *src, int sw, int sh, unsigned char *dst, int dw,
                                              int dh, pcv_error *err);

#ifdef __cplusplus
}
#endif
#endif
