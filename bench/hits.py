#!/usr/bin/env python3
"""hits.py - larder's cache-hit path against nginx, on loopback.

Starts the GCS emulator with three synthetic objects (4 KiB, 1 MiB, 64 MiB),
then, one at a time, four servers in front of the same bytes:

  larder-immutable   larder, cache.default_policy "immutable": the pure hit
                     path, no upstream traffic per hit
  larder-always      larder, cache.default_policy "always": every hit makes
                     one conditional request to the emulator (a 304)
  nginx-proxy_cache  Debian's nginx as a proxy_cache in front of the emulator
                     (bench/nginx/proxy_cache.conf), warmed the same way
  nginx-static       nginx serving the same bytes from files with sendfile
                     (bench/nginx/static.conf): the physical limit

Each object is warmed with one GET through the server; the second GET must
say X-Cache: HIT (immutable), REVALIDATED (always) or X-Cache-Status: HIT
(nginx), else the run stops. Then wrk (HTTP/1.1, keep-alive, `Authorization:
Bearer owner`) hammers one object per cell for --duration seconds at 1, 16 and
64 connections. The emulator's request counter is read around every cell: a
pure-hit cell that reached upstream, or an `always` cell that did not, fails.

nginx cannot revalidate per hit, so both nginx peers run in their fastest mode
(no upstream traffic per hit); the targets compare larder-immutable with them.
larder-always is reported on its own, with ratios for information.

Usage: bench/hits.py [--quick] [--duration S] [--sizes 4KiB,1MiB,64MiB]
                     [--conns 1,16,64] [--servers larder-immutable,...]
                     [--threads N] [--perf DIR]
Needs a built larder: LARDER_BIN (default build/larder). Installs nginx and
wrk with apt-get when they are missing (as root, or through sudo).
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402

BUCKET = "bench"
AUTH = "Bearer owner"  # the emulator's default owner token; entries belong to who filled them
SIZES = {"4KiB": 4 * 1024, "1MiB": 1024 * 1024, "64MiB": 64 * 1024 * 1024}
SERVERS = ("larder-immutable", "larder-always", "nginx-proxy_cache", "nginx-static")
EXPECTED_STATE = {"larder-immutable": ("x-cache", "HIT"), "larder-always": ("x-cache", "REVALIDATED"),
                  "nginx-proxy_cache": ("x-cache-status", "HIT"), "nginx-static": (None, None)}

# wrk reports through this script: one JSON line after the run.
WRK_LUA = r"""
wrk.headers["Authorization"] = "%s"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%%d,"bytes":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"mean_us":%%.1f,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
""" % AUTH


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- tools ---

def ensure_tools():
    """nginx and wrk from Debian; apt-get as root or through sudo when missing."""
    missing = [pkg for tool, pkg in (("nginx", "nginx-light"), ("wrk", "wrk"))
               if shutil.which(tool) is None and not os.access("/usr/sbin/" + tool, os.X_OK)]
    if not missing:
        return
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo") is not None:
        prefix = ["sudo", "-n"]
    else:
        sys.exit("hits.py needs %s: apt-get install %s (not root and no sudo)" % (missing, " ".join(missing)))
    # RUNLEVEL=1 keeps invoke-rc.d from starting the system nginx on port 80.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
    log("installing %s with apt-get" % " ".join(missing))
    subprocess.run(prefix + ["apt-get", "update", "-qq"], env=env, check=False)
    if subprocess.run(prefix + ["apt-get", "install", "-y", "-qq"] + missing, env=env).returncode != 0:
        # Newer Debian folded nginx-light into nginx.
        fallback = ["nginx" if p == "nginx-light" else p for p in missing]
        subprocess.run(prefix + ["apt-get", "install", "-y", "-qq"] + fallback, env=env, check=True)


def nginx_bin():
    return shutil.which("nginx") or "/usr/sbin/nginx"


# --- HTTP helpers ---

def get(port, path, timeout=120):
    """GET with the bench credentials; returns (status, headers lower-cased, sha256, length)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers={"Authorization": AUTH})
    resp = conn.getresponse()
    digest, total = hashlib.sha256(), 0
    for block in iter(lambda: resp.read(1 << 20), b""):
        digest.update(block)
        total += len(block)
    headers = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, headers, digest.hexdigest(), total


def wait_listening(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --- the servers ---

class Nginx:
    def __init__(self, workdir, template, label, **values):
        self.label = label
        self.prefix = os.path.join(workdir, label)
        os.makedirs(self.prefix, exist_ok=True)
        self.port = harness.free_port()
        values.update(PREFIX=self.prefix, PORT=str(self.port),
                      USER_LINE="user root;" if os.geteuid() == 0 else "# not root: workers run as us")
        with open(os.path.join(HERE, "nginx", template)) as f:
            text = f.read()
        for name, value in values.items():
            text = text.replace("@%s@" % name, value)
        if "@" in "".join(line.split("#")[0] for line in text.splitlines()):
            raise RuntimeError("unfilled placeholder in " + template)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(text)
        args = [nginx_bin(), "-p", self.prefix, "-c", self.conf, "-e", os.path.join(self.prefix, "error.log")]
        check = subprocess.run(args + ["-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("nginx -t failed for %s:\n%s%s" % (template, check.stdout, check.stderr))
        self.log = open(os.path.join(self.prefix, "stdout.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_listening(self.port, self.proc):
            raise RuntimeError("nginx (%s) did not start:\n%s" % (label, self.error_log()))
        self.pids = [self.proc.pid]

    def error_log(self):
        try:
            with open(os.path.join(self.prefix, "error.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class LarderPeer:
    def __init__(self, workdir, emulator, ca, label, policy):
        self.label = label
        directory = os.path.join(workdir, label)
        os.makedirs(directory, exist_ok=True)
        self.larder = harness.Larder(directory, emulator.base_url, ca, config={
            "cache": {"default_policy": policy},
            "store": {"budget": "2GiB"},
            "worker_threads": 2,
            "log": {"access_log": False, "level": "warn"},
        })
        self.port = self.larder.port
        self.pids = [self.larder.proc.pid]

    def stop(self):
        self.larder.stop()


# --- measuring ---

def upstream_requests(emulator):
    return emulator.counters()["total"]


def larder_stats(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/_larder/stats")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return json.loads(body) if resp.status == 200 else {}


def wait_fill_committed(server, objects_expected):
    """Waits until larder's store holds the object and its counters stop moving.

    The second warming GET should be an ordinary hit, not one that follows a
    fill still committing (a different code path)."""
    deadline = time.monotonic() + 60
    last = None
    while time.monotonic() < deadline:
        st = larder_stats(server.port)
        now = (st.get("objects"), st.get("chunks"), st.get("used_bytes"), st.get("commits"))
        if st.get("objects", 0) >= objects_expected and now == last:
            return
        last = now
        time.sleep(0.2)
    raise RuntimeError("%s: the fill did not commit within 60 s: %s" % (server.label, larder_stats(server.port)))


def warm(server, objects, emulator):
    """One GET to fill, a second that must be a hit with the right bytes."""
    header, expected = EXPECTED_STATE[server.label]
    for count, (name, (size, digest)) in enumerate(objects.items(), start=1):
        path = "/%s/%s" % (BUCKET, name)
        status, headers, got, length = get(server.port, path)
        if status != 200 or got != digest:
            raise RuntimeError("%s: warming GET %s: status %d, %d bytes, sha256 %s" % (
                server.label, path, status, length, "ok" if got == digest else "WRONG"))
        if header is None:
            continue
        if isinstance(server, LarderPeer):
            wait_fill_committed(server, count)
        deadline = time.monotonic() + 30
        while True:
            status, headers, got, length = get(server.port, path)
            state = headers.get(header, "(none)")
            if status == 200 and got == digest and state == expected:
                break
            if time.monotonic() > deadline or status != 200 or got != digest:
                raise RuntimeError("%s: second GET %s: status %d, %s: %s (want %s), bytes %s" % (
                    server.label, path, status, header, state, expected, "ok" if got == digest else "WRONG"))
            time.sleep(0.2)  # a large fill may still be committing; the hit must come
        log("  %s %s: warmed, %s: %s" % (server.label, name, header, state))


def run_wrk(port, path, conns, duration, threads, lua):
    threads = max(1, min(threads, conns))
    args = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--timeout", "60s", "-s", lua,
            "http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(args, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[len("BENCH "):])
    raise RuntimeError("wrk gave no result (exit %d):\n%s%s" % (out.returncode, out.stdout, out.stderr))


class PerfRecorder:
    """perf record -g on a server's processes for the span of one cell."""

    def __init__(self, directory, name, pids):
        self.proc = None
        if directory is None or shutil.which("perf") is None:
            return
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, name + ".data")
        self.proc = subprocess.Popen(["perf", "record", "-g", "-q", "-o", self.path, "-p",
                                      ",".join(map(str, pids))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait()


def measure(server, objects, emulator, opts, lua, results):
    for size_label in opts.sizes:
        path = "/%s/%s" % (BUCKET, object_name(size_label))
        run_wrk(server.port, path, 16, 1, opts.threads, lua)  # settle: not reported
        for conns in opts.conns:
            before = upstream_requests(emulator)
            perf = PerfRecorder(opts.perf, "%s-%s-c%d" % (server.label, size_label, conns), server.pids) \
                if server.label.startswith("larder") else PerfRecorder(None, None, None)
            r = run_wrk(server.port, path, conns, opts.duration, opts.threads, lua)
            perf.stop()
            upstream = upstream_requests(emulator) - before
            secs = r["duration_us"] / 1e6
            cell = {"server": server.label, "size": size_label, "conns": conns, "rps": r["requests"] / secs,
                    "mbps": r["bytes"] / secs / 1e6, "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
                    "requests": r["requests"], "upstream": upstream,
                    "errors": r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]}
            problems = []
            if cell["errors"]:
                problems.append("wrk errors %s" % {k: r[k] for k in ("connect", "read", "write", "status",
                                                                      "timeout") if r[k]})
            if server.label == "larder-always":
                if upstream < r["requests"]:
                    problems.append("only %d upstream requests for %d hits: not revalidating each hit" % (
                        upstream, r["requests"]))
            elif upstream > 0:
                problems.append("%d upstream requests during a pure-hit cell" % upstream)
            if problems:
                raise RuntimeError("%s %s c%d: %s" % (server.label, size_label, conns, "; ".join(problems)))
            results.append(cell)
            log("  %-18s %6s c%-3d %10.0f req/s %9.1f MB/s p50 %8.3f ms p99 %8.3f ms  upstream %d" % (
                server.label, size_label, conns, cell["rps"], cell["mbps"], cell["p50_ms"], cell["p99_ms"],
                upstream))


def object_name(size_label):
    return "hit-" + size_label


# --- report ---

def find(results, server, size, conns):
    for cell in results:
        if (cell["server"], cell["size"], cell["conns"]) == (server, size, conns):
            return cell
    return None


def report(results, opts, notes):
    out = []
    w = out.append
    w("")
    w("larder hit path vs nginx - wrk, HTTP/1.1 keep-alive over loopback, %d s per cell, %d wrk thread(s), "
      "%d CPUs" % (opts.duration, opts.threads, os.cpu_count()))
    w("MB/s counts every byte wrk read (headers too), 1 MB = 10^6 bytes; latency is per request, as wrk sees it.")
    w("larder-immutable: pure hit path. larder-always: each hit = one conditional GET to the emulator (304).")
    w("nginx peers are measured in their fastest mode (nginx cannot revalidate per hit): proxy_cache hits")
    w("never reach upstream; static = sendfile from files, the physical limit.")
    w("")
    w("%-6s %5s  %-18s %11s %10s %10s %10s" % ("size", "conns", "server", "req/s", "MB/s", "p50 ms", "p99 ms"))
    for size in opts.sizes:
        for conns in opts.conns:
            for server in opts.servers:
                c = find(results, server, size, conns)
                if c is not None:
                    w("%-6s %5d  %-18s %11.0f %10.1f %10.3f %10.3f" % (size, conns, server, c["rps"], c["mbps"],
                                                                       c["p50_ms"], c["p99_ms"]))
        w("")

    def ratio(a, b, key):
        return a[key] / b[key] if a is not None and b is not None and b[key] > 0 else None

    w("ratios (req/s for 4KiB, MB/s for larger; p99 ratio = larder p99 / nginx p99, lower is better)")
    w("%-6s %5s  %-34s %9s %9s %9s" % ("size", "conns", "", "thruput", "p50", "p99"))
    pairs = [("larder-immutable", "nginx-proxy_cache"), ("larder-immutable", "nginx-static"),
             ("larder-always", "nginx-proxy_cache"), ("larder-always", "nginx-static")]
    for size in opts.sizes:
        key = "rps" if size == "4KiB" else "mbps"
        for conns in opts.conns:
            for a_name, b_name in pairs:
                a, b = find(results, a_name, size, conns), find(results, b_name, size, conns)
                if a is None or b is None:
                    continue
                label = "%s / %s%s" % (a_name.replace("larder-", "larder "), b_name.replace("nginx-", "nginx "),
                                       " (info)" if a_name == "larder-always" else "")
                fmt = lambda v: "%9.2f" % v if v is not None else "%9s" % "-"
                w("%-6s %5d  %-34s %s %s %s" % (size, conns, label, fmt(ratio(a, b, key)),
                                                fmt(ratio(a, b, "p50_ms")), fmt(ratio(a, b, "p99_ms"))))
        w("")

    w("targets (larder-immutable; margins relative to the bar)")
    verdicts = []
    for conns in opts.conns:
        a, b = find(results, "larder-immutable", "4KiB", conns), find(results, "nginx-proxy_cache", "4KiB", conns)
        if a and b:
            r = a["rps"] / b["rps"]
            verdicts.append(("4KiB hit req/s >= nginx proxy_cache, %d conns" % conns, r >= 1.0,
                             "%.0f vs %.0f req/s = %.2fx (%+.0f%%)" % (a["rps"], b["rps"], r, (r - 1) * 100)))
    for conns in opts.conns:
        a, b = find(results, "larder-immutable", "64MiB", conns), find(results, "nginx-static", "64MiB", conns)
        if a and b:
            r = a["mbps"] / b["mbps"]
            verdicts.append(("64MiB hit MB/s >= 0.8x nginx static, %d conns" % conns, r >= 0.8,
                             "%.0f vs %.0f MB/s = %.2fx (%+.0f%% vs the 0.8x bar)" % (
                                 a["mbps"], b["mbps"], r, (r / 0.8 - 1) * 100)))
    a = find(results, "larder-immutable", "4KiB", 64)
    if a:
        verdicts.append(("4KiB hit p99 < 1 ms at 64 conns", a["p99_ms"] < 1.0,
                         "p99 %.3f ms (%+.0f%% vs 1 ms)" % (a["p99_ms"], (a["p99_ms"] - 1) * 100)))
    for name, ok, detail in verdicts:
        w("  %-4s %-46s %s" % ("PASS" if ok else "MISS", name, detail))
    a = find(results, "larder-always", "4KiB", 64)
    if a:
        w("  info larder-always 4KiB p99 at 64 conns: %.3f ms (includes the emulator round trip; not a target)"
          % a["p99_ms"])
    w("")
    for note in notes:
        w(note)
    print("\n".join(out), flush=True)
    return all(ok for _, ok, _ in verdicts)


def parse_list(text, allowed=None, convert=str):
    items = [convert(x.strip()) for x in text.split(",") if x.strip()]
    if allowed is not None:
        for item in items:
            if item not in allowed:
                raise argparse.ArgumentTypeError("%s not in %s" % (item, ", ".join(allowed)))
    return items


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s per cell instead of 6")
    parser.add_argument("--duration", type=int, help="seconds per cell (default 6, --quick 2)")
    parser.add_argument("--sizes", type=lambda t: parse_list(t, SIZES), default=list(SIZES))
    parser.add_argument("--conns", type=lambda t: parse_list(t, convert=int), default=[1, 16, 64])
    parser.add_argument("--servers", type=lambda t: parse_list(t, SERVERS), default=list(SERVERS))
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (at most conns)")
    parser.add_argument("--perf", metavar="DIR", help="perf record -g larder during each larder cell into DIR "
                        "(perturbs the numbers)")
    opts = parser.parse_args()
    opts.duration = opts.duration or (2 if opts.quick else 6)
    os.environ.setdefault("LARDER_BIN", os.path.join(HERE, "..", "build", "larder"))
    if any(s.startswith("larder") for s in opts.servers):
        harness.larder_bin()  # fails early with a clear message
    ensure_tools()

    notes = ["load average at start: %.2f %.2f %.2f (other work on this machine skews every number)"
             % os.getloadavg()]
    workdir = tempfile.mkdtemp(prefix="larder-hits-")
    lua = os.path.join(workdir, "report.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    ca = harness.TestCA(workdir)
    emulator = harness.Emulator(workdir)
    results = []
    try:
        emulator.create_bucket(BUCKET)
        docroot = os.path.join(workdir, "docroot")
        os.makedirs(os.path.join(docroot, BUCKET))
        objects = {}
        for seed, size_label in enumerate(opts.sizes, start=11):
            name = object_name(size_label)
            emulator.control("POST", "objects", {"bucket": BUCKET, "name": name, "size": SIZES[size_label],
                                                 "seed": seed})
            # The static peer's file: the emulator's bytes, written once.
            conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=120)
            conn.request("GET", "/%s/%s" % (BUCKET, name), headers={"Authorization": AUTH})
            resp = conn.getresponse()
            digest = hashlib.sha256()
            with open(os.path.join(docroot, BUCKET, name), "wb") as f:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    f.write(block)
                    digest.update(block)
            conn.close()
            if resp.status != 200 or os.path.getsize(os.path.join(docroot, BUCKET, name)) != SIZES[size_label]:
                raise RuntimeError("emulator GET %s: status %d" % (name, resp.status))
            objects[name] = (SIZES[size_label], digest.hexdigest())

        for label in opts.servers:
            log("%s:" % label)
            if label == "larder-immutable":
                server = LarderPeer(workdir, emulator, ca, label, "immutable")
            elif label == "larder-always":
                server = LarderPeer(workdir, emulator, ca, label, "always")
            elif label == "nginx-proxy_cache":
                server = Nginx(workdir, "proxy_cache.conf", label, UPSTREAM_PORT=str(emulator.port))
            else:
                server = Nginx(workdir, "static.conf", label, DOCROOT=docroot)
            try:
                warm(server, objects, emulator)
                measure(server, objects, emulator, opts, lua, results)
            finally:
                server.stop()
        notes.append("load average at end:   %.2f %.2f %.2f" % os.getloadavg())
        return 0 if report(results, opts, notes) else 1
    finally:
        emulator.stop()
        if os.environ.get("LARDER_KEEP_WORKDIR") is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log("kept " + workdir)


if __name__ == "__main__":
    sys.exit(main())
