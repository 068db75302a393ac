/**
 * Channel semantics through the real server (docs/protocol.md, "Channels",
 * "Requests and replies", "Pushes from the server"): sub/unsub/pub, offsets,
 * `from`, broadcast bytes, request errors, patterns, rpc.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { WebSocket as SbWebSocket, type SendCallback } from '../../../src/index.js';
import { offsets, range, sleep, startRealtime, WAIT, type Namespace } from './helpers.js';

const NAMESPACES: Namespace[] = [
  { prefix: 'chat', history: { size: 100, ttlMs: 0 } },
  { prefix: 'live' }, // no history
  { prefix: 'ro', clientPublish: false },
];

describe('channels: subscribe, publish, unsubscribe', () => {
  test('sub → pub → msg → unsub round trip; pub acked with offset and epoch', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const alice = await rt.connect('alice');
    const bob = await rt.connect('bob');

    const sub = await bob.ok('sub', { channel: 'chat/room' });
    assert.equal(sub.channel, 'chat/room');
    assert.deepEqual(Object.keys(sub.position).sort(), ['epoch', 'offset']);
    assert.equal(sub.position.offset, 0);
    assert.equal(typeof sub.position.epoch, 'string');
    assert.ok(sub.position.epoch.length > 0);
    assert.equal('recovered' in sub, false, 'recovered only with since');

    const ack = await alice.ok('pub', { channel: 'chat/room', data: { text: 'hi' } });
    assert.equal(ack.offset, 1);
    assert.equal(ack.epoch, sub.position.epoch, 'the first publication is in the epoch announced at subscribe');
    assert.equal('duplicate' in ack, false);

    const [msg] = await bob.waitMessages('chat/room', 1);
    assert.equal(msg!.channel, 'chat/room');
    assert.equal(msg!.offset, 1);
    assert.equal(msg!.epoch, ack.epoch);
    assert.deepEqual(msg!.data, { text: 'hi' });
    assert.equal(typeof msg!.time, 'number');
    assert.ok(Math.abs(msg!.time - Date.now()) < 5000);
    assert.deepEqual(msg!.from, { client: alice.clientId, user: 'alice' });
    assert.equal('volatile' in msg!, false);

    const unsub = await bob.ok('unsub', { channel: 'chat/room' });
    assert.equal(unsub.channel, 'chat/room');
    await alice.ok('pub', { channel: 'chat/room', data: 2 });
    await bob.ok('history', { channel: 'chat/room', limit: 0 }); // a round trip after the publication
    await sleep(30);
    assert.equal(bob.messages('chat/room').length, 1, 'nothing after unsub');
    assert.equal(rt.server.hub.subscriptionCount, 0);
  });

  test('offsets increase by exactly one per channel, independently per channel', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const pub = await rt.connect('alice');
    const sub = await rt.connect('bob');
    await sub.ok('sub', { channel: 'chat/a' });
    await sub.ok('sub', { channel: 'live/b' }); // no history: offsets still count while subscribed
    const acksA: number[] = [];
    const acksB: number[] = [];
    const epochs = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const a = await pub.ok('pub', { channel: 'chat/a', data: i });
      acksA.push(a.offset);
      epochs.add(a.epoch);
      if (i % 2 === 0) acksB.push((await pub.ok('pub', { channel: 'live/b', data: i })).offset);
    }
    assert.deepEqual(acksA, range(1, 20));
    assert.deepEqual(acksB, range(1, 10));
    assert.equal(epochs.size, 1);
    await sub.waitMessages('chat/a', 20);
    await sub.waitMessages('live/b', 10);
    assert.deepEqual(offsets(sub.messages('chat/a')), range(1, 20));
    assert.deepEqual(offsets(sub.messages('live/b')), range(1, 10));
    assert.deepEqual(
      sub.messages('chat/a').map((m) => m.data),
      range(0, 19),
    );
  });

  test('concurrent publishers on one channel: acks are distinct and contiguous, delivery follows offset order', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const sub = await rt.connect('sub');
    await sub.ok('sub', { channel: 'chat/busy' });
    const pubs = await Promise.all(['p1', 'p2', 'p3'].map((u) => rt.connect(u)));
    const acks = await Promise.all(pubs.flatMap((p, i) => range(1, 30).map((n) => p.ok('pub', { channel: 'chat/busy', data: `${i}-${n}` }))));
    const got = acks.map((a) => a.offset as number).sort((a, b) => a - b);
    assert.deepEqual(got, range(1, 90));
    const msgs = await sub.waitMessages('chat/busy', 90);
    assert.deepEqual(offsets(msgs), range(1, 90));
    // Per publisher, its own messages arrive in the order it sent them.
    for (let i = 0; i < 3; i++) {
      const mine = msgs.filter((m) => m.from.user === `p${i + 1}`).map((m) => m.data);
      assert.deepEqual(mine, range(1, 30).map((n) => `${i}-${n}`));
    }
  });

  test('two subscribers receive the same bytes, framed once by the server', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const a = await rt.connect('a');
    const b = await rt.connect('b');
    const publisher = await rt.connect('p', { token: { info: { name: 'Pat', tags: ['x'] } } });
    await a.ok('sub', { channel: 'live/x' });
    await b.ok('sub', { channel: 'live/x' });

    // Spy on the server side's prepared-frame writes (the broadcast path).
    const frames: Buffer[] = [];
    const original = SbWebSocket.prototype.sendFrame;
    SbWebSocket.prototype.sendFrame = function (this: SbWebSocket, frame: Buffer, cb?: SendCallback) {
      frames.push(frame);
      return original.call(this, frame, cb);
    };
    try {
      await publisher.ok('pub', { channel: 'live/x', data: { big: 'é'.repeat(50), n: [1, 2, 3] } });
      await a.waitMessages('live/x', 1);
      await b.waitMessages('live/x', 1);
    } finally {
      SbWebSocket.prototype.sendFrame = original;
    }
    const ia = a.received.findIndex((m) => m.op === 'msg');
    const ib = b.received.findIndex((m) => m.op === 'msg');
    assert.ok(a.raw[ia]!.equals(b.raw[ib]!), 'identical payload bytes');
    assert.equal(a.frameBinary[ia], false, 'JSON travels in text frames');
    assert.deepEqual(a.received[ia]!.from, { client: publisher.clientId, user: 'p', info: { name: 'Pat', tags: ['x'] } });
    assert.equal(frames.length, 2, 'one prepared frame write per subscriber');
    assert.equal(frames[0], frames[1], 'the very same framed Buffer went to both sockets');
  });

  // If the server negotiates compression, large messages are compressed per connection and small ones
  // share a frame (WebSocketCarrier.sendShared); either way every message arrives, in offset order.
  test('clients offering permessage-deflate get large and small publications intact and in order', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const zipped = await rt.connect('z', { perMessageDeflate: true });
    const zipped2 = await rt.connect('z2', { perMessageDeflate: true });
    const plain = await rt.connect('plain');
    for (const c of [zipped, zipped2, plain]) await c.ok('sub', { channel: 'chat/z' });
    const big = 'abc'.repeat(2000);
    const acks = [];
    for (let i = 1; i <= 20; i++) acks.push(p.ok('pub', { channel: 'chat/z', data: i % 2 ? { i, big } : { i } }));
    await Promise.all(acks);
    for (const c of [zipped, zipped2, plain]) {
      const msgs = await c.waitMessages('chat/z', 20);
      assert.deepEqual(offsets(msgs), range(1, 20), 'offset order across compressed and shared frames');
      assert.deepEqual(msgs.map((m) => m.data.i), range(1, 20));
      assert.equal(msgs[0]!.data.big, big);
    }
  });

  test('request errors: 409 already subscribed, 404 unsub unknown, 403 no client publish', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const c = await rt.connect('alice');
    await c.ok('sub', { channel: 'chat/a' });
    const dup = await c.fails('sub', { channel: 'chat/a' }, 409);
    assert.match(dup.message, /already subscribed/);
    await c.fails('sub', { channel: 'chat/a', since: { offset: 0, epoch: 'x' } }, 409);
    await c.fails('unsub', { channel: 'chat/zzz' }, 404);
    await c.ok('unsub', { channel: 'chat/a' });
    await c.fails('unsub', { channel: 'chat/a' }, 404);
    await c.ok('sub', { channel: 'chat/a' }); // subscribe again after unsub
    await c.ok('sub', { channel: 'chat/+' });
    await c.fails('sub', { channel: 'chat/+' }, 409);
    await c.ok('unsub', { channel: 'chat/+' });
    await c.fails('unsub', { channel: 'chat/+' }, 404);
    await c.fails('pub', { channel: 'ro/x', data: 1 }, 403);
    // The connection is fine after all of that.
    assert.equal(c.closeCode, null);
    assert.equal(rt.server.hub.subscriptionCount, 1);
  });

  test('two concurrent subs to the same channel: exactly one succeeds', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const c = await rt.connect('alice');
    const replies = await Promise.all([c.request('sub', { channel: 'chat/a' }), c.request('sub', { channel: 'chat/a' })]);
    assert.deepEqual(replies.map((r) => (r.op === 'ok' ? 'ok' : r.code)).sort(), [409, 'ok']);
    assert.equal(rt.server.hub.subscriptionCount, 1);
  });

  test('invalid channel names and patterns → 400 for every op', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const c = await rt.connect('alice');
    const invalid = [
      '/chat',
      'chat/',
      'chat//a',
      'chat/a\u0000b',
      'chat/a\nb',
      'chat/\u007f',
      'chat/\u0085',
      'chat/\ud800', // lone surrogate
      'chat/' + 'x'.repeat(251), // 256 bytes
      'chat/' + 'é'.repeat(126), // 257 bytes of UTF-8, 131 characters
      'chat/a+',
      'chat/+a',
      'chat/#/a',
      'chat/a#',
      '#/x',
    ];
    for (const channel of invalid) {
      const r = await c.fails('sub', { channel }, 400);
      assert.match(r.message, /invalid channel|channel/, channel);
      await c.fails('pub', { channel, data: 1 }, 400);
      await c.fails('history', { channel }, 400);
      await c.fails('presence', { channel }, 400);
    }
    await c.fails('sub', { channel: '' }, 400);
    await c.fails('sub', { channel: 42 }, 400);
    await c.fails('pub', { channel: 'chat/a' }, 400); // no data
    // The longest valid name works.
    await c.ok('sub', { channel: 'chat/' + 'x'.repeat(250) });
    await c.ok('sub', { channel: 'chat/' + 'é'.repeat(125) });
    assert.equal(rt.server.hub.subscriptionCount, 2);
    assert.equal(c.closeCode, null);
  });
});

describe('channels: patterns', () => {
  test('+ and # receive matching channels with the concrete channel name', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const plus = await rt.connect('plus');
    const hash = await rt.connect('hash');
    const mid = await rt.connect('mid');
    const ackPlus = await plus.ok('sub', { channel: 'chat/+' });
    assert.equal(ackPlus.channel, 'chat/+');
    await hash.ok('sub', { channel: 'chat/#' });
    await mid.ok('sub', { channel: 'chat/+/state' });

    const sends: Array<[string, number]> = [
      ['chat/a', 1],
      ['chat/b', 2],
      ['chat/a/state', 3],
      ['chat/a/other', 4],
      ['chat', 5],
      ['live/a', 6],
      ['chatroom/a', 7],
    ];
    for (const [channel, data] of sends) await p.ok('pub', { channel, data });
    // A marker everyone gets, to know delivery is complete.
    await p.ok('pub', { channel: 'chat/zz/state', data: 'end' });
    await hash.waitFor((m) => m.op === 'msg' && m.data === 'end', WAIT, 'end');
    await mid.waitFor((m) => m.op === 'msg' && m.data === 'end', WAIT, 'end');
    await p.ok('pub', { channel: 'chat/end', data: 'end' });
    await plus.waitFor((m) => m.op === 'msg' && m.data === 'end', WAIT, 'end');

    const seen = (c: typeof p) => c.messages().filter((m) => m.data !== 'end').map((m) => [m.channel, m.data]);
    assert.deepEqual(seen(plus), [['chat/a', 1], ['chat/b', 2]]);
    assert.deepEqual(seen(hash), [['chat/a', 1], ['chat/b', 2], ['chat/a/state', 3], ['chat/a/other', 4], ['chat', 5]]);
    assert.deepEqual(seen(mid), [['chat/a/state', 3]]);
    for (const m of hash.messages()) {
      assert.equal(typeof m.offset, 'number');
      assert.equal(typeof m.epoch, 'string');
      assert.equal(m.from.user, 'p');
    }
  });

  test('subscribed to a/b and a/+ (and #): each publication arrives once, in either subscription order', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p');
    const c1 = await rt.connect('c1');
    await c1.ok('sub', { channel: 'chat/b' });
    await c1.ok('sub', { channel: 'chat/+' });
    const c2 = await rt.connect('c2');
    await c2.ok('sub', { channel: 'chat/+' });
    await c2.ok('sub', { channel: 'chat/#' });
    await c2.ok('sub', { channel: 'chat/b' });
    for (let i = 1; i <= 10; i++) await p.ok('pub', { channel: 'chat/b', data: i });
    await p.ok('pub', { channel: 'chat/c', data: 'c' });
    await c1.waitFor((m) => m.op === 'msg' && m.data === 'c', WAIT, 'the chat/c message');
    await c2.waitFor((m) => m.op === 'msg' && m.data === 'c', WAIT, 'the chat/c message');
    await sleep(20);
    for (const c of [c1, c2]) {
      assert.deepEqual(offsets(c.messages('chat/b')), range(1, 10));
      assert.equal(c.messages('chat/c').length, 1);
    }
    // Unsubscribing the exact channel leaves the pattern delivering.
    await c1.ok('unsub', { channel: 'chat/b' });
    await p.ok('pub', { channel: 'chat/b', data: 11 });
    await c1.waitMessages('chat/b', 11);
    await sleep(20);
    assert.equal(c1.messages('chat/b').length, 11);
  });

  test('since on a pattern → 400; publish, history and presence on a pattern → 400', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const c = await rt.connect('alice');
    const r = await c.fails('sub', { channel: 'chat/+', since: { offset: 0, epoch: 'e' } }, 400);
    assert.match(r.message, /since/);
    assert.equal(rt.server.hub.subscriptionCount, 0, 'a refused pattern subscription leaves nothing behind');
    await c.fails('pub', { channel: 'chat/+', data: 1 }, 400);
    await c.fails('pub', { channel: 'chat/#', data: 1 }, 400);
    await c.fails('history', { channel: 'chat/+' }, 400);
    await c.fails('presence', { channel: 'chat/#' }, 400);
    // and the pattern itself is fine without since
    await c.ok('sub', { channel: 'chat/+' });
    assert.equal(rt.broker.stats().patterns, 1);
    await c.ok('unsub', { channel: 'chat/+' });
    assert.equal(rt.broker.stats().patterns, 0);
  });
});

describe('rpc', () => {
  test('round trip with a sync and a promise-returning handler; unknown method → 404; a throwing handler → error reply', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    rt.server.rpc('add', (data) => {
      const { a, b } = data as { a: number; b: number };
      return a + b;
    });
    rt.server.rpc('slow-echo', async (data, ctx) => {
      await sleep(20);
      return { data, user: ctx.user, client: ctx.client };
    });
    rt.server.rpc('nothing', () => undefined);
    rt.server.rpc('boom', async () => {
      throw new Error('secret internal detail');
    });
    const c = await rt.connect('alice');
    assert.deepEqual((await c.ok('rpc', { method: 'add', data: { a: 2, b: 40 } })).data, 42);
    const echo = await c.ok('rpc', { method: 'slow-echo', data: [1, 'two'] });
    assert.deepEqual(echo.data, { data: [1, 'two'], user: 'alice', client: c.clientId });
    assert.equal((await c.ok('rpc', { method: 'nothing' })).data, null);
    await c.fails('rpc', { method: 'nope' }, 404);
    const boom = await c.request('rpc', { method: 'boom' });
    assert.equal(boom.op, 'error');
    assert.ok(boom.code >= 500, JSON.stringify(boom));
    assert.doesNotMatch(boom.message, /secret/);
    // Concurrent calls are matched by id.
    const many = await Promise.all(range(1, 10).map((n) => c.ok('rpc', { method: 'slow-echo', data: n })));
    assert.deepEqual(many.map((r) => r.data.data), range(1, 10));
    assert.equal(c.closeCode, null);
  });
});
