/*
 * upload_request.c - what a write request is, parsed once when it arrives:
 * which kind of write, the object it makes, and where that object's bytes
 * and metadata are in the request (a multipart upload's parts point into
 * the body h2o received).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache_request.h"
#include "multipart.h"
#include "upload_request.h"

const char *upload_request_param(const upload_request_t *u, const char *name)
{
    const h2o_iovec_t *v = target_param(u->target, name);
    if (v == NULL)
        return NULL;
    char *decoded = target_percent_decode(&u->req->pool, v->base, v->len);
    for (char *c = decoded; c != NULL && *c != '\0'; c++)
        if (*c == '+')
            *c = ' '; /* query values are form-encoded */
    return decoded;
}

const char *upload_request_header(const upload_request_t *u, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&u->req->headers, name, strlen(name), -1);
    if (i == -1)
        return NULL;
    const h2o_iovec_t *v = &u->req->headers.entries[i].value;
    return h2o_strdup(&u->req->pool, v->base, v->len).base;
}

static void dispose_json(void *p)
{
    json_decref(*(json_t **)p);
}

/* Parses JSON that lives as long as the request. */
static json_t *pool_json(h2o_mem_pool_t *pool, const char *text, size_t len)
{
    json_t *value = text != NULL ? json_loadb(text, len, 0, NULL) : NULL;
    if (value != NULL)
        *(json_t **)h2o_mem_alloc_shared(pool, sizeof(json_t *), dispose_json) = value;
    return value;
}

/* "/upload/storage/v1/b/BUCKET/o": the bucket, decoded. */
static const char *upload_bucket(const upload_request_t *u)
{
    const char *path = u->target->path.base, *end = path + u->target->path.len;
    const char *b = memmem(path, u->target->path.len, "/b/", 3);
    const char *stop = b != NULL ? memchr(b + 3, '/', (size_t)(end - b - 3)) : NULL;
    return stop != NULL ? target_percent_decode(&u->req->pool, b + 3, (size_t)(stop - b - 3)) : NULL;
}

typedef struct multipart_upload_parts {
    upload_request_t *u;
    size_t index;
} multipart_upload_parts_t;

/* A multipart upload: its metadata (JSON) part, then its media part. */
static void on_upload_part(void *ctx, const multipart_part_t *part)
{
    multipart_upload_parts_t *parts = ctx;
    upload_request_t *u = parts->u;
    h2o_iovec_t type;
    if (parts->index == 0) {
        u->metadata = pool_json(&u->req->pool, part->body.base, part->body.len);
    } else if (parts->index == 1 && part->has_body) {
        u->media = part->body;
        if (multipart_header(part->head, "content-type", &type))
            u->media_type = h2o_strdup(&u->req->pool, type.base, type.len).base;
    }
    parts->index++;
}

static void parse_json_upload(upload_request_t *u)
{
    u->bucket = upload_bucket(u);
    u->name = upload_request_param(u, "name");
    if ((u->session = upload_request_param(u, "upload_id")) != NULL) {
        bool cancel = h2o_memis(u->req->method.base, u->req->method.len, H2O_STRLIT("DELETE"));
        u->kind = cancel ? UPLOAD_RESUMABLE_CANCEL : UPLOAD_RESUMABLE_CHUNK;
        return;
    }
    const char *type = upload_request_param(u, "uploadType"), *content_type = upload_request_header(u, "content-type");
    h2o_iovec_t boundary;
    if (type != NULL && strcmp(type, "resumable") == 0) {
        u->kind = UPLOAD_RESUMABLE_START;
        u->metadata = pool_json(&u->req->pool, u->req->entity.base, u->req->entity.len);
        u->media_type = upload_request_header(u, "x-upload-content-type");
    } else if ((type != NULL && strcmp(type, "multipart") == 0) ||
               (type == NULL && content_type != NULL && strncasecmp(content_type, "multipart/", 10) == 0)) {
        u->kind = UPLOAD_JSON;
        if (content_type != NULL && multipart_boundary(h2o_iovec_init(content_type, strlen(content_type)), &boundary))
            multipart_for_each(u->req->entity, boundary, on_upload_part, &(multipart_upload_parts_t){u, 0});
        if (u->media.base == NULL)
            u->cacheable = false; /* not the two parts an upload has: upstream will say what it is */
    } else {
        u->kind = UPLOAD_JSON;
        u->media = u->req->entity;
        u->media_type = content_type;
    }
    if (u->name == NULL && u->metadata != NULL)
        u->name = json_string_value(json_object_get(u->metadata, "name"));
}

/* "/copyTo/b/B/o/N", "/rewriteTo/b/B/o/N": the destination, decoded; false when the suffix is not one. */
bool upload_destination_of(upload_request_t *u, h2o_iovec_t suffix)
{
    const char *p = suffix.base, *end = p + suffix.len;
    const char *b = p != NULL ? memmem(p, suffix.len, "/b/", 3) : NULL;
    const char *slash = b != NULL ? memchr(b + 3, '/', (size_t)(end - b - 3)) : NULL;
    if (slash == NULL || end - slash < 4 || memcmp(slash, "/o/", 3) != 0)
        return false;
    const char *name = slash + 3, *name_end = memchr(name, '/', (size_t)(end - name));
    u->bucket = target_percent_decode(&u->req->pool, b + 3, (size_t)(slash - b - 3));
    u->name = target_percent_decode(&u->req->pool, name, (size_t)((name_end != NULL ? name_end : end) - name));
    return true;
}

static void parse_json_object_write(upload_request_t *u)
{
    h2o_iovec_t suffix = u->target->object_suffix;
    bool post = h2o_memis(u->req->method.base, u->req->method.len, H2O_STRLIT("POST"));
    if (!post || u->target->object == NULL)
        return;
    if (suffix.len > 8 && (memcmp(suffix.base, "/copyTo/", 8) == 0 ||
                           (suffix.len > 11 && memcmp(suffix.base, "/rewriteTo/", 11) == 0))) {
        if (upload_destination_of(u, suffix))
            u->kind = UPLOAD_COPY;
    } else if (h2o_memis(suffix.base, suffix.len, H2O_STRLIT("/compose"))) {
        u->kind = UPLOAD_COMPOSE;
        u->bucket = u->target->bucket;
        u->name = u->target->object;
        u->metadata = pool_json(&u->req->pool, u->req->entity.base, u->req->entity.len);
    }
}

static void parse_xml_write(upload_request_t *u)
{
    const char *method = u->req->method.base;
    size_t method_len = u->req->method.len;
    if (u->target->object == NULL)
        return;
    u->bucket = u->target->bucket;
    u->name = u->target->object;
    u->session = upload_request_param(u, "uploadId");
    if (h2o_memis(method, method_len, H2O_STRLIT("PUT"))) {
        if (upload_request_header(u, "x-goog-copy-source") != NULL || upload_request_header(u, "x-amz-copy-source") != NULL) {
            u->kind = UPLOAD_XML_COPY;
            return;
        }
        u->kind = u->session != NULL ? UPLOAD_XML_PART : UPLOAD_XML_PUT;
        u->media = u->req->entity;
        u->media_type = upload_request_header(u, "content-type");
    } else if (h2o_memis(method, method_len, H2O_STRLIT("POST"))) {
        if (u->session != NULL)
            u->kind = UPLOAD_XML_MULTIPART_COMPLETE;
        else if (target_param(u->target, "uploads") != NULL)
            u->kind = UPLOAD_XML_MULTIPART_START;
    } else if (h2o_memis(method, method_len, H2O_STRLIT("DELETE")) && u->session != NULL) {
        u->kind = UPLOAD_XML_MULTIPART_ABORT;
    }
}

void upload_request_parse(upload_request_t *u, cache_t *cache, h2o_req_t *req, const target_t *target)
{
    *u = (upload_request_t){.kind = UPLOAD_NONE, .cache = cache, .worker = worker_of(req), .req = req,
                            .target = target, .owner = "", .cacheable = !cache_request_carries_encryption_key(req)};
    u->authorization = upload_request_header(u, "authorization");
    switch (target->route.api) {
    case ROUTE_UPLOAD:
        parse_json_upload(u);
        break;
    case ROUTE_JSON:
        parse_json_object_write(u);
        break;
    case ROUTE_XML:
        parse_xml_write(u);
        break;
    default:
        break;
    }
}

bool upload_touches_object(const upload_request_t *u)
{
    switch (u->kind) {
    case UPLOAD_RESUMABLE_START:
    case UPLOAD_RESUMABLE_CANCEL:
    case UPLOAD_XML_MULTIPART_START:
    case UPLOAD_XML_PART:
    case UPLOAD_XML_MULTIPART_ABORT:
        return false;
    default:
        return true;
    }
}
