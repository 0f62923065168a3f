/* The --json writer (jsonw.h). */
#include "cli/jsonw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void jw_init(jw *w, FILE *f, int indent)
{
    memset(w, 0, sizeof *w);
    w->f = f;
    w->indent = indent;
}

static void newline(jw *w)
{
    if (!w->indent)
        return;
    fputc('\n', w->f);
    for (int i = 0; i < w->depth * w->indent; i++)
        fputc(' ', w->f);
}

/* before any value: the comma and line break it needs */
static void value_start(jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth > 0) {
        if (w->need_comma[w->depth])
            fputc(',', w->f);
        newline(w);
    }
    w->need_comma[w->depth] = true;
}

static void begin(jw *w, char c)
{
    value_start(w);
    fputc(c, w->f);
    if (w->depth < 63)
        w->depth++;
    w->need_comma[w->depth] = false;
}

static void finish(jw *w, char c)
{
    bool empty = !w->need_comma[w->depth];
    if (w->depth > 0)
        w->depth--;
    if (!empty)
        newline(w);
    fputc(c, w->f);
}

void jw_object(jw *w) { begin(w, '{'); }
void jw_object_end(jw *w) { finish(w, '}'); }
void jw_array(jw *w) { begin(w, '['); }
void jw_array_end(jw *w) { finish(w, ']'); }

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if s[0] does not start one. */
static size_t utf8_valid(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min, cp;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static void string(jw *w, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    FILE *f = w->f;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = utf8_valid(s + i, n - i);
        if (len == 0) { /* U+FFFD for each byte of an invalid sequence */
            fputs("\xEF\xBF\xBD", f);
            i++;
            continue;
        }
        if (len > 1) {
            fwrite(s + i, 1, len, f);
        } else if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc((int)c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c < 0x20 || c == 0x7F) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc((int)c, f);
        }
        i += len;
    }
    fputc('"', f);
}

void jw_key(jw *w, const char *key)
{
    value_start(w);
    string(w, key, strlen(key));
    fputs(w->indent ? ": " : ":", w->f);
    w->after_key = true;
}

void jw_text(jw *w, const char *s, size_t n)
{
    value_start(w);
    string(w, s, n);
}

void jw_str(jw *w, const char *s)
{
    if (!s) {
        jw_null(w);
        return;
    }
    jw_text(w, s, strlen(s));
}

bool jw_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = utf8_valid((const unsigned char *)s + i, n - i);
        if (!len)
            return false;
        i += len;
    }
    return true;
}

void jw_path(jw *w, const char *key, const char *path)
{
    size_t n = strlen(path);
    jw_key(w, key);
    jw_text(w, path, n);
    if (jw_utf8_valid(path, n))
        return;
    char k[128];
    snprintf(k, sizeof k, "%s_bytes", key);
    jw_key(w, k);
    value_start(w);
    fputc('"', w->f);
    for (size_t i = 0; i < n; i++)
        fprintf(w->f, "%02x", (unsigned char)path[i]);
    fputc('"', w->f);
}

void jw_int(jw *w, long long v)
{
    value_start(w);
    fprintf(w->f, "%lld", v);
}

void jw_format_float(char *buf, size_t cap, float v)
{
    if (!isfinite(v)) {
        snprintf(buf, cap, "null");
        return;
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, cap, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
}

void jw_format_double(char *buf, size_t cap, double v)
{
    if (!isfinite(v)) {
        snprintf(buf, cap, "null");
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            break;
    }
}

void jw_float(jw *w, float v)
{
    char b[32];
    jw_format_float(b, sizeof b, v);
    value_start(w);
    fputs(b, w->f);
}

void jw_double(jw *w, double v)
{
    char b[40];
    jw_format_double(b, sizeof b, v);
    value_start(w);
    fputs(b, w->f);
}

void jw_bool(jw *w, bool v)
{
    value_start(w);
    fputs(v ? "true" : "false", w->f);
}

void jw_null(jw *w)
{
    value_start(w);
    fputs("null", w->f);
}

void jw_end(jw *w)
{
    fputc('\n', w->f);
    w->depth = 0;
    w->need_comma[0] = false;
    w->after_key = false;
}
