/**
 * Operations across nodes (realtime/cluster-ops.ts) in one process: three
 * realtime servers on three peers of one MemoryBroker (three nodes of one
 * backend). The library calls `RealtimeServer#disconnectUser` and
 * `#closeConnection`, their refusals (`NodeOpError` with the HTTP status),
 * a node that does not answer (counted unanswered), a node that closed (not
 * counted, not waited for), and hostile node messages (dropped, logged, the
 * node keeps serving). The same over real Redis and NATS nodes:
 * test/cluster/node-ops.test.ts.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { MemoryBroker, MemoryPresenceStore } from '../../../src/brokers/memory/memory-broker.js';
import { NodeOpError } from '../../../src/server/index.js';
import { api, connectAs, startServer, type RtClient, type TestServer } from './helpers.js';

async function threeNodes(t: TestContext): Promise<{ nodes: TestServer[]; brokers: MemoryBroker[] }> {
  const first = new MemoryBroker();
  const brokers = [first, first.peer(), first.peer()];
  const presence = new MemoryPresenceStore();
  t.after(async () => {
    for (const b of brokers.reverse()) await b.close().catch(() => {});
    await presence.close();
  });
  const nodes: TestServer[] = [];
  for (const broker of brokers) nodes.push(await startServer(t, { broker, presence }));
  return { nodes, brokers };
}

function nodeOf(client: RtClient): string {
  return client.clientId!.slice(0, client.clientId!.indexOf('.'));
}

test('library: realtime.disconnectUser() on node 1 closes the user on nodes 2 and 3 (4503), counts them, leaves the others', async (t) => {
  const { nodes } = await threeNodes(t);
  const [one, two, three] = nodes as [TestServer, TestServer, TestServer];
  const a2 = await connectAs(t, two.url, 'alice');
  const a3 = await connectAs(t, three.url, 'alice');
  const a3b = await connectAs(t, three.url, 'alice');
  const bob = await connectAs(t, three.url, 'bob');
  assert.equal(nodeOf(a2), two.server.clusterNodeId, 'a connection id names its node');
  assert.equal(nodeOf(a3), three.server.clusterNodeId);

  const result = await one.server.disconnectUser('alice');
  assert.equal(result.disconnected, 3);
  assert.equal(result.nodes[0], one.server.clusterNodeId);
  assert.deepEqual([...result.nodes].sort(), nodes.map((n) => n.server.clusterNodeId).sort());
  assert.deepEqual(result.unanswered, []);
  for (const c of [a2, a3, a3b]) assert.equal((await c.closeOf(5000)).code, 4503);
  await bob.ok('sub', { channel: 'chat/still-here' });

  const custom = await connectAs(t, two.url, 'carol');
  const r = await three.server.disconnectUser('carol', { code: 4601, reason: 'account suspended' });
  assert.equal(r.disconnected, 1);
  assert.deepEqual(await custom.closeOf(5000), { code: 4601, reason: 'account suspended' });

  // The hub's own call stays this node's alone.
  const dave2 = await connectAs(t, two.url, 'dave');
  assert.equal(one.server.hub.disconnectUser('dave'), 0);
  assert.equal(dave2.closeCode, null);
});

test('library: realtime.closeConnection() closes a connection on its node; unknown ids, malformed ids and bad options are refused precisely', async (t) => {
  const { nodes } = await threeNodes(t);
  const [one, two, three] = nodes as [TestServer, TestServer, TestServer];
  const bob = await connectAs(t, three.url, 'bob');
  const carol = await connectAs(t, three.url, 'carol');
  const local = await connectAs(t, one.url, 'erin');

  assert.deepEqual(await one.server.closeConnection(bob.clientId!), { id: bob.clientId, node: three.server.clusterNodeId, closed: true });
  assert.equal((await bob.closeOf(5000)).code, 4503);
  assert.equal(carol.closeCode, null);
  assert.deepEqual(await two.server.closeConnection(local.clientId!), { id: local.clientId, node: one.server.clusterNodeId, closed: true }, 'from another node, to node 1');
  assert.equal((await local.closeOf(5000)).code, 4503);

  assert.deepEqual(await one.server.closeConnection(bob.clientId!), { id: bob.clientId, node: three.server.clusterNodeId, closed: false, reason: 'no such connection' });
  assert.deepEqual(await one.server.closeConnection('zz9nobody.0-1-abc'), { id: 'zz9nobody.0-1-abc', node: 'zz9nobody', closed: false, reason: 'its node is not in the cluster' });
  const refused = async (call: Promise<unknown>, status: number, code: string) => {
    await assert.rejects(call, (err: unknown) => err instanceof NodeOpError && err.status === status && err.code === code);
  };
  for (const id of ['', 'hello', 'UP.per', `${three.server.clusterNodeId}.`, 'a.b', '../x', 'x'.repeat(10_000)]) {
    await refused(one.server.closeConnection(id), 400, 'RT_ERR_BAD_CONNECTION_ID');
  }
  await refused(one.server.closeConnection(carol.clientId!, { code: 1000 }), 400, 'RT_ERR_BAD_REQUEST');
  await refused(one.server.closeConnection(carol.clientId!, { reason: 'é'.repeat(100) }), 400, 'RT_ERR_BAD_REQUEST');
  await refused(one.server.disconnectUser('carol', { timeoutMs: 5 }), 400, 'RT_ERR_BAD_REQUEST');
  await refused(one.server.disconnectUser(''), 400, 'RT_ERR_BAD_REQUEST');
  assert.equal(carol.closeCode, null, 'nothing refused closed anything');

  // Through the HTTP API of node 2: the same, as statuses.
  const viaApi = await api(two.base, '/api/close', { id: carol.clientId });
  assert.equal(viaApi.status, 200, viaApi.text);
  assert.equal((await carol.closeOf(5000)).code, 4503);
  assert.equal((await api(two.base, '/api/close', { id: carol.clientId })).status, 404);
  assert.equal((await api(two.base, '/api/close', { id: 'zz9nobody.0-1-abc' })).status, 404);
  assert.equal((await api(two.base, '/api/close', { id: 'nonsense' })).status, 400);
  assert.equal((await api(two.base, '/api/close', {})).status, 400);
  assert.equal((await api(two.base, '/api/disconnect', { user: 'x', code: '4503' })).status, 400);
});

test('a node that does not answer is named unanswered within the timeout; a closed node is neither counted nor waited for', async (t) => {
  const { nodes, brokers } = await threeNodes(t);
  const [one, two, three] = nodes as [TestServer, TestServer, TestServer];
  const f2 = await connectAs(t, two.url, 'frank');
  await connectAs(t, three.url, 'frank');
  // Node 3 still listens (the broker lists it) but its questions go nowhere: as a node whose event loop is stuck.
  await brokers[2]!.listenNodes(() => {});
  const started = Date.now();
  const result = await one.server.disconnectUser('frank', { timeoutMs: 300 });
  assert.ok(Date.now() - started < 3000, 'answered within about the timeout');
  assert.deepEqual([result.disconnected, result.unanswered], [1, [three.server.clusterNodeId]]);
  assert.equal((await f2.closeOf(5000)).code, 4503);
  assert.ok(one.logs.some((l) => String(l.msg).includes('did not answer') && JSON.stringify(l.unanswered) === JSON.stringify([three.server.clusterNodeId])), 'a warning names it');
  const id = `${three.server.clusterNodeId}.0-0-abcdef`;
  await assert.rejects(one.server.closeConnection(id, { timeoutMs: 300 }), (err: unknown) => err instanceof NodeOpError && err.status === 504);

  // Node 2 goes away (its broker closes, as a process that died): not counted, not waited for.
  await two.server.close();
  await brokers[1]!.close();
  const after = await one.server.disconnectUser('frank', { timeoutMs: 300 });
  assert.ok(!after.nodes.includes(two.server.clusterNodeId) && !after.unanswered.includes(two.server.clusterNodeId), JSON.stringify(after));
  const gone = await one.server.closeConnection(`${two.server.clusterNodeId}.0-0-abcdef`);
  assert.equal(gone.reason, 'its node is not in the cluster');
});

test('hostile node messages are dropped with a log line; the node keeps serving', async (t) => {
  const { nodes, brokers } = await threeNodes(t);
  const [one, two] = nodes as [TestServer, TestServer];
  const attacker = brokers[2]!;
  const to = one.server.clusterNodeId;
  const from = attacker.nodeId;
  const gina = await connectAs(t, one.url, 'gina');
  for (const message of [
    'not json',
    '[]',
    'null',
    '{"t":"ask"}',
    `{"t":"ask","f":"BAD ID"}`,
    `{"t":"nonsense","f":"${from}"}`,
    `{"t":"ask","f":"${from}","r":1,"k":"disconnect"}`,
    `{"t":"ask","f":"${from}","r":2,"k":"disconnect","u":{"$gt":""}}`,
    `{"t":"ask","f":"${from}","r":3,"k":"close","i":42}`,
    `{"t":"ask","f":"${from}","r":4,"k":"reboot"}`,
    `{"t":"answer","f":"${from}","r":999999}`,
    `{"t":"op","f":"${from}"}`,
    `{"t":"ask","f":"${from}","r":5,"k":"disconnect","u":"gina","c":1000,"rs":"x"}`,
  ]) {
    assert.equal(await attacker.sendToNode(to, message), true);
  }
  // The last one was a real request with a bad close code: done with the default (4503) instead.
  assert.equal((await gina.closeOf(5000)).code, 4503);
  assert.ok(one.logs.some((l) => String(l.msg).includes('not JSON')));
  assert.ok(one.logs.some((l) => String(l.msg).includes('does not know')));
  const still = await connectAs(t, one.url, 'henry');
  await still.ok('sub', { channel: 'chat/alive' });
  assert.equal((await two.server.disconnectUser('henry')).disconnected, 1, 'node 1 still answers questions');
});
