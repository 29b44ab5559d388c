/*
 * cmd_health.c - `larderctl health`: GET /_larder/healthz (is the process
 * serving?) then /_larder/readyz (can it serve now?). Neither needs a token.
 *
 * Not ready is an answer, not an error, so it goes to stdout like "ready";
 * its own exit code lets a script or a probe tell it from a dead server (3).
 */
#include <stdio.h>
#include <string.h>

#include "http_call.h"
#include "larderctl.h"
#include "output.h"

static const char HEALTHZ[] = "/_larder/healthz";
static const char READYZ[] = "/_larder/readyz";

/* GET path, with any answer but a 2xx (or, when allow_503, a 503) made the exit code; the answer as JSON. */
static int get_json(const ctl_t *ctl, const char *path, bool allow_503, long *status, json_t **out)
{
    *out = NULL;
    http_answer_t answer;
    int rc = http_call(ctl, "GET", path, NULL, &answer);
    if (rc != CTL_OK)
        return rc;
    *status = answer.status;
    if (!(allow_503 && answer.status == 503))
        rc = http_answer_check(ctl, path, &answer);
    if (rc == CTL_OK) {
        *out = http_answer_json(ctl, path, &answer);
        rc = *out != NULL ? CTL_OK : CTL_SERVER_ERROR;
    }
    http_answer_dispose(&answer);
    return rc;
}

static int print_both(const ctl_t *ctl, json_t *alive, json_t *ready)
{
    json_t *both = json_pack("{sOsO}", "healthz", alive, "readyz", ready);
    if (both == NULL)
        return ctl_fail(ctl, CTL_FAILED, "out of memory");
    int rc = print_json(both) == 0 ? CTL_OK : ctl_fail(ctl, CTL_FAILED, "could not write the output");
    json_decref(both);
    return rc;
}

static void print_human(long ready_status, const json_t *ready)
{
    if (ready_status != 503) {
        printf("alive, ready\n");
        return;
    }
    const char *reason = json_string_value(json_object_get(ready, "reason"));
    if (reason == NULL)
        reason = "no reason given";
    char line[512];
    one_line(reason, strlen(reason), line, sizeof(line));
    printf("alive, not ready: %s\n", line);
}

static int run(const ctl_t *ctl, const ctl_args_t *args)
{
    (void)args;
    json_t *alive = NULL, *ready = NULL;
    long alive_status = 0, ready_status = 0;
    int rc = get_json(ctl, HEALTHZ, false, &alive_status, &alive);
    if (rc == CTL_OK)
        rc = get_json(ctl, READYZ, true, &ready_status, &ready);
    if (rc == CTL_OK) {
        if (ctl->json)
            rc = print_both(ctl, alive, ready);
        else
            print_human(ready_status, ready);
        if (rc == CTL_OK && ready_status == 503)
            rc = CTL_NOT_READY;
    }
    json_decref(alive);
    json_decref(ready);
    return rc;
}

static const ctl_option_t options[] = {{NULL, false}};

const ctl_command_t ctl_cmd_health = {
    .name = "health",
    .summary = "whether larder is alive and ready to serve (GET /_larder/healthz, readyz; anyone)",
    .help = "usage: larderctl [GLOBAL OPTIONS] health [--json]\n"
            "\n"
            "Asks GET /_larder/healthz and GET /_larder/readyz, and prints \"alive, ready\" or\n"
            "\"alive, not ready: REASON\" (draining, the store closed or out of space,\n"
            "upstream not answering). No token is needed.\n"
            "\n"
            "  --json    print {\"healthz\": ..., \"readyz\": ...}, the server's two answers\n"
            "\n"
            "Exit 0 when ready, 6 when alive but not ready, 3 when larder cannot be reached.\n",
    .options = options,
    .has_json = true,
    .run = run,
};
