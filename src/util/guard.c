/* Temporaries and mappings known to the signal handlers, and the handlers themselves.
 *
 * Why handlers: perceiver-cl writes outputs to temporary names and renames them into place, so an
 * interrupted run must remove its temporaries (SIGINT, SIGTERM, SIGHUP, SIGQUIT); and weights are
 * used in place from read-only mappings of the checkpoint (zero-copy on the CPU path), so a file
 * truncated while mapped makes the next access to the lost pages raise SIGBUS. Reading every
 * checkpoint into anonymous memory instead would double the memory of the largest models (the
 * page cache and a private copy) for a fault that only happens when someone rewrites a model file
 * in place while it runs; so the mapping stays, and the fault becomes a clear error: the handler
 * names the file and the offset, removes the temporaries and exits with status 1. SIGKILL cannot
 * be caught: its leftovers are removed by the next run (pcv_remove_stale).
 *
 * Everything the handlers touch is a fixed table written before its entry is published (an
 * atomic state flag), and they only call async-signal-safe functions (unlink, rmdir, write,
 * sigaction, raise, _exit). */
#include "util/guard.h"
#include "util/error.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TMP_SLOTS 64
#define MAP_SLOTS 256
#define PATH_CAP 4096

enum { FREE = 0, BUSY = 1, LIVE = 2 };

static struct {
    int state;
    bool dir;
    char path[PATH_CAP];
} g_tmp[TMP_SLOTS];

static struct {
    int state;
    uintptr_t addr;
    size_t len;
    char path[PATH_CAP];
} g_map[MAP_SLOTS];

static bool claim(int *state)
{
    int expect = FREE;
    return __atomic_compare_exchange_n(state, &expect, BUSY, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

int pcv_tmp_track(const char *path, bool dir)
{
    size_t n = strlen(path);
    if (n >= PATH_CAP)
        return -1;
    for (int i = 0; i < TMP_SLOTS; i++) {
        if (!claim(&g_tmp[i].state))
            continue;
        memcpy(g_tmp[i].path, path, n + 1);
        g_tmp[i].dir = dir;
        __atomic_store_n(&g_tmp[i].state, LIVE, __ATOMIC_RELEASE);
        return i;
    }
    return -1;
}

void pcv_tmp_untrack(int slot)
{
    if (slot >= 0 && slot < TMP_SLOTS)
        __atomic_store_n(&g_tmp[slot].state, FREE, __ATOMIC_RELEASE);
}

void pcv_tmp_remove_all(void)
{
    int e = errno;
    for (int pass = 0; pass < 2; pass++) /* files, then the folders they were in */
        for (int i = TMP_SLOTS - 1; i >= 0; i--)
            if (__atomic_load_n(&g_tmp[i].state, __ATOMIC_ACQUIRE) == LIVE && g_tmp[i].dir == (pass == 1)) {
                if (pass == 0)
                    unlink(g_tmp[i].path);
                else
                    rmdir(g_tmp[i].path);
            }
    errno = e;
}

void pcv_map_track(const void *addr, size_t len, const char *path)
{
    size_t n = strlen(path);
    if (n >= PATH_CAP)
        n = PATH_CAP - 1;
    for (int i = 0; i < MAP_SLOTS; i++) {
        if (!claim(&g_map[i].state))
            continue;
        memcpy(g_map[i].path, path, n);
        g_map[i].path[n] = '\0';
        g_map[i].addr = (uintptr_t)addr;
        g_map[i].len = len;
        __atomic_store_n(&g_map[i].state, LIVE, __ATOMIC_RELEASE);
        return;
    }
}

void pcv_map_untrack(const void *addr)
{
    for (int i = 0; i < MAP_SLOTS; i++)
        if (__atomic_load_n(&g_map[i].state, __ATOMIC_ACQUIRE) == LIVE && g_map[i].addr == (uintptr_t)addr) {
            __atomic_store_n(&g_map[i].state, FREE, __ATOMIC_RELEASE);
            return;
        }
}

const char *pcv_map_lookup(const void *addr, size_t *off, size_t *len)
{
    uintptr_t a = (uintptr_t)addr;
    for (int i = 0; i < MAP_SLOTS; i++)
        if (__atomic_load_n(&g_map[i].state, __ATOMIC_ACQUIRE) == LIVE && a >= g_map[i].addr &&
            a - g_map[i].addr < g_map[i].len) {
            *off = a - g_map[i].addr;
            *len = g_map[i].len;
            return g_map[i].path;
        }
    return NULL;
}

/* ---- the handlers ------------------------------------------------------------------------------ */

static const int g_term_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
static struct sigaction g_old[65];
static char g_program[64] = "perceiver";

/* Async-signal-safe output. */
static void say(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void say_u64(uint64_t v)
{
    char b[24];
    int i = (int)sizeof b - 1;
    b[i] = '\0';
    do {
        b[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    say(b + i);
}

/* Runs the action that was in place before ours: the default one (re-raised, so that the process
 * ends by the signal and its parent sees that), or the previous handler. */
static void chain(int sig, siginfo_t *si, void *uc)
{
    struct sigaction *old = sig > 0 && sig < 65 ? &g_old[sig] : NULL;
    if (old && (old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        old->sa_sigaction(sig, si, uc);
        return;
    }
    if (old && old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (sig != SIGBUS)
        raise(sig); /* delivered when the handler returns (the signal is blocked until then) */
    /* SIGBUS from a fault: returning re-runs the access, which now takes the default action */
}

static void on_terminate(int sig, siginfo_t *si, void *uc)
{
    pcv_tmp_remove_all();
    chain(sig, si, uc);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    pcv_tmp_remove_all();
    size_t off = 0, len = 0;
    const char *path = si ? pcv_map_lookup(si->si_addr, &off, &len) : NULL;
    if (!path) {
        chain(sig, si, uc);
        return;
    }
    say(g_program);
    say(": error: ");
    say(path);
    say(": the file changed while it was in use: byte ");
    say_u64(off);
    say(" of its ");
    say_u64(len);
    say("-byte mapping can no longer be read (SIGBUS: it was truncated or rewritten in place). "
        "Do not modify a model file while it is being read; replace it with a rename instead.\n");
    _exit(1);
}

pcv_status pcv_install_signal_handlers(const char *program, pcv_error *err)
{
    if (program && *program)
        snprintf(g_program, sizeof g_program, "%s", program);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO;
    for (size_t i = 0; i < sizeof g_term_signals / sizeof *g_term_signals; i++) {
        int sig = g_term_signals[i];
        struct sigaction cur;
        if (sigaction(sig, NULL, &cur) != 0)
            return pcv_set_error(err, PCV_ERR_IO, "cannot query the action of signal %d: %s", sig, strerror(errno));
        if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_IGN)
            continue; /* ignored on purpose (nohup, a shell's background job): keep it so */
        if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_terminate)
            continue; /* already ours */
        sa.sa_sigaction = on_terminate;
        if (sigaction(sig, &sa, &g_old[sig]) != 0)
            return pcv_set_error(err, PCV_ERR_IO, "cannot install a handler for signal %d: %s", sig,
                                 strerror(errno));
    }
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) == 0 && !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus)) {
        /* SA_NODEFER: a fault inside the handler itself takes the default action rather than
         * blocking forever */
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        if (sigaction(SIGBUS, &sa, &g_old[SIGBUS]) != 0)
            return pcv_set_error(err, PCV_ERR_IO, "cannot install a handler for SIGBUS: %s", strerror(errno));
    }
    return PCV_OK;
}
