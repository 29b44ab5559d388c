/*
 * upload.h - upstream's answer to a write, and what the cache makes of it
 * (upload.c).
 */
#ifndef LARDER_CACHE_UPLOAD_H
#define LARDER_CACHE_UPLOAD_H

#include "upload_request.h"

/*
 * Upstream's answer, held whole before the client sees it (headers NULL for
 * a refusal that streamed). A confirmed upload (copy, compose) becomes an
 * entry: the old copy is invalidated and the new one registered as a local
 * fill, so the next read is a hit; sessions advance. Returns true when
 * *made was made an entry (the caller must not invalidate it again).
 */
bool upload_answered(const upload_request_t *u, int status, const h2o_headers_t *headers, const char *body,
                     size_t len, store_key_t *made);

#endif
