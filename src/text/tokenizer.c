/* Byte-level tokenizer of Perceiver IO (HF PerceiverTokenizer), UTF-8 repair with CPython's
 * errors="replace" policy, and the masked-text syntax of `perceiver-cl fill`.
 *
 * Token ids: [PAD]=0 [BOS]=1 [EOS]=2 [MASK]=3 [CLS]=4 [SEP]=5, byte b -> b + 6 (vocab 262).
 *
 * Decoding follows HF's PerceiverTokenizer.decode(): every byte id contributes its raw byte,
 * every special id (unless skipped) contributes the ASCII text of its name, all concatenated
 * into one byte string which HF then decodes with bytes.decode("utf-8", errors="replace").
 * pcv_detokenize returns the raw byte string; pcv_utf8_sanitize performs the decode step. */
#include "perceiver/perceiver.h"
#include "util/error.h"
#include "util/limits.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tokenize / detokenize --------------------------------------------------------------- */

size_t pcv_tokenize(const char *text, size_t len, bool add_special, int32_t *ids, size_t cap)
{
    const unsigned char *s = (const unsigned char *)text;
    if (!s) len = 0;
    if (!ids) cap = 0;
    size_t total = len + (add_special ? 2u : 0u);
    size_t k = 0;
    if (add_special) {
        if (k < cap) ids[k] = PCV_TOK_CLS;
        k++;
    }
    for (size_t i = 0; i < len; i++, k++)
        if (k < cap) ids[k] = (int32_t)s[i] + PCV_TOK_BYTE_OFFSET;
    if (add_special) {
        if (k < cap) ids[k] = PCV_TOK_SEP;
        k++;
    }
    return total;
}

static const char *const special_names[PCV_TOK_BYTE_OFFSET] = {
    "[PAD]", "[BOS]", "[EOS]", "[MASK]", "[CLS]", "[SEP]",
};

char *pcv_detokenize(const int32_t *ids, size_t n, bool skip_special)
{
    size_t need = 1;
    if (!ids) n = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id >= PCV_TOK_BYTE_OFFSET && id < PCV_TOK_VOCAB)
            need += 1;
        else if (id >= 0 && id < PCV_TOK_BYTE_OFFSET && !skip_special)
            need += strlen(special_names[id]);
    }
    char *out = malloc(need);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id >= PCV_TOK_BYTE_OFFSET && id < PCV_TOK_VOCAB) {
            out[k++] = (char)(unsigned char)(id - PCV_TOK_BYTE_OFFSET);
        } else if (id >= 0 && id < PCV_TOK_BYTE_OFFSET && !skip_special) {
            size_t l = strlen(special_names[id]);
            memcpy(out + k, special_names[id], l);
            k += l;
        }
        /* ids < 0 or >= 262 are dropped (HF raises ValueError for them) */
    }
    out[k] = '\0';
    return out;
}

/* ---- UTF-8 repair -------------------------------------------------------------------------- */

/* Length of the UTF-8 sequence a lead byte announces, with the allowed range of the second byte
 * (Unicode Table 3-7, well-formed byte sequences); 0 if b cannot start a sequence. */
static int utf8_lead(unsigned char b, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b == 0xE0) { *lo = 0xA0; return 3; }
    if (b == 0xED) { *hi = 0x9F; return 3; }
    if (b >= 0xE1 && b <= 0xEF) return 3;
    if (b == 0xF0) { *lo = 0x90; return 4; }
    if (b >= 0xF1 && b <= 0xF3) return 4;
    if (b == 0xF4) { *hi = 0x8F; return 4; }
    return 0; /* 0x80..0xC1 (continuation bytes, overlong C0/C1) and 0xF5..0xFF */
}

/* Length of the valid sequence starting at s[0] (1..4), or 0 if invalid; in that case *bad is
 * the length of the maximal subpart to be replaced by a single U+FFFD (>= 1). */
static size_t utf8_seq(const unsigned char *s, size_t avail, size_t *bad)
{
    unsigned char lo, hi;
    int n = utf8_lead(s[0], &lo, &hi);
    *bad = 1;
    if (n == 0) return 0;
    if (n == 1) return 1;
    if (avail < 2 || s[1] < lo || s[1] > hi) return 0;
    for (int k = 2; k < n; k++) {
        if ((size_t)k >= avail || s[k] < 0x80 || s[k] > 0xBF) {
            *bad = (size_t)k;
            return 0;
        }
    }
    return (size_t)n;
}

char *pcv_utf8_sanitize(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    if (!s) len = 0;
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    /* every input byte yields at most 3 output bytes (one U+FFFD) */
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    size_t i = 0, k = 0;
    while (i < len) {
        size_t bad;
        size_t n = utf8_seq(s + i, len - i, &bad);
        if (n) {
            memcpy(out + k, s + i, n);
            k += n, i += n;
        } else {
            out[k++] = (char)0xEF, out[k++] = (char)0xBF, out[k++] = (char)0xBD;
            i += bad;
        }
    }
    out[k] = '\0';
    /* shrink to fit; keep the original block if realloc fails */
    char *shrunk = realloc(out, k + 1);
    return shrunk ? shrunk : out;
}

/* ---- masked-text syntax ---------------------------------------------------------------------- */

#define PCV_MASK_MAX_RUN 65536u

typedef struct mbuf {
    pcv_masked_text *m;
    size_t cap;
} mbuf;

static int mbuf_grow(mbuf *b, size_t extra)
{
    pcv_masked_text *m = b->m;
    if (m->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < m->len + extra) cap *= 2;
    unsigned char *nb = realloc(m->bytes, cap);
    if (!nb) return -1;
    m->bytes = nb;
    bool *nm = realloc(m->masked, cap * sizeof *nm);
    if (!nm) return -1;
    m->masked = nm;
    bool *no = realloc(m->has_original, cap * sizeof *no);
    if (!no) return -1;
    m->has_original = no;
    b->cap = cap;
    return 0;
}

static int mbuf_push(mbuf *b, unsigned char byte, bool masked, bool original)
{
    if (mbuf_grow(b, 1)) return -1;
    pcv_masked_text *m = b->m;
    m->bytes[m->len] = byte;
    m->masked[m->len] = masked;
    m->has_original[m->len] = original;
    m->len++;
    if (masked) m->num_masked++;
    return 0;
}

/* Byte length of the (possibly invalid) UTF-8 character at s, for error messages. */
static int char_len(const char *s)
{
    size_t bad;
    size_t n = utf8_seq((const unsigned char *)s, strnlen(s, 4), &bad);
    return n ? (int)n : 1;
}

static int masked_fail(pcv_masked_text *out, pcv_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int masked_fail(pcv_masked_text *out, pcv_error *err, const char *fmt, ...)
{
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pcv_masked_text_free(out);
    return pcv_set_error(err, PCV_ERR_INPUT, "masked text: %s", msg);
}

/* Parses "[MASK]", "[MASK:N]" or "[MASK*N]" at text+i. Returns 1 and sets *count and *next when it
 * is one, 0 when the bracket is ordinary text, -1 on a malformed count (error already set). */
static int parse_mask_form(const char *text, size_t i, size_t *count, size_t *next,
                           pcv_masked_text *out, pcv_error *err)
{
    static const char kw[] = "[MASK";
    const size_t kwlen = sizeof kw - 1;
    if (strncmp(text + i, kw, kwlen) != 0) return 0;
    char c = text[i + kwlen];
    if (c == ']') {
        *count = 1;
        *next = i + kwlen + 1;
        return 1;
    }
    if (c != ':' && c != '*') return 0;
    size_t start = i + kwlen + 1;
    const char *close = strchr(text + start, ']');
    if (!close) {
        masked_fail(out, err, "unterminated \"[MASK%c\" at column %zu (expected \"[MASK%cN]\")", c,
                    i + 1, c);
        return -1;
    }
    size_t end = (size_t)(close - text);
    size_t ndig = end - start;
    bool digits = ndig > 0;
    for (size_t j = start; j < end && digits; j++)
        if (text[j] < '0' || text[j] > '9') digits = false;
    if (!digits) {
        int shown = ndig > 40 ? 40 : (int)ndig;
        masked_fail(out, err,
                    "invalid mask count \"%.*s%s\" in \"[MASK%c...]\" at column %zu (expected a "
                    "number from 1 to %u)",
                    shown, text + start, ndig > (size_t)shown ? "..." : "", c, i + 1,
                    PCV_MASK_MAX_RUN);
        return -1;
    }
    size_t v = 0;
    bool big = false;
    for (size_t j = start; j < end; j++) {
        v = v * 10 + (size_t)(text[j] - '0');
        if (v > PCV_MASK_MAX_RUN) {
            big = true;
            break;
        }
    }
    if (big) {
        int shown = ndig > 40 ? 40 : (int)ndig;
        masked_fail(out, err, "mask count %.*s%s at column %zu is too large (maximum %u)", shown,
                    text + start, ndig > (size_t)shown ? "..." : "", i + 1, PCV_MASK_MAX_RUN);
        return -1;
    }
    if (v == 0) {
        masked_fail(out, err, "mask count at column %zu must be at least 1 (got %.*s)", i + 1,
                    (int)(ndig > 40 ? 40 : ndig), text + start);
        return -1;
    }
    *count = v;
    *next = end + 1;
    return 1;
}

pcv_status pcv_parse_masked(const char *text, pcv_masked_text *out, pcv_error *err)
{
    if (!out) return pcv_set_error(err, PCV_ERR_INPUT, "masked text: no output given");
    memset(out, 0, sizeof *out);
    if (!text) return pcv_set_error(err, PCV_ERR_INPUT, "masked text: no text given");

    /* a text and what its masks expand to are bounded ([MASK:65536] is 13 bytes for 64 KiB) */
    size_t tlen = strlen(text), limit = (size_t)pcv_limits_now()->text_bytes;
    if (tlen > limit)
        return masked_fail(out, err, "the text has %zu bytes, over %s", tlen, PCV_LIMIT_TEXT("text_bytes"));
    mbuf b = {out, 0};
    if (mbuf_grow(&b, tlen + 1)) goto oom;

    bool in_brace = false;
    size_t brace_col = 0;     /* 1-based column of the open '{' */
    size_t brace_start = 0;   /* out->len when '{' was seen */
    size_t i = 0;
    while (text[i]) {
        char c = text[i];
        if (c == '\\') {
            char e = text[i + 1];
            if (e == '\0')
                return masked_fail(out, err,
                                   "trailing backslash at column %zu (write \"\\\\\" for a "
                                   "literal backslash)",
                                   i + 1);
            if (e != '[' && e != ']' && e != '{' && e != '}' && e != '\\')
                return masked_fail(out, err,
                                   "invalid escape \"\\%.*s\" at column %zu (only \\[ \\] \\{ "
                                   "\\} \\\\ are allowed)",
                                   char_len(text + i + 1), text + i + 1, i + 1);
            if (mbuf_push(&b, (unsigned char)e, in_brace, in_brace)) goto oom;
            i += 2;
            continue;
        }
        if (in_brace) {
            if (c == '{')
                return masked_fail(out, err,
                                   "nested \"{\" at column %zu inside \"{...}\" opened at column "
                                   "%zu",
                                   i + 1, brace_col);
            if (c == '}') {
                if (out->len == brace_start)
                    return masked_fail(out, err, "empty \"{}\" at column %zu", brace_col);
                in_brace = false;
                i++;
                continue;
            }
            /* inside {...} everything but escapes and braces is the literal original text */
            if (mbuf_push(&b, (unsigned char)c, true, true)) goto oom;
            i++;
            continue;
        }
        if (c == '{') {
            in_brace = true;
            brace_col = i + 1;
            brace_start = out->len;
            i++;
            continue;
        }
        if (c == '}')
            return masked_fail(out, err, "\"}\" at column %zu without a matching \"{\"", i + 1);
        if (c == '[') {
            size_t count = 0, next = 0;
            int r = parse_mask_form(text, i, &count, &next, out, err);
            if (r < 0) return (int)PCV_ERR_INPUT;
            if (r > 0) {
                if (count > limit - out->len)
                    return masked_fail(out, err, "the masks expand the text past %zu bytes at column %zu, over %s",
                                       limit, i + 1, PCV_LIMIT_TEXT("text_bytes"));
                if (mbuf_grow(&b, count)) goto oom;
                for (size_t j = 0; j < count; j++) mbuf_push(&b, 0, true, false);
                i = next;
                continue;
            }
        }
        if (mbuf_push(&b, (unsigned char)c, false, false)) goto oom;
        i++;
    }
    if (in_brace)
        return masked_fail(out, err, "unterminated \"{\" at column %zu (missing \"}\")", brace_col);
    if (out->len > limit)
        return masked_fail(out, err, "the text is %zu bytes with its masks expanded, over %s", out->len,
                           PCV_LIMIT_TEXT("text_bytes"));
    return 0;

oom:
    pcv_masked_text_free(out);
    return pcv_set_error(err, PCV_ERR_OOM, "masked text: out of memory");
}

void pcv_masked_text_free(pcv_masked_text *m)
{
    if (!m) return;
    free(m->bytes);
    free(m->masked);
    free(m->has_original);
    memset(m, 0, sizeof *m);
}
