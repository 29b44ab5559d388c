/*
 * store.h - larder's object store: LMDB, fixed-size chunks, LRU within a budget.
 *
 * The store knows nothing of HTTP. It keeps, per cached object version, a
 * metadata record and the chunks that are present; a reader sees only chunks
 * that were committed whole with their checksum, so a crash mid-fill leaves
 * at worst a partially cached object, never a torn one.
 *
 * Threads: any thread may read (each read is a short LMDB read transaction
 * that ends before the call returns: no transaction is ever held across
 * client I/O). All writes are queued to the store's single writer thread,
 * which commits in batches; eviction also runs there, never on the caller.
 * Reads see committed state, with two exceptions that take effect at once:
 * an invalidated object, and a chunk a read reported STORE_CORRUPT, are
 * absent to every reader as soon as the call that found or removed them
 * returns, though their removal commits later.
 */
#ifndef LARDER_STORE_H
#define LARDER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * One chunk value is 1 MiB - 16 bytes, which fills exactly 256 LMDB overflow
 * pages; 8 of those bytes are the chunk header (crc32c, length). Every chunk
 * but an object's last is exactly STORE_CHUNK_SIZE bytes of payload.
 */
#define STORE_CHUNK_SIZE ((size_t)(1024 * 1024 - 16 - 8))

enum {
    STORE_OK = 0,
    STORE_NOT_FOUND = -1, /* no such object, version or chunk */
    STORE_CORRUPT = -2,   /* checksum mismatch: treated as absent and scheduled for removal */
    STORE_BUSY = -3,      /* write queue full: the caller serves without caching */
    STORE_ERROR = -4,     /* anything else; see the log */
    STORE_NO_SPACE = -5,  /* store_open: the disk has no room even to open the store */
    STORE_QUOTA = -6      /* store_lease_pin(_async): the lease's quota, or all leases' together, would be passed */
};

/* The size of an object whose length is not known yet (a body without Content-Length): see store_fill_set_size. */
#define STORE_SIZE_UNKNOWN UINT64_MAX

/*
 * What became of one queued chunk. Every chunk store_chunk_put accepted is
 * reported exactly once, on the writer thread, after the commit that decided
 * it: only STORE_CHUNK_DURABLE chunks may ever be offered to a reader.
 */
typedef enum {
    STORE_CHUNK_DURABLE,  /* committed: readers find it from now on */
    STORE_CHUNK_DROPPED,  /* not stored, and never will be: its object was evicted, invalidated or replaced
                           * before the chunk's turn (or in the same commit), or grew too large to keep, or the
                           * chunk does not fit the object's record */
    STORE_CHUNK_NO_SPACE, /* lost: the disk or the map is full, even after eviction */
    STORE_CHUNK_FAILED    /* lost: an I/O error, or the store closed before it committed */
} store_chunk_outcome_t;

/*
 * Called once per accepted chunk with its outcome. Runs on the writer thread
 * (or in store_close, for chunks still queued): it must be quick, must not
 * call store_sync or store_close, and must not block on anything that waits
 * for the writer.
 */
typedef void (*store_chunk_done_fn)(void *ctx, uint32_t index, store_chunk_outcome_t outcome);

typedef struct store store_t;

typedef struct store_config {
    const char *path;      /* directory; created if missing */
    uint64_t budget;       /* bytes of chunk payload plus metadata the store may hold */
    double high_water;     /* evict when usage exceeds budget * high_water (e.g. 0.95) */
    double low_water;      /* ... down to budget * low_water (e.g. 0.85) */
    unsigned commit_interval_ms; /* writer batches commits at most this far apart */
    size_t max_queue_bytes;      /* queued, uncommitted chunk bytes before STORE_BUSY */
    /* Called from store threads for notable events (rebuild, eviction errors); may be NULL. */
    void (*log)(void *ctx, int level, const char *msg);
    void *log_ctx;
    /*
     * What all live leases together may pin (the sum of their pinned_bytes,
     * see store_lease_pin); 0: half the budget, so that eviction always has
     * room to work with. Capped at the budget.
     */
    uint64_t max_lease_pinned_bytes;
    /*
     * A chunk's checksum is checked on its first read, and then on the first
     * read once verify_interval_s seconds have passed since the last check
     * (verified.c says what that gives up); 0: on every read. At most 7 days.
     */
    unsigned verify_interval_s;
    /* How often the writer writes touched objects' recency to the file, in ms; 0: every 10 s. */
    unsigned recency_persist_ms;
} store_config_t;

/* Identity of a cached object: a hash of bucket and name (LMDB keys are <= 511 bytes). */
typedef struct store_key {
    uint8_t hash[32];
} store_key_t;

void store_key_make(store_key_t *key, const char *bucket, size_t bucket_len, const char *name, size_t name_len);
/*
 * A thread's memo of keys it made lately (key_memo.c): store_key_make_memo
 * gives store_key_make's key, from the memo when it has the same bucket and
 * name. Not shared between threads; memo NULL just makes the key.
 */
typedef struct store_key_memo store_key_memo_t;
store_key_memo_t *store_key_memo_new(void);
void store_key_memo_free(store_key_memo_t *memo);
void store_key_make_memo(store_key_memo_t *memo, store_key_t *key, const char *bucket, size_t bucket_len,
                         const char *name, size_t name_len);
/* SHA-256 of data; false only when OpenSSL has no SHA-256. Shared so the proxy hashes identities the same way. */
bool store_sha256(const void *data, size_t len, uint8_t digest[32]);
/* CRC-32C, extended over len bytes (0 to start): what GCS reports as crc32c. Shared to check uploads with it. */
uint32_t store_crc32c(uint32_t crc, const void *data, size_t len);

/* Everything needed to answer a media or metadata request without upstream. */
typedef struct store_meta {
    char *bucket;
    char *name;
    int64_t generation;
    int64_t metageneration;
    uint64_t size;            /* stored size in bytes (compressed size for gzip objects); STORE_SIZE_UNKNOWN while
                               * a fill of unknown length runs */
    char *etag;               /* media ETag exactly as upstream sent it */
    char *content_type;
    char *content_encoding;   /* NULL if none */
    char *cache_control;
    char *content_disposition;
    char *content_language;
    char *last_modified;      /* HTTP date */
    char *crc32c;             /* base64, as in x-goog-hash */
    char *md5;                /* base64, NULL for composite objects */
    char *resource_json;      /* the JSON API object resource, for metadata GETs; may be NULL */
    char *owner;              /* identity that filled the object; may be NULL */
    int64_t fill_time;        /* set by the caller (larder stores unix milliseconds); the store keeps it as given */
    int64_t last_access;      /* unix seconds, as last persisted */
    uint32_t num_chunks;      /* ceil(size / STORE_CHUNK_SIZE); 0 while the size is unknown */
    uint32_t chunks_present;  /* how many of them are committed (while the size is unknown: full chunks) */
    /*
     * A scratch object, kept under a key no reader computes (larder keeps a
     * resumable upload's received chunks this way before the upload
     * completes). It behaves like any other object (evicted by LRU, removed
     * by store_invalidate, readable by key), except that store_open removes
     * every transient object, with all its chunks, before the store is used:
     * a crash or restart never leaves one behind. Set by store_fill_begin;
     * store_meta_update keeps the stored value, whatever the caller says.
     */
    bool transient;
    /*
     * Where store_meta_get put the strings above: one allocation holding them
     * all (a hit decodes a record without an allocation per field). NULL when
     * each string is its own allocation. Either way store_meta_free frees
     * them; to replace one string of a stored record use store_meta_set_string,
     * never free().
     */
    char *string_block;
    size_t string_block_len;
    /* Non-NULL when string_block is shared with a memo (store_meta_get_memo): released, never written to. */
    void *string_block_owner;
} store_meta_t;

/*
 * Opens (or creates) the store. A store that does not open or verify cleanly
 * is moved aside (renamed with a timestamp) and rebuilt empty, with one log
 * line; only an unusable directory makes this fail: STORE_NO_SPACE when the
 * disk has no room for the store's files, STORE_ERROR otherwise. Transient
 * objects left by the last run are removed in one commit before this
 * returns (one INFO line says how many, and their bytes); if that commit
 * fails, so does the open (STORE_NO_SPACE for lack of room).
 */
int store_open(store_t **store, const store_config_t *config);
/* Commits everything queued, stops the writer, closes LMDB. */
void store_close(store_t *store);

/* Copies the metadata of the cached version of bucket/name into *meta (caller frees with store_meta_free). */
int store_meta_get(store_t *store, const store_key_t *key, store_meta_t *meta);
void store_meta_free(store_meta_t *meta);
/*
 * A thread's memo of the records it decoded lately (meta_memo.c):
 * store_meta_get_memo answers as store_meta_get, from the memo while the
 * writer has committed nothing since the record was read. Not shared between
 * threads.
 */
typedef struct store_meta_memo store_meta_memo_t;
store_meta_memo_t *store_meta_memo_new(store_t *store);
void store_meta_memo_free(store_meta_memo_t *memo);
int store_meta_get_memo(store_meta_memo_t *memo, const store_key_t *key, store_meta_t *meta);
/* Replaces the string *field of meta (one of its members) by value, which meta then owns (malloc'd, or NULL). */
void store_meta_set_string(store_meta_t *meta, char **field, char *value);
/* A copy of src with every string its own allocation; on STORE_ERROR (no memory) *dst is still safe to free. */
int store_meta_copy(store_meta_t *dst, const store_meta_t *src);

/* True when chunk `index` of that generation is committed (and neither invalidated nor reported corrupt since). */
bool store_chunk_present(store_t *store, const store_key_t *key, int64_t generation, uint32_t index);

/*
 * Copies chunk `index` of that generation into buf (STORE_ERROR when cap
 * cannot hold it), verifying its checksum. Returns the payload length, or STORE_NOT_FOUND /
 * STORE_CORRUPT. The read transaction ends before this returns. After
 * STORE_CORRUPT the chunk is absent at once: present says false and reads
 * say STORE_NOT_FOUND, so a retry refetches it from upstream.
 */
ssize_t store_chunk_read(store_t *store, const store_key_t *key, int64_t generation, uint32_t index, void *buf,
                         size_t cap);
/*
 * The same for a slice: copies up to cap bytes of chunk `index` from byte
 * `offset` of its payload into buf, and sets *chunk_len (if not NULL) to the
 * whole payload's length. Returns the bytes copied (0 when offset is at or past
 * its end), or as store_chunk_read. The whole chunk's checksum is checked,
 * whatever the slice, so a slice is never sent from a damaged chunk.
 */
ssize_t store_chunk_read_at(store_t *store, const store_key_t *key, int64_t generation, uint32_t index, size_t offset,
                            void *buf, size_t cap, size_t *chunk_len);
/*
 * The same bytes without a copy: calls fn with up to len bytes of the
 * payload from offset, where they sit in the store's map, inside the read
 * transaction, which ends when fn returns. fn must be done with the bytes by
 * then (copy them, or hand them to a syscall that copies them, such as a
 * non-blocking send on a TCP socket) and must not block or keep the pointer:
 * once the transaction ends, the store may free those pages and write others
 * there. fn returns what it used (>= 0), which this returns; fn is not called
 * when offset is at or past the payload's end (0 is returned). Errors and
 * *chunk_len as store_chunk_read_at.
 */
typedef ssize_t (*store_bytes_fn)(void *ctx, const void *bytes, size_t len);
ssize_t store_chunk_use_at(store_t *store, const store_key_t *key, int64_t generation, uint32_t index, size_t offset,
                           size_t len, store_bytes_fn fn, void *ctx, size_t *chunk_len);
/*
 * A thread's own read transaction (reader.c), kept reset between reads: the
 * chunk reads below, given one, take no lock to begin and end. Used by one
 * thread at a time. store_close ends its transaction; free it before or
 * after, never during, store_close. NULL without memory.
 */
typedef struct store_reader store_reader_t;
store_reader_t *store_reader_new(store_t *store);
void store_reader_free(store_reader_t *reader);
/* store_chunk_read_at and store_chunk_use_at in reader's transaction. */
ssize_t store_reader_chunk_read_at(store_reader_t *reader, const store_key_t *key, int64_t generation, uint32_t index,
                                   size_t offset, void *buf, size_t cap, size_t *chunk_len);
ssize_t store_reader_chunk_use_at(store_reader_t *reader, const store_key_t *key, int64_t generation, uint32_t index,
                                  size_t offset, size_t len, store_bytes_fn fn, void *ctx, size_t *chunk_len);
/*
 * A thread's copies of small objects in memory (hot.c), read through its
 * reader: store_hot_get gives the copy of exactly this version (key,
 * generation, size), made from the store on its first use, retained for
 * the caller (store_hot_release); NULL when the object is larger than
 * STORE_HOT_MAX_OBJECT or not in one chunk, the budget is 0, or the store
 * has no whole copy. The caller must know from the store's metadata that
 * this version is the cached one: a copy answers for that version only, and
 * is never checked against the store again. Not shared between threads;
 * hot NULL gives NULL.
 */
#define STORE_HOT_MAX_OBJECT (64 * 1024)
typedef struct store_hot store_hot_t;
typedef struct store_hot_object store_hot_object_t;
typedef struct store_hot_stats {
    uint64_t hits, loads, evictions, bytes, objects;
} store_hot_stats_t;
store_hot_t *store_hot_new(store_reader_t *reader, uint64_t budget);
/* Copies still retained live on until their release. */
void store_hot_free(store_hot_t *hot);
store_hot_object_t *store_hot_get(store_hot_t *hot, const store_key_t *key, int64_t generation, uint64_t size);
const char *store_hot_bytes(const store_hot_object_t *object);
void store_hot_release(store_hot_object_t *object);
/* Adds hot's figures to *sum; any thread. */
void store_hot_stats_add(store_hot_t *hot, store_hot_stats_t *sum);
/* config.verify_interval_s 0: then each slice read checks the whole chunk, and whole chunks are the cheaper read. */
bool store_verifies_every_read(const store_t *store);

/*
 * Starts caching a version: records its metadata with no chunks present. A
 * different cached generation of the same object is removed in the same
 * commit; the same generation (and size) keeps the chunks it has. Queued;
 * the metadata is copied. meta->size may be STORE_SIZE_UNKNOWN: then every
 * chunk put must be exactly STORE_CHUNK_SIZE bytes until store_fill_set_size
 * says how long the object is, and readers see size STORE_SIZE_UNKNOWN.
 * meta->transient makes the version a transient object (see store_meta_t),
 * even when it refills the generation already cached.
 */
int store_fill_begin(store_t *store, const store_key_t *key, const store_meta_t *meta);
/*
 * Queues one whole chunk (copied). Returns STORE_BUSY when the queue is
 * full, STORE_ERROR when the store is closing or broken; in both cases done
 * is never called. On STORE_OK, done (when not NULL) is called exactly once
 * with the chunk's outcome.
 */
int store_chunk_put(store_t *store, const store_key_t *key, int64_t generation, uint32_t index, const void *data,
                    size_t len, store_chunk_done_fn done, void *done_ctx);
/*
 * Gives a fill begun with STORE_SIZE_UNKNOWN its size, once the body ended.
 * Chunks past the size are dropped; an object larger than the store may hold
 * is dropped whole. Ignored when that generation is not the cached one, or
 * already has a size. Queued; chunks put after it may be short (the last).
 */
int store_fill_set_size(store_t *store, const store_key_t *key, int64_t generation, uint64_t size);
/*
 * Replaces the metadata of the cached version (e.g. after a metadata-only
 * change, or a revalidation that restarts fill_time): every field the caller
 * sets, fill_time included. Size, chunk counts, transient and last_access
 * stay the store's. Ignored if another generation is cached by then. Queued.
 */
int store_meta_update(store_t *store, const store_key_t *key, const store_meta_t *meta);
/*
 * Removes the object and all its chunks (any generation). Queued, but
 * visible at once: from its return, every read of key from any thread says
 * STORE_NOT_FOUND (absent), until a store_fill_begin queued after it
 * commits. STORE_ERROR: the store is closing or broken, or out of memory.
 */
int store_invalidate(store_t *store, const store_key_t *key);
/*
 * Calls fn for every cached object (transient ones left out) with its
 * metadata, until fn returns false. One read transaction for the whole
 * scan: fn must be quick and must not call the store (collect, then act).
 */
typedef bool (*store_scan_fn)(void *ctx, const store_key_t *key, const store_meta_t *meta);
int store_scan(store_t *store, store_scan_fn fn, void *ctx);
/* Records an access for LRU; in memory, persisted in batches. Never blocks on the writer. */
void store_touch(store_t *store, const store_key_t *key);
/*
 * Pins an object against eviction while a response reads it (in memory, any
 * thread, never blocks on the writer); every pin needs one unpin. Eviction
 * skips pinned objects, so the store may stay above its high-water mark
 * while everything evictable is pinned. Invalidation ignores pins: a reader
 * of an invalidated object finds its chunks gone and must cope. A key may be
 * pinned before its object is cached (the pin counts once it is); pin before
 * store_meta_get, since a pin cannot stop an eviction already committing.
 */
void store_pin(store_t *store, const store_key_t *key);
void store_unpin(store_t *store, const store_key_t *key);
/* store_touch and store_pin in one step: a hit about to send the object's bytes takes the index's lock once. */
void store_touch_and_pin(store_t *store, const store_key_t *key);
/*
 * Blocks until everything queued before the call is committed (tests,
 * shutdown), and the outcomes of its chunks reported.
 */
int store_sync(store_t *store);
/*
 * store_sync without the wait: done is called once (on the writer thread,
 * under store_chunk_done_fn's rules) after the commit that decides
 * everything queued before the fence, committed or lost; its outcome says
 * nothing else. For a caller on an event loop that must not act before an
 * update it queued is readable. STORE_OK, or STORE_BUSY / STORE_ERROR as
 * store_chunk_put (then done is never called).
 */
int store_fence(store_t *store, store_chunk_done_fn done, void *done_ctx);

typedef struct store_stats {
    uint64_t budget;
    uint64_t used_bytes;    /* chunk payload + metadata, as accounted */
    uint64_t objects;
    uint64_t chunks;
    uint64_t pinned_bytes;  /* bytes of the objects pinned now (store_pin), which eviction skips */
    uint64_t evicted_objects;
    uint64_t evicted_bytes;
    uint64_t commits;
    uint64_t corrupt_chunks;
    uint64_t busy_rejections;
    uint64_t lost_chunks;   /* accepted chunks that did not commit: NO_SPACE or FAILED */
    bool out_of_space;      /* the last batch with chunks could not store them: disk or map full */
    uint64_t lease_count;        /* live (unexpired) leases */
    uint64_t lease_pinned_bytes; /* bytes of the objects live leases pin, each object counted once */
} store_stats_t;

void store_stats_get(store_t *store, store_stats_t *stats);
/* The last batch with chunks could not store them for lack of space (stats.out_of_space, without the rest). */
bool store_out_of_space(store_t *store);

/*
 * Leases: what a pipeline's batch holds against eviction until it ends.
 *
 * A lease has an id (1 to STORE_LEASE_ID_MAX bytes, no NUL), an owner (an
 * opaque string for the caller, at most STORE_LEASE_OWNER_MAX bytes; the
 * store never interprets it), an expiry (unix milliseconds, wall clock), a
 * byte quota (0: none) and a set of pinned object keys. While the lease is
 * live (now < expires_at_ms), eviction never takes an object it pins; the
 * moment it expires it stops pinning (every check compares with the current
 * time), and the writer thread removes expired leases and their pins on its
 * housekeeping rounds, within about ten seconds. Invalidation ignores leases
 * as it ignores store_pin: a pinned object that is invalidated is gone, and
 * its key counts again once it is filled again.
 *
 * Notes: each pin may carry a note of what the caller wants to remember of
 * the object (store_pin_note_t), kept with the pin and handed back by
 * store_lease_keys; the store never interprets it. Pinning a key again
 * merges notes: the marks are ORed in, and a pin without text takes the
 * first non-empty text it is given (a later text never replaces it), so
 * callers that learn things about an object at different times need not
 * read before they write.
 *
 * Bytes: an object counts what the store charges it against the budget now
 * (its metadata record plus the chunks present), looked up in the index at
 * the moment of asking; a key pinned before its object is cached counts 0
 * until the object is there. A lease's pinned_bytes is the sum over its
 * keys. Quotas are checked when a key is first pinned under the lease (a
 * pin of a key it pins already only merges the note): the lease's
 * pinned_bytes plus the object's bytes must not pass quota_bytes, and the
 * sum of every live lease's pinned_bytes (an object two leases pin counts
 * twice, so the check is conservative) plus the object's bytes must not
 * pass max_lease_pinned_bytes; otherwise STORE_QUOTA. In that check the
 * object counts max(its bytes now, expect_bytes): a writer about to store
 * an upload of known size passes its size, so that an upload the quota
 * cannot hold is refused before its bytes are sent rather than pinned at 0.
 * expect_bytes is checked, not kept: later checks count the object at what
 * the index charges it, so objects filled after their key was pinned can
 * take a lease past its quota, and then later pins are refused.
 *
 * Calls: every lease write goes through the writer thread in its batched
 * commits like any other write, in the order queued (a pin queued after the
 * put that creates its lease finds it), and is decided by one commit: at
 * once if the writer is idle, else after the batch in progress, typically
 * milliseconds, up to a large batch's commit time. Each write comes in two
 * forms over the same op. The _async form queues it and returns: an
 * event-loop thread, which must never block, hears the result through
 * store_lease_done_fn. The blocking form waits for that commit: never call
 * it from an event-loop thread's hot path. Either way a result of STORE_OK
 * means the change is committed, so it survives store_close and a kill -9
 * of the process (not a machine crash within the next few seconds: the
 * store flushes every ENV_SYNC_MS). The quota check walks every live
 * lease's pins on the writer thread, which is meant for thousands of pins,
 * not millions. Reads (get, list, keys) take a short read transaction and
 * never wait for the writer.
 *
 * Codes: STORE_OK; STORE_NOT_FOUND for an unknown (or, except for
 * store_lease_end, expired) lease; STORE_QUOTA; STORE_ERROR for a bad
 * argument, a closing or broken store, or a commit that failed.
 */
#define STORE_LEASE_ID_MAX 128
/* Room for a small JSON document of the caller's. */
#define STORE_LEASE_OWNER_MAX 4096
#define STORE_PIN_NOTE_MAX 2048

typedef struct store_lease {
    char id[STORE_LEASE_ID_MAX + 1];
    char *owner; /* freed by store_lease_free */
    int64_t expires_at_ms;
    uint64_t quota_bytes;    /* 0: none */
    uint64_t pinned_objects; /* keys pinned, cached or not */
    uint64_t pinned_bytes;   /* bytes of the pinned objects the store holds now */
} store_lease_t;

/* What a pin call asks the store to remember of the object with its pin. */
typedef struct store_pin_note {
    uint32_t marks;   /* bits the caller defines; a pin's marks are the OR of every pin call's */
    const char *text; /* kept if the pin has no text yet (the first non-empty text wins); may be NULL */
    size_t text_len;  /* <= STORE_PIN_NOTE_MAX */
} store_pin_note_t;

/*
 * Told, on the writer thread, the result of a lease call once the commit
 * that decided it is over (STORE_OK, STORE_NOT_FOUND, STORE_QUOTA or
 * STORE_ERROR, exactly as the blocking call would return). It must not call
 * the store's blocking calls; it typically hands the result to another
 * thread. Called from store_close instead for an op the writer never took
 * (with STORE_ERROR), so it may run after the caller started closing.
 */
typedef void (*store_lease_done_fn)(void *ctx, int result);

/* Creates a lease, or replaces the owner, expiry and quota of a live one (its pins stay). An expired one starts anew. */
int store_lease_put(store_t *store, const char *id, const char *owner, int64_t expires_at_ms, uint64_t quota_bytes);
/* Sets a live lease's expiry (any time: one in the past ends its pinning at once). */
int store_lease_extend(store_t *store, const char *id, int64_t expires_at_ms);
/*
 * Pins key under the lease (a key not cached yet too), with note (NULL: no
 * marks, no text). Pinning a key the lease already pins is STORE_OK, and
 * merges the note in without a quota check. expect_bytes: what the object
 * will be charged once stored, for the quota check of a first pin (0 when
 * unknown; see Bytes above).
 */
int store_lease_pin(store_t *store, const char *id, const store_key_t *key, const store_pin_note_t *note,
                    uint64_t expect_bytes);
/* Removes the lease, expired or not, and its pins; the objects stay cached and become evictable again. */
int store_lease_end(store_t *store, const char *id);

/*
 * The same four without the wait. STORE_OK when queued: done (when not
 * NULL) is then called exactly once, later, with the result (STORE_ERROR
 * also when the commit failed, or the store closed before the op was
 * taken: store_close returns only after every done was called). STORE_ERROR
 * for a bad argument, no memory, or a closing or broken store: then done is
 * never called. Never STORE_BUSY: lease ops are small and never refused.
 */
int store_lease_put_async(store_t *store, const char *id, const char *owner, int64_t expires_at_ms,
                          uint64_t quota_bytes, store_lease_done_fn done, void *ctx);
int store_lease_extend_async(store_t *store, const char *id, int64_t expires_at_ms, store_lease_done_fn done,
                             void *ctx);
int store_lease_end_async(store_t *store, const char *id, store_lease_done_fn done, void *ctx);
int store_lease_pin_async(store_t *store, const char *id, const store_key_t *key, const store_pin_note_t *note,
                          uint64_t expect_bytes, store_lease_done_fn done, void *ctx);

/* Copies a live lease into *out (free with store_lease_free, also after an error). */
int store_lease_get(store_t *store, const char *id, store_lease_t *out);
void store_lease_free(store_lease_t *lease);
/*
 * Calls fn for every live lease until it returns false. Collected first and
 * called with no transaction open, so fn may call the store.
 */
typedef bool (*store_lease_fn)(void *ctx, const store_lease_t *lease);
int store_lease_list(store_t *store, store_lease_fn fn, void *ctx);

/* One pin as store_lease_keys reports it: the key and its merged note. */
typedef struct store_lease_pin_info {
    store_key_t key;
    uint32_t marks;
    const char *text; /* valid during the call only; NULL when none */
    size_t text_len;
} store_lease_pin_info_t;
/*
 * Calls fn with every pin of the lease (expired or not: a batch's outputs),
 * until it returns false; collected first, so fn may call the store.
 */
typedef bool (*store_lease_key_fn)(void *ctx, const store_lease_pin_info_t *pin);
int store_lease_keys(store_t *store, const char *id, store_lease_key_fn fn, void *ctx);

#endif
