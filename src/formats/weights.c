/* Weight sets: one table of named tensors over the checkpoint formats perceiver-cl reads.
 *
 * Formats are recognised by their structure, not by file names (formats/sniff.c): safetensors
 * (header length that fits the file, a '{'...'}' header), legacy torch.save (its magic-number
 * pickle), PyTorch zip (local header and end record), DeepMind Haiku pickles (any other pickle:
 * PROTO first, STOP last), and sharded checkpoints through their *.index.json. Tensor
 * data stay in the mapped files whenever no conversion is needed; Haiku weights that need a
 * transpose get a converted copy owned by the set (w->blocks). */
#include "formats/formats.h"
#include "util/error.h"

#include "util/fileutil.h"

#include "formats/haiku.h"
#include "formats/sniff.h"
#include "model/arch.h"
#include "formats/torchzip.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* One mapped non-safetensors file and what was parsed from it. */
typedef struct wsource {
    void *map;
    size_t size;
    pcv_torch_file torch;
    bool has_torch;
    pk_doc pk;
    bool has_pk;
} wsource;

typedef struct wext {
    wsource *src;
    int nsrc;
} wext;

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const pcv_st_tensor *)a)->name, ((const pcv_st_tensor *)b)->name);
}

static int keep_block(pcv_weights *w, void *p, pcv_error *err)
{
    void **b = realloc(w->blocks, (size_t)(w->nblocks + 1) * sizeof *b);
    if (!b) {
        free(p);
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    w->blocks = b;
    w->blocks[w->nblocks++] = p;
    return 0;
}

static int add_tensor(pcv_weights *w, const char *name, pcv_dtype dt, int ndim,
                      const int64_t *shape, const void *data, size_t nbytes, pcv_error *err)
{
    char *nm = strdup(name);
    if (!nm || keep_block(w, nm, err))
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    pcv_st_tensor *t = realloc(w->tensors, (size_t)(w->count + 1) * sizeof *t);
    if (!t)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    w->tensors = t;
    pcv_st_tensor *x = &w->tensors[w->count++];
    memset(x, 0, sizeof *x);
    x->name = nm;
    x->dtype = dt;
    x->ndim = ndim;
    x->numel = 1;
    for (int i = 0; i < ndim; i++) {
        x->shape[i] = shape[i];
        x->numel *= shape[i];
    }
    x->data = data;
    x->nbytes = nbytes;
    return 0;
}

/* Adds every tensor of an opened safetensors file to the set (names are shared, not copied). */
static int add_file_tensors(pcv_weights *w, const pcv_safetensors *st, pcv_error *err)
{
    pcv_st_tensor *t = realloc(w->tensors, (size_t)(w->count + st->count + 1) * sizeof *t);
    if (!t)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    w->tensors = t;
    memcpy(w->tensors + w->count, st->tensors, (size_t)st->count * sizeof *t);
    w->count += st->count;
    return 0;
}

static int open_safetensors(pcv_weights *w, const char *path, pcv_error *err)
{
    pcv_safetensors *f = realloc(w->files, (size_t)(w->nfiles + 1) * sizeof *f);
    if (!f)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    w->files = f;
    memset(&w->files[w->nfiles], 0, sizeof *f);
    int rc = pcv_st_map(&w->files[w->nfiles], path, err);
    if (rc)
        return rc;
    w->nfiles++;
    return add_file_tensors(w, &w->files[w->nfiles - 1], err);
}

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ---- mapped sources ------------------------------------------------------------------------ */

static wsource *new_source(pcv_weights *w, pcv_error *err)
{
    wext *x = w->ext;
    if (!x) {
        x = calloc(1, sizeof *x);
        if (!x) {
            pcv_set_error(err, PCV_ERR_OOM, "out of memory");
            return NULL;
        }
        w->ext = x;
    }
    wsource *s = realloc(x->src, (size_t)(x->nsrc + 1) * sizeof *s);
    if (!s) {
        pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        return NULL;
    }
    x->src = s;
    memset(&s[x->nsrc], 0, sizeof *s);
    return &s[x->nsrc++];
}

/* ---- format detection ---------------------------------------------------------------------- */

typedef enum wformat { WF_UNKNOWN, WF_SAFETENSORS, WF_TORCH, WF_PICKLE, WF_INDEX } wformat;

/* By structure first (formats/sniff.c: every format checked at both ends, the strictest first);
 * a file that matches no structure (a protocol 0/1 pickle has no PROTO opcode, a truncated file
 * loses its end) goes by its name, so that the format's reader explains what is wrong. */
static wformat sniff(const char *path)
{
    switch (pcv_sniff_file(path, NULL, 0)) {
    case PCV_FILE_SAFETENSORS: return WF_SAFETENSORS;
    case PCV_FILE_TORCH_LEGACY:
    case PCV_FILE_TORCH_ZIP: return WF_TORCH;
    case PCV_FILE_PICKLE: return WF_PICKLE;
    case PCV_FILE_JSON:
        if (ends_with(path, ".json"))
            return WF_INDEX;
        break;
    case PCV_FILE_UNKNOWN: break;
    }
    if (ends_with(path, ".pickle") || ends_with(path, ".pystate") || ends_with(path, ".pkl"))
        return WF_PICKLE;
    if (ends_with(path, ".safetensors"))
        return WF_SAFETENSORS;
    if (ends_with(path, ".bin") || ends_with(path, ".pt") || ends_with(path, ".pth"))
        return WF_TORCH;
    return WF_UNKNOWN;
}

/* ---- PyTorch ------------------------------------------------------------------------------- */

static int open_torch(pcv_weights *w, const char *path, pcv_error *err)
{
    wsource *s = new_source(w, err);
    if (!s)
        return PCV_ERR_OOM;
    int rc = pcv_map_file(path, "a checkpoint file", &s->map, &s->size, err);
    if (rc)
        return rc;
    if ((rc = pcv_torch_parse(&s->torch, s->map, s->size, path, err)))
        return rc;
    s->has_torch = true;
    snprintf(w->format, sizeof w->format, "%s", s->torch.format);
    const pk_obj *d = s->torch.doc.root;
    for (size_t i = 0; i < d->u.dict.n; i++) {
        const pk_obj *k = d->u.dict.k[i], *v = d->u.dict.v[i];
        if (v->kind != PK_ARRAY)
            continue; /* not a tensor (e.g. extra state): not a weight */
        if (k->kind != PK_STR || memchr(k->u.s.p, '\0', k->u.s.n))
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: a state-dict key is not a string", path);
        char *name = strndup((const char *)k->u.s.p, k->u.s.n);
        if (!name)
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        const pk_array *a = v->u.arr;
        rc = add_tensor(w, name, a->dtype, a->ndim, a->shape, a->data, a->nbytes, err);
        free(name);
        if (rc)
            return rc;
    }
    return 0;
}

/* The registry row of an --architecture value (HF class, convert-script or preset name). */
static int arch_option(const char *name, const pcv_arch_info **out, pcv_error *err)
{
    if ((*out = pcv_arch_lookup(name)))
        return 0;
    return pcv_set_error(err, PCV_ERR_INPUT, "unknown architecture '%s' (use MLM, image_classification, "
                         "image_classification_fourier, image_classification_conv, optical_flow, "
                         "multimodal_autoencoding or an HF class name)", name);
}

/* ---- DeepMind Haiku pickles ---------------------------------------------------------------- */

/* np.transpose (all axes reversed) of a C-order array into a new buffer. */
static void *reverse_axes(const pk_array *a, size_t elem)
{
    int64_t numel = 1;
    for (int i = 0; i < a->ndim; i++)
        numel *= a->shape[i];
    unsigned char *out = malloc(a->nbytes ? a->nbytes : 1);
    if (!out)
        return NULL;
    int64_t cs[PCV_MAX_DIMS], s = 1; /* C strides of the source, in elements */
    for (int i = a->ndim - 1; i >= 0; i--) {
        cs[i] = s;
        s *= a->shape[i];
    }
    int n = a->ndim;
    int64_t idx[PCV_MAX_DIMS] = {0}, off = 0;
    /* output dimension j walks source dimension n-1-j */
    for (int64_t r = 0; r < numel; r++) {
        memcpy(out + (size_t)r * elem, (const unsigned char *)a->data + (size_t)off * elem, elem);
        for (int j = n - 1; j >= 0; j--) {
            int d = n - 1 - j;
            if (++idx[j] < a->shape[d]) {
                off += cs[d];
                break;
            }
            off -= cs[d] * (idx[j] - 1);
            idx[j] = 0;
        }
    }
    return out;
}

static int add_haiku_param(pcv_weights *w, const char *file, const hk_param *p, const pcv_arch_info *arch,
                           bool raw, pcv_error *err)
{
    const pk_array *a = p->arr;
    if (raw)
        return add_tensor(w, p->name, a->dtype, a->ndim, a->shape, a->data, a->nbytes, err);
    char hf[256];
    hk_transform t;
    if (hk_rename(p->name, arch->arch, hf, sizeof hf, &t) != 0)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "%s: Haiku parameter '%s' is not in the renamer table for %s (is "
                             "--architecture right?)", file, p->name, arch->hf_class);
    if (t == HK_T_DROP) {
        w->ndropped++;
        return 0;
    }
    int64_t shape[PCV_MAX_DIMS];
    int ndim = a->ndim, big = 0;
    const void *data = a->data;
    if (t == HK_T_NONE) {
        memcpy(shape, a->shape, sizeof shape);
    } else {
        for (int i = 0; i < ndim; i++) {
            shape[i] = a->shape[ndim - 1 - i];
            big += shape[i] > 1;
        }
        if (big > 1) { /* a real transpose moves data; otherwise only the shape changes */
            void *q = reverse_axes(a, pcv_dtype_size(a->dtype));
            if (!q || keep_block(w, q, err))
                return pcv_set_error(err, PCV_ERR_OOM, "out of memory transposing '%s'", p->name);
            data = q;
        }
        if (t == HK_T_SQUEEZE) {
            int o = 0;
            for (int i = 0; i < ndim; i++)
                if (shape[i] != 1)
                    shape[o++] = shape[i];
            ndim = o;
        }
    }
    return add_tensor(w, hf, a->dtype, ndim, shape, data, a->nbytes, err);
}

static int open_haiku(pcv_weights *w, const char *path, const pcv_weights_options *opt,
                      pcv_error *err)
{
    wsource *s = new_source(w, err);
    if (!s)
        return PCV_ERR_OOM;
    int rc = pcv_map_file(path, "a checkpoint file", &s->map, &s->size, err);
    if (rc)
        return rc;
    pk_options po = {.name = path};
    if ((rc = pk_load(&s->pk, s->map, s->size, &po, err)))
        return rc;
    s->has_pk = true;
    hk_param *p = NULL;
    size_t n = 0;
    if ((rc = hk_flatten(s->pk.root, path, &p, &n, err)))
        return rc;
    const char **names = malloc(n * sizeof *names);
    if (!names) {
        hk_params_free(p, n);
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        names[i] = p[i].name;
    const pcv_arch_info *arch = pcv_arch_detect(names, n);
    free(names);
    if (opt && opt->architecture) {
        const pcv_arch_info *ai = NULL;
        if ((rc = arch_option(opt->architecture, &ai, err))) {
            hk_params_free(p, n);
            return rc;
        }
        /* an override is for names that detection cannot place, not for contradicting it */
        if (arch && arch != ai) {
            const char *found = arch->hf_class;
            hk_params_free(p, n);
            return pcv_set_error(err, PCV_ERR_INPUT, "%s: --architecture %s does not match the "
                                 "parameter names, which are those of %s", path,
                                 opt->architecture, found);
        }
        arch = ai;
    }
    if (!arch && !(opt && opt->haiku_names)) {
        hk_params_free(p, n);
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: cannot tell which Perceiver "
                             "architecture these Haiku parameters belong to (pass --architecture)",
                             path);
    }
    w->from_haiku = true;
    snprintf(w->format, sizeof w->format, "haiku-pickle");
    if (arch)
        snprintf(w->architecture, sizeof w->architecture, "%s", arch->hf_class);
    bool raw = opt && opt->haiku_names;
    bool batchnorm = false;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = add_haiku_param(w, path, &p[i], arch, raw, err);
        batchnorm |= strstr(p[i].name, "/batchnorm/") != NULL;
    }
    hk_params_free(p, n);
    if (!rc && batchnorm && !raw) {
        /* torch's BatchNorm2d has a step counter that Haiku does not store; HF checkpoints
         * carry it as an int64 scalar (0 after conversion) */
        static const int64_t zero = 0;
        rc = add_tensor(w, "perceiver.input_preprocessor.convnet.batchnorm.num_batches_tracked",
                        PCV_DT_I64, 0, NULL, &zero, sizeof zero, err);
    }
    return rc;
}

/* ---- sharded checkpoints ------------------------------------------------------------------- */

static int open_one(pcv_weights *w, const char *path, wformat f, const pcv_weights_options *opt,
                    pcv_error *err);

static int open_index(pcv_weights *w, const char *path, pcv_error *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: not valid JSON (line %d): %s", path, je.line, je.text);
    json_t *map = json_object_get(root, "weight_map");
    int rc = 0;
    if (!json_is_object(map)) {
        json_decref(root);
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: no \"weight_map\" object (not a sharded "
                             "checkpoint index)", path);
    }
    /* shard files, in first-seen order */
    const char *shards[4096];
    int nshards = 0;
    const char *k;
    json_t *v;
    json_object_foreach(map, k, v) {
        const char *s = json_string_value(v);
        if (!s || !s[0] || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: shard of '%s' is not a plain file name "
                               "in the same folder", path, k);
            break;
        }
        int j = 0;
        while (j < nshards && strcmp(shards[j], s))
            j++;
        if (j == nshards) {
            if (nshards == (int)(sizeof shards / sizeof *shards)) {
                rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: too many shards", path);
                break;
            }
            shards[nshards++] = s;
        }
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    char kind[32] = "";
    for (int i = 0; i < nshards && !rc; i++) {
        char file[4096 + 256];
        snprintf(file, sizeof file, "%s/%s", dir, shards[i]);
        wformat f = sniff(file);
        if (!is_file(file)) {
            rc = pcv_set_error(err, PCV_ERR_MISSING, "%s: shard %s is missing", path, file);
            break;
        }
        if (f != WF_SAFETENSORS && f != WF_TORCH) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: shard %s is neither safetensors nor a "
                               "PyTorch file", path, file);
            break;
        }
        int start = w->count;
        if ((rc = open_one(w, file, f, NULL, err)))
            break;
        if (!kind[0])
            snprintf(kind, sizeof kind, "%s", w->format);
        for (int t = start; t < w->count && !rc; t++) {
            const char *want = json_string_value(json_object_get(map, w->tensors[t].name));
            if (!want)
                rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: tensor '%s' in shard %s is not listed "
                                   "in the index", path, w->tensors[t].name, shards[i]);
            else if (strcmp(want, shards[i]))
                rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: tensor '%s' is in shard %s but the "
                                   "index says %s", path, w->tensors[t].name, shards[i], want);
        }
    }
    if (!rc) {
        qsort(w->tensors, (size_t)w->count, sizeof *w->tensors, cmp_tensor);
        json_object_foreach(map, k, v) {
            if (!pcv_weights_find(w, k)) {
                rc = pcv_set_error(err, PCV_ERR_MISSING, "%s: tensor '%s' listed in the index is "
                                   "not in shard %s", path, k, json_string_value(v));
                break;
            }
        }
    }
    if (!rc)
        snprintf(w->format, sizeof w->format, "%s, %d shard%s", kind, nshards, nshards == 1 ? "" : "s");
    json_decref(root);
    return rc;
}

static int open_one(pcv_weights *w, const char *path, wformat f, const pcv_weights_options *opt,
                    pcv_error *err)
{
    switch (f) {
    case WF_SAFETENSORS:
        snprintf(w->format, sizeof w->format, "safetensors");
        return open_safetensors(w, path, err);
    case WF_TORCH: return open_torch(w, path, err);
    case WF_PICKLE: return open_haiku(w, path, opt, err);
    case WF_INDEX: return open_index(w, path, err);
    default:
        if (!is_file(path))
            return pcv_set_error(err, PCV_ERR_IO, "%s: not a regular file", path);
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: not a recognised checkpoint (expected "
                             "safetensors, a PyTorch .bin, a DeepMind pickle or a *.index.json)",
                             path);
    }
}

/* The checkpoint a folder holds, in order of preference. */
static int find_in_folder(const char *dir, char *out, size_t cap, pcv_error *err)
{
    static const char *const names[] = {"model.safetensors", "model.safetensors.index.json",
                                        "pytorch_model.bin", "pytorch_model.bin.index.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(out, cap, "%s/%s", dir, names[i]);
        if (is_file(out))
            return 0;
    }
    /* a DeepMind release file */
    char found[4096] = "";
    int count = 0;
    char list[512] = "";
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            const char *n = de->d_name;
            if (n[0] == '.' || !(ends_with(n, ".pickle") || ends_with(n, ".pystate") || ends_with(n, ".pkl")))
                continue;
            snprintf(out, cap, "%s/%s", dir, n);
            if (!is_file(out))
                continue;
            if (count++ == 0)
                snprintf(found, sizeof found, "%s", out);
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", n);
        }
        closedir(d);
    }
    if (count == 1) {
        snprintf(out, cap, "%s", found);
        return 0;
    }
    if (count > 1)
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: several pickles (%s); name the file to load",
                             dir, list);
    return pcv_set_error(err, PCV_ERR_MISSING, "%s: no weights found (expected model.safetensors, "
                         "model.safetensors.index.json, pytorch_model.bin, "
                         "pytorch_model.bin.index.json or a DeepMind *.pickle / *.pystate)", dir);
}

bool pcv_weights_is_haiku_path(const char *path)
{
    struct stat sb;
    char file[4096];
    if (stat(path, &sb) != 0)
        return false;
    if (S_ISDIR(sb.st_mode)) {
        if (find_in_folder(path, file, sizeof file, NULL) != 0)
            return false;
        path = file;
    }
    return sniff(path) == WF_PICKLE;
}

int pcv_weights_load(pcv_weights *w, const char *path, const pcv_weights_options *opt,
                        pcv_error *err)
{
    memset(w, 0, sizeof *w);
    struct stat sb;
    int rc;
    if (stat(path, &sb) != 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: %s", path, strerror(errno));
    w->path = strdup(path);
    if (!w->path)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    char file[4096];
    if (S_ISDIR(sb.st_mode)) {
        if ((rc = find_in_folder(path, file, sizeof file, err)))
            goto fail;
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    w->source = strdup(file);
    if (!w->source) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        goto fail;
    }
    if ((rc = open_one(w, file, sniff(file), opt, err)))
        goto fail;
    qsort(w->tensors, (size_t)w->count, sizeof *w->tensors, cmp_tensor);
    for (int i = 1; i < w->count; i++)
        if (strcmp(w->tensors[i - 1].name, w->tensors[i].name) == 0) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: tensor '%s' appears twice", path, w->tensors[i].name);
            goto fail;
        }
    if (!w->architecture[0]) {
        const char **names = malloc((size_t)(w->count ? w->count : 1) * sizeof *names);
        if (!names) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < w->count; i++)
            names[i] = w->tensors[i].name;
        const pcv_arch_info *ai = pcv_arch_detect(names, (size_t)w->count);
        free(names);
        if (ai)
            snprintf(w->architecture, sizeof w->architecture, "%s", ai->hf_class);
    }
    /* --architecture on Hugging Face names: a name for what detection cannot place, never a
     * contradiction of it (the Haiku reader applies the same rule) */
    if (opt && opt->architecture && !w->from_haiku) {
        const pcv_arch_info *ai = NULL;
        if ((rc = arch_option(opt->architecture, &ai, err)))
            goto fail;
        if (w->architecture[0] && strcmp(w->architecture, ai->hf_class)) {
            rc = pcv_set_error(err, PCV_ERR_INPUT, "%s: --architecture %s does not match the tensor names, which "
                               "are those of %s", path, opt->architecture, w->architecture);
            goto fail;
        }
        snprintf(w->architecture, sizeof w->architecture, "%s", ai->hf_class);
    }
    return 0;
fail:
    pcv_weights_release(w);
    return rc;
}

pcv_status pcv_weights_open(const char *path, const pcv_weights_options *opt, pcv_weights **out, pcv_error *err)
{
    *out = NULL;
    pcv_weights *w = calloc(1, sizeof *w);
    if (!w)
        return (pcv_status)pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    int rc = pcv_weights_load(w, path, opt, err);
    if (rc) {
        free(w);
        return (pcv_status)rc;
    }
    *out = w;
    return PCV_OK;
}

void pcv_weights_close(pcv_weights *w)
{
    if (!w)
        return;
    pcv_weights_release(w);
    free(w);
}

int pcv_weights_count(const pcv_weights *w) { return w->count; }

const pcv_st_tensor *pcv_weights_tensor_at(const pcv_weights *w, int i)
{
    return i >= 0 && i < w->count ? &w->tensors[i] : NULL;
}

void pcv_weights_get_info(const pcv_weights *w, pcv_weights_info *info)
{
    *info = (pcv_weights_info){.path = w->path, .format = w->format, .architecture = w->architecture,
                               .source = w->source ? w->source : w->path, .from_haiku = w->from_haiku,
                               .files = w->nfiles, .dropped = w->ndropped};
}

const pcv_st_tensor *pcv_weights_find(const pcv_weights *w, const char *name)
{
    pcv_st_tensor key = {.name = (char *)name};
    return w->count ? bsearch(&key, w->tensors, (size_t)w->count, sizeof key, cmp_tensor) : NULL;
}

int64_t pcv_weights_numel(const pcv_weights *w)
{
    int64_t n = 0;
    for (int i = 0; i < w->count; i++)
        n += w->tensors[i].numel;
    return n;
}

void pcv_weights_release(pcv_weights *w)
{
    for (int i = 0; i < w->nfiles; i++)
        pcv_st_unmap(&w->files[i]);
    wext *x = w->ext;
    if (x) {
        for (int i = 0; i < x->nsrc; i++) {
            if (x->src[i].has_torch)
                pcv_torch_close(&x->src[i].torch);
            if (x->src[i].has_pk)
                pk_doc_free(&x->src[i].pk);
            if (x->src[i].map)
                munmap(x->src[i].map, x->src[i].size);
        }
        free(x->src);
        free(x);
    }
    for (int i = 0; i < w->nblocks; i++)
        free(w->blocks[i]);
    free(w->files);
    free(w->blocks);
    free(w->tensors);
    free(w->path);
    free(w->source);
    memset(w, 0, sizeof *w);
}
