/*
 * cmd_batch.c - `larderctl batch`: a pipeline's batches through
 * /_larder/v1/batches, as a group of commands: create, extend (the
 * heartbeat), show, ls and rm.
 *
 * create prints the new batch's id and nothing else, so that a script can
 * write ID=$(larderctl batch create ...); the rest of the batch is there with
 * --json. The server answers someone else's batch as it does an unknown one
 * (404), so "no such batch" is all that can be said of either.
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_call.h"
#include "larderctl.h"
#include "output.h"

static const char BATCHES[] = "/_larder/v1/batches";

#define FIGURE 48 /* room for "N objects (SIZE)" */

/* One request and what its refusals mean: id names the batch it is about (NULL: none); creating says that a
 * 409 is that id taken, where on the batch's own URL a 404 is no such batch. */
typedef struct request {
    const char *method, *path, *body, *id;
    bool creating;
} request_t;

/* --- the answers --- */

/* A string of the answer with control bytes made spaces (an object named "a\nb" stays on one line); "?" when v
 * is not a string. out holds a GCS URL: bucket and object name are at most 1,286 bytes together. */
static const char *flat(const json_t *v, char out[2048])
{
    const char *s = json_string_value(v);
    if (s == NULL)
        return "?";
    one_line(s, strlen(s), out, 2048);
    return out;
}

static const char *text_of(const json_t *obj, const char *key, char out[2048])
{
    return flat(json_object_get(obj, key), out);
}

static uint64_t count_of(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* "2 objects (3.0 MiB)" from the answer's counts objects_key and bytes_key. */
static const char *objects_text(const json_t *obj, const char *objects_key, const char *bytes_key,
                                char out[FIGURE])
{
    uint64_t n = count_of(obj, objects_key);
    char size[32];
    format_bytes(count_of(obj, bytes_key), size, sizeof(size));
    (void)snprintf(out, FIGURE, "%" PRIu64 " object%s (%s)", n, n == 1 ? "" : "s", size);
    return out;
}

/* The whole answer, for --json. */
static int print_answer(const ctl_t *ctl, const json_t *answer)
{
    return print_json(answer) == 0 ? CTL_OK : ctl_fail(ctl, CTL_FAILED, "could not write the output");
}

/* The 502 of rm --delete-outputs names the outputs upstream would not delete: how many, and the first. CTL_OK
 * when the body does not have that shape, for the usual line instead. */
static int outputs_not_deleted(const ctl_t *ctl, const http_answer_t *answer)
{
    json_t *doc = json_loadb(answer->body.base != NULL ? answer->body.base : "", answer->body.len, 0, NULL);
    json_t *failed = json_object_get(json_object_get(doc, "error"), "failed");
    size_t n = json_array_size(failed);
    int rc = CTL_OK;
    if (n > 0) {
        json_t *first = json_array_get(failed, 0);
        char bucket[2048], name[2048], status[32] = "no answer";
        json_int_t code = json_integer_value(json_object_get(first, "status"));
        if (code != 0)
            (void)snprintf(status, sizeof(status), "%" JSON_INTEGER_FORMAT, code);
        rc = ctl_fail(ctl, CTL_SERVER_ERROR,
                      "502 Bad Gateway: upstream did not delete %zu output%s (first gs://%s/%s: %s); the batch "
                      "stays, and rm --delete-outputs can be retried",
                      n, n == 1 ? "" : "s", text_of(first, "bucket", bucket), text_of(first, "name", name), status);
    }
    json_decref(doc);
    return rc;
}

/* CTL_OK for a success; else the exit code, with the line written in the words this command has for it. */
static int refusal(const ctl_t *ctl, const char *path, const http_answer_t *answer, const void *ctx)
{
    const request_t *req = ctx;
    if (answer->status == 404 && req->id != NULL && !req->creating)
        return ctl_fail(ctl, CTL_NOT_FOUND, "no such batch '%s'", req->id);
    if (answer->status == 409 && req->id != NULL && req->creating)
        return ctl_fail(ctl, CTL_CONFLICT, "batch '%s' exists", req->id);
    if (answer->status == 502) {
        int rc = outputs_not_deleted(ctl, answer);
        if (rc != CTL_OK)
            return rc;
    }
    return http_answer_check(ctl, path, answer);
}

/* The request, and its answer as a JSON object when it succeeded. */
static int batch_call(const ctl_t *ctl, const request_t *req, json_t **out)
{
    return http_call_json_with(ctl, req->method, req->path, req->body, refusal, req, out);
}

/* METHOD on batch ID's own URL plus tail (":extend", a query or ""), the id escaped for the path. */
static int call_on_batch(const ctl_t *ctl, const char *method, const char *id, const char *tail, const char *body,
                         json_t **out)
{
    *out = NULL;
    char *escaped = curl_easy_escape(NULL, id, 0);
    size_t len = escaped != NULL ? sizeof(BATCHES) + 1 + strlen(escaped) + strlen(tail) : 0;
    char *path = escaped != NULL ? malloc(len) : NULL;
    if (path == NULL) {
        curl_free(escaped);
        return ctl_fail(ctl, CTL_FAILED, "out of memory");
    }
    (void)snprintf(path, len, "%s/%s%s", BATCHES, escaped, tail);
    curl_free(escaped);
    int rc = batch_call(ctl, &(request_t){.method = method, .path = path, .body = body, .id = id}, out);
    free(path);
    return rc;
}

/* With --json the whole answer; else only its string key, for a script to take (the id, an expiry). */
static int print_one(const ctl_t *ctl, const json_t *answer, const char *key)
{
    if (ctl->json)
        return print_answer(ctl, answer);
    char value[2048];
    if (json_string_value(json_object_get(answer, key)) == NULL)
        return ctl_fail(ctl, CTL_SERVER_ERROR, "the answer has no %s: is that larder?", key);
    printf("%s\n", text_of(answer, key, value));
    return CTL_OK;
}

/* --- the request bodies --- */

/* The fields given of a batch's JSON: the body of create, and of extend. */
typedef struct fields {
    const char *id, *ttl, *quota;
    const char *const *scratch;
    int nscratch;
} fields_t;

/* value as a string under key in obj, or at the end of the array obj when key is NULL. */
static int add_string(const ctl_t *ctl, json_t *obj, const char *key, const char *option, const char *value)
{
    /* json_string fails on text that is not UTF-8 or without memory: the first is what a command line meets */
    json_t *s = json_string(value);
    if (s == NULL)
        return ctl_fail(ctl, CTL_USAGE, "--%s is not UTF-8 text", option);
    int rc = key != NULL ? json_object_set_new(obj, key, s) : json_array_append_new(obj, s);
    return rc == 0 ? CTL_OK : ctl_fail(ctl, CTL_FAILED, "out of memory");
}

/* ttl and quota go as strings whatever they look like: the server reads "600", "10m" and "10GiB" alike. */
static int add_fields(const ctl_t *ctl, const fields_t *f, json_t *body)
{
    int rc = CTL_OK;
    if (f->id != NULL)
        rc = add_string(ctl, body, "id", "id", f->id);
    if (rc == CTL_OK && f->ttl != NULL)
        rc = add_string(ctl, body, "ttl", "ttl", f->ttl);
    if (rc == CTL_OK && f->quota != NULL)
        rc = add_string(ctl, body, "quota_bytes", "quota", f->quota);
    if (rc != CTL_OK || f->nscratch == 0)
        return rc;
    json_t *scratch = json_array();
    if (json_object_set_new(body, "scratch_prefixes", scratch) != 0)
        return ctl_fail(ctl, CTL_FAILED, "out of memory");
    for (int i = 0; rc == CTL_OK && i < f->nscratch; i++)
        rc = add_string(ctl, scratch, NULL, "scratch", f->scratch[i]);
    return rc;
}

/* The body with the fields given, as JSON text (the caller frees it). */
static int body_text(const ctl_t *ctl, const fields_t *f, char **text)
{
    *text = NULL;
    json_t *body = json_object();
    int rc = body != NULL ? add_fields(ctl, f, body) : ctl_fail(ctl, CTL_FAILED, "out of memory");
    if (rc == CTL_OK && (*text = json_dumps(body, JSON_COMPACT)) == NULL)
        rc = ctl_fail(ctl, CTL_FAILED, "out of memory");
    json_decref(body);
    return rc;
}

/* --- create, extend --- */

enum { C_ID, C_TTL, C_SCRATCH, C_QUOTA };

static const ctl_option_t create_options[] = {
    [C_ID] = {"id", true},           [C_TTL] = {"ttl", true},     [C_SCRATCH] = {"scratch", true},
    [C_QUOTA] = {"quota", true},     {NULL, false},
};

static int run_create(const ctl_t *ctl, const ctl_args_t *args)
{
    const char *const *v = args->values;
    fields_t f = {.id = v[C_ID], .ttl = v[C_TTL], .quota = v[C_QUOTA], .scratch = args->repeated,
                  .nscratch = args->nrepeated};
    char *text;
    int rc = body_text(ctl, &f, &text);
    if (rc != CTL_OK)
        return rc;
    json_t *batch;
    rc = batch_call(ctl, &(request_t){.method = "POST", .path = BATCHES, .body = text, .id = v[C_ID], .creating = true},
                    &batch);
    free(text);
    if (rc == CTL_OK)
        rc = print_one(ctl, batch, "id");
    json_decref(batch);
    return rc;
}

enum { E_TTL };

static const ctl_option_t extend_options[] = {[E_TTL] = {"ttl", true}, {NULL, false}};

static int run_extend(const ctl_t *ctl, const ctl_args_t *args)
{
    const char *ttl = args->values[E_TTL];
    char *text = NULL;
    /* without --ttl, no body: the server extends by the batch's own ttl */
    int rc = ttl != NULL ? body_text(ctl, &(fields_t){.ttl = ttl}, &text) : CTL_OK;
    json_t *batch = NULL;
    if (rc == CTL_OK)
        rc = call_on_batch(ctl, "POST", args->operand, ":extend", text, &batch);
    free(text);
    if (rc == CTL_OK)
        rc = print_one(ctl, batch, "expires_at");
    json_decref(batch);
    return rc;
}

/* --- show --- */

static void print_object(const json_t *object)
{
    char size[32], url[2048];
    format_bytes(count_of(object, "bytes"), size, sizeof(size));
    bool read = json_is_true(json_object_get(object, "read"));
    bool written = json_is_true(json_object_get(object, "written"));
    const char *how = read && written ? "read,written" : read ? "read" : written ? "written" : "-";
    printf("  %-10s %-12s %s\n", size, how, text_of(object, "url", url));
}

static void print_objects(const json_t *batch)
{
    json_t *objects = json_object_get(batch, "objects");
    if (json_array_size(objects) == 0) {
        printf("%-9s none\n", "objects:");
        return;
    }
    printf("objects:\n");
    size_t i;
    json_t *object;
    json_array_foreach(objects, i, object)
        print_object(object);
    if (json_is_true(json_object_get(batch, "objects_truncated")))
        printf("  (only the first %zu are listed; the figures above count them all)\n", json_array_size(objects));
}

/* The batch as "key: value" lines, then its objects. */
static void print_batch(const json_t *batch)
{
    char text[2048], figure[FIGURE];
    printf("%-9s %s\n", "id:", text_of(batch, "id", text));
    printf("%-9s %s\n", "owner:", text_of(batch, "owner", text));
    printf("%-9s %s\n", "created:", text_of(batch, "created_at", text));
    printf("%-9s %s\n", "expires:", text_of(batch, "expires_at", text));
    printf("%-9s %" PRIu64 " s\n", "ttl:", count_of(batch, "ttl"));
    json_t *scratch = json_object_get(batch, "scratch_prefixes"), *prefix;
    size_t i;
    json_array_foreach(scratch, i, prefix)
        printf("%-9s %s\n", "scratch:", flat(prefix, text));
    uint64_t quota = count_of(batch, "quota_bytes");
    format_bytes(quota, figure, sizeof(figure));
    printf("%-9s %s\n", "quota:", quota > 0 ? figure : "none");
    printf("%-9s %s\n", "pinned:", objects_text(batch, "pinned_objects", "pinned_bytes", figure));
    printf("%-9s %s\n", "written:", objects_text(batch, "written_objects", "written_bytes", figure));
    print_objects(batch);
}

static const ctl_option_t no_options[] = {{NULL, false}};

static int run_show(const ctl_t *ctl, const ctl_args_t *args)
{
    json_t *batch;
    int rc = call_on_batch(ctl, "GET", args->operand, "", NULL, &batch);
    if (rc == CTL_OK && ctl->json)
        rc = print_answer(ctl, batch);
    else if (rc == CTL_OK)
        print_batch(batch);
    json_decref(batch);
    return rc;
}

/* --- ls, rm --- */

static void print_listed(const json_t *batch)
{
    char id[2048], owner[2048], expires[2048], pinned[FIGURE];
    printf("%-24s %-28s expires %s, pinned %s\n", text_of(batch, "id", id), text_of(batch, "owner", owner),
           text_of(batch, "expires_at", expires), objects_text(batch, "pinned_objects", "pinned_bytes", pinned));
}

static int run_ls(const ctl_t *ctl, const ctl_args_t *args)
{
    (void)args;
    json_t *answer;
    int rc = batch_call(ctl, &(request_t){.method = "GET", .path = BATCHES}, &answer);
    if (rc != CTL_OK)
        return rc;
    json_t *batches = json_object_get(answer, "batches");
    if (ctl->json) {
        rc = print_answer(ctl, answer);
    } else if (!json_is_array(batches)) {
        rc = ctl_fail(ctl, CTL_SERVER_ERROR, "the answer has no list of batches: is that larder?");
    } else {
        size_t i;
        json_t *batch;
        json_array_foreach(batches, i, batch)
            print_listed(batch);
    }
    json_decref(answer);
    return rc;
}

enum { R_DELETE_OUTPUTS };

static const ctl_option_t rm_options[] = {[R_DELETE_OUTPUTS] = {"delete-outputs", false}, {NULL, false}};

static void print_ended(const json_t *batch, bool outputs)
{
    char id[2048], pinned[FIGURE], written[FIGURE];
    printf("ended %s: pinned %s, wrote %s", text_of(batch, "id", id),
           objects_text(batch, "pinned_objects", "pinned_bytes", pinned),
           objects_text(batch, "written_objects", "written_bytes", written));
    uint64_t deleted = count_of(batch, "outputs_deleted");
    if (outputs)
        printf(", deleted %" PRIu64 " output%s", deleted, deleted == 1 ? "" : "s");
    printf("\n");
}

static int run_rm(const ctl_t *ctl, const ctl_args_t *args)
{
    bool outputs = args->values[R_DELETE_OUTPUTS] != NULL;
    json_t *ended;
    int rc = call_on_batch(ctl, "DELETE", args->operand, outputs ? "?deleteOutputs=true" : "", NULL, &ended);
    if (rc == CTL_OK && ctl->json)
        rc = print_answer(ctl, ended);
    else if (rc == CTL_OK)
        print_ended(ended, outputs);
    json_decref(ended);
    return rc;
}

/* --- the commands --- */

static const ctl_command_t batch_create = {
    .name = "create",
    .summary = "a new batch; prints its id (POST /_larder/v1/batches)",
    .help = "usage: larderctl [GLOBAL OPTIONS] batch create [--id ID] [--ttl TTL] [--scratch gs://B/PREFIX]...\n"
            "                                              [--quota SIZE] [--json]\n"
            "\n"
            "Creates a batch owned by the token's identity and prints its id, and only that,\n"
            "so that a script can say ID=$(larderctl batch create ...). Every option may be\n"
            "left out:\n"
            "\n"
            "  --id ID                  1 to 128 letters, digits, '.', '_', '~' or '-';\n"
            "                           without it larder makes one up: \"b-\" and 16 hex digits\n"
            "  --ttl TTL                how long the batch lives unless extended: seconds (\"600\")\n"
            "                           or with a unit (\"10m\", \"2h\", \"1d\"); default\n"
            "                           batches.default_ttl, at most batches.max_ttl\n"
            "  --scratch gs://B/PREFIX  where the batch's intermediate outputs go: rm\n"
            "                           --delete-outputs deletes what it wrote there; up to 16\n"
            "  --quota SIZE             the most the batch may pin: \"10GiB\", or bytes; default\n"
            "                           batches.default_quota\n"
            "  --json                   print the whole batch as the server answered it\n"
            "\n"
            "A live batch with that id already (anyone's): \"batch 'ID' exists\", exit 9.\n"
            "A ttl, quota or prefix the server refuses: its message, exit 7.\n",
    .options = create_options,
    .has_json = true,
    .repeating = "scratch",
    .run = run_create,
};

static const ctl_command_t batch_extend = {
    .name = "extend",
    .summary = "the heartbeat: expire later; prints the new expiry (POST .../ID:extend)",
    .help = "usage: larderctl [GLOBAL OPTIONS] batch extend ID [--ttl TTL] [--json]\n"
            "\n"
            "Moves the batch's expiry to TTL from now (POST /_larder/v1/batches/ID:extend),\n"
            "or without --ttl to the batch's own ttl from now, and prints the new expiry\n"
            "(RFC 3339, UTC).\n"
            "\n"
            "  --ttl TTL   seconds (\"600\") or with a unit (\"10m\", \"2h\", \"1d\")\n"
            "  --json      print the whole batch as the server answered it\n"
            "\n"
            "No batch ID of the caller's (an admin: of anyone's): \"no such batch\", exit 8.\n",
    .options = extend_options,
    .has_json = true,
    .operand = "ID",
    .run = run_extend,
};

static const ctl_command_t batch_show = {
    .name = "show",
    .summary = "one batch and the objects it pinned (GET /_larder/v1/batches/ID)",
    .help = "usage: larderctl [GLOBAL OPTIONS] batch show ID [--json]\n"
            "\n"
            "Prints the batch as \"key: value\" lines (owner, times, ttl, scratch prefixes,\n"
            "quota, what it pinned and what was written in it), then one line per object it\n"
            "pinned: its size, whether it was read or written in the batch, its gs:// URL.\n"
            "\n"
            "  --json   print the server's answer (it lists at most 10,000 objects)\n"
            "\n"
            "No batch ID of the caller's (an admin: of anyone's): \"no such batch\", exit 8.\n",
    .options = no_options,
    .has_json = true,
    .operand = "ID",
    .run = run_show,
};

static const ctl_command_t batch_ls = {
    .name = "ls",
    .summary = "the caller's batches, an admin's: all (GET /_larder/v1/batches)",
    .help = "usage: larderctl [GLOBAL OPTIONS] batch ls [--json]\n"
            "\n"
            "One line per live batch of the caller's (an admin's: everyone's): its id,\n"
            "owner, expiry, and the objects and bytes it pinned.\n"
            "\n"
            "  --json   print the server's answer {\"batches\": [...]}\n",
    .options = no_options,
    .has_json = true,
    .run = run_ls,
};

static const ctl_command_t batch_rm = {
    .name = "rm",
    .summary = "end a batch, its pins released (DELETE /_larder/v1/batches/ID)",
    .help = "usage: larderctl [GLOBAL OPTIONS] batch rm ID [--delete-outputs] [--json]\n"
            "\n"
            "Ends the batch: what it pinned may be evicted again. Prints what it pinned and\n"
            "what was written in it.\n"
            "\n"
            "  --delete-outputs   first delete upstream, with the caller's token, every object\n"
            "                     written in the batch under its scratch prefixes (and drop\n"
            "                     it from the cache). If upstream refuses any, the batch stays\n"
            "                     as it was and rm can be retried: the error line says how\n"
            "                     many were not deleted and names the first; exit 7.\n"
            "  --json             print the server's answer\n"
            "\n"
            "No batch ID of the caller's (an admin: of anyone's): \"no such batch\", exit 8.\n",
    .options = rm_options,
    .has_json = true,
    .operand = "ID",
    .run = run_rm,
};

static const ctl_command_t *const batch_commands[] = {&batch_create, &batch_extend, &batch_show, &batch_ls,
                                                      &batch_rm,     NULL};

const ctl_command_t ctl_cmd_batch = {
    .name = "batch",
    .summary = "a pipeline's batches: create, extend, show, ls, rm (/_larder/v1/batches)",
    .help = "usage: larderctl [GLOBAL OPTIONS] batch COMMAND [ID] [OPTIONS]\n"
            "\n"
            "A batch pins in larder's cache every object read or written with the header\n"
            "X-Larder-Batch: ID, until the batch ends: by rm, or when its ttl runs out\n"
            "without an extend. A batch is its creator's; an admin (auth.admins) may act on\n"
            "anyone's, and anyone else is told \"no such batch\" (exit 8).\n"
            "`larderctl batch COMMAND --help` gives a command's options.\n",
    .options = no_options,
    .has_json = false,
    .subcommands = batch_commands,
};
