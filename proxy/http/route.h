/*
 * route.h - classifies a request into one of the GCS API surfaces.
 *
 * The router is a pure function of method, path and Host so that it can be
 * tested without a server. It decides three things: which API the request
 * belongs to (and so which error format its errors take), whether it reads
 * object bytes (media), and for the XML API which bucket is addressed and
 * whether that came from a virtual-hosted Host header.
 */
#ifndef LARDER_ROUTE_H
#define LARDER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    ROUTE_NONE,     /* not a GCS path: answered 404 by larder itself */
    ROUTE_JSON,     /* /storage/v1/... */
    ROUTE_UPLOAD,   /* /upload/storage/v1/... and /resumable/upload/storage/v1/... */
    ROUTE_DOWNLOAD, /* /download/storage/v1/... */
    ROUTE_BATCH,    /* /batch/storage/v1 */
    ROUTE_XML,      /* /BUCKET[/OBJECT] or Host: BUCKET.<suffix> */
    ROUTE_ADMIN     /* /_larder/...: larder's own endpoints */
} route_api_t;

typedef enum { ERROR_FORMAT_JSON, ERROR_FORMAT_XML } error_format_t;

typedef struct route {
    route_api_t api;
    error_format_t error_format;
    bool media;        /* the response body is object bytes, not JSON */
    bool vhost;        /* the bucket came from the Host header */
    const char *bucket; /* XML only: points into host or path; not NUL-terminated */
    size_t bucket_len;
} route_t;

/*
 * path is the raw request target (with query), host the Host/:authority value
 * (may be NULL). vhost_suffix is the configured XML bucket-host suffix.
 */
void route_classify(route_t *route, const char *path, size_t path_len, const char *host, size_t host_len,
                    const char *vhost_suffix);

/* A short stable name for logs and metrics: "json", "upload", "xml", ... */
const char *route_api_name(route_api_t api);

/* True when a bucket name is valid by GCS's naming rules. */
bool route_bucket_name_valid(const char *name, size_t len);

/*
 * Finds query parameter `name` in the raw target; returns its raw value (not
 * percent-decoded) or NULL. Only the first occurrence counts.
 */
const char *route_query_param(const char *path, size_t path_len, const char *name, size_t *value_len);

/* A walk over the raw target's query parameters, one name=value pair at a time (neither percent-decoded). */
typedef struct route_query_walk {
    const char *next, *end;
} route_query_walk_t;

void route_query_walk_start(route_query_walk_t *walk, const char *path, size_t path_len);
/* The next parameter; false when there is none. A parameter without '=' has an empty value. */
bool route_query_walk_next(route_query_walk_t *walk, const char **name, size_t *name_len, const char **value,
                           size_t *value_len);

#endif
