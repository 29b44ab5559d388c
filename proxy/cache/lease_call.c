/*
 * lease_call.c - a store lease call made from an event loop, its result
 * delivered back on that loop.
 *
 * Lease writes are decided by the store's writer thread in a commit, which
 * takes milliseconds; a loop must not wait for that. The call is queued
 * (store_lease_*_async), the writer reports its result, and the worker's
 * wake queue runs the caller's callback on its own loop.
 *
 * Who frees a call is settled by its state, under the call's own lock: OUT
 * while the store has it, REPORTED once the writer handed its result to the
 * worker (the worker frees it when the wake-up runs), and ABANDONED when the
 * worker stopped first (the writer frees it when it reports, at store_close
 * at the latest). The writer queues the wake-up with the lock held, so a
 * worker that stops meanwhile never frees a call the writer still touches. A caller that goes away before the
 * result only marks the call cancelled; the call stays on the worker's list,
 * so that draining at shutdown waits for it.
 */
#include <pthread.h>
#include <stdlib.h>

#include "lease_call.h"
#include "state.h"

enum { CALL_OUT, CALL_REPORTED, CALL_ABANDONED };

struct lease_call {
    h2o_linklist_t link;         /* cache->home_lease_calls[worker->id] */
    worker_wakeup_t reported;
    worker_t *worker;
    pthread_mutex_t lock;        /* guards state and result */
    int state;
    int result;
    lease_call_done_fn done;     /* NULL once cancelled */
    void *ctx;
};

static void call_free(lease_call_t *call)
{
    pthread_mutex_destroy(&call->lock);
    free(call);
}

static void on_reported(worker_wakeup_t *wakeup)
{
    lease_call_t *call = H2O_STRUCT_FROM_MEMBER(lease_call_t, reported, wakeup);
    h2o_linklist_unlink(&call->link);
    pthread_mutex_lock(&call->lock);
    int result = call->result;
    pthread_mutex_unlock(&call->lock);
    if (call->done != NULL)
        call->done(call->ctx, result);
    call_free(call);
}

/* On the writer thread. */
static void on_store_done(void *ctx, int result)
{
    lease_call_t *call = ctx;
    pthread_mutex_lock(&call->lock);
    bool abandoned = call->state == CALL_ABANDONED;
    if (!abandoned) {
        call->result = result;
        call->state = CALL_REPORTED;
        worker_wake(call->worker, &call->reported);
    }
    pthread_mutex_unlock(&call->lock);
    if (abandoned)
        call_free(call); /* nobody waits */
}

lease_call_t *lease_call_new(cache_t *cache, worker_t *worker, lease_call_done_fn done, void *ctx)
{
    lease_call_t *call = calloc(1, sizeof(*call));
    if (call == NULL)
        return NULL;
    if (pthread_mutex_init(&call->lock, NULL) != 0) {
        free(call);
        return NULL;
    }
    call->worker = worker;
    call->reported.cb = on_reported;
    call->done = done;
    call->ctx = ctx;
    call->state = CALL_OUT;
    h2o_linklist_insert(&cache->home_lease_calls[worker->id], &call->link);
    return call;
}

lease_call_t *lease_call_queued(lease_call_t *call, int queued)
{
    if (queued == STORE_OK)
        return call;
    h2o_linklist_unlink(&call->link);
    call_free(call);
    return NULL;
}

store_lease_done_fn lease_call_store_done(void)
{
    return on_store_done;
}

void lease_call_cancel(lease_call_t *call)
{
    if (call != NULL)
        call->done = NULL;
}

size_t lease_calls_running(cache_t *cache, worker_t *worker)
{
    return cache_list_length(&cache->home_lease_calls[worker->id]);
}

void lease_calls_stop(cache_t *cache, worker_t *worker)
{
    h2o_linklist_t *list = &cache->home_lease_calls[worker->id];
    while (!h2o_linklist_is_empty(list)) {
        lease_call_t *call = H2O_STRUCT_FROM_MEMBER(lease_call_t, link, list->next);
        h2o_linklist_unlink(&call->link);
        call->done = NULL;
        pthread_mutex_lock(&call->lock);
        bool out = call->state == CALL_OUT;
        if (out)
            call->state = CALL_ABANDONED;
        pthread_mutex_unlock(&call->lock);
        if (out)
            continue; /* the writer frees it when it reports */
        worker_wake_cancel(worker, &call->reported); /* reported: its wake-up may still be queued */
        call_free(call);
    }
}
