/* perceiver-cl flow: dense optical flow of frame pairs, frame sequences and videos. */
#include "cli/cli.h"
#include "util/clock.h"
#include "util/error.h"

#include "perceiver/flow.h"
#include "perceiver/video.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const cli_option options[] = {
    {"model", 'm', "M", "model folder or checkpoint file"},
    {"output", 'o', "PATH", "Middlebury .flo file(s)"},
    {"png", CLI_KEY, "PATH", "colour image(s): the Middlebury colour wheel (Baker et al.), white\n"
                            "at rest, full colour at --max-flow pixels"},
    {"safetensors", CLI_KEY + 1, "FILE", "every pair's flow as one float32 tensor \"flow\" [pairs][H][W][2]"},
    {"video-out", CLI_KEY + 2, "FILE", "the colour images as a video (.mp4, .mkv, .avi; needs FFmpeg)"},
    {"json", CLI_KEY + 3, NULL, "one JSON object per pair on standard output: frames, size, tiles,\n"
                                "time, mean and max flow magnitude (pixels), output files"},
    {"max-flow", CLI_KEY + 4, "F", "colour scale in pixels (default: each pair's largest magnitude)"},
    {"scale", CLI_KEY + 5, "S", "pixels per network output unit (default 20)"},
    {"overlap", CLI_KEY + 6, "N", "minimum tile overlap in pixels (default 20)"},
    {"batch", 'b', "N", "tiles per forward pass (default 1)"},
    {"pad", CLI_KEY + 7, NULL, "pad frames smaller than the tile (bottom/right, mid-grey) and crop\n"
                               "the flow back, instead of refusing them like the colab"},
    {"max-frames", CLI_KEY + 8, "N", "read at most N frames of a video or folder"},
    {0},
};

const cli_command cli_cmd_flow = {
    "flow", "--model MODEL [options] FRAME1 FRAME2 [FRAME3 ...] | FOLDER | VIDEO",
    "Computes the dense optical flow between consecutive frames with a PerceiverForOpticalFlow\n"
    "model (deepmind/optical-flow-perceiver or DeepMind's optical_flow_checkpoint.pystate), for\n"
    "frames of any size at least the model's tile (train_size, 368x496): overlapping tiles as in\n"
    "DeepMind's colab (minimum overlap 20, the last tile flush with the border; origins that would\n"
    "leave the frame are clamped, repeated origins computed once), blended with the colab's\n"
    "weights. Flow is in pixels: 20 x the network output (the colab's FLOW_SCALE_FACTOR), for\n"
    "Hugging Face and DeepMind checkpoints alike; channel 0 = u (+x right), 1 = v (+y down).\n"
    "A FOLDER gives its PNG/JPEG frames in name order; a VIDEO is any file FFmpeg reads.\n"
    "\n"
    "Outputs: a file for one pair of frames; a folder, files numbered flow_0001, ..., for a\n"
    "sequence, a folder of frames or a video. At least one of -o, --png, --safetensors,\n"
    "--video-out, --json.\n",
    options, CLI_MODEL | CLI_QUIET, NULL,
};

typedef struct frames {
    char **paths; /* image files, or NULL for a video */
    int n;
    pcv_video *video;
    const char *video_path;
    double fps;
} frames;

static bool is_image_name(const char *s)
{
    const char *dot = strrchr(s, '.');
    if (!dot)
        return false;
    const char *ext[] = {".png", ".PNG", ".jpg", ".JPG", ".jpeg", ".JPEG"};
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcmp(dot, ext[i]))
            return true;
    return false;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* the PNG/JPEG files of a folder, in name order */
static int list_folder(const char *dir, frames *fr, long max_frames, pcv_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return pcv_set_error(err, PCV_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !is_image_name(e->d_name))
            continue;
        if (fr->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(fr->paths, (size_t)cap * sizeof *p);
            if (!p) {
                closedir(d);
                return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
            }
            fr->paths = p;
        }
        size_t l = strlen(dir) + strlen(e->d_name) + 2;
        fr->paths[fr->n] = malloc(l);
        if (!fr->paths[fr->n]) {
            closedir(d);
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        }
        snprintf(fr->paths[fr->n++], l, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (fr->n)
        qsort(fr->paths, (size_t)fr->n, sizeof *fr->paths, cmp_str);
    if (max_frames > 0 && fr->n > max_frames) {
        for (int i = (int)max_frames; i < fr->n; i++)
            free(fr->paths[i]);
        fr->n = (int)max_frames;
    }
    if (fr->n < 2)
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: %d PNG/JPEG frame%s; flow needs at least 2", dir, fr->n,
                             fr->n == 1 ? "" : "s");
    return 0;
}

/* Reads frame i (files: decoded; video: the next frame). */
static int next_frame(frames *fr, int i, pcv_image *img, bool *eof, pcv_error *err)
{
    *eof = false;
    if (fr->video) {
        int rc = pcv_video_read(fr->video, img, eof, err);
        return rc;
    }
    if (i >= fr->n) {
        *eof = true;
        return 0;
    }
    return pcv_image_load(fr->paths[i], img, err);
}

static const char *frame_name(const frames *fr, int i, char *buf, size_t cap)
{
    if (fr->video)
        snprintf(buf, cap, "%s frame %d", fr->video_path, i);
    else
        snprintf(buf, cap, "%s", fr->paths[i]);
    return buf;
}

typedef struct progress {
    bool on;
    int pair, pairs;
} progress;

static void on_tiles(void *ctx, int done, int total)
{
    progress *p = ctx;
    if (!p->on)
        return;
    if (p->pairs > 1)
        fprintf(stderr, "\rperceiver-cl: pair %d%s%d, tile %d/%d   ", p->pair, p->pairs > 0 ? "/" : "", p->pairs, done,
                total);
    else
        fprintf(stderr, "\rperceiver-cl: tile %d/%d   ", done, total);
    fflush(stderr);
}

/* PATH for pair i: the path itself for a single pair, else PATH/flow_NNNN.ext */
static void out_name(char *buf, size_t cap, const char *path, bool folder, int pair, const char *ext)
{
    if (folder)
        snprintf(buf, cap, "%s/flow_%04d.%s", path, pair, ext);
    else
        snprintf(buf, cap, "%s", path);
}

static int ensure_dir(const char *path, pcv_error *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0)
        return S_ISDIR(sb.st_mode) ? 0 : pcv_set_error(err, PCV_ERR_IO, "%s: exists and is not a folder", path);
    if (mkdir(path, 0755) != 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot create the folder: %s", path, strerror(errno));
    return 0;
}

int cmd_flow(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *out = NULL, *png = NULL, *st_out = NULL, *video_out = NULL;
    bool json = false, pad = false;
    long overlap = 20, batch = 1, max_frames = 0;
    double max_flow = 0, scale = 20;
    cli_parse_begin(&p, &cli_cmd_flow, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case 'o': out = p.arg; break;
        case CLI_KEY: png = p.arg; break;
        case CLI_KEY + 1: st_out = p.arg; break;
        case CLI_KEY + 2: video_out = p.arg; break;
        case CLI_KEY + 3: json = true; break;
        case CLI_KEY + 4:
            if (!cli_double(&p, 1e-30, 1e30, &max_flow))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 5:
            if (!cli_double(&p, -1e30, 1e30, &scale))
                return EXIT_USAGE;
            if (scale == 0)
                return cli_usage_error("flow", "--scale needs a nonzero number");
            break;
        case CLI_KEY + 6:
            if (!cli_int(&p, 1, 100000, &overlap))
                return EXIT_USAGE;
            break;
        case 'b':
            if (!cli_int(&p, 1, 256, &batch))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 7: pad = true; break;
        case CLI_KEY + 8:
            if (!cli_int(&p, 2, 1L << 30, &max_frames))
                return EXIT_USAGE;
            break;
        default: return EXIT_USAGE;
        }
    }
    bool quiet = cli_quiet;
    const char **args = (const char **)argv + p.first_operand;
    int nargs = argc - p.first_operand;
    if (!model_dir || nargs == 0) {
        return cli_usage_error("flow", "give --model and two or more frames, a folder of frames or a video");
    }
    if (!out && !png && !st_out && !video_out && !json) {
        return cli_usage_error("flow", "nothing to write: give -o, --png, --safetensors, --video-out or --json");
    }

    pcv_error err = {0};
    frames fr = {0};
    pcv_model *m = NULL;
    pcv_image prev = {0}, cur = {0}, col = {0};
    float *flow = NULL, *all = NULL;
    pcv_video_writer *vw = NULL;
    int rc = EXIT_FAIL, pairs = 0, W = 0, H = 0;
    struct stat sb;

    /* the frames: files, a folder, or a video */
    if (nargs == 1 && stat(args[0], &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (list_folder(args[0], &fr, max_frames, &err))
            goto done;
    } else if (nargs == 1 && is_image_name(args[0])) {
        pcv_set_error(&err, PCV_ERR_INPUT, "flow needs two or more frames, a folder of frames or a video; got one "
                      "image (%s)", args[0]);
        goto done;
    } else if (nargs == 1) {
        pcv_video_info vi;
        pcv_video *v;
        if (pcv_video_open(args[0], &v, &vi, &err))
            goto done;
        fr.video = v;
        fr.video_path = args[0];
        fr.fps = vi.fps;
        fr.n = max_frames > 0 ? (int)max_frames : (vi.frames > 0 ? (int)vi.frames : -1);
    } else {
        fr.paths = calloc((size_t)nargs, sizeof *fr.paths);
        if (!fr.paths)
            goto done;
        for (int i = 0; i < nargs && (max_frames <= 0 || i < max_frames); i++)
            if (!(fr.paths[fr.n++] = strdup(args[i])))
                goto done;
    }
    int npairs = fr.n > 0 ? fr.n - 1 : -1; /* -1: a video of unknown length */
    bool folder = npairs != 1 || fr.video; /* a video's outputs are always numbered files */
    if (folder) {
        if ((out && ensure_dir(out, &err)) || (png && ensure_dir(png, &err)))
            goto done;
    }
    if (pcv_model_load(model_dir, &opt, &m, &err))
        goto done;
    if (pcv_model_arch(m) != PCV_ARCH_OPTICAL_FLOW) {
        pcv_set_error(&err, PCV_ERR_UNSUPPORTED, "%s: flow needs a PerceiverForOpticalFlow model, this is %s",
                      model_dir, pcv_arch_name(pcv_model_arch(m)));
        goto done;
    }
    progress prog = {.on = !quiet && isatty(STDERR_FILENO), .pairs = npairs};
    cli_info("%s on %s", pcv_arch_name(pcv_model_arch(m)), pcv_model_device(m));
    pcv_flow_options fo = {.min_overlap = (int)overlap, .scale = (float)scale, .batch = (int)batch, .pad = pad,
                           .progress = on_tiles, .progress_ctx = &prog};
    char name1[4200], name2[4200];
    bool eof;
    if (next_frame(&fr, 0, &prev, &eof, &err))
        goto done;
    if (eof) {
        pcv_set_error(&err, PCV_ERR_INPUT, "%s: no frames", fr.video_path ? fr.video_path : "input");
        goto done;
    }
    W = prev.width, H = prev.height;
    size_t fsz = (size_t)W * (size_t)H * 2;
    flow = malloc(fsz * sizeof *flow);
    col.width = W, col.height = H, col.rgb = malloc((size_t)W * (size_t)H * 3);
    if (!flow || !col.rgb)
        goto done;
    for (int i = 1; npairs < 0 || i <= npairs; i++) {
        if (next_frame(&fr, i, &cur, &eof, &err))
            goto done;
        if (eof)
            break;
        frame_name(&fr, i - 1, name1, sizeof name1);
        frame_name(&fr, i, name2, sizeof name2);
        if (cur.width != W || cur.height != H) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s is %dx%d but %s is %dx%d: all frames must have one size", name2,
                          cur.width, cur.height, name1, W, H);
            goto done;
        }
        prog.pair = i;
        pcv_flow_info info;
        if (pcv_flow_pair(m, &prev, &cur, &fo, flow, &info, &err)) {
            char msg[sizeof err.msg];
            snprintf(msg, sizeof msg, "%s", err.msg);
            pcv_set_error(&err, err.code, "%s -> %s: %s", name1, name2, msg);
            goto done;
        }
        pairs++;
        char path[4300];
        json_t *jo = json ? json_pack("{s:i, s:s, s:s, s:i, s:i, s:i, s:f}", "pair", i, "frame1", name1, "frame2",
                                      name2, "width", W, "height", H, "tiles", info.tiles, "seconds", info.seconds)
                          : NULL;
        json_t *files = json ? json_object() : NULL;
        if (out) {
            out_name(path, sizeof path, out, folder, i, "flo");
            if (pcv_flo_write(path, flow, W, H, &err))
                goto done;
            if (files)
                json_object_set_new(files, "flo", json_string(path));
        }
        float used = 0;
        if (png || video_out)
            used = pcv_flow_to_rgb(flow, W, H, (float)max_flow, col.rgb);
        if (png) {
            out_name(path, sizeof path, png, folder, i, "png");
            if (pcv_image_save_png(path, &col, &err))
                goto done;
            if (files)
                json_object_set_new(files, "png", json_string(path));
        }
        if (video_out) {
            if (!vw && pcv_video_writer_open(video_out, W, H, fr.fps > 0 ? fr.fps : 10, &vw, &err))
                goto done;
            if (pcv_video_write(vw, &col, &err))
                goto done;
        }
        if (st_out) {
            float *na = realloc(all, (size_t)pairs * fsz * sizeof *na);
            if (!na)
                goto done;
            all = na;
            memcpy(all + (size_t)(pairs - 1) * fsz, flow, fsz * sizeof *flow);
        }
        if (json) {
            double sum = 0, mx = 0;
            for (size_t q = 0; q < (size_t)W * H; q++) {
                double r = hypot(flow[2 * q], flow[2 * q + 1]);
                sum += r;
                mx = r > mx ? r : mx;
            }
            json_object_set_new(jo, "mean_magnitude", json_real(sum / ((double)W * H)));
            json_object_set_new(jo, "max_magnitude", json_real(mx));
            if (png || video_out)
                json_object_set_new(jo, "color_max_flow", json_real(used));
            json_object_set_new(jo, "outputs", files);
            char *s = json_dumps(jo, JSON_COMPACT);
            if (s)
                printf("%s\n", s);
            free(s);
            json_decref(jo);
        }
        pcv_image_free(&prev);
        prev = cur;
        memset(&cur, 0, sizeof cur);
    }
    if (prog.on)
        fprintf(stderr, "\n");
    if (pairs == 0) {
        pcv_set_error(&err, PCV_ERR_INPUT, "%s: only one frame; flow needs at least 2",
                      fr.video_path ? fr.video_path : "input");
        goto done;
    }
    if (st_out) {
        pcv_st_entry e = {.name = "flow", .dtype = PCV_DT_F32, .ndim = 4, .shape = {pairs, H, W, 2}, .data = all};
        if (pcv_st_write(st_out, &e, 1, &err))
            goto done;
    }
    if (vw) {
        pcv_video_writer *w = vw;
        vw = NULL;
        if (pcv_video_writer_close(w, false, &err))
            goto done;
    }
    cli_info("%d frame pair%s, %dx%d", pairs, pairs == 1 ? "" : "s", W, H);
    rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (rc && err.msg[0])
        cli_fail(&err);
    if (vw)
        pcv_video_writer_close(vw, true, NULL);
    pcv_image_free(&prev);
    pcv_image_free(&cur);
    free(col.rgb);
    free(flow);
    free(all);
    for (int i = 0; fr.paths && i < fr.n; i++)
        free(fr.paths[i]);
    free(fr.paths);
    pcv_video_close(fr.video);
    pcv_model_free(m);

    return rc;
}
