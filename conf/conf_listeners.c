/*
 * conf_listeners.c - the listeners list: built from file objects or from
 * "ADDR:PORT[,tls_cert=PATH,tls_key=PATH][,http2=on|off][,h2c=on|off][,admin=on|off]" specs, and checked
 * as a whole once every layer has had its say.
 *
 * Both forms go through listener_set(), so a field is judged the same way
 * whichever form gave it. A list from a layer replaces the list before it;
 * only --listen appends (see conf_flags.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf_internal.h"

static const char *const listener_fields[] = {"address", "port", "tls_cert", "tls_key", "http2", "h2c", "admin"};
#define NUM_LISTENER_FIELDS (sizeof(listener_fields) / sizeof(listener_fields[0]))

/* "listeners[2].port", or "listeners[2]" for the listener as a whole. */
static void listener_key(char *buf, size_t size, size_t index, const char *field)
{
    if (field)
        snprintf(buf, size, "listeners[%zu].%s", index, field);
    else
        snprintf(buf, size, "listeners[%zu]", index);
}

static void listener_dispose(conf_listener_t *l)
{
    free(l->address);
    free(l->tls_cert);
    free(l->tls_key);
    *l = (conf_listener_t){0};
}

void conf_listeners_clear(conf_t *conf)
{
    for (size_t i = 0; i < conf->num_listeners; i++)
        listener_dispose(&conf->listeners[i]);
    free(conf->listeners);
    conf->listeners = NULL;
    conf->num_listeners = 0;
}

/* A listener before any field is given: what a file object may leave out. */
static conf_listener_t listener_new(void)
{
    return (conf_listener_t){.port = 8080, .http2 = true};
}

static const char *field_near_miss(const char *name)
{
    for (size_t i = 0; i < NUM_LISTENER_FIELDS; i++) {
        if (conf_is_near_miss(name, listener_fields[i]))
            return listener_fields[i];
    }
    return NULL;
}

/* Sets one field of l, the index'th listener; name is a file key or a spec option. */
static int listener_set(conf_listener_t *l, size_t index, const char *name, const conf_value_t *value,
                        conf_err_t *err)
{
    char key[CONF_KEY_MAX];
    const char *text;
    uint64_t port;

    listener_key(key, sizeof(key), index, name);
    if (strcmp(name, "address") == 0) {
        if (conf_read_string(key, value, false, &text, err) < 0)
            return -1;
        if (!conf_address_valid(text))
            return conf_invalid(err, key, value, "an IPv4 or IPv6 address, or localhost");
        return conf_replace_string(&l->address, text, strlen(text), err);
    }
    if (strcmp(name, "port") == 0) {
        if (conf_read_uint(key, value, 1, 65535, &port, err) < 0)
            return -1;
        l->port = (uint16_t)port;
        return 0;
    }
    if (strcmp(name, "tls_cert") == 0 || strcmp(name, "tls_key") == 0) {
        bool cert = strcmp(name, "tls_cert") == 0;
        if (conf_read_string(key, value, true, &text, err) < 0)
            return -1;
        return conf_replace_string(cert ? &l->tls_cert : &l->tls_key, text, text ? strlen(text) : 0, err);
    }
    if (strcmp(name, "http2") == 0)
        return conf_read_bool(key, value, &l->http2, err);
    if (strcmp(name, "h2c") == 0)
        return conf_read_bool(key, value, &l->h2c, err);
    if (strcmp(name, "admin") == 0)
        return conf_read_bool(key, value, &l->admin, err);
    return conf_unknown(err, "key", key, field_near_miss(name));
}

/* Moves l's strings into conf's list; on failure they are freed, so l never needs disposing after. */
static int listener_push(conf_t *conf, conf_listener_t *l, conf_err_t *err)
{
    conf_listener_t *grown;

    if (l->address == NULL && conf_replace_string(&l->address, "127.0.0.1", 9, err) < 0)
        goto fail;
    grown = realloc(conf->listeners, (conf->num_listeners + 1) * sizeof(*grown));
    if (grown == NULL) {
        conf_fail(err, "config: out of memory");
        goto fail;
    }
    conf->listeners = grown;
    conf->listeners[conf->num_listeners++] = *l;
    return 0;
fail:
    listener_dispose(l);
    return -1;
}

/* Splits work (a writable copy of the spec) into fields and sets them; -2 means bad syntax. */
static int parse_spec(conf_listener_t *l, size_t index, char *work, conf_err_t *err)
{
    char *options = strchr(work, ',');
    char *address = work, *port;

    if (options)
        *options++ = '\0';
    if (address[0] == '[') {
        char *close = strchr(address, ']');
        if (close == NULL || close[1] != ':')
            return -2;
        *close = '\0';
        address++;
        port = close + 2;
    } else {
        port = strrchr(address, ':');
        /* An IPv6 address needs brackets, or we could not tell where it ends. */
        if (port == NULL || memchr(address, ':', (size_t)(port - address)) != NULL)
            return -2;
        *port++ = '\0';
    }
    if (listener_set(l, index, "address", &(conf_value_t){.text = address}, err) < 0 ||
        listener_set(l, index, "port", &(conf_value_t){.text = port}, err) < 0)
        return -1;
    while (options) {
        char *name = options, *eq;
        options = strchr(name, ',');
        if (options)
            *options++ = '\0';
        eq = strchr(name, '=');
        if (eq == NULL)
            return -2;
        *eq = '\0';
        for (char *p = name; *p; p++)
            *p = *p == '-' ? '_' : *p;
        if (listener_set(l, index, name, &(conf_value_t){.text = eq + 1}, err) < 0)
            return -1;
    }
    return 0;
}

/* Appends the listener that the first len bytes of spec describe. */
int conf_listeners_add_spec(conf_t *conf, const char *spec, size_t len, conf_err_t *err)
{
    size_t index = conf->num_listeners;
    conf_listener_t l = listener_new();
    char *whole = strndup(spec, len), *work = strndup(spec, len);
    int rc = -1;

    if (whole == NULL || work == NULL) {
        conf_fail(err, "config: out of memory");
    } else {
        rc = parse_spec(&l, index, work, err);
        if (rc == -2) {
            char key[CONF_KEY_MAX];
            listener_key(key, sizeof(key), index, NULL);
            rc = conf_invalid(err, key, &(conf_value_t){.text = whole},
                              "%s, with IPv6 addresses in brackets as in [::1]:8443", CONF_LISTEN_SYNTAX);
        }
    }
    free(whole);
    free(work);
    if (rc < 0) {
        listener_dispose(&l);
        return -1;
    }
    return listener_push(conf, &l, err);
}

/* Replaces the list with the ';'-separated specs, as LARDER_LISTEN and --listeners give them. */
int conf_listeners_set_specs(conf_t *conf, const char *specs, conf_err_t *err)
{
    conf_listeners_clear(conf);
    for (const char *p = specs; *p;) {
        size_t len = strcspn(p, ";");
        const char *next = p + len + (p[len] == ';');
        while (len > 0 && *p == ' ')
            p++, len--;
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len > 0 && conf_listeners_add_spec(conf, p, len, err) < 0)
            return -1;
        p = next;
    }
    return 0;
}

static int add_json(conf_t *conf, json_t *object, conf_err_t *err)
{
    size_t index = conf->num_listeners;
    conf_listener_t l = listener_new();
    const char *name;
    json_t *value;

    if (!json_is_object(object)) {
        char key[CONF_KEY_MAX];
        listener_key(key, sizeof(key), index, NULL);
        return conf_invalid(err, key, &(conf_value_t){.json = object},
                            "an object such as {\"address\": \"127.0.0.1\", \"port\": 8080}");
    }
    json_object_foreach(object, name, value) {
        if (listener_set(&l, index, name, &(conf_value_t){.json = value}, err) < 0) {
            listener_dispose(&l);
            return -1;
        }
    }
    return listener_push(conf, &l, err);
}

/* Replaces the list with the file's "listeners" array. */
int conf_listeners_set_json(conf_t *conf, json_t *array, conf_err_t *err)
{
    size_t i;
    json_t *object;

    if (!json_is_array(array))
        return conf_invalid(err, "listeners", &(conf_value_t){.json = array}, "an array of listener objects");
    conf_listeners_clear(conf);
    json_array_foreach(array, i, object) {
        if (add_json(conf, object, err) < 0)
            return -1;
    }
    return 0;
}

/* Same port and same address, comparing addresses as numbers so "::1" and "0::1" clash. */
static bool same_endpoint(const conf_listener_t *a, const conf_listener_t *b)
{
    static const int families[] = {AF_INET, AF_INET6};
    unsigned char x[16], y[16];

    if (a->port != b->port)
        return false;
    for (size_t i = 0; i < 2; i++) {
        if (inet_pton(families[i], a->address, x) == 1 && inet_pton(families[i], b->address, y) == 1)
            return memcmp(x, y, families[i] == AF_INET ? 4 : 16) == 0;
    }
    return strcmp(a->address, b->address) == 0;
}

static int tls_missing(size_t index, const char *field, const char *other, conf_err_t *err)
{
    char key[CONF_KEY_MAX];

    listener_key(key, sizeof(key), index, field);
    return conf_invalid(err, key, &(conf_value_t){0}, "a PEM file path, since %s is set", other);
}

/* Checked now so that a typo fails at start-up rather than at the first TLS handshake. */
static int tls_readable(size_t index, const char *field, const char *path, conf_err_t *err)
{
    char key[CONF_KEY_MAX];

    if (access(path, R_OK) == 0)
        return 0;
    listener_key(key, sizeof(key), index, field);
    return conf_invalid(err, key, &(conf_value_t){.text = path}, "a readable file (%s)", strerror(errno));
}

static int check_listener(const conf_t *conf, size_t i, conf_err_t *err)
{
    const conf_listener_t *l = &conf->listeners[i];

    if (l->tls_cert && l->tls_key == NULL)
        return tls_missing(i, "tls_key", "tls_cert", err);
    if (l->tls_key && l->tls_cert == NULL)
        return tls_missing(i, "tls_cert", "tls_key", err);
    if (l->tls_cert &&
        (tls_readable(i, "tls_cert", l->tls_cert, err) < 0 || tls_readable(i, "tls_key", l->tls_key, err) < 0))
        return -1;
    for (size_t j = 0; j < i; j++) {
        if (same_endpoint(&conf->listeners[j], l)) {
            char key[CONF_KEY_MAX], endpoint[INET6_ADDRSTRLEN + 16];
            bool v6 = strchr(l->address, ':') != NULL;
            listener_key(key, sizeof(key), i, NULL);
            snprintf(endpoint, sizeof(endpoint), v6 ? "[%s]:%u" : "%s:%u", l->address, (unsigned)l->port);
            return conf_invalid(err, key, &(conf_value_t){.text = endpoint},
                                "an address and port not already taken by listeners[%zu]", j);
        }
    }
    return 0;
}

/* What no single field can show: an empty list, half-configured TLS, two listeners on one port. */
int conf_listeners_check(const conf_t *conf, conf_err_t *err)
{
    if (conf->num_listeners == 0)
        return conf_fail(err, "config: listeners: [] is not valid: expected at least one listener");
    for (size_t i = 0; i < conf->num_listeners; i++) {
        if (check_listener(conf, i, err) < 0)
            return -1;
    }
    return 0;
}
