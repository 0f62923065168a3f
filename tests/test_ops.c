/* Per-operation tests of a backend against float64 references computed here, over many shapes
 * (odd sizes, tile boundaries, batches, heads, masks). Every output buffer is followed by a
 * guard region of sentinel values that must survive (catches out-of-bounds writes).
 * Tolerances: tests/tolerances.json "ops".
 *
 * The same tests run on the CPU reference backend and on every OpenCL device (one backend per
 * device per process: OpenCL programs and CLBlast compile once). OpenCL devices also run the
 * attention tests through each of their code paths (fused kernel with and without key splits,
 * CLBlast GEMMs), with head sizes up to 1280 and long key/query ranges, and a batch of random
 * odd shapes. With PCV_REQUIRE_OPENCL=1 (CI) a machine without an OpenCL device fails. */
#include "backend/backend.h"
#include "backend/opencl.h"
#include "testutil.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

enum { GUARD = 1024 };
static const float SENTINEL = 12345.678f;

typedef struct tol {
    double atol, rtol, nmse;
} tol;

static json_t *tolerances;

static tol op_tol(const char *op)
{
    json_t *o = json_object_get(json_object_get(tolerances, "ops"), op);
    tol t = {json_number_value(json_object_get(o, "atol")), json_number_value(json_object_get(o, "rtol")),
             json_number_value(json_object_get(o, "nmse"))};
    CHECK(o != NULL, "tolerances.json has no ops.%s", op);
    return t;
}

/* ---- random numbers ---- */
static uint64_t rng = 88172645463325252ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(2 * M_PI * urand())); }
static float *randv(int64_t n, float scale)
{
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * nrand();
    return x;
}

/* ---- device buffers with guard regions ---- */
typedef struct dbuf {
    pcv_buffer *b;
    int64_t n;
} dbuf;

static dbuf dput(pcv_backend *be, const void *x, int64_t n, size_t esize)
{
    dbuf d = {NULL, n};
    pcv_error err = {0};
    size_t bytes = (size_t)(n + GUARD) * esize;
    d.b = pcv_backend_alloc(be, bytes, &err);
    CHECK(d.b != NULL, "alloc: %s", err.msg);
    float *guard = malloc(GUARD * sizeof(float));
    for (int i = 0; i < GUARD; i++)
        guard[i] = SENTINEL;
    if (x)
        CHECK(pcv_backend_upload(be, d.b, 0, x, (size_t)n * esize, &err) == 0, "upload: %s", err.msg);
    CHECK(pcv_backend_upload(be, d.b, (size_t)n * esize, guard, GUARD * esize, &err) == 0, "upload: %s", err.msg);
    free(guard);
    return d;
}

/* Downloads n floats and checks the guard region after them. */
static float *dget(pcv_backend *be, dbuf d, const char *what)
{
    pcv_error err = {0};
    float *x = malloc((size_t)(d.n + GUARD) * sizeof(float));
    CHECK(pcv_backend_download(be, d.b, 0, x, (size_t)(d.n + GUARD) * sizeof(float), &err) == 0, "download: %s",
          err.msg);
    int bad = 0;
    for (int i = 0; i < GUARD; i++)
        bad += x[d.n + i] != SENTINEL;
    CHECK(bad == 0, "%s: %d guard values after the output were overwritten", what, bad);
    return x;
}

static void dfree(pcv_backend *be, dbuf d) { pcv_backend_release(be, d.b); }

static void compare(const char *what, const float *got, const double *want, int64_t n, tol t)
{
    double num = 0, den = 0, worst = 0;
    int64_t nbad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        num += d * d;
        den += want[i] * want[i];
        if (t.atol > 0 || t.rtol > 0) {
            double lim = t.atol + t.rtol * fabs(want[i]);
            if (!(d <= lim) && getenv("PCV_TEST_VERBOSE") && nbad < 5)
                fprintf(stderr, "  %s [%lld]: got %.9g want %.9g\n", what, (long long)i, got[i], want[i]);
            if (!(d <= lim))
                nbad++;
            if (d / lim > worst)
                worst = d / lim;
        }
        if (!isfinite(got[i]))
            nbad++;
    }
    if (t.nmse > 0) {
        double nmse = den > 0 ? num / den : num;
        CHECK(nmse <= t.nmse, "%s: nmse %.3g > %.3g", what, nmse, t.nmse);
    } else {
        CHECK(nbad == 0, "%s: %lld of %lld values outside tolerance (worst err/tol %.3g)", what, (long long)nbad,
              (long long)n, worst);
    }
}

/* ---- GEMM ---- */
static void test_gemm(pcv_backend *be, bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t batch, float beta)
{
    int64_t sa = m * k + 3, sb = k * n + 5, sc = m * n + 7; /* padded batch strides */
    float *a = randv(sa * batch, 1), *b = randv(sb * batch, 1), *c = randv(sc * batch, 1);
    double *want = calloc((size_t)(sc * batch), sizeof *want);
    int64_t lda = ta ? m : k, ldb = tb ? k : n;
    for (int64_t p = 0; p < batch; p++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t l = 0; l < k; l++) {
                    double av = ta ? a[p * sa + l * lda + i] : a[p * sa + i * lda + l];
                    double bv = tb ? b[p * sb + j * ldb + l] : b[p * sb + l * ldb + j];
                    s += av * bv;
                }
                want[p * sc + i * n + j] = 0.5 * s + beta * c[p * sc + i * n + j];
            }
    for (int64_t p = 0; p < batch; p++) /* the padding between batch entries is untouched */
        for (int64_t i = m * n; i < sc; i++)
            want[p * sc + i] = c[p * sc + i];
    dbuf A = dput(be, a, sa * batch, 4), B = dput(be, b, sb * batch, 4), C = dput(be, c, sc * batch, 4);
    pcv_gemm_args g = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k, .batch = batch, .alpha = 0.5f,
                       .beta = beta, .a = A.b, .lda = lda, .stride_a = sa, .b = B.b, .ldb = ldb, .stride_b = sb,
                       .c = C.b, .ldc = n, .stride_c = sc};
    pcv_error err = {0};
    CHECK(pcv_backend_gemm(be, &g, &err) == 0, "gemm: %s", err.msg);
    char what[128];
    snprintf(what, sizeof what, "gemm %c%c m%lld n%lld k%lld batch%lld beta%g", ta ? 'T' : 'N', tb ? 'T' : 'N',
             (long long)m, (long long)n, (long long)k, (long long)batch, beta);
    float *got = dget(be, C, what);
    compare(what, got, want, sc * batch, op_tol("gemm"));
    free(got), free(a), free(b), free(c), free(want);
    dfree(be, A), dfree(be, B), dfree(be, C);
}

/* ---- LayerNorm ---- */
static void test_layernorm(pcv_backend *be, int64_t rows, int64_t cols, float offset)
{
    float *x = randv(rows * cols, 3), *g = randv(cols, 1), *b = randv(cols, 1);
    for (int64_t i = 0; i < rows * cols; i++)
        x[i] += offset; /* a large common offset stresses the variance computation */
    double *want = malloc((size_t)(rows * cols) * sizeof *want);
    for (int64_t r = 0; r < rows; r++) {
        double mu = 0, var = 0;
        for (int64_t c = 0; c < cols; c++)
            mu += x[r * cols + c];
        mu /= (double)cols;
        for (int64_t c = 0; c < cols; c++)
            var += (x[r * cols + c] - mu) * (x[r * cols + c] - mu);
        var /= (double)cols;
        for (int64_t c = 0; c < cols; c++)
            want[r * cols + c] = (x[r * cols + c] - mu) / sqrt(var + 1e-5) * g[c] + b[c];
    }
    dbuf X = dput(be, x, rows * cols, 4), Y = dput(be, NULL, rows * cols, 4), G = dput(be, g, cols, 4),
         Bb = dput(be, b, cols, 4);
    pcv_error err = {0};
    CHECK(pcv_backend_layernorm(be, X.b, 0, Y.b, 0, rows, cols, G.b, 0, Bb.b, 0, 1e-5f, &err) == 0, "%s", err.msg);
    char what[96];
    snprintf(what, sizeof what, "layernorm %lldx%lld offset %g", (long long)rows, (long long)cols, offset);
    float *got = dget(be, Y, what);
    compare(what, got, want, rows * cols, op_tol("layernorm"));
    free(got), free(x), free(g), free(b), free(want);
    dfree(be, X), dfree(be, Y), dfree(be, G), dfree(be, Bb);
}

/* ---- activations (every hidden_act formula, against float64) ---- */
static double softplus64(double v) { return v > 20 ? v : log1p(exp(v)); }
static double gelu64(double v) { return 0.5 * v * (1 + erf(v / sqrt(2.0))); }

static double act64(pcv_activation a, double v)
{
    switch (a) {
    case PCV_ACT_GELU: return gelu64(v);
    case PCV_ACT_GELU_TANH: return 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    case PCV_ACT_GELU_10: return fmin(fmax(gelu64(v), -10), 10);
    case PCV_ACT_QUICK_GELU: return v / (1 + exp(-1.702 * v));
    case PCV_ACT_RELU: return v > 0 ? v : 0;
    case PCV_ACT_RELU2: return v > 0 ? v * v : 0;
    case PCV_ACT_RELU6: return fmin(fmax(v, 0), 6);
    case PCV_ACT_LEAKY_RELU: return v > 0 ? v : 0.01 * v;
    case PCV_ACT_SILU: return v / (1 + exp(-v));
    case PCV_ACT_MISH: return v * tanh(softplus64(v));
    case PCV_ACT_SIGMOID: return 1 / (1 + exp(-v));
    case PCV_ACT_TANH: return tanh(v);
    case PCV_ACT_LAPLACE: return 0.5 * (1 + erf((v - 0.707107) / (0.282095 * sqrt(2.0))));
    case PCV_ACT_HARDSWISH: return v * fmin(fmax(v + 3, 0), 6) / 6;
    case PCV_ACT_SQRT_SOFTPLUS: return sqrt(softplus64(v));
    default: return v;
    }
}

static void test_activation(pcv_backend *be, int64_t n, pcv_activation act, float scale)
{
    float *x = randv(n, 4);
    for (int64_t i = 0; i < n; i++) /* scale: reach every region of the formula (+-3, +-6, +-10, 20) */
        x[i] *= scale;
    double *want = malloc((size_t)n * sizeof *want);
    for (int64_t i = 0; i < n; i++)
        want[i] = act64(act, x[i]);
    dbuf X = dput(be, x, n, 4);
    pcv_error err = {0};
    CHECK(pcv_backend_activation(be, X.b, 0, n, act, &err) == 0, "%s", err.msg);
    char what[64];
    snprintf(what, sizeof what, "%s n%lld", pcv_activation_name(act), (long long)n);
    float *got = dget(be, X, what);
    const char *prof = act == PCV_ACT_GELU || act == PCV_ACT_GELU_TANH ? "gelu" : "activation";
    compare(what, got, want, n, op_tol(prof));
    /* the two GELUs must be distinguishable at this tolerance */
    if (act == PCV_ACT_GELU) {
        int64_t differ = 0;
        tol t = op_tol("gelu");
        for (int64_t i = 0; i < n; i++) {
            double o = act64(PCV_ACT_GELU_TANH, x[i]);
            differ += fabs(got[i] - o) > t.atol + t.rtol * fabs(o);
        }
        CHECK(n < 100 || differ > 0, "gelu tolerance cannot tell erf from tanh");
    }
    free(got), free(x), free(want);
    dfree(be, X);
}

/* ---- small exact ops: bias_add, add, gather, repeat ---- */
static void test_exact_ops(pcv_backend *be, int64_t rows, int64_t cols)
{
    pcv_error err = {0};
    tol exact = {0, 0, 0};
    exact.atol = 1e-30;
    float *x = randv(rows * cols, 1), *bias = randv(cols, 1), *y = randv(rows * cols, 1);
    double *want = malloc((size_t)(rows * cols) * sizeof *want);
    dbuf X = dput(be, x, rows * cols, 4), Bb = dput(be, bias, cols, 4), Y = dput(be, y, rows * cols, 4);

    for (int64_t i = 0; i < rows * cols; i++)
        want[i] = (double)(x[i] + bias[i % cols]);
    CHECK(pcv_backend_bias_add(be, X.b, 0, rows, cols, Bb.b, 0, &err) == 0, "%s", err.msg);
    float *got = dget(be, X, "bias_add");
    compare("bias_add", got, want, rows * cols, exact);
    for (int64_t i = 0; i < rows * cols; i++)
        want[i] = (double)(y[i] + got[i]);
    free(got);
    CHECK(pcv_backend_add(be, Y.b, 0, X.b, 0, rows * cols, &err) == 0, "%s", err.msg);
    got = dget(be, Y, "add");
    compare("add", got, want, rows * cols, exact);
    free(got);

    /* gather with and without positions (period = rows / 2 rounds up) */
    int64_t vocab = 37, period = (rows + 1) / 2;
    float *table = randv(vocab * cols, 1), *pos = randv(period * cols, 1);
    int32_t *ids = malloc((size_t)rows * sizeof *ids);
    for (int64_t r = 0; r < rows; r++)
        ids[r] = (int32_t)(urand() * vocab);
    dbuf T = dput(be, table, vocab * cols, 4), P = dput(be, pos, period * cols, 4), I = dput(be, ids, rows, 4),
         O = dput(be, NULL, rows * cols, 4);
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                want[r * cols + c] = pass ? (double)(table[ids[r] * cols + c] + pos[(r % period) * cols + c])
                                          : table[ids[r] * cols + c];
        CHECK(pcv_backend_gather(be, T.b, 0, I.b, 0, pass ? P.b : NULL, 0, period, O.b, 0, rows, cols, &err) == 0, "%s",
              err.msg);
        got = dget(be, O, "gather");
        compare(pass ? "gather+pos" : "gather", got, want, rows * cols, exact);
        free(got);
    }
    /* repeat: a block of cols floats, rows times */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            want[r * cols + c] = bias[c];
    CHECK(pcv_backend_repeat(be, Bb.b, 0, cols, rows, O.b, 0, &err) == 0, "%s", err.msg);
    got = dget(be, O, "repeat");
    compare("repeat", got, want, rows * cols, exact);
    free(got);

    free(x), free(bias), free(y), free(want), free(table), free(pos), free(ids);
    dfree(be, X), dfree(be, Bb), dfree(be, Y), dfree(be, T), dfree(be, P), dfree(be, I), dfree(be, O);
}

/* ---- softmax with an additive mask ---- */
static void test_softmax(pcv_backend *be, int64_t rows, int64_t cols, bool masked)
{
    float *x = randv(rows * cols, 5), *mask = malloc((size_t)cols * sizeof *mask);
    for (int64_t c = 0; c < cols; c++) /* HF's mask: (1 - keep) * finfo.min */
        mask[c] = (urand() < 0.3 && c > 0) ? -FLT_MAX : 0.0f;
    double *want = malloc((size_t)(rows * cols) * sizeof *want);
    for (int64_t r = 0; r < rows; r++) {
        double mx = -INFINITY, s = 0;
        for (int64_t c = 0; c < cols; c++)
            if (!masked || mask[c] == 0)
                mx = fmax(mx, x[r * cols + c]);
        for (int64_t c = 0; c < cols; c++)
            s += (!masked || mask[c] == 0) ? exp(x[r * cols + c] - mx) : 0;
        for (int64_t c = 0; c < cols; c++)
            want[r * cols + c] = (!masked || mask[c] == 0) ? exp(x[r * cols + c] - mx) / s : 0;
    }
    dbuf X = dput(be, x, rows * cols, 4), M = dput(be, mask, cols, 4);
    pcv_error err = {0};
    CHECK(pcv_backend_softmax(be, X.b, 0, rows, cols, masked ? M.b : NULL, 0, &err) == 0, "%s", err.msg);
    char what[64];
    snprintf(what, sizeof what, "softmax %lldx%lld%s", (long long)rows, (long long)cols, masked ? " masked" : "");
    float *got = dget(be, X, what);
    compare(what, got, want, rows * cols, op_tol("softmax"));
    free(got), free(x), free(mask), free(want);
    dfree(be, X), dfree(be, M);
}

/* ---- fused attention ---- */
/* mask_all_of_row0: every key of batch 0 is masked (HF: uniform weights; Haiku: output 0).
 * In Haiku mode some query rows are masked too (qmask). */
static bool padded_keys; /* test_attention's key mask is a padding mask (long masked runs) */

static void test_attention(pcv_backend *be, pcv_attn_mode mode, int64_t batch, int64_t heads, int64_t nq,
                           int64_t nk, int64_t dqk, int64_t dv, bool masked, bool mask_all_of_row0)
{
    int64_t qld = heads * dqk + 3, vld = heads * dv + 1, old = heads * dv + 2; /* padded rows */
    float *q = randv(batch * nq * qld, 1), *k = randv(batch * nk * qld, 1), *v = randv(batch * nk * vld, 1);
    float *o = randv(batch * nq * old, 1), *kmask = malloc((size_t)(batch * nk) * sizeof *kmask);
    float *qmask = malloc((size_t)(batch * nq) * sizeof *qmask);
    bool haiku = mode == PCV_ATTN_HAIKU;
    for (int64_t i = 0; i < batch * nk; i++)
        kmask[i] = (urand() < 0.4 && i % nk != 0) ? 0.0f : 1.0f;
    if (padded_keys) /* a padded batch: batch entry b keeps its first valid_b keys only */
        for (int64_t b = 0; b < batch; b++)
            for (int64_t j = 0; j < nk; j++)
                kmask[b * nk + j] = j < 1 + (b * 37 + nk / 7) % nk ? 1.0f : 0.0f;
    for (int64_t i = 0; i < batch * nq; i++)
        qmask[i] = (haiku && urand() < 0.3) ? 0.0f : 1.0f;
    if (mask_all_of_row0)
        for (int64_t j = 0; j < nk; j++)
            kmask[j] = 0.0f;
    double *want = malloc((size_t)(batch * nq * old) * sizeof *want), *s = malloc((size_t)nk * sizeof *s);
    bool *keep = malloc((size_t)nk * sizeof *keep);
    for (int64_t i = 0; i < batch * nq * old; i++)
        want[i] = o[i]; /* untouched padding columns */
    double scale = sqrt((double)dqk);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < nq; i++) {
                double mx = -INFINITY, sum = 0;
                int64_t nkeep = 0;
                for (int64_t j = 0; j < nk; j++) {
                    double dot = 0;
                    for (int64_t c = 0; c < dqk; c++)
                        dot += (double)q[(b * nq + i) * qld + h * dqk + c] * k[(b * nk + j) * qld + h * dqk + c];
                    s[j] = dot / scale;
                    keep[j] = (!masked || kmask[b * nk + j] != 0) && (!haiku || !masked || qmask[b * nq + i] != 0);
                    nkeep += keep[j];
                }
                for (int64_t j = 0; j < nk; j++) {
                    if (nkeep == 0)
                        s[j] = 0; /* HF: every score is finfo.min: uniform weights */
                    else if (!keep[j])
                        s[j] = -INFINITY;
                    mx = fmax(mx, s[j]);
                }
                for (int64_t j = 0; j < nk; j++)
                    sum += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
                for (int64_t c = 0; c < dv; c++) {
                    double acc = 0;
                    for (int64_t j = 0; j < nk; j++)
                        if (s[j] != -INFINITY)
                            acc += exp(s[j] - mx) / sum * v[(b * nk + j) * vld + h * dv + c];
                    want[(b * nq + i) * old + h * dv + c] = (haiku && nkeep == 0) ? 0.0 : acc;
                }
            }
    dbuf Q = dput(be, q, batch * nq * qld, 4), K = dput(be, k, batch * nk * qld, 4), V = dput(be, v, batch * nk * vld, 4),
         O = dput(be, o, batch * nq * old, 4), KM = dput(be, kmask, batch * nk, 4), QM = dput(be, qmask, batch * nq, 4);
    pcv_attention_args a = {.batch = batch, .heads = heads, .nq = nq, .nk = nk, .dqk = dqk, .dv = dv,
                            .scale = sqrtf((float)dqk), .mode = mode, .q = Q.b, .q_ld = qld, .k = K.b, .k_ld = qld,
                            .v = V.b, .v_ld = vld, .o = O.b, .o_ld = old, .kmask = masked ? KM.b : NULL,
                            .qmask = masked && haiku ? QM.b : NULL};
    pcv_error err = {0};
    CHECK(pcv_backend_attention(be, &a, &err) == 0, "%s", err.msg);
    char what[160];
    snprintf(what, sizeof what, "attention-%s b%lld h%lld nq%lld nk%lld dqk%lld dv%lld%s%s", haiku ? "haiku" : "hf",
             (long long)batch, (long long)heads, (long long)nq, (long long)nk, (long long)dqk, (long long)dv,
             masked ? (padded_keys ? " padding-masked" : " masked") : "", mask_all_of_row0 ? " (batch 0 fully masked)" : "");
    float *got = dget(be, O, what);
    compare(what, got, want, batch * nq * old, op_tol("attention"));
    free(got), free(q), free(k), free(v), free(o), free(kmask), free(qmask), free(want), free(s), free(keep);
    dfree(be, Q), dfree(be, K), dfree(be, V), dfree(be, O), dfree(be, KM), dfree(be, QM);
}

/* ---- image preprocessing ops: transpose, copy2d, im2col, channel_affine, maxpool ---- */
static void test_image_ops(pcv_backend *be, int64_t batch, int64_t C, int64_t H, int64_t W)
{
    pcv_error err = {0};
    tol exact = {1e-30, 0, 0};
    int64_t n = batch * C * H * W;
    float *x = randv(n, 1);
    double *want = malloc((size_t)(n * 64 + 64) * sizeof *want);
    dbuf X = dput(be, x, n, 4);

    /* transpose [batch][C][H*W] -> [batch][H*W][C] */
    dbuf T = dput(be, NULL, n, 4);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < H * W; p++)
                want[(b * H * W + p) * C + c] = x[(b * C + c) * H * W + p];
    CHECK(pcv_backend_transpose(be, X.b, 0, batch, C, H * W, T.b, 0, &err) == 0, "%s", err.msg);
    float *got = dget(be, T, "transpose");
    compare("transpose", got, want, n, exact);
    free(got);

    /* copy2d: concatenate [rows][C] with a broadcast [period][3] block into [rows][C+3] */
    int64_t rows = batch * H * W, period = H * W, ld = C + 3;
    float *pos = randv(period * 3, 1);
    dbuf P = dput(be, pos, period * 3, 4), Cc = dput(be, NULL, rows * ld, 4);
    float *tvals = dget(be, T, "transpose (reread)");
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < C; j++)
            want[r * ld + j] = tvals[r * C + j];
        for (int64_t j = 0; j < 3; j++)
            want[r * ld + C + j] = pos[(r % period) * 3 + j];
    }
    CHECK(pcv_backend_copy2d(be, T.b, 0, C, rows, Cc.b, 0, ld, rows, C, &err) == 0, "%s", err.msg);
    CHECK(pcv_backend_copy2d(be, P.b, 0, 3, period, Cc.b, C, ld, rows, 3, &err) == 0, "%s", err.msg);
    got = dget(be, Cc, "copy2d");
    compare("copy2d (concat + broadcast)", got, want, rows * ld, exact);
    free(got), free(tvals), free(pos);
    dfree(be, P), dfree(be, Cc), dfree(be, T);

    /* im2col, 3x3 stride 2, asymmetric padding */
    int64_t kh = 3, kw = 3, st = 2, pt = 1, pl = 0;
    int64_t oh = (H + pt + 1 - kh) / st + 1, ow = (W + pl + 2 - kw) / st + 1, ncol = C * kh * kw;
    dbuf I = dput(be, NULL, batch * oh * ow * ncol, 4);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t y = 0; y < oh; y++)
            for (int64_t xx = 0; xx < ow; xx++)
                for (int64_t c = 0; c < C; c++)
                    for (int64_t i = 0; i < kh; i++)
                        for (int64_t j = 0; j < kw; j++) {
                            int64_t sy = y * st + i - pt, sx = xx * st + j - pl;
                            bool in = sy >= 0 && sy < H && sx >= 0 && sx < W;
                            want[((b * oh + y) * ow + xx) * ncol + (c * kh + i) * kw + j] =
                                in ? x[((b * C + c) * H + sy) * W + sx] : 0.0;
                        }
    CHECK(pcv_backend_im2col(be, X.b, 0, batch, C, H, W, kh, kw, st, pt, pl, oh, ow, I.b, 0, &err) == 0, "%s", err.msg);
    got = dget(be, I, "im2col");
    compare("im2col", got, want, batch * oh * ow * ncol, exact);
    free(got);
    dfree(be, I);

    /* channel_affine with ReLU on [rows][C] */
    float *sc = randv(C, 1), *sh = randv(C, 1);
    dbuf S = dput(be, sc, C, 4), Sh = dput(be, sh, C, 4), A = dput(be, x, n, 4);
    for (int64_t i = 0; i < n; i++) {
        double v = (double)x[i] * sc[i % C] + sh[i % C];
        want[i] = v < 0 ? 0 : v;
    }
    CHECK(pcv_backend_channel_affine(be, A.b, 0, n / C, C, S.b, 0, Sh.b, 0, true, &err) == 0, "%s", err.msg);
    got = dget(be, A, "channel_affine");
    compare("channel_affine+relu", got, want, n, op_tol("channel_affine"));
    free(got), free(sc), free(sh);
    dfree(be, S), dfree(be, Sh), dfree(be, A);

    /* maxpool 3x3 stride 2 on channels-last [batch][H][W][C], pad 0/1 */
    int64_t poh = (H - 3) / 2 + 1, pow_ = (W + 1 - 3) / 2 + 1;
    if (poh > 0 && pow_ > 0) {
        dbuf M = dput(be, NULL, batch * poh * pow_ * C, 4);
        for (int64_t b = 0; b < batch; b++)
            for (int64_t y = 0; y < poh; y++)
                for (int64_t xx = 0; xx < pow_; xx++)
                    for (int64_t c = 0; c < C; c++) {
                        double m = -INFINITY;
                        for (int64_t i = 0; i < 3; i++)
                            for (int64_t j = 0; j < 3; j++) {
                                int64_t sy = y * 2 + i, sx = xx * 2 + j - 1;
                                if (sy < H && sx >= 0 && sx < W)
                                    m = fmax(m, x[((b * H + sy) * W + sx) * C + c]);
                            }
                        want[((b * poh + y) * pow_ + xx) * C + c] = m;
                    }
        CHECK(pcv_backend_maxpool(be, X.b, 0, batch, H, W, C, 3, 2, 0, 1, poh, pow_, M.b, 0, &err) == 0, "%s", err.msg);
        got = dget(be, M, "maxpool");
        compare("maxpool", got, want, batch * poh * pow_ * C, exact);
        free(got);
        dfree(be, M);
    }
    free(x), free(want);
    dfree(be, X);
}

static void test_backend(pcv_backend *be)
{
    printf("backend: %s\n", pcv_backend_device(be));
    static const int64_t g[][4] = {{1, 1, 1, 1}, {7, 5, 3, 1}, {64, 64, 64, 1}, {33, 65, 129, 2}, {128, 17, 256, 3},
                                   {5, 300, 31, 4}};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++)
        for (int t = 0; t < 4; t++)
            test_gemm(be, t & 1, t & 2, g[i][0], g[i][1], g[i][2], g[i][3], t == 3 ? 0.75f : 0.0f);
    test_layernorm(be, 1, 1, 0);
    test_layernorm(be, 7, 33, 0);
    test_layernorm(be, 300, 1280, 100);
    test_activation(be, 1, PCV_ACT_GELU, 1.0f);
    test_activation(be, 100003, PCV_ACT_GELU, 1.0f);
    test_activation(be, 1001, PCV_ACT_GELU_TANH, 1.0f);
    for (int a = 0; a < PCV_ACT_COUNT; a++) /* odd lengths: the OpenCL kernels' vector tails */
        test_activation(be, 4099, (pcv_activation)a, 6.0f);
    test_exact_ops(be, 1, 1);
    test_exact_ops(be, 67, 45);
    test_softmax(be, 1, 1, false);
    test_softmax(be, 13, 2049, true);
    test_softmax(be, 300, 257, false);
    test_image_ops(be, 1, 1, 3, 3);
    test_image_ops(be, 2, 3, 17, 12);
    test_image_ops(be, 1, 64, 9, 11);
    for (int mode = 0; mode < 2; mode++) {
        test_attention(be, mode, 1, 1, 1, 1, 1, 1, false, false);
        test_attention(be, mode, 2, 3, 65, 47, 8, 5, true, false);
        test_attention(be, mode, 1, 8, 130, 300, 32, 20, true, false);
        test_attention(be, mode, 2, 1, 3, 1000, 61, 29, true, true);
        test_attention(be, mode, 3, 2, 200, 16, 4, 4, false, false);
    }
}

/* Random odd shapes (each op against its float64 reference). */
static void test_random_shapes(pcv_backend *be, int count)
{
    for (int i = 0; i < count; i++) {
        int64_t m = 1 + (int64_t)(urand() * 150), n = 1 + (int64_t)(urand() * 150), k = 1 + (int64_t)(urand() * 300);
        test_gemm(be, urand() < 0.5, urand() < 0.5, m, n, k, 1 + (int64_t)(urand() * 3), urand() < 0.5 ? 0.0f : 0.5f);
        test_layernorm(be, 1 + (int64_t)(urand() * 40), 1 + (int64_t)(urand() * 900), (float)(urand() * 50));
        test_softmax(be, 1 + (int64_t)(urand() * 40), 1 + (int64_t)(urand() * 900), urand() < 0.5);
        test_attention(be, urand() < 0.5 ? PCV_ATTN_HF : PCV_ATTN_HAIKU, 1 + (int64_t)(urand() * 2),
                       1 + (int64_t)(urand() * 4), 1 + (int64_t)(urand() * 90), 1 + (int64_t)(urand() * 300),
                       1 + (int64_t)(urand() * 70), 1 + (int64_t)(urand() * 70), urand() < 0.7, urand() < 0.2);
    }
}

/* Attention through each code path of an OpenCL backend, including shapes the model meets:
 * the language model's heads (dqk 32, dv 160), single-head layers with wide heads (dqk 704
 * and 1280, dv 1280), padding masks (whole key tiles masked), a long key range with few queries
 * (split across work-items) and a long query range. */
static void test_opencl_attention_paths(pcv_backend *be)
{
    pcv_cl_switches saved, s;
    CHECK(pcv_cl_get_switches(be, &saved), "not an OpenCL backend");
    static const struct {
        int attention, splits;
        const char *what;
    } paths[] = {{1, 0, "fused kernel"}, {1, 3, "fused kernel, 3 key splits"}, {2, 0, "CLBlast GEMMs + softmax"}};
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        s = saved;
        s.attention = paths[p].attention;
        s.splits = paths[p].splits;
        pcv_cl_set_switches(be, &s);
        printf("  attention path: %s\n", paths[p].what);
        for (int mode = 0; mode < 2; mode++) {
            test_attention(be, mode, 2, 3, 65, 47, 8, 5, true, false);
            test_attention(be, mode, 2, 1, 3, 1000, 61, 29, true, true);
            test_attention(be, mode, 1, 8, 37, 70, 32, 160, true, false);
            test_attention(be, mode, 1, 1, 5, 40, 704, 1280, true, false);
            test_attention(be, mode, 1, 1, 3, 20, 1280, 1280, true, false);
            test_attention(be, mode, 3, 2, 200, 16, 4, 4, false, false);
            padded_keys = true; /* whole key tiles masked (skipped by the fused kernel) */
            test_attention(be, mode, 3, 2, 9, 300, 8, 24, true, false);
            test_attention(be, mode, 2, 1, 5, 700, 16, 8, true, true);
            padded_keys = false;
        }
    }
    s = saved;
    s.attention = 1;
    pcv_cl_set_switches(be, &s);
    test_attention(be, PCV_ATTN_HF, 1, 2, 4, 20000, 16, 24, true, false);    /* long keys */
    test_attention(be, PCV_ATTN_HAIKU, 1, 1, 20000, 48, 8, 20, true, false); /* long queries */
    pcv_cl_set_switches(be, &saved);
}

int main(void)
{
    char path[4096];
    json_error_t je;
    snprintf(path, sizeof path, "%s/../tolerances.json", tu_fixtures());
    tolerances = json_load_file(path, 0, &je);
    CHECK(tolerances != NULL, "%s: %s", path, je.text);
    if (!tolerances)
        return TEST_DONE();
    tu_runtime_setup(); /* compiled kernels go to the test folder, not the user's cache */

    pcv_error err = {0};
    pcv_backend *cpu = pcv_backend_open(NULL, &err);
    CHECK(cpu != NULL, "%s", err.msg);
    if (cpu) {
        test_backend(cpu);
        test_random_shapes(cpu, 8);
        pcv_backend_close(cpu);
    }

    pcv_cl_device_info *devs = NULL;
    int ndev = pcv_cl_list_devices(&devs, &err);
    const char *req = getenv("PCV_REQUIRE_OPENCL");
    bool require = req && strcmp(req, "0") != 0;
    CHECK(ndev >= 0, "listing OpenCL devices: %s", err.msg);
    if (ndev <= 0) {
        printf("no OpenCL device: the OpenCL tests did not run%s\n", require ? " (PCV_REQUIRE_OPENCL=1: failure)" : "");
        CHECK(!require, "PCV_REQUIRE_OPENCL=1 but no OpenCL device was found (%s)",
              pcv_cl_available() ? "is PoCL installed, with a writable POCL_CACHE_DIR?" : "this build has no OpenCL backend");
    }
    for (int i = 0; i < ndev; i++) {
        int64_t before = pcv_cl_launch_count();
        char spec[16];
        snprintf(spec, sizeof spec, "%d", i);
        pcv_backend *be = pcv_backend_open(&(pcv_backend_options){.device = spec}, &err);
        CHECK(be != NULL, "OpenCL device %d (%s): %s", i, devs[i].name, err.msg);
        if (!be)
            continue;
        test_backend(be);
        test_opencl_attention_paths(be);
        test_random_shapes(be, 8);
        CHECK(pcv_cl_launch_count() > before + 100, "OpenCL device %d: only %lld kernels ran", i,
              (long long)(pcv_cl_launch_count() - before));
        printf("OpenCL device %d: %lld kernel launches\n", i, (long long)(pcv_cl_launch_count() - before));
        pcv_backend_close(be);
    }
    free(devs);
    json_decref(tolerances);
    return TEST_DONE();
}
