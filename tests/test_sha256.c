/* SHA-256 and HMAC-SHA-256 of the kernel cache (src/util/sha256.c) against the test vectors of
 * FIPS 180-4 (NIST's examples) and RFC 4231. */
#include "testutil.h"
#include "util/sha256.h"

static void hex(const unsigned char *d, char *out)
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void sha(const void *msg, size_t n, const char *want)
{
    pcv_sha256 s;
    unsigned char d[32];
    char h[65];
    pcv_sha256_init(&s);
    /* fed in uneven pieces, to cover the buffering */
    const unsigned char *p = msg;
    for (size_t off = 0, step = 1; off < n; off += step, step = step * 3 + 1)
        pcv_sha256_update(&s, p + off, step < n - off ? step : n - off);
    pcv_sha256_final(&s, d);
    hex(d, h);
    CHECK(!strcmp(h, want), "sha256 of %zu bytes: %s, want %s", n, h, want);
}

static void hmac(const void *key, size_t kn, const char *msg, const char *want)
{
    unsigned char d[32];
    char h[65];
    pcv_hmac_sha256(key, kn, msg, strlen(msg), d);
    hex(d, h);
    CHECK(!strcmp(h, want), "hmac: %s, want %s", h, want);
}

int main(void)
{
    sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha(m2, strlen(m2), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sha(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
    unsigned char k1[20];
    memset(k1, 0x0b, sizeof k1);
    hmac(k1, sizeof k1, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    hmac("Jefe", 4, "what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    unsigned char k6[131];
    memset(k6, 0xaa, sizeof k6);
    hmac(k6, sizeof k6, "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    unsigned char x[32] = {0}, y[32] = {0};
    CHECK(pcv_tag_equal(x, y), "equal tags");
    y[31] = 1;
    CHECK(!pcv_tag_equal(x, y), "different tags");
    return TEST_DONE();
}
