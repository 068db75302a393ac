/**
 * RFC 8441 interop: Python's sans-I/O `h2` (HTTP/2) and `wsproto` (WebSocket
 * frames), Debian's python3-h2 and python3-wsproto, as a client of our
 * WebSocketServer attached to a node:http2 secure server (ALPN h2). The
 * script (py/h2_client.py) opens two WebSockets on one HTTP/2 connection,
 * echoes text, binary and a message larger than the stream window, pings,
 * closes one while the other lives on, and tries three refusals. It prints
 * one JSON report; the test checks it and what our server saw.
 *
 * Without python3-h2 / python3-wsproto this test fails (it never skips).
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { test } from 'node:test';
import { WebSocketServer, type WebSocket } from '../../src/index.js';
import { makeTestCertificate } from '../support/certs.js';
import { PythonProcess, requirePythonH2, WAIT, within } from './helpers.js';

test('Python h2 + wsproto → our server over RFC 8441: two WebSockets on one connection, deflate, subprotocol, ping, close, refusals', async (t) => {
  requirePythonH2();
  const tc = makeTestCertificate();
  t.after(() => tc.remove());
  const server = http2.createSecureServer({ allowHTTP1: true, cert: tc.cert, key: tc.key }, (_req, res) => res.end());
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (s) => sessions.push(s));
  const wss = new WebSocketServer({ server, path: '/echo', perMessageDeflate: true });
  const seen: Array<{ httpVersion: string; protocol: string; extensions: string; closed?: number }> = [];
  wss.on('connection', (ws: WebSocket, req) => {
    const entry = { httpVersion: req.httpVersion, protocol: ws.protocol, extensions: ws.extensions } as (typeof seen)[number];
    seen.push(entry);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('close', (code) => (entry.closed = code));
  });
  t.after(async () => {
    await within(new Promise<void>((resolve) => wss.close(() => resolve())), WAIT, 'wss close').catch(() => {});
    for (const s of sessions) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  await new Promise<void>((resolve) => (server as unknown as net.Server).listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  const py = new PythonProcess('h2_client.py', [String(port), tc.certFile], requirePythonH2);
  t.after(() => py.stop());
  await py.expectSuccess(20_000);
  const report = await py.json(0);

  assert.equal(report.alpn, 'h2');
  assert.equal(report.enable_connect_protocol, 1, 'SETTINGS_ENABLE_CONNECT_PROTOCOL advertised');
  assert.equal(report.a_status, '200');
  assert.equal(report.a_protocol, 'chat');
  assert.match(report.a_extensions, /^permessage-deflate/);
  assert.equal(report.b_status, '200');
  for (const step of report.steps) assert.equal(step.equal, true, `${step.step}: ${JSON.stringify(step)}`);
  assert.equal(report.steps.length, 6);
  assert.equal(report.pong, 'py-ping');
  assert.equal(report.a_close.code, 1000);
  assert.equal(report.b_close, 4000);
  assert.equal(report.refusals['other-protocol'].status, '501');
  assert.equal(report.refusals['unknown-path'].status, '404');
  assert.equal(report.refusals['version-8'].status, '426');
  assert.equal(report.refusals['version-8'].version, '13');

  // Our side: both on HTTP/2, one connection, negotiated as the client saw it.
  assert.equal(sessions.length, 1);
  assert.deepEqual(
    seen.map((s) => [s.httpVersion, s.protocol, s.extensions.split(';')[0]]),
    [
      ['2.0', 'chat', 'permessage-deflate'],
      ['2.0', '', ''],
    ],
  );
  await within(
    (async () => {
      while (seen.some((s) => s.closed === undefined)) await new Promise((r) => setTimeout(r, 10));
    })(),
    WAIT,
    'both server sides to close',
  );
  assert.deepEqual(seen.map((s) => s.closed), [1000, 4000]);
});
