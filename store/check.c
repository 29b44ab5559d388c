/*
 * check.c - verifying a store when it opens: LMDB's structure, our records,
 * and the accounting that ties each metadata record to its chunks.
 *
 * LMDB trusts its file. A garbled page can send it, or us, through a wild
 * pointer, and a signal is not something a library may catch. So the deep
 * check runs first in a forked child that is free to crash: it walks the free
 * list, every record, and the page header of every overflow value, and
 * reports through a pipe; silence means it died, and the store is damaged.
 * Only then does this process open the store, and scan it again without
 * touching chunk pages to rebuild the index and to list the transient
 * objects, which the writer removes before the store is used. Chunk payloads
 * are not read at open (that would read the whole cache): their checksums
 * catch damage on the read that meets it. Both scans also check the lease
 * databases, when the store has them (lease.c): every record sound, every
 * pin of a lease that exists; the shallow one loads the lease table.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_internal.h"

/* The child's limit: a looping walk of a garbled tree must not hang start-up forever. */
#define CHECK_TIMEOUT_S 600

typedef struct scan {
    store_t *s;
    MDB_txn *txn;
    bool deep;
    uintptr_t map_base; /* where overflow page headers place the map; 0 until the first */
    size_t last_pgno;
    bool build_index; /* collect an index entry per record, and the keys of transient objects */
    index_entry_t **entries;
    size_t n, cap;
    store_key_t *transient;
    size_t ntransient, transient_cap;
    char *why;
    size_t why_len;
} scan_t;

static int damaged(scan_t *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int damaged(scan_t *sc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sc->why, sc->why_len, fmt, ap);
    va_end(ap);
    return STORE_CORRUPT;
}

/* An LMDB error met while scanning: damage, unless the system ran out of memory. */
static int lmdb_failed(scan_t *sc, int rc, const char *what)
{
    snprintf(sc->why, sc->why_len, "%s: %s", what, mdb_strerror(rc));
    return rc == ENOMEM ? STORE_ERROR : STORE_CORRUPT;
}

/* Every free-list record must be a well-formed list of pages inside the file. */
static int scan_freelist(scan_t *sc)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(sc->txn, 0, &cur); /* database 0 is LMDB's free list */

    if (rc != MDB_SUCCESS)
        return lmdb_failed(sc, rc, "opening the free list");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const size_t *ids = v.mv_data;
        size_t n, i;

        if (k.mv_size != sizeof(size_t) || v.mv_size < sizeof(size_t) || v.mv_size % sizeof(size_t) != 0)
            break;
        n = ids[0];
        if (n > v.mv_size / sizeof(size_t) - 1)
            break;
        for (i = 1; i <= n; i++)
            if (ids[i] < 2 || ids[i] > sc->last_pgno)
                break;
        if (i <= n)
            break;
    }
    mdb_cursor_close(cur);
    if (rc == MDB_SUCCESS)
        return damaged(sc, "a free-list record is garbled");
    return rc == MDB_NOTFOUND ? STORE_OK : lmdb_failed(sc, rc, "walking the free list");
}

static int add_entry(scan_t *sc, const MDB_val *mk, const MDB_val *mv, const meta_fixed_t *f)
{
    index_entry_t *e;

    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 1024;
        index_entry_t **grown = realloc(sc->entries, cap * sizeof(*grown));

        if (grown == NULL)
            return lmdb_failed(sc, ENOMEM, "rebuilding the index");
        sc->entries = grown;
        sc->cap = cap;
    }
    if ((e = calloc(1, sizeof(*e))) == NULL)
        return lmdb_failed(sc, ENOMEM, "rebuilding the index");
    memcpy(e->key.hash, mk->mv_data, STORE_KEY_SIZE);
    e->bytes = lmdb_footprint(sc->s->psize, STORE_KEY_SIZE, mv->mv_size) + f->chunk_bytes;
    e->chunks = f->chunks_present;
    e->access_seq = f->access_seq;
    e->last_access = f->last_access;
    sc->entries[sc->n++] = e;
    return STORE_OK;
}

/* Lists a transient object, for the writer to remove before the store is used (writer.c). */
static int add_transient(scan_t *sc, const MDB_val *mk)
{
    if (sc->ntransient == sc->transient_cap) {
        size_t cap = sc->transient_cap ? sc->transient_cap * 2 : 16;
        store_key_t *grown = realloc(sc->transient, cap * sizeof(*grown));

        if (grown == NULL)
            return lmdb_failed(sc, ENOMEM, "listing transient objects");
        sc->transient = grown;
        sc->transient_cap = cap;
    }
    memcpy(sc->transient[sc->ntransient++].hash, mk->mv_data, STORE_KEY_SIZE);
    return STORE_OK;
}

/* The deep look at one chunk: its overflow page header and the length in its own header. */
static bool chunk_deep_ok(scan_t *sc, const MDB_val *cv, size_t expected_len)
{
    uint32_t crc;
    size_t len;

    return lmdb_overflow_ok(cv, sc->s->psize, &sc->map_base, sc->last_pgno) &&
           chunk_value_header(cv, &crc, &len) == STORE_OK && len == expected_len;
}

/*
 * Checks one metadata record and the chunks that sort under its key; *chunk_rc
 * and the chunk cursor advance past them. Both databases are in key-hash
 * order, so one merged walk pairs every chunk with its record.
 */
static int scan_object(scan_t *sc, MDB_cursor *cc, const MDB_val *mk, const MDB_val *mv, MDB_val *ck, MDB_val *cv,
                       int *chunk_rc)
{
    size_t psize = sc->s->psize;
    store_key_t mkey;
    meta_fixed_t f;
    uint64_t bytes = 0;
    uint32_t count = 0;

    if (mk->mv_size != STORE_KEY_SIZE)
        return damaged(sc, "a metadata key of %zu bytes", mk->mv_size);
    memcpy(mkey.hash, mk->mv_data, STORE_KEY_SIZE);
    if (!meta_read_fixed(mv->mv_data, mv->mv_size, &mkey, &f))
        return damaged(sc, "a metadata record fails its checksum");
    if (sc->deep && !lmdb_overflow_ok(mv, psize, &sc->map_base, sc->last_pgno))
        return damaged(sc, "a metadata record's page header is garbled");
    for (; *chunk_rc == MDB_SUCCESS; *chunk_rc = mdb_cursor_get(cc, ck, cv, MDB_NEXT)) {
        store_key_t key;
        int64_t generation;
        uint32_t index;
        size_t expected;
        int order;

        if (!chunk_key_parse(ck, &key, &generation, &index))
            return damaged(sc, "a chunk key of %zu bytes", ck->mv_size);
        order = memcmp(key.hash, mk->mv_data, STORE_KEY_SIZE);
        if (order > 0)
            break;
        if (order < 0)
            return damaged(sc, "a chunk without a metadata record");
        /* A record of unknown size bounds no index; its chunks are all full-size (chunk_expected_len). */
        if (generation != f.generation || (f.size != STORE_SIZE_UNKNOWN && index >= f.num_chunks))
            return damaged(sc, "a chunk of a generation or index its record does not have");
        expected = chunk_expected_len(f.size, index);
        if (cv->mv_size != chunk_value_size(expected, psize))
            return damaged(sc, "a chunk value of %zu bytes where its record implies another size", cv->mv_size);
        if (sc->deep && !chunk_deep_ok(sc, cv, expected))
            return damaged(sc, "a chunk's page header or length is garbled");
        count++;
        bytes += lmdb_footprint(psize, CHUNK_KEY_SIZE, cv->mv_size);
    }
    if (*chunk_rc != MDB_SUCCESS && *chunk_rc != MDB_NOTFOUND)
        return lmdb_failed(sc, *chunk_rc, "walking the chunks");
    if (count != f.chunks_present || bytes != f.chunk_bytes)
        return damaged(sc, "accounting mismatch: a record counts %u chunks (%llu bytes), the store has %u (%llu bytes)",
                       f.chunks_present, (unsigned long long)f.chunk_bytes, count, (unsigned long long)bytes);
    if (!sc->build_index)
        return STORE_OK;
    /* Indexed all the same: removing it is then an ordinary delete, which keeps the accounting. */
    if (f.transient) {
        int rc = add_transient(sc, mk);
        if (rc != STORE_OK)
            return rc;
    }
    return add_entry(sc, mk, mv, &f);
}

static int scan_records(scan_t *sc)
{
    MDB_cursor *mc = NULL, *cc = NULL;
    MDB_val mk, mv, ck, cv;
    int rc, meta_rc, chunk_rc;

    if ((rc = mdb_cursor_open(sc->txn, sc->s->dbi_meta, &mc)) != MDB_SUCCESS ||
        (rc = mdb_cursor_open(sc->txn, sc->s->dbi_chunks, &cc)) != MDB_SUCCESS) {
        rc = lmdb_failed(sc, rc, "opening cursors");
        goto out;
    }
    chunk_rc = mdb_cursor_get(cc, &ck, &cv, MDB_FIRST);
    rc = STORE_OK;
    for (meta_rc = mdb_cursor_get(mc, &mk, &mv, MDB_FIRST); meta_rc == MDB_SUCCESS && rc == STORE_OK;
         meta_rc = mdb_cursor_get(mc, &mk, &mv, MDB_NEXT))
        rc = scan_object(sc, cc, &mk, &mv, &ck, &cv, &chunk_rc);
    if (rc != STORE_OK)
        goto out;
    if (meta_rc != MDB_NOTFOUND)
        rc = lmdb_failed(sc, meta_rc, "walking the metadata");
    else if (chunk_rc == MDB_SUCCESS)
        rc = damaged(sc, "a chunk without a metadata record");
    else if (chunk_rc != MDB_NOTFOUND)
        rc = lmdb_failed(sc, chunk_rc, "walking the chunks");
out:
    if (cc != NULL)
        mdb_cursor_close(cc);
    if (mc != NULL)
        mdb_cursor_close(mc);
    return rc;
}

/*
 * Scans the open store: deep in the child, shallow (no chunk pages read) in
 * this process, where build_index also loads the index from the records.
 */
int check_scan(store_t *s, bool deep, bool build_index, char *why, size_t why_len)
{
    scan_t sc = {.s = s, .deep = deep, .build_index = build_index, .why = why, .why_len = why_len};
    MDB_envinfo info;
    size_t i;
    int rc;

    if ((rc = mdb_env_info(s->env, &info)) != MDB_SUCCESS)
        return lmdb_failed(&sc, rc, "mdb_env_info");
    sc.last_pgno = info.me_last_pgno;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &sc.txn)) != MDB_SUCCESS)
        return lmdb_failed(&sc, rc, "mdb_txn_begin");
    rc = deep ? scan_freelist(&sc) : STORE_OK;
    if (rc == STORE_OK)
        rc = scan_records(&sc);
    if (rc == STORE_OK)
        rc = lease_check(s, sc.txn, build_index, why, why_len);
    mdb_txn_abort(sc.txn);
    if (rc == STORE_OK && build_index) {
        index_load(&s->index, sc.entries, sc.n);
        s->transient = sc.transient;
        s->ntransient = sc.ntransient;
    } else {
        for (i = 0; i < sc.n; i++)
            free(sc.entries[i]);
        free(sc.transient);
    }
    free(sc.entries);
    return rc;
}

/* In the child: open read-only, check deeply, report one code byte and the reason, and exit. */
static void child_check(store_t *s, int fd)
{
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGALRM};
    struct rlimit no_core = {0, 0};
    char report[512];
    sigset_t all;
    size_t i, len;
    ssize_t n;
    int rc;

    /* Die quietly from a crash or the timeout, whatever the parent installed. */
    for (i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
        signal(fatal[i], SIG_DFL);
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    setrlimit(RLIMIT_CORE, &no_core);
    alarm(CHECK_TIMEOUT_S);

    report[1] = '\0';
    rc = env_open(s, MDB_RDONLY, report + 1, sizeof(report) - 1);
    if (rc == STORE_OK) {
        if (!s->fresh)
            rc = check_scan(s, true, false, report + 1, sizeof(report) - 1);
        env_close(s);
    }
    report[0] = rc == STORE_OK ? 'K' : rc == STORE_CORRUPT ? 'D' : 'E';
    len = 1 + strlen(report + 1);
    for (i = 0; i < len; i += (size_t)n)
        if ((n = write(fd, report + i, len - i)) <= 0)
            break;
    _exit(0);
}

/* Reads the child's report until it exits; returns the bytes read. */
static size_t read_report(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    ssize_t n;

    while (got < cap && ((n = read(fd, buf + got, cap - got)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            got += (size_t)n;
    return got;
}

/*
 * Runs the deep check in a child. STORE_OK when the store is sound or new,
 * STORE_CORRUPT when it is damaged (the child said so, or died), STORE_ERROR
 * when the check itself could not run.
 */
int check_in_child(store_t *s, char *why, size_t why_len)
{
    char data_path[PATH_MAX], report[512];
    struct stat st;
    int fds[2], status = 0;
    size_t got;
    pid_t pid;

    snprintf(data_path, sizeof(data_path), "%s/data.mdb", s->path);
    if (stat(data_path, &st) != 0) {
        snprintf(why, why_len, "%s: %s", data_path, strerror(errno));
        return errno == ENOENT ? STORE_OK : STORE_ERROR;
    }
    if (st.st_size == 0)
        return STORE_OK; /* LMDB treats an empty file as a new environment */
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(why, why_len, "pipe: %s", strerror(errno));
        return STORE_ERROR;
    }
    if ((pid = fork()) < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return STORE_ERROR;
    }
    if (pid == 0) {
        close(fds[0]);
        child_check(s, fds[1]);
    }
    close(fds[1]);
    got = read_report(fds[0], report, sizeof(report) - 1);
    close(fds[0]);
    report[got] = '\0';
    /* With SIGCHLD ignored the child reaps itself (ECHILD); the report already says what matters. */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got == 0) {
        if (WIFSIGNALED(status))
            snprintf(why, why_len, "the check crashed on it (signal %d)", WTERMSIG(status));
        else
            snprintf(why, why_len, "the check died on it");
        return STORE_CORRUPT;
    }
    snprintf(why, why_len, "%s", report + 1);
    return report[0] == 'K' ? STORE_OK : report[0] == 'D' ? STORE_CORRUPT : STORE_ERROR;
}
