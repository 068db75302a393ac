/**
 * The opening handshake on real sockets: raw HTTP requests against our
 * server (status line and headers read back), our client against raw
 * servers that answer wrongly, and the server options that act before the
 * upgrade (origins, limits, path, verifyClient, protocols, timeouts, the
 * `server` and `noServer` modes).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { HandshakeError, WebSocket, WebSocketServer } from '../../../src/index.js';
import {
  acceptKey,
  harness,
  listen,
  upgradeRequest,
  waitEvent,
  within,
  WAIT,
  type Harness,
  type HttpHead,
  type RawClient,
} from './helpers.js';

/** Send a raw request and read the response head. */
async function ask(h: Harness, port: number, request: string): Promise<{ raw: RawClient; head: HttpHead }> {
  const raw = await h.raw(port);
  raw.write(request);
  return { raw, head: await raw.readHead() };
}

/** The response body, read with its Content-Length. */
async function body(raw: RawClient, head: HttpHead): Promise<string> {
  return (await raw.readBytes(Number(head.headers['content-length']))).toString();
}

// Timers and waits that keep real time while a test mocks setTimeout (references taken before any mock).
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

function realSleep(ms: number): Promise<void> {
  return new Promise((resolve) => realSetTimeout(resolve, ms));
}

function realWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = realSetTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => realClearTimeout(timer));
}

async function realUntil(predicate: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT} ms waiting for ${what}`);
    await realSleep(5);
  }
}

/** The delays of the setTimeout calls made from now on (call after `t.mock.timers.enable`; undone after the test). */
function spySetTimeout(t: TestContext): number[] {
  const delays: number[] = [];
  const mocked = globalThis.setTimeout;
  globalThis.setTimeout = ((fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    delays.push(ms ?? 0);
    return mocked(fn, ms, ...args);
  }) as typeof setTimeout;
  t.after(() => {
    globalThis.setTimeout = mocked;
  });
  return delays;
}

/** Follow a promise without awaiting it. */
function track<T>(promise: Promise<T>): { settled: boolean; promise: Promise<T> } {
  const out = { settled: false, promise };
  promise.then(
    () => (out.settled = true),
    () => (out.settled = true),
  );
  return out;
}

/** A client's failure: the error it emitted and its close code. */
async function clientFailure(ws: WebSocket): Promise<{ err: Error & { code?: string }; code: number }> {
  const errored = waitEvent<[Error]>(ws, 'error');
  const closed = waitEvent<[number]>(ws, 'close');
  const [err] = await errored;
  const [code] = await closed;
  return { err, code };
}

/**
 * A raw HTTP server that reads one upgrade request and answers with
 * `respond(key)` (a complete response head), then keeps the socket open.
 */
async function fakeServer(h: Harness, respond: ((key: string) => string) | null): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    let buf = '';
    socket.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      if (respond === null || !buf.includes('\r\n\r\n')) return;
      const key = /sec-websocket-key:\s*(\S+)/i.exec(buf)?.[1] ?? '';
      socket.write(respond(key));
      buf = '';
    });
  });
  h.defer(() => {
    for (const s of sockets) s.destroy();
  });
  h.trackServer(server);
  return listen(server);
}

// ---------------------------------------------------------------------------
// Server: request validation

test('a valid request gets 101 with the accept key', async (t) => {
  const h = harness(t);
  const { port } = await h.server();
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const { head } = await ask(h, port, upgradeRequest({ key }));
  assert.equal(head.status, 101);
  assert.equal(head.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  assert.equal(head.headers['upgrade']?.toLowerCase(), 'websocket');
  assert.equal(head.headers['connection']?.toLowerCase(), 'upgrade');
});

test('400 for a missing Sec-WebSocket-Key', async (t) => {
  const h = harness(t);
  const { port } = await h.server();
  const { raw, head } = await ask(h, port, upgradeRequest({ headers: { 'Sec-WebSocket-Key': null } }));
  assert.equal(head.status, 400);
  assert.equal(head.headers['connection'], 'close');
  assert.match(await body(raw, head), /Sec-WebSocket-Key/i);
  await raw.waitClosed();
});

test('400 for a Sec-WebSocket-Key that is not 16 bytes of base64', async (t) => {
  const h = harness(t);
  const { port } = await h.server();
  for (const key of [Buffer.alloc(15).toString('base64'), Buffer.alloc(17).toString('base64'), 'not base64 at all!!!!!==']) {
    const { raw, head } = await ask(h, port, upgradeRequest({ key }));
    assert.equal(head.status, 400, `key ${key}`);
    await raw.waitClosed();
  }
});

test('400 for an Upgrade header that is not websocket', async (t) => {
  const h = harness(t);
  const { port } = await h.server();
  const { raw, head } = await ask(h, port, upgradeRequest({ headers: { Upgrade: 'h2c' } }));
  assert.equal(head.status, 400);
  assert.match(await body(raw, head), /Upgrade/);
});

test('no Upgrade or no Connection: upgrade header: not an upgrade for node:http, answered 426 as a plain request', async (t) => {
  // Node's HTTP parser only emits 'upgrade' when both headers are there; the
  // server created with `port` answers other requests 426 (as `ws` does).
  const h = harness(t);
  const { port, wss } = await h.server();
  let connections = 0;
  wss.on('connection', () => connections++);
  const variants: Array<Record<string, string | null>> = [{ Upgrade: null }, { Connection: null }, { Connection: 'keep-alive' }];
  for (const headers of variants) {
    const { head } = await ask(h, port, upgradeRequest({ headers }));
    assert.equal(head.status, 426, JSON.stringify(headers));
    assert.equal(head.headers['sec-websocket-accept'], undefined);
  }
  assert.equal(connections, 0);
});

test('405 with Allow: GET for a POST upgrade request', async (t) => {
  // `ws` answers 405 too; a method other than GET is refused before anything else.
  const h = harness(t);
  const { port } = await h.server();
  const { head } = await ask(h, port, upgradeRequest({ method: 'POST' }));
  assert.equal(head.status, 405);
  assert.equal(head.headers['allow'], 'GET');
});

test('400 for an HTTP/1.0 upgrade request', async (t) => {
  const h = harness(t);
  const { port } = await h.server();
  const { raw, head } = await ask(h, port, upgradeRequest({ version: '1.0' }));
  assert.equal(head.status, 400);
  assert.match(await body(raw, head), /HTTP/);
});

test('426 with Sec-WebSocket-Version: 13 for version 8', async (t) => {
  const h = harness(t);
  const { port } = await h.server();
  const { head } = await ask(h, port, upgradeRequest({ headers: { 'Sec-WebSocket-Version': '8' } }));
  assert.equal(head.status, 426);
  assert.equal(head.headers['sec-websocket-version'], '13');
});

test('a Connection header with a list (keep-alive, Upgrade) is accepted', async (t) => {
  const h = harness(t);
  const { port, wss } = await h.server();
  const conn = waitEvent(wss, 'connection');
  const { head } = await ask(h, port, upgradeRequest({ headers: { Connection: 'keep-alive, Upgrade', Upgrade: 'WebSocket' } }));
  assert.equal(head.status, 101);
  await conn;
});

// ---------------------------------------------------------------------------
// Server: origins, limits, path, verifyClient

test('allowedOrigins: 403 for another origin, 101 for an allowed one in any case and without Origin', async (t) => {
  const h = harness(t);
  const { port, url, wss } = await h.server({ allowedOrigins: ['https://app.example.com'] });
  let connections = 0;
  wss.on('connection', () => connections++);

  const evil = await ask(h, port, upgradeRequest({ headers: { Origin: 'https://evil.example.com' } }));
  assert.equal(evil.head.status, 403);
  await evil.raw.waitClosed();
  assert.equal(connections, 0);

  const ok = await ask(h, port, upgradeRequest({ headers: { Origin: 'HTTPS://App.Example.COM' } }));
  assert.equal(ok.head.status, 101);
  const none = await ask(h, port, upgradeRequest());
  assert.equal(none.head.status, 101);

  // Our client with an origin option.
  const client = await h.open(url, { origin: 'https://app.example.com' });
  assert.equal(client.readyState, WebSocket.OPEN);
  const refused = h.client(url, { origin: 'https://other.example.com' });
  const { err, code } = await clientFailure(refused);
  assert.match(err.message, /403/);
  assert.equal(code, 1006);
});

test('allowedOrigins as a predicate', async (t) => {
  const h = harness(t);
  const { port } = await h.server({ allowedOrigins: (origin) => origin?.endsWith('.trusted.test') === true });
  assert.equal((await ask(h, port, upgradeRequest({ headers: { Origin: 'https://a.trusted.test' } }))).head.status, 101);
  assert.equal((await ask(h, port, upgradeRequest({ headers: { Origin: 'https://a.untrusted.test' } }))).head.status, 403);
  // The predicate decides for requests without Origin too.
  assert.equal((await ask(h, port, upgradeRequest())).head.status, 403);
});

test('allowedOrigins: entries and Origin headers compare normalized (host case, default port), as in the realtime server', async (t) => {
  const h = harness(t);
  const { port } = await h.server({ allowedOrigins: ['https://EXAMPLE.com:443', 'http://localhost:3000'] });
  const status = async (headers: Record<string, string>) => (await ask(h, port, upgradeRequest({ headers }))).head.status;
  assert.equal(await status({ Origin: 'https://example.com' }), 101);
  assert.equal(await status({ Origin: 'https://Example.COM:443' }), 101);
  assert.equal(await status({ Origin: 'http://LOCALHOST:3000' }), 101);
  // Another scheme or port is another origin.
  assert.equal(await status({ Origin: 'http://example.com' }), 403);
  assert.equal(await status({ Origin: 'https://example.com:8443' }), 403);
  assert.equal(await status({ Origin: 'http://localhost:3001' }), 403);
  // `null` (sandboxed frames, file: pages) and garbage pass only with '*'.
  assert.equal(await status({ Origin: 'null' }), 403);
  assert.equal(await status({ Origin: 'not an origin' }), 403);
});

test("allowedOrigins: the server's own origin (per Host) passes unlisted; '*' allows every origin", async (t) => {
  const h = harness(t);
  const { port } = await h.server({ allowedOrigins: [] });
  const status = async (p: number, headers: Record<string, string>) => (await ask(h, p, upgradeRequest({ headers }))).head.status;
  assert.equal(await status(port, { Host: 'api.example.com', Origin: 'https://API.example.com' }), 101);
  assert.equal(await status(port, { Host: 'api.example.com:8080', Origin: 'http://api.example.com:8080' }), 101);
  assert.equal(await status(port, { Host: 'api.example.com:8080', Origin: 'http://api.example.com:8081' }), 403);
  assert.equal(await status(port, { Host: 'api.example.com', Origin: 'https://app.example.com' }), 403);
  assert.equal(await status(port, {}), 101);

  const any = await h.server({ allowedOrigins: ['*'] });
  assert.equal(await status(any.port, { Origin: 'https://anyone.example' }), 101);
  assert.equal(await status(any.port, { Origin: 'null' }), 101);
});

test('allowedOrigins: an entry that is not an http(s) origin throws at construction', () => {
  for (const entry of ['app.example.com', 'https://app.example.com/', 'https://app.example.com/path', 'ws://app.example.com', 'null']) {
    assert.throws(() => new WebSocketServer({ noServer: true, allowedOrigins: [entry] }), TypeError, entry);
  }
});

test('maxConnections: 2 → the third gets 503 with Retry-After; after one closes a new one is accepted', async (t) => {
  const h = harness(t);
  const { port, url, wss } = await h.server({ maxConnections: 2, retryAfter: 7 });
  const serverSide: WebSocket[] = [];
  wss.on('connection', (ws) => serverSide.push(ws));
  const a = await h.open(url);
  await h.open(url);

  const third = await ask(h, port, upgradeRequest());
  assert.equal(third.head.status, 503);
  assert.equal(third.head.headers['retry-after'], '7');
  await third.raw.waitClosed();

  const refused = h.client(url);
  const { code } = await clientFailure(refused);
  assert.equal(code, 1006);

  const serverClosed = waitEvent(serverSide[0]!, 'close');
  a.close();
  await serverClosed;
  const again = await h.open(url);
  assert.equal(again.readyState, WebSocket.OPEN);
  assert.equal(wss.clients.size, 2);
});

test('path: only the configured path is upgraded', async (t) => {
  const h = harness(t);
  const { port, url } = await h.server({ path: '/ws' });
  assert.equal((await ask(h, port, upgradeRequest({ path: '/other' }))).head.status, 400);
  assert.equal((await ask(h, port, upgradeRequest({ path: '/ws/deeper' }))).head.status, 400);
  assert.equal((await ask(h, port, upgradeRequest({ path: '/ws?x=1' }))).head.status, 101);
  const ws = await h.open(`${url}/ws`);
  assert.equal(ws.readyState, WebSocket.OPEN);
  const { code } = await clientFailure(h.client(`${url}/nope`));
  assert.equal(code, 1006);
});

test('verifyClient sync: false → 401, true → 101; it sees origin, secure and req', async (t) => {
  const h = harness(t);
  const seen: Array<{ origin: string | undefined; secure: boolean; url: string | undefined }> = [];
  const { port } = await h.server({
    verifyClient: (info: { origin: string | undefined; secure: boolean; req: http.IncomingMessage }) => {
      seen.push({ origin: info.origin, secure: info.secure, url: info.req.url });
      return info.req.url === '/ok';
    },
  });
  const refused = await ask(h, port, upgradeRequest({ path: '/no', headers: { Origin: 'https://o.test' } }));
  assert.equal(refused.head.status, 401);
  await refused.raw.waitClosed();
  assert.equal((await ask(h, port, upgradeRequest({ path: '/ok' }))).head.status, 101);
  assert.deepEqual(seen, [
    { origin: 'https://o.test', secure: false, url: '/no' },
    { origin: undefined, secure: false, url: '/ok' },
  ]);
});

test('verifyClient async: code 403, custom message and headers', async (t) => {
  const h = harness(t);
  const { port, url } = await h.server({
    verifyClient: (info: { req: http.IncomingMessage }, cb: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void) => {
      setTimeout(() => {
        if (info.req.headers['authorization'] === 'Bearer good') cb(true);
        else cb(false, 403, 'Token refused', { 'X-Reason': 'bad-token' });
      }, 10);
    },
  });
  const { raw, head } = await ask(h, port, upgradeRequest({ headers: { Authorization: 'Bearer bad' } }));
  assert.equal(head.status, 403);
  assert.equal(head.headers['x-reason'], 'bad-token');
  assert.equal(await body(raw, head), 'Token refused');
  await raw.waitClosed();
  const ws = await h.open(url, { headers: { Authorization: 'Bearer good' } });
  assert.equal(ws.readyState, WebSocket.OPEN);
});

test('verifyClient async without a code → 401', async (t) => {
  const h = harness(t);
  const { port } = await h.server({
    verifyClient: (_info: unknown, cb: (ok: boolean) => void) => setImmediate(cb, false),
  });
  assert.equal((await ask(h, port, upgradeRequest())).head.status, 401);
});

// ---------------------------------------------------------------------------
// Subprotocols

test('handleProtocols chooses among the offered protocols', async (t) => {
  const h = harness(t);
  let offered: string[] = [];
  const { url } = await h.server({
    handleProtocols: (protocols) => {
      offered = [...protocols];
      return protocols.has('b') ? 'b' : false;
    },
  });
  const ws = await h.open(url, ['a', 'b', 'c']);
  assert.deepEqual(offered, ['a', 'b', 'c']);
  assert.equal(ws.protocol, 'b');
  // `false`: no protocol selected; the connection still opens (RFC 6455, browsers).
  const none = await h.open(url, ['x']);
  assert.equal(none.protocol, '');
});

test('handleProtocols returning a protocol that was not offered selects none', async (t) => {
  const h = harness(t);
  const { url } = await h.server({ handleProtocols: () => 'not-offered' });
  const ws = await h.open(url, ['a']);
  assert.equal(ws.protocol, '');
});

test('by default the server picks the first protocol offered', async (t) => {
  const h = harness(t);
  const { url } = await h.server();
  const ws = await h.open(url, ['first', 'second']);
  assert.equal(ws.protocol, 'first');
  const single = await h.open(url, 'only');
  assert.equal(single.protocol, 'only');
});

test('the client refuses invalid or duplicated protocols synchronously', async (t) => {
  const h = harness(t);
  const { url } = await h.server();
  assert.throws(() => new WebSocket(url, ['a', 'a']), SyntaxError);
  assert.throws(() => new WebSocket(url, ['has space']), SyntaxError);
  assert.throws(() => new WebSocket('ftp://127.0.0.1/'), SyntaxError);
  assert.throws(() => new WebSocket(`${url}/#frag`), SyntaxError);
  assert.throws(() => new WebSocket('not a url'), SyntaxError);
});

// ---------------------------------------------------------------------------
// Client: wrong answers

test('client fails (error + 1006) when the server selects a protocol it did not offer', async (t) => {
  const h = harness(t);
  const port = await fakeServer(
    h,
    (key) =>
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\nSec-WebSocket-Protocol: evil\r\n\r\n`,
  );
  const ws = h.client(`ws://127.0.0.1:${port}`, ['good']);
  let opened = false;
  ws.on('open', () => (opened = true));
  const { err, code } = await clientFailure(ws);
  assert.equal(err.code, 'WS_ERR_UNEXPECTED_PROTOCOL');
  assert.equal(code, 1006);
  assert.equal(opened, false);
  assert.equal(ws.readyState, WebSocket.CLOSED);
});

test('client fails (error + 1006) on a wrong Sec-WebSocket-Accept', async (t) => {
  const h = harness(t);
  const port = await fakeServer(
    h,
    () => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey('wrong')}\r\n\r\n`,
  );
  const ws = h.client(`ws://127.0.0.1:${port}`);
  const { err, code } = await clientFailure(ws);
  assert.equal(err.code, 'WS_ERR_INVALID_ACCEPT');
  assert.equal(code, 1006);
});

test('client fails on an extension it did not offer', async (t) => {
  const h = harness(t);
  const port = await fakeServer(
    h,
    (key) =>
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`,
  );
  const { err, code } = await clientFailure(h.client(`ws://127.0.0.1:${port}`, { perMessageDeflate: false }));
  assert.equal(err.code, 'WS_ERR_UNEXPECTED_EXTENSION');
  assert.equal(code, 1006);
});

test("'unexpected-response' gets the request and the 403 response; close 1006 follows", async (t) => {
  const h = harness(t);
  const { url } = await h.server({ verifyClient: (_info: unknown, cb: (ok: boolean, code?: number) => void) => cb(false, 403) });
  const ws = h.client(url);
  let errors = 0;
  ws.on('error', () => errors++);
  const unexpected = waitEvent<[http.ClientRequest, http.IncomingMessage]>(ws, 'unexpected-response');
  const closed = waitEvent<[number]>(ws, 'close');
  const [req, res] = await unexpected;
  assert.ok(req instanceof http.ClientRequest);
  assert.equal(res.statusCode, 403);
  res.resume();
  req.destroy();
  assert.equal((await closed)[0], 1006);
  assert.equal(errors, 0, "no 'error' when 'unexpected-response' is handled");
});

test("without an 'unexpected-response' listener a 403 is an error", async (t) => {
  const h = harness(t);
  const { url } = await h.server({ verifyClient: () => false });
  const { err, code } = await clientFailure(h.client(url));
  assert.equal(err.code, 'WS_ERR_UNEXPECTED_STATUS');
  assert.match(err.message, /401/);
  assert.equal((err as HandshakeError).statusCode, 401);
  assert.equal(code, 1006);
});

test('a refused handshake: the error carries the status and the start of the body (at most 1 KiB, waiting at most ~1 s for it)', async (t) => {
  const h = harness(t);
  const refusal = (status: string, body: string, length = Buffer.byteLength(body)) => () =>
    `HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${length}\r\n\r\n${body}`;

  const small = await fakeServer(h, refusal('400 Bad Request', 'unsupported subprotocol; this server speaks x\n'));
  const a = await clientFailure(h.client(`ws://127.0.0.1:${small}`));
  assert.equal(a.err.code, 'WS_ERR_UNEXPECTED_STATUS');
  assert.equal((a.err as HandshakeError).statusCode, 400);
  assert.equal((a.err as HandshakeError).body, 'unsupported subprotocol; this server speaks x\n');
  assert.equal(a.code, 1006);

  // A big body: the first 1 KiB, without waiting for the rest (the server keeps the socket open), nor for the
  // ~1 s timer: the timers are mocked and never advanced here, so only the 1 KiB can end the wait.
  const big = await fakeServer(h, refusal('503 Service Unavailable', 'é'.repeat(1500), 100_000));
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const b = await realWithin(clientFailure(h.client(`ws://127.0.0.1:${big}`)), WAIT, 'the refusal once 1 KiB of the body is in');
  assert.equal((b.err as HandshakeError).statusCode, 503);
  assert.ok(Buffer.byteLength((b.err as HandshakeError).body!) <= 1024 + 2, 'bounded');
  assert.match((b.err as HandshakeError).body!, /^(é){400,}/);

  // A body that never ends: what came before the timer (1000 ms on the mocked clock) fired, and nothing before it did.
  const stalled = await fakeServer(h, refusal('429 Too Many Requests', 'slow down', 500));
  const delays = spySetTimeout(t);
  const c = track(clientFailure(h.client(`ws://127.0.0.1:${stalled}`)));
  await realUntil(() => delays.length > 0, 'the client to read the status and start waiting for the body');
  await realSleep(50); // the body's first chunk, 'slow down', arrives with the head
  t.mock.timers.tick(999);
  await realSleep(50);
  assert.equal(c.settled, false, 'refused before the timer fired');
  t.mock.timers.tick(1);
  const { err } = await realWithin(c.promise, WAIT, 'the refusal when the timer fires');
  assert.equal((err as HandshakeError).statusCode, 429);
  assert.equal((err as HandshakeError).body, 'slow down');
});

test('client handshakeTimeout against a server that never answers', async (t) => {
  const h = harness(t);
  const port = await fakeServer(h, null);
  const started = Date.now();
  const ws = h.client(`ws://127.0.0.1:${port}`, { handshakeTimeout: 200 });
  const { err, code } = await clientFailure(ws);
  assert.equal(err.code, 'WS_ERR_HANDSHAKE_TIMEOUT');
  assert.equal(code, 1006);
  assert.ok(Date.now() - started >= 150, 'not before the timeout');
});

test('a client refused at TCP level (nothing listening) gets error + 1006', async (t) => {
  const h = harness(t);
  const server = net.createServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const { err, code } = await clientFailure(h.client(`ws://127.0.0.1:${port}`));
  assert.equal((err as Error & { code?: string }).code, 'ECONNREFUSED');
  assert.equal(code, 1006);
});

test('close() while CONNECTING aborts the handshake: error + 1006, never open', async (t) => {
  const h = harness(t);
  const port = await fakeServer(h, null);
  const ws = h.client(`ws://127.0.0.1:${port}`);
  let opened = false;
  ws.on('open', () => (opened = true));
  const failure = clientFailure(ws);
  ws.close();
  const { code } = await failure;
  assert.equal(code, 1006);
  assert.equal(opened, false);
});

// ---------------------------------------------------------------------------
// Server: timeouts, headers event, noServer, shared server

test('server handshakeTimeout: a client that sends half a request head is disconnected', async (t) => {
  const h = harness(t);
  const { port } = await h.server({ handshakeTimeout: 300 });
  const raw = await h.raw(port);
  raw.write('GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n');
  // Node checks the headers timeout every connectionsCheckingInterval (150 ms here).
  await raw.waitClosed(3000);
});

test("the 'headers' event can add headers to the 101 response", async (t) => {
  const h = harness(t);
  const { port, wss } = await h.server();
  wss.on('headers', (headers: string[], req: http.IncomingMessage) => {
    assert.ok(headers.length === 0 || headers.every((l) => typeof l === 'string'));
    headers.push('Set-Cookie: session=abc', `X-Path: ${req.url}`);
  });
  const { head } = await ask(h, port, upgradeRequest({ path: '/p' }));
  assert.equal(head.status, 101);
  assert.equal(head.headers['set-cookie'], 'session=abc');
  assert.equal(head.headers['x-path'], '/p');
});

test("the client's 'upgrade' event carries the 101 response", async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  wss.on('headers', (headers: string[]) => headers.push('X-Hello: world'));
  const ws = h.client(url);
  const events: string[] = [];
  ws.on('upgrade', () => events.push('upgrade'));
  const opened = waitEvent(ws, 'open');
  const [res] = await waitEvent<[http.IncomingMessage]>(ws, 'upgrade');
  assert.equal(res.statusCode, 101);
  assert.equal(res.headers['x-hello'], 'world');
  await opened;
  events.push('open');
  assert.deepEqual(events, ['upgrade', 'open']);
});

test("close() from the client's 'upgrade' listener: the socket never opens; one close (1006), the error says why", async (t) => {
  const h = harness(t);
  const { url } = await h.server();
  const ws = h.client(url);
  const events: string[] = [];
  ws.on('upgrade', () => {
    events.push('upgrade');
    ws.close();
  });
  ws.on('open', () => events.push('open'));
  ws.on('error', (err: Error) => events.push(`error ${err.message}`));
  const [code] = await waitEvent<[number]>(ws, 'close');
  events.push(`close ${code}`);
  // Another turn or two: an 'open' after the close would show up here.
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(events, ['upgrade', 'error WebSocket was closed before the connection was established', 'close 1006']);
  assert.equal(ws.readyState, WebSocket.CLOSED);
});

test('noServer + handleUpgrade from our own http server', async (t) => {
  const h = harness(t);
  const wss = new WebSocketServer({ noServer: true });
  h.track(wss);
  assert.throws(() => wss.address(), /noServer/);
  const server = http.createServer((_req, res) => res.end('plain http'));
  h.trackServer(server);
  server.on('upgrade', (req, socket, head) => {
    if (req.url !== '/socket') {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws, request) => {
      assert.equal(request, req);
      wss.emit('connection', ws, request);
    });
  });
  wss.on('connection', (ws) => ws.on('message', (d, b) => ws.send(d, { binary: b })));
  const port = await listen(server);

  const ws = await h.open(`ws://127.0.0.1:${port}/socket`);
  const echoed = waitEvent<[Buffer]>(ws, 'message');
  ws.send('via handleUpgrade');
  assert.equal(String((await echoed)[0]), 'via handleUpgrade');
  assert.equal(wss.clients.size, 1);

  const { code } = await clientFailure(h.client(`ws://127.0.0.1:${port}/elsewhere`));
  assert.equal(code, 1006);
});

test('two WebSocketServers with different paths share one http server', async (t) => {
  const h = harness(t);
  const server = http.createServer();
  h.trackServer(server);
  const chat = new WebSocketServer({ server, path: '/chat' });
  const feed = new WebSocketServer({ server, path: '/feed' });
  h.track(chat);
  h.track(feed);
  chat.on('connection', (ws) => ws.send('chat'));
  feed.on('connection', (ws) => ws.send('feed'));
  const port = await listen(server);

  for (const name of ['chat', 'feed', 'chat', 'feed']) {
    const ws = h.client(`ws://127.0.0.1:${port}/${name}`);
    const [data] = await waitEvent<[Buffer]>(ws, 'message');
    assert.equal(String(data), name);
    ws.terminate();
  }

  // A path neither handles gets one 400 answer (not a hanging socket).
  const none = await ask(h, port, upgradeRequest({ path: '/none' }));
  assert.equal(none.head.status, 400);
  await none.raw.waitClosed();

  // Once one of them is closed, its path is answered 400 by the other.
  await new Promise<void>((resolve) => feed.close(() => resolve()));
  const gone = await ask(h, port, upgradeRequest({ path: '/feed' }));
  assert.equal(gone.head.status, 400);
  const ws = h.client(`ws://127.0.0.1:${port}/chat`);
  assert.equal(String((await waitEvent<[Buffer]>(ws, 'message'))[0]), 'chat');
});

test('WebSocketServer options: exactly one of port, server, noServer', () => {
  assert.throws(() => new WebSocketServer({}), TypeError);
  assert.throws(() => new WebSocketServer({ noServer: true, server: http.createServer() }), TypeError);
});

test("'listening' and address() for a server created with port", async (t) => {
  const h = harness(t);
  const { wss, port } = await h.server();
  const address = wss.address() as net.AddressInfo;
  assert.equal(address.address, '127.0.0.1');
  assert.equal(address.port, port);
  assert.ok(port > 0);
  // A plain HTTP request gets 426.
  const res = await within(
    new Promise<http.IncomingMessage>((resolve, reject) => http.get(`http://127.0.0.1:${port}/`, resolve).on('error', reject)),
    WAIT,
    'plain http response',
  );
  res.resume();
  assert.equal(res.statusCode, 426);
});

test("'wsClientError' hands a refused handshake to the application, which answers itself", async (t) => {
  const h = harness(t);
  const { port, wss } = await h.server({ allowedOrigins: ['https://ok.test'] });
  const seen: Array<{ code: string | undefined; status: number | undefined; url: string | undefined }> = [];
  wss.on('wsClientError', (err: Error & { code?: string; statusCode?: number }, socket: import('node:stream').Duplex, req: http.IncomingMessage) => {
    seen.push({ code: err.code, status: err.statusCode, url: req.url });
    socket.end('HTTP/1.1 418 I\'m a teapot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  const { raw, head } = await ask(h, port, upgradeRequest({ path: '/x', headers: { Origin: 'https://bad.test' } }));
  assert.equal(head.status, 418);
  await raw.waitEnded();
  assert.deepEqual(seen, [{ code: 'WS_ERR_ORIGIN_NOT_ALLOWED', status: 403, url: '/x' }]);
});

test('clientTracking: false leaves wss.clients empty; connections still work', async (t) => {
  const h = harness(t);
  const { wss, client: ws, server } = await h.pair({ clientTracking: false });
  assert.equal(wss.clients.size, 0);
  const got = waitEvent<[Buffer]>(server, 'message');
  ws.send('untracked');
  assert.equal(String((await got)[0]), 'untracked');
  // Not tracked, so the test closes it itself.
  const closed = waitEvent(server, 'close');
  ws.close();
  await closed;
});
