/*
 * test_crc32c.c - the fast CRC-32C against the table and the definition. The
 * instruction path runs three chains and joins them, so the lengths that
 * matter are those around the edges of its rounds, where a wrong join or a
 * miscounted block shows; each is tried at every misalignment and continued
 * from a nonzero CRC, as are a whole chunk, several MiB, and split calls.
 */
#include <stdbool.h>

#include "crc32c.h"
#include "store.h"
#include "unit.h"

/* crc32c.c's rounds: three blocks of 8 KiB while they fit, then three of 512 bytes. */
#define LONG_ROUND (3 * 8192)
#define SHORT_ROUND (3 * 512)
#define NOISE_LEN ((size_t)4 * 1024 * 1024 + 64)

static unsigned char *noise;

static bool make_noise(void)
{
    uint64_t x = 0x9e3779b97f4a7c15u;

    noise = malloc(NOISE_LEN);
    if (noise == NULL)
        return false;
    for (size_t i = 0; i < NOISE_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise[i] = (unsigned char)(x >> 32);
    }
    return true;
}

/* Whether crc32c matches the table over len bytes at each misalignment, starting from 0 and from another CRC. */
static bool agrees(size_t len)
{
    uint32_t start = 0x9e3779b9u * (uint32_t)(len + 1);

    for (size_t align = 0; align < 8; align++) {
        const unsigned char *p = noise + align;
        if (crc32c(0, p, len) != crc32c_portable(0, p, len) ||
            crc32c(start, p, len) != crc32c_portable(start, p, len)) {
            fprintf(stderr, "crc32c differs from the table: length %zu, misalignment %zu\n", len, align);
            return false;
        }
    }
    return true;
}

/* Bit by bit from the polynomial, sharing nothing with either implementation. */
static uint32_t crc32c_bitwise(const unsigned char *p, size_t len)
{
    uint32_t c = 0xffffffffu;

    while (len-- > 0) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
    }
    return ~c;
}

static void test_known_values(void)
{
    unsigned char ones[32], ramp[32];

    memset(ones, 0xff, sizeof(ones));
    for (int i = 0; i < 32; i++)
        ramp[i] = (unsigned char)i;
    CHECK(crc32c(0, "123456789", 9) == 0xe3069283u);
    CHECK(crc32c_portable(0, "123456789", 9) == 0xe3069283u);
    CHECK(crc32c(0, ones, 32) == 0x62a8ab43u); /* RFC 3720 B.4 */
    CHECK(crc32c(0, ramp, 32) == 0x46dd794eu);
    CHECK(crc32c(0, noise, STORE_CHUNK_SIZE) == crc32c_bitwise(noise, STORE_CHUNK_SIZE));
}

static void test_lengths(void)
{
    bool ok = true;

    for (size_t len = 0; len <= 100; len++)
        ok &= agrees(len);
    /* Every mix of long and short rounds a tail can leave, each edge approached and passed by up to a word. */
    for (size_t longs = 0; longs <= 2; longs++)
        for (size_t shorts = longs == 0; shorts <= LONG_ROUND / SHORT_ROUND; shorts++) {
            size_t edge = longs * LONG_ROUND + shorts * SHORT_ROUND;
            for (size_t len = edge - 9; len <= edge + 9; len++)
                ok &= agrees(len);
        }
    ok &= agrees(STORE_CHUNK_SIZE);
    ok &= agrees(3 * 1024 * 1024 + 5);
    ok &= agrees(NOISE_LEN - 8);
    CHECK(ok);
}

/* One call and the same bytes in two or three calls, split anywhere, including inside a round. */
static void test_chaining(void)
{
    static const size_t splits[] = {0, 1, 7, 8, 9, 100, SHORT_ROUND - 1, SHORT_ROUND, SHORT_ROUND + 3,
                                    LONG_ROUND - 8, LONG_ROUND, LONG_ROUND + 1, 5 * LONG_ROUND + 7 * SHORT_ROUND + 5,
                                    STORE_CHUNK_SIZE};
    const size_t total = 2 * STORE_CHUNK_SIZE + 11;
    const uint32_t whole = crc32c(0, noise, total);
    int bad = 0;

    CHECK(whole == crc32c_portable(0, noise, total));
    for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
        size_t a = splits[i], b = total - a;
        bad += crc32c(crc32c(0, noise, a), noise + a, b) != whole;
        bad += crc32c(crc32c(crc32c(0, noise, a), noise + a, b / 2), noise + a + b / 2, b - b / 2) != whole;
    }
    CHECK(bad == 0);
}

int main(void)
{
    CHECK(make_noise());
    if (noise == NULL)
        UNIT_DONE();
    test_known_values();
    test_lengths();
    test_chaining();
    free(noise);
    UNIT_DONE();
}
