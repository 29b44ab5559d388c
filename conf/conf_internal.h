/*
 * conf_internal.h - what the files of the conf module share with each other
 * and with nobody else.
 *
 * A setting passes through three steps: a layer (defaults, file, environment,
 * flags) finds a value for a key, conf_value.c turns that value into a typed
 * one or a one-line error, and conf_settings.c / conf_listeners.c /
 * conf_cache.c / conf_list.c store it in the conf_t, which owns every string
 * it points to.
 */
#ifndef LARDER_CONF_INTERNAL_H
#define LARDER_CONF_INTERNAL_H

#include <jansson.h>

#include "conf.h"

/* Longest dotted key we ever build, "listeners[123].tls_cert" included. */
#define CONF_KEY_MAX 96

/* Where a failing step writes its one line. */
typedef struct conf_err {
    char *buf;
    size_t size;
} conf_err_t;

/*
 * A value as the user wrote it: text from a flag, a variable or the embedded
 * defaults, or a node of the JSON file. At most one is set; neither set means
 * null.
 */
typedef struct conf_value {
    const char *text;
    const json_t *json;
} conf_value_t;

/* conf_value.c: errors, and typed reads of a conf_value_t. All return 0 or -1. */
int conf_fail(conf_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void conf_err_note(conf_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int conf_invalid(conf_err_t *err, const char *key, const conf_value_t *value, const char *expected_fmt, ...)
    __attribute__((format(printf, 4, 5)));
int conf_unknown(conf_err_t *err, const char *what, const char *name, const char *near_miss);
int conf_read_uint(const char *key, const conf_value_t *value, uint64_t min, uint64_t max, uint64_t *out,
                   conf_err_t *err);
int conf_read_size(const char *key, const conf_value_t *value, uint64_t min, uint64_t *out, conf_err_t *err);
int conf_read_seconds(const char *key, const conf_value_t *value, uint64_t min, uint64_t max, uint64_t *out,
                      conf_err_t *err);
int conf_read_bool(const char *key, const conf_value_t *value, bool *out, conf_err_t *err);
int conf_read_string(const char *key, const conf_value_t *value, bool nullable, const char **out, conf_err_t *err);
int conf_replace_string(char **field, const char *s, size_t len, conf_err_t *err);

/* conf_parse.c: pure checks and conversions of text, no errors reported. */
bool conf_parse_uint(const char *s, uint64_t *out);
bool conf_parse_bool(const char *s, bool *out);
bool conf_url_valid(const char *s, size_t *keep_len);
bool conf_hostname_valid(const char *s, size_t len);
bool conf_address_valid(const char *s);
void conf_quote(const char *s, char *buf, size_t size);
void conf_format_size(uint64_t bytes, char *buf, size_t size);
size_t conf_edit_distance(const char *a, const char *b);
bool conf_is_near_miss(const char *typed, const char *known);

/* conf_settings.c: the table of settings, everything but listeners. */
typedef enum {
    SETTING_STRING,     /* char *: a non-empty string, usually a path */
    SETTING_URL,        /* char *: http(s)://host..., trailing slash stripped */
    SETTING_HOSTNAME,   /* char * */
    SETTING_UINT,       /* unsigned, within [min, max] */
    SETTING_SIZE,       /* uint64_t bytes, at least min */
    SETTING_SECONDS,    /* unsigned seconds within [min, max], written "90", "90s", "5m", "2h" or "1d" */
    SETTING_BOOL,       /* bool */
    SETTING_LOG_LEVEL,  /* log_level_t */
    SETTING_LOG_FORMAT, /* log_format_t */
    SETTING_CACHE_POLICY, /* cache_policy_t */
    SETTING_CACHE_RULES,  /* cache_rule_t *, counted by cache.num_rules */
    SETTING_STRING_LIST,  /* char **, counted by the size_t right after it (conf_settings.c asserts that) */
} setting_kind_t;

typedef struct setting {
    const char *key;
    setting_kind_t kind;
    size_t offset;    /* of the field within conf_t */
    bool nullable;    /* strings only: may be unset */
    bool readable;    /* strings only: must name a file we can read */
    uint64_t min, max;
    const char *def;  /* the embedded default as text; NULL for null */
    const char *arg;  /* placeholder in --help */
    const char *help;
} setting_t;

/* Where s lives in conf; its C type follows from s->kind. */
static inline void *conf_field(conf_t *conf, const setting_t *s)
{
    return (char *)conf + s->offset;
}

static inline const void *conf_field_const(const conf_t *conf, const setting_t *s)
{
    return (const char *)conf + s->offset;
}

static inline bool conf_setting_is_string(const setting_t *s)
{
    return s->kind == SETTING_STRING || s->kind == SETTING_URL || s->kind == SETTING_HOSTNAME;
}

extern const setting_t conf_settings[];
extern const size_t conf_num_settings;

const setting_t *conf_setting_find(const char *key);
const setting_t *conf_setting_find_env(const char *name, size_t len);
void conf_setting_env_name(const setting_t *s, char *buf, size_t size);
bool conf_is_section(const char *name);
int conf_setting_set(conf_t *conf, const setting_t *s, const conf_value_t *value, conf_err_t *err);
const char *conf_setting_near_miss(const char *key);
const char *conf_log_level_name(log_level_t level);
const char *conf_log_format_name(log_format_t format);

/* conf_listeners.c */
#define CONF_DEFAULT_LISTEN "127.0.0.1:8080"
#define CONF_LISTEN_SYNTAX "ADDR:PORT[,tls_cert=PATH,tls_key=PATH][,http2=on|off][,h2c=on|off][,admin=on|off]"
void conf_listeners_clear(conf_t *conf);
int conf_listeners_add_spec(conf_t *conf, const char *spec, size_t len, conf_err_t *err);
int conf_listeners_set_specs(conf_t *conf, const char *specs, conf_err_t *err);
int conf_listeners_set_json(conf_t *conf, json_t *array, conf_err_t *err);
int conf_listeners_check(const conf_t *conf, conf_err_t *err);

/* conf_cache.c: revalidation policies and the cache.policies rules. */
#define CONF_POLICY_SYNTAX "always|immutable|ttl:SECONDS"
#define CONF_RULES_SYNTAX "BUCKET[/PREFIX]=POLICY[;BUCKET[/PREFIX]=POLICY...]"
#define CONF_TTL_MAX 31536000 /* seconds: 365 days */
int conf_cache_policy_read(const char *key, const conf_value_t *value, cache_policy_t *out, conf_err_t *err);
void conf_cache_policy_format(const cache_policy_t *policy, char *buf, size_t size);
int conf_cache_rules_read(conf_t *conf, const char *key, const conf_value_t *value, conf_err_t *err);
void conf_cache_rules_clear(conf_t *conf);
json_t *conf_cache_rules_json(const conf_t *conf);

/* conf_list.c: SETTING_STRING_LIST values, "a,b" in text and ["a", "b"] in the file. */
#define CONF_LIST_SYNTAX "ENTRY[,ENTRY...]"
int conf_string_list_read(conf_t *conf, const setting_t *s, const conf_value_t *value, conf_err_t *err);
void conf_string_list_clear(conf_t *conf, const setting_t *s);
json_t *conf_string_list_json(const conf_t *conf, const setting_t *s);

/* conf_json.c: the file layer. */
int conf_json_load(conf_t *conf, const char *path, conf_err_t *err);

/* conf_flags.c: the command-line layer, read in two passes. */
int conf_flags_scan(int argc, char **argv, conf_action_t *action, const char **config_path, conf_err_t *err);
int conf_flags_apply(conf_t *conf, int argc, char **argv, conf_err_t *err);

#endif
