/*
 * batch.c - batches: what a pipeline holds against eviction until it ends.
 *
 * A batch is a store lease (store.h). The store keeps the lease's expiry,
 * quota and pins, and an opaque owner string, which holds the batch's own
 * record as JSON: {"owner", "created_ms", "ttl_ms", "scratch"}. Each pin
 * carries a note, "gs://B/O", and marks saying whether the batch read or
 * wrote the object: that is how a batch lists its objects by name, and how
 * its end finds the outputs it wrote under its scratch prefixes, even those
 * no longer cached.
 *
 * Reads (get, list, objects) take short store read transactions and may run
 * on a loop; changes go through lease_call.c and answer later on the loop.
 */
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "invalidate.h"
#include "lease_call.h"
#include "state.h"

bool cache_batch_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > CACHE_BATCH_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '~' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

void cache_new_id(char kind, char out[CACHE_NEW_ID_SIZE])
{
    unsigned char r[8];
    if (RAND_bytes(r, sizeof(r)) != 1)
        memset(r, 0, sizeof(r)); /* cannot happen once OpenSSL is seeded; a clash is then refused as 409 */
    snprintf(out, CACHE_NEW_ID_SIZE, "%c-%02x%02x%02x%02x%02x%02x%02x%02x", kind, r[0], r[1], r[2], r[3], r[4], r[5],
             r[6], r[7]);
}

/* --- the record in the lease's owner string --- */

static char *record_encode(const cache_batch_t *b)
{
    json_t *scratch = json_array();
    for (size_t i = 0; scratch != NULL && i < b->nscratch; i++)
        json_array_append_new(scratch, json_string(b->scratch[i]));
    json_t *rec = json_pack("{s:s, s:I, s:I, s:o}", "owner", b->owner, "created_ms", (json_int_t)b->created_ms,
                            "ttl_ms", (json_int_t)b->ttl_ms, "scratch", scratch);
    char *text = rec != NULL ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    return text;
}

/* The batch a lease stands for; false when its owner string is not a batch record. */
static bool record_decode(const store_lease_t *lease, h2o_mem_pool_t *pool, cache_batch_t *b)
{
    memset(b, 0, sizeof(*b));
    json_t *rec = json_loads(lease->owner != NULL ? lease->owner : "", 0, NULL);
    const char *owner = json_string_value(json_object_get(rec, "owner"));
    json_t *scratch = json_object_get(rec, "scratch");
    if (owner == NULL || !json_is_array(scratch)) {
        json_decref(rec);
        return false;
    }
    snprintf(b->id, sizeof(b->id), "%s", lease->id);
    b->owner = h2o_strdup(pool, owner, SIZE_MAX).base;
    b->created_ms = json_integer_value(json_object_get(rec, "created_ms"));
    b->ttl_ms = json_integer_value(json_object_get(rec, "ttl_ms"));
    b->expires_at_ms = lease->expires_at_ms;
    b->quota_bytes = lease->quota_bytes;
    b->pinned_objects = lease->pinned_objects;
    b->pinned_bytes = lease->pinned_bytes;
    b->scratch = h2o_mem_alloc_pool(pool, sizeof(*b->scratch) * (json_array_size(scratch) + 1));
    for (size_t i = 0; i < json_array_size(scratch); i++) {
        const char *prefix = json_string_value(json_array_get(scratch, i));
        if (prefix != NULL)
            b->scratch[b->nscratch++] = h2o_strdup(pool, prefix, SIZE_MAX).base;
    }
    json_decref(rec);
    return true;
}

int cache_batch_get(cache_t *cache, h2o_mem_pool_t *pool, const char *id, cache_batch_t *out)
{
    store_lease_t lease = {0};
    int rc = store_lease_get(cache->store, id, &lease);
    if (rc == STORE_OK && !record_decode(&lease, pool, out))
        rc = STORE_NOT_FOUND; /* a lease that is not a batch's */
    store_lease_free(&lease);
    return rc;
}

typedef struct list_ctx {
    h2o_mem_pool_t *pool;
    cache_batch_fn fn;
    void *ctx;
} list_ctx_t;

static bool list_one(void *p, const store_lease_t *lease)
{
    list_ctx_t *l = p;
    cache_batch_t b;
    return !record_decode(lease, l->pool, &b) || l->fn(l->ctx, &b);
}

int cache_batch_list(cache_t *cache, h2o_mem_pool_t *pool, cache_batch_fn fn, void *ctx)
{
    return store_lease_list(cache->store, list_one, &(list_ctx_t){pool, fn, ctx});
}

bool cache_batch_is_scratch(const cache_batch_t *b, const char *bucket, const char *name)
{
    size_t bucket_len = strlen(bucket);
    for (size_t i = 0; i < b->nscratch; i++) {
        const char *p = b->scratch[i];
        if (strncmp(p, "gs://", 5) != 0 || strncmp(p + 5, bucket, bucket_len) != 0 || p[5 + bucket_len] != '/')
            continue;
        const char *prefix = p + 5 + bucket_len + 1;
        if (strncmp(name, prefix, strlen(prefix)) == 0)
            return true;
    }
    return false;
}

/* --- the objects a batch pinned --- */

typedef struct objects_ctx {
    cache_t *cache;
    cache_batch_object_fn fn;
    void *ctx;
    bool out_of_memory;
} objects_ctx_t;

static bool object_of_pin(void *p, const store_lease_pin_info_t *pin)
{
    objects_ctx_t *o = p;
    /* "gs://B/O": bucket names hold no '/'. A pin without a note is not one of larder's. */
    if (pin->text == NULL || pin->text_len < 8 || memcmp(pin->text, "gs://", 5) != 0)
        return true;
    char *url = malloc(pin->text_len + 1); /* the note is not NUL-terminated */
    if (url != NULL) {
        memcpy(url, pin->text, pin->text_len);
        url[pin->text_len] = '\0';
    }
    if (url == NULL) {
        o->out_of_memory = true; /* a list cut short must not pass for whole: ending a batch relies on it */
        return false;
    }
    char *slash = strchr(url + 5, '/');
    if (slash == NULL) {
        free(url);
        return true;
    }
    *slash = '\0';
    uint64_t bytes = 0;
    store_meta_t meta;
    if (store_meta_get(o->cache->store, &pin->key, &meta) == STORE_OK) {
        bytes = meta.size != STORE_SIZE_UNKNOWN ? meta.size : 0;
        store_meta_free(&meta);
    }
    bool more = o->fn(o->ctx, url + 5, slash + 1, pin->marks, bytes);
    free(url);
    return more;
}

int cache_batch_objects(cache_t *cache, const char *id, cache_batch_object_fn fn, void *ctx)
{
    objects_ctx_t o = {cache, fn, ctx, false};
    int rc = store_lease_keys(cache->store, id, object_of_pin, &o);
    return rc == STORE_OK && o.out_of_memory ? STORE_ERROR : rc;
}

/* --- changes --- */

lease_call_t *cache_batch_put(cache_t *cache, worker_t *worker, const cache_batch_t *batch, cache_batch_done_fn done,
                              void *ctx)
{
    char *record = record_encode(batch);
    lease_call_t *call = record != NULL ? lease_call_new(cache, worker, done, ctx) : NULL;
    if (call != NULL)
        call = lease_call_queued(call, store_lease_put_async(cache->store, batch->id, record, batch->expires_at_ms,
                                                             batch->quota_bytes, lease_call_store_done(), call));
    free(record);
    return call;
}

lease_call_t *cache_batch_extend(cache_t *cache, worker_t *worker, const char *id, int64_t expires_at_ms,
                                 cache_batch_done_fn done, void *ctx)
{
    lease_call_t *call = lease_call_new(cache, worker, done, ctx);
    if (call == NULL)
        return NULL;
    return lease_call_queued(call,
                             store_lease_extend_async(cache->store, id, expires_at_ms, lease_call_store_done(), call));
}

lease_call_t *cache_batch_end(cache_t *cache, worker_t *worker, const char *id, cache_batch_done_fn done, void *ctx)
{
    lease_call_t *call = lease_call_new(cache, worker, done, ctx);
    if (call == NULL)
        return NULL;
    return lease_call_queued(call, store_lease_end_async(cache->store, id, lease_call_store_done(), call));
}

lease_call_t *cache_batch_pin(cache_t *cache, worker_t *worker, const char *id, const char *bucket, const char *name,
                              uint32_t marks, uint64_t expect_bytes, cache_batch_done_fn done, void *ctx)
{
    char note[STORE_PIN_NOTE_MAX + 1];
    int n = snprintf(note, sizeof(note), "gs://%s/%s", bucket, name);
    store_pin_note_t pin_note = {.marks = marks, .text = note, .text_len = (size_t)n};
    if (n < 0 || (size_t)n > STORE_PIN_NOTE_MAX)
        pin_note.text_len = 0; /* a name this long cannot be listed: pinned all the same */
    store_key_t key;
    store_key_make(&key, bucket, strlen(bucket), name, strlen(name));
    lease_call_t *call = lease_call_new(cache, worker, done, ctx);
    if (call == NULL)
        return NULL;
    return lease_call_queued(call, store_lease_pin_async(cache->store, id, &key, &pin_note, expect_bytes,
                                                         lease_call_store_done(), call));
}

void cache_drop(cache_t *cache, const char *bucket, const char *name)
{
    store_key_t key;
    store_key_make(&key, bucket, strlen(bucket), name, strlen(name));
    cache_invalidate(cache, &key);
}
