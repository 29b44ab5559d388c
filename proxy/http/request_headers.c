/*
 * request_headers.c - finds the headers a read acts on in one pass (see
 * request_headers.h).
 *
 * h2o keeps a known header's name as a pointer to its token, so those are
 * found by comparing pointers. Other names arrive lowercased (h2o lowers
 * HTTP/1 names, and HTTP/2 forbids capitals), and are compared by length
 * first, which rules most of them out without reading a byte.
 */
#include "request_headers.h"

#include <stddef.h>
#include <string.h>

static void keep_first(h2o_iovec_t *field, h2o_iovec_t value)
{
    if (field->base == NULL)
        *field = value;
}

/* The known headers kept, each by its token and the field it goes to. */
static const struct {
    const h2o_token_t *token;
    size_t field;
} token_fields[] = {
    {H2O_TOKEN_RANGE, offsetof(request_headers_t, range)},
    {H2O_TOKEN_IF_NONE_MATCH, offsetof(request_headers_t, if_none_match)},
    {H2O_TOKEN_IF_MATCH, offsetof(request_headers_t, if_match)},
    {H2O_TOKEN_IF_RANGE, offsetof(request_headers_t, if_range)},
    {H2O_TOKEN_IF_MODIFIED_SINCE, offsetof(request_headers_t, if_modified_since)},
    {H2O_TOKEN_IF_UNMODIFIED_SINCE, offsetof(request_headers_t, if_unmodified_since)},
    {H2O_TOKEN_ACCEPT_ENCODING, offsetof(request_headers_t, accept_encoding)},
};

static void note_token(request_headers_t *out, const h2o_iovec_t *name, h2o_iovec_t value)
{
    for (size_t i = 0; i < sizeof(token_fields) / sizeof(token_fields[0]); i++)
        if (name == &token_fields[i].token->buf) {
            keep_first((h2o_iovec_t *)((char *)out + token_fields[i].field), value);
            return;
        }
}

static bool named(const h2o_iovec_t *name, const char *want, size_t want_len)
{
    return name->len == want_len && memcmp(name->base, want, want_len) == 0;
}

static void note_other(request_headers_t *out, const h2o_iovec_t *name, h2o_iovec_t value)
{
    if (name->len < sizeof("x-larder-batch") - 1 || name->base[0] != 'x' || name->base[1] != '-')
        return;
    if (named(name, H2O_STRLIT("x-larder-batch"))) {
        keep_first(&out->batch, value);
        out->batch_count++;
    } else if (named(name, H2O_STRLIT("x-larder-prefetch"))) {
        out->prefetch = true;
    } else if (named(name, H2O_STRLIT("x-goog-if-generation-match"))) {
        keep_first(&out->if_generation_match, value);
    } else if (named(name, H2O_STRLIT("x-goog-if-metageneration-match"))) {
        keep_first(&out->if_metageneration_match, value);
    } else if (named(name, H2O_STRLIT("x-goog-encryption-key")) ||
               named(name, H2O_STRLIT("x-amz-server-side-encryption-customer-key"))) {
        out->encryption_key = true;
    }
}

void request_headers_scan(request_headers_t *out, const h2o_headers_t *headers)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < headers->size; i++) {
        const h2o_header_t *h = &headers->entries[i];
        if (h2o_iovec_is_token(h->name))
            note_token(out, h->name, h->value);
        else
            note_other(out, h->name, h->value);
    }
}
