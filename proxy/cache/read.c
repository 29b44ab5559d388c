/*
 * read.c - one cacheable read, from the lookup to its last byte.
 *
 * Lifecycle (read_state_t; cache_read_t lives in the request's pool):
 *
 *   PLANNING       looks the object up: a fill in progress, or the store.
 *                  Then HIT (fresh, and the caller may read it: its owner,
 *                  a grantee, or a public generation; access.c),
 *                  REVALIDATE (ask upstream conditionally, with the caller's
 *                  credentials: also the check of a caller's right),
 *                  MISS (start a fill), FOLLOW (a fill whose head has not
 *                  come: wait for it, then plan again) or PASS.
 *   AWAITING_HEAD  subscribed to a fetch without a head: leading it (MISS,
 *                  REVALIDATE) or following it
 *   SENDING        the response started; a send is out
 *   WAITING_BYTES  the response started; a fetch owes the next bytes
 *   PINNING        in a batch (X-Larder-Batch): the caller may read the
 *                  entry; the response waits for the pin's commit, then
 *                  serves it (batch_use.h)
 *   FORWARDED      handed to the pass-through forwarder, which logs it
 *   DONE           the final send went out
 *
 * Before any of it the caller is identified (caller.c): a bad token gets
 * 401, a token that cannot be checked 503, and neither ever reaches the
 * entry.
 *
 * Bytes come, chunk by chunk, from wherever they are: the fetch the read is
 * subscribed to (its memory), else the store (one short read transaction a
 * chunk, never held across client I/O), else a fetch of the missing chunks
 * pinned to the generation being served, started or joined here. The object
 * is pinned in the store while the response runs, so eviction cannot take
 * it away; an invalidation can, and then the pinned-generation fetch either
 * brings the same bytes or fails, and the response is cut: a client never
 * gets a short body that looks whole.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "access.h"
#include "access_log.h"
#include "batch_use.h"
#include "caller.h"
#include "conditional.h"
#include "entry.h"
#include "fetch.h"
#include "forward.h"
#include "gcs_error.h"
#include "invalidate.h"
#include "link_rewrite.h"
#include "read.h"

#define SEND_SLICE (256 * 1024)
/* Plans per request at most: each comes after a fill it waited for came to nothing. */
#define MAX_PLANS 6
/* Fetches of missing chunks one response may start or join before it gives up. */
#define MAX_GAP_FETCHES 8
/*
 * Fills a response may see fail under it and still go on: one retry saves a
 * download from a transient reset; an upstream that keeps failing is not
 * asked again and again while the client waits.
 */
#define MAX_FAILED_FILLS 1

typedef enum {
    READ_PLANNING,
    READ_AWAITING_HEAD,
    READ_SENDING,
    READ_WAITING_BYTES,
    READ_PINNING,
    READ_FORWARDED,
    READ_DONE
} read_state_t;

typedef struct cache_read {
    h2o_generator_t super;
    h2o_req_t *req;
    worker_t *worker;
    cache_t *cache;
    const target_t *target;
    cache_request_t creq;
    store_key_t key;
    caller_t caller;
    access_t access;       /* on what the caller may read the entry, once decided */
    auth_decision_t decision;
    read_state_t state;
    bool no_follow;        /* a fill this read waited for came to nothing: do not wait for another */
    bool by_metadata;      /* revalidating an XML read without ETag through the JSON API */
    bool refreshing;       /* fetching one byte to learn headers a 304 did not carry */
    bool prefetch;         /* larder's own prefetch read (X-Larder-Prefetch): what it fills is not demand */
    unsigned plans;
    batch_use_t batch;     /* X-Larder-Batch */
    bool batch_pinned;

    /* The entry being served (or revalidated). */
    store_meta_t meta;
    bool have_meta;
    record_t *record;
    const char *cache_state;
    bool pinned;

    /* The fetch subscribed to, and where the response is. */
    fetch_t *fetch;
    fetch_subscriber_t sub;
    bool leading;          /* sub is the fetch's leader: it started it */
    fetch_t *entry_fill;   /* the fill the entry came from, retained: the bytes come from it once serving */
    uint64_t next, end;    /* absolute offsets still to send: [next, end); end UINT64_MAX until the body's end */
    store_hot_object_t *hot; /* a small object's copy in memory, the body's bytes sent from it; NULL: the store's */
    char *buf;
    size_t buf_cap;
    bool buf_small; /* buf is the worker's (worker_small_buffer_take), given back at the end */
    /* buf holds bytes [slice_start, slice_start + slice_len) of store chunk chunk_index (-1: none). */
    int64_t chunk_index;
    size_t slice_start, slice_len;
    unsigned gap_fetches;
    /*
     * Plain HTTP/1.1 with a Content-Length: the connection's socket, to which
     * body bytes go from the store's map once h2o has sent the head and has
     * nothing left to write (send_direct); -1 otherwise.
     */
    int direct_fd;
    bool head_sent;   /* h2o was given the response head (with the first body bytes) */
    bool h2o_writing; /* h2o holds a send of ours that it has not finished */
    unsigned failed_fills;
    h2o_timeout_entry_t watchdog;

    uint64_t bytes_sent;
    int64_t upstream_ms;
    const char *error;
} cache_read_t;

static void plan(cache_read_t *r);
static void step(cache_read_t *r);

/* --- bookkeeping --- */

static void detach(cache_read_t *r)
{
    if (r->fetch == NULL)
        return;
    fetch_unsubscribe(r->fetch, &r->sub);
    r->fetch = NULL;
    r->leading = false;
}

static void attach(cache_read_t *r, fetch_t *fetch)
{
    detach(r);
    r->sub.position = r->next;
    fetch_subscribe(fetch, &r->sub);
    r->fetch = fetch;
}

static void forget_entry(cache_read_t *r)
{
    fetch_release(r->entry_fill);
    r->entry_fill = NULL;
    if (r->have_meta)
        store_meta_free(&r->meta);
    r->have_meta = false;
    record_release(r->record);
    r->record = NULL;
}

static void note_upstream_ms(cache_read_t *r, int64_t ms)
{
    if (ms >= 0)
        r->upstream_ms = r->upstream_ms < 0 ? ms : r->upstream_ms + ms;
}

static const char *identity_for_log(cache_read_t *r)
{
    const auth_identity_t *who = &r->caller.identity;
    return who->name[0] != '\0' ? h2o_strdup(&r->req->pool, who->name, SIZE_MAX).base : "";
}

/*
 * The read state comes from the worker's spares, not from the request's pool:
 * h2o mallocs every shared allocation, and at about 1.4 KB this one missed
 * malloc's per-thread cache, which cost a hit some 400 instructions. The pool
 * holds only a pointer to it, whose disposal ends the read.
 */
static void on_dispose(void *p)
{
    cache_read_t *r = *(cache_read_t **)p;
    caller_dispose(&r->caller);
    batch_use_dispose(&r->batch);
    if (r->access.decided && r->state != READ_FORWARDED)
        auth_decision_count(r->worker->auth, r->access.decision);
    detach(r);
    worker_disarm(&r->watchdog);
    if (r->pinned)
        store_unpin(r->cache->store, &r->key);
    if (r->state != READ_FORWARDED) /* the forwarder ends what it took over */
        access_log_finish(&(access_log_entry_t){.req = r->req,
                                               .api = r->target->route.api,
                                               .status = r->req->res.status,
                                               .bytes_sent = r->bytes_sent,
                                               .upstream_ms = r->upstream_ms,
                                               .cache = r->cache_state != NULL ? r->cache_state : "MISS",
                                               .identity = r->caller.identity.name,
                                               .access = r->access.decided ? auth_decision_name(r->access.decision) : NULL,
                                               .error = r->error});
    if (r->buf_small)
        worker_small_buffer_give(r->worker, r->buf);
    else
        free(r->buf);
    store_hot_release(r->hot); /* h2o is done with its bytes: this runs as the request goes */
    forget_entry(r);
    h2o_mem_free_recycle(&r->worker->spare_read_states, r);
}

/* --- passing on --- */

static void forward_as(cache_read_t *r, const char *state)
{
    detach(r);
    r->state = READ_FORWARDED;
    forward_start(r->req, r->target, &(forward_options_t){.cache_state = state, .identity = identity_for_log(r)});
}

/* A metadata GET the cache did not answer: forwarded, and its resource recorded on the way back. */
static void on_metadata_json(void *ctx, h2o_req_t *req, int status, const h2o_headers_t *headers, const char *body,
                             size_t len)
{
    cache_read_t *r = ctx;
    (void)req;
    if (status != 200)
        return;
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *kind = json_string_value(json_object_get(root, "kind"));
    const auth_identity_t *who = &r->caller.identity;
    entry_caller_t caller = {.name = caller_owner_name(&r->caller), .anonymous = who->kind == AUTH_ANONYMOUS};
    if (kind != NULL && strcmp(kind, "storage#object") == 0 && !cache_write_in_flight(r->cache, &r->key)) {
        r->access.owns_recorded =
            entry_record_resource(r->cache, &r->key, r->creq.bucket, r->creq.name, &caller, headers, root);
        int64_t generation;
        const char *text = json_string_value(json_object_get(root, "generation"));
        if (text != NULL && target_parse_int64(text, strlen(text), &generation))
            access_confirmed_resource(r->worker->auth, who, &r->key, generation);
    }
    json_decref(root);
}

static const char *on_forwarded_end(void *ctx, h2o_req_t *req, int status, bool complete)
{
    cache_read_t *r = ctx;
    (void)req, (void)complete;
    if (status == 404) /* upstream says it is gone: so is the cached copy */
        cache_invalidate(r->cache, &r->key);
    return access_from_status(&r->access, r->worker->auth, &r->caller.identity, status);
}

static const forward_hooks_t read_hooks = {.on_whole = on_metadata_json, .on_end = on_forwarded_end};

static void forward_recording(cache_read_t *r, const char *state)
{
    detach(r);
    r->state = READ_FORWARDED;
    forward_start(r->req, r->target,
                  &(forward_options_t){.cache_state = state, .hooks = &read_hooks, .ctx = r, .identity = identity_for_log(r),
                                       .checks_access = r->have_meta && !r->access.decided});
}

/* The response started and cannot be completed honestly: make it visibly broken. */
static void abort_response(cache_read_t *r, const char *why)
{
    detach(r);
    if (r->error == NULL)
        r->error = why;
    r->state = READ_DONE;
    h2o_send(r->req, NULL, 0, H2O_SEND_STATE_ERROR);
}

/* --- sending --- */

static void on_watchdog(h2o_timeout_entry_t *entry)
{
    cache_read_t *r = H2O_STRUCT_FROM_MEMBER(cache_read_t, watchdog, entry);
    r->error = "client stopped reading";
    worker_cut_connection(r->req);
}

static void send_slice(cache_read_t *r, const char *base, size_t len, h2o_send_state_t state)
{
    h2o_iovec_t buf = h2o_iovec_init(base, len);
    r->bytes_sent += len;
    r->h2o_writing = state == H2O_SEND_STATE_IN_PROGRESS;
    r->head_sent = true;
    r->state = state == H2O_SEND_STATE_IN_PROGRESS ? READ_SENDING : READ_DONE;
    if (state != H2O_SEND_STATE_IN_PROGRESS)
        detach(r);
    worker_arm(r->worker, &r->worker->client_watchdog, &r->watchdog);
    h2o_send(r->req, &buf, len != 0 ? 1 : 0, state);
}

static void on_proceed(h2o_generator_t *generator, h2o_req_t *req)
{
    cache_read_t *r = H2O_STRUCT_FROM_MEMBER(cache_read_t, super, generator);
    (void)req;
    r->h2o_writing = false;
    worker_disarm(&r->watchdog);
    step(r);
}

static void on_stop(h2o_generator_t *generator, h2o_req_t *req)
{
    cache_read_t *r = H2O_STRUCT_FROM_MEMBER(cache_read_t, super, generator);
    (void)req;
    detach(r); /* the fetch goes on for others, or alone */
}

static void start_response(cache_read_t *r)
{
    r->super.proceed = on_proceed;
    r->super.stop = on_stop;
    h2o_start_response(r->req, &r->super);
}

static void add_x_cache(cache_read_t *r)
{
    /*
     * One name for every response, as record_add_headers does for the
     * record's: h2o_add_header_by_str would copy the name's iovec into the
     * pool on every hit. h2o only reads header names.
     */
    static const h2o_iovec_t name = {H2O_STRLIT("x-cache")};
    h2o_headers_t *headers = &r->req->res.headers;
    h2o_vector_reserve(&r->req->pool, headers, headers->size + 1);
    headers->entries[headers->size++] = (h2o_header_t){.name = (h2o_iovec_t *)&name,
                                                       .value = h2o_iovec_init(r->cache_state, strlen(r->cache_state))};
}

static error_format_t error_format(const cache_read_t *r)
{
    return r->creq.flavour == CACHE_FLAVOUR_XML ? ERROR_FORMAT_XML : ERROR_FORMAT_JSON;
}

/* A 412 or 416 decided from the entry: an answer of the cache like any other. */
static void send_cache_error(cache_read_t *r, gcs_error_kind_t kind)
{
    h2o_req_t *req = r->req;
    h2o_iovec_t body = gcs_error_prepare(req, error_format(r), kind, NULL);
    if (kind == GCS_ERROR_RANGE_NOT_SATISFIABLE) {
        /* RFC 9110 14.4: a 416 says how long the representation is. */
        char *value = h2o_mem_alloc_pool(&req->pool, 40);
        int n = snprintf(value, 40, "bytes */%llu", (unsigned long long)r->meta.size);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_RANGE, NULL, value, (size_t)n);
    }
    add_x_cache(r);
    detach(r);
    r->state = READ_DONE;
    r->bytes_sent = body.len;
    h2o_send_inline(req, body.base, body.len);
}

static void send_small(cache_read_t *r, int status, const char *body, size_t len)
{
    h2o_req_t *req = r->req;
    req->res.status = status;
    req->res.reason = status == 304 ? "Not Modified" : "OK";
    req->res.content_length = len;
    start_response(r);
    send_slice(r, body, len, H2O_SEND_STATE_FINAL);
}

/* --- the bytes --- */

/* Joins a fetch that will deliver chunk index, or starts one for the missing chunks from there. */
static bool fetch_missing(cache_read_t *r, uint32_t index)
{
    if (r->gap_fetches >= MAX_GAP_FETCHES || r->failed_fills > MAX_FAILED_FILLS || r->end == UINT64_MAX)
        return false;
    r->gap_fetches++;
    fetch_t *found = fetch_registry_covering(r->cache, &r->key, r->meta.generation, index);
    if (found != NULL && found != r->fetch) {
        attach(r, found);
        fetch_release(found);
        return true;
    }
    fetch_release(found);
    atomic_fetch_add(&r->cache->gap_fetches, 1);
    uint64_t first = (uint64_t)index * STORE_CHUNK_SIZE;
    uint64_t last = (r->end - 1) / STORE_CHUNK_SIZE * STORE_CHUNK_SIZE + STORE_CHUNK_SIZE - 1;
    if (last >= r->meta.size)
        last = r->meta.size - 1;
    detach(r);
    fetch_params_t params = {.key = &r->key, .target = r->target, .client = r->req, .flavour = r->creq.flavour,
                             .caller = caller_owner_name(&r->caller),
                             .anonymous = r->caller.identity.kind == AUTH_ANONYMOUS, .first = first, .last = last,
                             .pinned_generation = r->meta.generation, .if_generation_not_match = -1,
                             .demand = !r->prefetch};
    r->sub.position = r->next;
    fetch_t *f = fetch_start(r->cache, r->worker, &params, &r->sub);
    if (f == NULL)
        return false;
    r->fetch = f;
    r->leading = true;
    return true;
}

/*
 * Loads the slice of chunk index that starts at offset from the store into
 * buf; false when the store does not have the chunk. A slice rather than the
 * whole chunk: the socket's copy then reads bytes still in the CPU's cache.
 */
static bool load_slice(cache_read_t *r, int64_t index, size_t offset, size_t cap)
{
    ssize_t n = store_reader_chunk_read_at(r->worker->store_reader, &r->key, r->meta.generation, (uint32_t)index,
                                           offset, r->buf, cap < r->buf_cap ? cap : r->buf_cap, NULL);
    if (n < 0)
        return false;
    r->chunk_index = index;
    r->slice_start = offset;
    r->slice_len = (size_t)n;
    return true;
}

static size_t clamp_to_end(const cache_read_t *r, size_t len)
{
    if (len > SEND_SLICE)
        len = SEND_SLICE;
    if (r->end != UINT64_MAX && len > r->end - r->next)
        len = (size_t)(r->end - r->next);
    return len;
}

static void send_bytes(cache_read_t *r, const char *base, size_t len)
{
    r->next += len;
    send_slice(r, base, len, r->next >= r->end ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

/* From the fetch subscribed to; true when it sent or must wait. */
static bool step_from_fetch(cache_read_t *r)
{
    size_t n;
    fetch_read_t verdict = fetch_read(r->fetch, &r->sub, r->next, r->buf, clamp_to_end(r, r->buf_cap), &n);
    switch (verdict) {
    case FETCH_READ_DATA:
        r->chunk_index = -1;
        send_bytes(r, r->buf, n);
        return true;
    case FETCH_READ_WAIT:
        if (!r->head_sent && r->end != UINT64_MAX) {
            /*
             * The head now, as a direct read would get it: waiting for the
             * first body bytes added upstream's pause between its head and its
             * body to a miss's first byte. on_proceed asks the fill again.
             * (Without a length h2o's chunked framing would get an empty send.)
             */
            send_slice(r, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
            return true;
        }
        r->state = READ_WAITING_BYTES;
        return true;
    case FETCH_READ_STORE:
        return false;
    case FETCH_READ_GONE:
        if (r->end == UINT64_MAX) {
            bool complete;
            uint64_t received = fetch_received(r->fetch, &complete);
            if (complete && received == r->next) {
                send_slice(r, NULL, 0, H2O_SEND_STATE_FINAL); /* a body without a length ended cleanly */
                return true;
            }
        }
        fetch_state_t st = fetch_state(r->fetch);
        if (st == FETCH_FAILED)
            r->failed_fills++;
        if (st != FETCH_STREAMING)
            detach(r);
        return false;
    }
    return false;
}

/* --- sending from the map --- */

/*
 * The copy into a buffer was a third of the CPU of big hits (issue 11). On a
 * plain HTTP/1.1 connection whose head h2o has sent and which h2o has nothing
 * left to write for, body bytes go straight from the store's map to the
 * socket: a non-blocking send() inside the store's read transaction
 * (store_chunk_use_at). The kernel copies them into its own buffers before
 * send() returns, so no byte is read from the map once the transaction has
 * ended and the store could have reused the page. When the socket is full,
 * and after every DIRECT_BURST bytes so that one fast client cannot hold the
 * worker, a small piece (DIRECT_HANDOFF) is copied and handed to h2o, which
 * waits for the socket and calls on_proceed. Handing h2o a whole slice there
 * instead copied one byte in sixteen of a big hit. TLS and HTTP/2 frame the
 * bytes themselves, and are always served the usual way.
 */
#define DIRECT_BURST (4 * 1024 * 1024)
/* h2o must be handed some bytes to wait for the socket: an empty send ends an HTTP/1.1 response (http1.c). */
#define DIRECT_HANDOFF (16 * 1024)
/* Bodies at least this long get their head sent alone, so that all of the body can go from the map. */
#define DIRECT_MIN_BODY (64 * 1024)
/*
 * TCP_NOTSENT_LOWAT for connections that get such bodies. A send then queues
 * at most this much that the peer's window has not taken yet, so the kernel
 * transmits the rest in larder's sends rather than in the ACK path of the
 * reader's receives: on loopback the autotuned buffer (up to 4 MiB) moved
 * that work to the client, whose core then limited 1 MiB hits at 64
 * connections while larder used 0.5-0.7 of its own (4.0 GB/s; 4.9 GB/s with
 * this, medians of 5 rounds). Bytes in flight are not limited, so a long
 * path keeps its window.
 */
#define DIRECT_UNSENT_MAX (256 * 1024)

typedef struct socket_sink {
    int fd;
    bool full;  /* the socket took less than it was offered */
    int error;  /* errno of a send that failed for another reason than a full socket */
} socket_sink_t;

static ssize_t send_to_socket(void *ctx, const void *bytes, size_t len)
{
    socket_sink_t *sink = ctx;
    ssize_t sent = send(sink->fd, bytes, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0) {
        sink->full = (size_t)sent < len;
        return sent;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        sink->error = errno;
    sink->full = true;
    return 0;
}

typedef enum {
    DIRECT_ALL_SENT, /* up to r->end */
    DIRECT_WAIT,     /* the socket is full or the burst is spent: hand h2o DIRECT_HANDOFF bytes from r->next */
    DIRECT_GO_ON,    /* the store lacks the chunk or a fill runs: the usual way from r->next */
    DIRECT_FAILED,   /* the socket failed: the connection is lost */
} direct_result_t;

static direct_result_t send_direct(cache_read_t *r)
{
    socket_sink_t sink = {.fd = r->direct_fd};
    size_t burst = 0;
    int64_t first_index = (int64_t)(r->next / STORE_CHUNK_SIZE);
    while (r->next < r->end && burst < DIRECT_BURST) {
        int64_t index = (int64_t)(r->next / STORE_CHUNK_SIZE);
        if (index != first_index && r->fetch != NULL)
            return DIRECT_GO_ON; /* a fill runs: it says where the next chunk is (step_from_fetch) */
        size_t offset = (size_t)(r->next - (uint64_t)index * STORE_CHUNK_SIZE);
        /* To the chunk's end in one send: no buffer bounds it, and each send and transaction costs a little. */
        size_t want = STORE_CHUNK_SIZE - offset;
        if (want > r->end - r->next)
            want = (size_t)(r->end - r->next);
        ssize_t n = store_reader_chunk_use_at(r->worker->store_reader, &r->key, r->meta.generation, (uint32_t)index,
                                              offset, want, send_to_socket, &sink, NULL);
        if (sink.error != 0) {
            r->error = "client connection lost";
            return DIRECT_FAILED;
        }
        if (n > 0) {
            r->next += (uint64_t)n;
            r->bytes_sent += (uint64_t)n;
            burst += (size_t)n;
            atomic_fetch_add_explicit(&r->cache->direct_bytes, (uint64_t)n, memory_order_relaxed);
        }
        if (sink.full)
            return DIRECT_WAIT;
        if (n < 0 || (size_t)n < want)
            return DIRECT_GO_ON; /* not stored (the usual way fetches it), or shorter than it should be */
    }
    return r->next >= r->end ? DIRECT_ALL_SENT : DIRECT_WAIT;
}

static void step(cache_read_t *r)
{
    if (r->next >= r->end) {
        send_slice(r, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    if (r->hot != NULL) { /* the copy holds the whole object: h2o sends from it, and the request holds it till then */
        send_bytes(r, store_hot_bytes(r->hot) + r->next, clamp_to_end(r, r->end - r->next));
        return;
    }
    if (r->direct_fd >= 0 && !r->head_sent && r->fetch == NULL && r->end - r->next >= DIRECT_MIN_BODY) {
        send_slice(r, NULL, 0, H2O_SEND_STATE_IN_PROGRESS); /* the head alone; on_proceed sends the body */
        return;
    }
    int64_t index = (int64_t)(r->next / STORE_CHUNK_SIZE);
    size_t offset = (size_t)(r->next - (uint64_t)index * STORE_CHUNK_SIZE);
    if (index != r->chunk_index || offset < r->slice_start || offset >= r->slice_start + r->slice_len) {
        if (r->fetch != NULL && step_from_fetch(r))
            return;
        size_t cap = r->buf_cap;
        if (r->direct_fd >= 0 && r->head_sent && !r->h2o_writing) {
            uint64_t before = r->next;
            switch (send_direct(r)) {
            case DIRECT_ALL_SENT:
                send_slice(r, NULL, 0, H2O_SEND_STATE_FINAL);
                return;
            case DIRECT_FAILED:
                abort_response(r, r->error);
                return;
            case DIRECT_WAIT:
                cap = DIRECT_HANDOFF;
                break;
            case DIRECT_GO_ON:
                break;
            }
            if (r->next != before) { /* sent some: go on from where that left off */
                index = (int64_t)(r->next / STORE_CHUNK_SIZE);
                offset = (size_t)(r->next - (uint64_t)index * STORE_CHUNK_SIZE);
                if (r->fetch != NULL && step_from_fetch(r))
                    return;
            }
        }
        if (!load_slice(r, index, offset, cap)) {
            if (r->end == UINT64_MAX) {
                abort_response(r, "the fill of a body without a length broke off");
                return;
            }
            /* Evicted, invalidated, damaged, or never stored: from upstream, this generation only. */
            if (!fetch_missing(r, (uint32_t)index)) {
                abort_response(r, "could not get the rest of the object");
                return;
            }
            step(r);
            return;
        }
    }
    size_t slice_end = r->slice_start + r->slice_len;
    size_t len = slice_end > offset ? clamp_to_end(r, slice_end - offset) : 0;
    if (len == 0) {
        abort_response(r, "chunk shorter than the object says");
        return;
    }
    send_bytes(r, r->buf + (offset - r->slice_start), len);
}

/* --- starting a response from the entry --- */

static void serve_metadata(cache_read_t *r)
{
    h2o_req_t *req = r->req;
    int verdict = conditional_evaluate(&r->creq, &r->meta, r->record);
    if (verdict == 412) {
        send_cache_error(r, GCS_ERROR_PRECONDITION_FAILED);
        return;
    }
    size_t rewritten_len;
    char *base = link_public_base(r->worker->conf->public_url, req->scheme->name.base, req->scheme->name.len,
                                  req->authority.base, req->authority.len);
    char *rewritten = base != NULL ? link_rewrite_json(r->record->resource_text.base, r->record->resource_text.len,
                                                       r->worker->conf->upstream.base_url, base, &rewritten_len)
                                   : NULL;
    h2o_iovec_t body = rewritten != NULL ? h2o_strdup(&req->pool, rewritten, rewritten_len) : r->record->resource_text;
    free(base);
    free(rewritten);
    record_add_headers(req, &r->record->resource, verdict == 304);
    add_x_cache(r);
    send_small(r, verdict == 304 ? 304 : 200, verdict == 304 ? NULL : body.base, verdict == 304 ? 0 : body.len);
}

/* Status, Content-Range and length of a media response; false when it was answered with a 416 instead. */
static bool set_extent(cache_read_t *r)
{
    h2o_req_t *req = r->req;
    uint64_t first = 0, last = 0, size = r->meta.size;
    bool ranged = r->creq.range.present && conditional_if_range_holds(&r->creq, &r->meta, r->record);
    if (size == STORE_SIZE_UNKNOWN) { /* a whole body still arriving without a length: chunked */
        req->res.status = 200;
        req->res.reason = "OK";
        r->next = 0;
        r->end = UINT64_MAX;
        return true;
    }
    bool satisfiable = ranged ? cache_range_resolve(&r->creq.range, size, &first, &last) : size > 0;
    if (ranged && !satisfiable) {
        memset(&req->res.headers, 0, sizeof(req->res.headers));
        send_cache_error(r, GCS_ERROR_RANGE_NOT_SATISFIABLE);
        return false;
    }
    if (!ranged && size > 0)
        last = size - 1;
    req->res.status = ranged ? 206 : 200;
    req->res.reason = ranged ? "Partial Content" : "OK";
    r->next = satisfiable ? first : 0;
    r->end = satisfiable ? last + 1 : 0;
    req->res.content_length = (size_t)(r->end - r->next);
    if (ranged) {
        char *content_range = h2o_mem_alloc_pool(&req->pool, 80);
        int n = snprintf(content_range, 80, "bytes %llu-%llu/%llu", (unsigned long long)first,
                         (unsigned long long)last, (unsigned long long)size);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_RANGE, NULL, content_range, (size_t)n);
    }
    return true;
}

/* verdict: conditional_evaluate's, which serve() made. */
static void serve_media(cache_read_t *r, int verdict)
{
    h2o_req_t *req = r->req;
    const record_view_t *view = record_media_view(r->record, r->creq.flavour);
    if (verdict == 412) {
        send_cache_error(r, GCS_ERROR_PRECONDITION_FAILED);
        return;
    }
    record_add_headers(req, view, verdict == 304);
    add_x_cache(r);
    if (verdict == 304) {
        send_small(r, 304, NULL, 0);
        return;
    }
    if (!set_extent(r))
        return;
    if (r->creq.head)
        r->end = r->next; /* HEAD: headers only; h2o sends no body of its own */
    if (r->hot != NULL) { /* serve() took the worker's copy of this small object */
        start_response(r);
        step(r);
        return;
    }
    /*
     * One slice at a time, so that the socket's copy reads bytes still in the
     * CPU's cache; whole chunks where the store checks every read, which
     * would otherwise check a chunk once per slice. Small objects, most
     * hits, need less.
     */
    size_t slice = store_verifies_every_read(r->cache->store) ? STORE_CHUNK_SIZE : SEND_SLICE;
    size_t size = r->meta.size < slice ? (size_t)r->meta.size : slice;
    r->buf_small = size <= WORKER_SMALL_BUFFER;
    if ((r->buf = r->buf_small ? worker_small_buffer_take(r->worker) : malloc(size != 0 ? size : 1)) == NULL) {
        r->error = "out of memory";
        worker_cut_connection(req);
        return;
    }
    r->buf_cap = size != 0 ? size : 1;
    r->chunk_index = -1;
    h2o_socket_t *sock = req->version < 0x200 && req->conn->callbacks->get_socket != NULL
                             ? req->conn->callbacks->get_socket(req->conn)
                             : NULL;
    /* Only with a Content-Length: a body without one is chunked by h2o, whose framing a direct send would skip. */
    bool direct = sock != NULL && sock->ssl == NULL && r->end != UINT64_MAX && req->res.content_length != SIZE_MAX;
    r->direct_fd = direct ? h2o_socket_get_fd(sock) : -1;
    if (direct && r->end - r->next >= DIRECT_MIN_BODY) {
        int unsent_max = DIRECT_UNSENT_MAX;
        /* Only a tuning: where the kernel refuses it, bytes are sent the same way, as before it existed. */
        (void)setsockopt(r->direct_fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &unsent_max, sizeof(unsent_max));
    }
    start_response(r);
    step(r);
}

static void pin_into_batch(cache_read_t *r);

/*
 * A small object's copy in memory, made on its first read: this very version
 * is the cached one. None for answers without its bytes (HEAD, or a verdict
 * of 304 or 412), nor while a fill holds them.
 */
static store_hot_object_t *small_copy(cache_read_t *r, int verdict)
{
    if (r->creq.head || verdict != 0 || r->entry_fill != NULL || r->fetch != NULL ||
        r->meta.size == STORE_SIZE_UNKNOWN)
        return NULL;
    return store_hot_get(r->worker->store_hot, &r->key, r->meta.generation, r->meta.size);
}

static void serve(cache_read_t *r, const char *state)
{
    r->cache_state = state;
    if (r->batch.id != NULL && !r->batch_pinned) {
        pin_into_batch(r);
        return;
    }
    batch_use_advertise(&r->batch, r->req);
    /*
     * Every answer from the entry is a use: HEADs, 304s, metadata. One that may send the object's bytes pins it
     * too, unless the worker's copy in memory holds them: then it reads nothing of the store's.
     */
    bool media = r->creq.kind == CACHE_READ_MEDIA;
    int verdict = media ? conditional_evaluate(&r->creq, &r->meta, r->record) : 0;
    if (media && !r->pinned && r->hot == NULL && (r->hot = small_copy(r, verdict)) == NULL) {
        store_touch_and_pin(r->cache->store, &r->key);
        r->pinned = true;
    } else {
        store_touch(r->cache->store, &r->key);
    }
    if (r->entry_fill != NULL) {
        attach(r, r->entry_fill);
        fetch_release(r->entry_fill);
        r->entry_fill = NULL;
    }
    if (r->creq.kind == CACHE_READ_METADATA)
        serve_metadata(r);
    else
        serve_media(r, verdict);
}

static void on_batch_pinned(batch_use_t *use, int result)
{
    cache_read_t *r = H2O_STRUCT_FROM_MEMBER(cache_read_t, batch, use);
    if (result == STORE_OK) {
        r->batch_pinned = true;
        serve(r, r->cache_state);
        return;
    }
    detach(r);
    r->state = READ_DONE;
    r->error = result == STORE_QUOTA ? "batch quota" : "pin into the batch failed";
    batch_use_refuse(&r->batch, r->req, result, error_format(r));
}

/* The caller may read the entry: pin it into the request's batch before anything is sent. */
static void pin_into_batch(cache_read_t *r)
{
    r->state = READ_PINNING;
    r->batch.on_pinned = on_batch_pinned;
    uint64_t expect = r->have_meta && r->meta.size != STORE_SIZE_UNKNOWN ? r->meta.size : 0;
    if (!batch_use_pin(&r->batch, r->req, r->creq.bucket, r->creq.name, CACHE_BATCH_READ, expect))
        on_batch_pinned(&r->batch, STORE_ERROR);
}

/* --- planning --- */

static const cache_policy_t *policy_of(const cache_read_t *r)
{
    return conf_cache_policy_for(r->worker->conf, r->creq.bucket, strlen(r->creq.bucket), r->creq.name,
                                 strlen(r->creq.name));
}

static bool is_fresh(const cache_read_t *r)
{
    if (r->creq.generation >= 0) /* a read that names its generation reads bytes that can never change */
        return true;
    const cache_policy_t *policy = policy_of(r);
    if (policy->kind == CACHE_POLICY_IMMUTABLE)
        return true;
    return policy->kind == CACHE_POLICY_TTL &&
           worker_unix_ms() - r->meta.fill_time < (int64_t)policy->ttl_seconds * 1000;
}

/*
 * Whether the store holds any chunk of what the request reads. None: a miss
 * (fetched as one), not a hit that would fetch everything by pieces. Some: a
 * hit that completes the rest from upstream. Whole objects, the usual case,
 * are answered from the metadata alone.
 */
static bool holds_some(const cache_read_t *r)
{
    const store_meta_t *m = &r->meta;
    if (m->size == 0 || (m->num_chunks != 0 && m->chunks_present == m->num_chunks))
        return true;
    if (m->chunks_present == 0)
        return false;
    uint64_t first, last;
    if (!cache_range_resolve(&r->creq.range, m->size, &first, &last))
        return true; /* a 416 needs no bytes */
    for (uint64_t i = first / STORE_CHUNK_SIZE; i <= last / STORE_CHUNK_SIZE; i++)
        if (store_chunk_present(r->cache->store, &r->key, m->generation, (uint32_t)i))
            return true;
    return false;
}

/* Whether the entry can answer this request (after revalidation, if needed). */
static bool entry_serves(const cache_read_t *r, const fetch_t *filling)
{
    if (r->record == NULL)
        return false;
    if (r->creq.kind == CACHE_READ_METADATA)
        return record_has_resource(r->record);
    if (record_media_view(r->record, r->creq.flavour) == NULL)
        return false;
    if (r->meta.content_encoding != NULL && strcasecmp(r->meta.content_encoding, "gzip") == 0 && !r->creq.accepts_gzip)
        return false; /* gzip objects reach clients that refuse gzip only decompressed: upstream does that */
    if (r->meta.size == STORE_SIZE_UNKNOWN)
        return filling != NULL && !r->creq.range.present && !r->creq.head;
    return filling != NULL || holds_some(r);
}

static void fetch_params_for(cache_read_t *r, fetch_params_t *p)
{
    *p = (fetch_params_t){.key = &r->key, .target = r->target, .client = r->req, .flavour = r->creq.flavour,
                          .caller = caller_owner_name(&r->caller),
                          .anonymous = r->caller.identity.kind == AUTH_ANONYMOUS, .first = 0, .last = UINT64_MAX,
                          .pinned_generation = -1,
                          .if_generation_not_match = -1, .head = r->creq.head, .demand = !r->prefetch};
    const cache_range_t *range = &r->creq.range;
    /* A Range is widened to whole chunks, so what comes back can be stored; a suffix needs the size first. */
    if (range->present && !range->suffix && r->creq.if_range.base == NULL) {
        p->first = range->first - range->first % STORE_CHUNK_SIZE;
        p->last = range->last == UINT64_MAX ? UINT64_MAX : (range->last / STORE_CHUNK_SIZE + 1) * STORE_CHUNK_SIZE - 1;
    }
}

/* Starts a fetch this read leads; a miss (may_join) may instead follow a twin another thread started. */
static void lead(cache_read_t *r, const fetch_params_t *params, const char *state, bool may_join)
{
    r->cache_state = state;
    r->state = READ_AWAITING_HEAD;
    detach(r);
    r->sub.waiting = true;
    bool joined = false;
    fetch_t *f = may_join ? fetch_start_or_join(r->cache, r->worker, params, &r->sub, &joined)
                          : fetch_start(r->cache, r->worker, params, &r->sub);
    if (f == NULL) {
        forward_as(r, "PASS");
        return;
    }
    r->fetch = f;
    r->leading = !joined;
    if (joined && fetch_watch(f, &r->sub) != FETCH_AWAITING_HEAD) {
        detach(r); /* the twin moved on meanwhile: look again */
        plan(r);
    }
}

static void miss(cache_read_t *r)
{
    forget_entry(r);
    if (r->creq.head || r->creq.kind == CACHE_READ_METADATA) {
        forward_recording(r, "MISS"); /* a HEAD fills nothing; a resource is recorded from its answer */
        return;
    }
    fetch_params_t params;
    fetch_params_for(r, &params);
    lead(r, &params, "MISS", true);
}

static void revalidate(cache_read_t *r)
{
    fetch_params_t params;
    fetch_params_for(r, &params);
    const record_view_t *view = record_media_view(r->record, r->creq.flavour);
    char query[64];
    if (r->creq.kind == CACHE_READ_METADATA) {
        forward_recording(r, "MISS"); /* metadata has no conditional GET of its own: it is small, fetch it again */
        return;
    }
    if (view->etag != NULL) {
        params.if_none_match = view->etag;
    } else if (r->creq.flavour == CACHE_FLAVOUR_JSON) {
        params.if_generation_not_match = r->meta.generation;
    } else {
        /* No ETag and the XML API has no generation condition: ask the JSON API's metadata. */
        snprintf(query, sizeof(query), "ifGenerationNotMatch=%lld", (long long)r->meta.generation);
        params.url = target_json_object_url(r->worker->conf->upstream.base_url, r->creq.bucket, r->creq.name, query);
        params.if_generation_not_match = r->meta.generation;
        params.first = 0, params.last = UINT64_MAX;
        r->by_metadata = true;
    }
    lead(r, &params, "MISS", false);
    free((char *)params.url);
}

static void follow(cache_read_t *r, fetch_t *fetch)
{
    r->state = READ_AWAITING_HEAD;
    attach(r, fetch);
    if (fetch_watch(fetch, &r->sub) != FETCH_AWAITING_HEAD) {
        detach(r); /* it moved on before we were in: look again */
        plan(r);
    }
}

/* The entry to serve: a fill's (newer) or the store's; *filling is the fill, retained. False when none. */
static bool find_entry(cache_read_t *r, fetch_t *newest, fetch_t **filling)
{
    *filling = NULL;
    fetch_state_t st = newest != NULL ? fetch_state(newest) : FETCH_FAILED;
    bool from_fill = (st == FETCH_STREAMING || st == FETCH_COMPLETE) && fetch_meta(newest, &r->meta);
    store_meta_t stored;
    bool have_stored = store_meta_get_memo(r->worker->meta_memo, &r->key, &stored) == STORE_OK;
    if (from_fill && have_stored && stored.generation == r->meta.generation && stored.size == r->meta.size) {
        store_meta_free(&r->meta); /* the store's has what revalidations updated since */
        r->meta = stored;
    } else if (!from_fill && have_stored) {
        r->meta = stored;
    } else if (have_stored) {
        store_meta_free(&stored);
    }
    r->have_meta = from_fill || have_stored;
    if (from_fill) {
        fetch_retain(newest);
        *filling = newest;
    }
    return r->have_meta;
}

static void plan_entry(cache_read_t *r, fetch_t *filling)
{
    if (r->creq.generation >= 0 && r->creq.generation != r->meta.generation) {
        forward_as(r, "PASS"); /* another generation: upstream has it, the cache keeps the current one */
        return;
    }
    r->record = record_cache_get(&r->worker->records, &r->key, r->meta.generation, r->meta.resource_json);
    if (!entry_serves(r, filling)) {
        miss(r);
        return;
    }
    if (conditional_needs_last_modified(&r->creq, &r->meta)) {
        forward_as(r, "PASS"); /* upstream knows the date; the entry does not yet */
        return;
    }
    if (filling != NULL && r->creq.kind == CACHE_READ_MEDIA) {
        fetch_retain(filling);
        r->entry_fill = filling;
    }
    /* Policies skip freshness checks, never authorization: without a known right the revalidation is the check. */
    /* First: a revalidation of a known right keeps its decision. */
    bool allowed = access_known(&r->access, r->worker->auth, &r->caller.identity, &r->key, &r->meta, r->record);
    if (allowed && is_fresh(r))
        serve(r, "HIT");
    else
        revalidate(r);
}

static void plan(cache_read_t *r)
{
    r->state = READ_PLANNING;
    forget_entry(r);
    if (++r->plans > MAX_PLANS || cache_write_in_flight(r->cache, &r->key)) {
        forward_as(r, "PASS");
        return;
    }
    /* A metadata read takes a fill's entry too (an upload's is registered before it commits), never waits on one. */
    fetch_t *newest = fetch_registry_newest(r->cache, &r->key);
    if (newest != NULL && !r->no_follow && r->creq.kind == CACHE_READ_MEDIA &&
        fetch_state(newest) == FETCH_AWAITING_HEAD) {
        follow(r, newest);
        fetch_release(newest);
        return;
    }
    fetch_t *filling;
    bool have = find_entry(r, newest, &filling);
    fetch_release(newest);
    if (have)
        plan_entry(r, filling);
    else if (r->creq.kind == CACHE_READ_METADATA)
        forward_recording(r, "MISS");
    else
        miss(r);
    fetch_release(filling);
}

/* --- what a fetch tells --- */

/* Upstream confirmed the entry: the headers the 304 carries replace the stored ones (RFC 9111 4.3.4). */
static void serve_revalidated(cache_read_t *r, exchange_t *x)
{
    const record_view_t *view = r->record != NULL ? record_media_view(r->record, r->creq.flavour) : NULL;
    static const record_view_t none = {0};
    bool changed = entry_update_from_304(r->cache, &r->key, r->creq.flavour, &r->meta, view != NULL ? view : &none, x,
                                         policy_of(r)->kind == CACHE_POLICY_TTL);
    exchange_free(x);
    if (!r->access.decided || r->access.decision != AUTH_DECISION_OWNER)
        access_confirmed(&r->access, r->cache, r->worker->auth, &r->caller.identity, &r->key, &r->meta,
                         r->entry_fill == NULL && !(r->record != NULL && r->record->is_public));
    record_release(r->record);
    r->record = record_cache_get(&r->worker->records, &r->key, r->meta.generation, r->meta.resource_json);
    if (r->record == NULL || record_media_view(r->record, r->creq.flavour) == NULL) {
        miss(r);
    } else if (changed && r->meta.size > 0 && !r->creq.head) {
        /* Another metageneration: headers the 304 left out may have changed too. One byte brings them. */
        fetch_params_t params;
        fetch_params_for(r, &params);
        params.first = 0, params.last = 0, params.pinned_generation = r->meta.generation;
        r->refreshing = true;
        lead(r, &params, "REVALIDATED", false);
    } else {
        serve(r, "REVALIDATED");
    }
}

/* The head of the fetch this read leads came, and there is nothing to fill: relay it, or serve the entry. */
static void on_unfilled(fetch_subscriber_t *sub, fetch_t *fetch, exchange_t *x)
{
    cache_read_t *r = H2O_STRUCT_FROM_MEMBER(cache_read_t, sub, sub);
    note_upstream_ms(r, exchange_upstream_ms(x));
    fetch_state_t st = fetch_state(fetch);
    detach(r);
    if (r->state == READ_SENDING) { /* a fetch of missing chunks it no longer waits for */
        exchange_free(x);
        return;
    }
    if (r->state != READ_AWAITING_HEAD) { /* a fetch of missing chunks: the generation is gone */
        exchange_free(x);
        abort_response(r, "the object changed while it was being read");
        return;
    }
    if (r->refreshing) { /* the headers stay as the 304 left them */
        exchange_free(x);
        r->refreshing = false;
        serve(r, "REVALIDATED");
        return;
    }
    if (st == FETCH_NOT_MODIFIED && r->have_meta) {
        serve_revalidated(r, x);
        return;
    }
    if (r->by_metadata) { /* the JSON API said "changed" (or something else): read the object itself */
        exchange_free(x);
        r->by_metadata = false;
        r->no_follow = true;
        miss(r);
        return;
    }
    if (exchange_status(x) == 404)
        cache_invalidate(r->cache, &r->key); /* upstream says it is gone: so is the cached copy */
    if (!r->access.decided && exchange_status(x) < 200 && r->have_meta) {
        /* The check of the caller's right failed: fail closed, never the cached bytes. */
        exchange_free(x);
        r->cache_state = "MISS";
        r->error = "could not check the caller's access with upstream";
        access_undecidable(&r->access);
        r->state = READ_DONE;
        gcs_error_send(r->req, error_format(r), GCS_ERROR_ACCESS_UNDECIDED, NULL);
        return;
    }
    r->state = READ_FORWARDED;
    forward_adopt(r->req, r->target, x,
                  &(forward_options_t){.cache_state = "MISS", .hooks = &read_hooks, .ctx = r,
                                       .identity = identity_for_log(r)});
}

static void on_fetch_wakeup(worker_wakeup_t *wakeup)
{
    cache_read_t *r = H2O_STRUCT_FROM_MEMBER(cache_read_t, sub.wakeup, wakeup);
    if (r->state == READ_WAITING_BYTES) {
        step(r);
        return;
    }
    if (r->state != READ_AWAITING_HEAD || r->fetch == NULL)
        return;
    fetch_state_t st = fetch_watch(r->fetch, &r->sub);
    if (st == FETCH_AWAITING_HEAD)
        return;
    store_meta_t meta;
    if (r->leading && fetch_meta(r->fetch, &meta)) {
        /* The fill this read started has a body (it may even have failed already): serve it, as its first reader. */
        fetch_t *f = r->fetch;
        forget_entry(r);
        note_upstream_ms(r, fetch_upstream_ms(f));
        r->meta = meta;
        r->have_meta = true;
        r->refreshing = false;
        r->record = record_cache_get(&r->worker->records, &r->key, r->meta.generation, r->meta.resource_json);
        if (r->record == NULL || record_media_view(r->record, r->creq.flavour) == NULL) {
            detach(r);
            forward_as(r, "PASS");
            return;
        }
        if (!r->access.decided || r->access.decision != AUTH_DECISION_OWNER) /* upstream sent the caller the body */
            access_confirmed(&r->access, r->cache, r->worker->auth, &r->caller.identity, &r->key, &r->meta, false);
        serve(r, r->cache_state);
        return;
    }
    /* A fill this read followed: it streams (plan serves it), or it came to nothing. */
    detach(r);
    if (st == FETCH_DECLINED || st == FETCH_FAILED)
        r->no_follow = true;
    plan(r);
}

/* --- entry --- */

static void on_caller_known(caller_t *caller)
{
    cache_read_t *r = H2O_STRUCT_FROM_MEMBER(cache_read_t, caller, caller);
    auth_kind_t kind = caller->identity.kind;
    if (kind == AUTH_INVALID || kind == AUTH_UNAVAILABLE) {
        /* GCS answers a bad token 401 even for public objects; a token that could not be checked gets nothing. */
        access_undecidable(&r->access);
        r->cache_state = "PASS";
        r->state = READ_DONE;
        r->error = kind == AUTH_INVALID ? "invalid or expired token" : "token could not be checked";
        caller_refuse(caller, error_format(r));
        return;
    }
    if (!batch_use_check(&r->batch, r->req, &caller->identity, error_format(r))) {
        r->cache_state = "PASS";
        r->state = READ_DONE;
        r->error = "batch refused";
        return;
    }
    plan(r);
}

void cache_read_start(h2o_req_t *req, const target_t *target, const cache_request_t *creq,
                      const request_headers_t *headers)
{
    worker_t *worker = worker_of(req);
    cache_read_t *r = h2o_mem_alloc_recycle(&worker->spare_read_states, sizeof(*r));
    memset(r, 0, sizeof(*r));
    *(cache_read_t **)h2o_mem_alloc_shared(&req->pool, sizeof(r), on_dispose) = r;
    r->req = req;
    r->worker = worker;
    r->cache = r->worker->cache;
    r->target = target;
    r->creq = *creq;
    r->upstream_ms = -1;
    r->chunk_index = -1;
    r->direct_fd = -1; /* until serve_media finds the response may use it */
    r->watchdog.cb = on_watchdog;
    r->sub.worker = r->worker;
    r->sub.wakeup.cb = on_fetch_wakeup;
    r->sub.on_unfilled = on_unfilled;
    store_key_make_memo(r->worker->key_memo, &r->key, creq->bucket, strlen(creq->bucket), creq->name,
                        strlen(creq->name));
    batch_use_parse(&r->batch, &req->pool, headers);
    r->prefetch = headers->prefetch;
    caller_identify(&r->caller, req, on_caller_known);
}
