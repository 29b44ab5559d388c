/*
 * test_auth.c - auth/: token hashing checked against OpenSSL's own SipHash;
 * the answer tables (exact keys, expiry, replacement, the bound and FIFO
 * eviction, epochs); the token file and its errors; and auth_identify end
 * to end: credentials classified, tokens from the file, tokeninfo
 * unreachable, a fake tokeninfo (its answers, one question however many
 * wait, cancelled waiters), reloads, auth disabled, grants, admins and the
 * decision counters.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "auth_internal.h"
#include "unit.h"

/* 2030-01-01T00:00:00Z, where the token file's expiries below all fall. */
#define T2030 1893456000LL

static char dir[64];

/* dir/name, in buf. */
static const char *dir_path(char buf[128], const char *name)
{
    snprintf(buf, 128, "%s/%s", dir, name);
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
}

/* --- 1. token hashing --- */

/* OpenSSL's own SipHash-2-4 with a 128-bit output, for the hasher to agree with. */
static bool openssl_siphash(const uint8_t key[TOKEN_KEY_LEN], const void *msg, size_t len, uint8_t out[AUTH_HASH_LEN])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    size_t size = AUTH_HASH_LEN, written = 0;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size), OSSL_PARAM_construct_end()};
    bool ok = ctx != NULL && EVP_MAC_init(ctx, key, TOKEN_KEY_LEN, params) == 1 &&
              EVP_MAC_update(ctx, msg, len) == 1 && EVP_MAC_final(ctx, out, &written, AUTH_HASH_LEN) == 1 &&
              written == AUTH_HASH_LEN;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok;
}

/* The hasher's digest of parts equals OpenSSL's SipHash of want. */
static bool digest_is_siphash(token_hasher_t *hasher, const uint8_t key[TOKEN_KEY_LEN], const void *const *parts,
                              const size_t *lens, size_t nparts, const void *want, size_t want_len)
{
    uint8_t got[AUTH_HASH_LEN], expected[AUTH_HASH_LEN];
    return token_hasher_digest(hasher, parts, lens, nparts, got) == 0 &&
           openssl_siphash(key, want, want_len, expected) && memcmp(got, expected, AUTH_HASH_LEN) == 0;
}

static void test_hash(void)
{
    uint8_t key[TOKEN_KEY_LEN];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)i;
    token_hasher_t hasher;
    CHECK(token_hasher_init(&hasher, key) == 0);

    /* The reference test vector: key 00..0f, message 00..0e (entry 15 of the reference implementation's 128-bit vectors). */
    uint8_t message[1000];
    for (size_t i = 0; i < sizeof(message); i++)
        message[i] = (uint8_t)i;
    static const uint8_t reference_15[AUTH_HASH_LEN] = {0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11,
                                                         0x7e, 0x08, 0xec, 0x0f, 0x97, 0xcf, 0xc3, 0xd9};
    const void *fifteen[] = {message};
    size_t fifteen_len[] = {15};
    uint8_t got[AUTH_HASH_LEN];
    CHECK(token_hasher_digest(&hasher, fifteen, fifteen_len, 1, got) == 0);
    CHECK(memcmp(got, reference_15, AUTH_HASH_LEN) == 0);

    /* Every tail length, and a long message; each split in two parts at every place. */
    for (size_t len = 0; len <= 70; len++) {
        const void *one[] = {message};
        size_t one_len[] = {len};
        CHECK(digest_is_siphash(&hasher, key, one, one_len, 1, message, len));
        for (size_t cut = 0; cut <= len; cut++) {
            const void *two[] = {message, message + cut};
            size_t two_len[] = {cut, len - cut};
            CHECK(digest_is_siphash(&hasher, key, two, two_len, 2, message, len));
        }
    }
    const void *long_part[] = {message};
    size_t long_len[] = {sizeof(message)};
    CHECK(digest_is_siphash(&hasher, key, long_part, long_len, 1, message, sizeof(message)));
    /* Parts are concatenated; NULL ones are skipped, whatever length they claim. */
    const void *parts[] = {"ab", NULL, "", "cdef", NULL, "\n"};
    size_t lens[] = {2, 99, 0, 4, 7, 1};
    CHECK(digest_is_siphash(&hasher, key, parts, lens, 6, "abcdef\n", 7));
    token_hasher_dispose(&hasher);

    /* Another key, another digest: the key is really in it. */
    token_hasher_t a, b;
    CHECK(token_hasher_init(&a, key) == 0);
    CHECK(token_hasher_init(&b, message + 1) == 0);
    const void *token[] = {"token"};
    size_t token_len[] = {5};
    uint8_t ha[AUTH_HASH_LEN], hb[AUTH_HASH_LEN];
    CHECK(token_hasher_digest(&a, token, token_len, 1, ha) == 0);
    CHECK(token_hasher_digest(&b, token, token_len, 1, hb) == 0);
    CHECK(memcmp(ha, hb, AUTH_HASH_LEN) != 0);
    token_hasher_dispose(&a);
    token_hasher_dispose(&b);
}

/* --- 2. answer tables --- */

static answer_key_t key_of(const char *text)
{
    answer_key_t key;
    key.len = strlen(text);
    memcpy(key.bytes, text, key.len);
    answer_key_seal(&key);
    return key;
}

static answer_t answer_of(auth_kind_t kind, const char *name, int64_t until_ms)
{
    answer_t answer = {.kind = kind, .until_ms = until_ms, .expires_ms = until_ms + 5};
    snprintf(answer.name, sizeof(answer.name), "%s", name);
    return answer;
}

static void test_table_keys(void)
{
    answer_table_t *table = answer_table_new(100);
    CHECK(table != NULL);
    answer_key_t alpha = key_of("alpha");
    answer_t put = answer_of(AUTH_IDENTIFIED, "alice@example.com", 1000), got;
    CHECK(answer_table_put(table, &alpha, &put));
    CHECK(answer_table_get(table, &alpha, 999, &got));
    CHECK(got.kind == AUTH_IDENTIFIED && got.until_ms == 1000 && got.expires_ms == 1005);
    CHECK_STR(got.name, "alice@example.com");

    /* Until until_ms, not at it. */
    CHECK(!answer_table_get(table, &alpha, 1000, &got));
    CHECK(!answer_table_get(table, &alpha, 5000, &got));

    /* Keys are compared whole: one byte off, or one byte more or less, is another key. */
    answer_key_t other = key_of("alphb"), shorter = key_of("alph"), longer = key_of("alphaa");
    CHECK(!answer_table_get(table, &other, 0, &got));
    CHECK(!answer_table_get(table, &shorter, 0, &got));
    CHECK(!answer_table_get(table, &longer, 0, &got));
    /* Even under the same hash: the hash only places a key. */
    answer_key_t same_hash = alpha;
    same_hash.bytes[2] ^= 1;
    CHECK(!answer_table_get(table, &same_hash, 0, &got));
    same_hash = alpha;
    same_hash.len--;
    CHECK(!answer_table_get(table, &same_hash, 0, &got));
    CHECK(answer_table_put(table, &same_hash, &(answer_t){.kind = AUTH_INVALID, .until_ms = 1000}));
    CHECK(answer_table_get(table, &alpha, 0, &got) && got.kind == AUTH_IDENTIFIED);
    CHECK(answer_table_get(table, &same_hash, 0, &got) && got.kind == AUTH_INVALID);

    /* Replacing a key changes its answer. */
    put = answer_of(AUTH_UNVERIFIABLE, "", 2000);
    CHECK(answer_table_put(table, &alpha, &put));
    CHECK(answer_table_get(table, &alpha, 1500, &got));
    CHECK(got.kind == AUTH_UNVERIFIABLE && got.until_ms == 2000 && got.name[0] == '\0');
    answer_table_free(table);
}

/* How many of keys "key-first" to "key-(last-1)" table holds at time 0. */
static size_t count_held(answer_table_t *table, size_t first, size_t last)
{
    size_t held = 0;
    for (size_t i = first; i < last; i++) {
        char text[32];
        snprintf(text, sizeof(text), "key-%zu", i);
        answer_key_t key = key_of(text);
        answer_t got;
        held += answer_table_get(table, &key, 0, &got);
    }
    return held;
}

static void put_key(answer_table_t *table, size_t i, int64_t until_ms)
{
    char text[32];
    snprintf(text, sizeof(text), "key-%zu", i);
    answer_key_t key = key_of(text);
    answer_t answer = answer_of(AUTH_IDENTIFIED, text, until_ms);
    CHECK(answer_table_put(table, &key, &answer));
}

static void test_table_bound(void)
{
    enum { N = 1000, STRIPES_AT_MOST = 64 };
    /* "key-N" keys differ only in their last bytes: they must spread over the stripes all the same. */
    answer_table_t *table = answer_table_new(N);
    for (size_t i = 0; i < 10 * N; i++)
        put_key(table, i, 1000);
    /* Capacity is split over the stripes, each rounded up: a stripe's worth over N at the most. */
    size_t held = count_held(table, 0, 10 * N);
    CHECK(held >= N && held <= N + STRIPES_AT_MOST);
    /* The oldest went first; the newest stay. */
    CHECK(count_held(table, 0, N) == 0);
    CHECK(count_held(table, 10 * N - N / 10, 10 * N) == N / 10);
    answer_table_free(table);

    /* Replacing a key takes no second entry: replacing half the keys many times evicts none of the others. */
    table = answer_table_new(N);
    for (size_t i = 0; i < N / 4; i++)
        put_key(table, i, 1000);
    for (int round = 1; round < 20; round++)
        for (size_t i = 0; i < N / 8; i++)
            put_key(table, i, 1000 + round);
    CHECK(count_held(table, 0, N / 4) == N / 4);
    answer_key_t key = key_of("key-7");
    answer_t got;
    CHECK(answer_table_get(table, &key, 0, &got) && got.until_ms == 1019);
    answer_table_free(table);
}

static void test_cache(void)
{
    answer_cache_t cache;
    CHECK(answer_cache_init(&cache, 8) == 0);
    answer_key_t alpha = key_of("alpha");
    answer_t put = answer_of(AUTH_IDENTIFIED, "alice@example.com", 1000);
    const answer_t *got;
    CHECK(answer_cache_get(&cache, &alpha, 0, 3) == NULL);
    answer_cache_put(&cache, &alpha, &put, 3);
    CHECK((got = answer_cache_get(&cache, &alpha, 999, 3)) != NULL);
    CHECK(got != NULL && got->kind == AUTH_IDENTIFIED && got->until_ms == 1000);
    CHECK_STR(got != NULL ? got->name : "", "alice@example.com");
    CHECK(answer_cache_get(&cache, &alpha, 1000, 3) == NULL);
    /* Put under another epoch (before a reload): gone. */
    CHECK(answer_cache_get(&cache, &alpha, 0, 4) == NULL);
    CHECK(answer_cache_get(&cache, &alpha, 0, 2) == NULL);

    /* Exact keys here too. */
    answer_key_t same_hash = alpha;
    same_hash.bytes[0] ^= 0x80;
    CHECK(answer_cache_get(&cache, &same_hash, 0, 3) == NULL);
    same_hash = alpha;
    same_hash.len++;
    CHECK(answer_cache_get(&cache, &same_hash, 0, 3) == NULL);

    /*
     * Set-associative: keys of one hash share a set of four slots and keep each
     * other, where the old direct-mapped cache let the second evict the first
     * (this failed there). A fifth replaces the one put longest ago, and a key
     * put again takes its own slot, never a second one.
     */
    answer_cache_put(&cache, &same_hash, &put, 3);
    CHECK(answer_cache_get(&cache, &same_hash, 0, 3) != NULL);
    CHECK(answer_cache_get(&cache, &alpha, 0, 3) != NULL);
    answer_key_t more[3];
    for (size_t i = 0; i < 3; i++) {
        more[i] = alpha;
        more[i].bytes[1 + i] ^= 0x40;
    }
    answer_cache_put(&cache, &more[0], &put, 3);
    answer_cache_put(&cache, &alpha, &(answer_t){.kind = AUTH_IDENTIFIED, .until_ms = 2000}, 3);
    answer_cache_put(&cache, &more[1], &put, 3);
    CHECK((got = answer_cache_get(&cache, &alpha, 0, 3)) != NULL && got->until_ms == 2000);
    CHECK(answer_cache_get(&cache, &same_hash, 0, 3) != NULL);
    CHECK(answer_cache_get(&cache, &more[0], 0, 3) != NULL);
    CHECK(answer_cache_get(&cache, &more[1], 0, 3) != NULL);
    answer_cache_put(&cache, &more[2], &put, 3); /* alpha was put first, but again since: same_hash goes */
    CHECK(answer_cache_get(&cache, &more[2], 0, 3) != NULL);
    CHECK((got = answer_cache_get(&cache, &alpha, 0, 3)) != NULL && got->until_ms == 2000);
    CHECK(answer_cache_get(&cache, &same_hash, 0, 3) == NULL);
    CHECK(answer_cache_get(&cache, &more[0], 0, 3) != NULL);
    CHECK(answer_cache_get(&cache, &more[1], 0, 3) != NULL);
    answer_cache_dispose(&cache);
}

/* --- 3. the token file --- */

static const char good_file[] =
    "[{\"token\": \"plain\", \"identity\": \"plain@example.com\"},\n"
    " {\"token\": \"zulu\", \"identity\": \"zulu@example.com\", \"expires\": \"2030-01-01T00:00:00Z\"},\n"
    " {\"token\": \"east\", \"identity\": \"east@example.com\", \"expires\": \"2030-01-01T01:30:00+01:30\"},\n"
    " {\"token\": \"west\", \"identity\": \"west@example.com\", \"expires\": \"2029-12-31T19:00:00-05:00\"},\n"
    " {\"token\": \"fraction\", \"identity\": \"fraction@example.com\", \"expires\": \"2030-01-01T00:00:00.750Z\"},\n"
    " {\"token\": \"lower\", \"identity\": \"lower@example.com\", \"expires\": \"2030-01-01t00:00:00z\"},\n"
    " {\"token\": \"unix\", \"identity\": \"unix@example.com\", \"expires\": 1893456000},\n"
    " {\"token\": \"null\", \"identity\": \"null@example.com\", \"expires\": null},\n"
    " {\"token\": \"past\", \"identity\": \"past@example.com\", \"expires\": \"2001-09-09T01:46:40Z\"}]\n";

/* What file answers for token at now_ms; kind -1 when it does not list it. */
static answer_t find(const token_file_t *file, token_hasher_t *hasher, const char *token, int64_t now_ms)
{
    const void *parts[] = {token};
    size_t lens[] = {strlen(token)};
    uint8_t hash[AUTH_HASH_LEN];
    answer_t answer = {.kind = (auth_kind_t)-1};
    CHECK(token_hasher_digest(hasher, parts, lens, 1, hash) == 0);
    if (!token_file_find(file, hash, now_ms, &answer))
        answer.kind = (auth_kind_t)-1;
    return answer;
}

static void test_token_file(token_hasher_t *hasher)
{
    char path[128], err[512];
    write_file(dir_path(path, "tokens.json"), good_file);
    token_file_t *file = token_file_load(path, hasher, err, sizeof(err));
    CHECK(file != NULL);
    if (file == NULL)
        return;
    CHECK(token_file_size(file) == 9);

    answer_t a = find(file, hasher, "plain", INT64_MAX - 1);
    CHECK(a.kind == AUTH_IDENTIFIED && a.expires_ms == 0);
    CHECK_STR(a.name, "plain@example.com");
    a = find(file, hasher, "null", T2030 * 1000);
    CHECK(a.kind == AUTH_IDENTIFIED && a.expires_ms == 0);

    /* Every spelling of the same instant (a fraction of a second is dropped, so expiring early). */
    static const char *const at_2030[] = {"zulu", "east", "west", "fraction", "lower", "unix"};
    for (size_t i = 0; i < sizeof(at_2030) / sizeof(at_2030[0]); i++) {
        char identity[64];
        snprintf(identity, sizeof(identity), "%s@example.com", at_2030[i]);
        a = find(file, hasher, at_2030[i], T2030 * 1000 - 1);
        CHECK(a.kind == AUTH_IDENTIFIED && a.expires_ms == T2030 * 1000);
        CHECK_STR(a.name, identity);
        a = find(file, hasher, at_2030[i], T2030 * 1000);
        CHECK(a.kind == AUTH_INVALID && a.name[0] == '\0');
    }
    a = find(file, hasher, "past", auth_now_ms());
    CHECK(a.kind == AUTH_INVALID && a.name[0] == '\0');

    /* Not listed: a token differing in case or length, or none. */
    CHECK(find(file, hasher, "Plain", 0).kind == (auth_kind_t)-1);
    CHECK(find(file, hasher, "plai", 0).kind == (auth_kind_t)-1);
    CHECK(find(file, hasher, "", 0).kind == (auth_kind_t)-1);
    token_file_free(file);

    /* An empty array is a file with no tokens. */
    write_file(path, "[]");
    file = token_file_load(path, hasher, err, sizeof(err));
    CHECK(file != NULL && token_file_size(file) == 0);
    CHECK(find(file, hasher, "plain", 0).kind == (auth_kind_t)-1);
    token_file_free(file);
}

static void test_token_file_errors(token_hasher_t *hasher)
{
    static const struct {
        const char *text;
        const char *says; /* besides auth.token_file and the path */
    } bad[] = {
        {"{\"token\": \"t\", \"identity\": \"i@example.com\"}", "expected a JSON array"},
        {"[{\"token\": \"t\", \"identity\": \"i@example.com\"}", ""}, /* not JSON */
        {"[{\"identity\": \"i@example.com\"}]", "entry 0"},
        {"[{\"token\": \"a\", \"identity\": \"a@example.com\"}, {\"identity\": \"b@example.com\"}]", "entry 1"},
        {"[{\"token\": \"\", \"identity\": \"i@example.com\"}]", "entry 0"},
        {"[{\"token\": \"t\", \"identity\": \"\"}]", "entry 0"},
        {"[{\"token\": \"t\"}]", "entry 0"},
        {"[{\"token\": 7, \"identity\": \"i@example.com\"}]", "entry 0"},
        {"[\"t\"]", "entry 0"},
        {"[{\"token\": \"a\", \"identity\": \"a@example.com\"}, {\"token\": \"b\", \"identity\": \"b@example.com\"},"
         " {\"token\": \"c\", \"identity\": \"c@example.com\", \"expires\": \"2026-13-01T00:00:00Z\"}]",
         "entry 2: \"expires\""},
        {"[{\"token\": \"t\", \"identity\": \"i@example.com\", \"expires\": \"tomorrow\"}]", "entry 0: \"expires\""},
        {"[{\"token\": \"t\", \"identity\": \"i@example.com\", \"expires\": \"2026-01-01T00:00:00\"}]",
         "entry 0: \"expires\""},
        {"[{\"token\": \"t\", \"identity\": \"i@example.com\", \"expires\": \"2026-01-01T00:00:00Zjunk\"}]",
         "entry 0: \"expires\""},
        {"[{\"token\": \"t\", \"identity\": \"i@example.com\", \"expires\": \"2026-01-00T00:00:00Z\"}]",
         "entry 0: \"expires\""},
        {"[{\"token\": \"t\", \"identity\": \"i@example.com\", \"expires\": -5}]", "entry 0: \"expires\""},
        {"[{\"token\": \"t\", \"identity\": \"i@example.com\", \"expires\": 1.5e9}]", "entry 0: \"expires\""},
        {"[{\"token\": \"t\", \"identity\": \"i@example.com\", \"expires\": true}]", "entry 0: \"expires\""},
        {"[{\"token\": \"t\", \"identity\": \"i@example.com\", \"expires\": \"2026-01-01T25:00:00Z\"}]",
         "entry 0: \"expires\""},
        /* One token, two identities: which one it names must not depend on a sort's order. */
        {"[{\"token\": \"t\", \"identity\": \"a@example.com\"}, {\"token\": \"t\", \"identity\": \"b@example.com\"}]",
         "listed more than once"},
    };
    char path[128], err[512];
    dir_path(path, "bad.json");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, bad[i].text);
        snprintf(err, sizeof(err), "(untouched)");
        token_file_t *file = token_file_load(path, hasher, err, sizeof(err));
        CHECK(file == NULL);
        token_file_free(file);
        CHECK(strncmp(err, "auth.token_file ", 16) == 0 && strstr(err, path) != NULL && strstr(err, bad[i].says));
        if (strstr(err, bad[i].says) == NULL)
            fprintf(stderr, "  bad file %zu: %s\n", i, err);
    }
    /* An identity too long for AUTH_IDENTITY_MAX. */
    char long_identity[AUTH_IDENTITY_MAX + 64];
    int n = snprintf(long_identity, sizeof(long_identity), "[{\"token\": \"t\", \"identity\": \"");
    memset(long_identity + n, 'i', AUTH_IDENTITY_MAX);
    snprintf(long_identity + n + AUTH_IDENTITY_MAX, sizeof(long_identity) - (size_t)n - AUTH_IDENTITY_MAX, "\"}]");
    write_file(path, long_identity);
    CHECK(token_file_load(path, hasher, err, sizeof(err)) == NULL && strstr(err, "entry 0") != NULL);
    unlink(path);
    /* And no file at all. */
    CHECK(token_file_load(path, hasher, err, sizeof(err)) == NULL && strstr(err, "auth.token_file") != NULL);
}

/* --- 4. auth end to end --- */

static char closed_url[] = "http://127.0.0.1:1/tokeninfo";
static char admin_name[] = "admin@example.com";
static char *admins[] = {admin_name};

static void fill_conf(conf_t *conf, char *tokeninfo_url, char *token_file, bool enabled)
{
    memset(conf, 0, sizeof(*conf));
    conf->auth.enabled = enabled;
    conf->auth.tokeninfo_url = tokeninfo_url;
    conf->auth.token_file = token_file;
    conf->auth.tokeninfo_timeout_ms = 2000;
    conf->auth.token_cache_entries = 1000;
    conf->auth.token_cache_ttl = 300;
    conf->auth.grant_ttl = 60;
    conf->auth.admins = admins;
    conf->auth.num_admins = 1;
}

/* A waiter that counts its callbacks; the test thread waits for them on called. */
typedef struct waiting {
    auth_waiter_t waiter; /* first: the callback finds its waiting_t from it */
    int calls;
} waiting_t;

static pthread_mutex_t called_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t called = PTHREAD_COND_INITIALIZER;

static void on_validated(auth_waiter_t *waiter)
{
    waiting_t *w = (waiting_t *)waiter;
    pthread_mutex_lock(&called_lock);
    w->calls++;
    pthread_cond_broadcast(&called);
    pthread_mutex_unlock(&called_lock);
}

static int calls_of(waiting_t *w)
{
    pthread_mutex_lock(&called_lock);
    int calls = w->calls;
    pthread_mutex_unlock(&called_lock);
    return calls;
}

/* Waits 30 s at most for w's callback; false if it never came. */
static bool await(waiting_t *w)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30;
    pthread_mutex_lock(&called_lock);
    int rc = 0;
    while (w->calls == 0 && rc == 0)
        rc = pthread_cond_timedwait(&called, &called_lock, &deadline);
    bool came = w->calls > 0;
    pthread_mutex_unlock(&called_lock);
    return came;
}

static auth_credentials_t credentials(const char *authorization, const char *access_token, const char *signature)
{
    return (auth_credentials_t){.authorization = authorization,
                                .authorization_len = authorization != NULL ? strlen(authorization) : 0,
                                .access_token = access_token,
                                .access_token_len = access_token != NULL ? strlen(access_token) : 0,
                                .signature = signature,
                                .signature_len = signature != NULL ? strlen(signature) : 0};
}

/* Starts identifying; when that needs a validation, w is its waiter and true is returned. */
static bool start_identify(auth_local_t *local, const char *authorization, const char *access_token, waiting_t *w)
{
    auth_credentials_t c = credentials(authorization, access_token, NULL);
    *w = (waiting_t){.waiter.cb = on_validated};
    return !auth_identify(local, &c, &w->waiter.identity, &w->waiter);
}

/* Who the credentials are on local, a validation awaited if needed; *waited says whether one was. */
static auth_identity_t identify(auth_local_t *local, const char *authorization, const char *access_token,
                                const char *signature, bool *waited)
{
    auth_credentials_t c = credentials(authorization, access_token, signature);
    waiting_t w = {.waiter.cb = on_validated};
    auth_identity_t id;
    *waited = !auth_identify(local, &c, &id, &w.waiter);
    if (!*waited)
        return id;
    CHECK(await(&w));
    auth_wait_cancel(local, &w.waiter); /* should it not have come, w must not be called once gone */
    return w.waiter.identity;
}

/* The identity of a request with just this Authorization header, told at once (no validation). */
static auth_identity_t header_now(auth_local_t *local, const char *authorization)
{
    bool waited;
    auth_identity_t id = identify(local, authorization, NULL, NULL, &waited);
    CHECK(!waited);
    return id;
}

static bool is(const auth_identity_t *id, auth_kind_t kind, const char *name)
{
    if (id->kind == kind && strcmp(id->name, name) == 0)
        return true;
    fprintf(stderr, "  identity: kind %d \"%s\", expected %d \"%s\"\n", (int)id->kind, id->name, (int)kind, name);
    return false;
}

static const char test_tokens[] =
    "[{\"token\": \"alice-token\", \"identity\": \"alice@example.com\"},\n"
    " {\"token\": \"bob-token\", \"identity\": \"bob@example.com\", \"expires\": \"2099-01-01T00:00:00Z\"},\n"
    " {\"token\": \"admin-token\", \"identity\": \"admin@example.com\"},\n"
    " {\"token\": \"old-token\", \"identity\": \"old@example.com\", \"expires\": 1000000000}]\n";

static void test_classify(auth_local_t *local)
{
    auth_identity_t id;
    bool waited;
    id = identify(local, NULL, NULL, NULL, &waited);
    CHECK(!waited && is(&id, AUTH_ANONYMOUS, ""));
    /* An empty bearer token, however spelt. */
    id = header_now(local, "Bearer ");
    CHECK(is(&id, AUTH_INVALID, ""));
    id = header_now(local, "Bearer");
    CHECK(is(&id, AUTH_INVALID, ""));
    id = header_now(local, "  bearer \t ");
    CHECK(is(&id, AUTH_INVALID, ""));
    id = identify(local, NULL, "", NULL, &waited);
    CHECK(!waited && is(&id, AUTH_INVALID, ""));
    /* What only upstream can check. */
    static const char *const others[] = {
        "AWS4-HMAC-SHA256 Credential=GOOG1EXAMPLE/20260101/auto/s3/aws4_request, SignedHeaders=host, Signature=abc",
        "GOOG4-HMAC-SHA256 Credential=GOOG1EXAMPLE/20260101/auto/storage/goog4_request, Signature=abc",
        "AWS GOOG1EXAMPLE:c2lnbmF0dXJl", "Basic dXNlcjpwYXNz", "Bearertoken", "alice-token"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        id = header_now(local, others[i]);
        CHECK(is(&id, AUTH_UNVERIFIABLE, ""));
    }
    id = identify(local, NULL, NULL, "c2lnbmF0dXJl", &waited);
    CHECK(!waited && is(&id, AUTH_UNVERIFIABLE, ""));
    /* A signature decides even beside a good token: the URL's signature is what upstream will judge. */
    id = identify(local, "Bearer alice-token", NULL, "c2lnbmF0dXJl", &waited);
    CHECK(!waited && is(&id, AUTH_UNVERIFIABLE, ""));
    id = identify(local, NULL, "alice-token", "c2lnbmF0dXJl", &waited);
    CHECK(!waited && is(&id, AUTH_UNVERIFIABLE, ""));
}

static void test_file_tokens(auth_local_t *local)
{
    auth_identity_t id;
    bool waited;
    static const char *const spellings[] = {"Bearer alice-token", "bearer alice-token", "BEARER alice-token",
                                            "  Bearer \t alice-token \t", "Bearer\talice-token"};
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        id = header_now(local, spellings[i]);
        CHECK(is(&id, AUTH_IDENTIFIED, "alice@example.com"));
    }
    id = identify(local, NULL, "alice-token", NULL, &waited);
    CHECK(!waited && is(&id, AUTH_IDENTIFIED, "alice@example.com"));
    /* The header wins over the query parameter. */
    id = identify(local, "Bearer bob-token", "alice-token", NULL, &waited);
    CHECK(!waited && is(&id, AUTH_IDENTIFIED, "bob@example.com"));
    id = header_now(local, "Bearer old-token");
    CHECK(is(&id, AUTH_INVALID, ""));
    /* Twice: the second answer comes from this thread's cache, and must say the same. */
    id = header_now(local, "Bearer old-token");
    CHECK(is(&id, AUTH_INVALID, ""));
    /* Tokens are case-sensitive, whatever the scheme's case. */
    id = identify(local, "Bearer ALICE-TOKEN", NULL, NULL, &waited);
    CHECK(waited && is(&id, AUTH_UNAVAILABLE, ""));
}

/* tokeninfo refuses connections: an unknown token cannot be checked, and that is not remembered. */
static void test_unreachable(auth_local_t *local, auth_local_t *other)
{
    auth_identity_t id;
    bool waited;
    id = identify(local, "Bearer unknown-token", NULL, NULL, &waited);
    CHECK(waited && is(&id, AUTH_UNAVAILABLE, ""));
    id = identify(local, "Bearer unknown-token", NULL, NULL, &waited);
    CHECK(waited && is(&id, AUTH_UNAVAILABLE, ""));
    id = identify(local, NULL, "unknown-token", NULL, &waited);
    CHECK(waited && is(&id, AUTH_UNAVAILABLE, ""));

    /* Two waiters, on two threads' locals, for one token: both are told. */
    waiting_t w1, w2;
    CHECK(start_identify(local, "Bearer another-token", NULL, &w1));
    CHECK(start_identify(other, "Bearer another-token", NULL, &w2));
    CHECK(await(&w1) && await(&w2));
    CHECK(is(&w1.waiter.identity, AUTH_UNAVAILABLE, "") && is(&w2.waiter.identity, AUTH_UNAVAILABLE, ""));
    CHECK(calls_of(&w1) == 1 && calls_of(&w2) == 1);
    /* Cancelling a waiter already told is a no-op. */
    auth_wait_cancel(local, &w1.waiter);
    CHECK(calls_of(&w1) == 1);
}

/* After a reload, a token taken out of the file is no longer known, even on a thread that had cached it. */
static void test_reload(auth_t *auth, auth_local_t *local, const char *path)
{
    auth_identity_t id = header_now(local, "Bearer bob-token");
    CHECK(is(&id, AUTH_IDENTIFIED, "bob@example.com"));
    write_file(path, "[{\"token\": \"alice-token\", \"identity\": \"alice@example.com\"},\n"
                     " {\"token\": \"carol-token\", \"identity\": \"carol@example.com\"}]\n");
    CHECK(auth_reload(auth) == 0);
    bool waited;
    id = identify(local, "Bearer bob-token", NULL, NULL, &waited);
    CHECK(waited && is(&id, AUTH_UNAVAILABLE, ""));
    id = header_now(local, "Bearer carol-token");
    CHECK(is(&id, AUTH_IDENTIFIED, "carol@example.com"));
    id = header_now(local, "Bearer alice-token");
    CHECK(is(&id, AUTH_IDENTIFIED, "alice@example.com"));

    /* A malformed file is refused whole: the one before stays (this logs an error). */
    write_file(path, "[{\"token\": \"dave-token\", \"identity\": \"dave@example.com\"}, {\"token\": \"x\"}]");
    CHECK(auth_reload(auth) == -1);
    id = header_now(local, "Bearer carol-token");
    CHECK(is(&id, AUTH_IDENTIFIED, "carol@example.com"));
    id = identify(local, "Bearer dave-token", NULL, NULL, &waited);
    CHECK(waited && is(&id, AUTH_UNAVAILABLE, ""));
}

static void test_admins(auth_local_t *local)
{
    auth_identity_t id = header_now(local, "Bearer admin-token");
    CHECK(is(&id, AUTH_IDENTIFIED, "admin@example.com") && auth_is_admin(local, &id));
    id = header_now(local, "Bearer alice-token");
    CHECK(!auth_is_admin(local, &id));
    CHECK(!auth_is_admin(local, &(auth_identity_t){.kind = AUTH_ANONYMOUS}));
    CHECK(!auth_is_admin(local, &(auth_identity_t){.kind = AUTH_INVALID, .name = "admin@example.com"}));
    CHECK(!auth_is_admin(local, &(auth_identity_t){.kind = AUTH_UNAVAILABLE, .name = "admin@example.com"}));
    CHECK(!auth_is_admin(local, &(auth_identity_t){.kind = AUTH_IDENTIFIED, .name = "admin@example.co"}));
    CHECK(!auth_is_admin(local, &(auth_identity_t){.kind = AUTH_IDENTIFIED, .name = "ADMIN@example.com"}));
    /* A valid token of the admin with too few scopes for storage is still the admin. */
    CHECK(auth_is_admin(local, &(auth_identity_t){.kind = AUTH_UNVERIFIABLE, .name = "admin@example.com"}));
}

static void test_grants(conf_t *conf, auth_local_t *local, auth_local_t *other)
{
    uint8_t object[AUTH_OBJECT_ID_LEN], another[AUTH_OBJECT_ID_LEN];
    for (size_t i = 0; i < AUTH_OBJECT_ID_LEN; i++)
        object[i] = (uint8_t)i, another[i] = (uint8_t)(i + 1);
    CHECK(!auth_grant_holds(local, "alice@example.com", object, 7));
    auth_grant_note(local, "alice@example.com", object, 7);
    CHECK(auth_grant_holds(local, "alice@example.com", object, 7));
    /* Another thread sees it through the shared table. */
    CHECK(auth_grant_holds(other, "alice@example.com", object, 7));
    CHECK(!auth_grant_holds(local, "alice@example.com", object, 8));
    CHECK(!auth_grant_holds(local, "alice@example.com", another, 7));
    CHECK(!auth_grant_holds(local, "bob@example.com", object, 7));
    CHECK(!auth_grant_holds(local, "alice@example.co", object, 7));
    CHECK(!auth_grant_holds(other, "alice@example.comm", object, 7));
    /* Nobody holds grants. */
    auth_grant_note(local, "", another, 1);
    CHECK(!auth_grant_holds(local, "", another, 1));

    /* A grant lasting no time has expired when looked at: grant_ttl is read at each note. */
    unsigned ttl = conf->auth.grant_ttl;
    conf->auth.grant_ttl = 0;
    auth_grant_note(local, "bob@example.com", another, 3);
    CHECK(!auth_grant_holds(local, "bob@example.com", another, 3));
    CHECK(!auth_grant_holds(other, "bob@example.com", another, 3));
    conf->auth.grant_ttl = ttl;
}

static void test_decisions(auth_local_t *local, auth_local_t *other)
{
    uint64_t totals[AUTH_DECISIONS];
    auth_decision_totals(local, totals);
    for (size_t i = 0; i < AUTH_DECISIONS; i++)
        CHECK(totals[i] == 0);
    auth_decision_count(local, AUTH_DECISION_OWNER);
    auth_decision_count(local, AUTH_DECISION_OWNER);
    auth_decision_count(local, AUTH_DECISION_GRANT);
    auth_decision_count(other, AUTH_DECISION_OWNER);
    for (int i = 0; i < 3; i++)
        auth_decision_count(other, AUTH_DECISION_DENIED);
    auth_decision_count(other, AUTH_DECISIONS); /* out of range: not counted */
    auth_decision_totals(other, totals);
    CHECK(totals[AUTH_DECISION_OWNER] == 3 && totals[AUTH_DECISION_GRANT] == 1 && totals[AUTH_DECISION_PUBLIC] == 0 &&
          totals[AUTH_DECISION_DENIED] == 3 && totals[AUTH_DECISION_UNAUTHENTICATED] == 0);
    CHECK_STR(auth_decision_name(AUTH_DECISION_OWNER), "owner");
    CHECK_STR(auth_decision_name(AUTH_DECISION_UNAUTHENTICATED), "unauthenticated");
    CHECK_STR(auth_decision_name(AUTH_DECISIONS), "?");
}

static void test_enabled(void)
{
    char path[128], err[512];
    write_file(dir_path(path, "auth_tokens.json"), test_tokens);
    conf_t conf;
    fill_conf(&conf, closed_url, path, true);
    auth_t *auth;
    CHECK(auth_open(&auth, &conf, err, sizeof(err)) == 0);
    if (auth == NULL) {
        fprintf(stderr, "  auth_open: %s\n", err);
        return;
    }
    CHECK(auth_enabled(auth));
    auth_local_t *local = auth_local_new(auth), *other = auth_local_new(auth);
    CHECK(local != NULL && other != NULL);
    test_classify(local);
    test_file_tokens(local);
    test_unreachable(local, other);
    test_admins(local);
    test_grants(&conf, local, other);
    test_decisions(local, other);
    test_reload(auth, local, path);
    auth_local_free(local);
    auth_local_free(other);
    auth_close(auth);

    /* A token file that does not load stops auth from opening. */
    write_file(path, "[{\"identity\": \"x@example.com\"}]");
    auth = (auth_t *)&conf; /* anything but NULL */
    CHECK(auth_open(&auth, &conf, err, sizeof(err)) == -1 && auth == NULL);
    CHECK(strstr(err, "auth.token_file") != NULL && strstr(err, "entry 0") != NULL);
    unlink(path);
}

/* auth.enabled false: identities are the credentials, as an HMAC; nothing is validated or granted. */
static void test_disabled(void)
{
    conf_t conf;
    fill_conf(&conf, closed_url, NULL, false);
    auth_t *auth;
    char err[512];
    CHECK(auth_open(&auth, &conf, err, sizeof(err)) == 0);
    if (auth == NULL)
        return;
    CHECK(!auth_enabled(auth));
    auth_local_t *a = auth_local_new(auth), *b = auth_local_new(auth);
    bool waited;
    auth_identity_t x = identify(a, "Bearer x", NULL, NULL, &waited);
    CHECK(!waited && x.kind == AUTH_IDENTIFIED && strncmp(x.name, "cred:", 5) == 0 && strlen(x.name) == 5 + 32);
    CHECK(strspn(x.name + 5, "0123456789abcdef") == 32);
    /* The same on another thread (one secret per instance), and different for any other credentials. */
    auth_identity_t again = identify(b, "Bearer x", NULL, NULL, &waited);
    CHECK(!waited && is(&again, AUTH_IDENTIFIED, x.name));
    static const struct {
        const char *authorization, *access_token, *signature;
    } others[] = {{"Bearer y", NULL, NULL}, {"bearer x", NULL, NULL}, {NULL, "x", NULL}, {NULL, "Bearer x", NULL},
                  {NULL, NULL, "Bearer x"}, {"Bearer x", "x", NULL}, {"Bearer x", NULL, "s"}, {"", NULL, NULL},
                  {NULL, "", NULL}, {NULL, NULL, ""}, {NULL, "t\n", "s"}, {NULL, "t", "\ns"},
                  {"AWS4-HMAC-SHA256 Credential=GOOG1EXAMPLE, Signature=abc", NULL, NULL}};
    enum { OTHERS = sizeof(others) / sizeof(others[0]) };
    auth_identity_t ys[OTHERS];
    for (size_t i = 0; i < OTHERS; i++) {
        ys[i] = identify(a, others[i].authorization, others[i].access_token, others[i].signature, &waited);
        CHECK(!waited && ys[i].kind == AUTH_IDENTIFIED && strncmp(ys[i].name, "cred:", 5) == 0);
        CHECK(strcmp(ys[i].name, x.name) != 0);
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(ys[i].name, ys[k].name) != 0);
    }
    auth_identity_t none = identify(a, NULL, NULL, NULL, &waited);
    CHECK(!waited && is(&none, AUTH_ANONYMOUS, ""));
    /* Grants are never held; a reload has nothing to read. */
    uint8_t object[AUTH_OBJECT_ID_LEN] = {1};
    auth_grant_note(a, x.name, object, 1);
    CHECK(!auth_grant_holds(a, x.name, object, 1));
    CHECK(auth_reload(auth) == 0);
    auth_local_free(a);
    auth_local_free(b);
    auth_close(auth);
}

/* --- a fake tokeninfo: what it answers each token, and what auth should make of that --- */

typedef struct reply {
    const char *token;
    const char *query; /* the token as tokeninfo gets it, escaped; NULL when the same */
    int status;
    const char *body;
    bool held;         /* answered only once the test opens the gate */
    auth_kind_t kind;  /* what auth makes of it */
    const char *name;
    bool remembered;
} reply_t;

#define READ_ONLY "https://www.googleapis.com/auth/devstorage.read_only"

static const reply_t replies[] = {
    {"good", NULL, 200,
     "{\"email\": \"good@example.com\", \"email_verified\": \"true\", \"scope\": \"openid " READ_ONLY "\","
     " \"expires_in\": \"3600\"}",
     false, AUTH_IDENTIFIED, "good@example.com", true},
    /* Escaped in the query, so the token's own '&' and '=' add no parameter. */
    {"good&access_token=evil", "good%26access_token%3Devil", 200,
     "{\"email\": \"escaped@example.com\", \"scope\": \"" READ_ONLY "\", \"expires_in\": 3600}", false,
     AUTH_IDENTIFIED, "escaped@example.com", true},
    {"subject", NULL, 200,
     "{\"sub\": \"1234567890\", \"scope\": \"https://www.googleapis.com/auth/cloud-platform\","
     " \"exp\": \"4102444800\"}",
     false, AUTH_IDENTIFIED, "1234567890", true},
    /* An unverified email names nobody: the subject does. */
    {"unverified", NULL, 200,
     "{\"email\": \"who@example.com\", \"email_verified\": \"false\", \"sub\": \"42\","
     " \"scope\": \"https://www.googleapis.com/auth/devstorage.full_control\"}",
     false, AUTH_IDENTIFIED, "42", true},
    /* Valid, but no scope to read storage with, or only names like one: upstream judges each read. */
    {"noscope", NULL, 200, "{\"email\": \"few@example.com\", \"email_verified\": true, \"scope\": \"openid email\"}",
     false, AUTH_UNVERIFIABLE, "few@example.com", true},
    {"lookalike", NULL, 200, "{\"email\": \"like@example.com\", \"scope\": \"" READ_ONLY "x " READ_ONLY "/x\"}",
     false, AUTH_UNVERIFIABLE, "like@example.com", true},
    {"nobody", NULL, 200, "{\"scope\": \"" READ_ONLY "\"}", false, AUTH_UNVERIFIABLE, "", true},
    {"expired", NULL, 200,
     "{\"email\": \"late@example.com\", \"scope\": \"" READ_ONLY "\", \"exp\": \"1000000000\"}", false,
     AUTH_INVALID, "", true},
    {"bad", NULL, 400, "{\"error\": \"invalid_token\"}", false, AUTH_INVALID, "", true},
    /* tokeninfo failing, or not tokeninfo at all: not the token's fault, so not remembered. */
    {"down", NULL, 503, "{}", false, AUTH_UNAVAILABLE, "", false},
    /* Rate limited or too slow: valid tokens must not be turned away as invalid for 10 s. */
    {"limited", NULL, 429, "{}", false, AUTH_UNAVAILABLE, "", false},
    {"junk", NULL, 200, "<html>not tokeninfo</html>", false, AUTH_UNAVAILABLE, "", false},
    {"held", NULL, 200, "{\"email\": \"held@example.com\", \"scope\": \"" READ_ONLY "\"}", true,
     AUTH_IDENTIFIED, "held@example.com", true},
};

typedef struct tokeninfo {
    int fd;
    pthread_t thread;
    char url[64];
    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t gate;
    bool open, stop;
    int asked;
} tokeninfo_t;

static const reply_t *reply_for(const char *request)
{
    static const reply_t unknown = {"", NULL, 400, "{\"error\": \"invalid_token\"}", false, AUTH_INVALID, "", true};
    const char *token = strstr(request, "access_token=");
    if (token == NULL)
        return &unknown;
    token += strlen("access_token=");
    size_t len = strcspn(token, " &");
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        const char *query = replies[i].query != NULL ? replies[i].query : replies[i].token;
        if (strlen(query) == len && memcmp(query, token, len) == 0)
            return &replies[i];
    }
    return &unknown;
}

static void serve(tokeninfo_t *t, int conn)
{
    char request[8192];
    size_t len = 0;
    request[0] = '\0';
    while (strstr(request, "\r\n\r\n") == NULL && len < sizeof(request) - 1) {
        ssize_t n = recv(conn, request + len, sizeof(request) - 1 - len, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
        request[len] = '\0';
    }
    const reply_t *r = reply_for(request);
    pthread_mutex_lock(&t->lock);
    t->asked++;
    while (r->held && !t->open && !t->stop)
        pthread_cond_wait(&t->gate, &t->lock);
    pthread_mutex_unlock(&t->lock);
    char response[1024];
    int n = snprintf(response, sizeof(response),
                     "HTTP/1.1 %d Whatever\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     r->status, strlen(r->body), r->body);
    for (int sent = 0, k; sent < n; sent += k)
        if ((k = (int)send(conn, response + sent, (size_t)(n - sent), MSG_NOSIGNAL)) <= 0)
            break;
}

/* One connection at a time: enough for one validation thread, and a held answer holds every other. */
static void *tokeninfo_main(void *arg)
{
    tokeninfo_t *t = arg;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        bool stop = t->stop;
        pthread_mutex_unlock(&t->lock);
        if (stop)
            return NULL;
        struct pollfd p = {.fd = t->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int conn = accept(t->fd, NULL, NULL);
        if (conn >= 0) {
            serve(t, conn);
            close(conn);
        }
    }
}

static int tokeninfo_start(tokeninfo_t *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->gate, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addr_len = sizeof(addr);
    t->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (t->fd < 0 || bind(t->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(t->fd, 16) != 0 ||
        getsockname(t->fd, (struct sockaddr *)&addr, &addr_len) != 0 ||
        pthread_create(&t->thread, NULL, tokeninfo_main, t) != 0) {
        if (t->fd >= 0)
            close(t->fd);
        return -1;
    }
    snprintf(t->url, sizeof(t->url), "http://127.0.0.1:%d/tokeninfo", ntohs(addr.sin_port));
    return 0;
}

static void tokeninfo_stop(tokeninfo_t *t)
{
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_broadcast(&t->gate);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    close(t->fd);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->gate);
}

static int asked(tokeninfo_t *t)
{
    pthread_mutex_lock(&t->lock);
    int n = t->asked;
    pthread_mutex_unlock(&t->lock);
    return n;
}

static void open_gate(tokeninfo_t *t)
{
    pthread_mutex_lock(&t->lock);
    t->open = true;
    pthread_cond_broadcast(&t->gate);
    pthread_mutex_unlock(&t->lock);
}

/* What tokeninfo's answers become, and which of them are remembered. */
static void test_tokeninfo_answers(tokeninfo_t *t, auth_local_t *local, auth_local_t *other)
{
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        const reply_t *r = &replies[i];
        if (r->held)
            continue;
        char authorization[128];
        snprintf(authorization, sizeof(authorization), "Bearer %s", r->token);
        int before = asked(t);
        bool waited;
        auth_identity_t id = identify(local, authorization, NULL, NULL, &waited);
        CHECK(waited && is(&id, r->kind, r->name) && asked(t) == before + 1);
        /* Remembered: told at once from then on, on this thread (its cache) and another (the shared table). */
        for (int again = 0; again < 2; again++) {
            id = identify(again == 0 ? local : other, authorization, NULL, NULL, &waited);
            CHECK(waited == !r->remembered && is(&id, r->kind, r->name));
        }
        id = identify(local, NULL, r->token, NULL, &waited);
        CHECK(waited == !r->remembered && is(&id, r->kind, r->name));
        CHECK(asked(t) == before + (r->remembered ? 1 : 4));
    }
}

/* Waiters for one token share one question; a cancelled one is never called. */
static void test_tokeninfo_waiters(tokeninfo_t *t, auth_local_t *local, auth_local_t *other)
{
    int before = asked(t);
    waiting_t w1, w2, w3, w4;
    CHECK(start_identify(local, "Bearer held", NULL, &w1));
    CHECK(start_identify(other, "bearer held", NULL, &w2));
    CHECK(start_identify(local, NULL, "held", &w3));
    CHECK(start_identify(other, "Bearer held", NULL, &w4));
    auth_wait_cancel(local, &w3.waiter);
    auth_wait_cancel(other, &w4.waiter);
    auth_wait_cancel(other, &w4.waiter); /* twice: still a no-op */
    CHECK(calls_of(&w1) == 0 && calls_of(&w2) == 0);
    open_gate(t);
    CHECK(await(&w1) && await(&w2));
    CHECK(is(&w1.waiter.identity, AUTH_IDENTIFIED, "held@example.com"));
    CHECK(is(&w2.waiter.identity, AUTH_IDENTIFIED, "held@example.com"));
    /* The callbacks all run in one go, so those cancelled would have been called by now. */
    CHECK(calls_of(&w1) == 1 && calls_of(&w2) == 1 && calls_of(&w3) == 0 && calls_of(&w4) == 0);
    CHECK(asked(t) == before + 1);
    auth_identity_t id = header_now(local, "Bearer held");
    CHECK(is(&id, AUTH_IDENTIFIED, "held@example.com"));
}

static void test_tokeninfo(void)
{
    tokeninfo_t t;
    CHECK(tokeninfo_start(&t) == 0);
    if (t.url[0] == '\0')
        return;
    /* A slow sanitized build must not time out a validation the test holds on purpose. */
    conf_t conf;
    fill_conf(&conf, t.url, NULL, true);
    conf.auth.tokeninfo_timeout_ms = 20000;
    auth_t *auth;
    char err[512];
    CHECK(auth_open(&auth, &conf, err, sizeof(err)) == 0);
    if (auth == NULL) {
        tokeninfo_stop(&t);
        return;
    }
    auth_local_t *local = auth_local_new(auth), *other = auth_local_new(auth);
    test_tokeninfo_answers(&t, local, other);
    test_tokeninfo_waiters(&t, local, other);
    auth_local_free(local);
    auth_local_free(other);
    auth_close(auth);

    /* Closing while a validation still waits for tokeninfo drops it: its waiter is never called. */
    CHECK(auth_open(&auth, &conf, err, sizeof(err)) == 0);
    if (auth != NULL) {
        pthread_mutex_lock(&t.lock);
        t.open = false;
        pthread_mutex_unlock(&t.lock);
        local = auth_local_new(auth);
        waiting_t w;
        int before = asked(&t);
        CHECK(start_identify(local, "Bearer held", NULL, &w));
        for (int i = 0; i < 2000 && asked(&t) == before; i++)
            usleep(10 * 1000); /* until tokeninfo has the question: the transfer is under way */
        CHECK(asked(&t) == before + 1);
        auth_local_free(local);
        auth_close(auth);
        CHECK(calls_of(&w) == 0);
    }
    tokeninfo_stop(&t);
}

int main(void)
{
    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
    snprintf(dir, sizeof(dir), "/tmp/test_auth_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);

    test_hash();
    test_table_keys();
    test_table_bound();
    test_cache();
    uint8_t secret[TOKEN_KEY_LEN] = {42};
    token_hasher_t hasher;
    CHECK(token_hasher_init(&hasher, secret) == 0);
    test_token_file(&hasher);
    test_token_file_errors(&hasher);
    token_hasher_dispose(&hasher);
    test_enabled();
    test_disabled();
    test_tokeninfo();

    char path[128];
    unlink(dir_path(path, "tokens.json"));
    CHECK(rmdir(dir) == 0);
    curl_global_cleanup();
    UNIT_DONE();
}
