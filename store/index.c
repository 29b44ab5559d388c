/*
 * index.c - the in-memory index of cached objects: recency order for LRU
 * eviction and byte accounting, so neither needs a write on the hit path.
 *
 * Every object in the "meta" database has one entry here. Only the writer
 * adds, changes or removes entries, and only after the commit that made the
 * change durable (index_apply), so the index never shows an uncommitted
 * state. Any thread may touch an entry to make it the most recently used;
 * touched entries are remembered so the writer can persist their recency in
 * batches. One mutex guards it all: every operation under it is O(1) except
 * the occasional doubling of a hash table, and the choice of victims.
 *
 * Pins (store_pin) are counted per key in a table of their own rather than
 * in the entries, because a pin is on a key, not on one entry: a reader may
 * pin an object whose fill_begin has not committed yet (no entry), or one
 * that is invalidated and refilled while it reads (a new entry). Kept apart,
 * a pin holds for whatever entry its key has when eviction looks, and
 * nothing moves between table and entries as they come and go. Eviction
 * looks each candidate up, which costs nothing while no key is pinned.
 * Unpinned nodes are kept for reuse, so pinning seldom allocates; without
 * memory for a new pinned key the pin is simply not taken (eviction may then
 * take the object, which a reader copes with as with invalidation).
 */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* Buckets the pin table starts with; it doubles when it holds more keys than buckets. */
#define PIN_MIN_BUCKETS 64

static size_t bucket_of(const store_index_t *ix, const store_key_t *key)
{
    uint64_t h;

    /* The key is already a SHA-256: any eight of its bytes are uniformly distributed. */
    memcpy(&h, key->hash, sizeof(h));
    return (size_t)(h & (ix->nbuckets - 1));
}

static index_entry_t *find(const store_index_t *ix, const store_key_t *key)
{
    index_entry_t *e;

    for (e = ix->buckets[bucket_of(ix, key)]; e != NULL; e = e->chain)
        if (memcmp(e->key.hash, key->hash, sizeof(key->hash)) == 0)
            return e;
    return NULL;
}

static size_t pin_bucket_of(const store_index_t *ix, const store_key_t *key)
{
    uint64_t h;

    memcpy(&h, key->hash, sizeof(h));
    return (size_t)(h & (ix->npin_buckets - 1));
}

/* The link that points at key's pin, or NULL when key is not pinned. */
static pin_t **pin_link(store_index_t *ix, const store_key_t *key)
{
    pin_t **pp;

    for (pp = &ix->pins[pin_bucket_of(ix, key)]; *pp != NULL; pp = &(*pp)->chain)
        if (memcmp((*pp)->key.hash, key->hash, sizeof(key->hash)) == 0)
            return pp;
    return NULL;
}

static void lru_unlink(index_entry_t *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_push_front(store_index_t *ix, index_entry_t *e)
{
    e->prev = &ix->lru;
    e->next = ix->lru.next;
    ix->lru.next->prev = e;
    ix->lru.next = e;
}

/* Doubles the table when it holds more entries than buckets; on no memory, chains just grow longer. */
static void maybe_grow(store_index_t *ix)
{
    index_entry_t **buckets, *e, *next;
    size_t old_n = ix->nbuckets, i;

    if (ix->objects <= old_n)
        return;
    buckets = calloc(old_n * 2, sizeof(*buckets));
    if (buckets == NULL)
        return;
    ix->nbuckets = old_n * 2;
    for (i = 0; i < old_n; i++) {
        for (e = ix->buckets[i]; e != NULL; e = next) {
            size_t b = bucket_of(ix, &e->key);

            next = e->chain;
            e->chain = buckets[b];
            buckets[b] = e;
        }
    }
    free(ix->buckets);
    ix->buckets = buckets;
}

/* Adds a new entry as the most recently used. */
static void insert(store_index_t *ix, index_entry_t *e)
{
    size_t b = bucket_of(ix, &e->key);

    e->chain = ix->buckets[b];
    ix->buckets[b] = e;
    lru_push_front(ix, e);
    ix->objects++;
    ix->chunks += e->chunks;
    ix->used_bytes += e->bytes;
    if (e->access_seq > ix->last_seq)
        ix->last_seq = e->access_seq;
    maybe_grow(ix);
}

static void remove_entry(store_index_t *ix, index_entry_t *e)
{
    index_entry_t **pp = &ix->buckets[bucket_of(ix, &e->key)];

    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    lru_unlink(e);
    ix->objects--;
    ix->chunks -= e->chunks;
    ix->used_bytes -= e->bytes;
    free(e);
}

int index_init(store_index_t *ix, size_t expected_objects)
{
    size_t n = 1024;

    memset(ix, 0, sizeof(*ix));
    /* A starting size only: the table doubles as it fills, so no guess can cost much memory up front. */
    while (n < expected_objects && n < ((size_t)1 << 20))
        n *= 2;
    ix->buckets = calloc(n, sizeof(*ix->buckets));
    ix->pins = calloc(PIN_MIN_BUCKETS, sizeof(*ix->pins));
    if (ix->buckets == NULL || ix->pins == NULL || pthread_mutex_init(&ix->lock, NULL) != 0) {
        free(ix->buckets);
        free(ix->pins);
        return -1;
    }
    ix->nbuckets = n;
    ix->npin_buckets = PIN_MIN_BUCKETS;
    ix->lru.next = ix->lru.prev = &ix->lru;
    return 0;
}

static void free_pin_chain(pin_t *p)
{
    pin_t *next;

    for (; p != NULL; p = next) {
        next = p->chain;
        free(p);
    }
}

void index_destroy(store_index_t *ix)
{
    index_entry_t *e, *next;
    size_t i;

    lease_table_clear(ix);
    for (e = ix->lru.next; e != &ix->lru; e = next) {
        next = e->next;
        free(e);
    }
    for (i = 0; i < ix->npin_buckets; i++)
        free_pin_chain(ix->pins[i]); /* pins never released: nothing else to do with them now */
    free_pin_chain(ix->pin_free);
    free(ix->pins);
    free(ix->buckets);
    free(ix->dirty);
    pthread_mutex_destroy(&ix->lock);
    memset(ix, 0, sizeof(*ix));
}

uint64_t index_next_seq(store_index_t *ix)
{
    uint64_t seq;

    pthread_mutex_lock(&ix->lock);
    seq = ++ix->last_seq;
    pthread_mutex_unlock(&ix->lock);
    return seq;
}

static void touch_locked(store_index_t *ix, const store_key_t *key, int64_t now)
{
    index_entry_t *e = find(ix, key);

    if (e != NULL) {
        lru_unlink(e);
        lru_push_front(ix, e);
        e->access_seq = ++ix->last_seq;
        e->last_access = now;
        if (!e->dirty) {
            /* Without room to remember it, the touch still orders eviction; only its persistence is lost. */
            if (ix->ndirty == ix->dirty_cap) {
                size_t cap = ix->dirty_cap ? ix->dirty_cap * 2 : 256;
                store_key_t *grown = realloc(ix->dirty, cap * sizeof(*grown));

                if (grown != NULL) {
                    ix->dirty = grown;
                    ix->dirty_cap = cap;
                }
            }
            if (ix->ndirty < ix->dirty_cap) {
                ix->dirty[ix->ndirty++] = e->key;
                e->dirty = true;
            }
        }
    }
}

void index_touch(store_index_t *ix, const store_key_t *key, int64_t now)
{
    pthread_mutex_lock(&ix->lock);
    touch_locked(ix, key, now);
    pthread_mutex_unlock(&ix->lock);
}

static void apply_one(store_index_t *ix, index_delta_t *d)
{
    index_entry_t *e = find(ix, &d->key);

    if (!d->present) {
        if (e != NULL)
            remove_entry(ix, e);
        return;
    }
    if (e == NULL) {
        e = d->spare != NULL ? d->spare : calloc(1, sizeof(*e));
        d->spare = NULL;
        if (e == NULL)
            return; /* unreachable in practice: the writer allocates a spare for every new object */
        memset(e, 0, sizeof(*e));
        e->key = d->key;
        e->bytes = d->bytes;
        e->chunks = d->chunks;
        e->access_seq = d->access_seq;
        e->last_access = d->last_access;
        insert(ix, e);
        return;
    }
    ix->used_bytes = ix->used_bytes - e->bytes + d->bytes;
    ix->chunks = ix->chunks - e->chunks + d->chunks;
    e->bytes = d->bytes;
    e->chunks = d->chunks;
    if (d->to_front) {
        e->access_seq = d->access_seq;
        e->last_access = d->last_access;
        lru_unlink(e);
        lru_push_front(ix, e);
    }
}

/* Applies committed changes in order; consumes (or frees) every delta's spare. */
void index_apply(store_index_t *ix, index_delta_t *deltas, size_t n)
{
    size_t i;

    pthread_mutex_lock(&ix->lock);
    for (i = 0; i < n; i++)
        apply_one(ix, &deltas[i]);
    pthread_mutex_unlock(&ix->lock);
    for (i = 0; i < n; i++) {
        free(deltas[i].spare);
        deltas[i].spare = NULL;
    }
}

static int by_access_seq(const void *a, const void *b)
{
    const index_entry_t *x = *(index_entry_t *const *)a, *y = *(index_entry_t *const *)b;

    return x->access_seq < y->access_seq ? -1 : x->access_seq > y->access_seq;
}

/* Loads the entries found by the scan at open, taking ownership of each: oldest first, so the newest ends in front. */
void index_load(store_index_t *ix, index_entry_t **entries, size_t n)
{
    size_t i;

    if (n == 0)
        return; /* entries may be NULL then, which qsort must not see */
    qsort(entries, n, sizeof(*entries), by_access_seq);
    pthread_mutex_lock(&ix->lock);
    for (i = 0; i < n; i++)
        insert(ix, entries[i]);
    pthread_mutex_unlock(&ix->lock);
}

/* What an object is charged now, 0 when it is not cached. */
uint64_t index_object_bytes_locked(const store_index_t *ix, const store_key_t *key)
{
    const index_entry_t *e = find(ix, key);

    return e != NULL ? e->bytes : 0;
}

/* Whether eviction must leave key alone: a reader pinned it, or a live lease does. Under the lock. */
static bool held_locked(store_index_t *ix, const store_key_t *key, int64_t now_ms)
{
    return (ix->npins > 0 && pin_link(ix, key) != NULL) || lease_table_holds_locked(&ix->leases, key, now_ms);
}

/* Least recently used first, skipping held ones: keys whose bytes add up to at least want_bytes, at most max. */
size_t index_victims(store_index_t *ix, uint64_t want_bytes, store_key_t *out, size_t max)
{
    int64_t now_ms = store_wall_ms();
    index_entry_t *e;
    uint64_t sum = 0;
    size_t n = 0;

    pthread_mutex_lock(&ix->lock);
    for (e = ix->lru.prev; e != &ix->lru && n < max && sum < want_bytes; e = e->prev) {
        if (held_locked(ix, &e->key, now_ms))
            continue;
        out[n++] = e->key;
        sum += e->bytes;
    }
    pthread_mutex_unlock(&ix->lock);
    return n;
}

/* Takes up to max touched objects' recency to persist, clearing their dirty marks. */
size_t index_take_dirty(store_index_t *ix, recency_t *out, size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&ix->lock);
    while (n < max && ix->ndirty > 0) {
        index_entry_t *e = find(ix, &ix->dirty[--ix->ndirty]);

        if (e == NULL || !e->dirty)
            continue; /* evicted or refilled since it was touched */
        e->dirty = false;
        out[n].key = e->key;
        out[n].access_seq = e->access_seq;
        out[n].last_access = e->last_access;
        n++;
    }
    pthread_mutex_unlock(&ix->lock);
    return n;
}

/* Touched objects whose recency is not persisted yet (an upper bound: some may have gone since). */
size_t index_dirty_count(store_index_t *ix)
{
    pthread_mutex_lock(&ix->lock);
    size_t n = ix->ndirty;
    pthread_mutex_unlock(&ix->lock);
    return n;
}

void index_usage(store_index_t *ix, uint64_t *used, uint64_t *objects, uint64_t *chunks)
{
    pthread_mutex_lock(&ix->lock);
    if (used != NULL)
        *used = ix->used_bytes;
    if (objects != NULL)
        *objects = ix->objects;
    if (chunks != NULL)
        *chunks = ix->chunks;
    pthread_mutex_unlock(&ix->lock);
}

/* ---- pins: see the top of this file ---- */

/* Doubles the pin table when it holds more keys than buckets; on no memory, chains just grow longer. */
static void pins_maybe_grow(store_index_t *ix)
{
    size_t old_n = ix->npin_buckets, i;
    pin_t **buckets, *p, *next;

    if (ix->npins <= old_n || (buckets = calloc(old_n * 2, sizeof(*buckets))) == NULL)
        return;
    ix->npin_buckets = old_n * 2;
    for (i = 0; i < old_n; i++) {
        for (p = ix->pins[i]; p != NULL; p = next) {
            size_t b = pin_bucket_of(ix, &p->key);

            next = p->chain;
            p->chain = buckets[b];
            buckets[b] = p;
        }
    }
    free(ix->pins);
    ix->pins = buckets;
}

/* A node for a newly pinned key: a reused one if any. */
static pin_t *pin_node(store_index_t *ix)
{
    pin_t *p = ix->pin_free;

    if (p == NULL)
        return malloc(sizeof(*p));
    ix->pin_free = p->chain;
    return p;
}

static void pin_locked(store_index_t *ix, const store_key_t *key)
{
    pin_t **pp, *p;

    if ((pp = pin_link(ix, key)) != NULL) {
        (*pp)->count++;
    } else if ((p = pin_node(ix)) != NULL) {
        size_t b = pin_bucket_of(ix, key);

        p->key = *key;
        p->count = 1;
        p->chain = ix->pins[b];
        ix->pins[b] = p;
        ix->npins++;
        pins_maybe_grow(ix);
    }
}

void index_pin(store_index_t *ix, const store_key_t *key)
{
    pthread_mutex_lock(&ix->lock);
    pin_locked(ix, key);
    pthread_mutex_unlock(&ix->lock);
}

void index_touch_and_pin(store_index_t *ix, const store_key_t *key, int64_t now)
{
    pthread_mutex_lock(&ix->lock);
    touch_locked(ix, key, now);
    pin_locked(ix, key);
    pthread_mutex_unlock(&ix->lock);
}

/* Releases one pin of key; an unpin with no pin to release (one that could not be taken) does nothing. */
void index_unpin(store_index_t *ix, const store_key_t *key)
{
    pin_t **pp, *p;

    pthread_mutex_lock(&ix->lock);
    if ((pp = pin_link(ix, key)) != NULL && --(*pp)->count == 0) {
        p = *pp;
        *pp = p->chain;
        p->chain = ix->pin_free;
        ix->pin_free = p;
        ix->npins--;
    }
    pthread_mutex_unlock(&ix->lock);
}

uint64_t index_pinned_bytes(store_index_t *ix)
{
    uint64_t bytes = 0;
    pthread_mutex_lock(&ix->lock);
    for (size_t i = 0; ix->npins > 0 && i < ix->npin_buckets; i++)
        for (const pin_t *p = ix->pins[i]; p != NULL; p = p->chain) {
            const index_entry_t *e = find(ix, &p->key);
            bytes += e != NULL ? e->bytes : 0; /* a key pinned before its object is cached holds nothing yet */
        }
    pthread_mutex_unlock(&ix->lock);
    return bytes;
}

/* Held by a reader's pin or a live lease: delete_victims asks again just before deleting. */
bool index_pinned(store_index_t *ix, const store_key_t *key)
{
    int64_t now_ms = store_wall_ms();
    bool pinned;

    pthread_mutex_lock(&ix->lock);
    pinned = held_locked(ix, key, now_ms);
    pthread_mutex_unlock(&ix->lock);
    return pinned;
}
