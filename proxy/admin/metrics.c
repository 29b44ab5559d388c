/*
 * metrics.c - /_larder/metrics in Prometheus' text format (version 0.0.4).
 *
 * Counters are each worker's own (request_metrics.c), added up here at
 * scrape time; gauges are read now from the store, the cache, auth and the
 * connection table. Names follow Prometheus' conventions (units in the name,
 * counters end in _total), and `promtool check metrics` accepts the output
 * (tests/integration/test_metrics.py). The names are the ones dashboards
 * and alerts may rely on; README lists them.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "byte_buffer.h"
#include "cache.h"
#include "metrics.h"
#include "prefetcher.h"
#include "request_metrics.h"
#include "route.h"
#include "usage.h"

static void put(byte_buffer_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(byte_buffer_t *out, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        byte_buffer_put(out, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void family(byte_buffer_t *out, const char *name, const char *type, const char *help)
{
    put(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(byte_buffer_t *out, const char *name, const char *help, uint64_t value)
{
    family(out, name, "gauge", help);
    put(out, "%s %" PRIu64 "\n", name, value);
}

static void counter(byte_buffer_t *out, const char *name, const char *help, uint64_t value)
{
    family(out, name, "counter", help);
    put(out, "%s %" PRIu64 "\n", name, value);
}

static uint64_t load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Sums one counter over every worker: offset is its place in request_metrics_t. */
static uint64_t total(server_t *server, size_t offset)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < server_worker_count(server); i++)
        sum += load((const _Atomic uint64_t *)((const char *)server_worker_at(server, i)->metrics + offset));
    return sum;
}

#define TOTAL(server, field) total(server, offsetof(request_metrics_t, field))

static void requests(byte_buffer_t *out, server_t *server)
{
    family(out, "larder_requests_total", "counter", "Requests answered, by route, method and status.");
    for (size_t r = 0; r < METRICS_ROUTES; r++)
        for (size_t m = 0; m < METRICS_METHODS; m++)
            for (size_t s = 0; s < METRICS_STATUSES; s++) {
                uint64_t n = TOTAL(server, requests[r][m][s]);
                if (n != 0)
                    put(out, "larder_requests_total{route=\"%s\",method=\"%s\",status=\"%zu\"} %" PRIu64 "\n",
                        route_api_name((route_api_t)r), metrics_method_names[m], s + METRICS_STATUS_MIN, n);
            }
}

static void cache_results(byte_buffer_t *out, server_t *server)
{
    family(out, "larder_cache_requests_total", "counter",
           "Requests by what the cache made of them: hit, miss, revalidated (upstream said 304) or pass.");
    for (size_t i = 0; i < METRICS_CACHE_RESULTS; i++)
        put(out, "larder_cache_requests_total{result=\"%s\"} %" PRIu64 "\n", metrics_cache_results[i],
            TOTAL(server, cache_requests[i]));
    family(out, "larder_cache_bytes_total", "counter", "Response bytes sent to clients, by cache result.");
    for (size_t i = 0; i < METRICS_CACHE_RESULTS; i++)
        put(out, "larder_cache_bytes_total{result=\"%s\"} %" PRIu64 "\n", metrics_cache_results[i],
            TOTAL(server, cache_bytes[i]));
}

static void upstream_latency(byte_buffer_t *out, server_t *server)
{
    const char *name = "larder_upstream_request_duration_seconds";
    family(out, name, "histogram", "Time from sending a request upstream to its response head.");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        cumulative += TOTAL(server, upstream_latency[i]);
        put(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, metrics_latency_bounds_s[i], cumulative);
    }
    cumulative += TOTAL(server, upstream_latency[METRICS_LATENCY_BUCKETS]);
    put(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cumulative);
    put(out, "%s_sum %.3f\n", name, (double)TOTAL(server, upstream_latency_ms_sum) / 1000.0);
    put(out, "%s_count %" PRIu64 "\n", name, cumulative);
}

static void store_gauges(byte_buffer_t *out, cache_t *cache)
{
    cache_gauges_t g = {0};
    if (cache != NULL)
        cache_gauges(cache, &g);
    gauge(out, "larder_cache_enabled", "1 when the cache (and its store) is open, 0 when larder only passes through.",
          cache != NULL);
    gauge(out, "larder_store_bytes", "Bytes the store holds: chunk payload plus metadata.", g.store.used_bytes);
    gauge(out, "larder_store_budget_bytes", "The store's byte budget (store.budget).", g.store.budget);
    gauge(out, "larder_store_pinned_bytes", "Bytes of the objects live batches pin, which eviction skips.",
          g.store.lease_pinned_bytes);
    gauge(out, "larder_store_serving_pinned_bytes", "Bytes of the objects responses in progress hold against eviction.",
          g.store.pinned_bytes);
    gauge(out, "larder_batches", "Live batches (leases).", g.store.lease_count);
    gauge(out, "larder_store_objects", "Objects the store holds.", g.store.objects);
    gauge(out, "larder_store_chunks", "Chunks the store holds.", g.store.chunks);
    counter(out, "larder_store_evictions_total", "Objects evicted to stay within the budget.",
            g.store.evicted_objects);
    counter(out, "larder_store_evicted_bytes_total", "Bytes evicted to stay within the budget.", g.store.evicted_bytes);
    counter(out, "larder_store_lost_chunks_total", "Chunks the store accepted but could not commit.",
            g.store.lost_chunks);
    gauge(out, "larder_store_out_of_space", "1 while the last batch of chunks found the disk or the map full.",
          g.store.out_of_space);
    gauge(out, "larder_fills_in_flight", "Fills running or committing (upstream GETs and uploads becoming entries).",
          g.fills_in_flight);
    gauge(out, "larder_upload_sessions", "Resumable and XML multipart uploads in progress.", g.upload_sessions);
    gauge(out, "larder_upload_pending_bytes", "Bytes those uploads keep pending in the store.",
          g.upload_pending_bytes);
}

static void hot_figures(byte_buffer_t *out, server_t *server)
{
    store_hot_stats_t st;
    server_hot_stats(server, &st);
    counter(out, "larder_store_hot_hits_total", "Hits served from the workers' copies of small objects in memory.",
            st.hits);
    counter(out, "larder_store_hot_loads_total", "Copies of small objects made from the store (store.hot_bytes).",
            st.loads);
    counter(out, "larder_store_hot_evictions_total", "Copies dropped to stay within store.hot_bytes.", st.evictions);
    gauge(out, "larder_store_hot_bytes", "Memory the copies of small objects take.", st.bytes);
    gauge(out, "larder_store_hot_objects", "Copies of small objects held.", st.objects);
}

static void prefetch_figures(byte_buffer_t *out, prefetcher_t *prefetch)
{
    prefetch_stats_t st = {0};
    if (prefetch != NULL)
        prefetcher_stats(prefetch, &st);
    gauge(out, "larder_prefetch_jobs", "DAGs and prefetch lists larder holds.", st.jobs);
    gauge(out, "larder_prefetch_reads_in_flight", "Prefetch reads (ranges of a few chunks) in flight.", st.in_flight);
    counter(out, "larder_prefetch_bytes_total", "Bytes prefetch reads received (moved from upstream when they missed).",
            st.bytes);
    gauge(out, "larder_prefetch_retained_inputs", "Inputs of stages still to run that are kept from eviction.",
          st.retained);
}

static void auth_figures(byte_buffer_t *out, worker_t *worker)
{
    static const char *const names[AUTH_DECISIONS] = {
        [AUTH_DECISION_OWNER] = "owner", [AUTH_DECISION_GRANT] = "grant", [AUTH_DECISION_PUBLIC] = "public",
        [AUTH_DECISION_DENIED] = "denied", [AUTH_DECISION_UNAUTHENTICATED] = "unauthenticated"};
    uint64_t totals[AUTH_DECISIONS];
    auth_decision_totals(worker->auth, totals);
    family(out, "larder_auth_decisions_total", "counter", "Decisions on who may read a cached entry, by kind.");
    for (size_t i = 0; i < AUTH_DECISIONS; i++)
        if (names[i] != NULL)
            put(out, "larder_auth_decisions_total{decision=\"%s\"} %" PRIu64 "\n", names[i], totals[i]);
    gauge(out, "larder_token_cache_entries", "Token validations remembered now.",
          auth_token_cache_entries(worker->auth));
}

/* A label value as Prometheus wants it: backslash, double quote and newline escaped. */
static const char *label_value(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; *s != '\0' && n + 3 < cap; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n')
            buf[n++] = '\\';
        buf[n++] = *s == '\n' ? 'n' : *s;
    }
    buf[n] = '\0';
    return buf;
}

static void users(byte_buffer_t *out, worker_t *worker)
{
    user_usage_t totals;
    if (user_usage_init(&totals) != 0)
        return;
    if (usage_totals(worker, NULL, &totals) == 0) {
        static const struct {
            const char *name, *type, *help;
            size_t field;
        } figures[] = {
            {"larder_user_cached_bytes", "gauge", "Bytes the store holds of the objects each user owns.",
             offsetof(user_usage_entry_t, cached_bytes)},
            {"larder_user_pinned_bytes", "gauge", "Bytes each user's live batches pin against eviction.",
             offsetof(user_usage_entry_t, pinned_bytes)},
            {"larder_user_served_bytes_total", "counter", "Bytes served to each user from the cache.",
             offsetof(user_usage_entry_t, served_bytes)},
            {"larder_user_fetched_bytes_total", "counter", "Bytes sent to each user as they came from upstream.",
             offsetof(user_usage_entry_t, fetched_bytes)}};
        char user[2 * AUTH_IDENTITY_MAX];
        for (size_t f = 0; f < sizeof(figures) / sizeof(figures[0]); f++) {
            family(out, figures[f].name, figures[f].type, figures[f].help);
            for (size_t i = 0; i < totals.cap; i++)
                if (totals.entries[i].user != NULL)
                    put(out, "%s{user=\"%s\"} %" PRIu64 "\n", figures[f].name,
                        label_value(totals.entries[i].user, user, sizeof(user)),
                        *(const uint64_t *)((const char *)&totals.entries[i] + figures[f].field));
        }
    }
    user_usage_dispose(&totals);
}

h2o_iovec_t metrics_exposition(h2o_req_t *req, worker_t *worker)
{
    server_t *server = worker->server;
    byte_buffer_t out = {0};
    requests(&out, server);
    cache_results(&out, server);
    upstream_latency(&out, server);
    store_gauges(&out, worker->cache);
    hot_figures(&out, server);
    prefetch_figures(&out, worker->prefetch);
    auth_figures(&out, worker);
    users(&out, worker);
    gauge(&out, "larder_client_connections", "Client connections open now.", server_client_connections(server));
    if (out.failed) {
        byte_buffer_dispose(&out);
        return h2o_iovec_init(NULL, 0);
    }
    h2o_iovec_t text = h2o_strdup(&req->pool, out.base, out.len);
    byte_buffer_dispose(&out);
    return text;
}
