"""test_gsutil.py - gsutil (JSON API) through larder's TLS listener.

gsutil hardcodes https:// for the JSON API, so it talks to larder's TLS
listener and trusts the throwaway test CA. It gets its bearer token by an
OAuth2 refresh against the emulator's POST /token (boto file per
/work/shared/reference/clients.md). Covers cp up of 1 KiB (one multipart
POST) and 20 MiB (resumable: POST, then one PUT with the whole body), cp down
of both (metadata GET, then a ranged media GET), ls, ls -l, stat, cat and rm.
Every transferred file is compared by sha256, and larder's access log must
show the traffic, so gsutil cannot have gone anywhere else.
"""

import base64
import hashlib
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

if shutil.which("gsutil") is None:
    harness.skip("gsutil is not installed")

SMALL = 1024
LARGE = 20 * 1024 * 1024  # over gsutil's 8 MiB resumable threshold



def md5_b64(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


class GsutilTest(harness.ClientCalls, harness.LarderTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="gsutil-", dir=cls.workdir)
        state_dir = os.path.join(cls.tmp, "state")
        cloudsdk_config = os.path.join(cls.tmp, "cloudsdk")
        os.makedirs(state_dir)
        os.makedirs(cloudsdk_config)
        boto = os.path.join(cls.tmp, "boto")
        with open(boto, "w") as f:
            f.write(harness.GSUTIL_BOTO_TEMPLATE.format(port=cls.larder.tls_port, token_port=cls.emulator.port,
                                         state_dir=state_dir))
        env = dict(os.environ)
        # Keep the caller's configuration and proxies out of it.
        for name in list(env):
            if name.startswith(("BOTO_", "CLOUDSDK_", "GSUTIL_")) or name.lower().endswith("_proxy"):
                del env[name]
        env.update({
            "BOTO_CONFIG": boto,
            "BOTO_PATH": boto,
            "CLOUDSDK_CONFIG": cloudsdk_config,
            "CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL": "false",
            "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE": cls.ca.ca_cert,
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        })
        cls.env = env
        cls.small = os.path.join(cls.tmp, "small.bin")
        cls.large = os.path.join(cls.tmp, "large.bin")
        harness.write_random_file(cls.small, SMALL, seed=11)
        harness.write_random_file(cls.large, LARGE, seed=12)

    def gsutil(self, *args, expect_ok=True):
        return self.run_client(["gsutil"] + list(args), self.env, expect_ok=expect_ok, what="gsutil " + " ".join(args))

    def url(self, name=""):
        return "gs://%s/%s" % (self.bucket, name)

    def larder_paths(self):
        return [(e["method"], e["path"], e["status"]) for e in self.larder.access_log()]

    def upload_both(self):
        self.gsutil("cp", self.small, self.url("g/small.bin"))
        self.gsutil("cp", self.large, self.url("g/large.bin"))

    def test_cp_up_and_down(self):
        self.upload_both()
        # The small file went up as one multipart POST, the large one resumable.
        multipart = self.emulator_requests("POST", "uploadType=multipart")
        self.assertEqual(len(multipart), 1, multipart)
        self.assertEqual(multipart[0].get("identity"), "owner@example.com", multipart[0])
        starts = self.emulator_requests("POST", "uploadType=resumable")
        self.assertEqual(len(starts), 1, starts)
        puts = self.emulator_requests("PUT", "upload_id=")
        self.assertTrue(puts, "no resumable PUT reached the emulator")
        self.assertIn(puts[-1]["status"], (200, 201), puts)
        seen = self.larder_paths()
        self.assertTrue(any(m == "POST" and p.startswith("/resumable/upload/storage/v1/b/%s/o" % self.bucket)
                            for m, p, _ in seen), seen)
        self.assertTrue(any(m == "PUT" and "upload_id=" in p and s in (200, 201) for m, p, s in seen), seen)

        for name, src in (("small.bin", self.small), ("large.bin", self.large)):
            dst = self.out_path(name + ".down")
            self.gsutil("cp", self.url("g/" + name), dst)
            self.assertEqual(harness.sha256_file(dst), harness.sha256_file(src), name)
        # gsutil downloads with a Range covering the whole object and wants 206.
        media = [(m, p, s) for m, p, s in self.larder_paths() if m == "GET" and "alt=media" in p]
        self.assertEqual(sorted(s for _, _, s in media), [206, 206], media)

    def test_ls_stat_cat_rm(self):
        self.upload_both()
        names = self.gsutil("ls", self.url()).stdout.decode().split()
        self.assertEqual(sorted(names), [self.url("g/")])
        names = self.gsutil("ls", self.url("g/")).stdout.decode().split()
        self.assertEqual(sorted(names), [self.url("g/large.bin"), self.url("g/small.bin")])
        long_listing = self.gsutil("ls", "-l", self.url("g/**")).stdout.decode()
        sizes = dict((url, int(size)) for size, url in re.findall(r"^\s*(\d+)\s+\S+\s+(gs://\S+)$",
                                                                  long_listing, re.M))
        self.assertEqual(sizes, {self.url("g/small.bin"): SMALL, self.url("g/large.bin"): LARGE}, long_listing)
        self.assertIn("TOTAL: 2 objects, %d bytes" % (SMALL + LARGE), long_listing)

        for name, src, size in (("small.bin", self.small, SMALL), ("large.bin", self.large, LARGE)):
            stat = self.gsutil("stat", self.url("g/" + name)).stdout.decode()
            self.assertRegex(stat, r"Content-Length:\s+%d\b" % size)
            self.assertRegex(stat, r"Hash \(md5\):\s+%s" % re.escape(md5_b64(src)))

        cat = self.gsutil("cat", self.url("g/small.bin")).stdout
        with open(self.small, "rb") as f:
            self.assertEqual(hashlib.sha256(cat).hexdigest(), hashlib.sha256(f.read()).hexdigest())

        self.gsutil("rm", self.url("g/small.bin"))
        names = self.gsutil("ls", self.url("g/")).stdout.decode().split()
        self.assertEqual(names, [self.url("g/large.bin")])
        self.gsutil("rm", self.url("g/large.bin"))
        # An empty bucket lists as nothing, and stat of a deleted object fails.
        self.assertEqual(self.gsutil("ls", self.url()).stdout.decode().split(), [])
        gone = self.gsutil("stat", self.url("g/small.bin"), expect_ok=False)
        self.assertNotEqual(gone.returncode, 0)
        self.assertIn("No URLs matched", gone.stderr.decode(errors="replace"))
        deletes = self.emulator_requests("DELETE", "/o/")
        self.assertEqual([e["status"] for e in deletes], [204, 204], deletes)


if __name__ == "__main__":
    harness.main()
