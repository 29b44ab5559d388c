/*
 * prefetch_api.c - /_larder/v1/prefetch and /_larder/v1/dags: what
 * pipelines announce they will read (the prefetcher does the rest).
 *
 *   POST   /_larder/v1/prefetch                     {"objects": [{"url", "range"?}], "batch"?}: 202
 *   GET    /_larder/v1/prefetch/ID                  its progress
 *   DELETE /_larder/v1/prefetch/ID
 *   POST   /_larder/v1/dags                         a DAG: 201, planning starts at once
 *   GET    /_larder/v1/dags[/ID]                    the caller's DAGs (an admin's: all), or one
 *   POST   /_larder/v1/dags/ID/stages/S:start|:done Kariz's notify_stage_submission
 *   DELETE /_larder/v1/dags/ID                      notify_dag_completion: its inputs are released
 *
 * Everything is fetched with the submitter's credentials and owned by it, so
 * a caller must be identified (a bearer token); someone else's job answers
 * 404, as an unknown one.
 */
#include <jansson.h>
#include <string.h>

#include "admin_common.h"
#include "gcs_error.h"
#include "prefetcher.h"

typedef struct prefetch_request {
    caller_t caller;
    json_t *body;
    bool dag;         /* /dags, else /prefetch */
    const char *rest; /* the path after /dags or /prefetch: "", "/ID", "/ID/stages/S:start" */
    size_t rest_len;
} prefetch_request_t;

static void answer(h2o_req_t *req, const char *identity, int status, json_t *doc)
{
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_INTERNAL, "Out of memory for the answer.");
        admin_log(req, identity, NULL, "prefetch: out of memory");
        return;
    }
    h2o_iovec_t body = h2o_strdup(&req->pool, text, SIZE_MAX);
    free(text);
    static const char *const reasons[] = {[0] = "OK", [1] = "Created", [2] = "Accepted"};
    admin_send_json_as(req, status, reasons[status - 200 < 3 ? status - 200 : 0], body.base, body.len);
    admin_log(req, identity, "owner", NULL);
}

static void refuse(h2o_req_t *req, const char *identity, int status, const char *message)
{
    gcs_error_kind_t kind = status == 404   ? GCS_ERROR_NOT_FOUND
                            : status == 409 ? GCS_ERROR_CONFLICT
                            : status == 503 ? GCS_ERROR_UNAVAILABLE
                            : status == 405 ? GCS_ERROR_METHOD_NOT_ALLOWED
                            : status == 500 ? GCS_ERROR_INTERNAL
                                            : GCS_ERROR_BAD_REQUEST;
    gcs_error_send(req, ERROR_FORMAT_JSON, kind, message);
    admin_log(req, identity, NULL, message);
}

static bool method_is(h2o_req_t *req, const char *method)
{
    return h2o_memis(req->method.base, req->method.len, method, strlen(method));
}

/* "/ID/stages/S:start": the stage and the event; false when rest is not one. */
static bool stage_event(h2o_req_t *req, const char *rest, size_t len, const char **id, const char **stage,
                        prefetch_stage_event_t *event)
{
    const char *marker = memmem(rest, len, "/stages/", 8);
    if (marker == NULL || marker == rest)
        return false;
    const char *s = marker + 8, *end = rest + len;
    size_t slen = (size_t)(end - s);
    if (slen > 6 && memcmp(end - 6, ":start", 6) == 0)
        *event = PREFETCH_STAGE_START, slen -= 6;
    else if (slen > 5 && memcmp(end - 5, ":done", 5) == 0)
        *event = PREFETCH_STAGE_DONE, slen -= 5;
    else
        return false;
    *id = target_percent_decode(&req->pool, rest + 1, (size_t)(marker - rest - 1));
    *stage = target_percent_decode(&req->pool, s, slen);
    return true;
}

static void on_job_path(prefetch_request_t *r, prefetcher_t *p, const prefetch_caller_t *who, const char *identity)
{
    h2o_req_t *req = r->caller.req;
    const char *id, *stage, *error = NULL;
    prefetch_stage_event_t event;
    if (r->dag && method_is(req, "POST") && stage_event(req, r->rest, r->rest_len, &id, &stage, &event)) {
        int status = prefetcher_notify(p, who, id, stage, event, &error);
        if (status != 0)
            refuse(req, identity, status, error);
        else
            answer(req, identity, 200, prefetcher_show(p, who, id, true));
        return;
    }
    id = target_percent_decode(&req->pool, r->rest + 1, r->rest_len - 1);
    if (strchr(id, '/') != NULL) {
        refuse(req, identity, 404, "No such prefetch endpoint.");
    } else if (method_is(req, "GET")) {
        json_t *state = prefetcher_show(p, who, id, r->dag);
        if (state == NULL)
            refuse(req, identity, 404, r->dag ? "No such DAG." : "No such prefetch.");
        else
            answer(req, identity, 200, state);
    } else if (method_is(req, "DELETE")) {
        if (prefetcher_end(p, who, id, r->dag) != 0)
            refuse(req, identity, 404, r->dag ? "No such DAG." : "No such prefetch.");
        else
            answer(req, identity, 200, json_pack("{s:s, s:s}", "id", id, "state", "ended"));
    } else {
        refuse(req, identity, 405, "GET, DELETE, or POST .../stages/STAGE:start or :done.");
    }
}

static void on_caller(caller_t *caller)
{
    prefetch_request_t *r = H2O_STRUCT_FROM_MEMBER(prefetch_request_t, caller, caller);
    h2o_req_t *req = caller->req;
    const char *identity = admin_accepted_caller(caller);
    if (identity == NULL)
        return;
    prefetcher_t *p = caller->worker->prefetch;
    if (p == NULL) {
        refuse(req, identity, 503, "Prefetching needs the cache and a client listener; this larder has neither.");
        return;
    }
    if (caller->identity.kind != AUTH_IDENTIFIED) {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_UNAUTHENTICATED,
                       "Prefetching reads with the caller's credentials: call with a bearer token.");
        admin_log(req, identity, NULL, "prefetch: anonymous");
        return;
    }
    ssize_t a = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    prefetch_caller_t who = {.identity = caller->identity.name,
                             .authorization = a != -1 ? h2o_strdup(&req->pool, req->headers.entries[a].value.base,
                                                                   req->headers.entries[a].value.len).base
                                                      : NULL,
                             .admin = auth_is_admin(caller->worker->auth, &caller->identity)};
    if (r->rest_len > 1) {
        on_job_path(r, p, &who, identity);
        return;
    }
    if (method_is(req, "GET") && r->dag) {
        answer(req, identity, 200, prefetcher_list(p, &who));
        return;
    }
    if (!method_is(req, "POST")) {
        refuse(req, identity, 405, r->dag ? "POST a DAG, or GET the list." : "POST a prefetch list.");
        return;
    }
    const char *error = "The body is not JSON.";
    int status = 400;
    json_t *state = r->body == NULL ? NULL
                    : r->dag        ? prefetcher_submit_dag(p, &who, r->body, &error, &status)
                                    : prefetcher_submit_list(p, &who, r->body, &error, &status);
    if (state == NULL)
        refuse(req, identity, status, error);
    else
        answer(req, identity, r->dag ? 201 : 202, state);
}

static void on_dispose(void *ptr)
{
    prefetch_request_t *r = ptr;
    caller_dispose(&r->caller);
    json_decref(r->body);
}

void prefetch_api_answer(h2o_req_t *req, bool dag)
{
    prefetch_request_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_dispose);
    memset(r, 0, sizeof(*r));
    r->dag = dag;
    size_t base = strlen(dag ? "/_larder/v1/dags" : "/_larder/v1/prefetch");
    r->rest = req->path_normalized.base + base;
    r->rest_len = req->path_normalized.len - base;
    if (r->rest_len == 1) /* a trailing slash */
        r->rest_len = 0;
    if (req->entity.base != NULL && req->entity.len > 0)
        r->body = json_loadb(req->entity.base, req->entity.len, 0, NULL);
    caller_identify(&r->caller, req, on_caller);
}
