/*
 * upload_request.h - what a write request is, parsed once (upload_request.c).
 */
#ifndef LARDER_CACHE_UPLOAD_REQUEST_H
#define LARDER_CACHE_UPLOAD_REQUEST_H

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
    const char *authorization; /* the request's Authorization value (NULL: none), to ask upstream as the writer */
    bool cacheable;      /* false: the object is encrypted with the client's own key, or the caller is unknown */
    const char *bucket;  /* the object written (an upload's, a copy's destination), decoded; NULL when none */
    const char *name;
    h2o_iovec_t media;   /* UPLOAD_JSON, UPLOAD_XML_PUT, UPLOAD_XML_PART: the object's (or part's) bytes */
    const char *media_type; /* the Content-Type those bytes came with; NULL when none */
    json_t *metadata;    /* the multipart upload's metadata part, a resumable start's or compose's body; pool-owned */
    const char *session; /* a resumable upload_id or an XML UploadId, decoded */
    const char *batch;   /* the batch (X-Larder-Batch) the caller was allowed to use; NULL: none */
    struct upload_wait *wait; /* told when an entry made from a partial answer is whole; may be NULL */
} upload_request_t;

/* Classifies the write and finds its object, bytes and metadata. */
void upload_request_parse(upload_request_t *u, cache_t *cache, h2o_req_t *req, const target_t *target);
/* A copyTo or rewriteTo suffix ("/copyTo/b/B/o/N"): its destination into u->bucket and u->name; false if none. */
bool upload_destination_of(upload_request_t *u, h2o_iovec_t suffix);
/* Whether a write of this kind changes the object it names (a session's start, part or abort does not). */
bool upload_touches_object(const upload_request_t *u);
/* A query parameter, decoded (form-encoded: '+' is a space), and a request header, in the request's pool. */
const char *upload_request_param(const upload_request_t *u, const char *name);
const char *upload_request_header(const upload_request_t *u, const char *name);

#endif
