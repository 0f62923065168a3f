/* perceiver-cl fill: masked-byte filling with a byte-level masked language model. */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "Usage: perceiver-cl fill --model DIR [options] [TEXT ...]\n"
    "\n"
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
    "(2048 for deepmind/language-perceiver, i.e. 2046 bytes).\n"
    "\n"
    "Options:\n"
    "  --model DIR, -m DIR   model folder (config.json + model.safetensors)\n"
    "  --file F, -f F        read texts from F, one per line ('-' = standard input)\n"
    "  --json                print one JSON object per line: input, filled text, and for each\n"
    "                        masked span its position, guess, original (if known) and the\n"
    "                        lowest byte probability\n"
    "  --batch N             lines per forward pass (default 8)\n"
    "%s"
    "  --help                this text\n"
    "\n"
    "Example: perceiver-cl fill -m model 'The capital of France is {Paris}.'\n";

typedef struct fill_line {
    char *text; /* as given */
    pcv_masked_text mt;
    unsigned char *guess; /* predicted bytes at masked positions */
    float *prob;          /* probability of each guessed byte */
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

/* Runs one batch of lines [lo, hi). */
static int fill_batch(pcv_model *m, fill_line *lines, int lo, int hi, bool specials, pcv_error *err)
{
    int64_t B = hi - lo, S = 0;
    int off = specials ? 1 : 0;
    for (int i = lo; i < hi; i++)
        if ((int64_t)lines[i].mt.len + 2 * off > S)
            S = (int64_t)lines[i].mt.len + 2 * off;
    if (S == 0)
        S = 1;
    int64_t *ids = calloc((size_t)(B * S), sizeof *ids), *mask = calloc((size_t)(B * S), sizeof *mask);
    const pcv_io_tensor *outs = NULL;
    int nout = 0, rc;
    if (!ids || !mask) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    for (int i = lo; i < hi; i++) {
        int64_t *row = ids + (i - lo) * S, *mrow = mask + (i - lo) * S;
        const pcv_masked_text *mt = &lines[i].mt;
        int64_t n = 0;
        if (specials)
            row[n++] = PCV_TOK_CLS;
        for (size_t j = 0; j < mt->len; j++)
            row[n++] = mt->masked[j] ? PCV_TOK_MASK : (int64_t)mt->bytes[j] + PCV_TOK_BYTE_OFFSET;
        if (specials)
            row[n++] = PCV_TOK_SEP;
        for (int64_t j = 0; j < n; j++)
            mrow[j] = 1;
    }
    pcv_io_tensor in[2] = {
        {.name = "input_ids", .dtype = PCV_DT_I64, .ndim = 2, .shape = {B, S}, .data = ids},
        {.name = "attention_mask", .dtype = PCV_DT_I64, .ndim = 2, .shape = {B, S}, .data = mask},
    };
    if ((rc = pcv_model_forward(m, in, 2, &outs, &nout, err)))
        goto done;
    const pcv_io_tensor *lg = pcv_io_find(outs, nout, "logits");
    int64_t P = lg->shape[1], V = lg->shape[2];
    for (int i = lo; i < hi; i++) {
        fill_line *L = &lines[i];
        for (size_t j = 0; j < L->mt.len; j++) {
            if (!L->mt.masked[j])
                continue;
            const float *row = (const float *)lg->data + ((i - lo) * P + (int64_t)j + off) * V;
            /* argmax over byte tokens only, so every masked byte is filled with a byte */
            int best = PCV_TOK_BYTE_OFFSET;
            float mx = -INFINITY;
            for (int64_t v = 0; v < V; v++)
                mx = row[v] > mx ? row[v] : mx;
            double sum = 0;
            for (int64_t v = 0; v < V; v++)
                sum += exp((double)row[v] - mx);
            for (int v = PCV_TOK_BYTE_OFFSET; v < V && v < PCV_TOK_VOCAB; v++)
                if (row[v] > row[best])
                    best = v;
            L->guess[j] = (unsigned char)(best - PCV_TOK_BYTE_OFFSET);
            L->prob[j] = (float)(exp((double)row[best] - mx) / sum);
        }
    }
    rc = 0;
done:
    free(ids);
    free(mask);
    return rc;
}

static char *filled_text(const fill_line *L)
{
    unsigned char *b = malloc(L->mt.len + 1);
    if (!b)
        return NULL;
    for (size_t j = 0; j < L->mt.len; j++)
        b[j] = L->mt.masked[j] ? L->guess[j] : L->mt.bytes[j];
    char *s = pcv_utf8_sanitize((const char *)b, L->mt.len);
    free(b);
    return s;
}

static void print_json(const fill_line *L, int lineno)
{
    json_t *o = json_object(), *spans = json_array();
    char *filled = filled_text(L);
    char *input = pcv_utf8_sanitize(L->text, strlen(L->text));
    json_object_set_new(o, "line", json_integer(lineno));
    json_object_set_new(o, "input", json_string(input ? input : ""));
    json_object_set_new(o, "filled", json_string(filled ? filled : ""));
    json_object_set_new(o, "num_masked", json_integer((json_int_t)L->mt.num_masked));
    for (size_t j = 0; j < L->mt.len;) {
        if (!L->mt.masked[j]) {
            j++;
            continue;
        }
        size_t k = j;
        bool known = true;
        float minp = 1.0f;
        while (k < L->mt.len && L->mt.masked[k]) {
            known = known && L->mt.has_original[k];
            minp = L->prob[k] < minp ? L->prob[k] : minp;
            k++;
        }
        json_t *sp = json_object();
        char *g = pcv_utf8_sanitize((const char *)L->guess + j, k - j);
        json_object_set_new(sp, "start", json_integer((json_int_t)j));
        json_object_set_new(sp, "length", json_integer((json_int_t)(k - j)));
        json_object_set_new(sp, "guess", json_string(g ? g : ""));
        if (known) {
            char *orig = pcv_utf8_sanitize((const char *)L->mt.bytes + j, k - j);
            json_object_set_new(sp, "original", json_string(orig ? orig : ""));
            json_object_set_new(sp, "correct", json_boolean(memcmp(L->guess + j, L->mt.bytes + j, k - j) == 0));
            free(orig);
        } else {
            json_object_set_new(sp, "original", json_null());
        }
        json_object_set_new(sp, "min_probability", json_real(minp));
        json_array_append_new(spans, sp);
        free(g);
        j = k;
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
    cli_args a;
    pcv_model_options opt = cli_model_options();
    const char *model_dir = NULL, *file = NULL;
    bool json = false, bad = false;
    long batch = 8;
    char **texts = calloc((size_t)argc, sizeof *texts);
    int ntexts = 0;
    if (!texts)
        return EXIT_FAIL;
    cli_init(&a, argc, argv, 2);
    while (a.i < a.argc && !bad) {
        if (cli_opt(&a, "--help", "-h", false, &bad)) {
            printf(help, cli_model_opts_help);
            free(texts);
            return EXIT_OK;
        } else if (cli_opt(&a, "--model", "-m", true, &bad)) {
            model_dir = a.value;
        } else if (cli_opt(&a, "--file", "-f", true, &bad)) {
            file = a.value;
        } else if (cli_opt(&a, "--json", NULL, false, &bad)) {
            json = true;
        } else if (cli_opt(&a, "--batch", "-b", true, &bad)) {
            if (a.value && !cli_parse_int(a.value, 1, 4096, &batch)) {
                free(texts);
                return cli_usage_error("fill", "--batch needs a number from 1 to 4096, not '%s'", a.value);
            }
        } else if (cli_model_opt(&a, &opt, &bad)) {
        } else if (a.argv[a.i][0] == '-' && a.argv[a.i][1] != '\0' && strcmp(a.argv[a.i], "--") != 0) {
            free(texts);
            return cli_usage_error("fill", "unknown option '%s'", a.argv[a.i]);
        } else {
            if (!strcmp(a.argv[a.i], "--"))
                a.i++;
            while (a.i < a.argc)
                texts[ntexts++] = a.argv[a.i++];
        }
    }
    if (bad) {
        free(texts);
        return EXIT_USAGE;
    }
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
        for (char *p = buf; *p;) {
            char *nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            size_t l = strlen(p);
            if (l && p[l - 1] == '\r')
                p[l - 1] = '\0';
            texts[ntexts++] = p;
            if (!nl)
                break;
            p = nl + 1;
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
    /* DeepMind's colab adds no [CLS]/[SEP] (haiku numerics, the default for DeepMind pickles) */
    bool specials = pcv_model_numerics(m) != PCV_NUMERICS_HAIKU;
    int64_t maxpos = pcv_model_config(m)->max_position_embeddings;

    /* parse and check every line before running anything, so errors leave no partial output */
    for (int i = 0; i < ntexts; i++, nlines++) {
        fill_line *L = &lines[i];
        L->text = texts[i];
        pcv_error perr = {0};
        if (pcv_parse_masked(L->text, &L->mt, &perr)) {
            pcv_set_error(&err, PCV_ERR_INPUT, "line %d: %s", i + 1, perr.msg);
            nlines++;
            goto done;
        }
        int64_t need = (int64_t)L->mt.len + (specials ? 2 : 0);
        if (need > maxpos) {
            pcv_set_error(&err, PCV_ERR_INPUT, "line %d: %zu bytes%s do not fit the model's %lld positions", i + 1,
                          L->mt.len, specials ? " + [CLS] + [SEP]" : "", (long long)maxpos);
            nlines++;
            goto done;
        }
        L->guess = calloc(L->mt.len + 1, 1);
        L->prob = calloc(L->mt.len + 1, sizeof *L->prob);
        if (!L->guess || !L->prob) {
            pcv_set_error(&err, PCV_ERR_OOM, "out of memory");
            nlines++;
            goto done;
        }
    }
    fprintf(stderr, "perceiver-cl: %s on %s, %d line%s\n", pcv_arch_name(pcv_model_arch(m)), pcv_model_device(m),
            nlines, nlines == 1 ? "" : "s");
    for (int lo = 0; lo < nlines; lo += (int)batch) {
        int hi = lo + (int)batch < nlines ? lo + (int)batch : nlines;
        if (fill_batch(m, lines, lo, hi, specials, &err))
            goto done;
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
    for (int i = 0; i < nlines; i++) {
        pcv_masked_text_free(&lines[i].mt);
        free(lines[i].guess);
        free(lines[i].prob);
    }
    free(lines);
    pcv_model_free(m);
    free(buf);
    free(texts);
    return rc;
}
