/* Work spread over devices and MPI ranks, results in input order.
 *
 * A command (classify, fill, flow) cuts its input into jobs (a window of --batch images or
 * lines, a frame pair) and gives four callbacks: `next` reads the next job's input on the main
 * thread, `run` computes a job on one device's model (a worker thread per device) and writes
 * its result as bytes, `emit` prints or writes the bytes of each job in job order, and
 * `free_input` releases an input. The same bytes travel between MPI ranks, so a command is
 * written once for one device, several devices (--device 0,1 or all) and several ranks
 * (mpirun -n N): jobs are dealt out by index (job j on rank j mod N; inside a rank, to
 * whichever device is free), and rank 0 emits every job's result in job order. A job's result
 * does not depend on where it ran when the devices are of one kind: jobs are cut the same way
 * whatever the number of devices or ranks.
 */
#ifndef PCV_CLI_DISPATCH_H
#define PCV_CLI_DISPATCH_H

#include "perceiver/model.h"

#include <stdbool.h>
#include <stdio.h>

enum { CLI_MAX_DEVICES = 64 };

/* One model per device of a --device list. */
typedef struct cli_models {
    int n;
    pcv_model *m[CLI_MAX_DEVICES];
    char *device[CLI_MAX_DEVICES]; /* the device of each model, as pcv_model_device says */
} cli_models;

/* The devices of a --device value: a single device ("cpu", an index, part of a name), a list
 * ("0,1", "0,cpu"), "all" (every OpenCL device, the CPU path when there is none) or "auto" (the
 * default; under mpirun: OpenCL device (node-local rank mod count), else the CPU path). NULL is the
 * default device; "" is an error (as for a single device). */
int cli_device_list(const char *spec, char ***list, int *n, pcv_error *err);
void cli_device_list_free(char **list, int n);

/* Loads path once per device of opt->backend.device (a list as above), in order; a device
 * listed twice is an error. */
int cli_models_open(const char *path, const pcv_model_options *opt, cli_models *ms, pcv_error *err);
void cli_models_free(cli_models *ms);
/* "OpenCL device 0: ... and OpenCL device 1: ..." (for messages) */
const char *cli_models_describe(const cli_models *ms, char *buf, size_t cap);

typedef struct cli_work {
    void *ctx;
    /* Main thread: the input of job `job` (jobs are numbered from 0); 1 when a job was made, 0
     * at the end of the input, < 0 on a fatal error (err set). Called for every job on every
     * rank, in order (a rank drops the inputs of other ranks' jobs with free_input). */
    int (*next)(void *ctx, long job, void **input, pcv_error *err);
    /* A worker thread: computes one job on model m and writes its result to out. Problems of
     * single items belong in the result; a nonzero return (err set) stops the whole run. */
    int (*run)(void *ctx, pcv_model *m, void *input, FILE *out, pcv_error *err);
    void (*free_input)(void *ctx, void *input);
    /* Rank 0's main thread, in job order: the result of job `job`. Nonzero stops the run. */
    int (*emit)(void *ctx, long job, const char *data, size_t len, pcv_error *err);
    /* the input comes from standard input, which only rank 0 has: refused under mpirun */
    bool reads_stdin;
} cli_work;

/* Runs every job (see above). Returns 0, or the first fatal error (err names the job's device
 * or rank). */
int cli_dispatch(const cli_models *ms, const cli_work *w, pcv_error *err);
/* Whether a cli_dispatch ran to its end. Under mpirun, main ends every rank when a command
 * fails without that (a fatal error, or a failure before the work started: the other ranks
 * would wait for this one). */
bool cli_dispatch_completed(void);

/* Records in a job's result, for commands whose result is text: a tag byte, the length (8 bytes),
 * the bytes. Tags are the command's ('O' standard output, 'E' an error message, ...). */
void cli_rec_put(FILE *out, char tag, const void *p, size_t n);
/* The next record of data[0..len) (advanced past it); false at the end or on a malformed one. */
bool cli_rec_next(const char **data, size_t *len, char *tag, const char **p, size_t *n);
/* Prints the records of a text command's result: 'E' on standard error as an error message,
 * the others on standard output; counts the 'O' records in *good and the 'E' ones in *bad.
 * Nonzero (err set) when standard output cannot be written. */
int cli_rec_print(const char *data, size_t len, long *good, long *bad, pcv_error *err);

/* ---- MPI ------------------------------------------------------------------------------------ */

/* "Open MPI 4.1.4 (MPI 3.1): mpirun -n N shares classify, fill and flow", or "not built (...)" */
const char *cli_mpi_build(void);
/* Whether this process was started by mpirun/mpiexec with more than one rank (environment). */
bool cli_mpi_launched(void);
/* Initializes MPI when launched by mpirun (idempotent; main calls it for the sharded commands).
 * Fails when launched with several ranks by a build without MPI. */
int cli_mpi_init(int *argc, char ***argv, pcv_error *err);
int cli_mpi_rank(void);       /* 0 without MPI */
int cli_mpi_size(void);       /* 1 without MPI */
int cli_mpi_local_rank(void); /* rank among the ranks of this node */
void cli_mpi_finalize(void);
/* Ends every rank (a fatal error on one of them). */
void cli_mpi_abort(int code);

#endif
