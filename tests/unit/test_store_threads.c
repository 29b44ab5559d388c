/*
 * test_store_threads.c - four reader threads hit the store while the writer
 * commits fills, refills of new generations, invalidations and evictions.
 * Every read must succeed with exactly the right bytes or find nothing;
 * errors, corrupt chunks and wrong bytes fail. Meant for the sanitizer
 * build too, where it doubles as a race and leak check.
 */
#include <stdatomic.h>

#include "test_store_util.h"

#define READERS 4
#define NAMES 32
#define SECONDS 3.0

typedef struct shared {
    store_t *store;
    atomic_int stop;
} shared_t;

typedef struct reader {
    pthread_t thread;
    shared_t *shared;
    unsigned seed;
    long reads, hits, misses, bad;
} reader_t;

/* One generation, one size: as upstream, where a generation's content never changes. */
static uint64_t size_of(int64_t gen)
{
    return mix64((uint64_t)gen) % (3 * STORE_CHUNK_SIZE);
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    store_t *s = r->shared->store;
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    uint64_t x = r->seed;

    while (!atomic_load(&r->shared->stop)) {
        store_meta_t m;
        store_key_t key;
        char name[32];
        int rc;

        x = mix64(x + 1);
        snprintf(name, sizeof(name), "t/%d", (int)(x % NAMES));
        test_key(&key, name);
        store_touch(s, &key);
        rc = store_meta_get(s, &key, &m);
        r->reads++;
        if (rc == STORE_NOT_FOUND) {
            r->misses++;
            continue;
        }
        if (rc != STORE_OK || m.size != size_of(m.generation) || strcmp(m.name, name) != 0) {
            r->bad++;
            store_meta_free(&m);
            continue;
        }
        if (m.num_chunks > 0) {
            uint32_t idx = (uint32_t)((x >> 32) % m.num_chunks);

            rc = test_check_chunk(s, name, m.generation, m.size, idx, buf, want);
            if (rc == STORE_OK)
                r->hits++;
            else if (rc == STORE_NOT_FOUND)
                r->misses++; /* not filled yet, or replaced or evicted since the metadata was read */
            else
                r->bad++;
        }
        store_meta_free(&m);
    }
    free(buf);
    free(want);
    return NULL;
}

int main(void)
{
    void *buf = test_alloc_chunk();
    reader_t readers[READERS];
    shared_t shared = {.store = NULL};
    store_config_t c;
    store_stats_t st;
    test_dir_t d;
    test_log_t log;
    uint64_t x = 7;
    long fills = 0, hits = 0, bad = 0, reads = 0;
    double t0;

    test_dir_make(&d, "test_store_threads");
    test_log_init(&log);
    /* Small enough that eviction runs all the time. */
    c = test_config(&d, 24 * TEST_MiB, &log);
    c.commit_interval_ms = 3;
    CHECK(store_open(&shared.store, &c) == STORE_OK);
    for (int i = 0; i < READERS; i++) {
        memset(&readers[i], 0, sizeof(readers[i]));
        readers[i].shared = &shared;
        readers[i].seed = 1000u * (unsigned)i;
        CHECK(pthread_create(&readers[i].thread, NULL, reader_main, &readers[i]) == 0);
    }
    t0 = test_seconds();
    while (test_seconds() - t0 < SECONDS) {
        char name[32];
        store_key_t key;
        int64_t gen;

        x = mix64(x + 1);
        snprintf(name, sizeof(name), "t/%d", (int)(x % NAMES));
        gen = 1 + (int64_t)((x >> 16) % 50);
        if ((x >> 40) % 8 == 0) {
            test_key(&key, name);
            CHECK(store_invalidate(shared.store, &key) == STORE_OK);
        } else {
            CHECK(test_fill(shared.store, name, gen, size_of(gen), buf) == STORE_OK);
            fills++;
        }
        if (fills % 16 == 0)
            CHECK(store_sync(shared.store) == STORE_OK);
    }
    atomic_store(&shared.stop, 1);
    for (int i = 0; i < READERS; i++) {
        CHECK(pthread_join(readers[i].thread, NULL) == 0);
        reads += readers[i].reads;
        hits += readers[i].hits;
        bad += readers[i].bad;
    }
    CHECK(store_sync(shared.store) == STORE_OK);
    store_stats_get(shared.store, &st);
    printf("%ld fills, %ld reads, %ld chunk hits, %llu commits, %llu evictions\n", fills, reads, hits,
           (unsigned long long)st.commits, (unsigned long long)st.evicted_objects);
    CHECK(bad == 0);
    CHECK(hits > 0);
    CHECK(st.corrupt_chunks == 0);
    CHECK(st.used_bytes <= c.budget);
    CHECK(log.lines[0] == 0 && log.lines[1] == 0);
    store_close(shared.store);
    test_dir_remove(&d);
    free(buf);
    UNIT_DONE();
}
