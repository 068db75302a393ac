"""Shared by the interop helper scripts (Python 3.11, websockets 10.4)."""

import hashlib
import os
import sys
import threading


def describe(message):
    """A JSON-friendly summary of a message: type, length in bytes, SHA-256."""
    if isinstance(message, str):
        data, kind = message.encode("utf-8"), "text"
    else:
        data, kind = bytes(message), "binary"
    summary = {"type": kind, "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if len(data) <= 64:
        summary["text" if kind == "text" else "hex"] = message if kind == "text" else data.hex()
    return summary


def exit_when_stdin_closes():
    """Exit when the parent (the test) goes away without killing us: its end of our stdin closes."""

    def watch():
        # os.read, not sys.stdin: a thread blocked in a buffered read would
        # abort the interpreter at shutdown.
        try:
            while os.read(0, 1024):
                pass
        except OSError:
            pass
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def exit_after(seconds):
    """A hard bound on the lifetime of a helper script, whatever happens."""
    timer = threading.Timer(seconds, lambda: os._exit(4))
    timer.daemon = True
    timer.start()


def response_headers(ws):
    """The handshake response headers (legacy and new websockets APIs)."""
    headers = getattr(ws, "response_headers", None)
    return headers if headers is not None else ws.response.headers


def request_headers(ws):
    """The handshake request headers (legacy and new websockets APIs)."""
    headers = getattr(ws, "request_headers", None)
    return headers if headers is not None else ws.request.headers
