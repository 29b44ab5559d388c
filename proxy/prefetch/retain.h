/*
 * retain.h - keeping the inputs of stages still to run from eviction: one
 * store lease per retained input ("pf.JOB.N"), so that each is released
 * the moment its last reader is done, and renewed while it is wanted. A
 * crash leaves the leases to expire by themselves (within RETAIN_TTL_MS).
 *
 * Lease calls wait for a commit: only the prefetcher's thread calls these.
 */
#ifndef LARDER_PREFETCH_RETAIN_H
#define LARDER_PREFETCH_RETAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

#define RETAIN_TTL_MS (60 * 60 * 1000)

typedef struct retain retain_t;

/* An input to hold: its lease's id, its object, and the bytes it holds now (for the space sum). */
typedef struct retain_want {
    char id[STORE_LEASE_ID_MAX + 1];
    char *bucket, *name; /* borrowed */
    uint64_t bytes;
} retain_want_t;

retain_t *retain_new(store_t *store);
/* Ends every lease it holds, and frees it. */
void retain_free(retain_t *retain);
/* Holds exactly the wanted inputs: leases for new ones, renewal of old ones when due, an end to the rest. */
void retain_sync(retain_t *retain, const retain_want_t *wants, size_t count, int64_t now_ms);
/* Whether the lease id is held (its pin committed). */
bool retain_holds(const retain_t *retain, const char *id);
/* What the held inputs held when last synced. */
uint64_t retain_bytes(const retain_t *retain);

#endif
