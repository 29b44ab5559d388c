/*
 * upload.c - a write's object becoming a cache entry once upstream
 * confirmed it.
 *
 * The bytes are never fetched back: an upload's are in its request, a
 * resumable or XML multipart upload's in its session (upload_session.c), a
 * copy's or compose's in the store already. They become a local fill
 * (fetch_start_local), which checks them against the crc32c upstream
 * reported before anything is registered, and is then found by reads like
 * any fill until its chunks commit: a read between upstream's answer and
 * the commit follows it rather than asking upstream again.
 *
 * Nothing is cached for a write whose caller could not be identified (the
 * entry would have no owner to serve it to), for objects encrypted with a
 * customer-supplied key, or when a newer generation is cached already.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache_request.h"
#include "entry.h"
#include "fetch.h"
#include "invalidate.h"
#include "multipart.h"
#include "upload.h"
#include "upload_complete.h"
#include "upload_entry.h"
#include "upload_session.h"

/* --- parsing the request --- */

static const char *param(const upload_request_t *u, const char *name)
{
    const h2o_iovec_t *v = target_param(u->target, name);
    if (v == NULL)
        return NULL;
    char *decoded = target_percent_decode(&u->req->pool, v->base, v->len);
    for (char *c = decoded; c != NULL && *c != '\0'; c++)
        if (*c == '+')
            *c = ' '; /* query values are form-encoded */
    return decoded;
}

static const char *request_header(const upload_request_t *u, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&u->req->headers, name, strlen(name), -1);
    if (i == -1)
        return NULL;
    const h2o_iovec_t *v = &u->req->headers.entries[i].value;
    return h2o_strdup(&u->req->pool, v->base, v->len).base;
}

static void dispose_json(void *p)
{
    json_decref(*(json_t **)p);
}

/* Parses JSON that lives as long as the request. */
static json_t *pool_json(h2o_mem_pool_t *pool, const char *text, size_t len)
{
    json_t *value = text != NULL ? json_loadb(text, len, 0, NULL) : NULL;
    if (value != NULL)
        *(json_t **)h2o_mem_alloc_shared(pool, sizeof(json_t *), dispose_json) = value;
    return value;
}

/* "/upload/storage/v1/b/BUCKET/o": the bucket, decoded. */
static const char *upload_bucket(const upload_request_t *u)
{
    const char *path = u->target->path.base, *end = path + u->target->path.len;
    const char *b = memmem(path, u->target->path.len, "/b/", 3);
    const char *stop = b != NULL ? memchr(b + 3, '/', (size_t)(end - b - 3)) : NULL;
    return stop != NULL ? target_percent_decode(&u->req->pool, b + 3, (size_t)(stop - b - 3)) : NULL;
}

typedef struct multipart_upload_parts {
    upload_request_t *u;
    size_t index;
} multipart_upload_parts_t;

/* A multipart upload: its metadata (JSON) part, then its media part. */
static void on_upload_part(void *ctx, const multipart_part_t *part)
{
    multipart_upload_parts_t *parts = ctx;
    upload_request_t *u = parts->u;
    h2o_iovec_t type;
    if (parts->index == 0) {
        u->metadata = pool_json(&u->req->pool, part->body.base, part->body.len);
    } else if (parts->index == 1 && part->has_body) {
        u->media = part->body;
        if (multipart_header(part->head, "content-type", &type))
            u->media_type = h2o_strdup(&u->req->pool, type.base, type.len).base;
    }
    parts->index++;
}

static void parse_json_upload(upload_request_t *u)
{
    u->bucket = upload_bucket(u);
    u->name = param(u, "name");
    if ((u->session = param(u, "upload_id")) != NULL) {
        bool cancel = h2o_memis(u->req->method.base, u->req->method.len, H2O_STRLIT("DELETE"));
        u->kind = cancel ? UPLOAD_RESUMABLE_CANCEL : UPLOAD_RESUMABLE_CHUNK;
        return;
    }
    const char *type = param(u, "uploadType"), *content_type = request_header(u, "content-type");
    h2o_iovec_t boundary;
    if (type != NULL && strcmp(type, "resumable") == 0) {
        u->kind = UPLOAD_RESUMABLE_START;
        u->metadata = pool_json(&u->req->pool, u->req->entity.base, u->req->entity.len);
        u->media_type = request_header(u, "x-upload-content-type");
    } else if ((type != NULL && strcmp(type, "multipart") == 0) ||
               (type == NULL && content_type != NULL && strncasecmp(content_type, "multipart/", 10) == 0)) {
        u->kind = UPLOAD_JSON;
        if (content_type != NULL && multipart_boundary(h2o_iovec_init(content_type, strlen(content_type)), &boundary))
            multipart_for_each(u->req->entity, boundary, on_upload_part, &(multipart_upload_parts_t){u, 0});
        if (u->media.base == NULL)
            u->cacheable = false; /* not the two parts an upload has: upstream will say what it is */
    } else {
        u->kind = UPLOAD_JSON;
        u->media = u->req->entity;
        u->media_type = content_type;
    }
    if (u->name == NULL && u->metadata != NULL)
        u->name = json_string_value(json_object_get(u->metadata, "name"));
}

/* "/copyTo/b/B/o/N", "/rewriteTo/b/B/o/N": the destination, decoded; false when the suffix is not one. */
bool upload_destination_of(upload_request_t *u, h2o_iovec_t suffix)
{
    const char *p = suffix.base, *end = p + suffix.len;
    const char *b = p != NULL ? memmem(p, suffix.len, "/b/", 3) : NULL;
    const char *slash = b != NULL ? memchr(b + 3, '/', (size_t)(end - b - 3)) : NULL;
    if (slash == NULL || end - slash < 4 || memcmp(slash, "/o/", 3) != 0)
        return false;
    const char *name = slash + 3, *name_end = memchr(name, '/', (size_t)(end - name));
    u->bucket = target_percent_decode(&u->req->pool, b + 3, (size_t)(slash - b - 3));
    u->name = target_percent_decode(&u->req->pool, name, (size_t)((name_end != NULL ? name_end : end) - name));
    return true;
}

static void parse_json_object_write(upload_request_t *u)
{
    h2o_iovec_t suffix = u->target->object_suffix;
    bool post = h2o_memis(u->req->method.base, u->req->method.len, H2O_STRLIT("POST"));
    if (!post || u->target->object == NULL)
        return;
    if (suffix.len > 8 && (memcmp(suffix.base, "/copyTo/", 8) == 0 ||
                           (suffix.len > 11 && memcmp(suffix.base, "/rewriteTo/", 11) == 0))) {
        if (upload_destination_of(u, suffix))
            u->kind = UPLOAD_COPY;
    } else if (h2o_memis(suffix.base, suffix.len, H2O_STRLIT("/compose"))) {
        u->kind = UPLOAD_COMPOSE;
        u->bucket = u->target->bucket;
        u->name = u->target->object;
        u->metadata = pool_json(&u->req->pool, u->req->entity.base, u->req->entity.len);
    }
}

static void parse_xml_write(upload_request_t *u)
{
    const char *method = u->req->method.base;
    size_t method_len = u->req->method.len;
    if (u->target->object == NULL)
        return;
    u->bucket = u->target->bucket;
    u->name = u->target->object;
    u->session = param(u, "uploadId");
    if (h2o_memis(method, method_len, H2O_STRLIT("PUT"))) {
        if (request_header(u, "x-goog-copy-source") != NULL || request_header(u, "x-amz-copy-source") != NULL) {
            u->kind = UPLOAD_XML_COPY;
            return;
        }
        u->kind = u->session != NULL ? UPLOAD_XML_PART : UPLOAD_XML_PUT;
        u->media = u->req->entity;
        u->media_type = request_header(u, "content-type");
    } else if (h2o_memis(method, method_len, H2O_STRLIT("POST"))) {
        if (u->session != NULL)
            u->kind = UPLOAD_XML_MULTIPART_COMPLETE;
        else if (target_param(u->target, "uploads") != NULL)
            u->kind = UPLOAD_XML_MULTIPART_START;
    } else if (h2o_memis(method, method_len, H2O_STRLIT("DELETE")) && u->session != NULL) {
        u->kind = UPLOAD_XML_MULTIPART_ABORT;
    }
}

void upload_request_parse(upload_request_t *u, cache_t *cache, h2o_req_t *req, const target_t *target)
{
    *u = (upload_request_t){.kind = UPLOAD_NONE, .cache = cache, .worker = worker_of(req), .req = req,
                            .target = target, .owner = "", .cacheable = !cache_request_carries_encryption_key(req)};
    switch (target->route.api) {
    case ROUTE_UPLOAD:
        parse_json_upload(u);
        break;
    case ROUTE_JSON:
        parse_json_object_write(u);
        break;
    case ROUTE_XML:
        parse_xml_write(u);
        break;
    default:
        break;
    }
}

bool upload_touches_object(const upload_request_t *u)
{
    switch (u->kind) {
    case UPLOAD_RESUMABLE_START:
    case UPLOAD_RESUMABLE_CANCEL:
    case UPLOAD_XML_MULTIPART_START:
    case UPLOAD_XML_PART:
    case UPLOAD_XML_MULTIPART_ABORT:
        return false;
    default:
        return true;
    }
}

/* --- reading the bytes of a local fill --- */

typedef struct upload_source {
    store_t *store;
    const upload_segment_t *segments;
    size_t count;
    char *scratch; /* the store chunk last read */
    size_t scratch_len;
    const upload_segment_t *scratch_segment;
    uint32_t scratch_index;
} upload_source_t;

static bool segment_read(upload_source_t *s, const upload_segment_t *seg, uint64_t offset, char *dst, size_t n)
{
    if (seg->data != NULL) {
        memcpy(dst, seg->data + offset, n);
        return true;
    }
    offset += seg->offset;
    while (n > 0) {
        uint32_t index = (uint32_t)(offset / STORE_CHUNK_SIZE);
        size_t within = (size_t)(offset % STORE_CHUNK_SIZE);
        if (s->scratch_segment != seg || s->scratch_index != index) {
            if (s->scratch == NULL && (s->scratch = malloc(STORE_CHUNK_SIZE)) == NULL)
                return false;
            ssize_t got = store_chunk_read(s->store, &seg->key, seg->generation, index, s->scratch, STORE_CHUNK_SIZE);
            if (got < 0)
                return false;
            s->scratch_len = (size_t)got;
            s->scratch_segment = seg;
            s->scratch_index = index;
        }
        if (within >= s->scratch_len)
            return false;
        size_t take = s->scratch_len - within < n ? s->scratch_len - within : n;
        memcpy(dst, s->scratch + within, take);
        dst += take, offset += take, n -= take;
    }
    return true;
}

static bool source_read(void *ctx, uint64_t offset, char *dst, size_t len)
{
    upload_source_t *s = ctx;
    for (size_t i = 0; i < s->count && len > 0; i++) {
        const upload_segment_t *seg = &s->segments[i];
        if (offset >= seg->length) {
            offset -= seg->length;
            continue;
        }
        size_t n = seg->length - offset < len ? (size_t)(seg->length - offset) : len;
        if (!segment_read(s, seg, offset, dst, n))
            return false;
        dst += n, len -= n, offset = 0;
    }
    return len == 0;
}

bool upload_entry_is_cached(cache_t *cache, const char *bucket, const char *name, int64_t generation,
                            store_key_t *made)
{
    store_meta_t stored;
    store_key_make(made, bucket, strlen(bucket), name, strlen(name));
    bool cached = false;
    if (generation > 0 && store_meta_get(cache->store, made, &stored) == STORE_OK) {
        cached = stored.generation == generation;
        store_meta_free(&stored);
    }
    fetch_t *filling = generation > 0 && !cached ? fetch_registry_newest(cache, made) : NULL;
    if (filling != NULL && fetch_meta(filling, &stored)) {
        cached = stored.generation == generation;
        store_meta_free(&stored);
    }
    fetch_release(filling);
    return cached;
}

/* Whether a generation newer than this one is cached or being filled: an answer overtaken by a later write. */
static bool overtaken(cache_t *cache, const store_key_t *key, int64_t generation)
{
    store_meta_t stored;
    bool newer = false;
    if (store_meta_get(cache->store, key, &stored) == STORE_OK) {
        newer = stored.generation > generation;
        store_meta_free(&stored);
    }
    fetch_t *filling = fetch_registry_newest(cache, key);
    if (filling != NULL && fetch_meta(filling, &stored)) {
        newer = newer || stored.generation > generation;
        store_meta_free(&stored);
    }
    fetch_release(filling);
    return newer;
}

bool upload_make_entry(const upload_request_t *u, const upload_facts_t *facts, const upload_segment_t *segments,
                       size_t count, store_key_t *made)
{
    store_meta_t meta;
    const char *why = upload_entry_make(u->cache, facts, &meta);
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += segments[i].length;
    if (why == NULL && total != meta.size) {
        why = "the bytes at hand are not the object's size";
        store_meta_free(&meta);
    }
    if (why != NULL) {
        log_msg(LOG_LEVEL_DEBUG, "upload", "%s/%s: not cached: %s", facts->bucket != NULL ? facts->bucket : "?",
                facts->name != NULL ? facts->name : "?", why);
        return false;
    }
    store_key_make(made, meta.bucket, strlen(meta.bucket), meta.name, strlen(meta.name));
    if (overtaken(u->cache, made, meta.generation)) {
        store_meta_free(&meta);
        return true; /* the newer one stays; this answer invalidates nothing */
    }
    cache_invalidate(u->cache, made); /* the old copy goes now; the new one shows once registered */
    upload_source_t source = {.store = u->cache->store, .segments = segments, .count = count};
    for (size_t i = 0; i < count; i++)
        if (segments[i].data == NULL)
            store_pin(u->cache->store, &segments[i].key);
    int64_t generation = meta.generation;
    bool started = fetch_start_local(u->cache, u->worker, made, &meta, source_read, &source);
    if (started && facts->resource == NULL)
        upload_complete_start(u->cache, u->worker, u->req, made, facts->bucket, facts->name, generation, u->owner);
    for (size_t i = 0; i < count; i++)
        if (segments[i].data == NULL)
            store_unpin(u->cache->store, &segments[i].key);
    free(source.scratch);
    return true;
}

/* --- answers --- */

/* The resource is upstream's whole one (no fields= selection): metadata GETs may be answered from it. */
void upload_facts_from_answer(upload_facts_t *facts, const upload_request_t *u, json_t *resource,
                              const h2o_headers_t *headers, bool whole)
{
    upload_facts_from_resource(facts, resource);
    if (whole && target_param(u->target, "fields") == NULL &&
        json_string_value(json_object_get(resource, "kind")) != NULL) {
        facts->resource = resource;
        facts->resource_headers = headers;
    }
}

static bool answered_json_upload(const upload_request_t *u, const h2o_headers_t *headers, json_t *resource,
                                 store_key_t *made)
{
    upload_facts_t facts;
    upload_facts_init(&facts, u->bucket, u->name, u->owner);
    facts.content_type = u->media_type;
    if (u->metadata != NULL)
        upload_facts_from_request_metadata(&facts, u->metadata);
    upload_facts_from_answer(&facts, u, resource, headers, true);
    upload_segment_t body = {.data = u->media.base, .length = u->media.len};
    return upload_make_entry(u, &facts, &body, 1, made);
}

static bool answered_xml_put(const upload_request_t *u, const h2o_headers_t *headers, store_key_t *made)
{
    upload_facts_t facts;
    upload_facts_init(&facts, u->bucket, u->name, u->owner);
    facts.size = (int64_t)u->media.len;
    upload_facts_from_xml_request(&facts, &u->req->pool, &u->req->headers);
    upload_facts_from_xml_answer(&facts, &u->req->pool, headers);
    upload_segment_t body = {.data = u->media.base, .length = u->media.len};
    return upload_make_entry(u, &facts, &body, 1, made);
}

/* A cached, complete version of bucket/name (of generation, when it is not -1) as a segment. */
static bool cached_segment(cache_t *cache, const char *bucket, const char *name, int64_t generation,
                           upload_segment_t *seg)
{
    store_meta_t meta;
    memset(seg, 0, sizeof(*seg));
    store_key_make(&seg->key, bucket, strlen(bucket), name, strlen(name));
    if (store_meta_get(cache->store, &seg->key, &meta) != STORE_OK)
        return false;
    bool whole = meta.size != STORE_SIZE_UNKNOWN && meta.chunks_present == meta.num_chunks &&
                 (generation < 0 || generation == meta.generation);
    seg->generation = meta.generation;
    seg->length = meta.size;
    store_meta_free(&meta);
    return whole;
}

static bool answered_copy(const upload_request_t *u, const h2o_headers_t *headers, json_t *answer, store_key_t *made)
{
    json_t *resource = json_object_get(answer, "resource"); /* a rewrite wraps it, and may not be done yet */
    if (resource == NULL)
        resource = answer;
    else if (!json_is_true(json_object_get(answer, "done")))
        return false;
    const char *source_generation = param(u, "sourceGeneration");
    int64_t generation = -1;
    if (source_generation != NULL && !target_parse_int64(source_generation, strlen(source_generation), &generation))
        return false;
    upload_segment_t source;
    if (!cached_segment(u->cache, u->target->bucket, u->target->object, generation, &source))
        return false;
    upload_facts_t facts;
    upload_facts_init(&facts, NULL, NULL, u->owner);
    upload_facts_from_answer(&facts, u, resource, headers, true);
    return upload_make_entry(u, &facts, &source, 1, made);
}

/* "/bucket/object" or "bucket/object", percent-encoded, maybe with "?versionId=" (S3 clients): the source. */
static bool xml_copy_source(const upload_request_t *u, const char **bucket, const char **name, int64_t *generation)
{
    const char *raw = request_header(u, "x-goog-copy-source");
    if (raw == NULL)
        raw = request_header(u, "x-amz-copy-source");
    if (raw == NULL)
        return false;
    while (*raw == '/')
        raw++;
    const char *slash = strchr(raw, '/'), *query = strchr(raw, '?');
    if (slash == NULL || slash == raw || query != NULL)
        return false; /* a version named in the source: left to the next read */
    *bucket = target_percent_decode(&u->req->pool, raw, (size_t)(slash - raw));
    *name = target_percent_decode(&u->req->pool, slash + 1, strlen(slash + 1));
    const char *wanted = request_header(u, "x-goog-copy-source-generation");
    *generation = -1;
    return wanted == NULL || target_parse_int64(wanted, strlen(wanted), generation);
}

/* An XML copy: the answer reports the new generation and hashes; what the object is comes from the source. */
static bool answered_xml_copy(const upload_request_t *u, const h2o_headers_t *headers, store_key_t *made)
{
    const char *bucket, *name;
    int64_t generation;
    upload_segment_t source;
    store_meta_t from;
    if (!xml_copy_source(u, &bucket, &name, &generation) || !cached_segment(u->cache, bucket, name, generation, &source) ||
        store_meta_get(u->cache->store, &source.key, &from) != STORE_OK)
        return false;
    upload_facts_t facts;
    upload_facts_init(&facts, u->bucket, u->name, u->owner);
    const char *directive = request_header(u, "x-goog-metadata-directive");
    if (directive == NULL)
        directive = request_header(u, "x-amz-metadata-directive");
    if (directive != NULL && strcasecmp(directive, "REPLACE") == 0) {
        upload_facts_from_xml_request(&facts, &u->req->pool, &u->req->headers);
    } else {
        facts.content_type = from.content_type;
        facts.content_encoding = from.content_encoding;
        facts.cache_control = from.cache_control;
        facts.content_disposition = from.content_disposition;
        facts.content_language = from.content_language;
    }
    upload_facts_from_xml_answer(&facts, &u->req->pool, headers);
    bool made_entry = from.generation == source.generation && upload_make_entry(u, &facts, &source, 1, made);
    store_meta_free(&from);
    return made_entry;
}

#define MAX_COMPOSE_SOURCES 32 /* GCS's limit */

static bool answered_compose(const upload_request_t *u, const h2o_headers_t *headers, json_t *resource,
                             store_key_t *made)
{
    json_t *sources = json_object_get(u->metadata, "sourceObjects");
    size_t count = json_array_size(sources);
    upload_segment_t segments[MAX_COMPOSE_SOURCES];
    if (count == 0 || count > MAX_COMPOSE_SOURCES)
        return false;
    for (size_t i = 0; i < count; i++) {
        json_t *source = json_array_get(sources, i);
        const char *name = json_string_value(json_object_get(source, "name"));
        json_t *generation = json_object_get(source, "generation");
        int64_t wanted = json_is_integer(generation) ? (int64_t)json_integer_value(generation)
                         : json_is_string(generation) ? entry_json_int64(source, "generation")
                                                      : -1;
        if (name == NULL || !cached_segment(u->cache, u->target->bucket, name, wanted, &segments[i]))
            return false;
    }
    upload_facts_t facts;
    upload_facts_init(&facts, NULL, NULL, u->owner);
    upload_facts_from_answer(&facts, u, resource, headers, true);
    return upload_make_entry(u, &facts, segments, count, made);
}

bool upload_answered(const upload_request_t *u, int status, const h2o_headers_t *headers, const char *body,
                     size_t len, store_key_t *made)
{
    if (status == 308 && u->kind == UPLOAD_RESUMABLE_CHUNK) {
        upload_session_chunk_persisted(u, headers);
        return false;
    }
    if (status < 200 || status >= 300) {
        upload_session_refused(u, status);
        return false;
    }
    bool made_entry = false;
    json_t *answer = NULL;
    switch (u->kind) {
    case UPLOAD_JSON:
    case UPLOAD_COPY:
    case UPLOAD_COMPOSE:
        if (!u->cacheable || (answer = json_loadb(body, len, 0, NULL)) == NULL)
            break;
        made_entry = u->kind == UPLOAD_JSON   ? answered_json_upload(u, headers, answer, made)
                     : u->kind == UPLOAD_COPY ? answered_copy(u, headers, answer, made)
                                              : answered_compose(u, headers, answer, made);
        break;
    case UPLOAD_XML_PUT:
        made_entry = u->cacheable && answered_xml_put(u, headers, made);
        break;
    case UPLOAD_XML_COPY:
        made_entry = u->cacheable && answered_xml_copy(u, headers, made);
        break;
    case UPLOAD_NONE:
        break;
    default:
        made_entry = upload_session_answered(u, headers, body, len, made);
        break;
    }
    json_decref(answer);
    return made_entry;
}
