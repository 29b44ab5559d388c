/*
 * state.c - what the read cache's files share: invalidation epochs, writes
 * in flight, the records kept with objects (and those noted but not yet
 * committed), and the caller identities entries belong to.
 *
 * Writes in flight are kept in the same stripes as the registry of fills
 * (fetch.c), each stripe a short list under its own lock with an atomic
 * count, so a hit on an object nothing is writing takes no lock here.
 */
#include "state.h"
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* While the store is out of space, one fill this often tries it again. */
#define SPACE_PROBE_MS 2000

/* Past this age the store has long committed a record: the store's copy is current again. */
#define RECENT_RECORD_MS 10000
#define RECENT_RECORD_MAX 1024

struct recent_record {
    recent_record_t *next;
    store_key_t key;
    int64_t generation;
    uint64_t noted_at_ms;
    char *record;
};

/* A write through larder whose answer has not come: reads of its object bypass the cache meanwhile. */
struct write_mark {
    struct write_mark *next;
    store_key_t key;
    unsigned count;
};

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- invalidation epochs and writes in flight --- */

static unsigned epoch_slot(const store_key_t *key)
{
    unsigned h;
    memcpy(&h, key->hash + 4, sizeof(h));
    return h % CACHE_EPOCHS;
}

unsigned cache_epoch(cache_t *cache, const store_key_t *key)
{
    return atomic_load(&cache->epochs[epoch_slot(key)]);
}

void cache_epoch_bump(cache_t *cache, const store_key_t *key)
{
    atomic_fetch_add(&cache->epochs[epoch_slot(key)], 1);
}

void cache_write_mark(cache_t *cache, const store_key_t *key)
{
    cache_stripe_t *st = cache_stripe_of(cache, key);
    pthread_mutex_lock(&st->lock);
    struct write_mark *m = st->writes;
    while (m != NULL && !cache_same_key(&m->key, key))
        m = m->next;
    if (m == NULL && (m = calloc(1, sizeof(*m))) != NULL) {
        m->key = *key;
        m->next = st->writes;
        st->writes = m;
    }
    if (m != NULL) {
        m->count++;
        atomic_fetch_add(&st->count, 1);
    }
    pthread_mutex_unlock(&st->lock);
}

void cache_write_unmark(cache_t *cache, const store_key_t *key)
{
    cache_stripe_t *st = cache_stripe_of(cache, key);
    pthread_mutex_lock(&st->lock);
    for (struct write_mark **p = &st->writes; *p != NULL; p = &(*p)->next) {
        if (!cache_same_key(&(*p)->key, key))
            continue;
        atomic_fetch_sub(&st->count, 1);
        if (--(*p)->count == 0) {
            struct write_mark *gone = *p;
            *p = gone->next;
            free(gone);
        }
        break;
    }
    pthread_mutex_unlock(&st->lock);
}

bool cache_write_in_flight(cache_t *cache, const store_key_t *key)
{
    cache_stripe_t *st = cache_stripe_of(cache, key);
    if (atomic_load(&st->count) == 0)
        return false;
    bool found = false;
    pthread_mutex_lock(&st->lock);
    for (struct write_mark *m = st->writes; m != NULL && !found; m = m->next)
        found = cache_same_key(&m->key, key);
    pthread_mutex_unlock(&st->lock);
    return found;
}
bool cache_may_store(cache_t *cache)
{
    if (!store_out_of_space(cache->store))
        return true;
    int64_t now = worker_unix_ms(), probe = atomic_load(&cache->next_space_probe_ms);
    return now >= probe && atomic_compare_exchange_strong(&cache->next_space_probe_ms, &probe, now + SPACE_PROBE_MS);
}

/* --- records --- */

bool cache_header_replayed(const h2o_iovec_t *name)
{
    /* Framing, per-response identifiers and time-relative headers are made fresh on every hit. */
    static const char *const skipped[] = {"content-length", "content-range", "date", "age", "expires", "set-cookie",
                                          "x-guploader-uploadid", "x-guploader-response-body-transformations",
                                          "warning", "alt-svc", "x-cache", "location", "connection",
                                          "transfer-encoding", "keep-alive"};
    for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++)
        if (h2o_lcstris(name->base, name->len, skipped[i], strlen(skipped[i])))
            return false;
    return true;
}

json_t *cache_capture_headers(const h2o_headers_t *headers)
{
    json_t *list = json_array();
    if (list == NULL)
        return NULL;
    for (size_t i = 0; i != headers->size; i++) {
        const h2o_header_t *h = &headers->entries[i];
        if (!cache_header_replayed(h->name))
            continue;
        json_t *pair = json_pack("[s#s#]", h->name->base, (int)h->name->len, h->value.base, (int)h->value.len);
        if (pair == NULL || json_array_append_new(list, pair) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

static const char *flavour_key(cache_flavour_t flavour)
{
    return flavour == CACHE_FLAVOUR_JSON ? "json" : "xml";
}

char *cache_record_merge(const char *record, cache_flavour_t flavour, bool media, const char *etag, json_t *headers,
                         json_t *resource, json_t *resource_headers)
{
    json_t *root = record != NULL ? json_loads(record, 0, NULL) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        root = json_object();
    }
    if (root == NULL)
        return NULL;
    if (media && headers != NULL) {
        json_t *view = etag != NULL ? json_pack("{s:s,s:O}", "etag", etag, "headers", headers)
                                    : json_pack("{s:O}", "headers", headers); /* no ETag: the generation validates */
        json_object_set_new(root, flavour_key(flavour), view);
    }
    if (resource != NULL)
        json_object_set(root, "resource", resource);
    if (resource_headers != NULL)
        json_object_set(root, "resource_headers", resource_headers);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* --- records not yet committed --- */

static void free_recent(recent_record_t *r)
{
    free(r->record);
    free(r);
}

/* Drops expired entries, the entry for key (when given), and the oldest past the cap. Lock held. */
static void prune_recent(cache_t *cache, uint64_t now, const store_key_t *key)
{
    size_t kept = 0;
    for (recent_record_t **p = &cache->recent; *p != NULL;) {
        recent_record_t *r = *p;
        bool drop = now - r->noted_at_ms > RECENT_RECORD_MS || kept >= RECENT_RECORD_MAX ||
                    (key != NULL && memcmp(r->key.hash, key->hash, sizeof(key->hash)) == 0);
        if (drop) {
            *p = r->next;
            free_recent(r);
        } else {
            kept++;
            p = &r->next;
        }
    }
}

void cache_record_note(cache_t *cache, const store_key_t *key, int64_t generation, const char *record)
{
    recent_record_t *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->record = strdup(record)) == NULL) {
        free(r);
        return; /* merges fall back to the store's copy */
    }
    r->key = *key;
    r->generation = generation;
    pthread_mutex_lock(&cache->recent_lock);
    r->noted_at_ms = monotonic_ms();
    prune_recent(cache, r->noted_at_ms, key);
    r->next = cache->recent; /* newest first, so the cap drops the oldest */
    cache->recent = r;
    pthread_mutex_unlock(&cache->recent_lock);
}

char *cache_record_latest(cache_t *cache, const store_key_t *key, int64_t generation, const char *committed)
{
    char *latest = NULL;
    pthread_mutex_lock(&cache->recent_lock);
    prune_recent(cache, monotonic_ms(), NULL);
    for (recent_record_t *r = cache->recent; r != NULL; r = r->next)
        if (memcmp(r->key.hash, key->hash, sizeof(key->hash)) == 0) {
            if (r->generation == generation)
                latest = strdup(r->record);
            break;
        }
    pthread_mutex_unlock(&cache->recent_lock);
    if (latest == NULL && committed != NULL)
        latest = strdup(committed);
    return latest;
}

void cache_record_forget(cache_t *cache, const store_key_t *key)
{
    pthread_mutex_lock(&cache->recent_lock);
    prune_recent(cache, monotonic_ms(), key);
    pthread_mutex_unlock(&cache->recent_lock);
}

char *cache_record_with_public(const char *record)
{
    json_t *root = json_loads(record, 0, NULL);
    char *text = NULL;
    if (json_is_object(root) && json_object_set_new(root, "public", json_true()) == 0)
        text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

void cache_state_dispose(cache_t *cache)
{
    for (size_t i = 0; i < CACHE_STRIPES; i++)
        while (cache->stripes[i].writes != NULL) {
            struct write_mark *next = cache->stripes[i].writes->next;
            free(cache->stripes[i].writes);
            cache->stripes[i].writes = next;
        }
    while (cache->recent != NULL) {
        recent_record_t *next = cache->recent->next;
        free(cache->recent->record);
        free(cache->recent);
        cache->recent = next;
    }
}
