"""test_aws_s3api.py - the aws CLI's s3api (GCS XML API) through larder.

`aws s3api --endpoint-url <larder plain url>` with path-style addressing and
SigV4 credentials whose access key id is "owner" (the emulator maps the key
id to an identity and, like any endpoint behind a Host-rewriting proxy, does
not verify the signature). Covers put-object, head-object, get-object (whole
and with --range), list-objects, list-objects-v2 and delete-object. Every
transferred file is compared by sha256. HOME and the aws config files are
temporary so no user configuration leaks in.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

if shutil.which("aws") is None:
    harness.skip("the aws CLI is not installed")

SMALL = 1024
LARGE = 5 * 1024 * 1024 + 123  # one PUT either way; big enough to stream in pieces


def md5_hex(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


class AwsS3ApiTest(harness.ClientCalls, harness.LarderTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="aws-", dir=cls.workdir)
        home = os.path.join(cls.tmp, "home")
        os.makedirs(home)
        env = dict(os.environ)
        for name in list(env):
            if name.startswith("AWS_") or name.lower().endswith("_proxy"):
                del env[name]
        env.update({
            "HOME": home,
            "AWS_CONFIG_FILE": os.path.join(home, "config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
            "AWS_ACCESS_KEY_ID": "owner",
            "AWS_SECRET_ACCESS_KEY": "anything",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
        })
        cls.env = env
        subprocess.run(["timeout", "-s", "KILL", str(harness.CLIENT_TIMEOUT), "aws", "configure", "set",
                        "default.s3.addressing_style", "path"], env=env, check=True, capture_output=True)
        cls.small = os.path.join(cls.tmp, "small.bin")
        cls.large = os.path.join(cls.tmp, "large.bin")
        harness.write_random_file(cls.small, SMALL, seed=31)
        harness.write_random_file(cls.large, LARGE, seed=32)

    def s3api(self, *args, expect_ok=True):
        """One `aws s3api` call against larder; returns (proc, parsed JSON output or None)."""
        cmd = ["aws", "--endpoint-url", self.larder.url, "--output", "json", "s3api"] + list(args)
        proc = self.run_client(cmd, self.env, expect_ok=expect_ok, what="aws s3api " + " ".join(args))
        out = proc.stdout.decode().strip()
        return proc, (json.loads(out) if out else None)

    def put(self, key, path):
        _, doc = self.s3api("put-object", "--bucket", self.bucket, "--key", key, "--body", path)
        return doc

    def test_put_head_get(self):
        for key, src, size in (("x/small.bin", self.small, SMALL), ("x/large.bin", self.large, LARGE)):
            put = self.put(key, src)
            # Single-part uploads: the ETag is the quoted MD5, as with S3.
            self.assertEqual(put["ETag"], '"%s"' % md5_hex(src), put)

            _, head = self.s3api("head-object", "--bucket", self.bucket, "--key", key)
            self.assertEqual(head["ContentLength"], size)
            self.assertEqual(head["ETag"], put["ETag"])

            dst = self.out_path(key.replace("/", "_") + ".down")
            _, got = self.s3api("get-object", "--bucket", self.bucket, "--key", key, dst)
            self.assertEqual(got["ContentLength"], size)
            self.assertEqual(harness.sha256_file(dst), harness.sha256_file(src), key)

        puts = [e for e in self.emulator.counters()["log"] if e["method"] == "PUT"]
        self.assertEqual(len(puts), 2, puts)
        for e in puts:
            self.assertEqual(e["identity"], "owner@example.com", e)
            self.assertEqual(e["status"], 200, e)
        paths = [(e["method"], e["path"]) for e in self.larder.access_log()]
        self.assertIn(("PUT", "/%s/x/large.bin" % self.bucket), paths)

    def test_ranged_get(self):
        self.put("r.bin", self.large)
        with open(self.large, "rb") as f:
            data = f.read()
        for rng, start, end in (("bytes=0-0", 0, 0), ("bytes=1000-1999", 1000, 1999),
                                ("bytes=%d-" % (LARGE - 77), LARGE - 77, LARGE - 1),
                                ("bytes=-500", LARGE - 500, LARGE - 1)):
            dst = self.out_path("range.out")
            _, got = self.s3api("get-object", "--bucket", self.bucket, "--key", "r.bin", "--range", rng, dst)
            self.assertEqual(got["ContentLength"], end - start + 1, rng)
            self.assertEqual(got["ContentRange"], "bytes %d-%d/%d" % (start, end, LARGE), rng)
            with open(dst, "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(),
                                 hashlib.sha256(data[start:end + 1]).hexdigest(), rng)
        ranged = [e for e in self.larder.access_log() if e["method"] == "GET" and e["status"] == 206]
        self.assertEqual(len(ranged), 4, ranged)

    def test_list_and_delete(self):
        keys = ["a/one", "a/two", "a/deep/three", "b/four"]
        for key in keys:
            self.put(key, self.small)
        _, listing = self.s3api("list-objects", "--bucket", self.bucket, "--prefix", "a/")
        self.assertEqual(sorted(o["Key"] for o in listing["Contents"]), ["a/deep/three", "a/one", "a/two"])
        self.assertTrue(all(o["Size"] == SMALL for o in listing["Contents"]), listing)
        _, listing = self.s3api("list-objects", "--bucket", self.bucket, "--delimiter", "/")
        self.assertEqual(sorted(p["Prefix"] for p in listing["CommonPrefixes"]), ["a/", "b/"])
        self.assertNotIn("Contents", listing)

        _, v2 = self.s3api("list-objects-v2", "--bucket", self.bucket, "--prefix", "a/", "--delimiter", "/")
        self.assertEqual(sorted(o["Key"] for o in v2["Contents"]), ["a/one", "a/two"])
        self.assertEqual([p["Prefix"] for p in v2["CommonPrefixes"]], ["a/deep/"])
        # Pagination: the CLI follows continuation tokens itself with --page-size.
        _, paged = self.s3api("list-objects-v2", "--bucket", self.bucket, "--page-size", "1")
        self.assertEqual(sorted(o["Key"] for o in paged["Contents"]), sorted(keys))
        v2_calls = [e for e in self.emulator.counters()["log"] if "list-type=2" in e["path"]]
        self.assertGreaterEqual(len(v2_calls), len(keys), v2_calls)

        self.s3api("delete-object", "--bucket", self.bucket, "--key", "a/two")
        proc, _ = self.s3api("head-object", "--bucket", self.bucket, "--key", "a/two", expect_ok=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("404", proc.stderr.decode(errors="replace"))
        _, listing = self.s3api("list-objects", "--bucket", self.bucket)
        self.assertEqual(sorted(o["Key"] for o in listing["Contents"]), ["a/deep/three", "a/one", "b/four"])
        deletes = [e for e in self.emulator.counters()["log"] if e["method"] == "DELETE"]
        self.assertEqual([e["status"] for e in deletes], [204], deletes)


if __name__ == "__main__":
    harness.main()
