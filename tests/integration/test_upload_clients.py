#!/usr/bin/env python3
"""test_upload_clients.py - an upload through larder becomes the cache entry: the next read is a HIT.

Once upstream confirmed an upload (a 2xx), the bytes the client uploaded are
the cache entry of the new generation, owned by the uploader, so the next
read through larder is answered from the cache and fetches nothing from
upstream. Each test uploads through larder with a real client and reads the
object back through larder, and checks:

  (a) the bytes read are the bytes uploaded (sha256);
  (b) the read came from the cache: the emulator's request log, read from a
      mark taken just before the read, shows no media GET (kinds media_get,
      xml_get) and the emulator's media_bytes_sent did not move; curl reads
      must carry X-Cache: HIT, and larder's access log line of every media
      read a client made says HIT;
  (c) for curl reads, the headers that describe the object (validators,
      hashes, length, type, Last-Modified) are the ones upstream sends for
      the same read, so an entry made from an upload cannot be told from one
      made by a read;
  (d) for the owner's curl reads, client conditionals (If-None-Match,
      If-Modified-Since, If-Unmodified-Since), which larder answers from the
      cache, get the status upstream gives them, with no object bytes moved:
      the entry knows its validators and its Last-Modified. (An XML PUT's
      answer carries no Last-Modified; the entry must learn it somehow.)

The uploads cover every path a client takes: JSON multipart (gsutil and
gcloud under 8 MiB, Node file.save, curl), JSON resumable in one PUT (gsutil
20 MiB, gcloud 10 MiB), JSON resumable in 256 KiB chunks answered 308 (the
Node SDK's createWriteStream({chunkSize}), curl with a status query, and curl
re-sending a chunk upstream persisted only in part), JSON media (curl), XML PUT
(curl with a bearer token; aws s3api put-object, whose body may come
aws-chunked) and XML multipart (curl and aws s3api: initiate, two parts with
a 5 MiB first one, complete). Every object is read back both through the JSON
API (alt=media) and the XML API where the client allows. A client that asks
for a partial answer (fields=, as gsutil does on every upload) gets just those
fields, and its upload still becomes the entry.

UploadHitTest runs larder with cache.policies "BUCKET=ttl:300" for each of
its test buckets, so a hit by the entry's owner contacts upstream not at all.
Reads with aws s3api are SigV4-signed: larder cannot verify such credentials
(README, Access control) and must ask upstream on every read, so for those the
read may only be one conditional request answered 304, with no media bytes.
The same holds for a reader who is not the uploader: upstream is asked once,
with that caller's credentials. A caller without access (a stranger,
anonymous) gets upstream's refusal, never cached bytes; a refused upload
(no write permission, a failed precondition) makes no entry and leaves the
previous one.

AlwaysPolicyUploadTest runs larder with the default policy "always": the
read after an upload may only revalidate (every upstream media request a 304
to If-None-Match, media_bytes_sent unchanged, X-Cache REVALIDATED).

On the binary before uploads became cache entries (larder forwards an upload
and drops the cached copy; 1192767) all of these tests FAIL, by design: the
read after the upload is a MISS that fetches the object from upstream, which
(b) reports as "the read after the upload sent media requests upstream" (or,
under "always" and for SigV4 reads, "upstream sent the object instead of
confirming the entry"). The XML multipart tests also need the emulator's XML
multipart support (POST ?uploads ...); an emulator answering 501 there fails
them with that reason.

The file takes about 25 s with every client present. A missing client skips
its tests (SKIP with the reason; the file then exits 77 if nothing failed),
never a pass.
"""

import collections
import datetime
import email.utils
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import curlclient  # noqa: E402
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only: its test classes are not collected here)

KiB, MiB = 1024, 1024 * 1024
CHUNK = 256 * KiB                 # resumable uploads persist in multiples of this
SMALL = 1024                      # gsutil / gcloud: under 8 MiB, one multipart POST
GSUTIL_LARGE = 20 * MiB           # over gsutil's 8 MiB resumable threshold
GCLOUD_LARGE = 10 * MiB + 3       # over gcloud's 8 MiB resumable threshold
NODE_SMALL = 3000
NODE_RESUMABLE = 1 * MiB + 4321   # four full 256 KiB chunks (308) and a short last one
PART1 = 5 * MiB                   # the smallest part allowed before the last one
PART2 = 123457
TTL = "ttl:300"

OWNER_EMAIL = "owner@example.com"    # owns every test bucket (the emulator's control API makes them so)
WRITER_EMAIL = "writer@example.com"  # may write (not own) the identity test's bucket
READER_EMAIL = "reader@example.com"
OTHER_EMAIL = "other@example.com"    # no access to anything here

TOK_OWNER = "tok-upl-owner-3e9a"
TOK_WRITER = "tok-upl-writer-6b1d"
TOK_READER = "tok-upl-reader-84f0"
TOK_OTHER = "tok-upl-other-c27f"
ISSUED = {TOK_OWNER: OWNER_EMAIL, TOK_WRITER: WRITER_EMAIL, TOK_READER: READER_EMAIL, TOK_OTHER: OTHER_EMAIL}

# Upstream request kinds (the emulator's classification) that move an object's bytes.
MEDIA_KINDS = ("media_get", "xml_get")
# Requests to the emulator that are not storage requests about the object.
NOT_STORAGE = ("tokeninfo", "oauth_token")
# What an answer from an entry made by an upload must say exactly as upstream says it for the same read.
DESCRIBING_HEADERS = ("content-length", "content-type", "content-encoding", "etag", "x-goog-generation",
                      "x-goog-metageneration", "x-goog-hash", "x-goog-stored-content-length",
                      "x-goog-stored-content-encoding", "last-modified")

NODE_DIR = os.path.join(harness.SOURCE_DIR, "tests", "clients", "node")
NODE_SCRIPT = os.path.join(NODE_DIR, "storage_client.js")

Checkpoint = collections.namedtuple("Checkpoint", "seq media_bytes log_lines")


def bearer(token):
    return {"Authorization": "Bearer " + token} if token else {}


def payload(size, seed):
    """Deterministic, incompressible bytes."""
    return hashlib.shake_256(("upload-clients-%s" % seed).encode()).digest(size) if size else b""


def sha(data):
    return hashlib.sha256(data).hexdigest()


def brief(e):
    return {k: e.get(k) for k in ("seq", "method", "path", "kind", "status", "identity", "bytes")}



def header_values(result, name):
    """Every value of a header, as one comma-joined string (curl results and tc.Resp alike)."""
    name = name.lower()
    pairs = result.header_list if hasattr(result, "header_list") else result.headers
    values = [v for k, v in pairs if k == name]
    return ", ".join(values) if values else None


def normalised(name, value):
    if value is not None and name == "x-goog-hash":
        # crc32c=..,md5=.. in one header or two: the same facts.
        return sorted(item.strip() for item in value.split(","))
    return value


def xml_tag(text, tag):
    match = re.search(r"<%s>([^<]*)</%s>" % (tag, tag), text)
    return match.group(1) if match else None


class UploadCase(harness.ClientCalls, tc.CacheTestCase):
    """Helpers shared by the test classes below (it has no tests itself)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="upl-", dir=cls.workdir)

    def setUp(self):
        super().setUp()
        self.emulator.control("POST", "tokens", ISSUED)

    # -- witnesses ------------------------------------------------------------

    def checkpoint(self):
        """Just before a read: the emulator's last log seq and media bytes so far, and larder's access log length."""
        snap = self.emulator.control("GET", "counters?since=%d" % 10 ** 15)
        return Checkpoint(snap["seq"], snap["media_bytes_sent"], len(self.larder.access_log()))

    def upstream_after(self, cp):
        """(counters, storage requests the emulator received after cp)."""
        snap = self.emulator.control("GET", "counters?since=%d" % cp.seq)
        return snap, [e for e in snap["log"] if e["kind"] not in NOT_STORAGE]

    def assert_from_cache(self, cp, what):
        """The read(s) since cp fetched no object bytes from upstream: no media GET at all."""
        snap, entries = self.upstream_after(cp)
        media = [brief(e) for e in entries if e["kind"] in MEDIA_KINDS]
        self.assertEqual(media, [], "%s: the read after the upload sent media requests upstream (a MISS if "
                                    "200/206, a revalidation or access check if 304), not a HIT from the "
                                    "uploaded bytes: %r" % (what, media))
        self.assertEqual(snap["media_bytes_sent"], cp.media_bytes,
                         "%s: upstream sent object bytes after the upload" % what)
        return entries

    def assert_nothing_upstream(self, cp, what):
        """Stricter, for the owner's curl reads under ttl: upstream was not contacted at all."""
        self.assert_from_cache(cp, what)
        _, entries = self.upstream_after(cp)
        self.assertEqual([brief(e) for e in entries], [],
                         "%s: a hit under %s contacted upstream" % (what, TTL))

    def assert_only_conditional(self, cp, what, identity=None):
        """The read(s) since cp asked upstream only whether the object changed: at least one media request,
        each conditional (If-None-Match) and answered 304 with no body; no media bytes moved."""
        snap, entries = self.upstream_after(cp)
        media = [e for e in entries if e["kind"] in MEDIA_KINDS]
        self.assertTrue(media, "%s: upstream was not asked at all (these credentials must be checked)" % what)
        for e in media:
            self.assertEqual(e["status"], 304, "%s: upstream sent the object instead of confirming the entry "
                                               "(a MISS): %r" % (what, [brief(x) for x in media]))
            self.assertTrue(e["headers"].get("If-None-Match"), "%s: not conditional: %r" % (what, brief(e)))
            if identity is not None:
                self.assertEqual(e["identity"], identity, "%s: asked with other credentials: %r" % (what, brief(e)))
        self.assertEqual(snap["media_bytes_sent"], cp.media_bytes,
                         "%s: upstream sent object bytes after the upload" % what)

    def media_log_lines(self, cp):
        prefix = "/%s/" % self.bucket
        return [e for e in self.larder.access_log()[cp.log_lines:]
                if e["method"] == "GET" and self.bucket in e["path"]
                and ("alt=media" in e["path"] or e.get("route") == "download"
                     or (e.get("route") == "xml" and e["path"].startswith(prefix) and len(e["path"]) > len(prefix)))]

    def assert_logged(self, cp, what, allowed=("HIT",)):
        """larder's access log: the media reads since cp were answered as allowed (HIT by default)."""
        harness.wait_until(lambda: self.media_log_lines(cp), timeout=5)
        lines = self.media_log_lines(cp)
        self.assertTrue(lines, "%s: no media read of %s in larder's access log" % (what, self.bucket))
        self.assertEqual([e for e in lines if e.get("cache") not in allowed], [],
                         "%s: larder's access log: media reads answered other than %s" % (what, "/".join(allowed)))

    def uploads_upstream(self, method, fragment, since=0):
        _, entries = self.upstream_after(Checkpoint(since, 0, 0))
        return [e for e in entries if e["method"] == method and fragment in e["path"]]

    # -- curl -----------------------------------------------------------------

    def curl(self, method, path_or_url, token=TOK_OWNER, headers=None, data=None):
        url = path_or_url if path_or_url.startswith("http") else self.larder.url + path_or_url
        result = curlclient.run(url, method, headers=dict(bearer(token), **(headers or {})), data=data)
        self.assertEqual(result.exit_code, 0, "curl %s %s: %s" % (method, url, result.stderr))
        return result

    def curl_media_upload(self, name, data, token=TOK_OWNER, content_type="application/x-upload-test", query=None):
        q = urllib.parse.urlencode([("uploadType", "media"), ("name", name)] + list(query or []))
        return self.curl("POST", "/upload/storage/v1/b/%s/o?%s" % (self.bucket, q), token,
                         {"Content-Type": content_type}, data)

    def read_paths(self, name):
        return (("json", self.media(name)), ("xml", self.xml(name)))

    def curl_reads_hit(self, name, data, token=TOK_OWNER, what=""):
        """Reads name through JSON media and XML GET with curl: each a HIT with the uploaded bytes, nothing
        upstream; then (after the witnesses are read) compares the describing headers with upstream's."""
        answers = []
        for api, path in self.read_paths(name):
            label = "%s %s read" % (what or name, api)
            cp = self.checkpoint()
            r = self.curl("GET", path, token)
            self.assertEqual(r.status, 200, "%s: %r" % (label, r.body[:300]))
            self.assertEqual(sha(r.body), sha(data), "%s: bytes differ from the upload (%d bytes, %d uploaded)"
                             % (label, len(r.body), len(data)))
            self.assert_nothing_upstream(cp, label)
            self.assertEqual(r.header("x-cache"), "HIT", label)
            answers.append((label, path, r))
        for label, path, r in answers:
            self.assert_describes_like_upstream(r, path, token, label)
        self.conditionals_like_upstream(name, token, what or name)

    def conditionals_like_upstream(self, name, token, what):
        """Client conditionals on the entry (answered from the cache) get upstream's status, and move no
        object bytes from upstream: the entry knows its validators and its Last-Modified."""
        for api, path in self.read_paths(name):
            direct = self.direct(path, bearer(token))
            etag, modified = direct.header("etag"), direct.header("last-modified")
            self.assertTrue(etag and modified, "%s: upstream's read has no ETag or Last-Modified" % api)
            earlier = email.utils.format_datetime(email.utils.parsedate_to_datetime(modified)
                                                  - datetime.timedelta(days=1), usegmt=True)
            for cond in ({"If-None-Match": etag}, {"If-Modified-Since": modified},
                         {"If-Unmodified-Since": earlier}):
                label = "%s %s read with %s" % (what, api, cond)
                want = self.direct(path, dict(bearer(token), **cond))
                cp = self.checkpoint()
                r = self.curl("GET", path, token, cond)
                self.assert_from_cache(cp, label)
                self.assertEqual(r.status, want.status, "%s: larder %d, upstream %d" % (label, r.status, want.status))
                self.assertIn(want.status, (304, 412), label)

    def curl_reads_checked(self, name, data, token, email, what):
        """Reads name through JSON media, then XML GET, as a caller who is not the entry's owner but may read
        the object: the first read is let in after one conditional request with the caller's own
        credentials (304, no bytes); the second may ride on the grant that made, or ask again. Together
        they move no object bytes from upstream."""
        cp = self.checkpoint()
        answers = []
        for api, path in self.read_paths(name):
            label = "%s %s read" % (what, api)
            r = self.curl("GET", path, token)
            self.assertEqual(r.status, 200, "%s: %r" % (label, r.body[:300]))
            self.assertEqual(sha(r.body), sha(data), label)
            self.assertIn(r.header("x-cache"), ("HIT", "REVALIDATED"), label)
            answers.append((label, path, r))
        self.assert_only_conditional(cp, what + " reads", identity=email)
        for label, path, r in answers:
            self.assert_describes_like_upstream(r, path, token, label)

    def assert_describes_like_upstream(self, r, path, token, label):
        want = self.direct(path, bearer(token))
        self.assertEqual(want.status, 200, "%s: direct read %r" % (label, want))
        for name in DESCRIBING_HEADERS:
            self.assertEqual(normalised(name, header_values(r, name)), normalised(name, want.header(name)),
                             "%s: header %s differs from what upstream sends for the same read" % (label, name))

    # -- client environments --------------------------------------------------

    def need(self, program):
        if shutil.which(program) is None:
            self.skipTest("%s is not installed" % program)

    def gsutil_env(self):
        return harness.gsutil_env(self.tmp, self.larder, self.emulator, self.ca)

    def gcloud_env(self):
        return harness.gcloud_env(self.tmp, self.larder, TOK_OWNER)

    def node(self, command, *args):
        self.need("node")
        if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@google-cloud", "storage")):
            self.skipTest("tests/clients/node/node_modules is missing: run `npm ci` in tests/clients/node")
        env = dict(os.environ, LARDER_TEST_TOKEN=TOK_OWNER)
        for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "NODE_EXTRA_CA_CERTS",
                     "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(name, None)
        cmd = ["node", NODE_SCRIPT, self.larder.url, self.bucket, command] + [str(a) for a in args]
        proc = self.run_client(cmd, env, cwd=NODE_DIR, what="node %s %s" % (command, args))
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])

    def aws_env(self):
        home = os.path.join(self.tmp, "aws-home")
        env = harness.client_env(("AWS_",))
        env.update({"HOME": home, "AWS_CONFIG_FILE": os.path.join(home, "config"),
                    "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
                    # The emulator maps the access key id to an identity and, like any endpoint behind a
                    # Host-rewriting proxy, does not verify the signature.
                    "AWS_ACCESS_KEY_ID": "owner", "AWS_SECRET_ACCESS_KEY": "anything",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": ""})
        if not os.path.isdir(home):
            os.makedirs(home)
            subprocess.run(["timeout", "-s", "KILL", str(harness.CLIENT_TIMEOUT), "aws", "configure", "set",
                            "default.s3.addressing_style", "path"], env=env, check=True, capture_output=True)
        return env

    def s3api(self, *args):
        self.need("aws")
        cmd = ["aws", "--endpoint-url", self.larder.url, "--output", "json", "s3api"] + list(args)
        proc = self.run_client(cmd, self.aws_env(), what="aws s3api " + " ".join(args[:1]))
        out = proc.stdout.decode().strip()
        return json.loads(out) if out else None

    def file_with(self, name, data):
        path = self.out_path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path


class UploadHitTest(UploadCase):
    """cache.policies gives every test bucket ttl:300 (set below the class, from its test names)."""

    # -- gsutil (TLS listener) -----------------------------------------------

    def test_gsutil_small_multipart_then_cat(self):
        self.need("gsutil")
        env = self.gsutil_env()
        data = payload(SMALL, "gsutil-small")
        src = self.file_with("gsutil-small.bin", data)
        url = "gs://%s/g/small.bin" % self.bucket
        self.run_client(["gsutil", "cp", src, url], env)
        posts = self.uploads_upstream("POST", "uploadType=multipart")
        self.assertEqual(len(posts), 1, [brief(e) for e in posts])
        self.assertEqual(posts[0]["status"], 200, brief(posts[0]))

        cp = self.checkpoint()
        out = self.run_client(["gsutil", "cat", url], env).stdout
        self.assertEqual(sha(out), sha(data), "gsutil cat")
        self.assert_from_cache(cp, "gsutil cat")
        self.assert_logged(cp, "gsutil cat")

    def test_gsutil_large_resumable_then_cp(self):
        self.need("gsutil")
        env = self.gsutil_env()
        data = payload(GSUTIL_LARGE, "gsutil-large")
        src = self.file_with("gsutil-large.bin", data)
        url = "gs://%s/g/large.bin" % self.bucket
        self.run_client(["gsutil", "cp", src, url], env)
        self.assertEqual(len(self.uploads_upstream("POST", "uploadType=resumable")), 1)
        puts = self.uploads_upstream("PUT", "upload_id=")
        self.assertTrue(puts and puts[-1]["status"] in (200, 201), [brief(e) for e in puts])

        cp = self.checkpoint()
        dst = self.out_path("gsutil-large.down")
        self.run_client(["gsutil", "cp", url, dst], env)
        self.assertEqual(harness.sha256_file(dst), sha(data), "gsutil cp down")
        self.assert_from_cache(cp, "gsutil cp down")
        self.assert_logged(cp, "gsutil cp down")

    # -- gcloud storage ---------------------------------------------------------

    def test_gcloud_cp_up_and_back(self):
        self.need("gcloud")
        env = self.gcloud_env()
        small, large = payload(SMALL, "gcloud-small"), payload(GCLOUD_LARGE, "gcloud-large")
        srcs = [self.file_with("small.bin", small), self.file_with("large.bin", large)]
        prefix = "gs://%s/c/" % self.bucket
        self.run_client(["gcloud", "storage", "cp"] + srcs + [prefix], env)
        self.assertEqual(len(self.uploads_upstream("POST", "uploadType=multipart")), 1)
        self.assertEqual(len(self.uploads_upstream("POST", "uploadType=resumable")), 1)

        cp = self.checkpoint()
        down = os.path.join(self.tmp, "gcloud-down")
        shutil.rmtree(down, ignore_errors=True)
        os.makedirs(down)
        self.run_client(["gcloud", "storage", "cp", prefix + "small.bin", prefix + "large.bin", down + "/"], env)
        for name, data in (("small.bin", small), ("large.bin", large)):
            self.assertEqual(harness.sha256_file(os.path.join(down, name)), sha(data), "gcloud cp down " + name)
        self.assert_from_cache(cp, "gcloud storage cp down")
        self.assert_logged(cp, "gcloud storage cp down")

    # -- Node @google-cloud/storage ---------------------------------------------

    def test_node_save_then_download(self):
        data = payload(NODE_SMALL, "node-small")
        src = self.file_with("node-small.bin", data)
        meta = self.node("save", "n/small.bin", src)
        self.assertEqual(meta["size"], NODE_SMALL, meta)
        posts = self.uploads_upstream("POST", "uploadType=multipart")
        self.assertEqual(len(posts), 1, [brief(e) for e in posts])

        cp = self.checkpoint()
        dst = self.out_path("node-small.down")
        self.node("download", "n/small.bin", dst)
        self.assertEqual(harness.sha256_file(dst), sha(data), "node download")
        self.assert_from_cache(cp, "node download")
        self.assert_logged(cp, "node download")

    def test_node_resumable_chunks_then_download(self):
        data = payload(NODE_RESUMABLE, "node-resumable")
        src = self.file_with("node-res.bin", data)
        meta = self.node("stream-upload", "n/res.bin", src, CHUNK)
        self.assertEqual(meta["size"], NODE_RESUMABLE, meta)
        puts = self.uploads_upstream("PUT", "upload_id=")
        statuses = [e["status"] for e in puts]
        self.assertGreater(len(puts), 1, "the upload did not go up in several chunks: %r" % statuses)
        self.assertGreaterEqual(statuses.count(308), 3, statuses)
        self.assertIn(statuses[-1], (200, 201), statuses)

        cp = self.checkpoint()
        dst = self.out_path("node-res.down")
        self.node("download", "n/res.bin", dst)
        self.assertEqual(harness.sha256_file(dst), sha(data), "node download")
        self.assert_from_cache(cp, "node download")
        self.assert_logged(cp, "node download")

    # -- curl, JSON API ---------------------------------------------------------

    def test_curl_json_media_upload(self):
        self.need("curl")
        data = payload(300000, "media")
        r = self.curl_media_upload("j/media.bin", data)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(int(json.loads(r.body)["size"]), len(data))
        self.curl_reads_hit("j/media.bin", data)

    def test_curl_json_media_upload_empty_object(self):
        self.need("curl")
        r = self.curl_media_upload("j/empty", b"", content_type="text/plain")
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(int(json.loads(r.body)["size"]), 0)
        self.curl_reads_hit("j/empty", b"")

    def test_curl_json_multipart_upload(self):
        self.need("curl")
        data = payload(70000, "multipart")
        boundary = "upl_boundary_5c"
        body = (b"--" + boundary.encode() + b"\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" +
                json.dumps({"name": "j/multi part.bin", "contentType": "application/x-multi",
                            "metadata": {"k": "v"}}).encode() +
                b"\r\n--" + boundary.encode() + b"\r\nContent-Type: application/x-multi\r\n\r\n" + data +
                b"\r\n--" + boundary.encode() + b"--\r\n")
        r = self.curl("POST", "/upload/storage/v1/b/%s/o?uploadType=multipart" % self.bucket, TOK_OWNER,
                      {"Content-Type": "multipart/related; boundary=" + boundary}, body)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(int(json.loads(r.body)["size"]), len(data))
        self.curl_reads_hit("j/multi part.bin", data)

    def start_resumable(self, name, content_type="application/x-res", query=""):
        r = self.curl("POST", "/upload/storage/v1/b/%s/o?uploadType=resumable&name=%s%s"
                      % (self.bucket, urllib.parse.quote(name, safe=""), query), TOK_OWNER,
                      {"X-Upload-Content-Type": content_type, "Content-Type": "application/json"}, b"{}")
        self.assertEqual(r.status, 200, r.body[:300])
        location = r.header("location")
        # larder rewrites the session URL to point at itself.
        self.assertTrue(location and location.startswith(self.larder.url + "/upload/storage/v1/"), location)
        return location

    def put_chunk(self, location, first, data, total, expect, persisted=None):
        """PUT data as bytes first..first+len-1 of total ("*": not known yet); expect 308 with Range
        bytes=0-(persisted-1), or 200."""
        r = self.curl("PUT", location, None,
                      {"Content-Range": "bytes %d-%d/%s" % (first, first + len(data) - 1, total)}, data)
        self.assertEqual(r.status, expect, r.body[:300])
        if expect == 308:
            self.assertEqual(r.header("range"), "bytes=0-%d" % (persisted - 1))
        return r

    def test_curl_json_resumable_upload_in_chunks(self):
        self.need("curl")
        data = payload(4 * CHUNK + 1234, "resumable")
        total = len(data)
        location = self.start_resumable("j/res.bin")
        self.put_chunk(location, 0, data[:CHUNK], "*", 308, CHUNK)
        self.put_chunk(location, CHUNK, data[CHUNK:3 * CHUNK], "*", 308, 3 * CHUNK)  # two chunks in one PUT
        q = self.curl("PUT", location, None, {"Content-Range": "bytes */%d" % total}, b"")  # status query
        self.assertEqual(q.status, 308, q.body[:300])
        self.assertEqual(q.header("range"), "bytes=0-%d" % (3 * CHUNK - 1))
        r = self.put_chunk(location, 3 * CHUNK, data[3 * CHUNK:], total, 200)
        self.assertEqual(int(json.loads(r.body)["size"]), total)
        puts = self.uploads_upstream("PUT", "upload_id=")
        self.assertEqual([e["status"] for e in puts], [308, 308, 308, 200], [brief(e) for e in puts])
        self.curl_reads_hit("j/res.bin", data)

    def test_curl_json_uploads_with_fields(self):
        """Clients ask for a partial resource with fields= (gsutil: etag,crc32c,generation,md5Hash,
        customerEncryption,size, on every upload). The client gets just those fields, as upstream would
        answer, and the upload still becomes a whole entry."""
        self.need("curl")
        fields = "etag,size,generation,md5Hash"
        data = payload(3 * CHUNK + 99, "fields-res")
        location = self.start_resumable("f/res.bin", query="&fields=" + urllib.parse.quote(fields))
        r = self.put_chunk(location, 0, data, len(data), 200)
        self.assertEqual(sorted(json.loads(r.body)), sorted(fields.split(",")), r.body[:300])
        self.assertEqual(int(json.loads(r.body)["size"]), len(data))
        self.curl_reads_hit("f/res.bin", data, what="resumable with fields=")

        small = payload(5000, "fields-multipart")
        boundary = "fields_boundary"
        body = (b"--" + boundary.encode() + b"\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" +
                json.dumps({"name": "f/multi.bin"}).encode() + b"\r\n--" + boundary.encode() +
                b"\r\nContent-Type: text/plain\r\n\r\n" + small + b"\r\n--" + boundary.encode() + b"--\r\n")
        r = self.curl("POST", "/upload/storage/v1/b/%s/o?uploadType=multipart&fields=%s"
                      % (self.bucket, urllib.parse.quote(fields)), TOK_OWNER,
                      {"Content-Type": "multipart/related; boundary=" + boundary}, body)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(sorted(json.loads(r.body)), sorted(fields.split(",")), r.body[:300])
        self.curl_reads_hit("f/multi.bin", small, what="multipart with fields=")

    def test_curl_json_resumable_resend_after_partial_persist(self):
        """Upstream persists a non-final chunk only in 256 KiB multiples and ignores bytes it already has:
        the entry holds the object upstream assembled, not the concatenation of the request bodies."""
        self.need("curl")
        data = payload(3 * CHUNK + 777, "resend")
        total = len(data)
        location = self.start_resumable("j/resend.bin")
        self.put_chunk(location, 0, data[:300000], "*", 308, CHUNK)  # only 256 KiB of it persisted
        self.put_chunk(location, 0, data[:2 * CHUNK], "*", 308, 2 * CHUNK)  # re-sends the first 256 KiB too
        self.put_chunk(location, 2 * CHUNK, data[2 * CHUNK:], total, 200)
        self.curl_reads_hit("j/resend.bin", data)

    # -- XML API: PUT -------------------------------------------------------------

    def test_curl_xml_put(self):
        self.need("curl")
        data = payload(250000, "xml-put")
        r = self.curl("PUT", self.xml("x/put.bin"), TOK_OWNER, {"Content-Type": "application/x-xml-put"}, data)
        self.assertEqual(r.status, 200, r.body[:300])
        self.curl_reads_hit("x/put.bin", data)

    def aws_reads(self, key, data):
        """aws s3api get-object (SigV4: only upstream can judge it, so one conditional check, 304), then curl
        with the owner's bearer token (the uploader was unverifiable, so not the entry's owner: one
        conditional check too). Neither moves object bytes from upstream."""
        cp = self.checkpoint()
        dst = self.out_path("aws.down")
        got = self.s3api("get-object", "--bucket", self.bucket, "--key", key, dst)
        self.assertEqual(got["ContentLength"], len(data))
        self.assertEqual(harness.sha256_file(dst), sha(data), "aws s3api get-object")
        self.assert_only_conditional(cp, "aws s3api get-object", identity=OWNER_EMAIL)
        self.assert_logged(cp, "aws s3api get-object", allowed=("HIT", "REVALIDATED"))
        self.curl_reads_checked(key, data, TOK_OWNER, OWNER_EMAIL, "the owner's curl")

    def test_aws_s3api_put_object(self):
        self.need("aws")
        data = payload(400000, "aws-put")
        src = self.file_with("aws-put.bin", data)
        put = self.s3api("put-object", "--bucket", self.bucket, "--key", "x/aws-put.bin", "--body", src)
        self.assertEqual(put["ETag"], '"%s"' % hashlib.md5(data).hexdigest(), put)
        self.aws_reads("x/aws-put.bin", data)

    # -- XML API: multipart -------------------------------------------------------

    def xml_multipart_unsupported(self, r):
        if r.status == 501:
            self.fail("the emulator answers 501 to POST ?uploads: it does not support XML multipart uploads yet")

    def test_curl_xml_multipart_upload(self):
        self.need("curl")
        parts = [payload(PART1, "xml-mp-1"), payload(PART2, "xml-mp-2")]
        data = b"".join(parts)
        path = self.xml("x/multi.bin")
        r = self.curl("POST", path + "?uploads", TOK_OWNER, {"Content-Type": "application/x-mp"}, b"")
        self.xml_multipart_unsupported(r)
        self.assertEqual(r.status, 200, r.body[:300])
        upload_id = xml_tag(r.body.decode(), "UploadId")
        self.assertTrue(upload_id, r.body[:300])
        etags = []
        for number, part in enumerate(parts, 1):
            r = self.curl("PUT", "%s?partNumber=%d&uploadId=%s" % (path, number, urllib.parse.quote(upload_id)),
                          TOK_OWNER, {}, part)
            self.assertEqual(r.status, 200, r.body[:300])
            self.assertTrue(r.header("etag"), r.headers)
            etags.append(r.header("etag"))
        complete = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
            "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (n, e) for n, e in enumerate(etags, 1))
        r = self.curl("POST", "%s?uploadId=%s" % (path, urllib.parse.quote(upload_id)), TOK_OWNER,
                      {"Content-Type": "application/xml"}, complete.encode())
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertIn("CompleteMultipartUploadResult", r.body.decode(), r.body[:300])
        self.curl_reads_hit("x/multi.bin", data)

    def test_aws_s3api_multipart_upload(self):
        self.need("aws")
        parts = [payload(PART1, "aws-mp-1"), payload(PART2, "aws-mp-2")]
        data = b"".join(parts)
        key = "x/aws-multi.bin"
        cp = self.checkpoint()
        proc = self.run_client(["aws", "--endpoint-url", self.larder.url, "--output", "json", "s3api",
                                "create-multipart-upload", "--bucket", self.bucket, "--key", key],
                               self.aws_env(), expect_ok=False)
        if proc.returncode != 0:
            _, entries = self.upstream_after(cp)
            if any(e["status"] == 501 for e in entries):
                self.fail("the emulator answers 501 to POST ?uploads: it does not support XML multipart "
                          "uploads yet")
            self.fail("aws s3api create-multipart-upload: %s" % proc.stderr.decode(errors="replace")[-2000:])
        upload_id = json.loads(proc.stdout)["UploadId"]
        done = []
        for number, part in enumerate(parts, 1):
            src = self.file_with("aws-part%d.bin" % number, part)
            got = self.s3api("upload-part", "--bucket", self.bucket, "--key", key, "--part-number", str(number),
                             "--upload-id", upload_id, "--body", src)
            done.append({"ETag": got["ETag"], "PartNumber": number})
        spec = self.file_with("aws-parts.json", json.dumps({"Parts": done}).encode())
        self.s3api("complete-multipart-upload", "--bucket", self.bucket, "--key", key, "--upload-id", upload_id,
                   "--multipart-upload", "file://" + spec)
        self.aws_reads(key, data)

    # -- identities -----------------------------------------------------------------

    def test_uploader_hits_stranger_is_refused_reader_is_checked(self):
        """writer@ (may write the bucket, does not own it) uploads: writer@'s reads are HITs with nothing
        upstream; other@ (no access) and an anonymous caller get upstream's refusal, exactly as upstream
        words it, never the bytes; reader@ (a bucket reader) and owner@ (the bucket's owner) are let in
        after one conditional request with their own credentials, which moves no bytes."""
        self.need("curl")
        self.emulator.control("POST", "acl", {"bucket": self.bucket, "writers": [WRITER_EMAIL],
                                              "readers": [READER_EMAIL]})
        data = payload(200000, "identities")
        name = "who/up.bin"
        r = self.curl_media_upload(name, data, token=TOK_WRITER)
        self.assertEqual(r.status, 200, r.body[:300])
        self.curl_reads_hit(name, data, token=TOK_WRITER, what="the uploader's")

        for who, token, email in (("a stranger", TOK_OTHER, OTHER_EMAIL), ("anonymous", None, "anonymous")):
            for api, path in self.read_paths(name):
                label = "%s's %s read" % (who, api)
                cp = self.checkpoint()
                r = self.curl("GET", path, token)
                want = self.direct(path, bearer(token))
                self.assertIn(want.status, (401, 403), "%s: direct %r" % (label, want))
                self.assertEqual(r.status, want.status, "%s: %r" % (label, r.body[:300]))
                self.assertEqual(r.body, want.body, label)
                self.assertNotIn(data[:64], r.body, label)
                _, entries = self.upstream_after(cp)
                asked = [e for e in entries if e["kind"] in MEDIA_KINDS and e["identity"] == email]
                self.assertTrue(asked, "%s was answered without asking upstream: %r"
                                % (label, [brief(e) for e in entries]))

        for who, token, email in (("a bucket reader", TOK_READER, READER_EMAIL),
                                  ("the bucket owner", TOK_OWNER, OWNER_EMAIL)):
            self.curl_reads_checked(name, data, token, email, who + "'s")

        # The uploader still owns the entry: nothing upstream.
        self.curl_reads_hit(name, data, token=TOK_WRITER, what="the uploader's second")

    def test_refused_uploads_make_no_entry(self):
        """An upload upstream refuses (no write permission, a failed precondition) neither becomes the entry
        nor disturbs the one the last accepted upload made."""
        self.need("curl")
        data = payload(100000, "accepted")
        r = self.curl_media_upload("ref/obj.bin", data)
        self.assertEqual(r.status, 200, r.body[:300])
        intruder = payload(100000, "intruder")
        r = self.curl_media_upload("ref/obj.bin", intruder, token=TOK_OTHER)
        self.assertEqual(r.status, 403, r.body[:300])
        r = self.curl("PUT", self.xml("ref/obj.bin"), TOK_OTHER, {"Content-Type": "application/x-bad"}, intruder)
        self.assertEqual(r.status, 403, r.body[:300])
        r = self.curl_media_upload("ref/obj.bin", intruder, query=[("ifGenerationMatch", "0")])
        self.assertEqual(r.status, 412, r.body[:300])
        self.curl_reads_hit("ref/obj.bin", data, what="after refused overwrites")

        r = self.curl_media_upload("ref/never.bin", intruder, token=TOK_OTHER)
        self.assertEqual(r.status, 403, r.body[:300])
        for api, path in self.read_paths("ref/never.bin"):
            cp = self.checkpoint()
            r = self.curl("GET", path, TOK_OWNER)
            want = self.direct(path, bearer(TOK_OWNER))
            self.assertEqual(want.status, 404, want)
            self.assertEqual((r.status, r.body), (want.status, want.body), api)
            self.assertNotEqual(r.header("x-cache"), "HIT", api)
            _, entries = self.upstream_after(cp)
            self.assertTrue([e for e in entries if e["kind"] in MEDIA_KINDS and e["status"] == 404],
                            "%s: a read of a never-created object did not ask upstream: %r"
                            % (api, [brief(e) for e in entries]))


def _buckets(cls):
    names = unittest.TestLoader().getTestCaseNames(cls)
    buckets = [harness.test_bucket(cls(name)) for name in names]
    assert len(set(buckets)) == len(buckets), "two tests share a bucket name: %r" % buckets
    return buckets


UploadHitTest.larder_config = {"cache": {
    "enabled": True, "default_policy": "always",
    "policies": ";".join("%s=%s" % (b, TTL) for b in _buckets(UploadHitTest))}}


class AlwaysPolicyUploadTest(UploadCase):
    """The default policy, always: the read after an upload asks upstream whether the object changed, and
    only that."""
    larder_config = {"cache": {"enabled": True, "default_policy": "always"}}

    def test_always_read_after_upload_only_revalidates(self):
        self.need("curl")
        data = payload(500000, "always")
        r = self.curl_media_upload("a/always.bin", data)
        self.assertEqual(r.status, 200, r.body[:300])
        for api, path in self.read_paths("a/always.bin"):
            label = "%s read under always" % api
            cp = self.checkpoint()
            r = self.curl("GET", path, TOK_OWNER)
            self.assertEqual(r.status, 200, "%s: %r" % (label, r.body[:300]))
            self.assertEqual(sha(r.body), sha(data), label)
            self.assert_only_conditional(cp, label, identity=OWNER_EMAIL)
            self.assertEqual(r.header("x-cache"), "REVALIDATED", label)
            self.assert_describes_like_upstream(r, path, TOK_OWNER, label)


if __name__ == "__main__":
    harness.main()
