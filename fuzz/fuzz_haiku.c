/* libFuzzer target: a DeepMind Haiku checkpoint through the weights loader, as `perceiver-cl
 * inspect/convert/run` read it: the safe pickle reader, the Haiku tree walk (shared sub-trees,
 * depth, the pickle_nodes limit), architecture detection or an --architecture override, the
 * renamer, the transposes (made once per source array, charged to the pickle's budget) and the
 * config read from the weights. The first byte picks the architecture option and whether Haiku
 * names are kept; the rest is the pickle. Any crash, leak, overread or unbounded allocation is a
 * bug. */
#include "fuzz_file.h"
#include "perceiver/perceiver.h"
#include "perceiver/presets.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const archs[] = {NULL, "MLM", "image_classification", "image_classification_fourier",
                                        "image_classification_conv", "optical_flow", "multimodal_autoencoding",
                                        "PerceiverForSequenceClassification"};
    if (size < 1)
        return 0;
    const char *path = fuzz_write_file("pickle", data + 1, size - 1);
    if (!path)
        return 0;
    pcv_weights_options o = {.architecture = archs[data[0] % 8], .haiku_names = (data[0] & 0x80) != 0};
    pcv_weights *w = NULL;
    pcv_error err;
    if (pcv_weights_open(path, &o, &w, &err) == 0) {
        /* every tensor's bytes are readable (ASan catches a view past its buffer) */
        unsigned sum = 0;
        for (int i = 0; i < pcv_weights_count(w); i++) {
            const pcv_st_tensor *t = pcv_weights_tensor_at(w, i);
            const unsigned char *b = t->data;
            for (size_t k = 0; k < t->nbytes; k += 61)
                sum += b[k];
            if (t->nbytes)
                sum += b[t->nbytes - 1];
        }
        pcv_config c;
        pcv_config_init(&c);
        if (pcv_config_from_weights(w, &c, &err) == 0)
            pcv_config_free(&c);
        pcv_weights_close(w);
        if (sum == 0xdeadbeef)
            abort(); /* keeps the reads */
    }
    unlink(path);
    return 0;
}
