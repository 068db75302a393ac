/**
 * Publication data through Redis is binary-safe (MessagePack in Buffers):
 * bytes, non-UTF-8 bytes, unicode channel names, the publisher's info, in
 * delivery and in history alike.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Publication } from '../../../src/brokers/broker.js';
import { RedisBroker } from '../../../src/brokers/redis/redis-broker.js';
import { RedisServer } from '../../support/redis.js';
import { serverForSuite } from '../../support/server-hooks.js';
import { until } from '../../support/wait.js';

describe('redis broker: data', () => {
  const server = serverForSuite(() => RedisServer.start());

  it('bytes (also invalid UTF-8, and colons) survive delivery and history', async () => {
    const broker = new RedisBroker({ url: server().url });
    const got: Publication[] = [];
    broker.setHandler({ onPublication: (p) => void got.push(p), onJoin() {}, onLeave() {} });
    try {
      await broker.ready();
      const channel = 'données/😀/a:b';
      await broker.subscribe(channel);
      const data = { bytes: new Uint8Array([0, 0x3a, 0xff, 0xfe, 0x80, 10, 13]), text: 'é:😀', n: [1.5, -2, 2 ** 53 - 1] };
      const from = { client: 'c:1', user: 'ü', info: { raw: new Uint8Array([0xc3, 0x28]) } };
      const r = await broker.publish(channel, data, { history: { size: 5, ttlMs: 60_000 }, from });
      await until(() => got.length === 1, 3000, 'the delivery');
      const want = { channel, offset: r.offset, epoch: r.epoch, data, from, time: got[0]!.time };
      assert.deepEqual(got[0], want);
      assert.deepEqual((await broker.history(channel)).publications, [want]);
    } finally {
      await broker.close();
    }
  });
});
