/*
 * http_call.c - one libcurl request to larder's admin API, and turning its
 * answer into larderctl's exit code and one-line message.
 *
 * larder answers errors in GCS's JSON shape ({"error": {"code", "message"}}),
 * so error.message is what the user reads; an answer without one (a proxy in
 * between, an older larder) is named by its status and URL instead. Anything
 * from the server is flattened to one line before it is printed.
 */
#include "http_call.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"

/* No admin answer comes near this (metrics are kilobytes); more means the URL points somewhere else. */
#define ANSWER_MAX (64u << 20)

typedef struct receiver {
    byte_buffer_t *body;
    bool too_large;
    bool out_of_memory;
} receiver_t;

static size_t on_body(char *data, size_t size, size_t count, void *arg)
{
    receiver_t *r = arg;
    size_t len = size * count;
    if (len > ANSWER_MAX - r->body->len) {
        r->too_large = true;
        return 0; /* anything but len makes curl stop with CURLE_WRITE_ERROR */
    }
    if (byte_buffer_append(r->body, data, len) != 0) {
        r->out_of_memory = true;
        return 0;
    }
    return len;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s != NULL) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

/* list with line appended; NULL, with list freed, when memory ran out. */
static struct curl_slist *append_header(struct curl_slist *list, const char *line)
{
    struct curl_slist *more = curl_slist_append(list, line);
    if (more == NULL)
        curl_slist_free_all(list);
    return more;
}

/* The request's headers, or NULL when memory ran out. The token is copied into the list only (curl sends it
 * from there); the temporary line holding it is wiped. */
static struct curl_slist *request_headers(const ctl_t *ctl, bool has_body)
{
    struct curl_slist *list = curl_slist_append(NULL, "User-Agent: larderctl");
    /* curl would label a POST body application/x-www-form-urlencoded */
    if (list != NULL && has_body)
        list = append_header(list, "Content-Type: application/json");
    if (list == NULL || ctl->token == NULL)
        return list;
    char *line = join("Authorization: Bearer ", ctl->token);
    if (line == NULL) {
        curl_slist_free_all(list);
        return NULL;
    }
    list = append_header(list, line);
    explicit_bzero(line, strlen(line));
    free(line);
    return list;
}

/* Every option the request needs; false when curl refused one (only out of memory can make it). */
static bool set_up(CURL *h, const ctl_t *ctl, const char *url, const char *method, const char *json_body,
                   struct curl_slist *headers, receiver_t *receiver, char *errbuf)
{
    bool ok = curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ctl->timeout_ms) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_WRITEDATA, receiver) == CURLE_OK &&
              curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK;
    if (ok && json_body != NULL)
        ok = curl_easy_setopt(h, CURLOPT_POSTFIELDS, json_body) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(json_body)) == CURLE_OK;
    if (ok && strcmp(method, "GET") != 0 && (strcmp(method, "POST") != 0 || json_body == NULL))
        ok = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
    return ok;
}

/* The exit code and line for a request that got no usable answer. */
static int transfer_failed(const ctl_t *ctl, CURLcode rc, const receiver_t *r, const char *errbuf)
{
    if (rc == CURLE_OUT_OF_MEMORY || r->out_of_memory)
        return ctl_fail(ctl, CTL_FAILED, "out of memory");
    if (r->too_large)
        return ctl_fail(ctl, CTL_SERVER_ERROR, "the answer from %s is larger than %u MiB: is that larder?", ctl->url,
                        ANSWER_MAX >> 20);
    char why[CURL_ERROR_SIZE];
    const char *text = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    one_line(text, strlen(text), why, sizeof(why));
    return ctl_fail(ctl, CTL_UNREACHABLE, "could not reach larder at %s: %s", ctl->url, why);
}

/* What one request's handle points at: it must outlive the handle, so it is freed after curl_easy_cleanup. */
typedef struct call {
    char *url;
    struct curl_slist *headers;
    receiver_t receiver;
    char errbuf[CURL_ERROR_SIZE];
} call_t;

static int perform(const ctl_t *ctl, CURL *h, call_t *call, const char *method, const char *json_body,
                   http_answer_t *answer)
{
    if (!set_up(h, ctl, call->url, method, json_body, call->headers, &call->receiver, call->errbuf))
        return ctl_fail(ctl, CTL_FAILED, "could not set up the request (out of memory?)");
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK)
        return transfer_failed(ctl, rc, &call->receiver, call->errbuf);
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &answer->status) != CURLE_OK)
        return ctl_fail(ctl, CTL_FAILED, "curl did not report the answer's status");
    return CTL_OK;
}

int http_call(const ctl_t *ctl, const char *method, const char *path, const char *json_body, http_answer_t *answer)
{
    *answer = (http_answer_t){0};
    call_t call = {.receiver = {.body = &answer->body}};
    call.url = join(ctl->url, path);
    call.headers = call.url != NULL ? request_headers(ctl, json_body != NULL) : NULL;
    CURL *h = call.headers != NULL ? curl_easy_init() : NULL;
    int result = h != NULL ? perform(ctl, h, &call, method, json_body, answer)
                           : ctl_fail(ctl, CTL_FAILED, "out of memory");
    curl_easy_cleanup(h);
    curl_slist_free_all(call.headers);
    free(call.url);
    if (result != CTL_OK)
        http_answer_dispose(answer);
    return result;
}

static const char *reason_phrase(long status)
{
    static const struct {
        long status;
        const char *phrase;
    } phrases[] = {{400, "Bad Request"},         {401, "Unauthorized"},          {403, "Forbidden"},
                   {404, "Not Found"},           {405, "Method Not Allowed"},    {408, "Request Timeout"},
                   {409, "Conflict"},            {413, "Content Too Large"},     {429, "Too Many Requests"},
                   {500, "Internal Server Error"}, {501, "Not Implemented"},     {502, "Bad Gateway"},
                   {503, "Service Unavailable"}, {504, "Gateway Timeout"}};
    for (size_t i = 0; i < sizeof(phrases) / sizeof(phrases[0]); i++)
        if (phrases[i].status == status)
            return phrases[i].phrase;
    return "";
}

/* error.message of a GCS JSON error body, flattened into out; false when the body has none. */
static bool gcs_error_message(const http_answer_t *answer, char *out, size_t cap)
{
    json_t *doc = json_loadb(answer->body.base != NULL ? answer->body.base : "", answer->body.len, 0, NULL);
    const char *message = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    bool found = message != NULL && message[0] != '\0';
    if (found)
        one_line(message, strlen(message), out, cap);
    json_decref(doc);
    return found;
}

static int status_exit_code(long status)
{
    switch (status) {
    case 401:
        return CTL_UNAUTHENTICATED;
    case 403:
        return CTL_FORBIDDEN;
    case 404:
        return CTL_NOT_FOUND;
    case 409:
        return CTL_CONFLICT;
    default:
        return CTL_SERVER_ERROR;
    }
}

int http_answer_check(const ctl_t *ctl, const char *path, const http_answer_t *answer)
{
    if (answer->status >= 200 && answer->status < 300)
        return CTL_OK;
    int code = status_exit_code(answer->status);
    const char *phrase = reason_phrase(answer->status);
    /* Without a token the server's 401/403 message cannot tell the user what they forgot. */
    const char *hint = ctl->token == NULL && (code == CTL_UNAUTHENTICATED || code == CTL_FORBIDDEN)
                           ? " (no token given: use --token, --token-file or LARDER_TOKEN)"
                           : "";
    char message[512];
    if (gcs_error_message(answer, message, sizeof(message)))
        return ctl_fail(ctl, code, "%ld%s%s: %s%s", answer->status, phrase[0] != '\0' ? " " : "", phrase, message,
                        hint);
    return ctl_fail(ctl, code, "%ld%s%s from %s%s%s", answer->status, phrase[0] != '\0' ? " " : "", phrase, ctl->url,
                    path, hint);
}

json_t *http_answer_json(const ctl_t *ctl, const char *path, const http_answer_t *answer)
{
    json_t *doc = json_loadb(answer->body.base != NULL ? answer->body.base : "", answer->body.len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        (void)ctl_fail(ctl, CTL_SERVER_ERROR, "the answer from %s%s is not a JSON object: is that larder?", ctl->url,
                       path);
        return NULL;
    }
    return doc;
}

static int default_refusal(const ctl_t *ctl, const char *path, const http_answer_t *answer, const void *ctx)
{
    (void)ctx;
    return http_answer_check(ctl, path, answer);
}

int http_call_json(const ctl_t *ctl, const char *method, const char *path, const char *json_body, json_t **out)
{
    return http_call_json_with(ctl, method, path, json_body, default_refusal, NULL, out);
}

int http_call_json_with(const ctl_t *ctl, const char *method, const char *path, const char *json_body,
                        http_refusal_fn refusal, const void *ctx, json_t **out)
{
    *out = NULL;
    http_answer_t answer;
    int rc = http_call(ctl, method, path, json_body, &answer);
    if (rc != CTL_OK)
        return rc;
    rc = refusal(ctl, path, &answer, ctx);
    if (rc == CTL_OK) {
        *out = http_answer_json(ctl, path, &answer);
        rc = *out != NULL ? CTL_OK : CTL_SERVER_ERROR;
    }
    http_answer_dispose(&answer);
    return rc;
}

void http_answer_dispose(http_answer_t *answer)
{
    byte_buffer_dispose(&answer->body);
    answer->status = 0;
}
