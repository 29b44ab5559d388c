/*
 * upload_session.h - uploads that take several requests (upload_session.c):
 * GCS resumable sessions and XML multipart uploads.
 */
#ifndef LARDER_CACHE_UPLOAD_SESSION_H
#define LARDER_CACHE_UPLOAD_SESSION_H

#include "upload_request.h"

typedef struct upload_sessions upload_sessions_t;

upload_sessions_t *upload_sessions_new(void);
/* Drops every session (at close: their pending chunks go at the next start-up, being transient). */
void upload_sessions_free(upload_sessions_t *sessions);
/* Sessions open now, and the bytes they keep pending in the store (for /_larder/stats). */
void upload_sessions_stats(cache_t *cache, uint64_t *open, uint64_t *pending_bytes);

/* A 2xx to a session's request (start, chunk, part, complete, cancel, abort); true when *made became an entry. */
bool upload_session_answered(const upload_request_t *u, const h2o_headers_t *headers, const char *body, size_t len,
                             store_key_t *made);
/* A resumable chunk's 308: upstream persisted the bytes its Range says. */
void upload_session_chunk_persisted(const upload_request_t *u, const h2o_headers_t *headers);
/* Anything else upstream answered a session's request: 404 and 410 end the session; the rest leave it be. */
void upload_session_refused(const upload_request_t *u, int status);

/*
 * The object a session (by its id) is writing, and the batch its start was in
 * (NULL: none), copied into pool; false when no such session is kept.
 */
bool upload_session_object(cache_t *cache, const char *id, h2o_mem_pool_t *pool, const char **bucket,
                           const char **name, const char **batch);

#endif
