/*
 * cmd_metrics.c - `larderctl metrics`: GET /_larder/metrics (admins only) and
 * the Prometheus text exposition written to stdout byte for byte, so it can
 * be piped into promtool or grep.
 */
#include <stdio.h>

#include "http_call.h"
#include "larderctl.h"

static const char METRICS[] = "/_larder/metrics";

static int run(const ctl_t *ctl, const ctl_args_t *args)
{
    (void)args;
    http_answer_t answer;
    int rc = http_call(ctl, "GET", METRICS, NULL, &answer);
    if (rc != CTL_OK)
        return rc;
    rc = http_answer_check(ctl, METRICS, &answer);
    if (rc == CTL_OK && answer.body.len > 0 && fwrite(answer.body.base, 1, answer.body.len, stdout) != answer.body.len)
        rc = ctl_fail(ctl, CTL_FAILED, "could not write the output");
    http_answer_dispose(&answer);
    return rc;
}

static const ctl_option_t options[] = {{NULL, false}};

const ctl_command_t ctl_cmd_metrics = {
    .name = "metrics",
    .summary = "the Prometheus text exposition (GET /_larder/metrics; admins)",
    .help = "usage: larderctl [GLOBAL OPTIONS] metrics\n"
            "\n"
            "Prints GET /_larder/metrics as the server sent it: Prometheus' text format,\n"
            "every metric README.md lists. Only the identities in larder's auth.admins may\n"
            "read it (others: exit 5). There is no --json form.\n",
    .options = options,
    .has_json = false,
    .run = run,
};
