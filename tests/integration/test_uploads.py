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


if __name__ == "__main__":
    harness.main()
