/**
 * The broker conformance suite (broker.suite.ts) for RedisBroker and
 * RedisPresenceStore against a real redis-server (test/support/redis.ts),
 * with the cross-node tests: `peer()` is a second node on the same Redis.
 * Redis-specific rules (glob translation, epochs after data loss, outages)
 * are tested in test/unit/brokers/redis-*.test.ts.
 */
import { RedisBroker, RedisPresenceStore } from '../../src/brokers/redis/redis-broker.js';
import { RedisServer } from '../support/redis.js';
import { serverForSuite } from '../support/server-hooks.js';
import { runBrokerSuite, type BrokerNode } from './broker.suite.js';

const server = serverForSuite(() => RedisServer.start());

async function node(): Promise<BrokerNode> {
  const broker = new RedisBroker({ url: server().url });
  const presence = new RedisPresenceStore({ url: server().url });
  await broker.ready();
  return { broker, presence };
}

runBrokerSuite({
  name: 'redis',
  create: async () => ({ ...(await node()), peer: node }),
});
