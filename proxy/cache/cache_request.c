/*
 * cache_request.c - decides whether, and as what, a read can use the cache.
 *
 * Conservative by design: any query parameter or header whose effect the
 * cache does not reproduce exactly makes the request pass through. The
 * object's name and the numeric parameters come from the parsed target, the
 * same values the upstream URL is built from.
 */
#include "cache_request.h"

#include <string.h>
#include <strings.h>
#include <time.h>

/* Query parameters the cache understands; any other makes the request pass through. */
static bool param_understood(const target_param_t *p, cache_request_t *out)
{
    static const struct {
        const char *name;
        bool json_only;
    } known[] = {
        {"generation", false},
        {"alt", true},
        {"ifGenerationMatch", true},
        {"ifGenerationNotMatch", true},
        {"ifMetagenerationMatch", true},
        {"ifMetagenerationNotMatch", true},
        {"projection", true},
        {"fields", true},
        /* These change who pays or how the answer is printed, not what it says. */
        {"userProject", true},
        {"prettyPrint", true},
        {"access_token", false},
        {"key", true},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (!h2o_memis(p->name.base, p->name.len, known[i].name, strlen(known[i].name)))
            continue;
        if (known[i].json_only && out->flavour != CACHE_FLAVOUR_JSON)
            return false;
        if (h2o_memis(p->name.base, p->name.len, H2O_STRLIT("alt"))) {
            if (h2o_memis(p->value.base, p->value.len, H2O_STRLIT("media")))
                out->kind = CACHE_READ_MEDIA;
            else if (!h2o_memis(p->value.base, p->value.len, H2O_STRLIT("json")))
                return false;
        }
        /* noAcl is the default for object GETs; "full" adds ACLs the cache does not keep. */
        if (h2o_memis(p->name.base, p->name.len, H2O_STRLIT("projection")))
            return h2o_memis(p->value.base, p->value.len, H2O_STRLIT("noAcl"));
        /* A partial resource: media ignores it, a metadata read passes through (checked after the loop). */
        return true;
    }
    return false;
}

static bool parse_uint(const char *s, size_t len, uint64_t *out)
{
    int64_t v;
    if (!target_parse_int64(s, len, &v))
        return false;
    *out = (uint64_t)v;
    return true;
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
    range->present = true;
    if (first_len == 0) {
        range->suffix = true;
        range->first = 0;
        return parse_uint(dash + 1, last_len, &range->last) && range->last != 0;
    }
    if (!parse_uint(s, first_len, &range->first))
        return false;
    if (last_len == 0) {
        range->last = UINT64_MAX;
        return true;
    }
    return parse_uint(dash + 1, last_len, &range->last) && range->last >= range->first;
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

static bool accepts_gzip(h2o_iovec_t v)
{
    const char *s = v.base, *end = v.base + v.len;
    for (const char *p = s; end - p >= 4; p++) {
        if ((*p | 0x20) != 'g' || !h2o_lcstris(p, 4, H2O_STRLIT("gzip")))
            continue;
        const char *rest = p + 4;
        while (rest < end && *rest == ' ')
            rest++;
        /* "gzip;q=0" refuses it */
        return !(end - rest >= 4 && strncmp(rest, ";q=0", 4) == 0 &&
                 (end - rest == 4 || rest[4] == ',' || (end - rest >= 6 && strncmp(rest + 4, ".0", 2) == 0)));
    }
    return false;
}

static void parse_conditionals(cache_request_t *out, const target_t *t, const request_headers_t *h)
{
    out->if_generation_match = t->numbers.if_generation_match;
    out->if_generation_not_match = t->numbers.if_generation_not_match;
    out->if_metageneration_match = t->numbers.if_metageneration_match;
    out->if_metageneration_not_match = t->numbers.if_metageneration_not_match;
    out->if_none_match = h->if_none_match;
    out->if_match = h->if_match;
    out->if_range = h->if_range;
    out->if_modified_since =
        h->if_modified_since.base != NULL ? cache_parse_http_date(h->if_modified_since.base, h->if_modified_since.len) : -1;
    out->if_unmodified_since = h->if_unmodified_since.base != NULL
                                   ? cache_parse_http_date(h->if_unmodified_since.base, h->if_unmodified_since.len)
                                   : -1;
    out->accepts_gzip = h->accept_encoding.base != NULL && accepts_gzip(h->accept_encoding);
}

/* The XML API's precondition headers: an int64 or a 400, like the JSON API's parameters. */
static bool parse_xml_preconditions(cache_request_t *out, const request_headers_t *h, const char **invalid)
{
    const struct {
        const h2o_iovec_t *value;
        int64_t *into;
    } headers[] = {{&h->if_generation_match, &out->if_generation_match},
                   {&h->if_metageneration_match, &out->if_metageneration_match}};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        const h2o_iovec_t *v = headers[i].value;
        if (v->base != NULL && !target_parse_int64(v->base, v->len, headers[i].into)) {
            *invalid = "Invalid value for a precondition header: it must be a 64-bit integer.";
            return false;
        }
    }
    return true;
}

/*
 * Customer-supplied encryption keys: upstream decrypts with the key the
 * request carries, and asks for it again on every read. Bytes it decrypted
 * must never be served to a read that does not carry the key, so such reads
 * are never cached (they pass through).
 */
bool cache_request_carries_encryption_key(const h2o_req_t *req)
{
    request_headers_t headers;
    request_headers_scan(&headers, &req->headers);
    return headers.encryption_key;
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

void cache_request_parse(cache_request_t *out, const target_t *t, const h2o_req_t *req, const request_headers_t *headers,
                         const char **invalid)
{
    init_request(out);
    *invalid = NULL;
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    out->head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if ((!get && !out->head) || headers->encryption_key)
        return;
    route_api_t api = t->route.api;
    if (api == ROUTE_XML)
        out->flavour = CACHE_FLAVOUR_XML;
    else if (api == ROUTE_JSON || api == ROUTE_DOWNLOAD)
        out->flavour = CACHE_FLAVOUR_JSON;
    else
        return;
    cache_request_t parsed = *out;
    parsed.kind = api == ROUTE_JSON ? CACHE_READ_METADATA : CACHE_READ_MEDIA;
    parse_conditionals(&parsed, t, headers);
    if (api == ROUTE_XML && !parse_xml_preconditions(&parsed, headers, invalid))
        return;
    /* One object, named in the path; no sub-resource, no repeated parameter. */
    if (t->object == NULL || t->object_suffix.len != 0 || t->repeated)
        return;
    bool has_fields = false;
    for (size_t i = 0; i < t->num_params; i++) {
        if (!param_understood(&t->params[i], &parsed))
            return;
        has_fields = has_fields || h2o_memis(t->params[i].name.base, t->params[i].name.len, H2O_STRLIT("fields"));
    }
    h2o_iovec_t range = headers->range;
    if (range.base != NULL && !parse_range(&parsed.range, range.base, range.len))
        return;
    /* JSON metadata GETs take no Range and no partial response; a HEAD of the JSON API is not a GCS read. */
    if (parsed.kind == CACHE_READ_METADATA && (has_fields || parsed.range.present || parsed.head))
        return;
    parsed.bucket = t->bucket;
    parsed.name = t->object;
    parsed.generation = t->numbers.generation;
    *out = parsed;
}
