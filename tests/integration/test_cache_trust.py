"""test_cache_trust.py - the issue "A read cache that can be trusted", item by item.

Each test names the issue's item it checks and says, in its docstring, how it
failed on the code before the fix (larder built from the last commit before
the rewrite, run against this emulator). The witnesses are those of
test_cache.py: the emulator's request log (what went upstream), the same
request sent straight to the emulator (what GCS would have answered), and
sha256 of every body against the object read straight from the emulator.
Faults are judged from the side of the other clients too: a follower, a
concurrent reader. "A response is either whole or visibly broken, never a
short 200": http_request sets Resp.error when a body is cut.

Nothing here waits for a sleep to end in time. Requests are kept in flight by
the emulator's hold and stall faults (released through /_emu/release) or slowed
by its bandwidth fault; deadlines only bound how long a test waits for an event
before it fails or moves on, and no assertion depends on one.

The disk-full tests need a private mount namespace (unshare -m as root, else
unshare -rm) for a real tmpfs; without one they are skipped and the file exits
77 (skipped, never passed).

Against the old binary the file takes about 90 s on an idle 2-core machine
(most tests stop at their first failure); passing, it should take two to three
minutes (one upstream stall is 12 s long on purpose).
"""

import concurrent.futures
import email.utils
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only: its test classes are not collected here)

OWNER, OTHER = tc.OWNER, tc.OTHER
OWNER_EMAIL = tc.OWNER_EMAIL
MiB, CHUNK = tc.MiB, tc.CHUNK
sha = tc.sha

ALWAYS_BUCKET = "trust-always"
TTL_BUCKET = "trust-ttl"
TTL_SECONDS = 600  # a window no test outlives: inside it, ttl behaves as immutable
MEDIA_KINDS = ("media_get", "xml_get", "xml_head")


class Reader(threading.Thread):
    """One GET on its own connection, read by a thread, as a client that can be slow or leave.

    The reader takes `first` body bytes, sets `started`, then waits for go() and
    reads the rest, or for leave() and closes its socket (RST) at once. The
    socket's receive buffer is small so that the kernel does not absorb the
    body on the reader's behalf: what the reader has not taken is still inside
    larder. Afterwards: status, headers, x_cache, error (set when the body was
    cut, as in tc.http_request), received and digest (sha256 of what arrived).
    """

    def __init__(self, port, path, headers, first=None, rcvbuf=64 * 1024, timeout=120):
        super().__init__(daemon=True)
        self.port, self.path, self.headers = port, path, dict(headers or {})
        self.first, self.rcvbuf, self.timeout = first, rcvbuf, timeout
        self.head_seen = threading.Event()   # the response head arrived
        self.started = threading.Event()     # `first` bytes arrived (or the body ended before)
        self._go = threading.Event()
        self._leave = False
        self.status, self.response_headers, self.error = None, [], None
        self.received, self.digest, self.left = 0, None, False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if first is None:
            self._go.set()

    def go(self):
        self._go.set()

    def leave(self):
        self._leave = True
        self._go.set()

    def abort(self):
        """Leaves at once, even from the middle of a read (a test's cleanup)."""
        self.leave()
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @property
    def x_cache(self):
        return tc.Resp(self.status, self.response_headers, b"").x_cache

    def header(self, name):
        return tc.Resp(self.status, self.response_headers, b"").header(name)

    def run(self):
        digest = hashlib.sha256()
        sock = self.sock
        conn = resp = None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.settimeout(self.timeout)
            sock.connect(("127.0.0.1", self.port))
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            conn.sock = sock
            conn.putrequest("GET", self.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", "127.0.0.1:%d" % self.port)
            for name, value in self.headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            resp = conn.getresponse()
            self.status = resp.status
            self.response_headers = [(k.lower(), v) for k, v in resp.getheaders()]
            self.head_seen.set()
            declared = resp.getheader("Content-Length")
            try:
                while True:
                    if self.first is not None and self.received >= self.first and not self._go.is_set():
                        self.started.set()
                        self._go.wait(self.timeout)
                    if self._leave:
                        self.left = True  # the socket is reset (linger 0) as it closes, below
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        return
                    want = 16 * 1024 if self.first is not None and not self._go.is_set() else 1 << 20
                    data = resp.read(want)
                    if not data:
                        break
                    self.received += len(data)
                    digest.update(data)
            except (http.client.IncompleteRead, ConnectionError, OSError) as e:
                self.error = e
            if self.error is None and declared is not None and self.received != int(declared):
                self.error = http.client.IncompleteRead(b"", int(declared) - self.received)
            self.digest = digest.hexdigest()
        except Exception as e:  # noqa: BLE001  (a failure to connect or to get a head is an error too)
            self.error = self.error or e
        finally:
            # The response's file object holds the socket open: close it too, or nothing is closed.
            for thing in (resp, conn, sock):
                if thing is not None:
                    thing.close()
            self.started.set()
            self.head_seen.set()

    def finish(self, testcase, timeout=180):
        self.join(timeout)
        testcase.assertFalse(self.is_alive(), "reader of %s did not finish" % self.path)
        return self


class TrustCase(tc.CacheTestCase):
    """CacheTestCase plus the witnesses these tests share."""

    larder_config = {"cache": {"enabled": True, "default_policy": "immutable",
                               "policies": "%s=always;%s=ttl:%d" % (ALWAYS_BUCKET, TTL_BUCKET, TTL_SECONDS)},
                     "upstream": {"idle_timeout_ms": 20000}}

    def setUp(self):
        super().setUp()
        # Whatever happens in the test: no request stays held at the emulator, no client stays connected.
        self.addCleanup(self.emulator.clear_faults)

    def name(self, suffix):
        """An object name no other test uses (the store outlives each test)."""
        return "%s-%s" % (self._testMethodName, suffix)

    def direct_sha(self, path, headers=OWNER):
        digest = hashlib.sha256()
        r = tc.http_request(self.emulator.port, "GET", path, headers, sink=digest.update, timeout=120)
        self.assertEqual((r.status, r.error), (200, None), path)
        return digest.hexdigest()

    def read_sha(self, path, headers=OWNER, timeout=120, larder=None):
        digest = hashlib.sha256()
        r = self.get(path, headers, sink=digest.update, timeout=timeout, larder=larder)
        return r, digest.hexdigest()

    def reader(self, path, headers=OWNER, first=None, larder=None):
        r = Reader((larder or self.larder).port, path, headers, first)
        r.start()
        self.addCleanup(self.close_reader, r)
        return r

    @staticmethod
    def close_reader(r):
        if r.is_alive():
            r.abort()
            r.join(30)

    def record_reader(self, r):
        """Counts a Reader's answer for assertLogAgrees."""
        if r.x_cache is not None:
            self.sent.append(("GET", tc.redact(r.path), r.x_cache))

    def assertWhole(self, r, expected_sha, what):
        """A Reader (or a Resp read with read_sha's digest) got all of the object, cleanly."""
        self.assertEqual((r.status, r.error), (200, None), "%s: status/cut (X-Cache %s, %d bytes)"
                         % (what, r.x_cache, getattr(r, "received", -1)))
        self.assertEqual(r.digest, expected_sha, "%s: wrong bytes in a clean 200 (X-Cache %s)" % (what, r.x_cache))

    def faults_waiting(self):
        return self.emulator.control("GET", "faults")["waiting"]

    def release(self):
        self.emulator.control("POST", "release", {})

    def media_requests(self, mark, fragment=None):
        return [e for e in self.upstream_since(mark, MEDIA_KINDS) if fragment is None or fragment in e["path"]]


# ==========================================================================
# Item 2: writes invalidate only when they took effect
# ==========================================================================

class WriteTest(TrustCase):

    def test_refused_writes_change_nothing(self):
        """Item 2 (a, b): a write upstream refuses (401/403/412) changes nothing: an owner's download in
        flight completes whole, and the next owner read is a HIT without upstream; a successful owner
        DELETE then makes the next read upstream's 404, not a HIT.

        Fails on the old code: the anonymous DELETE dropped the cached object before upstream answered
        401, so the owner's download of the 16 MiB HIT was cut after 4-5 MiB ("owner's download across a
        refused anonymous DELETE": IncompleteRead, 12583008 more expected)."""
        name = self.name("big.bin")
        size = 16 * MiB
        self.put_object(name, size=size, seed=21)
        path = self.media(name)
        expected = self.direct_sha(path)
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.x_cache, digest), (200, "MISS", expected))
        self.settle()
        # The owner's download, from the cache, reading slowly.
        download = self.reader(path, OWNER, first=256 * 1024)
        self.assertTrue(download.started.wait(30), "the download never started")
        self.assertEqual(download.x_cache, "HIT")
        r = self.get(self.meta_path(name), {}, method="DELETE")
        self.assertEqual(r.status, 401, r)
        self.settle()  # whatever the DELETE did to the store, it has been committed by now
        download.go()
        download.finish(self)
        self.record_reader(download)
        self.assertWhole(download, expected, "owner's download across a refused anonymous DELETE")
        mark = self.mark()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "HIT", expected),
                         "the read after a refused DELETE")
        self.assertNoUpstream(mark, "for a HIT after a refused DELETE")
        # More refusals, each through a different door: none may drop or change the cached copy.
        xml_name = urllib.parse.quote(name, safe="")
        gen = self.direct(self.xml(name), OWNER, method="HEAD").header("x-goog-generation")
        refusals = [
            ("anonymous XML DELETE", lambda: self.get(self.xml(name), {}, method="DELETE"), 403),
            ("other's JSON DELETE", lambda: self.get(self.meta_path(name), OTHER, method="DELETE"), 403),
            ("other's XML PUT", lambda: self.get(self.xml(name), OTHER, method="PUT", body=b"nope"), 403),
            ("other's JSON PATCH", lambda: self.get(self.meta_path(name), dict(OTHER, **{
                "Content-Type": "application/json"}), method="PATCH", body=b'{"contentType": "x/y"}'), 403),
            ("owner's DELETE, wrong generation", lambda: self.get(
                self.meta_path(name, query="ifGenerationMatch=%d" % (int(gen) + 1)), OWNER, method="DELETE"), 412),
            ("owner's XML PUT, wrong generation", lambda: self.get(self.xml(name), dict(OWNER, **{
                "x-goog-if-generation-match": "1"}), method="PUT", body=b"nope"), 412),
            ("owner's upload, ifGenerationMatch=0", lambda: self.get(
                "/upload/storage/v1/b/%s/o?uploadType=media&ifGenerationMatch=0&name=%s" % (self.bucket, xml_name),
                dict(OWNER, **{"Content-Type": "text/plain"}), method="POST", body=b"nope"), 412),
        ]
        for label, write, status in refusals:
            with self.subTest(label):
                r = write()
                self.assertEqual(r.status, status, (label, r))
                self.settle()
                for read_path in (path, self.xml(name)):
                    mark = self.mark()
                    r, digest = self.read_sha(read_path)
                    self.assertEqual((r.status, r.error, digest), (200, None, expected), (label, read_path))
                    if read_path == path:
                        self.assertEqual(r.x_cache, "HIT", "after %s" % label)
                        self.assertNoUpstream(mark, "after %s" % label)
        self.assertEqual(self.direct_sha(path), expected)
        # (b) A write that took effect: the next read is upstream's answer, not the cached copy.
        r = self.get(self.meta_path(name), OWNER, method="DELETE")
        self.assertEqual(r.status, 204, r)
        for read_path in (path, self.xml(name)):
            mark = self.mark()
            r = self.get(read_path, OWNER)
            self.assertEqual(r.status, 404, (read_path, r))
            self.assertNotEqual(r.x_cache, "HIT", read_path)
            self.assertEqual(len(self.media_requests(mark)), 1, read_path)
        self.assertLogAgrees()

    def test_reads_bypass_cache_while_write_in_flight(self):
        """Item 2 (c): while a write of an object is in flight (held at the emulator), reads of it bypass
        the cache (X-Cache PASS, upstream's current bytes); after the write's 2xx, reads return the new
        bytes; a refused write in flight is bypassed too, and once refused the cached copy serves again.

        Fails on the old code: the first read during the held anonymous DELETE was answered MISS (the
        DELETE had dropped the entry on arrival and the read refilled it from upstream) where PASS was
        expected ("(200, 'MISS') != (200, 'PASS') : json read during a DELETE in flight")."""
        name = self.name("w.bin")
        old, new = os.urandom(300000), os.urandom(200000)
        self.put_object(name, old)
        views = [("json", self.media(name)), ("xml", self.xml(name)), ("metadata", self.meta_path(name))]
        for _, path in views:
            self.assertEqual(self.get(path, OWNER).status, 200, path)
            self.settle()
        for label, path in views:
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.x_cache), (200, "HIT"), label)

        def held_write(method, path, headers, body, expect_status):
            """Starts the write; returns its thread once the emulator holds it."""
            result = {}
            self.emulator.faults(hold_ms=30000, method=method, match="/" + name)
            t = threading.Thread(target=lambda: result.update(r=self.get(path, headers, method=method, body=body)))
            t.start()
            self.assertTrue(harness.wait_until(lambda: self.faults_waiting() == 1, 20),
                            "the %s never reached the emulator" % method)
            return t, result

        # A refused write in flight: an anonymous XML DELETE (403).
        t, result = held_write("DELETE", self.xml(name), {}, None, 403)
        for label, path in views:
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.x_cache), (200, "PASS"), "%s read during a DELETE in flight" % label)
            if label != "metadata":
                self.assertEqual(r.body, old, label)
        self.release()
        t.join(30)
        self.assertEqual(result["r"].status, 403, result["r"])
        self.emulator.clear_faults()
        for label, path in views[:2]:
            mark = self.mark()
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.x_cache, r.body), (200, "HIT", old), "%s after the refused DELETE" % label)
            self.assertNoUpstream(mark, label)
        # A write that takes effect: an owner's XML PUT.
        t, result = held_write("PUT", self.xml(name), dict(OWNER, **{"Content-Type": "application/x-new"}), new, 200)
        for label, path in views:
            mark = self.mark()
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.x_cache), (200, "PASS"), "%s read during a PUT in flight" % label)
            if label != "metadata":
                self.assertEqual(r.body, old, "%s: upstream has not applied the PUT yet" % label)
            self.assertEqual(len(self.upstream_since(mark)), 1, label)
        r = self.get(self.media(name), dict(OWNER, Range="bytes=10-19"))
        self.assertEqual((r.status, r.x_cache, r.body), (206, "PASS", old[10:20]), "a Range read during the PUT")
        self.release()
        t.join(30)
        self.assertEqual(result["r"].status, 200, result["r"])
        self.emulator.clear_faults()
        for label, path in views[:2]:
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.body), (200, new), "%s right after the PUT" % label)
            self.assertEqual(r.header("content-type"), "application/x-new", label)
        self.assertEqual(json.loads(self.get(self.meta_path(name), OWNER).body)["size"], str(len(new)))
        self.settle()
        for label, path in views[:2]:
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.body), (200, new), "%s after the PUT, settled" % label)
        self.assertLogAgrees()


# ==========================================================================
# Item 3: one client's failure truncates no one; the fetch belongs to the cache
# ==========================================================================

class SharedFetchTest(TrustCase):

    def test_first_client_leaving_does_not_cut_follower(self):
        """Item 3 (a): the client whose miss started a fill disconnects after ~1 MiB; a follower with the
        same credentials, started while the fill runs, gets all 8 MiB, correct, clean; the fill runs to
        its end once (one upstream GET) and the object is then a HIT.

        Upstream is slowed (bandwidth) and its body held after the first chunk and a bit, until the
        leader has left and the follower has its response head, so the fill is in flight throughout.

        Fails on the old code: the fill belonged to the first client's request and was abandoned (and
        invalidated) when it left, so the follower got a 200 with Content-Length 8 MiB and 1 MiB of body
        ("the follower after its leader left": IncompleteRead, 7340056 more expected)."""
        name = self.name("leader.bin")
        size = 8 * MiB
        self.put_object(name, size=size, seed=31)
        path = self.media(name)
        expected = self.direct_sha(path)
        self.emulator.control("DELETE", "counters")
        self.emulator.faults(bandwidth_bps=4 * MiB, stall_ms=15000, stall_after_bytes=CHUNK + 100 * 1024,
                             match="/" + name)
        leader = self.reader(path, OWNER, first=MiB - 64 * 1024)
        self.assertTrue(leader.started.wait(30), "the first client got no bytes")
        self.assertEqual((leader.status, leader.x_cache), (200, "MISS"))
        self.assertTrue(harness.wait_until(lambda: self.faults_waiting() == 1, 30), "upstream never stalled")
        follower = self.reader(path, OWNER)
        self.assertTrue(follower.head_seen.wait(30), "the follower got no response head")
        leader.leave()
        leader.finish(self)
        self.release()  # the rest of the body comes at 4 MiB/s, with nobody but the follower reading
        follower.finish(self)
        self.record_reader(follower)
        self.assertTrue(leader.left)
        self.assertWhole(follower, expected, "the follower after its leader left")
        self.emulator.clear_faults()
        self.settle()
        counters = self.emulator.counters()
        media = [e for e in counters["log"] if e["kind"] == "media_get"]
        self.assertEqual(len(media), 1, "the fill should have run once, to its end: %r" % media)
        mark = self.mark()
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "HIT", expected))
        self.assertNoUpstream(mark)
        self.assertLogAgrees()

    def test_aborted_range_miss_keeps_committed_chunks(self):
        """Item 3 (b): a Range miss whose upstream response is reset keeps every chunk the object had (and
        those it committed) and invalidates nothing: a concurrent slow HIT reader of the first 16 chunks
        completes whole, and those chunks are still a HIT afterwards, with no upstream media request.

        Fails on the old code: the reset range fill invalidated the whole object, so the concurrent HIT
        reader of chunks 0-15 was cut ("the concurrent reader was cut": IncompleteRead, 11534072 more
        expected)."""
        name = self.name("ranges.bin")
        size = 24 * CHUNK
        self.put_object(name, size=size, seed=32)
        path = self.media(name)
        data = self.object_bytes(name)
        head_range = "bytes=0-%d" % (16 * CHUNK - 1)
        r = self.get(path, dict(OWNER, Range=head_range))
        self.assertEqual((r.status, r.error, r.x_cache), (206, None, "MISS"))
        self.assertEqual(r.body, data[:16 * CHUNK])
        self.settle()
        reader = self.reader(path, dict(OWNER, Range=head_range), first=256 * 1024)
        self.assertTrue(reader.started.wait(30))
        self.assertEqual((reader.status, reader.x_cache), (206, "HIT"))
        # A miss for the later chunks, cut by upstream half way into its first chunk (so the cut bites
        # however larder asks for them: one widened range or chunk by chunk).
        self.emulator.faults(reset_after_bytes=CHUNK // 2, match="/" + name, times=1)
        mark = self.mark()
        r = self.get(path, dict(OWNER, Range="bytes=%d-" % (16 * CHUNK)))
        if r.status == 206 and r.error is None:
            # larder completed it with a ranged retry of the rest: then it must be the exact bytes.
            self.assertEqual(r.body, data[16 * CHUNK:], "a completed range with wrong bytes")
        elif r.status == 206:
            self.assertLess(len(r.body), size - 16 * CHUNK, "a cut range as long as the whole")
        else:
            self.assertGcsJsonError(r.status, r.body, 502)
        up = self.media_requests(mark)
        self.assertTrue(any(e.get("aborted") for e in up), "the reset fault did not bite: %r" % up)
        self.emulator.clear_faults()
        self.settle()
        reader.go()
        reader.finish(self)
        self.record_reader(reader)
        self.assertEqual((reader.status, reader.error), (206, None), "the concurrent reader was cut")
        self.assertEqual(reader.digest, sha(data[:16 * CHUNK]), "the concurrent reader got wrong bytes")
        mark = self.mark()
        r = self.get(path, dict(OWNER, Range=head_range))
        self.assertEqual((r.status, r.error, r.x_cache), (206, None, "HIT"), "chunks 0-15 after the cut miss")
        self.assertEqual(r.body, data[:16 * CHUNK])
        self.assertNoUpstream(mark, "for chunks committed before the cut miss")
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.error, digest), (200, None, sha(data)))
        self.assertLogAgrees()

    def test_stall_longer_than_old_follower_patience(self):
        """Item 3 (c): upstream stalls 12 s mid-body (longer than the old fixed 10 s follower patience,
        shorter than upstream.idle_timeout_ms 20000): the leader and a follower both get the whole
        object, correct.

        Fails on the old code: the follower gave up on the next chunk after 10 s and its 200 was cut
        after 2 MiB ("the follower across a 12 s stall": IncompleteRead, 2097200 more expected), while the
        leader completed."""
        name = self.name("stall.bin")
        size = 4 * MiB
        self.put_object(name, size=size, seed=33)
        path = self.media(name)
        expected = self.direct_sha(path)
        self.emulator.faults(stall_ms=12000, stall_after_bytes=2 * CHUNK + 100, match="/" + name, times=1)
        leader = self.reader(path, OWNER)
        self.assertTrue(harness.wait_until(lambda: self.faults_waiting() == 1, 30), "upstream never stalled")
        follower = self.reader(path, OWNER)
        leader.finish(self)
        follower.finish(self)
        self.emulator.clear_faults()
        self.record_reader(leader)
        self.record_reader(follower)
        self.assertWhole(leader, expected, "the leader across a 12 s stall")
        self.assertWhole(follower, expected, "the follower across a 12 s stall")
        self.assertEqual(follower.x_cache, "HIT", "the follower should have followed the fill")
        self.assertLogAgrees()


class EvictionTest(TrustCase):
    larder_config = {"store": {"budget": "24MiB", "high_water_percent": 95, "low_water_percent": 85},
                     "cache": {"enabled": True, "default_policy": "immutable"}}

    def test_object_evicted_under_slow_reader(self):
        """Item 3 (d): a slow client reads a cached 16 MiB object while 18 MiB of other objects are filled
        through a 24 MiB budget; eviction runs, and the slow reader still gets every byte, correct.

        Fails on the old code: eviction removed the object being read (the least recently used), and
        the reader's 200 was cut when its next chunk had vanished, after 4 MiB ("the slow reader of an
        object pushed over the budget": IncompleteRead, 12583008 more expected)."""
        name = self.name("pinned.bin")
        self.put_object(name, size=16 * MiB, seed=41)
        path = self.media(name)
        expected = self.direct_sha(path)
        r, digest = self.read_sha(path)
        self.assertEqual((r.status, r.x_cache, digest), (200, "MISS", expected))
        self.settle()
        before = self.stats()["evicted_objects"]
        reader = self.reader(path, OWNER, first=256 * 1024)
        self.assertTrue(reader.started.wait(30))
        self.assertEqual(reader.x_cache, "HIT")
        for i in range(3):
            other = self.name("other-%d.bin" % i)
            self.put_object(other, size=6 * MiB, seed=42 + i)
            want = self.direct_sha(self.media(other))
            r, digest = self.read_sha(self.media(other))
            self.assertEqual((r.status, r.error, digest), (200, None, want), other)
            self.settle()
        stats = self.settle()
        self.assertGreater(stats["evicted_objects"], before, "nothing was evicted: the budget did not bite %r" % stats)
        reader.go()
        reader.finish(self)
        self.record_reader(reader)
        self.assertWhole(reader, expected, "the slow reader of an object pushed over the budget")
        self.assertLogAgrees()


# ==========================================================================
# Item 4: a full disk
# ==========================================================================

class PrivateTmpfs:
    """A tmpfs of `size` mounted on `path` in a private mount namespace, held by a sleeping process.

    Commands run inside the namespace through self.enter (an nsenter prefix);
    harness.Larder takes it as its wrapper. Raises unittest.SkipTest when
    neither unshare -m (root) nor unshare -rm (a user namespace) can mount.
    """

    def __init__(self, path, size):
        self.path = path
        self.proc = None
        script = 'mount -t tmpfs -o size=%s tmpfs "$0" && echo mounted && exec sleep 100000' % size
        errors = []
        for flags, enter_flags in ((["-m"], ["-m"]), (["-r", "-m"], ["-U", "-m", "--preserve-credentials"])):
            if shutil.which("unshare") is None or shutil.which("nsenter") is None:
                errors.append("unshare/nsenter not installed")
                break
            proc = subprocess.Popen(["unshare"] + flags + ["--propagation", "private", "sh", "-c", script, path],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = proc.stdout.readline()
            if line.strip() == b"mounted":
                self.proc = proc
                self.enter = ["nsenter", "-t", str(proc.pid)] + enter_flags + ["--"]
                return
            proc.wait(10)
            errors.append("unshare %s: %s" % (" ".join(flags), proc.stderr.read().decode(errors="replace").strip()))
        raise unittest.SkipTest("no private tmpfs for the store: " + "; ".join(errors))

    def run(self, *cmd):
        return subprocess.run(self.enter + list(cmd), capture_output=True, timeout=60)

    def fill_up(self):
        """Allocates every page the store's files have (so LMDB's maps never fault), then fills the rest."""
        for f in ("lock.mdb", "data.mdb"):
            target = os.path.join(self.path, f)
            self.run("sh", "-c", 'test -e "$0" && fallocate -l "$(stat -c %s "$0")" "$0"', target)
        self.run("sh", "-c", 'dd if=/dev/zero of="$0/filler" bs=64k 2>/dev/null; sync', self.path)
        return self.free_bytes()

    def free_bytes(self):
        out = self.run("df", "-B1", "--output=avail", self.path).stdout.decode().split()
        return int(out[-1])

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()
            self.proc.stderr.close()


SPACE_WORDS = re.compile(r"space|ENOSPC", re.I)


class DiskFullTest(TrustCase):
    """larder with its store on a real 24 MiB tmpfs and a 200 MiB budget."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="larder-it-")
        cls.ca = harness.TestCA(cls.workdir)
        cls.emulator = harness.Emulator(cls.workdir)
        cls.larder = None

    @classmethod
    def tearDownClass(cls):
        cls.emulator.stop()
        if os.environ.get("LARDER_KEEP_WORKDIR") is None:
            shutil.rmtree(cls.workdir, ignore_errors=True)

    def start_larder(self, tmpfs, label):
        workdir = os.path.join(self.workdir, label)
        os.makedirs(workdir, exist_ok=True)
        config = {"cache": {"enabled": True, "default_policy": "immutable"},
                  "store": {"path": tmpfs.path, "budget": "200MiB"}}
        return harness.Larder(workdir, self.emulator.base_url, self.ca, config=config, wrapper=tmpfs.enter)

    def make_tmpfs(self, label):
        path = os.path.join(self.workdir, label + "-store")
        os.makedirs(path, exist_ok=True)
        tmpfs = PrivateTmpfs(path, "24m")
        self.addCleanup(tmpfs.close)
        return tmpfs

    def use_larder(self, larder):
        self.larder = larder
        self.addCleanup(larder.stop)

    def space_lines(self, larder):
        return [line for line in larder.read_log().splitlines()
                if '"component":"access"' not in line and SPACE_WORDS.search(line)]

    def objects(self, count, size, seed):
        names = []
        for i in range(count):
            name = self.name("o%d-%d.bin" % (seed, i))
            self.put_object(name, size=size, seed=seed + i)
            names.append((name, self.direct_sha(self.media(name))))
        return names

    def test_disk_fills_up_mid_run(self):
        """Item 4: eight distinct 8 MiB objects (64 MiB) through a store on a 24 MiB tmpfs with a 200 MiB
        budget, each read twice (then four at once): every answer is a whole, correct 200; larder logs
        running out of space at most twice in all; it still answers afterwards.

        Fails on the old code: commits failed but the fills reported success, so the second read of the
        third object (the first that did not fit) was a "HIT" cut short: "(200, IncompleteRead(0 bytes
        read, 8388608 more expected)" (nothing sent; in another run 3 of the 8 MiB)."""
        tmpfs = self.make_tmpfs("fills")
        self.use_larder(self.start_larder(tmpfs, "fills"))
        objects = self.objects(8, 8 * MiB, 51)
        for name, expected in objects:
            for attempt in range(2):
                r, digest = self.read_sha(self.media(name))
                self.assertEqual((r.status, r.error, digest), (200, None, expected),
                                 "%s read %d (X-Cache %s)" % (name, attempt + 1, r.x_cache))
        self.assertLess(tmpfs.free_bytes(), 4 * MiB, "the tmpfs never filled up: the test tests nothing")

        def read(item):
            name, expected = item
            digest = hashlib.sha256()
            r = tc.http_request(self.larder.port, "GET", self.media(name), OWNER, sink=digest.update, timeout=120)
            return name, r.status, r.error, r.x_cache, digest.hexdigest(), expected

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(read, objects[4:] + objects[:4]))
        for name, status, error, x_cache, digest, expected in results:
            self.assertEqual((status, error, digest), (200, None, expected), "%s concurrently (X-Cache %s)"
                             % (name, x_cache))
        lines = self.space_lines(self.larder)
        self.assertLessEqual(len(lines), 2, "out of space logged per request:\n" + "\n".join(lines[:10]))
        self.assertEqual(self.larder.request("GET", "/_larder/healthz")[0], 200)
        name, expected = objects[0]
        r, digest = self.read_sha(self.media(name))
        self.assertEqual((r.status, r.error, digest), (200, None, expected), "after it all")
        self.assertLogAgrees()

    def test_disk_full_before_start(self):
        """Item 4, second variant: the tmpfs is full (a filler file) when larder starts, so nothing can be
        committed at all: every read is whole, correct, and labelled MISS, never HIT.

        The store is created by a first larder on the empty tmpfs, which is stopped before the disk is
        filled: on a tmpfs with no page left, LMDB's mmap of its lock file faults (SIGBUS) before larder
        could do anything about it (the old binary died so; see the report).

        Fails on the old code: every read was correct and a MISS (each read after the first of an object
        waited for the previous fill to commit, for up to 5 s, then went upstream), but the store logged
        "a batch of writes was lost: No space left on device" about once a second the whole time: 36
        lines over the 12 reads of a 30 s run ("36 not less than or equal to 2")."""
        tmpfs = self.make_tmpfs("full")
        first = self.start_larder(tmpfs, "create")
        first.stop()
        free = tmpfs.fill_up()
        self.assertLess(free, 64 * 1024, "the tmpfs is not full")
        self.use_larder(self.start_larder(tmpfs, "full"))
        for name, expected in self.objects(2, 4 * MiB, 61) + self.objects(1, 100000, 71):
            for attempt in range(2):
                for path in (self.media(name), self.xml(name)):
                    # A read that arrives while the previous fill's chunks are still being committed (or
                    # lost) is served from that fill's memory, as any read right after a fill is (item 12);
                    # once the store has said what became of them, nothing may come from the cache.
                    self.settle()
                    r, digest = self.read_sha(path)
                    what = "%s read %d (X-Cache %s)" % (path, attempt + 1, r.x_cache)
                    self.assertEqual((r.status, r.error, digest), (200, None, expected), what)
                    self.assertEqual(r.x_cache, "MISS", what)
        lines = self.space_lines(self.larder)
        self.assertLessEqual(len(lines), 2, "out of space logged per request:\n" + "\n".join(lines[:10]))
        self.assertEqual(self.larder.request("GET", "/_larder/healthz")[0], 200)
        self.assertLogAgrees()

    def test_disk_full_before_the_store_exists(self):
        """A disk with no room at all, and no store on it yet: larder starts anyway, says once that it
        cannot open the store, and serves as a pass-through proxy (every read whole and correct,
        X-Cache PASS, /_larder/stats says caching is off).

        Fails on the old code: LMDB's first write into the mapping of its new lock file found no page
        behind it, and larder died of SIGBUS while starting ("larder exited with -7")."""
        tmpfs = self.make_tmpfs("nostore")
        self.assertLess(tmpfs.fill_up(), 64 * 1024, "the tmpfs is not full")
        self.use_larder(self.start_larder(tmpfs, "nostore"))
        for name, expected in self.objects(2, 2 * MiB, 91):
            for attempt in range(2):
                for path in (self.media(name), self.xml(name)):
                    r, digest = self.read_sha(path)
                    what = "%s read %d" % (path, attempt + 1)
                    self.assertEqual((r.status, r.error, digest, r.x_cache), (200, None, expected, "PASS"), what)
        lines = [line for line in self.larder.read_log().splitlines() if "no space to open the store" in line]
        self.assertEqual(len(lines), 1, self.larder.read_log()[-3000:])
        self.assertFalse(self.stats()["cache_enabled"])
        self.assertLogAgrees()

    def rss_kib(self, larder):
        with open("/proc/%d/status" % larder.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def test_buffer_memory_is_bounded_on_a_full_disk(self):
        """max_buffer_memory bounds what fills hold for their readers. With nothing committable, a fill's
        chunks stay in memory until its readers have read them; four fills of 48 MiB objects whose
        readers stop after 1 MiB would hold 192 MiB. With max_buffer_memory 16MiB the fills pause
        instead, larder's RSS grows by no more than the bound plus slack, and every reader still gets
        every byte once it reads on. (RSS is not judged under the sanitizers, whose quarantine keeps
        freed memory.) With the bound lifted (max_buffer_memory 4GiB) the RSS assertion fails: the
        bound, not luck, is what holds memory down."""
        tmpfs = self.make_tmpfs("membound")
        first = self.start_larder(tmpfs, "membound-create")
        first.stop()
        tmpfs.fill_up()
        workdir = os.path.join(self.workdir, "membound")
        os.makedirs(workdir, exist_ok=True)
        config = {"cache": {"enabled": True, "default_policy": "immutable"},
                  "store": {"path": tmpfs.path, "budget": "200MiB"}, "max_buffer_memory": "16MiB"}
        self.use_larder(harness.Larder(workdir, self.emulator.base_url, self.ca, config=config, wrapper=tmpfs.enter))
        objects = self.objects(4, 48 * MiB, 81)
        baseline = self.rss_kib(self.larder)
        readers = [self.reader(self.media(name), first=MiB) for name, _ in objects]
        for r in readers:
            self.assertTrue(r.started.wait(60), "a reader got no first MiB")
        # Let the fills run as far as they may: they either paused for memory or hold everything.
        peak, deadline = 0, time.monotonic() + 3
        while time.monotonic() < deadline:
            peak = max(peak, self.rss_kib(self.larder))
            time.sleep(0.05)
        for r in readers:
            r.go()
        for r, (name, expected) in zip(readers, objects):
            r.finish(self)
            self.record_reader(r)
            self.assertEqual((r.status, r.error, r.digest), (200, None, expected), name)
        growth_mib = (peak - baseline) / 1024
        print("\nRSS %d MiB before, %d MiB at the peak with 4 stalled readers of 48 MiB fills"
              % (baseline // 1024, peak // 1024), flush=True)
        if os.environ.get("LARDER_SANITIZE") != "ON":
            self.assertLess(growth_mib, 16 + 4 * 0.5 + 24, "fills held %.0f MiB beyond the bound" % growth_mib)
        self.assertLogAgrees()

# ==========================================================================
# Item 5: batch writes invalidate, part by part
# ==========================================================================

def batch_body(boundary, parts):
    """A multipart/mixed batch of application/http parts, as gsutil (apitools) and the SDKs send it."""
    out = []
    for i, (method, target, payload) in enumerate(parts):
        inner = "%s %s HTTP/1.1\r\n" % (method, target)
        if payload is not None:
            data = json.dumps(payload)
            inner += "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
        else:
            inner += "\r\n"
        out.append("--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                   "Content-ID: <part+%d>\r\n\r\n%s\r\n" % (boundary, i, inner))
    out.append("--%s--\r\n" % boundary)
    return "".join(out).encode()


def batch_statuses(resp):
    text = resp.body.decode("latin-1")
    return [int(line.split()[1]) for line in text.split("\r\n") if line.startswith("HTTP/1.1 ")]


class BatchTest(TrustCase):

    def test_batch_writes_invalidate_per_part(self):
        """Item 5: a /batch/storage/v1 request through larder: a DELETE part and a PATCH part (new
        contentType) that succeed invalidate their objects (the next reads are upstream's 404 and the new
        Content-Type); a DELETE of a missing object (404) and a DELETE refused by its precondition (412)
        change nothing for the other cached objects, which stay HITs without upstream.

        Fails on the old code: the batch went through untouched by the cache, so the next read of the
        deleted object was a HIT with the deleted bytes ("200 != 404 : read after a batch DELETE")."""
        names = {k: self.name(k + ".bin") for k in ("del", "pat", "keep", "guard")}
        data = {}
        for key, name in names.items():
            data[key] = os.urandom(50000)
            self.put_object(name, data[key], content_type="text/old")
            for path in (self.media(name), self.xml(name)):
                r = self.get(path, OWNER)
                self.assertEqual((r.status, r.x_cache), (200, "MISS"), (key, path))
        self.settle()
        for key, name in names.items():
            for path in (self.media(name), self.xml(name)):
                self.assertEqual(self.get(path, OWNER).x_cache, "HIT", (key, path))
        q = harness.quote_object
        b = self.bucket
        parts = [
            ("DELETE", "/storage/v1/b/%s/o/%s" % (b, q(names["del"])), None),
            # An absolute target, as the Python client writes it (the client takes larder for GCS).
            ("PATCH", "%s/storage/v1/b/%s/o/%s" % (self.larder.url, b, q(names["pat"])), {"contentType": "text/new"}),
            ("DELETE", "/storage/v1/b/%s/o/%s" % (b, q(self.name("missing.bin"))), None),
            ("DELETE", "/storage/v1/b/%s/o/%s?ifGenerationMatch=1" % (b, q(names["guard"])), None),
        ]
        boundary = "batch_trust_boundary"
        r = self.get("/batch/storage/v1", dict(OWNER, **{"Content-Type": "multipart/mixed; boundary=" + boundary}),
                     method="POST", body=batch_body(boundary, parts))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(batch_statuses(r), [204, 200, 404, 412], r.body[:2000])
        # The deleted object: upstream's 404, on both APIs.
        for path in (self.media(names["del"]), self.xml(names["del"])):
            want = self.direct(path, OWNER)
            got = self.get(path, OWNER)
            self.assertEqual(want.status, 404)
            self.assertSameAnswer(got, want, "read after a batch DELETE: %s" % path)
            self.assertNotEqual(got.x_cache, "HIT", path)
        # The patched object: the same bytes, under the new Content-Type.
        for path in (self.media(names["pat"]), self.xml(names["pat"])):
            want = self.direct(path, OWNER)
            got = self.get(path, OWNER)
            self.assertEqual((got.status, got.body), (200, data["pat"]), path)
            self.assertEqual(got.header("content-type"), "text/new", "read after a batch PATCH: %s" % path)
            self.assertEqual(got.header("x-goog-metageneration"), "2", path)
            self.assertSameAnswer(got, want, "read after a batch PATCH: %s" % path)
        # Failed parts and untouched objects: nothing changed.
        for key in ("keep", "guard"):
            for path in (self.media(names[key]), self.xml(names[key])):
                mark = self.mark()
                got = self.get(path, OWNER)
                self.assertEqual((got.status, got.x_cache, got.body), (200, "HIT", data[key]), (key, path))
                self.assertNoUpstream(mark, (key, path))
        self.assertLogAgrees()


# ==========================================================================
# Item 6: a 304 updates what it says
# ==========================================================================

class RevalidationHeadersTest(TrustCase):

    def test_metadata_change_refreshes_headers(self):
        """Item 6: under "always", after a metadata PATCH upstream (Content-Type, Cache-Control,
        x-goog-meta-*, metageneration 1 -> 2; the bytes and the XML ETag, their MD5, unchanged), the next
        JSON and XML reads carry the new headers with the same bytes, as upstream now answers them; the
        entry's headers are updated, so the read after that is a REVALIDATED (one 304) with them too.

        Fails on the old code: the XML revalidation got a 304 (same MD5 ETag) and larder served the
        headers it had stored ("'text/old' != 'text/new' : xml, first read after the PATCH"; its
        x-goog-meta-k and x-goog-metageneration were the old ones too). The JSON read passed: the JSON
        ETag changes with the metageneration, so upstream answered 200."""
        self.emulator.create_bucket(ALWAYS_BUCKET)
        name = self.name("meta.bin")
        data = os.urandom(300000)
        self.put_object(name, data, bucket=ALWAYS_BUCKET, content_type="text/old", metadata={"k": "old", "gone": "x"})
        paths = [("json", self.media(name, ALWAYS_BUCKET)), ("xml", self.xml(name, ALWAYS_BUCKET))]
        for label, path in paths:
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.x_cache, r.body), (200, "MISS", data), label)
        self.settle()
        for label, path in paths:
            r = self.get(path, OWNER)
            self.assertEqual((r.x_cache, r.header("content-type")), ("REVALIDATED", "text/old"), label)
        xml_etag = self.direct(self.xml(name, ALWAYS_BUCKET), OWNER).header("etag")
        self.emulator.control("PATCH", "objects", {"bucket": ALWAYS_BUCKET, "name": name, "content_type": "text/new",
                                                   "cache_control": "public, max-age=77",
                                                   "metadata": {"k": "new", "gone": None, "added": "yes"}})
        self.assertEqual(self.direct(self.xml(name, ALWAYS_BUCKET), OWNER).header("etag"), xml_etag)

        def metas(resp):
            return {k: v for k, v in resp.headers if k.startswith("x-goog-meta-")}

        for round_ in ("first read after the PATCH", "second read after the PATCH"):
            for label, path in paths:
                want = self.direct(path, OWNER)
                self.assertEqual(want.header("content-type"), "text/new")
                mark = self.mark()
                r = self.get(path, OWNER)
                what = "%s, %s" % (label, round_)
                self.assertEqual((r.status, r.error, r.body), (200, None, data), what)
                self.assertEqual(r.header("content-type"), "text/new", what)
                self.assertEqual(r.header("x-goog-metageneration"), "2", what)
                self.assertEqual(r.header("cache-control"), "public, max-age=77", what)
                self.assertEqual(metas(r), metas(want), what)
                self.assertSameAnswer(r, want, what)
                if round_.startswith("first"):
                    self.assertIn(r.x_cache, ("REVALIDATED", "MISS"), what)
                else:
                    self.assertEqual(r.x_cache, "REVALIDATED", what)
                    up = self.upstream_since(mark)
                    self.assertEqual([(e["status"], e["bytes"]) for e in up], [(304, 0)], (what, up))
            self.settle()
        self.assertEqual(metas(self.direct(self.xml(name, ALWAYS_BUCKET), OWNER)),
                         {"x-goog-meta-k": "new", "x-goog-meta-added": "yes"})
        self.assertLogAgrees()


    def test_metadata_change_one_api_saw_does_not_leave_the_others_view_stale(self):
        """After a metadata PATCH, the JSON read refills the entry (its ETag changed, so upstream sent the new
        metageneration's bytes and headers); once that refill has committed, an XML read must not be served
        the XML headers filled before the PATCH.

        Fails on the old code (59bfbd8): the refill merged the old XML view into the new entry, the XML
        revalidation's 304 then reported the metageneration the entry already had, and the client got
        Content-Type text/old. test_metadata_change_refreshes_headers hit it only when the machine was busy
        enough for the refill to commit between its two reads; here the test waits for the commit."""
        self.emulator.create_bucket(ALWAYS_BUCKET)
        name = self.name("views.bin")
        data = os.urandom(200000)
        self.put_object(name, data, bucket=ALWAYS_BUCKET, content_type="text/old")
        json_path, xml_path = self.media(name, ALWAYS_BUCKET), self.xml(name, ALWAYS_BUCKET)
        for path in (json_path, xml_path):
            self.assertEqual(self.get(path, OWNER).x_cache, "MISS")
        self.settle()
        self.emulator.control("PATCH", "objects", {"bucket": ALWAYS_BUCKET, "name": name, "content_type": "text/new"})
        r = self.get(json_path, OWNER)
        self.assertEqual((r.x_cache, r.header("content-type")), ("MISS", "text/new"))
        self.settle()  # the refill has committed: the XML read finds it, not the entry from before the PATCH
        r = self.get(xml_path, OWNER)
        self.assertEqual((r.status, r.body), (200, data))
        self.assertEqual(r.header("content-type"), "text/new", "XML headers from before the PATCH: " + r.x_cache)
        self.assertEqual(r.header("x-goog-metageneration"), "2")
        self.assertLogAgrees()


# ==========================================================================
# Item 8: If-Range, on hits and on misses
# ==========================================================================

class IfRangeTest(TrustCase):
    RANGE = "bytes=100-199"

    def date_shift(self, value, seconds):
        return email.utils.formatdate(email.utils.parsedate_to_datetime(value).timestamp() + seconds, usegmt=True)

    def cases(self, etag, modified):
        """(label, If-Range value, expected status) for one object and one API's ETag."""
        return [("current ETag", etag, 206), ("other ETag", '"nope"', 200), ("weak current ETag", "W/" + etag, 200),
                ("Last-Modified", modified, 206), ("an hour earlier", self.date_shift(modified, -3600), 200),
                ("a second later", self.date_shift(modified, 1), 200)]

    def check(self, path, if_range, expect, data, what):
        """Returns larder's answer and the emulator log mark taken just before it."""
        headers = dict(OWNER, Range=self.RANGE, **{"If-Range": if_range})
        want = self.direct(path, headers)
        self.assertEqual(want.status, expect, "%s: the emulator disagrees with the test" % what)
        mark = self.mark()
        r = self.get(path, headers)
        self.assertEqual(r.status, expect, "%s: If-Range %s (X-Cache %s, %r)" % (what, if_range, r.x_cache,
                                                                                r.header("content-range")))
        self.assertEqual(sha(r.body), sha(data[100:200] if expect == 206 else data),
                         "%s: %d bytes, not the expected ones" % (what, len(r.body)))
        self.assertSameAnswer(r, want, what)
        return r, mark

    def test_if_range_on_hits(self):
        """Item 8, hits: with the object cached (immutable), Range bytes=100-199 with If-Range equal to the
        ETag larder returned for that API, or to Last-Modified, is a 206 of those bytes; with another
        tag, a weak tag or another date it is a 200 of the whole object; all from the cache.

        Fails on the old code: If-Range was ignored on hits, so a non-matching If-Range still got the
        206 of bytes 100-199 ("206 != 200 : json hit, If-Range other ETag"). (The matching cases passed.)"""
        name = self.name("hit.bin")
        data = os.urandom(2 * CHUNK + 1000)
        self.put_object(name, data)
        apis = [("json", self.media(name)), ("xml", self.xml(name))]
        for api, path in apis:
            r = self.get(path, OWNER)
            self.assertEqual((r.status, r.x_cache), (200, "MISS"), api)
        self.settle()
        for api, path in apis:
            ref = self.get(path, OWNER)
            self.assertEqual(ref.x_cache, "HIT", api)
            for label, value, expect in self.cases(ref.header("etag"), ref.header("last-modified")):
                what = "%s hit, If-Range %s" % (api, label)
                with self.subTest(what):
                    r, mark = self.check(path, value, expect, data, what)
                    self.assertEqual(r.x_cache, "HIT", what)
                    self.assertNoUpstream(mark, what)
        self.assertLogAgrees()

    def test_if_range_on_misses(self):
        """Item 8, misses: the same cases with the object not cached yet (each case its own object), and
        after an overwrite upstream the old ETag: a 206 of bytes 100-199 only when the validator matches
        the current object, else a 200 of the whole current object; larder's cache stays correct.

        Fails on the old code: on a miss larder widened the Range and passed If-Range on; upstream
        ignored the Range for the failed If-Range and sent the whole object, and larder cut the client's
        window out of it: a 200 carrying only bytes 100-199 ("100 bytes, not the expected ones") where
        the whole object was expected. (The matching cases passed.)"""
        n = 0
        for api in ("json", "xml"):
            probes = []
            for case in range(6):
                name = self.name("%s-%d.bin" % (api, case))
                data = os.urandom(2 * CHUNK + 1000)
                self.put_object(name, data)
                path = self.media(name) if api == "json" else self.xml(name)
                ref = self.direct(path, OWNER)
                label, value, expect = self.cases(ref.header("etag"), ref.header("last-modified"))[case]
                probes.append((name, path, "%s miss, If-Range %s" % (api, label), value, expect, data))
            # The ETag of a version that is gone: overwritten behind larder's back.
            name = self.name("%s-stale.bin" % api)
            self.put_object(name, os.urandom(CHUNK))
            path = self.media(name) if api == "json" else self.xml(name)
            stale = self.direct(path, OWNER).header("etag")
            data = os.urandom(2 * CHUNK + 1000)
            self.put_object(name, data)
            probes.append((name, path, "%s miss, If-Range the overwritten ETag" % api, stale, 200, data))
            for name, path, what, value, expect, data in probes:
                with self.subTest(what):
                    n += 1
                    r, _ = self.check(path, value, expect, data, what)
                    self.assertNotEqual(r.x_cache, "HIT", what)
            self.settle()
            for name, path, what, value, expect, data in probes:
                r, digest = self.read_sha(path)
                self.assertEqual((r.status, r.error, digest), (200, None, sha(data)), "plain read after: " + what)
        self.assertEqual(n, 14)
        self.assertLogAgrees()


# ==========================================================================
# Item 10: an upstream that sends no ETag, and bodies without Content-Length
# ==========================================================================

class NoEtagTest(TrustCase):
    VARIANTS = [("no ETag, no length", {"media_etag": False, "media_content_length": False}),
                ("no ETag", {"media_etag": False}),
                ("no length", {"media_content_length": False})]

    def quirky_bucket(self, suffix, quirks):
        bucket = "%s-%s" % (self.bucket[:40], suffix)
        self.emulator.create_bucket(bucket)
        self.emulator.control("POST", "quirks", dict(quirks, bucket=bucket))
        return bucket

    def test_no_etag_cached_under_immutable(self):
        """Item 10, immutable: with media that carry x-goog-generation but no ETag and/or no Content-Length
        (emulator quirks, for this test's buckets only), 10 reads of each API are 1 MISS and 9 HITs with
        no upstream media request after the first, the bytes correct.

        Fails on the old code: nothing was cached without an ETag (or without a Content-Length): every
        read was a MISS, each a full upstream GET ("['MISS', 'MISS', ...] != ['MISS', 'HIT', ...] : no
        ETag, no length, json")."""
        for i, (label, quirks) in enumerate(self.VARIANTS):
            bucket = self.quirky_bucket("q%d" % i, quirks)
            name = self.name("%d.bin" % i)
            self.put_object(name, size=2 * CHUNK + 12345, seed=81 + i, bucket=bucket)
            for api in ("json", "xml"):
                path = self.media(name, bucket) if api == "json" else self.xml(name, bucket)
                want = self.direct(path, OWNER)
                self.assertEqual(want.header("etag") is None, "media_etag" in quirks, want.headers)
                self.assertEqual(want.header("content-length") is None, "media_content_length" in quirks)
                expected = sha(want.body)
                mark = self.mark()
                states = []
                for attempt in range(10):
                    r, digest = self.read_sha(path)
                    what = "%s, %s, read %d" % (label, api, attempt + 1)
                    self.assertEqual((r.status, r.error, digest), (200, None, expected), what)
                    self.assertEqual(r.header("x-goog-generation"), want.header("x-goog-generation"), what)
                    self.assertEqual(r.header("content-type"), want.header("content-type"), what)
                    states.append(r.x_cache)
                    if attempt == 0:
                        self.settle()
                self.assertEqual(states, ["MISS"] + ["HIT"] * 9, "%s, %s" % (label, api))
                self.assertEqual(len(self.media_requests(mark)), 1, "%s, %s" % (label, api))
        self.assertLogAgrees()

    def test_follower_of_a_fill_without_a_length_gets_a_whole_chunked_body(self):
        """A reader that joins a fill whose length is unknown gets a chunked HTTP/1.1 body; the chunks the
        fill already committed come to it from the store. Hits with a length send body bytes straight from
        the store's map to the socket (read.c send_direct), which would skip h2o's chunk framing: this
        reader must get a well-formed chunked body with the object's bytes. The second reader starts once
        the first has read half the object through a throttled upstream, so the fill is still running.

        Fails on a send_direct allowed without a Content-Length (checked by hand: the client reports a
        malformed chunked body)."""
        bucket = self.quirky_bucket("chunked", {"media_content_length": False})
        name = self.name("follow.bin")
        size = 3 * CHUNK + 777
        self.put_object(name, size=size, seed=97, bucket=bucket)
        expected = sha(self.direct(self.media(name, bucket), OWNER).body)
        self.emulator.faults(bandwidth_bps=1 * MiB, match="/" + name)
        self.addCleanup(self.emulator.clear_faults)
        leader = http.client.HTTPConnection("127.0.0.1", self.larder.port, timeout=60)
        leader.request("GET", self.media(name, bucket), headers=OWNER)
        first = leader.getresponse()
        self.assertIsNone(first.getheader("content-length"))
        head = first.read(CHUNK + CHUNK // 2)
        follower = {}

        def follow():
            follower["r"], follower["sha"] = self.read_sha(self.media(name, bucket))

        t = threading.Thread(target=follow)
        t.start()
        rest = first.read()
        leader.close()
        t.join(60)
        self.assertEqual(sha(head + rest), expected, "the leader's body")
        r = follower["r"]
        self.assertEqual((r.status, r.error, follower["sha"]), (200, None, expected), "the follower (X-Cache %s)"
                         % r.x_cache)
        self.assertIsNone(r.header("content-length"), "the follower came after the fill: the test tests nothing")
        self.assertLogAgrees()

    def test_no_etag_revalidated_by_generation_under_always(self):
        """Item 10, always: with media that carry no ETag (and no Content-Length), reads after the first
        are REVALIDATED, each with exactly one conditional upstream request (the caller's identity)
        answered 304, and no media bytes sent again; an overwrite upstream is then seen (new bytes), and
        revalidated in turn.

        Fails on the old code: nothing was cached without an ETag, so the second read was a MISS with
        the whole object sent again ("'MISS' != 'REVALIDATED' : no ETag, no length, json, revalidation
        1")."""
        self.emulator.create_bucket(ALWAYS_BUCKET)
        for i, (label, quirks) in enumerate(self.VARIANTS[:2]):
            self.emulator.control("POST", "quirks", dict(quirks, bucket=ALWAYS_BUCKET))
            for api in ("json", "xml"):
                name = self.name("%d-%s.bin" % (i, api))
                self.put_object(name, size=CHUNK + 5000, seed=91 + i, bucket=ALWAYS_BUCKET)
                path = self.media(name, ALWAYS_BUCKET) if api == "json" else self.xml(name, ALWAYS_BUCKET)
                want = self.direct(path, OWNER)
                self.assertIsNone(want.header("etag"))
                r, digest = self.read_sha(path)
                self.assertEqual((r.status, r.error, r.x_cache, digest), (200, None, "MISS", sha(want.body)))
                self.settle()
                for attempt in range(3):
                    what = "%s, %s, revalidation %d" % (label, api, attempt + 1)
                    sent = self.emulator.counters()["media_bytes_sent"]
                    mark = self.mark()
                    r, digest = self.read_sha(path)
                    self.assertEqual((r.status, r.error, digest), (200, None, sha(want.body)), what)
                    self.assertEqual(r.x_cache, "REVALIDATED", what)
                    up = self.upstream_since(mark)
                    self.assertEqual([(e["status"], e["identity"], e["bytes"]) for e in up], [(304, OWNER_EMAIL, 0)],
                                     "%s: %r" % (what, up))
                    self.assertEqual(self.emulator.counters()["media_bytes_sent"], sent, what)
                # Overwritten upstream: the next read has the new bytes, and is then revalidated in turn.
                self.put_object(name, size=CHUNK + 7000, seed=99 + i, bucket=ALWAYS_BUCKET)
                new = self.direct(path, OWNER)
                r, digest = self.read_sha(path)
                self.assertEqual((r.status, r.error, digest), (200, None, sha(new.body)),
                                 "%s, %s: overwrite" % (label, api))
                self.assertNotIn(r.x_cache, ("HIT", "REVALIDATED"), "%s, %s: overwrite" % (label, api))
                self.settle()
                mark = self.mark()
                r, digest = self.read_sha(path)
                self.assertEqual((r.status, r.x_cache, digest), (200, "REVALIDATED", sha(new.body)))
                self.assertEqual([e["status"] for e in self.upstream_since(mark)], [304])
        self.assertLogAgrees()


# ==========================================================================
# Item 12: reads right after (or during) a fill follow their policy
# ==========================================================================

class AfterFillTest(TrustCase):
    """A fill is kept in flight in two ways, each released by the test when it is ready:
      "head": upstream has answered the fill's request (so its bytes are the object as it was then) but
              its response head is held: nothing of the fill is in the store yet;
      "body": the head and two chunks went out, the rest of the body is stalled.
    """

    PHASES = ("head", "body")

    def start_held_fill(self, phase, name, bucket, size, seed):
        """Puts the object, then starts a first read whose upstream answer is held as `phase` says;
        returns (reader, sha of the object). The emulator's counters start afresh just before."""
        self.put_object(name, size=size, seed=seed, bucket=bucket)
        path = self.media(name, bucket)
        expected = self.direct_sha(path)
        self.emulator.control("DELETE", "counters")  # from here on, only larder's requests
        if phase == "head":
            self.emulator.faults(hold_response_ms=15000, match="/" + name, times=1)
        else:
            self.emulator.faults(stall_ms=15000, stall_after_bytes=2 * CHUNK, match="/" + name, times=1)
        first = self.reader(path, OWNER)
        self.assertTrue(harness.wait_until(lambda: self.faults_waiting() == 1, 30),
                        "the fill was never held (%s)" % phase)
        return first, expected

    def test_always_read_during_fill_sees_overwrite(self):
        """Item 12, always, object changed: while a fill is in flight (its upstream answer held: before its
        head, then mid-body), the object is overwritten upstream; a second read must return the NEW bytes
        (it revalidates), while the first completes with the old ones.

        Fails on the old code: with the fill's head held (nothing committed yet), the second read followed
        the fill without asking upstream and returned the old bytes labelled HIT ("wrong bytes in a clean
        200"). (With the body stalled, the fill's record was committed and the old code revalidated.)"""
        self.emulator.create_bucket(ALWAYS_BUCKET)
        for phase in self.PHASES:
            name = self.name("chg-%s.bin" % phase)
            first, old_sha = self.start_held_fill(phase, name, ALWAYS_BUCKET, 8 * MiB, 101)
            self.put_object(name, size=3 * MiB, seed=102, bucket=ALWAYS_BUCKET)
            path = self.media(name, ALWAYS_BUCKET)
            new_sha = self.direct_sha(path)
            second = self.reader(path, OWNER)
            second.join(5)  # whether it needs the fill's head first is its business: release it either way
            self.release()
            second.finish(self)
            first.finish(self)
            self.emulator.clear_faults()
            self.record_reader(first)
            self.record_reader(second)
            self.assertWhole(second, new_sha, "%s: the second read, after the overwrite" % phase)
            self.assertNotIn(second.x_cache, ("HIT", "REVALIDATED"), "%s: new bytes cannot come from the cache"
                             % phase)
            # The first read asked before the overwrite and upstream answered it then: a newer version found
            # by another reader is no reason to cut it.
            self.assertWhole(first, old_sha, "%s: the first read (the object as it was when it started)" % phase)
            self.settle()
            r, digest = self.read_sha(path)
            self.assertEqual((r.status, r.error, digest), (200, None, new_sha), phase)
        self.assertLogAgrees()

    def test_always_read_during_fill_revalidates_once(self):
        """Item 12, always, object unchanged: a second read during the fill (its upstream answer held:
        before its head, then mid-body) asks upstream exactly once, conditionally (a 304 with no media
        bytes, with the caller's identity), and is served the fill's bytes, labelled REVALIDATED; the
        object's body went upstream exactly once in all.

        Fails on the old code: with the fill's head held, the second read followed the fill without
        asking upstream at all (no conditional request; X-Cache HIT)."""
        self.emulator.create_bucket(ALWAYS_BUCKET)
        size = 8 * MiB
        for phase in self.PHASES:
            name = self.name("same-%s.bin" % phase)
            first, expected = self.start_held_fill(phase, name, ALWAYS_BUCKET, size, 103)
            mark = self.mark()
            second = self.reader(self.media(name, ALWAYS_BUCKET), OWNER)
            harness.wait_until(lambda: second.received or not second.is_alive() or self.upstream_since(mark), 5)
            self.release()
            second.finish(self)
            first.finish(self)
            self.emulator.clear_faults()
            self.record_reader(first)
            self.record_reader(second)
            self.assertWhole(first, expected, "%s: the first read" % phase)
            self.assertWhole(second, expected, "%s: the second read" % phase)
            up = self.upstream_since(mark)
            self.assertEqual(len(up), 1, "%s: the second read must ask upstream exactly once: %r" % (phase, up))
            conditional = up[0]["headers"].get("If-None-Match") or "ifGenerationNotMatch" in up[0]["path"]
            self.assertTrue(conditional, "%s: not a conditional request: %r" % (phase, up[0]))
            self.assertEqual((up[0]["status"], up[0]["bytes"], up[0]["identity"]), (304, 0, OWNER_EMAIL),
                             (phase, up[0]))
            self.assertEqual(second.x_cache, "REVALIDATED", phase)
            self.assertEqual(self.emulator.counters()["media_bytes_sent"], size,
                             "%s: the body went upstream more than once" % phase)
        self.assertLogAgrees()

    def test_reads_during_and_right_after_fill_under_ttl_and_immutable(self):
        """Item 12, ttl and immutable: for 24 fresh fills, a second read started while the first is
        mid-body and a third started the instant the first ends are HITs, bytes correct, with exactly one
        upstream media GET per fill in all. The fills are of three kinds, in turn: a plain first read; a
        first read with "Range: bytes=0-" (the whole object); and a plain first read right after an
        owner's XML PUT through larder replaced a cached object.

        Fails on the old code: a fill that was not its object's single-flight leader (the ranged one; and
        the one right after a write, while the earlier fill's single-flight slot still lingered, for 5 s)
        did not serve a read made during it: that read went upstream in full again ("upstream GETs
        [(206, 2097929), (200, 2097929)]", X-Cache MISS). Plain first reads were served from the fill."""
        self.emulator.create_bucket(TTL_BUCKET)
        size = 2 * MiB + 777
        self.emulator.faults(bandwidth_bps=8 * MiB, match="fresh-")  # each first read lasts ~0.25 s
        for i in range(24):
            bucket = TTL_BUCKET if i % 2 else self.bucket
            kind = ("plain", "range 0-", "after a write")[i // 2 % 3]
            name = self.name("fresh-%02d.bin" % i)
            self.put_object(name, size=size, seed=110 + i, bucket=bucket)
            if kind == "after a write":
                r = self.get(self.media(name, bucket), OWNER)
                self.assertEqual((r.status, r.x_cache), (200, "MISS"))
                self.settle()
                data = os.urandom(size)
                r = self.get(self.xml(name, bucket), OWNER, method="PUT", body=data)
                self.assertEqual(r.status, 200, r)
                expected = sha(data)
            else:
                expected = self.direct_sha(self.media(name, bucket))
            path = self.media(name, bucket)
            what = "%s/%s (%s)" % (bucket, name, kind)
            mark = self.mark()
            first = self.reader(path, dict(OWNER, Range="bytes=0-") if kind == "range 0-" else OWNER, first=64 * 1024)
            self.assertTrue(first.started.wait(30), what)
            during = self.reader(path, OWNER)
            first.go()
            first.finish(self)
            r, digest = self.read_sha(path)  # the instant the first read ended
            during.finish(self)
            for reader in (first, during):
                self.record_reader(reader)
            self.assertEqual((first.status, first.error, first.digest),
                             (206 if kind == "range 0-" else 200, None, expected), what + " first read")
            # After a write through larder the written bytes are the entry already (issue 8): no fill at all.
            filled = kind != "after a write"
            self.assertEqual(first.x_cache, "MISS" if filled else "HIT", what)
            self.assertWhole(during, expected, what + " read during the fill")
            self.assertEqual((r.status, r.error, digest), (200, None, expected), what + " read right after")
            media = self.media_requests(mark)
            self.assertEqual(len(media), 1 if filled else 0, "%s: upstream GETs %r (X-Cache: during %s, after %s)"
                             % (what, [(e["status"], e["bytes"]) for e in media], during.x_cache, r.x_cache))
            self.assertEqual(during.x_cache, "HIT", what + " read during the fill")
            self.assertEqual(r.x_cache, "HIT", what + " read right after the fill")
        self.emulator.clear_faults()
        self.assertLogAgrees()


if __name__ == "__main__":
    harness.main()
