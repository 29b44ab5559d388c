/*
 * cache_request.h - what a request asks of the cache.
 *
 * A request is cacheable when it reads one object's bytes (JSON alt=media,
 * /download/, XML GET/HEAD) or one object's JSON resource, with nothing in it
 * that the cache cannot answer exactly as GCS would (sub-resources, partial
 * responses, multiple ranges...). Everything else passes through.
 */
#ifndef LARDER_CACHE_REQUEST_H
#define LARDER_CACHE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route.h"

typedef enum {
    CACHE_READ_NONE,     /* not cacheable: pass through */
    CACHE_READ_MEDIA,    /* object bytes */
    CACHE_READ_METADATA  /* the JSON API object resource */
} cache_read_kind_t;

typedef enum { CACHE_FLAVOUR_JSON, CACHE_FLAVOUR_XML } cache_flavour_t;

typedef struct cache_range {
    bool present;
    bool suffix;       /* bytes=-N: the last `last` bytes */
    uint64_t first;
    uint64_t last;     /* inclusive; UINT64_MAX for "to the end" */
} cache_range_t;

typedef struct cache_request {
    cache_read_kind_t kind;
    cache_flavour_t flavour;
    bool head;
    char *bucket;            /* decoded, NUL-terminated, malloc'd */
    char *name;              /* decoded object name, malloc'd */
    int64_t generation;      /* from ?generation=, or -1 */
    cache_range_t range;
    /* Client preconditions, answered from the cache once it is fresh. */
    int64_t if_generation_match, if_generation_not_match;         /* -1: absent */
    int64_t if_metageneration_match, if_metageneration_not_match; /* -1: absent */
    const char *if_none_match;   /* header values, pointing into the request */
    size_t if_none_match_len;
    const char *if_match;
    size_t if_match_len;
    int64_t if_modified_since;   /* unix seconds, -1: absent */
    int64_t if_unmodified_since;
    bool accepts_gzip;
} cache_request_t;

/* Header values the classifier needs, gathered by the caller from h2o. */
typedef struct cache_request_headers {
    const char *range, *if_none_match, *if_match, *if_modified_since, *if_unmodified_since, *accept_encoding,
        *x_goog_if_generation_match;
    size_t range_len, if_none_match_len, if_match_len, if_modified_since_len, if_unmodified_since_len,
        accept_encoding_len, x_goog_if_generation_match_len;
} cache_request_headers_t;

/*
 * Fills *out from the request; out->kind is CACHE_READ_NONE when the request
 * must pass through (including when a name does not decode or memory runs out).
 */
void cache_request_parse(cache_request_t *out, const route_t *route, const char *method, size_t method_len,
                        const char *path, size_t path_len, const cache_request_headers_t *headers);
void cache_request_dispose(cache_request_t *req);

/* Percent-decodes src into a new NUL-terminated string; NULL on bad escapes or NUL bytes. */
char *cache_percent_decode(const char *src, size_t len);

/* Parses an HTTP date (RFC 7231 IMF-fixdate, and RFC 850/asctime); -1 if invalid. */
int64_t cache_parse_http_date(const char *s, size_t len);

/* Resolves a range against an object size, both ends inclusive. False if unsatisfiable. */
bool cache_range_resolve(const cache_range_t *range, uint64_t size, uint64_t *first, uint64_t *last);

#endif
