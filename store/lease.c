/*
 * lease.c - leases in LMDB: the public calls, what the writer thread makes
 * of them, their verification at open, and the removal of expired ones.
 * store.h says what a lease is and promises; lease_table.c keeps them in
 * memory for eviction.
 *
 * Layout (store_internal.h): "leases" maps an id to its record, "lease_pins"
 * holds one value per (lease, key) under id length + id + key hash. A
 * lease record is
 *   "LSE1" (4) | expires_at_ms (8, le) | quota_bytes (8, le) |
 *   owner length (4, le) | owner | crc32c (4, le) of the id and all before,
 * and a pin value, the pin's note,
 *   "PIN1" (4) | marks (4, le) | text length (4, le) | text |
 *   crc32c (4, le) of the pin key and all before,
 * so a record or pin value that is garbled, or filed under another id or
 * key, fails its check. A pin value may also be empty: the pins of stores
 * from before notes, read as marks 0 and no text, and rewritten only when a
 * later pin call gives them a note.
 *
 * Every write is an op for the writer thread, decided by one commit and
 * reported to the op's lease_done after it (writer.c): the result is then
 * durable, and the quota check ran on the one thread that changes leases,
 * so two pins racing for the last bytes of a quota cannot both pass. The
 * blocking calls are the same ops, whose lease_done notes the result for a
 * caller waiting in writer_wait.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define LEASE_MAGIC "LSE1"
#define LEASE_FIXED 24                   /* magic, expiry, quota, owner length */
#define PIN_KEY_MAX (1 + STORE_LEASE_ID_MAX + STORE_KEY_SIZE)
#define PIN_MAGIC "PIN1"
#define PIN_FIXED 12 /* magic, marks, text length */
#define PIN_VALUE_MAX (PIN_FIXED + STORE_PIN_NOTE_MAX + 4)
/* Expired leases removed per commit by the sweep. */
#define SWEEP_BATCH 64

typedef struct lease_rec {
    int64_t expires_at_ms;
    uint64_t quota_bytes;
    const char *owner; /* in the record: not NUL-terminated */
    size_t owner_len;
} lease_rec_t;

/* ---- records and keys ---- */

static bool id_ok(const char *id)
{
    return id != NULL && id[0] != '\0' && strnlen(id, STORE_LEASE_ID_MAX + 1) <= STORE_LEASE_ID_MAX;
}

/* The check of a record filed under the LMDB key `under` (a lease id, or a pin key). */
static uint32_t record_crc(const void *under, size_t under_len, const unsigned char *rec, size_t len)
{
    return store_crc32c(store_crc32c(0, under, under_len), rec, len);
}

static size_t record_size(size_t owner_len)
{
    return LEASE_FIXED + owner_len + 4;
}

static void record_encode(unsigned char *rec, const char *id, const lease_rec_t *r)
{
    size_t len = record_size(r->owner_len);

    memcpy(rec, LEASE_MAGIC, 4);
    put_le64(rec + 4, (uint64_t)r->expires_at_ms);
    put_le64(rec + 12, r->quota_bytes);
    put_le32(rec + 20, (uint32_t)r->owner_len);
    memcpy(rec + LEASE_FIXED, r->owner, r->owner_len);
    put_le32(rec + len - 4, record_crc(id, strlen(id), rec, len - 4));
}

/* Decodes a record found under id (id_len bytes); false when it is not one, or not that id's. */
static bool record_decode(const void *data, size_t len, const char *id, size_t id_len, lease_rec_t *r)
{
    const unsigned char *rec = data;

    if (len < record_size(0) || memcmp(rec, LEASE_MAGIC, 4) != 0)
        return false;
    r->owner_len = get_le32(rec + 20);
    if (r->owner_len > STORE_LEASE_OWNER_MAX || len != record_size(r->owner_len) ||
        get_le32(rec + len - 4) != record_crc(id, id_len, rec, len - 4))
        return false;
    r->expires_at_ms = (int64_t)get_le64(rec + 4);
    r->quota_bytes = get_le64(rec + 12);
    r->owner = (const char *)rec + LEASE_FIXED;
    return true;
}

/* The pin key of (id, key), or with key NULL the prefix all of id's pins share. Returns its length. */
static size_t pin_key_make(unsigned char *buf, const char *id, const store_key_t *key)
{
    size_t id_len = strlen(id);

    buf[0] = (unsigned char)id_len;
    memcpy(buf + 1, id, id_len);
    if (key == NULL)
        return 1 + id_len;
    memcpy(buf + 1 + id_len, key->hash, STORE_KEY_SIZE);
    return 1 + id_len + STORE_KEY_SIZE;
}

static size_t pin_value_size(size_t text_len)
{
    return PIN_FIXED + text_len + 4;
}

/* Encodes note as the value of pin key pk into v (pin_value_size(note->text_len) bytes). */
static void pin_encode(unsigned char *v, const MDB_val *pk, const store_pin_note_t *note)
{
    size_t len = pin_value_size(note->text_len);

    memcpy(v, PIN_MAGIC, 4);
    put_le32(v + 4, note->marks);
    put_le32(v + 8, (uint32_t)note->text_len);
    if (note->text_len > 0)
        memcpy(v + PIN_FIXED, note->text, note->text_len);
    put_le32(v + len - 4, record_crc(pk->mv_data, pk->mv_size, v, len - 4));
}

/*
 * Decodes the value found under pin key pk into *note (text pointing into
 * data); false, with *note empty, when it is not a pin value, or not pk's.
 * An empty value is a pin from before notes: marks 0, no text.
 */
static bool pin_decode(const MDB_val *pk, const void *data, size_t len, store_pin_note_t *note)
{
    const unsigned char *v = data;
    size_t text_len = len >= PIN_FIXED ? get_le32(v + 8) : 0;

    *note = (store_pin_note_t){.marks = 0, .text = NULL, .text_len = 0};
    if (len == 0)
        return true;
    if (len < pin_value_size(0) || memcmp(v, PIN_MAGIC, 4) != 0 || text_len > STORE_PIN_NOTE_MAX ||
        len != pin_value_size(text_len) || get_le32(v + len - 4) != record_crc(pk->mv_data, pk->mv_size, v, len - 4))
        return false;
    note->marks = get_le32(v + 4);
    note->text = text_len > 0 ? (const char *)v + PIN_FIXED : NULL;
    note->text_len = text_len;
    return true;
}

static bool has_prefix(const MDB_val *k, const unsigned char *prefix, size_t len)
{
    return k->mv_size == len + STORE_KEY_SIZE && memcmp(k->mv_data, prefix, len) == 0;
}

/* Reads id's record in txn: MDB_SUCCESS, MDB_NOTFOUND, or MDB_CORRUPTED for one that fails its check. */
static int record_get(MDB_txn *txn, store_t *s, const char *id, lease_rec_t *r)
{
    MDB_val k = {strlen(id), (void *)id}, v;
    int rc = mdb_get(txn, s->dbi_leases, &k, &v);

    if (rc != MDB_SUCCESS)
        return rc;
    return record_decode(v.mv_data, v.mv_size, id, k.mv_size, r) ? MDB_SUCCESS : MDB_CORRUPTED;
}

/* ---- on the writer thread ---- */

/* Deletes every pin of id, in LMDB and in the table. */
static int delete_pins(apply_ctx_t *a, const char *id)
{
    unsigned char prefix[PIN_KEY_MAX];
    size_t plen = pin_key_make(prefix, id, NULL);
    MDB_val k = {plen, prefix}, v;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(a->txn, a->store->dbi_lease_pins, &cur);

    if (rc != MDB_SUCCESS)
        return rc;
    /* Positioned afresh after each delete: where a deleted cursor stands is LMDB's business. */
    for (;;) {
        k.mv_size = plen;
        k.mv_data = prefix;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != MDB_SUCCESS || !has_prefix(&k, prefix, plen))
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != MDB_SUCCESS)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

/* Removes id's record and pins (the table's copy too). */
static int remove_lease(apply_ctx_t *a, const char *id)
{
    MDB_val k = {strlen(id), (void *)id};
    int rc = mdb_del(a->txn, a->store->dbi_leases, &k, NULL);

    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return rc;
    if ((rc = delete_pins(a, id)) != MDB_SUCCESS)
        return rc;
    a->leases_changed = true;
    lease_table_drop(&a->store->index, id);
    return MDB_SUCCESS;
}

static int write_record(apply_ctx_t *a, const char *id, const void *rec, size_t len, const lease_rec_t *r)
{
    MDB_val k = {strlen(id), (void *)id}, v = {len, (void *)rec};
    int rc = mdb_put(a->txn, a->store->dbi_leases, &k, &v, 0);

    if (rc != MDB_SUCCESS)
        return rc;
    a->leases_changed = true;
    return lease_table_set(&a->store->index, id, r->expires_at_ms, r->quota_bytes) == 0 ? MDB_SUCCESS : ENOMEM;
}

/* Looks the lease up for an op that needs it live: op->result says STORE_NOT_FOUND when it is not. */
static int live_record(apply_ctx_t *a, op_t *op, lease_rec_t *r, bool *found)
{
    int rc = record_get(a->txn, a->store, op->lease_id, r);

    *found = rc == MDB_SUCCESS && store_wall_ms() < r->expires_at_ms;
    /* A record garbled since open is no lease: refusing this op must not lose the rest of the batch. */
    if (rc == MDB_NOTFOUND || rc == MDB_SUCCESS || rc == MDB_CORRUPTED) {
        if (!*found)
            op->result = STORE_NOT_FOUND;
        return MDB_SUCCESS;
    }
    return rc;
}

static int lease_put(apply_ctx_t *a, op_t *op)
{
    lease_rec_t old, r;
    int rc = record_get(a->txn, a->store, op->lease_id, &old);

    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND && rc != MDB_CORRUPTED)
        return rc;
    /* An expired lease the sweep has not removed yet (or a garbled one): the new one must not inherit its pins. */
    if ((rc == MDB_CORRUPTED || (rc == MDB_SUCCESS && store_wall_ms() >= old.expires_at_ms)) &&
        (rc = remove_lease(a, op->lease_id)) != MDB_SUCCESS)
        return rc;
    if (!record_decode(op->data, op->len, op->lease_id, strlen(op->lease_id), &r))
        return EINVAL; /* encoded by store_lease_put: cannot happen */
    if ((rc = write_record(a, op->lease_id, op->data, op->len, &r)) == MDB_SUCCESS)
        op->result = STORE_OK;
    return rc;
}

static int lease_extend(apply_ctx_t *a, op_t *op)
{
    lease_rec_t r;
    bool found;
    int rc = live_record(a, op, &r, &found);
    unsigned char *rec;

    if (rc != MDB_SUCCESS || !found)
        return rc;
    r.expires_at_ms = (int64_t)get_le64(op->data);
    if ((rec = malloc(record_size(r.owner_len))) == NULL)
        return ENOMEM;
    record_encode(rec, op->lease_id, &r); /* r.owner points into LMDB's page: read before the put */
    rc = write_record(a, op->lease_id, rec, record_size(r.owner_len), &r);
    free(rec);
    if (rc == MDB_SUCCESS)
        op->result = STORE_OK;
    return rc;
}

/* Whether have + more stays within limit, without overflow: more may be a caller's expect_bytes, anything. */
static bool fits(uint64_t have, uint64_t more, uint64_t limit)
{
    return more <= limit && have <= limit - more;
}

/* The quota check: STORE_OK or STORE_QUOTA for pinning one more object of obj_bytes under the lease. */
static int quota_check(store_t *s, const char *id, const lease_rec_t *r, uint64_t obj_bytes)
{
    uint64_t lease_bytes, all_bytes;

    lease_table_bytes(&s->index, id, store_wall_ms(), index_object_bytes_locked, &lease_bytes, &all_bytes);
    if (r->quota_bytes != 0 && !fits(lease_bytes, obj_bytes, r->quota_bytes))
        return STORE_QUOTA;
    if (!fits(all_bytes, obj_bytes, s->max_lease_bytes))
        return STORE_QUOTA;
    return STORE_OK;
}

/*
 * A key the lease pins already: counted, so no quota check; only the note
 * may change (marks ORed in, a text if the pin had none), and the value is
 * rewritten only if it does. A value garbled since open is rewritten with
 * the op's note: it is still a pin.
 */
static int pin_merge(apply_ctx_t *a, op_t *op, MDB_val *k, const MDB_val *old_v)
{
    store_pin_note_t old, add;
    bool sound = pin_decode(k, old_v->mv_data, old_v->mv_size, &old);

    if (!pin_decode(k, op->data, op->len, &add))
        return EINVAL; /* encoded by pin_op: cannot happen */
    store_pin_note_t merged = old;
    merged.marks |= add.marks;
    if (merged.text_len == 0) {
        merged.text = add.text;
        merged.text_len = add.text_len;
    }
    if (!sound || merged.marks != old.marks || merged.text_len != old.text_len) {
        unsigned char v[PIN_VALUE_MAX];
        pin_encode(v, k, &merged); /* merged.text may point into LMDB's page: copied before the put */
        MDB_val nv = {pin_value_size(merged.text_len), v};
        int rc = mdb_put(a->txn, a->store->dbi_lease_pins, k, &nv, 0);
        if (rc != MDB_SUCCESS)
            return rc;
    }
    op->result = STORE_OK;
    return MDB_SUCCESS;
}

static int lease_pin(apply_ctx_t *a, op_t *op)
{
    store_t *s = a->store;
    unsigned char pk[PIN_KEY_MAX];
    MDB_val k = {pin_key_make(pk, op->lease_id, &op->key), pk}, v = {0, NULL};
    lease_rec_t r;
    bool found;
    int rc = live_record(a, op, &r, &found);

    if (rc != MDB_SUCCESS || !found)
        return rc;
    if ((rc = mdb_get(a->txn, s->dbi_lease_pins, &k, &v)) == MDB_SUCCESS)
        return pin_merge(a, op, &k, &v);
    if (rc != MDB_NOTFOUND)
        return rc;
    pthread_mutex_lock(&s->index.lock);
    uint64_t obj_bytes = index_object_bytes_locked(&s->index, &op->key);
    pthread_mutex_unlock(&s->index.lock);
    if (op->size > obj_bytes)
        obj_bytes = op->size; /* expect_bytes: what the object will be charged once its upload is stored */
    if ((op->result = quota_check(s, op->lease_id, &r, obj_bytes)) != STORE_OK)
        return MDB_SUCCESS;
    v.mv_size = op->len;
    v.mv_data = op->data;
    if ((rc = mdb_put(a->txn, s->dbi_lease_pins, &k, &v, 0)) != MDB_SUCCESS)
        return rc;
    a->leases_changed = true;
    if (lease_table_pin(&s->index, op->lease_id, &op->key) != 0)
        return ENOMEM;
    op->result = STORE_OK;
    return MDB_SUCCESS;
}

static int lease_end(apply_ctx_t *a, op_t *op)
{
    lease_rec_t r;
    int rc = record_get(a->txn, a->store, op->lease_id, &r);

    if (rc == MDB_NOTFOUND) {
        op->result = STORE_NOT_FOUND;
        return MDB_SUCCESS;
    }
    /* A garbled record is removed all the same: ending is what the caller wants of it. */
    if (rc != MDB_SUCCESS && rc != MDB_CORRUPTED)
        return rc;
    if ((rc = remove_lease(a, op->lease_id)) == MDB_SUCCESS)
        op->result = STORE_OK;
    return rc;
}

/* Applies a lease op in the batch's transaction; its result is noted in op->result (the commit may overrule). */
int apply_lease_op(apply_ctx_t *a, op_t *op)
{
    op->result = STORE_ERROR;
    if (!a->store->have_lease_dbs)
        return MDB_SUCCESS; /* start-up could not add them: refuse, and keep the batch */
    switch (op->kind) {
    case OP_LEASE_PUT:
        return lease_put(a, op);
    case OP_LEASE_EXTEND:
        return lease_extend(a, op);
    case OP_LEASE_PIN:
        return lease_pin(a, op);
    case OP_LEASE_END:
        return lease_end(a, op);
    default:
        return EINVAL;
    }
}

/* In the writer's first transaction: the lease databases, for a fresh store or one from before leases. */
int apply_create_lease_layout(apply_ctx_t *a, void *unused)
{
    store_t *s = a->store;
    int rc;

    (void)unused;
    if ((rc = mdb_dbi_open(a->txn, "leases", MDB_CREATE, &s->dbi_leases)) != MDB_SUCCESS ||
        (rc = mdb_dbi_open(a->txn, "lease_pins", MDB_CREATE, &s->dbi_lease_pins)) != MDB_SUCCESS)
        return rc;
    return MDB_SUCCESS;
}

/* At open: the lease databases if the store has them (have_lease_dbs says); MDB_SUCCESS either way. */
int lease_open_databases(store_t *s, MDB_txn *txn)
{
    int rc = mdb_dbi_open(txn, "leases", 0, &s->dbi_leases);

    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(txn, "lease_pins", 0, &s->dbi_lease_pins);
    s->have_lease_dbs = rc == MDB_SUCCESS;
    return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

typedef struct expired_batch {
    char ids[SWEEP_BATCH][STORE_LEASE_ID_MAX + 1];
    size_t n;
} expired_batch_t;

static int remove_expired(apply_ctx_t *a, void *arg)
{
    expired_batch_t *b = arg;

    for (size_t i = 0; i < b->n; i++) {
        int rc = remove_lease(a, b->ids[i]);
        if (rc != MDB_SUCCESS)
            return rc;
    }
    return MDB_SUCCESS;
}

/*
 * Removes expired leases and their pins, a commit per SWEEP_BATCH; run by
 * the writer on its housekeeping rounds. They stopped pinning when they
 * expired: this only reclaims their records.
 */
void lease_sweep(store_t *s, apply_ctx_t *a)
{
    expired_batch_t *b;
    int rc;

    if (!s->have_lease_dbs || (b = malloc(sizeof(*b))) == NULL)
        return;
    while ((b->n = lease_table_expired(&s->index, store_wall_ms(), b->ids, SWEEP_BATCH)) > 0) {
        if ((rc = apply_txn(a, remove_expired, b)) != MDB_SUCCESS) {
            store_log_msg(s, STORE_LOG_WARN, "store %s: removing expired leases failed: %s", s->path,
                          mdb_strerror(rc));
            break;
        }
    }
    free(b);
}

/* ---- verification and loading ---- */

typedef struct lease_scan {
    store_t *s;
    MDB_txn *txn;
    bool load;
    char *why;
    size_t why_len;
} lease_scan_t;

static int scan_failed(lease_scan_t *ls, int rc, const char *what)
{
    snprintf(ls->why, ls->why_len, "%s", what);
    if (rc != MDB_CORRUPTED && rc != 0)
        snprintf(ls->why, ls->why_len, "%s: %s", what, mdb_strerror(rc));
    return rc == ENOMEM ? STORE_ERROR : STORE_CORRUPT;
}

static int scan_records(lease_scan_t *ls)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(ls->txn, ls->s->dbi_leases, &cur);

    if (rc != MDB_SUCCESS)
        return scan_failed(ls, rc, "opening the leases");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char id[STORE_LEASE_ID_MAX + 1];
        lease_rec_t r;

        if (k.mv_size == 0 || k.mv_size > STORE_LEASE_ID_MAX || memchr(k.mv_data, '\0', k.mv_size) != NULL ||
            !record_decode(v.mv_data, v.mv_size, k.mv_data, k.mv_size, &r)) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(id, k.mv_data, k.mv_size);
        id[k.mv_size] = '\0';
        if (ls->load && lease_table_set(&ls->s->index, id, r.expires_at_ms, r.quota_bytes) != 0) {
            rc = ENOMEM;
            break;
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? STORE_OK : scan_failed(ls, rc, "a lease record is garbled");
}

/* One pin: a well-formed key, of a lease that has a record, and a sound value; loaded into the table if asked. */
static int scan_pin(lease_scan_t *ls, const MDB_val *k, const MDB_val *v)
{
    const unsigned char *p = k->mv_data;
    char id[STORE_LEASE_ID_MAX + 1];
    store_pin_note_t note;
    store_key_t key;
    lease_rec_t r;
    int rc;

    if (k->mv_size < 2 + STORE_KEY_SIZE || p[0] == 0 || p[0] > STORE_LEASE_ID_MAX ||
        k->mv_size != 1u + p[0] + STORE_KEY_SIZE || memchr(p + 1, '\0', p[0]) != NULL ||
        !pin_decode(k, v->mv_data, v->mv_size, &note))
        return MDB_CORRUPTED;
    memcpy(id, p + 1, p[0]);
    id[p[0]] = '\0';
    if ((rc = record_get(ls->txn, ls->s, id, &r)) != MDB_SUCCESS)
        return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
    memcpy(key.hash, p + 1 + p[0], STORE_KEY_SIZE);
    return ls->load && lease_table_pin(&ls->s->index, id, &key) != 0 ? ENOMEM : MDB_SUCCESS;
}

static int scan_pins(lease_scan_t *ls)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(ls->txn, ls->s->dbi_lease_pins, &cur);

    if (rc != MDB_SUCCESS)
        return scan_failed(ls, rc, "opening the lease pins");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if ((rc = scan_pin(ls, &k, &v)) != MDB_SUCCESS)
            break;
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? STORE_OK : scan_failed(ls, rc, "a lease pin is garbled, or of no lease");
}

/*
 * Verifies the lease databases in txn (check.c, at open): every record
 * sound, every pin well formed, of a lease that exists, with a sound note. With load, also
 * fills the lease table (emptied again on failure). A store without the
 * databases passes: it is from before leases.
 */
int lease_check(store_t *s, MDB_txn *txn, bool load, char *why, size_t why_len)
{
    lease_scan_t ls = {.s = s, .txn = txn, .load = load, .why = why, .why_len = why_len};
    int rc;

    if (!s->have_lease_dbs)
        return STORE_OK;
    rc = scan_records(&ls);
    if (rc == STORE_OK)
        rc = scan_pins(&ls);
    if (rc != STORE_OK && load)
        lease_table_clear(&s->index);
    return rc;
}

/* After a failed commit that changed the table ahead of it: the table again as LMDB has it. */
void lease_reload(store_t *s)
{
    char why[256] = "";
    MDB_txn *txn;
    int rc;

    lease_table_clear(&s->index);
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != MDB_SUCCESS) {
        store_log_msg(s, STORE_LOG_ERROR, "store %s: reloading leases: %s; they pin nothing until restart", s->path,
                      mdb_strerror(rc));
        return;
    }
    if (lease_check(s, txn, true, why, sizeof(why)) != STORE_OK)
        store_log_msg(s, STORE_LOG_ERROR, "store %s: reloading leases: %s; they pin nothing until restart", s->path,
                      why);
    mdb_txn_abort(txn);
}

/* ---- the public calls: each builds its op, then queues it or waits for it ---- */

/* A lease op for id (validated here), result STORE_ERROR until the writer decides; NULL: bad id or no memory. */
static op_t *lease_op_new(op_kind_t kind, const char *id, const store_key_t *key, size_t len)
{
    static const store_key_t none = {{0}};

    if (!id_ok(id))
        return NULL;
    op_t *op = op_new(kind, key != NULL ? key : &none, len);
    if (op == NULL)
        return NULL;
    snprintf(op->lease_id, sizeof(op->lease_id), "%s", id);
    op->result = STORE_ERROR;
    return op;
}

static op_t *put_op(const char *id, const char *owner, int64_t expires_at_ms, uint64_t quota_bytes)
{
    lease_rec_t r = {.expires_at_ms = expires_at_ms, .quota_bytes = quota_bytes, .owner = owner != NULL ? owner : ""};

    r.owner_len = strnlen(r.owner, STORE_LEASE_OWNER_MAX + 1);
    if (r.owner_len > STORE_LEASE_OWNER_MAX)
        return NULL;
    op_t *op = lease_op_new(OP_LEASE_PUT, id, NULL, record_size(r.owner_len));
    if (op != NULL)
        record_encode(op->data, id, &r);
    return op;
}

static op_t *extend_op(const char *id, int64_t expires_at_ms)
{
    op_t *op = lease_op_new(OP_LEASE_EXTEND, id, NULL, 8);

    if (op != NULL)
        put_le64(op->data, (uint64_t)expires_at_ms);
    return op;
}

/* The pin value the op would write for a new pin, already sealed: the writer stores it as it is. */
static op_t *pin_op(const char *id, const store_key_t *key, const store_pin_note_t *note, uint64_t expect_bytes)
{
    static const store_pin_note_t no_note = {.marks = 0, .text = NULL, .text_len = 0};

    if (note == NULL)
        note = &no_note;
    if (key == NULL || note->text_len > STORE_PIN_NOTE_MAX || (note->text_len > 0 && note->text == NULL))
        return NULL;
    op_t *op = lease_op_new(OP_LEASE_PIN, id, key, pin_value_size(note->text_len));
    if (op == NULL)
        return NULL;
    unsigned char pk[PIN_KEY_MAX];
    MDB_val k = {pin_key_make(pk, id, key), pk};
    pin_encode(op->data, &k, note);
    op->size = expect_bytes;
    return op;
}

/* Queues op (NULL: its builder refused the arguments) with done to be told its result; op is the queue's. */
static int submit(store_t *s, op_t *op, store_lease_done_fn done, void *ctx, uint64_t *seq)
{
    if (op == NULL)
        return STORE_ERROR;
    op->lease_done = done;
    op->done_ctx = ctx;
    return writer_enqueue_seq(s, op, false, seq);
}

static int submit_async(store_t *s, op_t *op, store_lease_done_fn done, void *ctx)
{
    uint64_t seq;

    return submit(s, op, done, ctx, &seq);
}

static void note_result(void *ctx, int result)
{
    *(int *)ctx = result;
}

/* Queues op and waits for the commit that decides it: the writer notes the result before it wakes us. */
static int submit_wait(store_t *s, op_t *op)
{
    int result = STORE_ERROR;
    uint64_t seq;

    if (submit(s, op, note_result, &result, &seq) != STORE_OK)
        return STORE_ERROR;
    writer_wait(s, seq);
    return result;
}

int store_lease_put(store_t *store, const char *id, const char *owner, int64_t expires_at_ms, uint64_t quota_bytes)
{
    return submit_wait(store, put_op(id, owner, expires_at_ms, quota_bytes));
}

int store_lease_extend(store_t *store, const char *id, int64_t expires_at_ms)
{
    return submit_wait(store, extend_op(id, expires_at_ms));
}

int store_lease_pin(store_t *store, const char *id, const store_key_t *key, const store_pin_note_t *note,
                    uint64_t expect_bytes)
{
    return submit_wait(store, pin_op(id, key, note, expect_bytes));
}

int store_lease_end(store_t *store, const char *id)
{
    return submit_wait(store, lease_op_new(OP_LEASE_END, id, NULL, 0));
}

int store_lease_put_async(store_t *store, const char *id, const char *owner, int64_t expires_at_ms,
                          uint64_t quota_bytes, store_lease_done_fn done, void *ctx)
{
    return submit_async(store, put_op(id, owner, expires_at_ms, quota_bytes), done, ctx);
}

int store_lease_extend_async(store_t *store, const char *id, int64_t expires_at_ms, store_lease_done_fn done,
                             void *ctx)
{
    return submit_async(store, extend_op(id, expires_at_ms), done, ctx);
}

int store_lease_pin_async(store_t *store, const char *id, const store_key_t *key, const store_pin_note_t *note,
                          uint64_t expect_bytes, store_lease_done_fn done, void *ctx)
{
    return submit_async(store, pin_op(id, key, note, expect_bytes), done, ctx);
}

int store_lease_end_async(store_t *store, const char *id, store_lease_done_fn done, void *ctx)
{
    return submit_async(store, lease_op_new(OP_LEASE_END, id, NULL, 0), done, ctx);
}

/* ---- reads: short read transactions, committed state ---- */

static int read_begin(store_t *s, MDB_txn **txn)
{
    if (!s->have_lease_dbs)
        return STORE_NOT_FOUND; /* nothing was ever leased: start-up adds the databases before any lease */
    return mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn) == MDB_SUCCESS ? STORE_OK : STORE_ERROR;
}

/* Fills out from id's record r, counting its pins in txn and their bytes in the index. */
static int fill_lease(store_t *s, MDB_txn *txn, const char *id, const lease_rec_t *r, store_lease_t *out)
{
    unsigned char prefix[PIN_KEY_MAX];
    size_t plen = pin_key_make(prefix, id, NULL);
    MDB_val k = {plen, prefix}, v;
    MDB_cursor *cur;
    int rc;

    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", id);
    out->expires_at_ms = r->expires_at_ms;
    out->quota_bytes = r->quota_bytes;
    if ((out->owner = strndup(r->owner, r->owner_len)) == NULL)
        return STORE_ERROR;
    if (mdb_cursor_open(txn, s->dbi_lease_pins, &cur) != MDB_SUCCESS)
        return STORE_ERROR;
    pthread_mutex_lock(&s->index.lock);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS && has_prefix(&k, prefix, plen);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        store_key_t key;
        memcpy(key.hash, (const unsigned char *)k.mv_data + plen, STORE_KEY_SIZE);
        out->pinned_objects++;
        out->pinned_bytes += index_object_bytes_locked(&s->index, &key);
    }
    pthread_mutex_unlock(&s->index.lock);
    mdb_cursor_close(cur);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK : STORE_ERROR;
}

int store_lease_get(store_t *store, const char *id, store_lease_t *out)
{
    MDB_txn *txn;
    lease_rec_t r;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!id_ok(id))
        return STORE_ERROR;
    if ((rc = read_begin(store, &txn)) != STORE_OK)
        return rc;
    rc = record_get(txn, store, id, &r);
    if (rc == MDB_SUCCESS && store_wall_ms() < r.expires_at_ms)
        rc = fill_lease(store, txn, id, &r, out);
    else
        rc = rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_NOT_FOUND : STORE_ERROR;
    mdb_txn_abort(txn);
    return rc;
}

void store_lease_free(store_lease_t *lease)
{
    free(lease->owner);
    lease->owner = NULL;
}

/* items, of *cap elements of size bytes, with room for need > 0; NULL: no memory (items is still the caller's). */
static void *grow_array(void *items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return items;
    size_t n = *cap > 0 ? *cap : 16;
    while (n < need)
        n *= 2;
    void *grown = realloc(items, n * size);
    if (grown != NULL)
        *cap = n;
    return grown;
}

typedef struct lease_list {
    store_lease_t *items;
    size_t n, cap;
} lease_list_t;

static int list_add(store_t *s, MDB_txn *txn, lease_list_t *l, const MDB_val *k, const MDB_val *v)
{
    char id[STORE_LEASE_ID_MAX + 1];
    lease_rec_t r;

    if (k->mv_size == 0 || k->mv_size > STORE_LEASE_ID_MAX ||
        !record_decode(v->mv_data, v->mv_size, k->mv_data, k->mv_size, &r))
        return STORE_OK; /* garbled since open: not a lease anyone can use */
    if (store_wall_ms() >= r.expires_at_ms)
        return STORE_OK;
    store_lease_t *items = grow_array(l->items, &l->cap, l->n + 1, sizeof(*items));
    if (items == NULL)
        return STORE_ERROR;
    l->items = items;
    memcpy(id, k->mv_data, k->mv_size);
    id[k->mv_size] = '\0';
    int rc = fill_lease(s, txn, id, &r, &l->items[l->n]);
    l->n++; /* counted even on failure, so its owner is freed */
    return rc;
}

int store_lease_list(store_t *store, store_lease_fn fn, void *ctx)
{
    lease_list_t l = {0};
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    MDB_txn *txn;
    int rc = read_begin(store, &txn);

    if (rc == STORE_NOT_FOUND)
        return STORE_OK; /* no lease databases: no leases */
    if (rc != STORE_OK)
        return rc;
    if (mdb_cursor_open(txn, store->dbi_leases, &cur) != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return STORE_ERROR;
    }
    int mrc;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == MDB_SUCCESS && rc == STORE_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        rc = list_add(store, txn, &l, &k, &v);
    if (rc == STORE_OK && mrc != MDB_NOTFOUND)
        rc = STORE_ERROR;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    for (size_t i = 0; i < l.n; i++) {
        if (rc == STORE_OK && !fn(ctx, &l.items[i]))
            rc = 1; /* stop calling; still free the rest */
        store_lease_free(&l.items[i]);
    }
    free(l.items);
    return rc == 1 ? STORE_OK : rc;
}

/* One pin as collected, its text in the list's texts (a pointer would not survive their growing). */
typedef struct pin_entry {
    store_key_t key;
    uint32_t marks;
    size_t text_off, text_len;
} pin_entry_t;

typedef struct pin_list {
    pin_entry_t *pins;
    size_t n, cap;
    char *texts; /* every pin's text, copied out of LMDB */
    size_t texts_len, texts_cap;
} pin_list_t;

static int pins_add(pin_list_t *pl, const MDB_val *k, const MDB_val *v, size_t plen)
{
    store_pin_note_t note;

    /* A value garbled since open still names a pinned key (one the lease holds): reported without a note. */
    (void)pin_decode(k, v->mv_data, v->mv_size, &note);
    pin_entry_t *pins = grow_array(pl->pins, &pl->cap, pl->n + 1, sizeof(*pins));
    if (pins == NULL)
        return ENOMEM;
    pl->pins = pins;
    if (note.text_len > 0) {
        char *texts = grow_array(pl->texts, &pl->texts_cap, pl->texts_len + note.text_len, 1);
        if (texts == NULL)
            return ENOMEM;
        pl->texts = texts;
        memcpy(texts + pl->texts_len, note.text, note.text_len);
    }
    pin_entry_t *e = &pins[pl->n++];
    memcpy(e->key.hash, (const unsigned char *)k->mv_data + plen, STORE_KEY_SIZE);
    e->marks = note.marks;
    e->text_off = pl->texts_len;
    e->text_len = note.text_len;
    pl->texts_len += note.text_len;
    return MDB_SUCCESS;
}

static int pins_collect(store_t *s, MDB_txn *txn, const char *id, pin_list_t *pl)
{
    unsigned char prefix[PIN_KEY_MAX];
    size_t plen = pin_key_make(prefix, id, NULL);
    MDB_val k = {plen, prefix}, v;
    MDB_cursor *cur;
    int rc;

    if (mdb_cursor_open(txn, s->dbi_lease_pins, &cur) != MDB_SUCCESS)
        return STORE_ERROR;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS && has_prefix(&k, prefix, plen);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if ((rc = pins_add(pl, &k, &v, plen)) != MDB_SUCCESS)
            break;
    mdb_cursor_close(cur);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK : STORE_ERROR;
}

int store_lease_keys(store_t *store, const char *id, store_lease_key_fn fn, void *ctx)
{
    pin_list_t pl = {0};
    MDB_txn *txn;
    lease_rec_t r;
    int rc;

    if (!id_ok(id))
        return STORE_ERROR;
    if ((rc = read_begin(store, &txn)) != STORE_OK)
        return rc;
    rc = record_get(txn, store, id, &r);
    if (rc == MDB_SUCCESS)
        rc = pins_collect(store, txn, id, &pl);
    else
        rc = rc == MDB_NOTFOUND ? STORE_NOT_FOUND : STORE_ERROR;
    mdb_txn_abort(txn);
    for (size_t i = 0; rc == STORE_OK && i < pl.n; i++) {
        const pin_entry_t *e = &pl.pins[i];
        store_lease_pin_info_t info = {
            .key = e->key, .marks = e->marks, .text = e->text_len > 0 ? pl.texts + e->text_off : NULL,
            .text_len = e->text_len};
        if (!fn(ctx, &info))
            break;
    }
    free(pl.pins);
    free(pl.texts);
    return rc;
}
