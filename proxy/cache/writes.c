/*
 * writes.c - writes through larder: forwarded as they are, and turned into
 * invalidations only once upstream confirmed them.
 *
 * Before forwarding, the objects a write names are marked "in flight", so
 * reads of them bypass the cache until upstream answered (the old copy may
 * be about to change, and a fill started now may predate the change). A
 * refused write (a definite 4xx, or a 308 for a resumable upload's unfinished
 * session) changes nothing; a 2xx invalidates, and so does an answer that
 * leaves the outcome unknown (no answer at all, a 5xx), since the write may
 * have happened. /batch/storage/v1 is read part by part: each write part's
 * object is marked, and invalidated when its own part succeeded.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "forward.h"
#include "invalidate.h"
#include "state.h"
#include "writes.h"

#define MAX_WRITE_KEYS 64

typedef struct write_key {
    store_key_t key;
    const char *content_id; /* batch parts: the part's Content-ID, to match its response; NULL otherwise */
    size_t content_id_len;
    bool done;              /* invalidated (or known refused) */
} write_key_t;

typedef struct cache_write {
    cache_t *cache;
    const target_t *target;
    write_key_t keys[MAX_WRITE_KEYS];
    size_t nkeys;
    bool batch;
    bool batch_answered; /* the batch response was read part by part */
} cache_write_t;

static bool took_effect(int status)
{
    return status == 0 || (status >= 200 && status < 300) || status >= 500;
}

static void add_key(cache_write_t *w, const char *bucket, const char *name, const char *content_id, size_t id_len)
{
    if (w->nkeys == MAX_WRITE_KEYS || bucket == NULL || name == NULL || name[0] == '\0')
        return;
    write_key_t *k = &w->keys[w->nkeys++];
    store_key_make(&k->key, bucket, strlen(bucket), name, strlen(name));
    k->content_id = content_id;
    k->content_id_len = id_len;
    cache_write_mark(w->cache, &k->key);
}

/* --- what a write names --- */

/* "/b/BUCKET/o/NAME" inside a JSON object suffix: the destination of copyTo and rewriteTo. */
static void add_destination(cache_write_t *w, h2o_mem_pool_t *pool, h2o_iovec_t suffix, const char *id, size_t id_len)
{
    const char *p = suffix.base, *end = suffix.base + suffix.len;
    const char *b = p != NULL ? memmem(p, suffix.len, "/b/", 3) : NULL;
    if (b == NULL)
        return;
    const char *bucket = b + 3, *slash = memchr(bucket, '/', (size_t)(end - bucket));
    if (slash == NULL || end - slash < 4 || memcmp(slash, "/o/", 3) != 0)
        return;
    const char *name = slash + 3, *name_end = memchr(name, '/', (size_t)(end - name));
    if (name_end == NULL)
        name_end = end;
    char *bucket_s = target_percent_decode(pool, bucket, (size_t)(slash - bucket));
    char *name_s = target_percent_decode(pool, name, (size_t)(name_end - name));
    add_key(w, bucket_s, name_s, id, id_len);
}

static void add_target(cache_write_t *w, h2o_mem_pool_t *pool, const target_t *t, const char *id, size_t id_len)
{
    add_key(w, t->bucket, t->object, id, id_len);
    if (t->route.api == ROUTE_JSON && t->object != NULL)
        add_destination(w, pool, t->object_suffix, id, id_len);
    if (t->route.api == ROUTE_UPLOAD) {
        /* Media and resumable uploads name the object in the query (form-encoded); multipart ones in the body. */
        const h2o_iovec_t *name = target_param(t, "name");
        const char *path = t->path.base, *end = path + t->path.len;
        const char *b = memmem(path, t->path.len, "/b/", 3);
        const char *bucket_end = b != NULL ? memchr(b + 3, '/', (size_t)(end - b - 3)) : NULL;
        if (name == NULL || bucket_end == NULL)
            return;
        char *decoded = target_percent_decode(pool, name->base, name->len);
        for (char *c = decoded; c != NULL && *c != '\0'; c++)
            if (*c == '+')
                *c = ' ';
        add_key(w, target_percent_decode(pool, b + 3, (size_t)(bucket_end - b - 3)), decoded, id, id_len);
    }
}

/* --- multipart bodies --- */

/* The boundary parameter of a multipart Content-Type, unquoted. */
static bool boundary_of(h2o_iovec_t type, h2o_iovec_t *boundary)
{
    if (type.base == NULL)
        return false;
    const char *p = memmem(type.base, type.len, "boundary=", 9), *end = type.base + type.len;
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
    *boundary = h2o_iovec_init(p, (size_t)(stop - p));
    return true;
}

typedef void (*part_fn)(void *ctx, const char *part, size_t len);

/* Calls fn for each part between "--boundary" lines (CRLF or LF framed). */
static void for_each_part(h2o_iovec_t body, h2o_iovec_t boundary, part_fn fn, void *ctx)
{
    const char *p = body.base, *end = body.base + body.len;
    char delim[80];
    if (boundary.len == 0 || boundary.len > 70)
        return;
    size_t delim_len = (size_t)snprintf(delim, sizeof(delim), "--%.*s", (int)boundary.len, boundary.base);
    const char *start = memmem(p, body.len, delim, delim_len);
    while (start != NULL) {
        const char *part = memchr(start, '\n', (size_t)(end - start));
        if (part == NULL)
            return;
        part++;
        const char *next = memmem(part, (size_t)(end - part), delim, delim_len);
        if (next == NULL)
            return;
        fn(ctx, part, (size_t)(next - part));
        start = next;
    }
}

/* The value of a header in a head (lines up to a blank one); false when absent. */
static bool head_value(const char *head, size_t len, const char *name, h2o_iovec_t *value)
{
    size_t name_len = strlen(name);
    for (const char *line = head, *end = head + len; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t n = (size_t)((eol != NULL ? eol : end) - line);
        if (n > name_len && line[name_len] == ':' && strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1, *v_end = line + n;
            while (v < v_end && *v == ' ')
                v++;
            while (v_end > v && (v_end[-1] == '\r' || v_end[-1] == ' '))
                v_end--;
            *value = h2o_iovec_init(v, (size_t)(v_end - v));
            return true;
        }
        if (eol == NULL)
            break;
        line = eol + 1;
    }
    return false;
}

/* Where the head of a part ends and its body starts (after a blank line). */
static const char *body_start(const char *part, size_t len)
{
    const char *crlf = memmem(part, len, "\r\n\r\n", 4), *lf = memmem(part, len, "\n\n", 2);
    if (crlf != NULL && (lf == NULL || crlf < lf))
        return crlf + 4;
    return lf != NULL ? lf + 2 : NULL;
}

typedef struct batch_scan {
    cache_write_t *write;
    h2o_mem_pool_t *pool;
    size_t index; /* responses: the part's position, when it carries no Content-ID */
} batch_scan_t;

/* "<id>" or "id" without the angle brackets. */
static h2o_iovec_t bare_id(h2o_iovec_t id)
{
    if (id.len >= 2 && id.base[0] == '<' && id.base[id.len - 1] == '>')
        return h2o_iovec_init(id.base + 1, id.len - 2);
    return id;
}

/* One part of a batch request: "METHOD /storage/v1/... HTTP/1.1" and its headers. */
static void scan_request_part(void *ctx, const char *part, size_t len)
{
    batch_scan_t *scan = ctx;
    const char *inner = body_start(part, len);
    h2o_iovec_t id = {NULL, 0};
    head_value(part, inner != NULL ? (size_t)(inner - part) : len, "content-id", &id);
    id = bare_id(id);
    if (inner == NULL)
        return;
    const char *end = part + len, *sp = memchr(inner, ' ', (size_t)(end - inner));
    if (sp == NULL || h2o_memis(inner, (size_t)(sp - inner), H2O_STRLIT("GET")))
        return;
    const char *path = sp + 1, *path_end = memchr(path, ' ', (size_t)(end - path));
    if (path_end == NULL)
        return;
    const char *origin_end = memmem(path, (size_t)(path_end - path), "://", 3); /* a full URL: keep its path */
    if (origin_end != NULL && (path = memchr(origin_end + 3, '/', (size_t)(path_end - origin_end - 3))) == NULL)
        return;
    target_t t;
    target_parse(&t, scan->pool, path, (size_t)(path_end - path), NULL, 0, NULL);
    if (t.invalid == NULL)
        add_target(scan->write, scan->pool, &t, id.base, id.len);
}

/* One part of a batch response: invalidate its request's object if its status says the write happened. */
static void scan_response_part(void *ctx, const char *part, size_t len)
{
    batch_scan_t *scan = ctx;
    cache_write_t *w = scan->write;
    const char *inner = body_start(part, len);
    size_t index = scan->index++;
    if (inner == NULL || part + len - inner < 12 || memcmp(inner, "HTTP/", 5) != 0)
        return;
    const char *line_end = memchr(inner, '\n', (size_t)(part + len - inner));
    int status = target_parse_status_line(inner, (size_t)((line_end != NULL ? line_end : part + len) - inner));
    h2o_iovec_t id = {NULL, 0};
    bool has_id = head_value(part, (size_t)(inner - part), "content-id", &id);
    id = bare_id(id);
    if (has_id && id.len > 9 && strncasecmp(id.base, "response-", 9) == 0)
        id = h2o_iovec_init(id.base + 9, id.len - 9);
    for (size_t i = 0; i < w->nkeys; i++) {
        write_key_t *k = &w->keys[i];
        bool match = has_id ? k->content_id != NULL && h2o_memis(k->content_id, k->content_id_len, id.base, id.len)
                            : i == index;
        if (!match || k->done)
            continue;
        k->done = true;
        if (took_effect(status))
            cache_invalidate(w->cache, &k->key);
    }
}

static h2o_iovec_t request_header(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    return i != -1 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

/* A multipart upload's metadata part: {"name": ...}. */
static void scan_upload_metadata(void *ctx, const char *part, size_t len)
{
    batch_scan_t *scan = ctx;
    const char *body = body_start(part, len);
    if (body == NULL || scan->index++ != 0)
        return;
    json_t *meta = json_loadb(body, (size_t)(part + len - body), JSON_DISABLE_EOF_CHECK, NULL);
    const char *name = json_string_value(json_object_get(meta, "name"));
    if (name != NULL)
        add_key(scan->write, scan->write->target->bucket, h2o_strdup(scan->pool, name, SIZE_MAX).base, NULL, 0);
    json_decref(meta);
}

/* --- the answer --- */

static void on_json(void *ctx, h2o_req_t *req, int status, const h2o_headers_t *headers, const char *body, size_t len)
{
    cache_write_t *w = ctx;
    (void)headers;
    if (w->batch) {
        h2o_iovec_t boundary, type = {NULL, 0};
        ssize_t i = h2o_find_header(headers, H2O_TOKEN_CONTENT_TYPE, -1);
        if (i != -1)
            type = headers->entries[i].value;
        if (status == 200 && boundary_of(type, &boundary)) {
            batch_scan_t scan = {w, &req->pool, 0};
            for_each_part(h2o_iovec_init(body, len), boundary, scan_response_part, &scan);
            w->batch_answered = true;
        }
        return;
    }
    if (status < 200 || status >= 300)
        return;
    /* An upload, copy or rewrite names its result in the resource it returns (a rewrite wraps it). */
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *resource = json_object_get(root, "resource");
    if (resource == NULL)
        resource = root;
    const char *kind = json_string_value(json_object_get(resource, "kind"));
    const char *bucket = json_string_value(json_object_get(resource, "bucket"));
    const char *name = json_string_value(json_object_get(resource, "name"));
    if (kind != NULL && strcmp(kind, "storage#object") == 0 && bucket != NULL && name != NULL) {
        store_key_t key;
        store_key_make(&key, bucket, strlen(bucket), name, strlen(name));
        cache_invalidate(w->cache, &key);
    }
    json_decref(root);
}

static const char *on_end(void *ctx, h2o_req_t *req, int status, bool complete)
{
    cache_write_t *w = ctx;
    (void)req, (void)complete;
    for (size_t i = 0; i < w->nkeys; i++) {
        write_key_t *k = &w->keys[i];
        /* A batch whose answer was not read part by part: any part may have happened. */
        bool invalidate = w->batch ? !w->batch_answered && !k->done : took_effect(status);
        if (invalidate)
            cache_invalidate(w->cache, &k->key);
        cache_write_unmark(w->cache, &k->key);
    }
    w->nkeys = 0;
    return NULL; /* upstream decides writes: no access decision of larder's */
}

static const forward_hooks_t write_hooks = {.on_json = on_json, .on_end = on_end};

void cache_write_start(h2o_req_t *req, const target_t *target)
{
    cache_write_t *w = h2o_mem_alloc_pool(&req->pool, sizeof(*w));
    memset(w, 0, sizeof(*w));
    w->cache = worker_of(req)->cache;
    w->target = target;
    w->batch = target->route.api == ROUTE_BATCH;
    batch_scan_t scan = {w, &req->pool, 0};
    h2o_iovec_t boundary;
    if (w->batch) {
        if (req->entity.base != NULL && boundary_of(request_header(req, H2O_TOKEN_CONTENT_TYPE), &boundary))
            for_each_part(req->entity, boundary, scan_request_part, &scan);
    } else {
        add_target(w, &req->pool, target, NULL, 0);
        if (target->route.api == ROUTE_UPLOAD && req->entity.base != NULL &&
            boundary_of(request_header(req, H2O_TOKEN_CONTENT_TYPE), &boundary))
            for_each_part(req->entity, boundary, scan_upload_metadata, &scan);
    }
    forward_start(req, target, &(forward_options_t){.cache_state = "PASS", .hooks = &write_hooks, .ctx = w});
}
