/**
 * Fallback sessions authenticate and are authorized exactly as WebSocket
 * connections: Bearer header, one-time ticket, cookie, or a first `auth`
 * message; per-channel permissions from the token; the same error replies.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, connect, connectAs, HttpClient, openRaw, post, request, signToken, startServer, WAIT, type Kind } from './helpers.js';

const KINDS: Kind[] = ['sse', 'poll'];

/** The user a session speaks for, as others see it: from `from` on its publication. */
async function userOf(client: HttpClient, watcher: { nextOp(op: string): Promise<Record<string, any>> }): Promise<string> {
  await client.ok('pub', { channel: 'who', data: 1 });
  return (await watcher.nextOp('msg')).from.user;
}

/** The status and error of a request on a session (an event stream that opens is not read: it would not end). */
async function answer(url: string, init: RequestInit = {}): Promise<{ status: number; error?: string }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(WAIT) });
  if (/^text\/event-stream/.test(res.headers.get('content-type') ?? '')) {
    await res.body?.cancel();
    return { status: res.status };
  }
  const text = await res.text();
  return { status: res.status, ...(text.startsWith('{') ? { error: JSON.parse(text).error } : {}) };
}

const MISMATCH = { status: 403, error: "credential does not match the session's user" };

for (const kind of KINDS) {
  test(`${kind}: a session is bound to its user: another user's Bearer token or cookie on any of its routes gets 403 and changes nothing`, async (t) => {
    const { base, url } = await startServer(t);
    const watcher = await connectAs(t, url, 'watcher');
    await watcher.ok('sub', { channel: 'who' });
    const alice = await HttpClient.open(t, base, kind, { headers: { Authorization: `Bearer ${await signToken('alice')}` } });
    const session = `${base}/rt/session/${alice.id}`;
    const bearer = { Authorization: `Bearer ${await signToken('mallory')}` };
    const cookie = { Cookie: `sb_token=${await signToken('mallory')}` };
    const forged = (id: string) => JSON.stringify([{ op: 'pub', id, channel: 'who', data: 'forged' }]);
    const receive = kind === 'sse' ? `${session}/events` : `${session}/poll?ack=${alice.ack}`;
    const answers = {
      'POST, Bearer': await answer(session, { method: 'POST', headers: { ...bearer, 'Content-Type': 'application/json' }, body: forged('b') }),
      'POST, cookie': await answer(session, { method: 'POST', headers: { ...cookie, 'Content-Type': 'application/json' }, body: forged('c') }),
      'receive, Bearer': await answer(receive, { headers: { ...bearer, Accept: 'text/event-stream' } }),
      'receive, cookie': await answer(receive, { headers: { ...cookie, Accept: 'text/event-stream' } }),
      'DELETE, Bearer': await answer(session, { method: 'DELETE', headers: bearer }),
      'DELETE, cookie': await answer(session, { method: 'DELETE', headers: cookie }),
    };
    for (const [what, got] of Object.entries(answers)) assert.deepEqual(got, MISMATCH, what);

    // Nothing was done: the session is alive and still alice's, with her credential or without any.
    assert.equal((await post(base, alice.id, [{ op: 'ping' }], { Authorization: `Bearer ${await signToken('alice', { ttl: 60 })}` })).status, 204);
    await alice.ok('pub', { channel: 'who', data: 'mine' });
    const msg = await watcher.nextOp('msg');
    assert.deepEqual([msg.data, msg.from.user], ['mine', 'alice']);
    assert.deepEqual(watcher.pending(), [], 'a forged publication went out');
    assert.equal(alice.isClosed, false);
  });

  test(`${kind}: a session opened without credentials is its auth message's user's; a credential that does not verify, or none, is not checked`, async (t) => {
    const { base } = await startServer(t);
    const client = await HttpClient.open(t, base, kind);
    const session = `${base}/rt/session/${client.id}`;
    const aliceBearer = { Authorization: `Bearer ${await signToken('alice')}` };
    // Before its auth the session speaks for nobody: a valid credential of anyone is not its user's.
    assert.deepEqual(await answer(session, { method: 'POST', headers: { ...aliceBearer, 'Content-Type': 'application/json' }, body: '[{"op":"ping"}]' }), MISMATCH);
    await client.ok('auth', { token: await signToken('alice') });
    assert.equal((await post(base, client.id, [{ op: 'ping' }], aliceBearer)).status, 204);
    assert.deepEqual(await answer(session, { method: 'DELETE', headers: { Cookie: `sb_token=${await signToken('bob')}` } }), MISMATCH);
    // Credentials that prove nothing: an expired token (a cookie the page did not renew), garbage.
    const unproven: Array<Record<string, string>> = [{ Authorization: `Bearer ${await signToken('bob', { ttl: -60 })}` }, { Cookie: 'sb_token=garbage' }, { Authorization: 'Bearer x.y.z' }];
    for (const headers of unproven) {
      assert.equal((await post(base, client.id, [{ op: 'ping' }], headers)).status, 204, JSON.stringify(headers));
    }
    await client.ok('sub', { channel: 'x' });
    assert.equal(client.isClosed, false);
  });

  test(`${kind}: credentials at open — Bearer header, one-time ticket, cookie — set the identity; bad ones get 401`, async (t) => {
    const { base, url } = await startServer(t);
    const watcher = await connectAs(t, url, 'watcher');
    await watcher.ok('sub', { channel: 'who' });

    const byHeader = await HttpClient.open(t, base, kind, { headers: { Authorization: `Bearer ${await signToken('henry')}` } });
    assert.equal(await userOf(byHeader, watcher), 'henry');

    const ticket = (await request(`${base}/api/ticket`, { method: 'POST', headers: { Authorization: `Bearer ${await signToken('tina')}` } })).json().ticket;
    const byTicket = await HttpClient.open(t, base, kind, { query: `?ticket=${ticket}` });
    assert.equal(await userOf(byTicket, watcher), 'tina');
    const reused = await openRaw(base, kind, { query: `?ticket=${ticket}` });
    assert.equal(reused.status, 401);
    assert.deepEqual(reused.json(), { error: 'invalid or used ticket' });

    const byCookie = await HttpClient.open(t, base, kind, { headers: { Cookie: `other=1; sb_token=${await signToken('carla')}` } });
    assert.equal(await userOf(byCookie, watcher), 'carla');

    const forged = await openRaw(base, kind, { headers: { Authorization: `Bearer ${await signToken('mallory', { secret: 'x'.repeat(40) })}` } });
    assert.equal(forged.status, 401);
    const expired = await openRaw(base, kind, { headers: { Authorization: `Bearer ${await signToken('old', { ttl: -60 })}` } });
    assert.equal(expired.status, 401);
    assert.deepEqual(expired.json(), { error: 'token expired' });
  });

  test(`${kind}: first-message auth — requests before it get 401, auth answers like WebSocket, a bad token closes 4500`, async (t) => {
    const { base } = await startServer(t);
    const anon = await HttpClient.open(t, base, kind);
    const early = await anon.request('sub', { channel: 'x' });
    assert.deepEqual([early.op, early.code, early.message], ['error', 401, 'send auth first']);
    const ok = await anon.ok('auth', { token: await signToken('fiona') });
    assert.equal(ok.user, 'fiona');
    assert.equal(typeof ok.client, 'string');
    assert.ok(ok.expiresIn > 3_000_000);
    await anon.ok('sub', { channel: 'x' });

    const bad = await HttpClient.open(t, base, kind);
    const reply = await bad.request('auth', { token: 'not.a.jwt' });
    assert.equal(reply.op, 'error');
    assert.equal(reply.code, 401);
    assert.equal((await bad.closeOf()).code, 4500);
  });

  test(`${kind}: no auth message within auth.authTimeoutMs closes 4001`, async (t) => {
    const { base } = await startServer(t, { config: { auth: { authTimeoutMs: 150 } } });
    const client = await HttpClient.open(t, base, kind);
    assert.deepEqual(await client.closeOf(), { code: 4001, reason: 'no auth message in time' });
  });
}

test('permissions from the token apply to fallback sessions exactly as to WebSocket connections', async (t) => {
  const { base, url } = await startServer(t);
  const token = () => signToken('pat', { channels: { subscribe: ['chat/#'], publish: ['chat/lobby'] } });
  const ws = await connect(t, url);
  await ws.ok('auth', { token: await token() });
  const sse = await HttpClient.open(t, base, 'sse', { headers: { Authorization: `Bearer ${await token()}` } });
  const lp = await HttpClient.open(t, base, 'poll', { headers: { Authorization: `Bearer ${await token()}` } });
  const answers = [];
  for (const client of [ws, sse, lp]) {
    const replies = [];
    for (const [op, fields] of [
      ['sub', { channel: 'chat/lobby' }],
      ['sub', { channel: 'news' }],
      ['pub', { channel: 'chat/lobby', data: 1 }],
      ['pub', { channel: 'chat/other', data: 1 }],
      ['history', { channel: 'chat/lobby' }],
      ['presence', { channel: 'secret' }],
    ] as const) {
      const r = await client.request(op, fields);
      replies.push(r.op === 'ok' ? 'ok' : `${r.code} ${r.message}`);
    }
    answers.push(replies);
  }
  assert.deepEqual(answers[0], ['ok', '403 not allowed to subscribe news', 'ok', '403 not allowed to publish chat/other', 'ok', '403 not allowed to presence secret']);
  assert.deepEqual(answers[1], answers[0]);
  assert.deepEqual(answers[2], answers[0]);
});

test('anonymous sessions are allowed only with auth.anonymous, and only what the namespace allows', async (t) => {
  const { base } = await startServer(t, {
    config: { auth: { anonymous: true }, namespaces: [{ prefix: 'public', anonymousSubscribe: true }] },
  });
  const anon = await HttpClient.open(t, base, 'poll');
  await anon.ok('sub', { channel: 'public/news' });
  const denied = await anon.request('sub', { channel: 'private' });
  assert.equal(denied.code, 403);
  const pub = await anon.request('pub', { channel: 'public/news', data: 1 });
  assert.equal(pub.code, 403);
  const res = await api(base, '/api/stats');
  assert.equal(res.json().connections, 1);
});
