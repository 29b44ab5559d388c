/*
 * test_conf_errors.c - every kind of configuration error: which key it
 * names, what it says, and that it is one line.
 */
#include <stdlib.h>
#include <unistd.h>

#include "conf_test.h"

/* conf_load into a throwaway configuration; config is a --config path or NULL. */
static int load(const char *config, const char *const *args, const char *const *env)
{
    conf_t c;
    int rc = conf_test_load(&c, config, args, env, NULL);

    conf_dispose(&c);
    return rc;
}

static void test_unknown_keys(void)
{
    FILE_ERROR("{\"bogus\": 1}", "bogus", "unknown key");
    FILE_ERROR("{\"upstream\": {\"conect_timeout_ms\": 1}}", "upstream.conect_timeout_ms",
               "unknown key (did you mean upstream.connect_timeout_ms?)");
    FILE_ERROR("{\"log\": {\"level\": \"info\", \"colour\": true}}", "log.colour", "unknown key");
    FILE_ERROR("{\"listeners\": [{\"port\": 1}, {\"adress\": \"::1\"}]}", "listeners[1].adress",
               "did you mean address?");
    FILE_ERROR("{\"listener\": []}", "listener", "did you mean listeners?");
    ENV_ERROR(ENV("LARDER_BOGUS=1"), "LARDER_BOGUS", "unknown environment variable");
    ENV_ERROR(ENV("LARDER_UPSTREAM_BASE_UR=http://x"), "LARDER_UPSTREAM_BASE_UR",
              "did you mean LARDER_UPSTREAM_BASE_URL?");
    ENV_ERROR(ENV("LARDER_LISTENERS=127.0.0.1:1"), "LARDER_LISTENERS", "did you mean LARDER_LISTEN?");
    FLAG_ERROR(ARGS("--bogus=1"), "--bogus", "unknown flag");
    FLAG_ERROR(ARGS("--upstream.base-ur", "http://x"), "--upstream.base-ur", "did you mean --upstream.base_url?");
    FLAG_ERROR(ARGS("-x"), "-x", "unknown flag");
    FLAG_ERROR(ARGS("serve"), "serve", "unexpected argument");
    FLAG_ERROR(ARGS("--threads"), "--threads", "missing value");
    FLAG_ERROR(ARGS("--version=2"), "--version=2", "takes no value");
    /* Even a name holding a newline leaves the error on one line. */
    FILE_ERROR("{\"log\": {\"lev\\nel\": 1}}", "log.lev?el", "unknown key");
    FLAG_ERROR(ARGS("--a\tb=1"), "--a?b", "unknown flag");
    FILE_ERROR("{\"upstream.base_url\": \"http://x\"}", "upstream.base_url", "is written {\"a\": {\"b\": ...}}");
}

static void test_wrong_types(void)
{
    FILE_ERROR("{\"listeners\": {}}", "listeners", "{} is not valid: expected an array");
    FILE_ERROR("{\"listeners\": [5]}", "listeners[0]", "5 is not valid: expected an object");
    FILE_ERROR("{\"upstream\": 5}", "upstream", "expected an object");
    FILE_ERROR("{\"log\": []}", "log", "expected an object");
    FILE_ERROR("{\"upstream\": {\"base_url\": 5}}", "upstream.base_url", "5 is not valid: expected a string");
    FILE_ERROR("{\"store\": {\"path\": null}}", "store.path", "null is not valid: expected a string");
    FILE_ERROR("{\"store\": {\"path\": \"\"}}", "store.path", "expected a non-empty string");
    FILE_ERROR("{\"public_url\": true}", "public_url", "expected a string or null");
    FILE_ERROR("{\"log\": {\"level\": 3}}", "log.level", "expected a string");
    FILE_ERROR("{\"worker_threads\": \"4\"}", "worker_threads", "\"4\" is not valid: expected an integer");
    FILE_ERROR("{\"client_timeout_ms\": 1.5}", "client_timeout_ms", "1.5 is not valid: expected an integer");
    FILE_ERROR("{\"listeners\": [{\"port\": \"8080\"}]}", "listeners[0].port", "expected an integer");
    FILE_ERROR("{\"listeners\": [{\"address\": 1}]}", "listeners[0].address", "expected a string");
    FILE_ERROR("{\"listeners\": [{\"http2\": \"yes\"}]}", "listeners[0].http2", "expected true or false");
    FILE_ERROR("{\"log\": {\"access_log\": 1}}", "log.access_log", "expected true or false");
    FILE_ERROR("{\"max_request_body\": true}", "max_request_body", "expected a size");
}

static void test_numbers(void)
{
    FILE_ERROR("{\"listeners\": [{\"port\": 0}]}", "listeners[0].port",
               "0 is not valid: expected an integer from 1 to 65535");
    FILE_ERROR("{\"listeners\": [{\"port\": 80}, {\"port\": 65536}]}", "listeners[1].port", "65536 is not valid");
    FILE_ERROR("{\"listeners\": [{\"port\": -80}]}", "listeners[0].port", "-80 is not valid");
    FILE_ERROR("{\"worker_threads\": 1025}", "worker_threads", "expected an integer from 0 to 1024");
    FILE_ERROR("{\"worker_threads\": -1}", "worker_threads", "-1 is not valid");
    FILE_ERROR("{\"upstream\": {\"connect_timeout_ms\": 0}}", "upstream.connect_timeout_ms",
               "expected an integer from 1 to");
    FILE_ERROR("{\"client_timeout_ms\": 2147483648}", "client_timeout_ms", "from 1 to 2147483647");
    FILE_ERROR("{\"upstream\": {\"max_connections\": 0}}", "upstream.max_connections", "from 1 to");
    FLAG_ERROR(ARGS("--threads=abc"), "worker_threads", "\"abc\" is not valid: expected an integer");
    FLAG_ERROR(ARGS("--threads", "-1"), "worker_threads", "\"-1\" is not valid");
    FLAG_ERROR(ARGS("--threads", " 4"), "worker_threads", "\" 4\" is not valid");
    FLAG_ERROR(ARGS("--threads", "99999999999999999999999"), "worker_threads", "is not valid");
    ENV_ERROR(ENV("LARDER_WORKER_THREADS=4x"), "worker_threads", "(from LARDER_WORKER_THREADS)");
    ENV_ERROR(ENV("LARDER_UPSTREAM_IDLE_TIMEOUT_MS=0"), "upstream.idle_timeout_ms", "from 1 to");
}

static void test_sizes(void)
{
    FILE_ERROR("{\"max_request_body\": \"1000\"}", "max_request_body",
               "\"1000\" is not valid: expected a size of at least 1KiB");
    FILE_ERROR("{\"max_request_body\": 1023}", "max_request_body", "at least 1KiB");
    FILE_ERROR("{\"max_request_body\": -5}", "max_request_body", "-5 is not valid");
    FILE_ERROR("{\"max_request_body\": \"lots\"}", "max_request_body", "\"lots\" is not valid");
    FILE_ERROR("{\"max_request_body\": \"1.5GiB\"}", "max_request_body", "expected a size");
    FILE_ERROR("{\"max_request_body\": \"99999999999999999999\"}", "max_request_body", "expected a size");
    FILE_ERROR("{\"max_request_body\": 1.5}", "max_request_body", "expected a size");
    FILE_ERROR("{\"store\": {\"budget\": \"1000KiB\"}}", "store.budget", "at least 1MiB");
    FILE_ERROR("{\"store\": {\"budget\": \"20000000TiB\"}}", "store.budget", "expected a size");
    FLAG_ERROR(ARGS("--store.budget=-1GiB"), "store.budget", "\"-1GiB\" is not valid");
    ENV_ERROR(ENV("LARDER_MAX_REQUEST_BODY=10QiB"), "max_request_body", "\"10QiB\"");
}

static void test_strings(void)
{
    FILE_ERROR("{\"upstream\": {\"base_url\": \"ftp://x\"}}", "upstream.base_url",
               "\"ftp://x\" is not valid: expected an http:// or https:// URL");
    FILE_ERROR("{\"upstream\": {\"base_url\": \"http://\"}}", "upstream.base_url", "with a host");
    FILE_ERROR("{\"upstream\": {\"base_url\": \"storage.googleapis.com\"}}", "upstream.base_url", "http://");
    FILE_ERROR("{\"upstream\": {\"base_url\": \"https://h/?x=1\"}}", "upstream.base_url", "no query");
    FILE_ERROR("{\"upstream\": {\"base_url\": \"https://h:99999\"}}", "upstream.base_url", "is not valid");
    FILE_ERROR("{\"upstream\": {\"base_url\": \"https://[::1/\"}}", "upstream.base_url", "is not valid");
    FILE_ERROR("{\"public_url\": \"http://h/#top\"}", "public_url", "fragment");
    FILE_ERROR("{\"public_url\": \"http://user:pw@h\"}", "public_url", "is not valid");
    FLAG_ERROR(ARGS("--upstream", "http://bad host"), "upstream.base_url", "(from --upstream)");
    FILE_ERROR("{\"virtual_host_suffix\": \"bad_host\"}", "virtual_host_suffix", "expected a host name");
    FILE_ERROR("{\"virtual_host_suffix\": \"a..b\"}", "virtual_host_suffix", "expected a host name");
    FILE_ERROR("{\"virtual_host_suffix\": \"-a.b\"}", "virtual_host_suffix", "expected a host name");
    FILE_ERROR("{\"log\": {\"level\": \"verbose\"}}", "log.level",
               "\"verbose\" is not valid: expected one of error, warn, info, debug");
    FILE_ERROR("{\"log\": {\"format\": \"xml\"}}", "log.format", "expected one of json, text");
    FLAG_ERROR(ARGS("--log.access_log", "maybe"), "log.access_log", "\"maybe\" is not valid: expected true or false");
    FLAG_ERROR(ARGS("--upstream.ca_file=/nonexistent/ca.pem"), "upstream.ca_file",
               "expected a readable file (No such file or directory)");
    FLAG_ERROR(ARGS("--store.path="), "store.path", "expected a non-empty string");
    /* Control characters in a bad value are escaped, so the error stays one line. */
    FLAG_ERROR(ARGS("--log.level=a\nb"), "log.level", "\"a\\x0ab\" is not valid");
}

static void test_listeners(void)
{
    char cert[64];

    conf_test_write_temp(cert, "pem");
    FILE_ERROR("{\"listeners\": []}", "listeners", "[] is not valid: expected at least one listener");
    ENV_ERROR(ENV("LARDER_LISTEN="), "listeners", "expected at least one listener");
    FILE_ERROR("{\"listeners\": [{\"address\": \"example.com\"}]}", "listeners[0].address",
               "\"example.com\" is not valid: expected an IPv4 or IPv6 address, or localhost");
    char json[200];
    snprintf(json, sizeof(json), "{\"listeners\": [{\"port\": 1, \"tls_cert\": \"%s\"}]}", cert);
    FILE_ERROR(json, "listeners[0].tls_key", "null is not valid: expected a PEM file path, since tls_cert is set");
    FILE_ERROR("{\"listeners\": [{\"port\": 1}, {\"port\": 2, \"tls_key\": \"/k\", \"tls_cert\": null}]}",
               "listeners[1].tls_cert", "since tls_key is set");
    FILE_ERROR("{\"listeners\": [{\"tls_cert\": \"/nonexistent.pem\", \"tls_key\": \"/nonexistent.key\"}]}",
               "listeners[0].tls_cert", "\"/nonexistent.pem\" is not valid: expected a readable file");
    FILE_ERROR("{\"listeners\": [{\"port\": 80}, {\"address\": \"127.0.0.1\", \"port\": 80}]}", "listeners[1]",
               "\"127.0.0.1:80\" is not valid: expected an address and port not already taken by listeners[0]");
    FLAG_ERROR(ARGS("--listen", "[::1]:80", "--listen", "[0:0::1]:80"), "listeners[1]", "\"[0:0::1]:80\"");

    char spec[128];
    snprintf(spec, sizeof(spec), "127.0.0.1:443,tls_cert=%s,tls_key=/nonexistent.key", cert);
    FLAG_ERROR(ARGS("--listen", spec), "listeners[0].tls_key",
               "\"/nonexistent.key\" is not valid: expected a readable file");
    FLAG_ERROR(ARGS("--listen", "::1:80"), "listeners[0]", "with IPv6 addresses in brackets");
    FLAG_ERROR(ARGS("--listen", "127.0.0.1"), "listeners[0]", "\"127.0.0.1\" is not valid: expected ADDR:PORT");
    FLAG_ERROR(ARGS("--listen", "[::1]80"), "listeners[0]", "expected ADDR:PORT");
    FLAG_ERROR(ARGS("--listen", "localhost:0"), "listeners[0].port",
               "\"0\" is not valid: expected an integer from 1 to 65535");
    FLAG_ERROR(ARGS("--listen", "localhost:http"), "listeners[0].port", "\"http\" is not valid");
    FLAG_ERROR(ARGS("--listen", "example.com:80"), "listeners[0].address", "expected an IPv4 or IPv6 address");
    FLAG_ERROR(ARGS("--listen", "127.0.0.1:80,http2"), "listeners[0]", "expected ADDR:PORT");
    FLAG_ERROR(ARGS("--listen", "127.0.0.1:80,http2=maybe"), "listeners[0].http2", "expected true or false");
    FLAG_ERROR(ARGS("--listen", "127.0.0.1:80,cert=/x"), "listeners[0].cert", "unknown key");
    FLAG_ERROR(ARGS("--listen", "127.0.0.1:80", "--listen", "127.0.0.1:99999"), "listeners[1].port", "(from --listen)");
    ENV_ERROR(ENV("LARDER_LISTEN=127.0.0.1:80;[::1]"), "listeners[1]", "(from LARDER_LISTEN)");
    unlink(cert);
}

static void test_files(void)
{
    char dir[64] = "/tmp/larder_test_conf_dirXXXXXX";

    CHECK(load("/nonexistent/larder.json", NO_ARGS, NULL) == -1);
    CHECK_STR(err, "config: cannot open /nonexistent/larder.json: No such file or directory");
    ENV_ERROR(ENV("LARDER_CONFIG=/nonexistent/env.json"), "cannot open /nonexistent/env.json", "No such file");
    CHECK(mkdtemp(dir) != NULL);
    CHECK(load(dir, NO_ARGS, NULL) == -1);
    CHECK(strstr(err, dir) != NULL && strstr(err, "Is a directory") != NULL);
    CHECK(rmdir(dir) == 0);

    /* Syntax errors carry file:line:column and jansson's words. */
    char path[64], want[128];
    conf_test_write_temp(path, "{\n  \"worker_threads\": 1\n  \"store\": {}\n}\n");
    CHECK(load(path, NO_ARGS, NULL) == -1);
    snprintf(want, sizeof(want), "config: %s:3:", path);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    CHECK(strstr(err, "'}' expected") != NULL);
    CHECK(strchr(err, '\n') == NULL);
    unlink(path);
    conf_test_write_temp(path, "{\"log\": {}, \"log\": {}}");
    CHECK(load(path, NO_ARGS, NULL) == -1);
    CHECK(strstr(err, "duplicate object key") != NULL);
    unlink(path);
    conf_test_write_temp(path, "");
    CHECK(load(path, NO_ARGS, NULL) == -1);
    CHECK(strstr(err, path) != NULL && strstr(err, "expected") != NULL);
    unlink(path);
    conf_test_write_temp(path, "[{\"port\": 80}]");
    CHECK(load(path, NO_ARGS, NULL) == -1);
    CHECK(strstr(err, "expected a JSON object") != NULL);
    unlink(path);

    /* Errors about a key in the file say which file. */
    conf_test_write_temp(path, "{\"worker_threads\": 2000}");
    CHECK(load(path, NO_ARGS, NULL) == -1);
    snprintf(want, sizeof(want), "(in %s)", path);
    CHECK(strstr(err, want) != NULL);
    unlink(path);
}

/* A value later overridden is still checked: a broken file is broken however larder starts. */
static void test_overridden_values_are_still_checked(void)
{
    char path[64];

    conf_test_write_temp(path, "{\"worker_threads\": \"many\"}");
    CHECK(load(path, ARGS("--threads=2"), NULL) == -1);
    CHECK(strstr(err, "worker_threads") != NULL);
    unlink(path);
}

/* A short buffer truncates the line but never overruns it. */
static void test_small_buffer(void)
{
    char small[16];
    char *argv[] = {"larder", "--bogus-flag-with-a-long-name", NULL};
    conf_t c;
    conf_action_t action;

    memset(small, 'x', sizeof(small));
    CHECK(conf_load(&c, 2, argv, NULL, &action, small, sizeof(small)) == -1);
    CHECK(memchr(small, '\0', sizeof(small)) != NULL);
    CHECK(strncmp(small, "config: --bogus", 15) == 0);
    conf_dispose(&c);
    CHECK(conf_load(&c, 2, argv, NULL, &action, NULL, 0) == -1);
    conf_dispose(&c);
}

int main(void)
{
    test_unknown_keys();
    test_wrong_types();
    test_numbers();
    test_sizes();
    test_strings();
    test_listeners();
    test_files();
    test_overridden_values_are_still_checked();
    test_small_buffer();
    UNIT_DONE();
}
