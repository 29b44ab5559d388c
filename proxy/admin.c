/*
 * admin.c - larder's own endpoints under /_larder/ ("_larder" can never be a
 * bucket name, so these never shadow an object).
 *
 *   GET /_larder/healthz   {"status":"ok"} while the process serves
 *   GET /_larder/stats     the store's usage and eviction counters
 */
#include <stdio.h>

#include "gcs_error.h"
#include "handler.h"

static void send_admin_json(h2o_req_t *req, const char *body, size_t len)
{
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, body, len);
}

static void answer_stats(h2o_req_t *req, cache_t *cache)
{
    store_stats_t st = {0};
    if (cache != NULL)
        store_stats_get(cache->store, &st);
    char *body = h2o_mem_alloc_pool(&req->pool, 512);
    int n = snprintf(body, 512,
                     "{\"cache_enabled\":%s,\"budget\":%llu,\"used_bytes\":%llu,\"objects\":%llu,\"chunks\":%llu,"
                     "\"evicted_objects\":%llu,\"evicted_bytes\":%llu,\"commits\":%llu,\"corrupt_chunks\":%llu,"
                     "\"busy_rejections\":%llu}",
                     cache != NULL ? "true" : "false", (unsigned long long)st.budget,
                     (unsigned long long)st.used_bytes, (unsigned long long)st.objects, (unsigned long long)st.chunks,
                     (unsigned long long)st.evicted_objects, (unsigned long long)st.evicted_bytes,
                     (unsigned long long)st.commits, (unsigned long long)st.corrupt_chunks,
                     (unsigned long long)st.busy_rejections);
    send_admin_json(req, body, (size_t)n);
}

void admin_answer(h2o_req_t *req, worker_t *worker)
{
    static const char health[] = "{\"status\":\"ok\"}";
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/_larder/healthz")))
        send_admin_json(req, health, sizeof(health) - 1);
    else if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/_larder/stats")))
        answer_stats(req, worker->cache);
    else
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_NOT_FOUND, "No such larder endpoint.");
}

