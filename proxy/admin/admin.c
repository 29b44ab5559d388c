/*
 * admin.c - larder's own endpoints under /_larder/ ("_larder" can never be a
 * bucket name, so these never shadow an object).
 *
 *   GET /_larder/healthz   {"status":"ok"} while the process serves; open to all
 *   GET /_larder/stats     the store's usage, the cache's counters and the
 *                          access decisions; auth.admins only (403 to others,
 *                          401 to an invalid token)
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "access_log.h"
#include "cache.h"
#include "caller.h"
#include "gcs_error.h"
#include "handler.h"

typedef struct admin_request {
    caller_t caller;
} admin_request_t;

static void send_admin_json(h2o_req_t *req, const char *body, size_t len)
{
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, body, len);
}

static void log_answer(h2o_req_t *req, const char *identity, const char *access, const char *why)
{
    access_log_local_answer(req, ROUTE_ADMIN, identity, access, why);
}

/* The cache's figures with the access decisions added. */
static h2o_iovec_t stats_json(h2o_req_t *req, worker_t *worker)
{
    h2o_iovec_t cache = cache_stats_json(worker->cache, &req->pool);
    uint64_t totals[AUTH_DECISIONS];
    auth_decision_totals(worker->auth, totals);
    size_t cap = cache.len + 256;
    char *body = h2o_mem_alloc_pool(&req->pool, cap);
    int n = snprintf(body, cap,
                     "%.*s,\"access_decisions\":{\"owner\":%" PRIu64 ",\"grant\":%" PRIu64 ",\"public\":%" PRIu64
                     ",\"denied\":%" PRIu64 ",\"unauthenticated\":%" PRIu64 "}}",
                     (int)(cache.len - 1), cache.base, totals[AUTH_DECISION_OWNER], totals[AUTH_DECISION_GRANT],
                     totals[AUTH_DECISION_PUBLIC], totals[AUTH_DECISION_DENIED], totals[AUTH_DECISION_UNAUTHENTICATED]);
    return h2o_iovec_init(body, n > 0 && (size_t)n < cap ? (size_t)n : 0);
}

static void on_stats_caller(caller_t *caller)
{
    h2o_req_t *req = caller->req;
    worker_t *worker = caller->worker;
    const auth_identity_t *who = &caller->identity;
    const char *identity = who->name[0] != '\0' ? h2o_strdup(&req->pool, who->name, SIZE_MAX).base : "";
    if (who->kind == AUTH_INVALID || who->kind == AUTH_UNAVAILABLE) {
        caller_refuse(caller, ERROR_FORMAT_JSON);
        log_answer(req, identity, "unauthenticated", "admin endpoint: credentials not accepted");
        return;
    }
    if (!auth_is_admin(worker->auth, who)) {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_FORBIDDEN,
                       "Only the identities in auth.admins may read larder's statistics.");
        log_answer(req, identity, "denied", "admin endpoint: not an admin");
        return;
    }
    h2o_iovec_t body = stats_json(req, worker);
    send_admin_json(req, body.base, body.len);
    log_answer(req, identity, "admin", NULL);
}

static void on_admin_dispose(void *p)
{
    admin_request_t *a = p;
    caller_dispose(&a->caller);
}

void admin_answer(h2o_req_t *req, worker_t *worker)
{
    static const char health[] = "{\"status\":\"ok\"}";
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/_larder/healthz"))) {
        send_admin_json(req, health, sizeof(health) - 1);
        log_answer(req, NULL, NULL, NULL);
    } else if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/_larder/stats"))) {
        admin_request_t *a = h2o_mem_alloc_shared(&req->pool, sizeof(*a), on_admin_dispose);
        memset(a, 0, sizeof(*a));
        caller_identify(&a->caller, req, on_stats_caller);
    } else {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_NOT_FOUND, "No such larder endpoint.");
        log_answer(req, NULL, NULL, "no such larder endpoint");
    }
    (void)worker;
}
