/*
 * test_link_rewrite.c - upstream links become larder links, nothing else changes.
 */
#include <stdlib.h>

#include "link_rewrite.h"
#include "unit.h"

static void test_is_upstream(void)
{
    size_t at;
    const char *base = "http://127.0.0.1:9000";
    CHECK(link_is_upstream("http://127.0.0.1:9000/upload/x?upload_id=1", 41, base, &at) && at == 21);
    CHECK(!link_is_upstream("http://127.0.0.1:9001/upload/x", 30, base, &at));
    CHECK(link_is_upstream("https://www.googleapis.com/storage/v1/b/x", 41, base, &at) && at == 26);
    CHECK(link_is_upstream("https://storage.googleapis.com", 30, base, &at) && at == 30);
    CHECK(!link_is_upstream("https://googleapis.com.evil.org/x", 33, base, &at));
    CHECK(!link_is_upstream("/relative/path", 14, base, &at));
}

static void test_json(void)
{
    const char *doc = "{\"kind\":\"storage#objects\",\"items\":[{\"name\":\"a b\",\"selfLink\":"
                      "\"http://127.0.0.1:9000/storage/v1/b/k/o/a%20b\",\"mediaLink\":"
                      "\"http://127.0.0.1:9000/download/storage/v1/b/k/o/a%20b?generation=1&alt=media\","
                      "\"metadata\":{\"note\":\"http://127.0.0.1:9000/keep\"},\"size\":\"12\"}]}";
    size_t len;
    char *out = link_rewrite_json(doc, strlen(doc), "http://127.0.0.1:9000", "https://larder:8443", &len);
    CHECK(out != NULL);
    if (out != NULL) {
        CHECK(strstr(out, "\"selfLink\":\"https://larder:8443/storage/v1/b/k/o/a%20b\"") != NULL);
        CHECK(strstr(out, "\"mediaLink\":\"https://larder:8443/download/storage/v1/b/k/o/a%20b?generation=1&alt=media\"") !=
              NULL);
        /* user metadata is data, not a link: it stays */
        CHECK(strstr(out, "\"note\":\"http://127.0.0.1:9000/keep\"") != NULL);
        CHECK(strstr(out, "\"size\":\"12\"") != NULL);
        CHECK(strlen(out) == len);
        free(out);
    }
    CHECK(link_rewrite_json("{\"kind\":\"x\"}", 12, "http://a", "http://b", &len) == NULL);
    CHECK(link_rewrite_json("not json", 8, "http://a", "http://b", &len) == NULL);
    const char *unicode = "{\"selfLink\":\"http://a/storage/v1/b/k/o/\xc3\xa9\"}";
    out = link_rewrite_json(unicode, strlen(unicode), "http://a", "http://b", &len);
    CHECK(out != NULL && strcmp(out, "{\"selfLink\":\"http://b/storage/v1/b/k/o/\xc3\xa9\"}") == 0);
    free(out);
}

static void test_public_base(void)
{
    char *base = link_public_base(NULL, "https", 5, "127.0.0.1:8443", 14);
    CHECK_STR(base, "https://127.0.0.1:8443");
    free(base);
    base = link_public_base("http://larder.internal", "https", 5, "127.0.0.1:8443", 14);
    CHECK_STR(base, "http://larder.internal");
    free(base);
    CHECK(link_public_base(NULL, "http", 4, "", 0) == NULL);
}

/* A two-part batch response: a JSON answer (inner head given, then Content-Length) and a 204. */
static int format_batch(char *buf, size_t cap, const char *json_head, const char *json)
{
    return snprintf(buf, cap,
                    "--batch_x\r\nContent-Type: application/http\r\nContent-ID: <response-1>\r\n\r\n"
                    "HTTP/1.1 200 OK\r\n%sContent-Length: %zu\r\n\r\n%s\r\n"
                    "--batch_x\r\nContent-Type: application/http\r\n\r\n"
                    "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n\r\n"
                    "--batch_x--\r\n",
                    json_head, strlen(json), json);
}

static void test_batch(void)
{
    const char *head = "Content-Type: application/json; charset=UTF-8\r\nETag: \"x\"\r\n";
    char body[2048], expected[2048];
    int n = format_batch(body, sizeof(body), head,
                         "{\"kind\":\"storage#object\",\"selfLink\":\"http://up:9/storage/v1/b/k/o/a\"}");
    size_t len;
    char *out = link_rewrite_batch(body, (size_t)n, "batch_x", 7, "http://up:9", "https://larder:8443", &len);
    CHECK(out != NULL);
    if (out != NULL) {
        /* The link changes length, and the part's Content-Length with it. */
        int m = format_batch(expected, sizeof(expected), head,
                             "{\"kind\":\"storage#object\",\"selfLink\":\"https://larder:8443/storage/v1/b/k/o/a\"}");
        CHECK(len == (size_t)m && memcmp(out, expected, len) == 0);
        free(out);
    }
    /* Nothing to rewrite, a wrong boundary, a truncated body: the caller sends the original. */
    CHECK(link_rewrite_batch(body, (size_t)n, "batch_x", 7, "http://other:1", "https://larder:8443", &len) == NULL);
    CHECK(link_rewrite_batch(body, (size_t)n, "batch_y", 7, "http://up:9", "https://larder:8443", &len) == NULL);
    CHECK(link_rewrite_batch(body, 60, "batch_x", 7, "http://up:9", "https://larder:8443", &len) == NULL);
    CHECK(link_rewrite_batch("", 0, "batch_x", 7, "http://up:9", "https://larder:8443", &len) == NULL);
    /* A preamble before the first delimiter is kept. */
    char with_preamble[2100];
    int k = snprintf(with_preamble, sizeof(with_preamble), "preamble\r\n%s", body);
    out = link_rewrite_batch(with_preamble, (size_t)k, "batch_x", 7, "http://up:9", "https://larder:8443", &len);
    CHECK(out != NULL && len > 10 && memcmp(out, "preamble\r\n--batch_x\r\n", 21) == 0 &&
          strstr(out, "https://larder:8443/storage/v1/b/k/o/a") != NULL);
    free(out);
}

int main(void)
{
    test_is_upstream();
    test_public_base();
    test_batch();
    test_json();
    UNIT_DONE();
}
