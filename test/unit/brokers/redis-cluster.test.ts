/**
 * The Redis broker on a real Redis Cluster (test/support/redis.ts): every
 * key of a channel in one slot; channels on three different shards, each
 * delivered in order through its own shard subscription; a slot moved to
 * another master while subscribed (MOVED for commands, SUNSUBSCRIBE pushed to
 * the shard subscribers); a master failover (`CLUSTER FAILOVER` on its
 * replica): publishes follow the new master, the subscriber gets what
 * follows, and the channel gets a new epoch (the promoted replica may have
 * missed writes: no offset reused inside an epoch, `recovered: false`).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import type { Publication } from '../../../src/brokers/broker.js';
import { channelKeys } from '../../../src/brokers/redis/keys.js';
import { RedisBroker } from '../../../src/brokers/redis/redis-broker.js';
import { RedisCluster, redisCli, type RedisClusterOptions } from '../../support/redis.js';
import { retrying, sleep, until } from '../../support/wait.js';

const H = { history: { size: 100, ttlMs: 0 } };
const quiet = { onError: () => {} };

/** Retry `fn` while it rejects (the cluster settling after a change), for at most `ms`. */
function settled<T>(fn: () => Promise<T>, ms = 15_000): Promise<T> {
  return retrying(fn, ms, () => true, 100);
}

/** A subscribing broker that records what it receives per channel. */
function recorder(broker: RedisBroker): Map<string, Publication[]> {
  const got = new Map<string, Publication[]>();
  broker.setHandler({
    onPublication: (pub) => {
      let list = got.get(pub.channel);
      if (list === undefined) got.set(pub.channel, (list = []));
      list.push(pub);
    },
    onJoin: () => {},
    onLeave: () => {},
  });
  return got;
}

/** `count` channels (`<stem>-<i>`) whose slots are served by `count` different masters. */
async function channelsOnShards(cluster: RedisCluster, stem: string, count: number): Promise<Array<{ channel: string; slot: number; port: number }>> {
  const out: Array<{ channel: string; slot: number; port: number }> = [];
  for (let i = 0; out.length < count && i < 200; i++) {
    const channel = `${stem}-${i}`;
    const slot = await cluster.keySlot(channelKeys('sb:', channel).pubsub);
    const port = (await cluster.masterOf(slot)).port;
    if (!out.some((c) => c.port === port)) out.push({ channel, slot, port });
  }
  assert.equal(out.length, count, `channels on ${count} different masters`);
  return out;
}

/** What each node says about a channel's shard subscription, and what the subscriber got: for a failure's message. */
async function shardState(cluster: RedisCluster, channel: string, got: Map<string, Publication[]>): Promise<string> {
  const name = channelKeys('sb:', channel).pubsub;
  const lines = [`got: ${JSON.stringify((got.get(channel) ?? []).map((p) => [p.offset, p.epoch, p.data]))}`];
  for (const node of cluster.nodes) {
    const role = /role:(\w+)/.exec(await redisCli(node.port, 'INFO', 'replication').catch(() => ''))?.[1];
    const subs = (await redisCli(node.port, 'PUBSUB', 'SHARDNUMSUB', name).catch((e: Error) => e.message)).split('\n')[1];
    const clients = (await redisCli(node.port, 'CLIENT', 'LIST').catch(() => ''))
      .split('\n')
      .filter((l) => /name=\S*sub/.test(l))
      .map((l) => l.replace(/^.*?(addr=\S+).*?(name=\S+).*?(sub=\d+ psub=\d+ ssub=\d+).*$/, '$1 $2 $3'));
    lines.push(`${node.port} ${role}: shardnumsub ${subs}; ${clients.join(' | ')}`);
  }
  return lines.join('\n');
}

/**
 * A Redis Cluster for the tests of one describe block (`cluster()`), and
 * `pair()`: a publishing and a subscribing broker on it, ready, closed after
 * the block (before the cluster stops).
 */
function onCluster(options: RedisClusterOptions): { cluster: () => RedisCluster; broker: () => Promise<RedisBroker>; pair: () => Promise<[RedisBroker, RedisBroker]> } {
  const brokers: RedisBroker[] = [];
  let cluster: RedisCluster | undefined;
  before(async () => {
    cluster = await RedisCluster.start(options);
  });
  after(async () => {
    for (const b of brokers) await b.close();
    await cluster?.dispose();
  });
  const broker = async (): Promise<RedisBroker> => {
    const b = new RedisBroker({ cluster: cluster!.urls, ...quiet });
    brokers.push(b);
    await b.ready();
    return b;
  };
  return { cluster: () => cluster!, broker, pair: async () => Promise.all([broker(), broker()]) };
}

describe('redis broker on Redis Cluster (3 masters)', () => {
  const { cluster: redis, broker, pair } = onCluster({ masters: 3 });

  it('every key of a channel (stream, history, idempotency, presence) is in its pub/sub name\'s slot', async () => {
    const cluster = redis();
    for (const channel of ['chat/room', 'a}b{c', 'x%7Dy', 'chat/deeper/still']) {
      const k = channelKeys('sb:', channel);
      const names = [k.pubsub, k.meta, k.history, k.idempotency('key-1'), k.presence, k.presenceExpiry, k.presenceUsers, k.presenceGone];
      const slots = new Set(await Promise.all(names.map((n) => cluster.keySlot(n))));
      assert.equal(slots.size, 1, `${channel}: ${names.join(' ')}`);
    }
  });

  it("the publishes of one tick reach their channels' masters in a few reads, not one each, and the subscriber in offset order", async () => {
    const cluster = redis();
    const [publisher, subscriber] = await pair();
    const got = recorder(subscriber);
    const shards = await channelsOnShards(cluster, 'tick', 2);
    for (const { channel } of shards) await subscriber.subscribe(channel);
    /** `total_reads_processed` of each master: how many reads from clients it handled so far. */
    const reads = async (): Promise<number[]> =>
      Promise.all(shards.map(async ({ port }) => Number(/total_reads_processed:(\d+)/.exec(await redisCli(port, 'INFO', 'stats'))![1])));
    await Promise.all(shards.map(({ channel }) => publisher.publish(channel, 'warm', H))); // scripts loaded, connections made
    const before = await reads();
    const n = 40;
    const results = await Promise.all(shards.flatMap(({ channel }) => Array.from({ length: n }, (_, i) => publisher.publish(channel, i, H))));
    const after = await reads();
    for (let k = 0; k < shards.length; k++) {
      // The publishes, this INFO's own read, and what the brokers send meanwhile (slot-map reads every 2 s,
      // probes): a few reads, where one per publish is 40.
      assert.ok(after[k]! - before[k]! <= n / 4, `master ${shards[k]!.port} read ${n} publishes of one tick in ${after[k]! - before[k]!} reads`);
    }
    for (const [k, { channel }] of shards.entries()) {
      await until(() => (got.get(channel)?.length ?? 0) === n + 1, 5000, `${n + 1} on ${channel}`);
      assert.deepEqual(
        got.get(channel)!.slice(1).map((p) => [p.offset, p.data]),
        results.slice(k * n, (k + 1) * n).map((r, i) => [r.offset, i]),
      );
    }
  });

  it('the probe goes through a shard subscription and back', async () => {
    const b = await broker();
    const rtt = await b.probe(5000);
    assert.ok(rtt > 0 && rtt < 5000, `a round trip in ms: ${rtt}`);
    assert.ok((await b.probe(5000)) > 0, 'and again, on the subscription kept');
  });

  it('patterns: a plain PUBLISH copy only for channels a pattern held on some node matches; the pattern node gets it once', async () => {
    const cluster = redis();
    const [publisher, subscriber] = await pair();
    const got = recorder(subscriber);
    /** Plain PUBLISH calls on every master so far (commandstats count the commands scripts run). */
    const plainPublishes = async (): Promise<number> => {
      let calls = 0;
      for (const node of cluster.nodes) calls += Number(/cmdstat_publish:calls=(\d+)/.exec(await redisCli(node.port, 'INFO', 'commandstats'))?.[1] ?? 0);
      return calls;
    };
    await subscriber.subscribe('pat/+');
    const before = await plainPublishes();
    for (let i = 1; i <= 5; i++) await publisher.publish(`other/${i}`, i, H); // matched by no pattern: sharded only
    assert.equal(await plainPublishes(), before, 'no plain copy for channels no pattern matches');
    await publisher.publish('pat/x', 'matched', H);
    assert.equal(await plainPublishes(), before + 1, 'one plain copy for a channel a pattern matches');
    await until(() => got.get('pat/x')?.length === 1, 5000, 'the pattern delivery');
    await sleep(100);
    assert.deepEqual([...got.keys()], ['pat/x']);
  });

  it('issue #10: once a pattern subscribe resolved, a publication made right after on any other node reaches it (40 rounds, fresh patterns)', async () => {
    const [a, b] = await pair();
    const c = await broker();
    const got = new Map<string, number>();
    const count = (channel: string): void => void got.set(channel, (got.get(channel) ?? 0) + 1);
    a.setHandler({ onPublication: (pub) => count(pub.channel), onJoin: (channel) => count(channel), onLeave: () => {} });
    const rounds = 40;
    for (let i = 0; i < rounds; i++) {
      await a.subscribe(`rc${i}/+`);
      // No turn of the event loop in between: b and c decide about the plain copy now.
      await Promise.all([b.publish(`rc${i}/b`, i), c.publish(`rc${i}/c`, i), b.publishPresence(`rc${i}/p`, 'join', { client: `c${i}`, user: 'u' })]);
    }
    const expected = Array.from({ length: rounds }, (_, i) => [`rc${i}/b`, `rc${i}/c`, `rc${i}/p`]).flat();
    await until(() => expected.every((ch) => got.has(ch)), 10_000, `3 × ${rounds} events at the pattern node`).catch((err: Error) => {
      throw new Error(`${err.message}; missing: ${expected.filter((ch) => !got.has(ch)).join(' ')}`);
    });
    await sleep(100);
    assert.deepEqual(expected.filter((ch) => got.get(ch) !== 1), [], 'each once');
  });

  it('issue #10: a node that just started knows the registered patterns before its first publish', async () => {
    const a = await broker();
    const got = recorder(a);
    await a.subscribe('fresh/+');
    for (let i = 0; i < 5; i++) {
      const b = await broker(); // ready(), then at once a publish
      await b.publish(`fresh/${i}`, i);
    }
    await until(() => got.size === 5, 10_000, `5 publications from 5 new nodes (have ${[...got.keys()].join(' ')})`);
  });

  it('issue #10: a listed node that never confirms a new pattern is reported by id; the subscribe still resolves after the timeout', async () => {
    const cluster = redis();
    const errors: string[] = [];
    const a = new RedisBroker({ cluster: cluster.urls, patternTimeoutMs: 300, onError: (err) => errors.push(String(err)) });
    const b = await broker();
    // A "node" listening on a control channel that never answers (a stopped process looks the same to Redis).
    const name = 'sb:pc:silentnode1';
    const silent = new Redis((await cluster.masterOf(await cluster.keySlot(name))).port, '127.0.0.1');
    try {
      await a.ready();
      await silent.ssubscribe(name);
      const got = recorder(a);
      await a.subscribe('silent/+');
      await until(() => errors.some((e) => e.includes('silentnode1') && e.includes('silent/+')), 5000, `the silent node reported (${errors.join(' | ')})`);
      assert.ok(!errors.some((e) => e.includes(b.nodeId)), 'the live node confirmed');
      await b.publish('silent/x', 1);
      await until(() => got.get('silent/x')?.length === 1, 5000, 'the publication of the live node');
    } finally {
      silent.disconnect();
      await a.close();
    }
  });

  it('channels on three different shards: each delivered once, in order, to a node subscribed to all three', async () => {
    const cluster = redis();
    const [publisher, subscriber] = await pair();
    const got = recorder(subscriber);
    const channels = await channelsOnShards(cluster, 'shards', 3);
    for (const { channel } of channels) await subscriber.subscribe(channel);
    for (let i = 1; i <= 30; i++) {
      for (const { channel } of channels) assert.equal((await publisher.publish(channel, i, H)).offset, i);
    }
    for (const { channel } of channels) {
      await until(() => (got.get(channel)?.length ?? 0) >= 30, 5000, `30 on ${channel}`);
    }
    await sleep(100);
    for (const { channel } of channels) {
      assert.deepEqual(got.get(channel)!.map((p) => [p.offset, p.data]), Array.from({ length: 30 }, (_, i) => [i + 1, i + 1]), channel);
    }
  });

  it('a slot moved to another master while subscribed: publishes follow (MOVED), the subscriber gets what follows, same epoch', async () => {
    const cluster = redis();
    const [publisher, subscriber] = await pair();
    const got = recorder(subscriber);
    const [{ channel, slot, port }] = await channelsOnShards(cluster, 'moving', 1);
    await subscriber.subscribe(channel);
    const first = await publisher.publish(channel, 1, H);
    await until(() => got.get(channel)?.length === 1, 5000, 'the first');

    const to = cluster.nodes.find((n) => n.port !== port)!;
    await cluster.moveSlot(slot, to);
    assert.equal((await cluster.masterOf(slot)).port, to.port);

    for (let i = 2; i <= 10; i++) {
      const r = await settled(() => publisher.publish(channel, i, H));
      assert.deepEqual([r.offset, r.epoch], [i, first.epoch], 'the stream moved with its keys: offsets go on in the same epoch');
    }
    await until(() => got.get(channel)?.length === 10, 10_000, `all 10 at the subscriber (have ${got.get(channel)?.length})`);
    assert.deepEqual(got.get(channel)!.map((p) => p.data), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const h = await publisher.history(channel, { since: { offset: 1, epoch: first.epoch } });
    assert.deepEqual([h.recovered, h.publications.length], [true, 9]);
  });
});

describe('redis broker on Redis Cluster (3 masters): the whole cluster down and back', () => {
  const { cluster: redis, pair } = onCluster({ masters: 3 });

  it('publishes fail fast with RT_ERR_BROKER_UNAVAILABLE while it is down, and work again (and reach the subscriber) once it is back', async () => {
    const cluster = redis();
    const [publisher, subscriber] = await pair();
    const got = recorder(subscriber);
    const [{ channel }] = await channelsOnShards(cluster, 'down', 1);
    await subscriber.subscribe(channel);
    await publisher.publish(channel, 'before', H);
    await until(() => got.get(channel)?.length === 1, 5000, 'before');

    await Promise.all(cluster.nodes.map((n) => n.stop()));
    const started = Date.now();
    await assert.rejects(
      settled(async () => {
        // The first may still be in flight as the connections close; one of the next is refused.
        await publisher.publish(channel, 'during', H);
      }, 0).catch(async () => publisher.publish(channel, 'during', H)),
      (err: { code?: string }) => err.code === 'RT_ERR_BROKER_UNAVAILABLE',
    );
    assert.ok(Date.now() - started < 15_000, 'refused, not queued');
    assert.equal(publisher.available, false);

    // Same ports and node ids (nodes.conf): the cluster comes back, without its data (no persistence).
    await Promise.all(cluster.nodes.map((n) => n.startAgain()));
    await cluster.waitOk();
    // Retried with a key, as clients do: an attempt refused while the cluster settles may still have run.
    const back = await settled(() => publisher.publish(channel, 'after', { ...H, idempotencyKey: 'after-1' }), 30_000);
    assert.equal(back.offset, 1, `the data went with the servers: a new stream (${JSON.stringify(await publisher.history(channel))})`);
    await until(() => (got.get(channel) ?? []).some((p) => p.data === 'after'), 15_000, "'after' at the subscriber made before the outage");
    assert.deepEqual(got.get(channel)!.map((p) => p.data), ['before', 'after']);
  });
});

describe('redis broker on Redis Cluster (3 masters, a replica each): a master failover', () => {
  const { cluster: redis, pair } = onCluster({ masters: 3, replicas: 1 });

  it('CLUSTER FAILOVER: publishes work again on the new master, the subscriber gets them, the channel has a new epoch (recovered: false)', async () => {
    const cluster = redis();
    const [publisher, subscriber] = await pair();
    const got = recorder(subscriber);
    const [{ channel, slot }] = await channelsOnShards(cluster, 'failover', 1);
    await subscriber.subscribe(channel);
    let before = { offset: 0, epoch: '' };
    for (let i = 1; i <= 3; i++) before = await publisher.publish(channel, i, H);
    await until(() => got.get(channel)?.length === 3, 5000, 'three before the failover');

    await cluster.failover(slot);

    const next = await settled(() => publisher.publish(channel, 4, H));
    assert.notEqual(next.epoch, before.epoch, 'a promoted replica may have missed writes: a new epoch, never an offset reused in the old one');
    assert.equal(next.offset, 1);
    const h = await publisher.history(channel, { since: before });
    assert.equal(h.recovered, false);
    // The stream's epoch stays from now on (the script recorded the new master's replication id).
    assert.deepEqual([(await publisher.publish(channel, 5, H)).epoch, (await publisher.publish(channel, 6, H)).offset], [next.epoch, 3]);
    await until(() => (got.get(channel) ?? []).some((p) => p.data === 6), 15_000, 'the publications after the failover at the subscriber').catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await shardState(cluster, channel, got)}`);
    });
    const after = got.get(channel)!.filter((p) => p.epoch === next.epoch);
    assert.deepEqual(after.map((p) => [p.offset, p.data]), [[1, 4], [2, 5], [3, 6]], 'after the failover: each once, in order');
  });
});
