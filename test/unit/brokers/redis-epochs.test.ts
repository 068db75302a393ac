/**
 * Epochs of the Redis broker after Redis lost (or kept) its data, on real
 * redis-servers: an offset is never reused inside an epoch, and resuming is
 * `recovered: true` only when nothing was lost.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import type { HistoryResult } from '../../../src/brokers/broker.js';
import { RedisBroker } from '../../../src/brokers/redis/redis-broker.js';
import { RedisServer } from '../../support/redis.js';
import { retrying, sleep } from '../../support/wait.js';

const H = { history: { size: 100, ttlMs: 0 } };

/** Retry `fn` while it rejects RT_ERR_BROKER_UNAVAILABLE (the broker reconnecting), for at most `ms`. */
function whenBack<T>(fn: () => Promise<T>, ms = 10_000): Promise<T> {
  return retrying(fn, ms, (err) => (err as { code?: string }).code === 'RT_ERR_BROKER_UNAVAILABLE');
}

const quiet = { onError: () => {} };

describe('redis broker epochs', () => {
  const servers: RedisServer[] = [];
  const brokers: RedisBroker[] = [];
  const clients: Redis[] = [];
  after(async () => {
    for (const b of brokers) await b.close();
    for (const c of clients) c.disconnect();
    for (const s of servers) await s.dispose();
  });

  async function setup(options: { appendOnly?: boolean } = {}): Promise<{ server: RedisServer; broker: RedisBroker }> {
    const server = await RedisServer.start(options);
    servers.push(server);
    const broker = new RedisBroker({ url: server.url, ...quiet });
    brokers.push(broker);
    await broker.ready();
    return { server, broker };
  }

  async function publishThree(broker: RedisBroker): Promise<string> {
    let epoch = '';
    for (let i = 1; i <= 3; i++) epoch = (await broker.publish('room', i, H)).epoch;
    return epoch;
  }

  it('a restart without persistence: a new epoch, recovered false, offsets from 1', async () => {
    const { server, broker } = await setup();
    const epoch = await publishThree(broker);
    await server.restart();
    const h: HistoryResult = await whenBack(() => broker.history('room', { since: { offset: 3, epoch } }));
    assert.equal(h.recovered, false);
    assert.notEqual(h.position.epoch, epoch);
    assert.equal(h.position.offset, 0);
    const next = await broker.publish('room', 4, H);
    assert.deepEqual(next, { offset: 1, epoch: h.position.epoch, duplicate: false });
  });

  it('a restart with AOF (appendfsync always): the same epoch, recovered true', async () => {
    const { server, broker } = await setup({ appendOnly: true });
    const epoch = await publishThree(broker);
    await server.restart();
    const h = await whenBack(() => broker.history('room', { since: { offset: 1, epoch } }));
    assert.equal(h.recovered, true);
    assert.deepEqual(h.position, { offset: 3, epoch });
    assert.deepEqual(
      h.publications.map((p) => p.data),
      [2, 3],
    );
    assert.deepEqual(await broker.publish('room', 4, H), { offset: 4, epoch, duplicate: false });
  });

  it('FLUSHALL: a new epoch, recovered false, offsets from 1', async () => {
    const { server, broker } = await setup();
    const epoch = await publishThree(broker);
    const admin = new Redis(server.url);
    clients.push(admin);
    await admin.flushall();
    const h = await broker.history('room', { since: { offset: 3, epoch } });
    assert.equal(h.recovered, false);
    assert.notEqual(h.position.epoch, epoch);
    const next = await broker.publish('room', 4, H);
    assert.equal(next.offset, 1);
    assert.notEqual(next.epoch, epoch);
  });

  it('a promoted replica (failover): the instance id is bumped, every channel gets a new epoch', async () => {
    const { server: master, broker } = await setup();
    const epoch = await publishThree(broker);
    const replica = await RedisServer.start({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
    servers.push(replica);
    const admin = new Redis(replica.url);
    clients.push(admin);
    // Wait until the replica has the stream (it is behind otherwise).
    const deadline = Date.now() + 10_000;
    while ((await admin.exists('sb:{room}:s')) === 0) {
      assert.ok(Date.now() < deadline, 'the replica did not sync');
      await sleep(50);
    }
    await master.stop();
    await admin.replicaof('NO', 'ONE');
    const after = new RedisBroker({ url: replica.url, ...quiet });
    brokers.push(after);
    await after.ready();
    const h = await after.history('room', { since: { offset: 3, epoch } });
    assert.equal(h.recovered, false, 'the promoted replica may have missed writes: nothing resumes in the old epoch');
    assert.notEqual(h.position.epoch, epoch);
    assert.equal((await after.publish('room', 4, H)).offset, 1);
    // A second node connecting later does not bump again: the epoch stays.
    const third = new RedisBroker({ url: replica.url, ...quiet });
    brokers.push(third);
    await third.ready();
    assert.deepEqual((await third.history('room')).position, { offset: 1, epoch: h.position.epoch });
  });
});
