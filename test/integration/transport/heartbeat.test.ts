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
