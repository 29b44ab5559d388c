/*
 * test_store_lease_async.c - the lease calls an event loop makes
 * (store_lease_*_async), and expect_bytes.
 *
 * The async calls are the blocking ones' ops without the wait: the same
 * script of puts, pins, extends and ends gets the same results either way,
 * each done is told exactly once (counted atomically; waited for on a
 * condition variable, never with a sleep), ops still queued when
 * store_close runs are decided and told before it returns, and a refused
 * call is never told. expect_bytes makes a first pin count the upload it
 * announces. (Pin notes are tested in test_store_lease.c, with the other
 * on-disk records; a failed commit in test_store_lease_faults.c.)
 */
#include <stdatomic.h>

#include "test_store_util.h"

#define OBJ (STORE_CHUNK_SIZE) /* one full chunk: about 1 MiB charged */
#define BUDGET (16 * TEST_MiB)
#define HOUR_MS ((int64_t)3600 * 1000)
#define NEVER_MS 600000
#define MAX_CALLS 32

static test_log_t async_log;

static store_t *open_store(const test_dir_t *d, uint64_t max_lease_bytes, unsigned commit_interval_ms)
{
    store_config_t c = test_config(d, BUDGET, &async_log);
    store_t *s = NULL;

    c.max_lease_pinned_bytes = max_lease_bytes;
    c.commit_interval_ms = commit_interval_ms;
    CHECK(store_open(&s, &c) == STORE_OK);
    return s;
}

static void fill_range(store_t *s, const char *prefix, int n, void *buf)
{
    char name[64];

    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%s/%d", prefix, i);
        CHECK(test_fill(s, name, 1, OBJ, buf) == STORE_OK);
    }
    CHECK(store_sync(s) == STORE_OK);
}

/* ---- counting what done is told ---- */

typedef struct tracker tracker_t;

typedef struct call {
    tracker_t *t;
    atomic_int told; /* how many times done ran for this call: must end at 1 */
    int result;
} call_t;

struct tracker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int told; /* done calls, all calls together */
    int n;    /* calls handed out */
    call_t calls[MAX_CALLS];
};

static void tracker_init(tracker_t *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
}

static void tracker_destroy(tracker_t *t)
{
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
}

static void on_done(void *ctx, int result)
{
    call_t *c = ctx;

    c->result = result; /* read after the waiter takes the lock below */
    atomic_fetch_add(&c->told, 1);
    pthread_mutex_lock(&c->t->lock);
    c->t->told++;
    pthread_cond_broadcast(&c->t->cond);
    pthread_mutex_unlock(&c->t->lock);
}

/* The next call's context; a call the store refuses is handed back with call_refused. */
static call_t *call_next(tracker_t *t)
{
    call_t *c = &t->calls[t->n++];

    c->t = t;
    c->result = 1;
    atomic_store(&c->told, 0);
    return c;
}

/* Waits until every call handed out was told at least once. */
static void wait_all(tracker_t *t)
{
    pthread_mutex_lock(&t->lock);
    while (t->told < t->n)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

/* Every call handed out was told exactly once, and nothing else was told. */
static bool each_once(tracker_t *t)
{
    int n = 0;

    for (int i = 0; i < t->n; i++)
        n += atomic_load(&t->calls[i].told) == 1;
    pthread_mutex_lock(&t->lock);
    bool ok = n == t->n && t->told == t->n;
    pthread_mutex_unlock(&t->lock);
    return ok;
}

/* ---- one script, run blocking and async ---- */

typedef enum { PUT, EXTEND, PIN, END } verb_t;

typedef struct step {
    verb_t verb;
    const char *id;
    const char *name;   /* PIN: the object */
    int64_t arg;        /* PUT: quota in half objects; EXTEND: expiry from now, ms */
    int want;
} step_t;

/* quota 2.5 objects for "a"; all leases together 3.5 objects (set at open) */
static const step_t script[] = {
    {PIN, "nobody", "qqq/0", 0, STORE_NOT_FOUND},
    {PUT, "a", NULL, 5, STORE_OK},
    {PIN, "a", "qqq/0", 0, STORE_OK},
    {PIN, "a", "qqq/1", 0, STORE_OK},
    {PIN, "a", "qqq/2", 0, STORE_QUOTA},
    {PIN, "a", "qqq/0", 0, STORE_OK}, /* pinned already: counted once */
    {PIN, "a", "nc/0", 0, STORE_OK},  /* not cached: 0 */
    {EXTEND, "a", NULL, 2 * HOUR_MS, STORE_OK},
    {EXTEND, "nobody", NULL, HOUR_MS, STORE_NOT_FOUND},
    {PUT, "b", NULL, 0, STORE_OK},
    {PIN, "b", "qqq/2", 0, STORE_OK},
    {PIN, "b", "qqq/3", 0, STORE_QUOTA}, /* all leases: 4 > 3.5 */
    {END, "b", NULL, 0, STORE_OK},
    {END, "b", NULL, 0, STORE_NOT_FOUND},
    {PIN, "a", "qqq/2", 0, STORE_QUOTA}, /* a's own quota still */
    {EXTEND, "a", NULL, -1, STORE_OK},   /* expired at once */
    {PIN, "a", "qqq/3", 0, STORE_NOT_FOUND},
    {END, "a", NULL, 0, STORE_OK},       /* ending an expired lease works */
};
#define SCRIPT_LEN ((int)(sizeof(script) / sizeof(script[0])))

/* Runs step st: blocking when c is NULL (returns the result), else queued with c (returns the queuing code). */
static int run_step(store_t *s, const step_t *st, uint64_t charge, call_t *c)
{
    store_lease_done_fn done = c != NULL ? on_done : NULL;
    store_key_t key;

    switch (st->verb) {
    case PUT:
        return c == NULL ? store_lease_put(s, st->id, "o", wall_ms() + HOUR_MS, (uint64_t)st->arg * charge / 2)
                         : store_lease_put_async(s, st->id, "o", wall_ms() + HOUR_MS,
                                                 (uint64_t)st->arg * charge / 2, done, c);
    case EXTEND:
        return c == NULL ? store_lease_extend(s, st->id, wall_ms() + st->arg)
                         : store_lease_extend_async(s, st->id, wall_ms() + st->arg, done, c);
    case PIN:
        test_key(&key, st->name);
        return c == NULL ? store_lease_pin(s, st->id, &key, NULL, 0)
                         : store_lease_pin_async(s, st->id, &key, NULL, 0, done, c);
    case END:
        return c == NULL ? store_lease_end(s, st->id) : store_lease_end_async(s, st->id, done, c);
    }
    return STORE_ERROR;
}

/* A store holding qqq/0..3, all leases together limited to 3.5 objects. */
static store_t *script_store(test_dir_t *d, uint64_t charge, void *buf)
{
    test_dir_make(d, "test_store_lease_async");
    store_t *s = open_store(d, 3 * charge + charge / 2, 5);
    fill_range(s, "qqq", 4, buf);
    return s;
}

static void test_async_matches_blocking(void *buf, uint64_t charge)
{
    test_dir_t d1, d2;
    store_t *blocking = script_store(&d1, charge, buf), *async = script_store(&d2, charge, buf);
    tracker_t *t = malloc(sizeof(*t));

    tracker_init(t);
    /* All queued at once: one batch or several, in order either way. */
    for (int i = 0; i < SCRIPT_LEN; i++)
        CHECK(run_step(async, &script[i], charge, call_next(t)) == STORE_OK);
    for (int i = 0; i < SCRIPT_LEN; i++) {
        int rc = run_step(blocking, &script[i], charge, NULL);
        if (rc != script[i].want)
            fprintf(stderr, "  blocking step %d: %d, want %d\n", i, rc, script[i].want);
        CHECK(rc == script[i].want);
    }
    wait_all(t);
    for (int i = 0; i < SCRIPT_LEN; i++) {
        if (t->calls[i].result != script[i].want)
            fprintf(stderr, "  async step %d: %d, want %d\n", i, t->calls[i].result, script[i].want);
        CHECK(t->calls[i].result == script[i].want);
    }
    store_close(async);
    store_close(blocking);
    CHECK(each_once(t)); /* after close too: nothing was told twice */
    tracker_destroy(t);
    free(t);
    test_dir_remove(&d1);
    test_dir_remove(&d2);
}

/* Eight async pins racing for a quota of 3.5 objects, queued together: the first three in queue order pass. */
static void test_async_quota_order(void *buf, uint64_t charge)
{
    test_dir_t d;
    store_t *s = script_store(&d, charge, buf);
    tracker_t *t = malloc(sizeof(*t));
    char name[16];

    fill_range(s, "thr", 8, buf);
    tracker_init(t);
    CHECK(store_lease_put_async(s, "race", "o", wall_ms() + HOUR_MS, 3 * charge + charge / 2, on_done,
                                call_next(t)) == STORE_OK);
    for (int i = 0; i < 8; i++) {
        store_key_t key;
        snprintf(name, sizeof(name), "thr/%d", i);
        test_key(&key, name);
        CHECK(store_lease_pin_async(s, "race", &key, NULL, 0, on_done, call_next(t)) == STORE_OK);
    }
    wait_all(t);
    CHECK(t->calls[0].result == STORE_OK);
    for (int i = 1; i <= 8; i++)
        CHECK(t->calls[i].result == (i <= 3 ? STORE_OK : STORE_QUOTA));
    store_lease_t l;
    CHECK(store_lease_get(s, "race", &l) == STORE_OK && l.pinned_objects == 3 && l.pinned_bytes == 3 * charge);
    store_lease_free(&l);
    store_close(s);
    CHECK(each_once(t));
    tracker_destroy(t);
    free(t);
    test_dir_remove(&d);
}

/* Queues one async pin and waits for its result. */
static int pin_async_wait(store_t *s, const char *id, const char *name, uint64_t expect_bytes)
{
    tracker_t *t = malloc(sizeof(*t));
    store_key_t key;
    int rc;

    tracker_init(t);
    test_key(&key, name);
    rc = store_lease_pin_async(s, id, &key, NULL, expect_bytes, on_done, call_next(t));
    if (rc == STORE_OK) {
        wait_all(t);
        rc = t->calls[0].result;
        CHECK(each_once(t));
    }
    tracker_destroy(t);
    free(t);
    return rc;
}

static void test_expect_bytes(void *buf, uint64_t charge)
{
    test_dir_t d;
    store_key_t key;

    test_dir_make(&d, "test_store_lease_async");
    store_t *s = open_store(&d, 8 * TEST_MiB, 5);
    fill_range(s, "big", 1, buf);
    CHECK(store_lease_put(s, "up", "o", wall_ms() + HOUR_MS, 2 * TEST_MiB) == STORE_OK);
    /* Not cached yet: the announced size is what counts. */
    CHECK(pin_async_wait(s, "up", "new/0", 2 * TEST_MiB + 1) == STORE_QUOTA);
    CHECK(pin_async_wait(s, "up", "new/0", UINT64_MAX) == STORE_QUOTA); /* no overflow into a pass */
    CHECK(pin_async_wait(s, "up", "new/0", 2 * TEST_MiB) == STORE_OK);  /* exactly the quota */
    /* Pinned already: no quota check, whatever it announces. */
    CHECK(pin_async_wait(s, "up", "new/0", UINT64_MAX) == STORE_OK);
    /* Checked, not kept: new/0 counts 0 until it is cached. */
    CHECK(pin_async_wait(s, "up", "new/1", 1) == STORE_OK);
    /* A cached object counts its charge when expect_bytes is smaller. */
    CHECK(store_lease_put(s, "small", "o", wall_ms() + HOUR_MS, charge / 2) == STORE_OK);
    CHECK(pin_async_wait(s, "small", "big/0", 1) == STORE_QUOTA);
    /* All leases together: 8 MiB. */
    CHECK(store_lease_put(s, "free", "o", wall_ms() + HOUR_MS, 0) == STORE_OK);
    CHECK(pin_async_wait(s, "free", "new/2", 8 * TEST_MiB + 1) == STORE_QUOTA);
    test_key(&key, "new/2");
    CHECK(store_lease_pin(s, "free", &key, NULL, 8 * TEST_MiB + 1) == STORE_QUOTA); /* the blocking call agrees */
    CHECK(store_lease_pin(s, "free", &key, NULL, 8 * TEST_MiB) == STORE_OK);
    store_close(s);
    test_dir_remove(&d);
}

static void test_refused_never_told(void)
{
    test_dir_t d;
    tracker_t *t = malloc(sizeof(*t));
    store_pin_note_t too_long = {.marks = 0, .text = "x", .text_len = STORE_PIN_NOTE_MAX + 1};
    store_key_t key;

    tracker_init(t);
    test_key(&key, "r/0");
    test_dir_make(&d, "test_store_lease_async");
    store_t *s = open_store(&d, 0, 5);
    call_t *c = call_next(t);
    CHECK(store_lease_put_async(s, "", "o", wall_ms() + HOUR_MS, 0, on_done, c) == STORE_ERROR);
    CHECK(store_lease_extend_async(s, NULL, wall_ms(), on_done, c) == STORE_ERROR);
    CHECK(store_lease_end_async(s, "", on_done, c) == STORE_ERROR);
    CHECK(store_lease_pin_async(s, "r", NULL, NULL, 0, on_done, c) == STORE_ERROR);
    CHECK(store_lease_pin_async(s, "r", &key, &too_long, 0, on_done, c) == STORE_ERROR);
    /* done may be NULL: nothing is told, the op is applied all the same. */
    CHECK(store_lease_put_async(s, "r", "o", wall_ms() + HOUR_MS, 0, NULL, NULL) == STORE_OK);
    CHECK(store_lease_pin(s, "r", &key, NULL, 0) == STORE_OK);
    store_close(s);
    CHECK(atomic_load(&c->told) == 0 && t->told == 0);
    tracker_destroy(t);
    free(t);
    test_dir_remove(&d);
}

/* Ops still queued when store_close runs: decided by its last commit, and told before it returns. */
static void test_close_tells_queued(void)
{
    test_dir_t d;
    tracker_t *t = malloc(sizeof(*t));
    store_pin_note_t note = {.marks = 5, .text = "late", .text_len = 4};
    store_key_t k0, k1;

    tracker_init(t);
    test_key(&k0, "x/0");
    test_key(&k1, "x/1");
    test_dir_make(&d, "test_store_lease_async");
    store_t *s = open_store(&d, 0, NEVER_MS); /* nothing commits until someone waits, or the store closes */
    CHECK(store_lease_put_async(s, "c", "o", wall_ms() + HOUR_MS, 0, on_done, call_next(t)) == STORE_OK);
    CHECK(store_lease_pin_async(s, "c", &k0, &note, 0, on_done, call_next(t)) == STORE_OK);
    CHECK(store_lease_pin_async(s, "c", &k1, NULL, 0, on_done, call_next(t)) == STORE_OK);
    CHECK(store_lease_extend_async(s, "c", wall_ms() + 2 * HOUR_MS, on_done, call_next(t)) == STORE_OK);
    CHECK(store_lease_put_async(s, "d", "o", wall_ms() + HOUR_MS, 0, on_done, call_next(t)) == STORE_OK);
    CHECK(store_lease_end_async(s, "d", on_done, call_next(t)) == STORE_OK);
    CHECK(store_lease_pin_async(s, "nobody", &k0, NULL, 0, on_done, call_next(t)) == STORE_OK);
    pthread_mutex_lock(&t->lock);
    CHECK(t->told == 0); /* still queued */
    pthread_mutex_unlock(&t->lock);
    store_close(s);
    CHECK(each_once(t)); /* no waiting: store_close told them all */
    for (int i = 0; i < 6; i++)
        CHECK(t->calls[i].result == STORE_OK);
    CHECK(t->calls[6].result == STORE_NOT_FOUND);

    s = open_store(&d, 0, 5);
    store_lease_t l;
    CHECK(store_lease_get(s, "c", &l) == STORE_OK && l.pinned_objects == 2);
    store_lease_free(&l);
    CHECK(store_lease_get(s, "d", &l) == STORE_NOT_FOUND);
    store_lease_free(&l);
    store_close(s);
    tracker_destroy(t);
    free(t);
    test_dir_remove(&d);
}

static uint64_t object_charge(void *buf)
{
    test_dir_t d;
    store_stats_t st;

    test_dir_make(&d, "test_store_lease_async");
    store_t *s = open_store(&d, 0, 5);
    fill_range(s, "one", 1, buf); /* names of 5 bytes, as every object whose bytes are added up */
    store_stats_get(s, &st);
    store_close(s);
    test_dir_remove(&d);
    CHECK(st.objects == 1);
    return st.used_bytes;
}

int main(void)
{
    void *buf = test_alloc_chunk();
    test_log_init(&async_log);
    uint64_t charge = object_charge(buf);
    CHECK(charge > OBJ);
    test_async_matches_blocking(buf, charge);
    test_async_quota_order(buf, charge);
    test_expect_bytes(buf, charge);
    test_refused_never_told();
    test_close_tells_queued();
    free(buf);
    UNIT_DONE();
}
