/*
 * apply.c - the writer's transactions: each queued op becomes a change to
 * the "meta" and "chunks" databases that keeps their invariant (chunks only
 * for the recorded generation, counted exactly in the record), plus a note
 * of the object's new state for the index, applied once the commit succeeds.
 *
 * An op that no longer makes sense when its turn comes (a chunk of a version
 * since replaced, evicted or invalidated) is dropped quietly: the queue is
 * asynchronous, and the caller serves from upstream either way. A chunk put
 * notes on itself what became of it (op->outcome); the writer tells its
 * caller once the commit's result is known. Functions return LMDB codes;
 * any failure aborts the whole transaction.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_internal.h"

void apply_init(apply_ctx_t *a, store_t *s)
{
    memset(a, 0, sizeof(*a));
    a->store = s;
}

static void discard_deltas(apply_ctx_t *a)
{
    size_t i;

    for (i = 0; i < a->ndeltas; i++)
        free(a->deltas[i].spare);
    a->ndeltas = 0;
}

void apply_destroy(apply_ctx_t *a)
{
    discard_deltas(a);
    free(a->deltas);
    free(a->scratch);
    memset(a, 0, sizeof(*a));
}

/* Runs body in one write transaction; on commit, brings the index up to date. */
int apply_txn(apply_ctx_t *a, apply_body_fn body, void *arg)
{
    store_t *s = a->store;
    int rc;

    discard_deltas(a);
    rc = mdb_txn_begin(s->env, NULL, 0, &a->txn);
    if (rc != MDB_SUCCESS) {
        a->txn = NULL;
        return rc;
    }
    rc = body(a, arg);
    if (rc == MDB_SUCCESS)
        rc = mdb_txn_commit(a->txn); /* frees the transaction even when it fails */
    else
        mdb_txn_abort(a->txn);
    a->txn = NULL;
    if (rc != MDB_SUCCESS) {
        discard_deltas(a);
        if (a->leases_changed)
            lease_reload(s); /* the lease table ran ahead of a commit that failed */
        a->leases_changed = false;
        return rc;
    }
    a->leases_changed = false;
    index_apply(&s->index, a->deltas, a->ndeltas);
    a->ndeltas = 0;
    atomic_fetch_add(&s->commits, 1);
    return MDB_SUCCESS;
}

static index_delta_t *new_delta(apply_ctx_t *a, const store_key_t *key)
{
    index_delta_t *d;

    if (a->ndeltas == a->deltas_cap) {
        size_t cap = a->deltas_cap ? a->deltas_cap * 2 : 64;
        index_delta_t *grown = realloc(a->deltas, cap * sizeof(*grown));

        if (grown == NULL)
            return NULL;
        a->deltas = grown;
        a->deltas_cap = cap;
    }
    d = &a->deltas[a->ndeltas++];
    memset(d, 0, sizeof(*d));
    d->key = *key;
    return d;
}

/* Records key's state after this op: record_len bytes of metadata plus the chunks f counts. */
static int note(apply_ctx_t *a, const store_key_t *key, const meta_fixed_t *f, size_t record_len, bool created,
                bool to_front)
{
    index_delta_t *d = new_delta(a, key);

    if (d == NULL)
        return ENOMEM;
    d->present = true;
    d->to_front = to_front;
    d->bytes = lmdb_footprint(a->store->psize, STORE_KEY_SIZE, record_len) + f->chunk_bytes;
    d->chunks = f->chunks_present;
    d->access_seq = f->access_seq;
    d->last_access = f->last_access;
    if (created && (d->spare = calloc(1, sizeof(*d->spare))) == NULL)
        return ENOMEM;
    return MDB_SUCCESS;
}

static int note_gone(apply_ctx_t *a, const store_key_t *key)
{
    return new_delta(a, key) != NULL ? MDB_SUCCESS : ENOMEM;
}

static int reserve_scratch(apply_ctx_t *a, size_t len)
{
    unsigned char *grown;

    if (len <= a->scratch_cap)
        return MDB_SUCCESS;
    grown = realloc(a->scratch, len);
    if (grown == NULL)
        return ENOMEM;
    a->scratch = grown;
    a->scratch_cap = len;
    return MDB_SUCCESS;
}

/*
 * Copies key's record into the scratch buffer (a pointer into LMDB would not
 * survive the puts that follow) and reads its fixed part; *sound is false
 * when the record is damaged. MDB_NOTFOUND when there is none.
 */
static int load_meta(apply_ctx_t *a, const store_key_t *key, size_t *len, meta_fixed_t *f, bool *sound)
{
    MDB_val k = {STORE_KEY_SIZE, (void *)key->hash}, v;
    int rc = mdb_get(a->txn, a->store->dbi_meta, &k, &v);

    if (rc != MDB_SUCCESS)
        return rc;
    if ((rc = reserve_scratch(a, v.mv_size)) != MDB_SUCCESS)
        return rc;
    memcpy(a->scratch, v.mv_data, v.mv_size);
    *len = v.mv_size;
    *sound = meta_read_fixed(a->scratch, *len, key, f);
    return MDB_SUCCESS;
}

/*
 * The record an op on key acts on. *live is false, with MDB_SUCCESS, when
 * there is nothing to act on: no record (evicted or invalidated since the op
 * was queued) or a damaged one, which is deleted, the only thing left to do.
 */
static int load_live_meta(apply_ctx_t *a, const store_key_t *key, size_t *len, meta_fixed_t *f, bool *live)
{
    bool sound;
    int rc = load_meta(a, key, len, f, &sound);

    *live = false;
    if (rc == MDB_NOTFOUND)
        return MDB_SUCCESS;
    if (rc != MDB_SUCCESS)
        return rc;
    if (!sound)
        return apply_delete_object(a, key);
    *live = true;
    return MDB_SUCCESS;
}

/* Re-seals the scratch record with f and stores it. */
static int store_meta(apply_ctx_t *a, const store_key_t *key, size_t len, const meta_fixed_t *f)
{
    MDB_val k = {STORE_KEY_SIZE, (void *)key->hash}, v = {len, a->scratch};

    meta_write_fixed(a->scratch, len, key, f);
    return mdb_put(a->txn, a->store->dbi_meta, &k, &v, 0);
}

/*
 * A value whose page header is garbled cannot be freed safely (LMDB would
 * free the wrong pages), so it stays, and the store is marked to be rebuilt
 * at the next open; until then, that object is simply gone.
 */
static int keep_damaged_value(apply_ctx_t *a)
{
    store_log_msg(a->store, STORE_LOG_ERROR,
                  "store %s: a chunk's LMDB page header is damaged; the store will be rebuilt at the next start",
                  a->store->path);
    return env_mark_damaged(a->txn, a->store);
}

/* Deletes every chunk of key, of any generation. */
static int delete_chunks(apply_ctx_t *a, const store_key_t *key)
{
    store_t *s = a->store;
    chunk_key_t start;
    MDB_cursor *cur;
    MDB_val k = {CHUNK_KEY_SIZE, start.bytes}, v;
    int rc;

    chunk_key_make(&start, key, 0, 0); /* the smallest key with this prefix */
    if ((rc = mdb_cursor_open(a->txn, s->dbi_chunks, &cur)) != MDB_SUCCESS)
        return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS && k.mv_size == CHUNK_KEY_SIZE && memcmp(k.mv_data, key->hash, STORE_KEY_SIZE) == 0) {
        if (lmdb_overflow_ok(&v, s->psize, NULL, 0)) {
            rc = mdb_cursor_del(cur, 0);
        } else {
            rc = keep_damaged_value(a);
        }
        if (rc == MDB_SUCCESS)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT); /* after a delete: the item that followed */
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

/* Deletes key's record and all its chunks (eviction, invalidation, damage). */
int apply_delete_object(apply_ctx_t *a, const store_key_t *key)
{
    store_t *s = a->store;
    MDB_val k = {STORE_KEY_SIZE, (void *)key->hash};
    int rc = mdb_del(a->txn, s->dbi_meta, &k, NULL);

    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return rc;
    if ((rc = delete_chunks(a, key)) != MDB_SUCCESS)
        return rc;
    return note_gone(a, key);
}

static int fill_begin(apply_ctx_t *a, const op_t *op)
{
    store_t *s = a->store;
    meta_fixed_t old, f;
    size_t old_len;
    bool sound = false, had, same;
    int rc = load_meta(a, &op->key, &old_len, &old, &sound);

    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return rc;
    had = rc == MDB_SUCCESS;
    if ((rc = reserve_scratch(a, op->len)) != MDB_SUCCESS)
        return rc;
    memcpy(a->scratch, op->data, op->len);
    if (!meta_read_fixed(a->scratch, op->len, &op->key, &f))
        return EINVAL; /* write.c encoded it: cannot happen */
    /* The size too: chunk lengths follow from it, whatever a confused caller says of generations. */
    same = had && sound && old.generation == f.generation && old.size == f.size;
    /* Another version's chunks go in the same commit that records this one. */
    if (had && !same && (rc = delete_chunks(a, &op->key)) != MDB_SUCCESS)
        return rc;
    /* Refilling the cached version keeps the chunks it has: only the missing ones need fetching. */
    f.chunks_present = same ? old.chunks_present : 0;
    f.chunk_bytes = same ? old.chunk_bytes : 0;
    f.access_seq = index_next_seq(&s->index);
    f.last_access = time(NULL);
    if ((rc = store_meta(a, &op->key, op->len, &f)) != MDB_SUCCESS)
        return rc;
    return note(a, &op->key, &f, op->len, !had, true);
}

/* Whether a chunk op still fits the recorded version; the reason it does not, for the log. */
static const char *chunk_misfit(const op_t *op, const meta_fixed_t *f)
{
    if (f->generation != op->generation)
        return "another generation is cached";
    if (f->size == STORE_SIZE_UNKNOWN) {
        /* No index is past an end not known yet; the last, short chunk waits for store_fill_set_size. */
        if (op->kind == OP_CHUNK_PUT && op->len != STORE_CHUNK_SIZE)
            return "not a full chunk while the object's size is unknown";
        return NULL;
    }
    if (op->index >= f->num_chunks)
        return "index past the object's end";
    if (op->kind == OP_CHUNK_PUT && op->len != chunk_expected_len(f->size, op->index))
        return "wrong length for its index";
    return NULL;
}

/*
 * Whether a chunk of a fill of unknown size shows the object to be larger
 * than the store keeps: every chunk up to it is full, so the object is at
 * least that long.
 */
static bool too_large_so_far(const store_t *s, const meta_fixed_t *f, const op_t *op)
{
    return f->size == STORE_SIZE_UNKNOWN && ((uint64_t)op->index + 1) * STORE_CHUNK_SIZE > s->max_object_bytes;
}

/* Stores one chunk; op->outcome says whether it was (DURABLE, once committed), or why not. */
static int chunk_put(apply_ctx_t *a, op_t *op)
{
    store_t *s = a->store;
    meta_fixed_t f;
    chunk_key_t ck;
    size_t len;
    bool live;
    const char *misfit;
    MDB_val k = {CHUNK_KEY_SIZE, ck.bytes}, v;
    int rc;

    /* Set on every attempt: a batch retried after running out of space applies its ops again. */
    op->outcome = STORE_CHUNK_DROPPED;
    if (a->skip_chunks) {
        op->outcome = STORE_CHUNK_NO_SPACE;
        return MDB_SUCCESS;
    }
    if ((rc = load_live_meta(a, &op->key, &len, &f, &live)) != MDB_SUCCESS || !live)
        return rc;
    if ((misfit = chunk_misfit(op, &f)) != NULL) {
        /* A generation replaced while its fill ran is an ordinary race; anything else is the caller's bug. */
        if (f.generation == op->generation)
            store_log_msg(s, STORE_LOG_WARN, "store %s: chunk %u of generation %lld dropped: %s", s->path, op->index,
                          (long long)op->generation, misfit);
        return MDB_SUCCESS;
    }
    /* As store_fill_begin refuses an object known to be too large, and store_fill_set_size drops one. */
    if (too_large_so_far(s, &f, op))
        return apply_delete_object(a, &op->key);
    chunk_key_make(&ck, &op->key, op->generation, op->index);
    v.mv_size = chunk_value_size(op->len, s->psize);
    v.mv_data = NULL;
    /* Reserve and fill in place: the payload is copied once, from the queue into the page. */
    rc = mdb_put(a->txn, s->dbi_chunks, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
    if (rc == MDB_KEYEXIST) {
        op->outcome = STORE_CHUNK_DURABLE; /* already committed: chunks of one generation never change */
        return MDB_SUCCESS;
    }
    if (rc != MDB_SUCCESS)
        return rc;
    chunk_value_fill(v.mv_data, v.mv_size, &ck, op->data, op->len);
    f.chunks_present++;
    f.chunk_bytes += lmdb_footprint(s->psize, CHUNK_KEY_SIZE, v.mv_size);
    if ((rc = store_meta(a, &op->key, len, &f)) != MDB_SUCCESS)
        return rc;
    op->outcome = STORE_CHUNK_DURABLE;
    return note(a, &op->key, &f, len, false, false);
}

/*
 * After the whole batch: a chunk put that a later op of the same batch
 * removed again (an invalidation, a new generation, a size that cuts it) is
 * DROPPED rather than DURABLE, so that DURABLE means present when the batch
 * commits. One lookup per stored chunk, and a batch holds few of them.
 */
int apply_confirm_chunk(apply_ctx_t *a, op_t *op)
{
    chunk_key_t ck;
    MDB_val k = {CHUNK_KEY_SIZE, ck.bytes}, v;
    int rc;

    if (op->kind != OP_CHUNK_PUT || op->outcome != STORE_CHUNK_DURABLE)
        return MDB_SUCCESS;
    chunk_key_make(&ck, &op->key, op->generation, op->index);
    rc = mdb_get(a->txn, a->store->dbi_chunks, &k, &v);
    if (rc == MDB_NOTFOUND) {
        op->outcome = STORE_CHUNK_DROPPED;
        return MDB_SUCCESS;
    }
    return rc;
}

/* A reader found this chunk's checksum wrong: remove it, so it is refetched. */
static int drop_chunk(apply_ctx_t *a, const op_t *op)
{
    store_t *s = a->store;
    meta_fixed_t f;
    chunk_key_t ck;
    size_t len;
    bool live;
    MDB_val k = {CHUNK_KEY_SIZE, ck.bytes}, v;
    int rc = load_live_meta(a, &op->key, &len, &f, &live);

    if (rc != MDB_SUCCESS || !live)
        return rc;
    if (chunk_misfit(op, &f) != NULL)
        return MDB_SUCCESS;
    chunk_key_make(&ck, &op->key, op->generation, op->index);
    rc = mdb_get(a->txn, s->dbi_chunks, &k, &v);
    if (rc == MDB_NOTFOUND)
        return MDB_SUCCESS; /* another reader reported it first */
    if (rc != MDB_SUCCESS)
        return rc;
    if (!lmdb_overflow_ok(&v, s->psize, NULL, 0))
        return keep_damaged_value(a);
    f.chunks_present--;
    f.chunk_bytes -= lmdb_footprint(s->psize, CHUNK_KEY_SIZE, v.mv_size);
    if ((rc = mdb_del(a->txn, s->dbi_chunks, &k, NULL)) != MDB_SUCCESS)
        return rc;
    if ((rc = store_meta(a, &op->key, len, &f)) != MDB_SUCCESS)
        return rc;
    return note(a, &op->key, &f, len, false, false);
}

/*
 * What a metadata update keeps from the record it replaces: the fields that
 * describe what the store holds rather than what the caller says. The size
 * too, since the chunks present were cut to it; and whether the object is
 * transient, which only the fill that made it decides: an update must not
 * turn scratch data into a cached object that outlives the run, nor the
 * reverse.
 */
static void keep_store_fields(meta_fixed_t *f, const meta_fixed_t *old)
{
    f->transient = old->transient;
    f->size = old->size;
    f->num_chunks = old->num_chunks;
    f->chunks_present = old->chunks_present;
    f->chunk_bytes = old->chunk_bytes;
    f->access_seq = old->access_seq;
    f->last_access = old->last_access;
}

/* New metadata for the cached version: the caller's fields (fill_time too); its chunks, counts and recency stay. */
static int meta_update(apply_ctx_t *a, const op_t *op)
{
    meta_fixed_t old, f;
    size_t old_len;
    bool live;
    int rc = load_live_meta(a, &op->key, &old_len, &old, &live);

    if (rc != MDB_SUCCESS || !live)
        return rc;
    if ((rc = reserve_scratch(a, op->len)) != MDB_SUCCESS)
        return rc;
    memcpy(a->scratch, op->data, op->len);
    if (!meta_read_fixed(a->scratch, op->len, &op->key, &f))
        return EINVAL; /* write.c encoded it: cannot happen */
    if (f.generation != old.generation)
        return MDB_SUCCESS; /* the version it describes is not the one cached */
    keep_store_fields(&f, &old);
    if ((rc = store_meta(a, &op->key, op->len, &f)) != MDB_SUCCESS)
        return rc;
    return note(a, &op->key, &f, op->len, false, false);
}

/*
 * Deletes the chunks a size just learnt does not allow: those past its end,
 * and a full chunk where the last one must be short. Only the last chunk
 * and beyond can be affected, so the scan starts there.
 */
static int cut_chunks(apply_ctx_t *a, const op_t *op, meta_fixed_t *f)
{
    store_t *s = a->store;
    chunk_key_t start;
    MDB_cursor *cur;
    MDB_val k = {CHUNK_KEY_SIZE, start.bytes}, v;
    store_key_t key;
    int64_t generation;
    uint32_t index;
    int rc;

    chunk_key_make(&start, &op->key, op->generation, f->num_chunks > 0 ? f->num_chunks - 1 : 0);
    if ((rc = mdb_cursor_open(a->txn, s->dbi_chunks, &cur)) != MDB_SUCCESS)
        return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    /* While the key hash and generation match: this version's chunks, the only ones its key has. */
    while (rc == MDB_SUCCESS && chunk_key_parse(&k, &key, &generation, &index) &&
           memcmp(k.mv_data, start.bytes, STORE_KEY_SIZE + 8) == 0) {
        if (index < f->num_chunks && v.mv_size == chunk_value_size(chunk_expected_len(f->size, index), s->psize)) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        if (!lmdb_overflow_ok(&v, s->psize, NULL, 0)) {
            rc = keep_damaged_value(a);
        } else {
            f->chunks_present--;
            f->chunk_bytes -= lmdb_footprint(s->psize, CHUNK_KEY_SIZE, v.mv_size);
            rc = mdb_cursor_del(cur, 0);
        }
        if (rc == MDB_SUCCESS)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT); /* after a delete: the item that followed */
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

/*
 * store_fill_set_size: a fill begun without a size learns it. Chunks that do
 * not fit it go, and so does an object too large to keep, as store_fill_begin
 * would have refused it. Nothing changes for another generation, or for a
 * record that already has a size.
 */
static int set_size(apply_ctx_t *a, const op_t *op)
{
    meta_fixed_t f;
    size_t len;
    bool live;
    int rc = load_live_meta(a, &op->key, &len, &f, &live);

    if (rc != MDB_SUCCESS || !live)
        return rc;
    if (f.generation != op->generation || f.size != STORE_SIZE_UNKNOWN)
        return MDB_SUCCESS;
    if (op->size > a->store->max_object_bytes)
        return apply_delete_object(a, &op->key);
    f.size = op->size;
    f.num_chunks = chunk_count(op->size);
    if ((rc = cut_chunks(a, op, &f)) != MDB_SUCCESS)
        return rc;
    if ((rc = store_meta(a, &op->key, len, &f)) != MDB_SUCCESS)
        return rc;
    return note(a, &op->key, &f, len, false, false);
}

int apply_op(apply_ctx_t *a, op_t *op)
{
    switch (op->kind) {
    case OP_FILL_BEGIN:
        return fill_begin(a, op);
    case OP_CHUNK_PUT:
        return chunk_put(a, op);
    case OP_META_UPDATE:
        return meta_update(a, op);
    case OP_INVALIDATE:
        return apply_delete_object(a, &op->key);
    case OP_DROP_CHUNK:
        return drop_chunk(a, op);
    case OP_SET_SIZE:
        return set_size(a, op);
    case OP_LEASE_PUT:
    case OP_LEASE_EXTEND:
    case OP_LEASE_PIN:
    case OP_LEASE_END:
        return apply_lease_op(a, op);
    }
    return EINVAL;
}

/* Writes an object's in-memory recency into its record, so a restart keeps the LRU order. */
int apply_recency(apply_ctx_t *a, const recency_t *r)
{
    meta_fixed_t f;
    size_t len;
    bool sound;
    int rc = load_meta(a, &r->key, &len, &f, &sound);

    if (rc == MDB_NOTFOUND || (rc == MDB_SUCCESS && !sound))
        return MDB_SUCCESS; /* gone, or damaged and left for a reader to report */
    if (rc != MDB_SUCCESS)
        return rc;
    f.access_seq = r->access_seq;
    f.last_access = r->last_access;
    return store_meta(a, &r->key, len, &f);
}
