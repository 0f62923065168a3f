/* Built-in configs of the published checkpoints (spec perceiver-io.md section 1.3), so that
 * benchmarks and random checkpoints need no files. */
#include "perceiver/presets.h"

#include <stdio.h>
#include <string.h>

static void language_perceiver(pcv_config *c)
{
    snprintf(c->architecture, sizeof c->architecture, "PerceiverForMaskedLM");
    c->num_latents = 256;
    c->d_latents = 1280;
    c->d_model = 768;
    c->num_blocks = 1;
    c->num_self_attends_per_block = 26;
    c->num_self_attention_heads = 8;
    c->num_cross_attention_heads = 8;
    c->qk_channels = 8 * 32;
    c->v_channels = 1280;
    c->vocab_size = 262;
    c->max_position_embeddings = 2048;
}

static const struct {
    const char *name, *description;
    void (*apply)(pcv_config *);
} presets[] = {
    {"language-perceiver", "deepmind/language-perceiver: byte-level masked LM, 201M parameters", language_perceiver},
};

int pcv_config_preset(const char *name, pcv_config *cfg)
{
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (strcmp(presets[i].name, name) == 0) {
            pcv_config_init(cfg);
            presets[i].apply(cfg);
            return 0;
        }
    return -1;
}

const char *pcv_preset_name(int i)
{
    return i >= 0 && (size_t)i < sizeof presets / sizeof *presets ? presets[i].name : NULL;
}

const char *pcv_preset_description(int i)
{
    return i >= 0 && (size_t)i < sizeof presets / sizeof *presets ? presets[i].description : NULL;
}
