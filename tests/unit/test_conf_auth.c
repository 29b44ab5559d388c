/*
 * test_conf_auth.c - the auth.* settings: their defaults, every layer's
 * form of them, durations in every spelling, the auth.admins list in its
 * text and file forms and replaced whole by a later layer, their errors,
 * printing them back, --help, and releasing the list.
 */
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
#include "conf_internal.h"
#include "conf_test.h"

#define DURATION_EXPECTED                                                                                              \
    "is not valid: expected a duration from 1 to 86400 seconds: a number of seconds, or one with s, m, h or d as in 5m"
#define LIST_EXPECTED "is not valid: expected ENTRY[,ENTRY...] with no empty or blank entry"
#define ENTRY_EXPECTED "is not valid: expected a string that is not empty or blank"

/* A config file holding json (NULL: none), then the environment env, then the flags args. */
static int load(conf_t *conf, const char *json, const char *const *args, const char *const *env)
{
    return conf_test_load_json(conf, json, args, env);
}

/* c's admins are exactly the num strings in want, in order. */
static bool admins_are(const conf_t *c, const char *const *want, size_t num)
{
    if (c->auth.num_admins != num || (num == 0) != (c->auth.admins == NULL))
        return false;
    for (size_t i = 0; i < num; i++) {
        if (strcmp(c->auth.admins[i], want[i]) != 0)
            return false;
    }
    return true;
}

#define ADMINS_ARE(c, ...)                                                                                             \
    admins_are(c, (const char *[]){__VA_ARGS__}, sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *))

static void test_defaults(void)
{
    conf_t c;

    CHECK(load(&c, NULL, NO_ARGS, NULL) == 0);
    CHECK(c.auth.enabled);
    CHECK_STR(c.auth.tokeninfo_url, "https://oauth2.googleapis.com/tokeninfo");
    CHECK(c.auth.token_file == NULL);
    CHECK(c.auth.grant_ttl == 60);
    CHECK(c.auth.admins == NULL && c.auth.num_admins == 0);
    CHECK(c.auth.token_cache_ttl == 300);
    CHECK(c.auth.token_cache_entries == 100000);
    CHECK(c.auth.tokeninfo_timeout_ms == 5000);
    conf_dispose(&c);
}

/* Every key but auth.admins from each layer; a tokeninfo URL keeps its path. */
static void test_layers(void)
{
    char token_file[64], json[512], flag[96];
    conf_t c;

    conf_test_write_temp(token_file, "[]");
    CHECK(load(&c, NULL,
               ARGS("--auth.enabled=off", "--auth.tokeninfo-url", "http://127.0.0.1:9000/tokeninfo/",
                    "--auth.grant_ttl=5m", "--auth.token_cache_ttl", "90", "--auth.token-cache-entries=16",
                    "--auth.tokeninfo_timeout_ms=1"),
               NULL) == 0);
    CHECK(!c.auth.enabled);
    CHECK_STR(c.auth.tokeninfo_url, "http://127.0.0.1:9000/tokeninfo"); /* trailing slash stripped */
    CHECK(c.auth.grant_ttl == 300 && c.auth.token_cache_ttl == 90);
    CHECK(c.auth.token_cache_entries == 16 && c.auth.tokeninfo_timeout_ms == 1);
    conf_dispose(&c);

    snprintf(flag, sizeof(flag), "LARDER_AUTH_TOKEN_FILE=%s", token_file);
    CHECK(load(&c, NULL, NO_ARGS,
               ENV("LARDER_AUTH_ENABLED=no", "LARDER_AUTH_TOKENINFO_URL=https://[::1]:8443/oauth2/v3/tokeninfo",
                   "LARDER_AUTH_GRANT_TTL=1d", "LARDER_AUTH_TOKEN_CACHE_TTL=2h",
                   "LARDER_AUTH_TOKEN_CACHE_ENTRIES=10000000", "LARDER_AUTH_TOKENINFO_TIMEOUT_MS=2147483647", flag)) ==
          0);
    CHECK(!c.auth.enabled);
    CHECK_STR(c.auth.tokeninfo_url, "https://[::1]:8443/oauth2/v3/tokeninfo");
    CHECK_STR(c.auth.token_file, token_file);
    CHECK(c.auth.grant_ttl == 86400 && c.auth.token_cache_ttl == 7200);
    CHECK(c.auth.token_cache_entries == 10000000 && c.auth.tokeninfo_timeout_ms == 2147483647u);
    conf_dispose(&c);

    /* In the file a duration may be a plain number or a string. */
    snprintf(json, sizeof(json),
             "{\"auth\": {\"enabled\": false, \"tokeninfo_url\": \"http://localhost:9000/tokeninfo\","
             " \"token_file\": \"%s\", \"grant_ttl\": 90, \"token_cache_ttl\": \"30s\","
             " \"token_cache_entries\": 1000, \"tokeninfo_timeout_ms\": 250}}",
             token_file);
    CHECK(load(&c, json, NO_ARGS, NULL) == 0);
    CHECK(!c.auth.enabled);
    CHECK_STR(c.auth.tokeninfo_url, "http://localhost:9000/tokeninfo");
    CHECK_STR(c.auth.token_file, token_file);
    CHECK(c.auth.grant_ttl == 90 && c.auth.token_cache_ttl == 30);
    CHECK(c.auth.token_cache_entries == 1000 && c.auth.tokeninfo_timeout_ms == 250);
    conf_dispose(&c);

    /* An empty value unsets the file's token file; the later layer wins for the rest. */
    CHECK(load(&c, json, ARGS("--auth.grant_ttl=7", "--auth.enabled=true"),
               ENV("LARDER_AUTH_TOKEN_FILE=", "LARDER_AUTH_GRANT_TTL=8")) == 0);
    CHECK(c.auth.token_file == NULL && c.auth.grant_ttl == 7 && c.auth.enabled);
    CHECK(c.auth.token_cache_ttl == 30);
    conf_dispose(&c);
    unlink(token_file);
}

static const struct {
    const char *text;
    uint64_t seconds;
} good_durations[] = {
    {"1", 1},           {"60", 60},         {"007", 7},        {"60s", 60},
    {"5m", 300},        {"2h", 7200},       {"1d", 86400},     {"86400", 86400},
    {"86400s", 86400},  {"1440m", 86400},   {"24h", 86400},
};

static const char *const bad_durations[] = {
    "", "0", "0s", "0d", "86401", "86401s", "1441m", "25h", "2d", "-1", "+5", " 5", "5 ", "5 m", "5ms",
    "5M", "5H", "5x", "1.5h", "m", "s5", "0x10", "1e3", "99999999999999999999999", "4294967296",
};

static void test_durations(void)
{
    char flag[64], env[64], json[128];
    uint64_t n;
    conf_t c;

    for (size_t i = 0; i < sizeof(good_durations) / sizeof(good_durations[0]); i++) {
        const char *text = good_durations[i].text;
        unsigned want = (unsigned)good_durations[i].seconds;
        snprintf(flag, sizeof(flag), "--auth.grant_ttl=%s", text);
        CHECK(load(&c, NULL, ARGS(flag), NULL) == 0 && c.auth.grant_ttl == want);
        conf_dispose(&c);
        snprintf(env, sizeof(env), "LARDER_AUTH_TOKEN_CACHE_TTL=%s", text);
        CHECK(load(&c, NULL, NO_ARGS, ENV(env)) == 0 && c.auth.token_cache_ttl == want);
        conf_dispose(&c);
        snprintf(json, sizeof(json), "{\"auth\": {\"grant_ttl\": \"%s\"}}", text);
        CHECK(load(&c, json, NO_ARGS, NULL) == 0 && c.auth.grant_ttl == want);
        conf_dispose(&c);
        if (err[0])
            fprintf(stderr, "  duration \"%s\": %s\n", text, err);
    }
    for (size_t i = 0; i < sizeof(bad_durations) / sizeof(bad_durations[0]); i++) {
        snprintf(flag, sizeof(flag), "--auth.grant_ttl=%s", bad_durations[i]);
        FLAG_ERROR(ARGS(flag), "auth.grant_ttl", DURATION_EXPECTED);
        snprintf(env, sizeof(env), "LARDER_AUTH_TOKEN_CACHE_TTL=%s", bad_durations[i]);
        ENV_ERROR(ENV(env), "auth.token_cache_ttl", DURATION_EXPECTED);
        snprintf(json, sizeof(json), "{\"auth\": {\"token_cache_ttl\": \"%s\"}}", bad_durations[i]);
        FILE_ERROR(json, "auth.token_cache_ttl", DURATION_EXPECTED);
    }
    FLAG_ERROR(ARGS("--auth.grant_ttl", "0"), "auth.grant_ttl",
               "\"0\" " DURATION_EXPECTED " (from --auth.grant_ttl)");
    ENV_ERROR(ENV("LARDER_AUTH_GRANT_TTL=5w"), "auth.grant_ttl",
              "\"5w\" " DURATION_EXPECTED " (from LARDER_AUTH_GRANT_TTL)");
    /* The file's other JSON types: a number of seconds must be in range too. */
    static const char *const bad_json[] = {"0", "86401", "-5", "1.5", "true", "null", "[60]"};
    for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
        char fragment[200];
        snprintf(json, sizeof(json), "{\"auth\": {\"grant_ttl\": %s}}", bad_json[i]);
        snprintf(fragment, sizeof(fragment), "%s " DURATION_EXPECTED, bad_json[i]);
        FILE_ERROR(json, "auth.grant_ttl", fragment);
    }

    /* The parser alone: units multiply, and an overflow is refused rather than wrapped. */
    CHECK(conf_parse_seconds("0", &n) && n == 0);
    CHECK(conf_parse_seconds("3d", &n) && n == 3 * 86400);
    CHECK(conf_parse_seconds("18446744073709551615", &n) && n == UINT64_MAX);
    CHECK(conf_parse_seconds("213503982334601d", &n) && n == 213503982334601ULL * 86400);
    CHECK(!conf_parse_seconds("213503982334602d", &n));
    CHECK(!conf_parse_seconds("307445734561825861m", &n));
    CHECK(!conf_parse_seconds("18446744073709551616", &n));
}

static void test_admins_forms(void)
{
    conf_t c;

    CHECK(load(&c, NULL, ARGS("--auth.admins=a@x,b@y"), NULL) == 0 && ADMINS_ARE(&c, "a@x", "b@y"));
    conf_dispose(&c);
    CHECK(load(&c, NULL, ARGS("--auth.admins", " a@x ,\tb@y,  c@z"), NULL) == 0 && ADMINS_ARE(&c, "a@x", "b@y", "c@z"));
    conf_dispose(&c);
    CHECK(load(&c, NULL, NO_ARGS, ENV("LARDER_AUTH_ADMINS=ops@example.com")) == 0 && ADMINS_ARE(&c, "ops@example.com"));
    conf_dispose(&c);
    CHECK(load(&c, NULL, NO_ARGS, ENV("LARDER_AUTH_ADMINS=a@x, b@y ")) == 0 && ADMINS_ARE(&c, "a@x", "b@y"));
    conf_dispose(&c);
    CHECK(load(&c, "{\"auth\": {\"admins\": [\"a@x\", \" b@y \", \"1234567890\"]}}", NO_ARGS, NULL) == 0);
    CHECK(ADMINS_ARE(&c, "a@x", "b@y", "1234567890"));
    conf_dispose(&c);
    /* The file may give the text form too. */
    CHECK(load(&c, "{\"auth\": {\"admins\": \"a@x,b@y\"}}", NO_ARGS, NULL) == 0 && ADMINS_ARE(&c, "a@x", "b@y"));
    conf_dispose(&c);
    /* The same entry twice is kept as given: harmless, and order is the user's. */
    CHECK(load(&c, NULL, ARGS("--auth.admins=a@x,a@x"), NULL) == 0 && ADMINS_ARE(&c, "a@x", "a@x"));
    conf_dispose(&c);
    /* Only "" as a whole is the empty list. */
    CHECK(load(&c, NULL, ARGS("--auth.admins="), NULL) == 0 && c.auth.num_admins == 0 && c.auth.admins == NULL);
    conf_dispose(&c);
    CHECK(load(&c, "{\"auth\": {\"admins\": []}}", NO_ARGS, NULL) == 0 && c.auth.num_admins == 0);
    conf_dispose(&c);
    CHECK(load(&c, "{\"auth\": {\"admins\": \"\"}}", NO_ARGS, NULL) == 0 && c.auth.num_admins == 0);
    conf_dispose(&c);
}

static void test_admins_errors(void)
{
    static const char *const bad_text[] = {"a@x,,b@y", ",a@x", "a@x,", ",", " ", " , ", "a@x, ,b@y", "\t"};
    char flag[64], env[64];

    for (size_t i = 0; i < sizeof(bad_text) / sizeof(bad_text[0]); i++) {
        snprintf(flag, sizeof(flag), "--auth.admins=%s", bad_text[i]);
        FLAG_ERROR(ARGS(flag), "auth.admins", LIST_EXPECTED);
        snprintf(env, sizeof(env), "LARDER_AUTH_ADMINS=%s", bad_text[i]);
        ENV_ERROR(ENV(env), "auth.admins", LIST_EXPECTED);
    }
    /* The whole value is shown, and where it came from. */
    FLAG_ERROR(ARGS("--auth.admins", "a@x,,b@y"), "auth.admins",
               "\"a@x,,b@y\" " LIST_EXPECTED " (\"\" for none) (from --auth.admins)");
    ENV_ERROR(ENV("LARDER_AUTH_ADMINS=a@x,"), "auth.admins",
              "\"a@x,\" " LIST_EXPECTED " (\"\" for none) (from LARDER_AUTH_ADMINS)");
    FILE_ERROR("{\"auth\": {\"admins\": \"a@x,,b@y\"}}", "auth.admins", "\"a@x,,b@y\" " LIST_EXPECTED);
    /* In an array, the entry is named by its index. */
    static const char *const good_before[] = {"", "\"a@x\", ", "\"a@x\", \"b@y\", "};
    static const char *const bad_entries[] = {"\"\"", "\" \\t \"", "5", "null", "[\"a@x\"]", "{}", "true"};
    for (size_t i = 0; i < sizeof(bad_entries) / sizeof(bad_entries[0]); i++) {
        char json[128], key[32], fragment[128];
        size_t index = i % 3;
        snprintf(json, sizeof(json), "{\"auth\": {\"admins\": [%s%s]}}", good_before[index], bad_entries[i]);
        snprintf(key, sizeof(key), "auth.admins[%zu]", index);
        snprintf(fragment, sizeof(fragment), "%s " ENTRY_EXPECTED, bad_entries[i]);
        FILE_ERROR(json, key, fragment);
    }
    FILE_ERROR("{\"auth\": {\"admins\": 5}}", "auth.admins",
               "5 is not valid: expected an array of strings, or a string " CONF_LIST_SYNTAX);
    FILE_ERROR("{\"auth\": {\"admins\": null}}", "auth.admins", "null is not valid: expected an array of strings");
    FILE_ERROR("{\"auth\": {\"admins\": {\"a\": \"b\"}}}", "auth.admins", "expected an array of strings");
    FILE_ERROR("{\"auth\": {\"admin\": []}}", "auth.admin", "unknown key (did you mean auth.admins?)");
    ENV_ERROR(ENV("LARDER_AUTH_ADMIN=a@x"), "LARDER_AUTH_ADMIN",
              "unknown environment variable (did you mean LARDER_AUTH_ADMINS?)");
    FLAG_ERROR(ARGS("--auth.admin=a@x"), "--auth.admin", "unknown flag (did you mean --auth.admins?)");
}

static void test_scalar_errors(void)
{
    FLAG_ERROR(ARGS("--auth.enabled=maybe"), "auth.enabled", "\"maybe\" is not valid: expected true or false");
    FILE_ERROR("{\"auth\": {\"enabled\": \"no\"}}", "auth.enabled", "expected true or false");
    FILE_ERROR("{\"auth\": {\"tokeninfo_url\": \"ftp://x/tokeninfo\"}}", "auth.tokeninfo_url",
               "\"ftp://x/tokeninfo\" is not valid: expected an http:// or https:// URL");
    /* larder appends ?access_token=, so a query of its own would be garbled. */
    FLAG_ERROR(ARGS("--auth.tokeninfo_url=http://h/tokeninfo?alt=json"), "auth.tokeninfo_url", "no query");
    ENV_ERROR(ENV("LARDER_AUTH_TOKENINFO_URL="), "auth.tokeninfo_url", "expected a non-empty string");
    FILE_ERROR("{\"auth\": {\"tokeninfo_url\": null}}", "auth.tokeninfo_url", "null is not valid: expected a string");
    FLAG_ERROR(ARGS("--auth.token_file=/nonexistent/tokens.json"), "auth.token_file",
               "\"/nonexistent/tokens.json\" is not valid: expected a readable file (No such file or directory)");
    FILE_ERROR("{\"auth\": {\"token_file\": 5}}", "auth.token_file", "expected a string or null");
    FLAG_ERROR(ARGS("--auth.token_cache_entries=15"), "auth.token_cache_entries",
               "\"15\" is not valid: expected an integer from 16 to 10000000");
    FILE_ERROR("{\"auth\": {\"token_cache_entries\": 10000001}}", "auth.token_cache_entries", "from 16 to 10000000");
    FILE_ERROR("{\"auth\": {\"token_cache_entries\": \"1000\"}}", "auth.token_cache_entries", "expected an integer");
    ENV_ERROR(ENV("LARDER_AUTH_TOKENINFO_TIMEOUT_MS=0"), "auth.tokeninfo_timeout_ms",
              "\"0\" is not valid: expected an integer from 1 to 2147483647 (from LARDER_AUTH_TOKENINFO_TIMEOUT_MS)");
    FILE_ERROR("{\"auth\": {\"tokeninfo_timeout_ms\": 2147483648}}", "auth.tokeninfo_timeout_ms", "from 1 to");
    FILE_ERROR("{\"auth\": {\"grant_tl\": 5}}", "auth.grant_tl", "did you mean auth.grant_ttl?");
    FILE_ERROR("{\"auth\": true}", "auth", "expected an object");
}

/* Whichever layer gives auth.admins last replaces the list whole; nothing is merged. */
static void test_admins_layering(void)
{
    const char *file = "{\"auth\": {\"admins\": [\"file1@x\", \"file2@x\"]}}";
    conf_t c;

    CHECK(load(&c, file, NO_ARGS, NULL) == 0 && ADMINS_ARE(&c, "file1@x", "file2@x"));
    conf_dispose(&c);
    CHECK(load(&c, file, NO_ARGS, ENV("LARDER_AUTH_ADMINS=env@x")) == 0 && ADMINS_ARE(&c, "env@x"));
    conf_dispose(&c);
    CHECK(load(&c, file, ARGS("--auth.admins=flag1@x,flag2@x,flag3@x"), ENV("LARDER_AUTH_ADMINS=env@x")) == 0);
    CHECK(ADMINS_ARE(&c, "flag1@x", "flag2@x", "flag3@x"));
    conf_dispose(&c);
    /* An empty value clears the list below it; of two flags the last wins. */
    CHECK(load(&c, file, NO_ARGS, ENV("LARDER_AUTH_ADMINS=")) == 0 && c.auth.num_admins == 0);
    CHECK(c.auth.admins == NULL);
    conf_dispose(&c);
    CHECK(load(&c, NULL, ARGS("--auth.admins=a@x,b@y", "--auth.admins", "c@z"), NULL) == 0 && ADMINS_ARE(&c, "c@z"));
    conf_dispose(&c);
    /* A list a later layer replaces must still be valid. */
    CHECK(load(&c, "{\"auth\": {\"admins\": [\"a@x\", \"\"]}}", ARGS("--auth.admins=b@y"), NULL) == -1);
    CHECK(strstr(err, "config: auth.admins[1]: \"\" is not valid") == err);
    conf_dispose(&c);
}

static void check_same_auth(const conf_t *a, const conf_t *b)
{
    CHECK(a->auth.enabled == b->auth.enabled);
    CHECK_STR(a->auth.tokeninfo_url, b->auth.tokeninfo_url);
    CHECK((a->auth.token_file == NULL) == (b->auth.token_file == NULL));
    if (a->auth.token_file && b->auth.token_file)
        CHECK_STR(a->auth.token_file, b->auth.token_file);
    CHECK(a->auth.grant_ttl == b->auth.grant_ttl && a->auth.token_cache_ttl == b->auth.token_cache_ttl);
    CHECK(a->auth.token_cache_entries == b->auth.token_cache_entries);
    CHECK(a->auth.tokeninfo_timeout_ms == b->auth.tokeninfo_timeout_ms);
    CHECK(admins_are(b, (const char *const *)a->auth.admins, a->auth.num_admins));
}

/* Loads what c prints back with --check-config: it must give the same auth settings. */
static void check_round_trip(const conf_t *c, const char *text)
{
    char path[64];
    conf_t again;

    conf_test_write_temp(path, text ? text : "");
    CHECK(load(&again, NULL, ARGS("--check-config", path), NULL) == 0);
    check_same_auth(c, &again);
    conf_dispose(&again);
    unlink(path);
}

/* What --check-config prints is a config file that loads back to the same settings. */
static void test_round_trip(void)
{
    char token_file[64], flag[96];
    conf_t c;

    conf_test_write_temp(token_file, "[]");
    snprintf(flag, sizeof(flag), "--auth.token_file=%s", token_file);
    CHECK(load(&c, NULL,
               ARGS("--auth.enabled=false", "--auth.tokeninfo_url=http://127.0.0.1:9000/tokeninfo", flag,
                    "--auth.grant_ttl=2h", "--auth.admins=ops@example.com, a;b=c@x ,1234",
                    "--auth.token_cache_ttl=1m", "--auth.token_cache_entries=64", "--auth.tokeninfo_timeout_ms=900"),
               NULL) == 0);
    char *text = conf_test_print(&c);
    CHECK(text != NULL);
    CHECK(text && strstr(text, "\"auth\": {") != NULL);
    CHECK(text && strstr(text, "\"tokeninfo_url\": \"http://127.0.0.1:9000/tokeninfo\"") != NULL);
    CHECK(text && strstr(text, "\"grant_ttl\": 7200") != NULL && strstr(text, "\"token_cache_ttl\": 60") != NULL);
    CHECK(text && strstr(text, "\"admins\": [\n      \"ops@example.com\",\n      \"a;b=c@x\",\n      \"1234\"\n") !=
                      NULL);
    CHECK(text && strstr(text, "\"token_cache_entries\": 64") != NULL);
    CHECK(text && strstr(text, "\"tokeninfo_timeout_ms\": 900") != NULL);
    check_round_trip(&c, text);
    free(text);
    conf_dispose(&c);
    unlink(token_file);

    /* The defaults too: no admins print as [] and load back as none, no token file as null. */
    CHECK(load(&c, NULL, NO_ARGS, NULL) == 0);
    text = conf_test_print(&c);
    CHECK(text && strstr(text, "\"admins\": []") != NULL && strstr(text, "\"token_file\": null") != NULL);
    CHECK(text && strstr(text, "\"enabled\": true,\n    \"tokeninfo_url\"") != NULL);
    check_round_trip(&c, text);
    free(text);
    conf_dispose(&c);
}

/* test_conf.c checks every key's default, flag and variable; here, the placeholders and what they say. */
static void test_help(void)
{
    static const struct {
        const char *key, *arg;
    } args[] = {
        {"enabled", "BOOL"},          {"tokeninfo_url", "URL"},           {"token_file", "PATH"},
        {"grant_ttl", "DURATION"},    {"admins", "LIST"},                 {"token_cache_ttl", "DURATION"},
        {"token_cache_entries", "N"}, {"tokeninfo_timeout_ms", "MS"},
    };
    char *text = conf_test_print(NULL);
    char want[128];

    CHECK(text != NULL);
    if (text == NULL)
        return;
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        snprintf(want, sizeof(want), "\n      --auth.%s=%s, LARDER_AUTH_", args[i].key, args[i].arg);
        CHECK(strstr(text, want) != NULL);
    }
    CHECK(strstr(text, "LARDER_AUTH_ENABLED\n      false: a hit skips upstream only for the exact credentials that "
                       "filled it\n") != NULL);
    CHECK(strstr(text, "DURATION is seconds,\nor a number and s, m, h or d") != NULL);
    CHECK(strstr(text, "LIST is " CONF_LIST_SYNTAX) != NULL && strstr(text, "replaces it whole") != NULL);
    free(text);
}

/* After success and after each kind of failure, nothing is left behind (the sanitizer build checks). */
static void test_dispose(void)
{
    const char *file = "{\"auth\": {\"admins\": [\"a@x\", \"b@y\"]}}";
    conf_t c;

    CHECK(load(&c, file, NO_ARGS, NULL) == 0 && c.auth.num_admins == 2);
    conf_dispose(&c);
    CHECK(c.auth.admins == NULL && c.auth.num_admins == 0 && c.auth.tokeninfo_url == NULL);
    conf_dispose(&c); /* twice is harmless */
    /* The file's list is in place when a later layer's list fails half-way. */
    CHECK(load(&c, file, ARGS("--auth.admins=c@z,d@z,,e@z"), NULL) == -1);
    conf_dispose(&c);
    CHECK(c.auth.admins == NULL);
    CHECK(load(&c, "{\"auth\": {\"admins\": [\"a@x\", \"b@y\", 3]}}", NO_ARGS, NULL) == -1);
    conf_dispose(&c);
    /* A failure after the list is in: a later key, and the final checks. */
    CHECK(load(&c, file, ARGS("--auth.grant_ttl=0"), NULL) == -1);
    conf_dispose(&c);
    CHECK(load(&c, file, ARGS("--auth.token_file=/nonexistent"), NULL) == -1);
    conf_dispose(&c);
    CHECK(c.auth.admins == NULL && c.auth.num_admins == 0);
}

int main(void)
{
    test_defaults();
    test_layers();
    test_durations();
    test_admins_forms();
    test_admins_errors();
    test_scalar_errors();
    test_admins_layering();
    test_round_trip();
    test_help();
    test_dispose();
    UNIT_DONE();
}
