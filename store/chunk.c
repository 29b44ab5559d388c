/*
 * chunk.c - chunk keys and chunk values, and what a value costs in LMDB.
 *
 * A chunk value is an 8-byte header (crc32c, then payload length, both
 * little-endian) followed by the payload. The checksum covers the chunk's
 * key, the length field and the payload: a garbled header fails it, and so
 * does a sound value that a garbled leaf page files under the wrong key.
 *
 * Values too big for a leaf page live on contiguous LMDB overflow pages.
 * LMDB reuses a freed run only for a request that fits it, so values of
 * arbitrary sizes fragment the file (see the shared LMDB notes). Every
 * overflow value is therefore padded to a power-of-two number of pages:
 * full chunks are all exactly 256 pages, and an object's short last chunk
 * takes one of a few run sizes that recycle each other's space.
 */
#include <string.h>

#include "crc32c.h"
#include "store_internal.h"

/* LMDB's page flags, from its on-disk format (MDB_DATA_VERSION 1). */
#define LMDB_P_BRANCH 0x01
#define LMDB_P_LEAF 0x02
#define LMDB_P_OVERFLOW 0x04

/* The page header layout read below (and LMDB_PAGE_HEADER) is that of 64-bit builds. */
_Static_assert(sizeof(size_t) == 8, "LMDB page header layout assumes 64-bit page numbers");

void chunk_key_make(chunk_key_t *ck, const store_key_t *key, int64_t generation, uint32_t index)
{
    memcpy(ck->bytes, key->hash, STORE_KEY_SIZE);
    put_be64(ck->bytes + STORE_KEY_SIZE, (uint64_t)generation);
    ck->bytes[STORE_KEY_SIZE + 8] = (unsigned char)(index >> 24);
    ck->bytes[STORE_KEY_SIZE + 9] = (unsigned char)(index >> 16);
    ck->bytes[STORE_KEY_SIZE + 10] = (unsigned char)(index >> 8);
    ck->bytes[STORE_KEY_SIZE + 11] = (unsigned char)index;
}

bool chunk_key_parse(const MDB_val *k, store_key_t *key, int64_t *generation, uint32_t *index)
{
    const unsigned char *p = k->mv_data;

    if (k->mv_size != CHUNK_KEY_SIZE)
        return false;
    memcpy(key->hash, p, STORE_KEY_SIZE);
    *generation = (int64_t)get_be64(p + STORE_KEY_SIZE);
    p += STORE_KEY_SIZE + 8;
    *index = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return true;
}

/*
 * ceil(size / STORE_CHUNK_SIZE); callers keep size below 2^32 chunks. 0 for
 * STORE_SIZE_UNKNOWN: no chunk is known to be the last, and none is counted.
 */
uint32_t chunk_count(uint64_t object_size)
{
    if (object_size == STORE_SIZE_UNKNOWN)
        return 0;
    return (uint32_t)((object_size + STORE_CHUNK_SIZE - 1) / STORE_CHUNK_SIZE);
}

/*
 * Payload length of chunk index of an object of object_size bytes (index <
 * chunk_count). While the size is unknown, every chunk put is a full one.
 */
size_t chunk_expected_len(uint64_t object_size, uint32_t index)
{
    uint64_t start = (uint64_t)index * STORE_CHUNK_SIZE;
    uint64_t left;

    if (object_size == STORE_SIZE_UNKNOWN)
        return STORE_CHUNK_SIZE;
    left = object_size - start;

    return left < STORE_CHUNK_SIZE ? (size_t)left : STORE_CHUNK_SIZE;
}

/*
 * The largest leaf node LMDB 0.9 keeps in a page (its me_nodemax): a node
 * (8-byte header, key, value) bigger than this has its value moved to
 * overflow pages. Used for padding and accounting only, where being off
 * costs a little space; the safety checks below do not depend on it.
 */
static size_t lmdb_node_max(size_t psize)
{
    return (((psize - LMDB_PAGE_HEADER) / 2) & ~(size_t)1) - 2;
}

static bool lmdb_goes_overflow(size_t psize, size_t key_len, size_t value_len)
{
    return 8 + key_len + value_len > lmdb_node_max(psize);
}

/* Bytes of the LMDB value for a payload of len bytes: header plus payload, padded to its size class. */
size_t chunk_value_size(size_t len, size_t psize)
{
    size_t value = CHUNK_HEADER_SIZE + len, pages = 1;

    if (!lmdb_goes_overflow(psize, CHUNK_KEY_SIZE, value))
        return value; /* sits in a leaf page, where no run of pages needs reusing */
    while (pages * psize - LMDB_PAGE_HEADER < value)
        pages *= 2;
    return pages * psize - LMDB_PAGE_HEADER;
}

static uint32_t chunk_crc(const chunk_key_t *ck, const unsigned char len_le[4], const void *payload, size_t len)
{
    return crc32c(crc32c(crc32c(0, ck->bytes, CHUNK_KEY_SIZE), len_le, 4), payload, len);
}

void chunk_value_fill(void *value, size_t value_size, const chunk_key_t *ck, const void *payload, size_t len)
{
    unsigned char *v = value;

    put_le32(v + 4, (uint32_t)len);
    put_le32(v, chunk_crc(ck, v + 4, payload, len));
    memcpy(v + CHUNK_HEADER_SIZE, payload, len);
    /* The padding is never read, but zeroing it keeps stale heap bytes out of the file. */
    memset(v + CHUNK_HEADER_SIZE + len, 0, value_size - CHUNK_HEADER_SIZE - len);
}

/* Reads a value's header; STORE_CORRUPT if its length cannot be right. */
int chunk_value_header(const MDB_val *v, uint32_t *crc, size_t *len)
{
    const unsigned char *p = v->mv_data;

    if (v->mv_size < CHUNK_HEADER_SIZE)
        return STORE_CORRUPT;
    *crc = get_le32(p);
    *len = get_le32(p + 4);
    if (*len > STORE_CHUNK_SIZE || *len > v->mv_size - CHUNK_HEADER_SIZE)
        return STORE_CORRUPT;
    return STORE_OK;
}

bool chunk_payload_ok(uint32_t crc, const chunk_key_t *ck, const void *payload, size_t len)
{
    unsigned char len_le[4];

    put_le32(len_le, (uint32_t)len);
    return chunk_crc(ck, len_le, payload, len) == crc;
}

/*
 * Checks the LMDB page header in front of an overflow value (one bigger than
 * half a page; smaller ones may be in a leaf, and pass). LMDB trusts that
 * header when it frees the value: a garbled page count would put live pages
 * on the free list. The header's page number must also place the map where
 * every other value placed it (*map_base, 0 at first) and end by last_pgno.
 */
bool lmdb_overflow_ok(const MDB_val *v, size_t psize, uintptr_t *map_base, size_t last_pgno)
{
    const unsigned char *page = (const unsigned char *)v->mv_data - LMDB_PAGE_HEADER;
    uint64_t pgno;
    uint16_t flags;
    uint32_t pages;
    uintptr_t base;

    if (v->mv_size <= psize / 2)
        return true;
    memcpy(&pgno, page, sizeof(pgno));
    memcpy(&flags, page + 10, sizeof(flags));
    memcpy(&pages, page + 12, sizeof(pages));
    if ((flags & (LMDB_P_OVERFLOW | LMDB_P_BRANCH | LMDB_P_LEAF)) != LMDB_P_OVERFLOW)
        return false;
    if (pages != (v->mv_size + LMDB_PAGE_HEADER + psize - 1) / psize)
        return false;
    if (map_base == NULL)
        return true;
    if (pgno < 2 || pgno + pages - 1 > last_pgno)
        return false;
    base = (uintptr_t)page - (uintptr_t)(pgno * psize);
    if (*map_base == 0)
        *map_base = base;
    return *map_base == base;
}

uint64_t chunk_value_pgno(const MDB_val *v, size_t psize)
{
    uint64_t pgno;

    if (v->mv_size <= psize / 2)
        return 0; /* a leaf node: small enough to check every time */
    memcpy(&pgno, (const unsigned char *)v->mv_data - LMDB_PAGE_HEADER, sizeof(pgno));
    return pgno;
}

/* Bytes a key/value pair takes in LMDB: its leaf node and slot, plus its overflow pages if any. */
uint64_t lmdb_footprint(size_t psize, size_t key_len, size_t value_len)
{
    const size_t node = 8 + 2; /* node header, and its slot in the page's index */

    if (!lmdb_goes_overflow(psize, key_len, value_len))
        return node + key_len + value_len;
    return node + key_len + 8 + (value_len + LMDB_PAGE_HEADER + psize - 1) / psize * psize;
}
