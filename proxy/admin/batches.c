/*
 * batches.c - /_larder/v1/batches: a pipeline's batches, created, listed,
 * shown, extended and ended by their owners (or admins).
 *
 *   POST   /_larder/v1/batches              {"id"?, "ttl"?, "scratch_prefixes"?, "quota_bytes"?}: 201
 *   GET    /_larder/v1/batches              the caller's batches (an admin's: all)
 *   GET    /_larder/v1/batches/ID           one, with the objects it pinned
 *   POST   /_larder/v1/batches/ID:extend    {"ttl"?}: the heartbeat, to now + ttl
 *   DELETE /_larder/v1/batches/ID[?deleteOutputs=true]
 *          ends it, answering its byte totals; with deleteOutputs, first
 *          deletes upstream, with the caller's credentials, each object the
 *          batch wrote under its scratch prefixes, and drops it from the
 *          cache. A deletion upstream refuses leaves the batch as it was
 *          (502, naming the objects) so that the DELETE can be retried.
 *
 * Someone else's batch answers 404, as an unknown one: its existence is its
 * owner's business. Lifecycle of a request (batch_request_t, in the request's
 * pool): IDENTIFYING, then CHANGING while a lease call is with the store or
 * DELETING while an upstream deletion runs, then ANSWERED.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "admin_common.h"
#include "cache.h"
#include "exchange.h"
#include "gcs_error.h"
#include "route.h"
#include "target.h"

/* Objects a GET lists at most; the totals always count all of them. */
#define MAX_LISTED_OBJECTS 10000

typedef enum { BATCH_CREATE, BATCH_LIST, BATCH_SHOW, BATCH_EXTEND, BATCH_END, BATCH_BAD_PATH } batch_op_t;
typedef enum { BATCH_IDENTIFYING, BATCH_CHANGING, BATCH_DELETING, BATCH_ANSWERED } batch_request_state_t;

typedef struct output {
    const char *bucket, *name;
} output_t;

typedef struct batch_request {
    caller_t caller;
    batch_request_state_t state;
    batch_op_t op;
    const char *id;
    const char *identity; /* for the log */
    const char *access;
    json_t *body;
    cache_batch_t batch;
    lease_call_t *call;
    /* DELETE ?deleteOutputs=true: the outputs, deleted upstream one after another. */
    bool delete_outputs;
    output_t *outputs;
    size_t noutputs, next_output, outputs_deleted;
    exchange_t *exchange;
    json_t *failed;       /* outputs upstream would not delete */
    uint64_t written_objects, written_bytes;
} batch_request_t;

static worker_t *worker_of_request(batch_request_t *b)
{
    return b->caller.worker;
}

static cache_t *cache_of(batch_request_t *b)
{
    return worker_of_request(b)->cache;
}

static void refuse(batch_request_t *b, gcs_error_kind_t kind, const char *message, const char *why)
{
    b->state = BATCH_ANSWERED;
    gcs_error_send(b->caller.req, ERROR_FORMAT_JSON, kind, message);
    admin_log(b->caller.req, b->identity, b->access, why);
}

static void answer_json(batch_request_t *b, int status, json_t *doc)
{
    h2o_req_t *req = b->caller.req;
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        refuse(b, GCS_ERROR_INTERNAL, "Out of memory for the answer.", "batches: out of memory");
        return;
    }
    b->state = BATCH_ANSWERED;
    h2o_iovec_t body = h2o_strdup(&req->pool, text, SIZE_MAX);
    free(text);
    admin_send_json_as(req, status, status == 201 ? "Created" : "OK", body.base, body.len);
    admin_log(req, b->identity, b->access, NULL);
}

/* --- JSON of a batch --- */

static json_t *batch_json(const cache_batch_t *batch)
{
    char created[LOG_TIME_SIZE], expires[LOG_TIME_SIZE];
    log_time_rfc3339(batch->created_ms, created);
    log_time_rfc3339(batch->expires_at_ms, expires);
    json_t *scratch = json_array();
    for (size_t i = 0; i < batch->nscratch; i++)
        json_array_append_new(scratch, json_string(batch->scratch[i]));
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:I, s:I, s:I}", "id", batch->id, "owner", batch->owner,
                     "created_at", created, "expires_at", expires, "ttl", (json_int_t)(batch->ttl_ms / 1000),
                     "scratch_prefixes", scratch, "quota_bytes", (json_int_t)batch->quota_bytes, "pinned_objects",
                     (json_int_t)batch->pinned_objects, "pinned_bytes", (json_int_t)batch->pinned_bytes);
}

typedef struct object_list {
    json_t *objects;
    const cache_batch_t *batch;
    uint64_t written_objects, written_bytes;
    output_t *outputs; /* NULL: not collecting */
    size_t noutputs, cap;
    h2o_mem_pool_t *pool;
    bool truncated, failed;
} object_list_t;

static bool add_output(object_list_t *l, const char *bucket, const char *name)
{
    if (l->noutputs == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 16;
        output_t *grown = h2o_mem_alloc_pool(l->pool, cap * sizeof(*grown));
        if (l->noutputs != 0)
            memcpy(grown, l->outputs, l->noutputs * sizeof(*grown));
        l->outputs = grown;
        l->cap = cap;
    }
    l->outputs[l->noutputs++] = (output_t){h2o_strdup(l->pool, bucket, SIZE_MAX).base,
                                           h2o_strdup(l->pool, name, SIZE_MAX).base};
    return true;
}

static bool on_object(void *ctx, const char *bucket, const char *name, uint32_t marks, uint64_t bytes)
{
    object_list_t *l = ctx;
    bool written = (marks & CACHE_BATCH_WRITTEN) != 0;
    if (written) {
        l->written_objects++;
        l->written_bytes += bytes;
        if (l->pool != NULL && cache_batch_is_scratch(l->batch, bucket, name))
            add_output(l, bucket, name);
    }
    if (l->objects == NULL)
        return true;
    if (json_array_size(l->objects) == MAX_LISTED_OBJECTS) {
        l->truncated = true;
        return true;
    }
    size_t len = strlen(bucket) + strlen(name) + 8;
    char *url = malloc(len);
    if (url == NULL) {
        l->failed = true;
        return false;
    }
    snprintf(url, len, "gs://%s/%s", bucket, name);
    json_array_append_new(l->objects, json_pack("{s:s, s:I, s:b, s:b}", "url", url, "bytes", (json_int_t)bytes,
                                                "read", (marks & CACHE_BATCH_READ) != 0, "written", written));
    free(url);
    return true;
}

/* --- GET --- */

static void show(batch_request_t *b)
{
    object_list_t l = {.objects = json_array(), .batch = &b->batch};
    int rc = cache_batch_objects(cache_of(b), b->id, on_object, &l);
    json_t *doc = batch_json(&b->batch);
    if (rc != STORE_OK || l.failed || doc == NULL) {
        json_decref(l.objects);
        json_decref(doc);
        refuse(b, GCS_ERROR_UNAVAILABLE, "The batch's objects could not be read from larder's store.", "batch show");
        return;
    }
    json_object_set_new(doc, "objects", l.objects);
    json_object_set_new(doc, "objects_truncated", json_boolean(l.truncated));
    json_object_set_new(doc, "written_objects", json_integer((json_int_t)l.written_objects));
    json_object_set_new(doc, "written_bytes", json_integer((json_int_t)l.written_bytes));
    answer_json(b, 200, doc);
}

typedef struct list_ctx {
    json_t *batches;
    const auth_identity_t *who;
    bool admin;
} list_ctx_t;

static bool on_listed(void *ctx, const cache_batch_t *batch)
{
    list_ctx_t *l = ctx;
    if (l->admin || (l->who->kind == AUTH_IDENTIFIED && strcmp(batch->owner, l->who->name) == 0))
        json_array_append_new(l->batches, batch_json(batch));
    return true;
}

static void list(batch_request_t *b)
{
    h2o_req_t *req = b->caller.req;
    list_ctx_t l = {.batches = json_array(), .who = &b->caller.identity,
                    .admin = auth_is_admin(worker_of_request(b)->auth, &b->caller.identity)};
    if (cache_batch_list(cache_of(b), &req->pool, on_listed, &l) != STORE_OK) {
        json_decref(l.batches);
        refuse(b, GCS_ERROR_UNAVAILABLE, "The batches could not be read from larder's store.", "batch list");
        return;
    }
    answer_json(b, 200, json_pack("{s:o}", "batches", l.batches));
}

/* --- changes --- */

/* The store decided a change: answer with the batch as it is now. */
static void on_changed(void *ctx, int result)
{
    batch_request_t *b = ctx;
    b->call = NULL;
    if (result != STORE_OK) {
        refuse(b, result == STORE_NOT_FOUND ? GCS_ERROR_NOT_FOUND : GCS_ERROR_UNAVAILABLE,
               result == STORE_NOT_FOUND ? "No such batch." : "larder's store could not record the batch.",
               "batch change failed");
        return;
    }
    cache_batch_t now;
    if (cache_batch_get(cache_of(b), &b->caller.req->pool, b->id, &now) != STORE_OK) {
        refuse(b, GCS_ERROR_UNAVAILABLE, "The batch was recorded but could not be read back.", "batch read back");
        return;
    }
    answer_json(b, b->op == BATCH_CREATE ? 201 : 200, batch_json(&now));
}

static void change_queued(batch_request_t *b, lease_call_t *call)
{
    if (call == NULL) {
        refuse(b, GCS_ERROR_UNAVAILABLE, "larder's store is not taking changes.", "batch change not queued");
        return;
    }
    b->state = BATCH_CHANGING;
    b->call = call;
}

/* "ttl": seconds, or a string with a unit ("10m"); *seconds untouched when absent. NULL or what is wrong. */
static const char *ttl_of(json_t *body, const conf_t *conf, uint64_t *seconds)
{
    json_t *ttl = json_object_get(body, "ttl");
    if (ttl == NULL)
        return NULL;
    bool ok = json_is_integer(ttl) ? json_integer_value(ttl) > 0 && (*seconds = (uint64_t)json_integer_value(ttl), true)
                                   : json_is_string(ttl) && conf_parse_seconds(json_string_value(ttl), seconds);
    if (!ok || *seconds == 0)
        return "ttl is a positive number of seconds, or a string such as \"600\", \"10m\", \"2h\" or \"1d\".";
    if (*seconds > conf->batches.max_ttl)
        return "ttl is longer than this larder allows (batches.max_ttl).";
    return NULL;
}

/* The batch a create body asks for, into b->batch; NULL or what is wrong. */
static const char *parse_create(batch_request_t *b, const conf_t *conf)
{
    h2o_mem_pool_t *pool = &b->caller.req->pool;
    json_t *body = b->body;
    if (body != NULL && !json_is_object(body))
        return "The body must be a JSON object: {\"id\", \"ttl\", \"scratch_prefixes\", \"quota_bytes\"}, all optional.";
    cache_batch_t *batch = &b->batch;
    memset(batch, 0, sizeof(*batch));
    json_t *id = json_object_get(body, "id");
    if (id != NULL && (!json_is_string(id) || !cache_batch_id_valid(json_string_value(id), strlen(json_string_value(id)))))
        return "id must be 1 to 128 letters, digits, '.', '_', '~' or '-'.";
    if (id != NULL)
        snprintf(batch->id, sizeof(batch->id), "%s", json_string_value(id));
    else
        cache_new_id('b', batch->id);
    uint64_t ttl = conf->batches.default_ttl;
    const char *bad = ttl_of(body, conf, &ttl);
    if (bad != NULL)
        return bad;
    json_t *quota = json_object_get(body, "quota_bytes");
    batch->quota_bytes = conf->batches.default_quota;
    if (quota != NULL && !(json_is_integer(quota) && json_integer_value(quota) >= 0 &&
                           (batch->quota_bytes = (uint64_t)json_integer_value(quota), true)) &&
        !(json_is_string(quota) && conf_parse_size(json_string_value(quota), &batch->quota_bytes)))
        return "quota_bytes is a number of bytes, or a string such as \"10GiB\".";
    json_t *scratch = json_object_get(body, "scratch_prefixes");
    if (scratch != NULL && !json_is_array(scratch))
        return "scratch_prefixes is a list of \"gs://BUCKET/PREFIX\" strings.";
    batch->scratch = h2o_mem_alloc_pool(pool, sizeof(*batch->scratch) * (json_array_size(scratch) + 1));
    for (size_t i = 0; i < json_array_size(scratch); i++) {
        const char *p = json_string_value(json_array_get(scratch, i));
        const char *slash = p != NULL && strncmp(p, "gs://", 5) == 0 ? strchr(p + 5, '/') : NULL;
        if (slash == NULL || slash == p + 5)
            return "scratch_prefixes is a list of \"gs://BUCKET/PREFIX\" strings.";
        batch->scratch[batch->nscratch++] = p;
    }
    int64_t now = worker_unix_ms();
    batch->owner = b->caller.identity.name;
    batch->created_ms = now;
    batch->ttl_ms = (int64_t)ttl * 1000;
    batch->expires_at_ms = now + batch->ttl_ms;
    b->id = batch->id;
    return NULL;
}

static void create(batch_request_t *b)
{
    worker_t *worker = worker_of_request(b);
    if (b->caller.identity.kind != AUTH_IDENTIFIED) {
        refuse(b, GCS_ERROR_UNAUTHENTICATED, "A batch belongs to an identity: call with a bearer token.",
               "batch create: anonymous");
        return;
    }
    const char *bad = parse_create(b, worker->conf);
    if (bad != NULL) {
        refuse(b, GCS_ERROR_BAD_REQUEST, bad, "batch create: bad request");
        return;
    }
    cache_batch_t existing;
    int rc = cache_batch_get(worker->cache, &b->caller.req->pool, b->id, &existing);
    if (rc != STORE_NOT_FOUND) {
        refuse(b, rc == STORE_OK ? GCS_ERROR_CONFLICT : GCS_ERROR_UNAVAILABLE,
               rc == STORE_OK ? "A batch with this id is live already." : "larder's store could not be read.",
               "batch create: exists");
        return;
    }
    change_queued(b, cache_batch_put(worker->cache, worker, &b->batch, on_changed, b));
}

static void extend(batch_request_t *b)
{
    worker_t *worker = worker_of_request(b);
    if (b->body != NULL && !json_is_object(b->body)) {
        refuse(b, GCS_ERROR_BAD_REQUEST, "The body, if any, must be a JSON object: {\"ttl\"}.", "batch extend");
        return;
    }
    uint64_t ttl = (uint64_t)(b->batch.ttl_ms / 1000);
    const char *bad = ttl_of(b->body, worker->conf, &ttl);
    if (bad != NULL) {
        refuse(b, GCS_ERROR_BAD_REQUEST, bad, "batch extend: bad ttl");
        return;
    }
    int64_t until = worker_unix_ms() + (int64_t)ttl * 1000;
    change_queued(b, cache_batch_extend(worker->cache, worker, b->id, until, on_changed, b));
}

/* --- DELETE --- */

static void on_ended(void *ctx, int result)
{
    batch_request_t *b = ctx;
    b->call = NULL;
    if (result != STORE_OK && result != STORE_NOT_FOUND) {
        refuse(b, GCS_ERROR_UNAVAILABLE, "larder's store could not end the batch.", "batch end failed");
        return;
    }
    json_t *doc = batch_json(&b->batch);
    json_object_set_new(doc, "written_objects", json_integer((json_int_t)b->written_objects));
    json_object_set_new(doc, "written_bytes", json_integer((json_int_t)b->written_bytes));
    json_object_set_new(doc, "outputs_deleted", json_integer((json_int_t)b->outputs_deleted));
    answer_json(b, 200, doc);
}

static void end_batch(batch_request_t *b)
{
    worker_t *worker = worker_of_request(b);
    change_queued(b, cache_batch_end(worker->cache, worker, b->id, on_ended, b));
}

static void delete_next_output(batch_request_t *b);

static void on_output_deleted(exchange_t *x, void *ctx)
{
    batch_request_t *b = ctx;
    exchange_state_t st = exchange_state(x);
    if (st != EXCHANGE_DONE && st != EXCHANGE_FAILED)
        return;
    const output_t *o = &b->outputs[b->next_output++];
    int status = st == EXCHANGE_DONE ? exchange_status(x) : 0;
    exchange_free(x);
    b->exchange = NULL;
    /* 404: gone already, which is what was asked. */
    if ((status >= 200 && status < 300) || status == 404) {
        cache_drop(cache_of(b), o->bucket, o->name);
        b->outputs_deleted++;
    } else {
        json_array_append_new(b->failed, json_pack("{s:s, s:s, s:i}", "bucket", o->bucket, "name", o->name,
                                                   "status", status));
    }
    delete_next_output(b);
}

static void delete_next_output(batch_request_t *b)
{
    if (b->next_output == b->noutputs) {
        if (json_array_size(b->failed) == 0) {
            end_batch(b);
            return;
        }
        json_t *doc = json_pack("{s:{s:i, s:s, s:O}}", "error", "code", 502, "message",
                                "Upstream did not delete every output; the batch stays, and the DELETE can be retried.",
                                "failed", b->failed);
        b->state = BATCH_ANSWERED;
        char *text = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        h2o_req_t *req = b->caller.req;
        h2o_iovec_t body = h2o_strdup(&req->pool, text != NULL ? text : "{}", SIZE_MAX);
        free(text);
        admin_send_json_as(req, 502, "Bad Gateway", body.base, body.len);
        admin_log(req, b->identity, b->access, "batch delete: outputs not deleted");
        return;
    }
    const output_t *o = &b->outputs[b->next_output];
    worker_t *worker = worker_of_request(b);
    h2o_req_t *req = b->caller.req;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    char *url = target_json_object_url(worker->conf->upstream.base_url, o->bucket, o->name, NULL);
    char *authorization = NULL;
    if (i != -1) {
        h2o_iovec_t v = req->headers.entries[i].value;
        authorization = h2o_mem_alloc_pool(&req->pool, v.len + 16);
        snprintf(authorization, v.len + 16, "Authorization: %.*s", (int)v.len, v.base);
    }
    const char *extra[] = {authorization, NULL};
    exchange_request_t request = {.url = url, .method = h2o_iovec_init(H2O_STRLIT("DELETE")), .extra = extra};
    b->exchange = url != NULL ? exchange_start(worker, &request, on_output_deleted, b) : NULL;
    free(url);
    if (b->exchange == NULL) {
        refuse(b, GCS_ERROR_BAD_GATEWAY, "Upstream could not be asked to delete the batch's outputs.",
               "batch delete: upstream not asked");
        return;
    }
    b->state = BATCH_DELETING;
}

static void end(batch_request_t *b)
{
    object_list_t l = {.batch = &b->batch, .pool = b->delete_outputs ? &b->caller.req->pool : NULL};
    if (cache_batch_objects(cache_of(b), b->id, on_object, &l) != STORE_OK) {
        refuse(b, GCS_ERROR_UNAVAILABLE, "The batch's objects could not be read from larder's store.", "batch end");
        return;
    }
    b->written_objects = l.written_objects;
    b->written_bytes = l.written_bytes;
    b->outputs = l.outputs;
    b->noutputs = l.noutputs;
    if ((b->failed = json_array()) == NULL) {
        refuse(b, GCS_ERROR_INTERNAL, "Out of memory.", "batch end");
        return;
    }
    delete_next_output(b);
}

/* --- the entry --- */

static void on_caller(caller_t *caller)
{
    batch_request_t *b = H2O_STRUCT_FROM_MEMBER(batch_request_t, caller, caller);
    h2o_req_t *req = caller->req;
    worker_t *worker = caller->worker;
    if ((b->identity = admin_accepted_caller(caller)) == NULL) {
        b->state = BATCH_ANSWERED;
        return;
    }
    b->access = auth_is_admin(worker->auth, &caller->identity) ? "admin" : "owner";
    if (worker->cache == NULL) {
        refuse(b, GCS_ERROR_UNAVAILABLE, "Batches need the cache, which is off.", "batches: no cache");
        return;
    }
    if (b->op == BATCH_CREATE || b->op == BATCH_LIST) {
        (b->op == BATCH_CREATE ? create : list)(b);
        return;
    }
    int rc = cache_batch_get(worker->cache, &req->pool, b->id, &b->batch);
    bool own = rc == STORE_OK && caller->identity.kind == AUTH_IDENTIFIED &&
               strcmp(b->batch.owner, caller->identity.name) == 0;
    if (rc == STORE_ERROR) {
        refuse(b, GCS_ERROR_UNAVAILABLE, "larder's store could not be read.", "batch lookup");
        return;
    }
    if (!own && (rc != STORE_OK || !auth_is_admin(worker->auth, &caller->identity))) {
        refuse(b, GCS_ERROR_NOT_FOUND, "No such batch.", "batch: unknown or not the caller's");
        return;
    }
    b->access = own ? "owner" : "admin";
    switch (b->op) {
    case BATCH_SHOW:
        show(b);
        break;
    case BATCH_EXTEND:
        extend(b);
        break;
    default:
        end(b);
        break;
    }
}

static void on_dispose(void *p)
{
    batch_request_t *b = p;
    caller_dispose(&b->caller);
    lease_call_cancel(b->call);
    if (b->exchange != NULL)
        exchange_free(b->exchange);
    json_decref(b->body);
    json_decref(b->failed);
}

/* Which operation the method and path name; the id (decoded, in pool) for those on one batch. */
static batch_op_t op_of(h2o_req_t *req, const char **id)
{
    static const char base[] = "/_larder/v1/batches";
    const char *p = req->path_normalized.base + sizeof(base) - 1;
    size_t len = req->path_normalized.len - (sizeof(base) - 1);
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    bool post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    bool del = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("DELETE"));
    if (len <= 1)
        return post ? BATCH_CREATE : get ? BATCH_LIST : BATCH_BAD_PATH;
    p++, len--;
    bool extend_op = len > 7 && memcmp(p + len - 7, ":extend", 7) == 0;
    if (extend_op)
        len -= 7;
    if (!cache_batch_id_valid(p, len))
        return BATCH_BAD_PATH;
    *id = h2o_strdup(&req->pool, p, len).base;
    if (extend_op)
        return post ? BATCH_EXTEND : BATCH_BAD_PATH;
    return get ? BATCH_SHOW : del ? BATCH_END : BATCH_BAD_PATH;
}

void batches_answer(h2o_req_t *req)
{
    batch_request_t *b = h2o_mem_alloc_shared(&req->pool, sizeof(*b), on_dispose);
    memset(b, 0, sizeof(*b));
    b->op = op_of(req, &b->id);
    if (b->op == BATCH_BAD_PATH) {
        gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_NOT_FOUND,
                       "No such batches endpoint: POST or GET /_larder/v1/batches, GET or DELETE "
                       "/_larder/v1/batches/ID, POST /_larder/v1/batches/ID:extend.");
        admin_log(req, NULL, NULL, "batches: no such endpoint");
        return;
    }
    if (req->entity.base != NULL && req->entity.len > 0) {
        b->body = json_loadb(req->entity.base, req->entity.len, 0, NULL);
        if (b->body == NULL) {
            gcs_error_send(req, ERROR_FORMAT_JSON, GCS_ERROR_BAD_REQUEST, "The body is not JSON.");
            admin_log(req, NULL, NULL, "batches: body not JSON");
            return;
        }
    }
    size_t len;
    const char *flag = route_query_param(req->path.base, req->path.len, "deleteOutputs", &len);
    b->delete_outputs = flag != NULL && h2o_memis(flag, len, H2O_STRLIT("true"));
    caller_identify(&b->caller, req, on_caller);
}
