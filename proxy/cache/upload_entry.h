/*
 * upload_entry.h - the entry a write makes (upload_entry.c): what upstream's
 * answer to an upload, copy, compose or rewrite, and the request itself, say
 * the new object is.
 */
#ifndef LARDER_CACHE_UPLOAD_ENTRY_H
#define LARDER_CACHE_UPLOAD_ENTRY_H

#include <jansson.h>

#include "state.h"

/* What is known of a written object. Strings are borrowed; NULL (or -1) when not known. */
typedef struct upload_facts {
    const char *bucket, *name;
    int64_t generation;
    int64_t metageneration;  /* -1: 1, as for every new object */
    int64_t size;
    const char *content_type, *content_encoding, *cache_control, *content_disposition, *content_language;
    const char *updated;     /* RFC 3339 */
    const char *crc32c, *md5; /* base64 */
    const char *storage_class;
    int64_t component_count;
    const char *json_etag;   /* the resource's etag */
    const char *xml_etag;    /* as the XML API sent it, quoted */
    json_t *metadata;        /* custom metadata: {"key": "value"} */
    /* Upstream's resource and the head it came with, when it is whole (no fields= selection): metadata GETs hit. */
    json_t *resource;
    const h2o_headers_t *resource_headers;
    const char *owner;       /* the uploader, "" for nobody */
} upload_facts_t;

/* Facts with nothing known but the object and its owner ("" for nobody); bucket and name may be NULL. */
void upload_facts_init(upload_facts_t *facts, const char *bucket, const char *name, const char *owner);
/* Takes every field a JSON object resource carries (a fields= selection may carry few); borrowed from resource. */
void upload_facts_from_resource(upload_facts_t *facts, json_t *resource);
/* Takes what an upload's JSON metadata (a multipart's first part, a resumable start's body) sets. */
void upload_facts_from_request_metadata(upload_facts_t *facts, json_t *metadata);
/* Takes what an XML write's request headers set (type, encoding, x-goog-meta-*); metadata is built in pool. */
void upload_facts_from_xml_request(upload_facts_t *facts, h2o_mem_pool_t *pool, const h2o_headers_t *headers);
/* Takes what an XML write's answer reports: generation, metageneration, ETag, x-goog-hash, stored length. */
void upload_facts_from_xml_answer(upload_facts_t *facts, h2o_mem_pool_t *pool, const h2o_headers_t *headers);

/*
 * The store metadata and record of the new object (caller frees with
 * store_meta_free). NULL when it can be cached, else why not: the facts
 * lack the generation, size or crc32c, or it is too large.
 */
const char *upload_entry_make(cache_t *cache, const upload_facts_t *facts, store_meta_t *meta);
/* Whether that generation of bucket/name is cached (or being filled): *key is its key then. */
bool upload_entry_is_cached(cache_t *cache, const char *bucket, const char *name, int64_t generation,
                            store_key_t *key);

#endif
