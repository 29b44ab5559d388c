#!/usr/bin/env python3
"""Drive real GCS clients (gcloud storage, gsutil, Node SDK, aws CLI, curl)
against a GCS endpoint and checksum what they transfer.

By default it starts two gcs_emulator.py instances (plain HTTP, and HTTPS
with a throwaway CA made with openssl, because gsutil only speaks HTTPS) and
checks that the clients cannot tell them from GCS.  Point --http-url /
--https-url at larder instead to run the same checks through the proxy; the
buckets are still created through --control-url (the emulator's /_emu/ API).

  python3 tests/clients/run_real_clients.py [--clients gcloud,gsutil,node,aws,curl]
      [--node-modules DIR]   directory holding node_modules/@google-cloud/storage
      [--http-url URL --https-url URL --ca-cert PEM --control-url URL --token-url URL]

Exit status is non-zero when any client check fails.  Each client command is
wrapped in `timeout -s KILL`, because a plain timeout leaves gsutil orphans.
"""

import argparse
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "..", "emulator", "gcs_emulator.py")
SMALL, BIG = 1000, 20 * 1024 * 1024


def md5_file(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Runner:
    def __init__(self, work):
        self.work = work
        self.results = []  # (client, step, ok, detail)

    def run(self, client, step, argv, env=None, timeout=180, stdout_path=None):
        """Run one client command; True on exit status 0."""
        full_env = dict(os.environ, **(env or {}))
        out = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
        try:
            proc = subprocess.run(["timeout", "-s", "KILL", str(timeout)] + argv, env=full_env,
                                  stdout=out, stderr=subprocess.PIPE, cwd=self.work)
        finally:
            if stdout_path:
                out.close()
        ok = proc.returncode == 0
        detail = "" if ok else proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        self.results.append((client, step, ok, detail))
        return ok

    def check(self, client, step, ok, detail=""):
        self.results.append((client, step, bool(ok), detail))
        return ok

    def same_file(self, client, step, a, b):
        exists = os.path.exists(os.path.join(self.work, b))
        ok = exists and md5_file(os.path.join(self.work, a)) == md5_file(os.path.join(self.work, b))
        return self.check(client, step, ok, "" if ok else "content differs from %s" % a)

    def report(self):
        failed = 0
        for client, step, ok, detail in self.results:
            print("%-6s %-4s %s%s" % (client, "ok" if ok else "FAIL", step, "" if ok else "  %s" % detail))
            failed += not ok
        print("%d checks, %d failed" % (len(self.results), failed))
        return failed


class Emulators:
    """A plain and a TLS emulator, plus the throwaway CA gsutil must trust."""

    def __init__(self, work):
        self.work = work
        self.procs = []
        self.ca = os.path.join(work, "ca.pem")
        self.make_certs()
        self.http_port = self.start()
        self.https_port = self.start("--tls-cert", os.path.join(work, "srv.pem"),
                                     "--tls-key", os.path.join(work, "srv.key"))

    def make_certs(self):
        w = lambda name: os.path.join(self.work, name)  # noqa: E731
        openssl = lambda *args: subprocess.run(["openssl"] + list(args), check=True, capture_output=True)  # noqa: E731
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", w("ca.key"), "-out", self.ca,
                "-days", "1", "-subj", "/CN=larder-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", w("srv.key"), "-out", w("srv.csr"),
                "-subj", "/CN=127.0.0.1")
        with open(w("ext.cnf"), "w") as handle:
            handle.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", w("srv.csr"), "-CA", self.ca, "-CAkey", w("ca.key"), "-CAcreateserial",
                "-out", w("srv.pem"), "-days", "1", "-extfile", w("ext.cnf"))

    def start(self, *args):
        port_file = os.path.join(self.work, "port.%d" % len(self.procs))
        proc = subprocess.Popen([sys.executable, EMULATOR, "--port-file", port_file] + list(args),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        deadline = time.time() + 15
        while not os.path.exists(port_file):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("emulator failed to start")
            time.sleep(0.05)
        with open(port_file) as handle:
            return int(handle.read())

    def stop(self):
        for proc in self.procs:
            proc.terminate()
            proc.wait(10)


def control(url, path, spec, ca=None):
    context = ssl.create_default_context(cafile=ca) if url.startswith("https") else None
    req = urllib.request.Request(url + "/_emu/" + path, data=json.dumps(spec).encode(), method="POST")
    with urllib.request.urlopen(req, context=context) as resp:
        return json.loads(resp.read())


def check_gcloud(r, url, token_file):
    env = {"CLOUDSDK_CONFIG": os.path.join(r.work, "gcloud-config"),
           "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": url + "/storage/v1/",
           "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": token_file, "CLOUDSDK_CORE_PROJECT": "test",
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    g = ["gcloud", "storage"]
    r.run("gcloud", "cp up 1 KB", g + ["cp", "small.bin", "gs://clients/c/small.bin"], env)
    r.run("gcloud", "cp up 20 MiB", g + ["cp", "big.bin", "gs://clients/c/big.bin"], env)
    r.run("gcloud", "cp down 1 KB", g + ["cp", "gs://clients/c/small.bin", "gc-small.out"], env)
    r.same_file("gcloud", "checksum 1 KB", "small.bin", "gc-small.out")
    r.run("gcloud", "cp down 20 MiB", g + ["cp", "gs://clients/c/big.bin", "gc-big.out"], env)
    r.same_file("gcloud", "checksum 20 MiB", "big.bin", "gc-big.out")
    r.run("gcloud", "ls", g + ["ls", "gs://clients/c/"], env)
    r.run("gcloud", "objects describe", g + ["objects", "describe", "gs://clients/c/small.bin"], env)
    r.run("gcloud", "cat", g + ["cat", "gs://clients/c/small.bin"], env, stdout_path=os.path.join(r.work, "gc-cat.out"))
    r.same_file("gcloud", "checksum cat", "small.bin", "gc-cat.out")
    r.run("gcloud", "rm", g + ["rm", "gs://clients/c/small.bin", "gs://clients/c/big.bin"], env)


def check_gsutil(r, url, token_url, ca):
    host, port = url.split("://")[1].rsplit(":", 1)
    state = os.path.join(r.work, "gsutil-state")
    os.makedirs(state, exist_ok=True)
    boto = os.path.join(r.work, "boto.cfg")
    with open(boto, "w") as handle:
        handle.write("[Credentials]\ngs_json_host = %s\ngs_json_port = %s\ngs_host = %s\ngs_port = %s\n"
                     "gs_oauth2_refresh_token = any-refresh-token\n[OAuth2]\nprovider_token_uri = %s\n"
                     "client_id = any\nclient_secret = any\n[Boto]\nhttps_validate_certificates = True\n"
                     "num_retries = 1\nmax_retry_delay = 1\n[GSUtil]\nprefer_api = json\ndefault_project_id = test\n"
                     "state_dir = %s\nsoftware_update_check_period = 0\n"
                     % (host, port, host, port, token_url, state))
    env = {"BOTO_CONFIG": boto, "CLOUDSDK_CONFIG": os.path.join(r.work, "gsutil-config"),
           "CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL": "false", "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE": ca}
    g = ["gsutil"]
    r.run("gsutil", "cp up 1 KB", g + ["cp", "small.bin", "gs://clients/g/small.bin"], env)
    r.run("gsutil", "cp up 20 MiB", g + ["cp", "big.bin", "gs://clients/g/big.bin"], env)
    r.run("gsutil", "cp down 1 KB", g + ["cp", "gs://clients/g/small.bin", "gs-small.out"], env)
    r.same_file("gsutil", "checksum 1 KB", "small.bin", "gs-small.out")
    r.run("gsutil", "cp down 20 MiB", g + ["cp", "gs://clients/g/big.bin", "gs-big.out"], env)
    r.same_file("gsutil", "checksum 20 MiB", "big.bin", "gs-big.out")
    r.run("gsutil", "ls", g + ["ls", "gs://clients/g/"], env)
    r.run("gsutil", "stat", g + ["stat", "gs://clients/g/small.bin"], env)
    r.run("gsutil", "cat", g + ["cat", "gs://clients/g/small.bin"], env, stdout_path=os.path.join(r.work, "gs-cat.out"))
    r.same_file("gsutil", "checksum cat", "small.bin", "gs-cat.out")
    r.run("gsutil", "rm", g + ["rm", "gs://clients/g/small.bin", "gs://clients/g/big.bin"], env)


NODE_SCRIPT = r"""
const {Storage} = require('@google-cloud/storage');
const crypto = require('crypto');
const fs = require('fs');
const md5 = b => crypto.createHash('md5').update(b).digest('hex');
const step = (name, ok) => console.log(JSON.stringify({step: name, ok: !!ok}));
(async () => {
  const storage = new Storage({apiEndpoint: process.argv[2], projectId: 'test'});
  // With a custom endpoint the SDK sends no credentials; add the token explicitly.
  storage.interceptors.push({request: o => { o.headers = {...(o.headers || {}), Authorization: 'Bearer owner'}; return o; }});
  const bucket = storage.bucket('clients');
  const small = fs.readFileSync('small.bin'), big = fs.readFileSync('big.bin');
  await bucket.file('n/small.bin').save(small, {resumable: false});
  step('save (multipart)', true);
  await new Promise((res, rej) => {
    const ws = bucket.file('n/big.bin').createWriteStream({resumable: true, chunkSize: 256 * 1024});
    ws.on('error', rej).on('finish', res);
    ws.end(big);
  });
  step('resumable upload, chunkSize 256 KiB', true);
  await bucket.upload('big.bin', {destination: 'n/uploaded.bin'});
  step('bucket.upload (single-request resumable)', true);
  step('download 1 KB checksum', md5((await bucket.file('n/small.bin').download())[0]) === md5(small));
  step('download 20 MiB checksum', md5((await bucket.file('n/big.bin').download())[0]) === md5(big));
  step('download uploaded checksum', md5((await bucket.file('n/uploaded.bin').download())[0]) === md5(big));
  const [part] = await bucket.file('n/big.bin').download({start: 100, end: 1099});
  step('ranged read', md5(part) === md5(big.subarray(100, 1100)));
  const [files] = await bucket.getFiles({prefix: 'n/'});
  step('list', files.map(f => f.name).join(',') === 'n/big.bin,n/small.bin,n/uploaded.bin');
  for (const f of files) await f.delete();
  step('delete', !(await bucket.file('n/small.bin').exists())[0]);
})().catch(e => { step('exception: ' + e.message, false); process.exit(1); });
"""


def check_node(r, url, node_modules, ca):
    if not node_modules or not os.path.isdir(os.path.join(node_modules, "@google-cloud", "storage")):
        r.check("node", "@google-cloud/storage installed (--node-modules)", False, "not found; skipped")
        return
    script = os.path.join(r.work, "node_check.js")
    with open(script, "w") as handle:
        handle.write(NODE_SCRIPT)
    env = dict(os.environ, NODE_PATH=node_modules, NODE_EXTRA_CA_CERTS=ca)
    proc = subprocess.run(["timeout", "-s", "KILL", "180", "node", script, url], env=env, cwd=r.work,
                          capture_output=True)
    for line in proc.stdout.decode().splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            r.check("node", result["step"], result["ok"])
    r.check("node", "exit status", proc.returncode == 0, proc.stderr.decode()[-300:])


def check_aws(r, url):
    env = {"AWS_ACCESS_KEY_ID": "owner", "AWS_SECRET_ACCESS_KEY": "unused", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    a = ["aws", "--endpoint-url", url, "s3api"]
    r.run("aws", "put-object", a + ["put-object", "--bucket", "clients", "--key", "a/big.bin", "--body", "big.bin"], env)
    r.run("aws", "head-object", a + ["head-object", "--bucket", "clients", "--key", "a/big.bin"], env)
    r.run("aws", "get-object", a + ["get-object", "--bucket", "clients", "--key", "a/big.bin", "aws-big.out"], env)
    r.same_file("aws", "checksum 20 MiB", "big.bin", "aws-big.out")
    r.run("aws", "list-objects", a + ["list-objects", "--bucket", "clients", "--prefix", "a/"], env)
    r.run("aws", "delete-object", a + ["delete-object", "--bucket", "clients", "--key", "a/big.bin"], env)


def check_curl(r, url, ca):
    auth = ["-H", "Authorization: Bearer owner", "--cacert", ca, "-sf"]
    upload = url + "/upload/storage/v1/b/clients/o?uploadType=media&name=k%2Fsmall.bin"
    r.run("curl", "JSON media upload", ["curl"] + auth + ["--data-binary", "@small.bin", upload])
    r.run("curl", "JSON alt=media", ["curl"] + auth + ["-o", "curl-json.out",
                                                       url + "/storage/v1/b/clients/o/k%2Fsmall.bin?alt=media"])
    r.same_file("curl", "checksum JSON media", "small.bin", "curl-json.out")
    r.run("curl", "XML path-style GET", ["curl"] + auth + ["-o", "curl-xml.out", url + "/clients/k/small.bin"])
    r.same_file("curl", "checksum XML GET", "small.bin", "curl-xml.out")
    host_port = url.split("://")[1]
    port = host_port.rsplit(":", 1)[1]
    vhost = "clients.storage.googleapis.com"
    r.run("curl", "XML virtual-hosted GET", ["curl"] + auth + ["--resolve", "%s:%s:127.0.0.1" % (vhost, port),
                                                               "-k", "-o", "curl-vhost.out",
                                                               "%s://%s:%s/k/small.bin" % (url.split(":")[0], vhost, port)])
    r.same_file("curl", "checksum virtual-hosted GET", "small.bin", "curl-vhost.out")
    r.run("curl", "XML DELETE", ["curl"] + auth + ["-X", "DELETE", url + "/clients/k/small.bin"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="gcloud,gsutil,node,aws,curl")
    parser.add_argument("--node-modules", default=os.environ.get("NODE_MODULES"))
    parser.add_argument("--http-url", help="plain-HTTP endpoint (default: a fresh emulator)")
    parser.add_argument("--https-url", help="HTTPS endpoint for gsutil (default: a fresh TLS emulator)")
    parser.add_argument("--ca-cert", help="CA that signed --https-url's certificate")
    parser.add_argument("--control-url", help="emulator control API base URL (default: --http-url)")
    parser.add_argument("--token-url", help="OAuth token URL for gsutil (default: <control-url>/token)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="larder-clients-")
    emulators = None
    try:
        if not args.http_url or not args.https_url:
            emulators = Emulators(work)
            args.http_url = args.http_url or "http://127.0.0.1:%d" % emulators.http_port
            args.https_url = args.https_url or "https://127.0.0.1:%d" % emulators.https_port
            args.ca_cert = args.ca_cert or emulators.ca
            args.control_url = args.control_url or "http://127.0.0.1:%d" % emulators.http_port
        args.control_url = args.control_url or args.http_url
        token_url = args.token_url or args.control_url + "/token"
        with open(os.path.join(work, "small.bin"), "wb") as handle:
            handle.write(os.urandom(SMALL))
        with open(os.path.join(work, "big.bin"), "wb") as handle:
            handle.write(os.urandom(BIG))
        token_file = os.path.join(work, "token")
        with open(token_file, "w") as handle:
            handle.write("owner\n")
        control_urls = [args.control_url]
        if emulators:  # the TLS emulator gsutil talks to has its own state
            control_urls.append("https://127.0.0.1:%d" % emulators.https_port)
        for url in control_urls:
            control(url, "buckets", {"name": "clients"}, args.ca_cert)

        runner = Runner(work)
        wanted = set(args.clients.split(","))
        if "gcloud" in wanted:
            check_gcloud(runner, args.http_url, token_file)
        if "gsutil" in wanted:
            check_gsutil(runner, args.https_url, token_url, args.ca_cert)
        if "node" in wanted:
            check_node(runner, args.http_url, args.node_modules, args.ca_cert)
        if "aws" in wanted:
            check_aws(runner, args.http_url)
        if "curl" in wanted:
            check_curl(runner, args.http_url, args.ca_cert)
        return 1 if runner.report() else 0
    finally:
        if emulators:
            emulators.stop()
        if args.keep:
            print("scratch directory:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
