/*
 * crc32c.c - CRC-32C. Checking a chunk on every read is on the hit path, so
 * this speed is the hit path's: x86-64 CPUs with SSE4.2 have an instruction
 * for exactly this polynomial (about 5x the table here); elsewhere slicing-by-8
 * folds eight bytes per step with eight table lookups.
 */
#include <string.h>

#include "crc32c.h"
#include "crc32c_table.h"

/* The eight bytes at p as a little-endian word, whatever the host's order or p's alignment. */
static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    crc = ~crc;
    while (len >= 8) {
        uint64_t v = load_le64(p) ^ crc;

        crc = crc32c_table[7][v & 0xff] ^ crc32c_table[6][(v >> 8) & 0xff] ^ crc32c_table[5][(v >> 16) & 0xff] ^
              crc32c_table[4][(v >> 24) & 0xff] ^ crc32c_table[3][(v >> 32) & 0xff] ^
              crc32c_table[2][(v >> 40) & 0xff] ^ crc32c_table[1][(v >> 48) & 0xff] ^ crc32c_table[0][v >> 56];
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        crc = (crc >> 8) ^ crc32c_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len-- > 0)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
    /* libgcc reads CPUID once at start-up; this is a load and a test. */
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_sse42(crc, buf, len);
#endif
    return crc32c_portable(crc, buf, len);
}
