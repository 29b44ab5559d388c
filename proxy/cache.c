/*
 * cache.c - opens the store for the proxy, keeps each object's record, and
 * tracks whole-object fills so that concurrent readers share one upstream GET.
 */
#include "cache.h"
#include "route.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* How long a finished fill stays visible: the writer commits its last chunks meanwhile. */
#define FILL_LINGER_MS 5000

/* Past this age the store has long committed a record: the store's copy is current again. */
#define RECENT_RECORD_MS 10000
#define RECENT_RECORD_MAX 1024

struct recent_record {
    recent_record_t *next;
    store_key_t key;
    int64_t generation;
    uint64_t noted_at_ms;
    char *record;
};

struct fill_entry {
    fill_entry_t *next;
    store_key_t key;
    char caller[65];
    bool done;
    uint64_t done_at_ms;
};

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void store_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    log_msg(level <= 0 ? LOG_LEVEL_ERROR : level == 1 ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, "store", "%s", msg);
}

int cache_open(cache_t **out, const conf_t *conf)
{
    *out = NULL;
    if (!conf->cache.enabled)
        return 0;
    cache_t *cache = calloc(1, sizeof(*cache));
    if (cache == NULL)
        return -1;
    cache->conf = conf;
    pthread_mutex_init(&cache->fills_lock, NULL);
    store_config_t config = {
        .path = conf->store.path,
        .budget = conf->store.budget,
        .high_water = conf->store.high_water_percent / 100.0,
        .low_water = conf->store.low_water_percent / 100.0,
        .commit_interval_ms = 20,
        .max_queue_bytes = 256u * 1024 * 1024,
        .log = store_log,
    };
    if (store_open(&cache->store, &config) != STORE_OK) {
        log_msg(LOG_LEVEL_ERROR, "cache", "cannot open the store at %s", conf->store.path);
        cache_close(cache);
        return -1;
    }
    *out = cache;
    return 0;
}

void cache_close(cache_t *cache)
{
    if (cache == NULL)
        return;
    if (cache->store != NULL)
        store_close(cache->store);
    while (cache->fills != NULL) {
        fill_entry_t *next = cache->fills->next;
        free(cache->fills);
        cache->fills = next;
    }
    while (cache->recent != NULL) {
        recent_record_t *next = cache->recent->next;
        free(cache->recent->record);
        free(cache->recent);
        cache->recent = next;
    }
    pthread_mutex_destroy(&cache->fills_lock);
    free(cache);
}

/* --- records --- */

static bool is_replayed_header(const h2o_iovec_t *name)
{
    /* Framing, per-response identifiers and time-relative headers are made fresh on every hit. */
    static const char *const skipped[] = {"content-length", "content-range", "date", "age", "expires", "set-cookie",
                                          "x-guploader-uploadid", "x-guploader-response-body-transformations",
                                          "warning", "alt-svc", "x-cache", "location", "connection",
                                          "transfer-encoding", "keep-alive"};
    for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++)
        if (h2o_lcstris(name->base, name->len, skipped[i], strlen(skipped[i])))
            return false;
    return true;
}

json_t *cache_capture_headers(const h2o_headers_t *headers)
{
    json_t *list = json_array();
    if (list == NULL)
        return NULL;
    for (size_t i = 0; i != headers->size; i++) {
        const h2o_header_t *h = &headers->entries[i];
        if (!is_replayed_header(h->name))
            continue;
        json_t *pair = json_pack("[s#s#]", h->name->base, (int)h->name->len, h->value.base, (int)h->value.len);
        if (pair == NULL || json_array_append_new(list, pair) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

static const char *flavour_key(cache_flavour_t flavour)
{
    return flavour == CACHE_FLAVOUR_JSON ? "json" : "xml";
}

char *cache_record_merge(const char *record, cache_flavour_t flavour, const char *etag, json_t *headers,
                         json_t *resource, json_t *resource_headers)
{
    json_t *root = record != NULL ? json_loads(record, 0, NULL) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        root = json_object();
    }
    if (root == NULL)
        return NULL;
    if (etag != NULL && headers != NULL)
        json_object_set_new(root, flavour_key(flavour), json_pack("{s:s,s:O}", "etag", etag, "headers", headers));
    if (resource != NULL)
        json_object_set(root, "resource", resource);
    if (resource_headers != NULL)
        json_object_set(root, "resource_headers", resource_headers);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* --- records not yet committed --- */

static void free_recent(recent_record_t *r)
{
    free(r->record);
    free(r);
}

/* Drops expired entries, the entry for key (when given), and the oldest past the cap. Lock held. */
static void prune_recent(cache_t *cache, uint64_t now, const store_key_t *key)
{
    size_t kept = 0;
    for (recent_record_t **p = &cache->recent; *p != NULL;) {
        recent_record_t *r = *p;
        bool drop = now - r->noted_at_ms > RECENT_RECORD_MS || kept >= RECENT_RECORD_MAX ||
                    (key != NULL && memcmp(r->key.hash, key->hash, sizeof(key->hash)) == 0);
        if (drop) {
            *p = r->next;
            free_recent(r);
        } else {
            kept++;
            p = &r->next;
        }
    }
}

void cache_record_note(cache_t *cache, const store_key_t *key, int64_t generation, const char *record)
{
    recent_record_t *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->record = strdup(record)) == NULL) {
        free(r);
        return; /* merges fall back to the store's copy */
    }
    r->key = *key;
    r->generation = generation;
    pthread_mutex_lock(&cache->fills_lock);
    r->noted_at_ms = monotonic_ms();
    prune_recent(cache, r->noted_at_ms, key);
    r->next = cache->recent; /* newest first, so the cap drops the oldest */
    cache->recent = r;
    pthread_mutex_unlock(&cache->fills_lock);
}

char *cache_record_latest(cache_t *cache, const store_key_t *key, int64_t generation, const char *committed)
{
    char *latest = NULL;
    pthread_mutex_lock(&cache->fills_lock);
    prune_recent(cache, monotonic_ms(), NULL);
    for (recent_record_t *r = cache->recent; r != NULL; r = r->next)
        if (memcmp(r->key.hash, key->hash, sizeof(key->hash)) == 0) {
            if (r->generation == generation)
                latest = strdup(r->record);
            break;
        }
    pthread_mutex_unlock(&cache->fills_lock);
    if (latest == NULL && committed != NULL)
        latest = strdup(committed);
    return latest;
}

void cache_record_forget(cache_t *cache, const store_key_t *key)
{
    pthread_mutex_lock(&cache->fills_lock);
    prune_recent(cache, monotonic_ms(), key);
    pthread_mutex_unlock(&cache->fills_lock);
}

/* Query parameters that carry credentials: OAuth tokens and the signed-URL schemes. */
static const char *const credential_params[] = {"access_token", "X-Goog-Signature", "X-Goog-Credential", "Signature",
                                                "GoogleAccessId", "X-Amz-Signature", "X-Amz-Credential", "key"};

void cache_caller_id(h2o_req_t *req, char *out, size_t cap)
{
    /* The credentials, gathered into one buffer and hashed once: this runs on every hit. */
    char stack[2048];
    h2o_iovec_t parts[1 + sizeof(credential_params) / sizeof(credential_params[0]) * 2];
    size_t nparts = 0, total = 0;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i != -1)
        parts[nparts++] = req->headers.entries[i].value;
    for (size_t k = 0; k < sizeof(credential_params) / sizeof(credential_params[0]); k++) {
        size_t len;
        const char *value = route_query_param(req->path.base, req->path.len, credential_params[k], &len);
        if (value != NULL) {
            parts[nparts++] = h2o_iovec_init(credential_params[k], strlen(credential_params[k]) + 1);
            parts[nparts++] = h2o_iovec_init(value, len);
        }
    }
    if (nparts == 0) {
        /* Anonymous callers share one identity: what they may read, everyone may. */
        snprintf(out, cap, "anonymous");
        return;
    }
    for (size_t k = 0; k < nparts; k++)
        total += parts[k].len;
    char *buf = total <= sizeof(stack) ? stack : malloc(total);
    if (buf == NULL) {
        snprintf(out, cap, "unidentified"); /* nobody can be told apart: nobody skips revalidation */
        return;
    }
    size_t at = 0;
    for (size_t k = 0; k < nparts; k++) {
        memcpy(buf + at, parts[k].base, parts[k].len);
        at += parts[k].len;
    }
    uint8_t digest[32];
    bool hashed = store_sha256(buf, total, digest);
    if (buf != stack)
        free(buf);
    if (!hashed) {
        snprintf(out, cap, "unidentified");
        return;
    }
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t k = 0; k < 16 && n + 2 < cap; k++) {
        out[n++] = hex[digest[k] >> 4];
        out[n++] = hex[digest[k] & 15];
    }
    out[n] = '\0';
}

/* --- single-flight fills --- */

static void prune_fills(cache_t *cache, uint64_t now)
{
    for (fill_entry_t **p = &cache->fills; *p != NULL;) {
        if ((*p)->done && now - (*p)->done_at_ms > FILL_LINGER_MS) {
            fill_entry_t *gone = *p;
            *p = gone->next;
            free(gone);
        } else {
            p = &(*p)->next;
        }
    }
}

static fill_entry_t *find_fill(cache_t *cache, const store_key_t *key)
{
    for (fill_entry_t *e = cache->fills; e != NULL; e = e->next)
        if (memcmp(e->key.hash, key->hash, sizeof(key->hash)) == 0)
            return e;
    return NULL;
}

bool cache_fill_active(cache_t *cache, const store_key_t *key, const char *caller)
{
    pthread_mutex_lock(&cache->fills_lock);
    prune_fills(cache, monotonic_ms());
    fill_entry_t *e = find_fill(cache, key);
    /* Anyone may wait for a fill's chunks; only its own caller may follow it without revalidating. */
    bool active = e != NULL && (caller == NULL || strcmp(e->caller, caller) == 0);
    pthread_mutex_unlock(&cache->fills_lock);
    return active;
}

bool cache_fill_lead(cache_t *cache, const store_key_t *key, const char *caller)
{
    bool lead = false;
    pthread_mutex_lock(&cache->fills_lock);
    prune_fills(cache, monotonic_ms());
    fill_entry_t *e = find_fill(cache, key);
    if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
        e->key = *key;
        snprintf(e->caller, sizeof(e->caller), "%s", caller);
        e->next = cache->fills;
        cache->fills = e;
        lead = true;
    }
    pthread_mutex_unlock(&cache->fills_lock);
    return lead;
}

void cache_fill_end(cache_t *cache, const store_key_t *key, bool success)
{
    pthread_mutex_lock(&cache->fills_lock);
    for (fill_entry_t **p = &cache->fills; *p != NULL; p = &(*p)->next) {
        if (memcmp((*p)->key.hash, key->hash, sizeof(key->hash)) != 0 || (*p)->done)
            continue;
        if (success) {
            (*p)->done = true;
            (*p)->done_at_ms = monotonic_ms();
        } else {
            fill_entry_t *gone = *p;
            *p = gone->next;
            free(gone);
        }
        break;
    }
    pthread_mutex_unlock(&cache->fills_lock);
}
