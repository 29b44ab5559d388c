/*
 * conf_parse.c - checks and conversions of setting text: numbers, sizes,
 * durations, booleans, URLs, host names and addresses.
 *
 * These only answer "is this valid, and what does it mean"; saying what was
 * wrong, and for which key, is the caller's job (conf_value.c).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf_internal.h"

/* Digits only: no sign, no spaces, no base prefixes, and no overflow. */
static bool parse_digits(const char *s, size_t len, uint64_t *out)
{
    uint64_t n = 0;

    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned digit = (unsigned)(s[i] - '0');
        if (n > (UINT64_MAX - digit) / 10)
            return false;
        n = n * 10 + digit;
    }
    *out = n;
    return true;
}

bool conf_parse_uint(const char *s, uint64_t *out)
{
    return parse_digits(s, strlen(s), out);
}

typedef struct unit {
    const char *name;
    uint64_t factor;
} unit_t;

static const unit_t size_units[] = {
    {"", 1},
    {"B", 1},
    {"KiB", 1ULL << 10},
    {"MiB", 1ULL << 20},
    {"GiB", 1ULL << 30},
    {"TiB", 1ULL << 40},
    {"KB", 1000ULL},
    {"MB", 1000ULL * 1000},
    {"GB", 1000ULL * 1000 * 1000},
    {"TB", 1000ULL * 1000 * 1000 * 1000},
};

/* Case matters here: "5M" could be read as months as easily as minutes. */
static const unit_t time_units[] = {
    {"", 1}, {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* n of the unit named name (as same() compares names) in *out; false for an unknown unit or an overflow. */
static bool scale(uint64_t n, const char *name, const unit_t *units, size_t num_units,
                  int (*same)(const char *, const char *), uint64_t *out)
{
    for (size_t i = 0; i < num_units; i++) {
        if (same(name, units[i].name) != 0)
            continue;
        if (n > UINT64_MAX / units[i].factor)
            return false;
        *out = n * units[i].factor;
        return true;
    }
    return false;
}

/* "512", "64KiB", "10 MiB", "1GB": an integer count of bytes or of a unit. */
bool conf_parse_size(const char *s, uint64_t *out)
{
    size_t digits = strspn(s, "0123456789");
    uint64_t n;

    if (!parse_digits(s, digits, &n))
        return false;
    const char *unit = s + digits;
    if (*unit == ' ' && unit[1] != '\0')
        unit++;
    return scale(n, unit, size_units, COUNT(size_units), strcasecmp, out);
}

/* "90", "90s", "5m", "2h", "1d": seconds, or a count of one unit right after the digits. */
bool conf_parse_seconds(const char *s, uint64_t *out)
{
    size_t digits = strspn(s, "0123456789");
    uint64_t n;

    return parse_digits(s, digits, &n) && scale(n, s + digits, time_units, COUNT(time_units), strcmp, out);
}

bool conf_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "on", "1", "yes"};
    static const char *const no[] = {"false", "off", "0", "no"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* RFC 1123 host name: dot-separated labels of letters, digits and inner dashes. */
bool conf_hostname_valid(const char *s, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (isalnum((unsigned char)s[i]) || (s[i] == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

bool conf_address_valid(const char *s)
{
    unsigned char addr[16];

    return strcmp(s, "localhost") == 0 || inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

/* The host[:port] part of a URL: a host name, IPv4 or [IPv6], and an optional port. */
static bool authority_valid(const char *s, size_t len)
{
    size_t host_len = len;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        char v6[INET6_ADDRSTRLEN + 1];
        unsigned char addr[16];
        size_t v6_len = close ? (size_t)(close - s) - 1 : 0;
        if (close == NULL || v6_len >= sizeof(v6))
            return false;
        memcpy(v6, s + 1, v6_len);
        v6[v6_len] = '\0';
        if (inet_pton(AF_INET6, v6, addr) != 1)
            return false;
        host_len = (size_t)(close - s) + 1;
        if (host_len < len && s[host_len] != ':')
            return false;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon)
            host_len = (size_t)(colon - s);
        if (!conf_hostname_valid(s, host_len))
            return false;
    }
    if (host_len < len) {
        uint64_t port;
        if (!parse_digits(s + host_len + 1, len - host_len - 1, &port) || port < 1 || port > 65535)
            return false;
    }
    return true;
}

/*
 * http:// or https://, a host, perhaps a port and a path; no query, fragment
 * or user name. *keep_len is the length without trailing slashes, because
 * callers append paths that start with one.
 */
bool conf_url_valid(const char *s, size_t *keep_len)
{
    size_t scheme_len;

    if (strncmp(s, "http://", 7) == 0)
        scheme_len = 7;
    else if (strncmp(s, "https://", 8) == 0)
        scheme_len = 8;
    else
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '?' || *p == '#' || *p == '@' || *p == ' ' || iscntrl((unsigned char)*p))
            return false;
    }
    const char *authority = s + scheme_len;
    size_t authority_len = strcspn(authority, "/");
    if (!authority_valid(authority, authority_len))
        return false;
    size_t len = strlen(s), min_len = scheme_len + authority_len;
    while (len > min_len && s[len - 1] == '/')
        len--;
    *keep_len = len;
    return true;
}

/* For error messages: s in double quotes, escaped so it stays on one line, cut to fit. */
void conf_quote(const char *s, char *buf, size_t size)
{
    size_t n = 0;

    if (size < 16) {
        if (size > 0)
            buf[0] = '\0';
        return;
    }
    buf[n++] = '"';
    /* Leave room for the widest escape, "...", the closing quote and the NUL. */
    for (; *s && n + 10 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    if (*s) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n++] = '"';
    buf[n] = '\0';
}

/* The largest binary unit that divides exactly, so the text reads back unchanged. */
void conf_format_size(uint64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        uint64_t factor = 1ULL << (10 * (4 - i));
        if (bytes != 0 && bytes % factor == 0) {
            snprintf(buf, size, "%llu%s", (unsigned long long)(bytes / factor), units[i]);
            return;
        }
    }
    snprintf(buf, size, "%llu", (unsigned long long)bytes);
}

/* Levenshtein distance, for "did you mean" hints; long inputs just count as far apart. */
size_t conf_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[CONF_KEY_MAX + 1];

    if (la > CONF_KEY_MAX || lb > CONF_KEY_MAX)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

/* Close enough to be a typo of what was meant, not merely another short word. */
bool conf_is_near_miss(const char *typed, const char *known)
{
    size_t d = conf_edit_distance(typed, known);

    return d > 0 && d <= 2 && d * 3 <= strlen(known);
}
