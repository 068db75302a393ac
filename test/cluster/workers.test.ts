/**
 * `switchboard serve --workers 2` (issue 11, "every core of a box"): one
 * primary and two worker processes sharing the port, on a real redis-server.
 *
 * - Both workers take connections (each answers with its own node id in
 *   `X-Switchboard-Node`; each worker's /metrics, labelled `worker`, counts
 *   its own WebSocket clients) and a publication reaches the subscribers of
 *   both.
 * - kill -9 of one worker: the primary restarts it (a log line, a new pid);
 *   its clients reconnect through the shared port and resume: every
 *   publication once, in order.
 * - SIGTERM to the primary: every client gets `closing` with a reconnect
 *   hint and 1001, every worker exits, then the primary (exit 0).
 * - A worker that keeps dying (five deaths within a minute) is a crash loop:
 *   every worker stops and the primary exits 1, saying so.
 * - The memory broker with --workers 2 is refused at start, in words.
 * - `limits.maxConnections` is per worker: a full worker answers 503 with
 *   Retry-After and a retry lands on the other; with both full, 503.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, type ClientOptions, type SubscribedEvent } from '../../src/client/index.js';
import { WebSocket } from '../../src/index.js';
import type { HandshakeError } from '../../src/protocol/errors.js';
import { RtClient } from '../integration/realtime/helpers-core.js';
import { runCli } from '../support/cli.js';
import { Cluster, httpRequest, type ClusterNode, type LogLine } from '../support/cluster.js';
import { RedisServer } from '../support/redis.js';
import { sleep, until, within } from '../support/wait.js';

/** How long a pool may take to start: each worker loads the server through tsx, slow on a busy 2-CPU machine. */
const START_MS = 120_000;

/** Open WebSocket connections per worker, from /metrics scraped until every worker answered once (each scrape is a new connection). */
async function wsPerWorker(node: ClusterNode, workers: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < 40 && seen.size < workers; i++) {
    const res = await httpRequest(node.base, '/metrics');
    assert.equal(res.status, 200);
    const worker = /^switchboard_broker_up\{worker="(\d+)"\} /m.exec(res.text)?.[1];
    assert.ok(worker, `/metrics of a worker carries its worker label:\n${res.text.slice(0, 500)}`);
    const m = new RegExp(`^switchboard_connections\\{transport="websocket",worker="${worker}"\\} (\\d+)$`, 'm').exec(res.text);
    seen.set(worker, m ? Number(m[1]) : 0);
  }
  return seen;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('serve --workers 2 on Redis', () => {
  let redis: RedisServer | undefined;
  let cluster: Cluster | undefined;
  const node = (): ClusterNode => cluster!.node(1);
  const clients: Client[] = [];
  let pids: number[] = [];

  before(async () => {
    redis = await RedisServer.start();
    cluster = await Cluster.start({ broker: { type: 'redis', url: redis.url }, nodes: 1, config: { workers: 2 }, startTimeoutMs: START_MS });
    const all = await node().waitLog((l) => l.msg === 'all workers listening', "the primary's 'all workers listening'", START_MS);
    pids = all.pids as number[];
    assert.equal(pids.length, 2);
  });

  after(async () => {
    for (const c of clients.splice(0)) c.close();
    await cluster?.stop();
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await redis?.dispose();
  });

  function sdk(user: string): Client {
    const client = new Client(node().url, {
      WebSocket: WebSocket as unknown as NonNullable<ClientOptions['WebSocket']>,
      transports: ['websocket'],
      network: null,
      getToken: () => cluster!.token(user),
      reconnect: { minDelayMs: 20, maxDelayMs: 300 },
    });
    clients.push(client);
    return client;
  }

  test('both workers take connections (two node ids); a publication reaches the subscribers on both', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const res = await fetch(`${node().base}/rt/session/x/poll`);
      await res.body?.cancel();
      ids.add(res.headers.get('x-switchboard-node') ?? '?');
    }
    assert.equal(ids.size, 2, `two workers answered: ${[...ids]}`);

    const ch = 'chat/workers-fanout';
    const got = new Map<string, unknown[]>();
    for (const user of ['w1', 'w2', 'w3', 'w4']) {
      const client = sdk(user);
      got.set(user, []);
      const sub = client.subscribe(ch, { onMessage: (m) => got.get(user)!.push(m.data) });
      const subscribed = within(new Promise<void>((resolve) => sub.once('subscribed', () => resolve())), 15_000, `${user} subscribed`);
      await within(client.connect(), 15_000, `${user} connects`);
      await subscribed;
    }
    const perWorker = await wsPerWorker(node(), 2);
    assert.equal(perWorker.size, 2, `both workers' /metrics answered: ${JSON.stringify([...perWorker])}`);
    assert.ok([...perWorker.values()].every((n) => n >= 1), `each worker holds WebSocket clients: ${JSON.stringify([...perWorker])}`);
    await clients[0]!.publish(ch, 'to everyone');
    await until(() => [...got.values()].every((g) => g.length >= 1), 10_000, 'all four subscribers got it');
    for (const [user, g] of got) assert.deepEqual(g, ['to everyone'], user);
  });

  test('kill -9 of a worker: the primary restarts it, its clients resume on the workers left, every publication once, in order', async () => {
    const ch = 'chat/workers-kill';
    const got = new Map<string, number[]>();
    const resumed = new Map<string, SubscribedEvent[]>();
    for (const user of ['k1', 'k2', 'k3', 'k4']) {
      const client = sdk(user);
      got.set(user, []);
      resumed.set(user, []);
      const sub = client.subscribe(ch, { onMessage: (m) => got.get(user)!.push(m.data as number) });
      const subscribed = within(new Promise<void>((resolve) => sub.once('subscribed', () => resolve())), 15_000, `${user} subscribed`);
      await within(client.connect(), 15_000, `${user} connects`);
      await subscribed;
      sub.on('subscribed', (e) => resumed.get(user)!.push(e));
    }
    // Published through the HTTP API: each request a new connection, to whichever worker is alive.
    const publish = async (i: number): Promise<void> => {
      const res = await node().api('/api/publish', { channel: ch, data: i });
      assert.equal(res.status, 200, res.text);
    };
    for (let i = 1; i <= 5; i++) await publish(i);
    await until(() => [...got.values()].every((g) => g.length >= 5), 10_000, 'the first five everywhere');

    const victim = pids[0]!;
    const from = node().logs.length;
    process.kill(victim, 'SIGKILL');
    await until(() => !alive(victim), 10_000, `worker pid ${victim} gone`);
    for (let i = 6; i <= 10; i++) await publish(i);
    const restarted: LogLine = await node().waitLog((l) => l.msg === 'worker restarted and listening', "the primary's 'worker restarted'", 60_000, from);
    assert.notEqual(restarted.pid, victim, 'a new process');
    const died = node().logs.slice(from).find((l) => l.msg?.toString().startsWith('worker died'));
    assert.ok(died, `the primary logged the death: ${node().tail()}`);
    assert.equal(died.signal, 'SIGKILL');
    pids = [restarted.pid as number, pids[1]!];
    // The clients of the killed worker resumed (the others never lost their connection).
    await until(() => [...resumed.values()].some((e) => e.length > 0), 15_000, 'a client of the killed worker resumed');
    for (let i = 11; i <= 12; i++) await publish(i);
    await until(() => [...got.values()].every((g) => g.length >= 12), 15_000, `all twelve everywhere: ${JSON.stringify([...got])}`);
    await sleep(200);
    for (const [user, g] of got) assert.deepEqual(g, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], `${user}: each once, in order`);
    for (const [user, events] of resumed) for (const e of events) assert.deepEqual([e.resumed, e.recovered], [true, true], user);
    // Both workers serve again.
    const perWorker = await wsPerWorker(node(), 2);
    assert.equal(perWorker.size, 2, `both workers answer again: ${JSON.stringify([...perWorker])}`);
  });

  test('SIGTERM to the primary: clients get closing (with a reconnect hint) and 1001, the workers exit, then the primary, with 0', async () => {
    for (const c of clients.splice(0)) c.close();
    const raw: RtClient[] = [];
    for (let i = 0; i < 4; i++) {
      const client = RtClient.create(node().url, { ignoreErrors: true });
      await client.opened(10_000);
      await client.ok('auth', { token: await cluster!.token(`t${i}`) }, 10_000);
      raw.push(client);
    }
    const stopped = node().exited;
    process.kill(node().pid!, 'SIGTERM');
    for (const client of raw) {
      const closing = await client.nextOp('closing', 15_000);
      assert.equal(typeof closing.reconnectAfter, 'number');
      assert.equal((await client.closeOf(15_000)).code, 1001);
    }
    const exit = await within(stopped, 30_000, 'the primary to exit');
    assert.deepEqual(exit, { code: 0, signal: null }, node().tail());
    for (const pid of pids) assert.ok(!alive(pid), `worker ${pid} exited`);
    assert.ok(node().logs.some((l) => l.msg === 'all workers exited'), node().tail());
  });
});

test('serve --workers 2 with the memory broker is refused at start, saying why', async (t) => {
  const cli = runCli(t, ['serve', '--port', '0', '--workers', '2']);
  const { code } = await within(cli.exited, 60_000, 'serve to exit');
  assert.equal(code, 2);
  const text = cli.stderr.join('\n');
  assert.match(text, /workers/);
  assert.match(text, /broker\.type "redis" or "nats"/);
  assert.ok(!cli.logs.some((l) => l.msg === 'listening'), 'nothing listened');
});

test('a worker killed five times within a minute is a crash loop: every worker stops, serve exits 1 and says so', async () => {
  const redis = await RedisServer.start();
  const cluster = await Cluster.start({ broker: { type: 'redis', url: redis.url }, nodes: 1, config: { workers: 2 }, startTimeoutMs: START_MS });
  const node = cluster.node(1);
  try {
    const all = await node.waitLog((l) => l.msg === 'all workers listening', "the primary's 'all workers listening'", START_MS);
    const [first, other] = all.pids as number[];
    let victim = first!;
    for (let death = 1; death <= 5; death++) {
      const from = node.logs.length;
      process.kill(victim, 'SIGKILL');
      if (death === 5) break;
      const restarted = await node.waitLog((l) => l.msg === 'worker restarted and listening' && l.worker === 1, `restart ${death} of worker 1`, 60_000, from);
      victim = restarted.pid as number;
    }
    const exit = await within(node.exited, 60_000, 'serve to give up on the crash loop');
    assert.deepEqual(exit, { code: 1, signal: null }, node.tail());
    assert.match(node.stderr.join('\n'), /worker 1 died 5 times within 60 s .*crash loop/);
    assert.ok(node.logs.some((l) => l.msg === 'worker crash loop: stopping'), node.tail());
    assert.ok(!alive(other!), 'the other worker was stopped too');
  } finally {
    await cluster.stop();
    await redis.dispose();
  }
});

test('limits.maxConnections counts per worker: a full worker refuses with 503 and Retry-After, the retry is taken by the other; both full, every upgrade is refused', async () => {
  // bench/workers.js and docs/production.md rely on this: the primary hands a connection to whichever worker is free,
  // not to the emptiest, so a worker may fill up first; its 503 sends the client's next attempt elsewhere.
  const redis = await RedisServer.start();
  const cluster = await Cluster.start({ broker: { type: 'redis', url: redis.url }, nodes: 1, config: { workers: 2, limits: { maxConnections: 1 } }, startTimeoutMs: START_MS });
  const node = cluster.node(1);
  const held: RtClient[] = [];
  /** An authenticated realtime connection, or the status and Retry-After of the refused upgrade. */
  const attempt = async (user: string): Promise<{ status: number; retryAfter?: string }> => {
    const client = RtClient.create(node.url);
    const refused = new Promise<{ status: number; retryAfter?: string }>((resolve) =>
      client.ws.once('error', (err: HandshakeError) => resolve({ status: err.statusCode, retryAfter: err.headers?.['retry-after'] })),
    );
    try {
      await client.opened(15_000);
    } catch {
      return within(refused, 5000, 'the refusal');
    }
    await client.ok('auth', { token: await cluster.token(user) }, 15_000);
    held.push(client);
    return { status: 101 };
  };
  try {
    await node.waitLog((l) => l.msg === 'all workers listening', "the primary's 'all workers listening'", START_MS);
    const refusals: Array<{ status: number; retryAfter?: string }> = [];
    for (let i = 0; i < 40 && held.length < 2; i++) {
      const r = await attempt(`m${i}`);
      if (r.status !== 101) refusals.push(r);
    }
    assert.equal(held.length, 2, `two connections held over two workers of one each (refusals: ${JSON.stringify(refusals)})`);
    for (const r of refusals) assert.deepEqual(r, { status: 503, retryAfter: '5' }, 'a full worker answers 503 with Retry-After');
    const perWorker = await wsPerWorker(node, 2);
    assert.deepEqual([...perWorker.values()], [1, 1], `one connection on each worker: ${JSON.stringify([...perWorker])}`);
    // Both full: whichever worker the primary picks refuses.
    for (let i = 0; i < 4; i++) assert.deepEqual(await attempt(`full${i}`), { status: 503, retryAfter: '5' }, `attempt ${i} with both workers full`);
    // The held ones are not disturbed.
    for (const c of held) await c.ok('sub', { channel: 'chat/full' }, 15_000);
  } finally {
    for (const c of held) c.terminate();
    await cluster.stop();
    await redis.dispose();
  }
});
