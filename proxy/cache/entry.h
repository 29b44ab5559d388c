/*
 * entry.h - what an upstream response says about a cached object (entry.c).
 */
#ifndef LARDER_CACHE_ENTRY_H
#define LARDER_CACHE_ENTRY_H

#include "exchange.h"
#include "state.h"

typedef struct entry_source {
    const store_key_t *key;
    const char *bucket, *name;
    cache_flavour_t flavour;
    const char *caller;        /* the identity that fetched it: the owner of a new generation ("" for nobody) */
    bool anonymous;            /* fetched without credentials: the generation is public */
    int64_t pinned_generation; /* -1: any */
} entry_source_t;

/* Who read a resource, for entry_record_resource. */
typedef struct entry_caller {
    const char *name; /* the owner of a new generation, "" for nobody */
    bool anonymous;
} entry_caller_t;

/*
 * Reads a media response head (200 or 206) into meta, with its record merged
 * into resource_json, and the absolute offset its body starts at. Returns
 * NULL when the body may be stored, else why not (for the log).
 */
const char *entry_from_media_head(cache_t *cache, const exchange_t *x, const entry_source_t *src, store_meta_t *meta,
                                  uint64_t *start);
/*
 * A 304 for an entry (view is its parsed view for flavour): RFC 9111 4.3.4,
 * the stored headers the 304 carries are replaced. When it says nothing new,
 * nothing is written, but the fill time when restart_window (a ttl policy:
 * the window starts again). Updates meta (and its record text) in place and
 * queues what changed to the store. Returns true when the 304 reports
 * another metageneration: headers it does not carry may have changed too,
 * and the caller refreshes them.
 */
bool entry_update_from_304(cache_t *cache, const store_key_t *key, cache_flavour_t flavour, store_meta_t *meta,
                           const record_view_t *view, const exchange_t *x, bool restart_window);
/*
 * Records a metadata GET's JSON resource (a new generation replaces what was
 * cached). The caller becomes the owner of a new generation only; one read
 * anonymously, or whose ACL lets allUsers read it, is public. Returns true
 * when the caller is the owner of the generation recorded.
 */
bool entry_record_resource(cache_t *cache, const store_key_t *key, const char *bucket, const char *name,
                           const entry_caller_t *caller, const h2o_headers_t *headers, json_t *resource);
/* Upstream let an anonymous caller read this generation: it is public from now on (meta updated in place). */
void entry_mark_public(cache_t *cache, const store_key_t *key, store_meta_t *meta);

/* --- shared with upload_entry.c --- */

/* An RFC 3339 time (a resource's "updated") as an HTTP date in buf; NULL when it is not one. */
char *entry_http_date_of_rfc3339(const char *s, char *buf, size_t cap);
/* A resource's int64 field (a JSON string, as GCS writes them); -1 when absent or not a number. */
int64_t entry_json_int64(json_t *object, const char *key);
/* Whether a resource's ACL (a full projection) lets allUsers read it. */
bool entry_acl_grants_all_users(json_t *resource);

#endif
