/* perceiver-cl bench-ops: GFLOP/s of single operations at the shapes of a real model, on a device
 * and on the CPU reference path. */
#include "cli/cli.h"
#include "cli/jsonw.h"
#include "util/error.h"

#include "backend/backend.h"
#include "backend/opencl.h"
#include "model/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const cli_option options[] = {
    {"device", 'd', "D", "device to measure (default $PERCEIVER_DEVICE, else 0 when an\n"
                         "OpenCL device exists); cpu measures the CPU path alone"},
    {"threads", 't', "N", "CPU threads of the reference path (default: all cores)"},
    {"repeat", 'r', "N", "timed runs per operation (default 5)"},
    {"only", CLI_KEY, "WORD", "only operations whose name or kind contains WORD (gemm,\n"
                              "attention, layernorm, gelu, softmax, add, or words of the\n"
                              "names); no match is a usage error"},
    {"variants", CLI_KEY + 1, NULL, "also time each GEMM in both CLBlast layouts (row-major,\n"
                                    "swapped) and attention on both paths (fused kernel, CLBlast\n"
                                    "GEMMs), OpenCL only"},
    {"no-cpu", CLI_KEY + 2, NULL, "skip the CPU reference path"},
    {"json", CLI_KEY + 3, NULL, "machine-readable output (docs/json.md)"},
    {0},
};

const cli_command cli_cmd_bench_ops = {
    "bench-ops", "[--device D] [options]",
    "Times single operations at the shapes of the full-size language model\n"
    "(deepmind/language-perceiver: 2048 bytes, 256 latents of 1280 channels, d_model 768,\n"
    "8 heads) on a device and on the CPU reference path, and prints GFLOP/s and the ratio.\n"
    "Every time is the best of --repeat runs after one warm-up, each run synchronized.\n"
    "Inputs are random; nothing is checked (tests do that).\n",
    options, CLI_QUIET, NULL,
};

typedef enum { OP_GEMM, OP_ATTN, OP_LN, OP_GELU, OP_SOFTMAX, OP_ADD } op_kind;

typedef struct op_case {
    const char *name; /* what the model does with it */
    op_kind kind;
    int64_t m, n, k;            /* GEMM: rows, out, in (y = x W^T); rows x cols for others */
    int64_t heads, nq, nk, dqk, dv; /* attention */
    int count;                  /* applications per forward pass */
} op_case;

/* The full-size MLM (HF deepmind/language-perceiver, seq 2048). */
static const op_case cases[] = {
    {"enc.cross K/V proj (in 768 -> 256+1280)", OP_GEMM, 2048, 1536, 768, 0, 0, 0, 0, 0, 1},
    {"enc.cross Q proj", OP_GEMM, 256, 256, 1280, 0, 0, 0, 0, 0, 1},
    {"self Q/K/V proj (x26)", OP_GEMM, 256, 1792, 1280, 0, 0, 0, 0, 0, 26},
    {"self out proj / MLP (x26 x3)", OP_GEMM, 256, 1280, 1280, 0, 0, 0, 0, 0, 78},
    {"dec Q proj", OP_GEMM, 2048, 256, 768, 0, 0, 0, 0, 0, 1},
    {"dec out proj / MLP (x3)", OP_GEMM, 2048, 768, 768, 0, 0, 0, 0, 0, 3},
    {"logits (vocab 262)", OP_GEMM, 2048, 262, 768, 0, 0, 0, 0, 0, 1},
    {"enc.cross attention", OP_ATTN, 0, 0, 0, 8, 256, 2048, 32, 160, 1},
    {"self attention (x26)", OP_ATTN, 0, 0, 0, 8, 256, 256, 32, 160, 26},
    {"dec attention", OP_ATTN, 0, 0, 0, 8, 2048, 256, 32, 96, 1},
    {"layernorm 2048x768", OP_LN, 2048, 768, 0, 0, 0, 0, 0, 0, 2},
    {"layernorm 256x1280 (x~80)", OP_LN, 256, 1280, 0, 0, 0, 0, 0, 0, 80},
    {"gelu 256x1280 (x27)", OP_GELU, 256, 1280, 0, 0, 0, 0, 0, 0, 27},
    {"softmax 2048x262", OP_SOFTMAX, 2048, 262, 0, 0, 0, 0, 0, 0, 0},
    {"add 256x1280 (x54)", OP_ADD, 256, 1280, 0, 0, 0, 0, 0, 0, 54},
};

static double case_flops(const op_case *c)
{
    switch (c->kind) {
    case OP_GEMM: return 2.0 * (double)c->m * (double)c->n * (double)c->k;
    case OP_ATTN: return 2.0 * (double)c->heads * (double)c->nq * (double)c->nk * (double)(c->dqk + c->dv);
    default: return 0; /* memory-bound: reported as GB/s */
    }
}

static double case_bytes(const op_case *c)
{
    double n = (double)c->m * (double)c->n * sizeof(float);
    switch (c->kind) {
    case OP_LN: return 2 * n;
    case OP_GELU: return 2 * n;
    case OP_SOFTMAX: return 2 * n;
    case OP_ADD: return 3 * n;
    default: return 0;
    }
}

static bool case_matches(const op_case *c, const char *only)
{
    static const char *const kinds[] = {"gemm", "attention", "layernorm", "gelu", "softmax", "add"};
    return !only || strstr(c->name, only) || strstr(kinds[c->kind], only);
}

typedef struct bufs {
    pcv_buffer *b[6];
} bufs;

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
}

static pcv_buffer *rand_buf(pcv_backend *be, size_t n, pcv_error *err)
{
    float *h = malloc(n * sizeof *h);
    if (!h) {
        pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        h[i] = frand();
    pcv_buffer *b = pcv_backend_alloc(be, n * sizeof(float), err);
    if (b && pcv_backend_upload(be, b, 0, h, n * sizeof(float), err)) {
        pcv_backend_release(be, b);
        b = NULL;
    }
    free(h);
    return b;
}

static int run_case(pcv_backend *be, const op_case *c, const bufs *B, pcv_error *err)
{
    switch (c->kind) {
    case OP_GEMM: {
        pcv_gemm_args g = {.trans_a = false, .trans_b = true, .m = c->m, .n = c->n, .k = c->k, .batch = 1,
                           .alpha = 1, .beta = 0, .a = B->b[0], .lda = c->k, .b = B->b[1], .ldb = c->k,
                           .c = B->b[2], .ldc = c->n};
        return pcv_backend_gemm(be, &g, err);
    }
    case OP_ATTN: {
        int64_t ld_qk = c->heads * c->dqk, ld_v = c->heads * c->dv;
        pcv_attention_args a = {.batch = 1, .heads = c->heads, .nq = c->nq, .nk = c->nk, .dqk = c->dqk, .dv = c->dv,
                                .scale = sqrtf((float)c->dqk), .mode = PCV_ATTN_HF, .q = B->b[0], .q_ld = ld_qk,
                                .k = B->b[1], .k_ld = ld_qk, .v = B->b[2], .v_ld = ld_v, .o = B->b[3],
                                .o_ld = ld_v, .kmask = c->nk == 2048 ? B->b[4] : NULL};
        return pcv_backend_attention(be, &a, err);
    }
    case OP_LN:
        return pcv_backend_layernorm(be, B->b[0], 0, B->b[1], 0, c->m, c->n, B->b[2], 0, B->b[3], 0, 1e-5f, err);
    case OP_GELU: return pcv_backend_activation(be, B->b[0], 0, c->m * c->n, PCV_ACT_GELU, err);
    case OP_SOFTMAX: return pcv_backend_softmax(be, B->b[0], 0, c->m, c->n, NULL, 0, err);
    case OP_ADD: return pcv_backend_add(be, B->b[0], 0, B->b[1], 0, c->m * c->n, err);
    }
    return 0;
}

static int alloc_case(pcv_backend *be, const op_case *c, bufs *B, pcv_error *err)
{
    size_t sz[6] = {0};
    switch (c->kind) {
    case OP_GEMM:
        sz[0] = (size_t)(c->m * c->k), sz[1] = (size_t)(c->n * c->k), sz[2] = (size_t)(c->m * c->n);
        break;
    case OP_ATTN:
        sz[0] = (size_t)(c->nq * c->heads * c->dqk), sz[1] = (size_t)(c->nk * c->heads * c->dqk);
        sz[2] = (size_t)(c->nk * c->heads * c->dv), sz[3] = (size_t)(c->nq * c->heads * c->dv);
        sz[4] = (size_t)c->nk;
        break;
    case OP_LN:
        sz[0] = sz[1] = (size_t)(c->m * c->n), sz[2] = sz[3] = (size_t)c->n;
        break;
    default:
        sz[0] = sz[1] = (size_t)(c->m * c->n);
    }
    memset(B, 0, sizeof *B);
    for (int i = 0; i < 6; i++)
        if (sz[i] && !(B->b[i] = rand_buf(be, sz[i], err)))
            return err->code ? (int)err->code : PCV_ERR_OOM;
    if (c->kind == OP_ATTN) { /* key mask of the encoder's cross-attention: a short input, padded */
        float *ones = malloc(sz[4] * sizeof *ones);
        if (!ones)
            return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        for (size_t i = 0; i < sz[4]; i++)
            ones[i] = i < 100 ? 1.0f : 0.0f; /* the bench input: a short sentence padded */
        int rc = pcv_backend_upload(be, B->b[4], 0, ones, sz[4] * sizeof(float), err);
        free(ones);
        if (rc)
            return rc;
    }
    return 0;
}

static void free_case(pcv_backend *be, bufs *B)
{
    for (int i = 0; i < 6; i++)
        if (B->b[i])
            pcv_backend_release(be, B->b[i]);
}

/* best time of `repeat` synchronized runs after a warm-up; < 0 on error */
static double time_case(pcv_backend *be, const op_case *c, int repeat, pcv_error *err)
{
    bufs B;
    double best = -1;
    if (alloc_case(be, c, &B, err) == 0 && run_case(be, c, &B, err) == 0 && pcv_backend_synchronize(be, err) == 0) {
        best = 1e300;
        for (int r = 0; r < repeat; r++) {
            double t = pcv_now();
            if (run_case(be, c, &B, err) || pcv_backend_synchronize(be, err)) {
                best = -1;
                break;
            }
            t = pcv_now() - t;
            best = t < best ? t : best;
        }
    }
    free_case(be, &B);
    return best;
}

int cmd_bench_ops(int argc, char **argv)
{
    cli_parser p;
    const char *device = getenv("PERCEIVER_DEVICE"), *only = NULL;
    long repeat = 5, threads = 0;
    bool json = false, variants = false, no_cpu = false;
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
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand < argc)
        return cli_usage_error("bench-ops", "unexpected argument '%s'", argv[p.first_operand]);
    int nmatch = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        nmatch += case_matches(&cases[i], only);
    if (nmatch == 0)
        return cli_usage_error("bench-ops", "--only '%s' matches no operation (kinds: gemm, attention, layernorm, "
                               "gelu, softmax, add)", only);

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
    cli_info("bench-ops on %s", pcv_backend_device(dev));

    pcv_cl_switches sw0;
    bool is_cl = pcv_cl_get_switches(dev, &sw0);
    jw w;
    jw_init(&w, stdout, 2);
    if (json) {
        jw_object(&w);
        jw_key(&w, "device"), jw_str(&w, pcv_backend_device(dev));
        jw_key(&w, "reference"), jw_str(&w, cpu ? pcv_backend_device(cpu) : "");
        jw_key(&w, "repeat"), jw_int(&w, repeat);
        jw_key(&w, "ops");
        jw_array(&w);
    }
    if (!json) {
        printf("device    %s\n", pcv_backend_device(dev));
        if (cpu)
            printf("reference %s\n", pcv_backend_device(cpu));
        printf("shapes    full-size language model (seq 2048); best of %ld runs; GFLOP/s (GB/s for memory-bound ops)\n\n",
               repeat);
        printf("%-42s %-22s %9s %9s %9s %9s %7s\n", "operation", "shape", "dev ms", "dev rate", "cpu ms", "cpu rate",
               "dev/cpu");
    }
    int rc = EXIT_OK;
    double fwd_dev = 0, fwd_cpu = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const op_case *c = &cases[i];
        if (!case_matches(c, only))
            continue;
        char shape[64];
        if (c->kind == OP_GEMM)
            snprintf(shape, sizeof shape, "m%lld n%lld k%lld", (long long)c->m, (long long)c->n, (long long)c->k);
        else if (c->kind == OP_ATTN)
            snprintf(shape, sizeof shape, "h%lld %lldx%lld d%lld/%lld", (long long)c->heads, (long long)c->nq,
                     (long long)c->nk, (long long)c->dqk, (long long)c->dv);
        else
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)c->m, (long long)c->n);
        /* variants of the device run: [0] the automatic choice, then the alternatives */
        const char *vname[3] = {"auto", NULL, NULL};
        pcv_cl_switches vs[3] = {sw0, sw0, sw0};
        int nv = 1;
        if (variants && is_cl && c->kind == OP_GEMM) {
            vname[1] = "row-major", vname[2] = "swapped";
            vs[1].layout = 1, vs[2].layout = 2;
            nv = 3;
        } else if (variants && is_cl && c->kind == OP_ATTN) {
            vname[1] = "fused", vname[2] = "CLBlast GEMMs";
            vs[1].attention = 1, vs[2].attention = 2;
            nv = 3;
        }
        double tc = cpu ? time_case(cpu, c, (int)repeat, &err) : 0;
        if (cpu && tc < 0) {
            rc = cli_fail(&err);
            break;
        }
        for (int v = 0; v < nv; v++) {
            if (is_cl)
                pcv_cl_set_switches(dev, &vs[v]);
            double td = time_case(dev, c, (int)repeat, &err);
            if (td < 0) {
                rc = cli_fail(&err);
                break;
            }
            double work = c->kind == OP_GEMM || c->kind == OP_ATTN ? case_flops(c) : case_bytes(c);
            if (v == 0) {
                fwd_dev += td * c->count;
                fwd_cpu += tc * c->count;
            }
            char label[80];
            snprintf(label, sizeof label, "%s%s%s", v ? "  " : "", v ? vname[v] : c->name, "");
            if (json) {
                jw_object(&w);
                jw_key(&w, "op"), jw_str(&w, c->name);
                jw_key(&w, "variant"), jw_str(&w, vname[v]);
                jw_key(&w, "kind"), jw_str(&w, c->kind <= OP_ATTN ? "flops" : "bytes");
                jw_key(&w, "shape"), jw_str(&w, shape);
                jw_key(&w, "device_ms"), jw_double(&w, td * 1e3);
                jw_key(&w, "device_rate"), jw_double(&w, work / td / 1e9);
                jw_key(&w, "cpu_ms"), jw_double(&w, tc * 1e3);
                jw_key(&w, "cpu_rate"), jw_double(&w, tc > 0 ? work / tc / 1e9 : 0.0);
                jw_key(&w, "unit"), jw_str(&w, c->kind <= OP_ATTN ? "GFLOP/s" : "GB/s");
                jw_object_end(&w);
            } else {
                printf("%-42s %-22s %9.3f %9.1f", label, v ? "" : shape, td * 1e3, work / td / 1e9);
                if (cpu && v == 0)
                    printf(" %9.3f %9.1f %6.2fx", tc * 1e3, work / tc / 1e9, tc / td);
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
        } else if (!only) {
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
