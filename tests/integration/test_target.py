"""test_target.py - the request target is parsed once, and exactly.

Item 1: a raw `#` (or a raw control byte) in the request target is refused
with 400 in the API's own error shape and never reaches upstream; before, the
cache key came from the raw path while the upstream URL lost everything after
`#`, so `GET /B/a#b` stored object a's bytes under the key of `a#b` and a later
`GET /B/a%23b` was served a's bytes from the cache.

Item 7: numbers in the target and in x-goog-if-generation-match are int64,
parsed exactly: 19 digits no longer wrap negative (which read as "absent" and
made a HIT out of a request GCS answers with 412 or 404), numbers outside
int64 get 400 without reaching upstream, and repeated cache-relevant query
parameters make a request pass through uncached instead of "last one wins".

Every test runs under the immutable policy, so an entry filed under the wrong
key, or a request read the wrong way, would be served without revalidation.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import frontdoor_util as fu  # noqa: E402
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only: its test classes are not collected here)

OWNER = tc.OWNER
INT64_MAX = "9223372036854775807"
INT64_MAX_PLUS_1 = "9223372036854775808"
NINETEEN_NINES = "9999999999999999999"      # 19 digits, above int64: used to wrap negative
TWENTY_NINES = "99999999999999999999"       # 20 digits


class TargetCase(tc.CacheTestCase):
    larder_config = {"cache": {"enabled": True, "default_policy": "immutable"}}

    def make_public_bucket(self):
        """Anonymous callers may read and list the bucket: a missing object is a plain 404."""
        self.emulator.control("POST", "acl", {"bucket": self.bucket, "readers": ["allUsers"]})

    def assertJson400(self, r, what):
        self.assertEqual(r.status, 400, "%s: %r" % (what, r))
        try:
            doc = json.loads(r.body)
        except ValueError:
            self.fail("%s: not a JSON error body: %r" % (what, r.body[:300]))
        self.assertEqual(doc["error"]["code"], 400, what)
        self.assertTrue(doc["error"]["message"], what)
        self.assertEqual(doc["error"]["errors"][0]["reason"], "invalid", what)

    def assertXml400(self, r, what):
        self.assertEqual(r.status, 400, "%s: %r" % (what, r))
        text = r.body.decode("utf-8", "replace")
        self.assertTrue(text.startswith("<?xml"), "%s: %r" % (what, text[:300]))
        self.assertIn("<Error><Code>InvalidArgument</Code>", text, what)


# ==========================================================================
# Item 1: `#` and control bytes
# ==========================================================================

class HashInTargetTest(TargetCase):

    def raw(self, path, headers=None):
        """One request whose target goes out byte for byte (http.client sends `#` as given)."""
        mark = self.mark()
        r = self.get(path, headers)
        return r, self.upstream_since(mark)

    def test_xml_raw_hash_is_refused_and_does_not_poison_a_23b(self):
        """GET /B/a#b is a 400 InvalidArgument that never reaches upstream; /B/a%23b is object "a#b".

        Fails on the old code: the raw `#` request was answered 200 with object a's bytes (upstream
        saw GET /B/a) and filed under the key of "a#b", so GET /B/a%23b was then an X-Cache: HIT
        carrying a's bytes ("AAAA...") instead of a#b's."""
        data_a, data_hash = b"A" * 1000 + os.urandom(100), b"H" * 1500 + os.urandom(100)
        self.put_object("a", data_a, readers=["allUsers"])
        self.put_object("a#b", data_hash, readers=["allUsers"])
        raw, raw_upstream = self.raw("/%s/a#b" % self.bucket)
        first = self.get("/%s/a%%23b" % self.bucket)
        self.settle()
        second = self.get("/%s/a%%23b" % self.bucket)
        # The harm first: the escaped name must read the object of that name, from upstream and then from the cache.
        self.assertFalse(first.body == data_a, "GET a%%23b was served object a's bytes: %r" % first)
        self.assertEqual((first.status, first.body), (200, data_hash), first)
        self.assertEqual((second.status, second.x_cache, second.body), (200, "HIT", data_hash), second)
        # And the raw `#` itself: refused in the XML API's shape, without an upstream request.
        self.assertXml400(raw, "raw # (XML)")
        self.assertEqual(raw_upstream, [], "the raw # request reached upstream")

    def test_raw_hash_then_missing_object_is_upstreams_404(self):
        """When "c#x" does not exist, GET c%23x after a raw GET c#x is the emulator's 404, never c's bytes.

        Fails on the old code: the raw GET /B/c#zz fetched object c and cached it under "c#zz", so
        GET /B/c%23zz answered 200 X-Cache: HIT with c's bytes where the emulator says 404 NoSuchKey."""
        self.make_public_bucket()
        data_c = b"C" * 2000 + os.urandom(64)
        self.put_object("c", data_c)
        cases = [("xml", "/%s/c#zz" % self.bucket, "/%s/c%%23zz" % self.bucket),
                 ("json", "/storage/v1/b/%s/o/c#q?alt=media" % self.bucket, self.media("c#q")),
                 ("download", "/download/storage/v1/b/%s/o/c#d?alt=media" % self.bucket,
                  self.media("c#d", download=True))]
        for label, raw_path, escaped_path in cases:
            raw, raw_upstream = self.raw(raw_path)
            self.settle()
            got = self.get(escaped_path)
            want = self.direct(escaped_path)
            self.assertEqual(want.status, 404, (label, want))
            self.assertFalse(got.body == data_c, "%s: %s was served object c's bytes: %r" % (label, escaped_path, got))
            self.assertSameAnswer(got, want, label)
            if label == "xml":
                self.assertXml400(raw, "raw # (%s)" % label)
            else:
                self.assertJson400(raw, "raw # (%s)" % label)
            self.assertEqual(raw_upstream, [], "%s: the raw # request reached upstream" % label)

    def test_json_raw_hash_is_refused_and_a_23b_reads_a_hash_b(self):
        """JSON media GET .../o/a#b?alt=media is a JSON 400 (reason invalid) without upstream; .../o/a%23b is a#b.

        Fails on the old code: /storage/v1/b/B/o/a#b?alt=media was answered 200 with object a's
        JSON resource (upstream saw GET /storage/v1/b/B/o/a, the query cut off with the fragment)
        instead of 400."""
        data_a, data_hash = b"a" * 700 + os.urandom(50), b"#" * 900 + os.urandom(50)
        self.put_object("a", data_a, readers=["allUsers"])
        self.put_object("a#b", data_hash, readers=["allUsers"])
        for label, raw_path in (("json", "/storage/v1/b/%s/o/a#b?alt=media" % self.bucket),
                                ("download", "/download/storage/v1/b/%s/o/a#b?alt=media" % self.bucket),
                                ("json-query", "/storage/v1/b/%s/o/a?alt=media#b" % self.bucket)):
            raw, raw_upstream = self.raw(raw_path)
            self.assertFalse(raw.body == data_a, label)
            self.assertJson400(raw, "raw # (%s)" % label)
            self.assertEqual(raw_upstream, [], "%s: the raw # request reached upstream" % label)
        first = self.get(self.media("a#b"))
        self.assertEqual((first.status, first.body), (200, data_hash), first)
        self.settle()
        second = self.get(self.media("a#b"))
        self.assertEqual((second.status, second.x_cache, second.body), (200, "HIT", data_hash), second)
        other = self.get(self.media("a"))
        self.assertEqual((other.status, other.body), (200, data_a), other)


class ControlBytesInTargetTest(TargetCase):
    """Control bytes cannot reach larder over HTTP/1 (h2o's parser refuses the request line with a
    bare 400), but an HTTP/2 :path is length-prefixed and can carry any byte. So these go over
    larder's TLS listener with a hand-written h2 client."""

    def test_raw_control_bytes_and_space_are_400_in_api_shape(self):
        """A raw byte 0x00-0x20 or 0x7f in :path is a 400 in the API's shape and never reaches upstream.

        Fails on the old code: a raw space (0x20) or tab (0x09) in the path was forwarded to curl,
        which refused the URL, and the client got 502 BadGateway ("URL using bad/illegal format")
        instead of 400; the other control bytes already got 400 from h2o."""
        self.put_object("ctl", b"x" * 100, readers=["allUsers"])
        client = fu.H2Client(self.larder.tls_port, fu.h2_tls_context(self.larder))
        failures = []
        try:
            client.start()
            for byte in (0x00, 0x01, 0x09, 0x0a, 0x0d, 0x1f, 0x20, 0x7f):
                for api, path in (("xml", "/%s/ct%sl" % (self.bucket, chr(byte))),
                                  ("json", "/storage/v1/b/%s/o/ct%sl?alt=media" % (self.bucket, chr(byte))),
                                  ("xml-query", "/%s/ctl?generation=1%s" % (self.bucket, chr(byte)))):
                    mark = self.mark()
                    r = client.get(path)
                    upstream = self.upstream_since(mark)
                    body = bytes(r.body)
                    if api.startswith("xml"):
                        ok = r.status == 400 and body.startswith(b"<?xml") and \
                            b"<Error><Code>InvalidArgument</Code>" in body
                    else:
                        try:
                            doc = json.loads(body)
                            ok = r.status == 400 and doc["error"]["code"] == 400 and \
                                doc["error"]["errors"][0]["reason"] == "invalid"
                        except (ValueError, KeyError, IndexError):
                            ok = False
                    if not ok or upstream:
                        failures.append("byte 0x%02x in %s path: %d %r, upstream %r"
                                        % (byte, api, r.status or 0, body[:120], [e["path"] for e in upstream]))
            # The connection is still good for a normal request.
            r = client.get("/%s/ctl" % self.bucket)
            self.assertEqual((r.status, bytes(r.body)), (200, b"x" * 100), r)
        finally:
            client.close()
        self.assertEqual(failures, [], "\n".join(failures))


# ==========================================================================
# Item 7: numbers are int64, exactly; repeated parameters pass through
# ==========================================================================

class NumbersTest(TargetCase):

    def fill(self, name, data, paths):
        """Puts the object and reads each path until it is a HIT (MISS, then HIT); returns its generation."""
        meta = self.put_object(name, data)
        for path in paths:
            first = self.get(path, OWNER)
            self.assertEqual((first.status, first.body), (200, data), (path, first))
            self.settle()
            again = self.get(path, OWNER)
            self.assertEqual((again.status, again.x_cache, again.body), (200, "HIT", data), (path, again))
        return str(meta["generation"])

    def one(self, path, headers=None):
        mark = self.mark()
        r = self.get(path, dict(OWNER, **(headers or {})))
        return r, self.upstream_since(mark)

    def test_generation_is_exact_int64(self):
        """generation=INT64_MAX is not a hit (upstream's 404 passes through); beyond int64 is a JSON 400.

        Fails on the old code: generation=9223372036854775808 wrapped to a negative number, read as
        "no generation", and was answered 200 X-Cache: HIT with the cached bytes instead of 400."""
        data = os.urandom(4000)
        gen = self.fill("g.bin", data, [self.media("g.bin")])
        self.assertNotEqual(gen, INT64_MAX)
        r, up = self.one(self.media("g.bin", query="generation=" + INT64_MAX))
        want = self.direct(self.media("g.bin", query="generation=" + INT64_MAX), OWNER)
        self.assertEqual(want.status, 404, want)
        self.assertNotEqual(r.x_cache, "HIT", r)
        self.assertSameAnswer(r, want, "generation=INT64_MAX")
        self.assertEqual(len(up), 1, up)
        for value in (INT64_MAX_PLUS_1, NINETEEN_NINES, TWENTY_NINES):
            r, up = self.one(self.media("g.bin", query="generation=" + value))
            self.assertFalse(r.body == data, "generation=%s served the cached bytes: %r" % (value, r))
            self.assertJson400(r, "generation=" + value)
            self.assertEqual(up, [], "generation=%s reached upstream" % value)
        # The cache still serves the plain read.
        r = self.get(self.media("g.bin"), OWNER)
        self.assertEqual((r.status, r.x_cache, r.body), (200, "HIT", data), r)

    def test_preconditions_are_exact_int64(self):
        """ifGenerationMatch=INT64_MAX is a 412; any precondition number beyond int64 is a JSON 400.

        Fails on the old code: ifGenerationMatch=9223372036854775808 (and 9999999999999999999)
        wrapped negative, was taken as absent, and got 200 X-Cache: HIT with the cached bytes; and
        ifGenerationMatch=99999999999999999999 was passed to upstream (412 from the emulator)
        instead of being refused with 400."""
        data = os.urandom(5000)
        self.fill("p.bin", data, [self.media("p.bin")])
        r, up = self.one(self.media("p.bin", query="ifGenerationMatch=" + INT64_MAX))
        self.assertFalse(r.body == data, r)
        self.assertGcsJsonError(r.status, r.body, 412)
        for param in ("ifGenerationMatch", "ifMetagenerationMatch", "ifGenerationNotMatch",
                      "ifMetagenerationNotMatch"):
            for value in (INT64_MAX_PLUS_1, NINETEEN_NINES, TWENTY_NINES):
                query = "%s=%s" % (param, value)
                r, up = self.one(self.media("p.bin", query=query))
                self.assertFalse(r.body == data, "%s served the cached bytes: %r" % (query, r))
                self.assertJson400(r, query)
                self.assertEqual(up, [], "%s reached upstream" % query)

    def test_xml_precondition_header_and_generation_are_exact_int64(self):
        """XML API: x-goog-if-generation-match or ?generation= beyond int64 is an XML 400 without upstream.

        Fails on the old code: x-goog-if-generation-match: 9223372036854775808 wrapped negative and
        was answered 200 X-Cache: HIT with the cached bytes; 99999999999999999999 was passed to
        upstream (412 PreconditionFailed from the emulator) instead of 400 InvalidArgument."""
        data = os.urandom(3000)
        self.fill("x.bin", data, [self.xml("x.bin")])
        r, up = self.one(self.xml("x.bin"), {"x-goog-if-generation-match": INT64_MAX})
        self.assertFalse(r.body == data, r)
        self.assertGcsXmlError(r.status, r.body, 412, "PreconditionFailed")
        for value in (INT64_MAX_PLUS_1, NINETEEN_NINES, TWENTY_NINES):
            r, up = self.one(self.xml("x.bin"), {"x-goog-if-generation-match": value})
            self.assertFalse(r.body == data, "x-goog-if-generation-match: %s served the cached bytes" % value)
            self.assertXml400(r, "x-goog-if-generation-match: " + value)
            self.assertEqual(up, [], "x-goog-if-generation-match: %s reached upstream" % value)
            r, up = self.one(self.xml("x.bin", query="generation=" + value))
            self.assertFalse(r.body == data, "?generation=%s served the cached bytes" % value)
            self.assertXml400(r, "XML generation=" + value)
            self.assertEqual(up, [], "XML generation=%s reached upstream" % value)

    def test_repeated_cache_parameters_pass_through(self):
        """alt=json&alt=media, generation=1&generation=G, ...: X-Cache: PASS, and upstream sees each one.

        Fails on the old code: the last value won, so alt=json&alt=media and
        generation=1&generation=<the cached generation> were answered X-Cache: HIT from the cache
        with no upstream request."""
        data = os.urandom(6000)
        gen = self.fill("r.bin", data, [self.media("r.bin"), self.xml("r.bin")])
        base = "/storage/v1/b/%s/o/r.bin" % self.bucket
        paths = [base + "?alt=json&alt=media", base + "?alt=media&alt=media",
                 base + "?alt=media&generation=1&generation=" + gen,
                 base + "?alt=media&generation=%s&generation=%s" % (gen, gen),
                 base + "?alt=media&generation=1&generation=2",
                 self.xml("r.bin", query="generation=1&generation=" + gen)]
        def params(target):
            return sorted(target.partition("?")[2].split("&"))

        failures = []
        for path in paths:
            for attempt in (1, 2):
                r, up = self.one(path)
                # Forwarded once, with every value it carried (in whatever order larder writes them).
                forwarded = [e for e in up if params(e["path"]) == params(path)]
                if r.x_cache != "PASS" or len(up) != 1 or len(forwarded) != 1:
                    failures.append("%s (#%d): X-Cache %s, upstream %r" % (path, attempt, r.x_cache,
                                                                            [e["path"] for e in up]))
        self.assertEqual(failures, [], "\n".join(failures))
        self.assertLogAgrees()


if __name__ == "__main__":
    harness.main()
