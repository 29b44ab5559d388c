/*
 * hit.c - the generator that answers a request from the store.
 *
 * Lifecycle (struct hit, owned by the request's pool):
 *
 *   cache_serve_hit  check preconditions and range, start the response
 *   hit_step         copy the next slice out of the current chunk and send it;
 *                    a chunk is read (one short LMDB read transaction) only when
 *                    the previous one is used up, so no transaction ever spans
 *                    client I/O
 *   on_proceed       the client took the slice: step again
 *   on_poll          (follow mode) a chunk the fill has not committed yet: retry
 *   dispose          access log, free the chunk buffer
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "access_log.h"
#include "cache.h"
#include "gcs_error.h"
#include "link_rewrite.h"
#include "record.h"
#include "worker.h"

#define SEND_SLICE (256 * 1024)
/* A follower gives up on a chunk the fill has not committed after this long. */
#define FOLLOW_PATIENCE_MS 10000

typedef struct hit {
    h2o_generator_t super;
    h2o_req_t *req;
    worker_t *worker;
    store_key_t key;
    store_meta_t meta;
    bool have_meta;
    record_t *record;            /* a reference: h2o reads header values out of it until the response is done */
    const cache_request_t *creq; /* owned by the caller's request state */
    hit_mode_t mode;
    uint64_t next, end;          /* absolute offsets still to send: [next, end) */
    char *chunk;
    size_t chunk_cap;
    int64_t chunk_index;         /* chunk held in `chunk`, -1 for none */
    size_t chunk_len;
    uint64_t waiting_since_ms;
    h2o_timeout_entry_t poll;
    h2o_timeout_entry_t watchdog;
    uint64_t bytes_sent;
    const char *error;
    bool abandoned;              /* nothing was sent: the request went on elsewhere */
    void (*fallback)(h2o_req_t *req, const cache_request_t *creq);
} hit_t;

static const char *cache_state(hit_mode_t mode)
{
    return mode == HIT_REVALIDATED ? "REVALIDATED" : "HIT";
}

static void on_dispose(void *p)
{
    hit_t *self = p;
    worker_disarm(&self->poll);
    worker_disarm(&self->watchdog);
    if (self->worker->conf->log.access_log && !self->abandoned)
        access_log_write(&(access_log_entry_t){.req = self->req,
                                               .api = self->creq->flavour == CACHE_FLAVOUR_XML ? ROUTE_XML : ROUTE_JSON,
                                               .status = self->req->res.status,
                                               .bytes_sent = self->bytes_sent,
                                               .upstream_ms = -1,
                                               .cache = cache_state(self->mode),
                                               .error = self->error});
    free(self->chunk);
    record_release(self->record);
    if (self->have_meta)
        store_meta_free(&self->meta);
}

/* --- preconditions (RFC 7232 order, then GCS's query-parameter forms) --- */

static bool etag_list_matches(const char *list, size_t len, const char *etag)
{
    size_t etag_len = strlen(etag);
    if (etag_len >= 2 && etag[0] == 'W' && etag[1] == '/')
        etag += 2, etag_len -= 2;
    const char *p = list, *end = list + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        const char *item = p;
        while (p < end && *p != ',')
            p++;
        const char *item_end = p;
        while (item_end > item && item_end[-1] == ' ')
            item_end--;
        size_t item_len = (size_t)(item_end - item);
        if (item_len == 1 && item[0] == '*')
            return true;
        if (item_len >= 2 && item[0] == 'W' && item[1] == '/')
            item += 2, item_len -= 2;
        if (item_len == etag_len && memcmp(item, etag, etag_len) == 0)
            return true;
        /* JSON-API ETags go out unquoted; clients may quote them back. */
        if (item_len == etag_len + 2 && item[0] == '"' && memcmp(item + 1, etag, etag_len) == 0)
            return true;
    }
    return false;
}

/* The object's ETags: GCS accepts either API's form in a condition on either API. */
typedef struct etag_set {
    const char *tags[4];
    size_t count;
    char md5_tag[40]; /* the XML form, "<md5 hex>", derived from the stored md5 */
} etag_set_t;

static void etag_set_add(etag_set_t *set, const char *tag)
{
    if (tag != NULL && set->count < sizeof(set->tags) / sizeof(set->tags[0]))
        set->tags[set->count++] = tag;
}

static void etag_set_init(etag_set_t *set, const store_meta_t *meta, const record_t *record)
{
    memset(set, 0, sizeof(*set));
    etag_set_add(set, record->media[CACHE_FLAVOUR_JSON].etag);
    etag_set_add(set, record->media[CACHE_FLAVOUR_XML].etag);
    etag_set_add(set, record->resource.etag);
    unsigned char md5[32];
    if (meta->md5 != NULL && strlen(meta->md5) == 24 &&
        EVP_DecodeBlock(md5, (const unsigned char *)meta->md5, 24) >= 16) {
        size_t n = 0;
        set->md5_tag[n++] = '"';
        for (int i = 0; i < 16; i++)
            n += (size_t)snprintf(set->md5_tag + n, sizeof(set->md5_tag) - n, "%02x", md5[i]);
        set->md5_tag[n++] = '"';
        set->md5_tag[n] = '\0';
        etag_set_add(set, set->md5_tag);
    }
}

static bool etag_set_matches(const etag_set_t *set, const char *list, size_t len)
{
    for (size_t i = 0; i < set->count; i++)
        if (etag_list_matches(list, len, set->tags[i]))
            return true;
    return false;
}

/* 0 to serve, or 304 / 412. */
static int evaluate_preconditions(const cache_request_t *c, const store_meta_t *meta, const etag_set_t *etags)
{
    int64_t modified = meta->last_modified != NULL
                           ? cache_parse_http_date(meta->last_modified, strlen(meta->last_modified))
                           : -1;
    if ((c->if_generation_match >= 0 && c->if_generation_match != meta->generation) ||
        (c->if_metageneration_match >= 0 && c->if_metageneration_match != meta->metageneration) ||
        (c->if_match != NULL && !etag_set_matches(etags, c->if_match, c->if_match_len)) ||
        (c->if_match == NULL && c->if_unmodified_since >= 0 && modified > c->if_unmodified_since))
        return 412;
    if ((c->if_generation_not_match >= 0 && c->if_generation_not_match == meta->generation) ||
        (c->if_metageneration_not_match >= 0 && c->if_metageneration_not_match == meta->metageneration))
        return 304;
    if (c->if_none_match != NULL)
        return etag_set_matches(etags, c->if_none_match, c->if_none_match_len) ? 304 : 0;
    if (c->if_modified_since >= 0 && modified >= 0 && modified <= c->if_modified_since)
        return 304;
    return 0;
}

/* --- the response --- */

static void add_x_cache(hit_t *self)
{
    const char *state = cache_state(self->mode);
    h2o_add_header_by_str(&self->req->pool, &self->req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, state,
                          strlen(state));
}

static void hit_step(hit_t *self);

static void on_proceed(h2o_generator_t *generator, h2o_req_t *req)
{
    hit_t *self = H2O_STRUCT_FROM_MEMBER(hit_t, super, generator);
    (void)req;
    worker_disarm(&self->watchdog);
    hit_step(self);
}

static void on_stop(h2o_generator_t *generator, h2o_req_t *req)
{
    hit_t *self = H2O_STRUCT_FROM_MEMBER(hit_t, super, generator);
    (void)req;
    worker_disarm(&self->poll);
}

static void on_poll(h2o_timeout_entry_t *entry)
{
    hit_step(H2O_STRUCT_FROM_MEMBER(hit_t, poll, entry));
}

static void on_watchdog(h2o_timeout_entry_t *entry)
{
    hit_t *self = H2O_STRUCT_FROM_MEMBER(hit_t, watchdog, entry);
    self->error = "client stopped reading";
    worker_cut_stalled_client(self->req);
}

static void send_slice(hit_t *self, const char *base, size_t len, h2o_send_state_t state)
{
    h2o_iovec_t buf = h2o_iovec_init(base, len);
    self->bytes_sent += len;
    h2o_timeout_link(self->worker->loop, &self->worker->client_watchdog, &self->watchdog);
    h2o_send(self->req, &buf, len != 0 ? 1 : 0, state);
}

/* Loads the chunk holding self->next; false when it is not (yet) in the store. */
static bool load_chunk(hit_t *self, int64_t index)
{
    ssize_t n = store_chunk_read(self->worker->cache->store, &self->key, self->meta.generation, (uint32_t)index,
                                 self->chunk, self->chunk_cap);
    if (n < 0)
        return false;
    self->chunk_index = index;
    self->chunk_len = (size_t)n;
    return true;
}

static void hit_step(hit_t *self)
{
    if (self->next >= self->end) {
        send_slice(self, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    int64_t index = (int64_t)(self->next / STORE_CHUNK_SIZE);
    if (index != self->chunk_index && !load_chunk(self, index)) {
        /* A fill under way commits its chunks shortly: wait for them, for a while. */
        bool patient = (self->waiting_since_ms == 0 || worker_now_ms() - self->waiting_since_ms < FOLLOW_PATIENCE_MS) &&
                       cache_fill_active(self->worker->cache, &self->key, NULL);
        if (self->waiting_since_ms == 0)
            self->waiting_since_ms = worker_now_ms();
        if (patient) {
            h2o_timeout_link(self->worker->loop, &self->worker->fill_poll, &self->poll);
            return;
        }
        /* Evicted or damaged under us: the response cannot be completed honestly. */
        self->error = "chunk vanished from the store mid-response";
        send_slice(self, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    self->waiting_since_ms = 0;
    size_t offset = (size_t)(self->next - (uint64_t)index * STORE_CHUNK_SIZE);
    size_t len = self->chunk_len > offset ? self->chunk_len - offset : 0;
    if (len > SEND_SLICE)
        len = SEND_SLICE;
    if (len > self->end - self->next)
        len = (size_t)(self->end - self->next);
    if (len == 0) {
        self->error = "chunk shorter than the object says";
        send_slice(self, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    self->next += len;
    send_slice(self, self->chunk + offset, len, self->next >= self->end ? H2O_SEND_STATE_FINAL
                                                                        : H2O_SEND_STATE_IN_PROGRESS);
}

/* --- starting a hit --- */

bool cache_covers(cache_t *cache, const store_key_t *key, const store_meta_t *meta, const cache_range_t *range)
{
    uint64_t first, last;
    /* Asked chunk by chunk, not from the record's count: a chunk found corrupt is hidden at once,
     * and the request must then go upstream for it rather than start and be cut. */
    if (meta->size == 0)
        return true;
    if (!cache_range_resolve(range, meta->size, &first, &last))
        return true; /* a 416 needs no bytes */
    for (uint64_t i = first / STORE_CHUNK_SIZE; i <= last / STORE_CHUNK_SIZE; i++)
        if (!store_chunk_present(cache->store, key, meta->generation, (uint32_t)i))
            return false;
    return true;
}

static void send_small(hit_t *self, int status, const char *body, size_t len)
{
    h2o_req_t *req = self->req;
    req->res.status = status;
    req->res.reason = status == 304 ? "Not Modified" : "OK";
    req->res.content_length = len;
    self->super.proceed = on_proceed;
    self->super.stop = on_stop;
    h2o_start_response(req, &self->super);
    self->next = self->end = 0;
    send_slice(self, body, len, H2O_SEND_STATE_FINAL);
}

static error_format_t error_format_of(const hit_t *self)
{
    return self->creq->flavour == CACHE_FLAVOUR_XML ? ERROR_FORMAT_XML : ERROR_FORMAT_JSON;
}

/* A 412 or 416 decided from the cached metadata: an answer of the cache like any other. */
static void send_cache_error(hit_t *self, gcs_error_kind_t kind)
{
    h2o_req_t *req = self->req;
    h2o_iovec_t body = gcs_error_prepare(req, error_format_of(self), kind, NULL);
    if (kind == GCS_ERROR_RANGE_NOT_SATISFIABLE) {
        /* RFC 7233 4.4: a 416 says how long the representation is. */
        char *value = h2o_mem_alloc_pool(&req->pool, 40);
        int n = snprintf(value, 40, "bytes */%llu", (unsigned long long)self->meta.size);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_RANGE, NULL, value, (size_t)n);
    }
    add_x_cache(self);
    self->bytes_sent = body.len;
    h2o_send_inline(req, body.base, body.len);
}

/* 0 to serve, 304, or 412 (already answered). */
static int check_preconditions(hit_t *self)
{
    const cache_request_t *c = self->creq;
    if (c->if_match == NULL && c->if_none_match == NULL && c->if_modified_since < 0 && c->if_unmodified_since < 0 &&
        c->if_generation_match < 0 && c->if_generation_not_match < 0 && c->if_metageneration_match < 0 &&
        c->if_metageneration_not_match < 0)
        return 0; /* the common case: nothing to evaluate */
    etag_set_t etags;
    etag_set_init(&etags, &self->meta, self->record);
    int verdict = evaluate_preconditions(self->creq, &self->meta, &etags);
    if (verdict == 412)
        send_cache_error(self, GCS_ERROR_PRECONDITION_FAILED);
    return verdict;
}

/* The JSON resource, its links pointed at larder, with the headers upstream sent it with. */
static int serve_metadata(hit_t *self)
{
    h2o_req_t *req = self->req;
    const record_t *record = self->record;
    int verdict = check_preconditions(self);
    if (verdict == 412)
        return 0;
    size_t rewritten_len;
    char *base = link_public_base(self->worker->conf->public_url, req->scheme->name.base, req->scheme->name.len,
                                  req->authority.base, req->authority.len);
    char *rewritten = base != NULL ? link_rewrite_json(record->resource_text.base, record->resource_text.len,
                                                       self->worker->conf->upstream.base_url, base, &rewritten_len)
                                   : NULL;
    h2o_iovec_t body = rewritten != NULL ? h2o_strdup(&req->pool, rewritten, rewritten_len) : record->resource_text;
    free(base);
    free(rewritten);
    record_add_headers(req, &record->resource, verdict == 304);
    add_x_cache(self);
    send_small(self, verdict == 304 ? 304 : 200, verdict == 304 ? NULL : body.base, verdict == 304 ? 0 : body.len);
    return 0;
}

static int serve_media(hit_t *self, const record_view_t *view)
{
    h2o_req_t *req = self->req;
    int verdict = check_preconditions(self);
    if (verdict == 412)
        return 0;
    record_add_headers(req, view, verdict == 304);
    add_x_cache(self);
    if (verdict == 304) {
        send_small(self, 304, NULL, 0);
        return 0;
    }
    uint64_t first = 0, last = 0, size = self->meta.size;
    bool satisfiable = cache_range_resolve(&self->creq->range, size, &first, &last);
    if (self->creq->range.present && !satisfiable) {
        memset(&req->res.headers, 0, sizeof(req->res.headers));
        send_cache_error(self, GCS_ERROR_RANGE_NOT_SATISFIABLE);
        return 0;
    }
    req->res.status = self->creq->range.present ? 206 : 200;
    req->res.reason = self->creq->range.present ? "Partial Content" : "OK";
    self->next = satisfiable ? first : 0;
    self->end = satisfiable ? last + 1 : 0;
    req->res.content_length = self->end - self->next;
    if (self->creq->range.present) {
        char *content_range = h2o_mem_alloc_pool(&req->pool, 80);
        int n = snprintf(content_range, 80, "bytes %llu-%llu/%llu", (unsigned long long)first,
                         (unsigned long long)last, (unsigned long long)size);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_RANGE, NULL, content_range, (size_t)n);
    }
    if (self->creq->head)
        self->end = self->next; /* HEAD: headers only; h2o sends no body of its own */
    /* Small objects are most hits: their buffer need not be a whole chunk. */
    size_t buffer_size = self->meta.size < STORE_CHUNK_SIZE ? (size_t)self->meta.size : STORE_CHUNK_SIZE;
    if ((self->chunk = malloc(buffer_size != 0 ? buffer_size : 1)) == NULL)
        return -1;
    self->chunk_cap = buffer_size;
    self->super.proceed = on_proceed;
    self->super.stop = on_stop;
    h2o_start_response(req, &self->super);
    store_touch(self->worker->cache->store, &self->key);
    hit_step(self);
    return 0;
}

static int serve_with_meta(hit_t *self)
{
    const record_view_t *view;
    if (self->record == NULL &&
        (self->record = record_cache_get(&self->worker->records, &self->key, self->meta.generation,
                                         self->meta.resource_json)) == NULL)
        return -1;
    if (self->creq->kind == CACHE_READ_METADATA)
        return record_has_resource(self->record) ? serve_metadata(self) : -1;
    /* gzip objects reach clients that refuse gzip only decompressed: upstream does that. */
    if (self->meta.content_encoding != NULL && strcasecmp(self->meta.content_encoding, "gzip") == 0 &&
        !self->creq->accepts_gzip)
        return -1;
    /* The view must exist; its ETag is one of several a condition may name (see etag_set_init). */
    if ((view = record_media_view(self->record, self->creq->flavour)) == NULL)
        return -1;
    return serve_media(self, view);
}

/* Follow mode, before the fill recorded the object: wait for its metadata. */
static void wait_for_meta(hit_t *self)
{
    if (store_meta_get(self->worker->cache->store, &self->key, &self->meta) == STORE_OK) {
        self->have_meta = true;
        self->poll.cb = on_poll; /* from now on the poll waits for chunks */
        self->waiting_since_ms = 0;
        if (serve_with_meta(self) == 0)
            return;
    } else {
        if (self->waiting_since_ms == 0)
            self->waiting_since_ms = worker_now_ms();
        if (worker_now_ms() - self->waiting_since_ms < FOLLOW_PATIENCE_MS &&
            cache_fill_active(self->worker->cache, &self->key, NULL)) {
            h2o_timeout_link(self->worker->loop, &self->worker->fill_poll, &self->poll);
            return;
        }
    }
    self->abandoned = true;
    self->fallback(self->req, self->creq);
}

static void on_meta_poll(h2o_timeout_entry_t *entry)
{
    wait_for_meta(H2O_STRUCT_FROM_MEMBER(hit_t, poll, entry));
}

int cache_serve_hit(h2o_req_t *req, worker_t *worker, const cache_request_t *creq, const store_key_t *key,
                    store_meta_t *meta, record_t *record, hit_mode_t mode,
                    void (*fallback)(h2o_req_t *req, const cache_request_t *creq))
{
    hit_t *self = h2o_mem_alloc_shared(&req->pool, sizeof(*self), on_dispose);
    memset(self, 0, sizeof(*self));
    self->req = req;
    self->worker = worker;
    self->creq = creq;
    self->mode = mode;
    self->fallback = fallback;
    self->chunk_index = -1;
    self->poll.cb = on_poll;
    self->watchdog.cb = on_watchdog;
    self->key = *key;
    if (meta == NULL) {
        self->poll.cb = on_meta_poll;
        h2o_timeout_link(worker->loop, &worker->fill_poll, &self->poll);
        return 0;
    }
    self->meta = *meta;
    self->have_meta = true;
    memset(meta, 0, sizeof(*meta));
    if (record != NULL) {
        record_retain(record);
        self->record = record;
    }
    if (serve_with_meta(self) != 0) {
        self->abandoned = true; /* nothing went out; the pool frees self */
        return -1;
    }
    return 0;
}
