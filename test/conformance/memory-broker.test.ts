/**
 * The broker conformance suite (broker.suite.ts) for MemoryBroker and
 * MemoryPresenceStore, twice: with an injected clock (exact TTL boundaries)
 * and with the real one (the path the Redis and NATS brokers will take).
 * Memory-specific rules are tested in test/unit/brokers/memory-broker.test.ts.
 */
import { MemoryBroker, MemoryPresenceStore } from '../../src/brokers/memory/memory-broker.js';
import { runBrokerSuite, type BrokerSuiteSkip } from './broker.suite.js';

const skip: BrokerSuiteSkip[] = [
  {
    reason: 'a memory broker is one process: there is no backend for a second node to share',
    tests: ['a second node on the same backend sees publications and history', 'a second node on the same backend sees presence'],
  },
];

runBrokerSuite({
  name: 'memory, injected clock',
  create: async () => {
    let now = 1_700_000_000_000;
    return {
      broker: new MemoryBroker({ now: () => now }),
      presence: new MemoryPresenceStore(),
      advanceTime: (ms: number) => {
        now += ms;
      },
      clock: () => now,
    };
  },
  skip,
});

runBrokerSuite({
  name: 'memory, real clock',
  create: async () => ({ broker: new MemoryBroker(), presence: new MemoryPresenceStore(), clock: Date.now }),
  skip,
});
