/*
 * store_internal.h - what store/'s files share, and nothing outside store/
 * may use: the store itself, its LMDB layout, and each file's functions for
 * the others.
 *
 * The LMDB environment holds three named databases:
 *   "info"    one record, "format": magic, layout version, chunk and page size.
 *   "meta"    key hash (32) -> the object's metadata record (meta.c).
 *   "chunks"  key hash (32) + generation (8, big-endian) + index (4, big-endian)
 *             -> one chunk value (chunk.c). Big-endian so that an object's
 *             chunks sort together, by generation then index: one range scan
 *             finds them all, and versions never mix.
 *   "leases"  lease id (1..128 bytes) -> the lease's record (lease.c).
 *   "lease_pins" id length (1) + id + key hash (32) -> the pin's note
 *             (lease.c; empty in stores from before notes): one per pinned
 *             key, so a lease's pins sort together and one range scan (or
 *             one range delete) finds them all.
 * The two lease databases came after layout version 1 without changing it:
 * a store without them is sound, and the writer adds them at start-up.
 *
 * What every commit keeps true, and store_open verifies: a chunk exists only
 * for the generation its object's metadata record names, and that record's
 * chunks_present and chunk_bytes count exactly those chunks. The in-memory
 * index (index.c) mirrors the committed records: it changes only after a
 * commit succeeds. A record of unknown size (STORE_SIZE_UNKNOWN, num_chunks
 * 0) may have any number of chunks, every one of them full-size.
 *
 * Transient objects (store_meta_t.transient) do not outlive a run: the scan
 * at open lists them (check.c), and the writer's first commit removes them
 * (writer.c), records and chunks, before store_open returns. Until then the
 * index counts them like any object, so removing them is an ordinary delete.
 *
 * Threads: callers read through short read transactions (read.c) and queue
 * writes (write.c); one writer thread (writer.c) applies them in batched
 * write transactions (apply.c) and evicts (evict.c). No other thread ever
 * opens a write transaction. Removals that must show before they commit
 * (invalidations, corrupt chunks) are hidden from readers meanwhile (hide.c).
 * Lock order: a hide stripe's lock, then the writer's; the index's lock is
 * never held with either.
 */
#ifndef LARDER_STORE_INTERNAL_H
#define LARDER_STORE_INTERNAL_H

#include <endian.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "store.h"

/* Levels passed to config->log: the same numbers as conf's log_level_t. */
enum { STORE_LOG_ERROR, STORE_LOG_WARN, STORE_LOG_INFO, STORE_LOG_DEBUG };

#define STORE_KEY_SIZE 32
#define CHUNK_KEY_SIZE (STORE_KEY_SIZE + 8 + 4)
/* A chunk value starts with crc32c (4, little-endian) and payload length (4, little-endian). */
#define CHUNK_HEADER_SIZE 8
/* LMDB's page header (PAGEHDRSZ): a value of n * psize - 16 bytes fills n overflow pages exactly. */
#define LMDB_PAGE_HEADER 16

/* A write transaction commits once its ops hold this many bytes (or the interval passes). */
#define WRITER_BATCH_MAX ((size_t)32 << 20)
/*
 * How often the writer persists recency (when store_config_t.recency_persist_ms
 * is 0) and flushes the file (MDB_NOSYNC leaves that to us).
 */
#define RECENCY_PERSIST_MS 10000
#define ENV_SYNC_MS 5000

/* ---- index.c: the in-memory index of cached objects, for LRU and accounting ---- */

typedef struct index_entry {
    store_key_t key;
    struct index_entry *chain;       /* next in its hash bucket */
    struct index_entry *prev, *next; /* LRU list, see store_index_t.lru */
    uint64_t bytes;                  /* charged: metadata record plus chunks */
    uint64_t access_seq;             /* recency order; persisted in the record */
    int64_t last_access;             /* unix seconds */
    uint32_t chunks;
    bool dirty; /* touched since its recency was last persisted */
} index_entry_t;

/* One object's state after a committed change, for index_apply. */
typedef struct index_delta {
    store_key_t key;
    bool present;  /* false: the object is gone */
    bool to_front; /* a new fill: make it the most recently used */
    uint64_t bytes;
    uint64_t access_seq;
    int64_t last_access;
    uint32_t chunks;
    index_entry_t *spare; /* allocated before the commit, so applying cannot fail */
} index_delta_t;

/* A key readers have pinned against eviction (store_pin): kept apart from the entries, see index.c. */
typedef struct pin {
    struct pin *chain; /* next in its bucket, or in the free list */
    store_key_t key;
    uint32_t count;
} pin_t;

/* ---- lease_table.c: leases in memory, guarded by the index's lock (eviction asks under it) ---- */

typedef struct lease_pin_node {
    struct lease_pin_node *chain; /* next in its key bucket */
    struct lease_pin_node *next;  /* next pin of the same lease */
    struct lease_mem *lease;
    store_key_t key;
} lease_pin_node_t;

typedef struct lease_mem {
    struct lease_mem *next;
    char id[STORE_LEASE_ID_MAX + 1];
    int64_t expires_at_ms;
    uint64_t quota_bytes;
    lease_pin_node_t *pins;
} lease_mem_t;

typedef struct lease_table {
    lease_mem_t *head;         /* every lease, live or expired and not yet removed */
    lease_pin_node_t **buckets; /* pins by key; NULL until the first pin */
    size_t nbuckets;            /* a power of two */
    size_t npins;
} lease_table_t;

/* An object's recency, taken from the index to be written into its record. */
typedef struct recency {
    store_key_t key;
    uint64_t access_seq;
    int64_t last_access;
} recency_t;

typedef struct store_index {
    pthread_mutex_t lock; /* guards everything below */
    index_entry_t **buckets;
    size_t nbuckets;   /* a power of two */
    index_entry_t lru; /* sentinel: lru.next is the most recently used entry, lru.prev the least */
    uint64_t objects, chunks, used_bytes;
    uint64_t last_seq;  /* highest access_seq handed out */
    store_key_t *dirty; /* keys touched since the last persist, each once */
    size_t ndirty, dirty_cap;
    pin_t **pins;        /* pinned keys, by hash */
    size_t npin_buckets; /* a power of two */
    size_t npins;        /* keys pinned */
    pin_t *pin_free;     /* unpinned nodes, reused so that pinning rarely allocates */
    struct lease_table leases; /* lease_table.c */
} store_index_t;

int index_init(store_index_t *ix, size_t expected_objects);
void index_destroy(store_index_t *ix);
uint64_t index_next_seq(store_index_t *ix);
void index_touch(store_index_t *ix, const store_key_t *key, int64_t now);
void index_apply(store_index_t *ix, index_delta_t *deltas, size_t n);
void index_load(store_index_t *ix, index_entry_t **entries, size_t n);
size_t index_victims(store_index_t *ix, uint64_t want_bytes, store_key_t *out, size_t max);
size_t index_take_dirty(store_index_t *ix, recency_t *out, size_t max);
size_t index_dirty_count(store_index_t *ix);
void index_usage(store_index_t *ix, uint64_t *used, uint64_t *objects, uint64_t *chunks);
void index_pin(store_index_t *ix, const store_key_t *key);
/* index_touch and index_pin under one lock. */
void index_touch_and_pin(store_index_t *ix, const store_key_t *key, int64_t now);
void index_unpin(store_index_t *ix, const store_key_t *key);
bool index_pinned(store_index_t *ix, const store_key_t *key);
uint64_t index_pinned_bytes(store_index_t *ix);
uint64_t index_object_bytes_locked(const store_index_t *ix, const store_key_t *key);

/* Wall-clock unix milliseconds: lease expiry is the caller's unix time. */
int64_t store_wall_ms(void);
/* Under ix->lock: whether a live lease pins key. The eviction check (index_victims, delete_victims). */
bool lease_table_holds_locked(const lease_table_t *t, const store_key_t *key, int64_t now_ms);
/* The rest take ix->lock themselves; only the writer thread changes the table. */
int lease_table_set(store_index_t *ix, const char *id, int64_t expires_at_ms, uint64_t quota_bytes);
void lease_table_drop(store_index_t *ix, const char *id);
int lease_table_pin(store_index_t *ix, const char *id, const store_key_t *key);
/* What the index charges an object, asked under its lock (index_object_bytes_locked): the table keeps no sizes. */
typedef uint64_t (*object_bytes_fn)(const store_index_t *ix, const store_key_t *key);
void lease_table_bytes(store_index_t *ix, const char *id, int64_t now_ms, object_bytes_fn object_bytes,
                       uint64_t *lease_bytes, uint64_t *all_bytes);
void lease_table_stats(store_index_t *ix, int64_t now_ms, object_bytes_fn object_bytes, uint64_t *count,
                       uint64_t *bytes);
size_t lease_table_expired(store_index_t *ix, int64_t now_ms, char (*ids)[STORE_LEASE_ID_MAX + 1], size_t max);
void lease_table_clear(store_index_t *ix);

/* ---- writer.c: the queue and the writer thread ---- */

typedef enum {
    OP_FILL_BEGIN,
    OP_CHUNK_PUT,
    OP_META_UPDATE,
    OP_INVALIDATE,
    OP_DROP_CHUNK,
    OP_SET_SIZE,
    OP_LEASE_PUT,    /* data: a lease record (lease.c), id in lease_id */
    OP_LEASE_EXTEND, /* data: the new expiry, le64 */
    OP_LEASE_PIN,    /* key: the object; data: its pin value (lease.c); size: expect_bytes */
    OP_LEASE_END
} op_kind_t;

/*
 * Lease ops have a caller waiting for their result, told once the commit
 * that decided them is over: never carried over to a later batch (writer.c).
 */
static inline bool op_is_lease(int kind)
{
    return kind >= OP_LEASE_PUT && kind <= OP_LEASE_END;
}

/* One queued write; a single allocation with its data, owned by the queue until committed. */
typedef struct op {
    struct op *next;
    op_kind_t kind;
    store_key_t key;
    int64_t generation; /* OP_CHUNK_PUT, OP_DROP_CHUNK, OP_SET_SIZE */
    uint32_t index;     /* OP_CHUNK_PUT, OP_DROP_CHUNK */
    uint64_t size;      /* OP_SET_SIZE; OP_LEASE_PIN: expect_bytes */
    /* OP_CHUNK_PUT: what apply_op made of it (the commit's result may overrule), told to done once decided. */
    store_chunk_outcome_t outcome;
    store_chunk_done_fn done; /* OP_CHUNK_PUT; may be NULL */
    store_lease_done_fn lease_done; /* lease ops; may be NULL */
    void *done_ctx;                 /* done's or lease_done's */
    char lease_id[STORE_LEASE_ID_MAX + 1]; /* lease ops */
    int result;         /* lease ops: what apply_op made of it (the commit's result may overrule), for lease_done */
    uint64_t seq;       /* position in the queue, for store_sync */
    int64_t queued_ms;  /* when it was queued (monotonic) */
    size_t charge;      /* bytes it counts against max_queue_bytes */
    size_t len;         /* bytes in data: chunk payload or encoded metadata record */
    unsigned char data[];
} op_t;

typedef struct writer {
    pthread_t thread;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;  /* the writer waits: work, a sync, or stop */
    pthread_cond_t done;  /* store_sync and store_open wait: commits, start-up */
    op_t *head, *tail;    /* queued, not yet taken by the writer */
    size_t pending_bytes; /* charge of the ops still queued */
    size_t queued_bytes;  /* charge of everything not yet committed, taken or not */
    uint64_t enqueued_seq, committed_seq;
    uint64_t failed_seq; /* last seq of the latest batch lost to an error */
    unsigned sync_waiters;
    bool started, stopping, broken;
    int start_rc;
} writer_t;

op_t *op_new(op_kind_t kind, const store_key_t *key, size_t len);
int writer_start(store_t *s);
void writer_stop(store_t *s);
bool writer_would_refuse(store_t *s, size_t len);
int writer_enqueue(store_t *s, op_t *op, bool refusable);
int writer_enqueue_seq(store_t *s, op_t *op, bool refusable, uint64_t *seq);
int writer_sync(store_t *s);
void writer_wait(store_t *s, uint64_t seq);

/* ---- hide.c: removals readers must see before the writer commits them ---- */

#define HIDE_STRIPES 16

/* An object invalidated, or one chunk found corrupt, whose removal is queued but not yet committed. */
typedef struct hidden {
    struct hidden *chain; /* next in its bucket */
    store_key_t key;
    bool whole;         /* the whole object (OP_INVALIDATE); else one chunk (OP_DROP_CHUNK) */
    int64_t generation; /* a chunk's */
    uint32_t index;     /* a chunk's */
    uint64_t seq;       /* the queued op that removes it; the latest, if queued again */
} hidden_t;

typedef struct hide_stripe {
    pthread_mutex_t lock;  /* guards everything below; count is also read without it */
    _Atomic size_t count;  /* entries: readers take no lock while it is 0 */
    hidden_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t chunks;   /* entries that are single chunks (bounded) */
} hide_stripe_t;

typedef struct hide_table {
    hide_stripe_t stripes[HIDE_STRIPES]; /* by key */
} hide_table_t;

int hide_init(hide_table_t *h);
void hide_destroy(hide_table_t *h);
bool hide_object_hidden(hide_table_t *h, const store_key_t *key);
bool hide_chunk_hidden(hide_table_t *h, const store_key_t *key, int64_t generation, uint32_t index);
int hide_enqueue(store_t *s, op_t *op);
void hide_committed(hide_table_t *h, const op_t *ops);

/* ---- apply.c: write transactions on the writer thread ---- */

typedef struct apply_ctx {
    store_t *store;
    MDB_txn *txn;
    index_delta_t *deltas; /* what this transaction changed, for the index after commit */
    size_t ndeltas, deltas_cap;
    unsigned char *scratch; /* a metadata record being rewritten */
    size_t scratch_cap;
    bool skip_chunks; /* out of space despite eviction: apply all but chunk puts */
    bool leases_changed; /* the lease table was changed ahead of the commit: reload it if that fails */
} apply_ctx_t;

typedef int (*apply_body_fn)(apply_ctx_t *a, void *arg);

void apply_init(apply_ctx_t *a, store_t *s);
void apply_destroy(apply_ctx_t *a);
int apply_txn(apply_ctx_t *a, apply_body_fn body, void *arg);
int apply_op(apply_ctx_t *a, op_t *op);
int apply_confirm_chunk(apply_ctx_t *a, op_t *op);
int apply_delete_object(apply_ctx_t *a, const store_key_t *key);
int apply_recency(apply_ctx_t *a, const recency_t *r);
int apply_create_layout(apply_ctx_t *a, void *unused);

/* ---- lease.c: leases in LMDB, applied on the writer thread ---- */

int apply_lease_op(apply_ctx_t *a, op_t *op);
int apply_create_lease_layout(apply_ctx_t *a, void *unused);
void lease_reload(store_t *s);
void lease_sweep(store_t *s, apply_ctx_t *a);
int lease_check(store_t *s, MDB_txn *txn, bool load, char *why, size_t why_len);
int lease_open_databases(store_t *s, MDB_txn *txn);

/* ---- evict.c: eviction and persisted recency, on the writer thread ---- */

void evict_to(store_t *s, apply_ctx_t *a, uint64_t target);
void persist_recency(store_t *s, apply_ctx_t *a);

/* ---- chunk.c: chunk keys and values ---- */

typedef struct chunk_key {
    unsigned char bytes[CHUNK_KEY_SIZE];
} chunk_key_t;

void chunk_key_make(chunk_key_t *ck, const store_key_t *key, int64_t generation, uint32_t index);
bool chunk_key_parse(const MDB_val *k, store_key_t *key, int64_t *generation, uint32_t *index);
uint32_t chunk_count(uint64_t object_size);
size_t chunk_expected_len(uint64_t object_size, uint32_t index);
size_t chunk_value_size(size_t len, size_t psize);
void chunk_value_fill(void *value, size_t value_size, const chunk_key_t *ck, const void *payload, size_t len);
int chunk_value_header(const MDB_val *v, uint32_t *crc, size_t *len);
/* The first page of an overflow value (chunks past a few KiB are); 0 for a value inside a leaf page. */
uint64_t chunk_value_pgno(const MDB_val *v, size_t psize);
bool chunk_payload_ok(uint32_t crc, const chunk_key_t *ck, const void *payload, size_t len);
bool lmdb_overflow_ok(const MDB_val *v, size_t psize, uintptr_t *map_base, size_t last_pgno);
uint64_t lmdb_footprint(size_t psize, size_t key_len, size_t value_len);

/* ---- meta.c: metadata records ---- */

/* The fixed-size front of a metadata record: what the writer and the index need. */
typedef struct meta_fixed {
    int64_t generation;
    int64_t metageneration;
    uint64_t size;
    int64_t fill_time;
    int64_t last_access;
    uint64_t access_seq;
    uint32_t num_chunks;
    uint32_t chunks_present;
    uint64_t chunk_bytes; /* footprint of the chunks present */
    bool transient;       /* store_meta_t.transient; always false in an LDM1 record */
} meta_fixed_t;

size_t meta_encoded_size(const store_meta_t *m);
void meta_encode(void *rec, size_t len, const store_key_t *key, const store_meta_t *m, const meta_fixed_t *f);
bool meta_read_fixed(const void *rec, size_t len, const store_key_t *key, meta_fixed_t *f);
void meta_write_fixed(void *rec, size_t len, const store_key_t *key, const meta_fixed_t *f);
int meta_decode(const void *rec, size_t len, const store_key_t *key, store_meta_t *m);
bool meta_strings_in_block(const store_meta_t *meta);
void meta_rebase(store_meta_t *dst, const store_meta_t *src, char *block);
/* Drops one reference to a memo's shared string block (meta_memo.c). */
void meta_block_release(void *owner);

/* ---- env.c: the LMDB environment and its format record ---- */

int env_open(store_t *s, unsigned extra_flags, char *why, size_t why_len);
void env_close(store_t *s);
int env_mark_damaged(MDB_txn *txn, store_t *s);

/* ---- check.c: verification at open ---- */

int check_in_child(store_t *s, char *why, size_t why_len);
int check_scan(store_t *s, bool deep, bool build_index, char *why, size_t why_len);

/* ---- store.c ---- */

/* A log line that may come once per request under a lasting fault: printed at most once per LOG_LIMIT_MS. */
#define LOG_LIMIT_MS 10000

typedef struct log_limit {
    int64_t next_ms;          /* monotonic: when the next line may be printed */
    unsigned long suppressed; /* lines not printed since the last one */
} log_limit_t;

/* --- chunks checked already (verified.c) --- */

typedef struct verified_table {
    _Atomic uint64_t *slots;
    size_t mask;
} verified_table_t;

#define VERIFIED_SLOTS 16384 /* 128 KiB, remembering up to 16 GiB of 1 MiB chunks */
#define VERIFY_INTERVAL_MAX (7 * 86400)

int verified_init(verified_table_t *table, size_t slots);
void verified_destroy(verified_table_t *table);
/* The key, and where and what the value's header says it is. */
uint64_t verified_tag(const chunk_key_t *ck, uint64_t pgno, uint32_t crc, size_t len);
/* Seconds on a coarse monotonic clock, for verified_holds and verified_note. */
uint32_t verified_clock(void);
/* Whether tag was checked less than interval_s seconds before now. */
bool verified_holds(const verified_table_t *table, uint64_t tag, uint32_t now, unsigned interval_s);
void verified_note(verified_table_t *table, uint64_t tag, uint32_t now);

/* --- read transactions kept between reads (reader_pool.c) --- */

#define READER_POOL_MAX 16

/* A thread's own transaction (reader.c), listed in the pool so that closing the environment can end it. */
struct store_reader {
    struct reader_pool *pool; /* NULL once the store is gone */
    store_t *store;
    MDB_txn *txn;         /* reset between reads; NULL before the first, and after a drain */
    store_reader_t *prev, *next;
};

typedef struct reader_pool {
    pthread_mutex_t lock;
    MDB_txn *idle[READER_POOL_MAX]; /* reset: each holds a reader slot, but no snapshot */
    size_t count;
    store_reader_t *owned; /* the threads' own readers (store_reader_new) */
} reader_pool_t;

int reader_pool_init(reader_pool_t *pool);
/* Aborts the idle transactions and the threads' own: before their environment closes, with no read running. */
void reader_pool_drain(reader_pool_t *pool);
/* Drains, and lets the threads' own readers go: each is only freed by its owner from then on. */
void reader_pool_destroy(reader_pool_t *pool);
void reader_pool_own(reader_pool_t *pool, store_reader_t *reader);
/* Takes reader out of the pool's list and aborts its transaction. */
void reader_pool_disown(reader_pool_t *pool, store_reader_t *reader);
/* idle (a reset transaction, or NULL) renewed on the newest snapshot, else a new one; NULL on failure (*rc says why). */
MDB_txn *reader_txn_renew(MDB_env *env, MDB_txn *idle, int *rc);
/* A thread's own reader's transaction on the newest snapshot; NULL on failure (*rc says why). */
MDB_txn *store_reader_begin(store_reader_t *reader, int *rc);
void store_reader_end(store_reader_t *reader);
/* A read-only transaction on the newest snapshot; NULL on failure (*rc says why). */
MDB_txn *reader_pool_begin(reader_pool_t *pool, MDB_env *env, int *rc);
/* Ends a transaction from reader_pool_begin. */
void reader_pool_end(reader_pool_t *pool, MDB_txn *txn);

struct store {
    char *path;                   /* the directory, without trailing slashes */
    store_config_t config;        /* as given, with defaults filled in; config.path is ours */
    uint64_t high_mark, low_mark; /* bytes */
    uint64_t max_object_bytes;    /* larger objects are never cached */
    size_t batch_max;
    size_t map_size;
    int dir_fd; /* holds the flock that keeps other processes out */
    MDB_env *env;
    MDB_dbi dbi_info, dbi_meta, dbi_chunks;
    MDB_dbi dbi_leases, dbi_lease_pins;
    bool have_lease_dbs;     /* both lease databases exist: false for a store from before leases, until start-up */
    uint64_t max_lease_bytes; /* config.max_lease_pinned_bytes, default filled in */
    size_t psize;
    bool fresh; /* a new environment: the writer creates the layout first */
    /* Transient objects the scan at open found, for the writer's first commit to remove; then freed. */
    store_key_t *transient;
    size_t ntransient;
    store_index_t index;
    hide_table_t hide; /* invalidations and corrupt chunks, hidden from readers until committed */
    verified_table_t verified; /* chunks whose checksum this process checked lately (config.verify_interval_s) */
    reader_pool_t readers;     /* for read.c's short transactions */
    writer_t writer;
    _Atomic uint64_t evicted_objects, evicted_bytes, commits, corrupt_chunks, busy_rejections, lost_chunks;
    _Atomic bool out_of_space; /* chunks are not being stored for lack of space (writer.c) */
    log_limit_t evict_log;     /* eviction failures; writer thread only */
};

void store_log_msg(store_t *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void store_log_limited(store_t *s, log_limit_t *limit, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int64_t store_now_ms(void);

/* Byte order helpers: every integer on disk is explicit about its order. GCC
 * did not merge a byte-at-a-time loop into one load: it cost a 4 KiB hit,
 * mostly in decoding its record, 670 instructions in a Release build and
 * 1,740 at -O2 (callgrind). */
static inline void put_le32(unsigned char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint32_t get_le32(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static inline void put_le64(unsigned char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint64_t get_le64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static inline void put_be64(unsigned char *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint64_t get_be64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return be64toh(v);
}

#endif
