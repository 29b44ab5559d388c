"""test_gcloud.py - `gcloud storage` (JSON API) through larder's plain listener.

gcloud is pointed at larder with CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE and
reads its bearer token from CLOUDSDK_AUTH_ACCESS_TOKEN_FILE (per
/work/shared/reference/clients.md). Covers cp up of 1 KiB (multipart) and
20 MiB (resumable), cp down of both, ls, ls -l, objects describe, stat, cat
and rm 'gs://b/**'. Every transferred file is compared by sha256, and the
emulator's request log must show the test's own token, so the requests can
only have come through larder with gcloud's credentials.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

if shutil.which("gcloud") is None:
    harness.skip("gcloud is not installed")

SMALL = 1024
LARGE = 20 * 1024 * 1024  # over gcloud's 8 MiB resumable threshold
TOKEN = "ya29.gcloud-token-9b2d"


def md5_b64(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


class GcloudStorageTest(harness.ClientCalls, harness.LarderTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="gcloud-", dir=cls.workdir)
        cloudsdk_config = os.path.join(cls.tmp, "cloudsdk")
        os.makedirs(cloudsdk_config)
        token_file = os.path.join(cls.tmp, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN)
        env = dict(os.environ)
        # Keep the caller's configuration and proxies out of it.
        for name in list(env):
            if name.startswith(("BOTO_", "CLOUDSDK_", "GOOGLE_")) or name.lower().endswith("_proxy"):
                del env[name]
        env.update({
            "CLOUDSDK_CONFIG": cloudsdk_config,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": cls.larder.url + "/storage/v1/",
            "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": token_file,
            "CLOUDSDK_CORE_PROJECT": "test",
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        })
        cls.env = env
        cls.small = os.path.join(cls.tmp, "small.bin")
        cls.large = os.path.join(cls.tmp, "large.bin")
        harness.write_random_file(cls.small, SMALL, seed=21)
        harness.write_random_file(cls.large, LARGE, seed=22)

    def setUp(self):
        super().setUp()
        self.emulator.control("POST", "tokens", {TOKEN: "owner@example.com"})

    def gcloud(self, *args, expect_ok=True):
        return self.run_client(["gcloud", "storage"] + list(args), self.env, expect_ok=expect_ok,
                               what="gcloud storage " + " ".join(args))

    def url(self, name=""):
        return "gs://%s/%s" % (self.bucket, name)

    def upload_both(self):
        self.gcloud("cp", self.small, self.url("c/small.bin"))
        self.gcloud("cp", self.large, self.url("c/large.bin"))

    def test_cp_up_and_down(self):
        self.upload_both()
        multipart = self.emulator_requests("POST", "uploadType=multipart")
        self.assertEqual(len(multipart), 1, multipart)
        self.assertEqual(multipart[0].get("identity"), "owner@example.com", multipart[0])
        starts = self.emulator_requests("POST", "uploadType=resumable")
        self.assertEqual(len(starts), 1, starts)
        puts = self.emulator_requests("PUT", "upload_id=")
        self.assertTrue(puts, "no resumable PUT reached the emulator")
        self.assertIn(puts[-1]["status"], (200, 201), puts)
        for e in puts:
            self.assertEqual(e.get("identity"), "owner@example.com", e)
        seen = [(e["method"], e["path"]) for e in self.larder.access_log()]
        self.assertTrue(any(m == "PUT" and "upload_id=" in p for m, p in seen), seen)

        for name, src in (("small.bin", self.small), ("large.bin", self.large)):
            dst = self.out_path(name + ".down")
            self.gcloud("cp", self.url("c/" + name), dst)
            self.assertEqual(harness.sha256_file(dst), harness.sha256_file(src), name)
        # What was uploaded through larder is its cache entry (issue 8): the downloads move no bytes from
        # upstream (at most a conditional GET answered 304).
        media = [e for e in self.emulator.counters()["log"] if e["method"] == "GET" and "alt=media" in e["path"]]
        self.assertEqual([e for e in media if e["status"] != 304], [], media)

    def test_ls_describe_stat_cat_rm(self):
        self.upload_both()
        names = self.gcloud("ls", self.url()).stdout.decode().split()
        self.assertEqual(names, [self.url("c/")])
        names = self.gcloud("ls", self.url("c/")).stdout.decode().split()
        self.assertEqual(sorted(names), [self.url("c/large.bin"), self.url("c/small.bin")])
        long_listing = self.gcloud("ls", "-l", self.url("c/**")).stdout.decode()
        sizes = dict((url, int(size)) for size, url in re.findall(r"^\s*(\d+)\s+\S+\s+(gs://\S+)$",
                                                                  long_listing, re.M))
        self.assertEqual(sizes, {self.url("c/small.bin"): SMALL, self.url("c/large.bin"): LARGE}, long_listing)
        self.assertIn("TOTAL: 2 objects, %d bytes" % (SMALL + LARGE), long_listing)

        for name, src, size in (("small.bin", self.small, SMALL), ("large.bin", self.large, LARGE)):
            described = json.loads(self.gcloud("objects", "describe", self.url("c/" + name),
                                               "--format=json").stdout)
            self.assertEqual(described["name"], "c/" + name)
            self.assertEqual(int(described["size"]), size)
            self.assertEqual(described["md5_hash"], md5_b64(src))
            self.assertEqual(described["bucket"], self.bucket)
        # gcloud storage has no `stat`; `ls -L` prints gsutil stat's fields.
        full = self.gcloud("ls", "-L", self.url("c/small.bin")).stdout.decode()
        self.assertRegex(full, r"Content-Length:\s+%d\b" % SMALL)
        self.assertRegex(full, r"Hash \(MD5\):\s+%s" % re.escape(md5_b64(self.small)))

        cat = self.gcloud("cat", self.url("c/small.bin")).stdout
        with open(self.small, "rb") as f:
            self.assertEqual(hashlib.sha256(cat).hexdigest(), hashlib.sha256(f.read()).hexdigest())

        self.gcloud("rm", self.url("**"))
        self.assertEqual(self.gcloud("ls", self.url()).stdout.decode().split(), [])
        gone = self.gcloud("objects", "describe", self.url("c/small.bin"), expect_ok=False)
        self.assertNotEqual(gone.returncode, 0)
        deletes = self.emulator_requests("DELETE", "/o/")
        self.assertEqual(sorted(e["status"] for e in deletes), [204, 204], deletes)


if __name__ == "__main__":
    harness.main()
