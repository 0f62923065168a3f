/* The parameter store of a model: checkpoint tensors loaded (or drawn for random models) and
 * uploaded once at load, the tensors derived from them at load (folded BatchNorm, reoriented
 * kernels), and the construction of Perceiver layers with the channel rules of
 * transformers' PerceiverAttention (docs/architecture.md). */
#include "model/model_impl.h"
#include "util/error.h"

#include "model/fourier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- random parameters (deterministic per name, independent of build order) ---------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(const char *s, uint64_t seed)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void fill_normal(float *x, int64_t n, uint64_t state, float mean, float std)
{
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ((double)(splitmix64(&state) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        double u2 = (double)(splitmix64(&state) >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2.0 * log(u1));
        x[i] = mean + std * (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < n)
            x[i + 1] = mean + std * (float)(r * sin(2 * M_PI * u2));
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && len + 24 < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)shape[i]);
}

/* ---- the store ------------------------------------------------------------------------------- */

static int add_param(pcv_model *m, pcv_error *err, const char *name, const pcv_tensor *t, bool saved)
{
    if (m->nparams == m->capparams) {
        int cap = m->capparams ? 2 * m->capparams : 64;
        pcv_param *p = realloc(m->params, (size_t)cap * sizeof *p);
        if (!p)
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        m->params = p;
        m->capparams = cap;
    }
    pcv_param *p = &m->params[m->nparams];
    p->name = strdup(name);
    if (!p->name)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    p->t = *t;
    p->saved = saved;
    m->nparams++;
    if (saved) {
        m->total_params += pcv_numel(t);
        if (m->have_weights)
            pcv_progress("loading weights", m->total_params, pcv_weights_numel(&m->weights));
    }
    return 0;
}

static void init_tensor(pcv_tensor *t, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
}

static int upload_new(pcv_model *m, pcv_error *err, pcv_tensor *t, const float *host)
{
    size_t bytes = (size_t)pcv_numel(t) * sizeof(float);
    t->buf = pcv_backend_alloc(m->be, bytes ? bytes : sizeof(float), err);
    if (!t->buf)
        return err ? (int)err->code : PCV_ERR_OOM;
    int rc = bytes ? pcv_backend_upload(m->be, t->buf, 0, host, bytes, err) : 0;
    if (rc) {
        pcv_backend_release(m->be, t->buf);
        t->buf = NULL;
    }
    return rc;
}

/* The checkpoint tensor `name` as host float32 (or drawn at random), shape-checked; *mapped is
 * set instead when the tensor can be used in place (float32 in the mapped file). */
static int fetch(pcv_model *m, pcv_error *err, const char *name, int ndim, const int64_t *shape, float **host,
                 const pcv_st_tensor **mapped)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    char want[96];
    shape_str(want, sizeof want, ndim, shape);
    *host = NULL;
    if (mapped)
        *mapped = NULL;
    if (m->random) {
        float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!h)
            return pcv_set_error(err, PCV_ERR_OOM, "cannot allocate %lld floats for '%s'", (long long)n, name);
        bool is_norm = strstr(name, "layernorm") != NULL || strstr(name, "batchnorm") != NULL;
        bool around_one = (is_norm && ends_with(name, ".weight")) || ends_with(name, "running_var");
        fill_normal(h, n, hash_name(name, m->seed), around_one ? 1.0f : 0.0f, 0.02f);
        if (ends_with(name, "running_var")) /* a variance must stay positive */
            for (int64_t i = 0; i < n; i++)
                h[i] = fabsf(h[i]);
        *host = h;
        return 0;
    }
    const pcv_st_tensor *st = pcv_weights_find(&m->weights, name);
    if (!st)
        return pcv_set_error(err, PCV_ERR_MISSING, "%s: missing tensor '%s' (expected shape [%s])", m->weights.path,
                             name, want);
    bool ok = st->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = st->shape[i] == shape[i];
    if (!ok) {
        char got[256];
        shape_str(got, sizeof got, st->ndim, st->shape);
        return pcv_set_error(err, PCV_ERR_SHAPE, "%s: tensor '%s' has shape [%s], expected [%s]", m->weights.path,
                             name, got, want);
    }
    if (st->dtype != PCV_DT_F32 && st->dtype != PCV_DT_F16 && st->dtype != PCV_DT_BF16 && st->dtype != PCV_DT_F64)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; weights must be F32, F16, BF16 or F64",
                             m->weights.path, name, pcv_dtype_name(st->dtype));
    if (mapped && st->dtype == PCV_DT_F32) {
        *mapped = st;
        return 0;
    }
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!h)
        return pcv_set_error(err, PCV_ERR_OOM, "cannot allocate %lld floats for '%s'", (long long)n, name);
    int rc = pcv_st_to_f32(st, h, err);
    if (rc) {
        free(h);
        return rc;
    }
    *host = h;
    return 0;
}

int pcv_param_nd(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int ndim, const int64_t *shape)
{
    init_tensor(t, ndim, shape);
    float *host = NULL;
    const pcv_st_tensor *st = NULL;
    int rc = fetch(m, err, name, ndim, shape, &host, &st);
    if (rc)
        return rc;
    if (st) { /* float32 in the mapped file: aliased where the backend can, else copied */
        t->buf = pcv_backend_wrap_host(m->be, st->data, st->nbytes);
        if (!t->buf) {
            host = malloc(st->nbytes ? st->nbytes : 1);
            if (!host)
                return pcv_set_error(err, PCV_ERR_OOM, "cannot allocate %zu bytes for '%s'", st->nbytes, name);
            memcpy(host, st->data, st->nbytes);
        }
    }
    if (!t->buf)
        rc = upload_new(m, err, t, host);
    free(host);
    return rc ? rc : add_param(m, err, name, t, true);
}

int pcv_param_1d(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int64_t d0)
{
    return pcv_param_nd(m, err, t, name, 1, (int64_t[]){d0});
}

int pcv_param_2d(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int64_t d0, int64_t d1)
{
    return pcv_param_nd(m, err, t, name, 2, (int64_t[]){d0, d1});
}

int pcv_param_host(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, int ndim, const int64_t *shape,
                   float **host)
{
    init_tensor(t, ndim, shape);
    int rc = fetch(m, err, name, ndim, shape, host, NULL);
    if (!rc && !(rc = upload_new(m, err, t, *host)))
        rc = add_param(m, err, name, t, true);
    if (rc) {
        free(*host);
        *host = NULL;
    }
    return rc;
}

int pcv_param_derived(pcv_model *m, pcv_error *err, pcv_tensor *t, const char *name, const float *host, int ndim,
                      const int64_t *shape)
{
    init_tensor(t, ndim, shape);
    int rc = upload_new(m, err, t, host);
    return rc ? rc : add_param(m, err, name, t, false);
}

int pcv_param_linear(pcv_model *m, pcv_error *err, pcv_linear_p *l, const char *prefix, int64_t out, int64_t in)
{
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int rc = pcv_param_2d(m, err, &l->w, name, out, in);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return pcv_param_1d(m, err, &l->b, name, out);
}

void pcv_params_free(pcv_model *m)
{
    for (int i = 0; i < m->nparams; i++) {
        if (m->params[i].t.buf)
            pcv_backend_release(m->be, m->params[i].t.buf);
        free(m->params[i].name);
    }
    free(m->params);
    m->params = NULL;
    m->nparams = m->capparams = 0;
}

/* ---- layers ---------------------------------------------------------------------------------- */

/* Channel rules of PerceiverAttention / PerceiverSelfAttention (qk_cfg / v_cfg 0 = None):
 * cross-attention without qk takes qk from the keys' width ("kv") or the queries' ("q") and
 * leaves v as given; otherwise qk defaults to the query width and v to qk. */
static void derive_channels(const pcv_config *cfg, bool cross, int64_t qk_cfg, int64_t v_cfg, int64_t q_dim,
                            int64_t kv_dim, int64_t *qk, int64_t *v)
{
    if (cross && qk_cfg == 0) {
        *qk = strcmp(cfg->cross_attention_shape_for_attention, "q") == 0 ? q_dim : kv_dim;
        *v = v_cfg;
    } else {
        *qk = qk_cfg ? qk_cfg : q_dim;
        *v = v_cfg ? v_cfg : *qk;
    }
    if (*qk == 0)
        *qk = q_dim;
    if (*v == 0)
        *v = *qk;
}

int pcv_build_layer(pcv_model *m, pcv_error *err, pcv_layer *L, const char *prefix, bool cross, int64_t qk_cfg,
                    int64_t v_cfg, int64_t heads, int64_t q_dim, int64_t kv_dim, int64_t widening, bool query_residual)
{
    memset(L, 0, sizeof *L);
    L->cross = cross;
    L->query_residual = query_residual;
    L->q_dim = q_dim;
    L->kv_dim = kv_dim;
    L->heads = heads;
    L->widening = widening;
    derive_channels(&m->cfg, cross, qk_cfg, v_cfg, q_dim, kv_dim, &L->qk, &L->v);
    L->out = cross ? q_dim : L->v;
    if (heads <= 0 || L->qk % heads || L->v % heads)
        return pcv_set_error(err, PCV_ERR_FORMAT,
                             "%s: qk_channels (%lld) and v_channels (%lld) must be divisible by the number of heads (%lld)",
                             prefix, (long long)L->qk, (long long)L->v, (long long)heads);
    if (L->out != q_dim)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: self-attention v_channels (%lld) must equal the latent width (%lld)",
                             prefix, (long long)L->v, (long long)q_dim);

    char name[256];
    int rc;
#define P1(field, d, suffix)                                                                       \
    do {                                                                                           \
        snprintf(name, sizeof name, "%s.%s", prefix, suffix);                                     \
        if ((rc = pcv_param_1d(m, err, field, name, d)) != 0)                                      \
            return rc;                                                                             \
    } while (0)
#define LIN(field, o, i, suffix)                                                                   \
    do {                                                                                           \
        snprintf(name, sizeof name, "%s.%s", prefix, suffix);                                     \
        if ((rc = pcv_param_linear(m, err, field, name, o, i)) != 0)                               \
            return rc;                                                                             \
    } while (0)
    P1(&L->ln1.w, q_dim, "attention.self.layernorm1.weight");
    P1(&L->ln1.b, q_dim, "attention.self.layernorm1.bias");
    if (cross) {
        P1(&L->ln2.w, kv_dim, "attention.self.layernorm2.weight");
        P1(&L->ln2.b, kv_dim, "attention.self.layernorm2.bias");
    }
    LIN(&L->q, L->qk, q_dim, "attention.self.query");
    LIN(&L->k, L->qk, kv_dim, "attention.self.key");
    LIN(&L->vproj, L->v, kv_dim, "attention.self.value");
    LIN(&L->o, L->out, L->v, "attention.output.dense");
    P1(&L->ln_mlp.w, q_dim, "layernorm.weight");
    P1(&L->ln_mlp.b, q_dim, "layernorm.bias");
    LIN(&L->mlp1, widening * q_dim, q_dim, "mlp.dense1");
    LIN(&L->mlp2, q_dim, widening * q_dim, "mlp.dense2");
#undef P1
#undef LIN
    return 0;
}

double pcv_layer_flops(const pcv_layer *L, double nq, double nk)
{
    return 2 * nq * L->q_dim * L->qk + 2 * nk * L->kv_dim * (L->qk + L->v) + 2 * nq * nk * (L->qk + L->v) +
           2 * nq * L->v * L->out + 4.0 * L->widening * nq * L->q_dim * L->q_dim;
}

void pcv_model_fourier_grid(const pcv_model *m, int ndims, const int64_t *index_dims, const int64_t *max_res,
                            int64_t num_bands, float *out)
{
    pcv_fourier_grid(ndims, index_dims, max_res, num_bands, true, false,
                     m->prof.linspace == PCV_LINSPACE_JAX ? pcv_linspace_jax : pcv_linspace_torch, out);
}

/* ---- inputs ------------------------------------------------------------------------------------ */

static bool is_float(pcv_dtype dt)
{
    return dt == PCV_DT_F32 || dt == PCV_DT_F16 || dt == PCV_DT_BF16 || dt == PCV_DT_F64;
}

int pcv_io_to_f32(const pcv_io_tensor *t, float *out, int64_t n, pcv_error *err)
{
    if (!is_float(t->dtype))
        return pcv_set_error(err, PCV_ERR_INPUT, "input '%s' must be a float tensor, not %s", t->name,
                             pcv_dtype_name(t->dtype));
    pcv_st_tensor st = {.name = (char *)t->name, .dtype = t->dtype, .ndim = t->ndim, .numel = n, .data = t->data,
                        .nbytes = (size_t)n * pcv_dtype_size(t->dtype)};
    memcpy(st.shape, t->shape, sizeof st.shape);
    return pcv_st_to_f32(&st, out, err);
}

int pcv_io_to_i64(const pcv_io_tensor *t, int64_t *out, int64_t n, pcv_error *err)
{
    pcv_st_tensor st = {.name = (char *)t->name, .dtype = t->dtype, .ndim = t->ndim, .numel = n, .data = t->data,
                        .nbytes = (size_t)n * pcv_dtype_size(t->dtype)};
    memcpy(st.shape, t->shape, sizeof st.shape);
    return pcv_st_to_i64(&st, out, err);
}

int pcv_host_reserve(void **buf, size_t *cap, size_t n, pcv_error *err)
{
    if (n <= *cap)
        return 0;
    void *p = realloc(*buf, n);
    if (!p)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory (%zu bytes of inputs)", n);
    *buf = p;
    *cap = n;
    return 0;
}

const pcv_io_tensor *pcv_io_find(const pcv_io_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

pcv_status pcv_io_from_safetensors(const pcv_safetensors *st, pcv_io_tensor *out, pcv_error *err)
{
    for (int i = 0; i < pcv_st_count(st); i++) {
        const pcv_st_tensor *t = pcv_st_tensor_at(st, i);
        if (strlen(t->name) >= sizeof out[i].name)
            return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "%s: tensor name '%.40s...' is too long",
                                             pcv_st_path(st), t->name);
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].name, sizeof out[i].name, "%s", t->name);
        out[i].dtype = t->dtype;
        out[i].ndim = t->ndim;
        memcpy(out[i].shape, t->shape, sizeof t->shape);
        out[i].data = (void *)(uintptr_t)t->data;
    }
    return PCV_OK;
}
