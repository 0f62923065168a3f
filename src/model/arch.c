/* The architecture registry (arch.h). */
#include "model/arch.h"

#include <string.h>
#include <strings.h>

#define PP "perceiver.input_preprocessor."

/* Detection order: the multimodal and flow names include image-preprocessor names, and the
 * text classifier's include the Fourier classifier's, so they come first. */
static const pcv_arch_info archs[] = {
    {PCV_ARCH_MULTIMODAL, "PerceiverForMultimodalAutoencoding", "multimodal_autoencoding", "multimodal-perceiver",
     "video_autoencoding_checkpoint.pystate", {"multimodal_preprocessor/"}, {PP "padding."}, &pcv_head_multimodal},
    {PCV_ARCH_OPTICAL_FLOW, "PerceiverForOpticalFlow", "optical_flow", "optical-flow-perceiver",
     "optical_flow_checkpoint.pystate", {"image_preprocessor/patches_linear/"}, {PP "conv_after_patches."},
     &pcv_head_optical_flow},
    {PCV_ARCH_IMAGE_CONV, "PerceiverForImageClassificationConvProcessing", "image_classification_conv",
     "vision-perceiver-conv", "imagenet_conv_preprocessing.pystate", {"image_preprocessor/~/conv2_d_downsample/"},
     {PP "convnet."}, &pcv_head_image_conv},
    {PCV_ARCH_IMAGE_LEARNED, "PerceiverForImageClassificationLearned", "image_classification",
     "vision-perceiver-learned", "imagenet_learned_position_encoding.pystate", {"image_preprocessor/~/conv2_d/"},
     {PP "convnet_1x1."}, &pcv_head_image_learned},
    {PCV_ARCH_MASKED_LM, "PerceiverForMaskedLM", "MLM", "language-perceiver", "language_perceiver_io_bytes.pickle",
     {"embed/embeddings", "embedding_decoder/"}, {"embedding_decoder."}, &pcv_head_masked_lm},
    {PCV_ARCH_SEQ_CLASSIFIER, "PerceiverForSequenceClassification", "sequence_classification", NULL, NULL,
     {"embed/embeddings", "classification_decoder/"}, {PP "embeddings.", "perceiver.decoder.decoder."},
     &pcv_head_text_classifier},
    {PCV_ARCH_IMAGE_FOURIER, "PerceiverForImageClassificationFourier", "image_classification_fourier",
     "vision-perceiver-fourier", "imagenet_fourier_position_encoding.pystate", {"classification_decoder/"},
     {"perceiver.decoder.decoder.final_layer."}, &pcv_head_image_fourier},
};
enum { NARCH = sizeof archs / sizeof *archs };

const pcv_arch_info *pcv_arch_table(int *n)
{
    *n = NARCH;
    return archs;
}

const pcv_arch_info *pcv_arch_get(pcv_arch a)
{
    for (int i = 0; i < NARCH; i++)
        if (archs[i].arch == a)
            return &archs[i];
    return NULL;
}

const pcv_arch_info *pcv_arch_lookup(const char *name)
{
    if (!name || !*name)
        return NULL;
    for (int i = 0; i < NARCH; i++)
        if (!strcasecmp(name, archs[i].hf_class) || !strcasecmp(name, archs[i].script_name) ||
            (archs[i].preset && !strcasecmp(name, archs[i].preset)))
            return &archs[i];
    return NULL;
}

static bool any_prefix(const char *const *names, size_t n, const char *prefix)
{
    size_t l = strlen(prefix);
    for (size_t i = 0; i < n; i++)
        if (!strncmp(names[i], prefix, l))
            return true;
    return false;
}

static bool all_prefixes(const char *const *names, size_t n, const char *const *prefixes)
{
    if (!prefixes[0])
        return false;
    for (int j = 0; j < 3 && prefixes[j]; j++)
        if (!any_prefix(names, n, prefixes[j]))
            return false;
    return true;
}

const pcv_arch_info *pcv_arch_detect(const char *const *names, size_t n)
{
    for (int i = 0; i < NARCH; i++)
        if (all_prefixes(names, n, archs[i].haiku_detect))
            return &archs[i];
    for (int i = 0; i < NARCH; i++)
        if (all_prefixes(names, n, archs[i].hf_detect))
            return &archs[i];
    return NULL;
}
