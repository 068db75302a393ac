/**
 * The guard between the SDK's unit tests (test/unit/client, on fakes) and the
 * real server, on loopback:
 *
 * 1. What the fakes answer is what the server answers: every reply the
 *    fakes build (`reply.*`, `sessionOpened`, `pollAnswer` in
 *    test/unit/client/fakes.ts, with the limits a default server announces)
 *    has the shape of the real server's reply to the same request, and the
 *    pushes the unit tests write by hand have the shape the wire types give
 *    them. A server that adds, drops or renames a field fails here.
 * 2. The scenarios the unit tests drive by hand run once against the real
 *    server with the SDK: reconnect and resume, acks (and the retry whose
 *    ack was lost), token refresh, fallback to SSE / long-polling and back
 *    to WebSocket.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryBroker } from '../../../src/brokers/memory/memory-broker.js';
import type { DisconnectedEvent, SubscribedEvent } from '../../../src/client/index.js';
import { WebSocket } from '../../../src/index.js';
import type { ClosingPush, ClosePush, ErrorReply, MessagePush, RefreshPush } from '../../../src/wire/messages.js';
import { DEFAULT_LIMITS, pollAnswer, reply, sessionOpened } from '../../unit/client/fakes.js';
import * as fb from '../carriers/helpers.js';
import { blockableWebSocket, connectFollowing, connectRefreshing, createClient, nextEvent, signToken, sleep, startServer, until, within } from './helpers.js';

/** The shape of a value: object keys (sorted) with the shapes of their values, an array's first element, else the type. */
function shape(value: unknown): unknown {
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.length === 0 ? [] : [shape(value[0])];
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value as object)
        .sort()
        .map((k) => [k, shape((value as Record<string, unknown>)[k])]),
    );
  }
  return typeof value;
}

/** Assert that `real` (from the server) and `fake` (what the unit fakes send) have the same shape. */
function sameShape(real: unknown, fake: unknown, what: string): void {
  assert.deepEqual(shape(real), shape(fake), `${what}: the real server sent ${JSON.stringify(real)}, the fakes ${JSON.stringify(fake)}`);
}

/** A server with the SDK tests' namespaces: `chat/*` keeps history with full presence, `arena/*` counts. */
const NAMESPACES = [
  { prefix: 'chat', history: { size: 100, ttlMs: 0 }, presence: 'full' as const, presenceBatchMs: 0 },
  { prefix: 'arena', presence: 'counts' as const },
];

describe("the unit fakes' replies have the real server's shape", () => {
  test('auth, sub (channel, with since, pattern), pub (and a repeated key), unsub, refresh, rpc, history, presence (full and counts), error', async (t) => {
    const { url, server } = await fb.startServer(t, { config: { namespaces: NAMESPACES } });
    server.rpc('echo', (data) => data);
    const c = await fb.connect(t, url);

    const auth = await c.ok('auth', { token: await fb.signToken('alice') });
    sameShape(auth, reply.auth(auth.id, { expiresIn: 3_600_000 }), 'auth');
    // A server with the default configuration announces exactly what the fakes do.
    assert.deepEqual(auth.limits, DEFAULT_LIMITS);

    const sub = await c.ok('sub', { channel: 'chat/a' });
    sameShape(sub, reply.sub(sub.id, 'chat/a', { offset: 0, epoch: 'e1' }), 'sub');
    const pub = await c.ok('pub', { channel: 'chat/a', data: { n: 1 }, key: 'k1' });
    sameShape(pub, reply.pub(pub.id, 1, 'e1'), 'pub');
    const again = await c.ok('pub', { channel: 'chat/a', data: { n: 1 }, key: 'k1' });
    sameShape(again, reply.pub(again.id, 1, 'e1', true), 'pub with a known key');
    assert.deepEqual([again.offset, again.epoch, again.duplicate], [pub.offset, pub.epoch, true]);
    const push = await c.nextOp('msg');
    const fakePush: MessagePush = { op: 'msg', channel: 'chat/a', offset: 1, epoch: 'e1', data: { n: 1 }, from: { client: 'c', user: 'alice' }, time: 1 };
    sameShape(push, fakePush, 'msg from a client');
    const unsub = await c.ok('unsub', { channel: 'chat/a' });
    sameShape(unsub, reply.unsub(unsub.id, 'chat/a'), 'unsub');
    const resumed = await c.ok('sub', { channel: 'chat/a', since: { offset: 0, epoch: pub.epoch } });
    sameShape(resumed, reply.sub(resumed.id, 'chat/a', { offset: 1, epoch: 'e1' }, true), 'sub with since');
    await c.nextOp('msg'); // the recovered one
    const pattern = await c.ok('sub', { channel: 'chat/+' });
    sameShape(pattern, reply.sub(pattern.id, 'chat/+', null), 'sub to a pattern');

    const refreshed = await c.ok('refresh', { token: await fb.signToken('alice', { ttl: 600 }) });
    sameShape(refreshed, reply.refresh(refreshed.id, 600_000), 'refresh');
    const rpc = await c.ok('rpc', { method: 'echo', data: { x: [1] } });
    sameShape(rpc, reply.rpc(rpc.id, { x: [1] }), 'rpc');

    await server.publish('chat/h', 'server-side');
    const history = await c.ok('history', { channel: 'chat/h' });
    const pubFromServer = { channel: 'chat/h', offset: 1, epoch: 'e1', data: 'server-side', time: 1 };
    sameShape(history, reply.history(history.id, 'chat/h', [pubFromServer], { offset: 1, epoch: 'e1' }), 'history');
    const since = await c.ok('history', { channel: 'chat/h', since: { offset: 0, epoch: history.position.epoch } });
    sameShape(since, reply.history(since.id, 'chat/h', [pubFromServer], { offset: 1, epoch: 'e1' }, true), 'history with since');

    const presence = await c.ok('presence', { channel: 'chat/a' });
    const me = { [auth.client]: { client: auth.client, user: 'alice' } };
    sameShape(presence, reply.presence(presence.id, 'chat/a', me), 'presence (full)');
    assert.deepEqual(presence.clients, me);
    await c.ok('sub', { channel: 'arena/1' });
    const counts = await c.ok('presence', { channel: 'arena/1' });
    sameShape(counts, reply.presenceCounts(counts.id, 'arena/1', 1, 1), 'presence (counts)');

    const refused = await c.request('sub', { channel: 'chat//a' });
    sameShape(refused, reply.error(refused.id, 400, 'invalid channel name'), 'error');
    const unknown = await c.request('rpc', { method: 'nope' });
    const fakeError: ErrorReply = reply.error(unknown.id, 404, 'no rpc method nope');
    assert.deepEqual(unknown, fakeError, 'the error the unit tests use for an unknown rpc method');
  });

  test("pushes: refresh, closing; fallback sessions: the open answer, a poll's answer and the close message", async (t) => {
    // refreshGraceMs longer than the token: the refresh push comes right after auth.
    const early = await fb.startServer(t, { config: { auth: { refreshGraceMs: 3_600_000 } } });
    const expiring = await fb.connect(t, early.url);
    await expiring.ok('auth', { token: await fb.signToken('alice', { ttl: 60 }) });
    const refresh = await expiring.nextOp('refresh');
    const fakeRefresh: RefreshPush = { op: 'refresh', expiresIn: 60_000 };
    sameShape(refresh, fakeRefresh, 'refresh push');

    const { url, base, server } = await fb.startServer(t);
    const c = await fb.connectAs(t, url, 'alice');
    const headers = { Authorization: `Bearer ${await fb.signToken('paula')}` };
    const opened = await fb.openRaw(base, 'poll', { headers });
    assert.equal(opened.status, 201);
    const id = opened.json().session as string;
    // Exactly what the fakes answer (the test server has the default fallback timings).
    assert.deepEqual(opened.json(), sessionOpened(id, 'poll'));
    assert.equal((await fb.post(base, id, [{ op: 'ping' }])).status, 204);
    const answer = (await fb.poll(base, id, 0)).json();
    assert.deepEqual(answer, pollAnswer([[1, { op: 'pong' }]]));

    const closing = server.close();
    const push = await c.nextOp('closing');
    const fakeClosing: ClosingPush = { op: 'closing', reason: 'server shutting down', reconnectAfter: 100 };
    sameShape(push, fakeClosing, 'closing push');
    const last = (await fb.poll(base, id, 1)).json();
    const fakeClose: ClosePush = { op: 'close', code: 1001, reason: 'server shutting down' };
    sameShape(last, pollAnswer([
      [2, fakeClosing],
      [3, fakeClose],
    ]), 'closing and close over long-polling');
    assert.deepEqual(last.messages[1].msg, fakeClose);
    await within(closing, 5000, 'the shutdown');
  });
});

/** A WebSocket class that keeps its instances (the client's sockets), to drop or pause one as the network would. */
function recordingWebSocket(): { WebSocket: typeof WebSocket; readonly instances: WebSocket[]; readonly last: WebSocket } {
  const instances: WebSocket[] = [];
  class Recorded extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      instances.push(this);
    }
  }
  return {
    WebSocket: Recorded,
    instances,
    get last() {
      return instances[instances.length - 1]!;
    },
  };
}

describe('the SDK scenarios against the real server', () => {
  test('reconnect and resume: a connection dropped by the network comes back by itself and resumes where it was, nothing lost or twice', async (t) => {
    const s = await startServer(t);
    const sockets = recordingWebSocket();
    const c = createClient(t, s.url, { token: await signToken('alice'), WebSocket: sockets.WebSocket as never, reconnect: { minDelayMs: 100, maxDelayMs: 100 } });
    const { got, events, sub } = await connectFollowing(c, 'chat/scenario');
    for (let i = 1; i <= 3; i++) await s.server.publish('chat/scenario', i);
    await until(() => got.length === 3, 3000, 'the first three');

    const disconnected = nextEvent(c, 'disconnected');
    const resumed = nextEvent(sub, 'subscribed', 3000);
    sockets.last.terminate(); // gone without a close frame
    const d: DisconnectedEvent = await disconnected;
    assert.deepEqual([d.code, d.willReconnect], [1006, true]);
    for (let i = 4; i <= 5; i++) await s.server.publish('chat/scenario', i); // while it is away
    await resumed;
    await until(() => got.length === 5, 3000, 'the two missed ones');
    await s.server.publish('chat/scenario', 6);
    await until(() => got.length === 6, 3000, 'a live one');
    await sleep(50);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(
      events.map((e) => [e.resumed, e.recovered]),
      [
        [false, true],
        [true, true],
      ],
    );
    assert.equal(sockets.instances.length, 2);
    assert.equal(c.state, 'connected');
  });

  test('acks: publish resolves with offset and epoch; one whose ack was lost is sent again after the reconnect with its key, answered duplicate, stored once', async (t) => {
    const broker = new MemoryBroker();
    const s = await startServer(t, { broker });
    const sockets = recordingWebSocket();
    const c = createClient(t, s.url, { token: await signToken('alice'), WebSocket: sockets.WebSocket as never, reconnect: { minDelayMs: 50, maxDelayMs: 50 } });
    await within(c.connect(), 3000, 'connect');
    const first = await c.publish('chat/acks', 'one');
    assert.equal(typeof first.epoch, 'string');
    assert.deepEqual(first, { offset: 1, epoch: first.epoch, duplicate: false });

    // The next ack is lost: the client reads nothing more, the server stores the publication, the connection drops.
    sockets.last.pause();
    const second = c.publish('chat/acks', 'two');
    const stored = async (): Promise<number> => (await broker.history('chat/acks')).position.offset;
    const deadline = Date.now() + 3000;
    while ((await stored()) < 2) {
      assert.ok(Date.now() < deadline, 'the server never stored the second publication');
      await sleep(5);
    }
    sockets.last.terminate();
    const result = await within(second, 5000, 'the ack after the reconnect');
    assert.deepEqual(result, { offset: 2, epoch: first.epoch, duplicate: true });
    assert.deepEqual(
      (await broker.history('chat/acks')).publications.map((p) => p.data),
      ['one', 'two'],
    );
  });

  test('token refresh: the client gets a new token refreshBeforeMs before the expiry the server announced, and stays connected past it', async (t) => {
    // refreshGraceMs 0: the server asks for nothing and closes (4002) at expiry unless the client refreshed by itself.
    const s = await startServer(t, { config: { auth: { refreshGraceMs: 0 } } });
    const { client: c, calls, disconnects } = await connectRefreshing(t, s.url, { ttl: 2, nextTtl: 600, refreshBeforeMs: 1500 });
    const expiresBy = Date.now() + 2000; // exp has one-second resolution: 1-2 s from now
    await until(() => calls() === 1, 3000, 'getToken before the expiry');
    await sleep(Math.max(0, expiresBy - Date.now()) + 300);
    assert.deepEqual(disconnects, []);
    assert.equal(c.state, 'connected');
    assert.equal(c.user, 'alice');
    assert.equal(calls(), 1);
    assert.equal((await c.publish('chat/refresh', 'still here')).offset, 1);
  });

  for (const kind of ['sse', 'poll'] as const) {
    test(`fallback: WebSocket blocked, the client connects over ${kind}, probes WebSocket through the real server and moves back, resuming`, async (t) => {
      const s = await startServer(t);
      const blockable = blockableWebSocket();
      const c = createClient(t, s.url, {
        token: await signToken('alice'),
        WebSocket: blockable.WebSocket as never,
        EventSource: fb.FetchEventSource as never,
        transports: ['websocket', kind],
        upgradeProbeDelayMs: 50,
        upgradeIntervalMs: 100,
      });
      const switches: string[] = [];
      c.on('transport', (e) => switches.push(`${e.from}>${e.to}`));
      const got: unknown[] = [];
      const events: SubscribedEvent[] = [];
      const sub = c.subscribe('chat/fallback', { onMessage: (p) => got.push(p.data), onSubscribed: (e) => events.push(e) });
      const subscribed = nextEvent(sub, 'subscribed');
      await within(c.connect(), 3000, `connect over ${kind}`);
      assert.equal(c.transport, kind);
      await subscribed;
      await s.server.publish('chat/fallback', 1);
      await until(() => got.length === 1, 3000, `a publication over ${kind}`);
      assert.equal((await c.publish('chat/fallback', 'acked over the fallback')).offset, 2);
      await until(() => got.length === 2, 3000, 'its own publication');

      const back = nextEvent(c, 'connected', 3000);
      blockable.unblock();
      assert.equal((await back).transport, 'websocket');
      assert.deepEqual(switches, [`websocket>${kind}`, `${kind}>websocket`]);
      await s.server.publish('chat/fallback', 3);
      await until(() => got.length === 3, 3000, 'a publication over WebSocket');
      await sleep(50);
      assert.deepEqual(got, [1, 'acked over the fallback', 3]);
      assert.deepEqual(events.at(-1) && [events.at(-1)!.resumed, events.at(-1)!.recovered], [true, true]);
      await until(() => s.server.hub.sessions.size === 1, 3000, `the ${kind} session to end`);
    });
  }
});
