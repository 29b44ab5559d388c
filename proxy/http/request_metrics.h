/*
 * request_metrics.h - what a worker's requests added up to, for
 * /_larder/metrics (request_metrics.c).
 *
 * Each worker counts its own requests as they end, in counters no other
 * thread writes: relaxed atomic loads and stores, so a scrape on any thread
 * can add the workers up without stopping them, and no add is a locked one.
 */
#ifndef LARDER_REQUEST_METRICS_H
#define LARDER_REQUEST_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "access_log.h"

#define METRICS_ROUTES (ROUTE_ADMIN + 1)
#define METRICS_METHODS 8 /* GET HEAD POST PUT PATCH DELETE OPTIONS, and any other */
#define METRICS_STATUS_MIN 100
#define METRICS_STATUSES 500 /* 100 to 599 */
/* The results of cacheable reads, in metrics_cache_results' order. */
typedef enum { METRICS_CACHE_HIT, METRICS_CACHE_MISS, METRICS_CACHE_REVALIDATED, METRICS_CACHE_PASS } metrics_cache_result_t;
#define METRICS_CACHE_RESULTS 4
/* Upper bounds of the upstream latency histogram, in milliseconds (Prometheus' default buckets). */
#define METRICS_LATENCY_BUCKETS 11

typedef struct request_metrics {
    _Atomic uint64_t requests[METRICS_ROUTES][METRICS_METHODS][METRICS_STATUSES];
    _Atomic uint64_t cache_requests[METRICS_CACHE_RESULTS];
    _Atomic uint64_t cache_bytes[METRICS_CACHE_RESULTS];
    _Atomic uint64_t upstream_latency[METRICS_LATENCY_BUCKETS + 1]; /* the last: +Inf */
    _Atomic uint64_t upstream_latency_ms_sum;
} request_metrics_t;

extern const char *const metrics_method_names[METRICS_METHODS];
extern const char *const metrics_cache_results[METRICS_CACHE_RESULTS];
extern const double metrics_latency_bounds_s[METRICS_LATENCY_BUCKETS];

/* The result a cache state ("HIT", "MISS"...) names, whatever its case; -1 for none. */
int request_metrics_cache_result(const char *cache);
/* Counts one ended request (every request ends through access_log_finish); result: its cache state's. */
void request_metrics_record(request_metrics_t *m, const access_log_entry_t *e, int result);

#endif
