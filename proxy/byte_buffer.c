/*
 * byte_buffer.c - growth by doubling, from 1 KiB, so appends are amortised
 * constant time whatever the final size.
 */
#include "byte_buffer.h"

#include <stdlib.h>
#include <string.h>

int byte_buffer_append(byte_buffer_t *buf, const void *data, size_t len)
{
    if (len > buf->cap - buf->len) {
        size_t cap = buf->cap != 0 ? buf->cap : 1024;
        while (cap - buf->len < len)
            cap *= 2;
        char *base = realloc(buf->base, cap);
        if (base == NULL)
            return -1;
        buf->base = base;
        buf->cap = cap;
    }
    if (len != 0)
        memcpy(buf->base + buf->len, data, len);
    buf->len += len;
    return 0;
}

void byte_buffer_put(byte_buffer_t *buf, const void *data, size_t len)
{
    if (!buf->failed && byte_buffer_append(buf, data, len) != 0)
        buf->failed = true;
}

void byte_buffer_dispose(byte_buffer_t *buf)
{
    free(buf->base);
    *buf = (byte_buffer_t){0};
}
