/*
 * cache.c - the read cache's entry point and lifetime: opening and closing
 * the store, handing each request to a read or a write, the fills each
 * worker runs, and the counters /_larder/stats shows.
 */
#include "access_log.h"
#include "fetch.h"
#include "forward.h"
#include "gcs_error.h"
#include "lease_call.h"
#include "read.h"
#include "route.h"
#include "state.h"
#include "upload_complete.h"
#include "upload_session.h"
#include "writes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void store_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    log_msg(level <= 0 ? LOG_LEVEL_ERROR : level == 1 ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, "store", "%s", msg);
}

int cache_open(cache_t **out, const conf_t *conf, buffers_t *buffers)
{
    *out = NULL;
    if (!conf->cache.enabled)
        return 0;
    cache_t *cache = calloc(1, sizeof(*cache));
    if (cache == NULL)
        return -1;
    cache->conf = conf;
    cache->buffers = buffers;
    pthread_mutex_init(&cache->recent_lock, NULL);
    for (size_t i = 0; i < CACHE_STRIPES; i++) {
        pthread_mutex_init(&cache->stripes[i].lock, NULL);
        h2o_linklist_init_anchor(&cache->stripes[i].fetches);
    }
    if ((cache->home_fetches = calloc(conf->worker_threads, sizeof(*cache->home_fetches))) == NULL ||
        (cache->home_completions = calloc(conf->worker_threads, sizeof(*cache->home_completions))) == NULL ||
        (cache->home_lease_calls = calloc(conf->worker_threads, sizeof(*cache->home_lease_calls))) == NULL ||
        (cache->sessions = upload_sessions_new()) == NULL) {
        cache_close(cache);
        return -1;
    }
    for (unsigned i = 0; i < conf->worker_threads; i++) {
        h2o_linklist_init_anchor(&cache->home_fetches[i]);
        h2o_linklist_init_anchor(&cache->home_completions[i]);
        h2o_linklist_init_anchor(&cache->home_lease_calls[i]);
    }
    store_config_t config = {
        .path = conf->store.path,
        .budget = conf->store.budget,
        .high_water = conf->store.high_water_percent / 100.0,
        .low_water = conf->store.low_water_percent / 100.0,
        .commit_interval_ms = conf->store.commit_interval_ms,
        .max_lease_pinned_bytes = conf->batches.max_pinned_bytes,
        .verify_interval_s = conf->store.verify_interval,
        /* Chunks queued to the writer are copies of what fills hold: part of the same memory bound. */
        .max_queue_bytes = (size_t)(conf->max_buffer_memory / 4),
        .log = store_log,
    };
    int rc = store_open(&cache->store, &config);
    if (rc == STORE_NO_SPACE) {
        /* A full disk is a fault to ride out, not a reason to refuse service. */
        log_msg(LOG_LEVEL_ERROR, "cache", "no space to open the store at %s: caching is off until larder restarts; "
                "serving as a pass-through proxy", conf->store.path);
        cache_close(cache);
        return 0;
    }
    if (rc != STORE_OK) {
        log_msg(LOG_LEVEL_ERROR, "cache", "cannot open the store at %s", conf->store.path);
        cache_close(cache);
        return -1;
    }
    *out = cache;
    return 0;
}

void cache_close_store(cache_t *cache)
{
    if (cache == NULL || cache->store == NULL)
        return;
    store_close(cache->store); /* the last chunk outcomes are reported here */
    cache->store = NULL;
}

void cache_close(cache_t *cache)
{
    if (cache == NULL)
        return;
    cache_close_store(cache);
    upload_sessions_free(cache->sessions); /* their pending chunks are transient: gone at the next start-up */
    fetch_registry_clear(cache);
    cache_state_dispose(cache);
    for (size_t i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_destroy(&cache->stripes[i].lock);
    free(cache->home_fetches);
    free(cache->home_completions);
    free(cache->home_lease_calls);
    pthread_mutex_destroy(&cache->recent_lock);
    free(cache);
}

/* --- workers --- */

size_t cache_worker_fills(cache_t *cache, worker_t *worker)
{
    size_t n = upload_complete_running(cache, worker) + lease_calls_running(cache, worker);
    for (h2o_linklist_t *l = cache->home_fetches[worker->id].next; l != &cache->home_fetches[worker->id]; l = l->next)
        n++;
    return n;
}

void cache_worker_stop(cache_t *cache, worker_t *worker)
{
    upload_complete_stop(cache, worker);
    lease_calls_stop(cache, worker);
    h2o_linklist_t *list = &cache->home_fetches[worker->id];
    while (!h2o_linklist_is_empty(list)) {
        h2o_linklist_t *first = list->next;
        fetch_abandon(fetch_from_home_link(first)); /* unlinks it */
        if (list->next == first)
            h2o_linklist_unlink(first);
    }
}

uint64_t cache_demand_fills(cache_t *cache)
{
    return atomic_load(&cache->demand_fills);
}

store_t *cache_store(cache_t *cache)
{
    return cache->store;
}

uint64_t cache_fills_in_flight(cache_t *cache)
{
    return atomic_load(&cache->fills_registered);
}

bool cache_out_of_space(cache_t *cache)
{
    return store_out_of_space(cache->store);
}

void cache_gauges(cache_t *cache, cache_gauges_t *g)
{
    memset(g, 0, sizeof(*g));
    store_stats_get(cache->store, &g->store);
    g->fills_in_flight = cache_fills_in_flight(cache);
    upload_sessions_stats(cache, &g->upload_sessions, &g->upload_pending_bytes);
}

h2o_iovec_t cache_stats_json(cache_t *cache, h2o_mem_pool_t *pool)
{
    store_stats_t st = {0};
    if (cache != NULL)
        store_stats_get(cache->store, &st);
    uint64_t sessions = 0, pending_bytes = 0;
    if (cache != NULL)
        upload_sessions_stats(cache, &sessions, &pending_bytes);
    char *body = h2o_mem_alloc_pool(pool, 896);
    int n = snprintf(body, 896,
                     "{\"cache_enabled\":%s,\"budget\":%llu,\"used_bytes\":%llu,\"objects\":%llu,\"chunks\":%llu,"
                     "\"evicted_objects\":%llu,\"evicted_bytes\":%llu,\"commits\":%llu,\"corrupt_chunks\":%llu,"
                     "\"busy_rejections\":%llu,\"lost_chunks\":%llu,\"out_of_space\":%s,\"fills_started\":%llu,"
                     "\"fills_abandoned\":%llu,\"fills_detached\":%u,\"upload_sessions\":%llu,\"upload_pending_bytes\":%llu,"
                     "\"direct_bytes\":%llu}",
                     cache != NULL ? "true" : "false", (unsigned long long)st.budget,
                     (unsigned long long)st.used_bytes, (unsigned long long)st.objects, (unsigned long long)st.chunks,
                     (unsigned long long)st.evicted_objects, (unsigned long long)st.evicted_bytes,
                     (unsigned long long)st.commits, (unsigned long long)st.corrupt_chunks,
                     (unsigned long long)st.busy_rejections, (unsigned long long)st.lost_chunks,
                     st.out_of_space ? "true" : "false",
                     cache != NULL ? (unsigned long long)atomic_load(&cache->fills_started) : 0ULL,
                     cache != NULL ? (unsigned long long)atomic_load(&cache->fills_abandoned) : 0ULL,
                     cache != NULL ? atomic_load(&cache->detached) : 0u, (unsigned long long)sessions,
                     (unsigned long long)pending_bytes,
                     cache != NULL ? (unsigned long long)atomic_load(&cache->direct_bytes) : 0ULL);
    return h2o_iovec_init(body, n > 0 ? (size_t)n : 0);
}
/* --- the entry point --- */

void cache_handle(h2o_req_t *req, const target_t *target)
{
    bool reads = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                 h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (!reads) {
        cache_write_start(req, target);
        return;
    }
    request_headers_t headers;
    request_headers_scan(&headers, &req->headers);
    cache_request_t creq;
    const char *invalid;
    cache_request_parse(&creq, target, req, &headers, &invalid);
    if (invalid != NULL) {
        gcs_error_send(req, target->route.error_format, GCS_ERROR_BAD_REQUEST, invalid);
        access_log_local_answer(req, target->route.api, NULL, NULL, invalid);
        return;
    }
    if (creq.kind == CACHE_READ_NONE) {
        forward_start(req, target, &(forward_options_t){.cache_state = "PASS"});
        return;
    }
    cache_read_start(req, target, &creq, &headers);
}
