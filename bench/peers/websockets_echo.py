#!/usr/bin/python3
"""peer websockets: an echo server on python3-websockets (asyncio), measured side by side
with kite by bench/run.sh.

Same convention as `kite echo`: every text or binary message comes back as one message of
the same type; the first stdout line is "listening on ws://HOST:PORT/"; --port 0 picks a
free port; SIGTERM or SIGINT ends it. Messages up to 16 MiB are accepted (bigger ones are
closed with 1009, RFC 6455 section 7.4.1). No permessage-deflate, no keepalive pings.

Usage: /usr/bin/python3 websockets_echo.py [--host IPV4] [--port N] [-q]
"""
import argparse
import asyncio
import signal
import sys

import websockets


async def echo(ws, path=None):
    # A str comes back as a text message, bytes as a binary one.
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main(host, port):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(echo, host, port, max_size=16 * 1024 * 1024,
                                compression=None, ping_interval=None,
                                backlog=4096) as server:
        bound = server.sockets[0].getsockname()[1]
        sys.stdout.write(f"listening on ws://{host}:{bound}/\n")
        sys.stdout.flush()
        await stop


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="websockets echo peer for bench/run.sh")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("-q", action="store_true", help="accepted; nothing is logged anyway")
    a = ap.parse_args()
    asyncio.run(main(a.host, a.port))
