/*
 * invalidate.c - dropping a cached object: from the store (readers stop
 * seeing it at once), from the records noted, and from the registry of
 * fills, whose running fills store nothing more. The epoch it bumps lets a
 * fill whose request went out before tell that its answer may be stale.
 */
#include "fetch.h"
#include "invalidate.h"
#include "state.h"

void cache_invalidate(cache_t *cache, const store_key_t *key)
{
    cache_epoch_bump(cache, key);
    store_invalidate(cache->store, key);
    cache_record_forget(cache, key);
    /* Fills of the old object keep serving their readers, but nobody new finds them, and they store nothing more. */
    fetch_registry_forget(cache, key);
}
