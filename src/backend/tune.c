/* The OpenCL self-tuner (tune.h). */
#include "backend/tune.h"

#include "backend/opcases.h"
#include "backend/opencl.h"
#include "util/clock.h"
#include "util/error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CLBlast Xgemm parameter sets ------------------------------------------------------------
 * Order of the 16 values (the tuning key xgemm=): GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC
 * NWG SA SB STRM STRN VWM VWN. The constraints are those of CLBlast's Xgemm kernel (its tuner's):
 * the tile MWG x NWG is covered by MDIMC x NDIMC work-items with VWM/VWN vectors, the local
 * tiles are loaded by MDIMA / NDIMB shaped work-groups, KWG is unrolled by KWI. We keep GEMMK 0
 * (no 2D register tiling) and KREG 1. */
enum { GEMMK, KREG, KWG, KWI, MDIMA, MDIMC, MWG, NDIMB, NDIMC, NWG, SA, SB, STRM, STRN, VWM, VWN, NPARAM };

static const int choices_wg[] = {8, 16, 32, 64, 128};
static const int choices_kwg[] = {8, 16, 32, 64};
static const int choices_dim[] = {1, 2, 4, 8, 16, 32};
static const int choices_kwi[] = {1, 2, 4, 8};
static const int choices_vw[] = {1, 2, 4, 8, 16};
static const int choices_bit[] = {0, 1};

typedef struct pspace {
    const int *v;
    int n;
} pspace;
#define PS(a) {a, (int)(sizeof a / sizeof *a)}
static const pspace space[NPARAM] = {
    [GEMMK] = {NULL, 0},       [KREG] = {NULL, 0},        [KWG] = PS(choices_kwg),   [KWI] = PS(choices_kwi),
    [MDIMA] = PS(choices_dim), [MDIMC] = PS(choices_dim), [MWG] = PS(choices_wg),    [NDIMB] = PS(choices_dim),
    [NDIMC] = PS(choices_dim), [NWG] = PS(choices_wg),    [SA] = PS(choices_bit),    [SB] = PS(choices_bit),
    [STRM] = PS(choices_bit),  [STRN] = PS(choices_bit),  [VWM] = PS(choices_vw),    [VWN] = PS(choices_vw),
};


/* xorshift64* */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static bool random_set(int *p, const pcv_cl_device_info *info, uint64_t *seed)
{
    for (int attempt = 0; attempt < 20000; attempt++) {
        p[GEMMK] = 0, p[KREG] = 1;
        for (int i = KWG; i < NPARAM; i++)
            p[i] = space[i].v[rnd(seed) % (uint64_t)space[i].n];
        if (pcv_cl_xgemm_valid(p, info))
            return true;
    }
    return false;
}

/* one or two parameters of p moved to a neighbouring value, still valid */
static bool mutate(int *p, const pcv_cl_device_info *info, uint64_t *seed)
{
    int q[NPARAM];
    for (int attempt = 0; attempt < 2000; attempt++) {
        memcpy(q, p, sizeof q);
        int moves = 1 + (int)(rnd(seed) % 2);
        for (int m = 0; m < moves; m++) {
            int i = KWG + (int)(rnd(seed) % (NPARAM - KWG));
            int at = 0;
            while (at < space[i].n && space[i].v[at] != q[i])
                at++;
            int to = at + ((rnd(seed) & 1) ? 1 : -1);
            if (at == space[i].n) /* a value outside our lists (a seed's): any of the list */
                to = (int)(rnd(seed) % (uint64_t)space[i].n);
            if (to < 0 || to >= space[i].n)
                continue;
            q[i] = space[i].v[to];
        }
        if (memcmp(q, p, sizeof q) && pcv_cl_xgemm_valid(q, info)) {
            memcpy(p, q, sizeof q);
            return true;
        }
    }
    return false;
}

static void xgemm_string(const int *p, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "xgemm=");
    for (int i = 0; i < NPARAM && n < (int)cap; i++)
        n += snprintf(buf + n, cap - (size_t)n, "%s%d", i ? ":" : "", p[i]);
}

/* ---- the workload ------------------------------------------------------------------------------ */

typedef struct work {
    pcv_op_case c;    /* the cut case */
    pcv_op_inst in;
    double *want;     /* float64 reference */
    pcv_op_tol tol;
    bool ready;
} work;

typedef struct tuner {
    pcv_backend *be;
    const pcv_tune_options *o;
    pcv_tune_report *rep;
    work *w;
    int nw;
    double deadline;
    double best_total;   /* of the best OK candidate so far */
} tuner;

static void say(const tuner *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const tuner *t, const char *fmt, ...)
{
    if (!t->o->progress)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    t->o->progress(t->o->user, line);
}

static int build_workload(tuner *t, pcv_error *err)
{
    int ncases;
    const pcv_op_case *cases = pcv_op_cases(&ncases);
    const char *model = t->o->model && *t->o->model ? t->o->model : "all";
    int64_t rows = t->o->max_rows > 0 ? t->o->max_rows : 1024;
    t->w = calloc((size_t)ncases, sizeof *t->w);
    t->rep->ops = calloc((size_t)ncases, sizeof *t->rep->ops);
    if (!t->w || !t->rep->ops)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    for (int i = 0; i < ncases; i++) {
        const pcv_op_case *c = &cases[i];
        bool tunable = c->op == PCV_OP_GEMM || c->op == PCV_OP_ATTENTION || c->op == PCV_OP_LAYERNORM ||
                       c->op == PCV_OP_SOFTMAX || c->op == PCV_OP_ACTIVATION || c->op == PCV_OP_ADD ||
                       c->op == PCV_OP_BIAS_ADD;
        if (!c->model || c->count <= 0 || !tunable || (strcmp(model, "all") && strcmp(model, c->model)))
            continue;
        work *w = &t->w[t->nw];
        pcv_tune_op *op = &t->rep->ops[t->nw];
        w->c = *c;
        double cut = 1;
        if (c->op != PCV_OP_ATTENTION && c->m > rows) { /* GEMM and row operations: rows m */
            cut = (double)c->m / (double)rows;
            w->c.m = rows;
        } else if (c->op == PCV_OP_ATTENTION) {
            int64_t nq = c->nq > rows ? rows : c->nq, nk = c->nk > 4 * rows ? 4 * rows : c->nk;
            cut = (double)c->nq * (double)c->nk / ((double)nq * (double)nk);
            w->c.nq = nq, w->c.nk = nk;
        }
        w->tol = pcv_op_tolerance(&w->c);
        snprintf(op->label, sizeof op->label, "%s", c->label ? c->label : pcv_op_name(c->op));
        snprintf(op->model, sizeof op->model, "%s", c->model);
        pcv_op_describe(&w->c, op->shape, sizeof op->shape);
        op->weight = c->count * cut;
        op->flops = pcv_op_flops(&w->c);
        t->nw++;
    }
    t->rep->nops = t->nw;
    if (!t->nw)
        return pcv_set_error(err, PCV_ERR_INPUT, "tune: model '%s' has no operations to tune (lm, image, flow or all)",
                             model);
    for (int i = 0; i < t->nw; i++) {
        work *w = &t->w[i];
        if (pcv_op_setup(t->be, &w->c, 1000 + (uint64_t)i, &w->in, err))
            return -1;
        w->ready = true;
        w->in.c = &w->c;
    }
    /* the float64 references (host only, independent: on every core) */
    say(t, "computing the float64 references of %d operations", t->nw);
    int missing = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : missing)
    for (int i = 0; i < t->nw; i++)
        missing += !(t->w[i].want = pcv_op_reference(&t->w[i].in));
    if (missing)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory (the float64 references)");
    return 0;
}

/* Changes the output of a work item by 0.1 % (the test hook test_wrong): C = 1.001 C. */
static int perturb(tuner *t, work *w, pcv_error *err)
{
    int64_t n = w->in.len[w->in.out];
    pcv_buffer *c = w->in.buf[w->in.out];
    pcv_gemm_args g = {.m = 1, .n = n, .k = 0, .batch = 1, .alpha = 1, .beta = 1.001f, .a = c, .lda = 0,
                       .b = c, .ldb = n, .c = c, .ldc = n, .stride_c = n};
    return pcv_backend_gemm(t->be, &g, err);
}

/* Runs the workload under the tuning now installed: each operation once and checked, then
 * timed. times[i] receives each operation's best time (NULL: not kept). Returns the candidate's
 * status; *total the weighted time. Stops early (SLOWER) once the total passes limit. */
static int run_workload(tuner *t, double limit, double *times, double *total, char *why, size_t whycap,
                        bool perturbed)
{
    int repeat = t->o->repeat > 0 ? t->o->repeat : 2;
    pcv_error err = {0};
    *total = 0;
    for (int i = 0; i < t->nw; i++) {
        work *w = &t->w[i];
        const pcv_tune_op *op = &t->rep->ops[i];
        if (pcv_op_reset(t->be, &w->in, &err) || pcv_op_run(t->be, &w->in, &err) ||
            pcv_backend_synchronize(t->be, &err) ||
            (perturbed && (perturb(t, w, &err) || pcv_backend_synchronize(t->be, &err)))) {
            snprintf(why, whycap, "%s: %s", op->shape, err.msg);
            return PCV_TUNE_FAILED;
        }
        pcv_op_result r;
        bool by_nmse = w->tol.nmse > 0;
        if (pcv_op_check_against(t->be, &w->in, w->want, by_nmse ? -1 : w->tol.atol, w->tol.rtol, &r, &err)) {
            snprintf(why, whycap, "%s: %s", op->shape, err.msg);
            return PCV_TUNE_FAILED;
        }
        if (r.nonfinite || r.guard_bad || (by_nmse ? !(r.nmse <= w->tol.nmse) : r.bad > 0)) {
            if (by_nmse || r.nonfinite || r.guard_bad)
                snprintf(why, whycap, "%s: NMSE %.3g against float64 (tolerance %.3g), %lld values not finite, %lld "
                         "written out of bounds", op->shape, r.nmse, w->tol.nmse, (long long)r.nonfinite,
                         (long long)r.guard_bad);
            else
                snprintf(why, whycap, "%s: %lld of %lld values outside atol %.3g + rtol %.3g of float64 (worst %.3g x)",
                         op->shape, (long long)r.bad, (long long)r.n, w->tol.atol, w->tol.rtol, r.worst);
            return PCV_TUNE_WRONG;
        }
        double best = INFINITY;
        for (int k = 0; k < repeat; k++) {
            double t0 = pcv_now();
            if (pcv_op_run(t->be, &w->in, &err) || pcv_backend_synchronize(t->be, &err)) {
                snprintf(why, whycap, "%s: %s", op->shape, err.msg);
                return PCV_TUNE_FAILED;
            }
            double dt = pcv_now() - t0;
            best = dt < best ? dt : best;
        }
        if (times)
            times[i] = best;
        *total += best * op->weight;
        if (*total > limit) {
            snprintf(why, whycap, "passed %.1f ms at %s", limit * 1e3, op->shape);
            return PCV_TUNE_SLOWER;
        }
    }
    return PCV_TUNE_OK;
}

static pcv_tune_candidate *add_candidate(tuner *t, const char *tuning)
{
    pcv_tune_report *r = t->rep;
    for (int i = 0; i < r->ncands; i++)
        if (!strcmp(r->cands[i].tuning, tuning))
            return NULL; /* already measured */
    pcv_tune_candidate *c = realloc(r->cands, (size_t)(r->ncands + 1) * sizeof *c);
    if (!c)
        return NULL;
    r->cands = c;
    c = &r->cands[r->ncands++];
    memset(c, 0, sizeof *c);
    snprintf(c->tuning, sizeof c->tuning, "%s", tuning);
    return c;
}

/* Measures one candidate; true when it is the new best. A candidate's failure is recorded, never
 * fatal (the device's defaults are put back); a device that cannot take the defaults back is. */
static bool try_candidate(tuner *t, const char *tuning, bool *fatal, pcv_error *err)
{
    pcv_tune_candidate *c = add_candidate(t, tuning);
    if (!c)
        return false;
    t->rep->tried++; /* this candidate's number */
    int idx = (int)(c - t->rep->cands);
    pcv_error e = {0};
    double limit = isfinite(t->best_total) ? 1.5 * t->best_total : INFINITY;
    if (pcv_cl_retune(t->be, tuning, &e)) {
        c->status = PCV_TUNE_FAILED;
        snprintf(c->why, sizeof c->why, "%s", e.msg);
    } else {
        c->status = run_workload(t, limit, NULL, &c->total_s, c->why, sizeof c->why, t->rep->tried == t->o->test_wrong);
    }
    c = &t->rep->cands[idx];
    bool better = c->status == PCV_TUNE_OK && c->total_s < t->best_total;
    t->rep->wrong += c->status == PCV_TUNE_WRONG;
    t->rep->failed += c->status == PCV_TUNE_FAILED;
    t->rep->slower += c->status == PCV_TUNE_SLOWER;
    static const char *const names[] = {"ok", "slower", "WRONG", "failed"};
    if (c->status == PCV_TUNE_OK)
        say(t, "candidate %d: %s: %.1f ms%s", t->rep->tried, tuning[0] ? tuning : "(defaults)", c->total_s * 1e3,
            better ? " (best so far)" : "");
    else
        say(t, "candidate %d: %s: %s (%s)", t->rep->tried, tuning[0] ? tuning : "(defaults)", names[c->status], c->why);
    if (better) {
        t->best_total = c->total_s;
        snprintf(t->rep->best, sizeof t->rep->best, "%s", tuning);
    }
    if (c->status == PCV_TUNE_FAILED && pcv_cl_retune(t->be, "", err))
        *fatal = true;
    return better;
}

static bool time_left(const tuner *t) { return pcv_now() < t->deadline; }

/* "base" with key=value added (or replaced) */
static void with_key(const char *base, const char *kv, char *out, size_t cap)
{
    size_t kl = strcspn(kv, "=");
    char tmp[512];
    int n = 0;
    tmp[0] = '\0';
    for (const char *p = base; *p;) {
        size_t len = strcspn(p, ",");
        if (!(len > kl && !strncmp(p, kv, kl) && p[kl] == '='))
            n += snprintf(tmp + n, sizeof tmp - (size_t)n, "%s%.*s", n ? "," : "", (int)len, p);
        p += len + (p[len] == ',');
    }
    snprintf(out, cap, "%s%s%s", tmp, n ? "," : "", kv);
}

/* base with each key=value of set ("k1=v1,k2=v2") set in turn */
static void with_keys(const char *base, const char *set, char *out, size_t cap)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", base);
    snprintf(out, cap, "%s", base);
    while (*set) {
        size_t len = strcspn(set, ",");
        char one[64];
        snprintf(one, sizeof one, "%.*s", (int)len, set);
        with_key(tmp, one, out, cap);
        snprintf(tmp, sizeof tmp, "%s", out);
        set += len + (set[len] == ',');
    }
}

/* whether a tuning string holds exactly key=value */
static bool has_setting(const char *tuning, const char *kv)
{
    size_t n = strlen(kv);
    for (const char *p = tuning; (p = strstr(p, kv)); p++)
        if ((p == tuning || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

/* whether a tuning string's GEMMs are our own kernels */
static bool uses_own(const char *tuning, bool own_default)
{
    if (has_setting(tuning, "gemm=own"))
        return true;
    return own_default && !has_setting(tuning, "gemm=clblast");
}

int pcv_tune_run(pcv_backend *be, const pcv_tune_options *o, pcv_tune_report *rep, pcv_error *err)
{
    memset(rep, 0, sizeof *rep);
    pcv_cl_device_info info;
    if (!pcv_cl_backend_info(be, &info))
        return pcv_set_error(err, PCV_ERR_INPUT, "tune: %s is not an OpenCL device (the CPU path needs no tuning)",
                             pcv_backend_device(be));
    double t0 = pcv_now();
    tuner t = {.be = be, .o = o, .rep = rep, .best_total = INFINITY};
    int rc = build_workload(&t, err);
    bool fatal = false;
    double budget = o->budget_s > 0 ? o->budget_s : 120;
    t.deadline = pcv_now() + budget;
    uint64_t seed = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
    if (!rc) {
        /* the defaults first: the baseline every candidate must beat */
        try_candidate(&t, "", &fatal, err);
        if (!rep->ncands)
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        else if (rep->cands[0].status != PCV_TUNE_OK) {
            rc = pcv_set_error(err, PCV_ERR_DEVICE, "tune: OpenCL device %d '%s' fails the workload with its defaults: %s",
                               info.index, info.name, rep->cands[0].why);
        }
    }
    if (!rc) {
        /* The order: the choices that are few and worth most first (a short budget still makes
         * them), the open-ended Xgemm search last. Known parameter sets: CLBlast's own database,
         * the PoCL set and its float8 variant, two GPU-shaped sets. */
        bool own_default = pcv_cl_own_gemm_default(&info);
        /* the GEMM: our own kernels where CLBlast is the default, CLBlast (the sets below) where
         * ours are */
        if (!own_default && time_left(&t))
            try_candidate(&t, "gemm=own", &fatal, err);
        static const char *const seeds[] = {
            "gemm=clblast,clblast=0,minind=0",
            "gemm=clblast,xgemm=0:1:64:4:1:1:32:1:1:8:0:0:0:0:16:1,minind=1",
            "gemm=clblast,xgemm=0:1:32:2:1:1:32:1:1:16:0:0:0:0:8:2,minind=1",
            "gemm=clblast,xgemm=0:1:32:2:16:16:64:16:16:64:1:1:0:0:2:2,minind=1",
            "gemm=clblast,xgemm=0:1:16:2:8:8:32:8:8:32:1:1:0:0:4:4,minind=1",
        };
        for (size_t i = 0; i < sizeof seeds / sizeof *seeds && !fatal && time_left(&t); i++) {
            int p[NPARAM];
            if (pcv_cl_xgemm_parse(seeds[i], p) && !pcv_cl_xgemm_valid(p, &info))
                continue;
            try_candidate(&t, seeds[i], &fatal, err);
        }
        /* the attention path (the key splits come later) */
        static const char *const attn[] = {"attention=fused",   "attention=gemm",    "attn_gemm_d=64",
                                           "attn_gemm_d=128",   "attn_gemm_d=256"};
        for (size_t i = 0; i < sizeof attn / sizeof *attn && !fatal && time_left(&t); i++) {
            char cand[512], tmp[512];
            /* attn_gemm_d chooses per head size on the automatic path */
            with_key(rep->best, strncmp(attn[i], "attn_gemm_d", 11) ? "attn_gemm_d=0" : "attention=auto", tmp,
                     sizeof tmp);
            with_key(tmp, attn[i], cand, sizeof cand);
            try_candidate(&t, cand, &fatal, err);
        }
        /* our GEMM's tile: the other vector width (AVX2's 8 or AVX-512's 16 floats) and fewer
         * or more rows */
        static const char *const tiles[] = {"gemm_vw=8,gemm_mr=6", "gemm_vw=16,gemm_mr=12", "gemm_mr=4",
                                            "gemm_mr=8"};
        for (size_t i = 0; i < sizeof tiles / sizeof *tiles && !fatal && time_left(&t) && uses_own(rep->best, own_default);
             i++) {
            char cand[512];
            with_keys(rep->best, tiles[i], cand, sizeof cand);
            try_candidate(&t, cand, &fatal, err);
        }
        /* the indirect threshold and the layout with the best parameters (CLBlast's) */
        static const char *const extras[] = {"minind=0", "layout=row", "layout=swap"};
        for (size_t i = 0; i < 3 && !fatal && time_left(&t) && !uses_own(rep->best, own_default); i++) {
            char cand[512];
            with_key(rep->best, extras[i], cand, sizeof cand);
            try_candidate(&t, cand, &fatal, err);
        }
        /* our kernels' configuration: style (one work-item per row with wide vectors, or a
         * work-group per row), vector width, work-items per row (programs are rebuilt) */
        static const char *const kern[] = {"as=cpu,vw=16", "as=cpu,vw=8", "as=gpu,vw=4,row_ls=64",
                                           "as=gpu,vw=4,row_ls=16", "as=gpu,vw=4,row_ls=256", "as=gpu,vw=8,row_ls=64"};
        for (size_t i = 0; i < sizeof kern / sizeof *kern && !fatal && time_left(&t); i++) {
            char cand[512];
            with_keys(rep->best, kern[i], cand, sizeof cand);
            try_candidate(&t, cand, &fatal, err);
        }
        if (!strstr(rep->best, "attention=gemm")) {
            static const char *const splits[] = {"splits=1", "splits=2", "splits=4", "splits=8", "splits=16"};
            for (size_t i = 0; i < 5 && !fatal && time_left(&t); i++) {
                char cand[512];
                with_key(rep->best, splits[i], cand, sizeof cand);
                try_candidate(&t, cand, &fatal, err);
            }
        }
        /* then random Xgemm sets and mutations of the best (with the best's other keys), while
         * the budget lasts, unless our own GEMM won (CLBlast's parameters then change nothing) */
        for (int i = 0; !fatal && time_left(&t) && !uses_own(rep->best, own_default); i++) {
            int p[NPARAM];
            bool ok = (i % 3 != 2 && pcv_cl_xgemm_parse(rep->best, p)) ? mutate(p, &info, &seed) : random_set(p, &info, &seed);
            if (!ok)
                break;
            char x[256], tmp[512], cand[512];
            xgemm_string(p, x, sizeof x);
            with_key(rep->best, x, tmp, sizeof tmp);
            with_key(tmp, "minind=1", cand, sizeof cand);
            try_candidate(&t, cand, &fatal, err);
        }
        if (fatal)
            rc = -1;
    }
    if (!rc) {
        /* the defaults and the winner again, alternating (defaults, winner, defaults, ...: three
         * runs each) so that a change in the machine's load meets both; each operation's best */
        double *times = malloc((size_t)(2 * t.nw) * sizeof *times), *round = malloc((size_t)t.nw * sizeof *round);
        char why[256];
        const char *which[2] = {"", rep->best};
        if (!times || !round)
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        for (int i = 0; times && i < 2 * t.nw; i++)
            times[i] = INFINITY;
        int rounds = rep->best[0] ? 6 : 1; /* the defaults won: nothing to compare */
        for (int k = 0; k < rounds && !rc; k++) {
            int side = k & 1;
            say(&t, "timing %s again (%d of 3)", side ? "the winner" : "the defaults", k / 2 + 1);
            if ((rc = pcv_cl_retune(be, which[side], err)))
                break;
            double total;
            int st = run_workload(&t, INFINITY, round, &total, why, sizeof why, false);
            if (st != PCV_TUNE_OK)
                rc = pcv_set_error(err, PCV_ERR_DEVICE, "tune: the %s failed when run again: %s",
                                   side ? "winner" : "defaults", why);
            for (int i = 0; !rc && i < t.nw; i++)
                times[side * t.nw + i] = round[i] < times[side * t.nw + i] ? round[i] : times[side * t.nw + i];
        }
        if (!rc) {
            rep->before_s = rep->after_s = 0;
            for (int i = 0; i < t.nw; i++) {
                rep->ops[i].before_s = times[i], rep->ops[i].after_s = times[t.nw + i];
                rep->before_s += times[i] * rep->ops[i].weight;
                rep->after_s += times[t.nw + i] * rep->ops[i].weight;
            }
            /* a winner that is not faster when re-timed is noise: keep the defaults */
            if (rep->after_s >= rep->before_s) {
                rep->best[0] = '\0';
                rep->after_s = rep->before_s;
                for (int i = 0; i < t.nw; i++)
                    rep->ops[i].after_s = rep->ops[i].before_s;
                rc = pcv_cl_retune(be, "", err);
            }
        }
        free(round);
        free(times);
    }
    for (int i = 0; i < t.nw; i++) {
        if (t.w[i].ready)
            pcv_op_free(be, &t.w[i].in);
        free(t.w[i].want);
    }
    free(t.w);
    rep->seconds = pcv_now() - t0;
    return rc;
}

void pcv_tune_report_free(pcv_tune_report *rep)
{
    free(rep->ops);
    free(rep->cands);
    memset(rep, 0, sizeof *rep);
}
