/*
 * http_call.h - one request to larder's admin API and what its answer means
 * for larderctl's exit code.
 */
#ifndef LARDERCTL_HTTP_CALL_H
#define LARDERCTL_HTTP_CALL_H

#include <jansson.h>

#include "byte_buffer.h"
#include "larderctl.h"

typedef struct http_answer {
    long status;
    byte_buffer_t body; /* owned; not NUL-terminated */
} http_answer_t;

/* Sends METHOD ctl->url + path (with the token, and json_body as application/json when not NULL) and keeps
 * the answer whatever its status: CTL_OK; or CTL_UNREACHABLE (no answer) or CTL_FAILED, the line written. */
int http_call(const ctl_t *ctl, const char *method, const char *path, const char *json_body, http_answer_t *answer);

/* CTL_OK for a 2xx answer; otherwise the exit code its status means (401, 403, anything else), with one line
 * written: the status and the message of the GCS JSON error in the body. */
int http_answer_check(const ctl_t *ctl, const char *path, const http_answer_t *answer);

/* The body as a JSON object (the caller owns it); NULL, with the line written, when it is not one. */
json_t *http_answer_json(const ctl_t *ctl, const char *path, const http_answer_t *answer);

/* http_call, http_answer_check and http_answer_json in one: a request whose success is a JSON object. */
int http_call_json(const ctl_t *ctl, const char *method, const char *path, const char *json_body, json_t **out);
/* The same, with the command's own reading of a refusal (CTL_OK for a success; else it writes the line). */
typedef int (*http_refusal_fn)(const ctl_t *ctl, const char *path, const http_answer_t *answer, const void *ctx);
int http_call_json_with(const ctl_t *ctl, const char *method, const char *path, const char *json_body,
                        http_refusal_fn refusal, const void *ctx, json_t **out);

void http_answer_dispose(http_answer_t *answer);

#endif
