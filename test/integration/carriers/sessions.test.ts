/**
 * Fallback sessions: opening, the same delivery as WebSocket, the SSE wire
 * format, ending with DELETE, 404 for unknown sessions, metrics labels,
 * routing errors, CORS and the Origin check.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  api,
  connectAs,
  HttpClient,
  openRaw,
  openSession,
  post,
  poll,
  request,
  signToken,
  SseReader,
  startServer,
  until,
  WAIT,
} from './helpers.js';

const bearer = async (user: string) => ({ Authorization: `Bearer ${await signToken(user)}` });

test('POST /rt/session opens a session: 201 with a 128-bit base64url id, the transport, pollTimeoutMs and retryMs', async (t) => {
  const { base } = await startServer(t, { config: { fallbacks: { pollTimeoutMs: 1234, sseRetryMs: 567 } } });
  const a = await openRaw(base, 'sse', { headers: await bearer('alice') });
  assert.equal(a.status, 201);
  assert.match(a.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(a.headers.get('cache-control'), 'no-store');
  const body = a.json();
  // The node holding the session (its broker node id), a dot, 128 random bits.
  assert.match(body.session, /^[0-9a-z]{4,32}\.[A-Za-z0-9_-]{22}$/);
  assert.equal(Buffer.from(body.session.split('.')[1], 'base64url').length, 16);
  assert.deepEqual({ ...body, session: 'x' }, { session: 'x', transport: 'sse', pollTimeoutMs: 1234, retryMs: 567 });
  const b = await openRaw(base, 'poll', { headers: await bearer('alice') });
  assert.equal(b.json().transport, 'poll');
  assert.notEqual(b.json().session, body.session);
  for (const id of [body.session, b.json().session]) assert.equal((await request(`${base}/rt/session/${id}`, { method: 'DELETE' })).status, 204);
});

test('a publication reaches WebSocket, SSE and long-polling subscribers alike (same message, same offset)', async (t) => {
  const { base, url, server } = await startServer(t);
  const ws = await connectAs(t, url, 'walter');
  const sse = await HttpClient.open(t, base, 'sse', { headers: await bearer('sarah') });
  const lp = await HttpClient.open(t, base, 'poll', { headers: await bearer('paul') });
  const clients = [ws, sse, lp];
  for (const c of clients) await c.ok('sub', { channel: 'chat/lobby' });

  // Published by each kind of client in turn, then by the server: everyone gets every one, identically.
  await ws.ok('pub', { channel: 'chat/lobby', data: { text: 'from ws' } });
  await sse.ok('pub', { channel: 'chat/lobby', data: { text: 'from sse' } });
  await lp.ok('pub', { channel: 'chat/lobby', data: { text: 'from poll' } });
  await server.publish('chat/lobby', { text: 'from the server' });
  const got = await Promise.all(clients.map((c) => Promise.all([1, 2, 3, 4].map(() => c.nextOp('msg')))));
  assert.deepEqual(got[1], got[0]);
  assert.deepEqual(got[2], got[0]);
  assert.deepEqual(
    got[0].map((m) => [m.offset, m.data.text, m.from?.user]),
    [
      [1, 'from ws', 'walter'],
      [2, 'from sse', 'sarah'],
      [3, 'from poll', 'paul'],
      [4, 'from the server', undefined],
    ],
  );
  assert.equal(server.hub.sessions.size, 3);
});

test('SSE wire format: headers, retry first, then id: <seq> and one data: line per message', async (t) => {
  const { base } = await startServer(t, { config: { fallbacks: { sseRetryMs: 1500 } } });
  const id = await openSession(t, base, 'sse', { headers: await bearer('alice') });
  assert.equal((await post(base, id, [{ op: 'ping' }, { op: 'sub', id: 1, channel: 'a' }])).status, 204);
  const stream = await SseReader.open(t, `${base}/rt/session/${id}/events`);
  assert.equal(stream.status, 200);
  assert.equal(stream.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.equal(stream.headers.get('cache-control'), 'no-store');
  assert.equal(stream.headers.get('x-accel-buffering'), 'no');
  const pong = await stream.next();
  const ok = await stream.next();
  assert.ok(stream.raw.startsWith('retry: 1500\n\n'), JSON.stringify(stream.raw));
  assert.deepEqual(stream.retries, [1500]);
  assert.deepEqual([pong.id, JSON.parse(pong.data)], ['1', { op: 'pong' }]);
  assert.equal(ok.id, '2');
  assert.equal(JSON.parse(ok.data).op, 'ok');
  assert.match(stream.raw, /\n\nid: 1\ndata: \{"op":"pong"\}\n\nid: 2\ndata: \{"op":"ok","id":1,/);
});

test('DELETE ends the session like a close 1000: presence leave, then 404 on every route', async (t) => {
  const { base, url, server } = await startServer(t, { config: { namespaces: [{ prefix: 'room', presence: 'full' }] } });
  const watcher = await connectAs(t, url, 'watcher');
  await watcher.ok('sub', { channel: 'room/1', presence: true });
  const lp = await HttpClient.open(t, base, 'poll', { headers: await bearer('paula') });
  await lp.ok('sub', { channel: 'room/1', presence: true });
  await watcher.next((m) => m.op === 'join' && m.clients.some((c: { user: string }) => c.user === 'paula'), WAIT, 'paula joining');
  const closed: number[] = [];
  const original = server.hub.observer.connectionClosed.bind(server.hub.observer);
  server.hub.observer.connectionClosed = (kind: string, code: number) => {
    closed.push(code);
    original(kind, code);
  };
  await lp.stop();
  assert.equal((await request(`${base}/rt/session/${lp.id}`, { method: 'DELETE' })).status, 204);
  const leave = await watcher.nextOp('leave');
  assert.equal(leave.clients[0].user, 'paula');
  assert.deepEqual(closed, [1000]);
  assert.equal(server.hub.sessions.size, 1);
  for (const [method, path] of [
    ['POST', ''],
    ['DELETE', ''],
    ['GET', '/poll?ack=0'],
    ['GET', '/events'],
  ] as const) {
    const res = await request(`${base}/rt/session/${lp.id}${path}`, {
      method,
      headers: { 'Content-Type': 'application/json' },
      body: method === 'POST' ? '[{"op":"ping"}]' : undefined,
    });
    assert.equal(res.status, 404, `${method} ${path}`);
    assert.deepEqual(res.json(), { error: 'no such session' });
  }
});

test('unknown and malformed session ids answer 404 {"error": "no such session"}', async (t) => {
  const { base } = await startServer(t);
  for (const id of ['AAAAAAAAAAAAAAAAAAAAAA', 'not-an-id', 'x'.repeat(300)]) {
    for (const [method, path] of [
      ['GET', '/poll'],
      ['GET', '/events'],
      ['DELETE', ''],
    ] as const) {
      const res = await request(`${base}/rt/session/${id}${path}`, { method });
      assert.equal(res.status, 404, `${method} ${id}${path}`);
      assert.deepEqual(res.json(), { error: 'no such session' });
    }
    const res = await post(base, id, [{ op: 'ping' }]);
    assert.equal(res.status, 404);
  }
});

test('routing: wrong method 405 with Allow, the other transport\'s route 409, unknown sub-route 404', async (t) => {
  const { base } = await startServer(t);
  const sse = await openSession(t, base, 'sse', { headers: await bearer('a') });
  const lp = await openSession(t, base, 'poll', { headers: await bearer('b') });
  const get = await request(`${base}/rt/session`);
  assert.equal(get.status, 405);
  assert.match(get.headers.get('allow') ?? '', /POST/);
  assert.equal((await request(`${base}/rt/session/${sse}/events`, { method: 'POST' })).status, 405);
  assert.equal((await request(`${base}/rt/session/${lp}`, { method: 'PUT' })).status, 405);
  assert.equal((await poll(base, sse, 0)).status, 409);
  assert.equal((await request(`${base}/rt/session/${lp}/events`)).status, 409);
  assert.equal((await request(`${base}/rt/session/${lp}/other`)).status, 404);
});

test('metrics and stats count fallback sessions under transport="sse" / "poll"', async (t) => {
  const { base, server } = await startServer(t);
  const sse = await HttpClient.open(t, base, 'sse', { headers: await bearer('a') });
  await HttpClient.open(t, base, 'poll', { headers: await bearer('b') });
  await HttpClient.open(t, base, 'poll', { headers: await bearer('c') });
  const metrics = (await request(`${base}/metrics`)).text;
  assert.match(metrics, /switchboard_connections\{transport="sse"\} 1\b/);
  assert.match(metrics, /switchboard_connections\{transport="poll"\} 2\b/);
  assert.equal((await api(base, '/api/stats')).json().connections, 3);
  await sse.stop();
  await request(`${base}/rt/session/${sse.id}`, { method: 'DELETE' });
  await until(() => server.hub.sessions.size === 2, WAIT, 'the SSE session to end');
  assert.match((await request(`${base}/metrics`)).text, /switchboard_connections\{transport="sse"\} 0\b/);
});

test('fallbacks.enabled: false leaves <path>/session to the app (404)', async (t) => {
  const { base } = await startServer(t, { config: { fallbacks: { enabled: false } } });
  assert.equal((await openRaw(base, 'poll')).status, 404);
});

test('Origin: a foreign origin gets 403 on open and on every request of a session; the own origin and listed ones pass, with CORS', async (t) => {
  const { base, port, logs } = await startServer(t, { config: { allowedOrigins: ['https://app.example.com'] } });
  const evil = { Origin: 'https://evil.example' };
  const refused = await openRaw(base, 'poll', { headers: { ...evil, ...(await bearer('a')) } });
  assert.equal(refused.status, 403);
  assert.deepEqual(refused.json(), { error: 'origin not allowed' });
  assert.ok(logs.some((l) => l.msg === 'origin refused' && l.origin === 'https://evil.example'));

  // Opened by a non-browser client (no Origin): a page of another origin still cannot use it.
  const id = await openSession(t, base, 'poll', { headers: await bearer('a') });
  assert.equal((await post(base, id, [{ op: 'ping' }], evil)).status, 403);
  assert.equal((await request(`${base}/rt/session/${id}/poll?ack=0`, { headers: evil })).status, 403);
  assert.equal((await request(`${base}/rt/session/${id}`, { method: 'DELETE', headers: evil })).status, 403);
  assert.equal((await request(`${base}/rt/session/${id}`, { method: 'OPTIONS', headers: evil })).status, 403);
  // The server's own origin passes.
  assert.equal((await post(base, id, [{ op: 'ping' }], { Origin: `http://127.0.0.1:${port}` })).status, 204);

  // A listed origin: preflight and answers carry CORS headers for it.
  const app = { Origin: 'https://app.example.com' };
  const preflight = await request(`${base}/rt/session`, {
    method: 'OPTIONS',
    headers: { ...app, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example.com');
  assert.equal(preflight.headers.get('access-control-allow-credentials'), 'true');
  assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /POST/);
  assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /Content-Type/i);
  const opened = await openRaw(base, 'sse', { headers: { ...app, ...(await bearer('b')) } });
  assert.equal(opened.status, 201);
  assert.equal(opened.headers.get('access-control-allow-origin'), 'https://app.example.com');
  assert.equal(opened.headers.get('vary'), 'Origin');
  const stream = await SseReader.open(t, `${base}/rt/session/${opened.json().session}/events`, app);
  assert.equal(stream.headers.get('access-control-allow-origin'), 'https://app.example.com');
  await stream.close();
  await request(`${base}/rt/session/${opened.json().session}`, { method: 'DELETE' });
});

test('a refused Origin gets no CORS headers on any fallback route, preflights included: the page cannot read the 403', async (t) => {
  const { base } = await startServer(t, { config: { allowedOrigins: ['https://app.example.com'] } });
  const evil = { Origin: 'https://evil.example' };
  const id = await openSession(t, base, 'poll', { headers: await bearer('a') });
  const session = `${base}/rt/session/${id}`;
  const preflight = { ...evil, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' };
  const answers = {
    open: await openRaw(base, 'poll', { headers: { ...evil, ...(await bearer('a')) } }),
    'open preflight': await request(`${base}/rt/session`, { method: 'OPTIONS', headers: preflight }),
    messages: await post(base, id, [{ op: 'ping' }], evil),
    'session preflight': await request(session, { method: 'OPTIONS', headers: preflight }),
    events: await request(`${session}/events`, { headers: { ...evil, Accept: 'text/event-stream' } }),
    poll: await request(`${session}/poll?ack=0`, { headers: evil }),
    delete: await request(session, { method: 'DELETE', headers: evil }),
    'unknown session': await request(`${base}/rt/session/${'x'.repeat(22)}/poll`, { headers: evil }),
    'unknown route': await request(`${base}/rt/session/${id}/nope`, { headers: evil }),
  };
  for (const [route, res] of Object.entries(answers)) {
    assert.equal(res.status, 403, `${route}: ${res.status} ${res.text}`);
    assert.deepEqual(res.json(), { error: 'origin not allowed' }, route);
    const cors = [...res.headers.keys()].filter((h) => h.startsWith('access-control-'));
    assert.deepEqual(cors, [], `${route} answers a refused origin with ${cors.join(', ')}`);
  }
  // The session is untouched: its owner still uses it.
  assert.equal((await post(base, id, [{ op: 'ping' }])).status, 204);
});

test('POST /api/disconnect kicks the user\'s fallback sessions with the final close 4503, as it closes their WebSockets', async (t) => {
  const { base, url, server } = await startServer(t);
  const ws = await connectAs(t, url, 'kim');
  const sse = await HttpClient.open(t, base, 'sse', { headers: await bearer('kim') });
  const lp = await HttpClient.open(t, base, 'poll', { headers: await bearer('kim') });
  await HttpClient.open(t, base, 'poll', { headers: await bearer('other') });
  const res = await api(base, '/api/disconnect', { user: 'kim' });
  assert.equal(res.json().disconnected, 3);
  assert.deepEqual(await sse.closeOf(), { code: 4503, reason: 'disconnected by the server' });
  assert.deepEqual(await lp.closeOf(), { code: 4503, reason: 'disconnected by the server' });
  assert.equal((await ws.closeOf()).code, 4503);
  await until(() => server.hub.sessions.size === 1, WAIT, 'the kicked sessions to end');
  await until(() => sse.stream?.isEnded === true, WAIT, 'the SSE stream to be ended by the server');
});
