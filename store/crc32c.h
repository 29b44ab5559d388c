/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum GCS reports in x-goog-hash and
 * the one every stored chunk and metadata record carries.
 */
#ifndef LARDER_STORE_CRC32C_H
#define LARDER_STORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Extends crc (0 to start) over len bytes: crc32c(crc32c(0, a), b) equals the
 * CRC of a followed by b. crc32c(0, "123456789", 9) == 0xe3069283.
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
/* The table-driven implementation, used where the CPU has no CRC32C instruction (and by tests to cross-check). */
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len);

#endif
