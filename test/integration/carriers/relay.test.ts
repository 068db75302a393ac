/**
 * Fallback sessions relayed between nodes (carriers/session-relay.ts), in
 * one process: two realtime servers on two peers of one MemoryBroker (two
 * nodes of one backend). A session opened on node A is used through node B
 * — message batches, polls, the SSE stream — and B's answers come from A.
 * Hostile session ids never reach the broker; an id naming no live node is
 * "session gone" (404) at once. (The same over Redis behind real proxies:
 * test/cluster/sessions.test.ts.)
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { MemoryBroker, MemoryPresenceStore } from '../../../src/brokers/memory/memory-broker.js';
import { openSession, poll, post, request, SseReader, startServer, type TestServer } from './helpers.js';

const CONFIG = {
  auth: { anonymous: true },
  namespaces: [{ prefix: 'chat', anonymousSubscribe: true, anonymousPublish: true }],
  fallbacks: { pollTimeoutMs: 2000 },
};

async function twoNodes(t: TestContext): Promise<{ a: TestServer; b: TestServer; brokerA: MemoryBroker; brokerB: MemoryBroker }> {
  const brokerA = new MemoryBroker();
  const brokerB = brokerA.peer();
  const presence = new MemoryPresenceStore();
  t.after(async () => {
    await brokerB.close();
    await brokerA.close();
    await presence.close();
  });
  const a = await startServer(t, { broker: brokerA, presence, config: CONFIG });
  const b = await startServer(t, { broker: brokerB, presence, config: CONFIG });
  return { a, b, brokerA, brokerB };
}

/** Poll `base` until a message matching `match` arrives (bounded); returns it and the last id. */
async function pollFor(base: string, id: string, ack: number, match: (m: any) => boolean): Promise<{ message: any; ack: number; node: string | null }> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const res = await poll(base, id, ack, 5000);
    assert.equal(res.status, 200, res.text);
    for (const entry of res.json().messages as Array<{ id: number; msg: any }>) {
      ack = entry.id;
      if (match(entry.msg)) return { message: entry.msg, ack, node: res.headers.get('x-switchboard-node') };
    }
  }
  throw new Error('no matching message within 10 s');
}

test('a long-polling session opened on node A is used through node B: batches and polls relayed, answers from A', async (t) => {
  const { a, b } = await twoNodes(t);
  const id = await openSession(t, a.base, 'poll');
  const nodeA = a.server.clusterNodeId;
  const nodeB = b.server.clusterNodeId;
  assert.notEqual(nodeA, nodeB);
  assert.ok(id.startsWith(`${nodeA}.`), `the session id names its node: ${id}`);

  const sent = await post(b.base, id, [{ op: 'sub', id: 1, channel: 'chat/relay' }]);
  assert.equal(sent.status, 204, sent.text);
  assert.equal(sent.headers.get('x-switchboard-node'), nodeB, 'node B took the batch');
  const ok = await pollFor(b.base, id, 0, (m) => m.op === 'ok' && m.id === 1);
  assert.equal(ok.node, nodeB);

  // A poll waiting on B for a publication made on A.
  const waiting = pollFor(b.base, id, ok.ack, (m) => m.op === 'msg');
  await new Promise((resolve) => setTimeout(resolve, 200));
  await a.server.publish('chat/relay', 'through the relay');
  const got = await waiting;
  assert.deepEqual([got.message.channel, got.message.data], ['chat/relay', 'through the relay']);
  // Node A holds the session (and its subscription); B holds nothing.
  assert.deepEqual([a.server.hub.subscriptionCount, b.server.hub.subscriptionCount], [1, 0]);

  // The client's publication through B reaches a subscriber on B's side too (a second session, on B).
  const id2 = await openSession(t, b.base, 'poll');
  assert.equal((await post(a.base, id2, [{ op: 'sub', id: 1, channel: 'chat/relay' }])).status, 204);
  const ok2 = await pollFor(a.base, id2, 0, (m) => m.op === 'ok');
  assert.equal((await post(b.base, id, [{ op: 'pub', id: 2, channel: 'chat/relay', data: 'from the poller' }])).status, 204);
  const seen = await pollFor(a.base, id2, ok2.ack, (m) => m.op === 'msg');
  assert.equal(seen.message.data, 'from the poller');

  // DELETE through B ends the session on A.
  assert.equal((await request(`${b.base}/rt/session/${id}`, { method: 'DELETE' })).status, 204);
  assert.equal((await poll(a.base, id, 0)).status, 404);
});

test('an SSE stream relayed from the node holding the session: events, Last-Event-ID resume, the end', async (t) => {
  const { a, b } = await twoNodes(t);
  const id = await openSession(t, b.base, 'sse');
  const stream = await SseReader.open(t, `${a.base}/rt/session/${id}/events`);
  assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/);
  assert.equal(stream.headers.get('x-switchboard-node'), a.server.clusterNodeId, 'node A took the stream');
  assert.equal((await post(a.base, id, [{ op: 'sub', id: 1, channel: 'chat/sse' }])).status, 204);
  const ok = JSON.parse((await stream.next(5000)).data);
  assert.deepEqual([ok.op, ok.id], ['ok', 1]);
  await b.server.publish('chat/sse', 'one');
  const one = await stream.next(5000);
  assert.equal(JSON.parse(one.data).data, 'one');
  await stream.close();
  // Reconnect (through A again) with Last-Event-ID: what came after it, nothing before.
  await b.server.publish('chat/sse', 'two');
  const again = await SseReader.open(t, `${a.base}/rt/session/${id}/events`, { 'Last-Event-ID': one.id });
  assert.equal(JSON.parse((await again.next(5000)).data).data, 'two');
  // The session ends on B: the relayed stream gets the close message and ends.
  assert.equal((await request(`${b.base}/rt/session/${id}`, { method: 'DELETE' })).status, 204);
  await again.end;
});

test('hostile session ids never reach the broker; an id naming no live node is 404 at once, a node that does not answer 404 after the relay timeout; the owner gone → 404', async (t) => {
  const { a, b, brokerA, brokerB } = await twoNodes(t);
  const sends: string[] = [];
  const send = brokerB.sendToNode.bind(brokerB);
  brokerB.sendToNode = (to: string, message: string) => {
    sends.push(to);
    // A node that the broker knows but that never answers (hung): the message is taken and lost.
    if (to === 'hung0000') return Promise.resolve(true);
    return send(to, message);
  };
  const nodeA = a.server.clusterNodeId;
  const hostile = [
    'x',
    'A'.repeat(5000),
    `${nodeA}.short`,
    `${nodeA.toUpperCase()}.${'A'.repeat(22)}`,
    `${nodeA}.${'A'.repeat(21)}*`,
    '..%2F..%2Fetc',
    '%00',
    `${'z'.repeat(33)}.${'A'.repeat(22)}`,
    `sb:n:${nodeA}`,
  ];
  for (const id of hostile) {
    for (const path of [`/rt/session/${id}/poll`, `/rt/session/${id}/events`]) {
      const res = await request(`${b.base}${path}`);
      assert.equal(res.status, 404, `${path}: ${res.text}`);
    }
    const res = await post(b.base, id, [{ op: 'ping' }]);
    assert.equal(res.status, 404, `POST ${id.slice(0, 40)}: ${res.text}`);
  }
  assert.deepEqual(sends, [], 'no malformed id reached the broker');

  const nobody = `zzzz0000.${'A'.repeat(22)}`;
  const started = Date.now();
  const gone = await poll(b.base, nobody, 0);
  assert.equal(gone.status, 404);
  assert.equal(gone.json().error, 'no such session');
  assert.ok(Date.now() - started < 4000, 'answered without waiting for the relay timeout');
  assert.deepEqual(sends, ['zzzz0000']);

  // A node that takes the request but never acknowledges it: 404 after the relay timeout (5 s), not a hung request.
  const hung = await poll(b.base, `hung0000.${'A'.repeat(22)}`, 0, 15_000);
  assert.deepEqual([hung.status, hung.json().error], [404, 'no such session']);
  assert.match(hung.json().reason, /does not answer/);

  // The owner node goes away (its broker node closes, as a dead process's connection would): its session is gone for B.
  const id = await openSession(t, a.base, 'poll');
  assert.equal((await poll(b.base, id, 0, 5000)).status, 200);
  await a.server.close();
  await brokerA.close();
  const after = await poll(b.base, id, 0);
  assert.deepEqual([after.status, after.json().error], [404, 'no such session']);
  assert.equal(b.server.hub.subscriptionCount, 0);
});
