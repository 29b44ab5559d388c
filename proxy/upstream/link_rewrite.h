/*
 * link_rewrite.h - keeps clients talking to larder instead of upstream.
 *
 * GCS answers with absolute links (the resumable session's Location, and
 * selfLink/mediaLink in JSON resources, also inside batch responses). A client that followed them would
 * bypass larder, so their origin is replaced by larder's public base URL.
 */
#ifndef LARDER_LINK_REWRITE_H
#define LARDER_LINK_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * True when url's origin (scheme://host[:port]) is upstream's origin or a
 * googleapis.com host; *path_start is set to the offset of the path.
 */
bool link_is_upstream(const char *url, size_t len, const char *upstream_base, size_t *path_start);

/*
 * The base URL links should carry: the configured public URL, or else the
 * scheme and Host the request came with. Returns a malloc'd string, or NULL
 * when neither is known.
 */
char *link_public_base(const char *configured, const char *scheme, size_t scheme_len, const char *authority,
                       size_t authority_len);

/*
 * Rewrites the selfLink and mediaLink values in a JSON document. Returns a
 * malloc'd document (caller frees) and its length, or NULL when nothing was
 * rewritten or the body is not JSON; then the original is to be sent as is.
 */
char *link_rewrite_json(const char *body, size_t len, const char *upstream_base, const char *public_base,
                        size_t *out_len);

/*
 * The same for a /batch/storage/v1 response (multipart/mixed with that
 * boundary): each part that is a JSON response is rewritten and its
 * Content-Length corrected. NULL when nothing was rewritten.
 */
char *link_rewrite_batch(const char *body, size_t len, const char *boundary, size_t boundary_len,
                         const char *upstream_base, const char *public_base, size_t *out_len);

#endif
