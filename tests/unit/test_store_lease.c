/*
 * test_store_lease.c - leases, the store's side of batches: what a live
 * lease pins survives a workload that evicts everything else, quotas refuse
 * with STORE_QUOTA (per lease and for all leases together), an expired or
 * ended lease pins nothing, and leases and their pins outlive a restart and
 * a kill -9 once the call returned. A store from before leases opens as it
 * is, and a garbled lease record is damage like any other.
 *
 * The eviction check is lease_table_holds_locked (store/lease_table.c),
 * asked by index_victims and delete_victims. With it answering false,
 * test_pins_survive_workload, test_restart_keeps_leases and
 * test_kill9_keeps_pins fail (their pinned objects are evicted); the others
 * pass either way, since they check what must hold without it too.
 */
#include <lmdb.h>
#include <signal.h>
#include <sys/wait.h>

#include "test_store_util.h"

#define OBJ (STORE_CHUNK_SIZE) /* one full chunk: about 1 MiB charged */
#define BUDGET (16 * TEST_MiB)
#define HOUR_MS ((int64_t)3600 * 1000)

static test_log_t lease_log;

static store_t *open_store(const test_dir_t *d, uint64_t max_lease_bytes)
{
    store_config_t c = test_config(d, BUDGET, &lease_log);
    store_t *s = NULL;

    c.max_lease_pinned_bytes = max_lease_bytes;
    CHECK(store_open(&s, &c) == STORE_OK);
    return s;
}

/* Fills prefix/from .. prefix/to-1, one full chunk each, each committed before the next. */
static void fill_range(store_t *s, const char *prefix, int from, int to, void *buf)
{
    char name[64];

    for (int i = from; i < to; i++) {
        snprintf(name, sizeof(name), "%s/%d", prefix, i);
        CHECK(test_fill(s, name, 1, OBJ, buf) == STORE_OK);
        CHECK(store_sync(s) == STORE_OK);
    }
}

/* Three times the budget of other objects: everything evictable goes. */
static void workload(store_t *s, void *buf)
{
    fill_range(s, "churn", 0, 48, buf);
}

static int pin(store_t *s, const char *id, const char *name)
{
    store_key_t key;

    test_key(&key, name);
    return store_lease_pin(s, id, &key, NULL, 0);
}

/*
 * What one object of OBJ bytes is charged: the store holds only it after a
 * fresh open and one fill. The record holds the name, so every object whose
 * bytes a test adds up has a name of this length (5 bytes).
 */
static uint64_t object_charge(void *buf)
{
    test_dir_t d;
    store_stats_t st;

    test_dir_make(&d, "test_store_lease");
    store_t *s = open_store(&d, 0);
    fill_range(s, "one", 0, 1, buf);
    store_stats_get(s, &st);
    store_close(s);
    test_dir_remove(&d);
    CHECK(st.objects == 1);
    return st.used_bytes;
}

static void test_pins_survive_workload(void *buf, uint64_t charge)
{
    test_dir_t d;
    store_stats_t st;
    store_lease_t l;

    test_dir_make(&d, "test_store_lease");
    store_t *s = open_store(&d, 0);
    fill_range(s, "pin", 0, 4, buf);
    fill_range(s, "fre", 0, 4, buf);
    CHECK(store_lease_put(s, "batch-1", "alice", wall_ms() + HOUR_MS, 0) == STORE_OK);
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof(name), "pin/%d", i);
        CHECK(pin(s, "batch-1", name) == STORE_OK);
    }
    /* Pinned before it is cached: counts nothing now, and is held once it is. */
    CHECK(pin(s, "batch-1", "lat/0") == STORE_OK);
    CHECK(store_lease_get(s, "batch-1", &l) == STORE_OK);
    CHECK(l.pinned_objects == 5 && l.pinned_bytes == 4 * charge);
    CHECK_STR(l.owner, "alice");
    store_lease_free(&l);
    fill_range(s, "lat", 0, 1, buf);
    CHECK(store_lease_get(s, "batch-1", &l) == STORE_OK);
    CHECK(l.pinned_bytes == 5 * charge);
    store_lease_free(&l);

    workload(s, buf);
    store_stats_get(s, &st);
    CHECK(st.evicted_objects >= 8);
    CHECK(st.lease_count == 1 && st.lease_pinned_bytes == 5 * charge);
    CHECK(st.used_bytes <= (uint64_t)(0.95 * (double)BUDGET));
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof(name), "pin/%d", i);
        CHECK(test_cached(s, name));
        snprintf(name, sizeof(name), "fre/%d", i);
        CHECK(!test_cached(s, name));
    }
    CHECK(test_cached(s, "lat/0"));
    CHECK(!test_cached(s, "churn/0"));
    store_close(s);
    test_dir_remove(&d);
}

static void test_quotas(void *buf, uint64_t charge)
{
    test_dir_t d;

    test_dir_make(&d, "test_store_lease");
    /* All leases together: three and a half objects. */
    store_t *s = open_store(&d, 3 * charge + charge / 2);
    fill_range(s, "qqq", 0, 5, buf);

    CHECK(pin(s, "nobody", "qqq/0") == STORE_NOT_FOUND);
    /* Per lease: two and a half objects. */
    CHECK(store_lease_put(s, "a", "alice", wall_ms() + HOUR_MS, 2 * charge + charge / 2) == STORE_OK);
    CHECK(pin(s, "a", "qqq/0") == STORE_OK);
    CHECK(pin(s, "a", "qqq/1") == STORE_OK);
    CHECK(pin(s, "a", "qqq/2") == STORE_QUOTA);
    CHECK(pin(s, "a", "qqq/0") == STORE_OK);         /* already pinned: counts once */
    CHECK(pin(s, "a", "not-cached/0") == STORE_OK); /* counts 0 for now */

    CHECK(store_lease_put(s, "b", "bob", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(pin(s, "b", "qqq/2") == STORE_OK);    /* 3 objects pinned in all */
    CHECK(pin(s, "b", "qqq/3") == STORE_QUOTA); /* 4 > 3.5 */
    CHECK(pin(s, "b", "qqq/0") == STORE_QUOTA); /* counted per lease: the sum would be 4 too */

    /* A raised quota lets the lease go on; the global limit still holds. */
    CHECK(store_lease_put(s, "a", "alice", wall_ms() + HOUR_MS, 10 * charge) == STORE_OK);
    CHECK(pin(s, "a", "qqq/3") == STORE_QUOTA);
    CHECK(store_lease_end(s, "b") == STORE_OK);
    CHECK(pin(s, "a", "qqq/3") == STORE_OK);

    store_lease_t l;
    CHECK(store_lease_get(s, "a", &l) == STORE_OK);
    CHECK(l.pinned_objects == 4 && l.pinned_bytes == 3 * charge && l.quota_bytes == 10 * charge);
    store_lease_free(&l);

    /* Bad arguments. */
    char long_id[STORE_LEASE_ID_MAX + 2];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    CHECK(store_lease_put(s, long_id, "o", wall_ms() + HOUR_MS, 0) == STORE_ERROR);
    CHECK(store_lease_put(s, "", "o", wall_ms() + HOUR_MS, 0) == STORE_ERROR);
    long_id[STORE_LEASE_ID_MAX] = '\0'; /* exactly the maximum */
    CHECK(store_lease_put(s, long_id, "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(pin(s, long_id, "qqq/4") == STORE_QUOTA); /* the global limit: 4 objects pinned already */
    store_close(s);
    test_dir_remove(&d);
}

typedef struct racer {
    store_t *s;
    int index;
    int rc;
} racer_t;

static void *race_pin(void *arg)
{
    racer_t *r = arg;
    char name[16];

    snprintf(name, sizeof(name), "thr/%d", r->index);
    r->rc = pin(r->s, "race", name);
    return NULL;
}

/* Pins racing for the last bytes of a quota, likely in one batch: exactly as many pass as fit. */
static void test_quota_race(void *buf, uint64_t charge)
{
    test_dir_t d;
    pthread_t threads[8];
    racer_t racers[8];
    int ok = 0, quota = 0;

    test_dir_make(&d, "test_store_lease");
    store_t *s = open_store(&d, 0);
    fill_range(s, "thr", 0, 8, buf);
    CHECK(store_lease_put(s, "race", "o", wall_ms() + HOUR_MS, 3 * charge + charge / 2) == STORE_OK);
    for (int i = 0; i < 8; i++) {
        racers[i] = (racer_t){.s = s, .index = i, .rc = 1};
        CHECK(pthread_create(&threads[i], NULL, race_pin, &racers[i]) == 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
        ok += racers[i].rc == STORE_OK;
        quota += racers[i].rc == STORE_QUOTA;
    }
    CHECK(ok == 3 && quota == 5);
    store_lease_t l;
    CHECK(store_lease_get(s, "race", &l) == STORE_OK && l.pinned_objects == 3 && l.pinned_bytes == 3 * charge);
    store_lease_free(&l);
    store_close(s);
    s = open_store(&d, 0);
    CHECK(store_lease_get(s, "race", &l) == STORE_OK && l.pinned_objects == 3);
    store_lease_free(&l);
    store_close(s);
    test_dir_remove(&d);
}

static bool count_lease(void *ctx, const store_lease_t *l)
{
    (void)l;
    (*(int *)ctx)++;
    return true;
}

static bool count_key(void *ctx, const store_lease_pin_info_t *pin)
{
    (void)pin;
    (*(int *)ctx)++;
    return true;
}

static void test_expiry_releases(void *buf)
{
    test_dir_t d;
    store_stats_t st;
    store_lease_t l;
    int n = 0;

    test_dir_make(&d, "test_store_lease");
    store_t *s = open_store(&d, 0);
    fill_range(s, "e", 0, 3, buf);
    CHECK(store_lease_put(s, "long", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(pin(s, "long", "e/0") == STORE_OK);
    CHECK(pin(s, "long", "e/1") == STORE_OK);
    /* An expiry in the past ends the pinning at once. */
    CHECK(store_lease_extend(s, "long", wall_ms() - 1) == STORE_OK);
    CHECK(store_lease_get(s, "long", &l) == STORE_NOT_FOUND);
    store_lease_free(&l);
    CHECK(pin(s, "long", "e/2") == STORE_NOT_FOUND);
    CHECK(store_lease_extend(s, "long", wall_ms() + HOUR_MS) == STORE_NOT_FOUND);
    CHECK(store_lease_list(s, count_lease, &n) == STORE_OK && n == 0);

    /* A few milliseconds ahead: whatever the speed, once past it the object is evictable. */
    int64_t expires = wall_ms() + 200;
    CHECK(store_lease_put(s, "short", "o", expires, 0) == STORE_OK);
    int rc = pin(s, "short", "e/2");
    CHECK(rc == STORE_OK || (rc == STORE_NOT_FOUND && wall_ms() >= expires));
    while (wall_ms() <= expires) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    store_stats_get(s, &st);
    CHECK(st.lease_count == 0 && st.lease_pinned_bytes == 0);
    workload(s, buf);
    CHECK(!test_cached(s, "e/0") && !test_cached(s, "e/1") && !test_cached(s, "e/2"));

    /* Expired leases still list their keys until the writer removes them; the last round at close does. */
    n = 0;
    CHECK(store_lease_keys(s, "long", count_key, &n) == STORE_OK || n == 0);
    store_close(s);
    s = open_store(&d, 0);
    CHECK(store_lease_keys(s, "long", count_key, &n) == STORE_NOT_FOUND);
    CHECK(store_lease_keys(s, "short", count_key, &n) == STORE_NOT_FOUND);
    /* A new lease under an expired one's id starts with no pins. */
    CHECK(store_lease_put(s, "fresh", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(pin(s, "fresh", "x/0") == STORE_OK);
    CHECK(store_lease_extend(s, "fresh", wall_ms() - 1) == STORE_OK);
    CHECK(store_lease_put(s, "fresh", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(store_lease_get(s, "fresh", &l) == STORE_OK && l.pinned_objects == 0);
    store_lease_free(&l);
    store_close(s);
    test_dir_remove(&d);
}

typedef struct seen_pin {
    store_key_t key;
    uint32_t marks;
    bool has_text;
    char text[STORE_PIN_NOTE_MAX];
    size_t text_len;
} seen_pin_t;

typedef struct seen {
    seen_pin_t pins[8];
    int n;
} seen_t;

static bool see_pin(void *ctx, const store_lease_pin_info_t *pin)
{
    seen_t *sn = ctx;

    if (sn->n == 8 || pin->text_len > STORE_PIN_NOTE_MAX || (pin->text == NULL) != (pin->text_len == 0))
        return false;
    seen_pin_t *p = &sn->pins[sn->n++];
    p->key = pin->key;
    p->marks = pin->marks;
    p->has_text = pin->text != NULL;
    p->text_len = pin->text_len;
    if (pin->text_len > 0)
        memcpy(p->text, pin->text, pin->text_len);
    return true;
}

/* The note store_lease_keys reports for name, or NULL if the lease does not pin it. */
static const seen_pin_t *note_of(store_t *s, const char *id, const char *name, seen_t *sn)
{
    store_key_t key;

    sn->n = 0;
    CHECK(store_lease_keys(s, id, see_pin, sn) == STORE_OK);
    test_key(&key, name);
    for (int i = 0; i < sn->n; i++)
        if (memcmp(sn->pins[i].key.hash, key.hash, sizeof(key.hash)) == 0)
            return &sn->pins[i];
    return NULL;
}

static bool note_is(store_t *s, const char *id, const char *name, uint32_t marks, const char *text, size_t len)
{
    seen_t *sn = malloc(sizeof(*sn));
    const seen_pin_t *p = note_of(s, id, name, sn);
    bool ok = p != NULL && p->marks == marks && p->has_text == (text != NULL) && p->text_len == len &&
              (len == 0 || memcmp(p->text, text, len) == 0);

    free(sn);
    return ok;
}

static int pin_note(store_t *s, const char *id, const char *name, uint32_t marks, const char *text, size_t len)
{
    store_pin_note_t note = {.marks = marks, .text = text, .text_len = len};
    store_key_t key;

    test_key(&key, name);
    return store_lease_pin(s, id, &key, &note, 0);
}

static void test_restart_keeps_leases(void *buf, uint64_t charge)
{
    test_dir_t d;
    store_lease_t l;
    store_stats_t st;
    seen_t *sn = malloc(sizeof(*sn));
    int64_t expires = wall_ms() + HOUR_MS;

    test_dir_make(&d, "test_store_lease");
    store_t *s = open_store(&d, 0);
    fill_range(s, "rrr", 0, 3, buf);
    CHECK(store_lease_put(s, "pipeline-7", "svc@example.com", expires, 6 * charge) == STORE_OK);
    CHECK(pin(s, "pipeline-7", "rrr/0") == STORE_OK);
    CHECK(pin(s, "pipeline-7", "rrr/1") == STORE_OK);
    CHECK(pin(s, "pipeline-7", "rrr/2") == STORE_OK);
    CHECK(pin(s, "pipeline-7", "out/0") == STORE_OK);
    store_close(s);

    s = open_store(&d, 0);
    CHECK(broken_copies(&d) == 0);
    CHECK(store_lease_get(s, "pipeline-7", &l) == STORE_OK);
    CHECK_STR(l.owner, "svc@example.com");
    CHECK(l.expires_at_ms == expires && l.quota_bytes == 6 * charge);
    CHECK(l.pinned_objects == 4 && l.pinned_bytes == 3 * charge);
    store_lease_free(&l);
    CHECK(note_of(s, "pipeline-7", "rrr/0", sn) != NULL && sn->n == 4);
    CHECK(note_of(s, "pipeline-7", "rrr/2", sn) != NULL && note_of(s, "pipeline-7", "out/0", sn) != NULL);
    free(sn);
    workload(s, buf);
    CHECK(test_cached(s, "rrr/0") && test_cached(s, "rrr/1") && test_cached(s, "rrr/2"));
    store_stats_get(s, &st);
    CHECK(st.lease_count == 1 && st.lease_pinned_bytes == 3 * charge);
    store_close(s);
    test_dir_remove(&d);
}

/* The child: a lease and its pins, each call returned, then a byte to say so, then wait to be killed. */
static void kill9_child(const test_dir_t *d, int fd, void *buf)
{
    store_t *s = open_store(d, 0);

    fill_range(s, "k", 0, 2, buf);
    if (store_lease_put(s, "doomed", "o", wall_ms() + HOUR_MS, 0) != STORE_OK || pin(s, "doomed", "k/0") != STORE_OK ||
        pin(s, "doomed", "k/1") != STORE_OK || pin(s, "doomed", "k-out/0") != STORE_OK)
        _exit(1);
    if (write(fd, "x", 1) != 1)
        _exit(1);
    for (;;)
        pause();
}

static void test_kill9_keeps_pins(void *buf)
{
    test_dir_t d;
    store_lease_t l;
    int fds[2], status;
    char c;

    test_dir_make(&d, "test_store_lease");
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        kill9_child(&d, fds[1], buf);
    }
    close(fds[1]);
    CHECK(read(fds[0], &c, 1) == 1);
    close(fds[0]);
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));

    store_t *s = open_store(&d, 0);
    CHECK(broken_copies(&d) == 0);
    CHECK(store_lease_get(s, "doomed", &l) == STORE_OK && l.pinned_objects == 3);
    store_lease_free(&l);
    workload(s, buf);
    CHECK(test_cached(s, "k/0") && test_cached(s, "k/1"));
    store_close(s);
    test_dir_remove(&d);
}

static void test_end_releases(void *buf)
{
    test_dir_t d;
    store_lease_t l;
    store_stats_t st;
    int n = 0;

    test_dir_make(&d, "test_store_lease");
    store_t *s = open_store(&d, 0);
    fill_range(s, "n", 0, 2, buf);
    CHECK(store_lease_put(s, "job", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(store_lease_put(s, "other", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(pin(s, "job", "n/0") == STORE_OK && pin(s, "job", "n/1") == STORE_OK);
    CHECK(store_lease_list(s, count_lease, &n) == STORE_OK && n == 2);
    CHECK(store_lease_end(s, "job") == STORE_OK);
    CHECK(store_lease_end(s, "job") == STORE_NOT_FOUND);
    CHECK(store_lease_get(s, "job", &l) == STORE_NOT_FOUND);
    store_lease_free(&l);
    CHECK(pin(s, "job", "n/0") == STORE_NOT_FOUND);
    n = 0;
    CHECK(store_lease_keys(s, "job", count_key, &n) == STORE_NOT_FOUND && n == 0);
    /* The objects stay cached, evictable again. */
    CHECK(test_cached(s, "n/0") && test_cached(s, "n/1"));
    store_stats_get(s, &st);
    CHECK(st.lease_count == 1 && st.lease_pinned_bytes == 0);
    workload(s, buf);
    CHECK(!test_cached(s, "n/0") && !test_cached(s, "n/1"));
    store_close(s);
    test_dir_remove(&d);
}

static void test_notes_merge(const char *big)
{
    test_dir_t d;

    test_dir_make(&d, "test_store_lease");
    store_t *s = open_store(&d, 0);
    CHECK(store_lease_put(s, "n", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(pin_note(s, "n", "k/1", 1, NULL, 0) == STORE_OK);
    CHECK(note_is(s, "n", "k/1", 1, NULL, 0));
    CHECK(pin_note(s, "n", "k/1", 2, "first", 5) == STORE_OK);
    CHECK(pin_note(s, "n", "k/1", 4, "second", 6) == STORE_OK);
    CHECK(pin_note(s, "n", "k/1", 0, "", 0) == STORE_OK);
    CHECK(note_is(s, "n", "k/1", 7, "first", 5));
    /* An empty text is no text: the first non-empty one wins. Texts are bytes, NULs too. */
    CHECK(pin_note(s, "n", "k/2", 0, "", 0) == STORE_OK);
    CHECK(pin_note(s, "n", "k/2", 8, "a\0b", 3) == STORE_OK);
    CHECK(note_is(s, "n", "k/2", 8, "a\0b", 3));
    CHECK(pin_note(s, "n", "k/3", 0x80000000u, big, STORE_PIN_NOTE_MAX) == STORE_OK);
    /* Bad notes are refused before anything is queued. */
    CHECK(pin_note(s, "n", "k/4", 1, big, STORE_PIN_NOTE_MAX + 1) == STORE_ERROR);
    CHECK(pin_note(s, "n", "k/4", 1, NULL, 3) == STORE_ERROR);
    /* The owner may hold a small JSON document. */
    char *owner = malloc(STORE_LEASE_OWNER_MAX + 2);
    memset(owner, 'j', STORE_LEASE_OWNER_MAX + 1);
    owner[STORE_LEASE_OWNER_MAX + 1] = '\0';
    CHECK(store_lease_put(s, "n", owner, wall_ms() + HOUR_MS, 0) == STORE_ERROR);
    owner[STORE_LEASE_OWNER_MAX] = '\0';
    CHECK(store_lease_put(s, "n", owner, wall_ms() + HOUR_MS, 0) == STORE_OK);
    store_close(s);

    s = open_store(&d, 0);
    CHECK(broken_copies(&d) == 0);
    CHECK(note_is(s, "n", "k/1", 7, "first", 5));
    CHECK(note_is(s, "n", "k/2", 8, "a\0b", 3));
    CHECK(note_is(s, "n", "k/3", 0x80000000u, big, STORE_PIN_NOTE_MAX));
    store_lease_t l;
    CHECK(store_lease_get(s, "n", &l) == STORE_OK && l.pinned_objects == 3);
    CHECK(l.owner != NULL && strcmp(l.owner, owner) == 0);
    store_lease_free(&l);
    store_close(s);
    free(owner);
    test_dir_remove(&d);
}


/* Opens the store's LMDB directly, as another program would. */
static MDB_env *raw_env(const test_dir_t *d)
{
    MDB_env *env = NULL;

    CHECK(mdb_env_create(&env) == 0);
    CHECK(mdb_env_set_maxdbs(env, 8) == 0);
    CHECK(mdb_env_set_mapsize(env, (size_t)1 << 30) == 0);
    CHECK(mdb_env_open(env, d->store, 0, 0600) == 0);
    return env;
}

/* Drops the lease databases, leaving the store as one made before leases existed. */
static void make_old_store(const test_dir_t *d)
{
    MDB_env *env = raw_env(d);
    MDB_txn *txn;
    MDB_dbi dbi;

    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "leases", 0, &dbi) == 0 && mdb_drop(txn, dbi, 1) == 0);
    CHECK(mdb_dbi_open(txn, "lease_pins", 0, &dbi) == 0 && mdb_drop(txn, dbi, 1) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "leases", 0, &dbi) == MDB_NOTFOUND);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static void test_old_store_opens(void *buf)
{
    test_dir_t d;
    store_lease_t l;

    test_dir_make(&d, "test_store_lease");
    store_t *s = open_store(&d, 0);
    fill_range(s, "o", 0, 3, buf);
    store_close(s);
    make_old_store(&d);

    s = open_store(&d, 0);
    CHECK(broken_copies(&d) == 0);
    CHECK(lease_log.lines[0] == 0);
    CHECK(test_cached(s, "o/0") && test_cached(s, "o/1") && test_cached(s, "o/2"));
    CHECK(store_lease_put(s, "new", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(pin(s, "new", "o/1") == STORE_OK);
    store_close(s);
    s = open_store(&d, 0);
    CHECK(broken_copies(&d) == 0);
    CHECK(store_lease_get(s, "new", &l) == STORE_OK && l.pinned_objects == 1);
    store_lease_free(&l);
    CHECK(test_cached(s, "o/0"));
    store_close(s);
    test_dir_remove(&d);
}

/* A lease record that fails its check is damage: the store is moved aside, as for any other. */
static void test_garbled_lease_rebuilds(void *buf)
{
    test_dir_t d;

    test_dir_make(&d, "test_store_lease");
    store_t *s = open_store(&d, 0);
    fill_range(s, "g", 0, 1, buf);
    CHECK(store_lease_put(s, "victim", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    store_close(s);

    MDB_env *env = raw_env(&d);
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {6, "victim"}, v = {5, "junk!"};
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "leases", 0, &dbi) == 0 && mdb_put(txn, dbi, &k, &v, 0) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);

    lease_log.quiet = 1;
    s = open_store(&d, 0);
    lease_log.quiet = 0;
    CHECK(broken_copies(&d) == 1);
    store_lease_t l;
    CHECK(store_lease_get(s, "victim", &l) == STORE_NOT_FOUND);
    store_lease_free(&l);
    store_close(s);
    test_dir_remove(&d);
}

static MDB_val raw_pin_key(unsigned char *buf, const char *id, const char *name)
{
    store_key_t key;
    size_t id_len = strlen(id);

    test_key(&key, name);
    buf[0] = (unsigned char)id_len;
    memcpy(buf + 1, id, id_len);
    memcpy(buf + 1 + id_len, key.hash, sizeof(key.hash));
    return (MDB_val){1 + id_len + sizeof(key.hash), buf};
}

typedef enum { SET_EMPTY, FLIP_BYTE, COPY_FROM_OTHER, TRUNCATE, VALUE_SIZE } raw_act_t;

/* Does act to the pin value of (id, name) in the closed store; VALUE_SIZE returns the value's size. */
static size_t raw_pin(const test_dir_t *d, const char *id, const char *name, const char *other, raw_act_t act)
{
    MDB_env *env = raw_env(d);
    unsigned char kb[256], ob[256], copy[STORE_PIN_NOTE_MAX + 64];
    MDB_val k = raw_pin_key(kb, id, name), v = {0, NULL};
    MDB_txn *txn;
    MDB_dbi dbi;
    size_t size = 0;

    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "lease_pins", 0, &dbi) == 0);
    if (act == COPY_FROM_OTHER) {
        MDB_val ok = raw_pin_key(ob, id, other);
        CHECK(mdb_get(txn, dbi, &ok, &v) == 0);
    } else if (act != SET_EMPTY) {
        CHECK(mdb_get(txn, dbi, &k, &v) == 0);
    }
    size = v.mv_size;
    CHECK(size <= sizeof(copy));
    if (size > 0 && size <= sizeof(copy))
        memcpy(copy, v.mv_data, size);
    v.mv_data = copy;
    if (act == FLIP_BYTE)
        copy[size / 2] ^= 0x20;
    if (act == TRUNCATE)
        v.mv_size--;
    if (act != VALUE_SIZE)
        CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
    return size;
}

/* A closed store in a new directory whose lease id pins n/0 and n/1, each with a note. */
static void make_noted_store(test_dir_t *d, const char *id)
{
    test_dir_make(d, "test_store_lease");
    store_t *s = open_store(d, 0);
    CHECK(store_lease_put(s, id, "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(pin_note(s, id, "n/0", 1, "note of n/0", 11) == STORE_OK);
    CHECK(pin_note(s, id, "n/1", 2, "note of n/1", 11) == STORE_OK);
    store_close(s);
}

/* A store from before notes: its pins' values are empty. They read as no note, and take one later. */
static void test_old_empty_pins(void)
{
    test_dir_t d;
    store_lease_t l;

    make_noted_store(&d, "old");
    raw_pin(&d, "old", "n/0", NULL, SET_EMPTY);
    raw_pin(&d, "old", "n/1", NULL, SET_EMPTY);
    raw_pin(&d, "old", "n/2", NULL, SET_EMPTY); /* written as the old code did */

    store_t *s = open_store(&d, 0);
    CHECK(broken_copies(&d) == 0);
    CHECK(store_lease_get(s, "old", &l) == STORE_OK && l.pinned_objects == 3);
    store_lease_free(&l);
    CHECK(note_is(s, "old", "n/0", 0, NULL, 0));
    CHECK(note_is(s, "old", "n/2", 0, NULL, 0));
    CHECK(pin_note(s, "old", "n/0", 1, "now", 3) == STORE_OK);
    CHECK(pin_note(s, "old", "n/1", 0, NULL, 0) == STORE_OK); /* nothing to add: left as it is */
    CHECK(note_is(s, "old", "n/0", 1, "now", 3));
    store_close(s);
    CHECK(raw_pin(&d, "old", "n/1", NULL, VALUE_SIZE) == 0);

    s = open_store(&d, 0);
    CHECK(broken_copies(&d) == 0);
    CHECK(note_is(s, "old", "n/0", 1, "now", 3));
    CHECK(note_is(s, "old", "n/1", 0, NULL, 0));
    store_close(s);
    test_dir_remove(&d);
}

/* A pin value garbled (act) fails the check at open: the store is moved aside, as for a garbled lease record. */
static void test_garbled_pin(raw_act_t act)
{
    test_dir_t d;
    store_lease_t l;

    make_noted_store(&d, "g");
    raw_pin(&d, "g", "n/0", "n/1", act); /* COPY_FROM_OTHER: a sound value, filed under the wrong key */
    lease_log.quiet = 1;
    store_t *s = open_store(&d, 0);
    lease_log.quiet = 0;
    CHECK(broken_copies(&d) == 1);
    CHECK(store_lease_get(s, "g", &l) == STORE_NOT_FOUND);
    store_lease_free(&l);
    store_close(s);
    test_dir_remove(&d);
}

int main(void)
{
    void *buf = test_alloc_chunk();
    char *big = malloc(STORE_PIN_NOTE_MAX + 1);

    for (int i = 0; i <= STORE_PIN_NOTE_MAX; i++)
        big[i] = (char)('a' + i % 26);
    test_log_init(&lease_log);
    uint64_t charge = object_charge(buf);
    CHECK(charge > OBJ);
    test_pins_survive_workload(buf, charge);
    test_quotas(buf, charge);
    test_quota_race(buf, charge);
    test_expiry_releases(buf);
    test_restart_keeps_leases(buf, charge);
    test_kill9_keeps_pins(buf);
    test_end_releases(buf);
    test_old_store_opens(buf);
    test_garbled_lease_rebuilds(buf);
    test_notes_merge(big);
    test_old_empty_pins();
    test_garbled_pin(FLIP_BYTE);
    test_garbled_pin(COPY_FROM_OTHER);
    test_garbled_pin(TRUNCATE);
    free(big);
    free(buf);
    UNIT_DONE();
}
