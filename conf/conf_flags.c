/*
 * conf_flags.c - the command-line layer.
 *
 * Every setting is a flag, --KEY=VALUE or --KEY VALUE, with dashes allowed
 * for underscores. A few short aliases exist for what people type most.
 * The command line is read twice: conf_flags_scan() first, for what decides
 * how to load at all (--help, --version, which config file), and
 * conf_flags_apply() last, so that flags override the file and environment
 * whatever their position.
 */
#include <stdio.h>
#include <string.h>

#include "conf_internal.h"

typedef enum {
    FLAG_HELP,
    FLAG_VERSION,
    FLAG_CONFIG,
    FLAG_CHECK_CONFIG,
    FLAG_LISTEN,    /* one spec; the first replaces the list, later ones append */
    FLAG_LISTENERS, /* the dotted key itself: ';'-separated specs, replacing the list */
    FLAG_SETTING,
} flag_kind_t;

typedef struct flag {
    flag_kind_t kind;
    const setting_t *setting; /* FLAG_SETTING only */
    const char *written;      /* the flag as typed, for messages; written_len stops before any '=' */
    int written_len;
    const char *value;        /* NULL for --help and --version */
} flag_t;

static const struct {
    const char *name; /* with underscores, as after normalising */
    char short_name;
    flag_kind_t kind;
} specials[] = {
    {"help", 'h', FLAG_HELP},
    {"version", 'V', FLAG_VERSION},
    {"config", 'c', FLAG_CONFIG},
    {"check_config", 0, FLAG_CHECK_CONFIG},
    {"listen", 0, FLAG_LISTEN},
    {"listeners", 0, FLAG_LISTENERS},
};

static const struct {
    const char *name;
    const char *key;
} aliases[] = {
    {"upstream", "upstream.base_url"},
    {"threads", "worker_threads"},
    {"store", "store.path"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* name is a long name with dashes turned to underscores, or NULL for a short flag. */
static bool resolve(const char *name, char short_name, flag_t *f)
{
    for (size_t i = 0; i < COUNT(specials); i++) {
        if (name ? strcmp(name, specials[i].name) == 0 : short_name == specials[i].short_name) {
            f->kind = specials[i].kind;
            return true;
        }
    }
    if (name == NULL)
        return false;
    for (size_t i = 0; i < COUNT(aliases); i++) {
        if (strcmp(name, aliases[i].name) == 0)
            name = aliases[i].key;
    }
    f->kind = FLAG_SETTING;
    f->setting = conf_setting_find(name);
    return f->setting != NULL;
}

static int unknown_flag(const flag_t *f, const char *name, conf_err_t *err)
{
    const char *near = name ? conf_setting_near_miss(name) : NULL;
    char written[CONF_KEY_MAX + 8], suggestion[CONF_KEY_MAX + 8];

    snprintf(written, sizeof(written), "%.*s", f->written_len, f->written);
    snprintf(suggestion, sizeof(suggestion), "--%s", near ? near : "");
    return conf_unknown(err, "flag", written, near ? suggestion : NULL);
}

/* Works out what the flag at argv[*i] is and takes its value, moving *i past both. */
static int next_flag(int argc, char **argv, int *i, flag_t *f, conf_err_t *err)
{
    const char *arg = argv[(*i)++], *eq = NULL;
    char name[CONF_KEY_MAX];

    *f = (flag_t){.written = arg, .written_len = (int)strlen(arg)};
    if (arg[0] == '-' && arg[1] != '-' && arg[1] != '\0' && arg[2] == '\0') {
        if (!resolve(NULL, arg[1], f))
            return unknown_flag(f, NULL, err);
    } else if (arg[0] == '-' && arg[1] == '-' && arg[2] != '\0') {
        eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) - 2 : strlen(arg) - 2;
        f->written_len = (int)len + 2;
        if (len >= sizeof(name))
            return unknown_flag(f, NULL, err);
        for (size_t j = 0; j < len; j++)
            name[j] = arg[2 + j] == '-' ? '_' : arg[2 + j];
        name[len] = '\0';
        if (!resolve(name, 0, f))
            return unknown_flag(f, name, err);
    } else {
        return conf_fail(err, "config: %s: unexpected argument (settings are given as --KEY=VALUE)", arg);
    }
    if (f->kind == FLAG_HELP || f->kind == FLAG_VERSION) {
        if (eq)
            return conf_fail(err, "config: %s: takes no value", arg);
        return 0;
    }
    if (eq)
        f->value = eq + 1;
    else if (*i < argc)
        f->value = argv[(*i)++];
    else
        return conf_fail(err, "config: %s: missing value", arg);
    return 0;
}

/* Finds the action and the config file; stops at --help or --version, which need nothing else. */
int conf_flags_scan(int argc, char **argv, conf_action_t *action, const char **config_path, conf_err_t *err)
{
    flag_t f;

    for (int i = 1; i < argc;) {
        if (next_flag(argc, argv, &i, &f, err) < 0)
            return -1;
        switch (f.kind) {
        case FLAG_HELP:
            *action = CONF_ACTION_HELP;
            return 0;
        case FLAG_VERSION:
            *action = CONF_ACTION_VERSION;
            return 0;
        case FLAG_CHECK_CONFIG:
            *action = CONF_ACTION_CHECK;
            *config_path = f.value;
            break;
        case FLAG_CONFIG:
            *config_path = f.value;
            break;
        default:
            break;
        }
    }
    return 0;
}

static int apply_flag(conf_t *conf, const flag_t *f, bool *listen_seen, conf_err_t *err)
{
    switch (f->kind) {
    case FLAG_LISTEN:
        if (!*listen_seen)
            conf_listeners_clear(conf);
        *listen_seen = true;
        return conf_listeners_add_spec(conf, f->value, strlen(f->value), err);
    case FLAG_LISTENERS:
        *listen_seen = true;
        return conf_listeners_set_specs(conf, f->value, err);
    case FLAG_SETTING:
        return conf_setting_set(conf, f->setting, &(conf_value_t){.text = f->value}, err);
    default:
        return 0; /* acted on by conf_flags_scan() */
    }
}

int conf_flags_apply(conf_t *conf, int argc, char **argv, conf_err_t *err)
{
    bool listen_seen = false;
    flag_t f;

    for (int i = 1; i < argc;) {
        if (next_flag(argc, argv, &i, &f, err) < 0)
            return -1;
        if (apply_flag(conf, &f, &listen_seen, err) < 0) {
            conf_err_note(err, " (from %.*s)", f.written_len, f.written);
            return -1;
        }
    }
    return 0;
}
