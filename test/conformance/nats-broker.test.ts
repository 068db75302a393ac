/**
 * The broker conformance suite (broker.suite.ts) for NatsBroker and
 * NatsPresenceStore against a real nats-server (JetStream, file store; see
 * test/support/nats.ts), cross-node tests included: `peer()` is a second
 * broker and store on their own connections to the same server, as a
 * second node process would be. One server for the whole file; each test
 * uses channels under its own prefix. No injected clock: TTLs are slept.
 */
import { NatsBroker, NatsPresenceStore } from '../../src/brokers/nats/nats-broker.js';
import { NatsServer } from '../support/nats.js';
import { serverForSuite } from '../support/server-hooks.js';
import { runBrokerSuite, type BrokerNode } from './broker.suite.js';

const server = serverForSuite(() => NatsServer.start());

async function node(): Promise<BrokerNode> {
  const [broker, presence] = await Promise.all([NatsBroker.connect({ servers: server().url }), NatsPresenceStore.connect({ servers: server().url })]);
  return { broker, presence };
}

runBrokerSuite({
  name: 'nats',
  create: async () => ({ ...(await node()), peer: node }),
});
