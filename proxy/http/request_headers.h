/*
 * request_headers.h - the request headers a read acts on, found in one pass.
 *
 * A cacheable read looks at a dozen headers: preconditions, Range, the
 * batch it belongs to, customer-supplied keys. Looking each up on its own
 * walked the header list a dozen times and compared names as strings; on a
 * 4 KiB hit that was more work than the cache lookup. One pass here finds
 * them all, and everything after reads the values from this struct.
 */
#ifndef LARDER_REQUEST_HEADERS_H
#define LARDER_REQUEST_HEADERS_H

#include <h2o.h>
#include <stdbool.h>

typedef struct request_headers {
    /* Each the first such header's value, in the request; base NULL when absent. */
    h2o_iovec_t range, if_none_match, if_match, if_range, if_modified_since, if_unmodified_since;
    h2o_iovec_t accept_encoding;
    h2o_iovec_t if_generation_match, if_metageneration_match; /* x-goog-if-...-match, the XML API's */
    h2o_iovec_t batch;             /* x-larder-batch */
    unsigned batch_count;          /* more than one names no single batch */
    bool prefetch;                 /* x-larder-prefetch: a prefetcher's read */
    bool encryption_key;           /* x-goog-encryption-key or x-amz-server-side-encryption-customer-key */
} request_headers_t;

void request_headers_scan(request_headers_t *out, const h2o_headers_t *headers);

#endif
