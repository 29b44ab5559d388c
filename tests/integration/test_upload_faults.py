#!/usr/bin/env python3
"""test_upload_faults.py - what the cache holds after an upload that went wrong.

larder makes the bytes of an upload upstream confirmed into the cache entry;
a resumable or XML multipart upload's confirmed bytes wait as "pending" store
objects no read can see until the final answer promotes them. These tests
break uploads on the way and check the cache state afterwards:

  * a definite refusal from upstream (a 503 with an error body, a 400) is
    passed on as upstream sent it and changes nothing: a cached copy stays
    and is still a HIT, a resumable session stays and may be retried;
  * an answer that leaves the object's state unknown (larder's 504 after
    upstream.response_timeout_ms, its 502 when upstream went away) drops the
    cached copy: the next read asks upstream and returns what upstream has;
    nothing is made from the failed upload;
  * kill -9 with pending chunks in the store: the next start-up removes them
    (the store's figures are back to what they were, the log says so) and
    leaves nothing in spill_dir; the upload can still be completed;
  * cancel, abort, an expired session and a client that leaves mid-body all
    leave the store as it was before the upload.

Witnesses: X-Cache (checked against the access log), the emulator's request
log (what reached upstream, and that a HIT made no upstream request),
/_larder/stats (upload_sessions, upload_pending_bytes, objects, used_bytes)
and the object as the emulator holds it. Nothing waits for time to pass
except where "at least this long has passed" is the point (session expiry);
everything else waits for an event (harness.wait_until, emulator holds).
"""

import concurrent.futures
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only: its test classes are not collected here)

OWNER = tc.OWNER
MiB = tc.MiB
STORE_CHUNK = tc.CHUNK           # the store's chunk payload: pending bytes go in whole chunks of this
RESUMABLE_UNIT = 256 * 1024      # upstream persists non-final resumable chunks in multiples of this
IMMUTABLE = {"enabled": True, "default_policy": "immutable"}  # a HIT asks upstream nothing at all
HOLD_MS = 120000                 # "until released": every hold here ends with POST /_emu/release


def payload(size, seed):
    """Reproducible, incompressible bytes."""
    return random.Random(seed).randbytes(size)


class UploadFaultCase(tc.CacheTestCase):
    """A CacheTestCase with upload helpers, and larder restarts on the same store."""

    larder_config = {"cache": IMMUTABLE}

    # -- uploads ------------------------------------------------------------

    def upload_path(self, name, upload_type="media"):
        return "/upload/storage/v1/b/%s/o?uploadType=%s&name=%s" % (self.bucket, upload_type,
                                                                    urllib.parse.quote(name, safe=""))

    def media_upload(self, name, data, larder=None):
        return self.get(self.upload_path(name), dict(OWNER, **{"Content-Type": "application/x-test"}),
                        method="POST", body=data, larder=larder)

    def start_resumable(self, name, larder=None):
        """POST uploadType=resumable; returns the session URL's path and query, as larder rewrote it."""
        larder = larder or self.larder
        r = self.get(self.upload_path(name, "resumable"),
                     dict(OWNER, **{"X-Upload-Content-Type": "application/x-test", "Content-Type": "application/json"}),
                     method="POST", body=b"{}", larder=larder)
        self.assertEqual(r.status, 200, r)
        location = r.header("location")
        self.assertTrue(location and location.startswith(larder.url + "/upload/storage/v1/"), location)
        parts = urllib.parse.urlsplit(location)
        return parts.path + "?" + parts.query

    def put_chunk(self, session, first, data, total, larder=None, timeout=120):
        """PUT data as bytes first.. of total ("*": not known yet)."""
        headers = dict(OWNER, **{"Content-Range": "bytes %d-%d/%s" % (first, first + len(data) - 1, total)})
        return self.get(session, headers, method="PUT", body=data, larder=larder, timeout=timeout)

    def assertPersisted(self, r, upto):
        self.assertEqual(r.status, 308, r)
        self.assertEqual(r.header("range"), "bytes=0-%d" % (upto - 1), r)

    def assertFinal(self, r, size):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(int(json.loads(r.body)["size"]), size, r)

    # -- cache state ----------------------------------------------------------

    def cache_object(self, name, data, larder=None):
        """Puts name at the emulator and caches it through larder: a MISS, then a HIT."""
        self.put_object(name, data)
        r = self.get(self.media(name), OWNER, larder=larder)
        self.assertEqual((r.status, r.x_cache, r.body == data), (200, "MISS", True), r)
        self.settle(larder)
        self.assertHit(name, data, larder=larder)

    def assertHit(self, name, data, what="", larder=None):
        """A read of name is a HIT with data and no upstream request at all."""
        mark = self.mark()
        r = self.get(self.media(name), OWNER, larder=larder)
        self.assertEqual((r.status, r.error), (200, None), "%s: %r" % (what, r))
        self.assertEqual(r.x_cache, "HIT", "%s: %r" % (what, r))
        self.assertTrue(r.body == data,
                        "%s: a HIT with other bytes (%d bytes, want %d)" % (what, len(r.body), len(data)))
        self.assertNoUpstream(mark, what)

    def assertFromUpstream(self, name, data, what="", larder=None):
        """A read of name is a MISS that fetched data from upstream: no entry answered it."""
        mark = self.mark()
        r = self.get(self.media(name), OWNER, larder=larder)
        self.assertEqual((r.status, r.error), (200, None), "%s: %r" % (what, r))
        self.assertEqual(r.x_cache, "MISS", "%s: %r" % (what, r))
        self.assertTrue(r.body == data, "%s: wrong bytes (%d bytes, want %d)" % (what, len(r.body), len(data)))
        gets = self.upstream_since(mark, ("media_get",))
        self.assertEqual([(e["status"], "If-None-Match" in e["headers"]) for e in gets], [(200, False)],
                         "%s: %r" % (what, gets))

    def store_figures(self, larder=None):
        st = self.stats(larder)
        return {k: st[k] for k in ("objects", "used_bytes", "chunks")}

    def sessions(self, larder=None, since=(0, 0)):
        """(upload_sessions, upload_pending_bytes), less since (the figures a test started with)."""
        st = self.stats(larder)
        return st["upload_sessions"] - since[0], st["upload_pending_bytes"] - since[1]

    def wait_figures(self, predicate, what, larder=None, timeout=10):
        """Waits until predicate(store figures) holds (commits are asynchronous); fails with the last ones."""
        seen = {}

        def check():
            seen["figures"] = self.store_figures(larder)
            return predicate(seen["figures"])

        self.assertTrue(harness.wait_until(check, timeout), "%s: store figures %r" % (what, seen.get("figures")))
        return seen["figures"]

    # -- emulator ---------------------------------------------------------------

    def held(self):
        return self.emulator.control("GET", "faults").get("waiting", 0)

    def wait_held(self, count=1):
        self.assertTrue(harness.wait_until(lambda: self.held() == count, 60),
                        "the write never reached upstream's hold (waiting %d)" % self.held())

    def release(self):
        self.emulator.control("POST", "release", {})

    def landed(self, kind, fragment, status):
        """Whether upstream has handled (and logged) a request of kind whose target contains fragment."""
        return any(e["kind"] == kind and fragment in e["path"] and e["status"] == status
                   for e in self.emulator.counters()["log"])

    def assertUpstreamError(self, r, status, message):
        """r is upstream's own GCS JSON error (message is the emulator's, never larder's)."""
        self.assertGcsJsonError(r.status, r.body, status)
        self.assertEqual(json.loads(r.body)["error"]["message"], message, r.body)

# ==========================================================================
# Definite refusals: passed on, and nothing changes
# ==========================================================================

class RefusalTest(UploadFaultCase):

    def test_refused_final_chunk_keeps_session_and_retry_is_a_hit(self):
        """A 503 on the final chunk of a resumable upload (two 1 MiB chunks confirmed): the client gets
        upstream's 503 and error body; the object is not readable from any entry (upstream has none yet:
        404), and the session stays with its pending bytes. The client's retry of the final chunk completes
        it (200), and the next read is a HIT made from the session's bytes, with no upstream request."""
        name = "res-503.bin"
        data = payload(2 * MiB + 300001, 1)
        total = len(data)
        base = self.sessions()
        session = self.start_resumable(name)
        self.assertPersisted(self.put_chunk(session, 0, data[:MiB], "*"), MiB)
        self.assertPersisted(self.put_chunk(session, MiB, data[MiB:2 * MiB], "*"), 2 * MiB)
        self.assertEqual(self.sessions(since=base), (1, 2 * MiB))
        self.emulator.faults(match="upload_id=", method="PUT", fail_nth={"n": 1, "status": 503})
        r = self.put_chunk(session, 2 * MiB, data[2 * MiB:], total)
        self.assertUpstreamError(r, 503, "Service Unavailable")
        refused = [e for e in self.emulator.counters()["log"] if e["kind"] == "upload_chunk"][-1]
        self.assertEqual((refused["status"], refused.get("fault")), (503, "fail_nth"), refused)
        self.emulator.clear_faults()
        mark = self.mark()
        r = self.get(self.media(name), OWNER)
        self.assertGcsJsonError(r.status, r.body, 404)
        self.assertNotEqual(r.x_cache, "HIT", r)
        self.assertEqual([e["status"] for e in self.upstream_since(mark, ("media_get",))], [404])
        self.assertEqual(self.sessions(since=base), (1, 2 * MiB), "the refused final chunk dropped the session")
        self.assertFinal(self.put_chunk(session, 2 * MiB, data[2 * MiB:], total), total)
        self.assertEqual(self.object_bytes(name), data)
        self.assertHit(name, data, "after the retried final chunk")
        self.assertEqual(self.sessions(since=base), (0, 0))
        self.assertLogAgrees()

    def test_refused_overwrite_keeps_cached_copy(self):
        """A 503 (with upstream's error body) on an upload over a cached object: the client gets upstream's
        503, and the cached copy is untouched: the next read is the old bytes, a HIT, with no upstream
        request. For a JSON media upload and for an XML PUT. Fails on the old code (HEAD before uploads
        became entries), which invalidated on any 5xx: the read after the refusal was a MISS."""
        old, new = payload(300000, 2), payload(200000, 3)
        self.cache_object("json.bin", old)
        self.emulator.faults(match="/upload/", method="POST", fail_nth={"n": 1, "status": 503})
        r = self.media_upload("json.bin", new)
        self.assertUpstreamError(r, 503, "Service Unavailable")
        self.emulator.clear_faults()
        self.assertEqual(self.object_bytes("json.bin"), old)
        self.assertHit("json.bin", old, "json: after the refused upload")

        self.cache_object("xml.bin", old)
        self.emulator.faults(match="/xml.bin", method="PUT", fail_nth={"n": 1, "status": 503})
        r = self.get(self.xml("xml.bin"), OWNER, method="PUT", body=new)
        self.assertGcsXmlError(r.status, r.body, 503, "ServiceUnavailable")
        self.emulator.clear_faults()
        self.assertEqual(self.object_bytes("xml.bin"), old)
        self.assertHit("xml.bin", old, "xml: after the refused PUT")
        self.assertLogAgrees()


# ==========================================================================
# No answer: the object's state is unknown
# ==========================================================================

class NoAnswerTest(UploadFaultCase):
    """upstream.response_timeout_ms is short here, so a write upstream holds gets larder's 504."""

    larder_config = {"cache": IMMUTABLE, "upstream": {"response_timeout_ms": 2000}}

    def hold_upload(self, name):
        self.emulator.faults(match="name=" + name, method="POST", hold_ms=HOLD_MS)

    def test_timeout_drops_cached_copy_while_write_still_pending(self):
        """Upstream holds an overwrite past response_timeout_ms: larder answers 504 in GCS's JSON shape, and
        drops the cached copy, since the write may yet happen. The read that follows (upstream still holds
        the write, so it has the old bytes) goes upstream: a MISS with the old bytes. Had the cached copy
        been kept, it would be a HIT; had the failed upload been made an entry, a HIT with the new bytes."""
        old, new = payload(400000, 4), payload(250000, 5)
        self.cache_object("held.bin", old)
        self.hold_upload("held.bin")
        r = self.media_upload("held.bin", new)
        self.assertGcsJsonError(r.status, r.body, 504)
        self.assertEqual(self.held(), 1, "the write is no longer held: the read below proves less")
        self.assertFromUpstream("held.bin", old, "read while upstream still holds the write")
        self.release()
        self.assertTrue(harness.wait_until(lambda: self.landed("upload", "name=held.bin", 200), 30))
        self.assertLogAgrees()

    def concurrent_reads(self, name, count=6):
        """count reads of name at once; each (status, X-Cache, Content-Length, body)."""
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            answers = list(pool.map(lambda _: self.get(self.media(name), OWNER), range(count)))
        return [(r.status, r.x_cache, r.header("content-length"), r.body) for r in answers]

    def assertAllWhole(self, answers, data, what):
        """Every answer a whole 200 of data: its Content-Length and its body say the same (never a short 200)."""
        for status, x_cache, length, body in answers:
            self.assertEqual((status, length, len(body)), (200, str(len(data)), len(data)), "%s (%s)" % (what, x_cache))
            self.assertTrue(body == data, "%s (%s): wrong bytes" % (what, x_cache))

    def test_other_readers_around_a_write_that_times_out(self):
        """Other clients reading the object while an overwrite is held upstream, and after larder answered the
        writer 504: each gets a whole answer of the bytes upstream has (the old ones; the write never landed
        here), however many read at once; none gets the failed upload's bytes, or a short 200."""
        old, new = payload(3 * MiB + 123, 8), payload(200000, 9)
        self.cache_object("crowd.bin", old)
        self.hold_upload("crowd.bin")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            writer = pool.submit(self.media_upload, "crowd.bin", new)
            self.wait_held()
            during = self.concurrent_reads("crowd.bin")
            self.assertEqual({x for _, x, _, _ in during}, {"PASS"}, "reads while the write is in flight go upstream")
            self.assertAllWhole(during, old, "a read while the write was held")
            r = writer.result(60)
        self.assertGcsJsonError(r.status, r.body, 504)
        self.assertAllWhole(self.concurrent_reads("crowd.bin"), old, "a read after the 504")
        self.release()
        self.assertTrue(harness.wait_until(lambda: self.landed("upload", "name=crowd.bin", 200), 30))
        self.assertLogAgrees()

    def test_timeout_then_write_lands_reads_upstreams_bytes(self):
        """The same 504, then upstream carries the held write out after all (released): the read through
        larder returns the new bytes from upstream (a MISS), not the cached old ones; the read after is a
        HIT of the new bytes."""
        old, new = payload(400000, 6), payload(250000, 7)
        self.cache_object("late.bin", old)
        self.hold_upload("late.bin")
        r = self.media_upload("late.bin", new)
        self.assertGcsJsonError(r.status, r.body, 504)
        self.release()
        self.assertTrue(harness.wait_until(lambda: self.landed("upload", "name=late.bin", 200), 30),
                        "the held write did not land")
        self.assertEqual(self.object_bytes("late.bin"), new)
        self.assertFromUpstream("late.bin", new, "read after the write landed")
        self.settle()
        self.assertHit("late.bin", new, "second read")
        self.assertLogAgrees()


class UpstreamGoneTest(UploadFaultCase):
    """The emulator is killed mid-upload and a new one started on the same port (larder's upstream URL)."""

    def start_emulator_on(self, port):
        type(self).emulator = harness.Emulator.again_on(self.workdir, port)

    def test_upstream_killed_mid_upload(self):
        """Upstream dies while it holds an overwrite (its body received, not yet carried out): the client
        gets larder's 502 in GCS's JSON shape. The cached copy is dropped (its state was unknown) and
        nothing was made from the upload: with a new, empty upstream, the read is upstream's 404; once the
        object exists there, the read is a MISS of those bytes, then a HIT."""
        old, new, later = payload(300000, 8), payload(200000, 9), payload(100000, 10)
        self.cache_object("gone.bin", old)
        self.emulator.faults(match="name=gone.bin", method="POST", hold_ms=HOLD_MS)
        answer = {}
        upload = threading.Thread(target=lambda: answer.setdefault("r", self.media_upload("gone.bin", new)))
        upload.start()
        self.wait_held()
        port = self.emulator.port
        self.emulator.proc.kill()
        self.emulator.proc.wait()
        self.emulator.log.close()
        upload.join(60)
        self.assertFalse(upload.is_alive(), "larder did not answer once upstream was gone")
        r = answer["r"]
        self.assertGcsJsonError(r.status, r.body, 502)
        self.start_emulator_on(port)
        self.emulator.create_bucket(self.bucket)
        mark = self.mark()
        r = self.get(self.media("gone.bin"), OWNER)
        self.assertGcsJsonError(r.status, r.body, 404)
        self.assertNotEqual(r.x_cache, "HIT", r)
        self.assertEqual([e["status"] for e in self.upstream_since(mark, ("media_get",))], [404])
        self.put_object("gone.bin", later)
        self.assertFromUpstream("gone.bin", later, "the object made anew upstream")
        self.settle()
        self.assertHit("gone.bin", later, "second read")
        self.assertLogAgrees()


# ==========================================================================
# kill -9 with pending chunks in the store
# ==========================================================================

class OwnSpillDirCase(UploadFaultCase):
    """spill_dir is a directory of this class's own, so whatever is left in it is larder's."""

    @classmethod
    def setUpClass(cls):
        cls.spill = tempfile.mkdtemp(prefix="larder-upload-spill-")
        cls.larder_config = {"cache": IMMUTABLE, "spill_dir": cls.spill}
        try:
            super().setUpClass()
        except Exception:
            shutil.rmtree(cls.spill, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.spill, ignore_errors=True)


class CrashTest(OwnSpillDirCase):
    def test_kill_9_mid_resumable_upload(self):
        """kill -9 while a resumable upload has two 1 MiB chunks confirmed (pending in the store) and a
        33 MiB third chunk is held at upstream (its body spilled to spill_dir). The restart on the same
        store logs that it removed the transient object, and the store's objects, chunks and used bytes
        are what they were before the upload; spill_dir is empty. The upload then completes through the
        new larder (a status query, then the rest): 200, and reads return its bytes; the new larder never
        saw the session, so the first read is a MISS and the second a HIT."""
        self.cache_object("keep.bin", payload(3 * MiB, 11))  # an entry the restart must keep
        before = self.settle()
        figures_before = {k: before[k] for k in ("objects", "used_bytes", "chunks")}
        name = "crash.bin"
        first, held_len = 2 * MiB, 33 * MiB
        data = payload(first + held_len + 12345, 12)
        total = len(data)
        session = self.start_resumable(name)
        self.assertPersisted(self.put_chunk(session, 0, data[:MiB], "*"), MiB)
        self.assertPersisted(self.put_chunk(session, MiB, data[MiB:first], "*"), first)
        self.assertEqual(self.sessions(), (1, first))
        whole = first // STORE_CHUNK  # pending chunks the store holds; the tail waits in memory
        pending = self.wait_figures(
            lambda f: f["objects"] == figures_before["objects"] + 1 and f["chunks"] == figures_before["chunks"] + whole,
            "the pending chunks never committed")
        self.assertGreater(pending["used_bytes"], figures_before["used_bytes"])

        self.emulator.faults(match="upload_id=", method="PUT", hold_ms=HOLD_MS)
        third = threading.Thread(target=lambda: self.swallow(
            lambda: tc.http_request(self.larder.port, "PUT", session, dict(OWNER, **{
                "Content-Range": "bytes %d-%d/*" % (first, first + held_len - 1)}), data[first:first + held_len],
                timeout=120)))
        third.start()
        self.wait_held()
        self.assertTrue(harness.open_files_under(self.larder, self.spill), "the 33 MiB chunk was not spilled to spill_dir")
        old = self.larder
        old.proc.send_signal(signal.SIGKILL)
        old.proc.wait()
        third.join(60)
        self.assertFalse(third.is_alive())
        self.emulator.clear_faults()  # releases the hold: upstream carries the third chunk out (35 MiB now)
        chunks_done = lambda: [e["status"] for e in self.emulator.counters()["log"]  # noqa: E731
                               if e["kind"] == "upload_chunk"] == [308, 308, 308]
        self.assertTrue(harness.wait_until(chunks_done, 30), "upstream never took the held third chunk")

        larder = self.restart_larder(kill=True, check_log=True)
        removed = re.findall(r"removed (\d+) transient objects? \((\d+) bytes\)", larder.read_log())
        self.assertEqual(len(removed), 1, larder.read_log()[-3000:])
        self.assertEqual(int(removed[0][0]), 1, removed)
        self.assertEqual(int(removed[0][1]), pending["used_bytes"] - figures_before["used_bytes"], removed)
        self.assertEqual(self.store_figures(), figures_before, "the restart left pending objects in the store")
        self.assertEqual(self.sessions(), (0, 0))
        self.assertEqual(os.listdir(self.spill), [], "kill -9 left files in spill_dir")
        self.assertHit("keep.bin", payload(3 * MiB, 11), "the entry cached before the upload")

        q = self.get(session, dict(OWNER, **{"Content-Range": "bytes */%d" % total}), method="PUT", body=b"")
        self.assertPersisted(q, first + held_len)
        self.assertFinal(self.put_chunk(session, first + held_len, data[first + held_len:], total), total)
        self.assertEqual(self.object_bytes(name), data)
        self.assertFromUpstream(name, data, "first read after the upload the new larder joined midway")
        self.settle()
        self.assertHit(name, data, "second read")
        self.assertEqual(os.listdir(self.spill), [])
        self.assertLogAgrees()

    @staticmethod
    def swallow(call):
        try:
            call()
        except Exception:  # the connection dies with larder: that is the point
            pass


# ==========================================================================
# Sessions that end without an object: cancel, expiry, abort
# ==========================================================================

class SessionEndTest(UploadFaultCase):
    """Figures are compared with those each test starts with (a session an earlier test left open, had
    one failed, would otherwise count here too)."""

    def test_cancel_drops_pending_chunks(self):
        """A resumable session with a confirmed 1 MiB chunk (one whole store chunk pending), cancelled with
        DELETE on the session URL: the client gets upstream's 499, upload_sessions and
        upload_pending_bytes go back to what they were (0), and the store's objects and used bytes too."""
        base, before = self.sessions(), self.store_figures()
        session = self.start_resumable("cancel.bin")
        self.assertPersisted(self.put_chunk(session, 0, payload(MiB, 13), "*"), MiB)
        self.assertEqual(self.sessions(since=base), (1, MiB))
        self.wait_figures(lambda f: f["objects"] == before["objects"] + 1, "the pending chunk never committed")
        r = self.get(session, OWNER, method="DELETE")
        self.assertEqual(r.status, 499, r)
        self.assertTrue(self.landed("upload_cancel", "upload_id=", 499))
        self.assertEqual(self.sessions(since=base), (0, 0))
        self.wait_figures(lambda f: f == before, "the cancelled session's chunks stayed in the store")
        self.assertLogAgrees()

    # -- XML multipart ------------------------------------------------------------

    def initiate(self, name):
        r = self.get(self.xml(name, query="uploads"), OWNER, method="POST", body=b"")
        self.assertEqual(r.status, 200, r)
        return re.search(rb"<UploadId>([^<]+)</UploadId>", r.body).group(1).decode()

    def put_part(self, name, upload_id, number, data):
        r = self.get(self.xml(name, query="partNumber=%d&uploadId=%s" % (number, upload_id)), OWNER, method="PUT",
                     body=data)
        self.assertEqual(r.status, 200, r)
        return r.header("etag")

    def complete(self, name, upload_id, etags):
        doc = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
            "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (n, e) for n, e in etags)
        return self.get(self.xml(name, query="uploadId=" + upload_id), OWNER, method="POST", body=doc.encode())

    def test_xml_multipart_abort_drops_parts(self):
        """An XML multipart upload with a 2 MiB part pending, aborted: upstream's 204, and larder's session
        and pending bytes are gone, and the store's figures are what they were before the upload."""
        base, before = self.sessions(), self.store_figures()
        upload_id = self.initiate("abort.bin")
        self.put_part("abort.bin", upload_id, 1, payload(2 * MiB, 15))
        self.assertEqual(self.sessions(since=base), (1, 2 * MiB))
        self.wait_figures(lambda f: f["objects"] == before["objects"] + 1, "the pending part never committed")
        r = self.get(self.xml("abort.bin", query="uploadId=" + upload_id), OWNER, method="DELETE")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(self.sessions(since=base), (0, 0))
        self.wait_figures(lambda f: f == before, "the aborted upload's parts stayed in the store")
        r = self.get(self.media("abort.bin"), OWNER)
        self.assertGcsJsonError(r.status, r.body, 404)
        self.assertLogAgrees()

    def test_xml_multipart_refused_complete_makes_no_entry(self):
        """A Complete that upstream refuses (a wrong ETag: 400 InvalidPart, passed on in XML) makes no entry
        and leaves the cached older copy as it was: the read is a HIT of the old bytes, no upstream
        request. The session stays (upload_sessions 1), so the corrected Complete succeeds, and the read
        after it is a HIT of the new bytes, made from the parts, with no upstream request."""
        old = payload(100000, 16)
        part1, part2 = payload(5 * MiB, 17), payload(MiB + 77, 18)
        self.cache_object("mp.bin", old)
        base = self.sessions()
        upload_id = self.initiate("mp.bin")
        etags = [(1, self.put_part("mp.bin", upload_id, 1, part1)), (2, self.put_part("mp.bin", upload_id, 2, part2))]
        self.assertEqual(self.sessions(since=base), (1, len(part1) + len(part2)))
        r = self.complete("mp.bin", upload_id, [etags[0], (2, '"%s"' % ("0" * 32))])
        self.assertGcsXmlError(r.status, r.body, 400, "InvalidPart")
        self.assertEqual(self.object_bytes("mp.bin"), old)
        self.assertHit("mp.bin", old, "after the refused Complete")
        self.assertEqual(self.sessions(since=base), (1, len(part1) + len(part2)),
                         "the refused Complete dropped the session")
        r = self.complete("mp.bin", upload_id, etags)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.object_bytes("mp.bin"), part1 + part2)
        self.assertHit("mp.bin", part1 + part2, "after the Complete")
        self.assertEqual(self.sessions(since=base), (0, 0))
        self.assertLogAgrees()


class SessionExpiryTest(UploadFaultCase):
    """upload_session_ttl 1; this class's one test is the only one to open sessions on its larder."""

    larder_config = {"cache": IMMUTABLE, "upload_session_ttl": 1}

    def test_idle_session_expires(self):
        """upload_session_ttl 1: a session with a confirmed chunk, idle for more than a second, is dropped
        when the next session starts: upload_sessions 1 and upload_pending_bytes 0 (the new session has no
        bytes), and the store is back to what it was. The expired session goes on upstream (its final
        chunk: 200), but nothing of it was kept: the first read is a MISS."""
        before = self.store_figures()
        self.assertEqual(self.sessions(), (0, 0))
        data = payload(MiB + 5000, 14)
        first = self.start_resumable("idle.bin")
        self.assertPersisted(self.put_chunk(first, 0, data[:MiB], "*"), MiB)
        self.assertEqual(self.sessions(), (1, MiB))
        self.wait_figures(lambda f: f["objects"] == before["objects"] + 1, "the pending chunk never committed")
        time.sleep(1.5)  # the point: more than upload_session_ttl has passed since the session was last used
        self.start_resumable("next.bin")
        self.assertEqual(self.sessions(), (1, 0), "the idle session was not dropped")
        self.wait_figures(lambda f: f == before, "the expired session's chunks stayed in the store")
        self.assertFinal(self.put_chunk(first, MiB, data[MiB:], len(data)), len(data))
        self.assertFromUpstream("idle.bin", data, "read after completing the expired session")
        self.assertLogAgrees()


# ==========================================================================
# A client that leaves mid-body
# ==========================================================================

class ClientLeavesTest(OwnSpillDirCase):
    def test_client_leaves_mid_media_upload(self):
        """A client sends 40 MiB of an 80 MiB media upload over a cached object (larder has buffered more
        than 32 MiB of it: its spill file is open), then closes the socket. No upload reached upstream
        (counted once larder has stopped, when nothing more can), no session was opened, the store's
        figures are unchanged and the cached copy is still a HIT of the old bytes; spill_dir is empty."""
        old = payload(200000, 19)
        self.cache_object("left.bin", old)
        before = self.settle()
        mark = self.mark()
        size = 80 * MiB
        sock = socket.create_connection(("127.0.0.1", self.larder.port))
        try:
            sock.sendall(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer owner\r\n"
                          "Content-Type: application/x-test\r\nContent-Length: %d\r\n\r\n"
                          % (self.upload_path("left.bin"), size)).encode())
            sock.sendall(payload(size // 2, 20))
            self.assertTrue(harness.wait_until(lambda: harness.open_files_under(self.larder, self.spill), 60),
                            "larder never buffered 32 MiB of the body")
        finally:
            sock.close()
        self.assertEqual(self.sessions(), (0, 0))
        larder = self.restart_larder(check_log=True)  # SIGTERM: once it has exited, no request of its can reach upstream
        writes = [e for e in self.upstream_since(mark) if e["method"] != "GET"]
        self.assertEqual(writes, [], "a half-sent upload reached upstream")
        self.assertEqual(self.object_bytes("left.bin"), old)
        self.assertEqual(os.listdir(self.spill), [])
        self.assertEqual(self.store_figures(larder), {k: before[k] for k in ("objects", "used_bytes", "chunks")})
        self.assertHit("left.bin", old, "after the client left")
        self.assertLogAgrees()


if __name__ == "__main__":
    harness.main()
