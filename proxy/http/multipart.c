/*
 * multipart.c - reading multipart bodies.
 *
 * Lenient where clients differ (LF or CRLF line breaks, a quoted boundary)
 * and exact where bytes matter: a part's body ends where the line break
 * before the next delimiter starts, so an upload's media part is the
 * object's bytes and nothing else (RFC 2046 5.1.1: that break belongs to the
 * delimiter).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "multipart.h"

/* The value of the "boundary" parameter: the name is case-insensitive (RFC 2045 5.1) and starts a parameter. */
static const char *boundary_param(h2o_iovec_t type)
{
    for (size_t i = 0; i + 9 <= type.len; i++)
        if (strncasecmp(type.base + i, "boundary=", 9) == 0 &&
            (i == 0 || type.base[i - 1] == ';' || type.base[i - 1] == ' ' || type.base[i - 1] == '\t'))
            return type.base + i + 9;
    return NULL;
}

bool multipart_boundary(h2o_iovec_t type, h2o_iovec_t *boundary)
{
    if (type.base == NULL)
        return false;
    const char *p = boundary_param(type), *end = type.base + type.len;
    if (p == NULL)
        return false;
    const char *stop;
    if (p < end && (*p == '"' || *p == '\'')) { /* apitools (gsutil, gcloud) quotes it with single quotes */
        char quote = *p++;
        stop = memchr(p, quote, (size_t)(end - p));
    } else {
        for (stop = p; stop < end && *stop != ';' && *stop != ' ';)
            stop++;
    }
    if (stop == NULL || stop == p)
        return false;
    *boundary = h2o_iovec_init(p, (size_t)(stop - p));
    return true;
}

/* Splits a part into head and body at its first blank line; a part may start with it (no headers). */
static void split_part(const char *p, size_t len, multipart_part_t *part)
{
    const char *head_end = NULL, *body = NULL;
    if (len >= 2 && p[0] == '\r' && p[1] == '\n') {
        head_end = p, body = p + 2;
    } else if (len >= 1 && p[0] == '\n') {
        head_end = p, body = p + 1;
    } else {
        const char *crlf = memmem(p, len, "\r\n\r\n", 4), *lf = memmem(p, len, "\n\n", 2);
        if (crlf != NULL && (lf == NULL || crlf < lf))
            head_end = crlf, body = crlf + 4;
        else if (lf != NULL)
            head_end = lf, body = lf + 2;
    }
    part->has_body = body != NULL;
    part->head = h2o_iovec_init(p, (size_t)((head_end != NULL ? head_end : p + len) - p));
    part->body = body != NULL ? h2o_iovec_init(body, (size_t)(p + len - body)) : h2o_iovec_init(p + len, 0);
}

/* The next delimiter at or after from: "--boundary" at the start of a line (RFC 2046 5.1.1); NULL when none. */
static const char *next_delimiter(const char *body, const char *from, const char *end, const char *delim, size_t len)
{
    for (const char *p = from; p < end && (p = memmem(p, (size_t)(end - p), delim, len)) != NULL; p++)
        if (p == body || p[-1] == '\n')
            return p;
    return NULL;
}

size_t multipart_for_each(h2o_iovec_t body, h2o_iovec_t boundary, multipart_part_fn fn, void *ctx)
{
    char delim[80];
    if (body.base == NULL || boundary.len == 0 || boundary.len > 70)
        return 0;
    size_t delim_len = (size_t)snprintf(delim, sizeof(delim), "--%.*s", (int)boundary.len, boundary.base);
    const char *end = body.base + body.len;
    const char *start = next_delimiter(body.base, body.base, end, delim, delim_len);
    size_t count = 0;
    /* Each delimiter opens a part, until the closing one ("--boundary--"): what follows it is epilogue. */
    while (start != NULL && !(end - start >= (ptrdiff_t)delim_len + 2 && memcmp(start + delim_len, "--", 2) == 0)) {
        const char *p = memchr(start, '\n', (size_t)(end - start));
        if (p == NULL)
            break;
        p++;
        const char *next = next_delimiter(body.base, p, end, delim, delim_len);
        if (next == NULL)
            break;
        const char *stop = next;
        if (stop > p && stop[-1] == '\n')
            stop--;
        if (stop > p && stop[-1] == '\r')
            stop--;
        multipart_part_t part;
        split_part(p, (size_t)(stop - p), &part);
        fn(ctx, &part);
        count++;
        start = next;
    }
    return count;
}

bool multipart_header(h2o_iovec_t head, const char *name, h2o_iovec_t *value)
{
    size_t name_len = strlen(name);
    for (const char *line = head.base, *end = head.base + head.len; line != NULL && line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t n = (size_t)((eol != NULL ? eol : end) - line);
        if (n > name_len && line[name_len] == ':' && strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1, *v_end = line + n;
            while (v < v_end && (*v == ' ' || *v == '\t'))
                v++;
            while (v_end > v && (v_end[-1] == '\r' || v_end[-1] == ' ' || v_end[-1] == '\t'))
                v_end--;
            *value = h2o_iovec_init(v, (size_t)(v_end - v));
            return true;
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    return false;
}
