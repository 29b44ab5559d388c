/*
 * test_store_corrupt.c - a damaged store never crashes start-up and never
 * serves wrong bytes.
 *
 * A store that does not open or verify cleanly (garbage instead of an LMDB
 * file, garbled meta or tree pages, a wrong format record, counts that do
 * not match the chunks) is moved aside and rebuilt empty, with one log line.
 * Damage inside a chunk payload is not visible at open; the read that meets
 * it says STORE_CORRUPT, and the chunk is gone afterwards (the first read in
 * the process, or after the verify interval; every read with 0). Random damage
 * anywhere must end in one of those outcomes: every read either exact, or
 * absent, or reported corrupt.
 */
#include <fcntl.h>
#include <lmdb.h>

#include "test_store_util.h"

#define PAGE 4096
#define NOBJ 8

static const uint64_t sizes[NOBJ] = {
    0, 1, 3000, STORE_CHUNK_SIZE, STORE_CHUNK_SIZE + 1, 3 * STORE_CHUNK_SIZE - 7, 70000, 2 * STORE_CHUNK_SIZE,
};

static test_log_t corrupt_log;

static void obj_name(char *buf, size_t cap, int i)
{
    snprintf(buf, cap, "c/%d", i);
}

static store_config_t config_for(const test_dir_t *d)
{
    return test_config(d, 256 * TEST_MiB, &corrupt_log);
}

static void build_store(const test_dir_t *d)
{
    store_config_t c = config_for(d);
    void *buf = test_alloc_chunk();
    store_t *s = NULL;
    char name[32];

    CHECK(store_open(&s, &c) == STORE_OK);
    for (int i = 0; i < NOBJ; i++) {
        obj_name(name, sizeof(name), i);
        CHECK(test_fill(s, name, 10 + i, sizes[i], buf) == STORE_OK);
    }
    store_close(s);
    free(buf);
}

static void copy_file(const char *from, const char *to)
{
    char buf[65536];
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ssize_t n;

    CHECK(in >= 0 && out >= 0);
    while ((n = read(in, buf, sizeof(buf))) > 0)
        CHECK(write(out, buf, (size_t)n) == n);
    close(in);
    close(out);
}

/* A fresh directory holding a copy of the golden store's data file. */
static void from_golden(test_dir_t *d, const test_dir_t *golden)
{
    char from[256], to[256];

    test_dir_make(d, "test_store_corrupt");
    CHECK(mkdir(d->store, 0700) == 0);
    snprintf(from, sizeof(from), "%s/data.mdb", golden->store);
    snprintf(to, sizeof(to), "%s/data.mdb", d->store);
    copy_file(from, to);
}

static void data_path(const test_dir_t *d, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/data.mdb", d->store);
}

static void overwrite(const test_dir_t *d, long long off, const void *bytes, size_t len)
{
    char path[256];
    int fd;

    data_path(d, path, sizeof(path));
    fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, bytes, len, off) == (ssize_t)len);
    close(fd);
}

static void garbage(void *buf, size_t len, uint64_t seed)
{
    unsigned char *p = buf;

    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)mix64(seed + i);
}

typedef struct outcome {
    int exact, absent, corrupt, wrong; /* chunks */
    int objects;
} outcome_t;

/*
 * Opens the store (which must succeed) and reads every object: each chunk
 * exact, absent or corrupt, never wrong; corrupt ones are absent after a sync.
 */
static outcome_t open_and_read(const test_dir_t *d)
{
    store_config_t c = config_for(d);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    outcome_t o = {0, 0, 0, 0, 0};
    store_t *s = NULL;
    char name[32];

    CHECK(store_open(&s, &c) == STORE_OK);
    if (s == NULL)
        return o;
    for (int i = 0; i < NOBJ; i++) {
        store_meta_t m;
        store_key_t key;
        int rc;

        obj_name(name, sizeof(name), i);
        test_key(&key, name);
        rc = store_meta_get(s, &key, &m);
        CHECK(rc == STORE_OK || rc == STORE_NOT_FOUND || rc == STORE_CORRUPT);
        if (rc != STORE_OK)
            continue;
        o.objects++;
        CHECK(m.generation == 10 + i && m.size == sizes[i] && strcmp(m.name, name) == 0);
        for (uint32_t idx = 0; idx < m.num_chunks; idx++) {
            rc = test_check_chunk(s, name, m.generation, m.size, idx, buf, want);
            o.exact += rc == STORE_OK;
            o.absent += rc == STORE_NOT_FOUND;
            o.corrupt += rc == STORE_CORRUPT;
            o.wrong += rc == -100 || rc == STORE_ERROR;
            if (rc == STORE_CORRUPT) {
                CHECK(store_sync(s) == STORE_OK);
                CHECK(test_check_chunk(s, name, m.generation, m.size, idx, buf, want) == STORE_NOT_FOUND);
            }
        }
        store_meta_free(&m);
    }
    CHECK(o.wrong == 0);
    store_close(s);
    free(buf);
    free(want);
    return o;
}

static int errors_logged(void)
{
    return corrupt_log.lines[0];
}

/* Damage that must make the store be moved aside and rebuilt empty. */
static void expect_rebuilt(const test_dir_t *d, const char *what)
{
    int before = errors_logged();
    outcome_t o = open_and_read(d);

    if (o.objects != 0 || broken_copies(d) != 1 || errors_logged() != before + 1)
        fprintf(stderr, "  not rebuilt after: %s\n", what);
    CHECK(o.objects == 0);
    CHECK(broken_copies(d) == 1);
    CHECK(errors_logged() == before + 1);
    CHECK(strstr(corrupt_log.last_error, "does not open cleanly") != NULL);
    CHECK(strstr(corrupt_log.last_error, "store.broken-") != NULL);
}

static void test_garbage_files(const test_dir_t *golden)
{
    static char junk[3 * 1024 * 1024];
    test_dir_t d;
    outcome_t o;
    char path[256];
    int fd;

    /* Not an LMDB file at all. */
    from_golden(&d, golden);
    garbage(junk, sizeof(junk), 1);
    overwrite(&d, 0, junk, sizeof(junk));
    expect_rebuilt(&d, "garbage data.mdb");
    /* The rebuilt store works. */
    o = open_and_read(&d);
    CHECK(o.objects == 0 && broken_copies(&d) == 1);
    test_dir_remove(&d);

    /* A garbage lock file and a stray file are not damage: the lock file is rebuilt by LMDB. */
    from_golden(&d, golden);
    snprintf(path, sizeof(path), "%s/lock.mdb", d.store);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, junk, 8192) == 8192);
    close(fd);
    snprintf(path, sizeof(path), "%s/junk", d.store);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, junk, 100) == 100);
    close(fd);
    o = open_and_read(&d);
    CHECK(o.objects == NOBJ && o.absent == 0 && o.corrupt == 0 && broken_copies(&d) == 0);
    test_dir_remove(&d);
}

static void test_meta_pages(const test_dir_t *golden)
{
    unsigned char page[2 * PAGE];
    test_dir_t d;
    outcome_t o;

    /* Both meta pages garbled. */
    from_golden(&d, golden);
    garbage(page, sizeof(page), 2);
    overwrite(&d, 0, page, sizeof(page));
    expect_rebuilt(&d, "both meta pages");
    test_dir_remove(&d);

    /* One meta page: LMDB may use the other, an older but whole state. Either outcome, never wrong bytes. */
    for (int which = 0; which < 2; which++) {
        from_golden(&d, golden);
        garbage(page, PAGE, 3 + (uint64_t)which);
        overwrite(&d, (long long)which * PAGE, page, PAGE);
        o = open_and_read(&d);
        CHECK(o.wrong == 0);
        CHECK(o.objects == 0 || broken_copies(&d) == 0);
        test_dir_remove(&d);
    }
}

/* Offsets of every B-tree page (branch or leaf) of the file, by their headers. */
static int tree_pages(const test_dir_t *d, long long *out, int max)
{
    unsigned char hdr[16];
    char path[256];
    long long pages;
    int fd, n = 0;

    data_path(d, path, sizeof(path));
    pages = file_size(path) / PAGE;
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    for (long long p = 2; p < pages && n < max; p++) {
        uint64_t pgno;
        uint16_t flags;

        if (pread(fd, hdr, sizeof(hdr), p * PAGE) != (ssize_t)sizeof(hdr))
            break;
        memcpy(&pgno, hdr, 8);
        memcpy(&flags, hdr + 10, 2);
        if (pgno == (uint64_t)p && (flags & 0x03) != 0 && (flags & 0x04) == 0)
            out[n++] = p * PAGE;
    }
    close(fd);
    return n;
}

/* Finds the file offset of chunk idx's payload of object i, by its content. */
static long long payload_offset(const test_dir_t *d, int i, uint32_t idx)
{
    char name[32], path[256];
    unsigned char want[64], *file;
    long long size, off = -1;
    int fd;

    obj_name(name, sizeof(name), i);
    test_pattern(want, sizeof(want), name, 10 + i, idx);
    data_path(d, path, sizeof(path));
    size = file_size(path);
    file = malloc((size_t)size);
    fd = open(path, O_RDONLY);
    CHECK(file != NULL && fd >= 0 && read(fd, file, (size_t)size) == size);
    close(fd);
    for (long long p = 0; p + PAGE <= size; p += PAGE) {
        /* A value starts after the 16-byte page header; its payload after the 8-byte chunk header. */
        if (memcmp(file + p + 24, want, sizeof(want)) == 0) {
            off = p + 24;
            break;
        }
    }
    free(file);
    return off;
}

static void test_tree_pages(const test_dir_t *golden, unsigned seed)
{
    long long pages[64];
    unsigned char junk[PAGE];
    int n = tree_pages(golden, pages, 64), rebuilt = 0;

    CHECK(n >= 3); /* the main, meta and chunks databases' roots at least */
    for (int k = 0; k < n; k++) {
        test_dir_t d;
        outcome_t o;

        from_golden(&d, golden);
        garbage(junk, sizeof(junk), 100 + (uint64_t)k);
        overwrite(&d, pages[k], junk, sizeof(junk));
        o = open_and_read(&d);
        rebuilt += broken_copies(&d) == 1;
        CHECK(o.wrong == 0);
        /* A page still in use is noticed; one LMDB had freed (an older copy) changes nothing. */
        CHECK(broken_copies(&d) == 1 || (o.exact == 11 && o.corrupt == 0));
        test_dir_remove(&d);
    }
    printf("garbled tree pages: %d of %d made the store be rebuilt, the others were free pages\n", rebuilt, n);
    CHECK(rebuilt >= 3);

    /* Smaller damage inside tree pages: a few bytes of a key, a node header, a page index. */
    for (int k = 0; k < 8 * n; k++) {
        uint64_t r = mix64(seed + (uint64_t)k);
        size_t len = 1 + r % 8;
        long long off = pages[k % n] + 16 + (long long)((r >> 16) % (PAGE - 16 - len));
        test_dir_t d;
        outcome_t o;

        from_golden(&d, golden);
        garbage(junk, len, r);
        overwrite(&d, off, junk, len);
        o = open_and_read(&d);
        CHECK(o.wrong == 0);
        if (getenv("STORE_TEST_VERBOSE") != NULL)
            printf("  page %lld +%lld len %zu: rebuilt %d, exact %d corrupt %d absent %d: %s\n", pages[k % n] / PAGE,
                   off - pages[k % n], len, broken_copies(&d), o.exact, o.corrupt, o.absent,
                   broken_copies(&d) ? corrupt_log.last_error : "");
        test_dir_remove(&d);
    }
}

static void test_overflow_header(const test_dir_t *golden)
{
    unsigned char junk[16];
    test_dir_t d;
    long long off;

    /* The page header of a chunk's overflow run: LMDB would free the wrong pages with it. */
    from_golden(&d, golden);
    off = payload_offset(&d, 5, 1);
    CHECK(off > 0);
    garbage(junk, sizeof(junk), 7);
    overwrite(&d, off - 24, junk, sizeof(junk));
    expect_rebuilt(&d, "an overflow page header");
    test_dir_remove(&d);
}

/* A flipped byte in a payload: found by the read, removed, and the rest of the store untouched. */
static void test_payload_flip(const test_dir_t *golden)
{
    store_config_t c;
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_meta_t m;
    store_key_t key;
    store_stats_t st;
    store_t *s = NULL;
    test_dir_t d;
    unsigned char byte;
    long long off;
    char path[256];
    int fd;

    from_golden(&d, golden);
    off = payload_offset(&d, 5, 1);
    CHECK(off > 0);
    data_path(&d, path, sizeof(path));
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pread(fd, &byte, 1, off + 500000) == 1);
    byte ^= 0x10;
    CHECK(pwrite(fd, &byte, 1, off + 500000) == 1);
    close(fd);

    c = config_for(&d);
    CHECK(store_open(&s, &c) == STORE_OK);
    CHECK(broken_copies(&d) == 0);
    CHECK(test_check_chunk(s, "c/5", 15, sizes[5], 0, buf, want) == STORE_OK);
    CHECK(test_check_chunk(s, "c/5", 15, sizes[5], 1, buf, want) == STORE_CORRUPT);
    store_stats_get(s, &st);
    CHECK(st.corrupt_chunks == 1);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(test_check_chunk(s, "c/5", 15, sizes[5], 1, buf, want) == STORE_NOT_FOUND);
    CHECK(test_check_chunk(s, "c/5", 15, sizes[5], 2, buf, want) == STORE_OK);
    test_key(&key, "c/5");
    CHECK(store_meta_get(s, &key, &m) == STORE_OK);
    CHECK(m.num_chunks == 3 && m.chunks_present == 2);
    store_meta_free(&m);
    /* Refetching fills the hole. */
    CHECK(test_put_chunk(s, "c/5", 15, sizes[5], 1, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(test_check_chunk(s, "c/5", 15, sizes[5], 1, buf, want) == STORE_OK);
    store_close(s);
    /* And the store reopens cleanly, its accounting intact. */
    CHECK(open_and_read(&d).exact == 11);
    CHECK(broken_copies(&d) == 0);
    test_dir_remove(&d);
    free(buf);
    free(want);
}

/* Flips one byte in the payload of chunk idx of object i. */
static void flip_payload(const test_dir_t *d, int i, uint32_t idx)
{
    unsigned char byte;
    long long off = payload_offset(d, i, idx);
    char path[256];
    int fd;

    CHECK(off > 0);
    data_path(d, path, sizeof(path));
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pread(fd, &byte, 1, off + 1000) == 1);
    byte ^= 0x01;
    CHECK(pwrite(fd, &byte, 1, off + 1000) == 1);
    close(fd);
}

/*
 * After a read said STORE_CORRUPT, the chunk is absent at once, to every
 * reader, before its removal commits: a retry must be a clean miss that
 * refetches, not the same error. The writer here commits only for
 * store_sync, so "at once" cannot be the writer having been quick.
 */
static void test_corrupt_absent_at_once(const test_dir_t *golden)
{
    store_config_t c;
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_key_t key;
    store_stats_t st;
    store_t *s = NULL;
    test_dir_t d;

    from_golden(&d, golden);
    flip_payload(&d, 7, 0);
    flip_payload(&d, 5, 2);
    c = config_for(&d);
    c.commit_interval_ms = 600000;
    CHECK(store_open(&s, &c) == STORE_OK);
    test_key(&key, "c/7");
    CHECK(store_chunk_present(s, &key, 17, 0));
    CHECK(test_check_chunk(s, "c/7", 17, sizes[7], 0, buf, want) == STORE_CORRUPT);
    /* No sync: the removal is only queued, and the index still counts the chunk. */
    CHECK(!store_chunk_present(s, &key, 17, 0));
    CHECK(test_check_chunk(s, "c/7", 17, sizes[7], 0, buf, want) == STORE_NOT_FOUND);
    CHECK(test_check_chunk(s, "c/7", 17, sizes[7], 0, buf, want) == STORE_NOT_FOUND);
    store_stats_get(s, &st);
    CHECK(st.corrupt_chunks == 1 && st.chunks == 11);
    /* Only that chunk: its neighbour, and the same index of other objects and generations, are untouched. */
    CHECK(store_chunk_present(s, &key, 17, 1));
    CHECK(test_check_chunk(s, "c/7", 17, sizes[7], 1, buf, want) == STORE_OK);
    CHECK(test_check_chunk(s, "c/5", 15, sizes[5], 0, buf, want) == STORE_OK);
    CHECK(!store_chunk_present(s, &key, 16, 0));
    /* A second damaged chunk, in another object. */
    CHECK(test_check_chunk(s, "c/5", 15, sizes[5], 2, buf, want) == STORE_CORRUPT);
    CHECK(test_check_chunk(s, "c/5", 15, sizes[5], 2, buf, want) == STORE_NOT_FOUND);

    /* Refetched before the removal committed: the removal goes first, then the good copy shows. */
    CHECK(test_put_chunk(s, "c/7", 17, sizes[7], 0, buf) == STORE_OK);
    CHECK(!store_chunk_present(s, &key, 17, 0));
    CHECK(store_sync(s) == STORE_OK);
    CHECK(store_chunk_present(s, &key, 17, 0));
    CHECK(test_check_chunk(s, "c/7", 17, sizes[7], 0, buf, want) == STORE_OK);
    /* Refetched after: absent once committed, then back. */
    test_key(&key, "c/5");
    CHECK(!store_chunk_present(s, &key, 15, 2));
    CHECK(test_put_chunk(s, "c/5", 15, sizes[5], 2, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(test_check_chunk(s, "c/5", 15, sizes[5], 2, buf, want) == STORE_OK);
    store_stats_get(s, &st);
    CHECK(st.corrupt_chunks == 2 && st.chunks == 11);
    store_close(s);
    CHECK(open_and_read(&d).exact == 11);
    CHECK(broken_copies(&d) == 0);
    test_dir_remove(&d);
    free(buf);
    free(want);
}

/*
 * Meta pages that place the main database's root beyond the end of the file
 * (LMDB 0.9 meta pages carry no checksum): LMDB faults with SIGBUS reading
 * it. The check in the child dies of that, and the store is rebuilt, while
 * this process never touches the bad page.
 */
/*
 * Slices, and checking a chunk once in a while (verified.c). A slice carries
 * the chunk's bytes from its offset, and a slice far from the damage still
 * finds it: the whole chunk is checked. Damage done to a chunk in place after
 * it was checked is caught by the next read with an interval of 0, by the
 * first read once the interval has passed (1 s here, the test waiting at
 * least 2), and, with an interval no test outlasts, by the first read after
 * a restart. A chunk damaged before its first read is caught at once. Fails
 * on the code before store_chunk_read_at (which did not exist) and, for
 * intervals 0 and 1 s, on a memo that ignored them.
 */
static void test_slices_and_first_read(const test_dir_t *golden)
{
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_key_t key7, key5;
    test_key(&key7, "c/7");
    test_key(&key5, "c/5");
    static const unsigned intervals[] = {3600, 0, 1};
    for (size_t mode = 0; mode < sizeof(intervals) / sizeof(intervals[0]); mode++) {
        unsigned interval = intervals[mode];
        test_dir_t d;
        from_golden(&d, golden);
        store_config_t c = config_for(&d);
        c.verify_interval_s = interval;
        store_t *s = NULL;
        CHECK(store_open(&s, &c) == STORE_OK);

        /* Slices of a whole chunk: its bytes from the offset, its length told, nothing past its end. */
        test_pattern(want, STORE_CHUNK_SIZE, "c/7", 17, 0);
        static const size_t offsets[] = {0, 1, 4095, 262144, STORE_CHUNK_SIZE - 1, STORE_CHUNK_SIZE};
        for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
            size_t chunk_len = 0;
            ssize_t n = store_chunk_read_at(s, &key7, 17, 0, offsets[i], buf, 65536, &chunk_len);
            size_t expect = STORE_CHUNK_SIZE - offsets[i] < 65536 ? STORE_CHUNK_SIZE - offsets[i] : 65536;
            CHECK(n == (ssize_t)expect && chunk_len == STORE_CHUNK_SIZE);
            CHECK(n <= 0 || memcmp(buf, (char *)want + offsets[i], (size_t)n) == 0);
        }
        CHECK(store_chunk_read_at(s, &key7, 17, 0, STORE_CHUNK_SIZE + 5, buf, 65536, NULL) == 0);
        /* store_chunk_read still refuses a buffer too small for the chunk. */
        CHECK(store_chunk_read(s, &key7, 17, 0, buf, 65536) == STORE_ERROR);

        /* Damage in place after a check: caught by the next read, from any slice, once the interval passed. */
        CHECK(test_check_chunk(s, "c/7", 17, sizes[7], 1, buf, want) == STORE_OK);
        flip_payload(&d, 7, 1);
        if (interval == 1) {
            struct timespec wait = {2, 100000000}; /* the clock counts whole seconds: 2 of them at the least */
            nanosleep(&wait, NULL);
        }
        ssize_t after = store_chunk_read_at(s, &key7, 17, 1, STORE_CHUNK_SIZE - 10, buf, 10, NULL);
        if (interval <= 1)
            CHECK(after == STORE_CORRUPT);
        else
            CHECK(after == 10); /* what checking once an hour gives up, until the restart below */

        /* Damage before a chunk's first read is caught either way, from a slice away from it. */
        flip_payload(&d, 5, 0);
        CHECK(store_chunk_read_at(s, &key5, 15, 0, STORE_CHUNK_SIZE - 10, buf, 10, NULL) == STORE_CORRUPT);
        CHECK(store_chunk_read_at(s, &key5, 15, 0, 0, buf, 10, NULL) == STORE_NOT_FOUND);
        store_close(s);

        /* A restart checks every chunk again on its first read. */
        s = NULL;
        CHECK(store_open(&s, &c) == STORE_OK);
        if (interval > 1)
            CHECK(test_check_chunk(s, "c/7", 17, sizes[7], 1, buf, want) == STORE_CORRUPT);
        CHECK(test_check_chunk(s, "c/7", 17, sizes[7], 1, buf, want) == STORE_NOT_FOUND);
        CHECK(test_check_chunk(s, "c/7", 17, sizes[7], 0, buf, want) == STORE_OK);
        store_close(s);
        test_dir_remove(&d);
    }
    free(buf);
    free(want);
}

static void test_check_crashes(const test_dir_t *golden)
{
    const uint64_t last_pg = (uint64_t)1 << 18, root = last_pg - 5;
    test_dir_t d;

    from_golden(&d, golden);
    for (int m = 0; m < 2; m++) {
        /* In the meta page after its 16-byte header: the main database's md_root, then mm_last_pg. */
        overwrite(&d, (long long)m * PAGE + 128, &root, 8);
        overwrite(&d, (long long)m * PAGE + 136, &last_pg, 8);
    }
    expect_rebuilt(&d, "a root page beyond the end of the file");
    CHECK(strstr(corrupt_log.last_error, "crashed") != NULL);
    test_dir_remove(&d);
}

/* Edits made with LMDB itself: sound pages, wrong contents. */
static void raw_edit(const test_dir_t *d, const char *db, const void *key, size_t klen, const void *val, size_t vlen)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};

    CHECK(mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 4) == 0);
    CHECK(mdb_env_set_mapsize(env, (size_t)1 << 30) == 0 && mdb_env_open(env, d->store, 0, 0600) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0 && mdb_dbi_open(txn, db, 0, &dbi) == 0);
    if (val != NULL) {
        CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0);
    } else {
        MDB_cursor *cur;

        /* Deletes the first record whose key starts with key. */
        CHECK(mdb_cursor_open(txn, dbi, &cur) == 0);
        CHECK(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0);
        CHECK(mdb_cursor_del(cur, 0) == 0);
        mdb_cursor_close(cur);
    }
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
}

static void test_logical_damage(const test_dir_t *golden)
{
    unsigned char format[32], record[72];
    store_key_t key;
    test_dir_t d;

    /* Another version of the layout. */
    from_golden(&d, golden);
    memset(format, 0, sizeof(format));
    memcpy(format, "larder-store", 12);
    format[16] = 99;
    raw_edit(&d, "info", "format", 6, format, sizeof(format));
    expect_rebuilt(&d, "a format record of version 99");
    test_dir_remove(&d);

    /* A chunk missing behind its record's back: the accounting check fails. */
    from_golden(&d, golden);
    test_key(&key, "c/5");
    raw_edit(&d, "chunks", key.hash, 32, NULL, 0);
    expect_rebuilt(&d, "a chunk deleted behind the record's back");
    test_dir_remove(&d);

    /* A metadata record that fails its checksum. */
    from_golden(&d, golden);
    test_key(&key, "c/2");
    memset(record, 'x', sizeof(record));
    memcpy(record, "LDM1", 4);
    raw_edit(&d, "meta", key.hash, 32, record, sizeof(record));
    expect_rebuilt(&d, "a garbled metadata record");
    test_dir_remove(&d);
}

/* Random damage anywhere in the file: whatever happens, open succeeds and no read is wrong. */
static void test_random_damage(const test_dir_t *golden, unsigned seed)
{
    char path[256];
    long long pages;
    int trials = 40, rebuilt = 0, corrupt = 0;

    data_path(golden, path, sizeof(path));
    pages = file_size(path) / PAGE;
    for (int t = 0; t < trials; t++) {
        uint64_t r = mix64(seed + (uint64_t)t);
        unsigned char junk[PAGE];
        size_t len = t % 2 ? PAGE : 1 + (r >> 40) % 64;
        long long off = (long long)(r % (uint64_t)pages) * PAGE + (t % 2 ? 0 : (long long)((r >> 20) % (PAGE - 64)));
        test_dir_t d;
        outcome_t o;

        from_golden(&d, golden);
        garbage(junk, len, r);
        overwrite(&d, off, junk, len);
        o = open_and_read(&d);
        CHECK(o.wrong == 0);
        rebuilt += broken_copies(&d) == 1;
        corrupt += o.corrupt;
        test_dir_remove(&d);
    }
    printf("random damage (seed %u): %d trials, %d rebuilt, %d corrupt chunks caught on read\n", seed, trials, rebuilt,
           corrupt);
}

int main(void)
{
    test_dir_t golden;
    unsigned seed = (unsigned)time(NULL);

    test_log_init(&corrupt_log);
    corrupt_log.quiet = 1;
    test_dir_make(&golden, "test_store_corrupt");
    build_store(&golden);
    CHECK(open_and_read(&golden).exact == 11);
    test_garbage_files(&golden);
    test_meta_pages(&golden);
    test_tree_pages(&golden, seed);
    test_overflow_header(&golden);
    test_check_crashes(&golden);
    test_payload_flip(&golden);
    test_corrupt_absent_at_once(&golden);
    test_slices_and_first_read(&golden);
    test_logical_damage(&golden);
    test_random_damage(&golden, seed);
    test_dir_remove(&golden);
    UNIT_DONE();
}
