/*
 * writes.c - a write through larder, from its caller's identity to what the
 * cache holds once upstream answered.
 *
 * Lifecycle (write_state_t; cache_write_t lives in the request's pool):
 *
 *   IDENTIFYING  the caller's credentials go to auth: the uploader owns what
 *                it writes. A bad token gets 401 here, as for reads; one
 *                that cannot be checked is forwarded, and nothing it writes
 *                is cached (the entry would have no owner).
 *   FORWARDED    the objects the write names are marked in flight, so reads
 *                of them go to upstream until it answered (the old copy may
 *                be about to change, and a fill started now may predate the
 *                change); the request goes upstream as it came.
 *   ANSWERED     upstream's answer was read whole, before the client sees
 *                it: an upload, copy or compose it confirmed becomes an entry
 *                (upload.c), a resumable or XML multipart step feeds its
 *                session; every other object named is invalidated when the
 *                write may have taken effect, and all are unmarked.
 *
 * In a batch (X-Larder-Batch), the caller must be allowed to use it before
 * anything goes upstream, and a write whose size is known up front and
 * would pass the batch's quota is refused (507) before it is made; once
 * upstream confirmed it, the object is pinned into the batch, marked
 * written, and the answer waits for that pin's commit (batch_use.h). The
 * pin is queued after the entry the write made, so that its commit holds
 * the entry's record too.
 *
 * "May have taken effect": a 2xx, or no answer at all (a timeout, a reset:
 * the object's state is unknown). A definite refusal (a 4xx, a 5xx with an
 * error body, a resumable session's 308) leaves the cached copy as it was,
 * since upstream says the object did not change. /batch/storage/v1 is read
 * part by part: each write part's object is marked, and invalidated when
 * its own part took effect.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch_use.h"
#include "caller.h"
#include "fetch.h"
#include "forward.h"
#include "invalidate.h"
#include "multipart.h"
#include "state.h"
#include "upload.h"
#include "upload_complete.h"
#include "upload_session.h"
#include "writes.h"

#define MAX_WRITE_KEYS 64

typedef enum { WRITE_IDENTIFYING, WRITE_FORWARDED, WRITE_ANSWERED } write_state_t;

typedef struct write_key {
    store_key_t key;
    const char *content_id; /* batch parts: the part's Content-ID, to match its response; NULL otherwise */
    size_t content_id_len;
    bool done;              /* settled: invalidated, made an entry, or known refused */
} write_key_t;

typedef struct cache_write {
    write_state_t state;
    h2o_req_t *req;
    cache_t *cache;
    const target_t *target;
    caller_t caller;
    forward_t *forward;
    upload_request_t upload;
    upload_wait_t completion; /* the answer waits for the entry to be made whole (upload_complete.c) */
    batch_use_t batch_use;    /* X-Larder-Batch */
    unsigned holds;           /* what the answer still waits for: the entry's completion, the batch pin */
    write_key_t keys[MAX_WRITE_KEYS];
    size_t nkeys;
    bool batch;
    bool batch_answered; /* the batch response was read part by part */
} cache_write_t;

static bool took_effect(int status)
{
    return status == 0 || (status >= 200 && status < 300);
}

static void add_key(cache_write_t *w, const char *bucket, const char *name, const char *content_id, size_t id_len)
{
    if (w->nkeys == MAX_WRITE_KEYS || bucket == NULL || name == NULL || name[0] == '\0')
        return;
    write_key_t *k = &w->keys[w->nkeys++];
    store_key_make(&k->key, bucket, strlen(bucket), name, strlen(name));
    k->content_id = content_id;
    k->content_id_len = id_len;
}

/* --- batches --- */

typedef struct batch_scan {
    cache_write_t *write;
    size_t index; /* responses: the part's position, when it carries no Content-ID */
} batch_scan_t;

/* "<id>" or "id" without the angle brackets. */
static h2o_iovec_t bare_id(h2o_iovec_t id)
{
    if (id.len >= 2 && id.base[0] == '<' && id.base[id.len - 1] == '>')
        return h2o_iovec_init(id.base + 1, id.len - 2);
    return id;
}

/* One part of a batch request: "METHOD /storage/v1/... HTTP/1.1" and its headers. */
static void scan_request_part(void *ctx, const multipart_part_t *part)
{
    batch_scan_t *scan = ctx;
    cache_write_t *w = scan->write;
    h2o_iovec_t id = {NULL, 0};
    multipart_header(part->head, "content-id", &id);
    id = bare_id(id);
    const char *inner = part->body.base, *end = inner + part->body.len;
    const char *sp = part->has_body ? memchr(inner, ' ', part->body.len) : NULL;
    if (sp == NULL || h2o_memis(inner, (size_t)(sp - inner), H2O_STRLIT("GET")))
        return;
    const char *path = sp + 1, *path_end = memchr(path, ' ', (size_t)(end - path));
    if (path_end == NULL)
        return;
    const char *origin_end = memmem(path, (size_t)(path_end - path), "://", 3); /* a full URL: keep its path */
    if (origin_end != NULL && (path = memchr(origin_end + 3, '/', (size_t)(path_end - origin_end - 3))) == NULL)
        return;
    target_t t;
    target_parse(&t, &w->req->pool, path, (size_t)(path_end - path), NULL, 0, NULL);
    if (t.invalid != NULL)
        return;
    /* copyTo and rewriteTo change their destination, not the object the path starts with. */
    upload_request_t inner_upload = {.req = w->req, .target = &t};
    if (upload_destination_of(&inner_upload, t.object_suffix))
        add_key(w, inner_upload.bucket, inner_upload.name, id.base, id.len);
    else
        add_key(w, t.bucket, t.object, id.base, id.len);
}

/* One part of a batch response: invalidate its request's objects if its status says the write happened. */
static void scan_response_part(void *ctx, const multipart_part_t *part)
{
    batch_scan_t *scan = ctx;
    cache_write_t *w = scan->write;
    size_t index = scan->index++;
    const char *inner = part->body.base;
    if (part->body.len < 12 || memcmp(inner, "HTTP/", 5) != 0)
        return;
    const char *line_end = memchr(inner, '\n', part->body.len);
    int status = target_parse_status_line(inner, (size_t)((line_end != NULL ? line_end : inner + part->body.len) - inner));
    h2o_iovec_t id = {NULL, 0};
    bool has_id = multipart_header(part->head, "content-id", &id);
    id = bare_id(id);
    if (has_id && id.len > 9 && strncasecmp(id.base, "response-", 9) == 0)
        id = h2o_iovec_init(id.base + 9, id.len - 9);
    for (size_t i = 0; i < w->nkeys; i++) {
        write_key_t *k = &w->keys[i];
        bool match = has_id ? k->content_id != NULL && h2o_memis(k->content_id, k->content_id_len, id.base, id.len)
                            : i == index;
        if (!match || k->done)
            continue;
        k->done = true;
        if (took_effect(status))
            cache_invalidate(w->cache, &k->key);
    }
}

static h2o_iovec_t header_of(const h2o_headers_t *headers, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(headers, token, -1);
    return i != -1 ? headers->entries[i].value : h2o_iovec_init(NULL, 0);
}

/* --- the answer --- */

static bool holds(void *ctx, int status, const h2o_headers_t *headers)
{
    cache_write_t *w = ctx;
    (void)headers;
    if (w->batch)
        return status == 200;
    return (status >= 200 && status < 300) || status == 308;
}

static void release_one(cache_write_t *w)
{
    if (w->holds > 0 && --w->holds == 0)
        forward_release(w->forward);
}

/* The write stands, but its object is not held for the batch: the answer says why. */
static void add_pin_refusal(cache_write_t *w, h2o_iovec_t why)
{
    h2o_add_header_by_str(&w->req->pool, &w->req->res.headers, H2O_STRLIT("x-larder-batch-pin"), 0, NULL, why.base,
                          why.len);
}

static void on_written_pinned(batch_use_t *use, int result)
{
    cache_write_t *w = H2O_STRUCT_FROM_MEMBER(cache_write_t, batch_use, use);
    if (result == STORE_OK)
        batch_use_advertise(use, w->req);
    else /* the write happened: its answer stands, and says the object is not held for the batch */
        add_pin_refusal(w, result == STORE_QUOTA ? h2o_iovec_init(H2O_STRLIT("refused: over quota"))
                                                 : h2o_iovec_init(H2O_STRLIT("failed")));
    release_one(w);
}

/*
 * The object a confirmed write made: the request names it, or, for a
 * resumable upload's last PUT, its session (kept from the start) or else the
 * answer. A resumable upload joins the batch its start was in, where the
 * caller's right to it was checked: its PUTs carry no identity of their own,
 * and some clients (gcloud) send no extra headers with them.
 */
static bool object_written(cache_write_t *w, const char *body, size_t len, const char **bucket, const char **name)
{
    switch (w->upload.kind) {
    case UPLOAD_JSON:
    case UPLOAD_XML_PUT:
    case UPLOAD_XML_MULTIPART_COMPLETE:
    case UPLOAD_COPY:
    case UPLOAD_XML_COPY:
    case UPLOAD_COMPOSE:
        *bucket = w->upload.bucket;
        *name = w->upload.name;
        return *bucket != NULL && *name != NULL;
    case UPLOAD_RESUMABLE_CHUNK: {
        const char *batch;
        if (upload_session_object(w->cache, w->upload.session, &w->req->pool, bucket, name, &batch)) {
            w->batch_use.id = batch;
            return batch != NULL;
        }
        w->batch_use.id = NULL; /* not checked: a session larder does not keep is pinned nowhere */
        json_t *root = json_loadb(body, len, 0, NULL);
        const char *b = json_string_value(json_object_get(root, "bucket"));
        const char *n = json_string_value(json_object_get(root, "name"));
        *bucket = b != NULL ? h2o_strdup(&w->req->pool, b, SIZE_MAX).base : NULL;
        *name = n != NULL ? h2o_strdup(&w->req->pool, n, SIZE_MAX).base : NULL;
        json_decref(root);
        return *bucket != NULL && *name != NULL;
    }
    default:
        return false;
    }
}

/* The object a write upstream took in a batch made, to pin; named before upload_answered ends its session. */
static bool batch_object_written(cache_write_t *w, int status, const char *body, size_t len, const char **bucket,
                                 const char **name)
{
    bool resumable = w->upload.kind == UPLOAD_RESUMABLE_CHUNK; /* its batch is its session's */
    if (!(status >= 200 && status < 300) || (w->batch_use.id == NULL && !resumable))
        return false;
    return object_written(w, body, len, bucket, name) && w->batch_use.id != NULL;
}

/*
 * What the written object will count against the batch's quota: the size of
 * the entry the write made, which its fill knows before any of its chunks
 * commit; else a single-request upload's body. The pin's quota check cannot
 * rely on the store for it: the entry commits around the pin, not before.
 */
static uint64_t written_size(cache_write_t *w, const store_key_t *made)
{
    fetch_t *fill = made != NULL ? fetch_registry_newest(w->cache, made) : NULL;
    store_meta_t meta;
    bool known = fill != NULL && fetch_meta(fill, &meta);
    if (fill != NULL)
        fetch_release(fill);
    if (known) {
        uint64_t size = meta.size;
        store_meta_free(&meta);
        if (size != STORE_SIZE_UNKNOWN)
            return size;
    }
    return w->upload.kind == UPLOAD_JSON || w->upload.kind == UPLOAD_XML_PUT ? w->upload.media.len : 0;
}

/*
 * Upstream took a write in a batch: its object joins the batch, before the
 * client hears of it. Queued after the entry's record (upload_answered), so
 * the pin's commit is also the record's: a listing of the batch right after
 * the answer finds the object's size.
 */
static void pin_written(cache_write_t *w, const char *bucket, const char *name, const store_key_t *made)
{
    w->batch_use.on_pinned = on_written_pinned;
    if (batch_use_pin(&w->batch_use, w->req, bucket, name, CACHE_BATCH_WRITTEN, written_size(w, made)))
        w->holds++;
    else
        add_pin_refusal(w, h2o_iovec_init(H2O_STRLIT("failed")));
}

/* The object a JSON answer returns (a rewrite wraps it): invalidated, the write having made a new version. */
static void invalidate_returned(cache_write_t *w, const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *resource = json_object_get(root, "resource");
    if (resource == NULL)
        resource = root;
    const char *kind = json_string_value(json_object_get(resource, "kind"));
    const char *bucket = json_string_value(json_object_get(resource, "bucket"));
    const char *name = json_string_value(json_object_get(resource, "name"));
    if (kind != NULL && strcmp(kind, "storage#object") == 0 && bucket != NULL && name != NULL) {
        store_key_t key;
        store_key_make(&key, bucket, strlen(bucket), name, strlen(name));
        cache_invalidate(w->cache, &key);
    }
    json_decref(root);
}

static void on_whole(void *ctx, h2o_req_t *req, int status, const h2o_headers_t *headers, const char *body, size_t len)
{
    cache_write_t *w = ctx;
    (void)req;
    w->state = WRITE_ANSWERED;
    h2o_iovec_t boundary;
    if (w->batch) {
        if (status == 200 && multipart_boundary(header_of(headers, H2O_TOKEN_CONTENT_TYPE), &boundary)) {
            multipart_for_each(h2o_iovec_init(body, len), boundary, scan_response_part, &(batch_scan_t){w, 0});
            w->batch_answered = true;
        }
        return;
    }
    /*
     * An entry made from a partial answer (an XML write's, a fields= selection) is made whole with one
     * metadata GET: the client's answer waits for it, so that what it reads next is exactly upstream's.
     */
    forward_hold(w->forward);
    w->holds = 1;
    const char *bucket, *name;
    bool pin = batch_object_written(w, status, body, len, &bucket, &name);
    store_key_t made;
    bool made_entry = upload_answered(&w->upload, status, headers, body, len, &made);
    if (made_entry) {
        for (size_t i = 0; i < w->nkeys; i++)
            if (cache_same_key(&w->keys[i].key, &made))
                w->keys[i].done = true;
    } else if (status >= 200 && status < 300 && len > 0) {
        invalidate_returned(w, body, len);
    }
    if (pin)
        pin_written(w, bucket, name, made_entry ? &made : NULL);
    if (w->completion.completion != NULL)
        w->holds++;
    release_one(w);
}

static void on_completed(upload_wait_t *wait)
{
    cache_write_t *w = H2O_STRUCT_FROM_MEMBER(cache_write_t, completion, wait);
    release_one(w);
}

static const char *on_end(void *ctx, h2o_req_t *req, int status, bool complete)
{
    cache_write_t *w = ctx;
    (void)req, (void)complete;
    if (w->state == WRITE_FORWARDED && status != 0 && !(status >= 200 && status < 300) && !w->batch)
        upload_answered(&w->upload, status, NULL, NULL, 0, NULL); /* a refusal that streamed: sessions hear of it */
    w->state = WRITE_ANSWERED;
    for (size_t i = 0; i < w->nkeys; i++) {
        write_key_t *k = &w->keys[i];
        /* A batch whose answer was not read part by part: any part may have happened. */
        bool invalidate = !k->done && (w->batch ? !w->batch_answered : took_effect(status));
        if (invalidate)
            cache_invalidate(w->cache, &k->key);
        cache_write_unmark(w->cache, &k->key);
    }
    w->nkeys = 0;
    return NULL; /* upstream decides writes: no access decision of larder's */
}

static const forward_hooks_t write_hooks = {.holds = holds, .on_whole = on_whole, .on_end = on_end};

/* --- the start --- */

static void forward_write(cache_write_t *w)
{
    w->state = WRITE_FORWARDED;
    for (size_t i = 0; i < w->nkeys; i++)
        cache_write_mark(w->cache, &w->keys[i].key);
    const auth_identity_t *who = &w->caller.identity;
    w->forward = forward_start(w->req, w->target,
                  &(forward_options_t){.cache_state = "PASS", .hooks = &write_hooks, .ctx = w,
                                       .identity = h2o_strdup(&w->req->pool, who->name, SIZE_MAX).base});
}

/* The bytes a write will store, when its request says so before any goes upstream; 0 when it does not. */
static uint64_t announced_size(const cache_write_t *w)
{
    if (w->upload.kind == UPLOAD_JSON || w->upload.kind == UPLOAD_XML_PUT)
        return w->upload.media.len;
    if (w->upload.kind != UPLOAD_RESUMABLE_START)
        return 0;
    ssize_t i = h2o_find_header_by_str(&w->req->headers, H2O_STRLIT("x-upload-content-length"), -1);
    if (i == -1)
        return 0;
    size_t size = h2o_strtosize(w->req->headers.entries[i].value.base, w->req->headers.entries[i].value.len);
    return size != SIZE_MAX ? size : 0;
}

/*
 * A write that would take its batch past a quota is refused before it is
 * made (507). One whose size is not known yet (a resumable session that did
 * not announce it) is checked when its object is pinned, after upstream took it.
 */
static bool batch_room_for(cache_write_t *w)
{
    uint64_t size = w->batch_use.id != NULL ? announced_size(w) : 0;
    if (size == 0 || batch_use_has_room(&w->batch_use, w->req, size))
        return true;
    batch_use_refuse(&w->batch_use, w->req, STORE_QUOTA, w->target->route.error_format);
    return false;
}

static void on_caller_known(caller_t *caller)
{
    cache_write_t *w = H2O_STRUCT_FROM_MEMBER(cache_write_t, caller, caller);
    auth_kind_t kind = caller->identity.kind;
    if (kind == AUTH_INVALID) {
        w->state = WRITE_ANSWERED;
        caller_refuse(caller, w->target->route.error_format); /* GCS answers a bad token 401 */
        return;
    }
    if (!batch_use_check(&w->batch_use, w->req, &caller->identity, w->target->route.error_format) ||
        !batch_room_for(w)) {
        w->state = WRITE_ANSWERED;
        return;
    }
    w->upload.batch = w->batch_use.id; /* a resumable session remembers it for its last PUT */
    /* An identity larder could not check (HMAC, a signed URL, tokeninfo down) owns nothing: every read of the
     * entry asks upstream first, so it is safe to keep, and saves moving the bytes again. */
    w->upload.owner = h2o_strdup(&w->req->pool, caller_owner_name(caller), SIZE_MAX).base;
    forward_write(w);
}

static void on_dispose(void *p)
{
    cache_write_t *w = p;
    caller_dispose(&w->caller);
    batch_use_dispose(&w->batch_use);
    upload_complete_forget(&w->completion);
    if (w->state == WRITE_FORWARDED) /* the request went before forwarding ended: on_end was called already */
        for (size_t i = 0; i < w->nkeys; i++)
            cache_write_unmark(w->cache, &w->keys[i].key);
}

void cache_write_start(h2o_req_t *req, const target_t *target)
{
    cache_write_t *w = h2o_mem_alloc_shared(&req->pool, sizeof(*w), on_dispose);
    memset(w, 0, sizeof(*w));
    w->req = req;
    w->cache = worker_of(req)->cache;
    w->target = target;
    w->batch = target->route.api == ROUTE_BATCH;
    request_headers_t headers;
    request_headers_scan(&headers, &req->headers);
    batch_use_parse(&w->batch_use, &req->pool, &headers);
    h2o_iovec_t boundary;
    if (w->batch) {
        if (multipart_boundary(header_of(&req->headers, H2O_TOKEN_CONTENT_TYPE), &boundary))
            multipart_for_each(req->entity, boundary, scan_request_part, &(batch_scan_t){w, 0});
    } else {
        upload_request_parse(&w->upload, w->cache, req, target);
        w->completion.on_done = on_completed;
        w->upload.wait = &w->completion;
        if (upload_touches_object(&w->upload)) {
            if (w->upload.kind != UPLOAD_COPY) /* a copy's source stays as it was */
                add_key(w, target->bucket, target->object, NULL, 0);
            add_key(w, w->upload.bucket, w->upload.name, NULL, 0);
        }
    }
    if (w->upload.kind == UPLOAD_RESUMABLE_CHUNK || w->upload.kind == UPLOAD_RESUMABLE_CANCEL) {
        /* The session URL is the credential (the start's caller owns the object): a token that expired during
         * a long upload must not stop it, and no validation is needed. */
        forward_write(w);
        return;
    }
    caller_identify(&w->caller, req, on_caller_known);
}
