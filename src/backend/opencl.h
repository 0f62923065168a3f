/* OpenCL devices and backend: what the rest of the library and the CLI see.
 *
 * Nothing here needs the OpenCL headers, so callers compile whether or not the OpenCL backend
 * is built (-DPCV_OPENCL=OFF): pcv_cl_available() is then false and the lists are empty.
 *
 * Device indices are global over all platforms: platforms in the order the ICD loader reports
 * them, each platform's devices (CL_DEVICE_TYPE_ALL) in the order the driver reports them.
 * They are stable while the installed drivers and hardware stay the same.
 */
#ifndef PCV_OPENCL_H
#define PCV_OPENCL_H

#include "backend/backend.h"

typedef struct pcv_cl_device_info {
    int index;                  /* global index, as used by --device N */
    int platform_index;         /* position of the platform, and of the device in it */
    int device_index;
    char platform[128];         /* CL_PLATFORM_NAME */
    char platform_version[128]; /* CL_PLATFORM_VERSION */
    char name[256];             /* CL_DEVICE_NAME */
    char vendor[128];           /* CL_DEVICE_VENDOR */
    char driver[128];           /* CL_DRIVER_VERSION */
    char version[128];          /* CL_DEVICE_VERSION, "OpenCL 3.0 ..." */
    char c_version[128];        /* CL_DEVICE_OPENCL_C_VERSION */
    char type[32];              /* "GPU", "CPU", "accelerator", "custom" */
    unsigned compute_units;
    unsigned clock_mhz;
    uint64_t global_mem, max_alloc, local_mem;
    size_t max_work_group;
    size_t max_item_size0;      /* CL_DEVICE_MAX_WORK_ITEM_SIZES[0] */
    bool available, compiler, fp64, is_cpu;
    int c_major, c_minor;       /* OpenCL C version parsed from c_version */
    /* The width in work-items of the device's SIMD groups where the vendor exposes it (NVIDIA's
     * warp, AMD's wavefront, the largest of Intel's sub-group sizes), else 0; simd_source names
     * the query ("" when none answered). */
    unsigned simd_width;
    char simd_source[64];
    unsigned native_float_width; /* CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT (PoCL: 8 with AVX2, 16 with
                                    AVX-512); 0 when the driver does not answer */
} pcv_cl_device_info;

/* True when this build has the OpenCL backend. */
bool pcv_cl_available(void);

/* Every OpenCL device of every platform, in index order; *out is malloc'd (free it). Returns
 * the count; a machine without any OpenCL platform has 0 devices (not an error). Returns -1
 * with err set only if the OpenCL runtime itself fails. */
int pcv_cl_list_devices(pcv_cl_device_info **out, pcv_error *err);

/* One line per device ("  0  GPU  NVIDIA H200 (NVIDIA CUDA, OpenCL C 1.2)") plus the cpu
 * path, for error messages. */
void pcv_cl_format_device_list(char *buf, size_t cap);

/* Resolves a --device string that is not "cpu": a global index ("0", "1", ...) or a
 * case-insensitive substring of "platform name / device name / vendor" (the first matching
 * device wins). Returns the index, or -1 with err listing the devices. */
int pcv_cl_find_device(const char *spec, pcv_error *err);

/* The number of work-items that share one row in the row kernels (LayerNorm, softmax) of
 * GPU-style devices: requested (a power of two: the tuning key row_ls, perceiver-cl tune), or
 * when it is 0 the default, two SIMD groups (simd_width; 64 when unknown) rounded up to a power
 * of two within 32..256; then halved until it fits the work-group size, the first dimension's item
 * limit and the local memory (12 bytes of reduction scratch per work-item). */
int pcv_cl_row_ls(const pcv_cl_device_info *info, int requested);

/* Switches of an OpenCL backend for tests and benchmarks (the runtime tuning string sets the
 * defaults; docs/opencl.md): attention 0 auto, 1 fused kernel, 2 GEMMs + softmax;
 * layout 0 auto, 1 row-major CLBlast calls, 2 column-major calls with swapped operands;
 * splits: key splits of the fused attention (0 automatic); gemm 0 auto, 1 CLBlast, 2 our own
 * GEMM kernels (cl/gemm.cl). They apply to every backend on the
 * same device. Both return false when be is not an OpenCL backend. */
typedef struct pcv_cl_switches {
    int attention, layout, splits, gemm;
    int64_t scores_max; /* bytes of scores the GEMM attention path holds at once (query chunks);
                           0: 256 MiB (tests lower it to split small shapes into chunks) */
    int64_t pack_max;   /* bytes of packed B our own GEMM holds at once (batch and column
                           slices); 0: 256 MiB (tests lower it) */
} pcv_cl_switches;
bool pcv_cl_get_switches(const pcv_backend *be, pcv_cl_switches *s);
bool pcv_cl_set_switches(pcv_backend *be, const pcv_cl_switches *s);

/* Loop iterations a work-item of be's device runs before the driver ends its loops (measured
 * when the device is opened: Mesa's llvmpipe stops at 65535, silently), or lowered by the tuning
 * key loop_limit=N; 0 when the device has no such limit, -1 when be is not an OpenCL backend.
 * Kernels that would exceed a share of it are split (attention) or refused with an error. */
int64_t pcv_cl_loop_limit(const pcv_backend *be);

/* Kernel launches (our kernels and CLBlast GEMMs) by all OpenCL backends of this process: tests
 * use it to prove that work ran on an OpenCL device. */
int64_t pcv_cl_launch_count(void);

/* Where compiled programs are cached (empty when caching is off): the runtime option cache_dir,
 * else $XDG_CACHE_HOME/perceiver-cl, else $HOME/.cache/perceiver-cl; kernel_cache=0 turns it off.
 * PoCL devices do not use it unless kernel_cache=1 (PoCL caches programs itself; see
 * opencl_program.c). */
const char *pcv_cl_cache_dir(void);
/* The cache folder the options and the environment name (the runtime option cache_dir, else
 * $XDG_CACHE_HOME/perceiver-cl, else $HOME/.cache/perceiver-cl; "" for none), whether or not
 * the kernel cache is on: tuning profiles live there too. */
void pcv_cl_user_cache_dir(char *dir, size_t cap);
/* Why that folder was refused ("" if it was not): owned by another user or writable by others.
 * A build that would use the cache fails with this message. */
const char *pcv_cl_cache_problem(void);
/* When POCL_CACHE_DIR is set but cannot be written (PoCL then finds no device, or fails every
 * build): a message naming it. */
bool pcv_cl_pocl_cache_problem(char *buf, size_t cap);

/* Whether compiled programs of this device go to that cache: yes unless the driver is PoCL
 * (which caches them itself); the runtime option kernel_cache=1 forces it. */
bool pcv_cl_cache_used(const pcv_cl_device_info *info);

/* ---- tuning profiles (perceiver-cl tune; docs/opencl.md "Tuning") ---------------------------
 * A profile is a tuning string ("xgemm=...,minind=N,layout=...,attention=...,splits=N") that
 * `perceiver-cl tune` measured to be the fastest verified choice for one device, stored as
 * <cache>/tuned-<hash>.txt with the device's identity (platform, device, driver, CLBlast
 * version): a new driver or CLBlast finds no profile. Opening a device loads its profile unless
 * the runtime tuning string says profile=0; explicit runtime tuning keys win over the profile's. */

/* The keys a profile may hold, checked value by value; false with why ("xgemm needs 16
 * numbers", ...) otherwise. */
bool pcv_cl_profile_check(const char *tuning, char *why, size_t whycap);
/* CLBlast Xgemm parameters: the 16 numbers of a tuning string's xgemm= key (GEMMK KREG KWG KWI
 * MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN; false when it has none), and whether
 * they are a valid set for the device (CLBlast's constraints, work-group size, local memory). */
bool pcv_cl_xgemm_parse(const char *tuning, int *p);
bool pcv_cl_xgemm_valid(const int *p, const pcv_cl_device_info *info);
/* Whether a device's GEMMs go to our own kernels (cl/gemm.cl) when no tuning key says (gemm=auto):
 * PoCL's CPU device. */
bool pcv_cl_own_gemm_default(const pcv_cl_device_info *info);
/* The tile of our GEMM on a device without tuning keys: vector width (gw, or 0 for the
 * device's native float width: 4, 8 or 16) and rows (6, or 12 for 16-wide vectors). */
void pcv_cl_own_gemm_tile(const pcv_cl_device_info *info, int gw, int *gw_out, int *mr);
/* The profile file of a device (path; false when there is no cache folder). */
bool pcv_cl_profile_path(const pcv_cl_device_info *info, char *path, size_t cap);
/* Reads the device's profile: 1 with tuning set, 0 when there is none, -1 with why when the
 * file is not a valid profile of this device (it is then ignored). */
int pcv_cl_profile_load(const pcv_cl_device_info *info, char *tuning, size_t cap, char *why, size_t whycap);
/* Writes the device's profile atomically (the cache folder made private first); comment is one
 * line of text kept in the file (what was measured). */
int pcv_cl_profile_save(const pcv_cl_device_info *info, const char *tuning, const char *comment, pcv_error *err);
/* Removes it; 0 also when there was none (*removed says which). */
int pcv_cl_profile_remove(const pcv_cl_device_info *info, bool *removed, pcv_error *err);

/* The CLBlast library this process runs: the name of the file it was loaded from
 * ("libclblast.so.1.5.3"), part of a profile's identity. */
const char *pcv_cl_clblast_version(void);
/* The CLBlast parameters in force on be's device now: the 16 Xgemm values (xgemm= order) and
 * XGEMM_MIN_INDIRECT_SIZE (false for other backends, or when CLBlast cannot say). */
bool pcv_cl_clblast_current(const pcv_backend *be, size_t *xgemm, size_t *minind);
/* The device of an OpenCL backend (false for other backends). */
bool pcv_cl_backend_info(const pcv_backend *be, pcv_cl_device_info *info);
/* The profile an OpenCL backend's device runs with ("" none) and its file; false for other
 * backends. */
bool pcv_cl_backend_profile(const pcv_backend *be, char *tuning, size_t cap, char *path, size_t pathcap);
/* The tuner's switch: makes tuning (a profile string, "" for the defaults) the device's profile
 * at once: CLBlast parameters (its caches are cleared), GEMM layout, attention path and splits.
 * Runtime tuning keys still win. An invalid string or parameters CLBlast refuses are an error
 * and leave the defaults in place. */
int pcv_cl_retune(pcv_backend *be, const char *tuning, pcv_error *err);

#endif
