/* The command-line jobs as library calls (perceiver/tasks.h): image classification and
 * masked-byte filling on top of pcv_model_forward. */
#include "perceiver/tasks.h"

#include "model/model_impl.h"
#include "util/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- classification ---------------------------------------------------------------------------- */

void pcv_top_k(const float *logits, int n, int k, int *index, float *prob)
{
    if (k > n)
        k = n;
    float mx = -INFINITY;
    for (int j = 0; j < n; j++)
        mx = logits[j] > mx ? logits[j] : mx;
    double sum = 0;
    for (int j = 0; j < n; j++)
        sum += exp((double)logits[j] - mx);
    for (int i = 0; i < k; i++)
        index[i] = -1;
    for (int j = 0; j < n; j++) { /* insertion into the sorted list of the best k */
        int pos = k;
        while (pos > 0 && (index[pos - 1] < 0 || logits[j] > logits[index[pos - 1]]))
            pos--;
        if (pos < k) {
            memmove(index + pos + 1, index + pos, (size_t)(k - pos - 1) * sizeof *index);
            index[pos] = j;
        }
    }
    for (int i = 0; i < k; i++)
        prob[i] = (float)(exp((double)logits[index[i]] - mx) / sum);
}

pcv_status pcv_model_image_processor(const pcv_model *m, pcv_image_processor *p, pcv_error *err)
{
    if (m->prof.numerics == PCV_NUMERICS_HAIKU) {
        pcv_image_processor_init_haiku(p);
        return PCV_OK;
    }
    pcv_image_processor_init(p);
    if (!m->path)
        return PCV_OK;
    struct stat sb;
    if (stat(m->path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return pcv_image_processor_load(p, m->path, err);
    char dir[4096];
    const char *slash = strrchr(m->path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - m->path), m->path);
    else
        snprintf(dir, sizeof dir, ".");
    return pcv_image_processor_load(p, dir, err);
}

static bool is_image_classifier(const pcv_model *m)
{
    pcv_arch a = m->arch->arch;
    return a == PCV_ARCH_IMAGE_LEARNED || a == PCV_ARCH_IMAGE_FOURIER || a == PCV_ARCH_IMAGE_CONV;
}

pcv_status pcv_classify_pixels(pcv_model *m, const float *pixel_values, int n, int height, int width, int k,
                               pcv_class_score *out, pcv_error *err)
{
    if (!is_image_classifier(m))
        return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "classification needs an image classifier; this "
                                         "model is %s", m->arch->hf_class);
    if (n < 1 || k < 1)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "classify: %d images, top %d", n, k);
    pcv_io_tensor in = {.name = "pixel_values", .dtype = PCV_DT_F32, .ndim = 4, .shape = {n, 3, height, width},
                        .data = (void *)(uintptr_t)pixel_values};
    const pcv_io_tensor *outs;
    int nout;
    pcv_status rc = pcv_model_forward(m, &in, 1, &outs, &nout, err);
    if (rc)
        return rc;
    const pcv_io_tensor *lg = pcv_io_find(outs, nout, "logits");
    int L = m->cfg.num_labels, kk = k < L ? k : L;
    int *idx = malloc((size_t)kk * sizeof *idx);
    float *prob = malloc((size_t)kk * sizeof *prob);
    if (!idx || !prob) {
        free(idx);
        free(prob);
        return (pcv_status)pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        const float *row = (const float *)lg->data + (size_t)i * (size_t)L;
        pcv_top_k(row, L, kk, idx, prob);
        for (int r = 0; r < k; r++) {
            pcv_class_score *s = &out[(size_t)i * (size_t)k + (size_t)r];
            if (r >= kk) {
                *s = (pcv_class_score){.index = -1};
                continue;
            }
            s->index = idx[r];
            s->probability = prob[r];
            s->logit = row[idx[r]];
            s->label = m->cfg.id2label ? m->cfg.id2label[idx[r]] : NULL;
        }
    }
    free(idx);
    free(prob);
    return PCV_OK;
}

pcv_status pcv_classify_files(pcv_model *m, const char *const *paths, int n, int k, pcv_class_score *out,
                              pcv_error *err)
{
    pcv_image_processor p;
    pcv_status rc = pcv_model_image_processor(m, &p, err);
    if (rc)
        return rc;
    float *pixels = NULL;
    int H = 0, W = 0;
    if ((rc = pcv_image_load_batch(&p, paths, n, &pixels, &H, &W, err)))
        return rc;
    rc = pcv_classify_pixels(m, pixels, n, H, W, k, out, err);
    free(pixels);
    return rc;
}

/* ---- masked-byte filling ------------------------------------------------------------------------- */

void pcv_fill_results_free(pcv_fill_result *r, int n)
{
    for (int i = 0; r && i < n; i++) {
        free(r[i].filled);
        free(r[i].positions);
        free(r[i].candidates);
        free(r[i].probabilities);
        free(r[i].has_original);
        free(r[i].original);
        memset(&r[i], 0, sizeof r[i]);
    }
}

pcv_status pcv_fill_masked(pcv_model *m, const char *const *texts, int n, int top_k, pcv_fill_result *out,
                           pcv_error *err)
{
    if (m->arch->arch != PCV_ARCH_MASKED_LM)
        return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "filling needs a PerceiverForMaskedLM model; this "
                                         "model is %s", m->arch->hf_class);
    if (n < 1 || top_k < 1 || top_k > 256)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "fill: %d texts, top %d (1 to 256)", n, top_k);
    memset(out, 0, (size_t)n * sizeof *out);
    /* DeepMind's colab adds no [CLS]/[SEP] (the haiku profile, the default for DeepMind pickles) */
    int off = m->prof.numerics == PCV_NUMERICS_HAIKU ? 0 : 1;
    int64_t maxpos = m->cfg.max_position_embeddings, S = 1;
    pcv_masked_text *mt = calloc((size_t)n, sizeof *mt);
    int64_t *ids = NULL, *mask = NULL;
    int rc = mt ? 0 : pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = 0; i < n && !rc; i++) { /* parse and check every text before running anything */
        pcv_error perr = {0};
        if (pcv_parse_masked(texts[i], &mt[i], &perr)) {
            rc = pcv_set_error(err, PCV_ERR_INPUT, "text %d: %s", i + 1, perr.msg);
            break;
        }
        int64_t need = (int64_t)mt[i].len + 2 * off;
        if (need > maxpos)
            rc = pcv_set_error(err, PCV_ERR_INPUT, "text %d: %zu bytes%s do not fit the model's %lld positions", i + 1,
                               mt[i].len, off ? " + [CLS] + [SEP]" : "", (long long)maxpos);
        S = need > S ? need : S;
    }
    if (!rc) {
        ids = calloc((size_t)(n * S), sizeof *ids);
        mask = calloc((size_t)(n * S), sizeof *mask);
        if (!ids || !mask)
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    for (int i = 0; i < n && !rc; i++) {
        int64_t *row = ids + i * S, *mrow = mask + i * S, p = 0;
        if (off)
            row[p++] = PCV_TOK_CLS;
        for (size_t j = 0; j < mt[i].len; j++)
            row[p++] = mt[i].masked[j] ? PCV_TOK_MASK : (int64_t)mt[i].bytes[j] + PCV_TOK_BYTE_OFFSET;
        if (off)
            row[p++] = PCV_TOK_SEP;
        for (int64_t j = 0; j < p; j++)
            mrow[j] = 1;
    }
    const pcv_io_tensor *outs = NULL;
    int nout = 0;
    if (!rc) {
        pcv_io_tensor in[2] = {
            {.name = "input_ids", .dtype = PCV_DT_I64, .ndim = 2, .shape = {n, S}, .data = ids},
            {.name = "attention_mask", .dtype = PCV_DT_I64, .ndim = 2, .shape = {n, S}, .data = mask},
        };
        rc = pcv_model_forward(m, in, 2, &outs, &nout, err);
    }
    const pcv_io_tensor *lg = rc ? NULL : pcv_io_find(outs, nout, "logits");
    int64_t P = lg ? lg->shape[1] : 0, V = lg ? lg->shape[2] : 0;
    /* candidates are byte tokens only */
    int nb = (int)(V < PCV_TOK_VOCAB ? V : PCV_TOK_VOCAB) - PCV_TOK_BYTE_OFFSET, K = top_k < nb ? top_k : nb;
    int *idx = malloc((size_t)(nb > 0 ? nb : 1) * sizeof *idx);
    float *pr = malloc((size_t)(nb > 0 ? nb : 1) * sizeof *pr);
    if (!rc && (!idx || !pr || nb < 1))
        rc = pcv_set_error(err, nb < 1 ? PCV_ERR_FORMAT : PCV_ERR_OOM, "fill: the model has no byte tokens");
    for (int i = 0; i < n && !rc; i++) {
        pcv_fill_result *r = &out[i];
        size_t nm = mt[i].num_masked;
        r->len = mt[i].len;
        r->num_masked = nm;
        r->top_k = K;
        r->filled = malloc(r->len + 1);
        r->positions = malloc((nm ? nm : 1) * sizeof *r->positions);
        r->candidates = malloc((nm ? nm : 1) * (size_t)K);
        r->probabilities = malloc((nm ? nm : 1) * (size_t)K * sizeof(float));
        r->has_original = malloc(nm ? nm : 1);
        r->original = malloc(nm ? nm : 1);
        if (!r->filled || !r->positions || !r->candidates || !r->probabilities || !r->has_original || !r->original) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
            break;
        }
        size_t q = 0;
        for (size_t j = 0; j < r->len; j++) {
            r->filled[j] = mt[i].bytes[j];
            if (!mt[i].masked[j])
                continue;
            const float *row = (const float *)lg->data + ((int64_t)i * P + (int64_t)j + off) * V;
            /* softmax over the whole vocabulary; ranking over the byte tokens */
            float mx = -INFINITY;
            for (int64_t v = 0; v < V; v++)
                mx = row[v] > mx ? row[v] : mx;
            double sum = 0;
            for (int64_t v = 0; v < V; v++)
                sum += exp((double)row[v] - mx);
            pcv_top_k(row + PCV_TOK_BYTE_OFFSET, nb, K, idx, pr);
            for (int c = 0; c < K; c++) {
                r->candidates[q * (size_t)K + (size_t)c] = (unsigned char)idx[c];
                r->probabilities[q * (size_t)K + (size_t)c] =
                    (float)(exp((double)row[PCV_TOK_BYTE_OFFSET + idx[c]] - mx) / sum);
            }
            r->positions[q] = j;
            r->has_original[q] = mt[i].has_original[j];
            r->original[q] = mt[i].bytes[j];
            r->filled[j] = (unsigned char)idx[0];
            q++;
        }
        r->filled[r->len] = '\0';
    }
    free(idx);
    free(pr);
    free(ids);
    free(mask);
    for (int i = 0; mt && i < n; i++)
        pcv_masked_text_free(&mt[i]);
    free(mt);
    if (rc)
        pcv_fill_results_free(out, n);
    return (pcv_status)rc;
}
