/* OpenCL device enumeration and selection, error names, and the runtime's environment. */
#include "backend/backend_impl.h"
#include "util/error.h"
#include "backend/opencl_impl.h"
#include "util/fileutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_cache_problem[1024];

void pcv_cl_user_cache_dir(char *dir, size_t cap)
{
    const pcv_runtime_options *rt = pcv_runtime();
    const char *e;
    dir[0] = '\0';
    if (rt->cache_dir)
        snprintf(dir, cap, "%s", rt->cache_dir);
    else if ((e = getenv("XDG_CACHE_HOME")) && *e)
        snprintf(dir, cap, "%s/perceiver-cl", e);
    else if ((e = getenv("HOME")) && *e)
        snprintf(dir, cap, "%s/.cache/perceiver-cl", e);
}

const char *pcv_cl_cache_dir(void)
{
    static char dir[4096];
    static bool done;
    if (done)
        return dir;
    done = true;
    dir[0] = '\0';
    const pcv_runtime_options *rt = pcv_runtime();
    if (rt->kernel_cache == 0)
        return dir;
    pcv_cl_user_cache_dir(dir, sizeof dir);
    if (dir[0]) {
        /* a private folder (0700, ours, not writable by others), or no cache: an unwritable one
         * turns the cache off; one that others could plant entries in is refused (an error when a
         * build would use it) */
        pcv_error err = {0};
        int rc = pcv_private_dir(dir, "the kernel cache folder", &err);
        if (rc == PCV_ERR_INPUT)
            snprintf(g_cache_problem, sizeof g_cache_problem, "%s", err.msg);
        if (rc)
            dir[0] = '\0';
    }
    return dir;
}

const char *pcv_cl_cache_problem(void)
{
    pcv_cl_cache_dir();
    return g_cache_problem;
}

bool pcv_cl_pocl_cache_problem(char *buf, size_t cap)
{
    const char *v = getenv("POCL_CACHE_DIR");
    if (!v || !*v)
        return false;
    char probe[4096];
    snprintf(probe, sizeof probe, "%s", v);
    struct stat sb;
    /* the folder, or the nearest folder above it that exists (PoCL creates the rest) */
    while (stat(probe, &sb) != 0) {
        char *slash = strrchr(probe, '/');
        if (!slash || slash == probe) {
            snprintf(probe, sizeof probe, "%s", slash == probe ? "/" : ".");
            if (stat(probe, &sb) != 0)
                return false;
            break;
        }
        *slash = '\0';
    }
    const char *why = NULL;
    if (!S_ISDIR(sb.st_mode))
        why = "not a folder";
    else if (access(probe, W_OK | X_OK) != 0)
        why = strerror(errno);
    if (!why)
        return false;
    snprintf(buf, cap, "POCL_CACHE_DIR=%s is not writable (%s: %s): PoCL compiles kernels into it and fails without it; "
             "make it writable, or point POCL_CACHE_DIR at a writable folder", v, probe, why);
    return true;
}

bool pcv_cl_available(void)
{
#ifdef PCV_HAVE_OPENCL
    return true;
#else
    return false;
#endif
}

#ifdef PCV_HAVE_OPENCL

void pcv_cl_prepare_runtime(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    /* PoCL compiles kernels (ours and CLBlast's) with clang and lets its warnings ("8 warnings
     * generated.") reach our stderr: -w silences them unless the user sets the variable, or is
     * developing kernels (PERCEIVER_CL_DIR / kernel_dir, tracing), where they are wanted */
    if (!pcv_runtime()->kernel_dir && !pcv_runtime()->trace)
        setenv("POCL_EXTRA_BUILD_FLAGS", "-w", 0);
    if (getenv("POCL_CACHE_DIR"))
        return; /* the user's choice (named in the errors when PoCL cannot write it) */
    /* PoCL's own default, which it must be able to create or it reports no device. Without
     * XDG_CACHE_HOME and HOME, PoCL would fall back to a folder in /tmp shared by every user, where
     * another user could replace compiled kernels: never that one. */
    char def[4096] = "";
    const char *e;
    if ((e = getenv("XDG_CACHE_HOME")) && *e)
        snprintf(def, sizeof def, "%s/pocl/kcache", e);
    else if ((e = getenv("HOME")) && *e)
        snprintf(def, sizeof def, "%s/.cache/pocl/kcache", e);
    if (def[0] && pcv_private_dir(def, "PoCL's kernel cache folder", NULL) == 0)
        return;
    /* a private folder we pass to PoCL: ours, or a per-user one in /tmp, checked like ours */
    char alt[4096];
    const char *ours = pcv_cl_cache_dir();
    if (ours[0])
        snprintf(alt, sizeof alt, "%s/pocl", ours);
    else
        snprintf(alt, sizeof alt, "/tmp/perceiver-cl-%ld/pocl", (long)getuid());
    if (pcv_private_dir(alt, "PoCL's kernel cache folder", NULL) == 0) {
        setenv("POCL_CACHE_DIR", alt, 0);
        return;
    }
    /* that one is taken (another user made it): a fresh private folder for this process */
    snprintf(alt, sizeof alt, "/tmp/perceiver-cl-%ld-XXXXXX", (long)getuid());
    if (mkdtemp(alt))
        setenv("POCL_CACHE_DIR", alt, 0);
}

const char *pcv_cl_error_name(cl_int code, char *buf, size_t cap)
{
    switch (code) {
#define E(x) case x: return #x;
        E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
        E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
        E(CL_MISALIGNED_SUB_BUFFER_OFFSET) E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE)
        E(CL_DEVICE_PARTITION_FAILED) E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
        E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
        E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
        E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL_DEFINITION)
        E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
        E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
        E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    case -9999: return "NVIDIA illegal memory access (-9999)";
    default:
        snprintf(buf, cap, "OpenCL error %d", (int)code);
        return buf;
    }
}

static void dev_str(cl_device_id d, cl_device_info what, char *out, size_t cap)
{
    out[0] = '\0';
    if (clGetDeviceInfo(d, what, cap, out, NULL) != CL_SUCCESS)
        snprintf(out, cap, "?");
    out[cap - 1] = '\0';
    /* drivers pad some strings with spaces */
    size_t n = strlen(out);
    while (n > 0 && isspace((unsigned char)out[n - 1]))
        out[--n] = '\0';
}

/* Whether the device's extension string names ext (a whole word). */
static bool has_extension(const char *exts, const char *ext)
{
    size_t n = strlen(ext);
    for (const char *p = exts; (p = strstr(p, ext)) != NULL; p += n)
        if ((p == exts || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

/* The SIMD width where a vendor extension reports it (the enum values are the extensions'
 * published ones: cl_nv_device_attribute_query CL_DEVICE_WARP_SIZE_NV 0x4003,
 * cl_amd_device_attribute_query CL_DEVICE_WAVEFRONT_WIDTH_AMD 0x4043,
 * cl_intel_required_subgroup_size CL_DEVICE_SUB_GROUP_SIZES_INTEL 0x4108). */
static void simd_query(cl_device_id d, pcv_cl_device_info *info)
{
    info->simd_width = 0;
    info->simd_source[0] = '\0';
    size_t len = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &len) != CL_SUCCESS || len == 0 || len > (1u << 20))
        return;
    char *exts = calloc(1, len + 1);
    if (!exts)
        return;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, len, exts, NULL) != CL_SUCCESS)
        exts[0] = '\0';
    cl_uint u = 0;
    if (has_extension(exts, "cl_nv_device_attribute_query") &&
        clGetDeviceInfo(d, (cl_device_info)0x4003, sizeof u, &u, NULL) == CL_SUCCESS && u > 0 && u <= 1024) {
        info->simd_width = u;
        snprintf(info->simd_source, sizeof info->simd_source, "warp (cl_nv_device_attribute_query)");
    } else if (has_extension(exts, "cl_amd_device_attribute_query") &&
               clGetDeviceInfo(d, (cl_device_info)0x4043, sizeof u, &u, NULL) == CL_SUCCESS && u > 0 && u <= 1024) {
        info->simd_width = u;
        snprintf(info->simd_source, sizeof info->simd_source, "wavefront (cl_amd_device_attribute_query)");
    } else if (has_extension(exts, "cl_intel_required_subgroup_size")) {
        size_t sizes[16], bytes = 0, best = 0;
        if (clGetDeviceInfo(d, (cl_device_info)0x4108, sizeof sizes, sizes, &bytes) == CL_SUCCESS)
            for (size_t i = 0; i < bytes / sizeof *sizes && i < 16; i++)
                if (sizes[i] > best && sizes[i] <= 1024)
                    best = sizes[i];
        if (best) {
            info->simd_width = (unsigned)best;
            snprintf(info->simd_source, sizeof info->simd_source, "largest sub-group (cl_intel_required_subgroup_size)");
        }
    }
    free(exts);
}

int pcv_cl_row_ls(const pcv_cl_device_info *info, int requested)
{
    int ls = requested;
    if (ls <= 0) {
        unsigned want = info->simd_width ? 2 * info->simd_width : 64;
        for (ls = 32; (unsigned)ls < want && ls < 256;)
            ls *= 2;
    }
    while (ls > 1 && ((size_t)ls > info->max_work_group || (size_t)ls > info->max_item_size0 ||
                      (uint64_t)ls * 12 > info->local_mem))
        ls /= 2;
    return ls;
}

static void fill_info(cl_platform_id p, cl_device_id d, pcv_cl_device_info *info)
{
    clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof info->platform, info->platform, NULL);
    clGetPlatformInfo(p, CL_PLATFORM_VERSION, sizeof info->platform_version, info->platform_version, NULL);
    info->platform[sizeof info->platform - 1] = info->platform_version[sizeof info->platform_version - 1] = '\0';
    dev_str(d, CL_DEVICE_NAME, info->name, sizeof info->name);
    dev_str(d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    dev_str(d, CL_DRIVER_VERSION, info->driver, sizeof info->driver);
    dev_str(d, CL_DEVICE_VERSION, info->version, sizeof info->version);
    dev_str(d, CL_DEVICE_OPENCL_C_VERSION, info->c_version, sizeof info->c_version);
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    snprintf(info->type, sizeof info->type, "%s",
             type & CL_DEVICE_TYPE_GPU ? "GPU" : type & CL_DEVICE_TYPE_CPU ? "CPU"
                                             : type & CL_DEVICE_TYPE_ACCELERATOR ? "accelerator" : "custom");
    info->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    cl_uint u = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof u, &u, NULL);
    info->compute_units = u;
    u = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof u, &u, NULL);
    info->clock_mhz = u;
    cl_ulong ul = 0;
    clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ul, &ul, NULL);
    info->global_mem = ul;
    ul = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ul, &ul, NULL);
    info->max_alloc = ul;
    ul = 0;
    clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ul, &ul, NULL);
    info->local_mem = ul;
    size_t wg = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    info->max_work_group = wg;
    size_t items[3] = {0, 0, 0};
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof items, items, NULL);
    info->max_item_size0 = items[0] ? items[0] : wg;
    cl_bool bv = CL_FALSE;
    clGetDeviceInfo(d, CL_DEVICE_AVAILABLE, sizeof bv, &bv, NULL);
    info->available = bv;
    bv = CL_FALSE;
    clGetDeviceInfo(d, CL_DEVICE_COMPILER_AVAILABLE, sizeof bv, &bv, NULL);
    info->compiler = bv;
    cl_device_fp_config fp = 0;
    clGetDeviceInfo(d, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp, &fp, NULL);
    info->fp64 = fp != 0;
    if (sscanf(info->c_version, "OpenCL C %d.%d", &info->c_major, &info->c_minor) != 2)
        info->c_major = info->c_minor = 0;
    simd_query(d, info);
    cl_uint nw = 0;
    info->native_float_width = clGetDeviceInfo(d, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof nw, &nw, NULL) == CL_SUCCESS ? nw : 0;
}

/* Walks all devices; calls back with handles. Returns the count or -1. */
typedef bool (*dev_visit)(void *user, cl_platform_id p, cl_device_id d, const pcv_cl_device_info *info);

static int walk_devices(dev_visit visit, void *user, pcv_error *err)
{
    pcv_cl_prepare_runtime();
    cl_uint np = 0;
    cl_int rc = clGetPlatformIDs(0, NULL, &np);
    if (rc == -1001 /* CL_PLATFORM_NOT_FOUND_KHR: no driver installed */ || np == 0)
        return 0;
    char eb[48];
    if (rc != CL_SUCCESS) {
        pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL: cannot list platforms: %s", pcv_cl_error_name(rc, eb, sizeof eb));
        return -1;
    }
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats || clGetPlatformIDs(np, plats, NULL) != CL_SUCCESS) {
        free(plats);
        pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL: cannot list platforms");
        return -1;
    }
    int count = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0)
            continue; /* CL_DEVICE_NOT_FOUND: a platform without devices */
        cl_device_id *devs = calloc(nd, sizeof *devs);
        if (!devs || clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, devs, NULL) != CL_SUCCESS) {
            free(devs);
            continue;
        }
        for (cl_uint d = 0; d < nd; d++) {
            pcv_cl_device_info info;
            memset(&info, 0, sizeof info);
            fill_info(plats[p], devs[d], &info);
            info.index = count++;
            info.platform_index = (int)p;
            info.device_index = (int)d;
            if (visit && !visit(user, plats[p], devs[d], &info)) {
                free(devs);
                free(plats);
                return count;
            }
        }
        free(devs);
    }
    free(plats);
    return count;
}

typedef struct list_acc {
    pcv_cl_device_info *v;
    int n, cap;
} list_acc;

static bool collect(void *user, cl_platform_id p, cl_device_id d, const pcv_cl_device_info *info)
{
    list_acc *a = user;
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 8;
        pcv_cl_device_info *nv = realloc(a->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return false;
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = *info;
    return true;
}

int pcv_cl_list_devices(pcv_cl_device_info **out, pcv_error *err)
{
    list_acc a = {0};
    int n = walk_devices(collect, &a, err);
    if (n < 0) {
        free(a.v);
        *out = NULL;
        return -1;
    }
    *out = a.v;
    return a.n;
}

typedef struct find_acc {
    int want;
    cl_platform_id p;
    cl_device_id d;
    pcv_cl_device_info info;
    bool found;
} find_acc;

static bool find_one(void *user, cl_platform_id p, cl_device_id d, const pcv_cl_device_info *info)
{
    find_acc *f = user;
    if (info->index != f->want)
        return true;
    f->p = p;
    f->d = d;
    f->info = *info;
    f->found = true;
    return false;
}

int pcv_cl_get_device(int index, cl_platform_id *platform, cl_device_id *device, pcv_cl_device_info *info,
                      pcv_error *err)
{
    find_acc f = {.want = index};
    if (walk_devices(find_one, &f, err) < 0)
        return err ? (int)err->code : PCV_ERR_DEVICE;
    if (!f.found) {
        char list[768];
        pcv_cl_format_device_list(list, sizeof list);
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d does not exist; the devices are:\n%s", index, list);
    }
    *platform = f.p;
    *device = f.d;
    *info = f.info;
    return 0;
}

#else /* no OpenCL in this build */

int pcv_cl_list_devices(pcv_cl_device_info **out, pcv_error *err)
{
    *out = NULL;
    return 0;
}

pcv_backend *pcv_backend_opencl_create(int index, const pcv_backend_options *opt, pcv_error *err)
{
    pcv_set_error(err, PCV_ERR_UNSUPPORTED, "this build has no OpenCL backend (configured with -DPCV_OPENCL=OFF)");
    return NULL;
}

int64_t pcv_cl_launch_count(void) { return 0; }

#endif

void pcv_cl_format_device_list(char *buf, size_t cap)
{
    pcv_cl_device_info *devs = NULL;
    pcv_error err = {0};
    int n = pcv_cl_list_devices(&devs, &err);
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf + len, cap - len, "  cpu  the C reference path (BLIS)");
    if (!pcv_cl_available())
        len += (size_t)snprintf(buf + len, cap > len ? cap - len : 0, "\n  (this build has no OpenCL backend)");
    else if (n < 0)
        len += (size_t)snprintf(buf + len, cap > len ? cap - len : 0, "\n  (OpenCL: %s)", err.msg);
    else if (n == 0) {
        char why[1200];
        if (pcv_cl_pocl_cache_problem(why, sizeof why))
            len += (size_t)snprintf(buf + len, cap > len ? cap - len : 0, "\n  (no OpenCL device found: %s)", why);
        else
            len += (size_t)snprintf(buf + len, cap > len ? cap - len : 0,
                                    "\n  (no OpenCL device found: no driver installed, or PoCL without a writable "
                                    "POCL_CACHE_DIR)");
    }
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "\n  %-4d %s [%s] (%s, OpenCL C %d.%d)", devs[i].index,
                                devs[i].name, devs[i].type, devs[i].platform, devs[i].c_major, devs[i].c_minor);
    char why[1200];
    bool pocl = false;
    for (int i = 0; i < n; i++)
        pocl |= strstr(devs[i].platform, "Portable Computing Language") != NULL;
    /* other drivers listed, PoCL missing because it cannot write its cache: say so */
    if (n > 0 && !pocl && len < cap && pcv_cl_pocl_cache_problem(why, sizeof why))
        snprintf(buf + len, cap - len, "\n  (PoCL lists no device: %s)", why);
    free(devs);
}

/* case-insensitive substring */
static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return false;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return false;
}

int pcv_cl_find_device(const char *spec, pcv_error *err)
{
    char list[768];
    if (!pcv_cl_available()) {
        pcv_cl_format_device_list(list, sizeof list);
        pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                      "device '%s' is not available: this build has no OpenCL backend; the devices are:\n%s", spec,
                      list);
        return -1;
    }
    pcv_cl_device_info *devs = NULL;
    int n = pcv_cl_list_devices(&devs, err);
    if (n < 0)
        return -1;
    int found = -1;
    bool numeric = *spec != '\0';
    for (const char *s = spec; *s; s++)
        numeric &= isdigit((unsigned char)*s) != 0;
    if (numeric) {
        long v = strtol(spec, NULL, 10);
        if (v >= 0 && v < n)
            found = (int)v;
    } else {
        for (int i = 0; i < n && found < 0; i++) {
            char hay[600];
            snprintf(hay, sizeof hay, "%s / %s / %s", devs[i].platform, devs[i].name, devs[i].vendor);
            if (contains_ci(hay, spec))
                found = i;
        }
    }
    free(devs);
    if (found < 0) {
        pcv_cl_format_device_list(list, sizeof list);
        if (numeric)
            pcv_set_error(err, PCV_ERR_DEVICE, "device '%s' does not exist (%d OpenCL device%s); the devices are:\n%s",
                          spec, n, n == 1 ? "" : "s", list);
        else
            pcv_set_error(err, PCV_ERR_DEVICE, "device '%s' matches no device name; the devices are:\n%s", spec, list);
    }
    return found;
}
