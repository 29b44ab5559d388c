/*
 * upload_complete.h - completing an entry a write made from a partial
 * answer (upload_complete.c).
 */
#ifndef LARDER_CACHE_UPLOAD_COMPLETE_H
#define LARDER_CACHE_UPLOAD_COMPLETE_H

#include "state.h"

/*
 * Asks upstream, with the writer's credentials (req's Authorization), for
 * the whole resource of that generation, and remakes the entry's record
 * from it: metadata GETs then hit, and the views gain what the write's
 * answer did not tell (Last-Modified, the storage class, the JSON etag).
 * Does nothing when the request carried no Authorization header.
 */
void upload_complete_start(cache_t *cache, worker_t *worker, h2o_req_t *req, const store_key_t *key,
                           const char *bucket, const char *name, int64_t generation, const char *owner);
/* Cancels the completions running on worker's loop (shutdown); how many run there. */
void upload_complete_stop(cache_t *cache, worker_t *worker);
size_t upload_complete_running(cache_t *cache, worker_t *worker);

#endif
