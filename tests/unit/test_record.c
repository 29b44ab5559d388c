/*
 * test_record.c - parsed records: the views a hit replays, and the
 * per-worker cache that must never hand out a record the store no longer has.
 */
#include <stdlib.h>

#include "record.h"
#include "unit.h"

static const char *const RECORD_TEXT =
    "{\"json\":{\"etag\":\"CJjW\",\"headers\":[[\"content-type\",\"text/plain\"],[\"x-goog-generation\",\"7\"],"
    "[\"etag\",\"CJjW\"],[\"content-encoding\",\"gzip\"],[\"bogus\",1]]},"
    "\"resource\":{\"kind\":\"storage#object\",\"name\":\"a b\",\"etag\":\"CJjW\",\"size\":\"12\"},"
    "\"resource_headers\":[[\"content-type\",\"application/json; charset=UTF-8\"]]}";

static store_key_t key_of(const char *name)
{
    store_key_t key;
    store_key_make(&key, "bkt", 3, name, strlen(name));
    return key;
}

static void test_views(void)
{
    store_key_t key = key_of("a b");
    record_t *r = record_parse(&key, 7, RECORD_TEXT);
    CHECK(r != NULL);
    if (r == NULL)
        return;
    const record_view_t *json = record_media_view(r, CACHE_FLAVOUR_JSON);
    CHECK(json != NULL && record_media_view(r, CACHE_FLAVOUR_XML) == NULL);
    if (json != NULL) {
        CHECK_STR(json->etag, "CJjW");
        CHECK(json->num_headers == 4); /* the malformed pair is dropped */
        CHECK(json->headers[0].token == H2O_TOKEN_CONTENT_TYPE && json->headers[0].describes_payload);
        CHECK_STR(json->headers[1].name.base, "x-goog-generation");
        CHECK(json->headers[1].token == NULL && !json->headers[1].describes_payload);
        CHECK(json->headers[2].token == H2O_TOKEN_ETAG && !json->headers[2].describes_payload);
        CHECK(json->headers[3].describes_payload);
    }
    CHECK(record_has_resource(r));
    CHECK_STR(r->resource.etag, "CJjW");
    CHECK_STR(r->resource_text.base, "{\"kind\":\"storage#object\",\"name\":\"a b\",\"etag\":\"CJjW\",\"size\":\"12\"}");
    CHECK(r->resource_text.len == strlen(r->resource_text.base));
    record_release(r);

    CHECK(record_parse(&key, 7, NULL) == NULL);
    CHECK(record_parse(&key, 7, "not json") == NULL);
    CHECK(record_parse(&key, 7, "[1,2]") == NULL);
    r = record_parse(&key, 7, "{\"xml\":{\"etag\":\"\\\"abc\\\"\"}}"); /* a view without headers is no view */
    CHECK(r != NULL && record_media_view(r, CACHE_FLAVOUR_XML) == NULL && !record_has_resource(r));
    record_release(r);
}

static void test_add_headers(void)
{
    store_key_t key = key_of("a b");
    record_t *r = record_parse(&key, 7, RECORD_TEXT);
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    h2o_mem_init_pool(&req.pool);
    record_add_headers(&req, &r->media[CACHE_FLAVOUR_JSON], false);
    CHECK(req.res.headers.size == 4);
    CHECK(h2o_find_header(&req.res.headers, H2O_TOKEN_CONTENT_TYPE, -1) == 0);
    CHECK(h2o_find_header_by_str(&req.res.headers, H2O_STRLIT("x-goog-generation"), -1) == 1);
    memset(&req.res.headers, 0, sizeof(req.res.headers));
    record_add_headers(&req, &r->media[CACHE_FLAVOUR_JSON], true); /* a 304 */
    CHECK(req.res.headers.size == 2);
    CHECK(h2o_find_header(&req.res.headers, H2O_TOKEN_CONTENT_TYPE, -1) == -1);
    CHECK(h2o_find_header(&req.res.headers, H2O_TOKEN_CONTENT_ENCODING, -1) == -1);
    h2o_mem_clear_pool(&req.pool);
    record_release(r);
}

static void test_cache(void)
{
    static record_cache_t cache;
    store_key_t a = key_of("a"), b = key_of("b");
    record_t *first = record_cache_get(&cache, &a, 7, RECORD_TEXT);
    CHECK(first != NULL);
    record_t *again = record_cache_get(&cache, &a, 7, RECORD_TEXT);
    CHECK(again == first); /* the same text: parsed once */
    record_release(again);

    /* Any change the store made is a new parse: the text, the generation, the object. */
    char *changed = strdup(RECORD_TEXT);
    strstr(changed, "text/plain")[0] = 'T';
    record_t *other_text = record_cache_get(&cache, &a, 7, changed);
    CHECK(other_text != NULL && other_text != first);
    record_t *back = record_cache_get(&cache, &a, 7, RECORD_TEXT);
    CHECK(back != NULL && back != other_text);
    record_release(back);
    char padded[1024];
    snprintf(padded, sizeof(padded), "%s ", RECORD_TEXT); /* the cached text is a prefix of it */
    record_t *longer = record_cache_get(&cache, &a, 7, padded);
    CHECK(longer != NULL && longer != back);
    record_t *other_gen = record_cache_get(&cache, &a, 8, RECORD_TEXT);
    CHECK(other_gen != NULL && other_gen != longer);
    record_t *other_key = record_cache_get(&cache, &b, 8, RECORD_TEXT);
    CHECK(other_key != NULL && other_key != other_gen);
    CHECK(record_cache_get(&cache, &a, 8, NULL) == NULL);
    CHECK(record_cache_get(&cache, &a, 8, "{oops") == NULL);

    /* A reference outlives its eviction from the cache: a hit may still be sending it. */
    CHECK_STR(first->media[CACHE_FLAVOUR_JSON].etag, "CJjW");
    record_release(first);
    record_release(other_text);
    record_release(longer);
    record_release(other_gen);
    record_release(other_key);
    record_cache_clear(&cache);
    free(changed);
}

static void test_cache_budget(void)
{
    static record_cache_t cache;
    size_t big = 64 * 1024;
    char *text = malloc(big + 64);
    CHECK(text != NULL);
    if (text == NULL)
        return;
    int head = snprintf(text, 64, "{\"json\":{\"etag\":\"e\",\"headers\":[[\"x-goog-meta-a\",\"");
    memset(text + head, 'v', big);
    strcpy(text + head + big, "\"]]}}");
    char name[32];
    record_t *last = NULL;
    for (int i = 0; i < 200; i++) { /* 200 x 128 KiB: three times the budget */
        snprintf(name, sizeof(name), "big-%d", i);
        store_key_t key = key_of(name);
        record_release(last);
        last = record_cache_get(&cache, &key, 1, text);
        CHECK(last != NULL && cache.bytes <= RECORD_CACHE_BYTES);
    }
    store_key_t key = key_of(name);
    record_t *again = record_cache_get(&cache, &key, 1, text);
    CHECK(again == last); /* the newest entry survives the sweep that makes room for it */
    record_release(again);
    CHECK_STR(last->media[CACHE_FLAVOUR_JSON].etag, "e");
    record_release(last);

    /* One record bigger than the whole budget is kept alone, not thrown out at once. */
    size_t huge = RECORD_CACHE_BYTES;
    char *huge_text = malloc(huge + 64);
    CHECK(huge_text != NULL);
    if (huge_text != NULL) {
        head = snprintf(huge_text, 64, "{\"json\":{\"etag\":\"h\",\"headers\":[[\"x-goog-meta-a\",\"");
        memset(huge_text + head, 'v', huge);
        strcpy(huge_text + head + huge, "\"]]}}");
        store_key_t huge_key = key_of("huge");
        record_t *r = record_cache_get(&cache, &huge_key, 1, huge_text);
        CHECK(r != NULL && cache.bytes == r->footprint);
        record_t *r2 = record_cache_get(&cache, &huge_key, 1, huge_text);
        CHECK(r2 == r);
        record_release(r);
        record_release(r2);
        free(huge_text);
    }
    record_cache_clear(&cache);
    CHECK(cache.bytes == 0);
    free(text);
}

int main(void)
{
    test_views();
    test_add_headers();
    test_cache();
    test_cache_budget();
    UNIT_DONE();
}
