/*
 * lease_call.h - store lease calls made from an event loop, with their
 * result delivered on the same loop (see lease_call.c).
 *
 * Use: call = lease_call_new(...); then
 *   call = lease_call_queued(call, store_lease_X_async(..., lease_call_store_done(), call));
 * NULL means it could not be queued (done is never called); otherwise done
 * runs once on the worker's loop, unless lease_call_cancel came first.
 */
#ifndef LARDER_LEASE_CALL_H
#define LARDER_LEASE_CALL_H

#include "cache.h"

typedef cache_batch_done_fn lease_call_done_fn; /* lease_call_t and lease_call_cancel: cache.h */

lease_call_t *lease_call_new(cache_t *cache, worker_t *worker, lease_call_done_fn done, void *ctx);
/* What the store said when asked to queue the call: the call, or NULL (freed) when it was refused. */
lease_call_t *lease_call_queued(lease_call_t *call, int queued);
/* The callback to hand the store, with the call as its context. */
store_lease_done_fn lease_call_store_done(void);

/* Calls on worker's loop still waiting for the store; lease_calls_stop gives up on them (shutdown). */
size_t lease_calls_running(cache_t *cache, worker_t *worker);
void lease_calls_stop(cache_t *cache, worker_t *worker);

#endif
