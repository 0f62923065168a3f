/* perceiver-cl tune: measures the fastest verified OpenCL settings of a device and stores them
 * as its tuning profile (backend/tune.h, backend/opencl.h). */
#include "cli/cli.h"
#include "cli/jsonw.h"
#include "util/error.h"

#include "backend/opencl.h"
#include "backend/tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const cli_option options[] = {
    {"device", 'd', "D", "the OpenCL device to tune: an index or part of its name (see\n"
                         "'perceiver-cl devices'; default $PERCEIVER_DEVICE, else 0)"},
    {"model", CLI_KEY, "M", "whose operations to time: lm, image, flow or all (default all)"},
    {"budget", 'b', "SECONDS", "search time (default 120): the defaults always run, then the\n"
                               "other GEMM and known parameter sets, the attention, tile, layout\n"
                               "and kernel choices, then random and mutated parameter sets, while\n"
                               "it lasts; the re-timing comes after"},
    {"rows", CLI_KEY + 1, "N", "rows of each timed operation (default 1024; keys of the\n"
                               "attentions up to 4N); the time per forward pass is scaled up from\n"
                               "them"},
    {"repeat", 'r', "N", "timed runs per operation and candidate, the best counts (default 2)"},
    {"seed", CLI_KEY + 2, "N", "seed of the random candidates (default fixed)"},
    {"dry-run", 'n', NULL, "measure and report, store nothing"},
    {"show", CLI_KEY + 3, NULL, "print the device's stored profile and exit"},
    {"reset", CLI_KEY + 4, NULL, "remove the device's stored profile and exit"},
    {"json", CLI_KEY + 5, NULL, "machine-readable report (docs/json.md)"},
    {0},
};

const cli_command cli_cmd_tune = {
    "tune", "[--device D] [options]",
    "Searches, for the operations of the full-size models (GEMMs, attentions and row\n"
    "operations, as bench-ops times them, rows cut to --rows), the fastest settings of one\n"
    "OpenCL device: which GEMM (our own, cl/gemm.cl, or CLBlast's), our GEMM's tile, CLBlast's\n"
    "GEMM kernel parameters (known sets, then random and mutated valid sets, unless our GEMM\n"
    "won), the indirect-GEMM threshold, the GEMM layout, our kernels' style, vector width and\n"
    "work-items per row, the attention path and its key splits. Every candidate's every result\n"
    "is checked against a float64 reference with the operation's tolerance; a wrong candidate\n"
    "is never kept. The winner is timed again three times, alternating with the defaults, and\n"
    "stored (the defaults when it is not faster) as the device's profile in the cache folder\n"
    "(per device, driver and CLBlast version); every later run on that device loads it\n"
    "(PERCEIVER_TUNED=0 or explicit PERCEIVER_TUNING keys override it). 'perceiver-cl\n"
    "devices' shows each device's profile.\n",
    options, CLI_QUIET, NULL,
};

static void progress_line(void *user, const char *line)
{
    (void)user;
    cli_progress_clear();
    if (!cli_quiet)
        fprintf(stderr, "perceiver-cl tune: %s\n", line);
}

static const char *status_name(int s)
{
    static const char *const names[] = {"ok", "slower", "wrong", "failed"};
    return s >= 0 && s < 4 ? names[s] : "?";
}

static void print_json(const pcv_backend *be, const pcv_cl_device_info *info, const pcv_tune_report *r,
                       const char *model, long rows, double budget, const char *saved)
{
    jw w;
    jw_init(&w, stdout, 2);
    jw_object(&w);
    jw_key(&w, "device"), jw_object(&w), jw_cl_device(&w, info), jw_object_end(&w);
    jw_key(&w, "backend"), jw_str(&w, pcv_backend_device(be));
    jw_key(&w, "model"), jw_str(&w, model);
    jw_key(&w, "rows"), jw_int(&w, rows);
    jw_key(&w, "budget_s"), jw_double(&w, budget);
    jw_key(&w, "seconds"), jw_double(&w, r->seconds);
    jw_key(&w, "best"), jw_str(&w, r->best);
    jw_key(&w, "before_ms"), jw_double(&w, r->before_s * 1e3);
    jw_key(&w, "after_ms"), jw_double(&w, r->after_s * 1e3);
    jw_key(&w, "speedup"), jw_double(&w, r->after_s > 0 ? r->before_s / r->after_s : 1.0);
    jw_key(&w, "tried"), jw_int(&w, r->tried);
    jw_key(&w, "wrong"), jw_int(&w, r->wrong);
    jw_key(&w, "failed"), jw_int(&w, r->failed);
    jw_key(&w, "slower"), jw_int(&w, r->slower);
    jw_key(&w, "profile"), jw_str(&w, saved);
    jw_key(&w, "operations"), jw_array(&w);
    for (int i = 0; i < r->nops; i++) {
        const pcv_tune_op *o = &r->ops[i];
        jw_object(&w);
        jw_key(&w, "op"), jw_str(&w, o->label);
        jw_key(&w, "model"), jw_str(&w, o->model);
        jw_key(&w, "shape"), jw_str(&w, o->shape);
        jw_key(&w, "weight"), jw_double(&w, o->weight);
        jw_key(&w, "before_ms"), jw_double(&w, o->before_s * 1e3);
        jw_key(&w, "after_ms"), jw_double(&w, o->after_s * 1e3);
        jw_key(&w, "after_gflops"), jw_double(&w, o->after_s > 0 ? o->flops / o->after_s / 1e9 : 0.0);
        jw_object_end(&w);
    }
    jw_array_end(&w);
    jw_key(&w, "candidates"), jw_array(&w);
    for (int i = 0; i < r->ncands; i++) {
        const pcv_tune_candidate *c = &r->cands[i];
        jw_object(&w);
        jw_key(&w, "tuning"), jw_str(&w, c->tuning);
        jw_key(&w, "status"), jw_str(&w, status_name(c->status));
        if (c->status == 0)
            jw_key(&w, "ms"), jw_double(&w, c->total_s * 1e3);
        else
            jw_key(&w, "why"), jw_str(&w, c->why);
        jw_object_end(&w);
    }
    jw_array_end(&w);
    jw_object_end(&w);
    jw_end(&w);
}

static void print_text(const pcv_tune_report *r, const char *saved, bool dry)
{
    printf("%-44s %-40s %8s %10s %10s %7s\n", "operation (model)", "timed shape", "x/pass", "before ms", "after ms",
           "gain");
    for (int i = 0; i < r->nops; i++) {
        const pcv_tune_op *o = &r->ops[i];
        char label[128];
        snprintf(label, sizeof label, "%s (%s)", o->label, o->model);
        printf("%-44.44s %-40.40s %8.1f %10.3f %10.3f %6.2fx\n", label, o->shape, o->weight, o->before_s * 1e3,
               o->after_s * 1e3, o->after_s > 0 ? o->before_s / o->after_s : 1.0);
    }
    printf("\ncandidates: %d tried, %d slower (stopped early), %d wrong (rejected), %d failed; %.0f s\n", r->tried,
           r->slower, r->wrong, r->failed, r->seconds);
    printf("these operations, one forward pass of each model: %.1f ms with the defaults, %.1f ms tuned (%.2fx)\n",
           r->before_s * 1e3, r->after_s * 1e3, r->after_s > 0 ? r->before_s / r->after_s : 1.0);
    printf("best: %s\n", r->best[0] ? r->best : "the defaults (no candidate was faster when timed again)");
    if (saved)
        printf("stored: %s\n(every later run on this device loads it; 'perceiver-cl tune --reset' removes it)\n", saved);
    else if (dry)
        printf("not stored (--dry-run)\n");
}

int cmd_tune(int argc, char **argv)
{
    cli_parser p;
    const char *device = getenv("PERCEIVER_DEVICE"), *model = "all";
    if (device && !*device)
        device = NULL;
    long rows = 1024, repeat = 2, seed = 0;
    double budget = 120;
    bool json = false, dry = false, show = false, reset = false;
    cli_parse_begin(&p, &cli_cmd_tune, argc, argv);
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'd': device = p.arg; break;
        case CLI_KEY:
            model = p.arg;
            if (strcmp(model, "lm") && strcmp(model, "image") && strcmp(model, "flow") && strcmp(model, "all"))
                return cli_usage_error("tune", "--model must be lm, image, flow or all, not '%s'", model);
            break;
        case 'b':
            if (!cli_double(&p, 0.001, 1e6, &budget))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 1:
            if (!cli_int(&p, 1, 1 << 20, &rows))
                return EXIT_USAGE;
            break;
        case 'r':
            if (!cli_int(&p, 1, 1000, &repeat))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 2:
            if (!cli_int(&p, 0, 2147483647L, &seed))
                return EXIT_USAGE;
            break;
        case 'n': dry = true; break;
        case CLI_KEY + 3: show = true; break;
        case CLI_KEY + 4: reset = true; break;
        case CLI_KEY + 5: json = true; break;
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand < argc)
        return cli_usage_error("tune", "unexpected argument '%s'", argv[p.first_operand]);
    if (show && reset)
        return cli_usage_error("tune", "--show and --reset exclude each other");
    if (device && !*device)
        return cli_usage_error("tune", "--device is empty: give an OpenCL device index or part of its name");
    if (device && !strcasecmp(device, "cpu"))
        return cli_usage_error("tune", "the CPU path has nothing to tune: give an OpenCL device");
    if (!pcv_cl_available())
        return cli_usage_error("tune", "this build has no OpenCL backend (configured with -DPCV_OPENCL=OFF)");
    pcv_error err = {0};
    int index = pcv_cl_find_device(device ? device : "0", &err);
    if (index < 0)
        return cli_fail(&err);
    pcv_cl_device_info *devs = NULL;
    int n = pcv_cl_list_devices(&devs, &err);
    if (n <= index) {
        free(devs);
        return cli_fail(&err);
    }
    pcv_cl_device_info info = devs[index];
    free(devs);

    if (show || reset) {
        char path[4300], tuning[512], why[4600];
        bool have_path = pcv_cl_profile_path(&info, path, sizeof path);
        if (reset) {
            bool removed;
            if (pcv_cl_profile_remove(&info, &removed, &err))
                return cli_fail(&err);
            printf("%s %s\n", removed ? "removed" : "no profile to remove:", have_path ? path : "(no cache folder)");
            return EXIT_OK;
        }
        int r = pcv_cl_profile_load(&info, tuning, sizeof tuning, why, sizeof why);
        if (r > 0)
            printf("%s\n%s\n", tuning[0] ? tuning : "(the defaults won)", path);
        else if (r < 0)
            printf("ignored: %s\n", why);
        else
            printf("none (%s)\n", have_path ? path : "no cache folder");
        return r < 0 ? EXIT_FAIL : EXIT_OK;
    }

    /* start from the defaults: no stored profile; explicit tuning keys would pin what is searched */
    const char *explicit_keys = cli_runtime_tuning();
    if (explicit_keys[0] && strcmp(explicit_keys, "profile=0"))
        cli_warn("tune: the explicit tuning keys '%s' (PERCEIVER_TUNING or the older variables) override what "
                 "is searched; unset them for a full search",
                 explicit_keys);
    if (cli_runtime_add_tuning("profile=0", &err))
        return cli_fail(&err);
    pcv_backend_options bo = cli_model_options().backend;
    char dev[16];
    snprintf(dev, sizeof dev, "%d", index);
    bo.device = dev;
    pcv_backend *be = pcv_backend_open(&bo, &err);
    if (!be)
        return cli_fail(&err);
    cli_info("tune: %s; operations of %s, rows <= %ld, budget %.0f s", pcv_backend_device(be), model, rows, budget);
    const char *hook = getenv("PCV_TEST_TUNE_WRONG"); /* tests: a candidate whose results are changed */
    pcv_tune_options o = {.model = model,
                          .budget_s = budget,
                          .max_rows = rows,
                          .repeat = (int)repeat,
                          .seed = (uint64_t)seed,
                          .progress = progress_line,
                          .test_wrong = hook ? atoi(hook) : 0};
    pcv_tune_report rep;
    int rc = pcv_tune_run(be, &o, &rep, &err);
    const char *saved = NULL;
    char path[4300];
    if (!rc && !dry) {
        char note[512];
        time_t now = time(NULL);
        struct tm tm;
        char when[32];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime_r(&now, &tm));
        snprintf(note, sizeof note,
                 "%s; operations of %s, rows <= %ld: %.1f ms with the defaults, %.1f ms tuned; %d candidates, %d "
                 "wrong",
                 when, model, rows, rep.before_s * 1e3, rep.after_s * 1e3, rep.tried, rep.wrong);
        if (pcv_cl_profile_save(&info, rep.best, note, &err) == 0 && pcv_cl_profile_path(&info, path, sizeof path))
            saved = path;
        else
            rc = -1;
    }
    if (!rc || saved) {
        if (json)
            print_json(be, &info, &rep, model, rows, budget, saved);
        else
            print_text(&rep, saved, dry);
    }
    pcv_tune_report_free(&rep);
    pcv_backend_close(be);
    return rc ? cli_fail(&err) : EXIT_OK;
}
