/*
 * test_store_outcomes.c - what the store tells a filler, and what it keeps
 * for readers: every chunk store_chunk_put accepted is reported exactly once
 * (DURABLE, DROPPED, NO_SPACE or FAILED), and only DURABLE chunks can be
 * read; a full map or disk is logged once, not once per batch; pinned
 * objects are not evicted; and fills of unknown length get their size later.
 *
 * Disk faults are injected as write_faults.h describes.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "test_store_util.h"
#include "write_faults.h"

/* Far longer than any test: the writer commits only for store_sync or store_close. */
#define NEVER_MS 600000
#define OBJ ((uint64_t)STORE_CHUNK_SIZE) /* one full chunk */

/* ---- the log, counted by what it says ---- */

typedef struct log_count {
    pthread_mutex_t lock;
    int lines[4];                   /* per level */
    int out_of_space, space_again; /* the two transition lines */
    int lost;                       /* "a batch of writes was lost" */
    char last[1024];
} log_count_t;

static log_count_t logc = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void log_fn(void *ctx, int level, const char *msg)
{
    log_count_t *l = ctx;

    pthread_mutex_lock(&l->lock);
    if (level >= 0 && level < 4)
        l->lines[level]++;
    l->out_of_space += strstr(msg, "out of space") != NULL;
    l->space_again += strstr(msg, "space again") != NULL;
    l->lost += strstr(msg, "a batch of writes was lost") != NULL;
    snprintf(l->last, sizeof(l->last), "%s", msg);
    pthread_mutex_unlock(&l->lock);
    if (getenv("STORE_TEST_VERBOSE") != NULL)
        fprintf(stderr, "  [store log %d] %s\n", level, msg);
}

static void log_reset(void)
{
    pthread_mutex_lock(&logc.lock);
    memset(logc.lines, 0, sizeof(logc.lines));
    logc.out_of_space = logc.space_again = logc.lost = 0;
    pthread_mutex_unlock(&logc.lock);
}

static log_count_t log_snapshot(void)
{
    log_count_t copy;

    pthread_mutex_lock(&logc.lock);
    memcpy(copy.lines, logc.lines, sizeof(copy.lines));
    copy.out_of_space = logc.out_of_space;
    copy.space_again = logc.space_again;
    copy.lost = logc.lost;
    memcpy(copy.last, logc.last, sizeof(copy.last));
    pthread_mutex_unlock(&logc.lock);
    return copy;
}

static store_t *open_store(const test_dir_t *d, uint64_t budget, unsigned commit_interval_ms)
{
    store_config_t c = test_config(d, budget, NULL);
    store_t *s = NULL;

    c.log = log_fn;
    c.log_ctx = &logc;
    c.commit_interval_ms = commit_interval_ms;
    CHECK(store_open(&s, &c) == STORE_OK);
    CHECK(s != NULL);
    return s;
}

/* ---- chunk puts and what they were told ---- */

#define MAX_PUTS 512

/* One accepted put: what it was, and what the store said of it. */
typedef struct put_record {
    char name[32];
    int64_t gen;
    uint32_t index;
    size_t len;
    uint64_t size; /* the object's (final) size, to recompute the chunk's bytes */
    _Atomic int calls;
    _Atomic int outcome;
    _Atomic uint32_t told_index;
} put_record_t;

typedef struct puts {
    put_record_t rec[MAX_PUTS];
    size_t n;
} puts_t;

static puts_t puts_log;

/* A record whose callback takes its time: store_sync must still not return before it is told. */
static put_record_t *slow_record;

static void done_fn(void *ctx, uint32_t index, store_chunk_outcome_t outcome)
{
    put_record_t *r = ctx;

    if (r == slow_record)
        nanosleep(&(struct timespec){0, 100000000}, NULL);

    atomic_store(&r->told_index, index);
    atomic_store(&r->outcome, (int)outcome);
    atomic_fetch_add(&r->calls, 1);
}

/* Queues chunk index of name/gen (len bytes of its pattern), waiting while the queue is full; recorded if accepted. */
static put_record_t *put(store_t *s, const char *name, int64_t gen, uint64_t size, uint32_t index, size_t len,
                         void *buf)
{
    put_record_t *r;
    store_key_t key;
    int rc;

    if (puts_log.n == MAX_PUTS) {
        fprintf(stderr, "MAX_PUTS too small\n");
        exit(2);
    }
    r = &puts_log.rec[puts_log.n];
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->gen = gen;
    r->index = index;
    r->len = len;
    r->size = size;
    atomic_store(&r->outcome, -1);
    test_key(&key, name);
    test_pattern(buf, len, name, gen, index);
    while ((rc = store_chunk_put(s, &key, gen, index, buf, len, done_fn, r)) == STORE_BUSY)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    CHECK(rc == STORE_OK);
    if (rc != STORE_OK)
        return NULL;
    puts_log.n++;
    return r;
}

static store_chunk_outcome_t outcome_of(put_record_t *r)
{
    return (store_chunk_outcome_t)atomic_load(&r->outcome);
}

/* Whether every recorded put was told its outcome exactly once, for its own index. */
static bool all_told_once(void)
{
    bool ok = true;

    for (size_t i = 0; i < puts_log.n; i++) {
        put_record_t *r = &puts_log.rec[i];

        if (atomic_load(&r->calls) != 1 || atomic_load(&r->told_index) != r->index) {
            fprintf(stderr, "put %zu (%s gen %lld chunk %u): told %d times\n", i, r->name, (long long)r->gen,
                    r->index, atomic_load(&r->calls));
            ok = false;
        }
    }
    return ok;
}

/* Whether another put of the same chunk was DURABLE: then that chunk may be read, whatever r was told. */
static bool same_chunk_durable(const put_record_t *r)
{
    for (size_t i = 0; i < puts_log.n; i++) {
        put_record_t *o = &puts_log.rec[i];

        if (o != r && strcmp(o->name, r->name) == 0 && o->gen == r->gen && o->index == r->index &&
            outcome_of(o) == STORE_CHUNK_DURABLE)
            return true;
    }
    return false;
}

/*
 * Whether what readers see agrees with what the fillers were told: each
 * DURABLE chunk reads back exactly, and no chunk told anything else can be
 * read or is present. Meant right after store_sync, with nothing evicted
 * or invalidated since.
 */
static bool readers_agree(store_t *s, void *buf, void *want)
{
    bool ok = true;

    for (size_t i = 0; i < puts_log.n; i++) {
        put_record_t *r = &puts_log.rec[i];
        store_key_t key;

        test_key(&key, r->name);
        if (outcome_of(r) == STORE_CHUNK_DURABLE) {
            ok &= test_check_chunk(s, r->name, r->gen, r->size, r->index, buf, want) == STORE_OK;
        } else if (!same_chunk_durable(r)) {
            ok &= !store_chunk_present(s, &key, r->gen, r->index);
            ok &= store_chunk_read(s, &key, r->gen, r->index, buf, STORE_CHUNK_SIZE) == STORE_NOT_FOUND;
        }
        if (!ok) {
            fprintf(stderr, "put %zu (%s gen %lld chunk %u, told %d): readers disagree\n", i, r->name,
                    (long long)r->gen, r->index, atomic_load(&r->outcome));
            return false;
        }
    }
    return true;
}

static size_t count_outcome(store_chunk_outcome_t outcome)
{
    size_t n = 0;

    for (size_t i = 0; i < puts_log.n; i++)
        n += outcome_of(&puts_log.rec[i]) == outcome;
    return n;
}

static int fill_begin(store_t *s, const char *name, int64_t gen, uint64_t size)
{
    store_meta_t m = test_meta(name, gen, size);
    store_key_t key;

    test_key(&key, name);
    return store_fill_begin(s, &key, &m);
}

/* ---- outcomes ---- */

/*
 * DURABLE for chunks committed (and for a repeat of one already there);
 * DROPPED for a chunk whose object was invalidated before its turn (in an
 * earlier batch, or earlier in the same one), invalidated after it in the
 * same batch, replaced by another generation, never begun, or that does not
 * fit its record. Each told once, before store_sync returns (even when a
 * callback is slow), and readers find exactly the DURABLE ones.
 */
static void test_durable_and_dropped(const test_dir_t *d)
{
    const uint64_t size = 2 * OBJ + 100;
    store_t *s = open_store(d, 256 * TEST_MiB, NEVER_MS);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    put_record_t *r[16];
    store_key_t key;

    puts_log.n = 0;
    CHECK(fill_begin(s, "ok", 1, size) == STORE_OK);
    r[0] = put(s, "ok", 1, size, 0, OBJ, buf);
    r[1] = put(s, "ok", 1, size, 1, OBJ, buf);
    r[2] = put(s, "ok", 1, size, 2, 100, buf);
    r[3] = put(s, "ok", 1, size, 2, 100, buf);             /* a repeat: the bytes are there */
    r[4] = put(s, "ok", 1, size, 1, 100, buf);             /* wrong length for its index */
    r[5] = put(s, "ok", 1, size, 3, 100, buf);             /* past the end */
    r[6] = put(s, "never-begun", 1, size, 0, OBJ, buf);    /* no record */
    CHECK(fill_begin(s, "replaced", 1, size) == STORE_OK);
    CHECK(fill_begin(s, "replaced", 2, size) == STORE_OK);
    r[7] = put(s, "replaced", 1, size, 0, OBJ, buf);       /* another generation is cached by its turn */
    r[8] = put(s, "replaced", 2, size, 0, OBJ, buf);
    CHECK(fill_begin(s, "gone", 1, size) == STORE_OK);
    r[9] = put(s, "gone", 1, size, 0, OBJ, buf);           /* stored, then removed in the same commit */
    test_key(&key, "gone");
    CHECK(store_invalidate(s, &key) == STORE_OK);
    r[10] = put(s, "gone", 1, size, 1, OBJ, buf);          /* after the invalidation */
    for (int i = 0; i <= 10; i++)
        CHECK(r[i] != NULL && atomic_load(&r[i]->calls) == 0); /* nothing commits before the sync */
    slow_record = r[10];
    CHECK(store_sync(s) == STORE_OK);
    CHECK(all_told_once()); /* told before store_sync returned, the slow one too */
    slow_record = NULL;
    CHECK(outcome_of(r[0]) == STORE_CHUNK_DURABLE && outcome_of(r[1]) == STORE_CHUNK_DURABLE);
    CHECK(outcome_of(r[2]) == STORE_CHUNK_DURABLE && outcome_of(r[3]) == STORE_CHUNK_DURABLE);
    CHECK(outcome_of(r[4]) == STORE_CHUNK_DROPPED && outcome_of(r[5]) == STORE_CHUNK_DROPPED);
    CHECK(outcome_of(r[6]) == STORE_CHUNK_DROPPED);
    CHECK(outcome_of(r[7]) == STORE_CHUNK_DROPPED && outcome_of(r[8]) == STORE_CHUNK_DURABLE);
    CHECK(outcome_of(r[9]) == STORE_CHUNK_DROPPED && outcome_of(r[10]) == STORE_CHUNK_DROPPED);
    CHECK(readers_agree(s, buf, want));

    /* An invalidation committed in an earlier batch than the chunk. */
    CHECK(fill_begin(s, "late", 1, size) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    test_key(&key, "late");
    CHECK(store_invalidate(s, &key) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    r[11] = put(s, "late", 1, size, 0, OBJ, buf);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(outcome_of(r[11]) == STORE_CHUNK_DROPPED);
    CHECK(all_told_once());
    CHECK(readers_agree(s, buf, want));
    {
        store_stats_t st;

        store_stats_get(s, &st);
        CHECK(st.lost_chunks == 0 && !st.out_of_space); /* dropped is not lost */
    }

    /* Closing commits what is still queued: those chunks are DURABLE too, and told before store_close returns. */
    r[12] = put(s, "ok", 1, size, 0, OBJ, buf);
    CHECK(fill_begin(s, "at-close", 1, OBJ) == STORE_OK);
    r[13] = put(s, "at-close", 1, OBJ, 0, OBJ, buf);
    store_close(s);
    CHECK(all_told_once());
    CHECK(outcome_of(r[12]) == STORE_CHUNK_DURABLE && outcome_of(r[13]) == STORE_CHUNK_DURABLE);
    s = open_store(d, 256 * TEST_MiB, NEVER_MS);
    CHECK(readers_agree(s, buf, want));
    store_close(s);
    free(buf);
    free(want);
}

/*
 * The map is full even after eviction (another process holds an old
 * snapshot, so nothing freed can be reused): chunks are told NO_SPACE, are
 * not readable, and count as lost; the condition is logged once for all the
 * lost batches, and its end once, when chunks are stored again.
 */
static void test_map_full(const test_dir_t *d)
{
    const uint64_t budget = 16 * TEST_MiB;
    store_t *s = open_store(d, budget, 5);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_stats_t st;
    log_count_t lc;
    char name[32];
    int release, status;
    size_t no_space, first_after;
    pid_t child;

    puts_log.n = 0;
    log_reset();
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "full/%d", i);
        CHECK(fill_begin(s, name, 1, OBJ) == STORE_OK);
        put(s, name, 1, OBJ, 0, OBJ, buf);
        CHECK(store_sync(s) == STORE_OK);
    }
    release = test_hold_txn(d, MDB_RDONLY, &child);
    /* Far more than the map holds: budget 16 MiB, map about 92 MiB. */
    for (int i = 4; i < 160; i++) {
        snprintf(name, sizeof(name), "full/%d", i);
        CHECK(fill_begin(s, name, 1, OBJ) == STORE_OK);
        put(s, name, 1, OBJ, 0, OBJ, buf);
        (void)store_sync(s); /* each batch is its own: many lost batches */
    }
    CHECK(all_told_once());
    no_space = count_outcome(STORE_CHUNK_NO_SPACE);
    store_stats_get(s, &st);
    printf("map full: %zu puts, %zu durable, %zu no space\n", puts_log.n, count_outcome(STORE_CHUNK_DURABLE),
           no_space);
    CHECK(no_space > 20);
    CHECK(count_outcome(STORE_CHUNK_DURABLE) + no_space == puts_log.n);
    CHECK(st.lost_chunks == no_space);
    CHECK(st.out_of_space);
    lc = log_snapshot();
    CHECK(lc.out_of_space == 1 && lc.space_again == 0);
    CHECK(lc.lines[0] == 0 && lc.lines[1] == 1); /* that one warning is all */
    /* None of the chunks told NO_SPACE can be read (the DURABLE ones may have been evicted since). */
    for (size_t i = 0; i < puts_log.n; i++) {
        put_record_t *r = &puts_log.rec[i];
        store_key_t key;

        test_key(&key, r->name);
        if (outcome_of(r) == STORE_CHUNK_NO_SPACE)
            CHECK(!store_chunk_present(s, &key, r->gen, r->index));
    }

    close(release);
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    first_after = puts_log.n;
    for (int i = 200; i < 210; i++) {
        snprintf(name, sizeof(name), "full/%d", i);
        CHECK(fill_begin(s, name, 1, OBJ) == STORE_OK);
        put(s, name, 1, OBJ, 0, OBJ, buf);
        CHECK(store_sync(s) == STORE_OK);
    }
    CHECK(all_told_once());
    for (size_t i = first_after; i < puts_log.n; i++) {
        put_record_t *r = &puts_log.rec[i];

        CHECK(outcome_of(r) == STORE_CHUNK_DURABLE);
        CHECK(test_check_chunk(s, r->name, r->gen, r->size, r->index, buf, want) == STORE_OK);
    }
    store_stats_get(s, &st);
    CHECK(!st.out_of_space && st.lost_chunks == no_space);
    lc = log_snapshot();
    CHECK(lc.out_of_space == 1 && lc.space_again == 1);
    store_close(s);
    free(buf);
    free(want);
}

/*
 * ENOSPC from the commit's writes is treated as a full map: the writer
 * evicts and retries, then commits the batch without its chunks (the
 * records land, the chunks are told NO_SPACE), and logs it once, naming the
 * cause. When the disk has room again, the next chunks are stored.
 */
static void test_disk_full(const test_dir_t *d)
{
    store_t *s = open_store(d, 64 * TEST_MiB, NEVER_MS);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_stats_t st;
    log_count_t lc;
    put_record_t *r;
    char name[32];

    puts_log.n = 0;
    log_reset();
    atomic_store(&inject_errno, ENOSPC);
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof(name), "disk/%d", i);
        CHECK(fill_begin(s, name, 1, OBJ) == STORE_OK);
        r = put(s, name, 1, OBJ, 0, OBJ, buf);
        CHECK(store_sync(s) == STORE_OK); /* the batch committed, without its chunk */
        CHECK(r != NULL && outcome_of(r) == STORE_CHUNK_NO_SPACE);
        CHECK(test_cached(s, name));
    }
    CHECK(all_told_once());
    CHECK(readers_agree(s, buf, want));
    store_stats_get(s, &st);
    CHECK(st.out_of_space && st.lost_chunks == 12);
    lc = log_snapshot();
    CHECK(lc.out_of_space == 1 && lc.lines[1] == 1 && lc.lines[0] == 0);
    CHECK(strstr(lc.last, "No space left on device") != NULL);

    atomic_store(&inject_errno, 0);
    r = put(s, "disk/11", 1, OBJ, 0, OBJ, buf);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(r != NULL && outcome_of(r) == STORE_CHUNK_DURABLE);
    CHECK(readers_agree(s, buf, want));
    store_stats_get(s, &st);
    CHECK(!st.out_of_space && st.lost_chunks == 12);
    lc = log_snapshot();
    CHECK(lc.space_again == 1 && lc.out_of_space == 1);
    store_close(s);
    free(buf);
    free(want);
}

/*
 * An I/O error loses the whole batch: its chunks are told FAILED and count
 * as lost, its record is carried to a later commit, and the error is logged
 * once however many batches it takes (the next line would come 10 s later,
 * with a count). Chunks still queued when the store closes are committed by
 * store_close; if that last commit fails, they are told FAILED before it
 * returns, and the store reopens cleanly.
 */
static void test_io_error(const test_dir_t *d)
{
    store_t *s = open_store(d, 64 * TEST_MiB, NEVER_MS);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_stats_t st;
    log_count_t lc;
    put_record_t *r;
    char name[32];

    puts_log.n = 0;
    log_reset();
    atomic_store(&inject_errno, EIO);
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "eio/%d", i);
        CHECK(fill_begin(s, name, 1, OBJ) == STORE_OK);
        r = put(s, name, 1, OBJ, 0, OBJ, buf);
        CHECK(store_sync(s) == STORE_ERROR);
        CHECK(r != NULL && outcome_of(r) == STORE_CHUNK_FAILED);
    }
    CHECK(all_told_once());
    store_stats_get(s, &st);
    CHECK(st.lost_chunks == 6 && !st.out_of_space);
    lc = log_snapshot();
    CHECK(lc.lost == 1 && lc.lines[0] == 1);
    atomic_store(&inject_errno, 0);
    CHECK(store_sync(s) == STORE_OK);
    /* The carried records commit with the next batch; their chunks are gone for good. */
    CHECK(fill_begin(s, "eio/next", 1, OBJ) == STORE_OK);
    r = put(s, "eio/next", 1, OBJ, 0, OBJ, buf);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(r != NULL && outcome_of(r) == STORE_CHUNK_DURABLE);
    CHECK(test_cached(s, "eio/0") && test_cached(s, "eio/5"));
    CHECK(readers_agree(s, buf, want));

    /* Queued at close, and the last commit fails. */
    CHECK(fill_begin(s, "eio/close", 1, 2 * OBJ) == STORE_OK);
    put(s, "eio/close", 1, 2 * OBJ, 0, OBJ, buf);
    put(s, "eio/close", 1, 2 * OBJ, 1, OBJ, buf);
    atomic_store(&inject_errno, EIO);
    store_close(s);
    atomic_store(&inject_errno, 0);
    CHECK(all_told_once());
    CHECK(outcome_of(&puts_log.rec[puts_log.n - 1]) == STORE_CHUNK_FAILED);
    CHECK(outcome_of(&puts_log.rec[puts_log.n - 2]) == STORE_CHUNK_FAILED);
    s = open_store(d, 64 * TEST_MiB, NEVER_MS);
    CHECK(!test_cached(s, "eio/close"));
    CHECK(readers_agree(s, buf, want));
    store_close(s);
    log_reset(); /* the errors above were the point */
    free(buf);
    free(want);
}

/* ---- pins ---- */

/* Fills name (one full chunk) and waits for it to commit. */
static void fill_one(store_t *s, const char *name, void *buf)
{
    CHECK(test_fill(s, name, 1, OBJ, buf) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
}

/* Fills pin/<from> .. pin/<to - 1>, each committed before the next: enough of them makes eviction run. */
static void flood(store_t *s, int from, int to, void *buf)
{
    char name[32];

    for (int i = from; i < to; i++) {
        snprintf(name, sizeof(name), "pin/%d", i);
        fill_one(s, name, buf);
    }
}

/*
 * A pinned object is not evicted while the store is over budget, even as
 * the least recently used; a pin taken before the object's fill commits
 * counts once it does; pins count (two pins need two unpins); unpinned,
 * both are evicted like anything else. With everything pinned, the store
 * stays above its high-water mark rather than evict.
 */
static void test_pins(const test_dir_t *d)
{
    const uint64_t budget = 16 * TEST_MiB;
    store_t *s = open_store(d, budget, 5);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_key_t oldest, early, key;
    store_stats_t st;
    char name[32];

    log_reset();
    test_key(&oldest, "oldest");
    test_key(&early, "early");
    fill_one(s, "oldest", buf);
    store_pin(s, &oldest);
    store_pin(s, &oldest);
    store_pin(s, &early); /* not cached yet */
    fill_one(s, "early", buf);
    flood(s, 0, 30, buf); /* about twice the budget */
    store_stats_get(s, &st);
    CHECK(st.evicted_objects > 10);
    CHECK(test_cached(s, "oldest") && test_cached(s, "early"));
    CHECK(test_check_chunk(s, "oldest", 1, OBJ, 0, buf, want) == STORE_OK);
    CHECK(test_check_chunk(s, "early", 1, OBJ, 0, buf, want) == STORE_OK);
    CHECK(!test_cached(s, "pin/0"));
    store_unpin(s, &oldest); /* one pin left */
    store_unpin(s, &early);
    flood(s, 30, 50, buf);
    CHECK(test_cached(s, "oldest") && !test_cached(s, "early"));
    store_unpin(s, &oldest);
    store_unpin(s, &oldest); /* one too many: harmless */
    flood(s, 50, 70, buf);
    CHECK(!test_cached(s, "oldest"));

    /* Everything pinned: over the high-water mark, nothing evicted; unpinned, back under. */
    for (int i = 60; i < 80; i++) { /* ten cached, ten not yet */
        snprintf(name, sizeof(name), "pin/%d", i);
        test_key(&key, name);
        store_pin(s, &key);
    }
    flood(s, 70, 80, buf);
    store_stats_get(s, &st);
    CHECK(st.used_bytes > (uint64_t)(0.95 * (double)budget));
    for (int i = 60; i < 80; i++) {
        snprintf(name, sizeof(name), "pin/%d", i);
        CHECK(test_cached(s, name));
        test_key(&key, name);
        store_unpin(s, &key);
    }
    flood(s, 80, 81, buf);
    store_stats_get(s, &st);
    CHECK(st.used_bytes <= (uint64_t)(0.95 * (double)budget));
    CHECK(logc.lines[0] == 0 && logc.lines[1] == 0);
    store_close(s);
    free(buf);
    free(want);
}

/* ---- fills of unknown length ---- */

/* Whether name is cached with that size and chunk counts. */
static bool shaped(store_t *s, const char *name, uint64_t size, uint32_t num_chunks, uint32_t present)
{
    store_meta_t m;
    store_key_t key;
    int rc;
    bool ok;

    test_key(&key, name);
    rc = store_meta_get(s, &key, &m);
    ok = rc == STORE_OK && m.size == size && m.num_chunks == num_chunks && m.chunks_present == present;
    if (!ok)
        fprintf(stderr, "%s: rc %d size %llu num_chunks %u present %u\n", name, rc, (unsigned long long)m.size,
                m.num_chunks, m.chunks_present);
    store_meta_free(&m);
    return ok;
}

static int set_size(store_t *s, const char *name, int64_t gen, uint64_t size)
{
    store_key_t key;

    test_key(&key, name);
    return store_fill_set_size(s, &key, gen, size);
}

/*
 * Closes and reopens the store, which verifies every record against its
 * chunks (a mismatch would move the store aside): the accounting must come
 * back exactly as it was.
 */
static store_t *reopen_same(const test_dir_t *d, store_t *s, uint64_t budget)
{
    store_stats_t before, after;

    store_stats_get(s, &before);
    store_close(s);
    s = open_store(d, budget, NEVER_MS);
    store_stats_get(s, &after);
    CHECK(after.objects == before.objects && after.chunks == before.chunks && after.used_bytes == before.used_bytes);
    CHECK(broken_copies(d) == 0);
    return s;
}

/*
 * Full chunks, then the size, then the short last chunk: readers see
 * STORE_SIZE_UNKNOWN (and no chunk count) until the size is set, and then
 * the whole object. A short chunk before the size is dropped; a size for
 * another generation, or a second size, is ignored.
 */
static void test_unknown_whole(const test_dir_t *d)
{
    const uint64_t whole = 3 * OBJ + 1234;
    store_t *s = open_store(d, 64 * TEST_MiB, NEVER_MS);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    put_record_t *r[5];

    puts_log.n = 0;
    log_reset();
    CHECK(fill_begin(s, "u/whole", 1, STORE_SIZE_UNKNOWN) == STORE_OK);
    for (uint32_t i = 0; i < 3; i++)
        r[i] = put(s, "u/whole", 1, whole, i, OBJ, buf);
    r[3] = put(s, "u/whole", 1, whole, 3, 1234, buf); /* short before the size */
    CHECK(store_sync(s) == STORE_OK);
    CHECK(shaped(s, "u/whole", STORE_SIZE_UNKNOWN, 0, 3));
    CHECK(outcome_of(r[0]) == STORE_CHUNK_DURABLE && outcome_of(r[2]) == STORE_CHUNK_DURABLE);
    CHECK(outcome_of(r[3]) == STORE_CHUNK_DROPPED);
    CHECK(readers_agree(s, buf, want));
    CHECK(set_size(s, "u/whole", 2, whole) == STORE_OK); /* another generation */
    CHECK(store_sync(s) == STORE_OK);
    CHECK(shaped(s, "u/whole", STORE_SIZE_UNKNOWN, 0, 3));
    CHECK(set_size(s, "u/whole", 1, whole) == STORE_OK);
    CHECK(set_size(s, "u/whole", 1, OBJ) == STORE_OK); /* a second size */
    CHECK(set_size(s, "u/whole", 1, STORE_SIZE_UNKNOWN) == STORE_ERROR);
    r[4] = put(s, "u/whole", 1, whole, 3, 1234, buf);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(outcome_of(r[4]) == STORE_CHUNK_DURABLE);
    CHECK(shaped(s, "u/whole", whole, 4, 4));
    CHECK(all_told_once());
    CHECK(readers_agree(s, buf, want));
    s = reopen_same(d, s, 64 * TEST_MiB);
    CHECK(shaped(s, "u/whole", whole, 4, 4));
    CHECK(readers_agree(s, buf, want));
    store_close(s);
    free(buf);
    free(want);
}

/*
 * A size smaller than what was put: the chunks past it go, and so does a
 * full chunk where the last must be short; that last chunk can then be put.
 * A size of 0 leaves no chunk at all.
 */
static void test_unknown_cut(const test_dir_t *d)
{
    const uint64_t cut = 2 * OBJ + 100;
    store_t *s = open_store(d, 64 * TEST_MiB, NEVER_MS);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_key_t key;
    put_record_t *r;

    puts_log.n = 0;
    log_reset();
    CHECK(fill_begin(s, "u/cut", 7, STORE_SIZE_UNKNOWN) == STORE_OK);
    for (uint32_t i = 0; i < 4; i++)
        put(s, "u/cut", 7, STORE_SIZE_UNKNOWN, i, OBJ, buf);
    CHECK(fill_begin(s, "u/empty", 1, STORE_SIZE_UNKNOWN) == STORE_OK);
    put(s, "u/empty", 1, STORE_SIZE_UNKNOWN, 0, OBJ, buf);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(all_told_once() && count_outcome(STORE_CHUNK_DURABLE) == 5);
    CHECK(readers_agree(s, buf, want));
    CHECK(shaped(s, "u/cut", STORE_SIZE_UNKNOWN, 0, 4));
    s = reopen_same(d, s, 64 * TEST_MiB);

    CHECK(set_size(s, "u/cut", 7, cut) == STORE_OK);
    CHECK(set_size(s, "u/empty", 1, 0) == STORE_OK);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(shaped(s, "u/cut", cut, 3, 2));
    CHECK(shaped(s, "u/empty", 0, 0, 0));
    test_key(&key, "u/cut");
    CHECK(store_chunk_present(s, &key, 7, 1) && !store_chunk_present(s, &key, 7, 2));
    CHECK(!store_chunk_present(s, &key, 7, 3));
    test_key(&key, "u/empty");
    CHECK(!store_chunk_present(s, &key, 1, 0));
    puts_log.n = 0; /* the chunks cut were DURABLE, and are gone since: not for readers_agree */
    r = put(s, "u/cut", 7, cut, 2, 100, buf);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(outcome_of(r) == STORE_CHUNK_DURABLE);
    CHECK(shaped(s, "u/cut", cut, 3, 3));
    for (uint32_t i = 0; i < 3; i++)
        CHECK(test_check_chunk(s, "u/cut", 7, cut, i, buf, want) == STORE_OK);
    s = reopen_same(d, s, 64 * TEST_MiB);
    CHECK(shaped(s, "u/cut", cut, 3, 3));
    store_close(s);
    free(buf);
    free(want);
}

/*
 * An object of unknown size that turns out larger than the store keeps
 * (the low-water mark: 54.4 MiB here) is dropped whole: when its size says
 * so, or as soon as a full chunk shows it that long. Its chunks, even the
 * ones stored in the same commit, are told DROPPED.
 */
static void test_unknown_too_large(const test_dir_t *d)
{
    store_t *s = open_store(d, 64 * TEST_MiB, NEVER_MS);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    put_record_t *r[4];
    store_stats_t st;

    puts_log.n = 0;
    log_reset();
    CHECK(fill_begin(s, "u/big", 1, STORE_SIZE_UNKNOWN) == STORE_OK);
    r[0] = put(s, "u/big", 1, STORE_SIZE_UNKNOWN, 0, OBJ, buf);
    CHECK(set_size(s, "u/big", 1, 60 * TEST_MiB) == STORE_OK);
    CHECK(fill_begin(s, "u/grows", 1, STORE_SIZE_UNKNOWN) == STORE_OK);
    r[1] = put(s, "u/grows", 1, STORE_SIZE_UNKNOWN, 1, OBJ, buf);
    r[2] = put(s, "u/grows", 1, STORE_SIZE_UNKNOWN, 60, OBJ, buf); /* so it is at least 61 chunks long */
    r[3] = put(s, "u/grows", 1, STORE_SIZE_UNKNOWN, 2, OBJ, buf);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(all_told_once());
    for (int i = 0; i < 4; i++)
        CHECK(outcome_of(r[i]) == STORE_CHUNK_DROPPED);
    CHECK(!test_cached(s, "u/big") && !test_cached(s, "u/grows"));
    CHECK(readers_agree(s, buf, want));
    store_stats_get(s, &st);
    CHECK(st.objects == 0 && st.chunks == 0 && st.used_bytes == 0);
    store_close(s);
    free(buf);
    free(want);
}

/* A store holding a record of unknown size reopens cleanly, and the fill can be finished afterwards. */
static void test_unknown_reopen(const test_dir_t *d)
{
    const uint64_t size = 2 * OBJ + 5;
    store_t *s = open_store(d, 64 * TEST_MiB, NEVER_MS);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    put_record_t *r;

    puts_log.n = 0;
    log_reset();
    CHECK(fill_begin(s, "u/open", 3, STORE_SIZE_UNKNOWN) == STORE_OK);
    put(s, "u/open", 3, size, 0, OBJ, buf);
    put(s, "u/open", 3, size, 1, OBJ, buf);
    CHECK(store_sync(s) == STORE_OK);
    s = reopen_same(d, s, 64 * TEST_MiB);
    CHECK(shaped(s, "u/open", STORE_SIZE_UNKNOWN, 0, 2));
    CHECK(readers_agree(s, buf, want));
    CHECK(set_size(s, "u/open", 3, size) == STORE_OK);
    r = put(s, "u/open", 3, size, 2, 5, buf);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(outcome_of(r) == STORE_CHUNK_DURABLE);
    CHECK(shaped(s, "u/open", size, 3, 3));
    CHECK(all_told_once());
    CHECK(readers_agree(s, buf, want));
    s = reopen_same(d, s, 64 * TEST_MiB);
    CHECK(shaped(s, "u/open", size, 3, 3));
    CHECK(logc.lines[0] == 0 && logc.lines[1] == 0);
    store_close(s);
    free(buf);
    free(want);
}

static void in_fresh_dir(void (*test)(const test_dir_t *d))
{
    test_dir_t d;

    test_dir_make(&d, "test_store_outcomes");
    test(&d);
    CHECK(broken_copies(&d) == 0);
    test_dir_remove(&d);
}

/* What a fence saw when it was reported: whether the record queued before it was readable. */
typedef struct fence_seen {
    store_t *store;
    _Atomic int calls;
    _Atomic bool record_readable;
} fence_seen_t;

static void on_fence(void *ctx, uint32_t index, store_chunk_outcome_t outcome)
{
    fence_seen_t *seen = ctx;
    store_meta_t meta;
    store_key_t key;
    (void)index, (void)outcome;
    test_key(&key, "f/record");
    bool readable = store_meta_get(seen->store, &key, &meta) == STORE_OK;
    if (readable)
        store_meta_free(&meta);
    atomic_store(&seen->record_readable, readable);
    atomic_fetch_add(&seen->calls, 1);
}

/* A fence is reported once, only after the commit of what was queued before it (the writer here commits only
 * when someone syncs, so "not before" is checked at any speed). */
static void test_fence(const test_dir_t *d)
{
    store_t *s = open_store(d, 64 * TEST_MiB, NEVER_MS);
    fence_seen_t seen = {.store = s};
    CHECK(fill_begin(s, "f/record", 1, 10) == STORE_OK);
    CHECK(store_fence(s, on_fence, &seen) == STORE_OK);
    CHECK(atomic_load(&seen.calls) == 0);
    CHECK(store_sync(s) == STORE_OK);
    CHECK(atomic_load(&seen.calls) == 1);
    CHECK(atomic_load(&seen.record_readable));
    store_close(s);
    CHECK(atomic_load(&seen.calls) == 1);
}

int main(void)
{
    inject_init();
    in_fresh_dir(test_durable_and_dropped);
    in_fresh_dir(test_map_full);
    in_fresh_dir(test_disk_full);
    in_fresh_dir(test_io_error);
    in_fresh_dir(test_pins);
    in_fresh_dir(test_unknown_whole);
    in_fresh_dir(test_unknown_cut);
    in_fresh_dir(test_unknown_too_large);
    in_fresh_dir(test_unknown_reopen);
    in_fresh_dir(test_fence);
    UNIT_DONE();
}
