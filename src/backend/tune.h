/* The OpenCL self-tuner behind `perceiver-cl tune` (docs/opencl.md "Tuning").
 *
 * Workload: the operations of the full-size models' forward passes (the op-case table of
 * backend/opcases.h with a model name): GEMMs, attentions and the row operations (layernorm,
 * softmax, GELU, adds), with their rows cut to max_rows
 * (and keys to 4 x max_rows) so that one candidate takes a fraction of a second; each operation
 * is weighted by its count per forward pass and the cut, so the objective estimates the time of
 * those operations in one forward pass of each chosen model.
 *
 * Candidates are tuning strings (opencl.h profiles), the few valuable choices first: known
 * CLBlast Xgemm sets, the attention path (and the head size from which the CLBlast path is
 * taken), the indirect GEMM threshold, the GEMM layout, our kernels' style, vector width and
 * work-items per row (programs rebuilt), key splits; then random valid Xgemm sets and mutations
 * of the best one while the time budget lasts. Every candidate runs every
 * operation of the workload and each result is checked against the float64 reference with the
 * operation's tolerance (pcv_op_tolerance): a candidate with one wrong value is rejected, never
 * kept. The winner is re-timed beside the device's defaults in the same run. */
#ifndef PCV_TUNE_H
#define PCV_TUNE_H

#include "backend/backend.h"

typedef struct pcv_tune_options {
    const char *model; /* "lm", "image", "flow" or "all" (NULL: all) */
    double budget_s;   /* search time; <= 0: 120 s */
    int64_t max_rows;  /* rows of the workload's operations; <= 0: 1024 */
    int repeat;        /* timed runs per operation and candidate (the best counts); <= 0: 2 */
    uint64_t seed;     /* of the random candidates */
    /* progress lines ("candidate 7/...: ... 123.4 ms"), NULL: none */
    void (*progress)(void *user, const char *line);
    void *user;
    int test_wrong; /* test hook: the candidate of this number (1-based) gets its results changed
                       by 0.1 % before they are checked, so it must be rejected; 0: none */
} pcv_tune_options;

typedef struct pcv_tune_op {
    char label[96], model[8], shape[128];
    double weight;             /* runs per forward pass of the model (count x the cut) */
    double flops;              /* of one run at the cut shape (0: none counted) */
    double before_s, after_s;  /* best run, defaults vs the winner */
} pcv_tune_op;

enum { PCV_TUNE_OK, PCV_TUNE_SLOWER, PCV_TUNE_WRONG, PCV_TUNE_FAILED };

typedef struct pcv_tune_candidate {
    char tuning[512];
    int status;      /* PCV_TUNE_* (SLOWER: stopped once it could no longer win) */
    double total_s;  /* weighted workload time (OK only) */
    char why[256];   /* WRONG / FAILED: which operation and why */
} pcv_tune_candidate;

typedef struct pcv_tune_report {
    char best[512];            /* the winner's tuning string ("" = the defaults won) */
    double before_s, after_s;  /* weighted workload time, defaults vs winner, re-timed together */
    double seconds;            /* the whole run */
    int tried, wrong, failed, slower;
    pcv_tune_op *ops;
    int nops;
    pcv_tune_candidate *cands;
    int ncands;
} pcv_tune_report;

/* Tunes be's device (an OpenCL backend opened with the runtime tuning key profile=0, so that it
 * starts from the defaults); leaves the winner installed on the device. */
int pcv_tune_run(pcv_backend *be, const pcv_tune_options *opt, pcv_tune_report *rep, pcv_error *err);
void pcv_tune_report_free(pcv_tune_report *rep);

#endif
