/*
 * store_perf.c - what the store costs, measured and printed: the hit path
 * (store_meta_get + store_chunk_read of a full chunk) on one and two
 * threads, its parts, write throughput through the writer, and the file size
 * after a workload three times the budget.
 *
 * A measurement, not a test: no speed passes or fails (the figures depend on
 * the machine and on whatever else it is doing). It exits non-zero only when
 * the store misbehaves: a read that fails or returns wrong bytes, a budget
 * overrun. It borrows the unit tests' helpers (tests/unit/test_store_util.h).
 * A sanitized build runs fewer iterations.
 */
#include <stdatomic.h>

#include "crc32c.h"
#include "test_store_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

#define HOT_OBJECTS 48

typedef struct hitter {
    pthread_t thread;
    store_t *store;
    int iterations;
    unsigned seed;
    double seconds;
    long bad;
} hitter_t;

static void *hit_loop(void *arg)
{
    hitter_t *h = arg;
    void *buf = test_alloc_chunk();
    uint64_t x = h->seed;
    double t0 = test_seconds();

    for (int i = 0; i < h->iterations; i++) {
        store_meta_t m;
        store_key_t key;
        char name[32];

        x = mix64(x + 1);
        snprintf(name, sizeof(name), "hot/%d", (int)(x % HOT_OBJECTS));
        test_key(&key, name);
        store_touch(h->store, &key);
        if (store_meta_get(h->store, &key, &m) != STORE_OK ||
            store_chunk_read(h->store, &key, m.generation, 0, buf, STORE_CHUNK_SIZE) != (ssize_t)STORE_CHUNK_SIZE)
            h->bad++;
        store_meta_free(&m);
    }
    h->seconds = test_seconds() - t0;
    free(buf);
    return NULL;
}

/* Runs nthreads hit loops at once and prints the aggregate GB/s. */
static void hit_path(store_t *s, int nthreads, int iterations)
{
    hitter_t h[2];
    double worst = 0, gbps;
    long bad = 0;

    for (int i = 0; i < nthreads; i++) {
        h[i] = (hitter_t){.store = s, .iterations = iterations, .seed = 17u + (unsigned)i};
        CHECK(pthread_create(&h[i].thread, NULL, hit_loop, &h[i]) == 0);
    }
    for (int i = 0; i < nthreads; i++) {
        CHECK(pthread_join(h[i].thread, NULL) == 0);
        bad += h[i].bad;
        if (h[i].seconds > worst)
            worst = h[i].seconds;
    }
    CHECK(bad == 0);
    gbps = (double)nthreads * iterations * STORE_CHUNK_SIZE / worst / 1e9;
    printf("hit path, %d thread%s: %.0f ns/op per thread, %.2f GB/s total\n", nthreads, nthreads > 1 ? "s" : "",
           worst / iterations * 1e9, gbps);
}

/* The hit path's parts, one thread: metadata alone, the chunk alone, and the checksum and copy inside it. */
static void hit_parts(store_t *s)
{
    const int n = 400;
    void *buf = test_alloc_chunk(), *copy = test_alloc_chunk();
    store_key_t key;
    store_meta_t m;
    volatile uint32_t sink = 0;
    double t0;

    test_key(&key, "hot/0");
    t0 = test_seconds();
    for (int i = 0; i < 20 * n; i++) {
        CHECK(store_meta_get(s, &key, &m) == STORE_OK);
        store_meta_free(&m);
    }
    printf("  store_meta_get: %.0f ns/op\n", (test_seconds() - t0) / (20 * n) * 1e9);
    t0 = test_seconds();
    for (int i = 0; i < n; i++)
        CHECK(store_chunk_read(s, &key, 1, 0, buf, STORE_CHUNK_SIZE) == (ssize_t)STORE_CHUNK_SIZE);
    printf("  store_chunk_read (1 MiB): %.0f ns/op\n", (test_seconds() - t0) / n * 1e9);
    t0 = test_seconds();
    for (int i = 0; i < n; i++)
        sink += crc32c(0, buf, STORE_CHUNK_SIZE);
    printf("  of which crc32c: %.2f GB/s\n", (double)n * STORE_CHUNK_SIZE / (test_seconds() - t0) / 1e9);
    t0 = test_seconds();
    for (int i = 0; i < n; i++) {
        memcpy(copy, buf, STORE_CHUNK_SIZE);
        sink += ((unsigned char *)copy)[i];
    }
    printf("  of which memcpy: %.2f GB/s\n", (double)n * STORE_CHUNK_SIZE / (test_seconds() - t0) / 1e9);
    (void)sink;
    free(buf);
    free(copy);
}

static void measure_hit_path(void)
{
    store_config_t c;
    void *buf = test_alloc_chunk();
    test_dir_t d;
    store_t *s = NULL;
    char name[32];

    test_dir_make(&d, "bench_store_perf");
    c = test_config(&d, 1024 * TEST_MiB, NULL);
    CHECK(store_open(&s, &c) == STORE_OK);
    for (int i = 0; i < HOT_OBJECTS; i++) {
        snprintf(name, sizeof(name), "hot/%d", i);
        CHECK(test_fill(s, name, 1, STORE_CHUNK_SIZE, buf) == STORE_OK);
    }
    CHECK(store_sync(s) == STORE_OK);
    hit_path(s, 1, 200); /* warm the page cache and the map */
    hit_path(s, 1, SANITIZED ? 300 : 3000);
    hit_path(s, 2, SANITIZED ? 300 : 3000);
    hit_parts(s);
    store_close(s);
    test_dir_remove(&d);
    free(buf);
}

/* Full chunks through the writer as fast as it takes them; prints MB/s from the first put to the sync. */
static void write_throughput(const test_dir_t *d, uint64_t budget, uint64_t total, long long *file_bytes)
{
    store_config_t c = test_config(d, budget, NULL);
    void *buf = test_alloc_chunk();
    store_t *s = NULL;
    store_stats_t st;
    const uint64_t object = 8 * (uint64_t)STORE_CHUNK_SIZE;
    char name[32], path[256];
    double t0, secs;
    int n = 0;

    CHECK(store_open(&s, &c) == STORE_OK);
    memset(buf, 0x5a, STORE_CHUNK_SIZE);
    t0 = test_seconds();
    for (uint64_t done = 0; done < total; done += object, n++) {
        store_meta_t m;
        store_key_t key;

        snprintf(name, sizeof(name), "w/%d", n);
        m = test_meta(name, 1, object);
        test_key(&key, name);
        CHECK(store_fill_begin(s, &key, &m) == STORE_OK);
        for (uint32_t i = 0; i < 8; i++) {
            while (store_chunk_put(s, &key, 1, i, buf, STORE_CHUNK_SIZE, NULL, NULL) == STORE_BUSY)
                nanosleep(&(struct timespec){0, 200000}, NULL);
        }
    }
    CHECK(store_sync(s) == STORE_OK);
    secs = test_seconds() - t0;
    store_stats_get(s, &st);
    CHECK(st.used_bytes <= budget);
    store_close(s);
    snprintf(path, sizeof(path), "%s/data.mdb", d->store);
    *file_bytes = file_size(path);
    printf("writes: %llu MiB in %.2f s = %.0f MB/s (budget %llu MiB, %llu commits, %llu evicted, file %.0f MiB)\n",
           (unsigned long long)(total >> 20), secs, (double)total / secs / 1e6, (unsigned long long)(budget >> 20),
           (unsigned long long)st.commits, (unsigned long long)st.evicted_objects, (double)*file_bytes / TEST_MiB);
    free(buf);
}

static void measure_writes(void)
{
    const uint64_t budget = 256 * TEST_MiB;
    test_dir_t d;
    long long file_bytes;

    test_dir_make(&d, "bench_store_perf");
    write_throughput(&d, 4 * budget, SANITIZED ? 128 * TEST_MiB : 512 * TEST_MiB, &file_bytes);
    test_dir_remove(&d);

    /* Three times the budget, so most of it is written while evicting; the file should stay near the budget. */
    test_dir_make(&d, "bench_store_perf");
    write_throughput(&d, budget, 3 * budget, &file_bytes);
    printf("  file after 3x the budget: %.0f MiB (twice the budget plus the map headroom would be %llu MiB)\n",
           (double)file_bytes / TEST_MiB, (unsigned long long)((2 * budget + 64 * TEST_MiB) >> 20));
    test_dir_remove(&d);
}

int main(void)
{
    measure_hit_path();
    measure_writes();
    UNIT_DONE();
}
