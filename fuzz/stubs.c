/* The fuzz targets link the parsers without the model code (no BLIS, OpenMP or OpenCL): the
 * architecture registry (model/arch.c) only needs the heads' addresses, never calls them. */
#include "model/model_impl.h"

const pcv_head pcv_head_masked_lm, pcv_head_text_classifier, pcv_head_image_learned, pcv_head_image_fourier,
    pcv_head_image_conv, pcv_head_optical_flow, pcv_head_multimodal;
