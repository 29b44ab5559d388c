/*
 * test_target.c - a request target parsed once: what is refused, the object
 * it names, the numbers it carries, and the upstream URL built from the same
 * decoded values as the cache key.
 *
 * Fails on the old code, which had no parsed target: the cache key came from
 * the decoded raw path while the upstream URL was the raw path pasted into
 * curl, so "/b/a#b" keyed object "a#b" and fetched object "a"; and a 19-digit
 * generation wrapped negative (signed overflow) and read as absent.
 */
#include <stdlib.h>

#include "target.h"
#include "unit.h"

#define SUFFIX "storage.googleapis.com"
#define BASE "https://up.example"

static h2o_mem_pool_t pool;

static target_t parse_host(const char *path, const char *host)
{
    target_t t;
    target_parse(&t, &pool, path, strlen(path), host, host != NULL ? strlen(host) : 0, SUFFIX);
    return t;
}

static target_t parse(const char *path)
{
    return parse_host(path, "127.0.0.1:8080");
}

static void check_url(const target_t *t, const target_url_edit_t *edit, const char *want)
{
    char *url = target_upstream_url(t, BASE, edit);
    CHECK_STR(url, want);
    free(url);
}

static void test_refused(void)
{
    /* '#' never reaches a server from a real client: it starts a fragment. */
    CHECK(parse("/bkt/a#b").invalid != NULL);
    CHECK(parse("/storage/v1/b/bkt/o/a#b?alt=media").invalid != NULL);
    CHECK(parse("/storage/v1/b/bkt/o/a?alt=media#frag").invalid != NULL);
    CHECK(parse("/bkt/a\x01" "b").invalid != NULL);
    CHECK(parse("/bkt/a b").invalid != NULL);
    CHECK(parse("/bkt/a\x7f").invalid != NULL);
    /* A name that does not decode, or decodes to CR/LF/NUL. */
    CHECK(parse("/bkt/a%zz").invalid != NULL);
    CHECK(parse("/storage/v1/b/bkt/o/a%0Ab").invalid != NULL);
    CHECK(parse("/bkt/a%00").invalid != NULL);
    /* What is fine. */
    CHECK(parse("/bkt/a%23b").invalid == NULL);
    CHECK(parse("/storage/v1/b/bkt/o/a%2Fb?alt=media").invalid == NULL);
}

static void test_numbers(void)
{
    target_t t = parse("/storage/v1/b/bkt/o/x?alt=media&generation=9223372036854775807&ifGenerationMatch=0");
    CHECK(t.invalid == NULL && t.numbers.generation == INT64_MAX && t.numbers.if_generation_match == 0);
    CHECK(parse("/storage/v1/b/bkt/o/x?generation=9223372036854775808").invalid != NULL);
    CHECK(parse("/storage/v1/b/bkt/o/x?ifGenerationMatch=99999999999999999999").invalid != NULL);
    CHECK(parse("/storage/v1/b/bkt/o/x?ifMetagenerationNotMatch=-1").invalid != NULL);
    CHECK(parse("/storage/v1/b/bkt/o/x?ifGenerationNotMatch=").invalid != NULL);
    CHECK(parse("/upload/storage/v1/b/bkt/o?uploadType=media&name=x&ifGenerationMatch=1x").invalid != NULL);
    /* The XML API knows only generation among them; others it ignores, as GCS does. */
    CHECK(parse("/bkt/x?generation=18446744073709551616").invalid != NULL);
    CHECK(parse("/bkt/x?ifGenerationMatch=abc").invalid == NULL);
    int64_t v;
    CHECK(target_parse_int64("0", 1, &v) && v == 0);
    CHECK(!target_parse_int64("+1", 2, &v) && !target_parse_int64("", 0, &v));
}

static void test_names_and_repeats(void)
{
    target_t t = parse("/storage/v1/b/bkt/o/dir%2Fa%23b?alt=media");
    CHECK_STR(t.bucket, "bkt");
    CHECK_STR(t.object, "dir/a#b");
    CHECK(t.object_suffix.len == 0 && !t.repeated);
    t = parse("/storage/v1/b/bkt/o/src/copyTo/b/b2/o/dst");
    CHECK_STR(t.object, "src");
    CHECK(h2o_memis(t.object_suffix.base, t.object_suffix.len, H2O_STRLIT("/copyTo/b/b2/o/dst")));
    t = parse("/bkt/dir/a%23b");
    CHECK_STR(t.bucket, "bkt");
    CHECK_STR(t.object, "dir/a#b");
    CHECK(parse("/storage/v1/b/bkt/o/x?alt=json&alt=media").repeated);
    CHECK(parse("/storage/v1/b/bkt/o/x?generation=1&generation=2").repeated);
    CHECK(!parse("/storage/v1/b/bkt/o/x?alt=media&userProject=p&userProject=q").repeated);
    /* Host names are case-insensitive; buckets are lower-case. */
    t = parse_host("/Obj", "BKT.STORAGE.GOOGLEAPIS.COM:8080");
    CHECK(t.route.api == ROUTE_XML && t.route.vhost);
    CHECK_STR(t.bucket, "bkt");
    CHECK_STR(t.object, "Obj");
}

static void test_urls(void)
{
    /* Re-encoded from the decoded name: the key's object and the fetched one are the same. */
    target_t t = parse("/storage/v1/b/bkt/o/a%23b?alt=media&ifGenerationMatch=5&userProject=p");
    check_url(&t, NULL, BASE "/storage/v1/b/bkt/o/a%23b?alt=media&ifGenerationMatch=5&userProject=p");
    check_url(&t, &(target_url_edit_t){.drop_preconditions = true, .add_param = "ifGenerationMatch=7"},
              BASE "/storage/v1/b/bkt/o/a%23b?alt=media&userProject=p&ifGenerationMatch=7");
    t = parse("/download/storage/v1/b/bkt/o/dir%2Fx~y.bin?alt=media");
    check_url(&t, NULL, BASE "/download/storage/v1/b/bkt/o/dir%2Fx~y.bin?alt=media");
    t = parse("/bkt/dir/a%23b%20c?generation=3");
    check_url(&t, NULL, BASE "/bkt/dir/a%23b%20c?generation=3");
    t = parse_host("/dir/x", "Bkt.storage.googleapis.com");
    check_url(&t, NULL, BASE "/bkt/dir/x");
    /* Targets that name no object go as sent (validated); virtual-hosted ones path-style. */
    t = parse("/storage/v1/b/bkt/o?prefix=a%2F&delimiter=/");
    check_url(&t, NULL, BASE "/storage/v1/b/bkt/o?prefix=a%2F&delimiter=/");
    t = parse_host("/?list-type=2", "bkt.storage.googleapis.com");
    check_url(&t, NULL, BASE "/bkt/?list-type=2");
    char *meta = target_json_object_url(BASE, "bkt", "a/b#c", "ifGenerationNotMatch=4");
    CHECK_STR(meta, BASE "/storage/v1/b/bkt/o/a%2Fb%23c?ifGenerationNotMatch=4");
    free(meta);
}

int main(void)
{
    h2o_mem_init_pool(&pool);
    test_refused();
    test_numbers();
    test_names_and_repeats();
    test_urls();
    h2o_mem_clear_pool(&pool);
    printf("%d checks, %d failed\n", unit_checks, unit_failures);
    return unit_failures != 0;
}
