/*
 * usage.c - what each user holds in the cache and moved through it, for
 * billing: cached bytes (the objects the user owns now, counted once
 * whoever else reads them), bytes served from the cache, bytes fetched
 * from upstream, bytes the user's batches pin. Served and fetched come
 * from each worker's counters (user_usage.c); cached from one scan of the
 * store; pinned from the live batches (an object two batches pin counts
 * in each, as it does against their quotas).
 */
#include <inttypes.h>
#include <jansson.h>
#include <string.h>

#include "cache.h"
#include "usage.h"

static void add_owned(void *ctx, const char *owner, uint64_t bytes)
{
    user_usage_add_cached(ctx, owner, bytes);
}

typedef struct pinned_ctx {
    const char *user;
    user_usage_t *into;
} pinned_ctx_t;

static bool add_pinned(void *ctx, const cache_batch_t *batch)
{
    pinned_ctx_t *p = ctx;
    if (p->user == NULL || strcmp(p->user, batch->owner) == 0)
        user_usage_add_pinned(p->into, batch->owner, batch->pinned_bytes);
    return true;
}

int usage_totals(worker_t *worker, const char *user, user_usage_t *into)
{
    server_t *server = worker->server;
    for (size_t i = 0; i < server_worker_count(server); i++)
        user_usage_add_into(server_worker_at(server, i)->usage, user, into);
    if (worker->cache == NULL)
        return 0;
    if (cache_owned(worker->cache, user, add_owned, into) != STORE_OK)
        return -1;
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    int rc = cache_batch_list(worker->cache, &pool, add_pinned, &(pinned_ctx_t){user, into});
    h2o_mem_clear_pool(&pool);
    return rc == STORE_OK ? 0 : -1;
}

static json_t *user_json(const char *user, const user_usage_entry_t *e)
{
    return json_pack("{s:s,s:I,s:I,s:I,s:I}", "user", user, "cached_bytes", (json_int_t)(e ? e->cached_bytes : 0),
                     "served_bytes", (json_int_t)(e ? e->served_bytes : 0), "fetched_bytes",
                     (json_int_t)(e ? e->fetched_bytes : 0), "pinned_bytes", (json_int_t)(e ? e->pinned_bytes : 0));
}

h2o_iovec_t usage_json(h2o_req_t *req, const user_usage_t *totals, const char *user)
{
    json_t *root;
    if (user != NULL) {
        root = user_json(user, user_usage_find(totals, user));
    } else {
        json_t *users = json_array();
        for (size_t i = 0; users != NULL && i < totals->cap; i++)
            if (totals->entries[i].user != NULL)
                json_array_append_new(users, user_json(totals->entries[i].user, &totals->entries[i]));
        root = users != NULL ? json_pack("{s:o}", "users", users) : NULL;
    }
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (text == NULL)
        return h2o_iovec_init(NULL, 0);
    h2o_iovec_t body = h2o_strdup(&req->pool, text, SIZE_MAX);
    free(text);
    return body;
}
