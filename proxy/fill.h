/*
 * fill.h - turns an upstream body into store chunks while it streams.
 *
 * A fill starts at a chunk boundary (larder widens Range requests to chunk
 * boundaries on a miss) and hands the store whole chunks only: the object's
 * last chunk is the one chunk allowed to be short, and only once the body
 * reached the object's end. A fill that fails leaves nothing half-written.
 */
#ifndef LARDER_FILL_H
#define LARDER_FILL_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"

typedef struct fill {
    cache_t *cache;
    store_key_t key;
    int64_t generation;
    uint64_t size;       /* the whole object's size */
    uint64_t offset;     /* absolute offset of the next byte to arrive */
    char *chunk;         /* STORE_CHUNK_SIZE bytes being assembled */
    size_t chunk_len;
    bool active;
    bool leader;         /* registered as the single-flight fill of this object */
    uint64_t chunks_put;
} fill_t;

/*
 * Starts filling the chunks from start (a multiple of STORE_CHUNK_SIZE) on.
 * meta is recorded first (copied). Returns false, with nothing started, when
 * the store cannot take it.
 */
bool fill_start(fill_t *fill, cache_t *cache, const store_key_t *key, const store_meta_t *meta, uint64_t start,
                bool leader);
/* Feeds body bytes in order. Stops filling (silently) when the store is busy. */
void fill_feed(fill_t *fill, const char *data, size_t len);
/* Ends the fill: on success the last short chunk is stored; on failure the object is dropped. */
void fill_finish(fill_t *fill, bool success);

#endif
