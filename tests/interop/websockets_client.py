#!/usr/bin/env python3
"""Interop: the python3-websockets library (written elsewhere) as a client of kite.

    websockets_client.py --kite PATH echo   # kite echo: text, binary, 1 MiB, fragments, ping, close
    websockets_client.py --kite PATH demo   # kite demo: greeting, 'Hi, Alice!', bye -> 1000

Each starts its own kite on port 0 and stops it with SIGTERM at the end, which must make
it exit with status 0. Prints `ok`/`FAIL` per check and `N passed, M failed`. Exit 77
(skipped) when python3-websockets is not installed.
"""

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kite_server import KiteServer  # noqa: E402

try:
    import websockets
    from websockets.exceptions import ConnectionClosedOK
except ImportError:
    print("skip: python3-websockets is not installed (scripts/install-deps.sh test installs it)")
    sys.exit(77)

STEP_TIMEOUT = 20.0
RUN_BUDGET = 75.0          # the whole run, so a hung server cannot stretch it past ctest's limit
run_deadline = time.monotonic() + RUN_BUDGET
results = []


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
        print("FAIL %s: expected it to run, got no time left (%.0fs budget)" % (name, RUN_BUDGET), flush=True)
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
    except Exception as e:  # a library error is a failed check, with its text
        print("FAIL %s: expected no error, got %s: %s" % (name, type(e).__name__, e), flush=True)
        results.append(False)
        return
    print("ok %s" % name, flush=True)
    results.append(True)


def connect(url):
    # No client pings of its own and no size limit: the checks decide what is sent.
    return websockets.connect(url, max_size=None, ping_interval=None, close_timeout=10)


async def roundtrip(url, msg):
    async with connect(url) as ws:
        await ws.send(msg)
        got = await ws.recv()
        expect(type(got) is type(msg) and got == msg, "%s echoed" % short(msg), short(got))


async def fragmented(url):
    # An iterable makes websockets send one message as several frames (RFC 6455 5.4).
    async with connect(url) as ws:
        await ws.send(["frag", "mented ", "κόσ", "με"])
        got = await ws.recv()
        expect(got == "fragmented κόσμε", "'fragmented κόσμε'", short(got))
        await ws.send([b"\x00\x01", b"", b"\x02\xff"])
        got = await ws.recv()
        expect(got == b"\x00\x01\x02\xff", "b'\\x00\\x01\\x02\\xff'", short(got))


async def ping(url):
    async with connect(url) as ws:
        waiter = await ws.ping(b"kite-ping")
        await asyncio.wait_for(waiter, 10)
        await ws.send("after ping")
        got = await ws.recv()
        expect(got == "after ping", "'after ping'", short(got))


async def many(url):
    async with connect(url) as ws:
        for i in range(500):
            await ws.send("message %d" % i)
        for i in range(500):
            got = await ws.recv()
            expect(got == "message %d" % i, "'message %d'" % i, short(got))


async def concurrent(url):
    async def one(i):
        await roundtrip(url, "client %d" % i)
    await asyncio.gather(*(one(i) for i in range(16)))


async def close_with(url, code, reason):
    ws = await connect(url)
    await ws.send("before close")
    expect(await ws.recv() == "before close", "the echo", "something else")
    await ws.close(code, reason)
    await ws.wait_closed()
    # close_code is the code of the close frame the client received (RFC 6455 7.1.5).
    expect(ws.close_code == code, "close code %d echoed" % code,
           "%s reason %r" % (ws.close_code, ws.close_reason))


async def going_away(srv, url):
    ws = await connect(url)
    await ws.send("still here")
    expect(await ws.recv() == "still here", "the echo", "something else")
    srv.terminate()
    await ws.wait_closed()
    expect(ws.close_code == 1001, "close 1001 (going away) on SIGTERM",
           "%s reason %r" % (ws.close_code, ws.close_reason))


async def demo_conversation(url, name, bye):
    ws = await connect(url + "/echo")
    got = await ws.recv()
    expect(got == "Please enter your name", "'Please enter your name'", short(got))
    await ws.send(name)
    got = await ws.recv()
    expect(got == "Hi, %s!" % name, "'Hi, %s!'" % name, short(got))
    await ws.send(bye)
    try:
        got = await ws.recv()
        raise CheckFailed("expected the connection to close, got message %s" % short(got))
    except ConnectionClosedOK:
        pass
    await ws.wait_closed()
    expect((ws.close_code, ws.close_reason) == (1000, "Client said BYE"),
           "close 1000 'Client said BYE'", "close %s %r" % (ws.close_code, ws.close_reason))


async def run_echo(srv):
    url = srv.url
    await step("echo.text", roundtrip(url, "hello from websockets κόσμε 😀"))
    await step("echo.binary", roundtrip(url, bytes(range(256)) * 16))
    await step("echo.text-1mib", roundtrip(url, ("kite ✓ " * 200000)[:1 << 20]))
    await step("echo.binary-1mib", roundtrip(url, os.urandom(1 << 20)))
    await step("echo.fragmented-send", fragmented(url))
    await step("echo.ping", ping(url))
    await step("echo.500-messages-in-order", many(url))
    await step("echo.16-concurrent-clients", concurrent(url))
    await step("echo.close-1000", close_with(url, 1000, "normal"))
    await step("echo.close-4000-reason", close_with(url, 4000, "interop done"))
    await step("echo.sigterm-going-away", going_away(srv, url))


async def run_demo(srv):
    await step("demo.conversation", demo_conversation(srv.url, "Alice", "bye"))
    await step("demo.bye-uppercase", demo_conversation(srv.url, "Zoë 😀", "BYE"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kite", required=True)
    ap.add_argument("mode", choices=("echo", "demo"))
    args = ap.parse_args()
    print("# python3-websockets %s as a client of kite %s" % (websockets.__version__, args.mode), flush=True)
    try:
        srv = KiteServer(args.kite, args.mode)
    except RuntimeError as e:
        print("FAIL start: %s" % e)
        print("0 passed, 1 failed")
        return 1
    try:
        asyncio.run(run_echo(srv) if args.mode == "echo" else run_demo(srv))
    finally:
        code = srv.stop()
    if code == 0:
        print("ok %s.exit-status-0" % args.mode)
        results.append(True)
    else:
        print("FAIL %s.exit-status-0: expected exit status 0 after SIGTERM, got %s; stderr:\n%s"
              % (args.mode, code if code is not None else "no exit within 30s", srv.stderr_tail()))
        results.append(False)
    print("%d passed, %d failed" % (results.count(True), results.count(False)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
