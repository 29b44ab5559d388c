/*
 * worker.h - what one event-loop thread owns, shared by every stage of the
 * proxy (front door, cache, upstream client).
 *
 * Every request is handled entirely on the thread that accepted its
 * connection, so the loop, its curl multi handle, its timeout lists and its
 * parsed-record cache belong to that thread alone and need no lock. The one
 * way in from other threads is the wake queue (worker_wake): a fill running on
 * one worker wakes the readers of other workers that wait for its bytes.
 */
#ifndef LARDER_WORKER_H
#define LARDER_WORKER_H

#include <h2o.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "auth.h"
#include "conf.h"
#include "record.h"

typedef struct server server_t;
typedef struct worker worker_t;
typedef struct cache cache_t;
typedef struct upstream_pool upstream_pool_t;
typedef struct conn_table conn_table_t;
typedef struct buffers buffers_t;
typedef struct request_metrics request_metrics_t;
typedef struct user_usage user_usage_t;
typedef struct prefetcher prefetcher_t;

/* One h2o context per (worker, listener): each listener has its own globalconf. */
typedef struct listener_context {
    h2o_context_t h2o;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listen_sock;
    worker_t *worker;
    size_t index;
} listener_context_t;

/*
 * A wake-up another thread may ask for. The owner embeds it, sets cb, and
 * cancels it (worker_wake_cancel) before it is freed.
 */
typedef struct worker_wakeup {
    h2o_linklist_t link;
    bool queued; /* guarded by the worker's wake lock */
    void (*cb)(struct worker_wakeup *wakeup);
} worker_wakeup_t;

/*
 * Small hits send from a buffer of this size, which the worker keeps for the
 * next hit: a malloc and a free of 4 KiB were 2% of a 4 KiB hit. At most
 * WORKER_SPARE_BUFFERS are kept idle, half a megabyte per worker.
 */
#define WORKER_SMALL_BUFFER (16 * 1024)
#define WORKER_SPARE_BUFFERS 32
/*
 * Read states kept for the next reads: a hit's read state is too big for
 * malloc's fast path. None under AddressSanitizer, so that a read state used
 * after its request ended is still caught there.
 */
#if defined(__SANITIZE_ADDRESS__)
#define WORKER_SPARE_READ_STATES 0
#else
#define WORKER_SPARE_READ_STATES 256
#endif

struct worker {
    unsigned id;
    server_t *server;
    const conf_t *conf;
    pthread_t thread;
    h2o_evloop_t *loop;
    upstream_pool_t *upstream;
    cache_t *cache;                  /* shared by all workers; NULL when caching is off */
    prefetcher_t *prefetch;          /* shared by all workers; NULL without a cache */
    auth_local_t *auth;              /* this thread's part of auth: tokens and grants seen lately */
    buffers_t *buffers;              /* the process-wide bound on buffer memory */
    record_cache_t records;          /* records this worker parsed lately, ready for hits */
    store_key_memo_t *key_memo;      /* store keys this worker made lately */
    store_meta_memo_t *meta_memo;    /* metadata records this worker read lately; NULL without a cache */
    store_reader_t *store_reader;    /* this worker's own read transaction, for its chunk reads; NULL without a cache */
    store_hot_t *store_hot;          /* this worker's copies of small objects; NULL when there are none */
    conn_table_t *conns;             /* this worker's client connections */
    request_metrics_t *metrics;      /* what this worker's requests added up to */
    user_usage_t *usage;             /* bytes served and fetched, by identity */
    /* When upstream last answered (a response head) and last failed to (unix ms): /_larder/readyz. */
    _Atomic int64_t upstream_answered_ms, upstream_failed_ms;
    h2o_timeout_t asap;              /* 0 ms: run on the next loop pass, outside any callback in progress */
    h2o_timeout_t client_watchdog;   /* conf->client_timeout_ms: send outstanding too long */
    h2o_timeout_t upstream_response; /* conf->upstream.response_timeout_ms: waiting for headers */
    h2o_timeout_t upstream_idle;     /* conf->upstream.idle_timeout_ms: silence inside a body */
    h2o_timeout_t housekeeping;      /* 100 ms: accept pauses, shutdown sweeps */
    listener_context_t *contexts;    /* one per listener */
    int stop_fd;                     /* eventfd: the main thread asks the loop to stop */
    h2o_socket_t *stop_sock;
    bool stopping;

    /* Accepting (front/server.c). */
    h2o_timeout_entry_t accept_resume; /* listeners rest after accept() failed for lack of descriptors */
    bool accept_paused;
    uint64_t accept_warned_ms;
    unsigned accept_failures;          /* since the last warning */
    h2o_timeout_entry_t drain_tick;    /* shutdown: sweeps idle connections, checks what is left */
    worker_wakeup_t tls_reload;        /* SIGHUP loaded new certificates: accept with them */

    /* Send buffers of small hits, kept for the next ones (worker_small_buffer_take). */
    char *spare_buffers[WORKER_SPARE_BUFFERS];
    unsigned spare_count;
    /* The cache's read states (cache/read.c), of one size, kept likewise; cleared after the loop. */
    h2o_mem_recycle_t spare_read_states;

    /* Wake-ups from other threads (see worker_wake). */
    pthread_mutex_t wake_lock;
    h2o_linklist_t wake_pending;
    int wake_fd;
    h2o_socket_t *wake_sock;
    h2o_timeout_entry_t wake_soon; /* on asap: runs wake-ups queued from this worker's own thread */
};

/*
 * Queues wakeup->cb to run on worker's loop; any thread. A wake-up already
 * queued is not queued twice. The callback never runs inside worker_wake: on
 * the worker's own thread it runs at the end of the current loop pass.
 */
void worker_wake(worker_t *worker, worker_wakeup_t *wakeup);
/* Tells worker_wake which worker's loop the calling thread runs (NULL: none); worker_main. */
void worker_bind_thread(worker_t *worker);
/* Unqueues a wake-up that has not run; on the worker's own thread. */
void worker_wake_cancel(worker_t *worker, worker_wakeup_t *wakeup);
/* Sets up and tears down the wake queue (server.c). */
int worker_wake_init(worker_t *worker);
void worker_wake_dispose(worker_t *worker);

/* A buffer of WORKER_SMALL_BUFFER bytes (NULL without memory), and its return; on the worker's own thread. */
char *worker_small_buffer_take(worker_t *worker);
void worker_small_buffer_give(worker_t *worker, char *buf);
/* Frees the idle buffers and read states, once the loop has ended (server.c). */
void worker_spares_clear(worker_t *worker);

/* Reads (and so clears) an eventfd or timerfd the loop found readable; a failure is only worth a warning. */
void worker_drain_fd(int fd, const char *component);

/* Monotonic milliseconds, for durations in logs and limits. */
static inline uint64_t worker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Monotonic milliseconds to the clock's tick (a few ms), for orderings and
 * windows of seconds on every request: a precise read costs 46 ns on a KVM
 * guest, this one 9-11 ns.
 */
static inline uint64_t worker_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wall-clock milliseconds, for fill times that outlive the process. */
static inline int64_t worker_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Unlinks a timeout entry if it is armed (h2o asserts on double unlinks). */
static inline void worker_disarm(h2o_timeout_entry_t *entry)
{
    if (h2o_timeout_is_linked(entry))
        h2o_timeout_unlink(entry);
}

/* (Re)arms entry on timeout list `timeout` of worker's loop. */
static inline void worker_arm(worker_t *worker, h2o_timeout_t *timeout, h2o_timeout_entry_t *entry)
{
    worker_disarm(entry);
    h2o_timeout_link(worker->loop, timeout, entry);
}

/*
 * Cuts a client connection: h2o 2.2.5 never times out a client that stops
 * reading, so shut its socket down and let h2o tear the connection down
 * through its usual close path (which disposes every request on it). Also
 * how a response that cannot be completed honestly is made visibly broken.
 */
static inline void worker_cut_connection(h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock != NULL)
        shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

/* The worker that runs the request's connection. */
static inline worker_t *worker_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(listener_context_t, h2o, req->conn->ctx)->worker;
}

/* What the admin endpoints read of the server (front/server.c). Workers live as long as the server. */
size_t server_worker_count(const server_t *server);
worker_t *server_worker_at(server_t *server, size_t i);
unsigned server_client_connections(server_t *server);
/* The workers' copies of small objects, added up. */
void server_hot_stats(server_t *server, store_hot_stats_t *sum);

#endif
