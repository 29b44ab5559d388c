/*
 * forward.h - the pass-through forwarder's state, shared by forward.c (the
 * generator and upstream I/O) and forward_cache.c (what the cache asks of a
 * forwarded request: revalidation, filling, widened ranges, invalidation).
 */
#ifndef LARDER_FORWARD_H
#define LARDER_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "fill.h"
#include "gcs_error.h"
#include "route.h"
#include "worker.h"

typedef struct byte_buffer {
    char *base;
    size_t len;
    size_t cap;
} byte_buffer_t;

typedef enum {
    PLAN_PASS,       /* not cacheable: forward unchanged */
    PLAN_MISS,       /* forward and fill the store with what comes back */
    PLAN_REVALIDATE  /* forward conditionally on the cached ETag; a 304 serves the cache */
} plan_kind_t;

/* What the cache decided for one request; pool-owned, outlives the forwarder. */
typedef struct cache_plan {
    cache_t *cache;
    route_t route;
    cache_request_t creq;
    plan_kind_t kind;
    store_key_t key;
    char caller[65];
    store_meta_t cached;      /* PLAN_REVALIDATE: the entry under check */
    bool have_cached;
    char *revalidate_etag;
    bool lead;                /* registered as the single-flight fill */
    bool widened;             /* the Range sent upstream starts at a chunk boundary */
    uint64_t fetch_first;     /* first byte asked of upstream */
    uint64_t fetch_last;      /* last byte asked of upstream, UINT64_MAX: to the end */
} cache_plan_t;

typedef struct forward {
    h2o_generator_t super;
    upstream_transfer_t transfer;
    h2o_req_t *req;
    worker_t *worker;
    route_t route;
    cache_plan_t *plan;      /* NULL when caching is off */
    struct curl_slist *request_headers;
    char *url;
    char *public_base;

    int status;          /* 0 until the final status line */
    bool head_complete;  /* all headers of a final (non-1xx) response seen */
    bool rewrite_json;   /* buffer the whole body to rewrite links (a JSON or batch response) */
    bool is_head;
    bool started;        /* h2o_start_response called */
    bool responded;      /* a response (proxied or error) is under way */
    bool sending;        /* an h2o_send awaits proceed */
    bool paused;         /* curl's write callback returned PAUSE */
    bool flushing;
    byte_buffer_t pending;
    byte_buffer_t inflight;
    size_t request_body_len;
    curl_off_t uploaded;       /* request body bytes upstream has taken */
    h2o_timeout_entry_t response_timer; /* request sent -> response head */
    h2o_timeout_entry_t idle_timer;     /* silence inside the body, unless paused */
    h2o_timeout_entry_t watchdog;       /* the client holding a send too long */
    uint64_t started_at;
    int64_t upstream_ms;
    uint64_t bytes_sent;
    const char *error;
    const char *cache_state;  /* PASS, MISS, REVALIDATED: for X-Cache and the log */
    bool head_handled;        /* forward_cache_on_head ran */
    bool finish_handled;      /* forward_cache_on_finish ran */
    bool handed_off;          /* the cache answered instead: log nothing here */
    bool revalidated;         /* upstream answered 304 to the cache's own condition */
    uint64_t unsatisfiable_total; /* object size + 1 when the client's range missed it; 0 otherwise */

    /* Filling, and the client's window onto a widened upstream range. */
    fill_t fill;
    bool filling;
    bool windowed;
    uint64_t body_offset;     /* absolute object offset of the next upstream body byte */
    uint64_t window_first;    /* client's bytes: [window_first, window_end) */
    uint64_t window_end;
} forward_t;

/* --- forward_cache.c --- */

/*
 * Looks the request up. Returns NULL when the request was answered from the
 * cache (or is following a fill); otherwise the plan to forward it with
 * (kind PLAN_PASS when nothing is cacheable).
 */
cache_plan_t *forward_cache_plan(h2o_req_t *req, worker_t *worker, const route_t *route);
/* Extra upstream request headers for the plan; *skip tells which client headers to drop. */
int forward_cache_request_headers(forward_t *self, struct curl_slist **list);
bool forward_cache_drops_header(const forward_t *self, const h2o_iovec_t *name);
/*
 * The response head is complete. Runs inside curl's header callback, before
 * any body byte, so it only keeps books: starts the fill, opens the client's
 * window onto a widened range, notes a 304 or an unsatisfiable range.
 */
void forward_cache_on_head(forward_t *self);
/* On the loop, before the response starts: true when the cache answers instead (304 -> hit, or a 416). */
bool forward_cache_take_over(forward_t *self);
/* Body bytes as they arrive; returns the part [*skip, *skip + return) the client gets. */
size_t forward_cache_on_body(forward_t *self, const char *data, size_t len, size_t *skip);
/* The whole JSON body of a buffered response, before links are rewritten. */
void forward_cache_on_json(forward_t *self, const char *body, size_t len);
/* The transfer ended (success or not). */
void forward_cache_on_finish(forward_t *self, bool success);
/* Writes through larder drop the cached copy of what they write. */
void forward_cache_invalidate_for_write(h2o_req_t *req, worker_t *worker, const route_t *route);

/* --- forward.c --- */

/* Forwards req upstream according to plan (NULL: plain pass-through). */
int forward_start(h2o_req_t *req, worker_t *worker, const route_t *route, cache_plan_t *plan);

#endif
