/*
 * conf.c - loading the configuration: the order of the layers, the
 * environment layer, the checks that need every layer applied first, and
 * releasing it all.
 *
 * Layers, each overriding the one before: embedded defaults (the table in
 * conf_settings.c), the JSON file, LARDER_* variables, command-line flags.
 * A value is checked when its layer applies it, so even a value that a later
 * layer would override must be valid: a broken file is broken however it is
 * started.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf_internal.h"

#define ENV_PREFIX "LARDER_"
#define ENV_CONFIG "LARDER_CONFIG"
#define ENV_LISTEN "LARDER_LISTEN"

static int load_defaults(conf_t *conf, conf_err_t *err)
{
    for (size_t i = 0; i < conf_num_settings; i++) {
        const setting_t *s = &conf_settings[i];
        if (conf_setting_set(conf, s, &(conf_value_t){.text = s->def}, err) < 0)
            return -1;
    }
    return conf_listeners_set_specs(conf, CONF_DEFAULT_LISTEN, err);
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* LARDER_CONFIG, if set and not empty; it picks the file, so it is read before the file layer. */
static const char *env_config_path(char **envp)
{
    size_t len = strlen(ENV_CONFIG);

    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, ENV_CONFIG, len) == 0 && (*e)[len] == '=' && (*e)[len + 1] != '\0')
            return *e + len + 1;
    }
    return NULL;
}

static int unknown_variable(const char *name, size_t len, conf_err_t *err)
{
    char typed[CONF_KEY_MAX], env[CONF_KEY_MAX];

    snprintf(typed, sizeof(typed), "%.*s", (int)len, name);
    /* The key is "listeners", so LARDER_LISTENERS is the likeliest slip of all. */
    if (conf_is_near_miss(typed, ENV_LISTEN) || strcmp(typed, "LARDER_LISTENERS") == 0)
        return conf_unknown(err, "environment variable", typed, ENV_LISTEN);
    for (size_t i = 0; i < conf_num_settings; i++) {
        conf_setting_env_name(&conf_settings[i], env, sizeof(env));
        if (conf_is_near_miss(typed, env))
            return conf_unknown(err, "environment variable", typed, env);
    }
    return conf_unknown(err, "environment variable", typed, NULL);
}

static int apply_variable(conf_t *conf, const char *name, size_t len, const char *value, conf_err_t *err)
{
    const setting_t *s;
    int rc;

    if (name_is(name, len, ENV_CONFIG))
        return 0;
    if (name_is(name, len, ENV_LISTEN)) {
        rc = conf_listeners_set_specs(conf, value, err);
    } else {
        s = conf_setting_find_env(name, len);
        if (s == NULL)
            return unknown_variable(name, len, err);
        rc = conf_setting_set(conf, s, &(conf_value_t){.text = value}, err);
    }
    if (rc < 0)
        conf_err_note(err, " (from %.*s)", (int)len, name);
    return rc;
}

static int load_environment(conf_t *conf, char **envp, conf_err_t *err)
{
    for (char **e = envp; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) != 0 || eq == NULL)
            continue;
        if (apply_variable(conf, *e, (size_t)(eq - *e), eq + 1, err) < 0)
            return -1;
    }
    return 0;
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        return 1; /* unknown: one thread still works */
    return n > 1024 ? 1024 : (unsigned)n;
}

/* Eviction runs from the high mark down to the low one, so the low one must be lower. */
static int check_water_marks(const conf_t *conf, conf_err_t *err)
{
    if (conf->store.low_water_percent < conf->store.high_water_percent)
        return 0;
    return conf_fail(err, "config: store.low_water_percent: %u is not valid: expected less than "
                          "store.high_water_percent (%u)",
                     conf->store.low_water_percent, conf->store.high_water_percent);
}

/* The checks that only make sense on the final values, then what 0 and such stand for. */
static int validate(conf_t *conf, conf_err_t *err)
{
    if (conf_listeners_check(conf, err) < 0 || check_water_marks(conf, err) < 0)
        return -1;
    for (size_t i = 0; i < conf_num_settings; i++) {
        const setting_t *s = &conf_settings[i];
        const char *path = s->readable ? *(char *const *)conf_field_const(conf, s) : NULL;
        if (path && access(path, R_OK) != 0)
            return conf_invalid(err, s->key, &(conf_value_t){.text = path}, "a readable file (%s)", strerror(errno));
    }
    if (conf->worker_threads == 0)
        conf->worker_threads = online_cpus();
    return 0;
}

static int load_layers(conf_t *conf, int argc, char **argv, char **envp, conf_action_t *action, conf_err_t *err)
{
    const char *path = NULL;

    if (load_defaults(conf, err) < 0 || conf_flags_scan(argc, argv, action, &path, err) < 0)
        return -1;
    if (*action == CONF_ACTION_HELP || *action == CONF_ACTION_VERSION)
        return 0;
    if (path == NULL)
        path = env_config_path(envp);
    if (path && conf_json_load(conf, path, err) < 0)
        return -1;
    if (load_environment(conf, envp, err) < 0 || conf_flags_apply(conf, argc, argv, err) < 0)
        return -1;
    return validate(conf, err);
}

int conf_load(conf_t *conf, int argc, char **argv, char **envp, conf_action_t *action, char *errbuf, size_t errlen)
{
    conf_err_t err = {errbuf, errlen};

    *conf = (conf_t){0};
    *action = CONF_ACTION_RUN;
    if (errlen > 0)
        errbuf[0] = '\0';
    if (load_layers(conf, argc, argv, envp, action, &err) == 0)
        return 0;
    /* Values are quoted and escaped already, but a key or flag name can hold anything; keep it one line. */
    for (char *p = errbuf; errlen > 0 && *p; p++) {
        if (iscntrl((unsigned char)*p))
            *p = '?';
    }
    return -1;
}

void conf_dispose(conf_t *conf)
{
    conf_listeners_clear(conf);
    conf_cache_rules_clear(conf);
    for (size_t i = 0; i < conf_num_settings; i++) {
        const setting_t *s = &conf_settings[i];
        if (conf_setting_is_string(s))
            free(*(char **)conf_field(conf, s));
        else if (s->kind == SETTING_STRING_LIST)
            conf_string_list_clear(conf, s);
    }
    *conf = (conf_t){0};
}
