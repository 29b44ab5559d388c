/*
 * forward.c - passes a request through to upstream and streams the answer.
 *
 * Lifecycle of one forwarded request (forward_t, owned by the request's
 * pool, so it dies with the request whatever the path), as forward_state_t:
 *
 *   AWAITING_HEAD  the exchange is out; an error answer is still possible
 *   BUFFERING      a JSON or batch body is held whole to rewrite its links
 *   STREAMING      the response started; body bytes go out as they come,
 *                  one send at a time, the next from h2o's proceed
 *   DONE           the final send (or an error answer) went out
 *
 * Memory per request is bounded by the exchange's buffer and the one in
 * flight to the client, whatever the size of the object, because upstream is
 * paused whenever the client is slower. A body that breaks off after the
 * response started ends with H2O_SEND_STATE_ERROR, which h2o turns into a
 * visibly broken response (a closed connection, or RST_STREAM).
 */
#include "forward.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access_log.h"
#include "buffers.h"
#include "gcs_error.h"
#include "link_rewrite.h"

/* JSON bodies are buffered whole to rewrite links; past this they stream as they are. */
#define JSON_REWRITE_MAX (32 * 1024 * 1024)

/* HELD: the whole answer is in, and on_whole asked for it to wait (forward_hold) before the client sees it. */
typedef enum { FORWARD_AWAITING_HEAD, FORWARD_BUFFERING, FORWARD_HELD, FORWARD_STREAMING, FORWARD_DONE } forward_state_t;

struct forward {
    h2o_generator_t super;
    h2o_req_t *req;
    worker_t *worker;
    const target_t *target;
    forward_options_t options;
    forward_state_t state;
    exchange_t *exchange;
    byte_buffer_t inflight;  /* handed to h2o, valid until proceed */
    bool sending;
    bool end_reported;
    const char *access; /* what the on_end hook decided, for the log */
    uint64_t reserved;       /* buffer memory reserved for BUFFERING */
    h2o_timeout_entry_t watchdog;
    char *public_base;
    int status;
    int64_t upstream_ms;
    uint64_t bytes_sent;
    const char *error;
    bool hold; /* forward_hold was called and forward_release not yet */
};

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 308: return "Resume Incomplete";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 416: return "Requested Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

static void report_end(forward_t *self, bool complete)
{
    if (self->end_reported)
        return;
    self->end_reported = true;
    if (self->options.hooks != NULL && self->options.hooks->on_end != NULL)
        self->access = self->options.hooks->on_end(self->options.ctx, self->req, self->status, complete);
}

static void release_reservation(forward_t *self)
{
    if (self->reserved != 0)
        buffers_release(self->worker->buffers, self->reserved);
    self->reserved = 0;
}

/* Nothing was sent yet: answer in GCS's shape. */
static void answer_error(forward_t *self)
{
    self->state = FORWARD_DONE;
    if (self->error == NULL)
        self->error = exchange_error(self->exchange);
    gcs_error_kind_t kind = exchange_timed_out(self->exchange) ? GCS_ERROR_GATEWAY_TIMEOUT : GCS_ERROR_BAD_GATEWAY;
    if (self->options.checks_access)
        kind = GCS_ERROR_ACCESS_UNDECIDED;
    report_end(self, false);
    exchange_free(self->exchange);
    self->exchange = NULL;
    gcs_error_send(self->req, self->target->route.error_format, kind, NULL);
    self->bytes_sent = self->req->res.content_length;
}

/* --- the response head --- */

static void add_location(forward_t *self, const h2o_iovec_t *value)
{
    h2o_req_t *req = self->req;
    size_t path_start;
    if (self->public_base != NULL &&
        link_is_upstream(value->base, value->len, self->worker->conf->upstream.base_url, &path_start)) {
        size_t base_len = strlen(self->public_base), len = base_len + value->len - path_start;
        char *rewritten = h2o_mem_alloc_pool(&req->pool, len);
        memcpy(rewritten, self->public_base, base_len);
        memcpy(rewritten + base_len, value->base + path_start, value->len - path_start);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, rewritten, len);
        return;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL,
                   h2o_strdup(&req->pool, value->base, value->len).base, value->len);
}

/* Copies upstream's head into the response; the values stay in the exchange's memory until it is freed. */
static void copy_head(forward_t *self)
{
    h2o_req_t *req = self->req;
    const h2o_headers_t *headers = exchange_headers(self->exchange);
    req->res.status = self->status;
    req->res.reason = reason_phrase(self->status);
    uint64_t length = exchange_content_length(self->exchange);
    req->res.content_length = length != UINT64_MAX ? (size_t)length : SIZE_MAX;
    for (size_t i = 0; i != headers->size; i++) {
        const h2o_header_t *h = &headers->entries[i];
        if (h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("location")))
            add_location(self, &h->value);
        else /* pool copies: the exchange may be freed before h2o is done with the head */
            h2o_add_header_by_str(&req->pool, &req->res.headers, h2o_strdup(&req->pool, h->name->base, h->name->len).base,
                                  h->name->len, 0, NULL, h2o_strdup(&req->pool, h->value.base, h->value.len).base,
                                  h->value.len);
    }
    const char *state = self->options.cache_state;
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, state, strlen(state));
}

static bool is_json_api(const forward_t *self)
{
    route_api_t api = self->target->route.api;
    return (api == ROUTE_JSON || api == ROUTE_UPLOAD || api == ROUTE_BATCH) && !self->target->route.media;
}

static bool response_type_is(const forward_t *self, const char *prefix)
{
    const char *type = exchange_header(self->exchange, "content-type");
    return type != NULL && strncasecmp(type, prefix, strlen(prefix)) == 0;
}

/* Whether the body is the JSON API's JSON (or a batch's parts): its links point at upstream. */
static bool has_links(forward_t *self)
{
    if (!is_json_api(self))
        return false;
    return self->target->route.api == ROUTE_BATCH ? response_type_is(self, "multipart/mixed")
                                                  : response_type_is(self, "application/json");
}

/* Whether to hold the body whole: to rewrite its links, or because the cache wants to read it. */
static bool wants_whole_body(forward_t *self)
{
    if (h2o_memis(self->req->method.base, self->req->method.len, H2O_STRLIT("HEAD")))
        return false;
    const forward_hooks_t *hooks = self->options.hooks;
    bool hooked = hooks != NULL && hooks->on_whole != NULL &&
                  (hooks->holds != NULL ? hooks->holds(self->options.ctx, self->status, exchange_headers(self->exchange))
                                        : has_links(self));
    if (!hooked && !(self->public_base != NULL && has_links(self)))
        return false;
    uint64_t length = exchange_content_length(self->exchange);
    uint64_t want = length != UINT64_MAX && length < JSON_REWRITE_MAX ? length : JSON_REWRITE_MAX;
    if (!buffers_reserve(self->worker->buffers, want))
        return false; /* memory is short: it streams with upstream's links rather than wait */
    self->reserved = want;
    return true;
}

/* The boundary parameter of the response's multipart Content-Type, unquoted; false when there is none. */
static bool response_boundary(forward_t *self, const char **boundary, size_t *len)
{
    const char *type = exchange_header(self->exchange, "content-type");
    const char *p = type != NULL ? strstr(type, "boundary=") : NULL;
    if (p == NULL)
        return false;
    p += 9;
    const char *stop;
    if (*p == '"')
        stop = strchr(++p, '"');
    else
        for (stop = p; *stop != '\0' && *stop != ';' && *stop != ' ';)
            stop++;
    if (stop == NULL || stop == p)
        return false;
    *boundary = p;
    *len = (size_t)(stop - p);
    return true;
}

static void rewrite_links(forward_t *self)
{
    if (self->public_base == NULL || !has_links(self))
        return;
    size_t len, boundary_len;
    const char *upstream_base = self->worker->conf->upstream.base_url, *boundary;
    char *rewritten = NULL;
    if (self->target->route.api != ROUTE_BATCH)
        rewritten = link_rewrite_json(self->inflight.base, self->inflight.len, upstream_base, self->public_base, &len);
    else if (response_boundary(self, &boundary, &boundary_len))
        rewritten = link_rewrite_batch(self->inflight.base, self->inflight.len, boundary, boundary_len, upstream_base,
                                       self->public_base, &len);
    if (rewritten == NULL)
        return;
    free(self->inflight.base);
    self->inflight = (byte_buffer_t){.base = rewritten, .len = len, .cap = len};
    self->req->res.content_length = len;
}

/* --- the body --- */

static void on_watchdog(h2o_timeout_entry_t *entry)
{
    forward_t *self = H2O_STRUCT_FROM_MEMBER(forward_t, watchdog, entry);
    self->error = "client stopped reading";
    worker_cut_connection(self->req);
}

static void send_inflight(forward_t *self, h2o_send_state_t state)
{
    h2o_iovec_t buf = h2o_iovec_init(self->inflight.base, self->inflight.len);
    if (h2o_memis(self->req->method.base, self->req->method.len, H2O_STRLIT("HEAD")))
        buf.len = 0;
    self->bytes_sent += buf.len;
    self->sending = true;
    if (state != H2O_SEND_STATE_IN_PROGRESS)
        self->state = FORWARD_DONE;
    if (state == H2O_SEND_STATE_ERROR && self->error == NULL)
        self->error = exchange_error(self->exchange);
    /* Also for the final send: a client can stall on the last bytes too. */
    worker_arm(self->worker, &self->worker->client_watchdog, &self->watchdog);
    h2o_send(self->req, &buf, buf.len != 0 ? 1 : 0, state); /* after a final send the request may be gone */
}

/* Hands what upstream sent to h2o, if no send is outstanding. */
static void flush(forward_t *self)
{
    if (self->state != FORWARD_STREAMING || self->sending)
        return;
    exchange_state_t xs = exchange_state(self->exchange);
    exchange_take_body(self->exchange, &self->inflight);
    if (xs == EXCHANGE_DONE || xs == EXCHANGE_FAILED) {
        report_end(self, xs == EXCHANGE_DONE);
        send_inflight(self, xs == EXCHANGE_DONE ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_ERROR);
    } else if (self->inflight.len != 0) {
        send_inflight(self, H2O_SEND_STATE_IN_PROGRESS);
    }
}

static void on_proceed(h2o_generator_t *generator, h2o_req_t *req)
{
    forward_t *self = H2O_STRUCT_FROM_MEMBER(forward_t, super, generator);
    (void)req;
    self->sending = false;
    self->inflight.len = 0;
    worker_disarm(&self->watchdog);
    flush(self);
}

static void on_stop(h2o_generator_t *generator, h2o_req_t *req)
{
    forward_t *self = H2O_STRUCT_FROM_MEMBER(forward_t, super, generator);
    (void)req;
    report_end(self, false);
    exchange_free(self->exchange); /* the client went away: nobody needs the rest */
    self->exchange = NULL;
}

static void start_response(forward_t *self)
{
    self->state = FORWARD_STREAMING;
    self->super.proceed = on_proceed;
    self->super.stop = on_stop;
    h2o_start_response(self->req, &self->super);
}

/* The whole answer, held: its links rewritten, sent in one piece. */
static void answer_whole(forward_t *self)
{
    rewrite_links(self);
    report_end(self, true);
    start_response(self);
    send_inflight(self, H2O_SEND_STATE_FINAL);
}

/* The whole body is in (or the buffer filled up): rewrite and send it, or stream it as it is. */
static void finish_buffering(forward_t *self)
{
    exchange_state_t xs = exchange_state(self->exchange);
    if (xs == EXCHANGE_FAILED) {
        answer_error(self);
        return;
    }
    if (xs != EXCHANGE_DONE) {
        /* Too big to hold: it streams unmodified from here. */
        release_reservation(self);
        start_response(self);
        flush(self);
        return;
    }
    exchange_take_body(self->exchange, &self->inflight);
    if (self->options.hooks != NULL && self->options.hooks->on_whole != NULL)
        self->options.hooks->on_whole(self->options.ctx, self->req, self->status, exchange_headers(self->exchange),
                                     self->inflight.base, self->inflight.len);
    if (self->hold) {
        self->state = FORWARD_HELD;
        return;
    }
    answer_whole(self);
}

void forward_hold(forward_t *self)
{
    self->hold = true;
}

void forward_release(forward_t *self)
{
    self->hold = false;
    if (self->state == FORWARD_HELD)
        answer_whole(self);
}

static void on_exchange(exchange_t *x, void *ctx)
{
    forward_t *self = ctx;
    (void)x;
    switch (self->state) {
    case FORWARD_AWAITING_HEAD:
        if (exchange_state(x) == EXCHANGE_WAITING)
            return;
        if (exchange_state(x) == EXCHANGE_FAILED && exchange_status(x) < 200) {
            answer_error(self);
            return;
        }
        self->status = exchange_status(x);
        self->upstream_ms = exchange_upstream_ms(x);
        copy_head(self);
        if (wants_whole_body(self)) {
            self->state = FORWARD_BUFFERING;
            exchange_set_buffer_limit(x, (size_t)self->reserved);
        } else {
            start_response(self);
            flush(self);
            return;
        }
        /* The body may be complete already. */
        __attribute__((fallthrough));
    case FORWARD_BUFFERING:
        if (exchange_state(x) != EXCHANGE_HEAD || exchange_paused(x))
            finish_buffering(self);
        return;
    case FORWARD_STREAMING:
        flush(self);
        return;
    case FORWARD_HELD:
    case FORWARD_DONE:
        return;
    }
}

/* --- setup and teardown --- */

static void on_dispose(void *p)
{
    forward_t *self = p;
    report_end(self, false);
    exchange_free(self->exchange);
    worker_disarm(&self->watchdog);
    release_reservation(self);
    access_log_finish(&(access_log_entry_t){.req = self->req,
                                               .api = self->target->route.api,
                                               .status = self->req->res.status,
                                               .bytes_sent = self->bytes_sent,
                                               .upstream_ms = self->upstream_ms,
                                               .cache = self->options.cache_state,
                                               .identity = self->options.identity,
                                               .access = self->access,
                                               .error = self->error});
    byte_buffer_dispose(&self->inflight);
    free(self->public_base);
}

static forward_t *forward_new(h2o_req_t *req, const target_t *target, const forward_options_t *options)
{
    forward_t *self = h2o_mem_alloc_shared(&req->pool, sizeof(*self), on_dispose);
    memset(self, 0, sizeof(*self));
    self->req = req;
    self->worker = worker_of(req);
    self->target = target;
    self->options = *options;
    if (self->options.cache_state == NULL)
        self->options.cache_state = "PASS";
    self->upstream_ms = -1;
    self->watchdog.cb = on_watchdog;
    self->public_base = link_public_base(self->worker->conf->public_url, req->scheme->name.base, req->scheme->name.len,
                                         req->authority.base, req->authority.len);
    return self;
}

forward_t *forward_start(h2o_req_t *req, const target_t *target, const forward_options_t *options)
{
    forward_t *self = forward_new(req, target, options);
    char *url = target_upstream_url(target, self->worker->conf->upstream.base_url, options->edit);
    exchange_request_t request = {
        .url = url,
        .method = req->method,
        .client = req,
        .skip_header = options->skip_header,
        .skip_ctx = options->ctx,
        /* Link rewriting needs identity-coded JSON; media keeps the client's Accept-Encoding (GCS transcodes on it). */
        .strip_accept_encoding = is_json_api(self),
        .extra = options->extra_headers,
        .body = req->entity,
        .head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")),
    };
    self->exchange = url != NULL ? exchange_start(self->worker, &request, on_exchange, self) : NULL;
    free(url);
    if (self->exchange == NULL) {
        self->state = FORWARD_DONE;
        self->error = "could not start the upstream request";
        report_end(self, false);
        gcs_error_send(req, target->route.error_format, GCS_ERROR_INTERNAL, NULL);
        self->bytes_sent = req->res.content_length;
    }
    return self;
}

void forward_adopt(h2o_req_t *req, const target_t *target, exchange_t *exchange, const forward_options_t *options)
{
    forward_t *self = forward_new(req, target, options);
    self->exchange = exchange;
    exchange_set_owner(exchange, on_exchange, self);
    on_exchange(exchange, self);
}
