/*
 * admin.c - larder's own endpoints under /_larder/ ("_larder" can never be a
 * bucket name, so these never shadow an object).
 *
 *   GET /_larder/healthz   {"status":"ok"} while the process serves; open to all
 *   GET /_larder/readyz    200 when larder can serve: not draining, the store
 *                          open and not out of space, upstream not failing to
 *                          answer; 503 with the reason otherwise; open to all
 *   GET /_larder/stats     the store's usage, the cache's counters and the
 *                          access decisions, as JSON
 *   GET /_larder/metrics   the same and more, in Prometheus' text format
 *   GET /_larder/v1/usage[?user=U]  cached, served, fetched and pinned bytes,
 *                          of one user (admins, or the user) or of everyone
 *                          (admins)
 *   /_larder/v1/batches[/ID[:extend]]  batches: create, list, show, extend
 *                          and end them (batches.c)
 *   /_larder/v1/dags, /_larder/v1/prefetch  what pipelines will read, for
 *                          the prefetcher (prefetch_api.c)
 *   POST /_larder/v1/purge {"user": U} | {"bucket": B, "prefix": P} |
 *                          {"object": "gs://B/O"} | {"all": true}: drops
 *                          those cached objects, answers how many and their
 *                          bytes; admins, or a user purging their own
 *
 * stats and metrics answer auth.admins only on a client-facing listener (403
 * to others, 401 to an invalid token). A listener marked "admin" serves
 * these endpoints only, without credentials, and also as /metrics, /healthz
 * and /readyz, where Prometheus and Kubernetes look by default.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "access_log.h"
#include "admin_common.h"
#include "cache.h"
#include "caller.h"
#include "gcs_error.h"
#include "handler.h"
#include "metrics.h"
#include "target.h"
#include "usage.h"

/* The cache's figures with the access decisions added. */
static h2o_iovec_t stats_json(h2o_req_t *req, worker_t *worker)
{
    h2o_iovec_t cache = cache_stats_json(worker->cache, &req->pool);
    uint64_t totals[AUTH_DECISIONS];
    auth_decision_totals(worker->auth, totals);
    store_hot_stats_t hot;
    server_hot_stats(worker->server, &hot);
    size_t cap = cache.len + 512;
    char *body = h2o_mem_alloc_pool(&req->pool, cap);
    int n = snprintf(body, cap,
                     "%.*s,\"hot_hits\":%" PRIu64 ",\"hot_loads\":%" PRIu64 ",\"hot_evictions\":%" PRIu64
                     ",\"hot_bytes\":%" PRIu64 ",\"hot_objects\":%" PRIu64 ",\"access_decisions\":{\"owner\":%" PRIu64
                     ",\"grant\":%" PRIu64 ",\"public\":%" PRIu64 ",\"denied\":%" PRIu64 ",\"unauthenticated\":%" PRIu64
                     "}}",
                     (int)(cache.len - 1), cache.base, hot.hits, hot.loads, hot.evictions, hot.bytes, hot.objects,
                     totals[AUTH_DECISION_OWNER], totals[AUTH_DECISION_GRANT], totals[AUTH_DECISION_PUBLIC],
                     totals[AUTH_DECISION_DENIED], totals[AUTH_DECISION_UNAUTHENTICATED]);
    return h2o_iovec_init(body, n > 0 && (size_t)n < cap ? (size_t)n : 0);
}

/* How long after upstream last failed to answer (with no answer since) larder reports itself not ready. */
#define UPSTREAM_FAILURE_WINDOW_MS 30000

/* Why larder cannot serve now, or NULL when it can. */
static const char *unready_because(worker_t *worker)
{
    if (worker->stopping)
        return "draining: larder is shutting down";
    if (worker->conf->cache.enabled && worker->cache == NULL)
        return "the store could not be opened";
    if (worker->cache != NULL && cache_out_of_space(worker->cache))
        return "the store is out of space";
    int64_t answered = 0, failed = 0;
    server_t *server = worker->server;
    for (size_t i = 0; i < server_worker_count(server); i++) {
        worker_t *w = server_worker_at(server, i);
        int64_t a = atomic_load_explicit(&w->upstream_answered_ms, memory_order_relaxed);
        int64_t f = atomic_load_explicit(&w->upstream_failed_ms, memory_order_relaxed);
        answered = a > answered ? a : answered;
        failed = f > failed ? f : failed;
    }
    if (failed > answered && worker_unix_ms() - failed < UPSTREAM_FAILURE_WINDOW_MS)
        return "upstream did not answer the last request sent to it";
    return NULL;
}

static void answer_readyz(h2o_req_t *req, worker_t *worker)
{
    const char *why = unready_because(worker);
    char body[256];
    int n = snprintf(body, sizeof(body), why == NULL ? "{\"status\":\"ready\"}" : "{\"status\":\"unready\",\"reason\":\"%s\"}",
                     why);
    char *copy = h2o_strdup(&req->pool, body, (size_t)n).base;
    req->res.status = why == NULL ? 200 : 503;
    req->res.reason = why == NULL ? "OK" : "Service Unavailable";
    req->res.content_length = (size_t)n;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, copy, (size_t)n);
    admin_log(req, NULL, NULL, why);
}

static void answer_metrics(h2o_req_t *req, worker_t *worker)
{
    h2o_iovec_t text = metrics_exposition(req, worker);
    if (text.base == NULL) {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_INTERNAL, "Out of memory for the metrics.");
        return;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = text.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    h2o_send_inline(req, text.base, text.len);
}

static void answer_stats(h2o_req_t *req, worker_t *worker)
{
    h2o_iovec_t body = stats_json(req, worker);
    admin_send_json(req, body.base, body.len);
}

typedef void (*admin_endpoint_fn)(h2o_req_t *req, worker_t *worker);

typedef struct admin_only {
    caller_t caller;
    admin_endpoint_fn answer;
} admin_only_t;

static void on_admin_caller(caller_t *caller)
{
    admin_only_t *a = H2O_STRUCT_FROM_MEMBER(admin_only_t, caller, caller);
    const char *identity = admin_accepted_caller(caller), *access;
    if (identity == NULL ||
        !admin_permitted(caller, NULL, identity, "Only the identities in auth.admins may read larder's statistics and metrics.",
                   &access))
        return;
    a->answer(caller->req, caller->worker);
    admin_log(caller->req, identity, access, NULL);
}

static void on_admin_dispose(void *p)
{
    admin_only_t *a = p;
    caller_dispose(&a->caller);
}

/* Answers for auth.admins only: the caller is identified first. */
static void admins_only(h2o_req_t *req, admin_endpoint_fn answer)
{
    admin_only_t *a = h2o_mem_alloc_shared(&req->pool, sizeof(*a), on_admin_dispose);
    memset(a, 0, sizeof(*a));
    a->answer = answer;
    caller_identify(&a->caller, req, on_admin_caller);
}

/* --- usage --- */

typedef struct usage_request {
    caller_t caller;
    const char *user; /* ?user=, decoded; NULL: everyone */
} usage_request_t;

static void on_usage_caller(caller_t *caller)
{
    usage_request_t *u = H2O_STRUCT_FROM_MEMBER(usage_request_t, caller, caller);
    h2o_req_t *req = caller->req;
    worker_t *worker = caller->worker;
    const char *identity = admin_accepted_caller(caller), *access;
    if (identity == NULL ||
        !admin_permitted(caller, u->user, identity,
                   "Only the identities in auth.admins may read others' usage; a user may read their own.", &access))
        return;
    user_usage_t totals;
    h2o_iovec_t body = {NULL, 0};
    if (user_usage_init(&totals) == 0) {
        if (usage_totals(worker, u->user, &totals) == 0)
            body = usage_json(req, &totals, u->user);
        user_usage_dispose(&totals);
    }
    if (body.base == NULL) {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_INTERNAL, "The usage could not be read.");
        admin_log(req, identity, access, "usage: failed");
        return;
    }
    admin_send_json(req, body.base, body.len);
    admin_log(req, identity, access, NULL);
}

static void on_usage_dispose(void *ptr)
{
    caller_dispose(&((usage_request_t *)ptr)->caller);
}

static void answer_usage(h2o_req_t *req)
{
    usage_request_t *u = h2o_mem_alloc_shared(&req->pool, sizeof(*u), on_usage_dispose);
    memset(u, 0, sizeof(*u));
    size_t len;
    const char *user = route_query_param(req->path.base, req->path.len, "user", &len);
    if (user != NULL && len > 0)
        u->user = target_percent_decode(&req->pool, user, len);
    caller_identify(&u->caller, req, on_usage_caller);
}

/* --- purge --- */

typedef struct purge_request {
    caller_t caller;
    json_t *body;
} purge_request_t;

/* The filter a purge body names (strings borrowed from body); NULL when it is fine, else what is wrong. */
static const char *purge_filter_of(json_t *body, h2o_mem_pool_t *pool, cache_purge_filter_t *f)
{
    memset(f, 0, sizeof(*f));
    if (!json_is_object(body))
        return "The body must be a JSON object: {\"user\"}, {\"bucket\", \"prefix\"}, {\"object\"} or {\"all\": true}.";
    json_t *user = json_object_get(body, "user"), *bucket = json_object_get(body, "bucket");
    json_t *prefix = json_object_get(body, "prefix"), *object = json_object_get(body, "object");
    bool all = json_is_true(json_object_get(body, "all"));
    int kinds = (user != NULL) + (bucket != NULL) + (object != NULL) + all;
    if (kinds != 1 || (prefix != NULL && bucket == NULL))
        return "Name exactly one of user, bucket (with an optional prefix), object or all.";
    if ((user != NULL && !json_is_string(user)) || (bucket != NULL && !json_is_string(bucket)) ||
        (prefix != NULL && !json_is_string(prefix)) || (object != NULL && !json_is_string(object)))
        return "user, bucket, prefix and object are strings.";
    f->owner = json_string_value(user);
    f->bucket = json_string_value(bucket);
    f->prefix = json_string_value(prefix);
    if (object != NULL) {
        const char *url = json_string_value(object), *slash;
        if (strncmp(url, "gs://", 5) != 0 || (slash = strchr(url + 5, '/')) == NULL || slash == url + 5 ||
            slash[1] == '\0')
            return "object must be gs://BUCKET/OBJECT.";
        f->bucket = h2o_strdup(pool, url + 5, (size_t)(slash - url - 5)).base;
        f->name = slash + 1;
    }
    return NULL;
}

static void on_purge_caller(caller_t *caller)
{
    purge_request_t *p = H2O_STRUCT_FROM_MEMBER(purge_request_t, caller, caller);
    h2o_req_t *req = caller->req;
    worker_t *worker = caller->worker;
    const char *identity = admin_accepted_caller(caller);
    if (identity == NULL)
        return;
    cache_purge_filter_t filter;
    const char *invalid = purge_filter_of(p->body, &req->pool, &filter);
    if (invalid != NULL) {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_BAD_REQUEST, invalid);
        admin_log(req, identity, NULL, "purge: bad request");
        return;
    }
    const char *access;
    if (!admin_permitted(caller, filter.owner, identity,
                   "Only the identities in auth.admins may purge, but a user their own objects ({\"user\"}).", &access))
        return;
    uint64_t objects = 0, bytes = 0;
    if (worker->cache != NULL && cache_purge(worker->cache, &filter, &objects, &bytes) != STORE_OK) {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_INTERNAL, "The purge could not read the whole store.");
        admin_log(req, identity, "admin", "purge: store scan failed");
        return;
    }
    char *body = h2o_mem_alloc_pool(&req->pool, 96);
    int n = snprintf(body, 96, "{\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", objects, bytes);
    admin_send_json(req, body, (size_t)n);
    admin_log(req, identity, access, NULL);
}

static void on_purge_dispose(void *ptr)
{
    purge_request_t *p = ptr;
    caller_dispose(&p->caller);
    json_decref(p->body);
}

static void answer_purge(h2o_req_t *req)
{
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_METHOD_NOT_ALLOWED, NULL);
        admin_log(req, NULL, NULL, "purge: not a POST");
        return;
    }
    purge_request_t *p = h2o_mem_alloc_shared(&req->pool, sizeof(*p), on_purge_dispose);
    memset(p, 0, sizeof(*p));
    p->body = req->entity.base != NULL ? json_loadb(req->entity.base, req->entity.len, 0, NULL) : NULL;
    caller_identify(&p->caller, req, on_purge_caller);
}

static bool path_is(h2o_req_t *req, const char *path)
{
    return h2o_memis(req->path_normalized.base, req->path_normalized.len, path, strlen(path));
}

static bool path_starts(h2o_req_t *req, const char *prefix)
{
    size_t len = strlen(prefix);
    const h2o_iovec_t *p = &req->path_normalized;
    return p->len >= len && memcmp(p->base, prefix, len) == 0 && (p->len == len || p->base[len] == '/');
}

void admin_answer(h2o_req_t *req, worker_t *worker, bool admin_listener)
{
    static const char health[] = "{\"status\":\"ok\"}";
    if (path_is(req, "/_larder/healthz") || (admin_listener && path_is(req, "/healthz"))) {
        admin_send_json(req, health, sizeof(health) - 1);
        admin_log(req, NULL, NULL, NULL);
    } else if (path_is(req, "/_larder/readyz") || (admin_listener && path_is(req, "/readyz"))) {
        answer_readyz(req, worker);
    } else if (path_is(req, "/_larder/metrics") || (admin_listener && path_is(req, "/metrics"))) {
        if (admin_listener) {
            answer_metrics(req, worker);
            admin_log(req, NULL, "admin", NULL);
        } else {
            admins_only(req, answer_metrics);
        }
    } else if (path_is(req, "/_larder/v1/usage")) {
        answer_usage(req);
    } else if (path_is(req, "/_larder/v1/purge")) {
        answer_purge(req);
    } else if (path_starts(req, "/_larder/v1/batches")) {
        batches_answer(req);
    } else if (path_starts(req, "/_larder/v1/dags") || path_starts(req, "/_larder/v1/prefetch")) {
        prefetch_api_answer(req, path_starts(req, "/_larder/v1/dags"));
    } else if (path_is(req, "/_larder/stats")) {
        if (admin_listener) {
            answer_stats(req, worker);
            admin_log(req, NULL, "admin", NULL);
        } else {
            admins_only(req, answer_stats);
        }
    } else {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_NOT_FOUND, "No such larder endpoint.");
        admin_log(req, NULL, NULL, "no such larder endpoint");
    }
}
