/**
 * The publishes a node makes in one tick (a run of `pub`s) go to Redis in one
 * write (Link#holdWritesForTick), so Redis reads them at once and another
 * node receives their publications together: one batch for its fan-out, one
 * write per subscriber socket. Against a real redis-server.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Publication } from '../../../src/brokers/broker.js';
import { RedisBroker } from '../../../src/brokers/redis/redis-broker.js';
import { redisCli, RedisServer } from '../../support/redis.js';
import { serverForSuite } from '../../support/server-hooks.js';
import { until } from '../../support/wait.js';

/** `total_reads_processed` of INFO stats: how many reads from clients Redis handled so far. */
async function readsProcessed(port: number): Promise<number> {
  const m = /total_reads_processed:(\d+)/.exec(await redisCli(port, 'INFO', 'stats'));
  assert.ok(m, 'INFO stats has total_reads_processed');
  return Number(m[1]);
}

describe('redis broker: the publishes of one tick', () => {
  const server = serverForSuite(() => RedisServer.start());

  it('reach Redis in one read and another node in one tick, in offset order', async () => {
    const publisher = new RedisBroker({ url: server().url });
    const receiver = new RedisBroker({ url: server().url });
    publisher.setHandler({ onPublication() {}, onJoin() {}, onLeave() {} });
    const got: Array<{ pub: Publication; tick: number }> = [];
    let tick = 0;
    let counting = false;
    const nextTick = (): void => {
      tick++;
      counting = false;
    };
    receiver.setHandler({
      onPublication: (pub) => {
        if (!counting) {
          counting = true;
          process.nextTick(nextTick);
        }
        got.push({ pub, tick });
      },
      onJoin() {},
      onLeave() {},
    });
    try {
      await Promise.all([publisher.ready(), receiver.ready()]);
      await receiver.subscribe('run/a');
      const port = Number(new URL(server().url).port);
      const n = 50;
      const before = await readsProcessed(port);
      const results = await Promise.all(Array.from({ length: n }, (_, i) => publisher.publish('run/a', i, { history: { size: 100, ttlMs: 0 } })));
      await until(() => got.length === n, 5000, `${n} deliveries`);
      // The publishes, plus this INFO's own read: not one read per publish.
      const reads = (await readsProcessed(port)) - before;
      assert.ok(reads <= 3, `Redis read ${n} publishes made in one tick in ${reads} reads`);
      assert.deepEqual(
        got.map((g) => g.pub.data),
        Array.from({ length: n }, (_, i) => i),
      );
      assert.deepEqual(
        got.map((g) => g.pub.offset),
        results.map((r) => r.offset),
      );
      assert.equal(new Set(got.map((g) => g.tick)).size, 1, 'every publication reached the other node in the same tick');
    } finally {
      await Promise.all([publisher.close(), receiver.close()]);
    }
  });
});
