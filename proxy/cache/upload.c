/*
 * upload.c - upstream's answer to a write, and what the cache makes of it:
 * an upload, copy or compose it confirmed becomes an entry (upload_fill.c),
 * a step of a resumable or XML multipart upload goes to its session.
 *
 * Nothing is cached for a write whose caller could not be identified (the
 * entry would have no owner to serve it to), for objects encrypted with a
 * customer-supplied key, or when a newer generation is cached already.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "entry.h"
#include "upload.h"
#include "upload_fill.h"
#include "upload_session.h"

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
    return upload_fill_start(u, &facts, &body, 1, made);
}

static bool answered_xml_put(const upload_request_t *u, const h2o_headers_t *headers, store_key_t *made)
{
    upload_facts_t facts;
    upload_facts_init(&facts, u->bucket, u->name, u->owner);
    facts.size = (int64_t)u->media.len;
    upload_facts_from_xml_request(&facts, &u->req->pool, &u->req->headers);
    upload_facts_from_xml_answer(&facts, &u->req->pool, headers);
    upload_segment_t body = {.data = u->media.base, .length = u->media.len};
    return upload_fill_start(u, &facts, &body, 1, made);
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
    const char *source_generation = upload_request_param(u, "sourceGeneration");
    int64_t generation = -1;
    if (source_generation != NULL && !target_parse_int64(source_generation, strlen(source_generation), &generation))
        return false;
    upload_segment_t source;
    if (!cached_segment(u->cache, u->target->bucket, u->target->object, generation, &source))
        return false;
    upload_facts_t facts;
    upload_facts_init(&facts, NULL, NULL, u->owner);
    upload_facts_from_answer(&facts, u, resource, headers, true);
    return upload_fill_start(u, &facts, &source, 1, made);
}

/* "/bucket/object" or "bucket/object", percent-encoded, maybe with "?versionId=" (S3 clients): the source. */
static bool xml_copy_source(const upload_request_t *u, const char **bucket, const char **name, int64_t *generation)
{
    const char *raw = upload_request_header(u, "x-goog-copy-source");
    if (raw == NULL)
        raw = upload_request_header(u, "x-amz-copy-source");
    if (raw == NULL)
        return false;
    while (*raw == '/')
        raw++;
    const char *slash = strchr(raw, '/'), *query = strchr(raw, '?');
    if (slash == NULL || slash == raw || query != NULL)
        return false; /* a version named in the source: left to the next read */
    *bucket = target_percent_decode(&u->req->pool, raw, (size_t)(slash - raw));
    *name = target_percent_decode(&u->req->pool, slash + 1, strlen(slash + 1));
    const char *wanted = upload_request_header(u, "x-goog-copy-source-generation");
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
    const char *directive = upload_request_header(u, "x-goog-metadata-directive");
    if (directive == NULL)
        directive = upload_request_header(u, "x-amz-metadata-directive");
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
    bool made_entry = from.generation == source.generation && upload_fill_start(u, &facts, &source, 1, made);
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
    return upload_fill_start(u, &facts, segments, count, made);
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
