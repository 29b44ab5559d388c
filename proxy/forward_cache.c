/*
 * forward_cache.c - what the cache asks of a forwarded request.
 *
 * On the way in it decides HIT (answered here, never forwarded), FOLLOW (wait
 * for a fill already under way), REVALIDATE (forward with If-None-Match on
 * the cached ETag, with the caller's own credentials), MISS (forward, widen a
 * Range to chunk boundaries, fill the store) or PASS. On the way back it turns
 * a 304 into a hit, starts the fill from the response head, cuts the client's
 * window out of a widened range, and records JSON resources.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "forward.h"

/* fill_time is kept in unix milliseconds, so a ttl window is exact. */
static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void plan_dispose(void *p)
{
    cache_plan_t *plan = p;
    if (plan->lead) /* a fill that never started still holds the single-flight slot */
        cache_fill_end(plan->cache, &plan->key, false);
    cache_request_dispose(&plan->creq);
    if (plan->have_cached)
        store_meta_free(&plan->cached);
    free(plan->revalidate_etag);
}

static void find_header(h2o_req_t *req, const h2o_token_t *token, const char **value, size_t *len)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    *value = i != -1 ? req->headers.entries[i].value.base : NULL;
    *len = i != -1 ? req->headers.entries[i].value.len : 0;
}

static void gather_headers(h2o_req_t *req, cache_request_headers_t *h)
{
    memset(h, 0, sizeof(*h));
    find_header(req, H2O_TOKEN_RANGE, &h->range, &h->range_len);
    find_header(req, H2O_TOKEN_IF_NONE_MATCH, &h->if_none_match, &h->if_none_match_len);
    find_header(req, H2O_TOKEN_IF_MATCH, &h->if_match, &h->if_match_len);
    find_header(req, H2O_TOKEN_IF_MODIFIED_SINCE, &h->if_modified_since, &h->if_modified_since_len);
    find_header(req, H2O_TOKEN_IF_UNMODIFIED_SINCE, &h->if_unmodified_since, &h->if_unmodified_since_len);
    find_header(req, H2O_TOKEN_ACCEPT_ENCODING, &h->accept_encoding, &h->accept_encoding_len);
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-goog-if-generation-match"), -1);
    if (i != -1) {
        h->x_goog_if_generation_match = req->headers.entries[i].value.base;
        h->x_goog_if_generation_match_len = req->headers.entries[i].value.len;
    }
}

/* A Range that does not start on a chunk boundary is widened so the answer can fill whole chunks. */
static void widen_range(cache_plan_t *plan)
{
    const cache_range_t *range = &plan->creq.range;
    if (plan->creq.kind != CACHE_READ_MEDIA || !range->present || range->suffix)
        return;
    plan->widened = true;
    plan->fetch_first = range->first - range->first % STORE_CHUNK_SIZE;
    plan->fetch_last = range->last == UINT64_MAX ? UINT64_MAX : (range->last / STORE_CHUNK_SIZE + 1) * STORE_CHUNK_SIZE - 1;
}

static void forward_after_all(h2o_req_t *req, const cache_request_t *creq)
{
    cache_plan_t *plan = H2O_STRUCT_FROM_MEMBER(cache_plan_t, creq, creq);
    plan->kind = PLAN_MISS;
    widen_range(plan);
    forward_start(req, worker_of(req), &plan->route, plan);
}

static bool entry_serves(const cache_plan_t *plan, const store_meta_t *meta, const record_t *record, cache_t *cache)
{
    const cache_request_t *c = &plan->creq;
    if (record == NULL)
        return false;
    if (c->kind == CACHE_READ_METADATA)
        return record_has_resource(record);
    if (record_media_view(record, c->flavour) == NULL)
        return false;
    if (meta->content_encoding != NULL && strcasecmp(meta->content_encoding, "gzip") == 0 && !c->accepts_gzip)
        return false;
    /* Chunks of a fill under way (or just finished) are on their way into the store: the hit waits for them. */
    return cache_covers(cache, &plan->key, meta, &c->range) || cache_fill_active(cache, &plan->key, NULL);
}

static bool is_fresh(const cache_plan_t *plan, const store_meta_t *meta, const conf_t *conf)
{
    /* A read that names its generation reads bytes that can never change. */
    if (plan->creq.generation >= 0)
        return true;
    const cache_policy_t *policy = conf_cache_policy_for(conf, plan->creq.bucket, strlen(plan->creq.bucket),
                                                         plan->creq.name, strlen(plan->creq.name));
    if (policy->kind == CACHE_POLICY_IMMUTABLE)
        return true;
    return policy->kind == CACHE_POLICY_TTL && unix_ms() - meta->fill_time < (int64_t)policy->ttl_seconds * 1000;
}

/* Until tokens are validated, only the credentials that filled an entry may skip revalidation. */
static bool caller_owns(const cache_plan_t *plan, const store_meta_t *meta)
{
    return meta->owner != NULL && (strcmp(meta->owner, plan->caller) == 0 || strcmp(meta->owner, "anonymous") == 0);
}

static void plan_revalidation(cache_plan_t *plan, store_meta_t *meta, const record_t *record)
{
    const record_view_t *view = record_media_view(record, plan->creq.flavour);
    if (plan->creq.kind == CACHE_READ_MEDIA && view != NULL)
        plan->revalidate_etag = strdup(view->etag);
    if (plan->revalidate_etag == NULL) {
        /* Metadata has no conditional GET: fetch it again, it is small. */
        plan->kind = PLAN_MISS;
        store_meta_free(meta);
        return;
    }
    plan->kind = PLAN_REVALIDATE;
    plan->cached = *meta;
    plan->have_cached = true;
}

cache_plan_t *forward_cache_plan(h2o_req_t *req, worker_t *worker, const route_t *route)
{
    cache_plan_t *plan = h2o_mem_alloc_shared(&req->pool, sizeof(*plan), plan_dispose);
    memset(plan, 0, sizeof(*plan));
    plan->route = *route;
    plan->cache = worker->cache;
    plan->kind = PLAN_PASS;
    cache_request_headers_t headers;
    gather_headers(req, &headers);
    cache_request_parse(&plan->creq, route, req->method.base, req->method.len, req->path.base, req->path.len, &headers);
    if (plan->creq.kind == CACHE_READ_NONE)
        return plan;
    store_key_make(&plan->key, plan->creq.bucket, strlen(plan->creq.bucket), plan->creq.name,
                   strlen(plan->creq.name));
    cache_caller_id(req, plan->caller, sizeof(plan->caller));

    store_meta_t meta;
    if (store_meta_get(worker->cache->store, &plan->key, &meta) == STORE_OK) {
        if (plan->creq.generation >= 0 && plan->creq.generation != meta.generation) {
            store_meta_free(&meta); /* an older generation: read it from upstream, keep the current one */
            return plan;
        }
        record_t *record = record_cache_get(&worker->records, &plan->key, meta.generation, meta.resource_json);
        if (entry_serves(plan, &meta, record, worker->cache)) {
            if (is_fresh(plan, &meta, worker->conf) && caller_owns(plan, &meta)) {
                int rc = cache_serve_hit(req, worker, &plan->creq, &plan->key, &meta, record, HIT_FRESH,
                                         forward_after_all);
                record_release(record);
                if (rc == 0)
                    return NULL;
            } else {
                plan_revalidation(plan, &meta, record);
                record_release(record);
                widen_range(plan);
                return plan;
            }
        } else {
            record_release(record);
            store_meta_free(&meta);
        }
    }
    if (plan->creq.kind == CACHE_READ_MEDIA && cache_fill_active(worker->cache, &plan->key, plan->caller)) {
        cache_serve_hit(req, worker, &plan->creq, &plan->key, NULL, NULL, HIT_FOLLOW, forward_after_all);
        return NULL;
    }
    plan->kind = PLAN_MISS;
    widen_range(plan);
    if (plan->creq.kind == CACHE_READ_MEDIA && !plan->creq.range.present && !plan->creq.head)
        plan->lead = cache_fill_lead(worker->cache, &plan->key, plan->caller);
    return plan;
}

/* --- the upstream request --- */

static int append_line(struct curl_slist **list, const char *line)
{
    struct curl_slist *grown = curl_slist_append(*list, line);
    if (grown == NULL)
        return -1;
    *list = grown;
    return 0;
}

int forward_cache_request_headers(forward_t *self, struct curl_slist **list)
{
    cache_plan_t *plan = self->plan;
    char line[512];
    if (plan == NULL)
        return 0;
    if (plan->kind == PLAN_REVALIDATE) {
        snprintf(line, sizeof(line), "If-None-Match: %s", plan->revalidate_etag);
        if (append_line(list, line) != 0)
            return -1;
    }
    if (plan->widened) {
        if (plan->fetch_last == UINT64_MAX)
            snprintf(line, sizeof(line), "Range: bytes=%llu-", (unsigned long long)plan->fetch_first);
        else
            snprintf(line, sizeof(line), "Range: bytes=%llu-%llu", (unsigned long long)plan->fetch_first,
                     (unsigned long long)plan->fetch_last);
        if (append_line(list, line) != 0)
            return -1;
    }
    return 0;
}

bool forward_cache_drops_header(const forward_t *self, const h2o_iovec_t *name)
{
    const cache_plan_t *plan = self->plan;
    if (plan == NULL)
        return false;
    if (plan->widened && h2o_lcstris(name->base, name->len, H2O_STRLIT("range")))
        return true;
    /* larder asks its own question; it answers the client's from the cache. */
    return plan->kind == PLAN_REVALIDATE && (h2o_lcstris(name->base, name->len, H2O_STRLIT("if-none-match")) ||
                                             h2o_lcstris(name->base, name->len, H2O_STRLIT("if-modified-since")));
}

/* --- the response --- */

static const char *response_header(forward_t *self, const char *name, size_t *len)
{
    ssize_t i = h2o_find_header_by_str(&self->req->res.headers, name, strlen(name), -1);
    if (i == -1)
        return NULL;
    const h2o_iovec_t *v = &self->req->res.headers.entries[i].value;
    if (len != NULL)
        *len = v->len;
    return h2o_strdup(&self->req->pool, v->base, v->len).base; /* NUL-terminated copy */
}

static int64_t header_int64(forward_t *self, const char *name)
{
    const char *v = response_header(self, name, NULL);
    return v != NULL ? strtoll(v, NULL, 10) : -1;
}

/* x-goog-hash may come once with both values or once per value. */
static void parse_hashes(forward_t *self, store_meta_t *meta)
{
    h2o_headers_t *headers = &self->req->res.headers;
    for (ssize_t i = -1; (i = h2o_find_header_by_str(headers, H2O_STRLIT("x-goog-hash"), i)) != -1;) {
        char *value = h2o_strdup(&self->req->pool, headers->entries[i].value.base, headers->entries[i].value.len).base;
        for (char *save = NULL, *part = strtok_r(value, ",", &save); part != NULL; part = strtok_r(NULL, ",", &save)) {
            while (*part == ' ')
                part++;
            if (strncmp(part, "crc32c=", 7) == 0)
                meta->crc32c = part + 7;
            else if (strncmp(part, "md5=", 4) == 0)
                meta->md5 = part + 4;
        }
    }
}

/* "bytes A-B/T" */
static bool parse_content_range(const char *v, uint64_t *first, uint64_t *last, uint64_t *total)
{
    unsigned long long a, b, t;
    if (v == NULL || sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) != 3 || b < a || b >= t)
        return false;
    *first = a, *last = b, *total = t;
    return true;
}

static bool cacheable_by_headers(forward_t *self, const store_meta_t *meta)
{
    const conf_t *conf = self->worker->conf;
    const char *stored_encoding = response_header(self, "x-goog-stored-content-encoding", NULL);
    bool stored_gzip = stored_encoding != NULL && strcasecmp(stored_encoding, "gzip") == 0;
    bool sent_gzip = meta->content_encoding != NULL && strcasecmp(meta->content_encoding, "gzip") == 0;
    if (stored_gzip != sent_gzip) /* decompressive transcoding: these are not the stored bytes */
        return false;
    if (meta->generation < 0 || meta->size > conf->cache.max_object_size)
        return false;
    if (conf->cache.honor_no_store && meta->cache_control != NULL &&
        (strcasestr(meta->cache_control, "no-store") != NULL || strcasestr(meta->cache_control, "private") != NULL))
        return false;
    return true;
}

/* The newest record of this generation, queued or committed, so other views survive a merge. Caller frees. */
static char *existing_record(forward_t *self, int64_t generation)
{
    cache_plan_t *plan = self->plan;
    store_meta_t stored = {0};
    bool have_stored = false;
    const char *committed = NULL;
    if (plan->have_cached && plan->cached.generation == generation) {
        committed = plan->cached.resource_json;
    } else if (store_meta_get(self->worker->cache->store, &plan->key, &stored) == STORE_OK) {
        have_stored = true;
        if (stored.generation == generation)
            committed = stored.resource_json;
    }
    char *latest = cache_record_latest(self->worker->cache, &plan->key, generation, committed);
    if (have_stored)
        store_meta_free(&stored);
    return latest;
}

/* Reads the media response head into meta; false when the body must not be stored. */
static bool media_meta(forward_t *self, store_meta_t *meta, uint64_t *start)
{
    h2o_req_t *req = self->req;
    memset(meta, 0, sizeof(*meta));
    meta->generation = header_int64(self, "x-goog-generation");
    meta->metageneration = header_int64(self, "x-goog-metageneration");
    meta->etag = (char *)response_header(self, "etag", NULL);
    meta->content_type = (char *)response_header(self, "content-type", NULL);
    meta->content_encoding = (char *)response_header(self, "content-encoding", NULL);
    meta->cache_control = (char *)response_header(self, "cache-control", NULL);
    meta->content_disposition = (char *)response_header(self, "content-disposition", NULL);
    meta->content_language = (char *)response_header(self, "content-language", NULL);
    meta->last_modified = (char *)response_header(self, "last-modified", NULL);
    meta->owner = self->plan->caller;
    meta->fill_time = unix_ms();
    parse_hashes(self, meta);
    uint64_t last;
    if (self->status == 206) {
        if (!parse_content_range(response_header(self, "content-range", NULL), start, &last, &meta->size))
            return false;
    } else {
        *start = 0;
        meta->size = req->res.content_length;
        if (meta->size == SIZE_MAX)
            return false;
    }
    int64_t stored_length = header_int64(self, "x-goog-stored-content-length");
    if (stored_length >= 0 && (uint64_t)stored_length != meta->size)
        return false;
    return meta->etag != NULL && *start % STORE_CHUNK_SIZE == 0 && cacheable_by_headers(self, meta);
}

static void start_fill(forward_t *self)
{
    cache_plan_t *plan = self->plan;
    store_meta_t meta;
    uint64_t start;
    if (!media_meta(self, &meta, &start))
        return;
    json_t *headers = cache_capture_headers(&self->req->res.headers);
    char *existing = existing_record(self, meta.generation);
    char *record = headers != NULL ? cache_record_merge(existing, plan->creq.flavour, meta.etag, headers, NULL, NULL)
                                   : NULL;
    json_decref(headers);
    free(existing);
    if (record == NULL)
        return;
    meta.bucket = plan->creq.bucket;
    meta.name = plan->creq.name;
    meta.resource_json = record;
    self->filling = fill_start(&self->fill, self->worker->cache, &plan->key, &meta, start, plan->lead);
    if (self->filling) {
        plan->lead = false; /* the fill owns the single-flight slot now */
        cache_record_note(self->worker->cache, &plan->key, meta.generation, record);
    }
    free(record);
}

/* Cuts the client's range out of a widened upstream answer; false if it is unsatisfiable. */
static bool open_window(forward_t *self, uint64_t *total_out)
{
    h2o_req_t *req = self->req;
    uint64_t first, last, total;
    if (self->status == 206) {
        if (!parse_content_range(response_header(self, "content-range", NULL), &self->body_offset, &last, &total))
            return true; /* not what was asked: pass it on as is */
    } else {
        total = req->res.content_length;
        self->body_offset = 0;
    }
    *total_out = total;
    if (!cache_range_resolve(&self->plan->creq.range, total, &first, &last))
        return false;
    self->windowed = true;
    self->window_first = first;
    self->window_end = last + 1;
    req->res.status = 206;
    req->res.content_length = (size_t)(last - first + 1);
    char *content_range = h2o_mem_alloc_pool(&req->pool, 80);
    int n = snprintf(content_range, 80, "bytes %llu-%llu/%llu", (unsigned long long)first, (unsigned long long)last,
                     (unsigned long long)total);
    h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_RANGE, content_range, (size_t)n, 1);
    return true;
}

static bool serve_revalidated(forward_t *self)
{
    cache_plan_t *plan = self->plan;
    upstream_transfer_release(self->worker->upstream, &self->transfer);
    self->handed_off = self->responded = true;
    /* The entry is confirmed: under a ttl policy the window starts again now. */
    plan->cached.fill_time = unix_ms();
    store_meta_update(self->worker->cache->store, &plan->key, &plan->cached);
    plan->have_cached = false;
    plan->kind = PLAN_PASS;
    plan->widened = false;
    /* Forget the 304's head: the hit writes the recorded one. */
    memset(&self->req->res.headers, 0, sizeof(self->req->res.headers));
    self->req->res.content_length = SIZE_MAX;
    if (cache_serve_hit(self->req, self->worker, &plan->creq, &plan->key, &plan->cached, NULL, HIT_REVALIDATED,
                        NULL) != 0)
        forward_after_all(self->req, &plan->creq);
    return true;
}

void forward_cache_on_head(forward_t *self)
{
    cache_plan_t *plan = self->plan;
    if (plan == NULL || plan->kind == PLAN_PASS)
        return;
    if (self->status == 304 && plan->kind == PLAN_REVALIDATE) {
        self->revalidated = true;
        return;
    }
    self->cache_state = "MISS";
    if (self->status == 404) {
        store_invalidate(self->worker->cache->store, &plan->key);
        cache_record_forget(self->worker->cache, &plan->key);
    }
    bool body = plan->creq.kind == CACHE_READ_MEDIA && !self->is_head && (self->status == 200 || self->status == 206);
    if (body)
        start_fill(self);
    if (plan->lead) { /* nothing to share after all */
        cache_fill_end(self->worker->cache, &plan->key, false);
        plan->lead = false;
    }
    uint64_t total = 0;
    if (body && plan->widened && !open_window(self, &total))
        self->unsatisfiable_total = total + 1; /* +1: zero-length objects are unsatisfiable too */
}

bool forward_cache_take_over(forward_t *self)
{
    if (self->revalidated)
        return serve_revalidated(self);
    if (self->unsatisfiable_total == 0)
        return false;
    /* The widened range reached the object but the client's did not. */
    upstream_transfer_release(self->worker->upstream, &self->transfer);
    if (self->filling)
        fill_finish(&self->fill, true); /* whole chunks that arrived are good */
    self->filling = false;
    h2o_req_t *req = self->req;
    h2o_iovec_t body = gcs_error_prepare(req, self->route.error_format, GCS_ERROR_RANGE_NOT_SATISFIABLE, NULL);
    char *value = h2o_mem_alloc_pool(&req->pool, 40);
    int n = snprintf(value, 40, "bytes */%llu", (unsigned long long)(self->unsatisfiable_total - 1));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_RANGE, NULL, value, (size_t)n);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, H2O_STRLIT("MISS"));
    self->bytes_sent = body.len;
    self->responded = true;
    h2o_send_inline(req, body.base, body.len);
    return true;
}

size_t forward_cache_on_body(forward_t *self, const char *data, size_t len, size_t *skip)
{
    if (self->filling)
        fill_feed(&self->fill, data, len);
    *skip = 0;
    if (!self->windowed)
        return len;
    uint64_t at = self->body_offset, lo = at > self->window_first ? at : self->window_first;
    uint64_t hi = at + len < self->window_end ? at + len : self->window_end;
    self->body_offset += len;
    if (hi <= lo)
        return 0;
    *skip = (size_t)(lo - at);
    return (size_t)(hi - lo);
}

void forward_cache_on_finish(forward_t *self, bool success)
{
    self->finish_handled = true;
    if (self->filling) {
        fill_finish(&self->fill, success);
        self->filling = false;
    }
    if (success && self->status >= 200 && self->status < 300 &&
        !(h2o_memis(self->req->method.base, self->req->method.len, H2O_STRLIT("GET")) || self->is_head))
        forward_cache_invalidate_for_write(self->req, self->worker, &self->route);
}

/* --- writes and JSON resources --- */

static void invalidate_name(worker_t *worker, const char *bucket, size_t bucket_len, const char *name, size_t name_len)
{
    store_key_t key;
    store_key_make(&key, bucket, bucket_len, name, name_len);
    store_invalidate(worker->cache->store, &key);
    cache_record_forget(worker->cache, &key);
}

/* Decodes a path segment (raw) or a query value (form-encoded: '+' is a space). */
static char *decode(const char *s, size_t len, bool form)
{
    char *out = cache_percent_decode(s, len);
    if (out != NULL && form)
        for (char *p = out; *p != '\0'; p++)
            if (*p == '+')
                *p = ' ';
    return out;
}

static void invalidate_encoded(worker_t *worker, const char *bucket, size_t bucket_len, const char *name,
                               size_t name_len, bool form)
{
    char *b = decode(bucket, bucket_len, false), *n = decode(name, name_len, form);
    if (b != NULL && n != NULL)
        invalidate_name(worker, b, strlen(b), n, strlen(n));
    free(b);
    free(n);
}

/* "/b/BUCKET/o/NAME" at p: the last object named in a JSON path (the destination of copyTo/rewriteTo). */
static void invalidate_json_path(worker_t *worker, const char *path, size_t len)
{
    const char *end = path + len, *last_b = NULL;
    for (const char *p = path; p + 3 <= end; p++)
        if (memcmp(p, "/b/", 3) == 0)
            last_b = p + 3;
    if (last_b == NULL)
        return;
    const char *bucket_end = memchr(last_b, '/', (size_t)(end - last_b));
    if (bucket_end == NULL || end - bucket_end < 4 || memcmp(bucket_end, "/o/", 3) != 0)
        return;
    const char *name = bucket_end + 3, *name_end = memchr(name, '/', (size_t)(end - name));
    if (name_end == NULL)
        name_end = end;
    if (name_end == name)
        return;
    invalidate_encoded(worker, last_b, (size_t)(bucket_end - last_b), name, (size_t)(name_end - name), false);
}

void forward_cache_invalidate_for_write(h2o_req_t *req, worker_t *worker, const route_t *route)
{
    if (worker->cache == NULL)
        return;
    const char *path = req->path.base, *q = memchr(path, '?', req->path.len);
    size_t len = q != NULL ? (size_t)(q - path) : req->path.len;
    if (route->api == ROUTE_XML && route->media) {
        const char *name = route->vhost ? path + 1 : route->bucket + route->bucket_len + 1;
        invalidate_encoded(worker, route->bucket, route->bucket_len, name, (size_t)(path + len - name), false);
    } else if (route->api == ROUTE_JSON) {
        invalidate_json_path(worker, path, len);
    } else if (route->api == ROUTE_UPLOAD) {
        /* Media and resumable uploads name the object in the query; multipart in the body (see on_json). */
        size_t name_len;
        const char *name = route_query_param(req->path.base, req->path.len, "name", &name_len);
        const char *b = memmem(path, len, "/b/", 3);
        const char *bucket_end = b != NULL ? memchr(b + 3, '/', (size_t)(path + len - b - 3)) : NULL;
        if (name != NULL && bucket_end != NULL)
            invalidate_encoded(worker, b + 3, (size_t)(bucket_end - b - 3), name, name_len, true);
    }
}

static char *http_date_of_rfc3339(const char *s, char *buf, size_t cap)
{
    struct tm tm = {0};
    if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
        return NULL;
    time_t t = timegm(&tm);
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
}

static int64_t json_int64(json_t *object, const char *key)
{
    const char *s = json_string_value(json_object_get(object, key));
    return s != NULL ? strtoll(s, NULL, 10) : -1;
}

/* Records a metadata GET's resource; a new generation replaces what was cached. */
static void record_resource(forward_t *self, json_t *resource)
{
    cache_plan_t *plan = self->plan;
    store_meta_t meta = {0};
    char date[64];
    meta.bucket = plan->creq.bucket;
    meta.name = plan->creq.name;
    meta.generation = json_int64(resource, "generation");
    meta.metageneration = json_int64(resource, "metageneration");
    meta.size = (uint64_t)json_int64(resource, "size");
    meta.content_type = (char *)json_string_value(json_object_get(resource, "contentType"));
    meta.content_encoding = (char *)json_string_value(json_object_get(resource, "contentEncoding"));
    meta.cache_control = (char *)json_string_value(json_object_get(resource, "cacheControl"));
    meta.content_disposition = (char *)json_string_value(json_object_get(resource, "contentDisposition"));
    meta.content_language = (char *)json_string_value(json_object_get(resource, "contentLanguage"));
    meta.crc32c = (char *)json_string_value(json_object_get(resource, "crc32c"));
    meta.md5 = (char *)json_string_value(json_object_get(resource, "md5Hash"));
    meta.last_modified = http_date_of_rfc3339(json_string_value(json_object_get(resource, "updated")), date,
                                              sizeof(date));
    meta.owner = plan->caller;
    meta.fill_time = unix_ms();
    if (meta.generation < 0 || meta.size > self->worker->conf->cache.max_object_size)
        return;
    char *existing = existing_record(self, meta.generation);
    json_t *headers = cache_capture_headers(&self->req->res.headers);
    char *record = headers != NULL ? cache_record_merge(existing, plan->creq.flavour, NULL, NULL, resource, headers)
                                   : NULL;
    json_decref(headers);
    if (record != NULL) {
        meta.resource_json = record;
        int rc = existing != NULL ? store_meta_update(self->worker->cache->store, &plan->key, &meta)
                                  : store_fill_begin(self->worker->cache->store, &plan->key, &meta);
        if (rc == STORE_OK)
            cache_record_note(self->worker->cache, &plan->key, meta.generation, record);
        free(record);
    }
    free(existing);
}

void forward_cache_on_json(forward_t *self, const char *body, size_t len)
{
    if (self->worker->cache == NULL || self->status != 200)
        return;
    json_t *root = json_loadb(body, len, 0, NULL);
    if (root == NULL)
        return;
    bool is_get = h2o_memis(self->req->method.base, self->req->method.len, H2O_STRLIT("GET"));
    json_t *resource = json_object_get(root, "resource"); /* a rewriteResponse wraps the object */
    if (resource == NULL)
        resource = root;
    const char *kind = json_string_value(json_object_get(resource, "kind"));
    if (kind != NULL && strcmp(kind, "storage#object") == 0) {
        if (is_get && self->plan != NULL && self->plan->creq.kind == CACHE_READ_METADATA)
            record_resource(self, resource);
        else if (!is_get) {
            const char *bucket = json_string_value(json_object_get(resource, "bucket"));
            const char *name = json_string_value(json_object_get(resource, "name"));
            if (bucket != NULL && name != NULL)
                invalidate_name(self->worker, bucket, strlen(bucket), name, strlen(name));
        }
    }
    json_decref(root);
}
