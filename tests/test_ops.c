/* Every backend operation against float64 references: the one table of operation cases
 * (src/backend/opcases.c, shared with `perceiver-cl bench-ops`) plus random odd shapes, on the
 * CPU reference backend and on every OpenCL device. Every output buffer is followed by a guard
 * region of sentinel values that must survive (catches out-of-bounds writes). Tolerances: the
 * library's one table, pcv_op_tolerance (src/backend/opcases.c; policy in tests/TOLERANCES.md).
 *
 * OpenCL devices also run the attention cases through each of their code paths (fused kernel
 * with and without key splits, GEMMs + softmax), with head sizes up to 1280 and long key/query
 * ranges. With PCV_REQUIRE_OPENCL=1 (CI) a machine without an OpenCL device fails.
 *
 *   test_ops [-o FILTER] [-b BACKEND]    FILTER: part of an operation's name or description
 *                                        (e.g. attention, "gemm NT"); BACKEND: cpu, opencl (every
 *                                        OpenCL device) or an OpenCL device index
 * PCV_TEST_TUNING adds OpenCL tuning keys (testutil.h): ctest runs it a second time with GPU-style
 * kernels under small limits (test_ops_gpu_limits). */
#include "backend/opcases.h"
#include "backend/opencl.h"
#include "backend/testing.h"
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

static const char *filter;
static uint64_t seed = 1;


/* Runs one case on a backend and checks it; returns the instance (output kept) when keep. */
static void run_case(pcv_backend *be, const pcv_op_case *c, const char *how)
{
    char what[200];
    pcv_op_describe(c, what, sizeof what);
    if (how) {
        size_t l = strlen(what);
        snprintf(what + l, sizeof what - l, " [%s]", how);
    }
    pcv_error err = {0};
    pcv_op_inst in;
    seed++;
    if (pcv_op_setup(be, c, seed, &in, &err) != 0) {
        CHECK(0, "%s: setup: %s", what, err.msg);
        return;
    }
    CHECK(pcv_op_run(be, &in, &err) == 0, "%s: %s", what, err.msg);
    pcv_op_tol t = pcv_op_tolerance(c); /* the library's table (backend/opcases.c) */
    pcv_op_result r;
    bool by_nmse = t.nmse > 0;
    if (pcv_op_check(be, &in, by_nmse ? -1 : t.atol, t.rtol, &r, &err) != 0) {
        CHECK(0, "%s: check: %s", what, err.msg);
    } else {
        CHECK(r.guard_bad == 0, "%s: %lld guard values after the output were overwritten", what, (long long)r.guard_bad);
        CHECK(r.nonfinite == 0, "%s: %lld outputs are not finite", what, (long long)r.nonfinite);
        if (by_nmse)
            CHECK(r.nmse <= t.nmse, "%s: nmse %.3g > %.3g", what, r.nmse, t.nmse);
        else
            CHECK(r.bad == 0, "%s: %lld of %lld values outside tolerance (worst err/tol %.3g)", what, (long long)r.bad,
                  (long long)r.n, r.worst);
        /* the two GELUs must be distinguishable at this tolerance */
        if (c->op == PCV_OP_ACTIVATION && c->act == PCV_ACT_GELU && r.n >= 100) {
            pcv_op_case tanh_case = *c;
            tanh_case.act = PCV_ACT_GELU_TANH;
            in.c = &tanh_case;
            pcv_op_result r2;
            CHECK(pcv_op_check(be, &in, t.atol, t.rtol, &r2, &err) == 0 && r2.bad > 0,
                  "%s: the gelu tolerance cannot tell erf from tanh", what);
            in.c = c;
        }
    }
    pcv_op_free(be, &in);
}

static void run_table(pcv_backend *be)
{
    int n;
    const pcv_op_case *cases = pcv_op_cases(&n);
    for (int i = 0; i < n; i++) {
        const pcv_op_case *c = &cases[i];
        /* the full-size models' shapes whose float64 reference is cheap enough for a test */
        if (c->model && pcv_op_flops(c) + pcv_op_bytes(c) > 1.2e9)
            continue;
        if (pcv_op_matches(c, filter))
            run_case(be, c, NULL);
    }
}

/* Random odd shapes (gemm, layernorm, softmax, attention). */
static uint64_t rs = 0x853c49e6748fea9bull;
static double urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}
static int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)(urand() * (double)(hi - lo + 1)); }

static void run_random(pcv_backend *be, int count)
{
    for (int i = 0; i < count; i++) {
        pcv_op_case cs[4] = {
            {.op = PCV_OP_GEMM, .m = irand(1, 150), .n = irand(1, 150), .k = irand(1, 300), .batch = irand(1, 3),
             .ta = urand() < 0.5, .tb = urand() < 0.5, .beta = urand() < 0.5 ? 0.0f : 0.5f},
            {.op = PCV_OP_LAYERNORM, .m = irand(1, 40), .n = irand(1, 900), .offset = (float)(urand() * 50)},
            {.op = PCV_OP_SOFTMAX, .m = irand(1, 40), .n = irand(1, 900), .masked = urand() < 0.5},
            {.op = PCV_OP_ATTENTION, .mode = urand() < 0.5 ? PCV_ATTN_HF : PCV_ATTN_HAIKU, .batch = irand(1, 2),
             .heads = irand(1, 4), .nq = irand(1, 90), .nk = irand(1, 300), .dqk = irand(1, 70), .dv = irand(1, 70),
             .mask = urand() < 0.2 ? PCV_MASK_ROW0_ALL : urand() < 0.7 ? PCV_MASK_RANDOM : PCV_MASK_NONE},
        };
        for (int j = 0; j < 4; j++)
            if (pcv_op_matches(&cs[j], filter))
                run_case(be, &cs[j], "random");
    }
}

/* Attention over no keys (or keys of no channels) is refused with a shape error on every
 * backend, never answered with zeros on one and an error on another. */
static void run_zero_keys(pcv_backend *be)
{
    pcv_error err = {0};
    pcv_buffer *buf = pcv_backend_alloc(be, 4096, &err);
    CHECK(buf != NULL, "alloc: %s", err.msg);
    if (!buf)
        return;
    for (int mode = 0; mode < 2; mode++)
        for (int dqk = 0; dqk < 2; dqk++) {
            int64_t nk = dqk ? 0 : 5;
            pcv_attention_args a = {.batch = 1, .heads = 2, .nq = 3, .nk = nk, .dqk = dqk ? 4 : 0, .dv = 4,
                                    .scale = 2.0f, .mode = mode, .q = buf, .q_ld = 8, .k = buf, .k_ld = 8,
                                    .v = buf, .v_ld = 8, .o = buf, .o_off = 512, .o_ld = 8};
            memset(&err, 0, sizeof err);
            int rc = pcv_backend_attention(be, &a, &err);
            CHECK(rc == PCV_ERR_SHAPE && strstr(err.msg, "keys"), "%s: attention with %lld keys of %lld channels: rc %d '%s'",
                  pcv_backend_device(be), (long long)a.nk, (long long)a.dqk, rc, err.msg);
        }
    pcv_backend_release(be, buf);
}

/* Attention through each code path of an OpenCL backend, including shapes the models meet:
 * the language model's heads (dqk 32, dv 160), single-head layers with wide heads (dqk 704
 * and 1280, dv 1280), padding masks (whole key tiles masked), a long key range with few queries
 * (split across work-items) and a long query range. */
static void run_opencl_attention_paths(pcv_backend *be)
{
    pcv_cl_switches saved, s;
    CHECK(pcv_cl_get_switches(be, &saved), "not an OpenCL backend");
    static const struct {
        int attention, splits;
        int64_t scores_max;
        const char *what;
    } paths[] = {{1, 0, 0, "fused kernel"},
                 {1, 3, 0, "fused kernel, 3 key splits"},
                 {2, 0, 0, "GEMMs + softmax"},
                 {2, 0, 4096, "GEMMs + softmax, 4 KiB query chunks"}};
    static const int64_t shapes[][7] = {
        /* batch heads nq nk dqk dv mask */
        {2, 3, 65, 47, 8, 5, PCV_MASK_RANDOM},      {2, 1, 3, 1000, 61, 29, PCV_MASK_ROW0_ALL},
        {1, 8, 37, 70, 32, 160, PCV_MASK_RANDOM},   {1, 1, 5, 40, 704, 1280, PCV_MASK_RANDOM},
        {1, 1, 3, 20, 1280, 1280, PCV_MASK_RANDOM}, {3, 2, 200, 16, 4, 4, PCV_MASK_NONE},
        {3, 2, 9, 300, 8, 24, PCV_MASK_PADDING},    {2, 1, 5, 700, 16, 8, PCV_MASK_PADDING},
    };
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        s = saved;
        s.attention = paths[p].attention;
        s.splits = paths[p].splits;
        s.scores_max = paths[p].scores_max;
        pcv_cl_set_switches(be, &s);
        for (int mode = 0; mode < 2; mode++)
            for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
                const int64_t *v = shapes[i];
                pcv_op_case c = {.op = PCV_OP_ATTENTION, .mode = mode, .batch = v[0], .heads = v[1], .nq = v[2],
                                 .nk = v[3], .dqk = v[4], .dv = v[5], .mask = (int)v[6]};
                if (pcv_op_matches(&c, filter))
                    run_case(be, &c, paths[p].what);
            }
    }
    s = saved;
    s.attention = 1;
    pcv_cl_set_switches(be, &s);
    pcv_op_case longk = {.op = PCV_OP_ATTENTION, .mode = PCV_ATTN_HF, .batch = 1, .heads = 2, .nq = 4, .nk = 20000,
                         .dqk = 16, .dv = 24, .mask = PCV_MASK_RANDOM};
    pcv_op_case longq = {.op = PCV_OP_ATTENTION, .mode = PCV_ATTN_HAIKU, .batch = 1, .heads = 1, .nq = 20000, .nk = 48,
                         .dqk = 8, .dv = 20, .mask = PCV_MASK_RANDOM};
    if (pcv_op_matches(&longk, filter))
        run_case(be, &longk, "fused kernel, long keys");
    if (pcv_op_matches(&longq, filter))
        run_case(be, &longq, "fused kernel, long queries");
    pcv_cl_set_switches(be, &saved);
}

/* GEMMs through each GEMM of an OpenCL backend (CLBlast, our own cl/gemm.cl): the table's GEMM
 * cases (odd sizes, every transpose, batches with padded strides, beta, epilogues), a long k (the
 * loop-limit slices), the attention GEMM path (A with padded rows: heads side by side), and our
 * GEMM's packed B cut into batch and column slices (pack_max lowered). */
static void run_opencl_gemm_paths(pcv_backend *be)
{
    pcv_cl_switches saved, s;
    CHECK(pcv_cl_get_switches(be, &saved), "not an OpenCL backend");
    static const struct {
        int gemm;
        int64_t pack_max;
        const char *what;
    } paths[] = {{1, 0, "CLBlast"}, {2, 0, "own GEMM"}, {2, 4096, "own GEMM, 4 KiB of packed B"}};
    const pcv_op_case extra[] = {
        {.op = PCV_OP_GEMM, .m = 7, .n = 20, .k = 9001, .batch = 2, .tb = true, .beta = 0.5f},
        {.op = PCV_OP_GEMM, .m = 13, .n = 35, .k = 9001, .batch = 1, .ta = true, .epi = PCV_EPI_BIAS | PCV_EPI_GELU | PCV_EPI_RES},
        {.op = PCV_OP_GEMM, .m = 41, .n = 97, .k = 17, .batch = 3, .ta = true, .tb = true, .beta = 0.75f},
        {.op = PCV_OP_GEMM, .m = 6, .n = 16, .k = 64, .batch = 1, .epi = PCV_EPI_BIAS},
        {.op = PCV_OP_GEMM, .m = 12, .n = 48, .k = 65, .batch = 2},
    };
    int n;
    const pcv_op_case *cases = pcv_op_cases(&n);
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        s = saved;
        s.gemm = paths[p].gemm;
        s.pack_max = paths[p].pack_max;
        s.attention = 2;
        pcv_cl_set_switches(be, &s);
        for (int i = 0; i < n; i++)
            if (cases[i].op == PCV_OP_GEMM && !cases[i].model && pcv_op_matches(&cases[i], filter))
                run_case(be, &cases[i], paths[p].what);
        for (size_t i = 0; i < sizeof extra / sizeof *extra; i++)
            if (pcv_op_matches(&extra[i], filter))
                run_case(be, &extra[i], paths[p].what);
        for (int i = 0; i < 6; i++) {
            pcv_op_case c = {.op = PCV_OP_GEMM, .m = irand(1, 150), .n = irand(1, 150), .k = irand(1, 300),
                             .batch = irand(1, 3), .ta = urand() < 0.5, .tb = urand() < 0.5,
                             .beta = urand() < 0.5 ? 0.0f : 0.5f};
            if (pcv_op_matches(&c, filter))
                run_case(be, &c, paths[p].what);
        }
        pcv_op_case at = {.op = PCV_OP_ATTENTION, .mode = PCV_ATTN_HF, .batch = 2, .heads = 3, .nq = 29, .nk = 70,
                          .dqk = 19, .dv = 33, .mask = PCV_MASK_RANDOM};
        if (pcv_op_matches(&at, filter))
            run_case(be, &at, paths[p].what);
    }
    pcv_cl_set_switches(be, &saved);
}

/* Our GEMM's packed B within the allocation limit (lowered by the max_alloc option): a GEMM
 * whose panels of packed B fit only a few at a time runs right, in slices; one whose single
 * panel does not fit is
 * refused with an out-of-memory error naming the device and the limit, not computed wrong. */
static void run_pack_limit(const char *spec)
{
    pcv_error err = {0};
    pcv_backend *be = pcv_backend_open(&(pcv_backend_options){.device = spec, .max_alloc = 8192}, &err);
    CHECK(be != NULL, "%s", err.msg);
    if (!be)
        return;
    pcv_cl_switches s;
    CHECK(pcv_cl_get_switches(be, &s), "not an OpenCL backend");
    s.gemm = 2;
    pcv_cl_set_switches(be, &s);
    pcv_op_case fits = {.op = PCV_OP_GEMM, .m = 3, .n = 3, .k = 50, .batch = 3, .tb = true, .beta = 0.5f};
    if (pcv_op_matches(&fits, filter))
        run_case(be, &fits, "own GEMM, 8 KiB allocation limit: batch slices");
    pcv_op_case big = {.op = PCV_OP_GEMM, .m = 2, .n = 2, .k = 300, .batch = 1}; /* a panel of 8 columns or more: over 8 KiB */
    pcv_op_inst in;
    if (pcv_op_matches(&big, filter) && pcv_op_setup(be, &big, 3, &in, &err) == 0) {
        int rc = pcv_op_run(be, &in, &err);
        CHECK(rc == PCV_ERR_OOM && strstr(err.msg, "OpenCL device") && strstr(err.msg, "maximum allocation of 8192"),
              "our GEMM with a panel over the allocation limit: rc %d, '%s'", rc, err.msg);
        pcv_op_free(be, &in);
    } else if (pcv_op_matches(&big, filter)) {
        CHECK(0, "pack limit: setup: %s", err.msg);
    }
    pcv_backend_close(be);
}

/* A device that ends kernel loops early (Mesa's llvmpipe: 65535 iterations per work-item; any
 * device under the tuning key loop_limit=N): attention whose keys need more than one
 * work-item's share is split further and stays right; a row too long for one work-item's share
 * is refused with an error naming the limit, never computed wrong. */
static void run_loop_limit(pcv_backend *be)
{
    int64_t lim = pcv_cl_loop_limit(be);
    printf("loop limit: %lld\n", (long long)lim);
    if (lim <= 0)
        return;
    /* keys: 4x the limit in tiles of 16; one head of 64 channels (about 200 iterations a tile) */
    pcv_op_case longk = {.op = PCV_OP_ATTENTION, .mode = PCV_ATTN_HF, .batch = 2, .heads = 1, .nq = 5,
                         .nk = 4 * lim + 3, .dqk = 64, .dv = 40, .mask = PCV_MASK_RANDOM};
    if (pcv_op_matches(&longk, filter))
        run_case(be, &longk, "keys beyond the loop limit");
    pcv_op_case rowc = {.op = PCV_OP_SOFTMAX, .m = 2, .n = 64 * lim};
    if (!pcv_op_matches(&rowc, filter))
        return;
    pcv_error err = {0};
    pcv_op_inst in;
    if (pcv_op_setup(be, &rowc, 7, &in, &err) != 0) {
        CHECK(0, "loop limit row: setup: %s", err.msg);
        return;
    }
    int rc = pcv_op_run(be, &in, &err);
    CHECK(rc == PCV_ERR_UNSUPPORTED && strstr(err.msg, "loop"),
          "a softmax row of %lld columns under a loop limit of %lld: rc %d, '%s'", (long long)rowc.n, (long long)lim,
          rc, err.msg);
    pcv_op_free(be, &in);
}

/* A device lost in the middle of work (test hook): the failing operation and every later call
 * and backend on that device fail with a message naming the device, nothing crashes. Run last:
 * the device stays lost for the process. */
static void run_device_loss(const char *spec)
{
    pcv_error err = {0};
    pcv_backend *be = pcv_backend_open(&(pcv_backend_options){.device = spec}, &err);
    CHECK(be != NULL, "%s", err.msg);
    if (!be)
        return;
    CHECK(pcv_backend_test_fail_after(be, 3), "the device-loss hook needs an OpenCL backend");
    pcv_op_case c = {.op = PCV_OP_ADD, .m = 4, .n = 8};
    pcv_op_inst in;
    int failed = 0;
    for (int i = 0; i < 10 && !failed; i++)
        if (pcv_op_setup(be, &c, 1, &in, &err) == 0) {
            failed = pcv_op_run(be, &in, &err) != 0 || pcv_backend_synchronize(be, &err) != 0;
            pcv_op_free(be, &in);
        } else {
            failed = 1;
        }
    CHECK(failed && strstr(err.msg, "OpenCL device") && strstr(err.msg, "lost"), "device loss: '%s'", err.msg);
    memset(&err, 0, sizeof err);
    CHECK(pcv_op_setup(be, &c, 2, &in, &err) != 0 && strstr(err.msg, "lost"), "a call after the loss: '%s'", err.msg);
    pcv_backend_close(be);
    memset(&err, 0, sizeof err);
    pcv_backend *again = pcv_backend_open(&(pcv_backend_options){.device = spec}, &err);
    CHECK(again == NULL && strstr(err.msg, "lost"), "a new backend on the lost device: '%s'", err.msg);
    pcv_backend_close(again);
}

int main(int argc, char **argv)
{
    const char *only_backend = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            filter = argv[++i];
        else if (!strcmp(argv[i], "-b") && i + 1 < argc)
            only_backend = argv[++i];
        else {
            fprintf(stderr, "usage: %s [-o FILTER] [-b cpu|opencl|N]\n", argv[0]);
            return 2;
        }
    }
    tu_runtime_setup(); /* compiled kernels go to the test folder, not the user's cache */

    pcv_error err = {0};
    if (!only_backend || !strcmp(only_backend, "cpu")) { /* -b opencl: every OpenCL device, no CPU path */
        pcv_backend *cpu = pcv_backend_open(NULL, &err);
        CHECK(cpu != NULL, "%s", err.msg);
        if (cpu) {
            printf("backend: %s\n", pcv_backend_device(cpu));
            run_table(cpu);
            run_random(cpu, 8);
            run_zero_keys(cpu);
            pcv_backend_close(cpu);
        }
    }
    if (only_backend && !strcmp(only_backend, "cpu")) {
        return TEST_DONE();
    }

    pcv_cl_device_info *devs = NULL;
    int ndev = pcv_cl_list_devices(&devs, &err);
    const char *req = getenv("PCV_REQUIRE_OPENCL");
    bool require = req && strcmp(req, "0") != 0 && !filter && (!only_backend || !strcmp(only_backend, "opencl"));
    CHECK(ndev >= 0, "listing OpenCL devices: %s", err.msg);
    if (ndev <= 0) {
        printf("no OpenCL device: the OpenCL tests did not run%s\n", require ? " (PCV_REQUIRE_OPENCL=1: failure)" : "");
        CHECK(!require, "PCV_REQUIRE_OPENCL=1 but no OpenCL device was found (%s)",
              pcv_cl_available() ? "is PoCL installed, with a writable POCL_CACHE_DIR?" : "this build has no OpenCL backend");
    }
    /* PCV_REQUIRE_PLATFORMS (CI: "Portable Computing Language,rusticl"): each named OpenCL
     * implementation must be present and run kernels */
    const char *plats = getenv("PCV_REQUIRE_PLATFORMS");
    bool ran_on[8] = {0};
    for (int i = 0; i < ndev; i++) {
        char spec[16];
        snprintf(spec, sizeof spec, "%d", i);
        if (only_backend && strcmp(only_backend, spec) && strcmp(only_backend, "opencl"))
            continue;
        int64_t before = pcv_cl_launch_count();
        pcv_backend *be = pcv_backend_open(&(pcv_backend_options){.device = spec}, &err);
        CHECK(be != NULL, "OpenCL device %d (%s): %s", i, devs[i].name, err.msg);
        if (!be)
            continue;
        printf("backend: %s\n", pcv_backend_device(be));
        run_table(be);
        run_opencl_attention_paths(be);
        run_opencl_gemm_paths(be);
        run_zero_keys(be);
        run_loop_limit(be);
        run_pack_limit(spec);
        run_random(be, 8);
        CHECK(filter || pcv_cl_launch_count() > before + 100, "OpenCL device %d: only %lld kernels ran", i,
              (long long)(pcv_cl_launch_count() - before));
        printf("OpenCL device %d: %lld kernel launches\n", i, (long long)(pcv_cl_launch_count() - before));
        if (plats && pcv_cl_launch_count() > before + 100) {
            char list[512];
            snprintf(list, sizeof list, "%s", plats);
            int k = 0;
            for (char *tok = strtok(list, ","); tok && k < 8; tok = strtok(NULL, ","), k++)
                if (strstr(devs[i].platform, tok))
                    ran_on[k] = true;
        }
        pcv_backend_close(be);
    }
    if (plats && !filter && (!only_backend || !strcmp(only_backend, "opencl"))) { /* every device ran */
        char list[512];
        snprintf(list, sizeof list, "%s", plats);
        int k = 0;
        for (char *tok = strtok(list, ","); tok && k < 8; tok = strtok(NULL, ","), k++)
            CHECK(ran_on[k], "PCV_REQUIRE_PLATFORMS: no device of the OpenCL platform '%s' ran the operations (is it "
                  "installed and enabled? rusticl needs RUSTICL_ENABLE=llvmpipe)", tok);
    }
    if (ndev > 0 && !filter && !getenv("PCV_TEST_TUNING") && (!only_backend || !strcmp(only_backend, "0")))
        run_device_loss("0");
    free(devs);
    return TEST_DONE();
}
