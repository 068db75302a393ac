/**
 * The admin UI (src/server/admin.ts) over real HTTP against a real server on
 * a free port, with real realtime clients: login (password, API key, wrong,
 * rate limit), the session cookie (flags, tampering, another server's,
 * expiry, logout), CSRF (token and Origin), the 401s of the JSON API, the
 * views (overview, nodes, connections, channels, channel) and each action
 * (publish, disconnect a user, close a connection) checked from the clients.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryBroker } from '../../../src/brokers/memory/memory-broker.js';
import { startDashboardFeed } from '../../../src/server/dashboard-feed.js';
import { createTestServer } from '../../support/realtime-server.js';
import { API_KEY, connectAs, httpRequest, listenApp, sleep, startServer, until, WAIT, within, type HttpResult, type TestServer } from './helpers.js';

const PASSWORD = 'correct horse battery';
const NAMESPACES = [
  { prefix: 'chat', history: { size: 50, ttlMs: 0 }, presence: 'full', presenceBatchMs: 0 },
  { prefix: 'sys', history: { size: 120, ttlMs: 0 }, clientPublish: false },
];

function startAdmin(t: TestContext, admin: Record<string, unknown> = {}, more: Record<string, unknown> = {}): Promise<TestServer> {
  return startServer(t, { config: { namespaces: NAMESPACES, admin: { enabled: true, password: PASSWORD, ...admin }, ...more } });
}

function login(base: string, password: string, headers: Record<string, string> = {}): Promise<HttpResult> {
  return httpRequest(base, '/admin/login', {
    method: 'POST',
    body: new URLSearchParams({ password }).toString(),
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
  });
}

/** The `sb_admin` cookie a response sets (`name=value`), and the whole header. */
function setCookie(res: HttpResult): { pair: string; header: string } {
  const header = (res.headers['set-cookie'] ?? []).find((c) => c.startsWith('sb_admin='));
  assert.ok(header, `no sb_admin cookie set (status ${res.status})`);
  return { pair: header.split(';')[0]!, header };
}

interface Admin {
  cookie: string;
  csrf: string;
}

async function loggedIn(base: string, password = PASSWORD): Promise<Admin> {
  const res = await login(base, password);
  assert.equal(res.status, 303, res.text);
  const cookie = setCookie(res).pair;
  const page = await httpRequest(base, '/admin/', { headers: { Cookie: cookie } });
  assert.equal(page.status, 200);
  const csrf = /name="switchboard-csrf-token" content="([^"]+)"/.exec(page.text)?.[1];
  assert.ok(csrf, 'the console page carries the CSRF token');
  return { cookie, csrf };
}

function get(base: string, route: string, cookie?: string): Promise<HttpResult> {
  return httpRequest(base, `/admin/api/${route}`, { headers: cookie ? { Cookie: cookie } : {} });
}

function post(base: string, route: string, body: unknown, admin: Admin, headers: Record<string, string> = {}): Promise<HttpResult> {
  return httpRequest(base, `/admin/api/${route}`, { body, headers: { Cookie: admin.cookie, 'X-CSRF-Token': admin.csrf, ...headers } });
}

describe('admin UI: off by default', () => {
  it('serves nothing under /admin unless admin.enabled', async (t) => {
    const { base } = await startServer(t);
    assert.equal((await httpRequest(base, '/admin/')).status, 404);
    assert.equal((await httpRequest(base, '/admin/login')).status, 404);
    assert.equal((await get(base, 'overview')).status, 404);
  });
});

describe('admin UI: login and session', () => {
  it('shows the login form, refuses a wrong password with 401 and the message, logs in with the password or the API key', async (t) => {
    const { base, logs } = await startAdmin(t, { loginRatePerIp: { perSecond: 1, burst: 20 } }, { log: { level: 'info' } });
    const root = await httpRequest(base, '/admin/');
    assert.equal(root.status, 303);
    assert.equal(root.headers.location, '/admin/login');
    assert.equal((await httpRequest(base, '/admin')).headers.location, '/admin/');
    const form = await httpRequest(base, '/admin/login');
    assert.equal(form.status, 200);
    assert.match(form.text, /<form id="login" class="panel" method="post" action="\/admin\/login">/);
    assert.match(form.text, /<p id="error" class="notice" role="alert"><\/p>/);

    const wrong = await login(base, 'not the password');
    assert.equal(wrong.status, 401);
    assert.match(wrong.text, /<p id="error" class="notice" role="alert">Wrong password or API key\.<\/p>/);
    assert.equal(wrong.headers['set-cookie'], undefined);
    assert.ok(logs.some((l) => l.msg === 'admin login failed: wrong password' && l.ip === '127.0.0.1'));
    // An empty password, and the password with something appended, are wrong too.
    assert.equal((await login(base, '')).status, 401);
    assert.equal((await login(base, `${PASSWORD}x`)).status, 401);

    const ok = await login(base, PASSWORD);
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.location, '/admin/');
    const { header } = setCookie(ok);
    assert.match(header, /^sb_admin=[0-9a-z]+\.[\w-]{22}\.[\w-]{43}; Path=\/admin; Max-Age=28800; HttpOnly; SameSite=Strict$/);
    assert.ok(logs.some((l) => l.msg === 'admin login'));

    const byKey = await login(base, API_KEY);
    assert.equal(byKey.status, 303);
    const { cookie } = await loggedIn(base, API_KEY);
    assert.equal((await get(base, 'overview', cookie)).status, 200);
    // Logged in: the login form sends to the console.
    assert.equal((await httpRequest(base, '/admin/login', { headers: { Cookie: cookie } })).headers.location, '/admin/');
  });

  it('marks the cookie Secure when a TLS-terminating proxy says https', async (t) => {
    const { base } = await startAdmin(t);
    const res = await login(base, PASSWORD, { 'X-Forwarded-Proto': 'https' });
    assert.match(setCookie(res).header, /; Secure$/);
  });

  it('answers 401 to every API route without a valid session: none, tampered, expired format, another server\'s', async (t) => {
    const { base } = await startAdmin(t);
    const other = await startAdmin(t, { password: 'another admin password' });
    const { cookie } = await loggedIn(base);
    const [name, value] = cookie.split('=') as [string, string];
    const [exp, nonce, mac] = value.split('.') as [string, string, string];
    const flip = (s: string) => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
    const forged = [
      undefined,
      `${name}=`,
      `${name}=garbage`,
      `${name}=${exp}.${nonce}.${flip(mac)}`,
      `${name}=${exp}.${flip(nonce)}.${mac}`,
      // A later expiry with the same MAC.
      `${name}=${(parseInt(exp, 36) + 3600_000).toString(36)}.${nonce}.${mac}`,
      // A cookie of another server (another password): another key.
      (await loggedIn(other.base, 'another admin password')).cookie,
    ];
    for (const route of ['overview', 'connections', 'channels', 'channel?channel=chat/a']) {
      for (const c of forged) {
        const res = await get(base, route, c);
        assert.equal(res.status, 401, `${route} with ${c}`);
        assert.match(res.json().error, /^not logged in/);
      }
      assert.equal((await get(base, route, cookie)).status, 200, route);
    }
    for (const route of ['publish', 'disconnect', 'close']) {
      const res = await httpRequest(base, `/admin/api/${route}`, { body: {}, headers: { Cookie: forged[3]! } });
      assert.equal(res.status, 401, route);
    }
    // The console page itself sends to the login form.
    assert.equal((await httpRequest(base, '/admin/', { headers: { Cookie: forged[3]! } })).status, 303);
  });

  it('ends a session after admin.sessionTtlMs', async (t) => {
    const { base } = await startAdmin(t, { sessionTtlMs: 1000 });
    const res = await login(base, PASSWORD);
    assert.match(setCookie(res).header, /Max-Age=1;/);
    const cookie = setCookie(res).pair;
    assert.equal((await get(base, 'overview', cookie)).status, 200);
    await sleep(1100);
    assert.equal((await get(base, 'overview', cookie)).status, 401);
  });

  it('limits login attempts per address: 429 with Retry-After, even for the right password', async (t) => {
    const { base } = await startAdmin(t, { loginRatePerIp: { perSecond: 0.01, burst: 3 } });
    for (let i = 0; i < 3; i++) assert.equal((await login(base, 'wrong password')).status, 401);
    const limited = await login(base, PASSWORD);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers['retry-after'], '100');
    assert.match(limited.text, /Too many login attempts from your address\. Try again in 100 s\./);
    assert.equal(limited.headers['set-cookie'], undefined);
  });

  it('logs out: the cookie is cleared, the session refused afterwards, and logout needs the CSRF token', async (t) => {
    const { base } = await startAdmin(t);
    const admin = await loggedIn(base);
    const form = { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: admin.cookie };
    const noToken = await httpRequest(base, '/admin/logout', { method: 'POST', body: '', headers: form });
    assert.equal(noToken.status, 403);
    assert.equal((await get(base, 'overview', admin.cookie)).status, 200);
    const out = await httpRequest(base, '/admin/logout', { method: 'POST', body: `csrf=${admin.csrf}`, headers: form });
    assert.equal(out.status, 303);
    assert.equal(out.headers.location, '/admin/login');
    assert.match(setCookie(out).header, /^sb_admin=; Path=\/admin; Max-Age=0; HttpOnly; SameSite=Strict$/);
    // The old cookie, replayed, is refused.
    assert.equal((await get(base, 'overview', admin.cookie)).status, 401);
    assert.equal((await httpRequest(base, '/admin/', { headers: { Cookie: admin.cookie } })).status, 303);
  });
});

describe('admin UI: over TLS', () => {
  it('sets a Secure cookie, which works over https', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-admin-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '1', '-subj', '/CN=localhost'], {
      cwd: dir,
      stdio: 'pipe',
      timeout: 30_000,
    });
    const ca = readFileSync(join(dir, 'c.pem'));
    const { port } = await startAdmin(t, {}, { tls: { cert: join(dir, 'c.pem'), key: join(dir, 'k.pem') } });
    const request = (path: string, method: string, headers: Record<string, string>, body?: string) =>
      within(
        new Promise<{ status: number; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
          const req = https.request({ host: '127.0.0.1', port, path, method, headers, ca, servername: 'localhost', agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
          });
          req.on('error', reject);
          req.end(body);
        }),
        WAIT,
        `${method} ${path}`,
      );
    const res = await request('/admin/login', 'POST', { 'Content-Type': 'application/x-www-form-urlencoded' }, `password=${encodeURIComponent(PASSWORD)}`);
    assert.equal(res.status, 303);
    const header = res.headers['set-cookie']![0]!;
    assert.match(header, /; HttpOnly; SameSite=Strict; Secure$/);
    assert.equal((await request('/admin/api/overview', 'GET', { Cookie: header.split(';')[0]! })).status, 200);
  });
});

describe('admin UI: CSRF', () => {
  it('refuses an action without the CSRF token, with a wrong one, or from another origin', async (t) => {
    const { base, port } = await startAdmin(t);
    const admin = await loggedIn(base);
    const body = { channel: 'chat/a', data: 'x' };
    const noToken = await httpRequest(base, '/admin/api/publish', { body, headers: { Cookie: admin.cookie } });
    assert.equal(noToken.status, 403);
    assert.equal(noToken.json().error, 'missing or wrong X-CSRF-Token');
    assert.equal((await post(base, 'publish', body, { ...admin, csrf: admin.csrf.slice(1) + 'A' })).status, 403);
    const other = await startAdmin(t);
    assert.equal((await post(base, 'publish', body, { ...admin, csrf: (await loggedIn(other.base)).csrf })).status, 403);
    const cross = await post(base, 'publish', body, admin, { Origin: 'http://evil.example' });
    assert.equal(cross.status, 403);
    assert.equal(cross.json().error, 'cross-origin request refused (Origin http://evil.example)');
    assert.equal((await post(base, 'publish', body, admin, { Origin: 'null' })).status, 403);
    // Same origin, or no Origin at all (not a browser): accepted.
    assert.equal((await post(base, 'publish', body, admin, { Origin: `http://127.0.0.1:${port}` })).status, 200);
    assert.equal((await post(base, 'publish', body, admin)).status, 200);
    // A login form posted from another site is refused too (login CSRF).
    assert.equal((await login(base, PASSWORD, { Origin: 'http://evil.example' })).status, 403);
  });
});

describe('admin UI: views and actions', () => {
  it('lists this node\'s connections and channels, shows presence and the last history of a channel', async (t) => {
    const { base, url } = await startAdmin(t);
    const admin = await loggedIn(base);
    const alice = await connectAs(t, url, 'alice');
    await alice.ok('sub', { channel: 'chat/a', presence: true });
    const bob = await connectAs(t, url, 'bob');
    await bob.ok('sub', { channel: 'chat/a' });
    await bob.ok('pub', { channel: 'chat/a', data: { text: 'first' } });
    await bob.ok('pub', { channel: 'chat/a', data: { text: 'second' } });

    const list = (await get(base, 'connections', admin.cookie)).json();
    assert.equal(list.total, 2);
    const a = list.connections.find((c: { user: string }) => c.user === 'alice');
    assert.deepEqual([a.id, a.node, a.transport, a.remote, a.subscriptions], [alice.clientId, list.node, 'websocket', '127.0.0.1', ['chat/a']]);
    assert.deepEqual([list.nodes, list.unanswered], [[list.node], []], 'one node, which answered');
    assert.ok(Math.abs(a.connectedAt - Date.now()) < 60_000);
    const onlyBob = (await get(base, 'connections?user=bob', admin.cookie)).json();
    assert.deepEqual(
      onlyBob.connections.map((c: { id: string }) => c.id),
      [bob.clientId],
    );

    const channels = (await get(base, 'channels', admin.cookie)).json();
    assert.deepEqual(channels.channels, [{ channel: 'chat/a', subscribers: 2 }]);

    const channel = (await get(base, 'channel?channel=chat/a', admin.cookie)).json();
    assert.equal(channel.subscribers, 2);
    assert.deepEqual(channel.namespace, { prefix: 'chat', presence: 'full', history: { size: 50, ttlMs: 0 }, clientPublish: true });
    assert.deepEqual(Object.values(channel.presence.clients).map((c) => (c as { user: string }).user).sort(), ['alice', 'bob']);
    assert.deepEqual([channel.presence.count, channel.presence.users], [2, 2]);
    assert.deepEqual(
      channel.history.publications.map((p: { data: unknown }) => p.data),
      [{ text: 'first' }, { text: 'second' }],
    );
    const off = (await get(base, 'channel?channel=other', admin.cookie)).json();
    assert.deepEqual([off.presence, off.history], [null, null]);
    assert.equal((await get(base, 'channel?channel=chat%2F%23', admin.cookie)).status, 400);
    assert.equal((await get(base, 'nothing', admin.cookie)).status, 404);
  });

  it('overview: this node\'s snapshot with its connections by transport', async (t) => {
    const { base, url, server } = await startAdmin(t);
    const admin = await loggedIn(base);
    await connectAs(t, url, 'alice');
    const overview = (await get(base, 'overview', admin.cookie)).json();
    assert.equal(overview.node, server.nodeId);
    assert.equal(overview.snapshot.node, server.nodeId);
    assert.deepEqual(overview.snapshot.connections, { total: 1, byTransport: { websocket: 1 } });
    assert.equal(overview.nodes.length, 1);
    assert.deepEqual([overview.nodes[0].node, overview.nodes[0].self, overview.nodes[0].connections.total], [server.nodeId, true, 1]);
  });

  it('overview: the other nodes from the snapshots their feeds publish to sys/dashboard (a shared broker)', async (t) => {
    const broker = new MemoryBroker();
    t.after(() => broker.close());
    // Node B first: node A's hub is then the broker's handler (a memory broker serves one), and reads the shared history.
    const b = await startServer(t, { broker, config: { namespaces: NAMESPACES } });
    const a = await startServer(t, { broker, config: { namespaces: NAMESPACES, admin: { enabled: true, password: PASSWORD } } });
    await connectAs(t, b.url, 'carol');
    await connectAs(t, b.url, 'dave');
    const feed = startDashboardFeed(b.server, { intervalMs: 50 });
    t.after(() => feed.stop());
    const admin = await loggedIn(a.base);
    let nodes: Array<{ node: string; self: boolean; connections: { total: number; byTransport: Record<string, number> } }> = [];
    await until(
      () => {
        void get(a.base, 'overview', admin.cookie).then((r) => (nodes = r.json().nodes));
        return nodes.some((n) => n.node === b.server.nodeId && n.connections.total === 2);
      },
      WAIT,
      'node B in the overview',
    );
    assert.notEqual(a.server.nodeId, b.server.nodeId);
    assert.deepEqual(
      nodes.map((n) => [n.node, n.self, n.connections.total, n.connections.byTransport]),
      [
        [a.server.nodeId, true, 0, {}],
        [b.server.nodeId, false, 2, { websocket: 2 }],
      ],
    );
  });

  it('publishes to a channel: a subscriber gets it', async (t) => {
    const { base, url, logs } = await startAdmin(t, {}, { log: { level: 'info' } });
    const admin = await loggedIn(base);
    const alice = await connectAs(t, url, 'alice');
    await alice.ok('sub', { channel: 'chat/a' });
    const res = await post(base, 'publish', { channel: 'chat/a', data: { text: 'from the admin' } }, admin);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json().offset, 1);
    const [msg] = await alice.waitMessages('chat/a', 1);
    assert.deepEqual(msg!.data, { text: 'from the admin' });
    assert.ok(logs.some((l) => l.msg === 'admin action' && l.action === 'publish' && l.channel === 'chat/a'));
    // The HTTP API's checks: same answers.
    const bad = await post(base, 'publish', { channel: 'chat//a', data: 1 }, admin);
    assert.deepEqual([bad.status, bad.json().error], [400, 'invalid channel "chat//a"']);
    assert.equal((await post(base, 'publish', { channel: 'chat/a' }, admin)).json().error, 'data is required');
    assert.equal((await httpRequest(base, '/admin/api/publish', { headers: { Cookie: admin.cookie } })).status, 405);
  });

  it('closes one connection (4503), and disconnects every connection of a user', async (t) => {
    const { base, url } = await startAdmin(t);
    const admin = await loggedIn(base);
    const alice1 = await connectAs(t, url, 'alice');
    const alice2 = await connectAs(t, url, 'alice');
    const alice3 = await connectAs(t, url, 'alice');
    const bob = await connectAs(t, url, 'bob');

    const closed = await post(base, 'close', { id: alice1.clientId }, admin);
    const node = alice1.clientId!.slice(0, alice1.clientId!.indexOf('.'));
    assert.deepEqual(closed.json(), { id: alice1.clientId, node, closed: true }, 'the id names its node (the memory broker\'s)');
    assert.equal((await alice1.closeOf()).code, 4503);
    assert.equal((await post(base, 'close', { id: alice1.clientId }, admin)).status, 404);
    assert.equal((await post(base, 'close', {}, admin)).status, 400);

    const res = await post(base, 'disconnect', { user: 'alice' }, admin);
    assert.deepEqual(res.json(), { user: 'alice', disconnected: 2, nodes: [node], unanswered: [] });
    assert.equal((await alice2.closeOf()).code, 4503);
    assert.equal((await alice3.closeOf()).code, 4503);
    // Bob is still there.
    await bob.ok('sub', { channel: 'chat/b' });
    const left = (await get(base, 'connections', admin.cookie)).json();
    assert.deepEqual(
      left.connections.map((c: { user: string }) => c.user),
      ['bob'],
    );
  });

  it('serves its assets under its own path, and no others', async (t) => {
    const { base } = await startAdmin(t, { path: '/ops/console' });
    for (const file of ['admin.js', 'admin.css', 'metrics-view.js', 'sparkline.js', 'style.css', 'favicon.svg']) {
      const res = await httpRequest(base, `/ops/console/assets/${file}`);
      assert.equal(res.status, 200, file);
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
    }
    for (const bad of ['../index.html', 'index.html', 'login.html', '..%2fadmin-session.ts', 'constructor', '__proto__']) {
      assert.equal((await httpRequest(base, `/ops/console/assets/${bad}`)).status, 404, bad);
    }
    assert.equal((await httpRequest(base, '/ops/console/')).headers.location, '/ops/console/login');
    assert.equal((await httpRequest(base, '/admin/')).status, 404);
  });
});

describe('admin UI: bad input', () => {
  it('answers each with its status, and keeps serving', async (t) => {
    const { base } = await startAdmin(t);
    const admin = await loggedIn(base);
    const json = await httpRequest(base, '/admin/login', { body: { password: PASSWORD } });
    assert.equal(json.status, 415);
    const huge = await httpRequest(base, '/admin/login', { method: 'POST', body: `password=${'x'.repeat(10_000)}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(huge.status, 413);
    assert.equal((await httpRequest(base, '/admin/login', { method: 'PUT' })).status, 405);
    assert.equal((await httpRequest(base, '/admin/logout')).status, 405);
    const notJson = await post(base, 'publish', '{"channel":', admin, { 'Content-Type': 'application/json' });
    assert.deepEqual([notJson.status, notJson.json().error], [400, 'body is not valid JSON']);
    const deep = await post(base, 'publish', { channel: 'chat/a', data: JSON.parse('['.repeat(100) + ']'.repeat(100)) }, admin);
    assert.equal(deep.status, 400);
    assert.equal((await post(base, 'publish', [1, 2], admin)).status, 400);
    assert.equal((await post(base, 'disconnect', { user: 42 }, admin)).status, 400);
    for (const cookie of ['sb_admin', 'sb_admin=%zz', `sb_admin=${'a.'.repeat(5000)}`, 'sb_admin="a.b.c"; sb_admin=x']) {
      assert.equal((await get(base, 'overview', cookie)).status, 401, cookie);
    }
    assert.equal((await get(base, 'connections?limit=-1', admin.cookie)).status, 400);
    assert.equal((await httpRequest(base, '/admin/nothing')).status, 404);
    assert.equal((await get(base, 'overview', admin.cookie)).status, 200);
  });
});

describe('admin UI: generated hostile requests', () => {
  it('every request gets a documented status (never 5xx), the server stays up, a bystander keeps getting its messages', async (t) => {
    const { base, url, port } = await startAdmin(t, { loginRatePerIp: { perSecond: 1000, burst: 1000 } });
    const admin = await loggedIn(base);
    const bystander = await connectAs(t, url, 'bystander');
    await bystander.ok('sub', { channel: 'chat/watch' });
    const [exp, nonce, mac] = admin.cookie.slice('sb_admin='.length).split('.') as [string, string, string];
    const routes = ['', '/', '/login', '/logout', '/assets/admin.js', '/assets/x', '/nothing', ...['overview', 'connections', 'channels', 'channel', 'publish', 'disconnect', 'close', 'x'].map((r) => `/api/${r}`)];
    const body = fc.oneof(
      fc.constant(undefined),
      fc.json({ maxDepth: 4 }),
      fc.string({ maxLength: 200 }),
      fc.record({ channel: fc.oneof(fc.constant('chat/x'), fc.string({ maxLength: 30 }), fc.integer()), data: fc.jsonValue({ maxDepth: 3 }), user: fc.oneof(fc.string({ maxLength: 10 }), fc.integer()), id: fc.string({ maxLength: 10 }) }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
      fc.nat({ max: 3000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
      fc.string({ maxLength: 40 }).map((p) => `password=${encodeURIComponent(p)}&csrf=${encodeURIComponent(p)}`),
    );
    const request = fc.record({
      route: fc.constantFrom(...routes),
      query: fc.oneof(fc.constant(''), fc.string({ maxLength: 30 }).map((q) => `?channel=${encodeURIComponent(q)}&limit=${encodeURIComponent(q)}&user=${encodeURIComponent(q)}`)),
      method: fc.constantFrom('GET', 'POST', 'POST', 'PUT', 'DELETE', 'HEAD'),
      cookie: fc.constantFrom<string | undefined>(undefined, admin.cookie, `sb_admin=${exp}.${nonce}.${mac.slice(1)}A`, 'sb_admin=x.y.z', `sb_admin=${'9'.repeat(300)}`, `sb_admin=%E0%A4%A; ${admin.cookie}`),
      csrf: fc.constantFrom<string | undefined>(undefined, admin.csrf, 'wrong', ''),
      origin: fc.constantFrom<string | undefined>(undefined, `http://127.0.0.1:${port}`, 'http://evil.example', 'null', '::::'),
      type: fc.constantFrom<string | undefined>(undefined, 'application/json', 'application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x'),
      body,
    });
    const allowed = new Set([200, 303, 400, 401, 403, 404, 405, 413, 415, 429]);
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = {};
        if (r.cookie !== undefined) headers['Cookie'] = r.cookie;
        if (r.csrf !== undefined) headers['X-CSRF-Token'] = r.csrf;
        if (r.origin !== undefined) headers['Origin'] = r.origin;
        if (r.type !== undefined) headers['Content-Type'] = r.type;
        // (Node's own parser answers a DELETE with a body 400 before any handler: not ours to test.)
        const withBody = r.method === 'POST' || r.method === 'PUT';
        const res = await httpRequest(base, `/admin${r.route}${r.query}`, { method: r.method, headers, body: withBody ? (r.body ?? '') : undefined });
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        assert.ok(allowed.has(res.status), `${r.method} /admin${r.route}${r.query} → ${res.status} ${res.text.slice(0, 200)}`);
        if (r.route.startsWith('/api/') && res.status >= 400 && r.method !== 'HEAD') assert.equal(typeof res.json().error, 'string');
      }),
      { numRuns: 300, seed: 1313 },
    );
    // Many kinds of answers, not one refusal over and over.
    for (const status of [200, 303, 400, 401, 403, 404, 405]) assert.ok((seen.get(status) ?? 0) > 0, `no ${status} among ${JSON.stringify([...seen])}`);
    // Still serving: a fresh login works and the bystander gets a publication from the admin API.
    const again = await loggedIn(base);
    const res = await post(base, 'publish', { channel: 'chat/watch', data: 'still here' }, again);
    assert.equal(res.status, 200);
    const msgs = await bystander.waitMessages('chat/watch', 1);
    assert.ok(msgs.some((m) => m.data === 'still here'));
  });
});

describe('admin UI: as a library', () => {
  it('is served by handleRequest on an app\'s own server (attach mode), and logs its path at start', async (t) => {
    const { server: rt, logs } = createTestServer({
      server: http.createServer((req, res) => {
        if (!rt.handleRequest(req, res)) res.writeHead(404).end('app 404');
      }),
      config: { log: { level: 'info' }, admin: { enabled: true } },
    });
    t.after(() => within(rt.close(), 5000, 'RealtimeServer#close'));
    await rt.start();
    assert.ok(logs.some((l) => l.msg === 'admin UI' && l.path === '/admin/'));
    const base = await listenApp(t, rt.httpServer as http.Server);
    // The test server's API key logs in (no admin password configured).
    const admin = await loggedIn(base, API_KEY);
    assert.equal((await get(base, 'overview', admin.cookie)).json().node, rt.nodeId);
    assert.equal((await httpRequest(base, '/elsewhere')).text, 'app 404');
  });

  it('refuses plain HTTP on a non-loopback interface unless allowInsecure (an app\'s own server in attach mode)', async (t) => {
    for (const allowInsecure of [false, true]) {
      const { server: rt, logs } = createTestServer({ server: http.createServer(), config: { log: { level: 'info' }, admin: { enabled: true, allowInsecure } } });
      t.after(() => within(rt.close(), 5000, 'RealtimeServer#close'));
      // A request as it arrives on 10.0.0.5 (this test must not leave loopback): the socket's addresses are what counts.
      const req = Object.assign(new PassThrough(), {
        url: '/admin/login',
        method: 'GET',
        headers: { host: '10.0.0.5:8080' },
        socket: { localAddress: '10.0.0.5', remoteAddress: '10.0.0.9', encrypted: false },
      });
      const answer = new Promise<{ status: number; body: string }>((resolve) => {
        let status = 0;
        const res = {
          headersSent: false,
          writeHead(s: number) {
            status = s;
            return res;
          },
          setHeader() {},
          getHeader() {},
          end(body?: string | Buffer) {
            resolve({ status, body: String(body ?? '') });
          },
        };
        assert.equal(rt.handleRequest(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse), true);
      });
      req.end();
      const { status, body } = await within(answer, WAIT, 'the answer');
      if (allowInsecure) assert.equal(status, 200, body);
      else {
        assert.equal(status, 403);
        assert.match(body, /not served over plain HTTP on a non-loopback interface/);
        assert.ok(logs.some((l) => l.msg === 'admin request refused: plain HTTP on a non-loopback interface' && l.local === '10.0.0.5'));
      }
    }
  });
});
