/*
 * cmd_status.c - `larderctl status`: GET /_larder/stats (admins only), shown
 * as a few aligned lines, or with --json as the server sent it.
 *
 * A figure the answer lacks prints as "?" rather than failing: larder's
 * stats grow over time, and an older or newer server must still be readable.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "http_call.h"
#include "larderctl.h"
#include "output.h"

#define FIGURE 32 /* room for any formatted count or size */

/* A count from the answer; false when it has none. */
static bool count_of(const json_t *obj, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static const char *count_text(const json_t *obj, const char *key, char out[FIGURE])
{
    uint64_t n;
    if (!count_of(obj, key, &n))
        return "?";
    (void)snprintf(out, FIGURE, "%" PRIu64, n);
    return out;
}

static const char *bytes_text(const json_t *obj, const char *key, char out[FIGURE])
{
    uint64_t n;
    if (!count_of(obj, key, &n))
        return "?";
    format_bytes(n, out, FIGURE);
    return out;
}

/* "s" unless the count printed is one, so a line reads "1 chunk", "2 chunks" and "? chunks". */
static const char *plural(const char *count)
{
    return strcmp(count, "1") == 0 ? "" : "s";
}

static void print_store(const json_t *stats)
{
    char used[FIGURE], budget[FIGURE], share[FIGURE] = "";
    uint64_t u, b;
    if (count_of(stats, "used_bytes", &u) && count_of(stats, "budget", &b) && b > 0)
        (void)snprintf(share, sizeof(share), " (%.1f%%)", 100.0 * (double)u / (double)b);
    const char *full = json_is_true(json_object_get(stats, "out_of_space")) ? ", OUT OF SPACE" : "";
    printf("%-17s %s used of %s%s%s\n", "store", bytes_text(stats, "used_bytes", used),
           bytes_text(stats, "budget", budget), share, full);
}

static void print_counts(const json_t *stats)
{
    char a[FIGURE], b[FIGURE], c[FIGURE];
    const char *chunks = count_text(stats, "chunks", b);
    printf("%-17s %s (%s chunk%s)\n", "objects", count_text(stats, "objects", a), chunks, plural(chunks));
    const char *evicted = count_text(stats, "evicted_objects", a);
    printf("%-17s %s object%s (%s)\n", "evicted", evicted, plural(evicted), bytes_text(stats, "evicted_bytes", b));
    printf("%-17s %s lost, %s corrupt\n", "chunk faults", count_text(stats, "lost_chunks", a),
           count_text(stats, "corrupt_chunks", b));
    printf("%-17s %s started, %s abandoned, %s detached\n", "fills", count_text(stats, "fills_started", a),
           count_text(stats, "fills_abandoned", b), count_text(stats, "fills_detached", c));
    printf("%-17s %s (%s pending)\n", "upload sessions", count_text(stats, "upload_sessions", a),
           bytes_text(stats, "upload_pending_bytes", b));
}

static void print_access(const json_t *stats)
{
    static const char *const kinds[] = {"owner", "grant", "public", "denied", "unauthenticated"};
    const json_t *decisions = json_object_get(stats, "access_decisions");
    printf("%-17s", "access decisions");
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        char n[FIGURE];
        printf("%s %s %s", i == 0 ? "" : ",", kinds[i], count_text(decisions, kinds[i], n));
    }
    printf("\n");
}

/* stdout's errors are checked once, when main flushes it: a failed printf sets its error flag for good. */
static void print_human(const json_t *stats)
{
    const json_t *enabled = json_object_get(stats, "cache_enabled");
    printf("%-17s %s\n", "cache",
           json_is_boolean(enabled) ? (json_is_true(enabled) ? "enabled" : "disabled (pass-through)") : "?");
    print_store(stats);
    print_counts(stats);
    print_access(stats);
}

static int run(const ctl_t *ctl, const ctl_args_t *args)
{
    (void)args;
    json_t *stats;
    int rc = http_call_json(ctl, "GET", "/_larder/stats", NULL, &stats);
    if (rc != CTL_OK)
        return rc;
    if (ctl->json) {
        if (print_json(stats) != 0)
            rc = ctl_fail(ctl, CTL_FAILED, "could not write the output");
    } else {
        print_human(stats);
    }
    json_decref(stats);
    return rc;
}

static const ctl_option_t options[] = {{NULL, false}};

const ctl_command_t ctl_cmd_status = {
    .name = "status",
    .summary = "the store's usage, fills, uploads and access decisions (GET /_larder/stats; admins)",
    .help = "usage: larderctl [GLOBAL OPTIONS] status [--json]\n"
            "\n"
            "Shows larder's figures from GET /_larder/stats: the store's use of its budget,\n"
            "objects and chunks, evictions, fills, upload sessions and access decisions.\n"
            "Only the identities in larder's auth.admins may read them (others: exit 5).\n"
            "\n"
            "  --json    print the server's JSON answer as is (indented)\n",
    .options = options,
    .has_json = true,
    .run = run,
};
