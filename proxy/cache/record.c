/*
 * record.c - parsed records and the per-worker cache of them (see record.h).
 *
 * A parsed record is one allocation plus its arena: the parse walks the JSON
 * twice, once to measure and once to copy, so every string a hit points at
 * lives in one block that the record owns, and nothing of jansson's survives
 * the parse.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "record.h"

/* Bump allocation in two passes: with base NULL it only counts. */
typedef struct arena {
    char *base;
    size_t used;
} arena_t;

static void *arena_take(arena_t *arena, size_t len, size_t align)
{
    arena->used = (arena->used + align - 1) / align * align;
    void *p = arena->base != NULL ? arena->base + arena->used : NULL;
    arena->used += len;
    return p;
}

static h2o_iovec_t arena_string(arena_t *arena, const char *s, size_t len)
{
    char *p = arena_take(arena, len + 1, 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return h2o_iovec_init(p, len);
}

static bool is_payload_header(const char *name)
{
    return strcasecmp(name, "content-type") == 0 || strcasecmp(name, "content-encoding") == 0;
}

/* headers: a JSON array of [name, value]; pairs that are not two strings are skipped. */
static void view_build(arena_t *arena, record_view_t *view, const char *etag, json_t *headers)
{
    size_t count = 0, n = 0, i;
    json_t *pair;
    json_array_foreach(headers, i, pair)
        if (json_is_string(json_array_get(pair, 0)) && json_is_string(json_array_get(pair, 1)))
            count++;
    record_header_t *out = arena_take(arena, count * sizeof(*out), _Alignof(record_header_t));
    h2o_iovec_t tag = etag != NULL ? arena_string(arena, etag, strlen(etag)) : h2o_iovec_init(NULL, 0);
    json_array_foreach(headers, i, pair)
    {
        json_t *name = json_array_get(pair, 0), *value = json_array_get(pair, 1);
        if (!json_is_string(name) || !json_is_string(value))
            continue;
        h2o_iovec_t name_copy = arena_string(arena, json_string_value(name), json_string_length(name));
        h2o_iovec_t value_copy = arena_string(arena, json_string_value(value), json_string_length(value));
        if (out == NULL)
            continue; /* measuring */
        out[n++] = (record_header_t){.token = h2o_lookup_token(name_copy.base, name_copy.len),
                                     .name = name_copy,
                                     .value = value_copy,
                                     .describes_payload = is_payload_header(name_copy.base)};
    }
    if (arena->base != NULL)
        *view = (record_view_t){.present = true, .etag = tag.base, .headers = out, .num_headers = count};
}

static void media_build(arena_t *arena, record_t *record, json_t *root, cache_flavour_t flavour)
{
    json_t *view = json_object_get(root, flavour == CACHE_FLAVOUR_JSON ? "json" : "xml");
    const char *etag = json_string_value(json_object_get(view, "etag")); /* absent: upstream sent no ETag */
    json_t *headers = json_object_get(view, "headers");
    if (json_is_array(headers))
        view_build(arena, &record->media[flavour], etag, headers);
}

static void resource_build(arena_t *arena, record_t *record, json_t *root, const char *resource_text)
{
    json_t *headers = json_object_get(root, "resource_headers");
    const char *etag = json_string_value(json_object_get(json_object_get(root, "resource"), "etag"));
    if (resource_text == NULL || etag == NULL || !json_is_array(headers))
        return;
    view_build(arena, &record->resource, etag, headers);
    h2o_iovec_t text = arena_string(arena, resource_text, strlen(resource_text));
    if (arena->base != NULL)
        record->resource_text = text;
}

static void record_build(arena_t *arena, record_t *record, json_t *root, const char *resource_text, const char *text)
{
    media_build(arena, record, root, CACHE_FLAVOUR_JSON);
    media_build(arena, record, root, CACHE_FLAVOUR_XML);
    resource_build(arena, record, root, resource_text);
    record->is_public = json_is_true(json_object_get(root, "public"));
    h2o_iovec_t copy = arena_string(arena, text, strlen(text));
    if (arena->base != NULL) {
        record->text = copy.base;
        record->text_len = copy.len;
    }
}

record_t *record_parse(const store_key_t *key, int64_t generation, const char *text)
{
    json_t *root = text != NULL ? json_loads(text, 0, NULL) : NULL;
    record_t *record = NULL;
    char *resource_text = NULL;
    if (!json_is_object(root))
        goto done;
    json_t *resource = json_object_get(root, "resource");
    if (resource != NULL &&
        (resource_text = json_dumps(resource, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17))) == NULL)
        goto done;
    arena_t arena = {NULL, 0};
    record_t measured = {0};
    record_build(&arena, &measured, root, resource_text, text);
    if ((record = calloc(1, sizeof(*record))) == NULL || (arena.base = malloc(arena.used)) == NULL) {
        free(record);
        record = NULL;
        goto done;
    }
    arena.used = 0;
    record_build(&arena, record, root, resource_text, text);
    record->arena = arena.base;
    record->footprint = sizeof(*record) + arena.used;
    record->refs = 1;
    record->key = *key;
    record->generation = generation;
done:
    free(resource_text);
    json_decref(root);
    return record;
}

void record_retain(record_t *record)
{
    record->refs++;
}

void record_release(record_t *record)
{
    if (record == NULL || --record->refs != 0)
        return;
    free(record->arena);
    free(record);
}

const record_view_t *record_media_view(const record_t *record, cache_flavour_t flavour)
{
    return record->media[flavour].present ? &record->media[flavour] : NULL;
}

bool record_has_resource(const record_t *record)
{
    return record->resource_text.base != NULL;
}

void record_add_headers(h2o_req_t *req, const record_view_t *view, bool not_modified)
{
    /* Room for them all at once, and for X-Cache and a batch's header after: one allocation, not one per doubling. */
    h2o_headers_t *headers = &req->res.headers;
    h2o_vector_reserve(&req->pool, headers, headers->size + view->num_headers + 2);
    for (size_t i = 0; i < view->num_headers; i++) {
        const record_header_t *h = &view->headers[i];
        if (not_modified && h->describes_payload)
            continue;
        /*
         * What h2o_add_header and h2o_add_header_by_str store, without the
         * latter's pool allocation for each name (480-850 instructions a hit
         * between them): the name is the token's, or the record's own, and
         * the hit holds the record until h2o is done with the response.
         */
        h2o_header_t *slot = headers->entries + headers->size++;
        slot->name = h->token != NULL ? (h2o_iovec_t *)&h->token->buf : (h2o_iovec_t *)&h->name;
        slot->orig_name = NULL;
        slot->value = h->value;
    }
}

/* --- the per-worker cache --- */

static record_t **slot_of(record_cache_t *cache, const store_key_t *key)
{
    uint32_t h;
    memcpy(&h, key->hash, sizeof(h)); /* the key is already a SHA-256 */
    return &cache->slots[h % RECORD_CACHE_SLOTS];
}

static bool parsed_from(const record_t *record, const store_key_t *key, int64_t generation, const char *text)
{
    return record->generation == generation && memcmp(record->key.hash, key->hash, sizeof(key->hash)) == 0 &&
           strncmp(record->text, text, record->text_len + 1) == 0;
}

static void slot_clear(record_cache_t *cache, record_t **slot)
{
    if (*slot == NULL)
        return;
    cache->bytes -= (*slot)->footprint;
    record_release(*slot);
    *slot = NULL;
}

/* Over budget, drop entries round-robin: without recency kept per hit, any victim is as good, and this one is cheap. */
static void enforce_budget(record_cache_t *cache, const record_t *keep)
{
    while (cache->bytes > RECORD_CACHE_BYTES) {
        record_t **slot = &cache->slots[cache->sweep];
        cache->sweep = (cache->sweep + 1) % RECORD_CACHE_SLOTS;
        if (*slot != keep)
            slot_clear(cache, slot);
        else if (cache->bytes == keep->footprint)
            break; /* a single record over the whole budget stays until replaced */
    }
}

record_t *record_cache_get(record_cache_t *cache, const store_key_t *key, int64_t generation, const char *text)
{
    if (text == NULL)
        return NULL;
    record_t **slot = slot_of(cache, key);
    if (*slot != NULL && parsed_from(*slot, key, generation, text)) {
        record_retain(*slot);
        return *slot;
    }
    record_t *record = record_parse(key, generation, text);
    if (record == NULL)
        return NULL;
    slot_clear(cache, slot);
    record_retain(record);
    *slot = record;
    cache->bytes += record->footprint;
    enforce_budget(cache, record);
    return record;
}

void record_cache_clear(record_cache_t *cache)
{
    for (size_t i = 0; i < RECORD_CACHE_SLOTS; i++)
        slot_clear(cache, &cache->slots[i]);
}
