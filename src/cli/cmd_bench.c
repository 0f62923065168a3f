/* perceiver-cl bench: forward-pass speed, like llama-bench: every combination of the swept sizes,
 * mean and standard deviation over repetitions, GFLOP/s and the share of the device's SGEMM
 * peak (measured here), memory and allocations; markdown, CSV or JSON. */
#include "cli/cli.h"
#include "cli/dispatch.h"
#include "cli/jsonw.h"
#include "util/error.h"

#include "backend/backend.h"
#include "perceiver/presets.h"
#include "util/clock.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { MAX_SWEEP = 32, MAX_STAGES = 16 };

static const cli_option options[] = {
    {"model", 'm', "DIR", "model folder or checkpoint"},
    {"preset", CLI_KEY, "NAME", "built-in config with random weights (see --list-presets)"},
    {"config", CLI_KEY + 1, "FILE", "a config.json, random weights"},
    {"batch", 'b', "LIST", "batch sizes, comma-separated (default 1)"},
    {"seq", CLI_KEY + 2, "LIST", "text models: sequence lengths (default: the model's\n"
                                 "max_position_embeddings)"},
    {"image-size", CLI_KEY + 3, "LIST", "image classifiers: input sizes (default: the processor's\n"
                                        "output, 224; the learned-position model takes only its\n"
                                        "config's image_size)"},
    {"repeat", 'r', "N", "timed forward passes per test, after one warm-up (default 5)"},
    {"output", 'o', "FMT", "md (default), csv or json"},
    {"json", CLI_KEY + 4, NULL, "the same as --output json"},
    {"stages", CLI_KEY + 5, NULL, "md and csv: also the time of each stage (json has them always)"},
    {"list-presets", CLI_KEY + 6, NULL, "list the built-in configs"},
    {0},
};

const cli_command cli_cmd_bench = {
    "bench", "(--model DIR | --preset NAME | --config FILE) [options]",
    "Times forward passes of one model, for every combination of --batch and --seq (text models)\n"
    "or --image-size (image classifiers); optical flow runs at the config's train_size, the\n"
    "multimodal autoencoder at its config's video and audio sizes. Each test\n"
    "is one untimed warm-up (it plans the memory) and --repeat timed passes: the mean and the\n"
    "standard deviation of the forward time, items/s, the matrix-multiply GFLOP of one pass,\n"
    "GFLOP/s, and the share of the device's peak, which is measured first by timing one large\n"
    "SGEMM on the same device (--stages: each stage's rate and share of it). Memory: the activation\n"
    "arena, everything the device holds, the process's peak resident set so far, and the\n"
    "allocations of the last pass (0 once planned). Text models get the Hugging Face test\n"
    "sentence with ' missing.' masked, padded to the length; image models, optical flow and the\n"
    "autoencoder deterministic random inputs. With --preset or --config the weights are random.\n"
    "\n"
    "With several devices (--device 0,1 or all), the table and the peak are the first device's,\n"
    "and then every test runs on all the devices at once (a model and a thread per device, one\n"
    "warm-up and --repeat passes each): each device's items/s and the total items/s of all of\n"
    "them together (items of all devices / wall-clock time); with --json, \"devices\" and\n"
    "\"total_items_per_s\" in every result.\n",
    options, CLI_MODEL | CLI_QUIET | CLI_DEVICES,
    "Examples:\n"
    "  perceiver-cl bench --preset language-perceiver --batch 1,2,4 --seq 512,2048\n"
    "  perceiver-cl bench -m vision-perceiver-fourier --image-size 224 -o csv\n",
};

static int parse_list(cli_parser *p, long lo, long hi, long *out, int *n)
{
    *n = 0;
    const char *s = p->arg;
    while (s && *s && *n < MAX_SWEEP) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > hi || (*end && *end != ','))
            break;
        out[(*n)++] = v;
        s = *end ? end + 1 : end;
        if (!*s)
            return 1;
    }
    cli_usage_error(p->cmd->name, "--%s needs numbers from %ld to %ld separated by commas (at most %d), not '%s'",
                    p->cur->name, lo, hi, MAX_SWEEP, p->arg);
    return 0;
}

/* The device's SGEMM peak: C = A B^T on n x n matrices, n doubled from 256 until one run takes
 * 50 ms (or 4096); the best rate of 3 runs at any size (a busy machine only lowers it). */
static double measure_peak(pcv_backend *be, int64_t *n_out, pcv_error *err)
{
    double peak = 0;
    for (int64_t n = 256; n <= 4096; n *= 2) {
        double best = 0;
        size_t bytes = (size_t)(n * n) * sizeof(float);
        pcv_buffer *a = pcv_backend_alloc(be, bytes, err), *b = pcv_backend_alloc(be, bytes, err),
                   *c = pcv_backend_alloc(be, bytes, err);
        float *h = malloc(bytes);
        bool ok = a && b && c && h;
        for (int64_t i = 0; ok && i < n * n; i++)
            h[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
        ok = ok && !pcv_backend_upload(be, a, 0, h, bytes, err) && !pcv_backend_upload(be, b, 0, h, bytes, err);
        pcv_gemm_args g = {.trans_a = false, .trans_b = true, .m = n, .n = n, .k = n, .batch = 1, .alpha = 1,
                           .beta = 0, .a = a, .lda = n, .b = b, .ldb = n, .c = c, .ldc = n};
        double t = 0;
        for (int r = -1; ok && r < 3; r++) {
            double t0 = pcv_now();
            ok = !pcv_backend_gemm(be, &g, err) && !pcv_backend_synchronize(be, err);
            t = pcv_now() - t0;
            if (ok && r >= 0 && (best == 0 || 2.0 * n * n * n / t > best))
                best = 2.0 * (double)n * n * n / t;
        }
        free(h);
        if (a)
            pcv_backend_release(be, a);
        if (b)
            pcv_backend_release(be, b);
        if (c)
            pcv_backend_release(be, c);
        if (!ok)
            return -1;
        if (best > peak) {
            peak = best;
            *n_out = n;
        }
        if (t >= 0.05)
            break;
    }
    return peak / 1e9;
}

typedef struct result {
    long batch, size; /* size: tokens, pixels per side, or 0 (flow) */
    char input[160];
    int64_t shape[PCV_MAX_DIMS];
    int ndim;
    double *times;
    int repeat;
    double mean, sd, best, flops;
    pcv_memory_stats mem;
    long long peak_rss; /* the process's resident-set high-water mark after the test, bytes */
    pcv_stage_stats stages[MAX_STAGES];
    int nstages;
    /* several devices: the same test on all of them at once */
    double dev_rate[CLI_MAX_DEVICES], dev_seconds[CLI_MAX_DEVICES], total_rate, wall;
} result;

/* a CSV text field and its comma: quoted when it holds a comma, a quote or a line break */
static void csv_field(const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        printf("%s,", s);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    printf("\",");
}

static void stats(const double *x, int n, double *mean, double *sd)
{
    double s = 0, q = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++)
        q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* items/s and GFLOP/s of each run, for their own mean and standard deviation */
static void rate_stats(const result *r, double per_run, double *mean, double *sd)
{
    double v[1024];
    int n = r->repeat < 1024 ? r->repeat : 1024;
    for (int i = 0; i < n; i++)
        v[i] = per_run / r->times[i];
    stats(v, n, mean, sd);
}

static int run_test(pcv_model *m, long batch, long size, int repeat, result *r, pcv_error *err)
{
    memset(r, 0, sizeof *r);
    r->batch = batch;
    r->size = size;
    r->repeat = repeat;
    pcv_arch arch = pcv_model_arch(m);
    bool text = arch == PCV_ARCH_MASKED_LM || arch == PCV_ARCH_SEQ_CLASSIFIER;
    cli_inputs in;
    if (cli_make_inputs(m, batch, text ? size : 0, text ? 0 : size, NULL, &in, err))
        return err->code;
    r->ndim = in.t[0].ndim;
    memcpy(r->shape, in.t[0].shape, sizeof r->shape);
    if (text)
        snprintf(r->input, sizeof r->input, "%lld tokens", (long long)in.t[0].shape[1]);
    else if (arch == PCV_ARCH_MULTIMODAL)
        snprintf(r->input, sizeof r->input, "%lldx%lldx%lld video + %lld audio samples", (long long)in.t[0].shape[1],
                 (long long)in.t[0].shape[3], (long long)in.t[0].shape[4], (long long)in.t[1].shape[1]);
    else if (arch == PCV_ARCH_OPTICAL_FLOW)
        snprintf(r->input, sizeof r->input, "2x%lldx%lld frames", (long long)in.t[0].shape[3],
                 (long long)in.t[0].shape[4]);
    else
        snprintf(r->input, sizeof r->input, "%lldx%lld pixels", (long long)in.t[0].shape[2],
                 (long long)in.t[0].shape[3]);
    r->times = calloc((size_t)repeat, sizeof *r->times);
    int rc = r->times ? 0 : pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = -1; !rc && i < repeat; i++) {
        cli_progress_context("bench: batch %ld, %s, run %d of %d", batch, r->input, i + 2, repeat + 1);
        const pcv_io_tensor *outs;
        int nout;
        double t = pcv_now();
        rc = pcv_model_forward(m, in.t, in.n, &outs, &nout, err);
        t = pcv_now() - t;
        if (rc || i < 0)
            continue; /* the warm-up plans the memory */
        r->times[i] = t;
        if (i == 0 || t < r->best) {
            r->best = t;
            r->nstages = pcv_model_stats(m, r->stages, MAX_STAGES);
        }
    }
    if (!rc) {
        stats(r->times, repeat, &r->mean, &r->sd);
        for (int s = 0; s < r->nstages; s++)
            r->flops += r->stages[s].flops;
        pcv_model_memory(m, &r->mem);
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            r->peak_rss = (long long)ru.ru_maxrss * 1024; /* kilobytes on Linux */
    }
    cli_inputs_free(&in);
    return rc;
}

/* ---- several devices: one test on all of them at once ---------------------------------------- */

typedef struct dev_start {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
    bool go;
} dev_start;

typedef struct dev_run {
    pcv_model *m;
    long batch, size;
    int repeat;
    dev_start *start;
    double t0, t1; /* the timed passes: from the common start to this device's end */
    int rc;
    pcv_error err;
} dev_run;

static void *dev_main(void *arg)
{
    dev_run *d = arg;
    cli_progress_thread_silent(true);
    pcv_arch arch = pcv_model_arch(d->m);
    bool text = arch == PCV_ARCH_MASKED_LM || arch == PCV_ARCH_SEQ_CLASSIFIER;
    cli_inputs in;
    const pcv_io_tensor *outs;
    int nout;
    d->rc = cli_make_inputs(d->m, d->batch, text ? d->size : 0, text ? 0 : d->size, NULL, &in, &d->err);
    bool have_in = d->rc == 0;
    if (!d->rc) /* the warm-up, before the common start */
        d->rc = pcv_model_forward(d->m, in.t, in.n, &outs, &nout, &d->err);
    pthread_mutex_lock(&d->start->mu);
    d->start->ready++;
    pthread_cond_broadcast(&d->start->cv);
    while (!d->start->go)
        pthread_cond_wait(&d->start->cv, &d->start->mu);
    pthread_mutex_unlock(&d->start->mu);
    d->t0 = pcv_now();
    for (int i = 0; !d->rc && i < d->repeat; i++)
        d->rc = pcv_model_forward(d->m, in.t, in.n, &outs, &nout, &d->err);
    d->t1 = pcv_now();
    if (have_in)
        cli_inputs_free(&in);
    return NULL;
}

/* r's test on every model at once, all starting together after their warm-ups: each device's
 * items/s, and the items of all of them / the wall-clock time from the start to the last end */
static int run_devices(pcv_model *const *ms, int n, result *r, pcv_error *err)
{
    dev_run d[CLI_MAX_DEVICES];
    pthread_t th[CLI_MAX_DEVICES];
    dev_start start = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    cli_progress(true, "bench: batch %ld, %s, on %d devices at once", r->batch, r->input, n);
    int started = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        d[i] = (dev_run){.m = ms[i], .batch = r->batch, .size = r->size, .repeat = r->repeat, .start = &start};
        if (pthread_create(&th[i], NULL, dev_main, &d[i]) != 0) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "cannot start a thread for %s", pcv_model_device(ms[i]));
            break;
        }
        started++;
    }
    pthread_mutex_lock(&start.mu);
    while (start.ready < started)
        pthread_cond_wait(&start.cv, &start.mu);
    start.go = true;
    pthread_cond_broadcast(&start.cv);
    pthread_mutex_unlock(&start.mu);
    double t0 = 0, t1 = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        if (d[i].rc && !rc) {
            rc = d[i].rc;
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", d[i].err.msg);
            pcv_set_error(err, d[i].err.code, "%s (on %s)", msg, pcv_model_device(ms[i]));
        }
        t0 = i == 0 || d[i].t0 < t0 ? d[i].t0 : t0;
        t1 = i == 0 || d[i].t1 > t1 ? d[i].t1 : t1;
    }
    if (rc)
        return rc;
    double items = (double)r->batch * r->repeat;
    for (int i = 0; i < n; i++) {
        r->dev_seconds[i] = d[i].t1 - d[i].t0;
        r->dev_rate[i] = items / r->dev_seconds[i];
    }
    r->wall = t1 - t0;
    r->total_rate = items * n / r->wall;
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    opt.profile = true;
    const char *model_dir = NULL, *preset = NULL, *config = NULL, *fmt = "md";
    long batches[MAX_SWEEP] = {1}, sizes[MAX_SWEEP] = {0}, repeat = 5;
    int nb = 1, ns = 0;
    bool seq_given = false, size_given = false, show_stages = false;
    cli_parse_begin(&p, &cli_cmd_bench, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case CLI_KEY: preset = p.arg; break;
        case CLI_KEY + 1: config = p.arg; break;
        case 'b':
            if (!parse_list(&p, 1, 4096, batches, &nb))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 2:
            if (!parse_list(&p, 1, 1 << 20, sizes, &ns))
                return EXIT_USAGE;
            seq_given = true;
            break;
        case CLI_KEY + 3:
            if (!parse_list(&p, 1, 8192, sizes, &ns))
                return EXIT_USAGE;
            size_given = true;
            break;
        case 'r':
            if (!cli_int(&p, 1, 1000, &repeat))
                return EXIT_USAGE;
            break;
        case 'o':
            if (strcmp(p.arg, "md") && strcmp(p.arg, "csv") && strcmp(p.arg, "json"))
                return cli_usage_error("bench", "--output must be md, csv or json, not '%s'", p.arg);
            fmt = p.arg;
            break;
        case CLI_KEY + 4: fmt = "json"; break;
        case CLI_KEY + 5: show_stages = true; break;
        case CLI_KEY + 6:
            for (int i = 0; pcv_preset_name(i); i++)
                printf("%-22s %s\n", pcv_preset_name(i), pcv_preset_description(i));
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand < argc)
        return cli_usage_error("bench", "unexpected argument '%s'", argv[p.first_operand]);
    if (!!model_dir + !!preset + !!config != 1)
        return cli_usage_error("bench", "give exactly one of --model, --preset, --config");
    if (seq_given && size_given)
        return cli_usage_error("bench", "--seq is for text models, --image-size for image classifiers: not both");

    pcv_error err = {0};
    pcv_config cfg;
    pcv_model *m = NULL;
    pcv_model *ms[CLI_MAX_DEVICES] = {0}; /* ms[0] = m: one model per device of a list */
    pcv_backend *be = NULL;
    result *res = NULL;
    int nres = 0, rc = EXIT_FAIL, ndev = 0;
    char **devlist = NULL;
    pcv_config_init(&cfg);
    const char *name = model_dir ? model_dir : preset ? preset : config;

    /* a device list (0,1 / all): the table and the peak are the first device's */
    if (cli_device_list(opt.backend.device, &devlist, &ndev, &err))
        goto done;
    if (opt.backend.device)
        opt.backend.device = devlist[0];

    /* the device's peak, on a backend of its own */
    int64_t peak_n = 0;
    if (!(be = pcv_backend_open(&opt.backend, &err)))
        goto done;
    cli_progress(true, "bench: measuring the SGEMM peak of %s", pcv_backend_device(be));
    double peak = measure_peak(be, &peak_n, &err);
    if (peak < 0)
        goto done;
    char driver[256];
    snprintf(driver, sizeof driver, "%s", pcv_backend_driver(be));
    pcv_backend_close(be);
    be = NULL;

    double t0 = pcv_now();
    if (model_dir) {
        if (pcv_model_load(model_dir, &opt, &m, &err))
            goto done;
    } else {
        if (preset && pcv_config_preset(preset, &cfg, &err))
            goto done;
        if (config && pcv_config_load(&cfg, config, &err))
            goto done;
        if (pcv_model_create_random(&cfg, 1, &opt, &m, &err))
            goto done;
    }
    double load_s = pcv_now() - t0;
    ms[0] = m;
    for (int i = 1; i < ndev; i++) {
        pcv_model_options o = opt;
        o.backend.device = devlist[i];
        if (model_dir ? pcv_model_load(model_dir, &o, &ms[i], &err) : pcv_model_create_random(&cfg, 1, &o, &ms[i], &err))
            goto done;
        for (int j = 0; j < i; j++)
            if (!strcmp(pcv_model_device(ms[j]), pcv_model_device(ms[i]))) {
                pcv_set_error(&err, PCV_ERR_INPUT, "--device: '%s' and '%s' are the same device (%s); list each device "
                              "once", devlist[j], devlist[i], pcv_model_device(ms[i]));
                goto done;
            }
    }
    pcv_arch arch = pcv_model_arch(m);
    bool text = arch == PCV_ARCH_MASKED_LM || arch == PCV_ARCH_SEQ_CLASSIFIER;
    if (seq_given && !text) {
        pcv_set_error(&err, PCV_ERR_INPUT, "--seq is for text models; this is %s (--image-size for image "
                      "classifiers)", pcv_arch_name(arch));
        goto done;
    }
    if (size_given && text) {
        pcv_set_error(&err, PCV_ERR_INPUT, "--image-size is for image classifiers; this is %s (--seq for text "
                      "models)", pcv_arch_name(arch));
        goto done;
    }
    if (ns == 0) /* the default size: each kind's own */
        ns = 1;
    cli_info("%s on %s, peak SGEMM %.1f GFLOP/s (n=%lld)", pcv_arch_name(arch), pcv_model_device(m), peak,
             (long long)peak_n);
    for (int i = 1; i < ndev; i++)
        cli_info("and on %s (all devices at once after each test)", pcv_model_device(ms[i]));
    res = calloc((size_t)(nb * ns), sizeof *res);
    if (!res) {
        pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < ns; j++, nres++)
            if (run_test(m, batches[i], sizes[j], (int)repeat, &res[nres], &err) ||
                (ndev > 1 && run_devices(ms, ndev, &res[nres], &err)))
                goto done;
    cli_progress_clear();

    const char *dev = pcv_model_device(m);
    long long params = pcv_model_num_params(m);
    if (!strcmp(fmt, "json")) {
        jw w;
        jw_init(&w, stdout, 2);
        jw_object(&w);
        jw_key(&w, "version"), jw_str(&w, pcv_version());
        jw_key(&w, "git_commit"), jw_str(&w, pcv_cli_git_commit);
        jw_path(&w, "model", name);
        jw_key(&w, "architecture"), jw_str(&w, pcv_arch_name(arch));
        jw_key(&w, "parameters"), jw_int(&w, params);
        jw_key(&w, "numerics"), jw_str(&w, pcv_model_numerics(m) == PCV_NUMERICS_HAIKU ? "haiku" : "hf");
        jw_key(&w, "device"), jw_str(&w, dev);
        jw_key(&w, "driver"), jw_str(&w, driver);
        jw_key(&w, "peak_gflops"), jw_double(&w, peak);
        jw_key(&w, "peak_gemm_n"), jw_int(&w, peak_n);
        jw_key(&w, "load_s"), jw_double(&w, load_s);
        jw_key(&w, "results");
        jw_array(&w);
        for (int i = 0; i < nres; i++) {
            const result *r = &res[i];
            double im, isd, gm, gsd;
            rate_stats(r, (double)r->batch, &im, &isd);
            rate_stats(r, r->flops / 1e9, &gm, &gsd);
            jw_object(&w);
            jw_key(&w, "batch"), jw_int(&w, r->batch);
            jw_key(&w, "input"), jw_str(&w, r->input);
            jw_key(&w, "input_shape");
            jw_array(&w);
            for (int d = 0; d < r->ndim; d++)
                jw_int(&w, r->shape[d]);
            jw_array_end(&w);
            jw_key(&w, "repeat"), jw_int(&w, r->repeat);
            jw_key(&w, "forward_s");
            jw_object(&w);
            jw_key(&w, "mean"), jw_double(&w, r->mean);
            jw_key(&w, "stddev"), jw_double(&w, r->sd);
            jw_key(&w, "best"), jw_double(&w, r->best);
            jw_key(&w, "samples");
            jw_array(&w);
            for (int k = 0; k < r->repeat; k++)
                jw_double(&w, r->times[k]);
            jw_array_end(&w);
            jw_object_end(&w);
            jw_key(&w, "items_per_s");
            jw_object(&w);
            jw_key(&w, "mean"), jw_double(&w, im);
            jw_key(&w, "stddev"), jw_double(&w, isd);
            jw_object_end(&w);
            jw_key(&w, "gflop"), jw_double(&w, r->flops / 1e9);
            jw_key(&w, "gflops");
            jw_object(&w);
            jw_key(&w, "mean"), jw_double(&w, gm);
            jw_key(&w, "stddev"), jw_double(&w, gsd);
            jw_object_end(&w);
            jw_key(&w, "percent_of_peak"), jw_double(&w, 100.0 * gm / peak);
            if (ndev > 1) {
                jw_key(&w, "devices");
                jw_array(&w);
                for (int d = 0; d < ndev; d++) {
                    jw_object(&w);
                    jw_key(&w, "device_index"), jw_int(&w, d);
                    jw_key(&w, "device"), jw_str(&w, pcv_model_device(ms[d]));
                    jw_key(&w, "items_per_s"), jw_double(&w, r->dev_rate[d]);
                    jw_key(&w, "seconds"), jw_double(&w, r->dev_seconds[d]);
                    jw_object_end(&w);
                }
                jw_array_end(&w);
                jw_key(&w, "total_items_per_s"), jw_double(&w, r->total_rate);
                jw_key(&w, "wall_s"), jw_double(&w, r->wall);
            }
            jw_key(&w, "memory");
            jw_object(&w);
            jw_key(&w, "activation_bytes"), jw_int(&w, (long long)r->mem.activation_bytes);
            jw_key(&w, "output_bytes"), jw_int(&w, (long long)r->mem.output_bytes);
            jw_key(&w, "device_bytes"), jw_int(&w, (long long)r->mem.device_bytes);
            jw_key(&w, "device_peak_bytes"), jw_int(&w, (long long)r->mem.device_peak_bytes);
            jw_key(&w, "plans"), jw_int(&w, r->mem.plans);
            jw_key(&w, "allocs_per_forward"), jw_int(&w, r->mem.last_forward_allocs);
            jw_key(&w, "peak_rss_bytes"), jw_int(&w, r->peak_rss);
            jw_object_end(&w);
            jw_key(&w, "stages");
            jw_array(&w);
            for (int s = 0; s < r->nstages; s++) {
                jw_object(&w);
                jw_key(&w, "stage"), jw_str(&w, r->stages[s].name);
                jw_key(&w, "seconds"), jw_double(&w, r->stages[s].seconds);
                jw_key(&w, "gflop"), jw_double(&w, r->stages[s].flops / 1e9);
                double sg = r->stages[s].seconds > 0 ? r->stages[s].flops / r->stages[s].seconds / 1e9 : 0;
                jw_key(&w, "gflops"), jw_double(&w, sg);
                jw_key(&w, "percent_of_peak"), jw_double(&w, 100.0 * sg / peak);
                jw_object_end(&w);
            }
            jw_array_end(&w);
            jw_object_end(&w);
        }
        jw_array_end(&w);
        jw_object_end(&w);
        jw_end(&w);
    } else if (!strcmp(fmt, "csv")) {
        printf("model,architecture,parameters,device,driver,version,git_commit,batch,input,repeat,forward_ms_mean,"
               "forward_ms_stddev,items_per_s_mean,items_per_s_stddev,gflop,gflops_mean,gflops_stddev,peak_gflops,"
               "percent_of_peak,activation_bytes,device_bytes,device_peak_bytes,allocs_per_forward,peak_rss_bytes%s\n",
               show_stages ? ",stage,stage_ms,stage_gflop" : "");
        for (int i = 0; i < nres; i++) {
            const result *r = &res[i];
            double im, isd, gm, gsd;
            rate_stats(r, (double)r->batch, &im, &isd);
            rate_stats(r, r->flops / 1e9, &gm, &gsd);
            for (int s = 0; s < (show_stages ? r->nstages : 1); s++) {
                csv_field(name);
                csv_field(pcv_arch_name(arch));
                printf("%lld,", params);
                csv_field(dev);
                csv_field(driver);
                printf("%s,%s,%ld,", pcv_version(), pcv_cli_git_commit, r->batch);
                csv_field(r->input);
                printf("%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.3f,%.3f,%.3f,%.2f,%zu,%zu,%zu,%lld,%lld", r->repeat,
                       r->mean * 1e3, r->sd * 1e3, im, isd, r->flops / 1e9, gm, gsd, peak, 100.0 * gm / peak,
                       r->mem.activation_bytes, r->mem.device_bytes, r->mem.device_peak_bytes,
                       (long long)r->mem.last_forward_allocs, r->peak_rss);
                if (show_stages)
                    printf(",%s,%.4f,%.4f", r->stages[s].name, r->stages[s].seconds * 1e3, r->stages[s].flops / 1e9);
                printf("\n");
            }
        }
    } else {
        printf("| model | architecture | params | batch | input | forward ms | items/s | GFLOP | GFLOP/s | %% peak "
               "| act. MiB | dev. MiB | peak RSS MiB | allocs/fwd |\n");
        printf("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (int i = 0; i < nres; i++) {
            const result *r = &res[i];
            double im, isd, gm, gsd;
            rate_stats(r, (double)r->batch, &im, &isd);
            rate_stats(r, r->flops / 1e9, &gm, &gsd);
            printf("| %s | %s | %.2fM | %ld | %s | %.2f ± %.2f | %.2f ± %.2f | %.3f | %.1f ± %.1f | %.1f | %.1f | "
                   "%.1f | %.1f | %lld |\n",
                   name, pcv_arch_name(arch), params / 1e6, r->batch, r->input, r->mean * 1e3, r->sd * 1e3, im, isd,
                   r->flops / 1e9, gm, gsd, 100.0 * gm / peak, r->mem.activation_bytes / 1048576.0,
                   r->mem.device_bytes / 1048576.0, r->peak_rss / 1048576.0, (long long)r->mem.last_forward_allocs);
        }
        printf("\ndevice: %s; %s\n", dev, driver);
        printf("peak: %.1f GFLOP/s (SGEMM n=%lld, measured); load %.2f s; %ld timed runs after 1 warm-up per test; "
               "perceiver-cl %s (git %s)\n",
               peak, (long long)peak_n, load_s, repeat, pcv_version(), pcv_cli_git_commit);
        for (int i = 0; ndev > 1 && i < nres; i++) {
            const result *r = &res[i];
            printf("\nall %d devices at once, batch %ld, %s (%d timed runs each after 1 warm-up):\n", ndev, r->batch,
                   r->input, r->repeat);
            for (int d = 0; d < ndev; d++)
                printf("device %d: %.2f items/s (%s)\n", d, r->dev_rate[d], pcv_model_device(ms[d]));
            printf("total: %.2f items/s on %d devices (%.3f s)\n", r->total_rate, ndev, r->wall);
        }
        for (int i = 0; show_stages && i < nres; i++) {
            const result *r = &res[i];
            printf("\nstages, batch %ld, %s (best run, %.2f ms; peak %.1f GFLOP/s):\n\n"
                   "| stage | ms | GFLOP | GFLOP/s | %% peak | time %% |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
                   r->batch, r->input, r->best * 1e3, peak);
            for (int s = 0; s < r->nstages; s++) {
                double sg = r->stages[s].seconds > 0 ? r->stages[s].flops / r->stages[s].seconds / 1e9 : 0.0;
                printf("| %s | %.2f | %.3f | %.1f | %.1f | %.1f |\n", r->stages[s].name, r->stages[s].seconds * 1e3,
                       r->stages[s].flops / 1e9, sg, 100.0 * sg / peak, 100.0 * r->stages[s].seconds / r->best);
            }
        }
    }
    rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (rc)
        cli_fail(&err);
    for (int i = 0; res && i < nb * ns; i++)
        free(res[i].times);
    free(res);
    if (be)
        pcv_backend_close(be);
    for (int i = 1; i < ndev; i++)
        pcv_model_free(ms[i]);
    cli_device_list_free(devlist, ndev);
    pcv_model_free(m);
    pcv_config_free(&cfg);
    return rc;
}
