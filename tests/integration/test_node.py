"""test_node.py - the Node @google-cloud/storage SDK (7.x, from npm) through larder.

tests/clients/node/storage_client.js runs one SDK operation per invocation
against larder's plain listener (and once over TLS with the test CA via
NODE_EXTRA_CA_CERTS), sending a bearer token through an OAuth2Client. Covers
file.save (multipart), a chunked resumable upload through createWriteStream
(several PUTs answered 308, checked in the emulator's request log), download
with the SDK's own hash validation, ranged reads, getFiles with a prefix and
delete. Every transferred file is compared by sha256.

Needs node and tests/clients/node/node_modules (`npm ci` there); without
them the test is skipped, never passed.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

NODE_DIR = os.path.join(harness.SOURCE_DIR, "tests", "clients", "node")
SCRIPT = os.path.join(NODE_DIR, "storage_client.js")

if shutil.which("node") is None:
    harness.skip("node is not installed")
if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@google-cloud", "storage")):
    harness.skip("tests/clients/node/node_modules is missing: run `npm ci` in tests/clients/node")

# A token only this test uses, so the emulator's identity in its log proves the
# SDK really sent it (the default "owner" token could come from anywhere).
TOKEN = "ya29.node-sdk-token-4c1e"
CHUNK = 256 * 1024
RESUMABLE_SIZE = 1153434  # ~1.1 MiB: four full 256 KiB chunks and a short last one


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


class NodeStorageTest(harness.ClientCalls, harness.LarderTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="node-", dir=cls.workdir)

    def setUp(self):
        super().setUp()
        self.emulator.control("POST", "tokens", {TOKEN: "owner@example.com"})

    def node(self, command, *args, endpoint=None, extra_env=None):
        """Runs storage_client.js once; returns its JSON result or fails with its stderr."""
        env = dict(os.environ, LARDER_TEST_TOKEN=TOKEN)
        # Nothing from the caller's environment may redirect the SDK.
        for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "NODE_EXTRA_CA_CERTS",
                     "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(name, None)
        env.update(extra_env or {})
        cmd = ["node", SCRIPT, endpoint or self.larder.url, self.bucket, command] + [str(a) for a in args]
        proc = self.run_client(cmd, env, cwd=NODE_DIR, what="node %s %s" % (command, args))
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])

    def make_file(self, name, size, seed):
        path = os.path.join(self.tmp, name)
        harness.write_random_file(path, size, seed)
        return path

    def emulator_log(self):
        return self.emulator.counters()["log"]

    def assert_through_larder(self, path_fragment):
        """The request really went through larder: its access log has it."""
        paths = [e["path"] for e in self.larder.access_log()]
        self.assertTrue(any(path_fragment in p for p in paths), "%s not in larder's access log %s"
                        % (path_fragment, paths[-10:]))

    def test_multipart_save_and_download(self):
        src = self.make_file("small.bin", 1024, seed=1)
        meta = self.node("save", "dir/small.bin", src)
        self.assertEqual(meta["name"], "dir/small.bin")
        self.assertEqual(meta["size"], 1024)
        self.assertEqual(meta["contentType"], "application/x-larder-test")
        # Links in the metadata the SDK got must point at larder, not upstream.
        self.assertTrue(meta["mediaLink"].startswith(self.larder.url + "/"), meta["mediaLink"])

        uploads = [e for e in self.emulator_log() if e["method"] == "POST" and "/upload/" in e["path"]]
        self.assertEqual(len(uploads), 1, uploads)
        self.assertIn("uploadType=multipart", uploads[0]["path"])
        self.assertEqual(uploads[0].get("identity"), "owner@example.com", uploads[0])
        self.assert_through_larder("uploadType=multipart")

        dst = self.out_path("small.out")
        self.node("download", "dir/small.bin", dst)
        self.assertEqual(harness.sha256_file(dst), harness.sha256_file(src))
        described = self.node("metadata", "dir/small.bin")
        self.assertEqual(described["md5Hash"], meta["md5Hash"])
        self.assertEqual(described["generation"], meta["generation"])

    def test_resumable_stream_upload_in_chunks(self):
        src = self.make_file("res.bin", RESUMABLE_SIZE, seed=2)
        meta = self.node("stream-upload", "res/big.bin", src, CHUNK)
        self.assertEqual(meta["size"], RESUMABLE_SIZE)
        self.assertEqual(meta["contentType"], "application/x-larder-res")

        log = self.emulator_log()
        starts = [e for e in log if e["method"] == "POST" and "uploadType=resumable" in e["path"]]
        self.assertEqual(len(starts), 1, starts)
        puts = [e for e in log if e["method"] == "PUT" and "upload_id=" in e["path"]]
        statuses = [e["status"] for e in puts]
        # 1153434 bytes in 256 KiB chunks: four answered 308 "resume incomplete",
        # then the last one completes the object.
        self.assertEqual(statuses.count(308), RESUMABLE_SIZE // CHUNK, statuses)
        self.assertIn(statuses[-1], (200, 201), statuses)
        for e in puts:
            self.assertEqual(e.get("identity"), "owner@example.com", e)
        self.assert_through_larder("upload_id=")
        self.assertGreaterEqual(sum(1 for e in self.larder.access_log() if e["status"] == 308), 4)

        dst = self.out_path("res.out")
        self.node("download", "res/big.bin", dst)
        self.assertEqual(harness.sha256_file(dst), harness.sha256_file(src))

    def test_ranged_reads(self):
        src = self.make_file("ranged.bin", 300000, seed=3)
        with open(src, "rb") as f:
            data = f.read()
        self.node("save", "ranged.bin", src)
        # createReadStream's end is inclusive, like an HTTP Range.
        for start, end in ((0, 0), (100, 4195), (262144, 299999), (299999, 299999)):
            dst = self.out_path("range.out")
            self.node("read-range", "ranged.bin", start, end, dst)
            with open(dst, "rb") as f:
                got = f.read()
            self.assertEqual(len(got), end - start + 1, (start, end))
            self.assertEqual(sha256_bytes(got), sha256_bytes(data[start:end + 1]), (start, end))
        ranged = [e for e in self.larder.access_log() if e["method"] == "GET" and e["status"] == 206]
        self.assertGreaterEqual(len(ranged), 4, "ranged reads did not come back as 206 through larder")

    def test_list_with_prefix_and_delete(self):
        names = ["logs/a.txt", "logs/b.txt", "logs/sub/c.txt", "other/d.txt"]
        for i, name in enumerate(names):
            self.node("save", name, self.make_file("l%d" % i, 100 + i, seed=10 + i))
        listing = self.node("list", "logs/")
        self.assertEqual(sorted(listing["names"]), ["logs/a.txt", "logs/b.txt", "logs/sub/c.txt"])
        self.assertEqual(sorted(listing["sizes"]), [100, 101, 102])
        self.assertEqual(len(self.node("list", "")["names"]), 4)

        self.node("delete", "logs/b.txt")
        self.assertEqual(self.node("exists", "logs/b.txt"), {"exists": False})
        self.assertEqual(self.node("exists", "logs/a.txt"), {"exists": True})
        self.assertEqual(sorted(self.node("list", "logs/")["names"]), ["logs/a.txt", "logs/sub/c.txt"])
        deletes = [e for e in self.emulator_log() if e["method"] == "DELETE"]
        self.assertEqual([e["status"] for e in deletes], [204], deletes)

    def test_over_tls_with_test_ca(self):
        src = self.make_file("tls.bin", 70000, seed=4)
        tls_env = {"NODE_EXTRA_CA_CERTS": self.ca.ca_cert}
        self.node("save", "tls.bin", src, endpoint=self.larder.tls_url, extra_env=tls_env)
        dst = self.out_path("tls.out")
        self.node("download", "tls.bin", dst, endpoint=self.larder.tls_url, extra_env=tls_env)
        self.assertEqual(harness.sha256_file(dst), harness.sha256_file(src))


if __name__ == "__main__":
    harness.main()
