/* perceiver-cl fill: masked-byte filling with a byte-level masked language model. */
#include "cli/cli.h"
#include "perceiver/tasks.h"
#include "util/error.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cli_option options[] = {
    {"model", 'm', "DIR", "model folder (config.json + model.safetensors) or checkpoint"},
    {"file", 'f', "FILE", "read texts from FILE, one per line ('-' = standard input)"},
    {"json", CLI_KEY, NULL, "one JSON object per line (docs/json.md): input, filled text,\n"
                            "and for each masked span its position, guess, original (if\n"
                            "known) and the lowest byte probability"},
    {"batch", 'b', "N", "lines per forward pass (default 8)"},
    {0},
};

const cli_command cli_cmd_fill = {
    "fill", "--model DIR [options] [TEXT ...]",
    "Fills the masked bytes of each TEXT (or of each line of --file, or of standard input when\n"
    "no TEXT is given) with the most likely bytes under a PerceiverForMaskedLM model, and prints\n"
    "one filled text per input line.\n"
    "\n"
    "Mask syntax:\n"
    "  [MASK]           one masked byte\n"
    "  [MASK:N]         N masked bytes (also [MASK*N])\n"
    "  {text}           mask the bytes of 'text'; --json reports the original beside the guess\n"
    "  \\[ \\] \\{ \\} \\\\   literal characters\n"
    "Any other [...] is literal text. One byte is one token: a non-ASCII character takes\n"
    "2-4 masked bytes. Each line becomes [CLS] bytes [SEP] and must fit the model's positions\n"
    "(2048 for deepmind/language-perceiver, i.e. 2046 bytes).\n",
    options, CLI_MODEL | CLI_QUIET,
    "Example: perceiver-cl fill -m model 'The capital of France is {Paris}.'\n",
};

typedef struct fill_line {
    char *text; /* as given */
    pcv_fill_result r;
} fill_line;

static char *read_stream(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static char *filled_text(const fill_line *L)
{
    return pcv_utf8_sanitize((const char *)L->r.filled, L->r.len);
}

static void print_json(const fill_line *L, int lineno)
{
    json_t *o = json_object(), *spans = json_array();
    char *filled = filled_text(L);
    char *input = pcv_utf8_sanitize(L->text, strlen(L->text));
    json_object_set_new(o, "line", json_integer(lineno));
    json_object_set_new(o, "input", json_string(input ? input : ""));
    json_object_set_new(o, "filled", json_string(filled ? filled : ""));
    json_object_set_new(o, "num_masked", json_integer((json_int_t)L->r.num_masked));
    const pcv_fill_result *r = &L->r;
    for (size_t q = 0; q < r->num_masked;) { /* a span: consecutive masked positions */
        size_t e = q + 1;
        while (e < r->num_masked && r->positions[e] == r->positions[e - 1] + 1)
            e++;
        bool known = true;
        float minp = 1.0f;
        unsigned char guess[4096], orig[4096];
        size_t len = 0;
        for (size_t t = q; t < e; t++) {
            known = known && r->has_original[t];
            float p = r->probabilities[t * (size_t)r->top_k];
            minp = p < minp ? p : minp;
            if (len < sizeof guess) {
                guess[len] = r->candidates[t * (size_t)r->top_k];
                orig[len] = r->original[t];
                len++;
            }
        }
        json_t *sp = json_object();
        char *g = pcv_utf8_sanitize((const char *)guess, len);
        json_object_set_new(sp, "start", json_integer((json_int_t)r->positions[q]));
        json_object_set_new(sp, "length", json_integer((json_int_t)(e - q)));
        json_object_set_new(sp, "guess", json_string(g ? g : ""));
        if (known) {
            char *o2 = pcv_utf8_sanitize((const char *)orig, len);
            json_object_set_new(sp, "original", json_string(o2 ? o2 : ""));
            json_object_set_new(sp, "correct", json_boolean(memcmp(guess, orig, len) == 0));
            free(o2);
        } else {
            json_object_set_new(sp, "original", json_null());
        }
        json_object_set_new(sp, "min_probability", json_real(minp));
        json_array_append_new(spans, sp);
        free(g);
        q = e;
    }
    json_object_set_new(o, "spans", spans);
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s)
        printf("%s\n", s);
    free(s);
    free(filled);
    free(input);
    json_decref(o);
}

int cmd_fill(int argc, char **argv)
{
    cli_parser p;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *file = NULL;
    bool json = false;
    long batch = 8;
    char **texts = calloc((size_t)argc + 1, sizeof *texts);
    int ntexts = 0;
    if (!texts)
        return EXIT_FAIL;
    cli_parse_begin(&p, &cli_cmd_fill, argc, argv);
    p.model = &opt;
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: free(texts); return EXIT_OK;
        case 'm': model_dir = p.arg; break;
        case 'f': file = p.arg; break;
        case CLI_KEY: json = true; break;
        case 'b':
            if (!cli_int(&p, 1, 4096, &batch)) {
                free(texts);
                return EXIT_USAGE;
            }
            break;
        default: free(texts); return EXIT_USAGE;
        }
    }
    for (int i = p.first_operand; i < argc; i++)
        texts[ntexts++] = argv[i];
    if (!model_dir) {
        free(texts);
        return cli_usage_error("fill", "--model is required");
    }
    if (ntexts && file) {
        free(texts);
        return cli_usage_error("fill", "give texts as arguments or with --file, not both");
    }

    pcv_error err = {0};
    char *buf = NULL;
    fill_line *lines = NULL;
    pcv_fill_result *res = NULL;
    int nlines = 0, rc = EXIT_FAIL;
    pcv_model *m = NULL;

    /* gather the lines */
    if (!ntexts) {
        if (!file && isatty(STDIN_FILENO)) {
            free(texts);
            return cli_usage_error("fill", "no text given (pass TEXT arguments, --file F, or pipe lines to standard input)");
        }
        FILE *f = (!file || !strcmp(file, "-")) ? stdin : fopen(file, "rb");
        if (!f) {
            pcv_set_error(&err, PCV_ERR_IO, "%s: cannot open: %s", file, strerror(errno));
            goto done;
        }
        size_t len;
        buf = read_stream(f, &len);
        bool rerr = ferror(f);
        if (f != stdin)
            fclose(f);
        if (!buf || rerr) {
            pcv_set_error(&err, PCV_ERR_IO, "%s: read error", file ? file : "standard input");
            goto done;
        }
        if (strlen(buf) != len) {
            pcv_set_error(&err, PCV_ERR_INPUT, "%s: contains a NUL byte; expected text", file ? file : "standard input");
            goto done;
        }
        char **t2 = realloc(texts, (len / 1 + 2) * sizeof *texts);
        if (!t2)
            goto done;
        texts = t2;
        for (char *q = buf; *q;) {
            char *nl = strchr(q, '\n');
            if (nl)
                *nl = '\0';
            size_t l = strlen(q);
            if (l && q[l - 1] == '\r')
                q[l - 1] = '\0';
            texts[ntexts++] = q;
            if (!nl)
                break;
            q = nl + 1;
        }
    }
    lines = calloc((size_t)(ntexts ? ntexts : 1), sizeof *lines);
    if (!lines)
        goto done;

    if (pcv_model_load(model_dir, &opt, &m, &err))
        goto done;
    if (pcv_model_arch(m) != PCV_ARCH_MASKED_LM) {
        pcv_set_error(&err, PCV_ERR_UNSUPPORTED, "%s: fill needs a PerceiverForMaskedLM model, this is %s", model_dir,
                      pcv_arch_name(pcv_model_arch(m)));
        goto done;
    }
    /* every line is parsed and checked before anything runs, so errors leave no partial output */
    for (int i = 0; i < ntexts; i++) {
        lines[i].text = texts[i];
        pcv_masked_text mt;
        pcv_error perr = {0};
        if (pcv_parse_masked(texts[i], &mt, &perr)) {
            pcv_set_error(&err, PCV_ERR_INPUT, "line %d: %s", i + 1, perr.msg);
            goto done;
        }
        pcv_masked_text_free(&mt);
    }
    nlines = ntexts;
    res = calloc((size_t)batch, sizeof *res);
    if (!res)
        goto done;
    cli_info("%s on %s, %d line%s", pcv_arch_name(pcv_model_arch(m)), pcv_model_device(m), nlines,
             nlines == 1 ? "" : "s");
    for (int lo = 0; lo < nlines; lo += (int)batch) {
        int hi = lo + (int)batch < nlines ? lo + (int)batch : nlines;
        if (pcv_fill_masked(m, (const char *const *)texts + lo, hi - lo, 1, res, &err)) {
            char msg[sizeof err.msg];
            snprintf(msg, sizeof msg, "%s", err.msg);
            if (!strncmp(msg, "text ", 5)) /* "text N" of the batch -> the line number */
                pcv_set_error(&err, err.code, "line %d%s", lo + atoi(msg + 5), strchr(msg, ':'));
            goto done;
        }
        for (int i = lo; i < hi; i++)
            lines[i].r = res[i - lo];
    }
    for (int i = 0; i < nlines; i++) {
        if (json) {
            print_json(&lines[i], i + 1);
        } else {
            char *s = filled_text(&lines[i]);
            printf("%s\n", s ? s : "");
            free(s);
        }
    }
    rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
done:
    if (rc && err.msg[0])
        cli_fail(&err);
    for (int i = 0; i < nlines; i++)
        pcv_fill_results_free(&lines[i].r, 1);
    free(lines);
    free(res);
    pcv_model_free(m);
    free(buf);
    free(texts);
    return rc;
}
