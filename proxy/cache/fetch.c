/*
 * fetch.c - a fill owned by the cache (see fetch.h for the lifecycle).
 *
 * Threads. The exchange, the body being cut into chunks and the decisions
 * about state run on the home worker's loop. Readers on any loop read under
 * the fetch's lock; the store reports each chunk's fate from its writer
 * thread under the same lock. Chunk bytes are copied in outside the lock and
 * published by raising the chunk's length under it, so a reader copies only
 * bytes that are already there.
 *
 * References: the registry holds one while the fetch is registered, the home
 * loop one while the exchange runs, each subscriber one, and each chunk
 * queued to the store one (dropped by its outcome callback). The last
 * release frees the fetch, on whichever thread that happens.
 */
#include "entry.h"
#include "fetch.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Chunks queued to the store and not yet decided, per fetch, before upstream is paused. */
#define MAX_QUEUED_CHUNKS 8

typedef enum { SLOT_RECEIVING, SLOT_QUEUED, SLOT_DURABLE, SLOT_LOST } slot_state_t;

typedef struct slot {
    char *data; /* STORE_CHUNK_SIZE bytes while held; NULL before and after */
    size_t len; /* bytes received into it */
    slot_state_t state;
} slot_t;

struct fetch {
    cache_t *cache;
    worker_t *home;
    store_key_t key;
    cache_flavour_t flavour;
    char caller[AUTH_IDENTITY_MAX];
    bool anonymous;
    char *bucket, *name;
    int64_t pinned_generation;
    bool revalidation;
    bool head_only;
    bool demand;                  /* counted in cache->demand_fills while registered */
    uint64_t want_first, want_last;
    unsigned epoch;
    _Atomic unsigned refs;
    h2o_linklist_t registry_link; /* under the registry stripe's lock */
    h2o_linklist_t home_link;     /* home loop only */

    pthread_mutex_t lock; /* guards what follows */
    fetch_state_t state;
    store_meta_t meta; /* from STREAMING on */
    bool have_meta;
    _Atomic bool storing; /* chunks go to the store; cleared by an invalidation from any thread */
    uint64_t start;    /* absolute offset of the first body byte */
    uint64_t received; /* absolute offset one past the last byte received */
    slot_t *slots;     /* slots[i] holds chunk start / STORE_CHUNK_SIZE + i */
    size_t nslots, slots_cap;
    unsigned queued;
    h2o_linklist_t subscribers;
    size_t nsubscribers;
    bool home_alive; /* the home loop still takes wake-ups */
    bool starved;    /* paused for commits or memory: wake the home loop when either frees */
    int64_t upstream_ms;

    fetch_subscriber_t *leader; /* set and cleared under the lock; its callback runs on the home loop */

    /* The home loop only. */
    exchange_t *exchange;
    h2o_timeout_entry_t retry; /* starved for buffer memory that others hold: look again shortly */
    byte_buffer_t body;
    size_t body_used;
    worker_wakeup_t home_wakeup;
    bool detached;
    /* A local fill (fetch_start_local): no exchange; its whole body is in slots, put to the store from here. */
    bool local;
    size_t next_put; /* the next slot to queue */
};

static bool terminal(fetch_state_t state)
{
    return state != FETCH_AWAITING_HEAD && state != FETCH_STREAMING;
}

/* --- references --- */

void fetch_retain(fetch_t *f)
{
    atomic_fetch_add(&f->refs, 1);
}

static void free_slots(fetch_t *f)
{
    for (size_t i = 0; i < f->nslots; i++)
        if (f->slots[i].data != NULL) {
            free(f->slots[i].data);
            buffers_release(f->cache->buffers, STORE_CHUNK_SIZE);
        }
    free(f->slots);
}

void fetch_release(fetch_t *f)
{
    if (f == NULL || atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    free_slots(f);
    if (f->have_meta)
        store_meta_free(&f->meta);
    byte_buffer_dispose(&f->body);
    free(f->bucket);
    free(f->name);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* --- small accessors --- */

fetch_state_t fetch_state(fetch_t *f)
{
    pthread_mutex_lock(&f->lock);
    fetch_state_t state = f->state;
    pthread_mutex_unlock(&f->lock);
    return state;
}

bool fetch_meta(fetch_t *f, store_meta_t *meta)
{
    bool ok = false;
    pthread_mutex_lock(&f->lock);
    if (f->have_meta)
        ok = store_meta_copy(meta, &f->meta) == STORE_OK;
    pthread_mutex_unlock(&f->lock);
    return ok;
}

uint64_t fetch_received(fetch_t *f, bool *complete)
{
    pthread_mutex_lock(&f->lock);
    uint64_t received = f->received;
    *complete = f->state == FETCH_COMPLETE;
    pthread_mutex_unlock(&f->lock);
    return received;
}

int64_t fetch_pinned_generation(const fetch_t *f)
{
    return f->pinned_generation;
}

int64_t fetch_upstream_ms(fetch_t *f)
{
    pthread_mutex_lock(&f->lock);
    int64_t ms = f->upstream_ms;
    pthread_mutex_unlock(&f->lock);
    return ms;
}

bool fetch_is_revalidation(const fetch_t *f)
{
    return f->revalidation;
}

static fetch_t *fetch_from_registry_link(h2o_linklist_t *link)
{
    return H2O_STRUCT_FROM_MEMBER(fetch_t, registry_link, link);
}

fetch_t *fetch_from_home_link(h2o_linklist_t *link)
{
    return H2O_STRUCT_FROM_MEMBER(fetch_t, home_link, link);
}

const store_key_t *fetch_key(const fetch_t *f)
{
    return &f->key;
}

bool fetch_on_worker(const fetch_t *f, const worker_t *worker)
{
    return f->home == worker;
}

bool fetch_covers(fetch_t *f, int64_t generation, uint32_t index)
{
    uint64_t at = (uint64_t)index * STORE_CHUNK_SIZE;
    pthread_mutex_lock(&f->lock);
    bool covers = false;
    if (f->state == FETCH_AWAITING_HEAD)
        covers = (f->pinned_generation < 0 || f->pinned_generation == generation) && !f->head_only &&
                 at >= f->want_first - f->want_first % STORE_CHUNK_SIZE && at <= f->want_last;
    else if (f->state == FETCH_STREAMING && f->have_meta && f->meta.generation == generation && at >= f->start &&
             at <= f->want_last && (f->meta.size == STORE_SIZE_UNKNOWN || at < f->meta.size)) {
        /* Still to come, or still held in memory: a chunk received and let go is no longer this fetch's. */
        size_t i = (size_t)((at - f->start) / STORE_CHUNK_SIZE);
        covers = at + STORE_CHUNK_SIZE > f->received || (i < f->nslots && f->slots[i].data != NULL);
    }
    pthread_mutex_unlock(&f->lock);
    return covers;
}

/* --- waking --- */

/* Wakes the subscribers that asked to be. Lock held. */
static void wake_waiting(fetch_t *f)
{
    for (h2o_linklist_t *l = f->subscribers.next; l != &f->subscribers; l = l->next) {
        fetch_subscriber_t *sub = H2O_STRUCT_FROM_MEMBER(fetch_subscriber_t, link, l);
        if (sub->waiting) {
            sub->waiting = false;
            worker_wake(sub->worker, &sub->wakeup);
        }
    }
}

static void wake_home(fetch_t *f)
{
    if (f->home_alive)
        worker_wake(f->home, &f->home_wakeup);
}

/* Lost chunks every subscriber has read past are of no more use. Lock held. */
static void release_passed(fetch_t *f)
{
    uint64_t lowest = UINT64_MAX;
    for (h2o_linklist_t *l = f->subscribers.next; l != &f->subscribers; l = l->next) {
        uint64_t position = H2O_STRUCT_FROM_MEMBER(fetch_subscriber_t, link, l)->position;
        if (position < lowest)
            lowest = position;
    }
    bool freed = false;
    for (size_t i = 0; i < f->nslots; i++) {
        slot_t *s = &f->slots[i];
        uint64_t end = f->start + i * STORE_CHUNK_SIZE + s->len;
        if (s->data != NULL && s->state == SLOT_LOST && end <= lowest) {
            free(s->data);
            s->data = NULL;
            buffers_release(f->cache->buffers, STORE_CHUNK_SIZE);
            freed = true;
        }
    }
    if (freed && f->starved)
        wake_home(f);
}

/* --- subscribers --- */

void fetch_subscribe(fetch_t *f, fetch_subscriber_t *sub)
{
    fetch_retain(f);
    pthread_mutex_lock(&f->lock);
    h2o_linklist_insert(&f->subscribers, &sub->link);
    f->nsubscribers++;
    pthread_mutex_unlock(&f->lock);
}

void fetch_unsubscribe(fetch_t *f, fetch_subscriber_t *sub)
{
    pthread_mutex_lock(&f->lock);
    h2o_linklist_unlink(&sub->link);
    sub->waiting = false;
    size_t left = --f->nsubscribers;
    release_passed(f);
    if (left == 0 && !terminal(f->state))
        wake_home(f); /* the home loop decides whether to go on alone */
    if (f->leader == sub)
        f->leader = NULL;
    pthread_mutex_unlock(&f->lock);
    worker_wake_cancel(sub->worker, &sub->wakeup);
    fetch_release(f);
}

fetch_state_t fetch_watch(fetch_t *f, fetch_subscriber_t *sub)
{
    pthread_mutex_lock(&f->lock);
    fetch_state_t state = f->state;
    sub->waiting = !terminal(state);
    pthread_mutex_unlock(&f->lock);
    return state;
}

fetch_read_t fetch_read(fetch_t *f, fetch_subscriber_t *sub, uint64_t offset, char *buf, size_t cap, size_t *n)
{
    fetch_read_t verdict = FETCH_READ_GONE;
    *n = 0;
    pthread_mutex_lock(&f->lock);
    sub->position = offset;
    if (f->state == FETCH_AWAITING_HEAD) {
        sub->waiting = true;
        verdict = FETCH_READ_WAIT;
    } else if (f->have_meta && offset >= f->start) {
        size_t i = (size_t)((offset - f->start) / STORE_CHUNK_SIZE);
        size_t in_chunk = (size_t)((offset - f->start) % STORE_CHUNK_SIZE);
        if (offset < f->received && i < f->nslots) {
            slot_t *s = &f->slots[i];
            if (s->data != NULL && in_chunk < s->len) {
                *n = s->len - in_chunk < cap ? s->len - in_chunk : cap;
                memcpy(buf, s->data + in_chunk, *n);
                sub->position = offset + *n;
                verdict = FETCH_READ_DATA;
            } else {
                verdict = s->state == SLOT_DURABLE ? FETCH_READ_STORE : FETCH_READ_GONE;
            }
        } else if (f->state == FETCH_STREAMING && offset <= f->want_last) {
            sub->waiting = true;
            verdict = FETCH_READ_WAIT;
        }
        release_passed(f);
    }
    pthread_mutex_unlock(&f->lock);
    return verdict;
}

/* --- the home loop --- */

/* The exchange is gone: the home loop has nothing more to run for this fetch. Drops the home reference. */
static void leave_home(fetch_t *f)
{
    exchange_free(f->exchange);
    f->exchange = NULL;
    h2o_linklist_unlink(&f->home_link);
    worker_disarm(&f->retry);
    worker_wake_cancel(f->home, &f->home_wakeup);
    if (f->detached)
        atomic_fetch_sub(&f->cache->detached, 1);
    f->detached = false;
    pthread_mutex_lock(&f->lock);
    f->home_alive = false;
    bool settled = f->queued == 0;
    pthread_mutex_unlock(&f->lock);
    if (settled)
        fetch_registry_remove(f->cache, f);
    fetch_release(f);
}

/* Sets a terminal state and wakes whoever waits. */
static void set_state(fetch_t *f, fetch_state_t state)
{
    pthread_mutex_lock(&f->lock);
    f->state = state;
    wake_waiting(f);
    pthread_mutex_unlock(&f->lock);
}

/* The head asks for nothing to be filled: the leader relays it (and owns the exchange now). */
static void unfilled(fetch_t *f, fetch_state_t state)
{
    fetch_registry_remove(f->cache, f);
    set_state(f, state);
    exchange_t *x = f->exchange;
    f->exchange = NULL;
    pthread_mutex_lock(&f->lock);
    fetch_subscriber_t *leader = f->leader;
    pthread_mutex_unlock(&f->lock);
    fetch_retain(f); /* the leader may unsubscribe, and the home reference goes below */
    if (leader != NULL && leader->on_unfilled != NULL)
        leader->on_unfilled(leader, f, x);
    else
        exchange_free(x);
    leave_home(f);
    fetch_release(f);
}

static void on_chunk_done(void *ctx, uint32_t index, store_chunk_outcome_t outcome)
{
    fetch_t *f = ctx;
    pthread_mutex_lock(&f->lock);
    slot_t *s = &f->slots[index - f->start / STORE_CHUNK_SIZE];
    f->queued--;
    if (outcome == STORE_CHUNK_DURABLE) {
        s->state = SLOT_DURABLE;
        free(s->data); /* readers find it in the store from now on */
        s->data = NULL;
        buffers_release(f->cache->buffers, STORE_CHUNK_SIZE);
        if (f->starved)
            wake_home(f);
    } else {
        s->state = SLOT_LOST;
        release_passed(f);
    }
    if (f->starved && f->queued < MAX_QUEUED_CHUNKS)
        wake_home(f);
    bool settled = terminal(f->state) && f->queued == 0 && !f->home_alive;
    pthread_mutex_unlock(&f->lock);
    if (settled)
        fetch_registry_remove(f->cache, f);
    fetch_release(f);
}

/* How long chunk i (relative) is when whole. */
static size_t slot_target(const fetch_t *f, size_t i)
{
    uint64_t at = f->start + i * STORE_CHUNK_SIZE;
    if (f->meta.size == STORE_SIZE_UNKNOWN || f->meta.size - at >= STORE_CHUNK_SIZE)
        return STORE_CHUNK_SIZE;
    return (size_t)(f->meta.size - at);
}

/* A whole chunk: to the store, or kept in memory only while readers need it. */
static void complete_slot(fetch_t *f, size_t i)
{
    slot_t *s = &f->slots[i];
    uint32_t index = (uint32_t)(f->start / STORE_CHUNK_SIZE + i);
    int rc = STORE_ERROR;
    if (f->storing) {
        fetch_retain(f); /* dropped by on_chunk_done */
        rc = store_chunk_put(f->cache->store, &f->key, f->meta.generation, index, s->data, s->len, on_chunk_done, f);
        if (rc != STORE_OK)
            fetch_release(f);
    }
    pthread_mutex_lock(&f->lock);
    if (rc == STORE_OK) {
        s->state = SLOT_QUEUED;
        f->queued++;
    } else {
        s->state = SLOT_LOST;
        release_passed(f);
    }
    pthread_mutex_unlock(&f->lock);
}

/* Makes room for the chunk at f->received; false when the fetch must pause (commits or memory outstanding). */
static bool ensure_slot(fetch_t *f, size_t i)
{
    if (i < f->nslots && f->slots[i].data != NULL)
        return true;
    pthread_mutex_lock(&f->lock);
    bool backlog = f->queued >= MAX_QUEUED_CHUNKS;
    pthread_mutex_unlock(&f->lock);
    if (backlog)
        return false; /* the store is behind: it wakes us as chunks commit */
    if (!buffers_reserve(f->cache->buffers, STORE_CHUNK_SIZE)) {
        worker_arm(f->home, &f->home->housekeeping, &f->retry);
        return false;
    }
    char *data = malloc(STORE_CHUNK_SIZE);
    if (data == NULL) {
        buffers_release(f->cache->buffers, STORE_CHUNK_SIZE);
        return false;
    }
    pthread_mutex_lock(&f->lock);
    if (i >= f->slots_cap) {
        size_t cap = f->slots_cap != 0 ? f->slots_cap * 2 : 16;
        while (cap <= i)
            cap *= 2;
        slot_t *grown = realloc(f->slots, cap * sizeof(*grown));
        if (grown == NULL) {
            pthread_mutex_unlock(&f->lock);
            free(data);
            buffers_release(f->cache->buffers, STORE_CHUNK_SIZE);
            return false;
        }
        memset(grown + f->slots_cap, 0, (cap - f->slots_cap) * sizeof(*grown));
        f->slots = grown;
        f->slots_cap = cap;
    }
    if (i >= f->nslots)
        f->nslots = i + 1;
    f->slots[i] = (slot_t){.data = data, .len = 0, .state = SLOT_RECEIVING};
    pthread_mutex_unlock(&f->lock);
    return true;
}

/* Moves body bytes into chunks; returns false when it had to stop for room. */
static bool feed(fetch_t *f)
{
    bool fed = false, room = true;
    for (;;) {
        if (f->body_used == f->body.len) {
            if (exchange_buffered(f->exchange) == 0)
                break;
            exchange_take_body(f->exchange, &f->body);
            f->body_used = 0;
        }
        size_t i = (size_t)((f->received - f->start) / STORE_CHUNK_SIZE);
        if (!ensure_slot(f, i)) {
            room = false;
            break;
        }
        slot_t *s = &f->slots[i];
        size_t want = slot_target(f, i) - s->len, have = f->body.len - f->body_used, n = want < have ? want : have;
        if (n == 0) { /* more bytes than the object holds: upstream is confused */
            f->body_used = f->body.len;
            break;
        }
        memcpy(s->data + s->len, f->body.base + f->body_used, n); /* bytes past len: no reader looks there yet */
        f->body_used += n;
        pthread_mutex_lock(&f->lock);
        s->len += n;
        f->received += n;
        pthread_mutex_unlock(&f->lock);
        fed = true;
        if (s->len == slot_target(f, i))
            complete_slot(f, i);
    }
    pthread_mutex_lock(&f->lock);
    f->starved = !room;
    if (fed)
        wake_waiting(f);
    pthread_mutex_unlock(&f->lock);
    return room;
}

/* The body ended: the last short chunk, the size of a body that had no length, and the final state. */
static void finish(fetch_t *f, bool clean)
{
    uint64_t end = f->meta.size;
    if (clean && end == STORE_SIZE_UNKNOWN && f->start == 0) {
        end = f->received;
        if (f->storing && store_fill_set_size(f->cache->store, &f->key, f->meta.generation, end) != STORE_OK)
            f->storing = false;
        pthread_mutex_lock(&f->lock);
        f->meta.size = end;
        pthread_mutex_unlock(&f->lock);
    }
    uint64_t want_end = f->want_last == UINT64_MAX || f->want_last + 1 > end ? end : f->want_last + 1;
    if (clean && f->received != want_end)
        clean = false; /* a short (or long) body is not the object */
    size_t last = f->nslots != 0 ? f->nslots - 1 : 0;
    if (clean && f->nslots != 0 && f->slots[last].state == SLOT_RECEIVING && f->slots[last].data != NULL &&
        f->start + last * STORE_CHUNK_SIZE + f->slots[last].len == end)
        complete_slot(f, last);
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->nslots; i++)
        if (f->slots[i].state == SLOT_RECEIVING)
            f->slots[i].state = SLOT_LOST; /* a partial chunk is never stored; readers may still read it */
    release_passed(f);
    pthread_mutex_unlock(&f->lock);
    set_state(f, clean ? FETCH_COMPLETE : FETCH_FAILED);
    leave_home(f);
}

static void begin_streaming(fetch_t *f, store_meta_t *meta, uint64_t start)
{
    /* A write through larder, or an invalidation, since this fetch was sent: its answer may predate it. */
    bool current = cache_epoch(f->cache, &f->key) == f->epoch && !cache_write_in_flight(f->cache, &f->key);
    f->storing = current && cache_may_store(f->cache) && store_fill_begin(f->cache->store, &f->key, meta) == STORE_OK;
    if (f->storing)
        cache_record_note(f->cache, &f->key, meta->generation, meta->resource_json);
    if (!current)
        fetch_registry_remove(f->cache, f);
    pthread_mutex_lock(&f->lock);
    f->meta = *meta;
    f->have_meta = true;
    f->start = f->received = start;
    f->upstream_ms = exchange_upstream_ms(f->exchange);
    f->state = FETCH_STREAMING;
    wake_waiting(f);
    pthread_mutex_unlock(&f->lock);
}

/* The head is in: fill, or hand it to the leader. */
static bool on_head(fetch_t *f, exchange_t *x)
{
    int status = exchange_status(x);
    pthread_mutex_lock(&f->lock);
    f->upstream_ms = exchange_upstream_ms(x);
    pthread_mutex_unlock(&f->lock);
    if (exchange_state(x) == EXCHANGE_FAILED && status < 200) {
        unfilled(f, FETCH_DECLINED); /* the leader answers 502 or 504 */
        return false;
    }
    if (status == 304 && f->revalidation) {
        unfilled(f, FETCH_NOT_MODIFIED);
        return false;
    }
    store_meta_t meta;
    uint64_t start;
    entry_source_t src = {.key = &f->key, .bucket = f->bucket, .name = f->name, .flavour = f->flavour,
                          .caller = f->caller, .anonymous = f->anonymous, .pinned_generation = f->pinned_generation};
    const char *why = (status == 200 || status == 206) && !f->head_only
                          ? entry_from_media_head(f->cache, x, &src, &meta, &start)
                          : "not a media body";
    if (why != NULL) {
        if (log_enabled(LOG_LEVEL_DEBUG))
            log_msg(LOG_LEVEL_DEBUG, "fetch", "%s/%s: status %d not filled: %s", f->bucket, f->name, status, why);
        unfilled(f, FETCH_DECLINED);
        return false;
    }
    begin_streaming(f, &meta, start);
    return true;
}

static void on_exchange(exchange_t *x, void *ctx)
{
    fetch_t *f = ctx;
    if (f->state == FETCH_AWAITING_HEAD) {
        if (exchange_state(x) == EXCHANGE_WAITING || !on_head(f, x))
            return;
    }
    if (f->state != FETCH_STREAMING || !feed(f))
        return;
    exchange_state_t xs = exchange_state(x);
    if ((xs == EXCHANGE_DONE || xs == EXCHANGE_FAILED) && f->body_used == f->body.len && exchange_buffered(x) == 0)
        finish(f, xs == EXCHANGE_DONE);
}

/* Last subscriber gone: go on alone if few others do, else stop (what committed stays). */
static void consider_detaching(fetch_t *f)
{
    pthread_mutex_lock(&f->lock);
    bool alone = f->nsubscribers == 0;
    pthread_mutex_unlock(&f->lock);
    if (!alone || f->detached)
        return;
    unsigned cap = f->cache->conf->cache.max_detached_fills;
    if (f->state == FETCH_STREAMING && atomic_fetch_add(&f->cache->detached, 1) < cap) {
        f->detached = true;
        return;
    }
    if (f->state == FETCH_STREAMING)
        atomic_fetch_sub(&f->cache->detached, 1);
    atomic_fetch_add(&f->cache->fills_abandoned, 1);
    fetch_abandon(f);
}

static void local_pump(fetch_t *f);

static void on_home_wakeup(worker_wakeup_t *wakeup)
{
    fetch_t *f = H2O_STRUCT_FROM_MEMBER(fetch_t, home_wakeup, wakeup);
    if (f->local) {
        local_pump(f);
        return;
    }
    if (f->exchange == NULL)
        return;
    fetch_retain(f);
    if (f->state == FETCH_STREAMING)
        on_exchange(f->exchange, f); /* room again: go on feeding */
    if (f->exchange != NULL)
        consider_detaching(f);
    fetch_release(f);
}

static void on_retry(h2o_timeout_entry_t *entry)
{
    on_home_wakeup(&H2O_STRUCT_FROM_MEMBER(fetch_t, retry, entry)->home_wakeup);
}

static void local_stop(fetch_t *f);

void fetch_abandon(fetch_t *f)
{
    if (f->local) {
        local_stop(f);
        return;
    }
    if (f->exchange == NULL)
        return;
    if (f->state == FETCH_AWAITING_HEAD) {
        fetch_registry_remove(f->cache, f);
        set_state(f, FETCH_FAILED);
        leave_home(f);
        return;
    }
    finish(f, false);
}

static void fetch_stop_storing(fetch_t *f)
{
    f->storing = false; /* the home loop reads it; chunks queued already are dropped by the store */
}

/* --- starting --- */

/* Client headers a fill does not forward: larder answers ranges and conditions itself. */
static bool skip_client_header(const h2o_iovec_t *name, void *ctx)
{
    (void)ctx;
    static const char *const skipped[] = {"range", "if-range", "if-none-match", "if-match", "if-modified-since",
                                          "if-unmodified-since", "x-goog-if-generation-match",
                                          "x-goog-if-metageneration-match"};
    for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++)
        if (h2o_lcstris(name->base, name->len, skipped[i], strlen(skipped[i])))
            return true;
    return false;
}

/* The URL and the extra header lines (Range, conditions) of the fetch's request. */
static char *build_request(fetch_t *f, const fetch_params_t *p, char lines[3][96], const char *extra[4])
{
    size_t n = 0;
    char param[64] = "";
    if (p->pinned_generation >= 0 && p->flavour == CACHE_FLAVOUR_JSON)
        snprintf(param, sizeof(param), "ifGenerationMatch=%lld", (long long)p->pinned_generation);
    else if (p->if_generation_not_match >= 0)
        snprintf(param, sizeof(param), "ifGenerationNotMatch=%lld", (long long)p->if_generation_not_match);
    if (p->pinned_generation >= 0 && p->flavour == CACHE_FLAVOUR_XML) {
        snprintf(lines[n], 96, "x-goog-if-generation-match: %lld", (long long)p->pinned_generation);
        extra[n] = lines[n], n++;
    }
    if (p->first != 0 || p->last != UINT64_MAX) {
        if (p->last == UINT64_MAX)
            snprintf(lines[n], 96, "Range: bytes=%llu-", (unsigned long long)p->first);
        else
            snprintf(lines[n], 96, "Range: bytes=%llu-%llu", (unsigned long long)p->first, (unsigned long long)p->last);
        extra[n] = lines[n], n++;
    }
    extra[n] = NULL;
    if (p->url != NULL)
        return strdup(p->url);
    target_url_edit_t edit = {.drop_preconditions = true, .add_param = param[0] != '\0' ? param : NULL};
    (void)f;
    return target_upstream_url(p->target, f->cache->conf->upstream.base_url, &edit);
}

static fetch_t *fetch_new(cache_t *cache, worker_t *worker, const fetch_params_t *p)
{
    fetch_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    if (pthread_mutex_init(&f->lock, NULL) != 0) {
        free(f);
        return NULL;
    }
    f->cache = cache;
    f->home = worker;
    f->key = *p->key;
    f->flavour = p->flavour;
    snprintf(f->caller, sizeof(f->caller), "%s", p->caller);
    f->anonymous = p->anonymous;
    f->bucket = strdup(p->target->bucket);
    f->name = strdup(p->target->object);
    f->pinned_generation = p->pinned_generation;
    f->revalidation = p->if_none_match != NULL || p->if_generation_not_match >= 0;
    f->head_only = p->head;
    f->demand = p->demand;
    f->want_first = p->first;
    f->want_last = p->last;
    f->epoch = cache_epoch(cache, p->key);
    atomic_init(&f->refs, 1); /* the home loop's, while the exchange runs */
    f->state = FETCH_AWAITING_HEAD;
    f->home_alive = true;
    h2o_linklist_init_anchor(&f->subscribers);
    f->home_wakeup.cb = on_home_wakeup;
    f->retry.cb = on_retry;
    if (f->bucket == NULL || f->name == NULL) {
        fetch_release(f);
        return NULL;
    }
    return f;
}

fetch_t *fetch_start(cache_t *cache, worker_t *worker, const fetch_params_t *p, fetch_subscriber_t *leader)
{
    fetch_t *f = fetch_new(cache, worker, p);
    if (f == NULL)
        return NULL;
    char lines[3][96], none_match[512];
    const char *extra[5];
    char *url = build_request(f, p, lines, extra);
    if (p->if_none_match != NULL) {
        size_t n = 0;
        while (extra[n] != NULL)
            n++;
        snprintf(none_match, sizeof(none_match), "If-None-Match: %s", p->if_none_match);
        extra[n] = none_match;
        extra[n + 1] = NULL;
    }
    exchange_request_t request = {
        .url = url,
        .method = p->head ? h2o_iovec_init(H2O_STRLIT("HEAD")) : h2o_iovec_init(H2O_STRLIT("GET")),
        .client = p->client,
        .skip_header = skip_client_header,
        .extra = extra,
        .head = p->head,
    };
    f->exchange = url != NULL ? exchange_start(worker, &request, on_exchange, f) : NULL;
    free(url);
    if (f->exchange == NULL) {
        fetch_release(f);
        return NULL;
    }
    atomic_fetch_add(&cache->fills_started, 1);
    h2o_linklist_insert(&cache->home_fetches[worker->id], &f->home_link);
    pthread_mutex_lock(&f->lock);
    f->leader = leader;
    pthread_mutex_unlock(&f->lock);
    fetch_subscribe(f, leader);
    fetch_registry_add(cache, f);
    return f;
}

/* A fill of f's key registered before f, still awaiting its head, that brings what f would. Retained. */
static fetch_t *registry_older_twin(cache_t *cache, fetch_t *f)
{
    cache_stripe_t *st = cache_stripe_of(cache, &f->key);
    fetch_t *found = NULL;
    pthread_mutex_lock(&st->lock);
    for (h2o_linklist_t *l = st->fetches.next; l != &st->fetches && found == NULL; l = l->next) {
        fetch_t *other = fetch_from_registry_link(l);
        if (other == f)
            break; /* only the older ones: of two twins, exactly one yields */
        pthread_mutex_lock(&other->lock);
        bool twin = cache_same_key(&other->key, &f->key) && other->state == FETCH_AWAITING_HEAD &&
                    !other->revalidation && !other->head_only && other->pinned_generation == f->pinned_generation &&
                    other->want_first == f->want_first && other->want_last == f->want_last;
        pthread_mutex_unlock(&other->lock);
        if (twin)
            found = other;
    }
    if (found != NULL)
        fetch_retain(found);
    pthread_mutex_unlock(&st->lock);
    return found;
}

fetch_t *fetch_start_or_join(cache_t *cache, worker_t *worker, const fetch_params_t *params,
                             fetch_subscriber_t *leader, bool *joined)
{
    *joined = false;
    fetch_t *f = fetch_start(cache, worker, params, leader);
    if (f == NULL)
        return NULL;
    fetch_t *twin = registry_older_twin(cache, f);
    if (twin == NULL)
        return f;
    /*
     * Two threads missed the same object at once and both registered a fill:
     * the younger yields before its request left (curl sends nothing until
     * this loop runs again), and its leader follows the older one.
     */
    fetch_registry_remove(cache, f);
    set_state(f, FETCH_FAILED);
    fetch_unsubscribe(f, leader);
    atomic_fetch_sub(&cache->fills_started, 1);
    leave_home(f);
    fetch_subscribe(twin, leader);
    fetch_release(twin);
    *joined = true;
    return twin;
}

void fetch_update_meta(fetch_t *f, const store_meta_t *meta)
{
    store_meta_t copy;
    pthread_mutex_lock(&f->lock);
    if (f->have_meta && f->meta.generation == meta->generation && f->meta.size == meta->size &&
        store_meta_copy(&copy, meta) == STORE_OK) {
        copy.num_chunks = f->meta.num_chunks;
        copy.chunks_present = f->meta.chunks_present;
        store_meta_free(&f->meta);
        f->meta = copy;
    }
    pthread_mutex_unlock(&f->lock);
}

/* --- local fills: bytes larder already has --- */

/* Queues the slots not queued yet, a few at a time (on_chunk_done wakes us for more); then the home loop is done. */
static void local_pump(fetch_t *f)
{
    if (h2o_linklist_is_linked(&f->home_link) == 0)
        return;
    while (f->next_put < f->nslots) {
        pthread_mutex_lock(&f->lock);
        f->starved = f->queued >= MAX_QUEUED_CHUNKS;
        bool backlog = f->starved;
        pthread_mutex_unlock(&f->lock);
        if (backlog)
            return;
        complete_slot(f, f->next_put++);
    }
    leave_home(f);
}

/* Shutdown: what is not queued yet is not stored. */
static void local_stop(fetch_t *f)
{
    pthread_mutex_lock(&f->lock);
    for (size_t i = f->next_put; i < f->nslots; i++)
        f->slots[i].state = SLOT_LOST;
    release_passed(f);
    pthread_mutex_unlock(&f->lock);
    f->next_put = f->nslots;
    if (h2o_linklist_is_linked(&f->home_link))
        leave_home(f);
}

/* Base64 of the big-endian CRC, as x-goog-hash and the JSON resource write it. */
static bool crc32c_matches(uint32_t crc, const char *expected)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char be[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16), (unsigned char)(crc >> 8),
                           (unsigned char)crc};
    char text[9] = {digits[be[0] >> 2], digits[((be[0] & 3) << 4) | (be[1] >> 4)],
                    digits[((be[1] & 15) << 2) | (be[2] >> 6)], digits[be[2] & 63], digits[be[3] >> 2],
                    digits[(be[3] & 3) << 4], '=', '=', '\0'};
    return expected != NULL && strcmp(text, expected) == 0;
}

/* Whether the digest so far is the MD5 upstream reported (base64). */
static bool md5_matches(EVP_MD_CTX *md5, const char *expected)
{
    unsigned char digest[EVP_MAX_MD_SIZE], text[32];
    unsigned len = 0;
    if (expected == NULL || EVP_DigestFinal_ex(md5, digest, &len) != 1 || len != 16)
        return false;
    EVP_EncodeBlock(text, digest, 16);
    return strcmp((const char *)text, expected) == 0;
}

/* local_assemble's body: the slots filled, and checked with the CRC or (md5 not NULL) the MD5. */
static const char *local_assemble_checked(fetch_t *f, fetch_local_read_fn read, void *ctx, EVP_MD_CTX *md5)
{
    uint64_t size = f->meta.size;
    /*
     * An empty object has no chunk, yet the fill must stay registered until
     * its record commits, or a read right after the upload misses. So it
     * gets one empty slot: the store drops that chunk (it fits no record),
     * and reports so only after the commit that holds the record.
     */
    size_t nslots = size == 0 ? 1 : (size_t)((size - 1) / STORE_CHUNK_SIZE + 1);
    if ((f->slots = calloc(nslots, sizeof(*f->slots))) == NULL)
        return "out of memory";
    f->nslots = f->slots_cap = nslots;
    uint32_t crc = 0;
    for (size_t i = 0; i < nslots; i++) {
        uint64_t at = (uint64_t)i * STORE_CHUNK_SIZE;
        size_t len = size - at < STORE_CHUNK_SIZE ? (size_t)(size - at) : STORE_CHUNK_SIZE;
        if (!buffers_reserve(f->cache->buffers, STORE_CHUNK_SIZE))
            return "larger than the buffer memory free now";
        if ((f->slots[i].data = malloc(STORE_CHUNK_SIZE)) == NULL) {
            buffers_release(f->cache->buffers, STORE_CHUNK_SIZE);
            return "out of memory";
        }
        if (!read(ctx, at, f->slots[i].data, len))
            return "its bytes are not all at hand";
        f->slots[i].len = len;
        if (f->meta.crc32c != NULL)
            crc = store_crc32c(crc, f->slots[i].data, len);
        else if (md5 != NULL && EVP_DigestUpdate(md5, f->slots[i].data, len) != 1)
            return "out of memory";
    }
    if (f->meta.crc32c != NULL)
        return crc32c_matches(crc, f->meta.crc32c) ? NULL : "the bytes differ from upstream's crc32c";
    return md5 != NULL && md5_matches(md5, f->meta.md5) ? NULL : "the bytes differ from upstream's md5";
}

/*
 * Reads the whole object into slots and checks it against the CRC upstream
 * reported, else its MD5 (a fields= selection may leave out either); NULL
 * when it is fine.
 */
static const char *local_assemble(fetch_t *f, fetch_local_read_fn read, void *ctx)
{
    EVP_MD_CTX *md5 = f->meta.crc32c == NULL ? EVP_MD_CTX_new() : NULL;
    if (md5 != NULL && EVP_DigestInit_ex(md5, EVP_md5(), NULL) != 1) {
        EVP_MD_CTX_free(md5);
        md5 = NULL;
    }
    const char *why = local_assemble_checked(f, read, ctx, md5);
    EVP_MD_CTX_free(md5);
    return why;
}

bool fetch_start_local(cache_t *cache, worker_t *worker, const store_key_t *key, store_meta_t *meta,
                       fetch_local_read_fn read, void *ctx)
{
    fetch_t *f = calloc(1, sizeof(*f));
    if (f == NULL || pthread_mutex_init(&f->lock, NULL) != 0) {
        free(f);
        return false;
    }
    f->cache = cache;
    f->home = worker;
    f->key = *key;
    f->local = true;
    f->meta = *meta;
    f->have_meta = true;
    memset(meta, 0, sizeof(*meta)); /* the fetch owns it now, whatever happens */
    snprintf(f->caller, sizeof(f->caller), "%s", f->meta.owner != NULL ? f->meta.owner : "");
    f->bucket = strdup(f->meta.bucket);
    f->name = strdup(f->meta.name);
    f->pinned_generation = f->meta.generation;
    f->want_last = UINT64_MAX;
    f->epoch = cache_epoch(cache, key);
    atomic_init(&f->refs, 1); /* the home loop's, while slots remain to be queued */
    h2o_linklist_init_anchor(&f->subscribers);
    f->home_wakeup.cb = on_home_wakeup;
    f->retry.cb = on_retry;
    const char *why = f->bucket == NULL || f->name == NULL ? "out of memory" : local_assemble(f, read, ctx);
    if (why != NULL) {
        log_msg(LOG_LEVEL_INFO, "fetch", "%s/%s: the upload is not cached: %s", f->meta.bucket, f->meta.name, why);
        fetch_release(f);
        return false;
    }
    f->storing = cache_may_store(cache) && store_fill_begin(cache->store, key, &f->meta) == STORE_OK;
    if (f->storing)
        cache_record_note(cache, key, f->meta.generation, f->meta.resource_json);
    f->received = f->meta.size;
    f->state = FETCH_COMPLETE;
    f->home_alive = true;
    h2o_linklist_insert(&cache->home_fetches[worker->id], &f->home_link);
    fetch_registry_add(cache, f);
    local_pump(f);
    return true;
}

/* --- the registry of fills in progress --- */

void fetch_registry_add(cache_t *cache, fetch_t *fetch)
{
    cache_stripe_t *st = cache_stripe_of(cache, fetch_key(fetch));
    fetch_retain(fetch);
    pthread_mutex_lock(&st->lock);
    h2o_linklist_insert(&st->fetches, &fetch->registry_link); /* newest last */
    atomic_fetch_add(&st->count, 1);
    atomic_fetch_add(&cache->fills_registered, 1);
    if (fetch->demand)
        atomic_fetch_add(&cache->demand_fills, 1);
    pthread_mutex_unlock(&st->lock);
}

void fetch_registry_remove(cache_t *cache, fetch_t *fetch)
{
    cache_stripe_t *st = cache_stripe_of(cache, fetch_key(fetch));
    bool was = false;
    pthread_mutex_lock(&st->lock);
    if (h2o_linklist_is_linked(&fetch->registry_link)) {
        h2o_linklist_unlink(&fetch->registry_link);
        atomic_fetch_sub(&st->count, 1);
        atomic_fetch_sub(&cache->fills_registered, 1);
        if (fetch->demand)
            atomic_fetch_sub(&cache->demand_fills, 1);
        was = true;
    }
    pthread_mutex_unlock(&st->lock);
    if (was)
        fetch_release(fetch);
}

fetch_t *fetch_registry_newest(cache_t *cache, const store_key_t *key)
{
    cache_stripe_t *st = cache_stripe_of(cache, key);
    if (atomic_load(&st->count) == 0)
        return NULL; /* the hit path's usual case: no lock */
    fetch_t *found = NULL;
    pthread_mutex_lock(&st->lock);
    for (h2o_linklist_t *l = st->fetches.prev; l != &st->fetches && found == NULL; l = l->prev)
        if (cache_same_key(fetch_key(fetch_from_registry_link(l)), key))
            found = fetch_from_registry_link(l);
    if (found != NULL)
        fetch_retain(found);
    pthread_mutex_unlock(&st->lock);
    return found;
}

fetch_t *fetch_registry_covering(cache_t *cache, const store_key_t *key, int64_t generation, uint32_t index)
{
    cache_stripe_t *st = cache_stripe_of(cache, key);
    if (atomic_load(&st->count) == 0)
        return NULL;
    fetch_t *found = NULL;
    pthread_mutex_lock(&st->lock);
    for (h2o_linklist_t *l = st->fetches.prev; l != &st->fetches && found == NULL; l = l->prev) {
        fetch_t *f = fetch_from_registry_link(l);
        if (cache_same_key(fetch_key(f), key) && fetch_covers(f, generation, index))
            found = f;
    }
    if (found != NULL)
        fetch_retain(found);
    pthread_mutex_unlock(&st->lock);
    return found;
}

void fetch_registry_forget(cache_t *cache, const store_key_t *key)
{
    cache_stripe_t *st = cache_stripe_of(cache, key);
    for (;;) {
        fetch_t *found = NULL;
        pthread_mutex_lock(&st->lock);
        for (h2o_linklist_t *l = st->fetches.next; l != &st->fetches && found == NULL; l = l->next)
            if (cache_same_key(&fetch_from_registry_link(l)->key, key))
                found = fetch_from_registry_link(l);
        if (found != NULL)
            fetch_retain(found);
        pthread_mutex_unlock(&st->lock);
        if (found == NULL)
            return;
        fetch_stop_storing(found);
        fetch_registry_remove(cache, found);
        fetch_release(found);
    }
}

size_t fetch_registry_keys_where(cache_t *cache, fetch_match_fn match, void *ctx, store_key_t *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < CACHE_STRIPES && n < max; i++) {
        cache_stripe_t *st = &cache->stripes[i];
        pthread_mutex_lock(&st->lock);
        for (h2o_linklist_t *l = st->fetches.next; l != &st->fetches && n < max; l = l->next) {
            fetch_t *f = fetch_from_registry_link(l);
            if (match(ctx, f->bucket, f->name, f->caller))
                out[n++] = f->key;
        }
        pthread_mutex_unlock(&st->lock);
    }
    return n;
}

void fetch_registry_clear(cache_t *cache)
{
    for (size_t i = 0; i < CACHE_STRIPES; i++) {
        cache_stripe_t *st = &cache->stripes[i];
        while (!h2o_linklist_is_empty(&st->fetches)) {
            fetch_t *f = fetch_from_registry_link(st->fetches.next);
            h2o_linklist_unlink(st->fetches.next);
            fetch_release(f);
        }
    }
}
