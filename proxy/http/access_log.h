/*
 * access_log.h - one structured line per request.
 *
 * The line never carries credentials: the Authorization header is not
 * logged, and query parameters that can hold tokens are masked.
 */
#ifndef LARDER_ACCESS_LOG_H
#define LARDER_ACCESS_LOG_H

#include <h2o.h>
#include <stdint.h>

#include "route.h"

typedef struct access_log_entry {
    h2o_req_t *req;
    route_api_t api;
    int status;
    uint64_t bytes_sent;
    int64_t upstream_ms; /* -1: upstream not contacted */
    const char *cache;   /* HIT, MISS, REVALIDATED, PASS */
    const char *identity; /* who read, when known ("" anonymous); never a token */
    const char *access;  /* the access decision (owner, grant, public, denied, unauthenticated), or NULL */
    const char *error;   /* NULL, or why larder answered with an error */
} access_log_entry_t;

void access_log_write(const access_log_entry_t *entry);
/* A request ended: counted for /_larder/metrics, and logged when the access log is on. */
void access_log_finish(const access_log_entry_t *entry);
/* Logs (when the access log is on) an answer larder made by itself, upstream not asked. */
void access_log_local_answer(h2o_req_t *req, route_api_t api, const char *identity, const char *access,
                             const char *why);

/* Copies path into out with the values of token-bearing query parameters masked. */
size_t access_log_redact_path(const char *path, size_t len, char *out, size_t cap);

#endif
