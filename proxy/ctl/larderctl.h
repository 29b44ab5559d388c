/*
 * larderctl.h - what larderctl's parts share: the exit codes, where the
 * server is and who is asking (ctl_t), a command's table entry and the
 * values of its options, and the one-line error.
 *
 * A subcommand is one ctl_command_t in its own cmd_NAME.c plus one line in
 * the table in larderctl.c; everything else (options, --help, the token, the
 * request) is shared. A group of subcommands (batch) is a ctl_command_t that
 * lists its own.
 */
#ifndef LARDERCTL_H
#define LARDERCTL_H

#include <stdbool.h>

/* Exit codes. Scripts branch on them, so a number never changes meaning; --help and README list them. */
enum {
    CTL_OK = 0,
    CTL_FAILED = 1,          /* a local failure: out of memory, the output could not be written */
    CTL_USAGE = 2,           /* bad flags or arguments, an unreadable token file */
    CTL_UNREACHABLE = 3,     /* no answer from the server: refused, DNS, TLS, timeout */
    CTL_UNAUTHENTICATED = 4, /* 401: the token was not accepted */
    CTL_FORBIDDEN = 5,       /* 403: this identity may not do that */
    CTL_NOT_READY = 6,       /* health: alive, but readyz says not ready */
    CTL_SERVER_ERROR = 7,    /* any other answer that is not a success */
    CTL_NOT_FOUND = 8,       /* 404: no such batch (or an endpoint this larder lacks) */
    CTL_CONFLICT = 9,        /* 409: a batch with that id is live already */
};

/* Where the server is and who is asking: the global options and the environment. */
typedef struct ctl {
    const char *command; /* the subcommand's name, for error lines */
    char *url;           /* the server's base URL, without a trailing slash; owned */
    char *token;         /* the bearer token, or NULL for none; owned, wiped when freed */
    long timeout_ms;
    bool json; /* --json: print the server's JSON instead of the human form */
} ctl_t;

/* One option of a subcommand: --NAME, or --NAME VALUE (also --NAME=VALUE). */
typedef struct ctl_option {
    const char *name;
    bool takes_value;
} ctl_option_t;

#define CTL_MAX_OPTIONS 8
#define CTL_MAX_REPEATED 16

/* The values of a subcommand's options, by index into its option table: NULL when absent, "" for a flag given.
 * The command's repeating option's slot holds its first value, and `repeated` every value, in the order given. */
typedef struct ctl_args {
    const char *values[CTL_MAX_OPTIONS];
    const char *repeated[CTL_MAX_REPEATED];
    int nrepeated;
    const char *operand; /* the argument the command's `operand` names; never NULL or "" when it runs */
} ctl_args_t;

typedef struct ctl_command ctl_command_t;
struct ctl_command {
    const char *name;
    const char *summary;         /* one line in `larderctl --help` */
    const char *help;            /* `larderctl NAME --help`: usage, options, what it prints, its own exit codes */
    const ctl_option_t *options; /* terminated by {NULL}; at most CTL_MAX_OPTIONS */
    bool has_json;               /* accepts --json */
    const char *operand;         /* the one argument it requires, as its help names it ("ID"); NULL: none */
    const char *repeating;       /* the one option that may be given more than once (see ctl_args_t), or NULL */
    /* A group of commands (`larderctl batch create`): NULL-terminated; the group itself has no run and no
     * options (an empty table), and its --help lists these after its own text. */
    const ctl_command_t *const *subcommands;
    int (*run)(const ctl_t *ctl, const ctl_args_t *args);
};

extern const ctl_command_t ctl_cmd_status;
extern const ctl_command_t ctl_cmd_health;
extern const ctl_command_t ctl_cmd_metrics;
extern const ctl_command_t ctl_cmd_usage;
extern const ctl_command_t ctl_cmd_purge;
extern const ctl_command_t ctl_cmd_batch;

/* Writes "larderctl: COMMAND: MESSAGE" as one line on stderr and returns code, so callers can `return ctl_fail(...)`.
 * Control bytes in MESSAGE (newlines in a file name, say) become spaces: it stays one line. */
int ctl_fail(const ctl_t *ctl, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The same line with "warning: " before MESSAGE, for something the user should fix that does not stop the command. */
void ctl_warn(const ctl_t *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
