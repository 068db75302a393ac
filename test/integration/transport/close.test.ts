/**
 * The closing handshake (RFC 6455 §7) on real sockets: who sees which code,
 * argument checks, terminate(), the close timeout, and WebSocketServer#close.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import http from 'node:http';
import { WebSocket, WebSocketServer } from '../../../src/index.js';
import {
  buildFrame,
  closeOf,
  closePayload,
  harness,
  listen,
  upgradeRequest,
  waitEvent,
  within,
  WAIT,
  type Harness,
} from './helpers.js';

/** A connected pair, both of whose close events are awaited from now on. */
async function closingPair(t: TestContext) {
  const { client, server } = await harness(t).pair();
  return { client, server, clientClosed: closeOf(client), serverClosed: closeOf(server) };
}

test("client close(4000, 'bye'): the server sees 4000 'bye', the client sees the echo, both clean", async (t) => {
  const { client, server, clientClosed, serverClosed } = await closingPair(t);
  client.close(4000, 'bye');
  assert.equal(client.readyState, WebSocket.CLOSING);
  assert.deepEqual(await serverClosed, [4000, 'bye']);
  const [code] = await clientClosed;
  assert.equal(code, 4000, 'the echo carries the code');
  assert.equal(client.wasClean, true);
  assert.equal(server.wasClean, true);
});

test('server close(1001): the client sees 1001 and its reason', async (t) => {
  const { client, server, clientClosed, serverClosed } = await closingPair(t);
  server.close(1001, 'going away');
  assert.deepEqual(await clientClosed, [1001, 'going away']);
  assert.equal((await serverClosed)[0], 1001);
  assert.equal(client.wasClean, true);
});

test('close() without a code: the peer sees 1005 (no status)', async (t) => {
  const { client, clientClosed, serverClosed } = await closingPair(t);
  client.close();
  assert.deepEqual(await serverClosed, [1005, '']);
  assert.deepEqual(await clientClosed, [1005, '']);
});

test('a close reason of 123 bytes (multi-byte UTF-8) is delivered intact', async (t) => {
  const h = harness(t);
  const { client, server } = await h.pair();
  const reason = 'é'.repeat(61) + 'x'; // 123 bytes
  assert.equal(Buffer.byteLength(reason), 123);
  const serverClosed = closeOf(server);
  client.close(3000, reason);
  assert.deepEqual(await serverClosed, [3000, reason]);
});

test('invalid close codes and a 124-byte reason throw synchronously; the connection stays open', async (t) => {
  const h = harness(t);
  const { client, server } = await h.pair();
  for (const code of [1005, 1006, 1015, 999, 1004, 2999, 5000, 0]) {
    assert.throws(() => client.close(code), { code: 'WS_ERR_INVALID_CLOSE_CODE' }, `code ${code}`);
  }
  assert.throws(() => client.close(1000, 'x'.repeat(124)), { code: 'WS_ERR_CLOSE_REASON_TOO_LONG' });
  assert.throws(() => client.close(1000, 'é'.repeat(62)), { code: 'WS_ERR_CLOSE_REASON_TOO_LONG' });
  assert.equal(client.readyState, WebSocket.OPEN);
  const echoed = waitEvent<[Buffer]>(server, 'message');
  client.send('still open');
  assert.equal(String((await echoed)[0]), 'still open');
});

test('close() twice, or after the peer closed, is harmless', async (t) => {
  const { client, clientClosed, serverClosed } = await closingPair(t);
  client.close(1000);
  client.close(4001, 'ignored');
  assert.deepEqual(await serverClosed, [1000, '']);
  assert.equal((await clientClosed)[0], 1000);
  assert.doesNotThrow(() => client.close(1000));
  assert.doesNotThrow(() => client.terminate());
  assert.equal(client.readyState, WebSocket.CLOSED);
});

test('terminate() → 1006 on both sides, not clean', async (t) => {
  const { client, server, clientClosed, serverClosed } = await closingPair(t);
  client.terminate();
  assert.deepEqual(await clientClosed, [1006, '']);
  assert.deepEqual(await serverClosed, [1006, '']);
  assert.equal(client.wasClean, false);
  assert.equal(server.wasClean, false);
});

test('server-side terminate() → 1006 on both sides', async (t) => {
  const h = harness(t);
  const { client, server } = await h.pair();
  const clientClosed = closeOf(client);
  server.terminate();
  assert.deepEqual(await clientClosed, [1006, '']);
});

test('close timeout: a raw client that never answers the close frame is destroyed after closeTimeout', async (t) => {
  const h = harness(t);
  const { raw, server } = await h.rawPair({ closeTimeout: 200 });
  // Keep the TCP connection half-open: the raw client never ends its side.
  raw.socket.allowHalfOpen = true;
  const serverClosed = closeOf(server);
  const started = Date.now();
  server.close(1000, 'bye');
  const frame = await raw.readFrame();
  assert.equal(frame.opcode, 0x8);
  assert.equal(frame.payload.readUInt16BE(0), 1000);
  const [code] = await serverClosed;
  const elapsed = Date.now() - started;
  assert.equal(code, 1006, 'no close frame came back');
  assert.ok(elapsed >= 150, `destroyed after ${elapsed} ms, before the 200 ms timeout`);
  await raw.waitEnded();
});

test('close timeout on the client: a server that never answers the close frame', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  // The server side stops reading, so it never sees nor answers the close frame.
  wss.on('connection', (ws) => ws.pause());
  const client = await h.open(url, { closeTimeout: 200 });
  const closed = closeOf(client);
  const started = Date.now();
  client.close(1000);
  const [code] = await closed;
  assert.equal(code, 1006);
  assert.ok(Date.now() - started >= 150);
});

test('a raw client that answers the close frame completes a clean close', async (t) => {
  const h = harness(t);
  const { raw, server } = await h.rawPair();
  const serverClosed = closeOf(server);
  server.close(4002, 'done');
  const frame = await raw.readFrame();
  assert.equal(frame.payload.readUInt16BE(0), 4002);
  raw.write(buildFrame({ opcode: 0x8, payload: closePayload(4002) }));
  assert.deepEqual(await serverClosed, [4002, '']);
  assert.equal(server.wasClean, true);
  // §7.1.1: the server closes the TCP connection first.
  await raw.waitEnded();
});

test('the server echoes a close frame from a raw client and ends the TCP connection', async (t) => {
  const h = harness(t);
  const { raw, server } = await h.rawPair();
  const serverClosed = closeOf(server);
  raw.write(buildFrame({ opcode: 0x8, payload: closePayload(3001, 'raw bye') }));
  const echo = await raw.readFrame();
  assert.equal(echo.opcode, 0x8);
  assert.equal(echo.payload.readUInt16BE(0), 3001);
  await raw.waitEnded();
  assert.deepEqual(await serverClosed, [3001, 'raw bye']);
});

test('messages sent before close() are delivered before the close', async (t) => {
  const h = harness(t);
  const { client, server } = await h.pair();
  const got: string[] = [];
  server.on('message', (d) => got.push(String(d)));
  const serverClosed = closeOf(server);
  for (let i = 0; i < 50; i++) client.send(`m${i}`);
  client.close(1000);
  await serverClosed;
  assert.deepEqual(
    got,
    Array.from({ length: 50 }, (_, i) => `m${i}`),
  );
});

async function connectN(h: Harness, wss: WebSocketServer, url: string, n: number): Promise<WebSocket[]> {
  const clients: WebSocket[] = [];
  for (let i = 0; i < n; i++) clients.push(await h.open(url));
  assert.equal(wss.clients.size, n);
  return clients;
}

test('wss.close() closes every client with 1001 and calls back once all are closed', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const clients = await connectN(h, wss, url, 3);
  const codes = clients.map((c) => closeOf(c));
  const serverClosed = waitEvent(wss, 'close');
  let calledBack = 0;
  const done = new Promise<void>((resolve) =>
    wss.close((err) => {
      assert.equal(err, undefined);
      calledBack++;
      resolve();
    }),
  );
  await within(done, WAIT, 'the wss.close callback');
  // By the time the callback runs, every client has closed.
  assert.equal(wss.clients.size, 0);
  for (const c of clients) assert.equal(c.readyState, WebSocket.CLOSED);
  for (const p of codes) assert.equal((await p)[0], 1001);
  await serverClosed;
  assert.equal(calledBack, 1);
  // A second close reports that the server is not running.
  const err = await within(new Promise<Error | undefined>((resolve) => wss.close(resolve)), WAIT, 'second close');
  assert.ok(err instanceof Error);
});

test('wss.close() destroys clients that do not answer after closeTimeout', async (t) => {
  const h = harness(t);
  const { wss, port } = await h.server({ closeTimeout: 200 });
  const conn = waitEvent(wss, 'connection');
  const { raw } = await h.rawWebSocket(port);
  raw.socket.allowHalfOpen = true;
  await conn;
  const done = new Promise<void>((resolve) => wss.close(() => resolve()));
  const frame = await raw.readFrame();
  assert.equal(frame.payload.readUInt16BE(0), 1001);
  await within(done, WAIT, 'wss.close callback after the close timeout');
  await raw.waitEnded();
});

test('after wss.close() new connections fail', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  await connectN(h, wss, url, 1);
  await within(new Promise<void>((resolve) => wss.close(() => resolve())), WAIT, 'wss.close');
  const ws = h.client(url);
  const errored = waitEvent<[Error & { code?: string }]>(ws, 'error');
  const [code] = await waitEvent<[number]>(ws, 'close');
  assert.equal(code, 1006);
  assert.equal((await errored)[0].code, 'ECONNREFUSED');
});

test('noServer: handleUpgrade while wss.close() is in progress or after it → 503 with Retry-After', async (t) => {
  const h = harness(t);
  const wss = new WebSocketServer({ noServer: true, closeTimeout: 1000, retryAfter: 3 });
  h.track(wss);
  const server = http.createServer();
  h.trackServer(server);
  server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)));
  const port = await listen(server);
  // A raw client that never answers keeps the close in progress.
  const conn = waitEvent(wss, 'connection');
  const { raw } = await h.rawWebSocket(port);
  await conn;
  const closed = new Promise<void>((resolve) => wss.close(() => resolve()));
  const during = await h.raw(port);
  during.write(upgradeRequest());
  const head = await during.readHead();
  assert.equal(head.status, 503);
  assert.equal(head.headers['retry-after'], '3');
  await during.waitClosed();
  const frame = await raw.readFrame();
  assert.equal(frame.payload.readUInt16BE(0), 1001);
  raw.write(buildFrame({ opcode: 0x8, payload: closePayload(1001) }));
  await within(closed, WAIT, 'wss.close');
  const after = await h.raw(port);
  after.write(upgradeRequest());
  assert.equal((await after.readHead()).status, 503);
});
