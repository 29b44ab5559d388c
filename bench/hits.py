#!/usr/bin/env python3
"""hits.py - larder's cache-hit path against nginx and Varnish, on loopback.

Starts the GCS emulator with three synthetic objects (4 KiB, 1 MiB, 64 MiB)
and eight servers in front of the same bytes:

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
  varnish            Debian's varnishd, malloc storage, a VCL that caches what
                     the proxy_cache peer caches, for as long
                     (bench/varnish/cache_all.vcl)
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

Every run also reads the CPU time (utime + stime in /proc/PID/stat) of the
server's processes (larder; nginx's master and workers; varnishd's manager
and child) before and after: throughput per server core is the throughput
divided by (CPU seconds / wall seconds).

Optional parts:
  --tls          h2 over TLS hits (h2load, --tls-conns x --tls-streams), larder
                 against nginx proxy_cache with the same certificate and a
                 TLS 1.3 cipher suite the client insists on (--tls-cipher)
  --miss-ttfb N  time to first byte of N cache misses per size (--miss-sizes)
                 through each caching server and straight from the emulator,
                 which answers those objects after --miss-latency-ms (20)
The fixed-rate run (--rate, h2load --rps over 64 connections) and an
unthrottled h2load run over the same 64 connections give the two p99s of the
tails target; h2load runs one client thread, where wrk's two share a CPU and
their time slices showed in wrk's p99 (which is still printed). Beside each
h2load latency run, bench_machine_canary notes when the machine itself ran
slow; a "quiet p99" leaves out the requests that overlapped those episodes
(bench/README.md), and is judged beside the p99 of all requests.

Usage: bench/hits.py [--quick] [--duration S] [--reps N] [--sizes 4KiB,1MiB,64MiB]
                     [--conns 1,16,64] [--servers larder-immutable,...,varnish]
                     [--threads N] [--pin 0:1|none] [--perf DIR] [--rate R]
                     [--tls] [--miss-ttfb N]
Needs a built larder: LARDER_BIN (default build/larder). Installs nginx, wrk,
h2load and varnishd with apt-get when they are missing (as root, or through
sudo -n).
Exit status 0 when every target is met, 1 when one is missed.
"""

import argparse
import bisect
import hashlib
import http.client
import json
import os
import select
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
           "nginx-static", "nginx-static-copy", "varnish", "h2o-floor")
USER_SERVERS = ("larder-users", "larder-users-off")
FOUR_KIB_ONLY = USER_SERVERS
EXPECTED_STATE = {"larder-immutable": ("x-cache", "HIT"), "larder-always": ("x-cache", "REVALIDATED"),
                  "larder-users": ("x-cache", "HIT"), "larder-users-off": ("x-cache", "HIT"),
                  "nginx-proxy_cache": ("x-cache-status", "HIT"), "nginx-static": (None, None),
                  "nginx-static-copy": (None, None), "varnish": ("x-cache-status", "HIT"),
                  "h2o-floor": ("x-cache", "HIT")}
# What says "miss" on a first read, for the miss first-byte runs.
MISS_STATE = {"larder-immutable": ("x-cache", "MISS"), "nginx-proxy_cache": ("x-cache-status", "MISS"),
              "varnish": ("x-cache-status", "MISS")}
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

def ensure_tools(varnish=False):
    """nginx, wrk, h2load (and varnishd) from Debian; apt-get as root or through sudo when missing."""
    tools = (("nginx", "nginx-light"), ("wrk", "wrk"), ("h2load", "nghttp2-client")) + \
        ((("varnishd", "varnish"),) if varnish else ())
    missing = [pkg for tool, pkg in tools if sbin_tool(tool) is None]
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


def sbin_tool(tool):
    """tool's path (on PATH or in /usr/sbin, which a non-root PATH may lack), or None."""
    found = shutil.which(tool)
    return found or ("/usr/sbin/" + tool if os.access("/usr/sbin/" + tool, os.X_OK) else None)


def nginx_bin():
    return sbin_tool("nginx") or "/usr/sbin/nginx"


def fill_template(path, values):
    """The text of a config template with its @NAME@ placeholders filled in."""
    with open(path) as f:
        text = f.read()
    for name, value in values.items():
        text = text.replace("@%s@" % name, value)
    if "@" in "".join(line.split("#")[0] for line in text.splitlines()):
        raise RuntimeError("unfilled placeholder in " + path)
    return text


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

# TLS for the --tls rows: the same certificate as larder's TLS listener and the
# protocols larder allows (TLS 1.2 and up, OpenSSL's default suites); h2load
# insists on one TLS 1.3 suite (--tls-cipher), so both negotiate the same.
NGINX_TLS = """
        listen 127.0.0.1:@TLS_PORT@ ssl http2 reuseport;
        ssl_certificate @CERT@;
        ssl_certificate_key @KEY@;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:bench_tls:10m;"""


class ForegroundServer:
    """A peer server run in the foreground as our child (self.proc), its output in self.log."""

    # Stopped as the harness stops the emulator (the same two attributes): SIGTERM, on which nginx and
    # varnishd shut down at once; SIGKILL if it is still there 10 s later; then self.log is closed.
    stop = harness.Emulator.stop


class Nginx(ForegroundServer):
    def __init__(self, workdir, template, label, workers, tls=None, **values):
        """tls: a harness.TestCA; the server block then also listens with TLS and h2 on self.tls_port."""
        self.label = label
        self.prefix = os.path.join(workdir, label)
        os.makedirs(self.prefix, exist_ok=True)
        self.port, self.tls_port = harness.free_ports(2)
        values.update(PREFIX=self.prefix, PORT=str(self.port), WORKERS=str(workers),
                      USER_LINE="user root;" if os.geteuid() == 0 else "# not root: workers run as us")
        text = fill_template(os.path.join(HERE, "nginx", template), values)
        if tls is not None:
            listen = "listen 127.0.0.1:%d reuseport;" % self.port
            if listen not in text:
                raise RuntimeError("%s has no '%s' to add a TLS listener beside" % (template, listen))
            text = text.replace(listen, listen + NGINX_TLS.replace("@TLS_PORT@", str(self.tls_port)).replace(
                "@CERT@", tls.cert).replace("@KEY@", tls.key))
        else:
            self.tls_port = None
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


class Varnish(ForegroundServer):
    """varnishd in the foreground as the current user (-j none), malloc storage, bench/varnish/cache_all.vcl.

    One thread pool per CPU the servers may use (Varnish's analogue of a
    worker per CPU); its threads are one per connection, as Varnish is built."""

    def __init__(self, workdir, label, workers, upstream_port, storage="2G"):
        self.label = label
        self.prefix = os.path.join(workdir, label)
        os.makedirs(self.prefix, exist_ok=True)
        self.port = harness.free_port()
        self.tls_port = None
        vcl = os.path.join(self.prefix, "cache_all.vcl")
        with open(vcl, "w") as f:
            f.write(fill_template(os.path.join(HERE, "varnish", "cache_all.vcl"),
                                  {"UPSTREAM_PORT": str(upstream_port)}))
        args = [sbin_tool("varnishd") or "/usr/sbin/varnishd", "-F", "-j", "none", "-n",
                os.path.join(self.prefix, "instance"), "-a", "127.0.0.1:%d" % self.port, "-T", "none",
                "-f", vcl, "-s", "malloc,%s" % storage,
                "-p", "thread_pools=%d" % workers,
                # nginx keeps idle client connections 120 s (keepalive_timeout); Varnish's default is 5 s.
                "-p", "timeout_idle=120"]
        self.log = open(os.path.join(self.prefix, "varnishd.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_listening(self.port, self.proc, timeout=60):  # it compiles the VCL with cc first
            self.log.flush()
            with open(self.log.name) as f:
                raise RuntimeError("varnishd did not start:\n%s" % f.read()[-3000:])
        self.pids = [self.proc.pid]  # the manager; the child (the cache) is its descendant


class H2oFloor(ForegroundServer):
    """bench/h2o_floor.c, built next to larder: the docroot's bytes from memory under a larder hit's headers,
    one h2o event loop per worker and nothing else - the least any server on this h2o spends on a hit."""

    def __init__(self, workdir, label, workers, docroot):
        self.label = label
        self.port, self.tls_port = harness.free_port(), None
        binary = os.path.join(os.path.dirname(harness.larder_bin()), "bench_h2o_floor")
        if not os.path.exists(binary):
            raise RuntimeError("h2o-floor: %s is missing (cmake --build builds it with larder)" % binary)
        self.log = open(os.path.join(workdir, label + ".log"), "wb")
        self.proc = subprocess.Popen([binary, str(self.port), str(workers), os.path.join(docroot, BUCKET)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_listening(self.port, self.proc):
            raise RuntimeError("h2o-floor did not start")
        self.pids = [self.proc.pid]


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
        if harness.larder_has_setting("http2.max_requests_per_second"):
            # The Rapid Reset guard closes an h2 connection opening more than 2000 streams a second (by
            # default): a benchmark's h2load does that by design. nginx's proxy_cache.conf has no such limit.
            config["http2"] = {"max_requests_per_second": 1000000}
        if harness.larder_has_setting("auth.tokeninfo_url"):
            # Tokens checked at the emulator (the harness does that too) and remembered for an hour,
            # so no run, however late in a full benchmark, waits for tokeninfo.
            config["auth"] = dict({"tokeninfo_url": emulator.base_url + "/tokeninfo", "token_cache_ttl": 3600},
                                  **(auth or {}))
        elif auth is not None:
            raise RuntimeError("%s needs a larder with auth.* settings (%s has none)" % (label, harness.larder_bin()))
        self.larder = harness.Larder(directory, emulator.base_url, ca, config=config)
        self.port, self.tls_port = self.larder.port, self.larder.tls_port
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
    return sum(tree_cpu_split(pids))


def tree_cpu_split(pids):
    """(utime, stime) of these processes and all their descendants, in seconds."""
    return cpu_split(process_tree(pids))


def process_tree(pids):
    """These processes and all their descendants: a walk over every process's /proc/PID/stat."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    tree, todo = [], list(pids)
    while todo:
        p = todo.pop()
        if p not in tree:
            tree.append(p)
            todo.extend(children.get(p, []))
    return tree


def cpu_split(pids):
    """(utime, stime) of exactly these processes (all their threads), in seconds; one small read each."""
    user = system = 0.0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            user, system = user + int(rest[11]) / TICK, system + int(rest[12]) / TICK
        except (OSError, ValueError, IndexError):
            pass  # gone: a process that exits takes its time with it, as before it was counted
    return user, system


class ServerCpu:
    """CPU seconds a server's processes (all their threads and descendants: nginx's workers, varnishd's
    child) used from construction (or restart()) to used(); /proc/PID/stat's utime + stime, in clock ticks.

    The process tree is found once, at construction: walking all of /proc takes the bench's Python some
    milliseconds, and done inside a latency run it stole the server's CPU and delayed a whole burst of
    requests (issue 11). Servers do not fork during a run, so the readings after it only read their own
    few /proc/PID/stat files."""

    def __init__(self, pids):
        self.pids = process_tree(pids)
        self.restart()

    def restart(self):
        self.start = cpu_split(self.pids)

    def used(self):
        return sum(self.used_split())

    def used_split(self):
        """(user, system) CPU seconds since construction or restart()."""
        now = cpu_split(self.pids)
        return now[0] - self.start[0], now[1] - self.start[1]


def per_core(cell, requests, nbytes, seconds, cpu):
    """Adds the CPU figures to a result: cores busy (CPU s / wall s) and throughput per core."""
    cell["cpu_s"] = cpu
    cell["cores"] = cpu / seconds if seconds > 0 else 0.0
    cell["rps_core"] = requests / cpu if cpu > 0 else 0.0
    cell["mbps_core"] = nbytes / 1e6 / cpu if cpu > 0 else 0.0
    return cell


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
    for p in process_tree([pid]):
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
    cpu = ServerCpu(server.pids)
    r = run_wrk(server.port, path, conns, opts.duration, opts.threads, lua, opts.client_cpus)
    user_s, system_s = cpu.used_split()
    cpu = user_s + system_s
    foreign = load.share()
    perf.stop()
    upstream, tokeninfo = upstream_requests(emulator)
    upstream, tokeninfo = upstream - before, tokeninfo - tokeninfo_before
    secs = r["duration_us"] / 1e6
    cell = {"server": server.label, "size": size_label, "conns": conns, "rps": r["requests"] / secs,
            "mbps": r["bytes"] / secs / 1e6, "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
            "requests": r["requests"], "upstream": upstream, "tokeninfo": tokeninfo,
            "errors": r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"], "foreign": foreign}
    per_core(cell, r["requests"], r["bytes"], secs, cpu)
    if r["requests"]:
        cell["user_us"], cell["system_us"] = user_s * 1e6 / r["requests"], system_s * 1e6 / r["requests"]
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
    log("  [%d/%d %s] %-18s %6s c%-3d %10.0f req/s %9.1f MB/s p50 %8.3f ms p99 %8.3f ms  %.2f cores, "
        "upstream %d%s, others %.0f%% CPU" % (PROGRESS["done"], PROGRESS["total"], elapsed, server.label, size_label,
                                             conns, cell["rps"], cell["mbps"], cell["p50_ms"], cell["p99_ms"],
                                             cell["cores"], upstream, extra, foreign * 100))
    return cell


PROGRESS = {"done": 0, "total": 0, "t0": 0.0}


def ours_of(servers, emulator):
    # Kernel threads (children of kthreadd, pid 2) count as ours: ksoftirqd and
    # kworkers carry loopback traffic that our runs cause.
    return [2, emulator.proc.pid] + [pid for server in servers for pid in server.pids]


class MachineCanary:
    """bench/machine_canary.c over one latency run: when this machine itself ran slow.

    Its threads, one per CPU at real-time priority, time a 20 us spin every millisecond. An episode is two
    or more slow spins (over twice their best, or woken over 0.5 ms late) less than 1.5 ms apart on one
    CPU, or one slow span of 1 ms or more: the windows, some 10-40 ms long and several a second on the
    bench VM whoever runs, in which the guest ran at a fraction of its speed without steal time showing it
    (issue 11). A lone slow spin is the VM's ordinary jitter and stays in every server's figures."""

    GAP_US, MIN_SPINS, LONG_US = 1500, 2, 1000

    def __init__(self):
        binary = os.path.join(os.path.dirname(harness.larder_bin()), "bench_machine_canary")
        if not os.path.exists(binary):
            raise RuntimeError("%s is missing (cmake --build builds it with larder)" % binary)
        self.proc = subprocess.Popen([binary, ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        if "ready" not in line:
            self.proc.kill()
            raise RuntimeError("machine canary did not start: %s" % line.strip())

    def stop(self):
        """Episodes as sorted, disjoint [start_us, end_us] (CLOCK_REALTIME, h2load's log clock), and the
        canary's summary {spins, slow, dropped, realtime}."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate()
        lines = out.splitlines()
        if self.proc.returncode != 0 or not lines or not lines[-1].startswith("# spins"):
            raise RuntimeError("machine canary failed (exit %d): %s" % (self.proc.returncode, err.strip()))
        words = lines[-1].split()[1:]
        summary = {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
        if not summary.get("realtime"):
            log("machine canary: no real-time priority here (needs root or CAP_SYS_NICE), so a saturated CPU "
                "delays its wake-ups and saturated runs leave out more than the machine's own episodes")
        spans = sorted((int(c), int(a), int(b)) for a, b, c in (line.split() for line in lines[:-1]))
        return self.episodes(spans), summary

    @classmethod
    def episodes(cls, spans):
        found, group = [], []

        def close():
            if group and (len(group) >= cls.MIN_SPINS or group[-1][2] - group[0][1] >= cls.LONG_US):
                found.append([group[0][1], group[-1][2]])

        for span in spans:  # (cpu, start, end), sorted
            if group and (span[0] != group[-1][0] or span[1] - group[-1][2] > cls.GAP_US):
                close()
                group = []
            group.append(span)
        close()
        merged = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return merged


def outside_episodes(requests, episodes):
    """Latencies (us) of the requests, (start_us, latency_us), whose lifetime overlaps no episode."""
    starts = [e[0] for e in episodes]
    kept = []
    for start, latency in requests:
        i = bisect.bisect_right(starts, start + latency)  # episodes starting before the request ends
        if i == 0 or episodes[i - 1][1] < start:
            kept.append(latency)
    return kept


def run_h2load(url, conns, duration, cpus, log_path, rate=None, streams=1, tls_cipher=None, server_pids=None,
               canary=False):
    """h2load: HTTP/1.1 (rate given: conns connections each sending rate/conns requests a second) or, for an
    https URL, h2 over TLS with `streams` concurrent streams per connection and one TLS 1.3 suite.

    After a 1 s warm-up, `duration` seconds are measured; the server's CPU time (server_pids) is read
    over the same span, by our clock (h2load may take a while to exit after it, big responses still
    flowing). With canary, the machine canary runs alongside: the result's quiet_* percentiles leave out
    the requests that overlapped an episode of the machine running slow, and slow_share says how many
    that was."""
    if os.path.exists(log_path):
        os.unlink(log_path)  # h2load appends
    warmup = 1
    args = (["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus is not None else []) + [
        "h2load", "-c", str(conns), "-t", "1", "-m", str(streams), "-D", str(duration),
        "--warm-up-time", str(warmup), "--log-file", log_path, "-H", "Authorization: " + AUTH]
    if rate is not None:
        args += ["--rps", "%g" % (rate / conns)]
    if url.startswith("https:"):
        args += ["--tls13-ciphers", tls_cipher or TLS_CIPHER]
    else:
        args += ["--h1"]
    cpu = ServerCpu(server_pids) if server_pids is not None else None
    watch = MachineCanary() if canary else None
    proc = subprocess.Popen(args + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if cpu is not None:
        time.sleep(warmup + 0.05)  # h2load's connections are up and its warm-up is over
        cpu.restart()
        time.sleep(duration)
        cpu = cpu.used()
    stdout, stderr = proc.communicate()
    episodes, watched = watch.stop() if watch else (None, None)
    summary, tls = {}, {}
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("requests:"):
            words = line.replace(",", "").split()
            summary = {words[i + 1]: int(words[i]) for i in range(1, len(words) - 1, 2)}
        elif line.startswith("status codes:"):
            words = line.replace(",", "").split()
            summary["2xx"] = int(words[2])
        elif line.startswith("traffic:") and "(" in line:  # "traffic: 1.2MB (1234567) total, ..."
            summary["bytes"] = int(line.split("(", 1)[1].split(")", 1)[0])
        else:
            for key in ("TLS Protocol", "Cipher", "Server Temp Key", "Application protocol"):
                if line.startswith(key + ":"):
                    tls[key] = line.split(":", 1)[1].strip()
    with open(log_path) as f:
        rows = [row.split("\t") for row in f if row.strip()]
    # h2load logs the requests in flight when the measured span ends with status 0 (cut short): at most
    # one per stream, left out. Its summary counts a status when the head arrives and a request when it
    # is done, so a response straddling either end of the span is in one count only.
    cut = sum(row[1] == "0" for row in rows)
    done = [(int(row[0]), int(row[2])) for row in rows if row[1] == "200"]
    lat = sorted(latency for _, latency in done)
    if proc.returncode != 0 or not summary.get("bytes") or summary.get("failed", 1) or summary.get("errored", 1) or \
            abs(summary.get("done", 0) - summary.get("2xx", 0)) > conns * streams or cut > conns * streams or \
            len(lat) + cut != len(rows):
        odd = [row for row in rows if row[1] != "200"]
        raise RuntimeError("h2load failed (exit %d): %s, %d of %d logged requests not 200 (%s)\n%s%s" % (
            proc.returncode, summary, len(odd), len(rows), odd[:3], stdout[-1500:], stderr[-500:]))
    pick = lambda q: percentile(lat, q) / 1e3  # 0 when no request completed (64 MiB over TLS: read MB/s)
    result = {"requests": len(lat), "rps": len(lat) / duration, "mbps": summary["bytes"] / duration / 1e6,
              "p50_ms": pick(0.5), "p99_ms": pick(0.99), "p999_ms": pick(0.999), "tls": tls}
    if cpu is not None:
        per_core(result, len(lat), summary["bytes"], duration, cpu)
    if watch:
        quiet = sorted(outside_episodes(done, episodes))
        first, last = (min(s for s, _ in done), max(s + d for s, d in done)) if done else (0, 0)
        slow_us = sum(max(0, min(e, last) - max(s, first)) for s, e in episodes)
        result.update(quiet_p50_ms=percentile(quiet, 0.5) / 1e3, quiet_p99_ms=percentile(quiet, 0.99) / 1e3,
                      slow_requests=1 - len(quiet) / len(lat) if lat else 0.0,
                      slow_time=slow_us / (last - first) if last > first else 0.0, canary=watched)
    return result


def h2load_rounds(chosen, emulator, opts, ours, run, describe):
    """Every server in chosen opts.reps times, the order rotating from rep to rep: run(server) gives an
    h2load result, which must come with no request upstream (pure hits); describe(server, result) the
    progress line. Returns {label: [result per rep]}, each with "foreign" (others' CPU share)."""
    runs = {s.label: [] for s in chosen}
    for rep in range(opts.reps):
        for server in chosen[rep % len(chosen):] + chosen[:rep % len(chosen)]:
            wait_for_quiet(ours, opts.max_foreign, opts.quiet_wait)
            before = upstream_requests(emulator)[0]
            load = ForeignLoad(ours)
            r = run(server)
            r["foreign"] = load.share()
            if upstream_requests(emulator)[0] != before:
                raise RuntimeError("%s: upstream requests during a pure-hit h2load run" % server.label)
            log("%s, others %.0f%% CPU" % (describe(server, r), r["foreign"] * 100))
            runs[server.label].append(r)
    return runs


def merge_runs(cells, keys, opts, **fields):
    """One result from a server's runs: the medians of keys, how many runs were noisy, and fields."""
    merged = dict(fields, noisy=sum(c["foreign"] >= opts.max_foreign for c in cells),
                  n=sum(c["requests"] for c in cells))
    for key in keys:
        merged[key] = median([c[key] for c in cells])
    return merged


def measure_fixed_rate(servers, emulator, opts, ours, workdir):
    """4 KiB hits over 64 connections from h2load's one thread: at a fixed offered load, where nobody is
    saturated, and unthrottled (sat_* fields), where the server is. The tails target is judged on these:
    wrk's two threads share one CPU here, and a request waiting out the other thread's time slice (some
    3-4 ms) made wrk's p99 a measure of the scheduler's slice rather than of the server (issue 11)."""
    # larder-always: the emulator could not keep up. The 64-identity servers: h2load sends one
    # Authorization header on every request, so they are left to wrk.
    chosen = [s for s in servers if s.label != "larder-always" and s.label not in USER_SERVERS]
    path = "/%s/%s" % (BUCKET, object_name("4KiB"))
    keys = ("rps", "p50_ms", "p99_ms", "p999_ms", "cores", "rps_core") + (
        ("quiet_p99_ms", "slow_requests", "slow_time") if opts.canary else ())

    def describe(what):
        return lambda server, r: "  %-10s %-18s 4KiB c64 %8.0f req/s p50 %.3f ms p99 %.3f ms p99.9 %.3f ms, " \
            "%.2f cores%s" % (what, server.label, r["rps"], r["p50_ms"], r["p99_ms"], r["p999_ms"], r["cores"],
                              "; outside slow episodes p99 %.3f ms, %.1f%% of requests left out" % (
                                  r["quiet_p99_ms"], r["slow_requests"] * 100) if opts.canary else "")

    def run(rate):
        return lambda server: run_h2load("http://127.0.0.1:%d%s" % (server.port, path), 64, opts.duration + 1,
                                         opts.client_cpus, os.path.join(workdir, "h2load.tsv"), rate=rate,
                                         server_pids=server.pids, canary=opts.canary)

    runs = h2load_rounds(chosen, emulator, opts, ours, run(opts.rate), describe("fixed rate"))
    saturated = h2load_rounds(chosen, emulator, opts, ours, run(None), describe("saturated"))
    merged = []
    for server in chosen:
        m = merge_runs(runs[server.label], keys, opts, server=server.label)
        sat = merge_runs(saturated[server.label], keys, opts)
        m.update({"sat_" + key: sat[key] for key in keys + ("noisy",)})
        merged.append(m)
    return merged


TLS_SERVERS = ("larder-immutable", "nginx-proxy_cache")  # Varnish has no TLS of its own
TLS_CIPHER = "TLS_AES_128_GCM_SHA256"  # h2load's first TLS 1.3 choice; both servers accept it


def measure_tls(servers, emulator, opts, ours, workdir):
    """h2 over TLS hits, saturated: h2load, --tls-conns connections x --tls-streams streams, each size."""
    chosen = [s for s in servers if s.label in TLS_SERVERS and s.tls_port]
    results = []

    def run(server, path, conns):
        r = run_h2load("https://127.0.0.1:%d%s" % (server.tls_port, path), conns, opts.duration, opts.client_cpus,
                       os.path.join(workdir, "h2load-tls.tsv"), streams=opts.tls_streams, tls_cipher=opts.tls_cipher,
                       server_pids=server.pids)
        if r["tls"].get("Application protocol") != "h2":
            raise RuntimeError("%s: TLS run negotiated %s, not h2" % (server.label, r["tls"]))
        return r

    for size_label in opts.sizes:
        path = "/%s/%s" % (BUCKET, object_name(size_label))
        for conns in opts.tls_conns:
            runs = h2load_rounds(
                chosen, emulator, opts, ours, lambda server: run(server, path, conns),
                lambda server, r: "  TLS h2 %-18s %6s c%d x%d %8.0f req/s %8.1f MB/s p50 %.3f ms p99 %.3f ms, "
                                  "%.2f cores, %s %s" % (server.label, size_label, conns, opts.tls_streams, r["rps"],
                                                         r["mbps"], r["p50_ms"], r["p99_ms"], r["cores"],
                                                         r["tls"].get("TLS Protocol"), r["tls"].get("Cipher")))
            results += [merge_runs(runs[server.label], ("rps", "mbps", "p50_ms", "p99_ms", "cores", "rps_core",
                                                        "mbps_core"), opts,
                                   server=server.label, size=size_label, conns=conns, streams=opts.tls_streams,
                                   tls=runs[server.label][0]["tls"]) for server in chosen]
    suites = {(c["tls"].get("TLS Protocol"), c["tls"].get("Cipher")) for c in results}
    if len(suites) > 1:
        raise RuntimeError("the TLS runs negotiated different protocols or suites: %s" % sorted(suites))
    return results


def timed_get(conn, path):
    """GET on a keep-alive connection: (ms to the response's first byte, status, headers, sha256, length).

    The connection is opened first, untimed; the clock runs from sending the request until the
    socket has something to read."""
    for attempt in (1, 2):
        if conn.sock is None:
            conn.connect()
        try:
            t0 = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": AUTH})
            ready, _, _ = select.select([conn.sock], [], [], 120)
            t1 = time.perf_counter()
            if not ready:
                raise RuntimeError("no answer to GET %s within 120 s" % path)
            resp = conn.getresponse()
            break
        except (http.client.RemoteDisconnected, ConnectionError):
            conn.close()  # the server had closed the idle connection: again, on a new one
            if attempt == 2:
                raise
    digest, total = hashlib.sha256(), 0
    for block in iter(lambda: resp.read(1 << 20), b""):
        digest.update(block)
        total += len(block)
    headers = {k.lower(): v for k, v in resp.getheaders()}
    if resp.will_close:
        conn.close()
    return (t1 - t0) * 1e3, resp.status, headers, digest.hexdigest(), total


MISS_WARMUP = 5  # objects per size read untimed first: connections (ours and the servers' upstream) warm


def measure_miss_ttfb(servers, emulator, opts, ours):
    """Time to first byte of cache misses, each caching server against a direct request to the emulator.

    Every object (opts.miss_ttfb of each size in opts.miss_sizes, all new) is read once straight from the
    emulator and once through each caching server, in an order that rotates from object to object; the
    emulator answers them after opts.miss_latency_ms. Returns {size: {path: [ms, ...]}}, in object
    order, with "direct" among the paths."""
    chosen = [s for s in servers if s.label in MISS_STATE]
    if not chosen:
        log("miss first-byte runs: none of %s among --servers, skipped" % ", ".join(MISS_STATE))
        return {}
    paths = [("direct", emulator.port)] + [(s.label, s.port) for s in chosen]
    count = opts.miss_ttfb + MISS_WARMUP
    for k, size_label in enumerate(opts.miss_sizes):
        for i in range(count):
            # One seed per size: the emulator makes each object's bytes from a cached block.
            emulator.control("POST", "objects", {"bucket": BUCKET, "name": miss_name(size_label, i),
                                                 "size": SIZES[size_label], "seed": 900 + k})
    results = {}
    affinity = os.sched_getaffinity(0)
    conns = {label: http.client.HTTPConnection("127.0.0.1", port, timeout=120) for label, port in paths}
    emulator.faults(latency_ms=opts.miss_latency_ms, match=MISS_PREFIX)
    try:
        if opts.client_cpus is not None:
            os.sched_setaffinity(0, opts.client_cpus)
        for size_label in opts.miss_sizes:
            wait_for_quiet(ours, opts.max_foreign, opts.quiet_wait)
            load = ForeignLoad(ours)
            before = upstream_requests(emulator)[0]
            times = {label: [] for label, _ in paths}
            for i in range(count):
                path = "/%s/%s" % (BUCKET, miss_name(size_label, i))
                order = paths[i % len(paths):] + paths[:i % len(paths)]
                digests = set()
                for label, _ in order:
                    ms, status, headers, digest, length = timed_get(conns[label], path)
                    header, want = MISS_STATE.get(label, (None, None))
                    if status != 200 or length != SIZES[size_label] or \
                            (header is not None and headers.get(header) != want):
                        raise RuntimeError("miss run, %s GET %s: status %d, %d bytes, %s: %s (want %s)" % (
                            label, path, status, length, header, headers.get(header), want))
                    digests.add(digest)
                    if i >= MISS_WARMUP:
                        times[label].append(ms)
                if len(digests) != 1:
                    raise RuntimeError("miss run, GET %s: the paths returned different bytes" % path)
            upstream = upstream_requests(emulator)[0] - before
            foreign = load.share()
            if upstream < count * len(paths):
                raise RuntimeError("miss run %s: only %d upstream requests for %d misses and direct reads" % (
                    size_label, upstream, count * len(paths)))
            results[size_label] = dict(times, _foreign=foreign, _upstream=upstream, _count=count)
            log("  miss TTFB %s: %s; %d upstream requests for %d reads, others %.0f%% CPU" % (
                size_label, ", ".join("%s p50 %.2f ms" % (label, median(times[label])) for label, _ in paths),
                upstream, count * len(paths), foreign * 100))
    finally:
        os.sched_setaffinity(0, affinity)
        emulator.clear_faults()
        for conn in conns.values():
            conn.close()
    return results


MISS_PREFIX = "miss-"  # the emulator's latency fault matches these objects only (not tokeninfo, not the hits)


def miss_name(size_label, i):
    return "%s%s-%04d" % (MISS_PREFIX, size_label, i)


def percentile(values, q):
    """Nearest rank."""
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else 0.0


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
    in_size = lambda size_label: [s for s in everyone if size_label == "4KiB" or s.label not in FOUR_KIB_ONLY]
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
                for key in ("rps", "mbps", "cores", "rps_core", "mbps_core"):  # per core: the median of the runs'
                    merged[key] = median([c[key] for c in cells])
                for key in ("p50_ms", "p99_ms", "user_us", "system_us"):  # runs that completed no request have none
                    values = [c[key] for c in cells if c["requests"]]
                    if values or key not in ("user_us", "system_us"):
                        merged[key] = median(values or [0.0])
                key = "rps" if size_label == "4KiB" else "mbps"
                merged["spread"] = (min(c[key] for c in cells), max(c[key] for c in cells))
                merged["n"] = sum(c["requests"] for c in cells)
                merged["noisy"] = sum(c["foreign"] >= opts.max_foreign for c in cells)
                merged["foreign"] = max(c["foreign"] for c in cells)
                # In rep order: for paired ratios (paired_ratios).
                merged["per_rep"] = {k: [c[k] for c in cells] for k in ("rps", "mbps", "rps_core", "mbps_core")}
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

def ratio(a, b, key):
    return a[key] / b[key] if a is not None and b is not None and b[key] > 0 else None


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


def report(results, fixed, opts, notes, tls=(), misses=None):
    out = []
    w = out.append
    w("")
    w("larder hit path vs nginx and Varnish - wrk %s, HTTP/1.1 keep-alive over loopback, %d CPUs, %d wrk thread(s), "
      "%s" % (wrk_version(), os.cpu_count(), opts.threads, "servers on CPUs %s, wrk on CPUs %s" % (
          ",".join(map(str, sorted(opts.server_cpus))), ",".join(map(str, sorted(opts.client_cpus))))
          if opts.pin else "no CPU pinning"))
    w("Each cell: median of %d run(s) of %d s, servers interleaved; 'range' = the runs' min-max req/s (4KiB) or"
      % (opts.reps, opts.duration))
    w("MB/s (larger); n = requests completed in all runs. MB/s counts every byte wrk read, partial responses")
    w("included (1 MB = 10^6 bytes).")
    w("Latency is per completed request as wrk sees it; closed loop, so at 16/64 connections it is mostly")
    w("queueing (mean >= conns / req/s). 64MiB cells at 16/64 conns complete few requests: read MB/s there.")
    w("cores = the server's CPU seconds (utime + stime of all its processes and threads) / wall seconds;")
    w("req/s/c and MB/s/c = throughput per server core (throughput / cores; medians over the runs).")
    w("")
    w("larder-immutable   cache.default_policy immutable: the pure hit path, no upstream traffic per hit")
    w("larder-always      cache.default_policy always: every hit = one conditional GET to the emulator (304);")
    w("                   the emulator is Python, so these numbers are mostly the emulator's")
    w("nginx-proxy_cache  nginx proxy_cache, warmed the same way; measured in its fastest mode (nginx cannot")
    w("                   revalidate per hit, so its hits never reach upstream) - compare larder-immutable to it")
    w("nginx-static       nginx, the same bytes as files, sendfile on")
    w("nginx-static-copy  nginx, the same bytes as files, sendfile off (read + write, output_buffers 2 256k)")
    if "varnish" in opts.servers:
        w("varnish            varnishd %s, malloc storage, caching what proxy_cache caches (bench/varnish/"
          "cache_all.vcl)" % varnish_version())
    if any(s in opts.servers for s in USER_SERVERS):
        w("larder-users       4KiB only: larder-immutable's settings, 64 identities - wrk rotates 64 bearer tokens")
        w("                   per request over ONE stored object (user00 filled it: owner; 63 others: grants")
        w("                   confirmed by a 304 at warm-up, auth.grant_ttl 3600); tokens checked at tokeninfo")
        w("larder-users-off   4KiB only, the baseline: the same wrk script and object, auth.enabled false (no")
        w("                   validation, the old exact-credential rule); all 64 slots carry tok-bench-00, the filler")
    if "h2o-floor" in opts.servers:
        w("h2o-floor          bench/h2o_floor.c, the object's bytes from memory (one copy, into the socket) under")
        w("                   a larder hit's headers on the same h2o, and nothing else: the least a server on this")
        w("                   h2o spends")
    w("")
    w("%-6s %5s  %-18s %9s %9s %5s %9s %8s %9s %9s %7s  %s" % (
        "size", "conns", "server", "req/s", "MB/s", "cores", "req/s/c", "MB/s/c", "p50 ms", "p99 ms", "n", "range"))
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
                w("%-6s %5d  %-18s %9.0f %9.1f %5.2f %9.0f %8.1f %s %7d  %s" % (
                    size, conns, server, c["rps"], c["mbps"], c["cores"], c["rps_core"], c["mbps_core"], lat, c["n"],
                    spread))
        w("")

    fmt = lambda v: "%8.2f" % v if v is not None else "%8s" % "-"
    w("Ratios larder / a peer (throughput: req/s for 4KiB, MB/s for 1MiB and 64MiB, raw and per server core;")
    w("higher is better; p50/p99: larder's latency / the peer's, lower is better). larder-always rows are for")
    w("information; larder-users (64 validated identities) / proxy_cache is the per-core target's pair.")
    w("%-6s %5s  %-36s %8s %8s %8s %8s" % ("size", "conns", "", "thruput", "/core", "p50", "p99"))
    pairs = [("larder-immutable", "nginx-proxy_cache"), ("larder-immutable", "varnish"),
             ("larder-immutable", "nginx-static"), ("larder-immutable", "nginx-static-copy"),
             ("larder-users", "nginx-proxy_cache"), ("larder-users", "varnish"),
             ("larder-always", "nginx-proxy_cache")]
    for size in opts.sizes:
        key = "rps" if size == "4KiB" else "mbps"
        for conns in opts.conns:
            for a_name, b_name in pairs:
                a, b = find(results, a_name, size, conns), find(results, b_name, size, conns)
                if a is None or b is None:
                    continue
                label = "%s / %s" % (a_name, b_name.replace("nginx-", ""))
                lat = a["n"] and b["n"]
                w("%-6s %5d  %-36s %s %s %s %s" % (size, conns, label, fmt(ratio(a, b, key)),
                                                   fmt(ratio(a, b, key + "_core")),
                                                   fmt(ratio(a, b, "p50_ms") if lat else None),
                                                   fmt(ratio(a, b, "p99_ms") if lat else None)))
        w("")

    users_section(results, opts, w)

    if fixed:
        w("4KiB hits at a fixed offered load: h2load --h1, 64 connections, %.0f req/s in all (%.0f a connection "
          "a second)," % (opts.rate, opts.rate / 64))
        w("median of %d run(s) of %d s. Nobody is saturated here; h2load's rate timer fires every 10 ms at most, on"
          % (opts.reps, opts.duration + 1))
        w("the same ticks for every connection, so each tick sends 64 requests at once and their 1-2 followers on")
        w("each connection: p99 is about the time to serve such a burst.")
        w("cores and req/s/c as above: at the same load, the CPU each server spends.")
        if opts.canary:
            w("quiet p99: the p99 of the requests that overlapped no episode of the machine itself running slow")
            w("(bench/machine_canary.c), and slow %: the share of requests left out for it (bench/README.md).")
        quiet = lambda c, pre="": "%9.3f %6.1f" % (c[pre + "quiet_p99_ms"], c[pre + "slow_requests"] * 100) \
            if opts.canary else ""
        quiet_head = "%9s %6s" % ("quiet p99", "slow %") if opts.canary else ""
        w("%-18s %9s %9s %9s %9s %s %5s %9s" % ("server", "req/s", "p50 ms", "p99 ms", "p99.9 ms", quiet_head, "cores",
                                              "req/s/c"))
        for c in fixed:
            # h2load keeps one request per connection in flight: a server slower than the offered
            # interval gets less than the offered load, and its p99 is then a saturated one.
            w("%-18s %9.0f %9.3f %9.3f %9.3f %s %5.2f %9.0f%s%s" % (
                c["server"], c["rps"], c["p50_ms"], c["p99_ms"], c["p999_ms"], quiet(c), c["cores"], c["rps_core"],
                "  NOISY" if c["noisy"] else "", "  BELOW THE OFFERED LOAD" if c["rps"] < 0.97 * opts.rate else ""))
        w("")
        w("The same, saturated: h2load --h1, 64 connections, no rate (one client thread, so no wait for a second "
          "client thread's time slice).")
        w("%-18s %9s %9s %9s %9s %s %9s" % ("server", "req/s", "p50 ms", "p99 ms", "p99.9 ms", quiet_head, "req/s/c"))
        for c in fixed:
            w("%-18s %9.0f %9.3f %9.3f %9.3f %s %9.0f%s" % (c["server"], c["sat_rps"], c["sat_p50_ms"],
                                                       c["sat_p99_ms"], c["sat_p999_ms"], quiet(c, "sat_"),
                                                       c["sat_rps_core"], "  NOISY" if c["sat_noisy"] else ""))
        w("")
    tails_section(results, fixed, opts, w)
    tls_section(tls, opts, w)
    miss_section(misses, opts, w)
    side_by_side(results, fixed, tls, misses, opts, w)

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
    f = {c["server"]: c for c in fixed}
    if "larder-immutable" in f:
        a = f["larder-immutable"]
        peers = ", ".join("%s %.3f ms" % (name.replace("nginx-", ""), f[name]["sat_p99_ms"]) for name in
                          ("nginx-proxy_cache", "nginx-static") if name in f)
        verdicts.append(("4KiB hit p99 < 1 ms at 64 conns, saturated (h2load)", a["sat_p99_ms"] < 1.0,
                         "p99 %.3f ms = %.1fx the bar (nginx p99: %s; closed-loop mean floor 64 / %.0f req/s = "
                         "%.2f ms)" % (a["sat_p99_ms"], a["sat_p99_ms"] / 1.0, peers or "-", a["sat_rps"],
                                       64e3 / a["sat_rps"])))
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
    hit_path = hit_path_verdicts(results, fixed, tls, misses, opts)
    if hit_path:
        w("Targets of the hit-path issue (larder against nginx proxy_cache and Varnish; the exit status counts")
        w("them too)")
        for name, ok, detail in hit_path:
            w("  %-4s %-47s %s" % ("PASS" if ok else "MISS", name, detail))
        floor_budget(results, w)
        copy_floor(results, opts, w)
        w("")
    for note in notes:
        w(note)
    print("\n".join(out), flush=True)
    return all(ok for _, ok, _ in verdicts + hit_path)


def floor_budget(results, w):
    """What the 1.5x per-core bar leaves larder, given what h2o alone spends on a hit here (h2o-floor)."""
    floor, nginx, users = (find(results, s, "4KiB", 64) for s in ("h2o-floor", "nginx-proxy_cache", "larder-users"))
    if not (floor and nginx and floor.get("rps_core") and nginx.get("rps_core")):
        return
    per_hit = lambda c: 1e6 / c["rps_core"]  # µs of server CPU per hit
    budget = per_hit(nginx) / 1.5 - per_hit(floor)
    w("  info h2o-floor, 64 conns: %.2fx proxy_cache per core (%.1f µs of CPU per hit: user %.1f + system %.1f)" % (
        floor["rps_core"] / nginx["rps_core"], per_hit(floor), floor.get("user_us", 0), floor.get("system_us", 0)))
    if users and users.get("rps_core"):
        w("       the 1.5x bar leaves %.2f µs per hit above h2o's own; larder-users spends %.2f µs above it" % (
            budget, per_hit(users) - per_hit(floor)))


def plural(conns):
    return "%d conn%s" % (conns, "s" if conns > 1 else "")


def copy_floor(results, opts, w):
    """Big hits against h2o-floor, which sends from memory with one copy: how close larder and Varnish come
    to the least a server must spend per byte here."""
    for size in ("1MiB", "64MiB"):
        for conns in opts.conns:
            floor = find(results, "h2o-floor", size, conns)
            if not floor or not floor.get("mbps_core"):
                continue
            shares = []
            for server in ("larder-immutable", "varnish"):
                c = find(results, server, size, conns)
                if c:
                    paired = paired_ratios(c, floor, "mbps_core")
                    shares.append("%s %.2f (paired %.2f)" % (server.replace("-immutable", ""), ratio(
                        c, floor, "mbps_core"), median(paired) if paired else ratio(c, floor, "mbps_core")))
            w("  info %s, %s: MB/s per core / h2o-floor's (%.0f, one copy from memory): %s" % (
                size, plural(conns), floor["mbps_core"], ", ".join(shares)))


def hit_path_verdicts(results, fixed, tls, misses, opts):
    """The targets of the hit-path issue, for the cells this run measured: [(name, ok, detail)]."""
    verdicts = []

    def against(name, a, b, key, bar, lower=False, unit="", who=""):
        """a[key] / b[key] at least bar (lower: at most), if both were measured. Throughput cells measured in
        several reps are judged on the median of the reps' paired ratios (paired_ratios), printed with them."""
        r = ratio(a, b, key)
        if r is None:
            return
        digits = 3 if key.endswith("_ms") else 0
        detail = "%s%.*f vs %.*f%s = %.2fx" % (who, digits, a[key], digits, b[key], unit, r)
        paired = paired_ratios(a, b, key)
        if len(paired) > 1:
            r = median(paired)
            met = sum(x <= bar if lower else x >= bar for x in paired)
            detail += "; paired by rep %.2fx (%s; %d of %d reps meet it)" % (
                r, " ".join("%.2f" % x for x in paired), met, len(paired))
        margin = (bar / r - 1 if r else float("inf")) if lower else r / bar - 1
        verdicts.append((name, r <= bar if lower else r >= bar, "%s, margin %+.0f%%" % (detail, margin * 100)))

    against("4KiB, 64 identities, 64 conns: req/s/core >= 1.5x proxy_cache", find(results, "larder-users", "4KiB", 64),
            find(results, "nginx-proxy_cache", "4KiB", 64), "rps_core", 1.5, unit=" req/s per core",
            who="larder-users ")
    for size in ("1MiB", "64MiB"):
        for conns in opts.conns:
            a, b = find(results, "larder-immutable", size, conns), find(results, "varnish", size, conns)
            for key, what in (("mbps", "MB/s"), ("mbps_core", "MB/s per core")):
                against("%s hit %s >= Varnish, %s" % (size, what, plural(conns)), a, b, key, 1.0)
    f = {c["server"]: c for c in fixed}
    against("4KiB p99 at 64 conns <= 0.8x proxy_cache, saturated (h2load)", f.get("larder-immutable"),
            f.get("nginx-proxy_cache"), "sat_p99_ms", 0.8, lower=True, unit=" ms")
    against("4KiB p99 at 64 conns <= 0.8x proxy_cache, %.0f req/s" % opts.rate, f.get("larder-immutable"),
            f.get("nginx-proxy_cache"), "p99_ms", 0.8, lower=True, unit=" ms")
    if opts.canary:
        against("the same, saturated, outside the machine's slow episodes", f.get("larder-immutable"),
                f.get("nginx-proxy_cache"), "sat_quiet_p99_ms", 0.8, lower=True, unit=" ms")
        against("the same, %.0f req/s, outside the machine's slow episodes" % opts.rate, f.get("larder-immutable"),
                f.get("nginx-proxy_cache"), "quiet_p99_ms", 0.8, lower=True, unit=" ms")
    for size, times in (misses or {}).items():
        if "larder-immutable" in times:
            added = median(paired_added(times, "larder-immutable"))
            verdicts.append(("%s miss adds <= 1 ms to TTFB at %d ms upstream" % (size, opts.miss_latency_ms),
                             added <= 1.0, "median added %.3f ms (direct p50 %.2f ms), margin %+.3f ms" % (
                                 added, median(times["direct"]), 1.0 - added)))
    for c in tls:
        b = next((x for x in tls if x["server"] == "nginx-proxy_cache" and (x["size"], x["conns"]) ==
                  (c["size"], c["conns"])), None)
        if c["server"] == "larder-immutable":
            key = "rps" if c["size"] == "4KiB" else "mbps"
            against("%s h2 TLS hits >= proxy_cache, %s x %d" % (c["size"], plural(c["conns"]), c["streams"]), c, b,
                    key, 1.0, unit=" req/s" if key == "rps" else " MB/s")
    return verdicts


def paired_ratios(a, b, key):
    """a's key / b's in each rep, where both cells kept their reps (wrk cells).

    The runs of one rep are seconds apart, those of different reps up to minutes: a drift in the
    machine's speed between reps moves both runs of a rep alike and cancels out of their ratio."""
    if "per_rep" not in a or "per_rep" not in b:
        return []
    return [x / y for x, y in zip(a["per_rep"][key], b["per_rep"][key]) if y > 0]


def paired_added(times, label):
    """Per object, the path's time to first byte less the direct request's (ms)."""
    return [x - d for x, d in zip(times[label], times["direct"])]


def tails_section(results, fixed, opts, w):
    """4KiB p99 at 64 connections, saturated (h2load, and wrk for reference) and at the fixed rate (h2load --rps),
    with ratios."""
    f = {c["server"]: c for c in fixed}
    rows = [(s, find(results, s, "4KiB", 64), f.get(s)) for s in opts.servers]
    rows = [(s, wrk, fix) for s, wrk, fix in rows if wrk or fix]
    if not rows:
        return
    ms = lambda c, key="p99_ms": "%9.3f" % c[key] if c and key in c else "%9s" % "-"
    w("Tails: 4KiB p99 (ms) at 64 connections: saturated (h2load, one client thread), at %.0f req/s offered "
      "(h2load --rps), and saturated under wrk (two client threads on one CPU: for reference)%s" % (
          opts.rate, "; quiet: outside the machine's slow episodes" if opts.canary else ""))
    w("%-18s %9s %9s %9s %9s %9s" % ("server", "saturated", "quiet", "at rate", "quiet", "wrk"))
    for server, wrk, fix in rows:
        w("%-18s %s %s %s %s %s" % (server, ms(fix, "sat_p99_ms"), ms(fix, "sat_quiet_p99_ms"), ms(fix),
                                    ms(fix, "quiet_p99_ms"), ms(wrk)))
    fmt = lambda v: "%.2fx" % v if v is not None else "-"
    for a_name, b_name in (("larder-immutable", "nginx-proxy_cache"), ("larder-immutable", "varnish"),
                           ("h2o-floor", "nginx-proxy_cache")):
        a_fix, b_fix = f.get(a_name), f.get(b_name)
        a_wrk, b_wrk = find(results, a_name, "4KiB", 64), find(results, b_name, "4KiB", 64)
        if (a_fix and b_fix) or (a_wrk and b_wrk):
            quiet = ", quiet: saturated %s, at rate %s" % (
                fmt(ratio(a_fix, b_fix, "sat_quiet_p99_ms")), fmt(ratio(a_fix, b_fix, "quiet_p99_ms"))) \
                if opts.canary and a_fix and b_fix else ""
            w("%s / %s: saturated %s, at rate %s, wrk %s%s" % (
                a_name, b_name.replace("nginx-", ""), fmt(ratio(a_fix, b_fix, "sat_p99_ms")),
                fmt(ratio(a_fix, b_fix, "p99_ms")), fmt(ratio(a_wrk, b_wrk, "p99_ms")), quiet))
    w("")


def tls_section(tls, opts, w):
    if not tls:
        return
    first = tls[0]["tls"]
    w("h2 over TLS hits: h2load, %d stream(s) per connection, saturated; median of %d run(s) of %d s after 1 s of "
      "warm-up;" % (opts.tls_streams, opts.reps, opts.duration))
    w("the same certificate (RSA 2048) for both; negotiated %s %s, key exchange %s." % (
        first.get("TLS Protocol"), first.get("Cipher"), first.get("Server Temp Key")))
    w("MB/s = every byte h2load read in the measured span (h2 framing and heads, partial responses included);")
    w("latency of completed requests only: 64MiB runs may complete none.")
    w("%-6s %8s  %-18s %9s %9s %5s %9s %8s %9s %9s %7s" % ("size", "conns", "server", "req/s", "MB/s", "cores",
                                                          "req/s/c", "MB/s/c", "p50 ms", "p99 ms", "n"))
    for c in tls:
        lat = ("%9.3f %9.3f" % (c["p50_ms"], c["p99_ms"])) if c["n"] else "%9s %9s" % ("-", "-")
        w("%-6s %8s  %-18s %9.0f %9.1f %5.2f %9.0f %8.1f %s %7d%s" % (
            c["size"], "%dx%d" % (c["conns"], c["streams"]), c["server"], c["rps"], c["mbps"], c["cores"],
            c["rps_core"], c["mbps_core"], lat, c["n"], "  NOISY" if c["noisy"] else ""))
    fmt = lambda v: "%8.2f" % v if v is not None else "%8s" % "-"
    for c in tls:
        b = next((x for x in tls if x["server"] == "nginx-proxy_cache" and (x["size"], x["conns"]) ==
                  (c["size"], c["conns"])), None)
        if c["server"] == "larder-immutable" and b:
            key = "rps" if c["size"] == "4KiB" else "mbps"
            w("%-6s %8s  larder / proxy_cache: thruput %s  /core %s  p50 %s  p99 %s" % (
                c["size"], "%dx%d" % (c["conns"], c["streams"]), fmt(ratio(c, b, key)), fmt(ratio(c, b, key + "_core")),
                fmt(ratio(c, b, "p50_ms")), fmt(ratio(c, b, "p99_ms"))))
    w("")


def miss_section(misses, opts, w):
    if not misses:
        return
    w("Cache misses: time to first byte (ms) from sending the GET to the first response byte, one keep-alive")
    w("connection per path, the emulator answering these objects after %d ms; every object new to every cache,"
      % opts.miss_latency_ms)
    w("read once per path in an order rotating from object to object. 'added' = per object, the path's TTFB")
    w("less the direct request's: its p50 / p90 / p99 over the objects.")
    w("%-6s %-18s %5s %8s %8s %8s %9s %9s %9s" % ("size", "path", "n", "p50", "p90", "p99", "added p50", "p90",
                                                  "p99"))
    for size, times in misses.items():
        for label in [k for k in times if not k.startswith("_")]:
            v = times[label]
            added = paired_added(times, label) if label != "direct" else None
            w("%-6s %-18s %5d %8.2f %8.2f %8.2f %s%s" % (
                size, label, len(v), percentile(v, 0.5), percentile(v, 0.9), percentile(v, 0.99),
                " ".join("%9.3f" % percentile(added, q) for q in (0.5, 0.9, 0.99)) if added else "",
                "  NOISY: others used %.0f%% CPU" % (times["_foreign"] * 100)
                if times["_foreign"] >= opts.max_foreign else ""))
        if "larder-immutable" in times:
            own = median(paired_added(times, "larder-immutable"))
            for peer in ("nginx-proxy_cache", "varnish"):
                if peer in times:
                    theirs = median(paired_added(times, peer))
                    w("%-6s larder adds %.3f ms, %s %.3f ms: %+.3f ms%s" % (
                        size, own, peer.replace("nginx-", ""), theirs, own - theirs,
                        " (%.2fx)" % (own / theirs) if theirs > 0 else ""))
    w("")


def side_by_side(results, fixed, tls, misses, opts, w):
    """The issue's table: one row per workload, one column per server (markdown, for the notes)."""
    columns = [s for s in ("nginx-static", "nginx-static-copy", "nginx-proxy_cache", "varnish", "h2o-floor",
                           "larder-immutable", "larder-users") if s in opts.servers]
    if len(columns) < 2:
        return
    rows = []
    k = lambda v: "%.1fk" % (v / 1e3) if v >= 1e4 else "%.0f" % v
    for size in opts.sizes:
        unit = "req/s" if size == "4KiB" else "MB/s"
        key = "rps" if size == "4KiB" else "mbps"
        for conns in opts.conns:
            cells = {s: find(results, s, size, conns) for s in columns}
            rows.append(("%s, wrk h1, %s: %s" % (size, plural(conns), unit),
                         {s: k(c[key]) for s, c in cells.items() if c}))
            rows.append(("the same, per server core", {s: k(c[key + "_core"]) for s, c in cells.items() if c}))
            if size == "4KiB":
                rows.append(("the same, p99", {s: "%.2f ms" % c["p99_ms"] for s, c in cells.items() if c and c["n"]}))
                # The floor of any server on this kernel: its system time per request, whatever its own code costs.
                rows.append(("the same, server CPU per request: user + system",
                             {s: "%.1f + %.1f µs" % (c["user_us"], c["system_us"]) for s, c in cells.items()
                              if c and "user_us" in c}))
    if fixed:
        rows.append(("4KiB, h2load h1, 64 conns saturated: p99",
                     {c["server"]: "%.2f ms" % c["sat_p99_ms"] for c in fixed if c["server"] in columns}))
        rows.append(("4KiB, h1, 64 conns at %.0f req/s: p99" % opts.rate,
                     {c["server"]: "%.2f ms" % c["p99_ms"] for c in fixed if c["server"] in columns}))
        rows.append(("the same, server cores busy", {c["server"]: "%.2f" % c["cores"] for c in fixed
                                                     if c["server"] in columns}))
    for size, conns in sorted({(c["size"], c["conns"]) for c in tls}, key=lambda x: (SIZES[x[0]], x[1])):
        cells = {c["server"]: c for c in tls if (c["size"], c["conns"]) == (size, conns) and c["server"] in columns}
        key = "rps" if size == "4KiB" else "mbps"
        rows.append(("%s, h2 TLS, %s x %d streams: %s" % (size, plural(conns), opts.tls_streams,
                                                          "req/s" if key == "rps" else "MB/s"),
                     {s: k(c[key]) for s, c in cells.items()}))
        rows.append(("the same, per server core", {s: k(c[key + "_core"]) for s, c in cells.items()}))
    for size, times in (misses or {}).items():
        rows.append(("%s miss, TTFB p50 (direct: %.2f ms)" % (size, median(times["direct"])),
                     {s: "+%.2f ms" % median(paired_added(times, s)) for s in columns if s in times}))
    w("Side by side (markdown; '-' = not measured):")
    w("| workload | %s |" % " | ".join(columns))
    w("|---|%s" % ("---|" * len(columns)))
    for row in rows:
        w("| %s | %s |" % (row[0], " | ".join(row[1].get(s, "-") for s in columns)))
    w("")


def varnish_version():
    out = subprocess.run([sbin_tool("varnishd") or "varnishd", "-V"], capture_output=True, text=True)
    words = (out.stdout + out.stderr).split()  # "varnishd (varnish-7.1.1 revision ...)"
    return words[1].split("-", 1)[1] if len(words) > 1 and words[1].startswith("(varnish-") else "?"


def paired_ratio(a, b):
    """The median over reps of a's req/s / b's in the same rep, and those ratios (paired_ratios)."""
    ratios = paired_ratios(a, b, "rps")
    return (median(ratios) if ratios else 0.0), ratios


def users_section(results, opts, w):
    """The 64-identity rows: ratios, upstream traffic during the runs, access decisions."""
    rows = [(size, conns) for size in ("4KiB",) if size in opts.sizes for conns in opts.conns
            if any(find(results, s, size, conns) for s in USER_SERVERS)]
    if not rows:
        return
    fmt = lambda v: "%8.2f" % v if v is not None else "%8s" % "-"

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
    parser.add_argument("--no-canary", dest="canary", action="store_false",
                        help="leave out the machine canary (bench_machine_canary) from the h2load latency runs, "
                             "and with it the quiet p99")
    parser.add_argument("--max-foreign", type=float, default=0.05, metavar="SHARE",
                        help="a run during which other processes used more than this share of the CPUs "
                             "is repeated (default 0.05)")
    parser.add_argument("--quiet-wait", type=float, default=10, metavar="S",
                        help="before each run, wait up to S seconds for other processes to go quiet")
    parser.add_argument("--perf", metavar="DIR", help="perf record -g larder during each larder run into DIR "
                        "(perturbs the numbers)")
    parser.add_argument("--tls", action="store_true",
                        help="also h2 over TLS hits (h2load), larder-immutable against nginx-proxy_cache, each of "
                             "--sizes at each of --tls-conns")
    parser.add_argument("--tls-conns", type=lambda t: parse_list(t, convert=int), default=[16],
                        help="connections for the TLS runs (default 16)")
    parser.add_argument("--tls-streams", type=int, default=4, help="concurrent h2 streams per TLS connection "
                        "(default 4)")
    parser.add_argument("--tls-cipher", default=TLS_CIPHER, help="the one TLS 1.3 suite h2load offers (default "
                        "%s)" % TLS_CIPHER)
    parser.add_argument("--miss-ttfb", type=int, nargs="?", const=200, default=0, metavar="N",
                        help="also time to first byte of N cache misses per size (default N 200) through each "
                             "caching server against a direct request to the emulator")
    parser.add_argument("--miss-sizes", type=lambda t: parse_list(t, SIZES), default=["4KiB", "1MiB"],
                        help="object sizes for --miss-ttfb (default 4KiB,1MiB)")
    parser.add_argument("--miss-latency-ms", type=int, default=20,
                        help="the emulator's latency for the miss objects (default 20)")
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
    if "4KiB" not in opts.sizes and any(s in FOUR_KIB_ONLY for s in opts.servers):
        log("%s: 4KiB cells only, and 4KiB is not among --sizes: left out" % ", ".join(
            s for s in FOUR_KIB_ONLY if s in opts.servers))
        opts.servers = [s for s in opts.servers if s not in FOUR_KIB_ONLY]
    if any(s.startswith("larder") for s in opts.servers):
        harness.larder_bin()  # fails early with a clear message
        if any(s in USER_SERVERS for s in opts.servers) and not harness.larder_has_setting("auth.grant_ttl"):
            sys.exit("%s needs a larder that validates tokens (auth.* settings); %s has none" % (
                " and ".join(s for s in USER_SERVERS if s in opts.servers), harness.larder_bin()))
    ensure_tools(varnish="varnish" in opts.servers)
    if opts.tls and not any(s in TLS_SERVERS for s in opts.servers):
        log("--tls: none of %s among --servers, no TLS runs" % ", ".join(TLS_SERVERS))

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
                    server = Nginx(workdir, "proxy_cache.conf", label, workers, tls=ca if opts.tls else None,
                                   UPSTREAM_PORT=str(emulator.port))
                elif label == "varnish":
                    server = Varnish(workdir, label, workers, emulator.port)
                elif label == "h2o-floor":
                    server = H2oFloor(workdir, label, workers, docroot)
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
            ours = ours_of(servers, emulator)
            fixed = measure_fixed_rate(servers, emulator, opts, ours, workdir) \
                if opts.rate > 0 and "4KiB" in opts.sizes and 64 in opts.conns else []
            tls = measure_tls(servers, emulator, opts, ours, workdir) if opts.tls else []
            misses = measure_miss_ttfb(servers, emulator, opts, ours) if opts.miss_ttfb > 0 else {}
        finally:
            for server in servers:
                server.stop()
        notes.append("load average at end:   %.2f %.2f %.2f" % os.getloadavg())
        return 0 if report(results, fixed, opts, notes, tls, misses) else 1
    finally:
        emulator.stop()
        if os.environ.get("LARDER_KEEP_WORKDIR") is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log("kept " + workdir)


if __name__ == "__main__":
    sys.exit(main())
