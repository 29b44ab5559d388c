"""curlclient.py - runs the real curl binary and returns what it received."""

import os
import shutil
import subprocess
import tempfile


class CurlResult:
    def __init__(self, status, headers, body, http_version):
        self.status = status
        self.headers = headers  # lower-cased name -> last value
        self.header_list = []
        self.body = body
        self.http_version = http_version

    def header(self, name):
        return self.headers.get(name.lower())


def available():
    return shutil.which("curl") is not None


def run(url, method="GET", headers=None, data_file=None, data=None, extra=(), timeout=60):
    """Runs curl once. data (bytes) is written to a temp file so binary bodies survive."""
    with tempfile.TemporaryDirectory(prefix="curl-") as tmp:
        head_path = os.path.join(tmp, "head")
        body_path = os.path.join(tmp, "body")
        args = ["curl", "-sS", "-g", "--path-as-is", "-X", method, "-D", head_path, "-o", body_path,
                "-w", "%{http_code} %{http_version}"]
        if method == "HEAD":
            args = [a for a in args if a not in ("-X", "HEAD")] + ["-I"]
        for name, value in (headers or {}).items():
            args += ["-H", "%s: %s" % (name, value) if value != "" else "%s;" % name]
        if data is not None:
            data_file = os.path.join(tmp, "upload")
            with open(data_file, "wb") as f:
                f.write(data)
        if data_file is not None:
            args += ["--data-binary", "@" + data_file]
        args += list(extra) + [url]
        proc = subprocess.run(args, capture_output=True, timeout=timeout)
        out = proc.stdout.decode().split()
        status = int(out[0]) if out else 0
        version = out[1] if len(out) > 1 else ""
        result = CurlResult(status, {}, b"", version)
        result.exit_code = proc.returncode
        result.stderr = proc.stderr.decode(errors="replace")
        if os.path.exists(head_path):
            with open(head_path, "rb") as f:
                blocks = f.read().decode("latin-1").split("\r\n\r\n")
            # curl writes every response head (100 Continue, final); keep the last non-empty one
            heads = [b for b in blocks if b.strip()]
            if heads:
                for line in heads[-1].split("\r\n")[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        result.headers[name.strip().lower()] = value.strip()
                        result.header_list.append((name.strip().lower(), value.strip()))
        if os.path.exists(body_path):
            with open(body_path, "rb") as f:
                result.body = f.read()
        return result
