/*
 * route.c - maps a request target and Host onto a GCS API surface.
 *
 * GCS serves its JSON API under a few fixed prefixes and its XML API on
 * everything else, path-style (/BUCKET/OBJECT) or virtual-hosted
 * (Host: BUCKET.storage.googleapis.com). Because the XML API claims any first
 * path segment that is a valid bucket name, "unknown route" means: a reserved
 * JSON prefix with the wrong shape, or a first segment no bucket could have.
 */
#include "route.h"

#include <string.h>
#include <strings.h>

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);
    return len >= plen && memcmp(s, prefix, plen) == 0;
}

/* The path without its query string. */
static size_t path_only_len(const char *path, size_t len)
{
    const char *q = memchr(path, '?', len);
    return q != NULL ? (size_t)(q - path) : len;
}

/* Whether the segment (no '/' in it) is name; inlined, so that name's length is a constant. */
static inline bool segment_is(const char *seg, size_t seg_len, const char *name)
{
    size_t len = strlen(name);
    return seg_len == len && memcmp(seg, name, len) == 0;
}

/* prefix followed by end of path, '/' or '?' */
static bool is_segment_prefix(const char *path, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (!has_prefix(path, len, prefix))
        return false;
    return len == plen || path[plen] == '/' || path[plen] == '?';
}

void route_query_walk_start(route_query_walk_t *walk, const char *path, size_t path_len)
{
    const char *q = memchr(path, '?', path_len);
    walk->end = path + path_len;
    walk->next = q != NULL ? q + 1 : walk->end;
}

bool route_query_walk_next(route_query_walk_t *walk, const char **name, size_t *name_len, const char **value,
                           size_t *value_len)
{
    const char *p = walk->next;
    if (p >= walk->end)
        return false;
    const char *amp = memchr(p, '&', (size_t)(walk->end - p));
    const char *param_end = amp != NULL ? amp : walk->end;
    const char *eq = memchr(p, '=', (size_t)(param_end - p));
    *name = p;
    *name_len = (size_t)((eq != NULL ? eq : param_end) - p);
    *value = eq != NULL ? eq + 1 : param_end;
    *value_len = (size_t)(param_end - *value);
    walk->next = param_end + 1;
    return true;
}

const char *route_query_param(const char *path, size_t path_len, const char *name, size_t *value_len)
{
    size_t wanted_len = strlen(name);
    route_query_walk_t walk;
    const char *param, *value;
    size_t param_len, len;
    route_query_walk_start(&walk, path, path_len);
    while (route_query_walk_next(&walk, &param, &param_len, &value, &len)) {
        if (param_len == wanted_len && memcmp(param, name, wanted_len) == 0) {
            *value_len = len;
            return value;
        }
    }
    return NULL;
}

bool route_bucket_name_valid(const char *name, size_t len)
{
    /* 3-63 characters, or up to 222 when dotted; lowercase letters, digits,
     * '-', '_', '.'; starts and ends with a letter or digit. */
    if (len < 3 || len > 222)
        return false;
    bool dotted = memchr(name, '.', len) != NULL;
    if (!dotted && len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '_' && c != '.')
            return false;
        if ((i == 0 || i == len - 1) && !alnum)
            return false;
    }
    return true;
}

/* host without its :port (IPv6 literals keep their brackets). */
static size_t host_name_len(const char *host, size_t len)
{
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        return close != NULL ? (size_t)(close - host) + 1 : len;
    }
    const char *colon = memchr(host, ':', len);
    return colon != NULL ? (size_t)(colon - host) : len;
}

static bool classify_vhost(route_t *route, const char *host, size_t host_len, const char *suffix)
{
    if (host == NULL || suffix == NULL || suffix[0] == '\0')
        return false;
    size_t name_len = host_name_len(host, host_len), suffix_len = strlen(suffix);
    if (name_len < suffix_len + 2 || host[name_len - suffix_len - 1] != '.' ||
        strncasecmp(host + name_len - suffix_len, suffix, suffix_len) != 0)
        return false;
    route->api = ROUTE_XML;
    route->error_format = ERROR_FORMAT_XML;
    route->vhost = true;
    route->bucket = host;
    route->bucket_len = name_len - suffix_len - 1;
    return true;
}

/* len excludes the query string; full_len includes it. */
static void classify_json_prefixes(route_t *route, const char *path, size_t len, size_t full_len)
{
    route->error_format = ERROR_FORMAT_JSON;
    if (is_segment_prefix(path, len, "/storage/v1")) {
        size_t value_len;
        const char *alt = route_query_param(path, full_len, "alt", &value_len);
        route->api = ROUTE_JSON;
        route->media = alt != NULL && value_len == 5 && memcmp(alt, "media", 5) == 0;
    } else if (is_segment_prefix(path, len, "/upload/storage/v1") ||
               is_segment_prefix(path, len, "/resumable/upload/storage/v1")) {
        route->api = ROUTE_UPLOAD;
    } else if (is_segment_prefix(path, len, "/download/storage/v1")) {
        route->api = ROUTE_DOWNLOAD;
        route->media = true;
    } else if (is_segment_prefix(path, len, "/batch/storage/v1")) {
        route->api = ROUTE_BATCH;
    }
}

void route_classify(route_t *route, const char *path, size_t path_len, const char *host, size_t host_len,
                    const char *vhost_suffix)
{
    memset(route, 0, sizeof(*route));
    route->api = ROUTE_NONE;
    route->error_format = ERROR_FORMAT_XML;
    if (path_len == 0 || path[0] != '/')
        return;
    size_t len = path_only_len(path, path_len);
    /* The first segment decides, and is compared whole: this runs on every request. */
    const char *seg = path + 1, *slash = memchr(seg, '/', len - 1);
    size_t seg_len = slash != NULL ? (size_t)(slash - seg) : len - 1;

    if (segment_is(seg, seg_len, "_larder")) {
        route->api = ROUTE_ADMIN;
        route->error_format = ERROR_FORMAT_JSON;
        return;
    }
    if (classify_vhost(route, host, host_len, vhost_suffix)) {
        route->media = len > 1; /* an object, not the bucket listing */
        return;
    }
    if (segment_is(seg, seg_len, "storage") || segment_is(seg, seg_len, "upload") ||
        segment_is(seg, seg_len, "resumable") || segment_is(seg, seg_len, "download") ||
        segment_is(seg, seg_len, "batch")) {
        classify_json_prefixes(route, path, len, path_len);
        return;
    }

    /* XML path style: "/" lists buckets, "/BUCKET[/OBJECT]" otherwise. */
    if (seg_len != 0 && !route_bucket_name_valid(seg, seg_len))
        return;
    route->api = ROUTE_XML;
    route->bucket = seg;
    route->bucket_len = seg_len;
    route->media = slash != NULL && (size_t)(slash - path) + 1 < len;
}

const char *route_api_name(route_api_t api)
{
    switch (api) {
    case ROUTE_JSON:
        return "json";
    case ROUTE_UPLOAD:
        return "upload";
    case ROUTE_DOWNLOAD:
        return "download";
    case ROUTE_BATCH:
        return "batch";
    case ROUTE_XML:
        return "xml";
    case ROUTE_ADMIN:
        return "admin";
    case ROUTE_NONE:
        break;
    }
    return "unknown";
}
