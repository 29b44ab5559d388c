/*
 * conf_test.h - loading a configuration the way larder's main does, and
 * capturing what it prints, for the conf unit tests (test_conf.c,
 * test_conf_errors.c, test_conf_cache.c, test_conf_auth.c).
 */
#ifndef LARDER_CONF_TEST_H
#define LARDER_CONF_TEST_H

#include "conf.h"
#include "unit.h"

#define ARGS(...) ((const char *[]){__VA_ARGS__, NULL})
#define NO_ARGS ((const char *[]){NULL})
#define ENV(...) ((const char *[]){__VA_ARGS__, NULL})

/* Fails in the file, in the environment, or on the command line; the key and a fragment must show. */
#define FILE_ERROR(json, key, fragment) conf_test_expect_error(__LINE__, json, NO_ARGS, NULL, key, fragment)
#define ENV_ERROR(env, key, fragment) conf_test_expect_error(__LINE__, NULL, NO_ARGS, env, key, fragment)
#define FLAG_ERROR(args, key, fragment) conf_test_expect_error(__LINE__, NULL, args, NULL, key, fragment)

/* The last load's error message; empty after a load that succeeded. */
static char err[512];

static inline void conf_test_write_temp(char path[64], const char *text)
{
    unit_write_temp(path, "larder_test_conf", text);
}

/*
 * conf_load with argv = "larder", then --config config_path when given, then
 * args; env is the environment. err is filled with 'x' beforehand, so an
 * error message conf_load left unterminated shows. action may be NULL.
 */
static inline int conf_test_load(conf_t *conf, const char *config_path, const char *const *args,
                                 const char *const *env, conf_action_t *action)
{
    char *argv[32];
    int argc = 0, rc;
    conf_action_t ignored;

    argv[argc++] = "larder";
    if (config_path) {
        argv[argc++] = "--config";
        argv[argc++] = (char *)config_path;
    }
    while (*args && argc < 31)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    memset(err, 'x', sizeof(err));
    rc = conf_load(conf, argc, argv, (char **)env, action != NULL ? action : &ignored, err, sizeof(err));
    if (rc == 0)
        err[0] = '\0';
    return rc;
}

/* Loads with --config FILE (holding json) when json is given. */
static inline int conf_test_load_json(conf_t *conf, const char *json, const char *const *args,
                                      const char *const *env)
{
    char path[64];
    int rc;

    if (json)
        conf_test_write_temp(path, json);
    rc = conf_test_load(conf, json ? path : NULL, args, env, NULL);
    if (json)
        unlink(path);
    return rc;
}

/* What conf_print_effective(conf) writes, or conf_print_help() for a NULL conf; the caller frees it. */
static inline char *conf_test_print(const conf_t *conf)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    CHECK(out != NULL);
    if (out == NULL)
        return NULL;
    if (conf)
        conf_print_effective(conf, out);
    else
        conf_print_help(out);
    CHECK(fclose(out) == 0);
    return text;
}

/* The error must be "config: KEY: ...", contain fragment, and be a single line without its newline. */
static inline void conf_test_expect_error(int line, const char *json, const char *const *args,
                                          const char *const *env, const char *key, const char *fragment)
{
    char prefix[160];
    conf_t c;
    int rc = conf_test_load_json(&c, json, args, env);

    conf_dispose(&c);
    snprintf(prefix, sizeof(prefix), "config: %s: ", key);
    CHECK(rc == -1);
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    CHECK(strncmp(err, prefix, strlen(prefix)) == 0);
    CHECK(strstr(err, fragment) != NULL);
    CHECK(strchr(err, '\n') == NULL);
    if (rc != -1 || strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, fragment) == NULL)
        fprintf(stderr, "  line %d: wanted \"%s...%s\", got rc %d: %.*s\n", line, prefix, fragment, rc,
                (int)sizeof(err), err);
}

#endif
