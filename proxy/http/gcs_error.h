/*
 * gcs_error.h - error responses in GCS's own JSON and XML shapes.
 *
 * Client SDKs parse error bodies (the JSON "error.errors[].reason", the XML
 * <Code>), so every error larder itself produces uses the shape of the API
 * the request was addressed to.
 */
#ifndef LARDER_GCS_ERROR_H
#define LARDER_GCS_ERROR_H

#include <h2o.h>

#include "route.h"

typedef enum {
    GCS_ERROR_BAD_REQUEST,
    GCS_ERROR_NOT_FOUND,
    GCS_ERROR_METHOD_NOT_ALLOWED,
    GCS_ERROR_TOO_LARGE,
    GCS_ERROR_URI_TOO_LONG,
    GCS_ERROR_PRECONDITION_FAILED,
    GCS_ERROR_RANGE_NOT_SATISFIABLE,
    GCS_ERROR_HEADERS_TOO_LARGE,
    GCS_ERROR_BAD_GATEWAY,
    GCS_ERROR_GATEWAY_TIMEOUT,
    GCS_ERROR_UNAVAILABLE,
    GCS_ERROR_INTERNAL,
    GCS_ERROR_UNAUTHENTICATED, /* an invalid or expired token, as GCS answers it */
    GCS_ERROR_ACCESS_UNDECIDED, /* the caller's right could not be checked (tokeninfo or upstream unreachable) */
    GCS_ERROR_FORBIDDEN,
    GCS_ERROR_CONFLICT,
    GCS_ERROR_INSUFFICIENT_STORAGE /* a batch's pin would pass its quota, or all batches' */
} gcs_error_kind_t;

/*
 * Sets the status and headers of an error response and returns its body
 * (pool-owned); the caller may add headers before h2o_send_inline(body).
 */
h2o_iovec_t gcs_error_prepare(h2o_req_t *req, error_format_t format, gcs_error_kind_t kind, const char *message);

/* Sends a complete error response; message NULL uses the kind's default. */
void gcs_error_send(h2o_req_t *req, error_format_t format, gcs_error_kind_t kind, const char *message);

/* Formats the body into buf; returns its length (truncated to cap - 1). */
size_t gcs_error_format(char *buf, size_t cap, error_format_t format, gcs_error_kind_t kind, const char *message);

/* The HTTP status of an error kind. */
int gcs_error_status(gcs_error_kind_t kind);

/*
 * Rewrites the plain-text errors that h2o produces by itself (413 for an
 * oversized body, 400 for a malformed request) into the GCS shape. Register it
 * on the host's fallback path, which is where h2o binds such requests.
 */
void gcs_error_register_filter(h2o_pathconf_t *pathconf, const char *vhost_suffix);

#endif
