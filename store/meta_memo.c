/*
 * meta_memo.c - one thread's memo of the metadata records it decoded lately.
 *
 * store_meta_get opens a read transaction, looks the record up, checks its
 * checksum and decodes it: 3,600 instructions, a sixth of a 4 KiB hit
 * (issue 11's profiles). Hot objects are asked for again and again, and
 * between two commits of the writer no record changes, so a small
 * direct-mapped table of decoded records, each tagged with the writer's
 * commit count read before the record was, answers them with one copy.
 *
 * Why a tag cannot be stale: the writer counts a commit after LMDB made it
 * visible (apply.c) and before anyone hears of it (store_sync, chunk
 * outcomes, hide.c's unhiding), and a record is read after its tag was
 * taken, so it is at least as new as the commit its tag names. Any commit
 * at all, a fill of another object or recency persisted every few seconds,
 * makes every entry be read again: coarse, and never wrong. What is hidden
 * (invalidated, or found damaged) is looked at first, as store_meta_get does.
 *
 * The checksum is checked when a record enters the memo, not on each use;
 * the copy in this process's memory is not the disk that may rot.
 */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define META_MEMO_SLOTS 256

typedef struct meta_memo_slot {
    bool used;
    uint64_t commits; /* the writer's commit count before the record was read */
    store_key_t key;
    store_meta_t meta; /* decoded: every string in meta.string_block */
} meta_memo_slot_t;

struct store_meta_memo {
    store_t *store;
    meta_memo_slot_t slots[META_MEMO_SLOTS];
};

store_meta_memo_t *store_meta_memo_new(store_t *store)
{
    store_meta_memo_t *memo = calloc(1, sizeof(*memo));
    if (memo != NULL)
        memo->store = store;
    return memo;
}

void store_meta_memo_free(store_meta_memo_t *memo)
{
    if (memo == NULL)
        return;
    for (size_t i = 0; i < META_MEMO_SLOTS; i++)
        store_meta_free(&memo->slots[i].meta);
    free(memo);
}

int store_meta_get_memo(store_meta_memo_t *memo, const store_key_t *key, store_meta_t *meta)
{
    store_t *s = memo->store;
    if (hide_object_hidden(&s->hide, key)) {
        memset(meta, 0, sizeof(*meta));
        return STORE_NOT_FOUND; /* invalidated; the commit that removes it has not happened yet */
    }
    uint64_t commits = atomic_load(&s->commits);
    meta_memo_slot_t *slot = &memo->slots[get_le32(key->hash) % META_MEMO_SLOTS];
    if (slot->used && slot->commits == commits && memcmp(&slot->key, key, sizeof(*key)) == 0)
        return meta_clone(meta, &slot->meta);
    int rc = store_meta_get(s, key, meta);
    if (rc != STORE_OK)
        return rc;
    store_meta_free(&slot->meta);
    slot->used = meta_clone(&slot->meta, meta) == STORE_OK;
    slot->commits = commits;
    slot->key = *key;
    return STORE_OK;
}
