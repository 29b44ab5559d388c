/*
 * upstream.c - drives a libcurl multi handle from an h2o event loop.
 *
 * Why an epoll fd of our own: h2o closes the descriptors it wraps, and curl
 * closes its sockets when it is done with them. Wrapping curl's sockets in
 * h2o sockets would give each fd two owners. Instead curl's sockets go into a
 * private epoll set, and h2o watches only that set's fd and a timerfd.
 */
#include "upstream.h"
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct upstream_pool {
    h2o_loop_t *loop;
    const conf_t *conf;
    CURLM *multi;
    CURLSH *share;
    int epoll_fd;
    int timer_fd;
    h2o_socket_t *epoll_sock;
    h2o_socket_t *timer_sock;
    h2o_linklist_t ready; /* transfers waiting for on_ready */
    bool dispatching;
};

static void dispatch_ready(upstream_pool_t *pool);

static void collect_finished(upstream_pool_t *pool)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(pool->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        upstream_transfer_t *transfer = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&transfer);
        CURLcode result = msg->data.result;
        curl_multi_remove_handle(pool->multi, msg->easy_handle);
        transfer->running = false;
        transfer->finished = true;
        transfer->result = result;
        upstream_transfer_mark_ready(pool, transfer);
    }
}

static void drive(upstream_pool_t *pool, curl_socket_t fd, int events)
{
    int running;
    curl_multi_socket_action(pool->multi, fd, events, &running);
    collect_finished(pool);
    dispatch_ready(pool);
}

static void on_epoll_readable(h2o_socket_t *sock, const char *err)
{
    upstream_pool_t *pool = sock->data;
    (void)err;
    struct epoll_event events[64];
    int n;
    /* Level-triggered in both h2o and our set: one batch per wake-up is enough. */
    do {
        n = epoll_wait(pool->epoll_fd, events, 64, 0);
        for (int i = 0; i < n; i++) {
            int flags = 0;
            if (events[i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (events[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (events[i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            drive(pool, (curl_socket_t)events[i].data.fd, flags);
        }
    } while (n == 64);
}

static void on_timer_readable(h2o_socket_t *sock, const char *err)
{
    upstream_pool_t *pool = sock->data;
    (void)err;
    worker_drain_fd(pool->timer_fd, "upstream");
    drive(pool, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    upstream_pool_t *pool = userp;
    (void)easy;
    struct epoll_event ev = {.data.fd = fd};
    if (what == CURL_POLL_REMOVE) {
        /* curl may already have closed fd, in which case the kernel dropped it. */
        epoll_ctl(pool->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(pool->multi, fd, NULL);
        return 0;
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev.events |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev.events |= EPOLLOUT;
    int op = socketp != NULL ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(pool->epoll_fd, op, fd, &ev) != 0 && op == EPOLL_CTL_ADD && errno == EEXIST)
        epoll_ctl(pool->epoll_fd, EPOLL_CTL_MOD, fd, &ev);
    if (socketp == NULL)
        curl_multi_assign(pool->multi, fd, pool); /* any non-NULL marks "registered" */
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    upstream_pool_t *pool = userp;
    (void)multi;
    struct itimerspec spec = {0};
    if (timeout_ms == 0)
        spec.it_value.tv_nsec = 1; /* "call me now", but from the loop, not from inside curl */
    else if (timeout_ms > 0) {
        spec.it_value.tv_sec = timeout_ms / 1000;
        spec.it_value.tv_nsec = (timeout_ms % 1000) * 1000000;
    }
    return timerfd_settime(pool->timer_fd, 0, &spec, NULL) == 0 ? 0 : -1;
}

static void dispatch_ready(upstream_pool_t *pool)
{
    if (pool->dispatching)
        return;
    pool->dispatching = true;
    while (!h2o_linklist_is_empty(&pool->ready)) {
        upstream_transfer_t *transfer = H2O_STRUCT_FROM_MEMBER(upstream_transfer_t, ready_link, pool->ready.next);
        h2o_linklist_unlink(&transfer->ready_link);
        transfer->ready_queued = false;
        transfer->on_ready(transfer);
    }
    pool->dispatching = false;
}

void upstream_transfer_mark_ready(upstream_pool_t *pool, upstream_transfer_t *transfer)
{
    if (transfer->ready_queued)
        return;
    transfer->ready_queued = true;
    h2o_linklist_insert(&pool->ready, &transfer->ready_link);
}

static int open_loop_fds(upstream_pool_t *pool)
{
    if ((pool->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return -1;
    if ((pool->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
        return -1;
    pool->epoll_sock = h2o_evloop_socket_create(pool->loop, pool->epoll_fd, H2O_SOCKET_FLAG_DONT_READ);
    pool->timer_sock = h2o_evloop_socket_create(pool->loop, pool->timer_fd, H2O_SOCKET_FLAG_DONT_READ);
    pool->epoll_sock->data = pool;
    pool->timer_sock->data = pool;
    h2o_socket_read_start(pool->epoll_sock, on_epoll_readable);
    h2o_socket_read_start(pool->timer_sock, on_timer_readable);
    return 0;
}

upstream_pool_t *upstream_pool_create(h2o_loop_t *loop, const conf_t *conf)
{
    upstream_pool_t *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->loop = loop;
    pool->conf = conf;
    pool->epoll_fd = pool->timer_fd = -1;
    h2o_linklist_init_anchor(&pool->ready);
    if ((pool->multi = curl_multi_init()) == NULL || (pool->share = curl_share_init()) == NULL)
        goto fail;
    /* Each pool is used by one thread only, so the share needs no locks. */
    curl_share_setopt(pool->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(pool->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(pool->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(pool->multi, CURLMOPT_SOCKETDATA, pool);
    curl_multi_setopt(pool->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(pool->multi, CURLMOPT_TIMERDATA, pool);
    curl_multi_setopt(pool->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conf->upstream.max_connections);
    curl_multi_setopt(pool->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conf->upstream.max_connections_per_host);
    curl_multi_setopt(pool->multi, CURLMOPT_MAXCONNECTS, (long)conf->upstream.max_connections);
    if (open_loop_fds(pool) != 0)
        goto fail;
    return pool;
fail:
    upstream_pool_destroy(pool);
    return NULL;
}

void upstream_pool_destroy(upstream_pool_t *pool)
{
    if (pool == NULL)
        return;
    /* Transfers are owned by requests, which are gone by now. */
    if (pool->multi != NULL)
        curl_multi_cleanup(pool->multi);
    if (pool->share != NULL)
        curl_share_cleanup(pool->share);
    if (pool->epoll_sock != NULL)
        h2o_socket_close(pool->epoll_sock);
    else if (pool->epoll_fd >= 0)
        close(pool->epoll_fd);
    if (pool->timer_sock != NULL)
        h2o_socket_close(pool->timer_sock);
    else if (pool->timer_fd >= 0)
        close(pool->timer_fd);
    free(pool);
}

CURL *upstream_easy_new(upstream_pool_t *pool, upstream_transfer_t *transfer)
{
    const conf_t *conf = pool->conf;
    CURL *easy = curl_easy_init();
    if (easy == NULL)
        return NULL;
    transfer->easy = easy;
    transfer->result = CURLE_OK;
    transfer->finished = false;
    transfer->running = false;
    transfer->ready_queued = false;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, transfer);
    curl_easy_setopt(easy, CURLOPT_SHARE, pool->share);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    /* Object names may contain "/../" or "//": send the path exactly as given. */
    curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)conf->upstream.connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 128L * 1024);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    if (conf->upstream.ca_file != NULL)
        curl_easy_setopt(easy, CURLOPT_CAINFO, conf->upstream.ca_file);
    return easy;
}

int upstream_transfer_start(upstream_pool_t *pool, upstream_transfer_t *transfer)
{
    if (curl_multi_add_handle(pool->multi, transfer->easy) != CURLM_OK)
        return -1;
    transfer->running = true;
    return 0;
}

void upstream_transfer_release(upstream_pool_t *pool, upstream_transfer_t *transfer)
{
    if (transfer->ready_queued) {
        h2o_linklist_unlink(&transfer->ready_link);
        transfer->ready_queued = false;
    }
    if (transfer->easy == NULL)
        return;
    if (transfer->running)
        curl_multi_remove_handle(pool->multi, transfer->easy);
    curl_easy_cleanup(transfer->easy);
    transfer->easy = NULL;
    transfer->running = false;
}

void upstream_transfer_resume(upstream_pool_t *pool, upstream_transfer_t *transfer)
{
    if (transfer->easy == NULL || !transfer->running)
        return;
    /* May deliver held-back data through the write callback right here. */
    curl_easy_pause(transfer->easy, CURLPAUSE_CONT);
    dispatch_ready(pool);
}
