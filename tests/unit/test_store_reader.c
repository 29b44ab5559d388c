/*
 * test_store_reader.c - a thread's own read transaction (store/reader.c):
 * its reads say what the pool's say, each sees the newest commit, between
 * reads it holds no snapshot, invalidations hide from it at once, and it
 * outlives the store or dies before it without harm.
 *
 * Checked against broken readers: with the reset after a read left out, a
 * snapshot stays held between reads (3 checks fail); with the renewal left
 * out too, so that the transaction keeps its first snapshot, reads miss
 * what was committed since (10 fail); with reader_pool_destroy not letting
 * its readers go, the sanitizer build reports a heap-use-after-free.
 */
#include "store_internal.h"
#include "test_store_util.h"

#define SIZE (2 * STORE_CHUNK_SIZE + 100) /* three chunks, the last short */

static store_t *open_store(const test_dir_t *d)
{
    store_config_t c = test_config(d, 256 * TEST_MiB, NULL);
    store_t *s = NULL;
    CHECK(store_open(&s, &c) == STORE_OK);
    return s;
}

/* Reads chunk index of name/gen through reader and compares it with the pattern; as test_check_chunk. */
static int reader_check_chunk(store_reader_t *reader, const char *name, int64_t gen, uint32_t index, void *buf,
                              void *want)
{
    store_key_t key;
    test_key(&key, name);
    size_t len = test_chunk_len(SIZE, index), chunk_len = 0;
    ssize_t got = store_reader_chunk_read_at(reader, &key, gen, index, 0, buf, STORE_CHUNK_SIZE, &chunk_len);
    if (got < 0)
        return (int)got;
    test_pattern(want, len, name, gen, index);
    return (size_t)got == len && chunk_len == len && memcmp(buf, want, len) == 0 ? STORE_OK : -100;
}

/* Counts the environment's readers that hold a snapshot now (mdb_reader_list prints "-" for a reset one). */
static int count_line(const char *line, void *ctx)
{
    int *holding = ctx;
    unsigned long pid, thread;
    char txnid[32];
    if (sscanf(line, "%lu %lx %31s", &pid, &thread, txnid) == 3 && strcmp(txnid, "-") != 0)
        (*holding)++;
    return 0;
}

static int snapshots_held(store_t *s)
{
    int holding = 0;
    CHECK(mdb_reader_list(s->env, count_line, &holding) >= 0);
    return holding;
}

static void test_reads(void)
{
    test_dir_t d;
    test_dir_make(&d, "test_store_reader");
    store_t *s = open_store(&d);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_reader_t *reader = store_reader_new(s);
    CHECK(reader != NULL);
    store_key_t key;
    test_key(&key, "a");

    CHECK(reader_check_chunk(reader, "a", 1, 0, buf, want) == STORE_NOT_FOUND);
    CHECK(test_fill(s, "a", 1, SIZE, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    for (uint32_t i = 0; i < 3; i++) { /* the same bytes as the pool's reads */
        CHECK(reader_check_chunk(reader, "a", 1, i, buf, want) == STORE_OK);
        CHECK(test_check_chunk(s, "a", 1, SIZE, i, buf, want) == STORE_OK);
    }
    CHECK(snapshots_held(s) == 0);

    /* A slice, without a copy. */
    size_t chunk_len = 0;
    char slice[10];
    ssize_t n = store_reader_chunk_read_at(reader, &key, 1, 2, 90, slice, sizeof(slice), &chunk_len);
    CHECK(n == 10 && chunk_len == 100);
    test_pattern(want, 100, "a", 1, 2);
    CHECK(memcmp(slice, (char *)want + 90, 10) == 0);

    /* Each read sees the newest commit, though the transaction is the same. */
    CHECK(reader_check_chunk(reader, "b", 1, 0, buf, want) == STORE_NOT_FOUND);
    CHECK(test_fill(s, "b", 1, SIZE, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(reader_check_chunk(reader, "b", 1, 0, buf, want) == STORE_OK);
    CHECK(test_fill(s, "a", 2, SIZE, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(reader_check_chunk(reader, "a", 2, 1, buf, want) == STORE_OK);
    CHECK(reader_check_chunk(reader, "a", 1, 1, buf, want) == STORE_NOT_FOUND); /* the old generation went */
    CHECK(snapshots_held(s) == 0);

    /* An invalidation hides the object from the reader at once, before its commit. */
    test_key(&key, "b");
    CHECK(store_invalidate(s, &key) == STORE_OK);
    CHECK(reader_check_chunk(reader, "b", 1, 0, buf, want) == STORE_NOT_FOUND);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(reader_check_chunk(reader, "b", 1, 0, buf, want) == STORE_NOT_FOUND);
    CHECK(snapshots_held(s) == 0);

    /* Freed before the store closes: its slot goes back, and the store closes cleanly. */
    store_reader_free(reader);
    store_close(s);
    test_dir_remove(&d);
    free(buf);
    free(want);
}

/* The store closes first: it ends every reader's transaction, and a read after says STORE_ERROR. */
static void test_outlives_store(void)
{
    test_dir_t d;
    test_dir_make(&d, "test_store_reader_close");
    store_t *s = open_store(&d);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_reader_t *readers[3];
    for (size_t i = 0; i < 3; i++)
        CHECK((readers[i] = store_reader_new(s)) != NULL);
    CHECK(test_fill(s, "a", 1, SIZE, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    for (size_t i = 0; i < 3; i++)
        CHECK(reader_check_chunk(readers[i], "a", 1, 0, buf, want) == STORE_OK);
    store_reader_free(readers[1]); /* one goes early: the list stays whole */
    store_close(s);
    CHECK(reader_check_chunk(readers[0], "a", 1, 0, buf, want) == STORE_ERROR);
    store_reader_free(readers[0]);
    store_reader_free(readers[2]);
    test_dir_remove(&d);
    free(buf);
    free(want);
}

int main(void)
{
    test_reads();
    test_outlives_store();
    UNIT_DONE();
}
