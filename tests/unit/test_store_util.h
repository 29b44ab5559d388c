/*
 * test_store_util.h - what the store's tests share: temporary directories,
 * a captured log, metadata to fill with, and chunk contents that can be
 * recomputed from (name, generation, index) alone, so any reader can check
 * any chunk it gets back byte for byte.
 */
#ifndef LARDER_TEST_STORE_UTIL_H
#define LARDER_TEST_STORE_UTIL_H

#include <dirent.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "unit.h"

#define TEST_MiB ((uint64_t)1 << 20)

/* ---- temporary directories ---- */

/* Wall-clock milliseconds, as lease expiries are given. */
static inline int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static inline void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory under /tmp; the store goes in its "store" subdirectory so moved-aside copies land inside too. */
typedef struct test_dir {
    char root[128];
    char store[160];
} test_dir_t;

static inline void test_dir_make(test_dir_t *d, const char *name)
{
    snprintf(d->root, sizeof(d->root), "/tmp/larder_%s_XXXXXX", name);
    if (mkdtemp(d->root) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(d->store, sizeof(d->store), "%s/store", d->root);
}

static inline void test_dir_remove(test_dir_t *d)
{
    rm_rf(d->root);
}

/* How many PATH.broken-* directories sit next to the store. */
static inline int broken_copies(const test_dir_t *d)
{
    DIR *dir = opendir(d->root);
    struct dirent *e;
    int n = 0;

    if (dir == NULL)
        return -1;
    while ((e = readdir(dir)) != NULL)
        if (strncmp(e->d_name, "store.broken-", 13) == 0)
            n++;
    closedir(dir);
    return n;
}

static inline long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* ---- captured log ---- */

typedef struct test_log {
    pthread_mutex_t lock;
    int lines[4]; /* per level */
    char last[1024];
    char last_error[1024];
    int quiet; /* do not echo to stderr */
} test_log_t;

static inline void test_log_fn(void *ctx, int level, const char *msg)
{
    test_log_t *log = ctx;

    pthread_mutex_lock(&log->lock);
    if (level >= 0 && level < 4)
        log->lines[level]++;
    snprintf(log->last, sizeof(log->last), "%s", msg);
    if (level == 0)
        snprintf(log->last_error, sizeof(log->last_error), "%s", msg);
    pthread_mutex_unlock(&log->lock);
    if (!log->quiet && level <= 1)
        fprintf(stderr, "  [store log %d] %s\n", level, msg);
}

static inline void test_log_init(test_log_t *log)
{
    memset(log, 0, sizeof(*log));
    pthread_mutex_init(&log->lock, NULL);
}

static inline store_config_t test_config(const test_dir_t *d, uint64_t budget, test_log_t *log)
{
    store_config_t c;

    memset(&c, 0, sizeof(c));
    c.path = d->store;
    c.budget = budget;
    c.high_water = 0.95;
    c.low_water = 0.85;
    c.commit_interval_ms = 5;
    c.max_queue_bytes = 64 * TEST_MiB;
    c.log = log != NULL ? test_log_fn : NULL;
    c.log_ctx = log;
    return c;
}

/* ---- holding LMDB from another process ---- */

/*
 * Opens the store's LMDB file in a child process and holds a transaction
 * there: flags 0 takes the write lock, so the store's writer blocks (the only
 * way to make "the writer is behind" certain); MDB_RDONLY is a reader that
 * keeps every page freed after it from being reused. Returns once the child
 * holds it, with the pipe whose closing lets the child go.
 */
static inline int test_hold_txn(const test_dir_t *d, unsigned int flags, pid_t *child)
{
    int ready[2], release[2];
    char c;

    if (pipe(ready) != 0 || pipe(release) != 0)
        exit(2);
    *child = fork();
    if (*child == 0) {
        MDB_env *env;
        MDB_txn *txn;

        close(ready[0]);
        close(release[1]);
        if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 4) != 0 || mdb_env_open(env, d->store, 0, 0600) != 0 ||
            mdb_txn_begin(env, NULL, flags, &txn) != 0 || write(ready[1], "x", 1) != 1)
            _exit(1);
        while (read(release[0], &c, 1) > 0)
            ;
        mdb_txn_abort(txn);
        mdb_env_close(env);
        _exit(0);
    }
    close(ready[1]);
    close(release[0]);
    CHECK(read(ready[0], &c, 1) == 1);
    close(ready[0]);
    return release[1];
}

/* ---- objects ---- */

static inline void test_key(store_key_t *key, const char *name)
{
    store_key_make(key, "bucket", 6, name, strlen(name));
}

/* Whether the store has a record of name (committed, and not invalidated since). */
static inline bool test_cached(store_t *s, const char *name)
{
    store_meta_t m;
    store_key_t key;
    int rc;

    test_key(&key, name);
    rc = store_meta_get(s, &key, &m);
    store_meta_free(&m);
    return rc == STORE_OK;
}

/* Metadata for bucket/name at generation gen; the strings point at static text (fill_begin copies). */
static inline store_meta_t test_meta(const char *name, int64_t gen, uint64_t size)
{
    store_meta_t m;

    memset(&m, 0, sizeof(m));
    m.bucket = "bucket";
    m.name = (char *)name;
    m.generation = gen;
    m.metageneration = 1;
    m.size = size;
    m.etag = "\"etag-1\"";
    m.content_type = "application/octet-stream";
    m.crc32c = "AAAAAA==";
    m.md5 = "1B2M2Y8AsgTpgAmY7PhCfg==";
    m.resource_json = "{\"kind\":\"storage#object\"}";
    m.owner = "tester";
    return m;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* The payload of chunk index of name at gen: a pseudo-random stream seeded by all three. */
static inline void test_pattern(void *buf, size_t len, const char *name, int64_t gen, uint32_t index)
{
    uint64_t seed = 1469598103934665603ULL, x;
    unsigned char *p = buf;
    size_t i;

    for (i = 0; name[i] != '\0'; i++)
        seed = (seed ^ (unsigned char)name[i]) * 1099511628211ULL;
    x = mix64(seed ^ mix64((uint64_t)gen) ^ ((uint64_t)index << 40)) | 1;
    for (i = 0; i + 8 <= len; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    for (; i < len; i++)
        p[i] = (unsigned char)(x >> (8 * (i % 8)));
}

static inline size_t test_chunk_len(uint64_t size, uint32_t index)
{
    uint64_t left = size - (uint64_t)index * STORE_CHUNK_SIZE;

    return left < STORE_CHUNK_SIZE ? (size_t)left : STORE_CHUNK_SIZE;
}

static inline uint32_t test_num_chunks(uint64_t size)
{
    return (uint32_t)((size + STORE_CHUNK_SIZE - 1) / STORE_CHUNK_SIZE);
}

/* Queues chunk index of name/gen, retrying while the queue is full. */
static inline int test_put_chunk(store_t *s, const char *name, int64_t gen, uint64_t size, uint32_t index, void *buf)
{
    store_key_t key;
    size_t len = test_chunk_len(size, index);
    int rc;

    test_key(&key, name);
    test_pattern(buf, len, name, gen, index);
    while ((rc = store_chunk_put(s, &key, gen, index, buf, len, NULL, NULL)) == STORE_BUSY) {
        struct timespec ts = {0, 1000000};

        nanosleep(&ts, NULL);
    }
    return rc;
}

/* Queues a whole object: fill_begin and every chunk. */
static inline int test_fill(store_t *s, const char *name, int64_t gen, uint64_t size, void *buf)
{
    store_meta_t m = test_meta(name, gen, size);
    store_key_t key;
    uint32_t i;
    int rc;

    test_key(&key, name);
    if ((rc = store_fill_begin(s, &key, &m)) != STORE_OK)
        return rc;
    for (i = 0; i < test_num_chunks(size); i++)
        if ((rc = test_put_chunk(s, name, gen, size, i, buf)) != STORE_OK)
            return rc;
    return STORE_OK;
}

/*
 * Reads chunk index of name/gen and compares it with the pattern. Returns
 * the store's code, or -100 when the bytes that came back are wrong.
 */
static inline int test_check_chunk(store_t *s, const char *name, int64_t gen, uint64_t size, uint32_t index, void *buf,
                                   void *want)
{
    store_key_t key;
    size_t len = test_chunk_len(size, index);
    ssize_t got;

    test_key(&key, name);
    got = store_chunk_read(s, &key, gen, index, buf, STORE_CHUNK_SIZE);
    if (got < 0)
        return (int)got;
    test_pattern(want, len, name, gen, index);
    if ((size_t)got != len || memcmp(buf, want, len) != 0)
        return -100;
    return STORE_OK;
}

static inline void *test_alloc_chunk(void)
{
    void *p = malloc(STORE_CHUNK_SIZE);

    if (p == NULL)
        exit(2);
    return p;
}

static inline double test_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
