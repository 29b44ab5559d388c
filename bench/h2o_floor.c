/*
 * h2o_floor.c - the least a server built on h2o 2.2.5 can spend on a hit, as
 * a peer for bench/hits.py ("h2o-floor").
 *
 * It answers every GET with bytes it read into memory at start-up, sent
 * from there (one copy, into the socket), under the headers a larder hit
 * carries, and does nothing else: no token, no store, no
 * access decision, no log. Whatever larder spends per hit above this is its
 * own work; what this spends is h2o's and the kernel's, which no cache built
 * on this h2o can avoid. It is a measuring stick, not a server: it trusts its
 * arguments and its directory.
 *
 *   bench_h2o_floor PORT WORKERS DIR
 *
 * serves DIR/NAME at /BUCKET/NAME for each regular file in DIR (BUCKET is
 * DIR's last component), one event loop per worker thread, each with its own
 * SO_REUSEPORT listener on 127.0.0.1:PORT, as larder's workers have.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <h2o.h>

typedef struct floor_object {
    char *path; /* "/BUCKET/NAME" */
    char *bytes;
    size_t len;
} floor_object_t;

typedef struct floor_config {
    h2o_globalconf_t h2o;
    floor_object_t *objects;
    size_t nobjects;
    int port;
} floor_config_t;

typedef struct floor_handler {
    h2o_handler_t super;
    const floor_config_t *config;
} floor_handler_t;

typedef struct floor_worker {
    floor_config_t *config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
} floor_worker_t;

static void add_header(h2o_req_t *req, const char *name, const char *value)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, value, strlen(value));
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    const floor_config_t *config = ((floor_handler_t *)self)->config;
    for (size_t i = 0; i < config->nobjects; i++) {
        const floor_object_t *o = &config->objects[i];
        if (!h2o_memis(req->path_normalized.base, req->path_normalized.len, o->path, strlen(o->path)))
            continue;
        req->res.status = 200;
        req->res.reason = "OK";
        req->res.content_length = o->len;
        /* The head of a larder hit on the emulator's objects, value for value in length. */
        add_header(req, "server", "UploadServer");
        add_header(req, "content-type", "application/octet-stream");
        add_header(req, "etag", "\"b222180637c4ea138e9907512db89e55\"");
        add_header(req, "last-modified", "Fri, 27 Nov 2026 21:14:05 GMT");
        add_header(req, "x-goog-generation", "1795814045164028");
        add_header(req, "x-goog-metageneration", "1");
        add_header(req, "x-goog-stored-content-encoding", "identity");
        char *length = h2o_mem_alloc_pool(&req->pool, 24);
        snprintf(length, 24, "%zu", o->len);
        add_header(req, "x-goog-stored-content-length", length);
        add_header(req, "x-goog-hash", "crc32c=ctuL+g==,md5=siIYBjfE6hOOmQdRLbieVQ==");
        add_header(req, "x-goog-storage-class", "STANDARD");
        add_header(req, "accept-ranges", "bytes");
        add_header(req, "cache-control", "private, max-age=0");
        add_header(req, "x-cache", "HIT");
        /*
         * The bytes as they are, without h2o_send_inline's copy into the
         * pool: one copy, into the socket, as larder's direct sends make, so
         * that this is the floor for big objects too. A final send needs no
         * proceed, and the bytes outlive every request.
         */
        static h2o_generator_t generator = {NULL, NULL};
        h2o_iovec_t body = h2o_iovec_init(o->bytes, o->len);
        h2o_start_response(req, &generator);
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
        return 0;
    }
    h2o_send_error_404(req, "Not Found", "no such object", 0);
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    floor_worker_t *worker = listener->data;
    h2o_socket_t *sock;
    while ((sock = h2o_evloop_socket_accept(listener)) != NULL)
        h2o_accept(&worker->accept_ctx, sock);
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, SOMAXCONN) != 0) {
        perror("h2o_floor: listen");
        exit(1);
    }
    return fd;
}

static void *worker_main(void *arg)
{
    floor_worker_t *worker = arg;
    h2o_evloop_t *loop = h2o_evloop_create();
    h2o_context_init(&worker->ctx, loop, &worker->config->h2o);
    worker->accept_ctx.ctx = &worker->ctx;
    worker->accept_ctx.hosts = worker->config->h2o.hosts;
    h2o_socket_t *listener = h2o_evloop_socket_create(loop, listen_on(worker->config->port), H2O_SOCKET_FLAG_DONT_READ);
    listener->data = worker;
    h2o_socket_read_start(listener, on_accept);
    for (;;)
        h2o_evloop_run(loop, INT32_MAX);
    return NULL;
}

static char *read_whole(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(path);
        exit(1);
    }
    char *bytes = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (bytes != NULL && got < (size_t)st.st_size) {
        ssize_t n = read(fd, bytes + got, (size_t)st.st_size - got);
        if (n <= 0) {
            perror(path);
            exit(1);
        }
        got += (size_t)n;
    }
    if (bytes == NULL) {
        fprintf(stderr, "h2o_floor: out of memory\n");
        exit(1);
    }
    close(fd);
    *len = got;
    return bytes;
}

static void load_objects(floor_config_t *config, const char *dir)
{
    const char *bucket = strrchr(dir, '/') != NULL ? strrchr(dir, '/') + 1 : dir;
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        exit(1);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        floor_object_t *grown = realloc(config->objects, (config->nobjects + 1) * sizeof(*grown));
        if (grown == NULL) {
            fprintf(stderr, "h2o_floor: out of memory\n");
            exit(1);
        }
        config->objects = grown;
        floor_object_t *o = &config->objects[config->nobjects++];
        char *file;
        if (asprintf(&o->path, "/%s/%s", bucket, e->d_name) < 0 || asprintf(&file, "%s/%s", dir, e->d_name) < 0) {
            fprintf(stderr, "h2o_floor: out of memory\n");
            exit(1);
        }
        o->bytes = read_whole(file, &o->len);
        free(file);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT WORKERS DIR\n", argv[0]);
        return 2;
    }
    /* A client that leaves mid-body (wrk at the end of a run) must not kill the server with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    static floor_config_t config;
    config.port = atoi(argv[1]);
    int workers = atoi(argv[2]);
    load_objects(&config, argv[3]);
    h2o_config_init(&config.h2o);
    config.h2o.server_name = h2o_iovec_init(H2O_STRLIT("")); /* as larder: the Server header is the upstream's */
    h2o_hostconf_t *host = h2o_config_register_host(&config.h2o, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    floor_handler_t *handler = (floor_handler_t *)h2o_create_handler(path, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->config = &config;
    floor_worker_t *all = calloc((size_t)(workers > 0 ? workers : 1), sizeof(*all));
    if (all == NULL)
        return 1;
    for (int i = 1; i < workers; i++) {
        pthread_t thread;
        all[i].config = &config;
        if (pthread_create(&thread, NULL, worker_main, &all[i]) != 0) {
            fprintf(stderr, "h2o_floor: no thread\n");
            return 1;
        }
    }
    all[0].config = &config;
    worker_main(&all[0]);
    return 0;
}
