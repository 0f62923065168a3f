/* The OpenCL backend: every operation of backend.h on one OpenCL 1.2+ device.
 *
 *  - Buffers are cl_mem objects; operands are (cl_mem, element offset) pairs passed straight to
 *    CLBlast and to our kernels (no sub-buffers, whose origins have alignment rules).
 *  - One in-order command queue per device: operations only enqueue, nothing waits inside an
 *    operation; download() is a blocking read, which is the one synchronization of a forward
 *    pass (synchronize() is called only when profiling).
 *  - GEMMs go to CLBlast (strided-batched when batch > 1). On CPU devices (PoCL) CLBlast's
 *    built-in parameters are 2-5x slower than a tuned set, so we install one with
 *    CLBlastOverrideParameters, and we choose per call between the row-major call and the
 *    equivalent column-major call with swapped operands (C^T = B^T A^T), whichever makes
 *    CLBlast's slow dimension the small one.
 *  - Attention: the fused streaming-softmax kernel (cl/attention.cl), which never builds the
 *    nq x nk score matrix, for every shape by default; PERCEIVER_ATTENTION=gemm instead uses
 *    CLBlast strided-batched GEMMs (heads batched) around a masked softmax kernel, which
 *    materializes the scores of one batch entry.
 *  - One context, queue and set of programs per device per process, shared by all backends on
 *    that device (programs are built once per context; CLBlast also caches per context).
 *    These live until the process exits. The backend is not thread-safe (like the CPU one).
 *
 * Developer overrides come from the runtime options' tuning string (pcv_runtime_options.tuning,
 * docs/opencl.md; the command-line tool maps PERCEIVER_ATTENTION, PERCEIVER_GEMM_LAYOUT,
 * PERCEIVER_CLBLAST_* and PERCEIVER_ATTN_SPLITS onto it):
 *   attention=fused|gemm|auto  layout=row|swap|auto  clblast=0 (no parameter overrides)
 *   xgemm=16 numbers (Xgemm parameters instead of ours)  minind=N (XGEMM_MIN_INDIRECT_SIZE)
 *   splits=N (key splits of the fused attention kernel)
 * Test hooks (a simulated device loss) are in backend/testing.h.
 */
#define _GNU_SOURCE /* dladdr */
#include "backend/opencl_impl.h"
#include "util/error.h"

#ifdef PCV_HAVE_OPENCL
#include <dlfcn.h>
#include <limits.h>

#include "backend/backend_impl.h"
#include "backend/testing.h"
#include "util/clock.h"

#include <clblast_c.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct pcv_buffer {
    cl_mem mem;
    size_t bytes;
};

enum {
    K_BIAS_ADD, K_ADD, K_ACTIVATION, K_GATHER, K_REPEAT, K_SCALE, K_TRANSPOSE, K_COPY2D, K_IM2COL, K_CHANNEL_AFFINE,
    K_MAXPOOL, K_LOOP_PROBE, K_EPILOGUE, K_LAYERNORM, K_SOFTMAX, K_ATTN_SOFTMAX, K_COUNT
};
static const struct {
    int program; /* 0 elementwise.cl, 1 rows.cl */
    const char *name;
} kernel_table[K_COUNT] = {
    [K_BIAS_ADD] = {0, "bias_add"},   [K_ADD] = {0, "add"},
    [K_ACTIVATION] = {0, "activation"},           [K_GATHER] = {0, "gather"},
    [K_REPEAT] = {0, "repeat"},       [K_SCALE] = {0, "scale_matrix"},
    [K_TRANSPOSE] = {0, "transpose"}, [K_COPY2D] = {0, "copy2d"},
    [K_IM2COL] = {0, "im2col"},       [K_CHANNEL_AFFINE] = {0, "channel_affine"},
    [K_MAXPOOL] = {0, "maxpool"},     [K_LOOP_PROBE] = {0, "loop_probe"},
    [K_EPILOGUE] = {0, "epilogue"},
    [K_LAYERNORM] = {1, "layernorm"},
    [K_SOFTMAX] = {1, "softmax"},     [K_ATTN_SOFTMAX] = {1, "attn_softmax"},
};
static const char *const program_files[2] = {"elementwise.cl", "rows.cl"};

/* One specialization of cl/attention.cl (rows per work-item, output vectors per work-item). */
typedef struct attn_variant {
    int qb, nv;
    cl_program prog;
    cl_kernel transpose, fused, combine;
} attn_variant;

enum { MAX_DEVICES = 64, MAX_ATTN_VARIANTS = 32 };
enum { LAYOUT_AUTO, LAYOUT_ROW, LAYOUT_SWAP };
enum { ATTN_AUTO, ATTN_FUSED, ATTN_GEMM };
enum { GEMM_AUTO, GEMM_CLBLAST, GEMM_OWN };

/* Everything about one device, shared by the backends that use it. */
typedef struct cl_dev {
    pcv_cl_device_info info;
    cl_platform_id platform;
    cl_device_id dev;
    cl_context ctx;
    cl_command_queue queue;
    cl_program progs[2];
    cl_kernel k[K_COUNT];
    attn_variant attn[MAX_ATTN_VARIANTS];
    int nattn;
    cl_mem dummy;              /* bound to absent optional arguments */
    cl_mem scratch[3];         /* attention: [0] transposed K or scores, [1] split partials;
                                  [2] the own GEMM's packed B */
    size_t scratch_bytes[3];
    cl_program gemm_prog;      /* cl/gemm.cl, built when first used */
    cl_kernel gemm_pack, gemm_tile;
    int gemm_gw, gemm_mr;      /* its vector width and tile rows (own_gemm_config) */
    int built_gw, built_mr;    /* those of gemm_prog */
    uint64_t in_use;
    int vw, row_ls;
    int64_t loop_limit;        /* loop iterations a work-item runs before the driver ends its loops; 0: none */
    bool loop_limit_probed;    /* measured on the device (not only the tuning key loop_limit=N) */
    bool gpu_like; /* GPU kernel configuration (see dev_init) */
    bool attn_gemm_auto; /* the automatic attention path is the CLBlast one (see dev_init) */
    int64_t attn_gemm_d; /* tuning key attn_gemm_d: the CLBlast path from this head size on (0: never) */
    int64_t scores_max;  /* switch: the GEMM path's score chunk in bytes (0: ATTN_SCORES_MAX) */
    int64_t pack_max;    /* switch: our own GEMM's packed B in bytes (0: OWN_PACK_MAX) */
    size_t db_xgemm[16], db_minind; /* CLBlast's database values for the device, read before any
                                       override (have_db): what "no override" puts back */
    bool have_db;
    char options[256];
    char profile[512];         /* the device's tuning profile ("" none): opencl_profile.c */
    char profile_path[4300];
    int layout, attn_path, force_splits, gemm_path;
    bool own_gemm_auto;        /* the automatic GEMM is our own (PoCL's CPU device: see dev_init) */
    int64_t fail_after;        /* test hook: launches left before a simulated loss, -1 = never */
    bool trace;                /* runtime option: finish and time every launch (stderr) */
    bool lost;
    char lost_msg[512];
} cl_dev;

static cl_dev *g_devs[MAX_DEVICES];
static _Atomic int64_t g_launches; /* devices run from several threads (one per device) */

int64_t pcv_cl_launch_count(void) { return g_launches; }

/* One backend on a device: the device plus what the opener asked for. */
typedef struct cl_be {
    cl_dev *d;
    uint64_t max_alloc;   /* the device's limit, or lower (pcv_backend_options.max_alloc) */
    bool max_alloc_lowered;
} cl_be;

#define DEV(be) (((cl_be *)(be)->ctx)->d)
#define MAX_ALLOC(be) (((cl_be *)(be)->ctx)->max_alloc)

enum { LOOP_SHARE = 4 }; /* see loop_check */

/* An error from the OpenCL runtime during `what`. Codes that mean the device or its memory is
 * gone make the device unusable for the rest of the process, with one clear message. */
static int cl_fail(cl_dev *d, cl_int rc, const char *what, pcv_error *err)
{
    char eb[48];
    const char *name = pcv_cl_error_name(rc, eb, sizeof eb);
    switch (rc) {
    case CL_OUT_OF_RESOURCES:
    case CL_DEVICE_NOT_AVAILABLE:
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST:
    case CL_INVALID_COMMAND_QUEUE:
    case CL_INVALID_CONTEXT:
    case -9999:
        if (!d->lost)
            snprintf(d->lost_msg, sizeof d->lost_msg,
                     "OpenCL device %d '%s' failed during %s: %s%s. The device was lost, reset or ran out of "
                     "memory; results of this process are not valid (run again, or choose another device)",
                     d->info.index, d->info.name, what, name,
                     d->fail_after == 0 ? " (simulated by a test hook)" : "");
        d->lost = true;
        return pcv_set_error(err, PCV_ERR_DEVICE, "%s", d->lost_msg);
    case CL_OUT_OF_HOST_MEMORY:
        return pcv_set_error(err, PCV_ERR_OOM, "OpenCL device %d '%s': out of host memory during %s",
                             d->info.index, d->info.name, what);
    default:
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d '%s': %s failed: %s", d->info.index,
                             d->info.name, what, name);
    }
}

static int check_lost(cl_dev *d, pcv_error *err)
{
    return d->lost ? pcv_set_error(err, PCV_ERR_DEVICE, "%s", d->lost_msg) : 0;
}

/* ---- kernel launches ------------------------------------------------------------------------ */

typedef struct karg {
    size_t size;
    const void *ptr;
} karg;
#define A(x) {sizeof(x), &(x)}
#define NARGS(a) ((int)(sizeof(a) / sizeof *(a)))

/* Test hook: simulate a device that disappears after N launches. */
static bool simulated_loss(cl_dev *d)
{
    if (d->fail_after < 0)
        return false;
    if (d->fail_after == 0)
        return true;
    d->fail_after--;
    return false;
}

static int launch(cl_dev *d, cl_kernel k, const char *what, cl_uint dims, const size_t *gws, const size_t *lws,
                  const karg *args, int nargs, pcv_error *err)
{
    int rc = check_lost(d, err);
    if (rc)
        return rc;
    for (cl_uint i = 0; i < dims; i++)
        if (gws[i] == 0)
            return 0; /* empty operation */
    for (int i = 0; i < nargs; i++) {
        cl_int r = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].ptr);
        if (r != CL_SUCCESS) {
            char w[96];
            snprintf(w, sizeof w, "%s (argument %d)", what, i);
            return cl_fail(d, r, w, err);
        }
    }
    double t0 = d->trace ? pcv_now() : 0;
    cl_int r = simulated_loss(d) ? CL_DEVICE_NOT_AVAILABLE
                                 : clEnqueueNDRangeKernel(d->queue, k, dims, NULL, gws, lws, 0, NULL, NULL);
    if (r != CL_SUCCESS)
        return cl_fail(d, r, what, err);
    g_launches++;
    if (d->trace) {
        r = clFinish(d->queue);
        fprintf(stderr, "perceiver-cl trace: %-28s global %zu x %zu x %zu: %.3f ms\n", what, gws[0],
                dims > 1 ? gws[1] : 1, dims > 2 ? gws[2] : 1, (pcv_now() - t0) * 1e3);
        if (r != CL_SUCCESS)
            return cl_fail(d, r, what, err);
    }
    return 0;
}

/* The work-group size for one-work-item-per-element kernels: the driver's choice. On CPU
 * devices with explicit-vector kernels (rows, attention) we ask for 1 work-item per group. */
static const size_t *row_local(cl_dev *d, size_t *lws)
{
    lws[0] = (size_t)d->row_ls;
    lws[1] = 1;
    return lws;
}

/* ---- memory --------------------------------------------------------------------------------- */

static const char *mib(char *buf, size_t cap, uint64_t b)
{
    if (b >= ((uint64_t)1 << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (double)((uint64_t)1 << 30));
    else if (b >= ((uint64_t)1 << 20))
        snprintf(buf, cap, "%.1f MiB", (double)b / 1048576.0);
    else
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024.0);
    return buf;
}

static pcv_buffer *ocl_alloc(pcv_backend *be, size_t bytes, pcv_error *err)
{
    cl_dev *d = DEV(be);
    if (check_lost(d, err))
        return NULL;
    char b1[32], b2[32], b3[32];
    uint64_t cap = MAX_ALLOC(be);
    if (bytes > cap) {
        pcv_set_error(err, PCV_ERR_OOM,
                      "OpenCL device %d '%s': allocation of %zu bytes (%s) exceeds the device's maximum allocation "
                      "of %llu bytes (%s, %s)",
                      d->info.index, d->info.name, bytes, mib(b1, sizeof b1, bytes), (unsigned long long)cap,
                      mib(b2, sizeof b2, cap),
                      ((cl_be *)be->ctx)->max_alloc_lowered ? "lowered by the max_alloc option"
                                                            : "CL_DEVICE_MAX_MEM_ALLOC_SIZE");
        return NULL;
    }
    if (d->in_use + bytes > d->info.global_mem) {
        pcv_set_error(err, PCV_ERR_OOM,
                      "OpenCL device %d '%s': allocation of %zu bytes (%s) does not fit: %s are in use of the "
                      "device's %s of global memory",
                      d->info.index, d->info.name, bytes, mib(b1, sizeof b1, bytes), mib(b2, sizeof b2, d->in_use),
                      mib(b3, sizeof b3, d->info.global_mem));
        return NULL;
    }
    pcv_buffer *b = calloc(1, sizeof *b);
    if (!b) {
        pcv_set_error(err, PCV_ERR_OOM, "out of host memory");
        return NULL;
    }
    cl_int rc = CL_SUCCESS;
    /* a zero-size buffer is invalid in OpenCL; empty tensors get a small one */
    b->mem = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, bytes ? bytes : 16, NULL, &rc);
    if (!b->mem || rc != CL_SUCCESS) {
        free(b);
        char eb[48];
        if (rc == CL_MEM_OBJECT_ALLOCATION_FAILURE || rc == CL_OUT_OF_RESOURCES || rc == CL_INVALID_BUFFER_SIZE ||
            rc == CL_OUT_OF_HOST_MEMORY)
            pcv_set_error(err, PCV_ERR_OOM, "OpenCL device %d '%s': cannot allocate %zu bytes (%s): %s",
                          d->info.index, d->info.name, bytes, mib(b1, sizeof b1, bytes),
                          pcv_cl_error_name(rc, eb, sizeof eb));
        else
            cl_fail(d, rc, "clCreateBuffer", err);
        return NULL;
    }
    b->bytes = bytes;
    d->in_use += bytes;
    return b;
}

static void ocl_release(pcv_backend *be, pcv_buffer *b)
{
    if (!b)
        return;
    cl_dev *d = DEV(be);
    /* safe with commands still queued: OpenCL frees the memory after they complete */
    clReleaseMemObject(b->mem);
    d->in_use -= b->bytes;
    free(b);
}

static int ocl_upload(pcv_backend *be, pcv_buffer *dst, size_t off, const void *src, size_t n, pcv_error *err)
{
    cl_dev *d = DEV(be);
    int rc = check_lost(d, err);
    if (rc)
        return rc;
    if (off > dst->bytes || n > dst->bytes - off)
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL: upload of %zu bytes at %zu exceeds buffer of %zu", n, off,
                             dst->bytes);
    if (n == 0)
        return 0;
    /* blocking: the caller may free src right away; uploads happen before a forward's kernels */
    cl_int r = clEnqueueWriteBuffer(d->queue, dst->mem, CL_TRUE, off, n, src, 0, NULL, NULL);
    return r == CL_SUCCESS ? 0 : cl_fail(d, r, "upload (clEnqueueWriteBuffer)", err);
}

static int ocl_download(pcv_backend *be, pcv_buffer *src, size_t off, void *dst, size_t n, pcv_error *err)
{
    cl_dev *d = DEV(be);
    int rc = check_lost(d, err);
    if (rc)
        return rc;
    if (off > src->bytes || n > src->bytes - off)
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL: download of %zu bytes at %zu exceeds buffer of %zu", n,
                             off, src->bytes);
    if (n == 0)
        return 0;
    cl_int r = simulated_loss(d) ? CL_DEVICE_NOT_AVAILABLE
                                 : clEnqueueReadBuffer(d->queue, src->mem, CL_TRUE, off, n, dst, 0, NULL, NULL);
    return r == CL_SUCCESS ? 0 : cl_fail(d, r, "download (clEnqueueReadBuffer)", err);
}

static int ocl_synchronize(pcv_backend *be, pcv_error *err)
{
    cl_dev *d = DEV(be);
    int rc = check_lost(d, err);
    if (rc)
        return rc;
    cl_int r = clFinish(d->queue);
    return r == CL_SUCCESS ? 0 : cl_fail(d, r, "clFinish", err);
}

/* Scratch memory for attention, grown on demand (the old buffer is released after the
 * commands that use it, so growing never waits). */
static cl_mem scratch(cl_dev *d, int slot, size_t bytes, pcv_error *err)
{
    if (d->scratch_bytes[slot] >= bytes)
        return d->scratch[slot];
    char b1[32], b2[32];
    const char *user = slot == 2 ? "GEMM packing" : "attention";
    if (bytes > d->info.max_alloc) {
        pcv_set_error(err, PCV_ERR_OOM,
                      "OpenCL device %d '%s': %s needs %zu bytes (%s) of scratch memory, more than the "
                      "maximum allocation of %llu bytes (%s)",
                      d->info.index, d->info.name, user, bytes, mib(b1, sizeof b1, bytes),
                      (unsigned long long)d->info.max_alloc, mib(b2, sizeof b2, d->info.max_alloc));
        return NULL;
    }
    if (d->scratch[slot]) {
        clReleaseMemObject(d->scratch[slot]);
        d->in_use -= d->scratch_bytes[slot];
    }
    d->scratch[slot] = NULL;
    d->scratch_bytes[slot] = 0;
    cl_int rc = CL_SUCCESS;
    cl_mem m = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    if (!m || rc != CL_SUCCESS) {
        if (rc == CL_MEM_OBJECT_ALLOCATION_FAILURE || rc == CL_INVALID_BUFFER_SIZE || rc == CL_OUT_OF_RESOURCES)
            pcv_set_error(err, PCV_ERR_OOM, "OpenCL device %d '%s': cannot allocate %s of %s scratch memory",
                          d->info.index, d->info.name, mib(b1, sizeof b1, bytes), user);
        else
            cl_fail(d, rc, slot == 2 ? "allocating GEMM packing memory" : "allocating attention scratch memory", err);
        return NULL;
    }
    d->scratch[slot] = m;
    d->scratch_bytes[slot] = bytes;
    d->in_use += bytes;
    return m;
}

/* ---- GEMM (CLBlast) --------------------------------------------------------------------------- */

static const char *clblast_status(CLBlastStatusCode s, char *buf, size_t cap)
{
    switch (s) {
    case CLBlastNotImplemented: return "CLBlastNotImplemented";
    case CLBlastInvalidMatrixA: return "CLBlastInvalidMatrixA";
    case CLBlastInvalidMatrixB: return "CLBlastInvalidMatrixB";
    case CLBlastInvalidMatrixC: return "CLBlastInvalidMatrixC";
    case CLBlastInvalidDimension: return "CLBlastInvalidDimension";
    case CLBlastInvalidLeadDimA: return "CLBlastInvalidLeadDimA";
    case CLBlastInvalidLeadDimB: return "CLBlastInvalidLeadDimB";
    case CLBlastInvalidLeadDimC: return "CLBlastInvalidLeadDimC";
    case CLBlastInsufficientMemoryA: return "CLBlastInsufficientMemoryA (matrix A exceeds its buffer)";
    case CLBlastInsufficientMemoryB: return "CLBlastInsufficientMemoryB (matrix B exceeds its buffer)";
    case CLBlastInsufficientMemoryC: return "CLBlastInsufficientMemoryC (matrix C exceeds its buffer)";
    case CLBlastInvalidBatchCount: return "CLBlastInvalidBatchCount";
    case CLBlastInvalidOverrideKernel: return "CLBlastInvalidOverrideKernel";
    case CLBlastMissingOverrideParameter: return "CLBlastMissingOverrideParameter";
    case CLBlastInvalidLocalMemUsage: return "CLBlastInvalidLocalMemUsage";
    case CLBlastDatabaseError: return "CLBlastDatabaseError";
    case CLBlastUnknownError: return "CLBlastUnknownError";
    case CLBlastUnexpectedError: return "CLBlastUnexpectedError";
    default: return pcv_cl_error_name((cl_int)s, buf, cap); /* the OpenCL codes */
    }
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T with the operands swapped.
 * CLBlast is slow when its m (the free dimension of its first operand) is the large one (the
 * kernel then streams a new panel of that operand for every tile, with a huge stride), so we
 * make the larger of m and n CLBlast's n. */
static bool use_swap(const cl_dev *d, const pcv_gemm_args *g)
{
    if (d->layout == LAYOUT_ROW)
        return false;
    if (d->layout == LAYOUT_SWAP)
        return true;
    return g->n <= 2 * g->m;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- GEMM (our own, cl/gemm.cl) ---------------------------------------------------------------
 * On PoCL's CPU device a work-item of a 1x1 work-group is a plain loop on one thread, so a
 * work-item written as a BLAS micro-kernel (a tile of C in registers) runs like one: op(B) is
 * first packed into panels of the tile's width (contiguous whatever its layout), then each
 * work-item computes one tile over the whole k range and applies the epilogue as it stores. */
enum { OWN_PACK_K = 64 };
#define OWN_PACK_MAX ((size_t)256 << 20) /* packed B held at once; larger B runs in column slices */

static bool use_own_gemm(const cl_dev *d)
{
    return d->gemm_path == GEMM_OWN || (d->gemm_path == GEMM_AUTO && d->own_gemm_auto);
}

/* PoCL's CPU device: 110-180 GFLOP/s on the models' shapes on 2 zen3 cores where CLBlast, tuned,
 * reaches 35-50 (docs/opencl.md). Elsewhere CLBlast: on llvmpipe and GPUs a work-item is a SIMD
 * lane, not a thread (perceiver-cl tune measures both). */
bool pcv_cl_own_gemm_default(const pcv_cl_device_info *info)
{
    return info->is_cpu && strstr(info->platform, "Portable Computing Language") != NULL;
}

static const char *tuning_value(const cl_dev *d, const char *key, char *buf, size_t cap);

/* The tile of our GEMM: vectors of the device's native float width (PoCL: its CPU's register,
 * 8 floats with AVX2, 16 with AVX-512; 4 to 16), two per tile row, and as many rows as leave
 * the accumulators in registers (6 with 16 registers, 12 with AVX-512's 32: 2 x rows
 * accumulators, two B vectors, one broadcast). Tuning keys gemm_vw=4|8|16, gemm_mr=1..16. */
void pcv_cl_own_gemm_tile(const pcv_cl_device_info *info, int gw, int *gw_out, int *mr)
{
    unsigned w = info->native_float_width;
    *gw_out = gw ? gw : w >= 16 ? 16 : w >= 8 ? 8 : 4;
    *mr = *gw_out == 16 ? 12 : 6;
}

static void own_gemm_config(const cl_dev *d, int *gw, int *mr)
{
    char v[32];
    long x;
    int want = 0;
    if (tuning_value(d, "gemm_vw", v, sizeof v) && ((x = strtol(v, NULL, 10)) == 4 || x == 8 || x == 16))
        want = (int)x;
    pcv_cl_own_gemm_tile(&d->info, want, gw, mr);
    if (tuning_value(d, "gemm_mr", v, sizeof v) && (x = strtol(v, NULL, 10)) >= 1 && x <= 16)
        *mr = (int)x;
}

static void own_gemm_release(cl_dev *d)
{
    if (d->gemm_pack)
        clReleaseKernel(d->gemm_pack), d->gemm_pack = NULL;
    if (d->gemm_tile)
        clReleaseKernel(d->gemm_tile), d->gemm_tile = NULL;
    if (d->gemm_prog)
        clReleaseProgram(d->gemm_prog), d->gemm_prog = NULL;
}

/* Builds cl/gemm.cl for the current tile (again when the tuning changed it). */
static int own_gemm_build(cl_dev *d, pcv_error *err)
{
    if (d->gemm_tile && d->built_gw == d->gemm_gw && d->built_mr == d->gemm_mr)
        return 0;
    own_gemm_release(d);
    char opts[320], eb[48];
    snprintf(opts, sizeof opts, "%s -D GW=%d -D MR=%d", d->options, d->gemm_gw, d->gemm_mr);
    d->built_gw = d->gemm_gw, d->built_mr = d->gemm_mr;
    int rc = pcv_cl_build_program(d->ctx, d->dev, &d->info, "gemm.cl", opts, &d->gemm_prog, err);
    if (rc)
        return rc;
    cl_int r1 = CL_SUCCESS, r2 = CL_SUCCESS;
    d->gemm_pack = clCreateKernel(d->gemm_prog, "gemm_pack_b", &r1);
    d->gemm_tile = clCreateKernel(d->gemm_prog, "gemm_tile", &r2);
    if (!d->gemm_pack || !d->gemm_tile || r1 != CL_SUCCESS || r2 != CL_SUCCESS) {
        own_gemm_release(d);
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d '%s': kernels of cl/gemm.cl: %s", d->info.index,
                             d->info.name, pcv_cl_error_name(r1 != CL_SUCCESS ? r1 : r2, eb, sizeof eb));
    }
    return 0;
}

/* C = alpha op(A) op(B) + beta C, then, when epi, g's epilogue (bias, GELU, residual; batch 1,
 * ldc == n) in the same pass. k > 0, m, n, batch > 0. The packed B is cut into slices of
 * batch entries, and of columns when one entry is larger than OWN_PACK_MAX (the switch
 * pack_max; at most the device's allocation limit). */
static int own_gemm(pcv_backend *be, const pcv_gemm_args *g, bool epi, pcv_error *err)
{
    cl_dev *d = DEV(be);
    int rc = own_gemm_build(d, err);
    if (rc)
        return rc;
    const uint64_t limit = MAX_ALLOC(be);
    size_t cap = d->pack_max > 0 ? (size_t)d->pack_max : OWN_PACK_MAX;
    if (cap > limit)
        cap = (size_t)limit;
    const int64_t nr = 2 * d->gemm_gw, mr = d->gemm_mr; /* the tile */
    size_t panel = (size_t)(g->k * nr) * sizeof(float); /* one panel of nr columns */
    if (panel > limit) {
        char b1[32], b2[32];
        return pcv_set_error(err, PCV_ERR_OOM,
                             "OpenCL device %d '%s': our GEMM packs %zu bytes (%s) of B per %lld columns (k = %lld), "
                             "more than the device's maximum allocation of %llu bytes (%s, %s); PERCEIVER_GEMM=clblast "
                             "needs no packing",
                             d->info.index, d->info.name, panel, mib(b1, sizeof b1, panel), (long long)nr,
                             (long long)g->k, (unsigned long long)limit, mib(b2, sizeof b2, limit),
                             ((cl_be *)be->ctx)->max_alloc_lowered ? "lowered by the max_alloc option"
                                                                   : "CL_DEVICE_MAX_MEM_ALLOC_SIZE");
    }
    int64_t njb_all = cdiv(g->n, nr), cols = g->n, bg = g->batch;
    if ((size_t)njb_all * panel > cap) { /* column slices of one batch entry */
        bg = 1;
        cols = (int64_t)(cap / panel) * nr;
        if (cols < nr)
            cols = nr; /* one panel, within the limit (checked above) */
    } else if ((size_t)(njb_all * bg) * panel > cap) {
        bg = (int64_t)(cap / ((size_t)njb_all * panel));
    }
    cl_mem bp = scratch(d, 2, (size_t)(cdiv(cols, nr) * bg) * panel, err);
    if (!bp)
        return -1;
    const cl_int ta = g->trans_a, tb = g->trans_b;
    const cl_int has_bias = epi && g->bias, gelu = epi && g->gelu, has_res = epi && g->res;
    const cl_long k = g->k, m = g->m, lda = g->lda, ldb = g->ldb, ldc = g->ldc;
    const cl_long sa = g->stride_a, sb = g->stride_b, sc = g->stride_c;
    const cl_float alpha = g->alpha, beta = g->beta;
    cl_mem bm = has_bias ? g->bias->mem : d->dummy, rm = has_res ? g->res->mem : d->dummy;
    for (int64_t b0 = 0; b0 < g->batch; b0 += bg) {
        const int64_t nb = g->batch - b0 < bg ? g->batch - b0 : bg;
        for (int64_t j0 = 0; j0 < g->n; j0 += cols) {
            const cl_long n = g->n - j0 < cols ? g->n - j0 : cols;
            const int64_t njb = cdiv(n, nr);
            const cl_ulong ao = g->a_off + (size_t)(b0 * g->stride_a),
                           bo = g->b_off + (size_t)(b0 * g->stride_b) + (size_t)(tb ? j0 * g->ldb : j0),
                           co = g->c_off + (size_t)(b0 * g->stride_c) + (size_t)j0,
                           bio = has_bias ? g->bias_off + (size_t)j0 : 0, ro = has_res ? g->res_off + (size_t)j0 : 0;
            karg pa[] = {A(g->b->mem), A(bo), A(ldb), A(sb), A(tb), A(k), A(n), A(bp)};
            size_t one[3] = {1, 1, 1};
            size_t pg[3] = {(size_t)njb, (size_t)cdiv(k, OWN_PACK_K), (size_t)nb};
            if ((rc = launch(d, d->gemm_pack, "gemm (own): packing B", 3, pg, one, pa, NARGS(pa), err)))
                return rc;
            /* consecutive work-items keep what is reused in cache: the A rows of a tile when the
             * packed B is the smaller operand (it is then streamed again per row tile), else the
             * B panel */
            const cl_int bfirst = (double)(njb * nr) <= (double)m;
            karg ta_[] = {A(g->a->mem), A(ao), A(lda), A(sa), A(ta), A(bp), A(k), A(g->c->mem), A(co),
                          A(ldc), A(sc), A(m), A(n), A(alpha), A(beta), A(bm), A(bio), A(has_bias),
                          A(gelu), A(rm), A(ro), A(has_res), A(bfirst)};
            size_t tg[3] = {(size_t)cdiv(m, mr), (size_t)njb, (size_t)nb};
            if (bfirst)
                tg[0] = (size_t)njb, tg[1] = (size_t)cdiv(m, mr);
            if ((rc = launch(d, d->gemm_tile, "gemm (own)", 3, tg, one, ta_, NARGS(ta_), err)))
                return rc;
        }
    }
    return 0;
}

/* The longest k one GEMM call may have on a device that ends loops early (0: any): a work-item
 * of CLBlast's kernel with KWI 1 loops k times, ours k times its tile rows (counted as if its row loop
 * were not unrolled: llvmpipe's limit counts the iterations of nested loops together). */
static int64_t gemm_kmax(const cl_dev *d)
{
    if (d->loop_limit <= 0)
        return 0;
    return d->loop_limit / LOOP_SHARE / (use_own_gemm(d) ? d->gemm_mr : 1);
}

/* C = alpha op(A) op(B) + beta C through CLBlast or our own GEMM (g's epilogue fields are not
 * read). */
static int gemm_core(pcv_backend *be, const pcv_gemm_args *g, pcv_error *err)
{
    cl_dev *d = DEV(be);
    int rc = check_lost(d, err);
    if (rc)
        return rc;
    if (g->m <= 0 || g->n <= 0 || g->batch <= 0)
        return 0;
    if (g->k <= 0) { /* C = beta C */
        cl_ulong off = g->c_off;
        cl_long ldc = g->ldc, stride = g->stride_c;
        cl_float beta = g->beta;
        karg args[] = {A(g->c->mem), A(off), A(ldc), A(stride), A(beta)};
        size_t gws[3] = {(size_t)g->n, (size_t)g->m, (size_t)g->batch};
        return launch(d, d->k[K_SCALE], "gemm (k = 0)", 3, gws, NULL, args, NARGS(args), err);
    }
    /* On a device that ends loops early, a long reduction is cut into slices of k that no
     * parameter set can loop over too long (KWI 1 loops k times per work-item; llvmpipe ends
     * loops after 65535 iterations): C = alpha A1 B1 + beta C, then C += alpha Ai Bi. */
    int64_t kmax = gemm_kmax(d);
    if (kmax > 0 && g->k > kmax) {
        for (int64_t k0 = 0; k0 < g->k; k0 += kmax) {
            pcv_gemm_args part = *g;
            part.k = g->k - k0 < kmax ? g->k - k0 : kmax;
            part.beta = k0 ? 1.0f : g->beta;
            part.a_off += (size_t)(g->trans_a ? k0 * g->lda : k0);
            part.b_off += (size_t)(g->trans_b ? k0 : k0 * g->ldb);
            if ((rc = gemm_core(be, &part, err)))
                return rc;
        }
        return 0;
    }
    if (use_own_gemm(d))
        return own_gemm(be, g, false, err);
    if (simulated_loss(d))
        return cl_fail(d, CL_DEVICE_NOT_AVAILABLE, "gemm", err);
    double t0 = d->trace ? pcv_now() : 0;
    const CLBlastTranspose ta = g->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = g->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    cl_event ev = NULL;
    CLBlastStatusCode st = CLBlastSuccess;
    bool swap = use_swap(d, g);
    /* CLBlast 1.5.3's strided-batched GEMM gives wrong results for batch entries >= 1 when A is
     * transposed and the batch stride of A is not exactly m*k (found by tests/test_ops.c on
     * PoCL, with default and tuned parameters alike); those batches are a loop of single GEMMs */
    bool batched = g->batch > 1 && !g->trans_a;
    for (int64_t i = 0; i < (batched ? 1 : g->batch) && st == CLBlastSuccess; i++) {
        size_t ao = g->a_off + (size_t)(i * g->stride_a), bo = g->b_off + (size_t)(i * g->stride_b),
               co = g->c_off + (size_t)(i * g->stride_c);
        if (ev)
            clReleaseEvent(ev);
        ev = NULL;
        if (batched && swap)
            st = CLBlastSgemmStridedBatched(CLBlastLayoutColMajor, tb, ta, (size_t)g->n, (size_t)g->m, (size_t)g->k,
                                            g->alpha, g->b->mem, bo, (size_t)g->ldb, (size_t)g->stride_b, g->a->mem,
                                            ao, (size_t)g->lda, (size_t)g->stride_a, g->beta, g->c->mem, co,
                                            (size_t)g->ldc, (size_t)g->stride_c, (size_t)g->batch, &d->queue, &ev);
        else if (batched)
            st = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, (size_t)g->m, (size_t)g->n, (size_t)g->k,
                                            g->alpha, g->a->mem, ao, (size_t)g->lda, (size_t)g->stride_a, g->b->mem,
                                            bo, (size_t)g->ldb, (size_t)g->stride_b, g->beta, g->c->mem, co,
                                            (size_t)g->ldc, (size_t)g->stride_c, (size_t)g->batch, &d->queue, &ev);
        else if (swap)
            st = CLBlastSgemm(CLBlastLayoutColMajor, tb, ta, (size_t)g->n, (size_t)g->m, (size_t)g->k, g->alpha,
                              g->b->mem, bo, (size_t)g->ldb, g->a->mem, ao, (size_t)g->lda, g->beta, g->c->mem, co,
                              (size_t)g->ldc, &d->queue, &ev);
        else
            st = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)g->m, (size_t)g->n, (size_t)g->k, g->alpha,
                              g->a->mem, ao, (size_t)g->lda, g->b->mem, bo, (size_t)g->ldb, g->beta, g->c->mem, co,
                              (size_t)g->ldc, &d->queue, &ev);
    }
    if (ev)
        clReleaseEvent(ev);
    if (d->trace && st == CLBlastSuccess) {
        clFinish(d->queue);
        fprintf(stderr, "perceiver-cl trace: %-28s m %lld n %lld k %lld batch %lld%s: %.3f ms\n", "gemm (CLBlast)",
                (long long)g->m, (long long)g->n, (long long)g->k, (long long)g->batch, swap ? " swapped" : "",
                (pcv_now() - t0) * 1e3);
    }
    if (st != CLBlastSuccess) {
        char what[160], eb[48];
        snprintf(what, sizeof what, "CLBlast sgemm %c%c m=%lld n=%lld k=%lld batch=%lld", g->trans_a ? 'T' : 'N',
                 g->trans_b ? 'T' : 'N', (long long)g->m, (long long)g->n, (long long)g->k, (long long)g->batch);
        if ((int)st > -1000) /* an OpenCL error code passed through */
            return cl_fail(d, (cl_int)st, what, err);
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d '%s': %s failed: %s", d->info.index, d->info.name,
                             what, clblast_status(st, eb, sizeof eb));
    }
    g_launches++;
    return 0;
}

/* ---- small operations -------------------------------------------------------------------- */

/* A GEMM and its epilogue (bias, GELU, residual: pcv_gemm_args): CLBlast cannot apply them, so
 * one kernel does all three in one pass over C after it, where the generic path would run up to
 * three (bias_add, activation, add), each reading and writing C. */
static int ocl_gemm(pcv_backend *be, const pcv_gemm_args *g, pcv_error *err)
{
    cl_dev *dv = DEV(be);
    int64_t kmax = gemm_kmax(dv);
    /* our own GEMM applies the epilogue as it stores C (one k slice only) */
    if (use_own_gemm(dv) && (g->bias || g->gelu || g->res) && g->m > 0 && g->n > 0 && g->k > 0 && g->batch == 1 &&
        (kmax == 0 || g->k <= kmax)) {
        int rc = check_lost(dv, err);
        return rc ? rc : own_gemm(be, g, true, err);
    }
    int rc = gemm_core(be, g, err);
    if (rc || !(g->bias || g->gelu || g->res) || g->m <= 0 || g->n <= 0)
        return rc;
    cl_dev *d = DEV(be); /* batch 1, ldc == n (pcv_backend_gemm) */
    cl_ulong co = g->c_off, bo = g->bias ? g->bias_off : 0, ro = g->res ? g->res_off : 0;
    cl_long cols = g->n;
    cl_int hb = g->bias != NULL, ge = g->gelu, hr = g->res != NULL;
    cl_mem bm = g->bias ? g->bias->mem : g->c->mem, rm = g->res ? g->res->mem : g->c->mem; /* unread when off */
    karg args[] = {A(g->c->mem), A(co), A(cols), A(bm), A(bo), A(hb), A(ge), A(rm), A(ro), A(hr)};
    size_t gws[2] = {(size_t)cdiv(g->n, d->vw), (size_t)g->m};
    return launch(d, d->k[K_EPILOGUE], "gemm epilogue", 2, gws, NULL, args, NARGS(args), err);
}

/* Devices that end loops early (loop_limit > 0) would return wrong numbers without an error;
 * a kernel whose work-items would run more than a share (LOOP_SHARE) of the limit is split or
 * refused instead. The counts below are upper bounds made as if no loop were unrolled; the
 * share leaves room for what a driver's lowering adds (vector loads, reductions). */

static int loop_check(cl_dev *d, const char *what, int64_t iters, pcv_error *err)
{
    if (d->loop_limit <= 0 || iters <= d->loop_limit / LOOP_SHARE)
        return 0;
    return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                         "OpenCL device %d '%s' ends kernel loops after %lld iterations per work-item (%s); %s needs "
                         "about %lld: this shape cannot run there correctly, use another device",
                         d->info.index, d->info.name, (long long)d->loop_limit,
                         d->loop_limit_probed ? "measured when the device was opened; Mesa's llvmpipe does this"
                                              : "tuning key loop_limit",
                         what, (long long)iters);
}

/* the row kernels (layernorm, softmax, attention softmax): three passes over a row, split
 * between row_ls work-items, then the reductions */
static int64_t row_iters(const cl_dev *d, int64_t cols)
{
    int64_t per = cdiv(cdiv(cols, d->vw), d->row_ls) + d->vw;
    return 3 * per + 2 * 16;
}

static int ocl_bias_add(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols, pcv_buffer *bias,
                        size_t b_off, pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong xo = x_off, bo = b_off;
    cl_long c = cols;
    karg args[] = {A(x->mem), A(xo), A(c), A(bias->mem), A(bo)};
    size_t gws[2] = {(size_t)cols, (size_t)rows};
    return launch(d, d->k[K_BIAS_ADD], "bias_add", 2, gws, NULL, args, NARGS(args), err);
}

static int ocl_layernorm(pcv_backend *be, pcv_buffer *x, size_t x_off, pcv_buffer *y, size_t y_off, int64_t rows,
                         int64_t cols, pcv_buffer *gamma, size_t g_off, pcv_buffer *beta, size_t b_off, float eps,
                         pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong xo = x_off, yo = y_off, go = g_off, bo = b_off;
    cl_long c = cols;
    cl_float e = eps;
    karg args[] = {A(x->mem), A(xo), A(y->mem), A(yo), A(c), A(gamma->mem), A(go), A(beta->mem), A(bo), A(e)};
    size_t gws[2] = {(size_t)d->row_ls, (size_t)rows}, lws[2];
    int rc = loop_check(d, "a layernorm of this row length", row_iters(d, cols), err);
    if (rc)
        return rc;
    return launch(d, d->k[K_LAYERNORM], "layernorm", 2, gws, row_local(d, lws), args, NARGS(args), err);
}

static int ocl_activation(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t n, pcv_activation act,
                          pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong xo = x_off;
    cl_long nn = n;
    cl_int k = (cl_int)act; /* the kernel's kinds are pcv_activation's values */
    karg args[] = {A(x->mem), A(xo), A(nn), A(k)};
    size_t gws[1] = {(size_t)cdiv(n, d->vw)};
    return launch(d, d->k[K_ACTIVATION], "activation", 1, gws, NULL, args, NARGS(args), err);
}

static int ocl_add(pcv_backend *be, pcv_buffer *y, size_t y_off, pcv_buffer *a, size_t a_off, int64_t n,
                   pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong yo = y_off, ao = a_off;
    karg args[] = {A(y->mem), A(yo), A(a->mem), A(ao)};
    size_t gws[1] = {(size_t)n};
    return launch(d, d->k[K_ADD], "add", 1, gws, NULL, args, NARGS(args), err);
}

static int ocl_softmax(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols, pcv_buffer *mask,
                       size_t m_off, pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong xo = x_off, mo = mask ? m_off : 0;
    cl_long c = cols;
    cl_int has = mask != NULL;
    cl_mem mm = mask ? mask->mem : d->dummy;
    karg args[] = {A(x->mem), A(xo), A(c), A(mm), A(mo), A(has)};
    size_t gws[2] = {(size_t)d->row_ls, (size_t)rows}, lws[2];
    int rc = loop_check(d, "a softmax of this row length", row_iters(d, cols), err);
    if (rc)
        return rc;
    return launch(d, d->k[K_SOFTMAX], "softmax", 2, gws, row_local(d, lws), args, NARGS(args), err);
}

static int ocl_gather(pcv_backend *be, pcv_buffer *table, size_t t_off, pcv_buffer *ids, size_t ids_off,
                      pcv_buffer *pos, size_t pos_off, int64_t period, pcv_buffer *out, size_t out_off, int64_t rows,
                      int64_t cols, pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong to = t_off, io = ids_off, po = pos ? pos_off : 0, oo = out_off;
    cl_long per = period > 0 ? period : 1, c = cols;
    cl_int has = pos != NULL;
    cl_mem pm = pos ? pos->mem : d->dummy;
    karg args[] = {A(table->mem), A(to), A(ids->mem), A(io), A(pm), A(po), A(per), A(has), A(out->mem), A(oo), A(c)};
    size_t gws[2] = {(size_t)cols, (size_t)rows};
    return launch(d, d->k[K_GATHER], "gather", 2, gws, NULL, args, NARGS(args), err);
}

static int ocl_repeat(pcv_backend *be, pcv_buffer *src, size_t s_off, int64_t n, int64_t times, pcv_buffer *dst,
                      size_t d_off, pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong so = s_off, dof = d_off;
    cl_long nn = n;
    karg args[] = {A(src->mem), A(so), A(nn), A(dst->mem), A(dof)};
    size_t gws[2] = {(size_t)n, (size_t)times};
    return launch(d, d->k[K_REPEAT], "repeat", 2, gws, NULL, args, NARGS(args), err);
}

static int ocl_transpose(pcv_backend *be, pcv_buffer *src, size_t s_off, int64_t batch, int64_t rows, int64_t cols,
                         pcv_buffer *dst, size_t d_off, pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong so = s_off, dof = d_off;
    cl_long r = rows, c = cols;
    karg args[] = {A(src->mem), A(so), A(r), A(c), A(dst->mem), A(dof)};
    size_t gws[3] = {(size_t)cols, (size_t)rows, (size_t)batch};
    return launch(d, d->k[K_TRANSPOSE], "transpose", 3, gws, NULL, args, NARGS(args), err);
}

static int ocl_copy2d(pcv_backend *be, pcv_buffer *src, size_t s_off, int64_t src_ld, int64_t period, pcv_buffer *dst,
                      size_t d_off, int64_t dst_ld, int64_t rows, int64_t cols, pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong so = s_off, dof = d_off;
    cl_long sld = src_ld, per = period > 0 ? period : 1, dld = dst_ld;
    karg args[] = {A(src->mem), A(so), A(sld), A(per), A(dst->mem), A(dof), A(dld)};
    size_t gws[2] = {(size_t)cols, (size_t)rows};
    return launch(d, d->k[K_COPY2D], "copy2d", 2, gws, NULL, args, NARGS(args), err);
}

static int ocl_im2col(pcv_backend *be, pcv_buffer *src, size_t s_off, int64_t batch, int64_t C, int64_t H, int64_t W,
                      int64_t kh, int64_t kw, int64_t stride, int64_t pad_top, int64_t pad_left, int64_t oh,
                      int64_t ow, pcv_buffer *dst, size_t d_off, pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong so = s_off, dof = d_off;
    cl_long c = C, h = H, w = W, khh = kh, kww = kw, st = stride, pt = pad_top, pl = pad_left, ohh = oh, oww = ow;
    karg args[] = {A(src->mem), A(so), A(c), A(h), A(w), A(khh), A(kww), A(st), A(pt), A(pl), A(ohh), A(oww),
                   A(dst->mem), A(dof)};
    size_t gws[3] = {(size_t)(C * kh * kw), (size_t)(oh * ow), (size_t)batch};
    return launch(d, d->k[K_IM2COL], "im2col", 3, gws, NULL, args, NARGS(args), err);
}

static int ocl_channel_affine(pcv_backend *be, pcv_buffer *x, size_t x_off, int64_t rows, int64_t cols,
                              pcv_buffer *scale, size_t sc_off, pcv_buffer *shift, size_t sh_off, bool relu,
                              pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong xo = x_off, sco = sc_off, sho = sh_off;
    cl_long c = cols;
    cl_int r = relu;
    karg args[] = {A(x->mem), A(xo), A(c), A(scale->mem), A(sco), A(shift->mem), A(sho), A(r)};
    size_t gws[2] = {(size_t)cols, (size_t)rows};
    return launch(d, d->k[K_CHANNEL_AFFINE], "channel_affine", 2, gws, NULL, args, NARGS(args), err);
}

static int ocl_maxpool(pcv_backend *be, pcv_buffer *src, size_t s_off, int64_t batch, int64_t H, int64_t W, int64_t C,
                       int64_t k, int64_t stride, int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow,
                       pcv_buffer *dst, size_t d_off, pcv_error *err)
{
    cl_dev *d = DEV(be);
    cl_ulong so = s_off, dof = d_off;
    cl_long h = H, w = W, c = C, kk = k, st = stride, pt = pad_top, pl = pad_left, ohh = oh, oww = ow;
    karg args[] = {A(src->mem), A(so), A(h), A(w), A(c), A(kk), A(st), A(pt), A(pl), A(ohh), A(oww), A(dst->mem),
                   A(dof)};
    size_t gws[3] = {(size_t)C, (size_t)(oh * ow), (size_t)batch};
    return launch(d, d->k[K_MAXPOOL], "maxpool", 3, gws, NULL, args, NARGS(args), err);
}

/* ---- attention ------------------------------------------------------------------------------ */

/* The fused kernel's specialization for a value head size dv: NV vectors of VW output columns
 * per work-item (at most 8 vectors: the accumulator must stay in registers), as few dv chunks
 * as that allows, and QB query rows per work-item so that QB x NV accumulators fill about 16
 * vector registers on a CPU. GPUs get one row per work-item (more work-items). At most 8
 * variants per device (NV = 1..8). */
static attn_variant *attn_get(cl_dev *d, int64_t dv, pcv_error *err)
{
    int64_t nvec = cdiv(dv, d->vw);
    int64_t chunks = cdiv(nvec, 8);
    int nv = (int)cdiv(nvec, chunks);
    int qb = !d->gpu_like ? (int)(16 / nv < 1 ? 1 : 16 / nv > 4 ? 4 : 16 / nv) : 1;
    for (int i = 0; i < d->nattn; i++)
        if (d->attn[i].nv == nv && d->attn[i].qb == qb)
            return &d->attn[i];
    if (d->nattn == MAX_ATTN_VARIANTS) {
        pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL: too many attention kernel variants");
        return NULL;
    }
    char opts[400];
    snprintf(opts, sizeof opts, "%s -D QB=%d -D NV=%d", d->options, qb, nv);
    attn_variant *v = &d->attn[d->nattn];
    memset(v, 0, sizeof *v);
    if (pcv_cl_build_program(d->ctx, d->dev, &d->info, "attention.cl", opts, &v->prog, err))
        return NULL;
    cl_int r[3] = {CL_SUCCESS, CL_SUCCESS, CL_SUCCESS};
    v->transpose = clCreateKernel(v->prog, "attn_kt", &r[0]);
    v->fused = clCreateKernel(v->prog, "attn_fused", &r[1]);
    v->combine = clCreateKernel(v->prog, "attn_combine", &r[2]);
    if (r[0] != CL_SUCCESS || r[1] != CL_SUCCESS || r[2] != CL_SUCCESS) {
        cl_kernel ks[3] = {v->transpose, v->fused, v->combine};
        for (int i = 0; i < 3; i++)
            if (ks[i])
                clReleaseKernel(ks[i]);
        clReleaseProgram(v->prog);
        cl_fail(d, r[0] != CL_SUCCESS ? r[0] : r[1] != CL_SUCCESS ? r[1] : r[2], "creating the attention kernels", err);
        return NULL;
    }
    v->qb = qb;
    v->nv = nv;
    d->nattn++;
    return v;
}

/* Loop iterations of one attn_fused work-item over split_len keys, counted as if no loop were
 * unrolled (the bound loop_check needs): per key tile the scores (dqk), the online softmax and
 * the weighted sum of V; around them the set-up, the padding-mask scan and the stores. */
static int64_t attn_iters(const attn_variant *v, int vw, const pcv_attention_args *a, int64_t split_len)
{
    int64_t qb = v->qb, nv = v->nv;
    int64_t tile = 1 + qb + a->dqk * (1 + qb) + qb * (1 + nv) + vw * (3 + qb + nv * (1 + qb));
    int64_t fixed = 2 * qb * (1 + 2 * nv) + 2 * vw; /* no padding-mask scan under a loop limit */
    return fixed + cdiv(split_len, vw) * tile;
}

/* One launch sequence (transpose K, fused, combine) over a's rows with nsplit key splits. */
static int attn_fused_run(cl_dev *d, const attn_variant *v, const pcv_attention_args *a, int64_t nsplit,
                          int64_t split_len, pcv_error *err)
{
    int64_t chunks = cdiv(a->dv, (int64_t)v->nv * d->vw), groups = cdiv(a->nq, v->qb);
    size_t row_bytes = (size_t)(a->dv + 2) * sizeof(float);
    /* K transposed per head, rows padded to whole key tiles */
    int64_t nk_pad = cdiv(a->nk, d->vw) * d->vw;
    cl_mem kt = scratch(d, 0, (size_t)(a->batch * a->heads * a->dqk * nk_pad) * sizeof(float), err);
    if (!kt)
        return err ? (int)err->code : PCV_ERR_OOM;
    cl_mem part = d->dummy;
    if (nsplit > 1 && !(part = scratch(d, 1, (size_t)(a->batch * a->heads * nsplit * a->nq) * row_bytes, err)))
        return err ? (int)err->code : PCV_ERR_OOM;

    cl_ulong qo = a->q_off, ko = a->k_off, vo = a->v_off, oo = a->o_off;
    cl_ulong kmo = a->kmask ? a->kmask_off : 0, qmo = a->qmask ? a->qmask_off : 0;
    cl_long qld = a->q_ld, kld = a->k_ld, vld = a->v_ld, old = a->o_ld;
    cl_int hk = a->kmask != NULL, hq = a->qmask != NULL;
    cl_mem km = a->kmask ? a->kmask->mem : d->dummy, qm = a->qmask ? a->qmask->mem : d->dummy;
    cl_int ns = (cl_int)nsplit, sl = (cl_int)split_len, heads = (cl_int)a->heads, nq = (cl_int)a->nq,
           nk = (cl_int)a->nk, nkp = (cl_int)nk_pad, dqk = (cl_int)a->dqk, dv = (cl_int)a->dv,
           mode = a->mode == PCV_ATTN_HAIKU, scan = d->loop_limit == 0;
    cl_float scale = a->scale, inv = (float)(1.0 / (double)a->scale);

    karg targs[] = {A(a->k->mem), A(ko), A(kld), A(kt), A(heads), A(nk), A(nkp), A(dqk)};
    size_t tg[3] = {(size_t)nk_pad, (size_t)a->dqk, (size_t)(a->batch * a->heads)};
    int rc = launch(d, v->transpose, "attention (transpose K)", 3, tg, NULL, targs, NARGS(targs), err);
    if (rc)
        return rc;
    karg args[] = {A(a->q->mem), A(qo),  A(qld), A(kt),   A(nkp), A(a->v->mem), A(vo),    A(vld),
                   A(a->o->mem), A(oo),  A(old), A(km),   A(kmo), A(hk),        A(qm),    A(qmo),
                   A(hq),        A(part), A(ns), A(sl),   A(heads), A(nq),      A(nk),    A(dqk),
                   A(dv),        A(mode), A(scan), A(scale), A(inv)};
    size_t gws[3] = {(size_t)chunks, (size_t)groups, (size_t)(a->batch * a->heads * nsplit)};
    size_t one[3] = {1, 1, 1};
    rc = launch(d, v->fused, "attention", 3, gws, !d->gpu_like ? one : NULL, args, NARGS(args), err);
    if (rc || nsplit == 1)
        return rc;
    if ((rc = loop_check(d, "combining this many key splits", 2 * nsplit + 2, err)))
        return rc;
    karg cargs[] = {A(part), A(ns), A(nq), A(dv), A(heads), A(a->o->mem), A(oo), A(old)};
    size_t cg[3] = {(size_t)a->dv, (size_t)a->nq, (size_t)(a->batch * a->heads)};
    return launch(d, v->combine, "attention (combine splits)", 3, cg, NULL, cargs, NARGS(cargs), err);
}


static int attn_fused(cl_dev *d, const pcv_attention_args *a, pcv_error *err)
{
    attn_variant *v = attn_get(d, a->dv, err);
    if (!v)
        return err ? (int)err->code : PCV_ERR_DEVICE;
    int64_t chunks = cdiv(a->dv, (int64_t)v->nv * d->vw), groups = cdiv(a->nq, v->qb);
    int64_t items = chunks * groups * a->batch * a->heads;

    /* split the keys when there are too few work-items to fill the device (few queries, many
     * keys: the encoder's cross-attention); each split covers at least 256 keys */
    int64_t target = (int64_t)d->info.compute_units * (!d->gpu_like ? 4 : 256);
    int64_t nsplit = 1, min_split = 1;
    if (d->force_splits > 0)
        nsplit = d->force_splits;
    else if (items < target && a->nk >= 512)
        nsplit = cdiv(target, items) < a->nk / 256 ? cdiv(target, items) : a->nk / 256;
    /* a device that ends loops early: splits short enough for its limit */
    if (d->loop_limit > 0) {
        int64_t fixed = attn_iters(v, d->vw, a, 0), tile = attn_iters(v, d->vw, a, d->vw) - fixed;
        int64_t budget = d->loop_limit / LOOP_SHARE - fixed;
        int rc = loop_check(d, "attention with heads this large", fixed + tile, err);
        if (rc)
            return rc;
        min_split = cdiv(cdiv(a->nk, d->vw), budget / tile);
        if (nsplit < min_split)
            nsplit = min_split;
    }
    size_t row_bytes = (size_t)(a->dv + 2) * sizeof(float);
    size_t cap = d->info.max_alloc < ((size_t)256 << 20) ? d->info.max_alloc : ((size_t)256 << 20);
    while (nsplit > min_split && (size_t)(a->batch * a->heads * nsplit * a->nq) * row_bytes > cap)
        nsplit = nsplit / 2 > min_split ? nsplit / 2 : min_split;
    if (nsplit > a->nk)
        nsplit = a->nk;
    int64_t split_len = cdiv(cdiv(a->nk, nsplit), d->vw) * d->vw; /* whole key tiles */
    nsplit = cdiv(a->nk, split_len);
    size_t per_row = (size_t)(a->heads * nsplit) * row_bytes;
    if (nsplit == 1 || (size_t)(a->batch * a->nq) * per_row <= cap)
        return attn_fused_run(d, v, a, nsplit, split_len, err);

    /* the partial results of every row do not fit: blocks of query rows, one batch entry at a time */
    int64_t rows = (int64_t)(cap / per_row);
    if (rows < 1)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "OpenCL device %d '%s': attention over %lld keys needs %lld key splits, whose partial "
                             "results for one query row (%zu bytes) exceed the scratch limit",
                             d->info.index, d->info.name, (long long)a->nk, (long long)nsplit, per_row);
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t q0 = 0; q0 < a->nq; q0 += rows) {
            pcv_attention_args s = *a;
            s.batch = 1;
            s.nq = a->nq - q0 < rows ? a->nq - q0 : rows;
            s.q_off += (size_t)((b * a->nq + q0) * a->q_ld);
            s.o_off += (size_t)((b * a->nq + q0) * a->o_ld);
            s.k_off += (size_t)(b * a->nk * a->k_ld);
            s.v_off += (size_t)(b * a->nk * a->v_ld);
            if (s.kmask)
                s.kmask_off += (size_t)(b * a->nk);
            if (s.qmask)
                s.qmask_off += (size_t)(b * a->nq + q0);
            int rc = attn_fused_run(d, v, &s, nsplit, split_len, err);
            if (rc)
                return rc;
        }
    return 0;
}

/* The GEMM path's scores are materialized for a chunk of queries at a time (all heads of one
 * batch entry): at most this many bytes, and never more than one allocation may hold. */
#define ATTN_SCORES_MAX ((size_t)256 << 20)

static int64_t attn_gemm_rows(const cl_be *cb, const pcv_attention_args *a)
{
    size_t cap = cb->d->scores_max > 0 ? (size_t)cb->d->scores_max : ATTN_SCORES_MAX;
    cap = cb->max_alloc < cap ? (size_t)cb->max_alloc : cap;
    size_t row = (size_t)(a->heads * a->nk) * sizeof(float);
    int64_t rows = (int64_t)(cap / row);
    return rows < a->nq ? rows : a->nq;
}

/* Scores through CLBlast, per batch entry and chunk of queries: S[h] = Q_h K_h^T (heads batched,
 * each head a column slice of Q and K), masked softmax in place, O_h = S[h] V_h. */
static int attn_gemm(pcv_backend *be, cl_dev *d, const pcv_attention_args *a, pcv_error *err)
{
    int rc = loop_check(d, "an attention softmax over this many keys", row_iters(d, a->nk), err);
    if (rc)
        return rc;
    int64_t qc = attn_gemm_rows(be->ctx, a);
    size_t sbytes = (size_t)(a->heads * qc * a->nk) * sizeof(float);
    cl_mem s = scratch(d, 0, sbytes, err);
    if (!s)
        return err ? (int)err->code : PCV_ERR_OOM;
    pcv_buffer sb = {s, sbytes};
    for (int64_t b = 0; b < a->batch; b++) {
        for (int64_t q0 = 0; q0 < a->nq; q0 += qc) {
            int64_t nq = a->nq - q0 < qc ? a->nq - q0 : qc;
            pcv_gemm_args qk = {
                .trans_a = false, .trans_b = true, .m = nq, .n = a->nk, .k = a->dqk, .batch = a->heads,
                .alpha = 1.0f, .beta = 0.0f,
                .a = a->q, .a_off = a->q_off + (size_t)((b * a->nq + q0) * a->q_ld), .lda = a->q_ld,
                .stride_a = a->dqk,
                .b = a->k, .b_off = a->k_off + (size_t)(b * a->nk * a->k_ld), .ldb = a->k_ld, .stride_b = a->dqk,
                .c = &sb, .c_off = 0, .ldc = a->nk, .stride_c = nq * a->nk,
            };
            if ((rc = ocl_gemm(be, &qk, err)))
                return rc;
            cl_ulong so = 0, kmo = a->kmask ? a->kmask_off + (size_t)(b * a->nk) : 0,
                     qmo = a->qmask ? a->qmask_off + (size_t)(b * a->nq + q0) : 0;
            cl_long cols = a->nk, cnq = nq;
            cl_int mode = a->mode == PCV_ATTN_HAIKU, hk = a->kmask != NULL, hq = a->qmask != NULL;
            cl_float scale = a->scale, inv = (float)(1.0 / (double)a->scale);
            cl_mem km = a->kmask ? a->kmask->mem : d->dummy, qm = a->qmask ? a->qmask->mem : d->dummy;
            karg args[] = {A(s),  A(so),  A(cols), A(cnq), A(mode), A(scale), A(inv),
                           A(km), A(kmo), A(hk),   A(qm),  A(qmo),  A(hq)};
            size_t gws[2] = {(size_t)d->row_ls, (size_t)(a->heads * nq)}, lws[2];
            if ((rc = launch(d, d->k[K_ATTN_SOFTMAX], "attention softmax", 2, gws, row_local(d, lws), args,
                             NARGS(args), err)))
                return rc;
            pcv_gemm_args pv = {
                .trans_a = false, .trans_b = false, .m = nq, .n = a->dv, .k = a->nk, .batch = a->heads,
                .alpha = 1.0f, .beta = 0.0f,
                .a = &sb, .a_off = 0, .lda = a->nk, .stride_a = nq * a->nk,
                .b = a->v, .b_off = a->v_off + (size_t)(b * a->nk * a->v_ld), .ldb = a->v_ld, .stride_b = a->dv,
                .c = a->o, .c_off = a->o_off + (size_t)((b * a->nq + q0) * a->o_ld), .ldc = a->o_ld,
                .stride_c = a->dv,
            };
            if ((rc = ocl_gemm(be, &pv, err)))
                return rc;
        }
    }
    return 0;
}

static int ocl_attention(pcv_backend *be, const pcv_attention_args *a, pcv_error *err)
{
    cl_dev *d = DEV(be);
    int rc = check_lost(d, err);
    if (rc)
        return rc;
    /* empty shapes and attention over no keys never get here (pcv_backend_attention) */
    if (a->nq > INT32_MAX / 2 || a->nk > INT32_MAX / 2 || a->batch * a->heads > INT32_MAX / 1024)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "attention: %lld queries x %lld keys is beyond the kernel's 32-bit indices",
                             (long long)a->nq, (long long)a->nk);
    /* the GEMM path materializes the scores of a chunk of queries: at least one query row of
     * every head must fit */
    bool fits = attn_gemm_rows(be->ctx, a) >= 1;
    bool gemm = d->attn_path == ATTN_GEMM && fits;
    /* measured: docs/opencl.md. The GEMM path where our own GEMM runs (PoCL: the models'
     * attentions 1.3-14x faster than the fused kernel) and on other CPU drivers; the tuning key
     * attn_gemm_d=N (perceiver-cl tune) takes it for heads of N channels or more; a row the
     * device's loop limit refuses stays fused */
    if (d->attn_path == ATTN_AUTO)
        gemm = (d->attn_gemm_auto || use_own_gemm(d) || (d->attn_gemm_d > 0 && a->dqk >= d->attn_gemm_d)) && fits &&
               (d->loop_limit <= 0 || row_iters(d, a->nk) <= d->loop_limit / LOOP_SHARE);
    return gemm ? attn_gemm(be, d, a, err) : attn_fused(d, a, err);
}

/* ---- device set-up ---------------------------------------------------------------------------- */

/* The value of key in a tuning string "key=value,key=value" (copied into buf), or NULL. */
static const char *find_key(const char *t, const char *key, char *buf, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = t; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            size_t vl = n - kl - 1 < cap - 1 ? n - kl - 1 : cap - 1;
            memcpy(buf, p + kl + 1, vl);
            buf[vl] = '\0';
            return buf;
        }
        p = end ? end + 1 : p + n;
    }
    return NULL;
}

/* A tuning key of a device: the runtime tuning string's (explicit settings win), else its
 * profile's (d may be NULL: none). */
static const char *tuning_value(const cl_dev *d, const char *key, char *buf, size_t cap)
{
    const char *v = find_key(pcv_runtime()->tuning, key, buf, cap);
    return v || !d || !d->profile[0] ? v : find_key(d->profile, key, buf, cap);
}

static int tuning_choice(const cl_dev *d, const char *key, const char *const *words, int n, int def);

/* CLBlast parameters. PoCL's CPU device gets ours (measured on PoCL 3.1, AVX-512 and AVX2:
 * 1x1 work-groups with float16 vectors; see docs/opencl.md). They are PoCL's, not every CPU
 * driver's: on Mesa's rusticl (llvmpipe) the same set runs 1000x slower than CLBlast's defaults,
 * so other drivers keep CLBlast's own parameters. The tuning keys clblast=0, xgemm=... and
 * minind=... (a profile's, perceiver-cl tune) change that. */
static const char *const xgemm_names[16] = {"GEMMK", "KREG", "KWG",  "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
                                            "NDIMC", "NWG",  "SA",   "SB",  "STRM",  "STRN",  "VWM", "VWN"};
static const char *const minind_name[1] = {"XGEMM_MIN_INDIRECT_SIZE"};

/* backend/clblast_params.cpp */
int pcv_clblast_retrieve(cl_device_id device, const char *kernel, int n, const char *const *names, size_t *values);

/* Installs the device's parameters: every time a full set, so that what a tuning string
 * leaves out is the default and not what an earlier string installed (CLBlast keeps overrides
 * until replaced; CLBlastClearCache only drops compiled programs). */
static CLBlastStatusCode clblast_tune(cl_dev *d)
{
    char v[256];
    const char *env = tuning_value(d, "clblast", v, sizeof v);
    bool off = env && !strcmp(env, "0");
    size_t vals[16] = {0, 1, 64, 4, 1, 1, 32, 1, 1, 8, 0, 0, 0, 0, 16, 1};
    bool pocl = d->info.is_cpu && strstr(d->info.platform, "Portable Computing Language") != NULL;
    bool have = pocl && !off;
    if (!have && d->have_db) { /* CLBlast's database values */
        memcpy(vals, d->db_xgemm, sizeof vals);
        have = true;
    }
    const char *x = off ? NULL : tuning_value(d, "xgemm", v, sizeof v);
    if (x && *x) {
        size_t nv[16];
        int n = 0;
        char *end;
        for (const char *p = x; n < 16; n++, p = end) {
            while (*p == ':' || *p == ' ')
                p++;
            nv[n] = strtoul(p, &end, 10);
            if (end == p)
                break;
        }
        if (n == 16) {
            memcpy(vals, nv, sizeof vals);
            have = true;
        } else {
            fprintf(stderr, "perceiver-cl: tuning xgemm needs 16 numbers (%s); ignored\n",
                    "GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN");
        }
    }
    CLBlastStatusCode st = CLBlastSuccess;
    if (have)
        st = CLBlastOverrideParameters(d->dev, "Xgemm", CLBlastPrecisionSingle, 16, (const char **)xgemm_names, vals);
    /* every GEMM takes the tuned indirect kernel on PoCL (the direct kernel keeps its defaults);
     * minind=0: the database's threshold */
    const char *mi = off ? NULL : tuning_value(d, "minind", v, sizeof v);
    size_t minind = mi && *mi ? strtoul(mi, NULL, 10) : pocl && !off ? 1 : 0;
    if (minind == 0 && d->have_db)
        minind = d->db_minind;
    if (minind > 0 && st == CLBlastSuccess)
        st = CLBlastOverrideParameters(d->dev, "GemmRoutine", CLBlastPrecisionSingle, 1, (const char **)minind_name,
                                       &minind);
    return st;
}

/* The switches the tuning keys (runtime string, then profile) set. */
static void read_switches(cl_dev *d)
{
    static const char *const layouts[] = {"auto", "row", "swap"};
    static const char *const paths[] = {"auto", "fused", "gemm"};
    static const char *const gemms[] = {"auto", "clblast", "own"};
    d->layout = tuning_choice(d, "layout", layouts, 3, LAYOUT_AUTO);
    d->gemm_path = tuning_choice(d, "gemm", gemms, 3, GEMM_AUTO);
    own_gemm_config(d, &d->gemm_gw, &d->gemm_mr);
    d->attn_path = tuning_choice(d, "attention", paths, 3, ATTN_AUTO);
    char sv[32];
    d->force_splits = tuning_value(d, "splits", sv, sizeof sv) ? atoi(sv) : 0;
    d->attn_gemm_d = tuning_value(d, "attn_gemm_d", sv, sizeof sv) ? atoll(sv) : 0;
}

/* Loads the device's tuning profile (`perceiver-cl tune`) unless the runtime tuning string says
 * profile=0; a file that is not a valid profile of this device is ignored with a warning. */
static void load_profile(cl_dev *d)
{
    char v[16], why[4600];
    d->profile[0] = '\0';
    d->profile_path[0] = '\0';
    if (find_key(pcv_runtime()->tuning, "profile", v, sizeof v) && !strcmp(v, "0"))
        return;
    int r = pcv_cl_profile_load(&d->info, d->profile, sizeof d->profile, why, sizeof why);
    if (r > 0)
        pcv_cl_profile_path(&d->info, d->profile_path, sizeof d->profile_path);
    else if (r < 0)
        fprintf(stderr,
                "perceiver-cl: warning: OpenCL device %d: ignoring its tuning profile: %s (run 'perceiver-cl tune "
                "--device %d' to measure a new one)\n",
                d->info.index, why, d->info.index);
}

static int tuning_choice(const cl_dev *d, const char *key, const char *const *words, int n, int def)
{
    char v[64];
    if (!tuning_value(d, key, v, sizeof v) || !v[0])
        return def;
    for (int i = 0; i < n; i++)
        if (!strcasecmp(v, words[i]))
            return i;
    fprintf(stderr, "perceiver-cl: tuning %s='%s' is not one of", key, v);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %s", words[i]);
    fprintf(stderr, "; using %s\n", words[def]);
    return def;
}

/* Runs the loop probe (cl/elementwise.cl) once: sets d->loop_limit when the device ends a loop
 * of 2^20 iterations early. The tuning key loop_limit=N lowers it (tests: the kernels' plans
 * under a limit, on any device). */
static int probe_loops(cl_dev *d, pcv_error *err)
{
    const cl_int n = 1 << 20;
    cl_int ones[16], out = -1, r = CL_SUCCESS;
    for (int i = 0; i < 16; i++)
        ones[i] = 1;
    cl_mem in = clCreateBuffer(d->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof ones, ones, &r);
    if (!in || r != CL_SUCCESS)
        return cl_fail(d, r, "clCreateBuffer (loop probe)", err);
    cl_mem o = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, sizeof out, NULL, &r);
    if (!o || r != CL_SUCCESS) {
        clReleaseMemObject(in);
        return cl_fail(d, r, "clCreateBuffer (loop probe)", err);
    }
    karg args[] = {A(in), A(o), A(n)};
    size_t one = 1;
    int rc = launch(d, d->k[K_LOOP_PROBE], "loop probe", 1, &one, &one, args, NARGS(args), err);
    if (!rc && (r = clEnqueueReadBuffer(d->queue, o, CL_TRUE, 0, sizeof out, &out, 0, NULL, NULL)) != CL_SUCCESS)
        rc = cl_fail(d, r, "reading the loop probe", err);
    clReleaseMemObject(in);
    clReleaseMemObject(o);
    if (rc)
        return rc;
    if (out != n && (out < 1024 || out > n))
        return pcv_set_error(err, PCV_ERR_DEVICE,
                             "OpenCL device %d '%s' counted %d in a loop of %d iterations: its compiler or runtime "
                             "computes wrong results; not used",
                             d->info.index, d->info.name, (int)out, (int)n);
    d->loop_limit = out < n ? out : 0;
    d->loop_limit_probed = out < n;
    char tv[32];
    int64_t lim;
    if (tuning_value(d, "loop_limit", tv, sizeof tv) && (lim = strtoll(tv, NULL, 10)) > 0 &&
        (d->loop_limit == 0 || lim < d->loop_limit))
        d->loop_limit = lim, d->loop_limit_probed = false;
    return 0;
}

/* The kernel configuration the tuning keys (runtime string, then profile) and the device ask
 * for: style, vector width, work-items per row. */
static void kernel_config(const cl_dev *d, bool *gpu_like, int *vw, int *row_ls)
{
    const pcv_cl_device_info *in = &d->info;
    char tv[32];
    /* Kernel style. PoCL's CPU device runs explicit float16 vectors with one work-item per row
     * best (measured, docs/opencl.md); every other device, GPUs and also Mesa's llvmpipe (which
     * runs work-items as SIMD lanes like a GPU: float16 per work-item was 5x slower there), gets
     * the GPU style. Tuning key as=gpu / as=cpu overrides. */
    bool pocl_cpu = in->is_cpu && strstr(in->platform, "Portable Computing Language") != NULL;
    *gpu_like = !pocl_cpu;
    if (tuning_value(d, "as", tv, sizeof tv))
        *gpu_like = !strcasecmp(tv, "gpu") ? true : !strcasecmp(tv, "cpu") ? false : *gpu_like;
    /* CPUs: explicit float16 (one AVX-512 register; LLVM splits it on narrower CPUs) and one
     * work-item per row; GPUs: float4 and two SIMD groups of work-items per row (64 where the
     * driver does not say its warp/wavefront width: pcv_cl_row_ls), within the work-group
     * size, the first dimension's item limit and the local memory (a double and a float of
     * reduction scratch per work-item). Tuning keys vw=4|8|16 and row_ls=N (GPU style) choose
     * others (perceiver-cl tune); row_ls is still cut to the device's limits. */
    *vw = *gpu_like ? 4 : 16;
    long v;
    if (tuning_value(d, "vw", tv, sizeof tv) && ((v = strtol(tv, NULL, 10)) == 4 || v == 8 || v == 16))
        *vw = (int)v;
    *row_ls = 1;
    if (*gpu_like) {
        int requested = 0; /* 0: two SIMD groups where the vendor says their width */
        if (tuning_value(d, "row_ls", tv, sizeof tv) && (v = strtol(tv, NULL, 10)) >= 1 && v <= 1024 &&
            !(v & (v - 1)))
            requested = (int)v;
        *row_ls = pcv_cl_row_ls(in, requested);
    }
}

static void release_kernels(cl_dev *d)
{
    for (int i = 0; i < d->nattn; i++) {
        clReleaseKernel(d->attn[i].transpose);
        clReleaseKernel(d->attn[i].fused);
        clReleaseKernel(d->attn[i].combine);
        clReleaseProgram(d->attn[i].prog);
    }
    d->nattn = 0;
    for (int k = 0; k < K_COUNT; k++)
        if (d->k[k])
            clReleaseKernel(d->k[k]), d->k[k] = NULL;
    for (int p = 0; p < 2; p++)
        if (d->progs[p])
            clReleaseProgram(d->progs[p]), d->progs[p] = NULL;
    own_gemm_release(d);
}

/* Builds the programs and kernels for the configuration kernel_config asks for (the attention
 * variants are built when first used). */
static int build_kernels(cl_dev *d, pcv_error *err)
{
    char eb[48];
    const pcv_cl_device_info *in = &d->info;
    kernel_config(d, &d->gpu_like, &d->vw, &d->row_ls);
    snprintf(d->options, sizeof d->options, "-cl-std=CL1.2 -D VW=%d -D ROW_LS=%d -D PCV_FP64=%d", d->vw, d->row_ls,
             in->fp64 ? 1 : 0);
    int rc;
    for (int p = 0; p < 2; p++)
        if ((rc = pcv_cl_build_program(d->ctx, d->dev, in, program_files[p], d->options, &d->progs[p], err)))
            return rc;
    for (int k = 0; k < K_COUNT; k++) {
        cl_int r = CL_SUCCESS;
        d->k[k] = clCreateKernel(d->progs[kernel_table[k].program], kernel_table[k].name, &r);
        if (!d->k[k] || r != CL_SUCCESS)
            return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d '%s': kernel '%s' of cl/%s: %s", in->index,
                                 in->name, kernel_table[k].name, program_files[kernel_table[k].program],
                                 pcv_cl_error_name(r, eb, sizeof eb));
    }
    return 0;
}

static int dev_init(cl_dev *d, int index, pcv_error *err)
{
    char eb[48];
    int rc = pcv_cl_get_device(index, &d->platform, &d->dev, &d->info, err);
    if (rc)
        return rc;
    const pcv_cl_device_info *in = &d->info;
    if (!in->available)
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d '%s' is not available (CL_DEVICE_AVAILABLE is false)",
                             index, in->name);
    if (!in->compiler)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "OpenCL device %d '%s' has no OpenCL C compiler (CL_DEVICE_COMPILER_AVAILABLE is false); "
                             "perceiver-cl compiles its kernels at run time",
                             index, in->name);
    if (in->c_major * 10 + in->c_minor < 12)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "OpenCL device %d '%s' supports %s; perceiver-cl needs OpenCL C 1.2 or later", index,
                             in->name, in->c_version);
    cl_int r = CL_SUCCESS;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->platform, 0};
    d->ctx = clCreateContext(props, 1, &d->dev, NULL, NULL, &r);
    if (!d->ctx || r != CL_SUCCESS)
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d '%s': cannot create a context: %s", index, in->name,
                             pcv_cl_error_name(r, eb, sizeof eb));
    d->queue = clCreateCommandQueue(d->ctx, d->dev, 0, &r);
    if (!d->queue || r != CL_SUCCESS)
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d '%s': cannot create a command queue: %s", index,
                             in->name, pcv_cl_error_name(r, eb, sizeof eb));

    load_profile(d);

    /* Lower limits than the device's, and GPU-style kernel configuration on any device (tuning
     * keys wg=N, local=BYTES, as=gpu): the tests run GPU-sized constraints on CPU devices. */
    char tv[32];
    size_t cap;
    if (tuning_value(d, "wg", tv, sizeof tv) && (cap = strtoul(tv, NULL, 10)) > 0) {
        if (cap < d->info.max_work_group)
            d->info.max_work_group = cap;
        if (cap < d->info.max_item_size0)
            d->info.max_item_size0 = cap;
    }
    if (tuning_value(d, "local", tv, sizeof tv) && (cap = strtoul(tv, NULL, 10)) > 0 && cap < d->info.local_mem)
        d->info.local_mem = cap;
    bool pocl_cpu = in->is_cpu && strstr(in->platform, "Portable Computing Language") != NULL;
    /* the fused attention kernel is the faster path on PoCL and on GPUs; on other CPU drivers
     * (llvmpipe: 35 s against 11 s for the tiny language model) the CLBlast path is */
    d->attn_gemm_auto = in->is_cpu && !pocl_cpu;
    d->own_gemm_auto = pcv_cl_own_gemm_default(in);
    if ((rc = build_kernels(d, err)))
        return rc;
    d->dummy = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, 64, NULL, &r);
    if (!d->dummy || r != CL_SUCCESS)
        return cl_fail(d, r, "clCreateBuffer", err);

    read_switches(d);
    d->fail_after = -1;
    d->trace = pcv_runtime()->trace;
    if ((rc = probe_loops(d, err)))
        return rc;
    /* before this process overrides anything on the device */
    d->have_db = pcv_clblast_retrieve(d->dev, "Xgemm", 16, xgemm_names, d->db_xgemm) == 0 &&
                 pcv_clblast_retrieve(d->dev, "GemmRoutine", 1, minind_name, &d->db_minind) == 0;
    CLBlastStatusCode st = clblast_tune(d);
    if (st != CLBlastSuccess && d->profile[0]) {
        fprintf(stderr,
                "perceiver-cl: warning: OpenCL device %d: CLBlast refused the parameters of its tuning profile %s "
                "(%s); using the defaults\n",
                index, d->profile_path, clblast_status(st, eb, sizeof eb));
        d->profile[0] = d->profile_path[0] = '\0';
        CLBlastClearCache();
        clblast_tune(d);
        read_switches(d);
    }
    return 0;
}

static void dev_free(cl_dev *d)
{
    release_kernels(d);
    if (d->dummy)
        clReleaseMemObject(d->dummy);
    for (int i = 0; i < 3; i++)
        if (d->scratch[i])
            clReleaseMemObject(d->scratch[i]);
    if (d->queue)
        clReleaseCommandQueue(d->queue);
    if (d->ctx)
        clReleaseContext(d->ctx);
    free(d);
}

static void ocl_destroy(pcv_backend *be)
{
    if (!be)
        return;
    cl_dev *d = DEV(be);
    if (d && !d->lost)
        clFinish(d->queue); /* the device runtime stays for later backends on this device */
    free(be->ctx);
    free(be);
}

static size_t ocl_buffer_bytes(const pcv_buffer *b) { return b->bytes; }
static bool ocl_has_fp64(const pcv_backend *be) { return DEV(be)->info.fp64; }
static uint64_t ocl_max_alloc(const pcv_backend *be) { return MAX_ALLOC(be); }

static const pcv_backend_ops ocl_ops = {
    .destroy = ocl_destroy,
    .buffer_bytes = ocl_buffer_bytes,
    .has_fp64 = ocl_has_fp64,
    .max_alloc = ocl_max_alloc,
    .alloc = ocl_alloc,
    .release = ocl_release,
    .wrap_host = NULL, /* weights are uploaded */
    .upload = ocl_upload,
    .download = ocl_download,
    .synchronize = ocl_synchronize,
    .gemm = ocl_gemm,
    .gemm_epilogue = true,
    .bias_add = ocl_bias_add,
    .layernorm = ocl_layernorm,
    .activation = ocl_activation,
    .add = ocl_add,
    .softmax = ocl_softmax,
    .gather = ocl_gather,
    .repeat = ocl_repeat,
    .attention = ocl_attention,
    .transpose = ocl_transpose,
    .copy2d = ocl_copy2d,
    .im2col = ocl_im2col,
    .channel_affine = ocl_channel_affine,
    .maxpool = ocl_maxpool,
};

int64_t pcv_cl_loop_limit(const pcv_backend *be)
{
    return be && be->ops == &ocl_ops ? DEV(be)->loop_limit : -1;
}

bool pcv_cl_get_switches(const pcv_backend *be, pcv_cl_switches *s)
{
    if (!be || be->ops != &ocl_ops)
        return false;
    const cl_dev *d = DEV(be);
    s->attention = d->attn_path;
    s->layout = d->layout;
    s->splits = d->force_splits;
    s->gemm = d->gemm_path;
    s->scores_max = d->scores_max;
    s->pack_max = d->pack_max;
    return true;
}

bool pcv_cl_set_switches(pcv_backend *be, const pcv_cl_switches *s)
{
    if (!be || be->ops != &ocl_ops)
        return false;
    cl_dev *d = DEV(be);
    d->attn_path = s->attention;
    d->layout = s->layout;
    d->force_splits = s->splits;
    d->gemm_path = s->gemm;
    d->scores_max = s->scores_max;
    d->pack_max = s->pack_max;
    return true;
}

const char *pcv_cl_clblast_version(void)
{
    static char v[300];
    if (v[0])
        return v;
    /* the file the running CLBlast was loaded from, links resolved ("libclblast.so.1.5.3"):
     * an upgrade without a rebuild of perceiver-cl still changes it */
    Dl_info di;
    char real[PATH_MAX];
    union {
        CLBlastStatusCode (*f)(void);
        void *p;
    } fp = {.f = CLBlastClearCache};
    if (dladdr(fp.p, &di) && di.dli_fname && realpath(di.dli_fname, real)) {
        const char *b = strrchr(real, '/');
        b = b ? b + 1 : real;
        if (strstr(b, "clblast"))
            snprintf(v, sizeof v, "%s", b);
    }
    if (!v[0])
        snprintf(v, sizeof v, "CLBlast %s (linked statically)", PCV_CLBLAST_VERSION);
    return v;
}

bool pcv_cl_clblast_current(const pcv_backend *be, size_t *xgemm, size_t *minind)
{
    return be && be->ops == &ocl_ops &&
           pcv_clblast_retrieve(DEV(be)->dev, "Xgemm", 16, xgemm_names, xgemm) == 0 &&
           pcv_clblast_retrieve(DEV(be)->dev, "GemmRoutine", 1, minind_name, minind) == 0;
}

bool pcv_cl_backend_info(const pcv_backend *be, pcv_cl_device_info *info)
{
    if (!be || be->ops != &ocl_ops)
        return false;
    *info = DEV(be)->info;
    return true;
}

bool pcv_cl_backend_profile(const pcv_backend *be, char *tuning, size_t cap, char *path, size_t pathcap)
{
    if (!be || be->ops != &ocl_ops)
        return false;
    snprintf(tuning, cap, "%s", DEV(be)->profile);
    snprintf(path, pathcap, "%s", DEV(be)->profile_path);
    return true;
}

int pcv_cl_retune(pcv_backend *be, const char *tuning, pcv_error *err)
{
    if (!be || be->ops != &ocl_ops)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_cl_retune: not an OpenCL backend");
    cl_dev *d = DEV(be);
    char why[256], eb[48];
    if (!pcv_cl_profile_check(tuning, why, sizeof why))
        return pcv_set_error(err, PCV_ERR_INPUT, "tuning '%s': %s", tuning, why);
    /* a candidate the driver refused (a work-group too large, registers exhausted) may have
     * marked the device lost; a queue that still finishes is usable */
    if (clFinish(d->queue) == CL_SUCCESS)
        d->lost = false;
    CLBlastClearCache();
    snprintf(d->profile, sizeof d->profile, "%s", tuning);
    d->profile_path[0] = '\0';
    CLBlastStatusCode st = clblast_tune(d);
    if (st != CLBlastSuccess) {
        d->profile[0] = '\0';
        CLBlastClearCache();
        clblast_tune(d);
        read_switches(d);
        return pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d: CLBlast refused the parameters of '%s': %s",
                             d->info.index, tuning, clblast_status(st, eb, sizeof eb));
    }
    read_switches(d);
    bool gl;
    int vw, ls;
    kernel_config(d, &gl, &vw, &ls);
    if (gl != d->gpu_like || vw != d->vw || ls != d->row_ls) {
        release_kernels(d);
        int rc = build_kernels(d, err);
        if (rc) { /* back to the defaults' kernels */
            pcv_error e2 = {0};
            d->profile[0] = '\0';
            release_kernels(d);
            if (build_kernels(d, &e2)) {
                d->lost = true;
                snprintf(d->lost_msg, sizeof d->lost_msg, "OpenCL device %d: %s", d->info.index, e2.msg);
            }
            CLBlastClearCache();
            clblast_tune(d);
            read_switches(d);
            return rc;
        }
    }
    return check_lost(d, err);
}

bool pcv_backend_test_fail_after(pcv_backend *be, int64_t launches)
{
    if (!be || be->ops != &ocl_ops)
        return false;
    DEV(be)->fail_after = launches;
    return true;
}

pcv_backend *pcv_backend_opencl_create(int index, const pcv_backend_options *opt, pcv_error *err)
{
    if (index < 0 || index >= MAX_DEVICES) {
        char list[768];
        pcv_cl_format_device_list(list, sizeof list);
        pcv_set_error(err, PCV_ERR_DEVICE, "OpenCL device %d does not exist; the devices are:\n%s", index, list);
        return NULL;
    }
    cl_dev *d = g_devs[index];
    if (!d) {
        d = calloc(1, sizeof *d);
        if (!d) {
            pcv_set_error(err, PCV_ERR_OOM, "out of memory");
            return NULL;
        }
        if (dev_init(d, index, err)) {
            dev_free(d);
            return NULL;
        }
        g_devs[index] = d;
    }
    if (d->lost) {
        pcv_set_error(err, PCV_ERR_DEVICE, "%s", d->lost_msg);
        return NULL;
    }
    pcv_backend *be = calloc(1, sizeof *be);
    cl_be *cb = calloc(1, sizeof *cb);
    if (!be || !cb) {
        free(be);
        free(cb);
        pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        return NULL;
    }
    cb->d = d;
    cb->max_alloc = d->info.max_alloc;
    if (opt && opt->max_alloc > 0 && opt->max_alloc < cb->max_alloc) {
        cb->max_alloc = opt->max_alloc;
        cb->max_alloc_lowered = true;
    }
    be->ops = &ocl_ops;
    be->ctx = cb;
    snprintf(be->name, sizeof be->name, "opencl:%d", index);
    snprintf(be->device_name, sizeof be->device_name, "OpenCL device %d: %s (%s, %s)", index, d->info.name,
             d->info.platform, d->info.driver);
    char gemm[64] = "CLBlast";
    if (use_own_gemm(d))
        snprintf(gemm, sizeof gemm, "our own, %d x %d tiles of float%d", d->gemm_mr, 2 * d->gemm_gw, d->gemm_gw);
    snprintf(be->driver, sizeof be->driver, "%s, driver %s, %s; GEMMs: %s%s%s", d->info.platform_version,
             d->info.driver, d->info.version, gemm, d->profile_path[0] ? "; tuned (perceiver-cl tune): " : "",
             !d->profile_path[0] ? "" : d->profile[0] ? d->profile : "the defaults");
    return be;
}

#else
const char *pcv_cl_clblast_version(void) { return "none"; }
bool pcv_cl_clblast_current(const pcv_backend *be, size_t *xgemm, size_t *minind) { return false; }
bool pcv_cl_backend_info(const pcv_backend *be, pcv_cl_device_info *info) { return false; }
bool pcv_cl_backend_profile(const pcv_backend *be, char *tuning, size_t cap, char *path, size_t pathcap)
{
    return false;
}
int pcv_cl_retune(pcv_backend *be, const char *tuning, pcv_error *err)
{
    return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "this build has no OpenCL backend");
}
int64_t pcv_cl_loop_limit(const pcv_backend *be) { return -1; }
bool pcv_cl_get_switches(const pcv_backend *be, pcv_cl_switches *s) { return false; }
bool pcv_cl_set_switches(pcv_backend *be, const pcv_cl_switches *s) { return false; }
bool pcv_backend_test_fail_after(pcv_backend *be, int64_t launches) { return false; }
#endif
