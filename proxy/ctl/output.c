/*
 * output.c - how larderctl prints: figures, JSON, and its one-line errors
 * (ctl_fail, ctl_warn). Sizes use binary units with one decimal
 * because that is what `store.budget` and the rest of larder's settings are
 * written in, so a figure here can be compared with the configuration.
 */
#include "larderctl.h"
#include "output.h"

#include <stdarg.h>
#include <stdio.h>

void format_bytes(uint64_t bytes, char *out, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        (void)snprintf(out, cap, "%llu B", (unsigned long long)bytes);
        return;
    }
    double value = (double)bytes / 1024.0;
    size_t unit = 0;
    /* 1023.95 KiB would print as "1024.0 KiB": move up a unit before rounding can reach 1024 */
    while (value >= 1023.95 && unit + 1 < sizeof(units) / sizeof(units[0])) {
        value /= 1024.0;
        unit++;
    }
    /* snprintf truncates into out at worst; the callers' buffers fit every value */
    (void)snprintf(out, cap, "%.1f %s", value, units[unit]);
}

int print_json(const json_t *json)
{
    if (json_dumpf(json, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        return -1;
    return fputc('\n', stdout) == EOF ? -1 : 0;
}

void one_line(const char *text, size_t len, char *out, size_t cap)
{
    if (cap == 0)
        return;
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        out[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[n] = '\0';
}

/* --- the one-line error --- */

static void report(const ctl_t *ctl, const char *kind, const char *fmt, va_list ap)
{
    char text[1024], line[1024];
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    one_line(text, n < 0 ? 0 : (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1, line, sizeof(line));
    const char *command = ctl != NULL ? ctl->command : NULL;
    /* stderr is where a failure is told; if even that write fails there is nowhere left to say so */
    (void)fprintf(stderr, "larderctl: %s%s%s%s\n", command != NULL ? command : "", command != NULL ? ": " : "", kind,
                  line);
}

int ctl_fail(const ctl_t *ctl, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(ctl, "", fmt, ap);
    va_end(ap);
    return code;
}

void ctl_warn(const ctl_t *ctl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(ctl, "warning: ", fmt, ap);
    va_end(ap);
}
