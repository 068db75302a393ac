/**
 * The life of realtime connections through the real server: app-level
 * keep-alive (docs/protocol.md "Requests and replies"), rpc, and graceful
 * shutdown (`closing` with a jittered `reconnectAfter`, 1001, 503 for new
 * upgrades, pending writes delivered first), ending with the full story:
 * two servers on one broker, one shuts down, its clients resume on the other
 * without loss or duplicates.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { MemoryBroker, MemoryPresenceStore } from '../../../src/brokers/memory/memory-broker.js';
import { connect, connectAs, signToken, sleep, startServer, until, within, type Message, type RtClient } from './helpers.js';

describe('app-level keep-alive', () => {
  const config = { heartbeat: { intervalMs: 60, timeoutMs: 150 } };

  test('the server sends {"op":"ping"}; a client that answers pong stays', async (t) => {
    const { url } = await startServer(t, { config });
    const c = await connectAs(t, url, 'alice');
    // Five rounds, each answered: well past the 150 ms timeout of the first ping, so the answers are what keeps it.
    for (let i = 0; i < 5; i++) {
      const ping = await c.nextOp('ping', 1000);
      assert.deepEqual(ping, { op: 'ping' });
      c.send({ op: 'pong' });
    }
    assert.equal(c.isClosed, false);
    assert.equal((await c.request('sub', { channel: 'a/b' })).op, 'ok');
  });

  test('a client that never answers (and does not auto-pong either) is dropped', async (t) => {
    const { url, server } = await startServer(t, { config });
    const c = await connectAs(t, url, 'alice', {}, { autoPong: false });
    const alive = await connectAs(t, url, 'bob');
    alive.ws.on('message', (data: Buffer) => {
      if (data.toString() === '{"op":"ping"}') alive.send({ op: 'pong' });
    });
    await c.nextOp('ping', 1000);
    const { code } = await c.closeOf(2000);
    assert.equal(code, 1006, 'dropped without a closing handshake');
    await until(() => server.hub.sessions.size === 1, 1000, 'the server to forget the dead client');
    assert.equal(alive.isClosed, false);
    assert.equal((await alive.request('sub', { channel: 'a/b' })).op, 'ok');
  });

  test('a client may ping the server and gets pong', async (t) => {
    const { url } = await startServer(t);
    const c = await connectAs(t, url, 'alice');
    c.send({ op: 'ping' });
    assert.deepEqual(await c.nextOp('pong'), { op: 'pong' });
  });
});

describe('rpc', () => {
  test('a registered method is answered with its result; unknown methods 404; a throwing handler gets an error and the connection stays', async (t) => {
    const { url, server, logs } = await startServer(t);
    server.rpc('sum', (data) => {
      const { a, b } = data as { a: number; b: number };
      return a + b;
    });
    server.rpc('later', async (data, ctx) => {
      await sleep(10);
      return { echoed: data, user: ctx.user };
    });
    server.rpc('nothing', () => undefined);
    server.rpc('boom', () => {
      throw new Error('secret internal detail');
    });
    server.rpc('reject', async () => {
      throw new Error('async secret');
    });
    const c = await connectAs(t, url, 'alice');
    const sum = await c.request('rpc', { method: 'sum', data: { a: 2, b: 40 } });
    assert.deepEqual(sum, { op: 'ok', id: sum.id, data: 42 });
    const later = await c.ok('rpc', { method: 'later', data: [1, 'x'] });
    assert.deepEqual(later.data, { echoed: [1, 'x'], user: 'alice' });
    assert.equal((await c.ok('rpc', { method: 'nothing' })).data, null);
    const unknown = await c.request('rpc', { method: 'nope' });
    assert.equal(unknown.op, 'error');
    assert.equal(unknown.code, 404);
    for (const method of ['boom', 'reject']) {
      const failed = await c.request('rpc', { method });
      assert.equal(failed.op, 'error', method);
      assert.ok(failed.code >= 500 && failed.code <= 599, `${method}: code ${failed.code}`);
      assert.doesNotMatch(failed.message, /secret/, 'the handler error leaked to the client');
    }
    assert.ok(logs.some((l) => l.level === 'error' && /secret internal detail/.test(String(l.err))), 'the failure is not logged');
    assert.equal(c.isClosed, false);
    assert.equal((await c.request('rpc', { method: 'sum', data: { a: 1, b: 1 } })).data, 2);
  });
});

/** Messages up to `closing` and the close itself. */
async function untilClosed(c: RtClient, ms = 3000): Promise<{ code: number; messages: Message[] }> {
  const { code } = await c.closeOf(ms);
  return { code, messages: c.received };
}

describe('graceful shutdown', () => {
  test('every client gets closing with its own reconnectAfter in [0, reconnectJitterMs), then 1001; close() resolves', async (t) => {
    const s = await startServer(t, { config: { shutdown: { timeoutMs: 2000, reconnectJitterMs: 5000 } } });
    const clients = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((u) => connectAs(t, s.url, u)));
    const closed = s.server.close();
    const results = await Promise.all(clients.map((c) => untilClosed(c)));
    const hints: number[] = [];
    for (const { code, messages } of results) {
      assert.equal(code, 1001);
      const closing = messages.filter((m) => m.op === 'closing');
      assert.equal(closing.length, 1);
      assert.equal(messages[messages.length - 1], closing[0], 'closing is the last message');
      const after = closing[0]!.reconnectAfter;
      assert.ok(Number.isInteger(after) && after >= 0 && after < 5000, `reconnectAfter ${after}`);
      hints.push(after);
    }
    assert.ok(new Set(hints).size > 1, `every client got the same hint: ${hints}`);
    await within(closed, 3000, 'close() to resolve');
    assert.equal(s.server.hub.sessions.size, 0);
  });

  test('while closing, new upgrades get 503 with Retry-After and /readyz is 503', async (t) => {
    const s = await startServer(t, { config: { shutdown: { timeoutMs: 2000 } } });
    const lingering = await connectAs(t, s.url, 'a');
    lingering.ws.pause(); // does not answer the close: the shutdown waits for it
    // An upgrade already on its way (new connections are no longer accepted once closing).
    const sock = net.connect(s.port, '127.0.0.1');
    t.after(() => sock.destroy());
    await within(new Promise((resolve) => sock.once('connect', resolve)), 2000, 'connect');
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
    sock.write(`GET /rt HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n`);
    await sleep(20);
    const closed = s.server.close();
    sock.write('Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    await until(() => got.includes('\r\n\r\n'), 2000, 'the answer to the upgrade');
    assert.match(got, /^HTTP\/1\.1 503 /);
    assert.match(got, /\r\nRetry-After: \d+\r\n/i);
    lingering.ws.resume();
    assert.equal((await lingering.closeOf()).code, 1001);
    await within(closed, 3000, 'close() to resolve');
  });

  test('a client that never completes the close is terminated after shutdown.timeoutMs', async (t) => {
    const s = await startServer(t, { config: { shutdown: { timeoutMs: 300 } } });
    const stuck = await connectAs(t, s.url, 'a');
    stuck.ws.pause();
    const started = Date.now();
    await within(s.server.close(), 3000, 'close() to resolve');
    const took = Date.now() - started;
    assert.ok(took >= 250, `resolved after ${took} ms, before the timeout`);
    stuck.ws.resume();
    await stuck.closeOf(2000);
  });

  test('pending writes are delivered before the close', async (t) => {
    const s = await startServer(t);
    const c = await connectAs(t, s.url, 'alice');
    await c.ok('sub', { channel: 'burst/x' });
    c.ws.pause(); // let the server's writes pile up
    const data = 'p'.repeat(2048);
    const n = 300;
    await Promise.all(Array.from({ length: n }, () => s.server.publish('burst/x', data)));
    const closed = s.server.close();
    await sleep(50);
    c.ws.resume();
    const { code, messages } = await untilClosed(c);
    assert.equal(code, 1001);
    const msgs = messages.filter((m) => m.op === 'msg');
    assert.deepEqual(
      msgs.map((m) => m.offset),
      Array.from({ length: n }, (_, i) => i + 1),
    );
    assert.equal(messages[messages.length - 1]!.op, 'closing');
    await within(closed, 3000, 'close() to resolve');
  });

  test('two servers on one broker: clients of the one shutting down resume on the other with no loss and no duplicate', async (t) => {
    // One memory backend, a node per server (as two processes on one Redis); one presence store.
    const broker = new MemoryBroker();
    const peer = broker.peer();
    const presence = new MemoryPresenceStore();
    t.after(async () => {
      await broker.close();
      await peer.close();
      await presence.close();
    });
    const config = { namespaces: [{ prefix: 'chat', history: { size: 1000, ttlMs: 0 }, presence: 'full' }], shutdown: { reconnectJitterMs: 200 } };
    const a = await startServer(t, { broker, presence, config });
    const b = await startServer(t, { broker: peer, presence, config });

    // A watcher on B sees every publication, live.
    const watcher = await connectAs(t, b.url, 'watcher');
    await watcher.ok('sub', { channel: 'chat/room' });
    // Clients on A, with live messages on A.
    const users = ['u1', 'u2', 'u3'];
    const onA = await Promise.all(users.map((u) => connectAs(t, a.url, u)));
    const last = new Map<RtClient, { offset: number; epoch: string }>();
    for (const c of onA) {
      const sub = await c.ok('sub', { channel: 'chat/room' });
      last.set(c, sub.position);
    }
    for (let i = 1; i <= 3; i++) await a.server.publish('chat/room', `before ${i}`);
    for (const c of onA) {
      const got = await c.take('msg', 3);
      assert.deepEqual(
        got.map((m) => m.data),
        ['before 1', 'before 2', 'before 3'],
      );
      last.set(c, { offset: got[2]!.offset, epoch: got[2]!.epoch });
    }

    // A shuts down; messages keep coming through B meanwhile.
    const closedA = a.server.close();
    const hints = await Promise.all(onA.map(async (c) => (await c.nextOp('closing')).reconnectAfter as number));
    await Promise.all(onA.map(async (c) => assert.equal((await c.closeOf()).code, 1001)));
    await within(closedA, 3000, 'A to close');
    // What was passed in belongs to the caller: A closed neither its broker node nor the shared presence store.
    assert.equal((await broker.history('chat/room')).position.offset, 3);
    assert.deepEqual(Object.values(await presence.get('chat/room')).map((c) => c.user), ['watcher']);
    for (let i = 1; i <= 4; i++) await b.server.publish('chat/room', `meanwhile ${i}`);

    // Each client comes back on B after its hint, from its last position.
    const resumed = await Promise.all(
      onA.map(async (c, i) => {
        await sleep(hints[i]!);
        const again = await connect(t, b.url, { headers: { Authorization: `Bearer ${await signToken(users[i]!)}` } });
        const sub = await again.ok('sub', { channel: 'chat/room', since: last.get(c) });
        assert.equal(sub.recovered, true);
        return again;
      }),
    );
    const here = (await watcher.ok('presence', { channel: 'chat/room' })).clients as Record<string, { user: string }>;
    assert.deepEqual(Object.values(here).map((c) => c.user).sort(), ['u1', 'u2', 'u3', 'watcher']);
    await b.server.publish('chat/room', 'after');
    for (const c of resumed) {
      const got = await c.take('msg', 5);
      assert.deepEqual(
        got.map((m) => m.data),
        ['meanwhile 1', 'meanwhile 2', 'meanwhile 3', 'meanwhile 4', 'after'],
      );
      assert.deepEqual(
        got.map((m) => m.offset),
        [4, 5, 6, 7, 8],
      );
      await sleep(20);
      assert.deepEqual(c.pending().filter((m) => m.op === 'msg'), [], 'duplicates');
    }
    const all = await watcher.take('msg', 8);
    assert.deepEqual(
      all.map((m) => m.offset),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
  });
});
