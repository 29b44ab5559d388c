/*
 * test_conf.c - loading configuration that is good: defaults, the order of
 * the layers, aliases, listener specs, sizes, actions and printing.
 * The errors have their own file, test_conf_errors.c.
 */
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
#include "conf_internal.h"
#include "conf_test.h"

static int load(conf_t *conf, const char *const *args, const char *const *env, conf_action_t *action)
{
    return conf_test_load(conf, NULL, args, env, action);
}

static void test_defaults(void)
{
    conf_t c;
    conf_action_t action;

    CHECK(load(&c, NO_ARGS, NULL, &action) == 0);
    CHECK(action == CONF_ACTION_RUN);
    CHECK(c.num_listeners == 1);
    CHECK_STR(c.listeners[0].address, "127.0.0.1");
    CHECK(c.listeners[0].port == 8080);
    CHECK(c.listeners[0].tls_cert == NULL && c.listeners[0].tls_key == NULL);
    CHECK(c.listeners[0].http2);
    CHECK_STR(c.upstream.base_url, "https://storage.googleapis.com");
    CHECK(c.upstream.ca_file == NULL);
    CHECK(c.upstream.connect_timeout_ms == 5000);
    CHECK(c.upstream.response_timeout_ms == 60000);
    CHECK(c.upstream.idle_timeout_ms == 60000);
    CHECK(c.upstream.max_connections == 256);
    CHECK(c.upstream.max_connections_per_host == 64);
    CHECK(c.public_url == NULL);
    CHECK_STR(c.virtual_host_suffix, "storage.googleapis.com");
    CHECK(c.worker_threads >= 1 && c.worker_threads <= 1024);
    CHECK(c.worker_threads == (unsigned)sysconf(_SC_NPROCESSORS_ONLN) || sysconf(_SC_NPROCESSORS_ONLN) > 1024);
    CHECK(c.max_client_connections == 4096);
    CHECK(c.client_timeout_ms == 60000);
    CHECK(c.max_request_body == 1ULL << 30);
    CHECK_STR(c.store.path, "./var/store");
    CHECK(c.store.budget == 10ULL << 30);
    CHECK(c.store.high_water_percent == 95 && c.store.low_water_percent == 85);
    CHECK(c.cache.enabled && !c.cache.honor_no_store && c.cache.max_object_size == 1ULL << 30);
    CHECK(c.cache.default_policy.kind == CACHE_POLICY_ALWAYS && c.cache.num_rules == 0);
    CHECK(c.log.level == LOG_LEVEL_INFO);
    CHECK(c.log.format == LOG_FORMAT_JSON);
    CHECK(c.log.access_log);
    conf_dispose(&c);
}

/* The same key set by each layer in turn: the later layer always wins. */
static void test_layer_order(void)
{
    char path[64];
    conf_t c;
    conf_action_t action;

    conf_test_write_temp(path, "{\"worker_threads\": 2, \"client_timeout_ms\": 2000, \"store\": {\"path\": \"/from/file\"},"
                     " \"log\": {\"level\": \"warn\"}}");
    const char *env[] = {"PATH=/bin", "LARDER_CLIENT_TIMEOUT_MS=3000", "LARDER_STORE_PATH=/from/env", NULL};

    CHECK(load(&c, ARGS("--config", path, "--store.path=/from/flag"), env, &action) == 0);
    CHECK(c.worker_threads == 2);        /* file only */
    CHECK(c.client_timeout_ms == 3000);  /* env beats file */
    CHECK_STR(c.store.path, "/from/flag"); /* flag beats env and file */
    CHECK(c.log.level == LOG_LEVEL_WARN);
    CHECK(c.max_client_connections == 4096); /* nobody: default */
    conf_dispose(&c);

    /* Flags win wherever they stand, even before --config. */
    CHECK(load(&c, ARGS("--worker_threads", "7", "-c", path), env, &action) == 0);
    CHECK(c.worker_threads == 7);
    conf_dispose(&c);
    unlink(path);
}

static void test_config_file_choice(void)
{
    char from_env[64], from_flag[64];
    conf_t c;
    conf_action_t action;

    conf_test_write_temp(from_env, "{\"worker_threads\": 3}");
    conf_test_write_temp(from_flag, "{\"worker_threads\": 4}");
    char env_config[128];
    snprintf(env_config, sizeof(env_config), "LARDER_CONFIG=%s", from_env);
    const char *env[] = {env_config, NULL};

    CHECK(load(&c, NO_ARGS, env, &action) == 0);
    CHECK(c.worker_threads == 3);
    conf_dispose(&c);
    CHECK(load(&c, ARGS("-c", from_flag), env, &action) == 0);
    CHECK(c.worker_threads == 4);
    conf_dispose(&c);
    /* envp NULL: the environment, LARDER_CONFIG included, is not consulted. */
    CHECK(load(&c, NO_ARGS, NULL, &action) == 0);
    CHECK(c.worker_threads >= 1);
    conf_dispose(&c);
    /* An empty LARDER_CONFIG means no file. */
    CHECK(load(&c, NO_ARGS, (const char *[]){"LARDER_CONFIG=", NULL}, &action) == 0);
    conf_dispose(&c);
    unlink(from_env);
    unlink(from_flag);
}

static void test_flag_forms(void)
{
    conf_t c;
    conf_action_t action;

    CHECK(load(&c,
               ARGS("--upstream.base-url=http://127.0.0.1:9000/", "--upstream.connect_timeout_ms", "250",
                    "--log.access-log", "off", "--log.format=text", "--public-url", "https://cache.example/"),
               NULL, &action) == 0);
    CHECK_STR(c.upstream.base_url, "http://127.0.0.1:9000"); /* trailing slash stripped */
    CHECK(c.upstream.connect_timeout_ms == 250);
    CHECK(!c.log.access_log);
    CHECK(c.log.format == LOG_FORMAT_TEXT);
    CHECK_STR(c.public_url, "https://cache.example");
    conf_dispose(&c);

    /* Aliases. */
    CHECK(load(&c, ARGS("--upstream", "http://[::1]:4443/base/", "--threads=5", "--store", "/srv/cache"), NULL,
               &action) == 0);
    CHECK_STR(c.upstream.base_url, "http://[::1]:4443/base");
    CHECK(c.worker_threads == 5);
    CHECK_STR(c.store.path, "/srv/cache");
    conf_dispose(&c);
}

static void test_env_forms(void)
{
    conf_t c;
    conf_action_t action;
    const char *env[] = {"HOME=/root",
                         "LARDER_UPSTREAM_BASE_URL=https://gcs.example:8443",
                         "LARDER_UPSTREAM_MAX_CONNECTIONS_PER_HOST=9",
                         "LARDER_LOG_ACCESS_LOG=no",
                         "LARDER_LOG_LEVEL=debug",
                         "LARDER_MAX_REQUEST_BODY=64KiB",
                         "LARDER_VIRTUAL_HOST_SUFFIX=localhost",
                         "LARDER_LISTEN=127.0.0.1:9001; [::1]:9002,http2=off;",
                         NULL};

    CHECK(load(&c, NO_ARGS, env, &action) == 0);
    CHECK_STR(c.upstream.base_url, "https://gcs.example:8443");
    CHECK(c.upstream.max_connections_per_host == 9);
    CHECK(!c.log.access_log);
    CHECK(c.log.level == LOG_LEVEL_DEBUG);
    CHECK(c.max_request_body == 64 * 1024);
    CHECK_STR(c.virtual_host_suffix, "localhost");
    CHECK(c.num_listeners == 2);
    if (c.num_listeners == 2) {
        CHECK_STR(c.listeners[0].address, "127.0.0.1");
        CHECK(c.listeners[0].port == 9001 && c.listeners[0].http2);
        CHECK_STR(c.listeners[1].address, "::1");
        CHECK(c.listeners[1].port == 9002 && !c.listeners[1].http2);
    }
    conf_dispose(&c);

    /* An empty value unsets a nullable key that the file set. */
    char path[64];
    conf_test_write_temp(path, "{\"public_url\": \"http://a.example\"}");
    const char *unset[] = {"LARDER_PUBLIC_URL=", NULL};
    CHECK(load(&c, ARGS("-c", path), unset, &action) == 0);
    CHECK(c.public_url == NULL);
    conf_dispose(&c);
    unlink(path);
}

/* The first --listen replaces the list from lower layers, later ones append. */
static void test_listen_flags(void)
{
    char path[64];
    conf_t c;
    conf_action_t action;

    conf_test_write_temp(path, "{\"listeners\": [{\"address\": \"0.0.0.0\", \"port\": 80}, {\"port\": 81}]}");
    CHECK(load(&c, ARGS("-c", path), NULL, &action) == 0);
    CHECK(c.num_listeners == 2);
    if (c.num_listeners == 2) {
        CHECK_STR(c.listeners[0].address, "0.0.0.0");
        CHECK_STR(c.listeners[1].address, "127.0.0.1"); /* a file listener's address defaults */
        CHECK(c.listeners[1].port == 81);
    }
    conf_dispose(&c);

    CHECK(load(&c, ARGS("-c", path, "--listen", "127.0.0.2:1", "--listen=localhost:2"),
               (const char *[]){"LARDER_LISTEN=10.0.0.1:3", NULL}, &action) == 0);
    CHECK(c.num_listeners == 2);
    if (c.num_listeners == 2) {
        CHECK_STR(c.listeners[0].address, "127.0.0.2");
        CHECK(c.listeners[0].port == 1);
        CHECK_STR(c.listeners[1].address, "localhost");
        CHECK(c.listeners[1].port == 2);
    }
    conf_dispose(&c);

    /* --listeners (the dotted key) replaces the list; a later --listen adds to it. */
    CHECK(load(&c, ARGS("--listeners", "[::]:1;0.0.0.0:2", "--listen", "[::1]:3"), NULL, &action) == 0);
    CHECK(c.num_listeners == 3);
    if (c.num_listeners == 3) {
        CHECK_STR(c.listeners[0].address, "::");
        CHECK(c.listeners[2].port == 3);
    }
    conf_dispose(&c);
    unlink(path);
}

static void test_listener_specs(void)
{
    char cert[64], key[64], spec[200];
    conf_t c;
    conf_action_t action;

    conf_test_write_temp(cert, "-----BEGIN CERTIFICATE-----\n");
    conf_test_write_temp(key, "-----BEGIN PRIVATE KEY-----\n");
    snprintf(spec, sizeof(spec), "[2001:db8::1]:8443,tls_cert=%s,tls-key=%s,http2=on", cert, key);
    CHECK(load(&c, ARGS("--listen", spec, "--listen", "[::1]:8080,http2=0"), NULL, &action) == 0);
    CHECK(c.num_listeners == 2);
    if (c.num_listeners == 2) {
        CHECK_STR(c.listeners[0].address, "2001:db8::1");
        CHECK(c.listeners[0].port == 8443);
        CHECK_STR(c.listeners[0].tls_cert, cert);
        CHECK_STR(c.listeners[0].tls_key, key);
        CHECK(c.listeners[0].http2);
        CHECK_STR(c.listeners[1].address, "::1");
        CHECK(!c.listeners[1].http2);
        CHECK(c.listeners[1].tls_cert == NULL);
    }
    conf_dispose(&c);

    /* The same through the file. */
    char json[400], path[64];
    snprintf(json, sizeof(json),
             "{\"listeners\": [{\"address\": \"::1\", \"port\": 8443, \"tls_cert\": \"%s\", \"tls_key\": \"%s\","
             " \"http2\": false}, {\"address\": \"127.0.0.1\", \"port\": 8443, \"tls_cert\": null}]}",
             cert, key);
    conf_test_write_temp(path, json);
    CHECK(load(&c, ARGS("--config", path), NULL, &action) == 0);
    CHECK(c.num_listeners == 2);
    if (c.num_listeners == 2) {
        CHECK_STR(c.listeners[0].tls_cert, cert);
        CHECK(!c.listeners[0].http2);
        CHECK(c.listeners[1].tls_cert == NULL && c.listeners[1].http2);
    }
    conf_dispose(&c);
    unlink(path);
    unlink(cert);
    unlink(key);
}

static void test_sizes(void)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"64KiB", 64ULL << 10},
        {"10MiB", 10ULL << 20},
        {"1GiB", 1ULL << 30},
        {"2TiB", 2ULL << 40},
        {"10MB", 10000000},
        {"1GB", 1000000000},
        {"3KB", 3000},
        {"7TB", 7000000000000ULL},
        {"1 GiB", 1ULL << 30},
        {"5gib", 5ULL << 30},
        {"100B", 100},
        {"18446744073709551615", UINT64_MAX},
    };
    static const char *const bad[] = {
        "", "-1", "+5", "1.5GiB", "GiB", "10 ", " 10", "10XB", "0x10", "1 0", "18446744073709551616",
        "16777216TiB", "10MiBs", "1e9",
    };
    uint64_t n;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        n = 12345;
        CHECK(conf_parse_size(good[i].text, &n));
        CHECK(n == good[i].bytes);
        if (n != good[i].bytes)
            fprintf(stderr, "  size \"%s\" read as %llu\n", good[i].text, (unsigned long long)n);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(!conf_parse_size(bad[i], &n));
        if (conf_parse_size(bad[i], &n))
            fprintf(stderr, "  size \"%s\" accepted\n", bad[i]);
    }

    /* In the file, a size may also be a plain number of bytes. */
    char path[64];
    conf_t c;
    conf_action_t action;
    conf_test_write_temp(path, "{\"max_request_body\": 2048, \"store\": {\"budget\": \"1GB\"}}");
    CHECK(load(&c, ARGS("-c", path), NULL, &action) == 0);
    CHECK(c.max_request_body == 2048);
    CHECK(c.store.budget == 1000000000);
    conf_dispose(&c);
    unlink(path);

    /* The least a size may be. */
    CHECK(load(&c, ARGS("--max_request_body=1KiB", "--store.budget=1MiB"), NULL, &action) == 0);
    CHECK(c.max_request_body == 1024 && c.store.budget == 1 << 20);
    conf_dispose(&c);
}

static void test_booleans_and_limits(void)
{
    static const char *const yes[] = {"true", "on", "1", "yes", "TRUE"};
    static const char *const no[] = {"false", "off", "0", "no", "Off"};
    char flag[64];
    conf_t c;
    conf_action_t action;

    for (size_t i = 0; i < 5; i++) {
        snprintf(flag, sizeof(flag), "--log.access_log=%s", no[i]);
        CHECK(load(&c, ARGS(flag), NULL, &action) == 0 && !c.log.access_log);
        conf_dispose(&c);
        snprintf(flag, sizeof(flag), "--log.access_log=%s", yes[i]);
        CHECK(load(&c, ARGS("--log.access_log=off", flag), NULL, &action) == 0 && c.log.access_log);
        conf_dispose(&c);
    }
    CHECK(load(&c, ARGS("--listen", "127.0.0.1:65535", "--listen", "127.0.0.1:1", "--threads", "1024",
                        "--upstream.idle_timeout_ms", "2147483647"),
               NULL, &action) == 0);
    CHECK(c.listeners[0].port == 65535 && c.listeners[1].port == 1);
    CHECK(c.worker_threads == 1024);
    CHECK(c.upstream.idle_timeout_ms == 2147483647u);
    conf_dispose(&c);
}

static void test_actions(void)
{
    conf_t c;
    conf_action_t action;

    CHECK(load(&c, ARGS("--help"), NULL, &action) == 0 && action == CONF_ACTION_HELP);
    conf_dispose(&c);
    CHECK(load(&c, ARGS("-h"), NULL, &action) == 0 && action == CONF_ACTION_HELP);
    conf_dispose(&c);
    CHECK(load(&c, ARGS("--version"), NULL, &action) == 0 && action == CONF_ACTION_VERSION);
    conf_dispose(&c);
    CHECK(load(&c, ARGS("-V"), NULL, &action) == 0 && action == CONF_ACTION_VERSION);
    conf_dispose(&c);
    /* --help needs nothing else, so a broken config file does not stop it. */
    CHECK(load(&c, ARGS("-c", "/nonexistent/larder.json", "--help"), (const char *[]){"LARDER_BOGUS=1", NULL},
               &action) == 0 && action == CONF_ACTION_HELP);
    conf_dispose(&c);

    char path[64];
    conf_test_write_temp(path, "{\"upstream\": {\"base_url\": \"http://localhost:9000\"}}");
    CHECK(load(&c, ARGS("--check-config", path), NULL, &action) == 0);
    CHECK(action == CONF_ACTION_CHECK);
    CHECK_STR(c.upstream.base_url, "http://localhost:9000");
    conf_dispose(&c);
    CHECK(load(&c, ARGS("--check_config=/nonexistent/larder.json"), NULL, &action) == -1);
    CHECK(strstr(err, "/nonexistent/larder.json") != NULL);
    conf_dispose(&c);
    unlink(path);
}

static void test_help_text(void)
{
    char *help = conf_test_print(NULL);

    CHECK(help != NULL);
    if (help == NULL)
        return;
    CHECK(strstr(help, "Usage: larder") != NULL);
    CHECK(strstr(help, CONF_LISTEN_SYNTAX) != NULL);
    CHECK(strstr(help, "[::1]:8443") != NULL);
    CHECK(strstr(help, "LARDER_LISTEN") != NULL);
    CHECK(strstr(help, "--check-config FILE") != NULL);
    for (size_t i = 0; i < conf_num_settings; i++) {
        char env[CONF_KEY_MAX], flag[CONF_KEY_MAX + 4], line[CONF_KEY_MAX + 64];
        const setting_t *s = &conf_settings[i];
        conf_setting_env_name(s, env, sizeof(env));
        snprintf(flag, sizeof(flag), "--%s=", s->key);
        /* NULL is an unset string; "" an empty list (cache.policies, auth.admins). */
        snprintf(line, sizeof(line), "  %s = %s\n", s->key, s->def ? (*s->def ? s->def : "(none)") : "(unset)");
        CHECK(strstr(help, env) != NULL);
        CHECK(strstr(help, flag) != NULL);
        CHECK(strstr(help, line) != NULL);
    }
    free(help);
}

/* The printout is itself a config file that loads back to the same settings. */
static void test_print_effective(void)
{
    conf_t c, again;
    conf_action_t action;
    char path[64];

    CHECK(load(&c, ARGS("--listen", "[::1]:9000,http2=off", "--listen", "127.0.0.1:9001", "--store.budget=3GB",
                        "--max_request_body=5000", "--public_url=http://cache.example", "--log.level=error",
                        "--threads=3"),
               NULL, &action) == 0);
    char *text = conf_test_print(&c);
    CHECK(text != NULL);
    if (text == NULL) {
        conf_dispose(&c);
        return;
    }
    CHECK(strstr(text, "\"listeners\": [") != NULL);
    CHECK(strstr(text, "\"address\": \"::1\"") != NULL);
    CHECK(strstr(text, "\"tls_cert\": null") != NULL);
    CHECK(strstr(text, "\"worker_threads\": 3") != NULL);
    CHECK(strstr(text, "\"budget\": \"3000000000\"") != NULL);
    CHECK(strstr(text, "\"max_request_body\": \"5000\"") != NULL);
    CHECK(strstr(text, "\"level\": \"error\"") != NULL);
    size_t len = strlen(text);
    CHECK(len > 0 && text[len - 1] == '\n');

    conf_test_write_temp(path, text);
    CHECK(load(&again, ARGS("--check-config", path), NULL, &action) == 0);
    CHECK(again.num_listeners == 2 && again.listeners[0].port == 9000 && !again.listeners[0].http2);
    CHECK(again.store.budget == c.store.budget && again.max_request_body == c.max_request_body);
    CHECK_STR(again.public_url, c.public_url);
    CHECK(again.log.level == LOG_LEVEL_ERROR && again.worker_threads == 3);
    conf_dispose(&again);
    unlink(path);
    free(text);
    conf_dispose(&c);
}

static void check_disposed(const conf_t *c)
{
    CHECK(c->listeners == NULL && c->num_listeners == 0);
    CHECK(c->upstream.base_url == NULL && c->upstream.ca_file == NULL);
    CHECK(c->public_url == NULL && c->virtual_host_suffix == NULL && c->store.path == NULL);
}

static void test_dispose(void)
{
    conf_t c;
    conf_action_t action;

    CHECK(load(&c, ARGS("--public_url=http://x.example", "--upstream.ca_file=/dev/null", "--listen", "[::1]:1"),
               NULL, &action) == 0);
    conf_dispose(&c);
    check_disposed(&c);
    conf_dispose(&c); /* twice is harmless */
    /* After a failure too: half-built lists and strings are all released (the sanitizer build checks). */
    CHECK(load(&c, ARGS("--listen", "[::1]:1", "--listen", "[::1]:2,tls_cert=/x", "--public_url=http://y.example"),
               NULL, &action) == -1);
    conf_dispose(&c);
    check_disposed(&c);
}

int main(void)
{
    test_defaults();
    test_layer_order();
    test_config_file_choice();
    test_flag_forms();
    test_env_forms();
    test_listen_flags();
    test_listener_specs();
    test_sizes();
    test_booleans_and_limits();
    test_actions();
    test_help_text();
    test_print_effective();
    test_dispose();
    UNIT_DONE();
}
