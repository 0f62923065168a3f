/* One table of backend operation cases, run in two modes (ggml's test-backend-ops pattern):
 *  - test mode (tests/test_ops.c): every case on every backend against a float64 reference
 *    computed here, with guard regions of sentinel values after every output;
 *  - perf mode (perceiver-cl bench-ops): the same cases timed, with GFLOP/s or GB/s.
 * Cases are values: the table holds the fixed ones (edge shapes and the full-size models'
 * shapes), and callers can build more (random shapes) and run them the same way. */
#ifndef PCV_OPCASES_H
#define PCV_OPCASES_H

#include "backend/backend.h"

typedef enum pcv_op_kind {
    PCV_OP_GEMM,
    PCV_OP_LAYERNORM,
    PCV_OP_ACTIVATION,
    PCV_OP_BIAS_ADD,
    PCV_OP_ADD,
    PCV_OP_SOFTMAX,
    PCV_OP_GATHER,
    PCV_OP_REPEAT,
    PCV_OP_ATTENTION,
    PCV_OP_TRANSPOSE,
    PCV_OP_COPY2D,
    PCV_OP_IM2COL,
    PCV_OP_CHANNEL_AFFINE,
    PCV_OP_MAXPOOL,
    PCV_OP_COUNT
} pcv_op_kind;

/* Attention masks of a case. */
enum { PCV_MASK_NONE, PCV_MASK_RANDOM, PCV_MASK_PADDING, PCV_MASK_ROW0_ALL, PCV_MASK_LATE };

typedef struct pcv_op_case {
    pcv_op_kind op;
    const char *model; /* "lm", "image", "flow": a full-size model's shape (perf mode); NULL: test only */
    const char *label; /* what the model does with it, or NULL */
    int count;         /* applications per forward pass of that model */
    /* GEMM: C[batch](m x n) = 0.5 op(A)(m x k) op(B)(k x n) + beta C; row ops: rows m, cols n;
     * image ops: batch, C = m, H = n, W = k */
    int64_t batch, m, n, k;
    bool ta, tb;
    float beta;
    float offset;      /* layernorm: added to every input (stresses the variance) */
    pcv_activation act; /* activation */
    float xscale;       /* activation: inputs scaled by this (0: 1) to reach every region of a formula */
    bool masked;       /* softmax: additive mask */
    /* attention */
    int64_t heads, nq, nk, dqk, dv;
    pcv_attn_mode mode;
    int mask; /* PCV_MASK_* */
    int epi;  /* GEMM (batch 1, beta 0): its epilogue, PCV_EPI_* flags */
} pcv_op_case;

/* A GEMM's epilogue (pcv_gemm_args): + bias per column, then GELU, then + a residual matrix. */
enum { PCV_EPI_BIAS = 1, PCV_EPI_GELU = 2, PCV_EPI_RES = 4 };

/* The fixed cases; n receives the count. */
const pcv_op_case *pcv_op_cases(int *n);
const char *pcv_op_name(pcv_op_kind op); /* "gemm", "attention", ... */
/* "gemm NT m33 n65 k129 b2", "attention-haiku b2 h3 nq65 nk47 d8/5 masked", ... */
void pcv_op_describe(const pcv_op_case *c, char *buf, size_t cap);
/* Whether a filter (NULL = all) selects the case: a substring of its op name, description or label. */
bool pcv_op_matches(const pcv_op_case *c, const char *filter);
double pcv_op_flops(const pcv_op_case *c); /* 0 for memory-bound operations */
double pcv_op_bytes(const pcv_op_case *c); /* bytes read and written */

/* A case's inputs and output on one backend. */
typedef struct pcv_op_inst {
    const pcv_op_case *c;
    float *host[6];          /* the inputs (and the output's initial values) on the host */
    pcv_buffer *buf[6];
    int64_t len[6];          /* elements (without the guard region) */
    int out;                 /* which buffer holds the output */
    int32_t *ids;            /* gather: token ids */
} pcv_op_inst;

enum { PCV_OP_GUARD = 1024 }; /* sentinel floats after every buffer */

/* Random inputs (deterministic per seed) uploaded with guard regions. */
int pcv_op_setup(pcv_backend *be, const pcv_op_case *c, uint64_t seed, pcv_op_inst *in, pcv_error *err);
int pcv_op_run(pcv_backend *be, pcv_op_inst *in, pcv_error *err);
/* Uploads the inputs (and the output's initial values) again: operations that work in place
 * (activation, add, bias_add) change them on every run, so a check needs a reset before its run. */
int pcv_op_reset(pcv_backend *be, pcv_op_inst *in, pcv_error *err);
void pcv_op_free(pcv_backend *be, pcv_op_inst *in);

/* An operation's tolerance against the float64 reference, written down once here for every
 * user (tests/test_ops on every backend, `perceiver-cl tune` for every candidate it keeps):
 * nmse > 0 means the check is by NMSE alone (sum (got - want)^2 / sum want^2 <= nmse), else every
 * value must satisfy |got - want| <= atol + rtol |want| (atol = rtol = 0: exact). */
typedef struct pcv_op_tol {
    double atol, rtol, nmse;
} pcv_op_tol;
pcv_op_tol pcv_op_tolerance(const pcv_op_case *c);

/* The result of a check against the float64 reference. */
typedef struct pcv_op_result {
    int64_t n;         /* output values compared */
    double nmse;       /* sum (got - want)^2 / sum want^2 */
    double worst;      /* max |got - want| / (atol + rtol |want|) (0 when atol = rtol = 0) */
    int64_t bad;       /* values outside atol + rtol |want| (not counted when atol < 0) */
    int64_t nonfinite; /* NaN or infinite outputs */
    int64_t guard_bad; /* sentinels overwritten after the output */
} pcv_op_result;

/* Downloads the output, computes the float64 reference and compares with atol/rtol (atol < 0:
 * only the NMSE, for operations whose tolerance is an NMSE). */
int pcv_op_check(pcv_backend *be, pcv_op_inst *in, double atol, double rtol, pcv_op_result *r, pcv_error *err);
/* The same in two steps, for callers that check many runs of one case: the float64 reference
 * (malloc'd, len[out] values; NULL when out of memory) and a check against it. */
double *pcv_op_reference(const pcv_op_inst *in);
int pcv_op_check_against(pcv_backend *be, pcv_op_inst *in, const double *want, double atol, double rtol,
                         pcv_op_result *r, pcv_error *err);

#endif
