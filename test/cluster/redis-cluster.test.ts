/**
 * Three `switchboard serve` nodes on a real Redis Cluster of three masters
 * (`broker: {type: redis, cluster: [...]}`, sharded pub/sub): the shared
 * scenarios of redis.test.ts (fan-out and a pattern across nodes, history
 * and presence from any node, the HTTP API, kill -9 of a node under load),
 * plus channels that land on three different shards (checked with CLUSTER
 * KEYSLOT) published on node 1 and received on nodes 2 and 3 once and in
 * order, and a client resuming with its positions on another node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { channelKeys } from '../../src/brokers/redis/keys.js';
import { RedisCluster } from '../support/redis.js';
import { clusterForSuite } from '../support/server-hooks.js';
import { sleep } from '../support/wait.js';
import { apiPublish, channel, fanOut, historyAndPresence, killNode, rt } from './scenarios.js';

const { broker, nodes } = clusterForSuite(
  () => RedisCluster.start({ masters: 3 }),
  (redis) => ({ type: 'redis', cluster: redis.urls }),
);

/** Three channels (`chat/…`) served by three different masters. */
async function onThreeShards(): Promise<string[]> {
  const byMaster = new Map<number, string>();
  for (let i = 0; byMaster.size < 3 && i < 200; i++) {
    const ch = channel(`shard${i}`);
    const master = await broker().masterOf(await broker().keySlot(channelKeys('sb:', ch).pubsub));
    if (!byMaster.has(master.port)) byMaster.set(master.port, ch);
  }
  assert.equal(byMaster.size, 3, 'channels on three masters');
  return [...byMaster.values()];
}

test('redis cluster: publish on node 1 → subscribers on nodes 2 and 3 get every message once, in order; a pattern on node 3 too', async (t) => {
  await fanOut(t, await nodes());
});

test('redis cluster: channels on three different shards, published on node 1: each reaches nodes 2 and 3 once, in order', async (t) => {
  const c = await nodes();
  const channels = await onThreeShards();
  const [publisher, sub2, sub3] = await Promise.all([rt(t, c, c.node(1), 'publisher'), rt(t, c, c.node(2), 'sub2'), rt(t, c, c.node(3), 'sub3')]);
  for (const ch of channels) {
    await sub2.ok('sub', { channel: ch });
    await sub3.ok('sub', { channel: ch });
  }
  const n = 50;
  for (let i = 1; i <= n; i++) {
    await Promise.all(channels.map((ch) => publisher.ok('pub', { channel: ch, data: i }, 10_000)));
  }
  const want = Array.from({ length: n }, (_, i) => [i + 1, i + 1]);
  for (const client of [sub2, sub3]) {
    for (const ch of channels) await client.waitMessages(ch, n, 10_000);
  }
  await sleep(200);
  for (const [name, client] of [['node 2', sub2], ['node 3', sub3]] as const) {
    for (const ch of channels) {
      assert.deepEqual(client.messages(ch).map((m) => [m.offset, m.data]), want, `${name}, ${ch}: every message once, in offset order`);
    }
  }
});

test('redis cluster: a client resumes with its positions on another node: what it missed first, recovered, then live', async (t) => {
  const c = await nodes();
  const channels = await onThreeShards();
  const publisher = await rt(t, c, c.node(1), 'publisher');
  const first = await rt(t, c, c.node(2), 'reader');
  for (const ch of channels) await first.ok('sub', { channel: ch });
  for (let i = 1; i <= 3; i++) for (const ch of channels) await publisher.ok('pub', { channel: ch, data: i });
  const positions = new Map<string, { offset: number; epoch: string }>();
  for (const ch of channels) {
    const last = (await first.waitMessages(ch, 3, 10_000))[2]!;
    positions.set(ch, { offset: last.offset as number, epoch: last.epoch as string });
  }
  first.terminate();
  for (let i = 4; i <= 6; i++) for (const ch of channels) await publisher.ok('pub', { channel: ch, data: i });

  const again = await rt(t, c, c.node(3), 'reader');
  for (const ch of channels) {
    const ack = await again.ok('sub', { channel: ch, since: positions.get(ch) });
    assert.equal(ack.recovered, true, `${ch}: recovered`);
  }
  for (const ch of channels) await publisher.ok('pub', { channel: ch, data: 7 });
  for (const ch of channels) await again.waitMessages(ch, 4, 10_000);
  await sleep(200);
  for (const ch of channels) {
    assert.deepEqual(again.messages(ch).map((m) => [m.offset, m.data]), [[4, 4], [5, 5], [6, 6], [7, 7]], `${ch}: missed ones, then live, each once`);
  }
});

test('redis cluster: history and presence read from any node', async (t) => {
  await historyAndPresence(t, await nodes());
});

test('redis cluster: /api/publish on node 3 reaches subscribers on nodes 1 and 2; its key is honoured on another node', async (t) => {
  await apiPublish(t, await nodes());
});

test('redis cluster: kill -9 of node 2 while 200 publications/s with acks flow: its SDK clients resume on the others, 0 lost, 0 duplicated', async (t) => {
  await killNode(t, await nodes());
});
