/*
 * cmd_usage.c - `larderctl usage [--user U]`: GET /_larder/v1/usage, per-user
 * accounting (cached, served, fetched and pinned bytes), one line per user.
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "http_call.h"
#include "larderctl.h"
#include "output.h"

enum { OPT_USER };

static uint64_t field(const json_t *user, const char *name)
{
    json_t *v = json_object_get(user, name);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void print_user(const json_t *user)
{
    char cached[32], served[32], fetched[32], pinned[32];
    format_bytes(field(user, "cached_bytes"), cached, sizeof(cached));
    format_bytes(field(user, "served_bytes"), served, sizeof(served));
    format_bytes(field(user, "fetched_bytes"), fetched, sizeof(fetched));
    format_bytes(field(user, "pinned_bytes"), pinned, sizeof(pinned));
    const char *name = json_string_value(json_object_get(user, "user"));
    printf("%-40s cached %-10s served %-10s fetched %-10s pinned %s\n", name != NULL ? name : "?", cached, served,
           fetched, pinned);
}

static int print_result(const ctl_t *ctl, const json_t *answer)
{
    if (ctl->json)
        return print_json(answer) == 0 ? CTL_OK : ctl_fail(ctl, CTL_FAILED, "could not write the output");
    json_t *users = json_object_get(answer, "users");
    if (users == NULL) {
        print_user(answer);
    } else {
        size_t i;
        json_t *user;
        json_array_foreach(users, i, user)
            print_user(user);
    }
    return fflush(stdout) == 0 ? CTL_OK : ctl_fail(ctl, CTL_FAILED, "could not write the output");
}

static int run(const ctl_t *ctl, const ctl_args_t *args)
{
    const char *user = args->values[OPT_USER];
    char *escaped = user != NULL ? curl_easy_escape(NULL, user, 0) : NULL;
    if (user != NULL && (user[0] == '\0' || escaped == NULL)) {
        curl_free(escaped);
        return ctl_fail(ctl, CTL_USAGE, "--user needs an identity");
    }
    char path[2048];
    snprintf(path, sizeof(path), "/_larder/v1/usage%s%s", escaped != NULL ? "?user=" : "",
             escaped != NULL ? escaped : "");
    curl_free(escaped);
    json_t *answer;
    int rc = http_call_json(ctl, "GET", path, NULL, &answer);
    if (rc == CTL_OK)
        rc = print_result(ctl, answer);
    json_decref(answer);
    return rc;
}

static const ctl_option_t options[] = {[OPT_USER] = {"user", true}, {NULL, false}};

const ctl_command_t ctl_cmd_usage = {
    .name = "usage",
    .summary = "bytes cached, served, fetched and pinned, per user (GET /_larder/v1/usage)",
    .help = "usage: larderctl [GLOBAL OPTIONS] usage [--user U] [--json]\n"
            "\n"
            "Prints one line per user: the bytes larder holds of the objects the user owns\n"
            "(cached), sent to the user from the cache (served), sent as they came from\n"
            "upstream (fetched), and pinned by the user's batches. With --user U only U's;\n"
            "without it everyone's, which only the identities in auth.admins may read (a\n"
            "user may read their own: exit 5 otherwise).\n"
            "\n"
            "  --user U   one user's figures\n"
            "  --json     print the server's answer as it came\n",
    .options = options,
    .has_json = true,
    .run = run,
};
