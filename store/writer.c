/*
 * writer.c - the write queue and the one thread that turns it into commits.
 *
 * Callers queue ops and return at once (write.c). The writer takes a batch
 * when the oldest queued op is commit_interval_ms old, when batch_max bytes
 * are waiting, when someone waits in store_sync, or at shutdown, and applies
 * the whole batch in one write transaction: big commits amortise LMDB's
 * per-commit cost, and no caller ever waits for one. Ops count against
 * max_queue_bytes from the moment they are queued until their batch commits.
 *
 * Before a batch it makes room (evicting so that the batch lands under the
 * high-water mark), and after one it evicts down to the low-water mark if
 * usage rose above the high one anyway.
 *
 * Running out of space, MDB_MAP_FULL (LMDB found no room in the map despite
 * the accounting: fragmentation, or freed pages an outside reader still
 * pins) or ENOSPC/EDQUOT from the commit's writes, is answered by evicting
 * more and retrying, and at last by committing the batch without its
 * chunks. When eviction did not help, the writer is out of space: it stops
 * evicting for it until a batch stores chunks again (emptying the cache
 * would not help either), and logs the change of state, not every batch,
 * since under a full disk that would be a line per request. If even a batch
 * without chunks fails, its invalidations and updates are carried over and
 * retried with later batches: a stale object must not outlive a failed
 * commit. Readers do not wait for any of this: an invalidation is hidden
 * from them from the moment it is queued until its batch commits (hide.c).
 *
 * Every chunk put is told its outcome once its batch's fate is known (after
 * the commit, before store_sync's waiters wake): what apply_op made of it
 * if the batch committed, NO_SPACE or FAILED if it was lost. Lease ops are
 * told their result the same way (STORE_ERROR if lost), whether an
 * event-loop caller queued them or a blocking one waits in writer_wait.
 * Neither is ever carried, so each is reported exactly once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* Retries after running out of space, with more eviction each time, before the batch's chunks are dropped. */
#define SPACE_RETRIES 2
/* A batch that failed entirely is retried this much later, with what follows it. */
#define CARRY_RETRY_MS 1000
/* Failed ops kept for retry at most; beyond this they are dropped, and logged. */
#define CARRY_MAX 100000

typedef struct batch {
    op_t *head;        /* ops in queue order */
    uint64_t last_seq; /* 0 when it holds only carried ops */
    size_t charge;     /* of the ops taken from the queue */
} batch_t;

/* Ops of failed batches that must not be lost (everything but chunk puts). */
typedef struct carry {
    op_t *head, **tail;
    size_t n;
} carry_t;

/* What only the writer thread touches. */
typedef struct writer_local {
    apply_ctx_t a;
    carry_t carry;
    /*
     * 0, or the error that keeps chunks from being stored (MDB_MAP_FULL,
     * ENOSPC, EDQUOT) when eviction did not cure it: no evicting for it,
     * until a batch stores chunks again.
     */
    int no_space;
    log_limit_t lost_log; /* batches lost to anything but space */
    int64_t next_persist, next_flush, next_carry;
    uint64_t flushed_commits;
} writer_local_t;

op_t *op_new(op_kind_t kind, const store_key_t *key, size_t len)
{
    op_t *op = malloc(sizeof(*op) + len);

    if (op == NULL)
        return NULL;
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->key = *key;
    op->len = len;
    op->charge = sizeof(*op) + len;
    return op;
}

/* Waits on cond until woken or deadline_ms (monotonic); callers re-check their condition either way. */
static void wait_until(writer_t *w, pthread_cond_t *cond, int64_t deadline_ms)
{
    struct timespec ts = {.tv_sec = deadline_ms / 1000, .tv_nsec = (long)(deadline_ms % 1000) * 1000000};

    (void)pthread_cond_timedwait(cond, &w->lock, &ts);
}

/*
 * Waits until a batch is due, or until deadline_ms for housekeeping, and
 * takes it (b->head is NULL when only housekeeping is due). Returns true
 * when stopping and nothing is left queued: the writer's last round.
 */
static bool take_batch(store_t *s, batch_t *b, int64_t deadline_ms)
{
    writer_t *w = &s->writer;
    op_t **tail = &b->head;
    bool due = false, last;

    memset(b, 0, sizeof(*b));
    pthread_mutex_lock(&w->lock);
    for (;;) {
        int64_t now = store_now_ms(), wake_at = deadline_ms;

        if (w->head != NULL) {
            int64_t commit_at = w->head->queued_ms + (int64_t)s->config.commit_interval_ms;

            due = w->stopping || w->sync_waiters > 0 || w->pending_bytes >= s->batch_max || now >= commit_at;
            if (due)
                break;
            if (commit_at < wake_at)
                wake_at = commit_at;
        } else if (w->stopping) {
            break;
        }
        if (now >= deadline_ms)
            break;
        wait_until(w, &w->wake, wake_at);
    }
    while (due && w->head != NULL && (b->charge == 0 || b->charge + w->head->charge <= s->batch_max)) {
        op_t *op = w->head;

        w->head = op->next;
        op->next = NULL;
        *tail = op;
        tail = &op->next;
        b->charge += op->charge;
        b->last_seq = op->seq;
    }
    if (w->head == NULL)
        w->tail = NULL;
    w->pending_bytes -= b->charge;
    last = w->stopping && w->head == NULL;
    pthread_mutex_unlock(&w->lock);
    return last;
}

/* Bytes the batch's fills and chunk puts would add to usage, were they all new. */
static uint64_t batch_incoming(const store_t *s, const batch_t *b)
{
    const op_t *op;
    uint64_t sum = 0;

    for (op = b->head; op != NULL; op = op->next) {
        if (op->kind == OP_CHUNK_PUT) {
            sum += lmdb_footprint(s->psize, CHUNK_KEY_SIZE, chunk_value_size(op->len, s->psize));
        } else if (op->kind == OP_FILL_BEGIN) {
            sum += lmdb_footprint(s->psize, STORE_KEY_SIZE, op->len);
        }
    }
    return sum;
}

static int apply_batch(apply_ctx_t *a, void *arg)
{
    const batch_t *b = arg;
    op_t *op;
    int rc;

    for (op = b->head; op != NULL; op = op->next)
        if ((rc = apply_op(a, op)) != MDB_SUCCESS)
            return rc;
    for (op = b->head; op != NULL; op = op->next)
        if ((rc = apply_confirm_chunk(a, op)) != MDB_SUCCESS)
            return rc;
    return MDB_SUCCESS;
}

/* The errors that mean no room, in the map or on the disk: eviction may cure them. */
static bool is_space_error(int rc)
{
    return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT;
}

/* Whether the batch stored a chunk: only that shows there is room again; small records prove nothing. */
static bool stored_chunks(const batch_t *b)
{
    const op_t *op;

    for (op = b->head; op != NULL; op = op->next)
        if (op->kind == OP_CHUNK_PUT && op->outcome == STORE_CHUNK_DURABLE)
            return true;
    return false;
}

/*
 * Follows the out-of-space state through a batch's result (rc; skipped:
 * committed without its chunks, for lack of space `cause`), logging its
 * changes only: one warning when it starts, one line when chunks are stored
 * again.
 */
static void track_space(store_t *s, writer_local_t *wl, const batch_t *b, int rc, bool skipped, int cause)
{
    if (is_space_error(rc) || skipped) {
        if (wl->no_space == 0)
            store_log_msg(s, STORE_LOG_WARN,
                          "store %s: out of space (%s): chunks are not being cached until space returns", s->path,
                          mdb_strerror(skipped ? cause : rc));
        wl->no_space = skipped ? cause : rc;
        atomic_store(&s->out_of_space, true);
    } else if (rc == MDB_SUCCESS && wl->no_space != 0 && stored_chunks(b)) {
        store_log_msg(s, STORE_LOG_INFO, "store %s: space again: chunks are being cached", s->path);
        wl->no_space = 0;
        atomic_store(&s->out_of_space, false);
    }
}

/* Evicts for lack of space: more than the accounting asks, since the map or disk has less room than it shows. */
static void evict_for_room(store_t *s, apply_ctx_t *a, uint64_t incoming)
{
    uint64_t used, extra = 2 * incoming > s->config.budget / 8 ? 2 * incoming : s->config.budget / 8;

    index_usage(&s->index, &used, NULL, NULL);
    evict_to(s, a, used > extra ? used - extra : 0);
}

/*
 * Commits a batch. Returns MDB_SUCCESS (its chunk puts stored or not as
 * their outcomes say) or the error that lost it (its ops are then not
 * applied).
 */
static int commit_batch(store_t *s, writer_local_t *wl, batch_t *b)
{
    apply_ctx_t *a = &wl->a;
    uint64_t incoming = batch_incoming(s, b), used;
    int rc, attempt, cause = MDB_SUCCESS;
    bool skipped;

    index_usage(&s->index, &used, NULL, NULL);
    if (used + incoming > s->high_mark)
        evict_to(s, a, s->low_mark > incoming ? s->low_mark - incoming : 0);
    for (attempt = 0;; attempt++) {
        a->skip_chunks = attempt > SPACE_RETRIES;
        rc = apply_txn(a, apply_batch, b);
        if (!is_space_error(rc) || a->skip_chunks)
            break;
        cause = rc;
        if (attempt < SPACE_RETRIES && wl->no_space == 0)
            evict_for_room(s, a, incoming);
        else
            attempt = SPACE_RETRIES; /* straight to the attempt without chunks */
    }
    skipped = rc == MDB_SUCCESS && a->skip_chunks;
    a->skip_chunks = false;
    track_space(s, wl, b, rc, skipped, cause);
    if (rc == MDB_SUCCESS || is_space_error(rc))
        return rc; /* a loss for lack of space was logged by track_space, when it began */
    store_log_limited(s, &wl->lost_log, STORE_LOG_ERROR, "store %s: a batch of writes was lost: %s", s->path,
                      mdb_strerror(rc));
    if (rc == MDB_PANIC) {
        pthread_mutex_lock(&s->writer.lock);
        s->writer.broken = true;
        pthread_mutex_unlock(&s->writer.lock);
    }
    return rc;
}

/*
 * Tells each chunk put and lease op in ops what became of it, now that the
 * commit that decided it succeeded or failed: on this thread, with no lock
 * held, before the ops are freed, and before finish_batch wakes
 * writer_wait, so a blocking lease call finds its result set. Ops that were
 * lost stored nothing, whatever apply_op made of them: chunk puts are all
 * lost_as, lease ops STORE_ERROR.
 */
static void report_ops(store_t *s, op_t *ops, bool lost, store_chunk_outcome_t lost_as)
{
    uint64_t not_stored = 0;
    op_t *op;

    for (op = ops; op != NULL; op = op->next) {
        if (op_is_lease(op->kind) && op->lease_done != NULL)
            op->lease_done(op->done_ctx, lost ? STORE_ERROR : op->result);
        if (op->kind != OP_CHUNK_PUT)
            continue;
        if (lost)
            op->outcome = lost_as;
        not_stored += op->outcome == STORE_CHUNK_NO_SPACE || op->outcome == STORE_CHUNK_FAILED;
        if (op->done != NULL)
            op->done(op->done_ctx, op->index, op->outcome);
    }
    if (not_stored > 0)
        atomic_fetch_add(&s->lost_chunks, not_stored);
}

/* Ops a lost batch carries over: not chunk puts nor lease ops (report_ops told their callers they were lost). */
static bool carried(const op_t *op)
{
    return op->kind != OP_CHUNK_PUT && !op_is_lease(op->kind);
}

/*
 * Marks a batch committed (or lost), wakes store_sync, and frees its ops;
 * a lost batch's ops other than chunk puts go to the carry list instead
 * (carry is NULL in the last round, when there is no later batch).
 */
static void finish_batch(store_t *s, batch_t *b, bool lost, carry_t *carry)
{
    writer_t *w = &s->writer;
    op_t *op, *next;
    size_t dropped = 0;

    if (b->head == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->queued_bytes -= b->charge;
    if (b->last_seq > w->committed_seq)
        w->committed_seq = b->last_seq;
    if (lost && b->last_seq > 0)
        w->failed_seq = b->last_seq;
    pthread_cond_broadcast(&w->done);
    pthread_mutex_unlock(&w->lock);
    for (op = b->head; op != NULL; op = next) {
        next = op->next;
        if (lost && carried(op) && carry != NULL && carry->n < CARRY_MAX) {
            op->next = NULL;
            *carry->tail = op;
            carry->tail = &op->next;
            carry->n++;
            continue;
        }
        dropped += lost && carried(op);
        free(op);
    }
    if (dropped > 0)
        store_log_msg(s, STORE_LOG_ERROR,
                      "store %s: %zu invalidations or updates could not be committed and are dropped", s->path,
                      dropped);
}

/* Puts the carried ops in front of the batch: they were queued before anything in it. */
static void take_carry(batch_t *b, carry_t *carry)
{
    if (carry->head == NULL)
        return;
    *carry->tail = b->head;
    b->head = carry->head;
    carry->head = NULL;
    carry->tail = &carry->head;
    carry->n = 0;
}

static void keep_within_budget(store_t *s, apply_ctx_t *a)
{
    uint64_t used;

    index_usage(&s->index, &used, NULL, NULL);
    if (used > s->high_mark)
        evict_to(s, a, s->low_mark);
}

/* Flushes to disk what MDB_NOSYNC left in the page cache, if anything was committed since the last time. */
static void flush(store_t *s, uint64_t *flushed_commits)
{
    uint64_t commits = atomic_load(&s->commits);
    int rc;

    if (commits == *flushed_commits)
        return;
    if ((rc = mdb_env_sync(s->env, 1)) != MDB_SUCCESS)
        store_log_msg(s, STORE_LOG_WARN, "store %s: flushing to disk failed: %s", s->path, mdb_strerror(rc));
    else
        *flushed_commits = commits;
}

/* One commit: every transient object the scan at open listed, with all its chunks. */
static int delete_transient(apply_ctx_t *a, void *unused)
{
    store_t *s = a->store;

    (void)unused;
    for (size_t i = 0; i < s->ntransient; i++) {
        int rc = apply_delete_object(a, &s->transient[i]);
        if (rc != MDB_SUCCESS)
            return rc;
    }
    return MDB_SUCCESS;
}

/*
 * Removes the transient objects the last run left behind (it crashed, or
 * stopped before their uploads completed), before any caller can see them:
 * nothing may find another run's scratch data under its key. The index
 * counted them, and only this thread changes it, so what it counts less
 * afterwards is what they held.
 */
static int remove_transient(store_t *s, apply_ctx_t *a)
{
    uint64_t used, objects, used_after, objects_after;
    int rc;

    if (s->ntransient == 0)
        return MDB_SUCCESS;
    index_usage(&s->index, &used, &objects, NULL);
    rc = apply_txn(a, delete_transient, NULL);
    if (rc == MDB_SUCCESS) {
        index_usage(&s->index, &used_after, &objects_after, NULL);
        store_log_msg(s, STORE_LOG_INFO, "store %s: removed %llu transient object%s (%llu bytes) left by the last run",
                      s->path, (unsigned long long)(objects - objects_after), objects - objects_after == 1 ? "" : "s",
                      (unsigned long long)(used - used_after));
    } else {
        store_log_msg(s, STORE_LOG_ERROR, "store %s: removing %zu transient objects left by the last run failed: %s",
                      s->path, s->ntransient, mdb_strerror(rc));
    }
    free(s->transient);
    s->transient = NULL;
    s->ntransient = 0;
    return rc;
}

/*
 * The writer's first acts: a fresh store's layout, and the removal of
 * transient objects. Reports the outcome to writer_start: store_open fails
 * rather than hand out a store that still holds them.
 */
static bool start_up(store_t *s, apply_ctx_t *a)
{
    writer_t *w = &s->writer;
    int rc = MDB_SUCCESS;

    if (s->fresh && (rc = apply_txn(a, apply_create_layout, NULL)) != MDB_SUCCESS)
        store_log_msg(s, STORE_LOG_ERROR, "store %s: creating the databases failed: %s", s->path, mdb_strerror(rc));
    /* A fresh store, or one from before leases: a failure here leaves lease calls refused, not the store. */
    if (rc == MDB_SUCCESS && !s->have_lease_dbs) {
        int lrc = apply_txn(a, apply_create_lease_layout, NULL);
        if (lrc == MDB_SUCCESS)
            s->have_lease_dbs = true;
        else
            store_log_msg(s, STORE_LOG_ERROR, "store %s: adding the lease databases failed: %s", s->path,
                          mdb_strerror(lrc));
    }
    if (rc == MDB_SUCCESS)
        rc = remove_transient(s, a);
    pthread_mutex_lock(&w->lock);
    s->fresh = false;
    w->started = true;
    w->start_rc = rc;
    pthread_cond_broadcast(&w->done);
    pthread_mutex_unlock(&w->lock);
    return rc == MDB_SUCCESS;
}

/* One round: wait for work or housekeeping, commit, evict, persist, flush. Returns false after the last. */
static bool writer_round(store_t *s, writer_local_t *wl)
{
    int64_t deadline = wl->next_persist < wl->next_flush ? wl->next_persist : wl->next_flush, now;
    batch_t b;
    bool last, lost;
    int rc = MDB_SUCCESS;

    if (wl->carry.head != NULL && wl->next_carry < deadline)
        deadline = wl->next_carry;
    last = take_batch(s, &b, deadline);
    if (wl->carry.head != NULL && (b.head != NULL || last || store_now_ms() >= wl->next_carry))
        take_carry(&b, &wl->carry);
    if (b.head != NULL)
        rc = commit_batch(s, wl, &b);
    lost = rc != MDB_SUCCESS;
    /* Readers now see what LMDB holds; done before finish_batch wakes store_sync, so a refill shows after a sync. */
    if (b.head != NULL && !lost)
        hide_committed(&s->hide, b.head);
    /* Before eviction runs, so that a chunk reported DURABLE is there when its caller hears of it. */
    report_ops(s, b.head, lost, is_space_error(rc) ? STORE_CHUNK_NO_SPACE : STORE_CHUNK_FAILED);
    keep_within_budget(s, &wl->a);
    now = store_now_ms();
    if (last || now >= wl->next_persist) {
        lease_sweep(s, &wl->a); /* expired leases pin nothing already: this only reclaims their records */
        persist_recency(s, &wl->a);
        wl->next_persist = now + s->config.recency_persist_ms;
    }
    if (last || now >= wl->next_flush) {
        flush(s, &wl->flushed_commits);
        wl->next_flush = now + ENV_SYNC_MS;
    }
    /* Only now: store_sync's caller may then rely on eviction having run too. */
    finish_batch(s, &b, lost, last ? NULL : &wl->carry);
    if (lost)
        wl->next_carry = now + CARRY_RETRY_MS;
    return !last;
}

static void *writer_main(void *arg)
{
    store_t *s = arg;
    writer_local_t wl;

    memset(&wl, 0, sizeof(wl));
    wl.carry.tail = &wl.carry.head;
    apply_init(&wl.a, s);
    if (start_up(s, &wl.a)) {
        keep_within_budget(s, &wl.a); /* the budget may have shrunk since the last run */
        wl.next_persist = store_now_ms() + s->config.recency_persist_ms;
        wl.next_flush = store_now_ms() + ENV_SYNC_MS;
        while (writer_round(s, &wl))
            ;
    }
    apply_destroy(&wl.a);
    return NULL;
}

static int init_sync(writer_t *w)
{
    pthread_condattr_t attr;
    int rc;

    if (pthread_mutex_init(&w->lock, NULL) != 0)
        return -1;
    if (pthread_condattr_init(&attr) != 0)
        goto no_attr;
    /* Deadlines are monotonic: a wall-clock jump must not stall or rush commits. */
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0 && (rc = pthread_cond_init(&w->wake, &attr)) == 0 && (rc = pthread_cond_init(&w->done, &attr)) != 0)
        pthread_cond_destroy(&w->wake);
    pthread_condattr_destroy(&attr);
    if (rc == 0)
        return 0;
no_attr:
    pthread_mutex_destroy(&w->lock);
    return -1;
}

static void destroy_sync(writer_t *w)
{
    pthread_cond_destroy(&w->done);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
}

/*
 * Starts the writer and waits for its start-up (a fresh store's layout, the
 * removal of transient objects) to finish. A start-up that found no room
 * says STORE_NO_SPACE, as store_open promises for a full disk.
 */
int writer_start(store_t *s)
{
    writer_t *w = &s->writer;
    int rc;

    memset(w, 0, sizeof(*w));
    if (init_sync(w) != 0)
        return STORE_ERROR;
    if (pthread_create(&w->thread, NULL, writer_main, s) != 0) {
        destroy_sync(w);
        return STORE_ERROR;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->started)
        pthread_cond_wait(&w->done, &w->lock);
    rc = w->start_rc;
    pthread_mutex_unlock(&w->lock);
    if (rc != MDB_SUCCESS) {
        pthread_join(w->thread, NULL);
        destroy_sync(w);
        return is_space_error(rc) ? STORE_NO_SPACE : STORE_ERROR;
    }
    return STORE_OK;
}

/* Commits everything queued, persists recency, flushes, and ends the writer. */
void writer_stop(store_t *s)
{
    writer_t *w = &s->writer;
    op_t *op, *next;

    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    /*
     * The writer's last round takes everything queued, so this finds nothing
     * unless the writer ended early; whatever is left still belongs to the
     * queue, and its chunk puts and lease ops are still owed an outcome.
     */
    report_ops(s, w->head, true, STORE_CHUNK_FAILED);
    for (op = w->head; op != NULL; op = next) {
        next = op->next;
        free(op);
    }
    w->head = w->tail = NULL;
    destroy_sync(w);
}

/* A cheap look before copying a chunk: would len more bytes overflow the queue? */
bool writer_would_refuse(store_t *s, size_t len)
{
    writer_t *w = &s->writer;
    bool refuse;

    pthread_mutex_lock(&w->lock);
    refuse = w->queued_bytes + sizeof(op_t) + len > s->config.max_queue_bytes;
    pthread_mutex_unlock(&w->lock);
    if (refuse)
        atomic_fetch_add(&s->busy_rejections, 1);
    return refuse;
}

/* Queues op, which the queue then owns (freed here if refused). refusable ops get STORE_BUSY when full. */
int writer_enqueue(store_t *s, op_t *op, bool refusable)
{
    uint64_t seq;

    return writer_enqueue_seq(s, op, refusable, &seq);
}

/*
 * The same, and *seq is the position op was given (hide.c lists it): read
 * here, under the lock, because the writer may commit and free op as soon
 * as the lock is released.
 */
int writer_enqueue_seq(store_t *s, op_t *op, bool refusable, uint64_t *seq)
{
    writer_t *w = &s->writer;
    int rc = STORE_OK;

    op->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->stopping || w->broken) {
        rc = STORE_ERROR;
    } else if (refusable && w->queued_bytes + op->charge > s->config.max_queue_bytes) {
        rc = STORE_BUSY;
    } else {
        bool was_empty = w->head == NULL;

        op->seq = *seq = ++w->enqueued_seq;
        op->queued_ms = store_now_ms();
        if (was_empty)
            w->head = op;
        else
            w->tail->next = op;
        w->tail = op;
        w->queued_bytes += op->charge;
        w->pending_bytes += op->charge;
        /* The writer sleeps until the oldest op is due: wake it to start that clock, or for a full batch. */
        if (was_empty || w->pending_bytes >= s->batch_max)
            pthread_cond_signal(&w->wake);
    }
    pthread_mutex_unlock(&w->lock);
    if (rc != STORE_OK)
        free(op);
    if (rc == STORE_BUSY)
        atomic_fetch_add(&s->busy_rejections, 1);
    return rc;
}

/*
 * Waits until the op queued as seq was decided: its batch committed or was
 * lost. Like store_sync it makes the batch due at once; what became of the
 * op is the op's to say (lease ops: their result).
 */
void writer_wait(store_t *s, uint64_t seq)
{
    writer_t *w = &s->writer;

    pthread_mutex_lock(&w->lock);
    if (w->committed_seq < seq) {
        w->sync_waiters++;
        pthread_cond_signal(&w->wake);
        while (w->committed_seq < seq)
            pthread_cond_wait(&w->done, &w->lock);
        w->sync_waiters--;
    }
    pthread_mutex_unlock(&w->lock);
}

/* Waits until everything queued before the call has committed (or was lost: STORE_ERROR). */
int writer_sync(store_t *s)
{
    writer_t *w = &s->writer;
    uint64_t target, start;
    int rc = STORE_OK;

    pthread_mutex_lock(&w->lock);
    target = w->enqueued_seq;
    start = w->committed_seq;
    if (w->committed_seq < target) {
        w->sync_waiters++;
        pthread_cond_signal(&w->wake);
        while (w->committed_seq < target)
            pthread_cond_wait(&w->done, &w->lock);
        w->sync_waiters--;
        if (w->failed_seq > start)
            rc = STORE_ERROR;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}
