/**
 * The cluster scenarios that redis.test.ts and nats.test.ts both run against
 * three real `switchboard serve` nodes (test/support/cluster.ts) on their
 * broker. Behaviour only: what each client receives, counted by offsets;
 * never how fast. Every wait is bounded.
 *
 * Clients: the protocol client `RtClient` (exact replies and pushes) and the
 * SDK `Client` with a URL list of nodes (failover and resume).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { Client, type ClientOptions, type PublishResult, type SubscribedEvent, type Subscription } from '../../src/client/index.js';
import type { Publication } from '../../src/wire/messages.js';
import { WebSocket } from '../../src/index.js';
import { RtClient, type Message } from '../integration/realtime/helpers-core.js';
import { adminAction, adminLogin, httpRequest, type Cluster, type ClusterNode } from '../support/cluster.js';
import { sleep, until, within } from '../support/wait.js';

/** A channel name no other test uses (`chat/<what>-<random>`). */
export function channel(what: string): string {
  return `chat/${what}-${randomBytes(4).toString('hex')}`;
}

/** A protocol client on `node`, authenticated as `user`; terminated after the test. */
export async function rt(t: TestContext, cluster: Cluster, node: ClusterNode, user: string): Promise<RtClient> {
  // The nodes ping every 5 s and drop a connection that has not answered by the next round: answer, as the SDK does.
  const client = RtClient.create(node.url, { ignoreErrors: true, answerPings: true });
  t.after(() => client.terminate());
  await client.opened(5000);
  const reply = await client.ok('auth', { token: await cluster.token(user) }, 5000);
  client.clientId = reply.client as string;
  client.user = reply.user as string;
  return client;
}

/** An SDK client on a list of node URLs (it starts with the first), authenticated as `user`; closed after the test. */
export function sdk(t: TestContext, cluster: Cluster, urls: string[], user: string, options: ClientOptions = {}): Client {
  const client = new Client(urls, {
    WebSocket: WebSocket as unknown as NonNullable<ClientOptions['WebSocket']>,
    transports: ['websocket'],
    network: null,
    getToken: () => cluster.token(user),
    ...options,
    reconnect: { minDelayMs: 20, maxDelayMs: 300, ...options.reconnect },
  });
  t.after(() => client.close());
  return client;
}

/** The `msg` pushes of `client` on `ch`, as [offset, data]. */
function received(client: RtClient, ch: string): Array<[number, unknown]> {
  return client.messages(ch).map((m: Message) => [m.offset as number, m.data]);
}

/** [1, 2, …, n]. */
function upTo(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

/** Restart every node that is not running (a scenario that killed one leaves the cluster whole again). */
export async function heal(cluster: Cluster): Promise<void> {
  await cluster.heal();
}

/**
 * Publish on node 1 → subscribers on nodes 2 and 3 get every message once, in
 * offset order; a pattern subscription on node 3 gets them too.
 */
export async function fanOut(t: TestContext, cluster: Cluster): Promise<void> {
  const n = 200;
  const ch = channel('fan');
  const [publisher, sub2, sub3, pattern3] = await Promise.all([
    rt(t, cluster, cluster.node(1), 'publisher'),
    rt(t, cluster, cluster.node(2), 'sub2'),
    rt(t, cluster, cluster.node(3), 'sub3'),
    rt(t, cluster, cluster.node(3), 'pattern3'),
  ]);
  await sub2.ok('sub', { channel: ch });
  await sub3.ok('sub', { channel: ch });
  await pattern3.ok('sub', { channel: 'chat/+' });
  // All at once on one connection: the node may run them concurrently, so the acks say which offset each got.
  const acks = await within(
    Promise.all(upTo(n).map((i) => publisher.ok('pub', { channel: ch, data: { i } }, 15_000))),
    20_000,
    `${n} acks`,
  );
  const epoch = acks[0]!.epoch as string;
  const expected = new Map<number, unknown>();
  for (const [i, ack] of acks.entries()) {
    assert.equal(ack.epoch, epoch, 'one epoch');
    expected.set(ack.offset as number, { i: i + 1 });
  }
  assert.deepEqual([...expected.keys()].sort((a, b) => a - b), upTo(n), 'the acks hand out offsets 1..n, each once');
  const want = upTo(n).map((o): [number, unknown] => [o, expected.get(o)]);
  for (const [name, client] of [['node 2', sub2], ['node 3', sub3], ['the pattern on node 3', pattern3]] as const) {
    await client.waitUntil(() => received(client, ch).length >= n, 10_000, `${n} messages at ${name} (have ${received(client, ch).length})`);
  }
  // Anything late (a duplicate) would arrive right behind the last one.
  await sleep(200);
  assert.deepEqual(received(sub2, ch), want, 'node 2: every message once, in offset order');
  assert.deepEqual(received(sub3, ch), want, 'node 3: every message once, in offset order');
  const viaPattern = received(pattern3, ch);
  assert.equal(viaPattern.length, n, 'the pattern subscriber got each once');
  assert.deepEqual(
    [...viaPattern].sort((a, b) => a[0] - b[0]),
    want,
    'the pattern subscriber got every publication of node 1',
  );
  assert.deepEqual(viaPattern, want, 'the pattern subscriber got them in offset order');
  for (const m of sub2.messages(ch)) assert.equal(m.epoch, epoch);
}

/** History and presence read from any node: what clients of nodes 1 and 2 did, seen from each node. */
export async function historyAndPresence(t: TestContext, cluster: Cluster): Promise<void> {
  const ch = channel('room');
  const [alice, bob, carol] = await Promise.all([
    rt(t, cluster, cluster.node(1), 'alice'),
    rt(t, cluster, cluster.node(2), 'bob'),
    rt(t, cluster, cluster.node(3), 'carol'),
  ]);
  await alice.ok('sub', { channel: ch, presence: true });
  await bob.ok('sub', { channel: ch, presence: true });
  const [aliceId, bobId] = [alice.clientId, bob.clientId];
  // Alice on node 1 is told that Bob joined on node 2.
  await alice.waitFor((m) => m.op === 'join' && m.channel === ch && m.clients.some((c: Message) => c.user === 'bob'), 5000, "bob's join at alice");

  for (let i = 1; i <= 5; i++) await alice.ok('pub', { channel: ch, data: `m${i}` });
  await bob.ok('pub', { channel: ch, data: 'from bob' });
  const wantData = ['m1', 'm2', 'm3', 'm4', 'm5', 'from bob'];

  for (const node of cluster.nodes) {
    const reader = node.index === 3 ? carol : await rt(t, cluster, node, `reader${node.index}`);
    const history = await reader.ok('history', { channel: ch, limit: 100 });
    assert.deepEqual(
      history.publications.map((p: Message) => [p.offset, p.data]),
      wantData.map((d, i) => [i + 1, d]),
      `history from node ${node.index}`,
    );
    assert.equal(history.position.offset, 6);
    const fromBob = history.publications.at(-1);
    assert.equal(fromBob.from?.user, 'bob', 'the publisher travels with the publication');

    const presence = await reader.ok('presence', { channel: ch });
    const users = Object.values(presence.clients as Record<string, Message>).map((c) => c.user).sort();
    assert.deepEqual(users, ['alice', 'bob'], `presence from node ${node.index}`);
    assert.deepEqual(Object.keys(presence.clients).sort(), [aliceId, bobId].sort());

    const viaApi = await node.api(`/api/history?channel=${encodeURIComponent(ch)}`);
    assert.equal(viaApi.status, 200, viaApi.text);
    assert.deepEqual(viaApi.json().publications.map((p: Message) => p.data), wantData, `/api/history on node ${node.index}`);
    const presenceApi = await node.api(`/api/presence?channel=${encodeURIComponent(ch)}`);
    assert.equal(presenceApi.status, 200, presenceApi.text);
    assert.deepEqual([presenceApi.json().count, presenceApi.json().users], [2, 2], `/api/presence on node ${node.index}`);
  }

  // Bob leaves (closes his connection on node 2): Alice on node 1 is told, and no node lists him any more.
  bob.terminate();
  await alice.waitFor((m) => m.op === 'leave' && m.channel === ch && m.clients.some((c: Message) => c.user === 'bob'), 5000, "bob's leave at alice");
  const after = await carol.ok('presence', { channel: ch });
  assert.deepEqual(Object.values(after.clients as Record<string, Message>).map((c) => c.user), ['alice']);
}

/** `/api/publish` on node 3 reaches subscribers on nodes 1 and 2. */
export async function apiPublish(t: TestContext, cluster: Cluster): Promise<void> {
  const ch = channel('api');
  const [sub1, sub2] = await Promise.all([rt(t, cluster, cluster.node(1), 'sub1'), rt(t, cluster, cluster.node(2), 'sub2')]);
  await sub1.ok('sub', { channel: ch });
  await sub2.ok('sub', { channel: ch });
  const acks = [];
  for (let i = 1; i <= 10; i++) {
    const res = await cluster.node(3).api('/api/publish', { channel: ch, data: { n: i }, key: `k${i}` });
    assert.equal(res.status, 200, res.text);
    acks.push(res.json());
  }
  assert.deepEqual(acks.map((a) => a.offset), upTo(10));
  // The same key again, on another node: the first result, not a second publication.
  const again = await cluster.node(1).api('/api/publish', { channel: ch, data: { n: 3 }, key: 'k3' });
  assert.equal(again.status, 200, again.text);
  assert.deepEqual([again.json().offset, again.json().duplicate], [3, true], 'an idempotency key is honoured across nodes');
  const want = upTo(10).map((i): [number, unknown] => [i, { n: i }]);
  for (const [name, client] of [['node 1', sub1], ['node 2', sub2]] as const) {
    await client.waitUntil(() => received(client, ch).length >= 10, 5000, `10 messages at ${name}`);
  }
  await sleep(200);
  assert.deepEqual(received(sub1, ch), want, 'node 1');
  assert.deepEqual(received(sub2, ch), want, 'node 2');
  for (const m of sub1.messages(ch)) assert.equal(m.from, undefined, 'published by the server: no from');
}

/** Wait for the next `subscribed` event of a subscription (bounded). */
function nextSubscribed(sub: Subscription, ms: number, what: string): Promise<SubscribedEvent> {
  let off: (() => void) | undefined;
  return within(new Promise<SubscribedEvent>((resolve) => (off = sub.once('subscribed', resolve))), ms, what).finally(() => off?.());
}

/** An SDK subscriber that records every publication it delivers. */
interface Recorder {
  client: Client;
  sub: Subscription;
  got: Publication[];
  events: SubscribedEvent[];
  /** The URL of each connection, in order. */
  urls: string[];
}

async function subscriber(t: TestContext, cluster: Cluster, urls: string[], user: string, ch: string): Promise<Recorder> {
  const client = sdk(t, cluster, urls, user);
  const got: Publication[] = [];
  const events: SubscribedEvent[] = [];
  const sub = client.subscribe(ch, { onMessage: (p) => got.push(p), onSubscribed: (e) => events.push(e) });
  const connections: string[] = [];
  client.on('connected', (e) => connections.push(e.url));
  const subscribed = nextSubscribed(sub, 15_000, `${user} subscribed`);
  await within(client.connect(), 15_000, `${user} connected`);
  await subscribed;
  assert.deepEqual(connections, [urls[0]], `${user} starts on the first URL`);
  return { client, sub, got, events, urls: connections };
}

/** `cluster.urls` starting with node `i` (the SDK tries them in this order). */
function urlsFrom(cluster: Cluster, i: number): string[] {
  const urls = cluster.urls;
  return [...urls.slice(i - 1), ...urls.slice(0, i - 1)];
}

/**
 * kill -9 of node 2 while a publisher on node 2 publishes with acks (200/s
 * for 3 s): the publisher and the subscribers on node 2 (SDK, URL list of all
 * nodes) move to the other nodes and resume. Every publication is acked once
 * with its own offset; every subscriber gets offsets 1..N once, in order.
 */
export async function killNode(t: TestContext, cluster: Cluster): Promise<void> {
  const ch = channel('kill');
  const rate = 200;
  const seconds = 3;
  const total = rate * seconds;
  const victim = cluster.node(2);
  const subs = await Promise.all([
    subscriber(t, cluster, urlsFrom(cluster, 2), 'on-2-a', ch),
    subscriber(t, cluster, urlsFrom(cluster, 2), 'on-2-b', ch),
    subscriber(t, cluster, urlsFrom(cluster, 2), 'on-2-c', ch),
    subscriber(t, cluster, urlsFrom(cluster, 3), 'on-3', ch),
  ]);
  // Its queue holds what it publishes while it looks for another node.
  const publisher = sdk(t, cluster, urlsFrom(cluster, 2), 'publisher', { queueLimit: total });
  const publisherUrls: string[] = [];
  publisher.on('connected', (e) => publisherUrls.push(e.url));
  await within(publisher.connect(), 15_000, 'the publisher connected');
  assert.deepEqual(publisherUrls, [victim.url], 'the publisher starts on node 2');

  const acks: Array<Promise<PublishResult>> = [];
  const failures: unknown[] = [];
  const start = Date.now();
  let killed: Promise<unknown> | null = null;
  while (acks.length < total) {
    const elapsed = Date.now() - start;
    // Paced by the clock, not by the machine: after t ms, t·rate/1000 publications.
    const due = Math.min(total, Math.floor((elapsed * rate) / 1000) + 1);
    while (acks.length < due) {
      const i = acks.length + 1;
      const ack = publisher.publish(ch, { i });
      ack.catch((err: unknown) => failures.push(err));
      acks.push(ack);
    }
    if (killed === null && elapsed >= (seconds * 1000) / 2) killed = victim.kill('SIGKILL');
    await sleep(5);
  }
  const exit = await within(killed ?? victim.kill('SIGKILL'), 10_000, 'node 2 to die');
  assert.equal((exit as { signal: string }).signal, 'SIGKILL');

  const results = await within(Promise.allSettled(acks), 30_000, `the acks of ${total} publications`);
  assert.deepEqual(failures, [], 'no publication failed');
  const acked = results.map((r) => (r as PromiseFulfilledResult<PublishResult>).value);
  const epoch = acked[0]!.epoch;
  const dataAt = new Map<number, number>();
  for (const [i, ack] of acked.entries()) {
    assert.equal(ack.epoch, epoch, 'one epoch');
    assert.equal(dataAt.has(ack.offset), false, `offset ${ack.offset} acked twice`);
    dataAt.set(ack.offset, i + 1);
  }
  assert.deepEqual([...dataAt.keys()].sort((a, b) => a - b), upTo(total), 'every publication stored once: offsets 1..N');

  for (const s of subs) {
    await until(() => s.got.length >= total, 30_000, `${total} publications delivered (have ${s.got.length})`);
  }
  await sleep(300);
  for (const [k, s] of subs.entries()) {
    const offsets = s.got.map((p) => p.offset);
    const lost = total - new Set(offsets).size;
    const duplicated = offsets.length - new Set(offsets).size;
    assert.deepEqual([lost, duplicated], [0, 0], `subscriber ${k + 1}: lost, duplicated`);
    assert.deepEqual(offsets, upTo(total), `subscriber ${k + 1}: in offset order`);
    for (const p of s.got) assert.deepEqual(p.data, { i: dataAt.get(p.offset) }, `subscriber ${k + 1}: the data acked at offset ${p.offset}`);
  }
  // The three on node 2 resumed elsewhere without losing anything; the one on node 3 never left.
  for (const s of subs.slice(0, 3)) {
    assert.equal(s.urls.length, 2, 'one failover');
    assert.notEqual(s.urls[1], victim.url, 'to another node');
    assert.deepEqual(s.events.map((e) => [e.resumed, e.recovered]), [[false, true], [true, true]], 'subscribed, then resumed with recovered: true');
  }
  assert.equal(publisherUrls.length, 2, 'the publisher failed over once');
  assert.deepEqual(subs[3]!.events.map((e) => [e.resumed, e.recovered]), [[false, true]]);
  await victim.start();
}

/**
 * kill -9 of node 2 while two of its clients are in a channel's presence:
 * the clients on nodes 1 and 3 are told they left, once each, within 15 s
 * (the presence TTL of 10 s plus a heartbeat: the survivors find the entries
 * the dead node stopped refreshing and one of them announces the leave),
 * and no node lists them any more.
 */
export async function leaveOnNodeDeath(t: TestContext, cluster: Cluster): Promise<void> {
  const ch = channel('gone');
  const victim = cluster.node(2);
  const [alice, carol, dave, erin] = await Promise.all([
    rt(t, cluster, cluster.node(1), 'alice'),
    rt(t, cluster, cluster.node(3), 'carol'),
    rt(t, cluster, victim, 'dave'),
    rt(t, cluster, victim, 'erin'),
  ]);
  for (const client of [alice, carol, dave, erin]) await client.ok('sub', { channel: ch, presence: true });
  const gone = [dave.clientId, erin.clientId];
  const leavesOf = (watcher: RtClient, id: string): number =>
    watcher.pushes('leave', ch).filter((m) => (m.clients as Message[]).some((c) => c.client === id)).length;
  for (const watcher of [alice, carol]) {
    await watcher.waitUntil(() => gone.every((id) => watcher.pushes('join', ch).some((m) => (m.clients as Message[]).some((c) => c.client === id))), 5000, 'the joins of dave and erin');
  }

  const exit = await within(victim.kill('SIGKILL'), 10_000, 'node 2 to die');
  assert.equal((exit as { signal: string }).signal, 'SIGKILL');
  const killedAt = Date.now();
  for (const watcher of [alice, carol]) {
    await watcher.waitUntil(() => gone.every((id) => leavesOf(watcher, id) >= 1), 15_000 - (Date.now() - killedAt), `the leaves of dave and erin at ${watcher.user}, within 15 s of the kill`).catch((err) => {
      throw new Error(`${(err as Error).message}; node ${cluster.node(1).index}'s last log lines: ${JSON.stringify(cluster.node(1).logs.slice(-10))}`);
    });
  }
  await sleep(4000); // one more presence heartbeat: nobody announces them a second time
  for (const watcher of [alice, carol]) {
    assert.deepEqual(gone.map((id) => leavesOf(watcher, id)), [1, 1], `one leave each at ${watcher.user}`);
    assert.equal(watcher.pushes('leave', ch).some((m) => (m.clients as Message[]).some((c) => c.user === 'alice' || c.user === 'carol')), false, 'the living did not leave');
  }
  const presence = await alice.ok('presence', { channel: ch });
  assert.deepEqual(Object.values(presence.clients as Record<string, Message>).map((c) => c.user).sort(), ['alice', 'carol']);
  await victim.start();
}

/**
 * The broker restarts (`restart`); then node 1 dies, and a client that was on
 * it resumes on node 2 from its last position: `recovered` is `expected`
 * (true when the broker kept its data, false when it lost it: a new epoch,
 * never an offset handed out twice). What is published after reaches it.
 */
export async function resumeAfterBrokerRestart(t: TestContext, cluster: Cluster, restart: () => Promise<void>, expected: boolean): Promise<void> {
  const ch = channel('resume');
  const s = await subscriber(t, cluster, urlsFrom(cluster, 1), 'resumer', ch);
  const api = cluster.nodes.at(-1)!;
  const before: Array<{ offset: number; epoch: string }> = [];
  for (let i = 1; i <= 5; i++) {
    const res = await api.api('/api/publish', { channel: ch, data: i });
    assert.equal(res.status, 200, res.text);
    before.push(res.json());
  }
  await until(() => s.got.length === 5, 5000, 'the first five');

  await restart();
  await Promise.all(cluster.nodes.map((n) => n.waitReady(200, 20_000)));

  const resumed = nextSubscribed(s.sub, 20_000, 'the resubscription on another node');
  await cluster.node(1).kill('SIGKILL');
  const e = await resumed;
  assert.deepEqual([e.resumed, e.recovered], [true, expected], `resumed with recovered: ${expected}`);

  const res = await api.api('/api/publish', { channel: ch, data: 'after' });
  assert.equal(res.status, 200, res.text);
  const after = res.json();
  if (expected) {
    assert.deepEqual([after.offset, after.epoch], [6, before[0]!.epoch], 'the offsets go on in the same epoch');
  } else {
    assert.notEqual(after.epoch, before[0]!.epoch, 'data lost: another epoch, so no offset is handed out twice in one');
  }
  await until(() => s.got.some((p) => p.data === 'after'), 10_000, 'the publication after the restart');
  await sleep(200);
  assert.deepEqual(s.got.map((p) => p.data), [1, 2, 3, 4, 5, 'after'], 'each once, in order');
  await cluster.node(1).start();
}

/**
 * The broker is down for about 5 s (`stop`, then `start`): every node stays
 * up, `/readyz` answers 503 meanwhile and 200 after, a publication meanwhile
 * gets `error` 503 (and the HTTP API 503), and everything works after —
 * including subscriptions made before the outage.
 */
export async function brokerOutage(t: TestContext, cluster: Cluster, broker: { stop(): Promise<void>; start(): Promise<void> }): Promise<void> {
  const ch = channel('outage');
  const [pub1, sub2] = await Promise.all([rt(t, cluster, cluster.node(1), 'pub1'), rt(t, cluster, cluster.node(2), 'sub2')]);
  await sub2.ok('sub', { channel: ch });
  await pub1.ok('pub', { channel: ch, data: 'before' });
  await sub2.waitMessages(ch, 1, 5000);

  const down = Date.now();
  await broker.stop();
  await Promise.all(cluster.nodes.map((n) => n.waitReady(503, 15_000)));
  const refused = await pub1.request('pub', { channel: ch, data: 'during' }, 15_000);
  assert.deepEqual([refused.op, refused.code], ['error', 503], `a publication while the broker is down: ${JSON.stringify(refused)}`);
  const viaApi = await cluster.node(3).api('/api/publish', { channel: ch, data: 'during' }, undefined);
  assert.equal(viaApi.status, 503, viaApi.text);
  await sleep(Math.max(0, 5000 - (Date.now() - down)));
  for (const node of cluster.nodes) {
    assert.equal(node.running, true, `node ${node.index} stays up`);
    assert.equal((await node.readyz()), 503, `node ${node.index} /readyz while the broker is down`);
  }
  assert.equal(pub1.isClosed || sub2.isClosed, false, 'the clients stay connected');

  await broker.start();
  await Promise.all(cluster.nodes.map((n) => n.waitReady(200, 20_000)));
  const ack = await pub1.ok('pub', { channel: ch, data: 'after' }, 10_000);
  await sub2.waitFor((m) => m.op === 'msg' && m.channel === ch && m.data === 'after', 10_000, "'after' at the subscription made before the outage");
  assert.deepEqual(sub2.messages(ch).map((m) => m.data), ['before', 'after'], 'nothing published during the outage, nothing twice');
  // A new subscription on node 3, a publication on node 2.
  const sub3 = await rt(t, cluster, cluster.node(3), 'sub3');
  await sub3.ok('sub', { channel: ch });
  const pub2 = await rt(t, cluster, cluster.node(2), 'pub2');
  await pub2.ok('pub', { channel: ch, data: 'later' });
  await sub3.waitFor((m) => m.op === 'msg' && m.data === 'later', 10_000, "'later' on node 3");
  assert.equal(typeof ack.offset, 'number');
}

// ---- operations across nodes (realtime/cluster-ops.ts) ------------------------------------

/** The node part of a connection id (`<node id>.<…>`): which node a client is on. */
function nodeOf(client: RtClient): string {
  const id = client.clientId ?? '';
  const dot = id.indexOf('.');
  assert.ok(dot > 0, `a connection id that names its node: ${id}`);
  return id.slice(0, dot);
}

/** Still open and answering. */
async function stillServed(client: RtClient, what: string): Promise<void> {
  assert.equal(client.closeCode, null, `${what} is still open`);
  await client.ok('sub', { channel: channel('alive') }, 5000);
}

/**
 * `POST /api/disconnect` on node 1 for a user connected on nodes 2 and 3
 * (twice on 3): every one of them closed with 4503, the answer counts 3 and
 * names the three nodes; a bystander on node 3 stays; again: 0.
 */
export async function disconnectAcrossNodes(t: TestContext, cluster: Cluster): Promise<void> {
  const user = `alice-${randomBytes(3).toString('hex')}`;
  const [probe1, a2, a3, a3b, bob3] = await Promise.all([
    rt(t, cluster, cluster.node(1), 'probe'),
    rt(t, cluster, cluster.node(2), user),
    rt(t, cluster, cluster.node(3), user),
    rt(t, cluster, cluster.node(3), user),
    rt(t, cluster, cluster.node(3), 'bob'),
  ]);
  const ids = [nodeOf(probe1), nodeOf(a2), nodeOf(a3)];
  assert.equal(new Set(ids).size, 3, `three nodes, three node ids: ${ids}`);
  const res = await cluster.node(1).api('/api/disconnect', { user });
  assert.equal(res.status, 200, res.text);
  const answer = res.json();
  assert.equal(answer.user, user);
  assert.equal(answer.disconnected, 3, `2 on node 3 + 1 on node 2: ${res.text}`);
  assert.equal(answer.nodes[0], ids[0], 'the node asked answers first');
  assert.deepEqual([...answer.nodes].sort(), [...ids].sort(), 'every node answered');
  assert.deepEqual(answer.unanswered, []);
  for (const [what, client] of [['node 2', a2], ['node 3', a3], ['node 3 (second)', a3b]] as const) {
    const closed = await client.closeOf(5000);
    assert.equal(closed.code, 4503, `${what}: closed with 4503 (${closed.reason})`);
  }
  await stillServed(bob3, 'another user on node 3');
  await stillServed(probe1, 'the client on node 1');
  const again = await cluster.node(2).api('/api/disconnect', { user });
  assert.equal(again.status, 200, again.text);
  assert.deepEqual([again.json().disconnected, again.json().unanswered], [0, []], 'nothing left to close');
}

/**
 * The admin UI on node 1 closes a connection on node 3 (4503; a bystander
 * stays); the same id again, an id of node 3 it never made, an id naming no
 * node of the cluster: 404; a malformed id: 400. `POST /api/close` does the
 * same through the HTTP API.
 */
export async function closeAcrossNodes(t: TestContext, cluster: Cluster): Promise<void> {
  const session = await adminLogin(cluster.node(1).base);
  const [bob3, carol3, dave2] = await Promise.all([
    rt(t, cluster, cluster.node(3), 'bob'),
    rt(t, cluster, cluster.node(3), 'carol'),
    rt(t, cluster, cluster.node(2), 'dave'),
  ]);
  const node3 = nodeOf(bob3);
  // Node 1's admin UI lists the connections of every node, each with its node.
  const listed = await httpRequest(cluster.node(1).base, '/admin/api/connections', { headers: { Cookie: session.cookie } });
  assert.equal(listed.status, 200, listed.text);
  const rows = listed.json().connections as Array<{ id: string; node: string; user: string }>;
  assert.deepEqual(rows.find((c) => c.id === bob3.clientId), { ...rows.find((c) => c.id === bob3.clientId), node: node3, user: 'bob' }, listed.text);
  assert.ok(rows.some((c) => c.id === dave2.clientId && c.node === nodeOf(dave2)), 'a connection of node 2 too');
  assert.deepEqual(listed.json().unanswered, []);
  const res = await adminAction(cluster.node(1).base, session, 'close', { id: bob3.clientId });
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json(), { id: bob3.clientId, node: node3, closed: true });
  const closed = await bob3.closeOf(5000);
  assert.equal(closed.code, 4503, `closed with 4503 (${closed.reason})`);
  await stillServed(carol3, 'another connection on node 3');

  const again = await adminAction(cluster.node(1).base, session, 'close', { id: bob3.clientId });
  assert.equal(again.status, 404, again.text);
  assert.match(again.json().error, /no connection/);
  const neverMade = await adminAction(cluster.node(1).base, session, 'close', { id: `${node3}.zz-0-nothing` });
  assert.equal(neverMade.status, 404, neverMade.text);
  const noNode = await adminAction(cluster.node(1).base, session, 'close', { id: 'zz9nobody.a-1-b' });
  assert.equal(noNode.status, 404, noNode.text);
  assert.match(noNode.json().error, /not in the cluster/);
  for (const id of ['hello', 'UPPER.case', `${node3}.`, 'x'.repeat(5000)]) {
    const bad = await adminAction(cluster.node(1).base, session, 'close', { id });
    assert.equal(bad.status, 400, `${id.slice(0, 20)}: ${bad.text}`);
  }
  assert.equal((await adminAction(cluster.node(1).base, session, 'close', { id: 42 })).status, 400, 'an id that is not a string');

  const viaApi = await cluster.node(1).api('/api/close', { id: dave2.clientId });
  assert.equal(viaApi.status, 200, viaApi.text);
  assert.equal((await dave2.closeOf(5000)).code, 4503);
  await stillServed(carol3, 'the bystander, after all that');
  for (const node of cluster.nodes) assert.ok(node.running, `node ${node.index} still runs`);
}

/**
 * A node that stops answering in the middle (SIGSTOP: alive for the broker,
 * silent): node 1's disconnect answers within the timeout, naming it
 * unanswered; closing one of its connections is 504. After SIGCONT it
 * catches up: its user's connection is closed (late).
 */
export async function stuckNode(t: TestContext, cluster: Cluster): Promise<void> {
  const user = `erin-${randomBytes(3).toString('hex')}`;
  const [erin3, frank3] = await Promise.all([rt(t, cluster, cluster.node(3), user), rt(t, cluster, cluster.node(3), 'frank')]);
  const node3 = nodeOf(erin3);
  // Node 1 hears of every node first (a NATS roll call does not list a node that does not answer).
  assert.equal((await cluster.node(1).api('/api/disconnect', { user: 'nobody' })).json().nodes.length, 3);
  const pid = cluster.node(3).pid!;
  process.kill(pid, 'SIGSTOP');
  let stopped = true;
  t.after(() => {
    if (stopped) process.kill(pid, 'SIGCONT');
  });
  const from = cluster.node(1).logs.length;
  const res = await cluster.node(1).api('/api/disconnect', { user, timeoutMs: 1500 });
  assert.equal(res.status, 200, res.text);
  assert.deepEqual([res.json().disconnected, res.json().unanswered, res.json().nodes.length], [0, [node3], 2], res.text);
  await cluster.node(1).waitLog((l) => String(l.msg).includes('did not answer') && JSON.stringify(l.unanswered) === JSON.stringify([node3]), 'the warning about node 3', 5000, from);
  const close = await cluster.node(1).api('/api/close', { id: frank3.clientId, timeoutMs: 1500 });
  assert.equal(close.status, 504, close.text);
  assert.match(close.json().error, new RegExp(`node ${node3} did not answer`));
  process.kill(pid, 'SIGCONT');
  stopped = false;
  // The questions waited in its socket: it does what was asked, late.
  assert.equal((await erin3.closeOf(10_000)).code, 4503);
  assert.equal((await frank3.closeOf(10_000)).code, 4503);
  assert.ok(cluster.node(1).running && cluster.node(3).running);
}
