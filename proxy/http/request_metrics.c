/*
 * request_metrics.c - counting a worker's requests as they end.
 */
#include <string.h>

#include "request_metrics.h"

const char *const metrics_method_names[METRICS_METHODS] = {"GET",   "HEAD",   "POST",    "PUT",
                                                           "PATCH", "DELETE", "OPTIONS", "other"};
const char *const metrics_cache_results[METRICS_CACHE_RESULTS] = {
    [METRICS_CACHE_HIT] = "hit", [METRICS_CACHE_MISS] = "miss", [METRICS_CACHE_REVALIDATED] = "revalidated",
    [METRICS_CACHE_PASS] = "pass"};
const double metrics_latency_bounds_s[METRICS_LATENCY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                  0.5,   1,    2.5,   5,    10};

static size_t method_index(const h2o_iovec_t *method)
{
    for (size_t i = 0; i + 1 < METRICS_METHODS; i++)
        if (h2o_memis(method->base, method->len, metrics_method_names[i], strlen(metrics_method_names[i])))
            return i;
    return METRICS_METHODS - 1;
}

int request_metrics_cache_result(const char *cache)
{
    /* h2o's ASCII compare against the lower-case names: strcasecmp's locale lookups cost more than the counting. */
    static const size_t lens[METRICS_CACHE_RESULTS] = {
        [METRICS_CACHE_HIT] = 3, [METRICS_CACHE_MISS] = 4, [METRICS_CACHE_REVALIDATED] = 11, [METRICS_CACHE_PASS] = 4};
    size_t len = cache != NULL ? strlen(cache) : 0;
    for (int i = 0; cache != NULL && i < METRICS_CACHE_RESULTS; i++)
        if (h2o_lcstris(cache, len, metrics_cache_results[i], lens[i]))
            return i;
    return -1;
}

/* Each counter has one writer, its worker: a relaxed load and store, not a locked add, which stalls the core. */
static void add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n, memory_order_relaxed);
}

void request_metrics_record(request_metrics_t *m, const access_log_entry_t *e, int result)
{
    int status = e->status >= METRICS_STATUS_MIN && e->status < METRICS_STATUS_MIN + METRICS_STATUSES ? e->status : 0;
    if (status != 0 && (size_t)e->api < METRICS_ROUTES)
        add(&m->requests[e->api][method_index(&e->req->method)][status - METRICS_STATUS_MIN], 1);
    if (result >= 0 && e->api != ROUTE_ADMIN) { /* larder's own answers are no cache's */
        add(&m->cache_requests[result], 1);
        add(&m->cache_bytes[result], e->bytes_sent);
    }
    if (e->upstream_ms >= 0) {
        size_t bucket = 0;
        while (bucket < METRICS_LATENCY_BUCKETS && (double)e->upstream_ms / 1000.0 > metrics_latency_bounds_s[bucket])
            bucket++;
        add(&m->upstream_latency[bucket], 1);
        add(&m->upstream_latency_ms_sum, (uint64_t)e->upstream_ms);
    }
}
