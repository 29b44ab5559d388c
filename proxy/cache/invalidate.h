/*
 * invalidate.h - dropping a cached object (invalidate.c).
 */
#ifndef LARDER_CACHE_INVALIDATE_H
#define LARDER_CACHE_INVALIDATE_H

#include "state.h"

/* Drops the cached object and every fill of it from the registry; fills running are no longer stored. */
void cache_invalidate(cache_t *cache, const store_key_t *key);

#endif
