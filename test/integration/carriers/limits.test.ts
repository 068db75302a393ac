/**
 * Limits and bad input on fallback sessions: message rate and size (the
 * WebSocket answers), connection limits that count fallback sessions, the
 * slow consumer (a client that never polls), malformed batches (400/413/415),
 * and a graceful shutdown that closes fallback sessions.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  connect,
  connectAs,
  HttpClient,
  openRaw,
  openSession,
  poll,
  post,
  request,
  signToken,
  sleep,
  SseReader,
  startServer,
  until,
  upgrade,
  WAIT,
} from './helpers.js';

const auth = async (user: string) => ({ headers: { Authorization: `Bearer ${await signToken(user)}` } });

test('message rate: over it each message gets error 429; 20 in a row close the session with 4004', async (t) => {
  const { base } = await startServer(t, { config: { limits: { messageRate: { perSecond: 1, burst: 5 } } } });
  const client = await HttpClient.open(t, base, 'poll', await auth('rita'));
  await client.send(...Array.from({ length: 30 }, () => ({ op: 'ping' })));
  const { code, reason } = await client.closeOf();
  assert.deepEqual([code, reason], [4004, 'rate limit exceeded']);
  // 5 within the burst, 19 refused, the 20th refused in a row closes; the rest of the batch is dropped.
  assert.deepEqual(
    client.received.map((r) => (r.msg.op === 'error' ? r.msg.code : r.msg.op)),
    [...Array(5).fill('pong'), ...Array(19).fill(429), 'close'],
  );
  await until(() => client.gone || client.received.at(-1)?.msg.op === 'close', WAIT, 'the end');
  let status = 0;
  for (let i = 0; i < 50 && status !== 404; i++) {
    status = (await post(base, client.id, [{ op: 'ping' }])).status;
    if (status !== 404) await sleep(10);
  }
  assert.equal(status, 404);
});

test('message size: a message over maxMessageSize closes the session with 1009, as on WebSocket', async (t) => {
  const { base } = await startServer(t, { config: { limits: { maxMessageSize: 1024 } } });
  const client = await HttpClient.open(t, base, 'sse', await auth('sid'));
  await client.ok('sub', { channel: 'a' });
  await client.send({ op: 'pub', id: 9, channel: 'a', data: 'x'.repeat(2000) });
  assert.deepEqual(await client.closeOf(), { code: 1009, reason: 'message too big' });
});

test('bad input: 415 unless JSON, 400 for malformed JSON, non-arrays, 0 or 101 messages, non-objects; 413 over the body limit', async (t) => {
  const { base } = await startServer(t, { config: { limits: { maxMessageSize: 1000, messageRate: { perSecond: 50, burst: 200 } } } });
  const client = await HttpClient.open(t, base, 'poll', await auth('bo'));
  const id = client.id;
  const cases: Array<[string, unknown, Record<string, string>, number, RegExp]> = [
    ['text/plain', '[{"op":"ping"}]', { 'Content-Type': 'text/plain' }, 415, /Content-Type/],
    ['no type', '[{"op":"ping"}]', { 'Content-Type': '' }, 415, /Content-Type/],
    ['malformed', '[{"op":', {}, 400, /not valid JSON/],
    ['object', { op: 'ping' }, {}, 400, /array/],
    ['empty', [], {}, 400, /1-100 messages, got 0/],
    ['101', Array.from({ length: 101 }, () => ({ op: 'ping' })), {}, 400, /1-100 messages, got 101/],
    ['number', [{ op: 'ping' }, 1], {}, 400, /message 1 is not a JSON object/],
    ['null', [null], {}, 400, /message 0/],
    ['nested array', [[{ op: 'ping' }]], {}, 400, /message 0/],
    ['too large', JSON.stringify([{ op: 'pub', data: 'x'.repeat(200_000) }]), {}, 413, /body over/],
  ];
  for (const [what, body, headers, status, error] of cases) {
    const res = await post(base, id, typeof body === 'string' ? body : JSON.stringify(body), headers);
    assert.equal(res.status, status, what);
    assert.match(res.json().error, error, what);
  }
  // None of it touched the session: nothing was received, and it works.
  assert.deepEqual(client.pending(), []);
  await client.ok('sub', { channel: 'still/fine' });
  // 100 messages is fine.
  await client.send(...Array.from({ length: 100 }, () => ({ op: 'ping' })));
  await until(() => client.pending().filter((m) => m.op === 'pong').length === 100, WAIT, '100 pongs');
  // An invalid message inside a valid batch is answered like on WebSocket (error 400), not with HTTP 400.
  await client.send({ op: 'nope', id: 5 });
  const reply = await client.next((m) => m.op === 'error' && m.id === 5);
  assert.equal(reply.code, 400);
});

test('bad open requests: 415 unless JSON, 400 for an unknown transport or body; no session is created', async (t) => {
  const { base, server } = await startServer(t);
  const headers = (await auth('x')).headers;
  assert.equal((await openRaw(base, 'sse', { headers: { ...headers, 'Content-Type': 'text/plain' } })).status, 415);
  for (const body of ['{"transport":"websocket"}', '{}', '[]', 'nope', '{"transport":"sse","x":1}']) {
    const res = await openRaw(base, 'sse', { headers, body });
    assert.equal(res.status, 400, body);
  }
  assert.equal((await openRaw(base, 'sse', { headers, body: JSON.stringify({ transport: 'sse', pad: 'x'.repeat(2000) }) })).status, 413);
  assert.equal(server.hub.sessions.size, 0);
});

test('maxConnections counts fallback sessions and WebSocket connections together (503 with Retry-After)', async (t) => {
  const { base, url } = await startServer(t, { config: { limits: { maxConnections: 3 } } });
  const a = await openSession(t, base, 'sse', await auth('a'));
  await openSession(t, base, 'poll', await auth('b'));
  await connectAs(t, url, 'c');
  const refused = await openRaw(base, 'poll', await auth('d'));
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get('retry-after'), '5');
  assert.deepEqual(refused.json(), { error: 'too many connections' });
  assert.equal((await upgrade(base, '/rt')).status, 503);
  // Ending a session frees its slot.
  assert.equal((await request(`${base}/rt/session/${a}`, { method: 'DELETE' })).status, 204);
  let ws;
  for (let i = 0; i < 50 && !ws; i++) ws = await connect(t, url).catch(() => sleep(10).then(() => undefined));
  assert.ok(ws, 'a WebSocket connects once the session is gone');
});

test('maxConnectionsPerIp (429) and connectionRatePerIp (429) apply to fallback sessions', async (t) => {
  const one = await startServer(t, { config: { limits: { maxConnectionsPerIp: 2 } } });
  await openSession(t, one.base, 'sse', await auth('a'));
  await openSession(t, one.base, 'poll', await auth('b'));
  const perIp = await openRaw(one.base, 'poll', await auth('c'));
  assert.equal(perIp.status, 429);
  assert.equal((await upgrade(one.base, '/rt')).status, 429);

  const two = await startServer(t, { config: { limits: { connectionRatePerIp: { perSecond: 0.01, burst: 2 } } } });
  await openSession(t, two.base, 'sse', await auth('a'));
  await openSession(t, two.base, 'poll', await auth('b'));
  const rate = await openRaw(two.base, 'poll', await auth('c'));
  assert.equal(rate.status, 429);
  assert.deepEqual(rate.json(), { error: 'connecting too fast' });
  assert.equal(rate.headers.get('retry-after'), '1');
});

test('slow consumer: a client that never polls overflows its buffer and is closed 4003; other connections are unaffected', async (t) => {
  const { base, url, server } = await startServer(t, { config: { fallbacks: { bufferMessages: 20 } } });
  const ws = await connectAs(t, url, 'fast');
  await ws.ok('sub', { channel: 'feed' });
  const fastPoll = await HttpClient.open(t, base, 'poll', await auth('fastpoll'));
  await fastPoll.ok('sub', { channel: 'feed' });
  const slow = await HttpClient.open(t, base, 'poll', await auth('slow'));
  await slow.ok('sub', { channel: 'feed' });
  await slow.stop();
  // Let the server see the aborted poll go (else it may hand it the first publications, which the client never reads).
  await sleep(50);
  const dropped: string[] = [];
  const original = server.hub.observer.dropped.bind(server.hub.observer);
  server.hub.observer.dropped = (reason: string) => {
    dropped.push(reason);
    original(reason);
  };

  // One publication per turn: each turn leaves the slow session one more undelivered message.
  for (let i = 1; i <= 40; i++) {
    await server.publish('feed', i);
    await sleep(1);
  }
  assert.deepEqual((await ws.take('msg', 40)).map((m) => m.data), Array.from({ length: 40 }, (_, i) => i + 1));
  assert.deepEqual((await fastPoll.take('msg', 40)).map((m) => m.data), Array.from({ length: 40 }, (_, i) => i + 1));
  assert.deepEqual(dropped, ['slow-consumer']);

  // The slow client polls at last: what was buffered, then the close.
  const body = (await poll(base, slow.id, slow.ack)).json();
  const ops = body.messages.map((m: { msg: { op: string } }) => m.msg.op);
  assert.deepEqual(ops, [...Array(20).fill('msg'), 'close']);
  assert.deepEqual(body.messages.at(-1).msg, { op: 'close', code: 4003, reason: 'slow consumer' });
  await until(() => server.hub.sessions.size === 2, WAIT, 'the slow session to end');
  assert.equal((await poll(base, slow.id, 0)).status, 404);
  // The others still get what is published next (their 40 were taken above: this is the new one).
  await ws.ok('pub', { channel: 'feed', data: 'after' });
  assert.equal((await fastPoll.nextOp('msg')).data, 'after');
  assert.equal((await ws.nextOp('msg')).data, 'after');
  assert.deepEqual(
    fastPoll.pending().filter((m) => m.op === 'msg'),
    [],
  );
});

test('slow consumer by bytes: bufferBytes bounds an SSE session whose stream is gone', async (t) => {
  const { base, server } = await startServer(t, { config: { fallbacks: { bufferBytes: 4096 } } });
  const client = await HttpClient.open(t, base, 'sse', await auth('sb'));
  await client.ok('sub', { channel: 'feed' });
  await client.stop();
  await sleep(50);
  for (let i = 0; i < 20 && server.hub.sessions.size > 0; i++) {
    await server.publish('feed', 'y'.repeat(500));
    await sleep(2);
  }
  const stream = await SseReader.open(t, `${base}/rt/session/${client.id}/events`, { 'Last-Event-ID': String(client.ack) });
  await stream.waitFor(() => stream.isEnded, WAIT, 'the stream to end');
  const last = JSON.parse(stream.events.at(-1)!.data);
  assert.deepEqual(last, { op: 'close', code: 4003, reason: 'slow consumer' });
  const bytes = stream.events.slice(0, -1).reduce((n, e) => n + Buffer.byteLength(e.data), 0);
  assert.ok(bytes <= 4096 + 600, `${bytes} bytes were buffered`);
});

test('graceful shutdown: open streams and polls get closing + close 1001 at once; idle sessions get them on their next poll; new sessions 503', async (t) => {
  const { base, url, server } = await startServer(t, { config: { fallbacks: { pollTimeoutMs: 10_000 }, shutdown: { timeoutMs: 3000 } } });
  const ws = await connectAs(t, url, 'w');
  const sse = await HttpClient.open(t, base, 'sse', await auth('s'));
  const lp = await HttpClient.open(t, base, 'poll', await auth('p'));
  const idle = await HttpClient.open(t, base, 'poll', await auth('i'));
  for (const c of [ws, sse, lp, idle]) await c.ok('sub', { channel: 'a' });
  await idle.stop();
  await sleep(50);
  const codes: Array<[string, number]> = [];
  const original = server.hub.observer.connectionClosed.bind(server.hub.observer);
  server.hub.observer.connectionClosed = (kind: string, code: number) => {
    codes.push([kind, code]);
    original(kind, code);
  };

  let closed = false;
  const closing = server.close().then(() => {
    closed = true;
  });
  for (const c of [sse, lp]) {
    const push = await c.nextOp('closing');
    assert.equal(push.reason, 'server shutting down');
    assert.deepEqual(await c.closeOf(), { code: 1001, reason: 'server shutting down' });
  }
  // At once: while the shutdown still waits for the idle session (not at shutdown.timeoutMs).
  assert.equal(closed, false);
  assert.equal((await ws.closeOf()).code, 1001);
  assert.equal((await openRaw(base, 'poll', await auth('late'))).status, 503);
  // The idle session waits for its client (counted in the shutdown wait) and gets the same two messages.
  await sleep(100);
  assert.equal(server.hub.sessions.size, 1);
  const body = (await poll(base, idle.id, idle.ack)).json();
  assert.deepEqual(
    body.messages.map((m: { msg: { op: string; code?: number } }) => [m.msg.op, m.msg.code]),
    [
      ['closing', undefined],
      ['close', 1001],
    ],
  );
  await closing;
  // Every session ended with its 1001, the idle one included: none was left for the timeout to terminate (1006).
  assert.deepEqual(codes.sort(), [
    ['poll', 1001],
    ['poll', 1001],
    ['sse', 1001],
    ['websocket', 1001],
  ]);
  assert.equal(server.hub.sessions.size, 0);
});

test('graceful shutdown terminates fallback sessions that never come back, after shutdown.timeoutMs', async (t) => {
  const { base, server } = await startServer(t, { config: { shutdown: { timeoutMs: 300 } } });
  const idle = await HttpClient.open(t, base, 'poll', await auth('i'));
  await idle.stop();
  const codes: number[] = [];
  const original = server.hub.observer.connectionClosed.bind(server.hub.observer);
  server.hub.observer.connectionClosed = (kind: string, code: number) => {
    codes.push(code);
    original(kind, code);
  };
  const started = Date.now();
  await server.close();
  const took = Date.now() - started;
  // Terminated (1006: no close message was taken), and not before the timeout.
  assert.deepEqual(codes, [1006]);
  assert.ok(took >= 300, `shutdown took ${took} ms, less than shutdown.timeoutMs`);
  assert.equal(server.hub.sessions.size, 0);
});
