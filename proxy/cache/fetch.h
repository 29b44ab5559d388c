/*
 * fetch.h - a fill: one upstream GET of an object (or of a range of its
 * chunks), owned by the cache rather than by the client that started it.
 *
 * As in Varnish, the fetch outlives the client that started it: readers
 * subscribe to it and read what it received, from its memory until a chunk
 * commits and from the store after that, wherever their loops run. A fetch
 * keeps going when its first client leaves, as long as someone else reads
 * (and a few more with nobody waiting, see cache.max_detached_fills); when
 * it fails or is abandoned, what it committed stays in the store, and the
 * object is never invalidated for it.
 *
 * Lifecycle (fetch_state_t), on its home worker's loop:
 *
 *   AWAITING_HEAD  the request is out; readers that arrive wait for its head
 *   STREAMING      a body worth keeping arrives: chunks go to the store as they
 *                  complete, and readers are woken as bytes arrive
 *   COMPLETE       the whole range arrived (chunks may still be committing)
 *   FAILED         upstream broke off, or the fetch was abandoned
 *   NOT_MODIFIED   the head was a 304 to the fetch's revalidation
 *   DECLINED       the head was nothing to store: the exchange goes to the
 *                  leader (the reader that started the fetch) to relay
 *
 * Memory: the chunk being received and the chunks waiting for their commit
 * are held in memory (reserved from the process-wide buffer bound); a chunk
 * is released once the store reports it durable, or, when it was lost, once
 * every reader has passed it. A fetch that may not hold more pauses upstream:
 * back-pressure comes from the store and the bound, never from a slow client.
 */
#ifndef LARDER_FETCH_H
#define LARDER_FETCH_H

#include "exchange.h"
#include "state.h"

typedef enum {
    FETCH_AWAITING_HEAD,
    FETCH_STREAMING,
    FETCH_COMPLETE,
    FETCH_FAILED,
    FETCH_NOT_MODIFIED,
    FETCH_DECLINED
} fetch_state_t;

typedef struct fetch_subscriber fetch_subscriber_t;

struct fetch_subscriber {
    h2o_linklist_t link;     /* in the fetch's list, under its lock */
    worker_t *worker;        /* where wakeup runs */
    worker_wakeup_t wakeup;  /* set up by the subscriber: runs when the fetch moved on and it was waiting */
    uint64_t position;       /* the next byte it reads; lost chunks before it may go */
    bool waiting;            /* asked to be woken; under the fetch's lock */
    /*
     * The leader only, on the home loop: the head came and there is nothing
     * to fill (NOT_MODIFIED or DECLINED); the leader now owns the exchange.
     */
    void (*on_unfilled)(fetch_subscriber_t *leader, fetch_t *fetch, exchange_t *exchange);
};

typedef struct fetch_params {
    const store_key_t *key;
    const target_t *target;       /* the URL is built from it */
    h2o_req_t *client;            /* whose headers (credentials) the request carries */
    cache_flavour_t flavour;
    const char *caller;           /* the owner of a new generation it brings ("" for nobody) */
    bool anonymous;               /* no credentials: what it brings is public */
    uint64_t first, last;         /* bytes to fetch, inclusive; first 0 and last UINT64_MAX: no Range */
    int64_t pinned_generation;    /* -1: whatever upstream has; else that generation or a 412 */
    const char *if_none_match;    /* a revalidation by ETag */
    int64_t if_generation_not_match; /* a revalidation by generation (JSON API); -1: none */
    const char *url;              /* overrides the URL built from target (revalidating through the JSON API) */
    bool head;                    /* a HEAD: never fills */
    bool demand;                  /* a client's read waits on it (not a prefetch's): prefetch holds back meanwhile */
} fetch_params_t;

/*
 * Starts a fetch on worker's loop, registers it, and subscribes leader.
 * Returns NULL (nothing started, leader not subscribed) when upstream could
 * not even be asked.
 */
fetch_t *fetch_start(cache_t *cache, worker_t *worker, const fetch_params_t *params, fetch_subscriber_t *leader);
/*
 * fetch_start for a miss: when another thread registered a fill of the same
 * object and range at the same moment, the one registered first goes on
 * alone and leader follows it (*joined true), so concurrent misses on
 * different threads still make one upstream request.
 */
fetch_t *fetch_start_or_join(cache_t *cache, worker_t *worker, const fetch_params_t *params,
                             fetch_subscriber_t *leader, bool *joined);

void fetch_retain(fetch_t *fetch);
void fetch_release(fetch_t *fetch);

/* Subscribes (taking a reference); the subscriber's wakeup.cb and worker must be set. */
void fetch_subscribe(fetch_t *fetch, fetch_subscriber_t *sub);
/* Unsubscribes on the subscriber's own loop, cancels its pending wake-up, drops its reference. */
void fetch_unsubscribe(fetch_t *fetch, fetch_subscriber_t *sub);

fetch_state_t fetch_state(fetch_t *fetch);
/* The fetch's version, copied (caller frees with store_meta_free); false before STREAMING. */
bool fetch_meta(fetch_t *fetch, store_meta_t *meta);
/* A newer record of the same generation and size (an entry made whole): readers from now on take it. */
void fetch_update_meta(fetch_t *fetch, const store_meta_t *meta);
/* The size received so far, and whether the body ended cleanly (then it is the object's size). */
uint64_t fetch_received(fetch_t *fetch, bool *complete);
int64_t fetch_pinned_generation(const fetch_t *fetch);
int64_t fetch_upstream_ms(fetch_t *fetch);
/* Readers arriving during AWAITING_HEAD: the fill is a revalidation (a 304 is possible). */
bool fetch_is_revalidation(const fetch_t *fetch);

typedef enum {
    FETCH_READ_DATA,  /* *n bytes copied */
    FETCH_READ_WAIT,  /* not received yet: the subscriber will be woken */
    FETCH_READ_STORE, /* committed: read it from the store */
    FETCH_READ_GONE   /* this fetch will not deliver it */
} fetch_read_t;

/*
 * The fetch's state; while it is not over (AWAITING_HEAD or STREAMING) the
 * subscriber is marked to be woken at its next step. A subscriber checks
 * this right after subscribing, so it cannot miss a step taken meanwhile.
 */
fetch_state_t fetch_watch(fetch_t *fetch, fetch_subscriber_t *sub);

/* Copies bytes at absolute offset (at most cap, within one chunk) into buf. */
fetch_read_t fetch_read(fetch_t *fetch, fetch_subscriber_t *sub, uint64_t offset, char *buf, size_t cap, size_t *n);

/* Whether fetch will deliver chunk index of generation (or has no generation yet and might). Registry use. */
bool fetch_covers(fetch_t *fetch, int64_t generation, uint32_t index);

/* Copies len bytes of the object at offset into dst; false when they cannot be had. */
typedef bool (*fetch_local_read_fn)(void *ctx, uint64_t offset, char *dst, size_t len);

/*
 * A fill from bytes larder already has: an upload upstream confirmed, or a
 * copy of cached objects. The whole object is read through read before this
 * returns and checked against meta->crc32c; then it is registered like any
 * fill, so readers follow it rather than fetch while its chunks commit, and
 * it is COMPLETE from the start. Takes meta over (cleared, whatever the
 * outcome); meta->size must be known. False when nothing was started: memory
 * is short, the bytes are not all there, or they are not what upstream has.
 */
bool fetch_start_local(cache_t *cache, worker_t *worker, const store_key_t *key, store_meta_t *meta,
                       fetch_local_read_fn read, void *ctx);

/* --- the registry of fills in progress, by key --- */

void fetch_registry_add(cache_t *cache, fetch_t *fetch);
/* Unregisters fetch if it still is; readers that hold it keep it. */
void fetch_registry_remove(cache_t *cache, fetch_t *fetch);
/* The most recently registered fill of key, retained; NULL when none. */
fetch_t *fetch_registry_newest(cache_t *cache, const store_key_t *key);
/* A registered fill of generation (or of no known generation yet) that will deliver chunk index, retained. */
fetch_t *fetch_registry_covering(cache_t *cache, const store_key_t *key, int64_t generation, uint32_t index);
/* Unregisters every fill of key; the ones running store nothing more (an invalidation). */
void fetch_registry_forget(cache_t *cache, const store_key_t *key);
/* Keys (at most max, into out) of the registered fills match accepts (bucket, name, the owner a new generation gets). */
typedef bool (*fetch_match_fn)(void *ctx, const char *bucket, const char *name, const char *owner);
size_t fetch_registry_keys_where(cache_t *cache, fetch_match_fn match, void *ctx, store_key_t *out, size_t max);
/* Drops every registration (at close). */
void fetch_registry_clear(cache_t *cache);

const store_key_t *fetch_key(const fetch_t *fetch);
bool fetch_on_worker(const fetch_t *fetch, const worker_t *worker);
/* On the home loop at shutdown: cancels the exchange; readers see FAILED. */
void fetch_abandon(fetch_t *fetch);
fetch_t *fetch_from_home_link(h2o_linklist_t *link);

#endif
