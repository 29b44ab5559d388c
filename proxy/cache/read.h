/*
 * read.h - one cacheable read (read.c).
 */
#ifndef LARDER_CACHE_READ_H
#define LARDER_CACHE_READ_H

#include "state.h"

void cache_read_start(h2o_req_t *req, const target_t *target, const cache_request_t *creq,
                      const request_headers_t *headers);

#endif
