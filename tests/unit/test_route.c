/*
 * test_route.c - request classification across the GCS API surfaces.
 */
#include "route.h"
#include "unit.h"

#define SUFFIX "storage.googleapis.com"

static route_t classify(const char *path, const char *host)
{
    route_t r;
    route_classify(&r, path, strlen(path), host, host != NULL ? strlen(host) : 0, SUFFIX);
    return r;
}

static void test_json_routes(void)
{
    route_t r = classify("/storage/v1/b/bkt/o/obj", "127.0.0.1:8080");
    CHECK(r.api == ROUTE_JSON && !r.media && r.error_format == ERROR_FORMAT_JSON);
    r = classify("/storage/v1/b/bkt/o/obj?alt=media&generation=3", NULL);
    CHECK(r.api == ROUTE_JSON && r.media);
    r = classify("/storage/v1/b/bkt/o/obj?alt=mediax", NULL);
    CHECK(r.api == ROUTE_JSON && !r.media);
    r = classify("/storage/v1/b/bkt/o/obj?fields=alt&alt=json", NULL);
    CHECK(r.api == ROUTE_JSON && !r.media);
    r = classify("/upload/storage/v1/b/bkt/o?uploadType=multipart", NULL);
    CHECK(r.api == ROUTE_UPLOAD && r.error_format == ERROR_FORMAT_JSON);
    r = classify("/resumable/upload/storage/v1/b/bkt/o?uploadType=resumable", NULL);
    CHECK(r.api == ROUTE_UPLOAD);
    r = classify("/download/storage/v1/b/bkt/o/a%2Fb?alt=media", NULL);
    CHECK(r.api == ROUTE_DOWNLOAD && r.media);
    r = classify("/batch/storage/v1", NULL);
    CHECK(r.api == ROUTE_BATCH);
}

static void test_unknown_routes(void)
{
    /* reserved JSON roots with the wrong shape: JSON-format 404 */
    route_t r = classify("/storage/v2/b", NULL);
    CHECK(r.api == ROUTE_NONE && r.error_format == ERROR_FORMAT_JSON);
    r = classify("/upload/foo", NULL);
    CHECK(r.api == ROUTE_NONE && r.error_format == ERROR_FORMAT_JSON);
    r = classify("/storage/v1x/b", NULL);
    CHECK(r.api == ROUTE_NONE);
    /* first segments no bucket could have */
    r = classify("/_emu/reset", NULL);
    CHECK(r.api == ROUTE_NONE && r.error_format == ERROR_FORMAT_XML);
    r = classify("/UPPER/obj", NULL);
    CHECK(r.api == ROUTE_NONE);
    r = classify("/ab/obj", NULL);
    CHECK(r.api == ROUTE_NONE);
    r = classify("relative", NULL);
    CHECK(r.api == ROUTE_NONE);
    r = classify("/_larder/healthz", NULL);
    CHECK(r.api == ROUTE_ADMIN);
}

static void test_xml_routes(void)
{
    route_t r = classify("/bucket-1/dir/obj.txt", "127.0.0.1:8080");
    CHECK(r.api == ROUTE_XML && r.media && !r.vhost && r.error_format == ERROR_FORMAT_XML);
    CHECK(r.bucket_len == 8 && memcmp(r.bucket, "bucket-1", 8) == 0);
    r = classify("/bucket-1?prefix=a&delimiter=/", NULL);
    CHECK(r.api == ROUTE_XML && !r.media && r.bucket_len == 8);
    r = classify("/bucket-1/", NULL);
    CHECK(r.api == ROUTE_XML && !r.media);
    r = classify("/", NULL);
    CHECK(r.api == ROUTE_XML && r.bucket_len == 0);
    /* "storagex" is a bucket, not the JSON root */
    r = classify("/storagex/o", NULL);
    CHECK(r.api == ROUTE_XML);
}

static void test_virtual_hosted(void)
{
    route_t r = classify("/obj%20name", "my.bucket." SUFFIX);
    CHECK(r.api == ROUTE_XML && r.vhost && r.media);
    CHECK(r.bucket_len == 9 && memcmp(r.bucket, "my.bucket", 9) == 0);
    r = classify("/?prefix=x", "bkt." SUFFIX ":8080");
    CHECK(r.api == ROUTE_XML && r.vhost && !r.media && r.bucket_len == 3);
    r = classify("/bkt/o", SUFFIX);
    CHECK(r.api == ROUTE_XML && !r.vhost);
    r = classify("/bkt/o", "evilstorage.googleapis.com");
    CHECK(r.api == ROUTE_XML && !r.vhost);
    /* the JSON API is path-based even on a bucket host */
    r = classify("/storage/v1/b/x/o", "bkt." SUFFIX);
    CHECK(r.api == ROUTE_XML && r.vhost);
}

static void test_query_param(void)
{
    const char *p = "/x?a=1&alt=media&empty&b=";
    size_t len;
    const char *v = route_query_param(p, strlen(p), "alt", &len);
    CHECK(v != NULL && len == 5 && memcmp(v, "media", 5) == 0);
    v = route_query_param(p, strlen(p), "empty", &len);
    CHECK(v != NULL && len == 0);
    v = route_query_param(p, strlen(p), "b", &len);
    CHECK(v != NULL && len == 0);
    CHECK(route_query_param(p, strlen(p), "al", &len) == NULL);
    CHECK(route_query_param("/x", 2, "a", &len) == NULL);
    /* The first occurrence wins, and a value may hold '='. */
    const char *twice = "/x?k=a=b&k=c";
    v = route_query_param(twice, strlen(twice), "k", &len);
    CHECK(v != NULL && len == 3 && memcmp(v, "a=b", 3) == 0);
}

/* The walk that route_query_param and caller.c's credential scan share. */
static void test_query_walk(void)
{
    const char *p = "/x?a=1&flag&&c=x=y&=v";
    const char *want[][2] = {{"a", "1"}, {"flag", ""}, {"", ""}, {"c", "x=y"}, {"", "v"}};
    route_query_walk_t walk;
    const char *name, *value;
    size_t name_len, value_len, n = 0;
    route_query_walk_start(&walk, p, strlen(p));
    while (route_query_walk_next(&walk, &name, &name_len, &value, &value_len)) {
        CHECK(n < 5);
        if (n >= 5)
            break;
        CHECK(name_len == strlen(want[n][0]) && memcmp(name, want[n][0], name_len) == 0);
        CHECK(value_len == strlen(want[n][1]) && memcmp(value, want[n][1], value_len) == 0);
        n++;
    }
    CHECK(n == 5);
    route_query_walk_start(&walk, "/x", 2);
    CHECK(!route_query_walk_next(&walk, &name, &name_len, &value, &value_len));
    route_query_walk_start(&walk, "/x?", 3);
    CHECK(!route_query_walk_next(&walk, &name, &name_len, &value, &value_len));
}

static void test_bucket_names(void)
{
    CHECK(route_bucket_name_valid("abc", 3));
    CHECK(route_bucket_name_valid("a-b_c.d", 7));
    CHECK(!route_bucket_name_valid("ab", 2));
    CHECK(!route_bucket_name_valid("-abc", 4));
    CHECK(!route_bucket_name_valid("abc-", 4));
    CHECK(!route_bucket_name_valid("aBc", 3));
    char long_name[70];
    memset(long_name, 'a', sizeof(long_name));
    CHECK(!route_bucket_name_valid(long_name, 64));
    long_name[30] = '.';
    CHECK(route_bucket_name_valid(long_name, 70));
}

int main(void)
{
    test_json_routes();
    test_unknown_routes();
    test_xml_routes();
    test_virtual_hosted();
    test_query_param();
    test_query_walk();
    test_bucket_names();
    UNIT_DONE();
}
