/**
 * Operations on connections across nodes (realtime/cluster-ops.ts), on three
 * real `switchboard serve` nodes over a real redis-server, then over a real
 * nats-server: `POST /api/disconnect` on node 1 closes a user's connections
 * on nodes 2 and 3 (4503); the admin UI of node 1 closes a connection on
 * node 3; unknown and malformed ids are 404 and 400; a node that stops
 * answering (SIGSTOP) is named in the answer (disconnect) or makes it 504
 * (close), and nothing crashes.
 */
import { after, before, describe, test } from 'node:test';
import { Cluster, CLUSTER_NAMESPACES, type ClusterBroker } from '../support/cluster.js';
import { NatsServer } from '../support/nats.js';
import { RedisServer } from '../support/redis.js';
import { closeAcrossNodes, disconnectAcrossNodes, stuckNode } from './scenarios.js';

/** The cluster config of these tests: the admin UI on (the API key logs in). */
const config = { namespaces: CLUSTER_NAMESPACES, admin: { enabled: true } };
/** Three nodes compile and start at once through tsx on a shared 2-core machine: a generous bound. */
const startTimeoutMs = 120_000;

/** The three scenarios on three nodes over one broker server (`start` starts it; `stop` stops it). */
function suite<S>(name: string, start: () => Promise<S>, broker: (server: S) => ClusterBroker, stop: (server: S) => Promise<void>): void {
  describe(name, () => {
    let server: S | undefined;
    let cluster: Cluster | undefined;
    before(async () => {
      server = await start();
      cluster = await Cluster.start({ broker: broker(server), config, startTimeoutMs });
    });
    after(async () => {
      await cluster?.stop();
      if (server !== undefined) await stop(server);
    });
    test(`${name}: POST /api/disconnect on node 1 closes the user on nodes 2 and 3 with 4503, and counts them`, async (t) => {
      await disconnectAcrossNodes(t, cluster!);
    });
    test(`${name}: node 1's admin UI closes a connection on node 3; unknown ids 404, malformed 400`, async (t) => {
      await closeAcrossNodes(t, cluster!);
    });
    test(`${name}: a node that stops answering is named unanswered (disconnect) or 504 (close); it catches up after`, async (t) => {
      await stuckNode(t, cluster!);
    });
  });
}

suite('redis', () => RedisServer.start(), (redis) => ({ type: 'redis', url: redis.url }), (redis) => redis.dispose());
suite('nats', () => NatsServer.start(), (nats) => ({ type: 'nats', servers: [nats.url] }), (nats) => nats.destroy());
