/*
 * conf_print.c - what larder says about its configuration: --help, and the
 * effective configuration that --check-config prints.
 *
 * Both are generated from the settings table, so neither can drift from what
 * the loader actually accepts. The effective configuration is itself a valid
 * config file: feeding it back reproduces the same settings. Write errors are
 * left in ferror(out) for the caller, who knows whether they matter.
 */
#include <string.h>

#include "conf_internal.h"

static const char help_intro[] =
    "Usage: larder [--config FILE] [--KEY=VALUE ...]\n"
    "       larder --check-config FILE\n"
    "\n"
    "larder is a caching HTTP proxy for Google Cloud Storage.\n"
    "\n"
    "Settings come from, each overriding the one before: the defaults below, a\n"
    "JSON file (--config FILE, or LARDER_CONFIG=FILE), LARDER_* environment\n"
    "variables, then command-line flags. Every setting KEY is a flag, --KEY=VALUE\n"
    "or --KEY VALUE (dashes may replace underscores), and a variable named\n"
    "LARDER_ and KEY upper-cased with dots as underscores. In the file, \"a.b\" is\n"
    "the member \"b\" of the object \"a\". Unknown keys, flags and LARDER_*\n"
    "variables are errors.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE        read settings from the JSON file FILE\n"
    "      --check-config FILE  load FILE and everything else, check it all, print\n"
    "                           the effective configuration as JSON and exit\n"
    "  -h, --help               show this and exit\n"
    "  -V, --version            show the version and exit\n"
    "      --listen SPEC        listen as SPEC; repeatable, and the first one\n"
    "                           replaces the listeners of the file and environment\n"
    "      --upstream URL       the same as --upstream.base_url URL\n"
    "      --threads N          the same as --worker_threads N\n"
    "      --store PATH         the same as --store.path PATH\n"
    "\n"
    "Listeners (default " CONF_DEFAULT_LISTEN "):\n"
    "  SPEC is " CONF_LISTEN_SYNTAX "\n"
    "  ADDR is an IPv4 or IPv6 address or localhost; IPv6 goes in brackets, as in\n"
    "  [::1]:8443. tls_cert and tls_key are PEM files, given both or neither.\n"
    "  http2 (default on) offers h2 through ALPN on a TLS listener; h2c (default\n"
    "  off) accepts cleartext HTTP/2 on a plain one. h2o 2.2.5 has no HTTP/2 Rapid\n"
    "  Reset fix of its own: larder closes HTTP/2 connections that go faster than\n"
    "  http2.max_requests_per_second or http2.max_resets_per_second, and turning\n"
    "  HTTP/2 off on listeners that face untrusted clients removes the risk.\n"
    "  admin (default off) makes a listener serve only larder's own endpoints,\n"
    "  without credentials: /metrics, /healthz and /readyz (and /_larder/...).\n"
    "  --listeners \"SPEC;SPEC\" and LARDER_LISTEN=\"SPEC;SPEC\" replace the list.\n"
    "  In the file: \"listeners\": [{\"address\": \"127.0.0.1\", \"port\": 8080,\n"
    "    \"tls_cert\": null, \"tls_key\": null, \"http2\": true, \"h2c\": false, \"admin\": false}]\n"
    "\n"
    "Cache policies (how a cached object is checked with upstream on a hit):\n"
    "  POLICY is " CONF_POLICY_SYNTAX ". always asks upstream on every hit;\n"
    "  immutable never does; ttl:SECONDS asks only once SECONDS have passed since\n"
    "  the object was stored or last checked. SECONDS is 1 to 31536000, or a\n"
    "  number and s, m, h or d (ttl:30s, ttl:5m, ttl:2h, ttl:1d).\n"
    "  RULES is " CONF_RULES_SYNTAX ",\n"
    "  as in \"logs=ttl:60;models/v1/=immutable\". An object gets the policy of the\n"
    "  rule for its bucket with the longest prefix of its name (no PREFIX: the\n"
    "  whole bucket), else cache.default_policy. A layer that sets cache.policies\n"
    "  replaces the list. In the file, a RULES string or an array such as\n"
    "    \"cache\": {\"policies\": [{\"bucket\": \"models\", \"prefix\": \"v1/\",\n"
    "                            \"policy\": \"immutable\"}]}\n"
    "\n"
    "Settings (KEY = default):\n";

static const char help_outro[] =
    "\n"
    "SIZE is a count of bytes, or a number and a unit: KiB, MiB, GiB, TiB, or\n"
    "KB, MB, GB, TB (\"64KiB\", \"1GB\"). MS is milliseconds. DURATION is seconds,\n"
    "or a number and s, m, h or d (\"90s\", \"5m\", \"2h\", \"1d\"). BOOL is true or\n"
    "false; flags and variables also take on/off, yes/no and 1/0. A nullable\n"
    "setting is unset by null in the file and by an empty value elsewhere.\n"
    "LIST is " CONF_LIST_SYNTAX " (an empty value: no entries), blanks around\n"
    "an entry dropped and an empty entry an error; in the file, an array of\n"
    "strings or that text. A layer that sets a LIST replaces it whole.\n";

/* The default as --help shows it: NULL is an unset string, "" an empty list. */
static const char *help_default(const setting_t *s)
{
    if (s->def == NULL)
        return "(unset)";
    return *s->def ? s->def : "(none)";
}

static void print_setting_help(const setting_t *s, FILE *out)
{
    char env[CONF_KEY_MAX];

    conf_setting_env_name(s, env, sizeof(env));
    fprintf(out, "  %s = %s\n      --%s=%s, %s\n      %s\n", s->key, help_default(s), s->key, s->arg,
            env, s->help);
}

void conf_print_help(FILE *out)
{
    fputs(help_intro, out);
    for (size_t i = 0; i < conf_num_settings; i++)
        print_setting_help(&conf_settings[i], out);
    fputs(help_outro, out);
}

static json_t *setting_json(const conf_t *conf, const setting_t *s)
{
    const void *field = conf_field_const(conf, s);
    char text[32];

    switch (s->kind) {
    case SETTING_STRING:
    case SETTING_URL:
    case SETTING_HOSTNAME: {
        const char *text = *(char *const *)field;
        return text ? json_string(text) : json_null();
    }
    case SETTING_UINT:
    case SETTING_SECONDS:
        return json_integer(*(const unsigned *)field);
    case SETTING_SIZE:
        /* A string, because a uint64_t need not fit jansson's signed integers. */
        conf_format_size(*(const uint64_t *)field, text, sizeof(text));
        return json_string(text);
    case SETTING_BOOL:
        return json_boolean(*(const bool *)field);
    case SETTING_LOG_LEVEL:
        return json_string(conf_log_level_name(*(const log_level_t *)field));
    case SETTING_LOG_FORMAT:
        return json_string(conf_log_format_name(*(const log_format_t *)field));
    case SETTING_CACHE_POLICY:
        conf_cache_policy_format(field, text, sizeof(text));
        return json_string(text);
    case SETTING_CACHE_RULES:
        return conf_cache_rules_json(conf);
    case SETTING_STRING_LIST:
        return conf_string_list_json(conf, s);
    }
    return NULL;
}

/* Puts s into root, inside its section's object for a dotted key. The *_new calls take the value even on failure. */
static int add_setting(json_t *root, const conf_t *conf, const setting_t *s)
{
    const char *dot = strchr(s->key, '.'), *name = s->key;
    json_t *parent = root;

    if (dot) {
        char section[CONF_KEY_MAX];
        snprintf(section, sizeof(section), "%.*s", (int)(dot - s->key), s->key);
        parent = json_object_get(root, section);
        if (parent == NULL) {
            parent = json_object();
            if (json_object_set_new(root, section, parent) < 0)
                return -1;
        }
        name = dot + 1;
    }
    return json_object_set_new(parent, name, setting_json(conf, s));
}

static int add_listeners(json_t *root, const conf_t *conf)
{
    json_t *array = json_array();

    if (json_object_set_new(root, "listeners", array) < 0)
        return -1;
    for (size_t i = 0; i < conf->num_listeners; i++) {
        const conf_listener_t *l = &conf->listeners[i];
        json_t *object = json_pack("{s:s, s:i, s:s?, s:s?, s:b, s:b, s:b}", "address", l->address, "port",
                                   (int)l->port, "tls_cert", l->tls_cert, "tls_key", l->tls_key, "http2",
                                   (int)l->http2, "h2c", (int)l->h2c, "admin", (int)l->admin);
        if (json_array_append_new(array, object) < 0)
            return -1;
    }
    return 0;
}

void conf_print_effective(const conf_t *conf, FILE *out)
{
    json_t *root = json_object();
    int rc = root ? add_listeners(root, conf) : -1;

    for (size_t i = 0; rc == 0 && i < conf_num_settings; i++)
        rc = add_setting(root, conf, &conf_settings[i]);
    /* Only a failed allocation or a path that is not UTF-8 gets here; say so rather than print half. */
    if (rc < 0 || json_dumpf(root, out, JSON_INDENT(2)) < 0)
        log_msg(LOG_LEVEL_ERROR, "conf", "cannot print the effective configuration");
    else
        fputc('\n', out);
    json_decref(root);
}
