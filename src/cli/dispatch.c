/* cli_dispatch and the device lists (dispatch.h): worker threads, one per device, and MPI. */
#include "cli/dispatch.h"
#include "cli/cli.h"

#include "backend/opencl.h"
#include "util/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef PCV_HAVE_MPI
#include <mpi.h>
#endif

/* ---- MPI ------------------------------------------------------------------------------------ */

static int g_rank = 0, g_size = 1, g_local = 0;
static bool g_mpi_on = false, g_completed = false;

bool cli_dispatch_completed(void) { return g_completed; }

static int env_int(const char *const *names, int def)
{
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v)
            return atoi(v);
    }
    return def;
}

const char *cli_mpi_build(void)
{
#ifdef PCV_HAVE_MPI
#define PCV_STR2(x) #x
#define PCV_STR(x) PCV_STR2(x)
#ifdef OMPI_MAJOR_VERSION
    return "Open MPI " PCV_STR(OMPI_MAJOR_VERSION) "." PCV_STR(OMPI_MINOR_VERSION) "." PCV_STR(OMPI_RELEASE_VERSION)
           " (MPI " PCV_STR(MPI_VERSION) "." PCV_STR(MPI_SUBVERSION) "): mpirun -n N shares classify, fill and flow";
#else
    return "MPI " PCV_STR(MPI_VERSION) "." PCV_STR(MPI_SUBVERSION) ": mpirun -n N shares classify, fill and flow";
#endif
#else
    return "not built (install libopenmpi-dev and configure with -DPCV_MPI=ON for mpirun)";
#endif
}

bool cli_mpi_launched(void)
{
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", NULL};
    return env_int(sizes, 1) > 1;
}

int cli_mpi_init(int *argc, char ***argv, pcv_error *err)
{
    if (g_mpi_on || !cli_mpi_launched())
        return 0;
#ifdef PCV_HAVE_MPI
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return pcv_set_error(err, PCV_ERR_DEVICE, "MPI_Init_thread failed");
    g_mpi_on = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &g_local);
        MPI_Comm_free(&node);
    }
    if (g_rank > 0)
        cli_quiet = true; /* rank 0 speaks for the run; errors are still printed by every rank */
    return 0;
#else
    (void)argc, (void)argv;
    return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                         "started by mpirun with several ranks, but this perceiver-cl was built without MPI: every "
                         "rank would do all of the work (install libopenmpi-dev and rebuild, or run one process)");
#endif
}

int cli_mpi_rank(void) { return g_rank; }
int cli_mpi_size(void) { return g_size; }
int cli_mpi_local_rank(void) { return g_local; }

void cli_mpi_finalize(void)
{
#ifdef PCV_HAVE_MPI
    if (g_mpi_on) {
        MPI_Finalize();
        g_mpi_on = false;
    }
#endif
}

void cli_mpi_abort(int code)
{
#ifdef PCV_HAVE_MPI
    if (g_mpi_on && g_size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
#endif
    (void)code;
}

/* ---- device lists ---------------------------------------------------------------------------- */

static int push_spec(char ***list, int *n, const char *s, size_t len, pcv_error *err)
{
    if (*n == CLI_MAX_DEVICES)
        return pcv_set_error(err, PCV_ERR_INPUT, "--device: more than %d devices", CLI_MAX_DEVICES);
    char **nl = realloc(*list, (size_t)(*n + 1) * sizeof *nl);
    if (!nl || !((*list = nl)[*n] = strndup(s, len)))
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    (*n)++;
    return 0;
}

static int opencl_count(void)
{
    pcv_error e = {0};
    pcv_cl_device_info *devs = NULL;
    int n = pcv_cl_list_devices(&devs, &e);
    free(devs);
    return n > 0 ? n : 0;
}

int cli_device_list(const char *spec, char ***list, int *n, pcv_error *err)
{
    *list = NULL;
    *n = 0;
    char num[16];
    if (spec && !*spec) /* --device '' (an empty $PERCEIVER_DEVICE is NULL here: unset) */
        return pcv_set_error(err, PCV_ERR_INPUT, "empty device name: give 'cpu', an OpenCL device index or part of a "
                             "device name (see 'perceiver-cl devices')");
    if (!spec || !strcmp(spec, "auto")) {
        const char *def = getenv("PERCEIVER_DEVICE");
        if (g_size > 1 || (spec && !strcmp(spec, "auto") && !(def && *def && strcmp(def, "auto")))) {
            /* under mpirun: the node-local rank's OpenCL device, else the CPU path */
            int count = opencl_count();
            if (count == 0)
                return push_spec(list, n, "cpu", 3, err);
            snprintf(num, sizeof num, "%d", g_local % count);
            return push_spec(list, n, num, strlen(num), err);
        }
        if (def && *def && strcmp(def, "auto"))
            return cli_device_list(def, list, n, err);
        return push_spec(list, n, "cpu", 3, err);
    }
    if (!strcmp(spec, "all")) {
        int count = opencl_count();
        if (count == 0)
            return push_spec(list, n, "cpu", 3, err);
        for (int i = 0; i < count; i++) {
            snprintf(num, sizeof num, "%d", i);
            int rc = push_spec(list, n, num, strlen(num), err);
            if (rc)
                return rc;
        }
        return 0;
    }
    /* a list: comma-separated parts, none empty; otherwise one device (a name may hold commas) */
    bool list_ok = strchr(spec, ',') != NULL;
    for (const char *p = spec; list_ok && *p;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || (p[len] == ',' && p[len + 1] == '\0'))
            list_ok = false;
        p += len + (p[len] == ',');
    }
    if (!list_ok)
        return push_spec(list, n, spec, strlen(spec), err);
    for (const char *p = spec; *p;) {
        size_t len = strcspn(p, ",");
        if (len == 3 && !strncmp(p, "all", 3))
            return pcv_set_error(err, PCV_ERR_INPUT, "--device '%s': 'all' cannot be part of a list", spec);
        int rc = push_spec(list, n, p, len, err);
        if (rc)
            return rc;
        p += len + (p[len] == ',');
    }
    return 0;
}

void cli_device_list_free(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

int cli_models_open(const char *path, const pcv_model_options *opt, cli_models *ms, pcv_error *err)
{
    memset(ms, 0, sizeof *ms);
    char **list = NULL;
    int n = 0;
    int rc = cli_device_list(opt->backend.device, &list, &n, err);
    for (int i = 0; !rc && i < n; i++) {
        pcv_model_options o = *opt;
        o.backend.device = list[i];
        if ((rc = pcv_model_load(path, &o, &ms->m[i], err)))
            break;
        ms->n = i + 1;
        if (!(ms->device[i] = strdup(pcv_model_device(ms->m[i])))) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
            break;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(ms->device[j], ms->device[i])) {
                rc = pcv_set_error(err, PCV_ERR_INPUT, "--device: '%s' and '%s' are the same device (%s); list each "
                                   "device once", list[j], list[i], ms->device[i]);
                break;
            }
    }
    cli_device_list_free(list, n);
    if (rc)
        cli_models_free(ms);
    return rc;
}

void cli_models_free(cli_models *ms)
{
    for (int i = 0; i < ms->n; i++) {
        pcv_model_free(ms->m[i]);
        free(ms->device[i]);
    }
    memset(ms, 0, sizeof *ms);
}

const char *cli_models_describe(const cli_models *ms, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < ms->n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i == 0 ? "" : i == ms->n - 1 ? " and " : ", ",
                                ms->device[i]);
    return buf;
}

/* ---- records ---------------------------------------------------------------------------------- */

void cli_rec_put(FILE *out, char tag, const void *p, size_t n)
{
    uint64_t len = n;
    fputc(tag, out);
    fwrite(&len, sizeof len, 1, out);
    if (n)
        fwrite(p, 1, n, out);
}

bool cli_rec_next(const char **data, size_t *len, char *tag, const char **p, size_t *n)
{
    uint64_t l;
    if (*len < 1 + sizeof l)
        return false;
    memcpy(&l, *data + 1, sizeof l);
    if (l > *len - 1 - sizeof l)
        return false;
    *tag = (*data)[0];
    *p = *data + 1 + sizeof l;
    *n = (size_t)l;
    *data += 1 + sizeof l + l;
    *len -= 1 + sizeof l + l;
    return true;
}

int cli_rec_print(const char *data, size_t len, long *good, long *bad, pcv_error *err)
{
    char tag;
    const char *p;
    size_t n;
    cli_progress_clear();
    while (cli_rec_next(&data, &len, &tag, &p, &n)) {
        if (tag == 'E') {
            fprintf(stderr, "perceiver-cl: error: %.*s\n", (int)n, p);
            ++*bad;
        } else {
            fwrite(p, 1, n, stdout);
            *good += tag == 'O';
        }
    }
    if (fflush(stdout) != 0)
        return pcv_set_error(err, PCV_ERR_IO, "standard output: %s", strerror(errno));
    return 0;
}

/* ---- the dispatcher --------------------------------------------------------------------------- */

enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

typedef struct job {
    long index;
    bool local;   /* computed here (else: another rank's, received by rank 0) */
    void *input;
    char *out;    /* the result's bytes */
    size_t len;
    int state, rc;
    pcv_error err;
    struct job *next;
} job;

typedef struct pool {
    const cli_work *w;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done, cv_room;
    job *head, *tail; /* in-flight jobs, in order */
    int local_inflight, limit;
    bool stop, eof;
    int read_rc; /* a fatal error of the reader (read_err) */
    pcv_error read_err;
} pool;

typedef struct worker {
    pool *p;
    pcv_model *m;
    const char *device;
    bool silent; /* no library progress from this thread (several devices at once) */
    pthread_t thread;
} worker;

static void *worker_main(void *arg)
{
    worker *wk = arg;
    pool *p = wk->p;
    cli_progress_thread_silent(wk->silent);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        job *j = NULL;
        while (!p->stop) {
            for (j = p->head; j && !(j->local && j->state == JOB_QUEUED); j = j->next)
                ;
            if (j)
                break;
            pthread_cond_wait(&p->cv_work, &p->mu);
        }
        if (p->stop)
            break;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&p->mu);

        char *buf = NULL;
        size_t len = 0;
        pcv_error err = {0};
        int rc;
        FILE *f = open_memstream(&buf, &len);
        if (!f) {
            rc = pcv_set_error(&err, PCV_ERR_OOM, "out of memory for a job's result");
        } else {
            rc = p->w->run(p->w->ctx, wk->m, j->input, f, &err);
            if (fclose(f) != 0 && !rc)
                rc = pcv_set_error(&err, PCV_ERR_OOM, "out of memory for a job's result");
        }
        if (rc && !strstr(err.msg, wk->device)) { /* name the device */
            char msg[sizeof err.msg];
            snprintf(msg, sizeof msg, "%s", err.msg);
            snprintf(err.msg, sizeof err.msg, "%s (on %s)", msg, wk->device);
        }

        pthread_mutex_lock(&p->mu);
        j->out = buf, j->len = len, j->rc = rc, j->err = err;
        j->state = JOB_DONE;
        pthread_cond_broadcast(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void job_free(const cli_work *w, job *j)
{
    if (j->input)
        w->free_input(w->ctx, j->input);
    free(j->out);
    free(j);
}

#ifdef PCV_HAVE_MPI
enum { TAG_RESULT = 7 };
/* A result between ranks: an int status, the error message when nonzero, then the bytes. */
typedef struct pending_send {
    MPI_Request req;
    char *buf;
    struct pending_send *next;
} pending_send;

static int send_result(job *j, pending_send **pending, pcv_error *err)
{
    size_t hdr = sizeof(int) + (j->rc ? sizeof j->err.msg : 0);
    if (j->len > (size_t)0x7fffffff - hdr)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "job %ld: a result of %zu bytes is too large for one MPI message",
                             j->index, j->len);
    pending_send *ps = malloc(sizeof *ps);
    char *buf = malloc(hdr + j->len);
    if (!ps || !buf) {
        free(ps);
        free(buf);
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    memcpy(buf, &j->rc, sizeof(int));
    if (j->rc)
        memcpy(buf + sizeof(int), j->err.msg, sizeof j->err.msg);
    if (j->len)
        memcpy(buf + hdr, j->out, j->len);
    ps->buf = buf;
    ps->next = *pending;
    *pending = ps;
    MPI_Isend(buf, (int)(hdr + j->len), MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD, &ps->req);
    /* release the sends that completed */
    for (pending_send **pp = &ps->next; *pp;) {
        int done = 0;
        MPI_Test(&(*pp)->req, &done, MPI_STATUS_IGNORE);
        if (done) {
            pending_send *d = *pp;
            *pp = d->next;
            free(d->buf);
            free(d);
        } else {
            pp = &(*pp)->next;
        }
    }
    return 0;
}

static void sends_finish(pending_send *ps)
{
    while (ps) {
        pending_send *n = ps->next;
        MPI_Wait(&ps->req, MPI_STATUS_IGNORE);
        free(ps->buf);
        free(ps);
        ps = n;
    }
}

static int recv_result(job *j, pcv_error *err)
{
    int src = (int)(j->index % g_size), count = 0;
    MPI_Status st;
    MPI_Probe(src, TAG_RESULT, MPI_COMM_WORLD, &st);
    MPI_Get_count(&st, MPI_BYTE, &count);
    char *buf = malloc(count > 0 ? (size_t)count : 1);
    if (!buf)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory receiving job %ld from rank %d", j->index, src);
    MPI_Recv(buf, count, MPI_BYTE, src, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    memcpy(&j->rc, buf, sizeof(int));
    size_t hdr = sizeof(int) + (j->rc ? sizeof j->err.msg : 0);
    if (j->rc) {
        memcpy(j->err.msg, buf + sizeof(int), sizeof j->err.msg);
        j->err.msg[sizeof j->err.msg - 1] = '\0';
        j->err.code = j->rc;
        char msg[sizeof j->err.msg];
        snprintf(msg, sizeof msg, "%s", j->err.msg);
        snprintf(j->err.msg, sizeof j->err.msg, "MPI rank %d: %s", src, msg);
    }
    j->len = (size_t)count - hdr;
    j->out = malloc(j->len ? j->len : 1);
    if (!j->out) {
        free(buf);
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory receiving job %ld from rank %d", j->index, src);
    }
    memcpy(j->out, buf + hdr, j->len);
    free(buf);
    j->state = JOB_DONE;
    return 0;
}
#endif

/* The input thread: reads jobs with next() while fewer than `limit` of this rank's jobs are in
 * flight; other ranks' jobs are dropped (rank 0 keeps a placeholder to receive them). */
static void *reader_main(void *arg)
{
    pool *p = arg;
    const cli_work *w = p->w;
    /* cancelled (after a fatal error) only while it waits for input inside next() */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    for (long index = 0;; index++) {
        pthread_mutex_lock(&p->mu);
        while (p->local_inflight >= p->limit && !p->stop)
            pthread_cond_wait(&p->cv_room, &p->mu);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        void *input = NULL;
        pcv_error e = {0};
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        int r = w->next(w->ctx, index, &input, &e);
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        bool mine = index % g_size == g_rank;
        job *j = NULL;
        if (r > 0 && (mine || g_rank == 0)) {
            if (!(j = calloc(1, sizeof *j)))
                r = pcv_set_error(&e, PCV_ERR_OOM, "out of memory"), r = -1;
        }
        if (r > 0 && (!mine || !j)) {
            w->free_input(w->ctx, input);
            input = NULL;
        }
        pthread_mutex_lock(&p->mu);
        if (r <= 0) {
            p->eof = true;
            if (r < 0) {
                p->read_rc = e.code ? (int)e.code : PCV_ERR_INPUT;
                p->read_err = e;
            }
            pthread_cond_broadcast(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (j) {
            j->index = index;
            j->local = mine;
            j->input = input;
            if (mine)
                p->local_inflight++;
            if (p->tail)
                p->tail->next = j;
            else
                p->head = j;
            p->tail = j;
            pthread_cond_broadcast(&p->cv_work);
            pthread_cond_broadcast(&p->cv_done);
        }
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

int cli_dispatch(const cli_models *ms, const cli_work *w, pcv_error *err)
{
    if (ms->n < 1)
        return pcv_set_error(err, PCV_ERR_INPUT, "no device");
    if (g_size > 1 && w->reads_stdin)
        return pcv_set_error(err, PCV_ERR_INPUT, "under mpirun only rank 0 has standard input: give the inputs as "
                             "files or arguments");
    pool p = {.w = w, .mu = PTHREAD_MUTEX_INITIALIZER, .cv_work = PTHREAD_COND_INITIALIZER,
              .cv_done = PTHREAD_COND_INITIALIZER, .cv_room = PTHREAD_COND_INITIALIZER, .limit = 2 * ms->n};
    worker wk[CLI_MAX_DEVICES];
    int nw = 0, rc = 0;
    for (int i = 0; i < ms->n; i++) {
        wk[i] = (worker){.p = &p, .m = ms->m[i], .device = ms->device[i], .silent = ms->n > 1};
        if (pthread_create(&wk[i].thread, NULL, worker_main, &wk[i]) != 0) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "cannot start a thread for %s", ms->device[i]);
            break;
        }
        nw++;
    }
#ifdef PCV_HAVE_MPI
    pending_send *sends = NULL;
#endif
    /* the reader thread makes the jobs; this thread emits (or sends) their results in order, so
     * that a result is out as soon as it is ready even while the next input is still awaited */
    pthread_t reader;
    bool reader_on = false;
    if (!rc) {
        if (pthread_create(&reader, NULL, reader_main, &p) != 0)
            rc = pcv_set_error(err, PCV_ERR_OOM, "cannot start the input thread");
        else
            reader_on = true;
    }
    while (!rc) {
        pthread_mutex_lock(&p.mu);
        job *h;
        /* a read error (which ends the input) is reported after the jobs read before it: never
         * before the job at the head is done, whose worker still uses it */
        while (!((h = p.head) && (!h->local || h->state == JOB_DONE)) && !(!h && p.eof))
            pthread_cond_wait(&p.cv_done, &p.mu);
        if (!h) {
            if (p.read_rc) {
                *err = p.read_err;
                rc = p.read_rc;
            }
            pthread_mutex_unlock(&p.mu);
            break;
        }
        pthread_mutex_unlock(&p.mu);
#ifdef PCV_HAVE_MPI
        if (!h->local && (rc = recv_result(h, err)))
            break;
#endif
        if (h->rc) {
            *err = h->err;
            rc = h->rc;
#ifdef PCV_HAVE_MPI
            if (g_rank != 0) /* rank 0 reports it and ends the run */
                send_result(h, &sends, err);
#endif
            break;
        }
        if (g_rank == 0) {
            rc = w->emit(w->ctx, h->index, h->out, h->len, err);
        } else {
#ifdef PCV_HAVE_MPI
            rc = send_result(h, &sends, err);
#endif
        }
        pthread_mutex_lock(&p.mu);
        p.head = h->next;
        if (!p.head)
            p.tail = NULL;
        if (h->local)
            p.local_inflight--;
        pthread_cond_broadcast(&p.cv_room);
        pthread_mutex_unlock(&p.mu);
        job_free(w, h);
    }
    pthread_mutex_lock(&p.mu);
    p.stop = true;
    pthread_cond_broadcast(&p.cv_room);
    pthread_mutex_unlock(&p.mu);
    if (reader_on) {
        bool done;
        pthread_mutex_lock(&p.mu);
        done = p.eof;
        pthread_mutex_unlock(&p.mu);
        if (!done) /* stopped by an error: the reader may wait for input that never comes */
            pthread_cancel(reader);
        pthread_join(reader, NULL);
    }
    pthread_mutex_lock(&p.mu);
    p.stop = true;
    pthread_cond_broadcast(&p.cv_work);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < nw; i++)
        pthread_join(wk[i].thread, NULL);
    while (p.head) {
        job *n = p.head->next;
        job_free(w, p.head);
        p.head = n;
    }
#ifdef PCV_HAVE_MPI
    sends_finish(sends);
#endif
    g_completed = rc == 0;
    return rc;
}
