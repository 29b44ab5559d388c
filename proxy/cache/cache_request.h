/*
 * cache_request.h - what a read asks of the cache, taken from the parsed
 * target and the request's headers.
 *
 * A request is cacheable when it reads one object's bytes (JSON alt=media,
 * /download/, XML GET/HEAD) or one object's JSON resource, with nothing in it
 * that the cache cannot answer exactly as GCS would (sub-resources, partial
 * responses, multiple ranges, repeated parameters...). Everything else passes
 * through.
 */
#ifndef LARDER_CACHE_REQUEST_H
#define LARDER_CACHE_REQUEST_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request_headers.h"
#include "target.h"

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
    const char *bucket;      /* the target's, decoded */
    const char *name;
    int64_t generation;      /* from ?generation=, or -1 */
    cache_range_t range;
    /* Client preconditions, answered from the cache. -1: absent. */
    int64_t if_generation_match, if_generation_not_match;
    int64_t if_metageneration_match, if_metageneration_not_match;
    h2o_iovec_t if_none_match, if_match, if_range; /* header values (base NULL: absent), in the request */
    int64_t if_modified_since;   /* unix seconds, -1: absent */
    int64_t if_unmodified_since;
    bool accepts_gzip;
} cache_request_t;

/*
 * What the request asks of the cache, from its target and its headers
 * (request_headers_scan of req's); out->kind is CACHE_READ_NONE when it must
 * pass through. A bad x-goog-if-generation-match header (not an int64) sets
 * *invalid, and the request is to be refused with 400.
 */
void cache_request_parse(cache_request_t *out, const target_t *target, const h2o_req_t *req,
                         const request_headers_t *headers, const char **invalid);

/* Parses an HTTP date (RFC 9110 IMF-fixdate, and RFC 850/asctime); -1 if invalid. */
int64_t cache_parse_http_date(const char *s, size_t len);

/* Resolves a range against an object size, both ends inclusive. False if unsatisfiable. */
bool cache_range_resolve(const cache_range_t *range, uint64_t size, uint64_t *first, uint64_t *last);

/* A customer-supplied encryption key (CSEK): such objects pass through, and are never cached. */
bool cache_request_carries_encryption_key(const h2o_req_t *req);

#endif
