/* Weight sets: one table of named tensors over the checkpoint formats perceiver-cl reads. */
#include "perceiver/perceiver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const pcv_st_tensor *)a)->name, ((const pcv_st_tensor *)b)->name);
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
    int rc = pcv_st_open(&w->files[w->nfiles], path, err);
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

int pcv_weights_open(pcv_weights *w, const char *path, pcv_error *err)
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
        snprintf(file, sizeof file, "%s/model.safetensors", path);
        if (!is_file(file)) {
            rc = pcv_set_error(err, PCV_ERR_MISSING, "%s: no weights found (expected model.safetensors)", path);
            goto fail;
        }
        snprintf(w->format, sizeof w->format, "safetensors");
        if ((rc = open_safetensors(w, file, err)))
            goto fail;
    } else {
        snprintf(w->format, sizeof w->format, "safetensors");
        if ((rc = open_safetensors(w, path, err)))
            goto fail;
    }
    qsort(w->tensors, (size_t)w->count, sizeof *w->tensors, cmp_tensor);
    for (int i = 1; i < w->count; i++)
        if (strcmp(w->tensors[i - 1].name, w->tensors[i].name) == 0) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: tensor '%s' appears twice", path, w->tensors[i].name);
            goto fail;
        }
    return 0;
fail:
    pcv_weights_close(w);
    return rc;
}

const pcv_st_tensor *pcv_weights_find(const pcv_weights *w, const char *name)
{
    pcv_st_tensor key = {.name = (char *)name};
    return w->count ? bsearch(&key, w->tensors, (size_t)w->count, sizeof key, cmp_tensor) : NULL;
}

void pcv_weights_close(pcv_weights *w)
{
    for (int i = 0; i < w->nfiles; i++)
        pcv_st_close(&w->files[i]);
    for (int i = 0; i < w->nblocks; i++)
        free(w->blocks[i]);
    free(w->files);
    free(w->blocks);
    free(w->tensors);
    free(w->path);
    memset(w, 0, sizeof *w);
}
