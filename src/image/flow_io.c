/* Optical-flow outputs (perceiver/flow.h): Middlebury .flo files and the Middlebury colour wheel. */
#include "perceiver/flow.h"

#include "util/error.h"
#include "util/fileutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- .flo -------------------------------------------------------------------------------------- */

typedef struct flo_ctx {
    const float *flow;
    int w, h;
} flo_ctx;

static int flo_fill(int fd, void *p)
{
    const flo_ctx *c = p;
    float tag = 202021.25f;
    int32_t dims[2] = {c->w, c->h};
    if (pcv_write_all(fd, &tag, 4) || pcv_write_all(fd, dims, 8))
        return -1;
    return pcv_write_all(fd, c->flow, (size_t)c->w * (size_t)c->h * 2 * sizeof(float));
}

pcv_status pcv_flo_write(const char *path, const float *flow, int width, int height, pcv_error *err)
{
    if (width < 1 || height < 1)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "%s: a flow field of %dx%d", path, width, height);
    flo_ctx c = {flow, width, height};
    return (pcv_status)pcv_write_atomic(path, flo_fill, &c, err);
}

pcv_status pcv_flo_read(const char *path, float **flow, int *width, int *height, pcv_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    *flow = NULL;
    int rc = pcv_read_file(path, "a .flo file", (size_t)1 << 31, &buf, &len, err);
    if (rc)
        return (pcv_status)rc;
    float tag;
    int32_t dims[2];
    if (len < 12) {
        free(buf);
        return (pcv_status)pcv_set_error(err, PCV_ERR_FORMAT, "%s: %zu bytes is too short for a .flo file", path, len);
    }
    memcpy(&tag, buf, 4);
    memcpy(dims, buf + 4, 8);
    if (tag != 202021.25f || dims[0] < 1 || dims[1] < 1 ||
        (size_t)dims[0] * (size_t)dims[1] * 8 != len - 12) {
        free(buf);
        return (pcv_status)pcv_set_error(err, PCV_ERR_FORMAT, "%s: not a .flo file (tag %g, %d x %d, %zu bytes)", path,
                                         (double)tag, dims[0], dims[1], len);
    }
    float *f = malloc(len - 12);
    if (!f) {
        free(buf);
        return (pcv_status)pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    memcpy(f, buf + 12, len - 12);
    free(buf);
    *flow = f;
    *width = dims[0];
    *height = dims[1];
    return PCV_OK;
}

/* ---- the colour wheel ----------------------------------------------------------------------------- */

enum { RY = 15, YG = 6, GC = 4, CB = 11, BM = 13, MR = 6, NCOLS = RY + YG + GC + CB + BM + MR };

static void wheel(int w[NCOLS][3])
{
    int k = 0;
    for (int i = 0; i < RY; i++, k++) /* red -> yellow */
        w[k][0] = 255, w[k][1] = 255 * i / RY, w[k][2] = 0;
    for (int i = 0; i < YG; i++, k++) /* yellow -> green */
        w[k][0] = 255 - 255 * i / YG, w[k][1] = 255, w[k][2] = 0;
    for (int i = 0; i < GC; i++, k++) /* green -> cyan */
        w[k][0] = 0, w[k][1] = 255, w[k][2] = 255 * i / GC;
    for (int i = 0; i < CB; i++, k++) /* cyan -> blue */
        w[k][0] = 0, w[k][1] = 255 - 255 * i / CB, w[k][2] = 255;
    for (int i = 0; i < BM; i++, k++) /* blue -> magenta */
        w[k][0] = 255 * i / BM, w[k][1] = 0, w[k][2] = 255;
    for (int i = 0; i < MR; i++, k++) /* magenta -> red */
        w[k][0] = 255, w[k][1] = 0, w[k][2] = 255 - 255 * i / MR;
}

float pcv_flow_to_rgb(const float *flow, int width, int height, float max_flow, unsigned char *rgb)
{
    int w[NCOLS][3];
    wheel(w);
    size_t n = (size_t)width * (size_t)height;
    double maxrad = max_flow;
    if (!(maxrad > 0)) {
        maxrad = 0;
        for (size_t i = 0; i < n; i++) {
            double u = flow[2 * i], v = flow[2 * i + 1], r = sqrt(u * u + v * v);
            maxrad = r > maxrad ? r : maxrad;
        }
        if (maxrad == 0)
            maxrad = 1;
    }
    for (size_t i = 0; i < n; i++) {
        double u = flow[2 * i] / maxrad, v = flow[2 * i + 1] / maxrad;
        if (!isfinite(u) || !isfinite(v))
            u = v = 0;
        double rad = sqrt(u * u + v * v), a = atan2(-v, -u) / M_PI, fk = (a + 1) / 2 * (NCOLS - 1);
        int k0 = (int)floor(fk), k1 = k0 + 1 == NCOLS ? 0 : k0 + 1;
        double f = fk - k0;
        for (int c = 0; c < 3; c++) {
            double col = (1 - f) * (w[k0][c] / 255.0) + f * (w[k1][c] / 255.0);
            col = rad <= 1 ? 1 - rad * (1 - col) : col * 0.75; /* saturation grows with speed; beyond: darker */
            rgb[3 * i + c] = (unsigned char)floor(255 * col);
        }
    }
    return (float)maxrad;
}
