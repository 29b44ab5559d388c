/*
 * test_gcs_error.c - error bodies in GCS's JSON and XML shapes, and log redaction.
 */
#include <jansson.h>

#include "access_log.h"
#include "gcs_error.h"
#include "unit.h"

static void test_json_shape(void)
{
    char buf[2048];
    size_t len = gcs_error_format(buf, sizeof(buf), ERROR_FORMAT_JSON, GCS_ERROR_BAD_GATEWAY, "up \"down\"\n");
    json_error_t err;
    json_t *doc = json_loadb(buf, len, 0, &err);
    CHECK(doc != NULL);
    json_t *error = json_object_get(doc, "error");
    CHECK(json_integer_value(json_object_get(error, "code")) == 502);
    CHECK_STR(json_string_value(json_object_get(error, "message")), "up \"down\"\n");
    json_t *first = json_array_get(json_object_get(error, "errors"), 0);
    CHECK_STR(json_string_value(json_object_get(first, "reason")), "backendError");
    CHECK_STR(json_string_value(json_object_get(first, "domain")), "global");
    json_decref(doc);
    CHECK(gcs_error_status(GCS_ERROR_TOO_LARGE) == 413);
    CHECK(gcs_error_status(GCS_ERROR_GATEWAY_TIMEOUT) == 504);
}

static void test_xml_shape(void)
{
    char buf[2048];
    gcs_error_format(buf, sizeof(buf), ERROR_FORMAT_XML, GCS_ERROR_NOT_FOUND, "a<b>&'c'");
    CHECK_STR(buf, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
                   "<Message>a&lt;b&gt;&amp;&apos;c&apos;</Message></Error>");
}

static void test_redaction(void)
{
    char out[256];
    access_log_redact_path("/b/o?access_token=ya29.secret&alt=media", 39, out, sizeof(out));
    CHECK_STR(out, "/b/o?access_token=***&alt=media");
    const char *p = "/upload/storage/v1/b/k/o?uploadType=resumable&upload_id=SESSION";
    access_log_redact_path(p, strlen(p), out, sizeof(out));
    CHECK_STR(out, "/upload/storage/v1/b/k/o?uploadType=resumable&upload_id=***");
    access_log_redact_path("/k/o?x-goog-token=1", 19, out, sizeof(out));
    CHECK_STR(out, "/k/o?x-goog-token=1");
    access_log_redact_path("/k/a=b", 6, out, sizeof(out));
    CHECK_STR(out, "/k/a=b");
}

int main(void)
{
    test_json_shape();
    test_xml_shape();
    test_redaction();
    UNIT_DONE();
}
