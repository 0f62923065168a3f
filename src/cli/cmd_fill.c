/* perceiver-cl fill: masked-byte filling with a byte-level masked language model.
 *
 * Streaming: lines are read, parsed and filled one batch at a time, so the memory of a run is
 * bounded by --batch and --max-line-bytes whatever the input's size; a bad line is reported by
 * its number and skipped, the others are still filled, and the exit status is 1 at the end. */
#include "cli/cli.h"
#include "cli/dispatch.h"
#include "cli/jsonw.h"
#include "perceiver/tasks.h"
#include "util/clock.h"
#include "util/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILL_MAX_LINE_DEFAULT ((long)64 << 10)
#define FILL_MAX_INPUT_DEFAULT ((long)1 << 30)

static const cli_option options[] = {
    {"model", 'm', "DIR", "model folder (config.json + model.safetensors) or checkpoint"},
    {"file", 'f', "FILE", "read texts from FILE, one per line ('-' = standard input)"},
    {"top", 'k', "K", "also give the K most likely bytes of each masked byte with their\n"
                      "probabilities, like the fill-mask pipeline's top_k (1..256)"},
    {"json", CLI_KEY, NULL, "one JSON object per line (docs/json.md): input, filled text,\n"
                            "and for each masked span its position, guess, original (if\n"
                            "known) and the lowest byte probability"},
    {"batch", 'b', "N", "lines per forward pass (default 8)"},
    {"max-line-bytes", CLI_KEY + 1, "N", "longest input line read, in bytes (default 64K; K, M, G\n"
                                         "suffixes); a longer line is reported and skipped"},
    {"max-input-bytes", CLI_KEY + 2, "N", "most bytes read from --file or standard input in one run\n"
                                          "(default 1G); reading stops there with an error"},
    {0},
};

const cli_command cli_cmd_fill = {
    "fill", "--model DIR [options] [TEXT ...]",
    "Fills the masked bytes of each TEXT (or of each line of --file, or of standard input when\n"
    "no TEXT is given) with the most likely bytes under a PerceiverForMaskedLM model, and prints\n"
    "one filled text per input line, in input order. Lines are read and filled one batch at a\n"
    "time. A line that cannot be filled (bad mask syntax, too long for the model, a NUL byte,\n"
    "longer than --max-line-bytes) is reported on standard error with its number and skipped;\n"
    "the other lines are still filled, and the exit status is then 1.\n"
    "\n"
    "Mask syntax:\n"
    "  [MASK]           one masked byte\n"
    "  [MASK:N]         N masked bytes (also [MASK*N])\n"
    "  {text}           mask the bytes of 'text'; --json reports the original beside the guess\n"
    "  \\[ \\] \\{ \\} \\\\   literal characters\n"
    "Any other [...] is literal text. One byte is one token: a non-ASCII character takes\n"
    "2-4 masked bytes. Each line becomes [CLS] bytes [SEP] and must fit the model's positions\n"
    "(2048 for deepmind/language-perceiver, i.e. 2046 bytes).\n"
    "\n"
    "Output: the filled text, with a backslash written \\\\, a newline \\n, a tab \\t, a carriage\n"
    "return \\r and other control bytes \\xHH, so that every input line gives exactly one output\n"
    "line; invalid UTF-8 becomes U+FFFD (as Python's bytes.decode(errors=\"replace\")). With\n"
    "--top K, each filled line is followed by one line per masked byte: '  @POS' and the K\n"
    "bytes with their probabilities (softmax over the whole vocabulary).\n",
    options, CLI_MODEL | CLI_QUIET | CLI_DEVICES,
    "Example: perceiver-cl fill -m model 'The capital of France is {Paris}.'\n",
};

/* ---- output ------------------------------------------------------------------------------------ */

/* s[n] (valid UTF-8 after sanitizing) with backslashes and control bytes escaped */
static void put_escaped(FILE *f, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c == '\\')
            fputs("\\\\", f);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc((int)c, f);
    }
}

/* one byte as a candidate: printable ASCII as itself, anything else escaped */
static void put_byte(FILE *f, unsigned c)
{
    if (c >= 0x20 && c < 0x7f && c != '\\')
        fputc((int)c, f);
    else if (c == '\\')
        fputs("\\\\", f);
    else if (c == '\n')
        fputs("\\n", f);
    else if (c == '\t')
        fputs("\\t", f);
    else if (c == '\r')
        fputs("\\r", f);
    else
        fprintf(f, "\\x%02x", c);
}

static void print_text(FILE *f, const pcv_fill_result *r, bool top)
{
    char *s = pcv_utf8_sanitize((const char *)r->filled, r->len);
    put_escaped(f, (const unsigned char *)(s ? s : ""), s ? strlen(s) : 0);
    fputc('\n', f);
    free(s);
    for (size_t q = 0; top && q < r->num_masked; q++) {
        fprintf(f, "  @%zu", r->positions[q]);
        for (int c = 0; c < r->top_k; c++) {
            fputs("  ", f);
            put_byte(f, r->candidates[q * (size_t)r->top_k + (size_t)c]);
            fprintf(f, " %.2f%%", 100.0 * r->probabilities[q * (size_t)r->top_k + (size_t)c]);
        }
        fputc('\n', f);
    }
}

static void print_json(jw *w, const char *input, long lineno, const pcv_fill_result *r, bool top)
{
    jw_object(w);
    jw_key(w, "line"), jw_int(w, lineno);
    jw_key(w, "input"), jw_str(w, input);
    jw_key(w, "filled"), jw_text(w, (const char *)r->filled, r->len);
    jw_key(w, "num_masked"), jw_int(w, (long long)r->num_masked);
    jw_key(w, "spans");
    jw_array(w);
    for (size_t q = 0; q < r->num_masked;) { /* a span: consecutive masked positions */
        size_t e = q + 1;
        while (e < r->num_masked && r->positions[e] == r->positions[e - 1] + 1)
            e++;
        bool known = true;
        float minp = 1.0f;
        unsigned char *guess = malloc(e - q + 1), *orig = malloc(e - q + 1);
        size_t len = 0;
        for (size_t t = q; guess && orig && t < e; t++, len++) {
            known = known && r->has_original[t];
            float p = r->probabilities[t * (size_t)r->top_k];
            minp = p < minp ? p : minp;
            guess[len] = r->candidates[t * (size_t)r->top_k];
            orig[len] = r->original[t];
        }
        jw_object(w);
        jw_key(w, "start"), jw_int(w, (long long)r->positions[q]);
        jw_key(w, "length"), jw_int(w, (long long)(e - q));
        jw_key(w, "guess"), jw_text(w, (const char *)guess, len);
        jw_key(w, "original");
        if (known)
            jw_text(w, (const char *)orig, len);
        else
            jw_null(w);
        if (known)
            jw_key(w, "correct"), jw_bool(w, guess && orig && memcmp(guess, orig, len) == 0);
        jw_key(w, "min_probability"), jw_float(w, minp);
        jw_object_end(w);
        free(guess);
        free(orig);
        q = e;
    }
    jw_array_end(w);
    if (top) {
        jw_key(w, "candidates");
        jw_array(w);
        for (size_t q = 0; q < r->num_masked; q++) {
            jw_object(w);
            jw_key(w, "position"), jw_int(w, (long long)r->positions[q]);
            jw_key(w, "top");
            jw_array(w);
            for (int c = 0; c < r->top_k; c++) {
                unsigned char b = r->candidates[q * (size_t)r->top_k + (size_t)c];
                jw_object(w);
                jw_key(w, "byte"), jw_int(w, b);
                jw_key(w, "text"), jw_text(w, (const char *)&b, 1);
                jw_key(w, "probability"), jw_float(w, r->probabilities[q * (size_t)r->top_k + (size_t)c]);
                jw_object_end(w);
            }
            jw_array_end(w);
            jw_object_end(w);
        }
        jw_array_end(w);
    }
    jw_object_end(w);
    jw_end(w);
}

/* ---- input: arguments, or lines read with bounds ------------------------------------------------ */

typedef struct source {
    char **args; /* TEXT arguments, or NULL */
    int nargs, next;
    FILE *f;          /* or a stream */
    const char *name; /* "standard input" or the file */
    size_t max_line;
    uint64_t max_total, total;
    long lineno;
    bool eof, over_total, read_error;
} source;

typedef struct item {
    long lineno;
    char *text;   /* NULL when bad */
    char *error;  /* why it is bad, or NULL */
    int slot;     /* index among the good ones of its batch */
} item;

/* The next line into *it; false at the end of the input. */
static bool next_item(source *s, item *it)
{
    memset(it, 0, sizeof *it);
    if (s->args) {
        if (s->next >= s->nargs)
            return false;
        it->lineno = ++s->lineno;
        it->text = strdup(s->args[s->next++]);
        return true;
    }
    if (s->eof)
        return false;
    size_t cap = 256, n = 0;
    char *buf = malloc(cap);
    bool too_long = false, nul = false;
    int c;
    while ((c = getc_unlocked(s->f)) != EOF) {
        if (++s->total > s->max_total) {
            s->over_total = true;
            break;
        }
        if (c == '\n')
            break;
        if (c == '\0')
            nul = true;
        if (too_long || !buf)
            continue;
        if (n + 1 > s->max_line) { /* keep reading to the end of the line, storing nothing */
            too_long = true;
            free(buf);
            buf = NULL;
            continue;
        }
        if (n + 2 > cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                too_long = true;
                continue;
            }
            buf = nb;
        }
        buf[n++] = (char)c;
    }
    if (c == EOF) {
        s->eof = true;
        s->read_error = ferror(s->f);
        if (n == 0 && !too_long && !nul) { /* no last line after the final newline */
            free(buf);
            return false;
        }
    }
    if (s->over_total) {
        s->eof = true;
        free(buf);
        return false;
    }
    it->lineno = ++s->lineno;
    char msg[160];
    if (too_long) {
        snprintf(msg, sizeof msg, "longer than %zu bytes (--max-line-bytes raises the limit)", s->max_line);
        it->error = strdup(msg);
        free(buf);
        return true;
    }
    if (nul) {
        it->error = strdup("contains a NUL byte; expected text");
        free(buf);
        return true;
    }
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    it->text = buf;
    return true;
}

/* A bad line into a job's result: its message ('E': "line N: ..." or "FILE: line N: ...") and,
 * with --json, its error object ('o'). */
static void report(const source *s, const item *it, bool json, FILE *out)
{
    char msg[1200];
    if (s->args || !strcmp(s->name, "standard input"))
        snprintf(msg, sizeof msg, "line %ld: %s", it->lineno, it->error);
    else
        snprintf(msg, sizeof msg, "%s: line %ld: %s", s->name, it->lineno, it->error);
    cli_rec_put(out, 'E', msg, strlen(msg));
    if (json) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
            return;
        jw w;
        jw_init(&w, f, 0);
        jw_object(&w);
        jw_key(&w, "line"), jw_int(&w, it->lineno);
        jw_key(&w, "error"), jw_str(&w, it->error);
        jw_object_end(&w);
        jw_end(&w);
        if (fclose(f) == 0)
            cli_rec_put(out, 'o', buf, len);
        free(buf);
    }
}

/* ---- the work: jobs of --batch lines (cli_dispatch) -------------------------------------------- */

typedef struct fill_ctx {
    source src;
    long batch, topk;
    bool json, top;
    long nbad, ngood;
    double t0;
} fill_ctx;

typedef struct fill_job {
    int n;
    item items[];
} fill_job;

static void fill_free(void *ctx, void *input)
{
    (void)ctx;
    fill_job *j = input;
    for (int i = 0; j && i < j->n; i++) {
        free(j->items[i].text);
        free(j->items[i].error);
    }
    free(j);
}

/* the next --batch lines, the bad ones kept in place so that they are reported in order */
static int fill_next(void *vctx, long index, void **input, pcv_error *err)
{
    (void)index;
    fill_ctx *c = vctx;
    fill_job *j = calloc(1, sizeof *j + (size_t)c->batch * sizeof(item));
    if (!j)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory"), -1;
    while (j->n < c->batch && next_item(&c->src, &j->items[j->n]))
        j->n++;
    if (j->n == 0) {
        free(j);
        return 0;
    }
    *input = j;
    return 1;
}

static int fill_run(void *vctx, pcv_model *m, void *input, FILE *out, pcv_error *err)
{
    fill_ctx *c = vctx;
    fill_job *j = input;
    int n = j->n, ng = 0, rc = 0;
    pcv_fill_result *res = calloc((size_t)n, sizeof *res);
    const char **texts = calloc((size_t)n, sizeof *texts);
    if (!res || !texts) {
        free(res);
        free(texts);
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        item *it = &j->items[i];
        if (!it->error) {
            pcv_masked_text mt;
            pcv_error perr = {0};
            if (pcv_parse_masked(it->text, &mt, &perr))
                it->error = strdup(perr.msg);
            else
                pcv_masked_text_free(&mt);
        }
        if (it->error) {
            free(it->text);
            it->text = NULL;
        }
    }
    /* fill the good ones; a text the model refuses ("text K: ...") is marked and the rest rerun */
    for (;;) {
        ng = 0;
        for (int i = 0; i < n; i++)
            if (j->items[i].text) {
                j->items[i].slot = ng;
                texts[ng++] = j->items[i].text;
            }
        if (!ng)
            break;
        pcv_error ferr = {0};
        if (pcv_fill_masked(m, texts, ng, (int)c->topk, res, &ferr) == 0)
            break;
        int k = 0;
        if (ferr.code != PCV_ERR_INPUT || sscanf(ferr.msg, "text %d:", &k) != 1 || k < 1 || k > ng) {
            *err = ferr;
            rc = (int)ferr.code;
            ng = 0;
            break;
        }
        for (int i = 0; i < n; i++)
            if (j->items[i].text && j->items[i].slot == k - 1) {
                const char *colon = strchr(ferr.msg, ':');
                j->items[i].error = strdup(colon ? colon + 2 : ferr.msg);
                free(j->items[i].text);
                j->items[i].text = NULL;
            }
    }
    for (int i = 0; !rc && i < n; i++) {
        item *it = &j->items[i];
        if (it->error) {
            report(&c->src, it, c->json, out);
            continue;
        }
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f) {
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
            break;
        }
        if (c->json) {
            jw w;
            jw_init(&w, f, 0);
            print_json(&w, it->text, it->lineno, &res[it->slot], c->top);
        } else {
            print_text(f, &res[it->slot], c->top);
        }
        if (fclose(f) == 0)
            cli_rec_put(out, 'O', buf, len);
        else
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        free(buf);
    }
    pcv_fill_results_free(res, ng);
    free(res);
    free(texts);
    return rc;
}

static int fill_emit(void *vctx, long index, const char *data, size_t len, pcv_error *err)
{
    (void)index;
    fill_ctx *c = vctx;
    int rc = cli_rec_print(data, len, &c->ngood, &c->nbad, err);
    if (rc)
        return rc;
    cli_progress_context("fill: %ld line%s done, %.1f lines/s", c->ngood, c->ngood == 1 ? "" : "s",
                         c->ngood / (pcv_now() - c->t0 + 1e-9));
    return 0;
}

static bool parse_size(cli_parser *p, long lo, long *out)
{
    char *end;
    errno = 0;
    double v = p->arg && *p->arg ? strtod(p->arg, &end) : -1;
    long mul = 1;
    if (p->arg && *p->arg && !errno && end != p->arg) {
        if (*end == 'K' || *end == 'k')
            mul = 1L << 10, end++;
        else if (*end == 'M' || *end == 'm')
            mul = 1L << 20, end++;
        else if (*end == 'G' || *end == 'g')
            mul = 1L << 30, end++;
    }
    if (!p->arg || !*p->arg || errno || *end || !(v * mul >= lo) || v * mul > 9e18) {
        cli_usage_error(p->cmd->name, "--%s needs a size of at least %ld bytes (e.g. 65536, 64K, 1G), not '%s'",
                        p->cur->name, lo, p->arg ? p->arg : "");
        return false;
    }
    *out = (long)(v * mul);
    return true;
}

int cmd_fill(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *file = NULL;
    bool json = false, top_given = false;
    long batch = 8, topk = 1, max_line = FILL_MAX_LINE_DEFAULT, max_input = FILL_MAX_INPUT_DEFAULT;
    cli_parse_begin(&p, &cli_cmd_fill, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case 'f': file = p.arg; break;
        case CLI_KEY: json = true; break;
        case 'b':
            if (!cli_int(&p, 1, 4096, &batch))
                return EXIT_USAGE;
            break;
        case 'k':
            if (!cli_int(&p, 1, 256, &topk))
                return EXIT_USAGE;
            top_given = true;
            break;
        case CLI_KEY + 1:
            if (!parse_size(&p, 1, &max_line))
                return EXIT_USAGE;
            break;
        case CLI_KEY + 2:
            if (!parse_size(&p, 1, &max_input))
                return EXIT_USAGE;
            break;
        default: return EXIT_USAGE;
        }
    }
    int ntexts = argc - p.first_operand;
    if (!model_dir)
        return cli_usage_error("fill", "--model is required");
    if (ntexts && file)
        return cli_usage_error("fill", "give texts as arguments or with --file, not both");
    if (!ntexts && !file && isatty(STDIN_FILENO))
        return cli_usage_error("fill", "no text given (pass TEXT arguments, --file F, or pipe lines to standard input)");

    source src = {.max_line = (size_t)max_line, .max_total = (uint64_t)max_input, .name = "standard input"};
    if (ntexts) {
        src.args = argv + p.first_operand;
        src.nargs = ntexts;
        src.name = "arguments";
    } else if (!file || !strcmp(file, "-")) {
        src.f = stdin;
    } else {
        src.f = fopen(file, "rb");
        src.name = file;
        if (!src.f) {
            pcv_error e = {0};
            pcv_set_error(&e, PCV_ERR_IO, "%s: cannot open: %s", file, strerror(errno));
            return cli_fail(&e);
        }
    }

    pcv_error err = {0};
    cli_models ms = {0};
    fill_ctx ctx = {.src = src, .batch = batch, .topk = topk, .json = json, .top = top_given};
    int rc = EXIT_FAIL;
    if (cli_models_open(model_dir, &opt, &ms, &err))
        goto done;
    if (pcv_model_arch(ms.m[0]) != PCV_ARCH_MASKED_LM) {
        pcv_set_error(&err, PCV_ERR_UNSUPPORTED, "%s: fill needs a PerceiverForMaskedLM model, this is %s", model_dir,
                      pcv_arch_name(pcv_model_arch(ms.m[0])));
        goto done;
    }
    char devs[1024];
    cli_info("%s on %s, %s", pcv_arch_name(pcv_model_arch(ms.m[0])), cli_models_describe(&ms, devs, sizeof devs),
             src.args ? "texts from the arguments" : src.name);
    ctx.t0 = pcv_now();
    cli_work work = {.ctx = &ctx, .next = fill_next, .run = fill_run, .free_input = fill_free, .emit = fill_emit,
                     .reads_stdin = src.f == stdin};
    if (cli_dispatch(&ms, &work, &err))
        goto done;
    cli_progress_clear();
    if (ctx.src.over_total) {
        pcv_set_error(&err, PCV_ERR_INPUT, "%s: more than %ld bytes read; stopped (--max-input-bytes raises the limit)",
                      src.name, max_input);
        goto done;
    }
    if (ctx.src.read_error) {
        pcv_set_error(&err, PCV_ERR_IO, "%s: read error: %s", src.name, strerror(errno));
        goto done;
    }
    if (ctx.nbad)
        cli_info("%ld line%s filled, %ld failed", ctx.ngood, ctx.ngood == 1 ? "" : "s", ctx.nbad);
    rc = fflush(stdout) == 0 && ctx.nbad == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (err.msg[0])
        cli_fail(&err);
    cli_models_free(&ms);
    if (src.f && src.f != stdin)
        fclose(src.f);
    return rc;
}
