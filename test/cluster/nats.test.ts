/**
 * Three `switchboard serve` nodes on one real nats-server with JetStream (a
 * file store): fan-out, patterns, history and presence, the HTTP API across
 * nodes; a node killed with SIGKILL while publications flow; NATS restarted
 * with the same store (clients resume with recovered: true) and with an
 * empty one (recovered: false); NATS down for 5 s and back.
 */
import { after, before, test } from 'node:test';
import { Cluster } from '../support/cluster.js';
import { NatsServer } from '../support/nats.js';
import { apiPublish, brokerOutage, fanOut, heal, historyAndPresence, killNode, leaveOnNodeDeath, resumeAfterBrokerRestart } from './scenarios.js';

let nats: NatsServer | undefined;
let cluster: Cluster | undefined;

before(async () => {
  nats = await NatsServer.start();
  cluster = await Cluster.start({ broker: { type: 'nats', servers: [nats.url] } });
});

after(async () => {
  await cluster?.stop();
  await nats?.destroy();
});

/** The cluster, whole again after a scenario that killed a node and failed before restarting it. */
async function nodes(): Promise<Cluster> {
  await heal(cluster!);
  return cluster!;
}

test('nats: publish on node 1 → subscribers on nodes 2 and 3 get every message once, in order; a pattern on node 3 too', async (t) => {
  await fanOut(t, await nodes());
});

test('nats: history and presence read from any node', async (t) => {
  await historyAndPresence(t, await nodes());
});

test('nats: /api/publish on node 3 reaches subscribers on nodes 1 and 2; its key is honoured on another node', async (t) => {
  await apiPublish(t, await nodes());
});

test('nats: kill -9 of node 2 while 200 publications/s with acks flow: its SDK clients resume on the others, 0 lost, 0 duplicated', async (t) => {
  await killNode(t, await nodes());
});

test('nats: kill -9 of node 2: its clients\' presence leave reaches the clients on nodes 1 and 3 within 15 s, once', async (t) => {
  await leaveOnNodeDeath(t, await nodes());
});

test('nats: restarted with the same file store → the same epoch, a client resuming on another node gets recovered: true', async (t) => {
  await resumeAfterBrokerRestart(
    t,
    await nodes(),
    async () => {
      await nats!.stop();
      await nats!.start();
    },
    true,
  );
});

test('nats: restarted with an empty store (JetStream lost its streams) → a new epoch, a client resuming on another node gets recovered: false', async (t) => {
  await resumeAfterBrokerRestart(
    t,
    await nodes(),
    async () => {
      await nats!.stop();
      await nats!.start({ fresh: true });
    },
    false,
  );
});

test('nats: down for 5 s and back: nodes stay up, /readyz 503 then 200, a publication meanwhile gets 503, everything works after', async (t) => {
  await brokerOutage(t, await nodes(), { stop: () => nats!.stop(), start: () => nats!.start() });
});
