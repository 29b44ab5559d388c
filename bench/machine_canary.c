/*
 * machine_canary.c - tells bench/hits.py when this machine itself ran slow, so
 * a latency run can tell the slow requests a server caused from those it had
 * no part in.
 *
 * On a virtual machine the host can run the guest's CPUs at a fraction of
 * their speed for tens of milliseconds without the guest's steal time showing
 * it. Measured on the 2-core bench VM (issue 11): at 16,000 req/s, windows of
 * 10-40 ms in which both vCPUs were busy by perf's clock while a 4 KiB server
 * completed 5-9 requests a millisecond instead of its 85-100, several times a
 * second, whichever server was under test. Those windows set the p99.
 *
 * One thread per CPU given, pinned to it, at real-time priority when allowed
 * (so that a busy server does not delay it; without it a saturated CPU shows
 * as slow), wakes every PERIOD_US and times a fixed piece of arithmetic
 * calibrated at start-up to take about SPIN_TARGET_NS at the machine's best.
 * A spin that takes SLOW_FACTOR times its best, or a wake-up more than
 * LATE_US after its deadline, marks its span slow. The cost is about 2% of
 * each CPU, the same for every server measured.
 *
 *   bench_machine_canary CPU[,CPU...]
 *
 * says "ready" on stderr once calibrated, runs until SIGTERM or SIGINT, then
 * prints one line per slow span,
 * "START_US END_US CPU" in CLOCK_REALTIME microseconds (the clock of h2load's
 * request log), and last "# spins N slow M realtime 0|1".
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    PERIOD_US = 1000,
    LATE_US = 500,
    SLOW_FACTOR = 2,
    SPIN_TARGET_NS = 20000,
    CALIBRATION_ROUNDS = 300,
    MAX_CPUS = 64,
    MAX_SPANS = 1 << 16,
};

typedef struct {
    int64_t start_us, end_us;
} slow_span_t;

typedef struct {
    int cpu;
    atomic_bool *stop;
    atomic_int *calibrated; /* threads done calibrating */
    int realtime;       /* SCHED_FIFO was granted */
    uint64_t spins, slow, dropped;
    slow_span_t *spans; /* owned; MAX_SPANS */
    size_t nspans;
} canary_t;

static int64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A dependent chain the compiler cannot shorten; its result is used so the
 * loop is not dropped. */
static uint64_t spin(uint64_t iterations, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (uint64_t i = 0; i < iterations; i++)
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x;
}

static int64_t timed_spin(uint64_t iterations, uint64_t *sink)
{
    int64_t t0 = now_ns(CLOCK_MONOTONIC);
    *sink ^= spin(iterations, (uint64_t)t0);
    return now_ns(CLOCK_MONOTONIC) - t0;
}

/* Iterations that take about SPIN_TARGET_NS, and their best time: the
 * fastest of many rounds, so a slow moment during calibration is not taken
 * for the machine's speed. */
static void calibrate(uint64_t *iterations, int64_t *best_ns, uint64_t *sink)
{
    uint64_t n = 1000;
    int64_t t = timed_spin(n, sink);
    for (int i = 0; i < 20 && t < SPIN_TARGET_NS / 2; i++, t = timed_spin(n, sink))
        n *= 2;
    int64_t best = INT64_MAX;
    for (int i = 0; i < CALIBRATION_ROUNDS; i++) {
        int64_t d = timed_spin(n, sink);
        if (d > 0 && d < best)
            best = d;
    }
    *iterations = (uint64_t)((double)n * SPIN_TARGET_NS / (double)best) + 1;
    best = INT64_MAX;
    for (int i = 0; i < CALIBRATION_ROUNDS; i++) {
        int64_t d = timed_spin(*iterations, sink);
        if (d > 0 && d < best)
            best = d;
    }
    *best_ns = best;
}

static void record_slow(canary_t *c, int64_t start_mono, int64_t end_mono, int64_t realtime_offset)
{
    c->slow++;
    if (c->nspans == MAX_SPANS) {
        c->dropped++;
        return;
    }
    c->spans[c->nspans++] = (slow_span_t){(start_mono + realtime_offset) / 1000, (end_mono + realtime_offset) / 1000};
}

static void *canary_run(void *arg)
{
    canary_t *c = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(c->cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
        fprintf(stderr, "machine_canary: cannot pin to CPU %d\n", c->cpu);
        exit(2);
    }
    struct sched_param param = {.sched_priority = 1};
    c->realtime = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0;

    uint64_t iterations, sink = 0;
    int64_t best_ns;
    calibrate(&iterations, &best_ns, &sink);
    atomic_fetch_add(c->calibrated, 1);
    int64_t realtime_offset = now_ns(CLOCK_REALTIME) - now_ns(CLOCK_MONOTONIC);
    int64_t deadline = now_ns(CLOCK_MONOTONIC);
    while (!atomic_load(c->stop)) {
        deadline += PERIOD_US * 1000LL;
        struct timespec ts = {deadline / 1000000000, deadline % 1000000000};
        int rc;
        while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)) == EINTR)
            ;
        if (rc != 0) {
            fprintf(stderr, "machine_canary: clock_nanosleep: %s\n", strerror(rc));
            exit(2);
        }
        int64_t woke = now_ns(CLOCK_MONOTONIC);
        int64_t took = timed_spin(iterations, &sink);
        c->spins++;
        if (woke - deadline > LATE_US * 1000LL || took > SLOW_FACTOR * best_ns)
            record_slow(c, deadline, woke + took, realtime_offset);
        if (woke - deadline > PERIOD_US * 1000LL)
            deadline = woke;  /* no burst of catch-up spins after a long stall */
    }
    if (sink == 42)  /* keeps the arithmetic */
        fputc(' ', stderr);
    return NULL;
}

static int parse_cpus(const char *text, int *cpus)
{
    int n = 0;
    char *end;
    for (const char *p = text; *p;) {
        long cpu = strtol(p, &end, 10);
        if (end == p || cpu < 0 || cpu >= CPU_SETSIZE || n == MAX_CPUS || (*end && *end != ','))
            return -1;
        cpus[n++] = (int)cpu;
        p = *end ? end + 1 : end;
    }
    return n;
}

int main(int argc, char **argv)
{
    int cpus[MAX_CPUS];
    int ncpus = argc == 2 ? parse_cpus(argv[1], cpus) : -1;
    if (ncpus <= 0) {
        fprintf(stderr, "usage: %s CPU[,CPU...]\n", argv[0]);
        return 2;
    }
    /* Signals are taken by sigwait below, never by the spinning threads. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &signals, NULL) != 0)
        return 2;

    atomic_bool stop = false;
    atomic_int calibrated = 0;
    canary_t canaries[MAX_CPUS];
    pthread_t threads[MAX_CPUS];
    for (int i = 0; i < ncpus; i++) {
        canaries[i] = (canary_t){.cpu = cpus[i], .stop = &stop, .calibrated = &calibrated, .spans = malloc(MAX_SPANS * sizeof(slow_span_t))};
        if (canaries[i].spans == NULL || pthread_create(&threads[i], NULL, canary_run, &canaries[i]) != 0) {
            fprintf(stderr, "machine_canary: cannot start the thread for CPU %d\n", cpus[i]);
            return 2;
        }
    }
    while (atomic_load(&calibrated) < ncpus)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    fprintf(stderr, "machine_canary: ready\n");
    int signal_number;
    if (sigwait(&signals, &signal_number) != 0)
        return 2;
    atomic_store(&stop, true);

    uint64_t spins = 0, slow = 0, dropped = 0;
    int realtime = 1;
    for (int i = 0; i < ncpus; i++) {
        pthread_join(threads[i], NULL);
        for (size_t k = 0; k < canaries[i].nspans; k++)
            printf("%lld %lld %d\n", (long long)canaries[i].spans[k].start_us, (long long)canaries[i].spans[k].end_us,
                   canaries[i].cpu);
        spins += canaries[i].spins;
        slow += canaries[i].slow;
        dropped += canaries[i].dropped;
        realtime &= canaries[i].realtime;
        free(canaries[i].spans);
    }
    printf("# spins %llu slow %llu dropped %llu realtime %d\n", (unsigned long long)spins, (unsigned long long)slow,
           (unsigned long long)dropped, realtime);
    return fflush(stdout) == 0 ? 0 : 1;
}
