/*
 * handler.h - the request entry point and larder's own endpoints.
 */
#ifndef LARDER_HANDLER_H
#define LARDER_HANDLER_H

#include <h2o.h>

#include "worker.h"

/* The on_req of larder's single h2o handler. */
int handler_on_req(h2o_handler_t *self, h2o_req_t *req);

/* larder's own endpoints (admin/admin.c); admin_listener: a listener marked "admin", which asks no credentials. */
void admin_answer(h2o_req_t *req, worker_t *worker, bool admin_listener);

#endif
