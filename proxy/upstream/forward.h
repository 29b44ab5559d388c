/*
 * forward.h - the pass-through generator: streams an upstream exchange to
 * one client, as upstream sent it, except that links pointing at upstream
 * are rewritten to point at larder.
 *
 * The cache uses it for what it does not answer itself, and learns the
 * outcome through hooks rather than by being called from here: upstream/
 * knows nothing of the cache.
 */
#ifndef LARDER_FORWARD_H
#define LARDER_FORWARD_H

#include <stdbool.h>

#include "exchange.h"
#include "target.h"
#include "worker.h"

typedef struct forward_hooks {
    /*
     * Whether to hold this response whole for on_whole (asked once its head
     * came). NULL: the JSON API's JSON (and batch) responses are held when
     * on_whole is set. A body too large to hold streams, and on_whole is not
     * called.
     */
    bool (*holds)(void *ctx, int status, const h2o_headers_t *headers);
    /*
     * A response held whole, before its links are rewritten and before the
     * client sees any of it. Not called for responses that streamed.
     */
    void (*on_whole)(void *ctx, h2o_req_t *req, int status, const h2o_headers_t *headers, const char *body,
                     size_t len);
    /*
     * Called once, when the exchange ended or the request went away first:
     * status is upstream's final status (0 when none came), complete whether
     * the whole response arrived.
     */
    /* Returns the access decision to log ("grant", "denied", ...), or NULL for none. */
    const char *(*on_end)(void *ctx, h2o_req_t *req, int status, bool complete);
} forward_hooks_t;

typedef struct forward_options {
    const char *cache_state;        /* X-Cache and the log: "PASS" or "MISS"; NULL: "PASS" */
    const char *identity;           /* the caller, for the log; NULL: not known. Must outlive the request */
    bool checks_access;             /* the cache holds the answer but not the caller's right to it: if upstream
                                       cannot be asked, 503 (the access could not be decided), not 502 */
    const target_url_edit_t *edit;  /* how the upstream URL differs from the client's target; may be NULL */
    bool (*skip_header)(const h2o_iovec_t *name, void *ctx); /* client headers not to forward; may be NULL */
    const char *const *extra_headers;                        /* NULL-terminated; may be NULL */
    const forward_hooks_t *hooks;   /* may be NULL */
    void *ctx;                      /* for skip_header and hooks; must live as long as the request */
} forward_options_t;

typedef struct forward forward_t;

/*
 * Forwards req upstream and streams the answer back; answers an error itself
 * when upstream cannot be asked. The forward lives in req's pool.
 */
forward_t *forward_start(h2o_req_t *req, const target_t *target, const forward_options_t *options);
/*
 * From on_whole: the answer waits, whole, until forward_release (on the
 * request's loop); the client sees none of it meanwhile. A release before
 * on_whole returned only takes the hold back.
 */
void forward_hold(forward_t *forward);
void forward_release(forward_t *forward);

/*
 * Streams an exchange someone else started (its head has arrived, or it
 * failed) to req, as if forward_start had started it; takes ownership.
 */
void forward_adopt(h2o_req_t *req, const target_t *target, exchange_t *exchange, const forward_options_t *options);

#endif
