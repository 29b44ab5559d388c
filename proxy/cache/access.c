/*
 * access.c - on what a caller may read a cache entry: owner, grant or
 * public, else upstream's answer to the caller's own request (access.h).
 */
#include <string.h>

#include "access.h"
#include "entry.h"

/*
 * A generation learnt to be public is written to the store's queue, and the
 * store's readers see it once it commits. Until then (and for grant_ttl) it
 * is remembered as a grant to this pseudo-identity, which no token can name
 * (identities have no leading space).
 */
static const char everyone[] = " everyone";

static bool decide(access_t *a, auth_decision_t decision)
{
    a->decided = true;
    a->decision = decision;
    return true;
}

static bool may_read_public(const auth_identity_t *who)
{
    /* Unverifiable credentials may be bad ones, which GCS refuses even on public objects. */
    return who->kind == AUTH_ANONYMOUS || who->kind == AUTH_IDENTIFIED;
}

bool access_known(access_t *a, auth_local_t *auth, const auth_identity_t *who, const store_key_t *key,
                  const store_meta_t *meta, const record_t *record)
{
    if (who->kind == AUTH_IDENTIFIED && meta->owner != NULL && meta->owner[0] != '\0' &&
        strcmp(meta->owner, who->name) == 0)
        return decide(a, AUTH_DECISION_OWNER);
    if (may_read_public(who) && record != NULL && record->is_public)
        return decide(a, AUTH_DECISION_PUBLIC);
    /* A grantee's hit finds its grant in this thread's cache; only callers without one go on to "everyone". */
    if (who->kind == AUTH_IDENTIFIED && auth_grant_holds(auth, who->name, key->hash, meta->generation))
        return decide(a, AUTH_DECISION_GRANT);
    if (may_read_public(who) && auth_grant_holds(auth, everyone, key->hash, meta->generation))
        return decide(a, AUTH_DECISION_PUBLIC);
    return false;
}

void access_confirmed(access_t *a, cache_t *cache, auth_local_t *auth, const auth_identity_t *who,
                      const store_key_t *key, store_meta_t *meta, bool store_public)
{
    if (who->kind == AUTH_IDENTIFIED && meta->owner != NULL && strcmp(meta->owner, who->name) == 0) {
        decide(a, AUTH_DECISION_OWNER);
    } else if (who->kind == AUTH_ANONYMOUS) {
        if (store_public)
            entry_mark_public(cache, key, meta);
        auth_grant_note(auth, everyone, key->hash, meta->generation);
        decide(a, AUTH_DECISION_PUBLIC);
    } else {
        if (who->kind == AUTH_IDENTIFIED)
            auth_grant_note(auth, who->name, key->hash, meta->generation);
        decide(a, AUTH_DECISION_GRANT); /* unverifiable credentials: this once, never remembered */
    }
}

void access_confirmed_resource(auth_local_t *auth, const auth_identity_t *who, const store_key_t *key,
                               int64_t generation)
{
    if (who->kind == AUTH_IDENTIFIED || who->kind == AUTH_ANONYMOUS)
        auth_grant_note(auth, who->kind == AUTH_ANONYMOUS ? everyone : who->name, key->hash, generation);
}

const char *access_from_status(access_t *a, auth_local_t *auth, const auth_identity_t *who, int status)
{
    bool allowed = (status >= 200 && status < 300) || status == 304;
    if (status == 401 || status == 403 || status == 404)
        decide(a, AUTH_DECISION_DENIED);
    else if (allowed && !a->decided)
        decide(a, a->owns_recorded                ? AUTH_DECISION_OWNER
                  : who->kind == AUTH_ANONYMOUS ? AUTH_DECISION_PUBLIC
                                                : AUTH_DECISION_GRANT);
    else if (!a->decided)
        return NULL;
    auth_decision_count(auth, a->decision);
    return auth_decision_name(a->decision);
}

void access_undecidable(access_t *a)
{
    decide(a, AUTH_DECISION_UNAUTHENTICATED);
}
