/*
 * history.c - stage runtimes against cached fractions (see history.h).
 *
 * A small open table of (dag, stage) entries, each a ring of the newest
 * samples. A stage's time is mostly its reads at a cold cache and its
 * compute at a warm one, so runtime is modelled as linear in the uncached
 * fraction: two runs at different fractions are enough to tell both apart.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"

#define SAMPLES 8
#define MAX_ENTRIES 4096

typedef struct sample {
    double uncached;
    double runtime_ms;
} sample_t;

typedef struct entry {
    char *dag, *stage;
    sample_t samples[SAMPLES];
    unsigned count, next; /* samples held; where the next one goes */
} entry_t;

struct history {
    entry_t *entries;
    size_t count;
};

history_t *history_new(void)
{
    history_t *h = calloc(1, sizeof(*h));
    if (h != NULL && (h->entries = calloc(MAX_ENTRIES, sizeof(*h->entries))) == NULL) {
        free(h);
        return NULL;
    }
    return h;
}

void history_free(history_t *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->count; i++) {
        free(h->entries[i].dag);
        free(h->entries[i].stage);
    }
    free(h->entries);
    free(h);
}

static entry_t *find(history_t *h, const char *dag, const char *stage, bool add)
{
    for (size_t i = 0; i < h->count; i++)
        if (strcmp(h->entries[i].dag, dag) == 0 && strcmp(h->entries[i].stage, stage) == 0)
            return &h->entries[i];
    if (!add)
        return NULL;
    /* Full: the oldest DAG's entries give way, in the order they came. */
    if (h->count == MAX_ENTRIES) {
        free(h->entries[0].dag);
        free(h->entries[0].stage);
        memmove(h->entries, h->entries + 1, (MAX_ENTRIES - 1) * sizeof(*h->entries));
        h->count--;
    }
    entry_t *e = &h->entries[h->count];
    memset(e, 0, sizeof(*e));
    e->dag = strdup(dag);
    e->stage = strdup(stage);
    if (e->dag == NULL || e->stage == NULL) {
        free(e->dag);
        free(e->stage);
        return NULL;
    }
    h->count++;
    return e;
}

void history_record(history_t *h, const char *dag, const char *stage, double cached_fraction, int64_t runtime_ms)
{
    entry_t *e = find(h, dag, stage, true);
    if (e == NULL || runtime_ms < 0)
        return; /* out of memory: the prediction only stays as it was */
    e->samples[e->next] = (sample_t){1.0 - cached_fraction, (double)runtime_ms};
    e->next = (e->next + 1) % SAMPLES;
    if (e->count < SAMPLES)
        e->count++;
}

int64_t history_predict(history_t *h, const char *dag, const char *stage, double cached_fraction)
{
    entry_t *e = find(h, dag, stage, false);
    if (e == NULL || e->count == 0)
        return -1;
    double sx = 0, sy = 0, sxx = 0, sxy = 0, n = e->count;
    for (unsigned i = 0; i < e->count; i++) {
        const sample_t *s = &e->samples[i];
        sx += s->uncached;
        sy += s->runtime_ms;
        sxx += s->uncached * s->uncached;
        sxy += s->uncached * s->runtime_ms;
    }
    double spread = n * sxx - sx * sx, predicted = sy / n;
    if (spread > 1e-9) {
        double slope = (n * sxy - sx * sy) / spread;
        predicted = (sy - slope * sx) / n + slope * (1.0 - cached_fraction);
    }
    return predicted < 0 ? 0 : (int64_t)(predicted + 0.5);
}
