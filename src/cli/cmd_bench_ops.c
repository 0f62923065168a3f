/* perceiver-cl bench-ops: GFLOP/s of single operations at the shapes of a real model, on a device
 * and on the CPU reference path. */
#include "cli/cli.h"
#include "util/error.h"

#include "backend/opencl.h"
#include "backend/opcases.h"
#include "util/clock.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage: perceiver-cl bench-ops [--device D] [options]\n"
    "\n"
    "Times single operations at the shapes of a full-size model (the operation table that\n"
    "tests/test_ops checks against float64 references) on a device and on the CPU reference\n"
    "path, and prints GFLOP/s (GB/s for memory-bound operations) and the ratio. Every time is\n"
    "the best of --repeat runs after one warm-up, each run synchronized. Inputs are random.\n"
    "\n"
    "Options:\n"
    "  --device D, -d D   device to measure (default $PERCEIVER_DEVICE, else 0 when an OpenCL\n"
    "                     device exists); cpu measures the CPU path alone\n"
    "  --model M          lm (default: deepmind/language-perceiver, 2048 bytes), image (the\n"
    "                     Fourier ImageNet classifier), flow (one 368x496 optical-flow tile), all\n"
    "  --threads N        CPU threads of the reference path (default: all cores)\n"
    "  --repeat N         timed runs per operation (default 5)\n"
    "  --only WORD        only operations whose name, shape or label contains WORD\n"
    "                     (e.g. gemm, attention, \"self\")\n"
    "  --check            also compare each device result with a float64 reference (slow for\n"
    "                     the large shapes) and print the NMSE\n"
    "  --variants         also time each GEMM in both CLBlast layouts (row-major, swapped) and\n"
    "                     attention on both paths (fused kernel, CLBlast GEMMs), OpenCL only\n"
    "  --no-cpu           skip the CPU reference path\n"
    "  --json             machine-readable output\n"
    "  --help             this text\n";

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
    cli_args a;
    const char *device = getenv("PERCEIVER_DEVICE"), *only = NULL, *model = "lm";
    long repeat = 5, threads = 0;
    bool json = false, bad = false, variants = false, no_cpu = false, check = false;
    cli_init(&a, argc, argv, 2);
    while (a.i < a.argc && !bad) {
        if (cli_opt(&a, "--help", "-h", false, &bad)) {
            printf("%s", help);
            return EXIT_OK;
        } else if (cli_opt(&a, "--device", "-d", true, &bad)) {
            device = a.value;
        } else if (cli_opt(&a, "--threads", "-t", true, &bad)) {
            if (a.value && !cli_parse_int(a.value, 1, 1024, &threads))
                return cli_usage_error("bench-ops", "--threads needs a number from 1 to 1024");
        } else if (cli_opt(&a, "--repeat", "-r", true, &bad)) {
            if (a.value && !cli_parse_int(a.value, 1, 10000, &repeat))
                return cli_usage_error("bench-ops", "--repeat needs a number from 1 to 10000");
        } else if (cli_opt(&a, "--only", NULL, true, &bad)) {
            only = a.value;
        } else if (cli_opt(&a, "--model", NULL, true, &bad)) {
            model = a.value;
            if (model && strcmp(model, "lm") && strcmp(model, "image") && strcmp(model, "flow") && strcmp(model, "all"))
                return cli_usage_error("bench-ops", "--model must be lm, image, flow or all, not '%s'", model);
        } else if (cli_opt(&a, "--check", NULL, false, &bad)) {
            check = true;
        } else if (cli_opt(&a, "--variants", NULL, false, &bad)) {
            variants = true;
        } else if (cli_opt(&a, "--no-cpu", NULL, false, &bad)) {
            no_cpu = true;
        } else if (cli_opt(&a, "--json", NULL, false, &bad)) {
            json = true;
        } else {
            return cli_usage_error("bench-ops", "unknown argument '%s'", a.argv[a.i]);
        }
    }
    if (bad)
        return EXIT_USAGE;
    pcv_error err = {0};
    if (!device || !*device) {
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
        return cli_usage_error("bench-ops", "no operation of model '%s' matches --only '%s'", model, only ? only : "");
    }
    fprintf(stderr, "perceiver-cl: bench-ops on %s\n", pcv_backend_device(dev));

    pcv_cl_switches sw0;
    bool is_cl = pcv_cl_get_switches(dev, &sw0);
    json_t *jrows = json_array();
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
        const char *vname[3] = {"auto", NULL, NULL};
        pcv_cl_switches vs[3] = {sw0, sw0, sw0};
        int nv = 1;
        if (variants && is_cl && c->op == PCV_OP_GEMM) {
            vname[1] = "row-major", vname[2] = "swapped";
            vs[1].layout = 1, vs[2].layout = 2;
            nv = 3;
        } else if (variants && is_cl && c->op == PCV_OP_ATTENTION) {
            vname[1] = "fused", vname[2] = "CLBlast GEMMs";
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
                json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:s, s:i}", "op", name, "model",
                                        c->model, "variant", vname[v], "kind", flops ? "flops" : "bytes", "shape",
                                        shape, "device_ms", td * 1e3, "device_rate", work / td / 1e9, "cpu_ms",
                                        tc * 1e3, "cpu_rate", tc > 0 ? work / tc / 1e9 : 0.0, "unit",
                                        flops ? "GFLOP/s" : "GB/s", "count", c->count);
                if (check)
                    json_object_set_new(row, "device_nmse", json_real(nmse));
                json_array_append_new(jrows, row);
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
            json_t *o = json_pack("{s:s, s:s, s:I, s:o}", "device", pcv_backend_device(dev), "reference",
                                  cpu ? pcv_backend_device(cpu) : "", "repeat", (json_int_t)repeat, "ops", jrows);
            jrows = NULL;
            char *s = json_dumps(o, JSON_INDENT(2));
            printf("%s\n", s);
            free(s);
            json_decref(o);
        } else if (!only && strcmp(model, "all")) {
            printf("\nsum over one forward pass (counts above): device %.1f ms", fwd_dev * 1e3);
            if (cpu)
                printf(", CPU path %.1f ms", fwd_cpu * 1e3);
            printf(" (operations only; `perceiver-cl bench` times the whole model)\n");
        }
    }
    json_decref(jrows);
    if (cpu)
        pcv_backend_close(cpu);
    pcv_backend_close(dev);
    return rc;
}
