/**
 * Backpressure both ways: `send()` returns false past the socket's
 * high-water mark and 'drain' follows; `pause()`/`resume()` stop and restart
 * 'message' events; `bufferedAmount` grows and shrinks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { WebSocket } from '../../../src/index.js';
import { harness, sleep, until, waitEvent, within, WAIT, type Harness } from './helpers.js';

function pair(h: Harness, options: Parameters<Harness['server']>[0] = {}) {
  return h.pair(options, { perMessageDeflate: false });
}

/** Send `chunk` until send() returns false (bounded); returns how many were sent. */
function fill(ws: WebSocket, chunk: Buffer, max = 4096): number {
  for (let i = 1; i <= max; i++) {
    if (!ws.send(chunk)) return i;
  }
  throw new Error(`send() never returned false after ${max} messages of ${chunk.length} bytes`);
}

for (const direction of ['client → paused server', 'server → paused client'] as const) {
  test(`${direction}: send() returns false past the high-water mark, 'drain' follows resume()`, async (t) => {
    const h = harness(t);
    const { client, server } = await pair(h);
    const [sender, receiver] = direction === 'client → paused server' ? [client, server] : [server, client];
    receiver.pause();
    assert.equal(receiver.isPaused, true);
    assert.equal(sender.bufferedAmount, 0);

    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const sent = fill(sender, chunk);
    assert.ok(sender.bufferedAmount >= 16 * 1024, `bufferedAmount ${sender.bufferedAmount} after send() returned false`);
    const grown = sender.bufferedAmount;
    // Still false while nothing drains.
    assert.equal(sender.send(chunk), false);
    assert.ok(sender.bufferedAmount > grown, 'bufferedAmount grows with each send');

    let received = 0;
    receiver.on('message', (data) => {
      assert.equal((data as Buffer).length, chunk.length);
      received++;
    });
    const drained = waitEvent(sender, 'drain', 10_000);
    receiver.resume();
    assert.equal(receiver.isPaused, false);
    await drained;
    assert.equal(sender.bufferedAmount, 0, 'bufferedAmount is back to 0 at drain');
    await within(
      (async () => {
        while (received < sent + 1) await sleep(10);
      })(),
      10_000,
      `all ${sent + 1} messages`,
    );
    assert.equal(received, sent + 1);
    assert.equal(sender.send('small'), true, 'send() returns true again');
  });
}

test('pause() stops message events, resume() delivers them in order', async (t) => {
  const h = harness(t);
  const { client, server } = await pair(h);
  server.pause();
  const got: string[] = [];
  server.on('message', (d) => got.push(String(d)));
  client.send('one');
  client.send('two');
  client.send('three');
  // Let them reach the server while it is paused.
  const ping = waitEvent(client, 'pong');
  client.ping();
  // A paused reader does not read the pong's ping either, so wait on time here.
  await sleep(150);
  assert.deepEqual(got, [], 'no message while paused');
  server.resume();
  await ping;
  await until(() => got.length >= 3, WAIT, 'three messages after resume');
  assert.deepEqual(got, ['one', 'two', 'three']);
});

test("pause() from a 'message' listener holds back messages already received in the same chunk", async (t) => {
  const h = harness(t);
  const { client, server } = await pair(h);
  const got: string[] = [];
  server.on('message', (d) => {
    got.push(String(d));
    if (got.length === 1) server.pause();
  });
  // Corked: the five frames leave in one write and arrive together.
  const socket = (client as unknown as { socket: import('node:net').Socket }).socket;
  socket.cork();
  for (let i = 1; i <= 5; i++) client.send(`m${i}`);
  socket.uncork();
  await until(() => got.length >= 1, WAIT, 'the first message');
  await sleep(100);
  assert.deepEqual(got, ['m1']);
  server.resume();
  await until(() => got.length >= 5, WAIT, 'the other messages');
  assert.deepEqual(got, ['m1', 'm2', 'm3', 'm4', 'm5']);
});

test('pause() and resume() on the client side', async (t) => {
  const h = harness(t);
  const { client, server } = await pair(h);
  const got: string[] = [];
  client.on('message', (d) => got.push(String(d)));
  client.pause();
  assert.equal(client.isPaused, true);
  server.send('a');
  server.send('b');
  // Both are out of the server's buffers (in the client's kernel buffer, on loopback) ...
  await until(() => server.bufferedAmount === 0, WAIT, 'the server to write both messages');
  // ... and a paused client reads none of them (an unpaused one gets them within a turn or two).
  await sleep(150);
  assert.deepEqual(got, [], 'no message while paused');
  client.resume();
  assert.equal(client.isPaused, false);
  await until(() => got.length >= 2, WAIT, 'both messages after resume');
  assert.deepEqual(got, ['a', 'b']);
});

test('bufferedAmount is 0 when idle and counts a large pending message', async (t) => {
  const h = harness(t);
  const { client, server } = await pair(h);
  server.pause();
  assert.equal(client.bufferedAmount, 0);
  const big = Buffer.alloc(32 * 1024 * 1024);
  client.send(big);
  // 32 MiB cannot all be in the kernel's loopback buffers at once.
  assert.ok(client.bufferedAmount > 0, 'some of the message is still buffered');
  assert.ok(client.bufferedAmount <= big.length + 14);
  const drained = waitEvent(client, 'drain', 10_000);
  const got = waitEvent<[Buffer]>(server, 'message', 10_000);
  server.resume();
  await drained;
  assert.equal(client.bufferedAmount, 0);
  assert.equal((await got)[0].length, big.length);
});

test('backpressure with permessage-deflate: queued compressed sends count in bufferedAmount and drain', async (t) => {
  const h = harness(t);
  const { client, server } = await h.pair({ perMessageDeflate: { threshold: 0 } }, { perMessageDeflate: { threshold: 0 } });
  assert.match(client.extensions, /permessage-deflate/);
  server.pause();
  const chunk = Buffer.alloc(1000, 'x');
  const results: boolean[] = [];
  for (let i = 0; i < 50; i++) results.push(client.send(chunk));
  // Compression is asynchronous: the messages wait in the queue and count.
  assert.equal(client.bufferedAmount, 50 * 1000);
  assert.equal(results[0], true);
  assert.equal(results[49], false, 'past the 16 KiB high-water mark');
  const drained = waitEvent(client, 'drain');
  let received = 0;
  server.on('message', () => received++);
  server.resume();
  await drained;
  await until(() => received >= 50, WAIT, '50 messages');
  await until(() => client.bufferedAmount === 0, WAIT, 'bufferedAmount back to 0');
});
