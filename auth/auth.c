/*
 * auth.c - the instance, and who is calling: credentials classified, tokens
 * looked up (this thread's cache, the token file, the shared table) or
 * validated; grants remembered; admins; decision counters.
 */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth_internal.h"

/*
 * The coarse clock: tokens expire and grants lapse on a scale of seconds, so a
 * clock tick (a few ms) late is nothing, while a precise read cost 46 ns on a
 * KVM guest against 9 ns, and a hit reads the clock twice here.
 */
int64_t auth_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static token_file_t *load_token_file(auth_t *auth, char *err, size_t errlen)
{
    token_hasher_t hasher;
    if (token_hasher_init(&hasher, auth->secret) != 0) {
        snprintf(err, errlen, "auth: cannot set up token hashing");
        return NULL;
    }
    token_file_t *file = token_file_load(auth->conf->auth.token_file, &hasher, err, errlen);
    token_hasher_dispose(&hasher);
    return file;
}

int auth_open(auth_t **out, const conf_t *conf, char *err, size_t errlen)
{
    *out = NULL;
    auth_t *auth = calloc(1, sizeof(*auth));
    if (auth == NULL) {
        snprintf(err, errlen, "auth: out of memory");
        return -1;
    }
    auth->conf = conf;
    atomic_init(&auth->epoch, 0);
    pthread_mutex_init(&auth->file_lock, NULL);
    pthread_mutex_init(&auth->locals_lock, NULL);
    if (RAND_bytes(auth->secret, sizeof(auth->secret)) != 1) {
        snprintf(err, errlen, "auth: no randomness for the token secret");
        goto fail;
    }
    if (!conf->auth.enabled) {
        log_msg(LOG_LEVEL_WARN, "auth",
                "auth.enabled is false: tokens are not validated; a hit skips upstream only for the exact "
                "credentials that filled it, and every other caller's read is revalidated upstream");
        *out = auth;
        return 0;
    }
    auth->tokens = answer_table_new(conf->auth.token_cache_entries);
    auth->grants = answer_table_new(conf->auth.token_cache_entries);
    if (auth->tokens == NULL || auth->grants == NULL) {
        snprintf(err, errlen, "auth: out of memory for %u token cache entries", conf->auth.token_cache_entries);
        goto fail;
    }
    if (conf->auth.token_file != NULL && (auth->file = load_token_file(auth, err, errlen)) == NULL)
        goto fail;
    if ((auth->validator = validator_start(auth, err, errlen)) == NULL)
        goto fail;
    log_msg(LOG_LEVEL_INFO, "auth", "tokens validated by %s%s, %zu in the token file; grants last %u s",
            conf->auth.tokeninfo_url, conf->auth.token_file != NULL ? "" : " (no token file)",
            token_file_size(auth->file), conf->auth.grant_ttl);
    *out = auth;
    return 0;
fail:
    auth_close(auth);
    return -1;
}

void auth_close(auth_t *auth)
{
    if (auth == NULL)
        return;
    validator_stop(auth->validator);
    token_file_free(auth->file);
    answer_table_free(auth->tokens);
    answer_table_free(auth->grants);
    pthread_mutex_destroy(&auth->file_lock);
    pthread_mutex_destroy(&auth->locals_lock);
    OPENSSL_cleanse(auth->secret, sizeof(auth->secret));
    free(auth);
}

bool auth_enabled(const auth_t *auth)
{
    return auth->conf->auth.enabled;
}

int auth_reload(auth_t *auth)
{
    if (!auth->conf->auth.enabled || auth->conf->auth.token_file == NULL) {
        log_msg(LOG_LEVEL_INFO, "auth", "SIGHUP: no token file to reload");
        return 0;
    }
    char err[512];
    token_file_t *file = load_token_file(auth, err, sizeof(err));
    if (file == NULL) {
        log_msg(LOG_LEVEL_ERROR, "auth", "SIGHUP: %s; the token file read before stays in use", err);
        return -1;
    }
    pthread_mutex_lock(&auth->file_lock);
    token_file_t *old = auth->file;
    auth->file = file;
    atomic_fetch_add(&auth->epoch, 1); /* every thread's cached answers from the old file are dropped */
    pthread_mutex_unlock(&auth->file_lock);
    token_file_free(old);
    log_msg(LOG_LEVEL_INFO, "auth", "SIGHUP: token file reloaded, %zu tokens", token_file_size(file));
    return 0;
}

auth_local_t *auth_local_new(auth_t *auth)
{
    auth_local_t *local = calloc(1, sizeof(*local));
    if (local == NULL)
        return NULL;
    local->auth = auth;
    if (token_hasher_init(&local->hasher, auth->secret) != 0 ||
        answer_cache_init(&local->tokens, AUTH_LOCAL_TOKENS) != 0 ||
        answer_cache_init(&local->grants, AUTH_LOCAL_GRANTS) != 0) {
        token_hasher_dispose(&local->hasher);
        answer_cache_dispose(&local->tokens);
        free(local);
        return NULL;
    }
    for (size_t i = 0; i < AUTH_DECISIONS; i++)
        atomic_init(&local->decisions[i], 0);
    pthread_mutex_lock(&auth->locals_lock);
    local->next = auth->locals;
    auth->locals = local;
    pthread_mutex_unlock(&auth->locals_lock);
    return local;
}

void auth_local_free(auth_local_t *local)
{
    if (local == NULL)
        return;
    auth_t *auth = local->auth;
    pthread_mutex_lock(&auth->locals_lock);
    for (auth_local_t **link = &auth->locals; *link != NULL; link = &(*link)->next)
        if (*link == local) {
            *link = local->next;
            break;
        }
    pthread_mutex_unlock(&auth->locals_lock);
    token_hasher_dispose(&local->hasher);
    answer_cache_dispose(&local->tokens);
    answer_cache_dispose(&local->grants);
    free(local);
}

/* --- who is calling --- */

static void trim(const char **p, size_t *len)
{
    while (*len > 0 && (**p == ' ' || **p == '\t'))
        (*p)++, (*len)--;
    while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

typedef enum { CREDENTIALS_NONE, CREDENTIALS_BEARER, CREDENTIALS_OTHER } credentials_kind_t;

/* What kind of credentials these are; for a bearer token, the token. */
static credentials_kind_t classify(const auth_credentials_t *c, const char **token, size_t *token_len)
{
    if (c->signature != NULL)
        return CREDENTIALS_OTHER; /* a signed URL or an API key: only upstream can check it */
    if (c->authorization != NULL) {
        const char *p = c->authorization;
        size_t len = c->authorization_len;
        trim(&p, &len);
        if (len < 6 || strncasecmp(p, "bearer", 6) != 0 || (len > 6 && p[6] != ' ' && p[6] != '\t'))
            return CREDENTIALS_OTHER; /* HMAC signatures (GOOG4-HMAC-SHA256, AWS4-HMAC-SHA256, AWS) and the rest */
        p += 6, len -= 6;
        trim(&p, &len);
        *token = p, *token_len = len;
        return CREDENTIALS_BEARER;
    }
    if (c->access_token != NULL) {
        *token = c->access_token, *token_len = c->access_token_len;
        return CREDENTIALS_BEARER;
    }
    return CREDENTIALS_NONE;
}

static void answer_to_identity(const answer_t *answer, int64_t now, auth_identity_t *out)
{
    out->kind = answer->kind;
    if (answer->kind == AUTH_IDENTIFIED && answer->expires_ms != 0 && now >= answer->expires_ms)
        out->kind = AUTH_INVALID; /* the token expired since it was validated */
    /* On every request: a bounded copy, not snprintf, which cost more than the rest of this function. */
    const char *name = out->kind == AUTH_INVALID ? "" : answer->name;
    size_t len = strnlen(name, sizeof(out->name) - 1);
    memcpy(out->name, name, len);
    out->name[len] = '\0';
}

/* auth.enabled false: the credentials are the identity, as a keyed hash; nothing is validated. */
static void identify_by_credentials(auth_local_t *local, const auth_credentials_t *c, auth_identity_t *out)
{
    if (c->authorization == NULL && c->access_token == NULL && c->signature == NULL) {
        *out = (auth_identity_t){.kind = AUTH_ANONYMOUS};
        return;
    }
    /*
     * The parts' lengths first (SIZE_MAX for one absent): separators would let
     * an empty part pass for an absent one, or a part holding the separator
     * for two, and other credentials must never make the same identity.
     */
    const size_t framing[] = {c->authorization != NULL ? c->authorization_len : SIZE_MAX,
                              c->access_token != NULL ? c->access_token_len : SIZE_MAX,
                              c->signature != NULL ? c->signature_len : SIZE_MAX};
    const void *parts[] = {framing, c->authorization, c->access_token, c->signature};
    size_t lens[] = {sizeof(framing), c->authorization_len, c->access_token_len, c->signature_len};
    uint8_t hash[AUTH_HASH_LEN];
    if (token_hasher_digest(&local->hasher, parts, lens, 4, hash) != 0) {
        *out = (auth_identity_t){.kind = AUTH_UNVERIFIABLE}; /* nobody can be told apart: upstream judges */
        return;
    }
    out->kind = AUTH_IDENTIFIED;
    char *p = out->name + snprintf(out->name, sizeof(out->name), "cred:");
    for (size_t i = 0; i < AUTH_HASH_LEN; i++)
        p += sprintf(p, "%02x", hash[i]);
}

bool auth_identify(auth_local_t *local, const auth_credentials_t *credentials, auth_identity_t *out,
                   auth_waiter_t *waiter)
{
    auth_t *auth = local->auth;
    if (!auth->conf->auth.enabled) {
        identify_by_credentials(local, credentials, out);
        return true;
    }
    const char *token = NULL;
    size_t token_len = 0;
    switch (classify(credentials, &token, &token_len)) {
    case CREDENTIALS_NONE:
        *out = (auth_identity_t){.kind = AUTH_ANONYMOUS};
        return true;
    case CREDENTIALS_OTHER:
        *out = (auth_identity_t){.kind = AUTH_UNVERIFIABLE};
        return true;
    case CREDENTIALS_BEARER:
        break;
    }
    if (token_len == 0) {
        *out = (auth_identity_t){.kind = AUTH_INVALID}; /* GCS answers an empty bearer token 401 */
        return true;
    }
    uint8_t hash[AUTH_HASH_LEN];
    const void *parts[] = {token};
    if (token_hasher_digest(&local->hasher, parts, &token_len, 1, hash) != 0) {
        *out = (auth_identity_t){.kind = AUTH_UNAVAILABLE};
        return true;
    }
    answer_key_t key;
    auth_token_key(&key, hash);
    int64_t now = auth_now_ms();
    unsigned epoch = atomic_load_explicit(&auth->epoch, memory_order_acquire);
    const answer_t *cached = answer_cache_get(&local->tokens, &key, now, epoch);
    if (cached != NULL) {
        answer_to_identity(cached, now, out);
        return true;
    }
    answer_t answer;
    pthread_mutex_lock(&auth->file_lock);
    bool listed = token_file_find(auth->file, hash, now, &answer);
    pthread_mutex_unlock(&auth->file_lock);
    if (listed || answer_table_get(auth->tokens, &key, now, &answer)) {
        answer_cache_put(&local->tokens, &key, &answer, epoch);
        answer_to_identity(&answer, now, out);
        return true;
    }
    if (validator_wait(auth->validator, token, token_len, hash, waiter, &answer))
        return false;
    answer_to_identity(&answer, now, out);
    return true;
}

void auth_wait_cancel(auth_local_t *local, auth_waiter_t *waiter)
{
    if (local->auth->validator != NULL)
        validator_cancel(local->auth->validator, waiter);
}

bool auth_is_admin(const auth_local_t *local, const auth_identity_t *identity)
{
    const auth_t *auth = local->auth;
    if (identity->name[0] == '\0' || (identity->kind != AUTH_IDENTIFIED && identity->kind != AUTH_UNVERIFIABLE))
        return false;
    for (size_t i = 0; i < auth->conf->auth.num_admins; i++)
        if (strcmp(auth->conf->auth.admins[i], identity->name) == 0)
            return true;
    return false;
}

/* --- grants --- */

static void grant_key(answer_key_t *key, const char *identity, const uint8_t object[AUTH_OBJECT_ID_LEN],
                      int64_t generation)
{
    size_t name_len = strnlen(identity, AUTH_IDENTITY_MAX - 1);
    memcpy(key->bytes, object, AUTH_OBJECT_ID_LEN);
    memcpy(key->bytes + AUTH_OBJECT_ID_LEN, &generation, sizeof(generation));
    memcpy(key->bytes + AUTH_OBJECT_ID_LEN + sizeof(generation), identity, name_len);
    key->len = AUTH_OBJECT_ID_LEN + sizeof(generation) + name_len;
    answer_key_seal(key);
}

void auth_grant_note(auth_local_t *local, const char *identity, const uint8_t object[AUTH_OBJECT_ID_LEN],
                     int64_t generation)
{
    if (!local->auth->conf->auth.enabled || identity[0] == '\0')
        return;
    answer_key_t key;
    grant_key(&key, identity, object, generation);
    answer_t grant = {.kind = AUTH_IDENTIFIED, .until_ms = auth_now_ms() + (int64_t)local->auth->conf->auth.grant_ttl * 1000};
    answer_cache_put(&local->grants, &key, &grant, 0);
    if (!answer_table_put(local->auth->grants, &key, &grant))
        log_msg(LOG_LEVEL_WARN, "auth", "out of memory remembering a grant");
}

bool auth_grant_holds(auth_local_t *local, const char *identity, const uint8_t object[AUTH_OBJECT_ID_LEN],
                      int64_t generation)
{
    if (!local->auth->conf->auth.enabled || identity[0] == '\0')
        return false;
    answer_key_t key;
    grant_key(&key, identity, object, generation);
    int64_t now = auth_now_ms();
    if (answer_cache_get(&local->grants, &key, now, 0) != NULL)
        return true;
    answer_t grant;
    if (!answer_table_get(local->auth->grants, &key, now, &grant))
        return false;
    answer_cache_put(&local->grants, &key, &grant, 0);
    return true;
}

/* --- decisions --- */

const char *auth_decision_name(auth_decision_t decision)
{
    static const char *const names[AUTH_DECISIONS] = {"owner", "grant", "public", "denied", "unauthenticated"};
    return (unsigned)decision < AUTH_DECISIONS ? names[decision] : "?";
}

void auth_decision_count(auth_local_t *local, auth_decision_t decision)
{
    if ((unsigned)decision < AUTH_DECISIONS)
        atomic_fetch_add_explicit(&local->decisions[decision], 1, memory_order_relaxed);
}

size_t auth_token_cache_entries(auth_local_t *local)
{
    return answer_table_size(local->auth->tokens);
}

void auth_decision_totals(auth_local_t *local, uint64_t totals[AUTH_DECISIONS])
{
    auth_t *auth = local->auth;
    memset(totals, 0, sizeof(uint64_t) * AUTH_DECISIONS);
    pthread_mutex_lock(&auth->locals_lock);
    for (auth_local_t *local = auth->locals; local != NULL; local = local->next)
        for (size_t i = 0; i < AUTH_DECISIONS; i++)
            totals[i] += atomic_load_explicit(&local->decisions[i], memory_order_relaxed);
    pthread_mutex_unlock(&auth->locals_lock);
}
