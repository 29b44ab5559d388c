/*
 * test_conf_log.c - log lines: JSON and text layout, escaping, levels,
 * truncation, and whole lines when several threads log at once.
 *
 * stderr is pointed at a temporary file for each case and read back.
 */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
#include "unit.h"

static char capture_path[64];
static int saved_stderr = -1;

static void capture_begin(void)
{
    int fd;

    snprintf(capture_path, sizeof(capture_path), "/tmp/larder_test_conf_log_XXXXXX");
    fd = mkstemp(capture_path);
    CHECK(fd >= 0);
    /* O_APPEND, as a log file would be opened, so concurrent writes land whole at the end. */
    CHECK(fcntl(fd, F_SETFL, O_APPEND) == 0);
    saved_stderr = dup(STDERR_FILENO);
    CHECK(saved_stderr >= 0);
    CHECK(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    CHECK(close(fd) == 0);
}

/* Restores stderr and returns what was written, NUL-terminated; the caller frees it. */
static char *capture_end(size_t *len)
{
    char *text = NULL;
    FILE *fp;
    long size;

    CHECK(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
    CHECK(close(saved_stderr) == 0);
    fp = fopen(capture_path, "rb");
    CHECK(fp != NULL);
    if (fp == NULL)
        return NULL;
    CHECK(fseek(fp, 0, SEEK_END) == 0);
    size = ftell(fp);
    rewind(fp);
    text = calloc(1, (size_t)size + 1);
    CHECK(text != NULL);
    if (text)
        CHECK(fread(text, 1, (size_t)size, fp) == (size_t)size);
    CHECK(fclose(fp) == 0);
    CHECK(unlink(capture_path) == 0);
    *len = (size_t)size;
    return text;
}

/* 2026-11-22T07:13:00.123Z */
static bool is_timestamp(const char *s)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:dd.dddZ";

    for (size_t i = 0; pattern[i]; i++) {
        if (pattern[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pattern[i])
            return false;
    }
    return true;
}

static void test_json_line(void)
{
    size_t len;
    json_error_t jerr;

    log_configure(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    CHECK(log_format() == LOG_FORMAT_JSON);
    capture_begin();
    log_msg(LOG_LEVEL_INFO, "proxy", "say \"%s\"\\ %d\n\t\x01\x7f caf\xc3\xa9", "hi", 42);
    char *text = capture_end(&len);
    if (text == NULL)
        return;
    CHECK(len > 0 && text[len - 1] == '\n');
    CHECK(strchr(text, '\n') == text + len - 1);
    CHECK(strncmp(text, "{\"ts\":\"", 7) == 0 && is_timestamp(text + 7));
    CHECK(strstr(text, "\",\"level\":\"info\",\"component\":\"proxy\",\"msg\":\"") != NULL);
    CHECK(strstr(text, "say \\\"hi\\\"\\\\ 42\\n\\t\\u0001\\u007f caf\xc3\xa9\"}\n") != NULL);

    json_t *line = json_loads(text, 0, &jerr);
    CHECK(line != NULL);
    CHECK_STR(json_string_value(json_object_get(line, "msg")), "say \"hi\"\\ 42\n\t\x01\x7f caf\xc3\xa9");
    CHECK_STR(json_string_value(json_object_get(line, "level")), "info");
    json_decref(line);
    free(text);
}

/* Bytes that are not UTF-8 become U+FFFD each, so every line is valid JSON. */
static void test_json_invalid_utf8(void)
{
    size_t len;
    json_error_t jerr;

    log_configure(LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
    capture_begin();
    /* a lone continuation byte, an overlong '/', a surrogate, a cut sequence, a byte never in UTF-8 */
    log_msg(LOG_LEVEL_DEBUG, "c\xff", "a\x80" "b\xc0\xaf" "c\xed\xa0\x80" "d\xe2\x82" "e\xfe" "\xf0\x9f\x98\x80");
    char *text = capture_end(&len);
    if (text == NULL)
        return;
    json_t *line = json_loads(text, 0, &jerr);
    CHECK(line != NULL);
    CHECK_STR(json_string_value(json_object_get(line, "component")), "c\xef\xbf\xbd");
    CHECK_STR(json_string_value(json_object_get(line, "msg")),
              "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
              "d\xef\xbf\xbd\xef\xbf\xbd" "e\xef\xbf\xbd" "\xf0\x9f\x98\x80");
    CHECK_STR(json_string_value(json_object_get(line, "level")), "debug");
    json_decref(line);
    free(text);
}

static void test_text_line(void)
{
    size_t len;

    log_configure(LOG_LEVEL_WARN, LOG_FORMAT_TEXT);
    CHECK(log_format() == LOG_FORMAT_TEXT);
    capture_begin();
    log_msg(LOG_LEVEL_WARN, "store", "disk %d%% full\nsecond \"line\" \xff", 93);
    log_msg(LOG_LEVEL_ERROR, NULL, "boom");
    char *text = capture_end(&len);
    if (text == NULL)
        return;
    CHECK(is_timestamp(text));
    const char *want = " WARN store: disk 93% full\\nsecond \"line\" \\xff\n";
    CHECK(strncmp(text + 24, want, strlen(want)) == 0);
    char *second = strchr(text, '\n') + 1;
    CHECK(is_timestamp(second));
    CHECK_STR(second + 24, " ERROR larder: boom\n");
    free(text);
}

static void test_levels(void)
{
    size_t len;

    log_configure(LOG_LEVEL_WARN, LOG_FORMAT_JSON);
    CHECK(log_enabled(LOG_LEVEL_ERROR) && log_enabled(LOG_LEVEL_WARN));
    CHECK(!log_enabled(LOG_LEVEL_INFO) && !log_enabled(LOG_LEVEL_DEBUG));
    capture_begin();
    log_msg(LOG_LEVEL_INFO, "x", "hidden");
    log_msg(LOG_LEVEL_DEBUG, "x", "hidden");
    log_msg(LOG_LEVEL_ERROR, "x", "shown");
    char *text = capture_end(&len);
    if (text == NULL)
        return;
    CHECK(strstr(text, "hidden") == NULL);
    CHECK(strstr(text, "\"level\":\"error\"") != NULL && strstr(text, "shown") != NULL);
    free(text);
    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_JSON);
    CHECK(!log_enabled(LOG_LEVEL_WARN));
    log_configure(LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
    CHECK(log_enabled(LOG_LEVEL_DEBUG));
}

static void test_write_line(void)
{
    size_t len;

    capture_begin();
    log_write_line("{\"a\":1}", 7);
    log_write_line("{\"b\":2}\n", 8);
    log_write_line("", 0);
    char *text = capture_end(&len);
    if (text == NULL)
        return;
    CHECK_STR(text, "{\"a\":1}\n{\"b\":2}\n\n");
    free(text);
}

/* A huge message is cut short, but the line stays one valid JSON object. */
static void test_truncation(void)
{
    size_t len;
    json_error_t jerr;
    char *big = malloc(20001);

    CHECK(big != NULL);
    if (big == NULL)
        return;
    memset(big, '"', 20000); /* each becomes two bytes, the worst printable case */
    big[20000] = '\0';
    log_configure(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    capture_begin();
    log_msg(LOG_LEVEL_INFO, "big", "%s", big);
    char *text = capture_end(&len);
    free(big);
    if (text == NULL)
        return;
    CHECK(len <= 8192);
    CHECK(len > 8000);
    CHECK(len >= 6 && strcmp(text + len - 6, "...\"}\n") == 0);
    json_t *line = json_loads(text, 0, &jerr);
    CHECK(line != NULL);
    json_decref(line);
    free(text);
}

#define THREADS 8
#define LINES_PER_THREAD 300

static void *log_many(void *arg)
{
    int id = (int)(intptr_t)arg;

    for (int i = 0; i < LINES_PER_THREAD; i++)
        log_msg(LOG_LEVEL_INFO, "thread", "thread %d line %d %0200d", id, i, 0);
    return NULL;
}

/* Lines from threads logging at once never interleave: every line read back is a whole object. */
static void test_threads(void)
{
    pthread_t threads[THREADS];
    json_error_t jerr;
    size_t len, lines = 0;

    log_configure(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    capture_begin();
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, log_many, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    char *text = capture_end(&len);
    if (text == NULL)
        return;
    for (char *line = text, *end; (end = strchr(line, '\n')) != NULL; line = end + 1) {
        json_t *object = json_loadb(line, (size_t)(end - line), 0, &jerr);
        if (object == NULL) {
            CHECK(object != NULL);
            break;
        }
        json_decref(object);
        lines++;
    }
    CHECK(lines == THREADS * LINES_PER_THREAD);
    free(text);
}

int main(void)
{
    test_json_line();
    test_json_invalid_utf8();
    test_text_line();
    test_levels();
    test_write_line();
    test_truncation();
    test_threads();
    log_configure(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    UNIT_DONE();
}
