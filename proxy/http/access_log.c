/*
 * access_log.c - writes the per-request log line in the configured format.
 */
#include "access_log.h"
#include "request_metrics.h"
#include "user_usage.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "worker.h"

static const char *const secret_params[] = {"access_token", "upload_id", "X-Goog-Signature", "Signature",
                                            "X-Amz-Signature", "key"};

static bool is_secret_param(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(secret_params) / sizeof(secret_params[0]); i++)
        if (strlen(secret_params[i]) == len && memcmp(secret_params[i], name, len) == 0)
            return true;
    return false;
}

size_t access_log_redact_path(const char *path, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    bool in_query = false, masking = false;
    const char *param_start = NULL;
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        char c = path[i];
        if (!in_query && c == '?') {
            in_query = true;
            param_start = path + i + 1;
        } else if (in_query && c == '&') {
            masking = false;
            param_start = path + i + 1;
        } else if (in_query && c == '=' && param_start != NULL) {
            masking = is_secret_param(param_start, (size_t)(path + i - param_start));
            param_start = NULL;
            out[n++] = c;
            if (masking && n + 4 < cap) {
                memcpy(out + n, "***", 3);
                n += 3;
            }
            continue;
        }
        if (!masking)
            out[n++] = c;
    }
    out[n] = '\0';
    return n;
}

/* JSON-escapes src into dst (always terminated); control bytes become \u00XX. */
static size_t json_escape(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 7 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '"' || c == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", c);
        } else {
            dst[n++] = (char)c;
        }
    }
    dst[n] = '\0';
    return n;
}

static void format_timestamp(char buf[LOG_TIME_SIZE])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    log_time_rfc3339((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, buf);
}

/* The identity and access fields, in the line's format; "" when neither is known. */
static void format_access(const access_log_entry_t *e, char *out, size_t cap)
{
    out[0] = '\0';
    if (e->access == NULL && e->identity == NULL)
        return;
    char identity[2 * 256 + 8];
    json_escape(identity, sizeof(identity), e->identity != NULL ? e->identity : "",
                e->identity != NULL ? strlen(e->identity) : 0);
    if (log_format() == LOG_FORMAT_JSON)
        snprintf(out, cap, ",\"identity\":\"%s\"%s%s%s", identity, e->access != NULL ? ",\"access\":\"" : "",
                 e->access != NULL ? e->access : "", e->access != NULL ? "\"" : "");
    else
        snprintf(out, cap, " identity=%s access=%s", identity[0] != '\0' ? identity : "-",
                 e->access != NULL ? e->access : "-");
}

void access_log_write(const access_log_entry_t *e)
{
    if (!log_enabled(LOG_LEVEL_INFO))
        return;
    h2o_req_t *req = e->req;
    char path[4096], method[64], escaped_path[8192], ts[LOG_TIME_SIZE], line[10240], access[640];
    access_log_redact_path(req->path.base, req->path.len, path, sizeof(path));
    json_escape(method, sizeof(method), req->method.base, req->method.len);
    format_timestamp(ts);
    format_access(e, access, sizeof(access));
    int n;
    if (log_format() == LOG_FORMAT_JSON) {
        json_escape(escaped_path, sizeof(escaped_path), path, strlen(path));
        n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%s\",\"level\":\"info\",\"component\":\"access\",\"method\":\"%s\",\"route\":\"%s\","
                     "\"path\":\"%s\",\"status\":%d,\"bytes\":%llu,\"upstream_ms\":%lld,\"cache\":\"%s\"%s,"
                     "\"http\":\"%d.%d\"%s%s%s}\n",
                     ts, method, route_api_name(e->api), escaped_path, e->status, (unsigned long long)e->bytes_sent,
                     (long long)e->upstream_ms, e->cache, access, req->version >> 8, req->version & 0xff,
                     e->error != NULL ? ",\"error\":\"" : "", e->error != NULL ? e->error : "",
                     e->error != NULL ? "\"" : "");
    } else {
        n = snprintf(line, sizeof(line),
                     "%s INFO access: %s %s route=%s status=%d bytes=%llu upstream_ms=%lld cache=%s%s%s%s\n", ts,
                     method, path, route_api_name(e->api), e->status, (unsigned long long)e->bytes_sent,
                     (long long)e->upstream_ms, e->cache, access, e->error != NULL ? " error=" : "",
                     e->error != NULL ? e->error : "");
    }
    if (n > 0)
        log_write_line(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void access_log_finish(const access_log_entry_t *e)
{
    worker_t *worker = worker_of(e->req);
    int result = request_metrics_cache_result(e->cache);
    request_metrics_record(worker->metrics, e, result);
    user_usage_record(worker->usage, e, result);
    if (worker->conf->log.access_log)
        access_log_write(e);
}

void access_log_local_answer(h2o_req_t *req, route_api_t api, const char *identity, const char *access,
                             const char *why)
{
    access_log_finish(&(access_log_entry_t){.req = req,
                                           .api = api,
                                           .status = req->res.status,
                                           .bytes_sent = req->res.content_length,
                                           .upstream_ms = -1,
                                           .cache = "PASS",
                                           .identity = identity,
                                           .access = access,
                                           .error = why});
}
