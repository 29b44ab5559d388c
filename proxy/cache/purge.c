/*
 * purge.c - dropping every cached object a filter names: by owner, bucket,
 * prefix, object, or all; and, by the same scan, what each owner holds.
 *
 * The store is scanned once (one read transaction that only collects keys),
 * then each object is invalidated: hidden from readers at once, its fills
 * told to store nothing more, its removal queued to the writer. Serving goes
 * on meanwhile. Fills in flight whose object the store does not hold yet
 * are found in the registry and invalidated too, so a fill that started
 * before the purge cannot bring its object back.
 */
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "invalidate.h"
#include "state.h"

/* Fills in flight looked at per purge: the registry never holds many more. */
#define MAX_PURGED_FILLS 4096

typedef struct purge_scan {
    const cache_purge_filter_t *filter;
    store_key_t *keys;
    size_t count, cap;
    uint64_t bytes;
    bool out_of_memory;
} purge_scan_t;

static bool matches(const cache_purge_filter_t *f, const char *bucket, const char *name, const char *owner)
{
    if (f->owner != NULL && (owner == NULL || strcmp(owner, f->owner) != 0))
        return false;
    if (f->bucket != NULL && (bucket == NULL || strcmp(bucket, f->bucket) != 0))
        return false;
    if (f->name != NULL && (name == NULL || strcmp(name, f->name) != 0))
        return false;
    return f->prefix == NULL || (name != NULL && strncmp(name, f->prefix, strlen(f->prefix)) == 0);
}

static bool collect(void *ctx, const store_key_t *key, const store_meta_t *meta)
{
    purge_scan_t *scan = ctx;
    if (!matches(scan->filter, meta->bucket, meta->name, meta->owner))
        return true;
    if (scan->count == scan->cap) {
        size_t cap = scan->cap != 0 ? scan->cap * 2 : 256;
        store_key_t *grown = realloc(scan->keys, cap * sizeof(*grown));
        if (grown == NULL) {
            scan->out_of_memory = true;
            return false;
        }
        scan->keys = grown;
        scan->cap = cap;
    }
    scan->keys[scan->count++] = *key;
    scan->bytes += meta->size != STORE_SIZE_UNKNOWN ? meta->size : 0;
    return true;
}

static bool fill_matches(void *ctx, const char *bucket, const char *name, const char *owner)
{
    return matches(ctx, bucket, name, owner);
}

int cache_purge(cache_t *cache, const cache_purge_filter_t *filter, uint64_t *objects, uint64_t *bytes)
{
    purge_scan_t scan = {.filter = filter};
    *objects = *bytes = 0;
    int rc = store_scan(cache->store, collect, &scan);
    if (rc == STORE_OK && scan.out_of_memory)
        rc = STORE_ERROR;
    for (size_t i = 0; i < scan.count; i++)
        cache_invalidate(cache, &scan.keys[i]);
    *objects = scan.count;
    *bytes = scan.bytes;
    free(scan.keys);
    store_key_t *fills = malloc(MAX_PURGED_FILLS * sizeof(*fills));
    if (fills == NULL)
        return STORE_ERROR;
    size_t n = fetch_registry_keys_where(cache, fill_matches, (void *)filter, fills, MAX_PURGED_FILLS);
    for (size_t i = 0; i < n; i++)
        cache_invalidate(cache, &fills[i]);
    free(fills);
    return rc;
}

typedef struct owner_scan {
    const char *owner;
    cache_owned_fn fn;
    void *ctx;
} owner_scan_t;

static bool report_owned(void *ctx, const store_key_t *key, const store_meta_t *meta)
{
    owner_scan_t *scan = ctx;
    (void)key;
    if (meta->owner != NULL && meta->owner[0] != '\0' && (scan->owner == NULL || strcmp(meta->owner, scan->owner) == 0))
        scan->fn(scan->ctx, meta->owner, meta->size != STORE_SIZE_UNKNOWN ? meta->size : 0);
    return true;
}

int cache_owned(cache_t *cache, const char *owner, cache_owned_fn fn, void *ctx)
{
    owner_scan_t scan = {.owner = owner, .fn = fn, .ctx = ctx};
    return store_scan(cache->store, report_owned, &scan);
}
