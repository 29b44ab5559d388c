/*
 * evict.c - keeping the store within its budget, and its LRU order across
 * restarts. Both run only on the writer thread, never on a caller's.
 *
 * Eviction removes whole objects, least recently used first in the index's
 * order, until usage is down to a target, committing each group of victims
 * on its own: pages freed by a committed transaction are what the next
 * transaction can reuse, so evicting before writing keeps the file from
 * growing. Objects pinned by readers (store_pin) are skipped, so usage may
 * stay above the target while everything else is gone. Recency lives in
 * memory (store_touch never writes); the writer copies touched objects'
 * recency into their records every few seconds.
 */
#include <stdlib.h>

#include "store_internal.h"

/* Objects deleted per eviction commit: enough to amortise the commit, few enough to keep it short. */
#define EVICT_BATCH 64
/* Records rewritten per recency commit. */
#define RECENCY_BATCH 512

typedef struct victims {
    store_key_t keys[EVICT_BATCH];
    size_t n;
} victims_t;

/*
 * Deletes the victims, but not one a reader pinned since it was chosen: that
 * narrows the window in which a pin cannot save an object to the commit
 * itself (a reader copes with what is gone then, as with invalidation).
 */
static int delete_victims(apply_ctx_t *a, void *arg)
{
    victims_t *v = arg;
    size_t i;
    int rc;

    for (i = 0; i < v->n; i++) {
        if (index_pinned(&a->store->index, &v->keys[i]))
            continue;
        if ((rc = apply_delete_object(a, &v->keys[i])) != MDB_SUCCESS)
            return rc;
    }
    return MDB_SUCCESS;
}

/* Evicts least recently used objects until the store's usage is at most target bytes, or nothing unpinned is left. */
void evict_to(store_t *s, apply_ctx_t *a, uint64_t target)
{
    victims_t v;
    uint64_t used, objects, used_after, objects_after;
    int rc;

    for (;;) {
        index_usage(&s->index, &used, &objects, NULL);
        if (used <= target)
            return;
        v.n = index_victims(&s->index, used - target, v.keys, EVICT_BATCH);
        if (v.n == 0)
            return;
        if ((rc = apply_txn(a, delete_victims, &v)) != MDB_SUCCESS) {
            /* A full disk fails every eviction: limited, so that is not a line per batch. */
            store_log_limited(s, &s->evict_log, STORE_LOG_ERROR, "store %s: eviction failed: %s", s->path,
                              mdb_strerror(rc));
            return;
        }
        /* Only this thread changes the index, so the difference is what was evicted. */
        index_usage(&s->index, &used_after, &objects_after, NULL);
        if (objects_after >= objects)
            return; /* every victim was pinned meanwhile */
        atomic_fetch_add(&s->evicted_objects, objects - objects_after);
        atomic_fetch_add(&s->evicted_bytes, used > used_after ? used - used_after : 0);
    }
}

typedef struct recency_batch {
    recency_t *items;
    size_t n;
} recency_batch_t;

static int write_recency(apply_ctx_t *a, void *arg)
{
    recency_batch_t *b = arg;
    size_t i;
    int rc;

    for (i = 0; i < b->n; i++)
        if ((rc = apply_recency(a, &b->items[i])) != MDB_SUCCESS)
            return rc;
    return MDB_SUCCESS;
}

/*
 * Persists the recency of as many touched objects as were waiting when it
 * was called, then stops. Hits touch objects again while a transaction
 * commits: taking until none was left kept the writer committing for as
 * long as the hits went on, whenever a commit took longer than the gap
 * between touches, and each commit rewrote the hot objects' records and so
 * emptied the workers' record memos (meta_memo.c) over and over. What is
 * still waiting goes at the next call.
 */
void persist_recency(store_t *s, apply_ctx_t *a)
{
    recency_batch_t b;
    size_t left = index_dirty_count(&s->index);
    int rc;

    if (left == 0)
        return;
    b.items = malloc(RECENCY_BATCH * sizeof(*b.items));
    if (b.items == NULL)
        return; /* the touches still order eviction; only a restart would forget them */
    while (left > 0) {
        if ((b.n = index_take_dirty(&s->index, b.items, left < RECENCY_BATCH ? left : RECENCY_BATCH)) == 0)
            break; /* the rest went (evicted, refilled) since they were touched */
        left -= b.n;
        if ((rc = apply_txn(a, write_recency, &b)) != MDB_SUCCESS) {
            store_log_msg(s, STORE_LOG_WARN, "store %s: persisting recency failed: %s", s->path, mdb_strerror(rc));
            break;
        }
    }
    free(b.items);
}
