/*
 * reader.c - a thread's own read transaction, kept reset between reads.
 *
 * The shared pool (reader_pool.c) hands out reset transactions under a lock:
 * two lock round trips, four locked instructions and about 150 instructions
 * more on every chunk a hit reads (callgrind). A worker thread reads on
 * every hit, so it keeps one transaction of its own: renewed before a read,
 * reset after it, like the pool's, so between reads it holds a reader slot
 * but no snapshot, and pins no pages. The pool lists it, so that closing the
 * environment ends it (env_close), and the store's end lets it go
 * (reader_pool_destroy).
 */
#include <errno.h>
#include <stdlib.h>

#include "store_internal.h"

store_reader_t *store_reader_new(store_t *store)
{
    store_reader_t *reader = calloc(1, sizeof(*reader));
    if (reader == NULL)
        return NULL;
    reader->store = store;
    reader_pool_own(&store->readers, reader);
    return reader;
}

void store_reader_free(store_reader_t *reader)
{
    if (reader == NULL)
        return;
    if (reader->pool != NULL) /* else the store is gone, and ended the transaction */
        reader_pool_disown(reader->pool, reader);
    free(reader);
}

MDB_txn *store_reader_begin(store_reader_t *reader, int *rc)
{
    if (reader->store == NULL || reader->store->env == NULL) {
        *rc = EINVAL;
        return NULL;
    }
    reader->txn = reader_txn_renew(reader->store->env, reader->txn, rc);
    return reader->txn;
}

void store_reader_end(store_reader_t *reader)
{
    mdb_txn_reset(reader->txn);
}
