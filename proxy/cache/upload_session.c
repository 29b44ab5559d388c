/*
 * upload_session.c - uploads that take several requests: GCS resumable
 * sessions and XML multipart uploads.
 *
 * What upstream confirmed it has is kept as a pending object: whole chunks
 * in the store under a key no read computes (hashed from the session id),
 * marked transient so that the next start-up removes it (a crash leaves
 * nothing behind, visible or not). A resumable session's partial last chunk
 * stays in memory until more bytes complete it; a part of an XML multipart
 * upload is stored whole. Each chunk is also held in memory until the store
 * says it is durable, so a session completing right after its last chunk
 * was queued need not wait for the commit.
 *
 * On the final answer (a resumable upload's 200, a multipart Complete) the
 * pending bytes become the entry, through upload_make_entry, which checks
 * them against upstream's crc32c first; then the pending objects go. A
 * request upstream refused leaves the session as it was (the client may
 * retry it); cancel and abort drop it, and so does idling past
 * upload_session_ttl. A session that missed bytes (a gap, a lost chunk, two
 * of its requests at once) goes on upstream as always, but is not cached.
 *
 * Locks: the table's, then a pending object's; no store call is made with
 * either held. The store reports chunk outcomes on its writer thread, which
 * takes only the pending object's lock.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "entry.h"
#include "fetch.h"
#include "invalidate.h"
#include "upload_fill.h"
#include "upload_session.h"

/* The generation pending chunks are kept under: pending objects have one version only. */
#define PENDING_GENERATION 1
#define MAX_XML_PARTS 10000

/* Bytes kept for a session, chunk by chunk. */
typedef struct pending {
    store_key_t key;
    buffers_t *buffers;
    bool begun;          /* the transient object is queued */
    uint64_t length;     /* bytes appended */
    uint64_t known_size; /* STORE_SIZE_UNKNOWN, or the size (a part): then the last chunk is stored too */
    char *tail;          /* bytes past the last whole chunk, STORE_CHUNK_SIZE allocated */
    size_t tail_len;

    pthread_mutex_t lock; /* guards what follows */
    char **held;          /* held[i]: chunk i until the store says it is durable */
    size_t nheld;
    unsigned outstanding; /* chunks queued and not decided yet */
    bool lost;            /* a chunk was not stored, or not queued: these bytes cannot be cached */
    bool dropped;         /* its session let go of it: the last outcome frees it */
} pending_t;

typedef struct xml_part {
    unsigned number;
    pending_t *pending;
} xml_part_t;

typedef struct upload_session {
    struct upload_session *next;
    char *id;
    bool xml;
    bool busy;             /* one of its answers is being taken in */
    bool broken;           /* it missed bytes: not cached */
    int64_t last_used_ms;
    char *bucket, *name, *owner;
    char *authorization;   /* the start's credentials: its chunks may carry none (the session URL is one) */
    char *batch;           /* the batch (X-Larder-Batch) the start was in, checked then; NULL: none */
    json_t *facts;         /* what the start said of the object: contentType, metadata, ... */
    bool resource_whole;   /* the start asked for no fields= selection */
    pending_t *pending;    /* resumable */
    xml_part_t *parts;     /* XML, by number */
    size_t nparts;
} upload_session_t;

struct upload_sessions {
    pthread_mutex_t lock;
    upload_session_t *list;
    size_t count;
};

/* --- pending objects --- */

static pending_t *pending_new(buffers_t *buffers, const char *id, unsigned part, uint64_t known_size)
{
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    char label[32];
    snprintf(label, sizeof(label), "\n%u", part); /* no object name holds a newline */
    store_key_make(&p->key, "\npending-upload", 15, id, strlen(id));
    if (part != 0)
        store_key_make(&p->key, (const char *)p->key.hash, sizeof(p->key.hash), label, strlen(label));
    p->buffers = buffers;
    p->known_size = known_size;
    return p;
}

static void pending_free(pending_t *p)
{
    for (size_t i = 0; i < p->nheld; i++)
        if (p->held[i] != NULL) {
            free(p->held[i]);
            buffers_release(p->buffers, STORE_CHUNK_SIZE);
        }
    free(p->held);
    free(p->tail);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void on_pending_chunk(void *ctx, uint32_t index, store_chunk_outcome_t outcome)
{
    pending_t *p = ctx;
    pthread_mutex_lock(&p->lock);
    p->outstanding--;
    if (outcome != STORE_CHUNK_DURABLE)
        p->lost = true;
    if (index < p->nheld && p->held[index] != NULL) {
        free(p->held[index]); /* durable: read from the store from now on; lost: of no more use */
        p->held[index] = NULL;
        buffers_release(p->buffers, STORE_CHUNK_SIZE);
    }
    bool last = p->dropped && p->outstanding == 0;
    pthread_mutex_unlock(&p->lock);
    if (last)
        pending_free(p);
}

/* Lets go of a pending object: removed from the store, freed once no outcome is due. */
static void pending_drop(store_t *store, pending_t *p)
{
    if (p == NULL)
        return;
    if (p->begun && store != NULL) /* at close (no store) it is left to the next start-up, being transient */
        store_invalidate(store, &p->key);
    pthread_mutex_lock(&p->lock);
    p->dropped = true;
    bool now = p->outstanding == 0;
    pthread_mutex_unlock(&p->lock);
    if (now)
        pending_free(p);
}

static void pending_mark_lost(pending_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->lost = true;
    pthread_mutex_unlock(&p->lock);
}

/* Queues the chunk that ends at p->length (takes data); false when it could not be. */
static bool pending_put(store_t *store, pending_t *p, const char *label, char *data, size_t len)
{
    uint32_t index = (uint32_t)((p->length - len) / STORE_CHUNK_SIZE);
    if (!p->begun) {
        store_meta_t meta = {.bucket = "\npending-upload", .name = (char *)label, .generation = PENDING_GENERATION,
                             .size = p->known_size, .content_type = "application/octet-stream", .owner = "",
                             .transient = true};
        if (store_fill_begin(store, &p->key, &meta) != STORE_OK) {
            free(data);
            return false;
        }
        p->begun = true;
    }
    /* Held until durable, when memory allows: a completion right after this need not wait for the commit. */
    bool reserved = buffers_reserve(p->buffers, STORE_CHUNK_SIZE), hold = reserved;
    pthread_mutex_lock(&p->lock);
    if (hold && index >= p->nheld) {
        size_t cap = (size_t)index * 2 + 8;
        char **grown = realloc(p->held, cap * sizeof(*grown));
        if (grown != NULL) {
            memset(grown + p->nheld, 0, (cap - p->nheld) * sizeof(*grown));
            p->held = grown;
            p->nheld = cap;
        }
        hold = grown != NULL;
    }
    if (hold)
        p->held[index] = data;
    p->outstanding++;
    pthread_mutex_unlock(&p->lock);
    /* From here a held chunk is the outcome callback's to free; one not held is ours (the store copies it). */
    int rc = store_chunk_put(store, &p->key, PENDING_GENERATION, index, data, len, on_pending_chunk, p);
    if (rc != STORE_OK) {
        pthread_mutex_lock(&p->lock);
        p->outstanding--;
        if (hold)
            p->held[index] = NULL;
        pthread_mutex_unlock(&p->lock);
    }
    if (!hold || rc != STORE_OK) {
        free(data);
        if (reserved)
            buffers_release(p->buffers, STORE_CHUNK_SIZE);
    }
    return rc == STORE_OK;
}

/* Appends bytes upstream has confirmed; whole chunks go to the store. */
static void pending_append(store_t *store, pending_t *p, const char *label, const char *data, size_t len)
{
    while (len > 0) {
        if (p->tail == NULL && (p->tail = malloc(STORE_CHUNK_SIZE)) == NULL) {
            pending_mark_lost(p);
            return;
        }
        size_t n = STORE_CHUNK_SIZE - p->tail_len < len ? STORE_CHUNK_SIZE - p->tail_len : len;
        memcpy(p->tail + p->tail_len, data, n);
        p->tail_len += n, p->length += n, data += n, len -= n;
        bool last = p->known_size != STORE_SIZE_UNKNOWN && p->length == p->known_size;
        if (p->tail_len == STORE_CHUNK_SIZE || (last && p->tail_len > 0)) {
            char *chunk = p->tail;
            size_t chunk_len = p->tail_len;
            p->tail = NULL, p->tail_len = 0;
            if (!pending_put(store, p, label, chunk, chunk_len))
                pending_mark_lost(p);
        }
    }
}

/*
 * The pending bytes as segments, appended to *segments (grown as needed):
 * chunks still held in memory are taken over (*taken, freed by the caller),
 * the others are read from the store. False when some are lost.
 */
static bool pending_segments(pending_t *p, upload_segment_t **segments, size_t *count, size_t *cap, char ***taken,
                             size_t *ntaken)
{
    size_t whole = (size_t)((p->length - p->tail_len + STORE_CHUNK_SIZE - 1) / STORE_CHUNK_SIZE);
    size_t need = *count + whole + 1;
    if (need > *cap) {
        upload_segment_t *grown = realloc(*segments, need * 2 * sizeof(*grown));
        char **grown_taken = realloc(*taken, need * 2 * sizeof(*grown_taken));
        if (grown != NULL)
            *segments = grown;
        if (grown_taken != NULL)
            *taken = grown_taken;
        if (grown == NULL || grown_taken == NULL)
            return false;
        *cap = need * 2;
    }
    pthread_mutex_lock(&p->lock);
    bool ok = !p->lost;
    for (size_t i = 0; ok && i < whole; i++) {
        uint64_t at = (uint64_t)i * STORE_CHUNK_SIZE, left = p->length - p->tail_len - at;
        upload_segment_t *seg = &(*segments)[(*count)++];
        *seg = (upload_segment_t){.key = p->key, .generation = PENDING_GENERATION, .offset = at,
                                  .length = left < STORE_CHUNK_SIZE ? left : STORE_CHUNK_SIZE};
        if (i < p->nheld && p->held[i] != NULL) {
            seg->data = p->held[i];
            (*taken)[(*ntaken)++] = p->held[i];
            p->held[i] = NULL;
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (ok && p->tail_len > 0)
        (*segments)[(*count)++] = (upload_segment_t){.data = p->tail, .length = p->tail_len};
    return ok;
}

/* --- the table --- */

upload_sessions_t *upload_sessions_new(void)
{
    upload_sessions_t *t = calloc(1, sizeof(*t));
    if (t != NULL && pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

static void session_free(store_t *store, upload_session_t *s)
{
    pending_drop(store, s->pending);
    for (size_t i = 0; i < s->nparts; i++)
        pending_drop(store, s->parts[i].pending);
    free(s->parts);
    json_decref(s->facts);
    free(s->id);
    free(s->bucket);
    free(s->name);
    free(s->owner);
    free(s->authorization);
    free(s->batch);
    free(s);
}

void upload_sessions_free(upload_sessions_t *t)
{
    if (t == NULL)
        return;
    while (t->list != NULL) {
        upload_session_t *s = t->list;
        t->list = s->next;
        session_free(NULL, s);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void upload_sessions_stats(cache_t *cache, uint64_t *open, uint64_t *pending_bytes)
{
    upload_sessions_t *t = cache->sessions;
    *open = *pending_bytes = 0;
    pthread_mutex_lock(&t->lock);
    for (upload_session_t *s = t->list; s != NULL; s = s->next) {
        (*open)++;
        *pending_bytes += s->pending != NULL ? s->pending->length : 0;
        for (size_t i = 0; i < s->nparts; i++)
            *pending_bytes += s->parts[i].pending->length;
    }
    pthread_mutex_unlock(&t->lock);
}

/* Unlinks sessions idle past the ttl (lock held) onto *expired. */
static void take_expired(cache_t *cache, upload_session_t **expired)
{
    upload_sessions_t *t = cache->sessions;
    int64_t cutoff = worker_unix_ms() - (int64_t)cache->conf->upload_session_ttl * 1000;
    for (upload_session_t **p = &t->list; *p != NULL;) {
        upload_session_t *s = *p;
        if (!s->busy && s->last_used_ms < cutoff) {
            *p = s->next;
            t->count--;
            s->next = *expired;
            *expired = s;
        } else {
            p = &s->next;
        }
    }
}

static void free_all(cache_t *cache, upload_session_t *list)
{
    while (list != NULL) {
        upload_session_t *next = list->next;
        session_free(cache->store, list);
        list = next;
    }
}

static void add_session(cache_t *cache, upload_session_t *s)
{
    upload_sessions_t *t = cache->sessions;
    upload_session_t *expired = NULL;
    s->last_used_ms = worker_unix_ms();
    pthread_mutex_lock(&t->lock);
    take_expired(cache, &expired);
    s->next = t->list;
    t->list = s;
    t->count++;
    pthread_mutex_unlock(&t->lock);
    free_all(cache, expired);
}

/* The session id names, marked busy (NULL when unknown, or busy already: then it is broken). */
static upload_session_t *claim_session(cache_t *cache, const char *id)
{
    upload_sessions_t *t = cache->sessions;
    upload_session_t *found = NULL, *expired = NULL;
    pthread_mutex_lock(&t->lock);
    take_expired(cache, &expired);
    for (upload_session_t *s = t->list; s != NULL && found == NULL; s = s->next)
        if (id != NULL && strcmp(s->id, id) == 0)
            found = s;
    if (found != NULL && found->busy) {
        found->broken = true; /* two of its requests answered at once: which bytes came first is not known */
        found = NULL;
    } else if (found != NULL) {
        found->busy = true;
    }
    pthread_mutex_unlock(&t->lock);
    free_all(cache, expired);
    return found;
}

bool upload_session_object(cache_t *cache, const char *id, h2o_mem_pool_t *pool, const char **bucket,
                           const char **name, const char **batch)
{
    upload_sessions_t *t = cache->sessions;
    bool found = false;
    pthread_mutex_lock(&t->lock);
    for (upload_session_t *s = t->list; s != NULL && !found; s = s->next)
        if (id != NULL && strcmp(s->id, id) == 0) {
            found = true;
            *bucket = h2o_strdup(pool, s->bucket, SIZE_MAX).base;
            *name = h2o_strdup(pool, s->name, SIZE_MAX).base;
            *batch = s->batch != NULL ? h2o_strdup(pool, s->batch, SIZE_MAX).base : NULL;
        }
    pthread_mutex_unlock(&t->lock);
    return found;
}

static void release_session(cache_t *cache, upload_session_t *s)
{
    pthread_mutex_lock(&cache->sessions->lock);
    s->busy = false;
    s->last_used_ms = worker_unix_ms();
    pthread_mutex_unlock(&cache->sessions->lock);
}

/* Unlinks a claimed session and frees it. */
static void end_session(cache_t *cache, upload_session_t *s)
{
    upload_sessions_t *t = cache->sessions;
    pthread_mutex_lock(&t->lock);
    for (upload_session_t **p = &t->list; *p != NULL; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            t->count--;
            break;
        }
    pthread_mutex_unlock(&t->lock);
    session_free(cache->store, s);
}

static upload_session_t *session_new(const upload_request_t *u, const char *id, bool xml, json_t *facts)
{
    upload_session_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->id = strdup(id);
    s->xml = xml;
    s->bucket = strdup(u->bucket);
    s->name = strdup(u->name);
    s->owner = strdup(u->owner);
    s->authorization = u->authorization != NULL ? strdup(u->authorization) : NULL;
    s->batch = u->batch != NULL ? strdup(u->batch) : NULL;
    s->facts = facts;
    s->resource_whole = target_param(u->target, "fields") == NULL;
    if (s->id == NULL || s->bucket == NULL || s->name == NULL || s->owner == NULL) {
        session_free(NULL, s);
        return NULL;
    }
    return s;
}

/* --- what a session's object is --- */

/* The facts an upload's start gave, as the JSON an upload's metadata takes (contentType, metadata, ...). */
static json_t *facts_json(const upload_facts_t *f)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    const struct {
        const char *key, *value;
    } fields[] = {{"contentType", f->content_type},          {"contentEncoding", f->content_encoding},
                  {"cacheControl", f->cache_control},        {"contentDisposition", f->content_disposition},
                  {"contentLanguage", f->content_language}, {"storageClass", f->storage_class}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (fields[i].value != NULL)
            json_object_set_new(o, fields[i].key, json_string(fields[i].value));
    if (f->metadata != NULL)
        json_object_set(o, "metadata", f->metadata);
    return o;
}

/* Makes the entry from the session's bytes: pending objects in order, then their tails. */
static bool promote(const upload_request_t *u, upload_session_t *s, const upload_facts_t *facts, pending_t **sources,
                    size_t nsources, store_key_t *made)
{
    upload_segment_t *segments = NULL;
    char **taken = NULL;
    size_t count = 0, cap = 0, ntaken = 0;
    bool ok = !s->broken;
    for (size_t i = 0; ok && i < nsources; i++)
        ok = pending_segments(sources[i], &segments, &count, &cap, &taken, &ntaken);
    upload_request_t as_started = *u; /* the entry is completed, if need be, with the start's credentials */
    as_started.authorization = s->authorization;
    bool made_entry = ok && upload_fill_start(&as_started, facts, segments, count, made);
    for (size_t i = 0; i < ntaken; i++) {
        free(taken[i]);
        buffers_release(u->cache->buffers, STORE_CHUNK_SIZE);
    }
    free(taken);
    free(segments);
    return made_entry;
}

/* --- resumable --- */

/* "bytes=0-N" (a 308's Range): N+1; 0 when absent. */
static uint64_t persisted_of(const h2o_headers_t *headers)
{
    ssize_t i = h2o_find_header_by_str(headers, H2O_STRLIT("range"), -1);
    unsigned long long last;
    if (i == -1)
        return 0;
    char text[64];
    const h2o_iovec_t *v = &headers->entries[i].value;
    snprintf(text, sizeof(text), "%.*s", (int)(v->len < 63 ? v->len : 63), v->base);
    return sscanf(text, "bytes=0-%llu", &last) == 1 ? (uint64_t)last + 1 : 0;
}

/* Where this request's body starts in the object: "bytes A-B/T" gives A; a status query has no body. */
static bool body_offset(const upload_request_t *u, uint64_t *first)
{
    ssize_t i = h2o_find_header(&u->req->headers, H2O_TOKEN_CONTENT_RANGE, -1);
    unsigned long long a;
    *first = 0;
    if (i == -1)
        return true; /* a single request with the whole object */
    char text[96];
    const h2o_iovec_t *v = &u->req->headers.entries[i].value;
    snprintf(text, sizeof(text), "%.*s", (int)(v->len < 95 ? v->len : 95), v->base);
    if (sscanf(text, "bytes %llu-", &a) == 1) {
        *first = a;
        return true;
    }
    return strncmp(text, "bytes */", 8) == 0 && u->req->entity.len == 0;
}

/* Takes in the bytes of this request upstream now has: [s->pending->length, upto). */
static void take_bytes(const upload_request_t *u, upload_session_t *s, uint64_t upto)
{
    uint64_t first, have = s->pending->length;
    if (upto <= have) {
        s->broken = s->broken || upto < have; /* upstream lost bytes it said it had: ours may differ now */
        return;
    }
    if (!body_offset(u, &first) || first > have || upto > first + u->req->entity.len) {
        s->broken = true; /* bytes this request did not carry: a request larder did not see */
        return;
    }
    pending_append(u->cache->store, s->pending, s->id, u->req->entity.base + (have - first), (size_t)(upto - have));
}

static bool start_resumable(const upload_request_t *u, const h2o_headers_t *headers)
{
    ssize_t i = h2o_find_header(headers, H2O_TOKEN_LOCATION, -1);
    if (i == -1 || u->bucket == NULL || u->name == NULL)
        return false;
    const h2o_iovec_t *location = &headers->entries[i].value;
    const char *id = memmem(location->base, location->len, "upload_id=", 10);
    if (id == NULL)
        return false;
    id += 10;
    size_t id_len = (size_t)(location->base + location->len - id);
    const char *amp = memchr(id, '&', id_len);
    char *decoded = target_percent_decode(&u->req->pool, id, (size_t)((amp != NULL ? amp : id + id_len) - id));
    upload_facts_t facts;
    upload_facts_init(&facts, NULL, NULL, "");
    facts.content_type = u->media_type;
    if (u->metadata != NULL)
        upload_facts_from_request_metadata(&facts, u->metadata);
    upload_session_t *s = session_new(u, decoded, false, facts_json(&facts));
    if (s != NULL && (s->pending = pending_new(u->cache->buffers, s->id, 0, STORE_SIZE_UNKNOWN)) == NULL) {
        session_free(NULL, s);
        s = NULL;
    }
    if (s != NULL)
        add_session(u->cache, s);
    return false;
}

void upload_session_chunk_persisted(const upload_request_t *u, const h2o_headers_t *headers)
{
    upload_session_t *s = claim_session(u->cache, u->session);
    if (s == NULL)
        return;
    if (!s->broken)
        take_bytes(u, s, persisted_of(headers));
    release_session(u->cache, s);
}

/* The final answer to a resumable session: the object is complete upstream. */
static bool finish_resumable(const upload_request_t *u, const h2o_headers_t *headers, const char *body, size_t len,
                             store_key_t *made)
{
    json_t *resource = json_loadb(body, len, 0, NULL);
    upload_session_t *s = claim_session(u->cache, u->session);
    bool made_entry = false;
    if (s == NULL) {
        /* A repeated final answer: the entry it made stays if it is this generation. */
        made_entry = resource != NULL && u->bucket != NULL && u->name != NULL &&
                     upload_entry_is_cached(u->cache, u->bucket, u->name, entry_json_int64(resource, "generation"), made);
        json_decref(resource);
        return made_entry;
    }
    upload_facts_t facts;
    upload_facts_init(&facts, s->bucket, s->name, s->owner);
    upload_facts_from_request_metadata(&facts, s->facts);
    if (resource != NULL && !s->broken) {
        upload_facts_from_answer(&facts, u, resource, headers, s->resource_whole);
        if (facts.size >= 0)
            take_bytes(u, s, (uint64_t)facts.size);
        made_entry = promote(u, s, &facts, &s->pending, 1, made);
    }
    json_decref(resource);
    end_session(u->cache, s);
    return made_entry;
}

/* --- XML multipart --- */

/* The text of the first <tag>...</tag> in an XML body, in pool; NULL when absent. */
static const char *xml_element(h2o_mem_pool_t *pool, const char *body, size_t len, const char *tag)
{
    char open[40], close[40];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *start = body != NULL ? memmem(body, len, open, strlen(open)) : NULL;
    if (start == NULL)
        return NULL;
    start += strlen(open);
    const char *end = memmem(start, (size_t)(body + len - start), close, strlen(close));
    return end != NULL ? h2o_strdup(pool, start, (size_t)(end - start)).base : NULL;
}

static bool start_xml_multipart(const upload_request_t *u, const char *body, size_t len)
{
    const char *id = xml_element(&u->req->pool, body, len, "UploadId");
    if (id == NULL || u->bucket == NULL || u->name == NULL)
        return false;
    upload_facts_t facts;
    upload_facts_init(&facts, NULL, NULL, "");
    facts.content_type = u->media_type;
    upload_facts_from_xml_request(&facts, &u->req->pool, &u->req->headers);
    upload_session_t *s = session_new(u, id, true, facts_json(&facts));
    if (s != NULL)
        add_session(u->cache, s);
    return false;
}

static xml_part_t *part_slot(upload_session_t *s, unsigned number)
{
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].number == number)
            return &s->parts[i];
    xml_part_t *grown = realloc(s->parts, (s->nparts + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    s->parts = grown;
    s->parts[s->nparts] = (xml_part_t){.number = number};
    return &s->parts[s->nparts++];
}

static bool xml_part_stored(const upload_request_t *u)
{
    const h2o_iovec_t *raw = target_param(u->target, "partNumber");
    int64_t number;
    if (raw == NULL || !target_parse_int64(raw->base, raw->len, &number) || number < 1 || number > MAX_XML_PARTS)
        return false;
    upload_session_t *s = claim_session(u->cache, u->session);
    if (s == NULL)
        return false;
    xml_part_t *part = s->broken ? NULL : part_slot(s, (unsigned)number);
    pending_t *p = part != NULL ? pending_new(u->cache->buffers, s->id, (unsigned)number, u->media.len) : NULL;
    if (p != NULL) {
        pending_append(u->cache->store, p, s->id, u->media.base, u->media.len);
        pending_drop(u->cache->store, part->pending); /* a part sent again replaces the earlier one */
        part->pending = p;
    } else {
        s->broken = true;
    }
    release_session(u->cache, s);
    return false;
}

/* The part numbers a CompleteMultipartUpload body lists, in order; false when it lists none, or too many. */
static bool listed_parts(const upload_request_t *u, unsigned *numbers, size_t *count)
{
    const char *p = u->req->entity.base, *end = p + u->req->entity.len;
    *count = 0;
    while (p != NULL && (p = memmem(p, (size_t)(end - p), "<PartNumber>", 12)) != NULL) {
        p += 12;
        unsigned long n = strtoul(p, NULL, 10);
        if (*count == MAX_XML_PARTS || n < 1 || n > MAX_XML_PARTS)
            return false;
        numbers[(*count)++] = (unsigned)n;
    }
    return *count > 0;
}

static bool complete_xml_multipart(const upload_request_t *u, const h2o_headers_t *headers, store_key_t *made)
{
    upload_session_t *s = claim_session(u->cache, u->session);
    if (s == NULL)
        return false;
    unsigned *numbers = malloc(MAX_XML_PARTS * sizeof(*numbers));
    pending_t **sources = malloc(MAX_XML_PARTS * sizeof(*sources));
    size_t count = 0;
    bool ok = numbers != NULL && sources != NULL && !s->broken && listed_parts(u, numbers, &count);
    for (size_t i = 0; ok && i < count; i++) {
        sources[i] = NULL;
        for (size_t j = 0; j < s->nparts; j++)
            if (s->parts[j].number == numbers[i])
                sources[i] = s->parts[j].pending;
        ok = sources[i] != NULL;
    }
    bool made_entry = false;
    if (ok) {
        upload_facts_t facts;
        upload_facts_init(&facts, s->bucket, s->name, s->owner);
        upload_facts_from_request_metadata(&facts, s->facts);
        upload_facts_from_xml_answer(&facts, &u->req->pool, headers);
        made_entry = promote(u, s, &facts, sources, count, made);
    }
    free(numbers);
    free(sources);
    end_session(u->cache, s);
    return made_entry;
}

/* --- answers --- */

bool upload_session_answered(const upload_request_t *u, const h2o_headers_t *headers, const char *body, size_t len,
                             store_key_t *made)
{
    if (!u->cacheable && u->kind != UPLOAD_RESUMABLE_CANCEL && u->kind != UPLOAD_XML_MULTIPART_ABORT)
        return false;
    switch (u->kind) {
    case UPLOAD_RESUMABLE_START:
        return start_resumable(u, headers);
    case UPLOAD_RESUMABLE_CHUNK:
        return finish_resumable(u, headers, body, len, made);
    case UPLOAD_XML_MULTIPART_START:
        return start_xml_multipart(u, body, len);
    case UPLOAD_XML_PART:
        return xml_part_stored(u);
    case UPLOAD_XML_MULTIPART_COMPLETE:
        return complete_xml_multipart(u, headers, made);
    case UPLOAD_RESUMABLE_CANCEL:
    case UPLOAD_XML_MULTIPART_ABORT:
        upload_session_refused(u, 499);
        return false;
    default:
        return false;
    }
}

void upload_session_refused(const upload_request_t *u, int status)
{
    bool ends = u->kind == UPLOAD_RESUMABLE_CANCEL || u->kind == UPLOAD_XML_MULTIPART_ABORT ||
                ((u->kind == UPLOAD_RESUMABLE_CHUNK || u->kind == UPLOAD_XML_PART ||
                  u->kind == UPLOAD_XML_MULTIPART_COMPLETE) &&
                 (status == 404 || status == 410));
    if (!ends || u->session == NULL)
        return;
    upload_session_t *s = claim_session(u->cache, u->session);
    if (s != NULL)
        end_session(u->cache, s);
}
