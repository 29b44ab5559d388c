/*
 * upload_complete.c - completing an entry a write made from a partial
 * answer.
 *
 * An XML write is answered with headers only, and a JSON upload with
 * fields= with part of the resource: enough to make the entry at once, not
 * to answer a metadata GET or to give the views Last-Modified. One JSON
 * metadata GET of the very generation written, with the writer's own
 * bearer token, brings the rest; it runs on the loop the write ran on,
 * and the write's answer waits for it (writes.c), so that what the client
 * reads next is exactly what upstream would send. If it fails, the entry
 * stays as it was: hits then carry what the write's answer told.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "exchange.h"
#include "fetch.h"
#include "upload_complete.h"
#include "upload_entry.h"

/* The whole resource: a metadata GET's answer is small. */
#define MAX_RESOURCE_BYTES (1024 * 1024)

/* A completion's fence: out, reported (its wake-up queued to the loop), or let go of by shutdown. */
typedef enum { FENCE_NONE, FENCE_OUT, FENCE_REPORTED, FENCE_ABANDONED } fence_state_t;

struct completion {
    h2o_linklist_t link; /* cache->home_completions[worker id] */
    upload_wait_t *wait; /* told when it ends; NULL: nobody waits */
    cache_t *cache;
    worker_t *worker;
    worker_wakeup_t committed;  /* the fence after the new record committed: on the loop */
    _Atomic int fence;          /* fence_state_t */
    /* Held by the writer from REPORTED until its wake-up is queued, so shutdown never frees c in between. */
    pthread_mutex_t fence_lock;
    exchange_t *exchange;
    store_key_t key;
    int64_t generation;
    char *owner;
    char *authorization; /* "Authorization: ..." */
    byte_buffer_t body;
};

static void completion_free(completion_t *c)
{
    upload_wait_t *wait = c->wait;
    if (wait != NULL) {
        wait->completion = NULL;
        wait->on_done(wait);
    }
    if (h2o_linklist_is_linked(&c->link))
        h2o_linklist_unlink(&c->link);
    exchange_free(c->exchange);
    byte_buffer_dispose(&c->body);
    free(c->owner);
    free(c->authorization);
    pthread_mutex_destroy(&c->fence_lock);
    free(c);
}

/* The XML ETag the entry has (an XML write was answered with it): no resource tells it for composite objects. */
static json_t *current_record(completion_t *c)
{
    store_meta_t stored;
    bool have = store_meta_get(c->cache->store, &c->key, &stored) == STORE_OK;
    const char *committed = have && stored.generation == c->generation ? stored.resource_json : NULL;
    char *latest = cache_record_latest(c->cache, &c->key, c->generation, committed);
    if (have)
        store_meta_free(&stored);
    json_t *record = latest != NULL ? json_loads(latest, 0, NULL) : NULL;
    free(latest);
    return record;
}

/* The resource came: the entry's record is remade from it, if that generation is still the one cached. */
static bool record_whole_resource(completion_t *c, json_t *resource)
{
    bool updated = false;
    upload_facts_t facts;
    upload_facts_init(&facts, NULL, NULL, "");
    upload_facts_from_resource(&facts, resource);
    json_t *record = current_record(c);
    facts.xml_etag = json_string_value(json_object_get(json_object_get(record, "xml"), "etag"));
    facts.owner = c->owner;
    facts.resource = resource;
    facts.resource_headers = exchange_headers(c->exchange);
    store_meta_t meta;
    store_key_t key;
    /* Still that generation (committed, or its fill about to: the update is queued after the fill's record). */
    if (facts.generation == c->generation && facts.bucket != NULL && facts.name != NULL &&
        upload_entry_is_cached(c->cache, facts.bucket, facts.name, c->generation, &key) &&
        cache_same_key(&key, &c->key) && upload_entry_make(c->cache, &facts, &meta) == NULL) {
        updated = store_meta_update(c->cache->store, &c->key, &meta) == STORE_OK;
        if (updated)
            cache_record_note(c->cache, &c->key, meta.generation, meta.resource_json);
        fetch_t *filling = fetch_registry_newest(c->cache, &c->key); /* its chunks may not have committed yet */
        if (filling != NULL)
            fetch_update_meta(filling, &meta);
        fetch_release(filling);
        store_meta_free(&meta);
    }
    json_decref(record);
    return updated;
}

static void on_committed(worker_wakeup_t *wakeup)
{
    completion_free(H2O_STRUCT_FROM_MEMBER(completion_t, committed, wakeup));
}

/* On the writer thread: everything queued before the fence, the new record included, has committed. */
static void on_fence(void *ctx, uint32_t index, store_chunk_outcome_t outcome)
{
    completion_t *c = ctx;
    (void)index, (void)outcome; /* only its timing counts */
    int out = FENCE_OUT;
    pthread_mutex_lock(&c->fence_lock);
    bool reported = atomic_compare_exchange_strong(&c->fence, &out, FENCE_REPORTED);
    if (reported)
        worker_wake(c->worker, &c->committed);
    pthread_mutex_unlock(&c->fence_lock);
    if (!reported)
        completion_free(c); /* abandoned: unlinked, told, and without an exchange by then: only memory is left */
}

/*
 * The client's answer waits until the new record is readable (a read right
 * after it must not find the partial one): a store fence behind the update
 * is reported only after the commit that holds it. True when queued.
 */
static bool fence(completion_t *c)
{
    exchange_free(c->exchange);
    c->exchange = NULL;
    atomic_store(&c->fence, FENCE_OUT);
    if (store_fence(c->cache->store, on_fence, c) == STORE_OK)
        return true;
    atomic_store(&c->fence, FENCE_NONE);
    return false;
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
    bool updated = resource != NULL && record_whole_resource(c, resource);
    json_decref(resource);
    if (!updated || !fence(c))
        completion_free(c);
}

void upload_complete_forget(upload_wait_t *wait)
{
    if (wait->completion != NULL)
        wait->completion->wait = NULL;
    wait->completion = NULL;
}

void upload_complete_start(cache_t *cache, worker_t *worker, const char *authorization, const store_key_t *key,
                           const char *bucket, const char *name, int64_t generation, const char *owner,
                           upload_wait_t *wait)
{
    /* A bearer token stands for its caller on any request; a signature (HMAC) signs only the write it came with. */
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return;
    size_t credentials_len = strlen(authorization);
    completion_t *c = calloc(1, sizeof(*c));
    if (c != NULL && pthread_mutex_init(&c->fence_lock, NULL) != 0) {
        free(c);
        c = NULL;
    }
    char query[48];
    snprintf(query, sizeof(query), "generation=%lld", (long long)generation);
    char *url = target_json_object_url(cache->conf->upstream.base_url, bucket, name, query);
    if (c == NULL || url == NULL || (c->owner = strdup(owner)) == NULL ||
        (c->authorization = malloc(credentials_len + 16)) == NULL) {
        free(url);
        if (c != NULL)
            free(c->owner);
        free(c);
        return;
    }
    snprintf(c->authorization, credentials_len + 16, "Authorization: %s", authorization);
    c->cache = cache;
    c->worker = worker;
    c->committed.cb = on_committed;
    c->key = *key;
    c->generation = generation;
    if (wait != NULL) {
        c->wait = wait;
        wait->completion = c;
    }
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
    while (!h2o_linklist_is_empty(list)) {
        completion_t *c = H2O_STRUCT_FROM_MEMBER(completion_t, link, list->next);
        upload_wait_t *wait = c->wait;
        c->wait = NULL;
        h2o_linklist_unlink(&c->link);
        if (wait != NULL) {
            wait->completion = NULL;
            wait->on_done(wait);
        }
        int out = FENCE_OUT;
        pthread_mutex_lock(&c->fence_lock);
        bool abandoned = atomic_compare_exchange_strong(&c->fence, &out, FENCE_ABANDONED);
        pthread_mutex_unlock(&c->fence_lock);
        if (abandoned)
            continue; /* the fence's outcome (store_close reports it at the latest) frees it */
        worker_wake_cancel(worker, &c->committed); /* not out, or reported and its wake-up still queued */
        completion_free(c);
    }
}

size_t upload_complete_running(cache_t *cache, worker_t *worker)
{
    return cache_list_length(&cache->home_completions[worker->id]);
}
