/*
 * admin_common.h - what the admin endpoints (admin.c, batches.c,
 * prefetch_api.c) share: their JSON answers, their log lines, and who may
 * call them (admin_common.c); and the endpoints admin.c hands requests to.
 */
#ifndef LARDER_ADMIN_COMMON_H
#define LARDER_ADMIN_COMMON_H

#include <stdbool.h>

#include "caller.h"

/* A 200 with a JSON body (copied by h2o before it returns). */
void admin_send_json(h2o_req_t *req, const char *body, size_t len);
void admin_send_json_as(h2o_req_t *req, int status, const char *reason, const char *body, size_t len);
/* The access line of an admin request larder answered itself. */
void admin_log(h2o_req_t *req, const char *identity, const char *access, const char *why);
/* The caller's name for the log; NULL (and answered 401 or 503) when its credentials were not accepted. */
const char *admin_accepted_caller(caller_t *caller);
/*
 * Whether the caller may act: an admin, or (own_user not NULL) the user the
 * request is about. Answers 403 when not; the access name for the log in *access.
 */
bool admin_permitted(caller_t *caller, const char *own_user, const char *identity, const char *refusal,
                     const char **access);

/* /_larder/v1/batches and below (batches.c). */
void batches_answer(h2o_req_t *req);
/* /_larder/v1/dags and /_larder/v1/prefetch, and below (prefetch_api.c). */
void prefetch_api_answer(h2o_req_t *req, bool dag);

#endif
