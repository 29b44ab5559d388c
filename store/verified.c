/*
 * verified.c - which chunks this process has checked lately, so that a hot
 * chunk's checksum is computed once in a while rather than on every read.
 *
 * On big hits the CRC was a sixth of larder's CPU, and on 4 KiB hits a tenth
 * of its instructions (issue 11's profiles). A checked chunk is remembered by
 * a tag of its key, the overflow page its value starts at, and the checksum
 * and length its header holds, with the time of the check: a chunk dropped
 * and written again, moved, or rewritten with other bytes has another tag
 * and is checked again, and so is any chunk whose last check is
 * store.verify_interval old. What is given up: damage to a value's bytes in
 * place (the disk, or a page read back from it after the page cache let it
 * go) is found by the first read after the interval, rather than the first
 * read after the damage. A restart checks everything again, and an interval
 * of 0 checks every read.
 *
 * Direct-mapped and lossy: a slot holds one tag, and a newer chunk simply
 * takes the slot. A slot is one 64-bit word, the tag's top 44 bits and the
 * check's time in its low 20 (seconds, wrapping every 12 days: intervals are
 * at most 7), so readers on any thread load and store it whole, with no lock,
 * and never see a tag with another's time.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#define TIME_BITS 20
#define TIME_MASK ((UINT64_C(1) << TIME_BITS) - 1)

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
    return h | UINT64_C(1) << TIME_BITS; /* an empty slot (0) never matches */
}

uint32_t verified_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)ts.tv_sec;
}

bool verified_holds(const verified_table_t *table, uint64_t tag, uint32_t now, unsigned interval_s)
{
    uint64_t slot = atomic_load_explicit(&table->slots[tag & table->mask], memory_order_relaxed);
    return slot >> TIME_BITS == tag >> TIME_BITS && ((now - slot) & TIME_MASK) < interval_s;
}

void verified_note(verified_table_t *table, uint64_t tag, uint32_t now)
{
    atomic_store_explicit(&table->slots[tag & table->mask], (tag & ~TIME_MASK) | (now & TIME_MASK),
                          memory_order_relaxed);
}
