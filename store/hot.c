/*
 * hot.c - a thread's copies of small objects it serves often, in memory.
 *
 * A 4 KiB hit spent about 1,900 instructions reading its chunk: renewing
 * the thread's read transaction, LMDB's B-tree descent, the checksum's
 * bookkeeping and a copy into a buffer (callgrind, issue 11). Bytes of one
 * generation of an object never change, so a copy keyed by key, generation
 * and size stays right for as long as that generation is the cached one;
 * the caller finds that out from the store's metadata on every hit, as it
 * must anyway, and asks for the copy only then. An invalidation, an
 * eviction or a newer generation therefore makes a copy unreachable at
 * once; it goes when the budget needs its room.
 *
 * Objects of at most STORE_HOT_MAX_OBJECT bytes, held in one chunk, are
 * copied on their first read from the store, through the thread's reader,
 * so the store's checksum check covers them. The table is the thread's own:
 * no locks. A copy is referenced by the responses sending it (their bytes
 * go to the socket from it, without a further copy) and freed on its last
 * release once the table let go of it.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

struct store_hot_object {
    store_hot_object_t *next_in_bucket;
    store_hot_object_t *lru_prev, *lru_next; /* most recently used first */
    store_key_t key;
    int64_t generation;
    uint64_t size;
    unsigned refs; /* the table's (while listed) and each response's */
    char bytes[];
};

struct store_hot {
    store_reader_t *reader;
    store_hot_object_t **buckets;
    size_t mask;
    store_hot_object_t lru; /* the list's anchor: lru.lru_next is the most recent */
    uint64_t budget, bytes, objects;
    /* One writer, this thread: relaxed loads and stores, so that another thread may read them. */
    _Atomic uint64_t hits, loads, evictions, shown_bytes, shown_objects;
};

static void show(_Atomic uint64_t *figure, uint64_t value)
{
    atomic_store_explicit(figure, value, memory_order_relaxed);
}

static void bump(_Atomic uint64_t *counter)
{
    show(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1);
}

/* The bytes an object takes here: its copy and its header. */
static uint64_t footprint(uint64_t size)
{
    return sizeof(store_hot_object_t) + size;
}

store_hot_t *store_hot_new(store_reader_t *reader, uint64_t budget)
{
    store_hot_t *hot = calloc(1, sizeof(*hot));
    if (hot == NULL)
        return NULL;
    /* A bucket per 4 KiB of budget, at least 64: chains stay short for the small objects this is for. */
    size_t buckets = 64;
    while (buckets < budget / 4096 && buckets < ((size_t)1 << 24))
        buckets <<= 1;
    if ((hot->buckets = calloc(buckets, sizeof(*hot->buckets))) == NULL) {
        free(hot);
        return NULL;
    }
    hot->reader = reader;
    hot->mask = buckets - 1;
    hot->budget = budget;
    hot->lru.lru_prev = hot->lru.lru_next = &hot->lru;
    return hot;
}

static void lru_unlink(store_hot_object_t *o)
{
    o->lru_prev->lru_next = o->lru_next;
    o->lru_next->lru_prev = o->lru_prev;
}

static void lru_push_front(store_hot_t *hot, store_hot_object_t *o)
{
    o->lru_prev = &hot->lru;
    o->lru_next = hot->lru.lru_next;
    hot->lru.lru_next->lru_prev = o;
    hot->lru.lru_next = o;
}

static store_hot_object_t **bucket_of(const store_hot_t *hot, const store_key_t *key)
{
    uint64_t h;
    memcpy(&h, key->hash, sizeof(h)); /* the key is a SHA-256 already */
    return &hot->buckets[h & hot->mask];
}

/* Takes o out of the table; it is freed now, or by the release of the last response that holds it. */
static void unlist(store_hot_t *hot, store_hot_object_t *o)
{
    for (store_hot_object_t **p = bucket_of(hot, &o->key); *p != NULL; p = &(*p)->next_in_bucket)
        if (*p == o) {
            *p = o->next_in_bucket;
            break;
        }
    lru_unlink(o);
    hot->bytes -= footprint(o->size);
    hot->objects--;
    store_hot_release(o);
}

void store_hot_free(store_hot_t *hot)
{
    if (hot == NULL)
        return;
    while (hot->lru.lru_next != &hot->lru)
        unlist(hot, hot->lru.lru_next);
    free(hot->buckets);
    free(hot);
}

void store_hot_release(store_hot_object_t *object)
{
    if (object != NULL && --object->refs == 0)
        free(object);
}

const char *store_hot_bytes(const store_hot_object_t *object)
{
    return object->bytes;
}

/* The listed copy of exactly this version, or NULL. */
static store_hot_object_t *find(const store_hot_t *hot, const store_key_t *key, int64_t generation, uint64_t size)
{
    for (store_hot_object_t *o = *bucket_of(hot, key); o != NULL; o = o->next_in_bucket)
        if (o->generation == generation && o->size == size && memcmp(o->key.hash, key->hash, sizeof(key->hash)) == 0)
            return o;
    return NULL;
}

/* A copy of the version the store holds now, read through the thread's reader; NULL when it has no whole one. */
static store_hot_object_t *load(store_hot_t *hot, const store_key_t *key, int64_t generation, uint64_t size)
{
    store_hot_object_t *o = malloc(sizeof(*o) + size);
    if (o == NULL)
        return NULL;
    size_t chunk_len = 0;
    ssize_t n = store_reader_chunk_read_at(hot->reader, key, generation, 0, 0, o->bytes, size, &chunk_len);
    if (n < 0 || (uint64_t)n != size || chunk_len != size) {
        free(o);
        return NULL;
    }
    o->key = *key;
    o->generation = generation;
    o->size = size;
    o->refs = 1; /* the table's */
    return o;
}

store_hot_object_t *store_hot_get(store_hot_t *hot, const store_key_t *key, int64_t generation, uint64_t size)
{
    if (hot == NULL || size == 0 || size > STORE_HOT_MAX_OBJECT || footprint(size) > hot->budget)
        return NULL;
    store_hot_object_t *o = find(hot, key, generation, size);
    if (o != NULL) {
        bump(&hot->hits);
        lru_unlink(o);
        lru_push_front(hot, o);
        o->refs++;
        return o;
    }
    if ((o = load(hot, key, generation, size)) == NULL)
        return NULL;
    bump(&hot->loads);
    while (hot->bytes + footprint(size) > hot->budget && hot->lru.lru_prev != &hot->lru) {
        bump(&hot->evictions);
        unlist(hot, hot->lru.lru_prev);
    }
    /* Another version of the object is no longer the cached one: its copy would never be asked for again. */
    for (store_hot_object_t *other = *bucket_of(hot, key), *next; other != NULL; other = next) {
        next = other->next_in_bucket;
        if (memcmp(other->key.hash, key->hash, sizeof(key->hash)) == 0)
            unlist(hot, other);
    }
    store_hot_object_t **bucket = bucket_of(hot, key);
    o->next_in_bucket = *bucket;
    *bucket = o;
    lru_push_front(hot, o);
    hot->bytes += footprint(size);
    hot->objects++;
    show(&hot->shown_bytes, hot->bytes);
    show(&hot->shown_objects, hot->objects);
    o->refs++;
    return o;
}

void store_hot_stats_add(store_hot_t *hot, store_hot_stats_t *sum)
{
    sum->hits += atomic_load_explicit(&hot->hits, memory_order_relaxed);
    sum->loads += atomic_load_explicit(&hot->loads, memory_order_relaxed);
    sum->evictions += atomic_load_explicit(&hot->evictions, memory_order_relaxed);
    sum->bytes += atomic_load_explicit(&hot->shown_bytes, memory_order_relaxed);
    sum->objects += atomic_load_explicit(&hot->shown_objects, memory_order_relaxed);
}
