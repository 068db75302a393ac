/**
 * The Redis broker and presence store when Redis goes away and comes back
 * (a real redis-server stopped for 3 s), and presence expiry when a node
 * dies: nothing crashes, operations reject with RT_ERR_BROKER_UNAVAILABLE
 * meanwhile, and everything works again afterwards.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { RedisBroker, RedisPresenceStore } from '../../../src/brokers/redis/redis-broker.js';
import { BrokerRecorder } from '../../support/broker-recorder.js';
import { freePort, RedisServer } from '../../support/redis.js';
import { serverForSuite } from '../../support/server-hooks.js';
import { sleep, until, within } from '../../support/wait.js';

/**
 * ioredis' command timeout, set far above the bound in rejectsUnavailable(): an operation that
 * rejected only because its command timed out cannot pass as one refused at once, however
 * loaded the machine is (a wall-clock bound near the real answer time could not tell them apart).
 */
const COMMAND_TIMEOUT_MS = 60_000;
const REDIS_OPTIONS = { commandTimeout: COMMAND_TIMEOUT_MS };

async function rejectsUnavailable(promise: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(
    within(promise, COMMAND_TIMEOUT_MS / 2, `${what} rejected at once, not after the command timeout`),
    (err: { code?: string }) => err.code === 'RT_ERR_BROKER_UNAVAILABLE',
    what,
  );
}

describe('redis broker: Redis down 3 s and back', () => {
  const server = serverForSuite(() => RedisServer.start());

  it('rejects with RT_ERR_BROKER_UNAVAILABLE meanwhile, never crashes, and resubscribes after', async () => {
    const crashes: unknown[] = [];
    const onCrash = (err: unknown): void => void crashes.push(err);
    process.on('uncaughtException', onCrash);
    process.on('unhandledRejection', onCrash);
    let resubscribed = 0;
    const errors: unknown[] = [];
    const node = new RedisBroker({ url: server().url, redis: REDIS_OPTIONS, onError: (e) => errors.push(e), onResubscribed: () => void resubscribed++ });
    const presence = new RedisPresenceStore({ url: server().url, redis: REDIS_OPTIONS, onError: (e) => errors.push(e) });
    const rec = new BrokerRecorder(5000);
    node.setHandler(rec);
    try {
      await node.ready();
      await node.subscribe('room');
      await node.subscribe('rooms/+');
      const first = await node.publish('room', 'before', { history: { size: 10, ttlMs: 0 } });
      await rec.waitFor('before');
      assert.equal(node.available, true);

      await server().stop();
      await until(() => !node.available, 3000, 'the broker to notice');
      const downSince = Date.now();
      await rejectsUnavailable(node.publish('room', 'while down'), 'publish');
      await rejectsUnavailable(node.history('room'), 'history');
      await rejectsUnavailable(node.subscribe('elsewhere'), 'subscribe');
      await rejectsUnavailable(node.publishPresence('room', 'join', { client: 'c', user: 'u' }), 'publishPresence');
      await rejectsUnavailable(presence.add('room', { client: 'c', user: 'u' }), 'presence add');
      await node.unsubscribe('elsewhere'); // local: fine while down
      await sleep(3000 - (Date.now() - downSince));

      await server().startAgain();
      await until(() => node.available, 5000, 'the broker to reconnect');
      // Without persistence the stream is gone: a new epoch (see redis-epochs.test.ts).
      const again = await node.publish('room', 'after', { history: { size: 10, ttlMs: 0 } });
      assert.notEqual(again.epoch, first.epoch);
      await rec.waitFor('after');
      // Publications from another node reach both subscriptions again.
      const other = new RedisBroker({ url: server().url });
      try {
        await other.ready();
        await other.publish('rooms/a', 'pattern after');
        await other.publishPresence('room', 'join', { client: 'c2', user: 'u' });
        await rec.waitFor('pattern after');
        await until(() => rec.joins.includes('c2'), 3000, 'the join');
      } finally {
        await other.close();
      }
      await until(() => resubscribed === 1, 3000, 'onResubscribed');
      await presence.add('room', { client: 'c', user: 'u' });
      assert.deepEqual(await presence.stats('room'), { clients: 1, users: 1 });
      assert.ok(!rec.pubs.some((p) => p.data === 'while down'));
      assert.ok(errors.length >= 1, 'the outage was reported to onError');
      assert.deepEqual(crashes, []);
    } finally {
      process.off('uncaughtException', onCrash);
      process.off('unhandledRejection', onCrash);
      await node.close();
      await presence.close();
    }
  });

  /**
   * A subscribing node (recording what it gets), another node that publishes, and an admin
   * connection, on the suite's Redis; `body` runs once both nodes are ready, and all three are
   * closed after it.
   */
  async function withSubscriberAndPublisher(
    body: (s: { node: RedisBroker; other: RedisBroker; admin: Redis; rec: BrokerRecorder }) => Promise<void>,
    onResubscribed?: () => void,
    nodeOptions: Partial<ConstructorParameters<typeof RedisBroker>[0]> = {},
  ): Promise<void> {
    const node = new RedisBroker({ url: server().url, onError: () => {}, ...(onResubscribed === undefined ? {} : { onResubscribed }), ...nodeOptions });
    const other = new RedisBroker({ url: server().url });
    const admin = new Redis(server().url);
    const rec = new BrokerRecorder(5000);
    node.setHandler(rec);
    try {
      await Promise.all([node.ready(), other.ready()]);
      await body({ node, other, admin, rec });
    } finally {
      admin.disconnect();
      await node.close();
      await other.close();
    }
  }
  const H = { history: { size: 100, ttlMs: 0 } };

  it('a dropped subscriber connection: what was published meanwhile is refilled from history, in order, once', async () => {
    let resubscribed = 0;
    await withSubscriberAndPublisher(
      async ({ node, other, admin, rec }) => {
        await node.subscribe('feed');
        for (let i = 1; i <= 5; i++) await other.publish('feed', i, H);
        await rec.waitFor(5);
        await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'); // only the node's subscriber is one
        for (let i = 6; i <= 20; i++) await other.publish('feed', i, H);
        await rec.waitFor(20);
        await until(() => resubscribed === 1, 3000, 'onResubscribed');
        await other.publish('feed', 21, H);
        await rec.waitFor(21);
        assert.deepEqual(
          rec.pubs.map((p) => p.offset),
          Array.from({ length: 21 }, (_, i) => i + 1),
        );
      },
      () => void resubscribed++,
    );
  });

  it('a dropped subscriber connection while the stream was lost (FLUSHALL): the new epoch published meanwhile is refilled from its start', async () => {
    await withSubscriberAndPublisher(async ({ node, other, admin, rec }) => {
      await node.subscribe('lost');
      for (let i = 1; i <= 3; i++) await other.publish('lost', i, H);
      await rec.waitFor(3);
      await admin.flushall();
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'); // the subscriber reconnects after >= 50 ms
      const epochs = new Set<string>();
      for (const data of ['a', 'b', 'c']) epochs.add((await other.publish('lost', data, H)).epoch);
      await rec.waitFor('c').catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(rec.pubs.map((p) => [p.epoch, p.offset, p.data]))}`);
      });
      const [old] = new Set(rec.pubs.slice(0, 3).map((p) => p.epoch));
      assert.equal(epochs.size, 1);
      assert.notEqual([...epochs][0], old, 'FLUSHALL: a new epoch');
      assert.deepEqual(
        rec.pubs.map((p) => [p.epoch === old ? 'old' : 'new', p.offset, p.data]),
        [['old', 1, 1], ['old', 2, 2], ['old', 3, 3], ['new', 1, 'a'], ['new', 2, 'b'], ['new', 3, 'c']],
      );
    });
  });

  it("subscriber and command connections cut at once (Sentinel does it to a demoted master's clients): what was published meanwhile arrives, also when the subscriber's refill found the command connection still down", async () => {
    await withSubscriberAndPublisher(
      async ({ node, other, admin, rec }) => {
        await node.subscribe('both');
        await other.publish('both', 0, H);
        await rec.waitFor(0);
        // Which of the two comes back first is a race; eight rounds give the losing order its chances.
        for (let round = 1; round <= 8; round++) {
          await until(() => node.available, 5000, 'the node to be back');
          const list = (await admin.call('CLIENT', 'LIST')) as string;
          const ids = [...list.matchAll(/^id=(\d+) .*\bname=node-under-test\b/gm)].map((m) => m[1]!);
          assert.equal(ids.length, 2, `the node's two connections: ${list}`);
          await admin.multi().call('CLIENT', 'KILL', 'ID', ids[0]!).call('CLIENT', 'KILL', 'ID', ids[1]!).exec();
          // Published while the node's subscriber is away (it reconnects after >= 50 ms): only a refill brings it.
          await other.publish('both', round, H);
          await rec.waitFor(round).catch((err: Error) => {
            throw new Error(`round ${round}: ${err.message}; got ${JSON.stringify(rec.data('both'))}`);
          });
        }
        assert.deepEqual(rec.data('both'), [0, 1, 2, 3, 4, 5, 6, 7, 8], 'each once, in order');
      },
      undefined,
      // The node's two connections carry a name of their own, to be cut by id in one transaction.
      { redis: { connectionName: 'node-under-test' } },
    );
  });

  it('the first operations wait (bounded) for a Redis that is not there, then reject', async () => {
    const nowhere = `redis://127.0.0.1:${await freePort()}`;
    const node = new RedisBroker({ url: nowhere, connectTimeoutMs: 300, redis: REDIS_OPTIONS, onError: () => {} });
    try {
      await rejectsUnavailable(node.publish('room', 1), 'publish before any connection');
    } finally {
      await node.close();
    }
  });
});

describe('redis presence: expiry', () => {
  const server = serverForSuite(() => RedisServer.start());

  it("a live node's entries outlive the TTL (heartbeat); a dead node's vanish after it", async () => {
    const live = new RedisPresenceStore({ url: server().url, presenceTtlMs: 300 });
    const dead = new RedisPresenceStore({ url: server().url, presenceTtlMs: 300 });
    const reader = new RedisPresenceStore({ url: server().url, presenceTtlMs: 300 });
    try {
      await live.add('room', { client: 'a', user: 'alice' });
      await dead.add('room', { client: 'b', user: 'bob' });
      await dead.add('room', { client: 'b2', user: 'bob' });
      assert.deepEqual(await reader.stats('room'), { clients: 3, users: 2 });
      await dead.close(); // no remove: as if the process died
      await sleep(500);
      assert.deepEqual(Object.keys(await reader.get('room')), ['a']);
      assert.deepEqual(await reader.stats('room'), { clients: 1, users: 1 });
      await sleep(400); // well past the TTL again: the heartbeat keeps 'a'
      assert.deepEqual(await reader.get('room'), { a: { client: 'a', user: 'alice' } });
    } finally {
      await live.close();
      await dead.close();
      await reader.close();
    }
  });
});

describe('redis presence: the entries of a node that is gone are announced once', () => {
  const server = serverForSuite(() => RedisServer.start());

  /** A store whose heartbeat runs only when the test calls it, recording what it reports. */
  function node(name: string, reports: string[]): RedisPresenceStore {
    const store = new RedisPresenceStore({ url: server().url, presenceTtlMs: 300, heartbeatMs: 3_600_000 });
    store.setExpiryHandler({
      expired: (channel, info) => void reports.push(`${name} expired ${channel} ${info.client} ${info.user}`),
      restored: (channel, info) => void reports.push(`${name} restored ${channel} ${info.client}`),
    });
    return store;
  }

  it('a dead node: each of its entries is reported expired by one survivor; a removed entry by none', async () => {
    const reports: string[] = [];
    const dead = node('dead', reports);
    const b = node('b', reports);
    const c = node('c', reports);
    try {
      await dead.add('room', { client: 'd1', user: 'dora', info: { seat: 1 } });
      await dead.add('room', { client: 'd2', user: 'dora' });
      await b.add('room', { client: 'b1', user: 'bob' });
      await c.add('room', { client: 'c1', user: 'cy' });
      await c.add('room', { client: 'c2', user: 'cy' });
      await c.remove('room', 'c2'); // a normal leave: its node announces it, the store does not
      await dead.close(); // no remove: as if the process died
      // The survivors' heartbeats, well past the dead node's TTL: they keep their own entries and take what expired.
      for (let i = 0; i < 6; i++) {
        await b.heartbeat();
        await c.heartbeat();
        await sleep(100);
      }
      assert.deepEqual(reports.map((r) => r.replace(/^[bc] /, '')).sort(), ['expired room d1 dora', 'expired room d2 dora']);
      assert.deepEqual(Object.keys(await c.get('room')).sort(), ['b1', 'c1']);
    } finally {
      await Promise.all([dead.close(), b.close(), c.close()]);
    }
  });

  it("an own entry that expired while its node was cut off comes back and is reported restored (after another node announced it gone)", async () => {
    const reports: string[] = [];
    const b = node('b', reports);
    const c = node('c', reports);
    const admin = new Redis(server().url);
    try {
      await b.add('room2', { client: 'b1', user: 'bob' });
      await c.add('room2', { client: 'c1', user: 'cy' });
      // b's entry expires as if b had missed its heartbeats; c's next script drops it and c's heartbeat takes it.
      const keys = (await admin.keys('*room2*:pe'))[0]!;
      await admin.zadd(keys, 0, 'b1');
      await c.heartbeat();
      assert.deepEqual(reports, ['c expired room2 b1 bob']);
      await b.heartbeat(); // b finds its entry missing: written again, and reported
      assert.deepEqual(reports, ['c expired room2 b1 bob', 'b restored room2 b1']);
      assert.deepEqual(Object.keys(await c.get('room2')).sort(), ['b1', 'c1']);

      // Taken by its own node's heartbeat: nobody announced it gone, so it comes back silently.
      await admin.zadd(keys, 0, 'b1');
      await b.heartbeat();
      assert.equal(reports.length, 2);
      assert.deepEqual(Object.keys(await c.get('room2')).sort(), ['b1', 'c1']);
    } finally {
      admin.disconnect();
      await Promise.all([b.close(), c.close()]);
    }
  });
});
