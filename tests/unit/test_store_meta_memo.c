/*
 * test_store_meta_memo.c - a thread's memo of decoded metadata records
 * (store_meta_get_memo) says what store_meta_get says, at every moment a
 * caller could tell them apart: after a metadata update, a chunk reported
 * durable, an invalidation not yet committed, a refill with a newer
 * generation, and across slot collisions. A memo that kept an entry across
 * a commit fails the update and durable-chunk checks; one that looked at the
 * memo before the hidden keys fails the invalidation check.
 */
#include <stdatomic.h>

#include "test_store_util.h"

static store_t *open_store(const test_dir_t *d)
{
    store_config_t c = test_config(d, 256 * TEST_MiB, NULL);
    store_t *s = NULL;
    CHECK(store_open(&s, &c) == STORE_OK);
    CHECK(s != NULL);
    return s;
}

static bool same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The memo's answer for name equals store_meta_get's, field by field; returns that answer's code. */
static int check_agrees(store_t *s, store_meta_memo_t *memo, const char *name)
{
    store_key_t key;
    test_key(&key, name);
    store_meta_t want, got;
    int want_rc = store_meta_get(s, &key, &want), got_rc = store_meta_get_memo(memo, &key, &got);
    CHECK(want_rc == got_rc);
    if (want_rc == STORE_OK && got_rc == STORE_OK) {
        CHECK(got.generation == want.generation && got.metageneration == want.metageneration);
        CHECK(got.size == want.size && got.num_chunks == want.num_chunks);
        CHECK(got.chunks_present == want.chunks_present && got.fill_time == want.fill_time);
        CHECK(same_string(got.bucket, want.bucket) && same_string(got.name, want.name));
        CHECK(same_string(got.etag, want.etag) && same_string(got.content_type, want.content_type));
        CHECK(same_string(got.content_encoding, want.content_encoding));
        CHECK(same_string(got.md5, want.md5) && same_string(got.crc32c, want.crc32c));
        CHECK(same_string(got.resource_json, want.resource_json) && same_string(got.owner, want.owner));
    }
    store_meta_free(&want);
    store_meta_free(&got);
    return got_rc;
}

typedef struct outcome_flag {
    atomic_int outcomes, durable;
} outcome_flag_t;

static void on_chunk_done(void *ctx, uint32_t index, store_chunk_outcome_t outcome)
{
    (void)index;
    outcome_flag_t *flag = ctx;
    if (outcome == STORE_CHUNK_DURABLE)
        atomic_fetch_add(&flag->durable, 1);
    atomic_fetch_add(&flag->outcomes, 1);
}

static void test_follows_commits(const test_dir_t *d)
{
    store_t *s = open_store(d);
    store_meta_memo_t *memo = store_meta_memo_new(s);
    CHECK(memo != NULL);
    store_key_t key;
    test_key(&key, "memo/obj");
    CHECK(check_agrees(s, memo, "memo/obj") == STORE_NOT_FOUND);

    store_meta_t m = test_meta("memo/obj", 7, 2 * STORE_CHUNK_SIZE);
    CHECK(store_fill_begin(s, &key, &m) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(check_agrees(s, memo, "memo/obj") == STORE_OK);
    CHECK(check_agrees(s, memo, "memo/obj") == STORE_OK); /* from the memo this time */

    /* What the memo hands out is the caller's: changing and freeing it leaves the memo whole. */
    store_meta_t got;
    CHECK(store_meta_get_memo(memo, &key, &got) == STORE_OK);
    CHECK(got.string_block != NULL && got.chunks_present == 0);
    store_meta_set_string(&got, &got.etag, strdup("\"changed\""));
    store_meta_free(&got);
    CHECK(check_agrees(s, memo, "memo/obj") == STORE_OK);

    /*
     * A metadata update, heard of through store_sync. A hit still holding
     * the entry the update replaced keeps its strings whole: the memo shares
     * them, and frees them only with the last holder (ASan checks that in CI).
     */
    store_meta_t held;
    CHECK(store_meta_get_memo(memo, &key, &held) == STORE_OK);
    CHECK(held.string_block_owner != NULL);
    m.metageneration = 5;
    m.content_type = "text/plain";
    CHECK(store_meta_update(s, &key, &m) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(store_meta_get_memo(memo, &key, &got) == STORE_OK);
    CHECK(got.metageneration == 5 && strcmp(got.content_type, "text/plain") == 0);
    store_meta_free(&got);
    CHECK(store_meta_get_memo(memo, &key, &got) == STORE_OK); /* from the memo, which let go of the old entry */
    CHECK(got.string_block_owner != NULL && got.string_block_owner != held.string_block_owner);
    CHECK(held.metageneration == 1 && strcmp(held.content_type, "application/octet-stream") == 0);
    CHECK(strcmp(held.resource_json, "{\"kind\":\"storage#object\"}") == 0);
    store_meta_t copy;
    CHECK(store_meta_copy(&copy, &held) == STORE_OK && copy.string_block_owner == NULL);
    store_meta_free(&held);
    CHECK(strcmp(copy.content_type, "application/octet-stream") == 0);
    store_meta_free(&copy);
    store_meta_free(&got);

    /* A chunk, heard of through its outcome alone: no store_sync. */
    void *buf = test_alloc_chunk();
    outcome_flag_t flag = {0, 0};
    test_pattern(buf, STORE_CHUNK_SIZE, "memo/obj", 7, 0);
    CHECK(store_chunk_put(s, &key, 7, 0, buf, STORE_CHUNK_SIZE, on_chunk_done, &flag) == STORE_OK);
    int64_t deadline = wall_ms() + 120000; /* a bound on a hang, not a timing assumption */
    while (atomic_load(&flag.outcomes) == 0 && wall_ms() < deadline) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK(atomic_load(&flag.durable) == 1);
    CHECK(store_meta_get_memo(memo, &key, &got) == STORE_OK);
    CHECK(got.chunks_present == 1);
    store_meta_free(&got);

    /* An invalidation is seen at once, before the writer commits it, and after. */
    CHECK(store_invalidate(s, &key) == STORE_OK);
    CHECK(store_meta_get_memo(memo, &key, &got) == STORE_NOT_FOUND);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(check_agrees(s, memo, "memo/obj") == STORE_NOT_FOUND);

    /* A refill with a newer generation. */
    m = test_meta("memo/obj", 9, 10);
    CHECK(store_fill_begin(s, &key, &m) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(store_meta_get_memo(memo, &key, &got) == STORE_OK);
    CHECK(got.generation == 9 && got.size == 10);
    store_meta_free(&got);

    free(buf);
    store_meta_memo_free(memo);
    store_close(s);
}

/* Many more objects than the memo has slots, read in rounds: each answer is its own object's. */
static void test_collisions(const test_dir_t *d)
{
    store_t *s = open_store(d);
    store_meta_memo_t *memo = store_meta_memo_new(s);
    CHECK(memo != NULL);
    char name[64];
    enum { OBJECTS = 700 };
    for (int i = 0; i < OBJECTS; i++) {
        snprintf(name, sizeof(name), "memo/many-%d", i);
        store_meta_t m = test_meta(name, 100 + i, (uint64_t)i);
        store_key_t key;
        test_key(&key, name);
        CHECK(store_fill_begin(s, &key, &m) == STORE_OK);
    }
    CHECK(store_sync(s) == STORE_OK);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < OBJECTS; i++) {
            int at = round == 1 ? OBJECTS - 1 - i : i;
            snprintf(name, sizeof(name), "memo/many-%d", at);
            store_key_t key;
            test_key(&key, name);
            store_meta_t got;
            CHECK(store_meta_get_memo(memo, &key, &got) == STORE_OK);
            CHECK(got.generation == 100 + at && got.size == (uint64_t)at && strcmp(got.name, name) == 0);
            store_meta_free(&got);
        }
    }
    store_meta_memo_free(memo);
    store_close(s);
}

static void in_fresh_dir(void (*test)(const test_dir_t *d))
{
    test_dir_t d;
    test_dir_make(&d, "test_store_meta_memo");
    test(&d);
    test_dir_remove(&d);
}

int main(void)
{
    in_fresh_dir(test_follows_commits);
    in_fresh_dir(test_collisions);
    UNIT_DONE();
}
