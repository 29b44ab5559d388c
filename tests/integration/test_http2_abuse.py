"""test_http2_abuse.py - HTTP/2 Rapid Reset (CVE-2023-44487) and cleartext h2c.

h2o 2.2.5 has no Rapid Reset fix: a client can open a stream with HEADERS and
cancel it with RST_STREAM at once, as fast as it can write, and every pair
runs larder's handler. larder now (a) speaks cleartext h2c only where a
listener asks for it (`h2c`, default false; `http2` means h2 via ALPN on TLS
listeners), (b) still speaks h2 over TLS, and (c) closes an HTTP/2 connection
that opens more than http2.max_requests_per_second (default 2000) requests, or
resets more than http2.max_resets_per_second (default 200) streams before
their responses completed, in one second.

The HTTP/2 client is hand-written (frontdoor_util.H2Client): preface,
SETTINGS, HEADERS in literal HPACK without Huffman, RST_STREAM, GOAWAY.
"""

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import frontdoor_util as fu  # noqa: E402
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only: its test classes are not collected here)

OWNER = tc.OWNER
AUTH = [("authorization", "Bearer owner")]
FLOOD_PAIRS = 20000


class Http1Prober(threading.Thread):
    """An HTTP/1.1 client on larder's plain listener, one request after the other on a keep-alive
    connection, until stopped; every answer must be a 200 with the expected body."""

    def __init__(self, port, path, expect_body):
        super().__init__(daemon=True)
        self.port, self.path, self.expect_body = port, path, expect_body
        self.stop = threading.Event()
        self.results = []   # (status, ok body?) per request
        self.errors = []

    def run(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            while not self.stop.is_set():
                try:
                    conn.request("GET", self.path, headers=dict(OWNER))
                    resp = conn.getresponse()
                    body = resp.read()
                    self.results.append((resp.status, body == self.expect_body))
                except (OSError, http.client.HTTPException) as e:
                    self.errors.append(repr(e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        finally:
            conn.close()


class Http2AbuseTest(tc.CacheTestCase):
    larder_config = {"cache": {"enabled": True, "default_policy": "immutable"}}

    def setUp(self):
        super().setUp()
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.close()

    def h2(self, tls=True, **kwargs):
        client = fu.H2Client(self.larder.tls_port if tls else self.larder.port,
                             fu.h2_tls_context(self.larder) if tls else None, **kwargs)
        self.clients.append(client)
        return client

    def fill(self, name, data):
        self.put_object(name, data)
        first = self.get(self.xml(name), OWNER)
        self.assertEqual((first.status, first.body == data), (200, True), first)
        self.settle()
        again = self.get(self.xml(name), OWNER)
        self.assertEqual((again.status, again.x_cache), (200, "HIT"), again)

    def test_h2_over_tls_works_and_h2c_is_off_on_the_plain_listener(self):
        """Over TLS, h2 (ALPN) serves an object (200 HEADERS, the right DATA), a well-behaved client
        (100 requests, 10 resets) keeps its connection; on the plain listener, the HTTP/2 preface
        gets no SETTINGS frame (HTTP/1 error or close) and Upgrade: h2c gets no 101.

        Fails on the old code: the plain listener answered the preface with an HTTP/2 SETTINGS frame
        (h2c was on by default)."""
        data = os.urandom(300 * 1024)
        self.put_object("tls.bin", data)
        client = self.h2()
        self.assertEqual(client.t.alpn, "h2")
        client.start()
        r = client.get(self.xml("tls.bin"), AUTH, timeout=30)
        self.assertEqual((r.status, r.reset_code, bytes(r.body) == data), (200, None, True), r)
        for _ in range(100):
            r = client.get("/_larder/healthz")
            self.assertEqual((r.status, bytes(r.body)), (200, b'{"status":"ok"}'), r)
        for _ in range(10):
            sid = client.request("GET", self.xml("tls.bin"), AUTH)
            client.reset(sid)
        r = client.get("/_larder/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(client.goaway)

        # Cleartext: the connection preface is not HTTP/2 here.
        with socket.create_connection(("127.0.0.1", self.larder.port), timeout=10) as s:
            s.sendall(fu.PREFACE + fu.settings_frame() + fu.frame(fu.HEADERS, fu.FLAG_END_STREAM | fu.FLAG_END_HEADERS,
                                                                  1, fu.encode_headers(fu.request_headers(
                                                                      "GET", "/_larder/healthz", "x", "http"))))
            answer, how = fu.read_until_close(s, 5)
        is_settings = len(answer) >= 9 and answer[3] == fu.SETTINGS and not answer.startswith(b"HTTP/")
        self.assertFalse(is_settings, "the plain listener answered the HTTP/2 preface with a SETTINGS frame: %r"
                         % answer[:60])
        self.assertTrue(answer == b"" or answer.startswith(b"HTTP/1."), "not an HTTP/1 answer: %r" % answer[:200])
        # Nor does it upgrade an HTTP/1.1 request to h2c.
        with socket.create_connection(("127.0.0.1", self.larder.port), timeout=10) as s:
            s.sendall(b"GET /_larder/healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                      b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
            status, head, rest = fu.read_http1_head(s, 10)
        self.assertEqual(status, 200, "Upgrade: h2c was answered %r" % head)

    def test_rapid_reset_flood_is_cut_off(self):
        """20,000 HEADERS+RST_STREAM(CANCEL) pairs over TLS h2 for a cached 100 KiB object (whose
        response cannot complete: the flood client never opens its flow-control windows): larder
        closes the connection (EOF, reset, or GOAWAY after which a new request gets no answer) before
        it has answered them all, while an HTTP/1 client on the plain listener gets a 200 for every
        request; afterwards a new h2 connection is served.

        Fails on the old code: the connection stayed open: all 20,000 streams were answered (20,000
        response HEADERS), no GOAWAY, no close."""
        data = os.urandom(100 * 1024)
        self.fill("flood.bin", data)
        small = os.urandom(4096)
        self.fill("small.bin", small)
        prober = Http1Prober(self.larder.port, self.xml("small.bin"), small)
        prober.start()
        try:
            # Wait for the prober's first answer so it runs throughout the flood.
            fu.wait_until(lambda: prober.results or prober.errors, 10)
            client = self.h2(decode_headers=False)
            client.start(settings=(), open_window=False)
            result = client.flood(self.xml("flood.bin"), AUTH, pairs=FLOOD_PAIRS)
            closed = result["closed"]
            if closed is None and client.goaway is None:
                # The pairs are written (the kernel buffers hold them); larder reads them at its pace.
                try:
                    client.wait_for(lambda: client.goaway is not None, 15)
                except fu.ConnectionClosed as e:
                    closed = e.how
            answered = client.header_blocks
            after_goaway = None
            if closed is None and client.goaway is not None:
                # A GOAWAY without a close: a further request must get no answer.
                sid = client.request("GET", "/_larder/healthz", flush=False)
                try:
                    client.wait_for(lambda: client.last_answered >= sid, 3)
                    after_goaway = client.last_answered >= sid
                except fu.ConnectionClosed as e:
                    closed = e.how
                    after_goaway = client.last_answered >= sid
        finally:
            prober.stop.set()
            prober.join(30)
        self.assertTrue(closed is not None or client.goaway is not None,
                        "larder kept the connection open through %d HEADERS+RST_STREAM pairs and answered %d "
                        "of them" % (result["sent"], answered))
        self.assertLess(answered, FLOOD_PAIRS, "larder answered every stream of the flood before closing")
        self.assertFalse(after_goaway, "a request after the GOAWAY was answered")
        self.assertEqual(prober.errors, [], "the HTTP/1 client failed during the flood")
        self.assertTrue(prober.results, "the HTTP/1 client completed no request during the flood")
        self.assertEqual([r for r in prober.results if r != (200, True)], [],
                         "the HTTP/1 client got other answers than 200 with the object")
        # larder is fine: a new h2 connection is served.
        client = self.h2()
        client.start()
        r = client.get("/_larder/healthz")
        self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    harness.main()
