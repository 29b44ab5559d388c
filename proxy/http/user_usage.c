/*
 * user_usage.c - per-identity byte counts, one small hash table per worker.
 *
 * Counted where a request ends (access_log_finish), from what it sent the
 * client and where that came from. Public objects are nobody's in
 * particular: a reader of one is counted for what it was served, while
 * cached bytes are counted once, for the object's owner (cache/purge.c's
 * scan reports those).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "request_metrics.h"
#include "user_usage.h"

int user_usage_init(user_usage_t *u)
{
    memset(u, 0, sizeof(*u));
    return pthread_mutex_init(&u->lock, NULL) == 0 ? 0 : -1;
}

void user_usage_dispose(user_usage_t *u)
{
    for (size_t i = 0; i < u->cap; i++)
        free(u->entries[i].user);
    free(u->entries);
    pthread_mutex_destroy(&u->lock);
}

static uint64_t hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The slot of user: its entry, or the free slot it would take. Lock held; cap > count. */
static user_usage_entry_t *slot_of(const user_usage_t *u, const char *user)
{
    for (size_t i = hash_of(user) & (u->cap - 1);; i = (i + 1) & (u->cap - 1))
        if (u->entries[i].user == NULL || strcmp(u->entries[i].user, user) == 0)
            return &u->entries[i];
}

static bool grow(user_usage_t *u)
{
    size_t cap = u->cap != 0 ? u->cap * 2 : 64;
    user_usage_entry_t *entries = calloc(cap, sizeof(*entries)), *old = u->entries;
    if (entries == NULL)
        return false;
    size_t old_cap = u->cap;
    u->entries = entries;
    u->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].user != NULL)
            *slot_of(u, old[i].user) = old[i];
    free(old);
    return true;
}

/* The entry of user, made when absent; NULL when memory is short. Lock held. */
static user_usage_entry_t *entry_of(user_usage_t *u, const char *user)
{
    if ((u->count + 1) * 4 > u->cap * 3 && !grow(u))
        return NULL;
    user_usage_entry_t *e = slot_of(u, user);
    if (e->user == NULL) {
        if ((e->user = strdup(user)) == NULL)
            return NULL;
        u->count++;
    }
    return e;
}

void user_usage_record(user_usage_t *u, const access_log_entry_t *e, int result)
{
    if (e->identity == NULL || e->identity[0] == '\0' || e->cache == NULL || e->api == ROUTE_ADMIN ||
        e->bytes_sent == 0)
        return;
    bool served = result == METRICS_CACHE_HIT || result == METRICS_CACHE_REVALIDATED;
    pthread_mutex_lock(&u->lock);
    user_usage_entry_t *entry = entry_of(u, e->identity);
    if (entry != NULL) {
        if (served)
            entry->served_bytes += e->bytes_sent;
        else
            entry->fetched_bytes += e->bytes_sent;
    }
    pthread_mutex_unlock(&u->lock);
}

void user_usage_add_into(user_usage_t *u, const char *user, user_usage_t *into)
{
    pthread_mutex_lock(&u->lock);
    for (size_t i = 0; i < u->cap; i++) {
        const user_usage_entry_t *e = &u->entries[i];
        if (e->user == NULL || (user != NULL && strcmp(e->user, user) != 0))
            continue;
        user_usage_entry_t *sum = entry_of(into, e->user);
        if (sum != NULL) {
            sum->served_bytes += e->served_bytes;
            sum->fetched_bytes += e->fetched_bytes;
        }
    }
    pthread_mutex_unlock(&u->lock);
}

const user_usage_entry_t *user_usage_find(const user_usage_t *u, const char *user)
{
    if (u->cap == 0)
        return NULL;
    const user_usage_entry_t *e = slot_of(u, user);
    return e->user != NULL ? e : NULL;
}

/* Adds bytes to the figure at offset (cached_bytes or pinned_bytes) of user's entry in a table of totals. */
static void add_total(user_usage_t *u, const char *user, size_t offset, uint64_t bytes)
{
    pthread_mutex_lock(&u->lock);
    user_usage_entry_t *e = entry_of(u, user);
    if (e != NULL)
        *(uint64_t *)((char *)e + offset) += bytes;
    pthread_mutex_unlock(&u->lock);
}

void user_usage_add_pinned(user_usage_t *u, const char *user, uint64_t bytes)
{
    add_total(u, user, offsetof(user_usage_entry_t, pinned_bytes), bytes);
}

void user_usage_add_cached(user_usage_t *u, const char *user, uint64_t bytes)
{
    add_total(u, user, offsetof(user_usage_entry_t, cached_bytes), bytes);
}
