/*
 * conf_value.c - reading one user-supplied value as the type a key wants,
 * and the one-line errors when it is not.
 *
 * Every layer funnels through here, so a value is judged the same way
 * whether it came from the file, the environment or a flag, and every
 * complaint has the same shape:
 *     config: KEY: VALUE is not valid: expected WHAT
 * VALUE is shown as written: JSON for the file, quoted text otherwise.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "conf_internal.h"

int conf_fail(conf_err_t *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(err->buf, err->size, fmt, ap);
    va_end(ap);
    return -1;
}

/* Appends to the message already in err, e.g. which variable or file held the value. */
void conf_err_note(conf_err_t *err, const char *fmt, ...)
{
    va_list ap;
    size_t len;

    if (err->size == 0)
        return;
    len = strnlen(err->buf, err->size);
    if (len + 1 >= err->size)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(err->buf + len, err->size - len, fmt, ap);
    va_end(ap);
}

static void show_value(const conf_value_t *value, char *buf, size_t size)
{
    if (value->json) {
        char *dump = json_dumps(value->json, JSON_ENCODE_ANY | JSON_COMPACT);
        if (dump == NULL) {
            snprintf(buf, size, "(unprintable)");
            return;
        }
        if (strlen(dump) < size)
            snprintf(buf, size, "%s", dump);
        else
            snprintf(buf, size, "%.*s...", (int)(size - 4), dump);
        free(dump);
    } else if (value->text) {
        conf_quote(value->text, buf, size);
    } else {
        snprintf(buf, size, "null");
    }
}

int conf_invalid(conf_err_t *err, const char *key, const conf_value_t *value, const char *expected_fmt, ...)
{
    char shown[96];
    va_list ap;

    show_value(value, shown, sizeof(shown));
    (void)conf_fail(err, "config: %s: %s is not valid: expected ", key, shown);
    size_t len = err->size ? strnlen(err->buf, err->size) : 0;
    if (len + 1 < err->size) {
        va_start(ap, expected_fmt);
        (void)vsnprintf(err->buf + len, err->size - len, expected_fmt, ap);
        va_end(ap);
    }
    return -1;
}

int conf_unknown(conf_err_t *err, const char *what, const char *name, const char *near_miss)
{
    if (near_miss)
        return conf_fail(err, "config: %s: unknown %s (did you mean %s?)", name, what, near_miss);
    return conf_fail(err, "config: %s: unknown %s", name, what);
}

static bool value_uint(const conf_value_t *value, uint64_t *out)
{
    if (value->json) {
        if (!json_is_integer(value->json) || json_integer_value(value->json) < 0)
            return false;
        *out = (uint64_t)json_integer_value(value->json);
        return true;
    }
    return value->text && conf_parse_uint(value->text, out);
}

int conf_read_uint(const char *key, const conf_value_t *value, uint64_t min, uint64_t max, uint64_t *out,
                   conf_err_t *err)
{
    uint64_t n;

    if (!value_uint(value, &n) || n < min || n > max)
        return conf_invalid(err, key, value, "an integer from %llu to %llu", (unsigned long long)min,
                            (unsigned long long)max);
    *out = n;
    return 0;
}

/*
 * Sizes and durations: the file may give a plain number (bytes, seconds) or a
 * string with a unit, which parse() reads; text always has the latter form.
 */
static bool value_with_unit(const conf_value_t *value, bool (*parse)(const char *, uint64_t *), uint64_t *out)
{
    if (value->json && json_is_string(value->json))
        return parse(json_string_value(value->json), out);
    if (value->json)
        return value_uint(value, out);
    return value->text && parse(value->text, out);
}

int conf_read_size(const char *key, const conf_value_t *value, uint64_t min, uint64_t *out, conf_err_t *err)
{
    uint64_t n;
    char least[32];

    if (!value_with_unit(value, conf_parse_size, &n) || n < min) {
        conf_format_size(min, least, sizeof(least));
        return conf_invalid(err, key, value,
                            "a size of at least %s: bytes, or a number with KiB, MiB, GiB, TiB, KB, MB, GB or TB",
                            least);
    }
    *out = n;
    return 0;
}

int conf_read_seconds(const char *key, const conf_value_t *value, uint64_t min, uint64_t max, uint64_t *out,
                      conf_err_t *err)
{
    uint64_t n;

    if (!value_with_unit(value, conf_parse_seconds, &n) || n < min || n > max)
        return conf_invalid(err, key, value,
                            "a duration from %llu to %llu seconds: a number of seconds, or one with s, m, h or d "
                            "as in 5m",
                            (unsigned long long)min, (unsigned long long)max);
    *out = n;
    return 0;
}

int conf_read_bool(const char *key, const conf_value_t *value, bool *out, conf_err_t *err)
{
    if (value->json) {
        if (!json_is_boolean(value->json))
            return conf_invalid(err, key, value, "true or false");
        *out = json_is_true(value->json);
        return 0;
    }
    if (value->text == NULL || !conf_parse_bool(value->text, out))
        return conf_invalid(err, key, value, "true or false (or on/off, yes/no, 1/0)");
    return 0;
}

/*
 * *out points into value, or is NULL for null. Text has no null, so for a
 * nullable key an empty string stands for it (LARDER_PUBLIC_URL= unsets).
 */
int conf_read_string(const char *key, const conf_value_t *value, bool nullable, const char **out, conf_err_t *err)
{
    const char *s = value->text;

    if (value->json) {
        if (json_is_null(value->json) && nullable) {
            *out = NULL;
            return 0;
        }
        if (!json_is_string(value->json))
            return conf_invalid(err, key, value, nullable ? "a string or null" : "a string");
        if (json_string_length(value->json) == 0)
            return conf_invalid(err, key, value, nullable ? "a non-empty string or null" : "a non-empty string");
        *out = json_string_value(value->json);
        return 0;
    }
    if (s == NULL || *s == '\0') {
        if (!nullable)
            return conf_invalid(err, key, value, "a non-empty string");
        s = NULL;
    }
    *out = s;
    return 0;
}

/* Frees the old string only once the copy exists, so a failure leaves *field intact. */
int conf_replace_string(char **field, const char *s, size_t len, conf_err_t *err)
{
    char *copy = NULL;

    if (s) {
        copy = strndup(s, len);
        if (copy == NULL)
            return conf_fail(err, "config: out of memory");
    }
    free(*field);
    *field = copy;
    return 0;
}
