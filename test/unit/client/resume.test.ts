/**
 * Subscriptions across reconnects: resubscribe with `since` = the last
 * position delivered, dedupe by offset per channel and epoch, volatile
 * messages always delivered, `recovered: false` reported (event and
 * callback), patterns, unsubscribe races, refused subscriptions, presence
 * events.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isNewPublication, type ClientError, type SubscribedEvent } from '../../../src/client/index.js';
import { fakeClock, accept, acceptSubs, flush, makeClient, reply, type FakeWebSocket } from './fakes.js';

const FAST = { minDelayMs: 100, maxDelayMs: 100, jitter: 0 };

function msg(ws: FakeWebSocket, channel: string, offset: number, epoch = 'e1', extra: object = {}): void {
  ws.receive({ op: 'msg', channel, offset, epoch, data: `${channel}#${offset}`, time: 1, ...extra });
}

describe('isNewPublication', () => {
  test('offset at or below the last one in the same epoch: seen; a new epoch or a volatile one: new', () => {
    const last = { offset: 5, epoch: 'e1' };
    assert.equal(isNewPublication(null, { offset: 1, epoch: 'e1' }), true);
    assert.equal(isNewPublication(last, { offset: 6, epoch: 'e1' }), true);
    assert.equal(isNewPublication(last, { offset: 5, epoch: 'e1' }), false);
    assert.equal(isNewPublication(last, { offset: 2, epoch: 'e1' }), false);
    assert.equal(isNewPublication(last, { offset: 1, epoch: 'e2' }), true, 'history lost: a new stream');
    assert.equal(isNewPublication(last, { offset: 5, epoch: 'e1', volatile: true }), true);
  });
});

describe('resume', () => {
  test('after a reconnect each subscription resumes from the last publication it delivered; no loss, no duplicate', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    const got: string[] = [];
    const events: SubscribedEvent[] = [];
    const sub = h.client.subscribe('chat/a', { onMessage: (p) => got.push(p.data as string), onSubscribed: (e) => events.push(e) });
    h.client.connect();
    const ws1 = await accept(h);
    assert.deepEqual(ws1.sentOps('sub')[0], { op: 'sub', id: ws1.sentOps('sub')[0]!.id, channel: 'chat/a' }, 'no since the first time');
    acceptSubs(ws1, () => ({ position: { offset: 10, epoch: 'e1' } }));
    assert.deepEqual(sub.position, { offset: 10, epoch: 'e1' });
    msg(ws1, 'chat/a', 11);
    msg(ws1, 'chat/a', 12);
    ws1.drop(1006);
    await flush();
    assert.equal(sub.state, 'pending');
    await clock.tick(100);
    const ws2 = await accept(h);
    const resub = ws2.sentOps('sub')[0]!;
    assert.deepEqual(resub.since, { offset: 12, epoch: 'e1' });
    acceptSubs(ws2, () => ({ position: { offset: 14, epoch: 'e1' }, recovered: true }));
    // The server replays 13, 14; a stray repeat of 12 (and of 13) is dropped.
    msg(ws2, 'chat/a', 12);
    msg(ws2, 'chat/a', 13);
    msg(ws2, 'chat/a', 13);
    msg(ws2, 'chat/a', 14);
    msg(ws2, 'chat/a', 15);
    await flush();
    assert.deepEqual(got, ['chat/a#11', 'chat/a#12', 'chat/a#13', 'chat/a#14', 'chat/a#15']);
    assert.deepEqual(
      events.map((e) => [e.resumed, e.recovered]),
      [
        [false, true],
        [true, true],
      ],
    );
    assert.deepEqual(sub.position, { offset: 15, epoch: 'e1' });
    h.client.close();
  });

  test('recovered: false is reported (client event, subscription event, callback) and the position jumps to the current one', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    const fromCallback: SubscribedEvent[] = [];
    const fromClient: SubscribedEvent[] = [];
    const fromSub: SubscribedEvent[] = [];
    h.client.on('recovered', (e) => fromClient.push(e));
    const sub = h.client.subscribe('chat/a', { onSubscribed: (e) => fromCallback.push(e) });
    sub.on('recovered', (e) => fromSub.push(e));
    const got: number[] = [];
    sub.on('message', (p) => got.push(p.offset));
    h.client.connect();
    const ws1 = await accept(h);
    acceptSubs(ws1);
    msg(ws1, 'chat/a', 1);
    ws1.drop(1006);
    await flush();
    await clock.tick(100);
    const ws2 = await accept(h);
    acceptSubs(ws2, () => ({ position: { offset: 3, epoch: 'e2' }, recovered: false }));
    msg(ws2, 'chat/a', 4, 'e2');
    await flush();
    const expected = { channel: 'chat/a', recovered: false, resumed: true, position: { offset: 3, epoch: 'e2' } };
    assert.deepEqual(fromClient, [expected]);
    assert.deepEqual(fromSub, [expected]);
    assert.deepEqual(fromCallback.at(-1), expected);
    assert.deepEqual(got, [1, 4]);
    h.client.close();
  });

  test('volatile publications have no offset of their own: always delivered, position unchanged', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt');
    const got: unknown[] = [];
    const sub = h.client.subscribe('game/1', { onMessage: (p) => got.push(p.data) });
    h.client.connect();
    const ws = await accept(h);
    acceptSubs(ws, () => ({ position: { offset: 5, epoch: 'e1' } }));
    msg(ws, 'game/1', 5, 'e1', { volatile: true, data: 'v1' });
    msg(ws, 'game/1', 5, 'e1', { volatile: true, data: 'v2' });
    msg(ws, 'game/1', 6, 'e1', { data: 'six' });
    msg(ws, 'game/1', 6, 'e1', { volatile: true, data: 'v3' });
    await flush();
    assert.deepEqual(got, ['v1', 'v2', 'six', 'v3']);
    assert.deepEqual(sub.position, { offset: 6, epoch: 'e1' });
    h.client.close();
  });

  test('the since option: the first subscription resumes; recovered as the server says', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt');
    const sub = h.client.subscribe('chat/a', { since: { offset: 7, epoch: 'old' } });
    h.client.connect();
    const ws = await accept(h);
    assert.deepEqual(ws.sentOps('sub')[0]!.since, { offset: 7, epoch: 'old' });
    acceptSubs(ws, () => ({ position: { offset: 9, epoch: 'old' }, recovered: true }));
    assert.deepEqual(sub.position, { offset: 7, epoch: 'old' }, 'the missed ones follow; the position moves with them');
    msg(ws, 'chat/a', 8, 'old');
    assert.deepEqual(sub.position, { offset: 8, epoch: 'old' });
    h.client.close();
  });

  test('patterns: resubscribed without since (recovered: false), deduped per concrete channel, presence flag sent', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    const got: string[] = [];
    const events: SubscribedEvent[] = [];
    const pat = h.client.subscribe('chat/+', { onMessage: (p) => got.push(p.data as string), onSubscribed: (e) => events.push(e) });
    const exact = h.client.subscribe('chat/a', { presence: true });
    const exactGot: string[] = [];
    exact.on('message', (p) => exactGot.push(p.data as string));
    h.client.connect();
    const ws1 = await accept(h);
    const subs = ws1.sentOps('sub');
    assert.equal(subs[0]!.presence, undefined);
    assert.equal(subs[1]!.presence, true);
    acceptSubs(ws1, (s) => (s.channel === 'chat/+' ? { position: null } : {}));
    msg(ws1, 'chat/a', 1);
    msg(ws1, 'chat/b', 1, 'eb');
    msg(ws1, 'chat/b', 1, 'eb'); // a repeat
    msg(ws1, 'other/c', 1);
    assert.deepEqual(got, ['chat/a#1', 'chat/b#1'], 'both channels, once each, not other/c');
    assert.deepEqual(exactGot, ['chat/a#1'], 'the exact subscription gets it too');
    ws1.drop(1006);
    await flush();
    await clock.tick(100);
    const ws2 = await accept(h);
    const resub = ws2.sentOps('sub').find((s) => s.channel === 'chat/+')!;
    assert.equal(resub.since, undefined, 'patterns cannot resume');
    acceptSubs(ws2);
    assert.deepEqual(
      events.map((e) => [e.resumed, e.recovered]),
      [
        [false, true],
        [true, false],
      ],
    );
    assert.equal(pat.position, null);
    h.client.close();
  });

  test('unsubscribe: unsub sent when subscribed; while the sub is in flight, unsub follows its ok; not resubscribed', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    const a = h.client.subscribe('chat/a');
    h.client.connect();
    const ws1 = await accept(h);
    acceptSubs(ws1);
    const done = a.unsubscribe();
    const unsub = ws1.sentOps('unsub')[0]!;
    assert.equal(unsub.channel, 'chat/a');
    ws1.receive(reply.unsub(unsub.id, 'chat/a'));
    await done;
    assert.equal(a.state, 'unsubscribed');
    assert.equal(h.client.getSubscription('chat/a'), undefined);
    msg(ws1, 'chat/a', 5);

    const b = h.client.subscribe('chat/b');
    const bGot: unknown[] = [];
    b.on('message', (p) => bGot.push(p));
    let bDone = false;
    void b.unsubscribe().then(() => (bDone = true)); // the sub is on its way
    await flush();
    assert.equal(ws1.sentOps('unsub').length, 1, 'no unsub before the sub is answered');
    assert.equal(bDone, false, 'unsubscribe() resolves once the server no longer has it');
    acceptSubs(ws1);
    const undo = ws1.sentOps('unsub').at(-1)!;
    assert.equal(undo.channel, 'chat/b', 'undone after its ok');
    msg(ws1, 'chat/b', 1);
    assert.deepEqual(bGot, []);
    ws1.receive(reply.unsub(undo.id, 'chat/b'));
    await flush();
    assert.equal(bDone, true);

    // A subscription can be made again after unsubscribing.
    h.client.subscribe('chat/a');
    ws1.drop(1006);
    await flush();
    await clock.tick(100);
    const ws2 = await accept(h);
    assert.deepEqual(
      ws2.sentOps('sub').map((s) => s.channel),
      ['chat/a'],
    );
    assert.throws(() => h.client.subscribe('chat/a'), (err: ClientError) => err.code === 'RT_CLIENT_ALREADY_SUBSCRIBED');
    h.client.close();
  });

  test('a refused subscription fails (error event on the subscription, the client, and the callback) and is not retried', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    const cb: ClientError[] = [];
    const sub = h.client.subscribe('secret/x', { onError: (e) => cb.push(e) });
    const subErrors: ClientError[] = [];
    sub.on('error', (e) => subErrors.push(e));
    h.client.connect();
    const ws1 = await accept(h);
    const req = ws1.sentOps('sub')[0]!;
    ws1.receive({ op: 'error', id: req.id, code: 403, message: 'not allowed to subscribe secret/x' });
    await flush();
    assert.equal(sub.state, 'failed');
    assert.equal(cb[0]!.serverCode, 403);
    assert.equal(subErrors.length, 1);
    assert.equal(h.errors.length, 1);
    ws1.drop(1006);
    await flush();
    await clock.tick(100);
    const ws2 = await accept(h);
    assert.equal(ws2.sentOps('sub').length, 0);
    h.client.close();
  });

  test('presence events go to the subscription: join, leave, count', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt');
    const seen: string[] = [];
    h.client.subscribe('chat/a', {
      presence: true,
      onJoin: (c) => seen.push(`join ${c.map((x) => x.user).join(',')}`),
      onLeave: (c) => seen.push(`leave ${c.map((x) => x.user).join(',')}`),
      onCount: (c) => seen.push(`count ${c.clients}/${c.users}`),
    });
    h.client.connect();
    const ws = await accept(h);
    acceptSubs(ws);
    ws.receive({ op: 'join', channel: 'chat/a', clients: [{ client: '1', user: 'bob' }] });
    ws.receive({ op: 'leave', channel: 'chat/a', clients: [{ client: '1', user: 'bob' }] });
    ws.receive({ op: 'count', channel: 'chat/a', clients: 3, users: 2 });
    ws.receive({ op: 'join', channel: 'chat/other', clients: [{ client: '2', user: 'eve' }] });
    assert.deepEqual(seen, ['join bob', 'leave bob', 'count 3/2']);
    h.client.close();
  });

  test('unknown pushes are ignored; an error without id becomes an error event; malformed data reconnects', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { reconnect: FAST });
    h.client.connect();
    const ws1 = await accept(h);
    ws1.receiveRaw(JSON.stringify({ op: 'something-new', x: 1 })); // from a newer server
    ws1.receive({ op: 'error', code: 400, message: 'unknown op' });
    await flush();
    assert.equal(h.client.state, 'connected');
    assert.equal(h.errors.length, 1);
    ws1.receiveRaw('{not json');
    await flush();
    assert.equal(h.client.state, 'reconnecting');
    assert.equal(ws1.closedWith?.code, 1000);
    await clock.tick(100);
    const ws2 = await accept(h);
    ws2.receiveRaw('[1,2]');
    await flush();
    assert.equal(h.client.state, 'reconnecting');
    h.client.close();
  });
});
