/*
 * verified.c - which chunks this process has already checked, so that a hot
 * chunk's checksum is computed on its first read rather than on every one.
 *
 * On big hits the CRC was a sixth of larder's CPU, and on 4 KiB hits a tenth
 * of its instructions (issue 11's profiles). A checked chunk is remembered by
 * a tag of its key, the overflow page its value starts at, and the checksum
 * and length its header holds: a chunk dropped and written again, moved, or
 * rewritten with other bytes has another tag and is checked again. What is
 * given up is damage to a value's bytes in place after its first read in this
 * process: a restart, or the slot being taken by another chunk, checks it
 * again, and store.verify_every_read restores the check on every read.
 *
 * Direct-mapped and lossy: a slot holds one tag, and a newer chunk simply
 * takes the slot. Readers on any thread load and store whole 64-bit tags, so
 * no lock is needed and a torn tag cannot be seen.
 */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

int verified_init(verified_table_t *table, size_t slots)
{
    size_t n = 1;
    while (n < slots)
        n <<= 1;
    table->slots = calloc(n, sizeof(*table->slots));
    table->mask = n - 1;
    return table->slots != NULL ? 0 : -1;
}

void verified_destroy(verified_table_t *table)
{
    free(table->slots);
    table->slots = NULL;
}

static uint64_t mix(uint64_t h, uint64_t word)
{
    h = (h ^ word) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

uint64_t verified_tag(const chunk_key_t *ck, uint64_t pgno, uint32_t crc, size_t len)
{
    uint64_t h = 0x6c8e9cf570932bd5ull;
    for (size_t at = 0; at + 8 <= CHUNK_KEY_SIZE; at += 8) {
        uint64_t word;
        memcpy(&word, ck->bytes + at, sizeof(word));
        h = mix(h, word);
    }
    uint32_t tail = 0;
    memcpy(&tail, ck->bytes + CHUNK_KEY_SIZE / 8 * 8, CHUNK_KEY_SIZE % 8);
    h = mix(h, tail);
    h = mix(h, pgno);
    h = mix(h, (uint64_t)crc << 32 | (uint32_t)len);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h | 1; /* 0 marks an empty slot */
}

bool verified_holds(const verified_table_t *table, uint64_t tag)
{
    return atomic_load_explicit(&table->slots[tag & table->mask], memory_order_relaxed) == tag;
}

void verified_note(verified_table_t *table, uint64_t tag)
{
    atomic_store_explicit(&table->slots[tag & table->mask], tag, memory_order_relaxed);
}
