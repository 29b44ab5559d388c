#!/usr/bin/env python3
"""test_uploads.py - writes through larder reach upstream as the client sent them (issue 8, first part).

Uploads pass through larder to the bucket before larder answers. What changes
the result of a write must reach upstream untouched: preconditions
(ifGenerationMatch=0 and the rest), content type and encoding, custom
metadata, ACLs (predefinedAcl, x-goog-acl), KMS and customer-supplied key
headers. The witness is the emulator's request log (headers and target as
upstream received them) and the object the emulator then holds.

Two writers racing on one object with ifGenerationMatch=0: exactly one wins,
and a read through larder afterwards returns the winner's bytes, whatever the
cache held before.
"""

import concurrent.futures
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only: its test classes are not collected here)

OWNER = tc.OWNER
KEY = "A" * 43 + "="  # a base64 AES-256 key; the emulator does not decrypt, GCS would
KEY_SHA = "B" * 43 + "="
KMS = "projects/p/locations/us/keyRings/r/cryptoKeys/k"


class UploadPassThroughTest(tc.CacheTestCase):

    def last_write(self, method, fragment):
        entries = [e for e in self.emulator.counters()["log"] if e["method"] == method and fragment in e["path"]]
        self.assertTrue(entries, "no %s of %s reached upstream" % (method, fragment))
        return entries[-1]

    def test_xml_put_headers_reach_upstream_untouched(self):
        headers = dict(OWNER, **{
            "Content-Type": "text/csv", "Content-Encoding": "gzip", "Cache-Control": "private, max-age=7",
            "Content-Disposition": "attachment; filename=\"a.csv\"", "x-goog-meta-color": "blue",
            "x-goog-meta-Shape": "Round", "x-goog-acl": "public-read", "x-goog-if-generation-match": "0",
            "x-goog-storage-class": "NEARLINE", "x-goog-encryption-kms-key-name": KMS})
        r = self.get("/%s/xml-put.csv" % self.bucket, headers, method="PUT", body=b"gzipped?")
        self.assertEqual(r.status, 200, r.body[:300])
        sent = self.last_write("PUT", "/xml-put.csv")["headers"]
        for name in ("Content-Type", "Content-Encoding", "Cache-Control", "Content-Disposition", "x-goog-acl",
                     "x-goog-if-generation-match", "x-goog-storage-class", "x-goog-encryption-kms-key-name"):
            self.assertEqual(sent.get(name), headers[name], name)
        self.assertEqual(sent.get("x-goog-meta-color"), "blue")
        self.assertEqual(sent.get("x-goog-meta-shape"), "Round")
        resource = json.loads(self.get("/storage/v1/b/%s/o/xml-put.csv" % self.bucket, OWNER).body)
        self.assertEqual((resource["contentType"], resource.get("contentEncoding")), ("text/csv", "gzip"))
        self.assertEqual(resource["metadata"], {"color": "blue", "shape": "Round"})

    def test_customer_key_headers_reach_upstream_untouched(self):
        csek = {"x-goog-encryption-algorithm": "AES256", "x-goog-encryption-key": KEY,
                "x-goog-encryption-key-sha256": KEY_SHA}
        r = self.get("/%s/csek.bin" % self.bucket, dict(OWNER, **csek), method="PUT", body=b"secret")
        self.assertEqual(r.status, 200, r.body[:300])
        sent = self.last_write("PUT", "/csek.bin")["headers"]
        for name, value in csek.items():
            self.assertEqual(sent.get(name), value, name)

    def test_json_upload_parameters_reach_upstream_untouched(self):
        query = urllib.parse.urlencode([("uploadType", "media"), ("name", "json up/ü.bin"),
                                        ("ifGenerationMatch", "0"), ("predefinedAcl", "publicRead"),
                                        ("kmsKeyName", KMS), ("contentEncoding", "gzip")])
        path = "/upload/storage/v1/b/%s/o?%s" % (self.bucket, query)
        r = self.get(path, dict(OWNER, **{"Content-Type": "application/x-thing"}), method="POST", body=b"abc")
        self.assertEqual(r.status, 200, r.body[:300])
        entry = self.last_write("POST", "/upload/storage/v1/b/%s/o" % self.bucket)
        got = urllib.parse.parse_qsl(urllib.parse.urlsplit(entry["path"]).query, keep_blank_values=True)
        self.assertEqual(sorted(got), sorted(urllib.parse.parse_qsl(query)))
        self.assertEqual(entry["headers"].get("Content-Type"), "application/x-thing")
        resource = json.loads(r.body)
        self.assertEqual((resource["name"], resource["contentType"]), ("json up/ü.bin", "application/x-thing"))

    def test_precondition_failure_is_upstreams_and_changes_nothing(self):
        """ifGenerationMatch=0 on an object that exists: upstream's 412, passed on; the cached copy (and
        so a read's answer) is the original."""
        self.put_object("exists.bin", size=1000, seed=1)
        before = self.get(self.media("exists.bin"), OWNER)
        self.assertEqual(before.status, 200)
        query = urllib.parse.urlencode({"uploadType": "media", "name": "exists.bin", "ifGenerationMatch": "0"})
        r = self.get("/upload/storage/v1/b/%s/o?%s" % (self.bucket, query), OWNER, method="POST", body=b"new")
        direct = tc.http_request(self.emulator.port, "POST", "/upload/storage/v1/b/%s/o?%s" % (self.bucket, query),
                                 OWNER, b"new")
        self.assertEqual((r.status, r.body), (direct.status, direct.body))
        self.assertEqual(r.status, 412)
        self.assertEqual(self.get(self.media("exists.bin"), OWNER).body, before.body)

    def test_two_writers_race_one_wins_and_reads_see_it(self):
        """Two writers with ifGenerationMatch=0 on one name, sent at once: exactly one 200 and one 412,
        and a read through larder afterwards returns the winner's bytes (a read before the race cached
        nothing: the object did not exist)."""
        self.assertEqual(self.get(self.media("race.bin"), OWNER).status, 404)
        bodies = {b"writer-one " * 100, b"writer-two " * 100}
        query = urllib.parse.urlencode({"uploadType": "media", "name": "race.bin", "ifGenerationMatch": "0"})
        path = "/upload/storage/v1/b/%s/o?%s" % (self.bucket, query)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda body: (body, self.get(path, OWNER, method="POST", body=body)), bodies))
        statuses = sorted(r.status for _, r in answers)
        self.assertEqual(statuses, [200, 412], [(r.status, r.body[:200]) for _, r in answers])
        winner = next(body for body, r in answers if r.status == 200)
        self.assertEqual(self.get(self.media("race.bin"), OWNER).body, winner)
        self.assertEqual(tc.http_request(self.emulator.port, "GET", self.media("race.bin"), OWNER).body, winner)


def upload_path(bucket, name, kind="media", **params):
    return "/upload/storage/v1/b/%s/o?%s" % (bucket, urllib.parse.urlencode(dict(uploadType=kind, name=name,
                                                                                 **params)))


class WriteThroughHitTest(tc.CacheTestCase):
    """Once upstream confirmed a write, its bytes are the entry: the next read is a HIT that asks upstream
    nothing (a ttl policy: hits are not revalidated), by the JSON API and by the XML API."""

    larder_config = {"cache": {"default_policy": "ttl:300"}}

    def assertHitWithoutUpstream(self, path, data, headers=OWNER, what=""):
        mark = self.mark()
        r = self.get(path, headers)
        self.assertEqual((r.status, r.x_cache), (200, "HIT"), "%s %s: %s" % (what, path, r.body[:200]))
        self.assertEqual(r.body, data, what)
        self.assertNoUpstream(mark, "for %s %s" % (what, path))
        return r

    def test_json_media_upload_is_a_hit_by_json_and_xml(self):
        data = os.urandom(3 * tc.CHUNK + 1234)
        r = self.get(upload_path(self.bucket, "up/media.bin"), dict(OWNER, **{"Content-Type": "text/plain"}),
                     method="POST", body=data)
        self.assertEqual(r.status, 200, r.body[:300])
        resource = json.loads(r.body)
        self.assertHitWithoutUpstream(self.media("up/media.bin"), data, what="JSON")
        x = self.assertHitWithoutUpstream(self.xml("up/media.bin"), data, what="XML")
        direct = self.direct(self.xml("up/media.bin"), OWNER)
        for name in ("etag", "x-goog-generation", "x-goog-hash", "content-type", "x-goog-stored-content-length"):
            self.assertEqual(x.header(name), direct.header(name), name)
        self.assertEqual(x.header("x-goog-generation"), resource["generation"])
        meta = self.get(self.meta_path("up/media.bin"), OWNER)
        self.assertEqual((meta.status, meta.x_cache), (200, "HIT"))
        self.assertEqual(json.loads(meta.body), resource)

    def test_gsutil_style_multipart_overwrite_is_read_back_new(self):
        """gsutil and gcloud quote the multipart boundary with single quotes and ask for fields=: the old code
        found neither the object's name in the body nor in the partial resource, so it invalidated nothing,
        and a read after the overwrite served the old cached bytes (fails on the old code)."""
        self.put_object("over.bin", data=b"old bytes " * 100)
        self.assertEqual(self.get(self.media("over.bin"), OWNER).body, b"old bytes " * 100)
        new = b"new bytes " * 300
        boundary = "===============5295865220228926421=="
        body = ("--%s\nContent-Type: application/json\nMIME-Version: 1.0\n\n{\"name\": \"over.bin\"}\n"
                "--%s\nContent-Type: application/octet-stream\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary"
                "\n\n" % (boundary, boundary)).encode() + new + ("\n--%s--" % boundary).encode()
        path = "/upload/storage/v1/b/%s/o?alt=json&fields=generation%%2Csize%%2Ccrc32c%%2Cetag%%2Cmd5Hash" \
               "&uploadType=multipart" % self.bucket
        r = self.get(path, dict(OWNER, **{"Content-Type": "multipart/related; boundary='%s'" % boundary}),
                     method="POST", body=body)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(self.object_bytes("over.bin"), new)
        self.assertHitWithoutUpstream(self.media("over.bin"), new, what="after the overwrite")

    def test_xml_put_is_a_hit_and_its_metadata_completes(self):
        """An XML PUT is answered with headers only: larder makes the entry from them and, before it answers,
        gets the whole resource with one metadata GET, so XML, JSON and metadata reads are all hits that
        carry what upstream's would (Last-Modified included)."""
        data = os.urandom(200000)
        r = self.get(self.xml("x/put.bin"), dict(OWNER, **{"Content-Type": "image/png", "x-goog-meta-k": "v"}),
                     method="PUT", body=data)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertHitWithoutUpstream(self.xml("x/put.bin"), data, what="XML")
        self.assertHitWithoutUpstream(self.media("x/put.bin"), data, what="JSON")
        self.assertEqual(self.get(self.meta_path("x/put.bin"), OWNER).x_cache, "HIT")
        want = json.loads(self.direct(self.meta_path("x/put.bin"), OWNER).body)
        direct = self.direct(self.media("x/put.bin"), OWNER)
        mark = self.mark()
        meta = json.loads(self.get(self.meta_path("x/put.bin"), OWNER).body)
        for links in (meta, want):  # they point at larder and at upstream, as they should
            links.pop("selfLink"), links.pop("mediaLink")
        self.assertEqual(meta, want)
        j = self.assertHitWithoutUpstream(self.media("x/put.bin"), data, what="JSON after completion")
        for name in ("last-modified", "etag", "x-goog-storage-class", "content-type", "x-goog-hash"):
            self.assertEqual(j.header(name), direct.header(name), name)
        self.assertNoUpstream(mark, "for reads after the completion")

    def test_customer_key_upload_is_not_cached(self):
        csek = {"x-goog-encryption-algorithm": "AES256", "x-goog-encryption-key": KEY,
                "x-goog-encryption-key-sha256": KEY_SHA}
        self.put_object("csek.bin", data=b"plain old")
        self.assertEqual(self.get(self.media("csek.bin"), OWNER).x_cache, "MISS")
        r = self.get(upload_path(self.bucket, "csek.bin"), dict(OWNER, **csek), method="POST", body=b"secret")
        self.assertEqual(r.status, 200, r.body[:300])
        mark = self.mark()
        read = self.get(self.media("csek.bin"), dict(OWNER, **csek))
        self.assertEqual((read.status, read.x_cache, read.body), (200, "PASS", b"secret"))
        self.assertTrue(self.upstream_since(mark), "a customer-keyed read must go upstream")
        plain = self.get(self.media("csek.bin"), OWNER)
        self.assertEqual(plain.x_cache, "MISS", "neither the old copy nor the keyed upload may stay cached")

    def test_copy_rewrite_and_compose_make_the_destination_hot(self):
        a, b = os.urandom(tc.CHUNK + 10), os.urandom(5000)
        self.put_object("a.bin", data=a)
        self.put_object("b.bin", data=b)
        self.put_object("cold.bin", data=b"not cached")
        for name in ("a.bin", "b.bin"):
            self.assertEqual(self.get(self.media(name), OWNER).x_cache, "MISS")
        self.settle()  # the sources are cached whole once their fills committed
        base = "/storage/v1/b/%s/o" % self.bucket
        r = self.get("%s/a.bin/copyTo/b/%s/o/copied.bin" % (base, self.bucket), OWNER, method="POST", body=b"")
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertHitWithoutUpstream(self.media("copied.bin"), a, what="copyTo")
        r = self.get("%s/b.bin/rewriteTo/b/%s/o/rewritten.bin" % (base, self.bucket), OWNER, method="POST", body=b"")
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertTrue(json.loads(r.body).get("done"), r.body[:300])
        self.assertHitWithoutUpstream(self.media("rewritten.bin"), b, what="rewriteTo")
        r = self.get(self.xml("xcopied.bin"), dict(OWNER, **{"x-goog-copy-source": "/%s/a.bin" % self.bucket}),
                     method="PUT", body=b"")
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertHitWithoutUpstream(self.xml("xcopied.bin"), a, what="XML copy")
        compose = {"sourceObjects": [{"name": "a.bin"}, {"name": "b.bin"}, {"name": "a.bin"}]}
        r = self.get("%s/composed.bin/compose" % base, dict(OWNER, **{"Content-Type": "application/json"}),
                     method="POST", body=json.dumps(compose).encode())
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertHitWithoutUpstream(self.media("composed.bin"), a + b + a, what="compose")
        compose = {"sourceObjects": [{"name": "a.bin"}, {"name": "cold.bin"}]}
        r = self.get("%s/half.bin/compose" % base, dict(OWNER, **{"Content-Type": "application/json"}),
                     method="POST", body=json.dumps(compose).encode())
        self.assertEqual(r.status, 200, r.body[:300])
        read = self.get(self.media("half.bin"), OWNER)
        self.assertEqual((read.x_cache, read.body), ("MISS", a + b"not cached"),
                         "a source that was not cached: the destination is fetched, not guessed")

    def test_resumable_upload_in_chunks_is_a_hit(self):
        data = os.urandom(3 * 512 * 1024 + 777)
        r = self.get(upload_path(self.bucket, "res/file.bin", kind="resumable"),
                     dict(OWNER, **{"Content-Type": "application/json", "X-Upload-Content-Type": "text/csv"}),
                     method="POST", body=b"{}")
        self.assertEqual(r.status, 200, r.body[:300])
        session = urllib.parse.urlsplit(r.header("location"))
        path = session.path + "?" + session.query
        for first in range(0, 3 * 512 * 1024, 512 * 1024):
            chunk = data[first:first + 512 * 1024]
            r = self.get(path, dict(OWNER, **{"Content-Range": "bytes %d-%d/*" % (first, first + len(chunk) - 1)}),
                         method="PUT", body=chunk)
            self.assertEqual(r.status, 308, r.body[:300])
        self.assertEqual(self.stats()["upload_sessions"], 1)
        self.assertEqual(self.stats()["upload_pending_bytes"], 3 * 512 * 1024)
        status = self.get(path, dict(OWNER, **{"Content-Range": "bytes */*"}), method="PUT", body=b"")
        self.assertEqual((status.status, status.header("range")), (308, "bytes=0-%d" % (3 * 512 * 1024 - 1)))
        last = data[3 * 512 * 1024:]
        r = self.get(path, dict(OWNER, **{"Content-Range": "bytes %d-%d/%d" % (3 * 512 * 1024, len(data) - 1,
                                                                                len(data))}),
                     method="PUT", body=last)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(self.stats()["upload_sessions"], 0)
        read = self.assertHitWithoutUpstream(self.media("res/file.bin"), data, what="after the resumable upload")
        self.assertEqual(read.header("content-type"), "text/csv")


class SlowCommitTest(tc.CacheTestCase):
    """A read that arrives after upstream confirmed an upload but before the store committed it is served
    from what was uploaded (the upload's fill is registered like any fill), not fetched again. The store
    here commits at most every 5 s, so the read comes before the commit on any machine that answers an
    upload in less than that; either way it must be a HIT that asks upstream nothing."""

    larder_config = {"cache": {"default_policy": "ttl:300"}, "store": {"commit_interval_ms": 5000}}

    def test_read_before_the_commit_is_served_from_the_upload(self):
        data = os.urandom(2 * tc.CHUNK + 99)
        commits = self.stats()["commits"]
        r = self.get(upload_path(self.bucket, "early.bin"), OWNER, method="POST", body=data)
        self.assertEqual(r.status, 200, r.body[:300])
        mark = self.mark()
        read = self.get(self.media("early.bin"), OWNER)
        self.assertEqual((read.status, read.x_cache, read.body), (200, "HIT", data))
        self.assertNoUpstream(mark, "for a read right after the upload")
        before_commit = self.stats()["commits"] == commits
        harness.wait_until(lambda: self.stats()["objects"] == 1, timeout=20)
        read = self.get(self.media("early.bin"), OWNER)
        self.assertEqual((read.x_cache, read.body), ("HIT", data))
        self.assertNoUpstream(mark, "for reads from the store")
        if not before_commit:
            print("note: the store committed before the first read; it was served from the store")

    def test_many_readers_before_the_commit_each_get_the_whole_upload(self):
        """Eight clients read a 3-chunk upload at once, right after it was confirmed and before the store
        committed it: each a HIT of the whole object (Content-Length and body agree), none asking upstream."""
        data = os.urandom(3 * tc.CHUNK + 4321)
        r = self.get(upload_path(self.bucket, "crowd.bin"), OWNER, method="POST", body=data)
        self.assertEqual(r.status, 200, r.body[:300])
        mark = self.mark()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: self.get(self.media("crowd.bin"), OWNER), range(8)))
        for a in answers:
            self.assertEqual((a.status, a.x_cache, a.header("content-length")), (200, "HIT", str(len(data))))
            self.assertTrue(a.body == data, "a follower got other bytes")
        self.assertNoUpstream(mark, "for readers of a fresh upload")


if __name__ == "__main__":
    harness.main()
