/*
 * upload_fill.c - a written object's bytes becoming its entry.
 *
 * The bytes are never fetched back: an upload's are in its request, a
 * resumable or XML multipart upload's in its session (upload_session.c), a
 * copy's or compose's in the store already. Each is a run of segments,
 * read into a local fill (fetch_start_local), which checks them against
 * the crc32c upstream reported before anything is registered, and is then
 * found by reads like any fill until its chunks commit: a read between
 * upstream's answer and the commit follows it rather than asking upstream.
 */
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "invalidate.h"
#include "upload_complete.h"
#include "upload_fill.h"

typedef struct upload_source {
    store_t *store;
    const upload_segment_t *segments;
    size_t count;
    char *scratch; /* the store chunk last read */
    size_t scratch_len;
    const upload_segment_t *scratch_segment;
    uint32_t scratch_index;
} upload_source_t;

static bool segment_read(upload_source_t *s, const upload_segment_t *seg, uint64_t offset, char *dst, size_t n)
{
    if (seg->data != NULL) {
        memcpy(dst, seg->data + offset, n);
        return true;
    }
    offset += seg->offset;
    while (n > 0) {
        uint32_t index = (uint32_t)(offset / STORE_CHUNK_SIZE);
        size_t within = (size_t)(offset % STORE_CHUNK_SIZE);
        if (s->scratch_segment != seg || s->scratch_index != index) {
            if (s->scratch == NULL && (s->scratch = malloc(STORE_CHUNK_SIZE)) == NULL)
                return false;
            ssize_t got = store_chunk_read(s->store, &seg->key, seg->generation, index, s->scratch, STORE_CHUNK_SIZE);
            if (got < 0)
                return false;
            s->scratch_len = (size_t)got;
            s->scratch_segment = seg;
            s->scratch_index = index;
        }
        if (within >= s->scratch_len)
            return false;
        size_t take = s->scratch_len - within < n ? s->scratch_len - within : n;
        memcpy(dst, s->scratch + within, take);
        dst += take, offset += take, n -= take;
    }
    return true;
}

static bool source_read(void *ctx, uint64_t offset, char *dst, size_t len)
{
    upload_source_t *s = ctx;
    for (size_t i = 0; i < s->count && len > 0; i++) {
        const upload_segment_t *seg = &s->segments[i];
        if (offset >= seg->length) {
            offset -= seg->length;
            continue;
        }
        size_t n = seg->length - offset < len ? (size_t)(seg->length - offset) : len;
        if (!segment_read(s, seg, offset, dst, n))
            return false;
        dst += n, len -= n, offset = 0;
    }
    return len == 0;
}

/* Whether a generation newer than this one is cached or being filled: an answer overtaken by a later write. */
static bool overtaken(cache_t *cache, const store_key_t *key, int64_t generation)
{
    store_meta_t stored;
    bool newer = false;
    if (store_meta_get(cache->store, key, &stored) == STORE_OK) {
        newer = stored.generation > generation;
        store_meta_free(&stored);
    }
    fetch_t *filling = fetch_registry_newest(cache, key);
    if (filling != NULL && fetch_meta(filling, &stored)) {
        newer = newer || stored.generation > generation;
        store_meta_free(&stored);
    }
    fetch_release(filling);
    return newer;
}

bool upload_fill_start(const upload_request_t *u, const upload_facts_t *facts, const upload_segment_t *segments,
                       size_t count, store_key_t *made)
{
    store_meta_t meta;
    const char *why = upload_entry_make(u->cache, facts, &meta);
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += segments[i].length;
    if (why == NULL && total != meta.size) {
        why = "the bytes at hand are not the object's size";
        store_meta_free(&meta);
    }
    if (why != NULL) {
        log_msg(LOG_LEVEL_DEBUG, "upload", "%s/%s: not cached: %s", facts->bucket != NULL ? facts->bucket : "?",
                facts->name != NULL ? facts->name : "?", why);
        return false;
    }
    store_key_make(made, meta.bucket, strlen(meta.bucket), meta.name, strlen(meta.name));
    if (overtaken(u->cache, made, meta.generation)) {
        store_meta_free(&meta);
        return true; /* the newer one stays; this answer invalidates nothing */
    }
    cache_invalidate(u->cache, made); /* the old copy goes now; the new one shows once registered */
    upload_source_t source = {.store = u->cache->store, .segments = segments, .count = count};
    for (size_t i = 0; i < count; i++)
        if (segments[i].data == NULL)
            store_pin(u->cache->store, &segments[i].key);
    int64_t generation = meta.generation;
    bool started = fetch_start_local(u->cache, u->worker, made, &meta, source_read, &source);
    if (started && facts->resource == NULL)
        upload_complete_start(u->cache, u->worker, u->authorization, made, facts->bucket, facts->name, generation,
                              facts->owner, u->wait);
    for (size_t i = 0; i < count; i++)
        if (segments[i].data == NULL)
            store_unpin(u->cache->store, &segments[i].key);
    free(source.scratch);
    return true;
}

/* The resource is upstream's whole one (no fields= selection): metadata GETs may be answered from it. */
void upload_facts_from_answer(upload_facts_t *facts, const upload_request_t *u, json_t *resource,
                              const h2o_headers_t *headers, bool whole)
{
    upload_facts_from_resource(facts, resource);
    if (whole && target_param(u->target, "fields") == NULL &&
        json_string_value(json_object_get(resource, "kind")) != NULL) {
        facts->resource = resource;
        facts->resource_headers = headers;
    }
}
