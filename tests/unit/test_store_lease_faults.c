/*
 * test_store_lease_faults.c - lease writes whose commit fails. The writer
 * changes its in-memory lease table as it applies a lease op, ahead of the
 * commit (store/lease_table.c), and reloads it from LMDB when the commit
 * fails: a pin lost with its batch must neither be reported STORE_OK nor go
 * on counting (or holding) in memory, and a batch that commits on a retry
 * (without its chunks, for lack of space) keeps the pin exactly once.
 *
 * Disk faults are injected as in test_store_outcomes.c: while armed, every
 * pwrite/writev of at least INJECT_MIN_BYTES fails. Only a chunk's overflow
 * pages make a write that large, so a pin fails only when it shares its
 * batch with a chunk: the tests queue one first, on a writer that commits
 * only when someone waits.
 *
 * With the reload in apply_txn (store/apply.c) taken out, the EIO case
 * fails: the table goes on counting the lost pin. The same holds for a pin
 * queued with store_lease_pin_async, whose done must hear STORE_ERROR once.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "test_store_util.h"
#include "write_faults.h"

#define NEVER_MS 600000
#define OBJ ((uint64_t)STORE_CHUNK_SIZE)
#define HOUR_MS ((int64_t)3600 * 1000)


static test_log_t fault_log;

static int pin(store_t *s, const char *id, const char *name)
{
    store_key_t key;

    test_key(&key, name);
    return store_lease_pin(s, id, &key, NULL, 0);
}

/* Queues (without committing: the interval is NEVER_MS) a fill of name with its one chunk. */
static void queue_fill(store_t *s, const char *name, void *buf)
{
    CHECK(test_fill(s, name, 1, OBJ, buf) == STORE_OK);
}

static void test_lost_pin_rolls_back(const test_dir_t *d, void *buf)
{
    store_config_t c = test_config(d, 64 * TEST_MiB, &fault_log);
    store_stats_t st;
    store_lease_t l;
    store_t *s = NULL;

    c.commit_interval_ms = NEVER_MS;
    CHECK(store_open(&s, &c) == STORE_OK);
    queue_fill(s, "held/0", buf);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(store_lease_put(s, "job", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);

    /* EIO: the whole batch is lost, the pin with it. */
    fault_log.quiet = 1;
    atomic_store(&inject_errno, EIO);
    queue_fill(s, "other/0", buf);
    CHECK(pin(s, "job", "held/0") == STORE_ERROR);
    atomic_store(&inject_errno, 0);
    fault_log.quiet = 0;
    store_stats_get(s, &st);
    CHECK(st.lease_count == 1 && st.lease_pinned_bytes == 0); /* the table forgot it */
    CHECK(store_lease_get(s, "job", &l) == STORE_OK && l.pinned_objects == 0);
    store_lease_free(&l);

    /* ENOSPC: the batch is retried and commits without its chunk; the pin lands, once. */
    fault_log.quiet = 1;
    atomic_store(&inject_errno, ENOSPC);
    queue_fill(s, "more/0", buf);
    CHECK(pin(s, "job", "held/0") == STORE_OK);
    atomic_store(&inject_errno, 0);
    fault_log.quiet = 0;
    /* Eviction for room may have taken held/0 before the pin committed: memory and LMDB agree either way. */
    store_stats_get(s, &st);
    CHECK(st.lease_count == 1);
    CHECK(store_lease_get(s, "job", &l) == STORE_OK && l.pinned_objects == 1 && l.pinned_bytes == st.lease_pinned_bytes);
    store_lease_free(&l);
    store_close(s);

    CHECK(store_open(&s, &c) == STORE_OK);
    CHECK(broken_copies(d) == 0);
    CHECK(store_lease_get(s, "job", &l) == STORE_OK && l.pinned_objects == 1);
    store_lease_free(&l);
    store_close(s);
}

/* What an async call's done was told: how often, and the last result. */
typedef struct told {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n;
    int result;
} told_t;

static void on_done(void *ctx, int result)
{
    told_t *t = ctx;

    pthread_mutex_lock(&t->lock);
    t->n++;
    t->result = result;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static void test_lost_async_pin(const test_dir_t *d, void *buf)
{
    store_config_t c = test_config(d, 64 * TEST_MiB, &fault_log);
    told_t t = {.n = 0, .result = 1};
    store_key_t key;
    store_lease_t l;
    store_t *s = NULL;

    pthread_mutex_init(&t.lock, NULL);
    pthread_cond_init(&t.cond, NULL);
    test_key(&key, "held/0");
    c.commit_interval_ms = NEVER_MS;
    CHECK(store_open(&s, &c) == STORE_OK);
    queue_fill(s, "held/0", buf);
    CHECK(store_lease_put(s, "job", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);

    fault_log.quiet = 1;
    atomic_store(&inject_errno, EIO);
    queue_fill(s, "other/0", buf);
    CHECK(store_lease_pin_async(s, "job", &key, NULL, 0, on_done, &t) == STORE_OK);
    CHECK(store_sync(s) == STORE_ERROR);
    atomic_store(&inject_errno, 0);
    fault_log.quiet = 0;
    pthread_mutex_lock(&t.lock);
    while (t.n == 0)
        pthread_cond_wait(&t.cond, &t.lock);
    CHECK(t.result == STORE_ERROR);
    pthread_mutex_unlock(&t.lock);
    CHECK(store_lease_get(s, "job", &l) == STORE_OK && l.pinned_objects == 0);
    store_lease_free(&l);
    store_close(s);
    CHECK(t.n == 1); /* never carried to a later batch: told once */
    pthread_cond_destroy(&t.cond);
    pthread_mutex_destroy(&t.lock);
}

int main(void)
{
    void *buf = test_alloc_chunk();
    test_dir_t d;

    inject_init();
    test_log_init(&fault_log);
    test_dir_make(&d, "test_store_lease_faults");
    test_lost_pin_rolls_back(&d, buf);
    test_dir_remove(&d);
    test_dir_make(&d, "test_store_lease_faults");
    test_lost_async_pin(&d, buf);
    test_dir_remove(&d);
    free(buf);
    UNIT_DONE();
}
