#!/usr/bin/env python3
"""kite conformance suite: checks a WebSocket server against RFC 6455 over raw sockets.

Every case opens its own TCP connection, writes bytes by hand (so it can send any
malformed frame), and checks the server's answer strictly: the right frames, the right
close code, and then the server closing TCP. See README.md beside this file.

Standard library only. Exit status 0 when every selected case passed, 1 otherwise,
2 on bad usage.
"""

import argparse
import base64
import fnmatch
import hashlib
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OP_NAMES = {OP_CONT: "continuation", OP_TEXT: "text", OP_BINARY: "binary",
            OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong"}
# RFC 6455 section 1.3: the GUID appended to the key to compute Sec-WebSocket-Accept.
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MIB = 1 << 20

# Limits the suite starts kite with (and assumes for --target unless told otherwise).
KITE_MAX_FRAME = 9 * MIB
KITE_MAX_MESSAGE = 10 * MIB

LISTEN_RE = re.compile(r"^listening on ws://(\[[0-9A-Fa-f:.]+\]|[^:/\[\]]+):(\d+)/$")


class Failure(Exception):
    """A case did not get what the RFC asks for."""


def fail(expected, got):
    raise Failure("expected %s, got %s" % (expected, got))


def preview(data, limit=40):
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + bytes(data[:limit]).hex() + ("..." if len(data) > limit else "")
    else:
        text = data
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def mask_bytes(payload, key, offset=0):
    """XORs payload with the 4-byte masking key (RFC 6455 5.3), starting at key[offset % 4]."""
    n = len(payload)
    if n == 0:
        return b""
    k = key[offset % 4:] + key[:offset % 4]
    stream = (k * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def frame_header(opcode, length, fin=True, rsv=0, mask=True, key=b""):
    """Header of one client frame (RFC 6455 5.2), minimal length encoding."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if length < 126:
        hdr = bytes([b0, mbit | length])
    elif length < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, length)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, length)
    return hdr + (key if mask else b"")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True):
    """One complete client frame, masked with a random key unless mask is False."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    key = os.urandom(4) if mask else b""
    body = mask_bytes(payload, key) if mask else bytes(payload)
    return frame_header(opcode, len(payload), fin, rsv, mask, key) + body


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def valid_close_code_to_send(code):
    # RFC 6455 7.4.1/7.4.2 and the IANA registry: codes an endpoint may put on the wire.
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) \
        or 3000 <= code <= 4999


def describe(ev):
    kind = ev[0]
    if kind == "message":
        return "%s message of %d bytes %s" % (OP_NAMES[ev[1]], len(ev[2]), preview(ev[2]))
    if kind == "close":
        if ev[1] is None:
            return "close frame with empty payload"
        return "close %d reason %s" % (ev[1], preview(ev[2]))
    if kind in ("ping", "pong"):
        return "%s %s" % (kind, preview(ev[1]))
    if kind == "eof":
        return "TCP close"
    if kind == "reset":
        return "TCP reset"
    return repr(ev)


def describe_expected_message(opcode, payload):
    return "%s message of %d bytes %s" % (OP_NAMES[opcode], len(payload), preview(payload))


class Timeout(Exception):
    pass


class Conn:
    """One client connection to the server under test, speaking raw bytes."""

    def __init__(self, suite, host, port, handshake=True, path="/"):
        self.suite = suite
        self.timeout = suite.timeout
        self.host, self.port = host, port
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.sent_close = False
        self.partial = None          # (opcode, bytearray) of a server message in progress
        try:
            self.sock = socket.create_connection((host, port), timeout=self.timeout)
        except OSError as e:
            fail("a TCP connection to %s:%d" % (host, port), "%s" % e)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if handshake:
            self.handshake(path)

    def close_socket(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- bytes in and out -------------------------------------------------------------

    def _recv_some(self, deadline):
        """Reads what is available into buf. Returns False at EOF or reset."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(MIB)
        except socket.timeout:
            raise Timeout()
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _close_frame_buffered(self):
        """True when buf holds the header of a close frame (used to stop a long send)."""
        pos, buf = 0, self.buf
        while pos + 2 <= len(buf):
            op, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            if op == OP_CLOSE:
                return True
            hl = 2 + (2 if n == 126 else 8 if n == 127 else 0)
            if pos + hl > len(buf):
                return False
            if n == 126:
                n = struct.unpack_from("!H", buf, pos + 2)[0]
            elif n == 127:
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
            pos += hl + n
        return False

    def send(self, data, stop_on_close=True):
        """Writes data while reading whatever the server sends meanwhile, so a server that
        answers early (a close frame) never deadlocks us. Stops when the server closes.
        Returns True when every byte was written."""
        view = memoryview(bytes(data))
        off = 0
        deadline = time.monotonic() + self.timeout * 3
        self.sock.setblocking(False)
        try:
            while off < len(view):
                if self.eof or (stop_on_close and self._close_frame_buffered()):
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("the server to read our data", "our send blocked for %.0fs" % (self.timeout * 3))
                r, w, _ = select.select([self.sock], [self.sock], [], left)
                if r:
                    try:
                        chunk = self.sock.recv(MIB)
                    except BlockingIOError:
                        chunk = None
                    except ConnectionResetError:
                        self.eof = self.reset = True
                        return False
                    if chunk == b"":
                        self.eof = True
                        return False
                    if chunk:
                        self.buf += chunk
                if w:
                    try:
                        off += self.sock.send(view[off:off + MIB])
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        return False
            return True
        finally:
            self.sock.settimeout(self.timeout)

    def send_slowly(self, data, pause=0.001):
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(pause)

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True):
        if opcode == OP_CLOSE:
            self.sent_close = True
        return self.send(frame(opcode, payload, fin, rsv, mask))

    # ---- HTTP ------------------------------------------------------------------------

    def request(self, raw, slowly=False):
        """Sends a raw HTTP request and returns (status, headers, body); headers is a list
        of (lower-case name, value)."""
        if slowly:
            self.send_slowly(raw)
        else:
            self.send(raw)
        return self.read_response()

    def read_response(self):
        deadline = time.monotonic() + self.timeout
        try:
            while b"\r\n\r\n" not in self.buf:
                if len(self.buf) > 65536:
                    fail("an HTTP response head", "over 64 KiB without an empty line")
                if not self._recv_some(deadline):
                    fail("an HTTP response", "TCP %s after %d bytes %s" % (
                        "reset" if self.reset else "close", len(self.buf), preview(self.buf)))
        except Timeout:
            fail("an HTTP response", "nothing complete within %.0fs (%s)" % (self.timeout, preview(self.buf)))
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        lines = head.split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3})(?: .*)?$", lines[0])
        if not m:
            fail("an HTTP/1.1 status line", preview(lines[0], 80))
        status = int(m.group(1))
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                fail("a well-formed header line", preview(line, 80))
            headers.append((name.lower(), value.strip()))
        body = b""
        if status != 101:
            body = self._read_body(headers, deadline)
        return status, headers, body

    def _read_body(self, headers, deadline):
        length = header(headers, "content-length")
        try:
            if length is not None:
                n = int(length)
                while len(self.buf) < n and self._recv_some(deadline):
                    pass
                body = bytes(self.buf[:n])
                del self.buf[:n]
                return body
            if "chunked" in (header(headers, "transfer-encoding") or "").lower():
                return self._read_chunked(deadline)
            while self._recv_some(deadline):   # delimited by close (RFC 9112 6.3)
                pass
        except Timeout:
            fail("an HTTP response body delimited by Content-Length, chunks or close",
                 "none within %.0fs" % self.timeout)
        body = bytes(self.buf)
        self.buf.clear()
        return body

    def _read_chunked(self, deadline):
        body = bytearray()
        while True:
            while b"\r\n" not in self.buf:
                if not self._recv_some(deadline):
                    return bytes(body)
            line, _, _ = bytes(self.buf).partition(b"\r\n")
            del self.buf[:len(line) + 2]
            size = int(line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                if not self._recv_some(deadline):
                    return bytes(body)
            body += self.buf[:size]
            del self.buf[:size + 2]
            if size == 0:
                return bytes(body)

    def handshake(self, path="/", extra=(), key=None):
        key = key or base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host_header(self.host, self.port),
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: %s" % key, "Sec-WebSocket-Version: 13"]
        lines += list(extra)
        status, headers, _ = self.request(("\r\n".join(lines) + "\r\n\r\n").encode())
        check_upgrade_response(status, headers, key)
        return headers

    # ---- frames from the server -----------------------------------------------------

    def read_frame(self, deadline):
        """Returns (fin, rsv, opcode, payload) or None at EOF. Checks the rules a server
        must follow when sending (RFC 6455 5.1, 5.2, 5.4, 5.5)."""
        while True:
            got = self._parse_frame()
            if got is not None:
                return got
            if not self._recv_some(deadline):
                if self.buf:
                    fail("a complete frame or nothing before TCP close",
                         "%d stray bytes %s" % (len(self.buf), preview(self.buf)))
                return None

    def _parse_frame(self):
        buf = self.buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        fin, rsv, op = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F
        n, pos = b1 & 0x7F, 2
        if b1 & 0x80:
            fail("unmasked frames from the server (RFC 6455 5.1)", "a masked frame")
        if n == 126:
            if len(buf) < 4:
                return None
            n, pos = struct.unpack_from("!H", buf, 2)[0], 4
            if n < 126:
                fail("minimal length encoding (RFC 6455 5.2)", "16-bit length %d" % n)
        elif n == 127:
            if len(buf) < 10:
                return None
            n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
            if n >> 63:
                fail("64-bit length with MSB 0 (RFC 6455 5.2)", "length 0x%x" % n)
            if n < 65536:
                fail("minimal length encoding (RFC 6455 5.2)", "64-bit length %d" % n)
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        if rsv:
            fail("RSV bits 0 from the server (no extension negotiated, RFC 6455 5.2)", "RSV=%d" % rsv)
        if op not in OP_NAMES:
            fail("a defined opcode from the server (RFC 6455 5.2)", "opcode 0x%x" % op)
        if op >= 8 and (not fin or n > 125):
            fail("a control frame with FIN and <=125 bytes (RFC 6455 5.5)",
                 "%s fin=%d len=%d" % (OP_NAMES[op], fin, n))
        return fin, rsv, op, payload

    def event(self, timeout=None, auto_pong=True):
        """The next thing the server does: ('message', op, payload), ('ping', p),
        ('pong', p), ('close', code|None, reason), ('eof',), ('reset',).
        Reassembles fragmented messages; answers the server's own pings."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            f = self.read_frame(deadline)
            if f is None:
                return ("reset",) if self.reset else ("eof",)
            fin, _, op, payload = f
            if op == OP_PING:
                if auto_pong and not self.sent_close:
                    self.send(frame(OP_PONG, payload))
                    continue
                return ("ping", payload)
            if op == OP_PONG:
                return ("pong", payload)
            if op == OP_CLOSE:
                return self._close_event(payload)
            if op == OP_CONT:
                if self.partial is None:
                    fail("no continuation frame without a started message (RFC 6455 5.4)",
                         "a continuation frame from the server")
                self.partial[1].extend(payload)
            else:
                if self.partial is not None:
                    fail("a continuation frame (RFC 6455 5.4)", "a new %s frame mid-message" % OP_NAMES[op])
                self.partial = (op, bytearray(payload))
            if fin:
                op, data = self.partial
                self.partial = None
                data = bytes(data)
                if op == OP_TEXT:
                    try:
                        data.decode("utf-8")
                    except UnicodeDecodeError:
                        fail("valid UTF-8 in the server's text message (RFC 6455 5.6)", preview(data))
                return ("message", op, data)

    @staticmethod
    def _close_event(payload):
        if len(payload) == 0:
            return ("close", None, b"")
        if len(payload) == 1:
            fail("a close payload of 0 or >=2 bytes (RFC 6455 5.5.1)", "1 byte")
        code = struct.unpack("!H", payload[:2])[0]
        if not valid_close_code_to_send(code):
            fail("a close code an endpoint may send (RFC 6455 7.4)", "close %d" % code)
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            fail("a UTF-8 close reason (RFC 6455 5.5.1)", preview(payload[2:]))
        return ("close", code, payload[2:])

    def expect_event(self, expected_desc, timeout=None):
        try:
            return self.event(timeout)
        except Timeout:
            fail(expected_desc, "nothing within %.0fs" % (timeout or self.timeout))

    # ---- expectations ----------------------------------------------------------------

    def expect_message(self, opcode, payload):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        want = describe_expected_message(opcode, payload)
        ev = self.expect_event(want)
        if ev[0] == "message" and ev[1] == opcode and ev[2] == payload:
            return
        if ev[0] == "message" and ev[1] == opcode and len(ev[2]) == len(payload) and len(payload) > 40:
            at = next(i for i in range(len(payload)) if ev[2][i] != payload[i])
            fail(want, "the same length but different bytes from offset %d" % at)
        fail(want, describe(ev))

    def expect_pong(self, payload):
        want = "pong %s" % preview(payload)
        ev = self.expect_event(want)
        if ev[0] != "pong" or ev[1] != payload:
            fail(want, describe(ev))

    def expect_close(self, code, reason=None, reply=True):
        """The server's close frame with this code (None: empty payload), then it closes
        TCP. We answer with a close frame as the RFC asks (5.5.1) unless we already sent one."""
        want = "close %s" % ("with empty payload" if code is None else code)
        if reason is not None:
            want += " reason %s" % preview(reason)
        ev = self.expect_event(want)
        if ev[0] != "close" or ev[1] != code or (reason is not None and ev[2] != reason.encode()):
            fail(want, describe(ev))
        if reply and not self.sent_close:
            self.sent_close = True
            self.send(frame(OP_CLOSE, close_payload(code) if code is not None else b""), stop_on_close=False)
        self.expect_tcp_close("the server to close TCP after the close handshake (RFC 6455 7.1.1)")

    def expect_tcp_close(self, want="TCP close"):
        # Closing a socket takes no time: a shorter wait keeps a server that never closes
        # from costing the full --timeout in every case.
        ev = self.expect_event(want, timeout=min(self.timeout, self.suite.close_wait))
        if ev[0] not in ("eof", "reset"):
            fail(want + " and nothing else", describe(ev))

    def finish(self):
        """Clean close (RFC 6455 7.1.2): send close 1000, get close 1000, server closes TCP."""
        self.send_frame(OP_CLOSE, close_payload(1000))
        self.expect_close(1000)
        self.close_socket()


def header(headers, name):
    for n, v in headers:
        if n == name:
            return v
    return None


def header_all(headers, name):
    return [v for n, v in headers if n == name]


def tokens(value):
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def host_header(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + ACCEPT_GUID).digest()).decode()


def check_upgrade_response(status, headers, key, offered_protocols=(), offered_ext=False):
    """RFC 6455 4.1 (the client's checks of the server's handshake) and 4.2.2."""
    if status != 101:
        fail("HTTP 101 Switching Protocols", "HTTP %d" % status)
    if (header(headers, "upgrade") or "").lower() != "websocket":
        fail("Upgrade: websocket (RFC 6455 4.2.2)", "Upgrade: %s" % header(headers, "upgrade"))
    if "upgrade" not in tokens(header(headers, "connection")):
        fail("Connection: Upgrade (RFC 6455 4.2.2)", "Connection: %s" % header(headers, "connection"))
    if header(headers, "sec-websocket-accept") != accept_for(key):
        fail("Sec-WebSocket-Accept: %s" % accept_for(key),
             "Sec-WebSocket-Accept: %s" % header(headers, "sec-websocket-accept"))
    proto = header(headers, "sec-websocket-protocol")
    if proto is not None and proto not in offered_protocols:
        fail("no Sec-WebSocket-Protocol or one we offered (RFC 6455 4.1)", "Sec-WebSocket-Protocol: %s" % proto)
    ext = header(headers, "sec-websocket-extensions")
    if ext is not None and not offered_ext:
        fail("no Sec-WebSocket-Extensions since we offered none (RFC 6455 4.1)", "Sec-WebSocket-Extensions: %s" % ext)


# ======================================================================================
# The cases. Each is (id, description, function(suite), needs) where needs says which
# server it talks to: "echo", "demo", or "kite" (starts its own kite program).
# ======================================================================================

CASES = []


def case(cid, desc, needs="echo"):
    def deco(fn):
        CASES.append((cid, desc, fn, needs))
        return fn
    return deco


def add(cid, desc, fn, needs="echo"):
    CASES.append((cid, desc, fn, needs))


def utf8_text(n):
    """Exactly n bytes of valid UTF-8 mixing 1- to 4-byte characters."""
    unit = "kite é € 😀 κόσμε ".encode("utf-8")
    out = (unit * (n // len(unit) + 1))[:n]
    # Cut back to a character boundary, then pad with ASCII to the exact length.
    while True:
        try:
            out.decode("utf-8")
            break
        except UnicodeDecodeError:
            out = out[:-1]
    return out + b"x" * (n - len(out))


def binary_data(n):
    unit = bytes(range(256))
    return (unit * (n // 256 + 1))[:n]


def echo_roundtrip(s, opcode, payload):
    c = s.echo()
    c.send_frame(opcode, payload)
    c.expect_message(opcode, payload)
    c.finish()


def protocol_error(s, data, code=1002, first=None):
    """Sends data (bytes) and expects close with code. With first=(opcode, payload), that
    valid message goes first and its echo is awaited before data is sent, so the case does
    not depend on whether the server echoes before or after parsing what follows."""
    c = s.echo()
    if first is not None:
        c.send_frame(*first)
        c.expect_message(*first)
    c.send(data)
    c.expect_close(code)


# ---- hs: the opening handshake (RFC 6455 section 4) -----------------------------------

def raw_get(s, lines, conn=None):
    c = conn or Conn(s, s.host, s.port, handshake=False)
    status, headers, body = c.request(("\r\n".join(lines) + "\r\n\r\n").encode())
    c.close_socket()
    return status, headers, body


def ws_request(s, method="GET", path="/", version="HTTP/1.1", drop=(), extra=(), key=None):
    key = key or base64.b64encode(os.urandom(16)).decode()
    fields = [("Host", host_header(s.host, s.port)), ("Upgrade", "websocket"),
              ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
              ("Sec-WebSocket-Version", "13")]
    lines = ["%s %s %s" % (method, path, version)]
    lines += ["%s: %s" % (n, v) for n, v in fields if n not in drop]
    lines += list(extra)
    return lines


def expect_status(got, allowed, what):
    status, headers, _ = got
    if status not in allowed:
        fail("HTTP %s for %s" % (" or ".join(map(str, allowed)), what), "HTTP %d" % status)
    return status, headers


@case("hs.basic", "opening handshake: 101, Upgrade, Connection, correct Sec-WebSocket-Accept (RFC 6455 4.2.2)")
def _(s):
    c = s.echo()
    c.send_frame(OP_TEXT, "after handshake")
    c.expect_message(OP_TEXT, "after handshake")
    c.finish()


@case("hs.case", "header names and values in mixed case, Connection: keep-alive, Upgrade (RFC 6455 4.2.1)")
def _(s):
    # RFC 6455 4.2.1: Upgrade and Connection are matched case-insensitively, and
    # Connection is a token list (RFC 9110 7.6.1).
    key = base64.b64encode(os.urandom(16)).decode()
    c = Conn(s, s.host, s.port, handshake=False)
    lines = ["GET /mixed HTTP/1.1", "hOsT: %s" % host_header(s.host, s.port), "UPGRADE: WebSocket",
             "connection: keep-alive, Upgrade", "SEC-WEBSOCKET-KEY: %s" % key,
             "sec-websocket-version: 13"]
    status, headers, _ = c.request(("\r\n".join(lines) + "\r\n\r\n").encode())
    check_upgrade_response(status, headers, key)
    c.send_frame(OP_TEXT, "mixed")
    c.expect_message(OP_TEXT, "mixed")
    c.finish()


@case("hs.query", "request target with path segments and a query string is accepted (RFC 6455 3, 4.2.1)")
def _(s):
    c = Conn(s, s.host, s.port, path="/a/b/c?x=1&y=%20z")
    c.send_frame(OP_BINARY, b"\x00\x01")
    c.expect_message(OP_BINARY, b"\x00\x01")
    c.finish()


@case("hs.slow", "opening handshake written one byte at a time")
def _(s):
    key = base64.b64encode(os.urandom(16)).decode()
    c = Conn(s, s.host, s.port, handshake=False)
    status, headers, _ = c.request(("\r\n".join(ws_request(s, key=key)) + "\r\n\r\n").encode(), slowly=True)
    check_upgrade_response(status, headers, key)
    c.send_frame(OP_TEXT, "slow")
    c.expect_message(OP_TEXT, "slow")
    c.finish()


@case("hs.pipelined", "first frame in the same write as the handshake is not lost")
def _(s):
    key = base64.b64encode(os.urandom(16)).decode()
    c = Conn(s, s.host, s.port, handshake=False)
    req = ("\r\n".join(ws_request(s, key=key)) + "\r\n\r\n").encode()
    status, headers, _ = c.request(req + frame(OP_TEXT, "right behind the request"))
    check_upgrade_response(status, headers, key)
    c.expect_message(OP_TEXT, "right behind the request")
    c.finish()


@case("hs.subprotocol", "unknown subprotocols offered: none selected, or one of those offered (RFC 6455 4.2.2)")
def _(s):
    key = base64.b64encode(os.urandom(16)).decode()
    c = Conn(s, s.host, s.port, handshake=False)
    req = ws_request(s, key=key, extra=["Sec-WebSocket-Protocol: kite-x-one, kite-x-two"])
    status, headers, _ = c.request(("\r\n".join(req) + "\r\n\r\n").encode())
    check_upgrade_response(status, headers, key, offered_protocols=("kite-x-one", "kite-x-two"))
    c.finish()


@case("hs.extension", "unknown extension offered is not accepted (RFC 6455 9.1)")
def _(s):
    key = base64.b64encode(os.urandom(16)).decode()
    c = Conn(s, s.host, s.port, handshake=False)
    req = ws_request(s, key=key, extra=["Sec-WebSocket-Extensions: x-kite-unknown; level=3"])
    status, headers, _ = c.request(("\r\n".join(req) + "\r\n\r\n").encode())
    ext = header(headers, "sec-websocket-extensions")
    if ext is not None and "x-kite-unknown" in ext:
        fail("the unknown extension declined", "Sec-WebSocket-Extensions: %s" % ext)
    check_upgrade_response(status, headers, key, offered_ext=True)
    c.finish()


@case("hs.no-key", "missing Sec-WebSocket-Key -> 400 (RFC 6455 4.2.1 item 5)")
def _(s):
    expect_status(raw_get(s, ws_request(s, drop=("Sec-WebSocket-Key",))), (400,), "a missing key")


@case("hs.bad-key", "Sec-WebSocket-Key that is not base64 -> 400 (RFC 6455 4.2.1 item 5)")
def _(s):
    expect_status(raw_get(s, ws_request(s, key="!!not*base64!!")), (400,), "a non-base64 key")


@case("hs.short-key", "Sec-WebSocket-Key decoding to 15 bytes -> 400 (RFC 6455 4.2.1 item 5)")
def _(s):
    key = base64.b64encode(os.urandom(15)).decode()
    expect_status(raw_get(s, ws_request(s, key=key)), (400,), "a 15-byte key")


@case("hs.two-keys", "Sec-WebSocket-Key sent twice -> 400 (RFC 6455 11.3.1)")
def _(s):
    extra = ["Sec-WebSocket-Key: %s" % base64.b64encode(os.urandom(16)).decode()]
    expect_status(raw_get(s, ws_request(s, extra=extra)), (400,), "a duplicated key")


@case("hs.version-12", "Sec-WebSocket-Version: 12 -> 426 with Sec-WebSocket-Version: 13 (RFC 6455 4.2.2, 4.4)")
def _(s):
    lines = ws_request(s, drop=("Sec-WebSocket-Version",), extra=["Sec-WebSocket-Version: 12"])
    _, headers = expect_status(raw_get(s, lines), (426,), "version 12")
    if "13" not in tokens(header(headers, "sec-websocket-version")):
        fail("Sec-WebSocket-Version: 13 in the 426", "Sec-WebSocket-Version: %s" % header(headers, "sec-websocket-version"))


@case("hs.no-version", "missing Sec-WebSocket-Version -> 400, or 426 naming version 13 (RFC 6455 4.2.1 item 6, 4.4)")
def _(s):
    status, headers = expect_status(raw_get(s, ws_request(s, drop=("Sec-WebSocket-Version",))),
                                    (400, 426), "a missing version")
    if status == 426 and "13" not in tokens(header(headers, "sec-websocket-version")):
        fail("Sec-WebSocket-Version: 13 in the 426", "Sec-WebSocket-Version: %s" % header(headers, "sec-websocket-version"))


@case("hs.post", "POST with upgrade headers -> 405 with Allow: GET (RFC 6455 4.2.1 item 1, RFC 9110 15.5.6)")
def _(s):
    _, headers = expect_status(raw_get(s, ws_request(s, method="POST", extra=["Content-Length: 0"])),
                               (405,), "POST")
    if "get" not in tokens(header(headers, "allow")):
        fail("Allow: GET in the 405 (RFC 9110 15.5.6)", "Allow: %s" % header(headers, "allow"))


def expect_426_or_400(got, what):
    status, headers = expect_status(got, (426, 400), what)
    # RFC 9110 15.5.22: a 426 must say which protocol to upgrade to.
    if status == 426 and "websocket" not in tokens(header(headers, "upgrade")):
        fail("Upgrade: websocket in the 426 (RFC 9110 15.5.22)", "Upgrade: %s" % header(headers, "upgrade"))


@case("hs.no-upgrade", "missing Upgrade header -> 426 with Upgrade: websocket, or 400 (RFC 6455 4.2.1 item 3)")
def _(s):
    expect_426_or_400(raw_get(s, ws_request(s, drop=("Upgrade",))), "a missing Upgrade")


@case("hs.wrong-upgrade", "Upgrade: h2c -> 426 with Upgrade: websocket, or 400 (RFC 6455 4.2.1 item 3)")
def _(s):
    expect_426_or_400(raw_get(s, ws_request(s, drop=("Upgrade",), extra=["Upgrade: h2c"])), "Upgrade: h2c")


@case("hs.no-connection", "missing Connection: Upgrade -> 426 with Upgrade: websocket, or 400 (RFC 6455 4.2.1 item 4)")
def _(s):
    expect_426_or_400(raw_get(s, ws_request(s, drop=("Connection",))), "a missing Connection")


@case("hs.plain-get", "plain GET without any upgrade headers on the echo server -> 426 or 400")
def _(s):
    expect_426_or_400(raw_get(s, ["GET / HTTP/1.1", "Host: %s" % host_header(s.host, s.port)]),
                      "a plain GET")


@case("hs.http10", "HTTP/1.0 upgrade request -> 400 or 505 (RFC 6455 4.2.1 item 1)")
def _(s):
    expect_status(raw_get(s, ws_request(s, version="HTTP/1.0")), (400, 505), "HTTP/1.0")


@case("hs.no-host", "missing Host header -> 400 (RFC 6455 4.2.1 item 2, RFC 9112 3.2)")
def _(s):
    expect_status(raw_get(s, ws_request(s, drop=("Host",))), (400,), "a missing Host")


@case("hs.garbage", "a request line that is not HTTP -> 400")
def _(s):
    expect_status(raw_get(s, ["HELLO THERE"]), (400,), "garbage")


@case("hs.huge-head", "a 256 KiB request head -> 431 (RFC 6585 5; kite's header size limit)")
def _(s):
    lines = ws_request(s, extra=["X-Filler-%d: %s" % (i, "f" * 1000) for i in range(256)])
    expect_status(raw_get(s, lines), (431,), "an oversized head")


# ---- frame: framing at the length-encoding boundaries (RFC 6455 5.2) --------------------

SIZES = [0, 1, 125, 126, 127, 65535, 65536, MIB]
for _n in SIZES:
    add("frame.text.%d" % _n, "text message of %d bytes echoed (RFC 6455 5.2, 5.6)" % _n,
        lambda s, n=_n: echo_roundtrip(s, OP_TEXT, utf8_text(n)))
    add("frame.binary.%d" % _n, "binary message of %d bytes echoed (RFC 6455 5.2, 5.6)" % _n,
        lambda s, n=_n: echo_roundtrip(s, OP_BINARY, binary_data(n)))


@case("frame.pipelined", "20 frames of mixed types and sizes in one write, echoed in order")
def _(s):
    c = s.echo()
    msgs = [(OP_TEXT if i % 2 else OP_BINARY, (utf8_text if i % 2 else binary_data)(i * 997 % 70000))
            for i in range(20)]
    c.send(b"".join(frame(op, p) for op, p in msgs))
    for op, p in msgs:
        c.expect_message(op, p)
    c.finish()


@case("frame.bytewise", "a 300-byte frame written one byte at a time")
def _(s):
    c = s.echo()
    data = binary_data(300)
    c.send_slowly(frame(OP_BINARY, data), pause=0.0005)
    c.expect_message(OP_BINARY, data)
    c.finish()


@case("frame.zero-key", "masking key 00000000 is valid (RFC 6455 5.3)")
def _(s):
    c = s.echo()
    c.send(frame_header(OP_TEXT, 4, key=b"\0\0\0\0") + b"zero")
    c.expect_message(OP_TEXT, "zero")
    c.finish()


@case("frame.len64-msb", "64-bit length with the most significant bit set -> 1002, or 1009 (RFC 6455 5.2, 7.4.1)")
def _(s):
    # The length is illegal (5.2) and also larger than any limit, so either code is right;
    # what matters is a prompt close rather than a wait for 2^63 bytes.
    c = s.echo()
    c.send(struct.pack("!BBQ", 0x82, 0xFF, (1 << 63) | 5) + os.urandom(4) + b"12345")
    ev = c.expect_event("close 1002 or 1009")
    if ev[0] != "close" or ev[1] not in (1002, 1009):
        fail("close 1002 or 1009", describe(ev))
    c.sent_close = True
    c.send(frame(OP_CLOSE, close_payload(ev[1])), stop_on_close=False)
    c.expect_tcp_close("the server to close TCP after the close handshake (RFC 6455 7.1.1)")


# ---- mask: client frames must be masked (RFC 6455 5.1, 5.3) ---------------------------

for _op, _p in ((OP_TEXT, b"unmasked"), (OP_BINARY, b"\x01\x02"), (OP_PING, b"p"),
                (OP_CLOSE, close_payload(1000))):
    add("mask.%s" % OP_NAMES[_op], "unmasked %s frame -> 1002 (RFC 6455 5.1)" % OP_NAMES[_op],
        lambda s, op=_op, p=_p: protocol_error(s, frame(op, p, mask=False)))


# ---- ping: ping and pong (RFC 6455 5.5.2, 5.5.3) --------------------------------------

def ping_pong(s, payload):
    c = s.echo()
    c.send_frame(OP_PING, payload)
    c.expect_pong(payload)
    c.finish()


add("ping.empty", "ping without payload -> pong without payload (RFC 6455 5.5.2)",
    lambda s: ping_pong(s, b""))
add("ping.payload", "ping 'hello' -> pong 'hello' (RFC 6455 5.5.3)", lambda s: ping_pong(s, b"hello"))
add("ping.125", "ping with 125 bytes of binary payload -> same pong (RFC 6455 5.5)",
    lambda s: ping_pong(s, binary_data(125)))
add("ping.126", "ping with 126 bytes -> 1002 (RFC 6455 5.5: control payload <= 125)",
    lambda s: protocol_error(s, frame(OP_PING, binary_data(126))))
add("ping.fragmented", "ping with FIN=0 -> 1002 (RFC 6455 5.5: control frames are not fragmented)",
    lambda s: protocol_error(s, frame(OP_PING, b"frag", fin=False) + frame(OP_CONT, b"ment")))
add("ping.pong-126", "pong with 126 bytes -> 1002 (RFC 6455 5.5)",
    lambda s: protocol_error(s, frame(OP_PONG, binary_data(126))))
add("ping.pong-fragmented", "pong with FIN=0 -> 1002 (RFC 6455 5.5)",
    lambda s: protocol_error(s, frame(OP_PONG, b"x", fin=False)))


@case("ping.unsolicited-pong", "unsolicited pong is ignored (RFC 6455 5.5.3)")
def _(s):
    c = s.echo()
    c.send(frame(OP_PONG, b"unasked") + frame(OP_PONG) + frame(OP_TEXT, "still here"))
    c.expect_message(OP_TEXT, "still here")
    c.finish()


@case("ping.many", "10 pings in one write: pongs answer them in order, the last one at least (RFC 6455 5.5.3)")
def _(s):
    c = s.echo()
    pings = [b"ping-%d" % i for i in range(10)]
    c.send(b"".join(frame(OP_PING, p) for p in pings) + frame(OP_TEXT, "after pings"))
    nxt = 0
    while True:
        ev = c.expect_event("pongs then the text message")
        if ev[0] == "pong" and ev[1] in pings[nxt:]:
            nxt = pings.index(ev[1]) + 1
            continue
        if ev[0] == "message" and nxt == len(pings):
            break
        fail("a pong for %s" % preview(pings[nxt]) if nxt < len(pings) else "the text message", describe(ev))
    if ev[1:] != (OP_TEXT, b"after pings"):
        fail("text 'after pings'", describe(ev))
    c.finish()


# ---- rsv: reserved bits without a negotiated extension (RFC 6455 5.2) ----------------

for _rsv, _op in ((4, OP_TEXT), (2, OP_TEXT), (1, OP_TEXT), (7, OP_TEXT), (4, OP_BINARY),
                  (2, OP_PING), (1, OP_CLOSE)):
    add("rsv.%d.%s" % (_rsv, OP_NAMES[_op]),
        "%s frame with RSV=%d%d%d and no extension -> 1002 (RFC 6455 5.2)"
        % (OP_NAMES[_op], _rsv >> 2, (_rsv >> 1) & 1, _rsv & 1),
        lambda s, r=_rsv, op=_op: protocol_error(
            s, frame(op, close_payload(1000) if op == OP_CLOSE else b"rsv", rsv=r)))

add("rsv.continuation", "continuation frame with RSV1 -> 1002 (RFC 6455 5.2)",
    lambda s: protocol_error(s, frame(OP_TEXT, "a", fin=False) + frame(OP_CONT, "b", rsv=4)))
add("rsv.after-message", "valid text echoed, then a frame with RSV2 -> 1002 (RFC 6455 5.2)",
    lambda s: protocol_error(s, frame(OP_TEXT, "not", rsv=2), first=(OP_TEXT, b"fine")))


# ---- op: reserved opcodes (RFC 6455 5.2) ----------------------------------------------

for _op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
    add("op.%d" % _op, "reserved opcode 0x%X -> 1002 (RFC 6455 5.2)" % _op,
        lambda s, op=_op: protocol_error(s, frame(op, b"reserved" if op < 8 else b"")))
add("op.after-message", "valid text echoed, then reserved opcode 0x5 with payload -> 1002 (RFC 6455 5.2)",
    lambda s: protocol_error(s, frame(5, b"xyz"), first=(OP_TEXT, b"fine")))


# ---- frag: fragmentation (RFC 6455 5.4) -----------------------------------------------

def split(data, n):
    """Splits data into n parts (some may be empty when data is short)."""
    step = -(-len(data) // n) if data else 0
    return [data[i * step:(i + 1) * step] for i in range(n)]


def fragmented(opcode, parts):
    out = []
    for i, p in enumerate(parts):
        out.append(frame(opcode if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1)))
    return b"".join(out)


def frag_echo(s, opcode, parts):
    c = s.echo()
    c.send(fragmented(opcode, parts))
    c.expect_message(opcode, b"".join(parts))
    c.finish()


for _n in (2, 3, 10, 100):
    add("frag.text.%d" % _n, "text message in %d fragments echoed as one (RFC 6455 5.4)" % _n,
        lambda s, n=_n: frag_echo(s, OP_TEXT, split(b"fragmented text message, " * 20, n)))
for _n in (2, 50):
    add("frag.binary.%d" % _n, "binary message in %d fragments echoed as one (RFC 6455 5.4)" % _n,
        lambda s, n=_n: frag_echo(s, OP_BINARY, split(binary_data(70000), n)))
add("frag.bytes-1000", "1000 one-byte fragments in one write (RFC 6455 5.4)",
    lambda s: frag_echo(s, OP_TEXT, [b"%d" % (i % 10) for i in range(1000)]))
add("frag.empty-all", "three empty fragments -> empty text message (RFC 6455 5.4)",
    lambda s: frag_echo(s, OP_TEXT, [b"", b"", b""]))
add("frag.empty-some", "empty first and last fragments around data (RFC 6455 5.4)",
    lambda s: frag_echo(s, OP_BINARY, [b"", b"mid", b"", b"dle", b""]))


@case("frag.ping-between", "pings between fragments are answered at once (RFC 6455 5.4, 5.5.2)")
def _(s):
    c = s.echo()
    parts = [b"one ", b"two ", b"three"]
    for i, p in enumerate(parts):
        c.send_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
        if i < len(parts) - 1:
            c.send_frame(OP_PING, b"between %d" % i)
            c.expect_pong(b"between %d" % i)
    c.expect_message(OP_TEXT, b"".join(parts))
    c.finish()


@case("frag.pong-between", "unsolicited pong between fragments is ignored (RFC 6455 5.4, 5.5.3)")
def _(s):
    c = s.echo()
    c.send(frame(OP_BINARY, b"ab", fin=False) + frame(OP_PONG, b"p") + frame(OP_CONT, b"cd"))
    c.expect_message(OP_BINARY, b"abcd")
    c.finish()


@case("frag.close-between", "close 1000 in the middle of a fragmented message -> close 1000 (RFC 6455 5.4, 5.5.1)")
def _(s):
    c = s.echo()
    c.send(frame(OP_TEXT, "unfinished", fin=False))
    c.send_frame(OP_CLOSE, close_payload(1000))
    c.expect_close(1000)


add("frag.cont-first", "continuation frame without a started message -> 1002 (RFC 6455 5.4)",
    lambda s: protocol_error(s, frame(OP_CONT, b"orphan")))
add("frag.cont-first-nofin", "continuation with FIN=0 without a started message -> 1002 (RFC 6455 5.4)",
    lambda s: protocol_error(s, frame(OP_CONT, b"orphan", fin=False) + frame(OP_CONT, b"!")))
add("frag.cont-after-final", "text echoed, then a continuation -> 1002 (RFC 6455 5.4)",
    lambda s: protocol_error(s, frame(OP_CONT, b"more"), first=(OP_TEXT, b"done")))
add("frag.text-in-text", "new text frame during a fragmented text message -> 1002 (RFC 6455 5.4)",
    lambda s: protocol_error(s, frame(OP_TEXT, "first", fin=False) + frame(OP_TEXT, "second")))
add("frag.binary-in-text", "binary frame during a fragmented text message -> 1002 (RFC 6455 5.4)",
    lambda s: protocol_error(s, frame(OP_TEXT, "first", fin=False) + frame(OP_BINARY, b"second")))
add("frag.text-in-binary", "new text frame with FIN=0 during a fragmented binary message -> 1002 (RFC 6455 5.4)",
    lambda s: protocol_error(s, frame(OP_BINARY, b"a", fin=False) + frame(OP_TEXT, "b", fin=False)))


# ---- utf8: text must be UTF-8 (RFC 6455 5.6, 8.1; RFC 3629) ----------------------------

VALID_UTF8 = [
    ("ascii", b"Hello, World"),
    ("2byte", "é ñ ß ¡".encode()),
    ("3byte", "€ 中文 ✓".encode()),
    ("4byte", "😀 𝄞 𐍈".encode()),
    ("kosme", "κόσμε".encode()),
    ("nul", b"a\x00b"),
    ("u7f-u80", b"\x7f\xc2\x80"),
    ("u7ff-u800", b"\xdf\xbf\xe0\xa0\x80"),
    ("ud7ff", b"\xed\x9f\xbf"),
    ("ue000", b"\xee\x80\x80"),
    ("ufffd", b"\xef\xbf\xbd"),
    ("nonchar-fffe-ffff", b"\xef\xbf\xbe\xef\xbf\xbf"),
    ("u10000", b"\xf0\x90\x80\x80"),
    ("u10ffff", b"\xf4\x8f\xbf\xbf"),
]
INVALID_UTF8 = [
    ("lone-cont-80", b"\x80"),
    ("lone-cont-bf", b"ab\xbfcd"),
    ("overlong-c0", b"\xc0\x80"),
    ("overlong-c1", b"\xc1\xbf"),
    ("overlong-3byte", b"\xe0\x80\xaf"),
    ("overlong-3byte-max", b"\xe0\x9f\xbf"),
    ("overlong-4byte", b"\xf0\x80\x80\xaf"),
    ("overlong-4byte-max", b"\xf0\x8f\xbf\xbf"),
    ("surrogate-d800", b"\xed\xa0\x80"),
    ("surrogate-dfff", b"\xed\xbf\xbf"),
    ("surrogate-pair", b"\xed\xa0\xbd\xed\xb8\x80"),
    ("above-10ffff", b"\xf4\x90\x80\x80"),
    ("f5", b"\xf5\x80\x80\x80"),
    ("fe", b"a\xfe"),
    ("ff", b"\xff"),
    ("bad-cont-2", b"\xc3\x28"),
    ("bad-cont-3", b"\xe2\x28\xa1"),
    ("bad-cont-4", b"\xf0\x9f\x28\x80"),
    ("truncated-3", b"abc\xe2\x82"),
    ("truncated-4", b"\xf0\x9f\x98"),
    ("in-middle", b"hello \xc3 world"),
]
# First-fragment contents that no continuation can make valid: a conforming validator
# (RFC 6455 8.1: fail "as soon as" invalid) closes before the final fragment arrives.
FAIL_FAST = [
    ("overlong-c0", b"\xc0\x80"),
    ("surrogate", b"ok \xed\xa0\x80"),
    ("lone-cont", b"ok \x80"),
    ("above-10ffff-prefix", b"ok \xf4\x90"),
    ("overlong-e0-prefix", b"ok \xe0\x80"),
    ("byte-ff", b"ok \xff"),
]

for _name, _p in VALID_UTF8:
    add("utf8.valid.%s" % _name, "valid UTF-8 %s echoed (RFC 6455 5.6)" % preview(_p),
        lambda s, p=_p: echo_roundtrip(s, OP_TEXT, p))
for _name, _p in INVALID_UTF8:
    add("utf8.invalid.%s" % _name, "text %s -> 1007 (RFC 6455 8.1)" % preview(_p),
        lambda s, p=_p: protocol_error(s, frame(OP_TEXT, p), code=1007))
    add("utf8.invalid-frag.%s" % _name, "text fragments 'ok ' + %s -> 1007 (RFC 6455 8.1)" % preview(_p),
        lambda s, p=_p: protocol_error(s, fragmented(OP_TEXT, [b"ok ", p]), code=1007))


def fail_fast(s, payload):
    # RFC 6455 8.1: the endpoint fails the connection when it sees invalid UTF-8; the
    # final fragment is only sent if the server has not closed first.
    c = s.echo()
    c.send(frame(OP_TEXT, payload, fin=False))
    ev = c.expect_event("close 1007 before the final fragment is sent")
    if ev[0] != "close" or ev[1] != 1007:
        fail("close 1007 before the final fragment is sent", describe(ev))
    c.sent_close = True
    c.send(frame(OP_CLOSE, close_payload(1007)), stop_on_close=False)
    c.expect_tcp_close("the server to close TCP after the close handshake (RFC 6455 7.1.1)")


for _name, _p in FAIL_FAST:
    add("utf8.fail-fast.%s" % _name,
        "first fragment %s -> 1007 before the final fragment (RFC 6455 8.1)" % preview(_p),
        lambda s, p=_p: fail_fast(s, p))

add("utf8.split.euro-1-2", "U+20AC split 1+2 bytes across fragments is valid (RFC 6455 5.6)",
    lambda s: frag_echo(s, OP_TEXT, [b"\xe2", b"\x82\xac"]))
add("utf8.split.euro-2-1", "U+20AC split 2+1 bytes across fragments is valid (RFC 6455 5.6)",
    lambda s: frag_echo(s, OP_TEXT, [b"\xe2\x82", b"\xac"]))
add("utf8.split.emoji-bytes", "U+1F600 in four 1-byte fragments is valid (RFC 6455 5.6)",
    lambda s: frag_echo(s, OP_TEXT, [b"\xf0", b"\x9f", b"\x98", b"\x80"]))
add("utf8.split.kosme-bytes", "'κόσμε' one byte per fragment is valid (RFC 6455 5.6)",
    lambda s: frag_echo(s, OP_TEXT, [bytes([b]) for b in "κόσμε".encode()]))
add("utf8.split.truncated-end", "fragments 'ok \\xe2\\x82' then an empty final fragment -> 1007 (RFC 6455 8.1)",
    lambda s: protocol_error(s, fragmented(OP_TEXT, [b"ok \xe2\x82", b""]), code=1007))


# ---- close: the closing handshake (RFC 6455 5.5.1, 7.1, 7.4) ---------------------------

def close_echo(s, code):
    c = s.echo()
    c.send_frame(OP_CLOSE, close_payload(code, "bye"))
    c.expect_close(code)


def close_invalid(s, code):
    c = s.echo()
    c.send_frame(OP_CLOSE, close_payload(code))
    c.expect_close(1002)


for _code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
              3000, 3999, 4000, 4999):
    add("close.code.%d" % _code, "close %d is echoed, then TCP closed (RFC 6455 5.5.1, 7.4)" % _code,
        lambda s, code=_code: close_echo(s, code))
for _code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
    add("close.invalid.%d" % _code, "close %d -> 1002 (RFC 6455 7.4.1, 7.4.2)" % _code,
        lambda s, code=_code: close_invalid(s, code))


@case("close.empty", "close with no payload -> close with no payload, then TCP closed (RFC 6455 5.5.1)")
def _(s):
    c = s.echo()
    c.send_frame(OP_CLOSE, b"")
    c.expect_close(None)


add("close.one-byte", "close with a 1-byte payload -> 1002 (RFC 6455 5.5.1)",
    lambda s: protocol_error(s, frame(OP_CLOSE, b"\x03")))
add("close.reason-123", "close 1000 with a 123-byte reason -> close 1000 (RFC 6455 5.5)",
    lambda s: close_with(s, close_payload(1000, "r" * 123), 1000))
add("close.reason-124", "close 1000 with a 124-byte reason (126-byte payload) -> 1002 (RFC 6455 5.5)",
    lambda s: protocol_error(s, frame(OP_CLOSE, close_payload(1000, "r" * 124))))
add("close.reason-utf8", "close 1000 with a multi-byte UTF-8 reason -> close 1000 (RFC 6455 5.5.1)",
    lambda s: close_with(s, close_payload(1000, "κόσμε 😀"), 1000))
add("close.reason-bad-utf8", "close 1000 with an invalid UTF-8 reason -> 1007 (RFC 6455 5.5.1, 8.1)",
    lambda s: close_with(s, close_payload(1000, b"bad \xc0\x80 reason"), 1007))
add("close.fragmented", "close with FIN=0 -> 1002 (RFC 6455 5.5)",
    lambda s: protocol_error(s, frame(OP_CLOSE, close_payload(1000), fin=False)))


def close_with(s, payload, code):
    c = s.echo()
    c.send_frame(OP_CLOSE, payload)
    c.expect_close(code)


@case("close.tcp", "after the close handshake the server closes TCP without waiting for us (RFC 6455 7.1.1)")
def _(s):
    c = s.echo()
    c.send_frame(OP_CLOSE, close_payload(1000))
    ev = c.expect_event("close 1000")
    if ev[:2] != ("close", 1000):
        fail("close 1000", describe(ev))
    c.expect_tcp_close("the server to close TCP (RFC 6455 7.1.1)")


@case("close.data-after", "a text frame after our close is ignored (RFC 6455 5.5.1)")
def _(s):
    c = s.echo()
    c.sent_close = True
    c.send(frame(OP_CLOSE, close_payload(1000)) + frame(OP_TEXT, "too late"), stop_on_close=False)
    c.expect_close(1000)


@case("close.ping-after", "a ping after our close gets no pong (RFC 6455 5.5.1)")
def _(s):
    c = s.echo()
    c.sent_close = True
    c.send(frame(OP_CLOSE, close_payload(1000)) + frame(OP_PING, b"late"), stop_on_close=False)
    c.expect_close(1000)


@case("close.after-messages", "messages then close in one write: intact echoes (if any) strictly before close 1000 (RFC 6455 5.5.1)")
def _(s):
    # RFC 6455 5.5.1: no data frame may follow a close frame. Whether the server echoes
    # messages that arrived together with the close is up to it; what it sends must be
    # whole and in order, and then the close reply.
    c = s.echo()
    c.sent_close = True
    msgs = [(OP_TEXT, b"one"), (OP_BINARY, binary_data(70000))]
    c.send(b"".join(frame(op, p) for op, p in msgs) + frame(OP_CLOSE, close_payload(1000)),
           stop_on_close=False)
    for i in range(len(msgs) + 1):
        ev = c.expect_event("echoes then close 1000")
        if ev[:2] == ("close", 1000):
            break
        if i == len(msgs) or ev != ("message",) + msgs[i]:
            fail(describe_expected_message(*msgs[i]) + " or close 1000" if i < len(msgs) else "close 1000",
                 describe(ev))
    c.expect_tcp_close("the server to close TCP after the close handshake (RFC 6455 7.1.1)")


# ---- limit: large messages and size limits (RFC 6455 7.4.1 code 1009, 10.4) -----------

def big_echo(s, opcode, data, parts=1):
    c = s.echo()
    if parts == 1:
        c.send(frame(opcode, data))
    else:
        c.send(fragmented(opcode, split(data, parts)))
    c.expect_message(opcode, data)
    c.finish()


add("limit.text-8mib", "8 MiB text message in one frame echoed intact",
    lambda s: big_echo(s, OP_TEXT, utf8_text(8 * MIB)))
add("limit.binary-8mib", "8 MiB binary message in one frame echoed intact",
    lambda s: big_echo(s, OP_BINARY, binary_data(8 * MIB)))
add("limit.binary-8mib-frag", "8 MiB binary message in 128 fragments echoed intact",
    lambda s: big_echo(s, OP_BINARY, binary_data(8 * MIB), parts=128))


def need_limits(s):
    if s.max_message is None or s.max_frame is None:
        raise Skip("needs --max-message and --max-frame")


@case("limit.frame-exact", "one frame of exactly --max-frame bytes echoed")
def _(s):
    need_limits(s)
    big_echo(s, OP_BINARY, binary_data(s.max_frame))


@case("limit.message-exact", "a message of exactly --max-message bytes in 1 MiB fragments echoed")
def _(s):
    need_limits(s)
    big_echo(s, OP_BINARY, binary_data(s.max_message), parts=-(-s.max_message // MIB))


@case("limit.frame-over-early", "header of a frame over --max-frame -> 1009 before the payload is all sent (RFC 6455 10.4)")
def _(s):
    need_limits(s)
    c = s.echo()
    key = os.urandom(4)
    n = s.max_frame + 1
    c.send(frame_header(OP_BINARY, n, key=key) + mask_bytes(binary_data(65536), key))
    c.expect_close(1009)


@case("limit.frame-over", "a whole frame of --max-frame + 1 bytes -> 1009 (RFC 6455 7.4.1)")
def _(s):
    need_limits(s)
    c = s.echo()
    c.send(frame(OP_BINARY, binary_data(s.max_frame + 1)))
    c.expect_close(1009)


@case("limit.message-over", "fragments past --max-message -> 1009 before the final fragment (RFC 6455 7.4.1, 10.4)")
def _(s):
    need_limits(s)
    c = s.echo()
    chunk = binary_data(min(MIB, s.max_frame))
    sent = 0
    c.send(frame(OP_BINARY, chunk, fin=False))
    sent += len(chunk)
    while sent <= s.max_message and not c.eof and not c._close_frame_buffered():
        c.send(frame(OP_CONT, chunk, fin=False))
        sent += len(chunk)
    c.expect_close(1009)


# ---- demo: the kite demo program's pages and /echo conversation -----------------------

@case("demo.page", "GET / -> 200 text/html page", needs="demo")
def _(s):
    status, headers, body = raw_get(s, ["GET / HTTP/1.1", "Host: %s" % host_header(s.demo_host, s.demo_port)],
                                    conn=Conn(s, s.demo_host, s.demo_port, handshake=False))
    if status != 200:
        fail("HTTP 200", "HTTP %d" % status)
    if not (header(headers, "content-type") or "").lower().startswith("text/html"):
        fail("Content-Type: text/html", "Content-Type: %s" % header(headers, "content-type"))
    if b"<html" not in body.lower():
        fail("an HTML document", preview(body))


@case("demo.not-found", "GET of an unknown path -> 404 (RFC 9110 15.5.5)", needs="demo")
def _(s):
    status, _, _ = raw_get(s, ["GET /no/such/page HTTP/1.1", "Host: %s" % host_header(s.demo_host, s.demo_port)],
                           conn=Conn(s, s.demo_host, s.demo_port, handshake=False))
    if status != 404:
        fail("HTTP 404", "HTTP %d" % status)


def demo_talk(s, names, bye):
    c = Conn(s, s.demo_host, s.demo_port, path="/echo")
    c.expect_message(OP_TEXT, "Please enter your name")
    for name in names:
        c.send_frame(OP_TEXT, name)
        c.expect_message(OP_TEXT, "Hi, %s!" % name)
    c.send_frame(OP_TEXT, bye)
    c.expect_close(1000, "Client said BYE")


add("demo.conversation", "/echo: greeting, 'Alice' -> 'Hi, Alice!', 'bye' -> close 1000 'Client said BYE'",
    lambda s: demo_talk(s, ["Alice"], "bye"), needs="demo")
add("demo.bye-case", "/echo: 'BYE' and 'bYe' in any case close with 1000 'Client said BYE'",
    lambda s: (demo_talk(s, [], "BYE"), demo_talk(s, ["Bob"], "bYe")), needs="demo")
add("demo.unicode", "/echo: a non-ASCII name comes back intact",
    lambda s: demo_talk(s, ["Zoë 😀", "名前"], "Bye"), needs="demo")


@case("demo.client-close", "/echo: the client closes with 1000 after the greeting -> close 1000", needs="demo")
def _(s):
    c = Conn(s, s.demo_host, s.demo_port, path="/echo")
    c.expect_message(OP_TEXT, "Please enter your name")
    c.finish()


# ---- life: the kite program's start and stop (kite mode only) --------------------------

def sig_stop(s, sig):
    srv = s.start_kite("echo", ["--host", "127.0.0.1"])
    try:
        c = Conn(s, srv.host, srv.port)
        c.send_frame(OP_TEXT, "before stop")
        c.expect_message(OP_TEXT, "before stop")
        srv.proc.send_signal(sig)
        c.expect_close(1001)
        code = srv.wait(s.timeout * 2)
        if code != 0:
            fail("exit status 0 after %s" % signal.Signals(sig).name, srv.status_text(code))
    finally:
        srv.kill()


add("life.sigterm", "SIGTERM: open sessions get close 1001, then exit status 0",
    lambda s: sig_stop(s, signal.SIGTERM), needs="kite")
add("life.sigint", "SIGINT: open sessions get close 1001, then exit status 0",
    lambda s: sig_stop(s, signal.SIGINT), needs="kite")


def with_kite(s, args, body):
    """Runs body(srv) against its own `kite echo` with args, then SIGTERM -> exit 0."""
    srv = s.start_kite("echo", ["--host", "127.0.0.1"] + args)
    try:
        body(srv)
        if srv.proc.poll() is None:
            srv.proc.send_signal(signal.SIGTERM)
        code = srv.wait(s.timeout * 2)
        if code != 0:
            fail("exit status 0 after SIGTERM", srv.status_text(code))
    finally:
        srv.kill()


def expect_server_ping(c, within):
    try:
        ev = c.event(timeout=within, auto_pong=False)
    except Timeout:
        fail("a ping from the server within %.1fs (--ping-period)" % within, "nothing")
    if ev[0] != "ping":
        fail("a ping from the server (--ping-period)", describe(ev))
    return ev[1]


@case("life.ping-period", "--ping-period 200: the server pings; answered pings keep the session open (RFC 6455 5.5.2)",
      needs="kite")
def _(s):
    def body(srv):
        c = Conn(s, srv.host, srv.port)
        t0 = time.monotonic()
        for _ in range(3):
            payload = expect_server_ping(c, 5.0)
            c.send(frame(OP_PONG, payload))      # RFC 6455 5.5.3: the pong echoes the ping's data
        if time.monotonic() - t0 < 0.3:   # three pings span at least two periods
            fail("pings about 200 ms apart", "3 pings in %.0f ms" % ((time.monotonic() - t0) * 1000))
        c.send_frame(OP_TEXT, "still open")
        c.expect_message(OP_TEXT, "still open")
        c.finish()
    with_kite(s, ["--ping-period", "200", "--timeout", "3000"], body)


@case("life.ping-timeout", "--ping-period 200 --timeout 500: unanswered ping -> a close frame, then TCP closed",
      needs="kite")
def _(s):
    def body(srv):
        c = Conn(s, srv.host, srv.port)
        expect_server_ping(c, 5.0)
        t0 = time.monotonic()
        while True:  # no pong from us; more pings may come before the timeout fires
            try:
                ev = c.event(timeout=5.0, auto_pong=False)
            except Timeout:
                fail("a close frame about 500 ms after the unanswered ping", "nothing within 5s")
            if ev[0] != "ping":
                break
        if ev[0] != "close" or ev[1] is None:
            fail("a close frame with a status code after the pong timeout", describe(ev))
        c.sent_close = True
        c.send(frame(OP_CLOSE, close_payload(ev[1])), stop_on_close=False)
        c.expect_tcp_close("the server to close TCP after the close handshake (RFC 6455 7.1.1)")
        if time.monotonic() - t0 < 0.3:
            fail("the close after about --timeout 500 ms", "after %.0f ms" % ((time.monotonic() - t0) * 1000))
    with_kite(s, ["--ping-period", "200", "--timeout", "500"], body)


@case("life.close-timeout", "--timeout 500: after its close 1002 the server closes TCP even if we never answer (RFC 6455 7.1.1)",
      needs="kite")
def _(s):
    def body(srv):
        c = Conn(s, srv.host, srv.port)
        c.send(frame(OP_TEXT, b"x", rsv=4))
        ev = c.expect_event("close 1002")
        if ev[:2] != ("close", 1002):
            fail("close 1002", describe(ev))
        c.sent_close = True           # but we never send it: the server must not wait forever
        try:
            ev = c.event(timeout=5.0)
        except Timeout:
            fail("TCP close within 5s although we never answered the close", "the connection still open")
        if ev[0] not in ("eof", "reset"):
            fail("TCP close", describe(ev))
    with_kite(s, ["--timeout", "500"], body)


@case("life.sigterm-silent-peer", "--timeout 500: SIGTERM with a peer that never answers the 1001 -> exit 0 anyway",
      needs="kite")
def _(s):
    def body(srv):
        c = Conn(s, srv.host, srv.port)
        c.send_frame(OP_TEXT, "hi")
        c.expect_message(OP_TEXT, "hi")
        srv.proc.send_signal(signal.SIGTERM)
        ev = c.expect_event("close 1001")
        if ev[:2] != ("close", 1001):
            fail("close 1001", describe(ev))
        code = srv.wait(5.0)
        if code != 0:
            fail("exit status 0 within 5s although the peer never answered", srv.status_text(code))
        c.close_socket()
    with_kite(s, ["--timeout", "500"], body)


@case("life.verbose", "-v: verbose logging does not disturb the echo", needs="kite")
def _(s):
    def body(srv):
        c = Conn(s, srv.host, srv.port)
        c.send_frame(OP_TEXT, "loud")
        c.expect_message(OP_TEXT, "loud")
        c.send_frame(OP_PING, b"p")
        c.expect_pong(b"p")
        c.finish()
        protocol_error_on(s, srv, frame(OP_CONT, b"orphan"))
    with_kite(s, ["-v"], body)


def protocol_error_on(s, srv, data):
    c = Conn(s, srv.host, srv.port)
    c.send(data)
    c.expect_close(1002)


@case("life.ipv6", "--host ::1 prints ws://[::1]:PORT/ and echoes over IPv6", needs="kite")
def _(s):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        raise Skip("no IPv6 loopback here")
    srv = s.start_kite("echo", ["--host", "::1"])
    try:
        if srv.host != "::1" or not srv.first_line.startswith("listening on ws://[::1]:"):
            fail("listening on ws://[::1]:PORT/", preview(srv.first_line, 80))
        c = Conn(s, "::1", srv.port)
        c.send_frame(OP_TEXT, "over v6")
        c.expect_message(OP_TEXT, "over v6")
        c.finish()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.wait(s.timeout * 2)
        if code != 0:
            fail("exit status 0 after SIGTERM", srv.status_text(code))
    finally:
        srv.kill()


# ======================================================================================
# Running
# ======================================================================================

class Skip(Exception):
    pass


class KiteServer:
    """A kite program started on port 0; its output is drained by threads so it never
    blocks on a full pipe."""

    def __init__(self, kite, mode, args, timeout):
        self.cmd = [kite, mode, "--port", "0"] + list(args)
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.first = threading.Event()
        self.first_line = None
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.out, True), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.err, False), daemon=True).start()
        if not self.first.wait(timeout) or self.first_line is None:
            self.kill()
            raise Failure("expected a first stdout line 'listening on ws://HOST:PORT/' within %.0fs, got %s; "
                          "stderr: %s" % (timeout, preview(self.first_line or "nothing"), self.stderr_tail()))
        m = LISTEN_RE.match(self.first_line)
        if not m:
            self.kill()
            raise Failure("expected 'listening on ws://HOST:PORT/', got %s" % preview(self.first_line, 80))
        self.host = m.group(1).strip("[]")
        self.port = int(m.group(2))

    def _drain(self, pipe, sink, is_stdout):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if is_stdout and self.first_line is None:
                self.first_line = line
                self.first.set()
            sink.append(line)
        if is_stdout:
            self.first.set()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @staticmethod
    def status_text(code):
        if code is None:
            return "still running"
        if code < 0:
            return "killed by %s" % signal.Signals(-code).name
        return "exit status %d" % code

    def stderr_tail(self, n=30):
        return "\n".join(self.err[-n:]) or "(empty)"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Suite:
    def __init__(self, args):
        self.timeout = args.timeout
        self.close_wait = args.close_wait
        self.kite = args.kite
        self.max_frame = args.max_frame
        self.max_message = args.max_message
        self.host = self.port = self.demo_host = self.demo_port = None
        if args.target:
            self.host, self.port = parse_hostport(args.target)
        if args.demo_target:
            self.demo_host, self.demo_port = parse_hostport(args.demo_target)
        if self.kite:
            self.max_frame = self.max_frame or KITE_MAX_FRAME
            self.max_message = self.max_message or KITE_MAX_MESSAGE
        self.servers = []

    def echo(self, path="/"):
        return Conn(self, self.host, self.port, path=path)

    def start_kite(self, mode, args):
        srv = KiteServer(self.kite, mode, args, self.timeout * 3)
        return srv

    def available(self, needs):
        if needs == "echo":
            return self.host is not None
        if needs == "demo":
            return self.demo_host is not None
        return self.kite is not None


def parse_hostport(text):
    m = re.match(r"^(?:ws://)?(\[[^\]]+\]|[^:/]+):(\d+)/?$", text)
    if not m:
        raise SystemExit("bad host:port %r" % text)
    return m.group(1).strip("[]"), int(m.group(2))


def run_case(s, cid, desc, fn):
    t0 = time.monotonic()
    try:
        fn(s)
    except Skip as e:
        print("skip %s %s: %s" % (cid, desc, e), flush=True)
        return "skip"
    except Failure as e:
        print("FAIL %s %s: %s" % (cid, desc, e), flush=True)
        return "fail"
    except Timeout:
        print("FAIL %s %s: expected an answer, got nothing within %.0fs" % (cid, desc, s.timeout), flush=True)
        return "fail"
    except Exception as e:  # a socket error or a bug in the case: fail it, go on with the rest
        print("FAIL %s %s: expected the case to run, got %s: %s" % (cid, desc, type(e).__name__, e), flush=True)
        return "fail"
    ms = (time.monotonic() - t0) * 1000
    print("ok %s %s (%.0f ms)" % (cid, desc, ms), flush=True)
    return "pass"


def stop_server(s, name, srv, results):
    """Stops a suite-wide kite with SIGTERM and checks it exits 0 (a sanitizer report or a
    crash during the run shows here)."""
    cid = "server.exit.%s" % name
    desc = "kite %s exits with status 0 on SIGTERM" % name
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGTERM)
    code = srv.wait(s.timeout * 3)
    srv.kill()
    if code == 0:
        print("ok %s %s" % (cid, desc), flush=True)
        results.append("pass")
    else:
        print("FAIL %s %s: expected exit status 0, got %s; stderr:\n%s"
              % (cid, desc, srv.status_text(code), srv.stderr_tail()), flush=True)
        results.append("fail")


def main():
    ap = argparse.ArgumentParser(
        description="RFC 6455 conformance suite for WebSocket servers (kite's own).",
        epilog="Patterns select cases by id (fnmatch globs, or a prefix): e.g. 'utf8.*' 'close.code.1000' frag")
    ap.add_argument("patterns", nargs="*", help="case ids, id prefixes or globs to run (default: all)")
    ap.add_argument("--kite", help="path of the kite program: start 'kite echo' / 'kite demo' on port 0")
    ap.add_argument("--target", help="HOST:PORT of a running echo server to test instead")
    ap.add_argument("--demo-target", help="HOST:PORT of a running 'kite demo' for the demo.* cases")
    ap.add_argument("--max-frame", type=int, help="the target's frame size limit in bytes (limit.* cases)")
    ap.add_argument("--max-message", type=int, help="the target's message size limit in bytes (limit.* cases)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each expected event")
    ap.add_argument("--close-wait", type=float, default=5.0,
                    help="seconds to wait for the server to close TCP after a close handshake")
    ap.add_argument("--budget", type=float,
                    help="seconds for the whole run: cases not started by then fail as not run")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--list-md", action="store_true", help="list the cases as a Markdown table (README.md)")
    args = ap.parse_args()

    selected = [c for c in CASES if not args.patterns or any(
        fnmatch.fnmatchcase(c[0], p) or c[0] == p or c[0].startswith(p.rstrip(".") + ".")
        for p in args.patterns)]
    if args.list_md:
        print("| id | server | checks |\n|---|---|---|")
        for cid, desc, _, needs in selected:
            print("| `%s` | %s | %s |" % (cid, needs, desc.replace("|", "\\|")))
        return 0
    if args.list:
        for cid, desc, _, needs in selected:
            print("%-32s %-5s %s" % (cid, needs, desc))
        return 0
    if not args.kite and not args.target and not args.demo_target:
        ap.error("give --kite PATH, or --target HOST:PORT (and/or --demo-target HOST:PORT)")
    if not selected:
        ap.error("no case matches %s" % " ".join(args.patterns))

    s = Suite(args)
    results = []
    started = {}
    dead = set()
    try:
        if s.kite and not args.target and any(n == "echo" for _, _, _, n in selected):
            started["echo"] = s.start_kite("echo", [
                "--host", "127.0.0.1", "--max-frame", str(s.max_frame),
                "--max-message", str(s.max_message), "-q"])
            s.host, s.port = started["echo"].host, started["echo"].port
        if s.kite and not args.demo_target and any(n == "demo" for _, _, _, n in selected):
            started["demo"] = s.start_kite("demo", ["--host", "127.0.0.1"])
            s.demo_host, s.demo_port = started["demo"].host, started["demo"].port
    except Failure as e:
        print("FAIL setup: %s" % e, flush=True)
        for srv in started.values():
            srv.kill()
        print("0 passed, 1 failed")
        return 1

    t_end = time.monotonic() + args.budget if args.budget else None
    for cid, desc, fn, needs in selected:
        if t_end is not None and time.monotonic() > t_end:
            print("FAIL %s %s: expected it to run, got no time left (--budget %.0fs)" % (cid, desc, args.budget),
                  flush=True)
            results.append("fail")
            continue
        if not s.available(needs):
            print("skip %s %s: needs %s" % (cid, desc, {"kite": "--kite", "echo": "--target",
                                                           "demo": "--demo-target"}[needs]), flush=True)
            results.append("skip")
            continue
        results.append(run_case(s, cid, desc, fn))
        for name, srv in started.items():
            if srv.proc.poll() is not None and name not in dead:
                dead.add(name)
                print("# kite %s died (%s); stderr:\n%s" % (name, srv.status_text(srv.proc.returncode),
                                                             srv.stderr_tail()), flush=True)
    for name, srv in started.items():
        stop_server(s, name, srv, results)

    passed, failed, skipped = results.count("pass"), results.count("fail"), results.count("skip")
    summary = "%d passed, %d failed" % (passed, failed)
    if skipped:
        summary += ", %d skipped" % skipped
    print(summary, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
