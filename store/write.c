/*
 * write.c - the public write calls: each copies what it is given into one op
 * and queues it for the writer thread, so a caller never waits on LMDB.
 *
 * Only the calls that add data (store_fill_begin, store_chunk_put) can be
 * refused with STORE_BUSY when the queue is full: refusing them just means
 * the response is served without being cached. Invalidations, metadata
 * updates and sizes are never refused, since dropping one would leave stale
 * data (or a fill of unknown size that never ends).
 *
 * Also the calls that write nothing to LMDB: touches and pins, which only
 * take the index's lock.
 */
#include <string.h>
#include <time.h>

#include "store_internal.h"

/* Metadata records beyond this are refused: a GCS resource with its custom metadata is a few KiB. */
#define META_RECORD_MAX ((size_t)1 << 20)

/* Builds an op holding meta's record, with the fixed fields a new version starts with. */
static op_t *meta_op(op_kind_t kind, const store_key_t *key, const store_meta_t *meta)
{
    meta_fixed_t f;
    size_t len = meta_encoded_size(meta);
    op_t *op;

    if (len > META_RECORD_MAX || (meta->size != STORE_SIZE_UNKNOWN && meta->size / STORE_CHUNK_SIZE >= UINT32_MAX))
        return NULL;
    memset(&f, 0, sizeof(f));
    f.generation = meta->generation;
    f.metageneration = meta->metageneration;
    f.size = meta->size;
    f.fill_time = meta->fill_time; /* the caller's clock and unit: the store never reads it */
    f.transient = meta->transient; /* kept only by a fill_begin: a metadata update keeps the record's (apply.c) */
    f.num_chunks = chunk_count(meta->size);
    if ((op = op_new(kind, key, len)) == NULL)
        return NULL;
    op->generation = meta->generation;
    meta_encode(op->data, len, key, meta, &f);
    return op;
}

int store_fill_begin(store_t *store, const store_key_t *key, const store_meta_t *meta)
{
    op_t *op;

    /*
     * An object that cannot fit under the low-water mark would evict
     * everything else and then itself: serve it uncached instead. (One of
     * unknown size is dropped by the writer once it grows that large.)
     */
    if (meta->size != STORE_SIZE_UNKNOWN && meta->size > store->max_object_bytes)
        return STORE_BUSY;
    if ((op = meta_op(OP_FILL_BEGIN, key, meta)) == NULL)
        return STORE_ERROR;
    return writer_enqueue(store, op, true);
}

/* The outcome goes to done from the writer thread (writer.c); a refused op is freed unreported. */
int store_chunk_put(store_t *store, const store_key_t *key, int64_t generation, uint32_t index, const void *data,
                    size_t len, store_chunk_done_fn done, void *done_ctx)
{
    op_t *op;

    if (len > STORE_CHUNK_SIZE)
        return STORE_ERROR;
    /* Refuse before copying a megabyte that would only be thrown away. */
    if (writer_would_refuse(store, len))
        return STORE_BUSY;
    if ((op = op_new(OP_CHUNK_PUT, key, len)) == NULL)
        return STORE_ERROR;
    op->generation = generation;
    op->index = index;
    op->done = done;
    op->done_ctx = done_ctx;
    op->outcome = STORE_CHUNK_FAILED; /* until the writer applies it */
    memcpy(op->data, data, len);
    return writer_enqueue(store, op, true);
}

int store_fill_set_size(store_t *store, const store_key_t *key, int64_t generation, uint64_t size)
{
    op_t *op;

    if (size == STORE_SIZE_UNKNOWN || (op = op_new(OP_SET_SIZE, key, 0)) == NULL)
        return STORE_ERROR;
    op->generation = generation;
    op->size = size;
    return writer_enqueue(store, op, false);
}

int store_meta_update(store_t *store, const store_key_t *key, const store_meta_t *meta)
{
    op_t *op = meta_op(OP_META_UPDATE, key, meta);

    return op != NULL ? writer_enqueue(store, op, false) : STORE_ERROR;
}

/* Readers stop seeing the object now (hide.c); LMDB loses it when the writer commits. */
int store_invalidate(store_t *store, const store_key_t *key)
{
    op_t *op = op_new(OP_INVALIDATE, key, 0);

    return op != NULL ? hide_enqueue(store, op) : STORE_ERROR;
}

int store_fence(store_t *store, store_chunk_done_fn done, void *done_ctx)
{
    /*
     * An empty chunk of a key no object has: the writer drops it, and, like
     * every chunk put, reports that only after the commit that decided it,
     * which is also the commit of everything queued before it.
     */
    static const store_key_t nobody = {{0}};
    return store_chunk_put(store, &nobody, 0, UINT32_MAX, "", 0, done, done_ctx);
}

int store_sync(store_t *store)
{
    return writer_sync(store);
}

void store_touch(store_t *store, const store_key_t *key)
{
    index_touch(&store->index, key, time(NULL));
}

void store_pin(store_t *store, const store_key_t *key)
{
    index_pin(&store->index, key);
}

void store_unpin(store_t *store, const store_key_t *key)
{
    index_unpin(&store->index, key);
}

void store_touch_and_pin(store_t *store, const store_key_t *key)
{
    index_touch_and_pin(&store->index, key, time(NULL));
}
