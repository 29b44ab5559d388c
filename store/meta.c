/*
 * meta.c - an object's metadata record: encoding, checking and decoding.
 *
 * Binary rather than JSON because store_meta_get is on the hit path: decoding
 * is a checksum and one copy per string. Layout (integers little-endian):
 *
 *   0   magic "LDM1"
 *   4   crc32c of the object's key, then of everything from offset 8 on
 *   8   generation, metageneration, size, fill_time, last_access, access_seq
 *       (8 bytes each), num_chunks, chunks_present (4 each), chunk_bytes (8);
 *       size is STORE_SIZE_UNKNOWN and num_chunks 0 while a fill of unknown
 *       length runs
 *   72  the strings of store_meta_t in meta_strings order, each a 4-byte
 *       length plus one (0 for NULL) followed by that many bytes, no NUL
 *
 * The fixed part comes first so the writer can update counts and recency by
 * rewriting 64 bytes and the checksum, without decoding the strings. The key
 * is in the checksum so that a record under the wrong key fails it.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "store_internal.h"

#define META_MAGIC 0x314d444cu /* "LDM1" */
#define META_FIXED_END 72

/* Every string field of store_meta_t, in record order. Appending is a format change: bump the magic. */
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

/* Writes the fixed part; the callers then recompute the checksum. */
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

/* Checks magic, checksum and string layout, and reads the fixed part; false if the record is damaged. */
bool meta_read_fixed(const void *rec, size_t len, const store_key_t *key, meta_fixed_t *f)
{
    const unsigned char *p = rec;
    size_t off = META_FIXED_END, i;

    if (len < META_FIXED_END || get_le32(p) != META_MAGIC || get_le32(p + 4) != record_crc(p, len, key))
        return false;
    for (i = 0; i < META_NSTRINGS; i++) {
        uint32_t n;

        if (len - off < 4)
            return false;
        n = get_le32(p + off);
        off += 4;
        if (n > 0 && n - 1 > len - off)
            return false;
        off += n > 0 ? n - 1 : 0;
    }
    if (off != len)
        return false;
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

/* Decodes a record into *m, each string malloc'd: STORE_OK, STORE_CORRUPT, or STORE_ERROR (no memory). */
int meta_decode(const void *rec, size_t len, const store_key_t *key, store_meta_t *m)
{
    const unsigned char *p = rec;
    meta_fixed_t f;
    size_t off = META_FIXED_END, i;

    memset(m, 0, sizeof(*m));
    if (!meta_read_fixed(rec, len, key, &f))
        return STORE_CORRUPT;
    for (i = 0; i < META_NSTRINGS; i++) {
        uint32_t n = get_le32(p + off);

        off += 4;
        if (n == 0)
            continue;
        *field(m, i) = malloc(n);
        if (*field(m, i) == NULL) {
            store_meta_free(m);
            return STORE_ERROR;
        }
        memcpy(*field(m, i), p + off, n - 1);
        (*field(m, i))[n - 1] = '\0';
        off += n - 1;
    }
    m->generation = f.generation;
    m->metageneration = f.metageneration;
    m->size = f.size;
    m->fill_time = f.fill_time;
    m->last_access = f.last_access;
    m->num_chunks = f.num_chunks;
    m->chunks_present = f.chunks_present;
    return STORE_OK;
}

void store_meta_free(store_meta_t *meta)
{
    size_t i;

    if (meta == NULL)
        return;
    for (i = 0; i < META_NSTRINGS; i++)
        free(*field(meta, i));
    memset(meta, 0, sizeof(*meta));
}
