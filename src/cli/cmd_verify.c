/* perceiver-cl verify: one forward pass on a device and on the CPU reference path, compared
 * stage by stage. */
#include "cli/cli.h"
#include "util/error.h"

#include "model/ops.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The tolerance of a device against the CPU reference path, per compared tensor. Both paths
 * compute in float32 with different summation orders (GEMM blocking, vector lanes, the
 * streaming softmax), so they differ by rounding that grows slowly with depth. Measured on PoCL
 * (docs/opencl.md): NMSE <= 2e-13 and max rel err <= 8e-7 on the tiny fixtures, NMSE <= 2e-12
 * and max rel err <= 2.4e-6 on every stage of the 201M-parameter language model. A wrong
 * kernel is far outside: the tanh GELU approximation in place of erf gives NMSE 4e-9..3e-7 and
 * max rel err 8e-5..8e-4 from the first stage that uses it. The same numbers are the test
 * policy's "device_vs_cpu" profile (tests/tolerances.json). */
#define VERIFY_NMSE 1e-9
#define VERIFY_REL 1e-4

static const char help[] =
    "Usage: perceiver-cl verify --device D --model DIR [INPUTS.safetensors] [options]\n"
    "\n"
    "Loads the model twice, on device D and on the CPU reference path, runs one forward pass of\n"
    "the same input on each, and compares every stage output in order (stage.preprocess,\n"
    "stage.encoder.cross, stage.encoder.self.<k>, stage.decoder, logits, last_hidden_state).\n"
    "\n"
    "Input: a safetensors file like `run` takes (input_ids + attention_mask, or pixel_values);\n"
    "without one, text models get the Hugging Face test sentence (' missing.' masked) padded to\n"
    "--seq tokens, or --text; image models get deterministic random pixels of --image-size.\n"
    "\n"
    "For each tensor, with dev = device output and ref = CPU output:\n"
    "  max|ref|      largest magnitude of the reference\n"
    "  max abs err   max |dev - ref| over all elements (and where: index, dev and ref values)\n"
    "  max rel err   max abs err / max|ref|  (relative to the tensor's scale, so that values near 0\n"
    "                do not dominate)\n"
    "  NMSE          sum (dev - ref)^2 / sum ref^2\n"
    "A tensor passes when NMSE <= %g and max rel err <= %g (change with --nmse, --max-rel) and\n"
    "every device value is finite. The first failing stage is where the error appears; later\n"
    "stages inherit it.\n"
    "\n"
    "Options:\n"
    "  --model DIR, -m DIR     model folder\n"
    "  --inputs FILE, -i FILE  input tensors (or give FILE as the last argument)\n"
    "  --text TEXT             text input for text models ([CLS] TEXT [SEP], padded)\n"
    "  --seq N                 padded length of the default text input (default: the model's\n"
    "                          max_position_embeddings)\n"
    "  --image-size N          size of the random image input (default: the config's image_size)\n"
    "  --nmse X, --max-rel X   tolerances\n"
    "  --json                  machine-readable report\n"
    "%s"
    "  --help                  this text\n"
    "\n"
    "Exit status: 0 every tensor within tolerance, 1 a tensor outside it (or an error), 2 usage.\n";

typedef struct stage_cmp {
    const char *name;
    int ndim;
    int64_t shape[PCV_MAX_DIMS], n;
    double max_ref, max_abs, max_rel, nmse;
    int64_t worst, nonfinite;
    float worst_dev, worst_ref;
    bool missing, shape_mismatch, pass;
} stage_cmp;

static void compare(const pcv_io_tensor *ref, const pcv_io_tensor *dev, double tol_nmse, double tol_rel,
                    stage_cmp *s)
{
    memset(s, 0, sizeof *s);
    s->name = ref->name;
    s->ndim = ref->ndim;
    s->n = 1;
    for (int i = 0; i < ref->ndim; i++)
        s->n *= (s->shape[i] = ref->shape[i]);
    if (!dev) {
        s->missing = true;
        return;
    }
    bool same = dev->ndim == ref->ndim;
    for (int i = 0; same && i < ref->ndim; i++)
        same = dev->shape[i] == ref->shape[i];
    if (!same) {
        s->shape_mismatch = true;
        return;
    }
    const float *r = ref->data, *d = dev->data;
    double num = 0, den = 0;
    for (int64_t i = 0; i < s->n; i++) {
        double rv = r[i], dv = d[i];
        if (!isfinite(dv) && isfinite(rv)) {
            if (!s->nonfinite++) {
                s->worst = i;
                s->worst_dev = d[i];
                s->worst_ref = r[i];
            }
            continue;
        }
        double e = fabs(dv - rv);
        if (fabs(rv) > s->max_ref)
            s->max_ref = fabs(rv);
        if (e > s->max_abs && !s->nonfinite) {
            s->max_abs = e;
            s->worst = i;
            s->worst_dev = d[i];
            s->worst_ref = r[i];
        } else if (e > s->max_abs) {
            s->max_abs = e;
        }
        num += e * e;
        den += rv * rv;
    }
    s->nmse = den > 0 ? num / den : (num > 0 ? INFINITY : 0);
    s->max_rel = s->max_ref > 0 ? s->max_abs / s->max_ref : (s->max_abs > 0 ? INFINITY : 0);
    s->pass = !s->nonfinite && s->nmse <= tol_nmse && s->max_rel <= tol_rel;
}

static void index_str(char *buf, size_t cap, const stage_cmp *s)
{
    int64_t idx[PCV_MAX_DIMS], rem = s->worst;
    for (int i = s->ndim - 1; i >= 0; i--) {
        idx[i] = s->shape[i] ? rem % s->shape[i] : 0;
        rem = s->shape[i] ? rem / s->shape[i] : 0;
    }
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->ndim && len + 24 < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "[", (long long)idx[i]);
    if (len + 2 < cap)
        snprintf(buf + len, cap - len, "]");
}

static void shape_str(char *buf, size_t cap, const stage_cmp *s)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->ndim && len + 24 < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "[", (long long)s->shape[i]);
    if (len + 2 < cap)
        snprintf(buf + len, cap - len, "]");
}

static bool parse_positive(const char *s, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || end == s || *end || !(v > 0) || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool is_image(pcv_arch a)
{
    return a == PCV_ARCH_IMAGE_LEARNED || a == PCV_ARCH_IMAGE_FOURIER || a == PCV_ARCH_IMAGE_CONV;
}

int cmd_verify(int argc, char **argv)
{
    cli_args a;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *in_path = NULL, *text = NULL;
    long seq = 0, image_size = 0;
    double tol_nmse = VERIFY_NMSE, tol_rel = VERIFY_REL;
    bool json = false, bad = false;
    cli_init(&a, argc, argv, 2);
    while (a.i < a.argc && !bad) {
        if (cli_opt(&a, "--help", "-h", false, &bad)) {
            printf(help, VERIFY_NMSE, VERIFY_REL, cli_model_opts_help);
            return EXIT_OK;
        } else if (cli_opt(&a, "--model", "-m", true, &bad)) {
            model_dir = a.value;
        } else if (cli_opt(&a, "--inputs", "-i", true, &bad)) {
            in_path = a.value;
        } else if (cli_opt(&a, "--text", NULL, true, &bad)) {
            text = a.value;
        } else if (cli_opt(&a, "--seq", NULL, true, &bad)) {
            if (a.value && !cli_parse_int(a.value, 1, 1 << 20, &seq))
                return cli_usage_error("verify", "--seq needs a positive number");
        } else if (cli_opt(&a, "--image-size", NULL, true, &bad)) {
            if (a.value && !cli_parse_int(a.value, 1, 8192, &image_size))
                return cli_usage_error("verify", "--image-size needs a number from 1 to 8192");
        } else if (cli_opt(&a, "--nmse", NULL, true, &bad)) {
            if (a.value && !parse_positive(a.value, &tol_nmse))
                return cli_usage_error("verify", "--nmse needs a positive number");
        } else if (cli_opt(&a, "--max-rel", NULL, true, &bad)) {
            if (a.value && !parse_positive(a.value, &tol_rel))
                return cli_usage_error("verify", "--max-rel needs a positive number");
        } else if (cli_opt(&a, "--json", NULL, false, &bad)) {
            json = true;
        } else if (cli_model_opt(&a, &opt, &bad)) {
            continue;
        } else if (a.argv[a.i][0] != '-' && !in_path) {
            in_path = a.argv[a.i++];
        } else {
            return cli_usage_error("verify", "unknown argument '%s'", a.argv[a.i]);
        }
    }
    if (bad)
        return EXIT_USAGE;
    if (!model_dir)
        return cli_usage_error("verify", "--model is required");
    if (in_path && text)
        return cli_usage_error("verify", "give an inputs file or --text, not both");
    if (!opt.backend.device || !*opt.backend.device)
        opt.backend.device = "0";

    pcv_error err = {0};
    pcv_model *dev = NULL, *ref = NULL;
    pcv_safetensors *in = NULL;
    pcv_io_tensor ins[16];
    const pcv_io_tensor *dout = NULL, *rout = NULL;
    int nin = 0, ndout = 0, nrout = 0, rc = EXIT_FAIL;
    int64_t *ids = NULL, *mask = NULL;
    float *pixels = NULL;
    stage_cmp *cmp = NULL;
    char input_desc[256] = "";
    memset(ins, 0, sizeof ins);

    opt.capture = true;
    pcv_model_options ropt = opt;
    ropt.backend.device = "cpu";
    if (pcv_model_load(model_dir, &opt, &dev, &err))
        goto done;
    fprintf(stderr, "perceiver-cl: verify %s on %s\n", pcv_arch_name(pcv_model_arch(dev)), pcv_model_device(dev));
    if (pcv_model_load(model_dir, &ropt, &ref, &err))
        goto done;
    const pcv_config *c = pcv_model_config(ref);
    pcv_arch arch = pcv_model_arch(ref);

    /* ---- input ---- */
    if (in_path) {
        if (pcv_st_open(in_path, &in, &err))
            goto done;
        if (pcv_st_count(in) > 16) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s: %d tensors; a model takes at most 16 inputs", in_path, pcv_st_count(in));
            goto done;
        }
        if (pcv_io_from_safetensors(in, ins, &err))
            goto done;
        nin = pcv_st_count(in);
        snprintf(input_desc, sizeof input_desc, "%s", in_path);
    } else if (is_image(arch)) {
        long size = image_size ? image_size : c->image_size > 0 ? c->image_size : 224;
        if (arch == PCV_ARCH_IMAGE_LEARNED)
            size = c->image_size; /* the trainable position table fixes the size */
        size_t n = (size_t)(3 * size * size);
        if (!(pixels = malloc(n * sizeof *pixels))) {
            pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
            goto done;
        }
        uint64_t st = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < n; i++) { /* uniform in [-2, 2): roughly normalized pixels */
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            pixels[i] = (float)((st >> 40) * (4.0 / 16777216.0)) - 2.0f;
        }
        ins[0] = (pcv_io_tensor){.name = "pixel_values", .dtype = PCV_DT_F32, .ndim = 4, .shape = {1, 3, size, size},
                                 .data = pixels};
        nin = 1;
        snprintf(input_desc, sizeof input_desc, "pixel_values [1,3,%ld,%ld], deterministic random in [-2, 2)", size,
                 size);
    } else {
        static const char sentence[] = "This is an incomplete sentence where some words are missing.";
        const char *s = text ? text : sentence;
        size_t len = strlen(s), ntok = len + 2;
        long S = seq ? seq : c->max_position_embeddings;
        bool cut = false;
        if ((long)ntok > S && !text) { /* a model with few positions: the sentence's start */
            len = S >= 2 ? (size_t)S - 2 : 0;
            ntok = len + 2;
            cut = true;
        }
        if ((long)ntok > S) {
            pcv_set_error(&err, PCV_ERR_INPUT, "the text has %zu tokens with [CLS] and [SEP]; the input holds %ld",
                          ntok, S);
            goto done;
        }
        int32_t *tok = malloc(ntok * sizeof *tok);
        ids = calloc((size_t)S, sizeof *ids);
        mask = calloc((size_t)S, sizeof *mask);
        if (!tok || !ids || !mask) {
            free(tok);
            pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
            goto done;
        }
        pcv_tokenize(s, len, true, tok, ntok);
        for (size_t i = 0; i < ntok; i++) {
            /* the Hugging Face test masks ' missing.' (tokens 52..60) */
            ids[i] = (!text && i >= 52 && i < 61) ? PCV_TOK_MASK : tok[i] % c->vocab_size;
            mask[i] = 1;
        }
        free(tok);
        ins[0] = (pcv_io_tensor){.name = "input_ids", .dtype = PCV_DT_I64, .ndim = 2, .shape = {1, S}, .data = ids};
        ins[1] = (pcv_io_tensor){.name = "attention_mask", .dtype = PCV_DT_I64, .ndim = 2, .shape = {1, S},
                                 .data = mask};
        nin = 2;
        snprintf(input_desc, sizeof input_desc, "input_ids + attention_mask [1,%ld]: %s, %zu tokens%s", S,
                 text  ? "[CLS] --text [SEP]"
                 : cut ? "[CLS] the start of the Hugging Face test sentence [SEP]"
                       : "the Hugging Face test sentence with ' missing.' masked",
                 ntok, (long)ntok < S ? " + padding" : "");
    }

    /* ---- one forward each ---- */
    double t0 = pcv_now();
    if (pcv_model_forward(ref, ins, nin, &rout, &nrout, &err))
        goto done;
    double t_ref = pcv_now() - t0;
    t0 = pcv_now();
    if (pcv_model_forward(dev, ins, nin, &dout, &ndout, &err))
        goto done;
    double t_dev = pcv_now() - t0;

    /* ---- compare ---- */
    cmp = calloc((size_t)(nrout ? nrout : 1), sizeof *cmp);
    if (!cmp) {
        pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    int nfail = 0, first_fail = -1, worst_stage = 0;
    double worst_use = -1;
    for (int i = 0; i < nrout; i++) {
        compare(&rout[i], pcv_io_find(dout, ndout, rout[i].name), tol_nmse, tol_rel, &cmp[i]);
        if (!cmp[i].pass) {
            nfail++;
            if (first_fail < 0)
                first_fail = i;
        }
        double use = fmax(cmp[i].nmse / tol_nmse, cmp[i].max_rel / tol_rel);
        if (use > worst_use) {
            worst_use = use;
            worst_stage = i;
        }
    }

    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:f, s:f}", "model", model_dir, "architecture",
                              pcv_arch_name(arch), "parameters", (json_int_t)pcv_model_num_params(ref), "input",
                              input_desc, "device", pcv_model_device(dev), "reference", pcv_model_device(ref),
                              "metric", "max_rel = max|dev-ref| / max|ref|; nmse = sum (dev-ref)^2 / sum ref^2",
                              "device_forward_s", t_dev, "reference_forward_s", t_ref);
        json_object_set_new(o, "tolerance", json_pack("{s:f, s:f}", "nmse", tol_nmse, "max_rel", tol_rel));
        json_t *arr = json_array();
        for (int i = 0; i < nrout; i++) {
            const stage_cmp *s = &cmp[i];
            json_t *shape = json_array(), *idx = json_array();
            int64_t rem = s->worst;
            int64_t ix[PCV_MAX_DIMS];
            for (int k = s->ndim - 1; k >= 0; k--) {
                ix[k] = s->shape[k] ? rem % s->shape[k] : 0;
                rem = s->shape[k] ? rem / s->shape[k] : 0;
            }
            for (int k = 0; k < s->ndim; k++) {
                json_array_append_new(shape, json_integer(s->shape[k]));
                json_array_append_new(idx, json_integer(ix[k]));
            }
            json_t *e = json_pack("{s:s, s:o, s:b}", "name", s->name, "shape", shape, "pass", s->pass);
            if (s->missing || s->shape_mismatch) {
                json_object_set_new(e, "error", json_string(s->missing ? "missing on the device" : "shape differs"));
                json_decref(idx);
            } else {
                /* JSON has no inf/nan: non-finite values are reported as null */
                json_object_set_new(e, "max_abs_ref", json_real(s->max_ref));
                json_object_set_new(e, "max_abs_err", isfinite(s->max_abs) ? json_real(s->max_abs) : json_null());
                json_object_set_new(e, "max_rel_err", isfinite(s->max_rel) ? json_real(s->max_rel) : json_null());
                json_object_set_new(e, "nmse", isfinite(s->nmse) ? json_real(s->nmse) : json_null());
                json_object_set_new(e, "nonfinite", json_integer(s->nonfinite));
                json_object_set_new(e, "worst_index", idx);
                json_object_set_new(e, "worst_device",
                                    isfinite(s->worst_dev) ? json_real(s->worst_dev) : json_null());
                json_object_set_new(e, "worst_reference", json_real(s->worst_ref));
            }
            json_array_append_new(arr, e);
        }
        json_object_set_new(o, "stages", arr);
        json_object_set_new(o, "pass", json_boolean(nfail == 0));
        json_object_set_new(o, "failed", json_integer(nfail));
        json_object_set_new(o, "first_failure", first_fail >= 0 ? json_string(cmp[first_fail].name) : json_null());
        char *s = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("model      %s (%s, %lld parameters)\n", model_dir, pcv_arch_name(arch),
               (long long)pcv_model_num_params(ref));
        printf("input      %s\n", input_desc);
        printf("device     %s\n", pcv_model_device(dev));
        printf("reference  %s\n", pcv_model_device(ref));
        printf("forward    device %.3f s, reference %.3f s (first pass of each, after loading)\n", t_dev, t_ref);
        printf("tolerance  NMSE <= %g and max rel err <= %g (max rel err = max|dev - ref| / max|ref|)\n\n", tol_nmse,
               tol_rel);
        printf("%-3s %-24s %-16s %10s %11s %11s %10s  %-16s %-25s %s\n", "#", "stage", "shape", "max|ref|",
               "max abs err", "max rel err", "NMSE", "worst at", "device / reference", "result");
        for (int i = 0; i < nrout; i++) {
            const stage_cmp *s = &cmp[i];
            char shp[64], at[64], vals[64];
            shape_str(shp, sizeof shp, s);
            if (s->missing || s->shape_mismatch) {
                printf("%-3d %-24s %-16s %s  FAIL\n", i + 1, s->name, shp,
                       s->missing ? "missing on the device" : "shape differs on the device");
                continue;
            }
            index_str(at, sizeof at, s);
            snprintf(vals, sizeof vals, "%.7g / %.7g", s->worst_dev, s->worst_ref);
            printf("%-3d %-24s %-16s %10.4g %11.3e %11.3e %10.3e  %-16s %-25s %s", i + 1, s->name, shp, s->max_ref,
                   s->max_abs, s->max_rel, s->nmse, at, vals, s->pass ? "PASS" : "FAIL");
            if (s->nonfinite)
                printf(" (%lld non-finite device values)", (long long)s->nonfinite);
            printf("\n");
        }
        printf("\n");
        if (nfail == 0)
            printf("PASS: %d of %d tensors within tolerance; closest to it: %s at %.2g%% of the tolerance\n", nrout,
                   nrout, cmp[worst_stage].name, 100.0 * worst_use);
        else
            printf("FAIL: %d of %d tensors outside tolerance; the error first appears in %s (later stages inherit "
                   "it)\n",
                   nfail, nrout, cmp[first_fail].name);
    }
    rc = nfail == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (rc && err.msg[0])
        cli_fail(&err);
    free(cmp);
    free(ids);
    free(mask);
    free(pixels);
    pcv_st_close(in);
    pcv_model_free(dev);
    pcv_model_free(ref);
    return rc;
}
