"""test_cache_faults.py - the read cache under pressure: budget and eviction, kill -9
mid-fill, a damaged store, and upstream faults in the middle of a fill.

The invariant behind every test here: whatever happens, a client never gets
wrong bytes in a clean 200, and nothing torn is ever served from the store
afterwards. Bytes are compared by sha256 with the same object read straight
from the emulator.
"""

import hashlib
import http.client
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only: its test classes are not collected here)

OWNER = tc.OWNER
MiB = tc.MiB
CHUNK = tc.CHUNK
ASIDE_LINE = re.compile(r"does not open cleanly .*moved it to (\S+) and starting empty")


def data_file(larder):
    return os.path.join(larder.config["store"]["path"], "data.mdb")


class FaultCase(tc.CacheTestCase):
    """A CacheTestCase whose tests may stop, kill and restart larder on the same store."""

    larder_config = {"cache": {"enabled": True, "default_policy": "immutable"},
                     "upstream": {"idle_timeout_ms": 2000}}

    def read_sha(self, path, headers=OWNER, timeout=120):
        digest = hashlib.sha256()
        r = self.get(path, headers, sink=digest.update, timeout=timeout)
        return r, digest.hexdigest()

    def direct_sha(self, path, headers=OWNER):
        digest = hashlib.sha256()
        r = tc.http_request(self.emulator.port, "GET", path, headers, sink=digest.update, timeout=120)
        self.assertEqual((r.status, r.error), (200, None))
        return digest.hexdigest()


# ==========================================================================
# Budget and eviction
# ==========================================================================

class BudgetTest(FaultCase):
    larder_config = {"store": {"budget": "32MiB", "high_water_percent": 95, "low_water_percent": 85},
                     "cache": {"enabled": True, "default_policy": "immutable"}}

    def test_store_stays_within_budget(self):
        budget = 32 * MiB
        size, count = 4 * MiB, 24  # 96 MiB of distinct objects
        expected = {}
        for i in range(count):
            self.put_object("load/%02d" % i, size=size, seed=100 + i)
            expected[i] = self.direct_sha(self.media("load/%02d" % i))
        sizes = []
        for i in range(count):
            r, digest = self.read_sha(self.media("load/%02d" % i))
            self.assertEqual((r.status, r.error, digest), (200, None, expected[i]), i)
            # Object 0 is read again all along: least recently used it is not.
            r, digest = self.read_sha(self.media("load/00"))
            self.assertEqual((r.status, digest), (200, expected[0]))
            sizes.append(os.path.getsize(data_file(self.larder)))
        deadline = time.monotonic() + 10
        while True:
            stats = self.settle()
            if stats["used_bytes"] <= budget or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        mdb = os.path.getsize(data_file(self.larder))
        print("\nstore after 96 MiB through a 32 MiB budget: %s; data.mdb %.1f MiB (largest seen %.1f MiB)"
              % (stats, mdb / MiB, max(sizes) / MiB), flush=True)
        self.assertEqual(stats["budget"], budget)
        self.assertLessEqual(stats["used_bytes"], budget, stats)
        self.assertGreater(stats["used_bytes"], 0, stats)
        self.assertGreater(stats["evicted_objects"], 0, stats)
        self.assertLess(stats["objects"], count, stats)
        # LMDB reuses freed pages: the file is bounded by the budget plus slack, not the workload.
        self.assertLessEqual(max(sizes + [mdb]), 2 * budget, "data.mdb grew to %d bytes" % max(sizes + [mdb]))
        # Recency decides: the newest and the hot object are still there, the oldest cold ones are not.
        for i, expect in ((count - 1, "HIT"), (0, "HIT"), (1, "MISS"), (2, "MISS")):
            r, digest = self.read_sha(self.media("load/%02d" % i))
            self.assertEqual((r.status, digest), (200, expected[i]), i)
            self.assertEqual(r.x_cache, expect, "object %d" % i)
        self.assertLogAgrees()

    def test_object_larger_than_the_budget(self):
        """An object bigger than the whole budget is served whole and leaves the store within budget."""
        self.put_object("huge", size=40 * MiB, seed=5)
        expected = self.direct_sha(self.media("huge"))
        for _ in range(2):
            r, digest = self.read_sha(self.media("huge"))
            self.assertEqual((r.status, r.error, digest), (200, None, expected))
            self.settle()
        stats = self.settle()
        self.assertLessEqual(stats["used_bytes"], 32 * MiB, stats)
        # The cache still works afterwards.
        self.put_object("after", size=2 * MiB, seed=6)
        expected = self.direct_sha(self.media("after"))
        for want in ("MISS", "HIT"):
            r, digest = self.read_sha(self.media("after"))
            self.assertEqual((r.status, r.x_cache, digest), (200, want, expected))
            self.settle()
        self.assertLogAgrees()


class MaxObjectSizeTest(FaultCase):
    larder_config = {"cache": {"enabled": True, "default_policy": "immutable", "max_object_size": "1MiB"}}

    def test_objects_over_max_object_size_pass_uncached(self):
        self.put_object("small", size=MiB, seed=1)
        self.put_object("big", size=MiB + 1, seed=2)
        for name, second in (("small", "HIT"), ("big", "MISS")):
            expected = self.direct_sha(self.media(name))
            r, digest = self.read_sha(self.media(name))
            self.assertEqual((r.status, r.x_cache, digest), (200, "MISS", expected), name)
            self.settle()
            mark = self.mark()
            r, digest = self.read_sha(self.media(name))
            self.assertEqual((r.status, r.x_cache, digest), (200, second, expected), name)
            self.assertEqual(len(self.upstream_since(mark)), 0 if second == "HIT" else 1, name)
        self.assertLogAgrees()


# ==========================================================================
# kill -9 and damage
# ==========================================================================

class CrashTest(FaultCase):

    def test_kill_9_mid_fill_then_restart(self):
        size = 200 * MiB
        self.put_object("crash.bin", size=size, seed=42)
        path = self.media("crash.bin")
        expected = self.direct_sha(path)
        # ~50 MiB/s from upstream, so the kill lands mid-fill.
        self.emulator.faults(bandwidth_bps=50 * MiB, match="/crash.bin")
        sent_before = self.emulator.counters()["media_bytes_sent"]
        got = {"bytes": 0}
        killed = threading.Event()

        def sink(data):
            got["bytes"] += len(data)
            if got["bytes"] >= 60 * MiB and not killed.is_set():
                killed.set()
                self.larder.proc.kill()

        try:
            r = tc.http_request(self.larder.port, "GET", path, OWNER, sink=sink, timeout=60)
            upstream_sent = self.emulator.counters()["media_bytes_sent"] - sent_before
        finally:
            if not killed.is_set():
                self.larder.proc.kill()
            larder = self.restart_larder(kill=True)
        self.emulator.clear_faults()
        self.assertTrue(killed.is_set(), "the read finished before the kill (%d bytes)" % got["bytes"])
        self.assertEqual(r.status, 200)
        self.assertIsNotNone(r.error, "a read cut by kill -9 looked complete")
        self.assertLess(got["bytes"], size)
        self.assertLess(upstream_sent, size, "upstream finished before the kill: no fill was interrupted")
        self.assertNotIn("does not open cleanly", larder.read_log())
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.error), (200, None))
        self.assertEqual(digest, expected, "wrong bytes after a crash mid-fill (X-Cache %s)" % r.x_cache)
        self.assertIn(r.x_cache, ("MISS", "HIT"))
        self.settle()
        mark = self.mark()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "HIT", expected))
        self.assertNoUpstream(mark)
        # A ranged read across the part filled before the crash and the rest.
        r = self.get(path, dict(OWNER, Range="bytes=%d-%d" % (59 * MiB, 61 * MiB)))
        want = self.direct(path, dict(OWNER, Range="bytes=%d-%d" % (59 * MiB, 61 * MiB)))
        self.assertSameAnswer(r, want, "range after restart")
        self.assertLogAgrees()


class DamageCase(FaultCase):
    """What the damage tests share: objects of random bytes, damage done to data.mdb, and recovery."""

    def fill(self, name, size, seed):
        # Random bytes, not a synthetic object: the corruption tests look for them in data.mdb.
        self.put_object(name, data=os.urandom(size))
        path = self.media(name)
        expected = self.direct_sha(path)
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, digest), (200, expected))
        self.settle()
        r, digest = self.read_sha(path)
        self.assertEqual((r.x_cache, digest), ("HIT", expected))
        return path, expected

    def corrupt_payload(self, larder, name):
        """Overwrites 4 KiB of the object's bytes wherever they sit inside data.mdb."""
        data = self.object_bytes(name)
        probe = data[CHUNK + 5000:CHUNK + 5064]  # inside the second chunk
        with open(data_file(larder), "r+b") as f:
            blob = f.read()
            hits = [m.start() for m in re.finditer(re.escape(probe), blob)]
            self.assertTrue(hits, "the object's bytes are not in data.mdb")
            for at in hits:
                f.seek(at)
                f.write(os.urandom(4096))
            f.flush()
            os.fsync(f.fileno())

    def assertRecovers(self, path, expected):
        """The read that finds the damage may be cut (headers are out by then); it never
        completes with other bytes, and the damaged chunk is treated as absent from then
        on (store.h: STORE_CORRUPT), so the client's immediate retry gets the object."""
        r, digest = self.read_sha(path)
        if r.status == 200 and r.error is None:
            self.assertEqual(digest, expected, "a clean 200 with wrong bytes (X-Cache %s)" % r.x_cache)
        else:
            self.assertEqual(r.status, 200, r)  # cut mid-body: the only honest failure
        first = (r.x_cache, repr(r.error))
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.error, digest), (200, None, expected),
                         "the retry right after %r (X-Cache %s)" % (first, r.x_cache))
        self.settle()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "HIT", expected))


class DamageTest(DamageCase):

    def test_garbage_header_moves_store_aside(self):
        path, expected = self.fill("dmg.bin", 3 * MiB, 8)
        store_path = self.larder.config["store"]["path"]

        def scribble(old):
            with open(data_file(old), "r+b") as f:
                f.write(os.urandom(8192))

        larder = self.restart_larder(before_start=scribble)
        lines = [line for line in larder.read_log().splitlines() if "does not open cleanly" in line]
        self.assertEqual(len(lines), 1, larder.read_log()[-3000:])
        aside = ASIDE_LINE.search(lines[0])
        self.assertIsNotNone(aside, lines[0])
        self.assertTrue(os.path.isdir(aside.group(1).rstrip('",')), lines[0])
        self.assertTrue(aside.group(1).startswith(store_path + ".broken-"), lines[0])
        self.assertEqual(self.stats()["objects"], 0)
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.x_cache, digest), (200, "MISS", expected))
        self.settle()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.x_cache, digest), (200, "HIT", expected))
        self.assertLogAgrees()

    def test_corrupt_chunk_while_stopped(self):
        path, expected = self.fill("rot.bin", 3 * MiB, 9)
        self.restart_larder(before_start=lambda old: self.corrupt_payload(old, "rot.bin"))
        self.assertRecovers(path, expected)
        self.assertLogAgrees()

    def test_corrupt_chunk_while_running_before_its_first_read(self):
        """A chunk is checked on its first read from the store in this process, and then once a minute
        (store.verify_interval, 60 s by default): damage done before that first read is caught by it.
        The miss that filled the object was served from the fill, not from the store."""
        self.put_object("rot3.bin", data=os.urandom(3 * MiB))
        path = self.media("rot3.bin")
        expected = self.direct_sha(path)
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.x_cache, digest), (200, "MISS", expected))
        self.settle()
        self.corrupt_payload(self.larder, "rot3.bin")
        self.assertRecovers(path, expected)
        self.assertLogAgrees()


class DamageEveryReadTest(DamageCase):
    """store.verify_interval 0: every read checks the chunk, so damage done while running after the
    chunk was read and served is still caught by the next read. With the default interval that read
    serves the damaged bytes (checked by hand: the test then fails with a wrong digest)."""
    larder_config = dict(FaultCase.larder_config, store={"verify_interval": "0s"})

    def test_corrupt_chunk_while_running(self):
        path, expected = self.fill("rot2.bin", 3 * MiB, 10)
        self.corrupt_payload(self.larder, "rot2.bin")
        self.assertRecovers(path, expected)
        self.assertLogAgrees()


class DamageIntervalTest(DamageCase):
    """store.verify_interval 1 s: damage done after a chunk was checked is caught by the first read once
    the interval has passed since that check. The test waits at least that long, so it holds at any
    speed."""
    larder_config = dict(FaultCase.larder_config, store={"verify_interval": "1s"})

    def test_corrupt_chunk_while_running_after_the_interval(self):
        path, expected = self.fill("rot4.bin", 3 * MiB, 11)
        self.corrupt_payload(self.larder, "rot4.bin")
        time.sleep(2.1)  # the coarse clock counts whole seconds: 2 s past the last check at the least
        self.assertRecovers(path, expected)
        self.assertLogAgrees()


# ==========================================================================
# Hits sent straight from the store's map while the store reuses pages
# ==========================================================================

CHURN_BUCKET = "churn-always"


class DirectSendChurnTest(FaultCase):
    """Plain HTTP/1.1 hits send body bytes straight from LMDB's map to the socket (read.c send_direct), each
    send() inside a read transaction. This tries hard to make a page change under a send: slow and fast
    readers of objects that are overwritten upstream all along (the "always" policy drops each old entry
    mid-read and fills the new one into the pages it freed), while reads of other objects push the store
    over its budget (eviction frees more). Every response must be whole with exactly the bytes of the
    generation it names, or visibly cut (a short body): never a clean response with other bytes. The
    direct path must have carried most bytes, or the test proves nothing about it."""
    larder_config = {"store": {"budget": "40MiB", "high_water_percent": 90, "low_water_percent": 70},
                     "cache": {"enabled": True, "default_policy": "immutable",
                               "policies": CHURN_BUCKET + "=always"}}

    def test_slow_and_fast_readers_while_pages_are_reused(self):
        import random
        self.emulator.create_bucket(CHURN_BUCKET)
        size = 5 * MiB + 4321
        seeds, digests, lock, stop = {}, {}, threading.Lock(), threading.Event()
        hot = ["hot-%d" % i for i in range(3)]
        next_seed = [1000]

        def content(seed):
            return random.Random(seed).randbytes(size)

        def overwrite(name):
            with lock:
                next_seed[0] += 1
                seed = next_seed[0]
            data = content(seed)
            resource = self.put_object(name, data=data, bucket=CHURN_BUCKET)
            with lock:
                seeds[str(resource["generation"])] = seed
                digests[str(resource["generation"])] = hashlib.sha256(data).hexdigest()

        for name in hot:
            overwrite(name)
        for i in range(8):
            self.put_object("filler/%d" % i, size=4 * MiB, seed=300 + i)
        before = self.stats()["direct_bytes"]
        outcomes = {"whole": 0, "cut": 0}
        wrong = []

        class SlowConnection(http.client.HTTPConnection):
            """A small receive buffer: the server's socket fills after a few KiB, so what larder hands
            to h2o waits there (h2o keeps pointers to it) for as long as this reader dawdles."""

            def connect(self):
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                self.sock.settimeout(self.timeout)
                self.sock.connect((self.host, self.port))

        def check(name, generation, body, length):
            """Whole: the generation's digest. Cut: what came must still be the generation's first bytes."""
            with lock:
                seed, digest = seeds.get(generation), digests.get(generation)
            if len(body) == length:
                ok = digest == hashlib.sha256(body).hexdigest()
            else:
                ok = seed is not None and content(seed)[:len(body)] == bytes(body)
            with lock:
                if not ok:
                    wrong.append((name, generation, len(body), length))
                else:
                    outcomes["whole" if len(body) == length else "cut"] += 1

        def reader(slow, seed):
            rnd = random.Random(seed)
            while not stop.is_set():
                name = rnd.choice(hot)
                conn = (SlowConnection if slow else http.client.HTTPConnection)("127.0.0.1", self.larder.port,
                                                                                 timeout=30)
                body, generation, length = bytearray(), None, None
                try:
                    conn.request("GET", self.media(name, bucket=CHURN_BUCKET), headers=OWNER)
                    resp = conn.getresponse()
                    if resp.status != 200:
                        resp.read()
                        continue
                    generation, length = resp.getheader("x-goog-generation"), int(resp.getheader("content-length"))
                    while True:
                        piece = resp.read(16384 if slow else 1 << 20)
                        if not piece:
                            break
                        body += piece
                        if slow:
                            time.sleep(0.005)
                except (OSError, http.client.HTTPException) as e:
                    if isinstance(e, http.client.IncompleteRead):
                        body += e.partial
                finally:
                    conn.close()
                if generation is not None:
                    check(name, generation, body, length)

        def churn():
            i = 0
            while not stop.is_set():
                overwrite(hot[i % len(hot)])
                self.read_sha(self.media("filler/%d" % (i % 8)))
                i += 1
                time.sleep(0.05)

        threads = [threading.Thread(target=reader, args=(i < 4, i)) for i in range(8)]
        threads.append(threading.Thread(target=churn))
        for t in threads:
            t.start()
        time.sleep(12)
        stop.set()
        for t in threads:
            t.join(60)
        direct = self.stats()["direct_bytes"] - before
        print("\ndirect-send churn: %s, %d wrong, %.0f MiB sent from the map" % (outcomes, len(wrong), direct / MiB),
              flush=True)
        self.assertEqual(wrong, [], "responses with bytes of no generation they name (whole, or before the cut)")
        self.assertGreater(outcomes["whole"], 20, outcomes)
        self.assertGreater(direct, 64 * MiB, "the direct path carried too little to prove anything")


class SmallBufferReuseTest(FaultCase):
    """Small hits send from a buffer the worker keeps and hands to the next hit (worker_small_buffer_take).
    A buffer must not be handed on while h2o still holds a response that points into it: that happens when
    a client stops reading and its socket fills. One client pipelines many reads of object A without
    reading, so its connection stalls with a response half sent; meanwhile another client, on the same
    worker, reads object B again and again. Then the first client reads on: every response must be A's,
    byte for byte. Handing the stalled response's buffer to B's hits would put B's bytes into it: with
    worker_small_buffer_take changed to leave the buffer it returns on the spare list, this test fails."""
    larder_config = {"cache": {"enabled": True, "default_policy": "immutable"}, "worker_threads": 1}

    def test_buffer_of_a_stalled_response_is_not_reused(self):
        size = 12 * 1024  # under WORKER_SMALL_BUFFER: a small hit
        a, b = os.urandom(size), os.urandom(size)
        self.put_object("small/a", data=a)
        self.put_object("small/b", data=b)
        for name in ("small/a", "small/b"):
            r, _ = self.read_sha(self.media(name))
            self.assertEqual(r.status, 200)
            self.assertEqual(self.get(self.media(name), OWNER).x_cache, "HIT")
        count = 2000  # 24 MiB of responses: far more than the two sockets' buffers hold
        request = ("GET %s HTTP/1.1\r\nHost: larder\r\nAuthorization: %s\r\n\r\n"
                   % (self.media("small/a"), OWNER["Authorization"])).encode()
        stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(120)
        stalled.connect(("127.0.0.1", self.larder.port))
        try:
            stalled.sendall(request * count)
            # Nothing read yet: larder now waits to write a response into the full socket. B's hits run
            # meanwhile on the one worker, taking spare buffers.
            for _ in range(300):
                r, digest = self.read_sha(self.media("small/b"))
                self.assertEqual((r.status, digest), (200, hashlib.sha256(b).hexdigest()))
            received, wrong, buf = 0, 0, b""
            while received < count:
                chunk = stalled.recv(1 << 20)
                self.assertTrue(chunk, "larder closed the connection after %d responses" % received)
                buf += chunk
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = buf[:end].decode("latin-1")
                    self.assertTrue(head.startswith("HTTP/1.1 200"), head.splitlines()[0])
                    length = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))
                    if len(buf) < end + 4 + length:
                        break
                    body = buf[end + 4:end + 4 + length]
                    buf = buf[end + 4 + length:]
                    received += 1
                    wrong += body != a
            self.assertEqual(wrong, 0, "responses to the stalled client that were not object A's bytes")
        finally:
            stalled.close()


# ==========================================================================
# Upstream faults in the middle of a fill
# ==========================================================================

ALWAYS_BUCKET = "pol-always"


class MissHeadTest(FaultCase):
    """A miss's response head goes to the client as soon as upstream's head is in, as it would on a direct
    read, not when the first body bytes arrive: a 1 MiB miss's first byte came 0.8-1.2 ms after a direct
    read's, while upstream took that long to start the body after its head (issue 11's miss target).
    Upstream here holds the body back entirely until the test releases it, so on the old code no head can
    reach the client while the body is held, and the test fails there (its head wait times out)."""
    larder_config = {"cache": {"enabled": True, "default_policy": "immutable"},
                     "upstream": {"idle_timeout_ms": 120000}}

    def test_head_before_the_body_starts(self):
        size = 3 * MiB + 17
        self.put_object("late-body.bin", size=size, seed=21)
        path = self.media("late-body.bin")
        expected = self.direct_sha(path)
        self.emulator.faults(stall_ms=110000, stall_after_bytes=0, match="/late-body.bin", times=1)
        conn, resp = self.open_head(path)  # the status line and headers only
        try:
            held = self.emulator.control("GET", "faults")["waiting"]
            self.assertEqual((resp.status, resp.getheader("x-cache"), resp.getheader("content-length"), held),
                             (200, "MISS", str(size), 1), "the head came only after upstream sent body bytes")
            self.emulator.control("POST", "release", {})
            digest = hashlib.sha256()
            for block in iter(lambda: resp.read(1 << 20), b""):
                digest.update(block)
            self.assertEqual(digest.hexdigest(), expected)
        finally:
            conn.close()
            self.emulator.clear_faults()
        self.settle()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.x_cache, digest), (200, "HIT", expected))

    def open_head(self, path):
        """A GET through larder whose head has arrived; fails the test when none comes in 30 s."""
        conn = http.client.HTTPConnection("127.0.0.1", self.larder.port, timeout=30)
        conn.request("GET", path, headers=OWNER)
        try:
            resp = conn.getresponse()
        except socket.timeout:
            conn.close()
            self.fail("no response head in 30 s while upstream held the body back")
        conn.sock.settimeout(120)
        return conn, resp

    def test_reset_before_the_first_byte_with_a_follower(self):
        """The head went out early, then upstream resets before sending a single body byte: the reader that
        started the fill and a follower that joined it, both already holding a 200 head, still get the whole
        object, byte-exact, from larder's ranged retry; neither gets a short body that looks whole."""
        size = 2 * MiB + 99
        self.put_object("reset-at-0.bin", size=size, seed=22)
        path = self.media("reset-at-0.bin")
        expected = self.direct_sha(path)
        self.emulator.faults(stall_ms=110000, stall_after_bytes=0, reset_after_bytes=0, match="/reset-at-0.bin",
                             times=1)
        mark = self.mark()
        conns = []
        try:
            for who in ("leader", "follower"):
                conn, resp = self.open_head(path)
                conns.append((conn, resp))
                self.assertEqual((resp.status, resp.getheader("content-length")), (200, str(size)), who)
            # One fill for both: upstream saw one read, still held.
            self.assertEqual(self.emulator.control("GET", "faults")["waiting"], 1)
            self.assertEqual(len(self.upstream_since(mark, ("media_get", "xml_get"))), 1)
            self.emulator.control("POST", "release", {})
            for who, (conn, resp) in zip(("leader", "follower"), conns):
                digest = hashlib.sha256()
                got = 0
                try:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        digest.update(block)
                        got += len(block)
                except http.client.IncompleteRead as cut:
                    self.fail("%s: cut after %d bytes (visibly, but the retry should have completed it)" % (
                        who, got + len(cut.partial)))
                self.assertEqual((got, digest.hexdigest()), (size, expected), who)
        finally:
            for conn, _ in conns:
                conn.close()
            self.emulator.clear_faults()
        self.settle()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.x_cache, digest), (200, "HIT", expected))


class UpstreamFaultTest(FaultCase):
    larder_config = {"cache": {"enabled": True, "default_policy": "immutable",
                               "policies": ALWAYS_BUCKET + "=always"},
                     "upstream": {"idle_timeout_ms": 2000}}

    def assertRetriedFrom(self, mark, size, cut_at, what):
        """Upstream saw the fill and then one ranged retry of the rest, from a chunk boundary at or before
        where the fill broke off, pinned to the generation being served."""
        up = self.upstream_since(mark, ("media_get", "xml_get"))
        self.assertEqual(len(up), 2, "%s: %r" % (what, up))
        rng = up[1]["headers"].get("Range")
        self.assertIsNotNone(rng, "%s: the retry was not ranged: %r" % (what, up[1]))
        first, end = tc.fetched_span(rng, size)
        self.assertEqual((first % CHUNK, end), (0, size), "%s: retry %s" % (what, rng))
        self.assertLessEqual(first, cut_at, "%s: retry %s skips bytes the fill never delivered" % (what, rng))
        self.assertTrue("ifGenerationMatch=" in up[1]["path"] or
                        up[1]["headers"].get("x-goog-if-generation-match"),
                        "%s: the retry is not pinned to the generation: %r" % (what, up[1]))

    def test_reset_mid_fill_is_completed_by_range(self):
        """Upstream resets once mid-fill: the reader still gets the whole object, byte-exact, because the
        rest is fetched again by range from the first chunk the fill did not commit (the committed ones are
        kept, never invalidated). Fails on the old code: the reader got a cut response, and the fill
        invalidated the object, so the next read was a whole-object MISS."""
        size = 6 * MiB
        for i, reset_at in enumerate((CHUNK + 1000, 3 * CHUNK, 512 * 1024)):
            name = "reset-%d.bin" % i
            self.put_object(name, size=size, seed=11 + i)
            path = self.media(name)
            expected = self.direct_sha(path)
            self.emulator.faults(reset_after_bytes=reset_at, match="/" + name, times=1)
            mark = self.mark()
            r, digest = self.read_sha(path)
            self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "MISS", expected), reset_at)
            self.assertRetriedFrom(mark, size, reset_at, "reset after %d bytes" % reset_at)
            self.settle()
            mark = self.mark()
            r, digest = self.read_sha(path)
            self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "HIT", expected), reset_at)
            self.assertNoUpstream(mark, "after the completed fill")
        self.assertLogAgrees()

    def test_reset_mid_ranged_fill(self):
        """A ranged fill reset mid-way: the client's 206 is completed by a ranged retry. Fails on the old
        code: the 206 was cut (IncompleteRead) and the fill invalidated the object."""
        size = 5 * CHUNK + 10
        self.put_object("rr.bin", size=size, seed=12)
        path = self.media("rr.bin")
        data = self.object_bytes("rr.bin")
        rng = "bytes=%d-%d" % (CHUNK + 10, 3 * CHUNK + 10)  # widened to chunks 1..3
        # The cut falls in chunk 2, before the client's window ends.
        self.emulator.faults(reset_after_bytes=CHUNK + 500000, match="/rr.bin", times=1)
        r = self.get(path, dict(OWNER, Range=rng))
        self.assertEqual((r.status, r.error, r.body), (206, None, data[CHUNK + 10:3 * CHUNK + 11]))
        self.settle()
        mark = self.mark()
        r = self.get(path, dict(OWNER, Range=rng))
        self.assertEqual((r.status, r.error, r.body, r.x_cache), (206, None, data[CHUNK + 10:3 * CHUNK + 11], "HIT"))
        self.assertNoUpstream(mark)
        self.settle()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, digest), (200, tc.sha(data)))
        self.assertLogAgrees()

    def test_reset_with_followers(self):
        """Eight readers of one fill that upstream resets once: every one gets the whole object,
        byte-exact, and nobody fetched the whole object a second time. Fails on the old code: the readers
        got cut responses."""
        size = 8 * MiB
        self.put_object("fr.bin", size=size, seed=13)
        path = self.media("fr.bin")
        expected = self.direct_sha(path)
        self.emulator.faults(reset_after_bytes=3 * MiB, bandwidth_bps=8 * MiB, match="/fr.bin", times=1)
        sent_before = self.emulator.counters()["media_bytes_sent"]
        barrier = threading.Barrier(8)
        results = []

        def read():
            barrier.wait()
            digest = hashlib.sha256()
            r = tc.http_request(self.larder.port, "GET", path, OWNER, sink=digest.update, timeout=60)
            results.append((r.status, r.error, digest.hexdigest()))

        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        self.assertEqual(len(results), 8)
        for status, error, digest in results:
            self.assertEqual((status, error, digest), (200, None, expected))
        sent = self.emulator.counters()["media_bytes_sent"] - sent_before
        self.assertLess(sent, 2 * size, "the whole object went upstream again (%d bytes)" % sent)
        self.settle()
        r, digest = self.read_sha(path)
        self.assertEqual((r.x_cache, digest), ("HIT", expected))

    def test_stall_mid_fill_is_completed_by_range(self):
        """Upstream stalls longer than upstream.idle_timeout_ms once: larder gives up on that transfer
        within the timeout and completes the response by a ranged retry. Fails on the old code: the
        response was cut at the stall (IncompleteRead, 3 MiB short)."""
        size = 4 * MiB
        self.put_object("stall.bin", size=size, seed=14)
        path = self.media("stall.bin")
        expected = self.direct_sha(path)
        self.emulator.faults(stall_ms=5000, stall_after_bytes=CHUNK + 100, match="/stall.bin", times=1)
        mark = self.mark()
        started = time.monotonic()
        r, digest = self.read_sha(path)
        self.assertLess(time.monotonic() - started, 4.5)
        self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "MISS", expected))
        self.assertRetriedFrom(mark, size, CHUNK + 100, "stall")
        self.settle()
        r, digest = self.read_sha(path)
        self.assertEqual((r.x_cache, digest), ("HIT", expected))
        self.assertLogAgrees()

    def test_reset_on_changed_object_keeps_nothing_torn(self):
        """Under "always", a revalidation answered 200 (new bytes) and then cut is completed with the new
        generation's bytes, pinned to that generation, never the old ones. Fails on the old code: the
        response was cut (IncompleteRead, 2 MiB short)."""
        self.emulator.create_bucket(ALWAYS_BUCKET)
        size = 3 * MiB
        name = "chg-%s.bin" % self.bucket
        path = self.media(name, ALWAYS_BUCKET)
        self.put_object(name, size=size, seed=15, bucket=ALWAYS_BUCKET)
        first = self.direct_sha(path)
        r, digest = self.read_sha(path)
        self.assertEqual((r.x_cache, digest), ("MISS", first))
        self.settle()
        self.put_object(name, size=size, seed=16, bucket=ALWAYS_BUCKET)
        second = self.direct_sha(path)
        self.emulator.faults(reset_after_bytes=CHUNK + 10, match="/" + name, times=1)
        mark = self.mark()
        r, digest = self.read_sha(path)
        up = self.upstream_since(mark, ("media_get",))
        self.assertTrue(up and up[0]["headers"].get("If-None-Match"), up)
        self.assertEqual((r.status, r.error, r.x_cache), (200, None, "MISS"))
        self.assertEqual(digest, second, "wrong bytes after a cut revalidation")
        self.settle()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "REVALIDATED", second))
        self.assertLogAgrees()

    def test_persistent_reset_is_cut_not_clean(self):
        """When upstream keeps breaking off, the response is cut after one retry: never a short body
        that looks whole; and what committed stays. Fails on the old code: the failed fill invalidated
        the object, so the next read was a whole-object MISS instead of a HIT fetching only the rest."""
        size = 8 * MiB
        self.put_object("always-reset.bin", size=size, seed=17)
        path = self.media("always-reset.bin")
        expected = self.direct_sha(path)
        # Paced, so that what the emulator sends before each reset really arrives (a reset drops what is
        # still in flight): every transfer, the retry too, delivers two whole chunks and breaks off.
        self.emulator.faults(reset_after_bytes=2 * CHUNK + 1000, bandwidth_bps=16 * MiB, match="/always-reset.bin")
        r = self.get(path, OWNER)
        self.assertEqual(r.status, 200, r)
        self.assertIsNotNone(r.error, "a torn body looked complete (%d bytes)" % len(r.body))
        self.assertLess(len(r.body), size)
        self.emulator.clear_faults()
        self.settle()
        # What committed stays: the next read is a hit for the first chunk and fetches only the rest.
        mark = self.mark()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "HIT", expected))
        up = self.upstream_since(mark, ("media_get",))
        self.assertEqual(len(up), 1, up)
        self.assertEqual(tc.fetched_span(up[0]["headers"]["Range"], size)[0] % CHUNK, 0, up)
        self.assertGreater(tc.fetched_span(up[0]["headers"]["Range"], size)[0], 0, up)


if __name__ == "__main__":
    harness.main()
