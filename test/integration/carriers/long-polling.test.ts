/**
 * Long-polling: a poll waits and returns on a publish, times out empty, a
 * second poll ends the first, `ack` drops what arrived and re-sends what did
 * not, and a session nobody polls closes after the grace period (1006).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RealtimeServer } from '../../../src/server/realtime-server.js';
import { connectAs, HttpClient, openSession, poll, post, request, signToken, sleep, startServer, until, WAIT } from './helpers.js';

const auth = async (user: string) => ({ headers: { Authorization: `Bearer ${await signToken(user)}` } });

/** A session subscribed to `feed`, its `ok` taken with the first poll; returns the id and the ack to poll with. */
async function subscribed(t: Parameters<typeof openSession>[0], base: string, user = 'pia'): Promise<{ id: string; ack: number }> {
  const id = await openSession(t, base, 'poll', await auth(user));
  assert.equal((await post(base, id, [{ op: 'sub', id: 1, channel: 'feed' }])).status, 204);
  const first = (await poll(base, id, 0)).json();
  assert.equal(first.messages.length, 1);
  assert.equal(first.messages[0].msg.op, 'ok');
  return { id, ack: first.messages[0].id };
}

/** Follow a promise without awaiting it. */
function track<T>(p: Promise<T>): { settled: boolean; promise: Promise<T> } {
  const out = { settled: false, promise: p };
  p.then(
    () => (out.settled = true),
    () => (out.settled = true),
  );
  return out;
}

/** Whether the server holds a waiting poll (or stream) of its one session: the session's receiver. */
function pollWaiting(server: RealtimeServer): boolean {
  const [session] = server.hub.sessions.values();
  return (session?.transport as unknown as { receiver: unknown } | undefined)?.receiver != null;
}

// Polls here wait far longer than the test does (pollTimeoutMs 60 s, the poll request gives up after WAIT):
// an answer can only come from what the test does, never from the poll timing out.
const LONG = { fallbacks: { pollTimeoutMs: 60_000 } };

test('a poll with nothing to take waits, and returns as soon as a message is published', async (t) => {
  const { base, server } = await startServer(t, { config: LONG });
  const { id, ack } = await subscribed(t, base);
  const waiting = track(poll(base, id, ack));
  await until(() => pollWaiting(server), WAIT, 'the poll to reach the server');
  await sleep(100);
  assert.equal(waiting.settled, false, 'the poll waits while there is nothing to take');
  await server.publish('feed', { n: 1 });
  const res = await waiting.promise;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const body = res.json();
  assert.equal(body.messages.length, 1);
  assert.deepEqual(body.messages[0].id, ack + 1);
  assert.equal(body.messages[0].msg.op, 'msg');
  assert.deepEqual(body.messages[0].msg.data, { n: 1 });
});

test('a poll answers at once when messages are waiting, with all of them in order', async (t) => {
  const { base, server } = await startServer(t, { config: LONG });
  const { id, ack } = await subscribed(t, base);
  for (let i = 1; i <= 5; i++) await server.publish('feed', i);
  // Answered without waiting for more (nothing else is published; the poll timeout is far away).
  const body = (await poll(base, id, ack)).json();
  assert.deepEqual(
    body.messages.map((m: { id: number; msg: { data: number } }) => [m.id, m.msg.data]),
    [1, 2, 3, 4, 5].map((n) => [ack + n, n]),
  );
});

test('a poll with nothing to take is answered empty after pollTimeoutMs', async (t) => {
  const { base } = await startServer(t, { config: { fallbacks: { pollTimeoutMs: 200 } } });
  const { id, ack } = await subscribed(t, base);
  const started = Date.now();
  const res = await poll(base, id, ack);
  const waited = Date.now() - started;
  assert.deepEqual(res.json(), { messages: [] });
  // Not before the timeout (less 10 ms for the timers' millisecond rounding); how much later depends on the machine.
  assert.ok(waited >= 190, `answered after ${waited} ms, before pollTimeoutMs`);
});

test('a second concurrent poll ends the first with an empty answer and takes the next message', async (t) => {
  const { base, server } = await startServer(t, { config: LONG });
  const { id, ack } = await subscribed(t, base);
  const first = track(poll(base, id, ack));
  await until(() => pollWaiting(server), WAIT, 'the first poll to reach the server');
  assert.equal(first.settled, false, 'the first poll waits');
  const second = track(poll(base, id, ack));
  assert.deepEqual((await first.promise).json(), { messages: [] });
  assert.equal(second.settled, false, 'the second poll waits in its place');
  await server.publish('feed', 'next');
  const body = (await second.promise).json();
  assert.equal(body.messages.length, 1);
  assert.equal(body.messages[0].msg.data, 'next');
});

test('ack drops what arrived; an answer that got lost is sent again to the poll that still acks the old id', async (t) => {
  const { base, server } = await startServer(t, { config: { fallbacks: { pollTimeoutMs: 300 } } });
  const { id, ack } = await subscribed(t, base);
  for (let i = 1; i <= 3; i++) await server.publish('feed', i);
  const got = (await poll(base, id, ack)).json().messages;
  assert.equal(got.length, 3);
  // "Lost": poll again with the old ack: the same three come again, same ids.
  assert.deepEqual((await poll(base, id, ack)).json().messages, got);
  // Acknowledge two: only the third is left.
  assert.deepEqual((await poll(base, id, got[1].id)).json().messages, [got[2]]);
  // Acknowledge all: the poll waits (and times out empty).
  assert.deepEqual((await poll(base, id, got[2].id)).json().messages, []);
});

test('ack beyond what was sent, or not a number: 400, and the session goes on', async (t) => {
  const { base } = await startServer(t);
  const { id, ack } = await subscribed(t, base);
  const ahead = await poll(base, id, ack + 10);
  assert.equal(ahead.status, 400);
  assert.match(ahead.json().error, /beyond/);
  for (const bad of ['x', '-1', '1.5', '']) {
    const res = await poll(base, id, bad as unknown as number);
    assert.equal(res.status, 400, `ack=${bad}`);
  }
  await post(base, id, [{ op: 'ping' }]);
  assert.deepEqual((await poll(base, id, ack)).json().messages.map((m: { msg: unknown }) => m.msg), [{ op: 'pong' }]);
});

test('no poll for graceMs: the session closes as 1006 (presence leave, subscriptions dropped), then 404', async (t) => {
  const { base, url, server } = await startServer(t, {
    config: { fallbacks: { graceMs: 300, pollTimeoutMs: 1000 }, namespaces: [{ prefix: 'room', presence: 'full' }] },
  });
  const watcher = await connectAs(t, url, 'watcher');
  await watcher.ok('sub', { channel: 'room/1', presence: true });
  const client = await HttpClient.open(t, base, 'poll', await auth('polly'));
  await client.ok('sub', { channel: 'room/1', presence: true });
  const isPolly = (m: Record<string, any>) => m.clients.some((c: { user: string }) => c.user === 'polly');
  await watcher.next((m) => m.op === 'join' && isPolly(m), WAIT, 'polly joining');
  const codes: number[] = [];
  const original = server.hub.observer.connectionClosed.bind(server.hub.observer);
  server.hub.observer.connectionClosed = (kind: string, code: number) => {
    codes.push(code);
    original(kind, code);
  };
  // A poll that waits longer than graceMs keeps the session: it has a receiver all along.
  await sleep(600);
  assert.equal(server.hub.sessions.size, 2);

  const stopped = Date.now();
  await client.stop();
  await watcher.next((m) => m.op === 'leave' && isPolly(m), WAIT, 'polly leaving');
  assert.ok(Date.now() - stopped >= 250);
  assert.deepEqual(codes, [1006]);
  assert.deepEqual(server.hub.channelStats(), [{ channel: 'room/1', subscribers: 1 }]);
  assert.equal((await poll(base, client.id, client.ack)).status, 404);
});

test('a burst larger than the buffer, queued in one turn, is taken whole by the waiting poll', async (t) => {
  const { base, server } = await startServer(t, { config: { fallbacks: { bufferMessages: 10, pollTimeoutMs: 2000 } } });
  const { id, ack } = await subscribed(t, base);
  const waiting = poll(base, id, ack);
  await sleep(50);
  // One turn: 50 publications (the memory broker fans out synchronously).
  for (let i = 1; i <= 50; i++) void server.publish('feed', i);
  const body = (await waiting).json();
  assert.equal(body.messages.length, 50);
  assert.deepEqual(
    body.messages.map((m: { msg: { data: number } }) => m.msg.data),
    Array.from({ length: 50 }, (_, i) => i + 1),
  );
  assert.equal(server.hub.sessions.size, 1);
});

test('a poll client and a WebSocket client see the same stream of a busy channel', async (t) => {
  const { base, url, server } = await startServer(t);
  const ws = await connectAs(t, url, 'w');
  await ws.ok('sub', { channel: 'feed' });
  const lp = await HttpClient.open(t, base, 'poll', await auth('p'));
  await lp.ok('sub', { channel: 'feed' });
  for (let i = 1; i <= 200; i++) {
    await server.publish('feed', i);
    if (i % 20 === 0) await sleep(5);
  }
  const viaWs = (await ws.take('msg', 200)).map((m) => m.data);
  await until(() => lp.received.filter((r) => r.msg.op === 'msg').length === 200, WAIT, '200 messages by polling');
  assert.deepEqual(
    lp.received.filter((r) => r.msg.op === 'msg').map((r) => r.msg.data),
    viaWs,
  );
});

test('the app-level heartbeat: pings arrive in polls; a client that answers stays, one that does not is dropped', async (t) => {
  const { base, server } = await startServer(t, { config: { heartbeat: { intervalMs: 100, timeoutMs: 150 }, fallbacks: { pollTimeoutMs: 2000 } } });
  const answering = await HttpClient.open(t, base, 'poll', await auth('alive'));
  const silent = await HttpClient.open(t, base, 'poll', await auth('silent'));
  for (let i = 0; i < 4; i++) {
    await answering.nextOp('ping');
    await answering.send({ op: 'pong' });
  }
  await silent.nextOp('ping');
  await until(() => silent.gone, WAIT, 'the silent session to be dropped (404)');
  assert.equal(server.hub.sessions.size, 1);
  assert.equal([...server.hub.sessions.values()][0]!.identity?.user, 'alive');
});

test('DELETE while a poll waits answers the poll (empty) and ends the session', async (t) => {
  const { base, server } = await startServer(t, { config: LONG });
  const { id, ack } = await subscribed(t, base);
  const waiting = track(poll(base, id, ack));
  await until(() => pollWaiting(server), WAIT, 'the poll to reach the server');
  assert.equal(waiting.settled, false, 'the poll waits');
  assert.equal((await request(`${base}/rt/session/${id}`, { method: 'DELETE' })).status, 204);
  assert.deepEqual((await waiting.promise).json(), { messages: [] });
  await until(() => server.hub.sessions.size === 0, WAIT, 'the session to end');
});
