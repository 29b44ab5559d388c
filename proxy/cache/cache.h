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

/* Calls fn for every cached object an owner holds (of owner only, when not NULL): one scan of the store. */
typedef void (*cache_owned_fn)(void *ctx, const char *owner, uint64_t bytes);
int cache_owned(cache_t *cache, const char *owner, cache_owned_fn fn, void *ctx);

#endif
