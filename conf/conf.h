/*
 * conf.h - larder's configuration and process-wide logging.
 *
 * Settings are layered: the embedded defaults, then a JSON file
 * (--config FILE or LARDER_CONFIG), then LARDER_* environment variables, then
 * command-line flags. Each layer overrides the one before it. Every setting
 * has one dotted key ("upstream.base_url"); the environment variable is that
 * key upper-cased with dots as underscores (LARDER_UPSTREAM_BASE_URL) and the
 * flag is --key=value (--upstream.base_url=...). Listeners are a list, so the
 * flag and variable take a compact spec; see conf_print_help().
 *
 * A bad setting is reported as one line naming the key, the bad value and
 * what was expected. Unknown keys are errors.
 */
#ifndef LARDER_CONF_H
#define LARDER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LARDER_VERSION "0.1.0"

typedef struct conf_listener {
    char *address;   /* numeric IPv4 or IPv6 address, or "localhost" */
    uint16_t port;
    char *tls_cert;  /* PEM certificate chain; NULL for plain HTTP */
    char *tls_key;   /* PEM private key; set exactly when tls_cert is */
    bool http2;      /* h2 via ALPN on a TLS listener (default on) */
    bool h2c;        /* cleartext HTTP/2 on a plain listener (default off: no Rapid Reset fix in h2o 2.2.5) */
    bool admin;      /* serves only larder's own endpoints (/metrics, /healthz, /readyz), without credentials */
} conf_listener_t;

/* How a cache hit is checked with upstream before it is served. */
typedef enum {
    CACHE_POLICY_ALWAYS,    /* every hit asks upstream conditionally, with the caller's credentials */
    CACHE_POLICY_TTL,       /* no upstream request within ttl_seconds of the fill or last revalidation */
    CACHE_POLICY_IMMUTABLE  /* never revalidate */
} cache_policy_kind_t;

typedef struct cache_policy {
    cache_policy_kind_t kind;
    unsigned ttl_seconds; /* CACHE_POLICY_TTL only */
} cache_policy_t;

/* A policy for one bucket, or for the object names under a prefix in it. */
typedef struct cache_rule {
    char *bucket;
    char *prefix; /* "" for the whole bucket */
    cache_policy_t policy;
} cache_rule_t;

typedef enum { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG } log_level_t;
typedef enum { LOG_FORMAT_JSON, LOG_FORMAT_TEXT } log_format_t;

typedef struct conf {
    conf_listener_t *listeners;
    size_t num_listeners;

    struct {
        char *base_url;                 /* scheme://host[:port], no trailing slash */
        char *ca_file;                  /* NULL: system trust store */
        unsigned connect_timeout_ms;
        unsigned response_timeout_ms;   /* request sent -> response headers */
        unsigned idle_timeout_ms;       /* longest silence inside a response body */
        unsigned max_connections;       /* per worker thread, all hosts */
        unsigned max_connections_per_host; /* per worker thread */
    } upstream;

    char *public_url;          /* NULL: derived from each request's scheme and Host */
    char *virtual_host_suffix; /* "BUCKET.<suffix>" hosts are XML-API bucket hosts */
    unsigned worker_threads;   /* resolved: never 0 after conf_load */
    unsigned max_client_connections; /* per process */
    unsigned client_timeout_ms; /* watchdog: a client that accepts no bytes this long is closed */
    uint64_t max_request_body; /* bytes; larger bodies get 413 */
    uint64_t min_upload_rate;  /* bytes a second: HTTP/1 requests get max_request_body at this rate to arrive */
    char *spill_dir;           /* where h2o spills request bodies too large for memory */
    unsigned upload_session_ttl; /* seconds an idle multi-request upload's pending chunks are kept */
    unsigned shutdown_grace_ms; /* on SIGTERM, how long requests in flight may take to finish */
    uint64_t max_buffer_memory; /* bytes all fills and whole-body rewrites may hold together */

    struct {
        unsigned max_requests_per_second; /* per HTTP/2 connection; faster connections are closed */
        unsigned max_resets_per_second;   /* streams the client reset before their answer, likewise */
    } http2;

    struct {
        char *path;
        uint64_t budget;       /* bytes */
        unsigned high_water_percent; /* evict above this share of the budget */
        unsigned commit_interval_ms; /* the store's writer commits at least this often */
        unsigned low_water_percent;  /* ... down to this share */
        unsigned verify_interval;    /* seconds a chunk's checksum check holds for its later reads; 0: every read */
        uint64_t hot_bytes;          /* memory for copies of small objects, split among the workers; 0: none */
    } store;

    struct {
        uint64_t max_bandwidth;    /* bytes a second all prefetching may move from upstream; 0: no bound */
        unsigned max_connections;  /* prefetch reads at once */
    } prefetch;

    struct {
        uint64_t max_pinned_bytes; /* what all batches together may pin; 0: half of store.budget */
        uint64_t default_quota;    /* a batch created without a quota gets this one; 0: none of its own */
        unsigned default_ttl;      /* seconds, for a batch created without a ttl */
        unsigned max_ttl;          /* seconds: a longer ttl is refused */
    } batches;

    struct {
        bool enabled;
        uint64_t max_object_size;    /* larger objects stream through uncached */
        bool honor_no_store;         /* upstream "Cache-Control: private"/"no-store" responses are not stored */
        cache_policy_t default_policy;
        cache_rule_t *rules;         /* longest matching prefix wins */
        size_t num_rules;
        unsigned max_detached_fills; /* fills that go on with no client waiting */
    } cache;

    struct {
        bool enabled;                 /* false: the old exact-credential rule, with a warning at start-up */
        char *tokeninfo_url;          /* queried as URL?access_token=TOKEN */
        char *token_file;             /* NULL: none */
        unsigned grant_ttl;           /* seconds an upstream-confirmed read grant is remembered */
        char **admins;                /* identities allowed on the admin endpoints */
        size_t num_admins;
        unsigned token_cache_ttl;     /* seconds at most a valid tokeninfo answer is kept */
        unsigned token_cache_entries; /* bound on remembered token validations */
        unsigned tokeninfo_timeout_ms;
    } auth;

    struct {
        log_level_t level;
        log_format_t format;
        bool access_log;
    } log;
} conf_t;

typedef enum {
    CONF_ACTION_RUN,      /* start the server */
    CONF_ACTION_HELP,     /* --help: conf_print_help() and exit 0 */
    CONF_ACTION_VERSION,  /* --version */
    CONF_ACTION_CHECK     /* --check-config FILE: load, validate, print, exit */
} conf_action_t;

/*
 * Builds *conf from defaults, file, environment and flags. envp may be NULL
 * (then the process environment is not consulted). On failure returns -1 and
 * writes one line, without a trailing newline, into err. On success returns 0
 * and sets *action. conf must be released with conf_dispose() either way.
 */
int conf_load(conf_t *conf, int argc, char **argv, char **envp, conf_action_t *action, char *err, size_t errlen);
void conf_dispose(conf_t *conf);
void conf_print_help(FILE *out);
/* Prints the effective configuration as JSON (what --check-config shows). */
void conf_print_effective(const conf_t *conf, FILE *out);

/*
 * The revalidation policy for an object: the rule for bucket with the longest
 * prefix of name, else the default. A pure lookup, safe from any thread.
 */
const cache_policy_t *conf_cache_policy_for(const conf_t *conf, const char *bucket, size_t bucket_len,
                                            const char *name, size_t name_len);

/* Logging: structured (one JSON object a line) or text, to stderr. */
void log_configure(log_level_t level, log_format_t format);
bool log_enabled(log_level_t level);
/* fmt yields the message text; it is escaped for JSON as needed. */
void log_msg(log_level_t level, const char *component, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A unix time in milliseconds as RFC 3339 in UTC, to the millisecond: "2026-11-22T07:13:00.123Z". */
#define LOG_TIME_SIZE 32
void log_time_rfc3339(int64_t unix_ms, char out[LOG_TIME_SIZE]);
/* Writes one prebuilt line (already formatted by the caller) atomically. */
void log_write_line(const char *line, size_t len);
log_format_t log_format(void);

/* A duration: "90", "90s", "5m", "2h" or "1d", in seconds. */
bool conf_parse_seconds(const char *s, uint64_t *out);
/* A size: "1048576", "512KiB", "10GiB"..., in bytes. */
bool conf_parse_size(const char *s, uint64_t *out);

#endif
