/**
 * The client's lifecycle at its edges, on a fake clock with a fake
 * WebSocket: getToken() that hangs, throws or answers nothing (at connect
 * and at refresh), tokens that live longer than a timer can wait, close()
 * in every phase (no timer left behind, every promise settled), giving up
 * after maxAttempts and connecting again, and listeners that call connect()
 * or close() from inside an event.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { ClientState, DisconnectedEvent, ReconnectingEvent } from '../../../src/client/index.js';
import { fakeClock, accept, acceptAuth, acceptSubs, flush, makeClient, track, trackTimers } from './fakes.js';

const NO_JITTER = { minDelayMs: 100, maxDelayMs: 100, factor: 2, jitter: 0 };

/** A getToken whose calls the test answers by hand. */
function manualToken() {
  const calls: Array<{ resolve(token: unknown): void; reject(err: unknown): void }> = [];
  return {
    calls,
    getToken: () =>
      new Promise<string>((resolve, reject) => {
        calls.push({ resolve: resolve as (token: unknown) => void, reject });
      }),
  };
}

describe('getToken() at connect', () => {
  test('one that never answers fails the attempt after connectTimeoutMs; the next attempt asks again; the late answer is not used', async (t) => {
    const clock = fakeClock(t);
    const tokens = manualToken();
    const h = makeClient('ws://rt.test/rt', { getToken: tokens.getToken, connectTimeoutMs: 5000, reconnect: NO_JITTER });
    const reconnecting: ReconnectingEvent[] = [];
    h.client.on('reconnecting', (e) => reconnecting.push(e));
    const connected = track(h.client.connect());
    await clock.tick(4999);
    assert.equal(reconnecting.length, 0);
    await clock.tick(1);
    assert.equal(h.errors.length, 1);
    assert.equal((h.errors[0] as { code?: string }).code, 'RT_CLIENT_TOKEN');
    assert.match(h.errors[0]!.message, /did not answer within 5000 ms/);
    assert.equal(reconnecting.length, 1);
    assert.equal(h.client.state, 'connecting');
    tokens.calls[0]!.resolve('late'); // after the attempt gave up on it
    await flush();
    assert.equal(h.WS.instances.length, 0, 'the late token opens nothing');
    await clock.tick(100);
    assert.equal(tokens.calls.length, 2, 'the next attempt asks again');
    tokens.calls[1]!.resolve('fresh');
    await flush();
    assert.equal(h.WS.instances.length, 1);
    h.WS.last.open();
    assert.equal(h.WS.last.sentOps('auth')[0]!.token, 'fresh');
    acceptAuth(h.WS.last);
    await flush();
    assert.equal(connected.settled, true);
    assert.equal(connected.error, undefined);
    h.client.close();
  });

  test('no token (empty, null): not authorized, so the client gives up: disconnected 4500, no reconnect, connect() rejects', async (t) => {
    for (const empty of ['', null, undefined]) {
      const clock = fakeClock(t);
      const h = makeClient('ws://rt.test/rt', { getToken: async () => empty as unknown as string, reconnect: NO_JITTER });
      const events: DisconnectedEvent[] = [];
      h.client.on('disconnected', (e) => events.push(e));
      const connected = track(h.client.connect());
      await flush();
      assert.equal(h.client.state, 'disconnected', `getToken() → ${String(empty)}`);
      assert.deepEqual(
        events.map((e) => [e.code, e.willReconnect]),
        [[4500, false]],
      );
      assert.match(events[0]!.reason, /no token/);
      assert.equal(connected.error?.code, 'RT_CLIENT_CONNECT_FAILED');
      assert.equal(connected.error?.closeCode, 4500);
      await clock.tick(60000);
      assert.equal(h.WS.instances.length, 0, 'never connected anonymously');
      h.client.close();
      t.mock.timers.reset();
    }
  });

  test('a getToken that throws synchronously (not an async function) is a failed attempt, not an exception', async (t) => {
    const clock = fakeClock(t);
    let fail = true;
    const h = makeClient('ws://rt.test/rt', {
      getToken: (() => {
        if (fail) throw new Error('sync failure');
        return Promise.resolve('ok');
      }) as () => Promise<string>,
      reconnect: NO_JITTER,
    });
    h.client.connect();
    await flush();
    assert.match(h.errors[0]!.message, /getToken failed: sync failure/);
    fail = false;
    await clock.tick(100);
    await accept(h);
    assert.equal(h.client.state, 'connected');
    h.client.close();
  });

  test("an 'error' listener that closes the client on a getToken failure: no reconnect is scheduled", async (t) => {
    const clock = fakeClock(t);
    const timers = trackTimers();
    try {
      const h = makeClient('ws://rt.test/rt', { getToken: async () => Promise.reject(new Error('down')), reconnect: NO_JITTER });
      h.client.on('error', () => h.client.close());
      h.client.connect();
      await flush();
      assert.equal(h.client.state, 'closed');
      assert.equal(timers.pending, 0);
      await clock.tick(60000);
      assert.equal(h.WS.instances.length, 0);
    } finally {
      timers.restore();
    }
  });
});

describe('token refresh at its edges', () => {
  function refreshing(t: TestContext, getToken: () => Promise<string>, extra: object = {}) {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', {
      token: 't0',
      getToken,
      refreshBeforeMs: 15000,
      requestTimeoutMs: 3000,
      pingTimeoutMs: Infinity,
      reconnect: { minDelayMs: 1000, maxDelayMs: 8000, factor: 2, jitter: 0 },
      ...extra,
    });
    return { clock, h };
  }

  test('getToken throwing synchronously: an error event, then another try after a pause; the refresh goes out', async (t) => {
    let calls = 0;
    const { clock, h } = refreshing(t, (() => {
      calls++;
      if (calls === 1) throw new Error('sync failure');
      return Promise.resolve(`t${calls}`);
    }) as () => Promise<string>);
    h.client.connect();
    const ws = await accept(h, { expiresIn: 600000 });
    ws.receive({ op: 'refresh', expiresIn: 9000 });
    await flush();
    assert.equal(calls, 1);
    assert.match(h.errors[0]!.message, /sync failure/);
    assert.equal(ws.sentOps('refresh').length, 0);
    await clock.tick(999);
    assert.equal(calls, 1);
    await clock.tick(1);
    assert.equal(calls, 2, 'tried again (1 s: the first backoff step)');
    assert.equal(ws.sentOps('refresh')[0]!.token, 't2');
    h.client.close();
  });

  test('getToken hanging: an error after requestTimeoutMs, another try; the late answer is not sent', async (t) => {
    const tokens = manualToken();
    const { clock, h } = refreshing(t, tokens.getToken);
    h.client.connect();
    const ws = await accept(h, { expiresIn: 600000 });
    ws.receive({ op: 'refresh', expiresIn: 9000 });
    await flush();
    assert.equal(tokens.calls.length, 1);
    ws.receive({ op: 'refresh', expiresIn: 8000 }); // a second push while the first is under way: one call
    await flush();
    assert.equal(tokens.calls.length, 1);
    await clock.tick(3000);
    assert.match(h.errors.at(-1)!.message, /getToken did not answer within 3000 ms/);
    tokens.calls[0]!.resolve('late');
    await flush();
    assert.equal(ws.sentOps('refresh').length, 0, 'the abandoned answer is dropped');
    await clock.tick(1000);
    assert.equal(tokens.calls.length, 2);
    tokens.calls[1]!.resolve('good');
    await flush();
    assert.deepEqual(
      ws.sentOps('refresh').map((m) => m.token),
      ['good'],
    );
    h.client.close();
  });

  test('the server refusing the new token: an error event, another try later', async (t) => {
    let calls = 0;
    const { clock, h } = refreshing(t, async () => `t${++calls}`);
    h.client.connect();
    const ws = await accept(h, { expiresIn: 600000 });
    ws.receive({ op: 'refresh', expiresIn: 9000 });
    await flush();
    const first = ws.sentOps('refresh')[0]!;
    ws.receive({ op: 'error', id: first.id, code: 401, message: 'invalid signature' });
    await flush();
    assert.equal((h.errors.at(-1) as { serverCode?: number }).serverCode, 401);
    await clock.tick(1000);
    assert.equal(calls, 2);
    assert.equal(ws.sentOps('refresh')[1]!.token, 't2');
    h.client.close();
  });

  test('getToken answering no token at refresh: the client disconnects for good (4500)', async (t) => {
    const { h } = refreshing(t, async () => '');
    const events: DisconnectedEvent[] = [];
    h.client.on('disconnected', (e) => events.push(e));
    h.client.connect();
    const ws = await accept(h, { expiresIn: 600000 });
    ws.receive({ op: 'refresh', expiresIn: 9000 });
    await flush();
    assert.equal(h.client.state, 'disconnected');
    assert.deepEqual(
      events.map((e) => [e.code, e.willReconnect]),
      [[4500, false]],
    );
    assert.equal(ws.closedWith?.code, 1000);
    h.client.close();
  });

  test('a token valid for 30 days: refreshed 15 s before its expiry, not at once (timers cannot wait more than 24.8 days)', async (t) => {
    let calls = 0;
    const { clock, h } = refreshing(t, async () => `t${++calls}`);
    h.client.connect();
    const thirtyDays = 30 * 24 * 3600_000;
    await accept(h, { expiresIn: thirtyDays });
    await clock.tick(1000);
    assert.equal(calls, 0, 'no refresh loop');
    await clock.tick(thirtyDays - 15000 - 1001);
    assert.equal(calls, 0);
    await clock.tick(1);
    assert.equal(calls, 1);
    assert.equal(h.client.state, 'connected', 'pingTimeoutMs: Infinity never drops a silent link');
    h.client.close();
  });
});

describe('close() leaves nothing behind', () => {
  test('during getToken(): no timer, connect() and pending work reject with RT_CLIENT_CLOSED, the late token opens nothing', async (t) => {
    const clock = fakeClock(t);
    const timers = trackTimers();
    try {
      const tokens = manualToken();
      const h = makeClient('ws://rt.test/rt', { getToken: tokens.getToken });
      const connected = track(h.client.connect());
      const pub = track(h.client.publish('chat/a', 1));
      const rpc = track(h.client.rpc('x'));
      await flush();
      h.client.close();
      await flush();
      assert.equal(timers.pending, 0);
      for (const p of [connected, pub, rpc]) assert.equal(p.error?.code, 'RT_CLIENT_CLOSED');
      tokens.calls[0]!.resolve('late');
      await clock.tick(60000);
      assert.equal(h.WS.instances.length, 0);
      assert.equal(h.client.state, 'closed');
    } finally {
      timers.restore();
    }
  });

  test('while the socket opens, and while connected with everything running: no timer left, no reconnect', async (t) => {
    const clock = fakeClock(t);
    const timers = trackTimers();
    try {
      const h = makeClient('ws://rt.test/rt', { token: 'tok', getToken: async () => 'next' });
      h.client.connect();
      await flush();
      h.client.close();
      assert.equal(h.WS.last.closedWith?.code, 1000);
      assert.equal(timers.pending, 0);

      h.client.connect();
      await flush();
      h.WS.last.open();
      acceptAuth(h.WS.last, { expiresIn: 600000 });
      await flush();
      h.client.subscribe('chat/a');
      acceptSubs(h.WS.last);
      const pub = track(h.client.publish('chat/a', 1)); // its ack timer runs
      const read = track(h.client.history('chat/a'));
      assert.ok(timers.pending >= 5, `dead link, stable, refresh, publish, request timers: ${timers.pending}`);
      h.client.close();
      await flush();
      assert.equal(timers.pending, 0);
      assert.equal(pub.error?.code, 'RT_CLIENT_CLOSED');
      assert.equal(read.error?.code, 'RT_CLIENT_CLOSED');
      await clock.tick(3600_000);
      assert.equal(h.WS.instances.length, 2);
    } finally {
      timers.restore();
    }
  });

  test('a client that gave up leaves no timer either', async (t) => {
    fakeClock(t);
    const timers = trackTimers();
    try {
      const h = makeClient();
      h.client.connect();
      await accept(h);
      h.WS.last.drop(4503, 'kicked');
      await flush();
      assert.equal(h.client.state, 'disconnected');
      assert.equal(timers.pending, 0);
    } finally {
      timers.restore();
    }
  });
});

describe('giving up and starting again', () => {
  test('maxAttempts: disconnected with willReconnect false; connect() again starts over (state connecting) and resumes subscriptions', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: { ...NO_JITTER, maxAttempts: 1 } });
    const states: ClientState[] = [];
    h.client.on('state', (s) => states.push(s));
    const sub = h.client.subscribe('chat/a');
    h.client.connect();
    const ws1 = await accept(h);
    acceptSubs(ws1, () => ({ position: { offset: 7, epoch: 'e1' } }));
    const queued = track(h.client.publish('chat/a', 'x'));
    ws1.drop(1006);
    await flush();
    await clock.tick(100);
    h.WS.last.drop(1006);
    await flush();
    assert.equal(h.client.state, 'disconnected');
    assert.equal(queued.error?.code, 'RT_CLIENT_DISCONNECTED', 'pending work is rejected on giving up');
    assert.equal(sub.state, 'pending', 'subscriptions are kept');
    const again = track(h.client.connect());
    assert.equal(h.client.state, 'connecting');
    const ws3 = await accept(h);
    assert.equal(again.settled, true);
    assert.deepEqual(ws3.sentOps('sub')[0]!.since, { offset: 7, epoch: 'e1' });
    assert.deepEqual(states, ['connecting', 'connected', 'reconnecting', 'disconnected', 'connecting', 'connected']);
    h.client.close();
  });

  test("a 'disconnected' listener may call connect() at once when the client gives up", async (t) => {
    fakeClock(t);
    const h = makeClient();
    let retried: Promise<void> | null = null;
    h.client.on('disconnected', (e) => {
      if (!e.willReconnect && retried === null) retried = h.client.connect();
    });
    const first = track(h.client.connect());
    await accept(h);
    h.WS.last.drop(4503, 'kicked');
    await flush();
    assert.equal(h.client.state, 'connecting');
    assert.equal(h.WS.instances.length, 2, 'a new attempt started');
    assert.equal(first.settled, true);
    const second = track(retried!);
    await accept(h);
    assert.equal(second.settled, true);
    assert.equal(second.error, undefined);
    assert.equal(h.client.state, 'connected');
    h.client.close();
  });

  test("a 'state' listener may call connect() at once after close()", async (t) => {
    fakeClock(t);
    const h = makeClient();
    h.client.connect();
    await accept(h);
    let restarted: ReturnType<typeof track> | null = null;
    const off = h.client.on('state', (s) => {
      if (s === 'closed') restarted = track(h.client.connect());
    });
    h.client.close();
    off();
    await flush();
    assert.equal(restarted!.settled, false, 'the new connect() is not rejected by the close that came before it');
    assert.equal(h.client.state, 'connecting');
    await accept(h);
    assert.equal(restarted!.settled, true);
    assert.equal(restarted!.error, undefined);
    h.client.close();
  });

  test('close() then connect(): connecting, not reconnecting', async (t) => {
    fakeClock(t);
    const h = makeClient();
    h.client.connect();
    await accept(h);
    h.client.close();
    const states: ClientState[] = [];
    h.client.on('state', (s) => states.push(s));
    h.client.connect();
    await accept(h);
    assert.deepEqual(states, ['connecting', 'connected']);
    h.client.close();
  });
});
