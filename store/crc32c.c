/*
 * crc32c.c - CRC-32C. Checking a chunk on every read is on the hit path, so
 * this speed is the hit path's: x86-64 CPUs with SSE4.2 have an instruction
 * for exactly this polynomial; elsewhere slicing-by-8 folds eight bytes per
 * step with eight table lookups.
 *
 * The instruction takes three cycles, but a new one can start every cycle, so
 * one chain of them leaves it idle two cycles in three. Long buffers therefore
 * go in rounds of three consecutive blocks, run as three independent chains in
 * one loop, and the three CRCs are joined by carrying the earlier ones over the
 * later blocks, as in Intel's "Fast CRC Computation for iSCSI Polynomial Using
 * CRC32 Instruction": nearly 3x one chain, some 14x the table. Carrying a CRC
 * over a fixed length is a linear map of its 32 bits, worked out once, so a
 * join costs tens of cycles against a round's thousands.
 */
#include <pthread.h>
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
#define CRC32C_POLY 0x82f63b78u /* reflected, as the state is: bit 31 is x^0, bit 0 is x^31 */

/*
 * Block lengths, longest first, each a whole number of 8-byte steps: the long
 * one makes joins rare; the short one still gives three chains to mid-sized
 * buffers and to what the long rounds leave over.
 */
static const size_t block_lens[] = {8192, 512};
#define BLOCK_LENS (sizeof(block_lens) / sizeof(block_lens[0]))

/* carry_cols[k][i]: the state with only bit i set, carried over block_lens[k] zero bytes. */
static uint32_t carry_cols[BLOCK_LENS][32];
static pthread_once_t carry_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2"))) static void carry_init(void)
{
    for (size_t k = 0; k < BLOCK_LENS; k++) {
        uint64_t v = 0x80000000u; /* the polynomial 1, which len zero bytes turn into x^(8 len) */
        for (size_t n = 0; n < block_lens[k]; n += 8)
            v = __builtin_ia32_crc32di(v, 0);
        /* Each bit further down is one more factor of x. */
        for (int i = 31; i >= 0; i--) {
            carry_cols[k][i] = (uint32_t)v;
            v = (v >> 1) ^ (CRC32C_POLY & (0 - (v & 1)));
        }
    }
}

/* The map is linear, so a state carries as the XOR of its bits' columns; masks, not branches, as the bits are data. */
static uint32_t carry(const uint32_t cols[32], uint32_t c)
{
    uint32_t r = 0;

    for (int i = 0; i < 32; i++)
        r ^= cols[i] & (0u - ((c >> i) & 1));
    return r;
}

/*
 * Only the first chain starts from the running state; the other two start from
 * zero so they need not wait for it. Linearity makes that sound:
 * crc(s, X || Y) = carry(crc(s, X), over |Y|) ^ crc(0, Y), and as the blocks
 * are equal, carrying over two of them is carrying over one twice.
 */
__attribute__((target("sse4.2"))) static uint64_t crc_round(uint64_t a, const unsigned char *p, size_t len,
                                                            const uint32_t cols[32])
{
    uint64_t b = 0, c = 0;

    for (size_t i = 0; i < len; i += 8) {
        a = __builtin_ia32_crc32di(a, load_le64(p + i));
        b = __builtin_ia32_crc32di(b, load_le64(p + len + i));
        c = __builtin_ia32_crc32di(c, load_le64(p + 2 * len + i));
    }
    return carry(cols, carry(cols, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t c = ~crc;

    if (len >= 3 * block_lens[BLOCK_LENS - 1]) {
        pthread_once(&carry_once, carry_init);
        for (size_t k = 0; k < BLOCK_LENS; k++)
            for (size_t round = 3 * block_lens[k]; len >= round; p += round, len -= round)
                c = crc_round(c, p, block_lens[k], carry_cols[k]);
    }
    while (len >= 8) {
        c = __builtin_ia32_crc32di(c, load_le64(p));
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
