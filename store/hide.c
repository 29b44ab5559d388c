/*
 * hide.c - what readers must no longer see although LMDB still holds it.
 *
 * An invalidation must hold for every read from the moment store_invalidate
 * returns, and a chunk a reader found corrupt must not be offered again; but
 * LMDB changes only when the writer commits the op that removes them, up to
 * commit_interval_ms later (longer when a batch fails and is carried). Until
 * then the object, or the chunk, is listed here under the seq of that op, and
 * readers treat it as absent. The writer unlists it once a commit includes
 * that op, or a later one that supersedes it (hide_committed). A second
 * invalidation of the same key moves the entry's seq forward, so the commit
 * of the first does not unlist it too early.
 *
 * Ordering: the entry is made under its stripe's lock around the enqueue, and
 * the writer unlists under that lock, so it can never look for an entry that
 * is about to exist. The writer unlists only after LMDB has committed: a
 * reader that finds no entry reads the committed state.
 *
 * Entries are striped by key, each stripe a small chained hash table under
 * its own mutex. A reader first loads its stripe's atomic count, so the hit
 * path takes no lock while nothing in that stripe is hidden (the usual case:
 * entries live for one commit interval).
 */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* Buckets a stripe starts with; it doubles when it holds more entries than buckets. */
#define HIDE_MIN_BUCKETS 16
/* Corrupt chunks hidden per stripe at most: damage is rare, and past this a read just says STORE_CORRUPT again. */
#define HIDE_CHUNKS_PER_STRIPE 256

static hide_stripe_t *stripe_of(hide_table_t *h, const store_key_t *key)
{
    /* The key is a SHA-256: its last byte picks the stripe, its first eight the bucket (independent bits). */
    return &h->stripes[key->hash[STORE_KEY_SIZE - 1] % HIDE_STRIPES];
}

static size_t bucket_of(const hide_stripe_t *st, const store_key_t *key)
{
    uint64_t x;

    memcpy(&x, key->hash, sizeof(x));
    return (size_t)(x & (st->nbuckets - 1));
}

static bool same_key(const hidden_t *e, const store_key_t *key)
{
    return memcmp(e->key.hash, key->hash, STORE_KEY_SIZE) == 0;
}

/* Whether e hides chunk (generation, index) of its key: a whole object hides every chunk. */
static bool hides_chunk(const hidden_t *e, int64_t generation, uint32_t index)
{
    return e->whole || (e->generation == generation && e->index == index);
}

/* The link that points at the entry exactly like what (same key, kind and chunk), or NULL. */
static hidden_t **link_of(hide_stripe_t *st, const hidden_t *what)
{
    hidden_t **pp;

    for (pp = &st->buckets[bucket_of(st, &what->key)]; *pp != NULL; pp = &(*pp)->chain) {
        const hidden_t *e = *pp;

        if (same_key(e, &what->key) && e->whole == what->whole &&
            (what->whole || (e->generation == what->generation && e->index == what->index)))
            return pp;
    }
    return NULL;
}

/* Doubles the table when it holds more entries than buckets; on no memory, chains just grow longer. */
static void maybe_grow(hide_stripe_t *st)
{
    size_t old_n = st->nbuckets, i;
    hidden_t **buckets, *e, *next;

    if (atomic_load(&st->count) <= old_n)
        return;
    if ((buckets = calloc(old_n * 2, sizeof(*buckets))) == NULL)
        return;
    st->nbuckets = old_n * 2;
    for (i = 0; i < old_n; i++) {
        for (e = st->buckets[i]; e != NULL; e = next) {
            size_t b = bucket_of(st, &e->key);

            next = e->chain;
            e->chain = buckets[b];
            buckets[b] = e;
        }
    }
    free(st->buckets);
    st->buckets = buckets;
}

static void unlink_entry(hide_stripe_t *st, hidden_t **pp)
{
    hidden_t *e = *pp;

    *pp = e->chain;
    if (!e->whole)
        st->chunks--;
    atomic_fetch_sub(&st->count, 1);
    free(e);
}

/*
 * Lists what under seq, or moves an existing entry for it forward to seq
 * (seqs of one key arrive in order: they are taken under this stripe's
 * lock). A new entry consumes *spare. False when it could not be listed.
 */
static bool list_entry(hide_stripe_t *st, const hidden_t *what, hidden_t **spare, uint64_t seq)
{
    hidden_t **pp = link_of(st, what), *e = *spare;

    if (pp != NULL) {
        (*pp)->seq = seq;
        return true;
    }
    if (e == NULL || (!what->whole && st->chunks >= HIDE_CHUNKS_PER_STRIPE))
        return false;
    *spare = NULL;
    *e = *what;
    e->seq = seq;
    pp = &st->buckets[bucket_of(st, &e->key)];
    e->chain = *pp;
    *pp = e;
    if (!e->whole)
        st->chunks++;
    atomic_fetch_add(&st->count, 1);
    maybe_grow(st);
    return true;
}

static void stripe_destroy(hide_stripe_t *st)
{
    size_t i;

    for (i = 0; i < st->nbuckets; i++)
        while (st->buckets[i] != NULL)
            unlink_entry(st, &st->buckets[i]);
    free(st->buckets);
    pthread_mutex_destroy(&st->lock);
}

int hide_init(hide_table_t *h)
{
    int i;

    memset(h, 0, sizeof(*h));
    for (i = 0; i < HIDE_STRIPES; i++) {
        hide_stripe_t *st = &h->stripes[i];

        st->buckets = calloc(HIDE_MIN_BUCKETS, sizeof(*st->buckets));
        if (st->buckets == NULL || pthread_mutex_init(&st->lock, NULL) != 0) {
            free(st->buckets);
            while (--i >= 0)
                stripe_destroy(&h->stripes[i]);
            return -1;
        }
        st->nbuckets = HIDE_MIN_BUCKETS;
        atomic_init(&st->count, 0);
    }
    return 0;
}

/* Frees what is still listed: ops that never committed (dropped at shutdown or after failed commits). */
void hide_destroy(hide_table_t *h)
{
    int i;

    for (i = 0; i < HIDE_STRIPES; i++)
        stripe_destroy(&h->stripes[i]);
    memset(h, 0, sizeof(*h));
}

/* Whether key (whole) or, when chunk is true, its chunk (generation, index) is hidden. */
static bool hidden(hide_table_t *h, const store_key_t *key, bool chunk, int64_t generation, uint32_t index)
{
    hide_stripe_t *st = stripe_of(h, key);
    const hidden_t *e;
    bool found = false;

    if (atomic_load(&st->count) == 0)
        return false; /* the hit path's usual case: no lock */
    pthread_mutex_lock(&st->lock);
    for (e = st->buckets[bucket_of(st, key)]; e != NULL && !found; e = e->chain)
        found = same_key(e, key) && (chunk ? hides_chunk(e, generation, index) : e->whole);
    pthread_mutex_unlock(&st->lock);
    return found;
}

bool hide_object_hidden(hide_table_t *h, const store_key_t *key)
{
    return hidden(h, key, false, 0, 0);
}

bool hide_chunk_hidden(hide_table_t *h, const store_key_t *key, int64_t generation, uint32_t index)
{
    return hidden(h, key, true, generation, index);
}

/*
 * Queues op (OP_INVALIDATE: hides the whole object; OP_DROP_CHUNK: hides
 * that chunk) and hides what it removes until it commits. Never refused.
 * With no memory for an entry, an invalidation waits for its commit
 * instead, so the promise holds; a chunk simply stays visible (reads say
 * STORE_CORRUPT again) until its removal commits.
 */
int hide_enqueue(store_t *s, op_t *op)
{
    hidden_t what, *spare = malloc(sizeof(*spare));
    hide_stripe_t *st = stripe_of(&s->hide, &op->key);
    uint64_t seq = 0;
    bool listed = false;
    int rc;

    memset(&what, 0, sizeof(what));
    what.key = op->key;
    what.whole = op->kind == OP_INVALIDATE;
    if (!what.whole) {
        what.generation = op->generation;
        what.index = op->index;
    }
    pthread_mutex_lock(&st->lock);
    rc = writer_enqueue_seq(s, op, false, &seq); /* op is the queue's now: not to be read again */
    if (rc == STORE_OK)
        listed = list_entry(st, &what, &spare, seq);
    pthread_mutex_unlock(&st->lock);
    free(spare);
    if (rc == STORE_OK && !listed && what.whole)
        rc = writer_sync(s); /* not under the lock: the writer takes it after committing */
    return rc;
}

/* Whether committing op ends e's hiding: op is e's own removal, or a later one that supersedes it. */
static bool ends_hiding(const op_t *op, const hidden_t *e)
{
    if (e->seq > op->seq)
        return false; /* hidden again after op was queued: that later op must commit first */
    switch (op->kind) {
    case OP_INVALIDATE:
        return true; /* the object and all its chunks are gone */
    case OP_FILL_BEGIN:
        /*
         * A fill queued after the invalidation: ops commit in queue order,
         * so that invalidation is committed in this batch or an earlier
         * one, or was dropped after failed commits; either way the new
         * version is what readers should see now.
         */
        return e->whole;
    case OP_DROP_CHUNK:
        return !e->whole && e->generation == op->generation && e->index == op->index;
    default:
        return false;
    }
}

/* After a commit that applied ops (in queue order): unlists what they removed. Writer thread only. */
void hide_committed(hide_table_t *h, const op_t *ops)
{
    const op_t *op;

    for (op = ops; op != NULL; op = op->next) {
        hide_stripe_t *st;
        hidden_t **pp;

        if (op->kind != OP_INVALIDATE && op->kind != OP_FILL_BEGIN && op->kind != OP_DROP_CHUNK)
            continue;
        /* Always under the lock, never by the count alone: hide_enqueue lists an entry after queueing its op. */
        st = stripe_of(h, &op->key);
        pthread_mutex_lock(&st->lock);
        pp = &st->buckets[bucket_of(st, &op->key)];
        while (*pp != NULL) {
            if (same_key(*pp, &op->key) && ends_hiding(op, *pp))
                unlink_entry(st, pp);
            else
                pp = &(*pp)->chain;
        }
        pthread_mutex_unlock(&st->lock);
    }
}
