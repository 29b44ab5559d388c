"""test_auth.py - per-user access control (issue 7): who may be served what from the cache.

larder derives an identity for every request: none (anonymous), the email a
bearer token (header or ?access_token=) stands for (tokeninfo, or
auth.token_file), or "unverifiable" (signed URLs, HMAC). The identity whose
read filled a generation owns it: its reads of a fresh entry are hits with no
upstream request. Anyone else is asked about upstream, with their own
credentials; what upstream allows is remembered as a grant for auth.grant_ttl,
what it refuses goes back exactly as upstream said it.

The witnesses are those of test_cache.py: the same request sent straight to the
emulator (what GCS would have answered: status, body, headers), the emulator's
request log (what went upstream, and under whose identity; read cheaply with
/_emu/counters?since=), and larder's access log (identity, access decision,
cache state). Every test names the threat it covers in a "threat:" line.

Nothing here waits for a sleep to end in time: where a test sleeps (a grant or
a token running out), waiting longer can only make the assertion truer, and
polls (a SIGHUP reload) are bounded and wait for an event.

Tokens are distinctive strings ("tok-owner-7f3a", ...) registered at the
emulator in setUp, so that larder's log can be searched for every one of them
(tearDown does, after every test).

On the code before this issue (the exact-credential rule, f207f76, run with the
"auth" settings left out) 225 subtests fail: among them, an invalid token reads
a public object's bytes as a HIT, a rotated token of the owner's is revalidated
rather than a HIT, tokeninfo down still serves bytes, and /_larder/stats is
open to everyone.

The file takes about 50 s on an idle 2-core machine; the matrix (three times
315 cells, each a request to larder and the same one to the emulator) is about
20 s of it.
"""

import collections
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only: its test classes are not collected here)

MiB, CHUNK = tc.MiB, tc.CHUNK
OWNER_EMAIL, READER_EMAIL, OTHER_EMAIL = tc.OWNER_EMAIL, tc.READER_EMAIL, tc.OTHER_EMAIL
SVC_EMAIL = "svc@example.com"
VHOST_SUFFIX = tc.VHOST_SUFFIX

TOK_OWNER = "tok-owner-7f3a"
TOK_OWNER2 = "tok-owner2-91c4"    # a second token of owner@ (rotation)
TOK_READER = "tok-reader-c91e"
TOK_OTHER = "tok-other-5d2b"
TOK_INVALID = "tok-invalid-0e77"  # never issued
TOK_EXPIRED = "tok-expired-a4c8"  # owner@'s, expired a minute ago
TOK_OWNER3 = "tok-owner3-2b6d"    # issued by test_rotation_keeps_hits only
TOK_SHORT = "tok-short-8e15"      # owner@'s, expiring a few seconds after issue
TOK_FRESH = ["tok-fresh-%d-c3f9" % i for i in range(4)]  # never validated before a fail-closed test
TOK_SVC = "tok-svc-b1f0"          # the token-file tokens, svc@
TOK_SVC_EPOCH = "tok-svc-epoch-6a2d"
TOK_SVC_RFC = "tok-svc-rfc-0c57"
TOK_SVC_OLD = "tok-svc-old-f48e"
TOK_SVC_NEW = "tok-svc-new-93b1"
ALL_TOKENS = [TOK_OWNER, TOK_OWNER2, TOK_READER, TOK_OTHER, TOK_INVALID, TOK_EXPIRED, TOK_OWNER3, TOK_SHORT,
              TOK_SVC, TOK_SVC_EPOCH, TOK_SVC_RFC, TOK_SVC_OLD, TOK_SVC_NEW] + TOK_FRESH

# The tokens setUp issues at the emulator (reset drops them before every test).
ISSUED = {TOK_OWNER: OWNER_EMAIL, TOK_OWNER2: OWNER_EMAIL, TOK_READER: READER_EMAIL, TOK_OTHER: OTHER_EMAIL,
          TOK_EXPIRED: {"email": OWNER_EMAIL, "expires_in": -60}}


def bearer(token):
    return {"Authorization": "Bearer " + token}


OWNER = bearer(TOK_OWNER)
OWNER2 = bearer(TOK_OWNER2)
READER = bearer(TOK_READER)
OTHER = bearer(TOK_OTHER)
INVALID = bearer(TOK_INVALID)
EXPIRED = bearer(TOK_EXPIRED)

ACCESS_VALUES = {"owner", "grant", "public", "denied", "unauthenticated"}
# Headers that state facts about an object: never on an answer where upstream's is an error.
FACT_HEADERS = ("etag", "x-goog-generation", "x-goog-metageneration", "x-goog-hash", "x-goog-stored-content-length",
                "x-goog-stored-content-encoding", "last-modified", "content-range")


class Who:
    """A caller. role: owner, reader (a grantee), stranger, anonymous, invalid (a bad or expired token),
    unverifiable (HMAC or signed-URL credentials: email is what the emulator maps the key id to)."""

    def __init__(self, name, role, token=None, email=None):
        self.name, self.role, self.token, self.email = name, role, token, email

    @property
    def headers(self):
        return bearer(self.token) if self.token else {}

    @property
    def label(self):
        """How the emulator's log names the identity of a request made with these credentials."""
        if self.role == "unverifiable" and self.email is None:
            return "invalid"  # an access key id the emulator does not know
        return {"anonymous": "anonymous", "invalid": "invalid"}.get(self.role, self.email)

    @property
    def logged(self):
        """The "identity" larder's access log must give."""
        return self.email if self.role not in ("anonymous", "invalid") else ""

    def may_read(self, kind):
        return (self.role == "owner" or (self.role == "reader" and kind in ("shared", "public"))
                or (self.role in ("stranger", "anonymous") and kind == "public"))


W_OWNER = Who("owner", "owner", TOK_OWNER, OWNER_EMAIL)
W_OWNER2 = Who("owner2", "owner", TOK_OWNER2, OWNER_EMAIL)
W_READER = Who("reader", "reader", TOK_READER, READER_EMAIL)
W_OTHER = Who("other", "stranger", TOK_OTHER, OTHER_EMAIL)
W_ANON = Who("anonymous", "anonymous")
W_INVALID = Who("invalid", "invalid", TOK_INVALID)
W_EXPIRED = Who("expired", "invalid", TOK_EXPIRED)
# Anonymous before reader and other: after an anonymous read the public object is known public.
MATRIX_WHO = (W_OWNER, W_OWNER2, W_ANON, W_READER, W_OTHER, W_INVALID, W_EXPIRED)
VALIDATED_BY_TOKENINFO = {TOK_OWNER, TOK_OWNER2, TOK_READER, TOK_OTHER}

POLICY_BUCKET = "auth-policies"
PREFIX = {"always": "always/", "ttl": "ttl/", "immutable": "imm/"}
POLICY_RULES = [{"bucket": POLICY_BUCKET, "prefix": "always/", "policy": "always"},
                {"bucket": POLICY_BUCKET, "prefix": "ttl/", "policy": "ttl:3600"},
                {"bucket": POLICY_BUCKET, "prefix": "imm/", "policy": "immutable"}]
OBJECT_KINDS = (("private", []), ("shared", [READER_EMAIL]), ("public", ["allUsers"]))
SIZE = 3 * MiB
SPAN = "bytes=%d-%d" % (CHUNK - 1000, 2 * CHUNK + 999)  # crosses two chunk boundaries


def closed_port_url():
    """An http URL on which nothing listens (a port just bound and released)."""
    return "http://127.0.0.1:%d" % harness.free_port()


def auth_config(upstream, store=None, **auth):
    """larder's configuration for these tests: tokens validated at the emulator, owner@ an admin,
    the three policies by prefix in POLICY_BUCKET, immutable elsewhere."""
    settings = {"tokeninfo_url": upstream + "/tokeninfo", "admins": [OWNER_EMAIL], "grant_ttl": 600,
                "token_cache_ttl": 3600}
    settings.update(auth)
    cfg = {"auth": settings, "cache": {"enabled": True, "default_policy": "immutable", "policies": POLICY_RULES}}
    if store is not None:
        cfg["store"] = {"path": store}
    return cfg


class Route:
    """One way to read an object; expect: the emulator's status for a caller who may read it."""

    def __init__(self, label, api, method, path, expect, headers=None, host=None):
        self.label, self.api, self.method, self.path = label, api, method, path
        self.expect, self.headers, self.host = expect, dict(headers or {}), host


class Obj:
    def __init__(self, kind, bucket, name, resource, data, xml_etag):
        self.kind, self.bucket, self.name, self.data = kind, bucket, name, data
        self.generation = int(resource["generation"])
        self.json_etag = resource["etag"]
        self.xml_etag = xml_etag

    def routes(self):
        q = harness.quote_object(self.name)
        media = "/storage/v1/b/%s/o/%s?alt=media" % (self.bucket, q)
        meta = "/storage/v1/b/%s/o/%s" % (self.bucket, q)
        xml = "/%s/%s" % (self.bucket, urllib.parse.quote(self.name, safe="/"))
        vhost = "%s.%s" % (self.bucket, VHOST_SUFFIX)
        gen = self.generation
        # Across two chunk boundaries where the object has them; inside it in any case.
        span = SPAN if len(self.data) > 2 * CHUNK + 1000 else "bytes=100-%d" % (len(self.data) // 2)
        return [  # JSON media first: it is the read that earns a grant
            Route("json media", "json", "GET", media, 200),
            Route("download", "json", "GET", "/download" + media, 200),
            Route("json metadata", "json", "GET", meta, 200),
            Route("xml GET", "xml", "GET", xml, 200),
            Route("xml HEAD", "xml", "HEAD", xml, 200),
            Route("vhost GET", "xml", "GET", "/" + urllib.parse.quote(self.name, safe="/"), 200, host=vhost),
            Route("json Range", "json", "GET", media, 206, {"Range": span}),
            Route("xml Range", "xml", "GET", xml, 206, {"Range": span}),
            Route("If-None-Match right", "json", "GET", media, 304, {"If-None-Match": self.json_etag}),
            Route("If-None-Match wrong", "json", "GET", media, 200, {"If-None-Match": '"nope"'}),
            Route("xml If-None-Match right", "xml", "GET", xml, 304, {"If-None-Match": self.xml_etag}),
            Route("ifGenerationMatch right", "json", "GET", media + "&ifGenerationMatch=%d" % gen, 200),
            Route("ifGenerationMatch wrong", "json", "GET", media + "&ifGenerationMatch=%d" % (gen + 1), 412),
            Route("If-Range", "json", "GET", media, 206, {"Range": span, "If-Range": self.json_etag}),
            Route("generation", "json", "GET", media + "&generation=%d" % gen, 200),
        ]


class AuthCase(tc.CacheTestCase):
    """One emulator and one larder for the class, configured by auth_config."""

    auth_settings = {}

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="larder-it-")
        cls.ca = harness.TestCA(cls.workdir)
        cls.emulator = harness.Emulator(cls.workdir)
        cls.validated = set()  # tokens larder has had a chance to validate (and cache)
        try:
            cls.larder = harness.Larder(cls.workdir, cls.emulator.base_url, cls.ca,
                                        config=auth_config(cls.emulator.base_url, **cls.auth_settings))
        except Exception:
            cls.emulator.stop()
            raise

    def setUp(self):
        super().setUp()
        self.emulator.control("POST", "tokens", ISSUED)
        self.emulator.create_bucket(POLICY_BUCKET)
        self.addCleanup(self.emulator.clear_faults)
        self.expected_access = []  # (method, redacted path, logged identity, allowed access values)

    def tearDown(self):
        # threat: the log hands out the credentials of everyone who used larder (after every test, so
        # that each test's own tokens are covered, whichever order the tests run in)
        for larder in getattr(self, "started", None) or [self.larder]:
            if larder is not None:
                self.assertNoTokenInLog(larder)
        super().tearDown()

    # -- witnesses ---------------------------------------------------------

    def mark(self):
        return self.emulator.control("GET", "counters?since=%d" % (1 << 62))["seq"]

    def upstream_since(self, mark, kinds=None):
        entries = self.emulator.control("GET", "counters?since=%d" % mark)["log"]
        return [e for e in entries if kinds is None or e["kind"] in kinds]

    def api_since(self, mark):
        """Upstream requests since mark, token validations left out."""
        return [e for e in self.upstream_since(mark) if e["kind"] != "tokeninfo"]

    def tokeninfo_since(self, mark, token=None):
        return [e for e in self.upstream_since(mark, ("tokeninfo",)) if token is None or token in e["path"]]

    def ask(self, path, headers=None, method="GET", host=None, timeout=60):
        return self.get(path, headers, method=method, host=host, timeout=timeout)

    def direct_as(self, path, headers=None, method="GET", host=None):
        """The same request straight to the emulator (Host included)."""
        return tc.http_request(self.emulator.port, method, path, headers, host=host)

    def expect_access(self, method, path, who, allowed):
        self.expected_access.append((method, tc.redact(path), who.logged, frozenset(allowed)))

    # -- objects -----------------------------------------------------------

    def make_object(self, kind, name, bucket=None, readers=(), size=SIZE, seed=0):
        bucket = bucket or self.bucket
        resource = self.put_object(name, size=size, seed=seed, bucket=bucket, readers=list(readers))
        data = self.direct_as("/storage/v1/b/%s/o/%s?alt=media" % (bucket, harness.quote_object(name)), OWNER).body
        self.assertEqual(len(data), size)
        xml_etag = self.direct_as("/%s/%s" % (bucket, urllib.parse.quote(name, safe="/")), OWNER, "HEAD").header("etag")
        return Obj(kind, bucket, name, resource, data, xml_etag)

    def warm(self, obj, who=W_OWNER):
        """The owner's reads that fill the object's views: JSON media, JSON metadata, XML GET."""
        routes = {r.label: r for r in obj.routes()}
        for label in ("json media", "json metadata", "xml GET"):
            route = routes[label]
            r = self.ask(route.path, who.headers)
            self.assertEqual(r.status, 200, "%s warming %s: %r" % (who.name, label, r))
            self.expect_access("GET", route.path, who, {"owner", "public"} if obj.kind == "public" else {"owner"})
        self.settle()

    # -- reading and comparing -------------------------------------------

    def routes_of(self, obj, *labels):
        return [r for r in obj.routes() if not labels or r.label in labels]

    def compare(self, obj, who, route, what, extra_headers=None):
        """larder's answer, then the emulator's to the same request; returns (got, want, upstream)."""
        headers = dict(who.headers, **route.headers)
        headers.update(extra_headers or {})
        mark = self.mark()
        got = self.ask(route.path, headers, route.method, route.host)
        seen = self.upstream_since(mark)
        want = self.direct_as(route.path, headers, route.method, route.host)
        self.assertEqual(got.status, want.status, "%s: status (larder %r, emulator %r)" % (what, got, want))
        self.assertSameAnswer(got, want, what)
        if want.status >= 400:
            self.assertNoFacts(got, want, obj, what)
        api = [e for e in seen if e["kind"] != "tokeninfo"]
        self.assertEqual([e["identity"] for e in api if e["identity"] != who.label], [],
                         "%s: upstream asked as someone else: %r" % (what, api))
        return got, want, api

    def owner_hits_everywhere(self, obj, who, what):
        """Every route, read by who (an owner's token): HITs, no upstream request but token validation."""
        for route in obj.routes():
            label = "%s: %s, %s" % (what, who.name, route.label)
            with self.subTest(label):
                got, _, api = self.compare(obj, who, route, label)
                self.assertEqual((got.x_cache, api), ("HIT", []), label)
                self.expect_access(route.method, route.path, who, {"owner", "public"} if obj.kind == "public"
                                   else {"owner"})

    # -- assertions --------------------------------------------------------

    def assertNoFacts(self, got, want, obj, what):
        """An answer standing for upstream's error (want; None: an answer upstream never gave) carries
        nothing about the object."""
        for name in FACT_HEADERS:
            if want is None or want.header(name) is None:
                self.assertIsNone(got.header(name), "%s: %s on an error answer" % (what, name))
        self.assertLess(len(got.body), 64 * 1024, "%s: an error with a body of %d bytes" % (what, len(got.body)))
        middle = len(obj.data) // 2
        for sample in (obj.data[:64], obj.data[middle:middle + 64], obj.data[-64:]):
            self.assertEqual(len(sample), 64, "%s: the test's object is too small to sample" % what)
            self.assertNotIn(sample, got.body, "%s: the object's bytes in an error answer" % what)

    def assertInvalidCredentials(self, got, api, method, what):
        self.assertEqual(got.status, 401, "%s: %r" % (what, got))
        if method == "HEAD":
            return
        if api == "json":
            err = json.loads(got.body)["error"]
            self.assertEqual((err["code"], err["errors"][0]["reason"], err["message"]),
                             (401, "authError", "Invalid Credentials"), what)
        else:
            self.assertTrue(got.body.startswith(b"<?xml"), "%s: %r" % (what, got.body[:200]))
            self.assertIn(b"<Code>AuthenticationRequired</Code>", got.body, what)

    def assertGcsShaped(self, got, api, method, status, what):
        """status, with an error body in the route's API shape (none for HEAD)."""
        self.assertEqual(got.status, status, "%s: %r" % (what, got))
        if method == "HEAD":
            return
        if api == "json":
            self.assertGcsJsonError(got.status, got.body, status)
        else:
            self.assertGcsXmlError(got.status, got.body, status)

    def assertNoTokenInLog(self, larder=None, tokens=ALL_TOKENS):
        log = (larder or self.larder).read_log()
        self.assertTrue(log, "larder's log is empty: nothing to check")
        for token in tokens:
            self.assertNotIn(token, log, "a token is in larder's log")

    def assertAccessLogged(self, larder=None):
        """Every request recorded by expect_access has an access-log line with its identity and one of
        its allowed decisions (lines matched per method, path and identity; log lines may lag)."""
        larder = larder or self.larder
        expected = collections.defaultdict(list)
        for method, path, identity, allowed in self.expected_access:
            expected[(method, path, identity)].append(allowed)
        deadline = time.monotonic() + 3
        while True:
            logged = collections.defaultdict(list)
            for e in larder.access_log():
                key = (e["method"], e["path"], e.get("identity") or "")
                if (e["method"], e["path"]) in {(m, p) for m, p, _ in expected}:
                    logged[key].append(e.get("access"))
            wrong = {}
            for key, sets in expected.items():
                values = collections.Counter(logged.get(key, []))
                for allowed in sorted(sets, key=len):  # narrowest first: the sets used here nest
                    match = next((v for v in sorted(allowed) if values[v] > 0), None)
                    if match is None:
                        break
                    values[match] -= 1
                if match is None or +values:  # a request without its line, or a line too many
                    wrong[key] = (sorted(map(sorted, sets)), logged.get(key, []))
            extra = {key: values for key, values in logged.items() if key not in expected}
            if not wrong and not extra:
                return
            if time.monotonic() > deadline:
                self.fail("access log vs expectations (method, path, identity): expected-vs-logged %r; lines "
                          "with identities never used on those paths %r" % (wrong, extra))
            time.sleep(0.1)


# ==========================================================================
# Section 4 of the issue: the matrix
# ==========================================================================

class MatrixTest(AuthCase):
    """Every (policy, object, route, identity), in one larder with the three policies by prefix."""

    def run_matrix(self, policy):
        objects = []
        for i, (kind, readers) in enumerate(OBJECT_KINDS):
            name = "%s%s-%s.bin" % (PREFIX[policy], self._testMethodName, kind)
            objects.append(self.make_object(kind, name, POLICY_BUCKET, readers, seed=10 * len(policy) + i))
        for obj in objects:
            self.warm(obj)
        for obj in objects:
            earned = set()  # names of the callers with an allowed read of obj so far
            for who in MATRIX_WHO:
                for route in obj.routes():
                    what = "%s %s, %s, %s" % (policy, obj.kind, who.name, route.label)
                    with self.subTest(what):
                        self.check_cell(policy, obj, who, route, earned, what)
        with self.subTest("%s: access log" % policy):
            self.assertAccessLogged()
        self.assertLogAgrees()

    def check_cell(self, policy, obj, who, route, earned, what):
        headers = dict(who.headers, **route.headers)
        mark = self.mark()
        got = self.ask(route.path, headers, route.method, route.host)
        seen = self.upstream_since(mark)
        want = self.direct_as(route.path, headers, route.method, route.host)
        allowed = who.may_read(obj.kind)
        # The test's premise: the emulator answers as the ACLs say.
        if allowed:
            self.assertEqual(want.status, route.expect, "%s: the emulator disagrees with the test: %r" % (what, want))
        else:
            self.assertIn(want.status, (401, 403), "%s: the emulator disagrees with the test: %r" % (what, want))
        if who.role == "owner":
            access = {"owner", "public"} if obj.kind == "public" else {"owner"}
        elif who.role == "invalid":
            access = {"unauthenticated"}
        elif not allowed:
            access = {"denied", "unauthenticated"} if who.role == "anonymous" else {"denied"}
        elif obj.kind == "public":
            access = {"public"} if who.role == "anonymous" else {"public", "grant"}
        else:
            access = {"grant"}
        self.expect_access(route.method, route.path, who, access)

        # threat: a caller gets bytes, or facts, upstream would not give it; upstream's own answer is altered
        self.assertEqual(got.status, want.status, "%s: status (larder %r, emulator %r)" % (what, got, want))
        self.assertSameAnswer(got, want, what)
        if want.status >= 400:
            self.assertNoFacts(got, want, obj, what)
        if not allowed:
            self.assertNotIn(got.x_cache, ("HIT", "REVALIDATED"), "%s: a refusal served from the cache" % what)
            if who.role == "invalid":
                # threat: a bad or expired token is treated as anonymous, or as the identity it once stood for
                self.assertInvalidCredentials(got, route.api, route.method, what)
            else:
                # threat: larder words a refusal its own way (and so tells cached from not)
                self.assertEqual(got.body, want.body, "%s: the refusal is not upstream's own" % what)

        # threat: larder asks upstream with someone else's credentials (confused deputy)
        api = [e for e in seen if e["kind"] != "tokeninfo"]
        self.assertEqual([e["identity"] for e in api if e["identity"] != who.label], [],
                         "%s: upstream asked as someone else: %r" % (what, api))
        pinned = route.label == "generation"
        if who.role == "owner":
            # threat: the owner loses its hits (to rotation, or to other callers)
            if policy == "always" and not pinned:
                self.assertEqual(len(api), 1, "%s: under always, one revalidation: %r" % (what, api))
            else:
                self.assertEqual(api, [], "%s: an owner's read of a fresh entry went upstream" % what)
                self.assertEqual(got.x_cache, "HIT", what)
        elif allowed:
            known = who.name in earned or (obj.kind == "public" and W_ANON.name in earned)
            if policy == "always" and not pinned:
                self.assertEqual(len(api), 1, "%s: under always each read is one upstream request: %r" % (what, api))
            elif known and policy != "always":
                self.assertEqual(api, [], "%s: a granted (or public) read went upstream within the grant" % what)
                self.assertEqual(got.x_cache, "HIT", what)
            elif obj.kind != "public" and not pinned:
                # threat: a caller other than the owner is served without upstream's say
                self.assertEqual(len(api), 1, "%s: a first read by a non-owner must be checked upstream: %r"
                                 % (what, api))
            else:
                self.assertLessEqual(len(api), 1, "%s: %r" % (what, api))
            if len(api) == 1 and api[0]["status"] == 304 and got.status in (200, 206):
                self.assertEqual(got.x_cache, "REVALIDATED", what)
            if got.status in (200, 206, 304):
                earned.add(who.name)
        else:
            self.assertLessEqual(len(api), 1, "%s: %r" % (what, api))

        # A valid token is validated once (auth.token_cache_ttl is an hour here), not per request.
        if who.token in VALIDATED_BY_TOKENINFO:
            if who.token in self.validated:
                self.assertEqual(self.tokeninfo_since(mark, who.token), [], "%s: token validated again" % what)
            self.validated.add(who.token)

    def test_matrix_always(self):
        """Section 4, policy always: for private, shared and public objects warmed by the owner, every
        route and every caller (owner, owner's second token, anonymous, grantee, stranger, invalid token,
        expired token) gets the emulator's own answer; refusals carry no facts and are upstream's
        bytes; every upstream request carries the caller's identity; each read is one upstream
        request (the revalidation is the access check), generation-pinned owner reads none.
        threat: stranger reads owner's bytes; threat: grantee outlives its access under always."""
        self.run_matrix("always")

    def test_matrix_ttl(self):
        """Section 4, policy ttl:3600: as for always, except that the owner's reads are HITs with no
        upstream request, and a grantee's (and anyone's reads of a public object, once an anonymous
        read was allowed) after its first allowed read are HITs with no upstream request.
        threat: stranger reads owner's bytes; threat: cache sharing costs the owner its hits."""
        self.run_matrix("ttl")

    def test_matrix_immutable(self):
        """Section 4, policy immutable: as for ttl.
        threat: stranger reads owner's bytes; threat: cache sharing costs the owner its hits."""
        self.run_matrix("immutable")


# ==========================================================================
# Named tests (section 5 of the issue)
# ==========================================================================

class NamedTest(AuthCase):

    def wait_for_held(self, count=1, timeout=20):
        """Until the emulator holds count requests (an event, polled with a bound)."""
        deadline = time.monotonic() + timeout
        while self.emulator.control("GET", "faults").get("waiting", 0) < count:
            self.assertLess(time.monotonic(), deadline, "the emulator never held the request")
            time.sleep(0.02)

    def test_concurrent_misses_share_one_fetch_across_users(self):
        """Concurrent misses share one fetch across users, and a follower gets bytes only after its own
        identity is confirmed: while owner@'s fill of a cold shared object is held at the emulator,
        reader@ (a grantee) and other@ (a stranger) ask for it too. owner@ and reader@ get the bytes;
        reader@ only after a conditional request of its own (a 304 under reader@'s identity); other@ gets
        upstream's own 403. Exactly one response carries the body from upstream. All of this holds
        whether the two arrive while the fill is held (followers) or after it (hits): the hold only makes
        the follower path the likely one.
        threat: a follower of another user's fill is handed bytes its own credentials would not get."""
        obj = self.make_object("shared", "follow-shared.bin", readers=[READER_EMAIL], seed=61)
        route = self.routes_of(obj, "json media")[0]
        for who in (W_OWNER, W_READER, W_OTHER):
            self.ask(route.path.replace("follow-shared.bin", "follow-none.bin"), who.headers)  # tokens validated
        mark = self.mark()
        self.emulator.faults(match="follow-shared.bin", method="GET", hold_response_ms=20000, times=1)
        answers = {}

        def read(who):
            answers[who.name] = self.ask(route.path, who.headers)

        owner = threading.Thread(target=read, args=(W_OWNER,))
        owner.start()
        self.wait_for_held()
        others = [threading.Thread(target=read, args=(who,)) for who in (W_READER, W_OTHER)]
        for t in others:
            t.start()
        time.sleep(0.2)  # lets them join the fill; the assertions below hold either way
        self.emulator.control("POST", "release", {})
        for t in [owner] + others:
            t.join(60)
        self.assertEqual(answers["owner"].status, 200)
        self.assertEqual(answers["owner"].body, obj.data)
        self.assertEqual(answers["reader"].status, 200)
        self.assertEqual(answers["reader"].body, obj.data)
        want = self.direct_as(route.path, W_OTHER.headers)
        self.assertEqual((answers["other"].status, answers["other"].body), (want.status, want.body))
        self.assertNoFacts(answers["other"], want, obj, "stranger following a fill")
        media = [e for e in self.api_since(mark) if e["kind"] == "media_get"]
        self.assertEqual([e for e in media if e["status"] == 200 and e["identity"] == OWNER_EMAIL][:1],
                         [e for e in media if e["status"] == 200], "one body from upstream, owner@'s: %r" % media)
        self.assertEqual(sum(1 for e in media if e["status"] == 200), 1, media)
        self.assertTrue(any(e["identity"] == READER_EMAIL and e["status"] == 304 for e in media), media)
        self.assertTrue(any(e["identity"] == OTHER_EMAIL and e["status"] == 403 for e in media), media)

    def test_customer_key_reads_never_cached(self):
        """Reads carrying a customer-supplied encryption key (x-goog-encryption-key, or the S3 form
        x-amz-server-side-encryption-customer-key) pass through and fill nothing: a later read by the same
        owner without the key, which GCS would refuse, is never served those bytes from the cache. On the old
        code all 4 subtests fail: the keyed read was a MISS that filled the cache for keyless reads.
        threat: bytes upstream decrypted with one request's key are served to a request without it."""
        key = "A" * 43 + "="  # base64 of 32 bytes; the emulator does not check it, GCS would
        csek = {"x-goog-encryption-algorithm": "AES256", "x-goog-encryption-key": key,
                "x-goog-encryption-key-sha256": "B" * 43 + "="}
        s3_csek = {"x-amz-server-side-encryption-customer-algorithm": "AES256",
                   "x-amz-server-side-encryption-customer-key": key}
        for label, headers in (("goog", csek), ("s3", s3_csek)):
            obj = self.make_object("private", "csek-%s.bin" % label, seed=63)
            for route in self.routes_of(obj, "json media", "xml GET"):
                what = "%s key, %s" % (label, route.label)
                with self.subTest(what):
                    got = self.ask(route.path, dict(OWNER, **headers))
                    self.assertEqual((got.status, got.x_cache), (200, "PASS"), what)
                    self.settle()
                    mark = self.mark()
                    again = self.ask(route.path, OWNER)
                    self.assertNotEqual(again.x_cache, "HIT", what)
                    self.assertTrue(self.api_since(mark), "%s: the keyless read was answered from the cache" % what)

    def test_tokeninfo_asked_once_per_token(self):
        """Concurrent validations of one token are coalesced: six concurrent reads with a token larder has
        never seen, while tokeninfo's answer is held, make exactly one tokeninfo request (and every read
        succeeds once it is released). Holds at any speed: reads that arrive after the answer find it cached.
        threat: a burst of requests with a new token turns into a burst against tokeninfo (rate limits,
        then every caller refused)."""
        obj = self.make_object("public", "coalesce.bin", readers=["allUsers"], seed=62, size=4096)
        self.warm(obj)
        token = TOK_FRESH[3]
        self.emulator.control("POST", "tokens", {token: READER_EMAIL})
        route = self.routes_of(obj, "json media")[0]
        mark = self.mark()
        self.emulator.faults(match="/tokeninfo", hold_ms=20000)
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(self.ask(route.path, bearer(token))))
                   for _ in range(6)]
        for t in threads:
            t.start()
        self.wait_for_held()
        time.sleep(0.2)  # lets the others queue on the same validation; the count below holds either way
        self.emulator.control("POST", "release", {})
        for t in threads:
            t.join(60)
        self.assertEqual(sorted(a.status for a in answers), [200] * 6)
        self.assertEqual(len(self.tokeninfo_since(mark, token)), 1)

    def test_rotation_keeps_hits(self):
        """Rotation keeps hits: objects warmed with one token of owner@ are HITs with no upstream request on
        every route for a token of owner@ never seen before (header and ?access_token=), which is
        validated exactly once; under always each read is one conditional revalidation answered 304
        with no media bytes, never a full GET. The access log says "owner" for all of them.
        threat: a token refresh (every hour for Google tokens) empties the owner's cache."""
        self.emulator.control("POST", "tokens", {TOK_OWNER3: OWNER_EMAIL})
        owner3 = Who("owner3", "owner", TOK_OWNER3, OWNER_EMAIL)
        private = self.make_object("private", "rot-private.bin", seed=1)
        public = self.make_object("public", "rot-public.bin", readers=["allUsers"], seed=2)
        always = self.make_object("private", "always/rot-%s.bin" % self.bucket, POLICY_BUCKET, seed=3)
        for obj in (private, public, always):
            self.warm(obj)
        mark = self.mark()
        self.owner_hits_everywhere(private, owner3, "private")
        self.owner_hits_everywhere(public, owner3, "public")
        route = self.routes_of(private, "json media")[0]
        query = route.path + "&access_token=" + TOK_OWNER3
        got, _, api = self.compare(private, Who("owner3 query", "owner", None, OWNER_EMAIL),
                                   Route("query token", "json", "GET", query, 200), "?access_token=")
        self.assertEqual((got.status, got.x_cache, api), (200, "HIT", []), "owner3 through ?access_token=")
        self.expect_access("GET", query, owner3, {"owner"})
        self.assertEqual(len(self.tokeninfo_since(mark, TOK_OWNER3)), 1, "the new token should be validated once")
        for route in self.routes_of(always, "json media", "xml GET", "json Range"):
            what = "always: owner3, " + route.label
            got, _, api = self.compare(always, owner3, route, what)
            self.assertEqual([(e["status"], e["bytes"]) for e in api], [(304, 0)], what)
            self.assertEqual(got.x_cache, "REVALIDATED", what)
            self.expect_access(route.method, route.path, owner3, {"owner"})
        self.assertAccessLogged()
        self.assertLogAgrees()

    def test_ownership_survives(self):
        """Ownership survives: after grantee, stranger, anonymous, invalid-token and expired-token reads of
        every route (metadata included) of objects the owner warmed, under ttl and immutable, private,
        shared and public, the owner's reads of every route are still HITs with no upstream request.
        threat: another caller's read (allowed or refused) replaces the entry and its owner."""
        objects = []
        for policy in ("ttl", "immutable"):
            for i, (kind, readers) in enumerate(OBJECT_KINDS):
                name = "%sown-%s-%s.bin" % (PREFIX[policy], self.bucket, kind)
                objects.append(self.make_object(kind, name, POLICY_BUCKET, readers, seed=10 + i))
        for obj in objects:
            self.warm(obj)
        for obj in objects:
            for who in (W_READER, W_OTHER, W_ANON, W_INVALID, W_EXPIRED):
                for route in obj.routes():
                    got = self.ask(route.path, dict(who.headers, **route.headers), route.method, route.host)
                    if not who.may_read(obj.kind):
                        self.assertGreaterEqual(got.status, 400, "%s read %s of %s" % (who.name, route.label, obj.name))
        self.settle()
        for obj in objects:
            self.owner_hits_everywhere(obj, W_OWNER, obj.name)
        self.assertLogAgrees()

    def test_spoofing(self):
        """Spoofing: identity-looking headers (X-Larder-Identity, X-Larder-User, X-Goog-Authenticated-User-
        Email/-Id, X-Forwarded-User/-Email/-For/-Host), one at a time and all at once, naming the owner,
        change nothing: a stranger and an anonymous caller get exactly the emulator's answer to the same
        request (401/403, its own bytes), on every route of a private object the owner warmed, and
        /_larder/stats stays 403 for them; the owner's reads stay HITs.
        threat: a client claims an identity in a header a proxy might trust."""
        obj = self.make_object("private", "spoof.bin", seed=20)
        self.warm(obj)
        sub = json.loads(self.direct_as("/tokeninfo?access_token=" + TOK_OWNER).body)["sub"]
        vhost = "%s.%s" % (self.bucket, VHOST_SUFFIX)
        claims = {"X-Larder-Identity": OWNER_EMAIL, "X-Larder-User": OWNER_EMAIL,
                  "X-Goog-Authenticated-User-Email": "accounts.google.com:" + OWNER_EMAIL,
                  "X-Goog-Authenticated-User-Id": "accounts.google.com:" + sub,
                  "X-Forwarded-User": OWNER_EMAIL, "X-Forwarded-Email": OWNER_EMAIL,
                  "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": vhost}
        variants = [(name, {name: value}) for name, value in claims.items()] + [("all", claims)]
        for who in (W_OTHER, W_ANON):
            for label, extra in variants:
                for route in obj.routes():
                    what = "%s with %s, %s" % (who.name, label, route.label)
                    with self.subTest(what):
                        got, want, api = self.compare(obj, who, route, what, extra)
                        self.assertIn(want.status, (401, 403), what)
                        self.assertEqual(got.body, want.body, what)
                        self.assertLessEqual(len(api), 1, what)
                        self.expect_access(route.method, route.path, who,
                                           {"denied", "unauthenticated"} if who.role == "anonymous" else {"denied"})
                with self.subTest("%s with %s, stats" % (who.name, label)):
                    status, _, body = self.larder.request("GET", "/_larder/stats", headers=dict(who.headers, **extra))
                    self.assertGcsJsonError(status, body, 403)
        self.owner_hits_everywhere(obj, W_OWNER, "after the spoofing")
        self.assertAccessLogged()

    def alias_forms(self, name):
        """(label, method, path, Host) of requests naming `name` (or a near miss) in other spellings."""
        b = self.bucket
        q = harness.quote_object(name)
        enc_a = q.replace("a.bin", "%61.bin")
        vhost = "%s.%s" % (b, VHOST_SUFFIX)
        xml_name = urllib.parse.quote(name, safe="/")
        return [
            ("json canonical", "GET", "/storage/v1/b/%s/o/%s?alt=media" % (b, q), None),
            ("json %2f", "GET", "/storage/v1/b/%s/o/%s?alt=media" % (b, q.replace("%2F", "%2f")), None),
            ("json %61", "GET", "/storage/v1/b/%s/o/%s?alt=media" % (b, enc_a), None),
            ("json %61 first", "GET", "/storage/v1/b/%s/o/%%61%s?alt=media" % (b, q[1:]), None),
            ("json %2561", "GET", "/storage/v1/b/%s/o/%s?alt=media" % (b, q.replace("a.bin", "%2561.bin")), None),
            ("json raw slash", "GET", "/storage/v1/b/%s/o/%s?alt=media" % (b, xml_name), None),
            ("json upper case", "GET", "/storage/v1/b/%s/o/%s?alt=media" % (b, q.upper()), None),
            ("json encoded ..", "GET", "/storage/v1/b/%s/o/x%%2F..%%2F%s?alt=media" % (b, q), None),
            ("json raw ..", "GET", "/storage/v1/b/%s/o/x/../%s?alt=media" % (b, q), None),
            ("json .. before o", "GET", "/storage/v1/b/%s/x/../o/%s?alt=media" % (b, q), None),
            ("json //", "GET", "//storage/v1/b/%s/o/%s?alt=media" % (b, q), None),
            ("json bucket %62", "GET", "/storage/v1/b/%%62%s/o/%s?alt=media" % (b[1:], q), None),
            ("download %61", "GET", "/download/storage/v1/b/%s/o/%s?alt=media" % (b, enc_a), None),
            ("metadata %61", "GET", "/storage/v1/b/%s/o/%s" % (b, enc_a), None),
            ("xml canonical", "GET", "/%s/%s" % (b, xml_name), None),
            ("xml %2F", "GET", "/%s/%s" % (b, q), None),
            ("xml %61", "GET", "/%s/%s" % (b, xml_name.replace("a.bin", "%61.bin")), None),
            ("xml %61 HEAD", "HEAD", "/%s/%s" % (b, xml_name.replace("a.bin", "%61.bin")), None),
            ("xml %2561", "GET", "/%s/%s" % (b, xml_name.replace("a.bin", "%2561.bin")), None),
            ("xml upper case", "GET", "/%s/%s" % (b, xml_name.upper()), None),
            ("xml ..", "GET", "/%s/x/../%s" % (b, xml_name), None),
            ("xml .", "GET", "/%s/./%s" % (b, xml_name), None),
            # (XML paths whose bucket is spelt so, "/%62kt-.." or "/BKT-..", larder answers 404 itself:
            # no bucket could have that name, route.c. Not an alias, and not compared here.)
            ("vhost canonical", "GET", "/" + xml_name, vhost),
            ("vhost %61", "GET", "/" + xml_name.replace("a.bin", "%61.bin"), vhost),
            ("vhost %2F", "GET", "/" + q, vhost),
            ("vhost ..", "GET", "/x/../" + xml_name, vhost),
            ("vhost upper-case Host", "GET", "/" + xml_name, vhost.upper()),
        ]

    def test_no_aliasing(self):
        """No aliasing: a private object ("alias/Obj-a.bin") is read by its owner through each spelling of
        alias_forms (percent-encoding of '/' and 'a', double encoding, '..' and '.' segments, upper case,
        an encoded bucket name, virtual host vs path style, JSON vs XML); then the owner, a stranger and
        an anonymous caller read every spelling: each answer equals the emulator's own answer to the
        same request, and no stranger or anonymous answer carries the owner's bytes.
        threat: a spelling the cache keys like the owner's entry while upstream checks another name."""
        obj = self.make_object("private", "alias/Obj-a.bin", seed=30)
        self.warm(obj)
        forms = self.alias_forms(obj.name)
        owner_ok = 0
        for label, method, path, host in forms:
            r = self.ask(path, OWNER, method, host)
            owner_ok += r.status == 200
        self.assertGreaterEqual(owner_ok, 10, "most spellings should reach the object: the test tests little")
        self.settle()
        for who in (W_OWNER, W_OTHER, W_ANON):
            for label, method, path, host in forms:
                what = "%s, %s (%s %s)" % (who.name, label, host or "", path)
                with self.subTest(what):
                    api = "json" if path.lstrip("/").startswith(("storage/", "download/")) else "xml"
                    got, want, _ = self.compare(obj, who, Route(label, api, method, path, None, host=host), what)
                    if who.role != "owner":
                        self.assertGreaterEqual(got.status, 400, what)
                        self.assertEqual(got.body, want.body, what)

    def test_no_probing(self):
        """No probing: a stranger (other@) and an anonymous caller, on every route, get the same status,
        body and headers (names; values too, except Date and ids) for an object the owner warmed, for
        one with the same ACL nobody read, and for a name that does not exist, under immutable and
        always, private and shared, in either order and twice.
        threat: a stranger learns, from larder's answers, what others have read."""
        for policy in ("immutable", "always"):
            for kind, readers in OBJECT_KINDS[:2]:
                base = "%sprobe-%s-%s" % (PREFIX[policy], self.bucket, kind)
                warm = self.make_object(kind, base + "-warm.bin", POLICY_BUCKET, readers, seed=40)
                cold = self.make_object(kind, base + "-cold.bin", POLICY_BUCKET, readers, seed=41)
                self.warm(warm)
                missing = Obj(kind, POLICY_BUCKET, base + "-missing.bin",
                              {"generation": str(warm.generation), "etag": warm.json_etag}, warm.data, warm.xml_etag)
                for who in (W_OTHER, W_ANON, W_INVALID):
                    for w_route, c_route, m_route in zip(warm.routes(), cold.routes(), missing.routes()):
                        what = "%s %s, %s, %s" % (policy, kind, who.name, w_route.label)
                        with self.subTest(what):
                            answers = []
                            for obj, route in ((cold, c_route), (warm, w_route), (missing, m_route),
                                               (warm, w_route), (cold, c_route)):
                                got = self.ask(route.path, dict(who.headers, **route.headers), route.method,
                                               route.host)
                                self.assertGreaterEqual(got.status, 400, "%s: %s" % (what, obj.name))
                                answers.append(self.fingerprint(got))
                            for label, answer in zip(("warm", "missing", "warm again", "cold again"), answers[1:]):
                                self.assertEqual(answer, answers[0], "%s: %s differs from cold" % (what, label))

    @staticmethod
    def fingerprint(resp):
        kept = [(k, v) for k, v in resp.headers if k != "date"]
        names = sorted(k for k, _ in kept)
        values = sorted((k, v) for k, v in kept if not k.endswith("id"))  # x-guploader-uploadid and the like
        return resp.status, resp.body, names, values

    def test_fail_closed_tokeninfo_faulted(self):
        """Fail closed (tokeninfo): with the emulator's /tokeninfo answering 503, reads with tokens never
        validated before (owner@'s and reader@'s; header and ?access_token=) of warm private, shared and
        public objects get 503 in GCS shape (a JSON error on JSON routes, an XML <Error> on XML ones),
        never bytes or facts; anonymous reads of the public object are unaffected. Once tokeninfo is
        back the same tokens read (the failure was not remembered as a verdict).
        threat: larder serves cached bytes when it cannot tell who is asking."""
        self.emulator.control("POST", "tokens", {TOK_FRESH[0]: OWNER_EMAIL, TOK_FRESH[1]: READER_EMAIL})
        fresh_owner = Who("fresh owner", "owner", TOK_FRESH[0], OWNER_EMAIL)
        fresh_reader = Who("fresh reader", "reader", TOK_FRESH[1], READER_EMAIL)
        private = self.make_object("private", "fc-private.bin", seed=50)
        shared = self.make_object("shared", "fc-shared.bin", readers=[READER_EMAIL], seed=51)
        public = self.make_object("public", "fc-public.bin", readers=["allUsers"], seed=52)
        for obj in (private, shared, public):
            self.warm(obj)
        self.emulator.faults(match="/tokeninfo", fail_nth={"n": 1, "status": 503, "count": 1 << 30})
        labels = ("json media", "json metadata", "xml GET", "xml HEAD", "vhost GET", "json Range")
        cases = [(fresh_owner, private), (fresh_owner, public), (fresh_reader, shared), (fresh_reader, public)]
        for who, obj in cases:
            for route in self.routes_of(obj, *labels):
                what = "%s, %s %s, tokeninfo down" % (who.name, obj.kind, route.label)
                with self.subTest(what):
                    got = self.ask(route.path, dict(who.headers, **route.headers), route.method, route.host)
                    self.assertGcsShaped(got, route.api, route.method, 503, what)
                    self.assertNoFacts(got, None, obj, what)
            route = self.routes_of(obj, "json media")[0]
            got = self.ask(route.path + "&access_token=" + who.token)
            self.assertGcsShaped(got, "json", "GET", 503, "%s, %s through ?access_token=" % (who.name, obj.kind))
            self.assertNoFacts(got, None, obj, "?access_token=")
        faulted = [e for e in self.upstream_since(0, ("tokeninfo",)) if e.get("fault") == "fail_nth"]
        self.assertTrue(faulted, "larder never asked tokeninfo: the fault did not bite")
        for route in self.routes_of(public, "json media", "xml GET"):
            got, _, _ = self.compare(public, W_ANON, route, "anonymous while tokeninfo is down, " + route.label)
            self.assertEqual(got.status, 200)
        self.emulator.clear_faults()
        for who, obj in cases:
            route = self.routes_of(obj, "json media")[0]
            got, _, _ = self.compare(obj, who, route, "%s, %s once tokeninfo is back" % (who.name, obj.kind))
            self.assertEqual(got.status, 200, "%s, %s once tokeninfo is back" % (who.name, obj.kind))

    def test_fail_closed_upstream_faulted(self):
        """Fail closed (upstream): while every upstream request for a warm shared object fails (503), the
        grantee's and a stranger's reads of it (JSON, XML, metadata) get 503 in GCS shape, never bytes
        or facts, while the owner's stay HITs; once upstream is back the grantee reads and the stranger
        gets upstream's 403 (no verdict was remembered from the failure).
        threat: larder takes an access check it could not make for a yes."""
        obj = self.make_object("shared", "fcu-shared.bin", readers=[READER_EMAIL], seed=53)
        self.warm(obj)
        for who in (W_READER, W_OTHER):  # validate the tokens first: only the access check may fail here
            self.ask("/_larder/stats", who.headers)
        self.emulator.faults(match=harness.quote_object(obj.name), fail_nth={"n": 1, "status": 503, "count": 1 << 30})
        for who in (W_READER, W_OTHER):
            for route in self.routes_of(obj, "json media", "json metadata", "xml GET", "xml HEAD", "json Range"):
                what = "%s, %s, upstream failing" % (who.name, route.label)
                with self.subTest(what):
                    mark = self.mark()
                    got = self.ask(route.path, dict(who.headers, **route.headers), route.method)
                    self.assertGcsShaped(got, route.api, route.method, 503, what)
                    self.assertNoFacts(got, None, obj, what)
                    up = self.api_since(mark)
                    self.assertTrue(up and all(e.get("fault") == "fail_nth" and e["identity"] == who.label for e in up),
                                    "%s: the access check should have been tried upstream, as %s: %r"
                                    % (what, who.label, up))
        for route in self.routes_of(obj, "json media", "xml GET"):
            mark = self.mark()
            got = self.ask(route.path, OWNER, route.method)
            self.assertEqual((got.status, got.x_cache, got.body), (200, "HIT", obj.data), "owner, " + route.label)
            self.assertEqual(self.api_since(mark), [], "owner, " + route.label)
        self.emulator.clear_faults()
        for who in (W_READER, W_OTHER):
            for i, route in enumerate(self.routes_of(obj, "json media", "xml GET")):
                what = "%s, %s, upstream back" % (who.name, route.label)
                got, want, api = self.compare(obj, who, route, what)
                if i == 0:
                    self.assertEqual(len(api), 1, "%s: a failed check must leave no verdict behind" % what)
                self.assertEqual(got.status, 200 if who is W_READER else 403, what)

    def test_admin_stats_only_for_admins(self):
        """/_larder/stats: 200 (JSON) for owner@ (auth.admins) with either of its tokens, as a header or
        ?access_token=; 403 in GCS JSON shape for reader@, other@ and anonymous callers; 401 for an invalid
        or an expired token.
        threat: anyone reads larder's statistics (what is cached, how much, for whom)."""
        status, _, body = self.larder.request("GET", "/_larder/stats", headers=OWNER)
        self.assertEqual(status, 200, body[:300])
        keys = [k.encode() for k in json.loads(body)]
        self.assertTrue(keys, "stats with no keys")
        for label, path, headers, status in (
                ("owner", "/_larder/stats", OWNER, 200), ("owner2", "/_larder/stats", OWNER2, 200),
                ("owner ?access_token=", "/_larder/stats?access_token=" + TOK_OWNER, {}, 200),
                ("reader", "/_larder/stats", READER, 403), ("other", "/_larder/stats", OTHER, 403),
                ("anonymous", "/_larder/stats", {}, 403),
                ("invalid", "/_larder/stats", INVALID, 401), ("expired", "/_larder/stats", EXPIRED, 401)):
            with self.subTest(label):
                got, hdrs, body = self.larder.request("GET", path, headers=headers)
                if status == 200:
                    self.assertEqual(got, 200, body[:300])
                    self.assertIsInstance(json.loads(body), dict)
                else:
                    self.assertGcsJsonError(got, body, status)
                    self.assertEqual([k for k in keys if b'"%s"' % k in body], [], "%s: stats in a refusal" % label)

    def test_access_log_identity_and_decision(self):
        """Access log: each cacheable read's line has "identity" (the email; empty for anonymous callers and
        bad tokens) and "access": owner for the filler's reads (any of its tokens), grant for a grantee,
        public for reads of an object an anonymous read filled, denied for a stranger, unauthenticated
        for invalid and expired tokens; every cacheable read in the whole log has an access value.
        threat: nobody can tell afterwards who was served what, and why."""
        private = self.make_object("private", "log-private.bin", size=200000, seed=60)
        shared = self.make_object("shared", "log-shared.bin", readers=[READER_EMAIL], size=200000, seed=61)
        public = self.make_object("public", "log-public.bin", readers=["allUsers"], size=200000, seed=62)
        self.warm(private)
        self.warm(shared)
        steps = [  # object, caller, (JSON status, XML status), access
            (public, W_ANON, (200, 200), {"public"}),  # fills it: an anonymous read makes it public
            (public, W_ANON, (200, 200), {"public"}), (public, W_OTHER, (200, 200), {"public"}),
            (shared, W_READER, (200, 200), {"grant"}), (shared, W_READER, (200, 200), {"grant"}),
            (shared, W_OTHER, (403, 403), {"denied"}), (private, W_OTHER, (403, 403), {"denied"}),
            (private, W_READER, (403, 403), {"denied"}), (private, W_OWNER2, (200, 200), {"owner"}),
            (public, W_INVALID, (401, 401), {"unauthenticated"}), (private, W_EXPIRED, (401, 401), {"unauthenticated"}),
            # Whether an anonymous refusal is "denied" or "unauthenticated" the issue leaves open.
            (private, W_ANON, (401, 403), {"denied", "unauthenticated"})]
        for obj, who, statuses, access in steps:
            for route, status in zip(self.routes_of(obj, "json media", "xml GET"), statuses):
                got = self.ask(route.path, who.headers)
                self.assertEqual(got.status, status, "%s reading %s (%s): %r" % (who.name, obj.name, route.label, got))
                self.expect_access("GET", route.path, who, access)
            self.settle()
        self.assertAccessLogged()
        for e in self.larder.access_log():
            if e.get("cache") in ("HIT", "MISS", "REVALIDATED") and e.get("route") in ("json", "xml", "download"):
                self.assertIn(e.get("access"), ACCESS_VALUES, e)
                self.assertIsInstance(e.get("identity", ""), str, e)
        self.assertLogAgrees()

    def test_no_token_in_log(self):
        """No token string (header, ?access_token=, valid, invalid, expired, refused at tokeninfo) appears
        anywhere in larder's log, after reads of every route, stats, a refused write, and failed
        validations; the access log does show those requests, with ?access_token= masked.
        threat: the log hands out the credentials of everyone who used larder."""
        obj = self.make_object("shared", "tok-shared.bin", readers=[READER_EMAIL], size=100000, seed=70)
        self.warm(obj)
        for who in (W_OWNER, W_OWNER2, W_READER, W_OTHER, W_INVALID, W_EXPIRED):
            for route in obj.routes():
                self.ask(route.path, dict(who.headers, **route.headers), route.method, route.host)
            self.ask(obj.routes()[0].path + "&access_token=" + who.token)
            self.ask("/%s/%s?access_token=%s" % (obj.bucket, obj.name, who.token), method="HEAD")
            self.larder.request("GET", "/_larder/stats", headers=who.headers)
            self.ask("/%s/%s" % (obj.bucket, obj.name), who.headers, "PUT")
        self.emulator.control("POST", "tokens", {TOK_FRESH[2]: OTHER_EMAIL})
        self.emulator.faults(match="/tokeninfo", fail_nth={"n": 1, "status": 503, "count": 1 << 30})
        self.ask(obj.routes()[0].path, bearer(TOK_FRESH[2]))
        self.ask(obj.routes()[0].path + "&access_token=" + TOK_FRESH[2])
        self.emulator.clear_faults()
        self.settle()
        deadline = time.monotonic() + 3
        while not any("access_token=***" in e["path"] for e in self.larder.access_log()):
            self.assertLess(time.monotonic(), deadline, "the ?access_token= reads are not in the access log")
            time.sleep(0.1)
        self.assertNoTokenInLog()

    def test_token_expiring_while_cached(self):
        """A token that expires after larder validated it is refused (401) once it has expired: larder
        keeps a tokeninfo answer no longer than its exp. (Before the expiry, while the emulator still
        takes the token, its read of the owner's object is a 200.)
        threat: a stolen or retired token keeps working out of larder's token cache."""
        obj = self.make_object("private", "short.bin", size=100000, seed=80)
        self.warm(obj)
        self.emulator.control("POST", "tokens", {TOK_SHORT: {"email": OWNER_EMAIL, "expires_in": 3}})
        route = self.routes_of(obj, "json media")[0]
        got = self.ask(route.path, bearer(TOK_SHORT))
        if self.direct_as("/tokeninfo?access_token=" + TOK_SHORT).status == 200:  # not expired yet: a good token
            self.assertEqual((got.status, got.body), (200, obj.data), "the token before its expiry")
        expired = lambda: self.direct_as("/tokeninfo?access_token=" + TOK_SHORT).status == 400  # noqa: E731
        self.assertTrue(harness.wait_until(expired, 15), "the emulator never expired the token")
        for route in self.routes_of(obj, "json media", "json metadata", "xml GET"):
            got = self.ask(route.path, bearer(TOK_SHORT), route.method)
            self.assertInvalidCredentials(got, route.api, route.method, "the expired token, " + route.label)
            self.assertNoFacts(got, None, obj, route.label)

    def test_query_token_is_an_identity(self):
        """?access_token= stands for its identity as the header does: the grantee's first read is checked
        upstream (as reader@) and its next one is a HIT; a stranger's is refused as upstream refuses it;
        the owner's is a HIT.
        threat: a second way to present a token bypasses the identity rules."""
        obj = self.make_object("shared", "qt-shared.bin", readers=[READER_EMAIL], seed=90)
        self.warm(obj)
        media = self.routes_of(obj, "json media")[0].path
        cases = [(W_READER, 1, 200), (W_READER, 0, 200), (W_OTHER, 1, 403), (W_OWNER, 0, 200)]
        for who, upstream, status in cases:
            path = media + "&access_token=" + who.token
            what = "%s through ?access_token=" % who.name
            got, want, api = self.compare(obj, Who(who.name, who.role, None, who.email), Route(
                what, "json", "GET", path, status), what)
            self.assertEqual([e["identity"] for e in api], [who.email] * upstream, what)
            self.assertEqual(got.status, status, what)
            if upstream == 0:
                self.assertEqual(got.x_cache, "HIT", what)

    def test_refusals_pass_through_unchanged(self):
        """401, 403 and 404 go back exactly as upstream sent them: in buckets reader@ may list (so it is told
        404 for what is missing), objects the owner warmed (immutable and always) are asked for at a
        generation that never existed, then deleted upstream; the grantee's reads of every route are
        upstream's 404s byte for byte, the stranger's and the anonymous caller's upstream's 403 or 401,
        an invalid token's 401; none carries the object's bytes or facts.
        threat: larder words a refusal its own way (a tell), or answers a 404 from the cache."""
        objects = []
        for bucket, name in ((self.bucket, "refuse.bin"), (POLICY_BUCKET, "always/refuse-%s.bin" % self.bucket)):
            self.emulator.control("POST", "acl", {"bucket": bucket, "readers": [READER_EMAIL]})
            obj = self.make_object("private", name, bucket, size=300000, seed=97)
            self.warm(obj)
            objects.append(obj)
        for obj in objects:
            route = self.routes_of(obj, "json media")[0]
            wrong_gen = Route("wrong generation", "json", "GET", route.path + "&generation=%d" % (obj.generation + 1),
                              404)
            for who, status in ((W_READER, 404), (W_OWNER, 404), (W_OTHER, 403)):
                what = "%s, %s, %s" % (obj.name, who.name, wrong_gen.label)
                got, want, _ = self.compare(obj, who, wrong_gen, what)
                self.assertEqual((got.status, got.body), (status, want.body), what)
        for obj in objects:
            r = self.direct_as("/storage/v1/b/%s/o/%s" % (obj.bucket, harness.quote_object(obj.name)), OWNER, "DELETE")
            self.assertEqual(r.status, 204, r)
        for obj in objects:
            for who in (W_READER, W_OTHER, W_ANON, W_INVALID):
                for route in self.routes_of(obj, "json media", "json metadata", "xml GET", "xml HEAD", "json Range"):
                    what = "%s deleted, %s, %s" % (obj.name, who.name, route.label)
                    with self.subTest(what):
                        got, want, _ = self.compare(obj, who, route, what)
                        self.assertIn(want.status, (401, 403, 404), what)
                        if who is W_READER:
                            self.assertEqual(want.status, 404, "%s: the emulator disagrees: %r" % (what, want))
                        if who is not W_INVALID:
                            self.assertEqual(got.body, want.body, what)

    def signed_forms(self, key):
        """(label, extra query, headers) presenting `key` as an HMAC key id or a signed URL's credential;
        the signatures are made up: neither larder nor the emulator can check them."""
        scope = "%s/20261127/auto/storage/goog4_request" % key
        q_scope = urllib.parse.quote(scope, safe="")
        return [
            ("AWS4-HMAC-SHA256 header", "", {"Authorization": "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host, "
                                                              "Signature=%s" % (scope, "ab" * 32)}),
            ("GOOG4-HMAC-SHA256 header", "", {"Authorization": "GOOG4-HMAC-SHA256 Credential=%s, SignedHeaders=host, "
                                                               "Signature=%s" % (scope, "cd" * 32)}),
            ("AWS header", "", {"Authorization": "AWS %s:c2lnbmF0dXJl" % key}),
            ("X-Goog-Signature URL", "X-Goog-Algorithm=GOOG4-HMAC-SHA256&X-Goog-Credential=%s&X-Goog-Date="
                                     "20261127T000000Z&X-Goog-Expires=900&X-Goog-SignedHeaders=host&"
                                     "X-Goog-Signature=%s" % (q_scope, "ef" * 32), {}),
            ("X-Amz-Signature URL", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date="
                                    "20261127T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&"
                                    "X-Amz-Signature=%s" % (q_scope, "12" * 32), {}),
            ("V2 signed URL", "GoogleAccessId=%s&Expires=1900000000&Signature=c2lnbmF0dXJl" % key, {}),
        ]

    def test_unverifiable_credentials_always_ask_upstream(self):
        """Signed URLs and HMAC credentials (AWS4-HMAC-SHA256, GOOG4-HMAC-SHA256, AWS, X-Goog-Signature,
        X-Amz-Signature, V2 signed URLs) cannot be verified by larder: every read of a cached object made
        with them, even with the owner's own key id and twice in a row, is exactly one upstream request
        under those credentials and gets the emulator's answer (the owner's key: the bytes, never a
        plain HIT; a stranger's key or an unknown one: upstream's refusal). The owner's bearer reads
        stay HITs afterwards.
        threat: a made-up signature naming the owner's key id is served the owner's cached bytes."""
        keys = {"GOOGKEYOWNER1": OWNER_EMAIL, "GOOGKEYOTHER1": OTHER_EMAIL}
        self.emulator.control("POST", "tokens", keys)
        obj = self.make_object("private", "signed/obj.bin", size=300000, seed=95)
        self.warm(obj)
        for key, email in list(keys.items()) + [("GOOGKEYNOBODY1", None)]:
            for form, query, headers in self.signed_forms(key):
                for route in self.routes_of(obj, "xml GET", "xml HEAD", "xml Range", "vhost GET"):
                    path = route.path + ("?" + query if query else "")
                    for attempt in (1, 2):
                        what = "%s as %s, %s, read %d" % (form, key, route.label, attempt)
                        with self.subTest(what):
                            who = Who(key, "unverifiable", None, email)
                            got, want, api = self.compare(obj, who, Route(what, "xml", route.method, path, None,
                                                                          route.headers, route.host), what,
                                                          headers)
                            expect = route.expect if email == OWNER_EMAIL else 403
                            self.assertEqual(want.status, expect, "%s: the emulator disagrees: %r" % (what, want))
                            self.assertEqual(len(api), 1, "%s: an unverifiable read is one upstream request: %r"
                                             % (what, api))
                            self.assertNotEqual(got.x_cache, "HIT", what)
                            if got.status >= 400:
                                self.assertEqual(got.body, want.body, what)
        # An object first filled by a signed read is no different: each later signed read asks upstream.
        filled = self.make_object("private", "signed/filled.bin", size=300000, seed=96)
        owner_key = Who("GOOGKEYOWNER1", "unverifiable", None, OWNER_EMAIL)
        for form, query, headers in self.signed_forms("GOOGKEYOWNER1")[::3]:
            route = self.routes_of(filled, "xml GET")[0]
            path = route.path + ("?" + query if query else "")
            for attempt in (1, 2, 3):
                what = "%s fill, then its read %d" % (form, attempt)
                got, _, api = self.compare(filled, owner_key, Route(what, "xml", "GET", path, 200), what, headers)
                self.assertEqual((got.status, len(api)), (200, 1), what)
                if attempt == 1:
                    self.settle()
        for who in (W_OTHER, W_ANON):
            route = self.routes_of(filled, "xml GET")[0]
            got, want, _ = self.compare(filled, who, route, who.name + " after signed fills")
            self.assertEqual((got.status, got.body), (403, want.body), who.name)
        self.settle()
        self.owner_hits_everywhere(obj, W_OWNER, "after the signed reads")


# ==========================================================================
# Tests that need a larder of their own
# ==========================================================================

class OwnLarderTest(AuthCase):
    """One emulator for the class; each test starts the larder(s) it needs."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="larder-it-")
        cls.ca = harness.TestCA(cls.workdir)
        cls.emulator = harness.Emulator(cls.workdir)
        cls.validated = set()
        cls.larder = None

    @classmethod
    def tearDownClass(cls):
        cls.emulator.stop()
        if os.environ.get("LARDER_KEEP_WORKDIR") is None:
            shutil.rmtree(cls.workdir, ignore_errors=True)

    def start(self, label, upstream=None, store=None, **auth):
        """A larder of this test's own, the current one for self.ask; stopped (and checked) at cleanup."""
        workdir = os.path.join(self.workdir, "%s-%s" % (self._testMethodName, label))
        os.makedirs(workdir)
        larder = harness.Larder(workdir, upstream or self.emulator.base_url, self.ca,
                                config=auth_config(auth.pop("tokeninfo_base", self.emulator.base_url), store, **auth))
        self.addCleanup(larder.stop)
        self.larder = larder
        self.started = getattr(self, "started", []) + [larder]
        return larder

    def stop(self, larder):
        larder.stop()
        larder.stop = lambda: None  # cleanup's stop is a no-op once stopped here

    def assertLogAgrees(self, larder=None):
        pass  # self.sent spans several larders here

    def test_revocation_ends(self):
        """Revocation ends: with auth.grant_ttl=1, a grantee reads a shared object the owner warmed
        (immutable, and always); the object's ACL is then changed upstream to drop the grantee. Under
        always the very next read is upstream's 403 (the revalidation is the check); under immutable,
        once more than grant_ttl has passed (1.5 s: waiting longer can only help), the grantee's reads
        of every route are upstream's 403, never bytes; the owner's stay HITs.
        threat: access removed upstream lives on in larder's cache."""
        self.start("grant1", grant_ttl=1)
        imm = self.make_object("shared", "rev-imm.bin", readers=[READER_EMAIL], size=200000, seed=100)
        always = self.make_object("shared", "always/rev-%s.bin" % self.bucket, POLICY_BUCKET, [READER_EMAIL],
                                  size=200000, seed=101)
        for obj in (imm, always):
            self.warm(obj)
            got, _, _ = self.compare_as(obj, W_READER, "json media", "granted read")
            self.assertEqual(got.status, 200)
        for obj in (imm, always):
            self.emulator.control("POST", "acl", {"bucket": obj.bucket, "object": obj.name, "readers": []})
        for label in ("json media", "xml GET", "json metadata"):
            got, want, _ = self.compare_as(always, W_READER, label, "always, at once")
            self.assertEqual((got.status, got.body), (403, want.body), "always: revoked, " + label)
        time.sleep(1.5)
        for route in imm.routes():
            with self.subTest("immutable: revoked, " + route.label):
                got, want, _ = self.compare_as(imm, W_READER, route.label, "immutable, revoked")
                self.assertEqual((got.status, got.body), (403, want.body), "immutable: revoked, " + route.label)
        for label in ("json media", "xml GET"):
            route = self.routes_of(imm, label)[0]
            mark = self.mark()
            got = self.ask(route.path, OWNER)
            self.assertEqual((got.status, got.x_cache, got.body), (200, "HIT", imm.data), "owner after the revocation")
            self.assertEqual(self.api_since(mark), [])

    def compare_as(self, obj, who, label, what):
        route = self.routes_of(obj, label)[0]
        return self.compare(obj, who, route, "%s: %s, %s" % (what, who.name, label))

    def test_fail_closed_tokeninfo_unreachable(self):
        """Fail closed (tokeninfo unreachable): with auth.tokeninfo_url on a port nothing listens on,
        bearer-token reads (header and ?access_token=) of warm objects get 503 in GCS shape on JSON and
        XML routes, never bytes; anonymous reads of a public object and reads with a token from
        auth.token_file (no tokeninfo needed) still work.
        threat: larder serves cached bytes when it cannot tell who is asking."""
        token_file = os.path.join(self.workdir, "unreachable-tokens.json")
        with open(token_file, "w") as f:
            json.dump([{"token": TOK_SVC, "identity": SVC_EMAIL}], f)
        self.emulator.control("POST", "tokens", {TOK_SVC: SVC_EMAIL})
        self.start("closed", tokeninfo_base=closed_port_url(), token_file=token_file)
        public = self.make_object("public", "un-public.bin", readers=["allUsers"], size=300000, seed=110)
        private = self.make_object("private", "un-private.bin", readers=[SVC_EMAIL], size=300000, seed=111)
        for obj in (public, private):  # anonymous fills: the entries exist, owned by nobody with a token
            self.ask(self.routes_of(obj, "json media")[0].path, {})
        for who in (W_OWNER, W_READER, W_OTHER):
            for obj in (public, private):
                for route in self.routes_of(obj, "json media", "json metadata", "xml GET", "xml HEAD"):
                    what = "%s, %s %s, tokeninfo unreachable" % (who.name, obj.kind, route.label)
                    with self.subTest(what):
                        got = self.ask(route.path, who.headers, route.method)
                        self.assertGcsShaped(got, route.api, route.method, 503, what)
                        self.assertNoFacts(got, None, obj, what)
                got = self.ask(self.routes_of(obj, "json media")[0].path + "&access_token=" + who.token)
                self.assertGcsShaped(got, "json", "GET", 503, "%s through ?access_token=" % who.name)
        for route in self.routes_of(public, "json media", "xml GET"):
            got = self.ask(route.path, {})
            self.assertEqual((got.status, got.body), (200, public.data), "anonymous, public, " + route.label)
        svc = Who("svc", "reader", TOK_SVC, SVC_EMAIL)
        for route in self.routes_of(private, "json media", "xml GET"):
            got, _, _ = self.compare(private, svc, route, "token-file token, " + route.label)
            self.assertEqual((got.status, got.body), (200, private.data), "token-file token, " + route.label)

    def test_fail_closed_tokeninfo_timeout(self):
        """Fail closed (tokeninfo hangs): with the emulator holding every /tokeninfo request and
        auth.tokeninfo_timeout_ms=300, a bearer-token read of a warm object is a 503 in GCS shape (JSON
        and XML), never bytes.
        threat: a slow identity provider turns into an open door (or a hung proxy)."""
        self.start("timeout", tokeninfo_timeout_ms=300)
        obj = self.make_object("shared", "to-shared.bin", readers=[READER_EMAIL], size=300000, seed=120)
        self.warm(obj)
        self.emulator.control("POST", "tokens", {TOK_FRESH[3]: READER_EMAIL})
        self.emulator.faults(match="/tokeninfo", hold_ms=30000)
        self.addCleanup(self.emulator.control, "POST", "release", {})
        for route in self.routes_of(obj, "json media", "xml GET"):
            got = self.ask(route.path, bearer(TOK_FRESH[3]), timeout=20)
            self.assertGcsShaped(got, route.api, "GET", 503, "tokeninfo held, " + route.label)
            self.assertNoFacts(got, None, obj, route.label)
        self.assertGreaterEqual(self.emulator.control("GET", "faults")["matched"], 1, "tokeninfo was never asked")

    def test_fail_closed_upstream_unreachable(self):
        """Fail closed (upstream unreachable): objects warmed by the owner through one larder; a second
        larder on the same store, whose upstream is a port nothing listens on, answers the grantee's,
        a stranger's and an anonymous caller's reads of them 503 in GCS shape, never the bytes.
        threat: larder takes an access check it could not make for a yes."""
        first = self.start("first")
        shared = self.make_object("shared", "uu-shared.bin", readers=[READER_EMAIL], size=300000, seed=130)
        private = self.make_object("private", "uu-private.bin", size=300000, seed=131)
        for obj in (shared, private):
            self.warm(obj)
        self.stop(first)
        self.start("second", upstream=closed_port_url(), store=first.config["store"]["path"])
        for who in (W_READER, W_OTHER, W_ANON):
            for obj in (shared, private):
                for route in self.routes_of(obj, "json media", "json metadata", "xml GET", "xml HEAD", "json Range"):
                    what = "%s, %s %s, upstream unreachable" % (who.name, obj.kind, route.label)
                    with self.subTest(what):
                        got = self.ask(route.path, dict(who.headers, **route.headers), route.method)
                        self.assertGcsShaped(got, route.api, route.method, 503, what)
                        self.assertNoFacts(got, None, obj, what)

    def test_auth_disabled(self):
        """auth.enabled=false: larder starts with a warning in its log that access control is off, asks
        tokeninfo nothing, and follows the old exact-credential rule: the owner's read with the token
        that filled the entry is a HIT with no upstream request, with another token of the owner's it is
        revalidated upstream; a stranger still gets upstream's 403.
        threat: auth silently off (or half on) without anyone being told."""
        larder = self.start("disabled", enabled=False)
        warnings = [line for line in larder.read_log().splitlines() if '"component":"access"' not in line
                    and re.search(r'"level":"warn', line) and re.search(r"auth", line, re.I)
                    and re.search(r"disabled|\boff\b|enabled is false|enabled=false", line, re.I)]
        self.assertTrue(warnings, "no warning that auth is disabled:\n" + larder.read_log()[-2000:])
        obj = self.make_object("shared", "dis-shared.bin", size=300000, seed=140)
        mark = self.mark()
        # No settle(): with auth off nobody is an admin, so /_larder/stats is closed. Each view is read
        # until it is a HIT instead (bounded), which is what settling is for.
        for route in self.routes_of(obj, "json media", "json metadata", "xml GET"):
            self.assertEqual(self.ask(route.path, OWNER).status, 200, route.label)
        for route in self.routes_of(obj, "json media", "xml GET"):
            self.assertTrue(harness.wait_until(lambda: self.ask(route.path, OWNER).x_cache == "HIT", 5),
                            "%s: never a HIT for the token that filled it" % route.label)
        for route in self.routes_of(obj, "json media", "xml GET"):
            m = self.mark()
            got = self.ask(route.path, OWNER)
            self.assertEqual((got.status, got.x_cache, got.body), (200, "HIT", obj.data), "same token, " + route.label)
            self.assertEqual(self.api_since(m), [], route.label)
            got, _, api = self.compare_as(obj, W_OWNER2, route.label, "another token of the owner's")
            self.assertEqual([(e["identity"], e["status"]) for e in api], [(OWNER_EMAIL, 304)], route.label)
            got, want, _ = self.compare_as(obj, W_OTHER, route.label, "stranger")
            self.assertEqual((got.status, got.body), (403, want.body))
        self.assertEqual(self.tokeninfo_since(mark), [], "tokeninfo asked with auth disabled")

    def write_token_file(self, path, entries):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(entries, f)
        os.replace(tmp, path)

    def test_token_file_and_sighup(self):
        """auth.token_file: its tokens are accepted with no tokeninfo request (no expiry, a future expiry
        as epoch seconds and as RFC 3339), one expired in the file is refused (401); the token-file
        identity owns what it filled (HITs, no upstream request). After the file is rewritten (one token
        removed, and revoked upstream; one added that only the file knows) and larder gets SIGHUP, the
        added token reads the entry as a HIT and the removed one is refused, each seen within 10 s.
        threat: a token retired from the file keeps working; a reload needs a restart (or kills larder)."""
        now = time.time()
        token_file = os.path.join(self.workdir, "tokens.json")
        later = int(now + 365 * 86400)
        entries = [{"token": TOK_SVC, "identity": SVC_EMAIL},
                   {"token": TOK_SVC_EPOCH, "identity": SVC_EMAIL, "expires": later},
                   {"token": TOK_SVC_RFC, "identity": SVC_EMAIL,
                    "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(later))},
                   {"token": TOK_SVC_OLD, "identity": SVC_EMAIL, "expires": "2020-01-01T00:00:00Z"}]
        self.write_token_file(token_file, entries)
        self.emulator.control("POST", "tokens", {TOK_SVC: SVC_EMAIL, TOK_SVC_EPOCH: SVC_EMAIL, TOK_SVC_RFC: SVC_EMAIL})
        larder = self.start("file", token_file=token_file)
        obj = self.make_object("shared", "tf-svc.bin", readers=[SVC_EMAIL], size=300000, seed=150)
        svc = Who("svc", "owner", TOK_SVC, SVC_EMAIL)
        mark = self.mark()
        self.warm(obj, svc)
        for token in (TOK_SVC, TOK_SVC_EPOCH, TOK_SVC_RFC):
            for route in self.routes_of(obj, "json media", "xml GET", "json metadata"):
                what = "token-file token %s, %s" % (token, route.label)
                m = self.mark()
                got, _, api = self.compare(obj, Who("svc", "owner", token, SVC_EMAIL), route, what)
                self.assertEqual((got.status, got.x_cache, api), (200, "HIT", []), what)
        file_tokens = (TOK_SVC, TOK_SVC_EPOCH, TOK_SVC_RFC)
        self.assertEqual([e for e in self.tokeninfo_since(mark) if any(t in e["path"] for t in file_tokens)], [],
                         "token-file tokens were sent to tokeninfo")
        got = self.ask(self.routes_of(obj, "json media")[0].path, bearer(TOK_SVC_OLD))
        self.assertInvalidCredentials(got, "json", "GET", "a token expired in the file")
        # Rotate: TOK_SVC out of the file (and revoked upstream), TOK_SVC_NEW in (the file alone knows it).
        self.write_token_file(token_file, [e for e in entries if e["token"] != TOK_SVC] +
                              [{"token": TOK_SVC_NEW, "identity": SVC_EMAIL}])
        self.emulator.control("POST", "tokens", {TOK_SVC: None})
        larder.proc.send_signal(signal.SIGHUP)
        media = self.routes_of(obj, "json media")[0].path
        self.assertTrue(harness.wait_until(lambda: self.ask(media, bearer(TOK_SVC_NEW)).status == 200, 10),
                        "the token added to the file was not accepted within 10 s of SIGHUP")
        self.assertIsNone(larder.proc.poll(), "larder exited on SIGHUP")
        mark = self.mark()
        got = self.ask(media, bearer(TOK_SVC_NEW))
        self.assertEqual((got.status, got.x_cache, got.body), (200, "HIT", obj.data), "the added token")
        self.assertEqual(self.upstream_since(mark), [], "the added token")
        self.assertTrue(harness.wait_until(lambda: self.ask(media, bearer(TOK_SVC)).status == 401, 10),
                        "the token removed from the file still works 10 s after SIGHUP")
        for route in self.routes_of(obj, "json media", "xml GET", "json metadata"):
            got = self.ask(route.path, bearer(TOK_SVC))
            self.assertInvalidCredentials(got, route.api, "GET", "the removed token, " + route.label)
            self.assertNoFacts(got, None, obj, route.label)


if __name__ == "__main__":
    harness.main()
