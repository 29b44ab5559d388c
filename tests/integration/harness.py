"""harness.py - runs the GCS emulator and larder as real processes for a test.

Each integration test is one executable (a ctest entry). It starts the
emulator, then larder in front of it with a plain-HTTP and a TLS listener
(certificate signed by a throwaway test CA), and talks to larder with real
clients. On the way out larder is stopped with SIGTERM and its stderr is
scanned: a sanitizer report anywhere fails the test.

A test whose client is not installed calls skip(reason): it prints
"SKIP: reason" and exits 77, which CMake reports as skipped, never passed.
"""

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

SOURCE_DIR = os.environ.get(
    "LARDER_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
EMULATOR = os.path.join(SOURCE_DIR, "tests", "emulator", "gcs_emulator.py")
SKIP_EXIT = 77
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")


# gsutil's boto file for larder's TLS listener and the emulator's OAuth endpoint
# (see ../shared/reference/clients.md); format with port, token_port, state_dir.
GSUTIL_BOTO_TEMPLATE = """\
[Credentials]
gs_json_host = 127.0.0.1
gs_json_port = {port}
gs_host = 127.0.0.1
gs_port = {port}
gs_oauth2_refresh_token = any-refresh-token
[OAuth2]
provider_token_uri = http://127.0.0.1:{token_port}/token
client_id = any
client_secret = any
[Boto]
https_validate_certificates = True
num_retries = 1
max_retry_delay = 1
[GSUtil]
prefer_api = json
default_project_id = test
state_dir = {state_dir}
software_update_check_period = 0
"""


def skip(reason):
    print("SKIP: " + reason, flush=True)
    sys.exit(SKIP_EXIT)


def larder_bin():
    path = os.environ.get("LARDER_BIN")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("LARDER_BIN must name the larder binary (ctest sets it)")
    return path


_HELP_TEXT = None


def larder_has_setting(key):
    """Whether the larder binary knows the setting KEY: `larder --help` lists every setting."""
    global _HELP_TEXT
    if _HELP_TEXT is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LARDER_")}
        _HELP_TEXT = subprocess.run([larder_bin(), "--help"], capture_output=True, env=env,
                                    timeout=30).stdout.decode(errors="replace")
    return re.search(r"^\s*%s\b" % re.escape(key), _HELP_TEXT, re.M) is not None


def wait_until(predicate, timeout=10.0, interval=0.02):
    """Polls predicate until it holds or timeout passes; returns whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_random_file(path, size, seed=0):
    """Deterministic pseudo-random bytes: reproducible and incompressible."""
    block = hashlib.sha512(str(seed).encode()).digest() * 2048  # 128 KiB
    with open(path, "wb") as f:
        left = size
        counter = 0
        while left > 0:
            chunk = hashlib.sha256(block[:64] + counter.to_bytes(8, "big")).digest() + block[32:]
            f.write(chunk[:left])
            left -= min(left, len(chunk))
            counter += 1


def wait_for_file(path, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path) as f:
                return f.read().strip()
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before it was ready" % proc.returncode)
        time.sleep(0.02)
    raise RuntimeError("timed out waiting for " + path)


def free_port():
    return free_ports(1)[0]


def free_ports(count):
    """count distinct ports free right now: bound together, so the kernel cannot hand out one twice
    (ports bound and released one after the other can repeat, and two listeners then clash)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def scratch_upstream(prefix):
    """For scripts (bench/): a work directory with a test CA and a running emulator, all removed when the
    block ends. Yields (workdir, ca, emulator); larders started in it must be stopped inside it."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    try:
        ca = TestCA(workdir)
        emulator = Emulator(workdir)
        try:
            yield workdir, ca, emulator
        finally:
            emulator.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class TestCA:
    """A CA and a server certificate for 127.0.0.1 and localhost, made with openssl."""

    def __init__(self, directory):
        if shutil.which("openssl") is None:
            raise RuntimeError("openssl is required to make the test CA")
        self.dir = directory
        self.ca_cert = os.path.join(directory, "ca.pem")
        self.cert = os.path.join(directory, "server.pem")
        self.key = os.path.join(directory, "server.key")
        ca_key = os.path.join(directory, "ca.key")
        csr = os.path.join(directory, "server.csr")
        ext = os.path.join(directory, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.storage.googleapis.com\n"
                    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n")
        run = lambda *args: subprocess.run(args, check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out",
            self.ca_cert, "-days", "2", "-subj", "/CN=larder test CA")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", csr,
            "-subj", "/CN=127.0.0.1")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", ca_key,
            "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", ext)


class Emulator:
    """The GCS emulator in tests/emulator, as a subprocess."""

    def __init__(self, workdir, tls=None, extra_args=()):
        self.workdir = workdir
        port_file = os.path.join(workdir, "emulator.port")
        self.log_path = os.path.join(workdir, "emulator.log")
        args = [sys.executable, EMULATOR, "--host", "127.0.0.1", "--port", "0", "--port-file", port_file]
        if tls is not None:
            args += ["--tls-cert", tls.cert, "--tls-key", tls.key]
        args += list(extra_args)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = int(wait_for_file(port_file, 20, self.proc))
        self.base_url = "http://127.0.0.1:%d" % self.port

    @classmethod
    def again_on(cls, workdir, port):
        """A new emulator on port (its last --port wins; it binds with SO_REUSEADDR), with its own work
        directory under workdir: where larder's upstream was, after the old one stopped."""
        own = tempfile.mkdtemp(prefix="emulator-again-", dir=workdir)
        emulator = cls(own, extra_args=["--port", str(port)])
        if emulator.port != port:
            emulator.stop()
            raise RuntimeError("the emulator came back on port %d, not %d" % (emulator.port, port))
        return emulator

    def control(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, "/_emu/" + path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        if resp.status >= 300:
            raise RuntimeError("emulator control %s %s: %d %s" % (method, path, resp.status, payload[:200]))
        return json.loads(payload) if payload else None

    def reset(self):
        self.control("POST", "reset", {})

    def counters(self):
        return self.control("GET", "counters")

    def faults(self, **faults):
        self.control("POST", "faults", faults)

    def clear_faults(self):
        self.control("DELETE", "faults")

    def create_bucket(self, name, **extra):
        self.control("POST", "buckets", dict(name=name, **extra))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Larder:
    """larder as a subprocess with a plain and a TLS listener."""

    def __init__(self, workdir, upstream, tls, config=None, args=(), wrapper=(), plain_listener=None,
                 admin_listener=False):
        """wrapper: a command prefix larder is run under, e.g. ["nsenter", "-t", PID, "-m"] to run
        it in another mount namespace; it must exec larder, so that proc is larder itself.
        plain_listener: more settings for the plain listener, e.g. {"h2c": True}.
        admin_listener: also a plain listener marked "admin" on self.admin_port."""
        self.workdir = workdir
        self.port, self.tls_port = free_ports(2)
        self.tls = tls
        cfg = {
            "listeners": [
                dict({"address": "127.0.0.1", "port": self.port}, **(plain_listener or {})),
                {"address": "127.0.0.1", "port": self.tls_port, "tls_cert": tls.cert, "tls_key": tls.key},
            ],
            "upstream": {"base_url": upstream, "connect_timeout_ms": 2000, "response_timeout_ms": 10000,
                         "idle_timeout_ms": 10000},
            "worker_threads": 2,
            "store": {"path": os.path.join(workdir, "store")},
            "log": {"level": "info", "format": "json"},
        }
        # Tokens are validated at the emulator's tokeninfo, not Google's; owner@example.com may read
        # /_larder/stats. (Only for a binary that has auth.* settings: one built before issue 7 rejects
        # the key. Once every binary has them, this condition can go.)
        if larder_has_setting("auth.tokeninfo_url"):
            cfg["auth"] = {"tokeninfo_url": upstream + "/tokeninfo", "admins": ["owner@example.com"]}
        for key, value in (config or {}).items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
        self.admin_port = None
        if admin_listener:
            self.admin_port = free_port()
            cfg["listeners"].append({"address": "127.0.0.1", "port": self.admin_port, "admin": True})
        self.config = cfg
        self.config_path = os.path.join(workdir, "larder.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f)
        self.log_path = os.path.join(workdir, "larder.log")
        self.log = open(self.log_path, "wb")
        # larder rejects unknown LARDER_* variables, and ctest sets some for us.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LARDER_")}
        self.proc = subprocess.Popen(list(wrapper) + [larder_bin(), "--config", self.config_path] + list(args),
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url = "http://127.0.0.1:%d" % self.port
        self.tls_url = "https://127.0.0.1:%d" % self.tls_port
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("larder exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /_larder/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("larder did not become ready:\n" + self.read_log())

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def access_log(self):
        entries = []
        for line in self.read_log().splitlines():
            if '"component":"access"' in line:
                entries.append(json.loads(line))
        return entries

    def stop(self):
        """SIGTERM, then require a clean exit and a log free of sanitizer reports."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("larder did not exit within 30 s of SIGTERM")
        self.log.close()
        log = self.read_log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                raise AssertionError("sanitizer report in larder's log:\n" + log[-6000:])
        if self.proc.returncode != 0:
            raise AssertionError("larder exited with status %d:\n%s" % (self.proc.returncode, log[-3000:]))

    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.tls.ca_cert)
        return ctx

    def request(self, method, path, body=None, headers=None, tls=False, host=None, timeout=30):
        """One request on a fresh connection; returns (status, headers dict lower-cased, body bytes)."""
        if tls:
            conn = http.client.HTTPSConnection("127.0.0.1", self.tls_port, timeout=timeout,
                                               context=self.ssl_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = dict(headers or {})
        if host is not None:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        else:
            conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        out = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        conn.close()
        return out


# How long one client command may run before it is killed.
CLIENT_TIMEOUT = 120


class ClientCalls:
    """For tests that drive a client program; the class sets cls.tmp, its scratch directory."""

    def run_client(self, cmd, env, cwd=None, expect_ok=True, what=None):
        """One client call; SIGKILL after CLIENT_TIMEOUT because a plain timeout leaves (gsutil's) orphans."""
        proc = subprocess.run(["timeout", "-s", "KILL", str(CLIENT_TIMEOUT)] + list(cmd), env=env, cwd=cwd,
                              capture_output=True, timeout=CLIENT_TIMEOUT + 10)
        if expect_ok and proc.returncode != 0:
            self.fail("%s exited %d:\n%s" % (what or " ".join(cmd[:3]), proc.returncode,
                                             proc.stderr.decode(errors="replace")[-3000:]))
        return proc

    def out_path(self, name):
        """A path in the scratch directory with nothing there yet."""
        path = os.path.join(self.tmp, name)
        if os.path.exists(path):
            os.unlink(path)
        return path

    def emulator_requests(self, method, fragment):
        return [e for e in self.emulator.counters()["log"] if e["method"] == method and fragment in e["path"]]


class LarderTestCase(unittest.TestCase):
    """Starts one emulator and one larder for the whole class."""

    larder_config = None
    plain_listener = None  # settings for the plain listener beyond address and port, e.g. {"h2c": True}
    emulator_tls = False

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="larder-it-")
        cls.ca = TestCA(cls.workdir)
        cls.emulator = Emulator(cls.workdir, tls=cls.ca if cls.emulator_tls else None)
        try:
            cls.larder = Larder(cls.workdir, cls.emulator.base_url, cls.ca, config=cls.larder_config,
                                plain_listener=cls.plain_listener)
        except Exception:
            cls.emulator.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.larder.stop()
        finally:
            cls.emulator.stop()
            if os.environ.get("LARDER_KEEP_WORKDIR") is None:
                shutil.rmtree(cls.workdir, ignore_errors=True)

    def setUp(self):
        self.emulator.reset()
        self.bucket = test_bucket(self)
        self.emulator.create_bucket(self.bucket)

    def assertGcsJsonError(self, status, body, expected_status):
        self.assertEqual(status, expected_status, body[:500])
        doc = json.loads(body)
        self.assertEqual(doc["error"]["code"], expected_status)
        self.assertTrue(doc["error"]["errors"][0]["reason"])
        self.assertTrue(doc["error"]["message"])

    def assertGcsXmlError(self, status, body, expected_status, code=None):
        self.assertEqual(status, expected_status, body[:500])
        text = body.decode()
        self.assertTrue(text.startswith("<?xml"), text)
        self.assertIn("<Error><Code>", text)
        if code is not None:
            self.assertIn("<Code>%s</Code>" % code, text)


def quote_object(name):
    return urllib.parse.quote(name, safe="")



# -- environments for the real clients ------------------------------------------------------

def client_env(prefixes):
    """os.environ without the caller's client configuration (variables with these prefixes) and proxies."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(prefixes) or name.lower().endswith("_proxy"):
            del env[name]
    return env


def gsutil_env(tmp, larder, emulator, ca):
    """gsutil through larder's TLS listener, its token refreshed at the emulator (a boto file in tmp)."""
    state_dir = os.path.join(tmp, "gsutil-state")
    cloudsdk = os.path.join(tmp, "gsutil-cloudsdk")
    os.makedirs(state_dir, exist_ok=True)
    os.makedirs(cloudsdk, exist_ok=True)
    boto = os.path.join(tmp, "boto")
    with open(boto, "w") as f:
        f.write(GSUTIL_BOTO_TEMPLATE.format(port=larder.tls_port, token_port=emulator.port, state_dir=state_dir))
    env = client_env(("BOTO_", "CLOUDSDK_", "GSUTIL_"))
    env.update({"BOTO_CONFIG": boto, "BOTO_PATH": boto, "CLOUDSDK_CONFIG": cloudsdk,
                "CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL": "false",
                "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE": ca.ca_cert, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"})
    return env


def gcloud_env(tmp, larder, token):
    """gcloud storage through larder's plain listener with a fixed access token (a token file in tmp)."""
    cloudsdk = os.path.join(tmp, "gcloud-cloudsdk")
    os.makedirs(cloudsdk, exist_ok=True)
    token_file = os.path.join(tmp, "gcloud-token")
    with open(token_file, "w") as f:
        f.write(token)
    env = client_env(("BOTO_", "CLOUDSDK_", "GOOGLE_"))
    env.update({"CLOUDSDK_CONFIG": cloudsdk, "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": larder.url + "/storage/v1/",
                "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": token_file, "CLOUDSDK_CORE_PROJECT": "test",
                "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"})
    return env



def open_files_under(larder, directory):
    """The files under directory larder has open (a name ends in " (deleted)" once unlinked)."""
    found = []
    for fd in os.listdir("/proc/%d/fd" % larder.proc.pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (larder.proc.pid, fd))
        except OSError:
            continue
        if target.startswith(directory + "/"):
            found.append(target)
    return found

def main():
    """unittest.main for a test file: every test runs; a failure (a failed stop() in tearDownClass too)
    exits 1; otherwise a test that skipped (a tool it needs is missing) makes the file print SKIP with
    the reasons and exit 77, which CMake reports as skipped, never as a pass."""
    result = unittest.main(verbosity=2, exit=False).result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.skipped:
        skip("; ".join(reason for _, reason in result.skipped))
    sys.exit(0)


def test_bucket(testcase):
    """The bucket a test works in, named after it (bucket names are 3-63 lower-case characters)."""
    return "bkt-" + testcase._testMethodName.replace("_", "-")[:40].strip("-")
