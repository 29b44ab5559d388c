/*
 * buffers.h - the process-wide bound on memory held in response buffers.
 *
 * Each client connection streams through a fixed window of its own (at most
 * two 256 KiB buffers); what can grow beyond that is reserved here first:
 * fill chunks waiting for the store, and JSON responses held whole to have
 * their links rewritten. conf->max_buffer_memory is the limit; a reservation
 * that does not fit is refused, and the caller waits or does without.
 */
#ifndef LARDER_BUFFERS_H
#define LARDER_BUFFERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct buffers {
    _Atomic uint64_t used;
    uint64_t limit;
} buffers_t;

static inline bool buffers_reserve(buffers_t *b, uint64_t n)
{
    uint64_t used = atomic_load(&b->used);
    do {
        if (used + n > b->limit)
            return false;
    } while (!atomic_compare_exchange_weak(&b->used, &used, used + n));
    return true;
}

static inline void buffers_release(buffers_t *b, uint64_t n)
{
    atomic_fetch_sub(&b->used, n);
}

#endif
