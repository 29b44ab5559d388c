#!/usr/bin/env python3
"""download_rss.py - larder's memory while a slow client downloads a huge object.

Starts the GCS emulator with a synthetic object (generated on the fly, so the
emulator holds none of it), puts larder in front, and downloads the object
through larder with curl limited to --rate (default 20 MB/s, so 2 GiB takes
about 107 s). larder's RSS is sampled from /proc every 250 ms. The bytes are
checked against a direct download from the emulator (sha256).

Usage: bench/download_rss.py [--size BYTES] [--rate 20M] [--http2] [--tls]
Needs a built larder: LARDER_BIN (default build/larder).
"""

import argparse
import hashlib
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sha256_of_stream(args):
    """Runs curl writing to stdout and hashes what arrives."""
    digest = hashlib.sha256()
    total = 0
    proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    for block in iter(lambda: proc.stdout.read(1 << 20), b""):
        digest.update(block)
        total += len(block)
    proc.wait()
    return proc.returncode, digest.hexdigest(), total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2 * 1024 ** 3)
    parser.add_argument("--rate", default="20M")
    parser.add_argument("--http2", action="store_true")
    parser.add_argument("--tls", action="store_true")
    opts = parser.parse_args()
    os.environ.setdefault("LARDER_BIN", os.path.join(HERE, "..", "build", "larder"))

    with harness.scratch_upstream("larder-bench-") as (workdir, ca, emulator):
        return run(workdir, ca, emulator, opts)


def run(workdir, ca, emulator, opts):
    larder = None
    try:
        emulator.create_bucket("bench")
        emulator.control("POST", "objects", {"bucket": "bench", "name": "huge.bin", "size": opts.size, "seed": 7})
        larder = harness.Larder(workdir, emulator.base_url, larder_ca := ca, config={"log": {"access_log": True}})
        base = larder.tls_url if opts.tls else larder.url
        curl = ["curl", "-sS", "-H", "Authorization: Bearer owner", "--cacert", larder_ca.ca_cert]
        curl += ["--http2"] if opts.http2 and opts.tls else ["--http2-prior-knowledge"] if opts.http2 else []

        samples = []
        done = threading.Event()

        def sample():
            while not done.is_set():
                samples.append(rss_kib(larder.proc.pid))
                time.sleep(0.25)

        rss_before = rss_kib(larder.proc.pid)
        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        rc, through, total = sha256_of_stream(curl + ["--limit-rate", opts.rate, base + "/bench/huge.bin"])
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()
        rc_direct, direct, _ = sha256_of_stream(["curl", "-sS", "-H", "Authorization: Bearer owner",
                                                  emulator.base_url + "/bench/huge.bin"])
        samples.sort()
        print("object: %d bytes; client rate limit %s; %s%s" % (opts.size, opts.rate,
              "TLS " if opts.tls else "", "HTTP/2" if opts.http2 else "HTTP/1.1"))
        print("downloaded %d bytes in %.1f s (%.1f MB/s), curl exit %d" % (total, elapsed, total / elapsed / 1e6, rc))
        print("sha256 through larder %s direct %s" % ("==" if through == direct else "!=", "" if rc_direct == 0 else
                                                         "(direct download failed)"))
        print("larder RSS: before %.1f MB, p50 %.1f MB, p99 %.1f MB, max %.1f MB (%d samples)" % (
            rss_before / 1024, samples[len(samples) // 2] / 1024, samples[int(len(samples) * 0.99)] / 1024,
            samples[-1] / 1024, len(samples)))
        ok = rc == 0 and through == direct and total == opts.size and samples[-1] < 100 * 1024
        print("RESULT: %s (bar: max RSS under 100 MB, bytes identical)" % ("PASS" if ok else "FAIL"))
        return 0 if ok else 1
    finally:
        if larder is not None:
            larder.stop()


if __name__ == "__main__":
    sys.exit(main())
