/*
 * batch_use.c - a request in a batch (see batch_use.h).
 */
#include <string.h>

#include "access_log.h"
#include "batch_use.h"
#include "state.h"

void batch_use_parse(batch_use_t *use, h2o_mem_pool_t *pool, const request_headers_t *headers)
{
    memset(use, 0, sizeof(*use));
    h2o_iovec_t v = headers->batch;
    if (v.base == NULL)
        return;
    use->invalid = !cache_batch_id_valid(v.base, v.len) || headers->batch_count > 1;
    use->id = h2o_strdup(pool, v.base, v.len).base;
}

bool batch_use_check(batch_use_t *use, h2o_req_t *req, const auth_identity_t *who, error_format_t format)
{
    if (use->id == NULL)
        return true;
    if (use->invalid) {
        gcs_error_send(req, format, GCS_ERROR_BAD_REQUEST,
                       "X-Larder-Batch must name one batch: 1 to 128 letters, digits, '.', '_', '~' or '-'.");
        return false;
    }
    worker_t *worker = worker_of(req);
    cache_batch_t batch;
    int rc = cache_batch_get(worker->cache, &req->pool, use->id, &batch);
    /* Someone else's batch answers as an unknown one: its existence is the owner's business. */
    bool allowed = rc == STORE_OK && ((who->kind == AUTH_IDENTIFIED && strcmp(batch.owner, who->name) == 0) ||
                                      auth_is_admin(worker->auth, who));
    if (rc == STORE_ERROR) {
        gcs_error_send(req, format, GCS_ERROR_UNAVAILABLE, "The batch could not be read from larder's store.");
        return false;
    }
    if (!allowed) {
        gcs_error_send(req, format, GCS_ERROR_NOT_FOUND,
                       "No such batch (X-Larder-Batch), or not yours: only its owner or an admin may use it.");
        return false;
    }
    use->expires_at_ms = batch.expires_at_ms;
    use->quota_bytes = batch.quota_bytes;
    use->pinned_bytes = batch.pinned_bytes;
    return true;
}

bool batch_use_has_room(const batch_use_t *use, h2o_req_t *req, uint64_t bytes)
{
    worker_t *worker = worker_of(req);
    if (use->quota_bytes != 0 && use->pinned_bytes + bytes > use->quota_bytes)
        return false;
    store_stats_t stats;
    store_stats_get(worker->cache->store, &stats);
    uint64_t bound = worker->conf->batches.max_pinned_bytes != 0 ? worker->conf->batches.max_pinned_bytes
                                                                  : worker->conf->store.budget / 2;
    return stats.lease_pinned_bytes + bytes <= bound;
}

static void on_pin_done(void *ctx, int result)
{
    batch_use_t *use = ctx;
    use->call = NULL;
    cache_batch_t now;
    /* The expiry as the pin left it: a heartbeat meanwhile moved it on. */
    if (result == STORE_OK && cache_batch_get(worker_of(use->req)->cache, &use->req->pool, use->id, &now) == STORE_OK)
        use->available_until_ms = now.expires_at_ms;
    else if (result == STORE_OK)
        result = STORE_NOT_FOUND; /* it ended as the pin committed: nothing is promised */
    use->on_pinned(use, result);
}

bool batch_use_pin(batch_use_t *use, h2o_req_t *req, const char *bucket, const char *name, uint32_t marks,
                   uint64_t expect_bytes)
{
    worker_t *worker = worker_of(req);
    use->req = req;
    use->call = cache_batch_pin(worker->cache, worker, use->id, bucket, name, marks, expect_bytes, on_pin_done, use);
    return use->call != NULL;
}

void batch_use_refuse(batch_use_t *use, h2o_req_t *req, int result, error_format_t format)
{
    (void)use;
    if (result == STORE_QUOTA)
        gcs_error_send(req, format, GCS_ERROR_INSUFFICIENT_STORAGE,
                       "Pinning this object into the batch would pass its quota of pinned bytes, or larder's for "
                       "all batches (store.max_lease_pinned_bytes); nothing was pinned.");
    else if (result == STORE_NOT_FOUND)
        gcs_error_send(req, format, GCS_ERROR_NOT_FOUND, "The batch (X-Larder-Batch) ended or expired.");
    else
        gcs_error_send(req, format, GCS_ERROR_UNAVAILABLE, "The object could not be pinned into the batch.");
}

void batch_use_advertise(const batch_use_t *use, h2o_req_t *req)
{
    if (use->available_until_ms == 0)
        return;
    char *when = h2o_mem_alloc_pool(&req->pool, LOG_TIME_SIZE);
    log_time_rfc3339(use->available_until_ms, when);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-larder-available-until"), 0, NULL, when,
                          strlen(when));
}

void batch_use_dispose(batch_use_t *use)
{
    lease_call_cancel(use->call);
    use->call = NULL;
}
