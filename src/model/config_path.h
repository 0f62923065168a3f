/* Where the config.json of a checkpoint is: the one rule that run, inspect and convert share. */
#ifndef PCV_CONFIG_PATH_H
#define PCV_CONFIG_PATH_H

#include <stdbool.h>
#include <stddef.h>

/* For a model folder, <folder>/config.json; for a checkpoint file (model.safetensors, a pickle,
 * an index), the config.json in the same folder. out receives the path; returns whether it is
 * an existing regular file. */
bool pcv_config_path(const char *model_path, char *out, size_t cap);

#endif
