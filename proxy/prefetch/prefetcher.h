/*
 * prefetcher.h - fetching what pipelines announce before they read it: the
 * DAGs and prefetch lists callers submit, and the thread that plans
 * (planner.h) and fetches them within prefetch.max_bandwidth and
 * prefetch.max_connections.
 *
 * Every fetch is a read through larder itself, over a loopback connection to
 * one of its own client listeners, with the submitter's credentials (and its
 * batch's header): so it is checked, owned and filled exactly like that
 * caller's own read would be, a reader that arrives meanwhile follows the
 * fill as a HIT, and what the submitter may not read is never fetched for
 * anyone. Ranges are fetched a few chunks at a time, paced: the only way a
 * fill's upstream rate can be bounded from outside it.
 *
 * All calls are thread-safe; the admin endpoints call them from workers.
 */
#ifndef LARDER_PREFETCHER_H
#define LARDER_PREFETCHER_H

#include <h2o.h>
#include <jansson.h>
#include <stdbool.h>

#include "cache.h"
#include "conf.h"

typedef struct prefetcher prefetcher_t;

/* Starts the thread; *out NULL (and 0) when there is nothing to prefetch with (no cache, no client listener). */
int prefetcher_start(prefetcher_t **out, const conf_t *conf, cache_t *cache);
/* Stops fetching and the thread (shutdown: before the workers stop); what was fetched stays cached. */
void prefetcher_stop(prefetcher_t *prefetcher);

/* Who submits: the identity that owns what is fetched, and the credentials to fetch it with. */
typedef struct prefetch_caller {
    const char *identity;      /* the caller's name */
    const char *authorization; /* its Authorization header's value; NULL: none (anonymous) */
    bool admin;                /* may see and change anyone's */
} prefetch_caller_t;

/*
 * Submits a DAG (its JSON, as POST /_larder/v1/dags takes it) or a prefetch
 * list (POST /_larder/v1/prefetch: {"objects": [{"url", "range"?}], "batch"?}).
 * Returns the job's state as JSON (the caller owns it), or NULL with a reason
 * in *error and the HTTP status that says it in *status (400 bad body, 409 id
 * taken, 503 too many jobs).
 */
json_t *prefetcher_submit_dag(prefetcher_t *p, const prefetch_caller_t *caller, json_t *body, const char **error,
                              int *status);
json_t *prefetcher_submit_list(prefetcher_t *p, const prefetch_caller_t *caller, json_t *body, const char **error,
                               int *status);

/* What GET answers; NULL when there is no such job of the caller's (an admin: anyone's). */
json_t *prefetcher_show(prefetcher_t *p, const prefetch_caller_t *caller, const char *id, bool dag);
/* Every DAG of the caller's (an admin: all). */
json_t *prefetcher_list(prefetcher_t *p, const prefetch_caller_t *caller);

typedef enum { PREFETCH_STAGE_START, PREFETCH_STAGE_DONE } prefetch_stage_event_t;
/* A stage started or finished (Kariz's notify_stage_submission); 0, or the HTTP status of the refusal. */
int prefetcher_notify(prefetcher_t *p, const prefetch_caller_t *caller, const char *dag, const char *stage,
                      prefetch_stage_event_t event, const char **error);
/* Ends a DAG or a prefetch list (notify_dag_completion): its retention is released; 0 or 404. */
int prefetcher_end(prefetcher_t *p, const prefetch_caller_t *caller, const char *id, bool dag);

/* Figures for /_larder/metrics. */
typedef struct prefetch_stats {
    uint64_t jobs, in_flight, retained;
    uint64_t bytes; /* received by prefetch reads since start */
} prefetch_stats_t;
void prefetcher_stats(prefetcher_t *prefetcher, prefetch_stats_t *stats);

#endif
