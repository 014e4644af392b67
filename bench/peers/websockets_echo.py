#!/usr/bin/python3
"""peer websockets: an echo server on python3-websockets (asyncio), measured side by side
with kite by bench/run.sh.

Same convention as `kite echo`: every text or binary message comes back as one message of
the same type; the first stdout line is "listening on ws://HOST:PORT/"; --port 0 picks a
free port; SIGTERM or SIGINT ends it. Messages up to 16 MiB are accepted (bigger ones are
closed with 1009, RFC 6455 section 7.4.1). No keepalive pings.

Variants: --tls-cert/--tls-key serve wss:// through an ssl.SSLContext (the listening line
then says wss://); --deflate accepts permessage-deflate (RFC 7692) with websockets'
default settings (compression="deflate"). Without --deflate there is no compression.

Usage: /usr/bin/python3 websockets_echo.py [--host IPV4] [--port N]
                                           [--tls-cert PEM --tls-key PEM] [--deflate] [-q]
"""
import argparse
import asyncio
import signal
import ssl
import sys

import websockets


async def echo(ws, path=None):
    # A str comes back as a text message, bytes as a binary one.
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


def tls_context(cert, key):
    if not cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


async def main(host, port, tls, deflate):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(echo, host, port, max_size=16 * 1024 * 1024,
                                compression="deflate" if deflate else None,
                                ping_interval=None, ssl=tls, backlog=4096) as server:
        bound = server.sockets[0].getsockname()[1]
        scheme = "wss" if tls else "ws"
        sys.stdout.write(f"listening on {scheme}://{host}:{bound}/\n")
        sys.stdout.flush()
        await stop


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="websockets echo peer for bench/run.sh")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert", help="serve wss:// with this PEM certificate chain")
    ap.add_argument("--tls-key", help="... and this PEM private key")
    ap.add_argument("--deflate", action="store_true", help="accept permessage-deflate")
    ap.add_argument("-q", action="store_true", help="accepted; nothing is logged anyway")
    a = ap.parse_args()
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    asyncio.run(main(a.host, a.port, tls_context(a.tls_cert, a.tls_key), a.deflate))
