/*
 * upstream.h - one libcurl multi handle per event-loop thread.
 *
 * curl's sockets live in a private epoll set; that epoll fd and a timerfd are
 * the only descriptors h2o sees (registered read-only), so h2o and curl never
 * both own a socket. curl callbacks (header, write) must only record state:
 * the pool calls each transfer's on_ready once curl has returned, and that is
 * where a transfer may talk to h2o.
 */
#ifndef LARDER_UPSTREAM_H
#define LARDER_UPSTREAM_H

#include <curl/curl.h>
#include <h2o.h>
#include <stdbool.h>

#include "conf.h"

typedef struct upstream_pool upstream_pool_t;
typedef struct upstream_transfer upstream_transfer_t;

struct upstream_transfer {
    CURL *easy;
    /* Runs on the loop, outside curl, after any callback marked it ready. */
    void (*on_ready)(upstream_transfer_t *transfer);
    CURLcode result; /* valid once finished */
    bool finished;
    bool running;    /* owned by the multi handle */
    bool ready_queued;
    h2o_linklist_t ready_link;
};

upstream_pool_t *upstream_pool_create(h2o_loop_t *loop, const conf_t *conf);
void upstream_pool_destroy(upstream_pool_t *pool);

/*
 * Creates an easy handle with the pool's common options (timeouts, TLS, the
 * per-thread share for DNS and TLS sessions). The caller adds URL, method,
 * headers and callbacks, then calls upstream_transfer_start.
 */
CURL *upstream_easy_new(upstream_pool_t *pool, upstream_transfer_t *transfer);
int upstream_transfer_start(upstream_pool_t *pool, upstream_transfer_t *transfer);
/* Detaches and frees the easy handle; safe whether running or finished. */
void upstream_transfer_release(upstream_pool_t *pool, upstream_transfer_t *transfer);
/* Called from a curl callback: queue on_ready for after curl returns. */
void upstream_transfer_mark_ready(upstream_pool_t *pool, upstream_transfer_t *transfer);
/* Un-pauses a transfer whose write callback returned CURL_WRITEFUNC_PAUSE. */
void upstream_transfer_resume(upstream_pool_t *pool, upstream_transfer_t *transfer);

#endif
