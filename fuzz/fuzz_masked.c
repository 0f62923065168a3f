/* libFuzzer target: the byte tokenizer and the masked-text syntax of `perceiver-cl fill`
 * ([MASK], [MASK:N], [MASK*N], {text}, escapes; the text_bytes limit on what masks expand to),
 * then tokenizing, detokenizing and sanitizing what came out. */
#include "perceiver/perceiver.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    pcv_masked_text m;
    pcv_error err;
    if (pcv_parse_masked(text, &m, &err) == 0) {
        size_t need = pcv_tokenize((const char *)m.bytes, m.len, true, NULL, 0);
        int32_t *ids = malloc((need ? need : 1) * sizeof *ids);
        if (ids) {
            size_t got = pcv_tokenize((const char *)m.bytes, m.len, true, ids, need);
            for (size_t i = 0; i < m.len && i + 1 < got; i++)
                if (m.masked[i])
                    ids[i + 1] = PCV_TOK_MASK;
            char *back = pcv_detokenize(ids, got, (data[0] & 1) != 0);
            if (back) {
                char *clean = pcv_utf8_sanitize(back, strlen(back));
                free(clean);
            }
            free(back);
            free(ids);
        }
        pcv_masked_text_free(&m);
    }
    /* the raw bytes too (invalid UTF-8, NULs) */
    size_t need = pcv_tokenize((const char *)data, size, false, NULL, 0);
    int32_t *ids = malloc((need ? need : 1) * sizeof *ids);
    if (ids) {
        size_t got = pcv_tokenize((const char *)data, size, false, ids, need);
        char *back = pcv_detokenize(ids, got, false);
        free(back);
        free(ids);
    }
    char *clean = pcv_utf8_sanitize((const char *)data, size);
    free(clean);
    free(text);
    return 0;
}
