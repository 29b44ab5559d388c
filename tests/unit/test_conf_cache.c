/*
 * test_conf_cache.c - the cache settings: the store's water marks, cache.*,
 * policies in every spelling, the cache.policies rules in both forms and
 * from every layer, their errors, which rule wins for an object, printing
 * them back, and releasing them.
 */
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
#include "conf_internal.h"
#include "conf_test.h"

#define POLICY_EXPECTED "is not valid: expected always, immutable or ttl:SECONDS (SECONDS from 1 to 31536000"
#define BUCKET_EXPECTED "is not valid: expected a bucket name: 3 to 63 lowercase letters"

static int load(conf_t *conf, const char *const *args, const char *const *env)
{
    return conf_test_load(conf, NULL, args, env, NULL);
}

static int load_file(conf_t *conf, const char *json, const char *const *args, const char *const *env)
{
    return conf_test_load_json(conf, json, args, env);
}

static bool policy_is(const cache_policy_t *p, cache_policy_kind_t kind, unsigned ttl)
{
    return p->kind == kind && (kind != CACHE_POLICY_TTL || p->ttl_seconds == ttl);
}

/* Rule i of c is bucket, prefix, policy. */
static bool rule_is(const conf_t *c, size_t i, const char *bucket, const char *prefix, cache_policy_kind_t kind,
                    unsigned ttl)
{
    if (i >= c->cache.num_rules)
        return false;
    const cache_rule_t *r = &c->cache.rules[i];
    return strcmp(r->bucket, bucket) == 0 && strcmp(r->prefix, prefix) == 0 && policy_is(&r->policy, kind, ttl);
}

static void test_defaults(void)
{
    conf_t c;

    CHECK(load(&c, NO_ARGS, NULL) == 0);
    CHECK(c.store.high_water_percent == 95);
    CHECK(c.store.low_water_percent == 85);
    CHECK(c.cache.enabled);
    CHECK(c.cache.max_object_size == 1ULL << 30);
    CHECK(!c.cache.honor_no_store);
    CHECK(policy_is(&c.cache.default_policy, CACHE_POLICY_ALWAYS, 0));
    CHECK(c.cache.rules == NULL && c.cache.num_rules == 0);
    conf_dispose(&c);
}

static void test_scalars(void)
{
    conf_t c;

    CHECK(load(&c,
               ARGS("--store.high-water-percent=100", "--store.low_water_percent", "1", "--cache.enabled=off",
                    "--cache.max_object_size=1", "--cache.honor-no-store", "yes"),
               NULL) == 0);
    CHECK(c.store.high_water_percent == 100 && c.store.low_water_percent == 1);
    CHECK(!c.cache.enabled && c.cache.honor_no_store);
    CHECK(c.cache.max_object_size == 1);
    conf_dispose(&c);

    CHECK(load(&c, NO_ARGS,
               ENV("LARDER_STORE_HIGH_WATER_PERCENT=60", "LARDER_STORE_LOW_WATER_PERCENT=50",
                   "LARDER_CACHE_ENABLED=false", "LARDER_CACHE_MAX_OBJECT_SIZE=64MiB",
                   "LARDER_CACHE_HONOR_NO_STORE=1")) == 0);
    CHECK(c.store.high_water_percent == 60 && c.store.low_water_percent == 50);
    CHECK(!c.cache.enabled && c.cache.honor_no_store);
    CHECK(c.cache.max_object_size == 64ULL << 20);
    conf_dispose(&c);

    CHECK(load_file(&c,
                    "{\"store\": {\"high_water_percent\": 70, \"low_water_percent\": 20},"
                    " \"cache\": {\"enabled\": false, \"max_object_size\": 4096, \"honor_no_store\": true}}",
                    NO_ARGS, NULL) == 0);
    CHECK(c.store.high_water_percent == 70 && c.store.low_water_percent == 20);
    CHECK(!c.cache.enabled && c.cache.honor_no_store);
    CHECK(c.cache.max_object_size == 4096);
    conf_dispose(&c);
}

static const struct {
    const char *text;
    cache_policy_kind_t kind;
    unsigned ttl;
} good_policies[] = {
    {"always", CACHE_POLICY_ALWAYS, 0},   {"immutable", CACHE_POLICY_IMMUTABLE, 0},
    {"ttl:1", CACHE_POLICY_TTL, 1},       {"ttl:300", CACHE_POLICY_TTL, 300},
    {"ttl:30s", CACHE_POLICY_TTL, 30},    {"ttl:5m", CACHE_POLICY_TTL, 300},
    {"ttl:2h", CACHE_POLICY_TTL, 7200},   {"ttl:1d", CACHE_POLICY_TTL, 86400},
    {"ttl:007", CACHE_POLICY_TTL, 7},     {"ttl:31536000", CACHE_POLICY_TTL, 31536000},
    {"ttl:365d", CACHE_POLICY_TTL, 31536000}, {"ttl:8760h", CACHE_POLICY_TTL, 31536000},
    {"ttl:525600m", CACHE_POLICY_TTL, 31536000},
};

static const char *const bad_policies[] = {
    "", "Always", "IMMUTABLE", "never", "ttl", "ttl:", "ttl:0", "ttl:0s", "ttl:0d", "ttl:31536001", "ttl:366d",
    "ttl:8761h", "ttl:525601m", "ttl:-5", "ttl:+5", "ttl: 5", "ttl:5 ", "ttl:5 m", "ttl:5ms", "ttl:5x", "ttl:5M",
    "ttl:1.5h", "ttl:99999999999999999999999", "ttl:4294967296", "ttl=5", "ttl:s", " always", "always;",
};

static void test_policy_spellings(void)
{
    char flag[64], env[64], json[128];
    conf_t c;

    for (size_t i = 0; i < sizeof(good_policies) / sizeof(good_policies[0]); i++) {
        cache_policy_kind_t kind = good_policies[i].kind;
        unsigned ttl = good_policies[i].ttl;
        snprintf(flag, sizeof(flag), "--cache.default_policy=%s", good_policies[i].text);
        CHECK(load(&c, ARGS(flag), NULL) == 0 && policy_is(&c.cache.default_policy, kind, ttl));
        conf_dispose(&c);
        snprintf(env, sizeof(env), "LARDER_CACHE_DEFAULT_POLICY=%s", good_policies[i].text);
        CHECK(load(&c, NO_ARGS, ENV(env)) == 0 && policy_is(&c.cache.default_policy, kind, ttl));
        conf_dispose(&c);
        snprintf(json, sizeof(json), "{\"cache\": {\"default_policy\": \"%s\"}}", good_policies[i].text);
        CHECK(load_file(&c, json, NO_ARGS, NULL) == 0 && policy_is(&c.cache.default_policy, kind, ttl));
        conf_dispose(&c);
        /* The same spelling inside a rule. */
        snprintf(flag, sizeof(flag), "--cache.policies=logs=%s", good_policies[i].text);
        CHECK(load(&c, ARGS(flag), NULL) == 0 && rule_is(&c, 0, "logs", "", kind, ttl));
        conf_dispose(&c);
        if (err[0])
            fprintf(stderr, "  policy \"%s\": %s\n", good_policies[i].text, err);
    }
    for (size_t i = 0; i < sizeof(bad_policies) / sizeof(bad_policies[0]); i++) {
        snprintf(flag, sizeof(flag), "--cache.default_policy=%s", bad_policies[i]);
        FLAG_ERROR(ARGS(flag), "cache.default_policy", POLICY_EXPECTED);
        snprintf(env, sizeof(env), "LARDER_CACHE_DEFAULT_POLICY=%s", bad_policies[i]);
        ENV_ERROR(ENV(env), "cache.default_policy", POLICY_EXPECTED);
        /* In a rule too; the array form, as the text form would trim blanks and split at ';' and '='. */
        snprintf(json, sizeof(json), "{\"cache\": {\"policies\": [{\"bucket\": \"logs\", \"policy\": \"%s\"}]}}",
                 bad_policies[i]);
        FILE_ERROR(json, "cache.policies[0].policy", POLICY_EXPECTED);
    }
    FLAG_ERROR(ARGS("--cache.default_policy", "ttl:0"), "cache.default_policy",
               "\"ttl:0\" " POLICY_EXPECTED
               ", or a number with s, m, h or d as in ttl:5m) (from --cache.default_policy)");
    ENV_ERROR(ENV("LARDER_CACHE_DEFAULT_POLICY=sometimes"), "cache.default_policy",
              "\"sometimes\" " POLICY_EXPECTED);
    ENV_ERROR(ENV("LARDER_CACHE_DEFAULT_POLICY=sometimes"), "cache.default_policy",
              "(from LARDER_CACHE_DEFAULT_POLICY)");
    FILE_ERROR("{\"cache\": {\"default_policy\": 300}}", "cache.default_policy", "300 " POLICY_EXPECTED);
    FILE_ERROR("{\"cache\": {\"default_policy\": null}}", "cache.default_policy", "null " POLICY_EXPECTED);
    FILE_ERROR("{\"cache\": {\"default_policy\": {\"ttl\": 5}}}", "cache.default_policy", POLICY_EXPECTED);
}

/* logs=ttl:60;models/v1/=immutable;data/raw/=always, however it was given. */
static void check_three_rules(const conf_t *c, int line)
{
    CHECK(c->cache.num_rules == 3);
    CHECK(rule_is(c, 0, "logs", "", CACHE_POLICY_TTL, 60));
    CHECK(rule_is(c, 1, "models", "v1/", CACHE_POLICY_IMMUTABLE, 0));
    CHECK(rule_is(c, 2, "data", "raw/", CACHE_POLICY_ALWAYS, 0));
    if (c->cache.num_rules != 3)
        fprintf(stderr, "  line %d: %zu rules (%s)\n", line, c->cache.num_rules, err);
}

#define THREE_RULES "logs=ttl:60;models/v1/=immutable;data/raw/=always"

static void test_rule_forms(void)
{
    conf_t c;

    CHECK(load(&c, ARGS("--cache.policies", THREE_RULES), NULL) == 0);
    check_three_rules(&c, __LINE__);
    conf_dispose(&c);
    CHECK(load(&c, ARGS("--cache.policies=" THREE_RULES), NULL) == 0);
    check_three_rules(&c, __LINE__);
    conf_dispose(&c);
    CHECK(load(&c, NO_ARGS, ENV("LARDER_CACHE_POLICIES=" THREE_RULES)) == 0);
    check_three_rules(&c, __LINE__);
    conf_dispose(&c);
    CHECK(load_file(&c, "{\"cache\": {\"policies\": \"" THREE_RULES "\"}}", NO_ARGS, NULL) == 0);
    check_three_rules(&c, __LINE__);
    conf_dispose(&c);
    CHECK(load_file(&c,
                    "{\"cache\": {\"policies\": [{\"bucket\": \"logs\", \"policy\": \"ttl:1m\"},"
                    " {\"policy\": \"immutable\", \"prefix\": \"v1/\", \"bucket\": \"models\"},"
                    " {\"bucket\": \"data\", \"prefix\": \"raw/\", \"policy\": \"always\"}]}}",
                    NO_ARGS, NULL) == 0);
    check_three_rules(&c, __LINE__);
    conf_dispose(&c);
}

static void test_rule_details(void)
{
    char flag[300], bucket63[64], dotted[223];
    conf_t c;

    /* Blanks around rules and empty rules are ignored; a prefix runs to the last '='. */
    CHECK(load(&c, ARGS("--cache.policies", " logs=always ; ;abc.d_e-9=ttl:1d;logs/a=b=immutable;m01/v1/sub/=ttl:5;"),
               NULL) == 0);
    CHECK(c.cache.num_rules == 4);
    CHECK(rule_is(&c, 0, "logs", "", CACHE_POLICY_ALWAYS, 0));
    CHECK(rule_is(&c, 1, "abc.d_e-9", "", CACHE_POLICY_TTL, 86400));
    CHECK(rule_is(&c, 2, "logs", "a=b", CACHE_POLICY_IMMUTABLE, 0));
    CHECK(rule_is(&c, 3, "m01", "v1/sub/", CACHE_POLICY_TTL, 5));
    conf_dispose(&c);

    /* "logs/" is the whole bucket, as "logs" is; an empty list is no rules. */
    CHECK(load(&c, ARGS("--cache.policies=logs/=immutable"), NULL) == 0);
    CHECK(rule_is(&c, 0, "logs", "", CACHE_POLICY_IMMUTABLE, 0));
    conf_dispose(&c);
    CHECK(load(&c, ARGS("--cache.policies="), NULL) == 0 && c.cache.num_rules == 0 && c.cache.rules == NULL);
    conf_dispose(&c);
    CHECK(load_file(&c, "{\"cache\": {\"policies\": []}}", NO_ARGS, NULL) == 0 && c.cache.num_rules == 0);
    conf_dispose(&c);
    CHECK(load_file(&c, "{\"cache\": {\"policies\": \"\"}}", NO_ARGS, NULL) == 0 && c.cache.num_rules == 0);
    conf_dispose(&c);

    /* The longest bucket names allowed, a UTF-8 prefix, and ';' in a prefix (the file's array form only). */
    memset(bucket63, 'a', 63);
    bucket63[63] = '\0';
    memset(dotted, 'b', 222);
    for (size_t i = 60; i < 222; i += 61)
        dotted[i] = '.';
    dotted[222] = '\0';
    snprintf(flag, sizeof(flag), "--cache.policies=%s=always", bucket63);
    CHECK(load(&c, ARGS(flag), NULL) == 0 && rule_is(&c, 0, bucket63, "", CACHE_POLICY_ALWAYS, 0));
    conf_dispose(&c);
    snprintf(flag, sizeof(flag), "--cache.policies=%s/x=always", dotted);
    CHECK(load(&c, ARGS(flag), NULL) == 0 && rule_is(&c, 0, dotted, "x", CACHE_POLICY_ALWAYS, 0));
    conf_dispose(&c);
    CHECK(load(&c, ARGS("--cache.policies=abc/caf\xc3\xa9/\xf0\x9f\x98\x80=always"), NULL) == 0);
    CHECK(rule_is(&c, 0, "abc", "caf\xc3\xa9/\xf0\x9f\x98\x80", CACHE_POLICY_ALWAYS, 0));
    conf_dispose(&c);
    CHECK(load_file(&c,
                    "{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"prefix\": \"a;b=c \","
                    " \"policy\": \"always\"}]}}",
                    NO_ARGS, NULL) == 0);
    CHECK(rule_is(&c, 0, "abc", "a;b=c ", CACHE_POLICY_ALWAYS, 0));
    conf_dispose(&c);
}

static void test_rule_text_errors(void)
{
    char flag[400];

    FLAG_ERROR(ARGS("--cache.policies=logs"), "cache.policies[0]",
               "\"logs\" is not valid: expected BUCKET[/PREFIX]=POLICY, as in models/v1/=immutable"
               " (from --cache.policies)");
    FLAG_ERROR(ARGS("--cache.policies=logs=always;models"), "cache.policies[1]", "\"models\" is not valid");
    ENV_ERROR(ENV("LARDER_CACHE_POLICIES=abc=always;x=always"), "cache.policies[1].bucket",
              "\"x\" " BUCKET_EXPECTED);
    ENV_ERROR(ENV("LARDER_CACHE_POLICIES=abc=always;xyz=ttl:0"), "cache.policies[1].policy",
              "\"ttl:0\" " POLICY_EXPECTED);
    ENV_ERROR(ENV("LARDER_CACHE_POLICIES=abc=x"), "cache.policies[0].policy", "(from LARDER_CACHE_POLICIES)");
    FILE_ERROR("{\"cache\": {\"policies\": \"abc=always;abc=never\"}}", "cache.policies[1].policy", "\"never\"");

    static const char *const bad_buckets[] = {
        "", "ab", "Logs", "-logs", "logs-", "_logs", "logs_", ".logs", "logs.", "lo gs", "lo!gs", "a..b",
        "l\xc3\xb6gs",
    };
    for (size_t i = 0; i < sizeof(bad_buckets) / sizeof(bad_buckets[0]); i++) {
        snprintf(flag, sizeof(flag), "--cache.policies=%s/p=always", bad_buckets[i]);
        FLAG_ERROR(ARGS(flag), "cache.policies[0].bucket", BUCKET_EXPECTED);
    }
    char too_long[80], too_long_dotted[240], long_part[80];
    memset(too_long, 'a', 64);
    too_long[64] = '\0';
    memset(too_long_dotted, 'b', 223); /* parts of 60 but 223 in all */
    too_long_dotted[60] = too_long_dotted[121] = too_long_dotted[182] = '.';
    too_long_dotted[223] = '\0';
    memset(long_part, 'c', 70);
    long_part[3] = '.';
    long_part[70] = '\0'; /* "ccc." then 66 characters */
    const char *const long_ones[] = {too_long, too_long_dotted, long_part};
    for (size_t i = 0; i < 3; i++) {
        snprintf(flag, sizeof(flag), "--cache.policies=%s=always", long_ones[i]);
        FLAG_ERROR(ARGS(flag), "cache.policies[0].bucket", BUCKET_EXPECTED);
    }
}

/* Prefixes: 1024 bytes is the most, and it must be UTF-8 without CR or LF; and no rule twice. */
static void test_prefix_and_duplicate_errors(void)
{
    char flag[64], long_prefix[1100];
    conf_t c;

    memset(long_prefix, 'p', 1025);
    long_prefix[1025] = '\0';
    char *big = NULL;
    CHECK(asprintf(&big, "--cache.policies=abc/%s=always", long_prefix) > 0);
    FLAG_ERROR(ARGS(big), "cache.policies[0].prefix", "is not valid: expected a string of at most 1024 bytes");
    long_prefix[1024] = '\0';
    free(big);
    big = NULL;
    CHECK(asprintf(&big, "--cache.policies=abc/%s=always", long_prefix) > 0);
    CHECK(load(&c, ARGS(big), NULL) == 0 && c.cache.num_rules == 1 && strlen(c.cache.rules[0].prefix) == 1024);
    conf_dispose(&c);
    free(big);
    FLAG_ERROR(ARGS("--cache.policies=abc/a\nb=always"), "cache.policies[0].prefix", "\"a\\x0ab\" is not valid");
    FLAG_ERROR(ARGS("--cache.policies=abc/a\rb=always"), "cache.policies[0].prefix", "without CR or LF");
    static const char *const bad_utf8[] = {"\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                           "caf\xc3", "\x80"};
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
        snprintf(flag, sizeof(flag), "--cache.policies=abc/%s=always", bad_utf8[i]);
        FLAG_ERROR(ARGS(flag), "cache.policies[0].prefix", "expected a string of at most 1024 bytes of UTF-8");
    }

    /* The same bucket and prefix twice, however spelt. */
    FLAG_ERROR(ARGS("--cache.policies=logs=always;logs/=ttl:1"), "cache.policies[1]",
               "\"logs\" is not valid: expected a bucket and prefix not already given by cache.policies[0]");
    FLAG_ERROR(ARGS("--cache.policies=abc/x=always;def=always;abc/x=immutable"), "cache.policies[2]",
               "\"abc/x\" is not valid: expected a bucket and prefix not already given by cache.policies[0]");
}

static void test_rule_file_errors(void)
{
    FILE_ERROR("{\"cache\": {\"policies\": 5}}", "cache.policies",
               "5 is not valid: expected an array of rule objects, or a string " CONF_RULES_SYNTAX);
    FILE_ERROR("{\"cache\": {\"policies\": null}}", "cache.policies", "null is not valid: expected an array");
    FILE_ERROR("{\"cache\": {\"policies\": {\"bucket\": \"abc\"}}}", "cache.policies", "expected an array");
    FILE_ERROR("{\"cache\": {\"policies\": [\"abc=always\"]}}", "cache.policies[0]",
               "\"abc=always\" is not valid: expected an object such as {\"bucket\": \"models\"");
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"policy\": \"always\"},"
               " {\"bucket\": \"abc\", \"polcy\": \"always\"}]}}",
               "cache.policies[1].polcy", "unknown key (did you mean policy?)");
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"ttl\": 5}]}}", "cache.policies[0].ttl",
               "unknown key");
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"prefx\": \"a/\"}]}}", "cache.policies[0].prefx",
               "did you mean prefix?");
    FILE_ERROR("{\"cache\": {\"policies\": [{\"policy\": \"always\"}]}}", "cache.policies[0].bucket",
               "null " BUCKET_EXPECTED);
    FILE_ERROR("{\"cache\": {\"policies\": [{}]}}", "cache.policies[0].bucket", "null " BUCKET_EXPECTED);
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"prefix\": \"x/\"}]}}", "cache.policies[0].policy",
               "null " POLICY_EXPECTED);
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": 5, \"policy\": \"always\"}]}}", "cache.policies[0].bucket",
               "5 " BUCKET_EXPECTED);
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"ABC\", \"policy\": \"always\"}]}}",
               "cache.policies[0].bucket", "\"ABC\" " BUCKET_EXPECTED);
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"prefix\": null, \"policy\": \"always\"}]}}",
               "cache.policies[0].prefix", "null is not valid: expected a string");
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"prefix\": \"a\\nb\", \"policy\": \"always\"}]}}",
               "cache.policies[0].prefix", "without CR or LF");
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"policy\": \"ttl:5w\"}]}}",
               "cache.policies[0].policy", "\"ttl:5w\" " POLICY_EXPECTED);
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"policy\": 60}]}}", "cache.policies[0].policy",
               "60 " POLICY_EXPECTED);
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"policy\": \"always\"},"
               " {\"bucket\": \"abc\", \"prefix\": \"\", \"policy\": \"immutable\"}]}}",
               "cache.policies[1]", "\"abc\" is not valid: expected a bucket and prefix not already given by "
                                    "cache.policies[0]");
    FILE_ERROR("{\"cache\": {\"policies\": [{\"bucket\": \"abc\", \"prefix\": \"p\", \"policy\": \"always\"}, 7]}}",
               "cache.policies[1]", "7 is not valid: expected an object");
    FILE_ERROR("{\"cache\": {\"polices\": []}}", "cache.polices", "unknown key (did you mean cache.policies?)");
    FILE_ERROR("{\"cache\": []}", "cache", "expected an object");
    ENV_ERROR(ENV("LARDER_CACHE_POLICIE=abc=always"), "LARDER_CACHE_POLICIE",
              "unknown environment variable (did you mean LARDER_CACHE_POLICIES?)");
    FLAG_ERROR(ARGS("--cache.polices=abc=always"), "--cache.polices", "unknown flag (did you mean --cache.policies?)");
}

static void test_scalar_errors(void)
{
    FLAG_ERROR(ARGS("--store.high_water_percent=0"), "store.high_water_percent",
               "\"0\" is not valid: expected an integer from 1 to 100");
    FLAG_ERROR(ARGS("--store.low_water_percent=101"), "store.low_water_percent", "expected an integer from 1 to 100");
    FILE_ERROR("{\"store\": {\"high_water_percent\": 95.5}}", "store.high_water_percent", "95.5 is not valid");
    FILE_ERROR("{\"store\": {\"low_water_percent\": \"50\"}}", "store.low_water_percent", "expected an integer");
    FLAG_ERROR(ARGS("--cache.enabled=maybe"), "cache.enabled", "\"maybe\" is not valid: expected true or false");
    FILE_ERROR("{\"cache\": {\"honor_no_store\": \"yes\"}}", "cache.honor_no_store", "expected true or false");
    FLAG_ERROR(ARGS("--cache.max_object_size=0"), "cache.max_object_size",
               "\"0\" is not valid: expected a size of at least 1:");
    ENV_ERROR(ENV("LARDER_CACHE_MAX_OBJECT_SIZE=big"), "cache.max_object_size",
              "(from LARDER_CACHE_MAX_OBJECT_SIZE)");
}

/* Checked on the final values, once every layer is in. */
static void test_water_marks(void)
{
    conf_t c;

    FLAG_ERROR(ARGS("--store.low_water_percent=95"), "store.low_water_percent",
               "95 is not valid: expected less than store.high_water_percent (95)");
    FLAG_ERROR(ARGS("--store.low_water_percent=50", "--store.high_water_percent=40"), "store.low_water_percent",
               "50 is not valid: expected less than store.high_water_percent (40)");
    FILE_ERROR("{\"store\": {\"high_water_percent\": 80}}", "store.low_water_percent",
               "85 is not valid: expected less than store.high_water_percent (80)");
    ENV_ERROR(ENV("LARDER_STORE_HIGH_WATER_PERCENT=1"), "store.low_water_percent",
              "expected less than store.high_water_percent (1)");
    /* A later layer may put right what an earlier one alone would get wrong. */
    CHECK(load_file(&c, "{\"store\": {\"high_water_percent\": 80}}", ARGS("--store.low_water_percent=79"), NULL) ==
          0);
    CHECK(c.store.high_water_percent == 80 && c.store.low_water_percent == 79);
    conf_dispose(&c);
    CHECK(load(&c, ARGS("--store.low_water_percent=96", "--store.high_water_percent=97"), NULL) == 0);
    conf_dispose(&c);
}

/* models: bucket-wide always, v1/ immutable, v1/big/ ttl:60; logs: 2024/ only; default ttl:5m. */
static void check_lookups(const conf_t *c)
{
    const cache_policy_t *def = &c->cache.default_policy;

#define POLICY_FOR(bucket, name) conf_cache_policy_for(c, bucket, strlen(bucket), name, strlen(name))
    CHECK(policy_is(POLICY_FOR("models", "v1/big/file"), CACHE_POLICY_TTL, 60));
    CHECK(policy_is(POLICY_FOR("models", "v1/big/"), CACHE_POLICY_TTL, 60));
    CHECK(policy_is(POLICY_FOR("models", "v1/big"), CACHE_POLICY_IMMUTABLE, 0));
    CHECK(policy_is(POLICY_FOR("models", "v1/small"), CACHE_POLICY_IMMUTABLE, 0));
    CHECK(policy_is(POLICY_FOR("models", "v1/"), CACHE_POLICY_IMMUTABLE, 0));
    CHECK(policy_is(POLICY_FOR("models", "v1"), CACHE_POLICY_ALWAYS, 0));
    CHECK(policy_is(POLICY_FOR("models", "v2/x"), CACHE_POLICY_ALWAYS, 0));
    CHECK(policy_is(POLICY_FOR("models", ""), CACHE_POLICY_ALWAYS, 0));
    CHECK(POLICY_FOR("models", "x") != def);
    CHECK(policy_is(POLICY_FOR("logs", "2024/01/a"), CACHE_POLICY_TTL, 3600));
    CHECK(POLICY_FOR("logs", "2023/01/a") == def);
    CHECK(POLICY_FOR("logs", "") == def);
    CHECK(POLICY_FOR("model", "v1/x") == def);
    CHECK(POLICY_FOR("modelsx", "v1/x") == def);
    CHECK(POLICY_FOR("other", "v1/big/file") == def);
    CHECK(POLICY_FOR("", "") == def);
    CHECK(policy_is(def, CACHE_POLICY_TTL, 300));
#undef POLICY_FOR
    /* Neither bucket nor name need be NUL-terminated. */
    CHECK(policy_is(conf_cache_policy_for(c, "models-extra", 6, "v1/bigger", 3), CACHE_POLICY_IMMUTABLE, 0));
    CHECK(conf_cache_policy_for(c, "models", 5, "v1/big/file", 11) == def);
    CHECK(conf_cache_policy_for(c, "logs", 4, "2024/", 4) == def);
    /* A bucket-level request may have no name at all. */
    CHECK(policy_is(conf_cache_policy_for(c, "models", 6, NULL, 0), CACHE_POLICY_ALWAYS, 0));
    CHECK(conf_cache_policy_for(c, "logs", 4, NULL, 0) == def);
}

static void test_precedence(void)
{
    conf_t c;

    CHECK(load(&c,
               ARGS("--cache.default_policy=ttl:5m",
                    "--cache.policies=models=always;models/v1/=immutable;models/v1/big/=ttl:60;logs/2024/=ttl:1h"),
               NULL) == 0);
    check_lookups(&c);
    conf_dispose(&c);
    /* The order of the rules does not matter. */
    CHECK(load(&c,
               ARGS("--cache.default_policy=ttl:300",
                    "--cache.policies=logs/2024/=ttl:3600;models/v1/big/=ttl:60;models/v1/=immutable;models=always"),
               NULL) == 0);
    check_lookups(&c);
    conf_dispose(&c);

    /* No rules: always the default. */
    CHECK(load(&c, ARGS("--cache.default_policy=immutable"), NULL) == 0);
    CHECK(conf_cache_policy_for(&c, "models", 6, "v1/x", 4) == &c.cache.default_policy);
    CHECK(policy_is(conf_cache_policy_for(&c, "models", 6, "v1/x", 4), CACHE_POLICY_IMMUTABLE, 0));
    conf_dispose(&c);
}

/* Whichever layer sets the list last replaces it whole; nothing is merged. */
static void test_layering(void)
{
    const char *file = "{\"cache\": {\"default_policy\": \"immutable\", \"policies\": ["
                       "{\"bucket\": \"aaa\", \"policy\": \"always\"},"
                       " {\"bucket\": \"bbb\", \"policy\": \"always\"}]}}";
    conf_t c;

    CHECK(load_file(&c, file, NO_ARGS, NULL) == 0 && c.cache.num_rules == 2);
    CHECK(policy_is(&c.cache.default_policy, CACHE_POLICY_IMMUTABLE, 0));
    conf_dispose(&c);
    CHECK(load_file(&c, file, NO_ARGS, ENV("LARDER_CACHE_POLICIES=ccc=ttl:1")) == 0);
    CHECK(c.cache.num_rules == 1 && rule_is(&c, 0, "ccc", "", CACHE_POLICY_TTL, 1));
    conf_dispose(&c);
    CHECK(load_file(&c, file, ARGS("--cache.policies", "ddd/x/=ttl:2;eee=immutable", "--cache.default_policy=always"),
                    ENV("LARDER_CACHE_POLICIES=ccc=ttl:1")) == 0);
    CHECK(c.cache.num_rules == 2);
    CHECK(rule_is(&c, 0, "ddd", "x/", CACHE_POLICY_TTL, 2) && rule_is(&c, 1, "eee", "", CACHE_POLICY_IMMUTABLE, 0));
    CHECK(policy_is(&c.cache.default_policy, CACHE_POLICY_ALWAYS, 0));
    conf_dispose(&c);
    /* An empty flag clears the file's list; the last of two flags wins. */
    CHECK(load_file(&c, file, ARGS("--cache.policies="), NULL) == 0 && c.cache.num_rules == 0);
    conf_dispose(&c);
    CHECK(load(&c, ARGS("--cache.policies=aaa=always;bbb=always", "--cache.policies=ccc=immutable"), NULL) == 0);
    CHECK(c.cache.num_rules == 1 && rule_is(&c, 0, "ccc", "", CACHE_POLICY_IMMUTABLE, 0));
    conf_dispose(&c);
    /* A list a later layer replaces must still be valid. */
    CHECK(load_file(&c, "{\"cache\": {\"policies\": [{\"bucket\": \"A\", \"policy\": \"always\"}]}}",
                    ARGS("--cache.policies=abc=always"), NULL) == -1);
    CHECK(strstr(err, "config: cache.policies[0].bucket: \"A\" is not valid") == err);
    conf_dispose(&c);
}

static void check_same_cache(const conf_t *a, const conf_t *b)
{
    CHECK(a->store.high_water_percent == b->store.high_water_percent);
    CHECK(a->store.low_water_percent == b->store.low_water_percent);
    CHECK(a->cache.enabled == b->cache.enabled && a->cache.honor_no_store == b->cache.honor_no_store);
    CHECK(a->cache.max_object_size == b->cache.max_object_size);
    CHECK(policy_is(&b->cache.default_policy, a->cache.default_policy.kind, a->cache.default_policy.ttl_seconds));
    CHECK(a->cache.num_rules == b->cache.num_rules);
    for (size_t i = 0; i < a->cache.num_rules && i < b->cache.num_rules; i++) {
        const cache_rule_t *r = &a->cache.rules[i];
        CHECK(rule_is(b, i, r->bucket, r->prefix, r->policy.kind, r->policy.ttl_seconds));
    }
}

/* What --check-config prints is a config file that loads back to the same settings. */
static void test_round_trip(void)
{
    const char *file = "{\"cache\": {\"policies\": ["
                       "{\"bucket\": \"abc\", \"prefix\": \"a;b=c \", \"policy\": \"ttl:2h\"},"
                       " {\"bucket\": \"abc\", \"policy\": \"immutable\"},"
                       " {\"bucket\": \"x.y.z\", \"prefix\": \"caf\\u00e9/\", \"policy\": \"always\"}]}}";
    char path[64];
    conf_t c, again;

    CHECK(load_file(&c, file,
                    ARGS("--store.high_water_percent=90", "--store.low_water_percent=60", "--cache.enabled=no",
                         "--cache.max_object_size=5000", "--cache.honor_no_store=on", "--cache.default_policy=ttl:5m"),
                    NULL) == 0);
    char *text = conf_test_print(&c);
    CHECK(text != NULL);
    if (text == NULL) {
        conf_dispose(&c);
        return;
    }
    CHECK(strstr(text, "\"high_water_percent\": 90") != NULL);
    CHECK(strstr(text, "\"low_water_percent\": 60") != NULL);
    CHECK(strstr(text, "\"enabled\": false") != NULL);
    CHECK(strstr(text, "\"max_object_size\": \"5000\"") != NULL);
    CHECK(strstr(text, "\"default_policy\": \"ttl:300\"") != NULL);
    CHECK(strstr(text, "\"policies\": [") != NULL);
    CHECK(strstr(text, "\"policy\": \"ttl:7200\"") != NULL);
    CHECK(strstr(text, "\"prefix\": \"\"") != NULL);
    conf_test_write_temp(path, text);
    CHECK(load(&again, ARGS("--check-config", path), NULL) == 0);
    check_same_cache(&c, &again);
    conf_dispose(&again);
    unlink(path);
    free(text);
    conf_dispose(&c);

    /* The defaults too: an empty list prints as [] and loads back as none. */
    CHECK(load(&c, NO_ARGS, NULL) == 0);
    text = conf_test_print(&c);
    CHECK(text && strstr(text, "\"policies\": []") != NULL && strstr(text, "\"default_policy\": \"always\"") != NULL);
    conf_test_write_temp(path, text ? text : "");
    CHECK(load(&again, ARGS("-c", path), NULL) == 0);
    check_same_cache(&c, &again);
    conf_dispose(&again);
    unlink(path);
    free(text);
    conf_dispose(&c);
}

static void test_help(void)
{
    char *text = conf_test_print(NULL);

    CHECK(text != NULL);
    if (text == NULL)
        return;
    CHECK(strstr(text, "RULES is " CONF_RULES_SYNTAX) != NULL);
    CHECK(strstr(text, "POLICY is " CONF_POLICY_SYNTAX) != NULL);
    CHECK(strstr(text, "ttl:5m") != NULL && strstr(text, "longest prefix") != NULL);
    CHECK(strstr(text, "  cache.policies = (none)\n      --cache.policies=RULES, LARDER_CACHE_POLICIES\n") != NULL);
    CHECK(strstr(text, "  cache.default_policy = always\n      --cache.default_policy=POLICY, "
                       "LARDER_CACHE_DEFAULT_POLICY\n") != NULL);
    CHECK(strstr(text, "  store.low_water_percent = 85\n") != NULL);
    CHECK(strstr(text, "  cache.max_object_size = 1GiB\n") != NULL);
    CHECK(strstr(text, "LARDER_CACHE_HONOR_NO_STORE") != NULL && strstr(text, "LARDER_CACHE_ENABLED") != NULL);
    free(text);
}

/* After success and after each kind of failure, nothing is left behind (the sanitizer build checks). */
static void test_dispose(void)
{
    const char *file = "{\"cache\": {\"policies\": [{\"bucket\": \"aaa\", \"prefix\": \"p/\", \"policy\": \"always\"},"
                       " {\"bucket\": \"bbb\", \"policy\": \"ttl:1\"}]}}";
    conf_t c;

    CHECK(load_file(&c, file, ARGS("--cache.default_policy=ttl:1d"), NULL) == 0 && c.cache.num_rules == 2);
    conf_dispose(&c);
    CHECK(c.cache.rules == NULL && c.cache.num_rules == 0);
    conf_dispose(&c); /* twice is harmless */
    /* The file's list is in place when a later layer's list fails half-way. */
    CHECK(load_file(&c, file, ARGS("--cache.policies=ccc/x=always;ddd=always;Bad=always"), NULL) == -1);
    conf_dispose(&c);
    CHECK(c.cache.rules == NULL);
    CHECK(load_file(&c, file, ARGS("--cache.policies=ccc/x=always;ccc/x/=always;ccc/x=never"), NULL) == -1);
    conf_dispose(&c);
    CHECK(load_file(&c, file, ARGS("--cache.policies=ccc/x=always;ccc/x=always"), NULL) == -1);
    conf_dispose(&c);
    /* Half-built file objects: a field set, then a bad or missing one. */
    CHECK(load_file(&c, "{\"cache\": {\"policies\": [{\"bucket\": \"aaa\", \"prefix\": \"p\", \"policy\": \"always\"},"
                        " {\"bucket\": \"bbb\", \"prefix\": \"q\", \"polcy\": \"always\"}]}}",
                    NO_ARGS, NULL) == -1);
    conf_dispose(&c);
    CHECK(load_file(&c, "{\"cache\": {\"policies\": [{\"bucket\": \"bbb\", \"prefix\": \"q\"}]}}", NO_ARGS,
                    NULL) == -1);
    conf_dispose(&c);
    CHECK(load_file(&c, "{\"cache\": {\"policies\": [{\"prefix\": \"q\", \"bucket\": \"b\"}]}}", NO_ARGS, NULL) == -1);
    conf_dispose(&c);
    /* A failure after the rules are in: the final checks. */
    CHECK(load_file(&c, file, ARGS("--store.low_water_percent=99"), NULL) == -1);
    conf_dispose(&c);
    CHECK(c.cache.rules == NULL && c.cache.num_rules == 0);
}

int main(void)
{
    test_defaults();
    test_scalars();
    test_policy_spellings();
    test_rule_forms();
    test_rule_details();
    test_rule_text_errors();
    test_prefix_and_duplicate_errors();
    test_rule_file_errors();
    test_scalar_errors();
    test_water_marks();
    test_precedence();
    test_layering();
    test_round_trip();
    test_help();
    test_dispose();
    UNIT_DONE();
}
