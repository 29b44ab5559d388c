/*
 * log.c - larder's log lines on stderr: one JSON object a line, or plain text.
 *
 * Each line goes out in a single write(2), so lines from different threads
 * never interleave (the kernel keeps one write to a pipe of up to PIPE_BUF
 * bytes, or to an O_APPEND file, whole). Nothing here locks or allocates.
 *
 * The level and format below are the only mutable globals in larder. They are
 * set once by log_configure() during start-up, before any thread exists, and
 * only read afterwards; that ordering is what makes reading them unlocked safe.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"

static log_level_t log_threshold = LOG_LEVEL_INFO;
static log_format_t log_style = LOG_FORMAT_JSON;

/* Longer lines are cut, marked with "...": a log line is not the place for a megabyte. */
#define LOG_LINE_MAX 8192
/* Kept free for what follows the message: the cut mark and the line's closing characters. */
#define LOG_MSG_LIMIT (LOG_LINE_MAX - 16)
/* A component is a short name; a long one is a bug and must not crowd out the message. */
#define LOG_COMPONENT_MAX 64

typedef struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
} line_t;

void log_configure(log_level_t level, log_format_t format)
{
    log_threshold = level;
    log_style = format;
}

bool log_enabled(log_level_t level)
{
    return level <= log_threshold;
}

log_format_t log_format(void)
{
    return log_style;
}

static void put(line_t *l, const char *s, size_t n)
{
    if (n > sizeof(l->buf) - l->len)
        n = sizeof(l->buf) - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_str(line_t *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 if it is not one. */
static size_t utf8_length(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, UTF-16 surrogates and code points past Unicode are not text. */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/*
 * How one character of s appears in the line: JSON needs quotes, backslashes
 * and control characters escaped and invalid UTF-8 replaced; text only needs
 * control characters escaped, so that one message stays one line.
 */
static size_t escape_one(const unsigned char *s, size_t n, bool json, char *out, size_t *consumed)
{
    size_t len = utf8_length(s, n);

    *consumed = len ? len : 1;
    if (len == 0)
        return (size_t)(json ? snprintf(out, 8, "\\ufffd") : snprintf(out, 8, "\\x%02x", s[0]));
    if (len > 1) {
        memcpy(out, s, len);
        return len;
    }
    switch (s[0]) {
    case '"':
    case '\\':
        if (!json)
            break;
        out[0] = '\\';
        out[1] = (char)s[0];
        return 2;
    case '\n':
        return (size_t)snprintf(out, 8, "\\n");
    case '\r':
        return (size_t)snprintf(out, 8, "\\r");
    case '\t':
        return (size_t)snprintf(out, 8, "\\t");
    default:
        if (s[0] < 0x20 || s[0] == 0x7f)
            return (size_t)(json ? snprintf(out, 8, "\\u%04x", s[0]) : snprintf(out, 8, "\\x%02x", s[0]));
    }
    out[0] = (char)s[0];
    return 1;
}

/* Appends s escaped, cutting it short with "..." rather than let the line pass limit bytes. */
static void put_escaped(line_t *l, const char *s, bool json, size_t limit)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);

    while (n > 0) {
        char piece[8];
        size_t used, len = escape_one(p, n, json, piece, &used);
        if (l->len + len > limit) {
            put_str(l, "...");
            return;
        }
        put(l, piece, len);
        p += used;
        n -= used;
    }
}

void log_time_rfc3339(int64_t unix_ms, char out[LOG_TIME_SIZE])
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    char date[24];

    if (gmtime_r(&secs, &tm) == NULL)
        tm = (struct tm){.tm_mday = 1, .tm_year = 70};
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, LOG_TIME_SIZE, "%s.%03dZ", date, (int)(unix_ms % 1000));
}

/* 2026-11-22T07:13:00.123Z, UTC, so lines from machines in other zones still sort. */
static void put_timestamp(line_t *l)
{
    struct timespec now;
    char buf[LOG_TIME_SIZE];

    if (clock_gettime(CLOCK_REALTIME, &now) != 0)
        now = (struct timespec){0};
    log_time_rfc3339((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, buf);
    put_str(l, buf);
}

/* Writes all of iov with writev(2): one call, unless the kernel takes only part. */
static void write_stderr(struct iovec *iov, int count)
{
    while (count > 0) {
        ssize_t n = writev(STDERR_FILENO, iov, count);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* stderr is where errors would be reported; there is nowhere left to say it */
        while (count > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
}

void log_write_line(const char *line, size_t len)
{
    struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};

    /* A caller's line may come with or without its newline; it leaves with exactly one. */
    write_stderr(iov, len > 0 && line[len - 1] == '\n' ? 1 : 2);
}

static const char *const level_json[] = {"error", "warn", "info", "debug"};
static const char *const level_text[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void log_msg(log_level_t level, const char *component, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    line_t l = {.len = 0};
    bool json = log_style == LOG_FORMAT_JSON;
    va_list ap;

    if (!log_enabled(level) || (unsigned)level > LOG_LEVEL_DEBUG)
        return;
    va_start(ap, fmt);
    /* A message cut here is cut again, with "...", by put_escaped(). */
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (component == NULL)
        component = "larder";
    if (json) {
        put_str(&l, "{\"ts\":\"");
        put_timestamp(&l);
        put_str(&l, "\",\"level\":\"");
        put_str(&l, level_json[level]);
        put_str(&l, "\",\"component\":\"");
        put_escaped(&l, component, true, l.len + LOG_COMPONENT_MAX);
        put_str(&l, "\",\"msg\":\"");
        put_escaped(&l, msg, true, LOG_MSG_LIMIT);
        put_str(&l, "\"}\n");
    } else {
        put_timestamp(&l);
        put_str(&l, " ");
        put_str(&l, level_text[level]);
        put_str(&l, " ");
        put_escaped(&l, component, false, l.len + LOG_COMPONENT_MAX);
        put_str(&l, ": ");
        put_escaped(&l, msg, false, LOG_MSG_LIMIT);
        put_str(&l, "\n");
    }
    log_write_line(l.buf, l.len);
}
