"""
Python websockets client for the interop tests: connects to a Switchboard
echo server, runs a scripted exchange and prints one JSON report on stdout.

    client.py URL --compression none|deflate [--subprotocol P ...] [--script full|handshake]

The server (test/interop/python.test.ts) echoes every message, except:
- "cmd:fragments": it answers with one message sent in three fragments;
- "cmd:ping": it pings us with b"srv-ping" and, once our (automatic) pong
  arrived, sends "pong-received:srv-ping".

Exit status 0 with the report on success; on any failure, a traceback on
stderr and status 1.
"""

import argparse
import asyncio
import json
import os
import sys

import websockets

from common import describe, exit_after, exit_when_stdin_closes, response_headers

STEP_TIMEOUT = 5


async def run(args):
    report = {"websockets": websockets.version.version, "steps": []}
    async with websockets.connect(
        args.url,
        compression=None if args.compression == "none" else "deflate",
        subprotocols=args.subprotocol or None,
        max_size=2**23,
        open_timeout=STEP_TIMEOUT,
        close_timeout=STEP_TIMEOUT,
        ping_interval=None,
    ) as ws:
        report["subprotocol"] = ws.subprotocol
        report["response_extensions"] = response_headers(ws).get("Sec-WebSocket-Extensions")
        report["extensions"] = [type(e).__name__ for e in ws.extensions]

        async def recv():
            return await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)

        async def roundtrip(label, message, expected=None):
            await ws.send(message)
            got = await recv()
            want = message if expected is None else expected
            report["steps"].append(
                {"label": label, "sent": describe(want), "got": describe(got), "ok": describe(got) == describe(want)}
            )

        if args.script == "full":
            await roundtrip("text", "hello from python ✓")
            await roundtrip("binary", bytes(range(256)))
            await roundtrip("empty text", "")
            await roundtrip("empty binary", b"")
            await roundtrip("1 MiB of random bytes", os.urandom(2**20))
            await roundtrip("64 KiB of compressible text", "python talks to switchboard. " * 2260)
            # websockets sends an iterable as a fragmented message, one frame per item.
            await roundtrip("fragmented text", ["frag-1 ", "frag-2 ", "frag-3 ✓"], "frag-1 frag-2 frag-3 ✓")
            await roundtrip(
                "fragmented binary", [b"\x01" * 3000, b"\x02" * 3000, b"\x03" * 3000], b"\x01" * 3000 + b"\x02" * 3000 + b"\x03" * 3000
            )

            await ws.send("cmd:fragments")
            got = await recv()
            report["server_fragments"] = got

            pong = await ws.ping(b"py-ping")
            await asyncio.wait_for(pong, STEP_TIMEOUT)
            report["pong_received"] = True

            await ws.send("cmd:ping")
            report["server_ping"] = await recv()

            await asyncio.wait_for(ws.close(4001, "python says bye ✓"), STEP_TIMEOUT)
        else:
            await roundtrip("text", "hello")
            await asyncio.wait_for(ws.close(1000, "done"), STEP_TIMEOUT)

        await asyncio.wait_for(ws.wait_closed(), STEP_TIMEOUT)
        report["close_code"] = ws.close_code
        report["close_reason"] = ws.close_reason
    return report


def main():
    exit_when_stdin_closes()
    exit_after(20)
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--compression", choices=["none", "deflate"], required=True)
    parser.add_argument("--subprotocol", action="append")
    parser.add_argument("--script", choices=["full", "handshake"], default="full")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
