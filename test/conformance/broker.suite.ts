/**
 * The conformance suite of the Broker and PresenceStore contracts
 * (src/brokers/broker.ts). Every implementation runs it (hono's
 * `common.case.test.ts` pattern):
 *
 * ```ts
 * runBrokerSuite({
 *   name: 'redis',
 *   create: async () => ({ broker, presence, cleanup, peer }),
 *   skip: [{ reason: 'why', tests: ['exact test name'] }],
 * });
 * ```
 *
 * Each test creates its own node with `create()`, uses channels under a
 * fresh random prefix (so implementations may share one backend across
 * tests), and closes the broker and the presence store afterwards.
 *
 * Time: TTL tests call `advanceTime(ms)` when the implementation provides it
 * (an injected clock), otherwise they sleep a little longer than `ms`. The
 * suite only ever asserts that something has expired after at least its TTL
 * went by; "still there" is asserted with TTLs of a minute, or with an
 * injected clock.
 *
 * Negative delivery checks ("not delivered") publish a marker afterwards on a
 * subscribed channel and wait for it: they assume a node receives what one
 * node published in publish order across channels, which holds for memory,
 * Redis pub/sub on one connection and NATS on one connection. Redis Cluster
 * orders per channel only (each shard is a connection of its own), so tests
 * whose expected deliveries span channels wait for each of them and compare
 * per channel; what is not delivered there is never sent at all.
 *
 * Choices the contract leaves open, fixed here so every implementation
 * agrees: without `since`, `recovered` is false; a `since` ahead of the
 * channel's position is not recovered; a node receives a publication once
 * however many of its subscriptions match; presence `users` counts distinct
 * non-empty user ids.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import {
  isNodeBus,
  NODE_ID,
  type Broker,
  type BrokerHandler,
  type ClientInfo,
  type HistoryOptions,
  type NodeBus,
  type PresenceStore,
  type Publication,
  type StreamPosition,
} from '../../src/brokers/broker.js';

/** One node: a broker and a presence store, connected to the implementation's backend. */
export interface BrokerNode {
  broker: Broker;
  presence: PresenceStore;
  /** Called after `broker.close()` and `presence.close()`. */
  cleanup?(): Promise<void> | void;
}

export interface BrokerUnderTest extends BrokerNode {
  /** Move the clock the implementation uses for TTLs forward by `ms`. Without it, the suite sleeps. */
  advanceTime?(ms: number): Promise<void> | void;
  /**
   * Read the clock the implementation stamps publications (`time`) with, when
   * this process can (an injected clock, or this process's `Date.now`). Without
   * it (a backend's own clock), only the type of `time` is checked.
   */
  clock?(): number;
  /** Another node on the same backend (shared history, fan-out and presence). Without it, skip the cross-node tests. */
  peer?(): Promise<BrokerNode>;
}

export interface BrokerSuiteSkip {
  reason: string;
  /** Exact test names (see BROKER_SUITE_TESTS). */
  tests: string[];
}

export interface BrokerSuiteOptions {
  name: string;
  create: () => Promise<BrokerUnderTest>;
  skip?: BrokerSuiteSkip[];
}

/** Every test name, for `skip`. */
export const BROKER_SUITE_TESTS = [
  // publish and delivery
  'offsets start at 1 and increase by one, in one epoch',
  'delivers a publication with its channel, offset, epoch, data, publisher and time',
  'delivers in publish order per channel, also for concurrent publishes',
  'publishes started without awaiting get offsets in call order per channel',
  'does not deliver channels the node did not subscribe to',
  'subscribe and unsubscribe are idempotent',
  'unsubscribe stops delivery',
  'a + pattern matches exactly one segment',
  'a # pattern matches zero or more trailing segments',
  'a publication matched by several subscriptions is delivered once',
  'unsubscribing a pattern stops its delivery',
  'rejects invalid channels and patterns',
  'publishPresence reaches subscribed nodes only',
  'publishPresence reaches pattern subscriptions',
  // across nodes
  'a second node on the same backend sees publications and history',
  'a second node on the same backend sees presence',
  // node messages (NodeBus: the fallback sessions' relay)
  'node messages: each node has its own id; a message to a peer arrives, in send order, both ways',
  'node messages: to a node nobody listens on, or one that closed, sendToNode resolves false',
  'node messages: a malformed node id or a message over maxNodeMessageBytes is refused before the broker',
  'node messages: nodes() lists the listening nodes, this one included, and no closed one',
  // history
  'history keeps the last size publications',
  'history drops publications older than ttlMs',
  'history keeps nothing without history options',
  'history since returns the publications after a position',
  'history limit returns the newest without since, the oldest after since',
  'recovered is true in the same epoch with no gap',
  'recovered is false when publications after since were evicted',
  'recovered is false for another epoch or a position ahead',
  'a quiet channel has offset 0 and a stable epoch, and resumes from it',
  'removeHistory starts a new epoch with offsets from 1',
  'property: offsets only increase and since returns exactly what followed',
  // idempotency
  'a repeated idempotency key publishes nothing and returns the first result',
  'different idempotency keys publish, and keys are per channel',
  'an idempotency key expires after idempotencyTtlMs',
  // presence
  'presence add, get and remove',
  'presence add with a known client id replaces the entry',
  'presence stats count clients and distinct users',
  'presence channels are independent',
  // lifecycle
  'close() releases everything',
] as const;

export type BrokerSuiteTest = (typeof BROKER_SUITE_TESTS)[number];

const WAIT_MS = 2000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `done` until it holds, or fail after `timeoutMs`. */
async function waitUntil(done: () => boolean | Promise<boolean>, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

type Event =
  | { type: 'pub'; pub: Publication }
  | { type: 'join' | 'leave'; channel: string; info: ClientInfo };

/** A handler that records everything, in order. */
class Recorder implements BrokerHandler {
  readonly events: Event[] = [];

  onPublication(pub: Publication): void {
    this.events.push({ type: 'pub', pub });
  }
  onJoin(channel: string, info: ClientInfo): void {
    this.events.push({ type: 'join', channel, info });
  }
  onLeave(channel: string, info: ClientInfo): void {
    this.events.push({ type: 'leave', channel, info });
  }

  pubs(channel?: string): Publication[] {
    const out: Publication[] = [];
    for (const e of this.events) if (e.type === 'pub' && (channel === undefined || e.pub.channel === channel)) out.push(e.pub);
    return out;
  }
  data(channel?: string): unknown[] {
    return this.pubs(channel).map((p) => p.data);
  }
  presence(): Array<[string, string, string]> {
    const out: Array<[string, string, string]> = [];
    for (const e of this.events) if (e.type !== 'pub') out.push([e.type, e.channel, e.info.client]);
    return out;
  }

  /** Wait for a publication with this data on this channel. */
  waitFor(channel: string, data: unknown): Promise<void> {
    return waitUntil(() => this.pubs(channel).some((p) => isDeepStrictEqual(p.data, data)), `${JSON.stringify(data)} on ${channel}`);
  }
  waitForCount(channel: string, count: number): Promise<void> {
    return waitUntil(() => this.pubs(channel).length >= count, `${count} publications on ${channel}`);
  }
}

function prefix(): string {
  return `t${Math.random().toString(36).slice(2, 10)}`;
}

const H10: HistoryOptions = { size: 10, ttlMs: 0 };

interface Ctx {
  node: BrokerUnderTest;
  broker: Broker;
  presence: PresenceStore;
  rec: Recorder;
  /** A fresh channel name under this test's prefix. */
  ch(name: string): string;
  /** Let `ms` pass for TTLs: the injected clock, or a sleep a little longer than `ms`. */
  elapse(ms: number): Promise<void>;
  /** Whether time is injected (exact TTL boundaries can be asserted). */
  exactClock: boolean;
  /** Set when the test closed the node itself. */
  closed: boolean;
  /** `process.getActiveResourcesInfo().length` before `create()`. */
  resourcesBefore: number;
}

async function closeNode(node: BrokerNode): Promise<void> {
  await node.broker.close();
  await node.presence.close();
  await node.cleanup?.();
}

/** Define the suite: one `describe` with every test of BROKER_SUITE_TESTS. */
export function runBrokerSuite(options: BrokerSuiteOptions): void {
  const skips = options.skip ?? [];
  const defined = new Set<string>();

  function test(name: BrokerSuiteTest, fn: (ctx: Ctx) => Promise<void>): void {
    defined.add(name);
    const reason = skips.find((s) => s.tests.includes(name))?.reason;
    it(name, reason === undefined ? {} : { skip: reason }, async () => {
      const resourcesBefore = process.getActiveResourcesInfo().length;
      const node = await options.create();
      const rec = new Recorder();
      node.broker.setHandler(rec);
      const p = prefix();
      const ctx: Ctx = {
        node,
        broker: node.broker,
        presence: node.presence,
        rec,
        ch: (name) => `${p}/${name}`,
        exactClock: node.advanceTime !== undefined,
        elapse: async (ms) => {
          if (node.advanceTime !== undefined) await node.advanceTime(ms);
          else await sleep(ms + 20);
        },
        closed: false,
        resourcesBefore,
      };
      try {
        await fn(ctx);
      } finally {
        if (!ctx.closed) await closeNode(node);
      }
    });
  }

  describe(`broker conformance: ${options.name}`, () => {
    // ---- publish and delivery -------------------------------------------

    test('offsets start at 1 and increase by one, in one epoch', async ({ broker, ch }) => {
      const c = ch('offsets');
      const results = [];
      for (let i = 0; i < 5; i++) results.push(await broker.publish(c, i, { history: H10 }));
      assert.deepEqual(
        results.map((r) => r.offset),
        [1, 2, 3, 4, 5],
      );
      assert.ok(results.every((r) => r.duplicate === false));
      const epoch = results[0]!.epoch;
      assert.equal(typeof epoch, 'string');
      assert.ok(epoch.length > 0);
      assert.ok(results.every((r) => r.epoch === epoch));
      const h = await broker.history(c);
      assert.deepEqual(h.position, { offset: 5, epoch });
      // Another channel has offsets of its own.
      assert.equal((await broker.publish(ch('other'), 'x', { history: H10 })).offset, 1);
    });

    test('delivers a publication with its channel, offset, epoch, data, publisher and time', async ({ node, broker, rec, ch }) => {
      const c = ch('fields');
      await broker.subscribe(c);
      const from: ClientInfo = { client: 'c1', user: 'u1', info: { name: 'Ada' } };
      const before = node.clock?.();
      const r = await broker.publish(c, { text: 'hi', n: [1, 2] }, { history: H10, from });
      const after = node.clock?.();
      await rec.waitForCount(c, 1);
      const pub = rec.pubs(c)[0]!;
      assert.equal(pub.channel, c);
      assert.equal(pub.offset, r.offset);
      assert.equal(pub.epoch, r.epoch);
      assert.deepEqual(pub.data, { text: 'hi', n: [1, 2] });
      assert.deepEqual(pub.from, from);
      assert.equal(typeof pub.time, 'number');
      assert.ok(Number.isFinite(pub.time));
      // The publish time on the implementation's clock: exactly its value with an injected clock (before === after).
      if (before !== undefined && after !== undefined) {
        if (before === after) assert.equal(pub.time, before);
        else assert.ok(before <= pub.time && pub.time <= after, `time ${pub.time} not within [${before}, ${after}]`);
      }
      // History holds the same publication.
      const h = await broker.history(c);
      assert.deepEqual(h.publications, [pub]);
    });

    test('delivers in publish order per channel, also for concurrent publishes', async ({ broker, rec, ch }) => {
      const a = ch('order/a');
      const b = ch('order/b');
      await broker.subscribe(a);
      await broker.subscribe(b);
      for (let i = 0; i < 10; i++) await broker.publish(a, i);
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => broker.publish(i % 2 === 0 ? a : b, 100 + i)));
      await rec.waitForCount(a, 25);
      await rec.waitForCount(b, 15);
      assert.deepEqual(rec.data(a).slice(0, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      for (const c of [a, b]) {
        const pubs = rec.pubs(c);
        for (let i = 1; i < pubs.length; i++) {
          assert.equal(pubs[i]!.epoch, pubs[0]!.epoch);
          assert.ok(pubs[i]!.offset > pubs[i - 1]!.offset, `offsets increase on ${c}`);
        }
      }
      // Delivery order is offset order, and each delivered offset is the one publish resolved with.
      for (let i = 0; i < 30; i++) {
        const c = i % 2 === 0 ? a : b;
        const pub = rec.pubs(c).find((p) => p.data === 100 + i)!;
        assert.equal(pub.offset, results[i]!.offset);
      }
    });

    // The realtime layer relies on it: a connection's consecutive `pub`s to one channel go to the broker
    // without waiting for each other (Session#enqueue), and must keep the order the client sent them in.
    test('publishes started without awaiting get offsets in call order per channel', async ({ broker, rec, ch }) => {
      const c = ch('callorder');
      await broker.subscribe(c);
      const n = 40;
      const results = await Promise.all(Array.from({ length: n }, (_, i) => broker.publish(c, i, i % 3 === 0 ? { history: H10 } : {})));
      assert.deepEqual(
        results.map((r) => r.offset),
        Array.from({ length: n }, (_, i) => i + 1),
      );
      await rec.waitForCount(c, n);
      assert.deepEqual(rec.data(c), Array.from({ length: n }, (_, i) => i));
    });

    test('does not deliver channels the node did not subscribe to', async ({ broker, rec, ch }) => {
      const sub = ch('yes');
      await broker.subscribe(sub);
      await broker.publish(ch('no'), 'not for us');
      await broker.publish(`${sub}/deeper`, 'not for us either');
      await broker.publish(sub, 'marker');
      await rec.waitFor(sub, 'marker');
      assert.deepEqual(rec.data(), ['marker']);
    });

    test('subscribe and unsubscribe are idempotent', async ({ broker, rec, ch }) => {
      const c = ch('idem');
      await broker.unsubscribe(c); // never subscribed: fine
      await broker.subscribe(c);
      await broker.subscribe(c);
      await broker.publish(c, 1);
      await rec.waitFor(c, 1);
      await broker.unsubscribe(c);
      await broker.unsubscribe(c);
      await broker.subscribe(c);
      await broker.publish(c, 2);
      await rec.waitFor(c, 2);
      assert.deepEqual(rec.data(c), [1, 2]); // once each, not twice
    });

    test('unsubscribe stops delivery', async ({ broker, rec, ch }) => {
      const c = ch('stop');
      const marker = ch('marker');
      await broker.subscribe(c);
      await broker.subscribe(marker);
      await broker.publish(c, 'before');
      await rec.waitFor(c, 'before');
      await broker.unsubscribe(c);
      await broker.publish(c, 'after');
      await broker.publish(marker, 'm');
      await rec.waitFor(marker, 'm');
      assert.deepEqual(rec.data(c), ['before']);
    });

    test('a + pattern matches exactly one segment', async ({ broker, rec, ch }) => {
      const root = ch('plus');
      await broker.subscribe(`${root}/+/x`);
      await broker.publish(`${root}/a/x`, 1);
      await broker.publish(root, 'no');
      await broker.publish(`${root}/x`, 'no');
      await broker.publish(`${root}/a/b/x`, 'no');
      await broker.publish(`${root}/a/x/y`, 'no');
      await broker.publish(`${root}/b/x`, 2);
      // Each channel waited for: across channels only Redis Cluster's shards may reorder.
      await rec.waitForCount(`${root}/a/x`, 1);
      await rec.waitForCount(`${root}/b/x`, 1);
      // A marker on a non-matching channel's sibling under the pattern: once it is in, the
      // 'no' publications (made before it on this node) had their chance to arrive.
      await broker.publish(`${root}/marker/x`, 'm');
      await rec.waitFor(`${root}/marker/x`, 'm');
      assert.deepEqual(
        rec.pubs().map((p) => `${p.channel}=${JSON.stringify(p.data)}`).sort(),
        [`${root}/a/x=1`, `${root}/b/x=2`, `${root}/marker/x="m"`],
      );
    });

    test('a # pattern matches zero or more trailing segments', async ({ broker, rec, ch }) => {
      const root = ch('hash');
      await broker.subscribe(`${root}/#`);
      await broker.publish(root, 0);
      await broker.publish(`${root}/a`, 1);
      await broker.publish(`${root}sibling`, 'no');
      await broker.publish(ch('elsewhere'), 'no');
      await broker.publish(`${root}/a/b/c`, 3);
      // Each channel waited for: across channels only Redis Cluster's shards may reorder.
      await rec.waitFor(root, 0);
      await rec.waitFor(`${root}/a`, 1);
      await rec.waitFor(`${root}/a/b/c`, 3);
      assert.deepEqual(rec.data().sort(), [0, 1, 3]);
    });

    test('a publication matched by several subscriptions is delivered once', async ({ broker, rec, ch }) => {
      const root = ch('many');
      const c = `${root}/a`;
      await broker.subscribe(c);
      await broker.subscribe(`${root}/+`);
      await broker.subscribe(`${root}/#`);
      await broker.publish(c, 1);
      await broker.publish(`${root}/b`, 2); // matched by two patterns
      await broker.publish(`${root}/marker/x`, 'm'); // matched by # only
      // Once more on each: a second copy of the first would come before it (order per channel).
      await broker.publish(c, 3);
      await broker.publish(`${root}/b`, 4);
      await rec.waitFor(c, 3);
      await rec.waitFor(`${root}/b`, 4);
      await rec.waitFor(`${root}/marker/x`, 'm');
      assert.deepEqual(rec.data(c), [1, 3]);
      assert.deepEqual(rec.data(`${root}/b`), [2, 4]);
      assert.deepEqual(rec.data(`${root}/marker/x`), ['m']);
    });

    test('unsubscribing a pattern stops its delivery', async ({ broker, rec, ch }) => {
      const root = ch('unpat');
      const marker = ch('marker');
      await broker.subscribe(`${root}/+`);
      await broker.subscribe(marker);
      await broker.publish(`${root}/a`, 1);
      await rec.waitFor(`${root}/a`, 1);
      await broker.unsubscribe(`${root}/+`);
      await broker.publish(`${root}/a`, 2);
      await broker.publish(marker, 'm');
      await rec.waitFor(marker, 'm');
      assert.deepEqual(rec.data(`${root}/a`), [1]);
    });

    test('rejects invalid channels and patterns', async ({ broker, ch }) => {
      const c = ch('valid');
      await assert.rejects(broker.publish(`${c}/+`, 1));
      await assert.rejects(broker.publish(`${c}/#`, 1));
      await assert.rejects(broker.publish('', 1));
      await assert.rejects(broker.publish(`${c}//x`, 1));
      await assert.rejects(broker.subscribe(`${c}/a+`));
      await assert.rejects(broker.subscribe(`${c}/#/x`));
      await assert.rejects(broker.history(`${c}/+`));
      // Still usable afterwards.
      assert.equal((await broker.publish(c, 1, { history: H10 })).offset, 1);
    });

    test('publishPresence reaches subscribed nodes only', async ({ broker, rec, ch }) => {
      const room = ch('room');
      const other = ch('other');
      await broker.subscribe(room);
      const alice: ClientInfo = { client: 'c1', user: 'alice', info: { x: 1 } };
      await broker.publishPresence(room, 'join', alice);
      await broker.publishPresence(other, 'join', { client: 'c2', user: 'bob' });
      await broker.publishPresence(room, 'leave', alice);
      await waitUntil(() => rec.presence().length >= 2, 'join and leave');
      await broker.publish(room, 'marker');
      await rec.waitFor(room, 'marker');
      assert.deepEqual(rec.presence(), [
        ['join', room, 'c1'],
        ['leave', room, 'c1'],
      ]);
      const join = rec.events.find((e) => e.type === 'join');
      assert.ok(join !== undefined && join.type === 'join');
      assert.deepEqual(join.info, alice);
    });

    test('publishPresence reaches pattern subscriptions', async ({ broker, rec, ch }) => {
      const root = ch('rooms');
      await broker.subscribe(`${root}/+`);
      await broker.publishPresence(`${root}/a`, 'join', { client: 'c1', user: 'u' });
      await broker.publishPresence(`${root}/a/b`, 'join', { client: 'c2', user: 'u' });
      await broker.publishPresence(`${root}/b`, 'leave', { client: 'c3', user: 'u' });
      await waitUntil(() => rec.presence().length >= 2, 'presence events');
      await broker.publish(`${root}/marker`, 'm');
      await rec.waitFor(`${root}/marker`, 'm');
      // Sorted: order holds per channel only, and Redis Cluster's shards may reorder two channels.
      assert.deepEqual(rec.presence().slice().sort(), [
        ['join', `${root}/a`, 'c1'],
        ['leave', `${root}/b`, 'c3'],
      ]);
    });

    // ---- across nodes ----------------------------------------------------

    test('a second node on the same backend sees publications and history', async ({ node, broker, rec, ch }) => {
      assert.ok(node.peer, 'create() returned no peer(): give one, or skip this test with a reason');
      const other = await node.peer();
      const rec2 = new Recorder();
      other.broker.setHandler(rec2);
      try {
        const c = ch('shared');
        await broker.subscribe(c);
        await other.broker.subscribe(c);
        const r1 = await other.broker.publish(c, 'from B', { history: H10 });
        const r2 = await broker.publish(c, 'from A', { history: H10 });
        assert.equal(r1.offset, 1);
        assert.deepEqual(r2, { offset: 2, epoch: r1.epoch, duplicate: false });
        await rec.waitForCount(c, 2);
        await rec2.waitForCount(c, 2);
        assert.deepEqual(rec.data(c), ['from B', 'from A']);
        assert.deepEqual(rec2.data(c), ['from B', 'from A']);
        const h = await broker.history(c);
        assert.deepEqual(
          h.publications.map((p) => p.data),
          ['from B', 'from A'],
        );
        assert.deepEqual(h.position, { offset: 2, epoch: r1.epoch });
      } finally {
        await closeNode(other);
      }
    });

    test('a second node on the same backend sees presence', async ({ node, broker, presence, rec, ch }) => {
      assert.ok(node.peer, 'create() returned no peer(): give one, or skip this test with a reason');
      const other = await node.peer();
      other.broker.setHandler(new Recorder());
      try {
        const room = ch('room');
        await broker.subscribe(room);
        await other.presence.add(room, { client: 'c1', user: 'u1' });
        await other.broker.publishPresence(room, 'join', { client: 'c1', user: 'u1' });
        await waitUntil(() => rec.presence().length >= 1, 'a join from the other node');
        assert.deepEqual(rec.presence(), [['join', room, 'c1']]);
        assert.deepEqual(await presence.get(room), { c1: { client: 'c1', user: 'u1' } });
        assert.deepEqual(await presence.stats(room), { clients: 1, users: 1 });
      } finally {
        await closeNode(other);
      }
    });

    // ---- node messages ---------------------------------------------------

    /** The broker as a NodeBus: every implementation carries node messages. */
    const bus = (b: Broker): NodeBus => {
      assert.ok(isNodeBus(b), 'the broker implements NodeBus (listenNodes, sendToNode, nodeId)');
      return b;
    };

    test('node messages: each node has its own id; a message to a peer arrives, in send order, both ways', async ({ node, broker }) => {
      assert.ok(node.peer, 'create() returned no peer(): give one, or skip this test with a reason');
      const other = await node.peer();
      try {
        const a = bus(broker);
        const b = bus(other.broker);
        assert.match(a.nodeId, NODE_ID);
        assert.match(b.nodeId, NODE_ID);
        assert.notEqual(a.nodeId, b.nodeId);
        const gotA: string[] = [];
        const gotB: string[] = [];
        await a.listenNodes((m) => gotA.push(m));
        await b.listenNodes((m) => gotB.push(m));
        const toB = Array.from({ length: 50 }, (_, i) => JSON.stringify({ i, text: `é ${'x'.repeat(i * 10)} ✓` }));
        const sent = await Promise.all(toB.map((m) => a.sendToNode(b.nodeId, m)));
        assert.ok(sent.every((d) => d === true), `every send to a listening peer resolves true: ${sent}`);
        await waitUntil(() => gotB.length >= 50, '50 node messages on the peer');
        assert.deepEqual(gotB, toB, 'in send order, unchanged (UTF-8 included)');
        assert.equal(await b.sendToNode(a.nodeId, 'back'), true);
        await waitUntil(() => gotA.length >= 1, 'the answer on the first node');
        assert.deepEqual(gotA, ['back']);
        await sleep(50);
        assert.equal(gotB.length, 50, 'a node does not get its own messages to others');
      } finally {
        await closeNode(other);
      }
    });

    test('node messages: to a node nobody listens on, or one that closed, sendToNode resolves false', async ({ node, broker }) => {
      assert.ok(node.peer, 'create() returned no peer(): give one, or skip this test with a reason');
      const a = bus(broker);
      await a.listenNodes(() => {});
      assert.equal(await a.sendToNode('zz9nobody', 'hello'), false, 'no such node');
      const other = await node.peer();
      const b = bus(other.broker);
      const got: string[] = [];
      await b.listenNodes((m) => got.push(m));
      assert.equal(await a.sendToNode(b.nodeId, 'one'), true);
      await waitUntil(() => got.length === 1, 'the message before the close');
      const id = b.nodeId;
      await closeNode(other);
      assert.equal(await a.sendToNode(id, 'two'), false, 'the peer closed');
      await sleep(50);
      assert.deepEqual(got, ['one']);
    });

    test('node messages: a malformed node id or a message over maxNodeMessageBytes is refused before the broker', async ({ broker }) => {
      const a = bus(broker);
      for (const to of ['', 'ABC', 'a.b', 'a*', 'a>', 'x'.repeat(33), 'sb:{x}', '../../x']) {
        await assert.rejects(a.sendToNode(to, 'm'), TypeError, `node id ${JSON.stringify(to)}`);
      }
      if (a.maxNodeMessageBytes < 64 * 1024 * 1024) {
        await assert.rejects(a.sendToNode(a.nodeId, 'x'.repeat(a.maxNodeMessageBytes + 1)), TypeError);
      }
    });

    test('node messages: nodes() lists the listening nodes, this one included, and no closed one', async ({ node, broker }) => {
      assert.ok(node.peer, 'create() returned no peer(): give one, or skip this test with a reason');
      const a = bus(broker);
      await a.listenNodes(() => {});
      assert.deepEqual(await a.nodes(), [a.nodeId], 'alone: itself');
      const other = await node.peer();
      const b = bus(other.broker);
      const third = await node.peer();
      const c = bus(third.broker);
      let thirdOpen = true;
      try {
        assert.deepEqual(await a.nodes(), [a.nodeId], 'peers that do not listen are not listed');
        await b.listenNodes(() => {});
        await c.listenNodes(() => {});
        assert.deepEqual((await a.nodes()).sort(), [a.nodeId, b.nodeId, c.nodeId].sort());
        assert.deepEqual((await b.nodes()).sort(), [a.nodeId, b.nodeId, c.nodeId].sort(), 'the same list from another node');
        thirdOpen = false;
        await closeNode(third);
        assert.deepEqual((await a.nodes()).sort(), [a.nodeId, b.nodeId].sort(), 'a closed node is gone');
      } finally {
        await closeNode(other);
        if (thirdOpen) await closeNode(third);
      }
    });

    // ---- history ---------------------------------------------------------

    test('history keeps the last size publications', async ({ broker, ch }) => {
      const c = ch('lastn');
      let epoch = '';
      for (let i = 1; i <= 5; i++) epoch = (await broker.publish(c, `m${i}`, { history: { size: 3, ttlMs: 0 } })).epoch;
      const h = await broker.history(c);
      assert.deepEqual(
        h.publications.map((p) => [p.offset, p.data]),
        [
          [3, 'm3'],
          [4, 'm4'],
          [5, 'm5'],
        ],
      );
      assert.ok(h.publications.every((p) => p.epoch === epoch && p.channel === c));
      assert.deepEqual(h.position, { offset: 5, epoch });
    });

    test('history drops publications older than ttlMs', async ({ broker, ch, elapse, exactClock }) => {
      const long = ch('long');
      const short = ch('short');
      await broker.publish(long, 'kept', { history: { size: 10, ttlMs: 60_000 } });
      const r = await broker.publish(short, 'first', { history: { size: 10, ttlMs: 40 } });
      if (exactClock) {
        await elapse(20);
        await broker.publish(short, 'second', { history: { size: 10, ttlMs: 40 } });
        await elapse(19);
        assert.deepEqual((await broker.history(short)).publications.map((p) => p.data), ['first', 'second']);
        await elapse(1); // 'first' is 40 ms old
        assert.deepEqual((await broker.history(short)).publications.map((p) => p.data), ['second']);
        await elapse(20);
      } else {
        await elapse(40);
      }
      const h = await broker.history(short);
      assert.deepEqual(h.publications, []);
      assert.equal(h.position.offset === 0 || h.position.offset >= r.offset, true, 'the position never goes back within an epoch');
      assert.deepEqual((await broker.history(long)).publications.map((p) => p.data), ['kept']);
    });

    test('history keeps nothing without history options', async ({ broker, rec, ch }) => {
      const c = ch('nohist');
      await broker.subscribe(c);
      const r1 = await broker.publish(c, 1);
      const r2 = await broker.publish(c, 2, { history: { size: 0, ttlMs: 0 } });
      assert.equal(r2.epoch, r1.epoch);
      assert.equal(r2.offset, r1.offset + 1);
      await rec.waitForCount(c, 2);
      assert.deepEqual((await broker.history(c)).publications, []);
    });

    test('history since returns the publications after a position', async ({ broker, ch }) => {
      const c = ch('since');
      let epoch = '';
      for (let i = 1; i <= 6; i++) epoch = (await broker.publish(c, i, { history: H10 })).epoch;
      const h = await broker.history(c, { since: { offset: 2, epoch } });
      assert.deepEqual(
        h.publications.map((p) => p.offset),
        [3, 4, 5, 6],
      );
      assert.deepEqual(
        h.publications.map((p) => p.data),
        [3, 4, 5, 6],
      );
      assert.equal(h.recovered, true);
      assert.deepEqual(h.position, { offset: 6, epoch });
      const all = await broker.history(c, { since: { offset: 0, epoch } });
      assert.deepEqual(
        all.publications.map((p) => p.offset),
        [1, 2, 3, 4, 5, 6],
      );
      assert.equal(all.recovered, true);
    });

    test('history limit returns the newest without since, the oldest after since', async ({ broker, ch }) => {
      const c = ch('limit');
      let epoch = '';
      for (let i = 1; i <= 6; i++) epoch = (await broker.publish(c, i, { history: H10 })).epoch;
      const newest = await broker.history(c, { limit: 2 });
      assert.deepEqual(
        newest.publications.map((p) => p.offset),
        [5, 6],
      );
      assert.equal(newest.recovered, false, 'recovered is only ever true in answer to since');
      assert.deepEqual(newest.position, { offset: 6, epoch });
      const page = await broker.history(c, { since: { offset: 2, epoch }, limit: 2 });
      assert.deepEqual(
        page.publications.map((p) => p.offset),
        [3, 4],
      );
      assert.equal(page.recovered, true, 'a limit is paging, not a gap');
      assert.deepEqual(page.position, { offset: 6, epoch });
      const none = await broker.history(c, { limit: 0 });
      assert.deepEqual(none.publications, []);
      assert.deepEqual(none.position, { offset: 6, epoch });
      assert.equal((await broker.history(c, { limit: 100 })).publications.length, 6);
    });

    test('recovered is true in the same epoch with no gap', async ({ broker, ch }) => {
      const c = ch('rec');
      const r1 = await broker.publish(c, 1, { history: H10 });
      await broker.publish(c, 2, { history: H10 });
      const mid = await broker.history(c, { since: { offset: 1, epoch: r1.epoch } });
      assert.equal(mid.recovered, true);
      assert.deepEqual(
        mid.publications.map((p) => p.data),
        [2],
      );
      const atHead = await broker.history(c, { since: { offset: 2, epoch: r1.epoch } });
      assert.deepEqual(atHead, { publications: [], position: { offset: 2, epoch: r1.epoch }, recovered: true });
    });

    test('recovered is false when publications after since were evicted', async ({ broker, ch }) => {
      const c = ch('gap');
      let epoch = '';
      for (let i = 1; i <= 5; i++) epoch = (await broker.publish(c, i, { history: { size: 3, ttlMs: 0 } })).epoch;
      // Retained: 3, 4, 5. From 1, offset 2 is missing.
      const gap = await broker.history(c, { since: { offset: 1, epoch } });
      assert.equal(gap.recovered, false);
      assert.deepEqual(gap.position, { offset: 5, epoch });
      assert.ok(gap.publications.every((p) => p.offset > 1));
      // From 2, nothing is missing.
      const ok = await broker.history(c, { since: { offset: 2, epoch } });
      assert.equal(ok.recovered, true);
      assert.deepEqual(
        ok.publications.map((p) => p.offset),
        [3, 4, 5],
      );
    });

    test('recovered is false for another epoch or a position ahead', async ({ broker, ch }) => {
      const c = ch('epoch');
      const r = await broker.publish(c, 1, { history: H10 });
      await broker.publish(c, 2, { history: H10 });
      const other = await broker.history(c, { since: { offset: 1, epoch: `${r.epoch}x` } });
      assert.deepEqual(other, { publications: [], position: { offset: 2, epoch: r.epoch }, recovered: false });
      const zero = await broker.history(c, { since: { offset: 0, epoch: `${r.epoch}x` } });
      assert.deepEqual(zero, { publications: [], position: { offset: 2, epoch: r.epoch }, recovered: false });
      const ahead = await broker.history(c, { since: { offset: 7, epoch: r.epoch } });
      assert.equal(ahead.recovered, false);
      assert.deepEqual(ahead.publications, []);
      assert.deepEqual(ahead.position, { offset: 2, epoch: r.epoch });
    });

    test('a quiet channel has offset 0 and a stable epoch, and resumes from it', async ({ broker, rec, ch }) => {
      const c = ch('quiet');
      await broker.subscribe(c);
      const h1 = await broker.history(c);
      assert.deepEqual(h1.publications, []);
      assert.equal(h1.position.offset, 0);
      assert.equal(typeof h1.position.epoch, 'string');
      const h2 = await broker.history(c);
      assert.deepEqual(h2.position, h1.position);
      const resumed = await broker.history(c, { since: h1.position });
      assert.deepEqual(resumed, { publications: [], position: h1.position, recovered: true });
      // The first publications continue that epoch, so the resume still works.
      await broker.publish(c, 'first', { history: H10 });
      await broker.publish(c, 'second', { history: H10 });
      const after = await broker.history(c, { since: h1.position });
      assert.equal(after.recovered, true);
      assert.deepEqual(after.position, { offset: 2, epoch: h1.position.epoch });
      assert.deepEqual(
        after.publications.map((p) => p.data),
        ['first', 'second'],
      );
      await rec.waitForCount(c, 2);
    });

    test('removeHistory starts a new epoch with offsets from 1', async ({ broker, ch }) => {
      const c = ch('reset');
      let last = await broker.publish(c, 1, { history: H10 });
      last = await broker.publish(c, 2, { history: H10 });
      await broker.removeHistory(c);
      const h = await broker.history(c);
      assert.deepEqual(h.publications, []);
      assert.equal((await broker.history(c, { since: { offset: 2, epoch: last.epoch } })).recovered, false);
      const next = await broker.publish(c, 3, { history: H10 });
      assert.equal(next.offset, 1);
      assert.notEqual(next.epoch, last.epoch);
      const after = await broker.history(c, { since: { offset: 0, epoch: next.epoch } });
      assert.equal(after.recovered, true);
      assert.deepEqual(
        after.publications.map((p) => p.data),
        [3],
      );
      assert.equal((await broker.history(c, { since: { offset: 1, epoch: last.epoch } })).recovered, false);
      await broker.removeHistory(ch('never-published')); // nothing to remove: fine
    });

    test('property: offsets only increase and since returns exactly what followed', async ({ broker, ch }) => {
      type Command =
        | { op: 'pub'; n: number }
        | { op: 'hist'; pick: number; limit: number | undefined; useSince: boolean }
        | { op: 'reset' };
      const command: fc.Arbitrary<Command> = fc.oneof(
        { weight: 4, arbitrary: fc.record({ op: fc.constant('pub' as const), n: fc.integer({ min: 1, max: 4 }) }) },
        {
          weight: 4,
          arbitrary: fc.record({
            op: fc.constant('hist' as const),
            pick: fc.nat(),
            limit: fc.option(fc.integer({ min: 0, max: 8 }), { nil: undefined }),
            useSince: fc.boolean(),
          }),
        },
        { weight: 1, arbitrary: fc.record({ op: fc.constant('reset' as const) }) },
      );
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(command, { maxLength: 25 }), async (size, commands) => {
          const c = ch(`prop/${run++}`);
          const history: HistoryOptions = { size, ttlMs: 0 };
          // The model: the current epoch (once known) and the data published in it, offset i+1 at index i.
          let epoch: string | undefined;
          let published: number[] = [];
          let epochMayChange = true; // at the start and after removeHistory
          const seen: StreamPosition[] = [];
          let counter = 0;
          const expectPosition = (p: StreamPosition): void => {
            if (epoch === undefined || epochMayChange) {
              if (p.epoch !== epoch) {
                assert.equal(published.length, 0);
                assert.equal(p.offset, 0, 'no publication yet in this epoch');
                epoch = p.epoch;
              }
            }
            assert.deepEqual(p, { offset: published.length, epoch });
          };
          for (const cmd of commands) {
            if (cmd.op === 'pub') {
              for (let i = 0; i < cmd.n; i++) {
                const data = counter++;
                const r = await broker.publish(c, data, { history });
                assert.equal(r.duplicate, false);
                if (r.epoch !== epoch) {
                  assert.ok(epochMayChange, 'the epoch changes only when history is lost');
                  epoch = r.epoch;
                  published = [];
                }
                epochMayChange = false;
                published.push(data);
                assert.equal(r.offset, published.length, 'offsets increase by one from 1');
                seen.push({ offset: r.offset, epoch: r.epoch });
              }
            } else if (cmd.op === 'reset') {
              await broker.removeHistory(c);
              epochMayChange = true;
              published = [];
            } else {
              const since = cmd.useSince && seen.length > 0 ? seen[cmd.pick % seen.length]! : undefined;
              const filter = { ...(since ? { since } : {}), ...(cmd.limit !== undefined ? { limit: cmd.limit } : {}) };
              const h = await broker.history(c, filter);
              expectPosition(h.position);
              seen.push(h.position);
              const firstRetained = Math.max(1, published.length - size + 1);
              const retained = published.slice(firstRetained - 1).map((data, i) => ({ offset: firstRetained + i, data }));
              const got = h.publications.map((p) => ({ offset: p.offset, data: p.data }));
              assert.ok(h.publications.every((p) => p.epoch === epoch && p.channel === c));
              if (since === undefined) {
                const want = cmd.limit === undefined ? retained : retained.slice(Math.max(0, retained.length - cmd.limit));
                assert.deepEqual(got, want);
                assert.equal(h.recovered, false);
              } else if (since.epoch !== epoch || since.offset > published.length) {
                assert.deepEqual(got, []);
                assert.equal(h.recovered, false);
              } else {
                const after = retained.filter((p) => p.offset > since.offset);
                const recovered = since.offset >= firstRetained - 1;
                assert.equal(h.recovered, recovered);
                if (recovered) {
                  assert.deepEqual(got, cmd.limit === undefined ? after : after.slice(0, cmd.limit));
                } else {
                  assert.ok(got.every((p) => p.offset > since.offset));
                }
              }
            }
          }
        }),
        { numRuns: 60 },
      );
    });

    // ---- idempotency -----------------------------------------------------

    test('a repeated idempotency key publishes nothing and returns the first result', async ({ broker, rec, ch }) => {
      const c = ch('idem');
      await broker.subscribe(c);
      const first = await broker.publish(c, 'once', { history: H10, idempotencyKey: 'k1' });
      const again = await broker.publish(c, 'twice?', { history: H10, idempotencyKey: 'k1' });
      assert.deepEqual(first, { offset: 1, epoch: first.epoch, duplicate: false });
      assert.deepEqual(again, { offset: 1, epoch: first.epoch, duplicate: true });
      await broker.publish(c, 'marker', { history: H10 });
      await rec.waitFor(c, 'marker');
      assert.deepEqual(rec.data(c), ['once', 'marker']);
      assert.deepEqual(
        (await broker.history(c)).publications.map((p) => p.data),
        ['once', 'marker'],
      );
    });

    test('different idempotency keys publish, and keys are per channel', async ({ broker, ch }) => {
      const a = ch('keys/a');
      const b = ch('keys/b');
      const r1 = await broker.publish(a, 1, { history: H10, idempotencyKey: 'k1' });
      const r2 = await broker.publish(a, 2, { history: H10, idempotencyKey: 'k2' });
      const r3 = await broker.publish(b, 3, { history: H10, idempotencyKey: 'k1' });
      assert.deepEqual([r1.offset, r1.duplicate], [1, false]);
      assert.deepEqual([r2.offset, r2.duplicate], [2, false]);
      assert.deepEqual([r3.offset, r3.duplicate], [1, false]);
      assert.equal((await broker.publish(a, 'again', { history: H10, idempotencyKey: 'k2' })).duplicate, true);
      assert.equal((await broker.publish(b, 'again', { history: H10, idempotencyKey: 'k1' })).duplicate, true);
      assert.deepEqual(
        (await broker.history(a)).publications.map((p) => p.data),
        [1, 2],
      );
    });

    test('an idempotency key expires after idempotencyTtlMs', async ({ broker, ch, elapse, exactClock }) => {
      const c = ch('expiry');
      const opts = { history: H10, idempotencyKey: 'k', idempotencyTtlMs: 40 };
      const first = await broker.publish(c, 1, opts);
      if (exactClock) {
        await elapse(39);
        assert.deepEqual(await broker.publish(c, 'dup', opts), { ...first, duplicate: true });
        await elapse(1);
      } else {
        await elapse(40);
      }
      const second = await broker.publish(c, 2, { ...opts, idempotencyTtlMs: 60_000 });
      assert.deepEqual(second, { offset: 2, epoch: first.epoch, duplicate: false });
      // The key is remembered again, from the new publication.
      assert.deepEqual(await broker.publish(c, 3, opts), { ...second, duplicate: true });
    });

    // ---- presence --------------------------------------------------------

    test('presence add, get and remove', async ({ presence, ch }) => {
      const room = ch('room');
      assert.deepEqual(await presence.get(room), {});
      const c1: ClientInfo = { client: 'c1', user: 'u1', info: { name: 'Ada' } };
      const c2: ClientInfo = { client: 'c2', user: 'u2' };
      await presence.add(room, c1);
      await presence.add(room, c2);
      assert.deepEqual(await presence.get(room), { c1, c2 });
      await presence.remove(room, 'c1');
      assert.deepEqual(await presence.get(room), { c2 });
      await presence.remove(room, 'c1'); // absent: no-op
      await presence.remove(ch('nobody'), 'c1');
      await presence.remove(room, 'c2');
      assert.deepEqual(await presence.get(room), {});
      assert.deepEqual(await presence.stats(room), { clients: 0, users: 0 });
    });

    test('presence add with a known client id replaces the entry', async ({ presence, ch }) => {
      const room = ch('room');
      await presence.add(room, { client: 'c1', user: 'u1', info: 1 });
      await presence.add(room, { client: 'c1', user: 'u2', info: 2 });
      assert.deepEqual(await presence.get(room), { c1: { client: 'c1', user: 'u2', info: 2 } });
      assert.deepEqual(await presence.stats(room), { clients: 1, users: 1 });
    });

    test('presence stats count clients and distinct users', async ({ presence, ch }) => {
      const room = ch('room');
      await presence.add(room, { client: 'c1', user: 'alice' });
      await presence.add(room, { client: 'c2', user: 'alice' }); // a second tab
      await presence.add(room, { client: 'c3', user: 'bob' });
      await presence.add(room, { client: 'c4', user: '' }); // anonymous: a client, not a user
      await presence.add(room, { client: 'c5', user: '' });
      assert.deepEqual(await presence.stats(room), { clients: 5, users: 2 });
      await presence.remove(room, 'c1');
      assert.deepEqual(await presence.stats(room), { clients: 4, users: 2 });
      await presence.remove(room, 'c2');
      assert.deepEqual(await presence.stats(room), { clients: 3, users: 1 });
    });

    test('presence channels are independent', async ({ presence, ch }) => {
      const a = ch('a');
      const b = ch('b');
      await presence.add(a, { client: 'c1', user: 'u1' });
      await presence.add(b, { client: 'c1', user: 'u1' });
      await presence.add(b, { client: 'c2', user: 'u2' });
      await presence.remove(a, 'c1');
      assert.deepEqual(await presence.get(a), {});
      assert.deepEqual(Object.keys(await presence.get(b)).sort(), ['c1', 'c2']);
      assert.deepEqual(await presence.stats(b), { clients: 2, users: 2 });
    });

    // ---- lifecycle -------------------------------------------------------

    test('close() releases everything', async (ctx) => {
      const { broker, presence, ch } = ctx;
      // Ref'd handles (sockets, timers) keep a process alive: after close, none of the node's may be left.
      const c = ch('close');
      await broker.subscribe(c);
      await broker.subscribe(`${c}/+`);
      await broker.publish(c, 1, { history: { size: 10, ttlMs: 60_000 }, idempotencyKey: 'k' });
      await presence.add(c, { client: 'c1', user: 'u1' });
      ctx.closed = true;
      await closeNode(ctx.node);
      await waitUntil(() => process.getActiveResourcesInfo().length <= ctx.resourcesBefore, 'handles to be released');
      await assert.rejects(broker.publish(c, 2));
    });

    it('skip lists name existing tests', () => {
      for (const name of BROKER_SUITE_TESTS) assert.ok(defined.has(name), `test not defined: ${name}`);
      for (const s of skips) {
        assert.ok(s.reason.length > 0, 'a skip needs a reason');
        for (const name of s.tests) assert.ok(defined.has(name), `skip names an unknown test: ${name}`);
      }
    });
  });
}
