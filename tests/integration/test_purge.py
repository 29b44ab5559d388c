#!/usr/bin/env python3
"""test_purge.py - POST /_larder/v1/purge (issue 9, part 2).

Purge drops cached objects by user (the objects that user owns), by bucket
(and prefix), by object, or all, and answers how many objects and bytes it
dropped. Only admins may purge, but a user may purge their own objects. The
witnesses: X-Cache of the reads after the purge (a purged object is a MISS
again, the others stay HITs) and the store's object count. A purge racing a
fill (the fill's upstream answer held until after the purge) leaves no stale
object: the fill does not bring it back.
"""

import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only)

OWNER, READER, OTHER = tc.OWNER, tc.READER, tc.OTHER


class PurgeFixture(tc.CacheTestCase):
    """Each test starts with an empty cache holding five objects: owner@ fills a/1, a/2 and b/1 in the
    test's bucket and x in a second one; reader@ fills r/1."""

    larder_config = {"cache": {"default_policy": "ttl:300"}}

    def setUp(self):
        super().setUp()
        # One larder serves the whole class: start each test with an empty cache.
        self.purge({"all": True})
        harness.wait_until(lambda: self.stats()["objects"] == 0, timeout=10)
        self.other_bucket = self.bucket + "-2"
        self.emulator.create_bucket(self.other_bucket)
        for bucket in (self.bucket, self.other_bucket):
            self.emulator.control("POST", "acl", {"bucket": bucket, "readers": [tc.READER_EMAIL]})
        self.sizes = {}
        for bucket, name, who, size in ((self.bucket, "a/1", OWNER, 1000), (self.bucket, "a/2", OWNER, 2000),
                                        (self.bucket, "b/1", OWNER, 3000), (self.other_bucket, "x", OWNER, 4000),
                                        (self.bucket, "r/1", READER, 5000)):
            self.put_object(name, data=os.urandom(size), bucket=bucket)
            self.assertEqual(self.get(self.media(name, bucket), who).x_cache, "MISS")
            self.sizes[(bucket, name)] = size
        self.settle()

    def purge(self, body, headers=OWNER, status=200):
        got, _, answer = self.larder.request("POST", "/_larder/v1/purge", body=json.dumps(body).encode(),
                                             headers=dict(headers, **{"Content-Type": "application/json"}))
        self.assertEqual(got, status, answer[:300])
        return json.loads(answer) if status == 200 else answer

    def cached(self):
        """Which of the objects are still HITs, reading each as its filler (a purged one is filled again)."""
        still = set()
        for (bucket, name) in self.sizes:
            who = READER if name == "r/1" else OWNER
            if self.get(self.media(name, bucket), who).x_cache == "HIT":
                still.add((bucket, name))
        return still


class PurgeTest(PurgeFixture):

    def test_purge_by_user_removes_exactly_that_users_objects(self):
        answer = self.purge({"user": tc.READER_EMAIL}, headers=READER)  # a user may purge their own
        self.assertEqual(answer, {"objects": 1, "bytes": 5000})
        self.assertEqual(self.cached(), set(self.sizes) - {(self.bucket, "r/1")})

    def test_purge_by_bucket_prefix_and_object(self):
        self.assertEqual(self.purge({"bucket": self.bucket, "prefix": "a/"}), {"objects": 2, "bytes": 3000})
        self.assertEqual(self.purge({"object": "gs://%s/x" % self.other_bucket}), {"objects": 1, "bytes": 4000})
        self.assertEqual(self.cached(), {(self.bucket, "b/1"), (self.bucket, "r/1")})
        # cached() read the purged ones back in: the whole first bucket is four objects again.
        self.settle()
        self.assertEqual(self.purge({"bucket": self.bucket}), {"objects": 4, "bytes": 11000})
        self.assertEqual(self.cached(), {(self.other_bucket, "x")})

    def test_purge_all(self):
        answer = self.purge({"all": True})
        self.assertEqual(answer, {"objects": 5, "bytes": sum(self.sizes.values())})
        harness.wait_until(lambda: self.stats()["objects"] == 0, timeout=10)
        self.assertEqual(self.cached(), set())

    def test_who_may_purge_and_bad_bodies(self):
        self.purge({"user": tc.OWNER_EMAIL}, headers=READER, status=403)   # not their own, not an admin
        self.purge({"all": True}, headers=READER, status=403)
        self.purge({"all": True}, headers={}, status=403)                  # anonymous
        self.purge({"all": True}, headers={"Authorization": "Bearer nope"}, status=401)
        for body in ({}, {"user": "a", "all": True}, {"prefix": "a/"}, {"object": "b/o"}, {"user": 7}, []):
            self.purge(body, status=400)
        self.assertEqual(self.cached(), set(self.sizes), "a refused purge dropped something")

    def test_purge_racing_a_fill_leaves_no_stale_object(self):
        """A fill whose upstream answer is held until after the purge: afterwards the object is not cached
        (the next read is a MISS and gets what upstream has), though the held read itself completes. The
        store does not hold the object while its fill waits, so only the registry of fills finds it: without
        that pass the fill stores the old bytes and this fails with a HIT of them (checked)."""
        self.put_object("late.bin", data=b"old " * 5000)
        self.emulator.faults(match="/late.bin", hold_response_ms=20000)
        got = {}
        reader = threading.Thread(target=lambda: got.update(r=self.get(self.media("late.bin"), OWNER)))
        reader.start()
        harness.wait_until(lambda: self.emulator.control("GET", "faults")["waiting"] == 1, timeout=10)
        self.purge({"bucket": self.bucket})
        self.put_object("late.bin", data=b"new " * 5000)
        self.emulator.control("POST", "release")
        reader.join(30)
        self.assertEqual(got["r"].status, 200)
        self.emulator.clear_faults()
        self.settle()
        r = self.get(self.media("late.bin"), OWNER)
        self.assertEqual((r.x_cache, r.body), ("MISS", b"new " * 5000), "the purged fill came back")


if __name__ == "__main__":
    harness.main()
