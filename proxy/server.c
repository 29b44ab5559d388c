/*
 * server.c - listeners, TLS, worker threads and an orderly shutdown.
 *
 * Each listener gets its own h2o globalconf because h2o decides h2c per
 * globalconf (http1.upgrade_to_http2) and larder lets each listener switch
 * HTTP/2 on or off: h2o 2.2.5 lacks the HTTP/2 Rapid Reset fix, so a listener
 * facing untrusted clients may want HTTP/1.1 only. Each worker thread runs one
 * evloop with a context per listener and its own dup() of every listening fd.
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
#include <sys/socket.h>
#include <unistd.h>

#include "gcs_error.h"
#include "handler.h"
#include "proxy.h"
#include "worker.h"

typedef struct listener {
    const conf_listener_t *conf;
    int fd;
    SSL_CTX *ssl_ctx;
    h2o_globalconf_t globalconf;
    bool globalconf_ready;
} listener_t;

struct server {
    const conf_t *conf;
    listener_t *listeners;
    size_t num_listeners;
    worker_t *workers;
    cache_t *cache; /* shared by every worker; NULL when caching is off */
    atomic_uint connections;
};

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
    gc->http1.upgrade_to_http2 = l->conf->http2;
    /* h2o arms req_timeout once for the whole request, body included. */
    gc->http1.req_timeout = conf->client_timeout_ms;
    gc->http2.idle_timeout = conf->client_timeout_ms;
    gc->server_name = h2o_iovec_init(H2O_STRLIT("")); /* the upstream's Server header passes through */

    h2o_hostconf_t *host = h2o_config_register_host(gc, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = handler_on_req;
    /* h2o binds requests it rejects itself (413, 400) to the fallback path. */
    gcs_error_register_filter(&host->fallback_path, conf->virtual_host_suffix);
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
                l->conf->address, l->conf->port, l->conf->http2 ? "HTTP/1.1 and HTTP/2" : "HTTP/1.1 only");
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

static void on_connection_close(void *data)
{
    server_t *server = data;
    atomic_fetch_sub(&server->connections, 1);
}

static void on_accept(h2o_socket_t *listen_sock, const char *err)
{
    listener_context_t *lctx = listen_sock->data;
    server_t *server = lctx->worker->server;
    if (err != NULL)
        return;
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listen_sock);
        if (sock == NULL)
            return;
        if (atomic_fetch_add(&server->connections, 1) >= server->conf->max_client_connections) {
            /* Over the limit: refuse now rather than leave the client hanging. */
            atomic_fetch_sub(&server->connections, 1);
            log_msg(LOG_LEVEL_WARN, "server", "connection refused: %u connections open (max_client_connections)",
                    server->conf->max_client_connections);
            h2o_socket_close(sock);
            continue;
        }
        sock->on_close.cb = on_connection_close;
        sock->on_close.data = server;
        h2o_accept(&lctx->accept_ctx, sock);
    }
}

/* --- workers --- */

static void on_stop_requested(h2o_socket_t *sock, const char *err)
{
    worker_t *worker = sock->data;
    uint64_t value;
    (void)err;
    if (read(worker->stop_fd, &value, sizeof(value)) < 0 && errno != EAGAIN)
        log_msg(LOG_LEVEL_WARN, "server", "stop eventfd read: %s", strerror(errno));
    worker->stopping = true;
}

static int worker_init(worker_t *worker, server_t *server, unsigned id)
{
    const conf_t *conf = server->conf;
    worker->id = id;
    worker->server = server;
    worker->conf = conf;
    worker->loop = h2o_evloop_create();
    h2o_timeout_init(worker->loop, &worker->client_watchdog, conf->client_timeout_ms);
    h2o_timeout_init(worker->loop, &worker->upstream_response, conf->upstream.response_timeout_ms);
    h2o_timeout_init(worker->loop, &worker->upstream_idle, conf->upstream.idle_timeout_ms);
    /* A follower re-checks for the next committed chunk this often. */
    h2o_timeout_init(worker->loop, &worker->fill_poll, 5);
    worker->cache = server->cache;
    if ((worker->upstream = upstream_pool_create(worker->loop, conf)) == NULL)
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
        h2o_context_init(&lctx->h2o, worker->loop, &l->globalconf);
        lctx->accept_ctx.ctx = &lctx->h2o;
        lctx->accept_ctx.hosts = l->globalconf.hosts;
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

static void *worker_main(void *arg)
{
    worker_t *worker = arg;
    while (!worker->stopping)
        h2o_evloop_run(worker->loop, INT32_MAX);
    /* Stop accepting, then give in-flight requests a moment to finish. */
    for (size_t i = 0; i < worker->server->num_listeners; i++) {
        h2o_socket_close(worker->contexts[i].listen_sock);
        worker->contexts[i].listen_sock = NULL;
    }
    for (int i = 0; i < 5; i++)
        h2o_evloop_run(worker->loop, 10);
    return NULL;
}

static void worker_dispose(worker_t *worker, size_t num_listeners)
{
    if (worker->contexts != NULL) {
        for (size_t i = 0; i < num_listeners; i++) {
            if (worker->contexts[i].worker == NULL)
                continue;
            if (worker->contexts[i].listen_sock != NULL)
                h2o_socket_close(worker->contexts[i].listen_sock);
            h2o_context_dispose(&worker->contexts[i].h2o);
        }
        free(worker->contexts);
    }
    upstream_pool_destroy(worker->upstream);
    if (worker->stop_sock != NULL)
        h2o_socket_close(worker->stop_sock);
    if (worker->loop != NULL) {
        h2o_timeout_dispose(worker->loop, &worker->client_watchdog);
        h2o_timeout_dispose(worker->loop, &worker->upstream_response);
        h2o_timeout_dispose(worker->loop, &worker->upstream_idle);
        h2o_timeout_dispose(worker->loop, &worker->fill_poll);
        /* Let the closes above run before the loop goes. */
        h2o_evloop_run(worker->loop, 0);
        h2o_evloop_destroy(worker->loop);
    }
    record_cache_clear(&worker->records); /* after the loop: the last hits hold references until it ends */
}

static void request_stop(worker_t *worker)
{
    uint64_t one = 1;
    if (write(worker->stop_fd, &one, sizeof(one)) < 0)
        log_msg(LOG_LEVEL_WARN, "server", "stop eventfd write: %s", strerror(errno));
}

static int wait_for_signal(void)
{
    sigset_t set;
    int sig = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigwait(&set, &sig);
    return sig;
}

static int run_workers(server_t *server)
{
    const conf_t *conf = server->conf;
    unsigned started = 0;
    int status = 0;
    for (; started < conf->worker_threads; started++) {
        worker_t *worker = &server->workers[started];
        if (worker_init(worker, server, started) != 0 || pthread_create(&worker->thread, NULL, worker_main, worker) != 0) {
            log_msg(LOG_LEVEL_ERROR, "server", "cannot start worker %u: %s", started, strerror(errno));
            worker_dispose(worker, server->num_listeners);
            status = 1;
            break;
        }
    }
    if (status == 0) {
        log_msg(LOG_LEVEL_INFO, "server", "larder %s ready: %u worker threads, upstream %s", LARDER_VERSION,
                conf->worker_threads, conf->upstream.base_url);
        int sig = wait_for_signal();
        log_msg(LOG_LEVEL_INFO, "server", "received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    for (unsigned i = 0; i < started; i++)
        request_stop(&server->workers[i]);
    for (unsigned i = 0; i < started; i++) {
        pthread_join(server->workers[i].thread, NULL);
        worker_dispose(&server->workers[i], server->num_listeners);
    }
    return status;
}

int proxy_run(const conf_t *conf)
{
    server_t server = {.conf = conf};
    atomic_init(&server.connections, 0);
    /* Signals are taken by sigwait in this thread only; workers never see them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        log_msg(LOG_LEVEL_ERROR, "server", "curl_global_init failed");
        return 1;
    }
    int status = 1;
    if (open_listeners(&server) == 0 && cache_open(&server.cache, conf) == 0 &&
        (server.workers = calloc(conf->worker_threads, sizeof(worker_t))) != NULL)
        status = run_workers(&server);
    free(server.workers);
    cache_close(server.cache);
    close_listeners(&server);
    curl_global_cleanup();
    return status;
}
