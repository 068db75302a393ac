/**
 * permessage-deflate (RFC 7692) end to end: negotiation, round trips, the
 * per-message opt-out and threshold checked on the wire with a raw client,
 * negotiated parameters, and a zip bomb against maxPayload.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { WebSocket, type PerMessageDeflateOptions } from '../../../src/index.js';
import { buildFrame, closeOf, collectMessages, harness, waitEvent, within, WAIT, type Harness } from './helpers.js';

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** Inflate one message's payload as a peer would (RFC 7692 §7.2.2). */
function inflateMessage(payload: Buffer, windowBits = 15): Buffer {
  return zlib.inflateRawSync(Buffer.concat([payload, TAIL]), { windowBits, finishFlush: zlib.constants.Z_SYNC_FLUSH });
}

/** Deflate one message as a peer would (RFC 7692 §7.2.1): sync flush, tail removed. */
function deflateMessage(data: Buffer): Buffer {
  const out = zlib.deflateRawSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.deepEqual(out.subarray(-4), TAIL);
  return out.subarray(0, -4);
}

function compressible(size: number, seed = 0): Buffer {
  const text = Buffer.from(`{"user":"u${seed}","channel":"news","body":"the quick brown fox jumps over the lazy dog"}\n`);
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += text.length) text.copy(out, i);
  return out;
}

/** An echo server with deflate; the server side WebSockets have no 'error' listener. */
async function echoServer(h: Harness, options: Parameters<Harness['server']>[0] = {}) {
  const s = await h.server({ perMessageDeflate: true, ...options });
  s.wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  return s;
}

test('negotiated when both sides enable it; not when either does not', async (t) => {
  const h = harness(t);
  const on = await echoServer(h);
  const conn = waitEvent<[WebSocket]>(on.wss, 'connection');
  const ws = await h.open(on.url);
  const [server] = await conn;
  assert.match(ws.extensions, /^permessage-deflate\b/);
  assert.equal(server.extensions, ws.extensions);

  const clientOff = await h.open(on.url, { perMessageDeflate: false });
  assert.equal(clientOff.extensions, '');
  const serverOff = await h.server();
  const ws2 = await h.open(serverOff.url);
  assert.equal(ws2.extensions, '');
});

test('options passed as undefined take their defaults (maxPayload: undefined used to crash the process at the first deflate upgrade)', async (t) => {
  const h = harness(t);
  const s = await echoServer(h, { maxPayload: undefined, closeTimeout: undefined, clientTracking: undefined });
  const ws = await h.open(s.url);
  assert.match(ws.extensions, /^permessage-deflate\b/);
  const big = compressible(64 * 1024);
  const echoed = collectMessages(ws, 1);
  ws.send(big);
  assert.deepEqual((await echoed)[0]![0], big);
  assert.equal(s.wss.clients.size, 1, 'clientTracking defaults to true');
});

test('large compressible messages round trip (text and binary), and go compressed on the wire', async (t) => {
  const h = harness(t);
  const { wss, url } = await echoServer(h);
  let wireBytes = 0;
  wss.on('connection', (ws, req) => req.socket.on('data', (c: Buffer) => (wireBytes += c.length)));
  const ws = await h.open(url);
  const text = compressible(1024 * 1024).toString();
  const bin = compressible(3 * 1024 * 1024, 1);
  const got = collectMessages(ws, 2, 10_000);
  ws.send(text);
  ws.send(bin);
  const [[t1, b1], [t2, b2]] = await got;
  assert.equal(b1, false);
  assert.equal(String(t1), text);
  assert.equal(b2, true);
  assert.ok(bin.equals(t2 as Buffer));
  assert.ok(wireBytes < (text.length + bin.length) / 10, `${wireBytes} bytes on the wire for ${text.length + bin.length}`);
});

test('many messages with context takeover, including empty ones and fragments', async (t) => {
  const h = harness(t);
  const { url } = await echoServer(h, { perMessageDeflate: { threshold: 0 } });
  const ws = await h.open(url, { perMessageDeflate: { threshold: 0 } });
  const sent: string[] = [];
  for (let i = 0; i < 200; i++) sent.push(i % 10 === 0 ? '' : `message ${i} ${'abc'.repeat(i)}`);
  const got = collectMessages(ws, sent.length + 1, 10_000);
  for (const m of sent) ws.send(m);
  ws.send('frag-', { fin: false });
  ws.send('ment-', { fin: false });
  ws.send('ed');
  const msgs = await got;
  assert.deepEqual(
    msgs.map(([d]) => String(d)),
    [...sent, 'frag-ment-ed'],
  );
});

/** A raw client that negotiated permessage-deflate with `offer`, and the response header. */
async function rawDeflate(h: Harness, port: number, offer = 'permessage-deflate') {
  const { raw, head } = await h.rawWebSocket(port, { headers: { 'Sec-WebSocket-Extensions': offer } });
  const ext = head.headers['sec-websocket-extensions'] ?? '';
  assert.match(ext, /^permessage-deflate/);
  return { raw, ext };
}

/** A server with `perMessageDeflate`, a raw client that negotiated `offer` with it, and the server's end of that connection. */
async function rawDeflatePair(h: Harness, perMessageDeflate: PerMessageDeflateOptions, offer?: string) {
  const { wss, port } = await h.server({ perMessageDeflate });
  const conn = waitEvent<[WebSocket]>(wss, 'connection');
  const { raw, ext } = await rawDeflate(h, port, offer);
  const [server] = await conn;
  return { raw, ext, server };
}

test('threshold: messages below it go out without RSV1, messages above it with RSV1', async (t) => {
  const h = harness(t);
  const { raw, server } = await rawDeflatePair(h, { threshold: 100 });
  server.send('small');
  server.send('y'.repeat(99));
  server.send('z'.repeat(100));
  const small = await raw.readFrame();
  assert.equal(small.rsv1, false);
  assert.equal(small.payload.toString(), 'small');
  const below = await raw.readFrame();
  assert.equal(below.rsv1, false);
  assert.equal(below.payload.length, 99);
  const above = await raw.readFrame();
  assert.equal(above.rsv1, true);
  assert.ok(above.payload.length < 100);
  assert.equal(inflateMessage(above.payload).toString(), 'z'.repeat(100));
});

test('default threshold (1024 bytes): small messages from our client arrive fine', async (t) => {
  const h = harness(t);
  const { url } = await echoServer(h);
  const ws = await h.open(url);
  const got = collectMessages(ws, 3);
  ws.send('tiny');
  ws.send('x'.repeat(1023));
  ws.send('x'.repeat(1024));
  const msgs = await got;
  assert.deepEqual(
    msgs.map(([d]) => String(d).length),
    [4, 1023, 1024],
  );
});

test('compress: false sends one message uncompressed, the next one compressed', async (t) => {
  const h = harness(t);
  const { raw, server } = await rawDeflatePair(h, { threshold: 0 });
  const big = 'q'.repeat(5000);
  server.send(big, { compress: false });
  server.send(big);
  const plain = await raw.readFrame();
  assert.equal(plain.rsv1, false);
  assert.equal(plain.payload.toString(), big);
  const packed = await raw.readFrame();
  assert.equal(packed.rsv1, true);
  assert.equal(inflateMessage(packed.payload).toString(), big);
});

test('the server inflates compressed frames from a raw client, with and without RSV1, fragmented', async (t) => {
  const h = harness(t);
  const { wss, port } = await h.server({ perMessageDeflate: true });
  const received: string[] = [];
  wss.on('connection', (ws) => ws.on('message', (d) => received.push(String(d))));
  const { raw } = await rawDeflate(h, port, 'permessage-deflate; client_no_context_takeover');
  const message = 'hello hello hello hello compressed world';
  raw.write(buildFrame({ opcode: 0x1, payload: deflateMessage(Buffer.from(message)), rsv1: true }));
  raw.write(buildFrame({ opcode: 0x1, payload: 'plain' }));
  const packed = deflateMessage(Buffer.from(message));
  const cut = Math.floor(packed.length / 2);
  raw.write(buildFrame({ opcode: 0x1, payload: packed.subarray(0, cut), rsv1: true, fin: false }));
  raw.write(buildFrame({ opcode: 0x0, payload: packed.subarray(cut) }));
  await within(
    (async () => {
      while (received.length < 3) await new Promise((r) => setTimeout(r, 5));
    })(),
    WAIT,
    'three messages',
  );
  assert.deepEqual(received, [message, 'plain', message]);
});

test('server_no_context_takeover: the same message compresses to the same bytes every time', async (t) => {
  const h = harness(t);
  for (const [offer, independent] of [
    ['permessage-deflate; server_no_context_takeover', true],
    ['permessage-deflate', false],
  ] as const) {
    const { raw, ext, server } = await rawDeflatePair(h, { threshold: 0 }, offer);
    assert.equal(/server_no_context_takeover/.test(ext), independent, ext);
    const msg = compressible(4000).toString();
    server.send(msg);
    server.send(msg);
    const a = await raw.readFrame();
    const b = await raw.readFrame();
    assert.ok(a.rsv1 && b.rsv1);
    if (independent) {
      assert.deepEqual(b.payload, a.payload, 'no reference to the previous message');
      assert.equal(inflateMessage(b.payload).toString(), msg);
    } else {
      assert.ok(b.payload.length < a.payload.length, 'the second message refers to the first one');
    }
  }
});

test('server_no_context_takeover and client_max_window_bits between our client and server', async (t) => {
  const h = harness(t);
  const variants: Array<{
    server: object;
    client: object;
    expect: RegExp[];
  }> = [
    { server: { serverNoContextTakeover: true }, client: {}, expect: [/server_no_context_takeover/] },
    { server: {}, client: { serverNoContextTakeover: true }, expect: [/server_no_context_takeover/] },
    { server: { clientNoContextTakeover: true }, client: {}, expect: [/client_no_context_takeover/] },
    { server: {}, client: { clientMaxWindowBits: 10 }, expect: [/client_max_window_bits=10/] },
    { server: { clientMaxWindowBits: 9 }, client: { clientMaxWindowBits: true }, expect: [/client_max_window_bits=9/] },
    { server: { serverMaxWindowBits: 11 }, client: {}, expect: [/server_max_window_bits=11/] },
    { server: {}, client: { serverMaxWindowBits: 8 }, expect: [/server_max_window_bits=8/] },
  ];
  for (const v of variants) {
    const { wss, url } = await echoServer(h, { perMessageDeflate: { threshold: 0, ...v.server } });
    const conn = waitEvent<[WebSocket]>(wss, 'connection');
    const ws = await h.open(url, { perMessageDeflate: { threshold: 0, ...v.client } });
    const [server] = await conn;
    for (const re of v.expect) {
      assert.match(ws.extensions, re, JSON.stringify(v));
      assert.match(server.extensions, re, JSON.stringify(v));
    }
    const messages = [compressible(70_000, 1).toString(), compressible(70_000, 2).toString(), 'short', compressible(5000, 3).toString()];
    const got = collectMessages(ws, messages.length, 10_000);
    for (const m of messages) ws.send(m);
    assert.deepEqual(
      (await got).map(([d]) => String(d)),
      messages,
      JSON.stringify(v),
    );
    const closed = closeOf(ws);
    ws.close();
    await closed;
  }
});

test('zip bomb: 100 MiB of zeros compressed, against maxPayload 1 MiB → 1009, memory stays bounded', async (t) => {
  const h = harness(t);
  const { wss, port, url } = await h.server({ perMessageDeflate: true, maxPayload: 1024 * 1024 });
  const serverCloses: Array<Promise<unknown[]>> = [];
  wss.on('connection', (ws) => {
    serverCloses.push(waitEvent(ws, 'close'));
    ws.on('message', (d, b) => ws.send(d, { binary: b }));
  });
  const healthy = await h.open(url);

  // 100 MiB of zeros deflated as one message, streamed (never 100 MiB in memory here).
  const deflater = zlib.createDeflateRaw();
  const parts: Buffer[] = [];
  deflater.on('data', (c: Buffer) => parts.push(c));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < 100; i++) deflater.write(zeros);
  await new Promise<void>((resolve) => deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()));
  deflater.close();
  let bomb = Buffer.concat(parts);
  assert.deepEqual(bomb.subarray(-4), TAIL);
  bomb = bomb.subarray(0, -4);
  assert.ok(bomb.length < 1024 * 1024, `the compressed bomb (${bomb.length} bytes) is under maxPayload itself`);

  const { raw } = await rawDeflate(h, port);
  global.gc?.();
  const baseline = process.memoryUsage();
  let peak = 0;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peak = Math.max(peak, m.arrayBuffers + m.external - baseline.arrayBuffers - baseline.external);
  }, 2);
  h.defer(() => clearInterval(sampler));

  raw.write(buildFrame({ opcode: 0x2, payload: bomb, rsv1: true }));
  const reply = await raw.readFrame(10_000);
  clearInterval(sampler);
  assert.equal(reply.opcode, 0x8);
  assert.equal(reply.payload.readUInt16BE(0), 1009);
  await raw.waitEnded();
  await within(serverCloses[1]!, WAIT, 'the server-side close');
  assert.ok(peak < 32 * 1024 * 1024, `memory grew by ${(peak / 1048576).toFixed(1)} MiB while inflating the bomb`);

  // The server is fine.
  const echoed = waitEvent<[Buffer]>(healthy, 'message');
  healthy.send('still alive');
  assert.equal(String((await echoed)[0]), 'still alive');
});

test('zip bomb in fragments: maxPayload counts the inflated size of all fragments', async (t) => {
  const h = harness(t);
  const { port } = await h.server({ perMessageDeflate: true, maxPayload: 64 * 1024 });
  const { raw } = await rawDeflate(h, port);
  const packed = deflateMessage(Buffer.alloc(200 * 1024));
  const third = Math.ceil(packed.length / 3);
  raw.write(buildFrame({ opcode: 0x2, payload: packed.subarray(0, third), rsv1: true, fin: false }));
  raw.write(buildFrame({ opcode: 0x0, payload: packed.subarray(third, 2 * third), fin: false }));
  raw.write(buildFrame({ opcode: 0x0, payload: packed.subarray(2 * third) }));
  const reply = await raw.readFrame();
  assert.equal(reply.opcode, 0x8);
  assert.equal(reply.payload.readUInt16BE(0), 1009);
});

test('invalid compressed data → 1007', async (t) => {
  const h = harness(t);
  const { port } = await h.server({ perMessageDeflate: true });
  const { raw } = await rawDeflate(h, port);
  raw.write(buildFrame({ opcode: 0x1, payload: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]), rsv1: true }));
  const reply = await raw.readFrame();
  assert.equal(reply.opcode, 0x8);
  assert.equal(reply.payload.readUInt16BE(0), 1007);
  await raw.waitEnded();
});

test('compressed text that inflates to invalid UTF-8 → 1007', async (t) => {
  const h = harness(t);
  const { port } = await h.server({ perMessageDeflate: true });
  const { raw } = await rawDeflate(h, port);
  raw.write(buildFrame({ opcode: 0x1, payload: deflateMessage(Buffer.from([0x61, 0xff, 0x62])), rsv1: true }));
  const reply = await raw.readFrame();
  assert.equal(reply.payload.readUInt16BE(0), 1007);
});

test('close while compressed sends are queued: callbacks get errors, no crash', async (t) => {
  const h = harness(t);
  const { url } = await echoServer(h, { perMessageDeflate: { threshold: 0 } });
  const ws = await h.open(url, { perMessageDeflate: { threshold: 0 } });
  const results: Array<Error | null | undefined> = [];
  const all = new Promise<void>((resolve) => {
    for (let i = 0; i < 20; i++) {
      ws.send(compressible(50_000, i), (err) => {
        results.push(err);
        if (results.length === 20) resolve();
      });
    }
  });
  const closed = closeOf(ws);
  ws.close(1000);
  await within(all, WAIT, 'all 20 send callbacks');
  await closed;
  // Sends queued before close() still go out (close is queued behind them) or fail with an error; none is lost silently.
  assert.equal(results.length, 20);
  assert.equal(ws.readyState, WebSocket.CLOSED);
});
