/*
 * writes.h - writes through larder (writes.c).
 */
#ifndef LARDER_CACHE_WRITES_H
#define LARDER_CACHE_WRITES_H

#include "state.h"

/* Forwards a write, with the objects it names marked in flight until upstream answered. */
void cache_write_start(h2o_req_t *req, const target_t *target);

#endif
