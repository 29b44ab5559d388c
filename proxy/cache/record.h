/*
 * record.h - a cached object's record (see cache.h), parsed once and kept
 * ready to answer hits: each API's ETag and its response headers with their
 * h2o tokens resolved, and the JSON resource already serialized.
 *
 * Parsing the record's JSON was most of a small hit's CPU, so each worker
 * keeps the records it parsed lately in a record_cache. An entry is reused
 * only while the store still holds byte-identical record text for the same
 * generation, so a record the store changed is never served stale.
 *
 * Records are reference counted and owned by one worker thread: a hit holds
 * a reference for as long as h2o may read the header values it points at.
 */
#ifndef LARDER_RECORD_H
#define LARDER_RECORD_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>

#include "cache_request.h"
#include "store.h"

typedef struct record_header {
    const h2o_token_t *token; /* NULL for a header h2o has no token for */
    h2o_iovec_t name, value;
    bool describes_payload;   /* Content-Type or Content-Encoding: left out of a 304 */
} record_header_t;

/* One response's replayable head: the ETag it carries and its headers. */
typedef struct record_view {
    bool present;     /* a response of this kind filled the record */
    const char *etag; /* NULL when upstream sent none (the generation is the validator then) */
    record_header_t *headers;
    size_t num_headers;
} record_view_t;

typedef struct record {
    unsigned refs;
    record_view_t media[2];   /* indexed by cache_flavour_t: the JSON API's and the XML API's media responses */
    record_view_t resource;   /* the metadata GET's head; its etag is the resource's */
    h2o_iovec_t resource_text; /* the JSON resource, compact; base NULL when absent */
    bool is_public;           /* upstream served this generation to an anonymous caller, or its ACL says allUsers */
    /* What the entry was parsed from, to tell whether the store still says the same. */
    store_key_t key;
    int64_t generation;
    char *text;
    size_t text_len;
    char *arena;      /* owns every string above */
    size_t footprint; /* bytes this record holds, for the cache's budget */
} record_t;

/* Parses record text; NULL when it is absent or unreadable. The result has one reference. */
record_t *record_parse(const store_key_t *key, int64_t generation, const char *text);
void record_retain(record_t *record);
void record_release(record_t *record);

/* The media view for an API, or NULL when that API never filled this object. */
const record_view_t *record_media_view(const record_t *record, cache_flavour_t flavour);
/* True when a metadata GET can be answered: the resource and its head were recorded. */
bool record_has_resource(const record_t *record);

/* Adds a view's headers to a response; a 304 leaves out the payload's own headers. */
void record_add_headers(h2o_req_t *req, const record_view_t *view, bool not_modified);

/* --- per-worker cache of parsed records --- */

#define RECORD_CACHE_SLOTS 4096
/* Records are small (a few KiB), but custom metadata can make one 20 KiB or more: bound the bytes, not the count. */
#define RECORD_CACHE_BYTES (4 * 1024 * 1024)

typedef struct record_cache {
    record_t *slots[RECORD_CACHE_SLOTS]; /* direct-mapped by key: a collision replaces */
    size_t bytes;                        /* footprint of the records in slots */
    size_t sweep;                        /* next slot to drop when over budget */
} record_cache_t;

/*
 * The parsed record for text (the store's record for key at generation): the
 * cached one when it was parsed from the same text, else a fresh parse that
 * replaces it. Returns a new reference, or NULL when text is unreadable.
 */
record_t *record_cache_get(record_cache_t *cache, const store_key_t *key, int64_t generation, const char *text);
/* Drops every entry (at worker exit). */
void record_cache_clear(record_cache_t *cache);

#endif
