/*
 * handler.c - the one h2o handler: every request enters here.
 *
 * It classifies the request, answers what larder answers by itself (admin
 * endpoints, unknown routes and methods, oversized heads), drops cached
 * copies for writes, asks the cache for reads, and forwards the rest.
 */
#include <stdio.h>
#include <string.h>

#include "access_log.h"
#include "forward.h"
#include "gcs_error.h"
#include "handler.h"

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
    if (!worker_of(req)->conf->log.access_log)
        return;
    access_log_write(&(access_log_entry_t){.req = req,
                                           .api = api,
                                           .status = req->res.status,
                                           .bytes_sent = req->res.content_length,
                                           .upstream_ms = -1,
                                           .cache = "PASS",
                                           .error = why});
}

static size_t request_header_bytes(const h2o_req_t *req)
{
    size_t total = 0;
    for (size_t i = 0; i != req->headers.size; i++)
        total += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return total;
}

/* Refuses what no GCS API would accept; returns true when it answered. */
static bool refuse_malformed(h2o_req_t *req, const route_t *route)
{
    const char *why = NULL;
    if (req->path.len > MAX_REQUEST_TARGET) {
        gcs_error_send(req, route->error_format, GCS_ERROR_URI_TOO_LONG, NULL);
        why = "request target too long";
    } else if (request_header_bytes(req) > MAX_REQUEST_HEADERS) {
        gcs_error_send(req, route->error_format, GCS_ERROR_HEADERS_TOO_LARGE, NULL);
        why = "request headers too large";
    } else if (route->api == ROUTE_NONE) {
        gcs_error_send(req, route->error_format, GCS_ERROR_NOT_FOUND, "Not Found");
        why = "unknown route";
    } else if (!method_known(&req->method)) {
        gcs_error_send(req, route->error_format, GCS_ERROR_METHOD_NOT_ALLOWED, NULL);
        why = "method not allowed";
    }
    if (why != NULL)
        log_local_answer(req, route->api, why);
    return why != NULL;
}

int handler_on_req(h2o_handler_t *handler, h2o_req_t *req)
{
    (void)handler;
    worker_t *worker = worker_of(req);
    route_t route;
    route_classify(&route, req->path.base, req->path.len, req->authority.base, req->authority.len,
                   worker->conf->virtual_host_suffix);

    if (route.api == ROUTE_ADMIN) {
        admin_answer(req, worker);
        log_local_answer(req, route.api, NULL);
        return 0;
    }
    if (refuse_malformed(req, &route))
        return 0;

    cache_plan_t *plan = NULL;
    if (worker->cache != NULL) {
        bool reads = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                     h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
        if (!reads) /* drop the cached copy now; the answer drops it again once upstream confirmed */
            forward_cache_invalidate_for_write(req, worker, &route);
        else if ((plan = forward_cache_plan(req, worker, &route)) == NULL)
            return 0; /* answered from the cache */
    }
    return forward_start(req, worker, &route, plan);
}

