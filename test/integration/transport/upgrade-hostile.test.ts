/**
 * The standalone server (created with `port`) reads request heads itself
 * (transport/upgrade-parser.ts). Hostile and odd heads on real sockets: each
 * gets a precise status and its socket is closed; a bystander is unaffected;
 * bytes sent with or right after the head are not lost.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { WebSocket } from '../../../src/index.js';
import { acceptKey, buildFrame, harness, sleep, upgradeRequest, waitEvent, type Harness, type HttpHead, type RawClient } from './helpers.js';

async function ask(h: Harness, port: number, request: string | Buffer): Promise<{ raw: RawClient; head: HttpHead }> {
  const raw = await h.raw(port);
  raw.write(request);
  return { raw, head: await raw.readHead() };
}

/** A bystander: a normal client still connects and echoes. */
async function bystanderWorks(h: Harness, url: string): Promise<void> {
  const ws = await h.open(url);
  const echoed = waitEvent<[Buffer]>(ws, 'message');
  ws.send('still here');
  assert.equal(String((await echoed)[0]), 'still here');
  ws.close();
}

function echoing(wss: import('../../../src/index.js').WebSocketServer): void {
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
}

test('a head over 16 KiB, or with too many fields: 431 and the socket closed; the server goes on', async (t) => {
  const h = harness(t);
  const { port, url, wss } = await h.server();
  echoing(wss);
  const huge = await ask(h, port, upgradeRequest({ headers: { 'X-Big': 'v'.repeat(20_000) } }));
  assert.equal(huge.head.status, 431);
  await huge.raw.waitClosed();
  const fields: Record<string, string> = {};
  for (let i = 0; i < 150; i++) fields[`X-F${i}`] = 'v';
  const many = await ask(h, port, upgradeRequest({ headers: fields }));
  assert.equal(many.head.status, 431);
  await many.raw.waitClosed();
  await bystanderWorks(h, url);
});

test('garbage, bare LF, obs-fold, two Host fields, a body on an upgrade: 400; HTTP/2.0: 505; a 9 KiB path: 414', async (t) => {
  const h = harness(t);
  const { port, url, wss } = await h.server();
  echoing(wss);
  const cases: Array<[string | Buffer, number]> = [
    [Buffer.concat([randomBytes(200).map((b) => (b === 0x0d || b === 0x0a ? 0x41 : b)), Buffer.from('\r\n\r\n')]), 400],
    ['GET / HTTP/1.1\nHost: a\nUpgrade: websocket\n\n\r\n\r\n', 400],
    [upgradeRequest().replace('Upgrade: websocket', 'Upgrade: websocket\r\n extra'), 400],
    [upgradeRequest({ headers: { Host: 'a' } }).replace('\r\n\r\n', '\r\nHost: b\r\n\r\n'), 400],
    [upgradeRequest({ headers: { 'Transfer-Encoding': 'chunked' } }), 400],
    [upgradeRequest({ version: '2.0' }), 505],
    [upgradeRequest({ path: '/' + 'p'.repeat(9000) }), 414],
  ];
  for (const [request, status] of cases) {
    const { raw, head } = await ask(h, port, request);
    assert.equal(head.status, status, String(request).slice(0, 60));
    assert.equal(head.headers['connection'], 'close');
    await raw.waitClosed();
  }
  await bystanderWorks(h, url);
});

test('a plain HTTP request gets 426 with Upgrade: websocket', async (t) => {
  const h = harness(t);
  const { port } = await h.server();
  const { raw, head } = await ask(h, port, 'POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc');
  assert.equal(head.status, 426);
  assert.equal(head.headers['upgrade'], 'websocket');
  await raw.waitClosed();
});

test('slowloris: a head sent a byte at a time past handshakeTimeout gets 408 and is closed; one that sends nothing too', async (t) => {
  const h = harness(t);
  const { port, url, wss } = await h.server({ handshakeTimeout: 400 });
  echoing(wss);
  const silent = await h.raw(port);
  const slow = await h.raw(port);
  const request = upgradeRequest();
  let stop = false;
  const dripping = (async () => {
    for (let i = 0; i < request.length - 4 && !stop; i++) {
      slow.write(request[i]!);
      await sleep(20);
    }
  })();
  const head = await slow.readHead(5000);
  stop = true;
  await dripping;
  assert.equal(head.status, 408);
  await slow.waitClosed(5000);
  assert.equal((await silent.readHead(5000)).status, 408);
  await silent.waitClosed(5000);
  assert.equal(wss.clients.size, 0);
  await bystanderWorks(h, url);
});

/** The text messages a server's connections receive, and a wait until `n` of them came (5 s at most). */
function collect(wss: import('../../../src/index.js').WebSocketServer): { got: string[]; wait: (n: number) => Promise<void> } {
  const got: string[] = [];
  wss.on('connection', (ws) => ws.on('message', (data) => got.push(String(data))));
  return {
    got,
    async wait(n) {
      const deadline = Date.now() + 5000;
      while (got.length < n && Date.now() < deadline) await sleep(10);
    },
  };
}

test('frames sent in the same write as the head, and right after it, reach the application', async (t) => {
  const h = harness(t);
  const { port, wss } = await h.server();
  const messages = collect(wss);
  const raw = await h.raw(port);
  raw.write(Buffer.concat([Buffer.from(upgradeRequest()), buildFrame({ opcode: 1, payload: Buffer.from('one'), mask: true })]));
  raw.write(buildFrame({ opcode: 1, payload: Buffer.from('two'), mask: true }));
  assert.equal((await raw.readHead()).status, 101);
  await messages.wait(2);
  assert.deepEqual(messages.got, ['one', 'two']);
});

test('an async verifyClient: frames that arrive while it decides wait in the socket', async (t) => {
  const h = harness(t);
  const { port, wss } = await h.server({
    verifyClient: (_info: unknown, cb: (ok: boolean) => void) => {
      setTimeout(() => cb(true), 150);
    },
  });
  const got: string[] = [];
  wss.on('connection', (ws) => ws.on('message', (data) => got.push(String(data))));
  const raw = await h.raw(port);
  raw.write(upgradeRequest());
  await sleep(30);
  raw.write(buildFrame({ opcode: 1, payload: Buffer.from('early'), mask: true }));
  assert.equal((await raw.readHead()).status, 101);
  const deadline = Date.now() + 5000;
  while (got.length < 1 && Date.now() < deadline) await sleep(10);
  assert.deepEqual(got, ['early']);
});

test("the request handed to 'connection' is an IncomingMessage with the head's fields and the socket", async (t) => {
  const h = harness(t);
  const { url, wss } = await h.server();
  const seen = waitEvent<[WebSocket, import('node:http').IncomingMessage]>(wss, 'connection');
  const client = await h.open(`${url}/room?x=1`, { headers: { 'X-Trace': 'abc' } });
  const [, req] = await seen;
  assert.equal(req.method, 'GET');
  assert.equal(req.url, '/room?x=1');
  assert.equal(req.httpVersion, '1.1');
  assert.equal(req.headers['x-trace'], 'abc');
  assert.ok(req.rawHeaders.includes('X-Trace'));
  assert.equal(req.socket.remoteAddress, '127.0.0.1');
  client.close();
});

test('a valid head written one byte at a time, with a frame pipelined behind it, completes (101, the right accept)', async (t) => {
  const h = harness(t);
  const { port, wss } = await h.server();
  const messages = collect(wss);
  const raw = await h.raw(port);
  const key = randomBytes(16).toString('base64');
  const bytes = Buffer.concat([Buffer.from(upgradeRequest({ key })), buildFrame({ opcode: 1, payload: Buffer.from('after'), mask: true })]);
  for (const byte of bytes) {
    raw.write(Buffer.from([byte]));
    await sleep(1); // one write per timer turn: the server gets the head in many pieces
  }
  const head = await raw.readHead();
  assert.equal(head.status, 101);
  assert.equal(head.headers['sec-websocket-accept'], acceptKey(key));
  await messages.wait(1);
  assert.deepEqual(messages.got, ['after']);
});

test('key and version: missing or duplicate Sec-WebSocket-Key 400; version 8 or none 426 naming version 13; non-ASCII in the target or a name 400, in a value (obs-text) accepted', async (t) => {
  const h = harness(t);
  const { port, url, wss } = await h.server();
  echoing(wss);
  const key = randomBytes(16).toString('base64');
  const cases: Array<[string | Buffer, number]> = [
    [upgradeRequest({ headers: { 'Sec-WebSocket-Key': null } }), 400],
    [upgradeRequest({ key }).replace('\r\n\r\n', `\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`), 400],
    [upgradeRequest({ key: 'too-short' }), 400],
    [upgradeRequest({ headers: { 'Sec-WebSocket-Version': '8' } }), 426],
    [upgradeRequest({ headers: { 'Sec-WebSocket-Version': null } }), 426],
    [Buffer.from(upgradeRequest({ path: '/caf\u00e9' }), 'utf8'), 400],
    [Buffer.from(upgradeRequest({ headers: { 'X-Caf\u00e9': '1' } }), 'utf8'), 400],
    [Buffer.from(upgradeRequest({ headers: { 'X-Name': 'caf\u00e9' } }), 'utf8'), 101],
  ];
  for (const [request, status] of cases) {
    const { raw, head } = await ask(h, port, request);
    assert.equal(head.status, status, String(request).slice(0, 80));
    if (status === 426) assert.equal(head.headers['sec-websocket-version'], '13');
    if (status === 101) raw.destroy();
    else await raw.waitClosed();
  }
  await bystanderWorks(h, url);
});
