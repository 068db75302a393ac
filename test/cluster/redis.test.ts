/**
 * Three `switchboard serve` nodes on one real redis-server (no persistence):
 * fan-out, patterns, history and presence, the HTTP API across nodes; a node
 * killed with SIGKILL while publications flow; Redis restarted without
 * persistence (clients resume with recovered: false) and, on two more nodes,
 * with AOF (recovered: true); Redis down for 5 s and back.
 */
import { test } from 'node:test';
import { Cluster } from '../support/cluster.js';
import { RedisServer } from '../support/redis.js';
import { clusterForSuite } from '../support/server-hooks.js';
import { apiPublish, brokerOutage, fanOut, historyAndPresence, killNode, leaveOnNodeDeath, resumeAfterBrokerRestart } from './scenarios.js';

const { broker, nodes } = clusterForSuite(
  () => RedisServer.start(),
  (redis) => ({ type: 'redis', url: redis.url }),
);

test('redis: publish on node 1 → subscribers on nodes 2 and 3 get every message once, in order; a pattern on node 3 too', async (t) => {
  await fanOut(t, await nodes());
});

test('redis: history and presence read from any node', async (t) => {
  await historyAndPresence(t, await nodes());
});

test('redis: /api/publish on node 3 reaches subscribers on nodes 1 and 2; its key is honoured on another node', async (t) => {
  await apiPublish(t, await nodes());
});

test('redis: kill -9 of node 2 while 200 publications/s with acks flow: its SDK clients resume on the others, 0 lost, 0 duplicated', async (t) => {
  await killNode(t, await nodes());
});

test('redis: kill -9 of node 2: its clients\' presence leave reaches the clients on nodes 1 and 3 within 15 s, once', async (t) => {
  await leaveOnNodeDeath(t, await nodes());
});

test('redis: restarted without persistence → a new epoch, a client resuming on another node gets recovered: false', async (t) => {
  await resumeAfterBrokerRestart(t, await nodes(), () => broker().restart(), false);
});

test('redis: down for 5 s and back: nodes stay up, /readyz 503 then 200, a publication meanwhile gets 503, everything works after', async (t) => {
  await brokerOutage(t, await nodes(), { stop: () => broker().stop(), start: () => broker().startAgain() });
});

test('redis with AOF (appendfsync always): restarted → the same epoch, a client resuming on another node gets recovered: true', async (t) => {
  const aof = await RedisServer.start({ appendOnly: true });
  t.after(() => aof.dispose());
  const pair = await Cluster.start({ broker: { type: 'redis', url: aof.url }, nodes: 2 });
  t.after(() => pair.stop());
  await resumeAfterBrokerRestart(t, pair, () => aof.restart(), true);
});
