/*
 * upload_fill.h - a written object's bytes becoming its entry (upload_fill.c).
 */
#ifndef LARDER_CACHE_UPLOAD_FILL_H
#define LARDER_CACHE_UPLOAD_FILL_H

#include "upload_entry.h"
#include "upload_request.h"

/* A run of the new object's bytes: in memory, or a version of a cached (or pending) object in the store. */
typedef struct upload_segment {
    const char *data; /* NULL: in the store */
    store_key_t key;
    int64_t generation;
    uint64_t offset; /* in the store: where in that object the run starts */
    uint64_t length;
} upload_segment_t;

/*
 * Makes the object facts describe an entry whose bytes are segments, one
 * after another: the old copy is invalidated, and a local fill started;
 * when facts lack the whole resource, upload_complete.c is asked for it.
 * True when *made is the object's key and must not be invalidated again
 * (made an entry, or a newer generation is cached already).
 */
bool upload_fill_start(const upload_request_t *u, const upload_facts_t *facts, const upload_segment_t *segments,
                       size_t count, store_key_t *made);
/* Takes an answer's resource into facts; whole: the start asked for no fields= selection either. */
void upload_facts_from_answer(upload_facts_t *facts, const upload_request_t *u, json_t *resource,
                              const h2o_headers_t *headers, bool whole);

#endif
