/*
 * byte_buffer.h - a growable run of bytes with one owner, shared by the
 * stages that build or hold bodies and URLs.
 */
#ifndef LARDER_BYTE_BUFFER_H
#define LARDER_BYTE_BUFFER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct byte_buffer {
    char *base;
    size_t len;
    size_t cap;
    bool failed; /* byte_buffer_put ran out of memory: the contents are incomplete */
} byte_buffer_t;

/* Appends len bytes; -1 (and nothing appended) when memory runs out. */
int byte_buffer_append(byte_buffer_t *buf, const void *data, size_t len);
/* Appends, or marks the buffer failed and appends nothing more: build a whole text, then check once. */
void byte_buffer_put(byte_buffer_t *buf, const void *data, size_t len);
void byte_buffer_dispose(byte_buffer_t *buf);

#endif
