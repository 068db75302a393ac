/**
 * `Hub` and `Session` (src/realtime/hub.ts, session.ts) with a recording fake
 * `RealtimeTransport` and the `MemoryBroker`: fan-out encodes once per
 * encoding, the slow-consumer policy, rate limits on an injected clock, the
 * auth timeout, presence batching (cancel-out), recovery buffering, cleanup.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryBroker } from '../../../src/brokers/memory/memory-broker.js';
import type { HubLimits } from '../../../src/realtime/hub.js';
import { jsonCodec, msgpackCodec } from '../../../src/wire/codec.js';
import { closeCodeOf, countingCodec, FakeTransport, settle, setup, sleep, type Setup } from './fakes.js';

// ---- tests -------------------------------------------------------------------

describe('fan-out', () => {
  test('a publication is encoded once per encoding, whatever the number of subscribers; the same bytes go to each', async (t) => {
    const s = setup();
    t.after(() => s.close());
    const json = countingCodec(jsonCodec);
    const msgpack = countingCodec(msgpackCodec);
    const conns = [
      ...Array.from({ length: 5 }, () => s.connect('u', json)),
      ...Array.from({ length: 3 }, () => s.connect('u', msgpack)),
    ];
    for (const c of conns) assert.equal((await s.request(c.session, c.transport, { op: 'sub', channel: 'live/x' })).op, 'ok');
    await s.hub.publish('live/x', { hello: 'world' });
    await settle();
    assert.equal(json.encodes.get('msg'), 1, 'JSON encoded once for 5 subscribers');
    assert.equal(msgpack.encodes.get('msg'), 1, 'MessagePack encoded once for 3 subscribers');
    const payloads = conns.map((c) => c.transport.sharedSent.filter((m) => (m.message as { op: string }).op === 'msg'));
    for (const p of payloads) assert.equal(p.length, 1);
    const shared = payloads[0]![0]!;
    for (const p of payloads) assert.equal(p[0], shared, 'one SharedMessage for every subscriber');
    const jsonBytes = conns.slice(0, 5).map((c) => c.transport.sent.at(-1));
    const mpBytes = conns.slice(5).map((c) => c.transport.sent.at(-1));
    for (const b of jsonBytes) assert.equal(b, jsonBytes[0], 'the same JSON string');
    for (const b of mpBytes) assert.equal(b, mpBytes[0], 'the same MessagePack buffer object');
    assert.deepEqual(msgpackCodec.decode(mpBytes[0]!), JSON.parse(jsonBytes[0] as string));

    // A second publication: once more per encoding, not per subscriber.
    await s.hub.publish('live/x', 2);
    await settle();
    assert.equal(json.encodes.get('msg'), 2);
    assert.equal(msgpack.encodes.get('msg'), 2);
  });

  test('a session matching a publication by channel and by two patterns gets it once', async (t) => {
    const s = setup();
    t.after(() => s.close());
    const c = s.connect('u');
    for (const channel of ['live/a/b', 'live/a/+', 'live/#']) {
      assert.equal((await s.request(c.session, c.transport, { op: 'sub', channel })).op, 'ok');
    }
    const other = s.connect('u');
    await s.request(other.session, other.transport, { op: 'sub', channel: 'live/+/b' });
    for (let i = 0; i < 3; i++) await s.hub.publish('live/a/b', i);
    await s.hub.publish('live/a/c', 'c');
    await settle();
    assert.deepEqual(c.transport.pushes('msg').map((m) => m.data), [0, 1, 2, 'c']);
    assert.deepEqual(other.transport.pushes('msg').map((m) => m.data), [0, 1, 2]);
  });
});

describe('slow consumers', () => {
  async function slowSetup(policy: HubLimits['slowConsumer']) {
    const s = setup({ limits: { sendHighWaterMark: 100, slowConsumer: policy } });
    const c = s.connect('u');
    await s.request(c.session, c.transport, { op: 'sub', channel: 'live/s' });
    return { s, c };
  }

  test("'disconnect': above the high-water mark any publication closes with 4003", async (t) => {
    for (const volatile of [false, true]) {
      const { s, c } = await slowSetup('disconnect');
      t.after(() => s.close());
      await s.broker.publish('live/s', 'fine', { volatile });
      await settle();
      assert.equal(c.transport.pushes('msg').length, 1, 'below the mark: delivered');
      c.transport.bufferedAmount = 101;
      await s.broker.publish('live/s', 'too much', { volatile });
      await settle();
      assert.equal(c.transport.pushes('msg').length, 1);
      assert.equal(closeCodeOf(c.transport), 4003);
      assert.deepEqual(s.dropped, ['slow-consumer']);
      assert.equal(s.hub.sessions.size, 0, 'the session is gone after its transport closed');
      assert.equal(s.hub.subscriptionCount, 0);
    }
  });

  test("'drop-volatile': volatile publications are dropped while above the mark; a non-volatile one closes with 4003", async (t) => {
    const { s, c } = await slowSetup('drop-volatile');
    t.after(() => s.close());
    c.transport.bufferedAmount = 101;
    for (let i = 0; i < 5; i++) await s.broker.publish('live/s', `v${i}`, { volatile: true });
    await settle();
    assert.equal(c.transport.pushes('msg').length, 0);
    assert.equal(c.transport.closedWith, null, 'still connected');
    assert.deepEqual(s.dropped, Array(5).fill('slow-consumer-volatile'));
    c.transport.bufferedAmount = 100; // at the mark is not above it
    await s.broker.publish('live/s', 'v-ok', { volatile: true });
    await s.hub.publish('live/s', 'n-ok');
    await settle();
    assert.deepEqual(c.transport.pushes('msg').map((m) => m.data), ['v-ok', 'n-ok']);
    c.transport.bufferedAmount = 5000;
    await s.hub.publish('live/s', 'not volatile');
    await settle();
    assert.equal(closeCodeOf(c.transport), 4003);
    assert.equal(c.transport.pushes('msg').length, 2);
  });
});

describe('rate limits (injected clock)', () => {
  test('message bucket: burst, refill by elapsed time, 429 with the request id, and close 4004 after 20 in a row', async (t) => {
    let now = 1_000_000;
    const s = setup({ now: () => now, limits: { messageRate: { perSecond: 2, burst: 3 } } });
    t.after(() => s.close());
    const c = s.connect('u');
    const ping = () => c.session.receive('{"op":"ping"}');
    for (let i = 0; i < 3; i++) ping();
    assert.equal(c.transport.pushes('pong').length, 3, 'the burst passes');
    c.session.receive('{"op":"unsub","id":7,"channel":"live/x"}');
    const limited = c.transport.messages.at(-1)!;
    assert.deepEqual(limited, { op: 'error', id: 7, code: 429, message: 'rate limit exceeded' });
    ping();
    assert.equal(c.transport.messages.at(-1)!.code, 429);
    assert.equal(c.transport.messages.at(-1)!.id, undefined, 'no id to answer for a ping');

    now += 500; // one token
    ping();
    assert.equal(c.transport.messages.at(-1)!.op, 'pong');
    ping();
    assert.equal(c.transport.messages.at(-1)!.code, 429);

    now += 60_000; // refills to the burst, not beyond
    for (let i = 0; i < 3; i++) ping();
    assert.equal(c.transport.pushes('pong').length, 7);
    ping();
    assert.equal(c.transport.messages.at(-1)!.code, 429);

    // 20 rate-limited in a row (this one was the 1st): close 4004
    for (let i = 0; i < 18; i++) ping();
    assert.equal(c.transport.closedWith, null, '19 in a row are answered');
    ping();
    assert.equal(closeCodeOf(c.transport), 4004);
  });

  test('a passing message resets the in-a-row count', async (t) => {
    let now = 0;
    const s = setup({ now: () => now, limits: { messageRate: { perSecond: 1, burst: 1 } } });
    t.after(() => s.close());
    const c = s.connect('u');
    for (let round = 0; round < 3; round++) {
      c.session.receive('{"op":"ping"}'); // passes
      for (let i = 0; i < 19; i++) c.session.receive('{"op":"ping"}');
      now += 1000;
    }
    assert.equal(c.transport.closedWith, null);
    assert.equal(c.transport.pushes('pong').length, 3);
  });

  test('byte bucket: counts message sizes', async (t) => {
    let now = 0;
    const s = setup({ now: () => now, limits: { byteRate: { perSecond: 100, burst: 200 } } });
    t.after(() => s.close());
    const c = s.connect('u');
    const big = JSON.stringify({ op: 'ping' }) + ' '.repeat(137); // 150 bytes of JSON
    assert.equal(big.length, 150);
    c.session.receive(big);
    assert.equal(c.transport.messages.at(-1)!.op, 'pong');
    c.session.receive(big);
    assert.equal(c.transport.messages.at(-1)!.code, 429, '50 bytes left');
    now += 1000; // +100 → 150
    c.session.receive(big);
    assert.equal(c.transport.messages.at(-1)!.op, 'pong');
  });
});

describe('authentication', () => {
  test('no auth within authTimeoutMs → close 4001; requests before auth → 401', async (t) => {
    // The auth timer on a mocked clock: closed exactly at authTimeoutMs, however busy the machine.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const s = setup({ auth: { anonymous: false, authTimeoutMs: 40 } });
    t.after(() => s.close());
    const late = s.connect(null);
    const r = await s.request(late.session, late.transport, { op: 'sub', channel: 'live/x' });
    assert.equal(r.code, 401);
    t.mock.timers.tick(39);
    assert.equal(late.transport.closedWith, null);
    t.mock.timers.tick(1);
    assert.equal(closeCodeOf(late.transport), 4001);

    const inTime = s.connect(null);
    const ok = await s.request(inTime.session, inTime.transport, { op: 'auth', token: 'tok-bob' });
    assert.equal(ok.op, 'ok');
    assert.equal(ok.user, 'bob');
    assert.equal(ok.client, inTime.session.id);
    assert.equal(ok.expiresIn, null);
    t.mock.timers.tick(80);
    assert.equal(inTime.transport.closedWith, null, 'authenticated in time: not closed');
    assert.equal((await s.request(inTime.session, inTime.transport, { op: 'sub', channel: 'live/x' })).op, 'ok');

    const bad = s.connect(null);
    const err = await s.request(bad.session, bad.transport, { op: 'auth', token: 'nope' });
    assert.equal(err.code, 401);
    await settle();
    assert.equal(closeCodeOf(bad.transport), 4500);
  });

  test('a handshake-authenticated session has no auth timer', async (t) => {
    const s = setup({ auth: { anonymous: false, authTimeoutMs: 20 } });
    t.after(() => s.close());
    const c = s.connect('alice');
    await sleep(50);
    assert.equal(c.transport.closedWith, null);
  });
});

describe('presence batching', () => {
  async function watch(s: Setup) {
    const w = s.connect('watcher');
    await s.request(w.session, w.transport, { op: 'sub', channel: 'room/r', presence: true });
    await sleep(60); // its own join flushes
    assert.equal(w.transport.pushes('join').length, 1);
    return w;
  }

  test('a join and a leave of the same client within one window send nothing; others still batch', async (t) => {
    const s = setup();
    t.after(() => s.close());
    const w = await watch(s);
    const blip = s.connect('blip');
    await s.request(blip.session, blip.transport, { op: 'sub', channel: 'room/r' });
    await s.request(blip.session, blip.transport, { op: 'unsub', channel: 'room/r' });
    await sleep(60);
    assert.equal(w.transport.pushes('join').length, 1, 'no join for blip');
    assert.equal(w.transport.pushes('leave').length, 0, 'no leave for blip');

    // leave then re-join within one window cancel out too
    const stay = s.connect('stay');
    await s.request(stay.session, stay.transport, { op: 'sub', channel: 'room/r' });
    await sleep(60);
    assert.deepEqual(w.transport.pushes('join').at(-1)!.clients, [{ client: stay.session.id, user: 'stay' }]);
    await s.request(stay.session, stay.transport, { op: 'unsub', channel: 'room/r' });
    await s.request(stay.session, stay.transport, { op: 'sub', channel: 'room/r' });
    await sleep(60);
    assert.equal(w.transport.pushes('join').length, 2);
    assert.equal(w.transport.pushes('leave').length, 0);

    // two joins and one cancelled pair in one window: one join listing the two
    const a = s.connect('a');
    const b = s.connect('b');
    const c = s.connect('c');
    await s.request(a.session, a.transport, { op: 'sub', channel: 'room/r' });
    await s.request(c.session, c.transport, { op: 'sub', channel: 'room/r' });
    await s.request(b.session, b.transport, { op: 'sub', channel: 'room/r' });
    await s.request(c.session, c.transport, { op: 'unsub', channel: 'room/r' });
    await sleep(60);
    const joins = w.transport.pushes('join');
    assert.equal(joins.length, 3);
    assert.deepEqual(joins.at(-1)!.clients.map((x: { user: string }) => x.user), ['a', 'b']);
    assert.equal(w.transport.pushes('leave').length, 0);
  });

  test('the join push is one shared message for every presence subscriber', async (t) => {
    const s = setup();
    t.after(() => s.close());
    const w1 = await watch(s);
    const w2 = s.connect('w2');
    await s.request(w2.session, w2.transport, { op: 'sub', channel: 'room/r', presence: true });
    await sleep(60);
    const j1 = w1.transport.sharedSent.filter((m) => (m.message as { op: string }).op === 'join').at(-1);
    const j2 = w2.transport.sharedSent.filter((m) => (m.message as { op: string }).op === 'join').at(-1);
    assert.ok(j1 && j1 === j2);
  });
});

describe('subscribe with recovery', () => {
  /** A broker whose history read waits for `release()`, before reading or before answering. */
  class GatedBroker extends MemoryBroker {
    gate: Promise<void> | null = null;
    release: () => void = () => {};
    constructor(readonly when: 'before-read' | 'after-read') {
      super({ sweepIntervalMs: 0 });
    }
    arm(): void {
      this.gate = new Promise<void>((resolve) => (this.release = resolve));
    }
    override async history(...args: Parameters<MemoryBroker['history']>) {
      if (this.gate && this.when === 'before-read') await this.gate;
      const result = await super.history(...args);
      if (this.gate && this.when === 'after-read') await this.gate;
      return result;
    }
  }

  for (const when of ['before-read', 'after-read'] as const) {
    test(`publications while the history is read (${when}) are delivered once, after the reply, in order`, async (t) => {
      const broker = new GatedBroker(when);
      const s = setup({ broker });
      t.after(() => s.close());
      for (let i = 1; i <= 3; i++) await s.hub.publish('chat/r', i);
      const epoch = (await broker.history('chat/r')).position.epoch;
      broker.arm();
      const c = s.connect('u');
      c.session.receive(JSON.stringify({ op: 'sub', id: 1, channel: 'chat/r', since: { offset: 1, epoch } }));
      await settle();
      // 4, 5 published while the read waits: buffered live; in the history result only when read after them
      await s.hub.publish('chat/r', 4);
      await s.hub.publish('chat/r', 5);
      await settle();
      assert.equal(c.transport.messages.length, 0, 'nothing before the reply');
      broker.release();
      await settle();
      await s.hub.publish('chat/r', 6);
      await settle();
      const out = c.transport.messages;
      assert.equal(out[0]!.op, 'ok');
      assert.equal(out[0]!.recovered, true);
      assert.deepEqual(out[0]!.position.offset, when === 'before-read' ? 5 : 3);
      assert.deepEqual(out.slice(1).map((m) => m.offset), [2, 3, 4, 5, 6]);
    });
  }

  test('a subscribe without since skips what happened before the position it announced', async (t) => {
    const broker = new GatedBroker('before-read');
    const s = setup({ broker });
    t.after(() => s.close());
    await s.hub.publish('chat/p', 1);
    broker.arm();
    const c = s.connect('u');
    c.session.receive(JSON.stringify({ op: 'sub', id: 1, channel: 'chat/p' }));
    await settle();
    await s.hub.publish('chat/p', 2); // buffered, and before the position read
    broker.release();
    await settle();
    await s.hub.publish('chat/p', 3);
    await settle();
    const out = c.transport.messages;
    assert.equal(out[0]!.position.offset, 2);
    assert.deepEqual(out.slice(1).map((m) => m.offset), [3]);
  });
});

describe('cleanup', () => {
  test('a closed transport leaves no session, subscription, broker subscription or presence entry', async (t) => {
    const s = setup();
    t.after(() => s.close());
    const conns = Array.from({ length: 4 }, (_, i) => s.connect(`u${i}`));
    for (const c of conns) {
      await s.request(c.session, c.transport, { op: 'sub', channel: 'room/x', presence: true });
      await s.request(c.session, c.transport, { op: 'sub', channel: 'live/y' });
      await s.request(c.session, c.transport, { op: 'sub', channel: 'live/+' });
    }
    assert.equal(s.hub.subscriptionCount, 12);
    assert.equal(s.presence.channelCount, 1);
    conns[0]!.transport.terminate();
    conns[1]!.transport.close(1000, '');
    conns[2]!.session.close(4503, 'kicked');
    conns[3]!.session.terminate();
    await settle();
    assert.equal(s.hub.sessions.size, 0);
    assert.equal(s.hub.subscriptionCount, 0);
    assert.deepEqual(s.hub.channelStats(), []);
    assert.equal(s.presence.channelCount, 0);
    const stats = s.broker.stats();
    assert.equal(stats.subscriptions, 0);
    assert.equal(stats.patterns, 0);
    await sleep(50); // presence batch timers fire and find nobody
    assert.equal((s.hub as unknown as { presenceBatches: Map<string, unknown> }).presenceBatches.size, 0);
  });
});

describe('idle timeout', () => {
  test('keep-alive traffic (pings and pongs from the client) does not keep an idle connection open; requests do', async () => {
    const h = setup({ ping: { intervalMs: 20, timeoutMs: 10_000 }, idleTimeoutMs: 150 });
    try {
      const idle = h.connect('alice');
      const busy = h.connect('bob');
      const deadline = Date.now() + 3000;
      let n = 0;
      while (closeCodeOf(idle.transport) === undefined && Date.now() < deadline) {
        idle.session.receive(jsonCodec.encode({ op: 'ping' }));
        idle.session.receive(jsonCodec.encode({ op: 'pong' }));
        busy.session.receive(jsonCodec.encode({ op: 'history', id: `h${n++}`, channel: 'live/x' }));
        busy.session.receive(jsonCodec.encode({ op: 'pong' }));
        await sleep(10);
      }
      assert.equal(closeCodeOf(idle.transport), 4005, 'closed as idle');
      assert.equal(closeCodeOf(busy.transport), undefined, 'the connection that sends requests stays');
    } finally {
      await h.close();
    }
  });
});

describe('app-level keep-alive (injected clock, mocked interval timer)', () => {
  test('each connection is pinged once per interval, the connections spread over it, not all in one callback', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    let clock = 0;
    // 1,600 ms: the keep-alive's timer runs every 100 ms (a sixteenth).
    const h = setup({ ping: { intervalMs: 1600, timeoutMs: 10_000 }, now: () => clock });
    t.after(() => h.close());
    const conns = Array.from({ length: 64 }, (_, i) => h.connect(`u${i}`));
    const pingTimes = conns.map(() => [] as number[]);
    const perStep: number[] = [];
    for (let step = 1; step <= 48; step++) {
      clock += 100;
      t.mock.timers.tick(100);
      let sent = 0;
      conns.forEach(({ session, transport }, i) => {
        const pings = transport.pushes('ping').length;
        if (pings > pingTimes[i]!.length) {
          sent++;
          pingTimes[i]!.push(clock);
          // Answered: the next pass pings it again.
          session.receive(jsonCodec.encode({ op: 'pong' }));
        }
      });
      perStep.push(sent);
    }
    assert.ok(Math.max(...perStep) <= 5, `at most a sixteenth of the connections (+1) per step: ${perStep.join(' ')}`);
    const first = pingTimes.map((times) => times[0]!);
    assert.ok(first.every((at) => at >= 1600), 'no ping before one interval has passed');
    assert.ok(Math.max(...first) - Math.min(...first) >= 1400, `the first pass spread over the interval: ${Math.min(...first)}..${Math.max(...first)} ms`);
    for (const times of pingTimes) {
      assert.ok(times.length >= 2, `pinged in every pass: ${times.join(', ')}`);
      for (let i = 1; i < times.length; i++) {
        const gap = times[i]! - times[i - 1]!;
        assert.ok(gap >= 1500 && gap <= 1700, `one interval between a connection's pings: ${times.join(', ')}`);
      }
    }
    await settle();
  });

  test('a connection that does not answer within the timeout is terminated at its next visit; the others stay', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    let clock = 0;
    const h = setup({ ping: { intervalMs: 1600, timeoutMs: 1000 }, now: () => clock });
    t.after(() => h.close());
    const silent = h.connect('silent');
    const others = Array.from({ length: 15 }, (_, i) => h.connect(`u${i}`));
    for (let step = 1; step <= 40; step++) {
      clock += 100;
      t.mock.timers.tick(100);
      for (const { session, transport } of others) if (transport.pushes('ping').length > 0) session.receive(jsonCodec.encode({ op: 'pong' }));
    }
    assert.equal(silent.transport.pushes('ping').length, 1, 'no second ping while the first is unanswered');
    assert.equal(silent.transport.terminated, true);
    assert.ok(others.every(({ transport }) => !transport.terminated && transport.closedWith === null));
    await settle();
  });
});
