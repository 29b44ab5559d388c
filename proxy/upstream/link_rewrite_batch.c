/*
 * link_rewrite_batch.c - upstream links inside a /batch/storage/v1 response.
 *
 * A batch response is multipart/mixed; each part is a whole HTTP response
 * (status line, headers, body). The JSON bodies among them carry selfLink and
 * mediaLink like any other JSON response, so they are rewritten the same way,
 * and the part's own Content-Length is corrected to the new body's length.
 * Anything that does not parse as such a part is copied unchanged: a client
 * is better served by an upstream link than by a mangled batch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "byte_buffer.h"
#include "link_rewrite.h"


static const char *find(const char *p, const char *end, const char *needle, size_t needle_len)
{
    return end - p >= (ptrdiff_t)needle_len ? memmem(p, (size_t)(end - p), needle, needle_len) : NULL;
}

static bool header_is(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

static bool head_says_json(const char *head, const char *head_end)
{
    for (const char *line = head; line < head_end;) {
        const char *eol = find(line, head_end, "\r\n", 2);
        size_t len = (size_t)((eol != NULL ? eol : head_end) - line);
        if (header_is(line, len, "content-type")) {
            const char *v = line + 13;
            while (v < line + len && *v == ' ')
                v++;
            return (size_t)(line + len - v) >= 16 && strncasecmp(v, "application/json", 16) == 0;
        }
        line += len + 2;
    }
    return false;
}

/* The inner head with Content-Length set to body_len (added if it was absent). */
static void put_head(byte_buffer_t *out, const char *head, const char *head_end, size_t body_len)
{
    char length[48];
    int n = snprintf(length, sizeof(length), "Content-Length: %zu\r\n", body_len);
    for (const char *line = head; line < head_end;) {
        const char *eol = find(line, head_end, "\r\n", 2);
        size_t len = (size_t)((eol != NULL ? eol : head_end) - line);
        if (!header_is(line, len, "content-length")) {
            byte_buffer_put(out, line, len);
            byte_buffer_put(out, "\r\n", 2);
        }
        line += len + 2;
    }
    byte_buffer_put(out, length, (size_t)n);
}

/*
 * One part: outer headers, a blank line, the inner response. Returns true
 * when it wrote a rewritten part; false leaves the caller to copy it as is.
 */
static bool rewrite_part(byte_buffer_t *out, const char *part, const char *end, const char *upstream_base,
                         const char *public_base)
{
    const char *outer_end = find(part, end, "\r\n\r\n", 4);
    const char *inner = outer_end != NULL ? outer_end + 4 : NULL;
    const char *inner_end = inner != NULL ? find(inner, end, "\r\n\r\n", 4) : NULL;
    if (inner_end == NULL || !head_says_json(inner, inner_end + 2))
        return false;
    const char *body = inner_end + 4;
    size_t len;
    char *rewritten = link_rewrite_json(body, (size_t)(end - body), upstream_base, public_base, &len);
    if (rewritten == NULL)
        return false;
    byte_buffer_put(out, part, (size_t)(inner - part));
    put_head(out, inner, inner_end + 2, len);
    byte_buffer_put(out, "\r\n", 2);
    byte_buffer_put(out, rewritten, len);
    free(rewritten);
    return true;
}

char *link_rewrite_batch(const char *body, size_t len, const char *boundary, size_t boundary_len,
                         const char *upstream_base, const char *public_base, size_t *out_len)
{
    char delimiter[80];
    if (boundary_len == 0 || boundary_len > sizeof(delimiter) - 4)
        return NULL; /* RFC 2046 caps boundaries at 70 characters */
    size_t delimiter_len = (size_t)snprintf(delimiter, sizeof(delimiter), "\r\n--%.*s", (int)boundary_len, boundary);
    const char *end = body + len;
    /* dash: where a "--boundary" line starts. Only the first may open the body without a CRLF before it. */
    const char *dash = len >= delimiter_len - 2 && memcmp(body, delimiter + 2, delimiter_len - 2) == 0 ? body : NULL;
    if (dash == NULL) {
        const char *found = find(body, end, delimiter, delimiter_len);
        if (found == NULL)
            return NULL;
        dash = found + 2;
    }
    byte_buffer_t out = {0};
    bool changed = false;
    const char *copied = body;
    for (;;) {
        const char *line_end = find(dash + delimiter_len - 2, end, "\r\n", 2);
        if (line_end == NULL)
            break;
        const char *part = line_end + 2, *next = find(part, end, delimiter, delimiter_len);
        if (next == NULL)
            break; /* the closing delimiter, or a truncated part: the rest goes as it came */
        byte_buffer_put(&out, copied, (size_t)(part - copied));
        if (rewrite_part(&out, part, next, upstream_base, public_base))
            changed = true;
        else
            byte_buffer_put(&out, part, (size_t)(next - part));
        copied = next;
        dash = next + 2;
    }
    byte_buffer_put(&out, copied, (size_t)(end - copied));
    byte_buffer_put(&out, "", 1); /* a terminator, as link_rewrite_json's result has */
    if (!changed || out.failed) {
        byte_buffer_dispose(&out);
        return NULL;
    }
    *out_len = out.len - 1;
    return out.base;
}
