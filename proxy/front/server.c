/*
 * server.c - listeners, TLS, worker threads, accepting, and an orderly
 * shutdown.
 *
 * Each listener gets its own h2o globalconf because h2o decides HTTP/2 per
 * globalconf: h2 over TLS (ALPN) is on unless a listener turns it off, and
 * cleartext h2c is off unless one turns it on, since h2o 2.2.5 lacks the
 * HTTP/2 Rapid Reset fix and h2c is the cheapest way in for that attack. Each
 * worker thread runs one evloop with a context per listener and its own dup()
 * of every listening fd.
 *
 * Shutdown (SIGTERM, SIGINT), per worker: stop accepting, ask h2o to wind
 * connections down (no more keep-alive; HTTP/2 GOAWAY), close connections
 * with no request in flight, let the rest finish within shutdown_grace_ms,
 * then cut whatever is left and wait until h2o has closed it all. Only then
 * are the contexts disposed: h2o asserts on a context whose connections or
 * timers are still alive.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buffers.h"
#include "cache.h"
#include "conn.h"
#include "spill.h"
#include "gcs_error.h"
#include "handler.h"
#include "prefetcher.h"
#include "request_metrics.h"
#include "user_usage.h"
#include "proxy.h"
#include "upstream.h"
#include "worker.h"

/* After accept() failed for lack of descriptors or memory, listeners rest this long. */
#define ACCEPT_PAUSE_MS 100
/* Over max_client_connections, this many more are accepted just to be told 503 (per worker). */
#define REFUSAL_SLOTS 64
/* Once the grace is over, how long to wait for h2o to close what was cut. */
#define CLOSE_WAIT_MS 5000
#define WARN_INTERVAL_MS 10000

typedef struct listener {
    const conf_listener_t *conf;
    int fd;
    SSL_CTX *ssl_ctx; /* the newest; each worker holds its own reference to the one it accepts with */
    h2o_globalconf_t globalconf;
    bool globalconf_ready;
} listener_t;

struct server {
    const conf_t *conf;
    pthread_mutex_t tls_lock; /* guards listeners[].ssl_ctx after start-up (SIGHUP swaps them) */
    listener_t *listeners;
    size_t num_listeners;
    worker_t *workers;
    cache_t *cache; /* shared by every worker; NULL when caching is off */
    prefetcher_t *prefetch; /* likewise; started before the workers, stopped before they drain */
    auth_t *auth;
    buffers_t buffers;
    _Atomic unsigned connections;
    _Atomic unsigned workers_ready; /* workers are set up in order: those below this can be woken */
};

/* --- descriptors --- */

/*
 * Raises the soft descriptor limit to the hard one, as h2o's own server does,
 * and refuses a max_client_connections that could not fit beside larder's own
 * descriptors: running out later makes accept() fail under load instead.
 */
static int fit_descriptor_limit(const conf_t *conf)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        log_msg(LOG_LEVEL_ERROR, "server", "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    if (lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &lim) != 0)
            log_msg(LOG_LEVEL_WARN, "server", "cannot raise the descriptor limit to %llu: %s",
                    (unsigned long long)lim.rlim_max, strerror(errno));
        getrlimit(RLIMIT_NOFILE, &lim);
    }
    /* Per worker: its upstream connections, a listening fd per listener, eventfds, epoll and timer fds. */
    uint64_t own = 64 + (uint64_t)conf->worker_threads *
                            (conf->upstream.max_connections + conf->num_listeners + REFUSAL_SLOTS + 8);
    uint64_t need = (uint64_t)conf->max_client_connections + own;
    if (lim.rlim_cur != RLIM_INFINITY && need > lim.rlim_cur) {
        fprintf(stderr,
                "larder: max_client_connections: %u does not fit in the open-file limit %llu (larder needs %llu more "
                "for upstream connections, listeners and itself); raise the limit (ulimit -n) or lower "
                "max_client_connections or upstream.max_connections\n",
                conf->max_client_connections, (unsigned long long)lim.rlim_cur, (unsigned long long)own);
        return -1;
    }
    return 0;
}

/* --- listening sockets --- */

static int resolve_listen_address(const conf_listener_t *lc, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    char port[8];
    snprintf(port, sizeof(port), "%u", lc->port);
    int rc = getaddrinfo(lc->address, port, &hints, &res);
    if (rc != 0) {
        log_msg(LOG_LEVEL_ERROR, "server", "cannot resolve listen address %s: %s", lc->address, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int open_listen_socket(const conf_listener_t *lc)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve_listen_address(lc, &ss, &len) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        log_msg(LOG_LEVEL_ERROR, "server", "cannot listen on %s:%u: %s", lc->address, lc->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static SSL_CTX *create_ssl_ctx(const conf_listener_t *lc)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, lc->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, lc->tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        char err[256];
        ERR_error_string_n(ERR_get_error(), err, sizeof(err));
        log_msg(LOG_LEVEL_ERROR, "server", "TLS setup for %s:%u failed (%s, %s): %s", lc->address, lc->port,
                lc->tls_cert, lc->tls_key, err);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (lc->http2)
        h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
}

static void setup_globalconf(listener_t *l, const conf_t *conf)
{
    h2o_globalconf_t *gc = &l->globalconf;
    h2o_config_init(gc);
    l->globalconf_ready = true;
    /* Limits are copied by h2o_context_init, so they are set before it. */
    gc->max_request_entity_size = conf->max_request_body;
    /* Cleartext HTTP/2, by Upgrade or by prior knowledge: h2o decides both on this one flag. */
    gc->http1.upgrade_to_http2 = l->ssl_ctx == NULL && l->conf->h2c;
    /*
     * h2o arms req_timeout once for the whole request, body included (and
     * for a keep-alive connection's wait for its next request): long enough
     * for the largest body at min_upload_rate, beyond the client timeout.
     */
    gc->http1.req_timeout = conf->client_timeout_ms + conf->max_request_body * 1000 / conf->min_upload_rate;
    gc->http2.idle_timeout = conf->client_timeout_ms;
    gc->http2.graceful_shutdown_timeout = conf->shutdown_grace_ms;
    gc->server_name = h2o_iovec_init(H2O_STRLIT("")); /* the upstream's Server header passes through */

    h2o_hostconf_t *host = h2o_config_register_host(gc, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = handler_on_req;
    /* h2o binds requests it rejects itself (413, 400) to the fallback path. */
    gcs_error_register_filter(&host->fallback_path, conf->virtual_host_suffix);
}

static const char *protocols(const listener_t *l)
{
    bool h2 = l->ssl_ctx != NULL ? l->conf->http2 : l->conf->h2c;
    return h2 ? (l->ssl_ctx != NULL ? "HTTP/1.1 and h2" : "HTTP/1.1 and h2c") : "HTTP/1.1 only";
}

static int open_listeners(server_t *server)
{
    const conf_t *conf = server->conf;
    server->num_listeners = conf->num_listeners;
    if ((server->listeners = calloc(conf->num_listeners, sizeof(listener_t))) == NULL)
        return -1;
    for (size_t i = 0; i < conf->num_listeners; i++) {
        listener_t *l = &server->listeners[i];
        l->conf = &conf->listeners[i];
        l->fd = -1;
        if (l->conf->tls_cert != NULL && (l->ssl_ctx = create_ssl_ctx(l->conf)) == NULL)
            return -1;
        if ((l->fd = open_listen_socket(l->conf)) < 0)
            return -1;
        setup_globalconf(l, conf);
        log_msg(LOG_LEVEL_INFO, "server", "listening on %s://%s:%u (%s)", l->ssl_ctx != NULL ? "https" : "http",
                l->conf->address, l->conf->port, protocols(l));
    }
    return 0;
}

static void close_listeners(server_t *server)
{
    for (size_t i = 0; i < server->num_listeners; i++) {
        listener_t *l = &server->listeners[i];
        if (l->fd >= 0)
            close(l->fd);
        if (l->ssl_ctx != NULL)
            SSL_CTX_free(l->ssl_ctx);
        if (l->globalconf_ready)
            h2o_config_dispose(&l->globalconf);
    }
    free(server->listeners);
}

/* --- accepting --- */

static void on_accept(h2o_socket_t *listen_sock, const char *err);

static void set_accepting(worker_t *worker, bool on)
{
    for (size_t i = 0; i < worker->server->num_listeners; i++) {
        h2o_socket_t *sock = worker->contexts[i].listen_sock;
        if (sock == NULL)
            continue;
        if (on)
            h2o_socket_read_start(sock, on_accept);
        else
            h2o_socket_read_stop(sock);
    }
}

static void on_accept_resume(h2o_timeout_entry_t *entry)
{
    worker_t *worker = H2O_STRUCT_FROM_MEMBER(worker_t, accept_resume, entry);
    worker->accept_paused = false;
    if (!worker->stopping)
        set_accepting(worker, true);
}

/*
 * accept() failed for lack of descriptors or memory. epoll is level-triggered,
 * so the listener stays readable and the loop would spin: stop reading it for
 * a moment instead, and say so (once per interval, with a count).
 */
static void pause_accepting(worker_t *worker, int error)
{
    uint64_t now = worker_now_ms();
    worker->accept_failures++;
    if (worker->accept_warned_ms == 0 || now - worker->accept_warned_ms >= WARN_INTERVAL_MS) {
        log_msg(LOG_LEVEL_WARN, "server",
                "accept() failed %u time(s) since the last warning (%s): new connections wait %d ms at a time",
                worker->accept_failures, strerror(error), ACCEPT_PAUSE_MS);
        worker->accept_warned_ms = now;
        worker->accept_failures = 0;
    }
    if (worker->accept_paused)
        return;
    worker->accept_paused = true;
    set_accepting(worker, false);
    /* The housekeeping list runs every ACCEPT_PAUSE_MS: that is the pause. */
    worker_arm(worker, &worker->housekeeping, &worker->accept_resume);
}

/*
 * At max_client_connections, an idle connection (no request in flight) is
 * closed to make room, as nginx reuses keep-alive connections, this worker's
 * own if it has one, else another worker's; with none
 * idle, the newcomer is told 503, up to a few at a time, and closed.
 */
static bool admit(worker_t *worker, bool *refused)
{
    server_t *server = worker->server;
    unsigned open = atomic_fetch_add(&server->connections, 1);
    *refused = false;
    if (open < server->conf->max_client_connections)
        return true;
    if (conn_reclaim_idle(worker->conns))
        return true;
    unsigned ready = atomic_load(&server->workers_ready);
    for (unsigned i = 1; i < ready; i++)
        if (conn_reserve_idle(server->workers[(worker->id + i) % ready].conns))
            return true;
    *refused = open < server->conf->max_client_connections + REFUSAL_SLOTS;
    if (!*refused)
        atomic_fetch_sub(&server->connections, 1);
    return *refused;
}

static void on_accept(h2o_socket_t *listen_sock, const char *err)
{
    listener_context_t *lctx = listen_sock->data;
    worker_t *worker = lctx->worker;
    if (err != NULL)
        return;
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listen_sock);
        if (sock == NULL) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(worker, errno);
            return;
        }
        bool refused;
        if (!admit(worker, &refused)) {
            h2o_socket_close(sock);
            continue;
        }
        conn_register(worker->conns, sock, refused, worker->stopping);
        h2o_accept(&lctx->accept_ctx, sock);
    }
}

/* --- workers --- */

static void on_stop_requested(h2o_socket_t *sock, const char *err)
{
    worker_t *worker = sock->data;
    (void)err;
    worker_drain_fd(worker->stop_fd, "server");
    worker->stopping = true;
}

static void init_timeouts(worker_t *worker, const conf_t *conf)
{
    h2o_timeout_init(worker->loop, &worker->asap, 0);
    h2o_timeout_init(worker->loop, &worker->client_watchdog, conf->client_timeout_ms);
    h2o_timeout_init(worker->loop, &worker->upstream_response, conf->upstream.response_timeout_ms);
    h2o_timeout_init(worker->loop, &worker->upstream_idle, conf->upstream.idle_timeout_ms);
    h2o_timeout_init(worker->loop, &worker->housekeeping, ACCEPT_PAUSE_MS);
    worker->accept_resume.cb = on_accept_resume;
}

static void on_tls_reloaded(worker_wakeup_t *wakeup);

/*
 * The worker's share of store.hot_bytes. None while every read must check
 * the store's checksums (verify_interval 0): a copy in memory is not read
 * from the store again. True unless memory ran out.
 */
static bool hot_copies_init(worker_t *worker)
{
    const conf_t *conf = worker->conf;
    uint64_t share = conf->worker_threads != 0 ? conf->store.hot_bytes / conf->worker_threads : 0;
    if (worker->store_reader == NULL || share == 0 || conf->store.verify_interval == 0)
        return true;
    return (worker->store_hot = store_hot_new(worker->store_reader, share)) != NULL;
}

static int worker_init(worker_t *worker, server_t *server, unsigned id)
{
    const conf_t *conf = server->conf;
    worker->id = id;
    worker->server = server;
    worker->conf = conf;
    worker->loop = h2o_evloop_create();
    init_timeouts(worker, conf);
    worker->cache = server->cache;
    worker->prefetch = server->prefetch;
    worker->buffers = &server->buffers;
    worker->stop_fd = -1;
    worker->spare_read_states.max = WORKER_SPARE_READ_STATES;
    worker->tls_reload.cb = on_tls_reloaded;
    if ((worker->auth = auth_local_new(server->auth)) == NULL || (worker->key_memo = store_key_memo_new()) == NULL ||
        (worker->cache != NULL && (worker->meta_memo = store_meta_memo_new(cache_store(worker->cache))) == NULL) ||
        (worker->cache != NULL && (worker->store_reader = store_reader_new(cache_store(worker->cache))) == NULL) ||
        !hot_copies_init(worker) ||
        (worker->metrics = calloc(1, sizeof(*worker->metrics))) == NULL ||
        (worker->usage = malloc(sizeof(*worker->usage))) == NULL)
        return -1;
    if (user_usage_init(worker->usage) != 0) {
        free(worker->usage);
        worker->usage = NULL;
        return -1;
    }
    if ((worker->upstream = upstream_pool_create(worker->loop, conf)) == NULL ||
        (worker->conns = conn_table_create(worker, &server->connections)) == NULL || worker_wake_init(worker) != 0)
        return -1;
    if ((worker->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        return -1;
    worker->stop_sock = h2o_evloop_socket_create(worker->loop, worker->stop_fd, H2O_SOCKET_FLAG_DONT_READ);
    worker->stop_sock->data = worker;
    h2o_socket_read_start(worker->stop_sock, on_stop_requested);

    if ((worker->contexts = calloc(server->num_listeners, sizeof(listener_context_t))) == NULL)
        return -1;
    for (size_t i = 0; i < server->num_listeners; i++) {
        listener_t *l = &server->listeners[i];
        listener_context_t *lctx = &worker->contexts[i];
        lctx->worker = worker;
        lctx->index = i;
        h2o_context_init(&lctx->h2o, worker->loop, &l->globalconf);
        lctx->accept_ctx.ctx = &lctx->h2o;
        lctx->accept_ctx.hosts = l->globalconf.hosts;
        if (l->ssl_ctx != NULL && SSL_CTX_up_ref(l->ssl_ctx) != 1)
            return -1;
        lctx->accept_ctx.ssl_ctx = l->ssl_ctx;
        int fd = dup(l->fd);
        if (fd < 0)
            return -1;
        lctx->listen_sock = h2o_evloop_socket_create(worker->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
        lctx->listen_sock->data = lctx;
        h2o_socket_read_start(lctx->listen_sock, on_accept);
    }
    return 0;
}

/* Closes the client-facing listeners, and with admin_too the admin ones as well. */
static void stop_listening(worker_t *worker, bool admin_too)
{
    worker_disarm(&worker->accept_resume);
    for (size_t i = 0; i < worker->server->num_listeners; i++) {
        if (!admin_too && worker->conf->listeners[i].admin)
            continue;
        if (worker->contexts[i].listen_sock != NULL)
            h2o_socket_close(worker->contexts[i].listen_sock);
        worker->contexts[i].listen_sock = NULL;
    }
}

/* guests: whether the admin connections accepted during the drain count too. */
static bool drained(worker_t *worker, bool guests)
{
    return (guests ? conn_table_size(worker->conns) : conn_table_members(worker->conns)) == 0 &&
           (worker->cache == NULL || cache_worker_fills(worker->cache, worker) == 0);
}

/* Runs the loop until the worker has nothing open, or until deadline (0: no deadline); true when drained. */
static bool run_until_drained(worker_t *worker, uint64_t deadline, bool sweep_idle)
{
    while (!drained(worker, !sweep_idle)) {
        uint64_t now = worker_now_ms();
        if (deadline != 0 && now >= deadline)
            return false;
        if (sweep_idle)
            conn_close_idle(worker->conns, false); /* connections that finished their last request meanwhile */
        h2o_evloop_run(worker->loop, 50);
    }
    return true;
}

/*
 * Admin listeners go on accepting while the drain lasts, so that a load
 * balancer's health check hears /readyz answer 503 ("draining") rather than
 * a refused connection it may take for a network fault; each such
 * connection is answered once and closed, and none delays the exit.
 */
static void drain(worker_t *worker)
{
    stop_listening(worker, false);
    for (size_t i = 0; i < worker->server->num_listeners; i++)
        h2o_context_request_shutdown(&worker->contexts[i].h2o);
    bool drained_in_grace = run_until_drained(worker, worker_now_ms() + worker->conf->shutdown_grace_ms, true);
    stop_listening(worker, true);
    if (drained_in_grace) {
        conn_close_idle(worker->conns, true); /* the health checks still open */
        run_until_drained(worker, worker_now_ms() + CLOSE_WAIT_MS, false);
        return;
    }
    /* The grace is over: cut what is left, visibly, and wait for h2o to close it. */
    conn_close_idle(worker->conns, true);
    if (worker->cache != NULL)
        cache_worker_stop(worker->cache, worker);
    if (!run_until_drained(worker, worker_now_ms() + CLOSE_WAIT_MS, false))
        log_msg(LOG_LEVEL_WARN, "server", "worker %u: %zu connection(s) did not close after shutdown", worker->id,
                conn_table_size(worker->conns));
}

static void *worker_main(void *arg)
{
    worker_t *worker = arg;
    worker_bind_thread(worker);
    while (!worker->stopping)
        h2o_evloop_run(worker->loop, INT32_MAX);
    drain(worker);
    worker_bind_thread(NULL);
    return NULL;
}

static void worker_dispose(worker_t *worker, size_t num_listeners)
{
    if (worker->contexts != NULL) {
        for (size_t i = 0; i < num_listeners; i++) {
            listener_context_t *lctx = &worker->contexts[i];
            if (lctx->worker == NULL)
                continue;
            if (lctx->listen_sock != NULL)
                h2o_socket_close(lctx->listen_sock);
            /* HTTP/2's graceful-shutdown timer stays linked for a second after request_shutdown. */
            worker_disarm(&lctx->h2o.http2._graceful_shutdown_timeout);
            h2o_context_dispose(&lctx->h2o);
            if (lctx->accept_ctx.ssl_ctx != NULL)
                SSL_CTX_free(lctx->accept_ctx.ssl_ctx); /* connections still on it hold their own references */
        }
        free(worker->contexts);
    }
    upstream_pool_destroy(worker->upstream);
    worker_wake_dispose(worker);
    if (worker->stop_sock != NULL)
        h2o_socket_close(worker->stop_sock);
    else if (worker->stop_fd >= 0)
        close(worker->stop_fd);
    if (worker->loop != NULL) {
        worker_disarm(&worker->accept_resume);
        h2o_timeout_dispose(worker->loop, &worker->asap);
        h2o_timeout_dispose(worker->loop, &worker->client_watchdog);
        h2o_timeout_dispose(worker->loop, &worker->upstream_response);
        h2o_timeout_dispose(worker->loop, &worker->upstream_idle);
        h2o_timeout_dispose(worker->loop, &worker->housekeeping);
        /* Let the closes above run before the loop goes. */
        h2o_evloop_run(worker->loop, 0);
        h2o_evloop_destroy(worker->loop);
    }
    conn_table_destroy(worker->conns);
    auth_local_free(worker->auth);
    store_key_memo_free(worker->key_memo);
    store_meta_memo_free(worker->meta_memo);
    store_reader_free(worker->store_reader); /* before or after the store closed: either ends its transaction */
    record_cache_clear(&worker->records); /* after the loop: the last hits hold references until it ends */
    store_hot_free(worker->store_hot);    /* likewise: the copies the last hits hold go at their release */
    worker_spares_clear(worker);          /* after the loop too: the last hits give theirs back as they end */
    free(worker->metrics);                /* after the loop too: the last requests count as they end */
    if (worker->usage != NULL)
        user_usage_dispose(worker->usage);
    free(worker->usage);
}

/* --- what the admin endpoints read of the server --- */

size_t server_worker_count(const server_t *server)
{
    return server->conf->worker_threads;
}

worker_t *server_worker_at(server_t *server, size_t i)
{
    return &server->workers[i];
}

unsigned server_client_connections(server_t *server)
{
    return atomic_load(&server->connections);
}

void server_hot_stats(server_t *server, store_hot_stats_t *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (size_t i = 0; i < server_worker_count(server); i++) {
        worker_t *worker = server_worker_at(server, i);
        if (worker->store_hot != NULL)
            store_hot_stats_add(worker->store_hot, sum);
    }
}

static void request_stop(worker_t *worker)
{
    uint64_t one = 1;
    if (write(worker->stop_fd, &one, sizeof(one)) < 0)
        log_msg(LOG_LEVEL_WARN, "server", "stop eventfd write: %s", strerror(errno));
}

/* --- TLS certificates, reloaded on SIGHUP --- */

/* On a worker's loop: new connections are accepted with the listeners' newest contexts from now on. */
static void on_tls_reloaded(worker_wakeup_t *wakeup)
{
    worker_t *worker = H2O_STRUCT_FROM_MEMBER(worker_t, tls_reload, wakeup);
    server_t *server = worker->server;
    for (size_t i = 0; i < server->num_listeners; i++) {
        listener_context_t *lctx = &worker->contexts[i];
        pthread_mutex_lock(&server->tls_lock);
        SSL_CTX *newest = server->listeners[i].ssl_ctx;
        bool held = newest != NULL && newest != lctx->accept_ctx.ssl_ctx && SSL_CTX_up_ref(newest) == 1;
        pthread_mutex_unlock(&server->tls_lock);
        if (!held)
            continue;
        SSL_CTX_free(lctx->accept_ctx.ssl_ctx); /* connections accepted with it keep it as long as they live */
        lctx->accept_ctx.ssl_ctx = newest;
    }
}

/*
 * Reads every TLS listener's certificate and key again. A pair that does
 * not load leaves that listener as it was; connections open now go on with
 * the certificate they were accepted with.
 */
static void reload_tls(server_t *server)
{
    size_t reloaded = 0;
    for (size_t i = 0; i < server->num_listeners; i++) {
        listener_t *l = &server->listeners[i];
        if (l->conf->tls_cert == NULL)
            continue;
        SSL_CTX *fresh = create_ssl_ctx(l->conf); /* logs why it failed */
        if (fresh == NULL)
            continue;
        pthread_mutex_lock(&server->tls_lock);
        SSL_CTX *old = l->ssl_ctx;
        l->ssl_ctx = fresh;
        pthread_mutex_unlock(&server->tls_lock);
        SSL_CTX_free(old);
        log_msg(LOG_LEVEL_INFO, "server", "TLS certificate for %s:%u reloaded from %s", l->conf->address,
                l->conf->port, l->conf->tls_cert);
        reloaded++;
    }
    for (unsigned i = 0; reloaded != 0 && i < server->conf->worker_threads; i++)
        worker_wake(&server->workers[i], &server->workers[i].tls_reload);
}

/* Waits for SIGINT or SIGTERM; SIGHUP meanwhile reloads the token file and the TLS certificates. */
static int wait_for_signal(server_t *server)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            return sig;
        auth_reload(server->auth);
        reload_tls(server);
    }
}

static int run_workers(server_t *server)
{
    const conf_t *conf = server->conf;
    unsigned started = 0, initialised = 0;
    int status = 0;
    for (; started < conf->worker_threads; started++) {
        worker_t *worker = &server->workers[started];
        initialised = started + 1;
        if (worker_init(worker, server, started) != 0 || pthread_create(&worker->thread, NULL, worker_main, worker) != 0) {
            log_msg(LOG_LEVEL_ERROR, "server", "cannot start worker %u: %s", started, strerror(errno));
            status = 1;
            break;
        }
        atomic_store(&server->workers_ready, started + 1);
    }
    if (status == 0) {
        log_msg(LOG_LEVEL_INFO, "server", "larder %s ready: %u worker threads, upstream %s", LARDER_VERSION,
                conf->worker_threads, conf->upstream.base_url);
        int sig = wait_for_signal(server);
        log_msg(LOG_LEVEL_INFO, "server", "received %s, shutting down (grace %u ms)",
                sig == SIGINT ? "SIGINT" : "SIGTERM", conf->shutdown_grace_ms);
    }
    /* Prefetch reads go through the workers: stop them first, so the drain does not wait for them. */
    prefetcher_stop(server->prefetch);
    server->prefetch = NULL;
    for (unsigned i = 0; i < started; i++)
        request_stop(&server->workers[i]);
    for (unsigned i = 0; i < started; i++)
        pthread_join(server->workers[i].thread, NULL);
    /* The store's last chunk outcomes wake workers' queues: drain it while they still exist. */
    cache_close_store(server->cache);
    for (unsigned i = 0; i < initialised; i++)
        worker_dispose(&server->workers[i], server->num_listeners);
    return status;
}

int proxy_run(const conf_t *conf)
{
    server_t server = {.conf = conf, .tls_lock = PTHREAD_MUTEX_INITIALIZER,
                       .buffers = {.limit = conf->max_buffer_memory}};
    atomic_init(&server.connections, 0);
    atomic_init(&server.buffers.used, 0);
    /* Signals are taken by sigwait in this thread only; workers never see them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (fit_descriptor_limit(conf) != 0 || spill_setup(conf) != 0)
        return 1;
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        log_msg(LOG_LEVEL_ERROR, "server", "curl_global_init failed");
        return 1;
    }
    int status = 1;
    char err[512];
    if (auth_open(&server.auth, conf, err, sizeof(err)) != 0) {
        log_msg(LOG_LEVEL_ERROR, "server", "%s", err);
        curl_global_cleanup();
        return 1;
    }
    if (open_listeners(&server) == 0 && cache_open(&server.cache, conf, &server.buffers) == 0 &&
        prefetcher_start(&server.prefetch, conf, server.cache) == 0 &&
        (server.workers = calloc(conf->worker_threads, sizeof(worker_t))) != NULL)
        status = run_workers(&server);
    prefetcher_stop(server.prefetch); /* when the workers did not start */
    free(server.workers);
    cache_close(server.cache);
    auth_close(server.auth);
    close_listeners(&server);
    pthread_mutex_destroy(&server.tls_lock);
    curl_global_cleanup();
    return status;
}
