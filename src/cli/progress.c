/* The progress line (cli.h): only on a terminal, never with --quiet, erased before any other
 * output so that nothing else is written in the middle of it. */
#include "cli/cli.h"

#include "util/clock.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int tty = -1;      /* standard error is a terminal (decided once) */
static bool shown;        /* a line is on the screen */
static double last_draw;  /* when it was drawn */
static char context[256]; /* the command's part of the line */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* devices report from worker threads */
static _Thread_local bool t_silent;                    /* this thread's reports are not shown */

void cli_progress_thread_silent(bool silent) { t_silent = silent; }

static bool enabled(void)
{
    if (tty < 0) {
        const char *term = getenv("TERM");
        tty = isatty(STDERR_FILENO) && !(term && !strcmp(term, "dumb"));
        if (tty)
            atexit(cli_progress_clear);
    }
    return tty && !cli_quiet;
}

static void draw(const char *text)
{
    struct winsize ws;
    int width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10 ? ws.ws_col : 80;
    fprintf(stderr, "\r\033[K%.*s", width - 1, text);
    fflush(stderr);
    shown = true;
    last_draw = pcv_now();
}

void cli_progress(bool force, const char *fmt, ...)
{
    if (!enabled() || t_silent)
        return;
    pthread_mutex_lock(&mu);
    if (force || !shown || pcv_now() - last_draw >= 0.1) {
        char text[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        draw(text);
    }
    pthread_mutex_unlock(&mu);
}

void cli_progress_context(const char *fmt, ...)
{
    char text[sizeof context] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_lock(&mu);
    memcpy(context, text, sizeof context);
    pthread_mutex_unlock(&mu);
    if (fmt)
        cli_progress(false, "%s", text);
}

void cli_progress_clear(void)
{
    pthread_mutex_lock(&mu);
    if (shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        shown = false;
    }
    pthread_mutex_unlock(&mu);
}

void cli_library_progress(void *user, const char *what, int64_t done, int64_t total)
{
    (void)user;
    if (!enabled() || t_silent)
        return;
    char ctx[sizeof context];
    pthread_mutex_lock(&mu);
    memcpy(ctx, context, sizeof ctx);
    pthread_mutex_unlock(&mu);
    const char *sep = ctx[0] ? "; " : "";
    if (!strncmp(what, "compiling", 9)) { /* a long silence follows (20-40 s on PoCL): say why */
        if (done < total)
            cli_progress(true, "%s%s%s, first use (cached afterwards)...", ctx, sep, what);
    } else if (!strcmp(what, "loading weights") && total > 0)
        cli_progress(done == total, "%s%sloading weights %d%% (%.1fM of %.1fM parameters)", ctx, sep,
                     (int)(100 * done / total), done / 1e6, total / 1e6);
    else if (total > 0)
        cli_progress(false, "%s%s%s %lld/%lld", ctx, sep, what, (long long)done, (long long)total);
}
