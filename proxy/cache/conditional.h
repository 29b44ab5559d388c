/*
 * conditional.h - a client's preconditions and If-Range, answered from an entry (conditional.c).
 */
#ifndef LARDER_CACHE_CONDITIONAL_H
#define LARDER_CACHE_CONDITIONAL_H

#include "state.h"

/* 0 to serve, or 304 / 412, decided from the entry as GCS would. */
int conditional_evaluate(const cache_request_t *c, const store_meta_t *meta, const record_t *record);
/* RFC 9110 13.1.5: true when the Range may be honoured (no If-Range, or it matches the entry strongly). */
bool conditional_if_range_holds(const cache_request_t *c, const store_meta_t *meta, const record_t *record);

/*
 * Whether the request's conditions compare dates (If-Modified-Since, If-Unmodified-Since, a dated If-Range) that
 * the entry cannot answer: it has no Last-Modified yet (one a write made from an answer that told none).
 */
bool conditional_needs_last_modified(const cache_request_t *c, const store_meta_t *meta);

#endif
