/* Internal: the resampling filters of resample.c, for the processor configuration (image_proc.c). */
#ifndef PCV_IMAGE_RESAMPLE_H
#define PCV_IMAGE_RESAMPLE_H

#include <stdbool.h>

/* a PIL resampling filter code (PCV_RESAMPLE_*) that pcv_image_resize_pil implements */
bool pcv_resample_supported(int resample);
/* its Pillow name ("BICUBIC", ...), "unknown" for other codes */
const char *pcv_resample_name(int resample);

#endif
