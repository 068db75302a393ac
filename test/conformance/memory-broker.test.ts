/**
 * The broker conformance suite (broker.suite.ts) for MemoryBroker and
 * MemoryPresenceStore, twice: with an injected clock (exact TTL boundaries)
 * and with the real one (the path the Redis and NATS brokers take).
 * A second node is a `peer()` of the broker (the nodes share streams, each
 * has its own subscriptions and delivery) with a view of the same presence
 * store: in one process there is nothing else for a node to share.
 * Memory-specific rules are tested in test/unit/brokers/memory-broker.test.ts.
 */
import type { PresenceStore } from '../../src/brokers/broker.js';
import { MemoryBroker, MemoryPresenceStore } from '../../src/brokers/memory/memory-broker.js';
import { runBrokerSuite, type BrokerNode } from './broker.suite.js';

/** Another node's handle on the same store: closing it leaves the store to its owner. */
function sharedView(store: PresenceStore): PresenceStore {
  return {
    add: (channel, info) => store.add(channel, info),
    remove: (channel, client) => store.remove(channel, client),
    get: (channel) => store.get(channel),
    stats: (channel) => store.stats(channel),
    close: async () => {},
  };
}

function node(broker: MemoryBroker, presence: MemoryPresenceStore): BrokerNode & { peer(): Promise<BrokerNode> } {
  return { broker, presence, peer: async () => ({ broker: broker.peer(), presence: sharedView(presence) }) };
}

runBrokerSuite({
  name: 'memory, injected clock',
  create: async () => {
    let now = 1_700_000_000_000;
    return {
      ...node(new MemoryBroker({ now: () => now }), new MemoryPresenceStore()),
      advanceTime: (ms: number) => {
        now += ms;
      },
      clock: () => now,
    };
  },
});

runBrokerSuite({
  name: 'memory, real clock',
  create: async () => ({ ...node(new MemoryBroker(), new MemoryPresenceStore()), clock: Date.now }),
});
