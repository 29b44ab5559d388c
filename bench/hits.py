#!/usr/bin/env python3
"""hits.py - larder's cache-hit path against nginx, on loopback.

Starts the GCS emulator with three synthetic objects (4 KiB, 1 MiB, 64 MiB)
and seven servers in front of the same bytes:

  larder-immutable   larder, cache.default_policy "immutable": the pure hit
                     path, no upstream traffic per hit
  larder-always      larder, cache.default_policy "always": every hit makes
                     one conditional request to the emulator (a 304)
  nginx-proxy_cache  Debian's nginx as a proxy_cache in front of the emulator
                     (bench/nginx/proxy_cache.conf), warmed the same way
  nginx-static       nginx serving the same bytes from files, sendfile on
                     (bench/nginx/static.conf)
  nginx-static-copy  the same with sendfile off (read + write); on some VMs
                     that is the faster of the two, so the physical limit is
                     whichever of the static peers is faster
  larder-users       larder-immutable's settings, 4 KiB only, 64 identities:
                     every request carries the next of 64 bearer tokens
                     (tok-bench-00..63 -> user00..63@example.com, checked at
                     the emulator's tokeninfo), all for ONE stored object.
                     user00's read filled it (the owner); every other user's
                     first read was confirmed upstream by a 304 (a grant,
                     auth.grant_ttl 3600 s). Each hit checks the caller's
                     token and its owner/grant.
  larder-users-off   the baseline: the same wrk script and object with
                     auth.enabled false (the old exact-credential rule, no
                     token validation), all 64 request slots carrying
                     tok-bench-00, whose read filled the entry. Under that rule
                     any other credential's read is revalidated upstream every
                     time, so 64 tokens on one object would be no pure hits;
                     and 64 copies, one per token, came out 5-9% slower than
                     one object in trial runs (more store entries), which
                     would flatter the target.

Each object is warmed with one GET through each server; the second GET must
carry the right bytes and say X-Cache: HIT (immutable), REVALIDATED (always)
or X-Cache-Status: HIT (nginx), else the run stops (the 64-identity servers:
every identity's first GET, then a second that must be a HIT). Then wrk
(HTTP/1.1, keep-alive, `Authorization: Bearer owner`; a Lua request() that
rotates the 64 tokens for larder-users*) requests one object per cell at 1,
16 and 64 connections, every cell --reps times with the servers interleaved;
medians are reported. The emulator's request counter (less its tokeninfo
requests, counted apart) is read around every run: a pure-hit run that
reached upstream, or an `always` run with fewer upstream requests than hits,
stops the benchmark. A run during which other processes used more than
--max-foreign of the CPUs is repeated (twice at most).

nginx cannot revalidate per hit, so the nginx peers run in their fastest mode
(no upstream traffic per hit); the targets compare larder-immutable with them.
larder-always is reported on its own, with ratios for information.
larder-users is judged against larder-users-off: the per-user check (token
validation and the owner/grant decision) may cost at most 10% of 4 KiB hit
throughput, judged on the median over reps of the two servers' req/s ratio
within each rep (their runs are seconds apart, so a drift in the machine's
speed between reps cancels out). Its runs must make no storage request
upstream and take only owner or grant decisions (/_larder/stats); tokeninfo
requests during a run are counted and reported (tokens are cached, so they
should be 0).

By default the server under test is pinned to CPU 0 and wrk to the last CPU
(--pin): unpinned, where the scheduler happens to put the client and the
server moves single-connection results by up to 3x.

Usage: bench/hits.py [--quick] [--duration S] [--reps N] [--sizes 4KiB,1MiB,64MiB]
                     [--conns 1,16,64] [--servers larder-immutable,...]
                     [--threads N] [--pin 0:1|none] [--perf DIR]
Needs a built larder: LARDER_BIN (default build/larder). Installs nginx and
wrk with apt-get when they are missing (as root, or through sudo -n).
Exit status 0 when every target is met, 1 when one is missed.
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
SERVERS = ("larder-immutable", "larder-always", "larder-users", "larder-users-off", "nginx-proxy_cache",
           "nginx-static", "nginx-static-copy")
USER_SERVERS = ("larder-users", "larder-users-off")  # 4 KiB cells only
EXPECTED_STATE = {"larder-immutable": ("x-cache", "HIT"), "larder-always": ("x-cache", "REVALIDATED"),
                  "larder-users": ("x-cache", "HIT"), "larder-users-off": ("x-cache", "HIT"),
                  "nginx-proxy_cache": ("x-cache-status", "HIT"), "nginx-static": (None, None),
                  "nginx-static-copy": (None, None)}
# The 64 identities of larder-users: token -> email, registered at the emulator.
USERS = [("tok-bench-%02d" % i, "user%02d@example.com" % i) for i in range(64)]
USER_BUDGET = 0.10  # the per-user check may cost at most this share of hit throughput
TOKENINFO = "tokeninfo"  # the emulator's kind for larder's token checks: not storage traffic

# wrk reports through this script: one JSON line after the run.
WRK_DONE_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"bytes":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""
WRK_LUA = 'wrk.headers["Authorization"] = "%s"\n' % AUTH + WRK_DONE_LUA

# larder-users / larder-users-off: every request carries the next of the 64
# tokens (larder-users-off: 64 times the same one). The requests are formatted
# once per thread in init() and request() only picks the next one (wrk's
# advice for fast servers); each wrk thread starts 32 tokens further on.
WRK_USERS_LUA = r"""
TOKENS = {%s}
local requests, n, i = {}, 0, 0
local threads = 0
function setup(thread)
  thread:set("first", threads)
  threads = threads + 1
end
function init(args)
  for k, token in ipairs(TOKENS) do
    local headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    headers["Authorization"] = "Bearer " .. token
    requests[k] = wrk.format("GET", wrk.path, headers)
  end
  n = #requests
  i = ((first or 0) * 32) %% n
end
function request()
  i = i %% n + 1
  return requests[i]
end
"""


def users_lua(tokens):
    return WRK_USERS_LUA % ", ".join('"%s"' % token for token in tokens) + WRK_DONE_LUA


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- tools ---

def ensure_tools():
    """nginx, wrk and h2load from Debian; apt-get as root or through sudo when missing."""
    missing = [pkg for tool, pkg in (("nginx", "nginx-light"), ("wrk", "wrk"), ("h2load", "nghttp2-client"))
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

def get(port, path, timeout=120, auth=AUTH):
    """GET with the bench credentials; returns (status, headers lower-cased, sha256, length)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers={"Authorization": auth})
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
    def __init__(self, workdir, template, label, workers, **values):
        self.label = label
        self.prefix = os.path.join(workdir, label)
        os.makedirs(self.prefix, exist_ok=True)
        self.port = harness.free_port()
        values.update(PREFIX=self.prefix, PORT=str(self.port), WORKERS=str(workers),
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
    def __init__(self, workdir, emulator, ca, label, policy, workers, auth=None):
        self.label = label
        directory = os.path.join(workdir, label)
        os.makedirs(directory, exist_ok=True)
        config = {
            "cache": {"default_policy": policy},
            "store": {"budget": "2GiB"},
            "worker_threads": workers,
            "log": {"access_log": False, "level": "warn"},
        }
        if harness.larder_has_setting("auth.tokeninfo_url"):
            # Tokens checked at the emulator (the harness does that too) and remembered for an hour,
            # so no run, however late in a full benchmark, waits for tokeninfo.
            config["auth"] = dict({"tokeninfo_url": emulator.base_url + "/tokeninfo", "token_cache_ttl": 3600},
                                  **(auth or {}))
        elif auth is not None:
            raise RuntimeError("%s needs a larder with auth.* settings (%s has none)" % (label, harness.larder_bin()))
        self.larder = harness.Larder(directory, emulator.base_url, ca, config=config)
        self.port = self.larder.port
        self.pids = [self.larder.proc.pid]

    def stop(self):
        self.larder.stop()


# --- other load on the machine ---

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds():
    """CPU seconds all CPUs spent running processes since boot (/proc/stat user, nice, system).

    Interrupt and softirq time (where loopback TCP mostly goes) belongs to no
    process, so it is left out on both sides of the comparison."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2]) / TICK


def tree_cpu_seconds(pids):
    """utime + stime of these processes and all their descendants."""
    children, times = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(rest[1]), []).append(int(entry))
                times[int(entry)] = (int(rest[11]) + int(rest[12])) / TICK
            except (OSError, ValueError, IndexError):
                pass
    total, todo, seen = 0.0, list(pids), set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += times.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total


def own_cpu_seconds(pids):
    t = os.times()
    return tree_cpu_seconds(pids) + t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """Share of the machine's CPU used by processes other than ours over a span."""

    def __init__(self, pids):
        self.pids = pids
        self.start = (time.monotonic(), machine_busy_seconds(), own_cpu_seconds(pids))

    def share(self):
        wall, busy, own = time.monotonic(), machine_busy_seconds(), own_cpu_seconds(self.pids)
        elapsed = wall - self.start[0]
        foreign = (busy - self.start[1]) - (own - self.start[2])
        return max(0.0, foreign / (elapsed * (os.cpu_count() or 1))) if elapsed > 0 else 0.0


def wait_for_quiet(pids, limit, patience):
    """Waits (up to patience seconds) for 0.3 s in which others use under limit of the CPUs."""
    deadline = time.monotonic() + patience
    while True:
        probe = ForeignLoad(pids)
        time.sleep(0.3)
        share = probe.share()
        if share < limit or time.monotonic() > deadline:
            return share
        time.sleep(1.5)


# --- measuring ---

def upstream_requests(emulator):
    """(storage requests, tokeninfo requests) the emulator has answered so far."""
    c = emulator.counters()
    tokeninfo = c["by_kind"].get(TOKENINFO, 0)
    return c["total"] - tokeninfo, tokeninfo


def larder_stats(port):
    """/_larder/stats as the emulator's owner (an auth.admins identity); {} when refused: with
    auth.enabled false the identity is a hash of the credentials, which no admin entry can name."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/_larder/stats", headers={"Authorization": AUTH})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return json.loads(body) if resp.status == 200 else {}


def access_decisions(server):
    """larder's access decisions so far (owner, grant, public, denied, unauthenticated), or None."""
    if not isinstance(server, LarderPeer):
        return None
    return larder_stats(server.port).get("access_decisions")


def wait_fill_committed(server, objects_expected):
    """Waits until larder's store holds the object and its counters stop moving.

    The second warming GET should be an ordinary hit, not one that follows a
    fill still committing (a different code path)."""
    deadline = time.monotonic() + 60
    last = None
    if not larder_stats(server.port):  # auth.enabled false: no stats; a 4 KiB commit takes milliseconds
        time.sleep(2.0)
        return
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
    if server.label in USER_SERVERS:
        return warm_users(server, objects, emulator)
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
        status, headers, got, length = get(server.port, path)
        state = headers.get(header, "(none)")
        if status != 200 or got != digest or state != expected:
            raise RuntimeError("%s: second GET %s: status %d, %s: %s (want %s), bytes %s" % (
                server.label, path, status, header, state, expected, "ok" if got == digest else "WRONG"))
        log("  %s %s: warmed, %s: %s" % (server.label, name, header, state))


def warm_users(server, objects, emulator):
    """larder-users: each of the 64 identities reads the 4 KiB object once, then again as a pure HIT.

    user00's read fills the one stored object (user00 owns it); every other user's first read
    must be REVALIDATED (larder asked upstream with that user's token, got a 304 and remembers
    the grant). Then a second round: each identity's GET must say X-Cache: HIT, with no storage
    request upstream. larder-users-off (auth off) uses only tok-bench-00: it fills, then hits."""
    size, digest = objects[object_name("4KiB")]
    path = "/%s/%s" % (BUCKET, object_name("4KiB"))
    users = USERS if server.label == "larder-users" else USERS[:1]
    for i, (token, email) in enumerate(users):
        status, headers, got, length = get(server.port, path, auth="Bearer " + token)
        state = headers.get("x-cache", "(none)")
        want = "MISS" if i == 0 else "REVALIDATED"
        if status != 200 or got != digest or state != want:
            raise RuntimeError("%s: first GET %s as %s: status %d, x-cache: %s (want %s), bytes %s" % (
                server.label, path, email, status, state, want, "ok" if got == digest else "WRONG"))
        if i == 0:
            wait_fill_committed(server, 1)  # the grants are then checks against the stored entry
    before = upstream_requests(emulator)[0]
    for token, email in users:
        status, headers, got, length = get(server.port, path, auth="Bearer " + token)
        state = headers.get("x-cache", "(none)")
        if status != 200 or got != digest or state != "HIT":
            raise RuntimeError("%s: second GET %s as %s: status %d, x-cache: %s (want HIT), bytes %s" % (
                server.label, path, email, status, state, "ok" if got == digest else "WRONG"))
    moved = upstream_requests(emulator)[0] - before
    if moved:
        raise RuntimeError("%s: %d storage requests upstream during the second GETs" % (server.label, moved))
    decisions = access_decisions(server)
    log("  %s %s: %s, then X-Cache: HIT for %s%s" % (
        server.label, object_name("4KiB"), "user00 filled, 63 other users' first reads confirmed by a 304 "
        "(grants)" if len(users) > 1 else "tok-bench-00 filled (auth off)",
        "each of the 64" if len(users) > 1 else "it", "; decisions so far %s" % decisions if decisions else ""))


def run_wrk(port, path, conns, duration, threads, lua, cpus=None):
    threads = max(1, min(threads, conns))
    args = (["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus is not None else []) + [
        "wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--timeout", "60s", "-s", lua,
        "http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(args, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[len("BENCH "):])
    raise RuntimeError("wrk gave no result (exit %d):\n%s%s" % (out.returncode, out.stdout, out.stderr))


def pin_tree(pid, cpus):
    """Sets the CPU affinity of a process, its threads and its children's (nginx workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    todo = [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for tid in os.listdir("/proc/%d/task" % p):
                os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


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


def measure_cell(server, size_label, conns, emulator, opts, lua, ours):
    path = "/%s/%s" % (BUCKET, object_name(size_label))
    lua = getattr(server, "lua", lua)
    wait_for_quiet(ours, opts.max_foreign, opts.quiet_wait)
    decisions_before = access_decisions(server) if server.label == "larder-users" else None
    before, tokeninfo_before = upstream_requests(emulator)
    perf = PerfRecorder(opts.perf if server.label.startswith("larder") else None,
                        "%s-%s-c%d" % (server.label, size_label, conns), server.pids)
    load = ForeignLoad(ours)
    r = run_wrk(server.port, path, conns, opts.duration, opts.threads, lua, opts.client_cpus)
    foreign = load.share()
    perf.stop()
    upstream, tokeninfo = upstream_requests(emulator)
    upstream, tokeninfo = upstream - before, tokeninfo - tokeninfo_before
    secs = r["duration_us"] / 1e6
    cell = {"server": server.label, "size": size_label, "conns": conns, "rps": r["requests"] / secs,
            "mbps": r["bytes"] / secs / 1e6, "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
            "requests": r["requests"], "upstream": upstream, "tokeninfo": tokeninfo,
            "errors": r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"], "foreign": foreign}
    problems = []
    if decisions_before is not None:
        after = access_decisions(server) or {}
        cell["decisions"] = {k: after.get(k, 0) - decisions_before.get(k, 0) for k in after}
        allowed = cell["decisions"].get("owner", 0) + cell["decisions"].get("grant", 0)
        other = {k: v for k, v in cell["decisions"].items() if k not in ("owner", "grant") and v}
        # larder counts a decision when it is done with a request, a moment after wrk has the answer.
        if other or allowed < r["requests"] - conns:
            problems.append("access decisions %s for %d requests: not all owners or grantees" % (
                cell["decisions"], r["requests"]))
    if cell["errors"]:
        problems.append("wrk errors %s" % {k: r[k] for k in ("connect", "read", "write", "status", "timeout") if r[k]})
    if server.label == "larder-always":
        if upstream < r["requests"]:
            problems.append("only %d upstream requests for %d hits: not revalidating each hit" % (
                upstream, r["requests"]))
    elif upstream > 0:
        problems.append("%d upstream requests during a pure-hit cell" % upstream)
    if problems:
        raise RuntimeError("%s %s c%d: %s" % (server.label, size_label, conns, "; ".join(problems)))
    PROGRESS["done"] += 1
    elapsed = time.strftime("%M:%S", time.gmtime(time.monotonic() - PROGRESS["t0"]))
    extra = ""
    if "decisions" in cell:
        extra = " (tokeninfo %d), owner %d grant %d" % (tokeninfo, cell["decisions"].get("owner", 0),
                                                        cell["decisions"].get("grant", 0))
    elif tokeninfo:
        extra = " (tokeninfo %d)" % tokeninfo
    log("  [%d/%d %s] %-18s %6s c%-3d %10.0f req/s %9.1f MB/s p50 %8.3f ms p99 %8.3f ms  upstream %d%s, "
        "others %.0f%% CPU" % (PROGRESS["done"], PROGRESS["total"], elapsed, server.label, size_label, conns,
                              cell["rps"], cell["mbps"], cell["p50_ms"], cell["p99_ms"], upstream, extra,
                              foreign * 100))
    return cell


PROGRESS = {"done": 0, "total": 0, "t0": 0.0}


def ours_of(servers, emulator):
    # Kernel threads (children of kthreadd, pid 2) count as ours: ksoftirqd and
    # kworkers carry loopback traffic that our runs cause.
    return [2, emulator.proc.pid] + [pid for server in servers for pid in server.pids]


def run_h2load(port, path, conns, rate, duration, cpus, log_path):
    """h2load, HTTP/1.1, conns connections each sending rate/conns requests a second."""
    if os.path.exists(log_path):
        os.unlink(log_path)  # h2load appends
    args = (["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus is not None else []) + [
        "h2load", "--h1", "-c", str(conns), "-t", "1", "-m", "1", "--rps", "%g" % (rate / conns),
        "-D", str(duration), "--warm-up-time", "1", "--log-file", log_path, "-H", "Authorization: " + AUTH,
        "http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(args, capture_output=True, text=True)
    summary = {}
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("requests:"):
            words = line.replace(",", "").split()
            summary = {words[i + 1]: int(words[i]) for i in range(1, len(words) - 1, 2)}
        elif line.startswith("status codes:"):
            words = line.replace(",", "").split()
            summary["2xx"] = int(words[2])
    with open(log_path) as f:
        lat = sorted(int(row.split("\t")[2]) for row in f if row.strip())
    if out.returncode != 0 or not lat or summary.get("failed", 1) or summary.get("errored", 1) or \
            summary.get("2xx") != summary.get("done"):
        raise RuntimeError("h2load failed (exit %d): %s\n%s%s" % (out.returncode, summary, out.stdout[-1500:],
                                                                    out.stderr[-500:]))
    pick = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] / 1e3
    return {"requests": len(lat), "rps": len(lat) / duration, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "p999_ms": pick(0.999)}


def measure_fixed_rate(servers, emulator, opts, ours, workdir):
    """4 KiB hits at a fixed offered load over 64 connections: latency where nobody is saturated."""
    # larder-always: the emulator could not keep up. The 64-identity servers: h2load sends one
    # Authorization header on every request, so they are left to wrk.
    chosen = [s for s in servers if s.label != "larder-always" and s.label not in USER_SERVERS]
    path = "/%s/%s" % (BUCKET, object_name("4KiB"))
    runs = {s.label: [] for s in chosen}
    for rep in range(opts.reps):
        for server in chosen[rep % len(chosen):] + chosen[:rep % len(chosen)]:
            wait_for_quiet(ours, opts.max_foreign, opts.quiet_wait)
            before = upstream_requests(emulator)[0]
            load = ForeignLoad(ours)
            r = run_h2load(server.port, path, 64, opts.rate, opts.duration + 1, opts.client_cpus,
                           os.path.join(workdir, "h2load.tsv"))
            r["foreign"] = load.share()
            if upstream_requests(emulator)[0] != before:
                raise RuntimeError("%s: upstream requests during a pure-hit run" % server.label)
            log("  fixed rate %-18s 4KiB c64 %8.0f req/s p50 %.3f ms p99 %.3f ms p99.9 %.3f ms, others %.0f%% CPU"
                % (server.label, r["rps"], r["p50_ms"], r["p99_ms"], r["p999_ms"], r["foreign"] * 100))
            runs[server.label].append(r)
    fixed = []
    for server in chosen:
        cells = runs[server.label]
        merged = {"server": server.label, "noisy": sum(c["foreign"] >= opts.max_foreign for c in cells)}
        for key in ("rps", "p50_ms", "p99_ms", "p999_ms"):
            merged[key] = median([c[key] for c in cells])
        fixed.append(merged)
    return fixed


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def measure(servers, emulator, opts, lua):
    """Every cell --reps times, the servers interleaved (rotating order), so
    drift and other load on the machine fall on all of them alike. A cell's
    figures are the medians over its repetitions."""
    ours = ours_of(servers, emulator)
    results = []
    everyone = servers
    in_size = lambda size_label: [s for s in everyone if size_label == "4KiB" or s.label not in USER_SERVERS]
    PROGRESS.update(done=0, total=sum(len(in_size(size)) for size in opts.sizes) * len(opts.conns) * opts.reps,
                    t0=time.monotonic())
    for size_label in opts.sizes:
        path = "/%s/%s" % (BUCKET, object_name(size_label))
        servers = in_size(size_label)  # the 64-identity servers have 4 KiB cells only
        for server in servers:  # settle: not reported
            run_wrk(server.port, path, 16, 1, opts.threads, getattr(server, "lua", lua), opts.client_cpus)
        for conns in opts.conns:
            runs = {server.label: [] for server in servers}
            for rep in range(opts.reps):
                order = servers[rep % len(servers):] + servers[:rep % len(servers)]
                for server in order:
                    for attempt in range(3):  # a run disturbed by other work is done again, twice at most
                        cell = measure_cell(server, size_label, conns, emulator, opts, lua, ours)
                        if cell["foreign"] < opts.max_foreign:
                            break
                        log("    (others used %.0f%% of the CPUs: %s)" % (
                            cell["foreign"] * 100, "again" if attempt < 2 else "kept, marked noisy"))
                    runs[server.label].append(cell)
            for server in servers:
                cells = runs[server.label]
                merged = dict(cells[0])
                for key in ("rps", "mbps"):
                    merged[key] = median([c[key] for c in cells])
                for key in ("p50_ms", "p99_ms"):  # runs that completed no request have no latency
                    merged[key] = median([c[key] for c in cells if c["requests"]] or [0.0])
                key = "rps" if size_label == "4KiB" else "mbps"
                merged["spread"] = (min(c[key] for c in cells), max(c[key] for c in cells))
                merged["n"] = sum(c["requests"] for c in cells)
                merged["noisy"] = sum(c["foreign"] >= opts.max_foreign for c in cells)
                merged["foreign"] = max(c["foreign"] for c in cells)
                merged["runs"] = [c["rps"] for c in cells]  # in rep order: for paired ratios
                merged["upstream"] = sum(c["upstream"] for c in cells)
                merged["tokeninfo"] = sum(c["tokeninfo"] for c in cells)
                if all("decisions" in c for c in cells):
                    merged["decisions"] = {k: sum(c["decisions"].get(k, 0) for c in cells)
                                           for k in cells[0]["decisions"]}
                results.append(merged)
    return results


def object_name(size_label):
    return "hit-" + size_label


# --- report ---

def find(results, server, size, conns):
    for cell in results:
        if (cell["server"], cell["size"], cell["conns"]) == (server, size, conns):
            return cell
    return None


def best_static(results, size, conns):
    """The faster of the two static-file peers: the physical limit."""
    cells = [c for c in (find(results, "nginx-static", size, conns), find(results, "nginx-static-copy", size, conns))
             if c is not None]
    return max(cells, key=lambda c: c["mbps"]) if cells else None


def report(results, fixed, opts, notes):
    out = []
    w = out.append
    w("")
    w("larder hit path vs nginx - wrk %s, HTTP/1.1 keep-alive over loopback, %d CPUs, %d wrk thread(s), %s" % (
        wrk_version(), os.cpu_count(), opts.threads, "servers on CPUs %s, wrk on CPUs %s" % (
            ",".join(map(str, sorted(opts.server_cpus))), ",".join(map(str, sorted(opts.client_cpus))))
        if opts.pin else "no CPU pinning"))
    w("Each cell: median of %d run(s) of %d s, servers interleaved; 'range' = the runs' min-max req/s (4KiB) or"
      % (opts.reps, opts.duration))
    w("MB/s (larger); n = requests completed in all runs. MB/s counts every byte wrk read, partial responses")
    w("included (1 MB = 10^6 bytes).")
    w("Latency is per completed request as wrk sees it; closed loop, so at 16/64 connections it is mostly")
    w("queueing (mean >= conns / req/s). 64MiB cells at 16/64 conns complete few requests: read MB/s there.")
    w("")
    w("larder-immutable   cache.default_policy immutable: the pure hit path, no upstream traffic per hit")
    w("larder-always      cache.default_policy always: every hit = one conditional GET to the emulator (304);")
    w("                   the emulator is Python, so these numbers are mostly the emulator's")
    w("nginx-proxy_cache  nginx proxy_cache, warmed the same way; measured in its fastest mode (nginx cannot")
    w("                   revalidate per hit, so its hits never reach upstream) - compare larder-immutable to it")
    w("nginx-static       nginx, the same bytes as files, sendfile on")
    w("nginx-static-copy  nginx, the same bytes as files, sendfile off (read + write, output_buffers 2 256k)")
    if any(s in opts.servers for s in USER_SERVERS):
        w("larder-users       4KiB only: larder-immutable's settings, 64 identities - wrk rotates 64 bearer tokens")
        w("                   per request over ONE stored object (user00 filled it: owner; 63 others: grants")
        w("                   confirmed by a 304 at warm-up, auth.grant_ttl 3600); tokens checked at tokeninfo")
        w("larder-users-off   4KiB only, the baseline: the same wrk script and object, auth.enabled false (no")
        w("                   validation, the old exact-credential rule); all 64 slots carry tok-bench-00, the filler")
    w("")
    w("%-6s %5s  %-18s %9s %9s %9s %9s %7s  %s" % ("size", "conns", "server", "req/s", "MB/s", "p50 ms", "p99 ms",
                                                  "n", "range"))
    for size in opts.sizes:
        for conns in opts.conns:
            for server in opts.servers:
                c = find(results, server, size, conns)
                if c is None:
                    continue
                spread = "%.0f-%.0f" % c["spread"] if opts.reps > 1 else ""
                if c["noisy"]:
                    spread += "  NOISY: others used up to %.0f%% CPU in %d run(s)" % (c["foreign"] * 100, c["noisy"])
                lat = ("%9.3f %9.3f" % (c["p50_ms"], c["p99_ms"])) if c["n"] else "%9s %9s" % ("-", "-")
                w("%-6s %5d  %-18s %9.0f %9.1f %s %7d  %s" % (size, conns, server, c["rps"], c["mbps"], lat, c["n"],
                                                             spread))
        w("")

    def ratio(a, b, key):
        return a[key] / b[key] if a is not None and b is not None and b[key] > 0 else None

    fmt = lambda v: "%8.2f" % v if v is not None else "%8s" % "-"
    w("Ratios larder / nginx (throughput: req/s for 4KiB, MB/s for 1MiB and 64MiB; higher is better;")
    w("p50/p99: larder's latency / nginx's, lower is better). larder-always rows are for information.")
    w("%-6s %5s  %-36s %8s %8s %8s" % ("size", "conns", "", "thruput", "p50", "p99"))
    pairs = [("larder-immutable", "nginx-proxy_cache"), ("larder-immutable", "nginx-static"),
             ("larder-immutable", "nginx-static-copy"), ("larder-always", "nginx-proxy_cache")]
    for size in opts.sizes:
        key = "rps" if size == "4KiB" else "mbps"
        for conns in opts.conns:
            for a_name, b_name in pairs:
                a, b = find(results, a_name, size, conns), find(results, b_name, size, conns)
                if a is None or b is None:
                    continue
                label = "%s / %s" % (a_name, b_name.replace("nginx-", ""))
                lat = a["n"] and b["n"]
                w("%-6s %5d  %-36s %s %s %s" % (size, conns, label, fmt(ratio(a, b, key)),
                                                fmt(ratio(a, b, "p50_ms") if lat else None),
                                                fmt(ratio(a, b, "p99_ms") if lat else None)))
        w("")

    users_section(results, opts, w)

    if fixed:
        w("4KiB hits at a fixed offered load: h2load --h1, 64 connections, %.0f req/s in all (%.0f a connection "
          "a second)," % (opts.rate, opts.rate / 64))
        w("median of %d run(s) of %d s. Nobody is saturated here; h2load starts each connection's requests on the"
          % (opts.reps, opts.duration + 1))
        w("same timer ticks, so bursts of up to 64 requests arrive together and p99 is about the time to serve a "
          "burst.")
        w("%-18s %9s %9s %9s %9s" % ("server", "req/s", "p50 ms", "p99 ms", "p99.9 ms"))
        for c in fixed:
            w("%-18s %9.0f %9.3f %9.3f %9.3f%s" % (c["server"], c["rps"], c["p50_ms"], c["p99_ms"], c["p999_ms"],
                                                  "  NOISY" if c["noisy"] else ""))
        w("")

    w("Targets (larder-immutable vs nginx; larder-users vs larder-users-off; margin = how far above (+) or")
    w("below (-) the bar)")
    verdicts = []
    for conns in opts.conns:
        a, b = find(results, "larder-immutable", "4KiB", conns), find(results, "nginx-proxy_cache", "4KiB", conns)
        if a and b:
            r = a["rps"] / b["rps"]
            verdicts.append(("4KiB hit req/s >= nginx proxy_cache, %d conn%s" % (conns, "s" if conns > 1 else ""),
                             r >= 1.0, "%.0f vs %.0f req/s = %.2fx, margin %+.0f%%" % (a["rps"], b["rps"], r,
                                                                                      (r - 1) * 100)))
    for conns in opts.conns:
        a, b = find(results, "larder-immutable", "64MiB", conns), best_static(results, "64MiB", conns)
        if a and b:
            r = a["mbps"] / b["mbps"]
            verdicts.append(("64MiB hit MB/s >= 0.8x static nginx, %d conn%s" % (conns, "s" if conns > 1 else ""),
                             r >= 0.8, "%.0f vs %.0f MB/s (%s) = %.2fx, margin %+.0f%%" % (
                                 a["mbps"], b["mbps"], b["server"].replace("nginx-", ""), r, (r / 0.8 - 1) * 100)))
    a = find(results, "larder-immutable", "4KiB", 64)
    if a:
        peers = ", ".join("%s %.3f ms" % (name.replace("nginx-", ""), c["p99_ms"]) for name in
                          ("nginx-proxy_cache", "nginx-static") for c in [find(results, name, "4KiB", 64)] if c)
        verdicts.append(("4KiB hit p99 < 1 ms at 64 conns, saturated", a["p99_ms"] < 1.0,
                         "p99 %.3f ms = %.1fx the bar (nginx p99: %s; closed-loop mean floor 64 / %.0f req/s = "
                         "%.2f ms)" % (a["p99_ms"], a["p99_ms"] / 1.0, peers or "-", a["rps"], 64e3 / a["rps"])))
    f = {c["server"]: c for c in fixed}
    if "larder-immutable" in f:
        peers = ", ".join("%s %.3f ms" % (name.replace("nginx-", ""), f[name]["p99_ms"]) for name in
                          ("nginx-proxy_cache", "nginx-static", "nginx-static-copy") if name in f)
        p99 = f["larder-immutable"]["p99_ms"]
        verdicts.append(("4KiB hit p99 < 1 ms at 64 conns, %.0f req/s" % opts.rate, p99 < 1.0,
                         "p99 %.3f ms = %.1fx the bar (nginx p99: %s)" % (p99, p99, peers or "-")))
    for conns in opts.conns:
        a, b = find(results, "larder-users", "4KiB", conns), find(results, "larder-users-off", "4KiB", conns)
        if a and b:
            r, ratios = paired_ratio(a, b)
            verdicts.append(("per-user check costs <= %.0f%%, 4KiB, %d conn%s" % (
                USER_BUDGET * 100, conns, "s" if conns > 1 else ""), r >= 1 - USER_BUDGET,
                "larder-users / users-off = %.2fx%s: the check costs %.1f%% (bar %.0f%%), margin %+.0f%% "
                "(medians %.0f vs %.0f req/s = %.2fx)" % (
                    r, " (median of %d paired runs)" % len(ratios) if len(ratios) > 1 else "", (1 - r) * 100,
                    USER_BUDGET * 100, (r / (1 - USER_BUDGET) - 1) * 100, a["rps"], b["rps"], a["rps"] / b["rps"])))
    for name, ok, detail in verdicts:
        w("  %-4s %-47s %s" % ("PASS" if ok else "MISS", name, detail))
    a = find(results, "larder-always", "4KiB", 64)
    if a:
        w("  info larder-always 4KiB at 64 conns: %.0f req/s, p99 %.3f ms (each hit waits for the emulator; "
          "no target)" % (a["rps"], a["p99_ms"]))
    w("")
    for note in notes:
        w(note)
    print("\n".join(out), flush=True)
    return all(ok for _, ok, _ in verdicts)


def paired_ratio(a, b):
    """The median over reps of a's req/s / b's in the same rep, and those ratios.

    The runs of one rep are seconds apart, those of different reps up to minutes: a drift in the
    machine's speed between reps moves both runs of a rep alike and cancels out of their ratio."""
    ratios = [x / y for x, y in zip(a["runs"], b["runs"]) if y > 0]
    return (median(ratios) if ratios else 0.0), ratios


def users_section(results, opts, w):
    """The 64-identity rows: ratios, upstream traffic during the runs, access decisions."""
    rows = [(size, conns) for size in ("4KiB",) if size in opts.sizes for conns in opts.conns
            if any(find(results, s, size, conns) for s in USER_SERVERS)]
    if not rows:
        return
    fmt = lambda v: "%8.2f" % v if v is not None else "%8s" % "-"

    def ratio(a, b, key):
        return a[key] / b[key] if a is not None and b is not None and b[key] > 0 else None

    w("64 identities, 4KiB: larder-users / a peer, ratios of the medians above (req/s: higher is better;")
    w("p50/p99: lower is better).")
    w("  / immutable: 64 validated identities vs one (Bearer owner, a static wrk request; larder-users'")
    w("               wrk formats nothing per request but calls a Lua request() for each one)")
    w("  / users-off: the same wrk script and object, auth.enabled false and one token: what the check costs")
    w("%-6s %5s  %-36s %8s %8s %8s" % ("size", "conns", "", "thruput", "p50", "p99"))
    def pairs():
        """(size, conns, label, larder-users' result, the peer's) for every cell both ran."""
        for size, conns in rows:
            a = find(results, "larder-users", size, conns)
            for peer in ("larder-immutable", "larder-users-off"):
                b = find(results, peer, size, conns)
                if a is not None and b is not None:
                    yield size, conns, "larder-users / " + peer.replace("larder-", ""), a, b

    for size, conns, label, a, b in pairs():
        w("%-6s %5d  %-36s %s %s %s" % (size, conns, label, fmt(ratio(a, b, "rps")), fmt(ratio(a, b, "p50_ms")),
                                        fmt(ratio(a, b, "p99_ms"))))
    if opts.reps > 1:
        w("Paired: larder-users / a peer in each rep (the target is judged on their median):")
        for size, conns, label, a, b in pairs():
            r, ratios = paired_ratio(a, b)
            w("%-6s %5d  %-36s %8.2f  (%s)" % (size, conns, label, r, " ".join("%.2f" % x for x in ratios)))
    w("Upstream requests during the measured runs (all reps; warm-up excluded): storage (must be 0) and")
    w("tokeninfo (larder's token checks; tokens are cached, so 0 expected); larder's access decisions (stats):")
    for size, conns in rows:
        for server in USER_SERVERS + ("larder-immutable",):
            c = find(results, server, size, conns)
            if c is None:
                continue
            d = c.get("decisions")
            decided = ("owner %d, grant %d, other %d, for %d requests" % (
                d.get("owner", 0), d.get("grant", 0), sum(v for k, v in d.items() if k not in ("owner", "grant")),
                c["n"])) if d else ("n/a (auth.enabled false: no stats)" if server == "larder-users-off" else "")
            w("%-6s %5d  %-18s storage %d, tokeninfo %d%s" % (size, conns, server, c["upstream"], c["tokeninfo"],
                                                             ("; " + decided) if decided else ""))
    w("")


def wrk_version():
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    words = (out.stdout + out.stderr).split()
    return words[1] if len(words) > 1 and words[0] == "wrk" else "?"


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
    parser.add_argument("--quick", action="store_true", help="one run per cell (default: 3, medians reported)")
    parser.add_argument("--duration", type=int, help="seconds per run (default 2)")
    parser.add_argument("--reps", type=int, help="runs per cell, servers interleaved; medians reported "
                        "(default 3, --quick 1)")
    parser.add_argument("--sizes", type=lambda t: parse_list(t, SIZES), default=list(SIZES))
    parser.add_argument("--conns", type=lambda t: parse_list(t, convert=int), default=[1, 16, 64])
    parser.add_argument("--servers", type=lambda t: parse_list(t, SERVERS), default=list(SERVERS))
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (at most conns; default 2)")
    parser.add_argument("--pin", metavar="SERVER_CPUS:CLIENT_CPUS", default="auto",
                        help="CPU affinity: 0:1 puts the server under test on CPU 0 and wrk on CPU 1; 'none' "
                             "lets them share every CPU; 'auto' (default): wrk on the last CPU, servers on the "
                             "others. Unpinned, results swing up to 3x with where the scheduler puts things")
    parser.add_argument("--rate", type=float, default=16000, metavar="REQ_PER_S",
                        help="offered load for the fixed-rate 4KiB latency runs (h2load --rps over 64 "
                             "connections; 0 skips them; default 16000)")
    parser.add_argument("--max-foreign", type=float, default=0.05, metavar="SHARE",
                        help="a run during which other processes used more than this share of the CPUs "
                             "is repeated (default 0.05)")
    parser.add_argument("--quiet-wait", type=float, default=10, metavar="S",
                        help="before each run, wait up to S seconds for other processes to go quiet")
    parser.add_argument("--perf", metavar="DIR", help="perf record -g larder during each larder run into DIR "
                        "(perturbs the numbers)")
    opts = parser.parse_args()
    opts.duration = opts.duration or 2
    opts.reps = opts.reps or (1 if opts.quick else 3)
    opts.server_cpus = opts.client_cpus = None
    if opts.pin == "auto":
        ncpu = os.cpu_count() or 1
        opts.pin = "%s:%d" % (",".join(str(c) for c in range(ncpu - 1)), ncpu - 1) if ncpu >= 2 else "none"
    if opts.pin == "none":
        opts.pin = None
    if opts.pin:
        server_cpus, client_cpus = opts.pin.split(":")
        opts.server_cpus = set(parse_list(server_cpus, convert=int))
        opts.client_cpus = set(parse_list(client_cpus, convert=int))
    os.environ.setdefault("LARDER_BIN", os.path.join(HERE, "..", "build", "larder"))
    if "4KiB" not in opts.sizes and any(s in USER_SERVERS for s in opts.servers):
        log("%s: 4KiB cells only, and 4KiB is not among --sizes: left out" % ", ".join(USER_SERVERS))
        opts.servers = [s for s in opts.servers if s not in USER_SERVERS]
    if any(s.startswith("larder") for s in opts.servers):
        harness.larder_bin()  # fails early with a clear message
        if any(s in USER_SERVERS for s in opts.servers) and not harness.larder_has_setting("auth.grant_ttl"):
            sys.exit("%s needs a larder that validates tokens (auth.* settings); %s has none" % (
                " and ".join(s for s in USER_SERVERS if s in opts.servers), harness.larder_bin()))
    ensure_tools()

    notes = ["load average at start: %.2f %.2f %.2f (other work on this machine skews every number)"
             % os.getloadavg()]
    workdir = tempfile.mkdtemp(prefix="larder-hits-")
    lua = os.path.join(workdir, "report.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    users_luas = {}
    for label, tokens in (("larder-users", [t for t, _ in USERS]), ("larder-users-off", [USERS[0][0]] * len(USERS))):
        users_luas[label] = os.path.join(workdir, label + ".lua")
        with open(users_luas[label], "w") as f:
            f.write(users_lua(tokens))
    ca = harness.TestCA(workdir)
    emulator = harness.Emulator(workdir)
    try:
        emulator.create_bucket(BUCKET)
        users = [email for _, email in USERS] if any(s in USER_SERVERS for s in opts.servers) else []
        if users:
            emulator.control("POST", "tokens", dict(USERS))
        docroot = os.path.join(workdir, "docroot")
        os.makedirs(os.path.join(docroot, BUCKET))
        objects = {}
        for seed, size_label in enumerate(opts.sizes, start=11):
            name = object_name(size_label)
            # The 4 KiB object: readable by the 64 users too (larder-users' grantees).
            emulator.control("POST", "objects", {"bucket": BUCKET, "name": name, "size": SIZES[size_label],
                                                 "seed": seed, "readers": users if size_label == "4KiB" else []})
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

        # One worker per CPU the servers may use, for every server alike: more
        # threads than CPUs only adds time-slicing between them, which shows up
        # as multi-millisecond tail latency in whichever server has it.
        workers = len(opts.server_cpus) if opts.server_cpus else os.cpu_count()
        notes.append("every server runs %d worker(s), one per CPU it may use" % workers)
        servers = []
        try:
            for label in opts.servers:
                log("%s:" % label)
                if label == "larder-immutable":
                    server = LarderPeer(workdir, emulator, ca, label, "immutable", workers)
                elif label == "larder-always":
                    server = LarderPeer(workdir, emulator, ca, label, "always", workers)
                elif label == "larder-users":
                    server = LarderPeer(workdir, emulator, ca, label, "immutable", workers,
                                        auth={"enabled": True, "grant_ttl": 3600})
                    server.lua = users_luas[label]
                elif label == "larder-users-off":
                    server = LarderPeer(workdir, emulator, ca, label, "immutable", workers, auth={"enabled": False})
                    server.lua = users_luas[label]
                elif label == "nginx-proxy_cache":
                    server = Nginx(workdir, "proxy_cache.conf", label, workers, UPSTREAM_PORT=str(emulator.port))
                elif label == "nginx-static":
                    server = Nginx(workdir, "static.conf", label, workers, DOCROOT=docroot, SENDFILE="sendfile on;")
                else:
                    server = Nginx(workdir, "static.conf", label, workers, DOCROOT=docroot,
                                   SENDFILE="sendfile off; output_buffers 2 256k;")
                servers.append(server)
                warm(server, objects, emulator)
                if opts.server_cpus is not None:
                    pin_tree(server.pids[0], opts.server_cpus)
            log("measuring: %d cells x %d reps x %d s" % (len(opts.sizes) * len(opts.conns) * len(servers),
                                                           opts.reps, opts.duration))
            results = measure(servers, emulator, opts, lua)
            fixed = measure_fixed_rate(servers, emulator, opts, ours_of(servers, emulator), workdir) \
                if opts.rate > 0 and "4KiB" in opts.sizes and 64 in opts.conns else []
        finally:
            for server in servers:
                server.stop()
        notes.append("load average at end:   %.2f %.2f %.2f" % os.getloadavg())
        return 0 if report(results, fixed, opts, notes) else 1
    finally:
        emulator.stop()
        if os.environ.get("LARDER_KEEP_WORKDIR") is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log("kept " + workdir)


if __name__ == "__main__":
    sys.exit(main())
