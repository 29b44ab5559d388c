/*
 * validator.c - the validation thread: asks tokeninfo about bearer tokens.
 *
 * One thread with its own curl multi handle (the rule is one multi per
 * loop thread; this is the auth loop). A token is asked about once however
 * many requests wait for it: they queue on its validation and are all told
 * when it ends. Answers go into the shared token table, valid ones for at
 * most auth.token_cache_ttl, refusals for AUTH_INVALID_TTL_MS; a tokeninfo
 * that could not be reached or answered 5xx is remembered not at all, and
 * the requests waiting are told the token could not be checked.
 *
 * A token is in clear only inside its validation, and is wiped when it ends.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"

/* tokeninfo answers are a few hundred bytes; more is not tokeninfo. */
#define MAX_ANSWER (64 * 1024)

typedef struct auth_validation {
    struct auth_validation *next;
    uint8_t hash[AUTH_HASH_LEN];
    char *token;
    size_t token_len;
    CURL *easy;
    char *body;
    size_t body_len;
    auth_waiter_t *waiters;
} validation_t;

struct validator {
    auth_t *auth;
    pthread_t thread;
    pthread_mutex_t lock;      /* guards validations and every waiter's links */
    CURLM *multi;
    validation_t *validations; /* queued (easy NULL) or asking */
    _Atomic bool stopping;
};

static const char *const storage_read_scopes[] = {
    "https://www.googleapis.com/auth/devstorage.read_only", "https://www.googleapis.com/auth/devstorage.read_write",
    "https://www.googleapis.com/auth/devstorage.full_control", "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/cloud-platform.read-only"};

static bool scopes_read_storage(const char *scope)
{
    for (const char *p = scope; *p != '\0';) {
        size_t len = strcspn(p, " ");
        for (size_t i = 0; i < sizeof(storage_read_scopes) / sizeof(storage_read_scopes[0]); i++)
            if (len == strlen(storage_read_scopes[i]) && memcmp(p, storage_read_scopes[i], len) == 0)
                return true;
        p += len;
        p += strspn(p, " ");
    }
    return false;
}

/* tokeninfo sends numbers as JSON strings ("exp": "1790000000"); accept either. */
static bool json_number_of(json_t *value, int64_t *out)
{
    if (json_is_integer(value)) {
        *out = (int64_t)json_integer_value(value);
        return true;
    }
    const char *text = json_string_value(value);
    char *end;
    if (text == NULL || *text == '\0')
        return false;
    long long n = strtoll(text, &end, 10);
    if (*end != '\0')
        return false;
    *out = n;
    return true;
}

/* A 200 from tokeninfo, turned into an answer. */
static void read_token_info(const char *body, size_t len, int64_t now, unsigned cap_seconds, answer_t *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *email = json_string_value(json_object_get(root, "email"));
    json_t *verified = json_object_get(root, "email_verified");
    const char *verified_text = json_string_value(verified);
    if ((verified_text != NULL && strcmp(verified_text, "true") != 0) || json_is_false(verified))
        email = NULL; /* an unverified email names nobody */
    const char *subject = json_string_value(json_object_get(root, "sub"));
    const char *name = email != NULL && *email != '\0' ? email : subject;
    const char *scope = json_string_value(json_object_get(root, "scope"));
    int64_t seconds;
    out->expires_ms = 0;
    if (json_number_of(json_object_get(root, "exp"), &seconds) && seconds > 0 && seconds < INT64_MAX / 1000)
        out->expires_ms = seconds * 1000;
    else if (json_number_of(json_object_get(root, "expires_in"), &seconds) && seconds >= 0 &&
             seconds < INT64_MAX / 2000)
        out->expires_ms = now + seconds * 1000;
    out->until_ms = now + (int64_t)cap_seconds * 1000;
    if (root == NULL || !json_is_object(root)) {
        out->kind = AUTH_UNAVAILABLE; /* a 200 that is not tokeninfo's: a misconfigured URL, not a bad token */
        out->name[0] = '\0';
    } else if (out->expires_ms != 0 && out->expires_ms <= now) {
        out->kind = AUTH_INVALID;
        out->name[0] = '\0';
    } else if (name == NULL || *name == '\0' || strlen(name) >= AUTH_IDENTITY_MAX) {
        out->kind = AUTH_UNVERIFIABLE; /* valid, but nobody larder can name: upstream decides each read */
        out->name[0] = '\0';
    } else {
        /* A token that may not read objects is no owner of any: upstream judges its reads. */
        out->kind = scope != NULL && scopes_read_storage(scope) ? AUTH_IDENTIFIED : AUTH_UNVERIFIABLE;
        snprintf(out->name, sizeof(out->name), "%s", name);
    }
    json_decref(root);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    validation_t *v = ctx;
    size_t len = size * nmemb;
    if (v->body_len + len > MAX_ANSWER)
        return 0;
    char *grown = realloc(v->body, v->body_len + len + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + v->body_len, data, len);
    v->body = grown;
    v->body_len += len;
    return len;
}

static int start(validator_t *val, validation_t *v)
{
    const conf_t *conf = val->auth->conf;
    char *escaped = curl_easy_escape(NULL, v->token, (int)v->token_len);
    if (escaped == NULL)
        return -1;
    size_t url_len = strlen(conf->auth.tokeninfo_url) + strlen(escaped) + 32;
    char *url = malloc(url_len);
    if (url != NULL)
        snprintf(url, url_len, "%s%caccess_token=%s", conf->auth.tokeninfo_url,
                 strchr(conf->auth.tokeninfo_url, '?') != NULL ? '&' : '?', escaped);
    OPENSSL_cleanse(escaped, strlen(escaped));
    curl_free(escaped);
    if (url == NULL || (v->easy = curl_easy_init()) == NULL) {
        free(url);
        return -1;
    }
    int ok = curl_easy_setopt(v->easy, CURLOPT_URL, url) == CURLE_OK &&
             curl_easy_setopt(v->easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
             curl_easy_setopt(v->easy, CURLOPT_TIMEOUT_MS, (long)conf->auth.tokeninfo_timeout_ms) == CURLE_OK &&
             curl_easy_setopt(v->easy, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
             curl_easy_setopt(v->easy, CURLOPT_WRITEDATA, v) == CURLE_OK &&
             curl_easy_setopt(v->easy, CURLOPT_PRIVATE, v) == CURLE_OK &&
             curl_multi_add_handle(val->multi, v->easy) == CURLM_OK;
    /* curl copied the URL; it holds the token, so wipe it. */
    OPENSSL_cleanse(url, strlen(url));
    free(url);
    if (!ok) {
        curl_easy_cleanup(v->easy);
        v->easy = NULL;
        return -1;
    }
    return 0;
}

static void validation_free(validator_t *val, validation_t *v)
{
    if (v->easy != NULL) {
        curl_multi_remove_handle(val->multi, v->easy);
        curl_easy_cleanup(v->easy);
    }
    OPENSSL_cleanse(v->token, v->token_len);
    free(v->token);
    free(v->body);
    free(v);
}

/* Tells the waiters, forgets the validation (which may already be out of the list). */
static void finish(validator_t *val, validation_t *v, const answer_t *answer)
{
    answer_key_t key;
    auth_token_key(&key, v->hash);
    if (answer->kind != AUTH_UNAVAILABLE && !answer_table_put(val->auth->tokens, &key, answer))
        log_msg(LOG_LEVEL_WARN, "auth", "out of memory remembering a token's validation");
    pthread_mutex_lock(&val->lock);
    for (validation_t **link = &val->validations; *link != NULL; link = &(*link)->next)
        if (*link == v) {
            *link = v->next;
            break;
        }
    for (auth_waiter_t *w = v->waiters, *next; w != NULL; w = next) {
        next = w->next;
        w->next = NULL;
        w->validation = NULL;
        w->identity.kind = answer->kind;
        snprintf(w->identity.name, sizeof(w->identity.name), "%s", answer->name);
        w->cb(w); /* under the lock: auth_wait_cancel cannot return while it runs */
    }
    pthread_mutex_unlock(&val->lock);
    validation_free(val, v);
}

/* A transfer ended: what tokeninfo said, as an answer. */
static void on_done(validator_t *val, CURL *easy, CURLcode result)
{
    validation_t *v = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&v);
    long status = 0;
    if (result == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    int64_t now = auth_now_ms();
    answer_t answer = {.kind = AUTH_UNAVAILABLE, .until_ms = now};
    if (status == 200) {
        read_token_info(v->body != NULL ? v->body : "", v->body_len, now, val->auth->conf->auth.token_cache_ttl,
                        &answer);
    } else if (status >= 400 && status < 500 && status != 408 && status != 429) {
        /* Google answers 400 invalid_token; a 4xx means "not this token", but for "too slow" and "too many". */
        answer.kind = AUTH_INVALID;
        answer.until_ms = now + AUTH_INVALID_TTL_MS;
    }
    if (answer.kind == AUTH_UNAVAILABLE)
        log_msg(LOG_LEVEL_WARN, "auth", "tokeninfo could not check a token: %s",
                result != CURLE_OK ? curl_easy_strerror(result) : status == 200 ? "not a tokeninfo answer" : "HTTP error");
    finish(val, v, &answer);
}

static void start_queued(validator_t *val)
{
    pthread_mutex_lock(&val->lock);
    validation_t *failed = NULL;
    for (validation_t **link = &val->validations; *link != NULL;) {
        validation_t *v = *link;
        if (v->easy == NULL && start(val, v) != 0) {
            *link = v->next; /* cannot even ask: unavailable, told below outside this walk */
            v->next = failed;
            failed = v;
            continue;
        }
        link = &v->next;
    }
    pthread_mutex_unlock(&val->lock);
    for (validation_t *v = failed, *next; v != NULL; v = next) {
        next = v->next;
        finish(val, v, &(answer_t){.kind = AUTH_UNAVAILABLE});
    }
}

static void *validator_main(void *arg)
{
    validator_t *val = arg;
    while (!atomic_load(&val->stopping)) {
        start_queued(val);
        int running = 0, left = 0;
        curl_multi_perform(val->multi, &running);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(val->multi, &left)) != NULL)
            if (msg->msg == CURLMSG_DONE)
                on_done(val, msg->easy_handle, msg->data.result);
        curl_multi_poll(val->multi, NULL, 0, 1000, NULL);
    }
    return NULL;
}

validator_t *validator_start(auth_t *auth, char *err, size_t errlen)
{
    validator_t *val = calloc(1, sizeof(*val));
    if (val == NULL || (val->multi = curl_multi_init()) == NULL) {
        snprintf(err, errlen, "auth: cannot set up the tokeninfo client");
        free(val);
        return NULL;
    }
    val->auth = auth;
    pthread_mutex_init(&val->lock, NULL);
    atomic_init(&val->stopping, false);
    if (pthread_create(&val->thread, NULL, validator_main, val) != 0) {
        snprintf(err, errlen, "auth: cannot start the validation thread");
        curl_multi_cleanup(val->multi);
        pthread_mutex_destroy(&val->lock);
        free(val);
        return NULL;
    }
    return val;
}

void validator_stop(validator_t *val)
{
    if (val == NULL)
        return;
    atomic_store(&val->stopping, true);
    curl_multi_wakeup(val->multi);
    pthread_join(val->thread, NULL);
    /* The workers are gone: nobody waits any more. */
    for (validation_t *v = val->validations, *next; v != NULL; v = next) {
        next = v->next;
        validation_free(val, v);
    }
    curl_multi_cleanup(val->multi);
    pthread_mutex_destroy(&val->lock);
    free(val);
}

bool validator_wait(validator_t *val, const char *token, size_t token_len, const uint8_t hash[AUTH_HASH_LEN],
                    auth_waiter_t *waiter, answer_t *out)
{
    answer_key_t key;
    auth_token_key(&key, hash);
    pthread_mutex_lock(&val->lock);
    /* A validation may have ended between the caller's lookup and this lock: its answer is in the table. */
    if (answer_table_get(val->auth->tokens, &key, auth_now_ms(), out)) {
        pthread_mutex_unlock(&val->lock);
        return false;
    }
    validation_t *v = val->validations;
    while (v != NULL && memcmp(v->hash, hash, AUTH_HASH_LEN) != 0)
        v = v->next;
    bool fresh = v == NULL;
    if (fresh) {
        v = calloc(1, sizeof(*v));
        char *copy = v != NULL ? malloc(token_len + 1) : NULL;
        if (copy == NULL) {
            pthread_mutex_unlock(&val->lock);
            free(v);
            *out = (answer_t){.kind = AUTH_UNAVAILABLE};
            return false;
        }
        memcpy(copy, token, token_len);
        copy[token_len] = '\0';
        v->token = copy;
        v->token_len = token_len;
        memcpy(v->hash, hash, AUTH_HASH_LEN);
        v->next = val->validations;
        val->validations = v;
    }
    waiter->validation = v;
    waiter->next = v->waiters;
    v->waiters = waiter;
    pthread_mutex_unlock(&val->lock);
    if (fresh)
        curl_multi_wakeup(val->multi);
    return true;
}

void validator_cancel(validator_t *val, auth_waiter_t *waiter)
{
    pthread_mutex_lock(&val->lock);
    validation_t *v = waiter->validation;
    if (v != NULL) {
        for (auth_waiter_t **link = &v->waiters; *link != NULL; link = &(*link)->next)
            if (*link == waiter) {
                *link = waiter->next;
                break;
            }
        waiter->validation = NULL;
        waiter->next = NULL;
    }
    pthread_mutex_unlock(&val->lock);
}
