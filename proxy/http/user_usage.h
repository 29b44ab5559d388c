/*
 * user_usage.h - bytes each identity was served from the cache and had
 * fetched from upstream, counted per worker (user_usage.c), for
 * /_larder/v1/usage and the metrics.
 */
#ifndef LARDER_USER_USAGE_H
#define LARDER_USER_USAGE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "access_log.h"

typedef struct user_usage_entry {
    char *user;
    uint64_t served_bytes;  /* sent to the user from the cache: hits, and reads upstream confirmed (304) */
    uint64_t fetched_bytes; /* sent to the user as they came from upstream: misses and reads passed through */
    uint64_t cached_bytes;  /* only in a table of totals: what the store holds that the user owns */
    uint64_t pinned_bytes;  /* only in a table of totals: what the user's live batches pin */
} user_usage_entry_t;

/* One worker's figures. Written by its own thread; the lock lets another thread read them. */
typedef struct user_usage {
    pthread_mutex_t lock;
    user_usage_entry_t *entries; /* open addressing by the user's hash; user NULL: free */
    size_t cap, count;
} user_usage_t;

int user_usage_init(user_usage_t *u);
void user_usage_dispose(user_usage_t *u);
/*
 * Counts an ended request of a known identity (anonymous and unverifiable
 * callers are nobody's); result: its cache state's (request_metrics_cache_result).
 */
void user_usage_record(user_usage_t *u, const access_log_entry_t *e, int result);
/* Adds this worker's figures into *into (a table of the caller's own), for user or, when user is NULL, all. */
void user_usage_add_into(user_usage_t *u, const char *user, user_usage_t *into);
/* The entry of user in a table (NULL when absent). */
const user_usage_entry_t *user_usage_find(const user_usage_t *u, const char *user);
/* Adds cached bytes to user's entry in a table of totals (made when absent). */
void user_usage_add_cached(user_usage_t *u, const char *user, uint64_t bytes);
void user_usage_add_pinned(user_usage_t *u, const char *user, uint64_t bytes);

#endif
