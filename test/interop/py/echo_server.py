"""
Python websockets echo server for the interop tests.

    echo_server.py --compression none|deflate [--subprotocol P ...]

Listens on 127.0.0.1 port 0 and prints the port as its first line on stdout.
Then, for each connection, once it is closed, one JSON line: the request's
offered extensions, the negotiated subprotocol and extensions, a summary of
every message received, and the close code and reason the client sent.

It echoes every message, except:
- "cmd:fragments": answers with one text message in three fragments;
- "cmd:ping": pings the client with b"py-srv-ping" and, once the pong
  arrived, sends "pong-received:py-srv-ping";
- "cmd:close": closes with 4002 "python server bye ✓".

It runs until killed, or until its stdin closes.
"""

import argparse
import asyncio
import json

import websockets

from common import describe, exit_after, exit_when_stdin_closes, request_headers, response_headers

STEP_TIMEOUT = 5


def make_handler():
    async def handler(ws, *_path):
        record = {
            "subprotocol": ws.subprotocol,
            "request_extensions": request_headers(ws).get("Sec-WebSocket-Extensions"),
            "response_extensions": response_headers(ws).get("Sec-WebSocket-Extensions"),
            "received": [],
            "pings_sent": [],
        }
        try:
            async for message in ws:
                record["received"].append(describe(message))
                if message == "cmd:fragments":
                    await ws.send(["srv-frag-1 ", "srv-frag-2 ✓ ", "srv-frag-3"])
                elif message == "cmd:ping":
                    pong = await ws.ping(b"py-srv-ping")
                    await asyncio.wait_for(pong, STEP_TIMEOUT)
                    record["pings_sent"].append("py-srv-ping")
                    await ws.send("pong-received:py-srv-ping")
                elif message == "cmd:close":
                    await ws.close(4002, "python server bye ✓")
                else:
                    await ws.send(message)
        except websockets.ConnectionClosed:
            pass
        except Exception as exc:  # reported, so the test shows it
            record["error"] = repr(exc)
        await ws.wait_closed()
        record["close_code"] = ws.close_code
        record["close_reason"] = ws.close_reason
        print(json.dumps(record), flush=True)

    return handler


async def main():
    exit_when_stdin_closes()
    exit_after(60)
    parser = argparse.ArgumentParser()
    parser.add_argument("--compression", choices=["none", "deflate"], required=True)
    parser.add_argument("--subprotocol", action="append")
    args = parser.parse_args()
    async with websockets.serve(
        make_handler(),
        "127.0.0.1",
        0,
        compression=None if args.compression == "none" else "deflate",
        subprotocols=args.subprotocol or None,
        max_size=2**23,
        ping_interval=None,
        close_timeout=STEP_TIMEOUT,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
