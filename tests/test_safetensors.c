/* safetensors reader/writer: round trips, conversions, and one test per malformed input. */
#include "formats/formats.h"
#include "perceiver/perceiver.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[1024]; /* private scratch directory under tu_tmpdir() */

static const char *tmp_path(const char *name)
{
    static char buf[4][1200];
    static int slot;
    char *p = buf[slot++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", g_dir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(2);
    }
    if (n && fwrite(data, 1, n, f) != n)
        exit(2);
    fclose(f);
}

/* Hand-written safetensors file: header length field (hlen), header text, data_len bytes. */
static void write_st_raw(const char *path, uint64_t hlen, const char *header, size_t data_len)
{
    size_t jl = strlen(header);
    size_t total = 8 + jl + data_len;
    unsigned char *buf = calloc(total, 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, header, jl);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + jl + i] = (unsigned char)(0x40 + i % 7);
    write_bytes(path, buf, total);
    free(buf);
}

static void write_st(const char *path, const char *header, size_t data_len)
{
    write_st_raw(path, strlen(header), header, data_len);
}

static int count_tmp_files(void)
{
    int n = 0;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp."))
            n++;
    if (d)
        closedir(d);
    return n;
}

/* Opens `name`, expects failure with `code` and a message naming the file and `needle`. */
static void expect_bad(const char *name, pcv_status code, const char *needle)
{
    const char *path = tmp_path(name);
    pcv_safetensors st;
    pcv_error err = {0};
    int rc = pcv_st_map(&st, path, &err);
    CHECK(rc == (int)code && err.code == code, "%s: expected %s, got rc=%d (%s)", name,
          pcv_status_name(code), rc, err.msg);
    CHECK(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", name, err.msg);
    if (needle)
        CHECK(strstr(err.msg, needle) != NULL, "%s: message lacks '%s': %s", name, needle, err.msg);
    if (getenv("PCV_TEST_VERBOSE"))
        printf("%-28s %s\n", name, err.msg);
    if (rc == 0)
        pcv_st_unmap(&st);
}

/* ---- round trip ----------------------------------------------------------------------------- */

static void test_round_trip(void)
{
    const float f32[6] = {1.0f, -2.5f, 0.0f, -0.0f, 1e-30f, 3.4e38f};
    const uint16_t f16[8] = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x7BFF, 0x7C00, 0xFC00, 0x7E00};
    const float f16_want[7] = {1.0f, -2.0f, 0x1p-24f, 1023 * 0x1p-24f, 65504.0f, INFINITY,
                               -INFINITY};
    const uint16_t bf16[4] = {0x3F80, 0xC040, 0x7F80, 0x0001};
    const float bf16_want[4] = {1.0f, -3.0f, INFINITY, 0x1p-133f};
    const int64_t i64[4] = {0, -1, INT64_MAX, (int64_t)1 << 40};
    const int32_t i32[3] = {-7, 0, 2147483647};
    const uint8_t u8[3] = {0, 200, 255};
    const uint8_t bools[2] = {0, 1};
    const double f64[2] = {0.1, -1e300};
    const float scalar = 42.0f;

    pcv_st_entry e[] = {
        {"layer.f32", PCV_DT_F32, 2, {2, 3}, f32},
        {"a.f16", PCV_DT_F16, 1, {8}, f16},
        {"c.bf16", PCV_DT_BF16, 2, {2, 2}, bf16},
        {"d.i64", PCV_DT_I64, 1, {4}, i64},
        {"e.i32", PCV_DT_I32, 1, {3}, i32},
        {"f.u8", PCV_DT_U8, 1, {3}, u8},
        {"g.bool", PCV_DT_BOOL, 1, {2}, bools},
        {"h.f64", PCV_DT_F64, 1, {2}, f64},
        {"scalar", PCV_DT_F32, 0, {0}, &scalar},
        {"empty", PCV_DT_F32, 2, {0, 4}, NULL},
    };
    int n = (int)(sizeof e / sizeof e[0]);
    const char *path = tmp_path("rt.safetensors");
    pcv_error err = {0};
    int rc = pcv_st_write(path, e, n, &err);
    CHECK(rc == 0, "write: %s", err.msg);
    CHECK(count_tmp_files() == 0, "temporary file left behind");

    pcv_safetensors st;
    rc = pcv_st_map(&st, path, &err);
    CHECK(rc == 0, "open: %s", err.msg);
    if (rc)
        return;
    CHECK(st.count == n, "count %d", st.count);
    for (int i = 1; i < st.count; i++)
        CHECK(strcmp(st.tensors[i - 1].name, st.tensors[i].name) < 0, "not sorted by name");

    /* header: padded to 8, metadata present, data laid out in the given order */
    const unsigned char *m = st.map;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)m[i] << (8 * i);
    CHECK(hlen % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hlen);
    char *hdr = strndup((const char *)m + 8, (size_t)hlen);
    CHECK(strstr(hdr, "\"__metadata__\":{\"format\":\"pt\"}") != NULL, "metadata: %s", hdr);
    CHECK(strstr(hdr, "\"layer.f32\"") < strstr(hdr, "\"a.f16\""), "header key order: %s", hdr);
    free(hdr);
    const unsigned char *prev = NULL;
    for (int i = 0; i < n; i++) {
        const pcv_st_tensor *t = pcv_st_find(&st, e[i].name);
        CHECK(t != NULL, "find %s", e[i].name);
        if (!t)
            continue;
        CHECK(t->dtype == e[i].dtype && t->ndim == e[i].ndim, "%s dtype/ndim", e[i].name);
        for (int d = 0; d < e[i].ndim; d++)
            CHECK(t->shape[d] == e[i].shape[d], "%s shape[%d]", e[i].name, d);
        CHECK(t->nbytes == (size_t)t->numel * pcv_dtype_size(t->dtype), "%s nbytes", e[i].name);
        const unsigned char *p = t->data;
        CHECK(p >= m + 8 + hlen && p + t->nbytes <= m + st.map_size, "%s data in map", e[i].name);
        CHECK(!prev || p >= prev, "%s: data not in entry order", e[i].name);
        prev = p;
        if (t->nbytes)
            CHECK(memcmp(p, e[i].data, t->nbytes) == 0, "%s bytes differ", e[i].name);
    }
    CHECK(pcv_st_find(&st, "nope") == NULL, "found a missing tensor");
    CHECK(pcv_st_find(&st, "") == NULL, "found empty name");

    float out[8];
    const pcv_st_tensor *t = pcv_st_find(&st, "layer.f32");
    CHECK(t && pcv_st_to_f32(t, out, &err) == 0 && memcmp(out, f32, sizeof f32) == 0, "f32 values");
    CHECK(t && t->numel == 6, "f32 numel");

    t = pcv_st_find(&st, "a.f16");
    CHECK(t && pcv_st_to_f32(t, out, &err) == 0, "f16 convert: %s", err.msg);
    for (int i = 0; i < 7; i++)
        CHECK(out[i] == f16_want[i], "f16[%d] = %g, want %g", i, out[i], f16_want[i]);
    CHECK(isnan(out[7]), "f16 nan");
    CHECK(!signbit(out[0]) && signbit(out[1]), "f16 signs");

    t = pcv_st_find(&st, "c.bf16");
    CHECK(t && pcv_st_to_f32(t, out, &err) == 0, "bf16 convert: %s", err.msg);
    for (int i = 0; i < 4; i++)
        CHECK(out[i] == bf16_want[i], "bf16[%d] = %g, want %g", i, out[i], bf16_want[i]);

    int64_t iv[4];
    t = pcv_st_find(&st, "d.i64");
    CHECK(t && pcv_st_to_i64(t, iv, &err) == 0 && memcmp(iv, i64, sizeof i64) == 0, "i64 values");
    CHECK(t && pcv_st_to_f32(t, out, &err) == 0 && out[1] == -1.0f && out[3] == 0x1p40f,
          "i64 -> f32");
    t = pcv_st_find(&st, "e.i32");
    CHECK(t && pcv_st_to_i64(t, iv, &err) == 0 && iv[0] == -7 && iv[2] == 2147483647, "i32");
    t = pcv_st_find(&st, "f.u8");
    CHECK(t && pcv_st_to_i64(t, iv, &err) == 0 && iv[1] == 200 && iv[2] == 255, "u8");
    t = pcv_st_find(&st, "g.bool");
    CHECK(t && pcv_st_to_i64(t, iv, &err) == 0 && iv[0] == 0 && iv[1] == 1, "bool");
    t = pcv_st_find(&st, "h.f64");
    CHECK(t && pcv_st_to_f32(t, out, &err) == 0 && out[0] == 0.1f && out[1] == -INFINITY,
          "f64 -> f32");
    t = pcv_st_find(&st, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1 && pcv_st_to_f32(t, out, &err) == 0 &&
              out[0] == 42.0f, "scalar");
    t = pcv_st_find(&st, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0 && pcv_st_to_f32(t, out, &err) == 0, "empty");

    /* floats are refused by the integer conversion, naming the tensor */
    t = pcv_st_find(&st, "layer.f32");
    memset(&err, 0, sizeof err);
    rc = t ? (int)pcv_st_to_i64(t, iv, &err) : -1;
    CHECK(rc == PCV_ERR_UNSUPPORTED && strstr(err.msg, "layer.f32"), "to_i64(F32): %s", err.msg);
    pcv_st_unmap(&st);
    CHECK(st.map == NULL && st.tensors == NULL && st.count == 0, "close resets");

    /* overwriting an existing file works */
    rc = pcv_st_write(path, e, 1, &err);
    CHECK(rc == 0, "overwrite: %s", err.msg);
    rc = pcv_st_map(&st, path, &err);
    CHECK(rc == 0 && st.count == 1, "reopen after overwrite: %s", err.msg);
    if (rc == 0)
        pcv_st_unmap(&st);
}

/* Data starting at an odd file offset: conversions must not rely on alignment. */
static void test_unaligned(void)
{
    /* header padded to 13 bytes of JSON + trailing spaces -> data at offset 8 + odd length */
    const char *hdr = "{\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ";
    CHECK(strlen(hdr) % 2 == 1, "header length should be odd");
    const char *path = tmp_path("unaligned.safetensors");
    size_t jl = strlen(hdr);
    unsigned char buf[256] = {0};
    buf[0] = (unsigned char)jl;
    memcpy(buf + 8, hdr, jl);
    const float v[2] = {1.25f, -7.0f};
    memcpy(buf + 8 + jl, v, sizeof v);
    write_bytes(path, buf, 8 + jl + sizeof v);

    pcv_safetensors st;
    pcv_error err = {0};
    int rc = pcv_st_map(&st, path, &err);
    CHECK(rc == 0, "unaligned open: %s", err.msg);
    if (rc)
        return;
    float out[2];
    const pcv_st_tensor *t = pcv_st_find(&st, "u");
    CHECK(t && ((uintptr_t)t->data & 3) != 0, "data should be unaligned");
    CHECK(t && pcv_st_to_f32(t, out, &err) == 0 && out[0] == 1.25f && out[1] == -7.0f,
          "unaligned values");
    pcv_st_unmap(&st);
}

static void test_valid_edge_cases(void)
{
    pcv_safetensors st;
    pcv_error err = {0};
    const struct {
        const char *name, *hdr;
        size_t data;
        int count;
    } ok[] = {
        {"empty_header.safetensors", "{}", 0, 0},
        {"meta_only.safetensors", "{\"__metadata__\":{\"format\":\"pt\"}}", 0, 0},
        {"whitespace.safetensors",
         " \t\n{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}\r\n  ", 3, 1},
        {"extra_keys.safetensors",
         "{\"a\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4],\"extra\":[1]}}", 4, 1},
        {"zero_size.safetensors",
         "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 2},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const char *path = tmp_path(ok[i].name);
        write_st(path, ok[i].hdr, ok[i].data);
        int rc = pcv_st_map(&st, path, &err);
        CHECK(rc == 0, "%s: %s", ok[i].name, err.msg);
        if (rc == 0) {
            CHECK(st.count == ok[i].count, "%s: count %d", ok[i].name, st.count);
            pcv_st_unmap(&st);
        }
    }
}

/* ---- malformed files ---------------------------------------------------------------------- */

#define T1(name, dt, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_bad_files(void)
{
    write_bytes(tmp_path("short.safetensors"), "\x05\0\0\0\0", 5);
    expect_bad("short.safetensors", PCV_ERR_FORMAT, "too short");

    write_bytes(tmp_path("empty.safetensors"), "", 0);
    expect_bad("empty.safetensors", PCV_ERR_FORMAT, "empty");

    write_st_raw(tmp_path("hlen_beyond.safetensors"), 1000, "{}", 0);
    expect_bad("hlen_beyond.safetensors", PCV_ERR_FORMAT, "header length 1000");

    write_st_raw(tmp_path("hlen_huge.safetensors"), 100000001ull, "{}", 0);
    expect_bad("hlen_huge.safetensors", PCV_ERR_FORMAT, "exceeds");

    write_st_raw(tmp_path("hlen_max.safetensors"), UINT64_MAX, "{}", 0);
    expect_bad("hlen_max.safetensors", PCV_ERR_FORMAT, "header length");

    write_st(tmp_path("not_json.safetensors"), "{not json}", 0);
    expect_bad("not_json.safetensors", PCV_ERR_FORMAT, "not valid JSON");

    write_st(tmp_path("bad_utf8.safetensors"), "{\"\xff\":1}", 0);
    expect_bad("bad_utf8.safetensors", PCV_ERR_FORMAT, "not valid JSON");

    write_st(tmp_path("not_object.safetensors"), "[1,2]", 0);
    expect_bad("not_object.safetensors", PCV_ERR_FORMAT, "not an object");

    write_st(tmp_path("entry_not_object.safetensors"), "{\"w\":[1]}", 0);
    expect_bad("entry_not_object.safetensors", PCV_ERR_FORMAT, "'w'");

    write_st(tmp_path("unknown_dtype.safetensors"), "{" T1("w.x", "Q7", "[2]", 0, 2) "}", 2);
    expect_bad("unknown_dtype.safetensors", PCV_ERR_FORMAT, "'Q7'");
    expect_bad("unknown_dtype.safetensors", PCV_ERR_FORMAT, "'w.x'");

    write_st(tmp_path("fp8.safetensors"), "{" T1("w.x", "F8_E4M3", "[2]", 0, 2) "}", 2);
    expect_bad("fp8.safetensors", PCV_ERR_UNSUPPORTED, "F8_E4M3");

    write_st(tmp_path("no_dtype.safetensors"), "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
    expect_bad("no_dtype.safetensors", PCV_ERR_FORMAT, "dtype");

    write_st(tmp_path("mismatch.safetensors"), "{" T1("x.weight", "F32", "[2,3]", 0, 12) "}", 12);
    expect_bad("mismatch.safetensors", PCV_ERR_FORMAT,
               "tensor 'x.weight': data_offsets [0,12] span 12 bytes but F32 shape [2,3] needs 24");

    write_st(tmp_path("overlap.safetensors"),
             "{" T1("a", "F32", "[2]", 0, 8) "," T1("b", "F32", "[2]", 4, 12) "}", 12);
    expect_bad("overlap.safetensors", PCV_ERR_FORMAT, "overlap");
    expect_bad("overlap.safetensors", PCV_ERR_FORMAT, "'b'");

    write_st(tmp_path("same_range.safetensors"),
             "{" T1("a", "F32", "[2]", 0, 8) "," T1("b", "F32", "[2]", 0, 8) "}", 8);
    expect_bad("same_range.safetensors", PCV_ERR_FORMAT, "overlap");

    write_st(tmp_path("hole.safetensors"),
             "{" T1("a", "F32", "[2]", 0, 8) "," T1("b", "F32", "[2]", 12, 20) "}", 20);
    expect_bad("hole.safetensors", PCV_ERR_FORMAT, "hole of 4 bytes");
    expect_bad("hole.safetensors", PCV_ERR_FORMAT, "'b'");

    write_st(tmp_path("hole_start.safetensors"), "{" T1("a", "F32", "[2]", 4, 12) "}", 12);
    expect_bad("hole_start.safetensors", PCV_ERR_FORMAT, "hole");

    write_st(tmp_path("trailing.safetensors"), "{" T1("a", "F32", "[2]", 0, 8) "}", 10);
    expect_bad("trailing.safetensors", PCV_ERR_FORMAT, "2 trailing bytes");

    write_st(tmp_path("truncated.safetensors"), "{" T1("a", "F32", "[2]", 0, 8) "}", 4);
    expect_bad("truncated.safetensors", PCV_ERR_FORMAT, "truncated");
    expect_bad("truncated.safetensors", PCV_ERR_FORMAT, "'a'");

    write_st(tmp_path("dup.safetensors"),
             "{" T1("dup.w", "F32", "[1]", 0, 4) "," T1("dup.w", "F32", "[1]", 4, 8) "}", 8);
    expect_bad("dup.safetensors", PCV_ERR_FORMAT, "duplicate");
    expect_bad("dup.safetensors", PCV_ERR_FORMAT, "dup.w");

    write_st(tmp_path("neg_shape.safetensors"), "{" T1("n", "F32", "[-1,2]", 0, 8) "}", 8);
    expect_bad("neg_shape.safetensors", PCV_ERR_FORMAT, "negative");
    expect_bad("neg_shape.safetensors", PCV_ERR_FORMAT, "'n'");

    write_st(tmp_path("float_shape.safetensors"), "{" T1("n", "F32", "[2.0]", 0, 8) "}", 8);
    expect_bad("float_shape.safetensors", PCV_ERR_FORMAT, "not an integer");

    write_st(tmp_path("ovf_shape.safetensors"),
             "{" T1("big", "F32", "[4294967296,4294967296,4294967296]", 0, 8) "}", 8);
    expect_bad("ovf_shape.safetensors", PCV_ERR_FORMAT, "overflow");
    expect_bad("ovf_shape.safetensors", PCV_ERR_FORMAT, "'big'");

    write_st(tmp_path("ovf_bytes.safetensors"),
             "{" T1("big", "F64", "[2305843009213693952]", 0, 8) "}", 8);
    expect_bad("ovf_bytes.safetensors", PCV_ERR_FORMAT, "overflow");

    write_st(tmp_path("huge_int.safetensors"),
             "{" T1("big", "F32", "[99999999999999999999]", 0, 8) "}", 8);
    expect_bad("huge_int.safetensors", PCV_ERR_FORMAT, "JSON");

    write_st(tmp_path("too_many_dims.safetensors"),
             "{" T1("d9", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", 1);
    expect_bad("too_many_dims.safetensors", PCV_ERR_UNSUPPORTED, "'d9'");

    write_st(tmp_path("oob.safetensors"),
             "{" T1("far", "F32", "[288230376151711744]", 0, 1152921504606846976) "}", 8);
    expect_bad("oob.safetensors", PCV_ERR_FORMAT, "'far'");

    write_st(tmp_path("neg_off.safetensors"), "{" T1("neg", "U8", "[8]", -8, 0) "}", 8);
    expect_bad("neg_off.safetensors", PCV_ERR_FORMAT, "negative data_offsets");

    write_st(tmp_path("reversed.safetensors"), "{" T1("rev", "U8", "[0]", 8, 0) "}", 8);
    expect_bad("reversed.safetensors", PCV_ERR_FORMAT, "'rev'");

    write_st(tmp_path("bad_offsets.safetensors"),
             "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1);
    expect_bad("bad_offsets.safetensors", PCV_ERR_FORMAT, "data_offsets");

    write_st(tmp_path("bad_meta.safetensors"), "{\"__metadata__\":{\"format\":1}}", 0);
    expect_bad("bad_meta.safetensors", PCV_ERR_FORMAT, "__metadata__");

    expect_bad("does_not_exist.safetensors", PCV_ERR_IO, "cannot open");

    mkdir(tmp_path("a_directory"), 0755);
    expect_bad("a_directory", PCV_ERR_IO, "directory");
    rmdir(tmp_path("a_directory"));
}

/* ---- writer failures ---------------------------------------------------------------------- */

static void test_write_failures(void)
{
    const float v[2] = {1, 2};
    pcv_st_entry e[2] = {{"w", PCV_DT_F32, 1, {2}, v}, {"w", PCV_DT_F32, 1, {2}, v}};
    pcv_error err = {0};

    const char *nodir = tmp_path("no/such/dir/x.safetensors");
    int rc = pcv_st_write(nodir, e, 1, &err);
    CHECK(rc == PCV_ERR_IO && strstr(err.msg, nodir), "missing dir: rc=%d %s", rc, err.msg);
    CHECK(access(nodir, F_OK) != 0, "file created in missing dir");

    const char *dup = tmp_path("dup_write.safetensors");
    rc = pcv_st_write(dup, e, 2, &err);
    CHECK(rc == PCV_ERR_INPUT && strstr(err.msg, "duplicate") && strstr(err.msg, "'w'"),
          "duplicate names: rc=%d %s", rc, err.msg);
    CHECK(access(dup, F_OK) != 0, "file left after failed write");

    /* a failed write leaves an existing file untouched */
    rc = pcv_st_write(dup, e, 1, &err);
    CHECK(rc == 0, "write: %s", err.msg);
    pcv_st_entry bad = {"w", PCV_DT_F32, 1, {-2}, v};
    rc = pcv_st_write(dup, &bad, 1, &err);
    CHECK(rc == PCV_ERR_INPUT, "negative shape accepted: %s", err.msg);
    pcv_st_entry meta = {"__metadata__", PCV_DT_F32, 1, {2}, v};
    rc = pcv_st_write(dup, &meta, 1, &err);
    CHECK(rc == PCV_ERR_INPUT, "__metadata__ name accepted");
    pcv_st_entry nodata = {"w", PCV_DT_F32, 1, {2}, NULL};
    rc = pcv_st_write(dup, &nodata, 1, &err);
    CHECK(rc == PCV_ERR_INPUT, "NULL data accepted");
    pcv_safetensors st;
    rc = pcv_st_map(&st, dup, &err);
    CHECK(rc == 0 && st.count == 1, "old file damaged: %s", err.msg);
    if (rc == 0)
        pcv_st_unmap(&st);

    /* writing into a path that is a directory fails at rename time; the temp file goes away */
    mkdir(tmp_path("dir_target"), 0755);
    rc = pcv_st_write(tmp_path("dir_target"), e, 1, &err);
    CHECK(rc == PCV_ERR_IO, "write onto a directory: rc=%d", rc);
    rmdir(tmp_path("dir_target"));

    CHECK(count_tmp_files() == 0, "temporary files left behind");
}

static void test_dtypes(void)
{
    const char *names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16",
                           "I8",  "U64", "U32",  "U16", "U8",  "BOOL"};
    const size_t sizes[] = {4, 2, 2, 8, 8, 4, 2, 1, 8, 4, 2, 1, 1};
    for (int i = 0; i < 13; i++) {
        pcv_dtype dt = pcv_dtype_from_name(names[i]);
        CHECK(dt != PCV_DT_INVALID && strcmp(pcv_dtype_name(dt), names[i]) == 0, "%s", names[i]);
        CHECK(pcv_dtype_size(dt) == sizes[i], "size of %s", names[i]);
    }
    CHECK(pcv_dtype_from_name("f32") == PCV_DT_INVALID, "case-insensitive dtype");
    CHECK(pcv_dtype_from_name(NULL) == PCV_DT_INVALID, "NULL dtype");
    CHECK(pcv_dtype_size(PCV_DT_INVALID) == 0, "invalid size");
}

/* The public, opaque API: open by pointer, enumerate, query, close; and a weight set over a fixture. */
static void test_public_api(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/mlm_q_shape/model.safetensors", tu_fixtures());
    pcv_error err = {0};
    pcv_safetensors *st = NULL;
    CHECK(pcv_st_open(path, &st, &err) == PCV_OK && st, "pcv_st_open: %s", err.msg);
    if (st) {
        int n = pcv_st_count(st);
        CHECK(n > 10 && !strcmp(pcv_st_path(st), path), "count %d, path %s", n, pcv_st_path(st));
        const pcv_st_tensor *first = pcv_st_tensor_at(st, 0), *last = pcv_st_tensor_at(st, n - 1);
        CHECK(first && last && strcmp(first->name, last->name) < 0, "tensors in name order");
        CHECK(!pcv_st_tensor_at(st, n) && !pcv_st_tensor_at(st, -1), "out-of-range index gives NULL");
        CHECK(pcv_st_find(st, last->name) == last, "find");
        pcv_st_close(st);
    }
    pcv_st_close(NULL);
    snprintf(path, sizeof path, "%s/does-not-exist.safetensors", tu_tmpdir());
    st = (pcv_safetensors *)&err;
    CHECK(pcv_st_open(path, &st, &err) == PCV_ERR_IO && st == NULL && strstr(err.msg, "does-not-exist"),
          "missing file: %s", err.msg);

    snprintf(path, sizeof path, "%s/mlm_q_shape", tu_fixtures());
    pcv_weights *w = NULL;
    CHECK(pcv_weights_open(path, NULL, &w, &err) == PCV_OK && w, "pcv_weights_open: %s", err.msg);
    if (w) {
        pcv_weights_info info;
        pcv_weights_get_info(w, &info);
        CHECK(!strcmp(info.format, "safetensors") && !strcmp(info.architecture, "PerceiverForMaskedLM") &&
                  !info.from_haiku && info.files == 1,
              "info: %s %s %d", info.format, info.architecture, info.files);
        CHECK(pcv_weights_count(w) > 10 && pcv_weights_find(w, pcv_weights_tensor_at(w, 3)->name) ==
                                               pcv_weights_tensor_at(w, 3),
              "weights enumerate and find");
        pcv_weights_close(w);
    }
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "%s/test_safetensors.%ld", tu_tmpdir(), (long)getpid());
    if (mkdir(g_dir, 0755) != 0) {
        fprintf(stderr, "cannot create %s\n", g_dir);
        return 2;
    }
    test_dtypes();
    test_public_api();
    test_round_trip();
    test_unaligned();
    test_valid_edge_cases();
    test_bad_files();
    test_write_failures();
    tu_remove_dir(g_dir);
    return TEST_DONE();
}
