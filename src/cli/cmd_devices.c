/* perceiver-cl devices: the compute devices and the index that selects each. */
#include "cli/cli.h"
#include "cli/jsonw.h"

#include "backend/backend.h"
#include "backend/opencl.h"

#include <stdlib.h>
#include <string.h>

static const cli_option options[] = {
    {"json", CLI_KEY, NULL, "machine-readable output (docs/json.md)"},
    {0},
};

const cli_command cli_cmd_devices = {
    "devices", "[--json]",
    "Lists the compute devices: the CPU reference path ('cpu') and every OpenCL device of every\n"
    "platform, with the global index that --device N (or PERCEIVER_DEVICE=N) selects. Indices\n"
    "follow the order of the OpenCL platforms and of their devices, so they stay the same while\n"
    "the installed drivers and hardware do. --device also takes part of a device's platform,\n"
    "name or vendor (case-insensitive, first match), e.g. --device nvidia.\n",
    options, 0, NULL,
};

static void human_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.1f MiB", (double)b / (double)(1ull << 20));
    else
        snprintf(buf, cap, "%.0f KiB", (double)b / 1024.0);
}

/* Why a listed device cannot be used, or NULL. */
static const char *unusable(const pcv_cl_device_info *d)
{
    if (!d->available)
        return "not available (CL_DEVICE_AVAILABLE is false)";
    if (!d->compiler)
        return "no OpenCL C compiler";
    if (d->c_major * 10 + d->c_minor < 12)
        return "OpenCL C older than 1.2";
    return NULL;
}

void jw_cl_device(jw *w, const pcv_cl_device_info *d)
{
    jw_key(w, "index"), jw_int(w, d->index);
    jw_key(w, "name"), jw_str(w, d->name);
    jw_key(w, "type"), jw_str(w, d->type);
    jw_key(w, "platform"), jw_str(w, d->platform);
    jw_key(w, "platform_version"), jw_str(w, d->platform_version);
    jw_key(w, "vendor"), jw_str(w, d->vendor);
    jw_key(w, "driver"), jw_str(w, d->driver);
    jw_key(w, "version"), jw_str(w, d->version);
    jw_key(w, "opencl_c"), jw_str(w, d->c_version);
}

int cmd_devices(int argc, char **argv)
{
    cli_parser p;
    bool json = false;
    cli_parse_begin(&p, &cli_cmd_devices, argc, argv);
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case CLI_KEY: json = true; break;
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand < argc)
        return cli_usage_error("devices", "unexpected argument '%s'", argv[p.first_operand]);

    pcv_error err = {0};
    pcv_backend *cpu = pcv_backend_open(NULL, &err);
    if (!cpu)
        return cli_fail(&err);
    char cpu_desc[256];
    snprintf(cpu_desc, sizeof cpu_desc, "%s", pcv_backend_device(cpu));
    pcv_backend_close(cpu);

    pcv_cl_device_info *devs = NULL;
    int n = pcv_cl_list_devices(&devs, &err);
    const char *cache = pcv_cl_available() ? pcv_cl_cache_dir() : "";
    if (json) {
        jw w;
        jw_init(&w, stdout, 2);
        jw_object(&w);
        jw_key(&w, "cpu");
        jw_str(&w, cpu_desc);
        jw_key(&w, "opencl_built");
        jw_bool(&w, pcv_cl_available());
        if (n < 0) {
            jw_key(&w, "opencl_error");
            jw_str(&w, err.msg);
        }
        jw_key(&w, "opencl");
        jw_array(&w);
        for (int i = 0; i < n; i++) {
            const pcv_cl_device_info *d = &devs[i];
            const char *why = unusable(d);
            jw_object(&w);
            jw_cl_device(&w, d);
            jw_key(&w, "compute_units"), jw_int(&w, d->compute_units);
            jw_key(&w, "clock_mhz"), jw_int(&w, d->clock_mhz);
            jw_key(&w, "global_mem_bytes"), jw_int(&w, (long long)d->global_mem);
            jw_key(&w, "max_alloc_bytes"), jw_int(&w, (long long)d->max_alloc);
            jw_key(&w, "local_mem_bytes"), jw_int(&w, (long long)d->local_mem);
            jw_key(&w, "fp64"), jw_bool(&w, d->fp64);
            jw_key(&w, "simd_width");
            if (d->simd_width)
                jw_int(&w, d->simd_width);
            else
                jw_null(&w);
            jw_key(&w, "simd_width_source"), jw_str(&w, d->simd_width ? d->simd_source : NULL);
            jw_key(&w, "default_row_ls"), jw_int(&w, pcv_cl_row_ls(d, 0));
            jw_key(&w, "native_float_width");
            if (d->native_float_width)
                jw_int(&w, d->native_float_width);
            else
                jw_null(&w);
            int gw, mr;
            pcv_cl_own_gemm_tile(d, 0, &gw, &mr);
            jw_key(&w, "default_gemm"), jw_str(&w, pcv_cl_own_gemm_default(d) ? "own" : "clblast");
            jw_key(&w, "own_gemm_tile"), jw_array(&w), jw_int(&w, mr), jw_int(&w, 2 * gw), jw_array_end(&w);
            jw_key(&w, "usable"), jw_bool(&w, why == NULL);
            jw_key(&w, "unusable_reason"), jw_str(&w, why);
            jw_key(&w, "kernel_cache_used"), jw_bool(&w, cache[0] && pcv_cl_cache_used(d));
            char tuning[512], twhy[4600], path[4300];
            int tr = pcv_cl_profile_load(d, tuning, sizeof tuning, twhy, sizeof twhy);
            jw_key(&w, "tuning_profile"), jw_str(&w, tr != 0 && pcv_cl_profile_path(d, path, sizeof path) ? path : NULL);
            jw_key(&w, "tuning"), jw_str(&w, tr > 0 ? tuning : NULL);
            if (tr < 0)
                jw_key(&w, "tuning_problem"), jw_str(&w, twhy);
            jw_object_end(&w);
        }
        jw_array_end(&w);
        jw_key(&w, "kernel_cache");
        jw_str(&w, cache);
        if (pcv_cl_cache_problem()[0]) {
            jw_key(&w, "kernel_cache_refused");
            jw_str(&w, pcv_cl_cache_problem());
        }
        jw_key(&w, "pocl_cache_dir"); /* after the runtime chose it (docs/opencl.md); null when unset */
        jw_str(&w, getenv("POCL_CACHE_DIR"));
        char pocl[1200];
        if (pcv_cl_available() && pcv_cl_pocl_cache_problem(pocl, sizeof pocl)) {
            jw_key(&w, "pocl_cache_problem");
            jw_str(&w, pocl);
        }
        jw_object_end(&w);
        jw_end(&w);
    } else {
        printf("cpu   %s\n      --device cpu (the default)\n\n", cpu_desc);
        if (!pcv_cl_available())
            printf("OpenCL: not in this build (configured with -DPCV_OPENCL=OFF)\n");
        else if (n < 0)
            printf("OpenCL: %s\n", err.msg);
        else if (n == 0) {
            char pocl[1200];
            if (pcv_cl_pocl_cache_problem(pocl, sizeof pocl))
                printf("OpenCL: no device found: %s\n", pocl);
            else
                printf("OpenCL: no device found. Install a driver (e.g. Debian's pocl-opencl-icd for the CPU, or the\n"
                       "GPU vendor's); PoCL also needs a writable POCL_CACHE_DIR.\n");
        }
        else
            printf("OpenCL devices: %d\n", n);
        for (int i = 0; i < n; i++) {
            const pcv_cl_device_info *d = &devs[i];
            char g[32], m[32], l[32];
            human_bytes(g, sizeof g, d->global_mem);
            human_bytes(m, sizeof m, d->max_alloc);
            human_bytes(l, sizeof l, d->local_mem);
            const char *why = unusable(d);
            printf("\n%-5d %s\n", d->index, d->name);
            printf("      type       %s\n", d->type);
            printf("      platform   %s (%s), platform %d device %d\n", d->platform, d->platform_version,
                   d->platform_index, d->device_index);
            printf("      vendor     %s\n", d->vendor);
            printf("      driver     %s\n", d->driver);
            printf("      OpenCL     %s; %s%s\n", d->version, d->c_version, d->fp64 ? "; fp64" : "");
            printf("      compute    %u units, %u MHz\n", d->compute_units, d->clock_mhz);
            printf("      memory     %s global, %s max allocation, %s local\n", g, m, l);
            if (d->simd_width)
                printf("      simd       %u work-items, %s\n", d->simd_width, d->simd_source);
            else
                printf("      simd       width not reported by the driver\n");
            int gw, mr;
            pcv_cl_own_gemm_tile(d, 0, &gw, &mr);
            char nw[32] = "not reported";
            if (d->native_float_width)
                snprintf(nw, sizeof nw, "%u", d->native_float_width);
            if (pcv_cl_own_gemm_default(d))
                printf("      gemm       our own (cl/gemm.cl), %d x %d tiles of float%d (native float width %s)\n", mr,
                       2 * gw, gw, nw);
            else
                printf("      gemm       CLBlast (our own with gemm=own: %d x %d tiles of float%d; native float width "
                       "%s)\n", mr, 2 * gw, gw, nw);
            char tuning[512], twhy[4600], path[4300];
            int tr = pcv_cl_profile_load(d, tuning, sizeof tuning, twhy, sizeof twhy);
            if (tr > 0 && pcv_cl_profile_path(d, path, sizeof path))
                printf("      tuned      %s\n                 %s\n", tuning[0] ? tuning : "(the defaults won)", path);
            else if (tr < 0)
                printf("      tuned      ignored: %s\n", twhy);
            else
                printf("      tuned      no (perceiver-cl tune --device %d)\n", d->index);
            printf("      select     --device %d", d->index);
            if (why)
                printf("   (unusable: %s)", why);
            printf("\n");
        }
        if (pcv_cl_available() && pcv_cl_cache_problem()[0])
            printf("\nkernel cache: refused: %s\n", pcv_cl_cache_problem());
        else if (pcv_cl_available())
            printf("\nkernel cache: %s\n", cache[0] ? cache : "off (PERCEIVER_KERNEL_CACHE=0, or no writable folder)");
        if (cache[0])
            printf("              (PoCL devices use PoCL's own cache, POCL_CACHE_DIR, unless PERCEIVER_KERNEL_CACHE=1)\n");
    }
    free(devs);
    return n < 0 ? EXIT_FAIL : EXIT_OK;
}
