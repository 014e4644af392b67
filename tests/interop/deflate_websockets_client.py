#!/usr/bin/env python3
"""Interop: python3-websockets (written elsewhere) with permessage-deflate (RFC 7692) as a
client of `kite echo --deflate[=PRESET]`.

    deflate_websockets_client.py --kite PATH

python-websockets offers permessage-deflate by default ("permessage-deflate;
client_max_window_bits") and compresses with its own zlib settings. For each kite preset
(balanced, speed, memory, max-ratio) this checks the 101's Sec-WebSocket-Extensions, that
python agreed to it, that compressible messages (JSON-like text, repetitive binary, 1 MiB,
fragmented, many in a row through the same contexts) and incompressible or empty ones
round-trip, and that kite's frames really were compressed: RSV1 set and fewer bytes on the
wire than in the messages (python's decoder is wrapped to count them). kite's log must name
the extension on each connection. Then a client with compression turned off gets no
extension. kite must exit 0 on SIGTERM. Exit 77 when python3-websockets is missing.
"""

import argparse
import asyncio
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kite_server import KiteServer  # noqa: E402

try:
    import websockets
    from websockets.extensions import permessage_deflate as pmd
except ImportError:
    print("skip: python3-websockets is not installed (scripts/install-deps.sh test installs it)")
    sys.exit(77)

STEP_TIMEOUT = 20.0
RUN_BUDGET = 80.0
run_deadline = time.monotonic() + RUN_BUDGET
results = []

# What kite sent, as python's permessage-deflate decoder saw it (data frames only).
wire = {"frames": 0, "rsv1": 0, "bytes": 0}
_decode = pmd.PerMessageDeflate.decode


def counting_decode(self, frame, *, max_size=None):
    if frame.opcode.name in ("TEXT", "BINARY", "CONT"):
        wire["frames"] += 1
        wire["bytes"] += len(frame.data)
        if frame.rsv1:
            wire["rsv1"] += 1
    return _decode(self, frame, max_size=max_size)


pmd.PerMessageDeflate.decode = counting_decode


class CheckFailed(Exception):
    pass


def expect(cond, expected, got):
    if not cond:
        raise CheckFailed("expected %s, got %s" % (expected, got))


def short(v, n=40):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "...(%d)" % len(v)


async def step(name, coro):
    limit = min(STEP_TIMEOUT, run_deadline - time.monotonic())
    if limit <= 0:
        coro.close()
        print("FAIL %s: expected it to run, got no time left" % name, flush=True)
        results.append(False)
        return
    try:
        await asyncio.wait_for(coro, limit)
    except CheckFailed as e:
        print("FAIL %s: %s" % (name, e), flush=True)
        results.append(False)
        return
    except asyncio.TimeoutError:
        print("FAIL %s: expected it to finish, got no result within %.0fs" % (name, limit), flush=True)
        results.append(False)
        return
    except Exception as e:
        print("FAIL %s: expected no error, got %s: %s" % (name, type(e).__name__, e), flush=True)
        results.append(False)
        return
    print("ok %s" % name, flush=True)
    results.append(True)


def connect(url, **kw):
    return websockets.connect(url, max_size=None, ping_interval=None, close_timeout=10, **kw)


def json_like(i, rnd):
    words = ["order", "price", "update", "filled", "market", "user", "status", "active"]
    return ('{"type":"trade","seq":%d,"symbol":"%s","price":"%d.%02d","user":{"id":%d,"name":"user%d"},'
            '"text":"%s"}' % (100000 + i, rnd.choice(["BTC-USD", "ETH-USD", "SOL-USD"]),
                              rnd.randrange(100, 90000), rnd.randrange(100), rnd.randrange(5000),
                              rnd.randrange(5000), " ".join(rnd.choice(words) for _ in range(rnd.randrange(5, 60)))))


def agreed(ws):
    return [e for e in ws.extensions if isinstance(e, pmd.PerMessageDeflate)]


async def echo_all(ws, msgs):
    for m in msgs:
        await ws.send(m)
        got = await ws.recv()
        expect(type(got) is type(m) and got == m, "%s echoed" % short(m), short(got))


async def compressed_session(url, want_header):
    """One connection: the agreement, then messages of every kind; kite's frames must be
    compressed (fewer bytes, RSV1) for the compressible ones."""
    async with connect(url) as ws:
        header = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        expect(header == want_header, "Sec-WebSocket-Extensions: %r" % want_header, repr(header))
        expect(len(agreed(ws)) == 1, "python to agree to permessage-deflate", ws.extensions)
        rnd = random.Random(7)
        before = dict(wire)
        msgs = [json_like(i, rnd) for i in range(300)]
        await echo_all(ws, msgs)
        raw = sum(len(m.encode()) for m in msgs)
        sent = wire["bytes"] - before["bytes"]
        expect(sent < raw * 0.6, "JSON-like echoes compressed below 60%% of %d bytes" % raw, sent)
        expect(wire["rsv1"] - before["rsv1"] >= 250, "RSV1 on the compressed echoes",
               wire["rsv1"] - before["rsv1"])
        before = dict(wire)
        big = ("kite speaks permessage-deflate " * 40000)[: 1 << 20]
        await echo_all(ws, [big, big.encode()])
        expect(wire["bytes"] - before["bytes"] < (2 << 20) // 20, "1 MiB echoes compressed 20x",
               wire["bytes"] - before["bytes"])
        # incompressible, empty, short (under kite's 64-byte threshold)
        noise = bytes(rnd.getrandbits(8) for _ in range(100000))
        await echo_all(ws, [noise, b"", "", "short", b"\x00\x01"])
        # python sends a fragmented message compressed as one stream (RFC 7692 6.1)
        await ws.send(["frag", "mented ", "κόσ" * 100, "με"])
        got = await ws.recv()
        expect(got == "fragmented " + "κόσ" * 100 + "με", "the fragmented message", short(got))


async def plain_session(url):
    async with connect(url, compression=None) as ws:
        header = ws.response_headers.get("Sec-WebSocket-Extensions")
        expect(header is None, "no Sec-WebSocket-Extensions", repr(header))
        expect(not agreed(ws), "no extension", ws.extensions)
        await echo_all(ws, ["plain " * 50, b"\x00" * 1000])


async def main(kite):
    # (flag, the answer to python's offer "permessage-deflate; client_max_window_bits")
    cases = [
        ("--deflate", "permessage-deflate; server_max_window_bits=13; client_max_window_bits=13"),
        ("--deflate=speed", "permessage-deflate"),
        ("--deflate=memory",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("--deflate=max-ratio", "permessage-deflate"),
    ]
    ok = True
    for flag, header in cases:
        try:
            srv = KiteServer(kite, "echo", [flag])
        except RuntimeError as e:
            print("FAIL start %s: %s" % (flag, e))
            results.append(False)
            continue
        try:
            url = srv.url + "/z"
            await step("%s: negotiated, compressed echoes" % flag, compressed_session(url, header))
            await step("%s: a client without compression gets none" % flag, plain_session(url))
        finally:
            status = srv.stop()
        logged = [l for l in srv.errs if " open /z " in l]
        with_ext = [l for l in logged if "extensions permessage-deflate" in l]
        good = status == 0 and len(logged) == 2 and len(with_ext) == 1
        print("%s %s: kite logged the agreement and exited 0%s" %
              ("ok" if good else "FAIL", flag,
               "" if good else " (status %r, log: %s)" % (status, srv.stderr_tail())), flush=True)
        results.append(good)
        ok = ok and good
    return ok


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--kite", required=True)
    args = ap.parse_args()
    asyncio.run(main(args.kite))
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    sys.exit(0 if results and all(results) else 1)
