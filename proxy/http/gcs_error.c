/*
 * gcs_error.c - builds and sends GCS-shaped error responses.
 */
#include "gcs_error.h"

#include <stdio.h>
#include <string.h>

struct error_kind_info {
    int status;
    const char *reason_phrase;
    const char *json_reason; /* error.errors[0].reason */
    const char *xml_code;    /* <Error><Code> */
    const char *message;
};

static const struct error_kind_info error_kinds[] = {
    [GCS_ERROR_BAD_REQUEST] = {400, "Bad Request", "invalid", "InvalidArgument", "Invalid argument."},
    [GCS_ERROR_NOT_FOUND] = {404, "Not Found", "notFound", "NoSuchKey", "Not Found"},
    [GCS_ERROR_METHOD_NOT_ALLOWED] = {405, "Method Not Allowed", "methodNotAllowed", "MethodNotAllowed",
                                      "The specified method is not allowed against this resource."},
    [GCS_ERROR_TOO_LARGE] = {413, "Payload Too Large", "uploadTooLarge", "EntityTooLarge",
                             "The request body is larger than this proxy accepts."},
    [GCS_ERROR_PRECONDITION_FAILED] = {412, "Precondition Failed", "conditionNotMet", "PreconditionFailed",
                                       "At least one of the pre-conditions you specified did not hold."},
    [GCS_ERROR_RANGE_NOT_SATISFIABLE] = {416, "Requested Range Not Satisfiable", "requestedRangeNotSatisfiable",
                                         "InvalidRange", "The requested range cannot be satisfied."},
    [GCS_ERROR_URI_TOO_LONG] = {414, "URI Too Long", "invalid", "InvalidURI", "The request URI is too long."},
    [GCS_ERROR_HEADERS_TOO_LARGE] = {431, "Request Header Fields Too Large", "invalid", "InvalidArgument",
                                     "The request headers are too large."},
    [GCS_ERROR_BAD_GATEWAY] = {502, "Bad Gateway", "backendError", "BadGateway", "The upstream storage service could not be reached."},
    [GCS_ERROR_GATEWAY_TIMEOUT] = {504, "Gateway Timeout", "backendError", "GatewayTimeout",
                                   "The upstream storage service did not answer in time."},
    [GCS_ERROR_UNAVAILABLE] = {503, "Service Unavailable", "backendError", "ServiceUnavailable", "The proxy is overloaded; retry later."},
    [GCS_ERROR_INTERNAL] = {500, "Internal Server Error", "backendError", "InternalError", "Internal error in the proxy."},
    /* GCS's own words: JSON says "Invalid Credentials", XML "Authentication required." (one message serves both). */
    [GCS_ERROR_UNAUTHENTICATED] = {401, "Unauthorized", "authError", "AuthenticationRequired", "Invalid Credentials"},
    [GCS_ERROR_ACCESS_UNDECIDED] = {503, "Service Unavailable", "backendError", "ServiceUnavailable",
                                    "The proxy could not check the caller's access; retry later."},
    [GCS_ERROR_FORBIDDEN] = {403, "Forbidden", "forbidden", "AccessDenied", "Access denied."},
    [GCS_ERROR_CONFLICT] = {409, "Conflict", "conflict", "Conflict", "The resource already exists."},
    [GCS_ERROR_INSUFFICIENT_STORAGE] = {507, "Insufficient Storage", "insufficientStorage", "InsufficientStorage",
                                        "Pinning this object would pass the batch's quota of pinned bytes."},
};

int gcs_error_status(gcs_error_kind_t kind)
{
    return error_kinds[kind].status;
}

/* Escapes for a JSON string or XML text; returns bytes written, always NUL-terminates. */
static size_t escape_text(char *out, size_t cap, const char *in, error_format_t format)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && n + 8 < cap; p++) {
        const char *rep = NULL;
        char hex[8];
        if (format == ERROR_FORMAT_JSON) {
            if (*p == '"')
                rep = "\\\"";
            else if (*p == '\\')
                rep = "\\\\";
            else if (*p < 0x20) {
                snprintf(hex, sizeof(hex), "\\u%04x", *p);
                rep = hex;
            }
        } else {
            if (*p == '<')
                rep = "&lt;";
            else if (*p == '>')
                rep = "&gt;";
            else if (*p == '&')
                rep = "&amp;";
            else if (*p == '"')
                rep = "&quot;";
            else if (*p == '\'')
                rep = "&apos;";
        }
        if (rep != NULL) {
            size_t rlen = strlen(rep);
            memcpy(out + n, rep, rlen);
            n += rlen;
        } else {
            out[n++] = (char)*p;
        }
    }
    out[n] = '\0';
    return n;
}

size_t gcs_error_format(char *buf, size_t cap, error_format_t format, gcs_error_kind_t kind, const char *message)
{
    const struct error_kind_info *info = &error_kinds[kind];
    char escaped[1024];
    escape_text(escaped, sizeof(escaped), message != NULL ? message : info->message, format);
    int n;
    if (format == ERROR_FORMAT_JSON)
        n = snprintf(buf, cap,
                     "{\"error\":{\"code\":%d,\"message\":\"%s\",\"errors\":[{\"message\":\"%s\",\"domain\":\"global\","
                     "\"reason\":\"%s\"}]}}",
                     info->status, escaped, escaped, info->json_reason);
    else
        n = snprintf(buf, cap, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message></Error>",
                     info->xml_code, escaped);
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

static const char *content_type_of(error_format_t format)
{
    return format == ERROR_FORMAT_JSON ? "application/json; charset=UTF-8" : "application/xml; charset=UTF-8";
}

h2o_iovec_t gcs_error_prepare(h2o_req_t *req, error_format_t format, gcs_error_kind_t kind, const char *message)
{
    char *body = h2o_mem_alloc_pool(&req->pool, 2048);
    size_t len = gcs_error_format(body, 2048, format, kind, message);
    const char *type = content_type_of(format);

    req->res.status = gcs_error_status(kind);
    req->res.reason = error_kinds[kind].reason_phrase;
    req->res.content_length = len;
    memset(&req->res.headers, 0, sizeof(req->res.headers));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    /* As GCS does: JSON errors forbid caching outright, XML errors say nothing. */
    if (format == ERROR_FORMAT_JSON)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                       H2O_STRLIT("no-cache, no-store, max-age=0, must-revalidate"));
    if (kind == GCS_ERROR_UNAUTHENTICATED)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""));
    if (kind == GCS_ERROR_METHOD_NOT_ALLOWED)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                       H2O_STRLIT("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
    return h2o_iovec_init(body, len);
}

void gcs_error_send(h2o_req_t *req, error_format_t format, gcs_error_kind_t kind, const char *message)
{
    h2o_iovec_t body = gcs_error_prepare(req, format, kind, message);
    h2o_send_inline(req, body.base, body.len);
}


/* --- filter for h2o's own error responses --- */

struct error_filter {
    h2o_filter_t super;
    const char *vhost_suffix;
};

struct body_replacer {
    h2o_ostream_t super;
    h2o_iovec_t body;
};

static void replace_body(h2o_ostream_t *self_, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    struct body_replacer *self = (void *)self_;
    (void)bufs;
    (void)bufcnt;
    /* h2o sends its error text in one final chunk; send ours in its place. */
    if (h2o_send_state_is_in_progress(state)) {
        h2o_ostream_send_next(&self->super, req, NULL, 0, state);
        return;
    }
    h2o_ostream_send_next(&self->super, req, &self->body, self->body.base != NULL ? 1 : 0, state);
    self->body = h2o_iovec_init(NULL, 0);
}

static gcs_error_kind_t kind_for_status(int status)
{
    switch (status) {
    case 404:
        return GCS_ERROR_NOT_FOUND;
    case 405:
        return GCS_ERROR_METHOD_NOT_ALLOWED;
    case 413:
        return GCS_ERROR_TOO_LARGE;
    case 412:
        return GCS_ERROR_PRECONDITION_FAILED;
    case 416:
        return GCS_ERROR_RANGE_NOT_SATISFIABLE;
    case 414:
        return GCS_ERROR_URI_TOO_LONG;
    case 431:
        return GCS_ERROR_HEADERS_TOO_LARGE;
    case 502:
        return GCS_ERROR_BAD_GATEWAY;
    case 503:
        return GCS_ERROR_UNAVAILABLE;
    case 504:
        return GCS_ERROR_GATEWAY_TIMEOUT;
    default:
        return status >= 500 ? GCS_ERROR_INTERNAL : GCS_ERROR_BAD_REQUEST;
    }
}

static void on_setup_ostream(h2o_filter_t *self_, h2o_req_t *req, h2o_ostream_t **slot)
{
    struct error_filter *self = (void *)self_;
    if (req->res.status >= 400) {
        route_t route;
        route_classify(&route, req->path.base, req->path.len, req->authority.base, req->authority.len,
                       self->vhost_suffix);
        gcs_error_kind_t kind = kind_for_status(req->res.status);
        char *body = h2o_mem_alloc_pool(&req->pool, 2048);
        size_t len = gcs_error_format(body, 2048, route.error_format, kind, NULL);
        const char *type = content_type_of(route.error_format);
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, type, strlen(type), 1);
        req->res.content_length = len;
        struct body_replacer *replacer = (void *)h2o_add_ostream(req, sizeof(*replacer), slot);
        replacer->super.do_send = replace_body;
        replacer->body = h2o_iovec_init(body, len);
        slot = &replacer->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

void gcs_error_register_filter(h2o_pathconf_t *pathconf, const char *vhost_suffix)
{
    struct error_filter *filter = (void *)h2o_create_filter(pathconf, sizeof(*filter));
    filter->super.on_setup_ostream = on_setup_ostream;
    filter->vhost_suffix = vhost_suffix;
}
