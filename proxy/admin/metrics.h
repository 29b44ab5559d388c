/*
 * metrics.h - /_larder/metrics in Prometheus' text format (metrics.c).
 */
#ifndef LARDER_ADMIN_METRICS_H
#define LARDER_ADMIN_METRICS_H

#include <h2o.h>

#include "worker.h"

/* The exposition, in req's pool: every worker's counters added up, and the gauges read now. */
h2o_iovec_t metrics_exposition(h2o_req_t *req, worker_t *worker);

#endif
