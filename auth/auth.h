/*
 * auth.h - who is calling, and what upstream confirmed they may read.
 *
 * The proxy hands auth the credentials of a request and gets back an
 * identity: anonymous, a validated identity (an email, else a subject),
 * an invalid token, credentials only upstream can check (signed URLs, HMAC
 * keys), or "unavailable" when the token could not be checked right now.
 * Bearer tokens are validated against a tokeninfo endpoint, or found in a
 * static token file; results are cached under a keyed hash of the token with a
 * secret drawn at start-up, so no token is kept in clear once its
 * validation ended, and none is ever logged.
 *
 * Every worker thread has its own auth_local_t: lookups of tokens and grants
 * seen lately on that thread take no lock at all. Behind it sit tables
 * shared by all threads (one lock per stripe) and one validation thread with
 * its own curl multi handle, which asks tokeninfo once per token however
 * many requests wait for the answer.
 *
 * Grants are reads upstream confirmed with a caller's own credentials:
 * (identity, object, generation) for auth.grant_ttl seconds. Objects are
 * opaque 32-byte keys; auth knows nothing of HTTP or of the store.
 */
#ifndef LARDER_AUTH_H
#define LARDER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

/* Emails are at most 254 bytes; subjects are short numbers. */
#define AUTH_IDENTITY_MAX 256
#define AUTH_OBJECT_ID_LEN 32

typedef struct auth auth_t;
typedef struct auth_local auth_local_t;

typedef enum {
    AUTH_ANONYMOUS,    /* no credentials at all */
    AUTH_IDENTIFIED,   /* a valid token whose scopes let it read objects: name is set */
    AUTH_INVALID,      /* an invalid, empty or expired bearer token: GCS answers 401 */
    AUTH_UNVERIFIABLE, /* credentials only upstream can judge: signed URLs, HMAC, API keys, odd scopes */
    AUTH_UNAVAILABLE   /* the token could not be checked now (tokeninfo down): fail closed */
} auth_kind_t;

typedef struct auth_identity {
    auth_kind_t kind;
    char name[AUTH_IDENTITY_MAX]; /* IDENTIFIED, and UNVERIFIABLE tokens with too few scopes; else "" */
} auth_identity_t;

/* A request's credentials, as the proxy found them (none of it is kept). */
typedef struct auth_credentials {
    const char *authorization; /* the Authorization header's value, or NULL */
    size_t authorization_len;
    const char *access_token;  /* the access_token query parameter, or NULL */
    size_t access_token_len;
    const char *signature;     /* a signed-URL signature or API key parameter, or NULL */
    size_t signature_len;
} auth_credentials_t;

/*
 * A request waiting for a token's validation. cb runs on the validation
 * thread, with identity set, and must only hand the news on (wake the
 * request's loop); after auth_wait_cancel returns it never runs.
 */
typedef struct auth_waiter {
    void (*cb)(struct auth_waiter *waiter);
    auth_identity_t identity;
    /* private */
    struct auth_waiter *next;
    struct auth_validation *validation;
} auth_waiter_t;

/* What a read served from the cache was allowed on, for logs and counters. */
typedef enum {
    AUTH_DECISION_OWNER,           /* the identity that filled or uploaded this generation */
    AUTH_DECISION_GRANT,           /* upstream confirmed it with the caller's credentials, lately */
    AUTH_DECISION_PUBLIC,          /* the generation is readable by anyone */
    AUTH_DECISION_DENIED,          /* upstream refused the caller */
    AUTH_DECISION_UNAUTHENTICATED, /* an invalid token, or one that could not be checked */
    AUTH_DECISIONS
} auth_decision_t;

/* Reads the token file and starts the validation thread; -1 with one line in err. */
int auth_open(auth_t **auth, const conf_t *conf, char *err, size_t errlen);
/* Stops the validation thread; every auth_local_t must be freed before. */
void auth_close(auth_t *auth);
/* False when auth.enabled is false: identities are then the credentials themselves. */
bool auth_enabled(const auth_t *auth);
/* Reads the token file again (SIGHUP); on failure the old one stays and -1 is returned (logged). */
int auth_reload(auth_t *auth);

auth_local_t *auth_local_new(auth_t *auth);
void auth_local_free(auth_local_t *local);

/*
 * Who is calling. Returns true with *out set, or false when a validation
 * must finish first: waiter->cb will run once waiter->identity is set.
 */
bool auth_identify(auth_local_t *local, const auth_credentials_t *credentials, auth_identity_t *out,
                   auth_waiter_t *waiter);
/* Withdraws a waiter whose callback has not run; a no-op if it has. */
void auth_wait_cancel(auth_local_t *local, auth_waiter_t *waiter);

/* Whether the identity is one of auth.admins. */
bool auth_is_admin(const auth_local_t *local, const auth_identity_t *identity);

/* Grants (no-ops, and never held, when auth is disabled). */
void auth_grant_note(auth_local_t *local, const char *identity, const uint8_t object[AUTH_OBJECT_ID_LEN],
                     int64_t generation);
bool auth_grant_holds(auth_local_t *local, const char *identity, const uint8_t object[AUTH_OBJECT_ID_LEN],
                      int64_t generation);

const char *auth_decision_name(auth_decision_t decision);
void auth_decision_count(auth_local_t *local, auth_decision_t decision);
/* Token validations remembered now (auth.token_cache_entries at most). */
size_t auth_token_cache_entries(auth_local_t *local);
/* Decisions so far, summed over every thread. */
void auth_decision_totals(auth_local_t *local, uint64_t totals[AUTH_DECISIONS]);

#endif
