/**
 * A misbehaving peer must not take the server down: bad frames from a raw
 * client get the right close code and the TCP connection ends, with no
 * 'error' listener on the server side, while other clients keep working.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket, type WebSocketServer } from '../../../src/index.js';
import { acceptKey, buildFrame, closeOf, harness, until, upgradeRequest, waitEvent, within, WAIT, type Harness } from './helpers.js';

/**
 * An echo server whose connections have NO 'error' listener, and a healthy
 * client connected to it. Resolves the server-side close of each connection.
 */
async function setup(h: Harness, options: Parameters<Harness['server']>[0] = {}) {
  const { wss, port, url } = await h.server(options);
  const closes: Array<Promise<[number, Buffer]>> = [];
  wss.on('connection', (ws) => {
    closes.push(waitEvent<[number, Buffer]>(ws, 'close', 10_000));
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const healthy = await h.open(url);
  return { wss, port, url, healthy, closes };
}

async function assertEchoes(ws: WebSocket, text: string): Promise<void> {
  const got = waitEvent<[Buffer]>(ws, 'message');
  ws.send(text);
  assert.equal(String((await got)[0]), text);
}

/** Every 'error' listener count on the server's connections (must stay 0). */
function errorListeners(wss: WebSocketServer): number {
  let n = 0;
  for (const ws of wss.clients) n += ws.listenerCount('error');
  return n;
}

const badFrames: Array<{ name: string; frame: () => Buffer; code: number }> = [
  { name: 'an unmasked frame', frame: () => buildFrame({ opcode: 0x1, payload: 'hi', mask: false }), code: 1002 },
  { name: 'a reserved opcode (0x3)', frame: () => buildFrame({ opcode: 0x3, payload: 'x' }), code: 1002 },
  { name: 'a reserved control opcode (0xB)', frame: () => buildFrame({ opcode: 0xb }), code: 1002 },
  { name: 'RSV2 set', frame: () => buildFrame({ opcode: 0x1, payload: 'x', rsv2: true }), code: 1002 },
  { name: 'RSV1 without permessage-deflate', frame: () => buildFrame({ opcode: 0x1, payload: 'x', rsv1: true }), code: 1002 },
  { name: 'invalid UTF-8 in a text message', frame: () => buildFrame({ opcode: 0x1, payload: Buffer.from([0x68, 0xc3, 0x28]) }), code: 1007 },
  {
    name: 'UTF-8 cut across fragments that never completes',
    frame: () =>
      Buffer.concat([
        buildFrame({ opcode: 0x1, payload: Buffer.from([0xe2, 0x82]), fin: false }),
        buildFrame({ opcode: 0x0, payload: Buffer.from('x') }),
      ]),
    code: 1007,
  },
  { name: 'a continuation without a message', frame: () => buildFrame({ opcode: 0x0, payload: 'x' }), code: 1002 },
  { name: 'a fragmented ping', frame: () => buildFrame({ opcode: 0x9, fin: false }), code: 1002 },
  { name: 'a ping over 125 bytes', frame: () => buildFrame({ opcode: 0x9, payload: Buffer.alloc(126) }), code: 1002 },
  { name: 'a close frame with a 1-byte payload', frame: () => buildFrame({ opcode: 0x8, payload: Buffer.from([3]) }), code: 1002 },
  { name: 'a close frame with code 1005', frame: () => buildFrame({ opcode: 0x8, payload: Buffer.from([0x03, 0xed]) }), code: 1002 },
  {
    name: 'a close frame with an invalid UTF-8 reason',
    frame: () => buildFrame({ opcode: 0x8, payload: Buffer.from([0x03, 0xe8, 0xff]) }),
    code: 1002,
  },
];

for (const { name, frame, code } of badFrames) {
  test(`${name} → close ${code}, TCP ends, no crash without an 'error' listener, others unaffected`, async (t) => {
    const h = harness(t);
    const { wss, port, healthy, closes } = await setup(h);
    const { raw } = await h.rawWebSocket(port);
    await until(() => closes.length === 2, WAIT, 'the raw connection on the server');
    assert.equal(errorListeners(wss), 0);
    raw.write(frame());
    const reply = await raw.readFrame();
    assert.equal(reply.opcode, 0x8, 'a close frame');
    assert.equal(reply.masked, false);
    assert.equal(reply.payload.readUInt16BE(0), code);
    await raw.waitEnded();
    // The server failed the connection: its 'close' event reports the code it sent (as `ws` does).
    const [serverCode] = await closes[1]!;
    assert.equal(serverCode, code);
    await raw.waitClosed();
    await assertEchoes(healthy, 'still here');
  });
}

test('the failing connection emits error (with code and closeCode) when someone listens', async (t) => {
  const h = harness(t);
  const { wss, port } = await h.server();
  const errors = new Promise<Error & { code?: string; closeCode?: number }>((resolve) =>
    wss.on('connection', (ws) => ws.on('error', resolve)),
  );
  const { raw } = await h.rawWebSocket(port);
  raw.write(buildFrame({ opcode: 0x1, payload: Buffer.from([0xff]) }));
  const err = await within(errors, WAIT, "'error' on the server");
  assert.equal(err.code, 'WS_ERR_INVALID_UTF8');
  assert.equal(err.closeCode, 1007);
});

test('maxPayload: a message over the limit → 1009, the connection ends', async (t) => {
  const h = harness(t);
  const { port, healthy, closes } = await setup(h, { maxPayload: 1024 });
  const { raw } = await h.rawWebSocket(port);
  raw.write(buildFrame({ opcode: 0x2, payload: Buffer.alloc(1024) }));
  const echo = await raw.readFrame();
  assert.equal(echo.opcode, 0x2, 'exactly maxPayload is fine');
  assert.equal(echo.payload.length, 1024);
  raw.write(buildFrame({ opcode: 0x2, payload: Buffer.alloc(1025) }));
  const reply = await raw.readFrame();
  assert.equal(reply.opcode, 0x8);
  assert.equal(reply.payload.readUInt16BE(0), 1009);
  await raw.waitClosed();
  assert.equal((await closes[1]!)[0], 1009);
  await assertEchoes(healthy, 'ok');
});

test('maxPayload counts all fragments of a message', async (t) => {
  const h = harness(t);
  const { port } = await setup(h, { maxPayload: 1000 });
  const { raw } = await h.rawWebSocket(port);
  raw.write(buildFrame({ opcode: 0x2, payload: Buffer.alloc(600), fin: false }));
  raw.write(buildFrame({ opcode: 0x0, payload: Buffer.alloc(600) }));
  const reply = await raw.readFrame();
  assert.equal(reply.opcode, 0x8);
  assert.equal(reply.payload.readUInt16BE(0), 1009);
});

test('maxPayload on our client: a server message over the limit → the client closes with 1009', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const serverClose = new Promise<number>((resolve) =>
    wss.on('connection', (ws) => {
      ws.on('close', resolve);
      ws.send(Buffer.alloc(2048));
    }),
  );
  const ws = h.client(url, { maxPayload: 1024 });
  const errored = waitEvent<[Error & { code?: string }]>(ws, 'error');
  const [err] = await errored;
  assert.equal(err.code, 'WS_ERR_MESSAGE_TOO_BIG');
  assert.equal(await within(serverClose, WAIT, 'server close'), 1009);
});

test('a client that vanishes (socket destroyed) → server close with 1006', async (t) => {
  const h = harness(t);
  const { port, healthy, closes } = await setup(h);
  const { raw } = await h.rawWebSocket(port);
  raw.write(buildFrame({ opcode: 0x1, payload: 'half a message', fin: false }));
  await until(() => closes.length === 2, WAIT, 'the raw connection on the server');
  raw.destroy();
  const [code, reason] = await closes[1]!;
  assert.equal(code, 1006);
  assert.equal(reason.length, 0);
  await assertEchoes(healthy, 'fine');
});

test('our client terminated → server close 1006; the server terminated → client close 1006', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const serverSide: WebSocket[] = [];
  wss.on('connection', (ws) => serverSide.push(ws));
  const a = await h.open(url);
  const b = await h.open(url);
  const aServerClose = waitEvent<[number]>(serverSide[0]!, 'close');
  a.terminate();
  assert.equal((await aServerClose)[0], 1006);
  const bClose = closeOf(b);
  serverSide[1]!.terminate();
  assert.deepEqual(await bClose, [1006, '']);
});

test("a throwing 'message' listener on the server: no crash, the connection is closed with 1011", async (t) => {
  // Documented behaviour: the core catches the exception thrown by the
  // application's handler and fails the connection with 1011 (Internal
  // Error), without details in the reason. The process keeps running.
  const h = harness(t);
  const { wss, url } = await h.server();
  let seen = 0;
  const serverClose = new Promise<number>((resolve) =>
    wss.on('connection', (ws) => {
      ws.on('close', resolve);
      ws.on('message', (data) => {
        seen++;
        if (String(data) === 'boom') throw new Error('application bug');
        ws.send(data);
      });
    }),
  );
  const ws = await h.open(url);
  await assertEchoes(ws, 'before');
  const closed = closeOf(ws);
  ws.send('boom');
  ws.send('after');
  const [code, reason] = await closed;
  assert.equal(code, 1011);
  assert.equal(reason, '', 'no details of the internal error go to the peer');
  assert.equal(await within(serverClose, WAIT, 'server close'), 1011);
  assert.equal(seen, 2, "no 'message' after the failure");
});

test("a throwing 'message' listener on the client: no crash, the client closes with 1011", async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const serverClose = new Promise<[number, Buffer]>((resolve) =>
    wss.on('connection', (ws) => {
      ws.on('close', (code, reason) => resolve([code, reason]));
      ws.send('trigger');
    }),
  );
  const ws = h.client(url);
  const clientClose = waitEvent<[number]>(ws, 'close');
  ws.on('message', () => {
    throw new Error('client bug');
  });
  const [code] = await within(serverClose, WAIT, 'server close');
  assert.equal(code, 1011);
  assert.equal((await clientClose)[0], 1011, 'the client failed the connection: it reports the code it sent');
  assert.equal(ws.readyState, WebSocket.CLOSED);
});

test('garbage instead of an HTTP request does not crash the server', async (t) => {
  const h = harness(t);
  const { port, healthy } = await setup(h);
  const raw = await h.raw(port);
  raw.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]));
  await raw.waitClosed();
  await assertEchoes(healthy, 'alive');
});

test('a frame split into single bytes is reassembled', async (t) => {
  const h = harness(t);
  const { port } = await setup(h);
  const { raw } = await h.rawWebSocket(port);
  const frame = buildFrame({ opcode: 0x1, payload: 'byte by byte ✓' });
  for (const byte of frame) {
    raw.socket.write(Buffer.from([byte]));
    await new Promise((r) => setImmediate(r));
  }
  const echo = await raw.readFrame();
  assert.equal(echo.opcode, 0x1);
  assert.equal(echo.payload.toString(), 'byte by byte ✓');
});

test('bytes sent right behind the upgrade request are read as frames', async (t) => {
  const h = harness(t);
  const { port } = await setup(h);
  const raw = await h.raw(port);
  const key = Buffer.alloc(16, 7).toString('base64');
  raw.write(Buffer.concat([Buffer.from(upgradeRequest({ key })), buildFrame({ opcode: 0x1, payload: 'early' })]));
  const head = await raw.readHead();
  assert.equal(head.status, 101);
  assert.equal(head.headers['sec-websocket-accept'], acceptKey(key));
  const echo = await raw.readFrame();
  assert.equal(echo.payload.toString(), 'early');
});
