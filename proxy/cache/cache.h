/*
 * cache.h - the read cache as the front door sees it.
 *
 * The front door hands every request that may concern the cache to
 * cache_handle: reads of an object (answered from the store, from a fill in
 * progress, or by filling), and writes (forwarded, and turned into
 * invalidations once upstream confirmed them). What happens inside is in
 * cache_internal.h.
 */
#ifndef LARDER_CACHE_H
#define LARDER_CACHE_H

#include <h2o.h>

#include "buffers.h"
#include "store.h"
#include "conf.h"
#include "target.h"
#include "worker.h"

/* Opens the store (moving a damaged one aside); *cache is NULL when caching is off. */
int cache_open(cache_t **cache, const conf_t *conf, buffers_t *buffers);
/* Drains and closes the store: after it, no store callback runs. Workers' loops must have ended. */
void cache_close_store(cache_t *cache);
/* Frees the rest, after the workers are gone. */
void cache_close(cache_t *cache);

/* Answers or forwards req, whose target was parsed and is valid. */
void cache_handle(h2o_req_t *req, const target_t *target);

/* Fills running on worker's loop; cache_worker_stop abandons them (shutdown). */
size_t cache_worker_fills(cache_t *cache, worker_t *worker);
void cache_worker_stop(cache_t *cache, worker_t *worker);

/* Store usage and the cache's own counters, as JSON for /_larder/stats (pool-allocated). */
h2o_iovec_t cache_stats_json(cache_t *cache, h2o_mem_pool_t *pool);

/* The cache's gauges, read now, for /_larder/metrics. */
typedef struct cache_gauges {
    store_stats_t store;
    uint64_t fills_in_flight;
    uint64_t upload_sessions, upload_pending_bytes;
} cache_gauges_t;
void cache_gauges(cache_t *cache, cache_gauges_t *gauges);

/* The store the cache keeps its entries in (prefetch/ reads what it holds and keeps leases there). */
store_t *cache_store(cache_t *cache);

/* Fills registered now (in flight or committing): what readers are waiting on upstream for. Any thread. */
uint64_t cache_fills_in_flight(cache_t *cache);
/* Those of them a client's read started, not a prefetch's (X-Larder-Prefetch): what prefetch yields to. */
uint64_t cache_demand_fills(cache_t *cache);

/* The store found the disk or its map full at its last batch of chunks. */
bool cache_out_of_space(cache_t *cache);

/* What a purge drops: every field set must match; none set: everything. */
typedef struct cache_purge_filter {
    const char *owner;  /* the objects this identity owns */
    const char *bucket;
    const char *prefix; /* with bucket: names that start with it */
    const char *name;   /* with bucket: this object */
} cache_purge_filter_t;
/*
 * Drops every cached object the filter names, and stops the fills of them
 * in flight (none brings its object back); *objects and *bytes say what the
 * store held. Serving goes on meanwhile. STORE_ERROR: the scan failed part
 * way (what it found is dropped all the same).
 */
int cache_purge(cache_t *cache, const cache_purge_filter_t *filter, uint64_t *objects, uint64_t *bytes);

/* Drops one cached object and stops its fills (a deletion larder made upstream). */
void cache_drop(cache_t *cache, const char *bucket, const char *name);

/* Calls fn for every cached object an owner holds (of owner only, when not NULL): one scan of the store. */
typedef void (*cache_owned_fn)(void *ctx, const char *owner, uint64_t bytes);
int cache_owned(cache_t *cache, const char *owner, cache_owned_fn fn, void *ctx);

/* --- batches (batch.c): a pipeline's lease on what it reads and writes --- */

/* What a batch's pin of an object says it did with it (marks, OR-ed over the batch's requests). */
#define CACHE_BATCH_READ 1u
#define CACHE_BATCH_WRITTEN 2u
#define CACHE_BATCH_ID_MAX STORE_LEASE_ID_MAX

typedef struct cache_batch {
    char id[CACHE_BATCH_ID_MAX + 1];
    const char *owner;       /* the identity that created it */
    int64_t created_ms, ttl_ms, expires_at_ms; /* unix ms; ttl: what a heartbeat extends by */
    uint64_t quota_bytes;    /* 0: only the global bound */
    uint64_t pinned_objects, pinned_bytes;
    size_t nscratch;
    const char **scratch;    /* "gs://B/P": where its intermediate outputs go */
} cache_batch_t;

/* Letters, digits and "._~-", 1 to CACHE_BATCH_ID_MAX bytes: safe in a path and a header. */
bool cache_batch_id_valid(const char *id, size_t len);
/* A live batch, its strings in pool. STORE_OK, STORE_NOT_FOUND (unknown or expired) or STORE_ERROR. */
int cache_batch_get(cache_t *cache, h2o_mem_pool_t *pool, const char *id, cache_batch_t *out);
/* Every live batch (strings in pool, valid for the call). */
typedef bool (*cache_batch_fn)(void *ctx, const cache_batch_t *batch);
int cache_batch_list(cache_t *cache, h2o_mem_pool_t *pool, cache_batch_fn fn, void *ctx);
/* Whether gs://bucket/name is under one of the batch's scratch prefixes. */
bool cache_batch_is_scratch(const cache_batch_t *batch, const char *bucket, const char *name);
/* Every object the batch pinned, with what it did with it and the bytes the store holds of it now. */
typedef bool (*cache_batch_object_fn)(void *ctx, const char *bucket, const char *name, uint32_t marks, uint64_t bytes);
int cache_batch_objects(cache_t *cache, const char *id, cache_batch_object_fn fn, void *ctx);
/* A new id for a batch or a prefetch job: kind, '-', 16 random hex digits ("b-3f09c1d27a6b5e48"). */
#define CACHE_NEW_ID_SIZE 24
void cache_new_id(char kind, char out[CACHE_NEW_ID_SIZE]);

/*
 * Changes, decided by the store's writer in a commit: done runs on worker's
 * loop with the store's result (STORE_OK, STORE_NOT_FOUND, STORE_QUOTA or
 * STORE_ERROR). NULL: not even queued, and done is never called. Cancel
 * (lease_call_cancel) when the request goes away first.
 */
typedef struct lease_call lease_call_t;
typedef void (*cache_batch_done_fn)(void *ctx, int result);
lease_call_t *cache_batch_put(cache_t *cache, worker_t *worker, const cache_batch_t *batch, cache_batch_done_fn done,
                              void *ctx);
lease_call_t *cache_batch_extend(cache_t *cache, worker_t *worker, const char *id, int64_t expires_at_ms,
                                 cache_batch_done_fn done, void *ctx);
lease_call_t *cache_batch_end(cache_t *cache, worker_t *worker, const char *id, cache_batch_done_fn done, void *ctx);
/* Pins gs://bucket/name into the batch; expect_bytes: what it will hold (an upload's size), 0 when unknown. */
lease_call_t *cache_batch_pin(cache_t *cache, worker_t *worker, const char *id, const char *bucket, const char *name,
                              uint32_t marks, uint64_t expect_bytes, cache_batch_done_fn done, void *ctx);
void lease_call_cancel(lease_call_t *call);

#endif
