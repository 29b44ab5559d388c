/*
 * batch_use.h - a request in a batch (X-Larder-Batch: ID): whether its
 * caller may pin into the batch, the pin of the object it reads or writes,
 * and the lifetime the response advertises (X-Larder-Available-Until).
 *
 * The pin is made once the object is known to be the caller's to read (or
 * once upstream took the write), never before: a pin counts the object's
 * bytes in the batch, and a caller must not learn even the size of an
 * object it may not read. The response waits for the pin's commit, so the
 * lifetime it advertises is one the store has promised.
 */
#ifndef LARDER_BATCH_USE_H
#define LARDER_BATCH_USE_H

#include "cache.h"
#include "gcs_error.h"
#include "request_headers.h"

typedef struct batch_use {
    const char *id;            /* the header's value; NULL: the request is in no batch */
    bool invalid;              /* the header is there but names no possible batch */
    h2o_req_t *req;            /* set by batch_use_pin */
    int64_t expires_at_ms;     /* the batch's, once looked up */
    uint64_t quota_bytes, pinned_bytes; /* likewise */
    int64_t available_until_ms; /* set once the pin committed: what the response advertises */
    lease_call_t *call;
    void (*on_pinned)(struct batch_use *use, int result);
} batch_use_t;

/* Takes X-Larder-Batch from the request's headers (once per request); the id is copied into pool. */
void batch_use_parse(batch_use_t *use, h2o_mem_pool_t *pool, const request_headers_t *headers);
/*
 * After the caller is known: the batch is live and the caller its owner or
 * an admin. Otherwise answers the request (400, 404, 403 or 503, in format)
 * and returns false.
 */
bool batch_use_check(batch_use_t *use, h2o_req_t *req, const auth_identity_t *who, error_format_t format);
/* Whether bytes more would fit the batch's quota and all batches' bound, as they stand (a write's early check). */
bool batch_use_has_room(const batch_use_t *use, h2o_req_t *req, uint64_t bytes);
/*
 * Pins gs://bucket/name; on_pinned(use, result) runs later on the loop.
 * False when the pin could not be queued (nothing will be called).
 */
bool batch_use_pin(batch_use_t *use, h2o_req_t *req, const char *bucket, const char *name, uint32_t marks,
                   uint64_t expect_bytes);
/* Answers a failed pin: 507 over a quota, 404 for a batch that ended meanwhile, else 503. */
void batch_use_refuse(batch_use_t *use, h2o_req_t *req, int result, error_format_t format);
/* Adds X-Larder-Available-Until when the pin committed. */
void batch_use_advertise(const batch_use_t *use, h2o_req_t *req);
/* The request is going away: a pin's result is no longer wanted. */
void batch_use_dispose(batch_use_t *use);

#endif
