/*
 * meta.c - an object's metadata record: encoding, checking and decoding.
 *
 * Binary rather than JSON because store_meta_get is on the hit path: decoding
 * is a checksum and one copy per string. Layout (integers little-endian):
 *
 *   0   magic "LDM2"
 *   4   crc32c of the object's key, then of everything from offset 8 on
 *   8   generation, metageneration, size, fill_time, last_access, access_seq
 *       (8 bytes each), num_chunks, chunks_present (4 each), chunk_bytes (8);
 *       size is STORE_SIZE_UNKNOWN and num_chunks 0 while a fill of unknown
 *       length runs
 *   72  flags (4): META_FLAG_TRANSIENT; any other bit set is damage
 *   76  the strings of store_meta_t in meta_strings order, each a 4-byte
 *       length plus one (0 for NULL) followed by that many bytes, no NUL
 *
 * Records written before transient objects existed have the magic "LDM1"
 * and no flags word: their strings start at 72. They are still read, as not
 * transient, so a store survives the upgrade whole; the writer rewrites their
 * fixed part in place (they stay LDM1) and any new record is LDM2. An LDM1
 * record never needs the flag: only store_fill_begin sets it, and that writes
 * a new record.
 *
 * The fixed part comes first so the writer can update counts and recency by
 * rewriting it and the checksum, without decoding the strings. The key is in
 * the checksum so that a record under the wrong key fails it.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "store_internal.h"

#define META_MAGIC 0x324d444cu    /* "LDM2" */
#define META_MAGIC_V1 0x314d444cu /* "LDM1": no flags word */
#define META_FLAGS 72             /* LDM2 only */
#define META_FIXED_END 76
#define META_FIXED_END_V1 72
#define META_FLAG_TRANSIENT 0x1u

/* Every string field of store_meta_t, in record order. Appending is a format change: a new magic, as LDM2 was. */
static const size_t meta_strings[] = {
    offsetof(store_meta_t, bucket),
    offsetof(store_meta_t, name),
    offsetof(store_meta_t, etag),
    offsetof(store_meta_t, content_type),
    offsetof(store_meta_t, content_encoding),
    offsetof(store_meta_t, cache_control),
    offsetof(store_meta_t, content_disposition),
    offsetof(store_meta_t, content_language),
    offsetof(store_meta_t, last_modified),
    offsetof(store_meta_t, crc32c),
    offsetof(store_meta_t, md5),
    offsetof(store_meta_t, resource_json),
    offsetof(store_meta_t, owner),
};
#define META_NSTRINGS (sizeof(meta_strings) / sizeof(meta_strings[0]))

static char **field(store_meta_t *m, size_t i)
{
    return (char **)((char *)m + meta_strings[i]);
}

static const char *field_const(const store_meta_t *m, size_t i)
{
    return *(char *const *)((const char *)m + meta_strings[i]);
}

size_t meta_encoded_size(const store_meta_t *m)
{
    size_t len = META_FIXED_END, i;

    for (i = 0; i < META_NSTRINGS; i++) {
        const char *s = field_const(m, i);

        len += 4 + (s != NULL ? strlen(s) : 0);
    }
    return len;
}

static uint32_t record_crc(const unsigned char *rec, size_t len, const store_key_t *key)
{
    return crc32c(crc32c(0, key->hash, STORE_KEY_SIZE), rec + 8, len - 8);
}

/* Where a record's strings start, which its magic decides; 0 when the magic is none of ours. */
static size_t strings_start(const unsigned char *rec, size_t len)
{
    if (len < 4)
        return 0;
    switch (get_le32(rec)) {
    case META_MAGIC:
        return META_FIXED_END;
    case META_MAGIC_V1:
        return META_FIXED_END_V1;
    default:
        return 0;
    }
}

/*
 * Writes the fixed part; the callers then recompute the checksum. An LDM1
 * record has no flags word, and needs none: it is never transient (see above).
 */
static void put_fixed(unsigned char *rec, const meta_fixed_t *f)
{
    put_le64(rec + 8, (uint64_t)f->generation);
    put_le64(rec + 16, (uint64_t)f->metageneration);
    put_le64(rec + 24, f->size);
    put_le64(rec + 32, (uint64_t)f->fill_time);
    put_le64(rec + 40, (uint64_t)f->last_access);
    put_le64(rec + 48, f->access_seq);
    put_le32(rec + 56, f->num_chunks);
    put_le32(rec + 60, f->chunks_present);
    put_le64(rec + 64, f->chunk_bytes);
    if (get_le32(rec) == META_MAGIC)
        put_le32(rec + META_FLAGS, f->transient ? META_FLAG_TRANSIENT : 0);
}

/* Encodes into rec, which holds exactly meta_encoded_size(m) == len bytes. */
void meta_encode(void *rec, size_t len, const store_key_t *key, const store_meta_t *m, const meta_fixed_t *f)
{
    unsigned char *p = rec;
    size_t off = META_FIXED_END, i;

    put_le32(p, META_MAGIC);
    put_fixed(p, f);
    for (i = 0; i < META_NSTRINGS; i++) {
        const char *s = field_const(m, i);
        size_t n = s != NULL ? strlen(s) : 0;

        put_le32(p + off, s != NULL ? (uint32_t)n + 1 : 0);
        memcpy(p + off + 4, s != NULL ? s : "", n);
        off += 4 + n;
    }
    put_le32(p + 4, record_crc(p, len, key));
}

/* Whether the strings, starting at off, fill the rest of the record exactly. */
static bool strings_fit(const unsigned char *p, size_t len, size_t off)
{
    for (size_t i = 0; i < META_NSTRINGS; i++) {
        if (len - off < 4)
            return false;
        uint32_t n = get_le32(p + off);
        off += 4;
        if (n > 0 && n - 1 > len - off)
            return false;
        off += n > 0 ? n - 1 : 0;
    }
    return off == len;
}

/* Checks magic, checksum and string layout, and reads the fixed part; false if the record is damaged. */
bool meta_read_fixed(const void *rec, size_t len, const store_key_t *key, meta_fixed_t *f)
{
    const unsigned char *p = rec;
    size_t off = strings_start(p, len);

    if (off == 0 || len < off || get_le32(p + 4) != record_crc(p, len, key) || !strings_fit(p, len, off))
        return false;
    /* LDM1 predates the flags: not transient. A flag this code does not know is damage, like a bad count. */
    uint32_t flags = off == META_FIXED_END ? get_le32(p + META_FLAGS) : 0;
    if ((flags & ~META_FLAG_TRANSIENT) != 0)
        return false;
    f->transient = (flags & META_FLAG_TRANSIENT) != 0;
    f->generation = (int64_t)get_le64(p + 8);
    f->metageneration = (int64_t)get_le64(p + 16);
    f->size = get_le64(p + 24);
    f->fill_time = (int64_t)get_le64(p + 32);
    f->last_access = (int64_t)get_le64(p + 40);
    f->access_seq = get_le64(p + 48);
    f->num_chunks = get_le32(p + 56);
    f->chunks_present = get_le32(p + 60);
    f->chunk_bytes = get_le64(p + 64);
    /* A fill of unknown size has no chunk count yet, only the full chunks it holds. */
    return f->num_chunks == chunk_count(f->size) &&
           (f->size == STORE_SIZE_UNKNOWN || f->chunks_present <= f->num_chunks);
}

/* Overwrites the fixed part of a well-formed record and re-seals it. */
void meta_write_fixed(void *rec, size_t len, const store_key_t *key, const meta_fixed_t *f)
{
    put_fixed(rec, f);
    put_le32((unsigned char *)rec + 4, record_crc(rec, len, key));
}

/*
 * Decodes a record into *m, its strings in one allocation (m->string_block):
 * STORE_OK, STORE_CORRUPT, or STORE_ERROR (no memory). A hit decodes one
 * record; an allocation and a free per string were 8% of a 4 KiB hit.
 */
int meta_decode(const void *rec, size_t len, const store_key_t *key, store_meta_t *m)
{
    const unsigned char *p = rec;
    meta_fixed_t f;

    memset(m, 0, sizeof(*m));
    if (!meta_read_fixed(rec, len, key, &f))
        return STORE_CORRUPT;
    /* strings_fit (in meta_read_fixed) checked the layout: each string ends inside the record. */
    size_t start = strings_start(p, len), off = start, block_len = 0;
    for (size_t i = 0; i < META_NSTRINGS; i++) {
        uint32_t n = get_le32(p + off);
        block_len += n;
        off += 4 + (n > 0 ? n - 1 : 0);
    }
    if (block_len > 0 && (m->string_block = malloc(block_len)) == NULL)
        return STORE_ERROR;
    m->string_block_len = block_len;
    char *next = m->string_block;
    off = start;
    for (size_t i = 0; i < META_NSTRINGS; i++) {
        uint32_t n = get_le32(p + off);

        off += 4;
        if (n == 0)
            continue;
        memcpy(next, p + off, n - 1);
        next[n - 1] = '\0';
        *field(m, i) = next;
        next += n;
        off += n - 1;
    }
    m->generation = f.generation;
    m->metageneration = f.metageneration;
    m->size = f.size;
    m->fill_time = f.fill_time;
    m->last_access = f.last_access;
    m->num_chunks = f.num_chunks;
    m->chunks_present = f.chunks_present;
    m->transient = f.transient;
    return STORE_OK;
}

/* Whether s is one of the strings in meta's block rather than an allocation of its own. */
static bool in_block(const store_meta_t *meta, const char *s)
{
    uintptr_t at = (uintptr_t)s, block = (uintptr_t)meta->string_block;
    return meta->string_block != NULL && at >= block && at < block + meta->string_block_len;
}

void store_meta_free(store_meta_t *meta)
{
    if (meta == NULL)
        return;
    /* The block's bounds once, not per string: every hit frees one record. */
    uintptr_t block = (uintptr_t)meta->string_block, block_end = block + meta->string_block_len;
    for (size_t i = 0; i < META_NSTRINGS; i++) {
        uintptr_t at = (uintptr_t)*field(meta, i);
        if (at != 0 && (at < block || at >= block_end))
            free(*field(meta, i));
    }
    if (meta->string_block_owner != NULL)
        meta_block_release(meta->string_block_owner);
    else
        free(meta->string_block);
    memset(meta, 0, sizeof(*meta));
}

void store_meta_set_string(store_meta_t *meta, char **field_at, char *value)
{
    if (!in_block(meta, *field_at))
        free(*field_at);
    *field_at = value;
}

/* Whether every string of meta is in its block: true of a decoded record until a string is replaced. */
bool meta_strings_in_block(const store_meta_t *meta)
{
    for (size_t i = 0; i < META_NSTRINGS; i++)
        if (field_const(meta, i) != NULL && !in_block(meta, field_const(meta, i)))
            return false;
    return true;
}

/* *dst = *src, its strings pointing into block, a copy of src's block (meta_strings_in_block(src) holds). */
void meta_rebase(store_meta_t *dst, const store_meta_t *src, char *block)
{
    *dst = *src;
    dst->string_block = block;
    for (size_t i = 0; i < META_NSTRINGS; i++)
        if (field_const(src, i) != NULL)
            *field(dst, i) = block + (field_const(src, i) - src->string_block);
}

int store_meta_copy(store_meta_t *dst, const store_meta_t *src)
{
    *dst = *src;
    dst->string_block = NULL;
    dst->string_block_len = 0;
    dst->string_block_owner = NULL;
    int rc = STORE_OK;
    for (size_t i = 0; i < META_NSTRINGS; i++)
        if (*field(dst, i) != NULL && (*field(dst, i) = strdup(*field(dst, i))) == NULL)
            rc = STORE_ERROR; /* the rest still get their own copies or NULL, so store_meta_free is safe */
    return rc;
}
