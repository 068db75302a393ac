/**
 * The realtime server's HTTP routes through the real server: the `/api`
 * (publish, broadcast, presence, history, disconnect, stats, and how it
 * refuses bad requests), `/healthz`, `/readyz` and `/metrics`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { describe, test } from 'node:test';
import { createRealtimeServer } from '../../../src/server/realtime-server.js';
import { api, API_KEY, captureLogger, connect, connectAs, httpRequest, listenApp, sleep, startServer, testConfig, until, upgrade, within } from './helpers.js';

const namespaces = [
  { prefix: 'chat', history: { size: 100, ttlMs: 0 }, presence: 'full' },
  { prefix: 'arena', presence: 'counts' },
];

describe('HTTP API', () => {
  test('idempotency keys are scoped: the API\'s, each user\'s and an anonymous connection\'s never collide, whatever characters they hold', async (t) => {
    const open = [{ prefix: 'chat', history: { size: 100, ttlMs: 0 }, anonymousPublish: true, anonymousSubscribe: true }];
    const { url, base } = await startServer(t, { config: { namespaces: open, auth: { anonymous: true } } });
    const publishers = [await connectAs(t, url, 'a:b'), await connectAs(t, url, 'a'), await connect(t, url)];
    // User "a:b" with key "c" and user "a" with key "b:c" once made the same broker key, "a:b:c".
    const keys = ['c', 'b:c', 'c'];
    const offsets: number[] = [];
    for (const [i, p] of publishers.entries()) offsets.push((await p.ok('pub', { channel: 'chat/keys', data: i, key: keys[i] })).offset);
    // The API with the key a client's broker key used to be ("a:b:c").
    const viaApi = (await api(base, '/api/publish', { channel: 'chat/keys', data: 'api', key: 'a:b:c' })).json();
    offsets.push(viaApi.offset);
    assert.equal(viaApi.duplicate, false);
    assert.deepEqual(offsets, [1, 2, 3, 4], 'four publications, none taken for another\'s duplicate');
    // Each key is still a duplicate for its own owner.
    const again = await publishers[0]!.ok('pub', { channel: 'chat/keys', data: 0, key: 'c' });
    assert.deepEqual([again.offset, again.duplicate], [1, true]);
  });

  test('publish: subscribers receive it; offset and epoch in the answer; a repeated key is a duplicate', async (t) => {
    const { url, base } = await startServer(t, { config: { namespaces } });
    const c = await connectAs(t, url, 'alice');
    const sub = await c.ok('sub', { channel: 'chat/lobby' });
    const res = await api(base, '/api/publish', { channel: 'chat/lobby', data: { text: 'hi' }, key: 'k-1' });
    assert.equal(res.status, 200, res.text);
    assert.match(String(res.headers['content-type']), /application\/json/);
    const body = res.json();
    assert.equal(body.channel, 'chat/lobby');
    assert.equal(body.offset, 1);
    assert.equal(body.epoch, sub.position.epoch);
    assert.equal(body.duplicate, false);
    const msg = await c.nextOp('msg');
    assert.deepEqual(msg.data, { text: 'hi' });
    assert.equal(msg.offset, 1);
    assert.equal(msg.from, undefined, 'a server publication has no publisher');
    // The same key again: the first result, duplicate, nothing delivered.
    const again = (await api(base, '/api/publish', { channel: 'chat/lobby', data: { text: 'hi' }, key: 'k-1' })).json();
    assert.deepEqual(again, { ...body, duplicate: true });
    const next = (await api(base, '/api/publish', { channel: 'chat/lobby', data: 'second' })).json();
    assert.equal(next.offset, 2);
    assert.equal((await c.nextOp('msg')).data, 'second', 'the duplicate was delivered');
  });

  test('broadcast: one message to several channels', async (t) => {
    const { url, base } = await startServer(t, { config: { namespaces } });
    const a = await connectAs(t, url, 'a');
    await a.ok('sub', { channel: 'chat/a' });
    const b = await connectAs(t, url, 'b');
    await b.ok('sub', { channel: 'chat/b' });
    await b.ok('sub', { channel: 'other/c' });
    const res = await api(base, '/api/broadcast', { channels: ['chat/a', 'chat/b', 'other/c'], data: 'everyone' });
    assert.equal(res.status, 200, res.text);
    const { results } = res.json();
    assert.deepEqual(
      results.map((r: { channel: string; offset: number }) => [r.channel, r.offset]),
      [
        ['chat/a', 1],
        ['chat/b', 1],
        ['other/c', 1],
      ],
    );
    assert.equal((await a.nextOp('msg')).channel, 'chat/a');
    const got = (await b.take('msg', 2)).map((m) => m.channel).sort();
    assert.deepEqual(got, ['chat/b', 'other/c']);
    assert.equal((await api(base, '/api/broadcast', { channels: [], data: 1 })).status, 400);
    assert.equal((await api(base, '/api/broadcast', { channels: ['ok/x', 'bad//x'], data: 1 })).status, 400);
  });

  test('presence: who is in a channel (full), how many (counts), 400 when off', async (t) => {
    const { url, base } = await startServer(t, { config: { namespaces } });
    const a = await connectAs(t, url, 'alice', { info: { name: 'Alice' } });
    await a.ok('sub', { channel: 'chat/room' });
    const b = await connectAs(t, url, 'bob');
    await b.ok('sub', { channel: 'chat/room' });
    await b.ok('sub', { channel: 'arena/1' });
    await a.ok('sub', { channel: 'arena/1' });
    const res = await api(base, '/api/presence?channel=chat/room');
    assert.equal(res.status, 200, res.text);
    const body = res.json();
    assert.equal(body.count, 2);
    assert.equal(body.users, 2);
    const users = Object.values(body.clients as Record<string, { user: string; info?: unknown }>).map((c) => c.user).sort();
    assert.deepEqual(users, ['alice', 'bob']);
    assert.deepEqual(Object.values(body.clients as Record<string, { user: string; info?: unknown }>).find((c) => c.user === 'alice')!.info, { name: 'Alice' });
    const counts = (await api(base, '/api/presence?channel=arena/1')).json();
    assert.equal(counts.clients, 2);
    assert.equal(counts.users, 2);
    assert.equal((await api(base, '/api/presence?channel=other/x')).status, 400);
    assert.equal((await api(base, '/api/presence')).status, 400);
    // Leaving updates it.
    b.ws.close(1000);
    await b.closeOf();
    const deadline = Date.now() + 2000;
    let after = (await api(base, '/api/presence?channel=chat/room')).json();
    while (after.count !== 1 && Date.now() < deadline) {
      await sleep(20);
      after = (await api(base, '/api/presence?channel=chat/room')).json();
    }
    assert.equal(after.count, 1);
    assert.deepEqual(Object.values(after.clients as Record<string, { user: string }>).map((c) => c.user), ['alice']);
  });

  test('history: the newest publications, limit, since', async (t) => {
    const { base } = await startServer(t, { config: { namespaces } });
    for (let i = 1; i <= 5; i++) assert.equal((await api(base, '/api/publish', { channel: 'chat/h', data: i })).status, 200);
    const all = (await api(base, '/api/history?channel=chat/h')).json();
    assert.deepEqual(
      all.publications.map((p: { data: number }) => p.data),
      [1, 2, 3, 4, 5],
    );
    assert.equal(all.position.offset, 5);
    const last2 = (await api(base, '/api/history?channel=chat/h&limit=2')).json();
    assert.deepEqual(
      last2.publications.map((p: { offset: number }) => p.offset),
      [4, 5],
    );
    const since = (await api(base, `/api/history?channel=chat/h&since_offset=3&since_epoch=${all.position.epoch}`)).json();
    assert.deepEqual(
      since.publications.map((p: { offset: number }) => p.offset),
      [4, 5],
    );
    assert.equal(since.recovered, true);
    assert.equal((await api(base, '/api/history?channel=chat/h&limit=-1')).status, 400);
    // Half a position is a mistake, not "no position".
    for (const half of ['since_offset=3', `since_epoch=${all.position.epoch}`]) {
      const res = await api(base, `/api/history?channel=chat/h&${half}`);
      assert.equal(res.status, 400, half);
      assert.match(res.json().error, /since_offset and since_epoch go together/);
    }
  });

  test('disconnect: every connection of the user closes with 4503; others stay', async (t) => {
    const { url, base } = await startServer(t);
    const m1 = await connectAs(t, url, 'mallory');
    const m2 = await connectAs(t, url, 'mallory');
    const other = await connectAs(t, url, 'alice');
    const res = await api(base, '/api/disconnect', { user: 'mallory' });
    assert.equal(res.status, 200, res.text);
    const node = m1.clientId!.slice(0, m1.clientId!.indexOf('.'));
    assert.deepEqual(res.json(), { user: 'mallory', disconnected: 2, nodes: [node], unanswered: [] });
    assert.equal((await m1.closeOf()).code, 4503);
    assert.equal((await m2.closeOf()).code, 4503);
    assert.equal(other.isClosed, false);
    await other.ok('sub', { channel: 'x/y' });
    assert.deepEqual((await api(base, '/api/disconnect', { user: 'nobody' })).json(), { user: 'nobody', disconnected: 0, nodes: [node], unanswered: [] });
  });

  test('stats: connections, subscriptions, channels', async (t) => {
    const { url, base } = await startServer(t);
    const a = await connectAs(t, url, 'a');
    await a.ok('sub', { channel: 'x/1' });
    await a.ok('sub', { channel: 'x/+' });
    const b = await connectAs(t, url, 'b');
    await b.ok('sub', { channel: 'x/1' });
    const stats = (await api(base, '/api/stats')).json();
    assert.equal(stats.connections, 2);
    assert.equal(stats.subscriptions, 3);
    const byChannel = Object.fromEntries(stats.channels.map((c: { channel: string; subscribers: number }) => [c.channel, c.subscribers]));
    assert.deepEqual(byChannel, { 'x/1': 2, 'x/+': 1 });
  });

  test('a missing or wrong API key: 401 with WWW-Authenticate; a user token is not an API key', async (t) => {
    const { base } = await startServer(t);
    const missing = await httpRequest(base, '/api/stats');
    assert.equal(missing.status, 401);
    assert.match(String(missing.headers['www-authenticate']), /Bearer/);
    assert.equal((await httpRequest(base, '/api/stats', { headers: { Authorization: `Bearer ${API_KEY}x` } })).status, 401);
    assert.equal((await httpRequest(base, '/api/stats', { headers: { Authorization: `Basic ${API_KEY}` } })).status, 401);
    const publish = await httpRequest(base, '/api/publish', { body: { channel: 'a/b', data: 1 } });
    assert.equal(publish.status, 401);
  });

  test('without apiKey the API is disabled: 404', async (t) => {
    const { base } = await startServer(t, { config: { apiKey: null } });
    const res = await httpRequest(base, '/api/stats', { headers: { Authorization: `Bearer ${API_KEY}` } });
    assert.equal(res.status, 404);
    assert.equal((await httpRequest(base, '/api/publish', { body: { channel: 'a/b', data: 1 } })).status, 404);
  });

  test('bad requests: bad JSON 400, wrong content type 415, wrong method 405, unknown route 404, bad fields 400', async (t) => {
    const { base } = await startServer(t);
    const auth = { Authorization: `Bearer ${API_KEY}` };
    const badJson = await httpRequest(base, '/api/publish', { headers: { ...auth, 'Content-Type': 'application/json' }, body: '{"channel":' });
    assert.equal(badJson.status, 400);
    assert.equal(typeof badJson.json().error, 'string');
    const text = await httpRequest(base, '/api/publish', { headers: { ...auth, 'Content-Type': 'text/plain' }, body: '{"channel":"a/b","data":1}' });
    assert.equal(text.status, 415);
    const get = await httpRequest(base, '/api/publish', { headers: auth });
    assert.equal(get.status, 405);
    assert.equal(get.headers['allow'], 'POST');
    assert.equal((await httpRequest(base, '/api/stats', { method: 'POST', headers: auth, body: {} })).status, 405);
    assert.equal((await httpRequest(base, '/api/nope', { headers: auth })).status, 404);
    assert.equal((await api(base, '/api/publish', { channel: 'a//b', data: 1 })).status, 400);
    assert.equal((await api(base, '/api/publish', { channel: 'a/b' })).status, 400);
    assert.equal((await api(base, '/api/publish', [1, 2])).status, 400);
    assert.equal((await httpRequest(base, '/elsewhere')).status, 404);
  });
});

describe('health, readiness and metrics', () => {
  test('/healthz 200; /readyz 200, then 503 while shutting down', async (t) => {
    const s = await startServer(t, { config: { shutdown: { timeoutMs: 2000 } } });
    assert.equal((await httpRequest(s.base, '/healthz')).status, 200);
    assert.equal((await httpRequest(s.base, '/readyz')).status, 200);
    // A client that does not answer the close keeps the shutdown going.
    const c = await connectAs(t, s.url, 'a');
    c.ws.pause();
    // A request already on its way when close() is called (new connections are no longer accepted).
    const sock = net.connect(s.port, '127.0.0.1');
    t.after(() => sock.destroy());
    await within(new Promise((resolve) => sock.once('connect', resolve)), 2000, 'connect');
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => got.includes('ok\n'), 2000, '/healthz');
    sock.write('GET /readyz HTTP/1.1\r\nHost: x\r\n');
    await sleep(20);
    const closed = s.server.close();
    sock.write('\r\n');
    await until(() => got.includes('shutting down'), 2000, 'the /readyz answer during shutdown');
    assert.match(got, /HTTP\/1\.1 503/);
    // A new connection during the drain is still answered (503), not refused: a
    // load balancer sees the node leaving.
    assert.equal((await httpRequest(s.base, '/readyz')).status, 503);
    const refused = await upgrade(s.base, '/rt');
    assert.equal(refused.status, 503);
    c.ws.resume();
    await within(closed, 3000, 'close()');
  });

  test('/metrics: Prometheus text with connections, closes by code and delivery latency', async (t) => {
    const { url, base } = await startServer(t);
    const a = await connectAs(t, url, 'a');
    await a.ok('sub', { channel: 'm/x' });
    await a.ok('pub', { channel: 'm/x', data: 1 });
    await a.nextOp('msg');
    const bad = await connect(t, url);
    bad.ws.send('not json');
    assert.equal((await bad.closeOf()).code, 4501);
    const res = await httpRequest(base, '/metrics');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    const text = res.text;
    assert.match(text, /^# TYPE switchboard_connections gauge$/m);
    assert.match(text, /^switchboard_connections\{transport="websocket"\} 1$/m);
    assert.match(text, /^switchboard_closes_total\{code="4501",meaning="[^"]*"\} 1$/m);
    assert.match(text, /^# TYPE switchboard_publish_to_delivery_seconds histogram$/m);
    assert.match(text, /^switchboard_publish_to_delivery_seconds_bucket\{le="\+Inf"\} [1-9]\d*$/m);
    assert.match(text, /^switchboard_publish_to_delivery_seconds_count [1-9]\d*$/m);
    assert.match(text, /^switchboard_closes_total\{code="4501",meaning="bad request: [^"]*"\} 1$/m, 'a realtime close code labelled with its meaning');
    // Default process metrics under the one prefix: switchboard_process_cpu_…, switchboard_nodejs_…
    assert.match(text, /^switchboard_process_cpu_user_seconds_total /m);
    assert.match(text, /^switchboard_nodejs_eventloop_lag_seconds /m);
    assert.doesNotMatch(text, /^switchboard_process_(process|nodejs)_/m);
  });

  test('/metrics disabled: 404', async (t) => {
    const { base } = await startServer(t, { config: { metrics: { enabled: false } } });
    assert.equal((await httpRequest(base, '/metrics')).status, 404);
  });
});

describe('development tokens', () => {
  test('POST /dev/token answers only direct loopback peers (403 for other addresses and proxied requests), as docs/http-api.md says', async (t) => {
    // Attach mode, so the test can give a request another peer address (not every machine has a
    // non-loopback interface to connect from): X-Test-Peer replaces the socket's remote address.
    const app = http.createServer((req, res) => {
      const peer = req.headers['x-test-peer'];
      if (typeof peer === 'string') Object.defineProperty(req.socket, 'remoteAddress', { value: peer });
      if (!rt.handleRequest(req, res)) res.writeHead(404).end();
    });
    const rt = createRealtimeServer({ server: app, devTokens: true, config: testConfig(), logger: captureLogger() });
    t.after(() => within(rt.close(), 5000, 'RealtimeServer#close'));
    const base = await listenApp(t, app);
    const ask = (headers: Record<string, string> = {}) => httpRequest(base, '/dev/token', { body: { user: 'alice' }, headers });

    for (const peer of [undefined, '::1', '::ffff:127.0.0.1', '127.0.0.2']) {
      const res = await ask(peer === undefined ? {} : { 'X-Test-Peer': peer });
      assert.equal(res.status, 200, `peer ${peer ?? '127.0.0.1'}: ${res.text}`);
      assert.equal(typeof res.json().token, 'string');
    }
    const refused = {
      'peer 203.0.113.9': await ask({ 'X-Test-Peer': '203.0.113.9' }),
      'peer 10.0.0.5': await ask({ 'X-Test-Peer': '10.0.0.5' }),
      'peer ::ffff:192.0.2.1': await ask({ 'X-Test-Peer': '::ffff:192.0.2.1' }),
      'X-Forwarded-For': await ask({ 'X-Forwarded-For': '127.0.0.1' }),
      Forwarded: await ask({ Forwarded: 'for=127.0.0.1' }),
    };
    for (const [what, res] of Object.entries(refused)) {
      assert.equal(res.status, 403, `${what}: ${res.status} ${res.text}`);
      assert.match(res.json().error, /only for clients on this machine/, what);
    }

    // The reference says what the code does (it once said the route did not check the caller's address).
    const doc = readFileSync(new URL('../../../docs/http-api.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## `POST /dev/token`'), doc.indexOf('## During shutdown'));
    assert.doesNotMatch(section, /not\s+check\s+the\s+caller/, 'docs/http-api.md says /dev/token does not check the caller');
    assert.match(section, /`403/, 'docs/http-api.md does not document the 403 of /dev/token');
    assert.match(section, /loopback/);
    assert.match(section, /X-Forwarded-For/);
  });
});
