/*
 * test_store_evict.c - staying within the budget: least recently used
 * objects go first, a touch changes the order (also across a restart), a
 * pinned object is skipped, eviction is by size down to the low-water mark,
 * a workload three times the budget leaves both the accounting and the
 * file bounded, and persisting recency ends while hits go on touching.
 */
#include <lmdb.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "test_store_util.h"

#define OBJ (STORE_CHUNK_SIZE) /* one full chunk: about 1 MiB charged */

static test_log_t evict_log;

static store_t *open_store(const test_dir_t *d, uint64_t budget)
{
    store_config_t c = test_config(d, budget, &evict_log);
    store_t *s = NULL;

    CHECK(store_open(&s, &c) == STORE_OK);
    return s;
}

/* Fills obj/0 .. obj/n-1 one at a time, each committed before the next. */
static void fill_objects(store_t *s, int from, int to, uint64_t size, void *buf)
{
    char name[32];

    for (int i = from; i < to; i++) {
        snprintf(name, sizeof(name), "obj/%d", i);
        CHECK(test_fill(s, name, 1, size, buf) == STORE_OK);
        CHECK(store_sync(s) == STORE_OK);
    }
}

static void test_lru_order(void)
{
    const uint64_t budget = 16 * TEST_MiB;
    void *buf = test_alloc_chunk();
    store_stats_t st;
    test_dir_t d;
    store_t *s;
    store_key_t key;
    char name[32];
    int i, survivors = 0;

    test_dir_make(&d, "test_store_evict");
    s = open_store(&d, budget);
    fill_objects(s, 0, 12, OBJ, buf); /* 12 MiB: under the 15.2 MiB high-water mark */
    store_stats_get(s, &st);
    CHECK(st.objects == 12 && st.evicted_objects == 0);
    /* obj/0 and obj/1 become the most recently used. */
    test_key(&key, "obj/1");
    store_touch(s, &key);
    test_key(&key, "obj/0");
    store_touch(s, &key);
    fill_objects(s, 12, 16, OBJ, buf);
    store_stats_get(s, &st);
    CHECK(st.evicted_objects > 0);
    CHECK(st.used_bytes <= (uint64_t)(0.95 * (double)budget));
    CHECK(test_cached(s, "obj/0") && test_cached(s, "obj/1"));
    CHECK(!test_cached(s, "obj/2") && !test_cached(s, "obj/3"));
    CHECK(test_cached(s, "obj/15") && test_cached(s, "obj/14"));
    /* Whatever survived is a suffix of the fill order, plus the two touched. */
    for (i = 2; i < 16; i++) {
        snprintf(name, sizeof(name), "obj/%d", i);
        if (test_cached(s, name))
            survivors++;
        else
            CHECK(survivors == 0);
    }
    CHECK((uint64_t)survivors + 2 == st.objects);

    /*
     * The order survives a restart, since recency is persisted at close: the
     * oldest survivor, touched now, outlives the next oldest after reopening.
     */
    snprintf(name, sizeof(name), "obj/%d", 16 - survivors);
    test_key(&key, name);
    store_touch(s, &key);
    store_close(s);
    s = open_store(&d, budget);
    snprintf(name, sizeof(name), "obj/%d", 17 - survivors);
    for (i = 16; i < 40 && test_cached(s, name); i++)
        fill_objects(s, i, i + 1, OBJ, buf);
    CHECK(!test_cached(s, name));
    snprintf(name, sizeof(name), "obj/%d", 16 - survivors);
    CHECK(test_cached(s, name));
    store_close(s);
    test_dir_remove(&d);
    free(buf);
}

/*
 * store_touch_and_pin, the hit path's one call: the object counts as used
 * (LRU order) and is held (eviction skips it) until unpinned. Checked
 * against broken versions: without the pin, obj/0 is evicted; without the
 * touch, the oldest survivor goes before the next oldest.
 */
static void test_touch_and_pin(void)
{
    const uint64_t budget = 16 * TEST_MiB;
    void *buf = test_alloc_chunk();
    store_stats_t st;
    test_dir_t d;
    store_key_t held, key;
    char name[32];

    test_dir_make(&d, "test_store_touch_pin");
    store_t *s = open_store(&d, budget);
    fill_objects(s, 0, 12, OBJ, buf);
    test_key(&held, "obj/0");
    store_touch_and_pin(s, &held);
    for (int i = 2; i < 12; i++) { /* obj/1 is the least recently used, obj/0 next: held */
        snprintf(name, sizeof(name), "obj/%d", i);
        test_key(&key, name);
        store_touch(s, &key);
    }
    store_stats_get(s, &st);
    CHECK(st.pinned_bytes >= OBJ);
    fill_objects(s, 12, 16, OBJ, buf);
    store_stats_get(s, &st);
    CHECK(st.evicted_objects >= 2);
    CHECK(test_cached(s, "obj/0"));
    CHECK(!test_cached(s, "obj/1") && !test_cached(s, "obj/2"));
    store_unpin(s, &held);
    store_stats_get(s, &st);
    CHECK(st.pinned_bytes == 0);

    /* The touch: of the two oldest unpinned survivors, the one touched (and released) outlives the other. */
    int oldest = 3;
    while (oldest < 16) {
        snprintf(name, sizeof(name), "obj/%d", oldest);
        if (test_cached(s, name))
            break;
        oldest++;
    }
    char next_oldest[32];
    snprintf(next_oldest, sizeof(next_oldest), "obj/%d", oldest + 1);
    CHECK(test_cached(s, name) && test_cached(s, next_oldest));
    test_key(&key, name);
    store_touch_and_pin(s, &key);
    store_unpin(s, &key);
    store_touch(s, &held); /* obj/0, unpinned now, is no older than the rest */
    for (int i = 16; i < 40 && test_cached(s, next_oldest); i++)
        fill_objects(s, i, i + 1, OBJ, buf);
    CHECK(!test_cached(s, next_oldest));
    CHECK(test_cached(s, name));
    store_close(s);
    test_dir_remove(&d);
    free(buf);
}

/* Evicting by bytes: one large old object makes room for many small new ones. */
static void test_size_aware(void)
{
    const uint64_t budget = 20 * TEST_MiB, big = 8 * (uint64_t)STORE_CHUNK_SIZE;
    void *buf = test_alloc_chunk();
    store_stats_t st, before;
    test_dir_t d;
    store_t *s;

    test_dir_make(&d, "test_store_evict");
    s = open_store(&d, budget);
    CHECK(test_fill(s, "big", 1, big, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    fill_objects(s, 0, 10, OBJ, buf); /* 18 MiB: under 19 MiB */
    store_stats_get(s, &before);
    CHECK(before.evicted_objects == 0);
    fill_objects(s, 10, 12, OBJ, buf);
    store_stats_get(s, &st);
    /* The big one, least recently used, goes alone, and usage ends at or below the low-water mark. */
    CHECK(st.evicted_objects == 1);
    CHECK(!test_cached(s, "big") && test_cached(s, "obj/0"));
    CHECK(st.used_bytes <= (uint64_t)(0.85 * (double)budget));
    CHECK(st.evicted_bytes >= big);
    store_close(s);

    /* A smaller budget at the next start is enforced at once. */
    s = open_store(&d, 6 * TEST_MiB);
    CHECK(store_sync(s) == STORE_OK);
    {
        double t0 = test_seconds();

        do
            store_stats_get(s, &st);
        while (st.used_bytes > 6 * TEST_MiB && test_seconds() - t0 < 5);
    }
    CHECK(st.used_bytes <= (uint64_t)(0.95 * 6 * (double)TEST_MiB));
    CHECK(test_cached(s, "obj/11") && !test_cached(s, "obj/0"));
    store_close(s);
    test_dir_remove(&d);
    free(buf);
}

/*
 * Three times the budget of mixed sizes, with some objects reread and
 * refilled in new generations: usage never ends above the budget after a
 * sync, and the file stays within twice the budget plus the map headroom.
 */
static void test_three_times_budget(void)
{
    /* STORE_TEST_BUDGET_MIB scales it up for measurements; the default keeps the test fast. */
    const char *mib = getenv("STORE_TEST_BUDGET_MIB");
    const uint64_t budget = (mib != NULL ? strtoull(mib, NULL, 10) : 48) * TEST_MiB;
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    uint64_t written = 0, seed = 42, max_used = 0;
    store_stats_t st;
    test_dir_t d;
    store_t *s;
    char name[32], path[256];
    long long size_on_disk;
    int i = 0, bad = 0;

    test_dir_make(&d, "test_store_evict");
    s = open_store(&d, budget);
    while (written < 3 * budget) {
        uint64_t r = mix64(++seed), size;
        int64_t gen = 1 + (int64_t)(r >> 60);

        /* A third tiny, a third up to a chunk, a third up to 3.5 chunks. */
        switch (r % 3) {
        case 0:
            size = (r >> 8) % 20000;
            break;
        case 1:
            size = (r >> 8) % STORE_CHUNK_SIZE;
            break;
        default:
            size = (r >> 8) % (7 * STORE_CHUNK_SIZE / 2);
            break;
        }
        snprintf(name, sizeof(name), "mix/%d", (int)((r >> 20) % (4 * (budget / TEST_MiB))));
        CHECK(test_fill(s, name, gen, size, buf) == STORE_OK);
        written += size;
        if (++i % 8 == 0) {
            store_key_t key;

            CHECK(store_sync(s) == STORE_OK);
            store_stats_get(s, &st);
            if (st.used_bytes > max_used)
                max_used = st.used_bytes;
            CHECK(st.used_bytes <= budget);
            /* Reread something recent: whatever is there must be exact. */
            test_key(&key, name);
            store_touch(s, &key);
            if (size > 0) {
                int rc = test_check_chunk(s, name, gen, size, 0, buf, want);

                bad += rc != STORE_OK && rc != STORE_NOT_FOUND;
            }
        }
    }
    CHECK(store_sync(s) == STORE_OK);
    store_stats_get(s, &st);
    CHECK(st.used_bytes <= budget);
    CHECK(st.evicted_objects > 0);
    CHECK(bad == 0);
    store_close(s);
    snprintf(path, sizeof(path), "%s/data.mdb", d.store);
    size_on_disk = file_size(path);
    printf("3x budget: budget %llu MiB, written %llu MiB, peak used %.1f MiB, file %.1f MiB, evicted %llu objects\n",
           (unsigned long long)(budget >> 20), (unsigned long long)(written >> 20), (double)max_used / TEST_MiB,
           (double)size_on_disk / TEST_MiB, (unsigned long long)st.evicted_objects);
    CHECK(size_on_disk > 0 && (uint64_t)size_on_disk < 2 * budget + 64 * TEST_MiB);
    /* Reopening rebuilds the same accounting from the records. */
    {
        store_stats_t again;

        s = open_store(&d, budget);
        store_stats_get(s, &again);
        CHECK(again.used_bytes == st.used_bytes && again.objects == st.objects && again.chunks == st.chunks);
        store_close(s);
    }
    CHECK(broken_copies(&d) == 0);
    test_dir_remove(&d);
    free(buf);
    free(want);
}

/*
 * A reader that never ends (here: another process holding an old snapshot)
 * keeps every page freed after it from being reused, so the map really
 * fills. The writer must abort, evict, retry, then drop chunks and log,
 * without crashing or failing calls, and recover once the reader is gone.
 */
static void test_map_full(void)
{
    const uint64_t budget = 16 * TEST_MiB;
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    int release, status, warnings;
    store_stats_t st;
    store_key_t key;
    test_dir_t d;
    store_t *s;
    pid_t child;
    char name[32];

    test_dir_make(&d, "test_store_evict");
    s = open_store(&d, budget);
    fill_objects(s, 0, 4, OBJ, buf);
    release = test_hold_txn(&d, MDB_RDONLY, &child);

    /* Far more than the map holds: budget 16 MiB, map about 92 MiB, nothing freed can be reused. */
    warnings = evict_log.lines[1];
    evict_log.quiet = getenv("STORE_TEST_VERBOSE") == NULL;
    test_key(&key, "obj/3");
    for (int i = 4; i < 160; i++) {
        snprintf(name, sizeof(name), "obj/%d", i);
        store_touch(s, &key); /* obj/3 stays the most recently used */
        CHECK(test_fill(s, name, 1, OBJ, buf) == STORE_OK);
        store_sync(s); /* may report a lost batch: the map is full */
    }
    store_stats_get(s, &st);
    CHECK(evict_log.lines[1] > warnings); /* "out of space (MDB_MAP_FULL...): chunks are not being cached" */
    CHECK(st.used_bytes <= budget);
    /* An invalidation that cannot commit now is not forgotten: hidden at once, and for as long as it fails. */
    CHECK(test_cached(s, "obj/3"));
    CHECK(store_invalidate(s, &key) == STORE_OK);
    CHECK(!test_cached(s, "obj/3"));
    CHECK(store_sync(s) == STORE_ERROR);
    CHECK(!test_cached(s, "obj/3") && !store_chunk_present(s, &key, 1, 0));

    close(release);
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /*
     * With the reader gone, the carried invalidation commits with the next
     * batch: after a restart, which forgets what was hidden, obj/3 (the most
     * recently used, so not evicted meanwhile) is still gone.
     */
    fill_objects(s, 200, 201, OBJ, buf);
    store_close(s);
    s = open_store(&d, budget);
    CHECK(!test_cached(s, "obj/3"));
    /* And space is reused, fills succeed again. */
    fill_objects(s, 201, 230, OBJ, buf);
    CHECK(test_check_chunk(s, "obj/229", 1, OBJ, 0, buf, want) == STORE_OK);
    CHECK(test_check_chunk(s, "obj/228", 1, OBJ, 0, buf, want) == STORE_OK);
    store_stats_get(s, &st);
    CHECK(st.used_bytes <= budget);
    store_close(s);
    /* Nothing the full map did left the store inconsistent. */
    s = open_store(&d, budget);
    CHECK(test_check_chunk(s, "obj/229", 1, OBJ, 0, buf, want) == STORE_OK);
    store_close(s);
    CHECK(broken_copies(&d) == 0);
    evict_log.lines[0] = evict_log.lines[1] = 0; /* the errors above were the point */
    evict_log.quiet = 0;
    test_dir_remove(&d);
    free(buf);
    free(want);
}

typedef struct toucher {
    store_t *store;
    store_key_t key;
    atomic_bool stop;
    uint64_t touches;
} toucher_t;

static void *touch_until_stopped(void *arg)
{
    toucher_t *t = arg;
    while (!atomic_load(&t->stop)) {
        store_touch(t->store, &t->key);
        t->touches++;
    }
    return NULL;
}

/*
 * One hot object touched without a pause, as a busy cache's hits do, while
 * the writer persists recency every 50 ms: each round writes what was
 * touched before it and ends. The old writer took touched objects until none
 * was left, so it went on committing for as long as the touches did: this
 * test failed on it with 22,207 commits in 1,001 ms, against the 22 rounds
 * allowed. The bound follows from the elapsed time, whatever the machine's
 * speed.
 */
static void test_recency_persist_ends_under_touches(void)
{
    const unsigned persist_ms = 50;
    void *buf = test_alloc_chunk();
    test_dir_t d;
    test_dir_make(&d, "test_store_evict");
    store_config_t c = test_config(&d, 16 * TEST_MiB, &evict_log);
    c.recency_persist_ms = persist_ms;
    store_t *s = NULL;
    CHECK(store_open(&s, &c) == STORE_OK);
    fill_objects(s, 0, 1, 4096, buf);

    toucher_t t = {.store = s};
    test_key(&t.key, "obj/0");
    atomic_init(&t.stop, false);
    store_stats_t before, after;
    store_stats_get(s, &before);
    double start = test_seconds();
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, touch_until_stopped, &t) == 0);
    /* Long enough for several rounds; the bound below counts the time it really took. */
    while ((test_seconds() - start) * 1000 < 20.0 * persist_ms) {
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    store_stats_get(s, &after);
    int64_t elapsed = (int64_t)((test_seconds() - start) * 1000);
    atomic_store(&t.stop, true);
    CHECK(pthread_join(thread, NULL) == 0);

    uint64_t commits = after.commits - before.commits;
    uint64_t rounds_allowed = (uint64_t)(elapsed / persist_ms) + 2; /* one transaction a round for one object */
    CHECK(t.touches > 1000); /* the touches did run alongside the rounds */
    CHECK(commits >= 1);     /* and the rounds did persist them */
    CHECK(commits <= rounds_allowed);
    if (commits > rounds_allowed)
        fprintf(stderr, "recency: %llu commits in %lld ms, at most %llu rounds\n", (unsigned long long)commits,
                (long long)elapsed, (unsigned long long)rounds_allowed);
    store_close(s);
    test_dir_remove(&d);
    free(buf);
}

int main(void)
{
    test_log_init(&evict_log);
    test_lru_order();
    test_touch_and_pin();
    test_size_aware();
    test_three_times_budget();
    CHECK(evict_log.lines[0] == 0 && evict_log.lines[1] == 0);
    test_map_full();
    CHECK(evict_log.lines[0] == 0 && evict_log.lines[1] == 0);
    test_recency_persist_ends_under_touches();
    CHECK(evict_log.lines[0] == 0 && evict_log.lines[1] == 0);
    UNIT_DONE();
}
