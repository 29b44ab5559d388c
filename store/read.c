/*
 * read.c - the hit path: metadata, chunk presence and chunk reads, callable
 * from any thread.
 *
 * Each call is one short read transaction that ends before the call returns
 * (reader_pool.c keeps them for the next call, reset; a thread with a reader
 * of its own, reader.c, uses that).
 * A read transaction pins every page freed after it began, so one held across
 * client I/O would let the file grow by everything written meanwhile. A
 * chunk's checksum is verified on the map, inside the transaction, on its
 * first read and once a configured interval has passed since the last check
 * (verified.c), or on every read; what is used may then be any slice of it.
 * Nothing here writes: damage found is queued for the writer to remove,
 * and hidden from readers until it is (hide.c), as are invalidated objects:
 * each call looks there first, which costs one atomic load while nothing
 * with a key in the same stripe is hidden.
 */
#include <string.h>

#include "store_internal.h"

/* A read transaction: the calling thread's own reader's when it passes one, else one from the pool. */
static MDB_txn *read_begin(store_t *s, store_reader_t *reader)
{
    int rc;
    MDB_txn *txn = reader != NULL ? store_reader_begin(reader, &rc) : reader_pool_begin(&s->readers, s->env, &rc);

    if (txn == NULL)
        store_log_msg(s, STORE_LOG_ERROR, "store %s: read transaction failed: %s", s->path, mdb_strerror(rc));
    return txn;
}

static void read_end(store_t *s, store_reader_t *reader, MDB_txn *txn)
{
    if (reader != NULL)
        store_reader_end(reader);
    else
        reader_pool_end(&s->readers, txn);
}

/*
 * Damage seen by a reader: queue its removal, and hide the damage from
 * readers until then, so a retry is a clean miss rather than the same
 * error. Never refused; losing it (no memory, store closing) only delays
 * the cleanup, and the next read finds the damage again.
 */
static void schedule_removal(store_t *s, op_kind_t kind, const store_key_t *key, int64_t generation, uint32_t index)
{
    op_t *op = op_new(kind, key, 0);

    if (op == NULL)
        return;
    op->generation = generation;
    op->index = index;
    (void)hide_enqueue(s, op);
}

int store_meta_get(store_t *store, const store_key_t *key, store_meta_t *meta)
{
    MDB_val k = {STORE_KEY_SIZE, (void *)key->hash}, v;
    MDB_txn *txn;
    int rc;

    memset(meta, 0, sizeof(*meta));
    if (hide_object_hidden(&store->hide, key))
        return STORE_NOT_FOUND; /* invalidated; LMDB still has it until the writer commits */
    if ((txn = read_begin(store, NULL)) == NULL)
        return STORE_ERROR;
    rc = mdb_get(txn, store->dbi_meta, &k, &v);
    if (rc == MDB_SUCCESS)
        rc = meta_decode(v.mv_data, v.mv_size, key, meta);
    else if (rc == MDB_NOTFOUND)
        rc = STORE_NOT_FOUND;
    else
        rc = STORE_ERROR;
    read_end(store, NULL, txn);
    if (rc == STORE_CORRUPT) {
        store_log_msg(store, STORE_LOG_WARN, "store %s: a damaged metadata record was found; removing the object",
                      store->path);
        schedule_removal(store, OP_INVALIDATE, key, 0, 0);
    }
    return rc;
}

bool store_chunk_present(store_t *store, const store_key_t *key, int64_t generation, uint32_t index)
{
    chunk_key_t ck;
    MDB_val k = {CHUNK_KEY_SIZE, ck.bytes}, v;
    MDB_txn *txn;
    int rc;

    if (hide_chunk_hidden(&store->hide, key, generation, index))
        return false; /* invalidated, or found corrupt: its removal is queued */
    chunk_key_make(&ck, key, generation, index);
    if ((txn = read_begin(store, NULL)) == NULL)
        return false;
    rc = mdb_get(txn, store->dbi_chunks, &k, &v);
    read_end(store, NULL, txn);
    return rc == MDB_SUCCESS;
}

/* A damaged chunk met by a reader: counted, logged, and queued for removal. */
static void chunk_found_corrupt(store_t *store, const store_key_t *key, int64_t generation, uint32_t index)
{
    atomic_fetch_add(&store->corrupt_chunks, 1);
    store_log_msg(store, STORE_LOG_WARN, "store %s: chunk %u of generation %lld failed its checksum; removing it",
                  store->path, index, (long long)generation);
    schedule_removal(store, OP_DROP_CHUNK, key, generation, index);
}

/*
 * Whether a chunk's payload matches its checksum, checked on the map inside
 * the caller's transaction unless verified.c remembers a recent check. A
 * chunk in a leaf page has no fixed place to remember it by, and is small
 * enough to check every time.
 */
static bool chunk_intact(store_t *store, const chunk_key_t *ck, const MDB_val *v, uint32_t crc, const void *payload,
                         size_t len)
{
    uint64_t pgno = chunk_value_pgno(v, store->psize);
    uint64_t tag = pgno != 0 && store->config.verify_interval_s != 0 ? verified_tag(ck, pgno, crc, len) : 0;
    uint32_t now = tag != 0 ? verified_clock() : 0;
    if (tag != 0 && verified_holds(&store->verified, tag, now, store->config.verify_interval_s))
        return true;
    if (!chunk_payload_ok(crc, ck, payload, len))
        return false;
    if (tag != 0)
        verified_note(&store->verified, tag, now);
    return true;
}

static ssize_t chunk_use(store_t *store, store_reader_t *reader, const store_key_t *key, int64_t generation,
                         uint32_t index, size_t offset, size_t len_wanted, store_bytes_fn fn, void *ctx,
                         size_t *chunk_len)
{
    chunk_key_t ck;
    MDB_val k = {CHUNK_KEY_SIZE, ck.bytes}, v;
    uint32_t crc = 0;
    size_t len = 0;
    ssize_t used = 0;

    if (hide_chunk_hidden(&store->hide, key, generation, index))
        return STORE_NOT_FOUND;
    chunk_key_make(&ck, key, generation, index);
    MDB_txn *txn = read_begin(store, reader);
    if (txn == NULL)
        return STORE_ERROR;
    int rc = mdb_get(txn, store->dbi_chunks, &k, &v);
    if (rc == MDB_SUCCESS) {
        rc = chunk_value_header(&v, &crc, &len);
        const unsigned char *payload = (const unsigned char *)v.mv_data + CHUNK_HEADER_SIZE;
        /* The whole chunk, whatever slice is used: the pages cannot change while the transaction is open. */
        if (rc == STORE_OK && !chunk_intact(store, &ck, &v, crc, payload, len))
            rc = STORE_CORRUPT;
        if (rc == STORE_OK) {
            size_t n = offset >= len ? 0 : len - offset < len_wanted ? len - offset : len_wanted;
            used = n == 0 ? 0 : fn(ctx, payload + offset, n);
        }
    } else {
        rc = rc == MDB_NOTFOUND ? STORE_NOT_FOUND : STORE_ERROR;
    }
    read_end(store, reader, txn);
    if (rc == STORE_CORRUPT)
        chunk_found_corrupt(store, key, generation, index);
    if (rc != STORE_OK)
        return rc;
    if (chunk_len != NULL)
        *chunk_len = len;
    return used;
}

typedef struct copy_target {
    void *buf;
} copy_target_t;

static ssize_t copy_bytes(void *ctx, const void *bytes, size_t len)
{
    memcpy(((copy_target_t *)ctx)->buf, bytes, len);
    return (ssize_t)len;
}

ssize_t store_chunk_use_at(store_t *store, const store_key_t *key, int64_t generation, uint32_t index, size_t offset,
                           size_t len, store_bytes_fn fn, void *ctx, size_t *chunk_len)
{
    return chunk_use(store, NULL, key, generation, index, offset, len, fn, ctx, chunk_len);
}

ssize_t store_reader_chunk_use_at(store_reader_t *reader, const store_key_t *key, int64_t generation, uint32_t index,
                                  size_t offset, size_t len, store_bytes_fn fn, void *ctx, size_t *chunk_len)
{
    if (reader->store == NULL)
        return STORE_ERROR; /* the store is gone */
    return chunk_use(reader->store, reader, key, generation, index, offset, len, fn, ctx, chunk_len);
}

ssize_t store_chunk_read_at(store_t *store, const store_key_t *key, int64_t generation, uint32_t index, size_t offset,
                            void *buf, size_t cap, size_t *chunk_len)
{
    copy_target_t target = {buf};
    return store_chunk_use_at(store, key, generation, index, offset, cap, copy_bytes, &target, chunk_len);
}

ssize_t store_reader_chunk_read_at(store_reader_t *reader, const store_key_t *key, int64_t generation, uint32_t index,
                                   size_t offset, void *buf, size_t cap, size_t *chunk_len)
{
    copy_target_t target = {buf};
    return store_reader_chunk_use_at(reader, key, generation, index, offset, cap, copy_bytes, &target, chunk_len);
}

bool store_verifies_every_read(const store_t *store)
{
    return store->config.verify_interval_s == 0;
}

ssize_t store_chunk_read(store_t *store, const store_key_t *key, int64_t generation, uint32_t index, void *buf,
                         size_t cap)
{
    size_t len = 0;
    ssize_t n = store_chunk_read_at(store, key, generation, index, 0, buf, cap, &len);
    if (n >= 0 && (size_t)n < len)
        return STORE_ERROR; /* buf cannot hold the whole chunk */
    return n;
}

int store_scan(store_t *store, store_scan_fn fn, void *ctx)
{
    MDB_txn *txn = read_begin(store, NULL);
    MDB_cursor *cursor;
    MDB_val k, v;
    int rc;

    if (txn == NULL)
        return STORE_ERROR;
    if ((rc = mdb_cursor_open(txn, store->dbi_meta, &cursor)) != MDB_SUCCESS) {
        read_end(store, NULL, txn);
        return STORE_ERROR;
    }
    for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        store_key_t key;
        store_meta_t meta;
        if (k.mv_size != STORE_KEY_SIZE)
            continue;
        memcpy(key.hash, k.mv_data, STORE_KEY_SIZE);
        if (hide_object_hidden(&store->hide, &key) || meta_decode(v.mv_data, v.mv_size, &key, &meta) != STORE_OK)
            continue; /* invalidated already, or damaged (a read of it will remove it) */
        bool go_on = meta.transient || fn(ctx, &key, &meta);
        store_meta_free(&meta);
        if (!go_on)
            break;
    }
    mdb_cursor_close(cursor);
    read_end(store, NULL, txn);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK : STORE_ERROR;
}
