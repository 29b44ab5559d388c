/*
 * test_prefetch_history.c - stage runtimes against cached fractions, and the
 * predictions the planner takes from them: no samples, one fraction (the
 * mean), two fractions (the line through them), a bounded ring of samples,
 * and never a negative runtime.
 */
#include "history.h"
#include "unit.h"

static void test_no_history(void)
{
    history_t *h = history_new();
    CHECK(h != NULL);
    CHECK(history_predict(h, "q5", "scan", 0.5) == -1);
    history_record(h, "q5", "join", 0.0, 900);
    CHECK(history_predict(h, "q5", "scan", 0.5) == -1); /* another stage's runtime says nothing of this one */
    CHECK(history_predict(h, "q6", "join", 0.5) == -1); /* nor another DAG's stage of the same name */
    history_free(h);
}

static void test_one_fraction_is_the_mean(void)
{
    history_t *h = history_new();
    history_record(h, "q5", "scan", 0.25, 1000);
    history_record(h, "q5", "scan", 0.25, 2000);
    CHECK(history_predict(h, "q5", "scan", 0.25) == 1500);
    CHECK(history_predict(h, "q5", "scan", 1.0) == 1500); /* one fraction cannot tell reads from compute */
    history_free(h);
}

/* Cold 3000 ms, warm 1000 ms: reading is 2000 ms of it, so half cached is 2000 ms. */
static void test_two_fractions_make_a_line(void)
{
    history_t *h = history_new();
    history_record(h, "q5", "scan", 0.0, 3000);
    history_record(h, "q5", "scan", 1.0, 1000);
    CHECK(history_predict(h, "q5", "scan", 0.5) == 2000);
    CHECK(history_predict(h, "q5", "scan", 0.75) == 1500);
    CHECK(history_predict(h, "q5", "scan", 0.0) == 3000);
    history_free(h);
}

/* Only the newest 8 samples count: after 8 runs at 500 ms, the old 5000 ms ones are gone. */
static void test_newest_samples(void)
{
    history_t *h = history_new();
    for (int i = 0; i < 8; i++)
        history_record(h, "d", "s", 0.5, 5000);
    for (int i = 0; i < 8; i++)
        history_record(h, "d", "s", 0.5, 500);
    CHECK(history_predict(h, "d", "s", 0.5) == 500);
    history_free(h);
}

/* A line that falls below zero (warm runs much faster than the trend) predicts 0, not a negative time. */
static void test_never_negative(void)
{
    history_t *h = history_new();
    history_record(h, "d", "s", 0.0, 100);
    history_record(h, "d", "s", 0.5, 50);
    history_record(h, "d", "s", 1.0, 0);
    CHECK(history_predict(h, "d", "s", 1.0) == 0);
    history_record(h, "d", "t", 0.9, 100);
    history_record(h, "d", "t", 1.0, 0);
    CHECK(history_predict(h, "d", "t", 1.0) == 0);
    CHECK(history_predict(h, "d", "t", 0.0) == 1000);
    history_free(h);
}

int main(void)
{
    test_no_history();
    test_one_fraction_is_the_mean();
    test_two_fractions_make_a_line();
    test_newest_samples();
    test_never_negative();
    UNIT_DONE();
}
