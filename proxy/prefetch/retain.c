/*
 * retain.c - one lease per retained input (see retain.h).
 *
 * A pin the store refuses (all leases together at batches.max_pinned_bytes)
 * leaves the input unretained: it is still prefetched, only not protected,
 * and GET on its DAG says "retained": false.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "retain.h"

/* A lease is renewed when less than this much of it is left. */
#define RENEW_BEFORE_MS (RETAIN_TTL_MS / 2)

typedef struct held {
    char id[STORE_LEASE_ID_MAX + 1];
    int64_t expires_ms;
    uint64_t bytes;
} held_t;

struct retain {
    store_t *store;
    held_t *held;
    size_t count, cap;
};

retain_t *retain_new(store_t *store)
{
    retain_t *r = calloc(1, sizeof(*r));
    if (r != NULL)
        r->store = store;
    return r;
}

void retain_free(retain_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++)
        store_lease_end(r->store, r->held[i].id);
    free(r->held);
    free(r);
}

static const retain_want_t *wanted(const retain_want_t *wants, size_t count, const char *id)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(wants[i].id, id) == 0)
            return &wants[i];
    return NULL;
}

static void take(retain_t *r, const retain_want_t *w, int64_t now_ms)
{
    if (r->count == r->cap) {
        size_t cap = r->cap != 0 ? r->cap * 2 : 16;
        held_t *grown = realloc(r->held, cap * sizeof(*grown));
        if (grown == NULL)
            return; /* not retained this round: the next one tries again */
        r->held = grown;
        r->cap = cap;
    }
    int64_t expires = now_ms + RETAIN_TTL_MS;
    char note[STORE_PIN_NOTE_MAX + 1];
    int n = snprintf(note, sizeof(note), "gs://%s/%s", w->bucket, w->name);
    store_pin_note_t pin_note = {.marks = 1, .text = note, .text_len = n > 0 && n <= STORE_PIN_NOTE_MAX ? (size_t)n : 0};
    store_key_t key;
    store_key_make(&key, w->bucket, strlen(w->bucket), w->name, strlen(w->name));
    if (store_lease_put(r->store, w->id, "larder-prefetch", expires, 0) != STORE_OK)
        return;
    int rc = store_lease_pin(r->store, w->id, &key, &pin_note, 0);
    if (rc != STORE_OK) {
        if (rc == STORE_QUOTA)
            log_msg(LOG_LEVEL_INFO, "prefetch", "%s: not retained, all leases together are at their bound", note);
        store_lease_end(r->store, w->id);
        return;
    }
    held_t *h = &r->held[r->count++];
    snprintf(h->id, sizeof(h->id), "%s", w->id);
    h->expires_ms = expires;
    h->bytes = w->bytes;
}

void retain_sync(retain_t *r, const retain_want_t *wants, size_t count, int64_t now_ms)
{
    for (size_t i = 0; i < r->count;) {
        held_t *h = &r->held[i];
        const retain_want_t *w = wanted(wants, count, h->id);
        if (w == NULL) {
            store_lease_end(r->store, h->id);
            r->held[i] = r->held[--r->count];
            continue;
        }
        h->bytes = w->bytes;
        if (h->expires_ms - now_ms < RENEW_BEFORE_MS &&
            store_lease_extend(r->store, h->id, now_ms + RETAIN_TTL_MS) == STORE_OK)
            h->expires_ms = now_ms + RETAIN_TTL_MS;
        i++;
    }
    for (size_t i = 0; i < count; i++)
        if (!retain_holds(r, wants[i].id))
            take(r, &wants[i], now_ms);
}

bool retain_holds(const retain_t *r, const char *id)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->held[i].id, id) == 0)
            return true;
    return false;
}

uint64_t retain_bytes(const retain_t *r)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < r->count; i++)
        sum += r->held[i].bytes;
    return sum;
}
