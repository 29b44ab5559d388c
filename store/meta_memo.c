/*
 * meta_memo.c - one thread's memo of the metadata records it decoded lately.
 *
 * store_meta_get opens a read transaction, looks the record up, checks its
 * checksum and decodes it: 3,600 instructions, a sixth of a 4 KiB hit
 * (issue 11's profiles). Hot objects are asked for again and again, and
 * between two commits of the writer no record changes, so a small
 * direct-mapped table of decoded records, each tagged with the writer's
 * commit count read before the record was, answers them without LMDB.
 *
 * Why a tag cannot be stale: the writer counts a commit after LMDB made it
 * visible (apply.c) and before anyone hears of it (store_sync, chunk
 * outcomes, hide.c's unhiding), and a record is read after its tag was
 * taken, so it is at least as new as the commit its tag names. Any commit
 * at all, a fill of another object or recency persisted every few seconds,
 * makes every entry be read again: coarse, and never wrong. What is hidden
 * (invalidated, or found damaged) is looked at first, as store_meta_get does.
 *
 * What a hit gets is the entry itself: its numbers copied, its strings
 * shared with the memo, the block they live in counted (string_block_owner),
 * so no hit copies them. store_meta_free drops the hit's reference, and
 * store_meta_set_string replaces a string without touching the block.
 *
 * The checksum is checked when a record enters the memo, not on each use;
 * the copy in this process's memory is not the disk that may rot.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define META_MEMO_SLOTS 256

/* A decoded record's strings, shared by its memo slot and the hits it served. */
typedef struct meta_block {
    atomic_uint refs;
    char strings[];
} meta_block_t;

typedef struct meta_memo_slot {
    bool used;
    uint64_t commits; /* the writer's commit count before the record was read */
    store_key_t key;
    store_meta_t meta; /* its strings in a meta_block_t (or none at all) */
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

void meta_block_release(void *owner)
{
    meta_block_t *block = owner;
    if (atomic_fetch_sub(&block->refs, 1) == 1)
        free(block);
}

/* Keeps a decoded record in slot, its strings in a block of their own; false without memory or for a changed record. */
static bool keep(meta_memo_slot_t *slot, const store_meta_t *meta)
{
    if (!meta_strings_in_block(meta))
        return false;
    if (meta->string_block == NULL) {
        slot->meta = *meta;
        return true;
    }
    meta_block_t *block = malloc(sizeof(*block) + meta->string_block_len);
    if (block == NULL)
        return false;
    atomic_init(&block->refs, 1);
    memcpy(block->strings, meta->string_block, meta->string_block_len);
    meta_rebase(&slot->meta, meta, block->strings);
    slot->meta.string_block_owner = block;
    return true;
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
    if (slot->used && slot->commits == commits && memcmp(&slot->key, key, sizeof(*key)) == 0) {
        *meta = slot->meta;
        if (meta->string_block_owner != NULL)
            atomic_fetch_add(&((meta_block_t *)meta->string_block_owner)->refs, 1);
        return STORE_OK;
    }
    int rc = store_meta_get(s, key, meta);
    if (rc != STORE_OK)
        return rc;
    store_meta_free(&slot->meta);
    slot->used = keep(slot, meta);
    slot->commits = commits;
    slot->key = *key;
    return STORE_OK;
}
