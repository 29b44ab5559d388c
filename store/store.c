/*
 * store.c - opening and closing the store, and what happens when it is
 * damaged: the directory is renamed to PATH.broken-<unix time> and a new,
 * empty store is built in its place, with one log line saying why. Only a
 * directory the process cannot use makes store_open fail.
 *
 * Also the small public calls that belong to no other file: keys and stats.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "store_internal.h"

#define DEFAULT_HIGH_WATER 0.95
#define DEFAULT_LOW_WATER 0.85
#define DEFAULT_MAX_QUEUE ((size_t)64 << 20)
/* Map room beyond the budget: batches landing before eviction, free pages a reader still pins, LMDB's own pages. */
#define MAP_HEADROOM ((uint64_t)64 << 20)
#define MiB ((uint64_t)1 << 20)
/* 64 TiB: the map must fit the address space with room to spare. */
#define BUDGET_MAX ((uint64_t)1 << 46)

void store_log_msg(store_t *s, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (s->config.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->config.log(s->config.log_ctx, level, msg);
}

/*
 * The same, at most once per LOG_LIMIT_MS for one kind of event (limit),
 * saying how many were left out since the last line. For faults that
 * would otherwise log once per request.
 */
void store_log_limited(store_t *s, log_limit_t *limit, int level, const char *fmt, ...)
{
    char msg[1024];
    int64_t now = store_now_ms();
    va_list ap;

    if (now < limit->next_ms) {
        limit->suppressed++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (limit->suppressed > 0)
        store_log_msg(s, level, "%s (and %lu more like it in the last %d s)", msg, limit->suppressed,
                      LOG_LIMIT_MS / 1000);
    else
        store_log_msg(s, level, "%s", msg);
    limit->next_ms = now + LOG_LIMIT_MS;
    limit->suppressed = 0;
}

int64_t store_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* Checks the configuration, fills in defaults, and derives the sizes everything else uses. */
static int configure(store_t *s, const store_config_t *config)
{
    size_t len;

    s->config = *config;
    if (config->path == NULL || config->path[0] == '\0' || config->budget == 0 || config->budget > BUDGET_MAX) {
        store_log_msg(s, STORE_LOG_ERROR, "store: a path and a budget between 1 byte and 64 TiB are required");
        return STORE_ERROR;
    }
    if (s->config.verify_interval_s > VERIFY_INTERVAL_MAX)
        s->config.verify_interval_s = VERIFY_INTERVAL_MAX; /* verified.c keeps 20 bits of time */
    if (s->config.recency_persist_ms == 0)
        s->config.recency_persist_ms = RECENCY_PERSIST_MS;
    if (s->config.high_water == 0)
        s->config.high_water = DEFAULT_HIGH_WATER;
    if (s->config.low_water == 0)
        s->config.low_water = DEFAULT_LOW_WATER;
    if (!(s->config.low_water > 0 && s->config.low_water <= s->config.high_water && s->config.high_water <= 1)) {
        store_log_msg(s, STORE_LOG_ERROR, "store: water marks need 0 < low (%g) <= high (%g) <= 1", s->config.low_water,
                      s->config.high_water);
        return STORE_ERROR;
    }
    if (s->config.max_queue_bytes == 0)
        s->config.max_queue_bytes = DEFAULT_MAX_QUEUE;
    /* Two chunks at least, or a single put could never be queued. */
    s->config.max_queue_bytes = max_u64(s->config.max_queue_bytes, 2 * (sizeof(op_t) + STORE_CHUNK_SIZE));

    len = strlen(config->path);
    while (len > 1 && config->path[len - 1] == '/')
        len--;
    if ((s->path = strndup(config->path, len)) == NULL)
        return STORE_ERROR;
    s->config.path = s->path;

    s->high_mark = (uint64_t)((double)s->config.budget * s->config.high_water);
    s->low_mark = (uint64_t)((double)s->config.budget * s->config.low_water);
    s->max_object_bytes = s->low_mark;
    /* Half the budget by default: eviction keeps room to work with whatever batches pin. */
    s->max_lease_bytes = s->config.max_lease_pinned_bytes != 0 ? s->config.max_lease_pinned_bytes
                                                                : s->config.budget / 2;
    s->max_lease_bytes = min_u64(s->max_lease_bytes, s->config.budget);
    s->batch_max = min_u64(WRITER_BATCH_MAX, max_u64(s->config.budget / 4, MiB));
    s->batch_max = min_u64(s->batch_max, max_u64(s->config.max_queue_bytes / 2, MiB));
    /* The file is sparse: a map much larger than the data costs address space only. */
    s->map_size =
        (size_t)((s->config.budget + s->config.budget / 4 + MAP_HEADROOM + 2 * s->batch_max + MiB - 1) / MiB * MiB);
    return STORE_OK;
}

/* mkdir -p for the store's directory. */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    size_t i, len = strlen(path);

    if (len >= sizeof(buf))
        return ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return errno;
        buf[i] = path[i];
    }
    return 0;
}

/* Creates the directory if needed and locks it: two processes on one store would corrupt each other's index. */
static int dir_prepare(store_t *s)
{
    struct stat st;
    int err = make_dirs(s->path);

    if (err == 0 && stat(s->path, &st) != 0)
        err = errno;
    else if (err == 0 && !S_ISDIR(st.st_mode))
        err = ENOTDIR;
    if (err != 0) {
        store_log_msg(s, STORE_LOG_ERROR, "store %s: cannot use the directory: %s", s->path, strerror(err));
        return STORE_ERROR;
    }
    s->dir_fd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dir_fd < 0 || flock(s->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno;
        store_log_msg(s, STORE_LOG_ERROR, "store %s: %s", s->path,
                      err == EWOULDBLOCK ? "in use by another process" : strerror(err));
        if (s->dir_fd >= 0)
            close(s->dir_fd);
        s->dir_fd = -1;
        return STORE_ERROR;
    }
    return STORE_OK;
}

/* More than LMDB's lock file needs for ENV_MAX_READERS reader slots (about 33 KB). */
#define LOCK_FILE_BYTES ((off_t)64 * 1024)

/*
 * LMDB maps its lock file and writes into the mapping: on a full disk, pages
 * of it that were never allocated make the first write a SIGBUS. Allocating
 * them first turns that into an error the caller can act on.
 */
static int reserve_lock_file(store_t *s)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/lock.mdb", s->path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int err = fd < 0 ? errno : posix_fallocate(fd, 0, LOCK_FILE_BYTES);
    if (fd >= 0)
        close(fd);
    if (err == 0 || err == EOPNOTSUPP || err == EINVAL)
        return STORE_OK; /* a file system without fallocate: nothing to reserve with */
    store_log_msg(s, STORE_LOG_ERROR, "store %s: cannot allocate its lock file: %s", s->path, strerror(err));
    return err == ENOSPC || err == EDQUOT ? STORE_NO_SPACE : STORE_ERROR;
}

static void dir_release(store_t *s)
{
    if (s->dir_fd >= 0)
        close(s->dir_fd); /* releases the flock */
    s->dir_fd = -1;
}

/* Deep check in a child, then open here and rebuild the index from a shallow scan. */
static int open_checked(store_t *s, char *why, size_t why_len)
{
    int rc = check_in_child(s, why, why_len);

    if (rc == STORE_OK)
        rc = env_open(s, 0, why, why_len);
    if (rc == STORE_OK && !s->fresh && (rc = check_scan(s, false, true, why, why_len)) != STORE_OK)
        env_close(s);
    return rc;
}

/* Renames the damaged directory to PATH.broken-<unix time> (plus .N if that exists), logging once. */
static int move_aside(store_t *s, const char *why)
{
    char dst[PATH_MAX];
    long long now = (long long)time(NULL);
    struct stat st;
    int i;

    for (i = 0; i < 100; i++) {
        if (i == 0)
            snprintf(dst, sizeof(dst), "%s.broken-%lld", s->path, now);
        else
            snprintf(dst, sizeof(dst), "%s.broken-%lld.%d", s->path, now, i);
        if (lstat(dst, &st) == 0)
            continue;
        if (rename(s->path, dst) == 0) {
            store_log_msg(s, STORE_LOG_ERROR, "store %s does not open cleanly (%s): moved it to %s and starting empty",
                          s->path, why, dst);
            return STORE_OK;
        }
        if (errno != EEXIST && errno != ENOTEMPTY)
            break;
    }
    store_log_msg(s, STORE_LOG_ERROR, "store %s does not open cleanly (%s), and moving it aside failed: %s", s->path,
                  why, strerror(errno));
    return STORE_ERROR;
}

static int rebuild(store_t *s, const char *why)
{
    char why_again[512] = "";
    int rc = move_aside(s, why);

    dir_release(s);
    if (rc == STORE_OK)
        rc = dir_prepare(s);
    if (rc == STORE_OK)
        rc = reserve_lock_file(s);
    if (rc == STORE_OK && (rc = open_checked(s, why_again, sizeof(why_again))) != STORE_OK)
        store_log_msg(s, STORE_LOG_ERROR, "store %s: the new, empty store does not open either: %s", s->path,
                      why_again);
    return rc == STORE_OK || rc == STORE_NO_SPACE ? rc : STORE_ERROR;
}

static void store_free(store_t *s)
{
    env_close(s);
    dir_release(s);
    index_destroy(&s->index);
    hide_destroy(&s->hide);
    verified_destroy(&s->verified);
    reader_pool_destroy(&s->readers);
    free(s->transient); /* listed at open, and not removed: the writer did not start up */
    free(s->path);
    free(s);
}

int store_open(store_t **store, const store_config_t *config)
{
    char why[512] = "";
    store_t *s;
    int rc;

    *store = NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return STORE_ERROR;
    s->dir_fd = -1;
    s->config.log = config->log; /* so configure() can report */
    s->config.log_ctx = config->log_ctx;
    if (index_init(&s->index, (size_t)(config->budget / MiB) * 2) != 0) {
        free(s);
        return STORE_ERROR;
    }
    if (hide_init(&s->hide) != 0) {
        index_destroy(&s->index);
        free(s);
        return STORE_ERROR;
    }
    if (verified_init(&s->verified, VERIFIED_SLOTS) != 0) {
        hide_destroy(&s->hide);
        index_destroy(&s->index);
        free(s);
        return STORE_ERROR;
    }
    if (reader_pool_init(&s->readers) != 0) {
        verified_destroy(&s->verified);
        hide_destroy(&s->hide);
        index_destroy(&s->index);
        free(s);
        return STORE_ERROR;
    }
    rc = configure(s, config);
    if (rc == STORE_OK)
        rc = dir_prepare(s);
    if (rc == STORE_OK)
        rc = reserve_lock_file(s);
    if (rc == STORE_OK)
        rc = open_checked(s, why, sizeof(why));
    if (rc == STORE_CORRUPT)
        rc = rebuild(s, why);
    else if ((rc == STORE_ERROR || rc == STORE_NO_SPACE) && why[0] != '\0')
        store_log_msg(s, STORE_LOG_ERROR, "store %s: cannot open: %s", s->path, why);
    if (rc == STORE_OK && (rc = writer_start(s)) != STORE_OK)
        store_log_msg(s, STORE_LOG_ERROR, "store %s: the writer thread did not start up", s->path);
    if (rc != STORE_OK) {
        store_free(s);
        return rc == STORE_NO_SPACE ? STORE_NO_SPACE : STORE_ERROR;
    }
    *store = s;
    return STORE_OK;
}

void store_close(store_t *store)
{
    if (store == NULL)
        return;
    writer_stop(store);
    store_free(store);
}

/*
 * OpenSSL 3 looks an algorithm up by name, under a lock, on every one-shot
 * SHA256() call: on the hit path, where each request hashes its key, that
 * lookup cost more than the hashing. The fetched implementation is immutable
 * and thread-safe, so one fetch serves the whole process. It is never freed:
 * OpenSSL's own exit handler tears its providers down, and freeing after that
 * would touch freed memory.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

uint32_t store_crc32c(uint32_t crc, const void *data, size_t len)
{
    return crc32c(crc, data, len);
}

bool store_sha256(const void *data, size_t len, uint8_t digest[32])
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md != NULL && EVP_Digest(data, len, digest, NULL, sha256_md, NULL) == 1;
}

void store_key_make(store_key_t *key, const char *bucket, size_t bucket_len, const char *name, size_t name_len)
{
    /* The bucket's length first, so no bucket/name split can collide with another.
     * GCS names fit the stack buffer (bucket <= 222, name <= 1024 bytes); longer
     * ones, which upstream will refuse anyway, still get a correct key. */
    unsigned char stack[8 + 256 + 1280], *buf = stack;
    size_t len = 8 + bucket_len + name_len;
    if (len > sizeof(stack) && (buf = malloc(len)) == NULL) {
        memset(key->hash, 0xff, sizeof(key->hash)); /* matches nothing a real name hashes to */
        return;
    }
    put_le64(buf, bucket_len);
    memcpy(buf + 8, bucket, bucket_len);
    memcpy(buf + 8 + bucket_len, name, name_len);
    if (!store_sha256(buf, len, key->hash))
        memset(key->hash, 0xff, sizeof(key->hash));
    if (buf != stack)
        free(buf);
}

bool store_out_of_space(store_t *store)
{
    return atomic_load(&store->out_of_space);
}

void store_stats_get(store_t *store, store_stats_t *stats)
{
    memset(stats, 0, sizeof(*stats));
    stats->budget = store->config.budget;
    index_usage(&store->index, &stats->used_bytes, &stats->objects, &stats->chunks);
    stats->pinned_bytes = index_pinned_bytes(&store->index);
    stats->evicted_objects = atomic_load(&store->evicted_objects);
    stats->evicted_bytes = atomic_load(&store->evicted_bytes);
    stats->commits = atomic_load(&store->commits);
    stats->corrupt_chunks = atomic_load(&store->corrupt_chunks);
    stats->busy_rejections = atomic_load(&store->busy_rejections);
    stats->lost_chunks = atomic_load(&store->lost_chunks);
    stats->out_of_space = atomic_load(&store->out_of_space);
    lease_table_stats(&store->index, store_wall_ms(), index_object_bytes_locked, &stats->lease_count,
                      &stats->lease_pinned_bytes);
}
