/* Synthetic inputs for bench and verify (cli.h: cli_make_inputs), for every architecture. */
#include "cli/cli.h"

#include "perceiver/image.h"
#include "perceiver/tasks.h"
#include "util/error.h"

#include <stdlib.h>
#include <string.h>

/* The Hugging Face integration test's sentence with " missing." masked, in the mask syntax. */
static const char test_sentence[] = "This is an incomplete sentence where some words are{ missing.}";

static void fill_uniform(float *x, size_t n, uint64_t seed)
{
    uint64_t st = seed;
    for (size_t i = 0; i < n; i++) { /* uniform in [-2, 2): roughly normalized values */
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((st >> 40) * (4.0 / 16777216.0)) - 2.0f;
    }
}

int cli_image_size(pcv_model *m, long want, int *h, int *w, pcv_error *err)
{
    const pcv_config *c = pcv_model_config(m);
    if (pcv_model_arch(m) == PCV_ARCH_IMAGE_LEARNED) {
        /* the trainable position table has image_size^2 rows */
        if (want && want != c->image_size)
            return pcv_set_error(err, PCV_ERR_INPUT, "--image-size %ld: the learned position table of this model "
                                 "fixes its input to %dx%d", want, c->image_size, c->image_size);
        *h = *w = c->image_size;
        return 0;
    }
    if (want) {
        *h = *w = (int)want;
        return 0;
    }
    /* what classify feeds it: the processor's output size */
    pcv_image_processor p;
    if (pcv_model_image_processor(m, &p, err))
        return err->code;
    if (pcv_image_output_size(&p, 256, 256, w, h, err))
        return err->code;
    return 0;
}

int cli_make_inputs(pcv_model *m, long batch, long seq, long image_size, const char *text, cli_inputs *in,
                    pcv_error *err)
{
    memset(in, 0, sizeof *in);
    const pcv_config *c = pcv_model_config(m);
    pcv_arch arch = pcv_model_arch(m);
    if (arch == PCV_ARCH_MASKED_LM || arch == PCV_ARCH_SEQ_CLASSIFIER) {
        /* [CLS] text [SEP] (no specials with the haiku profile, as fill), padded to seq */
        int off = pcv_model_numerics(m) == PCV_NUMERICS_HAIKU ? 0 : 1;
        pcv_masked_text mt;
        pcv_error perr = {0};
        if (pcv_parse_masked(text ? text : test_sentence, &mt, &perr))
            return pcv_set_error(err, PCV_ERR_INPUT, "--text: %s", perr.msg);
        long S = seq ? seq : c->max_position_embeddings;
        if (S > c->max_position_embeddings) {
            pcv_masked_text_free(&mt);
            return pcv_set_error(err, PCV_ERR_INPUT, "--seq %ld exceeds the model's %d positions", S,
                                 c->max_position_embeddings);
        }
        size_t len = mt.len;
        bool cut = false;
        if ((long)len + 2 * off > S) {
            if (text) {
                pcv_masked_text_free(&mt);
                return pcv_set_error(err, PCV_ERR_INPUT, "--text: %zu bytes%s do not fit %ld positions", len,
                                     off ? " + [CLS] + [SEP]" : "", S);
            }
            len = S >= 2 * off ? (size_t)(S - 2 * off) : 0; /* a model with few positions: the start */
            cut = true;
        }
        int64_t *ids = calloc((size_t)(batch * S), sizeof *ids), *mask = calloc((size_t)(batch * S), sizeof *mask);
        if (!ids || !mask) {
            free(ids);
            free(mask);
            pcv_masked_text_free(&mt);
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        }
        size_t nmask = 0;
        for (long b = 0; b < batch; b++) {
            int64_t *row = ids + b * S, *mrow = mask + b * S, p = 0;
            if (off)
                row[p++] = PCV_TOK_CLS;
            for (size_t j = 0; j < len; j++)
                row[p++] = mt.masked[j] ? PCV_TOK_MASK : (int64_t)mt.bytes[j] + PCV_TOK_BYTE_OFFSET;
            if (off)
                row[p++] = PCV_TOK_SEP;
            for (int64_t j = 0; j < p; j++)
                mrow[j] = 1;
        }
        for (size_t j = 0; j < len; j++)
            nmask += mt.masked[j];
        pcv_masked_text_free(&mt);
        in->buf[0] = ids;
        in->buf[1] = mask;
        in->t[0] = (pcv_io_tensor){.name = "input_ids", .dtype = PCV_DT_I64, .ndim = 2, .shape = {batch, S}, .data = ids};
        in->t[1] = (pcv_io_tensor){.name = "attention_mask", .dtype = PCV_DT_I64, .ndim = 2, .shape = {batch, S},
                                   .data = mask};
        in->n = 2;
        in->tokens = S;
        snprintf(in->desc, sizeof in->desc, "input_ids + attention_mask [%ld,%ld]: %s%s%s, %zu bytes (%zu masked)%s",
                 batch, S, off ? "[CLS] " : "",
                 text ? "--text" : cut ? "the start of the Hugging Face test sentence" : "the Hugging Face test sentence",
                 off ? " [SEP]" : "", len, nmask, (long)len + 2 * off < S ? " + padding" : "");
        return 0;
    }
    if (text)
        return pcv_set_error(err, PCV_ERR_INPUT, "--text is for text models; this is %s", pcv_arch_name(arch));
    if (arch == PCV_ARCH_OPTICAL_FLOW) {
        if (image_size)
            return pcv_set_error(err, PCV_ERR_INPUT, "--image-size: optical flow runs at the model's train_size "
                                 "%dx%d", c->train_size[0], c->train_size[1]);
        int64_t H = c->train_size[0], W = c->train_size[1];
        size_t n = (size_t)(batch * 2 * 27 * H * W);
        float *x = malloc(n * sizeof *x);
        if (!x)
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        fill_uniform(x, n, 0x9E3779B97F4A7C15ull);
        in->buf[0] = x;
        in->t[0] = (pcv_io_tensor){.name = "inputs", .dtype = PCV_DT_F32, .ndim = 5, .shape = {batch, 2, 27, H, W},
                                   .data = x};
        in->n = 1;
        in->tokens = H * W;
        snprintf(in->desc, sizeof in->desc, "inputs [%ld,2,27,%lld,%lld] (two frames of 3x3 patches at train_size), "
                 "deterministic random in [-2, 2)", batch, (long long)H, (long long)W);
        return 0;
    }
    if (arch == PCV_ARCH_MULTIMODAL) {
        /* the autoencoder's video and audio at the config's sizes (as autoencode feeds them) */
        if (image_size)
            return pcv_set_error(err, PCV_ERR_INPUT, "--image-size: the multimodal autoencoder runs at its config's "
                                 "%dx%d frames", c->output_shape[2], c->output_shape[3]);
        int64_t T = c->output_shape[1], H = c->output_shape[2], W = c->output_shape[3];
        int64_t ns = (int64_t)c->num_frames * c->audio_samples_per_frame;
        size_t nv = (size_t)(batch * T * 3 * H * W), na = (size_t)(batch * ns);
        float *v = malloc(nv * sizeof *v), *a = malloc((na ? na : 1) * sizeof *a);
        if (!v || !a) {
            free(v);
            free(a);
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        }
        fill_uniform(v, nv, 0x9E3779B97F4A7C15ull);
        fill_uniform(a, na, 0xD1B54A32D192ED03ull);
        in->buf[0] = v;
        in->buf[1] = a;
        in->t[0] = (pcv_io_tensor){.name = "inputs.image", .dtype = PCV_DT_F32, .ndim = 5,
                                   .shape = {batch, T, 3, H, W}, .data = v};
        in->t[1] = (pcv_io_tensor){.name = "inputs.audio", .dtype = PCV_DT_F32, .ndim = 3, .shape = {batch, ns, 1},
                                   .data = a};
        in->n = 2;
        in->tokens = T * H * W;
        snprintf(in->desc, sizeof in->desc, "inputs.image [%ld,%lld,3,%lld,%lld] + inputs.audio [%ld,%lld,1], "
                 "deterministic random in [-2, 2)", batch, (long long)T, (long long)H, (long long)W, batch,
                 (long long)ns);
        return 0;
    }
    if (arch != PCV_ARCH_IMAGE_LEARNED && arch != PCV_ARCH_IMAGE_FOURIER && arch != PCV_ARCH_IMAGE_CONV)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "no synthetic input for %s: give an inputs file",
                             pcv_arch_name(arch));
    int H, W;
    if (cli_image_size(m, image_size, &H, &W, err))
        return err->code;
    size_t n = (size_t)batch * 3 * (size_t)H * (size_t)W;
    float *x = malloc(n * sizeof *x);
    if (!x)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    fill_uniform(x, n, 0x9E3779B97F4A7C15ull);
    in->buf[0] = x;
    in->t[0] = (pcv_io_tensor){.name = "pixel_values", .dtype = PCV_DT_F32, .ndim = 4, .shape = {batch, 3, H, W},
                               .data = x};
    in->n = 1;
    in->tokens = (int64_t)H * W;
    snprintf(in->desc, sizeof in->desc, "pixel_values [%ld,3,%d,%d], deterministic random in [-2, 2)", batch, H, W);
    return 0;
}

void cli_inputs_free(cli_inputs *in)
{
    free(in->buf[0]);
    free(in->buf[1]);
    memset(in, 0, sizeof *in);
}
