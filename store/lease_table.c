/*
 * lease_table.c - leases in memory: which keys live leases pin, for the
 * eviction check and for the quota arithmetic, without a read of LMDB.
 *
 * The table lives in the index (store_index_t.leases) and is guarded by its
 * lock, because eviction asks "is this key held?" while it walks the LRU
 * list under that lock. Only the writer thread changes the table, and it
 * does so as it applies a lease op, ahead of the commit: a later op of the
 * same batch must see an earlier one's pins in its quota check. When the
 * commit then fails, the writer reloads the table from LMDB (lease.c), so
 * the table never outlives a rolled-back change. Meanwhile it may show a pin
 * early, which only makes eviction more careful.
 *
 * Pins are kept by key in a hash table, one node per (lease, key), so the
 * eviction check costs nothing while no lease pins anything, and one chain
 * walk otherwise. A lease's pins are also linked from the lease, for its
 * byte count and for dropping it. Leases are a plain list: there are few.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_internal.h"

#define LEASE_MIN_BUCKETS 64

int64_t store_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t key_bucket(const lease_table_t *t, const store_key_t *key)
{
    uint64_t h;

    /* Other bytes than the index's buckets use, so long chains there do not repeat here. */
    memcpy(&h, key->hash + 8, sizeof(h));
    return (size_t)(h & (t->nbuckets - 1));
}

static lease_mem_t *find_lease(const lease_table_t *t, const char *id)
{
    for (lease_mem_t *l = t->head; l != NULL; l = l->next)
        if (strcmp(l->id, id) == 0)
            return l;
    return NULL;
}

static bool live(const lease_mem_t *l, int64_t now_ms)
{
    return now_ms < l->expires_at_ms;
}

bool lease_table_holds_locked(const lease_table_t *t, const store_key_t *key, int64_t now_ms)
{
    if (t->npins == 0)
        return false;
    for (const lease_pin_node_t *p = t->buckets[key_bucket(t, key)]; p != NULL; p = p->chain)
        if (memcmp(p->key.hash, key->hash, sizeof(key->hash)) == 0 && live(p->lease, now_ms))
            return true;
    return false;
}

/* Doubles the pin table when it holds more pins than buckets; on no memory, chains just grow longer. */
static void maybe_grow(lease_table_t *t)
{
    size_t old_n = t->nbuckets;
    lease_pin_node_t **buckets;

    if (t->npins <= old_n || (buckets = calloc(old_n * 2, sizeof(*buckets))) == NULL)
        return;
    t->nbuckets = old_n * 2;
    for (size_t i = 0; i < old_n; i++) {
        lease_pin_node_t *next;
        for (lease_pin_node_t *p = t->buckets[i]; p != NULL; p = next) {
            size_t b = key_bucket(t, &p->key);
            next = p->chain;
            p->chain = buckets[b];
            buckets[b] = p;
        }
    }
    free(t->buckets);
    t->buckets = buckets;
}

/* Unlinks and frees every pin of l. */
static void drop_pins(lease_table_t *t, lease_mem_t *l)
{
    lease_pin_node_t *next;

    for (lease_pin_node_t *p = l->pins; p != NULL; p = next) {
        lease_pin_node_t **pp = &t->buckets[key_bucket(t, &p->key)];
        while (*pp != p)
            pp = &(*pp)->chain;
        *pp = p->chain;
        next = p->next;
        free(p);
        t->npins--;
    }
    l->pins = NULL;
}

/* Creates the lease or updates a known one's expiry and quota (its pins stay). -1: no memory. */
int lease_table_set(store_index_t *ix, const char *id, int64_t expires_at_ms, uint64_t quota_bytes)
{
    int rc = 0;

    pthread_mutex_lock(&ix->lock);
    lease_mem_t *l = find_lease(&ix->leases, id);
    if (l == NULL && (l = calloc(1, sizeof(*l))) != NULL) {
        snprintf(l->id, sizeof(l->id), "%s", id);
        l->next = ix->leases.head;
        ix->leases.head = l;
    }
    if (l != NULL) {
        l->expires_at_ms = expires_at_ms;
        l->quota_bytes = quota_bytes;
    } else {
        rc = -1;
    }
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

void lease_table_drop(store_index_t *ix, const char *id)
{
    pthread_mutex_lock(&ix->lock);
    for (lease_mem_t **pl = &ix->leases.head; *pl != NULL; pl = &(*pl)->next) {
        lease_mem_t *l = *pl;
        if (strcmp(l->id, id) != 0)
            continue;
        drop_pins(&ix->leases, l);
        *pl = l->next;
        free(l);
        break;
    }
    pthread_mutex_unlock(&ix->lock);
}

/* Adds key to the lease's pins; the caller knows it is not there yet. -1: no memory, or no such lease. */
int lease_table_pin(store_index_t *ix, const char *id, const store_key_t *key)
{
    lease_table_t *t = &ix->leases;
    int rc = -1;

    pthread_mutex_lock(&ix->lock);
    lease_mem_t *l = find_lease(t, id);
    if (l != NULL && t->buckets == NULL && (t->buckets = calloc(LEASE_MIN_BUCKETS, sizeof(*t->buckets))) != NULL)
        t->nbuckets = LEASE_MIN_BUCKETS;
    lease_pin_node_t *p = l != NULL && t->buckets != NULL ? malloc(sizeof(*p)) : NULL;
    if (p != NULL) {
        size_t b = key_bucket(t, key);
        p->key = *key;
        p->lease = l;
        p->chain = t->buckets[b];
        t->buckets[b] = p;
        p->next = l->pins;
        l->pins = p;
        t->npins++;
        maybe_grow(t);
        rc = 0;
    }
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

static uint64_t lease_bytes_locked(const store_index_t *ix, const lease_mem_t *l, object_bytes_fn object_bytes)
{
    uint64_t bytes = 0;

    for (const lease_pin_node_t *p = l->pins; p != NULL; p = p->next)
        bytes += object_bytes(ix, &p->key);
    return bytes;
}

/*
 * For the quota check: the bytes lease id pins now, and the sum of every
 * live lease's (an object pinned by two counts twice). Walks every pin.
 */
void lease_table_bytes(store_index_t *ix, const char *id, int64_t now_ms, object_bytes_fn object_bytes,
                       uint64_t *lease_bytes, uint64_t *all_bytes)
{
    *lease_bytes = *all_bytes = 0;
    pthread_mutex_lock(&ix->lock);
    for (const lease_mem_t *l = ix->leases.head; l != NULL; l = l->next) {
        if (!live(l, now_ms))
            continue;
        uint64_t bytes = lease_bytes_locked(ix, l, object_bytes);
        *all_bytes += bytes;
        if (strcmp(l->id, id) == 0)
            *lease_bytes = bytes;
    }
    pthread_mutex_unlock(&ix->lock);
}

/* Whether p is the first node in its chain that a live lease holds for its key: so each object counts once. */
static bool first_live_holder(const lease_table_t *t, const lease_pin_node_t *p, int64_t now_ms)
{
    for (const lease_pin_node_t *q = t->buckets[key_bucket(t, &p->key)]; q != p; q = q->chain)
        if (memcmp(q->key.hash, p->key.hash, sizeof(p->key.hash)) == 0 && live(q->lease, now_ms))
            return false;
    return true;
}

/* For store_stats: live leases, and the bytes of the distinct objects they pin. */
void lease_table_stats(store_index_t *ix, int64_t now_ms, object_bytes_fn object_bytes, uint64_t *count,
                       uint64_t *bytes)
{
    const lease_table_t *t = &ix->leases;

    *count = *bytes = 0;
    pthread_mutex_lock(&ix->lock);
    for (const lease_mem_t *l = t->head; l != NULL; l = l->next) {
        if (!live(l, now_ms))
            continue;
        (*count)++;
        for (const lease_pin_node_t *p = l->pins; p != NULL; p = p->next)
            if (first_live_holder(t, p, now_ms))
                *bytes += object_bytes(ix, &p->key);
    }
    pthread_mutex_unlock(&ix->lock);
}

/* Copies the ids of up to max expired leases, for the writer to remove. */
size_t lease_table_expired(store_index_t *ix, int64_t now_ms, char (*ids)[STORE_LEASE_ID_MAX + 1], size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&ix->lock);
    for (const lease_mem_t *l = ix->leases.head; l != NULL && n < max; l = l->next)
        if (!live(l, now_ms))
            memcpy(ids[n++], l->id, sizeof(l->id));
    pthread_mutex_unlock(&ix->lock);
    return n;
}

/* Empties the table (before a reload, and at close). */
void lease_table_clear(store_index_t *ix)
{
    lease_table_t *t = &ix->leases;
    lease_mem_t *next;

    pthread_mutex_lock(&ix->lock);
    for (lease_mem_t *l = t->head; l != NULL; l = next) {
        next = l->next;
        drop_pins(t, l);
        free(l);
    }
    t->head = NULL;
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = 0;
    t->npins = 0;
    pthread_mutex_unlock(&ix->lock);
}
