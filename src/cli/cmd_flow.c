/* perceiver-cl flow: dense optical flow of frame pairs, frame sequences and videos. */
#include "cli/cli.h"
#include "cli/dispatch.h"
#include "util/clock.h"
#include "util/error.h"

#include "perceiver/flow.h"
#include "perceiver/video.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
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
    "--video-out, --json.\n"
    "\n"
    "Several devices (--device 0,1 or all) or MPI ranks (mpirun -n N perceiver-cl flow ...) share\n"
    "the pairs out, one model per device; the outputs are written in pair order by one process\n"
    "(rank 0), the same bytes as a run on one device of that kind. Every rank reads the frames it\n"
    "needs (a video: all of them, in order).\n",
    options, CLI_MODEL | CLI_QUIET | CLI_DEVICES, NULL,
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

/* ---- the work: one job per frame pair (cli_dispatch) ----------------------------------------- */

/* A decoded video frame, shared by the two pairs it belongs to (freed from the reader thread or
 * the emitting thread, hence the atomic count). */
typedef struct frame_ref {
    pcv_image img;
    atomic_int refs;
} frame_ref;

static frame_ref *frame_hold(frame_ref *f)
{
    if (f)
        atomic_fetch_add(&f->refs, 1);
    return f;
}

static void frame_release(frame_ref *f)
{
    if (f && atomic_fetch_sub(&f->refs, 1) == 1) {
        pcv_image_free(&f->img);
        free(f);
    }
}

typedef struct flow_job {
    int pair;          /* frames pair - 1 and pair */
    frame_ref *a, *b;  /* a video's frames; NULL: image files, loaded by the worker */
    char *error;       /* a frame that could not be read (reported in pair order) */
    int code;
} flow_job;

typedef struct flow_ctx {
    frames *fr;
    int npairs; /* -1: a video of unknown length */
    bool folder, json, tiles_progress;
    const char *out, *png, *st_out, *video_out;
    double max_flow, t0;
    pcv_flow_options fo;
    /* the reader's state (videos) */
    frame_ref *prev;
    bool ended;
    /* the emitter's state */
    int pairs, W, H;
    float *flow, *all;
    pcv_image col;
    pcv_video_writer *vw;
} flow_ctx;

static void flow_free(void *vctx, void *input)
{
    (void)vctx;
    flow_job *j = input;
    if (!j)
        return;
    frame_release(j->a);
    frame_release(j->b);
    free(j->error);
    free(j);
}

static int read_ref(frames *fr, int i, frame_ref **out, bool *eof, pcv_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    atomic_init(&(*out)->refs, 1);
    int rc = next_frame(fr, i, &(*out)->img, eof, err);
    if (rc || *eof) {
        frame_release(*out);
        *out = NULL;
    }
    return rc;
}

/* Job `index` is the pair (index, index + 1). A video is decoded here, frame by frame, on every
 * MPI rank (a decoder reads in order); image files are only named, and loaded by the worker that
 * computes the pair (so that a rank reads only its own pairs' files). */
static int flow_next(void *vctx, long index, void **input, pcv_error *err)
{
    flow_ctx *c = vctx;
    if (c->ended || index >= INT_MAX - 1 || (c->npairs >= 0 && index >= c->npairs))
        return 0;
    flow_job *j = calloc(1, sizeof *j);
    if (!j)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory"), -1;
    j->pair = (int)index + 1;
    if (c->fr->video) {
        pcv_error e = {0};
        bool eof = false;
        if (!c->prev && (read_ref(c->fr, 0, &c->prev, &eof, &e) || eof)) {
            if (eof)
                pcv_set_error(&e, PCV_ERR_INPUT, "%s: no frames", c->fr->video_path);
        } else {
            frame_ref *cur = NULL;
            if (!read_ref(c->fr, j->pair, &cur, &eof, &e) && eof) { /* the end of the video */
                free(j);
                frame_release(c->prev);
                c->prev = NULL;
                c->ended = true;
                return 0;
            }
            if (cur) {
                j->a = frame_hold(c->prev);
                j->b = cur; /* the job's reference; the reader keeps another */
                frame_release(c->prev);
                c->prev = frame_hold(cur);
            }
        }
        if (e.msg[0]) { /* reported when this pair's turn comes; nothing after it */
            j->code = e.code ? (int)e.code : PCV_ERR_INPUT;
            j->error = strdup(e.msg);
            if (!j->error) {
                free(j);
                return pcv_set_error(err, PCV_ERR_OOM, "out of memory"), -1;
            }
            c->ended = true;
        }
    }
    *input = j;
    return 1;
}

/* an 'E' record: the error's code, then its message; nonzero (err set) without memory */
static int put_error(FILE *out, int code, const char *msg, pcv_error *err)
{
    size_t n = strlen(msg);
    char *rec = malloc(sizeof code + n);
    if (!rec)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    memcpy(rec, &code, sizeof code);
    memcpy(rec + sizeof code, msg, n);
    cli_rec_put(out, 'E', rec, sizeof code + n);
    free(rec);
    return 0;
}

typedef struct pair_info {
    int32_t width, height, tiles;
    double seconds;
} pair_info;

/* Computes one pair: an 'E' record (a frame that cannot be read, frames of different sizes, a
 * frame the model refuses), or 'I' (pair_info) and 'F' (the flow, H x W x 2 float32). */
static int flow_run(void *vctx, pcv_model *m, void *input, FILE *out, pcv_error *err)
{
    flow_ctx *c = vctx;
    flow_job *j = input;
    if (j->error)
        return put_error(out, j->code, j->error, err);
    pcv_image fa = {0}, fb = {0};
    const pcv_image *a, *b;
    int rc = 0;
    pcv_error e = {0};
    char name1[4200], name2[4200];
    frame_name(c->fr, j->pair - 1, name1, sizeof name1);
    frame_name(c->fr, j->pair, name2, sizeof name2);
    if (j->a) {
        a = &j->a->img, b = &j->b->img;
    } else {
        a = &fa, b = &fb;
        if (pcv_image_load(c->fr->paths[j->pair - 1], &fa, &e) || pcv_image_load(c->fr->paths[j->pair], &fb, &e)) {
            rc = put_error(out, e.code ? (int)e.code : PCV_ERR_INPUT, e.msg, err);
            goto done;
        }
    }
    if (a->width != b->width || a->height != b->height) {
        pcv_set_error(&e, PCV_ERR_INPUT, "%s is %dx%d but %s is %dx%d: all frames must have one size", name2,
                      b->width, b->height, name1, a->width, a->height);
        rc = put_error(out, (int)e.code, e.msg, err);
        goto done;
    }
    size_t fsz = (size_t)a->width * (size_t)a->height * 2;
    float *flow = malloc(fsz * sizeof *flow);
    if (!flow) {
        pcv_image_free(&fa);
        pcv_image_free(&fb);
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory for the flow of %s -> %s", name1, name2);
    }
    progress prog = {.on = c->tiles_progress, .pair = j->pair, .pairs = c->npairs};
    pcv_flow_options fo = c->fo;
    fo.progress_ctx = &prog;
    pcv_flow_info info;
    if (pcv_flow_pair(m, a, b, &fo, flow, &info, &e)) {
        if (e.code == PCV_ERR_INPUT || e.code == PCV_ERR_UNSUPPORTED) { /* this pair's frames */
            char msg[sizeof e.msg + 8500];
            snprintf(msg, sizeof msg, "%s -> %s: %s", name1, name2, e.msg);
            rc = put_error(out, (int)e.code, msg, err);
        } else { /* the device: ends the run now (the dispatcher names the device) */
            snprintf(err->msg, sizeof err->msg, "%s -> %s: %s", name1, name2, e.msg);
            err->code = e.code;
            rc = e.code ? (int)e.code : PCV_ERR_DEVICE;
        }
    } else {
        pair_info pi = {.width = a->width, .height = a->height, .tiles = info.tiles, .seconds = info.seconds};
        cli_rec_put(out, 'I', &pi, sizeof pi);
        cli_rec_put(out, 'F', flow, fsz * sizeof *flow);
    }
    free(flow);
done:
    pcv_image_free(&fa);
    pcv_image_free(&fb);
    return rc;
}

/* Rank 0, in pair order: the pair's files, its JSON line, its place in the video and the
 * safetensors file. */
static int flow_emit(void *vctx, long index, const char *data, size_t len, pcv_error *err)
{
    flow_ctx *c = vctx;
    int i = (int)index + 1;
    char tag;
    const char *p;
    size_t n;
    pair_info pi;
    bool have_info = false;
    while (cli_rec_next(&data, &len, &tag, &p, &n)) {
        if (tag == 'E') {
            int code = PCV_ERR_INPUT;
            if (n < sizeof code)
                return pcv_set_error(err, PCV_ERR_INPUT, "pair %d: malformed result", i);
            memcpy(&code, p, sizeof code);
            snprintf(err->msg, sizeof err->msg, "%.*s", (int)(n - sizeof code), p + sizeof code);
            err->code = code;
            return code ? code : PCV_ERR_INPUT;
        }
        if (tag == 'I' && n == sizeof pi) {
            memcpy(&pi, p, sizeof pi);
            have_info = true;
        } else if (tag == 'F' && have_info) {
            break;
        }
    }
    if (!have_info || tag != 'F')
        return pcv_set_error(err, PCV_ERR_INPUT, "pair %d: malformed result", i);
    int W = pi.width, H = pi.height;
    size_t fsz = (size_t)W * (size_t)H * 2;
    if (n != fsz * sizeof(float))
        return pcv_set_error(err, PCV_ERR_INPUT, "pair %d: malformed result", i);
    if (c->pairs == 0) {
        c->W = W, c->H = H;
        c->flow = malloc(fsz * sizeof *c->flow);
        c->col.width = W, c->col.height = H, c->col.rgb = malloc((size_t)W * (size_t)H * 3);
        if (!c->flow || !c->col.rgb)
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory for %dx%d frames", W, H);
    } else if (W != c->W || H != c->H) {
        return pcv_set_error(err, PCV_ERR_INPUT, "pair %d is %dx%d but pair 1 is %dx%d: all frames must have one size",
                             i, W, H, c->W, c->H);
    }
    float *flow = c->flow;
    memcpy(flow, p, fsz * sizeof *flow);
    c->pairs++;
    char name1[4200], name2[4200], path[4300];
    frame_name(c->fr, i - 1, name1, sizeof name1);
    frame_name(c->fr, i, name2, sizeof name2);
    json_t *jo = c->json ? json_pack("{s:i, s:s, s:s, s:i, s:i, s:i, s:f}", "pair", i, "frame1", name1, "frame2",
                                     name2, "width", W, "height", H, "tiles", (int)pi.tiles, "seconds", pi.seconds)
                         : NULL;
    json_t *files = c->json ? json_object() : NULL;
    int rc = 0;
    if (c->out) {
        out_name(path, sizeof path, c->out, c->folder, i, "flo");
        if ((rc = pcv_flo_write(path, flow, W, H, err)))
            goto done;
        if (files)
            json_object_set_new(files, "flo", json_string(path));
    }
    float used = 0;
    if (c->png || c->video_out)
        used = pcv_flow_to_rgb(flow, W, H, (float)c->max_flow, c->col.rgb);
    if (c->png) {
        out_name(path, sizeof path, c->png, c->folder, i, "png");
        if ((rc = pcv_image_save_png(path, &c->col, err)))
            goto done;
        if (files)
            json_object_set_new(files, "png", json_string(path));
    }
    if (c->video_out) {
        if (!c->vw &&
            (rc = pcv_video_writer_open(c->video_out, W, H, c->fr->fps > 0 ? c->fr->fps : 10, &c->vw, err)))
            goto done;
        if ((rc = pcv_video_write(c->vw, &c->col, err)))
            goto done;
    }
    if (c->st_out) {
        float *na = realloc(c->all, (size_t)c->pairs * fsz * sizeof *na);
        if (!na) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory for the flow of %d pairs", c->pairs);
            goto done;
        }
        c->all = na;
        memcpy(c->all + (size_t)(c->pairs - 1) * fsz, flow, fsz * sizeof *flow);
    }
    if (c->json) {
        double sum = 0, mx = 0;
        for (size_t q = 0; q < (size_t)W * H; q++) {
            double r = hypot(flow[2 * q], flow[2 * q + 1]);
            sum += r;
            mx = r > mx ? r : mx;
        }
        json_object_set_new(jo, "mean_magnitude", json_real(sum / ((double)W * H)));
        json_object_set_new(jo, "max_magnitude", json_real(mx));
        if (c->png || c->video_out)
            json_object_set_new(jo, "color_max_flow", json_real(used));
        json_object_set_new(jo, "outputs", files);
        files = NULL;
        char *s = json_dumps(jo, JSON_COMPACT);
        if (!c->tiles_progress)
            cli_progress_clear();
        if (s)
            printf("%s\n", s);
        free(s);
        if (fflush(stdout) != 0) {
            rc = pcv_set_error(err, PCV_ERR_IO, "standard output: %s", strerror(errno));
            goto done;
        }
    }
    if (!c->tiles_progress) {
        if (c->npairs > 0)
            cli_progress_context("flow: %d/%d pairs done, %.2f pairs/s", c->pairs, c->npairs,
                                 c->pairs / (pcv_now() - c->t0 + 1e-9));
        else
            cli_progress_context("flow: %d pair%s done, %.2f pairs/s", c->pairs, c->pairs == 1 ? "" : "s",
                                 c->pairs / (pcv_now() - c->t0 + 1e-9));
    }
done:
    json_decref(files);
    json_decref(jo);
    return rc;
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
    cli_models ms = {0};
    flow_ctx ctx = {.fr = &fr, .out = out, .png = png, .st_out = st_out, .video_out = video_out, .json = json,
                    .max_flow = max_flow};
    int rc = EXIT_FAIL;
    struct stat sb;
    bool rank0 = cli_mpi_rank() == 0;

    /* the frames: files, a folder, or a video (every MPI rank opens them) */
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
        if (!fr.paths) {
            pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
            goto done;
        }
        for (int i = 0; i < nargs && (max_frames <= 0 || i < max_frames); i++)
            if (!(fr.paths[fr.n++] = strdup(args[i]))) {
                pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
                goto done;
            }
    }
    ctx.npairs = fr.n > 0 ? fr.n - 1 : -1;          /* -1: a video of unknown length */
    ctx.folder = ctx.npairs != 1 || fr.video;       /* a video's outputs are always numbered files */
    if (ctx.folder && rank0) {                      /* rank 0 writes every output */
        if ((out && ensure_dir(out, &err)) || (png && ensure_dir(png, &err)))
            goto done;
    }
    if (cli_models_open(model_dir, &opt, &ms, &err))
        goto done;
    if (pcv_model_arch(ms.m[0]) != PCV_ARCH_OPTICAL_FLOW) {
        pcv_set_error(&err, PCV_ERR_UNSUPPORTED, "%s: flow needs a PerceiverForOpticalFlow model, this is %s",
                      model_dir, pcv_arch_name(pcv_model_arch(ms.m[0])));
        goto done;
    }
    char devs[1024];
    cli_info("%s on %s", pcv_arch_name(pcv_model_arch(ms.m[0])), cli_models_describe(&ms, devs, sizeof devs));
    /* one device: the tiles of each pair as they are computed; several: pairs done (emit) */
    ctx.tiles_progress = ms.n == 1 && !cli_quiet && isatty(STDERR_FILENO);
    ctx.fo = (pcv_flow_options){.min_overlap = (int)overlap, .scale = (float)scale, .batch = (int)batch, .pad = pad,
                                .progress = on_tiles};
    ctx.t0 = pcv_now();
    cli_work work = {.ctx = &ctx, .next = flow_next, .run = flow_run, .free_input = flow_free, .emit = flow_emit};
    int drc = cli_dispatch(&ms, &work, &err);
    if (ctx.tiles_progress && ctx.pairs > 0)
        fprintf(stderr, "\n");
    cli_progress_clear();
    if (drc)
        goto done;
    if (!rank0) { /* its results went to rank 0 */
        rc = EXIT_OK;
        goto done;
    }
    if (ctx.pairs == 0) {
        pcv_set_error(&err, PCV_ERR_INPUT, "%s: only one frame; flow needs at least 2",
                      fr.video_path ? fr.video_path : "input");
        goto done;
    }
    if (st_out) {
        pcv_st_entry e = {.name = "flow", .dtype = PCV_DT_F32, .ndim = 4, .shape = {ctx.pairs, ctx.H, ctx.W, 2},
                          .data = ctx.all};
        if (pcv_st_write(st_out, &e, 1, &err))
            goto done;
    }
    if (ctx.vw) {
        pcv_video_writer *w = ctx.vw;
        ctx.vw = NULL;
        if (pcv_video_writer_close(w, false, &err))
            goto done;
    }
    cli_info("%d frame pair%s, %dx%d", ctx.pairs, ctx.pairs == 1 ? "" : "s", ctx.W, ctx.H);
    rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (rc && err.msg[0])
        cli_fail(&err);
    if (ctx.vw)
        pcv_video_writer_close(ctx.vw, true, NULL);
    frame_release(ctx.prev);
    free(ctx.col.rgb);
    free(ctx.flow);
    free(ctx.all);
    for (int i = 0; fr.paths && i < fr.n; i++)
        free(fr.paths[i]);
    free(fr.paths);
    pcv_video_close(fr.video);
    cli_models_free(&ms);
    return rc;
}
