/* perceiver-cl classify: top classes of images with a Perceiver image classifier.
 *
 * Streaming: images are decoded and preprocessed one batch at a time (memory bounded by --batch
 * whatever the number of images); a file that cannot be read or decoded is reported by name and
 * skipped, the others are still classified, in input order, and the exit status is 1 at the end. */
#include "cli/cli.h"
#include "cli/dispatch.h"
#include "cli/jsonw.h"
#include "util/clock.h"
#include "util/fileutil.h"
#include "util/error.h"

#include "perceiver/image.h"
#include "perceiver/tasks.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const cli_option options[] = {
    {"model", 'm', "DIR", "model folder (config.json, model.safetensors,\n"
                          "preprocessor_config.json) or checkpoint"},
    {"top", 'k', "K", "classes per image (default 5; with --threshold: all classes)"},
    {"threshold", CLI_KEY + 3, "P", "only classes of probability P or more (0..1); an image with\n"
                                    "none lists no class"},
    {"labels", CLI_KEY, "FILE", "class names, one per line, line i = class i"},
    {"batch", 'b', "N", "images per forward pass (default 8)"},
    {"recursive", 'r', NULL, "folders: also the images in their subfolders"},
    {"json", CLI_KEY + 1, NULL, "one JSON object per image (docs/json.md)"},
    {"no-exif", CLI_KEY + 2, NULL, "keep the pixels as stored: do not turn photos upright by\n"
                                   "their EXIF orientation (transformers' pipeline turns them)"},
    {0},
};

const cli_command cli_cmd_classify = {
    "classify", "--model DIR [options] IMAGE|DIR|- ...",
    "Prints the top classes of each PNG or JPEG image under a Perceiver image classifier\n"
    "(PerceiverForImageClassificationLearned, ...Fourier or ...ConvProcessing), in input order.\n"
    "A DIR stands for the .png, .jpg and .jpeg files in it, sorted by name (with -r, in its\n"
    "subfolders too); '-' reads one image from standard input. Images are decoded and classified\n"
    "one batch at a time; a file that cannot be read or decoded is reported on standard error by\n"
    "name and skipped, the other images are still classified, and the exit status is then 1.\n"
    "\n"
    "Images are decoded as transformers' image-classification pipeline loads them (turned\n"
    "upright by their EXIF orientation, see --no-exif) and preprocessed like its\n"
    "PerceiverImageProcessor: center crop, Pillow-exact bicubic resize, rescale and\n"
    "normalization, with the settings of DIR/preprocessor_config.json (defaults: 224/256 center\n"
    "crop, 224x224, ImageNet mean and std). With --numerics haiku the ImageNet crop and resize of\n"
    "DeepMind's colab are used instead (OpenCV cubic). Probabilities are a softmax over all\n"
    "classes. Labels come from config.json's id2label, or from --labels FILE (one per line).\n",
    options, CLI_MODEL | CLI_QUIET | CLI_DEVICES, NULL,
};

static char **read_labels(const char *path, int *n, pcv_error *err)
{
    FILE *f = pcv_fopen_regular(path, "a label file", err); /* never blocks on a FIFO (issue 12) */
    if (!f)
        return NULL;
    char **labels = NULL, line[4096];
    int cap = 0;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (*n == cap) {
            cap = cap ? 2 * cap : 1024;
            char **nl = realloc(labels, (size_t)cap * sizeof *nl);
            if (!nl)
                break;
            labels = nl;
        }
        labels[(*n)++] = strdup(line);
    }
    fclose(f);
    if (!labels)
        pcv_set_error(err, PCV_ERR_INPUT, "%s: no labels", path);
    return labels;
}

/* ---- the inputs: files, folders (sorted, optionally recursive), standard input ----------------- */

typedef struct inputs {
    char **paths; /* "-" = standard input */
    int n, cap;
} inputs;

static bool push(inputs *in, const char *p)
{
    if (in->n == in->cap) {
        int cap = in->cap ? 2 * in->cap : 64;
        char **np = realloc(in->paths, (size_t)cap * sizeof *np);
        if (!np)
            return false;
        in->paths = np;
        in->cap = cap;
    }
    return (in->paths[in->n++] = strdup(p)) != NULL;
}

static bool is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A folder's images in name order, its subfolders' after them when recursive. An unreadable
 * folder becomes an item of its own, reported when its turn comes. */
static bool add_dir(inputs *in, const char *dir, bool recursive, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return push(in, dir);
    char **names = NULL;
    int n = 0, cap = 0;
    bool ok = true; /* false: out of memory */
    struct dirent *de;
    while (ok && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) {
                ok = false;
                break;
            }
            names = nn;
        }
        if ((names[n] = strdup(de->d_name)) != NULL)
            n++;
        else
            ok = false;
    }
    closedir(d);
    if (n > 1) /* an empty folder has no list at all (qsort wants one) */
        qsort(names, (size_t)n, sizeof *names, cmp_name);
    char path[8192];
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n && ok; i++) {
            snprintf(path, sizeof path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
            struct stat sb;
            bool isdir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
            if (pass == 0 && !isdir && is_image_name(names[i]))
                ok = push(in, path);
            else if (pass == 1 && isdir && recursive && depth < 64)
                ok = add_dir(in, path, recursive, depth + 1);
        }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return ok;
}

static bool expand(inputs *in, char **ops, int nops, bool recursive)
{
    for (int i = 0; i < nops; i++) {
        struct stat sb;
        bool ok = strcmp(ops[i], "-") && stat(ops[i], &sb) == 0 && S_ISDIR(sb.st_mode)
                      ? add_dir(in, ops[i], recursive, 0)
                      : push(in, ops[i]);
        if (!ok)
            return false;
    }
    return true;
}

/* ---- one image: read, decode, preprocess --------------------------------------------------------- */

#define STDIN_IMAGE_MAX ((size_t)256 << 20)

static int load_image(const char *path, const pcv_image_processor *proc, pcv_image *img, pcv_error *err)
{
    pcv_image_load_options lo = {.ignore_exif_orientation = proc->ignore_exif_orientation};
    if (strcmp(path, "-"))
        return pcv_image_load_ex(path, &lo, img, err);
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0;) {
        n += got;
        if (n == cap) {
            if (cap >= STDIN_IMAGE_MAX) {
                free(buf);
                return pcv_set_error(err, PCV_ERR_INPUT, "standard input: more than %zu MiB; not an image",
                                     STDIN_IMAGE_MAX >> 20);
            }
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    if (!buf)
        return pcv_set_error(err, PCV_ERR_OOM, "standard input: out of memory");
    int rc = pcv_image_load_memory_ex(buf, n, "standard input", &lo, img, err);
    free(buf);
    return rc;
}

/* ---- the work: windows of --batch inputs (cli_dispatch) --------------------------------------- */

typedef struct cls_ctx {
    const inputs *in;
    long batch;
    int k;
    double threshold;
    bool json;
    const pcv_image_processor *proc;
    char **file_labels;
    long nbad, ndone;
    double t0;
} cls_ctx;

typedef struct cls_job {
    int first, n; /* inputs [first, first + n) */
} cls_job;

static void cls_free(void *ctx, void *input)
{
    (void)ctx;
    free(input);
}

static int cls_next(void *vctx, long index, void **input, pcv_error *err)
{
    cls_ctx *c = vctx;
    long first = index * c->batch;
    if (first >= c->in->n)
        return 0;
    cls_job *j = malloc(sizeof *j);
    if (!j)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory"), -1;
    j->first = (int)first;
    j->n = (int)(c->in->n - first < c->batch ? c->in->n - first : c->batch);
    *input = j;
    return 1;
}

/* one image's lines (text) or JSON object, record 'O' */
static int put_result(const cls_ctx *c, const char *path, const pcv_class_score *top, FILE *out)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return PCV_ERR_OOM;
    jw w;
    jw_init(&w, f, 0);
    if (c->json) {
        jw_object(&w);
        jw_path(&w, "image", path);
        jw_key(&w, "top");
        jw_array(&w);
    } else {
        fprintf(f, "%s\n", strcmp(path, "-") ? path : "(standard input)");
    }
    int listed = 0;
    for (int r = 0; r < c->k; r++) {
        const pcv_class_score *t = &top[r];
        if (t->index < 0 || (c->threshold >= 0 && t->probability < c->threshold))
            break; /* sorted: none after it qualifies either */
        char fallback[32];
        const char *label = c->file_labels ? c->file_labels[t->index] : t->label;
        if (!label) {
            snprintf(fallback, sizeof fallback, "LABEL_%d", t->index);
            label = fallback;
        }
        if (c->json) {
            jw_object(&w);
            jw_key(&w, "class"), jw_int(&w, t->index);
            jw_key(&w, "label"), jw_str(&w, label);
            jw_key(&w, "probability"), jw_float(&w, t->probability);
            jw_key(&w, "logit"), jw_float(&w, t->logit);
            jw_object_end(&w);
        } else {
            fprintf(f, "  %6.2f%%  %s (%d)\n", 100.0 * t->probability, label, t->index);
        }
        listed++;
    }
    if (c->json) {
        jw_array_end(&w);
        jw_object_end(&w);
        jw_end(&w);
    } else if (!listed) {
        fprintf(f, "  (no class at or above %.2f%%)\n", 100.0 * c->threshold);
    }
    int rc = fclose(f) == 0 ? 0 : PCV_ERR_OOM;
    if (!rc)
        cli_rec_put(out, 'O', buf, len);
    free(buf);
    return rc;
}

/* a bad image: its message ('E') and, with --json, its error object ('o') */
static void put_error(const cls_ctx *c, const char *path, const char *msg, FILE *out)
{
    cli_rec_put(out, 'E', msg, strlen(msg));
    if (!c->json)
        return;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return;
    jw w;
    jw_init(&w, f, 0);
    jw_object(&w);
    jw_path(&w, "image", path);
    jw_key(&w, "error"), jw_str(&w, msg);
    jw_object_end(&w);
    jw_end(&w);
    if (fclose(f) == 0)
        cli_rec_put(out, 'o', buf, len);
    free(buf);
}

/* Decodes and preprocesses the window's images, classifies each run of consecutive images of one
 * preprocessed size as one batch, and writes every image's result (or error) in input order. */
static int cls_run(void *vctx, pcv_model *m, void *input, FILE *out, pcv_error *err)
{
    const cls_ctx *c = vctx;
    const cls_job *j = input;
    int n = j->n, rc = 0;
    char **errors = calloc((size_t)n, sizeof *errors);
    int *hw = calloc((size_t)n * 2, sizeof *hw);
    float **px = calloc((size_t)n, sizeof *px);
    pcv_class_score *top = malloc((size_t)n * (size_t)c->k * sizeof *top);
    float *batch = NULL;
    if (!errors || !hw || !px || !top) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const char *path = c->in->paths[j->first + i];
        pcv_image img = {0};
        pcv_error ierr = {0};
        int ow = 0, oh = 0;
        if (load_image(path, c->proc, &img, &ierr) || pcv_image_output_size(c->proc, img.width, img.height, &ow, &oh, &ierr) ||
            !(px[i] = malloc((size_t)3 * (size_t)oh * (size_t)ow * sizeof(float))) ||
            pcv_image_preprocess(c->proc, &img, px[i], (size_t)3 * (size_t)oh * (size_t)ow, &ierr)) {
            if (!ierr.msg[0])
                pcv_set_error(&ierr, PCV_ERR_OOM, "out of memory for a %dx%d image", ow, oh);
            if (!strstr(ierr.msg, path) && strcmp(path, "-")) { /* name the file */
                char msg[sizeof ierr.msg];
                snprintf(msg, sizeof msg, "%s", ierr.msg);
                snprintf(ierr.msg, sizeof ierr.msg, "%s: %s", path, msg);
            }
            errors[i] = strdup(ierr.msg);
            free(px[i]);
            px[i] = NULL;
        } else {
            hw[2 * i] = oh, hw[2 * i + 1] = ow;
        }
        pcv_image_free(&img);
    }
    /* runs of one size */
    for (int i = 0; i < n && !rc;) {
        if (!px[i]) {
            i++;
            continue;
        }
        int e = i + 1, ng = 1;
        while (e < n && (!px[e] || (hw[2 * e] == hw[2 * i] && hw[2 * e + 1] == hw[2 * i + 1]))) {
            ng += px[e] != NULL;
            e++;
        }
        size_t per = (size_t)3 * (size_t)hw[2 * i] * (size_t)hw[2 * i + 1];
        float *nb = realloc(batch, per * (size_t)ng * sizeof *nb);
        if (!nb) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory for a batch of %d images", ng);
            break;
        }
        batch = nb;
        for (int t = i, g = 0; t < e; t++)
            if (px[t])
                memcpy(batch + (size_t)g++ * per, px[t], per * sizeof(float));
        pcv_class_score *tops = top + (size_t)i * (size_t)c->k;
        if ((rc = pcv_classify_pixels(m, batch, ng, hw[2 * i], hw[2 * i + 1], c->k, tops, err)))
            break;
        /* spread the results to the images' places */
        for (int t = e - 1, g = ng - 1; t >= i; t--)
            if (px[t]) {
                if (t - i != g)
                    memcpy(top + (size_t)t * (size_t)c->k, tops + (size_t)g * (size_t)c->k,
                           (size_t)c->k * sizeof *top);
                g--;
            }
        i = e;
    }
    for (int i = 0; i < n && !rc; i++) {
        const char *path = c->in->paths[j->first + i];
        if (errors[i])
            put_error(c, path, errors[i], out);
        else if (put_result(c, path, top + (size_t)i * (size_t)c->k, out))
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
done:
    for (int i = 0; errors && i < n; i++)
        free(errors[i]);
    for (int i = 0; px && i < n; i++)
        free(px[i]);
    free(errors);
    free(hw);
    free(px);
    free(top);
    free(batch);
    return rc;
}

static int cls_emit(void *vctx, long index, const char *data, size_t len, pcv_error *err)
{
    (void)index;
    cls_ctx *c = vctx;
    int rc = cli_rec_print(data, len, &c->ndone, &c->nbad, err);
    if (rc)
        return rc;
    long seen = c->ndone + c->nbad;
    double el = pcv_now() - c->t0, rate = c->ndone / (el > 1e-9 ? el : 1e-9);
    if (c->ndone && rate > 0)
        cli_progress_context("classify %ld/%d images, %.1f/s, %.0f s left", seen, c->in->n, rate,
                             (c->in->n - seen) / rate);
    else
        cli_progress_context("classify %ld/%d images", seen, c->in->n);
    return 0;
}

int cmd_classify(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *labels_path = NULL;
    bool json = false, no_exif = false, recursive = false, top_given = false;
    long topk = 5, batch = 8;
    double threshold = -1;
    cli_parse_begin(&p, &cli_cmd_classify, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case CLI_KEY: labels_path = p.arg; break;
        case CLI_KEY + 1: json = true; break;
        case CLI_KEY + 2: no_exif = true; break;
        case 'r': recursive = true; break;
        case 'k':
            if (!cli_int(&p, 1, 100000, &topk))
                return EXIT_USAGE;
            top_given = true;
            break;
        case CLI_KEY + 3:
            if (!cli_double(&p, 0.0, 1.0, &threshold))
                return EXIT_USAGE;
            break;
        case 'b':
            if (!cli_int(&p, 1, 4096, &batch))
                return EXIT_USAGE;
            break;
        default: return EXIT_USAGE;
        }
    }
    if (!model_dir || p.first_operand >= argc)
        return cli_usage_error("classify", "give --model DIR and at least one image");
    int nstdin = 0;
    for (int i = p.first_operand; i < argc; i++)
        nstdin += !strcmp(argv[i], "-");
    if (nstdin > 1)
        return cli_usage_error("classify", "'-' (standard input) can be given once");

    pcv_error err = {0};
    cli_models ms = {0};
    pcv_image_processor proc;
    inputs in = {0};
    char **file_labels = NULL;
    int nfile_labels = 0, rc = EXIT_FAIL;
    cls_ctx ctx = {0};

    if (!expand(&in, argv + p.first_operand, argc - p.first_operand, recursive)) {
        pcv_set_error(&err, PCV_ERR_OOM, "out of memory listing the images");
        goto done;
    }
    if (in.n == 0) {
        pcv_set_error(&err, PCV_ERR_INPUT, "no images: the folders given hold no .png, .jpg or .jpeg file%s",
                      recursive ? "" : " (-r looks into their subfolders)");
        goto done;
    }
    if (cli_models_open(model_dir, &opt, &ms, &err))
        goto done;
    pcv_model *m = ms.m[0];
    pcv_arch arch = pcv_model_arch(m);
    if (arch != PCV_ARCH_IMAGE_LEARNED && arch != PCV_ARCH_IMAGE_FOURIER && arch != PCV_ARCH_IMAGE_CONV) {
        pcv_set_error(&err, PCV_ERR_UNSUPPORTED, "%s: classify needs an image classifier, this is %s", model_dir,
                      pcv_arch_name(arch));
        goto done;
    }
    if (pcv_model_image_processor(m, &proc, &err))
        goto done;
    proc.ignore_exif_orientation = no_exif;
    const pcv_config *c = pcv_model_config(m);
    if (labels_path) {
        file_labels = read_labels(labels_path, &nfile_labels, &err);
        if (!file_labels)
            goto done;
        if (nfile_labels != c->num_labels) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s: %d labels, but the model has %d classes", labels_path,
                          nfile_labels, c->num_labels);
            goto done;
        }
    }
    /* with --threshold and no --top: every class at or above it */
    ctx = (cls_ctx){.in = &in, .batch = batch, .threshold = threshold, .json = json, .proc = &proc,
                    .file_labels = file_labels, .t0 = pcv_now(),
                    .k = (int)(threshold >= 0 && !top_given ? c->num_labels
                               : topk < c->num_labels ? topk : c->num_labels)};
    char devs[1024];
    cli_info("%s on %s, %d image%s", pcv_arch_name(arch), cli_models_describe(&ms, devs, sizeof devs), in.n,
             in.n == 1 ? "" : "s");
    bool from_stdin = false;
    for (int i = 0; i < in.n; i++)
        from_stdin |= !strcmp(in.paths[i], "-");
    cli_work work = {.ctx = &ctx, .next = cls_next, .run = cls_run, .free_input = cls_free, .emit = cls_emit,
                     .reads_stdin = from_stdin};
    if (cli_dispatch(&ms, &work, &err))
        goto done;
    cli_progress_clear();
    if (ctx.nbad)
        cli_info("%ld image%s classified, %ld failed", ctx.ndone, ctx.ndone == 1 ? "" : "s", ctx.nbad);
    rc = fflush(stdout) == 0 && ctx.nbad == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (err.msg[0])
        cli_fail(&err);
    for (int i = 0; i < nfile_labels; i++)
        free(file_labels[i]);
    free(file_labels);
    for (int i = 0; i < in.n; i++)
        free(in.paths[i]);
    free(in.paths);
    cli_models_free(&ms);
    return rc;
}
