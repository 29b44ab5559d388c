/*
 * test_store_crash.c - kill -9 in the middle of fills never leaves a torn
 * object. A child fills, refills and invalidates objects in a loop and is
 * SIGKILLed after a random delay, several times over the same store. After
 * each kill the store must open without being moved aside, every chunk that
 * is present must read back exactly (its content is a function of name,
 * generation and index), and every record's chunk count must match the
 * chunks that are there.
 */
#include <signal.h>
#include <sys/wait.h>

#include "test_store_util.h"

#define ROUNDS 6
#define NAMES 24

/* The child: fills forever, with short commit intervals so kills land between and inside commits. */
static void child_fill(const test_dir_t *d, unsigned seed)
{
    store_config_t c = test_config(d, 64 * TEST_MiB, NULL);
    void *buf = test_alloc_chunk();
    store_t *s = NULL;
    uint64_t r = seed;

    c.commit_interval_ms = 2;
    if (store_open(&s, &c) != STORE_OK)
        _exit(3);
    for (;;) {
        char name[32];
        uint64_t size;
        int64_t gen;
        store_key_t key;

        r = mix64(r + 1);
        snprintf(name, sizeof(name), "crash/%d", (int)(r % NAMES));
        gen = 1 + (int64_t)((r >> 8) % 1000);
        /* Size follows from the generation, as it does upstream: one generation, one content. */
        size = mix64((uint64_t)gen) % (5 * STORE_CHUNK_SIZE / 2);
        test_key(&key, name);
        if ((r >> 32) % 10 == 0) {
            if (store_invalidate(s, &key) != STORE_OK)
                _exit(4);
            continue;
        }
        int rc = test_fill(s, name, gen, size, buf);
        if (rc == STORE_BUSY) {
            /* A full write queue refuses data, as it may (a fill then goes uncached): wait for the writer. */
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
            continue;
        }
        if (rc != STORE_OK)
            _exit(5);
    }
}

/* Checks every object the child could have written; returns how many chunks were present. */
static int verify(const test_dir_t *d, test_log_t *log)
{
    store_config_t c = test_config(d, 64 * TEST_MiB, log);
    void *buf = test_alloc_chunk(), *want = test_alloc_chunk();
    store_t *s = NULL;
    store_stats_t st;
    int present = 0, objects = 0;
    uint64_t chunks = 0;

    CHECK(store_open(&s, &c) == STORE_OK);
    if (s == NULL)
        return 0;
    for (int i = 0; i < NAMES; i++) {
        store_meta_t m;
        store_key_t key;
        char name[32];
        uint32_t n = 0;

        snprintf(name, sizeof(name), "crash/%d", i);
        test_key(&key, name);
        if (store_meta_get(s, &key, &m) != STORE_OK)
            continue;
        objects++;
        CHECK_STR(m.name, name);
        CHECK(m.size == mix64((uint64_t)m.generation) % (5 * STORE_CHUNK_SIZE / 2));
        CHECK(m.num_chunks == test_num_chunks(m.size));
        for (uint32_t idx = 0; idx < m.num_chunks; idx++) {
            int rc = test_check_chunk(s, name, m.generation, m.size, idx, buf, want);

            CHECK(rc == STORE_OK || rc == STORE_NOT_FOUND);
            CHECK((rc == STORE_OK) == store_chunk_present(s, &key, m.generation, idx));
            n += rc == STORE_OK;
        }
        CHECK(n == m.chunks_present);
        present += (int)n;
        chunks += n;
        store_meta_free(&m);
    }
    store_stats_get(s, &st);
    CHECK(st.objects == (uint64_t)objects && st.chunks == chunks && st.corrupt_chunks == 0);
    store_close(s);
    free(buf);
    free(want);
    return present;
}

int main(void)
{
    test_dir_t d;
    test_log_t log;
    /* TEST_SEED replays a failed run. */
    const char *fixed = getenv("TEST_SEED");
    unsigned seed = fixed != NULL ? (unsigned)strtoul(fixed, NULL, 10) : (unsigned)time(NULL);
    int total = 0;

    test_dir_make(&d, "test_store_crash");
    test_log_init(&log);
    printf("seed %u\n", seed);
    for (int round = 0; round < ROUNDS; round++) {
        struct timespec delay;
        pid_t pid;
        int status;

        fflush(NULL);
        pid = fork();
        if (pid == 0)
            child_fill(&d, seed + (unsigned)round);
        CHECK(pid > 0);
        /* 50 to 650 ms: opening, mid-batch, mid-commit, and between commits all get hit across rounds. */
        delay.tv_sec = 0;
        delay.tv_nsec = (long)(50 + mix64(seed + (unsigned)round) % 600) * 1000000;
        nanosleep(&delay, NULL);
        CHECK(kill(pid, SIGKILL) == 0);
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        if (WIFEXITED(status))
            printf("round %d: the child exited with %d before it was killed\n", round, WEXITSTATUS(status));
        total += verify(&d, &log);
    }
    printf("%d rounds, %d chunks verified\n", ROUNDS, total);
    CHECK(total > 0);
    CHECK(log.lines[0] == 0); /* never moved aside: a kill is not damage */
    CHECK(broken_copies(&d) == 0);
    test_dir_remove(&d);
    UNIT_DONE();
}
