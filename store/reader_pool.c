/*
 * reader_pool.c - read-only transactions kept between the hit path's reads.
 *
 * mdb_txn_begin allocates a transaction and mdb_txn_abort frees it; with two
 * reads per hit (the metadata, then a chunk) that was 2,200 instructions of
 * a 4 KiB hit. A transaction reset by mdb_txn_reset keeps its reader slot
 * and its memory but holds no snapshot, so it pins no pages, and
 * mdb_txn_renew gives it the newest snapshot again. The environment is
 * opened with MDB_NOTLS (env.c), so a slot belongs to its transaction rather
 * than to a thread, and any thread may renew any idle transaction.
 *
 * The pool is small and bounded: it holds at most READER_POOL_MAX idle
 * transactions (reader slots), about the number of threads that read at
 * once; a transaction ended when the pool is full is aborted as before.
 *
 * It also lists the transactions threads keep as their own (reader.c), so
 * that closing the environment ends those too, whoever holds them.
 */
#include "store_internal.h"

int reader_pool_init(reader_pool_t *pool)
{
    pool->count = 0;
    pool->owned = NULL;
    return pthread_mutex_init(&pool->lock, NULL) == 0 ? 0 : -1;
}

void reader_pool_drain(reader_pool_t *pool)
{
    pthread_mutex_lock(&pool->lock);
    while (pool->count > 0)
        mdb_txn_abort(pool->idle[--pool->count]);
    for (store_reader_t *r = pool->owned; r != NULL; r = r->next) {
        if (r->txn != NULL)
            mdb_txn_abort(r->txn);
        r->txn = NULL; /* the next read, if the environment opens again, begins a new one */
    }
    pthread_mutex_unlock(&pool->lock);
}

void reader_pool_destroy(reader_pool_t *pool)
{
    reader_pool_drain(pool);
    for (store_reader_t *r = pool->owned, *next; r != NULL; r = next) {
        next = r->next;
        r->pool = NULL;
        r->store = NULL;
        r->prev = r->next = NULL;
    }
    pool->owned = NULL;
    pthread_mutex_destroy(&pool->lock);
}

void reader_pool_own(reader_pool_t *pool, store_reader_t *reader)
{
    pthread_mutex_lock(&pool->lock);
    reader->pool = pool;
    reader->prev = NULL;
    reader->next = pool->owned;
    if (pool->owned != NULL)
        pool->owned->prev = reader;
    pool->owned = reader;
    pthread_mutex_unlock(&pool->lock);
}

void reader_pool_disown(reader_pool_t *pool, store_reader_t *reader)
{
    pthread_mutex_lock(&pool->lock);
    if (reader->prev != NULL)
        reader->prev->next = reader->next;
    else
        pool->owned = reader->next;
    if (reader->next != NULL)
        reader->next->prev = reader->prev;
    if (reader->txn != NULL)
        mdb_txn_abort(reader->txn);
    reader->txn = NULL;
    reader->pool = NULL;
    pthread_mutex_unlock(&pool->lock);
}

MDB_txn *reader_txn_renew(MDB_env *env, MDB_txn *idle, int *rc)
{
    if (idle != NULL) {
        if ((*rc = mdb_txn_renew(idle)) == MDB_SUCCESS)
            return idle;
        mdb_txn_abort(idle); /* and try a fresh one */
    }
    MDB_txn *txn;
    if ((*rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != MDB_SUCCESS)
        return NULL;
    return txn;
}

MDB_txn *reader_pool_begin(reader_pool_t *pool, MDB_env *env, int *rc)
{
    pthread_mutex_lock(&pool->lock);
    MDB_txn *txn = pool->count > 0 ? pool->idle[--pool->count] : NULL;
    pthread_mutex_unlock(&pool->lock);
    return reader_txn_renew(env, txn, rc);
}

void reader_pool_end(reader_pool_t *pool, MDB_txn *txn)
{
    mdb_txn_reset(txn);
    pthread_mutex_lock(&pool->lock);
    bool kept = pool->count < READER_POOL_MAX;
    if (kept)
        pool->idle[pool->count++] = txn;
    pthread_mutex_unlock(&pool->lock);
    if (!kept)
        mdb_txn_abort(txn);
}
