/*
 * env.c - opening the LMDB environment, and the format record that says the
 * file is a larder store of this layout.
 *
 * Flags: MDB_NOSYNC (the writer flushes every ENV_SYNC_MS instead: a killed
 * process loses nothing committed, since the page cache holds it, and a
 * machine crash is caught by the checks at the next open), no MDB_WRITEMAP
 * (so a stray write cannot scribble on the map), and MDB_NOTLS (a read
 * transaction belongs to the call that made it, not to its thread).
 *
 * Opening only reads: an existing store's databases are opened in a read
 * transaction. A new one is marked fresh, and the writer thread creates its
 * databases and format record as its first commit.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store_internal.h"

#define FORMAT_KEY "format"
#define FORMAT_MAGIC "larder-store"
#define FORMAT_VERSION 1
#define FORMAT_SIZE 32
#define FORMAT_DAMAGED 0x1u /* the writer found damage it could not repair: rebuild at next open */

/* Room for the five databases plus one spare; LMDB sizes a per-transaction array by this. */
#define ENV_MAX_DBS 6
/* Reader slots: one per concurrent read call, across all threads. */
#define ENV_MAX_READERS 512

static void format_encode(unsigned char rec[FORMAT_SIZE], size_t psize, uint32_t flags)
{
    memset(rec, 0, FORMAT_SIZE);
    memcpy(rec, FORMAT_MAGIC, sizeof(FORMAT_MAGIC) - 1);
    put_le32(rec + 16, FORMAT_VERSION);
    put_le32(rec + 20, (uint32_t)STORE_CHUNK_SIZE);
    put_le32(rec + 24, (uint32_t)psize);
    put_le32(rec + 28, flags);
}

/* Errors that say the file is not a sound LMDB store of ours, as opposed to the system refusing us. */
static bool is_damage(int rc)
{
    switch (rc) {
    case EACCES:
    case EPERM:
    case EROFS:
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN:
    case EBUSY:
    case EIO:
        return false;
    default:
        return true;
    }
}

static int fail(int rc, char *why, size_t why_len, const char *what)
{
    snprintf(why, why_len, "%s: %s", what, mdb_strerror(rc));
    if (rc == ENOSPC || rc == EDQUOT)
        return STORE_NO_SPACE;
    return is_damage(rc) ? STORE_CORRUPT : STORE_ERROR;
}

static int check_format(store_t *s, MDB_txn *txn, char *why, size_t why_len)
{
    unsigned char want[FORMAT_SIZE];
    MDB_val k = {sizeof(FORMAT_KEY) - 1, FORMAT_KEY}, v;
    int rc = mdb_get(txn, s->dbi_info, &k, &v);

    if (rc != MDB_SUCCESS)
        return fail(rc, why, why_len, "reading the format record");
    format_encode(want, s->psize, 0);
    if (v.mv_size != FORMAT_SIZE || memcmp(v.mv_data, want, 28) != 0) {
        snprintf(why, why_len, "format record is not larder-store version %d with %zu-byte pages", FORMAT_VERSION,
                 s->psize);
        return STORE_CORRUPT;
    }
    if (get_le32((const unsigned char *)v.mv_data + 28) & FORMAT_DAMAGED) {
        snprintf(why, why_len, "marked damaged by the writer (a chunk's page header was garbled)");
        return STORE_CORRUPT;
    }
    return STORE_OK;
}

/* Opens our databases, or finds the environment empty and marks the store fresh. */
static int open_databases(store_t *s, MDB_txn *txn, char *why, size_t why_len)
{
    MDB_dbi main_dbi;
    MDB_stat st;
    int rc;

    rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
    if (rc == MDB_SUCCESS)
        rc = mdb_stat(txn, main_dbi, &st);
    if (rc != MDB_SUCCESS)
        return fail(rc, why, why_len, "reading the main database");
    if (st.ms_entries == 0) {
        s->fresh = true;
        return STORE_OK;
    }
    if ((rc = mdb_dbi_open(txn, "info", 0, &s->dbi_info)) != MDB_SUCCESS ||
        (rc = mdb_dbi_open(txn, "meta", 0, &s->dbi_meta)) != MDB_SUCCESS ||
        (rc = mdb_dbi_open(txn, "chunks", 0, &s->dbi_chunks)) != MDB_SUCCESS)
        return fail(rc, why, why_len, "opening the store's databases");
    /* A store from before leases has no lease databases: sound, and the writer adds them (lease.c). */
    if ((rc = lease_open_databases(s, txn)) != MDB_SUCCESS)
        return fail(rc, why, why_len, "opening the lease databases");
    return check_format(s, txn, why, why_len);
}

/*
 * Opens s->path; extra_flags is MDB_RDONLY for the check in a child. Returns
 * STORE_OK, STORE_CORRUPT (damaged; why says how) or STORE_ERROR (the
 * system refused; why says how). On failure nothing stays open.
 */
int env_open(store_t *s, unsigned extra_flags, char *why, size_t why_len)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    int rc, dead, result;

    s->fresh = false;
    s->have_lease_dbs = false;
    if ((rc = mdb_env_create(&s->env)) != MDB_SUCCESS) {
        s->env = NULL;
        snprintf(why, why_len, "mdb_env_create: %s", mdb_strerror(rc));
        return STORE_ERROR;
    }
    if ((rc = mdb_env_set_maxdbs(s->env, ENV_MAX_DBS)) != MDB_SUCCESS ||
        (rc = mdb_env_set_maxreaders(s->env, ENV_MAX_READERS)) != MDB_SUCCESS ||
        (rc = mdb_env_set_mapsize(s->env, s->map_size)) != MDB_SUCCESS) {
        result = fail(rc, why, why_len, "configuring the environment");
        goto out;
    }
    rc = mdb_env_open(s->env, s->path, MDB_NOSYNC | MDB_NOTLS | extra_flags, 0600);
    if (rc != MDB_SUCCESS) {
        result = fail(rc, why, why_len, "mdb_env_open");
        goto out;
    }
    /* Slots of readers in processes that died would pin old pages and make the file grow. */
    if ((rc = mdb_reader_check(s->env, &dead)) != MDB_SUCCESS || (rc = mdb_env_stat(s->env, &st)) != MDB_SUCCESS) {
        result = fail(rc, why, why_len, "inspecting the environment");
        goto out;
    }
    s->psize = st.ms_psize;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != MDB_SUCCESS) {
        result = fail(rc, why, why_len, "mdb_txn_begin");
        goto out;
    }
    result = open_databases(s, txn, why, why_len);
    /* Committing, even read-only, is what keeps the database handles open for the environment. */
    rc = mdb_txn_commit(txn);
    if (result == STORE_OK && rc != MDB_SUCCESS)
        result = fail(rc, why, why_len, "mdb_txn_commit");
out:
    if (result != STORE_OK)
        env_close(s);
    return result;
}

void env_close(store_t *s)
{
    reader_pool_drain(&s->readers); /* its transactions belong to this environment */
    if (s->env != NULL)
        mdb_env_close(s->env);
    s->env = NULL;
}

/* In the writer's transaction: creates the databases and the format record of a fresh store. */
int apply_create_layout(apply_ctx_t *a, void *unused)
{
    store_t *s = a->store;
    unsigned char rec[FORMAT_SIZE];
    MDB_val k = {sizeof(FORMAT_KEY) - 1, FORMAT_KEY}, v = {FORMAT_SIZE, rec};
    int rc;

    (void)unused;
    if ((rc = mdb_dbi_open(a->txn, "info", MDB_CREATE, &s->dbi_info)) != MDB_SUCCESS ||
        (rc = mdb_dbi_open(a->txn, "meta", MDB_CREATE, &s->dbi_meta)) != MDB_SUCCESS ||
        (rc = mdb_dbi_open(a->txn, "chunks", MDB_CREATE, &s->dbi_chunks)) != MDB_SUCCESS)
        return rc;
    format_encode(rec, s->psize, 0);
    return mdb_put(a->txn, s->dbi_info, &k, &v, 0);
}

/* In the writer's transaction: flags the store to be rebuilt at the next open. */
int env_mark_damaged(MDB_txn *txn, store_t *s)
{
    unsigned char rec[FORMAT_SIZE];
    MDB_val k = {sizeof(FORMAT_KEY) - 1, FORMAT_KEY}, v = {FORMAT_SIZE, rec};

    format_encode(rec, s->psize, FORMAT_DAMAGED);
    return mdb_put(txn, s->dbi_info, &k, &v, 0);
}
