/*
 * access.h - on what a caller may read a cache entry (access.c).
 *
 * Every read the cache could answer is decided here before a byte or a
 * header of the entry leaves: the caller is its owner, holds a grant
 * upstream confirmed lately, or the generation is public. Anything else is
 * asked of upstream with the caller's own credentials, and its answer
 * becomes the decision (and, when it allows, a grant).
 */
#ifndef LARDER_CACHE_ACCESS_H
#define LARDER_CACHE_ACCESS_H

#include "auth.h"
#include "record.h"
#include "state.h"

/* A read's decision, once there is one. */
typedef struct access {
    bool decided;
    auth_decision_t decision;
    bool owns_recorded; /* the metadata this read recorded names the caller as the generation's owner */
} access_t;

/* Whether the caller may read the entry without asking upstream; decides when it may. */
bool access_known(access_t *a, auth_local_t *auth, const auth_identity_t *who, const store_key_t *key,
                  const store_meta_t *meta, const record_t *record);
/*
 * Upstream served or confirmed this generation to the caller with the
 * caller's own credentials: remembered as a grant, or for an anonymous
 * caller by making the generation public (in the store too when
 * store_public; meta updated in place).
 */
void access_confirmed(access_t *a, cache_t *cache, auth_local_t *auth, const auth_identity_t *who,
                      const store_key_t *key, store_meta_t *meta, bool store_public);
/* A metadata GET upstream answered 200 for the caller: the resource's generation is theirs to read. */
void access_confirmed_resource(auth_local_t *auth, const auth_identity_t *who, const store_key_t *key,
                               int64_t generation);
/* Upstream's answer to a request of the caller's own, as the decision to log (NULL: none); counted. */
const char *access_from_status(access_t *a, auth_local_t *auth, const auth_identity_t *who, int status);
/* The caller's right could not be decided (a bad token, or upstream not reachable for the check). */
void access_undecidable(access_t *a);

#endif
