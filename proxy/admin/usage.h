/*
 * usage.h - per-user usage for /_larder/v1/usage and the metrics (usage.c).
 */
#ifndef LARDER_ADMIN_USAGE_H
#define LARDER_ADMIN_USAGE_H

#include <h2o.h>

#include "user_usage.h"
#include "worker.h"

/*
 * Every worker's figures added up, and the store's bytes by owner, into
 * into (initialised by the caller): for user only, or everyone when NULL.
 */
int usage_totals(worker_t *worker, const char *user, user_usage_t *into);
/* The JSON answer, in req's pool: one user's figures, or {"users": [...]} when user is NULL. */
h2o_iovec_t usage_json(h2o_req_t *req, const user_usage_t *totals, const char *user);

#endif
