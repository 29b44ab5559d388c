"""test_cache_clients.py - real clients read the same object twice through larder's cache.

gsutil (TLS listener), `gcloud storage`, the Node SDK and curl each download
one object twice. The emulator's counters must show that the second read
moved no object bytes from upstream (media_bytes_sent unchanged). gsutil and
gcloud download with ?generation=G, which is immutable, so their second read
must be a pure HIT: no media request reaches upstream at all. curl and the
Node SDK read without a generation under the default policy ("always"), so
upstream may only be asked whether the object changed (304, no body).
Every download is compared by sha256 with the object read straight from the
emulator.

A missing client skips its test; if any was skipped and nothing failed, the
file exits 77 (skipped, never passed).
"""

import json
import os
import shutil
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only)

SIZE = 6 * 1024 * 1024 + 12345  # several chunks and a short last one
NODE_DIR = os.path.join(harness.SOURCE_DIR, "tests", "clients", "node")
GCLOUD_TOKEN = "ya29.cache-gcloud-token-51ac"
NODE_TOKEN = "ya29.cache-node-token-0d7e"




class CachedClientsTest(harness.ClientCalls, tc.CacheTestCase):
    larder_config = {"cache": {"enabled": True, "default_policy": "always"}}
    plain_listener = {"h2c": True}  # cleartext HTTP/2 is off unless a listener turns it on

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="clients-", dir=cls.workdir)

    def setUp(self):
        super().setUp()
        self.emulator.control("POST", "tokens", {GCLOUD_TOKEN: tc.OWNER_EMAIL, NODE_TOKEN: tc.OWNER_EMAIL})

    # -- running clients ------------------------------------------------------

    def gsutil_env(self):
        return harness.gsutil_env(self.tmp, self.larder, self.emulator, self.ca)

    def gcloud_env(self):
        return harness.gcloud_env(self.tmp, self.larder, GCLOUD_TOKEN)

    def node_env(self):
        env = dict(os.environ, LARDER_TEST_TOKEN=NODE_TOKEN)
        for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "NODE_EXTRA_CA_CERTS",
                     "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(name, None)
        return env

    # -- the check ------------------------------------------------------------

    def media_reads(self, mark):
        return self.upstream_since(mark, ("media_get", "xml_get"))

    def download_twice(self, name, download, generation_read):
        """download(dst) runs the client once; returns the upstream log of the second run."""
        self.put_object(name, size=SIZE, seed=zlib.crc32(name.encode()) % 1000)
        expected = tc.sha(self.object_bytes(name))
        dst = self.out_path(name.replace("/", "_") + ".1")
        mark = self.mark()
        download(dst)
        self.assertEqual(harness.sha256_file(dst), expected, "first download")
        first = self.media_reads(mark)
        self.assertEqual(len(first), 1, "the first download should read the media once: %r" % first)
        self.assertIn(first[0]["status"], (200, 206), first)
        self.settle()
        sent_before = self.emulator.counters()["media_bytes_sent"]
        mark = self.mark()
        dst = self.out_path(name.replace("/", "_") + ".2")
        download(dst)
        self.assertEqual(harness.sha256_file(dst), expected, "second download")
        self.assertEqual(self.emulator.counters()["media_bytes_sent"], sent_before,
                         "the second download moved object bytes from upstream: %r" % self.media_reads(mark))
        second = self.media_reads(mark)
        if generation_read:
            self.assertEqual(second, [], "a ?generation= read of a cached object went upstream")
        else:
            for e in second:
                self.assertEqual(e["status"], 304, second)
                self.assertTrue(e["headers"].get("If-None-Match"), second)
        # larder's access log agrees: the second media read came from the store.
        media = [e for e in self.larder.access_log() if e["method"] == "GET" and
                 ("alt=media" in e["path"] or e["path"].startswith("/" + self.bucket + "/"))]
        self.assertIn(media[-1]["cache"], ("HIT",) if generation_read else ("HIT", "REVALIDATED"), media[-3:])
        return second

    # -- the clients ----------------------------------------------------------

    def test_gsutil_over_tls(self):
        if shutil.which("gsutil") is None:
            self.skipTest("gsutil is not installed")
        env = self.gsutil_env()
        url = "gs://%s/g/obj.bin" % self.bucket

        def download(dst):
            self.run_client(["gsutil", "cp", url, dst], env)

        self.download_twice("g/obj.bin", download, generation_read=True)
        gets = [e for e in self.larder.access_log() if "alt=media" in e["path"] and self.bucket in e["path"]]
        self.assertEqual(len(gets), 2, gets)
        self.assertTrue(all("generation=" in e["path"] for e in gets), gets)

    def test_gcloud_storage(self):
        if shutil.which("gcloud") is None:
            self.skipTest("gcloud is not installed")
        env = self.gcloud_env()
        url = "gs://%s/c/obj.bin" % self.bucket

        def download(dst):
            self.run_client(["gcloud", "storage", "cp", url, dst], env)

        self.download_twice("c/obj.bin", download, generation_read=True)
        gets = [e for e in self.larder.access_log() if "alt=media" in e["path"] and self.bucket in e["path"]]
        self.assertEqual(len(gets), 2, gets)
        self.assertTrue(all("generation=" in e["path"] for e in gets), gets)

    def test_node_sdk(self):
        if shutil.which("node") is None:
            self.skipTest("node is not installed")
        if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@google-cloud", "storage")):
            self.skipTest("tests/clients/node/node_modules is missing: run `npm ci` in tests/clients/node")
        env = self.node_env()

        def download(dst):
            proc = self.run_client(["node", os.path.join(NODE_DIR, "storage_client.js"), self.larder.url,
                                    self.bucket, "download", "n/obj.bin", dst], env, cwd=NODE_DIR)
            json.loads(proc.stdout.decode().strip().splitlines()[-1])

        self.download_twice("n/obj.bin", download, generation_read=False)

    def test_curl_json_and_xml(self):
        if shutil.which("curl") is None:
            self.skipTest("curl is not installed")
        variants = [("json", self.larder.url, []), ("xml", self.larder.url, []),
                    ("json-h2-tls", self.larder.tls_url, ["--http2", "--cacert", self.ca.ca_cert]),
                    ("xml-h2c", self.larder.url, ["--http2-prior-knowledge"])]
        for label, base, extra in variants:
            name = "k/obj-%s.bin" % label
            path = self.media(name) if label.startswith("json") else self.xml(name)

            def download(dst, path=path, base=base, extra=extra):
                self.run_client(["curl", "-sS", "--fail", "-H", "Authorization: Bearer owner", "-o", dst]
                                + extra + [base + path], dict(os.environ))

            with self.subTest(label):
                self.download_twice(name, download, generation_read=False)
                if "h2" in label:
                    versions = {e.get("http") for e in self.larder.access_log() if "obj-%s" % label in e["path"]}
                    self.assertTrue(versions and all(v.startswith("2") for v in versions), (label, versions))


if __name__ == "__main__":
    harness.main()
