/* Built-in configs of the published checkpoints (spec perceiver-io.md sections 1.3 and 10.4),
 * so that benchmarks, random checkpoints and DeepMind pickles (which carry no config) need no
 * files. Each Hugging Face model id has a preset, and each DeepMind release file has an alias
 * under its file name. */
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

/* The three ImageNet classifiers share everything but the encoder input width (and the
 * learned model's image_size). Class names come from pcv_config_default_labels (the bundled
 * ImageNet-1k list) or from convert --labels FILE. */
static void imagenet_common(pcv_config *c, int d_model)
{
    c->num_latents = 512;
    c->d_latents = 1024;
    c->d_model = d_model;
    c->num_blocks = 8;
    c->num_self_attends_per_block = 6;
    c->num_self_attention_heads = 8;
    c->num_cross_attention_heads = 1;
    c->qk_channels = 0;
    c->v_channels = 0;
    c->num_labels = 1000;
}

static void vision_learned(pcv_config *c)
{
    snprintf(c->architecture, sizeof c->architecture, "PerceiverForImageClassificationLearned");
    imagenet_common(c, 512);
    c->image_size = 224;
}

static void vision_fourier(pcv_config *c)
{
    snprintf(c->architecture, sizeof c->architecture, "PerceiverForImageClassificationFourier");
    imagenet_common(c, 261);
}

static void vision_conv(pcv_config *c)
{
    snprintf(c->architecture, sizeof c->architecture,
             "PerceiverForImageClassificationConvProcessing");
    imagenet_common(c, 322);
}

static void optical_flow(pcv_config *c)
{
    snprintf(c->architecture, sizeof c->architecture, "PerceiverForOpticalFlow");
    c->num_latents = 2048;
    c->d_latents = 512;
    c->d_model = 322;
    c->num_blocks = 1;
    c->num_self_attends_per_block = 24;
    c->num_self_attention_heads = 16;
    c->num_cross_attention_heads = 1;
    c->qk_channels = 0;
    c->v_channels = 0;
    c->train_size[0] = 368;
    c->train_size[1] = 496;
}

static void multimodal(pcv_config *c)
{
    snprintf(c->architecture, sizeof c->architecture, "PerceiverForMultimodalAutoencoding");
    c->num_latents = 28 * 28 * 1;
    c->d_latents = 512;
    c->d_model = 704;
    c->num_blocks = 1;
    c->num_self_attends_per_block = 8;
    c->num_self_attention_heads = 8;
    c->num_cross_attention_heads = 1;
    c->qk_channels = 0;
    c->v_channels = 0;
    c->num_labels = 700;
    c->image_size = 56;
    c->num_frames = 16;
    c->audio_samples_per_frame = 1920;
    c->samples_per_patch = 16;
    c->output_shape[0] = 1;
    c->output_shape[1] = 16;
    c->output_shape[2] = 224;
    c->output_shape[3] = 224;
    c->output_num_channels = 512;
    c->label_trainable_num_channels = 1024;
}

static const struct {
    const char *name, *description;
    void (*apply)(pcv_config *);
} presets[] = {
    {"language-perceiver", "deepmind/language-perceiver: byte-level masked LM, 201M parameters", language_perceiver},
    {"vision-perceiver-learned", "deepmind/vision-perceiver-learned: ImageNet, learned positions, 62M parameters", vision_learned},
    {"vision-perceiver-fourier", "deepmind/vision-perceiver-fourier: ImageNet, 2-D Fourier positions, 48M parameters", vision_fourier},
    {"vision-perceiver-conv", "deepmind/vision-perceiver-conv: ImageNet, conv stem + Fourier positions, 49M parameters", vision_conv},
    {"optical-flow-perceiver", "deepmind/optical-flow-perceiver: optical flow on 368x496 frame pairs, 41M parameters", optical_flow},
    {"multimodal-perceiver", "deepmind/multimodal-perceiver: video+audio+label autoencoding (Kinetics-700), 20M parameters", multimodal},
    /* the DeepMind release files (storage.googleapis.com/perceiver_io/), by file stem */
    {"language_perceiver_io_bytes", "DeepMind language_perceiver_io_bytes.pickle (= language-perceiver)", language_perceiver},
    {"imagenet_learned_position_encoding", "DeepMind imagenet_learned_position_encoding.pystate (= vision-perceiver-learned)", vision_learned},
    {"imagenet_fourier_position_encoding", "DeepMind imagenet_fourier_position_encoding.pystate (= vision-perceiver-fourier)", vision_fourier},
    {"imagenet_conv_preprocessing", "DeepMind imagenet_conv_preprocessing.pystate (= vision-perceiver-conv)", vision_conv},
    {"optical_flow_checkpoint", "DeepMind optical_flow_checkpoint.pystate (= optical-flow-perceiver)", optical_flow},
    {"video_autoencoding_checkpoint", "DeepMind video_autoencoding_checkpoint.pystate (= multimodal-perceiver)", multimodal},
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
