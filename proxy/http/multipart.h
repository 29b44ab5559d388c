/*
 * multipart.h - reading multipart bodies (multipart.c): an upload's
 * metadata and media parts, a batch's requests and responses.
 */
#ifndef LARDER_MULTIPART_H
#define LARDER_MULTIPART_H

#include <h2o.h>
#include <stdbool.h>

/* One part: its head (header lines) and its body, exactly (the line break before the next delimiter excluded). */
typedef struct multipart_part {
    h2o_iovec_t head;
    h2o_iovec_t body;
    bool has_body; /* a blank line ended the head */
} multipart_part_t;

typedef void (*multipart_part_fn)(void *ctx, const multipart_part_t *part);

/* The boundary parameter of a multipart Content-Type, unquoted; false when there is none. */
bool multipart_boundary(h2o_iovec_t content_type, h2o_iovec_t *boundary);
/* Calls fn for each part between "--boundary" lines (CRLF or LF framed), in order; returns how many. */
size_t multipart_for_each(h2o_iovec_t body, h2o_iovec_t boundary, multipart_part_fn fn, void *ctx);
/* The value of a header in a head (case-insensitive name, trimmed value); false when absent. */
bool multipart_header(h2o_iovec_t head, const char *name, h2o_iovec_t *value);

#endif
