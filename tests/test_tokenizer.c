/* Tests of the byte tokenizer, UTF-8 repair and the masked-text syntax, plus a golden comparison
 * with HF PerceiverTokenizer (tests/fixtures/tokenizer/cases.json). */
#include "perceiver/perceiver.h"
#include "testutil.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static bool ids_eq(const int32_t *a, const int32_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

/* Strict UTF-8 validity (Unicode Table 3-7). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b < 0x80) len = 1;
        else if (b >= 0xC2 && b <= 0xDF) len = 2;
        else if (b == 0xE0) len = 3, lo = 0xA0;
        else if (b == 0xED) len = 3, hi = 0x9F;
        else if (b >= 0xE1 && b <= 0xEF) len = 3;
        else if (b == 0xF0) len = 4, lo = 0x90;
        else if (b >= 0xF1 && b <= 0xF3) len = 4;
        else if (b == 0xF4) len = 4, hi = 0x8F;
        else return false;
        if (i + len > n) return false;
        if (len > 1 && (s[i + 1] < lo || s[i + 1] > hi)) return false;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
        i += len;
    }
    return true;
}

/* Prints bytes as a C-ish escaped string into a static buffer (for failure messages). */
static const char *esc(const char *s, size_t n)
{
    static char buf[4][512];
    static int which;
    char *o = buf[which++ & 3];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 5 < sizeof buf[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\') o[k++] = (char)c;
        else k += (size_t)snprintf(o + k, sizeof buf[0] - k, "\\x%02X", c);
    }
    o[k] = '\0';
    return o;
}

/* ---- tokenize ------------------------------------------------------------------------------ */

static void test_tokenize(void)
{
    int32_t ids[128];
    size_t n = pcv_tokenize("", 0, true, ids, 128);
    CHECK(n == 2 && ids[0] == 4 && ids[1] == 5, "empty with specials -> [CLS][SEP], n=%zu", n);
    n = pcv_tokenize("", 0, false, ids, 128);
    CHECK(n == 0, "empty without specials n=%zu", n);
    n = pcv_tokenize(NULL, 0, true, ids, 128);
    CHECK(n == 2, "NULL text n=%zu", n);

    n = pcv_tokenize("Ab", 2, false, ids, 128);
    CHECK(n == 2 && ids[0] == 'A' + 6 && ids[1] == 'b' + 6, "plain bytes");

    /* multi-byte characters become one id per byte; byte 0xFF -> 261; byte 0 -> 6 */
    const char e[] = "\xC3\xA9\xFF";
    n = pcv_tokenize(e, 3, true, ids, 128);
    CHECK(n == 5 && ids[0] == 4 && ids[1] == 0xC3 + 6 && ids[2] == 0xA9 + 6 && ids[3] == 261 &&
              ids[4] == 5,
          "utf-8 bytes");
    n = pcv_tokenize("a\0b", 3, false, ids, 128);
    CHECK(n == 3 && ids[1] == 6, "embedded NUL byte -> id 6");

    /* literal "[MASK]" in text is bytes, not the special id (deliberate: see fixture test) */
    n = pcv_tokenize("[MASK]", 6, false, ids, 128);
    CHECK(n == 6 && ids[0] == '[' + 6 && ids[5] == ']' + 6, "[MASK] text is bytes");

    /* capacity: writes at most cap, returns the full length, never touches beyond cap */
    int32_t small[4] = {-7, -7, -7, -7};
    n = pcv_tokenize("hello", 5, true, small, 3);
    CHECK(n == 7, "full length returned with small cap, n=%zu", n);
    CHECK(small[0] == 4 && small[1] == 'h' + 6 && small[2] == 'e' + 6 && small[3] == -7,
          "cap respected: %d %d %d %d", small[0], small[1], small[2], small[3]);
    n = pcv_tokenize("hello", 5, true, NULL, 0);
    CHECK(n == 7, "length query with NULL ids");
    n = pcv_tokenize("hello", 5, true, small, 0);
    CHECK(n == 7 && small[0] == 4, "cap 0 writes nothing");
    int32_t six[6] = {-7, -7, -7, -7, -7, -7};
    n = pcv_tokenize("hello", 5, true, six, 6);
    CHECK(n == 7 && six[5] == 'o' + 6, "[SEP] dropped when it does not fit");

    /* the HF example */
    const char *s = "This is an incomplete sentence where some words are missing.";
    n = pcv_tokenize(s, strlen(s), true, ids, 128);
    CHECK(strlen(s) == 60 && n == 62, "HF example length %zu", n);
    const int32_t want[9] = {38, 115, 111, 121, 121, 111, 116, 109, 52};
    CHECK(ids_eq(ids + 52, want, 9), "HF example ids[52..60]");
    CHECK(ids[0] == 4 && ids[61] == 5, "HF example specials");
}

/* ---- detokenize ---------------------------------------------------------------------------- */

static void test_detokenize(void)
{
    const int32_t a[] = {4, 'h' + 6, 'i' + 6, 3, 0, 1, 2, 5};
    char *s = pcv_detokenize(a, 8, false);
    CHECK(s && strcmp(s, "[CLS]hi[MASK][PAD][BOS][EOS][SEP]") == 0, "specials kept: %s",
          s ? s : "(null)");
    free(s);
    s = pcv_detokenize(a, 8, true);
    CHECK(s && strcmp(s, "hi") == 0, "specials skipped: %s", s ? s : "(null)");
    free(s);

    s = pcv_detokenize(NULL, 0, false);
    CHECK(s && s[0] == '\0', "empty");
    free(s);

    /* out of range ids are dropped (HF raises); 261 -> 0xFF */
    const int32_t b[] = {-1, 'x' + 6, 262, 1000, INT32_MIN, INT32_MAX, 261, -6};
    s = pcv_detokenize(b, 8, false);
    CHECK(s && strcmp(s, "x\xFF") == 0, "out of range dropped: %s", s ? esc(s, strlen(s)) : "");
    free(s);

    /* raw bytes are not repaired here; special text is spliced into the byte stream */
    const int32_t c[] = {0xE2 + 6, 5, 0x82 + 6, 0xAC + 6};
    s = pcv_detokenize(c, 4, false);
    CHECK(s && strcmp(s, "\xE2[SEP]\x82\xAC") == 0, "raw bytes: %s", s ? esc(s, strlen(s)) : "");
    char *z = s ? pcv_utf8_sanitize(s, strlen(s)) : NULL;
    CHECK(z && strcmp(z, "\xEF\xBF\xBD[SEP]\xEF\xBF\xBD\xEF\xBF\xBD") == 0,
          "special between partial bytes: %s", z ? esc(z, strlen(z)) : "");
    free(z);
    free(s);
    /* with skip the partial bytes join into a valid character (same as HF) */
    s = pcv_detokenize(c, 4, true);
    CHECK(s && strcmp(s, "\xE2\x82\xAC") == 0, "skip joins bytes: %s", s ? esc(s, strlen(s)) : "");
    free(s);

    /* round trip of every byte value 1..255 */
    int32_t all[255];
    char raw[256];
    for (int i = 1; i < 256; i++) all[i - 1] = i + 6, raw[i - 1] = (char)i;
    raw[255] = 0;
    s = pcv_detokenize(all, 255, true);
    CHECK(s && memcmp(s, raw, 256) == 0, "all bytes round trip");
    free(s);
}

/* ---- UTF-8 repair -------------------------------------------------------------------------- */

#define R "\xEF\xBF\xBD"

static void check_sanitize(const char *in, size_t n, const char *want, int line)
{
    char *s = pcv_utf8_sanitize(in, n);
    CHECK(s && strcmp(s, want) == 0, "line %d: sanitize(%s) = %s, want %s", line, esc(in, n),
          s ? esc(s, strlen(s)) : "(null)", esc(want, strlen(want)));
    free(s);
}
#define SAN(lit, want) check_sanitize(lit, sizeof lit - 1, want, __LINE__)

static void test_sanitize(void)
{
    /* expected values are those of CPython bytes.decode("utf-8", errors="replace") */
    SAN("", "");
    SAN("plain ascii", "plain ascii");
    SAN("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
    SAN("\xEF\xBF\xBF\xF4\x8F\xBF\xBF", "\xEF\xBF\xBF\xF4\x8F\xBF\xBF"); /* U+FFFF, U+10FFFF */
    SAN("\x80", R);
    SAN("\xBF\x80", R R);
    SAN("\xC0\xAF", R R);       /* overlong lead C0 */
    SAN("\xC1\xBF", R R);       /* overlong lead C1 */
    SAN("\xE0\x80\xAF", R R R); /* overlong 3-byte */
    SAN("\xE0\x9F\xBF", R R R);
    SAN("\xE0\xA0\x80", "\xE0\xA0\x80"); /* U+0800 ok */
    SAN("\xED\xA0\x80", R R R);          /* surrogate D800 */
    SAN("\xED\xBF\xBF", R R R);          /* surrogate DFFF */
    SAN("\xED\x9F\xBF", "\xED\x9F\xBF"); /* U+D7FF ok */
    SAN("\xF0\x80\x80\x80", R R R R);    /* overlong 4-byte */
    SAN("\xF0\x8F\xBF\xBF", R R R R);
    SAN("\xF0\x90\x80\x80", "\xF0\x90\x80\x80"); /* U+10000 ok */
    SAN("\xF4\x90\x80\x80", R R R R);            /* > U+10FFFF */
    SAN("\xF5\x80\x80\x80", R R R R);
    SAN("\xFE\xFF", R R);
    SAN("\xC3", R);                   /* truncated at end */
    SAN("\xE2\x82", R);               /* maximal subpart -> one U+FFFD */
    SAN("\xF0\x9F\x98", R);
    SAN("\xF0\x9F\x98" "A", R "A");
    SAN("\xE2\x82" "A\xE2\x82\xAC", R "A\xE2\x82\xAC");
    SAN("\xE2" "A", R "A");
    SAN("\xC3\xC3\xA9", R "\xC3\xA9"); /* the second lead byte starts over */
    SAN("\xF0\x9F\xE2\x82\xAC", R "\xE2\x82\xAC");
    SAN("\xE1\x80\xC0", R R);
    SAN("a\x80" "b\xFF" "c", "a" R "b" R "c");

    /* embedded NUL is kept as a character */
    char *s = pcv_utf8_sanitize("a\0\x80", 3);
    CHECK(s && s[0] == 'a' && s[1] == 0 && memcmp(s + 2, R, 4) == 0, "embedded NUL");
    free(s);
    s = pcv_utf8_sanitize(NULL, 0);
    CHECK(s && s[0] == 0, "NULL input");
    free(s);

    /* properties on pseudo-random byte strings biased towards UTF-8 edge bytes */
    static const unsigned char edge[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                         0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
                                         0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
    uint32_t st = 12345;
    int bad_valid = 0, bad_idem = 0, bad_len = 0;
    for (int t = 0; t < 20000; t++) {
        unsigned char buf[12];
        size_t n = (size_t)(t % 12) + 1;
        for (size_t i = 0; i < n; i++) {
            st = st * 1103515245u + 12345u;
            uint32_t r = st >> 16;
            buf[i] = (r & 1) ? edge[(r >> 1) % sizeof edge] : (unsigned char)(r >> 3);
        }
        char *a = pcv_utf8_sanitize((const char *)buf, n);
        if (!a) { bad_valid++; continue; }
        /* output length: (embedded NULs end strlen early; count them via the input) */
        size_t al = strlen(a);
        bool has_nul = memchr(buf, 0, n) != NULL;
        if (!has_nul) {
            if (!utf8_valid((unsigned char *)a, al)) bad_valid++;
            if (al > 3 * n) bad_len++;
            char *b = pcv_utf8_sanitize(a, al);
            if (!b || strcmp(a, b) != 0) bad_idem++;
            free(b);
            if (utf8_valid(buf, n) && (al != n || memcmp(a, buf, n) != 0)) bad_idem++;
        }
        free(a);
    }
    CHECK(bad_valid == 0, "sanitize output not valid UTF-8 in %d cases", bad_valid);
    CHECK(bad_idem == 0, "sanitize not idempotent / changed valid input in %d cases", bad_idem);
    CHECK(bad_len == 0, "sanitize output too long in %d cases", bad_len);
}

/* ---- masked text --------------------------------------------------------------------------- */

/* Describes a parse result as a string: masked-with-original bytes as {c}, masked unknown as _. */
static const char *describe(const pcv_masked_text *m)
{
    static char buf[1024];
    size_t k = 0;
    for (size_t i = 0; i < m->len && k + 4 < sizeof buf; i++) {
        if (!m->masked[i]) {
            if (m->has_original[i]) return "(has_original on unmasked byte)";
            buf[k++] = (char)m->bytes[i];
        } else if (m->has_original[i]) {
            buf[k++] = '{';
            buf[k++] = (char)m->bytes[i];
            buf[k++] = '}';
        } else {
            if (m->bytes[i] != 0) return "(unknown masked byte is not 0)";
            buf[k++] = '_';
        }
    }
    buf[k] = '\0';
    return buf;
}

static void check_parse(const char *in, const char *want, size_t want_masked, int line)
{
    pcv_masked_text m;
    pcv_error err = {0};
    int rc = pcv_parse_masked(in, &m, &err);
    CHECK(rc == 0, "line %d: parse(\"%s\") failed: %s", line, in, err.msg);
    if (rc != 0) return;
    size_t cnt = 0;
    for (size_t i = 0; i < m.len; i++) cnt += m.masked[i];
    const char *got = describe(&m);
    CHECK(strcmp(got, want) == 0, "line %d: parse(\"%s\") = \"%s\", want \"%s\"", line, in, got,
          want);
    CHECK(m.num_masked == want_masked && cnt == want_masked,
          "line %d: parse(\"%s\") num_masked %zu (counted %zu), want %zu", line, in, m.num_masked,
          cnt, want_masked);
    pcv_masked_text_free(&m);
    CHECK(m.bytes == NULL && m.masked == NULL && m.has_original == NULL && m.len == 0,
          "free resets the struct");
}
#define PARSE_OK(in, want, nm) check_parse(in, want, nm, __LINE__)

static void check_parse_err(const char *in, size_t col, const char *what, int line)
{
    pcv_masked_text m;
    memset(&m, 0x5A, sizeof m);
    pcv_error err = {0};
    int rc = pcv_parse_masked(in, &m, &err);
    char colstr[32];
    snprintf(colstr, sizeof colstr, "column %zu", col);
    CHECK(rc == PCV_ERR_INPUT && err.code == PCV_ERR_INPUT,
          "line %d: parse(\"%s\") rc=%d, want PCV_ERR_INPUT", line, in, rc);
    CHECK(strstr(err.msg, colstr) != NULL, "line %d: parse(\"%s\") message \"%s\" lacks \"%s\"",
          line, in, err.msg, colstr);
    CHECK(strstr(err.msg, what) != NULL, "line %d: parse(\"%s\") message \"%s\" lacks \"%s\"", line,
          in, err.msg, what);
    CHECK(m.bytes == NULL && m.masked == NULL && m.has_original == NULL && m.len == 0 &&
              m.num_masked == 0,
          "line %d: output not cleared on error", line);
    pcv_masked_text_free(&m); /* safe on a cleared struct */
}
#define PARSE_ERR(in, col, what) check_parse_err(in, col, what, __LINE__)

static void test_masked(void)
{
    PARSE_OK("", "", 0);
    PARSE_OK("no masks here", "no masks here", 0);
    PARSE_OK("a[MASK]b", "a_b", 1);
    PARSE_OK("[MASK][MASK]", "__", 2);
    PARSE_OK("x[MASK:3]y", "x___y", 3);
    PARSE_OK("x[MASK*3]y", "x___y", 3);
    PARSE_OK("[MASK:1]", "_", 1);
    PARSE_OK("[MASK:007]", "_______", 7);
    PARSE_OK("I {am} here", "I {a}{m} here", 2);
    PARSE_OK("{\xC3\xA9}", "{\xC3}{\xA9}", 2);
    PARSE_OK("[1] [x] [MASKED] [mask] [MASK", "[1] [x] [MASKED] [mask] [MASK", 0);
    PARSE_OK("]] ]", "]] ]", 0);
    PARSE_OK("\\[MASK\\] \\{x\\} \\\\", "[MASK] {x} \\", 0);
    PARSE_OK("\\[MASK]", "[MASK]", 0);
    PARSE_OK("{a\\}b\\{c\\\\}", "{a}{}}{b}{{}{c}{\\}", 6);
    PARSE_OK("{[MASK]}", "{[}{M}{A}{S}{K}{]}", 6);
    PARSE_OK("{ }", "{ }", 1);
    PARSE_OK("a\nb[MASK]", "a\nb_", 1);

    /* large run and byte values of the originals */
    pcv_masked_text m;
    pcv_error err = {0};
    int rc = pcv_parse_masked("a[MASK:65536]{xy}", &m, &err);
    CHECK(rc == 0 && m.len == 65539 && m.num_masked == 65538, "65536 run: rc=%d len=%zu", rc,
          m.len);
    if (rc == 0) {
        CHECK(m.bytes[0] == 'a' && !m.masked[0] && m.masked[65536] && m.bytes[65536] == 0 &&
                  !m.has_original[65536] && m.bytes[65537] == 'x' && m.has_original[65537] &&
                  m.masked[65538] && m.bytes[65538] == 'y',
              "65536 run content");
    }
    pcv_masked_text_free(&m);
    pcv_masked_text_free(&m); /* double free safe */
    pcv_masked_text_free(NULL);

    /* errors: code PCV_ERR_INPUT, message with the 1-based byte column */
    PARSE_ERR("ab{cd", 3, "unterminated");
    PARSE_ERR("{", 1, "unterminated");
    PARSE_ERR("a{b{c}}", 4, "nested");
    PARSE_ERR("ab}", 3, "without");
    PARSE_ERR("x {} y", 3, "empty");
    PARSE_ERR("xy[MASK:0]", 3, "at least 1");
    PARSE_ERR("[MASK*0]", 1, "at least 1");
    PARSE_ERR("ab [MASK:abc]", 4, "abc");
    PARSE_ERR("[MASK:]", 1, "invalid mask count");
    PARSE_ERR("[MASK:-1]", 1, "-1");
    PARSE_ERR("[MASK: 2]", 1, "invalid mask count");
    PARSE_ERR("[MASK:2x]", 1, "2x");
    PARSE_ERR("z[MASK:5", 2, "unterminated");
    PARSE_ERR("z[MASK*", 2, "unterminated");
    PARSE_ERR("[MASK:65537]", 1, "too large");
    PARSE_ERR("[MASK:99999999999999999999999999]", 1, "too large");
    PARSE_ERR("abc\\", 4, "trailing backslash");
    PARSE_ERR("a\\qb", 2, "\\q");
    PARSE_ERR("a\\n", 2, "\\n");
    PARSE_ERR("\\\xC3\xA9", 1, "\\\xC3\xA9");
    PARSE_ERR("{a\\xb}", 3, "\\x");
    PARSE_ERR("[MASK]{ok}{", 11, "unterminated");

    /* bad arguments */
    rc = pcv_parse_masked(NULL, &m, &err);
    CHECK(rc == PCV_ERR_INPUT, "NULL text");
    rc = pcv_parse_masked("x", NULL, &err);
    CHECK(rc == PCV_ERR_INPUT, "NULL out");
    rc = pcv_parse_masked("}", &m, NULL);
    CHECK(rc == PCV_ERR_INPUT && m.bytes == NULL, "NULL err is allowed");
}

/* ---- golden comparison with HF PerceiverTokenizer ------------------------------------------ */

static const char *const special_text[6] = {"[PAD]", "[BOS]", "[EOS]", "[MASK]", "[CLS]", "[SEP]"};

/* Reads a JSON int array into a malloc'd int32 array. */
static int32_t *json_ids(const json_t *a, size_t *n)
{
    *n = json_array_size(a);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    if (!ids) return NULL;
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return ids;
}

/* Compares a decoded C string with a fixture string. pcv_detokenize's result is NUL-terminated,
 * so a byte 0 (id 6) ends it; the fixture string is then compared up to its first NUL too. */
static bool str_matches(const char *got, const json_t *want)
{
    const char *w = json_string_value(want);
    size_t wl = json_string_length(want);
    const char *nul = memchr(w, 0, wl);
    if (nul) wl = (size_t)(nul - w);
    return strlen(got) == wl && memcmp(got, w, wl) == 0;
}

static char *decode_sanitized(const int32_t *ids, size_t n, bool skip)
{
    char *raw = pcv_detokenize(ids, n, skip);
    if (!raw) return NULL;
    char *s = pcv_utf8_sanitize(raw, strlen(raw));
    free(raw);
    return s;
}

static void test_fixture(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer/cases.json", tu_fixtures());
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    CHECK(root != NULL,
          "cannot load the HF tokenizer fixture %s: %s (line %d) -- it must be generated with "
          "the reference PerceiverTokenizer and committed",
          path, jerr.text, jerr.line);
    if (!root) return;
    const json_t *enc = json_object_get(root, "encode");
    const json_t *dec = json_object_get(root, "decode");
    CHECK(json_is_array(enc) && json_array_size(enc) > 0, "fixture: \"encode\" missing or empty");
    CHECK(json_is_array(dec) && json_array_size(dec) > 0, "fixture: \"decode\" missing or empty");

    size_t i;
    json_t *c;
    int nspecial_text = 0;
    json_array_foreach(enc, i, c) {
        const json_t *jt = json_object_get(c, "text");
        const json_t *jids = json_object_get(c, "input_ids");
        const json_t *jd = json_object_get(c, "decoded");
        const json_t *jds = json_object_get(c, "decoded_with_special");
        if (!json_is_string(jt) || !json_is_array(jids) || !json_is_string(jd) ||
            !json_is_string(jds)) {
            CHECK(0, "fixture encode[%zu]: malformed case", i);
            continue;
        }
        const char *text = json_string_value(jt);
        size_t tlen = json_string_length(jt);
        size_t nhf;
        int32_t *hf = json_ids(jids, &nhf);
        if (!hf) { CHECK(0, "oom"); continue; }

        /* HF splits literal special-token text ("[MASK]", "[CLS]", ...) out of the input and
         * encodes it as the special id; pcv_tokenize encodes it as bytes on purpose (the `fill`
         * syntax handles masks itself). Expand such interior special ids to their bytes. */
        size_t cap = nhf * 6 + 2;
        int32_t *want = malloc(cap * sizeof *want);
        size_t nw = 0;
        bool expanded = false;
        for (size_t k = 0; want && k < nhf; k++) {
            int32_t id = hf[k];
            bool interior = k > 0 && k + 1 < nhf;
            if (interior && id >= 0 && id < 6) {
                for (const char *p = special_text[id]; *p; p++)
                    want[nw++] = (unsigned char)*p + 6;
                expanded = true;
            } else {
                want[nw++] = id;
            }
        }
        nspecial_text += expanded;
        int32_t *got = malloc((tlen + 2) * sizeof *got);
        size_t ng = got ? pcv_tokenize(text, tlen, true, got, tlen + 2) : 0;
        CHECK(want && got && ng == nw && ids_eq(got, want, nw),
              "fixture encode[%zu] \"%s\": ids differ (ours %zu, HF %zu%s)", i,
              esc(text, tlen), ng, nhf, expanded ? ", specials expanded" : "");

        char *d = decode_sanitized(hf, nhf, true);
        CHECK(d && str_matches(d, jd), "fixture encode[%zu]: decoded \"%s\", want \"%s\"", i,
              d ? esc(d, strlen(d)) : "(null)", esc(json_string_value(jd), json_string_length(jd)));
        free(d);
        d = decode_sanitized(hf, nhf, false);
        CHECK(d && str_matches(d, jds),
              "fixture encode[%zu]: decoded_with_special \"%s\", want \"%s\"", i,
              d ? esc(d, strlen(d)) : "(null)",
              esc(json_string_value(jds), json_string_length(jds)));
        free(d);
        free(got);
        free(want);
        free(hf);
    }
    if (nspecial_text)
        printf("note: %d fixture text(s) contain special-token text; HF ids expanded to bytes\n",
               nspecial_text);

    json_array_foreach(dec, i, c) {
        const json_t *jids = json_object_get(c, "ids");
        const json_t *jd = json_object_get(c, "decoded");
        if (!json_is_array(jids) || !json_is_string(jd)) {
            CHECK(0, "fixture decode[%zu]: malformed case", i);
            continue;
        }
        size_t n;
        int32_t *ids = json_ids(jids, &n);
        char *d = ids ? decode_sanitized(ids, n, true) : NULL;
        CHECK(d && str_matches(d, jd), "fixture decode[%zu]: decoded \"%s\", want \"%s\"", i,
              d ? esc(d, strlen(d)) : "(null)", esc(json_string_value(jd), json_string_length(jd)));
        free(d);
        free(ids);
    }
    printf("fixture %s: %zu encode, %zu decode cases\n", path, json_array_size(enc),
           json_array_size(dec));
    json_decref(root);
}

/* Issue 12: 13 bytes of "[MASK:65536]" expand to 64 KiB; a line of them must be refused by the
 * text_bytes limit before it is expanded, not grow without bound. */
static void test_mask_amplification(void)
{
    size_t reps = 100000; /* 1.3 MB of text, 6.5 GB expanded */
    char *t = malloc(reps * 12 + 1);
    for (size_t i = 0; t && i < reps; i++)
        memcpy(t + 12 * i, "[MASK:65536]", 12);
    if (!t)
        return;
    t[reps * 12] = '\0';
    pcv_masked_text m;
    pcv_error err = {0};
    CHECK(pcv_parse_masked(t, &m, &err) == PCV_ERR_INPUT && strstr(err.msg, "text_bytes = 1048576"),
          "1.3 MB line: %s", err.msg);
    t[12 * 20] = '\0'; /* 20 masks: 1.3 MB expanded */
    CHECK(pcv_parse_masked(t, &m, &err) == PCV_ERR_INPUT && strstr(err.msg, "masks expand the text past 1048576") &&
              strstr(err.msg, "column 193"),
          "20 x [MASK:65536]: %s", err.msg);
    t[12 * 16] = '\0'; /* exactly 1 MiB */
    CHECK(pcv_parse_masked(t, &m, &err) == 0 && m.len == 1048576, "16 x [MASK:65536]: %s", err.msg);
    pcv_masked_text_free(&m);
    pcv_limits l, saved;
    pcv_get_limits(&saved);
    l = saved;
    l.text_bytes = 10;
    pcv_set_limits(&l, &err);
    CHECK(pcv_parse_masked("[MASK:11]", &m, &err) == PCV_ERR_INPUT && strstr(err.msg, "text_bytes = 10"),
          "lowered limit: %s", err.msg);
    CHECK(pcv_parse_masked("0123456789a", &m, &err) == PCV_ERR_INPUT && strstr(err.msg, "11 bytes"),
          "lowered limit, plain text: %s", err.msg);
    pcv_set_limits(&saved, &err);
    free(t);
}

int main(void)
{
    test_mask_amplification();
    test_tokenize();
    test_detokenize();
    test_sanitize();
    test_masked();
    test_fixture();
    return TEST_DONE();
}
