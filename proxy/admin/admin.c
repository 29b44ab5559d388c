/*
 * admin.c - larder's own endpoints under /_larder/ ("_larder" can never be a
 * bucket name, so these never shadow an object).
 *
 *   GET /_larder/healthz   {"status":"ok"} while the process serves
 *   GET /_larder/stats     the store's usage and the cache's counters
 */
#include "cache.h"
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

void admin_answer(h2o_req_t *req, worker_t *worker)
{
    static const char health[] = "{\"status\":\"ok\"}";
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/_larder/healthz"))) {
        send_admin_json(req, health, sizeof(health) - 1);
    } else if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/_larder/stats"))) {
        h2o_iovec_t body = cache_stats_json(worker->cache, &req->pool);
        send_admin_json(req, body.base, body.len);
    } else {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_NOT_FOUND, "No such larder endpoint.");
    }
}
