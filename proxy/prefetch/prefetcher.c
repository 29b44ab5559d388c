/*
 * prefetcher.c - the jobs callers submitted, and the thread that fetches
 * them (see prefetcher.h).
 *
 * One lock guards the jobs; the admin endpoints take it to add, show,
 * notify and end jobs, and the thread takes it for each round:
 *
 *   1. look at what the store holds of every input (cached bytes),
 *   2. plan (planner.h) and keep the forecasts for GET,
 *   3. note which inputs to retain or release (retain.c does it, unlocked:
 *      lease calls wait for a commit, and this thread may wait),
 *   4. start the pieces the plan releases, while the connections, the
 *      bandwidth (a token bucket) and demand reads allow: a read waiting on
 *      upstream that is not ours holds new pieces back,
 *
 * then waits on its curl multi for at most a tick and takes in the pieces
 * that ended. A job DELETEd is released and freed once none of its pieces
 * is in flight.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "job.h"
#include "piece.h"
#include "prefetcher.h"
#include "retain.h"
#include "worker.h"

#define MAX_JOBS 256
#define TICK_MS 50
#define IDLE_MS 60000
/* A piece is at most this many chunks, and about half a second of the bandwidth budget. */
#define PIECE_CHUNKS_MAX 8
/* Transient failures (5xx, resets) of one input before it is given up. */
#define MAX_FAILURES 3
/* Every so many rounds the cached bytes are counted again from each input's start (eviction). */
#define RECOUNT_ROUNDS 20

struct prefetcher {
    const conf_t *conf;
    cache_t *cache;
    store_t *store;
    char *base_url;
    bool insecure;
    pthread_t thread;
    pthread_mutex_t lock; /* guards jobs, njobs, stopping, history, bytes, retained, and inflight's reads */
    job_t *jobs[MAX_JOBS];
    size_t njobs;
    bool stopping;
    history_t *history;
    CURLM *multi;
    retain_t *retain;
    uint64_t bytes;       /* received by all pieces since start */
    size_t retained;      /* inputs held by retain.c after the last sync */
    /* The thread's own (inflight written under the lock too, for the metrics). */
    piece_t **flying;     /* in the multi now, max_connections of them at most */
    size_t inflight;
    double tokens;
    int64_t tokens_ms;
    uint64_t piece_bytes;
    unsigned round;
};

/* --- the loopback address --- */

/* A client-facing listener's URL as seen from here; NULL when larder has none. */
static char *loopback_url(const conf_t *conf, bool *tls)
{
    for (size_t i = 0; i < conf->num_listeners; i++) {
        const conf_listener_t *l = &conf->listeners[i];
        if (l->admin)
            continue;
        const char *host = l->address;
        bool v6 = strchr(host, ':') != NULL;
        if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
            host = "127.0.0.1";
        else if (strcmp(host, "::") == 0)
            host = "::1";
        *tls = l->tls_cert != NULL;
        size_t len = strlen(host) + 32;
        char *url = malloc(len);
        if (url != NULL)
            snprintf(url, len, "%s://%s%s%s:%u", *tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "",
                     l->port);
        return url;
    }
    return NULL;
}

/* --- what the store holds --- */

static uint64_t wanted_end(const job_input_t *in)
{
    uint64_t end = in->last;
    if (in->size != 0 && (end == PLAN_TO_END || end > in->size - 1))
        end = in->size - 1;
    return end;
}

/* Contiguous bytes from in->first the store holds, counted on from what was seen last unless recount. */
static void count_cached(prefetcher_t *p, job_input_t *in, bool recount)
{
    store_key_t key;
    store_key_make(&key, in->bucket, strlen(in->bucket), in->name, strlen(in->name));
    store_meta_t meta;
    if (store_meta_get(p->store, &key, &meta) != STORE_OK) {
        in->cached = 0;
        return;
    }
    if (meta.size != STORE_SIZE_UNKNOWN)
        in->size = meta.size;
    int64_t generation = meta.generation;
    store_meta_free(&meta);
    if (in->size == 0 || in->first >= in->size) {
        in->cached = 0;
        return;
    }
    uint64_t end = wanted_end(in) + 1, at = recount ? in->first : in->first + in->cached;
    uint64_t chunk = at / STORE_CHUNK_SIZE;
    while (at < end && store_chunk_present(p->store, &key, generation, (uint32_t)chunk)) {
        chunk++;
        at = chunk * STORE_CHUNK_SIZE;
    }
    in->cached = (at < end ? at : end) - in->first;
    if (at >= end && in->state != INPUT_FAILED)
        in->state = INPUT_DONE;
}

/* An input some stage of its job writes, and that stage is not done: there is nothing to fetch yet. */
static bool not_produced_yet(const job_t *job, const job_input_t *in)
{
    return in->produced_by >= 0 && job->stages[in->produced_by].state != PLAN_STAGE_DONE;
}

/* --- planning --- */

typedef struct plan_view {
    plan_dag_t *dags;
    size_t ndags;
    job_t **jobs;        /* the job of each plan DAG */
    size_t **input_map;  /* [dag][plan input] -> the job's input index */
    plan_input_t **inputs;
    plan_stage_t **stages;
    size_t **stage_inputs, **stage_after;
} plan_view_t;

static void view_free(plan_view_t *v)
{
    for (size_t i = 0; i < v->ndags; i++) {
        free(v->input_map[i]);
        free(v->inputs[i]);
        free(v->stages[i]);
        free(v->stage_inputs[i]);
        free(v->stage_after[i]);
    }
    free(v->dags);
    free(v->jobs);
    free(v->input_map);
    free(v->inputs);
    free(v->stages);
    free(v->stage_inputs);
    free(v->stage_after);
    memset(v, 0, sizeof(*v));
}

/* When a waiting stage's last dependency was done (the job's creation, for a stage with none); -1: not yet. */
static int64_t ready_since(const job_t *job, const job_stage_t *s)
{
    int64_t since = job->created_ms;
    for (size_t k = 0; k < s->nafter; k++) {
        const job_stage_t *dep = &job->stages[s->after[k]];
        if (dep->state != PLAN_STAGE_DONE)
            return -1;
        if (dep->done_ms > since)
            since = dep->done_ms;
    }
    return since;
}

/* The inputs that can be fetched now, the bytes asked for counted as cached; back[i]: input i's index, or SIZE_MAX. */
static size_t view_inputs(const job_t *job, plan_input_t *inputs, size_t *map, size_t *back)
{
    size_t n = 0;
    for (size_t i = 0; i < job->ninputs; i++) {
        const job_input_t *in = &job->inputs[i];
        back[i] = SIZE_MAX;
        if (not_produced_yet(job, in) || in->state == INPUT_FAILED)
            continue;
        uint64_t asked = in->cached > in->requested ? in->cached : in->requested;
        inputs[n] = (plan_input_t){in->url, in->first, in->last, in->size, asked};
        map[n] = i;
        back[i] = n++;
    }
    return n;
}

/* The stages, their inputs renumbered by back, into stages, refs and after (sized for all of them). */
static void view_stages(const job_t *job, const size_t *back, plan_stage_t *stages, size_t *refs, size_t *after)
{
    for (size_t s = 0; s < job->nstages; s++) {
        const job_stage_t *js = &job->stages[s];
        plan_stage_t *ps = &stages[s];
        *ps = (plan_stage_t){js->id, refs, 0, after, js->nafter, js->expected_runtime_ms, js->state, js->started_ms};
        /*
         * A stage that could start but was not said to has started, for the plan, when it could: else its
         * predicted start would slide with the clock, and so would every later stage's, and their inputs'
         * release times with them.
         */
        int64_t ready_ms = ready_since(job, js);
        if (js->state == PLAN_STAGE_WAITING && ready_ms >= 0) {
            ps->state = PLAN_STAGE_RUNNING;
            ps->started_ms = ready_ms;
        }
        for (size_t k = 0; k < js->ninputs; k++)
            if (back[js->inputs[k]] != SIZE_MAX)
                refs[ps->ninputs++] = back[js->inputs[k]];
        memcpy(after, js->after, js->nafter * sizeof(*after));
        refs += ps->ninputs;
        after += js->nafter;
    }
}

/* The job as the planner sees it, into slot d of the view (whose arrays own what is allocated here). */
static bool view_job(plan_view_t *v, size_t d, job_t *job)
{
    size_t total_refs = 0, total_after = 0;
    for (size_t s = 0; s < job->nstages; s++) {
        total_refs += job->stages[s].ninputs;
        total_after += job->stages[s].nafter;
    }
    size_t *back = calloc(job->ninputs + 1, sizeof(*back));
    v->input_map[d] = calloc(job->ninputs + 1, sizeof(*v->input_map[d]));
    v->inputs[d] = calloc(job->ninputs + 1, sizeof(*v->inputs[d]));
    v->stages[d] = calloc(job->nstages, sizeof(*v->stages[d]));
    v->stage_inputs[d] = calloc(total_refs + 1, sizeof(*v->stage_inputs[d]));
    v->stage_after[d] = calloc(total_after + 1, sizeof(*v->stage_after[d]));
    bool ok = back != NULL && v->input_map[d] != NULL && v->inputs[d] != NULL && v->stages[d] != NULL &&
              v->stage_inputs[d] != NULL && v->stage_after[d] != NULL;
    if (ok) {
        size_t n = view_inputs(job, v->inputs[d], v->input_map[d], back);
        view_stages(job, back, v->stages[d], v->stage_inputs[d], v->stage_after[d]);
        v->dags[d] = (plan_dag_t){job->id, job->weight, v->inputs[d], n, v->stages[d], job->nstages};
        v->jobs[d] = job;
    }
    free(back);
    return ok;
}

static bool view_make(prefetcher_t *p, plan_view_t *v)
{
    memset(v, 0, sizeof(*v));
    size_t n = p->njobs;
    v->dags = calloc(n + 1, sizeof(*v->dags));
    v->jobs = calloc(n + 1, sizeof(*v->jobs));
    v->input_map = calloc(n + 1, sizeof(*v->input_map));
    v->inputs = calloc(n + 1, sizeof(*v->inputs));
    v->stages = calloc(n + 1, sizeof(*v->stages));
    v->stage_inputs = calloc(n + 1, sizeof(*v->stage_inputs));
    v->stage_after = calloc(n + 1, sizeof(*v->stage_after));
    if (v->dags == NULL || v->jobs == NULL || v->input_map == NULL || v->inputs == NULL || v->stages == NULL ||
        v->stage_inputs == NULL || v->stage_after == NULL) {
        view_free(v);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        job_t *job = p->jobs[i];
        if (job->ended)
            continue;
        v->ndags++;
        if (!view_job(v, v->ndags - 1, job)) {
            view_free(v);
            return false;
        }
    }
    return true;
}

static int64_t predict(void *ctx, const char *dag, const char *stage, double cached_fraction)
{
    return history_predict(ctx, dag, stage, cached_fraction);
}

/* What the inputs of jobs still to run may hold: the low-water share of the budget less other leases' pins. */
static uint64_t space_for_inputs(prefetcher_t *p)
{
    store_stats_t st;
    store_stats_get(p->store, &st);
    uint64_t space = st.budget / 100 * p->conf->store.low_water_percent;
    uint64_t others = st.lease_pinned_bytes > retain_bytes(p->retain) ? st.lease_pinned_bytes - retain_bytes(p->retain)
                                                                        : 0;
    return space > others ? space - others : 0;
}

/* Plans every job not ended; keeps the forecasts; returns the plan (its view in *v) or -1. */
static int plan_round(prefetcher_t *p, plan_view_t *v, plan_t *plan, int64_t now)
{
    if (!view_make(p, v))
        return -1;
    plan_budget_t budget = {.now_ms = now,
                            .space_bytes = space_for_inputs(p),
                            .bandwidth_bps = p->conf->prefetch.max_bandwidth,
                            .chunk_size = STORE_CHUNK_SIZE,
                            .default_runtime_ms = 1000,
                            .predict = predict,
                            .predict_ctx = p->history};
    if (plan_make(v->dags, v->ndags, &budget, plan) != 0) {
        view_free(v);
        return -1;
    }
    for (size_t d = 0; d < v->ndags; d++) {
        job_t *job = v->jobs[d];
        if (job->forecasts == NULL)
            job->forecasts = calloc(job->nstages, sizeof(*job->forecasts));
        if (job->forecasts != NULL)
            memcpy(job->forecasts, plan->forecasts[d], job->nstages * sizeof(*job->forecasts));
    }
    return 0;
}

/* The inputs to hold from eviction: the plan's, of DAGs (a list retains nothing). Returns how many. */
static size_t wanted_inputs(const plan_view_t *v, const plan_t *plan, retain_want_t **out)
{
    size_t n = 0, cap = 0;
    retain_want_t *wants = NULL;
    for (size_t d = 0; d < v->ndags; d++) {
        job_t *job = v->jobs[d];
        for (size_t i = 0; job->dag && i < v->dags[d].ninputs; i++) {
            if (!plan->retain[d][i])
                continue;
            if (n == cap) {
                cap = cap != 0 ? cap * 2 : 32;
                retain_want_t *grown = realloc(wants, cap * sizeof(*grown));
                if (grown == NULL)
                    break;
                wants = grown;
            }
            job_input_t *in = &job->inputs[v->input_map[d][i]];
            retain_want_t *w = &wants[n++];
            snprintf(w->id, sizeof(w->id), "pf.%s.%zu", job->id, v->input_map[d][i]);
            w->bucket = in->bucket;
            w->name = in->name;
            w->bytes = in->cached;
        }
    }
    *out = wants;
    return n;
}

/* --- pieces --- */

static void refill_tokens(prefetcher_t *p, int64_t now)
{
    uint64_t rate = p->conf->prefetch.max_bandwidth;
    if (rate == 0)
        return;
    p->tokens += (double)rate * (double)(now - p->tokens_ms) / 1000.0;
    if (p->tokens > (double)p->piece_bytes)
        p->tokens = (double)p->piece_bytes;
    p->tokens_ms = now;
}

/*
 * Whether a piece may start now: within the bandwidth budget, and on a
 * connection demand reads leave free. Each fill a client's read waits on
 * takes one of prefetch.max_connections away, so demand comes first and
 * prefetch uses what is left of upstream beside it, rather than none of it
 * while any client reads (a pipeline always has one reading).
 */
static bool may_start(prefetcher_t *p, uint64_t bytes)
{
    uint64_t demand = cache_demand_fills(p->cache);
    if (p->inflight + demand >= p->conf->prefetch.max_connections)
        return false;
    return p->conf->prefetch.max_bandwidth == 0 || p->tokens >= (double)bytes;
}

/* The piece's request, in the job's words; the strings are copied by piece_new. */
static piece_t *start_piece(prefetcher_t *p, job_t *job, size_t index, uint64_t first, uint64_t last)
{
    job_input_t *in = &job->inputs[index];
    piece_request_t r = {.base_url = p->base_url, .insecure = p->insecure, .bucket = in->bucket, .name = in->name,
                         .first = first, .last = last, .authorization = job->authorization, .batch = job->batch,
                         .job_id = job->id};
    piece_t *piece = piece_new(&r);
    if (piece == NULL)
        return NULL;
    piece->job = job;
    piece->input = index;
    job->inflight++;
    in->requested = last + 1 - in->first;
    in->state = INPUT_FETCHING;
    if (p->conf->prefetch.max_bandwidth != 0)
        p->tokens -= (double)(last + 1 - first);
    p->inflight++;
    return piece;
}

/* An input with released chunks: up to where, contiguously from its front (the plan's tasks are chunks). */
typedef struct released {
    size_t dag, input;
    uint64_t last;
} released_t;

/* The inputs the plan releases now, in the order of their first task, each with how far it is released. */
static size_t released_inputs(const plan_t *plan, int64_t now, released_t *out)
{
    size_t n = 0;
    for (size_t t = 0; t < plan->ntasks; t++) {
        const plan_task_t *task = &plan->tasks[t];
        if (task->release_ms > now)
            continue;
        size_t k = 0;
        while (k < n && !(out[k].dag == task->dag && out[k].input == task->input))
            k++;
        if (k == n)
            out[n++] = (released_t){task->dag, task->input, task->last};
        else if (task->last > out[k].last)
            out[k].last = task->last;
    }
    return n;
}

/*
 * Starts what the plan releases now, in its order, in pieces of up to
 * piece_bytes over consecutive released chunks (one request per chunk would
 * pay upstream's latency per chunk); they go to *started, room at most.
 */
static size_t start_released(prefetcher_t *p, const plan_view_t *v, const plan_t *plan, int64_t now,
                             piece_t **started, size_t room)
{
    released_t *inputs = calloc(plan->ntasks + 1, sizeof(*inputs));
    if (inputs == NULL)
        return 0;
    size_t ninputs = released_inputs(plan, now, inputs), n = 0;
    for (size_t k = 0; k < ninputs && n < room; k++) {
        job_t *job = v->jobs[inputs[k].dag];
        size_t index = v->input_map[inputs[k].dag][inputs[k].input];
        job_input_t *in = &job->inputs[index];
        uint64_t next = in->first + (in->cached > in->requested ? in->cached : in->requested);
        while (next <= inputs[k].last && n < room) {
            uint64_t last = next + p->piece_bytes - 1;
            if (last > inputs[k].last)
                last = inputs[k].last;
            if (!may_start(p, last + 1 - next))
                goto out;
            piece_t *piece = start_piece(p, job, index, next, last);
            if (piece == NULL)
                goto out;
            started[n++] = piece;
            next = last + 1;
        }
    }
out:
    free(inputs);
    return n;
}

/* A piece ended: what it says of its input. Under the lock. */
static void piece_ended(prefetcher_t *p, piece_t *piece)
{
    job_t *job = piece->job;
    job_input_t *in = &job->inputs[piece->input];
    job->inflight--;
    p->inflight--;
    long st = piece->status;
    if (st == 206 || st == 200) { /* an error's body is no object's bytes */
        in->fetched += piece->received;
        job->bytes_fetched += piece->received;
        p->bytes += piece->received;
    }
    if (piece->object_size != 0)
        in->size = piece->object_size;
    if (st == 206 || st == 200 || st == 416) {
        if (st == 200 && piece->first == 0)
            in->size = piece->received;
        if (in->size != 0 && in->first + in->requested > wanted_end(in))
            in->state = INPUT_DONE;
        return;
    }
    uint64_t back_to = piece->first - in->first;
    if (in->requested > back_to)
        in->requested = back_to; /* to be asked again */
    if (st == 400 || st == 401 || st == 403 || st == 404 || ++in->failures > MAX_FAILURES) {
        char why[160];
        if (st != 0)
            snprintf(why, sizeof(why), "larder answered %ld", st);
        else
            snprintf(why, sizeof(why), "%.150s", piece->error);
        free(in->error);
        in->error = strdup(why);
        in->state = INPUT_FAILED;
    }
}

/* --- the thread --- */

/* Jobs DELETEd with no piece in flight: out of the table (their leases go at the next sync). */
static void drop_ended(prefetcher_t *p)
{
    for (size_t i = 0; i < p->njobs;) {
        job_t *job = p->jobs[i];
        if (job->ended && job->inflight == 0) {
            job_free(job);
            p->jobs[i] = p->jobs[--p->njobs];
            continue;
        }
        i++;
    }
}

/* Steps 1 to 4 of a round (see the top); the pieces to add to the multi into started. Under the lock. */
static size_t plan_and_start(prefetcher_t *p, int64_t now, piece_t **started, retain_want_t **wants, size_t *nwants)
{
    bool recount = p->round++ % RECOUNT_ROUNDS == 0;
    for (size_t j = 0; j < p->njobs; j++)
        for (size_t i = 0; !p->jobs[j]->ended && i < p->jobs[j]->ninputs; i++) {
            job_input_t *in = &p->jobs[j]->inputs[i];
            /* A given-up input is not looked at again, a fetched one only when all are counted again. */
            bool settled = in->state == INPUT_FAILED || (in->state == INPUT_DONE && !recount);
            if (!settled && !not_produced_yet(p->jobs[j], in))
                count_cached(p, in, recount);
        }
    drop_ended(p);
    plan_view_t v;
    plan_t plan;
    *nwants = 0;
    *wants = NULL;
    if (plan_round(p, &v, &plan, now) != 0)
        return 0;
    *nwants = wanted_inputs(&v, &plan, wants);
    refill_tokens(p, now);
    size_t room = p->conf->prefetch.max_connections > p->inflight ? p->conf->prefetch.max_connections - p->inflight : 0;
    size_t n = start_released(p, &v, &plan, now, started, room);
    plan_free(&plan);
    view_free(&v);
    return n;
}

/* The retained flags, as the leases stand after a sync. Under the lock. */
static void note_retained(prefetcher_t *p)
{
    p->retained = 0;
    for (size_t j = 0; j < p->njobs; j++) {
        job_t *job = p->jobs[j];
        for (size_t i = 0; i < job->ninputs; i++) {
            char id[STORE_LEASE_ID_MAX + 1];
            snprintf(id, sizeof(id), "pf.%s.%zu", job->id, i);
            job->inputs[i].retained = job->dag && retain_holds(p->retain, id);
            p->retained += job->inputs[i].retained;
        }
    }
}

static void forget_flying(prefetcher_t *p, piece_t *piece)
{
    for (size_t i = 0; i < p->conf->prefetch.max_connections; i++)
        if (p->flying[i] == piece)
            p->flying[i] = NULL;
}

static bool add_flying(prefetcher_t *p, piece_t *piece)
{
    for (size_t i = 0; i < p->conf->prefetch.max_connections; i++)
        if (p->flying[i] == NULL) {
            if (curl_multi_add_handle(p->multi, piece->easy) != CURLM_OK)
                return false;
            p->flying[i] = piece;
            return true;
        }
    return false;
}

static void take_ended_pieces(prefetcher_t *p)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(p->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *private;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &private);
        piece_t *piece = (piece_t *)private;
        piece_finish(piece, msg->data.result);
        curl_multi_remove_handle(p->multi, msg->easy_handle);
        forget_flying(p, piece);
        pthread_mutex_lock(&p->lock);
        piece_ended(p, piece);
        pthread_mutex_unlock(&p->lock);
        piece_free(piece);
    }
}

static void *run(void *arg)
{
    prefetcher_t *p = arg;
    piece_t **started = calloc(p->conf->prefetch.max_connections + 1, sizeof(*started));
    for (;;) {
        int64_t now = worker_unix_ms();
        retain_want_t *wants = NULL;
        size_t nwants = 0;
        pthread_mutex_lock(&p->lock);
        bool stopping = p->stopping, idle = p->njobs == 0;
        size_t n = !stopping && started != NULL ? plan_and_start(p, now, started, &wants, &nwants) : 0;
        pthread_mutex_unlock(&p->lock);
        if (stopping)
            break;
        if (started != NULL) {
            retain_sync(p->retain, wants, nwants, now);
            free(wants);
            pthread_mutex_lock(&p->lock);
            note_retained(p);
            pthread_mutex_unlock(&p->lock);
        }
        for (size_t i = 0; i < n; i++)
            if (!add_flying(p, started[i])) {
                piece_finish(started[i], CURLE_FAILED_INIT);
                pthread_mutex_lock(&p->lock);
                piece_ended(p, started[i]);
                pthread_mutex_unlock(&p->lock);
                piece_free(started[i]);
            }
        int running;
        /* With no job there is nothing to plan: sleep until one is submitted (curl_multi_wakeup). */
        curl_multi_poll(p->multi, NULL, 0, idle && p->inflight == 0 ? IDLE_MS : TICK_MS, NULL);
        curl_multi_perform(p->multi, &running);
        take_ended_pieces(p);
    }
    free(started);
    return NULL;
}

/* --- start and stop --- */

/* Everything the prefetcher holds, once its thread is gone (or never started); its leases end here. */
static void release(prefetcher_t *p)
{
    retain_free(p->retain);
    for (size_t i = 0; i < p->njobs; i++)
        job_free(p->jobs[i]);
    if (p->multi != NULL)
        curl_multi_cleanup(p->multi);
    history_free(p->history);
    free(p->flying);
    pthread_mutex_destroy(&p->lock);
    free(p->base_url);
    free(p);
}

int prefetcher_start(prefetcher_t **out, const conf_t *conf, cache_t *cache)
{
    *out = NULL;
    bool tls = false;
    char *base = cache != NULL ? loopback_url(conf, &tls) : NULL;
    if (base == NULL)
        return 0;
    prefetcher_t *p = calloc(1, sizeof(*p));
    if (p == NULL || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        free(base);
        return -1;
    }
    p->conf = conf;
    p->cache = cache;
    p->store = cache_store(cache);
    p->base_url = base;
    p->insecure = tls;
    p->tokens_ms = worker_unix_ms();
    uint64_t half_second = conf->prefetch.max_bandwidth / 2, chunks = half_second / STORE_CHUNK_SIZE;
    p->piece_bytes = (conf->prefetch.max_bandwidth == 0 || chunks >= PIECE_CHUNKS_MAX ? PIECE_CHUNKS_MAX
                      : chunks == 0                                                   ? 1
                                                                                      : chunks) *
                     STORE_CHUNK_SIZE;
    p->tokens = (double)p->piece_bytes;
    if ((p->history = history_new()) == NULL || (p->multi = curl_multi_init()) == NULL ||
        (p->retain = retain_new(p->store)) == NULL ||
        (p->flying = calloc(conf->prefetch.max_connections, sizeof(*p->flying))) == NULL ||
        pthread_create(&p->thread, NULL, run, p) != 0) {
        release(p);
        return -1;
    }
    *out = p;
    return 0;
}

void prefetcher_stop(prefetcher_t *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_mutex_unlock(&p->lock);
    curl_multi_wakeup(p->multi);
    pthread_join(p->thread, NULL);
    for (size_t i = 0; i < p->conf->prefetch.max_connections; i++)
        if (p->flying[i] != NULL) {
            curl_multi_remove_handle(p->multi, p->flying[i]->easy);
            piece_free(p->flying[i]);
        }
    release(p);
}

/* --- the calls of the admin endpoints --- */

static job_t *find_job(prefetcher_t *p, const char *id)
{
    for (size_t i = 0; i < p->njobs; i++)
        if (!p->jobs[i]->ended && strcmp(p->jobs[i]->id, id) == 0)
            return p->jobs[i];
    return NULL;
}

static bool visible(const job_t *job, const prefetch_caller_t *caller)
{
    return caller->admin || strcmp(job->owner, caller->identity) == 0;
}

/* Room for one more job: a finished prefetch list gives way, oldest first. Under the lock. */
static bool make_room(prefetcher_t *p)
{
    if (p->njobs < MAX_JOBS)
        return true;
    size_t oldest = SIZE_MAX;
    for (size_t i = 0; i < p->njobs; i++) {
        job_t *job = p->jobs[i];
        bool finished = !job->dag && job->inflight == 0 && !job->ended;
        for (size_t k = 0; finished && k < job->ninputs; k++)
            finished = job->inputs[k].state == INPUT_DONE || job->inputs[k].state == INPUT_FAILED;
        if (finished && (oldest == SIZE_MAX || job->created_ms < p->jobs[oldest]->created_ms))
            oldest = i;
    }
    if (oldest == SIZE_MAX)
        return false;
    p->jobs[oldest]->ended = true;
    return false; /* freed by the thread's next round; the caller is told to retry */
}

static json_t *submit(prefetcher_t *p, const prefetch_caller_t *caller, job_t *job, const char **error, int *status)
{
    char generated[CACHE_NEW_ID_SIZE];
    if (job->id == NULL) {
        cache_new_id(job->dag ? 'd' : 'p', generated);
        job->id = strdup(generated);
    }
    job->owner = strdup(caller->identity);
    if (caller->authorization != NULL) {
        size_t len = strlen(caller->authorization) + 16;
        if ((job->authorization = malloc(len)) != NULL)
            snprintf(job->authorization, len, "Authorization: %s", caller->authorization);
    }
    job->created_ms = worker_unix_ms();
    if (job->id == NULL || job->owner == NULL || (caller->authorization != NULL && job->authorization == NULL)) {
        *error = "Out of memory.";
        *status = 500;
        job_free(job);
        return NULL;
    }
    pthread_mutex_lock(&p->lock);
    bool taken = find_job(p, job->id) != NULL, room = !taken && make_room(p);
    json_t *state = NULL;
    if (room) {
        p->jobs[p->njobs++] = job;
        state = job_json(job);
    }
    pthread_mutex_unlock(&p->lock);
    if (!room) {
        *error = taken ? "A job with this id is live already." : "Too many prefetch jobs; retry later.";
        *status = taken ? 409 : 503;
        job_free(job);
        return NULL;
    }
    curl_multi_wakeup(p->multi);
    return state;
}

json_t *prefetcher_submit_dag(prefetcher_t *p, const prefetch_caller_t *caller, json_t *body, const char **error,
                              int *status)
{
    *status = 400;
    job_t *job = job_from_dag(body, error);
    if (job == NULL)
        return NULL;
    return submit(p, caller, job, error, status);
}

json_t *prefetcher_submit_list(prefetcher_t *p, const prefetch_caller_t *caller, json_t *body, const char **error,
                               int *status)
{
    *status = 400;
    job_t *job = job_from_list(body, error);
    return job != NULL ? submit(p, caller, job, error, status) : NULL;
}

json_t *prefetcher_show(prefetcher_t *p, const prefetch_caller_t *caller, const char *id, bool dag)
{
    pthread_mutex_lock(&p->lock);
    job_t *job = find_job(p, id);
    json_t *state = job != NULL && job->dag == dag && visible(job, caller) ? job_json(job) : NULL;
    pthread_mutex_unlock(&p->lock);
    return state;
}

json_t *prefetcher_list(prefetcher_t *p, const prefetch_caller_t *caller)
{
    json_t *dags = json_array();
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; dags != NULL && i < p->njobs; i++)
        if (p->jobs[i]->dag && !p->jobs[i]->ended && visible(p->jobs[i], caller))
            json_array_append_new(dags, job_json(p->jobs[i]));
    pthread_mutex_unlock(&p->lock);
    return dags != NULL ? json_pack("{s:o}", "dags", dags) : NULL;
}

/* Whole input bytes a stage's inputs are cached now, over the bytes it reads: its runtime's context. */
static double cached_fraction(const job_t *job, const job_stage_t *s)
{
    uint64_t wanted = 0, cached = 0;
    for (size_t k = 0; k < s->ninputs; k++) {
        const job_input_t *in = &job->inputs[s->inputs[k]];
        uint64_t bytes = in->size != 0 ? wanted_end(in) + 1 - in->first : 0;
        wanted += bytes;
        cached += in->cached < bytes ? in->cached : bytes;
    }
    return wanted != 0 ? (double)cached / (double)wanted : 1.0;
}

int prefetcher_notify(prefetcher_t *p, const prefetch_caller_t *caller, const char *dag, const char *stage,
                      prefetch_stage_event_t event, const char **error)
{
    int status = 0;
    pthread_mutex_lock(&p->lock);
    job_t *job = find_job(p, dag);
    int index = job != NULL && job->dag && visible(job, caller) ? job_stage_index(job, stage) : -1;
    job_stage_t *s = index >= 0 ? &job->stages[index] : NULL;
    int64_t now = worker_unix_ms();
    if (s == NULL) {
        *error = job == NULL || !job->dag || !visible(job, caller) ? "No such DAG." : "The DAG has no such stage.";
        status = 404;
    } else if (s->state == PLAN_STAGE_DONE) {
        *error = "The stage is done already.";
        status = 409;
    } else if (event == PREFETCH_STAGE_START) {
        s->state = PLAN_STAGE_RUNNING;
        s->started_ms = now;
        s->fraction_at_start = cached_fraction(job, s);
    } else {
        if (s->state == PLAN_STAGE_RUNNING)
            history_record(p->history, job->id, s->id, s->fraction_at_start, now - s->started_ms);
        s->state = PLAN_STAGE_DONE;
        s->done_ms = now;
    }
    pthread_mutex_unlock(&p->lock);
    if (status == 0)
        curl_multi_wakeup(p->multi);
    return status;
}

int prefetcher_end(prefetcher_t *p, const prefetch_caller_t *caller, const char *id, bool dag)
{
    pthread_mutex_lock(&p->lock);
    job_t *job = find_job(p, id);
    bool found = job != NULL && job->dag == dag && visible(job, caller);
    if (found)
        job->ended = true;
    pthread_mutex_unlock(&p->lock);
    if (found)
        curl_multi_wakeup(p->multi);
    return found ? 0 : 404;
}

void prefetcher_stats(prefetcher_t *p, prefetch_stats_t *st)
{
    pthread_mutex_lock(&p->lock);
    st->jobs = p->njobs;
    st->in_flight = p->inflight;
    st->retained = p->retained;
    st->bytes = p->bytes;
    pthread_mutex_unlock(&p->lock);
}
