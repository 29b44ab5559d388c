/*
 * job.h - one submitted DAG or prefetch list, as the prefetcher keeps it:
 * parsed once from the caller's JSON (job.c), shown back as JSON, and fed to
 * the planner (planner.h) as its inputs and stages.
 *
 * A prefetch list is a job with one stage, running from the start, that
 * reads every object listed; it retains nothing, and stays to be shown until
 * it is deleted or newer jobs need its place.
 */
#ifndef LARDER_PREFETCH_JOB_H
#define LARDER_PREFETCH_JOB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "planner.h"

typedef enum { INPUT_PENDING, INPUT_FETCHING, INPUT_DONE, INPUT_FAILED } input_state_t;

typedef struct job_input {
    char *url, *bucket, *name;
    char *range;            /* as given ("bytes=0-99"), NULL: the whole object */
    uint64_t first, last;   /* last PLAN_TO_END: to the end */
    uint64_t size;          /* the object's, once known; 0 before */
    uint64_t cached;        /* contiguous bytes from first the store holds, as last seen */
    uint64_t requested;     /* contiguous bytes from first asked for (in flight or done) */
    uint64_t fetched;       /* bytes the prefetcher's reads of it received */
    int produced_by;        /* the stage that writes it (an "outputs" entry), -1: none */
    input_state_t state;
    unsigned failures;      /* transient ones, retried */
    char *error;            /* INPUT_FAILED: why (upstream's status) */
    bool retained;          /* a lease keeps it from eviction */
    unsigned lease;         /* its lease's number within the job, once retained */
} job_input_t;

typedef struct job_stage {
    char *id;
    size_t *inputs, ninputs;
    size_t *after, nafter;
    char **outputs;
    size_t noutputs;
    int64_t expected_runtime_ms; /* -1: not given */
    plan_stage_state_t state;
    int64_t started_ms, done_ms;
    double fraction_at_start; /* of its input bytes cached when it started: for the runtime history */
} job_stage_t;

typedef struct job {
    char *id;
    bool dag;               /* false: a prefetch list */
    char *owner;            /* the submitter's identity */
    char *authorization;    /* "Authorization: ..." line for its reads; NULL: anonymous */
    char *batch;            /* X-Larder-Batch for its reads; NULL: none */
    double weight;
    int64_t created_ms;
    job_input_t *inputs;
    size_t ninputs;
    job_stage_t *stages;
    size_t nstages;
    uint64_t bytes_fetched;
    bool ended;             /* DELETEd: its retention goes, then the job */
    unsigned inflight;      /* pieces being fetched for it: it is freed only once none is */
    plan_stage_forecast_t *forecasts; /* the last plan's, per stage; NULL before the first */
} job_t;

/* A DAG from POST /_larder/v1/dags; NULL with *error set when the body is not one. */
job_t *job_from_dag(json_t *body, const char **error);
/* A list from POST /_larder/v1/prefetch; NULL with *error set. */
job_t *job_from_list(json_t *body, const char **error);
void job_free(job_t *job);

/* The job's state, as GET answers it (the caller owns it). */
json_t *job_json(const job_t *job);

/* The stage named id; -1 when none. */
int job_stage_index(const job_t *job, const char *id);

/* "bytes=A-B" or "bytes=A-" into first and last; false when it is not one of these. */
bool job_parse_range(const char *range, uint64_t *first, uint64_t *last);

/* Letters, digits and "._~-", 1 to 128 bytes: a job id safe in a path and a lease id. */
bool job_id_valid(const char *id);

#endif
