/**
 * `switchboard doctor`, the real binary (through tsx), against real servers
 * started here: a plain ws:// WebSocket server; an HTTP server that is not
 * one (200 to the Upgrade: "Upgrade missing"), and one that says it is a
 * proxy (Via); wss:// with a self-signed certificate made by the openssl
 * binary (untrusted, then trusted with --ca); a node:http2 server with and
 * without SETTINGS_ENABLE_CONNECT_PROTOCOL whose extended CONNECT streams
 * are WebSockets (pinged through).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WebSocket, WebSocketServer } from '../../../src/index.js';
import { runCli, type CliProcess } from '../../support/cli.js';
import { CHILD_WAIT, within } from '../../support/wait.js';

let dir: string;
let certFile: string;
let cert: Buffer;
let key: Buffer;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'switchboard-doctor-'));
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '30',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    { cwd: dir, stdio: 'pipe', timeout: 30_000 },
  );
  certFile = path.join(dir, 'c.pem');
  cert = readFileSync(certFile);
  key = readFileSync(path.join(dir, 'k.pem'));
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Closable = { close(cb?: () => void): unknown; closeAllConnections?: () => void };

async function listen<S extends http.Server | https.Server | http2.Http2SecureServer>(t: { after(fn: () => unknown): void }, server: S): Promise<number> {
  t.after(
    () =>
      new Promise<void>((resolve) => {
        (server as Closable).closeAllConnections?.();
        (server as Closable).close(() => resolve());
      }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** `switchboard doctor ...args`: its exit code and stdout lines. */
async function doctor(t: { after(fn: () => unknown): void }, args: string[]): Promise<{ code: number | null; out: string; cli: CliProcess }> {
  const cli = runCli(t, ['doctor', ...args, '--timeout', '10']);
  const { code } = await within(cli.exited, CHILD_WAIT * 2, `doctor to finish (stderr: ${cli.stderr.join(' | ')})`);
  return { code, out: cli.stdout.join('\n'), cli };
}

function wsEcho(server: http.Server | https.Server, options: { perMessageDeflate?: boolean } = {}): WebSocketServer {
  const wss = new WebSocketServer({ server, ...options });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  return wss;
}

test('doctor on a plain ws:// server: every step ✓, compression and ping reported, exit 0', async (t) => {
  const server = http.createServer();
  wsEcho(server, { perMessageDeflate: true });
  const port = await listen(t, server);
  const { code, out } = await doctor(t, [`ws://127.0.0.1:${port}/`]);
  assert.equal(code, 0, out);
  assert.match(out, /^✓ TCP: connected to 127\.0\.0\.1:\d+ in [\d.]+ ms$/m);
  assert.match(out, /^- TLS: not used \(ws:\/\/\)$/m);
  assert.match(out, /^✓ HTTP\/1\.1 Upgrade: 101 Switching Protocols in [\d.]+ ms$/m);
  assert.match(out, /^✓ Compression: permessage-deflate negotiated \(permessage-deflate/m);
  assert.match(out, /^✓ Ping \(HTTP\/1\.1\): RTT min [\d.]+ \/ avg [\d.]+ \/ max [\d.]+ ms \(5 pings\)$/m);
  assert.match(out, /^WebSocket works over HTTP\/1\.1\.$/m);

  // Without compression on the server: a warning with what to do, still exit 0.
  const plain = http.createServer();
  wsEcho(plain, { perMessageDeflate: false });
  const plainPort = await listen(t, plain);
  const second = await doctor(t, [`http://127.0.0.1:${plainPort}/`]);
  assert.equal(second.code, 0, second.out);
  assert.match(second.out, /^! Compression: permessage-deflate not negotiated[^\n]*\n {4}→ /m);
});

test('doctor on an HTTP server that is not WebSocket: 200 instead of 101, "Upgrade missing", exit 1; with Via: a proxy', async (t) => {
  const server = http.createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html' }).end('<h1>hello</h1>'));
  const port = await listen(t, server);
  const { code, out } = await doctor(t, [`ws://127.0.0.1:${port}/rt`]);
  assert.equal(code, 1, out);
  assert.match(out, /^✗ HTTP\/1\.1 Upgrade: no 101: the server answered HTTP 200 OK \("<h1>hello<\/h1>"\)\n {4}→ the Upgrade was answered as a plain HTTP request/m);
  assert.match(out, /^! Proxy: Upgrade missing: the request got a 200 instead of 101, with no header that names a proxy/m);
  assert.match(out, /^No WebSocket could be opened: fix the first ✗ above\.$/m);

  // The same behind something that says it is a proxy.
  const proxied = http.createServer((_req, res) => res.writeHead(200, { Via: '1.1 edge-proxy', Server: 'nginx/1.22' }).end('ok'));
  const proxiedPort = await listen(t, proxied);
  const second = await doctor(t, [`ws://127.0.0.1:${proxiedPort}/rt`]);
  assert.equal(second.code, 1);
  assert.match(second.out, /^✗ Proxy: a proxy seems to be in between \(via: 1\.1 edge-proxy; server: nginx\/1\.22\) and the Upgrade did not get through: Upgrade missing\n {4}→ the proxy must pass the Upgrade and Connection headers \(nginx: proxy_http_version 1\.1;/m);
});

test('doctor on wss:// with a self-signed certificate: ✗ not trusted (exit 1) but the rest is checked; --ca trusts it (exit 0)', async (t) => {
  const server = https.createServer({ cert, key });
  wsEcho(server);
  const port = await listen(t, server);
  const url = `wss://127.0.0.1:${port}/`;
  const untrusted = await doctor(t, [url]);
  assert.equal(untrusted.code, 1, untrusted.out);
  assert.match(untrusted.out, /^✓ TLS: TLSv1\.3 in [\d.]+ ms$/m);
  assert.match(untrusted.out, /^✗ TLS certificate: not trusted here: DEPTH_ZERO_SELF_SIGNED_CERT \(localhost, issued by localhost, chain of 1\)\n {4}→ a self-signed \(development\) certificate: trust it with --ca FILE/m);
  assert.match(untrusted.out, /^✓ TLS expiry: valid until \S+ \((29|30) days\)$/m);
  assert.match(untrusted.out, /^! ALPN: the server chose http\/1\.1 \(offered h2, http\/1\.1\)/m);
  assert.match(untrusted.out, /^✓ HTTP\/1\.1 Upgrade: 101/m, 'the checks after TLS still run');
  assert.match(untrusted.out, /^! HTTP\/2: the server does not offer h2 in ALPN/m);
  assert.match(untrusted.out, /^A WebSocket opens, but only because the certificate check was skipped/m);

  const trusted = await doctor(t, [url, '--ca', certFile]);
  assert.equal(trusted.code, 0, trusted.out);
  assert.match(trusted.out, /^✓ TLS certificate: trusted: localhost, issued by localhost \(chain of 1\)$/m);
  assert.doesNotMatch(trusted.out, /^✗/m);

  // A name the certificate does not cover.
  const wrongName = await doctor(t, [`wss://localhost.localdomain.invalid:${port}/`, '--ca', certFile]);
  assert.equal(wrongName.code, 1);
});

/**
 * A TLS HTTP/2-only server whose extended CONNECT streams are WebSockets
 * (ours, server side: pings are answered). No 'request' listener: Node's
 * compatibility layer would take the stream's bytes.
 */
async function h2Server(t: { after(fn: () => unknown): void }, enableConnectProtocol: boolean): Promise<{ port: number; connects: string[] }> {
  const connects: string[] = [];
  const server = http2.createSecureServer({ cert, key, settings: { enableConnectProtocol } });
  server.on('stream', (stream, headers) => {
    if (headers[':method'] !== 'CONNECT') {
      stream.respond({ ':status': 404 });
      stream.end();
      return;
    }
    connects.push(`${String(headers[':protocol'])} ${String(headers[':path'])} v${String(headers['sec-websocket-version'])}`);
    stream.respond({ ':status': 200 });
    const ws = new WebSocket(null);
    ws.setSocket(stream, Buffer.alloc(0), { role: 'server' });
    ws.on('error', () => {});
  });
  server.on('sessionError', () => {});
  // Every connection, h2 or not (Node answers a TLS client without ALPN h2 with a 403 and keeps its
  // socket for a while): destroyed after the test, or the server's close would wait for them.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  t.after(() => {
    for (const socket of sockets) socket.destroy();
  });
  const port = await listen(t, server);
  return { port, connects };
}

test('doctor on an HTTP/2 server with SETTINGS_ENABLE_CONNECT_PROTOCOL: RFC 8441 advertised, extended CONNECT opens a WebSocket, pings answered; exit 0', async (t) => {
  const { port, connects } = await h2Server(t, true);
  const { code, out } = await doctor(t, [`wss://127.0.0.1:${port}/rt`, '--ca', certFile]);
  assert.equal(code, 0, out);
  assert.match(out, /^✓ ALPN: the server chose h2/m);
  assert.match(out, /^✗ HTTP\/1\.1 Upgrade: no 101: the server answered HTTP 403 Forbidden \("Missing ALPN Protocol[^\n]*\n {4}→ an HTTP\/2-only server/m);
  assert.match(out, /^✓ RFC 8441: advertised \(SETTINGS_ENABLE_CONNECT_PROTOCOL = 1/m);
  assert.match(out, /^✓ HTTP\/2 CONNECT: 200 in [\d.]+ ms: a WebSocket stream on the h2 session, no compression$/m);
  assert.match(out, /^✓ Ping \(HTTP\/2\): RTT min [\d.]+ /m);
  assert.match(out, /^WebSocket works over HTTP\/2 \(RFC 8441\)/m);
  assert.deepEqual(connects, ['websocket /rt v13']);
});

test('doctor on an HTTP/2 server without SETTINGS_ENABLE_CONNECT_PROTOCOL: ! not advertised, no CONNECT sent', async (t) => {
  const { port, connects } = await h2Server(t, false);
  const { code, out } = await doctor(t, [`wss://127.0.0.1:${port}/rt`, '--ca', certFile]);
  assert.equal(code, 1, out);
  assert.match(out, /^! RFC 8441: HTTP\/2 session in [\d.]+ ms, but SETTINGS_ENABLE_CONNECT_PROTOCOL is not advertised/m);
  assert.doesNotMatch(out, /HTTP\/2 CONNECT/);
  assert.deepEqual(connects, []);
});

test('doctor: nothing listening is ✗ TCP with what to do; --json gives the report as data', async (t) => {
  const server = http.createServer();
  const port = await listen(t, server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const { code, out } = await doctor(t, [`ws://127.0.0.1:${port}/`, '--json']);
  assert.equal(code, 1);
  const report = JSON.parse(out) as { ok: boolean; http1: boolean; lines: Array<{ mark: string; check: string; found: string; advice?: string }> };
  assert.equal(report.ok, false);
  const tcp = report.lines.find((l) => l.check === 'TCP');
  assert.equal(tcp?.mark, '✗');
  assert.match(tcp!.found, /ECONNREFUSED/);
  assert.match(tcp!.advice!, /nothing listens on 127\.0\.0\.1:\d+/);
});
