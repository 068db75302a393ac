/**
 * The shipped proxy configs, tested for real: Redis, two `switchboard serve`
 * nodes on it, and in front of them nginx running deploy/nginx/switchboard.conf,
 * then HAProxy running deploy/haproxy/haproxy.cfg (test/support/proxies.ts
 * substitutes only ports, the node list and file paths). Every client talks to
 * the proxy only; which node a connection reached is read from each node's
 * own /metrics (`switchboard_connections` by transport), straight from the node.
 *
 * - WebSocket: round-robin puts two clients on different nodes; they chat
 *   across them.
 * - SSE (raw, through the proxy) and long-polling (the SDK): a session works,
 *   its requests are spread round-robin and the session stays on the node
 *   that opened it (the others relay to it: test/cluster/sessions.test.ts
 *   shows that in detail), and the proxy's log never holds the
 *   session id.
 * - What a node receives (a stand-in node that records): HTTP/1.1, the
 *   Upgrade headers, X-Forwarded-For with the peer appended; SSE events
 *   streamed, not held back.
 * - /readyz through the proxy; HAProxy's health checks and a drain through its
 *   runtime API; nginx's drain (node marked `down`, reload).
 * - A node stopped with SIGTERM: its client reconnects through the proxy to
 *   the other node and resumes (`recovered: true`), missing nothing.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { Client, type ClientOptions, type SubscribedEvent } from '../../src/client/index.js';
import { WebSocket } from '../../src/index.js';
import { Cluster, httpRequest, type ClusterNode } from '../support/cluster.js';
import { Haproxy, Nginx, type Proxy } from '../support/proxies.js';
import { freePort, RedisServer } from '../support/redis.js';
import { sleep, until, within } from '../support/wait.js';

type Transport = 'websocket' | 'sse' | 'poll';

async function counts(nodes: readonly ClusterNode[], transport: Transport): Promise<number[]> {
  return Promise.all(nodes.map((n) => (n.running ? n.openConnections(transport) : Promise.resolve(0))));
}

/**
 * Run `open`, then wait until exactly one node has one more `transport`
 * connection than before (bounded); resolves with that node.
 */
async function landing(nodes: readonly ClusterNode[], transport: Transport, open: () => Promise<unknown>): Promise<ClusterNode> {
  const before = await counts(nodes, transport);
  await open();
  const deadline = Date.now() + 5000;
  for (;;) {
    const now = await counts(nodes, transport);
    const grown = nodes.filter((_, i) => now[i]! > before[i]!);
    if (grown.length === 1 && now.reduce((a, b) => a + b) === before.reduce((a, b) => a + b) + 1) return grown[0]!;
    if (Date.now() > deadline) throw new Error(`no single node got the ${transport} connection: before ${before}, now ${now}`);
    await sleep(20);
  }
}

/** A `Client` through the proxy; closed after each test. */
const clients: Client[] = [];
function sdk(url: string, token: string, options: ClientOptions = {}): Client {
  const c = new Client(url, {
    WebSocket: WebSocket as unknown as NonNullable<ClientOptions['WebSocket']>,
    transports: ['websocket'],
    network: null,
    token,
    ...options,
    reconnect: { minDelayMs: 50, maxDelayMs: 500, ...options.reconnect },
  });
  clients.push(c);
  return c;
}

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

/** Resolve with the next `subscribed` event of a subscription (bounded). */
function nextSubscribed(sub: { once(event: 'subscribed', fn: (e: SubscribedEvent) => void): () => void }, ms: number): Promise<SubscribedEvent> {
  let off: (() => void) | undefined;
  return within(new Promise<SubscribedEvent>((resolve) => (off = sub.once('subscribed', resolve))), ms, "a 'subscribed' event").finally(() => off?.());
}

/**
 * SSE messages from a fetch stream: `data:` lines, parsed. Enough for the
 * server's stream (one `data:` line per event; `retry:`, `id:` and comments
 * are skipped).
 */
class SseStream {
  readonly messages: Array<Record<string, unknown>> = [];
  readonly #controller = new AbortController();
  status = 0;
  headers: Headers | undefined;

  async open(url: string): Promise<void> {
    const res = await within(fetch(url, { headers: { Accept: 'text/event-stream' }, signal: this.#controller.signal }), 5000, `GET ${url}`);
    this.status = res.status;
    this.headers = res.headers;
    if (res.status !== 200 || !res.body) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    void (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buffer += decoder.decode(value, { stream: true });
          let nl: number;
          while ((nl = buffer.indexOf('\n')) !== -1) {
            const line = buffer.slice(0, nl);
            buffer = buffer.slice(nl + 1);
            if (line.startsWith('data:')) this.messages.push(JSON.parse(line.slice(5).trim()) as Record<string, unknown>);
          }
        }
      } catch {
        // aborted at the end of the test
      }
    })();
  }

  close(): void {
    this.#controller.abort();
  }
}

const PROXIES: Array<[string, (ports: number[]) => Promise<Proxy>]> = [
  ['nginx', (ports) => Nginx.start(ports)],
  ['haproxy', (ports) => Haproxy.start(ports)],
];

/** What a stand-in node saw of one request. */
interface Seen {
  method: string;
  url: string;
  httpVersion: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * A stand-in for the nodes that records what the proxy sends: 200 `ready`
 * on /readyz (HAProxy's check), 101 to any upgrade, and on
 * `/rt/session/<id>/events` an event stream that sends one event and then
 * stays open without `X-Accel-Buffering` (only the proxy's own config can
 * make that event reach the client before the stream ends). The test's nginx
 * main config compresses event streams (gzip on); the shipped session
 * location must still stream: nginx 1.22 holds the events back only when
 * both its `proxy_buffering off` and its `gzip off` are removed (either one
 * alone is enough here, on loopback).
 */
async function recordingNode(): Promise<{ port: number; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const upgraded = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, headers: req.headers });
    if (/^\/rt\/session\/[^/]+\/events/.test(req.url ?? '')) {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' });
      res.write('data: {"first":true}\n\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ready');
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, headers: req.headers });
    socket.on('error', () => {});
    upgraded.add(socket);
    // A real accept value: HAProxy checks it (502 otherwise).
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    seen,
    close: () =>
      within(
        new Promise<void>((resolve) => {
          // Upgraded sockets are no longer the server's: closeAllConnections does not see them.
          for (const socket of upgraded) socket.destroy();
          server.closeAllConnections();
          server.close(() => resolve());
        }),
        5000,
        'the stand-in node to close',
      ),
  };
}

/** A raw HTTP/1.1 upgrade request through the proxy; resolves with the status line it gets back. */
function upgradeThrough(port: number, headers: Record<string, string>): Promise<string> {
  return within(
    new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let head = '';
      socket.on('error', reject);
      socket.on('connect', () =>
        socket.write(
          ['GET /rt HTTP/1.1', 'Host: switchboard.test', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n'),
        ),
      );
      socket.on('data', (c: Buffer) => {
        head += c.toString('latin1');
        const end = head.indexOf('\r\n');
        if (end !== -1) {
          socket.destroy();
          resolve(head.slice(0, end));
        }
      });
    }),
    5000,
    'the upgrade answer through the proxy',
  );
}

for (const [name, startProxy] of PROXIES) {
  test(`${name} (the shipped config): a node gets HTTP/1.1, the Upgrade headers, X-Forwarded-For with the peer appended; SSE events pass unbuffered`, async () => {
    const node = await recordingNode();
    let proxy: Proxy | undefined;
    try {
      proxy = await startProxy([node.port, node.port]);
      // A client behind another proxy: its X-Forwarded-For must be kept, with the address this proxy saw appended.
      assert.match(await upgradeThrough(proxy.port, { 'X-Forwarded-For': '203.0.113.7' }), /^HTTP\/1\.1 101 /);
      const up = node.seen.find((r) => r.url === '/rt');
      assert.ok(up, `the upgrade reached the node: ${JSON.stringify(node.seen)}`);
      assert.equal(up.httpVersion, '1.1');
      assert.equal(up.headers.upgrade, 'websocket');
      assert.match(String(up.headers.connection), /\bupgrade\b/i);
      assert.equal(up.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');

      const controller = new AbortController();
      try {
        const res = await within(
          fetch(`${proxy.base}/rt/session/AAAAAAAAAAAAAAAAAAAAAA/events`, { headers: { Accept: 'text/event-stream' }, signal: controller.signal }),
          5000,
          'the SSE answer',
        );
        // The node never ends this stream: the event arrives only if the proxy does not buffer it.
        const { value } = await within(res.body!.getReader().read(), 5000, 'the first SSE event through the proxy while the stream is open');
        assert.match(new TextDecoder().decode(value), /data: \{"first":true\}/);
      } finally {
        controller.abort();
      }
      const sse = node.seen.find((r) => r.url.endsWith('/events'));
      assert.equal(sse?.httpVersion, '1.1');
      assert.equal(sse?.headers['x-forwarded-for'], '127.0.0.1');
    } finally {
      await proxy?.stop();
      await node.close();
    }
  });
}

for (const [name, startProxy] of PROXIES) {
  describe(`two nodes on Redis behind ${name} (the shipped config)`, () => {
    let redis: RedisServer | undefined;
    let cluster: Cluster | undefined;
    let proxy: Proxy | undefined;
    const c = (): Cluster => cluster!;
    const p = (): Proxy => proxy!;

    before(async () => {
      redis = await RedisServer.start();
      // trustedProxies: what the shipped configs' comments ask of every node.
      cluster = await Cluster.start({ broker: { type: 'redis', url: redis.url }, nodes: 2, config: { trustedProxies: ['127.0.0.1'] } });
      proxy = await startProxy(cluster.nodes.map((n) => n.port));
    });

    // The clients of the test before are closed, but their nodes may not have counted that yet:
    // `landing` needs the counts to move only for the client it watches.
    beforeEach(async () => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const open = (await Promise.all((['websocket', 'sse', 'poll'] as const).map((t) => counts(c().nodes, t)))).flat();
        if (open.every((n) => n === 0)) return;
        if (Date.now() > deadline) throw new Error(`connections of the test before still open on the nodes: ${open}`);
        await sleep(50);
      }
    });

    after(async () => {
      await proxy?.stop();
      await cluster?.stop();
      await redis?.dispose();
    });

    test('/healthz and /readyz through the proxy answer 200', async () => {
      assert.equal((await httpRequest(p().base, '/healthz')).status, 200);
      const ready = await httpRequest(p().base, '/readyz');
      assert.deepEqual([ready.status, ready.text.trim()], [200, 'ready']);
    });

    test('WebSocket: round-robin puts two clients on different nodes, and they chat across them', async () => {
      const nodes = c().nodes;
      const a = sdk(p().url, await c().token('alice'));
      const b = sdk(p().url, await c().token('bob'));
      const nodeA = await landing(nodes, 'websocket', () => within(a.connect(), 10_000, 'alice connects through the proxy'));
      const nodeB = await landing(nodes, 'websocket', () => within(b.connect(), 10_000, 'bob connects through the proxy'));
      assert.notEqual(nodeA.index, nodeB.index, 'round-robin: the second connection goes to the other node');

      const gotA: unknown[] = [];
      const gotB: unknown[] = [];
      const subA = a.subscribe('chat/rr', { onMessage: (m) => gotA.push(m.data) });
      const subB = b.subscribe('chat/rr', { onMessage: (m) => gotB.push(m.data) });
      await Promise.all([nextSubscribed(subA, 5000), nextSubscribed(subB, 5000)]);
      for (let i = 1; i <= 3; i++) await a.publish('chat/rr', `a${i}`);
      for (let i = 1; i <= 3; i++) await b.publish('chat/rr', `b${i}`);
      const all = ['a1', 'a2', 'a3', 'b1', 'b2', 'b3'];
      await until(() => gotA.length >= 6 && gotB.length >= 6, 5000, 'both clients got all six');
      await sleep(100);
      assert.deepEqual(gotA, all);
      assert.deepEqual(gotB, all);
    });

    test('SSE: a session through the proxy gets its replies and a publication from a WebSocket client; the session stays on one node; the log has no session id', async () => {
      const nodes = c().nodes;
      const token = await c().token('carol');
      const auth = { Authorization: `Bearer ${token}` };
      let id = '';
      const stream = new SseStream();
      const sseNode = await landing(nodes, 'sse', async () => {
        const opened = await httpRequest(p().base, '/rt/session', { body: { transport: 'sse' }, headers: auth });
        assert.equal(opened.status, 201, opened.text);
        id = (opened.json() as { session: string }).session;
      });
      await stream.open(`${p().base}/rt/session/${id}/events`);
      try {
        assert.equal(stream.status, 200);
        assert.match(stream.headers?.get('content-type') ?? '', /^text\/event-stream/);
        // Later requests of the session go round-robin: the other node relays them to the one holding the session.
        const sent = await httpRequest(p().base, `/rt/session/${id}`, { body: [{ op: 'sub', id: 1, channel: 'chat/sse' }], headers: auth });
        assert.equal(sent.status, 204, sent.text);
        await until(() => stream.messages.some((m) => m.op === 'ok' && m.id === 1), 5000, "the sub's ok on the SSE stream");

        // A publisher on every node in turn (round-robin): the SSE session gets each publication.
        const pub = sdk(p().url, await c().token('dave'));
        await within(pub.connect(), 10_000, 'the publisher connects');
        await pub.publish('chat/sse', 'over sse');
        await until(() => stream.messages.some((m) => m.op === 'msg' && m.data === 'over sse'), 5000, 'the publication on the SSE stream');
        assert.deepEqual(await counts(nodes, 'sse'), nodes.map((n) => (n === sseNode ? 1 : 0)), 'one SSE session, on the node that opened it');
      } finally {
        stream.close();
        await httpRequest(p().base, `/rt/session/${id}`, { method: 'DELETE', headers: auth }).catch(() => undefined);
      }
      // The session id is a capability: the proxy's log (the shipped format) must not hold it.
      const log = (): string => (p() instanceof Nginx ? (p() as Nginx).accessLog() : p().output);
      await until(() => /\/rt\/session\/-\/events/.test(log()), 5000, `the SSE request in the proxy's log, with the id blanked:\n${log().slice(-2000)}`);
      assert.ok(!log().includes(id.slice(0, 8)), `the session id is not in the proxy's log:\n${log().slice(-2000)}`);
    });

    test('long-polling: the SDK on the poll transport through the proxy chats with a WebSocket client', async () => {
      const nodes = c().nodes;
      const poller = sdk(p().url, await c().token('erin'), { transports: ['poll'] });
      const gotPoll: unknown[] = [];
      const sub = poller.subscribe('chat/poll', { onMessage: (m) => gotPoll.push(m.data) });
      // Listening before connecting: the sub is answered right after the auth, maybe before `landing` returns.
      const subscribed = nextSubscribed(sub, 10_000);
      const pollNode = await landing(nodes, 'poll', () => within(poller.connect(), 10_000, 'the poller connects'));
      await subscribed;

      const ws = sdk(p().url, await c().token('frank'));
      const gotWs: unknown[] = [];
      const wsSub = ws.subscribe('chat/poll', { onMessage: (m) => gotWs.push(m.data) });
      await within(ws.connect(), 10_000, 'the WebSocket client connects');
      await nextSubscribed(wsSub, 5000);
      await ws.publish('chat/poll', 'to the poller');
      await poller.publish('chat/poll', 'from the poller');
      await until(() => gotPoll.length >= 2 && gotWs.length >= 2, 10_000, 'both got both');
      assert.deepEqual(gotPoll, ['to the poller', 'from the poller']);
      assert.deepEqual(gotWs, ['to the poller', 'from the poller']);
      assert.deepEqual(await counts(nodes, 'poll'), nodes.map((n) => (n === pollNode ? 1 : 0)), 'one polling session, on the node that opened it');
    });

    if (name === 'nginx') {
      test('nginx: a node marked down in the upstream and nginx reloaded gets no new connection (the documented drain); back after marking it up', async () => {
        const ng = p() as Nginx;
        const nodes = c().nodes;
        await ng.setDown(nodes[0]!.port, true);
        try {
          // Round-robin would alternate; with node 1 down, all three go to node 2.
          for (const user of ['n1', 'n2', 'n3']) {
            const client = sdk(p().url, await c().token(user));
            const node = await landing(nodes, 'websocket', () => within(client.connect(), 10_000, `${user} connects`));
            assert.equal(node.index, 2, `${user} went to node ${node.index} while node 1 was down in nginx`);
          }
        } finally {
          await ng.setDown(nodes[0]!.port, false);
        }
        const back: number[] = [];
        for (const user of ['n4', 'n5']) {
          const client = sdk(p().url, await c().token(user));
          back.push((await landing(nodes, 'websocket', () => within(client.connect(), 10_000, `${user} connects`))).index);
        }
        assert.deepEqual(back.sort(), [1, 2], 'up again: round-robin over both nodes');
      });
    }

    if (name === 'haproxy') {
      test('HAProxy: both nodes pass the /readyz health check; a node drained through the runtime API gets no new connection, and is back when ready', async () => {
        const h = p() as Haproxy;
        const nodes = c().nodes;
        const states = await h.serverStates('switchboard');
        assert.deepEqual([...states.keys()], ['node1', 'node2'], h.output.slice(-2000));
        // op state 2: running (checks pass).
        assert.deepEqual([...states.values()].map((s) => s.op), [2, 2]);

        assert.equal((await h.runtime('set server switchboard/node1 state drain')).trim(), '');
        try {
          const drained = await h.serverStates('switchboard');
          assert.ok((drained.get('node1')!.admin & 0x08) !== 0, `node1 is draining: ${JSON.stringify([...drained])}`);
          // Round-robin would alternate; with node1 drained, all three go to node2.
          for (const user of ['g1', 'g2', 'g3']) {
            const client = sdk(p().url, await c().token(user));
            const node = await landing(nodes, 'websocket', () => within(client.connect(), 10_000, `${user} connects`));
            assert.equal(node.index, 2, `${user} went to node ${node.index} while node1 was drained`);
          }
        } finally {
          await h.runtime('set server switchboard/node1 state ready');
        }
        const again = sdk(p().url, await c().token('g4'));
        const first = await landing(nodes, 'websocket', () => within(again.connect(), 10_000, 'g4 connects'));
        const again2 = sdk(p().url, await c().token('g5'));
        const second = await landing(nodes, 'websocket', () => within(again2.connect(), 10_000, 'g5 connects'));
        assert.notEqual(first.index, second.index, 'ready again: round-robin over both nodes');
      });
    }

    test('a node stopped with SIGTERM: its client reconnects through the proxy to the other node and resumes (recovered: true), missing nothing', async () => {
      const nodes = c().nodes;
      const a = sdk(p().url, await c().token('henry'));
      const b = sdk(p().url, await c().token('iris'));
      const gotA: unknown[] = [];
      const events: SubscribedEvent[] = [];
      const subA = a.subscribe('chat/failover', { onMessage: (m) => gotA.push(m.data), onSubscribed: (e) => events.push(e) });
      const nodeA = await landing(nodes, 'websocket', () => within(a.connect(), 10_000, 'henry connects'));
      let nodeB = await landing(nodes, 'websocket', () => within(b.connect(), 10_000, 'iris connects'));
      assert.notEqual(nodeB.index, nodeA.index, 'round-robin: iris on the other node');
      await until(() => events.length === 1, 5000, "henry's first subscribed");
      for (let i = 1; i <= 5; i++) await b.publish('chat/failover', i);
      await until(() => gotA.length === 5, 5000, 'the first five');

      const disconnected = within(new Promise<{ code: number }>((resolve) => a.once('disconnected', resolve)), 10_000, "henry's disconnect");
      const resumed = nextSubscribed(subA, 20_000);
      const stopping = nodeA.stop(10_000);
      const d = await disconnected;
      assert.equal(d.code, 1001, 'the node going away closes with 1001 (after closing)');
      // Published on the surviving node while henry is between nodes.
      const during = [6, 7, 8, 9, 10].map((i) => b.publish('chat/failover', i));
      const e = await resumed;
      await Promise.all(during);
      await stopping;
      assert.deepEqual([e.resumed, e.recovered], [true, true], 'resumed from its offset on the other node, nothing lost');
      for (let i = 11; i <= 12; i++) await b.publish('chat/failover', i);
      await until(() => gotA.length >= 12, 5000, 'all twelve');
      await sleep(100);
      assert.deepEqual(gotA, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'each once, in order');
      nodeB = nodes.find((n) => n !== nodeA)!;
      assert.equal(await nodeB.openConnections('websocket'), 2, 'both clients now on the surviving node');

      // /readyz through the proxy: the surviving node answers (nginx moves on from the dead one, HAProxy's check marks it down).
      assert.equal((await httpRequest(p().base, '/readyz')).status, 200);
      if (p() instanceof Haproxy) {
        const h = p() as Haproxy;
        const deadline = Date.now() + 10_000;
        let state = -1;
        while (Date.now() < deadline) {
          state = (await h.serverStates('switchboard')).get(`node${nodeA.index}`)!.op;
          if (state === 0) break;
          await sleep(200);
        }
        assert.equal(state, 0, `HAProxy's /readyz check marked the stopped node down`);
      }
    });
  });
}
