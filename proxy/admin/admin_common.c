/*
 * admin_common.c - what the admin endpoints share (admin_common.h): their
 * JSON answers, their access lines, and who may call them.
 */
#include <string.h>

#include "access_log.h"
#include "admin_common.h"
#include "gcs_error.h"

void admin_send_json(h2o_req_t *req, const char *body, size_t len)
{
    admin_send_json_as(req, 200, "OK", body, len);
}

void admin_send_json_as(h2o_req_t *req, int status, const char *reason, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, body, len);
}

void admin_log(h2o_req_t *req, const char *identity, const char *access, const char *why)
{
    access_log_local_answer(req, ROUTE_ADMIN, identity, access, why);
}

/* The caller's name for the log; NULL (and answered 401 or 503) when its credentials were not accepted. */
const char *admin_accepted_caller(caller_t *caller)
{
    h2o_req_t *req = caller->req;
    const auth_identity_t *who = &caller->identity;
    const char *identity = who->name[0] != '\0' ? h2o_strdup(&req->pool, who->name, SIZE_MAX).base : "";
    if (who->kind == AUTH_INVALID || who->kind == AUTH_UNAVAILABLE) {
        caller_refuse(caller, ERROR_FORMAT_JSON);
        admin_log(req, identity, "unauthenticated", "admin endpoint: credentials not accepted");
        return NULL;
    }
    return identity;
}

/*
 * Whether the caller may act: an admin, or (own_user not NULL) the user the
 * request is about. Answers 403 when not; the access name for the log in *access.
 */
bool admin_permitted(caller_t *caller, const char *own_user, const char *identity, const char *refusal,
                     const char **access)
{
    const auth_identity_t *who = &caller->identity;
    bool own = own_user != NULL && who->kind == AUTH_IDENTIFIED && strcmp(own_user, who->name) == 0;
    *access = own ? "owner" : "admin";
    if (own || auth_is_admin(caller->worker->auth, who))
        return true;
    gcs_error_send(caller->req, ERROR_FORMAT_JSON, GCS_ERROR_FORBIDDEN, refusal);
    admin_log(caller->req, identity, "denied", "admin endpoint: not allowed");
    return false;
}
