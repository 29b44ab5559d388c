/*
 * worker.h - what one event-loop thread owns.
 *
 * Every request is handled entirely on the thread that accepted its
 * connection, so nothing here needs a lock: the loop, its curl multi handle,
 * and its timeout lists belong to that thread alone.
 */
#ifndef LARDER_WORKER_H
#define LARDER_WORKER_H

#include <h2o.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "cache.h"
#include "conf.h"
#include "record.h"
#include "upstream.h"

typedef struct server server_t;
typedef struct worker worker_t;

/* One h2o context per (worker, listener): each listener has its own globalconf. */
typedef struct listener_context {
    h2o_context_t h2o;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listen_sock;
    worker_t *worker;
} listener_context_t;

struct worker {
    unsigned id;
    server_t *server;
    const conf_t *conf;
    pthread_t thread;
    h2o_evloop_t *loop;
    upstream_pool_t *upstream;
    cache_t *cache;                  /* shared by all workers; NULL when caching is off */
    record_cache_t records;          /* records this worker parsed lately, ready for hits */
    h2o_timeout_t fill_poll;         /* short: a follower checking for the next committed chunk */
    h2o_timeout_t client_watchdog;   /* conf->client_timeout_ms: send outstanding too long */
    h2o_timeout_t upstream_response; /* conf->upstream.response_timeout_ms: waiting for headers */
    h2o_timeout_t upstream_idle;     /* conf->upstream.idle_timeout_ms: silence inside a body */
    listener_context_t *contexts;    /* one per listener */
    int stop_fd;                     /* eventfd: the main thread asks the loop to stop */
    h2o_socket_t *stop_sock;
    bool stopping;
};

/* Monotonic milliseconds, for durations in logs and patience limits. */
static inline uint64_t worker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Unlinks a timeout entry if it is armed (h2o asserts on double unlinks). */
static inline void worker_disarm(h2o_timeout_entry_t *entry)
{
    if (h2o_timeout_is_linked(entry))
        h2o_timeout_unlink(entry);
}

/*
 * The client-watchdog's cut: h2o 2.2.5 never times out a client that stops
 * reading, so shut its socket down and let h2o tear the connection down
 * through its usual close path (which disposes every request on it).
 */
static inline void worker_cut_stalled_client(h2o_req_t *req)
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

#endif
