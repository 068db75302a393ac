/**
 * The broker conformance suite (broker.suite.ts) for RedisBroker and
 * RedisPresenceStore against a real Redis Cluster of 3 masters
 * (test/support/redis.ts): sharded pub/sub (SSUBSCRIBE/SPUBLISH), scripts on
 * one slot each, patterns through the plain PUBLISH copy, node messages and
 * presence across nodes. The suite's channels are random, so they spread
 * over the three shards (test/cluster/redis-cluster.test.ts checks that on
 * purpose, with CLUSTER KEYSLOT).
 */
import { RedisBroker, RedisPresenceStore } from '../../src/brokers/redis/redis-broker.js';
import { RedisCluster } from '../support/redis.js';
import { serverForSuite } from '../support/server-hooks.js';
import { runBrokerSuite, type BrokerNode } from './broker.suite.js';

const cluster = serverForSuite(() => RedisCluster.start({ masters: 3 }));

async function node(): Promise<BrokerNode> {
  const broker = new RedisBroker({ cluster: cluster().urls });
  const presence = new RedisPresenceStore({ cluster: cluster().urls });
  await Promise.all([broker.ready(), presence.ready()]);
  return { broker, presence };
}

runBrokerSuite({
  name: 'redis cluster',
  create: async () => ({ ...(await node()), peer: node }),
});
