/*
 * test_store_visibility.c - what readers see between a call and the commit
 * that carries it out.
 *
 * An invalidation is visible at once: from store_invalidate's return, every
 * read of the key says absent, until a fill queued after it commits. Most
 * tests here run with a commit interval far longer than the test, so the
 * writer commits only when store_sync asks: "at once" cannot be the writer
 * having been quick. Also here: store_meta_update keeps the caller's
 * fill_time (in whatever unit the caller uses) across commits and restarts.
 */
#include <stdatomic.h>

#include "test_store_util.h"

/* Far longer than any test: the writer commits only for store_sync (or a full batch, which these never reach). */
#define NEVER_MS 600000

static store_t *open_store(const test_dir_t *d, unsigned commit_interval_ms)
{
    store_config_t c = test_config(d, 256 * TEST_MiB, NULL);
    store_t *s = NULL;

    c.commit_interval_ms = commit_interval_ms;
    CHECK(store_open(&s, &c) == STORE_OK);
    CHECK(s != NULL);
    return s;
}

/* The generation store_meta_get reports for name, or the error it returned. */
static int64_t cached_generation(store_t *s, const char *name)
{
    store_meta_t m;
    store_key_t key;
    int64_t gen;
    int rc;

    test_key(&key, name);
    if ((rc = store_meta_get(s, &key, &m)) != STORE_OK)
        return rc;
    gen = m.generation;
    store_meta_free(&m);
    return gen;
}

/* Whether no chunk of name/gen is present or readable. */
static bool chunks_absent(store_t *s, const char *name, int64_t gen, uint32_t n, void *buf)
{
    store_key_t key;
    bool absent = true;

    test_key(&key, name);
    for (uint32_t i = 0; i < n; i++) {
        absent &= !store_chunk_present(s, &key, gen, i);
        absent &= store_chunk_read(s, &key, gen, i, buf, STORE_CHUNK_SIZE) == STORE_NOT_FOUND;
    }
    return absent;
}

/* Whether every chunk of name/gen is present and reads back exactly. */
static bool chunks_exact(store_t *s, const char *name, int64_t gen, uint64_t size, void *buf, void *want)
{
    store_key_t key;
    bool exact = true;

    test_key(&key, name);
    for (uint32_t i = 0; i < test_num_chunks(size); i++) {
        exact &= store_chunk_present(s, &key, gen, i);
        exact &= test_check_chunk(s, name, gen, size, i, buf, want) == STORE_OK;
    }
    return exact;
}

static uint64_t committed_objects(store_t *s)
{
    store_stats_t st;

    store_stats_get(s, &st); /* the index mirrors commits only */
    return st.objects;
}

static void test_invalidate_at_once(const test_dir_t *d)
{
    const uint64_t size = 2 * STORE_CHUNK_SIZE + 100;
    store_t *s = open_store(d, NEVER_MS);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_meta_t m;
    store_key_t key;
    char name[32];

    test_key(&key, "vis/obj");
    CHECK(test_fill(s, "vis/obj", 1, size, buf) == STORE_OK);
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof(name), "vis/other/%d", i);
        CHECK(test_fill(s, name, 1, 100, buf) == STORE_OK);
    }
    CHECK(store_sync(s) == STORE_OK);
    CHECK(cached_generation(s, "vis/obj") == 1);
    CHECK(chunks_exact(s, "vis/obj", 1, size, buf, want));

    /* Invalidated: absent at once, while LMDB (and so the index) still hold it. */
    CHECK(store_invalidate(s, &key) == STORE_OK);
    CHECK(store_meta_get(s, &key, &m) == STORE_NOT_FOUND);
    CHECK(chunks_absent(s, "vis/obj", 1, 3, buf));
    CHECK(committed_objects(s) == 65);
    /* Other keys, many of them sharing its stripe, are untouched. */
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof(name), "vis/other/%d", i);
        CHECK(cached_generation(s, name) == 1);
        CHECK(chunks_exact(s, name, 1, 100, buf, want));
    }

    /* A new version queued after it stays hidden until it commits, then shows. */
    CHECK(test_fill(s, "vis/obj", 2, size, buf) == STORE_OK);
    CHECK(cached_generation(s, "vis/obj") == STORE_NOT_FOUND);
    CHECK(chunks_absent(s, "vis/obj", 2, 3, buf));
    CHECK(store_sync(s) == STORE_OK);
    CHECK(cached_generation(s, "vis/obj") == 2);
    CHECK(chunks_exact(s, "vis/obj", 2, size, buf, want));
    CHECK(chunks_absent(s, "vis/obj", 1, 3, buf));

    /* A fill queued before an invalidation does not bring the object back. */
    CHECK(test_fill(s, "vis/obj", 3, size, buf) == STORE_OK);
    CHECK(store_invalidate(s, &key) == STORE_OK);
    CHECK(cached_generation(s, "vis/obj") == STORE_NOT_FOUND);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(cached_generation(s, "vis/obj") == STORE_NOT_FOUND);
    CHECK(chunks_absent(s, "vis/obj", 3, 3, buf));
    CHECK(committed_objects(s) == 64);

    /* Invalidated twice, refilled between: only a fill after the second shows. */
    CHECK(test_fill(s, "vis/obj", 4, size, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(store_invalidate(s, &key) == STORE_OK);
    CHECK(test_fill(s, "vis/obj", 5, size, buf) == STORE_OK);
    CHECK(store_invalidate(s, &key) == STORE_OK);
    CHECK(cached_generation(s, "vis/obj") == STORE_NOT_FOUND);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(cached_generation(s, "vis/obj") == STORE_NOT_FOUND);
    CHECK(test_fill(s, "vis/obj", 6, size, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(cached_generation(s, "vis/obj") == 6);
    CHECK(chunks_exact(s, "vis/obj", 6, size, buf, want));

    /* Invalidating what is not cached is harmless, and closing commits a pending invalidation. */
    test_key(&key, "vis/never");
    CHECK(store_invalidate(s, &key) == STORE_OK);
    CHECK(cached_generation(s, "vis/never") == STORE_NOT_FOUND);
    test_key(&key, "vis/other/7");
    CHECK(store_invalidate(s, &key) == STORE_OK);
    store_close(s);
    s = open_store(d, NEVER_MS);
    CHECK(cached_generation(s, "vis/other/7") == STORE_NOT_FOUND);
    CHECK(cached_generation(s, "vis/other/8") == 1);
    CHECK(cached_generation(s, "vis/obj") == 6);
    CHECK(committed_objects(s) == 64);
    store_close(s);
    free(buf);
    free(want);
}

/* ---- one thread invalidates, another reads and refills ---- */

typedef struct handoff {
    store_t *store;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int step; /* 1: invalidated (main); 2: refilled and checked (helper) */
    int failures;
} handoff_t;

static void handoff_wait(handoff_t *h, int step)
{
    pthread_mutex_lock(&h->lock);
    while (h->step < step)
        pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
}

static void handoff_post(handoff_t *h, int step)
{
    pthread_mutex_lock(&h->lock);
    h->step = step;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* The other thread: sees the invalidation at once, refills, and sees its refill once synced. */
static void *refiller(void *arg)
{
    handoff_t *h = arg;
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    const uint64_t size = STORE_CHUNK_SIZE + 7;

    handoff_wait(h, 1);
    h->failures += cached_generation(h->store, "hand/obj") != STORE_NOT_FOUND;
    h->failures += !chunks_absent(h->store, "hand/obj", 1, 2, buf);
    h->failures += test_fill(h->store, "hand/obj", 2, size, buf) != STORE_OK;
    h->failures += cached_generation(h->store, "hand/obj") != STORE_NOT_FOUND; /* queued, not committed */
    h->failures += store_sync(h->store) != STORE_OK;
    h->failures += cached_generation(h->store, "hand/obj") != 2;
    h->failures += !chunks_exact(h->store, "hand/obj", 2, size, buf, want);
    handoff_post(h, 2);
    free(buf);
    free(want);
    return NULL;
}

static void test_handoff(const test_dir_t *d)
{
    const uint64_t size = STORE_CHUNK_SIZE + 7;
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    handoff_t h;
    store_key_t key;
    pthread_t t;

    memset(&h, 0, sizeof(h));
    h.store = open_store(d, NEVER_MS);
    pthread_mutex_init(&h.lock, NULL);
    pthread_cond_init(&h.cond, NULL);
    CHECK(pthread_create(&t, NULL, refiller, &h) == 0);
    test_key(&key, "hand/obj");
    CHECK(test_fill(h.store, "hand/obj", 1, size, buf) == STORE_OK);
    CHECK(store_sync(h.store) == STORE_OK);
    CHECK(cached_generation(h.store, "hand/obj") == 1);
    CHECK(store_invalidate(h.store, &key) == STORE_OK);
    handoff_post(&h, 1);
    handoff_wait(&h, 2);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(h.failures == 0);
    /* And this thread sees the refill too. */
    CHECK(cached_generation(h.store, "hand/obj") == 2);
    CHECK(chunks_exact(h.store, "hand/obj", 2, size, buf, want));
    store_close(h.store);
    pthread_cond_destroy(&h.cond);
    pthread_mutex_destroy(&h.lock);
    free(buf);
    free(want);
}

/* ---- invalidations and refills racing a reader, with the usual short commit interval ---- */

#define RACE_ROUNDS 400
#define RACE_SIZE ((uint64_t)3000)

typedef struct race {
    store_t *store;
    _Atomic int64_t invalidated; /* round r's invalidation has returned: generation r is gone */
    _Atomic bool stop;
} race_t;

/* One reader's view; each reader counts in its own. */
typedef struct race_reader {
    race_t *race;
    long reads, hits, stale, wrong;
} race_reader_t;

/*
 * Generation r is filled in round r - 1 and invalidated in round r; round
 * r's fill (generation r + 1) is queued after that invalidation. So once a
 * reader has seen invalidated == r, no generation <= r may be served.
 */
static void *race_reader(void *arg)
{
    race_reader_t *rr = arg;
    race_t *r = rr->race;
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_key_t key;

    test_key(&key, "race/obj");
    while (!atomic_load(&r->stop)) {
        int64_t gone = atomic_load(&r->invalidated); /* before the read: what it must no longer see */
        int64_t gen = cached_generation(r->store, "race/obj");
        int rc;

        rr->reads++;
        if (gen >= 0) {
            rr->hits++;
            rr->stale += gen <= gone;
            rc = test_check_chunk(r->store, "race/obj", gen, RACE_SIZE, 0, buf, want);
            rr->wrong += rc != STORE_OK && rc != STORE_NOT_FOUND;
        } else {
            rr->wrong += gen != STORE_NOT_FOUND;
        }
        if (gone > 0) {
            rr->stale += store_chunk_present(r->store, &key, gone, 0);
            rr->stale += store_chunk_read(r->store, &key, gone, 0, buf, STORE_CHUNK_SIZE) != STORE_NOT_FOUND;
        }
    }
    free(buf);
    free(want);
    return NULL;
}

static void test_race(const test_dir_t *d)
{
    void *buf = test_alloc_chunk();
    pthread_t readers[2];
    race_reader_t views[2];
    store_key_t key;
    race_t r;
    long reads = 0, hits = 0, stale = 0, wrong = 0;

    memset(&r, 0, sizeof(r));
    memset(views, 0, sizeof(views));
    r.store = open_store(d, 2);
    test_key(&key, "race/obj");
    CHECK(test_fill(r.store, "race/obj", 1, RACE_SIZE, buf) == STORE_OK);
    CHECK(store_sync(r.store) == STORE_OK);
    for (int i = 0; i < 2; i++) {
        views[i].race = &r;
        CHECK(pthread_create(&readers[i], NULL, race_reader, &views[i]) == 0);
    }
    for (int64_t round = 1; round <= RACE_ROUNDS; round++) {
        CHECK(store_invalidate(r.store, &key) == STORE_OK);
        atomic_store(&r.invalidated, round);
        CHECK(test_fill(r.store, "race/obj", round + 1, RACE_SIZE, buf) == STORE_OK);
        /* Let some versions commit and be read, sometimes for certain. */
        if (round % 8 == 0)
            CHECK(store_sync(r.store) == STORE_OK);
        else
            usleep(round % 3 == 0 ? 3000 : 200);
    }
    atomic_store(&r.stop, true);
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_join(readers[i], NULL) == 0);
        reads += views[i].reads, hits += views[i].hits, stale += views[i].stale, wrong += views[i].wrong;
    }
    printf("race: %ld reads, %ld hits, %ld stale, %ld wrong\n", reads, hits, stale, wrong);
    CHECK(stale == 0 && wrong == 0);
    CHECK(hits > 0);
    CHECK(store_sync(r.store) == STORE_OK);
    CHECK(cached_generation(r.store, "race/obj") == RACE_ROUNDS + 1);
    store_close(r.store);
    free(buf);
}

/* ---- fill_time: the caller's, kept as given ---- */

static void test_fill_time(const test_dir_t *d)
{
    const int64_t filled_ms = 1700000000123LL, revalidated_ms = 1700000654321LL;
    const uint64_t size = STORE_CHUNK_SIZE + 10;
    store_t *s = open_store(d, NEVER_MS);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_meta_t m = test_meta("ft/obj", 9, size), got;
    store_key_t key;
    int64_t last_access;

    test_key(&key, "ft/obj");
    m.fill_time = filled_ms;
    CHECK(store_fill_begin(s, &key, &m) == STORE_OK);
    CHECK(test_put_chunk(s, "ft/obj", 9, size, 0, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(store_meta_get(s, &key, &got) == STORE_OK);
    CHECK(got.fill_time == filled_ms);
    /* last_access is the store's own, in seconds: not taken from fill_time. */
    CHECK(got.last_access > 0 && got.last_access <= (int64_t)time(NULL) + 1 && got.last_access < filled_ms / 100);
    last_access = got.last_access;
    store_meta_free(&got);

    /* A revalidation restarts the window: the new fill_time is kept, and nothing else of the store's changes. */
    m.fill_time = revalidated_ms;
    m.metageneration = 2;
    m.size = 5; /* a confused caller: the chunks were cut to the recorded size, which stays */
    m.cache_control = "max-age=60";
    CHECK(store_meta_update(s, &key, &m) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(store_meta_get(s, &key, &got) == STORE_OK);
    CHECK(got.fill_time == revalidated_ms && got.metageneration == 2);
    CHECK_STR(got.cache_control, "max-age=60");
    CHECK(got.size == size && got.num_chunks == 2 && got.chunks_present == 1);
    CHECK(got.last_access == last_access);
    store_meta_free(&got);
    CHECK(test_check_chunk(s, "ft/obj", 9, size, 0, buf, want) == STORE_OK);
    CHECK(test_put_chunk(s, "ft/obj", 9, size, 1, buf) == STORE_OK);
    store_touch(s, &key);
    store_close(s); /* persists recency too: that rewrite keeps fill_time */

    s = open_store(d, NEVER_MS);
    CHECK(store_meta_get(s, &key, &got) == STORE_OK);
    CHECK(got.fill_time == revalidated_ms && got.metageneration == 2);
    CHECK(got.chunks_present == 2);
    store_meta_free(&got);
    CHECK(chunks_exact(s, "ft/obj", 9, size, buf, want));

    /* Zero is a value like any other: not replaced by the store's clock. */
    m = test_meta("ft/zero", 1, 10);
    test_key(&key, "ft/zero");
    CHECK(store_fill_begin(s, &key, &m) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(store_meta_get(s, &key, &got) == STORE_OK);
    CHECK(got.fill_time == 0);
    store_meta_free(&got);
    store_close(s);
    free(buf);
    free(want);
}

static void in_fresh_dir(void (*test)(const test_dir_t *d))
{
    test_dir_t d;

    test_dir_make(&d, "test_store_visibility");
    test(&d);
    CHECK(broken_copies(&d) == 0);
    test_dir_remove(&d);
}

int main(void)
{
    in_fresh_dir(test_invalidate_at_once);
    in_fresh_dir(test_handoff);
    in_fresh_dir(test_race);
    in_fresh_dir(test_fill_time);
    UNIT_DONE();
}
