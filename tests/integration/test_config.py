"""test_config.py - the larder binary's configuration surface, end to end.

Every kind of configuration error stops start-up with exit status 2 and one
line naming the key, the bad value and what was expected. The unit tests in
tests/unit/test_conf*.c cover the parsing in depth; this checks the binary.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


def run_larder(*args, env=None, timeout=20):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LARDER_") or k == "LARDER_BIN"}
    full_env.pop("LARDER_BIN", None)
    full_env.update(env or {})
    return subprocess.run([harness.larder_bin()] + list(args), capture_output=True, text=True, env=full_env,
                          timeout=timeout)


class ConfigTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="larder-conf-")
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, content):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def assertConfigError(self, result, *fragments):
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        for fragment in fragments:
            self.assertIn(fragment, lines[0])

    def test_help_and_version(self):
        r = run_larder("--help")
        self.assertEqual(r.returncode, 0)
        for key in ("upstream.base_url", "listeners", "store.budget", "LARDER_UPSTREAM_BASE_URL", "--check-config"):
            self.assertIn(key, r.stdout)
        r = run_larder("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.strip(), r"^larder \d+\.\d+\.\d+$")

    def test_check_config_prints_effective_settings(self):
        path = self.write("ok.json", {"upstream": {"base_url": "http://127.0.0.1:9/"}, "worker_threads": 3})
        r = run_larder("--check-config", path, env={"LARDER_LOG_LEVEL": "debug"})
        self.assertEqual(r.returncode, 0, r.stderr)
        effective = json.loads(r.stdout)
        self.assertEqual(effective["upstream"]["base_url"], "http://127.0.0.1:9")
        self.assertEqual(effective["worker_threads"], 3)
        self.assertEqual(effective["log"]["level"], "debug")
        # the embedded default
        r = run_larder("--check-config", self.write("empty.json", {}))
        effective = json.loads(r.stdout)
        self.assertEqual(effective["listeners"][0]["address"], "127.0.0.1")
        self.assertEqual(effective["listeners"][0]["port"], 8080)
        self.assertEqual(effective["upstream"]["base_url"], "https://storage.googleapis.com")
        self.assertGreaterEqual(effective["worker_threads"], 1)

    def test_each_kind_of_error(self):
        cases = [
            ({"upstream": {"conect_timeout_ms": 5}}, ["upstream.conect_timeout_ms"]),
            ({"listeners": [{"address": "127.0.0.1", "port": 70000}]}, ["listeners[0].port", "70000"]),
            ({"listeners": [{"address": "not an address", "port": 80}]}, ["listeners[0].address"]),
            ({"listeners": []}, ["listeners"]),
            ({"listeners": [{"address": "127.0.0.1", "port": 8443, "tls_cert": "/nonexistent.pem",
                             "tls_key": "/nonexistent.key"}]}, ["listeners[0].tls_cert", "/nonexistent.pem"]),
            ({"upstream": {"base_url": "ftp://x"}}, ["upstream.base_url", "ftp://x"]),
            ({"worker_threads": "many"}, ["worker_threads", "many"]),
            ({"max_request_body": "12 parsecs"}, ["max_request_body", "12 parsecs"]),
            ({"log": {"level": "loud"}}, ["log.level", "loud"]),
            ({"store": {"budget": -1}}, ["store.budget"]),
        ]
        for doc, fragments in cases:
            with self.subTest(doc=doc):
                r = run_larder("--check-config", self.write("bad.json", doc))
                self.assertConfigError(r, *fragments)
                r = run_larder("--config", self.write("bad.json", doc))
                self.assertConfigError(r, *fragments)

    def test_syntax_error_and_missing_file(self):
        r = run_larder("--config", self.write("syntax.json", '{"worker_threads": 2,,}'))
        self.assertConfigError(r, "syntax.json")
        r = run_larder("--config", os.path.join(self.dir, "missing.json"))
        self.assertConfigError(r, "missing.json")

    def test_flag_and_environment_errors(self):
        self.assertConfigError(run_larder("--no-such-flag=1"), "no-such-flag")
        self.assertConfigError(run_larder("--listen", "127.0.0.1"), "127.0.0.1")
        empty = self.write("empty.json", {})
        self.assertConfigError(run_larder("--check-config", empty, env={"LARDER_NO_SUCH": "x"}), "LARDER_NO_SUCH")
        self.assertConfigError(run_larder("--check-config", empty, env={"LARDER_WORKER_THREADS": "-3"}),
                               "worker_threads", "-3")

    def test_layering_flags_over_environment_over_file(self):
        path = self.write("layer.json", {"worker_threads": 1, "log": {"level": "warn"}, "public_url": "http://a"})
        r = run_larder("--check-config", path, "--worker_threads=4",
                       env={"LARDER_WORKER_THREADS": "2", "LARDER_LOG_LEVEL": "error"})
        effective = json.loads(r.stdout)
        self.assertEqual(effective["worker_threads"], 4)
        self.assertEqual(effective["log"]["level"], "error")
        self.assertEqual(effective["public_url"], "http://a")

    def test_listen_failure_is_reported(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            r = run_larder("--listen", "127.0.0.1:%d" % port, "--upstream", "http://127.0.0.1:9")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(str(port), r.stderr)

    def test_bad_tls_material_is_reported(self):
        cert = self.write("cert.pem", "not a certificate\n")
        key = self.write("key.pem", "not a key\n")
        r = run_larder("--listen", "127.0.0.1:%d,tls_cert=%s,tls_key=%s" % (harness.free_port(), cert, key),
                       "--upstream", "http://127.0.0.1:9")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("cert.pem", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
