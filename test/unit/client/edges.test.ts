/**
 * The edge cases a demanding application hits, on a fake clock with a fake
 * WebSocket: subscribe / unsubscribe / subscribe again while a request for
 * the channel is on its way or while reconnecting (one `sub`/`unsub` per
 * channel at a time), retryable refusals, publications that come through a
 * pattern before the channel's own `ok`, gaps and epoch changes (resync
 * from the last position), listeners that throw.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_GAPS_IN_A_ROW, type ClientError, type SubscribedEvent } from '../../../src/client/index.js';
import { fakeClock, accept, acceptSubs, flush, makeClient, reply, track, type FakeWebSocket, type Msg, type SubAnswer } from './fakes.js';

const FAST = { minDelayMs: 100, maxDelayMs: 100, jitter: 0 };

function msg(ws: FakeWebSocket, channel: string, offset: number, epoch = 'e1', extra: object = {}): void {
  ws.receive({ op: 'msg', channel, offset, epoch, data: offset, time: 1, ...extra });
}

/** The server's ok to a `sub` (a pattern: no position) or an `unsub`. */
function answer(ws: FakeWebSocket, request: Msg, fields: SubAnswer = {}): void {
  ws.receive(request.op === 'unsub' ? reply.unsub(request.id, request.channel) : reply.sub(request.id, request.channel, fields.position ?? null, fields.recovered));
}

describe('one sub/unsub per channel at a time', () => {
  test('unsubscribe and subscribe again while the first sub is on its way: the server sees sub, unsub, sub (never two subs at once)', async (t) => {
    fakeClock(t);
    const h = makeClient();
    h.client.connect();
    const ws = await accept(h);
    const first = h.client.subscribe('chat/a');
    const firstGot: unknown[] = [];
    first.on('message', (p) => firstGot.push(p.data));
    const firstDone = track(first.unsubscribe());
    const second = h.client.subscribe('chat/a');
    const secondGot: unknown[] = [];
    second.on('message', (p) => secondGot.push(p.data));
    await flush();
    assert.deepEqual(
      ws.sent.map((m) => m.op),
      ['sub'],
      'the second sub waits: the server would refuse it (409) while the first is being set up',
    );
    answer(ws, ws.sentOps('sub')[0]!, { position: { offset: 4, epoch: 'e1' } });
    assert.deepEqual(
      ws.sent.map((m) => m.op),
      ['sub', 'unsub'],
      'the first is undone before the second is sent',
    );
    assert.equal(firstDone.settled, false);
    answer(ws, ws.sentOps('unsub')[0]!);
    await flush();
    assert.equal(firstDone.settled, true);
    const resub = ws.sentOps('sub')[1]!;
    assert.equal(resub.channel, 'chat/a');
    assert.equal(resub.since, undefined, 'a new subscription starts from now');
    answer(ws, resub, { position: { offset: 4, epoch: 'e1' } });
    msg(ws, 'chat/a', 5);
    assert.equal(second.state, 'subscribed');
    assert.equal(first.state, 'unsubscribed');
    assert.deepEqual(secondGot, [5]);
    assert.deepEqual(firstGot, []);
    assert.deepEqual(h.errors, []);
    h.client.close();
  });

  test('unsubscribe, then subscribe again: the new sub follows the unsub\'s answer', async (t) => {
    fakeClock(t);
    const h = makeClient();
    const a = h.client.subscribe('chat/a', { presence: true });
    h.client.connect();
    const ws = await accept(h);
    acceptSubs(ws);
    const done = track(a.unsubscribe());
    const again = h.client.subscribe('chat/a', { presence: true });
    await flush();
    assert.deepEqual(
      ws.sent.map((m) => m.op),
      ['sub', 'unsub'],
    );
    assert.equal(again.state, 'pending');
    answer(ws, ws.sentOps('unsub')[0]!);
    await flush();
    assert.equal(done.settled, true);
    assert.deepEqual(
      ws.sent.map((m) => m.op),
      ['sub', 'unsub', 'sub'],
    );
    assert.equal(ws.sentOps('sub')[1]!.presence, true);
    acceptSubs(ws);
    assert.equal(again.state, 'subscribed');
    h.client.close();
  });

  test('an \'unsubscribed\' listener may subscribe to the channel again', async (t) => {
    fakeClock(t);
    const h = makeClient();
    const a = h.client.subscribe('chat/a');
    let again: unknown = null;
    a.on('unsubscribed', () => {
      again = h.client.subscribe('chat/a');
    });
    await a.unsubscribe();
    assert.equal(h.client.getSubscription('chat/a'), again);
    h.client.close();
  });

  test('subscribe, unsubscribe and subscribe again while reconnecting: one sub after the reconnect, for the latest', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    const a = h.client.subscribe('chat/a');
    h.client.connect();
    const ws1 = await accept(h);
    acceptSubs(ws1, () => ({ position: { offset: 3, epoch: 'e1' } }));
    ws1.drop(1006);
    await flush();
    const gone = track(a.unsubscribe());
    const b = h.client.subscribe('chat/b');
    const b2 = (await (async () => {
      await b.unsubscribe();
      return h.client.subscribe('chat/b');
    })());
    const a2 = h.client.subscribe('chat/a', { since: a.position! });
    await flush();
    assert.equal(gone.settled, true, 'not connected: resolves at once');
    await clock.tick(100);
    const ws2 = await accept(h);
    assert.deepEqual(
      ws2.sentOps('sub').map((s) => [s.channel, s.since]),
      [
        ['chat/b', undefined],
        ['chat/a', { offset: 3, epoch: 'e1' }],
      ],
    );
    assert.equal(ws2.sentOps('unsub').length, 0);
    acceptSubs(ws2);
    assert.equal(b2.state, 'subscribed');
    assert.equal(a2.state, 'subscribed');
    h.client.close();
  });

  test('a sub refused with 429 or 503 is retried after a pause, not failed; the hold resets after success', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: { minDelayMs: 300, maxDelayMs: 10000, factor: 2, jitter: 0 } });
    const sub = h.client.subscribe('chat/a');
    h.client.connect();
    const ws = await accept(h);
    ws.receive({ op: 'error', id: ws.sentOps('sub')[0]!.id, code: 429, message: 'rate limit exceeded' });
    await flush();
    assert.equal(sub.state, 'pending', 'not failed');
    assert.equal(h.client.getSubscription('chat/a'), sub);
    assert.equal((h.errors[0] as ClientError).serverCode, 429, 'reported');
    await clock.tick(299);
    assert.equal(ws.sentOps('sub').length, 1);
    await clock.tick(1);
    assert.equal(ws.sentOps('sub').length, 2);
    ws.receive({ op: 'error', id: ws.sentOps('sub')[1]!.id, code: 503, message: 'temporarily unavailable' });
    await clock.tick(599);
    assert.equal(ws.sentOps('sub').length, 2, 'the pause grows');
    await clock.tick(1);
    assert.equal(ws.sentOps('sub').length, 3);
    acceptSubs(ws);
    assert.equal(sub.state, 'subscribed');
    h.client.close();
  });

  test('an unsub refused with 429 is sent again after a pause (the server still has the subscription)', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: { minDelayMs: 300, jitter: 0 } });
    const sub = h.client.subscribe('chat/a');
    h.client.connect();
    const ws = await accept(h);
    acceptSubs(ws);
    const done = track(sub.unsubscribe());
    ws.receive({ op: 'error', id: ws.sentOps('unsub')[0]!.id, code: 429, message: 'rate limit exceeded' });
    await clock.tick(300);
    assert.equal(ws.sentOps('unsub').length, 2);
    assert.equal(done.settled, false);
    answer(ws, ws.sentOps('unsub')[1]!);
    await flush();
    assert.equal(done.settled, true);
    h.client.close();
  });
});

describe('delivery order across patterns, gaps and epochs', () => {
  test('a publication that comes through a pattern before the channel\'s own ok does not move the channel past what its resume replays', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    const patternGot: number[] = [];
    const exactGot: number[] = [];
    h.client.subscribe('chat/+', { onMessage: (p) => patternGot.push(p.offset) });
    const exact = h.client.subscribe('chat/a', { onMessage: (p) => exactGot.push(p.offset) });
    h.client.connect();
    const ws1 = await accept(h);
    acceptSubs(ws1, (s) => (s.channel === 'chat/a' ? { position: { offset: 10, epoch: 'e1' } } : { position: null }));
    msg(ws1, 'chat/a', 11);
    msg(ws1, 'chat/a', 12);
    ws1.drop(1006);
    await flush();
    await clock.tick(100);
    const ws2 = await accept(h);
    const [patternSub, exactSub] = ws2.sentOps('sub') as [Msg, Msg];
    assert.deepEqual(exactSub.since, { offset: 12, epoch: 'e1' });
    answer(ws2, patternSub);
    // 15 is published while the channel's sub is still being read: it reaches the pattern first.
    msg(ws2, 'chat/a', 15);
    assert.equal(exact.state, 'pending');
    answer(ws2, exactSub, { position: { offset: 15, epoch: 'e1' }, recovered: true });
    for (const offset of [13, 14, 15, 16]) msg(ws2, 'chat/a', offset);
    assert.deepEqual(exactGot, [11, 12, 13, 14, 15, 16], 'each once, in order');
    assert.deepEqual(patternGot, [11, 12, 15, 16], 'a pattern cannot resume: it said recovered: false');
    h.client.close();
  });

  test('a gap in the offsets: not delivered; unsub and sub again from the last position; the replay fills it in order', async (t) => {
    fakeClock(t);
    const h = makeClient();
    const got: number[] = [];
    const events: SubscribedEvent[] = [];
    const sub = h.client.subscribe('chat/a', { onMessage: (p) => got.push(p.offset), onSubscribed: (e) => events.push(e) });
    h.client.connect();
    const ws = await accept(h);
    acceptSubs(ws, () => ({ position: { offset: 10, epoch: 'e1' } }));
    msg(ws, 'chat/a', 11);
    msg(ws, 'chat/a', 13); // 12 is missing
    assert.deepEqual(got, [11]);
    assert.equal(sub.state, 'pending');
    const unsub = ws.sentOps('unsub')[0]!;
    assert.equal(unsub.channel, 'chat/a');
    msg(ws, 'chat/a', 14); // still on its way: not delivered either
    answer(ws, unsub);
    await flush();
    const resub = ws.sentOps('sub')[1]!;
    assert.deepEqual(resub.since, { offset: 11, epoch: 'e1' });
    answer(ws, resub, { position: { offset: 14, epoch: 'e1' }, recovered: true });
    for (const offset of [12, 13, 14, 15]) msg(ws, 'chat/a', offset);
    assert.deepEqual(got, [11, 12, 13, 14, 15]);
    assert.deepEqual(
      events.map((e) => [e.resumed, e.recovered]),
      [
        [false, true],
        [true, true],
      ],
    );
    assert.equal(sub.state, 'subscribed');
    h.client.close();
  });

  test('another epoch in a live publication: resync; recovered: false is reported and the position follows the server', async (t) => {
    fakeClock(t);
    const h = makeClient();
    const got: Array<[number, string]> = [];
    const recovered: SubscribedEvent[] = [];
    h.client.on('recovered', (e) => recovered.push(e));
    const sub = h.client.subscribe('chat/a', { onMessage: (p) => got.push([p.offset, p.epoch]) });
    h.client.connect();
    const ws = await accept(h);
    acceptSubs(ws, () => ({ position: { offset: 10, epoch: 'e1' } }));
    msg(ws, 'chat/a', 1, 'e2'); // the channel's history was lost
    answer(ws, ws.sentOps('unsub')[0]!);
    await flush();
    const resub = ws.sentOps('sub')[1]!;
    assert.deepEqual(resub.since, { offset: 10, epoch: 'e1' });
    answer(ws, resub, { position: { offset: 3, epoch: 'e2' }, recovered: false });
    msg(ws, 'chat/a', 4, 'e2');
    assert.deepEqual(got, [[4, 'e2']]);
    assert.deepEqual(recovered, [{ channel: 'chat/a', recovered: false, resumed: true, position: { offset: 3, epoch: 'e2' } }]);
    assert.deepEqual(sub.position, { offset: 4, epoch: 'e2' });
    h.client.close();
  });

  test('a server whose offsets are never contiguous: after MAX_GAPS_IN_A_ROW resyncs the client takes publications as they come (no unsub/sub storm)', async (t) => {
    fakeClock(t);
    const h = makeClient();
    const got: number[] = [];
    h.client.subscribe('chat/odd', { onMessage: (p) => got.push(p.offset) });
    h.client.connect();
    const ws = await accept(h);
    acceptSubs(ws, () => ({ position: { offset: 10, epoch: 'e1' } }));
    msg(ws, 'chat/odd', 12);
    for (let i = 0; i < MAX_GAPS_IN_A_ROW; i++) {
      const unsub = ws.sentOps('unsub').at(-1)!;
      answer(ws, unsub);
      await flush();
      const resub = ws.sentOps('sub').at(-1)!;
      assert.deepEqual(resub.since, { offset: 10, epoch: 'e1' });
      answer(ws, resub, { position: { offset: 12, epoch: 'e1' }, recovered: true });
      msg(ws, 'chat/odd', 12); // the replay skips 11 again
    }
    msg(ws, 'chat/odd', 14);
    msg(ws, 'chat/odd', 14);
    assert.equal(ws.sentOps('unsub').length, MAX_GAPS_IN_A_ROW);
    assert.deepEqual(got, [12, 14], 'taken as they come; repeats still dropped');
    h.client.close();
  });

  test('volatile publications never count as a gap', async (t) => {
    fakeClock(t);
    const h = makeClient();
    const got: unknown[] = [];
    h.client.subscribe('game/1', { onMessage: (p) => got.push(p.data) });
    h.client.connect();
    const ws = await accept(h);
    acceptSubs(ws, () => ({ position: { offset: 5, epoch: 'e1' } }));
    msg(ws, 'game/1', 5, 'e1', { volatile: true, data: 'v' });
    msg(ws, 'game/1', 0, 'other', { volatile: true, data: 'w' });
    msg(ws, 'game/1', 6, 'e1', { data: 'six' });
    assert.deepEqual(got, ['v', 'w', 'six']);
    assert.equal(ws.sentOps('unsub').length, 0);
    h.client.close();
  });

  test('an onMessage callback or listener that throws does not stop delivery nor the position', async (t) => {
    fakeClock(t);
    const thrown: unknown[] = [];
    const saved = (globalThis as { reportError?: unknown }).reportError;
    (globalThis as { reportError?: unknown }).reportError = (e: unknown) => thrown.push(e);
    try {
      const h = makeClient();
      const got: number[] = [];
      const sub = h.client.subscribe('chat/a', {
        onMessage: (p) => {
          got.push(p.offset);
          throw new Error(`app bug ${p.offset}`);
        },
      });
      sub.on('message', () => {
        throw new Error('listener bug');
      });
      h.client.connect();
      const ws = await accept(h);
      acceptSubs(ws);
      msg(ws, 'chat/a', 1);
      msg(ws, 'chat/a', 2);
      msg(ws, 'chat/a', 2);
      assert.deepEqual(got, [1, 2]);
      assert.deepEqual(sub.position, { offset: 2, epoch: 'e1' });
      assert.equal(thrown.length, 4);
      assert.equal(h.client.state, 'connected');
      h.client.close();
    } finally {
      if (saved === undefined) delete (globalThis as { reportError?: unknown }).reportError;
      else (globalThis as { reportError?: unknown }).reportError = saved;
    }
  });
});
