"""
An RFC 8441 client built from Python's sans-I/O h2 (HTTP/2) and wsproto
(WebSocket frames), for the interop test (test/interop/python-h2.test.ts):
it opens WebSockets over extended CONNECT on ONE HTTP/2 connection to a
Switchboard echo server, runs a scripted exchange and prints one JSON report.

    h2_client.py PORT CA_FILE

Steps: TLS with ALPN h2; the server's SETTINGS (is ENABLE_CONNECT_PROTOCOL
on?); stream A: CONNECT :protocol websocket with a subprotocol and a
permessage-deflate offer, text/binary/large echo, ping/pong, close 1000;
stream B on the same connection, opened while A is open (two WebSockets, one
connection); refusals on other streams (:protocol other than websocket, an
unknown path, version 8). Exit status 0 with the report; on a failure, a
traceback on stderr and status 1.

Debian's python3-h2 (4.1) and python3-wsproto (1.2).
"""

import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings
import wsproto
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate

from common import describe, exit_after, exit_when_stdin_closes

TIMEOUT = 5


class H2:
    """One TLS connection with an h2 state machine, pumped by hand."""

    def __init__(self, port, ca_file):
        context = ssl.create_default_context(cafile=ca_file)
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.alpn = self.sock.selected_alpn_protocol()
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.pending = []
        self.remote_settings = None

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        """Read once from the socket; queue the h2 events."""
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.remote_settings = {int(k): v.new_value for k, v in event.changed_settings.items()}
            if isinstance(event, h2.events.DataReceived):
                # Flow control: give the window back as we consume.
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self.pending.append(event)
        self.flush()

    def wait(self, predicate, what):
        while True:
            for i, event in enumerate(self.pending):
                if predicate(event):
                    return self.pending.pop(i)
            try:
                self.pump()
            except socket.timeout:
                raise TimeoutError("timed out waiting for " + what)

    def request(self, headers, end_stream=False):
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.flush()
        return stream_id

    def response(self, stream_id):
        event = self.wait(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id, "the response")
        return dict(event.headers)

    def body(self, stream_id):
        chunks = []
        while True:
            event = self.wait(
                lambda e: getattr(e, "stream_id", None) == stream_id
                and isinstance(e, (h2.events.DataReceived, h2.events.StreamEnded, h2.events.StreamReset)),
                "the body",
            )
            if isinstance(event, h2.events.DataReceived):
                chunks.append(event.data)
            else:
                return b"".join(chunks).decode("utf-8", "replace")


class WebSocketOverH2:
    """wsproto's frame-level Connection on one h2 stream."""

    def __init__(self, h2conn, stream_id, extensions):
        self.h2 = h2conn
        self.stream_id = stream_id
        self.ws = Connection(ConnectionType.CLIENT, extensions=extensions)
        self.events = []

    def send(self, event):
        data = self.ws.send(event)
        # Respect the stream's and the connection's flow-control windows.
        while data:
            window = min(self.h2.conn.local_flow_control_window(self.stream_id), self.h2.conn.max_outbound_frame_size)
            if window <= 0:
                self.h2.pump()
                continue
            chunk, data = data[:window], data[window:]
            self.h2.conn.send_data(self.stream_id, chunk)
            self.h2.flush()

    def next(self, kinds, what):
        while True:
            for i, event in enumerate(self.events):
                if isinstance(event, kinds):
                    return self.events.pop(i)
            data_event = self.h2.wait(
                lambda e: getattr(e, "stream_id", None) == self.stream_id
                and isinstance(e, (h2.events.DataReceived, h2.events.StreamEnded, h2.events.StreamReset)),
                what,
            )
            if isinstance(data_event, h2.events.DataReceived):
                self.ws.receive_data(data_event.data)
            else:
                self.ws.receive_data(None)
            self.events.extend(self.ws.events())

    def message(self, what):
        """A whole message (wsproto may hand it in pieces)."""
        parts = []
        while True:
            event = self.next((TextMessage, BytesMessage), what)
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)


def connect_headers(port, path="/", protocol="websocket", extra=()):
    return [
        (":method", "CONNECT"),
        (":protocol", protocol),
        (":scheme", "https"),
        (":path", path),
        (":authority", "localhost:%d" % port),
        ("sec-websocket-version", "13"),
    ] + list(extra)


def run(port, ca_file):
    report = {"h2": h2.__version__, "wsproto": wsproto.__version__ if hasattr(wsproto, "__version__") else "?", "steps": []}
    conn = H2(port, ca_file)
    report["alpn"] = conn.alpn
    conn.wait(lambda e: isinstance(e, h2.events.RemoteSettingsChanged), "the server's SETTINGS")
    report["enable_connect_protocol"] = conn.remote_settings.get(int(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL))

    # Stream A: subprotocol + permessage-deflate offer.
    deflate = PerMessageDeflate()
    a_id = conn.request(
        connect_headers(port, "/echo", extra=[("sec-websocket-protocol", "chat, superchat"), ("sec-websocket-extensions", "%s; %s" % (deflate.name, deflate.offer()))])
    )
    a_headers = conn.response(a_id)
    report["a_status"] = a_headers.get(":status")
    report["a_protocol"] = a_headers.get("sec-websocket-protocol")
    report["a_extensions"] = a_headers.get("sec-websocket-extensions")
    extensions = []
    if report["a_extensions"]:
        deflate.finalize(report["a_extensions"])
        extensions = [deflate]
    a = WebSocketOverH2(conn, a_id, extensions)

    # Stream B, on the same connection while A is open.
    b_id = conn.request(connect_headers(port, "/echo"))
    report["b_status"] = conn.response(b_id).get(":status")
    b = WebSocketOverH2(conn, b_id, [])

    def roundtrip(ws, label, message):
        ws.send(TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message))
        got = ws.message(label)
        report["steps"].append({"step": label, "sent": describe(message), "got": describe(got), "equal": got == message})

    roundtrip(a, "a-text", "hello over h2")
    roundtrip(b, "b-text", "b says hi")
    roundtrip(a, "a-binary", bytes(range(256)))
    roundtrip(a, "a-large", "x" * (300 * 1024))  # beyond the 64 KiB stream window: WINDOW_UPDATEs needed
    roundtrip(b, "b-after-large", "still here")

    a.send(Ping(payload=b"py-ping"))
    pong = a.next((Pong,), "the pong")
    report["pong"] = bytes(pong.payload).decode()

    a.send(CloseConnection(code=1000, reason="bye"))
    close = a.next((CloseConnection,), "the close answer")
    report["a_close"] = {"code": close.code, "reason": close.reason}
    # RFC 8441 §6: END_STREAM is the FIN; we end our side too.
    conn.conn.end_stream(a_id)
    conn.flush()
    conn.wait(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == a_id, "the server's END_STREAM on A")
    roundtrip(b, "b-after-a-closed", "b lives on")

    # Refusals are ordinary responses on their streams.
    refusals = {}
    for label, headers in [
        ("other-protocol", connect_headers(port, "/echo", protocol="connect-udp")),
        ("unknown-path", connect_headers(port, "/nope")),
        ("version-8", [h if h[0] != "sec-websocket-version" else ("sec-websocket-version", "8") for h in connect_headers(port, "/echo")]),
    ]:
        sid = conn.request(headers)
        h = conn.response(sid)
        refusals[label] = {"status": h.get(":status"), "version": h.get("sec-websocket-version"), "body": conn.body(sid)}
    report["refusals"] = refusals

    b.send(CloseConnection(code=4000, reason="done"))
    report["b_close"] = b.next((CloseConnection,), "b's close answer").code
    conn.conn.close_connection()
    conn.flush()
    conn.sock.close()
    return report


def main():
    exit_when_stdin_closes()
    exit_after(30)
    port, ca_file = int(sys.argv[1]), sys.argv[2]
    print(json.dumps(run(port, ca_file)), flush=True)


if __name__ == "__main__":
    main()
