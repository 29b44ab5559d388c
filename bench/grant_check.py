#!/usr/bin/env python3
"""grant_check.py - what larder's per-user access check costs, per read.

Starts the GCS emulator (optionally with added latency, as a remote GCS would
have) and larder in front of it with token validation on and the immutable
policy, makes --objects 4 KiB objects that owner@ and reader@ may both read,
and times, one keep-alive HTTP/1.1 connection per caller, each kind of read:

  owner hit         owner@'s read of an object it filled: no upstream request
  grant check       reader@'s first read: one conditional request upstream
                    (a 304) with reader@'s own token, then the cached bytes
  grant hit         reader@'s next read, inside auth.grant_ttl: no upstream request
  stranger refused  other@'s read: the same conditional request, a 403 relayed
  direct 304        the emulator's own answer to the conditional request alone

The grant check's cost is its time minus an owner hit's; compared with
"direct 304" it shows what larder adds to the round trip. The emulator's
request counters are checked: hits must not have reached it, checks must
have made exactly one request each.

Usage: bench/grant_check.py [--objects N] [--latency-ms MS]
Needs a built larder: LARDER_BIN (default build/larder).
"""

import argparse
import http.client
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402

BUCKET = "grants"
TOKENS = {"owner": "owner@example.com", "reader": "reader@example.com", "other": "other@example.com"}


def timed_get(conn, path, token, extra=None):
    headers = {"Authorization": "Bearer " + token}
    headers.update(extra or {})
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    return (time.perf_counter() - started) * 1e6, resp.status, resp.getheader("x-cache"), body


def summary(label, samples):
    samples = sorted(samples)
    pick = lambda q: samples[min(len(samples) - 1, int(len(samples) * q))]  # noqa: E731
    print("  %-17s median %7.0f us   p90 %7.0f us   p99 %7.0f us   (%d reads)" % (
        label, pick(0.5), pick(0.9), pick(0.99), len(samples)))
    return pick(0.5)


def api_requests(emulator):
    return sum(1 for e in emulator.counters()["log"] if e["kind"] != "tokeninfo")


def measure(larder, emulator, names, opts):
    paths = ["/storage/v1/b/%s/o/%s?alt=media" % (BUCKET, name) for name in names]
    conns = {who: http.client.HTTPConnection("127.0.0.1", larder.port) for who in TOKENS}
    for path in paths:  # owner@ fills every object
        _, status, _, _ = timed_get(conns["owner"], path, "owner")
        assert status == 200, status
    time.sleep(0.5)  # the store's writer commits the fills; the counters below tell if it mattered
    times = {}

    def run(label, who, expect_status, expect_cache, upstream_each):
        before = api_requests(emulator)
        samples = []
        for path in paths:
            us, status, cache, _ = timed_get(conns[who], path, who)
            if status != expect_status or (expect_cache is not None and cache != expect_cache):
                sys.exit("%s: %s gave %d %s, expected %d %s" % (label, path, status, cache, expect_status,
                                                                expect_cache))
            samples.append(us)
        went = api_requests(emulator) - before
        if went != upstream_each * len(paths):
            sys.exit("%s: %d upstream requests for %d reads, expected %d each" % (label, went, len(paths),
                                                                                   upstream_each))
        times[label] = summary(label, samples)

    print("larder, %d objects of 4 KiB, emulator latency %d ms:" % (len(paths), opts.latency_ms))
    run("owner hit", "owner", 200, "HIT", 0)
    run("grant check", "reader", 200, "REVALIDATED", 1)
    run("grant hit", "reader", 200, "HIT", 0)
    run("stranger refused", "other", 403, "MISS", 1)
    direct = http.client.HTTPConnection("127.0.0.1", emulator.port)
    samples = []
    for path in paths:
        direct.request("GET", path, headers={"Authorization": "Bearer reader"})
        resp = direct.getresponse()
        resp.read()
        us, status, _, _ = timed_get(direct, path, "reader", {"If-None-Match": resp.getheader("etag") or "*"})
        samples.append(us)
    times["direct 304"] = summary("direct 304", samples)
    print("  grant check costs %.0f us over an owner hit; larder adds %.0f us to the emulator's own 304" % (
        times["grant check"] - times["owner hit"], times["grant check"] - times["direct 304"]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--latency-ms", type=int, default=0)
    opts = parser.parse_args()
    os.environ.setdefault("LARDER_BIN", os.path.join(HERE, "..", "build", "larder"))
    with harness.scratch_upstream("larder-bench-") as (workdir, ca, emulator):
        run(workdir, ca, emulator, opts)
    return 0


def run(workdir, ca, emulator, opts):
    larder = None
    try:
        emulator.create_bucket(BUCKET)
        names = ["o%04d" % i for i in range(opts.objects)]
        for i, name in enumerate(names):
            emulator.control("POST", "objects", {"bucket": BUCKET, "name": name, "size": 4096, "seed": i,
                                                 "readers": ["reader@example.com"]})
        if opts.latency_ms:
            emulator.faults(latency_ms=opts.latency_ms, match="/" + BUCKET + "/")
        config = {"cache": {"default_policy": "immutable"}, "log": {"access_log": False},
                  "auth": {"tokeninfo_url": emulator.base_url + "/tokeninfo", "grant_ttl": 3600}}
        larder = harness.Larder(workdir, emulator.base_url, ca, config=config)
        measure(larder, emulator, names, opts)
    finally:
        if larder is not None:
            larder.stop()


if __name__ == "__main__":
    sys.exit(main())
