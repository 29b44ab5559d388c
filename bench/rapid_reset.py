#!/usr/bin/env python3
"""rapid_reset.py - HTTP/2 Rapid Reset (CVE-2023-44487) against larder, and what it costs an HTTP/1 client.

Starts the GCS emulator and larder (through tests/integration/harness.py)
with a cached 4 KiB object, then runs two phases:

  baseline  an HTTP/1.1 keep-alive client on larder's plain listener GETs the
            cached object back to back for --baseline seconds, timing each
            request;
  attack    --connections attacker processes (default 2) each open an HTTP/2
            connection (TLS with ALPN h2; --h2c: cleartext with prior
            knowledge on the plain listener) and write HEADERS+RST_STREAM(CANCEL)
            pairs as fast as the connection takes them, for --duration seconds
            (default 20). When larder closes a connection the attacker opens
            the next one (--no-reconnect: it stops). The same HTTP/1 client
            keeps timing its requests meanwhile.

Printed: for every attacker connection, the pairs sent, the pairs answered
(response HEADERS received), how long it lived and how it ended; larder's CPU
time (utime+stime from /proc) in each phase; the HTTP/1 client's request
count, p50/p99/max latency and errors in each phase; and how many log lines
(other than access lines) larder wrote during the attack.

larder gets only the settings this script needs (immutable cache policy, no
access log, two workers) plus what --config adds, so the same run works
against builds that know fewer settings (an old build has h2c on and no
http2.* limits). --set-h2c also turns on the plain listener's "h2c" key, for
builds that have it and turn h2c off by default.

Usage: bench/rapid_reset.py [--duration S] [--connections N] [--baseline S] [--h2c [--set-h2c]]
                            [--path PATH] [--no-reconnect] [--config JSON] [--workers N]
Needs a built larder: LARDER_BIN (default build/larder). Exit status 0.
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import frontdoor_util as fu  # noqa: E402
import harness  # noqa: E402

BUCKET = "bench"
AUTH = "Bearer owner"  # the emulator's default owner token
OBJECTS = {"small-4KiB": 4 * 1024, "big-256KiB": 256 * 1024}


# --------------------------------------------------------------------------
# One attacker (a child process: it writes as fast as Python can, on its own CPU)
# --------------------------------------------------------------------------

def attack(opts):
    """Floods until the deadline; prints one JSON list of per-connection results."""
    deadline = time.monotonic() + opts.duration
    connections = []
    while time.monotonic() < deadline:
        started = time.monotonic()
        entry = {"sent": 0, "answered": 0, "closed": None, "goaway": None, "lived_s": 0.0, "note": ""}
        try:
            ctx = None
            if opts.ca:
                import ssl
                ctx = ssl.create_default_context(cafile=opts.ca)
            client = fu.H2Client(opts.port, ctx, decode_headers=False)
        except (OSError, fu.ConnectionClosed) as e:
            entry["note"] = "connect failed: %s" % e
            connections.append(entry)
            time.sleep(0.1)
            continue
        try:
            if ctx is not None and client.t.alpn != "h2":
                entry["note"] = "no h2 over ALPN (%r)" % client.t.alpn
                connections.append(entry)
                break
            client.start(settings=(), open_window=False)
            result = client.flood(opts.path, [("authorization", AUTH)], duration=deadline - time.monotonic())
            entry.update(sent=result["sent"], answered=result["answered"], closed=result["closed"],
                         goaway=result["goaway"])
        except fu.ConnectionClosed as e:
            entry["closed"] = e.how
        finally:
            entry["lived_s"] = time.monotonic() - started
            settings_seen = client.server_settings_seen
            client.close()
        if not settings_seen:
            entry["note"] = "no HTTP/2 SETTINGS from larder: HTTP/2 refused on this listener"
            connections.append(entry)
            break
        connections.append(entry)
        if opts.no_reconnect:
            break
    print(json.dumps(connections), flush=True)
    return 0


# --------------------------------------------------------------------------
# The HTTP/1 client that feels it
# --------------------------------------------------------------------------

def time_requests(port, path, until):
    """Back-to-back keep-alive GETs until monotonic time `until`: (latencies in s, errors)."""
    latencies, errors = [], []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < until:
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Authorization": AUTH})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append("status %d" % resp.status)
                continue
            latencies.append(time.perf_counter() - t0)
        except (OSError, http.client.HTTPException) as e:
            errors.append(repr(e))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    return latencies, errors


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def latency_line(label, latencies, errors, seconds):
    s = sorted(latencies)
    return ("%-9s %7d requests in %5.1f s (%7.0f/s)  p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  errors %d"
            % (label, len(s), seconds, len(s) / seconds if seconds else 0, percentile(s, 50) * 1e3,
               percentile(s, 99) * 1e3, (s[-1] if s else float("nan")) * 1e3, len(errors)))


# --------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------

def merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key].update(value)
        else:
            base[key] = value
    return base


def start_larder(opts, workdir, emulator, ca):
    config = {"cache": {"enabled": True, "default_policy": "immutable"}, "log": {"access_log": False},
              "worker_threads": opts.workers}
    merge(config, json.loads(opts.config) if opts.config else {})
    return harness.Larder(workdir, emulator.base_url, ca, config=config,
                          plain_listener={"h2c": True} if opts.set_h2c else None)


def warm(larder, path):
    for expect in ("MISS", "HIT"):
        for _ in range(50):
            conn = http.client.HTTPConnection("127.0.0.1", larder.port, timeout=30)
            conn.request("GET", path, headers={"Authorization": AUTH})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            state = resp.getheader("X-Cache")
            if resp.status != 200:
                raise RuntimeError("GET %s through larder: %d" % (path, resp.status))
            if state == "HIT" or expect == "MISS":
                break
            time.sleep(0.1)  # the fill is committed by the store's writer thread
        if expect == "HIT" and state != "HIT":
            raise RuntimeError("%s is not a cache hit after warming (X-Cache: %s)" % (path, state))


def new_log_lines(larder, offset):
    with open(larder.log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    return [line for line in text.splitlines() if '"component":"access"' not in line]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20, help="attack seconds (default 20)")
    parser.add_argument("--connections", type=int, default=2, help="attacker connections at a time (default 2)")
    parser.add_argument("--baseline", type=float, default=5, help="seconds of HTTP/1 timing before the attack "
                        "(default 5)")
    parser.add_argument("--h2c", action="store_true", help="attack the plain listener with cleartext HTTP/2 "
                        "(prior knowledge) instead of TLS h2")
    parser.add_argument("--set-h2c", action="store_true", help='give the plain listener "h2c": true (only for '
                        "builds that know the key)")
    parser.add_argument("--path", help="what each HEADERS asks for (default: the cached 4 KiB object; "
                        "/bench/big-256KiB is a cached object whose answer cannot complete before the reset, "
                        "/_larder/healthz costs the least)")
    parser.add_argument("--no-reconnect", action="store_true", help="an attacker whose connection larder closed "
                        "stops instead of opening another")
    parser.add_argument("--config", help="extra larder settings as JSON, e.g. "
                        "'{\"http2\": {\"max_resets_per_second\": 100}}' (only what the build knows)")
    parser.add_argument("--workers", type=int, default=2, help="larder worker_threads (default 2)")
    # Internal: one attacker process.
    parser.add_argument("--attacker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.attacker:
        return attack(opts)

    os.environ.setdefault("LARDER_BIN", os.path.join(HERE, "..", "build", "larder"))
    harness.larder_bin()  # fails early with a clear message
    workdir = tempfile.mkdtemp(prefix="larder-rapid-reset-")
    ca = harness.TestCA(workdir)
    emulator = harness.Emulator(workdir)
    larder = None
    try:
        emulator.create_bucket(BUCKET)
        for seed, (name, size) in enumerate(OBJECTS.items(), start=21):
            emulator.control("POST", "objects", {"bucket": BUCKET, "name": name, "size": size, "seed": seed})
        larder = start_larder(opts, workdir, emulator, ca)
        small = "/%s/small-4KiB" % BUCKET
        for name in OBJECTS:
            warm(larder, "/%s/%s" % (BUCKET, name))
        path = opts.path or small
        pid = larder.proc.pid
        print("larder %s (pid %d), %d workers; attack: %d %s connection(s) x %.0f s of HEADERS+RST_STREAM for %s%s"
              % (harness.larder_bin(), pid, opts.workers, opts.connections, "h2c" if opts.h2c else "TLS h2",
                 opts.duration, path, "" if not opts.no_reconnect else ", no reconnect"))
        print("load average at start: %.2f %.2f %.2f" % os.getloadavg())

        cpu0, t0 = fu.cpu_seconds(pid), time.monotonic()
        base_lat, base_err = time_requests(larder.port, small, t0 + opts.baseline)
        cpu1, t1 = fu.cpu_seconds(pid), time.monotonic()

        log_offset = os.path.getsize(larder.log_path)
        port = larder.port if opts.h2c else larder.tls_port
        cmd = [sys.executable, os.path.abspath(__file__), "--attacker", "--port", str(port), "--path", path,
               "--duration", str(opts.duration)]
        if not opts.h2c:
            cmd += ["--ca", ca.ca_cert]
        if opts.no_reconnect:
            cmd += ["--no-reconnect"]
        attackers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(opts.connections)]
        cpu2, t2 = fu.cpu_seconds(pid), time.monotonic()
        attack_lat, attack_err = time_requests(larder.port, small, t2 + opts.duration)
        outputs = [a.communicate(timeout=opts.duration + 120) for a in attackers]
        cpu3, t3 = fu.cpu_seconds(pid), time.monotonic()
        log_lines = new_log_lines(larder, log_offset)

        print()
        print("attacker connections (sent = HEADERS+RST_STREAM pairs written; answered = pairs larder "
              "accepted and answered: response HEADERS received):")
        total_sent = total_answered = 0
        for i, (out, err) in enumerate(outputs):
            try:
                conns = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                print("  attacker %d: no result (%s)" % (i + 1, err.decode(errors="replace")[-500:]))
                continue
            lived = sorted(c["lived_s"] for c in conns)
            sent = sum(c["sent"] for c in conns)
            answered = sum(c["answered"] for c in conns)
            total_sent += sent
            total_answered += answered
            print("  attacker %d: %d connection(s), %d pairs sent, %d answered; lifetimes min %.2f s, median "
                  "%.2f s, max %.2f s" % (i + 1, len(conns), sent, answered, lived[0] if lived else 0,
                                           percentile(lived, 50) if lived else 0, lived[-1] if lived else 0))
            for j, c in enumerate(conns[:5]):
                end = c["closed"] or ("GOAWAY %s" % (c["goaway"],) if c["goaway"] else "still open at the end")
                print("    #%d: %8d sent %8d answered, lived %6.2f s, ended: %s%s"
                      % (j + 1, c["sent"], c["answered"], c["lived_s"], end,
                         " (%s)" % c["note"] if c["note"] else ""))
            if len(conns) > 5:
                print("    ... %d more" % (len(conns) - 5))
        print("  all attackers: %d pairs sent (%.0f/s), %d answered"
              % (total_sent, total_sent / opts.duration, total_answered))
        print()
        print("larder CPU (utime+stime): baseline %.2f s in %.1f s (%.0f%% of one core); attack %.2f s in %.1f s "
              "(%.0f%%)" % (cpu1 - cpu0, t1 - t0, 100 * (cpu1 - cpu0) / (t1 - t0), cpu3 - cpu2, t3 - t2,
                            100 * (cpu3 - cpu2) / (t3 - t2)))
        print("larder log lines other than access lines during the attack: %d" % len(log_lines))
        for line in log_lines[:3]:
            print("  " + line[:200])
        print()
        print("HTTP/1.1 client, GET %s (cached 4 KiB) on the plain listener:" % small)
        print("  " + latency_line("baseline", base_lat, base_err, t1 - t0))
        print("  " + latency_line("attack", attack_lat, attack_err, t3 - t2))
        for e in (base_err + attack_err)[:3]:
            print("    error: %s" % e)
    finally:
        if larder is not None:
            try:
                larder.stop()
            except AssertionError as e:
                print("note: larder did not stop cleanly: %s" % str(e).splitlines()[0])
        emulator.stop()
        if os.environ.get("LARDER_KEEP_WORKDIR") is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
