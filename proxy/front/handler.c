/*
 * handler.c - the one h2o handler: every request enters here.
 *
 * It accounts the request to its connection (the connection limit, HTTP/2
 * abuse), parses the target once, answers what larder answers by itself
 * (admin endpoints, unknown routes and methods, oversized heads, targets GCS
 * would refuse), and hands the rest to the cache or, with caching off, to
 * the pass-through forwarder. A listener marked "admin" serves larder's own
 * endpoints only: no GCS request ever goes through it.
 */
#include <stdio.h>
#include <string.h>

#include "access_log.h"
#include "cache.h"
#include "conn.h"
#include "forward.h"
#include "gcs_error.h"
#include "handler.h"
#include "target.h"

/*
 * h2o accepts request heads of up to ~400 KB. GCS object names are at most
 * 1024 bytes (3 KiB percent-encoded), so longer targets and heads are abuse.
 */
#define MAX_REQUEST_TARGET (16 * 1024)
#define MAX_REQUEST_HEADERS (64 * 1024)

static bool method_known(const h2o_iovec_t *method)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (h2o_memis(method->base, method->len, methods[i], strlen(methods[i])))
            return true;
    return false;
}

static void log_local_answer(h2o_req_t *req, route_api_t api, const char *why)
{
    access_log_local_answer(req, api, NULL, NULL, why);
}

static size_t request_header_bytes(const h2o_req_t *req)
{
    size_t total = 0;
    for (size_t i = 0; i != req->headers.size; i++)
        total += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return total;
}

/* Answers an error in the API's shape; always returns true (answered). */
static bool refuse(h2o_req_t *req, const target_t *t, gcs_error_kind_t kind, const char *message, const char *why)
{
    gcs_error_send(req, t->route.error_format, kind, message);
    log_local_answer(req, t->route.api, why);
    return true;
}

/* Refuses what no GCS API would accept; returns true when it answered. */
static bool refuse_malformed(h2o_req_t *req, const target_t *t)
{
    if (req->path.len > MAX_REQUEST_TARGET)
        return refuse(req, t, GCS_ERROR_URI_TOO_LONG, NULL, "request target too long");
    if (request_header_bytes(req) > MAX_REQUEST_HEADERS)
        return refuse(req, t, GCS_ERROR_HEADERS_TOO_LARGE, NULL, "request headers too large");
    if (t->invalid != NULL)
        return refuse(req, t, GCS_ERROR_BAD_REQUEST, t->invalid, t->invalid);
    if (t->route.api == ROUTE_NONE)
        return refuse(req, t, GCS_ERROR_NOT_FOUND, "Not Found", "unknown route");
    if (!method_known(&req->method))
        return refuse(req, t, GCS_ERROR_METHOD_NOT_ALLOWED, NULL, "method not allowed");
    return false;
}

int handler_on_req(h2o_handler_t *handler, h2o_req_t *req)
{
    (void)handler;
    worker_t *worker = worker_of(req);
    target_t *t = h2o_mem_alloc_pool(&req->pool, sizeof(*t));
    target_parse(t, &req->pool, req->path.base, req->path.len, req->authority.base, req->authority.len,
                 worker->conf->virtual_host_suffix);
    switch (conn_request_begin(req)) {
    case CONN_ADMIT:
        break;
    case CONN_REFUSED:
        refuse(req, t, GCS_ERROR_UNAVAILABLE, "Too many connections to this proxy; retry later.",
               "over max_client_connections");
        return 0;
    case CONN_ABUSIVE:
        refuse(req, t, GCS_ERROR_UNAVAILABLE, NULL, "HTTP/2 connection over its request rate");
        return 0;
    }
    const listener_context_t *listener = H2O_STRUCT_FROM_MEMBER(listener_context_t, h2o, req->conn->ctx);
    bool admin_listener = worker->conf->listeners[listener->index].admin;
    if (t->route.api == ROUTE_ADMIN || admin_listener) {
        admin_answer(req, worker, admin_listener); /* logs its own answer, which may come later */
        return 0;
    }
    if (refuse_malformed(req, t))
        return 0;
    if (worker->cache != NULL)
        cache_handle(req, t);
    else
        forward_start(req, t, &(forward_options_t){.cache_state = "PASS"});
    return 0;
}
