/*
 * piece.c - one ranged read through larder's own listener (see piece.h).
 *
 * The body is counted and dropped: what matters is that larder filled its
 * store on the way. The read is an ordinary client's, so the object's JSON
 * media URL is built the way a client would (the name escaped whole).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "piece.h"

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    (void)data;
    piece_t *p = ctx;
    p->received += size * n;
    return size * n;
}

static size_t on_header(char *line, size_t size, size_t n, void *ctx)
{
    piece_t *p = ctx;
    size_t len = size * n;
    char text[160];
    if (len < 15 || len >= sizeof(text) || strncasecmp(line, "content-range:", 14) != 0)
        return len;
    memcpy(text, line, len);
    text[len] = '\0';
    const char *slash = strchr(text, '/');
    unsigned long long total;
    if (slash != NULL && sscanf(slash + 1, "%llu", &total) == 1)
        p->object_size = total;
    return len;
}

static bool add_header(piece_t *p, const char *line)
{
    struct curl_slist *grown = curl_slist_append(p->headers, line);
    if (grown == NULL)
        return false;
    p->headers = grown;
    return true;
}

static bool set_headers(piece_t *p, const piece_request_t *r)
{
    char line[256];
    snprintf(line, sizeof(line), "Range: bytes=%" PRIu64 "-%" PRIu64, r->first, r->last);
    if (!add_header(p, line))
        return false;
    snprintf(line, sizeof(line), "User-Agent: larder-prefetch/%s", r->job_id);
    if (!add_header(p, line) || !add_header(p, "X-Larder-Prefetch: 1") ||
        (r->authorization != NULL && !add_header(p, r->authorization)))
        return false;
    if (r->batch != NULL) {
        snprintf(line, sizeof(line), "X-Larder-Batch: %s", r->batch);
        if (!add_header(p, line))
            return false;
    }
    return true;
}

static char *media_url(CURL *easy, const piece_request_t *r)
{
    char *bucket = curl_easy_escape(easy, r->bucket, 0), *name = curl_easy_escape(easy, r->name, 0);
    char *url = NULL;
    if (bucket != NULL && name != NULL) {
        size_t len = strlen(r->base_url) + strlen(bucket) + strlen(name) + 40;
        if ((url = malloc(len)) != NULL)
            snprintf(url, len, "%s/storage/v1/b/%s/o/%s?alt=media", r->base_url, bucket, name);
    }
    curl_free(bucket);
    curl_free(name);
    return url;
}

piece_t *piece_new(const piece_request_t *r)
{
    piece_t *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->easy = curl_easy_init()) == NULL) {
        free(p);
        return NULL;
    }
    p->first = r->first;
    p->last = r->last;
    char *url = media_url(p->easy, r);
    bool ok = url != NULL && set_headers(p, r) && curl_easy_setopt(p->easy, CURLOPT_URL, url) == CURLE_OK &&
              curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, p->headers) == CURLE_OK &&
              curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
              curl_easy_setopt(p->easy, CURLOPT_WRITEDATA, p) == CURLE_OK &&
              curl_easy_setopt(p->easy, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
              curl_easy_setopt(p->easy, CURLOPT_HEADERDATA, p) == CURLE_OK &&
              curl_easy_setopt(p->easy, CURLOPT_ERRORBUFFER, p->error) == CURLE_OK &&
              curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p) == CURLE_OK;
    if (ok && r->insecure)
        ok = curl_easy_setopt(p->easy, CURLOPT_SSL_VERIFYPEER, 0L) == CURLE_OK &&
             curl_easy_setopt(p->easy, CURLOPT_SSL_VERIFYHOST, 0L) == CURLE_OK;
    free(url);
    if (!ok) {
        piece_free(p);
        return NULL;
    }
    return p;
}

void piece_finish(piece_t *p, CURLcode result)
{
    p->status = 0;
    if (result == CURLE_OK)
        curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &p->status);
    else if (p->error[0] == '\0')
        snprintf(p->error, sizeof(p->error), "%s", curl_easy_strerror(result));
}

void piece_free(piece_t *p)
{
    if (p == NULL)
        return;
    if (p->easy != NULL)
        curl_easy_cleanup(p->easy);
    curl_slist_free_all(p->headers);
    free(p);
}
