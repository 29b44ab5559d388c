/*
 * larderctl.h - what larderctl's parts share: the exit codes, where the
 * server is and who is asking (ctl_t), a command's table entry and the
 * values of its options, and the one-line error.
 *
 * A subcommand is one ctl_command_t in its own cmd_NAME.c plus one line in
 * the table in larderctl.c; everything else (options, --help, the token, the
 * request) is shared. A group of subcommands (batch, dag) is a ctl_command_t
 * that lists its own.
 */
#ifndef LARDERCTL_H
#define LARDERCTL_H

#include <jansson.h>
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
    CTL_NOT_FOUND = 8,       /* 404: no such batch, DAG or prefetch (or an endpoint this larder lacks) */
    CTL_CONFLICT = 9,        /* 409: a batch or DAG with that id is live already, a stage is done already */
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
#define CTL_MAX_OPERANDS 4096 /* as many objects as one prefetch list may have */

/* The values of a subcommand's options, by index into its option table: NULL when absent, "" for a flag given.
 * The command's repeating option's slot holds its first value, and `repeated` every value, in the order given. */
typedef struct ctl_args {
    const char *values[CTL_MAX_OPTIONS];
    const char *repeated[CTL_MAX_REPEATED];
    int nrepeated;
    const char *operand;  /* the argument the command's `operand` names; never NULL or "" when it runs */
    const char *operand2; /* the same for `operand2` */
    /* With operand_repeats: every operand given, in order, operand the first; none is "" when it runs. */
    const char *operands[CTL_MAX_OPERANDS];
    int noperands;
} ctl_args_t;

typedef struct ctl_command ctl_command_t;
struct ctl_command {
    const char *name;
    const char *summary;         /* one line in `larderctl --help` */
    const char *help;            /* `larderctl NAME --help`: usage, options, what it prints, its own exit codes */
    const ctl_option_t *options; /* terminated by {NULL}; at most CTL_MAX_OPTIONS */
    bool has_json;               /* accepts --json */
    const char *operand;         /* the one argument it requires, as its help names it ("ID"); NULL: none */
    const char *operand2;        /* a second one it requires after that ("STAGE"); NULL: none */
    bool operand_repeats;        /* operand may be given more than once (prefetch's URLs), when there is no operand2 */
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
extern const ctl_command_t ctl_cmd_prefetch;
extern const ctl_command_t ctl_cmd_dag;

/* Writes "larderctl: COMMAND: MESSAGE" as one line on stderr and returns code, so callers can `return ctl_fail(...)`.
 * Control bytes in MESSAGE (newlines in a file name, say) become spaces: it stays one line. */
int ctl_fail(const ctl_t *ctl, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The same line with "warning: " before MESSAGE, for something the user should fix that does not stop the command. */
void ctl_warn(const ctl_t *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- prefetch jobs (cmd_prefetch.c), which `dag` shares: /_larder/v1/prefetch and /_larder/v1/dags --- */

/* One request about jobs and what its refusals mean. */
typedef struct ctl_job_request {
    const char *method;
    const char *collection; /* "/_larder/v1/prefetch" or "/_larder/v1/dags" */
    const char *noun;       /* one of them in messages: "prefetch", "DAG" */
    const char *id;         /* the job's: its URL is the collection's plus "/ID" (escaped); NULL: none */
    const char *stage;      /* then "/stages/STAGE" (escaped); NULL: none */
    const char *tail;       /* then this as it is (":start"); NULL: none */
    const char *body;       /* JSON text, or NULL */
    /* POST to the collection: id is the body's, for the message "NOUN 'ID' exists" of a 409; otherwise a 404
     * on the job's URL is "no such NOUN 'ID'" */
    bool creating;
} ctl_job_request_t;

/* The request, and its answer as a JSON object when it succeeded (the caller owns it); else the exit code,
 * with the line written. */
int ctl_job_call(const ctl_t *ctl, const ctl_job_request_t *req, json_t **out);

/* One line of a job's object or input: its state, its bytes_key ("cached_bytes", "fetched_bytes") and size,
 * (with retained: whether it is retained), its URL (with "#RANGE" when it has one), the error of a failed one. */
void ctl_print_job_input(const json_t *input, const char *bytes_key, bool retained);

/* obj[key] with control bytes made spaces (see one_line), in out, which holds a GCS URL; `none` when it is not a
 * string (a time that is null: not yet). */
const char *ctl_job_text(const json_t *obj, const char *key, const char *none, char out[2048]);

/* Whether obj's "state" is state. */
bool ctl_job_state_is(const json_t *obj, const char *state);

/* The whole answer indented (--json): CTL_OK, or CTL_FAILED with the line written. */
int ctl_print_answer(const ctl_t *ctl, const json_t *answer);

#endif
