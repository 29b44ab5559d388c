/*
 * conf_settings.c - the table of larder's settings: each key's type,
 * limits, embedded default and help text, and storing a value into conf_t.
 *
 * The table is the single source of truth: the defaults layer, the file's
 * schema, the environment names, the flags, --help and the effective-config
 * printout are all derived from it. Cache policies and the cache.policies
 * rules are read in conf_cache.c, lists of strings in conf_list.c. Listeners,
 * with their --listen flag that appends, live in conf_listeners.c instead.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_internal.h"

#define FIELD(member) offsetof(conf_t, member)
/* Ceiling for any millisecond value, so nobody's arithmetic on it overflows an int. */
#define MS_MAX 2147483647
#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define DAY 86400 /* seconds */

/* conf_list.c finds a list's count right after its pointer. */
_Static_assert(offsetof(conf_t, auth.num_admins) == offsetof(conf_t, auth.admins) + sizeof(char **),
               "auth.num_admins must follow auth.admins");

const setting_t conf_settings[] = {
    {"upstream.base_url", SETTING_URL, FIELD(upstream.base_url), false, false, 0, 0, "https://storage.googleapis.com",
     "URL", "where requests go: GCS, or an emulator such as http://127.0.0.1:9000"},
    {"upstream.ca_file", SETTING_STRING, FIELD(upstream.ca_file), true, true, 0, 0, NULL, "PATH",
     "CA bundle (PEM) for upstream TLS; unset: the system trust store"},
    {"upstream.connect_timeout_ms", SETTING_UINT, FIELD(upstream.connect_timeout_ms), false, false, 1, MS_MAX, "5000",
     "MS", "give up connecting to upstream after this long"},
    {"upstream.response_timeout_ms", SETTING_UINT, FIELD(upstream.response_timeout_ms), false, false, 1, MS_MAX,
     "60000", "MS", "longest wait from request sent to response headers"},
    {"upstream.idle_timeout_ms", SETTING_UINT, FIELD(upstream.idle_timeout_ms), false, false, 1, MS_MAX, "60000",
     "MS", "longest silence inside an upstream response body"},
    {"upstream.max_connections", SETTING_UINT, FIELD(upstream.max_connections), false, false, 1, 65536, "256", "N",
     "upstream connections per worker thread, all hosts together"},
    {"upstream.max_connections_per_host", SETTING_UINT, FIELD(upstream.max_connections_per_host), false, false, 1,
     65536, "64", "N", "upstream connections per worker thread to any one host"},
    {"public_url", SETTING_URL, FIELD(public_url), true, false, 0, 0, NULL, "URL",
     "how clients reach larder, for returned links; unset: each request's Host"},
    {"virtual_host_suffix", SETTING_HOSTNAME, FIELD(virtual_host_suffix), false, false, 0, 0,
     "storage.googleapis.com", "HOST", "requests to BUCKET.HOST are XML-API requests for bucket BUCKET"},
    {"worker_threads", SETTING_UINT, FIELD(worker_threads), false, false, 0, 1024, "0", "N",
     "event-loop threads; 0: one per online CPU"},
    {"max_client_connections", SETTING_UINT, FIELD(max_client_connections), false, false, 1, 1048576, "4096", "N",
     "client connections open at once, whole process"},
    {"client_timeout_ms", SETTING_UINT, FIELD(client_timeout_ms), false, false, 1, MS_MAX, "60000", "MS",
     "close a client that accepts no bytes for this long"},
    {"max_request_body", SETTING_SIZE, FIELD(max_request_body), false, false, KiB, 0, "1GiB", "SIZE",
     "larger request bodies are refused with 413"},
    {"min_upload_rate", SETTING_SIZE, FIELD(min_upload_rate), false, false, KiB, 0, "20MB", "SIZE",
     "bytes a second the slowest upload of max_request_body must manage (HTTP/1 request timeout)"},
    {"spill_dir", SETTING_STRING, FIELD(spill_dir), false, false, 0, 0, "/tmp", "PATH",
     "directory for request bodies of 32 MiB and more while they arrive; must be writable"},
    /* GCS keeps a resumable session a week: a session larder forgets sooner is only not cached. */
    {"upload_session_ttl", SETTING_SECONDS, FIELD(upload_session_ttl), false, false, 1, 7 * DAY, "7d", "DURATION",
     "how long a resumable or XML multipart upload may sit idle before larder drops the chunks it keeps for it"},
    {"shutdown_grace_ms", SETTING_UINT, FIELD(shutdown_grace_ms), false, false, 0, MS_MAX, "10000", "MS",
     "on SIGTERM, how long requests in flight may take before they are cut"},
    {"max_buffer_memory", SETTING_SIZE, FIELD(max_buffer_memory), false, false, 16 * MiB, 0, "512MiB", "SIZE",
     "memory all fills and JSON link rewriting may hold together, beyond each connection's own 512 KiB"},
    {"http2.max_requests_per_second", SETTING_UINT, FIELD(http2.max_requests_per_second), false, false, 1, 1000000,
     "2000", "N", "an HTTP/2 connection opening more streams than this in a second is closed"},
    {"http2.max_resets_per_second", SETTING_UINT, FIELD(http2.max_resets_per_second), false, false, 1, 1000000, "200",
     "N", "an HTTP/2 connection resetting more streams than this in a second is closed (CVE-2023-44487)"},
    {"store.path", SETTING_STRING, FIELD(store.path), false, false, 0, 0, "./var/store", "PATH",
     "directory holding the cache"},
    {"store.budget", SETTING_SIZE, FIELD(store.budget), false, false, MiB, 0, "10GiB", "SIZE",
     "disk space the cache may fill before evicting"},
    {"store.high_water_percent", SETTING_UINT, FIELD(store.high_water_percent), false, false, 1, 100, "95", "N",
     "start evicting when the cache fills this share of store.budget"},
    {"store.low_water_percent", SETTING_UINT, FIELD(store.low_water_percent), false, false, 1, 100, "85", "N",
     "evict down to this share of store.budget; below store.high_water_percent"},
    {"store.commit_interval_ms", SETTING_UINT, FIELD(store.commit_interval_ms), false, false, 1, 60000, "20", "MS",
     "longest a written chunk waits for its commit: longer batches more writes per commit"},
    {"store.verify_interval", SETTING_SECONDS, FIELD(store.verify_interval), false, false, 0, 7 * DAY, "60s",
     "DURATION", "a chunk's checksum is checked on its first read, then again on the first read once this long has "
     "passed; 0: on every read"},
    {"store.hot_bytes", SETTING_SIZE, FIELD(store.hot_bytes), false, false, 0, 0, "64MiB", "SIZE",
     "memory for copies of small objects (up to 64 KiB) that hits are served from, split among the worker "
     "threads; 0: every hit reads the store; none while store.verify_interval is 0"},
    {"prefetch.max_bandwidth", SETTING_SIZE, FIELD(prefetch.max_bandwidth), false, false, 0, 0, "0", "SIZE",
     "bytes a second that prefetching (DAGs, prefetch lists) may move from upstream; 0: no bound"},
    {"prefetch.max_connections", SETTING_UINT, FIELD(prefetch.max_connections), false, false, 1, 256, "4", "N",
     "prefetch reads in flight at once"},
    {"batches.max_pinned_bytes", SETTING_SIZE, FIELD(batches.max_pinned_bytes), false, false, 0, 0, "0", "SIZE",
     "what all batches together may pin against eviction; 0: half of store.budget"},
    {"batches.default_quota", SETTING_SIZE, FIELD(batches.default_quota), false, false, 0, 0, "0", "SIZE",
     "the pinned bytes of a batch created without a quota; 0: only batches.max_pinned_bytes bounds it"},
    {"batches.default_ttl", SETTING_SECONDS, FIELD(batches.default_ttl), false, false, 1, 365 * DAY, "1h", "DURATION",
     "the lifetime of a batch created without a ttl (each heartbeat extends it by its ttl again)"},
    {"batches.max_ttl", SETTING_SECONDS, FIELD(batches.max_ttl), false, false, 1, 365 * DAY, "7d", "DURATION",
     "the longest ttl a batch may ask for"},
    {"cache.enabled", SETTING_BOOL, FIELD(cache.enabled), false, false, 0, 0, "true", "BOOL",
     "false: pass everything through, store nothing"},
    {"cache.max_object_size", SETTING_SIZE, FIELD(cache.max_object_size), false, false, 1, 0, "1GiB", "SIZE",
     "larger objects stream through uncached"},
    /* Off by default: GCS marks every private object "private"/"no-store", and
     * caching private objects safely is larder's job, not upstream's veto. */
    {"cache.honor_no_store", SETTING_BOOL, FIELD(cache.honor_no_store), false, false, 0, 0, "false", "BOOL",
     "do not store responses upstream marks Cache-Control private or no-store"},
    {"cache.default_policy", SETTING_CACHE_POLICY, FIELD(cache.default_policy), false, false, 0, 0, "always",
     "POLICY", "how a hit that no rule in cache.policies matches is revalidated"},
    {"cache.policies", SETTING_CACHE_RULES, FIELD(cache.rules), false, false, 0, 0, "", "RULES",
     "policies by bucket and object name prefix; see Cache policies above"},
    {"cache.max_detached_fills", SETTING_UINT, FIELD(cache.max_detached_fills), false, false, 0, 65536, "16", "N",
     "fills that go on to the end after their last client left; more are stopped"},
    {"auth.enabled", SETTING_BOOL, FIELD(auth.enabled), false, false, 0, 0, "true", "BOOL",
     "false: a hit skips upstream only for the exact credentials that filled it"},
    {"auth.tokeninfo_url", SETTING_URL, FIELD(auth.tokeninfo_url), false, false, 0, 0,
     "https://oauth2.googleapis.com/tokeninfo", "URL", "where bearer tokens are validated, as URL?access_token=TOKEN"},
    {"auth.token_file", SETTING_STRING, FIELD(auth.token_file), true, true, 0, 0, NULL, "PATH",
     "JSON file of tokens accepted without asking tokeninfo; unset: none"},
    /* A day at most: a grant outlives the permission upstream revoked by up to this long. */
    {"auth.grant_ttl", SETTING_SECONDS, FIELD(auth.grant_ttl), false, false, 1, DAY, "60", "DURATION",
     "how long an identity's read of an object, once upstream allowed it, is remembered"},
    {"auth.admins", SETTING_STRING_LIST, FIELD(auth.admins), false, false, 0, 0, "", "LIST",
     "identities allowed on the admin endpoints"},
    {"auth.token_cache_ttl", SETTING_SECONDS, FIELD(auth.token_cache_ttl), false, false, 1, DAY, "300", "DURATION",
     "longest a valid tokeninfo answer is reused"},
    {"auth.token_cache_entries", SETTING_UINT, FIELD(auth.token_cache_entries), false, false, 16, 10000000, "100000",
     "N", "token validations remembered at once"},
    {"auth.tokeninfo_timeout_ms", SETTING_UINT, FIELD(auth.tokeninfo_timeout_ms), false, false, 1, MS_MAX, "5000",
     "MS", "give up on a tokeninfo request after this long"},
    {"log.level", SETTING_LOG_LEVEL, FIELD(log.level), false, false, 0, 0, "info", "LEVEL",
     "error, warn, info or debug"},
    {"log.format", SETTING_LOG_FORMAT, FIELD(log.format), false, false, 0, 0, "json", "FORMAT",
     "json (one object a line) or text"},
    {"log.access_log", SETTING_BOOL, FIELD(log.access_log), false, false, 0, 0, "true", "BOOL",
     "log one line per request"},
};
const size_t conf_num_settings = sizeof(conf_settings) / sizeof(conf_settings[0]);

/* Indexed by log_level_t and log_format_t. */
static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const format_names[] = {"json", "text"};

const char *conf_log_level_name(log_level_t level)
{
    return (unsigned)level < 4 ? level_names[level] : "?";
}

const char *conf_log_format_name(log_format_t format)
{
    return (unsigned)format < 2 ? format_names[format] : "?";
}

const setting_t *conf_setting_find(const char *key)
{
    for (size_t i = 0; i < conf_num_settings; i++) {
        if (strcmp(conf_settings[i].key, key) == 0)
            return &conf_settings[i];
    }
    return NULL;
}

/* LARDER_UPSTREAM_BASE_URL for upstream.base_url. */
void conf_setting_env_name(const setting_t *s, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "LARDER_");

    for (const char *k = s->key; *k && n + 1 < size; k++)
        buf[n++] = *k == '.' ? '_' : (char)toupper((unsigned char)*k);
    if (n < size)
        buf[n] = '\0';
}

const setting_t *conf_setting_find_env(const char *name, size_t len)
{
    char env[CONF_KEY_MAX];

    for (size_t i = 0; i < conf_num_settings; i++) {
        conf_setting_env_name(&conf_settings[i], env, sizeof(env));
        if (strlen(env) == len && memcmp(env, name, len) == 0)
            return &conf_settings[i];
    }
    return NULL;
}

/* "upstream" is a section: the file holds it as an object of its keys. */
bool conf_is_section(const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < conf_num_settings; i++) {
        if (strncmp(conf_settings[i].key, name, len) == 0 && conf_settings[i].key[len] == '.')
            return true;
    }
    return false;
}

const char *conf_setting_near_miss(const char *key)
{
    if (conf_is_near_miss(key, "listeners"))
        return "listeners";
    for (size_t i = 0; i < conf_num_settings; i++) {
        if (conf_is_near_miss(key, conf_settings[i].key))
            return conf_settings[i].key;
    }
    return NULL;
}

static int read_name(const setting_t *s, const conf_value_t *value, const char *const *names, size_t num_names,
                     int *out, conf_err_t *err)
{
    const char *text;
    char expected[64];
    size_t n = 0;

    if (conf_read_string(s->key, value, false, &text, err) < 0)
        return -1;
    for (size_t i = 0; i < num_names; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
        n += (size_t)snprintf(expected + n, sizeof(expected) - n, "%s%s", i ? ", " : "", names[i]);
    }
    return conf_invalid(err, s->key, value, "one of %s", expected);
}

static int set_string(conf_t *conf, const setting_t *s, const conf_value_t *value, conf_err_t *err)
{
    char **field = conf_field(conf, s);
    const char *text;
    size_t len;

    if (conf_read_string(s->key, value, s->nullable, &text, err) < 0)
        return -1;
    if (text == NULL)
        return conf_replace_string(field, NULL, 0, err);
    len = strlen(text);
    if (s->kind == SETTING_URL && !conf_url_valid(text, &len))
        return conf_invalid(err, s->key, value,
                            "an http:// or https:// URL with a host, and no query, fragment or user name");
    if (s->kind == SETTING_HOSTNAME && !conf_hostname_valid(text, len))
        return conf_invalid(err, s->key, value, "a host name such as storage.googleapis.com");
    return conf_replace_string(field, text, len, err);
}

/* Checks value against s and, only if it is good, stores it in conf. */
int conf_setting_set(conf_t *conf, const setting_t *s, const conf_value_t *value, conf_err_t *err)
{
    void *field = conf_field(conf, s);
    uint64_t n;
    int which = 0;

    switch (s->kind) {
    case SETTING_STRING:
    case SETTING_URL:
    case SETTING_HOSTNAME:
        return set_string(conf, s, value, err);
    case SETTING_UINT:
        if (conf_read_uint(s->key, value, s->min, s->max, &n, err) < 0)
            return -1;
        *(unsigned *)field = (unsigned)n;
        return 0;
    case SETTING_SIZE:
        if (conf_read_size(s->key, value, s->min, &n, err) < 0)
            return -1;
        *(uint64_t *)field = n;
        return 0;
    case SETTING_SECONDS:
        if (conf_read_seconds(s->key, value, s->min, s->max, &n, err) < 0)
            return -1;
        *(unsigned *)field = (unsigned)n;
        return 0;
    case SETTING_BOOL:
        return conf_read_bool(s->key, value, (bool *)field, err);
    case SETTING_LOG_LEVEL:
        if (read_name(s, value, level_names, 4, &which, err) < 0)
            return -1;
        *(log_level_t *)field = (log_level_t)which;
        return 0;
    case SETTING_LOG_FORMAT:
        if (read_name(s, value, format_names, 2, &which, err) < 0)
            return -1;
        *(log_format_t *)field = (log_format_t)which;
        return 0;
    case SETTING_CACHE_POLICY:
        return conf_cache_policy_read(s->key, value, (cache_policy_t *)field, err);
    case SETTING_CACHE_RULES:
        return conf_cache_rules_read(conf, s->key, value, err);
    case SETTING_STRING_LIST:
        return conf_string_list_read(conf, s, value, err);
    }
    return conf_fail(err, "config: %s: unhandled setting kind", s->key);
}
