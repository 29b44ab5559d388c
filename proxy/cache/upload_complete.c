/*
 * upload_complete.c - completing an entry a write made from a partial
 * answer.
 *
 * An XML write is answered with headers only, and a JSON upload with
 * fields= with part of the resource: enough to make the entry at once, not
 * to answer a metadata GET or to give the views Last-Modified. One JSON
 * metadata GET of the very generation written, with the writer's own
 * credentials, brings the rest; it runs on the loop the write ran on,
 * after the client had its answer. If it fails, the entry stays as it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "upload_complete.h"
#include "upload_entry.h"

/* The whole resource: a metadata GET's answer is small. */
#define MAX_RESOURCE_BYTES (1024 * 1024)

typedef struct completion {
    h2o_linklist_t link; /* cache->home_completions[worker id] */
    cache_t *cache;
    exchange_t *exchange;
    store_key_t key;
    int64_t generation;
    char *owner;
    char *authorization; /* "Authorization: ..." */
    byte_buffer_t body;
} completion_t;

static void completion_free(completion_t *c)
{
    h2o_linklist_unlink(&c->link);
    exchange_free(c->exchange);
    byte_buffer_dispose(&c->body);
    free(c->owner);
    free(c->authorization);
    free(c);
}

/* The resource came: the entry's record is remade from it, if that generation is still the one cached. */
static void record_whole_resource(completion_t *c, json_t *resource)
{
    upload_facts_t facts;
    upload_facts_init(&facts, NULL, NULL, "");
    upload_facts_from_resource(&facts, resource);
    facts.owner = c->owner;
    facts.resource = resource;
    facts.resource_headers = exchange_headers(c->exchange);
    store_meta_t meta;
    store_key_t key;
    /* Still that generation (committed, or its fill about to: the update is queued after the fill's record). */
    if (facts.generation != c->generation || facts.bucket == NULL || facts.name == NULL ||
        !upload_entry_is_cached(c->cache, facts.bucket, facts.name, c->generation, &key) ||
        !cache_same_key(&key, &c->key) || upload_entry_make(c->cache, &facts, &meta) != NULL)
        return;
    if (store_meta_update(c->cache->store, &c->key, &meta) == STORE_OK)
        cache_record_note(c->cache, &c->key, meta.generation, meta.resource_json);
    store_meta_free(&meta);
}

static void on_exchange(exchange_t *x, void *ctx)
{
    completion_t *c = ctx;
    exchange_state_t st = exchange_state(x);
    if (st == EXCHANGE_WAITING)
        return;
    if (st == EXCHANGE_FAILED || exchange_status(x) != 200) {
        completion_free(c);
        return;
    }
    byte_buffer_t piece = {0};
    exchange_take_body(x, &piece);
    byte_buffer_put(&c->body, piece.base, piece.len);
    byte_buffer_dispose(&piece);
    if (c->body.failed || c->body.len > MAX_RESOURCE_BYTES) {
        completion_free(c);
        return;
    }
    if (st != EXCHANGE_DONE)
        return;
    json_t *resource = json_loadb(c->body.base, c->body.len, 0, NULL);
    if (resource != NULL)
        record_whole_resource(c, resource);
    json_decref(resource);
    completion_free(c);
}

void upload_complete_start(cache_t *cache, worker_t *worker, h2o_req_t *req, const store_key_t *key,
                           const char *bucket, const char *name, int64_t generation, const char *owner)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i == -1)
        return;
    const h2o_iovec_t *credentials = &req->headers.entries[i].value;
    completion_t *c = calloc(1, sizeof(*c));
    char query[48];
    snprintf(query, sizeof(query), "generation=%lld", (long long)generation);
    char *url = target_json_object_url(cache->conf->upstream.base_url, bucket, name, query);
    if (c == NULL || url == NULL || (c->owner = strdup(owner)) == NULL ||
        (c->authorization = malloc(credentials->len + 16)) == NULL) {
        free(url);
        if (c != NULL)
            free(c->owner);
        free(c);
        return;
    }
    snprintf(c->authorization, credentials->len + 16, "Authorization: %.*s", (int)credentials->len, credentials->base);
    c->cache = cache;
    c->key = *key;
    c->generation = generation;
    h2o_linklist_insert(&cache->home_completions[worker->id], &c->link);
    const char *extra[] = {c->authorization, NULL};
    exchange_request_t request = {.url = url, .method = h2o_iovec_init(H2O_STRLIT("GET")), .extra = extra,
                                  .strip_accept_encoding = true};
    c->exchange = exchange_start(worker, &request, on_exchange, c);
    free(url);
    if (c->exchange == NULL)
        completion_free(c);
}

void upload_complete_stop(cache_t *cache, worker_t *worker)
{
    h2o_linklist_t *list = &cache->home_completions[worker->id];
    while (!h2o_linklist_is_empty(list))
        completion_free(H2O_STRUCT_FROM_MEMBER(completion_t, link, list->next));
}

size_t upload_complete_running(cache_t *cache, worker_t *worker)
{
    size_t n = 0;
    h2o_linklist_t *list = &cache->home_completions[worker->id];
    for (h2o_linklist_t *l = list->next; l != list; l = l->next)
        n++;
    return n;
}
