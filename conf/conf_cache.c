/*
 * conf_cache.c - cache revalidation policies: reading "always", "immutable"
 * and "ttl:SECONDS", the cache.policies rules in their text and file forms,
 * printing both back, and finding the policy for an object.
 *
 * A rule list is built aside and swapped in only when every rule is good, so
 * a bad value leaves the list from the layer before untouched until the
 * error stops the load. A layer that gives the list replaces it whole.
 * Both forms go through rule_set(), so a field is judged the same way
 * whichever form gave it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_internal.h"

#define POLICY_EXPECTED                                                                                                \
    "always, immutable or ttl:SECONDS (SECONDS from 1 to 31536000, or a number with s, m, h or d as in ttl:5m)"
#define BUCKET_EXPECTED                                                                                                \
    "a bucket name: 3 to 63 lowercase letters, digits, dashes, underscores and dots (222 with dots, 63 between "       \
    "them), starting and ending with a letter or digit"
#define PREFIX_MAX 1024 /* bytes: the longest object name GCS allows */

static const char *const rule_fields[] = {"bucket", "prefix", "policy"};
#define NUM_RULE_FIELDS (sizeof(rule_fields) / sizeof(rule_fields[0]))

/* A list being built, before it replaces the one in conf_t. */
typedef struct rule_list {
    cache_rule_t *rules;
    size_t num;
} rule_list_t;

/* What follows "ttl:": a duration as conf_parse_seconds() reads it, 1 to CONF_TTL_MAX seconds. */
static bool parse_ttl(const char *s, unsigned *out)
{
    uint64_t n;

    if (!conf_parse_seconds(s, &n) || n == 0 || n > CONF_TTL_MAX)
        return false;
    *out = (unsigned)n;
    return true;
}

static bool parse_policy(const char *s, cache_policy_t *out)
{
    unsigned ttl;

    if (strcmp(s, "always") == 0) {
        *out = (cache_policy_t){.kind = CACHE_POLICY_ALWAYS};
        return true;
    }
    if (strcmp(s, "immutable") == 0) {
        *out = (cache_policy_t){.kind = CACHE_POLICY_IMMUTABLE};
        return true;
    }
    if (strncmp(s, "ttl:", 4) != 0 || !parse_ttl(s + 4, &ttl))
        return false;
    *out = (cache_policy_t){.kind = CACHE_POLICY_TTL, .ttl_seconds = ttl};
    return true;
}

/* Text, or a JSON string (never with a NUL: the file is read without JSON_ALLOW_NUL); else NULL. */
static const char *plain_text(const conf_value_t *value)
{
    return value->json ? json_string_value(value->json) : value->text;
}

/* Stores into *out only if value is a good policy. The file gives it as a string too. */
int conf_cache_policy_read(const char *key, const conf_value_t *value, cache_policy_t *out, conf_err_t *err)
{
    const char *text = plain_text(value);

    if (text == NULL || !parse_policy(text, out))
        return conf_invalid(err, key, value, POLICY_EXPECTED);
    return 0;
}

/* The canonical text, which parse_policy() reads back: "always", "immutable", "ttl:300". */
void conf_cache_policy_format(const cache_policy_t *policy, char *buf, size_t size)
{
    switch (policy->kind) {
    case CACHE_POLICY_ALWAYS:
        snprintf(buf, size, "always");
        return;
    case CACHE_POLICY_IMMUTABLE:
        snprintf(buf, size, "immutable");
        return;
    case CACHE_POLICY_TTL:
        snprintf(buf, size, "ttl:%u", policy->ttl_seconds);
        return;
    }
    snprintf(buf, size, "?");
}

static bool is_alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* GCS bucket naming: a-z 0-9 - _ and dots, alphanumeric at both ends; dotted names may be longer. */
static bool bucket_valid(const char *s, size_t len)
{
    size_t part = 0;
    bool dotted = memchr(s, '.', len) != NULL;

    if (len < 3 || len > (dotted ? 222 : 63) || !is_alnum_lower(s[0]) || !is_alnum_lower(s[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (part == 0 || part > 63)
                return false;
            part = 0;
        } else if (is_alnum_lower(s[i]) || s[i] == '-' || s[i] == '_') {
            part++;
        } else {
            return false;
        }
    }
    return part <= 63;
}

/* How many continuation bytes follow the first byte c; -1 if c cannot start a character. */
static int utf8_more(unsigned char c)
{
    if (c < 0x80)
        return 0;
    if (c >= 0xc2 && c <= 0xdf)
        return 1;
    if ((c & 0xf0) == 0xe0)
        return 2;
    if (c >= 0xf0 && c <= 0xf4)
        return 3;
    return -1;
}

/* Well-formed UTF-8 (RFC 3629): no overlong forms, surrogates, or code points past U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        int more = utf8_more(s[i]);
        if (more < 0 || len - i - 1 < (size_t)more)
            return false;
        uint32_t cp = more == 0 ? s[i] : s[i] & (0x3fu >> more);
        for (int k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if ((more == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (more == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += (size_t)more + 1;
    }
    return true;
}

/* What GCS allows in an object name, which a prefix is the start of: UTF-8, no CR or LF, 1024 bytes at most. */
static bool prefix_valid(const char *s, size_t len)
{
    return len <= PREFIX_MAX && memchr(s, '\r', len) == NULL && memchr(s, '\n', len) == NULL &&
           utf8_valid((const unsigned char *)s, len);
}

/* "cache.policies[2].bucket", or "cache.policies[2]" for the rule as a whole. */
static void rule_key(char *buf, size_t size, const char *base, size_t index, const char *field)
{
    if (field)
        snprintf(buf, size, "%s[%zu].%s", base, index, field);
    else
        snprintf(buf, size, "%s[%zu]", base, index);
}

static void rule_dispose(cache_rule_t *r)
{
    free(r->bucket);
    free(r->prefix);
    *r = (cache_rule_t){0};
}

static void list_free(rule_list_t *list)
{
    for (size_t i = 0; i < list->num; i++)
        rule_dispose(&list->rules[i]);
    free(list->rules);
    *list = (rule_list_t){0};
}

void conf_cache_rules_clear(conf_t *conf)
{
    rule_list_t list = {conf->cache.rules, conf->cache.num_rules};

    list_free(&list);
    conf->cache.rules = NULL;
    conf->cache.num_rules = 0;
}

static const char *field_near_miss(const char *name)
{
    for (size_t i = 0; i < NUM_RULE_FIELDS; i++) {
        if (conf_is_near_miss(name, rule_fields[i]))
            return rule_fields[i];
    }
    return NULL;
}

/* Sets one field of r, the index'th rule of base; name is a file key or a part of the text form. */
static int rule_set(cache_rule_t *r, const char *base, size_t index, const char *name, const conf_value_t *value,
                    conf_err_t *err)
{
    char key[CONF_KEY_MAX];
    const char *s = plain_text(value);
    size_t len = s ? strlen(s) : 0;

    rule_key(key, sizeof(key), base, index, name);
    if (strcmp(name, "bucket") == 0) {
        if (s == NULL || !bucket_valid(s, len))
            return conf_invalid(err, key, value, BUCKET_EXPECTED);
        return conf_replace_string(&r->bucket, s, len, err);
    }
    if (strcmp(name, "prefix") == 0) {
        if (s == NULL || !prefix_valid(s, len))
            return conf_invalid(err, key, value,
                                "a string of at most 1024 bytes of UTF-8, without CR or LF (\"\": the whole bucket)");
        return conf_replace_string(&r->prefix, s, len, err);
    }
    if (strcmp(name, "policy") == 0)
        return conf_cache_policy_read(key, value, &r->policy, err);
    return conf_unknown(err, "key", key, field_near_miss(name));
}

/* Appends r, which must have a bucket and a policy, to list; either way r's strings are no longer the caller's. */
static int rule_push(rule_list_t *list, cache_rule_t *r, const char *base, conf_err_t *err)
{
    char key[CONF_KEY_MAX];
    cache_rule_t *grown;

    if (r->prefix == NULL && conf_replace_string(&r->prefix, "", 0, err) < 0)
        goto fail;
    for (size_t j = 0; j < list->num; j++) {
        if (strcmp(list->rules[j].bucket, r->bucket) == 0 && strcmp(list->rules[j].prefix, r->prefix) == 0) {
            /* Longer than the error shows anyway, so cutting it here changes nothing. */
            char shown[256];
            snprintf(shown, sizeof(shown), "%s%s%s", r->bucket, *r->prefix ? "/" : "", r->prefix);
            rule_key(key, sizeof(key), base, list->num, NULL);
            conf_invalid(err, key, &(conf_value_t){.text = shown}, "a bucket and prefix not already given by %s[%zu]",
                         base, j);
            goto fail;
        }
    }
    grown = realloc(list->rules, (list->num + 1) * sizeof(*grown));
    if (grown == NULL) {
        conf_fail(err, "config: out of memory");
        goto fail;
    }
    list->rules = grown;
    list->rules[list->num++] = *r;
    return 0;
fail:
    rule_dispose(r);
    return -1;
}

/* Splits work (a writable copy of one rule) into its parts and sets them; -2 means bad syntax. */
static int parse_rule(cache_rule_t *r, const char *base, size_t index, char *work, conf_err_t *err)
{
    char *eq = strrchr(work, '='), *slash;

    if (eq == NULL)
        return -2;
    *eq = '\0';
    slash = strchr(work, '/');
    if (slash)
        *slash++ = '\0';
    if (rule_set(r, base, index, "bucket", &(conf_value_t){.text = work}, err) < 0 ||
        rule_set(r, base, index, "prefix", &(conf_value_t){.text = slash ? slash : ""}, err) < 0 ||
        rule_set(r, base, index, "policy", &(conf_value_t){.text = eq + 1}, err) < 0)
        return -1;
    return 0;
}

/* Appends the rule that the first len bytes of text describe. */
static int add_text_rule(rule_list_t *list, const char *base, const char *text, size_t len, conf_err_t *err)
{
    cache_rule_t r = {0};
    char *whole = strndup(text, len), *work = strndup(text, len);
    int rc = -1;

    if (whole == NULL || work == NULL) {
        conf_fail(err, "config: out of memory");
    } else {
        rc = parse_rule(&r, base, list->num, work, err);
        if (rc == -2) {
            char key[CONF_KEY_MAX];
            rule_key(key, sizeof(key), base, list->num, NULL);
            rc = conf_invalid(err, key, &(conf_value_t){.text = whole},
                              "BUCKET[/PREFIX]=POLICY, as in models/v1/=immutable");
        }
    }
    free(whole);
    free(work);
    if (rc < 0) {
        rule_dispose(&r);
        return -1;
    }
    return rule_push(list, &r, base, err);
}

/* The ';'-separated text form, as flags and variables give it; blanks around rules are ignored. */
static int rules_from_text(rule_list_t *list, const char *base, const char *text, conf_err_t *err)
{
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ";");
        const char *next = p + len + (p[len] == ';');
        while (len > 0 && *p == ' ')
            p++, len--;
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len > 0 && add_text_rule(list, base, p, len, err) < 0)
            return -1;
        p = next;
    }
    return 0;
}

/* A field the object left out: no default for bucket and policy. */
static int rule_missing(const char *base, size_t index, const char *field, conf_err_t *err)
{
    char key[CONF_KEY_MAX];

    rule_key(key, sizeof(key), base, index, field);
    return conf_invalid(err, key, &(conf_value_t){0}, "%s",
                        strcmp(field, "bucket") == 0 ? BUCKET_EXPECTED : POLICY_EXPECTED);
}

static int add_json_rule(rule_list_t *list, const char *base, json_t *object, conf_err_t *err)
{
    cache_rule_t r = {0};
    bool has_policy = false;
    const char *name;
    json_t *value;

    if (!json_is_object(object)) {
        char key[CONF_KEY_MAX];
        rule_key(key, sizeof(key), base, list->num, NULL);
        return conf_invalid(err, key, &(conf_value_t){.json = object},
                            "an object such as {\"bucket\": \"models\", \"prefix\": \"v1/\", "
                            "\"policy\": \"immutable\"}");
    }
    json_object_foreach(object, name, value) {
        if (rule_set(&r, base, list->num, name, &(conf_value_t){.json = value}, err) < 0) {
            rule_dispose(&r);
            return -1;
        }
        has_policy = has_policy || strcmp(name, "policy") == 0;
    }
    if (r.bucket == NULL || !has_policy) {
        const char *missing = r.bucket == NULL ? "bucket" : "policy";
        rule_dispose(&r);
        return rule_missing(base, list->num, missing, err);
    }
    return rule_push(list, &r, base, err);
}

static int rules_from_array(rule_list_t *list, const char *base, json_t *array, conf_err_t *err)
{
    size_t i;
    json_t *object;

    json_array_foreach(array, i, object) {
        if (add_json_rule(list, base, object, err) < 0)
            return -1;
    }
    return 0;
}

/* Replaces conf's rules with those value gives, only if every one of them is good. */
int conf_cache_rules_read(conf_t *conf, const char *key, const conf_value_t *value, conf_err_t *err)
{
    rule_list_t list = {0};
    const char *text = plain_text(value);
    int rc;

    if (value->json && json_is_array(value->json))
        rc = rules_from_array(&list, key, (json_t *)value->json, err);
    else if (text)
        rc = rules_from_text(&list, key, text, err);
    else
        rc = conf_invalid(err, key, value, "an array of rule objects, or a string %s", CONF_RULES_SYNTAX);
    if (rc < 0) {
        list_free(&list);
        return -1;
    }
    conf_cache_rules_clear(conf);
    conf->cache.rules = list.rules;
    conf->cache.num_rules = list.num;
    return 0;
}

/* The file form, which loads back to the same rules, and can hold a prefix with a ';'; NULL if out of memory. */
json_t *conf_cache_rules_json(const conf_t *conf)
{
    json_t *array = json_array();
    char policy[32];

    for (size_t i = 0; array && i < conf->cache.num_rules; i++) {
        const cache_rule_t *r = &conf->cache.rules[i];
        conf_cache_policy_format(&r->policy, policy, sizeof(policy));
        json_t *object = json_pack("{s:s, s:s, s:s}", "bucket", r->bucket, "prefix", r->prefix, "policy", policy);
        if (json_array_append_new(array, object) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

/* Rules never share a bucket and prefix, so the longest match is unique. Reads conf only: any thread may call. */
const cache_policy_t *conf_cache_policy_for(const conf_t *conf, const char *bucket, size_t bucket_len,
                                            const char *name, size_t name_len)
{
    const cache_policy_t *best = &conf->cache.default_policy;
    size_t best_len = 0;
    bool found = false;

    for (size_t i = 0; i < conf->cache.num_rules; i++) {
        const cache_rule_t *r = &conf->cache.rules[i];
        size_t prefix_len = strlen(r->prefix);
        if (strlen(r->bucket) != bucket_len || memcmp(r->bucket, bucket, bucket_len) != 0)
            continue;
        /* name may be NULL when name_len is 0, and memcmp() must not see a NULL even for 0 bytes. */
        if (prefix_len > name_len || (prefix_len > 0 && memcmp(r->prefix, name, prefix_len) != 0))
            continue;
        if (!found || prefix_len > best_len) {
            best = &r->policy;
            best_len = prefix_len;
            found = true;
        }
    }
    return best;
}
