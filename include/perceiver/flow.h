/* perceiver-cl: dense optical flow of frame pairs of any size with a PerceiverForOpticalFlow
 * model, the way DeepMind's optical_flow colab computes it, and its outputs.
 *
 * A frame pair is cut into overlapping tiles of the model's train_size (368x496 for
 * deepmind/optical-flow-perceiver): DeepMind's compute_grid_indices with two repairs (every tile
 * origin is clamped into the frame, duplicate origins are computed once; where DeepMind's grid
 * is valid the result is identical). Each tile is cropped from the frames normalised as
 * img/255*2-1 (float64, rounded once to float32), zero-padded by one pixel and cut into 3x3
 * neighbourhoods (channel (kh*3 + kw)*3 + c); the model's output times the scale (20, the
 * colab's FLOW_SCALE_FACTOR: the flow in pixels) is blended with integer weights
 * min(x+1, w-x, y+1, h-y) and normalised like the colab (multiplication by the float32
 * reciprocal of the weight sum). Channel 0 is u (+x to the right), channel 1 is v (+y down). */
#ifndef PERCEIVER_FLOW_H
#define PERCEIVER_FLOW_H

#include "perceiver/image.h"
#include "perceiver/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pcv_flow_options {
    int min_overlap;  /* minimum tile overlap in pixels; 0: 20 (DeepMind's) */
    float scale;      /* pixels per network output unit; 0: 20 (FLOW_SCALE_FACTOR) */
    int batch;        /* tiles per forward pass; 0: 1 */
    bool pad;         /* frames smaller than a tile: pad them (right and bottom, with the normalised
                         value 0, mid-grey) instead of refusing them like the colab */
    /* called after each batch of tiles: done of total tiles (may be NULL) */
    void (*progress)(void *ctx, int done, int total);
    void *progress_ctx;
} pcv_flow_options;

typedef struct pcv_flow_info {
    int tiles;           /* tiles computed */
    int tile_h, tile_w;  /* the model's train_size */
    double seconds;      /* wall-clock time of the pair */
} pcv_flow_info;

/* The repaired tile grid of an h x w frame: origins[2i] = y, origins[2i+1] = x (y outer, x inner),
 * at most cap origins; returns the count (which may exceed cap), or -1 when the frame is smaller
 * than the tile. */
PCV_API int pcv_flow_grid(int h, int w, int tile_h, int tile_w, int min_overlap, int *origins, int cap);

/* The flow of a frame pair (8-bit RGB, same size, at least the tile size unless opt->pad):
 * flow[(y * width + x) * 2 + {0, 1}] = (u, v) in pixels. opt may be NULL. */
PCV_API pcv_status pcv_flow_pair(pcv_model *m, const pcv_image *a, const pcv_image *b, const pcv_flow_options *opt,
                                 float *flow, pcv_flow_info *info, pcv_error *err);

/* Writes a Middlebury .flo file (float32 202021.25, int32 width, int32 height, then u, v
 * interleaved, row-major, little-endian), atomically. */
PCV_API pcv_status pcv_flo_write(const char *path, const float *flow, int width, int height, pcv_error *err);
/* Reads one (allocates *flow). */
PCV_API pcv_status pcv_flo_read(const char *path, float **flow, int *width, int *height, pcv_error *err);

/* Colours a flow field with the Middlebury colour wheel of Baker et al. (the `flowToColor` code of
 * the Middlebury flow evaluation, which flowiz and flow_vis reimplement): 55 hues (red-yellow 15,
 * yellow-green 6, green-cyan 4, cyan-blue 11, blue-magenta 13, magenta-red 6), angle
 * atan2(-v, -u)/pi, saturation = |flow| / max_flow (white at rest; beyond max_flow the colour is
 * darkened, 0.75 x). max_flow <= 0 normalises by the largest magnitude of the field (1 if the
 * field is zero). rgb receives width*height*3 bytes; returns the max_flow used. */
PCV_API float pcv_flow_to_rgb(const float *flow, int width, int height, float max_flow, unsigned char *rgb);

#ifdef __cplusplus
}
#endif
#endif
