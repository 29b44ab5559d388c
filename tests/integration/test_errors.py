"""test_errors.py - bad input and upstream faults get the documented answer.

Each case checks the status and that the body is in the GCS error shape of
the API addressed (JSON for JSON routes, XML for XML routes), and where it
matters that nothing reached upstream or that larder did not hang.
"""

import os
import socket
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import curlclient  # noqa: E402
import harness  # noqa: E402

if not curlclient.available():
    harness.skip("curl is not installed")

AUTH = {"Authorization": "Bearer owner"}


def raw_exchange(port, payload, timeout=10):
    """Sends raw bytes, returns everything read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            pass
        return b"".join(chunks)


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, head.decode("latin-1"), body


class BadInputTest(harness.LarderTestCase):
    larder_config = {
        "max_request_body": "1MiB",
        "client_timeout_ms": 3000,
        "upstream": {"response_timeout_ms": 2000, "idle_timeout_ms": 2000},
    }

    def put_object(self, name, data):
        q = urllib.parse.urlencode({"uploadType": "media", "name": name})
        r = curlclient.run(self.larder.url + "/upload/storage/v1/b/%s/o?%s" % (self.bucket, q), "POST",
                           headers=AUTH, data=data)
        self.assertEqual(r.status, 200, r.body[:300])

    def media_url(self, name, tls=False):
        base = self.larder.tls_url if tls else self.larder.url
        return base + "/storage/v1/b/%s/o/%s?alt=media" % (self.bucket, harness.quote_object(name))

    def test_unknown_routes(self):
        r = curlclient.run(self.larder.url + "/storage/v2/b/x/o")
        self.assertGcsJsonError(r.status, r.body, 404)
        r = curlclient.run(self.larder.url + "/upload/elsewhere")
        self.assertGcsJsonError(r.status, r.body, 404)
        # The emulator's control API must not be reachable through larder.
        r = curlclient.run(self.larder.url + "/_emu/counters")
        self.assertGcsXmlError(r.status, r.body, 404)
        r = curlclient.run(self.larder.url + "/Not_A_Bucket/x")
        self.assertGcsXmlError(r.status, r.body, 404)
        self.assertEqual(self.emulator.counters()["total"], 0)

    def test_unknown_methods(self):
        for method in ("BREW", "TRACE", "PROPFIND"):
            r = curlclient.run(self.larder.url + "/%s/obj" % self.bucket, method)
            self.assertGcsXmlError(r.status, r.body, 405, "MethodNotAllowed")
            r = curlclient.run(self.larder.url + "/storage/v1/b/%s/o" % self.bucket, method)
            self.assertGcsJsonError(r.status, r.body, 405)
            self.assertIn("GET", r.header("allow"))
        self.assertEqual(self.emulator.counters()["total"], 0)

    def test_malformed_requests(self):
        # A request h2o cannot parse has no path, so no API to answer in: h2o
        # answers a plain 400 and closes, as GCS's front end answers such
        # requests with a non-API page.
        for payload in (b"GET /bkt/o HTTP/1.1\r\nHost x\r\nBroken\r\n\r\n",
                        b"NOT-HTTP\r\n\r\n"):
            status, head, body = split_response(raw_exchange(self.larder.port, payload))
            self.assertEqual(status, 400, head)
            self.assertIn("Connection: close", head)
        # A parsed request with a broken body is answered in its API's shape.
        status, head, body = split_response(raw_exchange(
            self.larder.port, b"PUT /bkt-x/o HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
        self.assertEqual(status, 400, head)
        self.assertTrue(body.startswith(b"<?xml"), body[:200])
        # larder is still serving afterwards
        self.assertEqual(self.larder.request("GET", "/_larder/healthz")[0], 200)

    def test_overlong_url_and_oversized_headers(self):
        long_path = "/%s/%s" % (self.bucket, "x" * 20000)
        status, head, body = split_response(
            raw_exchange(self.larder.port, ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % long_path).encode()))
        self.assertEqual(status, 414, head)
        self.assertTrue(body.startswith(b"<?xml"), body[:200])
        headers = "".join("X-Filler-%d: %s\r\n" % (i, "v" * 1000) for i in range(80))
        status, head, body = split_response(raw_exchange(
            self.larder.port, ("GET /%s/o HTTP/1.1\r\nHost: x\r\n%s\r\n" % (self.bucket, headers)).encode()))
        self.assertEqual(status, 431, head)
        self.assertTrue(body.startswith(b"<?xml"), body[:200])
        self.assertEqual(self.emulator.counters()["total"], 0)

    def test_body_over_the_limit(self):
        big = os.urandom(2 * 1024 * 1024)
        r = curlclient.run(self.larder.url + "/upload/storage/v1/b/%s/o?uploadType=media&name=big" % self.bucket,
                           "POST", headers=AUTH, data=big)
        self.assertGcsJsonError(r.status, r.body, 413)
        r = curlclient.run(self.larder.url + "/%s/big" % self.bucket, "PUT", headers=AUTH, data=big)
        self.assertGcsXmlError(r.status, r.body, 413, "EntityTooLarge")
        r = curlclient.run(self.larder.url + "/%s/big" % self.bucket, "PUT",
                           headers=dict(AUTH, **{"Transfer-Encoding": "chunked"}), data=big)
        self.assertGcsXmlError(r.status, r.body, 413, "EntityTooLarge")
        self.assertEqual(self.emulator.counters()["total"], 0)
        # Just under the limit still goes through.
        self.put_object("fits", os.urandom(1024 * 1024 - 4096))

    def test_upstream_5xx_passes_through(self):
        self.put_object("five", b"x" * 100)
        self.emulator.faults(fail_nth={"n": 1, "status": 503, "count": 1})
        r = curlclient.run(self.media_url("five"), headers=AUTH)
        self.assertGcsJsonError(r.status, r.body, 503)
        r = curlclient.run(self.media_url("five"), headers=AUTH)
        self.assertEqual((r.status, r.body), (200, b"x" * 100))

    def test_upstream_slow_is_504(self):
        self.put_object("slow", b"y" * 100)
        self.emulator.faults(latency_ms=5000)
        started = time.monotonic()
        r = curlclient.run(self.media_url("slow"), headers=AUTH)
        self.assertGcsJsonError(r.status, r.body, 504)
        self.assertLess(time.monotonic() - started, 4.5)
        r = curlclient.run(self.larder.url + "/%s/slow" % self.bucket, headers=AUTH)
        self.assertGcsXmlError(r.status, r.body, 504, "GatewayTimeout")

    def test_upstream_reset_mid_body_is_not_a_clean_200(self):
        data_size = 4 * 1024 * 1024
        self.emulator.control("POST", "objects", {"bucket": self.bucket, "name": "reset", "size": data_size,
                                                  "seed": 3})
        # Every request resets, the ranged retry of the rest too: the response cannot be completed.
        self.emulator.faults(reset_after_bytes=512 * 1024)
        for url, extra in ((self.media_url("reset"), []),
                           (self.media_url("reset", tls=True), ["--http2", "--cacert", self.ca.ca_cert])):
            r = curlclient.run(url, headers=AUTH, extra=extra)
            if r.status == 200:
                # Bytes went out before the reset: the only honest signal left
                # is a cut connection (HTTP/1) or RST_STREAM (HTTP/2).
                self.assertNotEqual(r.exit_code, 0, "curl saw a complete response %s" % extra)
                self.assertLess(len(r.body), data_size)
            else:
                # The reset came before larder sent anything: a clean 502.
                self.assertGcsJsonError(r.status, r.body, 502)

    def test_upstream_stall_mid_body_is_cut(self):
        self.emulator.control("POST", "objects", {"bucket": self.bucket, "name": "stall", "size": 2 * 1024 * 1024,
                                                  "seed": 4})
        self.emulator.faults(stall_ms=8000)
        started = time.monotonic()
        r = curlclient.run(self.media_url("stall"), headers=AUTH)
        self.assertNotEqual(r.exit_code, 0)
        self.assertLess(time.monotonic() - started, 7.5)

    def test_client_that_stops_reading_is_closed(self):
        size = 64 * 1024 * 1024
        self.emulator.control("POST", "objects", {"bucket": self.bucket, "name": "huge", "size": size, "seed": 1})
        request = ("GET /%s/huge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer owner\r\n\r\n" % self.bucket).encode()
        with socket.create_connection(("127.0.0.1", self.larder.port)) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(request)
            time.sleep(6)  # client_timeout_ms is 3 s: the watchdog must fire meanwhile
            s.settimeout(5)
            received = 0
            closed = False
            try:
                while True:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        closed = True
                        break
                    received += len(chunk)
            except ConnectionResetError:
                closed = True
            except socket.timeout:
                pass
        self.assertTrue(closed, "larder kept a stalled client open")
        self.assertLess(received, size)
        self.assertIn("client stopped reading", self.larder.read_log())

    def test_client_disconnect_cancels_upstream(self):
        """A pass-through download (a parameter the cache does not reproduce makes it one) stops upstream
        when its client leaves. (A cacheable fill goes on: test_cache_trust covers that.)"""
        size = 64 * 1024 * 1024
        self.emulator.control("POST", "objects", {"bucket": self.bucket, "name": "cancel", "size": size, "seed": 2})
        self.emulator.faults(bandwidth_bps=4 * 1024 * 1024)
        with socket.create_connection(("127.0.0.1", self.larder.port)) as s:
            s.sendall(("GET /%s/cancel?not-cached=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer owner\r\n\r\n"
                       % self.bucket).encode())
            s.recv(65536)
        time.sleep(1.5)
        sent_then = self.emulator.counters()["media_bytes_sent"]
        time.sleep(1.5)
        sent_later = self.emulator.counters()["media_bytes_sent"]
        # Once larder drops the upstream transfer the emulator stops sending.
        self.assertEqual(sent_then, sent_later)
        self.assertLess(sent_later, size // 4)


class UpstreamDownTest(harness.LarderTestCase):
    """larder pointed at a port where nothing listens."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        dead_dir = os.path.join(cls.workdir, "dead")
        os.makedirs(dead_dir)
        # Only the storage upstream is down: tokens are still validated by the emulator's tokeninfo
        # (with tokeninfo down too, reads fail closed with 503: test_auth.py).
        cls.dead = harness.Larder(dead_dir, "http://127.0.0.1:%d" % harness.free_port(), cls.ca,
                                  config={"auth": {"tokeninfo_url": cls.emulator.base_url + "/tokeninfo"}})

    @classmethod
    def tearDownClass(cls):
        try:
            cls.dead.stop()
        finally:
            super().tearDownClass()

    def test_upstream_down_is_502(self):
        r = curlclient.run(self.dead.url + "/storage/v1/b/x/o", headers=AUTH)
        self.assertGcsJsonError(r.status, r.body, 502)
        r = curlclient.run(self.dead.url + "/xbucket/obj", headers=AUTH)
        self.assertGcsXmlError(r.status, r.body, 502, "BadGateway")
        r = curlclient.run(self.dead.url + "/upload/storage/v1/b/x/o?uploadType=media&name=a", "POST",
                           headers=AUTH, data=b"data")
        self.assertGcsJsonError(r.status, r.body, 502)


if __name__ == "__main__":
    harness.main()
