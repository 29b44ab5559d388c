/*
 * token_hash.c - a keyed hash of tokens under the instance's secret:
 * SipHash-2-4 with its 128-bit output (Aumasson and Bernstein, 2012).
 *
 * Tokens are looked up by this hash and never kept in clear. It runs on
 * every request that carries one, so it must be cheap: HMAC-SHA256 through
 * OpenSSL's EVP layer cost some 7,500 instructions per token, a fifth of a
 * whole 4 KiB hit, most of it in copying digest contexts. SipHash is a
 * pseudorandom function under a secret key, which is all a lookup key needs:
 * without the key nobody can choose a token whose hash meets another's, and
 * 128 bits put a chance collision out of reach. The key is random per
 * process, so nothing hashed outlives it.
 */
#include <endian.h>
#include <openssl/crypto.h>
#include <string.h>

#include "auth_internal.h"

/* Whole-word loads and stores: GCC 12 at -O2 does not merge a byte loop into one, and this runs on every request. */
static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static void store_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint64_t rotl(uint64_t x, int b)
{
    return x << b | x >> (64 - b);
}

typedef struct sip_state {
    uint64_t v0, v1, v2, v3;
} sip_state_t;

static inline void sip_round(sip_state_t *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static inline void sip_compress(sip_state_t *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

int token_hasher_init(token_hasher_t *hasher, const uint8_t key[TOKEN_KEY_LEN])
{
    hasher->k0 = load_le64(key);
    hasher->k1 = load_le64(key + 8);
    return 0;
}

void token_hasher_dispose(token_hasher_t *hasher)
{
    OPENSSL_cleanse(hasher, sizeof(*hasher));
}

int token_hasher_digest(token_hasher_t *hasher, const void *const *parts, const size_t *lens, size_t nparts,
                        uint8_t out[AUTH_HASH_LEN])
{
    sip_state_t s = {hasher->k0 ^ 0x736f6d6570736575ull, hasher->k1 ^ 0x646f72616e646f6dull ^ 0xee,
                     hasher->k0 ^ 0x6c7967656e657261ull, hasher->k1 ^ 0x7465646279746573ull};
    /* The parts are one message: a word may straddle two of them. */
    uint8_t pending[8];
    size_t pending_len = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i] == NULL)
            continue;
        const uint8_t *p = parts[i];
        size_t len = lens[i];
        total += len;
        while (len > 0 && pending_len > 0) {
            pending[pending_len++] = *p++;
            len--;
            if (pending_len == 8) {
                sip_compress(&s, load_le64(pending));
                pending_len = 0;
            }
        }
        if (len == 0)
            continue; /* all of it went into pending, which is not full yet */
        for (; len >= 8; p += 8, len -= 8)
            sip_compress(&s, load_le64(p));
        memcpy(pending, p, len);
        pending_len = len;
    }
    /* The last word: what is left, and the message's length modulo 256 in its top byte. */
    uint64_t last = total << 56;
    for (size_t i = 0; i < pending_len; i++)
        last |= (uint64_t)pending[i] << (8 * i);
    sip_compress(&s, last);
    s.v2 ^= 0xee;
    for (int i = 0; i < 4; i++)
        sip_round(&s);
    store_le64(out, s.v0 ^ s.v1 ^ s.v2 ^ s.v3);
    s.v1 ^= 0xdd;
    for (int i = 0; i < 4; i++)
        sip_round(&s);
    store_le64(out + 8, s.v0 ^ s.v1 ^ s.v2 ^ s.v3);
    OPENSSL_cleanse(pending, sizeof(pending));
    return 0;
}
