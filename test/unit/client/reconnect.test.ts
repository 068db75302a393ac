/**
 * The client's connection lifecycle on a fake clock with a fake WebSocket:
 * backoff timing, reset after a stable connection, which closes reconnect,
 * maxAttempts, online/offline, failover order across URLs, the server's
 * `closing` hint, the connect timeout, and the events and states on the way.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { browserNetworkMonitor, type ClientState, type DisconnectedEvent, type ReconnectingEvent } from '../../../src/client/index.js';
import { fakeClock, accept, acceptAuth, FakeNetwork, flush, makeClient } from './fakes.js';

const NO_JITTER = { minDelayMs: 500, maxDelayMs: 30000, factor: 2, jitter: 0 };

describe('reconnect with backoff', () => {
  test('a drop reconnects after 500, 1000, 2000 ms (no jitter); each attempt is a new socket at the exact time', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'tok', reconnect: NO_JITTER });
    const reconnecting: ReconnectingEvent[] = [];
    h.client.on('reconnecting', (e) => reconnecting.push(e));
    h.client.connect();
    await accept(h);
    assert.equal(h.client.state, 'connected');

    h.WS.last.drop(1006);
    await flush();
    assert.equal(h.client.state, 'reconnecting');
    for (const [n, delay] of [
      [2, 500],
      [3, 1000],
      [4, 2000],
    ] as const) {
      await clock.tick(delay - 1);
      assert.equal(h.WS.instances.length, n - 1, `no attempt before ${delay} ms`);
      await clock.tick(1);
      assert.equal(h.WS.instances.length, n, `attempt ${n - 1} at ${delay} ms`);
      h.WS.last.drop(1006); // the attempt fails before opening
      await flush();
    }
    assert.deepEqual(
      reconnecting.slice(0, 3).map((e) => [e.inMs, e.attempt]),
      [
        [500, 1],
        [1000, 2],
        [2000, 3],
      ],
    );
    assert.equal(reconnecting[0]!.code, 1006);
    h.client.close();
  });

  test('jitter stays within [d/2, d] at the default jitter 0.5', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: { minDelayMs: 1000, maxDelayMs: 8000 } });
    const delays: number[] = [];
    h.client.on('reconnecting', (e) => delays.push(e.inMs));
    h.client.connect();
    for (let i = 0; i < 6; i++) {
      await flush();
      h.WS.last.drop(1006);
      await flush();
      await clock.tick(delays.at(-1)!);
    }
    const bounds = [1000, 2000, 4000, 8000, 8000, 8000];
    delays.forEach((d, i) => assert.ok(d >= bounds[i]! / 2 && d <= bounds[i]!, `attempt ${i + 1}: ${d}`));
    h.client.close();
  });

  test('the backoff resets after a connection stable for resetAfterMs, not before', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: { ...NO_JITTER, resetAfterMs: 10000 } });
    const delays: number[] = [];
    h.client.on('reconnecting', (e) => delays.push(e.inMs));
    h.client.connect();
    await accept(h);
    h.WS.last.drop(1006);
    await flush();
    await clock.tick(500);
    await accept(h); // up, but only briefly
    await clock.tick(9999);
    h.WS.last.drop(1006);
    await flush();
    assert.equal(delays.at(-1), 1000, 'a flapping connection keeps backing off');
    await clock.tick(1000);
    await accept(h);
    await clock.tick(10000); // stable
    h.WS.last.drop(1006);
    await flush();
    assert.equal(delays.at(-1), 500, 'back to the first delay');
    h.client.close();
  });

  test('closes that say not to reconnect: 4500-4999, 1002, 1003, 1007-1010; others reconnect', async (t) => {
    fakeClock(t);
    for (const code of [4500, 4501, 4503, 4999, 1002, 1003, 1007, 1008, 1009, 1010]) {
      const h = makeClient('ws://rt.test/rt', { token: 'tok' });
      const events: DisconnectedEvent[] = [];
      h.client.on('disconnected', (e) => events.push(e));
      h.client.connect();
      await accept(h);
      h.WS.last.drop(code, 'bye');
      await flush();
      assert.equal(h.client.state, 'disconnected', `code ${code}`);
      assert.deepEqual(
        events.map((e) => [e.code, e.willReconnect]),
        [[code, false]],
        `code ${code}`,
      );
      assert.ok(events[0]!.meaning.length > 0);
      h.client.close();
    }
    for (const code of [1000, 1001, 1006, 1011, 1012, 1013, 4001, 4003, 4004, 4005, 4499]) {
      const h = makeClient('ws://rt.test/rt', { token: 'tok' });
      const events: DisconnectedEvent[] = [];
      h.client.on('disconnected', (e) => events.push(e));
      h.client.connect();
      await accept(h);
      h.WS.last.drop(code);
      await flush();
      assert.equal(h.client.state, 'reconnecting', `code ${code}`);
      assert.equal(events[0]!.willReconnect, true, `code ${code}`);
      h.client.close();
    }
  });

  test('4002 (token expired) reconnects only when getToken can supply a new token', async (t) => {
    fakeClock(t);
    const a = makeClient('ws://rt.test/rt', { token: 'tok' });
    a.client.connect();
    await accept(a);
    a.WS.last.drop(4002);
    await flush();
    assert.equal(a.client.state, 'disconnected');
    const b = makeClient('ws://rt.test/rt', { token: 'tok', getToken: async () => 'fresh' });
    b.client.connect();
    await accept(b);
    b.WS.last.drop(4002);
    await flush();
    assert.equal(b.client.state, 'reconnecting');
    a.client.close();
    b.client.close();
  });

  test('maxAttempts: gives up after that many failed attempts; connect() rejects', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: { ...NO_JITTER, maxAttempts: 2 } });
    const events: DisconnectedEvent[] = [];
    h.client.on('disconnected', (e) => events.push(e));
    const connecting = h.client.connect();
    await flush();
    h.WS.last.drop(1006);
    await flush();
    await clock.tick(500);
    h.WS.last.drop(1006);
    await flush();
    await clock.tick(1000);
    h.WS.last.drop(1006);
    await flush();
    assert.equal(h.WS.instances.length, 3, 'the first try and two more');
    assert.equal(h.client.state, 'disconnected');
    assert.equal(events.at(-1)!.willReconnect, false);
    assert.match(events.at(-1)!.reason, /gave up after 2 attempts/);
    await assert.rejects(connecting, (err: { code: string }) => err.code === 'RT_CLIENT_CONNECT_FAILED');
    await clock.tick(60000);
    assert.equal(h.WS.instances.length, 3);
    h.client.close();
  });

  test('close() stops everything: no reconnect, state closed, events', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: NO_JITTER });
    const states: ClientState[] = [];
    h.client.on('state', (s) => states.push(s));
    h.client.connect();
    await accept(h);
    h.WS.last.drop(1006);
    await flush();
    h.client.close();
    await clock.tick(60000);
    assert.equal(h.WS.instances.length, 1);
    assert.deepEqual(states, ['connecting', 'connected', 'reconnecting', 'closed']);
    // A second connect() after close() works again.
    h.client.connect();
    await accept(h);
    assert.equal(h.client.state, 'connected');
    h.client.close();
    assert.equal(h.WS.last.closedWith?.code, 1000);
  });

  test('the first connection attempt failing is retried too (state stays connecting)', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: NO_JITTER });
    const p = h.client.connect();
    await flush();
    h.WS.last.drop(1006);
    await flush();
    assert.equal(h.client.state, 'connecting');
    await clock.tick(500);
    await accept(h);
    await p;
    assert.equal(h.client.state, 'connected');
    h.client.close();
  });

  test('connect timeout: a socket that never opens is dropped after connectTimeoutMs', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'tok', connectTimeoutMs: 3000, reconnect: NO_JITTER });
    const reconnecting: ReconnectingEvent[] = [];
    h.client.on('reconnecting', (e) => reconnecting.push(e));
    h.client.connect();
    await flush();
    await clock.tick(2999);
    assert.equal(reconnecting.length, 0);
    await clock.tick(1);
    assert.equal(reconnecting.length, 1);
    assert.match(reconnecting[0]!.reason, /not connected within 3000 ms/);
    assert.equal(h.WS.instances[0]!.closedWith?.code, 1000);
    // Also when it opens but auth is never answered.
    await clock.tick(500);
    h.WS.last.open();
    await clock.tick(3000);
    assert.equal(reconnecting.length, 2);
    h.client.close();
  });

  test("the server's closing hint replaces the backoff delay once", async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: { ...NO_JITTER, minDelayMs: 5000 } });
    const delays: number[] = [];
    h.client.on('reconnecting', (e) => delays.push(e.inMs));
    h.client.connect();
    await accept(h);
    h.WS.last.receive({ op: 'closing', reason: 'server shutting down', reconnectAfter: 1234 });
    h.WS.last.drop(1001, 'server shutting down');
    await flush();
    assert.deepEqual(delays, [1234]);
    await clock.tick(1233);
    assert.equal(h.WS.instances.length, 1);
    await clock.tick(1);
    assert.equal(h.WS.instances.length, 2);
    h.WS.last.drop(1006);
    await flush();
    assert.equal(delays[1], 10000, 'the hint is used once; then the backoff (attempt 2)');
    h.client.close();
  });
});

describe('failover across URLs', () => {
  test('the next URL after each failure, round robin', async (t) => {
    const clock = fakeClock(t);
    const urls = ['ws://a.test/rt', 'ws://b.test/rt', 'ws://c.test/rt'];
    const h = makeClient(urls, { reconnect: { ...NO_JITTER, maxDelayMs: 500 } });
    h.client.connect();
    for (let i = 0; i < 5; i++) {
      await flush();
      h.WS.last.drop(1006);
      await flush();
      await clock.tick(500);
    }
    assert.deepEqual(
      h.WS.instances.map((ws) => ws.url),
      ['ws://a.test/rt', 'ws://b.test/rt', 'ws://c.test/rt', 'ws://a.test/rt', 'ws://b.test/rt', 'ws://c.test/rt'],
    );
    // A connection lost on c moves on to a.
    await accept(h);
    assert.equal(h.client.url, 'ws://c.test/rt');
    h.WS.last.drop(1006);
    await flush();
    await clock.tick(500);
    assert.equal(h.WS.last.url, 'ws://a.test/rt');
    h.client.close();
  });

  test('http(s) URLs are turned into ws(s) for WebSocket', async (t) => {
    fakeClock(t);
    const h = makeClient('https://rt.test:8443/rt?ticket=abc');
    h.client.connect();
    await flush();
    assert.equal(h.WS.last.url, 'wss://rt.test:8443/rt?ticket=abc');
    assert.deepEqual(h.WS.last.protocols, ['switchboard.v1.json']);
    h.client.close();
  });
});

describe('online / offline', () => {
  test('offline pauses the backoff; online retries at once', async (t) => {
    const clock = fakeClock(t);
    const network = new FakeNetwork();
    const h = makeClient('ws://rt.test/rt', { network, reconnect: { ...NO_JITTER, minDelayMs: 4000 } });
    const reconnecting: ReconnectingEvent[] = [];
    h.client.on('reconnecting', (e) => reconnecting.push(e));
    h.client.connect();
    await accept(h);
    assert.equal(network.subscribers, 1);
    h.WS.last.drop(1006);
    await flush();
    network.goOffline();
    await clock.tick(60000);
    assert.equal(h.WS.instances.length, 1, 'no attempt while offline');
    network.goOnline();
    assert.deepEqual(
      reconnecting.map((e) => e.inMs),
      [4000, 0],
    );
    await clock.tick(0);
    assert.equal(h.WS.instances.length, 2, 'an attempt right after online');
    await accept(h);
    assert.equal(h.client.state, 'connected');
    h.client.close();
    assert.equal(network.subscribers, 0, 'close() stops listening');
  });

  test('a drop while offline waits for online without arming a timer', async (t) => {
    const clock = fakeClock(t);
    const network = new FakeNetwork();
    const h = makeClient('ws://rt.test/rt', { network, reconnect: NO_JITTER });
    h.client.connect();
    await accept(h);
    network.online = false; // navigator.onLine turned false, the socket died after
    h.WS.last.drop(1006);
    await flush();
    await clock.tick(60000);
    assert.equal(h.WS.instances.length, 1);
    assert.equal(h.client.state, 'reconnecting');
    network.goOnline();
    await clock.tick(0);
    assert.equal(h.WS.instances.length, 2);
    h.client.close();
  });

  test('offline while connected drops the connection (it may be half-open) and waits; online reconnects at once', async (t) => {
    const clock = fakeClock(t);
    const network = new FakeNetwork();
    const h = makeClient('ws://rt.test/rt', { network, reconnect: NO_JITTER });
    const disconnects: DisconnectedEvent[] = [];
    h.client.on('disconnected', (e) => disconnects.push(e));
    h.client.connect();
    await accept(h);
    const first = h.WS.last;
    network.goOffline();
    await flush();
    assert.equal(first.readyState, 3, 'the socket was closed');
    assert.equal(h.client.state, 'reconnecting');
    assert.deepEqual(
      disconnects.map((e) => [e.code, e.reason, e.willReconnect]),
      [[1006, 'the network went offline', true]],
    );
    await clock.tick(60000);
    assert.equal(h.WS.instances.length, 1, 'no attempt while offline');
    network.goOnline();
    await clock.tick(0);
    assert.equal(h.WS.instances.length, 2, 'an attempt right after online');
    await accept(h);
    assert.equal(h.client.state, 'connected');
    h.client.close();
  });

  test('the default monitor uses navigator.onLine and the online/offline events of globalThis', () => {
    const g = globalThis as Record<string, unknown>;
    assert.equal(typeof g.addEventListener, 'undefined', 'Node 20 has no window events');
    assert.equal(browserNetworkMonitor(), null);
    const target = new EventTarget();
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
    const navigator = { onLine: true };
    g.addEventListener = target.addEventListener.bind(target);
    g.removeEventListener = target.removeEventListener.bind(target);
    Object.defineProperty(globalThis, 'navigator', { value: navigator, configurable: true, writable: true });
    try {
      const monitor = browserNetworkMonitor()!;
      assert.equal(monitor.isOnline(), true);
      navigator.onLine = false;
      assert.equal(monitor.isOnline(), false);
      const seen: string[] = [];
      const stop = monitor.subscribe(
        () => seen.push('online'),
        () => seen.push('offline'),
      );
      target.dispatchEvent(new Event('offline'));
      target.dispatchEvent(new Event('online'));
      stop();
      target.dispatchEvent(new Event('online'));
      assert.deepEqual(seen, ['offline', 'online']);
    } finally {
      delete g.addEventListener;
      delete g.removeEventListener;
      if (saved) Object.defineProperty(globalThis, 'navigator', saved);
      else delete g.navigator;
    }
  });
});

describe('states and events', () => {
  test('connected carries transport, client id, user and URL; anonymous connections send no auth', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'tok' });
    const seen: unknown[] = [];
    h.client.on('connected', (e) => seen.push(e));
    h.client.connect();
    await flush();
    h.WS.last.open();
    assert.deepEqual(h.WS.last.sent, [{ op: 'auth', id: 1, token: 'tok' }]);
    acceptAuth(h.WS.last, { client: 'c-9', user: 'bob' });
    await flush();
    // The server's auth reply says what carries the connection.
    assert.deepEqual(seen, [{ transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'server', client: 'c-9', user: 'bob', url: 'ws://rt.test/rt' }]);
    assert.deepEqual(h.client.transportInfo, { transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'server' });
    assert.equal(h.client.clientId, 'c-9');
    h.client.close();
    assert.equal(h.client.transportInfo, null);

    const h2 = makeClient('ws://rt.test/rt', { token: 'tok' });
    h2.client.connect();
    await accept(h2, { http: '2' });
    assert.deepEqual(h2.client.transportInfo, { transport: 'websocket', httpProtocol: 'h2', httpProtocolSource: 'server' });
    h2.client.close();

    const anon = makeClient('ws://rt.test/rt');
    anon.client.connect();
    await accept(anon);
    assert.equal(anon.client.state, 'connected');
    assert.deepEqual(anon.WS.last.sent, []);
    assert.equal(anon.client.clientId, null);
    // No auth reply, and a WebSocket (like a browser's) that does not say: unknown.
    assert.deepEqual(anon.client.transportInfo, { transport: 'websocket', httpProtocol: null, httpProtocolSource: null });
    anon.client.close();
  });

  test('an auth error: the error event, then the server close decides (4500: no reconnect)', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'bad' });
    const events: DisconnectedEvent[] = [];
    h.client.on('disconnected', (e) => events.push(e));
    const p = h.client.connect();
    await flush();
    h.WS.last.open();
    const auth = h.WS.last.sentOps('auth')[0]!;
    h.WS.last.receive({ op: 'error', id: auth.id, code: 401, message: 'invalid signature' });
    h.WS.last.drop(4500, '');
    await flush();
    assert.equal(h.errors.length, 1);
    assert.equal(events[0]!.code, 4500);
    assert.match(events[0]!.reason, /invalid signature/);
    await assert.rejects(p, (err: { closeCode: number }) => err.closeCode === 4500);
    h.client.close();
  });

  test('a listener that throws does not break the client', async (t) => {
    fakeClock(t);
    const thrown: unknown[] = [];
    const saved = (globalThis as { reportError?: unknown }).reportError;
    (globalThis as { reportError?: unknown }).reportError = (e: unknown) => thrown.push(e);
    try {
      const h = makeClient('ws://rt.test/rt');
      h.client.on('connected', () => {
        throw new Error('app bug');
      });
      const after: string[] = [];
      h.client.on('connected', () => after.push('second listener ran'));
      h.client.connect();
      await accept(h);
      assert.equal(h.client.state, 'connected');
      assert.deepEqual(after, ['second listener ran']);
      assert.equal((thrown[0] as Error).message, 'app bug');
      h.client.close();
    } finally {
      if (saved === undefined) delete (globalThis as { reportError?: unknown }).reportError;
      else (globalThis as { reportError?: unknown }).reportError = saved;
    }
  });

  test('no transport can run: connect() rejects with RT_CLIENT_NO_TRANSPORT', async () => {
    const { Client } = await import('../../../src/client/index.js');
    const c = new Client('ws://rt.test/rt', { transports: ['websocket'], network: null });
    await assert.rejects(c.connect(), (err: { code: string }) => err.code === 'RT_CLIENT_NO_TRANSPORT');
    assert.throws(() => new Client([], {}), (err: { code: string }) => err.code === 'RT_CLIENT_INVALID_ARGUMENT');
    assert.throws(() => new Client('ws://x/rt', { transports: ['carrier-pigeon' as never] }), (err: { code: string }) => err.code === 'RT_CLIENT_INVALID_ARGUMENT');
  });
});
