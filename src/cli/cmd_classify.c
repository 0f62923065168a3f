/* perceiver-cl classify: top classes of images with a Perceiver image classifier.
 *
 * Streaming: images are decoded and preprocessed one batch at a time (memory bounded by --batch
 * whatever the number of images); a file that cannot be read or decoded is reported by name and
 * skipped, the others are still classified, in input order, and the exit status is 1 at the end. */
#include "cli/cli.h"
#include "cli/jsonw.h"
#include "util/clock.h"
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
    options, CLI_MODEL | CLI_QUIET, NULL,
};

static char **read_labels(const char *path, int *n, pcv_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        pcv_set_error(err, PCV_ERR_IO, "%s: cannot open the label file: %s", path, strerror(errno));
        return NULL;
    }
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
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn)
                break;
            names = nn;
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_name);
    bool ok = true;
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

typedef struct item {
    const char *path;
    char *error; /* NULL: classified, its results at slot */
    int slot;
} item;

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
    pcv_model *m = NULL;
    pcv_image_processor proc;
    inputs in = {0};
    char **file_labels = NULL;
    int nfile_labels = 0, rc = EXIT_FAIL;
    float *pixels = NULL;
    pcv_class_score *top = NULL;
    item *items = NULL;
    long nbad = 0, ndone = 0;
    jw w;
    jw_init(&w, stdout, 0);

    if (!expand(&in, argv + p.first_operand, argc - p.first_operand, recursive)) {
        pcv_set_error(&err, PCV_ERR_OOM, "out of memory listing the images");
        goto done;
    }
    if (in.n == 0) {
        pcv_set_error(&err, PCV_ERR_INPUT, "no images: the folders given hold no .png, .jpg or .jpeg file%s",
                      recursive ? "" : " (-r looks into their subfolders)");
        goto done;
    }
    if (pcv_model_load(model_dir, &opt, &m, &err))
        goto done;
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
    int k = (int)(threshold >= 0 && !top_given ? c->num_labels : topk < c->num_labels ? topk : c->num_labels);
    items = calloc((size_t)batch, sizeof *items);
    top = malloc((size_t)batch * (size_t)k * sizeof *top);
    if (!items || !top) {
        pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    cli_info("%s on %s, %d image%s", pcv_arch_name(arch), pcv_model_device(m), in.n, in.n == 1 ? "" : "s");

    double t0 = pcv_now();
    pcv_image pending = {0}; /* decoded, waiting for the next batch (another size) */
    size_t per = 0, room = 0;
    int H = 0, W = 0, next = 0;
    while (next < in.n) {
        /* one batch: up to `batch` decoded images of one size; the failures stay in place */
        int n = 0, ng = 0;
        while (n < batch && next < in.n) {
            item *it = &items[n];
            it->path = in.paths[next];
            it->error = NULL;
            pcv_image img = pending;
            pcv_error ierr = {0};
            int ow = 0, oh = 0;
            long seen = ndone + nbad + n;
            double el = pcv_now() - t0, rate = ndone / (el > 1e-9 ? el : 1e-9);
            if (ndone && rate > 0)
                cli_progress_context("classify %ld/%d images, %.1f/s, %.0f s left", seen, in.n, rate,
                                     (in.n - seen) / rate);
            else
                cli_progress_context("classify %ld/%d images", seen, in.n);
            memset(&pending, 0, sizeof pending);
            if ((!img.rgb && load_image(it->path, &proc, &img, &ierr)) ||
                pcv_image_output_size(&proc, img.width, img.height, &ow, &oh, &ierr)) {
                if (!strstr(ierr.msg, it->path) && strcmp(it->path, "-")) { /* name the file */
                    char msg[sizeof ierr.msg];
                    snprintf(msg, sizeof msg, "%s", ierr.msg);
                    snprintf(ierr.msg, sizeof ierr.msg, "%s: %s", it->path, msg);
                }
                it->error = strdup(ierr.msg);
                pcv_image_free(&img);
                next++, n++;
                continue;
            }
            if (ng > 0 && (oh != H || ow != W)) { /* another size: it starts the next batch */
                pending = img;
                break;
            }
            size_t need = (size_t)3 * (size_t)oh * (size_t)ow;
            if (ng == 0) {
                H = oh, W = ow, per = need;
                if (room < per * (size_t)batch) {
                    float *np = realloc(pixels, per * (size_t)batch * sizeof *np);
                    if (!np) {
                        pcv_image_free(&img);
                        pcv_set_error(&err, PCV_ERR_OOM, "out of memory for a batch of %ld %dx%d images", batch,
                                      ow, oh);
                        goto done;
                    }
                    pixels = np;
                    room = per * (size_t)batch;
                }
            }
            if (pcv_image_preprocess(&proc, &img, pixels + (size_t)ng * per, per, &ierr)) {
                it->error = strdup(ierr.msg);
            } else {
                it->slot = ng++;
            }
            pcv_image_free(&img);
            next++, n++;
        }
        if (ng && pcv_classify_pixels(m, pixels, ng, H, W, k, top, &err))
            goto done;
        cli_progress_clear();
        for (int i = 0; i < n; i++) {
            item *it = &items[i];
            const char *shown = strcmp(it->path, "-") ? it->path : "(standard input)";
            if (it->error) {
                fprintf(stderr, "perceiver-cl: error: %s\n", it->error);
                if (json) {
                    jw_object(&w);
                    jw_path(&w, "image", it->path);
                    jw_key(&w, "error"), jw_str(&w, it->error);
                    jw_object_end(&w);
                    jw_end(&w);
                }
                free(it->error);
                it->error = NULL;
                nbad++;
                continue;
            }
            if (json) {
                jw_object(&w);
                jw_path(&w, "image", it->path);
                jw_key(&w, "top");
                jw_array(&w);
            } else {
                printf("%s\n", shown);
            }
            int listed = 0;
            for (int r = 0; r < k; r++) {
                const pcv_class_score *t = &top[it->slot * k + r];
                if (t->index < 0 || (threshold >= 0 && t->probability < threshold))
                    break; /* sorted: none after it qualifies either */
                char fallback[32];
                const char *label = file_labels ? file_labels[t->index] : t->label;
                if (!label) {
                    snprintf(fallback, sizeof fallback, "LABEL_%d", t->index);
                    label = fallback;
                }
                if (json) {
                    jw_object(&w);
                    jw_key(&w, "class"), jw_int(&w, t->index);
                    jw_key(&w, "label"), jw_str(&w, label);
                    jw_key(&w, "probability"), jw_float(&w, t->probability);
                    jw_key(&w, "logit"), jw_float(&w, t->logit);
                    jw_object_end(&w);
                } else {
                    printf("  %6.2f%%  %s (%d)\n", 100.0 * t->probability, label, t->index);
                }
                listed++;
            }
            if (json) {
                jw_array_end(&w);
                jw_object_end(&w);
                jw_end(&w);
            } else if (!listed) {
                printf("  (no class at or above %.2f%%)\n", 100.0 * threshold);
            }
            ndone++;
        }
        fflush(stdout);
    }
    if (nbad)
        cli_info("%ld image%s classified, %ld failed", ndone, ndone == 1 ? "" : "s", nbad);
    rc = fflush(stdout) == 0 && nbad == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (err.msg[0])
        cli_fail(&err);
    for (int i = 0; i < nfile_labels; i++)
        free(file_labels[i]);
    free(file_labels);
    for (int i = 0; i < in.n; i++)
        free(in.paths[i]);
    free(in.paths);
    free(items);
    free(pixels);
    free(top);
    pcv_model_free(m);
    return rc;
}
