/*
 * planner.h - what to prefetch for the DAGs pipelines announced, in what
 * order, how much of each input, and not before when (Kariz's planner, in
 * larder's terms).
 *
 * A pure function of its arguments: no I/O, no clock, no store. The caller
 * passes the time, what the cache holds of each input, the budgets and a
 * runtime predictor; plan_make returns the tasks in the order to run them.
 * That keeps every decision testable without timing (tests/unit/test_planner.c).
 *
 * The rules, each a finding of Kariz's:
 *   - Start: a stage whose dependencies are all done is "ready" and starts
 *     now; others start when their last dependency is predicted to end.
 *     Predicted runtime: the predictor's answer for (dag, stage, fraction of
 *     the stage's input bytes that will be cached), else the stage's
 *     expected_runtime_ms, else budget->default_runtime_ms.
 *   - Order: chunks of the stages that start soonest first; among inputs
 *     needed at the same time, those read by more stages still to run first.
 *   - Space: inputs of stages still to run may hold at most space_bytes of
 *     the cache (what is cached already counts). When the inputs of the next
 *     stages do not all fit, every input of those stages gets the same
 *     leading fraction (rounded down to whole chunks, at least one chunk)
 *     rather than some whole and others nothing: partial caching.
 *   - Bandwidth: each DAG's tasks are scheduled as late as they can be at
 *     its share of bandwidth_bps, from the last back (a task ends by the
 *     time it is needed and by the start of the next), and released at
 *     their start: prefetch ends just in time and no earlier than needed.
 *     A ready stage's inputs are released now, and come first; a task that
 *     would have to start before they are done is released now as well.
 *     bandwidth_bps 0: all now.
 *   - Several DAGs: each gets a weighted share of the bandwidth (weighted
 *     fair queuing on bytes: a task's virtual finish is its DAG's previous
 *     one plus its bytes / weight, and tasks run in virtual-finish order);
 *     within a DAG, the plan above, which puts the most benefit per byte
 *     (soonest needed, most readers) first.
 */
#ifndef LARDER_PLANNER_H
#define LARDER_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PLAN_TO_END UINT64_MAX

/* One distinct input of a DAG: an object, or a byte range of it. */
typedef struct plan_input {
    const char *url;        /* "gs://B/O"; inputs are distinct by (url, first, last) */
    uint64_t first, last;   /* the bytes wanted, inclusive; last PLAN_TO_END: to the object's end */
    uint64_t size;          /* the object's size, when known (0: not known yet: plan the whole range as 1 chunk) */
    uint64_t cached;        /* bytes from first on that the cache holds now, contiguously */
} plan_input_t;

typedef enum { PLAN_STAGE_WAITING, PLAN_STAGE_RUNNING, PLAN_STAGE_DONE } plan_stage_state_t;

typedef struct plan_stage {
    const char *id;
    const size_t *inputs;   /* indices into the DAG's inputs */
    size_t ninputs;
    const size_t *after;    /* indices into the DAG's stages: what must be done before it starts */
    size_t nafter;
    int64_t expected_runtime_ms; /* < 0: not given */
    plan_stage_state_t state;
    int64_t started_ms;     /* RUNNING: when it started */
} plan_stage_t;

typedef struct plan_dag {
    const char *id;
    double weight;          /* > 0 */
    const plan_input_t *inputs;
    size_t ninputs;
    const plan_stage_t *stages;
    size_t nstages;
} plan_dag_t;

/* Predicted runtime of a stage whose inputs are cached_fraction cached (0..1); < 0: no prediction. */
typedef int64_t (*plan_predict_fn)(void *ctx, const char *dag, const char *stage, double cached_fraction);

typedef struct plan_budget {
    int64_t now_ms;
    uint64_t space_bytes;   /* what inputs of stages still to run may hold in the cache */
    uint64_t bandwidth_bps; /* prefetch's whole budget; 0: unlimited */
    uint64_t chunk_size;    /* the store's chunk: ranges are planned in whole chunks */
    int64_t default_runtime_ms;
    plan_predict_fn predict; /* may be NULL */
    void *predict_ctx;
} plan_budget_t;

/* One range to fetch. */
typedef struct plan_task {
    size_t dag;             /* index into the dags given */
    size_t input;           /* index into that DAG's inputs */
    uint64_t first, last;   /* absolute bytes of the object, inclusive, chunk-aligned at first */
    int64_t needed_ms;      /* predicted start of the soonest stage still to run that reads it */
    int64_t release_ms;     /* not to be started before */
    unsigned readers;       /* stages still to run that read it */
} plan_task_t;

/* What the plan says of each stage, for GET on a DAG. */
typedef struct plan_stage_forecast {
    int64_t start_ms, end_ms; /* predicted; for a RUNNING stage start_ms is when it started */
    double cached_fraction;   /* of its input bytes, once the plan has run */
} plan_stage_forecast_t;

typedef struct plan {
    plan_task_t *tasks;     /* in the order to run them */
    size_t ntasks;
    plan_stage_forecast_t **forecasts; /* [dag][stage] */
    bool **retain;          /* [dag][input]: still read by a stage to run: keep it from eviction */
    size_t ndags;
} plan_t;

/* 0, or -1 for no memory, a DAG plan_validate rejects (it says why: a cycle, a bad index...) or a chunk_size of 0. */
int plan_make(const plan_dag_t *dags, size_t ndags, const plan_budget_t *budget, plan_t *out);
void plan_free(plan_t *plan);

/*
 * NULL when the DAG is well formed (indices in range, no cycle, weight > 0, first <= last, ids and urls given);
 * else what is wrong, in static storage: a message naming a stage is this thread's until its next call.
 */
const char *plan_validate(const plan_dag_t *dag);

#endif
