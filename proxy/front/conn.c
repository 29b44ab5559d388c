/*
 * conn.c - per-connection records (see conn.h).
 *
 * A record is made at accept and stored in the socket's on_close data (h2o
 * sets on_close only for its client side, so it is ours here); TLS and an h2c
 * upgrade keep the same socket. Each request holds a reference until it is
 * disposed, and the socket one until it closes, so neither outlives the
 * other's view of it. Everything runs on the worker's own loop.
 *
 * HTTP/2 abuse: every HEADERS frame reaches the handler as a request, and a
 * stream the client reset shows up as a request disposed before its response
 * completed. Both are counted per one-second window; a connection over
 * http2.max_requests_per_second or http2.max_resets_per_second is shut down
 * (frames already buffered still arrive, and are answered cheaply).
 *
 * The connection limit is the process's, but each worker can close only its
 * own sockets. A worker that accepts over the limit with nothing idle of its
 * own asks a worker that has an idle connection to close it (reserving that
 * connection first, so two acceptors never count on the same one).
 */
#include "conn.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conf.h"

/* Warnings about refused or abusive connections: at most one per this many ms, with a count. */
#define WARN_INTERVAL_MS 10000

struct conn {
    h2o_linklist_t link;
    conn_table_t *table;
    _Atomic unsigned *open; /* the process's count of open connections */
    h2o_socket_t *sock; /* NULL once closed */
    unsigned refs;
    unsigned active;    /* requests in flight */
    uint64_t idle_since_ms;
    bool counted_idle; /* counted in the table's idle */
    bool guest;        /* accepted during the drain (an admin listener's): answered once, then closed */
    bool refused;
    bool abusive;
    uint64_t window_ms; /* start of the current one-second window */
    unsigned requests, resets;
};

struct conn_table {
    worker_t *worker;
    _Atomic unsigned *open;
    h2o_linklist_t conns;
    size_t count;
    size_t guests;
    /* Open with no request in flight; written by the owner, read by acceptors on other workers. */
    _Atomic int idle;
    /* Idle connections other workers reserved and want closed; any thread adds, the owner takes. */
    _Atomic int reclaim_wanted;
    worker_wakeup_t reclaim;
    uint64_t refused_warned_ms, abusive_warned_ms;
    unsigned refused_since_warning, abusive_since_warning;
};

static void on_reclaim_wanted(worker_wakeup_t *wakeup);

conn_table_t *conn_table_create(worker_t *worker, _Atomic unsigned *open)
{
    conn_table_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->worker = worker;
    t->open = open;
    t->reclaim.cb = on_reclaim_wanted;
    h2o_linklist_init_anchor(&t->conns);
    return t;
}

void conn_table_destroy(conn_table_t *t)
{
    if (t == NULL)
        return;
    /* Every thread has stopped, so the reclaim wake-up cannot run; the queue goes with the worker. */
    /* Connections are closed by now; records still referenced by nothing are gone too. */
    while (!h2o_linklist_is_empty(&t->conns)) {
        conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, link, t->conns.next);
        h2o_linklist_unlink(&c->link);
        c->table = NULL;
    }
    free(t);
}

size_t conn_table_size(const conn_table_t *t)
{
    return t->count;
}

size_t conn_table_members(const conn_table_t *t)
{
    return t->count - t->guests;
}

/* Keeps the table's idle count (what other workers may reserve) in step with c. */
static void set_idle(conn_t *c, bool idle)
{
    if (c->counted_idle == idle || c->table == NULL)
        return;
    c->counted_idle = idle;
    atomic_fetch_add(&c->table->idle, idle ? 1 : -1);
}

static void conn_release(conn_t *c)
{
    if (--c->refs != 0)
        return;
    if (c->table != NULL && h2o_linklist_is_linked(&c->link)) {
        h2o_linklist_unlink(&c->link);
        c->table->count--;
        c->table->guests -= c->guest;
    }
    free(c);
}

static void shut(conn_t *c)
{
    if (c->sock != NULL)
        shutdown(h2o_socket_get_fd(c->sock), SHUT_RDWR);
}

static void on_socket_close(void *data)
{
    conn_t *c = data;
    atomic_fetch_sub(c->open, 1);
    set_idle(c, false);
    c->sock = NULL;
    conn_release(c);
}

void conn_register(conn_table_t *t, h2o_socket_t *sock, bool refused, bool guest)
{
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        atomic_fetch_sub(t->open, 1);
        h2o_socket_close(sock);
        return;
    }
    c->table = t;
    c->open = t->open;
    c->sock = sock;
    c->refs = 1;
    c->refused = refused;
    c->guest = guest;
    c->idle_since_ms = worker_coarse_ms();
    sock->on_close.cb = on_socket_close;
    sock->on_close.data = c;
    h2o_linklist_insert(&t->conns, &c->link);
    t->count++;
    t->guests += guest;
    if (!refused && !guest)
        set_idle(c, true);
}

bool conn_reclaim_idle(conn_table_t *t)
{
    conn_t *oldest = NULL;
    for (h2o_linklist_t *l = t->conns.next; l != &t->conns; l = l->next) {
        conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, link, l);
        if (c->sock != NULL && c->active == 0 && (oldest == NULL || c->idle_since_ms < oldest->idle_since_ms))
            oldest = c;
    }
    if (oldest == NULL)
        return false;
    shut(oldest);
    set_idle(oldest, false);
    oldest->sock = NULL; /* being closed: not a candidate again */
    return true;
}

bool conn_reserve_idle(conn_table_t *t)
{
    int wanted = atomic_load(&t->reclaim_wanted);
    do {
        if (wanted >= atomic_load(&t->idle))
            return false;
    } while (!atomic_compare_exchange_weak(&t->reclaim_wanted, &wanted, wanted + 1));
    worker_wake(t->worker, &t->reclaim);
    return true;
}

/*
 * The reserved connections may have turned busy since (a request arrived on
 * them); those reservations lapse, and the process stays that many over its
 * limit until connections close, well inside the descriptors set aside for
 * refusals.
 */
static void on_reclaim_wanted(worker_wakeup_t *wakeup)
{
    conn_table_t *t = H2O_STRUCT_FROM_MEMBER(conn_table_t, reclaim, wakeup);
    for (int wanted = atomic_exchange(&t->reclaim_wanted, 0); wanted > 0; wanted--)
        if (!conn_reclaim_idle(t))
            break;
}

void conn_close_idle(conn_table_t *t, bool all)
{
    for (h2o_linklist_t *l = t->conns.next; l != &t->conns; l = l->next) {
        conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, link, l);
        if (all || (c->active == 0 && !c->guest))
            shut(c);
    }
}

/* --- requests --- */

typedef struct request_ref {
    conn_t *conn;
    h2o_req_t *req;
} request_ref_t;

static void warn_limited(uint64_t *warned_ms, unsigned *since, const char *fmt, unsigned value)
{
    uint64_t now = worker_now_ms();
    (*since)++;
    if (*warned_ms != 0 && now - *warned_ms < WARN_INTERVAL_MS)
        return;
    log_msg(LOG_LEVEL_WARN, "server", fmt, *since, value);
    *warned_ms = now;
    *since = 0;
}

static void on_request_dispose(void *p)
{
    request_ref_t *ref = p;
    conn_t *c = ref->conn;
    h2o_req_t *req = ref->req;
    /* A response that never completed: the client reset the stream (or left). */
    bool cut_short = req->res.status == 0 || req->_generator != NULL;
    if (cut_short && req->version >= 0x200)
        c->resets++;
    c->active--;
    if (c->active == 0) {
        c->idle_since_ms = worker_coarse_ms();
        if (c->sock != NULL && !c->refused && !c->abusive)
            set_idle(c, true);
        if (c->refused || c->abusive || c->guest)
            shut(c);
    }
    conn_release(c);
}

static conn_t *conn_of(h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    return sock != NULL && sock->on_close.cb == on_socket_close ? sock->on_close.data : NULL;
}

/* HTTP/2 only: HTTP/1 answers one request at a time, so its rate is the client's round trips. */
static bool over_rate(conn_t *c, const conf_t *conf)
{
    uint64_t now = worker_coarse_ms();
    if (now - c->window_ms >= 1000) {
        c->window_ms = now;
        c->requests = 0;
        c->resets = 0;
    }
    c->requests++;
    return c->requests > conf->http2.max_requests_per_second || c->resets > conf->http2.max_resets_per_second;
}

conn_verdict_t conn_request_begin(h2o_req_t *req)
{
    conn_t *c = conn_of(req);
    if (c == NULL)
        return CONN_ADMIT;
    request_ref_t *ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), on_request_dispose);
    ref->conn = c;
    ref->req = req;
    c->refs++;
    c->active++;
    set_idle(c, false);
    if (c->refused && c->table != NULL) {
        req->http1_is_persistent = 0;
        conn_table_t *t = c->table;
        warn_limited(&t->refused_warned_ms, &t->refused_since_warning,
                     "refused %u connection(s) over max_client_connections (%u) since the last warning",
                     t->worker->conf->max_client_connections);
        return CONN_REFUSED;
    }
    if (c->abusive || c->refused)
        return c->abusive ? CONN_ABUSIVE : CONN_REFUSED;
    if (c->guest)
        req->http1_is_persistent = 0;
    if (req->version >= 0x200 && c->table != NULL && over_rate(c, c->table->worker->conf)) {
        c->abusive = true;
        conn_table_t *t = c->table;
        warn_limited(&t->abusive_warned_ms, &t->abusive_since_warning,
                     "closed %u HTTP/2 connection(s) opening or resetting streams too fast "
                     "(http2.max_requests_per_second %u)",
                     t->worker->conf->http2.max_requests_per_second);
        shut(c);
        return CONN_ABUSIVE;
    }
    return CONN_ADMIT;
}
