/**
 * Two `switchboard serve` nodes on Redis through Sentinel (`broker: {type:
 * redis, sentinels: [...], name}`), for real: a master, a replica and a
 * sentinel (`redis-server --sentinel`) on loopback. Publications on node 1
 * reach a subscriber on node 2; `SENTINEL FAILOVER` promotes the replica and
 * the nodes follow the sentinel to it: publishes work again, and the channel
 * continues in a new epoch (the promoted replica may have missed writes, so
 * no offset is handed out twice in one epoch; a client resuming from before
 * the failover gets `recovered: false`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RedisSentinelGroup, redisCli } from '../support/redis.js';
import { clusterForSuite } from '../support/server-hooks.js';
import { sleep } from '../support/wait.js';
import { channel, rt } from './scenarios.js';

const { broker, nodes } = clusterForSuite(
  () => RedisSentinelGroup.start('mymaster'),
  (group) => ({ type: 'redis', sentinels: [`127.0.0.1:${group.sentinel.port}`], name: 'mymaster' }),
  { nodes: 2 },
);

test('redis sentinel: publish on node 1 reaches node 2; SENTINEL FAILOVER → the nodes follow, publishes work again in a new epoch, resuming from before is recovered: false', async (t) => {
  const c = await nodes();
  const { sentinel, replica } = broker();
  const ch = channel('sentinel');
  const [publisher, subscriber] = await Promise.all([rt(t, c, c.node(1), 'publisher'), rt(t, c, c.node(2), 'subscriber')]);
  await subscriber.ok('sub', { channel: ch });
  let last = { offset: 0, epoch: '' };
  for (let i = 1; i <= 3; i++) {
    const ack = await publisher.ok('pub', { channel: ch, data: i });
    assert.equal(ack.offset, i);
    last = { offset: ack.offset as number, epoch: ack.epoch as string };
  }
  await subscriber.waitMessages(ch, 3, 5000);

  const promoted = await sentinel.failover();
  assert.equal(promoted, replica.port, 'the sentinel names the replica as master');
  // The old master takes writes until the nodes follow the sentinel (its +switch-master) or it is
  // demoted: Sentinel's split-brain window, where a publication is acknowledged in the old epoch and
  // goes with the old master's data. The rule tested here is for what the new master hands out.
  await waitClients(promoted, { 'switchboard-cmd': 2, 'switchboard-sub': 2 }, 20_000);

  // Publications while the nodes move to the new master may get 503; then they work again.
  const deadline = Date.now() + 20_000;
  let after: Record<string, unknown> | undefined;
  while (after === undefined) {
    const reply = await publisher.request('pub', { channel: ch, data: 'after' }, 10_000);
    if (reply.op === 'ok') after = reply;
    else {
      assert.equal(reply.code, 503, `a publication during the failover: ${JSON.stringify(reply)}`);
      assert.ok(Date.now() < deadline, 'publishes work again within 20 s of the failover');
      await sleep(200);
    }
  }
  assert.notEqual(after.epoch, last.epoch, 'a new epoch on the promoted replica: no offset of the old epoch is handed out again');
  assert.equal(after.offset, 1);
  await subscriber.waitFor((m) => m.op === 'msg' && m.channel === ch && m.data === 'after', 15_000, "'after' at node 2, through the new master");
  assert.deepEqual(
    subscriber.messages(ch).map((m) => m.data),
    [1, 2, 3, 'after'],
    'each once',
  );

  // A client that resumes from the position it had before the failover is told it was not recovered.
  const resumer = await rt(t, c, c.node(2), 'resumer');
  const ack = await resumer.ok('sub', { channel: ch, since: last });
  assert.equal(ack.recovered, false);
  assert.deepEqual(ack.position, { offset: 1, epoch: after.epoch });
  // And the stream goes on in the new epoch.
  const next = await publisher.ok('pub', { channel: ch, data: 'next' });
  assert.deepEqual([next.offset, next.epoch], [2, after.epoch]);
});

/** Wait (bounded) until the Redis on `port` has at least this many connections of each name (`CLIENT SETNAME`). */
async function waitClients(port: number, want: Record<string, number>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = await redisCli(port, 'CLIENT', 'LIST').catch(() => '');
    const names = [...list.matchAll(/\bname=(\S*)/g)].map((m) => m[1]);
    if (Object.entries(want).every(([name, count]) => names.filter((n) => n === name).length >= count)) return;
    if (Date.now() > deadline) throw new Error(`the nodes did not follow to the new master within ${timeoutMs} ms (${JSON.stringify(want)}); CLIENT LIST:\n${list}`);
    await sleep(100);
  }
}
