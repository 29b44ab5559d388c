/*
 * forward.c - passes a request through to upstream and streams the answer.
 *
 * Lifecycle of one forwarded request (struct forward, owned by the request's
 * memory pool, so it dies with the request whatever the path):
 *
 *   forward_start    build the upstream request, start the curl transfer
 *   on_header        (curl) collect status and headers into req->res
 *   on_body          (curl) append to `pending`; pause curl when it is full
 *   on_ready         (loop) start the response once the head is complete,
 *                    then flush: hand `pending` to h2o as `inflight`
 *   on_proceed       (h2o) the client took `inflight`; flush again
 *   on_stop/dispose  the client went away or the request ended: cancel curl
 *
 * Memory per transfer is bounded by two buffers of FLUSH_HIGH_WATER bytes,
 * whatever the size of the object, because curl is paused whenever the
 * client is slower than upstream.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "access_log.h"
#include "forward.h"
#include "gcs_error.h"
#include "link_rewrite.h"
#include "route.h"

/* Sends stay at or under this size so TLS encrypts in modest batches. */
#define FLUSH_HIGH_WATER (256 * 1024)
/* JSON bodies are buffered whole to rewrite links; past this they stream as is. */
#define JSON_REWRITE_MAX (32 * 1024 * 1024)

static int buffer_append(byte_buffer_t *buf, const char *data, size_t len)
{
    if (buf->len + len > buf->cap) {
        size_t cap = buf->cap != 0 ? buf->cap : 64 * 1024;
        while (cap < buf->len + len)
            cap *= 2;
        char *base = realloc(buf->base, cap);
        if (base == NULL)
            return -1;
        buf->base = base;
        buf->cap = cap;
    }
    memcpy(buf->base + buf->len, data, len);
    buf->len += len;
    return 0;
}

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

/* curl's low-speed check averages over seconds; this timer fires exactly. */
static void rearm_idle_timer(forward_t *self)
{
    worker_disarm(&self->idle_timer);
    h2o_timeout_link(self->worker->loop, &self->worker->upstream_idle, &self->idle_timer);
}

/* --- upstream response head (curl callbacks: record only) --- */

static bool wants_json_rewrite(forward_t *self);

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

static void add_location(forward_t *self, const char *value, size_t len)
{
    h2o_req_t *req = self->req;
    size_t path_start;
    if (self->public_base != NULL && link_is_upstream(value, len, self->worker->conf->upstream.base_url, &path_start)) {
        size_t base_len = strlen(self->public_base);
        char *rewritten = h2o_mem_alloc_pool(&req->pool, base_len + len - path_start);
        memcpy(rewritten, self->public_base, base_len);
        memcpy(rewritten + base_len, value + path_start, len - path_start);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, rewritten, base_len + len - path_start);
        return;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, h2o_strdup(&req->pool, value, len).base,
                   len);
}

static void record_header(forward_t *self, const char *line, size_t len)
{
    h2o_req_t *req = self->req;
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
        char digits[32];
        if (value_len > 0 && value_len < sizeof(digits)) {
            memcpy(digits, value, value_len);
            digits[value_len] = '\0';
            req->res.content_length = (size_t)strtoull(digits, NULL, 10);
        }
        return;
    }
    if (is_hop_by_hop(line, name_len))
        return;
    if (name_len == 8 && strncasecmp(line, "location", 8) == 0) {
        add_location(self, value, value_len);
        return;
    }
    /* HTTP/2 wants lower-case names; HTTP/1 clients do not care. */
    h2o_iovec_t name = h2o_strdup(&req->pool, line, name_len);
    h2o_strtolower(name.base, name.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name.base, name.len, 1, NULL,
                          h2o_strdup(&req->pool, value, value_len).base, value_len);
}

static void record_status_line(forward_t *self, const char *line, size_t len)
{
    /* "HTTP/1.1 200 OK" or "HTTP/2 200" */
    const char *sp = memchr(line, ' ', len);
    self->status = sp != NULL ? atoi(sp + 1) : 0;
    /* A 1xx head is followed by the real one: forget what it carried. */
    memset(&self->req->res.headers, 0, sizeof(self->req->res.headers));
    self->req->res.content_length = SIZE_MAX;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *user)
{
    forward_t *self = user;
    size_t len = size * nitems;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        record_status_line(self, line, len);
    } else if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        if (self->status >= 200) {
            self->head_complete = true;
            self->rewrite_json = wants_json_rewrite(self);
            forward_cache_on_head(self);
            self->head_handled = true;
            upstream_transfer_mark_ready(self->worker->upstream, &self->transfer);
        }
    } else if (self->status != 0) {
        record_header(self, line, len);
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t nitems, void *user)
{
    forward_t *self = user;
    size_t len = size * nitems;
    if (self->rewrite_json && self->pending.len + len > JSON_REWRITE_MAX)
        self->rewrite_json = false; /* too big to hold: stream it unmodified */
    if (!self->rewrite_json && self->pending.len != 0 && self->pending.len + len > FLUSH_HIGH_WATER) {
        self->paused = true;
        worker_disarm(&self->idle_timer); /* waiting on the client is not upstream's silence */
        return CURL_WRITEFUNC_PAUSE;
    }
    size_t skip = 0, keep = len;
    if (!self->rewrite_json)
        keep = forward_cache_on_body(self, data, len, &skip);
    if (keep != 0 && buffer_append(&self->pending, data + skip, keep) != 0)
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    rearm_idle_timer(self);
    upstream_transfer_mark_ready(self->worker->upstream, &self->transfer);
    return len;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    forward_t *self = user;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    if (self->head_complete || self->transfer.finished || ulnow == self->uploaded)
        return 0;
    self->uploaded = ulnow;
    if ((size_t)ulnow < self->request_body_len) {
        /* Upstream still takes the body: only its silence is a fault. */
        rearm_idle_timer(self);
    } else {
        /* Body sent: now the wait for the response head starts. */
        worker_disarm(&self->idle_timer);
        if (!h2o_timeout_is_linked(&self->response_timer))
            h2o_timeout_link(self->worker->loop, &self->worker->upstream_response, &self->response_timer);
    }
    return 0;
}

/* --- client side --- */

static void finish_error(forward_t *self, gcs_error_kind_t kind, const char *why)
{
    self->responded = true;
    if (self->error == NULL)
        self->error = why;
    gcs_error_send(self->req, self->route.error_format, kind, NULL);
    self->bytes_sent = self->req->res.content_length;
}

static gcs_error_kind_t error_kind_of(CURLcode code)
{
    return code == CURLE_OPERATION_TIMEDOUT ? GCS_ERROR_GATEWAY_TIMEOUT : GCS_ERROR_BAD_GATEWAY;
}

static void on_watchdog(h2o_timeout_entry_t *entry)
{
    forward_t *self = H2O_STRUCT_FROM_MEMBER(forward_t, watchdog, entry);
    self->error = "client stopped reading";
    worker_cut_stalled_client(self->req);
}

static void flush(forward_t *self);

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
    upstream_transfer_release(self->worker->upstream, &self->transfer);
}

/* Hands pending bytes to h2o if no send is outstanding. */
static void flush(forward_t *self)
{
    if (self->flushing || self->sending || !self->started)
        return;
    self->flushing = true;
    bool finished = self->transfer.finished || self->transfer.easy == NULL;
    if (self->pending.len != 0 || finished) {
        byte_buffer_t spare = self->inflight;
        self->inflight = self->pending;
        self->pending = spare;
        self->pending.len = 0;
        h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
        if (finished)
            state = self->transfer.result == CURLE_OK ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_ERROR;
        if (state == H2O_SEND_STATE_ERROR && self->error == NULL)
            self->error = curl_easy_strerror(self->transfer.result);
        h2o_iovec_t buf = h2o_iovec_init(self->inflight.base, self->inflight.len);
        if (self->is_head)
            buf.len = 0;
        self->bytes_sent += buf.len;
        self->sending = true;
        /* Also for the final send: a client can stall on the last bytes too. */
        h2o_timeout_link(self->worker->loop, &self->worker->client_watchdog, &self->watchdog);
        if (self->paused && !finished) {
            self->paused = false;
            rearm_idle_timer(self);
            upstream_transfer_resume(self->worker->upstream, &self->transfer);
        }
        if (finished)
            worker_disarm(&self->idle_timer);
        self->flushing = false;
        h2o_send(self->req, &buf, buf.len != 0 ? 1 : 0, state);
        return; /* after a final send the request may be gone */
    }
    self->flushing = false;
}

/* The boundary parameter of the response's multipart Content-Type, unquoted; false when there is none. */
static bool response_boundary(forward_t *self, const char **boundary, size_t *len)
{
    ssize_t i = h2o_find_header(&self->req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i == -1)
        return false;
    const h2o_iovec_t *type = &self->req->res.headers.entries[i].value;
    const char *p = memmem(type->base, type->len, "boundary=", 9), *end = type->base + type->len;
    if (p == NULL)
        return false;
    p += 9;
    const char *stop;
    if (p < end && *p == '"') {
        p++;
        stop = memchr(p, '"', (size_t)(end - p));
    } else {
        for (stop = p; stop < end && *stop != ';' && *stop != ' ';)
            stop++;
    }
    if (stop == NULL || stop == p)
        return false;
    *boundary = p;
    *len = (size_t)(stop - p);
    return true;
}

static void rewrite_json_body(forward_t *self)
{
    size_t len, boundary_len;
    const char *upstream_base = self->worker->conf->upstream.base_url, *boundary;
    char *rewritten = NULL;
    if (self->route.api != ROUTE_BATCH)
        rewritten = link_rewrite_json(self->pending.base, self->pending.len, upstream_base, self->public_base, &len);
    else if (response_boundary(self, &boundary, &boundary_len))
        rewritten = link_rewrite_batch(self->pending.base, self->pending.len, boundary, boundary_len, upstream_base,
                                       self->public_base, &len);
    if (rewritten == NULL)
        return;
    free(self->pending.base);
    self->pending.base = rewritten;
    self->pending.len = self->pending.cap = len;
    self->req->res.content_length = len;
}

static bool wants_json_rewrite(forward_t *self)
{
    if (self->is_head || self->public_base == NULL ||
        (self->route.api != ROUTE_JSON && self->route.api != ROUTE_UPLOAD && self->route.api != ROUTE_BATCH) ||
        self->route.media)
        return false;
    ssize_t i = h2o_find_header(&self->req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i == -1)
        return false;
    const h2o_iovec_t *type = &self->req->res.headers.entries[i].value;
    if (self->route.api == ROUTE_BATCH)
        return type->len >= 15 && strncasecmp(type->base, "multipart/mixed", 15) == 0;
    return type->len >= 16 && strncasecmp(type->base, "application/json", 16) == 0;
}

static void start_response(forward_t *self)
{
    h2o_req_t *req = self->req;
    worker_disarm(&self->response_timer);
    self->upstream_ms = (int64_t)(worker_now_ms() - self->started_at);
    req->res.status = self->status;
    req->res.reason = reason_phrase(self->status);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, self->cache_state,
                          strlen(self->cache_state));
    self->super.proceed = on_proceed;
    self->super.stop = on_stop;
    self->started = self->responded = true;
    h2o_start_response(req, &self->super);
}

static void on_ready(upstream_transfer_t *transfer)
{
    forward_t *self = H2O_STRUCT_FROM_MEMBER(forward_t, transfer, transfer);
    if (transfer->finished && !self->finish_handled && self->head_handled && !self->rewrite_json)
        forward_cache_on_finish(self, transfer->result == CURLE_OK);
    if (self->responded && !self->started)
        return; /* an error response went out already */
    if (!self->started) {
        if (transfer->finished && transfer->result != CURLE_OK) {
            /* Nothing reached the client yet, so a clean error is still possible. */
            if (!self->finish_handled)
                forward_cache_on_finish(self, false);
            finish_error(self, error_kind_of(transfer->result), curl_easy_strerror(transfer->result));
            upstream_transfer_release(self->worker->upstream, transfer);
            return;
        }
        if (!self->head_complete) {
            if (transfer->finished) /* ended without a final status: nothing to relay */
                finish_error(self, GCS_ERROR_BAD_GATEWAY, "upstream sent no response head");
            return;
        }
        /* The head arrived: from here on only the body idle timeout applies. */
        worker_disarm(&self->response_timer);
        if (!transfer->finished && !self->paused && !h2o_timeout_is_linked(&self->idle_timer))
            rearm_idle_timer(self);
        if (forward_cache_take_over(self)) {
            worker_disarm(&self->idle_timer);
            return; /* the cache answered (revalidated) or refused the range */
        }
        if (self->rewrite_json) {
            if (!transfer->finished)
                return;
            forward_cache_on_json(self, self->pending.base, self->pending.len);
            forward_cache_on_finish(self, true);
            rewrite_json_body(self);
        }
        start_response(self);
    }
    flush(self);
}

static void on_response_timeout(h2o_timeout_entry_t *entry)
{
    forward_t *self = H2O_STRUCT_FROM_MEMBER(forward_t, response_timer, entry);
    upstream_transfer_release(self->worker->upstream, &self->transfer);
    if (!self->responded)
        finish_error(self, GCS_ERROR_GATEWAY_TIMEOUT, "upstream response timeout");
}

static void on_idle_timeout(h2o_timeout_entry_t *entry)
{
    forward_t *self = H2O_STRUCT_FROM_MEMBER(forward_t, idle_timer, entry);
    upstream_transfer_release(self->worker->upstream, &self->transfer);
    self->transfer.finished = true;
    self->transfer.result = CURLE_OPERATION_TIMEDOUT;
    self->error = "upstream went silent";
    on_ready(&self->transfer); /* may end the request: self is not touched after */
}

/* --- request setup --- */

static void on_dispose(void *p)
{
    forward_t *self = p;
    upstream_transfer_release(self->worker->upstream, &self->transfer);
    worker_disarm(&self->response_timer);
    worker_disarm(&self->idle_timer);
    worker_disarm(&self->watchdog);
    if (self->filling) /* the client left mid-fill: what arrived is not a whole object */
        fill_finish(&self->fill, false);
    if (self->worker->conf->log.access_log && !self->handed_off)
        access_log_write(&(access_log_entry_t){.req = self->req,
                                           .api = self->route.api,
                                           .status = self->req->res.status,
                                           .bytes_sent = self->bytes_sent,
                                           .upstream_ms = self->upstream_ms,
                                           .cache = self->cache_state,
                                           .error = self->error});
    curl_slist_free_all(self->request_headers);
    free(self->pending.base);
    free(self->inflight.base);
    free(self->url);
    free(self->public_base);
}

static bool is_request_hop_by_hop(const h2o_iovec_t *name)
{
    static const char *const names[] = {"host", "connection", "keep-alive", "proxy-connection", "te", "trailer",
                                        "transfer-encoding", "upgrade", "http2-settings", "content-length", "expect",
                                        "proxy-authorization"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (h2o_lcstris(name->base, name->len, names[i], strlen(names[i])))
            return true;
    return false;
}

static int append_header(struct curl_slist **list, const h2o_iovec_t *name, const char *value, size_t value_len)
{
    /* curl drops "Name:" with an empty value unless it is written "Name;". */
    size_t len = name->len + 2 + value_len + 1;
    char *line = malloc(len);
    if (line == NULL)
        return -1;
    if (value_len == 0)
        snprintf(line, len, "%.*s;", (int)name->len, name->base);
    else
        snprintf(line, len, "%.*s: %.*s", (int)name->len, name->base, (int)value_len, value);
    struct curl_slist *grown = curl_slist_append(*list, line);
    free(line);
    if (grown == NULL)
        return -1;
    *list = grown;
    return 0;
}

static int build_request_headers(forward_t *self)
{
    h2o_req_t *req = self->req;
    /* Link rewriting needs identity-coded JSON; media keeps the client's
     * Accept-Encoding because it decides GCS's gzip transcoding. */
    bool strip_accept_encoding = (self->route.api == ROUTE_JSON || self->route.api == ROUTE_UPLOAD) && !self->route.media;
    bool has_content_type = false;
    for (size_t i = 0; i != req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        if (is_request_hop_by_hop(h->name) || forward_cache_drops_header(self, h->name))
            continue;
        if (strip_accept_encoding && h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("accept-encoding")))
            continue;
        if (h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("content-type")))
            has_content_type = true;
        const h2o_iovec_t *name = h->orig_name != NULL ? &(h2o_iovec_t){(char *)h->orig_name, h->name->len} : h->name;
        if (append_header(&self->request_headers, name, h->value.base, h->value.len) != 0)
            return -1;
    }
    if (forward_cache_request_headers(self, &self->request_headers) != 0)
        return -1;
    /* Suppress what curl would add on its own. */
    static const char *const suppressed[] = {"Expect:", "Accept:"};
    for (size_t i = 0; i < 2; i++) {
        struct curl_slist *grown = curl_slist_append(self->request_headers, suppressed[i]);
        if (grown == NULL)
            return -1;
        self->request_headers = grown;
    }
    if (!has_content_type && req->entity.base != NULL) {
        struct curl_slist *grown = curl_slist_append(self->request_headers, "Content-Type:");
        if (grown == NULL)
            return -1;
        self->request_headers = grown;
    }
    return 0;
}

static char *build_url(forward_t *self)
{
    const conf_t *conf = self->worker->conf;
    h2o_req_t *req = self->req;
    /* Virtual-hosted XML requests go upstream path-style on the base host. */
    size_t bucket_len = self->route.vhost ? self->route.bucket_len + 1 : 0;
    size_t base_len = strlen(conf->upstream.base_url), len = base_len + bucket_len + req->path.len;
    char *url = malloc(len + 1);
    if (url == NULL)
        return NULL;
    memcpy(url, conf->upstream.base_url, base_len);
    if (bucket_len != 0) {
        url[base_len] = '/';
        memcpy(url + base_len + 1, self->route.bucket, self->route.bucket_len);
    }
    memcpy(url + base_len + bucket_len, req->path.base, req->path.len);
    url[len] = '\0';
    return url;
}

static void set_method_and_body(forward_t *self, CURL *easy)
{
    h2o_req_t *req = self->req;
    if (self->is_head) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
        return;
    }
    bool has_body = req->entity.base != NULL;
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) && !has_body)
        return;
    char method[32];
    snprintf(method, sizeof(method), "%.*s", (int)req->method.len, req->method.base);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method); /* curl copies it */
    if (has_body || !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("DELETE"))) {
        /* The body stays in h2o's buffer (or its mmap'd spill file) until the request ends. */
        self->request_body_len = req->entity.len;
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, has_body ? req->entity.base : "");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->entity.len);
    }
}

static int start_transfer(forward_t *self)
{
    worker_t *worker = self->worker;
    CURL *easy = upstream_easy_new(worker->upstream, &self->transfer);
    if (easy == NULL)
        return -1;
    self->transfer.on_ready = on_ready;
    if ((self->url = build_url(self)) == NULL || build_request_headers(self) != 0)
        return -1;
    curl_easy_setopt(easy, CURLOPT_URL, self->url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, self->request_headers);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, self);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, self);
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(easy, CURLOPT_XFERINFODATA, self);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    set_method_and_body(self, easy);
    self->started_at = worker_now_ms();
    return upstream_transfer_start(worker->upstream, &self->transfer);
}

int forward_start(h2o_req_t *req, worker_t *worker, const route_t *route, cache_plan_t *plan)
{
    forward_t *self = h2o_mem_alloc_shared(&req->pool, sizeof(*self), on_dispose);
    memset(self, 0, sizeof(*self));
    self->req = req;
    self->worker = worker;
    self->route = *route;
    self->plan = plan;
    self->cache_state = "PASS";
    self->is_head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    self->upstream_ms = -1;
    self->response_timer.cb = on_response_timeout;
    self->idle_timer.cb = on_idle_timeout;
    self->watchdog.cb = on_watchdog;
    self->public_base = link_public_base(worker->conf->public_url, req->scheme->name.base, req->scheme->name.len,
                                         req->authority.base, req->authority.len);
    if (start_transfer(self) != 0) {
        upstream_transfer_release(worker->upstream, &self->transfer);
        finish_error(self, GCS_ERROR_INTERNAL, "could not start upstream transfer");
        return 0;
    }
    if (self->request_body_len == 0)
        h2o_timeout_link(worker->loop, &worker->upstream_response, &self->response_timer);
    else
        rearm_idle_timer(self);
    return 0;
}
