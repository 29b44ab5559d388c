/*
 * target.c - parses a request target once, and builds upstream URLs from the
 * parsed values (see target.h for why the two belong together).
 */
#include "target.h"

#include "byte_buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parameters whose value is a generation or metageneration number: GCS refuses anything but an int64. */
static const struct {
    const char *name;
    size_t offset;
    bool xml; /* the XML API knows it too */
} number_params[] = {
    {"generation", offsetof(target_numbers_t, generation), true},
    {"ifGenerationMatch", offsetof(target_numbers_t, if_generation_match), false},
    {"ifGenerationNotMatch", offsetof(target_numbers_t, if_generation_not_match), false},
    {"ifMetagenerationMatch", offsetof(target_numbers_t, if_metageneration_match), false},
    {"ifMetagenerationNotMatch", offsetof(target_numbers_t, if_metageneration_not_match), false},
};

/* Parameters that change what a read returns: the cache cannot guess which of two values upstream would use. */
static const char *const cache_params[] = {"alt", "generation", "ifGenerationMatch", "ifGenerationNotMatch",
                                           "ifMetagenerationMatch", "ifMetagenerationNotMatch", "projection",
                                           "fields"};

static bool iov_is(h2o_iovec_t v, const char *s)
{
    return h2o_memis(v.base, v.len, s, strlen(s));
}

bool target_parse_int64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits never overflow a uint64 */
    }
    if (v > (uint64_t)INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

int target_parse_status_line(const char *line, size_t len)
{
    const char *sp = memchr(line, ' ', len);
    if (sp == NULL || line + len - sp < 4)
        return 0;
    int status = 0;
    for (int i = 1; i <= 3; i++) {
        if (sp[i] < '0' || sp[i] > '9')
            return 0;
        status = status * 10 + (sp[i] - '0');
    }
    return status;
}

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

char *target_percent_decode(h2o_mem_pool_t *pool, const char *src, size_t len)
{
    char *out = h2o_mem_alloc_pool(pool, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_value(src[i + 1]) : -1, lo = hi >= 0 ? hex_value(src[i + 2]) : -1;
            if (lo < 0)
                return NULL;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0')
            return NULL;
        out[n++] = c;
    }
    out[n] = '\0';
    return out;
}

/* Bytes no request target may carry raw: a fragment mark, controls, space. */
static const char *refuse_raw_bytes(const char *path, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '#')
            return "The request target contains '#': a fragment is not part of a request (send '#' in a name as %23).";
        if (c <= 0x20 || c == 0x7f)
            return "The request target contains a control character or a space.";
    }
    return NULL;
}

static bool is_cache_param(h2o_iovec_t name)
{
    for (size_t i = 0; i < sizeof(cache_params) / sizeof(cache_params[0]); i++)
        if (iov_is(name, cache_params[i]))
            return true;
    return false;
}

static void note_number(target_t *t, const target_param_t *p, h2o_mem_pool_t *pool)
{
    bool xml = t->route.api == ROUTE_XML;
    for (size_t i = 0; i < sizeof(number_params) / sizeof(number_params[0]); i++) {
        if (!iov_is(p->name, number_params[i].name) || (xml && !number_params[i].xml))
            continue;
        int64_t *field = (int64_t *)((char *)&t->numbers + number_params[i].offset);
        if (!target_parse_int64(p->value.base, p->value.len, field) && t->invalid == NULL) {
            char *why = h2o_mem_alloc_pool(pool, 96);
            snprintf(why, 96, "Invalid value for parameter %s: it must be a 64-bit integer.", number_params[i].name);
            t->invalid = why;
        }
        return;
    }
}

static const h2o_iovec_t *find_param(const target_t *t, h2o_iovec_t name)
{
    for (size_t i = 0; i < t->num_params; i++)
        if (h2o_memis(t->params[i].name.base, t->params[i].name.len, name.base, name.len))
            return &t->params[i].value;
    return NULL;
}

static void parse_params(target_t *t, h2o_mem_pool_t *pool)
{
    const char *p = t->query.base, *end = t->query.base + t->query.len;
    size_t count = t->query.len != 0 ? 1 : 0;
    for (const char *q = p; q < end; q++)
        count += *q == '&';
    t->params = count != 0 ? h2o_mem_alloc_pool(pool, count * sizeof(*t->params)) : NULL;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *stop = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        target_param_t param = {.name = h2o_iovec_init(p, (size_t)((eq != NULL ? eq : stop) - p)),
                                .value = eq != NULL ? h2o_iovec_init(eq + 1, (size_t)(stop - eq - 1))
                                                    : h2o_iovec_init(stop, 0)};
        if (param.name.len != 0) {
            if (is_cache_param(param.name) && find_param(t, param.name) != NULL)
                t->repeated = true;
            t->params[t->num_params++] = param;
            note_number(t, &param, pool);
        }
        p = stop + 1;
    }
}

const h2o_iovec_t *target_param(const target_t *t, const char *name)
{
    return find_param(t, h2o_iovec_init(name, strlen(name)));
}

/* The object name, decoded; refuses names GCS refuses (bad escapes, CR or LF). */
static char *decode_object(target_t *t, h2o_mem_pool_t *pool, const char *raw, size_t len)
{
    char *name = target_percent_decode(pool, raw, len);
    if (name == NULL || strpbrk(name, "\r\n") != NULL) {
        if (t->invalid == NULL)
            t->invalid = "The object name is not validly encoded, or contains a carriage return or line feed.";
        return NULL;
    }
    return name;
}

static void parse_xml_names(target_t *t, h2o_mem_pool_t *pool)
{
    const route_t *r = &t->route;
    if (r->bucket_len == 0)
        return;
    /* Host names are case-insensitive, bucket names lower-case only. */
    char *bucket = h2o_mem_alloc_pool(pool, r->bucket_len + 1);
    for (size_t i = 0; i < r->bucket_len; i++)
        bucket[i] = h2o_tolower(r->bucket[i]);
    bucket[r->bucket_len] = '\0';
    t->bucket = bucket;
    if (!r->media)
        return;
    const char *name = r->vhost ? t->path.base + 1 : r->bucket + r->bucket_len + 1;
    t->object = decode_object(t, pool, name, (size_t)(t->path.base + t->path.len - name));
}

static void parse_json_names(target_t *t, h2o_mem_pool_t *pool)
{
    static const char json[] = "/storage/v1/b/", download[] = "/download/storage/v1/b/";
    size_t skip = t->route.api == ROUTE_DOWNLOAD ? sizeof(download) - 1 : sizeof(json) - 1;
    const char *path = t->path.base, *end = path + t->path.len;
    if (t->path.len <= skip)
        return;
    const char *bucket = path + skip, *slash = memchr(bucket, '/', (size_t)(end - bucket));
    const char *bucket_end = slash != NULL ? slash : end;
    if (bucket_end == bucket || (t->bucket = target_percent_decode(pool, bucket, (size_t)(bucket_end - bucket))) == NULL)
        return;
    if (slash == NULL || end - slash < 4 || memcmp(slash, "/o/", 3) != 0)
        return;
    const char *name = slash + 3, *name_end = memchr(name, '/', (size_t)(end - name));
    if (name_end == NULL)
        name_end = end;
    if (name_end == name)
        return;
    t->object = decode_object(t, pool, name, (size_t)(name_end - name));
    t->object_suffix = h2o_iovec_init(name_end, (size_t)(end - name_end));
}

void target_parse(target_t *t, h2o_mem_pool_t *pool, const char *path, size_t path_len, const char *host,
                  size_t host_len, const char *vhost_suffix)
{
    memset(t, 0, sizeof(*t));
    t->numbers = (target_numbers_t){-1, -1, -1, -1, -1};
    route_classify(&t->route, path, path_len, host, host_len, vhost_suffix);
    const char *q = memchr(path, '?', path_len);
    t->path = h2o_iovec_init(path, q != NULL ? (size_t)(q - path) : path_len);
    t->query = q != NULL ? h2o_iovec_init(q + 1, path_len - t->path.len - 1) : h2o_iovec_init(path + path_len, 0);
    if ((t->invalid = refuse_raw_bytes(path, path_len)) != NULL)
        return;
    parse_params(t, pool);
    switch (t->route.api) {
    case ROUTE_XML:
        parse_xml_names(t, pool);
        break;
    case ROUTE_JSON:
    case ROUTE_DOWNLOAD:
        parse_json_names(t, pool);
        break;
    default:
        break;
    }
}

/* --- URLs --- */


/* The URL as a malloc'd C string (caller frees), or NULL when building it ran out of memory. */
static char *url_finish(byte_buffer_t *b)
{
    byte_buffer_put(b, "", 1);
    if (b->failed) {
        byte_buffer_dispose(b);
        return NULL;
    }
    return b->base;
}

static void put_str(byte_buffer_t *b, const char *s)
{
    byte_buffer_put(b, s, strlen(s));
}

/* Percent-encodes all but RFC 3986's unreserved characters (and '/' when keep_slash). */
static void put_encoded(byte_buffer_t *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        unsigned char c = *p;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                     c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
        if (plain) {
            byte_buffer_put(b, (const char *)p, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            byte_buffer_put(b, esc, 3);
        }
    }
}

static bool is_precondition(h2o_iovec_t name)
{
    return iov_is(name, "ifGenerationMatch") || iov_is(name, "ifGenerationNotMatch") ||
           iov_is(name, "ifMetagenerationMatch") || iov_is(name, "ifMetagenerationNotMatch");
}

static void put_query(byte_buffer_t *b, const target_t *t, const target_url_edit_t *edit)
{
    bool first = true;
    for (size_t i = 0; i < t->num_params; i++) {
        const target_param_t *p = &t->params[i];
        if (edit != NULL && edit->drop_preconditions && is_precondition(p->name))
            continue;
        byte_buffer_put(b, first ? "?" : "&", 1);
        first = false;
        /* Name and value as the client sent them: validated, and never part of the cache key. */
        byte_buffer_put(b, p->name.base, p->name.len);
        if (p->value.base != p->name.base + p->name.len) {
            byte_buffer_put(b, "=", 1);
            byte_buffer_put(b, p->value.base, p->value.len);
        }
    }
    if (edit != NULL && edit->add_param != NULL) {
        byte_buffer_put(b, first ? "?" : "&", 1);
        put_str(b, edit->add_param);
    }
}

static bool path_names_object(const target_t *t)
{
    return t->object != NULL && (t->route.api == ROUTE_XML || t->route.api == ROUTE_JSON || t->route.api == ROUTE_DOWNLOAD);
}

char *target_upstream_url(const target_t *t, const char *base_url, const target_url_edit_t *edit)
{
    byte_buffer_t b = {0};
    put_str(&b, base_url);
    if (path_names_object(t)) {
        if (t->route.api == ROUTE_XML) {
            byte_buffer_put(&b, "/", 1);
            put_encoded(&b, t->bucket, false);
            byte_buffer_put(&b, "/", 1);
            put_encoded(&b, t->object, true);
        } else {
            put_str(&b, t->route.api == ROUTE_DOWNLOAD ? "/download/storage/v1/b/" : "/storage/v1/b/");
            put_encoded(&b, t->bucket, false);
            byte_buffer_put(&b, "/o/", 3);
            put_encoded(&b, t->object, false);
            byte_buffer_put(&b, t->object_suffix.base, t->object_suffix.len);
        }
    } else {
        /* Nothing cached is keyed on these: the path goes as sent (validated). Virtual-hosted goes path-style. */
        if (t->route.api == ROUTE_XML && t->route.vhost && t->bucket != NULL) {
            byte_buffer_put(&b, "/", 1);
            put_str(&b, t->bucket);
        }
        byte_buffer_put(&b, t->path.base, t->path.len);
    }
    put_query(&b, t, edit);
    return url_finish(&b);
}

char *target_json_object_url(const char *base_url, const char *bucket, const char *object, const char *query)
{
    byte_buffer_t b = {0};
    put_str(&b, base_url);
    put_str(&b, "/storage/v1/b/");
    put_encoded(&b, bucket, false);
    byte_buffer_put(&b, "/o/", 3);
    put_encoded(&b, object, false);
    if (query != NULL && query[0] != '\0') {
        byte_buffer_put(&b, "?", 1);
        put_str(&b, query);
    }
    return url_finish(&b);
}
