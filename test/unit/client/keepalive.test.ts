/**
 * Dead-link detection from the server's app-level pings, and token refresh
 * (server push, before expiry, on reconnect), on a fake clock.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DisconnectedEvent } from '../../../src/client/index.js';
import { fakeClock, accept, acceptAuth, flush, makeClient, reply } from './fakes.js';

describe('dead-link detection', () => {
  test('nothing received for pingTimeoutMs (no ping seen yet): the client drops the connection and reconnects', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { pingTimeoutMs: 60000, reconnect: { minDelayMs: 100, jitter: 0 } });
    const events: DisconnectedEvent[] = [];
    h.client.on('disconnected', (e) => events.push(e));
    h.client.connect();
    const ws = await accept(h);
    assert.equal(h.client.deadLinkTimeoutMs, 60000);
    await clock.tick(29999);
    ws.receive({ op: 'join', channel: 'x', clients: [] }); // any message counts
    await clock.tick(29999);
    assert.equal(ws.sentOps('ping').length, 0);
    await clock.tick(1);
    assert.equal(ws.sentOps('ping').length, 1, 'half the limit of silence: the client asks with a ping of its own');
    await clock.tick(29999);
    assert.equal(ws.sentOps('ping').length, 1, 'one ping per silence');
    assert.equal(h.client.state, 'connected');
    await clock.tick(1);
    assert.equal(h.client.state, 'reconnecting');
    assert.equal(events[0]!.code, 1006);
    assert.match(events[0]!.reason, /dead link/);
    assert.equal(ws.closedWith?.code, 1000, 'the socket is closed by the client');
    await clock.tick(100);
    assert.equal(h.WS.instances.length, 2);
    h.client.close();
  });

  test('pings are answered with pong; the interval between them sets the limit (interval + pingGraceMs)', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { pingTimeoutMs: 60000, pingGraceMs: 2000 });
    h.client.connect();
    const ws = await accept(h);
    ws.receive({ op: 'ping' });
    await clock.tick(5000);
    ws.receive({ op: 'ping' });
    assert.equal(ws.sentOps('pong').length, 2);
    assert.equal(h.client.deadLinkTimeoutMs, 7000);
    await clock.tick(5000);
    ws.receive({ op: 'ping' });
    await clock.tick(6999);
    assert.equal(h.client.state, 'connected');
    await clock.tick(1);
    assert.equal(h.client.state, 'reconnecting', 'no ping for interval + grace');
    h.client.close();
  });

  test("the server's pong to the client's own ping keeps an idle link up (a server without heartbeats)", async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { pingTimeoutMs: 10000 });
    h.client.connect();
    const ws = await accept(h);
    for (let i = 1; i <= 10; i++) {
      await clock.tick(5000);
      assert.equal(ws.sentOps('ping').length, i);
      ws.receive({ op: 'pong' });
    }
    assert.equal(h.client.state, 'connected');
    h.client.close();
  });

  test('once the server pings, the client does not ping on its own', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { pingTimeoutMs: 60000, pingGraceMs: 10000 });
    h.client.connect();
    const ws = await accept(h);
    for (let i = 0; i < 10; i++) {
      ws.receive({ op: 'ping' });
      await clock.tick(25000);
    }
    assert.equal(ws.sentOps('ping').length, 0);
    assert.equal(ws.sentOps('pong').length, 10);
    assert.equal(h.client.state, 'connected');
    h.client.close();
  });

  test('a client that keeps receiving stays connected indefinitely', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { pingTimeoutMs: 1000 });
    h.client.connect();
    const ws = await accept(h);
    for (let i = 0; i < 50; i++) {
      await clock.tick(900);
      ws.receive({ op: 'pong' });
    }
    assert.equal(h.client.state, 'connected');
    assert.equal(h.WS.instances.length, 1);
    h.client.close();
  });
});

describe('token refresh', () => {
  test("the server's refresh push: getToken, then refresh with the new token; the answer schedules the next one", async (t) => {
    const clock = fakeClock(t);
    const tokens = ['t2', 't3'];
    let calls = 0;
    const h = makeClient('ws://rt.test/rt', {
      token: 't1',
      getToken: async () => {
        calls++;
        return tokens.shift()!;
      },
      refreshBeforeMs: 15000,
      pingTimeoutMs: 3600_000, // the fake server sends nothing for minutes
    });
    h.client.connect();
    await flush();
    const ws = h.WS.last;
    ws.open();
    assert.equal(ws.sentOps('auth')[0]!.token, 't1', 'the given token first');
    acceptAuth(ws, { expiresIn: 600000 });
    await flush();
    assert.equal(calls, 0);
    ws.receive({ op: 'refresh', expiresIn: 9000 });
    await flush();
    assert.equal(calls, 1);
    const refresh = ws.sentOps('refresh')[0]!;
    assert.equal(refresh.token, 't2');
    ws.receive(reply.refresh(refresh.id, 100000));
    await flush();
    // Next: 15 s before the new expiry, without waiting for the server.
    await clock.tick(84999);
    assert.equal(calls, 1);
    await clock.tick(1);
    assert.equal(calls, 2);
    assert.equal(ws.sentOps('refresh')[1]!.token, 't3');
    h.client.close();
  });

  test('before expiry: refreshBeforeMs ahead of the expiresIn that auth announced (half-way when it is shorter)', async (t) => {
    const clock = fakeClock(t);
    let calls = 0;
    const h = makeClient('ws://rt.test/rt', {
      getToken: async () => `t${++calls}`,
      refreshBeforeMs: 15000,
    });
    h.client.connect();
    await flush();
    h.WS.last.open();
    assert.equal(h.WS.last.sentOps('auth')[0]!.token, 't1', 'getToken serves the first attempt without a token');
    acceptAuth(h.WS.last, { expiresIn: 10000 });
    await flush();
    await clock.tick(4999);
    assert.equal(calls, 1);
    await clock.tick(1);
    assert.equal(calls, 2, 'half of 10 s, as 10 s < refreshBeforeMs');
    h.client.close();
  });

  test('every reconnect asks getToken again', async (t) => {
    const clock = fakeClock(t);
    let calls = 0;
    const h = makeClient('ws://rt.test/rt', { token: 'given', getToken: async () => `fresh-${++calls}`, reconnect: { minDelayMs: 100, jitter: 0 } });
    h.client.connect();
    await accept(h);
    h.WS.last.drop(1006);
    await flush();
    await clock.tick(100);
    h.WS.last.open();
    assert.equal(h.WS.last.sentOps('auth')[0]!.token, 'fresh-1');
    h.client.close();
  });

  test('getToken failing: an error event and another attempt with backoff', async (t) => {
    const clock = fakeClock(t);
    let fail = true;
    const h = makeClient('ws://rt.test/rt', {
      getToken: async () => {
        if (fail) throw new Error('auth server down');
        return 'ok';
      },
      reconnect: { minDelayMs: 100, jitter: 0 },
    });
    h.client.connect();
    await flush();
    assert.equal(h.WS.instances.length, 0, 'no socket without a token');
    assert.equal(h.errors[0]!.message, 'getToken failed: auth server down');
    fail = false;
    await clock.tick(100);
    await accept(h);
    assert.equal(h.client.state, 'connected');
    h.client.close();
  });

  test('a refresh push without getToken: an error event, the connection stays until the server closes it', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'only' });
    h.client.connect();
    const ws = await accept(h);
    ws.receive({ op: 'refresh', expiresIn: 5000 });
    await flush();
    assert.equal((h.errors[0] as { code?: string }).code, 'RT_CLIENT_TOKEN');
    assert.equal(h.client.state, 'connected');
    h.client.close();
  });
});
