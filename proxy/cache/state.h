/*
 * state.h - the read cache's shared state (struct cache), and what its files
 * share through state.c. Nothing outside cache/ uses it.
 *
 * The files of cache/, from the entry point down:
 *
 *   cache.c      the entry point, opening and closing, counters
 *   read.c       one cacheable read, from the lookup to its last byte
 *   access.c     on what the caller may read an entry: owner, grant, public,
 *                or upstream's answer to the caller's own request
 *   writes.c     writes through larder: in flight, then invalidation, or an
 *                entry made of what was written
 *   upload.c     upstream's answer to a write, and what the cache makes of it
 *   upload_request.c  what a write request is, parsed once
 *   upload_session.c  resumable and XML multipart uploads across requests
 *   upload_fill.c  a written object's bytes becoming its entry
 *   upload_complete.c  the whole resource of an entry a partial answer made
 *   upload_entry.c  the new entry's metadata and views, from what is known
 *   fetch.c      a fill, owned by the cache rather than by the client that
 *                started it, and the registry of fills in progress
 *   invalidate.c dropping a cached object, and the fills of it
 *   purge.c      dropping every object a filter names (owner, bucket, prefix)
 *   batch.c      batches: a pipeline's lease on what it reads and writes
 *   lease_call.c a store lease call made from a loop, answered on it
 *   entry.c      turning an upstream response head into an entry (the store's
 *                metadata plus the record kept with it), and a 304 into an
 *                updated entry
 *   conditional.c  client preconditions and If-Range, decided from an entry
 *   state.c      invalidation epochs, writes in flight, records (and those
 *                noted but not yet committed)
 *   record.c     a record parsed once per worker
 *   cache_request.c  what a read asks of the cache
 *
 * Locks: a registry stripe's lock may be held while a fetch's lock is taken,
 * never the other way round. The store's callbacks run on its writer thread
 * and take only a fetch's lock, then (released) a stripe's.
 */
#ifndef LARDER_CACHE_STATE_H
#define LARDER_CACHE_STATE_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "cache.h"
#include "cache_request.h"
#include "record.h"
#include "store.h"

#define CACHE_STRIPES 16
/* Slots in the invalidation epoch table; a collision only makes a fill skip storing. */
#define CACHE_EPOCHS 4096

typedef struct fetch fetch_t;
typedef struct recent_record recent_record_t;
typedef struct upload_sessions upload_sessions_t;

/* Fills in progress and writes in flight, by key: a short list per stripe, and a count read without the lock. */
typedef struct cache_stripe {
    pthread_mutex_t lock;
    _Atomic size_t count;    /* fills registered plus writes in flight: the hit path skips the lock at 0 */
    h2o_linklist_t fetches;  /* fetch_t.registry_link */
    struct write_mark *writes;
} cache_stripe_t;

struct cache {
    const conf_t *conf;
    store_t *store;
    buffers_t *buffers;
    cache_stripe_t stripes[CACHE_STRIPES];
    _Atomic unsigned epochs[CACHE_EPOCHS]; /* bumped by each invalidation of a key hashing there */
    _Atomic unsigned detached;             /* fills running with no client waiting */
    h2o_linklist_t *home_fetches;          /* per worker id: fills whose exchange runs on that worker's loop */
    h2o_linklist_t *home_completions;      /* per worker id: upload_complete.c's metadata GETs on that loop */
    h2o_linklist_t *home_lease_calls;      /* per worker id: lease_call.c's calls waiting for the store */
    pthread_mutex_t recent_lock;
    recent_record_t *recent;               /* records queued to the store but maybe not committed yet */
    upload_sessions_t *sessions;           /* resumable and XML multipart uploads in progress */
    _Atomic uint64_t fills_started, fills_abandoned, gap_fetches;
    _Atomic uint64_t direct_bytes; /* hit bytes sent from the store's map, without a copy (read.c) */
    _Atomic uint64_t fills_registered;     /* fills in the registry now: in flight, or committing */
    _Atomic uint64_t demand_fills;         /* those of them a client's read (not a prefetch's) started */
    _Atomic int64_t next_space_probe_ms;   /* out of space: when the next fill may try the store again */
};

static inline bool cache_same_key(const store_key_t *a, const store_key_t *b)
{
    return memcmp(a->hash, b->hash, sizeof(a->hash)) == 0;
}

static inline size_t cache_list_length(const h2o_linklist_t *anchor)
{
    size_t n = 0;
    for (const h2o_linklist_t *l = anchor->next; l != anchor; l = l->next)
        n++;
    return n;
}

static inline cache_stripe_t *cache_stripe_of(cache_t *cache, const store_key_t *key)
{
    return &cache->stripes[key->hash[0] % CACHE_STRIPES];
}

/* --- invalidation epochs and writes in flight --- */

unsigned cache_epoch(cache_t *cache, const store_key_t *key);
void cache_epoch_bump(cache_t *cache, const store_key_t *key);
void cache_write_mark(cache_t *cache, const store_key_t *key);
void cache_write_unmark(cache_t *cache, const store_key_t *key);
bool cache_write_in_flight(cache_t *cache, const store_key_t *key);

/* Frees the write marks and noted records (at close). */
void cache_state_dispose(cache_t *cache);

/*
 * Whether a fill may hand its chunks to the store. While the store is out of
 * space, fills serve as a pass-through at once rather than queue megabytes to
 * be lost, but for one every two seconds, whose chunks find out when room
 * came back.
 */
bool cache_may_store(cache_t *cache);

/* --- records --- */

/* Headers of an upstream media response worth replaying on a hit, as a JSON array of [name, value]. */
json_t *cache_capture_headers(const h2o_headers_t *headers);
/* Whether a response header is kept in the record and replayed on hits (not framing, dates or per-response ids). */
bool cache_header_replayed(const h2o_iovec_t *name);
/*
 * Merges into a record (which may be NULL) one API's media view (its ETag,
 * NULL when upstream sent none, and headers), and/or the JSON resource with
 * the headers of its metadata response. Returns the new record text (caller
 * frees).
 */
char *cache_record_merge(const char *record, cache_flavour_t flavour, bool media, const char *etag, json_t *headers,
                         json_t *resource, json_t *resource_headers);
/*
 * Records go to the store through its writer queue, so a record just written
 * may not be readable yet. The cache remembers the newest record it queued for
 * each object for a few seconds; merges start from it rather than from the
 * store, so two views filled back to back both survive.
 */
void cache_record_note(cache_t *cache, const store_key_t *key, int64_t generation, const char *record);
char *cache_record_latest(cache_t *cache, const store_key_t *key, int64_t generation, const char *committed);
void cache_record_forget(cache_t *cache, const store_key_t *key);

/* The record with "public": true (the generation is readable by anyone); NULL when unreadable. Caller frees. */
char *cache_record_with_public(const char *record);

#endif
