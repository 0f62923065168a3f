/* Faults while files are in use (issue 12): a model file truncated while mapped (SIGBUS) is a
 * clear error naming the file, exit status 1; SIGTERM / SIGINT while an output is written remove
 * its temporaries (a file, a partial folder); signals that were ignored stay ignored. Each case
 * runs in a child process; the parent checks how it ended and what it left. */
#include "perceiver/model.h"
#include "perceiver/perceiver.h"
#include "testutil.h"
#include "util/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[4096];

/* Runs fn in a child whose stderr goes to g_dir/stderr.txt; returns the wait status. */
static int in_child(void (*fn)(void *), void *arg)
{
    char errpath[4200];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", g_dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0)
            dup2(fd, 2);
        fn(arg);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

static bool stderr_has(const char *s)
{
    char errpath[4200];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", g_dir);
    size_t n = 0;
    unsigned char *b = tu_read_file(errpath, &n);
    bool ok = false;
    if (b) {
        char *t = realloc(b, n + 1);
        if (t) {
            t[n] = '\0';
            ok = strstr(t, s) != NULL;
            if (!ok)
                fprintf(stderr, "stderr was: %s\n", t);
            b = (unsigned char *)t;
        }
        free(b);
    }
    return ok;
}

static void install(void)
{
    pcv_error err = {0};
    if (pcv_install_signal_handlers("test_faults", &err)) {
        fprintf(stderr, "%s\n", err.msg);
        _exit(3);
    }
}

static bool exists(const char *p)
{
    struct stat sb;
    return lstat(p, &sb) == 0;
}

static void copy_file(const char *from, const char *to)
{
    size_t n = 0;
    unsigned char *b = tu_read_file(from, &n);
    FILE *f = fopen(to, "wb");
    if (b && f)
        fwrite(b, 1, n, f);
    if (f)
        fclose(f);
    free(b);
}

/* ---- SIGBUS -------------------------------------------------------------------------------------- */

static void truncated_mapping(void *arg)
{
    const char *path = arg;
    install();
    void *map = NULL;
    size_t size = 0;
    pcv_error err = {0};
    if (pcv_map_file(path, "a test file", &map, &size, &err))
        _exit(4);
    if (truncate(path, 0) != 0)
        _exit(5);
    volatile unsigned char c = ((volatile unsigned char *)map)[size / 2]; /* SIGBUS */
    (void)c;
    _exit(0);
}

typedef struct model_case {
    const char *dir;
    const char *inputs;
} model_case;

/* A model running on the CPU path uses its weights in place; the file is truncated under it. */
static void truncated_model(void *arg)
{
    const model_case *mc = arg;
    install();
    pcv_error err = {0};
    pcv_model *m = NULL;
    pcv_safetensors *in = NULL;
    if (pcv_model_load(mc->dir, NULL, &m, &err) || pcv_st_open(mc->inputs, &in, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        _exit(4);
    }
    char w[4200];
    snprintf(w, sizeof w, "%s/model.safetensors", mc->dir);
    if (truncate(w, 64) != 0)
        _exit(5);
    pcv_io_tensor ins[8];
    const pcv_io_tensor *outs;
    int nout;
    if (pcv_io_from_safetensors(in, ins, &err) || pcv_model_forward(m, ins, pcv_st_count(in), &outs, &nout, &err))
        _exit(6);
    _exit(0); /* the forward read no weights?! */
}

/* ---- signals while writing ------------------------------------------------------------------------ */

static int write_then_signal(int fd, void *ctx)
{
    char buf[4096] = {0};
    if (pcv_write_all(fd, buf, sizeof buf))
        return -1;
    raise(*(int *)ctx); /* delivered at once: the handler runs here */
    return pcv_write_all(fd, buf, sizeof buf);
}

static int write_plain(int fd, void *ctx)
{
    (void)ctx;
    return pcv_write_all(fd, "{}\n", 3);
}

static int g_sig;
static char g_out[4200];

static void signal_in_atomic_write(void *arg)
{
    (void)arg;
    install();
    pcv_error err = {0};
    pcv_write_atomic(g_out, write_then_signal, &g_sig, &err);
    _exit(0);
}

static void signal_in_outdir(void *arg)
{
    (void)arg;
    install();
    static const char *const files[] = {"config.json", "model.safetensors"};
    pcv_outdir od;
    pcv_error err = {0};
    char p[8400];
    if (pcv_outdir_begin(&od, g_out, files, 2, &err))
        _exit(4);
    pcv_outdir_path(&od, "config.json", p, sizeof p);
    if (pcv_write_atomic(p, write_plain, NULL, &err))
        _exit(5);
    pcv_outdir_path(&od, "model.safetensors", p, sizeof p);
    pcv_write_atomic(p, write_then_signal, &g_sig, &err);
    _exit(0);
}

static void ignored_stays_ignored(void *arg)
{
    (void)arg;
    signal(SIGHUP, SIG_IGN);
    install();
    raise(SIGHUP);
    _exit(7);
}

/* Issue 12 #6: cache folders are private (0700, ours, not writable by others) or refused. */
static void test_private_dirs(void)
{
    char p[4200];
    pcv_error err = {0};
    snprintf(p, sizeof p, "%s/cache/a/b", g_dir);
    CHECK(pcv_private_dir(p, "the test cache", &err) == 0, "new private folder: %s", err.msg);
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0700, "new cache folder mode %o", (unsigned)(sb.st_mode & 0777));
    snprintf(p, sizeof p, "%s/cache/a", g_dir);
    CHECK(stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0700, "created parent mode %o", (unsigned)(sb.st_mode & 0777));
    snprintf(p, sizeof p, "%s/open", g_dir);
    mkdir(p, 0777);
    chmod(p, 0777);
    CHECK(pcv_private_dir(p, "the test cache", &err) == PCV_ERR_INPUT && strstr(err.msg, "others can write into") &&
              strstr(err.msg, "mode 0777"),
          "world-writable folder: %s", err.msg);
    chmod(p, 0775);
    CHECK(pcv_private_dir(p, "the test cache", &err) == PCV_ERR_INPUT, "group-writable folder accepted");
    chmod(p, 0755);
    CHECK(pcv_private_dir(p, "the test cache", &err) == 0, "a 0755 folder of ours: %s", err.msg);
    snprintf(p, sizeof p, "%s/plain", g_dir);
    FILE *f = fopen(p, "w");
    if (f)
        fclose(f);
    CHECK(pcv_private_dir(p, "the test cache", &err) == PCV_ERR_IO && strstr(err.msg, "not a folder"),
          "a file: %s", err.msg);
    if (geteuid() == 0) { /* another user's folder (only root can make one here) */
        snprintf(p, sizeof p, "%s/theirs", g_dir);
        mkdir(p, 0700);
        if (chown(p, 65534, 65534) == 0)
            CHECK(pcv_private_dir(p, "the test cache", &err) == PCV_ERR_INPUT &&
                      strstr(err.msg, "owned by another user (uid 65534"),
                  "another user's folder: %s", err.msg);
    }
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "%s/faults-%ld", tu_tmpdir(), (long)getpid());
    mkdir(g_dir, 0755);

    /* a truncated mapping */
    char path[4200];
    snprintf(path, sizeof path, "%s/mapped.bin", g_dir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; f && i < 1 << 20; i++)
        fputc(i & 0xff, f);
    if (f)
        fclose(f);
    int st = in_child(truncated_mapping, path);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "SIGBUS in a truncated mapping: status %#x (want exit 1)", st);
    CHECK(stderr_has("mapped.bin: the file changed while it was in use: byte 524288"), "SIGBUS message");

    /* a model whose weights file is truncated while it runs */
    char mdir[4200], src[4200];
    snprintf(mdir, sizeof mdir, "%s/model", g_dir);
    mkdir(mdir, 0755);
    const char *fx = "mlm_heads_default";
    snprintf(src, sizeof src, "%s/%s/config.json", tu_fixtures(), fx);
    snprintf(path, sizeof path, "%s/config.json", mdir);
    copy_file(src, path);
    snprintf(src, sizeof src, "%s/%s/model.safetensors", tu_fixtures(), fx);
    snprintf(path, sizeof path, "%s/model.safetensors", mdir);
    copy_file(src, path);
    char inputs[4200];
    snprintf(inputs, sizeof inputs, "%s/%s/inputs.safetensors", tu_fixtures(), fx);
    model_case mc = {mdir, inputs};
    st = in_child(truncated_model, &mc);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "model truncated while running: status %#x (want exit 1)", st);
    CHECK(stderr_has("model/model.safetensors: the file changed while it was in use"), "SIGBUS message names the model");

    /* SIGTERM, SIGINT, SIGHUP while an output is written */
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        g_sig = sigs[i];
        snprintf(g_out, sizeof g_out, "%s/out-%d.safetensors", g_dir, g_sig);
        st = in_child(signal_in_atomic_write, NULL);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == g_sig, "signal %d while writing: status %#x (want killed by it)",
              g_sig, st);
        char tmp[4300];
        bool left = exists(g_out);
        DIR *d = opendir(g_dir);
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strstr(e->d_name, ".tmp.")) {
                snprintf(tmp, sizeof tmp, "%s", e->d_name);
                left = true;
            }
        if (d)
            closedir(d);
        CHECK(!left, "signal %d while writing left a file behind", g_sig);

        snprintf(g_out, sizeof g_out, "%s/outdir-%d", g_dir, g_sig);
        st = in_child(signal_in_outdir, NULL);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == g_sig, "signal %d while writing a folder: status %#x", g_sig, st);
        left = exists(g_out);
        d = opendir(g_dir);
        while (d && (e = readdir(d)))
            if (strstr(e->d_name, "partial"))
                left = true;
        if (d)
            closedir(d);
        CHECK(!left, "signal %d while writing a folder left it (or its partial folder) behind", g_sig);
    }
    test_private_dirs();
    st = in_child(ignored_stays_ignored, NULL);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "an ignored SIGHUP must stay ignored: status %#x", st);

    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return TEST_DONE();
}
