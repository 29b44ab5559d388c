#!/usr/bin/env python3
"""Self-tests for gcs_emulator.py, the GCS upstream used by larder's tests.

Starts the emulator as a subprocess on a free port and talks to it with
http.client, checking the GCS behaviours larder depends on: preconditions,
ranges, resumable uploads, multipart forms, gzip transcoding, listings, error
shapes, authorization, OAuth endpoints, faults and counters.

Run: python3 tests/emulator/test_emulator.py   (exits non-zero on failure)
"""

import base64
import email.utils
import gzip
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from urllib.parse import quote, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "gcs_emulator.py")
sys.path.insert(0, HERE)
import gcs_emulator  # noqa: E402  (CRC and synthetic-content helpers)


def start_emulator(*extra_args):
    """Start an emulator; returns (process, port, tempdir)."""
    tmp = tempfile.mkdtemp(prefix="gcs-emu-test-")
    port_file = os.path.join(tmp, "port")
    proc = subprocess.Popen([sys.executable, EMULATOR, "--port", "0", "--port-file", port_file] + list(extra_args),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError("emulator did not start: %s" % proc.stderr.read().decode())
        time.sleep(0.02)
    with open(port_file) as handle:
        return proc, int(handle.read()), tmp


def stop_emulator(proc, tmp):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stderr.close()
    shutil.rmtree(tmp, ignore_errors=True)


PROC = PORT = TMP = None


def setUpModule():
    global PROC, PORT, TMP
    PROC, PORT, TMP = start_emulator()


def tearDownModule():
    stop_emulator(PROC, TMP)


class Reply:
    def __init__(self, resp, body):
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())


def call(method, path, body=None, headers=None, token="owner", conn=None, port=None):
    """One request; token None means anonymous."""
    headers = dict(headers or {})
    if token is not None:
        headers.setdefault("Authorization", "Bearer " + token)
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port or PORT, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Reply(resp, resp.read())
    finally:
        if own:
            conn.close()


def control(path, spec=None, method="POST"):
    reply = call(method, "/_emu/" + path, body=spec if spec is not None else b"", token=None)
    assert reply.status == 200, (path, reply.status, reply.body)
    return reply.json()


def upload(bucket, name, data, content_type="application/octet-stream", token="owner", query=""):
    path = "/upload/storage/v1/b/%s/o?uploadType=media&name=%s%s" % (bucket, quote(name, safe=""), query)
    return call("POST", path, data, {"Content-Type": content_type}, token=token)


def obj_path(bucket, name, query=""):
    return "/storage/v1/b/%s/o/%s%s" % (bucket, quote(name, safe=""), query)


def json_error(reply):
    err = reply.json()["error"]
    return err["code"], err["errors"][0]["reason"], err["message"]


class EmulatorTest(unittest.TestCase):
    def setUp(self):
        control("reset")
        control("buckets", {"name": "bkt"})


class Crc32cTest(unittest.TestCase):
    def test_vectors_and_paths_agree(self):
        crc = gcs_emulator.crc32c
        self.assertEqual(crc(b"123456789"), 0xE3069283)
        self.assertEqual(crc(b"\x00" * 32), 0x8A9136AA)
        data = os.urandom(3 * 1024 * 1024 + 77)
        slow = gcs_emulator._crc_update_small(0xFFFFFFFF, data) ^ 0xFFFFFFFF
        self.assertEqual(crc(data), slow)
        self.assertEqual(gcs_emulator.crc32c_combine(crc(data[:1000]), crc(data[1000:]), len(data) - 1000), slow)
        self.assertEqual(gcs_emulator.crc32c_b64(0xE3069283), base64.b64encode(b"\xe3\x06\x92\x83").decode())

    def test_synthetic_blob_crc_matches_content(self):
        blob = gcs_emulator.SyntheticBlob(2 * 1024 * 1024 + 33, "s")
        self.assertEqual(blob.crc32c(), gcs_emulator.crc32c(blob.read()))


class JsonObjectTest(EmulatorTest):
    def test_upload_and_metadata_resource(self):
        data = b"hello world"
        reply = upload("bkt", "dir/a b+c.txt", data, "text/plain")
        self.assertEqual(reply.status, 200)
        res = reply.json()
        self.assertEqual(res["kind"], "storage#object")
        self.assertEqual(res["size"], "11")
        self.assertEqual(res["md5Hash"], base64.b64encode(hashlib.md5(data).digest()).decode())
        self.assertEqual(res["crc32c"], gcs_emulator.crc32c_b64(gcs_emulator.crc32c(data)))
        self.assertEqual(res["metageneration"], "1")
        self.assertTrue(res["etag"].startswith("C"))
        self.assertRegex(res["timeCreated"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        # Links follow the request's Host header, so a proxy must rewrite them.
        got = call("GET", obj_path("bkt", "dir/a b+c.txt"), headers={"Host": "proxy.example:8443"}).json()
        self.assertEqual(got["mediaLink"], "http://proxy.example:8443/download/storage/v1/b/bkt/o/dir%2Fa%20b%2Bc.txt"
                                           "?generation=" + res["generation"] + "&alt=media")
        self.assertTrue(got["selfLink"].startswith("http://proxy.example:8443/storage/v1/b/bkt/o/"))

    def test_generation_strictly_increases(self):
        gens = [int(upload("bkt", "g", b"x").json()["generation"]) for _ in range(5)]
        self.assertEqual(gens, sorted(set(gens)))
        self.assertGreater(gens[0], 10 ** 15)  # microseconds since the epoch

    def test_fields_partial_response(self):
        upload("bkt", "p/one", b"1")
        upload("bkt", "p/two", b"22")
        upload("bkt", "q", b"333")
        got = call("GET", obj_path("bkt", "p/one", "?fields=name%2Csize")).json()
        self.assertEqual(got, {"name": "p/one", "size": "1"})
        listing = call("GET", "/storage/v1/b/bkt/o?delimiter=%2F&fields=prefixes%2Citems%2Fname%2CnextPageToken").json()
        self.assertEqual(listing, {"prefixes": ["p/"], "items": [{"name": "q"}]})
        listing = call("GET", "/storage/v1/b/bkt/o?prefix=p%2F&fields=items(name,size)").json()
        self.assertEqual(listing, {"items": [{"name": "p/one", "size": "1"}, {"name": "p/two", "size": "2"}]})
        empty = call("GET", "/storage/v1/b/bkt/o?prefix=zzz&fields=items%2Fname%2Cprefixes")
        self.assertEqual(empty.json(), {})

    def test_media_headers(self):
        data = os.urandom(5000)
        res = upload("bkt", "m.bin", data).json()
        call("PATCH", obj_path("bkt", "m.bin"), {"cacheControl": "public, max-age=60"})
        reply = call("GET", obj_path("bkt", "m.bin", "?alt=media"))
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body, data)
        crc = gcs_emulator.crc32c_b64(gcs_emulator.crc32c(data))
        self.assertEqual(reply.header("x-goog-hash"), "crc32c=%s,md5=%s" % (crc, res["md5Hash"]))
        self.assertEqual(reply.header("x-goog-generation"), res["generation"])
        self.assertEqual(reply.header("x-goog-metageneration"), "2")
        self.assertEqual(reply.header("x-goog-stored-content-length"), "5000")
        self.assertEqual(reply.header("x-goog-stored-content-encoding"), "identity")
        self.assertEqual(reply.header("cache-control"), "public, max-age=60")
        self.assertEqual(reply.header("accept-ranges"), "bytes")
        self.assertEqual(reply.header("content-length"), "5000")
        self.assertIsNotNone(reply.header("last-modified"))
        meta = call("GET", obj_path("bkt", "m.bin")).json()
        self.assertEqual(reply.header("etag"), meta["etag"])
        dl = call("GET", "/download/storage/v1/b/bkt/o/m.bin?generation=%s&alt=media" % res["generation"])
        self.assertEqual(dl.body, data)
        stale = call("GET", obj_path("bkt", "m.bin", "?alt=media&generation=1"))
        self.assertEqual(stale.status, 404)

    def test_patch_put_and_delete(self):
        res = upload("bkt", "o", b"data").json()
        patched = call("PATCH", obj_path("bkt", "o"), {"metadata": {"k": "v", "x": "y"}, "contentType": "text/x"}).json()
        self.assertEqual(patched["metageneration"], "2")
        self.assertEqual(patched["metadata"], {"k": "v", "x": "y"})
        self.assertNotEqual(patched["etag"], res["etag"])
        patched = call("PATCH", obj_path("bkt", "o"), {"metadata": {"x": None}}).json()
        self.assertEqual(patched["metadata"], {"k": "v"})
        put = call("PUT", obj_path("bkt", "o"), {"contentType": "text/y"}).json()
        self.assertEqual(put["metageneration"], "4")
        self.assertNotIn("metadata", put)
        self.assertEqual(call("DELETE", obj_path("bkt", "o")).status, 204)
        self.assertEqual(call("GET", obj_path("bkt", "o")).status, 404)

    def test_copy_rewrite_compose(self):
        a, b = os.urandom(300000), os.urandom(1234)
        upload("bkt", "a", a, "text/a")
        upload("bkt", "b", b)
        control("buckets", {"name": "dst"})
        copied = call("POST", "/storage/v1/b/bkt/o/a/copyTo/b/dst/o/c%2Fcopy", b"")
        self.assertEqual(copied.status, 200, copied.body)
        self.assertEqual(copied.json()["contentType"], "text/a")
        rewritten = call("POST", "/storage/v1/b/bkt/o/a/rewriteTo/b/dst/o/rw", {}).json()
        self.assertEqual(rewritten["kind"], "storage#rewriteResponse")
        self.assertTrue(rewritten["done"])
        self.assertEqual(rewritten["totalBytesRewritten"], str(len(a)))
        self.assertEqual(rewritten["resource"]["name"], "rw")
        self.assertEqual(call("GET", obj_path("dst", "c/copy", "?alt=media")).body, a)
        composed = call("POST", "/storage/v1/b/bkt/o/ab/compose",
                        {"sourceObjects": [{"name": "a"}, {"name": "b"}], "destination": {"contentType": "x/y"}})
        self.assertEqual(composed.status, 200, composed.body)
        res = composed.json()
        self.assertEqual(res["componentCount"], 2)
        self.assertNotIn("md5Hash", res)
        self.assertEqual(res["crc32c"], gcs_emulator.crc32c_b64(gcs_emulator.crc32c(a + b)))
        self.assertEqual(call("GET", obj_path("bkt", "ab", "?alt=media")).body, a + b)

    def test_chunked_request_body(self):
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        data = os.urandom(100000)
        conn.request("POST", "/upload/storage/v1/b/bkt/o?uploadType=media&name=chunked",
                     body=iter([data[:1000], data[1000:]]), encode_chunked=True,
                     headers={"Authorization": "Bearer owner", "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200, resp.read())
        resp.read()
        self.assertEqual(call("GET", obj_path("bkt", "chunked", "?alt=media"), conn=conn).body, data)
        conn.close()

    def test_keep_alive_across_statuses(self):
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        res = upload("bkt", "k", b"abc").json()
        for _ in range(2):
            self.assertEqual(call("GET", obj_path("bkt", "k", "?alt=media"), conn=conn).body, b"abc")
            self.assertEqual(call("GET", obj_path("bkt", "nope"), conn=conn).status, 404)
            not_modified = call("GET", obj_path("bkt", "k", "?alt=media"), conn=conn,
                                headers={"If-None-Match": res["etag"]})
            self.assertEqual(not_modified.status, 304)
            self.assertEqual(call("HEAD", "/bkt/k", conn=conn).status, 200)
        self.assertEqual(call("DELETE", obj_path("bkt", "k"), conn=conn).status, 204)
        self.assertEqual(call("GET", obj_path("bkt", "k"), conn=conn).status, 404)
        conn.close()


class PreconditionTest(EmulatorTest):
    def test_json_preconditions(self):
        res = upload("bkt", "o", b"v1").json()
        gen = res["generation"]
        reply = call("GET", obj_path("bkt", "o", "?ifGenerationMatch=1"))
        self.assertEqual(reply.status, 412)
        self.assertEqual(json_error(reply), (412, "conditionNotMet",
                                             "At least one of the pre-conditions you specified did not hold."))
        self.assertEqual(call("GET", obj_path("bkt", "o", "?ifGenerationMatch=" + gen)).status, 200)
        self.assertEqual(call("GET", obj_path("bkt", "o", "?alt=media&ifGenerationNotMatch=" + gen)).status, 304)
        self.assertEqual(call("GET", obj_path("bkt", "o", "?ifMetagenerationNotMatch=1")).status, 304)
        self.assertEqual(call("GET", obj_path("bkt", "o", "?ifMetagenerationMatch=2")).status, 412)
        self.assertEqual(upload("bkt", "o", b"v2", query="&ifGenerationMatch=0").status, 412)
        self.assertEqual(upload("bkt", "new", b"v2", query="&ifGenerationMatch=0").status, 200)
        self.assertEqual(upload("bkt", "o", b"v2", query="&ifGenerationMatch=" + gen).status, 200)
        header_form = call("POST", "/upload/storage/v1/b/bkt/o?uploadType=media&name=o", b"v3",
                           {"x-goog-if-generation-match": gen})
        self.assertEqual(header_form.status, 412)
        self.assertEqual(call("DELETE", obj_path("bkt", "o", "?ifGenerationMatch=" + gen)).status, 412)
        self.assertEqual(call("PATCH", obj_path("bkt", "o", "?ifMetagenerationMatch=5"), {}).status, 412)

    def test_http_conditionals_on_media(self):
        res = upload("bkt", "o", b"content").json()
        reply = call("GET", obj_path("bkt", "o", "?alt=media"), headers={"If-None-Match": res["etag"]})
        self.assertEqual(reply.status, 304)
        self.assertEqual(reply.header("etag"), res["etag"])
        self.assertEqual(reply.body, b"")
        md5_hex = base64.b64decode(res["md5Hash"]).hex()
        xml = call("GET", "/bkt/o", headers={"If-None-Match": '"%s"' % md5_hex})
        self.assertEqual(xml.status, 304)
        self.assertEqual(xml.header("etag"), '"%s"' % md5_hex)
        self.assertEqual(call("GET", "/bkt/o", headers={"If-None-Match": '"other"'}).status, 200)
        failed = call("GET", "/bkt/o", headers={"If-Match": '"other"'})
        self.assertEqual(failed.status, 412)
        self.assertIn(b"<Code>PreconditionFailed</Code>", failed.body)
        self.assertEqual(call("GET", "/bkt/o", headers={"x-goog-if-generation-match": "1"}).status, 412)
        since = call("GET", "/bkt/o").header("last-modified")
        self.assertEqual(call("GET", "/bkt/o", headers={"If-Modified-Since": since}).status, 304)

    def test_xml_put_preconditions(self):
        self.assertEqual(call("PUT", "/bkt/x", b"1", {"x-goog-if-generation-match": "0"}).status, 200)
        reply = call("PUT", "/bkt/x", b"2", {"x-goog-if-generation-match": "0"})
        self.assertEqual(reply.status, 412)
        self.assertIn(b"<Code>PreconditionFailed</Code>", reply.body)


class RangeTest(EmulatorTest):
    def setUp(self):
        super().setUp()
        self.data = bytes(range(256)) * 40  # 10240 bytes
        upload("bkt", "r", self.data)

    def get(self, rng, xml=False):
        path = "/bkt/r" if xml else obj_path("bkt", "r", "?alt=media")
        return call("GET", path, headers={"Range": rng})

    def test_satisfiable_ranges(self):
        for rng, start, end in (("bytes=0-99", 0, 100), ("bytes=10000-", 10000, 10240),
                                ("bytes=-40", 10200, 10240), ("bytes=10200-99999", 10200, 10240),
                                ("bytes=-999999", 0, 10240)):
            for xml in (False, True):
                reply = self.get(rng, xml)
                self.assertEqual(reply.status, 206, rng)
                self.assertEqual(reply.body, self.data[start:end], rng)
                self.assertEqual(reply.header("content-range"), "bytes %d-%d/10240" % (start, end - 1))

    def test_unsatisfiable_and_ignored_ranges(self):
        reply = self.get("bytes=10240-")
        self.assertEqual(reply.status, 416)
        self.assertEqual(json_error(reply)[:2], (416, "requestedRangeNotSatisfiable"))
        xml = self.get("bytes=20000-20010", xml=True)
        self.assertEqual(xml.status, 416)
        self.assertIn(b"<Code>InvalidRange</Code>", xml.body)
        self.assertEqual(self.get("bytes=-0").status, 416)
        self.assertEqual(self.get("bytes=50-10").status, 200)  # invalid: whole object
        self.assertEqual(self.get("items=0-1").status, 200)


class GzipTest(EmulatorTest):
    def test_decompressive_transcoding(self):
        plain = b"larder " * 5000
        packed = gzip.compress(plain)
        control("objects", {"bucket": "bkt", "name": "z.txt", "content_type": "text/plain",
                            "content_encoding": "gzip", "data_b64": base64.b64encode(packed).decode()})
        for path in (obj_path("bkt", "z.txt", "?alt=media"), "/bkt/z.txt"):
            reply = call("GET", path, headers={"Range": "bytes=0-9"})
            self.assertEqual(reply.status, 200)  # Range ignored while transcoding
            self.assertEqual(reply.body, plain)
            self.assertIsNone(reply.header("content-encoding"))
            self.assertEqual(reply.header("x-goog-stored-content-encoding"), "gzip")
            self.assertEqual(reply.header("x-goog-stored-content-length"), str(len(packed)))
            self.assertIn("gunzipped", reply.header("warning"))
            stored = call("GET", path, headers={"Accept-Encoding": "gzip"})
            self.assertEqual(stored.status, 200)
            self.assertEqual(stored.header("content-encoding"), "gzip")
            self.assertEqual(stored.body, packed)
            part = call("GET", path, headers={"Accept-Encoding": "gzip, deflate", "Range": "bytes=0-9"})
            self.assertEqual((part.status, part.body), (206, packed[:10]))


class MultipartTest(EmulatorTest):
    def test_gsutil_form_lf_single_quoted_boundary(self):
        # Payloads that end in CR or start/end with LF are where an LF-framed
        # body is easy to mis-split; random bytes hit the CR case 1 time in 256.
        for media in (os.urandom(1000), os.urandom(999) + b"\r", b"\n" + os.urandom(998) + b"\n",
                      b"\r\n" * 500):
            with self.subTest(head=media[:2], tail=media[-2:]):
                self.upload_gsutil_form(media)

    def upload_gsutil_form(self, media):
        boundary = "===============5295865220228926421=="
        body = ("--%s\nContent-Type: application/json\nMIME-Version: 1.0\n\n"
                '{"bucket": "bkt", "contentType": "application/octet-stream", "name": "g/small.bin"}\n'
                "--%s\nContent-Type: application/octet-stream\nMIME-Version: 1.0\n"
                "Content-Transfer-Encoding: binary\n\n" % (boundary, boundary)).encode() + media + \
               ("\n--%s--" % boundary).encode()
        path = ("/upload/storage/v1/b/bkt/o?alt=json&fields=generation%2Csize%2CcustomerEncryption%2Ccrc32c"
                "%2Cetag%2Cmd5Hash&uploadType=multipart")
        reply = call("POST", path, body, {"Content-Type": "multipart/related; boundary='%s'" % boundary})
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(set(reply.json()), {"generation", "size", "crc32c", "etag", "md5Hash"})
        self.assertEqual(reply.json()["size"], "1000")
        self.assertEqual(call("GET", obj_path("bkt", "g/small.bin", "?alt=media")).body, media)

    def test_crlf_double_quoted_form_and_hash_check(self):
        media = b"node sdk"
        meta = {"name": "n.txt", "contentType": "text/plain", "metadata": {"a": "b"}}
        body = ('--xyz\r\nContent-Type: application/json\r\n\r\n%s\r\n--xyz\r\nContent-Type: text/plain\r\n\r\n'
                % json.dumps(meta)).encode() + media + b"\r\n--xyz--\r\n"
        reply = call("POST", "/upload/storage/v1/b/bkt/o?uploadType=multipart", body,
                     {"Content-Type": 'multipart/related; boundary="xyz"'})
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.json()["metadata"], {"a": "b"})
        meta["md5Hash"] = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        body = body.replace(json.dumps({k: v for k, v in meta.items() if k != "md5Hash"}).encode(),
                            json.dumps(meta).encode())
        bad = call("POST", "/upload/storage/v1/b/bkt/o?uploadType=multipart", body,
                   {"Content-Type": 'multipart/related; boundary="xyz"'})
        self.assertEqual(bad.status, 400)


class ResumableTest(EmulatorTest):
    CHUNK = 256 * 1024

    def start(self, name, size=None, prefix="/upload", query=""):
        headers = {"X-Upload-Content-Type": "application/x-test", "Host": "front.example:1234"}
        if size is not None:
            headers["X-Upload-Content-Length"] = str(size)
        reply = call("POST", prefix + "/storage/v1/b/bkt/o?uploadType=resumable" + query,
                     {"name": name}, headers)
        self.assertEqual(reply.status, 200, reply.body)
        location = reply.header("location")
        self.assertTrue(location.startswith("http://front.example:1234/upload/storage/v1/b/bkt/o?"), location)
        self.assertIn("upload_id=", location)
        split = urlsplit(location)
        return split.path + "?" + split.query

    def put(self, session, body, content_range=None):
        headers = {"Content-Range": content_range} if content_range else {}
        return call("PUT", session, body, headers, token=None)  # the upload_id authorizes

    def test_multi_chunk_flow(self):
        data = os.urandom(3 * self.CHUNK + 100)
        session = self.start("big.bin", query="&fields=name%2Csize")
        query = self.put(session, b"", "bytes */*")
        self.assertEqual(query.status, 308)
        self.assertIsNone(query.header("range"))
        first = self.put(session, data[:self.CHUNK], "bytes 0-%d/*" % (self.CHUNK - 1))
        self.assertEqual((first.status, first.header("range")), (308, "bytes=0-%d" % (self.CHUNK - 1)))
        # A non-final chunk that is not a 256 KiB multiple is persisted only up to one.
        odd = self.put(session, data[self.CHUNK:2 * self.CHUNK + 10], "bytes %d-%d/*" % (self.CHUNK, 2 * self.CHUNK + 9))
        self.assertEqual(odd.header("range"), "bytes=0-%d" % (2 * self.CHUNK - 1))
        status = self.put(session, b"", "bytes */%d" % len(data))
        self.assertEqual((status.status, status.header("range")), (308, "bytes=0-%d" % (2 * self.CHUNK - 1)))
        # Resending already persisted bytes is fine; they are skipped.
        resent = self.put(session, data[self.CHUNK:3 * self.CHUNK], "bytes %d-%d/*" % (self.CHUNK, 3 * self.CHUNK - 1))
        self.assertEqual(resent.header("range"), "bytes=0-%d" % (3 * self.CHUNK - 1))
        gap = self.put(session, b"x", "bytes %d-%d/*" % (4 * self.CHUNK, 4 * self.CHUNK))
        self.assertEqual(gap.status, 400)
        final = self.put(session, data[3 * self.CHUNK:], "bytes %d-%d/%d" % (3 * self.CHUNK, len(data) - 1, len(data)))
        self.assertEqual(final.status, 200, final.body)
        self.assertEqual(final.json(), {"name": "big.bin", "size": str(len(data))})  # fields of the start request
        again = self.put(session, b"", "bytes */%d" % len(data))
        self.assertEqual(again.status, 200)
        got = call("GET", obj_path("bkt", "big.bin", "?alt=media"))
        self.assertEqual(got.body, data)
        self.assertEqual(got.header("content-type"), "application/x-test")

    def test_single_put_forms(self):
        data = os.urandom(5000)
        session = self.start("one.bin", size=len(data), prefix="/resumable/upload")
        reply = self.put(session, data, "bytes 0-%d/%d" % (len(data) - 1, len(data)))
        self.assertEqual(reply.status, 200, reply.body)
        session = self.start("two.bin")
        self.assertEqual(self.put(session, data).status, 200)  # no Content-Range at all
        session = self.start("three.bin")
        self.assertEqual(self.put(session, data, "bytes 0-*/*").status, 200)  # Node SDK streaming form
        for name in ("one.bin", "two.bin", "three.bin"):
            self.assertEqual(call("GET", obj_path("bkt", name, "?alt=media")).body, data)

    def test_cancel_and_size_mismatch(self):
        session = self.start("c.bin")
        self.assertEqual(call("DELETE", session, token=None).status, 499)
        self.assertEqual(self.put(session, b"x").status, 499)
        session = self.start("d.bin", size=10)
        self.assertEqual(self.put(session, b"12345", "bytes 0-4/5").status, 400)

    def test_precondition_checked(self):
        upload("bkt", "exists", b"1")
        reply = call("POST", "/upload/storage/v1/b/bkt/o?uploadType=resumable&name=exists&ifGenerationMatch=0", b"")
        self.assertEqual(reply.status, 412)


class ListingTest(EmulatorTest):
    NAMES = ["a/1", "a/2", "a/b/3", "a/", "b", "c/x/y", "c/z", "d.txt", "e.txt"]

    def setUp(self):
        super().setUp()
        for name in self.NAMES:
            control("objects", {"bucket": "bkt", "name": name, "data": name})

    def list_all(self, query, key="items"):
        names, prefixes, token, pages = [], [], None, 0
        while True:
            path = "/storage/v1/b/bkt/o?" + query + ("&pageToken=" + token if token else "")
            page = call("GET", path).json()
            names += [i["name"] for i in page.get("items", [])]
            prefixes += page.get("prefixes", [])
            pages += 1
            token = page.get("nextPageToken")
            if not token:
                return names, prefixes, pages

    def test_delimiter_and_pagination(self):
        names, prefixes, pages = self.list_all("delimiter=%2F&maxResults=2")
        self.assertEqual(prefixes, ["a/", "c/"])
        self.assertEqual(names, ["b", "d.txt", "e.txt"])
        self.assertEqual(pages, 3)
        names, _, pages = self.list_all("maxResults=4")
        self.assertEqual(names, sorted(self.NAMES))
        names, prefixes, _ = self.list_all("prefix=a%2F&delimiter=%2F")
        self.assertEqual((names, prefixes), (["a/", "a/1", "a/2"], ["a/b/"]))  # the "a/" placeholder is an item
        names, prefixes, _ = self.list_all("delimiter=%2F&includeTrailingDelimiter=true")
        self.assertEqual(prefixes, ["a/", "c/"])
        self.assertIn("a/", names)

    def test_offsets_and_glob(self):
        names, _, _ = self.list_all("startOffset=b&endOffset=d.txt")
        self.assertEqual(names, ["b", "c/x/y", "c/z"])
        names, _, _ = self.list_all("matchGlob=" + quote("**.txt"))
        self.assertEqual(names, ["d.txt", "e.txt"])
        names, _, _ = self.list_all("matchGlob=" + quote("a/*"))
        self.assertEqual(names, ["a/", "a/1", "a/2"])

    def test_xml_listing(self):
        body = call("GET", "/bkt?prefix=a%2F&delimiter=%2F").body.decode()
        self.assertIn('<ListBucketResult xmlns="http://doc.s3.amazonaws.com/2006-03-01">', body)
        self.assertIn("<Key>a/1</Key>", body)
        self.assertIn("<CommonPrefixes><Prefix>a/b/</Prefix></CommonPrefixes>", body)
        page = call("GET", "/bkt?max-keys=3").body.decode()
        self.assertIn("<IsTruncated>true</IsTruncated>", page)
        self.assertIn("<NextMarker>a/2</NextMarker>", page)
        rest = call("GET", "/bkt?marker=a%2F2").body.decode()
        self.assertNotIn("<Key>a/2</Key>", rest)
        self.assertIn("<Key>a/b/3</Key>", rest)
        v2 = call("GET", "/bkt?list-type=2&max-keys=8").body.decode()
        self.assertIn("<KeyCount>8</KeyCount>", v2)
        token = v2.split("<NextContinuationToken>")[1].split("<")[0]
        last = call("GET", "/bkt?list-type=2&continuation-token=" + quote(token)).body.decode()
        self.assertIn("<Key>e.txt</Key>", last)
        self.assertIn("<KeyCount>1</KeyCount>", last)
        vhost = call("GET", "/?prefix=c%2F", headers={"Host": "bkt.storage.googleapis.com"}).body.decode()
        self.assertIn("<Key>c/z</Key>", vhost)
        buckets = call("GET", "/").body.decode()
        self.assertIn("<Name>bkt</Name>", buckets)


class XmlObjectTest(EmulatorTest):
    def test_put_get_head_delete(self):
        data = os.urandom(3000)
        put = call("PUT", "/bkt/x%20y/z.bin", data, {"Content-Type": "image/png", "x-goog-meta-color": "red",
                                                   "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()})
        self.assertEqual(put.status, 200, put.body)
        self.assertEqual(put.header("etag"), '"%s"' % hashlib.md5(data).hexdigest())
        got = call("GET", "/bkt/x%20y/z.bin")
        self.assertEqual(got.body, data)
        self.assertEqual(got.header("content-type"), "image/png")
        self.assertEqual(got.header("x-goog-meta-color"), "red")
        self.assertEqual(got.header("cache-control"), "private, max-age=0")
        head = call("HEAD", "/bkt/x%20y/z.bin")
        self.assertEqual((head.status, head.body, head.header("content-length")), (200, b"", "3000"))
        meta = call("GET", obj_path("bkt", "x y/z.bin")).json()
        self.assertEqual(meta["metadata"], {"color": "red"})
        bad = call("PUT", "/bkt/bad", b"abc", {"Content-MD5": base64.b64encode(b"0" * 16).decode()})
        self.assertEqual(bad.status, 400)
        self.assertIn(b"<Code>BadDigest</Code>", bad.body)
        self.assertEqual(call("DELETE", "/bkt/x%20y/z.bin").status, 204)
        missing = call("GET", "/bkt/x%20y/z.bin")
        self.assertEqual(missing.status, 404)
        self.assertEqual(missing.body, b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
                                       b"<Message>The specified key does not exist.</Message>"
                                       b"<Details>No such object: bkt/x y/z.bin</Details></Error>")

    def test_aws_style_credentials(self):
        sigv4 = ("AWS4-HMAC-SHA256 Credential=owner/20240101/auto/s3/aws4_request, "
                 "SignedHeaders=host;x-amz-date, Signature=deadbeef")
        self.assertEqual(call("PUT", "/bkt/s3", b"v", {"Authorization": sigv4}, token=None).status, 200)
        self.assertEqual(call("GET", "/bkt/s3", headers={"Authorization": "AWS owner:c2ln"}, token=None).body, b"v")
        unknown = call("GET", "/bkt/s3", headers={"Authorization": "AWS nobody:c2ln"}, token=None)
        self.assertEqual(unknown.status, 403)
        self.assertIn(b"<Code>InvalidAccessKeyId</Code>", unknown.body)

    def test_aws_chunked_body(self):
        data = b"0123456789" * 1000
        framed = b"%x;chunk-signature=abc\r\n%s\r\n0;chunk-signature=def\r\n\r\n" % (len(data), data)
        reply = call("PUT", "/bkt/aws", framed, {"Content-Encoding": "aws-chunked",
                                                 "x-amz-decoded-content-length": str(len(data)),
                                                 "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
        self.assertEqual(reply.status, 200, reply.body)
        got = call("GET", "/bkt/aws")
        self.assertEqual(got.body, data)
        self.assertIsNone(got.header("content-encoding"))


MIB = 1024 * 1024


def xml_text(body, tag):
    """The text of the first <tag> element of an XML answer (None when absent)."""
    text = body.decode() if isinstance(body, bytes) else body
    if "<%s>" % tag not in text:
        return None
    return text.split("<%s>" % tag, 1)[1].split("</%s>" % tag, 1)[0]


def xml_code(reply):
    return reply.status, xml_text(reply.body, "Code")


class XmlMultipartTest(EmulatorTest):
    """XML API multipart uploads (?uploads / ?partNumber&uploadId / ?uploadId)."""

    def initiate(self, key, headers=None, prefix="/bkt/", token="owner"):
        reply = call("POST", prefix + quote(key) + "?uploads", b"", headers, token=token)
        if reply.status == 200:
            self.assertEqual(xml_text(reply.body, "Key"), key)
            return xml_text(reply.body, "UploadId")
        return reply

    def part(self, key, upload_id, number, data, headers=None, prefix="/bkt/", token="owner"):
        return call("PUT", "%s%s?partNumber=%s&uploadId=%s" % (prefix, quote(key), number, upload_id),
                    data, headers, token=token)

    def complete(self, key, upload_id, parts, headers=None, prefix="/bkt/"):
        body = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
            "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (n, etag) for n, etag in parts)
        return call("POST", "%s%s?uploadId=%s" % (prefix, quote(key), upload_id), body.encode(),
                    dict({"Content-Type": "application/xml"}, **(headers or {})))

    def upload_parts(self, key, upload_id, chunks, prefix="/bkt/"):
        """Upload chunks as parts 1..n; returns [(number, etag)]."""
        listed = []
        for number, chunk in enumerate(chunks, 1):
            reply = self.part(key, upload_id, number, chunk, prefix=prefix)
            self.assertEqual(reply.status, 200, reply.body)
            listed.append((number, reply.header("etag")))
        return listed

    def test_three_parts_complete_and_read_back(self):
        chunks = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1000)]
        data = b"".join(chunks)
        control("counters", method="DELETE")
        upload_id = self.initiate("dir/big file.bin", {"Content-Type": "video/mp4", "x-goog-meta-color": "red",
                                                       "x-amz-meta-shape": "round", "Cache-Control": "no-transform",
                                                       "Content-Language": "fr", "x-goog-acl": "public-read"})
        self.assertTrue(upload_id)
        listed = []
        for number, chunk in enumerate(chunks, 1):
            reply = self.part("dir/big file.bin", upload_id, number, chunk)
            self.assertEqual(reply.status, 200, reply.body)
            self.assertEqual(reply.header("etag"), '"%s"' % hashlib.md5(chunk).hexdigest())
            self.assertEqual(reply.header("x-goog-hash"), "crc32c=%s,md5=%s" % (
                gcs_emulator.crc32c_b64(gcs_emulator.crc32c(chunk)),
                base64.b64encode(hashlib.md5(chunk).digest()).decode()))
            listed.append((number, reply.header("etag")))
        parts = call("GET", "/bkt/dir/big%20file.bin?uploadId=" + upload_id)
        self.assertEqual(parts.status, 200, parts.body)
        text = parts.body.decode()
        self.assertIn("<ListPartsResult", text)
        self.assertEqual(xml_text(text, "UploadId"), upload_id)
        self.assertEqual(text.count("<Part>"), 3)
        for (number, etag), chunk in zip(listed, chunks):
            self.assertIn("<PartNumber>%d</PartNumber>" % number, text)
            self.assertIn("<ETag>%s</ETag><Size>%d</Size>" % (etag, len(chunk)), text)
        self.assertIn("<LastModified>", text)
        self.assertEqual(call("GET", "/bkt/dir/big%20file.bin").status, 404)  # nothing visible yet

        done = self.complete("dir/big file.bin", upload_id, listed)
        self.assertEqual(done.status, 200, done.body)
        crc = gcs_emulator.crc32c_b64(gcs_emulator.crc32c(data))
        etag = xml_text(done.body, "ETag")
        self.assertEqual(xml_text(done.body, "Location"), "http://127.0.0.1:%d/bkt/dir/big%%20file.bin" % PORT)
        self.assertEqual((xml_text(done.body, "Bucket"), xml_text(done.body, "Key")), ("bkt", "dir/big file.bin"))
        self.assertEqual(done.header("etag"), etag)
        self.assertEqual(done.header("x-goog-hash"), "crc32c=" + crc)  # no MD5 for multipart objects
        self.assertEqual(done.header("x-goog-stored-content-length"), str(len(data)))
        self.assertEqual(done.header("x-goog-stored-content-encoding"), "identity")
        self.assertEqual(done.header("x-goog-metageneration"), "1")
        generation = done.header("x-goog-generation")
        # GCS: "the object's ETag is not based on an MD5 hash" (neither the data's nor S3's md5-of-md5s-N).
        self.assertNotIn(hashlib.md5(data).hexdigest(), etag)
        self.assertNotIn("-3", etag)

        got = call("GET", "/bkt/dir/big%20file.bin")
        self.assertEqual(got.status, 200)
        self.assertEqual(got.body, data)
        self.assertEqual((got.header("etag"), got.header("x-goog-hash")), (etag, "crc32c=" + crc))
        self.assertEqual(got.header("x-goog-generation"), generation)
        self.assertEqual(got.header("content-type"), "video/mp4")
        self.assertEqual((got.header("x-goog-meta-color"), got.header("x-goog-meta-shape")), ("red", "round"))
        self.assertEqual((got.header("cache-control"), got.header("content-language")), ("no-transform", "fr"))
        self.assertEqual(call("GET", "/bkt/dir/big%20file.bin", token=None).body, data)  # x-goog-acl: public-read
        head = call("HEAD", "/bkt/dir/big%20file.bin")
        self.assertEqual((head.header("etag"), head.header("content-length")), (etag, str(len(data))))
        across = call("GET", "/bkt/dir/big%20file.bin", headers={"Range": "bytes=%d-%d" % (5 * MIB - 3, 10 * MIB + 2)})
        self.assertEqual((across.status, across.body), (206, data[5 * MIB - 3:10 * MIB + 3]))
        self.assertEqual(call("GET", "/bkt/dir/big%20file.bin", headers={"If-None-Match": etag}).status, 304)

        meta = call("GET", obj_path("bkt", "dir/big file.bin")).json()
        self.assertNotIn("md5Hash", meta)
        self.assertNotIn("componentCount", meta)
        self.assertEqual((meta["crc32c"], meta["size"], meta["generation"]), (crc, str(len(data)), generation))
        self.assertEqual(etag, '"%s"' % meta["etag"])  # the opaque tag of every MD5-less object
        self.assertEqual(meta["metadata"], {"color": "red", "shape": "round"})
        media = call("GET", obj_path("bkt", "dir/big file.bin", "?alt=media"))
        self.assertEqual(media.body, data)
        self.assertEqual((media.header("etag"), media.header("x-goog-hash")), (meta["etag"], "crc32c=" + crc))

        # The upload is gone once completed.
        gone = call("GET", "/bkt/dir/big%20file.bin?uploadId=" + upload_id)
        self.assertEqual(xml_code(gone), (404, "NoSuchUpload"))
        self.assertEqual(xml_code(self.complete("dir/big file.bin", upload_id, listed)), (404, "NoSuchUpload"))
        kinds = [e["kind"] for e in control("counters", method="GET")["log"]]
        self.assertEqual(kinds[:6], ["xml_multipart_initiate"] + ["xml_multipart_part"] * 3
                         + ["xml_multipart_list_parts", "xml_get"])
        self.assertEqual(kinds[6], "xml_multipart_complete")
        self.assertIn("xml_multipart_list_parts", kinds[7:])

    def test_completion_errors(self):
        small, big = b"s" * 10, os.urandom(5 * MIB)
        upload_id = self.initiate("e")
        (n1, e1), (n2, e2) = self.upload_parts("e", upload_id, [big, small])
        self.assertEqual(xml_code(self.complete("e", upload_id, [(2, e2), (1, e1)])), (400, "InvalidPartOrder"))
        self.assertEqual(xml_code(self.complete("e", upload_id, [(1, e1), (1, e1)])), (400, "InvalidPartOrder"))
        wrong = self.complete("e", upload_id, [(1, e1), (2, '"%s"' % hashlib.md5(b"x").hexdigest())])
        self.assertEqual(xml_code(wrong), (400, "InvalidPart"))
        self.assertEqual(xml_text(wrong.body, "Message"), "The requested upload part was not found.")
        self.assertEqual(wrong.header("content-type"), "application/xml; charset=UTF-8")
        self.assertEqual(xml_code(self.complete("e", upload_id, [(1, e1), (3, e2)])), (400, "InvalidPart"))
        for body in (b"", b"<CompleteMultipartUpload></CompleteMultipartUpload>", b"<nope"):
            reply = call("POST", "/bkt/e?uploadId=" + upload_id, body)
            self.assertEqual(xml_code(reply), (400, "MalformedCompleteMultipartUploadRequest"), body)
        for number in ("0", "10001", "x", ""):
            self.assertEqual(self.part("e", upload_id, number, b"p").status, 400, number)
        # Every part but the last must have 5 MiB; the last may be short.
        self.assertEqual(self.part("e", upload_id, 3, big).status, 200)
        self.assertEqual(xml_code(self.complete("e", upload_id, [(2, e2), (3, '"%s"' % hashlib.md5(big).hexdigest())])),
                         (400, "EntityTooSmall"))
        self.assertEqual(call("GET", "/bkt/e").status, 404)
        # Failed completions leave the upload as it was; ETags match with or without quotes.
        done = self.complete("e", upload_id, [(1, e1.strip('"')), (2, e2)])
        self.assertEqual(done.status, 200, done.body)
        self.assertEqual(call("GET", "/bkt/e").body, big + small)
        # A single short part, and namespaced XML with extra elements (what S3 SDKs send), are fine.
        upload_id = self.initiate("one")
        etag = self.part("one", upload_id, 7, small).header("etag")
        body = ('<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part>'
                '<ETag>&quot;%s&quot;</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32><PartNumber>7</PartNumber>'
                "</Part></CompleteMultipartUpload>" % etag.strip('"'))
        self.assertEqual(call("POST", "/bkt/one?uploadId=" + upload_id, body.encode()).status, 200)
        self.assertEqual(call("GET", "/bkt/one").body, small)

    def test_part_reupload_replaces(self):
        first, second = os.urandom(100), os.urandom(200)
        upload_id = self.initiate("r")
        old = self.part("r", upload_id, 1, first).header("etag")
        new = self.part("r", upload_id, 1, second).header("etag")
        self.assertNotEqual(old, new)
        text = call("GET", "/bkt/r?uploadId=" + upload_id).body.decode()
        self.assertEqual(text.count("<Part>"), 1)
        self.assertIn("<ETag>%s</ETag><Size>200</Size>" % new, text)
        self.assertEqual(xml_code(self.complete("r", upload_id, [(1, old)])), (400, "InvalidPart"))
        self.assertEqual(self.complete("r", upload_id, [(1, new)]).status, 200)
        self.assertEqual(call("GET", "/bkt/r").body, second)

    def test_abort(self):
        upload_id = self.initiate("a")
        self.upload_parts("a", upload_id, [b"data"])
        control("counters", method="DELETE")
        aborted = call("DELETE", "/bkt/a?uploadId=" + upload_id)
        self.assertEqual((aborted.status, aborted.body), (204, b""))
        late = self.part("a", upload_id, 2, b"more")
        self.assertEqual(xml_code(late), (404, "NoSuchUpload"))
        self.assertEqual(late.body, b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchUpload</Code>"
                                   b"<Message>The requested upload was not found.</Message></Error>")
        self.assertEqual(xml_code(call("GET", "/bkt/a?uploadId=" + upload_id)), (404, "NoSuchUpload"))
        self.assertEqual(xml_code(self.complete("a", upload_id, [(1, '"x"')])), (404, "NoSuchUpload"))
        self.assertEqual(xml_code(call("DELETE", "/bkt/a?uploadId=" + upload_id)), (404, "NoSuchUpload"))
        self.assertEqual(call("GET", "/bkt/a").status, 404)
        kinds = [e["kind"] for e in control("counters", method="GET")["log"]]
        self.assertEqual(kinds, ["xml_multipart_abort", "xml_multipart_part", "xml_multipart_list_parts",
                                 "xml_multipart_complete", "xml_multipart_abort", "xml_get"])

    def test_preconditions_at_completion(self):
        old = call("PUT", "/bkt/p", b"old")
        upload_id = self.initiate("p")
        listed = self.upload_parts("p", upload_id, [b"new"])
        for headers in ({"x-goog-if-generation-match": "0"}, {"If-None-Match": "*"},
                        {"x-goog-if-generation-match": str(int(old.header("x-goog-generation")) + 1)},
                        {"If-Match": '"%s"' % hashlib.md5(b"other").hexdigest()}):
            failed = self.complete("p", upload_id, listed, headers)
            self.assertEqual(xml_code(failed), (412, "PreconditionFailed"), headers)
            got = call("GET", "/bkt/p")
            self.assertEqual((got.body, got.header("x-goog-generation")), (b"old", old.header("x-goog-generation")))
        done = self.complete("p", upload_id, listed, {"x-goog-if-generation-match": old.header("x-goog-generation"),
                                                      "If-Match": old.header("etag")})
        self.assertEqual(done.status, 200, done.body)
        self.assertEqual(call("GET", "/bkt/p").body, b"new")
        fresh = self.initiate("fresh")
        listed = self.upload_parts("fresh", fresh, [b"f"])
        self.assertEqual(self.complete("fresh", fresh, listed, {"x-goog-if-generation-match": "0"}).status, 200)

    def test_virtual_hosted_style(self):
        vhost = {"Host": "bkt.storage.googleapis.com"}
        reply = call("POST", "/v/h.txt?uploads", b"", dict(vhost, **{"Content-Type": "text/plain"}))
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(xml_text(reply.body, "Bucket"), "bkt")
        upload_id = xml_text(reply.body, "UploadId")
        etag = call("PUT", "/v/h.txt?partNumber=1&uploadId=" + upload_id, b"hello", vhost).header("etag")
        listed = call("GET", "/v/h.txt?uploadId=" + upload_id, headers=vhost).body.decode()
        self.assertIn("<PartNumber>1</PartNumber>", listed)
        body = ("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part>"
                "</CompleteMultipartUpload>")
        done = call("POST", "/v/h.txt?uploadId=" + upload_id, (body % etag).encode(), vhost)
        self.assertEqual(done.status, 200, done.body)
        self.assertEqual(xml_text(done.body, "Location"), "http://bkt.storage.googleapis.com/v/h.txt")
        got = call("GET", "/bkt/v/h.txt")
        self.assertEqual((got.body, got.header("content-type"), got.header("etag")),
                         (b"hello", "text/plain", xml_text(done.body, "ETag")))
        other = call("POST", "/v/x?uploads", b"", vhost)
        self.assertEqual(call("DELETE", "/v/x?uploadId=" + xml_text(other.body, "UploadId"), headers=vhost).status, 204)

    def test_upload_scope_permissions_and_listing(self):
        control("buckets", {"name": "bkt2"})
        upload_id = self.initiate("k")
        # An upload id means nothing for another object or bucket.
        self.assertEqual(xml_code(self.part("k2", upload_id, 1, b"x")), (404, "NoSuchUpload"))
        self.assertEqual(xml_code(self.part("k", upload_id, 1, b"x", prefix="/bkt2/")), (404, "NoSuchUpload"))
        self.assertEqual(xml_code(self.part("k", "nope", 1, b"x")), (404, "NoSuchUpload"))
        self.assertEqual(xml_code(self.initiate("k", prefix="/missing/")), (404, "NoSuchBucket"))
        # Write permission is needed for every step.
        self.assertEqual(xml_code(self.initiate("k", token="reader")), (403, "AccessDenied"))
        self.assertEqual(xml_code(self.initiate("k", token=None)), (403, "AccessDenied"))
        self.assertEqual(xml_code(self.part("k", upload_id, 1, b"x", token="other")), (403, "AccessDenied"))
        self.assertEqual(call("DELETE", "/bkt/k?uploadId=" + upload_id, token="reader").status, 403)
        # Pending uploads are listed by GET /BUCKET?uploads, not as objects.
        second = self.initiate("j", {"x-goog-storage-class": "NEARLINE"})
        listing = call("GET", "/bkt?uploads")
        self.assertEqual(listing.status, 200, listing.body)
        text = listing.body.decode()
        self.assertIn("<ListMultipartUploadsResult", text)
        self.assertLess(text.index("<UploadId>%s</UploadId>" % second),
                        text.index("<UploadId>%s</UploadId>" % upload_id))
        self.assertIn("<StorageClass>NEARLINE</StorageClass>", text)
        self.assertNotIn("<Key>j</Key>", call("GET", "/bkt?prefix=").body.decode())
        self.assertNotIn(upload_id, call("GET", "/bkt?uploads&prefix=j").body.decode())
        self.assertEqual(control("counters", method="GET")["log"][-1]["kind"], "xml_multipart_list_uploads")

    def test_part_integrity_and_aws_chunked(self):
        upload_id = self.initiate("c")
        data = b"0123456789" * 100
        framed = b"%x;chunk-signature=abc\r\n%s\r\n0;chunk-signature=def\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n" % (
            len(data), data)
        reply = self.part("c", upload_id, 1, framed, {"Content-Encoding": "aws-chunked",
                                                      "x-amz-decoded-content-length": str(len(data)),
                                                      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                                      "x-amz-checksum-crc32": "AAAAAA==",
                                                      "x-amz-sdk-checksum-algorithm": "CRC32"})
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.header("etag"), '"%s"' % hashlib.md5(data).hexdigest())
        bad_md5 = self.part("c", upload_id, 2, b"abc", {"Content-MD5": base64.b64encode(b"0" * 16).decode()})
        self.assertEqual(xml_code(bad_md5), (400, "BadDigest"))
        bad_crc = self.part("c", upload_id, 2, b"abc", {"x-goog-hash": "crc32c=AAAAAA=="})
        self.assertEqual(xml_code(bad_crc), (400, "BadDigest"))
        hashes = "crc32c=%s,md5=%s" % (gcs_emulator.crc32c_b64(gcs_emulator.crc32c(b"abc")),
                                       base64.b64encode(hashlib.md5(b"abc").digest()).decode())
        good = self.part("c", upload_id, 2, b"abc", {"x-goog-hash": hashes})
        self.assertEqual(good.status, 200, good.body)
        self.assertEqual(call("GET", "/bkt/c?uploadId=" + upload_id).body.decode().count("<Part>"), 2)


class AuthTest(EmulatorTest):
    def test_error_shapes(self):
        missing = call("GET", obj_path("bkt", "nope"))
        self.assertEqual(missing.json(), {"error": {"code": 404, "message": "No such object: bkt/nope", "errors": [
            {"message": "No such object: bkt/nope", "domain": "global", "reason": "notFound"}]}})
        self.assertEqual(json_error(call("GET", obj_path("nobkt", "x")))[:2], (404, "notFound"))
        bad = call("GET", obj_path("bkt", "nope"), token="wrong")
        self.assertEqual(json_error(bad), (401, "authError", "Invalid Credentials"))
        xml_bad = call("GET", "/bkt/nope", token="wrong")
        self.assertEqual(xml_bad.status, 401)
        self.assertIn(b"<Code>AuthenticationRequired</Code>", xml_bad.body)

    def test_readers_writers_and_public(self):
        upload("bkt", "private", b"p")
        anon = call("GET", obj_path("bkt", "private", "?alt=media"), token=None)
        self.assertEqual(json_error(anon)[:2], (401, "required"))
        self.assertIn("Anonymous caller does not have storage.objects.get access", json_error(anon)[2])
        self.assertEqual(call("GET", "/bkt/private", token=None).status, 403)
        denied = call("GET", obj_path("bkt", "private", "?alt=media"), token="reader")
        self.assertEqual(json_error(denied), (403, "forbidden",
                                              "reader@example.com does not have storage.objects.get access to the "
                                              "Google Cloud Storage object. Permission 'storage.objects.get' denied "
                                              "on resource (or it may not exist)."))
        # Without list permission a missing object is indistinguishable from a private one.
        self.assertEqual(call("GET", obj_path("bkt", "missing"), token="reader").status, 403)
        control("acl", {"bucket": "bkt", "object": "private", "readers": ["reader@example.com"]})
        self.assertEqual(call("GET", obj_path("bkt", "private", "?alt=media"), token="reader").body, b"p")
        self.assertEqual(upload("bkt", "w", b"w", token="reader").status, 403)
        control("acl", {"bucket": "bkt", "writers": ["other@example.com"]})
        self.assertEqual(upload("bkt", "w", b"w", token="other").status, 200)
        self.assertEqual(call("GET", obj_path("bkt", "w", "?alt=media"), token="other").body, b"w")
        control("objects", {"bucket": "bkt", "name": "pub", "data": "hi", "readers": ["allUsers"]})
        public = call("GET", obj_path("bkt", "pub", "?alt=media"), token=None)
        self.assertEqual((public.status, public.body), (200, b"hi"))
        self.assertEqual(call("GET", "/bkt/pub", token=None).header("cache-control"), "public, max-age=3600")
        control("tokens", {"tok-x": "x@example.com"})
        self.assertEqual(call("GET", obj_path("bkt", "pub"), token="tok-x").status, 200)

    def test_oauth_endpoints(self):
        token = call("POST", "/token", b"grant_type=refresh_token&refresh_token=r", token=None).json()
        self.assertEqual(token, {"access_token": "owner", "token_type": "Bearer", "expires_in": 3600})
        control("oauth_token", {"token": "reader"})
        self.assertEqual(call("POST", "/token", b"", token=None).json()["access_token"], "reader")
        info = call("GET", "/tokeninfo?access_token=reader", token=None).json()
        self.assertEqual(info["email"], "reader@example.com")
        self.assertEqual(info["email_verified"], "true")
        for key in ("azp", "aud", "sub", "scope", "exp", "expires_in", "access_type"):
            self.assertIn(key, info)
        bad = call("POST", "/oauth2/v3/tokeninfo", b"access_token=nope", token=None)
        self.assertEqual((bad.status, bad.json()), (400, {"error": "invalid_token", "error_description": "Invalid Value"}))

    def tokeninfo(self, token):
        return call("GET", "/tokeninfo?access_token=" + token, token=None)

    def assert_unknown_token(self, token, what):
        """token is refused everywhere exactly as a token never issued ("made-up")."""
        info = self.tokeninfo(token)
        self.assertEqual((info.status, info.json()), (400, {"error": "invalid_token", "error_description": "Invalid Value"}),
                         what)
        for path in (obj_path("bkt", "tok.bin", "?alt=media"), obj_path("bkt", "tok.bin"), "/bkt/tok.bin"):
            got, made_up = call("GET", path, token=token), call("GET", path, token="made-up")
            self.assertEqual((got.status, got.body), (made_up.status, made_up.body), (what, path))
            self.assertEqual(got.header("www-authenticate"), made_up.header("www-authenticate"), (what, path))
            self.assertEqual(got.status, 401, (what, path))
        self.assertEqual(json_error(call("GET", obj_path("bkt", "tok.bin"), token=token)),
                         (401, "authError", "Invalid Credentials"), what)
        self.assertIn(b"<Code>AuthenticationRequired</Code>", call("GET", "/bkt/tok.bin", token=token).body, what)
        via_query = call("GET", obj_path("bkt", "tok.bin", "?alt=media&access_token=" + token), token=None)
        self.assertEqual(json_error(via_query), (401, "authError", "Invalid Credentials"), what)
        # As an HMAC access key id, too.
        hmac = call("GET", "/bkt/tok.bin", token=None, headers={"Authorization": "AWS %s:sig" % token})
        self.assertEqual(hmac.status, 403, what)
        self.assertIn(b"<Code>InvalidAccessKeyId</Code>", hmac.body, what)

    def test_token_expiry_and_revocation(self):
        upload("bkt", "tok.bin", b"tok")
        control("acl", {"bucket": "bkt", "object": "tok.bin", "readers": ["x@example.com"]})
        issued = control("tokens", {"tok-plain": "x@example.com", "tok-long": {"email": "x@example.com", "expires_in": 1000},
                                    "tok-open": {"email": "x@example.com"},
                                    "tok-zero": {"email": "x@example.com", "expires_in": 0},
                                    "tok-past": {"email": "x@example.com", "expires_in": -30}})
        for token in ("tok-plain", "tok-long", "tok-open", "tok-zero", "tok-past"):
            self.assertEqual(issued[token], "x@example.com")
        # Without expires_in: tokeninfo reports an hour, as for the default tokens.
        for token in ("tok-plain", "tok-open", "owner"):
            before = time.time()
            info = self.tokeninfo(token).json()
            self.assertEqual(info["expires_in"], "3599", token)
            self.assertTrue(int(before) + 3600 <= int(info["exp"]) <= int(time.time()) + 3600, (token, info))
        # With it: exp is the configured instant (never later), expires_in what is left of it.
        before = time.time()
        info = self.tokeninfo("tok-long").json()
        self.assertEqual(info["email"], "x@example.com")
        self.assertTrue(int(before) + 990 <= int(info["exp"]) <= int(before) + 1000, info)
        self.assertTrue(990 <= int(info["expires_in"]) <= 1000, info)
        self.assertEqual(call("GET", obj_path("bkt", "tok.bin", "?alt=media"), token="tok-long").body, b"tok")
        self.assertEqual(call("GET", "/bkt/tok.bin", token="tok-long").body, b"tok")
        # expires_in 0 or less: expired at once, refused everywhere like a made-up token.
        for token in ("tok-zero", "tok-past"):
            self.assert_unknown_token(token, token)
        # An expiring token stops working on its own.
        control("tokens", {"tok-short": {"email": "x@example.com", "expires_in": 0.5}})
        deadline = time.monotonic() + 10
        while self.tokeninfo("tok-short").status == 200:
            self.assertLess(time.monotonic(), deadline, "tok-short never expired")
            time.sleep(0.05)
        self.assert_unknown_token("tok-short", "tok-short after its expiry")
        # null revokes; issuing the token again (as a plain email) brings it back without an expiry.
        remaining = control("tokens", {"tok-plain": None, "tok-zero": None})
        self.assertNotIn("tok-plain", remaining)
        self.assertNotIn("tok-zero", remaining)
        self.assert_unknown_token("tok-plain", "tok-plain revoked")
        control("tokens", {"tok-past": "x@example.com"})
        self.assertEqual(self.tokeninfo("tok-past").json()["expires_in"], "3599")
        self.assertEqual(call("GET", "/bkt/tok.bin", token="tok-past").body, b"tok")
        # Bad specs are refused and change nothing.
        for spec in ({"t": 5}, {"t": {"expires_in": 5}}, {"t": {"email": "e", "expires_in": "5"}},
                     {"t": {"email": "e", "ttl": 5}}, ["t"]):
            self.assertEqual(call("POST", "/_emu/tokens", spec, token=None).status, 400, spec)
        self.assertEqual(self.tokeninfo("t").status, 400)
        # reset: the default tokens, no expiries.
        control("reset")
        self.assertEqual(control("tokens", {}), gcs_emulator.DEFAULT_TOKENS)
        self.assertEqual(self.tokeninfo("tok-long").status, 400)


class BucketAndBatchTest(EmulatorTest):
    def test_bucket_lifecycle(self):
        created = call("POST", "/storage/v1/b?project=test", {"name": "made-by-json"})
        self.assertEqual(created.status, 200, created.body)
        self.assertEqual(call("POST", "/storage/v1/b?project=test", {"name": "made-by-json"}).status, 409)
        self.assertEqual(call("GET", "/storage/v1/b/made-by-json").json()["name"], "made-by-json")
        listing = call("GET", "/storage/v1/b?project=test&fields=items%2Fid").json()
        self.assertEqual(listing, {"items": [{"id": "bkt"}, {"id": "made-by-json"}]})
        patched = call("PATCH", "/storage/v1/b/made-by-json", {"labels": {"k": "v"}}).json()
        self.assertEqual((patched["labels"], patched["metageneration"]), ({"k": "v"}, "2"))
        upload("made-by-json", "o", b"1")
        self.assertEqual(call("DELETE", "/storage/v1/b/made-by-json").status, 409)
        call("DELETE", obj_path("made-by-json", "o"))
        self.assertEqual(call("DELETE", "/storage/v1/b/made-by-json").status, 204)
        self.assertEqual(call("DELETE", "/storage/v1/b/bkt", token="other").status, 403)

    def test_batch(self):
        upload("bkt", "one", b"1")
        upload("bkt", "two", b"2")
        parts = [("GET", "/storage/v1/b/bkt/o/one", b""),
                 ("PATCH", "/storage/v1/b/bkt/o/two", b'{"metadata":{"k":"v"}}'),
                 ("DELETE", "/storage/v1/b/bkt/o/one", b""),
                 ("GET", "/storage/v1/b/bkt/o/missing", b"")]
        body = b""
        for i, (method, path, payload) in enumerate(parts):
            body += ("--BOUNDARY\r\nContent-Type: application/http\r\nContent-ID: <req+%d>\r\n\r\n"
                     "%s %s HTTP/1.1\r\nContent-Type: application/json\r\n\r\n" % (i, method, path)).encode()
            body += payload + b"\r\n"
        body += b"--BOUNDARY--\r\n"
        reply = call("POST", "/batch/storage/v1", body, {"Content-Type": "multipart/mixed; boundary=BOUNDARY"})
        self.assertEqual(reply.status, 200)
        self.assertTrue(reply.header("content-type").startswith("multipart/mixed; boundary="))
        text = reply.body.decode()
        statuses = [line.split()[1] for line in text.split("\r\n") if line.startswith("HTTP/1.1 ")]
        self.assertEqual(statuses, ["200", "200", "204", "404"])
        self.assertIn("Content-ID: <response-req+2>", text)
        self.assertEqual(call("GET", obj_path("bkt", "two")).json()["metadata"], {"k": "v"})
        self.assertEqual(call("GET", obj_path("bkt", "one")).status, 404)


class FaultAndCounterTest(EmulatorTest):
    def test_counters(self):
        control("counters", method="DELETE")
        res = upload("bkt", "c", b"12345").json()
        call("GET", obj_path("bkt", "c"))
        call("GET", obj_path("bkt", "c", "?alt=media"), headers={"Range": "bytes=0-1"})
        call("GET", obj_path("bkt", "c", "?alt=media"), headers={"If-None-Match": res["etag"]})
        call("GET", "/bkt/c", token="reader")
        control("health", method="GET")
        counters = control("counters", method="GET")
        self.assertEqual(counters["total"], 5)
        self.assertEqual(counters["by_kind"], {"upload": 1, "metadata_get": 1, "media_get": 2, "xml_get": 1})
        self.assertEqual(counters["media_bytes_sent"], 2)
        log = counters["log"]
        self.assertEqual([e["status"] for e in log], [200, 200, 206, 304, 403])
        self.assertEqual(log[2]["headers"]["Range"], "bytes=0-1")
        self.assertEqual(log[3]["headers"]["If-None-Match"], res["etag"])
        self.assertEqual(log[4]["headers"]["Authorization"], "reader@example.com")
        self.assertNotIn("Bearer", json.dumps(log))
        control("reset")
        self.assertEqual(control("counters", method="GET")["total"], 0)

    def test_fail_nth_and_latency(self):
        upload("bkt", "f", b"x")
        control("faults", {"fail_nth": {"n": 2, "status": 503, "count": 1}, "match": "/o/f"})
        self.assertEqual(call("GET", obj_path("bkt", "f")).status, 200)
        failed = call("GET", obj_path("bkt", "f"))
        self.assertEqual(json_error(failed)[:2], (503, "backendError"))
        self.assertEqual(call("GET", obj_path("bkt", "f")).status, 200)
        self.assertEqual(call("GET", "/storage/v1/b/bkt/o").status, 200)  # does not match
        log = control("counters", method="GET")["log"]
        self.assertEqual(log[-3]["fault"], "fail_nth")
        self.assertEqual(log[-3]["kind"], "metadata_get")
        control("faults", {"latency_ms": 300, "match": "/o/f"})
        started = time.monotonic()
        call("GET", obj_path("bkt", "f"))
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        control("faults", method="DELETE")

    def test_fail_only_the_final_resumable_put(self):
        """match "upload_id=" + method PUT + fail_nth n=K fails exactly the K-th PUT of a
        resumable session (here its final chunk), not the POST that started it."""
        chunk = 256 * 1024
        data = os.urandom(2 * chunk + 10)
        start = call("POST", "/upload/storage/v1/b/bkt/o?uploadType=resumable&name=rf", {})
        location = urlsplit(start.header("location"))
        session = location.path + "?" + location.query
        control("faults", {"match": "upload_id=", "method": "PUT", "fail_nth": {"n": 3, "status": 503}})
        ranges = ["bytes 0-%d/*" % (chunk - 1), "bytes %d-%d/*" % (chunk, 2 * chunk - 1),
                  "bytes %d-%d/%d" % (2 * chunk, len(data) - 1, len(data))]
        bodies = [data[:chunk], data[chunk:2 * chunk], data[2 * chunk:]]
        replies = [call("PUT", session, body, {"Content-Range": r}, token=None) for r, body in zip(ranges, bodies)]
        self.assertEqual([r.status for r in replies], [308, 308, 503])
        self.assertEqual(json_error(replies[2])[:2], (503, "backendError"))
        self.assertEqual(call("GET", obj_path("bkt", "rf")).status, 404)  # the failed final chunk did not land
        log = control("counters", method="GET")["log"]
        self.assertEqual([(e["kind"], e["status"], e.get("fault")) for e in log[-4:-1]],
                         [("upload_chunk", 308, None), ("upload_chunk", 308, None), ("upload_chunk", 503, "fail_nth")])
        retry = call("PUT", session, bodies[2], {"Content-Range": ranges[2]}, token=None)
        self.assertEqual(retry.status, 200, retry.body)
        self.assertEqual(call("GET", obj_path("bkt", "rf", "?alt=media")).body, data)
        control("faults", method="DELETE")

    def test_counters_since(self):
        upload("bkt", "s", b"s")
        mark = control("counters", method="GET")["log"][-1]["seq"]
        call("GET", obj_path("bkt", "s"))
        call("GET", "/bkt/s", token="reader")
        later = control("counters?since=%d" % mark, method="GET")
        self.assertEqual([(e["kind"], e["identity"]) for e in later["log"]],
                         [("metadata_get", "owner@example.com"), ("xml_get", "reader@example.com")])
        self.assertEqual(later["total"], 3)  # the counters themselves are not filtered
        self.assertEqual(later["seq"], later["log"][-1]["seq"])
        self.assertEqual(control("counters?since=%d" % later["log"][-1]["seq"], method="GET")["log"], [])
        self.assertEqual(call("GET", "/_emu/counters?since=x", token=None).status, 400)

    def test_tokeninfo_counted_and_faulted(self):
        control("counters", method="DELETE")
        self.assertEqual(call("GET", "/tokeninfo?access_token=reader", token=None).status, 200)
        self.assertEqual(call("GET", "/tokeninfo?access_token=nope", token=None).status, 400)
        counters = control("counters", method="GET")
        self.assertEqual(counters["by_kind"], {"tokeninfo": 2})
        self.assertEqual([(e["kind"], e["status"], e["path"]) for e in counters["log"]],
                         [("tokeninfo", 200, "/tokeninfo?access_token=reader"),
                          ("tokeninfo", 400, "/tokeninfo?access_token=nope")])
        # fail_nth with match "/tokeninfo": token validation fails, the API does not.
        upload("bkt", "t", b"t")
        control("faults", {"match": "/tokeninfo", "fail_nth": {"n": 1, "status": 503, "count": 2}})
        for _ in range(2):
            failed = call("GET", "/tokeninfo?access_token=reader", token=None)
            self.assertEqual(json_error(failed)[:2], (503, "backendError"))
        self.assertEqual(call("GET", obj_path("bkt", "t", "?alt=media"), token="reader").status, 403)  # not matched
        self.assertEqual(call("GET", "/tokeninfo?access_token=reader", token=None).json()["email"],
                         "reader@example.com")
        log = [e for e in control("counters", method="GET")["log"] if e["kind"] == "tokeninfo"]
        self.assertEqual([(e["status"], e.get("fault")) for e in log[-3:]],
                         [(503, "fail_nth"), (503, "fail_nth"), (200, None)])
        # hold_ms keeps a tokeninfo request waiting until released.
        control("faults", {"match": "/tokeninfo", "hold_ms": 30000})
        result = {}
        asker = threading.Thread(target=lambda: result.update(reply=call(
            "GET", "/tokeninfo?access_token=other", token=None)))
        asker.start()
        deadline = time.monotonic() + 10
        while control("faults", method="GET")["waiting"] != 1:
            self.assertLess(time.monotonic(), deadline, "tokeninfo never got held")
            time.sleep(0.02)
        self.assertNotIn("reply", result)
        control("release")
        asker.join(10)
        self.assertEqual(result["reply"].json()["email"], "other@example.com")
        control("faults", method="DELETE")

    def test_reset_stall_and_bandwidth(self):
        data = os.urandom(300000)
        upload("bkt", "big", data)
        control("faults", {"reset_after_bytes": 1000, "match": "big"})
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        conn.request("GET", obj_path("bkt", "big", "?alt=media"), headers={"Authorization": "Bearer owner"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        with self.assertRaises((http.client.IncompleteRead, ConnectionResetError)):
            resp.read()
        conn.close()
        entry = control("counters", method="GET")["log"][-1]
        self.assertEqual((entry["bytes"], entry.get("aborted")), (1000, True))
        control("faults", {"stall_ms": 500, "stall_after_bytes": 4096, "match": "big"})
        started = time.monotonic()
        self.assertEqual(call("GET", obj_path("bkt", "big", "?alt=media")).body, data)
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        control("faults", {"bandwidth_bps": 1000000, "match": "big"})
        started = time.monotonic()
        self.assertEqual(call("GET", obj_path("bkt", "big", "?alt=media")).body, data)
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        control("faults", method="DELETE")
        self.assertEqual(call("GET", "/_emu/faults", token=None).json()["spec"], {})

    def test_bytes_counted_as_sent_and_stop_when_client_leaves(self):
        size = 16 * 1024 * 1024
        control("objects", {"bucket": "bkt", "name": "slow", "size": size, "seed": 5})
        control("faults", {"bandwidth_bps": 2 * 1024 * 1024, "match": "slow"})
        control("counters", method="DELETE")
        sock = socket.create_connection(("127.0.0.1", PORT))
        sock.sendall(b"GET /bkt/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer owner\r\n\r\n")
        sock.recv(65536)
        time.sleep(0.5)
        during = control("counters", method="GET")["media_bytes_sent"]
        self.assertGreater(during, 0)
        self.assertLess(during, size)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        time.sleep(0.5)
        settled = control("counters", method="GET")
        time.sleep(0.3)
        self.assertEqual(control("counters", method="GET")["media_bytes_sent"], settled["media_bytes_sent"])
        self.assertLess(settled["media_bytes_sent"], size // 4)
        self.assertTrue(settled["log"][-1].get("aborted"))
        control("faults", method="DELETE")

    def test_synthetic_object_streams(self):
        size = 5 * 1024 * 1024 + 3
        res = control("objects", {"bucket": "bkt", "name": "syn", "size": size, "seed": 7})
        self.assertEqual(res["size"], str(size))
        expected = gcs_emulator.synthetic_bytes(7, 0, size)
        self.assertEqual(res["md5Hash"], base64.b64encode(hashlib.md5(expected).digest()).decode())
        self.assertEqual(res["crc32c"], gcs_emulator.crc32c_b64(gcs_emulator.crc32c(expected)))
        got = call("GET", obj_path("bkt", "syn", "?alt=media"), headers={"Range": "bytes=1048570-2097160"})
        self.assertEqual(got.body, expected[1048570:2097161])
        no_md5 = control("objects", {"bucket": "bkt", "name": "syn2", "size": 10, "seed": 1, "md5": False})
        self.assertNotIn("md5Hash", no_md5)


def raw_get(path, headers=None, method="GET"):
    """One request on a raw socket; returns (head text, raw body bytes up to the close)."""
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    try:
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1", "Authorization: Bearer owner",
                 "Connection: close"]
        lines += ["%s: %s" % item for item in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


class QuirksTest(EmulatorTest):
    """/_emu/quirks: media without ETag and/or without Content-Length, globally or per bucket."""

    MEDIA_PATHS = ("/storage/v1/b/%s/o/q?alt=media", "/download/storage/v1/b/%s/o/q?alt=media", "/%s/q")

    def setUp(self):
        super().setUp()
        control("buckets", {"name": "odd"})
        self.data = os.urandom(300000)
        self.res = {b: upload(b, "q", self.data).json() for b in ("bkt", "odd")}

    def test_no_etag(self):
        control("quirks", {"media_etag": False})
        for bucket in ("bkt", "odd"):
            gen = self.res[bucket]["generation"]
            for path in self.MEDIA_PATHS:
                path %= bucket
                got = call("GET", path)
                self.assertEqual((got.status, got.body), (200, self.data), path)
                self.assertIsNone(got.header("etag"), path)
                self.assertEqual(got.header("x-goog-generation"), gen)
                self.assertEqual(got.header("content-length"), str(len(self.data)))
                ranged = call("GET", path, headers={"Range": "bytes=10-19"})
                self.assertEqual((ranged.status, ranged.body, ranged.header("etag")), (206, self.data[10:20], None))
            head = call("HEAD", "/%s/q" % bucket)
            self.assertEqual((head.status, head.header("etag"), head.header("x-goog-generation")), (200, None, gen))
            # A revalidation by generation still works, and its 304 carries no ETag either.
            nm = call("GET", obj_path(bucket, "q", "?alt=media&ifGenerationNotMatch=" + gen))
            self.assertEqual((nm.status, nm.header("etag"), nm.header("x-goog-generation")), (304, None, gen))
            # Only media: the JSON resource keeps its etag, and writes answer with theirs.
            self.assertEqual(call("GET", obj_path(bucket, "q")).json()["etag"], self.res[bucket]["etag"])
            self.assertIsNotNone(call("PUT", "/%s/w" % bucket, b"w").header("etag"))
        control("quirks", method="DELETE")
        self.assertIsNotNone(call("GET", "/bkt/q").header("etag"))

    def test_no_content_length_is_chunked(self):
        control("quirks", {"media_content_length": False})
        for path in self.MEDIA_PATHS:
            path %= "bkt"
            got = call("GET", path)
            self.assertEqual((got.status, got.body), (200, self.data), path)
            self.assertIsNone(got.header("content-length"), path)
            self.assertIsNone(got.header("x-goog-stored-content-length"), path)
            self.assertEqual(got.header("transfer-encoding"), "chunked", path)
            self.assertIsNotNone(got.header("etag"), path)
            ranged = call("GET", path, headers={"Range": "bytes=100-"})
            self.assertEqual((ranged.status, ranged.body), (206, self.data[100:]))
            self.assertEqual(ranged.header("content-range"), "bytes 100-%d/%d" % (len(self.data) - 1, len(self.data)))
            self.assertIsNone(ranged.header("content-length"))
        head = call("HEAD", "/bkt/q")
        self.assertEqual((head.status, head.body, head.header("content-length")), (200, b"", None))
        # The framing on the wire: chunks, then the last chunk that ends the body cleanly.
        head, body = raw_get("/bkt/q")
        self.assertIn("Transfer-Encoding: chunked", head)
        self.assertNotIn("Content-Length", head)
        self.assertTrue(body.endswith(b"\r\n0\r\n\r\n"), body[-20:])
        # Keep-alive survives chunked bodies, and other answers keep their lengths.
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        for _ in range(2):
            self.assertEqual(call("GET", "/bkt/q", conn=conn).body, self.data)
            listing = call("GET", "/storage/v1/b/bkt/o", conn=conn)
            self.assertEqual(listing.header("content-length"), str(len(listing.body)))
        conn.close()
        # A body cut by a fault has no last chunk: the client can tell.
        control("faults", {"reset_after_bytes": 5000, "match": "/q"})
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        conn.request("GET", "/bkt/q", headers={"Authorization": "Bearer owner"})
        resp = conn.getresponse()
        with self.assertRaises((http.client.IncompleteRead, ConnectionResetError)):
            resp.read()
        conn.close()
        control("faults", method="DELETE")
        # Empty objects: just the last chunk.
        upload("bkt", "empty", b"")
        self.assertEqual(raw_get("/bkt/empty")[1], b"0\r\n\r\n")

    def test_per_bucket_and_reset(self):
        control("quirks", {"bucket": "odd", "media_etag": False, "media_content_length": False})
        odd, plain = call("GET", "/odd/q"), call("GET", "/bkt/q")
        self.assertEqual((odd.body, odd.header("etag"), odd.header("content-length")), (self.data, None, None))
        self.assertEqual((plain.body, plain.header("content-length")), (self.data, str(len(self.data))))
        self.assertIsNotNone(plain.header("etag"))
        # A global entry applies to buckets without one of their own.
        control("quirks", {"media_etag": False})
        self.assertIsNone(call("GET", "/bkt/q").header("etag"))
        self.assertEqual(call("GET", "/bkt/q").header("content-length"), str(len(self.data)))
        self.assertIsNone(call("GET", "/odd/q").header("content-length"))
        listed = control("quirks", method="GET")["quirks"]
        self.assertEqual(len(listed), 2, listed)
        bad = call("POST", "/_emu/quirks", {"media_etag": False, "nonsense": True}, token=None)
        self.assertEqual(bad.status, 400)
        control("reset")
        control("buckets", {"name": "odd"})
        upload("odd", "q", b"x")
        self.assertEqual(control("quirks", method="GET")["quirks"], [])
        self.assertIsNotNone(call("GET", "/odd/q").header("etag"))


class NotModifiedHeadersTest(EmulatorTest):
    """A 304 to a read carries what a 200 would say about the representation, nothing of the body."""

    BODY_HEADERS = ("content-type", "content-length", "content-range", "transfer-encoding", "accept-ranges",
                    "x-goog-stored-content-length", "x-goog-stored-content-encoding", "content-encoding")

    def test_304s_carry_validators_and_metadata(self):
        data = os.urandom(20000)
        res = upload("bkt", "nm", data, "text/old").json()
        gen = res["generation"]
        patched = call("PATCH", obj_path("bkt", "nm"), {"contentType": "text/new", "metadata": {"k": "new"},
                                                       "cacheControl": "public, max-age=77"}).json()
        self.assertEqual(patched["metageneration"], "2")
        xml_etag = '"%s"' % hashlib.md5(data).hexdigest()
        json_full = call("GET", obj_path("bkt", "nm", "?alt=media"))
        xml_full = call("GET", "/bkt/nm")
        cases = [
            ("xml If-None-Match", "/bkt/nm", {"If-None-Match": xml_etag}, xml_full),
            ("xml If-Modified-Since", "/bkt/nm", {"If-Modified-Since": xml_full.header("last-modified")}, xml_full),
            ("json If-None-Match", obj_path("bkt", "nm", "?alt=media"), {"If-None-Match": json_full.header("etag")},
             json_full),
            ("json ifGenerationNotMatch", obj_path("bkt", "nm", "?alt=media&ifGenerationNotMatch=" + gen), {},
             json_full),
            ("json ifMetagenerationNotMatch", obj_path("bkt", "nm", "?alt=media&ifMetagenerationNotMatch=2"), {},
             json_full),
            ("download ifGenerationNotMatch with Range",
             "/download/storage/v1/b/bkt/o/nm?alt=media&ifGenerationNotMatch=" + gen, {"Range": "bytes=0-9"},
             json_full),
        ]
        for label, path, headers, full in cases:
            reply = call("GET", path, headers=headers)
            self.assertEqual((reply.status, reply.body), (304, b""), label)
            for name in ("etag", "x-goog-generation", "x-goog-metageneration", "x-goog-hash", "cache-control",
                         "last-modified"):
                self.assertEqual(reply.header(name), full.header(name), (label, name))
            for name in self.BODY_HEADERS:
                self.assertIsNone(reply.header(name), (label, name))
            metas = {k: v for k, v in reply.headers.items() if k.startswith("x-goog-meta-")}
            self.assertEqual(metas, {k: v for k, v in full.headers.items() if k.startswith("x-goog-meta-")}, label)
            self.assertEqual(reply.header("x-goog-metageneration"), "2", label)
            self.assertEqual(reply.header("cache-control"), "public, max-age=77", label)
        # The XML 304 says what changed in the metadata; the XML ETag (the MD5) did not change.
        reply = call("GET", "/bkt/nm", headers={"If-None-Match": xml_etag})
        self.assertEqual((reply.header("etag"), reply.header("x-goog-meta-k")), (xml_etag, "new"))
        # A metadata read's 304 carries the resource's caching headers.
        meta = call("GET", obj_path("bkt", "nm", "?ifMetagenerationNotMatch=2"))
        self.assertEqual((meta.status, meta.body, meta.header("content-type")), (304, b"", None))
        self.assertEqual(meta.header("cache-control"), gcs_emulator.NO_CACHE)


class IfRangeTest(EmulatorTest):
    """RFC 9110 13.1.5 on media reads."""

    def setUp(self):
        super().setUp()
        self.data = os.urandom(5000)
        self.res = upload("bkt", "ir", self.data).json()
        self.json_etag = self.res["etag"]
        self.xml_etag = '"%s"' % hashlib.md5(self.data).hexdigest()
        self.modified = call("GET", "/bkt/ir").header("last-modified")

    def check(self, path, if_range, expect, method="GET", data=None, rng="bytes=100-199"):
        data = self.data if data is None else data
        headers = {"If-Range": if_range} if if_range is not None else {}
        if rng is not None:
            headers["Range"] = rng
        reply = call(method, path, headers=headers)
        if expect == 206:
            self.assertEqual((reply.status, reply.header("content-range")),
                             (206, "bytes 100-199/%d" % len(data)), (path, if_range))
            if method == "GET":
                self.assertEqual(reply.body, data[100:200], (path, if_range))
        else:
            self.assertEqual((reply.status, reply.header("content-range")), (200, None), (path, if_range))
            self.assertEqual(reply.header("content-length"), str(len(data)), (path, if_range))
            if method == "GET":
                self.assertEqual(reply.body, data, (path, if_range))

    def test_if_range(self):
        other_date = email_date_shift(self.modified, -3600)
        for path in (obj_path("bkt", "ir", "?alt=media"), "/download/storage/v1/b/bkt/o/ir?alt=media", "/bkt/ir"):
            for method in ("GET", "HEAD") if path == "/bkt/ir" else ("GET",):
                for tag in (self.json_etag, '"%s"' % self.json_etag, self.xml_etag, self.xml_etag.strip('"'),
                            self.modified):
                    self.check(path, tag, 206, method)
                for tag in ('"nope"', "W/" + self.xml_etag, "W/\"%s\"" % self.json_etag, other_date,
                            email_date_shift(self.modified, 1)):
                    self.check(path, tag, 200, method)
                self.check(path, None, 206, method)
                self.check(path, self.xml_etag, 200, method, rng=None)   # no Range: If-Range is ignored
                self.check(path, '"nope"', 200, method, rng=None)
        # After an overwrite the old validators no longer match: the whole new object.
        new = os.urandom(7000)
        upload("bkt", "ir", new)
        for path in (obj_path("bkt", "ir", "?alt=media"), "/bkt/ir"):
            for tag in (self.json_etag, self.xml_etag):
                self.check(path, tag, 200, data=new)
        # An unsatisfiable Range under a failed If-Range is ignored too.
        reply = call("GET", "/bkt/ir", headers={"Range": "bytes=90000-", "If-Range": '"nope"'})
        self.assertEqual((reply.status, reply.body), (200, new))
        self.assertEqual(call("GET", "/bkt/ir", headers={"Range": "bytes=90000-"}).status, 416)


def email_date_shift(value, seconds):
    return email.utils.formatdate(email.utils.parsedate_to_datetime(value).timestamp() + seconds, usegmt=True)


class GenerationReadTest(EmulatorTest):
    """generation= on XML reads; generation preconditions on JSON and XML media reads, with Range."""

    def test_generation_and_preconditions_with_range(self):
        old = upload("bkt", "gr", b"old bytes").json()
        data = bytes(range(256)) * 10
        gen = upload("bkt", "gr", data).json()["generation"]
        wrong = old["generation"]
        for method in ("GET", "HEAD"):
            reply = call(method, "/bkt/gr?generation=" + gen)
            self.assertEqual((reply.status, reply.header("x-goog-generation")), (200, gen), method)
            self.assertEqual(reply.header("content-length"), str(len(data)))
            ranged = call(method, "/bkt/gr?generation=" + gen, headers={"Range": "bytes=5-9"})
            self.assertEqual((ranged.status, ranged.header("content-range")), (206, "bytes 5-9/%d" % len(data)))
            self.assertEqual(call(method, "/bkt/gr?generation=" + wrong).status, 404, method)
        self.assertEqual(call("GET", "/bkt/gr?generation=" + gen, headers={"Range": "bytes=5-9"}).body, data[5:10])
        self.assertIn(b"<Code>NoSuchKey</Code>", call("GET", "/bkt/gr?generation=" + wrong).body)
        media = lambda q, rng="bytes=10-19": call("GET", obj_path("bkt", "gr", "?alt=media&" + q),
                                                 headers={"Range": rng})
        self.assertEqual((media("ifGenerationMatch=" + gen).status, media("ifGenerationMatch=" + gen).body),
                         (206, data[10:20]))
        self.assertEqual(media("ifGenerationMatch=" + wrong).status, 412)
        self.assertEqual(media("ifGenerationNotMatch=" + gen).status, 304)
        self.assertEqual(media("ifGenerationNotMatch=" + wrong).body, data[10:20])
        self.assertEqual(media("generation=%s&ifGenerationMatch=%s" % (gen, gen)).status, 206)
        self.assertEqual(media("ifGenerationMatch=" + gen, rng="bytes=99999-").status, 416)
        xml = lambda g: call("GET", "/bkt/gr", headers={"Range": "bytes=10-19", "x-goog-if-generation-match": g})
        self.assertEqual((xml(gen).status, xml(gen).body), (206, data[10:20]))
        failed = xml(wrong)
        self.assertEqual(failed.status, 412)
        self.assertIn(b"<Code>PreconditionFailed</Code>", failed.body)
        head = call("HEAD", "/bkt/gr", headers={"x-goog-if-generation-match": wrong})
        self.assertEqual(head.status, 412)


class MetadataPatchTest(EmulatorTest):
    """A metadata change keeps the bytes and the XML ETag (the MD5) and bumps the metageneration."""

    def test_control_and_json_patch(self):
        data = os.urandom(10000)
        res = control("objects", {"bucket": "bkt", "name": "mp", "data_b64": base64.b64encode(data).decode(),
                                  "content_type": "text/old", "metadata": {"k": "old", "gone": "x"}})
        xml_before = call("GET", "/bkt/mp")
        json_before = call("GET", obj_path("bkt", "mp", "?alt=media"))
        self.assertEqual(xml_before.header("etag"), '"%s"' % hashlib.md5(data).hexdigest())
        self.assertEqual((xml_before.header("x-goog-metageneration"), xml_before.header("x-goog-meta-k")), ("1", "old"))
        patched = control("objects", {"bucket": "bkt", "name": "mp", "content_type": "text/new",
                                      "metadata": {"k": "new", "gone": None}}, method="PATCH")
        self.assertEqual((patched["metageneration"], patched["generation"]), ("2", res["generation"]))
        self.assertEqual((patched["contentType"], patched["metadata"]), ("text/new", {"k": "new"}))
        xml_after = call("GET", "/bkt/mp")
        self.assertEqual((xml_after.body, xml_after.header("etag")), (data, xml_before.header("etag")))
        self.assertEqual((xml_after.header("x-goog-metageneration"), xml_after.header("content-type"),
                          xml_after.header("x-goog-meta-k"), xml_after.header("x-goog-meta-gone")),
                         ("2", "text/new", "new", None))
        self.assertEqual(xml_after.header("x-goog-generation"), res["generation"])
        self.assertEqual(xml_after.header("x-goog-hash"), xml_before.header("x-goog-hash"))
        json_after = call("GET", obj_path("bkt", "mp", "?alt=media"))
        self.assertEqual((json_after.body, json_after.header("x-goog-metageneration")), (data, "2"))
        # JSON ETags carry the metageneration.
        self.assertNotEqual(json_after.header("etag"), json_before.header("etag"))
        # The same through the JSON API.
        call("PATCH", obj_path("bkt", "mp"), {"contentType": "text/third", "metadata": {"k": "third"}})
        xml_third = call("GET", "/bkt/mp")
        self.assertEqual((xml_third.header("etag"), xml_third.header("x-goog-metageneration"),
                          xml_third.header("content-type"), xml_third.header("x-goog-meta-k")),
                         (xml_before.header("etag"), "3", "text/third", "third"))
        missing = call("PATCH", "/_emu/objects", {"bucket": "bkt", "name": "nope"}, token=None)
        self.assertEqual(missing.status, 404)


class HoldAndReleaseTest(EmulatorTest):
    """hold_ms keeps a request at the emulator, and a stall goes on, until POST /_emu/release."""

    def wait_for(self, predicate, what):
        deadline = time.monotonic() + 10
        while not predicate():
            self.assertLess(time.monotonic(), deadline, what)
            time.sleep(0.02)

    def test_hold_until_release(self):
        control("faults", {"hold_ms": 30000, "method": "PUT", "match": "/held"})
        result = {}
        writer = threading.Thread(target=lambda: result.update(reply=call("PUT", "/bkt/held", b"v2")))
        writer.start()
        self.wait_for(lambda: control("faults", method="GET")["waiting"] == 1, "the PUT never got held")
        self.assertEqual(call("GET", "/bkt/held").status, 404)  # not applied while held; reads are not held
        started = time.monotonic()
        control("release")
        writer.join(10)
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(result["reply"].status, 200)
        self.assertEqual(call("GET", "/bkt/held").body, b"v2")
        self.assertEqual(control("faults", method="GET")["waiting"], 0)

    def test_hold_response_until_release(self):
        upload("bkt", "hr", b"v1")
        control("faults", {"hold_response_ms": 30000, "match": "/hr", "times": 1})
        result = {}
        reader = threading.Thread(target=lambda: result.update(reply=call("GET", "/bkt/hr")))
        reader.start()
        self.wait_for(lambda: control("faults", method="GET")["waiting"] == 1, "the GET never got held")
        # The read was answered when it arrived, so what it sends is the object as it was then.
        upload("bkt", "hr", b"v2")
        self.assertEqual(control("counters", method="GET")["log"][-2]["path"], "/bkt/hr")
        self.assertEqual(call("GET", "/bkt/hr").body, b"v2")  # times: 1, so not held
        control("release")
        reader.join(10)
        self.assertEqual((result["reply"].status, result["reply"].body), (200, b"v1"))

    def test_stall_ends_on_release(self):
        data = os.urandom(200000)
        upload("bkt", "st", data)
        control("faults", {"stall_ms": 30000, "stall_after_bytes": 1000, "match": "/st"})
        result = {}
        reader = threading.Thread(target=lambda: result.update(reply=call("GET", "/bkt/st")))
        reader.start()
        self.wait_for(lambda: control("faults", method="GET")["waiting"] == 1, "the body never stalled")
        started = time.monotonic()
        control("release")
        reader.join(10)
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(result["reply"].body, data)
        # Clearing the plan releases too.
        control("faults", {"hold_ms": 30000, "match": "/st"})
        reader = threading.Thread(target=lambda: result.update(reply=call("GET", "/bkt/st")))
        reader.start()
        self.wait_for(lambda: control("faults", method="GET")["waiting"] == 1, "the GET never got held")
        control("faults", method="DELETE")
        reader.join(10)
        self.assertEqual(result["reply"].body, data)


class AggregateBandwidthTest(EmulatorTest):
    """aggregate_bandwidth_bps: one rate shared by every matching response being sent at once, with
    bandwidth_bps as each one's own cap. Only upper bounds on rates are asserted (a response may always
    take longer than its share says), so these hold on a machine of any speed."""

    MB = 1000 * 1000

    @staticmethod
    def least(nbytes, rate):
        """The shortest time nbytes can take at rate: a line may catch up on a few ms it fell behind."""
        return nbytes / float(rate) - gcs_emulator.SHAPING_CATCH_UP

    def concurrent_gets(self, names, range_header=None):
        """GET the objects at once (a thread each, started together); returns, per name, (seconds from
        the common start to its last byte, its body's length, its status)."""
        results, barrier = {}, threading.Barrier(len(names))

        def get(name):
            headers = {"Range": range_header} if range_header else None
            barrier.wait()
            started = time.monotonic()
            reply = call("GET", "/bkt/" + name, headers=headers)
            results[name] = (time.monotonic() - started, len(reply.body), reply.status)

        threads = [threading.Thread(target=get, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        self.assertEqual(sorted(results), sorted(names))
        return results

    def add_objects(self, size, *names):
        for seed, name in enumerate(names, start=40):
            control("objects", {"bucket": "bkt", "name": name, "size": size, "seed": seed})

    def test_shared_among_concurrent_responses(self):
        size = 4 * MIB
        self.add_objects(size, "agg-a", "agg-b")
        control("faults", {"aggregate_bandwidth_bps": 8 * self.MB, "match": "/agg-"})
        started = time.monotonic()
        results = self.concurrent_gets(["agg-a", "agg-b"])
        total = time.monotonic() - started
        self.assertEqual([r[1:] for r in results.values()], [(size, 200)] * 2)
        # 8 MiB through 8 MB/s: at least 1.04 s, however fast the machine.
        self.assertGreaterEqual(total, self.least(2 * size, 8 * self.MB))
        # Shared turn by turn, not one response after the other (which would end the first one after
        # 0.52 s): while both run, neither gets much more than half. 0.7 s, not 1.05 s, leaves room for
        # one of them starting up to ~0.3 s late and having the line to itself meanwhile.
        self.assertGreaterEqual(min(r[0] for r in results.values()), 0.7, results)
        # Responses that do not match are not held back by it.
        control("objects", {"bucket": "bkt", "name": "other", "size": size, "seed": 3})
        self.assertEqual(len(call("GET", "/bkt/other").body), size)

    def test_per_connection_cap_and_latency_combine(self):
        size = 2 * MIB
        self.add_objects(size, "pc-a", "pc-b")
        control("faults", {"latency_ms": 200, "bandwidth_bps": 2 * self.MB,
                           "aggregate_bandwidth_bps": 100 * self.MB, "match": "/pc-"})
        results = self.concurrent_gets(["pc-a", "pc-b"])
        for name, (seconds, length, status) in results.items():
            self.assertEqual((length, status), (size, 200))
            # The aggregate would allow 50 MB/s each; each connection's own cap holds it to 2 MB/s.
            self.assertGreaterEqual(seconds, 0.2 + self.least(size, 2 * self.MB), name)
        # A ranged read is shaped the same way, after the latency.
        started = time.monotonic()
        ranged = call("GET", "/bkt/pc-a", headers={"Range": "bytes=0-999999"})
        self.assertEqual((ranged.status, len(ranged.body)), (206, 1000000))
        self.assertGreaterEqual(time.monotonic() - started, 0.2 + self.least(1000000, 2 * self.MB))
        # One connection, keep-alive: its responses go one after the other, each at most 2 MB/s.
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        started = time.monotonic()
        for _ in range(2):
            self.assertEqual(len(call("GET", "/bkt/pc-b", conn=conn, headers={"Range": "bytes=0-499999"}).body),
                             500000)
        conn.close()
        self.assertGreaterEqual(time.monotonic() - started, 2 * (0.2 + self.least(500000, 2 * self.MB)))

    def test_no_burst_after_idle(self):
        size = MIB
        self.add_objects(size, "idle")
        control("faults", {"aggregate_bandwidth_bps": 2 * self.MB, "match": "/idle"})
        for attempt in range(2):
            started = time.monotonic()
            self.assertEqual(len(call("GET", "/bkt/idle").body), size)
            self.assertGreaterEqual(time.monotonic() - started, self.least(size, 2 * self.MB), attempt)
            time.sleep(0.6)  # the line idles longer than a whole body takes: nothing saved up

    def test_times_reset_and_validation(self):
        for bad in (0, -5, "fast", True, None):
            reply = call("POST", "/_emu/faults", {"aggregate_bandwidth_bps": bad}, token=None)
            if bad is None:
                self.assertEqual(reply.status, 200)  # null: no aggregate, like leaving the key out
            else:
                self.assertEqual(reply.status, 400, bad)
        size = MIB
        self.add_objects(size, "t-a")
        control("faults", {"aggregate_bandwidth_bps": 2 * self.MB, "match": "/t-a", "times": 1})
        started = time.monotonic()
        self.assertEqual(len(call("GET", "/bkt/t-a").body), size)
        self.assertGreaterEqual(time.monotonic() - started, self.least(size, 2 * self.MB))
        self.assertEqual(len(call("GET", "/bkt/t-a").body), size)  # times: 1, so the second is not shaped
        self.assertEqual(control("faults", method="GET")["spec"]["aggregate_bandwidth_bps"], 2 * self.MB)
        control("reset")
        self.assertEqual(control("faults", method="GET")["spec"], {})


class TlsTest(unittest.TestCase):
    @unittest.skipUnless(shutil.which("openssl"), "openssl not installed")
    def test_https_listener(self):
        tmp = tempfile.mkdtemp(prefix="gcs-emu-tls-")
        try:
            cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                            "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
            proc, port, ptmp = start_emulator("--tls-cert", cert, "--tls-key", key)
            try:
                context = ssl.create_default_context(cafile=cert)
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
                call("POST", "/_emu/buckets", {"name": "tls"}, token=None, conn=conn)
                res = call("POST", "/upload/storage/v1/b/tls/o?uploadType=media&name=t", b"secure", conn=conn).json()
                self.assertTrue(res["mediaLink"].startswith("https://127.0.0.1:%d/" % port))
                self.assertEqual(call("GET", "/tls/t", conn=conn).body, b"secure")
                conn.close()
            finally:
                stop_emulator(proc, ptmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
