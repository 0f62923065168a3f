/* Built-in configs of the published Perceiver IO checkpoints. */
#ifndef PERCEIVER_PRESETS_H
#define PERCEIVER_PRESETS_H
#include "perceiver/perceiver.h"

/* Fills cfg with the named preset (defaults first); returns -1 for an unknown name. */
int pcv_config_preset(const char *name, pcv_config *cfg);
/* Enumerates presets: NULL past the end. */
const char *pcv_preset_name(int i);
const char *pcv_preset_description(int i);
#endif
