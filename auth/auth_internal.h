/*
 * auth_internal.h - what auth/'s files share: the instance (struct auth),
 * a thread's own part (struct auth_local), token hashing, the token file
 * and the validation thread.
 */
#ifndef LARDER_AUTH_INTERNAL_H
#define LARDER_AUTH_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "answer_table.h"
#include "auth.h"

#define AUTH_HASH_LEN 16
#define TOKEN_KEY_LEN 16
/* How long a refused token is remembered: long enough to spare tokeninfo a storm, short enough to forgive. */
#define AUTH_INVALID_TTL_MS 10000
#define AUTH_LOCAL_TOKENS 512
#define AUTH_LOCAL_GRANTS 1024

typedef struct token_file token_file_t;
typedef struct validator validator_t;

/* SipHash-2-4-128 under the instance's secret (token_hash.c says why). */
typedef struct token_hasher {
    uint64_t k0, k1;
} token_hasher_t;

int token_hasher_init(token_hasher_t *hasher, const uint8_t key[TOKEN_KEY_LEN]);
void token_hasher_dispose(token_hasher_t *hasher);
/* Hashes the concatenation of parts (a NULL part is skipped). */
int token_hasher_digest(token_hasher_t *hasher, const void *const *parts, const size_t *lens, size_t nparts,
                        uint8_t out[AUTH_HASH_LEN]);

struct auth {
    const conf_t *conf;
    uint8_t secret[TOKEN_KEY_LEN];
    _Atomic unsigned epoch;    /* bumped by each token-file reload: thread caches drop what they had */
    pthread_mutex_t file_lock; /* guards file */
    token_file_t *file;
    answer_table_t *tokens;    /* tokeninfo's answers */
    answer_table_t *grants;
    validator_t *validator;
    pthread_mutex_t locals_lock;
    auth_local_t *locals;      /* for summing decision counters */
};

struct auth_local {
    auth_t *auth;
    auth_local_t *next;
    token_hasher_t hasher;
    answer_cache_t tokens;
    answer_cache_t grants;
    _Atomic uint64_t decisions[AUTH_DECISIONS]; /* written by this thread only */
};

/* The key a token's answers are kept under: its keyed hash. */
static inline void auth_token_key(answer_key_t *key, const uint8_t hash[AUTH_HASH_LEN])
{
    memcpy(key->bytes, hash, AUTH_HASH_LEN);
    key->len = AUTH_HASH_LEN;
    answer_key_seal(key);
}

/* Wall-clock milliseconds: token expiries are wall-clock times. */
int64_t auth_now_ms(void);

/* --- the token file (token_file.c) --- */

/* Reads path; NULL with one line in err. Tokens are kept only as their keyed hashes. */
token_file_t *token_file_load(const char *path, token_hasher_t *hasher, char *err, size_t errlen);
void token_file_free(token_file_t *file);
/* The file's answer for a token's hash, if it lists it. */
bool token_file_find(const token_file_t *file, const uint8_t hash[AUTH_HASH_LEN], int64_t now_ms, answer_t *out);
size_t token_file_size(const token_file_t *file);

/* --- the validation thread (validator.c) --- */

validator_t *validator_start(auth_t *auth, char *err, size_t errlen);
void validator_stop(validator_t *validator);
/*
 * Queues a validation of token (hash given) unless one is running, and adds
 * waiter to it. Returns false, having added nothing, when the answer came
 * meanwhile: *out is then set.
 */
bool validator_wait(validator_t *validator, const char *token, size_t token_len, const uint8_t hash[AUTH_HASH_LEN],
                    auth_waiter_t *waiter, answer_t *out);
void validator_cancel(validator_t *validator, auth_waiter_t *waiter);

#endif
