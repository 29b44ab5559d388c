/*
 * piece.h - one ranged read of an object through larder's own listener: the
 * unit the prefetcher fetches in (a few chunks), on its own curl multi.
 */
#ifndef LARDER_PREFETCH_PIECE_H
#define LARDER_PREFETCH_PIECE_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct piece {
    CURL *easy;
    struct curl_slist *headers;
    void *job;              /* the job and input it is for (prefetcher.c's) */
    size_t input;
    uint64_t first, last;   /* the range asked for */
    uint64_t received;      /* body bytes that came */
    long status;            /* once done */
    uint64_t object_size;   /* from Content-Range ("bytes A-B/SIZE"), 0 when none came */
    char error[CURL_ERROR_SIZE];
} piece_t;

typedef struct piece_request {
    const char *base_url;       /* "http://127.0.0.1:8080" */
    bool insecure;              /* larder's own TLS listener: its certificate is not checked */
    const char *bucket, *name;
    uint64_t first, last;
    const char *authorization;  /* "Authorization: ..." or NULL */
    const char *batch;          /* X-Larder-Batch value or NULL */
    const char *job_id;         /* for the User-Agent, so the access log tells prefetch reads apart */
} piece_request_t;

/* A piece ready to add to a multi (curl_multi_add_handle); NULL for no memory. */
piece_t *piece_new(const piece_request_t *request);
/* After its transfer ended (CURLMSG_DONE): the status and what came, into the piece. */
void piece_finish(piece_t *piece, CURLcode result);
void piece_free(piece_t *piece);

#endif
