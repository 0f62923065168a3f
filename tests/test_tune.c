/* The plumbing of `perceiver-cl tune` (backend/tune.h, backend/opencl.h): which profile strings
 * are accepted, CLBlast's Xgemm constraints, and on every OpenCL device that switching tuning
 * strings installs exactly the parameters asked for, and that what a string leaves out goes back
 * to the device's defaults (CLBlast keeps an override until it is replaced, so "back to the
 * defaults" must install them). The search itself, its rejection of wrong candidates and the
 * stored profiles are tests/cli_tune.sh's. */
#include "testutil.h"

#include "backend/opencl.h"

static void profile_strings(void)
{
    static const char *const good[] = {
        "",
        "xgemm=0:1:64:4:1:1:32:1:1:8:0:0:0:0:16:1",
        "xgemm=0:1:64:4:1:1:32:1:1:8:0:0:0:0:16:1,minind=1,layout=swap,attention=gemm",
        "clblast=0,minind=0",
        "attention=auto,attn_gemm_d=128,splits=4",
        "as=gpu,vw=8,row_ls=32",
        "as=cpu,vw=16,row_ls=1",
        "layout=ROW", /* choices are case-insensitive, as the runtime's */
    };
    static const char *const bad[][2] = {
        {"xgemm=1:2:3", "xgemm needs 16 numbers"},
        {"xgemm=0:1:64:4:1:1:32:1:1:8:0:0:0:0:16:1:7", "xgemm needs 16 numbers"},
        {"xgemm=0:1:64:4:1:1:32:1:1:8:0:0:0:0:16:x", "bad value for xgemm"},
        {"xgemm=0:1:99999:4:1:1:32:1:1:8:0:0:0:0:16:1", "bad value for xgemm"},
        {"layout=diagonal", "bad value for layout"},
        {"attention=maybe", "bad value for attention"},
        {"vw=3", "bad value for vw"},
        {"row_ls=48", "bad value for row_ls"},
        {"row_ls=2048", "bad value for row_ls"},
        {"as=fpga", "bad value for as"},
        {"clblast=2", "bad value for clblast"},
        {"splits=-1", "bad value for splits"},
        {"minind=", "bad value for minind"},
        {"wg=16", "'wg' is not a key of a profile"},
        {"loop_limit=5", "'loop_limit' is not a key"},
        {"profile=0", "'profile' is not a key"},
        {"layout", "is not key=value"},
        {"layout=row,,", "is not key=value"},
    };
    char why[256];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK(pcv_cl_profile_check(good[i], why, sizeof why), "'%s' refused: %s", good[i], why);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        why[0] = '\0';
        CHECK(!pcv_cl_profile_check(bad[i][0], why, sizeof why), "'%s' accepted", bad[i][0]);
        CHECK(strstr(why, bad[i][1]) != NULL, "'%s': the reason '%s' does not say '%s'", bad[i][0], why, bad[i][1]);
    }
    char big[600];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(!pcv_cl_profile_check(big, why, sizeof why), "a 599-character profile accepted");
}

static void xgemm_constraints(void)
{
    pcv_cl_device_info gpu = {.max_work_group = 256, .max_item_size0 = 256, .local_mem = 32768};
    int p[16];
    CHECK(pcv_cl_xgemm_parse("layout=row,xgemm=0:1:32:2:16:16:64:16:16:64:1:1:0:0:2:2", p) && p[2] == 32 && p[15] == 2,
          "xgemm= parsed after another key");
    CHECK(pcv_cl_xgemm_valid(p, &gpu), "CLBlast's GPU-shaped set is valid on a GPU-sized device");
    pcv_cl_device_info small = gpu;
    small.max_work_group = 128;
    CHECK(!pcv_cl_xgemm_valid(p, &small), "16x16 work-items refused where the work-group limit is 128");
    small = gpu;
    small.local_mem = 8192; /* (32x64 + 32x64) floats need 16 KiB */
    CHECK(!pcv_cl_xgemm_valid(p, &small), "a set that needs 16 KiB of local memory refused with 8 KiB");
    CHECK(pcv_cl_xgemm_parse("xgemm=0:1:64:4:1:1:30:1:1:8:0:0:0:0:16:1", p) && !pcv_cl_xgemm_valid(p, &gpu),
          "MWG 30 is not a multiple of MDIMC x VWM = 16: refused");
    CHECK(pcv_cl_xgemm_parse("xgemm=1:1:64:4:1:1:32:1:1:8:0:0:0:0:16:1", p) && !pcv_cl_xgemm_valid(p, &gpu),
          "GEMMK 1 refused");
    CHECK(!pcv_cl_xgemm_parse("minind=1", p), "no xgemm= key: nothing parsed");
    CHECK(!pcv_cl_xgemm_parse("noxgemm=0:1:64:4:1:1:32:1:1:8:0:0:0:0:16:1", p), "a key ending in xgemm is not xgemm");
}

/* The row kernels' default width from the device's SIMD width (pcv_cl_row_ls), and a tuned width cut to the same limits. */
static void row_ls_defaults(void)
{
    const pcv_cl_device_info base = {.max_work_group = 1024, .max_item_size0 = 1024, .local_mem = 49152};
    struct {
        unsigned simd;
        size_t wg;
        uint64_t local;
        int want;
        const char *what;
    } cases[] = {
        {0, 1024, 49152, 64, "no SIMD width reported: 64"},
        {32, 1024, 49152, 64, "an NVIDIA warp of 32: two warps"},
        {64, 1024, 65536, 128, "an AMD GCN wavefront of 64: two wavefronts"},
        {32, 512, 65536, 64, "an AMD RDNA wavefront of 32"},
        {16, 512, 65536, 32, "Intel sub-groups of up to 16: 32"},
        {8, 256, 65536, 32, "SIMD8: never fewer than 32 on a device that allows them"},
        {24, 1024, 65536, 64, "a width of 24: rounded up to a power of two"},
        {256, 1024, 65536, 256, "a width of 256: at most 256"},
        {64, 64, 65536, 64, "cut to a work-group limit of 64"},
        {64, 1024, 300, 16, "cut to 300 bytes of local memory (12 a work-item)"},
        {0, 1, 49152, 1, "a device of one work-item a group"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pcv_cl_device_info d = base;
        d.simd_width = cases[i].simd;
        d.max_work_group = d.max_item_size0 = cases[i].wg;
        d.local_mem = cases[i].local;
        int got = pcv_cl_row_ls(&d, 0);
        CHECK(got == cases[i].want, "%s: got %d, want %d", cases[i].what, got, cases[i].want);
    }
    pcv_cl_device_info d = base;
    d.simd_width = 64;
    d.max_item_size0 = 32;
    CHECK(pcv_cl_row_ls(&d, 0) == 32, "cut to a first-dimension item limit of 32");
    d = base;
    d.max_work_group = 256;
    CHECK(pcv_cl_row_ls(&d, 16) == 16, "a tuned row_ls=16 kept");
    CHECK(pcv_cl_row_ls(&d, 1024) == 256, "a tuned row_ls=1024 cut to a work-group limit of 256");
}

static bool same16(const size_t *a, const int *b)
{
    for (int i = 0; i < 16; i++)
        if (a[i] != (size_t)b[i])
            return false;
    return true;
}

/* On a device: each tuning string installs its parameters, and the defaults come back. */
static void retune_on(int index)
{
    char dev[16];
    snprintf(dev, sizeof dev, "%d", index);
    pcv_error err = {0};
    pcv_backend *be = pcv_backend_open(&(pcv_backend_options){.device = dev}, &err);
    CHECK(be != NULL, "device %d: %s", index, err.msg);
    if (!be)
        return;
    size_t def[16], defmin, cur[16], curmin;
    if (!pcv_cl_clblast_current(be, def, &defmin)) {
        printf("device %d: CLBlast cannot report its parameters; not checked\n", index);
        pcv_backend_close(be);
        return;
    }
    const char *setA = "xgemm=0:1:32:2:8:8:32:8:8:32:1:1:0:0:4:4,minind=7";
    int pa[16];
    pcv_cl_xgemm_parse(setA, pa);
    CHECK(pcv_cl_retune(be, setA, &err) == 0, "device %d: %s", index, err.msg);
    CHECK(pcv_cl_clblast_current(be, cur, &curmin) && same16(cur, pa) && curmin == 7,
          "device %d: the string's Xgemm set and threshold are installed", index);
    CHECK(pcv_cl_retune(be, "", &err) == 0, "device %d: %s", index, err.msg);
    CHECK(pcv_cl_clblast_current(be, cur, &curmin) && !memcmp(cur, def, sizeof def) && curmin == defmin,
          "device %d: the empty string puts the defaults back (not the last override)", index);
    CHECK(pcv_cl_retune(be, "minind=9", &err) == 0 && pcv_cl_clblast_current(be, cur, &curmin) &&
              !memcmp(cur, def, sizeof def) && curmin == 9,
          "device %d: a string with the threshold only keeps the default Xgemm set", index);
    CHECK(pcv_cl_retune(be, "clblast=0", &err) == 0 && pcv_cl_retune(be, setA, &err) == 0 &&
              pcv_cl_retune(be, "clblast=0", &err) == 0,
          "device %d: %s", index, err.msg);
    size_t db[16], dbmin;
    CHECK(pcv_cl_clblast_current(be, db, &dbmin) && !same16(db, pa),
          "device %d: clblast=0 after another set puts CLBlast's database values back", index);
    /* a string that is not a profile, or that CLBlast refuses, leaves the defaults */
    CHECK(pcv_cl_retune(be, "wg=1", &err) != 0 && strstr(err.msg, "not a key"), "device %d: 'wg=1' refused", index);
    CHECK(pcv_cl_retune(be, "", &err) == 0 && pcv_cl_clblast_current(be, cur, &curmin) &&
              !memcmp(cur, def, sizeof def),
          "device %d: back to the defaults", index);
    pcv_backend_close(be);
}

int main(void)
{
    tu_runtime_setup();
    profile_strings();
    xgemm_constraints();
    row_ls_defaults();
    pcv_error err = {0};
    pcv_cl_device_info *devs = NULL;
    int n = pcv_cl_list_devices(&devs, &err);
    for (int i = 0; i < n; i++)
        retune_on(i);
    if (n <= 0) {
        printf("no OpenCL device: the retuning checks did not run\n");
        CHECK(!getenv("PCV_REQUIRE_OPENCL") || !strcmp(getenv("PCV_REQUIRE_OPENCL"), "0"),
              "PCV_REQUIRE_OPENCL is set but there is no OpenCL device");
    }
    free(devs);
    return TEST_DONE();
}
