/*
 * history.h - how long each stage of each DAG took, against how much of its
 * input was cached when it started: what the planner predicts later runs'
 * start times from (Kariz's runtime prediction).
 *
 * Keyed by (DAG id, stage id), as pipelines resubmit the same DAG nightly.
 * Kept in memory, a bounded number of samples per stage (the newest), so a
 * restart forgets it and predictions fall back to expected_runtime_ms.
 */
#ifndef LARDER_PREFETCH_HISTORY_H
#define LARDER_PREFETCH_HISTORY_H

#include <stdint.h>

typedef struct history history_t;

history_t *history_new(void);
void history_free(history_t *history);
/* A stage that ran runtime_ms with cached_fraction (0..1) of its input bytes cached when it started. */
void history_record(history_t *history, const char *dag, const char *stage, double cached_fraction,
                    int64_t runtime_ms);
/*
 * The runtime predicted at cached_fraction: a least-squares line through the
 * samples (runtime against the uncached fraction) when they span more than
 * one fraction, else their mean; -1 without samples. Never below 0.
 */
int64_t history_predict(history_t *history, const char *dag, const char *stage, double cached_fraction);

#endif
