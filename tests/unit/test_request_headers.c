/*
 * test_request_headers.c - the one pass over a read's headers finds what the
 * per-header lookups it replaced found: the first of each header, a repeated
 * X-Larder-Batch, either customer-key header, and none of the look-alikes;
 * and cache_request_parse reads preconditions, Range and Accept-Encoding from
 * it as before.
 *
 * Checked against broken scans: with each header's last value kept instead of
 * its first, 5 checks fail; with the length check dropped from the name match
 * (so "x-larder-batches" counts as a batch), 6 fail.
 */
#include "batch_use.h"
#include "cache_request.h"
#include "request_headers.h"
#include "unit.h"

static h2o_mem_pool_t pool;

static void add_token(h2o_headers_t *headers, const h2o_token_t *token, const char *value)
{
    h2o_add_header(&pool, headers, token, NULL, value, strlen(value));
}

/* As h2o stores a name it has no token for: lowercased, in the pool. */
static void add_named(h2o_headers_t *headers, const char *name, const char *value)
{
    h2o_add_header_by_str(&pool, headers, name, strlen(name), 1, NULL, value, strlen(value));
}

static bool value_is(h2o_iovec_t v, const char *want)
{
    return v.base != NULL && h2o_memis(v.base, v.len, want, strlen(want));
}

static void test_first_of_each(void)
{
    h2o_headers_t headers = {NULL};
    add_token(&headers, H2O_TOKEN_HOST, "127.0.0.1");
    add_token(&headers, H2O_TOKEN_RANGE, "bytes=0-9");
    add_token(&headers, H2O_TOKEN_RANGE, "bytes=5-6");
    add_token(&headers, H2O_TOKEN_IF_NONE_MATCH, "\"a\"");
    add_token(&headers, H2O_TOKEN_IF_NONE_MATCH, "\"b\"");
    add_token(&headers, H2O_TOKEN_IF_MATCH, "\"m\"");
    add_token(&headers, H2O_TOKEN_IF_RANGE, "\"r\"");
    add_token(&headers, H2O_TOKEN_IF_MODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT");
    add_token(&headers, H2O_TOKEN_IF_UNMODIFIED_SINCE, "Mon, 07 Nov 1994 08:49:37 GMT");
    add_token(&headers, H2O_TOKEN_ACCEPT_ENCODING, "gzip");
    add_named(&headers, "x-goog-if-generation-match", "12");
    add_named(&headers, "x-goog-if-generation-match", "13");
    add_named(&headers, "x-goog-if-metageneration-match", "3");
    add_named(&headers, "x-larder-batch", "first");
    add_named(&headers, "x-larder-batch", "second");
    request_headers_t h;
    request_headers_scan(&h, &headers);
    CHECK(value_is(h.range, "bytes=0-9"));
    CHECK(value_is(h.if_none_match, "\"a\""));
    CHECK(value_is(h.if_match, "\"m\""));
    CHECK(value_is(h.if_range, "\"r\""));
    CHECK(value_is(h.if_modified_since, "Sun, 06 Nov 1994 08:49:37 GMT"));
    CHECK(value_is(h.if_unmodified_since, "Mon, 07 Nov 1994 08:49:37 GMT"));
    CHECK(value_is(h.accept_encoding, "gzip"));
    CHECK(value_is(h.if_generation_match, "12"));
    CHECK(value_is(h.if_metageneration_match, "3"));
    CHECK(value_is(h.batch, "first"));
    CHECK(h.batch_count == 2);
    CHECK(!h.prefetch);
    CHECK(!h.encryption_key);

    batch_use_t use;
    batch_use_parse(&use, &pool, &h);
    CHECK_STR(use.id, "first");
    CHECK(use.invalid); /* two batches name no one batch */
}

static void test_flags_and_lookalikes(void)
{
    h2o_headers_t headers = {NULL};
    add_named(&headers, "x-larder-batches", "no");
    add_named(&headers, "x-larder-prefetc", "no");
    add_named(&headers, "x-goog-if-generation-match-x", "7");
    add_named(&headers, "x-goog-encryption-key-sha256", "no");
    add_named(&headers, "y-larder-batch", "no");
    request_headers_t h;
    request_headers_scan(&h, &headers);
    CHECK(h.batch.base == NULL && h.batch_count == 0);
    CHECK(!h.prefetch);
    CHECK(h.if_generation_match.base == NULL);
    CHECK(!h.encryption_key);

    add_named(&headers, "x-larder-prefetch", "");
    add_named(&headers, "x-larder-batch", "b.1");
    request_headers_scan(&h, &headers);
    CHECK(h.prefetch);
    CHECK(value_is(h.batch, "b.1") && h.batch_count == 1);
    batch_use_t use;
    batch_use_parse(&use, &pool, &h);
    CHECK_STR(use.id, "b.1");
    CHECK(!use.invalid);

    static const char *const keys[] = {"x-goog-encryption-key", "x-amz-server-side-encryption-customer-key"};
    for (size_t i = 0; i < 2; i++) {
        h2o_headers_t with_key = {NULL};
        add_named(&with_key, keys[i], "a2V5");
        request_headers_scan(&h, &with_key);
        CHECK(h.encryption_key);
    }
}

/* cache_request_parse of GET path, with the given headers. */
static cache_request_t parse(const char *path, h2o_headers_t *headers, const char **invalid)
{
    target_t t;
    target_parse(&t, &pool, path, strlen(path), H2O_STRLIT("127.0.0.1:8080"), "storage.googleapis.com");
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    req.method = h2o_iovec_init(H2O_STRLIT("GET"));
    req.headers = *headers;
    request_headers_t h;
    request_headers_scan(&h, headers);
    cache_request_t creq;
    cache_request_parse(&creq, &t, &req, &h, invalid);
    return creq;
}

static void test_parse_from_scan(void)
{
    const char *invalid;
    h2o_headers_t xml = {NULL};
    add_named(&xml, "x-goog-if-generation-match", "12");
    add_named(&xml, "x-goog-if-metageneration-match", "3");
    add_token(&xml, H2O_TOKEN_RANGE, "bytes=10-19");
    cache_request_t creq = parse("/bucket/object", &xml, &invalid);
    CHECK(invalid == NULL);
    CHECK(creq.kind == CACHE_READ_MEDIA && creq.flavour == CACHE_FLAVOUR_XML);
    CHECK(creq.if_generation_match == 12 && creq.if_metageneration_match == 3);
    CHECK(creq.range.present && creq.range.first == 10 && creq.range.last == 19);

    h2o_headers_t bad = {NULL};
    add_named(&bad, "x-goog-if-generation-match", "twelve");
    parse("/bucket/object", &bad, &invalid);
    CHECK(invalid != NULL);

    h2o_headers_t keyed = {NULL};
    add_named(&keyed, "x-goog-encryption-key", "a2V5");
    CHECK(parse("/bucket/object", &keyed, &invalid).kind == CACHE_READ_NONE);

    static const struct {
        const char *value;
        bool gzip;
    } encodings[] = {{"gzip", true},          {"identity, GZip", true}, {"deflate, gzip;q=0.5", true},
                     {"gzip;q=0", false},     {"gzip;q=0.0, br", false}, {"identity", false},
                     {"gzi", false},          {"x-gzi", false}};
    for (size_t i = 0; i < sizeof(encodings) / sizeof(encodings[0]); i++) {
        h2o_headers_t ae = {NULL};
        add_token(&ae, H2O_TOKEN_ACCEPT_ENCODING, encodings[i].value);
        creq = parse("/storage/v1/b/bucket/o/object?alt=media", &ae, &invalid);
        CHECK(creq.kind == CACHE_READ_MEDIA);
        if (creq.accepts_gzip != encodings[i].gzip)
            fprintf(stderr, "Accept-Encoding: %s\n", encodings[i].value);
        CHECK(creq.accepts_gzip == encodings[i].gzip);
    }
}

int main(void)
{
    h2o_mem_init_pool(&pool);
    test_first_of_each();
    test_flags_and_lookalikes();
    test_parse_from_scan();
    h2o_mem_clear_pool(&pool);
    UNIT_DONE();
}
