/*
 * answer_table.c - the shared, striped table of remembered answers, and
 * each thread's direct-mapped copy in front of it (see answer_table.h).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "answer_table.h"

#define STRIPES 64

typedef struct table_entry {
    uint64_t hash;
    uint8_t *key;
    size_t key_len;
    char *name;
    auth_kind_t kind;
    int64_t until_ms, expires_ms;
    int32_t next; /* the next entry in its bucket's chain, -1 at the end */
} table_entry_t;

typedef struct stripe {
    pthread_mutex_t lock;
    table_entry_t *entries; /* [0, used) hold answers */
    size_t capacity, used;
    size_t clock;           /* the entry a full stripe reuses next: the oldest put */
    int32_t *buckets;       /* chain heads, -1 for none */
    size_t bucket_mask;
} stripe_t;

struct answer_table {
    stripe_t stripes[STRIPES];
};

/*
 * A thread's cache is set-associative: a key may sit in any slot of its set.
 * Direct-mapped, two keys that landed in one slot evicted each other on every
 * lookup; with 64 identities in 512 slots, 12-19% of lookups went to the
 * shared table, each a lock and a copy.
 */
#define CACHE_WAYS 4

struct answer_slot {
    uint64_t hash;
    uint64_t put_order; /* a full set reuses the slot put longest ago */
    unsigned epoch;
    bool used;
    size_t key_len;
    uint8_t key[ANSWER_KEY_MAX];
    answer_t answer;
};

void answer_key_seal(answer_key_t *key)
{
    /*
     * Eight bytes a step (a byte-at-a-time FNV-1a was 2.5% of a 4 KiB hit
     * with per-user checks): keys are short, and token keys are keyed hashes
     * already. The value never leaves the process, so host byte order is fine.
     */
    uint64_t h = 1469598103934665603ULL ^ key->len;
    size_t i = 0;
    for (; i + 8 <= key->len; i += 8) {
        uint64_t word;
        memcpy(&word, key->bytes + i, sizeof(word));
        h = (h ^ word) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    memcpy(&tail, key->bytes + i, key->len - i);
    h = (h ^ tail) * 0x9e3779b97f4a7c15ULL;
    /*
     * The multiplies carry a byte only upward, so the top bits, which pick
     * the stripe, would hardly depend on a key's last bytes: grants differing
     * only at the end of the identity would crowd one stripe. MurmurHash3's
     * finalizer makes every bit depend on every byte.
     */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    key->hash = h ^ (h >> 33);
}

static stripe_t *stripe_of(answer_table_t *table, uint64_t hash)
{
    return &table->stripes[(hash >> 58) % STRIPES];
}

answer_table_t *answer_table_new(size_t capacity)
{
    answer_table_t *table = calloc(1, sizeof(*table));
    if (table == NULL)
        return NULL;
    size_t per_stripe = capacity / STRIPES + 1;
    size_t buckets = 16;
    while (buckets < per_stripe * 2)
        buckets *= 2;
    for (size_t i = 0; i < STRIPES; i++) {
        stripe_t *s = &table->stripes[i];
        pthread_mutex_init(&s->lock, NULL);
        s->capacity = per_stripe;
        s->bucket_mask = buckets - 1;
        /* Entries are allocated as they are first needed; the chain heads at once. */
        s->buckets = malloc(buckets * sizeof(*s->buckets));
        if (s->buckets == NULL) {
            answer_table_free(table);
            return NULL;
        }
        memset(s->buckets, 0xff, buckets * sizeof(*s->buckets));
    }
    return table;
}

void answer_table_free(answer_table_t *table)
{
    if (table == NULL)
        return;
    for (size_t i = 0; i < STRIPES; i++) {
        stripe_t *s = &table->stripes[i];
        for (size_t k = 0; k < s->used; k++) {
            free(s->entries[k].key);
            free(s->entries[k].name);
        }
        free(s->entries);
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(table);
}

static int32_t find(const stripe_t *s, const answer_key_t *key)
{
    for (int32_t i = s->buckets[key->hash & s->bucket_mask]; i >= 0; i = s->entries[i].next) {
        const table_entry_t *e = &s->entries[i];
        if (e->hash == key->hash && e->key_len == key->len && memcmp(e->key, key->bytes, key->len) == 0)
            return i;
    }
    return -1;
}

bool answer_table_get(answer_table_t *table, const answer_key_t *key, int64_t now_ms, answer_t *out)
{
    stripe_t *s = stripe_of(table, key->hash);
    pthread_mutex_lock(&s->lock);
    int32_t i = find(s, key);
    bool found = i >= 0 && now_ms < s->entries[i].until_ms;
    if (found) {
        const table_entry_t *e = &s->entries[i];
        out->kind = e->kind;
        out->until_ms = e->until_ms;
        out->expires_ms = e->expires_ms;
        /* Not snprintf: this runs on every hit that misses the thread's own cache. */
        size_t len = strnlen(e->name, sizeof(out->name) - 1);
        memcpy(out->name, e->name, len);
        out->name[len] = '\0';
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

static void unlink_entry(stripe_t *s, int32_t index)
{
    int32_t *link = &s->buckets[s->entries[index].hash & s->bucket_mask];
    while (*link != index)
        link = &s->entries[*link].next;
    *link = s->entries[index].next;
}

/* A slot for a new entry: a fresh one while the stripe has room, else the oldest. -1 when out of memory. */
static int32_t make_room(stripe_t *s)
{
    if (s->used < s->capacity) {
        if (s->entries == NULL && (s->entries = calloc(s->capacity, sizeof(*s->entries))) == NULL)
            return -1;
        return (int32_t)s->used++;
    }
    int32_t victim = (int32_t)s->clock;
    s->clock = (s->clock + 1) % s->capacity;
    unlink_entry(s, victim);
    free(s->entries[victim].key);
    free(s->entries[victim].name);
    s->entries[victim].key = NULL;
    s->entries[victim].name = NULL;
    return victim;
}

bool answer_table_put(answer_table_t *table, const answer_key_t *key, const answer_t *answer)
{
    char *name = strdup(answer->name);
    uint8_t *bytes = malloc(key->len != 0 ? key->len : 1);
    if (name == NULL || bytes == NULL) {
        free(name);
        free(bytes);
        return false;
    }
    memcpy(bytes, key->bytes, key->len);
    stripe_t *s = stripe_of(table, key->hash);
    pthread_mutex_lock(&s->lock);
    int32_t i = find(s, key);
    bool fresh = i < 0;
    if (fresh && (i = make_room(s)) < 0) {
        pthread_mutex_unlock(&s->lock);
        free(name);
        free(bytes);
        return false;
    }
    table_entry_t *e = &s->entries[i];
    free(e->key);
    free(e->name);
    *e = (table_entry_t){.hash = key->hash, .key = bytes, .key_len = key->len, .name = name, .kind = answer->kind,
                         .until_ms = answer->until_ms, .expires_ms = answer->expires_ms, .next = e->next};
    if (fresh) {
        int32_t *head = &s->buckets[key->hash & s->bucket_mask];
        e->next = *head;
        *head = i;
    }
    pthread_mutex_unlock(&s->lock);
    return true;
}

size_t answer_table_size(answer_table_t *table)
{
    size_t n = 0;
    for (size_t i = 0; i < STRIPES; i++) {
        pthread_mutex_lock(&table->stripes[i].lock);
        n += table->stripes[i].used;
        pthread_mutex_unlock(&table->stripes[i].lock);
    }
    return n;
}

int answer_cache_init(answer_cache_t *cache, size_t slots)
{
    size_t n = CACHE_WAYS;
    while (n < slots)
        n *= 2;
    cache->slots = calloc(n, sizeof(*cache->slots));
    cache->mask = n - 1;
    cache->puts = 0;
    return cache->slots != NULL ? 0 : -1;
}

static answer_slot_t *set_of(const answer_cache_t *cache, uint64_t hash)
{
    return &cache->slots[hash & cache->mask & ~(uint64_t)(CACHE_WAYS - 1)];
}

static bool slot_holds(const answer_slot_t *slot, const answer_key_t *key)
{
    return slot->used && slot->hash == key->hash && slot->key_len == key->len &&
           memcmp(slot->key, key->bytes, key->len) == 0;
}

void answer_cache_dispose(answer_cache_t *cache)
{
    free(cache->slots);
    cache->slots = NULL;
}

const answer_t *answer_cache_get(const answer_cache_t *cache, const answer_key_t *key, int64_t now_ms,
                                 unsigned epoch)
{
    const answer_slot_t *set = set_of(cache, key->hash);
    for (size_t i = 0; i < CACHE_WAYS; i++) {
        const answer_slot_t *slot = &set[i];
        if (!slot_holds(slot, key))
            continue;
        return slot->epoch == epoch && now_ms < slot->answer.until_ms ? &slot->answer : NULL;
    }
    return NULL;
}

void answer_cache_put(answer_cache_t *cache, const answer_key_t *key, const answer_t *answer, unsigned epoch)
{
    answer_slot_t *set = set_of(cache, key->hash), *slot = NULL;
    for (size_t i = 0; i < CACHE_WAYS && slot == NULL; i++)
        if (slot_holds(&set[i], key))
            slot = &set[i]; /* replaced in place: a key is never in two slots */
    for (size_t i = 0; i < CACHE_WAYS && slot == NULL; i++)
        if (!set[i].used)
            slot = &set[i];
    if (slot == NULL) {
        slot = &set[0];
        for (size_t i = 1; i < CACHE_WAYS; i++)
            if (set[i].put_order < slot->put_order)
                slot = &set[i];
    }
    slot->put_order = ++cache->puts;
    slot->used = true;
    slot->hash = key->hash;
    slot->epoch = epoch;
    slot->key_len = key->len;
    memcpy(slot->key, key->bytes, key->len);
    slot->answer = *answer;
}
