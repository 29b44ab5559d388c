/*
 * planner.c - the prefetch plan: from the DAGs pipelines announced and what
 * the cache holds of their inputs, the byte ranges to fetch, in order, each
 * with the time not to start it before (the rules are in planner.h).
 *
 * A pure function: everything it knows comes in its arguments, so the whole
 * policy is tested without a clock or a store. How it goes:
 *
 *   1. Each DAG's stages are put in dependency order (a cycle is an error).
 *   2. First estimate of the times: every runtime as if its inputs were all
 *      cached (the predictor at fraction 1.0). That is the soonest a stage
 *      can start, so the inputs planned from it are never planned too late.
 *   3. The inputs still to be read, of all DAGs together, are ordered by
 *      when they are first needed, then by readers, url and range. Space is
 *      one budget for all DAGs, so it is shared out along that one order in
 *      waves of inputs needed at the same time (partial caching).
 *   4. Second estimate: each stage's runtime at the fraction of its input
 *      bytes the plan leaves cached. These are the forecasts, and the tasks'
 *      needed and release times come from them; the order and the amounts
 *      stay those of step 3 (re-planning them would change the fractions
 *      again; the executor re-plans as stages end anyway).
 *   5. One task per chunk, so that fair queuing between DAGs and the
 *      just-in-time release work at the store's own grain. Each DAG's tasks
 *      get release times from its share of the bandwidth, and the DAGs'
 *      lists are merged by weighted fair queuing on bytes.
 *
 * A DONE stage reads nothing any more: its forecast is start = end = now.
 */
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"

/* Exact products of byte counts: a fraction of a size must round the same way every time. */
__extension__ typedef unsigned __int128 wide_t;

/* What the planner works out about one input of one DAG. */
typedef struct input_need {
    const plan_input_t *in;
    size_t dag, input;
    uint64_t wanted;   /* bytes from first on that stages read: the range cut to the object's size */
    uint64_t cached;   /* of those, what the cache holds now */
    uint64_t planned;  /* of those, what to fetch, from first + cached on */
    int64_t needed_ms; /* predicted start of its soonest reader still to run */
    unsigned readers;  /* stages still to run that read it */
    bool sharing;      /* in the share of a wave that does not fit (share_wave) */
} input_need_t;

typedef struct stage_time {
    int64_t start_ms, end_ms;
} stage_time_t;

/* The planner's scratch: flat arrays over all DAGs, each DAG's part starting at its base. */
typedef struct planner {
    const plan_dag_t *dags;
    size_t ndags;
    const plan_budget_t *budget;
    size_t *input_base, *stage_base; /* [ndags + 1] */
    input_need_t *inputs;
    size_t ninputs, nstages;
    size_t *order;          /* per DAG, its stages, each after those it depends on */
    stage_time_t *times;    /* per stage */
    double *fraction;       /* per stage: of its input bytes, cached once the plan has run */
    input_need_t **pending; /* the inputs still to be read, in the order to fetch them */
    size_t npending;
    uint64_t *dag_bytes;    /* per DAG, while tasks are timed */
    int64_t *next_start;    /* per DAG, while release times are set from the last task back */
} planner_t;

/* One task on its way to the merged order. */
typedef struct queued {
    plan_task_t task;
    double virtual_finish;
    size_t seq; /* its place in its DAG's own order */
} queued_t;

/* calloc that does not answer NULL for an empty array, so NULL always means no memory. */
static void *calloc_n(size_t n, size_t size)
{
    return calloc(n > 0 ? n : 1, size);
}

static int64_t add_ms(int64_t a, int64_t b)
{
    return b > 0 && a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* --- validation --- */

static const char *say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Messages naming a stage live here: one per thread, valid until its next plan_validate. */
static const char *say(const char *fmt, ...)
{
    static _Thread_local char message[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return message;
}

enum { UNSEEN, ON_PATH, ORDERED };

/*
 * Puts the stages in order[], each after all it depends on: a depth-first
 * search kept on a stack of its own, since a pipeline may be deep. Returns
 * 0, 1 for a cycle (*culprit: a stage on it) or -1 for no memory.
 */
static int topo_order(const plan_dag_t *dag, size_t *order, size_t *culprit)
{
    size_t n = dag->nstages, done = 0;
    size_t *next = calloc_n(2 * n, sizeof(*next)); /* next[s]: s's next dependency to visit */
    unsigned char *mark = calloc_n(n, 1);
    int rc = next != NULL && mark != NULL ? 0 : -1;
    size_t *stack = next + n;
    for (size_t root = 0; rc == 0 && root < n; root++) {
        if (mark[root] != UNSEEN)
            continue;
        size_t depth = 0;
        stack[depth++] = root;
        mark[root] = ON_PATH;
        while (rc == 0 && depth > 0) {
            size_t s = stack[depth - 1];
            const plan_stage_t *stage = &dag->stages[s];
            if (next[s] == stage->nafter) {
                mark[s] = ORDERED;
                order[done++] = s;
                depth--;
                continue;
            }
            size_t dep = stage->after[next[s]++];
            if (mark[dep] == ON_PATH) {
                *culprit = dep;
                rc = 1;
            } else if (mark[dep] == UNSEEN) {
                mark[dep] = ON_PATH;
                stack[depth++] = dep;
            }
        }
    }
    free(next);
    free(mark);
    return rc;
}

/* What is wrong with a stage's own fields, or NULL. */
static const char *check_stage(const plan_dag_t *dag, const plan_stage_t *stage)
{
    if (stage->id == NULL)
        return "a stage has no id";
    for (size_t i = 0; i < stage->ninputs; i++)
        if (stage->inputs[i] >= dag->ninputs)
            return say("stage %s: input %zu is out of range (%zu inputs)", stage->id, stage->inputs[i], dag->ninputs);
    for (size_t i = 0; i < stage->nafter; i++)
        if (stage->after[i] >= dag->nstages)
            return say("stage %s: dependency %zu is out of range (%zu stages)", stage->id, stage->after[i],
                       dag->nstages);
    return NULL;
}

/* NULL when dag is well formed, its stages then in dependency order in order[nstages]; else what is wrong. */
static const char *check_dag(const plan_dag_t *dag, size_t *order)
{
    if (dag->id == NULL)
        return "the DAG has no id";
    if (!(dag->weight > 0 && dag->weight <= DBL_MAX)) /* nor NaN, nor infinity */
        return "the DAG's weight must be a number more than 0";
    for (size_t i = 0; i < dag->ninputs; i++) {
        if (dag->inputs[i].url == NULL)
            return say("input %zu has no url", i);
        if (dag->inputs[i].first > dag->inputs[i].last)
            return say("input %zu (%s): first is after last", i, dag->inputs[i].url);
    }
    for (size_t s = 0; s < dag->nstages; s++) {
        const char *why = check_stage(dag, &dag->stages[s]);
        if (why != NULL)
            return why;
    }
    size_t culprit = 0;
    int rc = topo_order(dag, order, &culprit);
    if (rc < 0)
        return "no memory to check the DAG's dependencies";
    return rc > 0 ? say("stage %s is in a dependency cycle", dag->stages[culprit].id) : NULL;
}

const char *plan_validate(const plan_dag_t *dag)
{
    if (dag == NULL)
        return "no DAG";
    size_t *order = calloc_n(dag->nstages, sizeof(*order));
    if (order == NULL)
        return "no memory to check the DAG's dependencies";
    const char *why = check_dag(dag, order);
    free(order);
    return why;
}

/* --- times --- */

/* The bytes of an input stages read: to the object's end at most; one chunk when its size is not known yet. */
static uint64_t wanted_bytes(const plan_input_t *in, uint64_t chunk)
{
    if (in->size == 0) /* the first fetch tells the size, and the executor re-plans */
        return in->last - in->first < chunk ? in->last - in->first + 1 : chunk;
    if (in->first >= in->size)
        return 0;
    uint64_t end = in->last < in->size - 1 ? in->last : in->size - 1;
    return end - in->first + 1;
}

/* The predictor's answer, else the stage's expected runtime, else the default. */
static int64_t runtime_ms(const planner_t *p, const plan_dag_t *dag, const plan_stage_t *stage, double fraction)
{
    const plan_budget_t *b = p->budget;
    int64_t ms = b->predict != NULL ? b->predict(b->predict_ctx, dag->id, stage->id, fraction) : -1;
    if (ms < 0)
        ms = stage->expected_runtime_ms;
    if (ms < 0)
        ms = b->default_runtime_ms;
    return ms > 0 ? ms : 0;
}

/* When a waiting stage can start: now, or when its last dependency ends (a done one ended by now). */
static int64_t ready_at(const plan_stage_t *stage, const stage_time_t *times, int64_t now)
{
    int64_t start = now;
    for (size_t i = 0; i < stage->nafter; i++)
        if (times[stage->after[i]].end_ms > start)
            start = times[stage->after[i]].end_ms;
    return start;
}

/* Each stage's predicted start and end; runtimes at the planned fractions, or at 1.0 before there is a plan. */
static void predict_times(planner_t *p, bool planned)
{
    int64_t now = p->budget->now_ms;
    for (size_t d = 0; d < p->ndags; d++) {
        const plan_dag_t *dag = &p->dags[d];
        stage_time_t *times = p->times + p->stage_base[d];
        for (size_t k = 0; k < dag->nstages; k++) {
            size_t s = p->order[p->stage_base[d] + k];
            const plan_stage_t *stage = &dag->stages[s];
            stage_time_t *t = &times[s];
            if (stage->state == PLAN_STAGE_DONE) {
                t->start_ms = t->end_ms = now;
                continue;
            }
            t->start_ms = stage->state == PLAN_STAGE_RUNNING ? stage->started_ms : ready_at(stage, times, now);
            double fraction = planned ? p->fraction[p->stage_base[d] + s] : 1.0;
            t->end_ms = add_ms(t->start_ms, runtime_ms(p, dag, stage, fraction));
            if (stage->state == PLAN_STAGE_RUNNING && t->end_ms < now)
                t->end_ms = now; /* still running: it ends now at the soonest */
        }
    }
}

/* Readers and needed times of every input, from the stages still to run and their predicted starts. */
static void find_readers(planner_t *p)
{
    for (size_t i = 0; i < p->ninputs; i++) {
        p->inputs[i].readers = 0;
        p->inputs[i].needed_ms = INT64_MAX;
    }
    for (size_t d = 0; d < p->ndags; d++) {
        const plan_dag_t *dag = &p->dags[d];
        for (size_t s = 0; s < dag->nstages; s++) {
            const plan_stage_t *stage = &dag->stages[s];
            if (stage->state == PLAN_STAGE_DONE)
                continue;
            int64_t start = p->times[p->stage_base[d] + s].start_ms;
            for (size_t i = 0; i < stage->ninputs; i++) {
                input_need_t *need = &p->inputs[p->input_base[d] + stage->inputs[i]];
                need->readers++;
                if (start < need->needed_ms)
                    need->needed_ms = start;
            }
        }
    }
}

/* --- order and space --- */

/* Soonest needed first; then the most readers; then by url and range, and by place, so that the order is total. */
static int by_need(const void *a, const void *b)
{
    const input_need_t *x = *(input_need_t *const *)a, *y = *(input_need_t *const *)b;
    if (x->needed_ms != y->needed_ms)
        return x->needed_ms < y->needed_ms ? -1 : 1;
    if (x->readers != y->readers)
        return x->readers > y->readers ? -1 : 1;
    int c = strcmp(x->in->url, y->in->url);
    if (c != 0)
        return c;
    if (x->in->first != y->in->first)
        return x->in->first < y->in->first ? -1 : 1;
    if (x->in->last != y->in->last)
        return x->in->last < y->in->last ? -1 : 1;
    if (x->dag != y->dag)
        return x->dag < y->dag ? -1 : 1;
    return x->input < y->input ? -1 : x->input > y->input;
}

static void order_pending(planner_t *p)
{
    p->npending = 0;
    for (size_t i = 0; i < p->ninputs; i++)
        if (p->inputs[i].readers > 0)
            p->pending[p->npending++] = &p->inputs[i];
    if (p->npending > 0)
        qsort(p->pending, p->npending, sizeof(*p->pending), by_need);
}

/*
 * A wave that does not fit in left bytes: every input gets the same leading
 * fraction f of its wanted bytes, f such that the bytes beyond what each
 * holds already add up to left. Inputs cached beyond f take no part, which
 * raises f for the others, so the set is narrowed until it holds still
 * (each pass only drops inputs that are out at the final f too). Then each
 * gets its bytes up to f in whole chunks, and one chunk at the least: a
 * little of every input is worth more than all of a few.
 */
static void share_wave(input_need_t **wave, size_t n, uint64_t left, uint64_t chunk)
{
    for (size_t i = 0; i < n; i++)
        wave[i]->sharing = wave[i]->cached < wave[i]->wanted;
    wide_t num, den; /* f = num / den */
    for (bool narrowed = true; narrowed;) {
        num = left, den = 0;
        for (size_t i = 0; i < n; i++)
            if (wave[i]->sharing)
                num += wave[i]->cached, den += wave[i]->wanted;
        narrowed = false;
        for (size_t i = 0; i < n; i++)
            if (wave[i]->sharing && (wide_t)wave[i]->cached * den >= num * wave[i]->wanted)
                wave[i]->sharing = false, narrowed = true;
    }
    for (size_t i = 0; i < n; i++) {
        input_need_t *need = wave[i];
        if (!need->sharing)
            continue;
        uint64_t target = (uint64_t)(num * need->wanted / den), more = target - need->cached;
        more -= more % chunk;
        if (more == 0)
            more = chunk;
        need->planned = more < need->wanted - need->cached ? more : need->wanted - need->cached;
    }
}

/*
 * Shares space_bytes out along the pending order, a wave of inputs needed at
 * the same time after another. What is cached already counts. The first
 * wave that does not fit is shared (share_wave) and ends the plan: later
 * ones wait for these stages to end and free space, and a re-plan then.
 */
static void plan_space(planner_t *p)
{
    uint64_t space = p->budget->space_bytes, used = 0;
    for (size_t i = 0; i < p->npending; i++)
        used += p->pending[i]->cached;
    for (size_t i = 0, end; i < p->npending; i = end) {
        uint64_t uncached = 0;
        for (end = i; end < p->npending && p->pending[end]->needed_ms == p->pending[i]->needed_ms; end++)
            uncached += p->pending[end]->wanted - p->pending[end]->cached;
        uint64_t left = used < space ? space - used : 0;
        if (uncached > left) {
            if (left > 0)
                share_wave(&p->pending[i], end - i, left, p->budget->chunk_size);
            return;
        }
        for (size_t j = i; j < end; j++)
            p->pending[j]->planned = p->pending[j]->wanted - p->pending[j]->cached;
        used += uncached;
    }
}

/* Each stage's fraction of input bytes cached once the plan has run; 1 for a stage that reads nothing. */
static void plan_fractions(planner_t *p)
{
    for (size_t d = 0; d < p->ndags; d++) {
        const plan_dag_t *dag = &p->dags[d];
        for (size_t s = 0; s < dag->nstages; s++) {
            const plan_stage_t *stage = &dag->stages[s];
            uint64_t wanted = 0, held = 0;
            for (size_t i = 0; i < stage->ninputs; i++) {
                const input_need_t *need = &p->inputs[p->input_base[d] + stage->inputs[i]];
                wanted += need->wanted;
                held += need->cached + need->planned;
            }
            p->fraction[p->stage_base[d] + s] = wanted > 0 ? (double)held / (double)wanted : 1.0;
        }
    }
}

/* --- tasks --- */

/* Milliseconds bytes take at the DAG's share of the bandwidth, rounded up (a millisecond early rather than late). */
static int64_t lead_ms(const plan_budget_t *b, uint64_t bytes, double share)
{
    double lead = (double)bytes * 1000.0 / ((double)b->bandwidth_bps * share);
    if (lead >= (double)INT64_MAX / 2)
        return INT64_MAX / 2;
    int64_t whole = (int64_t)lead;
    return (double)whole < lead ? whole + 1 : whole;
}

/* The pending inputs' planned bytes as chunks, in the pending order. */
static void chunk_tasks(const planner_t *p, queued_t *q)
{
    uint64_t chunk = p->budget->chunk_size;
    size_t n = 0;
    for (size_t i = 0; i < p->npending; i++) {
        const input_need_t *need = p->pending[i];
        uint64_t start = need->in->first + need->cached;
        for (uint64_t at = 0; at < need->planned; at += chunk) {
            uint64_t len = need->planned - at < chunk ? need->planned - at : chunk;
            q[n].task = (plan_task_t){.dag = need->dag, .input = need->input, .first = start + at,
                                      .last = start + at + len - 1, .needed_ms = need->needed_ms,
                                      .readers = need->readers};
            q[n].seq = n;
            n++;
        }
    }
}

/*
 * Release times: each DAG's tasks scheduled as late as they can be, from the
 * last back: a task must end by the time it is needed and by the start of
 * the task after it, at the DAG's share of the bandwidth; it is released at
 * that start. So the bytes needed first go first, and all end just in time.
 * Reads of a stage that may start now go now, and take the DAG's share
 * first: a task whose start falls before they are done is late already, and
 * is released now too.
 */
static void release_tasks(planner_t *p, queued_t *q, size_t n, double weights)
{
    const plan_budget_t *b = p->budget;
    uint64_t *ready_bytes = p->dag_bytes; /* free again once the virtual finishes are set */
    memset(ready_bytes, 0, p->ndags * sizeof(*ready_bytes));
    for (size_t k = 0; k < n; k++)
        if (q[k].task.needed_ms <= b->now_ms)
            ready_bytes[q[k].task.dag] += q[k].task.last - q[k].task.first + 1;
    for (size_t d = 0; d < p->ndags; d++)
        p->next_start[d] = INT64_MAX;
    for (size_t k = n; k-- > 0;) {
        plan_task_t *t = &q[k].task;
        t->release_ms = b->now_ms;
        if (b->bandwidth_bps == 0 || t->needed_ms <= b->now_ms)
            continue;
        double share = p->dags[t->dag].weight / weights;
        int64_t end = t->needed_ms < p->next_start[t->dag] ? t->needed_ms : p->next_start[t->dag];
        int64_t start = end - lead_ms(b, t->last - t->first + 1, share);
        p->next_start[t->dag] = start;
        if (start >= b->now_ms + lead_ms(b, ready_bytes[t->dag], share))
            t->release_ms = start;
    }
}

/* Release times, and virtual finishes for fair queuing (from the bytes of the DAG's tasks so far). */
static void time_tasks(planner_t *p, queued_t *q, size_t n)
{
    memset(p->dag_bytes, 0, p->ndags * sizeof(*p->dag_bytes));
    for (size_t k = 0; k < n; k++)
        p->dag_bytes[q[k].task.dag] += q[k].task.last - q[k].task.first + 1;
    double weights = 0; /* of the DAGs that have tasks: the others need no bandwidth */
    for (size_t d = 0; d < p->ndags; d++)
        if (p->dag_bytes[d] > 0)
            weights += p->dags[d].weight;
    memset(p->dag_bytes, 0, p->ndags * sizeof(*p->dag_bytes));
    for (size_t k = 0; k < n; k++) {
        plan_task_t *t = &q[k].task;
        double weight = p->dags[t->dag].weight;
        uint64_t bytes = p->dag_bytes[t->dag] += t->last - t->first + 1;
        q[k].virtual_finish = (double)bytes / weight;
    }
    release_tasks(p, q, n, weights);
}

static int by_virtual_finish(const void *a, const void *b)
{
    const queued_t *x = a, *y = b;
    if (x->virtual_finish != y->virtual_finish)
        return x->virtual_finish < y->virtual_finish ? -1 : 1;
    if (x->task.dag != y->task.dag)
        return x->task.dag < y->task.dag ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int make_tasks(planner_t *p, plan_t *out)
{
    uint64_t chunk = p->budget->chunk_size;
    size_t n = 0;
    for (size_t i = 0; i < p->npending; i++)
        n += (size_t)(p->pending[i]->planned / chunk + (p->pending[i]->planned % chunk != 0));
    if (n == 0)
        return 0;
    queued_t *q = calloc(n, sizeof(*q));
    out->tasks = calloc(n, sizeof(*out->tasks));
    if (q == NULL || out->tasks == NULL) {
        free(q);
        return -1; /* the caller frees out */
    }
    chunk_tasks(p, q);
    time_tasks(p, q, n);
    qsort(q, n, sizeof(*q), by_virtual_finish);
    for (size_t k = 0; k < n; k++)
        out->tasks[k] = q[k].task;
    out->ntasks = n;
    free(q);
    return 0;
}

static void write_forecasts(const planner_t *p, plan_t *out)
{
    for (size_t d = 0; d < p->ndags; d++) {
        for (size_t s = 0; s < p->dags[d].nstages; s++) {
            size_t at = p->stage_base[d] + s;
            out->forecasts[d][s] = (plan_stage_forecast_t){.start_ms = p->times[at].start_ms,
                                                           .end_ms = p->times[at].end_ms,
                                                           .cached_fraction = p->fraction[at]};
        }
        for (size_t i = 0; i < p->dags[d].ninputs; i++)
            out->retain[d][i] = p->inputs[p->input_base[d] + i].readers > 0;
    }
}

/* --- the plan --- */

static void planner_free(planner_t *p)
{
    free(p->input_base);
    free(p->stage_base);
    free(p->inputs);
    free(p->order);
    free(p->times);
    free(p->fraction);
    free(p->pending);
    free(p->dag_bytes);
    free(p->next_start);
}

/* The scratch, the inputs' ranges, and each DAG checked and put in dependency order. */
static int planner_init(planner_t *p, const plan_dag_t *dags, size_t ndags, const plan_budget_t *budget)
{
    *p = (planner_t){.dags = dags, .ndags = ndags, .budget = budget};
    for (size_t d = 0; d < ndags; d++)
        p->ninputs += dags[d].ninputs, p->nstages += dags[d].nstages;
    p->input_base = calloc_n(ndags + 1, sizeof(*p->input_base));
    p->stage_base = calloc_n(ndags + 1, sizeof(*p->stage_base));
    p->inputs = calloc_n(p->ninputs, sizeof(*p->inputs));
    p->order = calloc_n(p->nstages, sizeof(*p->order));
    p->times = calloc_n(p->nstages, sizeof(*p->times));
    p->fraction = calloc_n(p->nstages, sizeof(*p->fraction));
    p->pending = calloc_n(p->ninputs, sizeof(*p->pending));
    p->dag_bytes = calloc_n(ndags, sizeof(*p->dag_bytes));
    p->next_start = calloc_n(ndags, sizeof(*p->next_start));
    if (p->input_base == NULL || p->stage_base == NULL || p->inputs == NULL || p->order == NULL ||
        p->times == NULL || p->fraction == NULL || p->pending == NULL || p->dag_bytes == NULL ||
        p->next_start == NULL)
        return -1;
    for (size_t d = 0; d < ndags; d++) {
        p->input_base[d + 1] = p->input_base[d] + dags[d].ninputs;
        p->stage_base[d + 1] = p->stage_base[d] + dags[d].nstages;
        if (check_dag(&dags[d], p->order + p->stage_base[d]) != NULL)
            return -1;
        for (size_t i = 0; i < dags[d].ninputs; i++) {
            input_need_t *need = &p->inputs[p->input_base[d] + i];
            need->in = &dags[d].inputs[i];
            need->dag = d, need->input = i;
            need->wanted = wanted_bytes(need->in, budget->chunk_size);
            need->cached = need->in->cached < need->wanted ? need->in->cached : need->wanted;
        }
    }
    return 0;
}

static int plan_alloc(plan_t *out, const plan_dag_t *dags, size_t ndags)
{
    out->forecasts = calloc_n(ndags, sizeof(*out->forecasts));
    out->retain = calloc_n(ndags, sizeof(*out->retain));
    if (out->forecasts == NULL || out->retain == NULL)
        return -1;
    out->ndags = ndags;
    for (size_t d = 0; d < ndags; d++) {
        out->forecasts[d] = calloc_n(dags[d].nstages, sizeof(**out->forecasts));
        out->retain[d] = calloc_n(dags[d].ninputs, sizeof(**out->retain));
        if (out->forecasts[d] == NULL || out->retain[d] == NULL)
            return -1;
    }
    return 0;
}

int plan_make(const plan_dag_t *dags, size_t ndags, const plan_budget_t *budget, plan_t *out)
{
    memset(out, 0, sizeof(*out));
    if (budget->chunk_size == 0)
        return -1;
    planner_t p;
    int rc = planner_init(&p, dags, ndags, budget);
    if (rc == 0)
        rc = plan_alloc(out, dags, ndags);
    if (rc == 0) {
        predict_times(&p, false);
        find_readers(&p);
        order_pending(&p);
        plan_space(&p);
        plan_fractions(&p);
        predict_times(&p, true);
        find_readers(&p); /* the readers stay; the needed times are the forecasts' */
        write_forecasts(&p, out);
        rc = make_tasks(&p, out);
    }
    if (rc != 0)
        plan_free(out);
    planner_free(&p);
    return rc;
}

void plan_free(plan_t *plan)
{
    for (size_t d = 0; d < plan->ndags; d++) {
        free(plan->forecasts[d]);
        free(plan->retain[d]);
    }
    free(plan->forecasts);
    free(plan->retain);
    free(plan->tasks);
    memset(plan, 0, sizeof(*plan));
}
