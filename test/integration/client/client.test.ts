/**
 * The client SDK (src/client) in Node against the real realtime server on
 * loopback, over our own `WebSocket`: pub/sub, publish acks, rpc, presence,
 * history, MessagePack, auth failures that must not reconnect, token
 * refresh, and the server going away — restarted on the same port with the
 * same broker (resume with no loss and no duplicate, publications queued
 * while away), and failover to a second server.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryBroker, MemoryPresenceStore } from '../../../src/brokers/memory/memory-broker.js';
import { ClientError, type ClientState, type Publication, type ReconnectingEvent } from '../../../src/client/index.js';
import { WebSocket } from '../../../src/index.js';
import { blockableWebSocket, connectFollowing, connectRefreshing, createClient, createServer, nextEvent, signToken, sleep, startServer, until, within } from './helpers.js';

/** A shared broker and presence store that outlive the servers of one test (closed after it). */
function sharedBackend(t: { after(fn: () => Promise<void>): void }): { broker: MemoryBroker; presence: MemoryPresenceStore } {
  const broker = new MemoryBroker();
  const presence = new MemoryPresenceStore();
  t.after(async () => {
    await broker.close();
    await presence.close();
  });
  return { broker, presence };
}

describe('client SDK against the realtime server', () => {
  test('pub/sub round trip between two clients; acks carry offset and epoch', async (t) => {
    const s = await startServer(t);
    const alice = createClient(t, s.url, { token: await signToken('alice') });
    const bob = createClient(t, s.url, { token: await signToken('bob') });
    const got: Publication[] = [];
    const sub = alice.subscribe('chat/lobby', { onMessage: (p) => got.push(p) });
    const states: ClientState[] = [];
    alice.on('state', (st) => states.push(st));
    const connected = nextEvent(alice, 'connected');
    // Listen before connecting: the subscription may be confirmed in the same turn as the connection.
    const subscribedEvent = nextEvent(sub, 'subscribed');
    await within(Promise.all([alice.connect(), bob.connect()]), 3000, 'connect');
    const info = await connected;
    assert.equal(info.transport, 'websocket');
    assert.equal(info.user, 'alice');
    assert.equal(typeof info.client, 'string');
    assert.deepEqual(states, ['connecting', 'connected']);
    const subscribed = await subscribedEvent;
    assert.equal(subscribed.recovered, true);
    assert.equal(subscribed.resumed, false);

    const a1 = await bob.publish('chat/lobby', { text: 'one' });
    const a2 = await bob.publish('chat/lobby', { text: 'two' });
    assert.equal(a1.offset, 1);
    assert.equal(a2.offset, 2);
    assert.equal(a1.epoch, a2.epoch);
    assert.equal(a1.duplicate, false);
    await until(() => got.length === 2, 3000, 'two publications');
    assert.deepEqual(
      got.map((p) => p.data),
      [{ text: 'one' }, { text: 'two' }],
    );
    assert.equal(got[0]!.from?.user, 'bob');
    assert.equal('op' in got[0]!, false, 'the wire op is not part of the publication');
    assert.deepEqual(sub.position, { offset: 2, epoch: a2.epoch });

    // Unsubscribed: nothing more arrives.
    await within(sub.unsubscribe(), 3000, 'unsubscribe');
    assert.equal(sub.state, 'unsubscribed');
    await bob.publish('chat/lobby', { text: 'three' });
    await sleep(50);
    assert.equal(got.length, 2);
  });

  test('volatile publications are delivered and acked; patterns receive the concrete channel', async (t) => {
    const s = await startServer(t);
    const c = createClient(t, s.url, { token: await signToken('alice') });
    const got: Publication[] = [];
    const sub = c.subscribe('arena/+', { onMessage: (p) => got.push(p) });
    const subscribed = nextEvent(sub, 'subscribed');
    await within(c.connect(), 3000, 'connect');
    await subscribed;
    await c.publish('arena/1', 'cursor', { volatile: true });
    await c.publish('arena/2', 'x');
    await until(() => got.length === 2, 3000, 'two publications');
    assert.equal(got[0]!.volatile, true);
    assert.deepEqual(
      got.map((p) => p.channel),
      ['arena/1', 'arena/2'],
    );
  });

  test('MessagePack over WebSocket', async (t) => {
    const s = await startServer(t);
    const c = createClient(t, s.url, { token: await signToken('alice'), protocol: 'msgpack' });
    const got: unknown[] = [];
    const sub = c.subscribe('chat/bin', { onMessage: (p) => got.push(p.data) });
    const subscribed = nextEvent(sub, 'subscribed');
    await within(c.connect(), 3000, 'connect');
    await subscribed;
    await c.publish('chat/bin', { n: 1, bytes: new Uint8Array([1, 2, 3]) });
    await until(() => got.length === 1, 3000, 'the publication');
    const data = got[0] as { n: number; bytes: Uint8Array };
    assert.equal(data.n, 1);
    assert.deepEqual([...data.bytes], [1, 2, 3]);
  });

  test('rpc: the result, and an error for an unknown method', async (t) => {
    const s = await startServer(t);
    s.server.rpc('add', (data) => {
      const { a, b } = data as { a: number; b: number };
      return a + b;
    });
    s.server.rpc('whoami', (_data, ctx) => ctx.user);
    const c = createClient(t, s.url, { token: await signToken('alice') });
    await within(c.connect(), 3000, 'connect');
    assert.equal(await c.rpc('add', { a: 2, b: 3 }), 5);
    assert.equal(await c.rpc('whoami'), 'alice');
    await assert.rejects(c.rpc('nope'), (err: ClientError) => err.code === 'RT_CLIENT_SERVER_ERROR' && err.serverCode === 404);
  });

  test('send: the handler runs, nothing waits for an answer; dropped while disconnected or over the budget; a refusal is an error event', async (t) => {
    const s = await startServer(t, { config: { limits: { messageRate: { perSecond: 1, burst: 20 } } } });
    const inputs: unknown[] = [];
    s.server.rpc('input', (data, ctx) => void inputs.push([ctx.user, data]));
    const c = createClient(t, s.url, { token: await signToken('alice') });
    assert.equal(c.send('input', 0), false, 'not connected: dropped');
    await within(c.connect(), 3000, 'connect');
    assert.equal(c.send('input', 1), true);
    assert.equal(c.send('input'), true);
    await until(() => inputs.length === 2, 3000, 'both sends to run');
    assert.deepEqual(inputs, [['alice', 1], ['alice', undefined]]);
    const refused = nextEvent(c, 'error');
    assert.equal(c.send('nope'), true);
    const err = (await within(refused, 3000, 'the error event')) as ClientError;
    assert.equal(err.code, 'RT_CLIENT_SERVER_ERROR');
    assert.equal(err.serverCode, 404);
    // Past the server's announced budget a send is dropped here, not queued (it would be stale when it went).
    let sent = 0;
    for (let i = 0; i < 40; i++) if (c.send('input', 100 + i)) sent++;
    assert.ok(sent > 0 && sent < 40, `${sent} of 40 went out`);
    await until(() => inputs.length === 2 + sent, 3000, 'the sends that went out to run');
    assert.throws(() => c.send(''), (e: ClientError) => e.code === 'RT_CLIENT_INVALID_ARGUMENT');
  });

  test('presence: join and leave events, the presence list, counts', async (t) => {
    const s = await startServer(t);
    const alice = createClient(t, s.url, { token: await signToken('alice') });
    const bob = createClient(t, s.url, { token: await signToken('bob') });
    const joins: string[] = [];
    const leaves: string[] = [];
    const sub = alice.subscribe('chat/room', {
      presence: true,
      onJoin: (clients) => joins.push(...clients.map((c) => c.user)),
      onLeave: (clients) => leaves.push(...clients.map((c) => c.user)),
    });
    const subscribed = nextEvent(sub, 'subscribed');
    await within(alice.connect(), 3000, 'alice connect');
    await subscribed;
    await until(() => joins.includes('alice'), 3000, 'alice joins herself');
    bob.subscribe('chat/room');
    await within(bob.connect(), 3000, 'bob connect');
    await until(() => joins.includes('bob'), 3000, 'bob joins');
    const list = await alice.presence('chat/room');
    assert.equal(list.channel, 'chat/room');
    const users = Object.values(list.clients as Record<string, { user: string }>)
      .map((c) => c.user)
      .sort();
    assert.deepEqual(users, ['alice', 'bob']);
    bob.close();
    await until(() => leaves.includes('bob'), 3000, 'bob leaves');

    const counts: number[] = [];
    const arena = alice.subscribe('arena/9', { presence: true, onCount: (c) => counts.push(c.clients) });
    await nextEvent(arena, 'subscribed');
    const stats = await alice.presence('arena/9');
    assert.equal(stats.clients, 1);
    await until(() => counts.length > 0, 3000, 'a count event');
  });

  test('history: the newest publications and those after a position', async (t) => {
    const s = await startServer(t);
    const c = createClient(t, s.url, { token: await signToken('alice') });
    await within(c.connect(), 3000, 'connect');
    for (let i = 1; i <= 5; i++) await c.publish('chat/h', i);
    const all = await c.history('chat/h');
    assert.deepEqual(
      all.publications.map((p) => p.data),
      [1, 2, 3, 4, 5],
    );
    const after3 = await c.history('chat/h', { since: { offset: 3, epoch: all.position.epoch } });
    assert.deepEqual(
      after3.publications.map((p) => p.offset),
      [4, 5],
    );
    assert.equal(after3.recovered, true);
    const last2 = await c.history('chat/h', { limit: 2 });
    assert.deepEqual(
      last2.publications.map((p) => p.data),
      [4, 5],
    );
  });

  test('an invalid token: close 4500, connect() rejects, and no reconnect', async (t) => {
    const s = await startServer(t);
    const c = createClient(t, s.url, { token: await signToken('alice', { secret: 'another-secret-of-at-least-32-bytes!!' }) });
    const reconnecting: ReconnectingEvent[] = [];
    c.on('reconnecting', (e) => reconnecting.push(e));
    const disconnected = nextEvent(c, 'disconnected');
    await assert.rejects(within(c.connect(), 3000, 'connect'), (err: ClientError) => {
      assert.equal(err.code, 'RT_CLIENT_CONNECT_FAILED');
      assert.equal(err.closeCode, 4500);
      return true;
    });
    const d = await disconnected;
    assert.equal(d.code, 4500);
    assert.equal(d.willReconnect, false);
    assert.match(d.meaning, /unauthorized/);
    assert.equal(c.state, 'disconnected');
    await sleep(150);
    assert.equal(reconnecting.length, 0, 'no reconnect after 4500');
    // A publication made now waits for a connect() that may come; close() rejects it.
    const queued = c.publish('chat/x', 1);
    c.close();
    await assert.rejects(queued, (err: ClientError) => err.code === 'RT_CLIENT_CLOSED');
  });

  test('an expired token without getToken: 4002 and no reconnect; with getToken: reconnects with a fresh token', async (t) => {
    const s = await startServer(t);
    const expired = await signToken('alice', { ttl: -60 });
    const c1 = createClient(t, s.url, { token: expired });
    await assert.rejects(within(c1.connect(), 3000, 'connect'), (err: ClientError) => err.closeCode === 4002);
    assert.equal(c1.state, 'disconnected');

    let calls = 0;
    const c2 = createClient(t, s.url, {
      token: expired,
      getToken: async () => {
        calls++;
        return signToken('alice');
      },
    });
    await within(c2.connect(), 3000, 'connect with a fresh token');
    assert.equal(c2.user, 'alice');
    assert.equal(calls, 1);
  });

  test('token refresh: on the server\'s refresh push the client sends a new token and stays connected past the expiry', async (t) => {
    const s = await startServer(t, { config: { auth: { refreshGraceMs: 1800 } } });
    const { client: c, calls, disconnects } = await connectRefreshing(t, s.url, { ttl: 2, nextTtl: 60, refreshBeforeMs: 0 });
    await until(() => calls() >= 1, 3000, 'getToken on the refresh push');
    await sleep(2300); // past the first token's expiry
    assert.equal(c.state, 'connected');
    assert.deepEqual(disconnects, []);
  });

  test('the server restarts on the same port: the client reconnects and resumes with no loss and no duplicate', async (t) => {
    const backend = sharedBackend(t);
    const s1 = await startServer(t, backend);
    const c = createClient(t, s1.url, { token: await signToken('alice') });
    const { got, events: recovered, sub } = await connectFollowing(c, 'chat/resume');
    for (let i = 1; i <= 3; i++) await s1.server.publish('chat/resume', i);
    await until(() => got.length === 3, 3000, 'the first three');

    const disconnected = nextEvent(c, 'disconnected');
    await s1.close();
    const d = await disconnected;
    assert.equal(d.code, 1001);
    assert.equal(d.willReconnect, true);

    // While the client is away: a new server on the same port, same broker; publications before it listens.
    const s2 = createServer(t, { port: s1.port, ...backend });
    for (let i = 4; i <= 6; i++) await s2.server.publish('chat/resume', i);
    const reconnected = nextEvent(c, 'connected', 5000);
    await s2.listen();
    await reconnected;
    await until(() => got.length >= 6, 3000, 'the missed three');
    await s2.server.publish('chat/resume', 7);
    await until(() => got.length >= 7, 3000, 'a live one after the resume');
    await sleep(50);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7], 'each once, in order');
    assert.deepEqual(
      recovered.map((e) => [e.resumed, e.recovered]),
      [
        [false, true],
        [true, true],
      ],
    );
    assert.equal(sub.position?.offset, 7);
  });

  test('publications made while disconnected are queued (bounded) and delivered after the reconnect', async (t) => {
    const backend = sharedBackend(t);
    const s1 = await startServer(t, backend);
    const c = createClient(t, s1.url, { token: await signToken('alice'), queueLimit: 2, reconnect: { minDelayMs: 50, maxDelayMs: 100 } });
    const got: unknown[] = [];
    const sub = c.subscribe('chat/q', { onMessage: (p) => got.push(p.data) });
    const subscribed = nextEvent(sub, 'subscribed');
    await within(c.connect(), 3000, 'connect');
    await subscribed;
    await c.publish('chat/q', 'before');

    const disconnected = nextEvent(c, 'disconnected');
    await s1.close();
    await disconnected;
    assert.equal(c.state, 'reconnecting');
    const p1 = c.publish('chat/q', 'queued-1');
    const p2 = c.publish('chat/q', 'queued-2');
    await assert.rejects(c.publish('chat/q', 'one too many'), (err: ClientError) => err.code === 'RT_CLIENT_QUEUE_FULL');
    assert.equal(c.pendingPublications, 2);

    const s2 = createServer(t, { port: s1.port, ...backend });
    await s2.listen();
    const [r1, r2] = await within(Promise.all([p1, p2]), 5000, 'the queued publications');
    assert.equal(r2.offset, r1.offset + 1);
    await until(() => got.length === 3, 3000, 'all three delivered');
    assert.deepEqual(got, ['before', 'queued-1', 'queued-2']);
  });

  test('a reconnect with 100 subscriptions and 60 queued publications stays within the server\'s rate limit (it used to be closed with 4004 on every reconnect)', async (t) => {
    const backend = sharedBackend(t);
    const s1 = await startServer(t, backend);
    const c = createClient(t, s1.url, { token: await signToken('alice') });
    const disconnects: Array<[number, string]> = [];
    c.on('disconnected', (e) => disconnects.push([e.code, e.reason]));
    const subs = [];
    for (let i = 0; i < 100; i++) subs.push(c.subscribe(`chat/many${i}`));
    const all = Promise.all(subs.map((sub) => nextEvent(sub, 'subscribed', 10_000)));
    await within(c.connect(), 3000, 'connect');
    await all; // paced: the first connection needs about 1 s for 101 messages too
    const disconnected = nextEvent(c, 'disconnected');
    await s1.close();
    await disconnected;
    const pubs = [];
    for (let i = 0; i < 60; i++) pubs.push(c.publish('chat/many0', i));
    const s2 = createServer(t, { port: s1.port, ...backend });
    await s2.listen();
    await within(Promise.all(pubs), 10_000, 'every queued publication acked');
    assert.equal(c.state, 'connected');
    assert.deepEqual(disconnects, [[1001, 'server shutting down']]);
    const history = await c.history('chat/many0', { limit: 100 });
    assert.deepEqual(history.publications.map((p) => p.data), Array.from({ length: 60 }, (_, i) => i));
  });

  test('the client paces itself to the budget the server announces: 30 publications at once against 10/s, burst 10, all acked without a 429', async (t) => {
    const s = await startServer(t, { config: { limits: { messageRate: { perSecond: 10, burst: 10 } } } });
    const c = createClient(t, s.url, { token: await signToken('alice') });
    const errors: string[] = [];
    c.on('error', (e) => errors.push(`${e.code} ${e.message}`));
    await within(c.connect(), 3000, 'connect');
    const acks = await within(Promise.all(Array.from({ length: 30 }, (_, i) => c.publish('chat/paced', i))), 10_000, '30 acks');
    assert.deepEqual(acks.map((a) => a.offset), Array.from({ length: 30 }, (_, i) => i + 1), 'in order, once each');
    assert.deepEqual(errors, []);
    // The server never had to refuse one (a client that did not pace gets 429s and retries).
    const metrics = await s.server.metrics.registry.metrics();
    assert.doesNotMatch(metrics, /switchboard_request_errors_total\{op="rate",code="429"\} [1-9]/);
  });

  test('failover: with two URLs, the client moves to the second server when the first goes away', async (t) => {
    const backend = sharedBackend(t);
    const a = await startServer(t, backend);
    const b = await startServer(t, { broker: backend.broker.peer(), presence: backend.presence });
    const c = createClient(t, [a.url, b.url], { token: await signToken('alice') });
    const got: number[] = [];
    const sub = c.subscribe('chat/fo', { onMessage: (p) => got.push(p.data as number) });
    const subscribed = nextEvent(sub, 'subscribed');
    await within(c.connect(), 3000, 'connect');
    assert.equal(c.url, a.url);
    await subscribed;
    await a.server.publish('chat/fo', 1);
    await until(() => got.length === 1, 3000, 'the first');
    const reconnected = nextEvent(c, 'connected', 5000);
    await a.close();
    await b.server.publish('chat/fo', 2); // while the client moves over
    await reconnected;
    assert.equal(c.url, b.url);
    await until(() => got.length === 2, 3000, 'the one published during the move');
    await b.server.publish('chat/fo', 3);
    await until(() => got.length === 3, 3000, 'a live one on the second server');
    assert.deepEqual(got, [1, 2, 3]);
  });

  test('the server\'s closing hint sets the delay of the next attempt', async (t) => {
    const s = await startServer(t, { config: { shutdown: { timeoutMs: 2000, reconnectJitterMs: 40 } } });
    const c = createClient(t, s.url, { token: await signToken('alice'), reconnect: { minDelayMs: 5000, maxDelayMs: 10000 } });
    await within(c.connect(), 3000, 'connect');
    const reconnecting = nextEvent(c, 'reconnecting');
    await s.close();
    const e = await reconnecting;
    assert.ok(e.inMs < 40, `the hint (< 40 ms), not the 2.5-5 s backoff: ${e.inMs}`);
    c.close();
  });

  test('close(): no reconnect, pending work rejected, nothing left running', async (t) => {
    const s = await startServer(t);
    const c = createClient(t, s.url, { token: await signToken('alice') });
    await within(c.connect(), 3000, 'connect');
    c.subscribe('chat/z');
    const disconnected = nextEvent(c, 'disconnected');
    c.close();
    assert.equal(c.state, 'closed');
    const d = await disconnected;
    assert.equal(d.willReconnect, false);
    await assert.rejects(c.publish('chat/z', 1), (err: ClientError) => err.code === 'RT_CLIENT_CLOSED');
    await assert.rejects(c.rpc('x'), (err: ClientError) => err.code === 'RT_CLIENT_CLOSED');
    await sleep(50);
    assert.equal(s.server.hub.sessions.size, 0);
  });
});

describe('client SDK edge cases against the realtime server', () => {
  test('unsubscribe and subscribe again while the first sub is still being set up: subscribed once, no 409', async (t) => {
    const s = await startServer(t);
    const c = createClient(t, s.url, { token: await signToken('alice') });
    const errors: ClientError[] = [];
    c.on('error', (e) => errors.push(e));
    await within(c.connect(), 3000, 'connect');
    const first = c.subscribe('chat/again');
    const unsubscribed = first.unsubscribe(); // the server is still reading the history for the first sub
    const got: unknown[] = [];
    const second = c.subscribe('chat/again', { onMessage: (p) => got.push(p.data) });
    const subscribed = nextEvent(second, 'subscribed');
    await within(unsubscribed, 3000, 'the first unsubscribed');
    await subscribed;
    assert.equal(second.state, 'subscribed');
    await until(() => s.server.hub.channelStats().some((x) => x.channel === 'chat/again' && x.subscribers === 1), 3000, 'one subscription on the server');
    await s.server.publish('chat/again', 'hello');
    await until(() => got.length === 1, 3000, 'the publication');
    await sleep(50);
    assert.deepEqual(got, ['hello']);
    assert.deepEqual(errors, []);
  });

  test('a resume further behind than the server replays (more than 10 000 missed): recovered:false, then live ones, nothing partial', async (t) => {
    const namespaces = [{ prefix: 'big', history: { size: 20000, ttlMs: 0 } }];
    const s = await startServer(t, { config: { namespaces } });
    const first = await s.server.publish('big/feed', 0);
    for (let i = 1; i <= 10005; i++) await s.server.publish('big/feed', i);
    const c = createClient(t, s.url, { token: await signToken('alice') });
    const got: number[] = [];
    const events: Array<[boolean, boolean]> = [];
    const sub = c.subscribe('big/feed', {
      since: { offset: first.offset, epoch: first.epoch },
      onMessage: (p) => got.push(p.offset),
      onSubscribed: (e) => events.push([e.resumed, e.recovered]),
    });
    const subscribed = nextEvent(sub, 'subscribed');
    await within(c.connect(), 3000, 'connect');
    await subscribed;
    assert.deepEqual(events, [[true, false]]);
    assert.deepEqual(sub.position, { offset: 10006, epoch: first.epoch });
    await s.server.publish('big/feed', 'live');
    await until(() => got.length >= 1, 3000, 'the live one');
    await sleep(50);
    assert.deepEqual(got, [10007]);
  });

  test('WebSocket blocked: the client falls back to long-polling, probes WebSocket (ping/pong through the real server) and moves back, resuming', async (t) => {
    const s = await startServer(t);
    const blockable = blockableWebSocket();
    const c = createClient(t, s.url, {
      token: await signToken('alice'),
      WebSocket: blockable.WebSocket as never,
      transports: ['websocket', 'poll'],
      upgradeProbeDelayMs: 50,
      upgradeIntervalMs: 100,
    });
    const switches: string[] = [];
    c.on('transport', (e) => switches.push(`${e.from}>${e.to}`));
    const got: unknown[] = [];
    const sub = c.subscribe('chat/fb', { onMessage: (p) => got.push(p.data) });
    const subscribed = nextEvent(sub, 'subscribed');
    await within(c.connect(), 3000, 'connect over a fallback');
    assert.equal(c.transport, 'poll');
    await subscribed;
    await s.server.publish('chat/fb', 1);
    await until(() => got.length === 1, 3000, 'a publication over long-polling');
    const back = nextEvent(c, 'connected', 3000);
    blockable.unblock();
    const connected = await back;
    assert.equal(connected.transport, 'websocket');
    assert.deepEqual(switches, ['websocket>poll', 'poll>websocket']);
    await s.server.publish('chat/fb', 2);
    await until(() => got.length === 2, 3000, 'a publication over WebSocket');
    await sleep(50);
    assert.deepEqual(got, [1, 2]);
    await until(() => s.server.hub.sessions.size === 1, 3000, 'the long-polling session ended');
  });
});
