/**
 * Publications and requests on a fake clock: acks, retries with ONE
 * idempotency key per publish (timeouts, retryable errors, reconnects), the
 * bounded queue while disconnected, and what happens to rpc/presence/history
 * when the connection drops.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClientError, PublishResult } from '../../../src/client/index.js';
import { fakeClock, accept, DEFAULT_LIMITS, flush, makeClient, reply, type Msg, track } from './fakes.js';

const FAST = { minDelayMs: 100, maxDelayMs: 100, jitter: 0 };

describe('publish', () => {
  test('resolves with the ack; key and volatile on the wire', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'tok' });
    h.client.connect();
    const ws = await accept(h);
    const p = track(h.client.publish('chat/a', { text: 'hi' }));
    const v = track(h.client.publish('chat/a', 'cursor', { volatile: true }));
    const [pub, vol] = ws.sentOps('pub') as [Msg, Msg];
    assert.equal(pub.channel, 'chat/a');
    assert.deepEqual(pub.data, { text: 'hi' });
    assert.match(pub.key, /^[0-9a-f]{32}$/);
    assert.equal(pub.volatile, undefined);
    assert.equal(vol.volatile, true);
    assert.notEqual(pub.key, vol.key, 'one key per publish call');
    ws.receive(reply.pub(pub.id, 7, 'e1'));
    ws.receive(reply.pub(vol.id, 7, 'e1'));
    await flush();
    assert.deepEqual(p.value, { offset: 7, epoch: 'e1', duplicate: false } satisfies PublishResult);
    assert.equal(v.settled, true);
    assert.equal(h.client.pendingPublications, 0);
    h.client.close();
  });

  test('no ack: sent again after requestTimeoutMs with the SAME key, publishRetries times, then RT_CLIENT_TIMEOUT', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { requestTimeoutMs: 1000, publishRetries: 3 });
    h.client.connect();
    const ws = await accept(h);
    const p = track(h.client.publish('chat/a', 1));
    for (let i = 1; i <= 3; i++) {
      await clock.tick(999);
      assert.equal(ws.sentOps('pub').length, i);
      await clock.tick(1);
    }
    assert.equal(p.settled, false);
    const sends = ws.sentOps('pub');
    assert.equal(sends.length, 4, 'the first send and three retries');
    assert.equal(new Set(sends.map((m) => m.key)).size, 1, 'one idempotency key');
    assert.equal(new Set(sends.map((m) => m.id)).size, 4, 'a new request id each time');
    await clock.tick(1000);
    assert.equal(p.error?.code, 'RT_CLIENT_TIMEOUT');
    assert.match(p.error!.message, /after 3 retries/);
    assert.equal(ws.sentOps('pub').length, 4);
    assert.equal(h.client.pendingPublications, 0);
    h.client.close();
  });

  test('sent, not acked, and the connection gone for longer than the server remembers keys: not resent (RT_CLIENT_PUBLISH_UNCERTAIN); one never sent still goes', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'tok', requestTimeoutMs: 1000, reconnect: { minDelayMs: 100, maxDelayMs: 100, jitter: 0 } });
    h.client.connect();
    // A server that remembers publish keys for a minute says so in every auth reply.
    const limits = { ...DEFAULT_LIMITS, messageRate: { perSecond: 1000, burst: 1000 }, byteRate: { perSecond: 1e6, burst: 1e6 }, idempotencyTtlMs: 60_000 };
    const ws = await accept(h, { limits });
    const sent = track(h.client.publish('chat/a', 'sent once'));
    await flush();
    assert.equal(ws.sentOps('pub').length, 1);
    ws.drop(1006);
    await flush();
    const queued = track(h.client.publish('chat/a', 'never sent'));
    // A long outage: every attempt fails for a minute.
    for (let i = 0; i < 600; i++) {
      await clock.tick(100);
      if (h.WS.last !== ws && h.WS.last.readyState === 0) h.WS.last.drop(1006);
    }
    await clock.tick(100);
    const back = await accept(h, { limits });
    assert.equal(sent.error?.code, 'RT_CLIENT_PUBLISH_UNCERTAIN', JSON.stringify(sent));
    assert.match(sent.error!.message, /may or may not have been published/);
    assert.deepEqual(back.sentOps('pub').map((m) => m.data), ['never sent']);
    assert.equal(queued.settled, false);
    h.client.close();
  });

  test('sent and not acked, back within the window: resent with the same key', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'tok', requestTimeoutMs: 1000, reconnect: { minDelayMs: 100, maxDelayMs: 100, jitter: 0 } });
    h.client.connect();
    const ws = await accept(h);
    void track(h.client.publish('chat/a', 'again'));
    await flush();
    const key = ws.sentOps('pub')[0]!.key;
    ws.drop(1006);
    await clock.tick(100);
    const back = await accept(h);
    assert.deepEqual(back.sentOps('pub').map((m) => m.key), [key]);
    h.client.close();
  });

  test('a late ack of the first send settles it; the retry\'s duplicate ack is ignored', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { requestTimeoutMs: 1000 });
    h.client.connect();
    const ws = await accept(h);
    const p = track(h.client.publish('chat/a', 1));
    await clock.tick(1000);
    const [first, retry] = ws.sentOps('pub') as [Msg, Msg];
    ws.receive(reply.pub(first.id, 3, 'e'));
    ws.receive(reply.pub(retry.id, 3, 'e', true));
    await flush();
    assert.deepEqual(p.value, { offset: 3, epoch: 'e', duplicate: false });
    await clock.tick(10000);
    assert.equal(ws.sentOps('pub').length, 2, 'no more retries once settled');
    h.client.close();
  });

  test('retryable server errors (429, 503) are retried with the same key after a pause; others reject at once', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: { minDelayMs: 300 } });
    h.client.connect();
    const ws = await accept(h);
    const p = track(h.client.publish('chat/a', 1));
    const first = ws.sentOps('pub')[0]!;
    ws.receive({ op: 'error', id: first.id, code: 429, message: 'rate limit exceeded' });
    await clock.tick(299);
    assert.equal(ws.sentOps('pub').length, 1, 'not at once: it was rate limited');
    await clock.tick(1);
    const retry = ws.sentOps('pub')[1]!;
    assert.equal(retry.key, first.key);
    ws.receive(reply.pub(retry.id, 1, 'e'));
    await flush();
    assert.equal(p.value?.offset, 1);

    const q = track(h.client.publish('chat/secret', 1));
    const denied = ws.sentOps('pub')[2]!;
    ws.receive({ op: 'error', id: denied.id, code: 403, message: 'not allowed to publish chat/secret' });
    await flush();
    assert.equal(q.error?.code, 'RT_CLIENT_SERVER_ERROR');
    assert.equal(q.error?.serverCode, 403);
    assert.equal(ws.sentOps('pub').length, 3);
    h.client.close();
  });

  test('in flight when the connection drops: sent again after the reconnect with the same key', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    h.client.connect();
    const ws1 = await accept(h);
    const p = track(h.client.publish('chat/a', 'x'));
    const first = ws1.sentOps('pub')[0]!;
    ws1.drop(1006);
    await flush();
    assert.equal(p.settled, false);
    await clock.tick(100);
    const ws2 = await accept(h);
    const again = ws2.sentOps('pub')[0]!;
    assert.equal(again.key, first.key);
    assert.deepEqual(again.data, 'x');
    ws2.receive(reply.pub(again.id, 5, 'e', true));
    await flush();
    assert.deepEqual(p.value, { offset: 5, epoch: 'e', duplicate: true });
    h.client.close();
  });

  test('while disconnected: queued up to queueLimit, then RT_CLIENT_QUEUE_FULL at once; sent in order after connecting', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { queueLimit: 3, reconnect: FAST });
    h.client.connect();
    const ws1 = await accept(h);
    ws1.drop(1006);
    await flush();
    const queued = [1, 2, 3].map((n) => track(h.client.publish('chat/a', n)));
    const overflow = track(h.client.publish('chat/a', 4));
    await flush();
    assert.equal(overflow.error?.code, 'RT_CLIENT_QUEUE_FULL');
    assert.match(overflow.error!.message, /queueLimit 3/);
    assert.equal(h.client.pendingPublications, 3);
    await clock.tick(100);
    const ws2 = await accept(h);
    const sends = ws2.sentOps('pub');
    assert.deepEqual(
      sends.map((m) => m.data),
      [1, 2, 3],
    );
    sends.forEach((m, i) => ws2.receive(reply.pub(m.id, i + 1, 'e')));
    await flush();
    assert.deepEqual(
      queued.map((q) => q.value?.offset),
      [1, 2, 3],
    );
    // Connected: no queue limit applies (they go out at once).
    const many = Array.from({ length: 10 }, (_, i) => track(h.client.publish('chat/a', i)));
    await flush();
    assert.equal(many.filter((m) => m.error).length, 0);
    h.client.close();
  });

  test('publications before connect() wait for the connection; subscriptions go out before them', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'tok' });
    const p = track(h.client.publish('chat/a', 'early'));
    h.client.subscribe('chat/a');
    h.client.connect();
    const ws = await accept(h);
    assert.deepEqual(
      ws.sent.map((m) => m.op),
      ['auth', 'sub', 'pub'],
    );
    assert.equal(p.settled, false);
    h.client.close();
    await flush();
    assert.equal(p.error?.code, 'RT_CLIENT_CLOSED');
  });

  test('close() rejects queued and in-flight publications with RT_CLIENT_CLOSED; giving up with RT_CLIENT_DISCONNECTED', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt');
    h.client.connect();
    const ws = await accept(h);
    const p = track(h.client.publish('chat/a', 1));
    ws.drop(4503, 'kicked');
    await flush();
    assert.equal(p.error?.code, 'RT_CLIENT_DISCONNECTED');
    assert.equal(p.error?.closeCode, 4503);
    h.client.close();
  });
});

describe('rpc, presence, history', () => {
  test('rpc resolves with data; an error reply rejects with the server code', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt');
    h.client.connect();
    const ws = await accept(h);
    const ok = track(h.client.rpc('add', { a: 1, b: 2 }));
    const bad = track(h.client.rpc('nope'));
    const [r1, r2] = ws.sentOps('rpc') as [Msg, Msg];
    assert.deepEqual(r1.data, { a: 1, b: 2 });
    assert.equal('data' in r2, false);
    ws.receive(reply.rpc(r1.id, 3));
    ws.receive({ op: 'error', id: r2.id, code: 404, message: 'no rpc method nope' });
    await flush();
    assert.equal(ok.value, 3);
    assert.equal(bad.error?.serverCode, 404);
    h.client.close();
  });

  test('an rpc in flight when the connection drops rejects with RT_CLIENT_DISCONNECTED (not retried)', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    h.client.connect();
    const ws1 = await accept(h);
    const r = track(h.client.rpc('charge', { cents: 100 }));
    ws1.drop(1006);
    await flush();
    assert.equal(r.error?.code, 'RT_CLIENT_DISCONNECTED');
    await clock.tick(100);
    const ws2 = await accept(h);
    assert.equal(ws2.sentOps('rpc').length, 0);
    h.client.close();
  });

  test('history and presence in flight on a drop are sent again after the reconnect', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    h.client.connect();
    const ws1 = await accept(h);
    const hist = track(h.client.history('chat/a', { since: { offset: 3, epoch: 'e' }, limit: 10 }));
    const pres = track(h.client.presence('chat/a'));
    ws1.drop(1006);
    await flush();
    await clock.tick(100);
    const ws2 = await accept(h);
    const req = ws2.sentOps('history')[0]!;
    assert.deepEqual(req.since, { offset: 3, epoch: 'e' });
    assert.equal(req.limit, 10);
    ws2.receive(reply.history(req.id, 'chat/a', [], { offset: 3, epoch: 'e' }, true));
    const p = ws2.sentOps('presence')[0]!;
    ws2.receive(reply.presence(p.id, 'chat/a', {}));
    await flush();
    assert.deepEqual(hist.value, { channel: 'chat/a', publications: [], position: { offset: 3, epoch: 'e' }, recovered: true });
    assert.deepEqual(pres.value, { channel: 'chat/a', clients: {} });
    h.client.close();
  });

  test('a request waits for a connection for at most requestTimeoutMs (RT_CLIENT_DISCONNECTED); a sent one without reply: RT_CLIENT_TIMEOUT', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { requestTimeoutMs: 2000 });
    const waiting = track(h.client.rpc('x'));
    await clock.tick(2000);
    assert.equal(waiting.error?.code, 'RT_CLIENT_DISCONNECTED');
    h.client.connect();
    await accept(h);
    const silent = track(h.client.presence('chat/a'));
    await clock.tick(2000);
    assert.equal(silent.error?.code, 'RT_CLIENT_TIMEOUT');
    h.client.close();
    await assert.rejects(h.client.history('chat/a'), (err: ClientError) => err.code === 'RT_CLIENT_CLOSED');
  });
});
