/* Built-in configs of the published checkpoints (spec perceiver-io.md sections 1.3 and 10.4),
 * so that benchmarks, random checkpoints and DeepMind pickles (which carry no config) need no
 * files. Each Hugging Face model id has a preset, and each DeepMind release file has an alias
 * under its file name. */
#include "perceiver/presets.h"
#include "util/error.h"

#include "formats/formats.h"
#include "model/arch.h"

#include <stdlib.h>

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

pcv_status pcv_config_preset(const char *name, pcv_config *cfg, pcv_error *err)
{
    for (size_t i = 0; name && i < sizeof presets / sizeof *presets; i++)
        if (strcmp(presets[i].name, name) == 0) {
            pcv_config_init(cfg);
            presets[i].apply(cfg);
            return PCV_OK;
        }
    char list[1024];
    size_t len = 0;
    list[0] = '\0';
    for (size_t i = 0; i < sizeof presets / sizeof *presets && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", presets[i].name);
    return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "unknown preset '%s' (presets: %s)", name ? name : "", list);
}

const char *pcv_preset_name(int i)
{
    return i >= 0 && (size_t)i < sizeof presets / sizeof *presets ? presets[i].name : NULL;
}

const char *pcv_preset_description(int i)
{
    return i >= 0 && (size_t)i < sizeof presets / sizeof *presets ? presets[i].description : NULL;
}

/* ---- config from a weight set -------------------------------------------------------------- */

static const pcv_st_tensor *find2(const pcv_weights *w, const char *name, int ndim)
{
    const pcv_st_tensor *t = pcv_weights_find(w, name);
    return t && t->ndim == ndim ? t : NULL;
}

static int dim_of(const pcv_weights *w, const char *name, int ndim, int axis)
{
    const pcv_st_tensor *t = find2(w, name, ndim);
    return t && t->shape[axis] > 0 && t->shape[axis] <= (1 << 24) ? (int)t->shape[axis] : 0;
}

pcv_status pcv_config_from_weights(const pcv_weights *w, pcv_config *cfg, pcv_error *err)
{
    const pcv_arch_info *ai = pcv_arch_lookup(w->architecture);
    if (!ai)
        return (pcv_status)pcv_set_error(err, PCV_ERR_MISSING, "%s: no config.json, and the architecture cannot "
                                         "be told from the tensor names", w->path);
    /* the text classifier has no preset of its own: the MLM trunk, labels from the weights */
    const char *preset = ai->preset ? ai->preset : pcv_arch_get(PCV_ARCH_MASKED_LM)->preset;
    pcv_status rc = pcv_config_preset(preset, cfg, err);
    if (rc)
        return rc;
    snprintf(cfg->architecture, sizeof cfg->architecture, "%s", ai->hf_class);
    if (ai->arch == PCV_ARCH_SEQ_CLASSIFIER)
        cfg->num_labels = 2;

    /* sizes that the weights determine (the presets already hold them for the real files) */
    int v;
    const char *ca = "perceiver.encoder.cross_attention.";
    char name[160];
#define D(nm, nd, ax) dim_of(w, nm, nd, ax)
    if ((v = D("perceiver.embeddings.latents", 2, 0)))
        cfg->num_latents = v;
    if ((v = D("perceiver.embeddings.latents", 2, 1)))
        cfg->d_latents = v;
    snprintf(name, sizeof name, "%sattention.self.layernorm2.weight", ca);
    if ((v = D(name, 1, 0)))
        cfg->d_model = v;
    if ((v = D("perceiver.input_preprocessor.embeddings.weight", 2, 0)))
        cfg->vocab_size = v;
    if ((v = D("perceiver.input_preprocessor.position_embeddings.weight", 2, 0)))
        cfg->max_position_embeddings = v;
    int nself = 0;
    for (int k = 0; k < 4096; k++) {
        snprintf(name, sizeof name, "perceiver.encoder.self_attends.%d.attention.self.query.weight", k);
        if (!pcv_weights_find(w, name))
            break;
        nself = k + 1;
    }
    if (nself)
        cfg->num_self_attends_per_block = nself;
    /* widening factors: dense1 is [wf * width, width] */
    int d1 = D("perceiver.encoder.self_attends.0.mlp.dense1.weight", 2, 0);
    if (d1 && cfg->d_latents && d1 % cfg->d_latents == 0)
        cfg->self_attention_widening_factor = d1 / cfg->d_latents;
    snprintf(name, sizeof name, "%smlp.dense1.weight", ca);
    d1 = D(name, 2, 0);
    if (d1 && cfg->d_latents && d1 % cfg->d_latents == 0)
        cfg->cross_attention_widening_factor = d1 / cfg->d_latents;
    /* qk / v channels: null when every block uses the default derivation (perceiver-io.md 3.2) */
    int sq = D("perceiver.encoder.self_attends.0.attention.self.query.weight", 2, 0);
    int sv = D("perceiver.encoder.self_attends.0.attention.self.value.weight", 2, 0);
    snprintf(name, sizeof name, "%sattention.self.query.weight", ca);
    int cq = D(name, 2, 0);
    snprintf(name, sizeof name, "%sattention.self.value.weight", ca);
    int cv = D(name, 2, 0);
    if (sq && cq) {
        bool qk_default = sq == cfg->d_latents && cq == cfg->d_model;
        cfg->qk_channels = qk_default ? 0 : sq;
        bool v_default = sv == sq && cv == cq;
        cfg->v_channels = v_default ? 0 : sv;
    }
    /* labels */
    int nl = 0;
    if (ai->arch == PCV_ARCH_MULTIMODAL)
        nl = D("perceiver.output_postprocessor.modalities.label.classifier.weight", 2, 0);
    else if (ai->arch != PCV_ARCH_OPTICAL_FLOW && ai->arch != PCV_ARCH_MASKED_LM)
        nl = D("perceiver.decoder.decoder.final_layer.weight", 2, 0);
    if (nl && nl != cfg->num_labels) {
        for (int i = 0; cfg->id2label && i < cfg->num_labels; i++)
            free(cfg->id2label[i]);
        free(cfg->id2label);
        cfg->id2label = NULL;
        cfg->num_labels = nl;
    }
    /* the learned ImageNet model's position table covers image_size^2 pixels */
    int np = D("perceiver.input_preprocessor.position_embeddings.position_embeddings", 2, 0);
    if (np) {
        int s = 1;
        while ((int64_t)s * s < np)
            s++;
        if (s * s == np)
            cfg->image_size = s;
    }
#undef D
    return PCV_OK;
}
