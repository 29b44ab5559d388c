/*
 * target.h - a request target, parsed once.
 *
 * Every decision about a request (its API, whether the cache may answer it,
 * which object it names, the upstream URL it is forwarded to) is taken from
 * one target_t. The cache key and the upstream URL of a request that names an
 * object are both derived from the same decoded bucket and object name, so
 * the key can never name another object than the one fetched: the URL is
 * re-encoded from those values, never pasted from the raw target.
 *
 * Parsing also refuses what GCS would refuse with a 400 and what no client
 * can mean: a raw '#' (a fragment never reaches a server), control bytes,
 * bad percent-escapes in an object name, and numeric parameters that are not
 * decimal int64 values.
 */
#ifndef LARDER_TARGET_H
#define LARDER_TARGET_H

#include <h2o.h>
#include <stdbool.h>
#include <stdint.h>

#include "route.h"

typedef struct target_param {
    h2o_iovec_t name;  /* raw, as sent */
    h2o_iovec_t value; /* raw (still percent-encoded); empty for "name" without '=' */
} target_param_t;

/* The query parameters whose values are generation numbers, and the preconditions among them. */
typedef struct target_numbers {
    int64_t generation;               /* -1: absent */
    int64_t if_generation_match;      /* -1: absent; 0 is a value ("no live object") */
    int64_t if_generation_not_match;
    int64_t if_metageneration_match;
    int64_t if_metageneration_not_match;
} target_numbers_t;

typedef struct target {
    route_t route;
    h2o_iovec_t path;    /* raw path, without the query */
    h2o_iovec_t query;   /* raw query, without '?'; len 0 when none */
    target_param_t *params;
    size_t num_params;
    /*
     * The object the target names, decoded; NULL when it names none (a
     * listing, a bucket, a batch, an upload). bucket may be set alone.
     * For the JSON API, object_suffix is what follows /o/NAME (such as
     * "/acl" or "/copyTo/b/B2/o/N2"), raw; empty for the object itself.
     */
    char *bucket;
    char *object;
    h2o_iovec_t object_suffix;
    target_numbers_t numbers;
    bool repeated;       /* a parameter the cache depends on appears more than once: never cached */
    const char *invalid; /* set when the target must be refused with 400: why */
} target_t;

/*
 * Parses a request target (raw path with query) and Host; strings are
 * allocated in pool. vhost_suffix as for route_classify. Never fails: a
 * target GCS would reject sets t->invalid.
 */
void target_parse(target_t *t, h2o_mem_pool_t *pool, const char *path, size_t path_len, const char *host,
                  size_t host_len, const char *vhost_suffix);

/* The first value of a parameter, raw; NULL when absent. */
const h2o_iovec_t *target_param(const target_t *t, const char *name);

/* The three-digit status after the first space of an HTTP status line ("HTTP/1.1 204 ..."); 0 when none. */
int target_parse_status_line(const char *line, size_t len);

/* Parses a decimal int64 ("0" to "9223372036854775807"); false for anything else. */
bool target_parse_int64(const char *s, size_t len, int64_t *out);

/* What an upstream URL leaves out of, and adds to, the client's target. */
typedef struct target_url_edit {
    bool drop_preconditions; /* leave out generation preconditions: larder answers them itself */
    const char *add_param;   /* "name=value" appended to the query, or NULL */
} target_url_edit_t;

/*
 * The upstream URL for t: base_url plus, for a target that names an object,
 * a path re-encoded from the decoded bucket and object name (virtual-hosted
 * XML goes path-style), else the raw path; then the query, edited. Returns a
 * malloc'd string (caller frees), or NULL on no memory.
 */
char *target_upstream_url(const target_t *t, const char *base_url, const target_url_edit_t *edit);

/*
 * The JSON API metadata URL of bucket/object with a query (may be NULL or
 * empty), for revalidating through the JSON API whatever API the client
 * used. malloc'd.
 */
char *target_json_object_url(const char *base_url, const char *bucket, const char *object, const char *query);

/* Percent-decodes into a new NUL-terminated pool string; NULL on a bad escape or a NUL byte. */
char *target_percent_decode(h2o_mem_pool_t *pool, const char *src, size_t len);

#endif
