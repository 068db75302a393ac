/**
 * `heartbeat: { interval, timeout }`: dead peers are terminated, live ones
 * (which answer pings, as our client does automatically) stay connected.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from '../../../src/index.js';
import { buildFrame, closeOf, harness, sleep, until, waitEvent, within, WAIT } from './helpers.js';

test('server heartbeat: a raw client that never answers pings is terminated (1006)', async (t) => {
  const h = harness(t);
  const { wss, raw, server } = await h.rawPair({ heartbeat: { interval: 100, timeout: 100 } });
  const errors: Array<Error & { code?: string }> = [];
  server.on('error', (err) => errors.push(err));
  const [code] = await closeOf(server, 2000);
  assert.equal(code, 1006);
  assert.deepEqual(
    errors.map((e) => e.code),
    ['WS_ERR_HEARTBEAT_TIMEOUT'],
  );
  // The raw client did receive pings it never answered.
  const frame = await raw.readFrame().catch(() => null);
  assert.ok(frame === null || frame.opcode === 0x9, 'only pings were sent');
  await raw.waitClosed();
  assert.equal(wss.clients.size, 0);
});

test('server heartbeat with a timeout longer than the interval: a silent peer is still terminated (each ping must not push the deadline back)', async (t) => {
  const h = harness(t);
  const { server } = await h.rawPair({ heartbeat: { interval: 50, timeout: 200 } });
  server.on('error', () => {});
  // The first ping at 50 ms, its deadline 200 ms later; without the fix the deadline moved at every ping, forever.
  assert.equal((await closeOf(server, 2000))[0], 1006);
});

test('server heartbeat: no error listener needed, the process does not crash', async (t) => {
  const h = harness(t);
  const { wss, raw, server } = await h.rawPair({ heartbeat: { interval: 50, timeout: 50 } });
  assert.equal(server.listenerCount('error'), 0);
  assert.equal((await closeOf(server, 2000))[0], 1006);
  await raw.waitClosed();
});

test('server heartbeat: our client answers pings automatically and stays open over several intervals', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server({ heartbeat: { interval: 100, timeout: 100 } });
  let serverClosed = false;
  let pongs = 0;
  wss.on('connection', (ws) => {
    ws.on('close', () => (serverClosed = true));
    ws.on('pong', () => pongs++);
  });
  const client = await h.open(url);
  let pings = 0;
  client.on('ping', () => pings++);
  // Five rounds of ping, pong: a peer that did not answer would have been terminated 100 ms after the first.
  await until(() => pongs >= 5, WAIT, 'five pongs at the server');
  assert.equal(client.readyState, WebSocket.OPEN);
  assert.equal(serverClosed, false);
  assert.ok(pings >= pongs, `${pongs} pongs answer ${pings} pings`);
  const echoed = waitEvent<[Buffer]>(wss.clients.values().next().value!, 'message');
  client.send('alive');
  assert.equal(String((await echoed)[0]), 'alive');
});

test('server heartbeat: a raw client that keeps sending data (but no pongs) counts as alive', async (t) => {
  // Any data from the peer proves it is alive, as ws's heartbeat recipe and centrifuge do.
  const h = harness(t);
  const { wss, port } = await h.server({ heartbeat: { interval: 100, timeout: 100 } });
  let closed = false;
  wss.on('connection', (ws) => ws.on('close', () => (closed = true)));
  const { raw } = await h.rawWebSocket(port);
  const timer = setInterval(() => raw.write(buildFrame({ opcode: 0x1, payload: 'tick' })), 30);
  h.defer(() => clearInterval(timer));
  await sleep(500);
  clearInterval(timer);
  assert.equal(closed, false);
  assert.equal(raw.isClosed, false);
});

test('server heartbeat: a client with autoPong off that answers nothing is terminated', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server({ heartbeat: { interval: 80, timeout: 80 } });
  const serverClose = new Promise<number>((resolve) => wss.on('connection', (ws) => ws.on('close', resolve)));
  const client = await h.open(url, { autoPong: false });
  const [code] = await closeOf(client, 2000);
  assert.equal(code, 1006);
  assert.equal(await within(serverClose, WAIT, 'server close'), 1006);
});

test('client heartbeat: the client terminates a server that stops answering', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server({ autoPong: false });
  wss.on('connection', () => {});
  const client = await h.open(url, { heartbeat: { interval: 80, timeout: 80 } });
  const errored = waitEvent<[Error & { code?: string }]>(client, 'error', 2000);
  const [code] = await closeOf(client, 2000);
  assert.equal(code, 1006);
  assert.equal((await errored)[0].code, 'WS_ERR_HEARTBEAT_TIMEOUT');
});

test('client heartbeat against a live server: stays open', async (t) => {
  const h = harness(t);
  const { url } = await h.server();
  const client = await h.open(url, { heartbeat: { interval: 50, timeout: 50 } });
  let pongs = 0;
  let closed = false;
  client.on('pong', () => pongs++);
  client.on('close', () => (closed = true));
  // Five rounds: each pong comes back within the 50 ms timeout, or the client would have terminated.
  await until(() => pongs >= 5 || closed, WAIT, 'five pongs at the client');
  assert.equal(closed, false);
  assert.equal(client.readyState, WebSocket.OPEN);
});

test('server heartbeat: every ping is the same two bytes; an empty masked pong answers it without making protocol state, and the first message after it is parsed', async (t) => {
  const h = harness(t);
  const { raw, server } = await h.rawPair({ heartbeat: { interval: 60, timeout: 1000 } });
  raw.socket.setNoDelay(true);
  const pongs: Buffer[] = [];
  server.on('pong', (data: Buffer) => pongs.push(data));
  for (let i = 0; i < 4; i++) {
    const ping = await raw.readFrame();
    assert.deepEqual([ping.opcode, ping.fin, ping.masked, ping.payload.length], [0x9, true, false, 0]);
    raw.write(buildFrame({ opcode: 0xa, payload: '' }));
    await until(() => pongs.length === i + 1, WAIT, `pong ${i + 1} at the server`);
  }
  assert.deepEqual(pongs.map((p) => p.length), [0, 0, 0, 0]);
  assert.equal(server.readyState, WebSocket.OPEN);
  // The heartbeat alone left the connection without a frame parser or protocol state (docs/benchmarks.md, "Cost per connection").
  assert.equal(Reflect.get(server, 'conn'), null);
  // The first data frame makes them and is parsed as usual.
  const message = waitEvent<[Buffer, boolean]>(server, 'message');
  raw.write(buildFrame({ opcode: 0x1, payload: 'first' }));
  const [data, isBinary] = await message;
  assert.deepEqual([String(data), isBinary], ['first', false]);
  server.send('back');
  // Pings may come in between: read up to the text frame.
  let frame = await raw.readFrame();
  while (frame.opcode === 0x9) frame = await raw.readFrame();
  assert.deepEqual([frame.opcode, String(frame.payload)], [0x1, 'back']);
});

test('server heartbeat: a pong split over two reads, or one with a payload, is parsed as a frame and answers the ping', async (t) => {
  const h = harness(t);
  const { raw, server } = await h.rawPair({ heartbeat: { interval: 60, timeout: 1000 } });
  raw.socket.setNoDelay(true);
  const pongs: string[] = [];
  server.on('pong', (data: Buffer) => pongs.push(String(data)));
  for (let i = 0; i < 4; i++) {
    assert.equal((await raw.readFrame()).opcode, 0x9);
    if (i % 2 === 0) {
      const pong = buildFrame({ opcode: 0xa, payload: '' });
      raw.write(pong.subarray(0, 3));
      await sleep(20);
      raw.write(pong.subarray(3));
    } else {
      raw.write(buildFrame({ opcode: 0xa, payload: 'abc' }));
    }
    await until(() => pongs.length === i + 1, WAIT, `pong ${i + 1} at the server`);
  }
  assert.deepEqual(pongs, ['', 'abc', '', 'abc']);
  assert.equal(server.readyState, WebSocket.OPEN);
});

test('server heartbeat: an unmasked empty pong from a client is not taken as an answer: the connection fails with 1002', async (t) => {
  const h = harness(t);
  const { raw, server } = await h.rawPair({ heartbeat: { interval: 60, timeout: 1000 } });
  const closed = closeOf(server, WAIT);
  raw.write(buildFrame({ opcode: 0xa, payload: '', mask: false }));
  let frame = await raw.readFrame();
  while (frame.opcode === 0x9) frame = await raw.readFrame();
  assert.equal(frame.opcode, 0x8);
  assert.equal(frame.payload.readUInt16BE(0), 1002);
  assert.equal((await closed)[0], 1002);
});

test('server heartbeat: a silent peer is terminated once the timeout after the ping has passed, not before', async (t) => {
  const h = harness(t);
  const timeout = 300;
  const { raw, server } = await h.rawPair({ heartbeat: { interval: 100, timeout } });
  server.on('error', () => {});
  const closed = closeOf(server, 5000);
  assert.equal((await raw.readFrame()).opcode, 0x9);
  const pingedAt = performance.now();
  assert.equal((await closed)[0], 1006);
  const after = performance.now() - pingedAt;
  // The wheel keeps deadlines to within one step (here 6 ms); the upper bound is only a generous one (loaded machines).
  assert.ok(after >= timeout - 20, `terminated ${after.toFixed(0)} ms after the ping (timeout ${timeout} ms)`);
  assert.ok(after < timeout + 3000, `terminated ${after.toFixed(0)} ms after the ping`);
});
