/*
 * cmd_dag.c - `larderctl dag`: a pipeline's DAGs through /_larder/v1/dags,
 * as a group of commands: submit, show, ls, rm, and start and done, which
 * tell larder that a stage started or finished.
 *
 * submit reads the DAG from a file (or the standard input) and checks only
 * that it is JSON: what a DAG must be is the server's to say, in its own
 * message. Like `batch create` it prints the id and nothing else. The server
 * answers someone else's DAG as it does an unknown one (404).
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "larderctl.h"
#include "output.h"

static const char DAGS[] = "/_larder/v1/dags";

/* --- the answers --- */

static const char *text_of(const json_t *obj, const char *key, char out[2048])
{
    return ctl_job_text(obj, key, "?", out);
}

/* How many of the array obj[key] are in state. */
static size_t count_in(const json_t *obj, const char *key, const char *state)
{
    size_t i, n = 0;
    json_t *item;
    json_array_foreach(json_object_get(obj, key), i, item)
        n += ctl_job_state_is(item, state);
    return n;
}

/* With --json the whole answer; else only its string key (the id). */
static int print_one(const ctl_t *ctl, const json_t *answer, const char *key)
{
    if (ctl->json)
        return ctl_print_answer(ctl, answer);
    char value[2048];
    if (json_string_value(json_object_get(answer, key)) == NULL)
        return ctl_fail(ctl, CTL_SERVER_ERROR, "the answer has no %s: is that larder?", key);
    printf("%s\n", text_of(answer, key, value));
    return CTL_OK;
}

/* A stage's line: its id and state, then when it ran, or when it is predicted to and how much of what it reads
 * is cached. */
static void print_stage(const json_t *stage)
{
    char id[2048], state[2048], from[2048], to[2048];
    printf("  %-16s %-8s ", text_of(stage, "id", id), text_of(stage, "state", state));
    json_t *fraction = json_object_get(stage, "cached_fraction");
    if (ctl_job_state_is(stage, "done"))
        printf("started %s, done %s\n", ctl_job_text(stage, "started_at", "-", from),
               ctl_job_text(stage, "done_at", "-", to));
    else if (json_is_number(fraction))
        printf("predicted %s to %s, %.0f%% cached\n", ctl_job_text(stage, "predicted_start", "-", from),
               ctl_job_text(stage, "predicted_end", "-", to), json_number_value(fraction) * 100);
    else
        printf("not planned yet\n");
}

/* The DAG as "key: value" lines, then its stages and its inputs. */
static void print_dag(const json_t *dag)
{
    char text[2048], figure[32];
    printf("%-9s %s\n", "id:", text_of(dag, "id", text));
    printf("%-9s %s\n", "owner:", text_of(dag, "owner", text));
    printf("%-9s %s\n", "state:", text_of(dag, "state", text));
    printf("%-9s %s\n", "created:", text_of(dag, "created_at", text));
    if (json_object_get(dag, "batch") != NULL)
        printf("%-9s %s\n", "batch:", text_of(dag, "batch", text));
    printf("%-9s %g\n", "weight:", json_number_value(json_object_get(dag, "weight")));
    json_int_t fetched = json_integer_value(json_object_get(dag, "bytes_fetched"));
    format_bytes(fetched > 0 ? (uint64_t)fetched : 0, figure, sizeof(figure));
    printf("%-9s %s\n", "fetched:", figure);
    size_t i;
    json_t *item;
    printf("stages:\n");
    json_array_foreach(json_object_get(dag, "stages"), i, item)
        print_stage(item);
    json_t *inputs = json_object_get(dag, "inputs");
    if (json_array_size(inputs) == 0) {
        printf("%-9s none\n", "inputs:");
        return;
    }
    printf("inputs:\n");
    json_array_foreach(inputs, i, item)
        ctl_print_job_input(item, "cached_bytes", true);
}

/* --- submit --- */

/* The DAG in file ("-": the standard input) as JSON; a usage error naming the file when it cannot be read or
 * is not JSON. */
static int read_dag(const ctl_t *ctl, const char *file, json_t **dag)
{
    *dag = NULL;
    bool from_stdin = strcmp(file, "-") == 0;
    const char *name = from_stdin ? "the standard input" : file;
    FILE *f = from_stdin ? stdin : fopen(file, "r");
    if (f == NULL)
        return ctl_fail(ctl, CTL_USAGE, "cannot read %s: %s", name, strerror(errno));
    json_error_t error;
    *dag = json_loadf(f, 0, &error);
    int failure = ferror(f) ? errno : 0; /* a directory opens, and its reads fail */
    if (!from_stdin)
        (void)fclose(f);
    if (*dag == NULL && failure != 0)
        return ctl_fail(ctl, CTL_USAGE, "cannot read %s: %s", name, strerror(failure));
    if (*dag == NULL)
        return ctl_fail(ctl, CTL_USAGE, "%s is not JSON: %s (line %d, column %d)", name, error.text, error.line,
                        error.column);
    return CTL_OK;
}

static const ctl_option_t no_options[] = {{NULL, false}};

static int run_submit(const ctl_t *ctl, const ctl_args_t *args)
{
    json_t *dag;
    int rc = read_dag(ctl, args->operand, &dag);
    if (rc != CTL_OK)
        return rc;
    char *text = json_dumps(dag, JSON_COMPACT);
    json_t *submitted = NULL;
    /* a DAG without an id gets one made up: then a 409 cannot happen */
    const ctl_job_request_t post = {.method = "POST", .collection = DAGS, .noun = "DAG", .body = text,
                                    .id = json_string_value(json_object_get(dag, "id")), .creating = true};
    rc = text != NULL ? ctl_job_call(ctl, &post, &submitted) : ctl_fail(ctl, CTL_FAILED, "out of memory");
    if (rc == CTL_OK)
        rc = print_one(ctl, submitted, "id");
    free(text);
    json_decref(submitted);
    json_decref(dag);
    return rc;
}

/* --- show, ls, rm --- */

/* METHOD on DAG id's own URL; its answer when it succeeded. */
static int call_on_dag(const ctl_t *ctl, const char *method, const char *id, json_t **out)
{
    return ctl_job_call(ctl, &(ctl_job_request_t){.method = method, .collection = DAGS, .noun = "DAG", .id = id},
                        out);
}

static int run_show(const ctl_t *ctl, const ctl_args_t *args)
{
    json_t *dag;
    int rc = call_on_dag(ctl, "GET", args->operand, &dag);
    if (rc == CTL_OK && ctl->json)
        rc = ctl_print_answer(ctl, dag);
    else if (rc == CTL_OK)
        print_dag(dag);
    json_decref(dag);
    return rc;
}

static void print_listed(const json_t *dag)
{
    char id[2048], owner[2048], state[2048];
    json_t *stages = json_object_get(dag, "stages"), *inputs = json_object_get(dag, "inputs");
    printf("%-24s %-28s %-8s %zu/%zu stages done, %zu/%zu inputs cached\n", text_of(dag, "id", id),
           text_of(dag, "owner", owner), text_of(dag, "state", state), count_in(dag, "stages", "done"),
           json_array_size(stages), count_in(dag, "inputs", "done"), json_array_size(inputs));
}

static int run_ls(const ctl_t *ctl, const ctl_args_t *args)
{
    (void)args;
    json_t *answer;
    int rc = ctl_job_call(ctl, &(ctl_job_request_t){.method = "GET", .collection = DAGS, .noun = "DAG"}, &answer);
    if (rc != CTL_OK)
        return rc;
    json_t *dags = json_object_get(answer, "dags");
    if (ctl->json) {
        rc = ctl_print_answer(ctl, answer);
    } else if (!json_is_array(dags)) {
        rc = ctl_fail(ctl, CTL_SERVER_ERROR, "the answer has no list of DAGs: is that larder?");
    } else {
        size_t i;
        json_t *dag;
        json_array_foreach(dags, i, dag)
            print_listed(dag);
    }
    json_decref(answer);
    return rc;
}

static int run_rm(const ctl_t *ctl, const ctl_args_t *args)
{
    json_t *ended;
    int rc = call_on_dag(ctl, "DELETE", args->operand, &ended);
    char id[2048];
    if (rc == CTL_OK && ctl->json)
        rc = ctl_print_answer(ctl, ended);
    else if (rc == CTL_OK)
        printf("ended %s\n", text_of(ended, "id", id));
    json_decref(ended);
    return rc;
}

/* --- start, done --- */

/* The stage named id in the DAG's answer, or NULL. */
static const json_t *stage_of(const json_t *dag, const char *id)
{
    size_t i;
    json_t *stage;
    json_array_foreach(json_object_get(dag, "stages"), i, stage) {
        const char *s = json_string_value(json_object_get(stage, "id"));
        if (s != NULL && strcmp(s, id) == 0)
            return stage;
    }
    return NULL;
}

/* The server answers an unknown DAG and an unknown stage alike (404), so the DAG is looked at first: that
 * tells them apart, and a stage done already (409) is named as such. */
static int stage_event(const ctl_t *ctl, const ctl_args_t *args, const char *event)
{
    const char *id = args->operand, *name = args->operand2;
    json_t *dag;
    int rc = call_on_dag(ctl, "GET", id, &dag);
    const json_t *stage = rc == CTL_OK ? stage_of(dag, name) : NULL;
    if (rc == CTL_OK && stage == NULL)
        rc = ctl_fail(ctl, CTL_NOT_FOUND, "DAG '%s' has no stage '%s'", id, name);
    else if (rc == CTL_OK && ctl_job_state_is(stage, "done"))
        rc = ctl_fail(ctl, CTL_CONFLICT, "stage '%s' of DAG '%s' is done already", name, id);
    json_decref(dag);
    if (rc != CTL_OK)
        return rc;
    const ctl_job_request_t post = {.method = "POST", .collection = DAGS, .noun = "DAG", .id = id, .stage = name,
                                    .tail = event};
    rc = ctl_job_call(ctl, &post, &dag);
    if (rc == CTL_OK && ctl->json)
        rc = ctl_print_answer(ctl, dag);
    else if (rc == CTL_OK && (stage = stage_of(dag, name)) != NULL)
        print_stage(stage);
    else if (rc == CTL_OK)
        rc = ctl_fail(ctl, CTL_SERVER_ERROR, "the answer has no stage '%s': is that larder?", name);
    json_decref(dag);
    return rc;
}

static int run_start(const ctl_t *ctl, const ctl_args_t *args)
{
    return stage_event(ctl, args, ":start");
}

static int run_done(const ctl_t *ctl, const ctl_args_t *args)
{
    return stage_event(ctl, args, ":done");
}

/* --- the commands --- */

/* What several commands' help says alike. */
#define JSON_ANSWER_HELP "  --json   print the server's answer\n"
#define JSON_DAG_HELP "  --json   print the whole DAG as the server answered it\n"
#define NO_SUCH_DAG_HELP "No DAG ID of the caller's (an admin: of anyone's): \"no such DAG\", exit 8.\n"
/* A command about one DAG: its id the operand, no options but --json. */
#define ON_ONE_DAG .options = no_options, .has_json = true, .operand = "ID"
#define STAGE_EVENT_HELP                                                                                        \
    "Prints the stage's line as `dag show` does.\n"                                                             \
    "\n" JSON_DAG_HELP "\n" NO_SUCH_DAG_HELP "No stage STAGE in it: exit 8. A stage done already: exit 9.\n"

static const ctl_command_t dag_submit = {
    .name = "submit",
    .summary = "a DAG from a file; prints its id (POST /_larder/v1/dags)",
    .help = "usage: larderctl [GLOBAL OPTIONS] dag submit FILE [--json]\n"
            "\n"
            "Submits the DAG in FILE (\"-\": the standard input) and prints its id, and only\n"
            "that, so that a script can say ID=$(larderctl dag submit dag.json). A DAG is\n"
            "JSON:\n"
            "\n"
            "  {\"id\"?, \"batch\"?, \"weight\"?,\n"
            "   \"stages\": [{\"id\", \"inputs\": [{\"url\": \"gs://B/O\", \"range\"?}], \"outputs\"?,\n"
            "               \"after\"?, \"expected_runtime_ms\"?}]}\n"
            "\n"
            "Without an id larder makes one up: \"d-\" and 16 hex digits. Planning starts at\n"
            "once: larder fetches the inputs, with the token's credentials, before the\n"
            "stages that read them start, and keeps them cached until they are read.\n"
            "\n"
            JSON_DAG_HELP
            "\n"
            "FILE unreadable or not JSON: a usage error naming it, exit 2.\n"
            "A live DAG with that id already: \"DAG 'ID' exists\", exit 9.\n"
            "A DAG the server refuses: its message, exit 7.\n",
    .options = no_options,
    .has_json = true,
    .operand = "FILE",
    .run = run_submit,
};

static const ctl_command_t dag_show = {
    .name = "show",
    .summary = "one DAG: its stages and inputs (GET /_larder/v1/dags/ID)",
    .help = "usage: larderctl [GLOBAL OPTIONS] dag show ID [--json]\n"
            "\n"
            "Prints the DAG as \"key: value\" lines (owner, state, creation time, batch,\n"
            "weight, bytes fetched), then one line per stage: its id, its state (waiting,\n"
            "running, done), and when it started and was done, or when it is predicted to\n"
            "start and end and how much of what it reads is cached; then one line per\n"
            "input: its state (pending, fetching, done, failed), the bytes cached of it (of\n"
            "its range) and its size, whether larder retains it for a stage still to read\n"
            "it, its URL (\"#bytes=A-B\" for a range), and why a failed one failed.\n"
            "\n"
            JSON_ANSWER_HELP
            "\n" NO_SUCH_DAG_HELP,
    ON_ONE_DAG,
    .run = run_show,
};

static const ctl_command_t dag_ls = {
    .name = "ls",
    .summary = "the caller's DAGs, an admin's: all (GET /_larder/v1/dags)",
    .help = "usage: larderctl [GLOBAL OPTIONS] dag ls [--json]\n"
            "\n"
            "One line per DAG of the caller's (an admin's: everyone's): its id, owner and\n"
            "state, how many of its stages are done and how many of its inputs cached.\n"
            "\n"
            "  --json   print the server's answer {\"dags\": [...]}\n",
    .options = no_options,
    .has_json = true,
    .run = run_ls,
};

static const ctl_command_t dag_rm = {
    .name = "rm",
    .summary = "end a DAG, its inputs released (DELETE /_larder/v1/dags/ID)",
    .help = "usage: larderctl [GLOBAL OPTIONS] dag rm ID [--json]\n"
            "\n"
            "Ends the DAG: nothing more is fetched for it, and what larder retained for it\n"
            "may be evicted again. Prints \"ended ID\".\n"
            "\n"
            JSON_ANSWER_HELP
            "\n" NO_SUCH_DAG_HELP,
    ON_ONE_DAG,
    .run = run_rm,
};

static const ctl_command_t dag_start = {
    .name = "start",
    .summary = "a stage started (POST /_larder/v1/dags/ID/stages/STAGE:start)",
    .help = "usage: larderctl [GLOBAL OPTIONS] dag start ID STAGE [--json]\n"
            "\n"
            "Tells larder that the DAG's stage STAGE started: larder plans the rest of the\n"
            "DAG from now. " STAGE_EVENT_HELP,
    ON_ONE_DAG,
    .operand2 = "STAGE",
    .run = run_start,
};

static const ctl_command_t dag_done = {
    .name = "done",
    .summary = "a stage finished (POST /_larder/v1/dags/ID/stages/STAGE:done)",
    .help = "usage: larderctl [GLOBAL OPTIONS] dag done ID STAGE [--json]\n"
            "\n"
            "Tells larder that the DAG's stage STAGE finished: its outputs may now be\n"
            "fetched for the stages that read them, and what only it read is released.\n" STAGE_EVENT_HELP,
    ON_ONE_DAG,
    .operand2 = "STAGE",
    .run = run_done,
};

static const ctl_command_t *const dag_commands[] = {&dag_submit, &dag_show,  &dag_ls, &dag_rm,
                                                    &dag_start,  &dag_done, NULL};

const ctl_command_t ctl_cmd_dag = {
    .name = "dag",
    .summary = "a pipeline's DAGs: submit, show, ls, rm, start, done (/_larder/v1/dags)",
    .help = "usage: larderctl [GLOBAL OPTIONS] dag COMMAND [ID [STAGE] | FILE] [OPTIONS]\n"
            "\n"
            "A DAG tells larder what a pipeline's stages will read, and in what order:\n"
            "larder fetches their inputs before they start, with the submitter's\n"
            "credentials, and keeps them cached until the stages that read them are done.\n"
            "A DAG is its submitter's; an admin (auth.admins) may act on anyone's, and\n"
            "anyone else is told \"no such DAG\" (exit 8).\n"
            "`larderctl dag COMMAND --help` gives a command's options.\n",
    .options = no_options,
    .has_json = false,
    .subcommands = dag_commands,
};
