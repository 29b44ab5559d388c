/*
 * test_planner.c - the prefetch plan: what comes first, when stages are
 * predicted to start, how little space is shared out, when tasks are
 * released, how DAGs share bandwidth. The planner takes the time as an
 * argument, so every number here is exact and nothing waits.
 */
#include <string.h>

#include "planner.h"
#include "unit.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
/* A stage's inputs or dependencies, as the pointer and count its struct wants in that order. */
#define LIST(...) (const size_t[]){__VA_ARGS__}, N(((const size_t[]){__VA_ARGS__}))
#define NONE NULL, 0

#define NOW 1000
#define CHUNK 100
#define WAITING PLAN_STAGE_WAITING
#define RUNNING PLAN_STAGE_RUNNING
#define DONE PLAN_STAGE_DONE

static plan_budget_t budget(uint64_t space_bytes, uint64_t bandwidth_bps)
{
    return (plan_budget_t){.now_ms = NOW, .space_bytes = space_bytes, .bandwidth_bps = bandwidth_bps,
                           .chunk_size = CHUNK, .default_runtime_ms = 250};
}
#define PLENTY (1 << 30)

static plan_dag_t dag_of(const char *id, double weight, const plan_input_t *inputs, size_t ninputs,
                         const plan_stage_t *stages, size_t nstages)
{
    return (plan_dag_t){id, weight, inputs, ninputs, stages, nstages};
}
#define DAG(id, weight, inputs, stages) dag_of(id, weight, inputs, N(inputs), stages, N(stages))

/* What a task must be: plan_task_t's fields but readers. */
typedef struct want {
    size_t dag, input;
    uint64_t first, last;
    int64_t needed_ms, release_ms;
} want_t;

static void expect_task(int line, const plan_t *plan, size_t k, const want_t *w)
{
    const plan_task_t *t = &plan->tasks[k];
    bool ok = t->dag == w->dag && t->input == w->input && t->first == w->first && t->last == w->last &&
              t->needed_ms == w->needed_ms && t->release_ms == w->release_ms;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  line %d: task %zu is dag %zu input %zu [%llu, %llu] needed %lld release %lld\n", line, k,
                t->dag, t->input, (unsigned long long)t->first, (unsigned long long)t->last,
                (long long)t->needed_ms, (long long)t->release_ms);
}

/* The plan's tasks must be exactly these, in this order. */
static void expect_tasks(int line, const plan_t *plan, const want_t *want, size_t n)
{
    CHECK(plan->ntasks == n);
    if (plan->ntasks != n)
        fprintf(stderr, "  line %d: %zu tasks, not %zu\n", line, plan->ntasks, n);
    for (size_t k = 0; k < n && k < plan->ntasks; k++)
        expect_task(line, plan, k, &want[k]);
}
#define TASKS(plan, ...) expect_tasks(__LINE__, plan, (const want_t[]){__VA_ARGS__}, N(((const want_t[]){__VA_ARGS__})))

/* plan_make must succeed. */
static void make(int line, const plan_dag_t *dags, size_t ndags, plan_budget_t b, plan_t *plan)
{
    int rc = plan_make(dags, ndags, &b, plan);
    CHECK(rc == 0);
    if (rc != 0)
        fprintf(stderr, "  line %d: plan_make failed\n", line);
}
#define MAKE(dags, ndags, b, plan) make(__LINE__, dags, ndags, b, plan)

static void expect_forecast(int line, const plan_t *plan, size_t dag, size_t stage, int64_t start, int64_t end,
                            double fraction)
{
    const plan_stage_forecast_t *f = &plan->forecasts[dag][stage];
    bool ok = f->start_ms == start && f->end_ms == end && f->cached_fraction == fraction;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  line %d: stage %zu of dag %zu: %lld to %lld, fraction %g\n", line, stage, dag,
                (long long)f->start_ms, (long long)f->end_ms, f->cached_fraction);
}
#define FORECAST(plan, dag, stage, start, end, fraction)                                                               \
    expect_forecast(__LINE__, plan, dag, stage, start, end, fraction)

/* A ready stage's input comes before the next stage's, and is released now. */
static void test_ready_first(void)
{
    const plan_input_t inputs[] = {{"gs://b/a", 0, PLAN_TO_END, 300, 0}, {"gs://b/b", 0, PLAN_TO_END, 200, 0}};
    const plan_stage_t stages[] = {{"s1", LIST(0), LIST(1), 2000, WAITING, 0},
                                   {"s0", LIST(1), NONE, 5000, WAITING, 0}};
    plan_dag_t dag = DAG("d", 1, inputs, stages);
    plan_t plan;
    MAKE(&dag, 1, budget(PLENTY, 0), &plan);
    CHECK(plan.ndags == 1);
    TASKS(&plan, {0, 1, 0, 99, NOW, NOW}, {0, 1, 100, 199, NOW, NOW},
          {0, 0, 0, 99, 6000, NOW}, /* no bandwidth budget: everything now */
          {0, 0, 100, 199, 6000, NOW}, {0, 0, 200, 299, 6000, NOW});
    CHECK(plan.ntasks > 0 && plan.tasks[0].readers == 1);
    FORECAST(&plan, 0, 1, NOW, 6000, 1.0);
    FORECAST(&plan, 0, 0, 6000, 8000, 1.0); /* at its dependency's end */
    CHECK(plan.retain[0][0] && plan.retain[0][1]);
    plan_free(&plan);
    CHECK(plan.tasks == NULL && plan.forecasts == NULL && plan.retain == NULL);
}

typedef struct predictions {
    int calls;
    double s0_fractions[2]; /* what s0's runtime was asked for, in order */
} predictions_t;

/* s0 takes 4000 ms uncached, 2000 cached; the predictor knows nothing of the others. */
static int64_t predict(void *ctx, const char *dag, const char *stage, double cached_fraction)
{
    predictions_t *p = ctx;
    if (strcmp(dag, "d") != 0 || strcmp(stage, "s0") != 0)
        return -1;
    if (p->calls < 2)
        p->s0_fractions[p->calls] = cached_fraction;
    p->calls++;
    return 4000 - (int64_t)(2000 * cached_fraction);
}

/*
 * s0 -> s1 -> s2: s0's runtime from the predictor, at the fraction the plan
 * leaves cached (half: space for 2 of its 4 chunks); s1's is its expected
 * one, s2's the default. The space goes to s0, nothing is left for s1.
 */
static void test_start_times(void)
{
    const plan_input_t inputs[] = {{"gs://b/x", 0, PLAN_TO_END, 400, 0}, {"gs://b/y", 0, PLAN_TO_END, 100, 0}};
    const plan_stage_t stages[] = {{"s0", LIST(0), NONE, 9999, WAITING, 0},
                                   {"s1", LIST(1), LIST(0), 700, WAITING, 0},
                                   {"s2", NONE, LIST(1), -1, WAITING, 0}};
    plan_dag_t dag = DAG("d", 1, inputs, stages);
    predictions_t seen = {0};
    plan_budget_t b = budget(200, 0);
    b.predict = predict;
    b.predict_ctx = &seen;
    plan_t plan;
    MAKE(&dag, 1, b, &plan);
    CHECK(seen.calls == 2 && seen.s0_fractions[0] == 1.0 && seen.s0_fractions[1] == 0.5);
    FORECAST(&plan, 0, 0, NOW, NOW + 3000, 0.5);
    FORECAST(&plan, 0, 1, NOW + 3000, NOW + 3700, 0.0);
    FORECAST(&plan, 0, 2, NOW + 3700, NOW + 3950, 1.0); /* reads nothing */
    TASKS(&plan, {0, 0, 0, 99, NOW, NOW}, {0, 0, 100, 199, NOW, NOW});
    CHECK(plan.retain[0][0] && plan.retain[0][1]); /* y got nothing, and is still needed */
    plan_free(&plan);
}

/* Among inputs needed at the same time: more readers first, then by url and range. */
static void test_shared_first(void)
{
    const plan_input_t inputs[] = {{"gs://b/c", 0, 99, 1000, 0},
                                   {"gs://b/a", 500, 599, 1000, 0},
                                   {"gs://b/z", 0, 99, 1000, 0},
                                   {"gs://b/a", 0, 99, 1000, 0}};
    const plan_stage_t stages[] = {{"s0", LIST(0, 2), NONE, 100, WAITING, 0},
                                   {"s1", LIST(1, 2, 3), NONE, 100, WAITING, 0}};
    plan_dag_t dag = DAG("d", 1, inputs, stages);
    plan_t plan;
    MAKE(&dag, 1, budget(PLENTY, 0), &plan);
    TASKS(&plan, {0, 2, 0, 99, NOW, NOW}, {0, 3, 0, 99, NOW, NOW}, {0, 1, 500, 599, NOW, NOW}, {0, 0, 0, 99, NOW, NOW});
    CHECK(plan.ntasks == 4 && plan.tasks[0].readers == 2 && plan.tasks[1].readers == 1);
    plan_free(&plan);
}

/*
 * 400 bytes for a wave of 1000 + 500 + 150: each gets 400/1650 of its
 * bytes, in whole chunks, and one chunk at the least: 200, 100 and 100.
 * The next stage's input gets nothing and is retained.
 */
static void test_partial_caching(void)
{
    const plan_input_t inputs[] = {{"gs://b/big", 0, PLAN_TO_END, 1000, 0},
                                   {"gs://b/mid", 1000, 1499, 5000, 0},
                                   {"gs://b/small", 0, PLAN_TO_END, 150, 0},
                                   {"gs://b/later", 0, PLAN_TO_END, 100, 0}};
    const plan_stage_t stages[] = {{"s0", LIST(0, 1, 2), NONE, 100, WAITING, 0},
                                   {"s1", LIST(3), LIST(0), 100, WAITING, 0}};
    plan_dag_t dag = DAG("d", 1, inputs, stages);
    plan_t plan;
    MAKE(&dag, 1, budget(400, 0), &plan);
    TASKS(&plan, {0, 0, 0, 99, NOW, NOW}, {0, 0, 100, 199, NOW, NOW}, {0, 1, 1000, 1099, NOW, NOW},
          {0, 2, 0, 99, NOW, NOW});
    FORECAST(&plan, 0, 0, NOW, NOW + 100, 400.0 / 1650.0);
    FORECAST(&plan, 0, 1, NOW + 100, NOW + 200, 0.0);
    CHECK(plan.retain[0][3]);
    plan_free(&plan);

    MAKE(&dag, 1, budget(0, 0), &plan); /* no space at all: no task, not even one chunk */
    CHECK(plan.ntasks == 0 && plan.tasks == NULL && plan.retain[0][0] && plan.retain[0][3]);
    plan_free(&plan);
}

/*
 * Cached bytes count against space and are fetched again never. p holds 600
 * of 1000, q nothing; 1000 of space leaves 400: at the fraction they would
 * share (1000/2000) p is cached beyond it, so q alone gets 400/1000.
 */
static void test_cached_counts(void)
{
    const plan_input_t inputs[] = {{"gs://b/p", 0, PLAN_TO_END, 1000, 600}, {"gs://b/q", 0, PLAN_TO_END, 1000, 0}};
    const plan_stage_t stages[] = {{"s0", LIST(0, 1), NONE, 100, WAITING, 0}};
    plan_dag_t dag = DAG("d", 1, inputs, stages);
    plan_t plan;
    MAKE(&dag, 1, budget(1000, 0), &plan);
    TASKS(&plan, {0, 1, 0, 99, NOW, NOW}, {0, 1, 100, 199, NOW, NOW}, {0, 1, 200, 299, NOW, NOW},
          {0, 1, 300, 399, NOW, NOW});
    FORECAST(&plan, 0, 0, NOW, NOW + 100, 0.5);
    plan_free(&plan);

    /* r has 100 of 300: the rest fits; then 400 - 300 leaves one chunk of later's 200. */
    const plan_input_t more[] = {{"gs://b/r", 0, PLAN_TO_END, 300, 100}, {"gs://b/later", 0, PLAN_TO_END, 200, 0}};
    const plan_stage_t two[] = {{"s0", LIST(0), NONE, 100, WAITING, 0}, {"s1", LIST(1), LIST(0), 100, WAITING, 0}};
    dag = DAG("d", 1, more, two);
    MAKE(&dag, 1, budget(400, 0), &plan);
    TASKS(&plan, {0, 0, 100, 199, NOW, NOW}, {0, 0, 200, 299, NOW, NOW}, {0, 1, 0, 99, NOW + 100, NOW});
    FORECAST(&plan, 0, 1, NOW + 100, NOW + 200, 0.5);
    plan_free(&plan);
}

/*
 * At 100 bytes/s the ready stage's input goes now, and the next stage's,
 * needed at 11000, not before 11000 less the time the DAG's bytes up to each
 * of its chunks take: 300, 400 and 500 bytes, 3, 4 and 5 s.
 */
static void test_just_in_time(void)
{
    const plan_input_t inputs[] = {{"gs://b/a", 0, PLAN_TO_END, 200, 0}, {"gs://b/b", 0, PLAN_TO_END, 300, 0}};
    const plan_stage_t stages[] = {{"s0", LIST(0), NONE, 10000, WAITING, 0},
                                   {"s1", LIST(1), LIST(0), 100, WAITING, 0}};
    plan_dag_t dag = DAG("d", 2, inputs, stages);
    plan_t plan;
    MAKE(&dag, 1, budget(PLENTY, 100), &plan);
    TASKS(&plan, {0, 0, 0, 99, NOW, NOW}, {0, 0, 100, 199, NOW, NOW}, {0, 1, 0, 99, 11000, 8000},
          {0, 1, 100, 199, 11000, 9000}, {0, 1, 200, 299, 11000, 10000});
    plan_free(&plan);

    /* 2.5 s a task, from 11000 back: 8500, 6000, 3500; the ready 200 bytes take until 6000, so 3500 is now. */
    MAKE(&dag, 1, budget(PLENTY, 40), &plan);
    TASKS(&plan, {0, 0, 0, 99, NOW, NOW}, {0, 0, 100, 199, NOW, NOW}, {0, 1, 0, 99, 11000, NOW},
          {0, 1, 100, 199, 11000, 6000}, {0, 1, 200, 299, 11000, 8500});
    plan_free(&plan);
}

/*
 * Weights 1 and 3: tasks interleave 1:3 in bytes (virtual finishes 100, 200...
 * against 33.3, 66.7, 100...; a tie goes to the first DAG), each DAG's own
 * order kept. The bandwidth is shared the same way: DAG 0 has a quarter of
 * 400 bytes/s for its input needed at 11000.
 */
static void test_weighted_dags(void)
{
    const plan_input_t x[] = {{"gs://b/x", 0, PLAN_TO_END, 800, 0}};
    const plan_input_t y[] = {{"gs://b/y", 0, PLAN_TO_END, 800, 0}};
    const plan_stage_t first[] = {{"s0", NONE, NONE, 10000, WAITING, 0}, {"s1", LIST(0), LIST(0), 100, WAITING, 0}};
    const plan_stage_t ready[] = {{"s0", LIST(0), NONE, 100, WAITING, 0}};
    plan_dag_t dags[] = {DAG("light", 1, x, first), DAG("heavy", 3, y, ready)};
    plan_t plan;
    MAKE(dags, 2, budget(PLENTY, 400), &plan);
    CHECK(plan.ntasks == 16 && plan.ndags == 2);
    const size_t order[16] = {1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    uint64_t next[2] = {0, 0};
    for (size_t k = 0; k < plan.ntasks && k < 16; k++) {
        size_t d = order[k];
        /* DAG 0 has 100 bytes/s: its 8 tasks end at 11000, one a second, from the last back. */
        int64_t needed = d == 0 ? 11000 : NOW, release = 11000 - (int64_t)(800 - next[d]) * 10;
        expect_task(__LINE__, &plan, k, &(want_t){d, 0, next[d], next[d] + 99, needed, d == 0 ? release : NOW});
        next[d] += 100;
    }
    plan_free(&plan);
}

/* A done stage reads nothing: its input alone is released; the next stage is ready. */
static void test_done_stages(void)
{
    const plan_input_t inputs[] = {{"gs://b/a", 0, PLAN_TO_END, 100, 0},
                                   {"gs://b/b", 0, PLAN_TO_END, 100, 0},
                                   {"gs://b/c", 0, PLAN_TO_END, 100, 0}};
    const plan_stage_t stages[] = {{"s0", LIST(0, 1), NONE, 5000, DONE, 0},
                                   {"s1", LIST(1, 2), LIST(0), 100, WAITING, 0}};
    plan_dag_t dag = DAG("d", 1, inputs, stages);
    plan_t plan;
    MAKE(&dag, 1, budget(200, 0), &plan); /* a's bytes are not counted: b and c fit */
    TASKS(&plan, {0, 1, 0, 99, NOW, NOW}, {0, 2, 0, 99, NOW, NOW});
    CHECK(!plan.retain[0][0] && plan.retain[0][1] && plan.retain[0][2]);
    FORECAST(&plan, 0, 0, NOW, NOW, 0.5);
    FORECAST(&plan, 0, 1, NOW, NOW + 100, 1.0);
    plan_free(&plan);
}

/* Size not known yet: one chunk from first, or the range when it is shorter; past the end: nothing. */
static void test_unknown_size(void)
{
    const plan_input_t inputs[] = {{"gs://b/a", 1000, PLAN_TO_END, 0, 0},
                                   {"gs://b/b", 1000, 1049, 0, 0},
                                   {"gs://b/c", 500, 900, 400, 0}};
    const plan_stage_t stages[] = {{"s0", LIST(0, 1, 2), NONE, 100, WAITING, 0}};
    plan_dag_t dag = DAG("d", 1, inputs, stages);
    plan_t plan;
    MAKE(&dag, 1, budget(PLENTY, 0), &plan);
    TASKS(&plan, {0, 0, 1000, 1099, NOW, NOW}, {0, 1, 1000, 1049, NOW, NOW});
    CHECK(plan.retain[0][2]);
    plan_free(&plan);
}

/* A running stage started when it did, ends at the soonest now, and its input goes now. */
static void test_running(void)
{
    const plan_input_t inputs[] = {{"gs://b/a", 0, PLAN_TO_END, 100, 0}, {"gs://b/b", 0, PLAN_TO_END, 100, 0}};
    const plan_stage_t stages[] = {{"s0", LIST(0), NONE, 2000, RUNNING, 400},
                                   {"s1", NONE, LIST(0), 100, WAITING, 0},
                                   {"s2", LIST(1), NONE, 300, RUNNING, 0}};
    plan_dag_t dag = DAG("d", 1, inputs, stages);
    plan_t plan;
    MAKE(&dag, 1, budget(PLENTY, 1), &plan);
    FORECAST(&plan, 0, 0, 400, 2400, 1.0);
    FORECAST(&plan, 0, 1, 2400, 2500, 1.0);
    FORECAST(&plan, 0, 2, 0, NOW, 1.0); /* overdue */
    TASKS(&plan, {0, 1, 0, 99, 0, NOW}, {0, 0, 0, 99, 400, NOW});
    plan_free(&plan);
}

static void test_validate(void)
{
    const plan_input_t inputs[] = {{"gs://b/a", 0, 99, 100, 0}};
    plan_stage_t stages[] = {{"s0", LIST(0), NONE, 100, WAITING, 0},
                             {"s1", NONE, LIST(2), 100, WAITING, 0},
                             {"s2", NONE, LIST(1), 100, WAITING, 0}};
    plan_dag_t dag = DAG("d", 1, inputs, stages);
    const char *why = plan_validate(&dag);
    CHECK(why != NULL && strstr(why, "cycle") != NULL && (strstr(why, "s1") != NULL || strstr(why, "s2") != NULL));
    plan_budget_t b = budget(PLENTY, 0);
    plan_t plan;
    CHECK(plan_make(&dag, 1, &b, &plan) == -1 && plan.tasks == NULL && plan.forecasts == NULL);

    stages[1].after = (const size_t[]){1}; /* itself */
    CHECK_STR(plan_validate(&dag), "stage s1 is in a dependency cycle");
    stages[1].nafter = 0;
    CHECK(plan_validate(&dag) == NULL);
    MAKE(&dag, 1, b, &plan);
    plan_free(&plan);

    stages[2].after = (const size_t[]){3};
    stages[2].nafter = 1;
    CHECK_STR(plan_validate(&dag), "stage s2: dependency 3 is out of range (3 stages)");
    stages[2].nafter = 0;
    stages[0].inputs = (const size_t[]){1};
    CHECK_STR(plan_validate(&dag), "stage s0: input 1 is out of range (1 inputs)");
    stages[0].ninputs = 0;
    CHECK(plan_validate(&dag) == NULL);
    dag.weight = 0;
    CHECK(plan_validate(&dag) != NULL && plan_make(&dag, 1, &b, &plan) == -1);
    dag.weight = 1;
    const plan_input_t backwards[] = {{"gs://b/a", 100, 99, 100, 0}};
    dag.inputs = backwards;
    CHECK_STR(plan_validate(&dag), "input 0 (gs://b/a): first is after last");
    dag.inputs = inputs;
    b.chunk_size = 0;
    CHECK(plan_make(&dag, 1, &b, &plan) == -1);
}

int main(void)
{
    test_ready_first();
    test_start_times();
    test_shared_first();
    test_partial_caching();
    test_cached_counts();
    test_just_in_time();
    test_weighted_dags();
    test_done_stages();
    test_unknown_size();
    test_running();
    test_validate();
    UNIT_DONE();
}
