#!/usr/bin/env python3
"""test_metrics.py - /_larder/metrics, /_larder/healthz, /_larder/readyz and the admin listener (issue 9, part 4).

The metrics are Prometheus' text format: Debian's `promtool check metrics`
must accept them (the test SKIPs that check, saying so, where promtool is
not installed). Their figures must match the traffic the test made: requests
by route, method and status; cache results in counts and in bytes; the
upstream latency histogram's count; auth decisions. Only auth.admins may
read them on a client-facing listener; healthz and readyz are open to all.
readyz says 503, with the reason, once upstream stopped answering, and 200
again once it answers. A listener marked "admin" serves /metrics, /healthz
and /readyz without credentials, and never a GCS request.
"""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only)

OWNER, READER = tc.OWNER, tc.READER


def parse_metrics(text):
    """{(name, frozenset of label pairs): value} for every sample line."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


class MetricsTest(tc.CacheTestCase):
    larder_config = {"cache": {"default_policy": "ttl:300"}}

    def metrics(self, headers=OWNER):
        status, hdrs, body = self.larder.request("GET", "/_larder/metrics", headers=headers)
        self.assertEqual(status, 200, body[:300])
        self.assertTrue(hdrs["content-type"].startswith("text/plain; version=0.0.4"), hdrs)
        return body

    def test_promtool_accepts_the_exposition(self):
        self.put_object("p.bin", data=b"p" * 3000)
        self.get(self.media("p.bin"), OWNER)
        self.get(self.media("p.bin"), OWNER)
        self.get(self.media("nothing-here.bin"), OWNER)
        body = self.metrics()
        if shutil.which("promtool") is None:
            harness.skip("promtool is not installed (Debian package prometheus)")
        check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
        self.assertEqual((check.returncode, check.stdout, check.stderr), (0, b"", b""))

    def test_figures_match_the_traffic(self):
        data = os.urandom(70000)
        self.put_object("f.bin", data=data)
        before = parse_metrics(self.metrics().decode())
        self.assertEqual(self.get(self.media("f.bin"), OWNER).x_cache, "MISS")
        for _ in range(3):
            self.assertEqual(self.get(self.media("f.bin"), OWNER).x_cache, "HIT")
        self.assertEqual(self.get(self.media("absent.bin"), OWNER).status, 404)
        r = self.get(self.xml("f.bin"), OWNER, method="PUT", body=b"new")
        self.assertEqual(r.status, 200)
        # A request is counted when larder disposes of it, which may be just after its client had the answer.
        scrapes = []

        def settled():
            scrapes.append(parse_metrics(self.metrics().decode()))
            return sample(scrapes[-1], "larder_requests_total", route="xml", method="PUT", status="200") > \
                sample(before, "larder_requests_total", route="xml", method="PUT", status="200")

        harness.wait_until(settled, timeout=10)
        after = scrapes[-1]

        def grew(name, **labels):
            return sample(after, name, **labels) - sample(before, name, **labels)

        self.assertEqual(grew("larder_requests_total", route="json", method="GET", status="200"), 4)
        self.assertEqual(grew("larder_requests_total", route="json", method="GET", status="404"), 1)
        self.assertEqual(grew("larder_requests_total", route="xml", method="PUT", status="200"), 1)
        self.assertEqual(grew("larder_cache_requests_total", result="hit"), 3)
        self.assertEqual(grew("larder_cache_bytes_total", result="hit"), 3 * len(data))
        self.assertEqual(grew("larder_cache_requests_total", result="miss"), 2)  # the fill and the 404
        self.assertGreaterEqual(grew("larder_cache_bytes_total", result="miss"), len(data))
        # Upstream was asked three times: the fill, the 404 and the PUT.
        self.assertEqual(grew("larder_upstream_request_duration_seconds_count"), 3)
        self.assertEqual(grew("larder_upstream_request_duration_seconds_bucket", le="+Inf"), 3)
        # The fill made owner@ the owner (one decision), and each hit was the owner's.
        self.assertEqual(grew("larder_auth_decisions_total", decision="owner"), 4)
        self.assertGreaterEqual(sample(after, "larder_token_cache_entries"), 1)
        self.assertGreaterEqual(sample(after, "larder_client_connections"), 1)
        self.assertEqual(sample(after, "larder_store_budget_bytes"), self.stats()["budget"])

    def test_only_admins_read_metrics_and_everyone_health(self):
        for headers, status in ((OWNER, 200), (READER, 403), ({}, 403),
                                ({"Authorization": "Bearer no-such-token"}, 401)):
            got, _, body = self.larder.request("GET", "/_larder/metrics", headers=headers)
            self.assertEqual(got, status, (headers, body[:200]))
        for path in ("/_larder/healthz", "/_larder/readyz"):
            status, _, body = self.larder.request("GET", path)
            self.assertEqual(status, 200, (path, body))
        # On a client-facing listener the short paths are GCS paths (a bucket named "metrics"), never larder's.
        mark = self.mark()
        status, _, _ = self.larder.request("GET", "/metrics", headers=OWNER)
        self.assertNotEqual(self.upstream_since(mark), [], "/metrics must reach upstream as a bucket listing")


class ReadinessTest(tc.CacheTestCase):
    larder_config = {"upstream": {"connect_timeout_ms": 500, "response_timeout_ms": 2000}}

    def test_readyz_follows_upstream(self):
        self.put_object("r.bin", data=b"r" * 100)
        self.assertEqual(self.get(self.meta_path("r.bin"), OWNER).status, 200)  # the token is validated now
        self.assertEqual(self.larder.request("GET", "/_larder/readyz")[0], 200)
        port = self.emulator.port
        self.emulator.stop()
        try:
            r = self.get(self.media("r.bin"), OWNER)
            self.assertIn(r.status, (502, 503, 504), r)
            status, _, body = self.larder.request("GET", "/_larder/readyz")
            self.assertEqual(status, 503, body)
            self.assertIn(b"upstream", body)
            self.assertEqual(self.larder.request("GET", "/_larder/healthz")[0], 200, "alive all the same")
        finally:
            type(self).emulator = harness.Emulator.again_on(self.workdir, port)  # where larder's upstream was
        self.emulator.create_bucket(self.bucket)
        self.put_object("r.bin", data=b"r" * 100)
        self.assertEqual(self.get(self.media("r.bin"), OWNER).status, 200)
        self.assertEqual(self.larder.request("GET", "/_larder/readyz")[0], 200)


class AdminListenerTest(tc.CacheTestCase):
    """The plain listener is the admin one here; GCS traffic goes to the TLS listener."""

    plain_listener = {"admin": True}

    def test_admin_listener_serves_larder_only_without_credentials(self):
        for path in ("/metrics", "/_larder/metrics"):
            status, hdrs, body = self.larder.request("GET", path)
            self.assertEqual(status, 200, (path, body[:200]))
            self.assertIn(b"larder_requests_total", body)
        for path in ("/healthz", "/readyz", "/_larder/healthz", "/_larder/readyz", "/_larder/stats"):
            self.assertEqual(self.larder.request("GET", path)[0], 200, path)
        self.put_object("a.bin", data=b"a" * 10)
        mark = self.mark()
        for path in (self.media("a.bin"), self.xml("a.bin"), "/storage/v1/b"):
            status, _, body = self.larder.request("GET", path, headers=OWNER)
            self.assertEqual(status, 404, (path, body[:200]))
        self.assertEqual(self.upstream_since(mark), [], "the admin listener forwarded a GCS request")
        status, _, body = self.larder.request("GET", self.media("a.bin"), headers=OWNER, tls=True)
        self.assertEqual((status, body), (200, b"a" * 10), "GCS traffic is served on the other listener")


if __name__ == "__main__":
    harness.main()
