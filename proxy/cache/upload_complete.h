/*
 * upload_complete.h - completing an entry a write made from a partial
 * answer (upload_complete.c).
 */
#ifndef LARDER_CACHE_UPLOAD_COMPLETE_H
#define LARDER_CACHE_UPLOAD_COMPLETE_H

#include "state.h"

typedef struct completion completion_t;

/* Someone waiting for a completion: the write, holding its answer until the entry is whole. */
typedef struct upload_wait {
    completion_t *completion; /* running; NULL once it ended (on_done has run) */
    void (*on_done)(struct upload_wait *wait);
} upload_wait_t;

/*
 * Asks upstream, with the writer's credentials (an Authorization value), for
 * the whole resource of that generation, and remakes the entry's record
 * from it: metadata GETs then hit, and the views gain what the write's
 * answer did not tell (Last-Modified, the storage class, the JSON etag).
 * Does nothing when authorization is NULL. wait
 * (may be NULL) is told when it ended, whatever the outcome, on this loop;
 * wait->completion is set while it runs.
 */
void upload_complete_start(cache_t *cache, worker_t *worker, const char *authorization, const store_key_t *key,
                           const char *bucket, const char *name, int64_t generation, const char *owner,
                           upload_wait_t *wait);
/* The waiter goes away (its request ended): the completion goes on without telling it. */
void upload_complete_forget(upload_wait_t *wait);
/* Cancels the completions running on worker's loop (shutdown); how many run there. */
void upload_complete_stop(cache_t *cache, worker_t *worker);
size_t upload_complete_running(cache_t *cache, worker_t *worker);

#endif
