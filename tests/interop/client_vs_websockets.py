#!/usr/bin/env python3
"""Interop: the kite client (through `kite cat`) against a python3-websockets server.

    client_vs_websockets.py --kite PATH

The server runs in this process, plain (ws://) and with TLS (wss://, a throwaway CA made
by gen_certs.sh). It echoes every message and records what it received (message types,
request headers, the subprotocol), so each check looks at both ends: what `kite cat`
printed and exited with, and what the server saw. Prints `ok`/`FAIL` per check and
`N passed, M failed`. Exit 77 (skipped) when python3-websockets is not installed.
"""

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import tempfile

try:
    import websockets
except ImportError:
    print("skip: python3-websockets is not installed (scripts/install-deps.sh test installs it)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
STEP_TIMEOUT = 20.0
results = []
seen = []  # one dict per connection the server accepted


class CheckFailed(Exception):
    pass


def expect(cond, expected, got):
    if not cond:
        raise CheckFailed("expected %s, got %r" % (expected, got))


async def handler(ws, path=None):
    rec = {"path": getattr(ws, "path", path), "headers": {k.lower(): v for k, v in ws.request_headers.raw_items()},
           "subprotocol": ws.subprotocol, "messages": [],
           "extensions": [type(e).__name__ for e in ws.extensions]}
    seen.append(rec)
    async for msg in ws:
        rec["messages"].append(msg)
        if msg == "close-me":
            await ws.close(4000, "bye from python")
            return
        await ws.send(msg)


async def kite_cat(kite, args, stdin_text, timeout=15.0):
    proc = await asyncio.create_subprocess_exec(
        kite, "cat", *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin_text.encode()), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise CheckFailed("kite cat to finish within %.0fs" % timeout)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


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


async def run(kite, certs):
    def tls_ctx(name):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(os.path.join(certs, name + ".crt"), os.path.join(certs, name + ".key"))
        return c
    opts = dict(max_size=None, subprotocols=["chat", "superchat"])
    plain = await websockets.serve(handler, "127.0.0.1", 0, **opts)
    secure = await websockets.serve(handler, "127.0.0.1", 0, ssl=tls_ctx("server"), **opts)
    other = await websockets.serve(handler, "127.0.0.1", 0, ssl=tls_ctx("other"), **opts)
    ws_url = "ws://127.0.0.1:%d" % plain.sockets[0].getsockname()[1]
    wss_url = "wss://localhost:%d" % secure.sockets[0].getsockname()[1]
    other_url = "wss://localhost:%d" % other.sockets[0].getsockname()[1]
    ca = os.path.join(certs, "ca.pem")

    async def text_lines():
        rc, out, err = await kite_cat(kite, [ws_url + "/text?x=1"], "hello\nκόσμε\n\nlast")
        expect(out == "hello\nκόσμε\n\nlast\n", "the lines echoed", out)
        expect("closed: 1000" in err, "'closed: 1000' on stderr", err)
        expect(rc == 0, "exit 0", rc)
        rec = seen[-1]
        expect(rec["path"] == "/text?x=1", "path /text?x=1", rec["path"])
        expect(rec["messages"] == ["hello", "κόσμε", "", "last"], "4 text messages",
               rec["messages"])

    async def binary_lines():
        rc, out, _ = await kite_cat(kite, ["--binary", ws_url + "/bin"], "a\nbc\n")
        expect(out == "a\nbc\n" and rc == 0, "binary echoed, exit 0", (rc, out))
        expect(seen[-1]["messages"] == [b"a", b"bc"], "2 binary messages", seen[-1]["messages"])

    async def headers_and_subprotocol():
        rc, _, err = await kite_cat(kite, ["--header", "Authorization: Bearer t0k",
                                           "--subprotocol", "superchat", "--origin",
                                           "https://kite.test", ws_url + "/h"], "x\n")
        expect(rc == 0, "exit 0", (rc, err))
        rec = seen[-1]
        expect(rec["headers"].get("authorization") == "Bearer t0k", "the Authorization header",
               rec["headers"])
        expect(rec["headers"].get("origin") == "https://kite.test", "the Origin header",
               rec["headers"])
        expect(rec["subprotocol"] == "superchat", "subprotocol superchat", rec["subprotocol"])
        expect("subprotocol superchat" in err, "the subprotocol on stderr", err)

    async def server_closes():
        rc, out, err = await kite_cat(kite, [ws_url + "/c"], "one\nclose-me\ntwo\n")
        expect(out.startswith("one\n"), "the first line echoed", out)
        expect("closed: 4000 bye from python" in err, "'closed: 4000 bye from python'", err)
        expect(rc == 0, "exit 0 (a clean close)", rc)

    async def big_message():
        line = "x" * (1 << 20)
        rc, out, _ = await kite_cat(kite, [ws_url + "/big"], line + "\n")
        expect(rc == 0 and out == line + "\n", "1 MiB echoed", (rc, len(out)))

    async def many_lines():
        text = "".join("line %d\n" % i for i in range(2000))
        rc, out, _ = await kite_cat(kite, [ws_url + "/many"], text)
        expect(rc == 0 and out == text, "2000 lines echoed in order", (rc, len(out)))

    async def deflate():
        line = "compressible " * 20000
        rc, out, err = await kite_cat(kite, ["--deflate", ws_url + "/z"], line + "\nsmall\n")
        expect(rc == 0 and out == line + "\nsmall\n", "echoed through permessage-deflate",
               (rc, len(out), err))
        expect(seen[-1]["extensions"] == ["PerMessageDeflate"], "permessage-deflate negotiated",
               seen[-1]["extensions"])
        expect("permessage-deflate" in err, "the extension on stderr", err)

    async def wss_with_ca():
        rc, out, err = await kite_cat(kite, ["--ca", ca, wss_url + "/tls"], "secure\n")
        expect(rc == 0 and out == "secure\n", "echo over TLS, exit 0", (rc, out, err))
        expect(seen[-1]["messages"] == ["secure"], "the server got 'secure'", seen[-1])

    async def wss_untrusted():
        rc, out, err = await kite_cat(kite, [wss_url + "/tls"], "x\n")
        expect(rc == 1, "exit 1", rc)
        expect("certificate verification failed" in err, "a verification error", err)

    async def wss_wrong_host():
        # other.crt is signed by the trusted CA but names other.test, not localhost.
        rc, _, err = await kite_cat(kite, ["--ca", ca, other_url + "/tls"], "x\n")
        expect(rc == 1 and "localhost" in err, "a host-name mismatch", (rc, err))

    async def wss_insecure():
        rc, out, _ = await kite_cat(kite, ["--insecure", wss_url + "/tls"], "y\n")
        expect(rc == 0 and out == "y\n", "echo with verification off", (rc, out))

    await step("text lines echoed, server saw text messages and the path", text_lines())
    await step("--binary lines are binary messages", binary_lines())
    await step("header, origin and subprotocol reach the server", headers_and_subprotocol())
    await step("server close 4000 shown and exit 0", server_closes())
    await step("1 MiB message", big_message())
    await step("2000 lines in order", many_lines())
    await step("--deflate: permessage-deflate negotiated, 240 KB compressible echoed", deflate())
    await step("wss:// with --ca", wss_with_ca())
    await step("wss:// untrusted certificate refused", wss_untrusted())
    await step("wss:// wrong host name refused", wss_wrong_host())
    await step("wss:// --insecure", wss_insecure())
    for srv in (plain, secure, other):
        srv.close()
        await srv.wait_closed()


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
