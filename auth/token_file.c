/*
 * token_file.c - the static token file: tokens of service identities (and
 * of tests) that larder accepts without asking tokeninfo.
 *
 *   [{"token": "T", "identity": "svc@example.com", "expires": "2027-01-01T00:00:00Z"}, ...]
 *
 * "expires" is optional: RFC 3339, or Unix seconds. The file holds tokens in
 * clear, so it should be readable by larder alone (a warning says so); in
 * memory only their keyed hashes are kept, sorted for binary search.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "auth_internal.h"

typedef struct file_token {
    uint8_t hash[AUTH_HASH_LEN];
    int64_t expires_ms; /* 0: never */
    char *identity;
} file_token_t;

struct token_file {
    file_token_t *tokens;
    size_t count;
};

void token_file_free(token_file_t *file)
{
    if (file == NULL)
        return;
    for (size_t i = 0; i < file->count; i++)
        free(file->tokens[i].identity);
    free(file->tokens);
    free(file);
}

size_t token_file_size(const token_file_t *file)
{
    return file != NULL ? file->count : 0;
}

/* RFC 3339 ("2027-01-01T00:00:00Z", fractions and offsets allowed) to Unix milliseconds; -1 if malformed. */
static int64_t parse_rfc3339(const char *text)
{
    struct tm tm = {0};
    int consumed = 0;
    if (sscanf(text, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &consumed) != 6)
        return -1;
    const char *rest = text + consumed;
    if (*rest == '.')
        for (rest++; *rest >= '0' && *rest <= '9'; rest++)
            ;
    int offset_min = 0;
    if (*rest == 'Z' || *rest == 'z') {
        rest++;
    } else if (*rest == '+' || *rest == '-') {
        int hh, mm, n = 0;
        if (sscanf(rest + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 || n != 5)
            return -1;
        offset_min = (hh * 60 + mm) * (*rest == '-' ? -1 : 1);
        rest += 1 + n;
    } else {
        return -1;
    }
    if (*rest != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return ((int64_t)t - (int64_t)offset_min * 60) * 1000;
}

static int parse_expiry(json_t *value, int64_t *out)
{
    if (value == NULL || json_is_null(value)) {
        *out = 0;
        return 0;
    }
    if (json_is_integer(value) && json_integer_value(value) > 0 && json_integer_value(value) < INT64_MAX / 1000) {
        *out = (int64_t)json_integer_value(value) * 1000;
        return 0;
    }
    if (json_is_string(value) && (*out = parse_rfc3339(json_string_value(value))) > 0)
        return 0;
    return -1;
}

static int compare_tokens(const void *a, const void *b)
{
    return memcmp(((const file_token_t *)a)->hash, ((const file_token_t *)b)->hash, AUTH_HASH_LEN);
}

static int read_entry(json_t *entry, size_t index, token_hasher_t *hasher, file_token_t *out, char *err,
                      size_t errlen)
{
    const char *token = json_string_value(json_object_get(entry, "token"));
    const char *identity = json_string_value(json_object_get(entry, "identity"));
    if (!json_is_object(entry) || token == NULL || *token == '\0' || identity == NULL || *identity == '\0' ||
        strlen(identity) >= AUTH_IDENTITY_MAX) {
        snprintf(err, errlen, "entry %zu needs a non-empty \"token\" and \"identity\" (under %d bytes)", index,
                 AUTH_IDENTITY_MAX);
        return -1;
    }
    if (parse_expiry(json_object_get(entry, "expires"), &out->expires_ms) != 0) {
        snprintf(err, errlen, "entry %zu: \"expires\" must be RFC 3339 or Unix seconds", index);
        return -1;
    }
    const void *parts[] = {token};
    size_t lens[] = {strlen(token)};
    if (token_hasher_digest(hasher, parts, lens, 1, out->hash) != 0 || (out->identity = strdup(identity)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void warn_if_exposed(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
        log_msg(LOG_LEVEL_WARN, "auth", "token file %s is readable by others (mode %03o): it holds tokens in clear",
                path, (unsigned)(st.st_mode & 0777));
}

token_file_t *token_file_load(const char *path, token_hasher_t *hasher, char *err, size_t errlen)
{
    char inner[256];
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "auth.token_file %s: %s", path, jerr.text);
        return NULL;
    }
    token_file_t *file = calloc(1, sizeof(*file));
    if (!json_is_array(root)) {
        snprintf(err, errlen, "auth.token_file %s: expected a JSON array of {\"token\", \"identity\", \"expires\"?}",
                 path);
        goto fail;
    }
    if (file == NULL || (json_array_size(root) != 0 &&
                         (file->tokens = calloc(json_array_size(root), sizeof(*file->tokens))) == NULL)) {
        snprintf(err, errlen, "auth.token_file %s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(root); i++) {
        if (read_entry(json_array_get(root, i), i, hasher, &file->tokens[file->count], inner, sizeof(inner)) != 0) {
            snprintf(err, errlen, "auth.token_file %s: %s", path, inner);
            goto fail;
        }
        file->count++;
    }
    if (file->count != 0) /* an empty file has no array at all, and qsort must not be given NULL */
        qsort(file->tokens, file->count, sizeof(*file->tokens), compare_tokens);
    for (size_t i = 1; i < file->count; i++)
        if (compare_tokens(&file->tokens[i - 1], &file->tokens[i]) == 0) {
            /* Which identity a token names must not depend on the order of a sort. */
            snprintf(err, errlen, "auth.token_file %s: a token is listed more than once", path);
            goto fail;
        }
    json_decref(root);
    warn_if_exposed(path);
    return file;
fail:
    json_decref(root);
    token_file_free(file);
    return NULL;
}

bool token_file_find(const token_file_t *file, const uint8_t hash[AUTH_HASH_LEN], int64_t now_ms, answer_t *out)
{
    if (file == NULL || file->count == 0)
        return false;
    file_token_t probe;
    memcpy(probe.hash, hash, AUTH_HASH_LEN);
    const file_token_t *t = bsearch(&probe, file->tokens, file->count, sizeof(*file->tokens), compare_tokens);
    if (t == NULL)
        return false;
    bool expired = t->expires_ms != 0 && now_ms >= t->expires_ms;
    out->kind = expired ? AUTH_INVALID : AUTH_IDENTIFIED;
    out->expires_ms = t->expires_ms;
    out->until_ms = INT64_MAX; /* the file's answers last until it is reloaded (the epoch) or the token expires */
    snprintf(out->name, sizeof(out->name), "%s", expired ? "" : t->identity);
    return true;
}
