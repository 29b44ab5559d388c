/*
 * answer_table.h - answers auth remembers for a while: a token's
 * validation, or a grant upstream confirmed.
 *
 * Two levels. answer_table_t is shared by every thread: bounded, striped
 * (a lock per stripe, so threads rarely meet), the oldest entry of a full
 * stripe making room. answer_cache_t is one thread's own small
 * set-associative copy of what that thread looked up lately: a hit there
 * takes no lock. Keys are byte strings compared exactly (a token's keyed hash, or
 * a grant's object, generation and identity); the hash only places them.
 */
#ifndef LARDER_AUTH_ANSWER_TABLE_H
#define LARDER_AUTH_ANSWER_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"

#define ANSWER_KEY_MAX (AUTH_OBJECT_ID_LEN + 8 + AUTH_IDENTITY_MAX)

typedef struct answer {
    auth_kind_t kind;
    int64_t until_ms;   /* wall clock: not used from then on */
    int64_t expires_ms; /* the token's own expiry, 0 when unknown: IDENTIFIED turns INVALID then */
    char name[AUTH_IDENTITY_MAX];
} answer_t;

typedef struct answer_key {
    uint8_t bytes[ANSWER_KEY_MAX];
    size_t len;
    uint64_t hash;
} answer_key_t;

/* Sets key->hash from its bytes. */
void answer_key_seal(answer_key_t *key);

typedef struct answer_table answer_table_t;

answer_table_t *answer_table_new(size_t capacity);
void answer_table_free(answer_table_t *table);
/* The answer for key while now_ms < until_ms. */
bool answer_table_get(answer_table_t *table, const answer_key_t *key, int64_t now_ms, answer_t *out);
/* Adds or replaces; false when out of memory (nothing remembered, nothing else lost). */
bool answer_table_put(answer_table_t *table, const answer_key_t *key, const answer_t *answer);
/* Answers held now (expired ones included until reused). */
size_t answer_table_size(answer_table_t *table);

typedef struct answer_slot answer_slot_t;

typedef struct answer_cache {
    answer_slot_t *slots;
    size_t mask;
    uint64_t puts;
} answer_cache_t;

int answer_cache_init(answer_cache_t *cache, size_t slots);
void answer_cache_dispose(answer_cache_t *cache);
/*
 * Like answer_table_get, for entries put under the same epoch; the answer
 * in place (NULL when none), valid until the next put: a hit copies nothing.
 */
const answer_t *answer_cache_get(const answer_cache_t *cache, const answer_key_t *key, int64_t now_ms,
                                 unsigned epoch);
void answer_cache_put(answer_cache_t *cache, const answer_key_t *key, const answer_t *answer, unsigned epoch);

#endif
