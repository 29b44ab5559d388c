"""frontdoor_util.py - helpers for the front-door tests (and bench/rapid_reset.py).

Standard library only:

  * a hand-written HTTP/2 client (connection preface, SETTINGS, HEADERS with
    an HPACK encoding of literal fields without indexing and no Huffman, an
    HPACK decoder for the server's answers, RST_STREAM, GOAWAY parsing), over
    TLS (ALPN "h2") or cleartext (h2c with prior knowledge). TLS runs over
    memory BIOs on a non-blocking socket, so one thread can write a flood and
    read the answers without ever blocking on either;
  * raw HTTP/1 helpers for requests that must stay half-sent or half-read;
  * /proc readers: a process's CPU seconds, its open descriptors, its limits.
"""

import errno
import os
import re
import select
import socket
import ssl
import struct
import sys
import time

# --------------------------------------------------------------------------
# HPACK (RFC 7541)
# --------------------------------------------------------------------------

STATIC_TABLE = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
    (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
    (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
    ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""),
    ("cache-control", ""), ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""),
    ("content-length", ""), ("content-location", ""), ("content-range", ""), ("content-type", ""),
    ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""),
    ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""),
    ("retry-after", ""), ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""),
    ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
]

# Code lengths of the HPACK Huffman code (RFC 7541 Appendix B), symbols 0..256 (256 = EOS).
# The code is canonical, so the codes themselves follow from the lengths.
_HUFFMAN_LENGTHS = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28,
    28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15,
    6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20,
    20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23,
    24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22,
    22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27,
    24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26,
    26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
]


def _huffman_decode_table():
    table, code, prev = {}, 0, 0
    for sym in sorted(range(257), key=lambda s: (_HUFFMAN_LENGTHS[s], s)):
        code <<= _HUFFMAN_LENGTHS[sym] - prev
        prev = _HUFFMAN_LENGTHS[sym]
        table[(prev, code)] = sym
        code += 1
    return table


_HUFFMAN = _huffman_decode_table()


class HpackError(Exception):
    pass


def huffman_decode(data):
    out, code, length = bytearray(), 0, 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            sym = _HUFFMAN.get((length, code))
            if sym is not None:
                if sym == 256:
                    raise HpackError("EOS in a Huffman string")
                out.append(sym)
                code, length = 0, 0
            elif length > 30:
                raise HpackError("bad Huffman code")
    if length > 7 or code != (1 << length) - 1:
        raise HpackError("bad Huffman padding")
    return bytes(out)


def encode_int(value, prefix_bits, first_byte_flags=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_headers(headers):
    """HPACK block of literal header fields without indexing, new names, no Huffman."""
    out = bytearray()
    for name, value in headers:
        name = name.encode("latin-1") if isinstance(name, str) else name
        value = value.encode("latin-1") if isinstance(value, str) else value
        out += b"\x00" + encode_int(len(name), 7) + name + encode_int(len(value), 7) + value
    return bytes(out)


class HpackDecoder:
    def __init__(self):
        self.dynamic = []  # newest first
        self.max_size = 4096

    def _size(self):
        return sum(len(n) + len(v) + 32 for n, v in self.dynamic)

    def _evict(self):
        while self.dynamic and self._size() > self.max_size:
            self.dynamic.pop()

    def _entry(self, index):
        if index == 0:
            raise HpackError("index 0")
        if index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        index -= len(STATIC_TABLE) + 1
        if index >= len(self.dynamic):
            raise HpackError("index beyond the dynamic table")
        return self.dynamic[index]

    @staticmethod
    def _int(data, pos, prefix_bits):
        limit = (1 << prefix_bits) - 1
        value = data[pos] & limit
        pos += 1
        if value < limit:
            return value, pos
        shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, pos

    def _string(self, data, pos):
        huffman = bool(data[pos] & 0x80)
        length, pos = self._int(data, pos, 7)
        raw = bytes(data[pos:pos + length])
        if len(raw) != length:
            raise HpackError("truncated string")
        pos += length
        return (huffman_decode(raw) if huffman else raw).decode("latin-1"), pos

    def decode(self, data):
        headers, pos = [], 0
        while pos < len(data):
            byte = data[pos]
            if byte & 0x80:
                index, pos = self._int(data, pos, 7)
                headers.append(self._entry(index))
            elif byte & 0x40 or not byte & 0x20:
                indexing = bool(byte & 0x40)
                index, pos = self._int(data, pos, 6 if indexing else 4)
                if index:
                    name = self._entry(index)[0]
                else:
                    name, pos = self._string(data, pos)
                value, pos = self._string(data, pos)
                headers.append((name, value))
                if indexing:
                    self.dynamic.insert(0, (name, value))
                    self._evict()
            else:  # dynamic table size update
                self.max_size, pos = self._int(data, pos, 5)
                self._evict()
        return headers


# --------------------------------------------------------------------------
# HTTP/2 frames
# --------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FLAG_END_STREAM, FLAG_ACK, FLAG_END_HEADERS, FLAG_PADDED, FLAG_PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
CANCEL = 0x8
SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE = 0x3, 0x4
MAX_WINDOW = (1 << 31) - 1


def frame(ftype, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id) + payload


def settings_frame(settings=(), ack=False):
    return frame(SETTINGS, FLAG_ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in settings))


def rst_stream_frame(stream_id, code=CANCEL):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def request_headers(method, path, authority, scheme, extra=()):
    return [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)] + list(extra)


class ConnectionClosed(Exception):
    """The peer closed (how == "eof") or reset (how == "reset") the connection, or it failed otherwise."""

    def __init__(self, how, detail=""):
        super().__init__("%s%s" % (how, ": " + detail if detail else ""))
        self.how = how


def _how(error):
    if error is None:
        return "eof"
    if isinstance(error, (ConnectionResetError, BrokenPipeError)) or is_errno(error, *ECONN):
        return "reset"
    return "error"


class Transport:
    """A non-blocking socket, optionally with TLS over memory BIOs; one thread drives both directions."""

    def __init__(self, port, tls_context=None, alpn=("h2",), host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.out = bytearray()
        self.eof = False
        self.error = None
        self.tls = None
        if tls_context is not None:
            if alpn:
                tls_context.set_alpn_protocols(list(alpn))
            self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = tls_context.wrap_bio(self.incoming, self.outgoing, server_hostname=host)
            self._handshake(timeout)

    def _handshake(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            self._flush_tls()
            self.flush(deadline - time.monotonic())
            if not self._fill(deadline - time.monotonic()):
                raise ConnectionClosed(_how(self.error), "during the TLS handshake")
        self._flush_tls()
        self.flush(deadline - time.monotonic())

    @property
    def alpn(self):
        return self.tls.selected_alpn_protocol() if self.tls is not None else None

    def _flush_tls(self):
        if self.tls is not None:
            pending = self.outgoing.read()
            if pending:
                self.out += pending

    def write(self, data):
        """Queue bytes for sending (sent by pump/flush)."""
        if self.tls is not None:
            self.tls.write(data)
            self._flush_tls()
        else:
            self.out += data

    def _send_some(self):
        try:
            n = self.sock.send(self.out[:1 << 18])
            del self.out[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            self.error = e
            raise ConnectionClosed(_how(e), str(e))

    def _fill(self, timeout):
        """Reads what the socket has (waiting up to timeout); False on EOF or error."""
        if self.eof:
            return False
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return True
        try:
            data = self.sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as e:
            self.error = e
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        if self.tls is not None:
            self.incoming.write(data)
        else:
            self._plain_in = getattr(self, "_plain_in", b"") + data
        return True

    def flush(self, timeout=10):
        deadline = time.monotonic() + timeout
        while self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("could not send within %.1f s" % timeout)
            _, ready, _ = select.select([], [self.sock], [], left)
            if ready:
                self._send_some()

    def pump(self, timeout):
        """Sends what can be sent and reads what arrives, waiting up to timeout; returns the
        decrypted bytes read (b"" when nothing came). Raises ConnectionClosed at EOF/reset."""
        wlist = [self.sock] if self.out else []
        rlist, wready, _ = select.select([self.sock], wlist, [], max(0.0, timeout))
        if wready:
            self._send_some()
        got = b""
        if rlist:
            alive = self._fill(0)
            got = self._drain_plain()
            if not alive and not got:
                raise ConnectionClosed(_how(self.error), str(self.error or ""))
        else:
            got = self._drain_plain()
        return got

    def _drain_plain(self):
        if self.tls is None:
            data, self._plain_in = getattr(self, "_plain_in", b""), b""
            return data
        chunks = []
        while True:
            try:
                chunk = self.tls.read(1 << 18)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.eof = True
                break
            except ssl.SSLError as e:
                self.error = e
                self.eof = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        self._flush_tls()
        return b"".join(chunks)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class H2Response:
    def __init__(self):
        self.headers = []
        self.body = bytearray()
        self.ended = False
        self.reset_code = None

    @property
    def status(self):
        for name, value in self.headers:
            if name == ":status":
                return int(value)
        return None

    def header(self, name):
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None

    def __repr__(self):
        return "<h2 %s len=%d ended=%s rst=%s %r>" % (self.status, len(self.body), self.ended, self.reset_code,
                                                      bytes(self.body[:100]))


class H2Client:
    """A minimal HTTP/2 client: enough to send requests and resets and read answers."""

    def __init__(self, port, tls_context=None, authority=None, timeout=10, decode_headers=True):
        self.port = port
        self.decode_headers = decode_headers  # False: count header blocks only (floods)
        self.header_blocks = 0                # HEADERS frames (with END_HEADERS) received
        self.last_answered = 0                # highest stream id a header block came for
        self.rst_received = 0
        self.closed_how = None
        self.t = Transport(port, tls_context, timeout=timeout)
        self.scheme = "https" if tls_context is not None else "http"
        self.authority = authority or "127.0.0.1:%d" % port
        self.timeout = timeout
        self.inbuf = bytearray()
        self.decoder = HpackDecoder()
        self.next_stream_id = 1
        self.streams = {}
        self.goaway = None          # (last_stream_id, error_code) once a GOAWAY came
        self.closed = False
        self.server_settings_seen = False
        self.frames_received = 0
        self._header_block = None   # (stream_id, bytes, end_stream) while CONTINUATION frames follow

    def start(self, settings=((SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW),), open_window=True):
        """Connection preface, our SETTINGS, and a connection window wide open."""
        self.t.write(PREFACE + settings_frame(settings))
        if open_window:
            self.t.write(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535)))
        self.t.flush(self.timeout)

    def send(self, data):
        self.t.write(data)

    def request(self, method, path, headers=(), end_stream=True, flush=True, body=None):
        sid = self.next_stream_id
        self.next_stream_id += 2
        self.streams[sid] = H2Response()
        block = encode_headers(request_headers(method, path, self.authority, self.scheme, headers))
        flags = FLAG_END_HEADERS | (FLAG_END_STREAM if end_stream and body is None else 0)
        self.t.write(frame(HEADERS, flags, sid, block))
        if body is not None:
            self.t.write(frame(DATA, FLAG_END_STREAM, sid, body))
        if flush:
            self.t.flush(self.timeout)
        return sid

    def reset(self, sid, code=CANCEL):
        self.t.write(rst_stream_frame(sid, code))

    # -- reading -------------------------------------------------------------

    def _handle(self, ftype, flags, sid, payload):
        self.frames_received += 1
        if ftype == SETTINGS:
            if not flags & FLAG_ACK:
                self.server_settings_seen = True
                self.t.write(settings_frame(ack=True))
        elif ftype == PING:
            if not flags & FLAG_ACK:
                self.t.write(frame(PING, FLAG_ACK, 0, payload))
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (last & 0x7FFFFFFF, code)
        elif ftype in (HEADERS, PUSH_PROMISE, CONTINUATION):
            if ftype == CONTINUATION:
                if self._header_block is None:
                    raise HpackError("unexpected CONTINUATION")
                bsid, block, end_stream = self._header_block
                block += payload
            else:
                pos, pad = 0, 0
                if flags & FLAG_PADDED:
                    pad = payload[0]
                    pos = 1
                if ftype == HEADERS and flags & FLAG_PRIORITY:
                    pos += 5
                if ftype == PUSH_PROMISE:
                    pos += 4
                block = bytearray(payload[pos:len(payload) - pad])
                bsid, end_stream = sid, ftype == HEADERS and bool(flags & FLAG_END_STREAM)
            if flags & FLAG_END_HEADERS:
                self._header_block = None
                if ftype != PUSH_PROMISE:
                    self.header_blocks += 1
                    self.last_answered = max(self.last_answered, bsid)
                if not self.decode_headers:
                    return
                decoded = self.decoder.decode(bytes(block))  # always, to keep the HPACK table in step
                stream = self.streams.get(bsid)
                if stream is not None and ftype != PUSH_PROMISE:
                    stream.headers.extend(decoded)
                    if end_stream:
                        stream.ended = True
            else:
                self._header_block = (bsid, block, end_stream)
        elif ftype == DATA:
            stream = self.streams.get(sid)
            pos, pad = 0, 0
            if flags & FLAG_PADDED:
                pad = payload[0]
                pos = 1
            if stream is not None:
                stream.body += payload[pos:len(payload) - pad]
                if flags & FLAG_END_STREAM:
                    stream.ended = True
        elif ftype == RST_STREAM:
            self.rst_received += 1
            stream = self.streams.get(sid)
            if stream is not None:
                stream.reset_code = struct.unpack(">I", payload[:4])[0]

    def _parse(self):
        while len(self.inbuf) >= 9:
            length = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + length:
                break
            ftype, flags = self.inbuf[3], self.inbuf[4]
            sid = int.from_bytes(self.inbuf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.inbuf[9:9 + length])
            del self.inbuf[:9 + length]
            self._handle(ftype, flags, sid, payload)

    def poll(self, timeout=0.0):
        """Sends queued bytes and handles what arrives within timeout. Raises ConnectionClosed."""
        if self.closed:
            raise ConnectionClosed(self.closed_how or "closed")
        try:
            data = self.t.pump(timeout)
        except ConnectionClosed as e:
            self.closed = True
            self.closed_how = e.how
            raise
        if data:
            self.inbuf += data
            self._parse()
        return bool(data)

    def wait_for(self, predicate, timeout=None):
        """Polls until predicate() is true; returns False on timeout. Raises ConnectionClosed."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.poll(min(left, 0.2))
        return True

    def response(self, sid, timeout=None):
        stream = self.streams[sid]
        ok = self.wait_for(lambda: stream.ended or stream.reset_code is not None, timeout)
        if not ok:
            raise TimeoutError("no complete answer on stream %d: %r" % (sid, stream))
        return stream

    def get(self, path, headers=(), timeout=None):
        return self.response(self.request("GET", path, headers), timeout)

    def close(self):
        self.closed = True
        self.t.close()

    def flood(self, path, headers=(), pairs=None, duration=None, batch=100, backlog=256 * 1024):
        """HEADERS + RST_STREAM(CANCEL) pairs, as fast as the connection takes them, until `pairs`
        were sent or `duration` seconds passed, or the server closed the connection or sent GOAWAY.

        Returns a dict: sent (pairs queued to the socket), answered (response header blocks
        received), closed ("eof" | "reset" | "error" | None), goaway ((last stream id, code) or
        None), seconds (how long the flood ran)."""
        block = encode_headers(request_headers("GET", path, self.authority, self.scheme, headers))
        headers_prefix = struct.pack(">I", len(block))[1:] + bytes([HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS])
        rst_prefix = b"\x00\x00\x04" + bytes([RST_STREAM, 0])
        rst_code = struct.pack(">I", CANCEL)
        started = time.monotonic()
        sent, closed = 0, None
        while True:
            if self.goaway is not None:
                break
            if duration is not None and time.monotonic() - started >= duration:
                break
            if pairs is not None and sent >= pairs and not self.t.out:
                break
            if len(self.t.out) < backlog and (pairs is None or sent < pairs):
                n = batch if pairs is None else min(batch, pairs - sent)
                chunks = []
                for _ in range(n):
                    sid = struct.pack(">I", self.next_stream_id)
                    self.next_stream_id += 2
                    chunks.append(headers_prefix + sid + block + rst_prefix + sid + rst_code)
                self.t.write(b"".join(chunks))
                sent += n
                wait = 0
            else:
                wait = 0.02
            try:
                self.poll(wait)
            except ConnectionClosed as e:
                closed = e.how
                break
        return {"sent": sent, "answered": self.header_blocks, "closed": closed, "goaway": self.goaway,
                "seconds": time.monotonic() - started}


def h2_tls_context(larder):
    ctx = larder.ssl_context()
    ctx.set_alpn_protocols(["h2"])
    return ctx


# --------------------------------------------------------------------------
# HTTP/1 over raw sockets
# --------------------------------------------------------------------------

def read_http1_head(sock, timeout=10):
    """Reads up to the end of a response head; returns (status, head text, bytes already read of the body).
    status is 0 when the peer closed before a head arrived."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            data = b""
        if not data:
            return 0, buf.decode("latin-1"), b""
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, head.decode("latin-1"), rest


def head_value(head, name):
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def read_until_close(sock, timeout=10):
    """Everything the peer sends until it closes (b"" plus reason when it goes quiet instead)."""
    sock.settimeout(timeout)
    chunks = []
    how = "eof"
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except ConnectionResetError:
        how = "reset"
    except socket.timeout:
        how = "timeout"
    return b"".join(chunks), how


# --------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def open_fds(pid):
    return sorted(int(name) for name in os.listdir("/proc/%d/fd" % pid))


def lowest_free_fd(pid):
    used = set(open_fds(pid))
    n = 0
    while n in used:
        n += 1
    return n


def nofile_limits(pid):
    """(soft, hard) "Max open files" from /proc/PID/limits."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = re.split(r"\s{2,}", line.strip())[1:3]
                return int(soft), int(hard)
    raise RuntimeError("no Max open files line")


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def is_errno(exc, *codes):
    return isinstance(exc, OSError) and exc.errno in codes


ECONN = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)


def server_connections(pid, port):
    """How many TCP connections on local port `port` process pid holds open (not the listener)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for name in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] != "0A" and fields[9] in inodes:
                count += 1
    return count


def parse_chunked(raw):
    """(body, complete) of a chunked body: complete only when the last chunk and its CRLF came."""
    body, pos = bytearray(), 0
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return bytes(body), False
        try:
            size = int(raw[pos:eol].split(b";")[0], 16)
        except ValueError:
            return bytes(body), False
        pos = eol + 2
        if size == 0:
            return bytes(body), raw.find(b"\r\n", pos) >= 0
        if len(raw) < pos + size + 2 or raw[pos + size:pos + size + 2] != b"\r\n":
            body += raw[pos:pos + size]
            return bytes(body), False
        body += raw[pos:pos + size]
        pos += size + 2

