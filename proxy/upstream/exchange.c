/*
 * exchange.c - one upstream request and its response (see exchange.h).
 *
 * curl's callbacks only record: the status line and headers into the
 * exchange's own pool, body bytes into its buffer. Once curl has returned,
 * the upstream pool runs on_ready, which tells the owner. Two timers stand in
 * for curl's coarse ones: the wait for the response head once the request
 * is sent, and silence inside the body (disarmed while the owner holds the
 * transfer paused, which is not upstream's fault).
 */
#include "exchange.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "target.h"

/* The buffer's default bound: sends stay at or under this size, so TLS encrypts in modest batches. */
#define DEFAULT_BUFFER_LIMIT (256 * 1024)

struct exchange {
    worker_t *worker;
    upstream_transfer_t transfer;
    exchange_state_t state;
    exchange_cb cb;
    void *ctx;
    char *url;
    struct curl_slist *headers;
    h2o_mem_pool_t pool; /* the response head */
    int status;          /* of the latest status line; 0 before one */
    h2o_headers_t res_headers;
    uint64_t content_length;
    byte_buffer_t body;
    size_t buffer_limit;
    bool paused;         /* curl's write callback returned PAUSE */
    bool resume_queued;
    size_t request_body_len;
    curl_off_t uploaded;
    h2o_timeout_entry_t response_timer;
    h2o_timeout_entry_t idle_timer;
    h2o_timeout_entry_t resume_timer;
    uint64_t started_ms;
    int64_t upstream_ms;
    const char *error;
    bool timed_out;
};

/* --- state --- */

exchange_state_t exchange_state(const exchange_t *x)
{
    return x->state;
}

int exchange_status(const exchange_t *x)
{
    return x->status;
}

const h2o_headers_t *exchange_headers(const exchange_t *x)
{
    return &x->res_headers;
}

uint64_t exchange_content_length(const exchange_t *x)
{
    return x->content_length;
}

const char *exchange_header(const exchange_t *x, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&x->res_headers, name, strlen(name), -1);
    return i != -1 ? x->res_headers.entries[i].value.base : NULL; /* stored NUL-terminated */
}

const char *exchange_error(const exchange_t *x)
{
    return x->error;
}

bool exchange_timed_out(const exchange_t *x)
{
    return x->timed_out;
}

int64_t exchange_upstream_ms(const exchange_t *x)
{
    return x->upstream_ms;
}

size_t exchange_buffered(const exchange_t *x)
{
    return x->body.len;
}

bool exchange_paused(const exchange_t *x)
{
    return x->paused;
}

void exchange_set_owner(exchange_t *x, exchange_cb cb, void *ctx)
{
    x->cb = cb;
    x->ctx = ctx;
}

void exchange_set_buffer_limit(exchange_t *x, size_t limit)
{
    x->buffer_limit = limit;
}

/* curl's low-speed check averages over seconds; this timer fires exactly. */
static void rearm_idle(exchange_t *x)
{
    worker_arm(x->worker, &x->worker->upstream_idle, &x->idle_timer);
}

static void disarm_all(exchange_t *x)
{
    worker_disarm(&x->response_timer);
    worker_disarm(&x->idle_timer);
    worker_disarm(&x->resume_timer);
}

/* Ends the exchange as FAILED (a transfer still running is cancelled) and tells the owner. */
static void fail(exchange_t *x, const char *why, bool timed_out)
{
    upstream_transfer_release(x->worker->upstream, &x->transfer);
    disarm_all(x);
    x->state = EXCHANGE_FAILED;
    if (x->status < 200) /* no answer at all: upstream may be down */
        atomic_store_explicit(&x->worker->upstream_failed_ms, worker_unix_ms(), memory_order_relaxed);
    if (x->error == NULL)
        x->error = why;
    x->timed_out = x->timed_out || timed_out;
    x->cb(x, x->ctx); /* may free x */
}

/* --- the response head (curl callbacks: record only) --- */

static bool is_hop_by_hop(const char *name, size_t len)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                                        "trailer", "upgrade", "proxy-authenticate", "http2-settings",
                                        /* h2o writes its own */ "date", "content-length"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return true;
    return false;
}

static void record_header(exchange_t *x, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line)
        return;
    size_t name_len = (size_t)(colon - line);
    const char *value = colon + 1, *end = line + len;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    while (end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t value_len = (size_t)(end - value);
    if (name_len == 14 && strncasecmp(line, "content-length", 14) == 0) {
        int64_t n;
        x->content_length = target_parse_int64(value, value_len, &n) ? (uint64_t)n : UINT64_MAX;
        return;
    }
    if (is_hop_by_hop(line, name_len))
        return;
    /* HTTP/2 wants lower-case names; HTTP/1 clients do not care. */
    h2o_iovec_t name = h2o_strdup(&x->pool, line, name_len);
    h2o_strtolower(name.base, name.len);
    h2o_add_header_by_str(&x->pool, &x->res_headers, name.base, name.len, 1, NULL,
                          h2o_strdup(&x->pool, value, value_len).base, value_len);
}

static void record_status_line(exchange_t *x, const char *line, size_t len)
{
    /* "HTTP/1.1 200 OK" or "HTTP/2 200"; a 1xx head is followed by the real one: forget what it carried. */
    x->status = target_parse_status_line(line, len);
    memset(&x->res_headers, 0, sizeof(x->res_headers));
    x->content_length = UINT64_MAX;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *user)
{
    exchange_t *x = user;
    size_t len = size * nitems;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        record_status_line(x, line, len);
    } else if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        if (x->status >= 200 && x->state == EXCHANGE_WAITING) {
            x->state = EXCHANGE_HEAD;
            x->upstream_ms = (int64_t)(worker_now_ms() - x->started_ms);
            atomic_store_explicit(&x->worker->upstream_answered_ms, worker_unix_ms(), memory_order_relaxed);
            upstream_transfer_mark_ready(x->worker->upstream, &x->transfer);
        }
    } else if (x->status != 0) {
        record_header(x, line, len);
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t nitems, void *user)
{
    exchange_t *x = user;
    size_t len = size * nitems;
    if (x->body.len != 0 && x->body.len + len > x->buffer_limit) {
        x->paused = true;
        worker_disarm(&x->idle_timer); /* waiting on the owner is not upstream's silence */
        return CURL_WRITEFUNC_PAUSE;
    }
    if (byte_buffer_append(&x->body, data, len) != 0) {
        x->error = "out of memory for the upstream body";
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    rearm_idle(x);
    upstream_transfer_mark_ready(x->worker->upstream, &x->transfer);
    return len;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    exchange_t *x = user;
    (void)dltotal, (void)dlnow, (void)ultotal;
    if (x->state != EXCHANGE_WAITING || ulnow == x->uploaded)
        return 0;
    x->uploaded = ulnow;
    if ((size_t)ulnow < x->request_body_len) {
        rearm_idle(x); /* upstream still takes the body: only its silence is a fault */
    } else {
        worker_disarm(&x->idle_timer); /* body sent: now the wait for the response head starts */
        if (!h2o_timeout_is_linked(&x->response_timer))
            h2o_timeout_link(x->worker->loop, &x->worker->upstream_response, &x->response_timer);
    }
    return 0;
}

/* --- on the loop --- */

static void on_ready(upstream_transfer_t *transfer)
{
    exchange_t *x = H2O_STRUCT_FROM_MEMBER(exchange_t, transfer, transfer);
    if (x->state == EXCHANGE_HEAD || x->state == EXCHANGE_WAITING) {
        if (x->state == EXCHANGE_HEAD) {
            worker_disarm(&x->response_timer);
            if (!transfer->finished && !x->paused && !h2o_timeout_is_linked(&x->idle_timer))
                rearm_idle(x);
        }
        if (transfer->finished) {
            if (transfer->result != CURLE_OK) {
                fail(x, x->error != NULL ? x->error : curl_easy_strerror(transfer->result),
                     transfer->result == CURLE_OPERATION_TIMEDOUT);
                return;
            }
            if (x->state == EXCHANGE_WAITING) {
                fail(x, "upstream sent no response head", false);
                return;
            }
            upstream_transfer_release(x->worker->upstream, transfer);
            disarm_all(x);
            x->state = EXCHANGE_DONE;
        }
    }
    x->cb(x, x->ctx);
}

static void on_response_timeout(h2o_timeout_entry_t *entry)
{
    fail(H2O_STRUCT_FROM_MEMBER(exchange_t, response_timer, entry), "upstream response timeout", true);
}

static void on_idle_timeout(h2o_timeout_entry_t *entry)
{
    fail(H2O_STRUCT_FROM_MEMBER(exchange_t, idle_timer, entry), "upstream went silent", true);
}

static void on_resume(h2o_timeout_entry_t *entry)
{
    exchange_t *x = H2O_STRUCT_FROM_MEMBER(exchange_t, resume_timer, entry);
    x->resume_queued = false;
    if (!x->paused || x->transfer.easy == NULL)
        return;
    x->paused = false;
    rearm_idle(x);
    /* May deliver held-back data through on_body and run on_ready right here: we are in a timer, not the owner. */
    upstream_transfer_resume(x->worker->upstream, &x->transfer);
}

void exchange_take_body(exchange_t *x, byte_buffer_t *spare)
{
    byte_buffer_t taken = x->body;
    x->body = *spare;
    x->body.len = 0;
    *spare = taken;
    if (x->paused && !x->resume_queued) {
        x->resume_queued = true;
        worker_arm(x->worker, &x->worker->asap, &x->resume_timer);
    }
}

/* --- the request --- */

/* Hop-by-hop headers, and larder's own (X-Larder-Batch...), which are for larder and never for upstream. */
static bool is_request_hop_by_hop(const h2o_iovec_t *name)
{
    if (name->len >= 9 && h2o_lcstris(name->base, 9, H2O_STRLIT("x-larder-")))
        return true;
    static const char *const names[] = {"host", "connection", "keep-alive", "proxy-connection", "te", "trailer",
                                        "transfer-encoding", "upgrade", "http2-settings", "content-length", "expect",
                                        "proxy-authorization"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (h2o_lcstris(name->base, name->len, names[i], strlen(names[i])))
            return true;
    return false;
}

static int append_line(struct curl_slist **list, const char *line)
{
    struct curl_slist *grown = curl_slist_append(*list, line);
    if (grown == NULL)
        return -1;
    *list = grown;
    return 0;
}

static int append_header(struct curl_slist **list, const h2o_iovec_t *name, const h2o_iovec_t *value)
{
    /* curl drops "Name:" with an empty value unless it is written "Name;". */
    size_t len = name->len + 2 + value->len + 1;
    char *line = malloc(len);
    if (line == NULL)
        return -1;
    if (value->len == 0)
        snprintf(line, len, "%.*s;", (int)name->len, name->base);
    else
        snprintf(line, len, "%.*s: %.*s", (int)name->len, name->base, (int)value->len, value->base);
    int rc = append_line(list, line);
    free(line);
    return rc;
}

static int build_headers(exchange_t *x, const exchange_request_t *r)
{
    bool has_content_type = false;
    for (size_t i = 0; r->client != NULL && i != r->client->headers.size; i++) {
        const h2o_header_t *h = &r->client->headers.entries[i];
        if (is_request_hop_by_hop(h->name) || (r->skip_header != NULL && r->skip_header(h->name, r->skip_ctx)))
            continue;
        if (r->strip_accept_encoding && h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("accept-encoding")))
            continue;
        if (h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("content-type")))
            has_content_type = true;
        h2o_iovec_t name = h->orig_name != NULL ? h2o_iovec_init(h->orig_name, h->name->len) : *h->name;
        if (append_header(&x->headers, &name, &h->value) != 0)
            return -1;
    }
    for (size_t i = 0; r->extra != NULL && r->extra[i] != NULL; i++)
        if (append_line(&x->headers, r->extra[i]) != 0)
            return -1;
    /* Suppress what curl would add on its own. */
    if (append_line(&x->headers, "Expect:") != 0 || append_line(&x->headers, "Accept:") != 0)
        return -1;
    if (!has_content_type && r->body.base != NULL && append_line(&x->headers, "Content-Type:") != 0)
        return -1;
    return 0;
}

static void set_method_and_body(exchange_t *x, CURL *easy, const exchange_request_t *r)
{
    if (r->head) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
        return;
    }
    bool has_body = r->body.base != NULL;
    if (h2o_memis(r->method.base, r->method.len, H2O_STRLIT("GET")) && !has_body)
        return;
    char method[32];
    snprintf(method, sizeof(method), "%.*s", (int)r->method.len, r->method.base);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method); /* curl copies it */
    if (has_body || !h2o_memis(r->method.base, r->method.len, H2O_STRLIT("DELETE"))) {
        /* The body stays in h2o's buffer (or its mmap'd spill file) until the request ends. */
        x->request_body_len = r->body.len;
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, has_body ? r->body.base : "");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
    }
}

exchange_t *exchange_start(worker_t *worker, const exchange_request_t *r, exchange_cb cb, void *ctx)
{
    exchange_t *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->worker = worker;
    x->state = EXCHANGE_WAITING;
    x->cb = cb;
    x->ctx = ctx;
    x->content_length = UINT64_MAX;
    x->buffer_limit = DEFAULT_BUFFER_LIMIT;
    x->upstream_ms = -1;
    x->response_timer.cb = on_response_timeout;
    x->idle_timer.cb = on_idle_timeout;
    x->resume_timer.cb = on_resume;
    h2o_mem_init_pool(&x->pool);
    CURL *easy = upstream_easy_new(worker->upstream, &x->transfer);
    if (easy == NULL || (x->url = strdup(r->url)) == NULL || build_headers(x, r) != 0) {
        exchange_free(x);
        return NULL;
    }
    x->transfer.on_ready = on_ready;
    curl_easy_setopt(easy, CURLOPT_URL, x->url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(easy, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    set_method_and_body(x, easy, r);
    x->started_ms = worker_now_ms();
    if (upstream_transfer_start(worker->upstream, &x->transfer) != 0) {
        exchange_free(x);
        return NULL;
    }
    if (x->request_body_len == 0)
        h2o_timeout_link(worker->loop, &worker->upstream_response, &x->response_timer);
    else
        rearm_idle(x);
    return x;
}

void exchange_free(exchange_t *x)
{
    if (x == NULL)
        return;
    upstream_transfer_release(x->worker->upstream, &x->transfer);
    disarm_all(x);
    curl_slist_free_all(x->headers);
    free(x->url);
    byte_buffer_dispose(&x->body);
    h2o_mem_clear_pool(&x->pool);
    free(x);
}
