/*
 * job.c - a submitted DAG or prefetch list: parsed once from its JSON, shown
 * back as JSON (see job.h).
 *
 * A DAG's inputs are made distinct by (url, range): a table three stages
 * read is one input with three readers, which is what the planner's "shared
 * inputs first" needs. An input some stage lists among its outputs is
 * produced by that stage: it is not fetched before the stage is done (it
 * would not exist, or be an older version).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "job.h"

#define MAX_STAGES 1024
#define MAX_INPUTS 4096

bool job_id_valid(const char *id)
{
    return id != NULL && cache_batch_id_valid(id, strlen(id)); /* the same rule: ids go in paths and lease ids */
}

bool job_parse_range(const char *range, uint64_t *first, uint64_t *last)
{
    unsigned long long a, b;
    int used = 0;
    if (strncmp(range, "bytes=", 6) != 0)
        return false;
    if (sscanf(range + 6, "%llu-%llu%n", &a, &b, &used) == 2 && range[6 + used] == '\0' && a <= b) {
        *first = a;
        *last = b;
        return true;
    }
    if (sscanf(range + 6, "%llu-%n", &a, &used) == 1 && range[6 + used] == '\0') {
        *first = a;
        *last = PLAN_TO_END;
        return true;
    }
    return false;
}

void job_free(job_t *job)
{
    if (job == NULL)
        return;
    for (size_t i = 0; i < job->ninputs; i++) {
        job_input_t *in = &job->inputs[i];
        free(in->url);
        free(in->bucket);
        free(in->name);
        free(in->range);
        free(in->error);
    }
    for (size_t i = 0; i < job->nstages; i++) {
        job_stage_t *s = &job->stages[i];
        free(s->id);
        free(s->inputs);
        free(s->after);
        for (size_t j = 0; j < s->noutputs; j++)
            free(s->outputs[j]);
        free(s->outputs);
    }
    free(job->inputs);
    free(job->stages);
    free(job->forecasts);
    free(job->id);
    free(job->owner);
    free(job->authorization);
    free(job->batch);
    free(job);
}

/* The input (url, range), added if new; its index, or -1 with *error set. */
static ssize_t input_of(job_t *job, const char *url, const char *range, const char **error)
{
    uint64_t first = 0, last = PLAN_TO_END;
    if (range != NULL && !job_parse_range(range, &first, &last)) {
        *error = "An input's range is \"bytes=FIRST-LAST\" or \"bytes=FIRST-\".";
        return -1;
    }
    const char *slash = strncmp(url, "gs://", 5) == 0 ? strchr(url + 5, '/') : NULL;
    if (slash == NULL || slash == url + 5 || slash[1] == '\0') {
        *error = "An input's url is \"gs://BUCKET/OBJECT\".";
        return -1;
    }
    for (size_t i = 0; i < job->ninputs; i++)
        if (strcmp(job->inputs[i].url, url) == 0 && job->inputs[i].first == first && job->inputs[i].last == last)
            return (ssize_t)i;
    if (job->ninputs == MAX_INPUTS) {
        *error = "Too many distinct inputs (at most 4096).";
        return -1;
    }
    job_input_t *in = &job->inputs[job->ninputs];
    memset(in, 0, sizeof(*in));
    in->first = first;
    in->last = last;
    in->produced_by = -1;
    in->url = strdup(url);
    in->bucket = strndup(url + 5, (size_t)(slash - url - 5));
    in->name = strdup(slash + 1);
    in->range = range != NULL ? strdup(range) : NULL;
    if (in->url == NULL || in->bucket == NULL || in->name == NULL || (range != NULL && in->range == NULL)) {
        *error = "Out of memory.";
        free(in->url);
        free(in->bucket);
        free(in->name);
        free(in->range);
        return -1;
    }
    return (ssize_t)job->ninputs++;
}

static job_t *job_new(size_t max_stages, const char **error)
{
    job_t *job = calloc(1, sizeof(*job));
    if (job == NULL || (job->inputs = calloc(MAX_INPUTS, sizeof(*job->inputs))) == NULL ||
        (job->stages = calloc(max_stages, sizeof(*job->stages))) == NULL) {
        *error = "Out of memory.";
        job_free(job);
        return NULL;
    }
    job->weight = 1;
    return job;
}

/* The stage's inputs into the job's distinct inputs; false with *error set. */
static bool parse_stage_inputs(job_t *job, job_stage_t *s, json_t *inputs, const char **error)
{
    if (inputs != NULL && !json_is_array(inputs)) {
        *error = "A stage's inputs are a list of {\"url\", \"range\"?}.";
        return false;
    }
    s->inputs = calloc(json_array_size(inputs) + 1, sizeof(*s->inputs));
    if (s->inputs == NULL) {
        *error = "Out of memory.";
        return false;
    }
    for (size_t i = 0; i < json_array_size(inputs); i++) {
        json_t *in = json_array_get(inputs, i);
        const char *url = json_string_value(json_object_get(in, "url"));
        json_t *range = json_object_get(in, "range");
        if (url == NULL || (range != NULL && !json_is_string(range))) {
            *error = "A stage's inputs are a list of {\"url\", \"range\"?}.";
            return false;
        }
        ssize_t index = input_of(job, url, json_string_value(range), error);
        if (index < 0)
            return false;
        bool seen = false;
        for (size_t j = 0; j < s->ninputs; j++)
            seen |= s->inputs[j] == (size_t)index;
        if (!seen)
            s->inputs[s->ninputs++] = (size_t)index;
    }
    return true;
}

static bool parse_stage(job_t *job, job_stage_t *s, json_t *spec, const char **error)
{
    const char *id = json_string_value(json_object_get(spec, "id"));
    json_t *outputs = json_object_get(spec, "outputs"), *runtime = json_object_get(spec, "expected_runtime_ms");
    if (!json_is_object(spec) || id == NULL || id[0] == '\0') {
        *error = "Each stage is an object with an \"id\".";
        return false;
    }
    if ((outputs != NULL && !json_is_array(outputs)) || (runtime != NULL && !json_is_integer(runtime)) ||
        (runtime != NULL && json_integer_value(runtime) < 0)) {
        *error = "A stage's outputs are a list of \"gs://B/O\", its expected_runtime_ms a number of milliseconds.";
        return false;
    }
    s->id = strdup(id);
    s->expected_runtime_ms = runtime != NULL ? (int64_t)json_integer_value(runtime) : -1;
    s->outputs = calloc(json_array_size(outputs) + 1, sizeof(*s->outputs));
    if (s->id == NULL || s->outputs == NULL) {
        *error = "Out of memory.";
        return false;
    }
    for (size_t i = 0; i < json_array_size(outputs); i++) {
        const char *out = json_string_value(json_array_get(outputs, i));
        if (out == NULL || strncmp(out, "gs://", 5) != 0) {
            *error = "A stage's outputs are a list of \"gs://B/O\".";
            return false;
        }
        if ((s->outputs[s->noutputs++] = strdup(out)) == NULL) {
            *error = "Out of memory.";
            return false;
        }
    }
    return parse_stage_inputs(job, s, json_object_get(spec, "inputs"), error);
}

/* "after": stage ids into indices; false with *error set. */
static bool link_stages(job_t *job, json_t *stages, const char **error)
{
    for (size_t i = 0; i < job->nstages; i++) {
        json_t *after = json_object_get(json_array_get(stages, i), "after");
        job_stage_t *s = &job->stages[i];
        if (after != NULL && !json_is_array(after)) {
            *error = "A stage's \"after\" is a list of stage ids.";
            return false;
        }
        if ((s->after = calloc(json_array_size(after) + 1, sizeof(*s->after))) == NULL) {
            *error = "Out of memory.";
            return false;
        }
        for (size_t j = 0; j < json_array_size(after); j++) {
            const char *id = json_string_value(json_array_get(after, j));
            int index = id != NULL ? job_stage_index(job, id) : -1;
            if (index < 0) {
                *error = "A stage's \"after\" names a stage the DAG does not have.";
                return false;
            }
            s->after[s->nafter++] = (size_t)index;
        }
        for (size_t j = 0; j < s->noutputs; j++)
            for (size_t k = 0; k < job->ninputs; k++)
                if (strcmp(job->inputs[k].url, s->outputs[j]) == 0)
                    job->inputs[k].produced_by = (int)i;
    }
    return true;
}

/* Kahn's algorithm: false when some stages depend on each other in a circle. */
static bool acyclic(const job_t *job)
{
    size_t *waiting = calloc(job->nstages + 1, sizeof(*waiting)), *ready = calloc(job->nstages + 1, sizeof(*ready));
    size_t nready = 0, seen = 0;
    bool ok = waiting != NULL && ready != NULL;
    for (size_t i = 0; ok && i < job->nstages; i++)
        if ((waiting[i] = job->stages[i].nafter) == 0)
            ready[nready++] = i;
    while (ok && nready > 0) {
        size_t done = ready[--nready];
        seen++;
        for (size_t i = 0; i < job->nstages; i++)
            for (size_t k = 0; k < job->stages[i].nafter; k++)
                if (job->stages[i].after[k] == done && --waiting[i] == 0)
                    ready[nready++] = i;
    }
    free(waiting);
    free(ready);
    return ok && seen == job->nstages;
}

int job_stage_index(const job_t *job, const char *id)
{
    for (size_t i = 0; i < job->nstages; i++)
        if (strcmp(job->stages[i].id, id) == 0)
            return (int)i;
    return -1;
}

static bool parse_common(job_t *job, json_t *body, const char **error)
{
    json_t *id = json_object_get(body, "id"), *batch = json_object_get(body, "batch");
    json_t *weight = json_object_get(body, "weight");
    if ((id != NULL && !job_id_valid(json_string_value(id))) ||
        (batch != NULL && !job_id_valid(json_string_value(batch)))) {
        *error = "id and batch are 1 to 128 letters, digits, '.', '_', '~' or '-'.";
        return false;
    }
    if (weight != NULL && (!json_is_number(weight) || json_number_value(weight) <= 0)) {
        *error = "weight is a positive number.";
        return false;
    }
    if (weight != NULL)
        job->weight = json_number_value(weight);
    if ((id != NULL && (job->id = strdup(json_string_value(id))) == NULL) ||
        (batch != NULL && (job->batch = strdup(json_string_value(batch))) == NULL)) {
        *error = "Out of memory.";
        return false;
    }
    return true;
}

job_t *job_from_dag(json_t *body, const char **error)
{
    json_t *stages = json_object_get(body, "stages");
    if (!json_is_object(body) || !json_is_array(stages) || json_array_size(stages) == 0 ||
        json_array_size(stages) > MAX_STAGES) {
        *error = "The body is a DAG: {\"id\"?, \"batch\"?, \"weight\"?, \"stages\": [{\"id\", \"inputs\", \"outputs\"?, "
                 "\"after\"?, \"expected_runtime_ms\"?}]} with 1 to 1024 stages.";
        return NULL;
    }
    job_t *job = job_new(json_array_size(stages), error);
    if (job == NULL)
        return NULL;
    job->dag = true;
    bool ok = parse_common(job, body, error);
    for (size_t i = 0; ok && i < json_array_size(stages); i++) {
        ok = parse_stage(job, &job->stages[i], json_array_get(stages, i), error);
        job->nstages = i + 1;
        if (ok && job_stage_index(job, job->stages[i].id) != (int)i) {
            *error = "Two stages have the same id.";
            ok = false;
        }
    }
    if (ok)
        ok = link_stages(job, stages, error);
    if (ok && !acyclic(job)) {
        *error = "The stages' \"after\" lists form a cycle.";
        ok = false;
    }
    if (!ok) {
        job_free(job);
        return NULL;
    }
    return job;
}

job_t *job_from_list(json_t *body, const char **error)
{
    json_t *objects = json_object_get(body, "objects");
    if (!json_is_object(body) || !json_is_array(objects) || json_array_size(objects) == 0 ||
        json_array_size(objects) > MAX_INPUTS) {
        *error = "The body is {\"objects\": [{\"url\": \"gs://B/O\", \"range\"?}], \"batch\"?} with 1 to 4096 objects.";
        return NULL;
    }
    job_t *job = job_new(1, error);
    if (job == NULL)
        return NULL;
    job_stage_t *s = &job->stages[0];
    job->nstages = 1;
    s->expected_runtime_ms = -1;
    s->state = PLAN_STAGE_RUNNING; /* its reads are wanted now */
    bool ok = parse_common(job, body, error) && (s->id = strdup("prefetch")) != NULL &&
              (s->after = calloc(1, sizeof(*s->after))) != NULL && (s->outputs = calloc(1, sizeof(char *))) != NULL &&
              parse_stage_inputs(job, s, objects, error);
    if (!ok) {
        if (*error == NULL)
            *error = "Out of memory.";
        job_free(job);
        return NULL;
    }
    return job;
}

/* --- the JSON a GET answers --- */

static json_t *time_json(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char text[LOG_TIME_SIZE];
    log_time_rfc3339(ms, text);
    return json_string(text);
}

static const char *stage_state_name(plan_stage_state_t st)
{
    return st == PLAN_STAGE_DONE ? "done" : st == PLAN_STAGE_RUNNING ? "running" : "waiting";
}

static const char *input_state_name(const job_input_t *in)
{
    static const char *const names[] = {"pending", "fetching", "done", "failed"};
    return names[in->state];
}

static json_t *stage_json(const job_t *job, size_t i)
{
    const job_stage_t *s = &job->stages[i];
    json_t *o = json_pack("{s:s, s:s}", "id", s->id, "state", stage_state_name(s->state));
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "started_at", time_json(s->started_ms));
    json_object_set_new(o, "done_at", time_json(s->done_ms));
    if (job->forecasts != NULL && s->state != PLAN_STAGE_DONE) {
        json_object_set_new(o, "predicted_start", time_json(job->forecasts[i].start_ms));
        json_object_set_new(o, "predicted_end", time_json(job->forecasts[i].end_ms));
        json_object_set_new(o, "cached_fraction", json_real(job->forecasts[i].cached_fraction));
    }
    return o;
}

static json_t *input_json(const job_input_t *in)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b}", "url", in->url, "state", input_state_name(in),
                          "size", (json_int_t)in->size, "cached_bytes", (json_int_t)in->cached, "fetched_bytes",
                          (json_int_t)in->fetched, "retained", in->retained);
    if (o != NULL && in->range != NULL)
        json_object_set_new(o, "range", json_string(in->range));
    if (o != NULL && in->error != NULL)
        json_object_set_new(o, "error", json_string(in->error));
    return o;
}

json_t *job_json(const job_t *job)
{
    json_t *stages = json_array(), *inputs = json_array();
    for (size_t i = 0; stages != NULL && i < job->nstages && job->dag; i++)
        json_array_append_new(stages, stage_json(job, i));
    size_t settled = 0; /* fetched, or given up */
    for (size_t i = 0; inputs != NULL && i < job->ninputs; i++) {
        json_array_append_new(inputs, input_json(&job->inputs[i]));
        settled += job->inputs[i].state == INPUT_DONE || job->inputs[i].state == INPUT_FAILED;
    }
    const char *state = job->ended ? "ended" : settled == job->ninputs ? "done" : "running";
    json_t *o = json_pack("{s:s, s:s, s:s, s:f, s:I, s:o}", "id", job->id, "owner", job->owner, "state", state,
                          "weight", job->weight, "bytes_fetched", (json_int_t)job->bytes_fetched,
                          job->dag ? "inputs" : "objects", inputs);
    if (o == NULL) {
        json_decref(stages);
        return NULL;
    }
    json_object_set_new(o, "created_at", time_json(job->created_ms));
    if (job->batch != NULL)
        json_object_set_new(o, "batch", json_string(job->batch));
    if (job->dag)
        json_object_set_new(o, "stages", stages);
    else
        json_decref(stages);
    return o;
}
