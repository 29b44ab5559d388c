"""test_cache.py - larder's read cache: hits, revalidation, policies, ranges, conditionals, gzip.

Every test drives larder with plain HTTP requests and judges it by two
witnesses it cannot influence: the emulator's request log (what went
upstream, with which Range / If-None-Match / identity) and the same request
sent straight to the emulator (what GCS would have answered). X-Cache on each
response must agree with the "cache" field of larder's access log.

The helpers at the top (CacheTestCase, Resp, http_request, ...) are shared by
test_cache_faults.py and test_cache_clients.py.
"""

import base64
import collections
import concurrent.futures
import email.utils
import gzip
import hashlib
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

CHUNK = 1024 * 1024 - 24  # the store's chunk payload: ranges are widened to multiples of this
MiB = 1024 * 1024
OWNER = {"Authorization": "Bearer owner"}
READER = {"Authorization": "Bearer reader"}
OTHER = {"Authorization": "Bearer other"}
OWNER_EMAIL, READER_EMAIL, OTHER_EMAIL = "owner@example.com", "reader@example.com", "other@example.com"
VHOST_SUFFIX = "storage.googleapis.com"

# What a cached answer must carry exactly as upstream sent it.
COMPARED_HEADERS = ("content-range", "content-length", "etag", "x-goog-generation", "x-goog-metageneration",
                    "x-goog-hash", "x-goog-stored-content-length", "x-goog-stored-content-encoding",
                    "content-type", "content-encoding", "last-modified", "cache-control")
# A 304 describes the representation without its payload (RFC 7232 4.1).
NOT_MODIFIED_HEADERS = ("etag", "x-goog-generation", "x-goog-metageneration")


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Resp:
    def __init__(self, status, headers, body, error=None):
        self.status = status
        self.headers = headers  # [(lower-cased name, value)] in order
        self.body = body
        self.error = error      # set when the body was cut short

    def header(self, name):
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None

    @property
    def x_cache(self):
        return self.header("x-cache")

    def __repr__(self):
        return "<%d x-cache=%s len=%d %r>" % (self.status, self.x_cache, len(self.body), self.body[:120])


def http_request(port, method, path, headers=None, body=None, host=None, tls_context=None, timeout=60,
                 sink=None):
    """One request on a fresh connection, sending exactly the headers given (no implicit
    Accept-Encoding). sink(bytes) receives the body instead of buffering it when given."""
    if tls_context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls_context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host or "127.0.0.1:%d" % port)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        hdrs = [(k.lower(), v) for k, v in resp.getheaders()]
        chunks, error, received = [], None, 0
        try:
            while True:
                data = resp.read(1 << 20)
                if not data:
                    break
                received += len(data)
                if sink is not None:
                    sink(data)
                else:
                    chunks.append(data)
        except (http.client.IncompleteRead, ConnectionError, OSError) as e:
            error = e
        # read(amt) returns b"" at an early EOF instead of raising: check the length ourselves.
        declared = resp.getheader("Content-Length")
        if (error is None and method != "HEAD" and resp.status not in (204, 304) and declared is not None
                and received != int(declared)):
            error = http.client.IncompleteRead(b"", int(declared) - received)
        return Resp(resp.status, hdrs, b"".join(chunks), error)
    finally:
        conn.close()


SECRET_PARAMS = ("access_token", "upload_id", "X-Goog-Signature", "Signature", "X-Amz-Signature", "key")


def redact(path):
    """The path as larder's access log prints it: credentials in the query masked."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        parts.append(name + "=***" if eq and name in SECRET_PARAMS else item)
    return base + "?" + "&".join(parts)


def fetched_span(range_header, size):
    """[first, end) of the object a Range header makes upstream send."""
    assert range_header and range_header.startswith("bytes="), range_header
    first, _, last = range_header[6:].partition("-")
    first = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    return first, end


class CacheTestCase(harness.LarderTestCase):
    """LarderTestCase plus the witnesses: X-Cache bookkeeping, emulator log marks, direct requests."""

    def setUp(self):
        super().setUp()
        self.sent = []  # (method, path, X-Cache) of every larder answer that carried X-Cache

    # -- requests -----------------------------------------------------------

    def get(self, path, headers=None, method="GET", host=None, tls=False, body=None, sink=None, timeout=60,
            larder=None):
        larder = larder or self.larder
        if tls:
            resp = http_request(larder.tls_port, method, path, headers, body, host, larder.ssl_context(), timeout,
                                sink)
        else:
            resp = http_request(larder.port, method, path, headers, body, host, None, timeout, sink)
        if resp.x_cache is not None and larder is self.larder:
            self.sent.append((method, redact(path), resp.x_cache))
        return resp

    def direct(self, path, headers=None, method="GET", body=None):
        return http_request(self.emulator.port, method, path, headers, body)

    def media(self, name, bucket=None, query="", download=False):
        prefix = "/download" if download else ""
        q = "alt=media" + ("&" + query if query else "")
        return "%s/storage/v1/b/%s/o/%s?%s" % (prefix, bucket or self.bucket, harness.quote_object(name), q)

    def meta_path(self, name, bucket=None, query=""):
        return "/storage/v1/b/%s/o/%s%s" % (bucket or self.bucket, harness.quote_object(name),
                                            "?" + query if query else "")

    def xml(self, name, bucket=None, query=""):
        return "/%s/%s%s" % (bucket or self.bucket, urllib.parse.quote(name, safe="/"), "?" + query if query else "")

    def put_object(self, name, data=None, size=None, seed=0, bucket=None, **extra):
        """Creates or overwrites an object directly at the emulator; returns its resource."""
        spec = {"bucket": bucket or self.bucket, "name": name}
        if data is not None:
            spec["data_b64"] = base64.b64encode(data).decode()
        else:
            spec.update(size=size, seed=seed)
        spec.update(extra)
        return self.emulator.control("POST", "objects", spec)

    def object_bytes(self, name, bucket=None):
        r = self.direct(self.media(name, bucket), OWNER)
        self.assertEqual(r.status, 200, r)
        return r.body

    # -- emulator witnesses ------------------------------------------------

    def mark(self):
        log = self.emulator.counters()["log"]
        return log[-1]["seq"] if log else 0

    def upstream_since(self, mark, kinds=None):
        # tokeninfo is larder's identity check, not a request to the storage upstream (and is cached).
        entries = [e for e in self.emulator.counters()["log"] if e["seq"] > mark and e["kind"] != "tokeninfo"]
        if kinds is not None:
            entries = [e for e in entries if e["kind"] in kinds]
        return entries

    def assertNoUpstream(self, mark, what=""):
        entries = self.upstream_since(mark)
        self.assertEqual(entries, [], "expected no upstream request %s" % (what,))

    # -- larder witnesses --------------------------------------------------

    def stats(self, larder=None):
        # /_larder/stats answers only auth.admins (owner@example.com in the harness's configuration).
        status, _, body = (larder or self.larder).request("GET", "/_larder/stats", headers=OWNER)
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def restart_larder(self, kill=False, before_start=None, check_log=False):
        """Stops larder (SIGTERM and a clean exit, or SIGKILL), runs before_start(old) if given, then starts a
        new one on the same store and configuration; returns it. check_log: the old one's log must agree with
        every X-Cache its clients saw (assertLogAgrees)."""
        cls = type(self)
        old = cls.larder
        if kill:
            old.proc.kill()
            old.proc.wait()
            old.log.close()
            log = old.read_log()
            self.assertFalse(any(m in log for m in harness.SANITIZER_MARKERS), log[-4000:])
        else:
            old.stop()
        if check_log:
            self.assertLogAgrees(old)
        try:
            if before_start is not None:
                before_start(old)
        finally:
            cls.restarts = getattr(cls, "restarts", 0) + 1
            workdir = os.path.join(cls.workdir, "run%d" % cls.restarts)
            os.makedirs(workdir)
            config = dict(cls.larder_config or {})
            config["store"] = dict(config.get("store", {}), path=old.config["store"]["path"])
            cls.larder = harness.Larder(workdir, self.emulator.base_url, self.ca, config=config)
            self.sent = []
        return cls.larder

    def settle(self, larder=None, timeout=3.0):
        """Waits until the store's writer is idle: two identical stats readings 80 ms apart."""
        deadline = time.monotonic() + timeout
        previous = self.stats(larder)
        while time.monotonic() < deadline:
            time.sleep(0.08)
            current = self.stats(larder)
            if current == previous:
                return current
            previous = current
        return previous

    def assertLogAgrees(self, larder=None):
        """Every X-Cache a client saw is the "cache" field of that request's access log line.

        Log lines are written when a request is disposed of, which can be after
        the client has its answer and sent the next request, so lines are
        matched per (method, path), not by global order."""
        larder = larder or self.larder
        deadline = time.monotonic() + 3
        while True:
            logged = collections.defaultdict(collections.Counter)
            for e in larder.access_log():
                logged[(e["method"], e["path"])][e.get("cache")] += 1
            seen = collections.defaultdict(collections.Counter)
            for method, path, x_cache in self.sent:
                seen[(method, path)][x_cache] += 1
            wrong = {key: (dict(values), dict(logged[key])) for key, values in seen.items()
                     if values - logged[key]}
            if not wrong:
                return
            if time.monotonic() > deadline:
                self.fail("X-Cache seen by clients vs the access log's cache field: %r" % wrong)
            time.sleep(0.1)

    # -- comparisons -------------------------------------------------------

    def assertSameAnswer(self, got, want, what, headers=COMPARED_HEADERS):
        """got (from larder) says what want (the same request straight to the emulator) says."""
        self.assertEqual(got.status, want.status, "%s: status (larder %r, emulator %r)" % (what, got, want))
        headers = list(headers)
        if want.status == 304:
            self.assertEqual(got.body, b"", what)
            # RFC 7232 4.1: a 304 carries the validators a 200 would; where the
            # emulator sends them they must match, where it does not larder may.
            headers = [h for h in NOT_MODIFIED_HEADERS if want.header(h) is not None]
        elif want.status >= 400:
            self.assertErrorShape(got, want, what)
            headers = ["content-range", "cache-control"]
        elif (want.header("content-type") or "").startswith("application/json") and want.body:
            # A JSON resource: larder points its links at itself, so lengths may differ.
            expected = json.loads(want.body.decode().replace(self.emulator.base_url, self.larder.url))
            self.assertEqual(json.loads(got.body), expected, what)
            self.assertEqual(int(got.header("content-length") or len(got.body)), len(got.body), what)
            headers = ["content-type", "cache-control"]  # the media headers do not apply to a resource
        else:
            self.assertTrue(got.body == want.body, "%s: body differs (larder %d bytes, emulator %d)"
                            % (what, len(got.body), len(want.body)))
        for name in headers:
            self.assertEqual(got.header(name), want.header(name), "%s: header %s" % (what, name))

    def assertErrorShape(self, got, want, what):
        if want.body.startswith(b"<?xml"):
            self.assertTrue(got.body.startswith(b"<?xml"), "%s: %r" % (what, got.body[:200]))
            code = want.body.split(b"<Code>")[1].split(b"</Code>")[0]
            self.assertIn(b"<Code>" + code + b"</Code>", got.body, what)
        elif want.body:
            want_err, got_err = json.loads(want.body)["error"], json.loads(got.body)["error"]
            self.assertEqual(got_err["code"], want_err["code"], what)
            self.assertEqual(got_err["errors"][0]["reason"], want_err["errors"][0]["reason"], what)


# ==========================================================================
# Policy "always", with rules for a few named buckets
# ==========================================================================

# Writes whose bytes become the cache entry once upstream confirmed them.
UPLOADS = ("xml_put", "json_media", "multipart", "resumable_query", "resumable_body")

FROZEN_BUCKET = "pol-frozen"
TTL_BUCKET = "pol-ttl"
MIXED_BUCKET = "pol-mixed"
# Long enough that a slow (sanitized, loaded) run still reads inside the window.
TTL_SECONDS = 5


class AlwaysPolicyTest(CacheTestCase):
    larder_config = {"cache": {
        "enabled": True, "default_policy": "always",
        "policies": "%s=immutable;%s=ttl:%d;%s/frozen/=immutable;%s/ttl/=ttl:%d" % (
            FROZEN_BUCKET, TTL_BUCKET, TTL_SECONDS, MIXED_BUCKET, MIXED_BUCKET, TTL_SECONDS)}}

    def test_every_hit_revalidates_with_if_none_match(self):
        data = os.urandom(300000)
        self.put_object("a/obj.bin", data)
        paths = [("json", self.media("a/obj.bin"), None), ("download", self.media("a/obj.bin", download=True), None),
                 ("xml", self.xml("a/obj.bin"), None),
                 ("vhost", "/a/obj.bin", "%s.%s" % (self.bucket, VHOST_SUFFIX))]
        for path in (self.media("a/obj.bin"), self.xml("a/obj.bin")):
            first = self.get(path, OWNER)
            self.assertEqual((first.status, first.x_cache), (200, "MISS"), first)
            self.assertEqual(first.body, data)
        self.settle()
        for label, path, host in paths:
            want = self.direct(path if host is None else self.xml("a/obj.bin"), OWNER)
            mark = self.mark()
            r = self.get(path, OWNER, host=host)
            self.assertEqual(r.status, 200, (label, r))
            self.assertEqual(sha(r.body), sha(data), label)
            self.assertEqual(r.x_cache, "REVALIDATED", (label, r))
            self.assertSameAnswer(r, want, label)
            upstream = self.upstream_since(mark)
            self.assertEqual(len(upstream), 1, (label, upstream))
            last = upstream[0]
            self.assertEqual(last["headers"].get("If-None-Match"), want.header("etag"), (label, last))
            self.assertEqual(last["status"], 304, (label, last))
            self.assertEqual(last["identity"], OWNER_EMAIL, (label, last))
            self.assertEqual(last["bytes"], 0, (label, last))
        self.assertLogAgrees()

    def test_changed_upstream_object_replaces_cached_bytes(self):
        for api in ("json", "xml"):
            name = "c-%s.bin" % api
            path = self.media(name) if api == "json" else self.xml(name)
            old, new = os.urandom(5000), os.urandom(7000)
            self.put_object(name, old)
            self.assertEqual(self.get(path, OWNER).body, old)
            self.settle()
            cached_etag = self.direct(path, OWNER).header("etag")
            self.put_object(name, new)  # a new generation, behind larder's back
            want = self.direct(path, OWNER)
            mark = self.mark()
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.x_cache), (200, "MISS"), (path, r))
            self.assertEqual(r.body, new, path)
            self.assertSameAnswer(r, want, api)
            up = self.upstream_since(mark, ("media_get", "xml_get"))
            self.assertEqual([e["status"] for e in up], [200], up)
            self.assertEqual(up[0]["headers"].get("If-None-Match"), cached_etag, up)
            self.settle()
            mark = self.mark()
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.x_cache, r.body), (200, "REVALIDATED", new), path)
            up = self.upstream_since(mark, ("media_get", "xml_get"))
            self.assertEqual([e["status"] for e in up], [304], up)
        self.assertLogAgrees()

    def test_revalidation_uses_each_callers_credentials(self):
        data = os.urandom(4000)
        self.emulator.control("POST", "acl", {"bucket": self.bucket, "readers": [READER_EMAIL]})
        self.put_object("cred.bin", data)
        self.assertEqual(self.get(self.media("cred.bin"), OWNER).x_cache, "MISS")
        self.settle()
        mark = self.mark()
        r = self.get(self.media("cred.bin"), READER)
        self.assertEqual((r.status, r.body), (200, data))
        self.assertIn(r.x_cache, ("REVALIDATED", "MISS"))
        up = self.upstream_since(mark)
        self.assertEqual([e["identity"] for e in up], [READER_EMAIL], up)
        for headers, label in ((OTHER, "other"), ({}, "anonymous")):
            want = self.direct(self.media("cred.bin"), headers)
            mark = self.mark()
            r = self.get(self.media("cred.bin"), headers)
            self.assertIn(want.status, (401, 403), want)
            self.assertSameAnswer(r, want, label)
            self.assertNotIn(data[:64], r.body, label)
            self.assertEqual(len(self.upstream_since(mark)), 1, label)
        self.assertLogAgrees()

    def test_upstream_404_on_revalidation_evicts(self):
        data = os.urandom(3000)
        meta = self.put_object("gone.bin", data)
        r = self.get(self.media("gone.bin"), OWNER)
        self.assertEqual((r.x_cache, r.body), ("MISS", data))
        self.settle()
        r = self.get(self.media("gone.bin", query="generation=" + meta["generation"]), OWNER)
        self.assertEqual((r.x_cache, r.body), ("HIT", data))
        r = self.direct(self.meta_path("gone.bin"), OWNER, method="DELETE")
        self.assertEqual(r.status, 204, r)
        r = self.get(self.media("gone.bin"), OWNER)
        self.assertGcsJsonError(r.status, r.body, 404)
        self.settle()
        # A read of the deleted generation is immutable; were the entry still in
        # the store, larder would answer it without asking upstream.
        mark = self.mark()
        r = self.get(self.media("gone.bin", query="generation=" + meta["generation"]), OWNER)
        self.assertGcsJsonError(r.status, r.body, 404)
        self.assertEqual(len(self.upstream_since(mark, ("media_get",))), 1)
        self.assertLogAgrees()

    def test_generation_read_is_immutable_under_always(self):
        data = os.urandom(6000)
        meta = self.put_object("g.bin", data)
        gen = "generation=" + meta["generation"]
        r = self.get(self.media("g.bin", query=gen), OWNER)
        self.assertEqual((r.status, r.x_cache, r.body), (200, "MISS", data))
        self.settle()
        for path in (self.media("g.bin", query=gen), self.media("g.bin", query=gen, download=True)):
            mark = self.mark()
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.x_cache, r.body), (200, "HIT", data), path)
            self.assertNoUpstream(mark, path)
        # Without ?generation= the policy applies again: ask upstream.
        mark = self.mark()
        r = self.get(self.media("g.bin"), OWNER)
        self.assertEqual((r.x_cache, r.body), ("REVALIDATED", data))
        self.assertEqual(len(self.upstream_since(mark)), 1)
        # Another generation is not the cached one: it goes upstream (404: not versioned).
        mark = self.mark()
        r = self.get(self.media("g.bin", query="generation=1"), OWNER)
        self.assertGcsJsonError(r.status, r.body, 404)
        self.assertEqual(len(self.upstream_since(mark)), 1)
        self.assertLogAgrees()

    def test_policy_rules_by_bucket_and_prefix(self):
        for b in (FROZEN_BUCKET, TTL_BUCKET, MIXED_BUCKET):
            self.emulator.create_bucket(b)
        cases = [  # bucket, name, policy
            (FROZEN_BUCKET, "any/x.bin", "immutable"),
            (TTL_BUCKET, "any/y.bin", "ttl"),
            (MIXED_BUCKET, "frozen/z.bin", "immutable"),
            (MIXED_BUCKET, "ttl/w.bin", "ttl"),
            (MIXED_BUCKET, "other/v.bin", "always"),
            (MIXED_BUCKET, "frozenish.bin", "always"),  # "frozen/" is a prefix, not "frozen"
            (self.bucket, "any/u.bin", "always"),
        ]
        payload = {}
        for bucket, name, _ in cases:
            payload[(bucket, name)] = os.urandom(2000)
            self.put_object(name, payload[(bucket, name)], bucket=bucket)
            r = self.get(self.media(name, bucket), OWNER)
            self.assertEqual((r.x_cache, r.body), ("MISS", payload[(bucket, name)]), (bucket, name))
        filled = time.monotonic()
        self.settle()
        for bucket, name, policy in cases:
            mark = self.mark()
            r = self.get(self.media(name, bucket), OWNER)
            self.assertEqual(sha(r.body), sha(payload[(bucket, name)]), (bucket, name))
            if policy == "always":
                self.assertEqual(r.x_cache, "REVALIDATED", (bucket, name, policy))
                self.assertEqual(len(self.upstream_since(mark)), 1, (bucket, name))
            else:
                self.assertEqual(r.x_cache, "HIT", (bucket, name, policy))
                self.assertNoUpstream(mark, (bucket, name))
        self.assertLess(time.monotonic() - filled, TTL_SECONDS - 1, "too slow to test the ttl window")
        time.sleep(TTL_SECONDS + 1.1 - (time.monotonic() - filled))
        for bucket, name, policy in cases:
            mark = self.mark()
            r = self.get(self.media(name, bucket), OWNER)
            self.assertEqual(sha(r.body), sha(payload[(bucket, name)]), (bucket, name))
            if policy == "immutable":
                self.assertEqual(r.x_cache, "HIT", (bucket, name))
                self.assertNoUpstream(mark, (bucket, name))
            else:
                self.assertEqual(r.x_cache, "REVALIDATED", (bucket, name, policy))
                up = self.upstream_since(mark)
                self.assertEqual([e["status"] for e in up], [304], (bucket, name, up))
        # A revalidation restarts the ttl window.
        self.settle()
        for bucket, name, policy in cases:
            if policy == "ttl":
                mark = self.mark()
                r = self.get(self.media(name, bucket), OWNER)
                self.assertEqual(sha(r.body), sha(payload[(bucket, name)]), (bucket, name))
                self.assertEqual(r.x_cache, "HIT", "ttl window not restarted by the revalidation: %s/%s"
                                 % (bucket, name))
                self.assertNoUpstream(mark, (bucket, name))
        self.assertLogAgrees()

    def test_ttl_window_is_measured_from_the_fill(self):
        """ttl:N means no upstream request for N seconds after the fill, not "until N clock seconds tick"."""
        self.emulator.create_bucket(TTL_BUCKET)
        name = "window-%s.bin" % self.bucket
        data = os.urandom(1000)
        self.put_object(name, data, bucket=TTL_BUCKET)
        # Fill late in a wall-clock second, read TTL-0.8 s later: a whole-second
        # clock has ticked TTL times by then, but only TTL-0.8 s have passed.
        time.sleep(1.9 - time.time() % 1.0 if time.time() % 1.0 > 0.9 else 0.9 - time.time() % 1.0)
        started = time.monotonic()
        r = self.get(self.media(name, TTL_BUCKET), OWNER)
        self.assertEqual((r.x_cache, r.body), ("MISS", data))
        time.sleep(max(0.0, TTL_SECONDS - 0.8 - (time.monotonic() - started)))
        mark = self.mark()
        r = self.get(self.media(name, TTL_BUCKET), OWNER)
        elapsed = time.monotonic() - started
        # larder's fill time is after `started`, so the entry is younger than elapsed: any time
        # under the ttl proves the window; the margin only absorbs clock granularity.
        self.assertLess(elapsed, TTL_SECONDS - 0.1, "too slow to test the ttl window")
        self.assertEqual(r.body, data)
        self.assertEqual(r.x_cache, "HIT", "revalidated %.2f s after the fill under ttl:%d" % (elapsed, TTL_SECONDS))
        self.assertNoUpstream(mark)
        self.assertLogAgrees()

    def test_uncacheable_requests_pass(self):
        self.put_object("p.bin", b"pass me")
        self.assertEqual(self.get(self.media("p.bin"), OWNER).x_cache, "MISS")
        for path in ("/storage/v1/b/%s/o" % self.bucket, self.meta_path("p.bin", query="fields=name,size"),
                     self.meta_path("p.bin", query="projection=full"), self.xml("p.bin", query="acl"),
                     "/%s" % self.bucket):
            want = self.direct(path, OWNER)
            r = self.get(path, OWNER)
            self.assertEqual(r.status, want.status, (path, r, want))
            self.assertEqual(r.x_cache, "PASS", path)
        r = self.get("/%s/p2.bin" % self.bucket, OWNER, method="PUT", body=b"x")
        self.assertEqual((r.status, r.x_cache), (200, "PASS"))
        self.assertLogAgrees()

    def test_metadata_get_is_cached_and_matches_upstream(self):
        self.emulator.create_bucket(FROZEN_BUCKET)
        name = "meta-%s.txt" % self.bucket
        self.put_object(name, b"meta", bucket=FROZEN_BUCKET, content_type="text/plain", metadata={"k": "v"})
        want = self.direct(self.meta_path(name, FROZEN_BUCKET), OWNER)
        expected = json.loads(want.body.decode().replace(self.emulator.base_url, self.larder.url))
        r = self.get(self.meta_path(name, FROZEN_BUCKET), OWNER)
        self.assertEqual((r.status, r.x_cache), (200, "MISS"), r)
        self.assertEqual(json.loads(r.body), expected)
        self.settle()
        mark = self.mark()
        r = self.get(self.meta_path(name, FROZEN_BUCKET), OWNER)
        self.assertEqual((r.status, r.x_cache), (200, "HIT"), r)
        self.assertEqual(json.loads(r.body), expected)
        self.assertEqual(int(r.header("content-length")), len(r.body))
        self.assertTrue(r.header("content-type").startswith("application/json"), r.headers)
        self.assertNoUpstream(mark)
        # Under "always" a metadata read goes upstream every time.
        self.put_object("m2.txt", b"m2")
        for _ in range(2):
            mark = self.mark()
            r = self.get(self.meta_path("m2.txt"), OWNER)
            self.assertEqual(json.loads(r.body)["name"], "m2.txt")
            self.assertIn(r.x_cache, ("MISS", "REVALIDATED"))
            self.assertEqual(len(self.upstream_since(mark, ("metadata_get",))), 1)
        self.assertLogAgrees()


# ==========================================================================
# Policy "immutable": hits never ask upstream, except for other callers
# ==========================================================================

class ImmutablePolicyTest(CacheTestCase):
    larder_config = {"cache": {"enabled": True, "default_policy": "immutable"}}

    def fill_all_views(self, name, headers=OWNER):
        for path in (self.media(name), self.xml(name), self.meta_path(name)):
            r = self.get(path, headers)
            self.assertEqual(r.status, 200, (path, r))
            self.settle()

    def test_views_filled_back_to_back_are_all_hits(self):
        """JSON media, XML and metadata reads in quick succession (as clients do) each fill their view."""
        for order in ((0, 1, 2), (2, 1, 0), (1, 2, 0)):
            name = "views-%d%d%d.bin" % order
            data = os.urandom(3000)
            self.put_object(name, data)
            paths = [self.media(name), self.xml(name), self.meta_path(name)]
            for i in order:
                r = self.get(paths[i], OWNER)
                self.assertEqual((r.status, r.x_cache), (200, "MISS"), (paths[i], r))
            self.settle()
            mark = self.mark()
            for path in paths:
                r = self.get(path, OWNER)
                self.assertEqual((r.status, r.x_cache), (200, "HIT"), (order, path, r))
            self.assertNoUpstream(mark, order)
        self.assertLogAgrees()

    def test_hit_needs_no_upstream(self):
        data = os.urandom(2 * CHUNK + 4321)
        self.put_object("dir/hit.bin", data, content_type="application/x-hit", cache_control="public, max-age=60")
        vhost = "%s.%s" % (self.bucket, VHOST_SUFFIX)
        views = [("json", self.media("dir/hit.bin"), None, "GET"),
                 ("download", self.media("dir/hit.bin", download=True), None, "GET"),
                 ("xml", self.xml("dir/hit.bin"), None, "GET"),
                 ("vhost", "/dir/hit.bin", vhost, "GET"),
                 ("xml-head", self.xml("dir/hit.bin"), None, "HEAD")]
        wants = {label: self.direct(path if host is None else self.xml("dir/hit.bin"), OWNER, method)
                 for label, path, host, method in views}
        for label, path, host, method in views:
            r = self.get(path, OWNER, host=host, method=method)
            self.assertIn(r.x_cache, ("MISS", "HIT"), label)
            self.assertSameAnswer(r, wants[label], label)
        self.settle()
        self.put_object("dir/hit.bin", b"changed behind larder's back")
        mark = self.mark()
        for label, path, host, method in views:
            r = self.get(path, OWNER, host=host, method=method)
            self.assertEqual(r.x_cache, "HIT", (label, r))
            self.assertSameAnswer(r, wants[label], label)
        self.assertNoUpstream(mark, "for hits under the immutable policy")
        self.assertLogAgrees()

    def test_other_caller_never_gets_cached_bytes(self):
        data = os.urandom(50000)
        meta = self.put_object("secret.bin", data)
        self.emulator.control("POST", "acl", {"bucket": self.bucket, "readers": [READER_EMAIL]})
        self.fill_all_views("secret.bin")
        etag = self.get(self.media("secret.bin"), OWNER).header("etag")
        xml_etag = self.get(self.xml("secret.bin"), OWNER).header("etag")
        gen = "generation=" + meta["generation"]
        probes = [
            ("json", self.media("secret.bin"), {}, "GET"),
            ("download", self.media("secret.bin", download=True), {}, "GET"),
            ("json-gen", self.media("secret.bin", query=gen), {}, "GET"),
            ("json-range", self.media("secret.bin"), {"Range": "bytes=0-99"}, "GET"),
            ("json-inm", self.media("secret.bin"), {"If-None-Match": etag}, "GET"),
            ("json-ifgen", self.media("secret.bin", query="ifGenerationNotMatch=" + meta["generation"]), {}, "GET"),
            ("metadata", self.meta_path("secret.bin"), {}, "GET"),
            ("xml", self.xml("secret.bin"), {}, "GET"),
            ("xml-head", self.xml("secret.bin"), {}, "HEAD"),
            ("xml-inm", self.xml("secret.bin"), {"If-None-Match": xml_etag}, "GET"),
        ]
        for who, creds in (("other", OTHER), ("anonymous", {})):
            for label, path, extra, method in probes:
                headers = dict(creds, **extra)
                want = self.direct(path, headers, method)
                self.assertIn(want.status, (401, 403), (who, label, want))
                mark = self.mark()
                r = self.get(path, headers, method=method)
                what = "%s %s" % (who, label)
                self.assertSameAnswer(r, want, what)
                self.assertNotIn(data[:64], r.body, what)
                up = self.upstream_since(mark)
                self.assertEqual(len(up), 1, "%s must be asked upstream with its own credentials" % what)
                self.assertEqual(up[0]["identity"], OTHER_EMAIL if creds else "anonymous", what)
        # A caller who may read is revalidated with its own credentials, and gets the bytes.
        mark = self.mark()
        r = self.get(self.media("secret.bin"), READER)
        self.assertEqual((r.status, r.body), (200, data))
        self.assertEqual(r.x_cache, "REVALIDATED")
        up = self.upstream_since(mark)
        self.assertEqual([(e["identity"], e["status"]) for e in up], [(READER_EMAIL, 304)], up)
        self.assertLogAgrees()

    def test_query_token_fill_is_not_shared(self):
        """Credentials in ?access_token= are credentials too: such a fill is not anonymous."""
        data = os.urandom(20000)
        self.put_object("qt.bin", data)
        r = self.get(self.media("qt.bin", query="access_token=owner"))
        self.assertEqual((r.status, r.body), (200, data))
        r = self.get(self.xml("qt.bin", query="access_token=owner"))
        self.assertEqual((r.status, r.body), (200, data))
        self.settle()
        # The same credentials hit: the entry is there.
        for path in (self.media("qt.bin", query="access_token=owner"), self.xml("qt.bin", query="access_token=owner")):
            mark = self.mark()
            r = self.get(path)
            self.assertEqual((r.status, r.x_cache, r.body), (200, "HIT", data), path)
            self.assertNoUpstream(mark, path)
        for who, creds in (("other", OTHER), ("anonymous", {})):
            for path in (self.media("qt.bin"), self.xml("qt.bin")):
                want = self.direct(path, creds)
                r = self.get(path, creds)
                self.assertIn(want.status, (401, 403), want)
                self.assertSameAnswer(r, want, "%s reading %s after a ?access_token= fill" % (who, path))
                self.assertNotIn(data[:64], r.body)
        self.assertLogAgrees()

    def test_anonymous_fill_of_public_object_is_shared(self):
        data = os.urandom(8000)
        self.put_object("pub.bin", data, readers=["allUsers"])
        r = self.get(self.media("pub.bin"))
        self.assertEqual((r.status, r.x_cache, r.body), (200, "MISS", data))
        self.settle()
        for creds in ({}, OWNER, OTHER):
            mark = self.mark()
            r = self.get(self.media("pub.bin"), creds)
            self.assertEqual((r.status, r.x_cache, r.body), (200, "HIT", data), creds)
            self.assertNoUpstream(mark, creds)
        self.assertLogAgrees()

    def write_cases(self):
        """(label, function doing the write through larder, expected new bytes or None for deleted)."""
        b = self.bucket
        new = {label: ("new bytes for %s " % label).encode() * 50 for label in (
            "xml_put", "json_media", "multipart", "resumable_query", "resumable_body", "compose", "copy",
            "rewrite", "xml_copy")}
        self.put_object("src-a", b"AAAA")
        self.put_object("src-b", b"BBBB")

        def upload(query, body, ctype="application/octet-stream"):
            r = self.get("/upload/storage/v1/b/%s/o?%s" % (b, query), dict(OWNER, **{"Content-Type": ctype}),
                         method="POST", body=body)
            self.assertEqual(r.status, 200, r)
            return r

        def resumable(name, in_query):
            q = "uploadType=resumable" + ("&name=" + name if in_query else "")
            body = json.dumps({} if in_query else {"name": name}).encode()
            r = upload(q, body, "application/json")
            loc = urllib.parse.urlsplit(r.header("location"))
            data = new["resumable_query" if in_query else "resumable_body"]
            r = self.get(loc.path + "?" + loc.query, {"Content-Range": "bytes 0-%d/%d" % (len(data) - 1, len(data))},
                         method="PUT", body=data)
            self.assertIn(r.status, (200, 201), r)

        def multipart(name):
            boundary = "cache_boundary"
            body = (b"--" + boundary.encode() + b"\r\nContent-Type: application/json\r\n\r\n" +
                    json.dumps({"name": name}).encode() + b"\r\n--" + boundary.encode() +
                    b"\r\nContent-Type: application/octet-stream\r\n\r\n" + new["multipart"] +
                    b"\r\n--" + boundary.encode() + b"--\r\n")
            upload("uploadType=multipart", body, "multipart/related; boundary=" + boundary)

        def post_json(path, doc):
            r = self.get(path, dict(OWNER, **{"Content-Type": "application/json"}), method="POST",
                         body=json.dumps(doc).encode())
            self.assertEqual(r.status, 200, r)

        def expect(status):
            def check(r):
                self.assertEqual(r.status, status, r)
            return check

        return [
            ("xml_put", lambda n: expect(200)(self.get(self.xml(n), OWNER, method="PUT", body=new["xml_put"]))),
            ("json_media", lambda n: upload("uploadType=media&name=" + urllib.parse.quote(n), new["json_media"])),
            ("multipart", multipart),
            ("resumable_query", lambda n: resumable(n, True)),
            ("resumable_body", lambda n: resumable(n, False)),
            ("compose", lambda n: post_json(self.meta_path(n) + "/compose",
                                            {"sourceObjects": [{"name": "src-c1"}, {"name": "src-c2"}],
                                             "destination": {}})),
            ("copy", lambda n: post_json(self.meta_path("src-copy") + "/copyTo/b/%s/o/%s"
                                         % (b, harness.quote_object(n)), {})),
            ("rewrite", lambda n: post_json(self.meta_path("src-rewrite") + "/rewriteTo/b/%s/o/%s"
                                            % (b, harness.quote_object(n)), {})),
            ("xml_copy", lambda n: expect(200)(self.get(self.xml(n), dict(OWNER, **{
                "x-goog-copy-source": "%s/src-xmlcopy" % b}), method="PUT", body=b""))),
            ("json_patch", lambda n: expect(200)(self.get(self.meta_path(n), dict(OWNER, **{
                "Content-Type": "application/json"}), method="PATCH", body=b'{"metadata": {"k": "patched"}}'))),
            ("json_delete", lambda n: expect(204)(self.get(self.meta_path(n), OWNER, method="DELETE"))),
            ("xml_delete", lambda n: expect(204)(self.get(self.xml(n), OWNER, method="DELETE"))),
        ], new

    def test_writes_through_larder_invalidate_at_once(self):
        """A write through larder: the very next read is never the old entry (uploads: a HIT of what was
        written; other writes: a MISS that fetches what upstream now has)."""
        cases, new = self.write_cases()
        half = len(new["compose"]) // 2
        self.put_object("src-c1", new["compose"][:half])
        self.put_object("src-c2", new["compose"][half:])
        self.put_object("src-copy", new["copy"])
        self.put_object("src-rewrite", new["rewrite"])
        self.put_object("src-xmlcopy", new["xml_copy"])
        for label, write, in cases:
            with self.subTest(label):
                self.check_write_invalidates(label, write, new)
        self.assertLogAgrees()

    def check_write_invalidates(self, label, write, new):
        name = "dest/%s.bin" % label
        old = ("old bytes of %s" % label).encode() * 40
        self.put_object(name, old)
        self.fill_all_views(name)
        for path in (self.media(name), self.xml(name), self.meta_path(name)):
            r = self.get(path, OWNER)
            self.assertEqual(r.x_cache, "HIT", (label, path, r))
        write(name)
        # The very next read must not be answered from the old entry.
        for path in (self.media(name), self.xml(name)):
            r = self.get(path, OWNER)
            if label.endswith("delete"):
                self.assertEqual(r.status, 404, (label, path, r))
            elif label == "json_patch":
                self.assertEqual((r.status, r.body, r.header("x-goog-metageneration")), (200, old, "2"),
                                 (label, path))
            else:
                self.assertEqual((r.status, r.body), (200, new[label]), (label, path, r))
            # An upload's bytes are the new entry (issue 8): its next read is a HIT of the new bytes. The sources
            # of compose, copy and rewrite were never read through larder, so their destinations are fetched.
            self.assertEqual(r.x_cache, "HIT" if label in UPLOADS else "MISS", (label, path, r))
        r = self.get(self.meta_path(name), OWNER)
        if label.endswith("delete"):
            self.assertEqual(r.status, 404, (label, r))
        else:
            doc = json.loads(r.body)
            self.assertEqual(doc["metageneration"] if label == "json_patch" else doc["size"],
                             "2" if label == "json_patch" else str(len(new[label])), (label, doc))
        # A JSON upload's answer is the whole resource; an XML PUT's whole resource comes from one metadata GET
        # larder makes in the background, so its metadata read may come before that (MISS) or after (HIT).
        wanted = {"xml_put": ("MISS", "HIT")}.get(label, ("HIT",) if label in UPLOADS else ("MISS",))
        self.assertIn(r.x_cache, wanted, (label, r))

    def test_single_flight_fifty_cold_readers(self):
        size = 8 * MiB
        self.put_object("sf.bin", size=size, seed=7)
        expected = sha(self.object_bytes("sf.bin"))
        self.emulator.control("DELETE", "counters")
        # Upstream takes ~2 s to send it, so all 50 requests overlap the one fill.
        self.emulator.faults(bandwidth_bps=4 * MiB, match="/sf.bin")
        barrier = threading.Barrier(50)

        def read(_):
            barrier.wait()
            digest = hashlib.sha256()
            r = http_request(self.larder.port, "GET", self.media("sf.bin"), OWNER, sink=digest.update, timeout=120)
            return r.status, r.x_cache, r.error, digest.hexdigest()

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(read, range(50)))
        self.emulator.clear_faults()
        for status, x_cache, error, digest in results:
            self.assertEqual((status, error, digest), (200, None, expected))
            self.assertIn(x_cache, ("MISS", "HIT"))
        counters = self.emulator.counters()
        media = [e for e in counters["log"] if e["kind"] == "media_get"]
        self.assertEqual(counters["by_kind"].get("media_get"), 1, media)
        self.assertEqual(counters["media_bytes_sent"], size)
        self.assertEqual(sorted(x for _, x, _, _ in results).count("MISS"), 1, results)

    def test_single_flight_when_a_validation_releases_many(self):
        """Fifty cold reads carrying one token larder has not validated yet all wait for that one validation
        (tokeninfo's answer is held) and are released together, on both worker threads at once: still one
        upstream GET, and one MISS. Before misses registered on two threads at the same moment joined
        (fetch_start_or_join), each thread's first miss started a fill: 2 upstream GETs, and this failed
        in 2 of 3 runs (a race between the two threads, so not every run).
        Holds at any speed: reads that arrive late find the fill registered, or the entry."""
        size = 2 * MiB
        self.put_object("sf-token.bin", size=size, seed=8)
        expected = sha(self.object_bytes("sf-token.bin"))
        self.emulator.control("POST", "tokens", {"sf-fresh-token": OWNER_EMAIL})
        self.emulator.control("DELETE", "counters")
        self.emulator.faults(match="/tokeninfo", hold_ms=30000)

        def read(_):
            digest = hashlib.sha256()
            r = http_request(self.larder.port, "GET", self.media("sf-token.bin"),
                             {"Authorization": "Bearer sf-fresh-token"}, sink=digest.update, timeout=120)
            return r.status, r.x_cache, r.error, digest.hexdigest()

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            futures = [pool.submit(read, i) for i in range(50)]
            self.assertTrue(harness.wait_until(lambda: self.emulator.control("GET", "faults")["waiting"] == 1, 20))
            time.sleep(0.3)  # lets the fifty queue on the validation; the counts below hold either way
            self.emulator.control("POST", "release", {})
            results = [f.result() for f in futures]
        self.emulator.clear_faults()
        for status, x_cache, error, digest in results:
            self.assertEqual((status, error, digest), (200, None, expected))
        counters = self.emulator.counters()
        self.assertEqual(counters["by_kind"].get("tokeninfo"), 1)
        self.assertEqual(counters["by_kind"].get("media_get"), 1,
                         [e for e in counters["log"] if e["kind"] == "media_get"])
        self.assertEqual(sorted(x for _, x, _, _ in results).count("MISS"), 1, results)


# ==========================================================================
# Ranges, conditionals and gzip
# ==========================================================================

class RangeTest(CacheTestCase):
    larder_config = {"cache": {"enabled": True, "default_policy": "immutable"}}

    def assertFetched(self, mark, kinds, expected_span, size, what):
        up = self.upstream_since(mark, kinds)
        self.assertEqual(len(up), 1, "%s: %r" % (what, up))
        rng = up[0]["headers"].get("Range")
        self.assertIsNotNone(rng, "%s: the miss was not widened into a Range: %r" % (what, up[0]))
        self.assertEqual(fetched_span(rng, size), expected_span, "%s: upstream Range %s" % (what, rng))
        return up[0]

    def test_range_miss_fetches_only_covering_chunks(self):
        size = 5 * CHUNK + 1000
        self.put_object("r.bin", size=size, seed=5)
        data = self.object_bytes("r.bin")
        C = CHUNK

        def read(first, last, expect_cache, fetch=None, api="json"):
            rng = "bytes=%d-%s" % (first, "" if last is None else last)
            path = self.media("r.bin") if api == "json" else self.xml("r.bin")
            want = self.direct(path, dict(OWNER, Range=rng))
            mark = self.mark()
            r = self.get(path, dict(OWNER, Range=rng))
            self.assertEqual(r.x_cache, expect_cache, (rng, r))
            self.assertSameAnswer(r, want, "%s %s" % (api, rng))
            end = size if last is None else min(last + 1, size)
            self.assertEqual(r.body, data[first:end], rng)
            if fetch is None:
                self.assertNoUpstream(mark, rng)
            else:
                self.assertFetched(mark, ("media_get", "xml_get"), fetch, size, rng)
            self.settle()

        read(C + 10, C + 99, "MISS", (C, 2 * C))
        read(C + 10, C + 99, "HIT")
        read(C + 500, 2 * C - 1, "HIT")
        read(C, C, "HIT")
        read(3 * C + 5, 3 * C + 6, "MISS", (3 * C, 4 * C))
        # Chunk 1 is stored, chunk 2 is not: a hit that fetches only chunk 2, pinned to the cached generation.
        read(2 * C - 10, 2 * C + 10, "HIT", (2 * C, 3 * C))
        read(2 * C, 4 * C - 1, "HIT")
        read(4 * C + 100, None, "MISS", (4 * C, size))  # open-ended: chunks 4 and 5
        read(size - 1, size - 1, "HIT")
        read(10, 20, "MISS", (0, C))
        # Every chunk is now in the store, though no whole-object read happened.
        mark = self.mark()
        r = self.get(self.media("r.bin"), OWNER)
        self.assertEqual((r.status, r.x_cache), (200, "HIT"))
        self.assertEqual(sha(r.body), sha(data))
        self.assertNoUpstream(mark)
        # The XML API widens its misses too (its view of the object is separate).
        read(C + 7, C + 8, "MISS", (C, 2 * C), api="xml")
        read(C + 9, C + 1000, "HIT", api="xml")
        self.assertLogAgrees()

    def range_cases(self, size):
        C = CHUNK
        return ["bytes=0-0", "bytes=0-99", "bytes=%d-%d" % (C - 1, C), "bytes=%d-" % (size - 1), "bytes=-1",
                "bytes=-100", "bytes=-%d" % (size + 10), "bytes=-%d" % size, "bytes=100-", "bytes=0-",
                "bytes=%d-%d" % (size - 10, size + 100), "bytes=%d-%d" % (C, 2 * C - 1),
                "bytes=%d-" % size, "bytes=%d-%d" % (size + 5, size + 10)]  # the last two: 416

    def test_range_hits_answer_as_gcs(self):
        size = 2 * CHUNK + 777
        self.put_object("h.bin", size=size, seed=9, content_type="application/x-range",
                        cache_control="private, max-age=17")
        for path in (self.media("h.bin"), self.xml("h.bin")):
            self.assertEqual(self.get(path, OWNER).status, 200)
        self.settle()
        cases = []
        for rng in self.range_cases(size):
            for api, path, method in (("json", self.media("h.bin"), "GET"), ("xml", self.xml("h.bin"), "GET"),
                                      ("xml", self.xml("h.bin"), "HEAD")):
                cases.append((api, method, rng, path, self.direct(path, dict(OWNER, Range=rng), method)))
        self.emulator.control("DELETE", "counters")
        for api, method, rng, path, want in cases:
            what = "%s %s %s" % (api, method, rng)
            with self.subTest(what):
                r = self.get(path, dict(OWNER, Range=rng), method=method)
                self.assertSameAnswer(r, want, what)
                self.assertEqual(r.x_cache, "HIT", (what, r))
        self.assertEqual(self.emulator.counters()["total"], 0, "hits went upstream")
        # Forms the cache does not answer itself still come back as GCS answers them.
        for rng in ("bytes=0-1,5-6", "bytes=5-2", "bytes=-0", "items=0-5", "bytes=abc"):
            for path in (self.media("h.bin"), self.xml("h.bin")):
                with self.subTest("%s %s" % (path, rng)):
                    want = self.direct(path, dict(OWNER, Range=rng))
                    r = self.get(path, dict(OWNER, Range=rng))
                    self.assertSameAnswer(r, want, "%s %s" % (path, rng))
        self.assertLogAgrees()

    def test_conditionals_answered_from_cache_as_gcs(self):
        size = 100000
        meta = self.put_object("cond.bin", size=size, seed=3)
        gen, metagen = int(meta["generation"]), int(meta["metageneration"])
        for path in (self.media("cond.bin"), self.xml("cond.bin"), self.meta_path("cond.bin")):
            self.assertEqual(self.get(path, OWNER).status, 200)
            self.settle()
        json_etag = self.direct(self.media("cond.bin"), OWNER).header("etag")
        xml_etag = self.direct(self.xml("cond.bin"), OWNER).header("etag")
        modified = self.direct(self.media("cond.bin"), OWNER).header("last-modified")
        mod_ts = email.utils.parsedate_to_datetime(modified).timestamp()
        past = email.utils.formatdate(mod_ts - 3600, usegmt=True)
        future = email.utils.formatdate(mod_ts + 3600, usegmt=True)
        def header_cases(etag, other_etag):
            return [
                ("", {"If-None-Match": etag}), ("", {"If-None-Match": '"%s"' % etag.strip('"')}),
                ("", {"If-None-Match": '"nope"'}), ("", {"If-None-Match": "*"}),
                ("", {"If-None-Match": '"nope", %s' % etag}),
                ("", {"If-Modified-Since": future}), ("", {"If-Modified-Since": modified}),
                ("", {"If-Modified-Since": past}), ("", {"If-Match": etag}), ("", {"If-Match": '"nope"'}),
                ("", {"If-None-Match": '"nope"', "If-Modified-Since": future}),
                ("", {"If-Match": '"nope"', "Range": "bytes=0-9"}), ("", {"If-None-Match": etag, "Range": "bytes=0-9"}),
                ("", {"If-Match": etag, "Range": "bytes=5-9"}), ("", {"If-None-Match": '"nope"', "Range": "bytes=-9"}),
                # The other API's ETag for the same object.
                ("cross-API etag ", {"If-None-Match": other_etag}), ("cross-API etag ", {"If-Match": other_etag}),
            ]
        xml_header_cases = [{"x-goog-if-generation-match": str(gen)}, {"x-goog-if-generation-match": str(gen + 1)},
                            {"x-goog-if-generation-match": str(gen), "If-None-Match": xml_etag}]
        query_cases = ["ifGenerationMatch=%d" % gen, "ifGenerationMatch=%d" % (gen + 1),
                       "ifGenerationNotMatch=%d" % gen, "ifGenerationNotMatch=%d" % (gen + 1),
                       "ifMetagenerationMatch=%d" % metagen, "ifMetagenerationMatch=%d" % (metagen + 1),
                       "ifMetagenerationNotMatch=%d" % metagen, "ifMetagenerationNotMatch=%d" % (metagen + 1),
                       "ifGenerationMatch=%d&ifMetagenerationNotMatch=%d" % (gen, metagen)]
        requests = []
        for label, h in header_cases(json_etag, xml_etag):
            requests.append(("%sjson media %s" % (label, h), self.media("cond.bin"), h))
        for label, h in header_cases(xml_etag, json_etag):
            requests.append(("%sxml %s" % (label, h), self.xml("cond.bin"), h))
        for h in xml_header_cases:
            requests.append(("xml %s" % h, self.xml("cond.bin"), h))
        for q in query_cases:
            requests.append(("json media ?%s" % q, self.media("cond.bin", query=q), {}))
            requests.append(("json metadata ?%s" % q, self.meta_path("cond.bin", query=q), {}))
        wants = [self.direct(path, dict(OWNER, **h)) for _, path, h in requests]
        statuses = sorted(set(w.status for w in wants))
        self.assertEqual(statuses, [200, 206, 304, 412], "the cases should cover every outcome")
        self.emulator.control("DELETE", "counters")
        for (what, path, h), want in zip(requests, wants):
            with self.subTest(what):
                r = self.get(path, dict(OWNER, **h))
                self.assertSameAnswer(r, want, what)
                self.assertEqual(r.x_cache, "HIT", (what, r))
        self.assertEqual(self.emulator.counters()["total"], 0, "conditionals went upstream")
        self.assertLogAgrees()


class GzipTest(CacheTestCase):
    larder_config = {"cache": {"enabled": True, "default_policy": "immutable"}}

    def gzip_object(self, name):
        plain = (b"line of text that compresses well %d\n" * 3000) % tuple(range(3000))
        packed = gzip.compress(plain)
        self.put_object(name, packed, content_type="text/plain", content_encoding="gzip")
        return plain, packed

    def check_plain(self, path, plain, headers):
        """A client that did not ask for gzip gets the decompressed bytes, from upstream."""
        want = self.direct(path, headers)
        mark = self.mark()
        r = self.get(path, headers)
        self.assertEqual((r.status, r.body), (200, plain), (path, headers, r))
        self.assertIsNone(r.header("content-encoding"), r.headers)
        self.assertNotEqual(r.x_cache, "HIT", (path, headers))
        self.assertSameAnswer(r, want, "plain %s %s" % (path, headers))
        self.assertEqual(len(self.upstream_since(mark)), 1)

    def check_gzip(self, path, packed, expect_cache, headers):
        want = self.direct(path, headers)
        mark = self.mark()
        r = self.get(path, headers)
        self.assertEqual((r.status, r.x_cache), (200, expect_cache), (path, headers, r))
        self.assertEqual(r.header("content-encoding"), "gzip")
        self.assertEqual(r.body, packed)
        self.assertSameAnswer(r, want, "gzip %s %s" % (path, headers))
        if expect_cache == "HIT":
            self.assertNoUpstream(mark, path)
        self.settle()

    def test_gzip_client_first_then_plain_client(self):
        plain, packed = self.gzip_object("gz1.txt")
        gz = dict(OWNER, **{"Accept-Encoding": "gzip"})
        for path in (self.media("gz1.txt"), self.xml("gz1.txt")):
            self.check_gzip(path, packed, "MISS", gz)
            self.check_gzip(path, packed, "HIT", gz)
            self.check_gzip(path, packed, "HIT", dict(OWNER, **{"Accept-Encoding": "deflate, gzip;q=0.8"}))
            self.check_plain(path, plain, OWNER)
            self.check_plain(path, plain, dict(OWNER, **{"Accept-Encoding": "identity"}))
            self.check_plain(path, plain, dict(OWNER, **{"Accept-Encoding": "gzip;q=0"}))
            self.check_gzip(path, packed, "HIT", gz)
        # A range of a gzip object is a range of the stored (compressed) bytes.
        for path in (self.media("gz1.txt"), self.xml("gz1.txt")):
            want = self.direct(path, dict(gz, Range="bytes=10-99"))
            r = self.get(path, dict(gz, Range="bytes=10-99"))
            self.assertEqual(r.x_cache, "HIT")
            self.assertSameAnswer(r, want, "gzip range")
        self.assertLogAgrees()

    def test_plain_client_first_then_gzip_client(self):
        plain, packed = self.gzip_object("gz2.txt")
        gz = dict(OWNER, **{"Accept-Encoding": "gzip"})
        for path in (self.media("gz2.txt"), self.xml("gz2.txt")):
            self.check_plain(path, plain, OWNER)
            self.settle()
            self.check_plain(path, plain, OWNER)  # the transcoded answer was not cached
            self.check_gzip(path, packed, "MISS", gz)
            self.check_gzip(path, packed, "HIT", gz)
            self.check_plain(path, plain, OWNER)
        self.assertLogAgrees()


if __name__ == "__main__":
    harness.main()
