/*
 * cmd_purge.c - `larderctl purge`: POST /_larder/v1/purge, dropping cached
 * objects by user, bucket (and prefix), object, or all of them.
 *
 * The flags are checked here before anything is sent, so a typo is a usage
 * error rather than a 400, and --all must be confirmed with --yes: emptying
 * the whole cache by accident costs every job a cold start.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_call.h"
#include "larderctl.h"
#include "output.h"

enum { OPT_USER, OPT_BUCKET, OPT_PREFIX, OPT_OBJECT, OPT_ALL, OPT_YES };

static const ctl_option_t options[] = {
    [OPT_USER] = {"user", true}, [OPT_BUCKET] = {"bucket", true}, [OPT_PREFIX] = {"prefix", true},
    [OPT_OBJECT] = {"object", true}, [OPT_ALL] = {"all", false},  [OPT_YES] = {"yes", false},
    {NULL, false},
};
_Static_assert(OPT_YES < CTL_MAX_OPTIONS, "ctl_args_t has a value for each option");

/* Whether s is gs://BUCKET/OBJECT with neither part empty, as the server requires. */
static bool is_object_url(const char *s)
{
    if (strncmp(s, "gs://", 5) != 0)
        return false;
    const char *slash = strchr(s + 5, '/');
    return slash != NULL && slash != s + 5 && slash[1] != '\0';
}

/* CTL_OK when the flags name exactly one purge the server will take; else the usage line written. */
static int check_flags(const ctl_t *ctl, const char *const *v)
{
    if (v[OPT_PREFIX] != NULL && v[OPT_BUCKET] == NULL)
        return ctl_fail(ctl, CTL_USAGE, "--prefix goes with --bucket");
    int kinds = (v[OPT_USER] != NULL) + (v[OPT_BUCKET] != NULL) + (v[OPT_OBJECT] != NULL) + (v[OPT_ALL] != NULL);
    if (kinds != 1)
        return ctl_fail(ctl, CTL_USAGE, "name exactly one of --user, --bucket, --object or --all");
    static const int valued[] = {OPT_USER, OPT_BUCKET, OPT_OBJECT};
    for (size_t i = 0; i < sizeof(valued) / sizeof(valued[0]); i++)
        if (v[valued[i]] != NULL && v[valued[i]][0] == '\0')
            return ctl_fail(ctl, CTL_USAGE, "--%s needs a value that is not empty", options[valued[i]].name);
    if (v[OPT_OBJECT] != NULL && !is_object_url(v[OPT_OBJECT]))
        return ctl_fail(ctl, CTL_USAGE, "--object takes gs://BUCKET/OBJECT");
    if (v[OPT_ALL] != NULL && v[OPT_YES] == NULL)
        return ctl_fail(ctl, CTL_USAGE, "--all drops every cached object: add --yes to confirm");
    return CTL_OK;
}

/* The request body for flags check_flags accepted; NULL when memory ran out. */
static json_t *purge_body(const char *const *v)
{
    if (v[OPT_USER] != NULL)
        return json_pack("{ss}", "user", v[OPT_USER]);
    if (v[OPT_OBJECT] != NULL)
        return json_pack("{ss}", "object", v[OPT_OBJECT]);
    if (v[OPT_ALL] != NULL)
        return json_pack("{sb}", "all", 1);
    if (v[OPT_PREFIX] != NULL)
        return json_pack("{ssss}", "bucket", v[OPT_BUCKET], "prefix", v[OPT_PREFIX]);
    return json_pack("{ss}", "bucket", v[OPT_BUCKET]);
}

static int print_result(const ctl_t *ctl, const json_t *answer)
{
    if (ctl->json)
        return print_json(answer) == 0 ? CTL_OK : ctl_fail(ctl, CTL_FAILED, "could not write the output");
    json_t *objects = json_object_get(answer, "objects"), *bytes = json_object_get(answer, "bytes");
    if (!json_is_integer(objects) || !json_is_integer(bytes))
        return ctl_fail(ctl, CTL_SERVER_ERROR, "the purge answer lacks objects or bytes: is that larder?");
    json_int_t n = json_integer_value(objects);
    char size[32];
    format_bytes(json_integer_value(bytes) > 0 ? (uint64_t)json_integer_value(bytes) : 0, size, sizeof(size));
    printf("purged %" JSON_INTEGER_FORMAT " object%s (%s)\n", n, n == 1 ? "" : "s", size);
    return CTL_OK;
}

static int run(const ctl_t *ctl, const ctl_args_t *args)
{
    int rc = check_flags(ctl, args->values);
    if (rc != CTL_OK)
        return rc;
    json_t *body = purge_body(args->values);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return ctl_fail(ctl, CTL_FAILED, "out of memory");
    json_t *answer;
    rc = http_call_json(ctl, "POST", "/_larder/v1/purge", text, &answer);
    free(text);
    if (rc == CTL_OK)
        rc = print_result(ctl, answer);
    json_decref(answer);
    return rc;
}

const ctl_command_t ctl_cmd_purge = {
    .name = "purge",
    .summary = "drop cached objects by user, bucket (and prefix), object, or all (POST /_larder/v1/purge)",
    .help = "usage: larderctl [GLOBAL OPTIONS] purge --user U [--json]\n"
            "       larderctl [GLOBAL OPTIONS] purge --bucket B [--prefix P] [--json]\n"
            "       larderctl [GLOBAL OPTIONS] purge --object gs://B/O [--json]\n"
            "       larderctl [GLOBAL OPTIONS] purge --all --yes [--json]\n"
            "\n"
            "Drops cached objects from larder's store (the buckets themselves are not\n"
            "touched; the next read of a purged object is a MISS) and prints\n"
            "\"purged N objects (SIZE)\". Name exactly one of:\n"
            "\n"
            "  --user U            every object U owns (the identity whose read filled it)\n"
            "  --bucket B          every object of bucket B ...\n"
            "  --prefix P          ... whose name starts with P (only with --bucket)\n"
            "  --object gs://B/O   that one object\n"
            "  --all               everything; needs --yes as well\n"
            "  --yes               confirm --all\n"
            "  --json              print the server's answer {\"objects\": N, \"bytes\": B}\n"
            "\n"
            "Admins (larder's auth.admins) may purge anything; any user may purge their own\n"
            "objects with --user and their own identity. Others get exit 5.\n",
    .options = options,
    .has_json = true,
    .run = run,
};
