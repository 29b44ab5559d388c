/*
 * exchange.h - one request to upstream and its response, owned by whoever
 * started it, not by a client connection.
 *
 * The pass-through forwarder (forward.c) streams an exchange to its client;
 * a cache fill (cache/fetch.c) feeds one into the store; ownership can pass
 * from one to the other once the response head is known. An exchange keeps
 * the response head in memory of its own and buffers body bytes until its
 * owner takes them, pausing upstream when the buffer is full, so memory per
 * exchange stays bounded whatever the object's size.
 *
 * Lifecycle (exchange_state_t):
 *
 *   WAITING   the request is going out, or its response head has not come
 *   HEAD      the final response head is in; body bytes arrive into the buffer
 *   DONE      the whole response arrived (the buffer may still hold its end)
 *   FAILED    it broke off: transport error, timeout, or no final head at all
 *
 * The owner's callback runs on the loop, never inside curl, whenever the
 * state changed or more body bytes are buffered. It may free the exchange.
 */
#ifndef LARDER_EXCHANGE_H
#define LARDER_EXCHANGE_H

#include <curl/curl.h>
#include <h2o.h>
#include <stdbool.h>
#include <stdint.h>

#include "byte_buffer.h"
#include "upstream.h"
#include "worker.h"

typedef enum { EXCHANGE_WAITING, EXCHANGE_HEAD, EXCHANGE_DONE, EXCHANGE_FAILED } exchange_state_t;

typedef struct exchange exchange_t;
typedef void (*exchange_cb)(exchange_t *exchange, void *ctx);

/* What to send. Everything is copied at exchange_start except body. */
typedef struct exchange_request {
    const char *url;
    h2o_iovec_t method;
    /* The client request whose headers are forwarded (hop-by-hop ones dropped); NULL for none. */
    h2o_req_t *client;
    /* Client headers to leave out besides the hop-by-hop ones; may be NULL. */
    bool (*skip_header)(const h2o_iovec_t *name, void *ctx);
    void *skip_ctx;
    bool strip_accept_encoding; /* link rewriting needs identity-coded JSON */
    const char *const *extra;   /* "Name: value" lines to add, NULL-terminated; may be NULL */
    h2o_iovec_t body;           /* must outlive the exchange; base NULL: no body */
    bool head;                  /* a HEAD request: no body comes back */
} exchange_request_t;

/*
 * Starts an exchange on worker's upstream pool. Returns NULL when it could
 * not even start (no memory, bad URL); cb is not called then.
 */
exchange_t *exchange_start(worker_t *worker, const exchange_request_t *request, exchange_cb cb, void *ctx);
/* Cancels whatever is running and frees everything. */
void exchange_free(exchange_t *exchange);
/* Hands the exchange to another owner (same thread). */
void exchange_set_owner(exchange_t *exchange, exchange_cb cb, void *ctx);

exchange_state_t exchange_state(const exchange_t *exchange);
/* Valid from HEAD on: the final status, its headers (the exchange's memory), and Content-Length or UINT64_MAX. */
int exchange_status(const exchange_t *exchange);
const h2o_headers_t *exchange_headers(const exchange_t *exchange);
uint64_t exchange_content_length(const exchange_t *exchange);
/* A response header's value, NUL-terminated in the exchange's memory; NULL when absent. */
const char *exchange_header(const exchange_t *exchange, const char *name);
/* Why it failed (FAILED), for logs and for choosing 502 or 504. */
const char *exchange_error(const exchange_t *exchange);
bool exchange_timed_out(const exchange_t *exchange);
/* Milliseconds from start to the response head, -1 before it. */
int64_t exchange_upstream_ms(const exchange_t *exchange);

/*
 * The buffered body bytes: swaps the exchange's buffer with *spare (whose
 * contents are discarded), so the caller owns what was received. Resumes a
 * paused transfer on the next loop pass.
 */
void exchange_take_body(exchange_t *exchange, byte_buffer_t *spare);
size_t exchange_buffered(const exchange_t *exchange);
/* Lets the body buffer grow to limit bytes before upstream is paused (default 256 KiB). */
void exchange_set_buffer_limit(exchange_t *exchange, size_t limit);
/* True when upstream is paused because the buffer reached its limit. */
bool exchange_paused(const exchange_t *exchange);

#endif
