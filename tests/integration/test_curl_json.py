"""test_curl_json.py - the GCS JSON API through larder, driven by real curl.

Covers media, multipart and resumable uploads, downloads with ranges, list,
copy/rewrite/compose/patch/delete, link rewriting, byte-exact object names,
and that credentials reach upstream but never the access log.
"""

import hashlib
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import curlclient  # noqa: E402
import harness  # noqa: E402

if not curlclient.available():
    harness.skip("curl is not installed")

TOKEN = "ya29.larder-test-secret-7f3a"
AUTH = {"Authorization": "Bearer " + TOKEN}

# Names that must round-trip byte-exactly.
AWKWARD_NAMES = [
    "plain.txt",
    "with space/and more spaces.bin",
    "literal%2Fpercent",
    "plus+sign+name",
    "hash#and?question",
    "unicode/\u00fcn\u00efc\u00f8d\u00e9-\u0444\u0430\u0439\u043b-\u65e5\u672c",
    "dots/../not/./normalised",
    "double//slash",
    "quote'\"and<angle>&amp",
    "L" * 1000,
]


class JsonApiTest(harness.LarderTestCase):
    plain_listener = {"h2c": True}  # cleartext HTTP/2 is off unless a listener turns it on

    def setUp(self):
        super().setUp()
        self.emulator.control("POST", "tokens", {TOKEN: "owner@example.com"})

    def url(self, path):
        return self.larder.url + path

    def upload_media(self, name, data, content_type="application/octet-stream"):
        q = urllib.parse.urlencode({"uploadType": "media", "name": name})
        r = curlclient.run(self.url("/upload/storage/v1/b/%s/o?%s" % (self.bucket, q)), "POST",
                           headers=dict(AUTH, **{"Content-Type": content_type}), data=data)
        self.assertEqual(r.status, 200, r.body[:400])
        return json.loads(r.body)

    def object_path(self, name):
        return "/storage/v1/b/%s/o/%s" % (self.bucket, harness.quote_object(name))

    def download(self, name, extra_headers=None, download_path=False):
        prefix = "/download" if download_path else ""
        r = curlclient.run(self.url(prefix + self.object_path(name) + "?alt=media"),
                           headers=dict(AUTH, **(extra_headers or {})))
        return r

    def test_media_upload_download_and_links(self):
        data = os.urandom(1024)
        meta = self.upload_media("a/b.bin", data)
        self.assertEqual(meta["name"], "a/b.bin")
        self.assertEqual(int(meta["size"]), 1024)
        # Links point at larder, so clients that follow them stay on larder.
        self.assertTrue(meta["selfLink"].startswith(self.larder.url + "/storage/v1/"), meta["selfLink"])
        self.assertTrue(meta["mediaLink"].startswith(self.larder.url + "/download/storage/v1/"), meta["mediaLink"])
        r = curlclient.run(meta["mediaLink"], headers=AUTH)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, data)
        for download_path in (False, True):
            r = self.download("a/b.bin", download_path=download_path)
            self.assertEqual(r.status, 200)
            self.assertEqual(hashlib.sha256(r.body).digest(), hashlib.sha256(data).digest())
            self.assertTrue(r.header("etag"))
            self.assertTrue(r.header("x-goog-generation"))
            self.assertIn("md5=", r.header("x-goog-hash"))

    def test_metadata_get_rewrites_links_and_keeps_fields(self):
        self.upload_media("m.txt", b"hello", "text/plain")
        r = curlclient.run(self.url(self.object_path("m.txt")), headers=AUTH)
        self.assertEqual(r.status, 200)
        meta = json.loads(r.body)
        self.assertEqual(meta["contentType"], "text/plain")
        self.assertNotIn(self.emulator.base_url, r.body.decode())
        self.assertEqual(int(r.header("content-length")), len(r.body))
        # A client asking for gzip still gets JSON it can parse.
        r = curlclient.run(self.url(self.object_path("m.txt")), headers=dict(AUTH, **{"Accept-Encoding": "gzip"}))
        self.assertEqual(json.loads(r.body)["name"], "m.txt")

    def test_multipart_upload(self):
        data = os.urandom(5000)
        boundary = "larder_boundary_42"
        body = (b"--" + boundary.encode() + b"\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" +
                json.dumps({"name": "multi.bin", "contentType": "application/x-test"}).encode() +
                b"\r\n--" + boundary.encode() + b"\r\nContent-Type: application/x-test\r\n\r\n" + data +
                b"\r\n--" + boundary.encode() + b"--\r\n")
        r = curlclient.run(self.url("/upload/storage/v1/b/%s/o?uploadType=multipart" % self.bucket), "POST",
                           headers=dict(AUTH, **{"Content-Type": "multipart/related; boundary=" + boundary}),
                           data=body)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(json.loads(r.body)["contentType"], "application/x-test")
        self.assertEqual(self.download("multi.bin").body, data)

    def test_resumable_upload_in_chunks(self):
        chunk = 256 * 1024
        data = os.urandom(chunk * 3 + 1234)
        r = curlclient.run(self.url("/upload/storage/v1/b/%s/o?uploadType=resumable&name=res.bin" % self.bucket),
                           "POST", headers=dict(AUTH, **{"X-Upload-Content-Type": "application/x-res",
                                                         "Content-Type": "application/json"}), data=b"{}")
        self.assertEqual(r.status, 200, r.body[:300])
        location = r.header("location")
        # The session URL points back at larder, not at upstream.
        self.assertTrue(location.startswith(self.larder.url + "/upload/storage/v1/"), location)
        offset = 0
        while offset < len(data):
            end = min(offset + chunk, len(data))
            total = str(len(data)) if end == len(data) else "*"
            r = curlclient.run(location, "PUT", headers={"Content-Range": "bytes %d-%d/%s" % (offset, end - 1, total)},
                               data=data[offset:end])
            if end < len(data):
                self.assertEqual(r.status, 308, r.body[:300])
                self.assertEqual(r.header("range"), "bytes=0-%d" % (end - 1))
                # status query in the middle of the upload
                q = curlclient.run(location, "PUT", headers={"Content-Range": "bytes */*"}, data=b"")
                self.assertEqual(q.status, 308)
                self.assertEqual(q.header("range"), "bytes=0-%d" % (end - 1))
            else:
                self.assertIn(r.status, (200, 201), r.body[:300])
                self.assertEqual(json.loads(r.body)["contentType"], "application/x-res")
            offset = end
        self.assertEqual(self.download("res.bin").body, data)

    def test_resumable_path_prefix(self):
        r = curlclient.run(self.url("/resumable/upload/storage/v1/b/%s/o?uploadType=resumable&name=r2" % self.bucket),
                           "POST", headers=dict(AUTH, **{"Content-Type": "application/json"}), data=b"{}")
        self.assertEqual(r.status, 200, r.body[:300])
        r = curlclient.run(r.header("location"), "PUT", data=b"whole body")
        self.assertIn(r.status, (200, 201))
        self.assertEqual(self.download("r2").body, b"whole body")

    def test_ranges(self):
        data = bytes(range(256)) * 40
        self.upload_media("r.bin", data)
        cases = [("bytes=100-199", 206, data[100:200]), ("bytes=-100", 206, data[-100:]),
                 ("bytes=10000-", 206, data[10000:])]
        for rng, status, expected in cases:
            r = self.download("r.bin", {"Range": rng})
            self.assertEqual(r.status, status, rng)
            self.assertEqual(r.body, expected, rng)
            self.assertTrue(r.header("content-range").startswith("bytes "), rng)
        r = self.download("r.bin", {"Range": "bytes=999999-"})
        self.assertEqual(r.status, 416)

    def test_conditional_get(self):
        self.upload_media("c.bin", b"conditional")
        etag = self.download("c.bin").header("etag")
        r = self.download("c.bin", {"If-None-Match": etag})
        self.assertEqual(r.status, 304)
        self.assertEqual(r.body, b"")
        meta = json.loads(curlclient.run(self.url(self.object_path("c.bin")), headers=AUTH).body)
        r = curlclient.run(self.url(self.object_path("c.bin") + "?ifGenerationMatch=1"), headers=AUTH)
        self.assertEqual(r.status, 412)
        r = curlclient.run(self.url(self.object_path("c.bin") + "?ifGenerationMatch=" + meta["generation"]),
                           headers=AUTH)
        self.assertEqual(r.status, 200)

    def test_list_copy_rewrite_compose_patch_delete(self):
        self.upload_media("dir/one", b"1111")
        self.upload_media("dir/two", b"2222")
        self.upload_media("top", b"top")
        r = curlclient.run(self.url("/storage/v1/b/%s/o?prefix=dir/&delimiter=/" % self.bucket), headers=AUTH)
        listing = json.loads(r.body)
        self.assertEqual(sorted(i["name"] for i in listing["items"]), ["dir/one", "dir/two"])
        for item in listing["items"]:
            self.assertTrue(item["selfLink"].startswith(self.larder.url), item["selfLink"])
        r = curlclient.run(self.url("/storage/v1/b/%s/o?delimiter=/" % self.bucket), headers=AUTH)
        self.assertEqual(json.loads(r.body)["prefixes"], ["dir/"])

        src = self.object_path("dir/one")
        r = curlclient.run(self.url(src + "/copyTo/b/%s/o/copied" % self.bucket), "POST", headers=AUTH, data=b"")
        self.assertEqual(r.status, 200, r.body[:300])
        r = curlclient.run(self.url(src + "/rewriteTo/b/%s/o/rewritten" % self.bucket), "POST", headers=AUTH,
                           data=b"")
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertTrue(json.loads(r.body)["done"])
        compose = {"sourceObjects": [{"name": "dir/one"}, {"name": "dir/two"}], "destination": {}}
        r = curlclient.run(self.url(self.object_path("composed") + "/compose"), "POST",
                           headers=dict(AUTH, **{"Content-Type": "application/json"}),
                           data=json.dumps(compose).encode())
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(self.download("composed").body, b"11112222")
        self.assertEqual(self.download("copied").body, b"1111")
        self.assertEqual(self.download("rewritten").body, b"1111")

        r = curlclient.run(self.url(self.object_path("top")), "PATCH",
                           headers=dict(AUTH, **{"Content-Type": "application/json"}),
                           data=json.dumps({"metadata": {"k": "v"}}).encode())
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(json.loads(r.body)["metadata"], {"k": "v"})
        self.assertEqual(json.loads(r.body)["metageneration"], "2")

        r = curlclient.run(self.url(self.object_path("top")), "DELETE", headers=AUTH)
        self.assertEqual(r.status, 204)
        r = self.download("top")
        self.assertGcsJsonError(r.status, r.body, 404)

    def test_batch_passes_through_with_links_rewritten(self):
        for name in ("batch/one.txt", "batch/two.txt"):
            self.upload_media(name, name.encode(), "text/plain")
        parts = []
        for i, (method, name, body) in enumerate([("GET", "batch/one.txt", None),
                                                  ("PATCH", "batch/two.txt", {"metadata": {"k": "v"}}),
                                                  ("GET", "batch/missing.txt", None)]):
            inner = "%s %s HTTP/1.1\r\n" % (method, self.object_path(name))
            if body is not None:
                payload = json.dumps(body)
                inner += "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
            else:
                inner += "\r\n"
            parts.append("--b0undary\r\nContent-Type: application/http\r\nContent-ID: <item%d>\r\n\r\n%s\r\n"
                         % (i, inner))
        r = curlclient.run(self.url("/batch/storage/v1"), "POST", data=("".join(parts) + "--b0undary--\r\n").encode(),
                           headers=dict(AUTH, **{"Content-Type": "multipart/mixed; boundary=b0undary"}))
        self.assertEqual(r.status, 200, r.body[:400])
        text = r.body.decode()
        self.assertNotIn(self.emulator.base_url, text)
        self.assertEqual(int(r.header("content-length")), len(r.body))
        boundary = r.header("content-type").split("boundary=")[1].strip('"')
        answers = [p for p in text.split("--" + boundary) if p.strip() not in ("", "--")]
        self.assertEqual(len(answers), 3)
        statuses = []
        for answer in answers:
            _, _, response = answer.partition("\r\n\r\n")
            head, _, body = response.partition("\r\n\r\n")
            body = body[:-2] if body.endswith("\r\n") else body
            statuses.append(int(head.split()[1]))
            length = [line.split(":", 1)[1] for line in head.split("\r\n") if line.lower().startswith("content-length:")]
            self.assertEqual([int(v) for v in length], [len(body.encode())], head)
            if statuses[-1] == 200:
                resource = json.loads(body)
                self.assertTrue(resource["selfLink"].startswith(self.larder.url + "/storage/v1/"), resource)
                self.assertTrue(resource["mediaLink"].startswith(self.larder.url + "/download/"), resource)
        self.assertEqual(statuses, [200, 200, 404])
        self.assertEqual(json.loads(answers[1].split("\r\n\r\n", 2)[2].strip())["metadata"], {"k": "v"})

    def test_awkward_object_names_round_trip(self):
        for i, name in enumerate(AWKWARD_NAMES):
            data = ("payload %d for %r" % (i, name)).encode()
            meta = self.upload_media(name, data)
            self.assertEqual(meta["name"], name)
            r = self.download(name)
            self.assertEqual(r.status, 200, name)
            self.assertEqual(r.body, data, name)
            r = curlclient.run(self.url(self.object_path(name)), headers=AUTH)
            self.assertEqual(json.loads(r.body)["name"], name)
        r = curlclient.run(self.url("/storage/v1/b/%s/o" % self.bucket), headers=AUTH)
        self.assertEqual(sorted(i["name"] for i in json.loads(r.body)["items"]), sorted(AWKWARD_NAMES))

    def test_credentials_reach_upstream_but_not_the_log(self):
        self.upload_media("secret.bin", b"s")
        r = curlclient.run(self.url(self.object_path("secret.bin") + "?alt=media&access_token=" + TOKEN))
        self.assertEqual(r.status, 200)
        # Without a token the emulator refuses: larder passes the 401 through untouched.
        r = curlclient.run(self.url(self.object_path("secret.bin") + "?alt=media"))
        self.assertEqual(r.status, 401)
        log = self.emulator.counters()["log"]
        identities = [entry.get("identity") for entry in log if entry["method"] == "POST"]
        self.assertIn("owner@example.com", identities, log[-5:])
        larder_log = self.larder.read_log()
        self.assertNotIn(TOKEN, larder_log)
        entries = self.larder.access_log()
        self.assertTrue(any(e["path"].startswith("/storage/v1/b/%s/o/secret.bin" % self.bucket) for e in entries))
        for e in entries:
            for key in ("method", "route", "status", "bytes", "upstream_ms", "cache"):
                self.assertIn(key, e)
            self.assertIn(e["cache"], ("PASS", "MISS", "HIT", "REVALIDATED"), e)
            # Writes never use the cache; media reads of one object always do.
            if e["method"] != "GET":
                self.assertEqual(e["cache"], "PASS", e)
            elif "alt=media" in e["path"] and "/o/" in e["path"]:
                self.assertNotEqual(e["cache"], "PASS", e)

    def test_x_goog_headers_reach_upstream(self):
        meta = self.upload_media("g.bin", b"gen")
        # A precondition sent only as a header must reach upstream to fail.
        r = curlclient.run(self.url("/%s/g.bin" % self.bucket), "PUT",
                           headers=dict(AUTH, **{"x-goog-if-generation-match": "1"}), data=b"new")
        self.assertEqual(r.status, 412, r.body[:300])
        r = curlclient.run(self.url("/%s/g.bin" % self.bucket), "PUT",
                           headers=dict(AUTH, **{"x-goog-if-generation-match": meta["generation"],
                                                 "x-goog-meta-colour": "blue"}), data=b"new")
        self.assertEqual(r.status, 200, r.body[:300])
        meta = json.loads(curlclient.run(self.url(self.object_path("g.bin")), headers=AUTH).body)
        self.assertEqual(meta["metadata"], {"colour": "blue"})

    def test_http2_and_tls(self):
        self.upload_media("h2.bin", b"over h2")
        path = self.object_path("h2.bin") + "?alt=media"
        r = curlclient.run(self.larder.tls_url + path, headers=AUTH,
                           extra=["--cacert", self.ca.ca_cert, "--http2"])
        self.assertEqual((r.status, r.http_version, r.body), (200, "2", b"over h2"))
        r = curlclient.run(self.larder.tls_url + path, headers=AUTH,
                           extra=["--cacert", self.ca.ca_cert, "--http1.1"])
        self.assertEqual((r.status, r.http_version, r.body), (200, "1.1", b"over h2"))
        r = curlclient.run(self.larder.url + path, headers=AUTH, extra=["--http2-prior-knowledge"])
        self.assertEqual((r.status, r.http_version, r.body), (200, "2", b"over h2"))
        # A client that does not trust the CA fails the handshake.
        r = curlclient.run(self.larder.tls_url + path, headers=AUTH)
        self.assertNotEqual(r.exit_code, 0)


if __name__ == "__main__":
    harness.main()
