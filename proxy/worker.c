/*
 * worker.c - the wake queue: how other threads ask a worker's loop to run
 * something. A fill runs on the worker whose client started it, but its
 * readers may be on any worker; each chunk the fill receives or commits wakes
 * them here, on their own loop, where they may talk to h2o. Also the
 * worker's spare send buffers for small hits.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "worker.h"

/* The worker whose loop this thread runs (worker_bind_thread), or NULL: this thread's context. */
static _Thread_local worker_t *thread_worker;

void worker_bind_thread(worker_t *worker)
{
    thread_worker = worker;
}

/* Whoever finds the queue empty makes sure it is run; a wake-up joining a queue that is not is run with it. */
void worker_wake(worker_t *worker, worker_wakeup_t *wakeup)
{
    bool signal = false;
    pthread_mutex_lock(&worker->wake_lock);
    if (!wakeup->queued) {
        wakeup->queued = true;
        signal = h2o_linklist_is_empty(&worker->wake_pending);
        h2o_linklist_insert(&worker->wake_pending, &wakeup->link);
    }
    pthread_mutex_unlock(&worker->wake_lock);
    if (!signal)
        return;
    if (thread_worker == worker) {
        /*
         * From the worker's own loop, mostly a fill waking its own readers:
         * run at the end of this loop pass. Through the eventfd it waited for
         * the next epoll_wait, in whose events curl read the upstream socket
         * first, so a 1 MiB miss's head waited for a few hundred KB more
         * (0.3 ms of its first byte).
         */
        if (!h2o_timeout_is_linked(&worker->wake_soon))
            h2o_timeout_link(worker->loop, &worker->asap, &worker->wake_soon);
        return;
    }
    uint64_t one = 1;
    while (write(worker->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

void worker_wake_cancel(worker_t *worker, worker_wakeup_t *wakeup)
{
    pthread_mutex_lock(&worker->wake_lock);
    if (wakeup->queued) {
        h2o_linklist_unlink(&wakeup->link);
        wakeup->queued = false;
    }
    pthread_mutex_unlock(&worker->wake_lock);
}

void worker_drain_fd(int fd, const char *component)
{
    uint64_t count;
    if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        log_msg(LOG_LEVEL_WARN, component, "reading an event or timer descriptor: %s", strerror(errno));
}

/* One wake-up at a time: a callback may cancel (free) another that is still queued. */
static void run_wakeups(worker_t *worker)
{
    for (;;) {
        pthread_mutex_lock(&worker->wake_lock);
        if (h2o_linklist_is_empty(&worker->wake_pending)) {
            pthread_mutex_unlock(&worker->wake_lock);
            return;
        }
        worker_wakeup_t *wakeup = H2O_STRUCT_FROM_MEMBER(worker_wakeup_t, link, worker->wake_pending.next);
        h2o_linklist_unlink(&wakeup->link);
        wakeup->queued = false;
        pthread_mutex_unlock(&worker->wake_lock);
        wakeup->cb(wakeup);
    }
}

static void on_wake(h2o_socket_t *sock, const char *err)
{
    worker_t *worker = sock->data;
    (void)err;
    worker_drain_fd(worker->wake_fd, "worker");
    run_wakeups(worker);
}

static void on_wake_soon(h2o_timeout_entry_t *entry)
{
    run_wakeups(H2O_STRUCT_FROM_MEMBER(worker_t, wake_soon, entry));
}

int worker_wake_init(worker_t *worker)
{
    if (pthread_mutex_init(&worker->wake_lock, NULL) != 0)
        return -1;
    h2o_linklist_init_anchor(&worker->wake_pending);
    worker->wake_soon.cb = on_wake_soon;
    if ((worker->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        pthread_mutex_destroy(&worker->wake_lock);
        return -1;
    }
    worker->wake_sock = h2o_evloop_socket_create(worker->loop, worker->wake_fd, H2O_SOCKET_FLAG_DONT_READ);
    worker->wake_sock->data = worker;
    h2o_socket_read_start(worker->wake_sock, on_wake);
    return 0;
}

void worker_wake_dispose(worker_t *worker)
{
    worker_disarm(&worker->wake_soon); /* before the loop's timeouts go: wake-ups still queued never run */
    if (worker->wake_sock == NULL)
        return;
    h2o_socket_close(worker->wake_sock); /* closes wake_fd */
    worker->wake_sock = NULL;
    pthread_mutex_destroy(&worker->wake_lock);
}

char *worker_small_buffer_take(worker_t *worker)
{
    return worker->spare_count > 0 ? worker->spare_buffers[--worker->spare_count] : malloc(WORKER_SMALL_BUFFER);
}

void worker_small_buffer_give(worker_t *worker, char *buf)
{
    if (buf != NULL && worker->spare_count < WORKER_SPARE_BUFFERS)
        worker->spare_buffers[worker->spare_count++] = buf;
    else
        free(buf);
}

void worker_spares_clear(worker_t *worker)
{
    while (worker->spare_count > 0)
        free(worker->spare_buffers[--worker->spare_count]);
    /* h2o has no call to empty a recycler; taking from one that is not empty never allocates. */
    while (worker->spare_read_states.cnt > 0)
        free(h2o_mem_alloc_recycle(&worker->spare_read_states, 1));
}
