/*
 * cmd_prefetch.c - `larderctl prefetch gs://B/O...`: a prefetch list through
 * POST /_larder/v1/prefetch, and with --wait its progress until every object
 * is fetched or failed. Also what `dag` shares of the jobs API (larderctl.h):
 * a request about a job with the refusals named, and an input's line.
 *
 * Like `batch create`, it prints the new job's id first, so that a script can
 * take it; --wait then prints one line per object. A range is part of the URL
 * argument, "gs://B/O#bytes=A-B", so that each object can have its own.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_call.h"
#include "larderctl.h"
#include "output.h"

static const char PREFETCH[] = "/_larder/v1/prefetch";

#define POLL_MS 100
#define RANGE_MARK "#bytes="

/* --- what dag shares --- */

/* CTL_OK for a success; else the exit code, with the line written in the words this request has for it. */
static int job_refusal(const ctl_t *ctl, const char *path, const http_answer_t *answer, const void *ctx)
{
    const ctl_job_request_t *req = ctx;
    if (answer->status == 404 && req->id != NULL && !req->creating)
        return ctl_fail(ctl, CTL_NOT_FOUND, "no such %s '%s'", req->noun, req->id);
    if (answer->status == 409 && req->id != NULL && req->creating)
        return ctl_fail(ctl, CTL_CONFLICT, "%s '%s' exists", req->noun, req->id);
    return http_answer_check(ctl, path, answer);
}

static void put_text(byte_buffer_t *path, const char *text)
{
    byte_buffer_put(path, text, strlen(text));
}

/* "/" and text escaped for a path segment. */
static void put_segment(byte_buffer_t *path, const char *text)
{
    char *escaped = curl_easy_escape(NULL, text, 0);
    put_text(path, "/");
    if (escaped != NULL)
        put_text(path, escaped);
    else
        path->failed = true;
    curl_free(escaped);
}

int ctl_job_call(const ctl_t *ctl, const ctl_job_request_t *req, json_t **out)
{
    *out = NULL;
    byte_buffer_t path = {0};
    put_text(&path, req->collection);
    if (req->id != NULL && !req->creating)
        put_segment(&path, req->id);
    if (req->stage != NULL) {
        put_text(&path, "/stages");
        put_segment(&path, req->stage);
    }
    put_text(&path, req->tail != NULL ? req->tail : "");
    byte_buffer_put(&path, "", 1);
    int rc = !path.failed ? http_call_json_with(ctl, req->method, path.base, req->body, job_refusal, req, out)
                          : ctl_fail(ctl, CTL_FAILED, "out of memory");
    byte_buffer_dispose(&path);
    return rc;
}

const char *ctl_job_text(const json_t *obj, const char *key, const char *none, char out[2048])
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (s == NULL)
        return none;
    one_line(s, strlen(s), out, 2048);
    return out;
}

static uint64_t count_of(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

void ctl_print_job_input(const json_t *input, const char *bytes_key, bool retained)
{
    char state[2048], url[2048], range[2048], error[2048], bytes[32], size[32], figure[80];
    format_bytes(count_of(input, bytes_key), bytes, sizeof(bytes));
    format_bytes(count_of(input, "size"), size, sizeof(size));
    (void)snprintf(figure, sizeof(figure), "%s/%s", bytes, size);
    bool ranged = json_object_get(input, "range") != NULL, failed = json_object_get(input, "error") != NULL;
    printf("  %-8s %-21s ", ctl_job_text(input, "state", "?", state), figure);
    if (retained)
        printf("%-8s ", json_is_true(json_object_get(input, "retained")) ? "retained" : "-");
    printf("%s%s%s%s%s\n", ctl_job_text(input, "url", "?", url), ranged ? "#" : "",
           ctl_job_text(input, "range", "", range), failed ? ": " : "", ctl_job_text(input, "error", "", error));
}

bool ctl_job_state_is(const json_t *obj, const char *state)
{
    const char *s = json_string_value(json_object_get(obj, "state"));
    return s != NULL && strcmp(s, state) == 0;
}

int ctl_print_answer(const ctl_t *ctl, const json_t *answer)
{
    return print_json(answer) == 0 ? CTL_OK : ctl_fail(ctl, CTL_FAILED, "could not write the output");
}

/* --- the list --- */

/* len bytes of text as a string under key in obj; what names the text in the message if it is not UTF-8. */
static int set_text(const ctl_t *ctl, json_t *obj, const char *key, const char *text, size_t len, const char *what)
{
    /* json_stringn fails on text that is not UTF-8 or without memory: the first is what a command line meets */
    json_t *s = json_stringn(text, len);
    if (s == NULL)
        return ctl_fail(ctl, CTL_USAGE, "%s is not UTF-8 text", what);
    return json_object_set_new(obj, key, s) == 0 ? CTL_OK : ctl_fail(ctl, CTL_FAILED, "out of memory");
}

/* {"url", "range"?} of one argument, "gs://B/O" or "gs://B/O#bytes=A-B", at the end of objects. */
static int add_object(const ctl_t *ctl, json_t *objects, const char *arg)
{
    const char *mark = NULL;
    for (const char *at = strstr(arg, RANGE_MARK); at != NULL; at = strstr(at + 1, RANGE_MARK))
        mark = at; /* the last: a name with "#bytes=" in it can be given, with a range after it */
    json_t *object = json_object();
    if (json_array_append_new(objects, object) != 0)
        return ctl_fail(ctl, CTL_FAILED, "out of memory");
    int rc = set_text(ctl, object, "url", arg, mark != NULL ? (size_t)(mark - arg) : strlen(arg), "a URL");
    if (rc == CTL_OK && mark != NULL)
        rc = set_text(ctl, object, "range", mark + 1, strlen(mark + 1), "a range");
    return rc;
}

enum { P_BATCH, P_WAIT };

static const ctl_option_t prefetch_options[] = {[P_BATCH] = {"batch", true}, [P_WAIT] = {"wait", false},
                                                {NULL, false}};

/* The body, {"objects": [...], "batch"?}, as JSON text (the caller frees it). */
static int list_text(const ctl_t *ctl, const ctl_args_t *args, char **text)
{
    *text = NULL;
    json_t *body = json_object(), *objects = json_array();
    const char *batch = args->values[P_BATCH];
    int rc = body != NULL && objects != NULL && json_object_set(body, "objects", objects) == 0
                 ? CTL_OK
                 : ctl_fail(ctl, CTL_FAILED, "out of memory");
    for (int i = 0; rc == CTL_OK && i < args->noperands; i++)
        rc = add_object(ctl, objects, args->operands[i]);
    if (rc == CTL_OK && batch != NULL)
        rc = set_text(ctl, body, "batch", batch, strlen(batch), "--batch");
    if (rc == CTL_OK && (*text = json_dumps(body, JSON_COMPACT)) == NULL)
        rc = ctl_fail(ctl, CTL_FAILED, "out of memory");
    json_decref(objects);
    json_decref(body);
    return rc;
}

/* --- --wait --- */

/* Every object done or failed (a failed one never makes the job "done"). */
static bool finished(const json_t *job)
{
    if (ctl_job_state_is(job, "done"))
        return true;
    size_t i;
    json_t *object;
    json_array_foreach(json_object_get(job, "objects"), i, object)
        if (!ctl_job_state_is(object, "done") && !ctl_job_state_is(object, "failed"))
            return false;
    return true;
}

/* Polls the job, *job its state as submitted, until it is finished; *job is its last state then. */
static int wait_for(const ctl_t *ctl, const char *id, json_t **job)
{
    const ctl_job_request_t get = {.method = "GET", .collection = PREFETCH, .noun = "prefetch", .id = id};
    for (;;) {
        if (!json_is_array(json_object_get(*job, "objects")))
            return ctl_fail(ctl, CTL_SERVER_ERROR, "the answer has no list of objects: is that larder?");
        if (finished(*job))
            return CTL_OK;
        if (ctl_job_state_is(*job, "ended"))
            return ctl_fail(ctl, CTL_SERVER_ERROR, "prefetch '%s' was ended before it was done", id);
        nanosleep(&(struct timespec){.tv_nsec = POLL_MS * 1000000L}, NULL);
        json_decref(*job);
        int rc = ctl_job_call(ctl, &get, job);
        if (rc != CTL_OK)
            return rc;
    }
}

/* The objects' lines (or the whole job with --json); CTL_SERVER_ERROR, with the line written, when any failed. */
static int print_outcome(const ctl_t *ctl, const json_t *job)
{
    json_t *objects = json_object_get(job, "objects"), *object;
    int rc = ctl->json ? ctl_print_answer(ctl, job) : CTL_OK;
    size_t i, failed = 0;
    json_array_foreach(objects, i, object) {
        failed += ctl_job_state_is(object, "failed");
        if (!ctl->json)
            ctl_print_job_input(object, "fetched_bytes", false);
    }
    if (rc == CTL_OK && failed > 0)
        rc = ctl_fail(ctl, CTL_SERVER_ERROR, "%zu of %zu object%s failed", failed, json_array_size(objects),
                      json_array_size(objects) == 1 ? "" : "s");
    return rc;
}

static int run_prefetch(const ctl_t *ctl, const ctl_args_t *args)
{
    char *text;
    int rc = list_text(ctl, args, &text);
    if (rc != CTL_OK)
        return rc;
    json_t *job;
    /* the server makes the id up: a 409 cannot happen, so the request names none */
    const ctl_job_request_t post = {.method = "POST", .collection = PREFETCH, .noun = "prefetch", .body = text};
    rc = ctl_job_call(ctl, &post, &job);
    free(text);
    char given[2048];
    /* a copy: polling replaces the answer the id is in */
    char *id = rc == CTL_OK ? strdup(ctl_job_text(job, "id", "?", given)) : NULL;
    if (rc == CTL_OK && id == NULL)
        rc = ctl_fail(ctl, CTL_FAILED, "out of memory");
    else if (rc == CTL_OK && json_string_value(json_object_get(job, "id")) == NULL)
        rc = ctl_fail(ctl, CTL_SERVER_ERROR, "the answer has no id: is that larder?");
    else if (rc == CTL_OK && ctl->json && args->values[P_WAIT] == NULL)
        rc = ctl_print_answer(ctl, job);
    else if (rc == CTL_OK && !ctl->json)
        printf("%s\n", id);
    if (rc == CTL_OK && args->values[P_WAIT] != NULL) {
        (void)fflush(stdout); /* the id now, for whoever reads the lines as they come */
        rc = wait_for(ctl, id, &job);
        if (rc == CTL_OK)
            rc = print_outcome(ctl, job);
    }
    free(id);
    json_decref(job);
    return rc;
}

const ctl_command_t ctl_cmd_prefetch = {
    .name = "prefetch",
    .summary = "fetch objects into the cache now; prints the job's id (POST /_larder/v1/prefetch)",
    .help = "usage: larderctl [GLOBAL OPTIONS] prefetch gs://B/O[#bytes=A-B]... [--batch ID] [--wait] [--json]\n"
            "\n"
            "Asks larder to fetch the objects into its cache in the background, read with the\n"
            "token's credentials as the caller's own reads would be, and prints the job's id,\n"
            "and only that. A URL ending in \"#bytes=A-B\" (or \"#bytes=A-\", to the end) asks\n"
            "for that range of the object only. Up to 4096 objects.\n"
            "\n"
            "  --batch ID   read them in batch ID (X-Larder-Batch): the batch pins them\n"
            "  --wait       then wait until every object is fetched or has failed, and print\n"
            "               a line for each: its state (done, failed), the bytes this job\n"
            "               fetched of it (0 B for one cached already) and its size, its\n"
            "               URL, and why a failed one failed. Any object failed: one line\n"
            "               saying how many, exit 7. Interrupting the wait leaves the job be.\n"
            "  --json       print the server's answer instead (with --wait, the last one)\n"
            "\n"
            "A URL or range the server refuses: its message, exit 7.\n",
    .options = prefetch_options,
    .has_json = true,
    .operand = "gs://B/O",
    .operand_repeats = true,
    .run = run_prefetch,
};
