/*
 * larderctl.c - larderctl's entry point: the subcommand table, the command
 * line (global options before or after the subcommand, the subcommand's own
 * after it; a group's subcommand after the group's name, its operands after
 * that), --help, and the server's address and timeout.
 *
 * Adding a subcommand is one cmd_NAME.c defining a ctl_command_t and one line
 * in `commands` below; parsing, help, the token and the exit codes are here
 * and in http_call.c, shared.
 */
#include "larderctl.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"
#include "token.h"

static const ctl_command_t *const commands[] = {&ctl_cmd_status, &ctl_cmd_health, &ctl_cmd_metrics,  &ctl_cmd_usage,
                                                &ctl_cmd_purge,  &ctl_cmd_batch,  &ctl_cmd_prefetch, &ctl_cmd_dag,
                                                NULL};

static const char DEFAULT_URL[] = "http://127.0.0.1:8080";
#define DEFAULT_TIMEOUT_S 30
#define MAX_TIMEOUT_S 86400

/* Options every subcommand takes, before or after its name. */
enum { G_URL, G_TOKEN, G_TOKEN_FILE, G_TIMEOUT, G_JSON, G_HELP, G_COUNT };
static const ctl_option_t global_options[] = {
    [G_URL] = {"url", true},         [G_TOKEN] = {"token", true}, [G_TOKEN_FILE] = {"token-file", true},
    [G_TIMEOUT] = {"timeout", true}, [G_JSON] = {"json", false},  [G_HELP] = {"help", false},
    {NULL, false},
};

static const char GLOBAL_HELP[] =
    "Global options (before or after the command):\n"
    "  --url URL          larder's address; default $LARDER_URL, else http://127.0.0.1:8080\n"
    "  --token TOKEN      sent as Authorization: Bearer TOKEN (never printed)\n"
    "  --token-file FILE  the token is FILE's first line (keep it chmod 600)\n"
    "                     without either flag the token is $LARDER_TOKEN, else none\n"
    "  --timeout SECONDS  give up on a request after this long; default 30\n"
    "  --json             print the server's JSON instead (every command but metrics)\n"
    "  -h, --help         help; `larderctl COMMAND --help` for a command's\n"
    "\n"
    "Exit codes:\n"
    "  0  ok\n"
    "  1  local failure: out of memory, the output could not be written\n"
    "  2  usage error: bad flags or arguments (a missing ID, --all without --yes), an unreadable token or DAG file\n"
    "  3  could not reach the server: connection refused, DNS, TLS, timeout\n"
    "  4  authentication failed (401): the token was not accepted\n"
    "  5  forbidden (403): not allowed for this identity, or no token given\n"
    "  6  not ready (health): alive, but /_larder/readyz answered 503\n"
    "  7  any other error from the server: its status and message are printed\n"
    "  8  not found (404): no such batch, DAG or prefetch\n"
    "  9  conflict (409): a batch or DAG with that id is live already, or the stage is done already\n"
    "\n"
    "Errors are one line on stderr, starting \"larderctl: \".\n";

/* What the command line says, before it is checked against the environment. */
typedef struct cli {
    const ctl_command_t *command; /* a group's subcommand once one is named */
    char name[64];                /* "batch create": a subcommand's name in messages (ctl->command) */
    const char *globals[G_COUNT]; /* NULL when absent, "" for a flag given */
    ctl_args_t args;
    bool help_word; /* `larderctl help [COMMAND]` */
} cli_t;

/* name's entry in a NULL-terminated table of commands, or NULL. */
static const ctl_command_t *find_command(const ctl_command_t *const *table, const char *name)
{
    for (size_t i = 0; table[i] != NULL; i++)
        if (strcmp(table[i]->name, name) == 0)
            return table[i];
    return NULL;
}

static int find_option(const ctl_option_t *table, const char *name, size_t len)
{
    for (int i = 0; table[i].name != NULL; i++)
        if (strlen(table[i].name) == len && memcmp(table[i].name, name, len) == 0)
            return i;
    return -1;
}

/* Where --NAME's value goes: the subcommand's own options first, then the global ones; NULL when unknown. */
static const char **option_slot(cli_t *cli, const char *name, size_t len, const ctl_option_t **opt)
{
    int i = cli->command != NULL ? find_option(cli->command->options, name, len) : -1;
    if (i >= 0) {
        *opt = &cli->command->options[i];
        return &cli->args.values[i];
    }
    i = find_option(global_options, name, len);
    if (i < 0)
        return NULL;
    *opt = &global_options[i];
    return &cli->globals[i];
}

/* Names the option without its =VALUE: a mistyped --tokne=SECRET must not print the secret. */
static int unknown_option(const ctl_t *ctl, const cli_t *cli, const char *arg)
{
    int len = (int)strcspn(arg, "=");
    if (cli->command != NULL)
        return ctl_fail(ctl, CTL_USAGE, "unknown option %.*s (see larderctl %s --help)", len, arg, ctl->command);
    return ctl_fail(ctl, CTL_USAGE, "unknown option %.*s (see larderctl --help; a command's options go after it)", len,
                    arg);
}

/* A repeating option's value: its slot keeps the first, args->repeated every one. */
static int add_repeated(const ctl_t *ctl, ctl_args_t *args, const ctl_option_t *opt, const char **slot,
                        const char *value)
{
    if (args->nrepeated == CTL_MAX_REPEATED)
        return ctl_fail(ctl, CTL_USAGE, "--%s is given more than %d times", opt->name, CTL_MAX_REPEATED);
    args->repeated[args->nrepeated++] = value;
    if (*slot == NULL)
        *slot = value;
    return CTL_OK;
}

/* --NAME, --NAME=VALUE or --NAME VALUE at argv[*i]; moves *i past a separate value. */
static int take_option(const ctl_t *ctl, cli_t *cli, int argc, char **argv, int *i)
{
    const char *arg = argv[*i], *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    const ctl_option_t *opt;
    const char **slot = option_slot(cli, name, len, &opt);
    if (slot == NULL)
        return unknown_option(ctl, cli, arg);
    /* the command's own options are found first, so a name it repeats is always its own option */
    bool repeats = cli->command != NULL && cli->command->repeating != NULL &&
                   strcmp(cli->command->repeating, opt->name) == 0;
    if (*slot != NULL && !repeats)
        return ctl_fail(ctl, CTL_USAGE, "--%s given twice", opt->name);
    if (!opt->takes_value) {
        if (eq != NULL)
            return ctl_fail(ctl, CTL_USAGE, "--%s takes no value", opt->name);
        *slot = "";
        return CTL_OK;
    }
    /* A value that looks like the next option is most likely a forgotten value: --token --url X */
    if (eq == NULL && (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0))
        return ctl_fail(ctl, CTL_USAGE, "--%s needs a value (--%s=VALUE for one that starts with --)", opt->name,
                        opt->name);
    const char *value = eq != NULL ? eq + 1 : argv[++*i];
    if (repeats)
        return add_repeated(ctl, &cli->args, opt, slot, value);
    *slot = value;
    return CTL_OK;
}

/* The word after a group's name: one of its commands, named "GROUP COMMAND" in messages from here on. A group
 * has no options, so nothing given so far is indexed by the group's option table. */
static int take_subcommand(ctl_t *ctl, cli_t *cli, const char *word)
{
    const ctl_command_t *group = cli->command, *command = find_command(group->subcommands, word);
    if (command == NULL)
        return ctl_fail(ctl, CTL_USAGE, "unknown command '%s' (see larderctl %s --help)", word, group->name);
    (void)snprintf(cli->name, sizeof(cli->name), "%s %s", group->name, command->name);
    cli->command = command;
    ctl->command = cli->name;
    return CTL_OK;
}

/* word as the command's next operand: its operand, its operand2, or one more of a repeating operand. */
static int take_operand(const ctl_t *ctl, cli_t *cli, const char *word)
{
    const ctl_command_t *command = cli->command;
    ctl_args_t *args = &cli->args;
    if (command->operand_repeats && args->noperands == CTL_MAX_OPERANDS)
        return ctl_fail(ctl, CTL_USAGE, "more than %d %s given", CTL_MAX_OPERANDS, command->operand);
    if (command->operand != NULL && args->operand == NULL)
        args->operand = word;
    else if (command->operand2 != NULL && args->operand2 == NULL)
        args->operand2 = word;
    else if (!command->operand_repeats)
        return ctl_fail(ctl, CTL_USAGE, "unexpected argument '%s' (see larderctl %s --help)", word, ctl->command);
    if (command->operand_repeats)
        args->operands[args->noperands++] = word;
    return CTL_OK;
}

/* A word that is not an option: the subcommand (or a group's), `help`, the subcommand `help` is asked about, or
 * one of the subcommand's operands. */
static int take_word(ctl_t *ctl, cli_t *cli, const char *word)
{
    if (cli->command == NULL && !cli->help_word && strcmp(word, "help") == 0) {
        cli->help_word = true;
        return CTL_OK;
    }
    if (cli->command != NULL && cli->command->subcommands != NULL)
        return take_subcommand(ctl, cli, word);
    if (cli->command != NULL)
        return take_operand(ctl, cli, word);
    cli->command = find_command(commands, word);
    if (cli->command == NULL)
        return ctl_fail(ctl, CTL_USAGE, "unknown command '%s' (see larderctl --help)", word);
    ctl->command = cli->command->name;
    return CTL_OK;
}

static int parse_command_line(ctl_t *ctl, cli_t *cli, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rc;
        if (strcmp(arg, "-h") == 0) {
            cli->globals[G_HELP] = "";
            rc = CTL_OK;
        } else if (strncmp(arg, "--", 2) == 0 && arg[2] != '\0' && arg[2] != '=') {
            rc = take_option(ctl, cli, argc, argv, &i);
        } else if (arg[0] == '-' && arg[1] != '\0') { /* "-" alone is a word: the standard input */
            rc = unknown_option(ctl, cli, arg);
        } else {
            rc = take_word(ctl, cli, arg);
        }
        if (rc != CTL_OK)
            return rc;
    }
    return CTL_OK;
}

static void print_command_list(const ctl_command_t *const *table)
{
    printf("Commands:\n");
    for (size_t i = 0; table[i] != NULL; i++)
        printf("  %-9s %s\n", table[i]->name, table[i]->summary);
}

static void print_help(const ctl_command_t *command)
{
    if (command == NULL) {
        printf("usage: larderctl [GLOBAL OPTIONS] COMMAND [OPTIONS]\n"
               "\n"
               "A command-line client for larder's admin API (/_larder/...).\n"
               "\n");
        print_command_list(commands);
        printf("\n%s", GLOBAL_HELP);
        return;
    }
    printf("%s\n", command->help);
    if (command->subcommands != NULL) {
        print_command_list(command->subcommands);
        printf("\n");
    }
    printf("%s", GLOBAL_HELP);
}

/* ctl->url from --url, else LARDER_URL, else the default: an http(s) URL of a server, no query or fragment. */
static int resolve_url(ctl_t *ctl, const char *flag)
{
    const char *env = getenv("LARDER_URL");
    bool from_env = flag == NULL && env != NULL && env[0] != '\0';
    const char *url = flag != NULL ? flag : from_env ? env : DEFAULT_URL;
    const char *source = flag != NULL ? "--url" : from_env ? "LARDER_URL" : "the default URL";
    CURLU *u = curl_url();
    if (u == NULL)
        return ctl_fail(ctl, CTL_FAILED, "out of memory");
    char *scheme = NULL, *query = NULL, *fragment = NULL, *user = NULL;
    bool parsed = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK;
    /* a password in the URL would be printed in every message that names the server */
    bool has_user = parsed && curl_url_get(u, CURLUPART_USER, &user, 0) != CURLUE_NO_USER;
    bool ok = parsed && !has_user && curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
              curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_NO_QUERY &&
              curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_NO_FRAGMENT;
    curl_free(scheme);
    curl_free(query);
    curl_free(fragment);
    curl_free(user);
    curl_url_cleanup(u);
    if (has_user)
        return ctl_fail(ctl, CTL_USAGE, "%s has credentials in it; give the token with --token or --token-file", source);
    if (!ok)
        return ctl_fail(ctl, CTL_USAGE, "%s is not an http:// or https:// URL of a server: %s", source, url);
    ctl->url = strdup(url);
    if (ctl->url == NULL)
        return ctl_fail(ctl, CTL_FAILED, "out of memory");
    /* the API's paths start with a slash */
    for (size_t len = strlen(ctl->url); len > 0 && ctl->url[len - 1] == '/'; len--)
        ctl->url[len - 1] = '\0';
    return CTL_OK;
}

static int resolve_timeout(ctl_t *ctl, const char *flag)
{
    long seconds = DEFAULT_TIMEOUT_S;
    if (flag != NULL) {
        char *end;
        errno = 0;
        seconds = strtol(flag, &end, 10);
        if (errno != 0 || end == flag || *end != '\0' || seconds < 1 || seconds > MAX_TIMEOUT_S)
            return ctl_fail(ctl, CTL_USAGE, "--timeout takes whole seconds from 1 to %d, not '%s'", MAX_TIMEOUT_S,
                            flag);
    }
    ctl->timeout_ms = seconds * 1000;
    return CTL_OK;
}

/* CTL_OK when the operand the command's help calls name is there and not empty, if it takes one at all. */
static int check_operand(const ctl_t *ctl, const char *name, const char *value)
{
    if (name != NULL && (value == NULL || value[0] == '\0'))
        return ctl_fail(ctl, CTL_USAGE, "%s %s (see larderctl %s --help)", value == NULL ? "missing" : "empty", name,
                        ctl->command);
    return CTL_OK;
}

/* A command that can run: not a group without its subcommand, and with its operands. */
static int check_command(const ctl_t *ctl, const cli_t *cli)
{
    if (cli->command == NULL)
        return ctl_fail(ctl, CTL_USAGE, "no command given (see larderctl --help)");
    if (cli->command->subcommands != NULL)
        return ctl_fail(ctl, CTL_USAGE, "no command given (see larderctl %s --help)", ctl->command);
    int rc = check_operand(ctl, cli->command->operand, cli->args.operand);
    if (rc == CTL_OK)
        rc = check_operand(ctl, cli->command->operand2, cli->args.operand2);
    for (int i = 1; rc == CTL_OK && i < cli->args.noperands; i++)
        rc = check_operand(ctl, cli->command->operand, cli->args.operands[i]);
    return rc;
}

/* Everything the subcommand needs from the command line and the environment, checked. */
static int prepare(ctl_t *ctl, const cli_t *cli)
{
    int rc = check_command(ctl, cli);
    if (rc != CTL_OK)
        return rc;
    ctl->json = cli->globals[G_JSON] != NULL;
    if (ctl->json && !cli->command->has_json)
        return ctl_fail(ctl, CTL_USAGE, "--json is not available for %s", ctl->command);
    rc = resolve_url(ctl, cli->globals[G_URL]);
    if (rc == CTL_OK)
        rc = resolve_timeout(ctl, cli->globals[G_TIMEOUT]);
    if (rc == CTL_OK)
        rc = token_resolve(ctl, cli->globals[G_TOKEN], cli->globals[G_TOKEN_FILE]);
    return rc;
}

static int run_command(ctl_t *ctl, const cli_t *cli)
{
    /* before prepare(): checking the URL is libcurl's work too */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ctl_fail(ctl, CTL_FAILED, "libcurl could not be initialised");
    int rc = prepare(ctl, cli);
    if (rc == CTL_OK)
        rc = cli->command->run(ctl, &cli->args);
    curl_global_cleanup();
    return rc;
}

/* printf's errors are sticky on stdout, so one check here covers every line a command printed. */
static int flush_output(const ctl_t *ctl, int rc)
{
    if ((fflush(stdout) != 0 || ferror(stdout)) && rc == CTL_OK)
        return ctl_fail(ctl, CTL_FAILED, "could not write the output: %s", strerror(errno));
    return rc;
}

int main(int argc, char **argv)
{
    ctl_t ctl = {0};
    cli_t cli = {0};
    int rc = parse_command_line(&ctl, &cli, argc, argv);
    if (rc == CTL_OK && (cli.globals[G_HELP] != NULL || cli.help_word))
        print_help(cli.command);
    else if (rc == CTL_OK)
        rc = run_command(&ctl, &cli);
    rc = flush_output(&ctl, rc);
    token_dispose(&ctl);
    free(ctl.url);
    return rc;
}
