/*
 * test_store_transient.c - transient objects (store_meta_t.transient): a
 * run's scratch data, readable, evictable and invalidated like any object,
 * that store_open removes, records and chunks, so a restart or a kill -9
 * never leaves one behind. Also: records written before the flag existed
 * (magic LDM1) still open and read as not transient.
 *
 * The restart, crash and update tests fail without the removal in
 * store_open (writer.c's start_up): the transient object then reopens
 * whole, so its record and chunks, the stats, the raw LMDB counts and the
 * log line all disagree with what is checked here.
 */
#include <lmdb.h>
#include <signal.h>
#include <sys/wait.h>

#include "crc32c.h"
#include "test_store_util.h"

#define BUDGET (64 * TEST_MiB)
/* The levels config->log receives (store_internal.h's STORE_LOG_*). */
#define LEVEL_ERROR 0
#define LEVEL_WARN 1
#define LEVEL_INFO 2

/* A normal object that every test keeps beside the transient ones, and checks is untouched. */
#define NORMAL_NAME "normal/kept"
#define NORMAL_GEN 7
#define NORMAL_SIZE (2 * STORE_CHUNK_SIZE - 5)

/* The transient object: several chunks, the last one short. */
#define SCRATCH_SIZE (3 * STORE_CHUNK_SIZE + 1000)

static store_t *open_store(const test_dir_t *d, uint64_t budget, test_log_t *log)
{
    store_config_t c = test_config(d, budget, log);
    store_t *s = NULL;

    CHECK(store_open(&s, &c) == STORE_OK);
    CHECK(s != NULL);
    return s;
}

/* test_fill, transient: the first chunks of size (STORE_SIZE_UNKNOWN: full ones, as an upload's are). */
static int fill_transient_chunks(store_t *s, const char *name, int64_t gen, uint64_t size, uint32_t chunks, void *buf)
{
    store_meta_t m = test_meta(name, gen, size);
    store_key_t key;

    m.transient = true;
    test_key(&key, name);
    int rc = store_fill_begin(s, &key, &m);
    for (uint32_t i = 0; rc == STORE_OK && i < chunks; i++)
        rc = test_put_chunk(s, name, gen, size, i, buf);
    return rc;
}

static int fill_transient(store_t *s, const char *name, int64_t gen, uint64_t size, void *buf)
{
    return fill_transient_chunks(s, name, gen, size, test_num_chunks(size), buf);
}

/* A transient fill of unknown length, as an upload's is, with its first full chunks in. */
static int fill_transient_unsized(store_t *s, const char *name, int64_t gen, uint32_t full_chunks, void *buf)
{
    return fill_transient_chunks(s, name, gen, STORE_SIZE_UNKNOWN, full_chunks, buf);
}

/* The object's record says transient (want) and holds every chunk of size. */
static void check_flag(store_t *s, const char *name, bool want, uint64_t size)
{
    store_meta_t m;
    store_key_t key;

    test_key(&key, name);
    CHECK(store_meta_get(s, &key, &m) == STORE_OK);
    CHECK(m.transient == want);
    CHECK(m.size == size && m.chunks_present == test_num_chunks(size));
    store_meta_free(&m);
}

/* No record, and no chunk of generation gen below chunks, for any reader. */
static void check_gone(store_t *s, const char *name, int64_t gen, uint32_t chunks)
{
    void *buf = test_alloc_chunk();
    store_meta_t m;
    store_key_t key;

    test_key(&key, name);
    CHECK(store_meta_get(s, &key, &m) == STORE_NOT_FOUND);
    for (uint32_t i = 0; i < chunks; i++) {
        CHECK(!store_chunk_present(s, &key, gen, i));
        CHECK(store_chunk_read(s, &key, gen, i, buf, STORE_CHUNK_SIZE) == STORE_NOT_FOUND);
    }
    free(buf);
}

/* Every chunk of name/gen reads back byte for byte. */
static void check_chunks(store_t *s, const char *name, int64_t gen, uint64_t size)
{
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();

    for (uint32_t i = 0; i < test_num_chunks(size); i++)
        CHECK(test_check_chunk(s, name, gen, size, i, buf, want) == STORE_OK);
    free(buf);
    free(want);
}

/* The normal object, as filled: its record, not transient, and every chunk. */
static void check_normal(store_t *s)
{
    store_meta_t m;
    store_key_t key;

    test_key(&key, NORMAL_NAME);
    CHECK(store_meta_get(s, &key, &m) == STORE_OK);
    CHECK_STR(m.name, NORMAL_NAME);
    CHECK(m.generation == NORMAL_GEN && m.size == NORMAL_SIZE && !m.transient);
    CHECK(m.chunks_present == test_num_chunks(NORMAL_SIZE));
    store_meta_free(&m);
    check_chunks(s, NORMAL_NAME, NORMAL_GEN, NORMAL_SIZE);
}

static void fill_normal(store_t *s)
{
    void *buf = test_alloc_chunk();

    CHECK(test_fill(s, NORMAL_NAME, NORMAL_GEN, NORMAL_SIZE, buf) == STORE_OK);
    free(buf);
}

static void update(store_t *s, const char *name, int64_t gen, uint64_t size, bool transient);

/*
 * What a store holding the normal object alone accounts (after the update
 * test's update, which changes its record's length, when updated): what must
 * be left once the transient ones go.
 */
static uint64_t normal_alone_bytes(bool updated)
{
    test_dir_t d;
    store_stats_t st;

    test_dir_make(&d, "test_store_transient_ref");
    store_t *s = open_store(&d, BUDGET, NULL);
    fill_normal(s);
    if (updated)
        update(s, NORMAL_NAME, NORMAL_GEN, NORMAL_SIZE, false);
    CHECK(store_sync(s) == STORE_OK);
    store_stats_get(s, &st);
    store_close(s);
    test_dir_remove(&d);
    CHECK(st.objects == 1 && st.used_bytes > 0);
    return st.used_bytes;
}

/* The store holds the normal object and nothing else, in the index's accounting. */
static void check_only_normal(store_t *s, uint64_t normal_bytes)
{
    store_stats_t st;

    store_stats_get(s, &st);
    CHECK(st.objects == 1);
    CHECK(st.chunks == test_num_chunks(NORMAL_SIZE));
    CHECK(st.used_bytes == normal_bytes);
}

/* Records and chunks in the LMDB file itself (the store closed): removed means deleted, not merely unindexed. */
static void raw_counts(const test_dir_t *d, size_t *records, size_t *chunks)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, chunk;
    MDB_stat ms, cs;

    *records = *chunks = (size_t)-1;
    CHECK(mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 4) == 0);
    CHECK(mdb_env_open(env, d->store, MDB_RDONLY, 0600) == 0);
    CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
    if (mdb_dbi_open(txn, "meta", 0, &meta) == 0 && mdb_dbi_open(txn, "chunks", 0, &chunk) == 0 &&
        mdb_stat(txn, meta, &ms) == 0 && mdb_stat(txn, chunk, &cs) == 0) {
        *records = ms.ms_entries;
        *chunks = cs.ms_entries;
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static void check_raw(const test_dir_t *d, size_t want_records, size_t want_chunks)
{
    size_t records, chunks;

    raw_counts(d, &records, &chunks);
    CHECK(records == want_records);
    CHECK(chunks == want_chunks);
}

/* The open's one INFO line, "removed N transient object(s) (B bytes) left by the last run"; false if none. */
static bool removal_logged(test_log_t *log, unsigned *objects, unsigned long long *bytes)
{
    pthread_mutex_lock(&log->lock);
    const char *p = strstr(log->last, "removed ");
    bool found = log->lines[LEVEL_INFO] == 1 && p != NULL && strstr(p, "left by the last run") != NULL &&
                 sscanf(p, "removed %u transient object", objects) == 1 && (p = strchr(p, '(')) != NULL &&
                 sscanf(p, "(%llu bytes)", bytes) == 1;
    pthread_mutex_unlock(&log->lock);
    return found;
}

static void log_reset(test_log_t *log)
{
    pthread_mutex_lock(&log->lock);
    memset(log->lines, 0, sizeof(log->lines));
    log->last[0] = log->last_error[0] = '\0';
    pthread_mutex_unlock(&log->lock);
}

/* Nothing went wrong on the way: no warning, no error, and nothing moved aside. */
static void check_clean(const test_dir_t *d, test_log_t *log)
{
    CHECK(log->lines[LEVEL_ERROR] == 0 && log->lines[LEVEL_WARN] == 0);
    CHECK(broken_copies(d) == 0);
}

/* (1) A clean close and reopen: the transient objects are gone, the normal one intact. */
static void test_restart_removes(uint64_t normal_bytes)
{
    const uint32_t scratch_chunks = test_num_chunks(SCRATCH_SIZE) + 2;
    void *buf = test_alloc_chunk();
    test_log_t log;
    test_dir_t d;
    store_stats_t before, after;

    test_log_init(&log);
    test_dir_make(&d, "test_store_transient");
    store_t *s = open_store(&d, BUDGET, &log);
    CHECK(fill_transient(s, "upload/1", 5, SCRATCH_SIZE, buf) == STORE_OK);
    CHECK(fill_transient_unsized(s, "upload/2", 9, 2, buf) == STORE_OK);
    fill_normal(s);
    CHECK(store_sync(s) == STORE_OK);
    /* Within the run, a transient object is read like any other, and says what it is. */
    check_flag(s, "upload/1", true, SCRATCH_SIZE);
    check_chunks(s, "upload/1", 5, SCRATCH_SIZE);
    check_normal(s);
    store_meta_t m;
    store_key_t key;
    test_key(&key, "upload/2");
    CHECK(store_meta_get(s, &key, &m) == STORE_OK);
    CHECK(m.transient && m.size == STORE_SIZE_UNKNOWN && m.chunks_present == 2);
    store_meta_free(&m);
    store_stats_get(s, &before);
    CHECK(before.objects == 3 && before.chunks == scratch_chunks + test_num_chunks(NORMAL_SIZE));
    store_close(s);
    /* Closing removes nothing: it is the next open that does. */
    check_raw(&d, 3, scratch_chunks + test_num_chunks(NORMAL_SIZE));

    log_reset(&log);
    s = open_store(&d, BUDGET, &log);
    check_gone(s, "upload/1", 5, test_num_chunks(SCRATCH_SIZE));
    check_gone(s, "upload/2", 9, 2);
    check_normal(s);
    check_only_normal(s, normal_bytes);
    store_stats_get(s, &after);
    unsigned objects = 0;
    unsigned long long bytes = 0;
    CHECK(removal_logged(&log, &objects, &bytes));
    CHECK(objects == 2 && bytes == before.used_bytes - after.used_bytes && bytes > SCRATCH_SIZE);
    store_close(s);
    check_raw(&d, 1, test_num_chunks(NORMAL_SIZE));

    /* Nothing transient is left, so the next open has nothing to say. */
    log_reset(&log);
    s = open_store(&d, BUDGET, &log);
    CHECK(log.lines[LEVEL_INFO] == 0);
    check_normal(s);
    check_only_normal(s, normal_bytes);
    store_close(s);
    check_clean(&d, &log);
    test_dir_remove(&d);
    free(buf);
}

/*
 * The child of the crash test: commits a transient object and the normal
 * one, tells the parent, then refills a second transient object, generation
 * after generation, until it is killed, so that the kill lands in the middle
 * of transient fills.
 */
static void crash_child(const test_dir_t *d, int ready_fd)
{
    store_config_t c = test_config(d, BUDGET, NULL);
    void *buf = test_alloc_chunk();
    store_t *s = NULL;

    c.commit_interval_ms = 2;
    if (store_open(&s, &c) != STORE_OK)
        _exit(3);
    if (fill_transient(s, "upload/a", 3, SCRATCH_SIZE, buf) != STORE_OK ||
        test_fill(s, NORMAL_NAME, NORMAL_GEN, NORMAL_SIZE, buf) != STORE_OK ||
        fill_transient(s, "upload/b", 100, SCRATCH_SIZE, buf) != STORE_OK || store_sync(s) != STORE_OK)
        _exit(4);
    if (write(ready_fd, "x", 1) != 1)
        _exit(5);
    for (int64_t gen = 101;; gen++) {
        int rc = fill_transient(s, "upload/b", gen, SCRATCH_SIZE, buf);
        if (rc == STORE_BUSY)
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL); /* the queue is full: let the writer catch up */
        else if (rc != STORE_OK)
            _exit(6);
    }
}

/* (2) The same after kill -9: the open that follows the crash removes both transient objects. */
static void test_crash_removes(uint64_t normal_bytes)
{
    test_log_t log;
    test_dir_t d;
    int ready[2];
    char c;

    test_log_init(&log);
    test_dir_make(&d, "test_store_transient_crash");
    CHECK(pipe(ready) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        crash_child(&d, ready[1]);
    }
    CHECK(pid > 0);
    close(ready[1]);
    /* Both transient objects are committed once the child says so; then let it fill a while longer. */
    CHECK(read(ready[0], &c, 1) == 1);
    close(ready[0]);
    nanosleep(&(struct timespec){.tv_nsec = 150 * 1000000}, NULL);
    CHECK(kill(pid, SIGKILL) == 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    store_t *s = open_store(&d, BUDGET, &log);
    check_gone(s, "upload/a", 3, test_num_chunks(SCRATCH_SIZE));
    check_gone(s, "upload/b", 100, test_num_chunks(SCRATCH_SIZE));
    check_normal(s);
    check_only_normal(s, normal_bytes);
    unsigned objects = 0;
    unsigned long long bytes = 0;
    CHECK(removal_logged(&log, &objects, &bytes));
    CHECK(objects == 2 && bytes > SCRATCH_SIZE);
    store_close(s);
    check_raw(&d, 1, test_num_chunks(NORMAL_SIZE));
    check_clean(&d, &log);
    test_dir_remove(&d);
}

/* Replaces name's metadata with a new content type, fill_time and the given transient flag. */
static void update(store_t *s, const char *name, int64_t gen, uint64_t size, bool transient)
{
    store_meta_t m = test_meta(name, gen, size);
    store_key_t key;

    m.content_type = "text/plain";
    m.fill_time = 4321;
    m.transient = transient;
    test_key(&key, name);
    CHECK(store_meta_update(s, &key, &m) == STORE_OK);
}

static void check_updated(store_t *s, const char *name, bool transient)
{
    store_meta_t m;
    store_key_t key;

    test_key(&key, name);
    CHECK(store_meta_get(s, &key, &m) == STORE_OK);
    CHECK_STR(m.content_type, "text/plain");
    CHECK(m.fill_time == 4321 && m.transient == transient);
    store_meta_free(&m);
}

/* (3) store_meta_update keeps the stored flag, both ways, and the next open still removes the updated one. */
static void test_update_keeps_flag(void)
{
    uint64_t normal_bytes = normal_alone_bytes(true);
    void *buf = test_alloc_chunk();
    test_log_t log;
    test_dir_t d;

    test_log_init(&log);
    test_dir_make(&d, "test_store_transient_update");
    store_t *s = open_store(&d, BUDGET, &log);
    CHECK(fill_transient(s, "upload/u", 4, SCRATCH_SIZE, buf) == STORE_OK);
    fill_normal(s);
    CHECK(store_sync(s) == STORE_OK);
    update(s, "upload/u", 4, SCRATCH_SIZE, false);
    update(s, NORMAL_NAME, NORMAL_GEN, NORMAL_SIZE, true);
    CHECK(store_sync(s) == STORE_OK);
    /* The updates took (content type, fill_time), all but the flag. */
    check_updated(s, "upload/u", true);
    check_updated(s, NORMAL_NAME, false);
    check_flag(s, "upload/u", true, SCRATCH_SIZE);
    store_close(s);

    log_reset(&log);
    s = open_store(&d, BUDGET, &log);
    check_gone(s, "upload/u", 4, test_num_chunks(SCRATCH_SIZE));
    check_updated(s, NORMAL_NAME, false);
    check_only_normal(s, normal_bytes);
    unsigned objects = 0;
    unsigned long long bytes = 0;
    CHECK(removal_logged(&log, &objects, &bytes) && objects == 1);
    store_close(s);
    check_raw(&d, 1, test_num_chunks(NORMAL_SIZE));
    check_clean(&d, &log);
    test_dir_remove(&d);
    free(buf);
}

/* (4) store_invalidate removes a transient object at once, and its commit deletes it: the next open finds nothing. */
static void test_invalidate(uint64_t normal_bytes)
{
    void *buf = test_alloc_chunk();
    test_log_t log;
    test_dir_t d;
    store_key_t key;

    test_log_init(&log);
    test_dir_make(&d, "test_store_transient_invalidate");
    store_t *s = open_store(&d, BUDGET, &log);
    CHECK(fill_transient(s, "upload/i", 2, SCRATCH_SIZE, buf) == STORE_OK);
    fill_normal(s);
    CHECK(store_sync(s) == STORE_OK);
    check_flag(s, "upload/i", true, SCRATCH_SIZE);
    test_key(&key, "upload/i");
    CHECK(store_invalidate(s, &key) == STORE_OK);
    /* Absent from the call's return, before its commit, as for any object. */
    check_gone(s, "upload/i", 2, test_num_chunks(SCRATCH_SIZE));
    CHECK(store_sync(s) == STORE_OK);
    check_gone(s, "upload/i", 2, test_num_chunks(SCRATCH_SIZE));
    check_only_normal(s, normal_bytes);
    check_normal(s);
    store_close(s);
    check_raw(&d, 1, test_num_chunks(NORMAL_SIZE));

    log_reset(&log);
    s = open_store(&d, BUDGET, &log);
    CHECK(log.lines[LEVEL_INFO] == 0); /* nothing transient was left to remove */
    check_normal(s);
    check_only_normal(s, normal_bytes);
    store_close(s);
    check_clean(&d, &log);
    test_dir_remove(&d);
    free(buf);
}

/* Eviction treats a transient object like any other: the least recently used goes first. */
static void test_evicted_like_any_other(void)
{
    const uint64_t size = 4 * STORE_CHUNK_SIZE;
    void *buf = test_alloc_chunk();
    test_log_t log;
    test_dir_t d;
    store_stats_t st;

    test_log_init(&log);
    test_dir_make(&d, "test_store_transient_evict");
    /* 16 MiB: three more 4 MiB objects push the store over its high-water mark. */
    store_t *s = open_store(&d, 16 * TEST_MiB, &log);
    CHECK(fill_transient(s, "upload/e", 1, size, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "newer/%d", i);
        CHECK(test_fill(s, name, 1, size, buf) == STORE_OK);
        CHECK(store_sync(s) == STORE_OK);
    }
    store_stats_get(s, &st);
    CHECK(st.evicted_objects >= 1);
    check_gone(s, "upload/e", 1, test_num_chunks(size));
    CHECK(test_cached(s, "newer/2"));
    store_close(s);
    check_clean(&d, &log);
    test_dir_remove(&d);
    free(buf);
}

/*
 * Rewrites key's record as the layout before transient objects wrote it
 * (meta.c): magic "LDM1", no flags word at 72, the strings right after the
 * counts, the checksum over the key and everything from offset 8.
 */
static void rewrite_as_v1(const test_dir_t *d, const store_key_t *key)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {32, (void *)key->hash}, v;

    CHECK(mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 4) == 0);
    CHECK(mdb_env_set_mapsize(env, (size_t)1 << 30) == 0 && mdb_env_open(env, d->store, 0, 0600) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0 && mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
    CHECK(mdb_get(txn, dbi, &k, &v) == 0 && v.mv_size > 76);
    const unsigned char *rec = v.mv_data;
    unsigned char *old = malloc(v.mv_size - 4);
    CHECK(old != NULL && memcmp(rec, "LDM2", 4) == 0);
    CHECK(rec[72] == 0 && rec[73] == 0 && rec[74] == 0 && rec[75] == 0); /* not transient: nothing to lose */
    memcpy(old, "LDM1", 4);
    memcpy(old + 8, rec + 8, 64);
    memcpy(old + 72, rec + 76, v.mv_size - 76);
    uint32_t crc = crc32c(crc32c(0, key->hash, 32), old + 8, v.mv_size - 4 - 8);
    for (int i = 0; i < 4; i++)
        old[4 + i] = (unsigned char)(crc >> (8 * i));
    MDB_val nv = {v.mv_size - 4, old};
    CHECK(mdb_put(txn, dbi, &k, &nv, 0) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
    free(old);
}

static bool raw_magic_is(const test_dir_t *d, const store_key_t *key, const char *magic)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {32, (void *)key->hash}, v;
    bool is = false;

    CHECK(mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 4) == 0);
    CHECK(mdb_env_open(env, d->store, MDB_RDONLY, 0600) == 0);
    CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
    if (mdb_dbi_open(txn, "meta", 0, &dbi) == 0 && mdb_get(txn, dbi, &k, &v) == 0)
        is = v.mv_size >= 4 && memcmp(v.mv_data, magic, 4) == 0;
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return is;
}

/*
 * A record written before this change (LDM1) opens without the store being
 * moved aside, reads as not transient, survives the next open, and takes the
 * writer's in-place rewrites of its counts (it stays LDM1).
 */
static void test_old_records_read(void)
{
    const uint64_t size = 3 * STORE_CHUNK_SIZE - 7;
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_meta_t m = test_meta("old/v1", 6, size), got;
    test_log_t log;
    test_dir_t d;
    store_key_t key;

    test_log_init(&log);
    test_dir_make(&d, "test_store_transient_v1");
    test_key(&key, "old/v1");
    store_t *s = open_store(&d, BUDGET, &log);
    CHECK(store_fill_begin(s, &key, &m) == STORE_OK);
    CHECK(test_put_chunk(s, "old/v1", 6, size, 0, buf) == STORE_OK);
    CHECK(test_put_chunk(s, "old/v1", 6, size, 1, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    store_close(s);
    rewrite_as_v1(&d, &key);
    CHECK(raw_magic_is(&d, &key, "LDM1"));

    s = open_store(&d, BUDGET, &log);
    CHECK(store_meta_get(s, &key, &got) == STORE_OK);
    CHECK_STR(got.name, "old/v1");
    CHECK_STR(got.owner, "tester");
    CHECK(got.generation == 6 && got.size == size && got.chunks_present == 2 && !got.transient);
    store_meta_free(&got);
    CHECK(test_check_chunk(s, "old/v1", 6, size, 1, buf, want) == STORE_OK);
    /* The writer updates an LDM1 record's counts in place. */
    CHECK(test_put_chunk(s, "old/v1", 6, size, 2, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(store_meta_get(s, &key, &got) == STORE_OK);
    CHECK(got.chunks_present == 3 && !got.transient);
    store_meta_free(&got);
    store_close(s);
    CHECK(raw_magic_is(&d, &key, "LDM1"));

    s = open_store(&d, BUDGET, &log);
    CHECK(log.lines[LEVEL_INFO] == 0);
    CHECK(store_meta_get(s, &key, &got) == STORE_OK);
    CHECK(got.chunks_present == 3 && !got.transient);
    store_meta_free(&got);
    for (uint32_t i = 0; i < 3; i++)
        CHECK(test_check_chunk(s, "old/v1", 6, size, i, buf, want) == STORE_OK);
    store_close(s);
    check_clean(&d, &log);
    test_dir_remove(&d);
    free(buf);
    free(want);
}

int main(void)
{
    uint64_t normal_bytes = normal_alone_bytes(false);

    test_restart_removes(normal_bytes);
    test_crash_removes(normal_bytes);
    test_update_keeps_flag();
    test_invalidate(normal_bytes);
    test_evicted_like_any_other();
    test_old_records_read();
    UNIT_DONE();
}
