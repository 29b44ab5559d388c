/*
 * token_hash.c - HMAC-SHA256 of tokens under the instance's secret.
 *
 * Tokens are looked up by this HMAC and never kept in clear. Each thread
 * keys its own pair of digest states once (RFC 2104's inner and outer
 * pads), so hashing a token on the hit path is two short digests and no
 * key schedule.
 */
#include <string.h>

#include "auth_internal.h"

#define SHA256_BLOCK 64

static int keyed_state(EVP_MD_CTX *ctx, const uint8_t *secret, size_t secret_len, uint8_t pad)
{
    uint8_t block[SHA256_BLOCK];
    memset(block, pad, sizeof(block));
    for (size_t i = 0; i < secret_len && i < SHA256_BLOCK; i++)
        block[i] ^= secret[i];
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, block, sizeof(block)) == 1;
    OPENSSL_cleanse(block, sizeof(block));
    return ok ? 0 : -1;
}

int token_hasher_init(token_hasher_t *hasher, const uint8_t *secret, size_t secret_len)
{
    hasher->inner = EVP_MD_CTX_new();
    hasher->outer = EVP_MD_CTX_new();
    hasher->scratch = EVP_MD_CTX_new();
    if (hasher->inner == NULL || hasher->outer == NULL || hasher->scratch == NULL ||
        secret_len > SHA256_BLOCK || keyed_state(hasher->inner, secret, secret_len, 0x36) != 0 ||
        keyed_state(hasher->outer, secret, secret_len, 0x5c) != 0) {
        token_hasher_dispose(hasher);
        return -1;
    }
    return 0;
}

void token_hasher_dispose(token_hasher_t *hasher)
{
    EVP_MD_CTX_free(hasher->inner);
    EVP_MD_CTX_free(hasher->outer);
    EVP_MD_CTX_free(hasher->scratch);
    hasher->inner = hasher->outer = hasher->scratch = NULL;
}

int token_hasher_digest(token_hasher_t *hasher, const void *const *parts, const size_t *lens, size_t nparts,
                        uint8_t out[AUTH_HASH_LEN])
{
    uint8_t inner[AUTH_HASH_LEN];
    unsigned len = 0;
    if (EVP_MD_CTX_copy_ex(hasher->scratch, hasher->inner) != 1)
        return -1;
    for (size_t i = 0; i < nparts; i++)
        if (parts[i] != NULL && EVP_DigestUpdate(hasher->scratch, parts[i], lens[i]) != 1)
            return -1;
    if (EVP_DigestFinal_ex(hasher->scratch, inner, &len) != 1 || EVP_MD_CTX_copy_ex(hasher->scratch, hasher->outer) != 1 ||
        EVP_DigestUpdate(hasher->scratch, inner, sizeof(inner)) != 1 ||
        EVP_DigestFinal_ex(hasher->scratch, out, &len) != 1)
        return -1;
    return 0;
}
