/* perceiver-cl autoencode: a video clip (or frames + a WAV) through the multimodal autoencoder:
 * reconstructed frames and audio, and the top Kinetics-700 classes. */
#include "cli/cli.h"
#include "util/clock.h"
#include "util/error.h"

#include "perceiver/tasks.h"
#include "perceiver/video.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const cli_option options[] = {
    {"model", 'm', "M", "model folder or checkpoint file"},
    {"output", 'o', "DIR", "output folder (created)"},
    {"frames", CLI_KEY, NULL, "the operands are T PNG/JPEG frames (with --audio WAV), not a video"},
    {"audio", CLI_KEY + 1, "WAV", "the audio of --frames (16-bit PCM, or any format FFmpeg reads)"},
    {"top", 'k', "K", "classes to print (default 5)"},
    {"labels", CLI_KEY + 2, "FILE", "class names, one per line"},
    {"chunk", CLI_KEY + 3, "N", "decoder queries per step (default 8192; bounds the memory)"},
    {"video", CLI_KEY + 4, "FILE", "side-by-side video (.mp4, .mkv, .avi)"},
    {"no-audio", CLI_KEY + 5, NULL, "feed silence when the clip has no audio track (or no --audio\n"
                                     "is given); an audio track that is there is used"},
    {"json", CLI_KEY + 6, NULL, "machine-readable summary on standard output"},
    {"save-inputs", CLI_KEY + 7, "FILE", "also write the prepared inputs (float32 inputs.image\n"
                                         "[1][T][3][H][W], inputs.audio [1][samples][1]): a run inputs file"},
    {0},
};

const cli_command cli_cmd_autoencode = {
    "autoencode", "--model MODEL [options] VIDEO -o OUTDIR\n"
                  "       perceiver-cl autoencode --model MODEL [options] --frames F1 ... FT --audio WAV -o OUTDIR",
    "Runs a PerceiverForMultimodalAutoencoding model (deepmind/multimodal-perceiver or DeepMind's\n"
    "video_autoencoding_checkpoint.pystate) on a clip the way DeepMind's video-autoencoding colab\n"
    "prepares it, and writes the reconstruction and the top classes. The encoder runs once and\n"
    "every output point is decoded from it (transformers' and the colab's loops rerun the encoder\n"
    "for each of 128 chunks).\n"
    "\n"
    "Input (T = output_shape[1] frames of S = output_shape[2] x output_shape[3] pixels: 16 of\n"
    "224 x 224 for the published model):\n"
    "  video: the first T frames, each cropped to its centre square (offsets width/2 - side/2,\n"
    "         height/2 - side/2), resized with OpenCV's INTER_LINEAR (cv2.resize's default, the\n"
    "         colab's; bit-exact with cv2.resize), RGB, / 255; the first audio track, channel\n"
    "         0, resampled to 25 x audio_samples_per_frame Hz (48 kHz), the first\n"
    "         num_frames x audio_samples_per_frame samples (30720); videos need FFmpeg\n"
    "  --frames F1 ... FT  T PNG/JPEG files (prepared the same way) and --audio WAV\n"
    "Short clips and missing audio are errors (--no-audio feeds silence).\n"
    "\n"
    "Output in OUTDIR: frame_00.png ... (the reconstruction, clip(x * 255) truncated to 8 bits as\n"
    "the colab's to_gif), audio.wav (16-bit, 48 kHz), classes.txt; with --video FILE also the input\n"
    "and the reconstruction side by side as a video. The top classes are printed (--json: one\n"
    "object). Class names: config id2label, --labels FILE, or the bundled Kinetics-700 names.\n",
    options, CLI_MODEL | CLI_QUIET, NULL,
};

/* the colab's frame preparation: centre square, cv2.resize INTER_LINEAR to (w, h), / 255 */
static int prepare_frame(const pcv_image *img, int w, int h, float *chw, pcv_error *err)
{
    int side = img->width < img->height ? img->width : img->height;
    int x0 = img->width / 2 - side / 2, y0 = img->height / 2 - side / 2;
    unsigned char *crop = malloc((size_t)side * side * 3), *res = malloc((size_t)w * h * 3);
    int rc = crop && res ? 0 : pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int y = 0; !rc && y < side; y++)
        memcpy(crop + (size_t)y * side * 3, img->rgb + ((size_t)(y0 + y) * img->width + x0) * 3, (size_t)side * 3);
    if (!rc)
        rc = pcv_image_resize_cv_linear(crop, side, side, res, w, h, err);
    for (int c = 0; !rc && c < 3; c++)
        for (int p = 0; p < w * h; p++)
            chw[(size_t)c * w * h + p] = (float)(res[(size_t)p * 3 + c] / 255.0);
    free(crop);
    free(res);
    return rc;
}

static char **read_lines(const char *path, int *n, pcv_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        pcv_set_error(err, PCV_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char **v = NULL, line[4096];
    int cap = 0;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
        }
        v[(*n)++] = strdup(line);
    }
    fclose(f);
    return v;
}

int cmd_autoencode(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *outdir = NULL, *audio_path = NULL, *labels_path = NULL, *video_out = NULL,
               *inputs_out = NULL;
    bool json = false, no_audio = false, frames_mode = false;
    long topk = 5, chunk = 8192;
    cli_parse_begin(&p, &cli_cmd_autoencode, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case 'o': outdir = p.arg; break;
        case CLI_KEY: frames_mode = true; break;
        case CLI_KEY + 1: audio_path = p.arg; break;
        case 'k':
            if (!cli_int(&p, 1, 100000, &topk))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 2: labels_path = p.arg; break;
        case CLI_KEY + 3:
            if (!cli_int(&p, 1, 1L << 24, &chunk))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 4: video_out = p.arg; break;
        case CLI_KEY + 5: no_audio = true; break;
        case CLI_KEY + 6: json = true; break;
        case CLI_KEY + 7: inputs_out = p.arg; break;
        default: return EXIT_USAGE;
        }
    }
    const char **args = (const char **)argv + p.first_operand;
    int nargs = argc - p.first_operand;
    if (!model_dir || !outdir || nargs == 0 || (!frames_mode && nargs != 1) || (frames_mode && !audio_path && !no_audio) ||
        (!frames_mode && audio_path)) {
        return cli_usage_error("autoencode", "give --model, -o OUTDIR and either one VIDEO or --frames F1 ... FT "
                               "--audio WAV");
    }

    pcv_error err = {0};
    pcv_model *m = NULL;
    pcv_video *vid = NULL;
    pcv_video_writer *vw = NULL;
    float *video = NULL, *audio = NULL;
    pcv_image *inframes = NULL;
    char **file_labels = NULL;
    int nfile_labels = 0, rc = EXIT_FAIL, T = 0, H = 0, W = 0;
    opt.decode_chunk = chunk;
    if (pcv_model_load(model_dir, &opt, &m, &err))
        goto done;
    if (pcv_model_arch(m) != PCV_ARCH_MULTIMODAL) {
        pcv_set_error(&err, PCV_ERR_UNSUPPORTED, "%s: autoencode needs a PerceiverForMultimodalAutoencoding model, this "
                      "is %s", model_dir, pcv_arch_name(pcv_model_arch(m)));
        goto done;
    }
    const pcv_config *c = pcv_model_config(m);
    T = c->output_shape[1], H = c->output_shape[2], W = c->output_shape[3];
    int rate = 25 * c->audio_samples_per_frame;
    int64_t nsamp = (int64_t)c->num_frames * c->audio_samples_per_frame;
    if (labels_path) {
        file_labels = read_lines(labels_path, &nfile_labels, &err);
        if (!file_labels)
            goto done;
        if (nfile_labels != c->num_labels) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s: %d labels, but the model has %d classes", labels_path, nfile_labels,
                          c->num_labels);
            goto done;
        }
    }
    size_t fsz = (size_t)3 * H * W;
    video = malloc((size_t)T * fsz * sizeof *video);
    inframes = calloc((size_t)T, sizeof *inframes);
    if (!video || !inframes)
        goto done;
    /* frames */
    const char *src = frames_mode ? "frames" : args[0];
    if (frames_mode) {
        if (nargs != T) {
            pcv_set_error(&err, PCV_ERR_INPUT, "--frames: %d files, but the model takes %d frames (output_shape[1])",
                          nargs, T);
            goto done;
        }
        for (int t = 0; t < T; t++)
            if (pcv_image_load(args[t], &inframes[t], &err))
                goto done;
    } else {
        pcv_video_info vi;
        if (pcv_video_open(args[0], &vid, &vi, &err))
            goto done;
        if (vi.fps > 0 && fabs(vi.fps - 25.0) > 0.01)
            fprintf(stderr, "perceiver-cl: warning: %s is %.3g fps; the model was trained on 25 fps clips (frames are "
                    "used as they are)\n", args[0], vi.fps);
        for (int t = 0; t < T; t++) {
            bool eof;
            if (pcv_video_read(vid, &inframes[t], &eof, &err))
                goto done;
            if (eof) {
                pcv_set_error(&err, PCV_ERR_INPUT, "%s: %d frames; the model takes %d", args[0], t, T);
                goto done;
            }
        }
    }
    for (int t = 0; t < T; t++)
        if (prepare_frame(&inframes[t], W, H, video + (size_t)t * fsz, &err))
            goto done;
    /* audio */
    int64_t got = 0;
    const char *apath = frames_mode ? audio_path : args[0];
    /* --no-audio: a clip without an audio track gets silence; a track that is there is used (in
     * both modes), and a short one is still an error */
    if (apath && pcv_audio_load(apath, rate, nsamp, &audio, &got, &err)) {
        if (!no_audio)
            goto done;
        memset(&err, 0, sizeof err);
    }
    if (got < nsamp) {
        if (!no_audio || (audio && got > 0)) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s: %lld audio samples at %d Hz; the model takes %lld (pass --no-audio to "
                          "feed silence to a clip without sound)", apath ? apath : src, (long long)got, rate,
                          (long long)nsamp);
            goto done;
        }
        float *z = realloc(audio, (size_t)nsamp * sizeof *z);
        if (!z)
            goto done;
        audio = z;
        memset(audio + got, 0, (size_t)(nsamp - got) * sizeof *audio);
    }
    /* one forward pass: every output point */
    pcv_io_tensor in[2] = {
        {.name = "inputs.image", .dtype = PCV_DT_F32, .ndim = 5, .shape = {1, T, 3, H, W}, .data = video},
        {.name = "inputs.audio", .dtype = PCV_DT_F32, .ndim = 3, .shape = {1, nsamp, 1}, .data = audio},
    };
    if (inputs_out) {
        pcv_st_entry e[2];
        for (int i = 0; i < 2; i++)
            e[i] = (pcv_st_entry){.name = in[i].name, .dtype = PCV_DT_F32, .ndim = in[i].ndim, .data = in[i].data};
        memcpy(e[0].shape, in[0].shape, sizeof e[0].shape);
        memcpy(e[1].shape, in[1].shape, sizeof e[1].shape);
        if (pcv_st_write(inputs_out, e, 2, &err))
            goto done;
    }
    const pcv_io_tensor *outs;
    int nout;
    double t0 = pcv_now();
    fprintf(stderr, "perceiver-cl: %s on %s: encoding once, decoding %lld points\n", pcv_arch_name(pcv_model_arch(m)),
            pcv_model_device(m), (long long)T * H * W + nsamp / c->samples_per_patch + 1);
    if (pcv_model_forward(m, in, 2, &outs, &nout, &err))
        goto done;
    double secs = pcv_now() - t0;
    const pcv_io_tensor *oi = pcv_io_find(outs, nout, "logits.image"), *oa = pcv_io_find(outs, nout, "logits.audio"),
                        *ol = pcv_io_find(outs, nout, "logits.label");
    /* outputs */
    struct stat sb;
    if (stat(outdir, &sb) != 0 && mkdir(outdir, 0755) != 0) {
        pcv_set_error(&err, PCV_ERR_IO, "%s: cannot create the folder: %s", outdir, strerror(errno));
        goto done;
    }
    char path[4200];
    pcv_image rec = {.width = W, .height = H, .rgb = malloc((size_t)W * H * 3)},
              side = {.width = 2 * W, .height = H, .rgb = malloc((size_t)2 * W * H * 3)};
    if (!rec.rgb || !side.rgb) {
        free(rec.rgb);
        free(side.rgb);
        goto done;
    }
    const float *pix = oi->data;
    for (int t = 0; t < T && !err.msg[0]; t++) {
        for (size_t q = 0; q < (size_t)W * H * 3; q++) { /* the colab's to_gif: clip(x*255) truncated */
            float v = pix[(size_t)t * W * H * 3 + q] * 255.0f;
            rec.rgb[q] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
        snprintf(path, sizeof path, "%s/frame_%02d.png", outdir, t);
        if (pcv_image_save_png(path, &rec, &err))
            break;
        if (video_out) {
            for (int y = 0; y < H; y++)
                for (int x = 0; x < 2 * W; x++)
                    for (int ch = 0; ch < 3; ch++) {
                        float v = x < W ? video[(size_t)ch * H * W + (size_t)t * fsz + (size_t)y * W + x] * 255.0f
                                        : rec.rgb[((size_t)y * W + x - W) * 3 + ch];
                        side.rgb[((size_t)y * 2 * W + x) * 3 + ch] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
                    }
            if ((!vw && pcv_video_writer_open(video_out, 2 * W, H, 25, &vw, &err)) || pcv_video_write(vw, &side, &err))
                break;
        }
    }
    free(rec.rgb);
    free(side.rgb);
    if (err.msg[0])
        goto done;
    if (vw) {
        pcv_video_writer *w = vw;
        vw = NULL;
        if (pcv_video_writer_close(w, false, &err))
            goto done;
    }
    snprintf(path, sizeof path, "%s/audio.wav", outdir);
    if (pcv_wav_write(path, oa->data, oa->shape[1], rate, &err))
        goto done;
    int L = c->num_labels, k = (int)(topk < L ? topk : L);
    int *idx = malloc((size_t)k * sizeof *idx);
    float *prob = malloc((size_t)k * sizeof *prob);
    if (!idx || !prob) {
        free(idx);
        free(prob);
        goto done;
    }
    pcv_top_k(ol->data, L, k, idx, prob);
    json_t *jt = json_array();
    snprintf(path, sizeof path, "%s/classes.txt", outdir);
    FILE *cf = fopen(path, "w");
    for (int r = 0; r < k; r++) {
        char fb[32];
        const char *label = file_labels ? file_labels[idx[r]] : c->id2label ? c->id2label[idx[r]] : NULL;
        if (!label) {
            snprintf(fb, sizeof fb, "LABEL_%d", idx[r]);
            label = fb;
        }
        if (!json)
            printf("  %6.2f%%  %s (%d)\n", 100.0 * prob[r], label, idx[r]);
        if (cf)
            fprintf(cf, "%.6f\t%d\t%s\n", prob[r], idx[r], label);
        json_array_append_new(jt, json_pack("{s:i, s:s, s:f, s:f}", "class", idx[r], "label", label, "probability",
                                            (double)prob[r], "logit", (double)((const float *)ol->data)[idx[r]]));
    }
    if (cf && fclose(cf) != 0)
        pcv_set_error(&err, PCV_ERR_IO, "%s: write error", path);
    if (json) {
        json_t *o = json_pack("{s:s, s:i, s:i, s:i, s:I, s:f, s:s, s:o}", "input", src, "frames", T, "height", H, "width",
                              W, "audio_samples", (json_int_t)nsamp, "seconds", secs, "output", outdir, "top", jt);
        char *s = json_dumps(o, JSON_COMPACT);
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        json_decref(jt);
    }
    free(idx);
    free(prob);
    if (err.msg[0])
        goto done;
    fprintf(stderr, "perceiver-cl: %d frames, %lld audio samples reconstructed in %.2f s -> %s\n", T, (long long)nsamp,
            secs, outdir);
    rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (rc && err.msg[0])
        cli_fail(&err);
    if (vw)
        pcv_video_writer_close(vw, true, NULL);
    for (int t = 0; inframes && t < T; t++)
        pcv_image_free(&inframes[t]);
    free(inframes);
    for (int i = 0; i < nfile_labels; i++)
        free(file_labels[i]);
    free(file_labels);
    free(video);
    free(audio);
    pcv_video_close(vid);
    pcv_model_free(m);
    return rc;
}
