/* perceiver-cl bench-ops: GFLOP/s of single operations at the shapes of a real model, on a device
 * and on the CPU reference path. */
#include "cli/cli.h"
#include "cli/jsonw.h"
#include "util/error.h"

#include "backend/opencl.h"
#include "backend/opcases.h"
#include "util/clock.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const cli_option options[] = {
    {"device", 'd', "D", "device to measure (default $PERCEIVER_DEVICE, else 0 when an\n"
                         "OpenCL device exists); cpu measures the CPU path alone"},
    {"model", CLI_KEY + 4, "M", "lm (default: deepmind/language-perceiver, 2048 bytes), image\n"
                              "(the Fourier ImageNet classifier), flow (one 368x496\n"
                              "optical-flow tile), all"},
    {"threads", 't', "N", "CPU threads of the reference path (default: all cores)"},
    {"repeat", 'r', "N", "timed runs per operation (default 5)"},
    {"only", CLI_KEY, "WORD", "only operations whose name, shape or label contains WORD (gemm,\n"
                              "attention, layernorm, gelu, softmax, add, or words of the\n"
                              "labels, e.g. \"self\"); no match is a usage error"},
    {"check", CLI_KEY + 5, NULL, "also compare each device result with a float64 reference (slow\n"
                                 "for the large shapes) and print the NMSE"},
    {"variants", CLI_KEY + 1, NULL, "also time each GEMM through CLBlast in both layouts\n"
                                    "(row-major, swapped) and through our own GEMM, and attention\n"
                                    "on both paths (fused kernel, GEMMs + softmax), OpenCL only"},
    {"no-cpu", CLI_KEY + 2, NULL, "skip the CPU reference path"},
    {"json", CLI_KEY + 3, NULL, "machine-readable output (docs/json.md)"},
    {0},
};

const cli_command cli_cmd_bench_ops = {
    "bench-ops", "[--device D] [options]",
    "Times single operations at the shapes of a full-size model (the operation table that\n"
    "tests/test_ops checks against float64 references) on a device and on the CPU reference\n"
    "path, and prints GFLOP/s (GB/s for memory-bound operations) and the ratio. Every time is\n"
    "the best of --repeat runs after one warm-up, each run synchronized. Inputs are random.\n",
    options, CLI_QUIET, NULL,
};

/* best time of `repeat` synchronized runs after a warm-up; < 0 on error. With nmse != NULL the
 * warm-up result is checked against the float64 reference. */
static double time_case(pcv_backend *be, const pcv_op_case *c, int repeat, double *nmse, pcv_error *err)
{
    pcv_op_inst in;
    double best = -1;
    if (pcv_op_setup(be, c, 1, &in, err))
        return -1;
    if (pcv_op_run(be, &in, err) == 0 && pcv_backend_synchronize(be, err) == 0) {
        pcv_op_result r;
        if (nmse)
            *nmse = pcv_op_check(be, &in, -1, 0, &r, err) == 0 ? r.nmse : NAN;
        best = 1e300;
        for (int i = 0; i < repeat; i++) {
            double t = pcv_now();
            if (pcv_op_run(be, &in, err) || pcv_backend_synchronize(be, err)) {
                best = -1;
                break;
            }
            t = pcv_now() - t;
            best = t < best ? t : best;
        }
    }
    pcv_op_free(be, &in);
    return best;
}

int cmd_bench_ops(int argc, char **argv)
{
    cli_parser p;
    const char *device = getenv("PERCEIVER_DEVICE"), *only = NULL, *model = "lm";
    if (device && !*device)
        device = NULL; /* set but empty: as if unset (--device '' is an error) */
    long repeat = 5, threads = 0;
    bool json = false, variants = false, no_cpu = false, check = false;
    cli_parse_begin(&p, &cli_cmd_bench_ops, argc, argv);
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'd': device = p.arg; break;
        case 't':
            if (!cli_int(&p, 1, 4096, &threads))
                return EXIT_USAGE;
            break;
        case 'r':
            if (!cli_int(&p, 1, 10000, &repeat))
                return EXIT_USAGE;
            break;
        case CLI_KEY: only = p.arg; break;
        case CLI_KEY + 1: variants = true; break;
        case CLI_KEY + 2: no_cpu = true; break;
        case CLI_KEY + 3: json = true; break;
        case CLI_KEY + 4:
            model = p.arg;
            if (strcmp(model, "lm") && strcmp(model, "image") && strcmp(model, "flow") && strcmp(model, "all"))
                return cli_usage_error("bench-ops", "--model must be lm, image, flow or all, not '%s'", model);
            break;
        case CLI_KEY + 5: check = true; break;
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand < argc)
        return cli_usage_error("bench-ops", "unexpected argument '%s'", argv[p.first_operand]);
    pcv_error err = {0};
    if (!device) {
        pcv_cl_device_info *devs = NULL;
        int n = pcv_cl_list_devices(&devs, &err);
        free(devs);
        device = n > 0 ? "0" : "cpu";
    }
    pcv_backend_options bo = cli_model_options().backend;
    bo.device = device;
    bo.threads = (int)threads;
    pcv_backend *dev = pcv_backend_open(&bo, &err);
    if (!dev)
        return cli_fail(&err);
    bool dev_is_cpu = pcv_backend_is_cpu(dev);
    pcv_backend *cpu = NULL;
    if (!dev_is_cpu && !no_cpu && !(cpu = pcv_backend_open(&(pcv_backend_options){.threads = (int)threads}, &err))) {
        pcv_backend_close(dev);
        return cli_fail(&err);
    }
    int ncases, selected = 0;
    const pcv_op_case *cases = pcv_op_cases(&ncases);
    for (int i = 0; i < ncases; i++)
        selected += cases[i].model && (!strcmp(model, "all") || !strcmp(cases[i].model, model)) &&
                    pcv_op_matches(&cases[i], only);
    if (!selected) {
        if (cpu)
            pcv_backend_close(cpu);
        pcv_backend_close(dev);
        return cli_usage_error("bench-ops", "--only '%s' matches no operation of model '%s' (kinds: gemm, attention, layernorm, gelu, softmax, add)", only ? only : "", model);
    }
    cli_info("bench-ops on %s", pcv_backend_device(dev));

    pcv_cl_switches sw0;
    bool is_cl = pcv_cl_get_switches(dev, &sw0);
    jw w;
    jw_init(&w, stdout, 2);
    if (json) {
        jw_object(&w);
        jw_key(&w, "device"), jw_str(&w, pcv_backend_device(dev));
        jw_key(&w, "reference"), jw_str(&w, cpu ? pcv_backend_device(cpu) : "");
        jw_key(&w, "model"), jw_str(&w, model);
        jw_key(&w, "repeat"), jw_int(&w, repeat);
        jw_key(&w, "ops");
        jw_array(&w);
    }
    if (!json) {
        printf("device    %s\n", pcv_backend_device(dev));
        if (cpu)
            printf("reference %s\n", pcv_backend_device(cpu));
        printf("shapes    full-size model '%s'; best of %ld runs; GFLOP/s (GB/s for memory-bound ops)\n\n", model,
               repeat);
        printf("%-42s %-40s %9s %9s %9s %9s %7s%s\n", "operation", "shape", "dev ms", "dev rate", "cpu ms", "cpu rate",
               "dev/cpu", check ? "  dev nmse" : "");
    }
    int rc = EXIT_OK;
    double fwd_dev = 0, fwd_cpu = 0;
    for (int i = 0; i < ncases; i++) {
        const pcv_op_case *c = &cases[i];
        if (!c->model || (strcmp(model, "all") && strcmp(c->model, model)) || !pcv_op_matches(c, only))
            continue;
        char shape[160];
        pcv_op_describe(c, shape, sizeof shape);
        /* variants of the device run: [0] the automatic choice, then the alternatives */
        const char *vname[4] = {"auto", NULL, NULL, NULL};
        pcv_cl_switches vs[4] = {sw0, sw0, sw0, sw0};
        int nv = 1;
        if (variants && is_cl && c->op == PCV_OP_GEMM) {
            vname[1] = "CLBlast row-major", vname[2] = "CLBlast swapped", vname[3] = "own GEMM";
            vs[1].layout = 1, vs[2].layout = 2;
            vs[1].gemm = vs[2].gemm = 1, vs[3].gemm = 2;
            nv = 4;
        } else if (variants && is_cl && c->op == PCV_OP_ATTENTION) {
            vname[1] = "fused", vname[2] = "GEMMs + softmax";
            vs[1].attention = 1, vs[2].attention = 2;
            nv = 3;
        }
        double tc = cpu ? time_case(cpu, c, (int)repeat, NULL, &err) : 0;
        if (cpu && tc < 0) {
            rc = cli_fail(&err);
            break;
        }
        bool flops = pcv_op_flops(c) > 0;
        double work = flops ? pcv_op_flops(c) : pcv_op_bytes(c);
        for (int v = 0; v < nv; v++) {
            if (is_cl)
                pcv_cl_set_switches(dev, &vs[v]);
            double nmse = NAN;
            double td = time_case(dev, c, (int)repeat, check ? &nmse : NULL, &err);
            if (td < 0) {
                rc = cli_fail(&err);
                break;
            }
            if (v == 0) {
                fwd_dev += td * c->count;
                fwd_cpu += tc * c->count;
            }
            const char *name = c->label ? c->label : pcv_op_name(c->op);
            char label[80];
            snprintf(label, sizeof label, "%s%s", v ? "  " : "", v ? vname[v] : name);
            if (json) {
                jw_object(&w);
                jw_key(&w, "op"), jw_str(&w, name);
                jw_key(&w, "model"), jw_str(&w, c->model);
                jw_key(&w, "variant"), jw_str(&w, vname[v]);
                jw_key(&w, "kind"), jw_str(&w, flops ? "flops" : "bytes");
                jw_key(&w, "shape"), jw_str(&w, shape);
                jw_key(&w, "count"), jw_int(&w, c->count);
                jw_key(&w, "device_ms"), jw_double(&w, td * 1e3);
                jw_key(&w, "device_rate"), jw_double(&w, work / td / 1e9);
                jw_key(&w, "cpu_ms"), jw_double(&w, tc * 1e3);
                jw_key(&w, "cpu_rate"), jw_double(&w, tc > 0 ? work / tc / 1e9 : 0.0);
                jw_key(&w, "unit"), jw_str(&w, flops ? "GFLOP/s" : "GB/s");
                if (check)
                    jw_key(&w, "device_nmse"), jw_double(&w, nmse);
                jw_object_end(&w);
            } else {
                printf("%-42s %-40s %9.3f %9.1f", label, v ? "" : shape, td * 1e3, work / td / 1e9);
                if (cpu && v == 0)
                    printf(" %9.3f %9.1f %6.2fx", tc * 1e3, work / tc / 1e9, tc / td);
                else if (check)
                    printf(" %9s %9s %7s", "", "", "");
                if (check)
                    printf("  %8.1e", nmse);
                printf("\n");
            }
        }
        if (is_cl)
            pcv_cl_set_switches(dev, &sw0);
        if (rc)
            break;
    }
    if (rc == EXIT_OK) {
        if (json) {
            jw_array_end(&w);
            jw_object_end(&w);
            jw_end(&w);
        } else if (!only && strcmp(model, "all")) {
            printf("\nsum over one forward pass (counts above): device %.1f ms", fwd_dev * 1e3);
            if (cpu)
                printf(", CPU path %.1f ms", fwd_cpu * 1e3);
            printf(" (operations only; `perceiver-cl bench` times the whole model)\n");
        }
    }
    if (cpu)
        pcv_backend_close(cpu);
    pcv_backend_close(dev);
    return rc;
}
