/*
 * conf_json.c - the file layer: reads the JSON config file and applies each
 * key in it, in file order.
 *
 * The file mirrors the dotted keys: "upstream.base_url" is "base_url" inside
 * the "upstream" object. Any key the schema does not know is an error naming
 * its full dotted path, because a misspelt key silently ignored is a setting
 * silently left at its default.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "conf_internal.h"

static int apply_object(conf_t *conf, const char *prefix, json_t *object, conf_err_t *err);

static int apply_member(conf_t *conf, const char *key, json_t *value, conf_err_t *err)
{
    const setting_t *s;

    if (strcmp(key, "listeners") == 0)
        return conf_listeners_set_json(conf, value, err);
    s = conf_setting_find(key);
    if (s)
        return conf_setting_set(conf, s, &(conf_value_t){.json = value}, err);
    if (conf_is_section(key)) {
        if (!json_is_object(value))
            return conf_invalid(err, key, &(conf_value_t){.json = value}, "an object");
        return apply_object(conf, key, value, err);
    }
    return conf_unknown(err, "key", key, conf_setting_near_miss(key));
}

/* prefix is the dotted path of object, NULL at the top. */
static int apply_object(conf_t *conf, const char *prefix, json_t *object, conf_err_t *err)
{
    const char *name;
    json_t *value;
    char key[CONF_KEY_MAX];

    json_object_foreach(object, name, value) {
        int n = prefix ? snprintf(key, sizeof(key), "%s.%s", prefix, name) : snprintf(key, sizeof(key), "%s", name);
        if (n < 0 || (size_t)n >= sizeof(key))
            return conf_unknown(err, "key", key, NULL);
        /* Otherwise {"upstream.base_url": ...} would work, and compete with the nested form. */
        if (strchr(name, '.'))
            return conf_fail(err, "config: %s: unknown key (in the file, \"a.b\" is written {\"a\": {\"b\": ...}})",
                             key);
        if (apply_member(conf, key, value, err) < 0)
            return -1;
    }
    return 0;
}

/* Parses the file at path; NULL and the error in err if it cannot be read or is not JSON. */
static json_t *read_file(const char *path, conf_err_t *err)
{
    FILE *fp = fopen(path, "r");
    json_error_t jerr;
    json_t *root;

    if (fp == NULL) {
        conf_fail(err, "config: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
    /* A directory opens fine and only fails to read; say that rather than what jansson made of no input. */
    if (ferror(fp)) {
        conf_fail(err, "config: cannot read %s: %s", path, strerror(errno));
        json_decref(root);
        root = NULL;
    } else if (root == NULL) {
        conf_fail(err, "config: %s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
    }
    if (fclose(fp) != 0 && root != NULL) {
        conf_fail(err, "config: cannot read %s: %s", path, strerror(errno));
        json_decref(root);
        root = NULL;
    }
    return root;
}

int conf_json_load(conf_t *conf, const char *path, conf_err_t *err)
{
    json_t *root = read_file(path, err);
    int rc;

    if (root == NULL)
        return -1;
    if (json_is_object(root)) {
        rc = apply_object(conf, NULL, root, err);
        if (rc < 0)
            conf_err_note(err, " (in %s)", path);
    } else {
        rc = conf_fail(err, "config: %s: the top level is not valid: expected a JSON object", path);
    }
    json_decref(root);
    return rc;
}
