/* File formats recognised by structure (formats/sniff.h). Safetensors files written by
 * save_pretrained begin with their header length, whose low byte can be 0x80 (about one file in
 * 32: lengths are multiples of 8), the PROTO opcode of a pickle: a single leading byte proves
 * nothing, so every format is checked at both ends. */
#include "formats/sniff.h"

#include "formats/torchzip.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static bool read_at(FILE *f, uint64_t off, unsigned char *buf, size_t n)
{
    return fseeko(f, (off_t)off, SEEK_SET) == 0 && fread(buf, 1, n, f) == n;
}

static bool is_safetensors(FILE *f, const unsigned char *h, size_t n, uint64_t size)
{
    if (n < 9 || size < 10)
        return false;
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--)
        len = len << 8 | h[i];
    if (len < 2 || len > size - 8 || h[8] != '{')
        return false;
    /* the header ends with '}' followed only by space padding */
    unsigned char tail[256];
    uint64_t end = 8 + len; /* one past the header's last byte */
    while (end > 9) {
        size_t k = end - 9 < sizeof tail ? (size_t)(end - 9) : sizeof tail;
        if (!read_at(f, end - k, tail, k))
            return false;
        for (size_t i = k; i-- > 0;) {
            if (tail[i] == '}')
                return true;
            if (tail[i] != ' ')
                return false;
        }
        end -= k;
    }
    return false;
}

static bool is_zip(FILE *f, const unsigned char *h, size_t n, uint64_t size)
{
    if (!pcv_torch_is_zip(h, n) || size < 22)
        return false;
    unsigned char tail[65536 + 22];
    size_t k = size < sizeof tail ? (size_t)size : sizeof tail;
    if (!read_at(f, size - k, tail, k))
        return false;
    for (size_t i = k - 22 + 1; i-- > 0;)
        if (memcmp(tail + i, "PK\5\6", 4) == 0)
            return true;
    return false;
}

static bool is_pickle(FILE *f, const unsigned char *h, size_t n, uint64_t size)
{
    unsigned char last;
    return n >= 2 && h[0] == 0x80 && h[1] >= 2 && h[1] <= 5 && size >= 3 && read_at(f, size - 1, &last, 1) &&
           last == '.';
}

static void describe(char *what, size_t cap, const char *s)
{
    if (what && cap)
        snprintf(what, cap, "%s", s);
}

pcv_file_kind pcv_sniff_file(const char *path, char *what, size_t cap)
{
    describe(what, cap, "");
    FILE *f = fopen(path, "rb");
    if (!f)
        return PCV_FILE_UNKNOWN;
    unsigned char h[64] = {0};
    size_t n = fread(h, 1, sizeof h, f);
    struct stat sb;
    uint64_t size = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
    pcv_file_kind k = PCV_FILE_UNKNOWN;
    if (pcv_torch_is_legacy(h, n))
        k = PCV_FILE_TORCH_LEGACY;
    else if (is_safetensors(f, h, n, size))
        k = PCV_FILE_SAFETENSORS;
    else if (is_zip(f, h, n, size))
        k = PCV_FILE_TORCH_ZIP;
    else if (is_pickle(f, h, n, size))
        k = PCV_FILE_PICKLE;
    fclose(f);
    if (k == PCV_FILE_UNKNOWN) {
        size_t i = 0;
        while (i < n && (h[i] == ' ' || h[i] == '\n' || h[i] == '\r' || h[i] == '\t'))
            i++;
        if (i < n && h[i] == '{')
            k = PCV_FILE_JSON;
    }
    static const char *const names[] = {
        [PCV_FILE_UNKNOWN] = "", [PCV_FILE_SAFETENSORS] = "a safetensors file",
        [PCV_FILE_TORCH_LEGACY] = "a legacy PyTorch file", [PCV_FILE_TORCH_ZIP] = "a zip archive (PyTorch)",
        [PCV_FILE_PICKLE] = "a pickle", [PCV_FILE_JSON] = "JSON text"};
    describe(what, cap, k == PCV_FILE_UNKNOWN && size == 0 && n == 0 ? "an empty file" : names[k]);
    return k;
}
