#!/usr/bin/python3
"""An echo server on python3-websockets with its default permessage-deflate settings
(server and client windows 12, memLevel 5, context takeover), for bench_pmd_load's
memory and throughput comparison (docs/benchmarks.md, "permessage-deflate").

Same convention as `kite echo`: every message comes back as one message of the same type;
the first stdout line is "listening on ws://HOST:PORT/"; SIGTERM or SIGINT ends it.

Usage: /usr/bin/python3 bench/bench_pmd_python_echo.py [--port N] [--no-deflate]
"""
import argparse
import asyncio
import signal
import sys

import websockets


async def echo(ws, path=None):
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main(port, deflate):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    # compression="deflate" is the library's default: windows 12, memLevel 5.
    async with websockets.serve(echo, "127.0.0.1", port, max_size=16 * 1024 * 1024,
                                compression="deflate" if deflate else None,
                                ping_interval=None, backlog=4096) as server:
        bound = server.sockets[0].getsockname()[1]
        sys.stdout.write("listening on ws://127.0.0.1:%d/\n" % bound)
        sys.stdout.flush()
        await stop


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--no-deflate", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.port, not a.no_deflate))
