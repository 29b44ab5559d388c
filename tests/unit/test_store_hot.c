/*
 * test_store_hot.c - a thread's copies of small objects (store/hot.c): a
 * copy holds exactly the bytes of the version asked for, made once from the
 * store and then reused; another generation or size never gets it; objects
 * too big, in several chunks or not stored get none; the budget holds, the
 * least recently used going first; and a copy a response still holds
 * outlives its eviction and the table itself.
 *
 * Checked against broken tables: with the generation left out of the match,
 * a new generation was served the old bytes (3 checks fail); with the
 * refcount ignored, so that an evicted copy is freed at once, the sanitizer
 * build reports a heap-use-after-free; with no eviction, the budget checks fail
 * (3 checks).
 */
#include "store_internal.h"
#include "test_store_util.h"

#define SMALL 4096

static store_t *open_store(const test_dir_t *d)
{
    store_config_t c = test_config(d, 256 * TEST_MiB, NULL);
    store_t *s = NULL;
    CHECK(store_open(&s, &c) == STORE_OK);
    return s;
}

/* Whether copy holds the test pattern of name/gen, size bytes (one chunk). */
static bool holds_pattern(const store_hot_object_t *copy, const char *name, int64_t gen, uint64_t size)
{
    char *want = malloc(size);
    if (want == NULL)
        return false;
    test_pattern(want, size, name, gen, 0);
    bool same = copy != NULL && memcmp(store_hot_bytes(copy), want, size) == 0;
    free(want);
    return same;
}

static store_hot_stats_t stats_of(store_hot_t *hot)
{
    store_hot_stats_t st = {0};
    store_hot_stats_add(hot, &st);
    return st;
}

static void test_versions(void)
{
    test_dir_t d;
    test_dir_make(&d, "test_store_hot");
    store_t *s = open_store(&d);
    void *buf = test_alloc_chunk();
    store_reader_t *reader = store_reader_new(s);
    store_hot_t *hot = store_hot_new(reader, 1 * TEST_MiB);
    CHECK(reader != NULL && hot != NULL);
    store_key_t key;
    test_key(&key, "a");

    CHECK(store_hot_get(hot, &key, 1, SMALL) == NULL); /* not stored: no copy */
    CHECK(test_fill(s, "a", 1, SMALL, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    store_hot_object_t *first = store_hot_get(hot, &key, 1, SMALL);
    CHECK(holds_pattern(first, "a", 1, SMALL));
    store_hot_object_t *again = store_hot_get(hot, &key, 1, SMALL);
    CHECK(again == first); /* made once, then reused */
    store_hot_stats_t st = stats_of(hot);
    CHECK(st.loads == 1 && st.hits == 1 && st.objects == 1);
    CHECK(store_hot_get(hot, &key, 1, SMALL - 1) == NULL); /* another size is another version: the store has none */

    /* A new generation: its own bytes, never the old copy's. */
    CHECK(test_fill(s, "a", 2, SMALL, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    store_hot_object_t *second = store_hot_get(hot, &key, 2, SMALL);
    CHECK(second != NULL && second != first);
    CHECK(holds_pattern(second, "a", 2, SMALL));
    CHECK(!holds_pattern(second, "a", 1, SMALL));
    /* The old generation's copy was dropped for it, while the responses holding it still read it whole. */
    CHECK(stats_of(hot).objects == 1);
    CHECK(holds_pattern(first, "a", 1, SMALL));
    store_hot_release(again);
    store_hot_release(first);
    store_hot_release(second);

    /* None for what is not one small chunk. */
    CHECK(test_fill(s, "big", 1, STORE_HOT_MAX_OBJECT + 1, buf) == STORE_OK);
    CHECK(test_fill(s, "multi", 1, STORE_CHUNK_SIZE + 10, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    test_key(&key, "big");
    CHECK(store_hot_get(hot, &key, 1, STORE_HOT_MAX_OBJECT + 1) == NULL);
    test_key(&key, "multi");
    CHECK(store_hot_get(hot, &key, 1, STORE_CHUNK_SIZE + 10) == NULL);
    CHECK(store_hot_get(NULL, &key, 1, SMALL) == NULL);

    store_hot_free(hot);
    store_reader_free(reader);
    free(buf);
    store_close(s);
    test_dir_remove(&d);
}

static void test_budget(void)
{
    test_dir_t d;
    test_dir_make(&d, "test_store_hot_budget");
    store_t *s = open_store(&d);
    void *buf = test_alloc_chunk();
    store_reader_t *reader = store_reader_new(s);
    /* Room for three copies of 60 KiB, not four. */
    const uint64_t size = 60 * 1024, budget = 3 * size + 3 * 256;
    store_hot_t *hot = store_hot_new(reader, budget);
    CHECK(hot != NULL);
    const char *names[] = {"o0", "o1", "o2", "o3", "o4"};
    for (size_t i = 0; i < 5; i++)
        CHECK(test_fill(s, names[i], 1, size, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);

    store_key_t key;
    store_hot_object_t *held = NULL;
    for (size_t i = 0; i < 3; i++) {
        test_key(&key, names[i]);
        store_hot_object_t *copy = store_hot_get(hot, &key, 1, size);
        CHECK(copy != NULL);
        if (i == 0)
            held = copy; /* a response still sending o0 */
        else
            store_hot_release(copy);
    }
    test_key(&key, names[1]); /* o1 used again: o0 is now the least recently used */
    store_hot_release(store_hot_get(hot, &key, 1, size));
    test_key(&key, names[3]);
    store_hot_release(store_hot_get(hot, &key, 1, size));
    store_hot_stats_t st = stats_of(hot);
    CHECK(st.evictions == 1 && st.objects == 3);
    CHECK(st.bytes <= budget);
    /* o0 went, though a response holds it: its bytes stay whole for that response. */
    CHECK(holds_pattern(held, "o0", 1, size));
    test_key(&key, names[1]);
    store_hot_object_t *kept = store_hot_get(hot, &key, 1, size);
    CHECK(stats_of(hot).loads == 4 && kept != NULL); /* o1 was kept: a hit, no new copy */
    test_key(&key, names[4]);
    store_hot_release(store_hot_get(hot, &key, 1, size));
    CHECK(stats_of(hot).bytes <= budget);

    store_hot_free(hot); /* copies still held outlive the table */
    CHECK(holds_pattern(held, "o0", 1, size) && holds_pattern(kept, "o1", 1, size));
    store_hot_release(held);
    store_hot_release(kept);
    store_hot_t *none = store_hot_new(reader, 0); /* store.hot_bytes 0: no copies */
    CHECK(none != NULL && store_hot_get(none, &key, 1, size) == NULL);
    store_hot_free(none);
    store_reader_free(reader);
    free(buf);
    store_close(s);
    test_dir_remove(&d);
}

int main(void)
{
    test_versions();
    test_budget();
    UNIT_DONE();
}
