/*
 * cache.h - the read cache as the proxy sees it: the store, the record kept
 * with each object, single-flight fills, and the hit generator.
 *
 * The store keeps bytes and the fields common to both APIs. What differs per
 * API (the media ETag, the headers a response carries, the JSON resource) is
 * kept in a small JSON "record" the proxy owns, stored in the metadata's
 * resource_json field. A hit for an API is possible once a response of that
 * API filled the record.
 */
#ifndef LARDER_CACHE_H
#define LARDER_CACHE_H

#include <h2o.h>
#include <jansson.h>
#include <pthread.h>

#include "cache_request.h"
#include "conf.h"
#include "store.h"

typedef struct fill_entry fill_entry_t;
typedef struct recent_record recent_record_t;

typedef struct cache {
    const conf_t *conf;
    store_t *store;
    pthread_mutex_t fills_lock; /* guards `fills` and `recent`: shared across worker threads */
    fill_entry_t *fills;        /* in-progress whole-object fills, a short list */
    recent_record_t *recent;    /* records queued to the store but maybe not committed yet */
} cache_t;

/* Opens the store (moving a damaged one aside); NULL *cache when caching is off. */
int cache_open(cache_t **cache, const conf_t *conf);
void cache_close(cache_t *cache);

/* --- the per-object record --- */

/* Headers of an upstream media response worth replaying on a hit, as a JSON array of [name, value]. */
json_t *cache_capture_headers(const h2o_headers_t *headers);
/*
 * Merges into a record (which may be NULL) one API's media view (etag and
 * headers), and/or the JSON resource with the headers of its metadata
 * response. Returns the new record text (caller frees).
 */
char *cache_record_merge(const char *record, cache_flavour_t flavour, const char *etag, json_t *headers,
                         json_t *resource, json_t *resource_headers);

/*
 * Records go to the store through its writer queue, so a record just written
 * may not be readable yet. The cache remembers the newest record it queued for
 * each object for a few seconds; merges start from it rather than from the
 * store, so two views filled back to back both survive.
 */
void cache_record_note(cache_t *cache, const store_key_t *key, int64_t generation, const char *record);
/* The newest record of that generation: the noted one, else a copy of committed (which may be NULL). Caller frees. */
char *cache_record_latest(cache_t *cache, const store_key_t *key, int64_t generation, const char *committed);
void cache_record_forget(cache_t *cache, const store_key_t *key);

/* A caller's identity for ownership until tokens are validated: a hash of its credentials. */
void cache_caller_id(h2o_req_t *req, char *out, size_t cap);

/* --- single-flight --- */

/*
 * True while a fill of key is running or its last chunks may still be on
 * their way into the store; with a caller, only for that caller's own fill
 * (which the request may then follow without revalidating).
 */
bool cache_fill_active(cache_t *cache, const store_key_t *key, const char *caller);
/* Registers a whole-object fill; false if one is already registered (then don't lead). */
bool cache_fill_lead(cache_t *cache, const store_key_t *key, const char *caller);
/* Ends a fill: success keeps the entry visible briefly so followers find the last chunks once committed. */
void cache_fill_end(cache_t *cache, const store_key_t *key, bool success);

/* --- serving --- */

struct worker;
struct record;

typedef enum { HIT_FRESH, HIT_REVALIDATED, HIT_FOLLOW } hit_mode_t;

/*
 * Answers req from the store: the bytes (or a 304, 412 or 416 decided from
 * the cached metadata). meta is consumed; record is meta's parsed record
 * (the hit takes its own reference; NULL to look it up here). Returns -1 when the store cannot
 * serve this request after all; nothing was sent then, and the caller
 * forwards it instead. With meta NULL (following a fill that has not recorded
 * the object yet) it waits for the metadata, and calls fallback if the fill
 * fails to deliver it.
 */
int cache_serve_hit(h2o_req_t *req, struct worker *worker, const cache_request_t *creq, const store_key_t *key,
                    store_meta_t *meta, struct record *record, hit_mode_t mode,
                    void (*fallback)(h2o_req_t *req, const cache_request_t *creq));

/* True when the store holds every chunk the request needs. */
bool cache_covers(cache_t *cache, const store_key_t *key, const store_meta_t *meta, const cache_range_t *range);

#endif
