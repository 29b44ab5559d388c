/*
 * upload.h - a write's object becoming a cache entry once upstream
 * confirmed it (upload.c): uploads, XML PUTs, copies, composes, rewrites.
 */
#ifndef LARDER_CACHE_UPLOAD_H
#define LARDER_CACHE_UPLOAD_H

#include <jansson.h>

#include "state.h"

typedef enum {
    UPLOAD_NONE,              /* a write that makes no object (delete, patch, ACLs, ...) */
    UPLOAD_JSON,              /* a JSON media or multipart upload: the bytes are in this request */
    UPLOAD_RESUMABLE_START,   /* starts a resumable session: names no object yet */
    UPLOAD_RESUMABLE_CHUNK,   /* a resumable session's PUT (a chunk, the last, or a status query) */
    UPLOAD_RESUMABLE_CANCEL,  /* DELETE of a resumable session */
    UPLOAD_XML_PUT,           /* an XML PUT of the bytes in this request */
    UPLOAD_XML_MULTIPART_START, /* POST ?uploads */
    UPLOAD_XML_PART,          /* PUT ?partNumber&uploadId */
    UPLOAD_XML_MULTIPART_COMPLETE, /* POST ?uploadId */
    UPLOAD_XML_MULTIPART_ABORT,    /* DELETE ?uploadId */
    UPLOAD_COPY,              /* JSON copyTo or rewriteTo: the source's bytes */
    UPLOAD_XML_COPY,          /* an XML PUT with x-goog-copy-source (or x-amz-copy-source) */
    UPLOAD_COMPOSE            /* JSON compose: the sources' bytes, in order */
} upload_kind_t;

/* What a write request is, parsed once when it arrives (its body's parts point into req->entity). */
typedef struct upload_request {
    upload_kind_t kind;
    cache_t *cache;
    worker_t *worker;
    h2o_req_t *req;
    const target_t *target;
    const char *owner;   /* the caller as the new entry's owner; "" for nobody */
    bool cacheable;      /* false: the object is encrypted with the client's own key, or the caller is unknown */
    const char *bucket;  /* the object written (an upload's, a copy's destination), decoded; NULL when none */
    const char *name;
    h2o_iovec_t media;   /* UPLOAD_JSON, UPLOAD_XML_PUT, UPLOAD_XML_PART: the object's (or part's) bytes */
    const char *media_type; /* the Content-Type those bytes came with; NULL when none */
    json_t *metadata;    /* the multipart upload's metadata part, a resumable start's or compose's body; pool-owned */
    const char *session; /* a resumable upload_id or an XML UploadId, decoded */
} upload_request_t;

/* Classifies the write and finds its object, bytes and metadata. */
void upload_request_parse(upload_request_t *u, cache_t *cache, h2o_req_t *req, const target_t *target);
/* A copyTo or rewriteTo suffix ("/copyTo/b/B/o/N"): its destination into u->bucket and u->name; false if none. */
bool upload_destination_of(upload_request_t *u, h2o_iovec_t suffix);
/* Whether a write of this kind changes the object it names (a session's start, part or abort does not). */
bool upload_touches_object(const upload_request_t *u);

/*
 * Upstream's answer, held whole before the client sees it. A confirmed
 * upload (copy, compose) becomes an entry: the old copy is invalidated and
 * the new one registered as a local fill, so the next read is a hit;
 * sessions advance. Returns true when *made was made an entry (the caller
 * must not invalidate it again).
 */
bool upload_answered(const upload_request_t *u, int status, const h2o_headers_t *headers, const char *body,
                     size_t len, store_key_t *made);

/* --- shared with upload_session.c --- */

/* A run of the new object's bytes: in memory, or a version of a cached (or pending) object in the store. */
typedef struct upload_segment {
    const char *data; /* NULL: in the store */
    store_key_t key;
    int64_t generation;
    uint64_t offset; /* in the store: where in that object the run starts */
    uint64_t length;
} upload_segment_t;

struct upload_facts;
/* Takes an answer's resource into facts; whole: the start asked for no fields= selection either. */
void upload_facts_from_answer(struct upload_facts *facts, const upload_request_t *u, json_t *resource,
                              const h2o_headers_t *headers, bool whole);
/* Whether that generation of bucket/name is cached (or being filled): *made is its key then. */
bool upload_entry_is_cached(cache_t *cache, const char *bucket, const char *name, int64_t generation,
                            store_key_t *made);
/*
 * Makes the object facts describe an entry whose bytes are segments, one
 * after another: the old copy is invalidated, and a local fill started.
 * True when *made is the object's key and must not be invalidated again
 * (made an entry, or a newer generation is cached already).
 */
bool upload_make_entry(const upload_request_t *u, const struct upload_facts *facts, const upload_segment_t *segments,
                       size_t count, store_key_t *made);

#endif
