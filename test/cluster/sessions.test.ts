/**
 * Fallback sessions without sticky sessions (issue 10): three `switchboard
 * serve` nodes on Redis behind the shipped nginx and HAProxy configs (and on
 * NATS behind nginx), which
 * spread every request round-robin. The SDK over SSE and over long-polling
 * talks through the proxy; each of its HTTP requests is recorded with the
 * `X-Switchboard-Node` header of the node that took it (the node holding the
 * session is the first part of the session id). Evidence that requests of
 * one session landed on nodes other than its own and were answered there
 * (relayed through the broker), messages both ways with a WebSocket client,
 * and, when the session's node is killed (SIGKILL), the client gets "session
 * gone", opens a new session on a surviving node and resumes its
 * subscription: every publication once, in order.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Client, type ClientOptions, type SubscribedEvent } from '../../src/client/index.js';
import type { FetchLike } from '../../src/client/transports/transport.js';
import { WebSocket } from '../../src/index.js';
import { FetchEventSource } from '../integration/carriers/helpers.js';
import { Cluster, httpRequest, type ClusterNode } from '../support/cluster.js';
import { Haproxy, Nginx, type Proxy } from '../support/proxies.js';
import { NatsServer } from '../support/nats.js';
import { RedisServer } from '../support/redis.js';
import { sleep, until, within } from '../support/wait.js';

/** One HTTP request of the SDK, as the proxy's answer told it. */
interface Seen {
  method: string;
  path: string;
  status: number;
  /** The node that took the request (`X-Switchboard-Node`). */
  node: string;
}

/** fetch that records, for each request, which node answered it. */
function recordingFetch(seen: Seen[]): FetchLike {
  return async (url, init) => {
    const res = await fetch(url, init as RequestInit);
    seen.push({ method: init?.method ?? 'GET', path: new URL(url).pathname, status: res.status, node: res.headers.get('x-switchboard-node') ?? '?' });
    return res;
  };
}

/** The node id (first part) of the session ids in the recorded paths, the latest last. */
function sessionNodes(seen: readonly Seen[]): string[] {
  const out: string[] = [];
  for (const s of seen) {
    const m = /^\/rt\/session\/([0-9a-z]+)\.[A-Za-z0-9_-]{22}/.exec(s.path);
    if (m && out[out.length - 1] !== m[1]) out.push(m[1]!);
  }
  return out;
}

const clients: Client[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

function sdk(url: string, token: string, options: ClientOptions = {}): Client {
  const c = new Client(url, {
    WebSocket: WebSocket as unknown as NonNullable<ClientOptions['WebSocket']>,
    EventSource: FetchEventSource as never,
    network: null,
    token,
    ...options,
    reconnect: { minDelayMs: 50, maxDelayMs: 500 },
  });
  clients.push(c);
  return c;
}

function nextSubscribed(sub: { once(event: 'subscribed', fn: (e: SubscribedEvent) => void): () => void }, ms: number): Promise<SubscribedEvent> {
  let off: (() => void) | undefined;
  return within(new Promise<SubscribedEvent>((resolve) => (off = sub.once('subscribed', resolve))), ms, "a 'subscribed' event").finally(() => off?.());
}

type BrokerServer = { url: string; dispose(): Promise<void> };
const COMBOS: Array<{ name: string; startProxy: (ports: number[]) => Promise<Proxy>; broker: 'redis' | 'nats'; killed: 'poll' | 'sse' }> = [
  { name: 'nginx', startProxy: (ports) => Nginx.start(ports), broker: 'redis', killed: 'poll' },
  { name: 'haproxy', startProxy: (ports) => Haproxy.start(ports), broker: 'redis', killed: 'sse' },
  { name: 'nginx', startProxy: (ports) => Nginx.start(ports), broker: 'nats', killed: 'poll' },
];

for (const { name, startProxy, broker: brokerType, killed } of COMBOS) {
  describe(`fallback sessions through ${name} round-robin over three nodes on ${brokerType} (no stickiness)`, () => {
    let backend: BrokerServer | undefined;
    let cluster: Cluster | undefined;
    let proxy: Proxy | undefined;
    /** Node id → the cluster node. */
    const byId = new Map<string, ClusterNode>();
    const c = (): Cluster => cluster!;
    const p = (): Proxy => proxy!;

    before(async () => {
      backend = brokerType === 'redis' ? await RedisServer.start() : await NatsServer.start();
      cluster = await Cluster.start({
        broker: brokerType === 'redis' ? { type: 'redis', url: backend.url } : { type: 'nats', servers: [backend.url] },
        nodes: 3,
        // Short polls and a quick EventSource retry: many requests per session within a test.
        config: { trustedProxies: ['127.0.0.1'], fallbacks: { pollTimeoutMs: 2000, sseRetryMs: 200 } },
      });
      proxy = await startProxy(cluster.nodes.map((n) => n.port));
      for (const node of cluster.nodes) {
        const res = await httpRequest(node.base, '/rt/session/x/poll');
        assert.equal(res.status, 404);
      }
      await mapNodes();
    });

    async function mapNodes(): Promise<void> {
      byId.clear();
      for (const node of c().nodes) {
        if (!node.running) continue;
        const res = await fetch(`${node.base}/rt/session/x/poll`);
        await res.body?.cancel();
        byId.set(res.headers.get('x-switchboard-node') ?? '?', node);
      }
    }

    after(async () => {
      await proxy?.stop();
      await cluster?.stop();
      await backend?.dispose();
    });

    for (const transport of ['sse', 'poll'] as const) {
      test(`${transport}: the SDK's requests land on several nodes, those not holding the session relay them; messages both ways with a WebSocket client`, async () => {
        const seen: Seen[] = [];
        const fb = sdk(p().url, await c().token(`fb-${transport}`), { transports: [transport], fetch: recordingFetch(seen) });
        const ws = sdk(c().node(1).url, await c().token(`ws-${transport}`), { transports: ['websocket'] });
        const channel = `chat/rr-${transport}-${name}`;
        const gotFb: unknown[] = [];
        const gotWs: unknown[] = [];
        const subFb = fb.subscribe(channel, { onMessage: (m) => gotFb.push(m.data) });
        const subWs = ws.subscribe(channel, { onMessage: (m) => gotWs.push(m.data) });
        const subscribed = nextSubscribed(subFb, 15_000);
        await within(fb.connect(), 15_000, `the ${transport} client connects through ${name}`);
        await within(ws.connect(), 15_000, 'the WebSocket client connects');
        await Promise.all([subscribed, nextSubscribed(subWs, 10_000)]);
        const expected: string[] = [];
        // One by one: each publication of the fallback client is a POST of its own (round-robin spreads them).
        for (let i = 1; i <= 6; i++) {
          await fb.publish(channel, `fb${i}`);
          await ws.publish(channel, `ws${i}`);
          expected.push(`fb${i}`, `ws${i}`);
          // Let a poll come back between publications (the polls are requests too).
          await sleep(50);
        }
        await until(() => gotFb.length >= 12 && gotWs.length >= 12, 15_000, `both got all 12 (${transport}: ${gotFb.length}, ws: ${gotWs.length})`);
        await sleep(200);
        assert.deepEqual(gotFb, expected, `the ${transport} client got each once, in order`);
        assert.deepEqual(gotWs, expected, 'the WebSocket client got each once, in order');

        const owners = sessionNodes(seen);
        assert.equal(owners.length, 1, `one session all along: ${JSON.stringify(seen)}`);
        const owner = owners[0]!;
        assert.ok(byId.has(owner), `the session id names a node of the cluster (${owner} in ${[...byId.keys()]})`);
        const onSession = seen.filter((s) => s.path.startsWith('/rt/session/'));
        const relayed = onSession.filter((s) => s.node !== owner && s.status >= 200 && s.status < 300);
        const nodes = new Set(onSession.map((s) => s.node));
        assert.ok(nodes.size >= 2, `the session's requests reached ${nodes.size} node(s): ${JSON.stringify(onSession)}`);
        assert.ok(relayed.length >= 1, `requests answered by a node other than the session's own: ${JSON.stringify(onSession)}`);
        assert.ok(onSession.every((s) => s.status < 300), `every request of the session succeeded: ${JSON.stringify(onSession)}`);
        if (p() instanceof Nginx) {
          // The proxy's own log: the session's requests went to several upstreams.
          const upstreams = new Set(
            (p() as Nginx)
              .accessLog()
              .split('\n')
              .filter((l) => l.includes('/rt/session/-'))
              .map((l) => /"(127\.0\.0\.1:\d+)"\s*$/.exec(l)?.[1])
              .filter(Boolean),
          );
          assert.ok(upstreams.size >= 2, `nginx sent session requests to ${upstreams.size} upstream(s)`);
        }
      });
    }

    // Last in the describe: it kills a node (restarted afterwards).
    test(`${killed}: the session's node is killed (SIGKILL): the client gets "session gone", opens a session on another node and resumes, nothing lost`, async () => {
      const seen: Seen[] = [];
      const fb = sdk(p().url, await c().token(`kill-${killed}`), { transports: [killed], fetch: recordingFetch(seen) });
      const channel = `chat/kill-${killed}-${name}`;
      const got: unknown[] = [];
      const resumes: SubscribedEvent[] = [];
      const sub = fb.subscribe(channel, { onMessage: (m) => got.push(m.data) });
      const first = nextSubscribed(sub, 15_000);
      await within(fb.connect(), 15_000, `the ${killed} client connects`);
      await first;
      sub.on('subscribed', (e) => resumes.push(e));
      // The opening answer's node is the session's node (it made the session).
      const opened = seen.find((s) => s.path === '/rt/session' && s.method === 'POST');
      assert.ok(opened, `the SDK opened a session: ${JSON.stringify(seen)}`);
      const owner = byId.get(opened.node);
      assert.ok(owner, `the opening node ${opened.node} is one of the cluster's`);
      assert.equal(sessionNodes(seen)[0] ?? opened.node, opened.node, 'the session id names the node that opened it');
      // The publisher is on another node, connected directly.
      const other = c().nodes.find((n) => n !== owner)!;
      const pub = sdk(other.url, await c().token('kill-pub'), { transports: ['websocket'] });
      await within(pub.connect(), 10_000, 'the publisher connects');
      for (let i = 1; i <= 5; i++) await pub.publish(channel, i);
      await until(() => got.length >= 5, 10_000, `the first five (${got.length})`);

      await owner.kill('SIGKILL');
      for (let i = 6; i <= 10; i++) await pub.publish(channel, i);
      await until(() => resumes.length >= 1, 30_000, `the ${killed} client resumed after its session's node died (seen: ${JSON.stringify(seen.slice(-8))})`);
      for (let i = 11; i <= 12; i++) await pub.publish(channel, i);
      await until(() => got.length >= 12, 15_000, `all twelve (${JSON.stringify(got)})`);
      await sleep(200);
      assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'each once, in order');
      assert.deepEqual([resumes[0]!.resumed, resumes[0]!.recovered], [true, true], 'resumed from its position, recovered');
      if (killed === 'poll') {
        // (The SDK's SSE stream is not read through the recording fetch: only its POSTs are recorded.)
        assert.ok(
          seen.some((s) => s.status === 404 && s.node !== opened.node && byId.has(s.node)),
          `a surviving node answered a poll of the dead node's session "no such session" (404): ${JSON.stringify(seen.slice(-12))}`,
        );
      }
      const sessions = seen.filter((s) => s.path === '/rt/session' && s.method === 'POST' && s.status === 201);
      assert.ok(sessions.length >= 2 && sessions.at(-1)!.node !== opened.node, `a new session on a surviving node: ${JSON.stringify(sessions)}`);
      await owner.start();
      await mapNodes();
    });
  });
}
