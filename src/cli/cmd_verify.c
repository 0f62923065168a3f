/* perceiver-cl verify: one forward pass on a device and on the CPU reference path, compared
 * stage by stage. */
#include "cli/cli.h"
#include "cli/jsonw.h"
#include "util/error.h"

#include "backend/opencl.h"
#include "util/clock.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

static const cli_option options[] = {
    {"model", 'm', "DIR", "model folder or checkpoint file"},
    {"inputs", 'i', "FILE", "input tensors, like run takes (or give FILE as the operand)"},
    {"text", CLI_KEY, "TEXT", "text input for text models, in fill's mask syntax ([MASK],\n"
                              "[MASK:N], {text}); [CLS] TEXT [SEP] (raw bytes with --numerics\n"
                              "haiku), padded to --seq"},
    {"seq", CLI_KEY + 1, "N", "padded length of the text input (default: the model's\n"
                              "max_position_embeddings)"},
    {"image-size", CLI_KEY + 2, "N", "size of the random image input (default: the processor's\n"
                                     "output size, 224; the learned-position model takes only\n"
                                     "its config's image_size)"},
    {"nmse", CLI_KEY + 3, "X", "NMSE tolerance (default 1e-9)"},
    {"max-rel", CLI_KEY + 4, "X", "max rel err tolerance (default 1e-4)"},
    {"json", CLI_KEY + 5, NULL, "machine-readable report (docs/json.md)"},
    {"against", CLI_KEY + 6, "B", "the reference device: cpu (default), an OpenCL device index or\n"
                                  "part of its name, as --device takes"},
    {"all", CLI_KEY + 7, NULL, "every OpenCL device (but B) against B, one summary table"},
    {0},
};

const cli_command cli_cmd_verify = {
    "verify", "--model DIR [--device D | --all] [--against B] [INPUTS.safetensors] [options]",
    "Loads the model twice, on device D and on the reference device B, runs one forward pass of\n"
    "the same input on each, and compares every stage output in order (stage.preprocess,\n"
    "stage.encoder.cross, stage.encoder.self.<k>, stage.decoder, logits, last_hidden_state).\n"
    "B is the CPU reference path unless --against names another device (cpu, an OpenCL index or\n"
    "part of a name); D and B must differ. D defaults to $PERCEIVER_DEVICE, else OpenCL device 0\n"
    "when there is one (device 1 when B is device 0), else cpu (without --against, that\n"
    "compares the CPU path with itself).\n"
    "\n"
    "--all compares every OpenCL device (but B) with B in turn and prints one summary table: the\n"
    "device, its implementation (platform and driver), PASS or FAIL, the stage closest to (or\n"
    "furthest past) the tolerance with its share of it, and the device's forward time. A device\n"
    "that cannot be opened or run is a FAIL row with the reason; the others still run.\n"
    "\n"
    "Input: a safetensors file like run takes; without one, text models get the Hugging Face\n"
    "test sentence (' missing.' masked) or --text, image classifiers deterministic random\n"
    "pixels of --image-size, optical flow deterministic random inputs at the config's\n"
    "train_size.\n"
    "\n"
    "For each tensor, with dev = device output and ref = reference output:\n"
    "  max|ref|      largest magnitude of the reference\n"
    "  max abs err   max |dev - ref| over all elements (and where: index, dev and ref values)\n"
    "  max rel err   max abs err / max|ref|  (relative to the tensor's scale, so that values near 0\n"
    "                do not dominate)\n"
    "  NMSE          sum (dev - ref)^2 / sum ref^2\n"
    "A tensor passes when NMSE <= 1e-9 and max rel err <= 1e-4 (change with --nmse, --max-rel)\n"
    "and every device value is finite. The first failing stage is where the error appears; later\n"
    "stages inherit it. Share of the tolerance: max(NMSE / its tolerance, max rel err / its\n"
    "tolerance); 100% is the limit.\n",
    options, CLI_MODEL | CLI_QUIET,
    "Exit status: 0 every tensor within tolerance (with --all: on every device), 1 a tensor outside\n"
    "it, a device that cannot be opened or run (or another error), 2 usage (also: D and B the\n"
    "same device).\n",
};

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

/* The share of the tolerance a stage uses: max(NMSE / its tolerance, max rel err / its tolerance);
 * infinite for a stage with non-finite device values, missing on the device or of another shape. */
static double stage_use(const stage_cmp *s, double tol_nmse, double tol_rel)
{
    if (s->missing || s->shape_mismatch || s->nonfinite)
        return INFINITY;
    return fmax(s->nmse / tol_nmse, s->max_rel / tol_rel);
}

/* One device compared with the reference. */
typedef struct dev_result {
    char device[512]; /* pcv_model_device() once it loaded */
    pcv_error err;    /* why it did not load or run (err.msg[0] set) */
    double forward_s;
    stage_cmp *cmp;
    int n, nfail, first_fail, worst;
    double worst_use; /* the largest stage_use */
    bool pass;
} dev_result;

/* Loads the model on the device spec, runs one forward pass of the inputs and compares every
 * reference output with the device's. Failures to load or run land in r->err. */
static void run_device(const char *model_dir, const pcv_model_options *base, const char *spec, const pcv_io_tensor *ins,
                       int nin, const pcv_io_tensor *rout, int nrout, double tol_nmse, double tol_rel,
                       const char *ref_desc, dev_result *r)
{
    pcv_model_options o = *base;
    pcv_model *m = NULL;
    const pcv_io_tensor *dout = NULL;
    int ndout = 0;
    o.backend.device = spec;
    r->first_fail = -1;
    r->worst_use = -1;
    if (pcv_model_load(model_dir, &o, &m, &r->err))
        goto done;
    snprintf(r->device, sizeof r->device, "%s", pcv_model_device(m));
    cli_info("verify %s on %s against %s", pcv_arch_name(pcv_model_arch(m)), r->device, ref_desc);
    double t0 = pcv_now();
    if (pcv_model_forward(m, ins, nin, &dout, &ndout, &r->err))
        goto done;
    r->forward_s = pcv_now() - t0;
    if (!(r->cmp = calloc((size_t)(nrout ? nrout : 1), sizeof *r->cmp))) {
        pcv_set_error(&r->err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    r->n = nrout;
    for (int i = 0; i < nrout; i++) {
        compare(&rout[i], pcv_io_find(dout, ndout, rout[i].name), tol_nmse, tol_rel, &r->cmp[i]);
        if (!r->cmp[i].pass && r->nfail++ == 0)
            r->first_fail = i;
        double use = stage_use(&r->cmp[i], tol_nmse, tol_rel);
        if (use > r->worst_use) {
            r->worst_use = use;
            r->worst = i;
        }
    }
    r->pass = r->nfail == 0;
done:
    pcv_model_free(m);
}

/* -1 for the CPU path, else the OpenCL index of a --device/--against value; -2 with err set
 * when it names no device. */
static int resolve_device(const char *spec, pcv_error *err)
{
    if (!*spec) {
        pcv_set_error(err, PCV_ERR_INPUT, "empty device name: give 'cpu', an OpenCL device index or part of a "
                                          "device name (see 'perceiver-cl devices')");
        return -2;
    }
    if (!strcasecmp(spec, "cpu"))
        return -1;
    int i = pcv_cl_find_device(spec, err);
    return i < 0 ? -2 : i;
}

/* The stage objects of docs/json.md's verify document. */
static void json_stages(jw *w, const dev_result *r)
{
    jw_array(w);
    for (int i = 0; i < r->n; i++) {
        const stage_cmp *s = &r->cmp[i];
        int64_t rem = s->worst, ix[PCV_MAX_DIMS];
        for (int k = s->ndim - 1; k >= 0; k--) {
            ix[k] = s->shape[k] ? rem % s->shape[k] : 0;
            rem = s->shape[k] ? rem / s->shape[k] : 0;
        }
        jw_object(w);
        jw_key(w, "name"), jw_str(w, s->name);
        jw_key(w, "shape");
        jw_array(w);
        for (int k = 0; k < s->ndim; k++)
            jw_int(w, s->shape[k]);
        jw_array_end(w);
        jw_key(w, "pass"), jw_bool(w, s->pass);
        if (s->missing || s->shape_mismatch) {
            jw_key(w, "error"), jw_str(w, s->missing ? "missing on the device" : "shape differs");
        } else { /* JSON has no inf/nan: non-finite values are written as null */
            jw_key(w, "max_abs_ref"), jw_double(w, s->max_ref);
            jw_key(w, "max_abs_err"), jw_double(w, s->max_abs);
            jw_key(w, "max_rel_err"), jw_double(w, s->max_rel);
            jw_key(w, "nmse"), jw_double(w, s->nmse);
            jw_key(w, "nonfinite"), jw_int(w, s->nonfinite);
            jw_key(w, "worst_index");
            jw_array(w);
            for (int k = 0; k < s->ndim; k++)
                jw_int(w, ix[k]);
            jw_array_end(w);
            jw_key(w, "worst_device"), jw_float(w, s->worst_dev);
            jw_key(w, "worst_reference"), jw_float(w, s->worst_ref);
        }
        jw_object_end(w);
    }
    jw_array_end(w);
}

/* The first line of a message, at most cap - 1 bytes. */
static void first_line(char *buf, size_t cap, const char *msg)
{
    size_t n = strcspn(msg, "\n");
    if (n >= cap)
        n = cap - 1;
    while (n > 0 && (msg[n - 1] == ':' || msg[n - 1] == ' '))
        n--;
    memcpy(buf, msg, n);
    buf[n] = '\0';
}

static void use_str(char *buf, size_t cap, const dev_result *r)
{
    if (r->n == 0)
        snprintf(buf, cap, "-");
    else if (isinf(r->worst_use))
        snprintf(buf, cap, "%s", r->cmp[r->worst].nonfinite ? "non-finite" : "missing");
    else if (r->worst_use < 10)
        snprintf(buf, cap, "%.3g%%", 100.0 * r->worst_use);
    else if (r->worst_use < 1e4)
        snprintf(buf, cap, "%.0f%%", 100.0 * r->worst_use);
    else
        snprintf(buf, cap, "%.2e%%", 100.0 * r->worst_use);
}

/* The opening of both JSON documents (one device, --all): the model, its architecture and size,
 * the input (docs/json.md) */
static void json_begin(jw *w, const char *model_dir, pcv_arch arch, const pcv_model *ref, const char *input_desc)
{
    jw_init(w, stdout, 2);
    jw_object(w);
    jw_path(w, "model", model_dir);
    jw_key(w, "architecture"), jw_str(w, pcv_arch_name(arch));
    jw_key(w, "parameters"), jw_int(w, pcv_model_num_params(ref));
    jw_key(w, "input"), jw_str(w, input_desc);
}

int cmd_verify(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *in_path = NULL, *text = NULL, *against = NULL;
    const char *env_device = opt.backend.device;
    long seq = 0, image_size = 0;
    double tol_nmse = VERIFY_NMSE, tol_rel = VERIFY_REL;
    bool json = false, all = false;
    cli_parse_begin(&p, &cli_cmd_verify, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case 'i': in_path = p.arg; break;
        case CLI_KEY: text = p.arg; break;
        case CLI_KEY + 1:
            if (!cli_int(&p, 1, 1 << 20, &seq))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 2:
            if (!cli_int(&p, 1, 8192, &image_size))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 3:
            if (!cli_double(&p, 1e-300, 1e300, &tol_nmse))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 4:
            if (!cli_double(&p, 1e-300, 1e300, &tol_rel))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 5: json = true; break;
        case CLI_KEY + 6: against = p.arg; break;
        case CLI_KEY + 7: all = true; break;
        default: return EXIT_USAGE;
        }
    }
    for (int i = p.first_operand; i < argc; i++) {
        if (in_path)
            return cli_usage_error("verify", "one inputs file only (got '%s' and '%s')", in_path, argv[i]);
        in_path = argv[i];
    }
    if (!model_dir)
        return cli_usage_error("verify", "--model is required");
    if (in_path && (text || seq || image_size))
        return cli_usage_error("verify", "an inputs file replaces --text, --seq and --image-size");
    bool device_given = opt.backend.device != env_device;
    if (all && device_given)
        return cli_usage_error("verify", "--all verifies every OpenCL device; it takes no --device");

    pcv_error err = {0};
    pcv_model *ref = NULL;
    pcv_safetensors *in = NULL;
    pcv_io_tensor ins[16];
    const pcv_io_tensor *rout = NULL;
    int nin = 0, nrout = 0, rc = EXIT_FAIL, ndev = 0, nres = 0;
    cli_inputs synth = {0};
    pcv_cl_device_info *devs = NULL;
    dev_result *res = NULL;
    int *index = NULL; /* the OpenCL index of each result of --all */
    char input_desc[256] = "", ref_desc[512];
    memset(ins, 0, sizeof ins);

    /* ---- which devices ---- */
    const char *ref_spec = against ? against : "cpu";
    int ref_index = resolve_device(ref_spec, &err);
    if (ref_index == -2) {
        char msg[sizeof err.msg];
        snprintf(msg, sizeof msg, "%s", err.msg);
        pcv_set_error(&err, PCV_ERR_DEVICE, "the reference device (--against '%s'): %s", ref_spec, msg);
        goto done;
    }
    if ((ndev = pcv_cl_list_devices(&devs, &err)) < 0) {
        if (all)
            goto done;
        ndev = 0; /* a broken OpenCL runtime does not stop a verify of the CPU path */
        memset(&err, 0, sizeof err);
    }
    if (all) {
        if (ndev == 0) {
            pcv_set_error(&err, PCV_ERR_DEVICE, "verify --all: no OpenCL device found (see 'perceiver-cl devices')");
            goto done;
        }
        if (ndev == 1 && ref_index == 0) {
            pcv_set_error(&err, PCV_ERR_DEVICE,
                          "verify --all --against %s: the reference is the only OpenCL device; nothing to compare",
                          ref_spec);
            goto done;
        }
    } else {
        if (!opt.backend.device) { /* the first OpenCL device that is not the reference ('' is an error) */
            opt.backend.device = "cpu";
            static char first[16];
            for (int i = 0; i < ndev; i++)
                if (i != ref_index) {
                    snprintf(first, sizeof first, "%d", i);
                    opt.backend.device = first;
                    break;
                }
        }
        int dev_index = resolve_device(opt.backend.device, &err);
        if (dev_index == -2)
            goto done;
        if (against && dev_index == ref_index) {
            const char *from = device_given ? "--device" : "$PERCEIVER_DEVICE";
            char dev_spec[64];
            snprintf(dev_spec, sizeof dev_spec, "%s", opt.backend.device);
            free(devs);
            if (dev_index < 0)
                return cli_usage_error("verify", "%s %s and --against %s are both the CPU path; verify compares two "
                                       "different devices", from, dev_spec, against);
            return cli_usage_error("verify", "%s %s and --against %s are the same device (OpenCL device %d); verify "
                                   "compares two different devices", from, dev_spec, against, dev_index);
        }
    }

    /* ---- the reference and the input ---- */
    opt.capture = true;
    pcv_model_options ropt = opt;
    ropt.backend.device = ref_spec;
    if (pcv_model_load(model_dir, &ropt, &ref, &err))
        goto done;
    snprintf(ref_desc, sizeof ref_desc, "%s", pcv_model_device(ref));
    pcv_arch arch = pcv_model_arch(ref);
    if (in_path) {
        if (cli_check_safetensors(in_path, "the inputs", &err) || pcv_st_open(in_path, &in, &err))
            goto done;
        if (pcv_st_count(in) > 16) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s: %d tensors; a model takes at most 16 inputs", in_path, pcv_st_count(in));
            goto done;
        }
        if (pcv_io_from_safetensors(in, ins, &err))
            goto done;
        nin = pcv_st_count(in);
        snprintf(input_desc, sizeof input_desc, "%s", in_path);
    } else {
        if (cli_make_inputs(ref, 1, seq, image_size, text, &synth, &err))
            goto done;
        memcpy(ins, synth.t, sizeof synth.t);
        nin = synth.n;
        snprintf(input_desc, sizeof input_desc, "%s", synth.desc);
    }
    double t0 = pcv_now();
    if (pcv_model_forward(ref, ins, nin, &rout, &nrout, &err))
        goto done;
    double t_ref = pcv_now() - t0;

    /* ---- the device, or every OpenCL device ---- */
    if (!(res = calloc((size_t)(all ? ndev : 1), sizeof *res))) {
        pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    if (!(index = calloc((size_t)(all ? ndev : 1), sizeof *index))) {
        pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    if (!all) {
        run_device(model_dir, &opt, opt.backend.device, ins, nin, rout, nrout, tol_nmse, tol_rel, ref_desc, &res[0]);
        nres = 1;
        if (res[0].err.msg[0]) {
            err = res[0].err;
            goto done;
        }
    } else {
        for (int i = 0; i < ndev; i++) {
            if (i == ref_index)
                continue;
            char spec[16];
            snprintf(spec, sizeof spec, "%d", i);
            index[nres] = i;
            run_device(model_dir, &opt, spec, ins, nin, rout, nrout, tol_nmse, tol_rel, ref_desc, &res[nres]);
            if (res[nres].err.msg[0]) /* named, with the reason; the other devices still run */
                fprintf(stderr, "perceiver-cl: error: OpenCL device %d '%s': %s\n", i, devs[i].name,
                        res[nres].err.msg);
            nres++;
        }
    }
    int npass = 0;
    for (int i = 0; i < nres; i++)
        npass += res[i].pass;

    if (!all) {
        const dev_result *r = &res[0];
        const stage_cmp *cmp = r->cmp;
        if (json) {
            jw w;
            json_begin(&w, model_dir, arch, ref, input_desc);
            jw_key(&w, "device"), jw_str(&w, r->device);
            jw_key(&w, "reference"), jw_str(&w, ref_desc);
            jw_key(&w, "metric"), jw_str(&w, "max_rel = max|dev-ref| / max|ref|; nmse = sum (dev-ref)^2 / sum ref^2");
            jw_key(&w, "device_forward_s"), jw_double(&w, r->forward_s);
            jw_key(&w, "reference_forward_s"), jw_double(&w, t_ref);
            jw_key(&w, "tolerance");
            jw_object(&w);
            jw_key(&w, "nmse"), jw_double(&w, tol_nmse);
            jw_key(&w, "max_rel"), jw_double(&w, tol_rel);
            jw_object_end(&w);
            jw_key(&w, "stages");
            json_stages(&w, r);
            jw_key(&w, "pass"), jw_bool(&w, r->nfail == 0);
            jw_key(&w, "failed"), jw_int(&w, r->nfail);
            jw_key(&w, "first_failure"), jw_str(&w, r->first_fail >= 0 ? cmp[r->first_fail].name : NULL);
            jw_object_end(&w);
            jw_end(&w);
        } else {
            printf("model      %s (%s, %lld parameters)\n", model_dir, pcv_arch_name(arch),
                   (long long)pcv_model_num_params(ref));
            printf("input      %s\n", input_desc);
            printf("device     %s\n", r->device);
            printf("reference  %s\n", ref_desc);
            printf("forward    device %.3f s, reference %.3f s (first pass of each, after loading)\n", r->forward_s,
                   t_ref);
            printf("tolerance  NMSE <= %g and max rel err <= %g (max rel err = max|dev - ref| / max|ref|)\n\n",
                   tol_nmse, tol_rel);
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
                printf("%-3d %-24s %-16s %10.4g %11.3e %11.3e %10.3e  %-16s %-25s %s", i + 1, s->name, shp,
                       s->max_ref, s->max_abs, s->max_rel, s->nmse, at, vals, s->pass ? "PASS" : "FAIL");
                if (s->nonfinite)
                    printf(" (%lld non-finite device values)", (long long)s->nonfinite);
                printf("\n");
            }
            printf("\n");
            if (r->nfail == 0)
                printf("PASS: %d of %d tensors within tolerance; closest to it: %s at %.2g%% of the tolerance\n",
                       nrout, nrout, cmp[r->worst].name, 100.0 * r->worst_use);
            else
                printf("FAIL: %d of %d tensors outside tolerance; the error first appears in %s (later stages "
                       "inherit it)\n",
                       r->nfail, nrout, cmp[r->first_fail].name);
        }
    } else if (json) {
        jw w;
        json_begin(&w, model_dir, arch, ref, input_desc);
        jw_key(&w, "reference"), jw_str(&w, ref_desc);
        jw_key(&w, "reference_forward_s"), jw_double(&w, t_ref);
        jw_key(&w, "metric"), jw_str(&w, "max_rel = max|dev-ref| / max|ref|; nmse = sum (dev-ref)^2 / sum ref^2; "
                                         "of_tolerance = max(nmse / tolerance.nmse, max_rel / tolerance.max_rel)");
        jw_key(&w, "tolerance");
        jw_object(&w);
        jw_key(&w, "nmse"), jw_double(&w, tol_nmse);
        jw_key(&w, "max_rel"), jw_double(&w, tol_rel);
        jw_object_end(&w);
        jw_key(&w, "devices");
        jw_array(&w);
        for (int i = 0; i < nres; i++) {
            const dev_result *r = &res[i];
            const pcv_cl_device_info *d = &devs[index[i]];
            bool ran = !r->err.msg[0];
            jw_object(&w);
            jw_cl_device(&w, d);
            jw_key(&w, "pass"), jw_bool(&w, r->pass);
            jw_key(&w, "error"), jw_str(&w, ran ? NULL : r->err.msg);
            jw_key(&w, "forward_s");
            if (ran)
                jw_double(&w, r->forward_s);
            else
                jw_null(&w);
            jw_key(&w, "failed"), jw_int(&w, r->nfail);
            jw_key(&w, "first_failure"), jw_str(&w, r->first_fail >= 0 ? r->cmp[r->first_fail].name : NULL);
            jw_key(&w, "worst_stage"), jw_str(&w, r->n ? r->cmp[r->worst].name : NULL);
            jw_key(&w, "worst_of_tolerance"); /* null when the device did not run, or a value is not finite */
            if (r->n)
                jw_double(&w, r->worst_use);
            else
                jw_null(&w);
            jw_key(&w, "stages");
            json_stages(&w, r);
            jw_object_end(&w);
        }
        jw_array_end(&w);
        jw_key(&w, "pass"), jw_bool(&w, npass == nres);
        jw_key(&w, "devices_passed"), jw_int(&w, npass);
        jw_key(&w, "devices_failed"), jw_int(&w, nres - npass);
        jw_object_end(&w);
        jw_end(&w);
    } else {
        printf("model      %s (%s, %lld parameters)\n", model_dir, pcv_arch_name(arch),
               (long long)pcv_model_num_params(ref));
        printf("input      %s\n", input_desc);
        printf("reference  %s, forward %.3f s\n", ref_desc, t_ref);
        printf("tolerance  NMSE <= %g and max rel err <= %g (max rel err = max|dev - ref| / max|ref|)\n\n", tol_nmse,
               tol_rel);
        int wn = 6, wi = 14, ws = 11;
        char impl[300];
        for (int i = 0; i < nres; i++) {
            const pcv_cl_device_info *d = &devs[index[i]];
            int l = (int)strlen(d->name);
            wn = l > wn ? l : wn;
            l = snprintf(impl, sizeof impl, "%s %s", d->platform, d->driver);
            wi = l > wi ? l : wi;
            l = res[i].n ? (int)strlen(res[i].cmp[res[i].worst].name) : 0;
            ws = l > ws ? l : ws;
        }
        printf("%-3s %-*s %-*s %-6s %-*s %12s %9s\n", "#", wn, "device", wi, "implementation", "result", ws,
               "worst stage", "of tolerance", "forward s");
        for (int i = 0; i < nres; i++) {
            const dev_result *r = &res[i];
            const pcv_cl_device_info *d = &devs[index[i]];
            snprintf(impl, sizeof impl, "%s %s", d->platform, d->driver);
            printf("%-3d %-*s %-*s %-6s ", d->index, wn, d->name, wi, impl, r->pass ? "PASS" : "FAIL");
            if (r->err.msg[0]) {
                char line[200];
                first_line(line, sizeof line, r->err.msg);
                printf("did not run: %s\n", line);
                continue;
            }
            char use[32];
            use_str(use, sizeof use, r);
            printf("%-*s %12s %9.3f\n", ws, r->n ? r->cmp[r->worst].name : "-", use, r->forward_s);
        }
        printf("\n");
        if (npass == nres)
            printf("PASS: %d of %d OpenCL devices within tolerance of the reference on every stage\n", npass, nres);
        else
            printf("FAIL: %d of %d OpenCL devices failed\n", nres - npass, nres);
        for (int i = 0; i < nres; i++) {
            const dev_result *r = &res[i];
            if (!r->err.msg[0] && r->nfail)
                printf("  device %d: %d of %d tensors outside tolerance; the error first appears in %s (verify "
                       "--device %d%s%s shows every stage)\n",
                       index[i], r->nfail, r->n, r->cmp[r->first_fail].name, index[i], against ? " --against " : "",
                       against ? against : "");
            else if (r->err.msg[0])
                printf("  device %d: did not run (the error is on standard error)\n", index[i]);
        }
    }
    rc = npass == nres ? EXIT_OK : EXIT_FAIL;
done:
    if (rc && err.msg[0])
        cli_fail(&err);
    for (int i = 0; i < nres; i++)
        free(res[i].cmp);
    free(res);
    free(index);
    free(devs);
    cli_inputs_free(&synth);
    pcv_st_close(in);
    pcv_model_free(ref);
    return rc;
}
