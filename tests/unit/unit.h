/*
 * unit.h - the few macros larder's C unit tests need.
 *
 * Each test file is its own executable: it prints one line per failed check
 * and a TAP-style summary, and exits non-zero if anything failed.
 */
#ifndef LARDER_UNIT_H
#define LARDER_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int unit_failures;
static int unit_checks;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        unit_checks++;                                                                                                 \
        if (!(cond)) {                                                                                                 \
            unit_failures++;                                                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                                   \
        }                                                                                                              \
    } while (0)

#define CHECK_STR(a, b)                                                                                                \
    do {                                                                                                               \
        const char *unit_a_ = (a), *unit_b_ = (b);                                                                     \
        unit_checks++;                                                                                                 \
        if (unit_a_ == NULL || unit_b_ == NULL || strcmp(unit_a_, unit_b_) != 0) {                                     \
            unit_failures++;                                                                                           \
            fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, unit_a_ ? unit_a_ : "(null)",             \
                    unit_b_ ? unit_b_ : "(null)");                                                                     \
        }                                                                                                              \
    } while (0)

/* Writes text to a new file under /tmp named from prefix; the caller unlinks path. */
static inline void unit_write_temp(char path[64], const char *prefix, const char *text)
{
    size_t len = strlen(text);
    snprintf(path, 64, "/tmp/%s_XXXXXX", prefix);
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, text, len) == (ssize_t)len);
    CHECK(close(fd) == 0);
}

#define UNIT_DONE()                                                                                                    \
    do {                                                                                                               \
        printf("%d checks, %d failed\n", unit_checks, unit_failures);                                                  \
        return unit_failures == 0 ? 0 : 1;                                                                             \
    } while (0)

#endif
