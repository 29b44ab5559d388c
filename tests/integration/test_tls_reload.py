#!/usr/bin/env python3
"""test_tls_reload.py - SIGHUP swaps the TLS certificate without dropping connections (issue 9, part 4).

A download over TLS runs slowly (the emulator caps its bandwidth) while the
certificate files are replaced and larder gets SIGHUP: new connections are
then served the new certificate, and the download, on a connection made
with the old one, completes intact. A certificate that does not load leaves
the one in use. The old binary ignores SIGHUP for TLS, so new connections
keep getting the first certificate and test_sighup_swaps_the_certificate
fails.
"""

import hashlib
import http.client
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only)

MiB = 1024 * 1024


def issue_certificate(ca, directory, name):
    """A second server certificate from the test CA, for the same names; returns (cert, key) paths."""
    cert, key, csr = (os.path.join(directory, name + ext) for ext in (".pem", ".key", ".csr"))
    run = lambda *args: subprocess.run(args, check=True, capture_output=True)
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca.ca_cert, "-CAkey", os.path.join(ca.dir, "ca.key"),
        "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", os.path.join(ca.dir, "server.ext"))
    return cert, key


class TlsReloadTest(tc.CacheTestCase):

    def presented(self):
        """The certificate (DER) a new TLS connection to larder is served."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.larder.tls_port, timeout=10,
                                           context=self.larder.ssl_context())
        conn.connect()
        der = conn.sock.getpeercert(binary_form=True)
        conn.close()
        return der

    def install(self, cert, key):
        shutil.copyfile(cert, self.ca.cert)
        shutil.copyfile(key, self.ca.key)
        self.larder.proc.send_signal(signal.SIGHUP)

    def test_sighup_swaps_the_certificate(self):
        data = os.urandom(8 * MiB)
        self.put_object("slow.bin", data=data)
        first = self.presented()
        self.emulator.faults(bandwidth_bps=2 * MiB, match="/slow.bin")
        started, result = threading.Event(), {}

        def download():
            conn = http.client.HTTPSConnection("127.0.0.1", self.larder.tls_port, timeout=60,
                                               context=self.larder.ssl_context())
            conn.request("GET", self.media("slow.bin"), headers=tc.OWNER)
            resp = conn.getresponse()
            result["cert"] = conn.sock.getpeercert(binary_form=True)
            body = resp.read(256 * 1024)
            started.set()
            body += resp.read()
            result["status"], result["sha"] = resp.status, hashlib.sha256(body).hexdigest()
            conn.close()

        reader = threading.Thread(target=download)
        reader.start()
        self.assertTrue(started.wait(30), "the download did not start")
        cert, key = issue_certificate(self.ca, self.workdir, "second")
        self.install(cert, key)
        harness.wait_until(lambda: self.presented() != first, timeout=15)
        self.assertEqual(self.presented(), ssl.PEM_cert_to_DER_cert(open(cert).read()))
        reader.join(60)
        self.assertEqual((result.get("status"), result.get("sha")), (200, hashlib.sha256(data).hexdigest()),
                         "the download over the old certificate was cut")
        self.assertEqual(result["cert"], first)
        self.emulator.clear_faults()

    def test_a_certificate_that_does_not_load_leaves_the_old_one(self):
        before = self.presented()
        broken = os.path.join(self.workdir, "broken.pem")
        with open(broken, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        saved_cert, saved_key = self.ca.cert + ".saved", self.ca.key + ".saved"
        shutil.copyfile(self.ca.cert, saved_cert)
        shutil.copyfile(self.ca.key, saved_key)
        self.install(broken, saved_key)
        harness.wait_until(lambda: "TLS setup for" in self.larder.read_log(), timeout=15)
        self.assertEqual(self.presented(), before)
        r = self.get(self.media("nothing.bin"), tc.OWNER, tls=True)
        self.assertEqual(r.status, 404, "larder stopped serving TLS")
        shutil.copyfile(saved_cert, self.ca.cert)


if __name__ == "__main__":
    harness.main()
