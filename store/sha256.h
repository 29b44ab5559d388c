/*
 * sha256.h - SHA-256 (FIPS 180-4), which names cached objects: a store key is
 * the hash of bucket and object name, fixed-size and short enough for LMDB.
 */
#ifndef LARDER_STORE_SHA256_H
#define LARDER_STORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256 {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    unsigned char block[64];
    size_t used; /* bytes waiting in block */
} sha256_t;

void sha256_init(sha256_t *ctx);
void sha256_update(sha256_t *ctx, const void *data, size_t len);
void sha256_final(sha256_t *ctx, uint8_t digest[32]);

#endif
