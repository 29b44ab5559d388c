/*
 * test_upload_entry.c - the entry a write makes: what upstream's answer (a
 * JSON resource, or an XML answer's head) and the request say the new object
 * is, as store metadata and a record whose views replay the headers GCS
 * media responses carry.
 */
#include <stdlib.h>

#include "conf_test.h"
#include "record.h"
#include "state.h"
#include "unit.h"
#include "upload_entry.h"

/* "hello world": its MD5 (base64 and hex) and CRC32C (base64), as GCS reports them. */
#define HELLO_MD5 "XrY7u+Ae7tCTyyK7j1rNww=="
#define HELLO_MD5_HEX "5eb63bbbe01eeed093cb22bb8f5acdc3"
#define HELLO_CRC32C "yZRlqg=="
#define GENERATION 1795785616431522LL
#define GENERATION_S "1795785616431522"
/* The JSON API's etag of that generation at metageneration 1 (python3: base64 of 08 a2 b3 8a de 9e a8 98 03 10 01). */
#define GENERATION_ETAG "CKKzit6eqJgDEAE="

static const char *const RESOURCE_TEXT =
    "{\"kind\":\"storage#object\",\"id\":\"bkt/dir/hello.txt/" GENERATION_S "\","
    "\"selfLink\":\"https://www.googleapis.com/storage/v1/b/bkt/o/dir%2Fhello.txt\","
    "\"mediaLink\":\"https://storage.googleapis.com/download/storage/v1/b/bkt/o/dir%2Fhello.txt?generation="
    GENERATION_S "&alt=media\","
    "\"name\":\"dir/hello.txt\",\"bucket\":\"bkt\",\"generation\":\"" GENERATION_S "\",\"metageneration\":\"1\","
    "\"contentType\":\"text/plain\",\"storageClass\":\"STANDARD\",\"size\":\"11\","
    "\"md5Hash\":\"" HELLO_MD5 "\",\"crc32c\":\"" HELLO_CRC32C "\",\"etag\":\"" GENERATION_ETAG "\","
    "\"timeCreated\":\"2026-11-27T13:20:14.123Z\",\"updated\":\"2026-11-27T13:20:14.123Z\","
    "\"timeStorageClassUpdated\":\"2026-11-27T13:20:14.123Z\","
    "\"metadata\":{\"color\":\"blue\",\"team\":\"data\"}}";

static conf_t conf;
static cache_t cache;

static void cache_init(void)
{
    CHECK(conf_test_load(&conf, NULL, NO_ARGS, NULL, NULL) == 0); /* the defaults */
    memset(&cache, 0, sizeof(cache));
    cache.conf = &conf;
}

static json_t *load_json(const char *text)
{
    json_error_t error;
    json_t *v = json_loads(text, 0, &error);
    if (v == NULL)
        fprintf(stderr, "bad test JSON: %s\n", error.text);
    CHECK(v != NULL);
    return v;
}

/* --- reading a record --- */

/* The record's view for "json" or "xml"; NULL when absent. */
static json_t *view_of(json_t *record, const char *flavour)
{
    return json_object_get(record, flavour);
}

/* How many times name occurs in a view's headers; *value is the first one's value. */
static int header_count(json_t *view, const char *name, const char **value)
{
    size_t i;
    json_t *pair;
    int n = 0;
    if (value != NULL)
        *value = NULL;
    json_array_foreach(json_object_get(view, "headers"), i, pair)
    {
        const char *k = json_string_value(json_array_get(pair, 0));
        CHECK(json_array_size(pair) == 2 && k != NULL && json_is_string(json_array_get(pair, 1)));
        if (k != NULL && strcmp(k, name) == 0) {
            if (n == 0 && value != NULL)
                *value = json_string_value(json_array_get(pair, 1));
            n++;
        }
    }
    return n;
}

/* The value of a view's one header called name; NULL when absent (or repeated, which is checked). */
static const char *header(json_t *view, const char *name)
{
    const char *value;
    int n = header_count(view, name, &value);
    CHECK(n <= 1);
    return n == 1 ? value : NULL;
}

/* How many x-goog-meta-* headers a view carries. */
static int meta_headers(json_t *view)
{
    size_t i;
    json_t *pair;
    int n = 0;
    json_array_foreach(json_object_get(view, "headers"), i, pair)
    {
        const char *k = json_string_value(json_array_get(pair, 0));
        n += k != NULL && strncmp(k, "x-goog-meta-", 12) == 0;
    }
    return n;
}

/* Parses the record text the way hits do; both must agree on the views. */
static record_t *parse_record(const store_meta_t *meta)
{
    store_key_t key;
    store_key_make(&key, meta->bucket, strlen(meta->bucket), meta->name, strlen(meta->name));
    record_t *r = record_parse(&key, meta->generation, meta->resource_json);
    CHECK(r != NULL);
    return r;
}

/* --- the JSON etag, computed here independently: base64 of protobuf {1: generation, 2: metageneration} --- */

static size_t varint(unsigned char *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (unsigned char)(0x80 | (v & 0x7f));
        v >>= 7;
    }
    out[n++] = (unsigned char)v;
    return n;
}

static void base64(const unsigned char *in, size_t len, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
}

static void expected_json_etag(int64_t generation, int64_t metageneration, char out[64])
{
    unsigned char raw[32];
    size_t n = 0;
    raw[n++] = 0x08; /* field 1, varint */
    n += varint(raw + n, (uint64_t)generation);
    raw[n++] = 0x10; /* field 2, varint */
    n += varint(raw + n, (uint64_t)metageneration);
    base64(raw, n, out);
}

static void test_expected_etag_helper(void)
{
    char etag[64];
    expected_json_etag(GENERATION, 1, etag);
    CHECK_STR(etag, GENERATION_ETAG); /* the value python3 gives */
    expected_json_etag(7, 3, etag);
    CHECK_STR(etag, "CAcQAw==");
}

/* --- refusals --- */

static void facts_ok(upload_facts_t *f)
{
    upload_facts_init(f, NULL, NULL, "");
    f->bucket = "bkt";
    f->name = "a";
    f->generation = 7;
    f->size = 11;
    f->crc32c = HELLO_CRC32C;
}

static bool untouched(const store_meta_t *meta)
{
    static const store_meta_t zero;
    return memcmp(meta, &zero, sizeof(zero)) == 0;
}

static void expect_refused(const upload_facts_t *f, const char *fragment)
{
    store_meta_t meta;
    memset(&meta, 0, sizeof(meta));
    const char *why = upload_entry_make(&cache, f, &meta);
    CHECK(why != NULL);
    if (why != NULL && strstr(why, fragment) == NULL)
        fprintf(stderr, "  refused for \"%s\", wanted \"%s\"\n", why, fragment);
    CHECK(why != NULL && strstr(why, fragment) != NULL);
    CHECK(untouched(&meta)); /* nothing allocated: under ASan a leak would show too */
    store_meta_free(&meta);
}

static void test_refusals(void)
{
    upload_facts_t f;
    uint64_t max = conf.cache.max_object_size;

    upload_facts_init(&f, NULL, NULL, "");
    CHECK(f.generation == -1 && f.metageneration == -1 && f.size == -1 && f.component_count == -1);
    CHECK(f.crc32c == NULL && f.resource == NULL && f.owner != NULL && f.owner[0] == '\0');

    facts_ok(&f);
    f.generation = -1;
    expect_refused(&f, "generation");
    f.generation = 0;
    expect_refused(&f, "generation");
    facts_ok(&f);
    f.size = -1;
    expect_refused(&f, "generation");
    facts_ok(&f);
    f.bucket = NULL;
    expect_refused(&f, "generation");
    facts_ok(&f);
    f.name = NULL;
    expect_refused(&f, "generation");

    facts_ok(&f);
    f.crc32c = NULL;
    f.md5 = NULL; /* nothing to check the bytes with */
    expect_refused(&f, "crc32c or md5");
    facts_ok(&f);
    f.crc32c = NULL;
    f.md5 = HELLO_MD5; /* a fields= selection may leave out crc32c: the MD5 checks the bytes then */
    store_meta_t md5_only;
    CHECK(upload_entry_make(&cache, &f, &md5_only) == NULL);
    CHECK(md5_only.crc32c == NULL && md5_only.md5 != NULL && strcmp(md5_only.md5, HELLO_MD5) == 0);
    CHECK(md5_only.resource_json != NULL && strstr(md5_only.resource_json, "\"md5=" HELLO_MD5 "\"") != NULL);
    store_meta_free(&md5_only);

    conf.cache.max_object_size = 1000;
    facts_ok(&f);
    f.size = 1001;
    expect_refused(&f, "max_object_size");
    /* at the limit it is cached */
    f.size = 1000;
    store_meta_t meta;
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    CHECK(meta.size == 1000 && meta.resource_json != NULL);
    store_meta_free(&meta);
    /* an empty object is an object */
    f.size = 0;
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    CHECK(meta.size == 0);
    store_meta_free(&meta);
    conf.cache.max_object_size = max;
}

/* --- from a JSON resource --- */

static void test_from_resource(void)
{
    json_t *resource = load_json(RESOURCE_TEXT);
    if (resource == NULL)
        return;
    upload_facts_t f;
    upload_facts_init(&f, NULL, NULL, "");
    upload_facts_from_resource(&f, resource);
    f.owner = "alice@example.com";

    CHECK_STR(f.bucket, "bkt");
    CHECK_STR(f.name, "dir/hello.txt");
    CHECK(f.generation == GENERATION && f.metageneration == 1 && f.size == 11 && f.component_count == -1);
    CHECK_STR(f.json_etag, GENERATION_ETAG);
    CHECK(f.xml_etag == NULL && f.resource == NULL);
    CHECK(json_is_object(f.metadata) && json_object_size(f.metadata) == 2);

    store_meta_t meta;
    const char *why = upload_entry_make(&cache, &f, &meta);
    CHECK(why == NULL);
    if (why != NULL) {
        fprintf(stderr, "  refused: %s\n", why);
        json_decref(resource);
        return;
    }
    CHECK_STR(meta.bucket, "bkt");
    CHECK_STR(meta.name, "dir/hello.txt");
    CHECK(meta.generation == GENERATION && meta.metageneration == 1 && meta.size == 11);
    CHECK_STR(meta.etag, GENERATION_ETAG);
    CHECK_STR(meta.content_type, "text/plain");
    CHECK(meta.content_encoding == NULL && meta.cache_control == NULL && meta.content_disposition == NULL &&
          meta.content_language == NULL);
    CHECK_STR(meta.crc32c, HELLO_CRC32C);
    CHECK_STR(meta.md5, HELLO_MD5);
    CHECK_STR(meta.last_modified, "Fri, 27 Nov 2026 13:20:14 GMT");
    CHECK_STR(meta.owner, "alice@example.com");
    CHECK(meta.fill_time > 1600000000000LL); /* unix milliseconds */

    json_t *record = load_json(meta.resource_json);
    json_t *json = view_of(record, "json"), *xml = view_of(record, "xml");
    CHECK(json != NULL && xml != NULL);
    /* the resource was not given: nothing for metadata GETs, and nothing says it is public */
    CHECK(json_object_get(record, "resource") == NULL && json_object_get(record, "resource_headers") == NULL);
    CHECK(json_object_get(record, "public") == NULL);

    CHECK_STR(json_string_value(json_object_get(json, "etag")), GENERATION_ETAG);
    CHECK_STR(header(json, "etag"), GENERATION_ETAG);
    CHECK_STR(header(json, "x-goog-generation"), GENERATION_S);
    CHECK_STR(header(json, "x-goog-metageneration"), "1");
    CHECK_STR(header(json, "x-goog-hash"), "crc32c=" HELLO_CRC32C ",md5=" HELLO_MD5);
    CHECK_STR(header(json, "x-goog-stored-content-length"), "11");
    CHECK_STR(header(json, "x-goog-stored-content-encoding"), "identity");
    CHECK_STR(header(json, "x-goog-storage-class"), "STANDARD");
    CHECK_STR(header(json, "last-modified"), "Fri, 27 Nov 2026 13:20:14 GMT");
    CHECK_STR(header(json, "content-type"), "text/plain");
    CHECK(header(json, "content-encoding") == NULL);
    CHECK(header(json, "x-goog-component-count") == NULL);
    CHECK(header(json, "content-length") == NULL); /* framing is made on each hit */
    CHECK_STR(header(json, "cache-control"), "no-cache, no-store, max-age=0, must-revalidate");
    CHECK(meta_headers(json) == 0); /* custom metadata is the XML API's to show */

    /* the XML view: the quoted hex MD5, as GCS makes it for a non-composite object */
    CHECK_STR(json_string_value(json_object_get(xml, "etag")), "\"" HELLO_MD5_HEX "\"");
    CHECK_STR(header(xml, "etag"), "\"" HELLO_MD5_HEX "\"");
    CHECK_STR(header(xml, "x-goog-generation"), GENERATION_S);
    CHECK_STR(header(xml, "x-goog-hash"), "crc32c=" HELLO_CRC32C ",md5=" HELLO_MD5);
    CHECK_STR(header(xml, "last-modified"), "Fri, 27 Nov 2026 13:20:14 GMT");
    CHECK_STR(header(xml, "cache-control"), "private, max-age=0");
    CHECK_STR(header(xml, "x-goog-meta-color"), "blue");
    CHECK_STR(header(xml, "x-goog-meta-team"), "data");
    CHECK(meta_headers(xml) == 2);
    json_decref(record);

    /* what a hit reads of it */
    record_t *r = parse_record(&meta);
    if (r != NULL) {
        const record_view_t *jv = record_media_view(r, CACHE_FLAVOUR_JSON), *xv = record_media_view(r, CACHE_FLAVOUR_XML);
        CHECK(jv != NULL && xv != NULL);
        if (jv != NULL)
            CHECK_STR(jv->etag, GENERATION_ETAG);
        if (xv != NULL)
            CHECK_STR(xv->etag, "\"" HELLO_MD5_HEX "\"");
        CHECK(!record_has_resource(r) && !r->is_public);
        record_release(r);
    }
    store_meta_free(&meta);

    /* a time that is not RFC 3339: no Last-Modified rather than a wrong one */
    f.updated = "yesterday";
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    CHECK(meta.last_modified == NULL);
    record = load_json(meta.resource_json);
    CHECK(header(view_of(record, "json"), "last-modified") == NULL);
    json_decref(record);
    store_meta_free(&meta);
    json_decref(resource);
}

/* The request's own metadata (a multipart's first part), then an answer that carries only some fields. */
static void test_request_metadata(void)
{
    json_t *request = load_json("{\"name\":\"r.bin\",\"contentType\":\"application/x-thing\","
                                "\"contentEncoding\":\"gzip\",\"cacheControl\":\"public, max-age=3600\","
                                "\"contentDisposition\":\"attachment\",\"contentLanguage\":\"en\","
                                "\"metadata\":{\"k\":\"v\"}}");
    json_t *partial = load_json("{\"bucket\":\"bkt\",\"name\":\"r.bin\",\"generation\":\"12\",\"size\":\"5\","
                                "\"crc32c\":\"AAAAAA==\",\"md5Hash\":\"" HELLO_MD5 "\"}");
    if (request == NULL || partial == NULL) {
        json_decref(request);
        json_decref(partial);
        return;
    }
    upload_facts_t f;
    upload_facts_init(&f, NULL, NULL, "");
    upload_facts_from_request_metadata(&f, request);
    upload_facts_from_resource(&f, partial);
    CHECK(f.bucket != NULL && f.generation == 12 && f.metageneration == -1 && f.size == 5);
    store_meta_t meta;
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    CHECK(meta.metageneration == 1); /* every new object's */
    CHECK_STR(meta.content_type, "application/x-thing");
    CHECK_STR(meta.content_encoding, "gzip");
    CHECK_STR(meta.cache_control, "public, max-age=3600");
    CHECK_STR(meta.content_disposition, "attachment");
    CHECK_STR(meta.content_language, "en");
    CHECK(meta.last_modified == NULL && meta.etag == NULL);
    CHECK_STR(meta.owner, "");
    json_t *record = meta.resource_json != NULL ? load_json(meta.resource_json) : NULL;
    json_t *json = view_of(record, "json"), *xml = view_of(record, "xml");
    char etag[64];
    expected_json_etag(12, 1, etag);
    CHECK_STR(json_string_value(json_object_get(json, "etag")), etag); /* no etag answered: derived */
    CHECK_STR(header(json, "content-encoding"), "gzip");
    CHECK_STR(header(json, "x-goog-stored-content-encoding"), "gzip");
    CHECK_STR(header(json, "cache-control"), "public, max-age=3600");
    CHECK_STR(header(json, "content-disposition"), "attachment");
    CHECK_STR(header(json, "content-language"), "en");
    CHECK(header(json, "last-modified") == NULL && header(json, "x-goog-storage-class") == NULL);
    CHECK_STR(header(xml, "cache-control"), "public, max-age=3600");
    CHECK_STR(header(xml, "x-goog-meta-k"), "v");
    CHECK(json_object_get(record, "resource") == NULL);
    json_decref(record);
    store_meta_free(&meta);
    json_decref(request);
    json_decref(partial);
}

/* Upstream's whole resource and its head are recorded for metadata GETs; allUsers READER makes it public. */
static void test_resource_recorded(void)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    h2o_headers_t head = {NULL, 0, 0};
    h2o_add_header_by_str(&pool, &head, H2O_STRLIT("content-type"), 1, NULL, H2O_STRLIT("application/json; charset=UTF-8"));
    h2o_add_header_by_str(&pool, &head, H2O_STRLIT("etag"), 1, NULL, H2O_STRLIT(GENERATION_ETAG));
    h2o_add_header_by_str(&pool, &head, H2O_STRLIT("date"), 1, NULL, H2O_STRLIT("Fri, 27 Nov 2026 13:20:15 GMT"));
    h2o_add_header_by_str(&pool, &head, H2O_STRLIT("x-guploader-uploadid"), 0, NULL, H2O_STRLIT("ADPycdu"));
    h2o_add_header_by_str(&pool, &head, H2O_STRLIT("content-length"), 1, NULL, H2O_STRLIT("900"));

    static const struct {
        const char *acl;
        bool is_public;
    } cases[] = {
        {NULL, false},
        {"[{\"entity\":\"project-owners-123\",\"role\":\"OWNER\"},{\"entity\":\"user-alice@example.com\",\"role\":\"OWNER\"}]",
         false},
        {"[{\"entity\":\"allAuthenticatedUsers\",\"role\":\"READER\"}]", false},
        {"[{\"entity\":\"project-owners-123\",\"role\":\"OWNER\"},{\"entity\":\"allUsers\",\"role\":\"READER\"}]", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *resource = load_json(RESOURCE_TEXT);
        if (resource == NULL)
            break;
        if (cases[i].acl != NULL)
            json_object_set_new(resource, "acl", load_json(cases[i].acl));
        upload_facts_t f;
        upload_facts_init(&f, NULL, NULL, "");
        upload_facts_from_resource(&f, resource);
        f.resource = resource;
        f.resource_headers = &head;
        store_meta_t meta;
        CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
        json_t *record = meta.resource_json != NULL ? load_json(meta.resource_json) : NULL;
        CHECK(json_equal(json_object_get(record, "resource"), resource));
        json_t *captured = json_object_get(record, "resource_headers");
        CHECK(json_is_array(captured));
        json_t *as_view = json_pack("{s:O}", "headers", captured != NULL ? captured : json_array());
        CHECK_STR(header(as_view, "content-type"), "application/json; charset=UTF-8");
        CHECK_STR(header(as_view, "etag"), GENERATION_ETAG);
        CHECK(header(as_view, "date") == NULL && header(as_view, "x-guploader-uploadid") == NULL &&
              header(as_view, "content-length") == NULL);
        json_decref(as_view);
        CHECK(json_is_true(json_object_get(record, "public")) == cases[i].is_public);
        CHECK(cases[i].is_public || json_object_get(record, "public") == NULL);
        /* both media views are still there */
        CHECK(view_of(record, "json") != NULL && view_of(record, "xml") != NULL);
        json_decref(record);

        record_t *r = meta.resource_json != NULL ? parse_record(&meta) : NULL;
        if (r != NULL) {
            CHECK(record_has_resource(r));
            CHECK(r->is_public == cases[i].is_public);
            CHECK_STR(r->resource.etag, GENERATION_ETAG);
            record_release(r);
        }
        store_meta_free(&meta);

        /* the same ACL in an answer not recorded whole (a fields= selection) says nothing of the record */
        f.resource = NULL;
        f.resource_headers = NULL;
        CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
        record = meta.resource_json != NULL ? load_json(meta.resource_json) : NULL;
        CHECK(json_object_get(record, "resource") == NULL && json_object_get(record, "public") == NULL);
        json_decref(record);
        store_meta_free(&meta);
        json_decref(resource);
    }
    h2o_mem_clear_pool(&pool);
}

/* A composite object (compose, or an XML multipart upload): no MD5, so no XML ETag GCS documents. */
static void test_composite(void)
{
    json_t *resource = load_json("{\"kind\":\"storage#object\",\"bucket\":\"bkt\",\"name\":\"joined\","
                                 "\"generation\":\"1700000000000001\",\"metageneration\":\"1\",\"size\":\"22\","
                                 "\"contentType\":\"application/octet-stream\",\"crc32c\":\"BBBBBB==\","
                                 "\"componentCount\":2,\"etag\":\"CIGAgICA0OgCEAE=\",\"storageClass\":\"STANDARD\","
                                 "\"updated\":\"2026-01-02T03:04:05Z\",\"metadata\":{\"m\":\"1\"}}");
    if (resource == NULL)
        return;
    upload_facts_t f;
    upload_facts_init(&f, NULL, NULL, "");
    upload_facts_from_resource(&f, resource);
    CHECK(f.component_count == 2 && f.md5 == NULL);

    store_meta_t meta;
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    CHECK(meta.md5 == NULL);
    CHECK_STR(meta.crc32c, "BBBBBB==");
    CHECK_STR(meta.etag, "CIGAgICA0OgCEAE=");
    CHECK_STR(meta.last_modified, "Fri, 02 Jan 2026 03:04:05 GMT");
    json_t *record = meta.resource_json != NULL ? load_json(meta.resource_json) : NULL;
    json_t *json = view_of(record, "json");
    CHECK(json != NULL);
    CHECK(view_of(record, "xml") == NULL); /* the first XML read fills it */
    CHECK_STR(header(json, "x-goog-component-count"), "2");
    CHECK_STR(header(json, "x-goog-hash"), "crc32c=BBBBBB==");
    CHECK_STR(header(json, "etag"), "CIGAgICA0OgCEAE=");
    json_decref(record);
    store_meta_free(&meta);

    /* "componentCount" as a string, the way other int64 fields come */
    json_object_set_new(resource, "componentCount", json_string("3"));
    upload_facts_init(&f, NULL, NULL, "");
    upload_facts_from_resource(&f, resource);
    CHECK(f.component_count == 3);

    /* an MD5 on a composite object still does not make the XML ETag */
    f.md5 = HELLO_MD5;
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    record = meta.resource_json != NULL ? load_json(meta.resource_json) : NULL;
    CHECK(view_of(record, "xml") == NULL);
    json_decref(record);
    store_meta_free(&meta);

    /* the ETag an XML write was answered with makes the XML view */
    f.md5 = NULL;
    f.xml_etag = "\"7d3e5ea0d8fbbd2f4f0ea2a9b0a1b9c8-2\"";
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    CHECK_STR(meta.etag, "CIGAgICA0OgCEAE="); /* the resource's still, where there is one */
    record = meta.resource_json != NULL ? load_json(meta.resource_json) : NULL;
    json_t *xml = view_of(record, "xml");
    CHECK(xml != NULL);
    CHECK_STR(json_string_value(json_object_get(xml, "etag")), "\"7d3e5ea0d8fbbd2f4f0ea2a9b0a1b9c8-2\"");
    CHECK_STR(header(xml, "etag"), "\"7d3e5ea0d8fbbd2f4f0ea2a9b0a1b9c8-2\"");
    CHECK_STR(header(xml, "x-goog-component-count"), "3");
    CHECK_STR(header(xml, "x-goog-hash"), "crc32c=BBBBBB==");
    CHECK_STR(header(xml, "x-goog-meta-m"), "1");
    CHECK(meta_headers(view_of(record, "json")) == 0);
    json_decref(record);
    store_meta_free(&meta);
    json_decref(resource);
}

/* --- from an XML write's request and answer --- */

static void add(h2o_mem_pool_t *pool, h2o_headers_t *headers, const char *name, const char *value)
{
    h2o_add_header_by_str(pool, headers, name, strlen(name), 1, NULL, value, strlen(value));
}

static void test_from_xml(void)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    h2o_headers_t request = {NULL, 0, 0}, answer = {NULL, 0, 0};
    add(&pool, &request, "content-type", "text/plain");
    add(&pool, &request, "cache-control", "public, max-age=60");
    add(&pool, &request, "content-disposition", "inline");
    add(&pool, &request, "x-goog-storage-class", "NEARLINE");
    add(&pool, &request, "x-goog-meta-color", "blue");
    add(&pool, &request, "x-amz-meta-flavour", "vanilla");
    add(&pool, &request, "x-goog-meta-", "no key"); /* a prefix alone names nothing */
    add(&pool, &request, "x-goog-acl", "private");
    add(&pool, &request, "content-length", "11");
    add(&pool, &answer, "etag", "\"" HELLO_MD5_HEX "\"");
    add(&pool, &answer, "x-goog-generation", GENERATION_S);
    add(&pool, &answer, "x-goog-metageneration", "1");
    add(&pool, &answer, "x-goog-hash", "crc32c=AAAAAA==,md5=" HELLO_MD5);
    add(&pool, &answer, "x-goog-stored-content-length", "11");
    add(&pool, &answer, "x-goog-stored-content-encoding", "identity");
    add(&pool, &answer, "content-length", "0");

    upload_facts_t f;
    upload_facts_init(&f, "bkt", "dir/hello.txt", "bob@example.com");
    upload_facts_from_xml_request(&f, &pool, &request);
    upload_facts_from_xml_answer(&f, &pool, &answer);
    CHECK(f.generation == GENERATION && f.metageneration == 1 && f.size == 11);
    CHECK_STR(f.crc32c, "AAAAAA==");
    CHECK_STR(f.md5, HELLO_MD5);
    CHECK_STR(f.xml_etag, "\"" HELLO_MD5_HEX "\"");
    CHECK(f.json_etag == NULL);
    CHECK_STR(f.content_type, "text/plain");
    CHECK_STR(f.cache_control, "public, max-age=60");
    CHECK_STR(f.content_disposition, "inline");
    CHECK_STR(f.storage_class, "NEARLINE");
    CHECK(json_is_object(f.metadata) && json_object_size(f.metadata) == 2);
    CHECK_STR(json_string_value(json_object_get(f.metadata, "color")), "blue");
    CHECK_STR(json_string_value(json_object_get(f.metadata, "flavour")), "vanilla");

    store_meta_t meta;
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    CHECK(meta.generation == GENERATION && meta.metageneration == 1 && meta.size == 11);
    CHECK_STR(meta.etag, "\"" HELLO_MD5_HEX "\""); /* the ETag upstream sent */
    CHECK_STR(meta.crc32c, "AAAAAA==");
    CHECK_STR(meta.md5, HELLO_MD5);
    CHECK_STR(meta.owner, "bob@example.com");
    CHECK(meta.last_modified == NULL); /* the answer has no "updated" */
    json_t *record = meta.resource_json != NULL ? load_json(meta.resource_json) : NULL;
    json_t *json = view_of(record, "json"), *xml = view_of(record, "xml");
    CHECK(json != NULL && xml != NULL);

    char etag[64];
    expected_json_etag(GENERATION, 1, etag);
    CHECK_STR(etag, GENERATION_ETAG);
    CHECK_STR(json_string_value(json_object_get(json, "etag")), etag);
    CHECK_STR(header(json, "etag"), etag);
    CHECK_STR(header(json, "x-goog-generation"), GENERATION_S);
    CHECK_STR(header(json, "x-goog-metageneration"), "1");
    CHECK_STR(header(json, "x-goog-hash"), "crc32c=AAAAAA==,md5=" HELLO_MD5);
    CHECK_STR(header(json, "x-goog-stored-content-length"), "11");
    CHECK_STR(header(json, "x-goog-storage-class"), "NEARLINE");
    CHECK_STR(header(json, "cache-control"), "public, max-age=60");
    CHECK_STR(header(json, "content-disposition"), "inline");
    CHECK(header(json, "last-modified") == NULL);
    CHECK(meta_headers(json) == 0);

    CHECK_STR(json_string_value(json_object_get(xml, "etag")), "\"" HELLO_MD5_HEX "\"");
    CHECK_STR(header(xml, "etag"), "\"" HELLO_MD5_HEX "\"");
    CHECK_STR(header(xml, "content-type"), "text/plain");
    CHECK_STR(header(xml, "x-goog-meta-color"), "blue");
    CHECK_STR(header(xml, "x-goog-meta-flavour"), "vanilla"); /* GCS shows S3's x-amz-meta-* as its own */
    CHECK(meta_headers(xml) == 2);
    CHECK(json_object_get(record, "resource") == NULL && json_object_get(record, "public") == NULL);
    json_decref(record);
    store_meta_free(&meta);

    /* another generation and metageneration, a space after the comma; no stored length keeps the size known */
    h2o_headers_t answer2 = {NULL, 0, 0};
    add(&pool, &answer2, "x-goog-generation", "7");
    add(&pool, &answer2, "x-goog-metageneration", "3");
    add(&pool, &answer2, "x-goog-hash", "crc32c=CCCCCC==, md5=" HELLO_MD5);
    upload_facts_init(&f, NULL, NULL, "");
    f.bucket = "bkt";
    f.name = "seven";
    f.size = 11; /* what the PUT's body held */
    upload_facts_from_xml_answer(&f, &pool, &answer2);
    CHECK(f.generation == 7 && f.metageneration == 3 && f.size == 11 && f.xml_etag == NULL);
    CHECK_STR(f.crc32c, "CCCCCC==");
    CHECK_STR(f.md5, HELLO_MD5);
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    CHECK(meta.metageneration == 3);
    CHECK(meta.etag == NULL); /* neither API's ETag was answered */
    CHECK_STR(meta.content_type, "application/octet-stream");
    record = meta.resource_json != NULL ? load_json(meta.resource_json) : NULL;
    expected_json_etag(7, 3, etag);
    CHECK_STR(json_string_value(json_object_get(view_of(record, "json"), "etag")), etag);
    CHECK_STR(header(view_of(record, "json"), "x-goog-metageneration"), "3");
    CHECK_STR(header(view_of(record, "json"), "content-type"), "application/octet-stream");
    /* no ETag answered, but an MD5: the XML view's ETag is the one GCS documents */
    CHECK_STR(json_string_value(json_object_get(view_of(record, "xml"), "etag")), "\"" HELLO_MD5_HEX "\"");
    json_decref(record);
    store_meta_free(&meta);

    /* no metageneration answered: 1, as for every new object */
    h2o_headers_t answer3 = {NULL, 0, 0};
    add(&pool, &answer3, "x-goog-generation", "7");
    add(&pool, &answer3, "x-goog-hash", "crc32c=CCCCCC==");
    upload_facts_init(&f, NULL, NULL, "");
    f.bucket = "bkt";
    f.name = "seven";
    f.size = 3;
    upload_facts_from_xml_answer(&f, &pool, &answer3);
    CHECK(f.metageneration == -1 && f.md5 == NULL);
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    CHECK(meta.metageneration == 1 && meta.md5 == NULL);
    record = meta.resource_json != NULL ? load_json(meta.resource_json) : NULL;
    expected_json_etag(7, 1, etag);
    CHECK_STR(json_string_value(json_object_get(view_of(record, "json"), "etag")), etag);
    CHECK(view_of(record, "xml") == NULL); /* neither an ETag nor an MD5 */
    json_decref(record);
    store_meta_free(&meta);

    /* no generation answered: refused */
    h2o_headers_t answer4 = {NULL, 0, 0};
    add(&pool, &answer4, "x-goog-hash", "crc32c=CCCCCC==");
    upload_facts_init(&f, NULL, NULL, "");
    f.bucket = "bkt";
    f.name = "seven";
    f.size = 3;
    upload_facts_from_xml_answer(&f, &pool, &answer4);
    expect_refused(&f, "generation");

    h2o_mem_clear_pool(&pool); /* disposes of the metadata the request's headers made */
}

/*
 * GCS may send x-goog-hash once per value ("x-goog-hash: crc32c=...",
 * "x-goog-hash: md5=..."); entry.c's read path takes both forms. An XML
 * write's answer in that form must give the same facts as the combined one.
 */
static void test_xml_hash_per_header(void)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    h2o_headers_t answer = {NULL, 0, 0}, reversed = {NULL, 0, 0};
    add(&pool, &answer, "x-goog-generation", "9");
    add(&pool, &answer, "x-goog-hash", "crc32c=" HELLO_CRC32C);
    add(&pool, &answer, "x-goog-hash", "md5=" HELLO_MD5);
    add(&pool, &reversed, "x-goog-generation", "9");
    add(&pool, &reversed, "x-goog-hash", "md5=" HELLO_MD5);
    add(&pool, &reversed, "x-goog-hash", "crc32c=" HELLO_CRC32C);

    upload_facts_t f;
    upload_facts_init(&f, NULL, NULL, "");
    f.bucket = "bkt";
    f.name = "nine";
    f.size = 11;
    upload_facts_from_xml_answer(&f, &pool, &answer);
    CHECK_STR(f.crc32c, HELLO_CRC32C);
    CHECK_STR(f.md5, HELLO_MD5);

    upload_facts_init(&f, NULL, NULL, "");
    f.bucket = "bkt";
    f.name = "nine";
    f.size = 11;
    upload_facts_from_xml_answer(&f, &pool, &reversed);
    CHECK_STR(f.crc32c, HELLO_CRC32C);
    CHECK_STR(f.md5, HELLO_MD5);
    store_meta_t meta;
    CHECK(upload_entry_make(&cache, &f, &meta) == NULL);
    store_meta_free(&meta);
    h2o_mem_clear_pool(&pool);
}

int main(void)
{
    cache_init();
    test_expected_etag_helper();
    test_refusals();
    test_from_resource();
    test_request_metadata();
    test_resource_recorded();
    test_composite();
    test_from_xml();
    test_xml_hash_per_header();
    conf_dispose(&conf);
    UNIT_DONE();
}
