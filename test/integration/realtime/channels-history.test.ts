/**
 * History, resume, idempotency and volatile publications through the real
 * server (docs/protocol.md, "Offsets, epochs and resume", "Publish acks and
 * idempotency").
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { offsets, range, sleep, SlowHistoryBroker, startRealtime, until, WAIT, type Namespace, type RtClient } from './helpers.js';

const NAMESPACES: Namespace[] = [
  { prefix: 'chat', history: { size: 1000, ttlMs: 0 } },
  { prefix: 'small', history: { size: 5, ttlMs: 0 } },
  { prefix: 'ttl', history: { size: 100, ttlMs: 150 } },
  { prefix: 'live' }, // no history
  { prefix: 'big', history: { size: 20_000, ttlMs: 0 } },
];

/** Publish `n` messages one after the other; returns the acks. */
async function publishMany(c: RtClient, channel: string, n: number, data = (i: number): unknown => i) {
  const acks = [];
  for (let i = 1; i <= n; i++) acks.push(await c.ok('pub', { channel, data: data(i) }));
  return acks;
}

describe('history op', () => {
  test('returns the last N in order, with the position; since filters; limit 0 and no-history namespaces return none', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const c = await rt.connect('alice');
    const acks = await publishMany(c, 'chat/h', 10, (i) => ({ i }));
    const epoch = acks[0]!.epoch;

    const all = await c.ok('history', { channel: 'chat/h' });
    assert.equal(all.channel, 'chat/h');
    assert.deepEqual(offsets(all.publications), range(1, 10));
    assert.deepEqual(all.publications.map((p: { data: unknown }) => p.data), range(1, 10).map((i) => ({ i })));
    assert.deepEqual(all.position, { offset: 10, epoch });
    assert.equal('recovered' in all, false);
    for (const p of all.publications) {
      assert.equal(p.channel, 'chat/h');
      assert.equal(p.epoch, epoch);
      assert.equal(p.from.user, 'alice');
    }

    const last3 = await c.ok('history', { channel: 'chat/h', limit: 3 });
    assert.deepEqual(offsets(last3.publications), [8, 9, 10]);

    const since = await c.ok('history', { channel: 'chat/h', since: { offset: 6, epoch } });
    assert.deepEqual(offsets(since.publications), [7, 8, 9, 10]);
    assert.equal(since.recovered, true);
    const sinceLimited = await c.ok('history', { channel: 'chat/h', since: { offset: 6, epoch }, limit: 2 });
    assert.deepEqual(offsets(sinceLimited.publications), [7, 8], 'with since, the oldest first');

    const wrongEpoch = await c.ok('history', { channel: 'chat/h', since: { offset: 6, epoch: 'nope' } });
    assert.deepEqual(wrongEpoch.publications, []);
    assert.equal(wrongEpoch.recovered, false);

    assert.deepEqual((await c.ok('history', { channel: 'chat/h', limit: 0 })).publications, []);
    await c.fails('history', { channel: 'chat/h', limit: -1 }, 400);

    // size 5: only the last 5 are kept
    await publishMany(c, 'small/h', 8);
    const small = await c.ok('history', { channel: 'small/h' });
    assert.deepEqual(offsets(small.publications), [4, 5, 6, 7, 8]);
    assert.equal(small.position.offset, 8);

    // no history
    await publishMany(c, 'live/h', 3);
    assert.deepEqual((await c.ok('history', { channel: 'live/h' })).publications, []);
  });
});

describe('resume', () => {
  test('since → recovered: true, exactly the missed messages in order, then live ones', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const s = await rt.connect('s');
    await s.ok('sub', { channel: 'chat/r' });
    await publishMany(p, 'chat/r', 5);
    const seen = await s.waitMessages('chat/r', 5);
    const last = seen[4]!;
    await s.close();

    await publishMany(p, 'chat/r', 4); // 6..9 missed
    const s2 = await rt.connect('s');
    const ack = await s2.ok('sub', { channel: 'chat/r', since: { offset: last.offset, epoch: last.epoch } });
    assert.equal(ack.recovered, true);
    assert.deepEqual(ack.position, { offset: 9, epoch: last.epoch });
    await s2.waitMessages('chat/r', 4);
    await publishMany(p, 'chat/r', 2); // 10, 11 live
    await s2.waitMessages('chat/r', 6);
    await sleep(20);
    assert.deepEqual(offsets(s2.messages('chat/r')), range(6, 11));
    // The ok reply comes before the recovered messages.
    const iOk = s2.received.indexOf(ack);
    const iFirst = s2.received.findIndex((m) => m.op === 'msg');
    assert.ok(iOk < iFirst, 'the ok reply precedes the recovered messages');
  });

  test('resume from the newest position: recovered, nothing replayed; resume ahead of the stream: not recovered', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const acks = await publishMany(p, 'chat/n', 3);
    const epoch = acks[0]!.epoch;
    const s = await rt.connect('s');
    const ok = await s.ok('sub', { channel: 'chat/n', since: { offset: 3, epoch } });
    assert.equal(ok.recovered, true);
    await publishMany(p, 'chat/n', 1);
    await s.waitMessages('chat/n', 1);
    await sleep(20);
    assert.deepEqual(offsets(s.messages('chat/n')), [4]);

    const s2 = await rt.connect('s2');
    const ahead = await s2.ok('sub', { channel: 'chat/n', since: { offset: 99, epoch } });
    assert.equal(ahead.recovered, false);
    assert.deepEqual(ahead.position, { offset: 4, epoch });
  });

  test('more missed than one replay carries (10 000): recovered: false and no partial replay, then live ones', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const first = await rt.server.publish('big/far', 0);
    for (let i = 1; i <= 10_005; i++) await rt.server.publish('big/far', i);
    const s = await rt.connect('s');
    const ok = await s.ok('sub', { channel: 'big/far', since: { offset: first.offset, epoch: first.epoch } });
    assert.equal(ok.recovered, false);
    assert.deepEqual(ok.position, { offset: 10_006, epoch: first.epoch });
    await rt.server.publish('big/far', 'live');
    await s.waitMessages('big/far', 1);
    await sleep(20);
    assert.deepEqual(offsets(s.messages('big/far')), [10_007]);

    // Exactly 10 000 behind is still replayed in full.
    const s2 = await rt.connect('s2');
    const ok2 = await s2.ok('sub', { channel: 'big/far', since: { offset: 10_007 - 10_000, epoch: first.epoch } });
    assert.equal(ok2.recovered, true);
    const replayed = await s2.waitMessages('big/far', 10_000, 10_000);
    assert.deepEqual([replayed[0]!.offset, replayed.at(-1)!.offset], [8, 10_007]);
  });

  for (let round = 1; round <= 5; round++) {
    test(`race: publications concurrent with a resuming subscribe → contiguous, no gap, no duplicate (round ${round})`, async (t) => {
      // history answers late (a few ms), so publications land before, during and after the read
      const rt = await startRealtime(t, NAMESPACES, {}, { broker: new SlowHistoryBroker({ randomMs: 4 }) });
      const channel = `chat/race${round}`;
      const p = await rt.connect('p');
      const first = await publishMany(p, channel, 5);
      const since = { offset: 5, epoch: first[0]!.epoch };
      const s = await rt.connect('s');
      const plain = await rt.connect('plain'); // subscribes without since at the same moment

      const total = 300;
      const startAfter = 20 + Math.floor(Math.random() * 150);
      const pending: { subs: Promise<{ resumed: any; fresh: any }> | null } = { subs: null };
      // Publications keep flowing (8 in flight at any time) while the two subscribes are handled;
      // the subscribes go out when `startAfter` of them were acked.
      let sent = 0;
      let acked = 0;
      let ackedAtReply = -1;
      await new Promise<void>((resolve, reject) => {
        const next = (): void => {
          if (sent === total) return;
          sent++;
          p.ok('pub', { channel, data: sent }, 10_000).then(() => {
            acked++;
            if (acked === startAfter) {
              pending.subs = Promise.all([s.ok('sub', { channel, since }), plain.ok('sub', { channel })]).then(([resumed, fresh]) => {
                ackedAtReply = acked;
                return { resumed, fresh };
              });
            }
            if (acked === total) resolve();
            else next();
          }, reject);
        };
        for (let i = 0; i < 8; i++) next();
      });
      assert.ok(pending.subs, 'subscribes were sent');
      const { resumed, fresh } = await pending.subs;
      assert.ok(ackedAtReply > startAfter && ackedAtReply < total, `publications went on while the subscribes were handled (${startAfter} → ${ackedAtReply} of ${total} acked)`);
      assert.equal(resumed.recovered, true);
      const end = 5 + total;
      const got = await s.waitMessages(channel, end - 5, 5000);
      await sleep(30);
      assert.deepEqual(offsets(s.messages(channel)), range(6, end), 'recovered + live = every offset after since, once, in order');
      assert.equal(got[0]!.data, 1);

      const from = fresh.position.offset as number;
      assert.ok(from >= 5 && from <= end);
      await plain.waitUntil(() => plain.messages(channel).length >= end - from, 5000, 'the plain subscriber to catch up');
      await sleep(10);
      assert.deepEqual(offsets(plain.messages(channel)), range(from + 1, end), 'a subscribe without since: everything after the announced position');
    });
  }

  test('a connection with a pattern subscription that resumes the exact channel gets each publication once', async (t) => {
    // history answers after 80 ms: publications in that window reach the pattern subscription live
    // and the exact one (buffered while it recovers); only one of them may deliver each.
    const rt = await startRealtime(t, NAMESPACES, {}, { broker: new SlowHistoryBroker({ fixedMs: 80 }) });
    const p = await rt.connect('p');
    const s = await rt.connect('s');
    await s.ok('sub', { channel: 'chat/x/+' });
    await publishMany(p, 'chat/x/y', 5);
    await s.waitMessages('chat/x/y', 5); // nothing in flight any more
    const last = s.messages('chat/x/y')[4]!;
    const reply = s.request('sub', { channel: 'chat/x/y', since: { offset: last.offset, epoch: last.epoch } });
    const session = rt.server.hub.sessions.get(s.clientId)!;
    await until(() => session.subscriptions.has('chat/x/y'), WAIT, 'the exact subscription to be registered');
    await publishMany(p, 'chat/x/y', 5); // 6..10, during the recovery window
    const ok = await reply;
    assert.equal(ok.op, 'ok');
    assert.equal(ok.recovered, true);
    await publishMany(p, 'chat/x/y', 2); // 11, 12 live
    await s.waitMessages('chat/x/y', 12);
    await p.ok('pub', { channel: 'chat/x/z', data: 'marker' }); // the pattern alone
    await s.waitFor((m) => m.op === 'msg' && m.channel === 'chat/x/z', WAIT, 'the marker');
    await sleep(20);
    assert.deepEqual(offsets(s.messages('chat/x/y')), range(1, 12), 'each publication once, in order');
  });

  test('sub and unsub sent together while history is slow: handled in order (the sub completes with its recovered messages, then the unsub); nothing after, nothing left', async (t) => {
    const rt = await startRealtime(t, NAMESPACES, {}, { broker: new SlowHistoryBroker({ fixedMs: 60 }) });
    const p = await rt.connect('p');
    const acks = await publishMany(p, 'chat/u', 2);
    const s = await rt.connect('s');
    const subReply = s.request('sub', { channel: 'chat/u', since: { offset: 0, epoch: acks[0]!.epoch } });
    const unsubReply = s.request('unsub', { channel: 'chat/u' });
    const sub = await subReply;
    assert.equal(sub.op, 'ok', JSON.stringify(sub));
    assert.equal(sub.recovered, true);
    const unsub = await unsubReply;
    assert.equal(unsub.op, 'ok');
    // The replies and the recovered messages in request order.
    const order = s.received.filter((m) => m.id === sub.id || m.id === unsub.id || m.op === 'msg').map((m) => (m.op === 'msg' ? `msg ${m.offset}` : `${m.op} ${m.id}`));
    assert.deepEqual(order, [`ok ${sub.id}`, 'msg 1', 'msg 2', `ok ${unsub.id}`]);
    await publishMany(p, 'chat/u', 1);
    await sleep(30);
    assert.deepEqual(offsets(s.messages('chat/u')), [1, 2], 'nothing live after the unsub');
    assert.equal(rt.server.hub.subscriptionCount, 0);
    assert.equal(rt.broker.stats().subscriptions, 0);
    // and it can subscribe again
    assert.equal((await s.ok('sub', { channel: 'chat/u' })).position.offset, 3);
  });

  test('disconnect while the subscribe is still reading history leaves nothing behind', async (t) => {
    const rt = await startRealtime(t, NAMESPACES, {}, { broker: new SlowHistoryBroker({ fixedMs: 40 }) });
    const s = await rt.connect('s');
    s.send({ op: 'sub', id: 99, channel: 'chat/d', since: { offset: 0, epoch: 'x' } });
    await until(() => rt.server.hub.subscriptionCount === 1, WAIT, 'the subscription to be registered');
    s.terminate();
    await until(() => rt.server.hub.sessions.size === 0, WAIT, 'the session to close');
    await sleep(80);
    assert.equal(rt.server.hub.subscriptionCount, 0);
    assert.deepEqual(rt.server.hub.channelStats(), []);
    assert.equal(rt.broker.stats().subscriptions, 0);
  });

  test('history evicted (size exceeded) → recovered: false with the current position; live messages follow', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const acks = await publishMany(p, 'small/e', 10); // keeps 6..10
    const epoch = acks[0]!.epoch;
    const s = await rt.connect('s');
    const lost = await s.ok('sub', { channel: 'small/e', since: { offset: 4, epoch } }); // needs 5..10, 5 is gone
    assert.equal(lost.recovered, false);
    assert.deepEqual(lost.position, { offset: 10, epoch });
    await publishMany(p, 'small/e', 1);
    await s.waitMessages('small/e', 1);
    await sleep(20);
    assert.deepEqual(offsets(s.messages('small/e')), [11], 'no replay, only live ones');

    const s2 = await rt.connect('s2');
    const edge = await s2.ok('sub', { channel: 'small/e', since: { offset: 6, epoch } }); // needs 7..11: all there
    assert.equal(edge.recovered, true);
    await s2.waitMessages('small/e', 5);
    await sleep(20);
    assert.deepEqual(offsets(s2.messages('small/e')), range(7, 11));
  });

  test('wrong epoch → recovered: false with the current position', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const acks = await publishMany(p, 'chat/w', 3);
    const s = await rt.connect('s');
    const r = await s.ok('sub', { channel: 'chat/w', since: { offset: 1, epoch: 'not-the-epoch' } });
    assert.equal(r.recovered, false);
    assert.deepEqual(r.position, { offset: 3, epoch: acks[0]!.epoch });
    await sleep(30);
    assert.equal(s.messages('chat/w').length, 0);
    const r2 = await (await rt.connect('s2')).ok('sub', { channel: 'chat/w', since: { offset: 0, epoch: '' } });
    assert.equal(r2.recovered, false);
  });

  test('quiet channel: resume from {0, epoch} → recovered (also after publications in that epoch)', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const s = await rt.connect('s');
    const first = await s.ok('sub', { channel: 'chat/q' });
    assert.equal(first.position.offset, 0);
    const q = first.position.epoch as string;
    await s.close();

    const s2 = await rt.connect('s');
    const again = await s2.ok('sub', { channel: 'chat/q', since: { offset: 0, epoch: q } });
    assert.equal(again.recovered, true);
    assert.deepEqual(again.position, { offset: 0, epoch: q });
    await s2.close();

    const p = await rt.connect('p');
    const acks = await publishMany(p, 'chat/q', 3);
    assert.equal(acks[0]!.epoch, q, 'the first publications are in the quiet epoch');
    const s3 = await rt.connect('s');
    const r = await s3.ok('sub', { channel: 'chat/q', since: { offset: 0, epoch: q } });
    assert.equal(r.recovered, true);
    await s3.waitMessages('chat/q', 3);
    assert.deepEqual(offsets(s3.messages('chat/q')), [1, 2, 3]);

    // The same in a namespace without history, when nothing was published.
    const l = await rt.connect('l');
    const lq = (await l.ok('sub', { channel: 'live/q' })).position;
    await l.ok('unsub', { channel: 'live/q' });
    const lr = await l.ok('sub', { channel: 'live/q', since: lq });
    assert.equal(lr.recovered, true);
  });

  test('namespace without history: a resume over missed publications is not recovered', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const keeper = await rt.connect('keeper'); // keeps the channel's stream alive
    await keeper.ok('sub', { channel: 'live/n' });
    const s = await rt.connect('s');
    await s.ok('sub', { channel: 'live/n' });
    await publishMany(p, 'live/n', 3);
    const seen = await s.waitMessages('live/n', 3);
    const last = seen[2]!;
    await s.close();
    // nothing missed yet: recovered
    const s2 = await rt.connect('s');
    assert.equal((await s2.ok('sub', { channel: 'live/n', since: { offset: last.offset, epoch: last.epoch } })).recovered, true);
    await s2.close();

    await publishMany(p, 'live/n', 2);
    const s3 = await rt.connect('s');
    const r = await s3.ok('sub', { channel: 'live/n', since: { offset: last.offset, epoch: last.epoch } });
    assert.equal(r.recovered, false);
    assert.deepEqual(r.position, { offset: 5, epoch: last.epoch });
    await sleep(30);
    assert.equal(s3.messages('live/n').length, 0);

    // and with nobody holding the channel, its epoch changes once it had offsets
    await keeper.close();
    await s3.close();
    await publishMany(p, 'live/n', 1);
    const s4 = await rt.connect('s');
    assert.equal((await s4.ok('sub', { channel: 'live/n', since: { offset: 6, epoch: last.epoch } })).recovered, false);
  });

  test('TTL: publications older than ttlMs are evicted; the position survives them', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const acks = await publishMany(p, 'ttl/t', 3);
    const epoch = acks[0]!.epoch;
    assert.equal((await p.ok('history', { channel: 'ttl/t' })).publications.length, 3);
    await sleep(250);
    const h = await p.ok('history', { channel: 'ttl/t' });
    assert.deepEqual(h.publications, [], 'expired');
    assert.deepEqual(h.position, { offset: 3, epoch });
    const s = await rt.connect('s');
    assert.equal((await s.ok('sub', { channel: 'ttl/t', since: { offset: 1, epoch } })).recovered, false, 'what expired cannot be recovered');
    const s2 = await rt.connect('s2');
    assert.equal((await s2.ok('sub', { channel: 'ttl/t', since: { offset: 3, epoch } })).recovered, true, 'nothing was missed');
    await publishMany(p, 'ttl/t', 1);
    assert.deepEqual(offsets((await p.ok('history', { channel: 'ttl/t' })).publications), [4]);
    await s2.waitMessages('ttl/t', 1);
  });
});

describe('idempotency', () => {
  test('the same key twice → duplicate: true with the same offset; subscribers get it once', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('alice');
    const s = await rt.connect('s');
    await s.ok('sub', { channel: 'chat/i' });
    await s.ok('sub', { channel: 'live/i' });
    for (const channel of ['chat/i', 'live/i']) {
      const a = await p.ok('pub', { channel, data: 'one', key: 'k1' });
      assert.equal('duplicate' in a, false);
      const b = await p.ok('pub', { channel, data: 'one again', key: 'k1' });
      assert.equal(b.duplicate, true);
      assert.equal(b.offset, a.offset);
      assert.equal(b.epoch, a.epoch);
      // The same user on another connection: still the same key.
      const p2 = await rt.connect('alice');
      const c = await p2.ok('pub', { channel, data: 'from elsewhere', key: 'k1' });
      assert.equal(c.duplicate, true);
      assert.equal(c.offset, a.offset);
      // A different key publishes.
      const d = await p.ok('pub', { channel, data: 'two', key: 'k2' });
      assert.equal(d.offset, a.offset + 1);
      await s.waitMessages(channel, 2);
    }
    await p.ok('pub', { channel: 'chat/i', data: 'end' });
    await s.waitMessages('chat/i', 3);
    await sleep(20);
    assert.deepEqual(s.messages('chat/i').map((m) => m.data), ['one', 'two', 'end']);
    assert.deepEqual(s.messages('live/i').map((m) => m.data), ['one', 'two']);
    assert.deepEqual(offsets((await p.ok('history', { channel: 'chat/i' })).publications), [1, 2, 3]);
  });

  test('different users with the same key are independent; the same key on another channel too', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const alice = await rt.connect('alice');
    const bob = await rt.connect('bob');
    const s = await rt.connect('s');
    await s.ok('sub', { channel: 'chat/u' });
    const a = await alice.ok('pub', { channel: 'chat/u', data: 'a', key: 'same' });
    const b = await bob.ok('pub', { channel: 'chat/u', data: 'b', key: 'same' });
    assert.equal('duplicate' in b, false);
    assert.equal(b.offset, a.offset + 1);
    const other = await alice.ok('pub', { channel: 'chat/v', data: 'a', key: 'same' });
    assert.equal('duplicate' in other, false);
    assert.equal(other.offset, 1);
    await s.waitMessages('chat/u', 2);
    assert.deepEqual(s.messages('chat/u').map((m) => [m.data, m.from.user]), [['a', 'alice'], ['b', 'bob']]);
  });

  test('concurrent retries with one key publish once', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('alice');
    const s = await rt.connect('s');
    await s.ok('sub', { channel: 'chat/c' });
    const replies = await Promise.all(range(1, 5).map(() => p.ok('pub', { channel: 'chat/c', data: 'x', key: 'retry' })));
    assert.deepEqual(replies.map((r) => r.offset), [1, 1, 1, 1, 1]);
    assert.equal(replies.filter((r) => r.duplicate === true).length, 4);
    await s.waitMessages('chat/c', 1);
    await sleep(30);
    assert.equal(s.messages('chat/c').length, 1);
  });
});

describe('volatile publications', () => {
  test('delivered, not in history, no offset of their own: a resume afterwards is still recovered', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const s = await rt.connect('s');
    await s.ok('sub', { channel: 'chat/v' });
    const a1 = await p.ok('pub', { channel: 'chat/v', data: 1 });
    const a2 = await p.ok('pub', { channel: 'chat/v', data: 2 });
    const v1 = await p.ok('pub', { channel: 'chat/v', data: 'v1', volatile: true });
    const v2 = await p.ok('pub', { channel: 'chat/v', data: 'v2', volatile: true });
    assert.deepEqual([a1.offset, a2.offset], [1, 2]);
    assert.equal(v1.offset, 2, 'a volatile publication carries the current position');
    assert.equal(v2.offset, 2);
    assert.equal(v1.epoch, a1.epoch);
    const a3 = await p.ok('pub', { channel: 'chat/v', data: 3 });
    assert.equal(a3.offset, 3, 'volatile publications do not advance the offset');

    const msgs = await s.waitMessages('chat/v', 5);
    assert.deepEqual(msgs.map((m) => m.data), [1, 2, 'v1', 'v2', 3]);
    assert.deepEqual(msgs.map((m) => m.volatile === true), [false, false, true, true, false]);
    assert.deepEqual(msgs.map((m) => 'volatile' in m), [false, false, true, true, false]);

    const h = await p.ok('history', { channel: 'chat/v' });
    assert.deepEqual(h.publications.map((x: { data: unknown }) => x.data), [1, 2, 3]);

    // Saw up to 2, then only volatile ones and 3 happened: resume gets exactly 3.
    const r = await rt.connect('r');
    const ack = await r.ok('sub', { channel: 'chat/v', since: { offset: 2, epoch: a1.epoch } });
    assert.equal(ack.recovered, true);
    await r.waitMessages('chat/v', 1);
    await p.ok('pub', { channel: 'chat/v', data: 'v3', volatile: true });
    await r.waitMessages('chat/v', 2);
    await sleep(20);
    assert.deepEqual(r.messages('chat/v').map((m) => m.data), [3, 'v3']);

    // Volatile to a quiet channel: delivered, leaves no stream behind.
    await r.ok('sub', { channel: 'live/quiet' });
    await p.ok('pub', { channel: 'live/quiet', data: 'v', volatile: true });
    await r.waitMessages('live/quiet', 1);
  });

  async function slowConsumerScenario(t: import('node:test').TestContext, policy: 'drop-volatile' | 'disconnect') {
    const rt = await startRealtime(t, NAMESPACES, { limits: { sendHighWaterMark: 64 * 1024, slowConsumer: policy } });
    const p = await rt.connect('p');
    const fast = await rt.connect('fast');
    const slow = await rt.connect('slow');
    await fast.ok('sub', { channel: 'live/cursor' });
    await slow.ok('sub', { channel: 'live/cursor' });
    const session = rt.server.hub.sessions.get(slow.clientId)!;
    assert.ok(session, 'the slow client has a session');
    slow.ws.pause(); // stop reading: the server's send buffer grows
    const n = 400;
    const blob = 'x'.repeat(32 * 1024);
    let maxBuffered = 0;
    for (let i = 1; i <= n; i++) {
      p.send({ op: 'pub', id: 10_000 + i, channel: 'live/cursor', data: { i, blob }, volatile: true });
      if (i % 20 === 0) {
        await p.waitFor((m) => m.op === 'ok' && m.id === 10_000 + i, WAIT, `ack ${i}`);
        maxBuffered = Math.max(maxBuffered, session.transport.bufferedAmount);
      }
    }
    await fast.waitMessages('live/cursor', n, 10_000);
    return { rt, p, fast, slow, session, n, maxBuffered };
  }

  test("slowConsumer 'drop-volatile': a slow subscriber loses volatile messages, not the connection", async (t) => {
    const { rt, p, fast, slow, session, n, maxBuffered } = await slowConsumerScenario(t, 'drop-volatile');
    assert.ok(maxBuffered > 64 * 1024, `the server buffered above the high-water mark (max ${maxBuffered})`);
    slow.ws.resume();
    await until(() => session.transport.bufferedAmount === 0, 5000, 'the slow connection to drain');
    const got = slow.messages('live/cursor').length;
    await sleep(50);
    const volatileGot = slow.messages('live/cursor').length;
    assert.ok(volatileGot < n, `some volatile messages were dropped (${volatileGot} of ${n}, ${got} at drain)`);
    assert.ok(volatileGot > 0);
    const order = slow.messages('live/cursor').map((m) => m.data.i);
    assert.deepEqual(order, [...order].sort((a, b) => a - b), 'what arrives is in order');
    assert.equal(slow.closeCode, null, 'still connected');
    assert.equal(fast.messages('live/cursor').length, n, 'the fast subscriber got all');
    // Non-volatile ones reach it again.
    await p.ok('pub', { channel: 'live/cursor', data: 'after' });
    await slow.waitFor((m) => m.op === 'msg' && m.data === 'after', WAIT, 'the message after the burst');
    assert.ok(rt.server.hub.sessions.has(slow.clientId));
  });

  test("slowConsumer 'disconnect': the slow subscriber is closed with 4003", async (t) => {
    const { fast, slow, n } = await slowConsumerScenario(t, 'disconnect');
    slow.ws.resume();
    const { code } = await slow.closed;
    assert.equal(code, 4003);
    assert.equal(fast.messages('live/cursor').length, n);
    assert.equal(fast.closeCode, null);
  });
});
