/*
 * caller.h - who sent a request, as auth/ tells it.
 *
 * A caller_t lives in the request's pool. caller_identify gathers the
 * request's credentials (the Authorization header, access_token, signed-URL
 * and API-key parameters), asks auth, and calls on_known once the identity
 * is decided: at once for anonymous callers and tokens seen lately, after
 * the validation thread's answer otherwise. The owner calls caller_dispose
 * from its pool dispose, so a request that ends while waiting is forgotten.
 */
#ifndef LARDER_CALLER_H
#define LARDER_CALLER_H

#include <h2o.h>

#include "auth.h"
#include "worker.h"

typedef struct caller caller_t;
typedef void (*caller_cb)(caller_t *caller);

struct caller {
    auth_identity_t identity; /* set before on_known runs */
    h2o_req_t *req;
    worker_t *worker;
    caller_cb on_known;
    bool waiting;
    auth_waiter_t waiter;
    worker_wakeup_t wakeup;
};

void caller_identify(caller_t *caller, h2o_req_t *req, caller_cb on_known);
void caller_dispose(caller_t *caller);

/* Answers a caller whose token is invalid (401) or could not be checked (503), in the API's error shape. */
void caller_refuse(caller_t *caller, error_format_t format);

/* The identity as an entry's owner: the name of an identified caller, else "" (nobody). */
static inline const char *caller_owner_name(const caller_t *caller)
{
    return caller->identity.kind == AUTH_IDENTIFIED ? caller->identity.name : "";
}

#endif
