/**
 * WebSockets over HTTP/2 (RFC 8441), our client against our server on
 * loopback: node:http2 secure servers with allowHTTP1 (ALPN h2,http/1.1),
 * a self-signed certificate made by openssl at test time. Refusals are
 * checked with a raw node:http2 client (any header we like), the rest with
 * `new WebSocket(url, { http2: { pool } })`.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import tls from 'node:tls';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import { Http2SessionPool, WebSocket, WebSocketServer, type ClientOptions, type ServerOptions, type VerifyClientInfo } from '../../../src/index.js';
import { makeTestCertificate, type TestCertificate } from '../../support/certs.js';
import { connectHeaders as h2ConnectHeaders, rawH2Request, type RawH2Answer } from '../../support/http2.js';
import { closeOf, collectMessages, harness, listen, sleep, until, WAIT, waitEvent, within, type Harness } from './helpers.js';

let tc: TestCertificate;
before(() => {
  tc = makeTestCertificate();
});
after(() => tc?.remove());

interface H2Setup {
  server: http2.Http2SecureServer;
  wss: WebSocketServer;
  port: number;
  url: string;
  pool: Http2SessionPool;
  /** Server-side sessions opened so far. */
  sessions: http2.ServerHttp2Session[];
  /** Requests the server's 'request' listener (the compat layer) answered, with their HTTP version. */
  requests: string[];
}

/** An h2 server (allowHTTP1, with a 'request' listener, so the compat layer is on) and a WebSocketServer attached to it. */
async function h2Server(h: Harness, options: Partial<ServerOptions> = {}): Promise<H2Setup> {
  const requests: string[] = [];
  const server = http2.createSecureServer({ allowHTTP1: true, cert: tc.cert, key: tc.key }, (req, res) => {
    requests.push(`${req.httpVersion} ${req.method} ${req.url}`);
    res.end('plain http');
  });
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (s) => sessions.push(s));
  const wss = new WebSocketServer({ ...options, server } as ServerOptions);
  h.track(wss);
  h.defer(async () => {
    for (const s of sessions) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = await listen(server as unknown as net.Server);
  const pool = new Http2SessionPool({ idleTimeout: 200 });
  h.defer(() => pool.close());
  return { server, wss, port, url: `wss://localhost:${port}`, pool, sessions, requests };
}

function h2Options(s: H2Setup, extra: ClientOptions = {}): ClientOptions {
  return { ca: tc.cert, http2: { pool: s.pool }, ...extra };
}

function echo(wss: WebSocketServer): void {
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
}

/** A raw h2 request on a fresh session (destroyed after the test). */
async function rawRequest(h: Harness, port: number, headers: http2.OutgoingHttpHeaders): Promise<RawH2Answer> {
  const answer = await rawH2Request({ origin: `https://localhost:${port}`, ca: tc.cert }, headers);
  h.defer(() => answer.session.destroy());
  return answer;
}

function connectHeaders(port: number, extra: http2.OutgoingHttpHeaders = {}): http2.OutgoingHttpHeaders {
  return h2ConnectHeaders(`localhost:${port}`, extra);
}

test('h2: echo of text and binary; both sides see HTTP/2 (request httpVersion, upgrade response)', async (t) => {
  const h = harness(t);
  const s = await h2Server(h);
  echo(s.wss);
  const versions: string[] = [];
  s.wss.on('connection', (_ws, req) => versions.push(`${req.httpVersion} ${req.method} ${req.headers.host}`));
  const ws = h.client(s.url, undefined, h2Options(s));
  const opened = waitEvent(ws, 'open');
  const [response] = await waitEvent<[{ httpVersion: string; statusCode: number }]>(ws, 'upgrade');
  assert.equal(response.httpVersion, '2.0');
  assert.equal(response.statusCode, 200);
  await opened;
  ws.send('over h2');
  ws.send(Buffer.from([1, 2, 3]));
  const got = await collectMessages(ws, 2);
  assert.equal(String(got[0]![0]), 'over h2');
  assert.equal(got[0]![1], false);
  assert.deepEqual([...(got[1]![0] as Buffer)], [1, 2, 3]);
  assert.equal(got[1]![1], true);
  assert.deepEqual(versions, [`2.0 CONNECT localhost:${s.port}`]);
  // A message larger than the stream's flow-control window (64 KiB) and the socket's high-water mark.
  const big = Buffer.alloc(3 * 1024 * 1024, 0x61);
  ws.send(big);
  const [[back]] = await collectMessages(ws, 1, 10_000);
  assert.ok(big.equals(back as Buffer));
  const serverClosed = waitEvent<[number, Buffer]>([...s.wss.clients][0]!, 'close');
  const closed = closeOf(ws);
  ws.close(1000, 'done');
  assert.deepEqual((await serverClosed).map(String), ['1000', 'done']);
  assert.equal((await closed)[0], 1000);
  assert.equal(ws.wasClean, true);
});

test('h2: subprotocol and permessage-deflate are negotiated as over HTTP/1.1', async (t) => {
  const h = harness(t);
  const s = await h2Server(h, { perMessageDeflate: { threshold: 0 }, handleProtocols: (p) => (p.has('v2') ? 'v2' : false) });
  echo(s.wss);
  let serverExtensions = '';
  s.wss.on('connection', (ws) => (serverExtensions = ws.extensions));
  const ws = await h.open(s.url, ['v1', 'v2'], h2Options(s));
  assert.equal(ws.protocol, 'v2');
  assert.match(ws.extensions, /^permessage-deflate/);
  assert.match(serverExtensions, /^permessage-deflate/);
  const text = 'compressible '.repeat(5000);
  ws.send(text);
  const [[back]] = await collectMessages(ws, 1);
  assert.equal(String(back), text);
  ws.close();
  await closeOf(ws);
});

test('h2: many WebSockets to one origin share one h2 session; a plain GET goes on it too (compat layer)', async (t) => {
  const h = harness(t);
  const s = await h2Server(h);
  echo(s.wss);
  const sockets = await Promise.all(Array.from({ length: 8 }, () => h.open(s.url, undefined, h2Options(s))));
  assert.equal(s.sessions.length, 1, 'one TLS connection carries every WebSocket');
  assert.equal(s.pool.size, 1);
  assert.equal(s.wss.clients.size, 8);
  await Promise.all(
    sockets.map(async (ws, i) => {
      const got = collectMessages(ws, 1);
      ws.send(`n${i}`);
      assert.equal(String((await got)[0]![0]), `n${i}`);
    }),
  );
  // The application's 'request' listener still answers ordinary requests (the CONNECT did not reach it as a 405).
  const answer = await rawRequest(h, s.port, { ':method': 'GET', ':path': '/page' });
  assert.equal(answer.status, 200);
  assert.equal(answer.body, 'plain http');
  assert.deepEqual(s.requests, ['2.0 GET /page']);
  for (const ws of sockets) ws.close(1000);
  await Promise.all(sockets.map((ws) => closeOf(ws)));
});

test('h2: close codes both ways; terminate() resets the stream with CANCEL (RFC 8441 §6)', async (t) => {
  const h = harness(t);
  const s = await h2Server(h);
  const serverSide: WebSocket[] = [];
  s.wss.on('connection', (ws) => serverSide.push(ws));
  const a = await h.open(s.url, undefined, h2Options(s));
  await until(() => serverSide.length === 1, WAIT, 'server side of a');
  const aServerClosed = waitEvent<[number, Buffer]>(serverSide[0]!, 'close');
  const aClosed = closeOf(a);
  a.close(4001, 'client says bye');
  const [code, reason] = await aServerClosed;
  assert.equal(code, 4001);
  assert.equal(String(reason), 'client says bye');
  assert.equal((await aClosed)[0], 4001);

  const b = await h.open(s.url, undefined, h2Options(s));
  await until(() => serverSide.length === 2, WAIT, 'server side of b');
  const bClosed = closeOf(b);
  serverSide[1]!.close(1008, 'policy');
  assert.deepEqual(await bClosed, [1008, 'policy']);
  assert.equal(b.wasClean, true);

  const upgrade = new Promise<{ stream: http2.ClientHttp2Stream }>((resolve) => {
    const c = h.client(s.url, undefined, h2Options(s));
    c.once('upgrade', resolve);
    c.once('open', () => cOpen(c));
  });
  let cOpen!: (c: WebSocket) => void;
  const opened = new Promise<WebSocket>((resolve) => (cOpen = resolve));
  const { stream } = await upgrade;
  const c = await opened;
  await until(() => serverSide.length === 3, WAIT, 'server side of c');
  const cClosed = closeOf(c);
  serverSide[2]!.terminate();
  assert.equal((await cClosed)[0], 1006);
  assert.equal(stream.rstCode, http2.constants.NGHTTP2_CANCEL);
});

test('h2 refusals are HTTP responses on the stream: 404, 403, 426, 501, 503 + retry-after, 401; a proxy\'s sec-websocket-key is ignored', async (t) => {
  const h = harness(t);
  let verifyCalls = 0;
  const s = await h2Server(h, {
    path: '/ws',
    allowedOrigins: ['https://good.example'],
    maxConnections: 1,
    retryAfter: 7,
    verifyClient: ({ req }: VerifyClientInfo) => {
      verifyCalls++;
      return req.headers['authorization'] !== 'no';
    },
  });
  const p = s.port;
  const notFound = await rawRequest(h, p, connectHeaders(p, { ':path': '/other' }));
  assert.equal(notFound.status, 404);
  const origin = await rawRequest(h, p, connectHeaders(p, { ':path': '/ws', origin: 'https://evil.example' }));
  assert.equal(origin.status, 403);
  assert.match(origin.body, /Origin not allowed/);
  const version = await rawRequest(h, p, connectHeaders(p, { ':path': '/ws', 'sec-websocket-version': '8' }));
  assert.equal(version.status, 426);
  assert.equal(version.headers['sec-websocket-version'], '13');
  const other = await rawRequest(h, p, connectHeaders(p, { ':path': '/ws', ':protocol': 'webtransport' }));
  assert.equal(other.status, 501);
  const denied = await rawRequest(h, p, connectHeaders(p, { ':path': '/ws', authorization: 'no' }));
  assert.equal(denied.status, 401);
  // Sent by a proxy translating an HTTP/1.1 Upgrade: not used by RFC 8441, and not a reason to refuse.
  const keyed = await rawRequest(h, p, connectHeaders(p, { ':path': '/ws', origin: 'https://good.example', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' }));
  assert.equal(keyed.status, 200);
  assert.equal(keyed.headers['sec-websocket-accept'], undefined);
  await until(() => s.wss.clients.size === 1, WAIT, 'the accepted stream to count');
  const full = await rawRequest(h, p, connectHeaders(p, { ':path': '/ws' }));
  assert.equal(full.status, 503);
  assert.equal(full.headers['retry-after'], '7');
  assert.ok(verifyCalls >= 2);
  keyed.stream.close();

  // Our client gets the status and the body's start, as over HTTP/1.1.
  const ws = h.client(`${s.url}/ws`, undefined, h2Options(s, { origin: 'https://evil.example' }));
  const errors: Array<Error & { statusCode?: number; body?: string }> = [];
  ws.on('error', (e) => errors.push(e));
  assert.equal((await closeOf(ws))[0], 1006);
  assert.equal(errors[0]?.statusCode, 403);
  assert.match(errors[0]?.body ?? '', /Origin not allowed/);
});

test('h2: a classic CONNECT (no :protocol) gets 405 on a server with a request listener, and HTTP/1.1 CONNECT too', async (t) => {
  const h = harness(t);
  const s = await h2Server(h);
  const session = http2.connect(`https://localhost:${s.port}`, { ca: tc.cert });
  session.on('error', () => {});
  h.defer(() => session.destroy());
  const stream = session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' });
  stream.on('error', () => {});
  const [answer] = await waitEvent<[http2.IncomingHttpHeaders]>(stream, 'response');
  assert.equal(answer[':status'], 405);
  // HTTP/1.1 CONNECT on the same port (allowHTTP1).
  const status = await new Promise<number>((resolve, reject) => {
    const req = https.request({ host: 'localhost', port: s.port, method: 'CONNECT', path: 'example.com:443', ca: tc.cert });
    req.on('connect', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on('response', (res) => resolve(res.statusCode ?? 0));
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 405);
});

test('h2: enableConnectProtocol is advertised only while a WebSocketServer is attached', async (t) => {
  const h = harness(t);
  const server = http2.createSecureServer({ allowHTTP1: true, cert: tc.cert, key: tc.key }, (_req, res) => res.end());
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (x) => sessions.push(x));
  h.defer(async () => {
    for (const x of sessions) x.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = await listen(server as unknown as net.Server);
  const settingsOfNewSession = async (): Promise<boolean | undefined> => {
    const session = http2.connect(`https://localhost:${port}`, { ca: tc.cert });
    const [settings] = await waitEvent<[http2.Settings]>(session, 'remoteSettings');
    session.destroy();
    return settings.enableConnectProtocol;
  };
  assert.notEqual(await settingsOfNewSession(), true);
  const wss = new WebSocketServer({ server });
  assert.equal(await settingsOfNewSession(), true);
  await new Promise<void>((resolve) => wss.close(() => resolve()));
  assert.notEqual(await settingsOfNewSession(), true);
});

test('h2 client falls back to the HTTP/1.1 Upgrade: an HTTPS server without h2, and an h2 server without the setting', async (t) => {
  const h = harness(t);
  const pool = new Http2SessionPool({ idleTimeout: 200 });
  h.defer(() => pool.close());
  // 1. HTTP/1.1 only (ALPN http/1.1).
  const plain = https.createServer({ cert: tc.cert, key: tc.key });
  h.trackServer(plain);
  const wss1 = new WebSocketServer({ server: plain });
  h.track(wss1);
  echo(wss1);
  const port1 = await listen(plain);
  const ws1 = h.client(`wss://localhost:${port1}`, undefined, { ca: tc.cert, http2: { pool } });
  const open1 = waitEvent(ws1, 'open');
  const [r1] = await waitEvent<[{ httpVersion: string }]>(ws1, 'upgrade');
  assert.equal(r1.httpVersion, '1.1');
  await open1;
  const got = collectMessages(ws1, 1);
  ws1.send('via 1.1');
  assert.equal(String((await got)[0]![0]), 'via 1.1');

  // 2. h2 server whose WebSocket endpoint takes HTTP/1.1 upgrades only (noServer): no enableConnectProtocol.
  const h2only = http2.createSecureServer({ allowHTTP1: true, cert: tc.cert, key: tc.key }, (_req, res) => res.end());
  const sessions: http2.ServerHttp2Session[] = [];
  h2only.on('session', (x) => sessions.push(x));
  const wss2 = new WebSocketServer({ noServer: true });
  h.track(wss2);
  echo(wss2);
  h2only.on('upgrade', (req, socket, head) => wss2.handleUpgrade(req, socket, head, (ws) => wss2.emit('connection', ws, req)));
  h.defer(async () => {
    for (const x of sessions) x.destroy();
    await new Promise<void>((resolve) => h2only.close(() => resolve()));
  });
  const port2 = await listen(h2only as unknown as net.Server);
  const ws2 = h.client(`wss://localhost:${port2}`, undefined, { ca: tc.cert, http2: { pool } });
  const open2 = waitEvent(ws2, 'open');
  const [r2] = await waitEvent<[{ httpVersion: string }]>(ws2, 'upgrade');
  assert.equal(r2.httpVersion, '1.1');
  await open2;
  assert.equal(sessions.length, 1, 'the h2 session that told us "no" (then the HTTP/1.1 connection, which is no session)');
  ws1.close();
  ws2.close();
  await Promise.all([closeOf(ws1), closeOf(ws2)]);
});

test('h2: one slow WebSocket does not stall its siblings on the same session (per-stream flow control), both directions', async (t) => {
  const h = harness(t);
  const s = await h2Server(h);
  const serverSide = new Map<string, WebSocket>();
  s.wss.on('connection', (ws, req) => serverSide.set(new URL(req.url!, 'https://x').searchParams.get('n')!, ws));
  const slow = await h.open(`${s.url}/?n=slow`, undefined, h2Options(s));
  const fast = await h.open(`${s.url}/?n=fast`, undefined, h2Options(s));
  assert.equal(s.sessions.length, 1);
  await until(() => serverSide.size === 2, WAIT, 'both server sides');

  // Server → client: the slow client stops reading; the server queues far more than every window.
  slow.pause();
  const chunk = Buffer.alloc(64 * 1024, 1);
  const slowServer = serverSide.get('slow')!;
  for (let i = 0; i < 64; i++) slowServer.send(chunk); // 4 MiB
  const fastServer = serverSide.get('fast')!;
  const fastGot = collectMessages(fast, 200, 10_000);
  for (let i = 0; i < 200; i++) fastServer.send(chunk.subarray(0, 1024));
  assert.equal((await fastGot).length, 200, 'the sibling got everything while the slow one read nothing');
  assert.ok(slowServer.bufferedAmount > 1024 * 1024, `the slow stream's data waits on its own window (${slowServer.bufferedAmount} bytes queued)`);

  // Client → server: the server stops reading the slow stream; the client floods it; the sibling still echoes.
  slowServer.pause();
  for (let i = 0; i < 64; i++) slow.send(chunk);
  fastServer.on('message', (d, b) => fastServer.send(d, { binary: b }));
  const echoed = collectMessages(fast, 50, 10_000);
  for (let i = 0; i < 50; i++) fast.send(`ping ${i}`);
  const back = await echoed;
  assert.equal(String(back[49]![0]), 'ping 49');
  assert.ok(slow.bufferedAmount > 1024 * 1024, `the client's slow stream waits (${slow.bufferedAmount} bytes queued)`);

  // Everything the slow pair queued arrives once both read again.
  let received = 0;
  slow.on('message', (d) => (received += (d as Buffer).length));
  slow.resume();
  await until(() => received === 64 * chunk.length, 20_000, 'the slow client to drain');
  let serverReceived = 0;
  slowServer.on('message', (d) => (serverReceived += (d as Buffer).length));
  slowServer.resume();
  await until(() => serverReceived === 64 * chunk.length, 20_000, 'the slow server side to drain');
});

test('h2: WebSocketServer#close sends 1001 on every stream, then GOAWAY on their session', async (t) => {
  const h = harness(t);
  const s = await h2Server(h);
  const sockets = await Promise.all(Array.from({ length: 3 }, () => h.open(s.url, undefined, h2Options(s))));
  assert.equal(s.sessions.length, 1);
  const goaway = waitEvent(s.sessions[0]!, 'close', 10_000);
  const closes = sockets.map((ws) => closeOf(ws));
  const closed = new Promise<void>((resolve) => s.wss.close(() => resolve()));
  for (const c of await Promise.all(closes)) assert.equal(c[0], 1001);
  await closed;
  await goaway; // the session closes once its streams are done: GOAWAY, then the connection ends
  assert.ok(s.sessions[0]!.closed || s.sessions[0]!.destroyed);
});

test('h2: limits and heartbeats are the same code path (maxPayload 1009, server pings answered)', async (t) => {
  const h = harness(t);
  const s = await h2Server(h, { maxPayload: 1000, heartbeat: { interval: 40, timeout: 2000 } });
  echo(s.wss);
  const ws = await h.open(s.url, undefined, h2Options(s));
  let pings = 0;
  ws.on('ping', () => pings++);
  await until(() => pings >= 3, WAIT, 'three heartbeat pings');
  assert.equal(ws.readyState, WebSocket.OPEN);
  const closed = closeOf(ws);
  ws.send(Buffer.alloc(2000));
  assert.equal((await closed)[0], 1009);
});

test('h2: handleHttp2Stream from the application\'s own stream listener (noServer)', async (t) => {
  const h = harness(t);
  const server = http2.createSecureServer({ cert: tc.cert, key: tc.key, settings: { enableConnectProtocol: true } });
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (x) => sessions.push(x));
  const wss = new WebSocketServer({ noServer: true });
  h.track(wss);
  server.on('stream', (stream, headers) => {
    if (headers[':method'] === 'CONNECT') wss.handleHttp2Stream(stream, headers, (ws) => ws.send('hello from noServer'));
    else stream.respond({ ':status': 404 }, { endStream: true });
  });
  h.defer(async () => {
    for (const x of sessions) x.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = await listen(server as unknown as net.Server);
  const pool = new Http2SessionPool({ idleTimeout: 200 });
  h.defer(() => pool.close());
  const ws = h.client(`wss://localhost:${port}/`, undefined, { ca: tc.cert, http2: { pool } });
  const [msg] = await waitEvent<[Buffer]>(ws, 'message');
  assert.equal(String(msg), 'hello from noServer');
  ws.close();
  await closeOf(ws);
  await sleep(10);
});

test('h2 with createConnection (a proxy dialer): the session is dialled through it, asked for h2 in ALPN as https.request would ask; a dialer that fails fails the handshake with its error', async (t) => {
  const h = harness(t);
  const s = await h2Server(h);
  echo(s.wss);
  const calls: Array<{ host: unknown; port: unknown; alpn: unknown; secure: boolean }> = [];
  const dialer = (options: Record<string, unknown>, callback: (err: Error | null, socket?: net.Socket) => void): undefined => {
    calls.push({ host: options.host, port: options.port, alpn: options.ALPNProtocols, secure: options._defaultAgent === https.globalAgent });
    // Asynchronously, as a tunnel is: the session must wait for it.
    setImmediate(() => callback(null, tls.connect({ ...(options as tls.ConnectionOptions), servername: 'localhost' })));
    return undefined;
  };
  const ws = h.client(s.url, undefined, h2Options(s, { createConnection: dialer as unknown as ClientOptions['createConnection'] }));
  const [response] = await waitEvent<[{ httpVersion: string }]>(ws, 'upgrade');
  assert.equal(response.httpVersion, '2.0');
  ws.send('dialled');
  assert.equal(String((await collectMessages(ws, 1))[0]![0]), 'dialled');
  assert.deepEqual(calls, [{ host: 'localhost', port: s.port, alpn: ['h2'], secure: true }]);
  assert.equal(s.sessions.length, 1);

  const refused = h.client(s.url, undefined, {
    ca: tc.cert,
    http2: { pool: s.pool },
    createConnection: ((_o: unknown, callback: (err: Error) => void) => void setImmediate(() => callback(new Error('proxy says no')))) as unknown as ClientOptions['createConnection'],
  });
  const [err] = await waitEvent<[Error]>(refused, 'error');
  assert.equal(err.message, 'proxy says no');
  assert.equal(s.sessions.length, 1, 'no session made around the dialer');
});
