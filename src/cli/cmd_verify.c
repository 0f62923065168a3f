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
    {0},
};

const cli_command cli_cmd_verify = {
    "verify", "--model DIR [--device D] [INPUTS.safetensors] [options]",
    "Loads the model twice, on device D and on the CPU reference path, runs one forward pass of\n"
    "the same input on each, and compares every stage output in order (stage.preprocess,\n"
    "stage.encoder.cross, stage.encoder.self.<k>, stage.decoder, logits, last_hidden_state).\n"
    "D defaults to $PERCEIVER_DEVICE, else OpenCL device 0 when there is one, else cpu (which\n"
    "then compares the CPU path with itself).\n"
    "\n"
    "Input: a safetensors file like run takes; without one, text models get the Hugging Face\n"
    "test sentence (' missing.' masked) or --text, image classifiers deterministic random\n"
    "pixels of --image-size, optical flow deterministic random inputs at the config's\n"
    "train_size.\n"
    "\n"
    "For each tensor, with dev = device output and ref = CPU output:\n"
    "  max|ref|      largest magnitude of the reference\n"
    "  max abs err   max |dev - ref| over all elements (and where: index, dev and ref values)\n"
    "  max rel err   max abs err / max|ref|  (relative to the tensor's scale, so that values near 0\n"
    "                do not dominate)\n"
    "  NMSE          sum (dev - ref)^2 / sum ref^2\n"
    "A tensor passes when NMSE <= 1e-9 and max rel err <= 1e-4 (change with --nmse, --max-rel)\n"
    "and every device value is finite. The first failing stage is where the error appears; later\n"
    "stages inherit it.\n",
    options, CLI_MODEL | CLI_QUIET,
    "Exit status: 0 every tensor within tolerance, 1 a tensor outside it (or an error), 2 usage.\n",
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

int cmd_verify(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *in_path = NULL, *text = NULL;
    long seq = 0, image_size = 0;
    double tol_nmse = VERIFY_NMSE, tol_rel = VERIFY_REL;
    bool json = false;
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
    if (!opt.backend.device) { /* the first OpenCL device, if any ('' is an error: issue 12) */
        pcv_cl_device_info *devs = NULL;
        pcv_error e2 = {0};
        int n = pcv_cl_list_devices(&devs, &e2);
        free(devs);
        opt.backend.device = n > 0 ? "0" : "cpu";
    }

    pcv_error err = {0};
    pcv_model *dev = NULL, *ref = NULL;
    pcv_safetensors *in = NULL;
    pcv_io_tensor ins[16];
    const pcv_io_tensor *dout = NULL, *rout = NULL;
    int nin = 0, ndout = 0, nrout = 0, rc = EXIT_FAIL;
    cli_inputs synth = {0};
    stage_cmp *cmp = NULL;
    char input_desc[256] = "";
    memset(ins, 0, sizeof ins);

    opt.capture = true;
    pcv_model_options ropt = opt;
    ropt.backend.device = "cpu";
    if (pcv_model_load(model_dir, &opt, &dev, &err))
        goto done;
    cli_info("verify %s on %s", pcv_arch_name(pcv_model_arch(dev)), pcv_model_device(dev));
    if (pcv_model_load(model_dir, &ropt, &ref, &err))
        goto done;
    pcv_arch arch = pcv_model_arch(ref);

    /* ---- input ---- */
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
        jw w;
        jw_init(&w, stdout, 2);
        jw_object(&w);
        jw_path(&w, "model", model_dir);
        jw_key(&w, "architecture"), jw_str(&w, pcv_arch_name(arch));
        jw_key(&w, "parameters"), jw_int(&w, pcv_model_num_params(ref));
        jw_key(&w, "input"), jw_str(&w, input_desc);
        jw_key(&w, "device"), jw_str(&w, pcv_model_device(dev));
        jw_key(&w, "reference"), jw_str(&w, pcv_model_device(ref));
        jw_key(&w, "metric"), jw_str(&w, "max_rel = max|dev-ref| / max|ref|; nmse = sum (dev-ref)^2 / sum ref^2");
        jw_key(&w, "device_forward_s"), jw_double(&w, t_dev);
        jw_key(&w, "reference_forward_s"), jw_double(&w, t_ref);
        jw_key(&w, "tolerance");
        jw_object(&w);
        jw_key(&w, "nmse"), jw_double(&w, tol_nmse);
        jw_key(&w, "max_rel"), jw_double(&w, tol_rel);
        jw_object_end(&w);
        jw_key(&w, "stages");
        jw_array(&w);
        for (int i = 0; i < nrout; i++) {
            const stage_cmp *s = &cmp[i];
            int64_t rem = s->worst, ix[PCV_MAX_DIMS];
            for (int k = s->ndim - 1; k >= 0; k--) {
                ix[k] = s->shape[k] ? rem % s->shape[k] : 0;
                rem = s->shape[k] ? rem / s->shape[k] : 0;
            }
            jw_object(&w);
            jw_key(&w, "name"), jw_str(&w, s->name);
            jw_key(&w, "shape");
            jw_array(&w);
            for (int k = 0; k < s->ndim; k++)
                jw_int(&w, s->shape[k]);
            jw_array_end(&w);
            jw_key(&w, "pass"), jw_bool(&w, s->pass);
            if (s->missing || s->shape_mismatch) {
                jw_key(&w, "error"), jw_str(&w, s->missing ? "missing on the device" : "shape differs");
            } else { /* JSON has no inf/nan: non-finite values are written as null */
                jw_key(&w, "max_abs_ref"), jw_double(&w, s->max_ref);
                jw_key(&w, "max_abs_err"), jw_double(&w, s->max_abs);
                jw_key(&w, "max_rel_err"), jw_double(&w, s->max_rel);
                jw_key(&w, "nmse"), jw_double(&w, s->nmse);
                jw_key(&w, "nonfinite"), jw_int(&w, s->nonfinite);
                jw_key(&w, "worst_index");
                jw_array(&w);
                for (int k = 0; k < s->ndim; k++)
                    jw_int(&w, ix[k]);
                jw_array_end(&w);
                jw_key(&w, "worst_device"), jw_float(&w, s->worst_dev);
                jw_key(&w, "worst_reference"), jw_float(&w, s->worst_ref);
            }
            jw_object_end(&w);
        }
        jw_array_end(&w);
        jw_key(&w, "pass"), jw_bool(&w, nfail == 0);
        jw_key(&w, "failed"), jw_int(&w, nfail);
        jw_key(&w, "first_failure"), jw_str(&w, first_fail >= 0 ? cmp[first_fail].name : NULL);
        jw_object_end(&w);
        jw_end(&w);
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
    cli_inputs_free(&synth);
    pcv_st_close(in);
    pcv_model_free(dev);
    pcv_model_free(ref);
    return rc;
}
