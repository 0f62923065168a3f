/* OpenCV's cv2.resize(src, (dw, dh)) with the default INTER_LINEAR on 8-bit RGB, the resize of
 * DeepMind's video-autoencoding colab (perceiver/image.h). */
#include "perceiver/image.h"

#include "util/error.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { COEF_BITS = 11, COEF_SCALE = 1 << COEF_BITS };

static short sat_short(float v)
{
    long r = lrintf(v); /* cvRound: nearest, ties to even */
    return (short)(r > 32767 ? 32767 : r < -32768 ? -32768 : r);
}

/* One axis: the source index and the two 11-bit weights of each destination index. Sample
 * centres are aligned ((d + 0.5) * scale - 0.5), with the scale computed as OpenCV does
 * (1 / (dst / src) in double, the position in float). Horizontally (clamp) a position outside
 * the source takes the nearest edge sample with weight 1. Vertically OpenCV does not clamp the
 * weights: the two rows are clipped into the image and keep their weights (1 - f, f), so near
 * the top and bottom of an upscale the same row is weighted twice, which rounds differently. */
static void axis(int src, int dst, bool clamp, int *ofs, short *w)
{
    double inv = (double)dst / src, scale = 1.0 / inv;
    for (int d = 0; d < dst; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        int s = (int)floorf(f);
        f -= (float)s;
        if (clamp && s < 0)
            f = 0, s = 0;
        if (clamp && s >= src - 1)
            f = 0, s = src - 1;
        ofs[d] = s;
        w[2 * d] = sat_short((1.f - f) * COEF_SCALE);
        w[2 * d + 1] = sat_short(f * COEF_SCALE);
    }
}

pcv_status pcv_image_resize_cv_linear(const unsigned char *src, int sw, int sh, unsigned char *dst, int dw, int dh,
                                      pcv_error *err)
{
    if (!src || !dst || sw < 1 || sh < 1 || dw < 1 || dh < 1)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "resize: %dx%d -> %dx%d", sw, sh, dw, dh);
    if (sw == dw && sh == dh) { /* cv::resize copies */
        memcpy(dst, src, (size_t)sw * sh * 3);
        return PCV_OK;
    }
    int *xofs = malloc(sizeof(int) * (size_t)dw), *yofs = malloc(sizeof(int) * (size_t)dh);
    short *xw = malloc(sizeof(short) * 2 * (size_t)dw), *yw = malloc(sizeof(short) * 2 * (size_t)dh);
    const int width = dw * 3;
    int32_t *rows = malloc(sizeof(int32_t) * 2 * (size_t)width);
    if (!xofs || !yofs || !xw || !yw || !rows) {
        free(xofs), free(yofs), free(xw), free(yw), free(rows);
        return (pcv_status)pcv_set_error(err, PCV_ERR_OOM, "resize: out of memory");
    }
    axis(sw, dw, true, xofs, xw);
    axis(sh, dh, false, yofs, yw);
    /* The vertical pass as OpenCV's SIMD loop computes it, in 16-bit arithmetic:
     * ((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16), then (sum + 2) >> 2, for every value of the
     * row (cv2 5.0.0 does; the exact (S0*b0 + S1*b1 + 2^21) >> 22 differs by 1 at times). Checked
     * bit-exact against cv2.resize on random images of 4,800 source/destination sizes, up- and
     * downscaling (tools/make_autoencode_fixture.py; tests/test_image.c). */
    for (int dy = 0; dy < dh; dy++) {
        for (int k = 0; k < 2; k++) { /* horizontal pass of the two source rows */
            int sy = yofs[dy] + k;
            sy = sy < 0 ? 0 : sy >= sh ? sh - 1 : sy;
            const unsigned char *in = src + (size_t)sy * sw * 3;
            int32_t *r = rows + (size_t)k * width;
            for (int dx = 0; dx < dw; dx++) {
                int x0 = xofs[dx], x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
                for (int c = 0; c < 3; c++)
                    r[dx * 3 + c] = in[x0 * 3 + c] * xw[2 * dx] + in[x1 * 3 + c] * xw[2 * dx + 1];
            }
        }
        const short b0 = yw[2 * dy], b1 = yw[2 * dy + 1];
        const int32_t *S0 = rows, *S1 = rows + width;
        unsigned char *o = dst + (size_t)dy * width;
        for (int x = 0; x < width; x++) {
            int16_t s0 = (int16_t)(S0[x] >> 4), s1 = (int16_t)(S1[x] >> 4);
            int16_t p0 = (int16_t)(((int32_t)s0 * b0) >> 16), p1 = (int16_t)(((int32_t)s1 * b1) >> 16);
            int v = ((int16_t)(p0 + p1) + 2) >> 2;
            o[x] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(xofs), free(yofs), free(xw), free(yw), free(rows);
    return PCV_OK;
}
