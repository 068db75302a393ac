/**
 * The admin UI on a cluster of two real `switchboard serve` nodes over a real
 * redis-server: node 1's overview lists node 2 with its connections (from the
 * snapshots node 2's feed publishes to `sys/dashboard`, read through the
 * broker), a session cookie from node 1 is valid on node 2 (the key is derived
 * from the shared configuration), and a publication from node 1's admin UI
 * reaches a subscriber on node 2.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { adminLogin as login, Cluster, CLUSTER_NAMESPACES, CLUSTER_SECRET } from '../support/cluster.js';
import { RedisServer } from '../support/redis.js';
import { sleep } from '../support/wait.js';
import { RtClient } from '../integration/realtime/helpers-core.js';

let redis: RedisServer | undefined;
let cluster: Cluster | undefined;
const clients: RtClient[] = [];

before(async () => {
  redis = await RedisServer.start();
  cluster = await Cluster.start({
    broker: { type: 'redis', url: redis.url },
    nodes: 2,
    config: {
      namespaces: [...CLUSTER_NAMESPACES, { prefix: 'sys', history: { size: 120, ttlMs: 130_000 }, clientPublish: false }],
      // The API key logs in.
      admin: { enabled: true },
    },
  });
});

after(async () => {
  for (const c of clients) c.terminate();
  await cluster?.stop();
  await redis?.dispose();
});

async function client(url: string, user: string): Promise<RtClient> {
  const c = RtClient.create(url, { answerPings: true }); // the nodes ping every 5 s (clusterConfig)
  clients.push(c);
  await c.opened();
  await c.auth(user, { secret: CLUSTER_SECRET });
  return c;
}

test('cluster: node 1\'s admin UI lists node 2 with its connections, its cookie works on node 2, its publication reaches node 2', async () => {
  const [one, two] = [cluster!.node(1), cluster!.node(2)];
  await client(two.url, 'carol');
  const dave = await client(two.url, 'dave');
  await dave.ok('sub', { channel: 'chat/ops' });

  const admin = await login(one.base);
  type Node = { node: string; self: boolean; connections: { total: number; byTransport: Record<string, number> } };
  let nodes: Node[] = [];
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    nodes = (await (await fetch(`${one.base}/admin/api/overview`, { headers: { Cookie: admin.cookie } })).json()).nodes;
    if (nodes.some((n) => !n.self && n.connections.total === 2)) break;
    await sleep(200);
  }
  assert.deepEqual(
    nodes.map((n) => [n.self, n.connections.total, n.connections.byTransport]),
    [
      [true, 0, {}],
      [false, 2, { websocket: 2 }],
    ],
    JSON.stringify(nodes),
  );
  assert.equal(nodes[1]!.node, (await (await fetch(`${two.base}/admin/api/overview`, { headers: { Cookie: admin.cookie } })).json()).node, "node 1's cookie is valid on node 2");

  const res = await fetch(`${one.base}/admin/api/publish`, {
    method: 'POST',
    headers: { Cookie: admin.cookie, 'X-CSRF-Token': admin.csrf, 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel: 'chat/ops', data: { text: 'from node 1' } }),
  });
  assert.equal(res.status, 200);
  const [msg] = await dave.waitMessages('chat/ops', 1, 10_000);
  assert.deepEqual(msg!.data, { text: 'from node 1' });
});
