/* Built-in configs of the published Perceiver IO checkpoints. */
#ifndef PERCEIVER_PRESETS_H
#define PERCEIVER_PRESETS_H

#include "perceiver/perceiver.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills cfg with the named preset (defaults first). An unknown name is PCV_ERR_INPUT with the
 * list of presets in err. */
PCV_API pcv_status pcv_config_preset(const char *name, pcv_config *cfg, pcv_error *err);
/* Enumerates presets: NULL past the end. */
PCV_API const char *pcv_preset_name(int i);
PCV_API const char *pcv_preset_description(int i);

/* The config a checkpoint without config.json implies: the built-in preset of its architecture
 * (w->architecture), with the sizes that the tensor shapes determine (latents, widths, layer
 * count, vocabulary, labels, ...) taken from the tensors. Heads and num_blocks cannot be read
 * from weights and come from the preset. */
PCV_API pcv_status pcv_config_from_weights(const pcv_weights *w, pcv_config *cfg, pcv_error *err);

#ifdef __cplusplus
}
#endif
#endif
