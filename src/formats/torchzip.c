/* PyTorch checkpoint reader: ZIP container, torch's data.pkl, storages; legacy format too.
 * See torchzip.h and shared/spec/checkpoint-formats.md section 6. */
#include "formats/torchzip.h"
#include "util/error.h"
#include "util/limits.h"

#include <zlib.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ---- ZIP ---------------------------------------------------------------------------------- */

/* Fuzzing builds accept CRC mismatches (still computing them), or the fuzzer could not get past
 * any checksum; libFuzzer's convention defines this macro. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define PCV_FUZZING 1
#else
#define PCV_FUZZING 0
#endif

typedef struct zip_span {
    uint64_t start, end; /* local header .. end of data (and data descriptor) */
    size_t index;
} zip_span;

static int cmp_span(const void *a, const void *b)
{
    const zip_span *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

static int cmp_entry(const void *a, const void *b)
{
    const pcv_zip_entry *x = a, *y = b;
    size_t n = x->namelen < y->namelen ? x->namelen : y->namelen;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->namelen > y->namelen) - (x->namelen < y->namelen);
}

/* Values from the ZIP64 extended-information extra field (id 1) replace saturated 32-bit
 * fields, in the order uncompressed size, compressed size, local header offset. */
static int zip64_extra(const unsigned char *ex, size_t exlen, uint64_t *usize, uint64_t *csize,
                       uint64_t *off)
{
    size_t i = 0;
    while (exlen - i >= 4) {
        uint16_t id = le16(ex + i), n = le16(ex + i + 2);
        if (n > exlen - i - 4)
            return -1;
        if (id == 1) {
            const unsigned char *p = ex + i + 4;
            size_t left = n;
            uint64_t *f[3] = {usize, csize, off};
            for (int k = 0; k < 3; k++)
                if (*f[k] == 0xffffffffu) {
                    if (left < 8)
                        return -1;
                    *f[k] = le64(p);
                    p += 8;
                    left -= 8;
                }
            return 0;
        }
        i += 4 + (size_t)n;
    }
    return 0;
}

int pcv_zip_open(pcv_zip *z, const unsigned char *buf, size_t len, const char *name, pcv_error *err)
{
    memset(z, 0, sizeof *z);
    if (len < 22)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: too short for a ZIP archive", name);
    /* End of central directory: scan back over at most a 64 KiB comment */
    size_t eocd = SIZE_MAX;
    size_t lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t i = len - 22 + 1; i-- > lo;)
        if (memcmp(buf + i, "PK\5\6", 4) == 0) {
            eocd = i;
            break;
        }
    if (eocd == SIZE_MAX)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP end-of-central-directory record not found "
                             "(truncated file?)", name);
    const unsigned char *e = buf + eocd;
    uint64_t count = le16(e + 10), cd_size = le32(e + 12), cd_off = le32(e + 16);
    if (count == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
        /* ZIP64: locator just before the EOCD points at the ZIP64 EOCD record */
        if (eocd < 20 || memcmp(buf + eocd - 20, "PK\6\7", 4) != 0)
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP64 locator missing", name);
        uint64_t z64 = le64(buf + eocd - 20 + 8);
        if (z64 > len || len - z64 < 56 || memcmp(buf + z64, "PK\6\6", 4) != 0)
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP64 end record offset %" PRIu64
                                 " is out of bounds or invalid", name, z64);
        count = le64(buf + z64 + 32);
        cd_size = le64(buf + z64 + 40);
        cd_off = le64(buf + z64 + 48);
    }
    if (cd_off > len || cd_size > len - cd_off)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP central directory [%" PRIu64 ", +%" PRIu64
                             "] lies outside the %zu-byte file", name, cd_off, cd_size, len);
    if (count > cd_size / 46)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP declares %" PRIu64 " entries, more than "
                             "its central directory can hold", name, count);
    if (count > (uint64_t)pcv_limits_now()->archive_entries)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: ZIP archive of %" PRIu64 " entries, over %s", name,
                             count, PCV_LIMIT_TEXT("archive_entries"));
    z->entries = calloc(count ? (size_t)count : 1, sizeof *z->entries);
    zip_span *spans = calloc(count ? (size_t)count : 1, sizeof *spans);
    if (!z->entries || !spans) {
        free(spans);
        pcv_zip_close(z);
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", name);
    }
    const unsigned char *p = buf + cd_off, *end = p + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 46 || memcmp(p, "PK\1\2", 4) != 0) {
            free(spans);
            pcv_zip_close(z);
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP central directory entry %" PRIu64
                                 " is corrupt", name, i);
        }
        uint16_t flags = le16(p + 8), method = le16(p + 10);
        uint32_t crc = le32(p + 16);
        uint64_t csize = le32(p + 20), usize = le32(p + 24), off = le32(p + 42);
        size_t nl = le16(p + 28), xl = le16(p + 30), cl = le16(p + 32);
        if ((size_t)(end - p) - 46 < nl + xl + cl) {
            free(spans);
            pcv_zip_close(z);
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP central directory entry %" PRIu64
                                 " runs past the directory", name, i);
        }
        const unsigned char *ename = p + 46;
        if (zip64_extra(p + 46 + nl, xl, &usize, &csize, &off) != 0) {
            free(spans);
            pcv_zip_close(z);
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: bad ZIP64 extra field", name);
        }
        char shown[128];
        snprintf(shown, sizeof shown, "%.*s", (int)(nl < 100 ? nl : 100), (const char *)ename);
        if (flags & 1) {
            free(spans);
            pcv_zip_close(z);
            return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: ZIP entry '%s' is encrypted", name, shown);
        }
        /* local header: its own name and extra lengths decide where the data start */
        if (off > len || len - off < 30 || memcmp(buf + off, "PK\3\4", 4) != 0) {
            free(spans);
            pcv_zip_close(z);
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP entry '%s': local header offset %" PRIu64
                                 " is out of bounds or invalid", name, shown, off);
        }
        uint64_t data = off + 30 + le16(buf + off + 26) + le16(buf + off + 28);
        if (data > len || csize > len - data) {
            free(spans);
            pcv_zip_close(z);
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP entry '%s': data [%" PRIu64 ", +%" PRIu64
                                 "] lie outside the %zu-byte file (truncated?)", name, shown, data,
                                 csize, len);
        }
        /* the local header must describe the same entry as the central directory */
        const unsigned char *lh = buf + off;
        size_t lnl = le16(lh + 26);
        if (lnl != nl || memcmp(lh + 30, ename, nl) != 0) {
            char lshown[128];
            snprintf(lshown, sizeof lshown, "%.*s", (int)(lnl < 100 ? lnl : 100), (const char *)lh + 30);
            free(spans);
            pcv_zip_close(z);
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP entry '%s': its local header names it '%s' "
                                 "(corrupt or forged archive)", name, shown, lshown);
        }
        uint64_t extent = data + csize; /* end of the entry's bytes, data descriptor included */
        uint32_t lcrc = le32(lh + 14);
        uint16_t lflags = le16(lh + 6);
        bool have_lcrc = !(lflags & 8);
        if (lflags & 8) { /* sizes and CRC follow the data: [PK\7\8] crc csize usize (8-byte sizes in ZIP64) */
            uint64_t q = data + csize;
            if (q <= len && len - q >= 4 && memcmp(buf + q, "PK\7\10", 4) == 0)
                q += 4;
            size_t dl = usize > 0xfffffffeu || csize > 0xfffffffeu ? 20 : 12;
            if (q <= len && len - q >= 4) {
                lcrc = le32(buf + q);
                have_lcrc = true;
            }
            extent = q + dl <= len ? q + dl : len;
        }
        if (method == 0 && csize == usize) { /* stored: the bytes must be what the archive says */
            uint32_t got = (uint32_t)crc32(0L, Z_NULL, 0);
            const unsigned char *d = buf + data;
            for (uint64_t left = csize; left > 0;) { /* zlib takes 32-bit lengths */
                uInt n = left > (1u << 30) ? (1u << 30) : (uInt)left;
                got = (uint32_t)crc32(got, d, n);
                d += n;
                left -= n;
            }
            if ((got != crc || (have_lcrc && lcrc != crc)) && !PCV_FUZZING) {
                free(spans);
                pcv_zip_close(z);
                if (got != crc)
                    return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP entry '%s': CRC-32 mismatch (the data give "
                                         "%08x, the archive says %08x): the file is corrupt", name, shown, got, crc);
                return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP entry '%s': the local CRC-32 %08x differs from "
                                     "the central directory's %08x: the file is corrupt", name, shown, lcrc, crc);
            }
        }
        spans[z->count] = (zip_span){off, extent, z->count};
        pcv_zip_entry *en = &z->entries[z->count++];
        en->name = ename;
        en->namelen = nl;
        en->size = (size_t)csize;
        /* compressed entries stay listed (with no data) so that asking for one gives a clear
         * error; torch writes every entry stored */
        en->data = method == 0 && csize == usize ? buf + data : NULL;
        p += 46 + nl + xl + cl;
    }
    /* entries may not overlap (an overlapping "zip bomb" makes one block of data count for
     * many entries; stored entries never overlap) */
    qsort(spans, z->count, sizeof *spans, cmp_span);
    for (size_t i = 1; i < z->count; i++)
        if (spans[i].start < spans[i - 1].end) {
            char a[128], b[128];
            const pcv_zip_entry *x = &z->entries[spans[i - 1].index], *y = &z->entries[spans[i].index];
            snprintf(a, sizeof a, "%.*s", (int)(x->namelen < 100 ? x->namelen : 100), (const char *)x->name);
            snprintf(b, sizeof b, "%.*s", (int)(y->namelen < 100 ? y->namelen : 100), (const char *)y->name);
            free(spans);
            pcv_zip_close(z);
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP entries '%s' and '%s' overlap (corrupt or forged "
                                 "archive)", name, a, b);
        }
    free(spans);
    qsort(z->entries, z->count, sizeof *z->entries, cmp_entry);
    return 0;
}

const pcv_zip_entry *pcv_zip_find(const pcv_zip *z, const char *name, size_t namelen)
{
    pcv_zip_entry key = {.name = (const unsigned char *)name, .namelen = namelen};
    return z->count ? bsearch(&key, z->entries, z->count, sizeof key, cmp_entry) : NULL;
}

void pcv_zip_close(pcv_zip *z)
{
    free(z->entries);
    memset(z, 0, sizeof *z);
}

/* ---- torch ------------------------------------------------------------------------------ */

/* The legacy magic number 0x1950a86a20f9469cfc6c as a protocol-2 pickle: PROTO 2, LONG1 10. */
static const unsigned char legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                             0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

bool pcv_torch_is_zip(const unsigned char *buf, size_t len)
{
    return len >= 4 && memcmp(buf, "PK\3\4", 4) == 0;
}

bool pcv_torch_is_legacy(const unsigned char *buf, size_t len)
{
    return len >= sizeof legacy_magic && memcmp(buf, legacy_magic, sizeof legacy_magic) == 0;
}

static void shown_key(char *out, size_t cap, const pk_storage *st)
{
    size_t n = st->keylen < cap - 1 ? st->keylen : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = st->key[i] >= 0x20 && st->key[i] < 0x7f ? (char)st->key[i] : '?';
    out[n] = '\0';
}

static int parse_zip(pcv_torch_file *f, const unsigned char *buf, size_t len, const char *name,
                     pcv_error *err)
{
    int rc = pcv_zip_open(&f->zip, buf, len, name, err);
    if (rc)
        return rc;
    snprintf(f->format, sizeof f->format, "pytorch-zip");
    /* every record lives under one folder; find data.pkl in it */
    const pcv_zip_entry *pkl = NULL;
    for (size_t i = 0; i < f->zip.count && !pkl; i++) {
        const pcv_zip_entry *e = &f->zip.entries[i];
        const unsigned char *slash = memchr(e->name, '/', e->namelen);
        if (slash && (size_t)(e->name + e->namelen - slash) == 9 && memcmp(slash, "/data.pkl", 9) == 0 &&
            !memchr(e->name, '/', (size_t)(slash - e->name)))
            pkl = e;
    }
    if (!pkl)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP archive has no <folder>/data.pkl (not a "
                             "torch.save file)", name);
    if (!pkl->data)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: data.pkl is compressed (only stored "
                             "entries are supported; re-save with torch.save)", name);
    size_t plen = pkl->namelen - 8; /* "<dir>/" */
    char rec[512];
    if (plen + 64 > sizeof rec)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: ZIP folder name too long", name);
    memcpy(rec, pkl->name, plen);

    bool big = false;
    memcpy(rec + plen, "byteorder", 9);
    const pcv_zip_entry *bo = pcv_zip_find(&f->zip, rec, plen + 9);
    if (bo && bo->data) {
        if (bo->size == 3 && memcmp(bo->data, "big", 3) == 0)
            big = true;
        else if (!(bo->size == 6 && memcmp(bo->data, "little", 6) == 0))
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: bad byteorder record", name);
    }

    pk_options opt = {.name = name, .allow_persistent = true};
    if ((rc = pk_load(&f->doc, pkl->data, pkl->size, &opt, err)))
        return rc;
    for (size_t i = 0; i < f->doc.nstorages; i++) {
        pk_storage *st = f->doc.storages[i]->u.st;
        char key[64];
        shown_key(key, sizeof key, st);
        if (st->keylen > sizeof rec - plen - 8 || memchr(st->key, '/', st->keylen))
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: bad storage key '%s'", name, key);
        memcpy(rec + plen, "data/", 5);
        memcpy(rec + plen + 5, st->key, st->keylen);
        const pcv_zip_entry *e = pcv_zip_find(&f->zip, rec, plen + 5 + st->keylen);
        if (!e)
            return pcv_set_error(err, PCV_ERR_MISSING, "%s: storage record data/%s is missing",
                                 name, key);
        if (!e->data)
            return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: storage record data/%s is "
                                 "compressed (only stored entries are supported)", name, key);
        if (e->size != st->nbytes)
            return pcv_set_error(err, PCV_ERR_FORMAT, "%s: storage record data/%s has %zu bytes "
                                 "but the pickle declares %" PRId64 " elements of %zu bytes",
                                 name, key, e->size, st->numel, pcv_dtype_size(st->dtype));
        st->data = e->data;
        st->big_endian = big;
    }
    return pk_resolve_tensors(&f->doc, err);
}

static int sub_pickle(pk_doc *d, const unsigned char *buf, size_t len, size_t *pos, const char *name,
                      bool persistent, pcv_error *err)
{
    pk_options opt = {.name = name, .allow_persistent = persistent};
    int rc = pk_load(d, buf + *pos, len - *pos, &opt, err);
    if (!rc)
        *pos += d->end;
    return rc;
}

static int parse_legacy(pcv_torch_file *f, const unsigned char *buf, size_t len, const char *name,
                        pcv_error *err)
{
    snprintf(f->format, sizeof f->format, "pytorch-legacy");
    size_t pos = 0;
    pk_doc tmp;
    int rc = sub_pickle(&tmp, buf, len, &pos, name, false, err); /* magic (already matched) */
    if (rc)
        return rc;
    pk_doc_free(&tmp);
    if ((rc = sub_pickle(&tmp, buf, len, &pos, name, false, err)))
        return rc;
    bool ok = tmp.root->kind == PK_INT && tmp.root->u.i == 1001;
    pk_doc_free(&tmp);
    if (!ok)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: legacy torch protocol version is not 1001", name);
    if ((rc = sub_pickle(&tmp, buf, len, &pos, name, false, err)))
        return rc;
    pk_obj *le = pk_dict_get(tmp.root, "little_endian");
    bool big = le && le->kind == PK_BOOL && !le->u.b;
    pk_doc_free(&tmp);
    if ((rc = sub_pickle(&f->doc, buf, len, &pos, name, true, err)))
        return rc;
    if ((rc = sub_pickle(&tmp, buf, len, &pos, name, false, err)))
        return rc;
    if (tmp.root->kind != PK_LIST) {
        pk_doc_free(&tmp);
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: legacy storage key list is missing", name);
    }
    /* storages follow in the order of the key list: int64 element count, then the bytes */
    for (size_t k = 0; k < tmp.root->u.seq.n; k++) {
        const pk_obj *key = tmp.root->u.seq.v[k];
        if (key->kind != PK_STR && key->kind != PK_BYTES) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: legacy storage key is not a string", name);
            break;
        }
        pk_storage *first = NULL;
        for (size_t i = 0; i < f->doc.nstorages; i++) {
            pk_storage *st = f->doc.storages[i]->u.st;
            if (st->keylen == key->u.s.n && memcmp(st->key, key->u.s.p, st->keylen) == 0) {
                if (!first)
                    first = st;
                else if (st->dtype != first->dtype || st->numel != first->numel) {
                    rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: storage used with two types", name);
                    break;
                }
            }
        }
        if (rc)
            break;
        if (len - pos < 8) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: truncated before storage %zu of %zu",
                               name, k + 1, tmp.root->u.seq.n);
            break;
        }
        uint64_t numel = le64(buf + pos);
        pos += 8;
        size_t elem = first ? pcv_dtype_size(first->dtype) : 1;
        if (first && numel != (uint64_t)first->numel) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: storage %zu holds %" PRIu64 " elements but "
                               "the pickle declares %" PRId64, name, k + 1, numel, first->numel);
            break;
        }
        if (!first) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: storage key %zu is not used by any tensor", name, k + 1);
            break;
        }
        if (numel > (len - pos) / elem) {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: storage %zu (%" PRIu64 " elements of %zu "
                               "bytes) runs past the end of the file", name, k + 1, numel, elem);
            break;
        }
        for (size_t i = 0; i < f->doc.nstorages; i++) {
            pk_storage *st = f->doc.storages[i]->u.st;
            if (st->keylen == key->u.s.n && memcmp(st->key, key->u.s.p, st->keylen) == 0) {
                st->data = buf + pos;
                st->big_endian = big;
            }
        }
        pos += (size_t)numel * elem;
    }
    pk_doc_free(&tmp);
    if (rc)
        return rc;
    return pk_resolve_tensors(&f->doc, err);
}

int pcv_torch_parse(pcv_torch_file *f, const unsigned char *buf, size_t len, const char *name,
                    pcv_error *err)
{
    memset(f, 0, sizeof *f);
    int rc;
    if (pcv_torch_is_zip(buf, len))
        rc = parse_zip(f, buf, len, name, err);
    else if (pcv_torch_is_legacy(buf, len))
        rc = parse_legacy(f, buf, len, name, err);
    else
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: not a PyTorch checkpoint", name);
    if (!rc && !pk_is_mapping(f->doc.root))
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: the saved object is a %s, not a state dict",
                           name, pk_kind_name(f->doc.root->kind));
    if (rc)
        pcv_torch_close(f);
    return rc;
}

void pcv_torch_close(pcv_torch_file *f)
{
    pk_doc_free(&f->doc);
    pcv_zip_close(&f->zip);
}
