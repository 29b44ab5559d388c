/*
 * conf_list.c - settings whose value is a list of strings (auth.admins):
 * reading the comma-separated text that flags and variables give and the
 * file's array, printing the list back, and releasing it.
 *
 * In both forms blanks around an entry are dropped and an empty entry is an
 * error, since "a,,b" is likelier a slip than a wish; only "" as a whole is
 * the empty list, so LARDER_AUTH_ADMINS= clears what the file set. A list is
 * built aside and swapped in only when every entry is good, so a layer that
 * gives the list replaces it whole, and a bad value leaves the list from the
 * layer before in place until the error stops the load.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_internal.h"

typedef struct string_list {
    char **items;
    size_t num;
} string_list_t;

/* The list s names in conf: its char ** and the size_t count right after it. */
static string_list_t list_get(const conf_t *conf, const setting_t *s)
{
    const char *field = conf_field_const(conf, s);

    return (string_list_t){*(char **const *)field, *(const size_t *)(field + sizeof(char **))};
}

static void list_put(conf_t *conf, const setting_t *s, string_list_t list)
{
    char *field = conf_field(conf, s);

    *(char ***)field = list.items;
    *(size_t *)(field + sizeof(char **)) = list.num;
}

static void list_free(string_list_t *list)
{
    for (size_t i = 0; i < list->num; i++)
        free(list->items[i]);
    free(list->items);
    *list = (string_list_t){0};
}

void conf_string_list_clear(conf_t *conf, const setting_t *s)
{
    string_list_t list = list_get(conf, s);

    list_free(&list);
    list_put(conf, s, list);
}

/* Moves *s past the blanks it starts with; returns the length left without those it ends with. */
static size_t trim(const char **s, size_t len)
{
    while (len > 0 && isspace((unsigned char)**s))
        (*s)++, len--;
    while (len > 0 && isspace((unsigned char)(*s)[len - 1]))
        len--;
    return len;
}

/* Appends a copy of the len bytes at s. */
static int push(string_list_t *list, const char *s, size_t len, conf_err_t *err)
{
    char **grown = realloc(list->items, (list->num + 1) * sizeof(*grown));

    if (grown == NULL)
        return conf_fail(err, "config: out of memory");
    list->items = grown;
    list->items[list->num] = strndup(s, len);
    if (list->items[list->num] == NULL)
        return conf_fail(err, "config: out of memory");
    list->num++;
    return 0;
}

/* The form flags and variables give: entries separated by commas. */
static int list_from_text(string_list_t *list, const char *key, const char *text, conf_err_t *err)
{
    if (*text == '\0')
        return 0;
    for (const char *p = text;;) {
        size_t len = strcspn(p, ",");
        const char *entry = p;
        size_t kept = trim(&entry, len);
        /* The whole value, not the empty entry, is what the user can find and fix. */
        if (kept == 0)
            return conf_invalid(err, key, &(conf_value_t){.text = text},
                                "%s with no empty or blank entry (\"\" for none)", CONF_LIST_SYNTAX);
        if (push(list, entry, kept, err) < 0)
            return -1;
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

static int list_from_array(string_list_t *list, const char *key, const json_t *array, conf_err_t *err)
{
    size_t i;
    json_t *item;

    json_array_foreach(array, i, item) {
        const char *entry = json_string_value(item);
        size_t kept = entry ? trim(&entry, json_string_length(item)) : 0;
        if (kept == 0) {
            char item_key[CONF_KEY_MAX];
            snprintf(item_key, sizeof(item_key), "%s[%zu]", key, i);
            return conf_invalid(err, item_key, &(conf_value_t){.json = item}, "a string that is not empty or blank");
        }
        if (push(list, entry, kept, err) < 0)
            return -1;
    }
    return 0;
}

/* Replaces the list s names in conf with the one value gives, only if every entry of it is good. */
int conf_string_list_read(conf_t *conf, const setting_t *s, const conf_value_t *value, conf_err_t *err)
{
    string_list_t list = {0};
    /* The file may give the text form too, as it may for cache.policies. */
    const char *text = value->json ? json_string_value(value->json) : value->text;
    int rc;

    if (value->json && json_is_array(value->json))
        rc = list_from_array(&list, s->key, value->json, err);
    else if (text)
        rc = list_from_text(&list, s->key, text, err);
    else
        rc = conf_invalid(err, s->key, value, "an array of strings, or a string %s", CONF_LIST_SYNTAX);
    if (rc < 0) {
        list_free(&list);
        return -1;
    }
    conf_string_list_clear(conf, s);
    list_put(conf, s, list);
    return 0;
}

/* The file's array form; NULL if out of memory, or if an entry is not UTF-8 and so cannot be JSON. */
json_t *conf_string_list_json(const conf_t *conf, const setting_t *s)
{
    string_list_t list = list_get(conf, s);
    json_t *array = json_array();

    for (size_t i = 0; array && i < list.num; i++) {
        if (json_array_append_new(array, json_string(list.items[i])) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}
