#!/usr/bin/env python3
"""test_batch_clients.py - real clients work in a batch: each sends X-Larder-Batch its own way.

Issue 9: "gsutil -h, gcloud storage --additional-headers, the Node SDK and curl -H can all send the
header; test each." Every test creates a batch with the bearer token its client sends (so the client
is the batch's owner), then, with X-Larder-Batch: ID set through that client's own mechanism, uploads
objects through larder and downloads one the emulator holds. The witnesses:

  (a) the batch's own view (GET /_larder/v1/batches/ID) lists exactly the objects the client moved,
      the download "read" and each upload "written", with their sizes: a client that did not send the
      header on the request that reads the media, or on the one that completes an upload, leaves its
      object out and fails the test;
  (b) the emulator's log: no request that reached upstream carried X-Larder-Batch (larder's own);
  (c) every object read back through larder afterwards, by the same client without the header, is a
      HIT: no media request upstream, larder's access log says HIT (curl: X-Cache: HIT).

The clients: gsutil (`gsutil -h "X-Larder-Batch: ID" cp`, over larder's TLS listener), `gcloud storage
cp --additional-headers=X-Larder-Batch=ID`, the Node @google-cloud/storage SDK (a request interceptor:
tests/clients/node/batch_client.js) and curl -H (a media upload, an alt=media download). Resumable
uploads, whose pin is made on the request that completes them, so the client must send the header on
every request of the session: gsutil 20 MiB and gcloud 10 MiB (a POST, then one PUT), the Node SDK's
createWriteStream in 256 KiB chunks (PUTs answered 308, then the last), and curl in 256 KiB chunks,
with and without fields= on the POST (gsutil asks for fields= on every upload).

The clients send owner@'s tokens, as in test_upload_clients.py; owner@ is an admin, so these tests do
not judge who may pin (test_batches.py does). Every test here fails on the code before batches
(e3d1ec4): POST /_larder/v1/batches answered 404. The file takes 30 to 50 s with every client present.
A missing client skips its test (SKIP with the reason; the file then exits 77 if nothing failed), never
a pass.
"""

import collections
import json
import os
import re
import sys
import urllib.parse
import zlib

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_upload_clients as tuc  # noqa: E402  (helpers only: its test classes are not collected here)

SMALL = 5000                      # gsutil / gcloud: one multipart POST
DOWN = 300000                     # the object each client downloads (the emulator makes it)
NODE_SCRIPT = os.path.join(tuc.NODE_DIR, "batch_client.js")
GSUTIL_TOKEN = "owner"            # what the emulator's /token hands gsutil (owner@example.com)

# A client as the tests drive it: name, the bearer token it sends, upload(batch_id, name, src) and
# download(batch_id, name, dst) in a batch, read_back(name, dst) outside any.
Client = collections.namedtuple("Client", "name token upload download read_back")


class BatchClientsTest(tuc.UploadCase):
    """Under ttl:300 an owner's read of an entry asks upstream nothing: the read-back is a pure HIT."""
    larder_config = {"cache": {"enabled": True, "default_policy": tuc.TTL}}

    # -- the batch ------------------------------------------------------------------

    def batches(self, method, path, token, body=None, status=200):
        headers = tuc.bearer(token)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        got, _, answer = self.larder.request(method, "/_larder/v1/batches" + path, body=data, headers=headers)
        self.assertEqual(got, status, answer[:500])
        return json.loads(answer)

    def start_batch(self, client, token):
        """A batch owned by the identity token names (the one the client sends), ended when the test ends."""
        batch_id = "%s-%s" % (client, self.bucket)
        created = self.batches("POST", "", token, {"id": batch_id, "ttl": 600,
                                                   "scratch_prefixes": ["gs://%s/out/" % self.bucket]}, 201)
        self.assertEqual((created["id"], created["owner"]), (batch_id, tuc.OWNER_EMAIL))
        self.addCleanup(self.batches, "DELETE", "/" + batch_id, token)
        return batch_id

    def download_source(self, name, size=DOWN):
        """An object made at the emulator (not through larder): the batch learns of it only by the download."""
        self.put_object(name, size=size, seed=zlib.crc32(name.encode()))
        return self.object_bytes(name)

    def assert_pinned(self, batch_id, token, read, written, why=""):
        """The batch holds exactly these objects: read {name: bytes} marked read, written {name: bytes} written.
        why: more for the failure's message."""
        shown = self.batches("GET", "/" + batch_id, token)
        got = sorted((o["url"], o["bytes"], o["read"], o["written"]) for o in shown["objects"])
        url = "gs://%s/%%s" % self.bucket
        want = sorted([(url % n, len(d), True, False) for n, d in read.items()] +
                      [(url % n, len(d), False, True) for n, d in written.items()])
        self.assertEqual(got, want, "the batch's objects: X-Larder-Batch did not reach larder on the request that "
                                    "reads an object's media or completes its upload, or larder did not pin it there"
                                    + why)
        self.assertEqual(shown["pinned_objects"], len(want))
        self.assertGreaterEqual(shown["pinned_bytes"], sum(w[1] for w in want))
        return shown

    def assert_header_stayed_in_larder(self):
        """larder consumes X-Larder-Batch: the emulator (which logs every x-larder-* header) never saw it."""
        _, entries = self.upstream_after(tuc.Checkpoint(0, 0, 0))
        self.assertTrue(entries, "nothing reached upstream")
        leaked = [tuc.brief(e) for e in entries if "x-larder-batch" in {k.lower() for k in e.get("headers", {})}]
        self.assertEqual(leaked, [], "X-Larder-Batch reached upstream")

    def batch_round(self, client, uploads, down_name=None):
        """The common course, in a new batch of the client's owner: client.upload each of uploads {name: bytes}
        and client.download down_name (if any); check the batch's objects; then client.read_back every object
        without the header: each a HIT with the right bytes. Returns the batch's id."""
        batch_id = self.start_batch(client.name, client.token)
        read = {}
        if down_name is not None:
            read[down_name] = self.download_source(down_name)
        for name, data in uploads.items():
            client.upload(batch_id, name, self.file_with(name.replace("/", "_"), data))
        for name, data in read.items():
            dst = self.out_path(client.name + "-down.bin")
            client.download(batch_id, name, dst)
            self.assertEqual(harness.sha256_file(dst), tuc.sha(data), "%s download" % client.name)
        self.assert_pinned(batch_id, client.token, read, uploads)
        self.assert_header_stayed_in_larder()
        self.read_back(client, dict(uploads, **read))
        return batch_id

    def read_back(self, client, objects):
        """Each of objects {name: bytes}, read through larder by the client outside any batch, is a HIT."""
        self.settle()
        for name, data in objects.items():
            label = "%s read back of %s" % (client.name, name)
            cp = self.checkpoint()
            dst = self.out_path(client.name + "-back.bin")
            client.read_back(name, dst)
            self.assertEqual(harness.sha256_file(dst), tuc.sha(data), label)
            self.assert_from_cache(cp, label)
            self.assert_logged(cp, label)

    def gs(self, name):
        return "gs://%s/%s" % (self.bucket, name)

    # -- gsutil -h (TLS listener) -----------------------------------------------------

    def gsutil(self):
        self.need("gsutil")
        env = self.gsutil_env()

        def cp(src, dst, batch_id=None):
            flags = ["-h", "X-Larder-Batch: " + batch_id] if batch_id else []
            self.run_client(["gsutil"] + flags + ["cp", src, dst], env)

        return Client("gsutil", GSUTIL_TOKEN, lambda b, name, src: cp(src, self.gs(name), b),
                      lambda b, name, dst: cp(self.gs(name), dst, b), lambda name, dst: cp(self.gs(name), dst))

    def test_gsutil_h(self):
        self.batch_round(self.gsutil(), {"out/small.bin": tuc.payload(SMALL, "gsutil-small")}, "in/gsutil.bin")
        self.assertEqual(len(self.uploads_upstream("POST", "uploadType=multipart")), 1)

    def test_gsutil_h_resumable(self):
        """Over 8 MiB gsutil uploads resumably: a POST, then one PUT, both with the header (gsutil -D shows
        it). The POST asks for fields= (etag,crc32c,...: gsutil does on every upload), so the PUT's answer
        names neither bucket nor object (test_curl_h_resumable has the same case with curl)."""
        self.batch_round(self.gsutil(), {"out/large.bin": tuc.payload(tuc.GSUTIL_LARGE, "gsutil-large")})
        self.assertEqual(len(self.uploads_upstream("POST", "uploadType=resumable")), 1)
        self.assertEqual([e["status"] for e in self.uploads_upstream("PUT", "upload_id=")], [200])

    # -- gcloud storage --additional-headers --------------------------------------------

    def gcloud(self, log_http=None):
        """log_http: a list that gets, for each request gcloud made in a batch, (method, path, whether it
        carried X-Larder-Batch), from gcloud's --log-http."""
        self.need("gcloud")
        env = self.gcloud_env()

        def cp(src, dst, batch_id=None):
            flags = ["--additional-headers=X-Larder-Batch=" + batch_id] if batch_id else []
            if batch_id and log_http is not None:
                flags.append("--log-http")
            proc = self.run_client(["gcloud", "storage", "cp"] + flags + [src, dst], env)
            if batch_id and log_http is not None:
                log_http.extend(logged_requests(proc.stderr.decode(errors="replace")))

        return Client("gcloud", tuc.TOK_OWNER, lambda b, name, src: cp(src, self.gs(name), b),
                      lambda b, name, dst: cp(self.gs(name), dst, b), lambda name, dst: cp(self.gs(name), dst))

    def test_gcloud_additional_headers(self):
        self.batch_round(self.gcloud(), {"out/small.bin": tuc.payload(SMALL, "gcloud-small")}, "in/gcloud.bin")
        self.assertEqual(len(self.uploads_upstream("POST", "uploadType=multipart")), 1)

    def test_gcloud_additional_headers_resumable(self):
        """Over 8 MiB gcloud uploads resumably: a POST, then one PUT, which completes the upload. gcloud 528
        sends --additional-headers on the POST but not on the PUT (apitools sends an upload's bytes through
        its own http object, without the client's additional headers): its --log-http says which requests
        carried the header, for the failure's message."""
        sent = []
        client = self.gcloud(log_http=sent)
        data = tuc.payload(tuc.GCLOUD_LARGE, "gcloud-large")
        batch_id = self.start_batch(client.name, client.token)
        client.upload(batch_id, "out/large.bin", self.file_with("gcloud-large.bin", data))
        self.assertEqual(len(self.uploads_upstream("POST", "uploadType=resumable")), 1)
        self.assertEqual([e["status"] for e in self.uploads_upstream("PUT", "upload_id=")], [200])
        self.assert_pinned(batch_id, client.token, {}, {"out/large.bin": data},
                           "; gcloud's --log-http: X-Larder-Batch on %r, not on %r"
                           % tuple([(m, p) for m, p, carried in sent if carried == on] for on in (True, False)))
        self.read_back(client, {"out/large.bin": data})

    # -- the Node SDK: a request interceptor ----------------------------------------------

    def node_client(self):
        self.need("node")
        if not os.path.isdir(os.path.join(tuc.NODE_DIR, "node_modules", "@google-cloud", "storage")):
            self.skipTest("tests/clients/node/node_modules is missing: run `npm ci` in tests/clients/node")
        env = dict(harness.client_env(("STORAGE_EMULATOR_HOST", "GOOGLE_", "NODE_EXTRA_CA_CERTS")),
                   LARDER_TEST_TOKEN=tuc.TOK_OWNER)

        def in_batch(batch_id, command, *args):
            """batch_client.js once, as owner@ (tuc.TOK_OWNER), in batch_id; returns its JSON line."""
            cmd = ["node", NODE_SCRIPT, self.larder.url, self.bucket, batch_id, command] + [str(a) for a in args]
            proc = self.run_client(cmd, env, cwd=tuc.NODE_DIR, what="node batch_client.js %s %s" % (command, args))
            return json.loads(proc.stdout.decode().strip().splitlines()[-1])

        def upload(batch_id, name, src):
            size = os.path.getsize(src)
            if size > tuc.CHUNK:  # createWriteStream({resumable: true, chunkSize}): PUTs answered 308, then 200
                meta = in_batch(batch_id, "stream-upload", name, src, tuc.CHUNK)
            else:                 # file.save({resumable: false}): one multipart POST
                meta = in_batch(batch_id, "save", name, src)
            self.assertEqual(meta, {"name": name, "size": size})

        return Client("node", tuc.TOK_OWNER, upload, lambda b, name, dst: in_batch(b, "download", name, dst),
                      lambda name, dst: self.node("download", name, dst))

    def test_node_sdk_interceptor(self):
        self.batch_round(self.node_client(), {"out/saved.bin": tuc.payload(tuc.NODE_SMALL, "node-small")},
                         "in/node.bin")
        self.assertEqual(len(self.uploads_upstream("POST", "uploadType=multipart")), 1)

    def test_node_sdk_interceptor_resumable_chunks(self):
        self.batch_round(self.node_client(), {"out/chunked.bin": tuc.payload(tuc.NODE_RESUMABLE, "node-chunks")})
        self.assertEqual(len(self.uploads_upstream("POST", "uploadType=resumable")), 1)
        statuses = [e["status"] for e in self.uploads_upstream("PUT", "upload_id=")]
        # four full 256 KiB chunks answered 308, then the last completes the object (and pins it)
        self.assertEqual(statuses, [308] * (tuc.NODE_RESUMABLE // tuc.CHUNK) + [200], statuses)

    # -- curl -H --------------------------------------------------------------------------

    def curl_client(self, answers):
        """answers: a list that gets every curl result in a batch; read-backs must say X-Cache: HIT."""
        self.need("curl")

        def keep(r, dst=None):
            self.assertEqual(r.status, 200, r.body[:300])
            if dst is not None:
                with open(dst, "wb") as f:
                    f.write(r.body)
            return r

        def upload(batch_id, name, src):
            with open(src, "rb") as f:
                answers.append(keep(self.curl("POST", "/upload/storage/v1/b/%s/o?uploadType=media&name=%s"
                                              % (self.bucket, harness.quote_object(name)), tuc.TOK_OWNER,
                                              {"Content-Type": "application/x-batch", "X-Larder-Batch": batch_id},
                                              f.read())))

        def download(batch_id, name, dst):
            answers.append(keep(self.curl("GET", self.media(name), tuc.TOK_OWNER, {"X-Larder-Batch": batch_id}), dst))

        def read_back(name, dst):
            self.assertEqual(keep(self.curl("GET", self.media(name), tuc.TOK_OWNER), dst).header("x-cache"), "HIT")

        return Client("curl", tuc.TOK_OWNER, upload, download, read_back)

    def assert_advertised(self, batch_id, answers):
        """Each answer in the batch says how long its object is held: the batch's lifetime."""
        expires = self.batches("GET", "/" + batch_id, tuc.TOK_OWNER)["expires_at"]
        for r in answers:
            self.assertEqual(r.header("x-larder-available-until"), expires, r.headers)

    def test_curl_h(self):
        answers = []
        batch_id = self.batch_round(self.curl_client(answers), {"out/curl.bin": tuc.payload(200000, "curl-media")},
                                    "in/curl.bin")
        self.assertEqual(len(answers), 2)
        self.assert_advertised(batch_id, answers)

    def test_curl_h_resumable(self):
        """A resumable upload in 256 KiB chunks, the header on every request: the PUT that completes it pins
        its object and advertises the batch's lifetime. With fields= (gsutil asks for it on every upload)
        the answer that completes the upload names neither bucket nor object: the session does. (The
        selection keeps generation and the hashes, without which larder cannot make the upload an entry.)"""
        client = self.curl_client([])
        batch_id = self.start_batch(client.name, client.token)
        in_batch = {"X-Larder-Batch": batch_id}
        uploads = {}
        for name, query in (("out/res-whole.bin", ""), ("out/res-fields.bin", "&fields=generation%2Csize%2Cmd5Hash%2Ccrc32c")):
            with self.subTest(fields=query):
                data = uploads[name] = tuc.payload(2 * tuc.CHUNK + 321, name)
                r = self.curl("POST", "/upload/storage/v1/b/%s/o?uploadType=resumable&name=%s%s"
                              % (self.bucket, harness.quote_object(name), query), tuc.TOK_OWNER,
                              dict(in_batch, **{"Content-Type": "application/json"}), b"{}")
                self.assertEqual(r.status, 200, r.body[:300])
                location = r.header("location")
                last = None
                for first in range(0, len(data), tuc.CHUNK):
                    part = data[first:first + tuc.CHUNK]
                    total = len(data) if first + len(part) == len(data) else "*"
                    last = self.curl("PUT", location, None, dict(in_batch, **{
                        "Content-Range": "bytes %d-%d/%s" % (first, first + len(part) - 1, total)}), part)
                    self.assertEqual(last.status, 200 if total != "*" else 308, last.body[:300])
                shown = self.batches("GET", "/" + batch_id, client.token)
                self.assertIn(self.gs(name), [o["url"] for o in shown["objects"]],
                              "the PUT that completed the upload did not pin its object; its answer: %r"
                              % last.body[:300])
                self.assert_advertised(batch_id, [last])
        self.assert_pinned(batch_id, client.token, {}, uploads)
        self.read_back(client, uploads)


def logged_requests(log):
    """(method, path, whether it carried X-Larder-Batch) of each request in gcloud's --log-http output."""
    found = []
    for block in log.split("==== request start ====")[1:]:
        head = block.split("== headers end ==")[0]
        uri = re.search(r"^uri: (\S+)", head, re.M)
        method = re.search(r"^method: (\S+)", head, re.M)
        path = urllib.parse.urlsplit(uri.group(1)).path if uri else "?"
        found.append((method.group(1) if method else "?", path, "x-larder-batch" in head.lower()))
    return found


if __name__ == "__main__":
    harness.main()
