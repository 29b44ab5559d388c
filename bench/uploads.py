#!/usr/bin/env python3
"""uploads.py - larder's write-through uploads against direct uploads to the same emulator.

Starts the GCS emulator (tests/emulator/gcs_emulator.py) and larder in front of
it, with the integration harness' config (tokens checked at the emulator's
tokeninfo) plus max_request_body big enough for the largest size. For each size
(default 1 MiB and 100 MiB) it makes --reps rounds; each round uploads once
directly to the emulator and once through larder (the order alternates from
round to round, ABBA, so a drift in the machine's speed affects both alike).

One upload is a JSON media upload,
    POST /upload/storage/v1/b/BUCKET/o?uploadType=media&name=NAME
with `Authorization: Bearer owner` (the emulator's default owner), sent with
Python's http.client over HTTP/1.1 on a connection opened beforehand (connect
not timed): headers, then the whole preallocated body in one sendall. Timed:
from the first header byte to the whole JSON response read ("upload"), and to
the moment the body was handed to the kernel ("send"). Right after, on the
same keep-alive connection, the object is read back (GET
/storage/v1/b/BUCKET/o/NAME?alt=media): "read TTFB" is the time from the
upload's response being read to the first byte of the read's body. The read's
X-Cache is printed: a write-through upload is meant to leave a cache entry, so
through larder it should be a HIT; a larder that only forwards uploads and
invalidates gives a MISS. Every read's bytes are compared with what was
uploaded; each round's objects are then deleted at the emulator.

h2o (larder's HTTP library) buffers the whole request body before larder sees
it, so larder starts its upstream request only once the client has finished.
To show what that costs, each larder upload's access-log line gives
upstream_ms (larder's exchange with the emulator: from starting the request to
receiving the response head, which includes sending the body). Per round, the
overhead (larder's upload time minus direct's) splits into
  buffer  the client's send time into larder: larder must receive the whole
          body before it can start the upstream request (a lower bound: a
          body that fits in the socket buffers is "sent" at once)
  own     larder's time outside the upstream exchange (its time minus
          upstream_ms) less the buffer: the caller's token before the
          request, the cache entry and the reply after the answer
  rest    upstream_ms minus the direct upload: larder's exchange with the
          emulator against the client's own
and the medians over the rounds are printed, with each part's share.

The machine is shared: before each round the script waits (up to --quiet-wait
s) for other processes to use under --max-foreign of the CPUs, measures their
share during the round (bench/hits.py's ForeignLoad), repeats a disturbed round
(--retries) and marks a size NOISY when rounds stayed disturbed. After larder's
read the store is left to finish committing (/_larder/stats stops moving)
before the next upload.

Usage: bench/uploads.py [--sizes 1MiB,100MiB] [--reps 9,7] [--policy immutable]
                        [--show-rounds] [--max-foreign 0.05] [--retries 1] [--quiet-wait 3]
The larder binary: LARDER_BIN, else build/rel/larder if it exists, else build/dev/larder.
About 70 s on a quiet 2-CPU machine. Prints figures only: exits non-zero on
errors (a failed upload, wrong bytes read back), never because of a speed.
"""

import argparse
import http.client
import json
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "tests", "integration"), HERE]
import harness  # noqa: E402
from hits import ForeignLoad, wait_for_quiet  # noqa: E402  (other processes' share of the CPUs)

BUCKET = "uploads"
AUTH = "Bearer owner"  # the emulator's default owner: may write the bucket, its reads are its own
TIMEOUT = 600
TARGET_RATIO = 1.2  # the target for 100 MiB uploads, printed for information only
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


class BenchError(Exception):
    """Something went wrong that is not a speed: the run stops and exits 1."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- options ---

def parse_size(text):
    for unit, scale in sorted(UNITS.items(), key=lambda u: -len(u[0])):
        if text.endswith(unit) and text[:-len(unit)].isdigit() and int(text[:-len(unit)]) > 0:
            return int(text[:-len(unit)]) * scale
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError("not a size: %r (say 1MiB, 100MiB, 65536)" % text)


def size_list(text):
    return [parse_size(s) for s in text.split(",")]


def size_label(size):
    for unit in ("GiB", "MiB", "KiB"):
        if size % UNITS[unit] == 0:
            return "%d%s" % (size // UNITS[unit], unit)
    return "%dB" % size


def parse_args():
    parser = argparse.ArgumentParser(description="larder's write-through uploads against direct uploads")
    parser.add_argument("--sizes", type=size_list, default="1MiB,100MiB", help="comma-separated object sizes")
    parser.add_argument("--reps", default="9,7", help="rounds per size: one number for all, or one per size")
    parser.add_argument("--policy", default="immutable",
                        help="larder's cache.default_policy (default immutable: a cached read is a HIT without a "
                             "conditional request; 'always' would make it REVALIDATED)")
    parser.add_argument("--show-rounds", action="store_true", help="also print every round's figures")
    parser.add_argument("--max-foreign", type=float, default=0.05,
                        help="a round during which other processes used more than this share of the CPUs is "
                             "repeated (default 0.05)")
    parser.add_argument("--retries", type=int, default=1, help="repeats of a disturbed round (default 1)")
    parser.add_argument("--quiet-wait", type=float, default=3,
                        help="seconds to wait before a round for the others to fall under --max-foreign (default 3)")
    opts = parser.parse_args()
    reps = [int(r) if r.isdigit() else 0 for r in opts.reps.split(",")]
    if len(reps) == 1:
        reps *= len(opts.sizes)
    if len(reps) != len(opts.sizes) or min(reps) < 1:
        parser.error("--reps: one positive number, or one per size")
    opts.reps = reps
    return opts


def larder_binary():
    """LARDER_BIN, else the release build, else the dev build; exported for the harness."""
    path = os.environ.get("LARDER_BIN")
    if not path:
        release = os.path.join(ROOT, "build", "rel", "larder")
        path = release if os.access(release, os.X_OK) else os.path.join(ROOT, "build", "dev", "larder")
    if not os.access(path, os.X_OK):
        raise BenchError("no larder binary at %s (build one, or set LARDER_BIN)" % path)
    os.environ["LARDER_BIN"] = path
    return path


# --- one upload and the read after it ---

def upload(conn, name, body):
    """POSTs body as a media upload on an open connection; returns (send_s, total_s, t_done, status, payload)."""
    started = time.perf_counter()
    conn.putrequest("POST", "/upload/storage/v1/b/%s/o?uploadType=media&name=%s" % (BUCKET, name),
                    skip_accept_encoding=True)
    conn.putheader("Authorization", AUTH)
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body)
    sent = time.perf_counter()
    resp = conn.getresponse()
    payload = resp.read()
    done = time.perf_counter()
    return sent - started, done - started, done, resp.status, payload


def read_back(conn, name, buf):
    """GETs the object's media into buf; returns (first_byte_time, length, x_cache, status)."""
    conn.request("GET", "/storage/v1/b/%s/o/%s?alt=media" % (BUCKET, name), headers={"Authorization": AUTH})
    resp = conn.getresponse()
    view = memoryview(buf)
    got = resp.readinto(view[:1])
    first = time.perf_counter()
    while 0 < got < len(buf):
        n = resp.readinto(view[got:])
        if n == 0:
            break
        got += n
    if got == len(buf):
        resp.read()  # longer than expected: drain, the caller reports it
    return first, got, resp.getheader("X-Cache") or "-", resp.status


def check_upload(path_label, name, status, payload, size):
    if status != 200:
        raise BenchError("%s upload of %s: status %d %s" % (path_label, name, status, payload[:300]))
    stored = int(json.loads(payload).get("size", -1))
    if stored != size:
        raise BenchError("%s upload of %s: the emulator stored %d bytes, not %d" % (path_label, name, stored, size))


def check_read(path_label, name, status, got, body, buf):
    if status != 200 or got != len(body) or not buf.startswith(body):
        raise BenchError("%s read of %s after its upload: status %d, %d bytes, %s" % (
            path_label, name, status, got, "differ from the upload" if got == len(body) else "wrong length"))


def round_trip(port, path_label, name, body, buf):
    """One upload and the read after it on one connection; returns the sample."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.connect()
        send_s, total_s, done, status, payload = upload(conn, name, body)
        if status != 200:  # nothing to read back
            check_upload(path_label, name, status, payload, len(body))
        first, got, x_cache, read_status = read_back(conn, name, buf)
    finally:
        conn.close()
    check_upload(path_label, name, status, payload, len(body))  # parsed only now: it is not timed
    check_read(path_label, name, read_status, got, body, buf)
    return {"send": send_s, "total": total_s, "ttfb": first - done, "x_cache": x_cache}


# --- larder's side of an upload, from its access log ---

def upload_log_entry(larder, name):
    """The access-log line of the upload of name (its query carries name=NAME), or None."""
    for entry in reversed(larder.access_log()):
        query = entry.get("path", "").partition("?")[2]
        if entry.get("method") == "POST" and "name=" + name in query.split("&"):
            return entry
    return None


def upstream_ms(larder, name):
    """upstream_ms of this upload's access-log line in seconds (None: no line, or no upstream exchange)."""
    entry = None

    def logged():
        nonlocal entry
        entry = upload_log_entry(larder, name)
        return entry is not None

    harness.wait_until(logged, timeout=5)
    if entry is None or entry.get("upstream_ms", -1) < 0:
        return None
    return entry["upstream_ms"] / 1000.0


# --- the measurement ---

def stamp(body, name):
    """Makes every object different: its name in the first bytes."""
    tag = name.encode()[:len(body)]
    body[:len(tag)] = tag


def settle(larder):
    """Waits until larder's store stops committing (the fill of the read just made, or an upload's entry),
    so the next upload does not share the machine with it. /_larder/stats answers owner@, an admin."""
    seen = []

    def quiet():
        status, _, payload = larder.request("GET", "/_larder/stats", headers={"Authorization": AUTH})
        if status != 200:
            time.sleep(0.5)  # no stats for us: give the store a moment instead
            return True
        seen.append(json.loads(payload).get("commits"))
        return len(seen) >= 2 and seen[-1] == seen[-2]

    harness.wait_until(quiet, timeout=10, interval=0.1)


def delete_direct(emulator, name):
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=TIMEOUT)
    conn.request("DELETE", "/storage/v1/b/%s/o/%s" % (BUCKET, name), headers={"Authorization": AUTH})
    conn.getresponse().read()
    conn.close()


def one_round(rep, tag, body, buf, emulator, larder):
    """An upload and read directly and one through larder, in ABBA order; returns {path: sample}."""
    ports = {"direct": emulator.port, "larder": larder.port}
    pair = {}
    for path_label in ("direct", "larder") if rep % 2 == 0 else ("larder", "direct"):
        name = "%s-%s-%d" % (tag, path_label, rep)
        stamp(body, name)
        pair[path_label] = round_trip(ports[path_label], path_label, name, body, buf)
        if path_label == "larder":
            pair["larder"]["upstream"] = upstream_ms(larder, name)
            settle(larder)
        delete_direct(emulator, name)
    return pair


def clean_round(rep, tag, body, buf, emulator, larder, opts):
    """one_round, after waiting for the machine to be quiet; repeated (--retries) while others used more
    than --max-foreign of the CPUs during it. Records that share as pair["foreign"]."""
    ours = [larder.proc.pid, emulator.proc.pid]
    for attempt in range(opts.retries + 1):
        wait_for_quiet(ours, opts.max_foreign, opts.quiet_wait)
        load = ForeignLoad(ours)
        pair = one_round(rep, "%s-a%d" % (tag, attempt), body, buf, emulator, larder)
        pair["foreign"] = load.share()
        if pair["foreign"] <= opts.max_foreign:
            break
        log("  round %d: others used %.0f%% of the CPUs%s" % (rep, 100 * pair["foreign"],
                                                            ", again" if attempt < opts.retries else ""))
    return pair


def measure_size(size, reps, emulator, larder, opts, tag="up"):
    """reps rounds of this size; returns the list of rounds."""
    body, buf = bytearray(os.urandom(size)), bytearray(size + 1)
    tag = "%s-%s" % (tag, size_label(size).lower())
    return [clean_round(rep, tag, body, buf, emulator, larder, opts) for rep in range(reps)]


def start_larder(workdir, ca, emulator, opts):
    big = max(opts.sizes)
    slow_ms = max(60000, 1000 * big // (10 << 20))  # 100 ms a MiB; the emulator takes about 25 (it hashes in Python)
    config = {"max_request_body": max(2 * big, 1 << 30),
              "cache": {"default_policy": opts.policy},
              "upstream": {"response_timeout_ms": slow_ms, "idle_timeout_ms": slow_ms}}
    return harness.Larder(workdir, emulator.base_url, ca, config=config)


# --- the report ---

def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def median_of(rounds, fn):
    values = [fn(r) for r in rounds]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ms(seconds):
    return "%8.1f" % (seconds * 1000) if seconds is not None else "%8s" % "-"


def cache_summary(rounds, path_label):
    counts = {}
    for r in rounds:
        counts[r[path_label]["x_cache"]] = counts.get(r[path_label]["x_cache"], 0) + 1
    return " ".join("%s x%d" % kv for kv in sorted(counts.items()))


def noise_note(rounds, opts):
    worst = max(r["foreign"] for r in rounds)
    noisy = sum(1 for r in rounds if r["foreign"] > opts.max_foreign)
    return "%3.0f%%%s" % (100 * worst, "  NOISY: %d round(s) over %.0f%%" % (noisy, 100 * opts.max_foreign)
                          if noisy else "")


def table(results, opts, w):
    w("%-7s %-7s %3s %8s %8s %8s %8s %8s  %-12s %s" % ("size", "path", "n", "up p50", "up p90", "MB/s", "TTFB p50",
                                                      "TTFB p90", "read X-Cache", "others' CPU"))
    for size, rounds in results:
        for path_label in ("direct", "larder"):
            totals = [r[path_label]["total"] for r in rounds]
            ttfbs = [r[path_label]["ttfb"] for r in rounds]
            w("%-7s %-7s %3d %s %s %8.1f %s %s  %-12s %s" % (
                size_label(size), path_label, len(rounds), ms(statistics.median(totals)),
                ms(nearest_rank(totals, 0.9)), size / statistics.median(totals) / 1e6, ms(statistics.median(ttfbs)),
                ms(nearest_rank(ttfbs, 0.9)), cache_summary(rounds, path_label),
                noise_note(rounds, opts) if path_label == "larder" else ""))
    w("")


def ratios(results, w):
    w("Upload time, larder / direct:")
    w("%-7s %11s %13s %12s" % ("size", "of medians", "paired median", "overhead ms"))
    for size, rounds in results:
        med_d = median_of(rounds, lambda r: r["direct"]["total"])
        med_l = median_of(rounds, lambda r: r["larder"]["total"])
        paired = median_of(rounds, lambda r: r["larder"]["total"] / r["direct"]["total"])
        overhead = median_of(rounds, lambda r: r["larder"]["total"] - r["direct"]["total"])
        note = ""
        if size == 100 << 20:
            note = "   issue's target: at most %.1fx (%s, paired)" % (
                TARGET_RATIO, "within" if paired <= TARGET_RATIO else "over")
        w("%-7s %10.3fx %12.3fx %s%s" % (size_label(size), med_l / med_d, paired, ms(overhead), note))
    w("paired median: the median over rounds of larder's time / direct's in the same round (a drift in the machine's")
    w("speed between rounds cancels out); overhead: the same for larder's time - direct's")
    w("")


def split(rounds):
    """Medians over the rounds whose upload larder logged with an upstream_ms, in seconds:
    {overhead, outside, buffer, own, rest}; None when larder logged none."""
    logged = [r for r in rounds if r["larder"].get("upstream") is not None]
    if not logged:
        return None
    larder = lambda r: r["larder"]  # noqa: E731
    return {"overhead": median_of(logged, lambda r: larder(r)["total"] - r["direct"]["total"]),
            "outside": median_of(logged, lambda r: larder(r)["total"] - larder(r)["upstream"]),
            "buffer": median_of(logged, lambda r: larder(r)["send"]),
            "own": median_of(logged, lambda r: larder(r)["total"] - larder(r)["upstream"] - larder(r)["send"]),
            "rest": median_of(logged, lambda r: larder(r)["upstream"] - r["direct"]["total"])}


def share_of(part, whole):
    return "%5.0f%%" % (100 * part / whole) if whole >= 0.001 else "%6s" % "-"  # no share of under 1 ms


def breakdown(results, w):
    w("Where the overhead goes (medians over rounds, ms; upstream = upstream_ms of larder's access-log line):")
    w("%-7s %8s %8s %8s | %8s = %8s %6s + %8s %6s + %8s" % (
        "size", "larder", "upstream", "outside", "overhead", "buffer", "", "own", "", "rest"))
    for size, rounds in results:
        p = split(rounds)
        if p is None:
            w("%-7s larder logged no upstream_ms for these uploads: no split" % size_label(size))
            continue
        w("%-7s %s %s %s | %s = %s %s + %s %s + %s" % (
            size_label(size), ms(median_of(rounds, lambda r: r["larder"]["total"])),
            ms(median_of(rounds, lambda r: r["larder"].get("upstream"))), ms(p["outside"]), ms(p["overhead"]),
            ms(p["buffer"]), share_of(p["buffer"], p["overhead"]), ms(p["own"]), share_of(p["own"], p["overhead"]),
            ms(p["rest"])))
    w("larder   = larder's upload time as the client sees it")
    w("upstream = larder's exchange with the emulator: request start to response head, body sent included")
    w("outside  = larder - upstream: larder's time outside the upstream exchange (= buffer + own)")
    w("overhead = larder - direct, per round (medians: the parts add up only roughly); split into")
    w("buffer   = buffering: the client's upload into larder (until its last body byte was in the kernel), which")
    w("           larder must receive whole before it can start the upstream request (h2o buffers the body; 32 MiB")
    w("           and more in a spill file). A lower bound: a body that fits in the socket buffers (1 MiB) is")
    w("           'sent' at once, and its buffering lands in 'own'")
    w("own      = outside - buffer: larder's own handling before the upstream request (the caller's token) and")
    w("           after its answer (making the cache entry, the reply); upstream_ms is whole ms (truncated), so")
    w("           this reads up to 1 ms high")
    w("rest     = upstream - direct: larder's exchange with the emulator against the client's own upload")
    w("")
    for size, rounds in results:
        p = split(rounds)
        if p is None:
            continue
        direct = [r["direct"]["total"] for r in rounds]
        w("%s: overhead %.1f ms an upload (%s over direct); buffering the body at least %.1f ms (%s of it, %.1f%% of"
          % (size_label(size), p["overhead"] * 1000, share_of(p["overhead"], statistics.median(direct)).strip(),
             p["buffer"] * 1000, share_of(p["buffer"], p["overhead"]).strip(),
             100 * p["buffer"] / statistics.median(direct)))
        w("  a direct upload); larder's own handling %.1f ms (%s); its upstream exchange against the direct upload"
          " %+.1f ms" % (p["own"] * 1000, share_of(p["own"], p["overhead"]).strip(), p["rest"] * 1000))
        w("  (direct uploads alone ranged %.1f-%.1f ms)" % (min(direct) * 1000, max(direct) * 1000))
    w("")


def rounds_table(results, w):
    w("Every round (ms), in the order run (D = direct, L = larder):")
    w("%-7s %3s %-4s %8s %8s %8s %8s %8s %8s  %-8s %s" % ("size", "#", "order", "D up", "L up", "L send", "L upstr",
                                                        "D TTFB", "L TTFB", "L read", "others' CPU"))
    for size, rounds in results:
        for rep, r in enumerate(rounds):
            d, l = r["direct"], r["larder"]
            w("%-7s %3d %-4s %s %s %s %s %s %s  %-8s %3.0f%%" % (
                size_label(size), rep, "D,L" if rep % 2 == 0 else "L,D", ms(d["total"]), ms(l["total"]),
                ms(l["send"]), ms(l.get("upstream")), ms(d["ttfb"]), ms(l["ttfb"]), l["x_cache"],
                100 * r["foreign"]))
    w("")


def report(results, binary, opts, larder):
    out = []
    w = out.append
    w("")
    w("larder write-through uploads vs direct, JSON media upload over HTTP/1.1 on loopback, %d CPUs" % os.cpu_count())
    w("larder:   %s (built %s), cache.default_policy %s, worker_threads %s, max_request_body %d" % (
        binary, time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(binary))), opts.policy,
        larder.config.get("worker_threads"), larder.config["max_request_body"]))
    w("upstream: the GCS emulator (Python: it hashes every upload, MD5 + CRC32C, which is most of its time)")
    w("Each round uploads once direct and once through larder (order alternating, ABBA), each with python http.client")
    w("on a connection opened beforehand, the body preallocated: 'up' = first header byte to the whole response;")
    w("TTFB = from that response to the first body byte of the GET alt=media of the same object that follows on")
    w("the same connection. p90 is nearest-rank (under 10 rounds: the slowest). MB/s = size / median up time")
    w("(1 MB = 10^6 bytes). others' CPU: the largest share of the CPUs other processes used during a round.")
    w("")
    table(results, opts, w)
    ratios(results, w)
    breakdown(results, w)
    if opts.show_rounds:
        rounds_table(results, w)
    print("\n".join(out), flush=True)


def run(workdir, ca, emulator, opts, binary):
    emulator.create_bucket(BUCKET)
    larder = start_larder(workdir, ca, emulator, opts)
    try:
        log("warming up (64 KiB, one round; checks the token once)")
        measure_size(64 << 10, 1, emulator, larder, opts, tag="warm")
        results = []
        for size, reps in zip(opts.sizes, opts.reps):
            log("%s: %d rounds" % (size_label(size), reps))
            results.append((size, measure_size(size, reps, emulator, larder, opts)))
        report(results, binary, opts, larder)
    finally:
        larder.stop()


def main():
    opts = parse_args()
    try:
        binary = larder_binary()
        log("larder binary: " + binary)
        with harness.scratch_upstream("larder-bench-uploads-") as (workdir, ca, emulator):
            run(workdir, ca, emulator, opts, binary)
    except BenchError as err:
        log("uploads.py: " + str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
