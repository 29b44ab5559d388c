/*
 * cache_request.c - decides whether, and as what, a request can use the cache.
 *
 * Conservative by design: any query parameter or header whose effect the
 * cache does not reproduce exactly makes the request pass through.
 */
#include "cache_request.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *cache_percent_decode(const char *src, size_t len)
{
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_value(src[i + 1]) : -1, lo = hi >= 0 ? hex_value(src[i + 2]) : -1;
            if (lo < 0) {
                free(out);
                return NULL;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0') {
            free(out);
            return NULL;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return out;
}

static bool parse_int64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Query parameters the cache understands; any other makes the request pass through. */
typedef enum { PARAM_UNKNOWN, PARAM_IGNORED, PARAM_ALT, PARAM_GENERATION, PARAM_IF_GEN, PARAM_IF_GEN_NOT,
               PARAM_IF_METAGEN, PARAM_IF_METAGEN_NOT, PARAM_PROJECTION, PARAM_FIELDS } param_t;

static param_t classify_param(const char *name, size_t len, cache_flavour_t flavour)
{
    static const struct {
        const char *name;
        param_t param;
        bool json_only;
    } known[] = {
        {"generation", PARAM_GENERATION, false},
        {"alt", PARAM_ALT, true},
        {"ifGenerationMatch", PARAM_IF_GEN, true},
        {"ifGenerationNotMatch", PARAM_IF_GEN_NOT, true},
        {"ifMetagenerationMatch", PARAM_IF_METAGEN, true},
        {"ifMetagenerationNotMatch", PARAM_IF_METAGEN_NOT, true},
        {"projection", PARAM_PROJECTION, true},
        {"fields", PARAM_FIELDS, true},
        /* These change who pays or how the answer is printed, not what it says. */
        {"userProject", PARAM_IGNORED, true},
        {"prettyPrint", PARAM_IGNORED, true},
        {"access_token", PARAM_IGNORED, false},
        {"key", PARAM_IGNORED, true},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].name) == len && memcmp(known[i].name, name, len) == 0)
            return known[i].json_only && flavour != CACHE_FLAVOUR_JSON ? PARAM_UNKNOWN : known[i].param;
    return PARAM_UNKNOWN;
}

/* Applies one query parameter; returns false when the request must pass through. */
static bool apply_param(cache_request_t *out, const char *name, size_t name_len, const char *value, size_t value_len)
{
    switch (classify_param(name, name_len, out->flavour)) {
    case PARAM_IGNORED:
        return true;
    case PARAM_ALT:
        if (value_len == 5 && memcmp(value, "media", 5) == 0)
            out->kind = CACHE_READ_MEDIA;
        else if (!(value_len == 4 && memcmp(value, "json", 4) == 0))
            return false;
        return true;
    case PARAM_GENERATION:
        return parse_int64(value, value_len, &out->generation);
    case PARAM_IF_GEN:
        return parse_int64(value, value_len, &out->if_generation_match);
    case PARAM_IF_GEN_NOT:
        return parse_int64(value, value_len, &out->if_generation_not_match);
    case PARAM_IF_METAGEN:
        return parse_int64(value, value_len, &out->if_metageneration_match);
    case PARAM_IF_METAGEN_NOT:
        return parse_int64(value, value_len, &out->if_metageneration_not_match);
    case PARAM_PROJECTION:
        /* noAcl is the default for object GETs; "full" adds ACLs the cache does not keep. */
        return value_len == 5 && memcmp(value, "noAcl", 5) == 0;
    case PARAM_FIELDS:
        /* A partial response of the resource: only media ignores it (see parse_query). */
        return true;
    case PARAM_UNKNOWN:
        break;
    }
    return false;
}

static bool parse_query(cache_request_t *out, const char *query, size_t len)
{
    bool has_fields = false;
    const char *p = query, *end = query + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *param_end = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(param_end - p));
        const char *value = eq != NULL ? eq + 1 : param_end;
        size_t name_len = (size_t)((eq != NULL ? eq : param_end) - p);
        if (name_len != 0) {
            if (name_len == 6 && memcmp(p, "fields", 6) == 0)
                has_fields = true;
            if (!apply_param(out, p, name_len, value, (size_t)(param_end - value)))
                return false;
        }
        p = param_end + 1;
    }
    return !(has_fields && out->kind == CACHE_READ_METADATA);
}

static bool parse_range(cache_range_t *range, const char *s, size_t len)
{
    while (len > 0 && (*s == ' ' || *s == '\t'))
        s++, len--;
    if (len < 7 || strncasecmp(s, "bytes=", 6) != 0 || memchr(s, ',', len) != NULL)
        return false;
    s += 6, len -= 6;
    const char *dash = memchr(s, '-', len);
    if (dash == NULL)
        return false;
    size_t first_len = (size_t)(dash - s), last_len = len - first_len - 1;
    int64_t first, last;
    range->present = true;
    if (first_len == 0) {
        range->suffix = true;
        if (!parse_int64(dash + 1, last_len, &last) || last == 0)
            return false;
        range->first = 0;
        range->last = (uint64_t)last;
        return true;
    }
    if (!parse_int64(s, first_len, &first))
        return false;
    range->first = (uint64_t)first;
    if (last_len == 0) {
        range->last = UINT64_MAX;
        return true;
    }
    if (!parse_int64(dash + 1, last_len, &last) || last < first)
        return false;
    range->last = (uint64_t)last;
    return true;
}

bool cache_range_resolve(const cache_range_t *range, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (!range->present) {
        *first = 0;
        *last = size - 1;
        return size > 0;
    }
    if (range->suffix) {
        if (size == 0)
            return false;
        *first = range->last >= size ? 0 : size - range->last;
        *last = size - 1;
        return true;
    }
    if (range->first >= size)
        return false;
    *first = range->first;
    *last = range->last >= size ? size - 1 : range->last;
    return true;
}

int64_t cache_parse_http_date(const char *s, size_t len)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    static const char *const formats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                          "%a %b %e %H:%M:%S %Y"};
    for (size_t i = 0; i < 3; i++) {
        struct tm tm = {0};
        const char *end = strptime(buf, formats[i], &tm);
        if (end != NULL && *end == '\0')
            return (int64_t)timegm(&tm);
    }
    return -1;
}

static bool accepts_gzip(const char *s, size_t len)
{
    for (size_t i = 0; i + 4 <= len; i++) {
        if (strncasecmp(s + i, "gzip", 4) != 0)
            continue;
        const char *rest = s + i + 4, *end = s + len;
        while (rest < end && *rest == ' ')
            rest++;
        /* "gzip;q=0" refuses it */
        return !(end - rest >= 4 && strncmp(rest, ";q=0", 4) == 0 &&
                 (end - rest == 4 || rest[4] == ',' || (end - rest >= 6 && strncmp(rest + 4, ".0", 2) == 0)));
    }
    return false;
}

/* Sets bucket and name from the path; false when the path is not one object. */
static bool parse_object_path(cache_request_t *out, const route_t *route, const char *path, size_t len)
{
    const char *bucket, *name;
    size_t bucket_len, name_len;
    if (route->api == ROUTE_XML) {
        if (!route->media)
            return false;
        bucket = route->bucket, bucket_len = route->bucket_len;
        name = route->vhost ? path + 1 : route->bucket + route->bucket_len + 1;
        name_len = (size_t)(path + len - name);
    } else {
        static const char json[] = "/storage/v1/b/", download[] = "/download/storage/v1/b/";
        size_t skip = route->api == ROUTE_DOWNLOAD ? sizeof(download) - 1 : sizeof(json) - 1;
        if (len <= skip)
            return false;
        bucket = path + skip;
        const char *slash = memchr(bucket, '/', len - skip);
        if (slash == NULL || (size_t)(path + len - slash) < 4 || memcmp(slash, "/o/", 3) != 0)
            return false;
        bucket_len = (size_t)(slash - bucket);
        name = slash + 3;
        name_len = (size_t)(path + len - name);
        if (memchr(name, '/', name_len) != NULL) /* /o/NAME/acl, /copyTo/...: not a read of NAME */
            return false;
    }
    if (bucket_len == 0 || name_len == 0 || !route_bucket_name_valid(bucket, bucket_len))
        return false;
    out->bucket = cache_percent_decode(bucket, bucket_len);
    out->name = cache_percent_decode(name, name_len);
    return out->bucket != NULL && out->name != NULL;
}

static void parse_conditional_headers(cache_request_t *out, const cache_request_headers_t *h)
{
    out->if_none_match = h->if_none_match;
    out->if_none_match_len = h->if_none_match_len;
    out->if_match = h->if_match;
    out->if_match_len = h->if_match_len;
    if (h->if_modified_since != NULL)
        out->if_modified_since = cache_parse_http_date(h->if_modified_since, h->if_modified_since_len);
    if (h->if_unmodified_since != NULL)
        out->if_unmodified_since = cache_parse_http_date(h->if_unmodified_since, h->if_unmodified_since_len);
    out->accepts_gzip = h->accept_encoding != NULL && accepts_gzip(h->accept_encoding, h->accept_encoding_len);
}

static void init_request(cache_request_t *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = CACHE_READ_NONE;
    out->generation = -1;
    out->if_generation_match = out->if_generation_not_match = -1;
    out->if_metageneration_match = out->if_metageneration_not_match = -1;
    out->if_modified_since = out->if_unmodified_since = -1;
}

void cache_request_parse(cache_request_t *out, const route_t *route, const char *method, size_t method_len,
                        const char *path, size_t path_len, const cache_request_headers_t *headers)
{
    init_request(out);
    bool get = method_len == 3 && memcmp(method, "GET", 3) == 0;
    out->head = method_len == 4 && memcmp(method, "HEAD", 4) == 0;
    if (!get && !out->head)
        return;
    if (route->api == ROUTE_XML)
        out->flavour = CACHE_FLAVOUR_XML;
    else if (route->api == ROUTE_JSON || route->api == ROUTE_DOWNLOAD)
        out->flavour = CACHE_FLAVOUR_JSON;
    else
        return;
    const char *q = memchr(path, '?', path_len);
    size_t len = q != NULL ? (size_t)(q - path) : path_len;
    cache_read_kind_t kind = route->api == ROUTE_JSON ? CACHE_READ_METADATA : CACHE_READ_MEDIA;
    out->kind = kind;
    bool ok = (q == NULL || parse_query(out, q + 1, path_len - len - 1)) &&
              (headers->x_goog_if_generation_match == NULL ||
               parse_int64(headers->x_goog_if_generation_match, headers->x_goog_if_generation_match_len,
                           &out->if_generation_match)) &&
              (headers->range == NULL || parse_range(&out->range, headers->range, headers->range_len));
    /* JSON metadata GETs take no Range; a HEAD of the JSON API is not a GCS read. */
    if (ok && out->kind == CACHE_READ_METADATA && (out->range.present || out->head))
        ok = false;
    if (!ok) {
        out->kind = CACHE_READ_NONE;
        return;
    }
    if (!parse_object_path(out, route, path, len)) {
        /* Not one object, or a name that does not decode: upstream will say what it is. */
        cache_request_dispose(out);
        init_request(out);
        return;
    }
    parse_conditional_headers(out, headers);
}

void cache_request_dispose(cache_request_t *req)
{
    free(req->bucket);
    free(req->name);
    req->bucket = req->name = NULL;
    req->kind = CACHE_READ_NONE;
}
