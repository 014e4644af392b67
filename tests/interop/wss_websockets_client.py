#!/usr/bin/env python3
"""Interop: python3-websockets as a wss:// client of kite (kite's TLS listener).

    wss_websockets_client.py --kite PATH

Starts `kite echo` and `kite demo` with --tls-cert/--tls-key (a throwaway CA made by
gen_certs.sh), on 127.0.0.1 port 0, and talks to them over TLS: trusting the test CA,
and once with verification explicitly disabled; a client that trusts only the system
store must refuse the certificate. Each server is stopped with SIGTERM and must exit 0.
Prints `ok`/`FAIL` per check and `N passed, M failed`; exit 77 without websockets.
"""

import argparse
import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading

try:
    import websockets
except ImportError:
    print("skip: python3-websockets is not installed (scripts/install-deps.sh test installs it)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
LISTEN_RE = re.compile(r"^listening on wss://127\.0\.0\.1:(\d+)/$")
STEP_TIMEOUT = 20.0
results = []


class CheckFailed(Exception):
    pass


def expect(cond, expected, got):
    if not cond:
        raise CheckFailed("expected %s, got %r" % (expected, got))


class TlsKite:
    """kite MODE with TLS on port 0; reads the 'listening on wss://...' line."""

    def __init__(self, kite, mode, certs):
        self.proc = subprocess.Popen(
            [kite, mode, "--host", "127.0.0.1", "--port", "0", "-q",
             "--tls-cert", os.path.join(certs, "server.crt"),
             "--tls-key", os.path.join(certs, "server.key")],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = self.proc.stdout.readline().decode().rstrip("\n")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        m = LISTEN_RE.match(first)
        if not m:
            self.proc.kill()
            raise RuntimeError("kite %s: first line %r is not 'listening on wss://...'"
                               % (mode, first))
        self.port = int(m.group(1))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


async def step(name, coro):
    try:
        await asyncio.wait_for(coro, STEP_TIMEOUT)
    except CheckFailed as e:
        print("FAIL %s: %s" % (name, e), flush=True)
        results.append(False)
        return
    except Exception as e:  # noqa: BLE001 - a library error is a failed check
        print("FAIL %s: expected no error, got %s: %s" % (name, type(e).__name__, e), flush=True)
        results.append(False)
        return
    print("ok %s" % name, flush=True)
    results.append(True)


def check(name, cond, detail):
    print(("ok %s" if cond else "FAIL %s: " + detail) % name, flush=True)
    results.append(bool(cond))


async def echo_checks(url, trusted, insecure, system_only):
    def connect(ctx):
        return websockets.connect(url, ssl=ctx, max_size=None, ping_interval=None,
                                  close_timeout=10)

    async def text_binary_big():
        async with connect(trusted) as ws:
            for msg in ("hello over TLS", "κόσμε", b"\x00\x01\xff", "x" * (1 << 20),
                        bytes(range(256)) * 4096):
                await ws.send(msg)
                got = await ws.recv()
                expect(type(got) is type(msg) and got == msg, "the message echoed",
                       (type(got).__name__, len(got)))

    async def fragmented_and_ping():
        async with connect(trusted) as ws:
            await ws.send(["frag", "mented"])
            expect(await ws.recv() == "fragmented", "'fragmented'", None)
            waiter = await ws.ping(b"tls-ping")
            await asyncio.wait_for(waiter, 10)

    async def many_in_order():
        async with connect(trusted) as ws:
            for i in range(500):
                await ws.send("m%d" % i)
            for i in range(500):
                got = await ws.recv()
                expect(got == "m%d" % i, "'m%d'" % i, got)

    async def concurrent():
        async def one(i):
            async with connect(trusted) as ws:
                await ws.send("c%d" % i)
                expect(await ws.recv() == "c%d" % i, "its echo", None)
        await asyncio.gather(*(one(i) for i in range(16)))

    async def close_code():
        ws = await connect(trusted)
        await ws.close(4000, "done")
        expect(ws.close_code == 4000, "close 4000 echoed", ws.close_code)

    async def no_verification():
        async with connect(insecure) as ws:
            await ws.send("insecure")
            expect(await ws.recv() == "insecure", "'insecure'", None)

    async def system_store_refuses():
        try:
            async with connect(system_only):
                pass
        except ssl.SSLCertVerificationError:
            return
        raise CheckFailed("a certificate verification error", "a connection")

    await step("echo: text, binary, 1 MiB text and binary over TLS", text_binary_big())
    await step("echo: fragmented message and ping over TLS", fragmented_and_ping())
    await step("echo: 500 messages in order", many_in_order())
    await step("echo: 16 concurrent TLS clients", concurrent())
    await step("echo: close 4000 echoed", close_code())
    await step("echo: verification explicitly disabled", no_verification())
    await step("echo: system trust store refuses the test CA", system_store_refuses())


async def demo_checks(url, trusted):
    async def conversation():
        async with websockets.connect(url + "echo", ssl=trusted, ping_interval=None) as ws:
            expect(await ws.recv() == "Please enter your name", "the greeting", None)
            await ws.send("Alice")
            got = await ws.recv()
            expect(got == "Hi, Alice!", "'Hi, Alice!'", got)
            await ws.send("bye")
            try:
                await ws.recv()
            except websockets.exceptions.ConnectionClosedOK:
                pass
            expect(ws.close_code == 1000 and ws.close_reason == "Client said BYE",
                   "1000 'Client said BYE'", (ws.close_code, ws.close_reason))

    await step("demo: greeting, Hi, bye -> 1000 over TLS", conversation())


async def run(kite, certs):
    trusted = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    system_only = ssl.create_default_context()
    for mode in ("echo", "demo"):
        srv = TlsKite(kite, mode, certs)
        url = "wss://localhost:%d/" % srv.port
        if mode == "echo":
            await echo_checks(url, trusted, insecure, system_only)
        else:
            await demo_checks(url, trusted)
        rc = await asyncio.get_running_loop().run_in_executor(None, srv.stop)
        check("%s: exit status 0 after SIGTERM" % mode, rc == 0, "got %r" % rc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kite", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as certs:
        subprocess.run(["sh", os.path.join(HERE, "gen_certs.sh"), certs], check=True)
        asyncio.run(run(a.kite, certs))
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
