/*
 * key_memo.c - one thread's memo of the keys it made lately.
 *
 * A key is a SHA-256 of bucket and name, and through OpenSSL 3's EVP layer
 * that cost some 3,500 instructions and nine allocations per request: an
 * eighth of a 4 KiB hit (issue 11's profiles). Hot objects are asked for
 * again and again, so a small direct-mapped table of (bucket, name) -> key,
 * compared byte for byte, answers most requests with one FNV pass and a
 * memcmp. Longer names than a slot holds are simply hashed every time.
 */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define MEMO_SLOTS 256
#define MEMO_NAME_MAX 238 /* bucket and name together; a slot is then 280 bytes */

typedef struct memo_slot {
    uint16_t bucket_len, name_len; /* both 0: empty (no real key has an empty bucket) */
    char bytes[MEMO_NAME_MAX];
    store_key_t key;
} memo_slot_t;

struct store_key_memo {
    memo_slot_t slots[MEMO_SLOTS];
};

store_key_memo_t *store_key_memo_new(void)
{
    return calloc(1, sizeof(store_key_memo_t));
}

void store_key_memo_free(store_key_memo_t *memo)
{
    free(memo);
}

static uint64_t fnv1a(uint64_t h, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

void store_key_make_memo(store_key_memo_t *memo, store_key_t *key, const char *bucket, size_t bucket_len,
                         const char *name, size_t name_len)
{
    if (memo == NULL || bucket_len == 0 || bucket_len + name_len > MEMO_NAME_MAX) {
        store_key_make(key, bucket, bucket_len, name, name_len);
        return;
    }
    uint64_t h = fnv1a(fnv1a(0xcbf29ce484222325ull ^ bucket_len, bucket, bucket_len), name, name_len);
    memo_slot_t *slot = &memo->slots[(h ^ (h >> 32)) % MEMO_SLOTS];
    if (slot->bucket_len == bucket_len && slot->name_len == name_len && memcmp(slot->bytes, bucket, bucket_len) == 0 &&
        memcmp(slot->bytes + bucket_len, name, name_len) == 0) {
        *key = slot->key;
        return;
    }
    store_key_make(key, bucket, bucket_len, name, name_len);
    slot->bucket_len = (uint16_t)bucket_len;
    slot->name_len = (uint16_t)name_len;
    memcpy(slot->bytes, bucket, bucket_len);
    memcpy(slot->bytes + bucket_len, name, name_len);
    slot->key = *key;
}
