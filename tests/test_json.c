/* The --json outputs against their contract (docs/json.md): every documented field with its
 * type, in every command, and every float in its shortest round-trip form (float32 for the
 * engine's float32 values, double for the rest). Runs the built perceiver-cl ($PCV_BIN). */
#include "testutil.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

static char *run(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    pclose(p);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* ---- types --------------------------------------------------------------------------------- */

typedef enum { T_STR, T_INT, T_NUM, T_BOOL, T_ARR, T_OBJ, T_STR_OR_NULL, T_INT_OR_NULL } ftype;

static bool is_type(json_t *v, ftype t)
{
    switch (t) {
    case T_STR: return json_is_string(v);
    case T_INT: return json_is_integer(v);
    case T_NUM: return json_is_number(v) || json_is_null(v); /* non-finite: null */
    case T_BOOL: return json_is_boolean(v);
    case T_ARR: return json_is_array(v);
    case T_OBJ: return json_is_object(v);
    case T_STR_OR_NULL: return json_is_string(v) || json_is_null(v);
    case T_INT_OR_NULL: return json_is_integer(v) || json_is_null(v);
    }
    return false;
}

typedef struct field {
    const char *key;
    ftype type;
} field;

static void need(const char *what, json_t *o, const field *f)
{
    for (; f->key; f++) {
        json_t *v = json_object_get(o, f->key);
        CHECK(v && is_type(v, f->type), "%s: field '%s' missing or of the wrong type", what, f->key);
    }
}

/* ---- shortest floats ------------------------------------------------------------------------ */

static const char *const f32_keys[] = {"probability", "logit", "min_probability", "worst_device", "worst_reference",
                                       NULL};

static bool is_f32_key(const char *k)
{
    for (int i = 0; f32_keys[i]; i++)
        if (!strcmp(k, f32_keys[i]))
            return true;
    return false;
}

/* Every non-integer number of the text: it reads back as itself, and no shorter %g form does. */
static int check_floats(const char *what, const char *text)
{
    char key[128] = "";
    int checked = 0;
    for (const char *s = text; *s;) {
        if (*s == '"') { /* a string: remember it as the key if a ':' follows */
            const char *e = s + 1;
            while (*e && *e != '"')
                e += *e == '\\' ? 2 : 1;
            const char *after = *e ? e + 1 : e;
            while (*after == ' ')
                after++;
            if (*after == ':' && e - s - 1 < (long)sizeof key)
                snprintf(key, sizeof key, "%.*s", (int)(e - s - 1), s + 1);
            s = *e ? e + 1 : e;
            continue;
        }
        if (*s == '-' || isdigit((unsigned char)*s)) {
            const char *e = s;
            bool isfloat = false;
            while (*e && strchr("0123456789+-.eE", *e)) {
                isfloat = isfloat || strchr(".eE", *e);
                e++;
            }
            char tok[64];
            snprintf(tok, sizeof tok, "%.*s", (int)(e - s), s);
            if (isfloat) {
                int digits = 0;
                bool lead = true;
                for (const char *c = tok; *c && *c != 'e' && *c != 'E'; c++)
                    if (isdigit((unsigned char)*c) && !(lead && *c == '0'))
                        digits++, lead = false;
                bool f32 = is_f32_key(key);
                double v = f32 ? (double)strtof(tok, NULL) : strtod(tok, NULL);
                bool shorter = false;
                for (int p = 1; p < digits && !shorter; p++) {
                    char b[64];
                    snprintf(b, sizeof b, "%.*g", p, v);
                    shorter = f32 ? strtof(b, NULL) == (float)v : strtod(b, NULL) == v;
                }
                CHECK(!shorter, "%s: '%s' = %s is not the shortest form of its %s", what, key, tok,
                      f32 ? "float32" : "double");
                checked++;
            }
            s = e;
            continue;
        }
        s++;
    }
    return checked;
}

/* ---- the commands ----------------------------------------------------------------------------- */

static const field fill_line[] = {{"line", T_INT}, {"input", T_STR}, {"filled", T_STR}, {"num_masked", T_INT},
                                  {"spans", T_ARR}, {0}};
static const field fill_span[] = {{"start", T_INT}, {"length", T_INT}, {"guess", T_STR}, {"original", T_STR_OR_NULL},
                                  {"min_probability", T_NUM}, {0}};
static const field fill_cand[] = {{"position", T_INT}, {"top", T_ARR}, {0}};
static const field fill_top[] = {{"byte", T_INT}, {"text", T_STR}, {"probability", T_NUM}, {0}};
static const field line_error[] = {{"line", T_INT}, {"error", T_STR}, {0}};
static const field cls_image[] = {{"image", T_STR}, {"top", T_ARR}, {0}};
static const field cls_top[] = {{"class", T_INT}, {"label", T_STR}, {"probability", T_NUM}, {"logit", T_NUM}, {0}};
static const field image_error[] = {{"image", T_STR}, {"error", T_STR}, {0}};
static const field bench_doc[] = {{"version", T_STR}, {"git_commit", T_STR}, {"model", T_STR}, {"architecture", T_STR},
                                  {"parameters", T_INT}, {"numerics", T_STR}, {"device", T_STR}, {"driver", T_STR},
                                  {"peak_gflops", T_NUM}, {"peak_gemm_n", T_INT}, {"load_s", T_NUM},
                                  {"results", T_ARR}, {0}};
static const field bench_res[] = {{"batch", T_INT}, {"input", T_STR}, {"input_shape", T_ARR}, {"repeat", T_INT},
                                  {"forward_s", T_OBJ}, {"items_per_s", T_OBJ}, {"gflop", T_NUM}, {"gflops", T_OBJ},
                                  {"percent_of_peak", T_NUM}, {"memory", T_OBJ}, {"stages", T_ARR}, {0}};
static const field bench_dev[] = {{"device_index", T_INT}, {"device", T_STR}, {"items_per_s", T_NUM},
                                  {"seconds", T_NUM}, {0}};
static const field bench_res_devs[] = {{"devices", T_ARR}, {"total_items_per_s", T_NUM}, {"wall_s", T_NUM}, {0}};
static const field mean_sd[] = {{"mean", T_NUM}, {"stddev", T_NUM}, {0}};
static const field fwd[] = {{"mean", T_NUM}, {"stddev", T_NUM}, {"best", T_NUM}, {"samples", T_ARR}, {0}};
static const field mem[] = {{"activation_bytes", T_INT}, {"output_bytes", T_INT}, {"device_bytes", T_INT},
                            {"device_peak_bytes", T_INT}, {"plans", T_INT}, {"allocs_per_forward", T_INT},
                            {"peak_rss_bytes", T_INT}, {0}};
static const field stage[] = {{"stage", T_STR}, {"seconds", T_NUM}, {"gflop", T_NUM}, {"gflops", T_NUM},
                              {"percent_of_peak", T_NUM}, {0}};
static const field verify_doc[] = {{"model", T_STR}, {"architecture", T_STR}, {"parameters", T_INT}, {"input", T_STR},
                                   {"device", T_STR}, {"reference", T_STR}, {"metric", T_STR},
                                   {"device_forward_s", T_NUM}, {"reference_forward_s", T_NUM}, {"tolerance", T_OBJ},
                                   {"stages", T_ARR}, {"pass", T_BOOL}, {"failed", T_INT}, {0}};
static const field verify_stage[] = {{"name", T_STR}, {"shape", T_ARR}, {"pass", T_BOOL}, {"max_abs_ref", T_NUM},
                                     {"max_abs_err", T_NUM}, {"max_rel_err", T_NUM}, {"nmse", T_NUM},
                                     {"nonfinite", T_INT}, {"worst_index", T_ARR}, {"worst_device", T_NUM},
                                     {"worst_reference", T_NUM}, {0}};
static const field verify_all_doc[] = {{"model", T_STR}, {"architecture", T_STR}, {"parameters", T_INT},
                                       {"input", T_STR}, {"reference", T_STR}, {"reference_forward_s", T_NUM},
                                       {"metric", T_STR}, {"tolerance", T_OBJ}, {"devices", T_ARR}, {"pass", T_BOOL},
                                       {"devices_passed", T_INT}, {"devices_failed", T_INT}, {0}};
static const field verify_all_dev[] = {{"index", T_INT}, {"name", T_STR}, {"type", T_STR}, {"platform", T_STR},
                                       {"platform_version", T_STR}, {"vendor", T_STR}, {"driver", T_STR},
                                       {"version", T_STR}, {"opencl_c", T_STR}, {"pass", T_BOOL},
                                       {"error", T_STR_OR_NULL}, {"forward_s", T_NUM}, {"failed", T_INT},
                                       {"first_failure", T_STR_OR_NULL}, {"worst_stage", T_STR_OR_NULL},
                                       {"worst_of_tolerance", T_NUM}, {"stages", T_ARR}, {0}};
static const field devices_doc[] = {{"cpu", T_STR}, {"opencl_built", T_BOOL}, {"opencl", T_ARR},
                                    {"kernel_cache", T_STR}, {0}};
static const field device[] = {{"index", T_INT}, {"name", T_STR}, {"type", T_STR}, {"platform", T_STR},
                               {"platform_version", T_STR}, {"vendor", T_STR}, {"driver", T_STR}, {"version", T_STR},
                               {"opencl_c", T_STR}, {"compute_units", T_INT}, {"clock_mhz", T_INT},
                               {"global_mem_bytes", T_INT}, {"max_alloc_bytes", T_INT}, {"local_mem_bytes", T_INT},
                               {"fp64", T_BOOL}, {"simd_width", T_INT_OR_NULL}, {"simd_width_source", T_STR_OR_NULL},
                               {"default_row_ls", T_INT}, {"native_float_width", T_INT_OR_NULL},
                               {"default_gemm", T_STR}, {"own_gemm_tile", T_ARR}, {"usable", T_BOOL}, {"unusable_reason", T_STR_OR_NULL},
                               {"kernel_cache_used", T_BOOL}, {"tuning_profile", T_STR_OR_NULL},
                               {"tuning", T_STR_OR_NULL}, {0}};
static const field device_id[] = {{"index", T_INT}, {"name", T_STR}, {"type", T_STR}, {"platform", T_STR},
                                  {"platform_version", T_STR}, {"vendor", T_STR}, {"driver", T_STR},
                                  {"version", T_STR}, {"opencl_c", T_STR}, {0}};
static const field tune_doc[] = {{"device", T_OBJ}, {"backend", T_STR}, {"model", T_STR}, {"rows", T_INT},
                                 {"budget_s", T_NUM}, {"seconds", T_NUM}, {"best", T_STR}, {"before_ms", T_NUM},
                                 {"after_ms", T_NUM}, {"speedup", T_NUM}, {"tried", T_INT}, {"wrong", T_INT},
                                 {"failed", T_INT}, {"slower", T_INT}, {"profile", T_STR_OR_NULL},
                                 {"operations", T_ARR}, {"candidates", T_ARR}, {0}};
static const field tune_op[] = {{"op", T_STR}, {"model", T_STR}, {"shape", T_STR}, {"weight", T_NUM},
                                {"before_ms", T_NUM}, {"after_ms", T_NUM}, {"after_gflops", T_NUM}, {0}};
static const field tune_cand[] = {{"tuning", T_STR}, {"status", T_STR}, {0}};
static const field ops_doc[] = {{"device", T_STR}, {"reference", T_STR}, {"repeat", T_INT}, {"ops", T_ARR}, {0}};
static const field op[] = {{"op", T_STR}, {"variant", T_STR}, {"kind", T_STR}, {"shape", T_STR}, {"unit", T_STR},
                           {"device_ms", T_NUM}, {"device_rate", T_NUM}, {"cpu_ms", T_NUM}, {"cpu_rate", T_NUM}, {0}};

static void each(json_t *arr, const char *what, const field *f)
{
    size_t i;
    json_t *e;
    CHECK(json_is_array(arr) && json_array_size(arr) > 0, "%s: empty", what);
    json_array_foreach(arr, i, e) need(what, e, f);
}

/* JSON Lines: every line an object; returns how many */
static int lines(const char *what, char *text, void (*fn)(const char *, json_t *))
{
    int n = 0;
    for (char *l = text, *nl; l && *l; l = nl ? nl + 1 : NULL) {
        nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        json_error_t je;
        json_t *o = json_loads(l, 0, &je);
        CHECK(json_is_object(o), "%s: line %d is not a JSON object: %s", what, n + 1, je.text);
        if (o)
            fn(what, o);
        json_decref(o);
        n++;
    }
    return n;
}

static void fill_obj(const char *what, json_t *o)
{
    if (json_object_get(o, "error")) {
        need(what, o, line_error);
        return;
    }
    need(what, o, fill_line);
    each(json_object_get(o, "spans"), "fill spans", fill_span);
    json_t *c = json_object_get(o, "candidates");
    CHECK(c != NULL, "fill --top: no candidates");
    each(c, "fill candidates", fill_cand);
    size_t i;
    json_t *e;
    json_array_foreach(c, i, e) each(json_object_get(e, "top"), "fill candidates top", fill_top);
}

static void classify_obj(const char *what, json_t *o)
{
    if (json_object_get(o, "error")) {
        need(what, o, image_error);
        return;
    }
    need(what, o, cls_image);
    each(json_object_get(o, "top"), "classify top", cls_top);
}

int main(void)
{
    const char *bin = getenv("PCV_BIN");
    const char *src = getenv("PCV_SOURCE_DIR");
    CHECK(bin && src, "PCV_BIN and PCV_SOURCE_DIR must be set (ctest sets them)");
    if (!bin || !src)
        return TEST_DONE();
    const char *fx = tu_fixtures();
    char cmd[8192];
    int nfloat = 0;

    /* fill: a good line, a bad line, --top */
    snprintf(cmd, sizeof cmd, "'%s' fill -q --json --top 3 -m '%s/examples/tiny-mlm' 'free {software}' 'bad {x' "
             "'x [MASK:2] y' 2>/dev/null", bin, src);
    char *out = run(cmd);
    CHECK(out && lines("fill", out, fill_obj) == 3, "fill --json: 3 lines");
    free(out);
    out = run(cmd);
    nfloat += check_floats("fill", out ? out : "");
    free(out);

    /* classify: good, bad, and a file name that is not UTF-8 */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/json-test", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/examples/digits/images/digit_1_99.png' \"%s/$(printf 'caf\\351.png')\""
             " && printf 'x' >'%s/bad.png'", dir, src, dir, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "'%s' classify -q --json -m '%s/examples/digits' '%s' 2>/dev/null", bin, src, dir);
    out = run(cmd);
    char *copy = out ? strdup(out) : NULL;
    CHECK(out && lines("classify", out, classify_obj) == 2, "classify --json: 2 lines");
    CHECK(copy && strstr(copy, "caf\xef\xbf\xbd.png\",\"image_bytes\":\""), "classify --json: the non-UTF-8 name");
    CHECK(copy && strstr(copy, "636166e92e706e67\""), "classify --json: the bytes of the non-UTF-8 name");
    nfloat += check_floats("classify", copy ? copy : "");
    free(out);
    free(copy);

    /* single documents */
    char *devices_out = NULL; /* devices --json, to know whether there is an OpenCL device */
    struct {
        const char *what, *args;
    } docs[] = {
        {"bench", "bench -q --json -r 2 -m '%s/mlm_q_shape'"},
        {"verify", "verify -q --json -d cpu -m '%s/mlm_q_shape'"},
        {"devices", "devices --json"},
        {"bench-ops", "bench-ops -q --json -d cpu -r 1 --only layernorm"},
        /* several devices (the CPU path and OpenCL device 0): skipped without an OpenCL device */
        {"bench -d cpu,0", "bench -q --json -r 1 -d cpu,0 -m '%s/mlm_q_shape'"},
        /* tuning OpenCL device 0 (a short search, nothing stored): skipped without one */
        {"tune", "tune -q --json -d 0 --model lm --rows 8 --budget 1 --dry-run"},
    };
    for (size_t d = 0; d < sizeof docs / sizeof *docs; d++) {
        char args[4096];
        snprintf(args, sizeof args, docs[d].args, fx);
        snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", bin, args);
        if ((d == 4 || d == 5) && !strstr(devices_out ? devices_out : "", "\"index\": 0"))
            continue;
        out = run(cmd);
        json_error_t je;
        json_t *o = out ? json_loads(out, 0, &je) : NULL;
        CHECK(json_is_object(o), "%s --json: not one JSON document: %s", docs[d].what, o ? "" : je.text);
        if (o && d == 0) {
            need("bench", o, bench_doc);
            each(json_object_get(o, "results"), "bench results", bench_res);
            json_t *r = json_array_get(json_object_get(o, "results"), 0);
            need("bench forward_s", json_object_get(r, "forward_s"), fwd);
            need("bench items_per_s", json_object_get(r, "items_per_s"), mean_sd);
            need("bench gflops", json_object_get(r, "gflops"), mean_sd);
            need("bench memory", json_object_get(r, "memory"), mem);
            each(json_object_get(r, "stages"), "bench stages", stage);
        } else if (o && d == 1) {
            need("verify", o, verify_doc);
            need("verify tolerance", json_object_get(o, "tolerance"), (const field[]){{"nmse", T_NUM}, {"max_rel", T_NUM}, {0}});
            each(json_object_get(o, "stages"), "verify stages", verify_stage);
        } else if (o && d == 2) {
            need("devices", o, devices_doc);
            size_t i;
            json_t *e;
            json_array_foreach(json_object_get(o, "opencl"), i, e) need("devices opencl", e, device);
        } else if (o && d == 3) {
            need("bench-ops", o, ops_doc);
            each(json_object_get(o, "ops"), "bench-ops ops", op);
        } else if (o && d == 4) {
            need("bench -d cpu,0", o, bench_doc);
            json_t *r = json_array_get(json_object_get(o, "results"), 0);
            need("bench -d cpu,0 results", r, bench_res);
            need("bench -d cpu,0 results", r, bench_res_devs);
            each(json_object_get(r, "devices"), "bench -d cpu,0 devices", bench_dev);
            CHECK(json_array_size(json_object_get(r, "devices")) == 2, "bench -d cpu,0: 2 devices");
        } else if (o && d == 5) {
            need("tune", o, tune_doc);
            need("tune device", json_object_get(o, "device"), device_id);
            each(json_object_get(o, "operations"), "tune operations", tune_op);
            each(json_object_get(o, "candidates"), "tune candidates", tune_cand);
            CHECK(json_is_null(json_object_get(o, "profile")), "tune --dry-run: profile is null");
        }
        if (o && d == 2) {
            free(devices_out);
            devices_out = strdup(out);
        }
        nfloat += check_floats(docs[d].what, out ? out : "");
        json_decref(o);
        free(out);
    }
    /* verify --all: where there is an OpenCL device (CI: PCV_REQUIRE_OPENCL=1 makes it required) */
    snprintf(cmd, sizeof cmd, "'%s' devices --json 2>/dev/null", bin);
    out = run(cmd);
    json_t *dl = out ? json_loads(out, 0, NULL) : NULL;
    size_t ncl = json_array_size(json_object_get(dl, "opencl"));
    json_decref(dl);
    free(out);
    const char *req = getenv("PCV_REQUIRE_OPENCL");
    CHECK(ncl > 0 || !req || !strcmp(req, "0"), "PCV_REQUIRE_OPENCL is set but there is no OpenCL device");
    if (ncl > 0) {
        snprintf(cmd, sizeof cmd, "'%s' verify -q --json --all -m '%s/mlm_q_shape' 2>/dev/null", bin, fx);
        out = run(cmd);
        json_error_t je;
        json_t *o = out ? json_loads(out, 0, &je) : NULL;
        CHECK(json_is_object(o), "verify --all --json: not one JSON document: %s", o ? "" : je.text);
        if (o) {
            need("verify --all", o, verify_all_doc);
            json_t *devs = json_object_get(o, "devices");
            each(devs, "verify --all devices", verify_all_dev);
            CHECK(json_array_size(devs) == ncl, "verify --all: %zu devices, devices --json lists %zu",
                  json_array_size(devs), ncl);
            size_t i;
            json_t *e;
            json_array_foreach(devs, i, e) each(json_object_get(e, "stages"), "verify --all stages", verify_stage);
        }
        nfloat += check_floats("verify --all", out ? out : "");
        json_decref(o);
        free(out);
    } else {
        printf("json: no OpenCL device, verify --all not checked\n");
    }
    free(devices_out);
    CHECK(nfloat > 50, "only %d floats checked", nfloat);
    printf("json: every documented field present and typed; %d floats in their shortest round-trip form\n", nfloat);
    return TEST_DONE();
}
