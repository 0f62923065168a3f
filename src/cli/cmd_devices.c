/* perceiver-cl devices: the compute devices and the index that selects each. */
#include "cli/cli.h"

#include "backend/backend.h"
#include "backend/opencl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage: perceiver-cl devices [--json]\n"
    "\n"
    "Lists the compute devices: the CPU reference path ('cpu') and every OpenCL device of every\n"
    "platform, with the global index that --device N (or PERCEIVER_DEVICE=N) selects. Indices\n"
    "follow the order of the OpenCL platforms and of their devices, so they stay the same while\n"
    "the installed drivers and hardware do. --device also takes part of a device's platform,\n"
    "name or vendor (case-insensitive, first match), e.g. --device nvidia.\n"
    "\n"
    "Options:\n"
    "  --json    machine-readable output\n"
    "  --help    this text\n";

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

int cmd_devices(int argc, char **argv)
{
    cli_args a;
    bool json = false, bad = false;
    cli_init(&a, argc, argv, 2);
    while (a.i < a.argc && !bad) {
        if (cli_opt(&a, "--help", "-h", false, &bad)) {
            printf("%s", help);
            return EXIT_OK;
        } else if (cli_opt(&a, "--json", NULL, false, &bad)) {
            json = true;
        } else {
            return cli_usage_error("devices", "unknown argument '%s'", a.argv[a.i]);
        }
    }
    if (bad)
        return EXIT_USAGE;

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
        json_t *o = json_object(), *arr = json_array();
        json_object_set_new(o, "cpu", json_string(cpu_desc));
        json_object_set_new(o, "opencl_built", json_boolean(pcv_cl_available()));
        if (n < 0)
            json_object_set_new(o, "opencl_error", json_string(err.msg));
        for (int i = 0; i < n; i++) {
            const pcv_cl_device_info *d = &devs[i];
            const char *why = unusable(d);
            json_array_append_new(
                arr, json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:b, s:b, s:s?, s:b}",
                               "index", d->index, "name", d->name, "type", d->type, "platform", d->platform,
                               "platform_version", d->platform_version, "vendor", d->vendor, "driver", d->driver,
                               "version", d->version, "opencl_c", d->c_version, "compute_units", (int)d->compute_units,
                               "clock_mhz", (int)d->clock_mhz, "global_mem_bytes", (json_int_t)d->global_mem,
                               "max_alloc_bytes", (json_int_t)d->max_alloc, "local_mem_bytes",
                               (json_int_t)d->local_mem, "fp64", d->fp64, "usable", why == NULL, "unusable_reason",
                               why, "kernel_cache_used", cache[0] && pcv_cl_cache_used(d)));
        }
        json_object_set_new(o, "opencl", arr);
        json_object_set_new(o, "kernel_cache", json_string(cache));
        const char *pcd = getenv("POCL_CACHE_DIR"); /* after the runtime chose it (see docs/opencl.md) */
        json_object_set_new(o, "pocl_cache_dir", pcd ? json_string(pcd) : json_null());
        if (pcv_cl_cache_problem()[0])
            json_object_set_new(o, "kernel_cache_refused", json_string(pcv_cl_cache_problem()));
        char pocl[1200];
        if (pcv_cl_available() && pcv_cl_pocl_cache_problem(pocl, sizeof pocl))
            json_object_set_new(o, "pocl_cache_problem", json_string(pocl));
        char *s = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(o);
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
