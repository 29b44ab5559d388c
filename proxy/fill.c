/*
 * fill.c - chunk assembly between an upstream body and the store.
 */
#include "fill.h"

#include <stdlib.h>
#include <string.h>

bool fill_start(fill_t *fill, cache_t *cache, const store_key_t *key, const store_meta_t *meta, uint64_t start,
                bool leader)
{
    memset(fill, 0, sizeof(*fill));
    if (start % STORE_CHUNK_SIZE != 0 || (fill->chunk = malloc(STORE_CHUNK_SIZE)) == NULL)
        return false;
    if (store_fill_begin(cache->store, key, meta) != STORE_OK) {
        free(fill->chunk);
        fill->chunk = NULL;
        return false;
    }
    fill->cache = cache;
    fill->key = *key;
    fill->generation = meta->generation;
    fill->size = meta->size;
    fill->offset = start;
    fill->active = true;
    fill->leader = leader;
    return true;
}

static void put_chunk(fill_t *fill)
{
    uint32_t index = (uint32_t)((fill->offset - fill->chunk_len) / STORE_CHUNK_SIZE);
    if (store_chunk_put(fill->cache->store, &fill->key, fill->generation, index, fill->chunk, fill->chunk_len) !=
        STORE_OK) {
        /* The writer is behind: keep serving, stop caching this object. */
        fill->active = false;
        return;
    }
    fill->chunks_put++;
    fill->chunk_len = 0;
}

void fill_feed(fill_t *fill, const char *data, size_t len)
{
    while (fill->active && len != 0) {
        size_t room = STORE_CHUNK_SIZE - fill->chunk_len, n = len < room ? len : room;
        memcpy(fill->chunk + fill->chunk_len, data, n);
        fill->chunk_len += n;
        fill->offset += n;
        data += n;
        len -= n;
        if (fill->chunk_len == STORE_CHUNK_SIZE)
            put_chunk(fill);
    }
}

void fill_finish(fill_t *fill, bool success)
{
    if (fill->chunk == NULL)
        return;
    /* Only the object's last chunk may be short, and only when the body reached the end. */
    if (success && fill->active && fill->chunk_len != 0 && fill->offset == fill->size)
        put_chunk(fill);
    if (!success && fill->cache != NULL)
        store_invalidate(fill->cache->store, &fill->key);
    if (fill->leader)
        cache_fill_end(fill->cache, &fill->key, success && fill->active);
    free(fill->chunk);
    fill->chunk = NULL;
    fill->active = false;
}
