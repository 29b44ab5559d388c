/*
 * entry.c - what an upstream response says about a cached object: a media
 * response head becomes an entry (the store's metadata and the record kept
 * with it), a 304 updates one, a metadata GET records the JSON resource.
 *
 * The record holds per-API views (the headers each API's media response
 * carried) and the JSON resource; every merge starts from the newest record
 * of the same generation, so views filled one after another all survive.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "entry.h"
#include "state.h"

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static int64_t header_int64(const exchange_t *x, const char *name)
{
    const char *v = exchange_header(x, name);
    int64_t n;
    return v != NULL && target_parse_int64(v, strlen(v), &n) ? n : -1;
}

/* x-goog-hash may come once with both values or once per value. */
static void parse_hashes(const exchange_t *x, store_meta_t *meta)
{
    const h2o_headers_t *headers = exchange_headers(x);
    for (ssize_t i = -1; (i = h2o_find_header_by_str(headers, H2O_STRLIT("x-goog-hash"), i)) != -1;) {
        const h2o_iovec_t *v = &headers->entries[i].value;
        for (const char *p = v->base, *end = v->base + v->len; p < end;) {
            while (p < end && (*p == ' ' || *p == ','))
                p++;
            const char *stop = memchr(p, ',', (size_t)(end - p));
            if (stop == NULL)
                stop = end;
            if (stop - p > 7 && strncmp(p, "crc32c=", 7) == 0 && meta->crc32c == NULL)
                meta->crc32c = strndup(p + 7, (size_t)(stop - p - 7));
            else if (stop - p > 4 && strncmp(p, "md5=", 4) == 0 && meta->md5 == NULL)
                meta->md5 = strndup(p + 4, (size_t)(stop - p - 4));
            p = stop;
        }
    }
}

/* "bytes A-B/T" */
static bool parse_content_range(const char *v, uint64_t *first, uint64_t *total)
{
    unsigned long long a, b, t;
    if (v == NULL || sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) != 3 || b < a || b >= t)
        return false;
    *first = a, *total = t;
    return true;
}

/*
 * What is cached of this generation already: the newest record, noted or
 * committed, so other views survive a merge, and the owner, whom other
 * callers' reads never replace. Either may be NULL; caller frees both.
 */
static void existing_entry(cache_t *cache, const store_key_t *key, int64_t generation, char **record, char **owner)
{
    store_meta_t stored;
    const char *committed = NULL;
    bool have = store_meta_get(cache->store, key, &stored) == STORE_OK;
    *owner = NULL;
    if (have && stored.generation == generation) {
        committed = stored.resource_json;
        if (stored.owner != NULL)
            *owner = strdup(stored.owner);
    }
    *record = cache_record_latest(cache, key, generation, committed);
    if (have)
        store_meta_free(&stored);
}

/* The record text with "public" set when the caller was anonymous; takes text. */
static char *publicised(char *text, bool make_public)
{
    if (!make_public || text == NULL)
        return text;
    char *marked = cache_record_with_public(text);
    free(text);
    return marked;
}

/* The body's size and where it starts; NULL when they are known well enough to store it, else why not. */
static const char *media_extent(const exchange_t *x, store_meta_t *meta, uint64_t *start)
{
    const char *stored_encoding = exchange_header(x, "x-goog-stored-content-encoding");
    bool stored_gzip = stored_encoding != NULL && strcasecmp(stored_encoding, "gzip") == 0;
    bool sent_gzip = meta->content_encoding != NULL && strcasecmp(meta->content_encoding, "gzip") == 0;
    if (stored_gzip != sent_gzip)
        return "decompressive transcoding: these are not the stored bytes";
    int64_t stored_length = header_int64(x, "x-goog-stored-content-length");
    uint64_t length = exchange_content_length(x);
    *start = 0;
    if (exchange_status(x) == 206) {
        if (!parse_content_range(exchange_header(x, "content-range"), start, &meta->size))
            return "a 206 without a usable Content-Range";
    } else if (length != UINT64_MAX) {
        meta->size = length;
    } else {
        /* No length: the stored length says it, or the body's end will. */
        meta->size = stored_length >= 0 ? (uint64_t)stored_length : STORE_SIZE_UNKNOWN;
    }
    if (stored_length >= 0 && (uint64_t)stored_length != meta->size)
        return "the stored length differs from the body's";
    if (*start % STORE_CHUNK_SIZE != 0)
        return "a body that starts inside a chunk";
    return NULL;
}

const char *entry_from_media_head(cache_t *cache, const exchange_t *x, const entry_source_t *src, store_meta_t *meta,
                                  uint64_t *start)
{
    const conf_t *conf = cache->conf;
    memset(meta, 0, sizeof(*meta));
    meta->generation = header_int64(x, "x-goog-generation");
    meta->metageneration = header_int64(x, "x-goog-metageneration");
    if (meta->generation < 0)
        return "no generation";
    if (src->pinned_generation >= 0 && meta->generation != src->pinned_generation)
        return "another generation than the one asked for";
    meta->content_encoding = dup_or_null(exchange_header(x, "content-encoding"));
    const char *why = media_extent(x, meta, start);
    if (why == NULL && meta->size != STORE_SIZE_UNKNOWN && meta->size > conf->cache.max_object_size)
        why = "larger than cache.max_object_size";
    const char *cache_control = exchange_header(x, "cache-control");
    if (why == NULL && conf->cache.honor_no_store && cache_control != NULL &&
        (strcasestr(cache_control, "no-store") != NULL || strcasestr(cache_control, "private") != NULL))
        why = "marked no-store or private (cache.honor_no_store)";
    json_t *headers = why == NULL ? cache_capture_headers(exchange_headers(x)) : NULL;
    if (why == NULL && headers == NULL)
        why = "out of memory";
    if (why != NULL) {
        store_meta_free(meta);
        return why;
    }
    const char *etag = exchange_header(x, "etag"); /* may be absent: the generation validates then */
    char *existing, *owner;
    existing_entry(cache, src->key, meta->generation, &existing, &owner);
    meta->resource_json =
        publicised(cache_record_merge(existing, src->flavour, true, etag, headers, NULL, NULL), src->anonymous);
    free(existing);
    json_decref(headers);
    meta->bucket = strdup(src->bucket);
    meta->name = strdup(src->name);
    meta->etag = dup_or_null(etag);
    meta->content_type = dup_or_null(exchange_header(x, "content-type"));
    meta->cache_control = dup_or_null(cache_control);
    meta->content_disposition = dup_or_null(exchange_header(x, "content-disposition"));
    meta->content_language = dup_or_null(exchange_header(x, "content-language"));
    meta->last_modified = dup_or_null(exchange_header(x, "last-modified"));
    meta->owner = owner != NULL ? owner : strdup(src->caller);
    meta->fill_time = worker_unix_ms();
    parse_hashes(x, meta);
    if (meta->resource_json == NULL || meta->bucket == NULL || meta->name == NULL || meta->owner == NULL) {
        store_meta_free(meta);
        return "out of memory";
    }
    return NULL;
}

/* --- 304 --- */

/* Replaces, in a view's [name, value] list, every header the 304 carries (RFC 9111 4.3.4). */
static void update_view(json_t *view, json_t *fresh)
{
    json_t *old = json_object_get(view, "headers");
    if (!json_is_array(old))
        return;
    size_t i, j;
    json_t *pair, *kept = json_array();
    if (kept == NULL)
        return;
    json_array_foreach(old, i, pair)
    {
        const char *name = json_string_value(json_array_get(pair, 0));
        bool replaced = false;
        json_t *f;
        json_array_foreach(fresh, j, f)
            replaced = replaced || (name != NULL && strcasecmp(name, json_string_value(json_array_get(f, 0))) == 0);
        if (!replaced)
            json_array_append(kept, pair);
    }
    json_array_extend(kept, fresh);
    json_object_set_new(view, "headers", kept);
}

/* The record with the view of flavour updated from a 304's headers; NULL when it cannot be parsed. */
static char *record_after_304(const char *record, cache_flavour_t flavour, const exchange_t *x)
{
    json_t *root = record != NULL ? json_loads(record, 0, NULL) : NULL;
    json_t *view = json_object_get(root, flavour == CACHE_FLAVOUR_JSON ? "json" : "xml");
    json_t *fresh = cache_capture_headers(exchange_headers(x));
    char *text = NULL;
    if (json_is_object(view) && fresh != NULL) {
        update_view(view, fresh);
        const char *etag = exchange_header(x, "etag");
        if (etag != NULL)
            json_object_set_new(view, "etag", json_string(etag));
        text = json_dumps(root, JSON_COMPACT);
    }
    json_decref(fresh);
    json_decref(root);
    return text;
}

static void replace_string(store_meta_t *meta, char **field, const char *value)
{
    char *copy;
    if (value == NULL || (copy = strdup(value)) == NULL)
        return;
    store_meta_set_string(meta, field, copy);
}

/* Whether the 304 carries a replayed header the view lacks or holds with another value. */
static bool news_in_304(const record_view_t *view, const exchange_t *x)
{
    const h2o_headers_t *headers = exchange_headers(x);
    for (size_t i = 0; i != headers->size; i++) {
        const h2o_header_t *h = &headers->entries[i];
        if (!cache_header_replayed(h->name))
            continue;
        bool same = false;
        for (size_t j = 0; j < view->num_headers && !same; j++)
            same = h2o_lcstris(view->headers[j].name.base, view->headers[j].name.len, h->name->base, h->name->len) &&
                   h2o_memis(view->headers[j].value.base, view->headers[j].value.len, h->value.base, h->value.len);
        if (!same)
            return true;
    }
    return false;
}

/*
 * The metageneration a view's headers were filled at (its x-goog-metageneration), else the entry's. An
 * entry refilled by one API after a metadata change keeps the other API's view from before it, until that
 * API's next read: its 304 must then count as a change, though the entry already has the new metageneration.
 */
static int64_t view_metageneration(const record_view_t *view, int64_t entry_metageneration)
{
    for (size_t i = 0; i < view->num_headers; i++) {
        const record_header_t *h = &view->headers[i];
        if (!h2o_lcstris(h->name.base, h->name.len, H2O_STRLIT("x-goog-metageneration")))
            continue;
        char text[24];
        int64_t mg;
        snprintf(text, sizeof(text), "%.*s", (int)(h->value.len < 23 ? h->value.len : 23), h->value.base);
        return sscanf(text, "%" SCNd64, &mg) == 1 ? mg : entry_metageneration;
    }
    return entry_metageneration;
}

bool entry_update_from_304(cache_t *cache, const store_key_t *key, cache_flavour_t flavour, store_meta_t *meta,
                           const record_view_t *view, const exchange_t *x, bool restart_window)
{
    int64_t metageneration = header_int64(x, "x-goog-metageneration");
    bool changed = metageneration >= 0 && metageneration != view_metageneration(view, meta->metageneration);
    if (!changed && !news_in_304(view, x)) {
        /* The common case, every hit under "always": no JSON work, and no write unless a ttl window restarts. */
        meta->fill_time = worker_unix_ms();
        if (restart_window)
            store_meta_update(cache->store, key, meta);
        return false;
    }
    /* From the newest record of this generation: another view may have been filled since this entry was read. */
    char *latest = cache_record_latest(cache, key, meta->generation, meta->resource_json);
    char *record = record_after_304(latest, flavour, x);
    free(latest);
    if (record != NULL)
        store_meta_set_string(meta, &meta->resource_json, record);
    if (metageneration >= 0)
        meta->metageneration = metageneration;
    replace_string(meta, &meta->cache_control, exchange_header(x, "cache-control"));
    replace_string(meta, &meta->last_modified, exchange_header(x, "last-modified"));
    replace_string(meta, &meta->etag, exchange_header(x, "etag"));
    /* The entry is confirmed: under a ttl policy the window starts again now. */
    meta->fill_time = worker_unix_ms();
    if (store_meta_update(cache->store, key, meta) == STORE_OK && meta->resource_json != NULL)
        cache_record_note(cache, key, meta->generation, meta->resource_json);
    return changed;
}

/* --- metadata GETs --- */

char *entry_http_date_of_rfc3339(const char *s, char *buf, size_t cap)
{
    struct tm tm = {0};
    if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
        return NULL;
    time_t t = timegm(&tm);
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
}

int64_t entry_json_int64(json_t *object, const char *key)
{
    const char *s = json_string_value(json_object_get(object, key));
    int64_t n;
    return s != NULL && target_parse_int64(s, strlen(s), &n) ? n : -1;
}

/* Whether a resource's ACL (a full projection) lets allUsers read it. */
bool entry_acl_grants_all_users(json_t *resource)
{
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(resource, "acl"), i, entry)
    {
        const char *entity = json_string_value(json_object_get(entry, "entity"));
        const char *role = json_string_value(json_object_get(entry, "role"));
        if (entity != NULL && strcmp(entity, "allUsers") == 0 && role != NULL &&
            (strcmp(role, "READER") == 0 || strcmp(role, "OWNER") == 0))
            return true;
    }
    return false;
}

bool entry_record_resource(cache_t *cache, const store_key_t *key, const char *bucket, const char *name,
                           const entry_caller_t *caller, const h2o_headers_t *response_headers, json_t *resource)
{
    store_meta_t meta = {0};
    char date[64];
    meta.bucket = (char *)bucket;
    meta.name = (char *)name;
    meta.generation = entry_json_int64(resource, "generation");
    meta.metageneration = entry_json_int64(resource, "metageneration");
    meta.size = (uint64_t)entry_json_int64(resource, "size");
    meta.content_type = (char *)json_string_value(json_object_get(resource, "contentType"));
    meta.content_encoding = (char *)json_string_value(json_object_get(resource, "contentEncoding"));
    meta.cache_control = (char *)json_string_value(json_object_get(resource, "cacheControl"));
    meta.content_disposition = (char *)json_string_value(json_object_get(resource, "contentDisposition"));
    meta.content_language = (char *)json_string_value(json_object_get(resource, "contentLanguage"));
    meta.crc32c = (char *)json_string_value(json_object_get(resource, "crc32c"));
    meta.md5 = (char *)json_string_value(json_object_get(resource, "md5Hash"));
    meta.last_modified = entry_http_date_of_rfc3339(json_string_value(json_object_get(resource, "updated")), date,
                                              sizeof(date));
    meta.fill_time = worker_unix_ms();
    if (meta.generation < 0 || entry_json_int64(resource, "size") < 0 || meta.size > cache->conf->cache.max_object_size)
        return false;
    char *existing, *owner;
    existing_entry(cache, key, meta.generation, &existing, &owner);
    meta.owner = owner != NULL ? owner : (char *)caller->name;
    json_t *headers = cache_capture_headers(response_headers);
    char *record =
        headers != NULL ? cache_record_merge(existing, CACHE_FLAVOUR_JSON, false, NULL, NULL, resource, headers) : NULL;
    record = publicised(record, caller->anonymous || entry_acl_grants_all_users(resource));
    json_decref(headers);
    if (record != NULL) {
        meta.resource_json = record;
        int rc = existing != NULL ? store_meta_update(cache->store, key, &meta) : store_fill_begin(cache->store, key, &meta);
        if (rc == STORE_OK)
            cache_record_note(cache, key, meta.generation, record);
        free(record);
    }
    free(existing);
    bool owns = caller->name[0] != '\0' && strcmp(meta.owner, caller->name) == 0;
    free(owner);
    return owns;
}

void entry_mark_public(cache_t *cache, const store_key_t *key, store_meta_t *meta)
{
    char *latest = cache_record_latest(cache, key, meta->generation, meta->resource_json);
    char *marked = latest != NULL ? cache_record_with_public(latest) : NULL;
    free(latest);
    if (marked == NULL)
        return;
    store_meta_set_string(meta, &meta->resource_json, marked);
    if (store_meta_update(cache->store, key, meta) == STORE_OK)
        cache_record_note(cache, key, meta->generation, marked);
}
