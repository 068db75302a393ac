/**
 * Authentication and authorization through the real server (docs/protocol.md
 * "Connecting and authenticating", docs/configuration.md "Authorization"):
 * first-message `auth` and its failures, handshake credentials (header,
 * cookie, one-time ticket), token refresh, anonymous connections, and
 * permissions from the token's `channels` claim and the namespace rules.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { api, connect, connectAs, httpRequest, signToken, sleep, startServer, upgrade, type RtClient } from './helpers.js';

/** An rpc that tells who the connection is, to check handshake identities. */
function whoami(server: { rpc(method: string, handler: (data: unknown, ctx: { user: string }) => unknown): void }): void {
  server.rpc('whoami', (_data, ctx) => ctx.user);
}

async function userOf(client: RtClient): Promise<string> {
  const reply = await client.ok('rpc', { method: 'whoami' });
  return reply.data as string;
}

describe('first-message auth', () => {
  test('auth with a valid token: ok with client, user and expiresIn', async (t) => {
    const { url } = await startServer(t);
    const c = await connect(t, url);
    const reply = await c.request('auth', { token: await signToken('alice', { ttl: 600 }) });
    assert.equal(reply.op, 'ok');
    assert.equal(reply.user, 'alice');
    assert.equal(typeof reply.client, 'string');
    assert.ok(reply.client.length > 0);
    assert.ok(reply.expiresIn > 590_000 && reply.expiresIn <= 600_000, `expiresIn ${reply.expiresIn}`);
    // Authenticated: requests work; a second auth is refused.
    assert.equal((await c.request('sub', { channel: 'chat/a' })).op, 'ok');
    const again = await c.request('auth', { token: await signToken('alice') });
    assert.equal(again.op, 'error');
    assert.equal(again.code, 400);
  });

  test('requests before auth get error 401 with their id, and the connection stays', async (t) => {
    const { url } = await startServer(t);
    const c = await connect(t, url);
    for (const [op, fields] of [
      ['sub', { channel: 'chat/a' }],
      ['pub', { channel: 'chat/a', data: 1 }],
      ['presence', { channel: 'chat/a' }],
      ['history', { channel: 'chat/a' }],
      ['rpc', { method: 'x' }],
    ] as const) {
      const reply = await c.request(op, fields);
      assert.equal(reply.op, 'error', op);
      assert.equal(reply.code, 401, op);
    }
    assert.equal((await c.request('auth', { token: await signToken('alice') })).op, 'ok');
    assert.equal((await c.request('sub', { channel: 'chat/a' })).op, 'ok');
  });

  test('no auth within auth.authTimeoutMs: close 4001', async (t) => {
    const { url } = await startServer(t, { config: { auth: { authTimeoutMs: 150 } } });
    const started = Date.now();
    const c = await connect(t, url);
    const { code } = await c.closeOf(2000);
    assert.equal(code, 4001);
    assert.ok(Date.now() - started >= 100, 'closed before the timeout');
  });

  test('a client that authenticates in time is not closed by the auth timer', async (t) => {
    const { url } = await startServer(t, { config: { auth: { authTimeoutMs: 150 } } });
    const c = await connectAs(t, url, 'alice');
    await sleep(300);
    assert.equal(c.isClosed, false);
    assert.equal((await c.request('sub', { channel: 'chat/a' })).op, 'ok');
  });

  test('an invalid token: error reply with the id, then close 4500', async (t) => {
    const { url } = await startServer(t);
    const c = await connect(t, url);
    const reply = await c.request('auth', { token: await signToken('alice', { secret: 'another-secret-of-at-least-32-bytes!!' }) });
    assert.equal(reply.op, 'error');
    assert.equal(reply.code, 401);
    assert.match(reply.message, /signature/);
    assert.equal((await c.closeOf()).code, 4500);
  });

  test('garbage instead of a token: error, close 4500', async (t) => {
    const { url } = await startServer(t);
    const c = await connect(t, url);
    const reply = await c.request('auth', { token: 'not-a-jwt' });
    assert.equal(reply.op, 'error');
    assert.equal((await c.closeOf()).code, 4500);
  });

  test('an over-long (9 KB) or empty token: a 401 reply and close 4500 at once, like any invalid token', async (t) => {
    // An auth timeout far beyond the wait: the close must come from the token, not from the timer.
    const { url } = await startServer(t, { config: { auth: { authTimeoutMs: 60_000 } } });
    for (const token of [`${await signToken('alice')}.${'A'.repeat(9000)}`, 'x'.repeat(9 * 1024), '']) {
      const c = await connect(t, url);
      const reply = await c.request('auth', { token });
      assert.deepEqual([reply.op, reply.code], ['error', 401], `a token of ${token.length} characters: ${JSON.stringify(reply)}`);
      assert.equal((await c.closeOf()).code, 4500, `a token of ${token.length} characters`);
    }
  });

  test('an expired token: error reply, then close 4002', async (t) => {
    const { url } = await startServer(t);
    const c = await connect(t, url);
    const reply = await c.request('auth', { token: await signToken('alice', { ttl: -60 }) });
    assert.equal(reply.op, 'error');
    assert.equal(reply.code, 401);
    assert.match(reply.message, /expired/);
    assert.equal((await c.closeOf()).code, 4002);
  });
});

describe('handshake credentials', () => {
  test('Authorization: Bearer <token>: authenticated from the start', async (t) => {
    const { url, server } = await startServer(t, { config: { auth: { authTimeoutMs: 150 } } });
    whoami(server);
    const c = await connect(t, url, { headers: { Authorization: `Bearer ${await signToken('alice')}` } });
    assert.equal(await userOf(c), 'alice');
    await sleep(250); // past the auth timeout: no 4001
    assert.equal(c.isClosed, false);
    const again = await c.request('auth', { token: await signToken('bob') });
    assert.equal(again.op, 'error');
    assert.equal(again.code, 400);
    assert.equal(await userOf(c), 'alice');
  });

  test('an invalid or expired Bearer token: HTTP 401 before the upgrade', async (t) => {
    const { base } = await startServer(t);
    const bad = await upgrade(base, '/rt', { Authorization: `Bearer ${await signToken('alice', { secret: 'x'.repeat(40) })}` });
    assert.equal(bad.status, 401);
    const expired = await upgrade(base, '/rt', { Authorization: `Bearer ${await signToken('alice', { ttl: -60 })}` });
    assert.equal(expired.status, 401);
    const good = await upgrade(base, '/rt', { Authorization: `Bearer ${await signToken('alice')}` });
    assert.equal(good.status, 101);
  });

  test('the token in the sb_token cookie (and in a configured cookie name)', async (t) => {
    const { url, server, base } = await startServer(t);
    whoami(server);
    const c = await connect(t, url, { headers: { Cookie: `theme=dark; sb_token=${await signToken('carol')}` } });
    assert.equal(await userOf(c), 'carol');
    assert.equal((await upgrade(base, '/rt', { Cookie: 'sb_token=garbage' })).status, 401);

    const other = await startServer(t, { config: { auth: { cookieName: 'session' } } });
    whoami(other.server);
    const d = await connect(t, other.url, { headers: { Cookie: `session=${await signToken('dave')}` } });
    assert.equal(await userOf(d), 'dave');
  });

  test('a ticket from POST /api/ticket with the API key, for the user in the body, valid once', async (t) => {
    const { url, server, base } = await startServer(t);
    whoami(server);
    const res = await api(base, '/api/ticket', { user: 'erin' });
    assert.equal(res.status, 200, res.text);
    const { ticket, expiresIn } = res.json();
    assert.equal(typeof ticket, 'string');
    assert.equal(expiresIn, 30_000);
    const c = await connect(t, `${url}?ticket=${encodeURIComponent(ticket)}`);
    assert.equal(await userOf(c), 'erin');
    // Valid once.
    assert.equal((await upgrade(base, `/rt?ticket=${encodeURIComponent(ticket)}`)).status, 401);
    // Unknown tickets too.
    assert.equal((await upgrade(base, '/rt?ticket=nope')).status, 401);
  });

  test('a ticket from POST /api/ticket with a user token is for that user', async (t) => {
    const { url, server, base } = await startServer(t);
    whoami(server);
    const res = await httpRequest(base, '/api/ticket', { method: 'POST', headers: { Authorization: `Bearer ${await signToken('frank')}` } });
    assert.equal(res.status, 200, res.text);
    const c = await connect(t, `${url}?ticket=${res.json().ticket}`);
    assert.equal(await userOf(c), 'frank');
    // Without credentials, or with a bad token: 401.
    assert.equal((await httpRequest(base, '/api/ticket', { method: 'POST' })).status, 401);
    const bad = await httpRequest(base, '/api/ticket', { method: 'POST', headers: { Authorization: `Bearer ${await signToken('frank', { ttl: -60 })}` } });
    assert.equal(bad.status, 401);
  });

  test('a ticket expires after auth.ticketTtlMs', async (t) => {
    const { base } = await startServer(t, { config: { auth: { ticketTtlMs: 100 } } });
    const { ticket } = (await api(base, '/api/ticket', { user: 'gina' })).json();
    await sleep(200);
    assert.equal((await upgrade(base, `/rt?ticket=${ticket}`)).status, 401);
    const fresh = (await api(base, '/api/ticket', { user: 'gina' })).json().ticket;
    assert.equal((await upgrade(base, `/rt?ticket=${fresh}`)).status, 101);
  });
});

describe('token refresh', () => {
  // exp has one-second resolution: a ttl of 2 s expires 1-2 s from now.
  const config = { auth: { refreshGraceMs: 1500 } };

  test('the server pushes refresh before expiry; a refresh with a new token keeps the connection', async (t) => {
    const { url } = await startServer(t, { config });
    const c = await connect(t, url);
    const auth = await c.ok('auth', { token: await signToken('alice', { ttl: 2 }) });
    const expiresAt = Date.now() + (auth.expiresIn as number);
    const push = await c.nextOp('refresh', 2500);
    // Pushed before expiry, on the server's clock, and not earlier than refreshGraceMs before it (+1 ms of rounding).
    assert.ok(push.expiresIn > 0 && push.expiresIn <= 1500 + 1, `expiresIn ${push.expiresIn}`);
    // The push comes before the close at expiry: the connection is open and takes the new token.
    assert.equal(c.isClosed, false, 'closed before the refresh push was handled');
    const reply = await c.request('refresh', { token: await signToken('alice', { ttl: 600 }) });
    assert.equal(reply.op, 'ok');
    assert.ok(reply.expiresIn > 590_000, `expiresIn ${reply.expiresIn}`);
    await sleep(Math.max(0, expiresAt - Date.now()) + 300);
    assert.equal(c.isClosed, false, 'closed although refreshed');
    assert.equal((await c.request('sub', { channel: 'chat/a' })).op, 'ok');
  });

  test('no refresh: close 4002 at expiry', async (t) => {
    const { url } = await startServer(t, { config });
    const c = await connect(t, url);
    const auth = await c.ok('auth', { token: await signToken('alice', { ttl: 2 }) });
    await c.nextOp('refresh', 2500);
    const { code } = await c.closeOf(3000);
    assert.equal(code, 4002);
    assert.ok(auth.expiresIn <= 2000);
  });

  test("a refresh with another user's token is refused with 403 and changes nothing", async (t) => {
    const { url, server } = await startServer(t);
    whoami(server);
    const c = await connectAs(t, url, 'alice');
    const reply = await c.request('refresh', { token: await signToken('mallory') });
    assert.equal(reply.op, 'error');
    assert.equal(reply.code, 403);
    assert.equal(await userOf(c), 'alice');
    // An invalid token is a 401 for the refresh, not a crash.
    const bad = await c.request('refresh', { token: 'garbage' });
    assert.equal(bad.op, 'error');
    assert.equal(bad.code, 401);
    assert.equal(await userOf(c), 'alice');
  });

  test('a refresh with an over-long (9 KB) or empty token is a 401 like any invalid token; the connection stays', async (t) => {
    const { url, server } = await startServer(t);
    whoami(server);
    const c = await connectAs(t, url, 'alice');
    for (const token of [`${await signToken('alice')}.${'A'.repeat(9000)}`, '']) {
      const reply = await c.request('refresh', { token });
      assert.deepEqual([reply.op, reply.code], ['error', 401], `a token of ${token.length} characters: ${JSON.stringify(reply)}`);
    }
    assert.equal(c.isClosed, false);
    assert.equal(await userOf(c), 'alice');
  });
});

describe('anonymous connections and permissions', () => {
  const namespaces = [
    { prefix: 'public', anonymousSubscribe: true },
    { prefix: 'chat', presence: 'full', history: { size: 10, ttlMs: 0 } },
    { prefix: 'news', clientPublish: false },
  ];

  test('without auth.anonymous, a connection must authenticate', async (t) => {
    const { url } = await startServer(t, { config: { namespaces } });
    const c = await connect(t, url);
    const reply = await c.request('sub', { channel: 'public/a' });
    assert.equal(reply.op, 'error');
    assert.equal(reply.code, 401);
  });

  test('with auth.anonymous, only what the namespace allows anonymously', async (t) => {
    const { url, server } = await startServer(t, { config: { namespaces, auth: { anonymous: true, authTimeoutMs: 100 } } });
    const c = await connect(t, url);
    await sleep(200); // no auth timeout for anonymous connections
    assert.equal(c.isClosed, false);
    assert.equal((await c.request('sub', { channel: 'public/a' })).op, 'ok');
    const chat = await c.request('sub', { channel: 'chat/a' });
    assert.equal(chat.op, 'error');
    assert.equal(chat.code, 403);
    const pub = await c.request('pub', { channel: 'public/a', data: 1 });
    assert.equal(pub.op, 'error');
    assert.equal(pub.code, 403);
    // A pattern reaching a namespace closed to anonymous readers is refused.
    assert.equal((await c.request('sub', { channel: '#' })).code, 403);
    assert.equal((await c.request('sub', { channel: 'public/#' })).op, 'ok');
    // What it may read, it receives.
    await server.publish('public/a', 'hello');
    assert.equal((await c.nextOp('msg')).data, 'hello');
  });

  test('clientPublish false: pub is 403 for everyone; the server API still publishes', async (t) => {
    const { url, base } = await startServer(t, { config: { namespaces } });
    const c = await connectAs(t, url, 'alice');
    await c.ok('sub', { channel: 'news/today' });
    const pub = await c.request('pub', { channel: 'news/today', data: 1 });
    assert.equal(pub.op, 'error');
    assert.equal(pub.code, 403);
    assert.equal((await api(base, '/api/publish', { channel: 'news/today', data: 'breaking' })).status, 200);
    assert.equal((await c.nextOp('msg')).data, 'breaking');
  });

  test('the channels claim grants each action where an entry covers the channel', async (t) => {
    const { url } = await startServer(t, { config: { namespaces } });
    const c = await connectAs(t, url, 'alice', { channels: { subscribe: ['chat/#'], publish: ['chat/lobby'] } });
    const expect = async (op: string, fields: object, code: number | 'ok'): Promise<void> => {
      const reply = await c.request(op, fields);
      if (code === 'ok') assert.equal(reply.op, 'ok', `${op} ${JSON.stringify(fields)}: ${JSON.stringify(reply)}`);
      else assert.equal(reply.code, code, `${op} ${JSON.stringify(fields)}: ${JSON.stringify(reply)}`);
    };
    await expect('sub', { channel: 'chat/lobby' }, 'ok');
    await expect('sub', { channel: 'chat/a/b' }, 'ok');
    await expect('sub', { channel: 'news/x' }, 403);
    await expect('pub', { channel: 'chat/lobby', data: 1 }, 'ok');
    await expect('pub', { channel: 'chat/other', data: 1 }, 403);
    // subscribe also grants presence and history on the same channels.
    await expect('presence', { channel: 'chat/lobby' }, 'ok');
    await expect('history', { channel: 'chat/lobby' }, 'ok');
    await expect('history', { channel: 'news/x' }, 403);
    // Patterns: covered by chat/# or not.
    await expect('sub', { channel: 'chat/+' }, 'ok');
    await expect('sub', { channel: 'chat/+/x' }, 'ok');
    await expect('sub', { channel: '#' }, 403);
    await expect('sub', { channel: '+/lobby' }, 403);
  });

  test('a pattern subscription needs one permission covering the whole pattern', async (t) => {
    const { url } = await startServer(t, { config: { namespaces } });
    const c = await connectAs(t, url, 'alice', { channels: { subscribe: ['chat/a', 'chat/b'] } });
    assert.equal((await c.request('sub', { channel: 'chat/a' })).op, 'ok');
    const pattern = await c.request('sub', { channel: 'chat/+' });
    assert.equal(pattern.op, 'error');
    assert.equal(pattern.code, 403);
    // No publish list: publishing is refused everywhere.
    assert.equal((await c.request('pub', { channel: 'chat/a', data: 1 })).code, 403);
  });

  test('a malformed channels claim makes the token invalid', async (t) => {
    const { url } = await startServer(t);
    const c = await connect(t, url);
    const reply = await c.request('auth', { token: await signToken('alice', { channels: { subscribes: ['chat/#'] } }) });
    assert.equal(reply.op, 'error');
    assert.match(reply.message, /channels/);
    assert.equal((await c.closeOf()).code, 4500);
  });
});
