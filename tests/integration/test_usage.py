#!/usr/bin/env python3
"""test_usage.py - GET /_larder/v1/usage: per-user accounting (issue 9, part 3).

Per user: cached_bytes (what the store holds of the objects the user owns,
counted once however many others read them), served_bytes (sent to the
user from the cache), fetched_bytes (sent to the user as it came from
upstream), pinned_bytes. The figures must match the bytes actually moved:
the emulator's log says what upstream sent for each identity, and the
clients count what they were sent with each X-Cache. A user may read their
own usage, an admin anyone's; the list of every user is for admins. The
same figures are in /_larder/metrics.
"""

import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only)
import test_metrics as tm  # noqa: E402  (parse_metrics)

OWNER, READER = tc.OWNER, tc.READER


class UsageTest(tc.CacheTestCase):
    larder_config = {"cache": {"default_policy": "ttl:300"}}

    def usage(self, user=None, headers=OWNER, status=200):
        path = "/_larder/v1/usage" + ("?user=" + urllib.parse.quote(user) if user else "")
        got, _, body = self.larder.request("GET", path, headers=headers)
        self.assertEqual(got, status, body[:300])
        return json.loads(body)

    def test_figures_match_the_bytes_moved(self):
        self.emulator.control("POST", "acl", {"bucket": self.bucket, "readers": [tc.READER_EMAIL]})
        a, b = os.urandom(300000), os.urandom(120000)
        self.put_object("a.bin", data=a)
        self.put_object("b.bin", data=b)
        before = {who: self.usage(who) for who in (tc.OWNER_EMAIL, tc.READER_EMAIL)}
        mark = self.mark()
        sent = {tc.OWNER_EMAIL: {"served": 0, "fetched": 0}, tc.READER_EMAIL: {"served": 0, "fetched": 0}}
        for who, headers, name in ((tc.OWNER_EMAIL, OWNER, "a.bin"), (tc.OWNER_EMAIL, OWNER, "a.bin"),
                                   (tc.OWNER_EMAIL, OWNER, "a.bin"), (tc.READER_EMAIL, READER, "a.bin"),
                                   (tc.READER_EMAIL, READER, "b.bin"), (tc.READER_EMAIL, READER, "b.bin")):
            r = self.get(self.media(name), headers)
            self.assertEqual(r.status, 200)
            kind = "served" if r.x_cache in ("HIT", "REVALIDATED") else "fetched"
            sent[who][kind] += len(r.body)
        upstream = {}
        for e in self.upstream_since(mark):
            upstream[e["identity"]] = upstream.get(e["identity"], 0) + e["bytes"]
        self.settle()
        for who in (tc.OWNER_EMAIL, tc.READER_EMAIL):
            # A request is counted when larder disposes of it, which may be just after its client had the answer.
            moved = sent[who]["served"] + sent[who]["fetched"]
            harness.wait_until(lambda: sum(self.usage(who)[k] - before[who][k] for k in ("served_bytes", "fetched_bytes"))
                               >= moved, timeout=10)
            now = self.usage(who)
            self.assertEqual(now["user"], who)
            self.assertEqual(now["served_bytes"] - before[who]["served_bytes"], sent[who]["served"], who)
            self.assertEqual(now["fetched_bytes"] - before[who]["fetched_bytes"], sent[who]["fetched"], who)
            self.assertEqual(now["fetched_bytes"] - before[who]["fetched_bytes"], upstream.get(who, 0),
                             "%s: fetched bytes differ from what upstream sent for that identity" % who)
            self.assertEqual(now["pinned_bytes"], 0)
        # owner@ filled a.bin, reader@ b.bin: each owns one; reader@'s read of a.bin does not count it twice.
        self.assertEqual(self.usage(tc.OWNER_EMAIL)["cached_bytes"] - before[tc.OWNER_EMAIL]["cached_bytes"], len(a))
        self.assertEqual(self.usage(tc.READER_EMAIL)["cached_bytes"] - before[tc.READER_EMAIL]["cached_bytes"],
                         len(b))
        everyone = {u["user"]: u for u in self.usage()["users"]}
        self.assertEqual(everyone[tc.READER_EMAIL], self.usage(tc.READER_EMAIL))
        status, _, body = self.larder.request("GET", "/_larder/metrics", headers=OWNER)
        samples = tm.parse_metrics(body.decode())
        self.assertEqual(tm.sample(samples, "larder_user_served_bytes_total", user=tc.READER_EMAIL),
                         self.usage(tc.READER_EMAIL)["served_bytes"])
        self.assertEqual(tm.sample(samples, "larder_user_cached_bytes", user=tc.OWNER_EMAIL),
                         self.usage(tc.OWNER_EMAIL)["cached_bytes"])

    def test_who_may_read_usage(self):
        self.usage(tc.READER_EMAIL, headers=READER)                # their own
        self.usage(tc.OWNER_EMAIL, headers=READER, status=403)     # someone else's
        self.usage(None, headers=READER, status=403)               # everyone's
        self.usage(None, headers={}, status=403)                   # anonymous
        self.usage(None, headers={"Authorization": "Bearer nope"}, status=401)
        self.assertIn("users", self.usage(None))                   # an admin


if __name__ == "__main__":
    harness.main()
