/* SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104): the keyed hash that authenticates the
 * entries of the compiled-kernel cache (a modified entry is rebuilt, never loaded). */
#ifndef PCV_SHA256_H
#define PCV_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pcv_sha256 {
    uint32_t h[8];
    uint64_t len;         /* bytes hashed so far */
    unsigned char buf[64];
    size_t nbuf;
} pcv_sha256;

void pcv_sha256_init(pcv_sha256 *s);
void pcv_sha256_update(pcv_sha256 *s, const void *data, size_t n);
void pcv_sha256_final(pcv_sha256 *s, unsigned char out[32]);

void pcv_hmac_sha256(const unsigned char *key, size_t keylen, const void *data, size_t n, unsigned char out[32]);
/* Compares two 32-byte tags in constant time. */
bool pcv_tag_equal(const unsigned char a[32], const unsigned char b[32]);

#endif
