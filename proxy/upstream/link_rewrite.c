/*
 * link_rewrite.c - replaces upstream origins in links with larder's.
 */
#include "link_rewrite.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static size_t origin_len(const char *url, size_t len)
{
    const char *scheme_end = len > 3 ? strstr(url, "://") : NULL;
    if (scheme_end == NULL || (size_t)(scheme_end - url) > len)
        return 0;
    const char *host = scheme_end + 3, *end = url + len;
    const char *p = host;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    return p > host ? (size_t)(p - url) : 0;
}

static bool host_is_googleapis(const char *url, size_t origin)
{
    static const char suffix[] = ".googleapis.com";
    const char *host = strstr(url, "://") + 3;
    size_t host_len = (size_t)(url + origin - host);
    const char *colon = memchr(host, ':', host_len);
    if (colon != NULL)
        host_len = (size_t)(colon - host);
    return host_len > sizeof(suffix) - 1 &&
           strncasecmp(host + host_len - (sizeof(suffix) - 1), suffix, sizeof(suffix) - 1) == 0;
}

bool link_is_upstream(const char *url, size_t len, const char *upstream_base, size_t *path_start)
{
    size_t origin = origin_len(url, len);
    if (origin == 0)
        return false;
    size_t base_origin = origin_len(upstream_base, strlen(upstream_base));
    bool same = base_origin == origin && strncasecmp(url, upstream_base, origin) == 0;
    if (!same && !host_is_googleapis(url, origin))
        return false;
    *path_start = origin;
    return true;
}

static bool rewrite_value(json_t *object, const char *key, const char *upstream_base, const char *public_base)
{
    json_t *value = json_object_get(object, key);
    if (!json_is_string(value))
        return false;
    const char *url = json_string_value(value);
    size_t len = json_string_length(value), path_start;
    if (!link_is_upstream(url, len, upstream_base, &path_start))
        return false;
    size_t public_len = strlen(public_base), new_len = public_len + len - path_start;
    char *rewritten = malloc(new_len + 1);
    if (rewritten == NULL)
        return false;
    memcpy(rewritten, public_base, public_len);
    memcpy(rewritten + public_len, url + path_start, len - path_start);
    rewritten[new_len] = '\0';
    bool ok = json_object_set_new(object, key, json_stringn(rewritten, new_len)) == 0;
    free(rewritten);
    return ok;
}

/* Walks the document; list responses nest resources under "items". */
static bool rewrite_tree(json_t *node, const char *upstream_base, const char *public_base)
{
    bool changed = false;
    if (json_is_object(node)) {
        changed |= rewrite_value(node, "selfLink", upstream_base, public_base);
        changed |= rewrite_value(node, "mediaLink", upstream_base, public_base);
        const char *key;
        json_t *child;
        json_object_foreach(node, key, child)
        {
            if (json_is_object(child) || json_is_array(child))
                changed |= rewrite_tree(child, upstream_base, public_base);
        }
    } else if (json_is_array(node)) {
        size_t i;
        json_t *child;
        json_array_foreach(node, i, child) changed |= rewrite_tree(child, upstream_base, public_base);
    }
    return changed;
}

char *link_rewrite_json(const char *body, size_t len, const char *upstream_base, const char *public_base,
                        size_t *out_len)
{
    json_error_t error;
    json_t *root = json_loadb(body, len, JSON_ALLOW_NUL, &error);
    if (root == NULL)
        return NULL;
    char *out = NULL;
    if (rewrite_tree(root, upstream_base, public_base)) {
        out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
        if (out != NULL)
            *out_len = strlen(out);
    }
    json_decref(root);
    return out;
}

char *link_public_base(const char *configured, const char *scheme, size_t scheme_len, const char *authority,
                       size_t authority_len)
{
    if (configured != NULL)
        return strdup(configured);
    if (authority_len == 0)
        return NULL;
    size_t len = scheme_len + 3 + authority_len;
    char *base = malloc(len + 1);
    if (base != NULL)
        snprintf(base, len + 1, "%.*s://%.*s", (int)scheme_len, scheme, (int)authority_len, authority);
    return base;
}
