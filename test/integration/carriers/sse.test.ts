/**
 * SSE: resume with Last-Event-ID (header or `lastEventId`), one stream at a
 * time, keep-alive comments, the grace period after a drop (then 1006:
 * presence leave), and a resume point that is no longer buffered.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { connectAs, HttpClient, openSession, post, request, signToken, sleep, SseReader, startServer, until, WAIT, within } from './helpers.js';

const auth = async (user: string) => ({ headers: { Authorization: `Bearer ${await signToken(user)}` } });

/** Data of the `msg` pushes received so far, in order. */
function published(client: HttpClient): unknown[] {
  return client.received.filter((r) => r.msg.op === 'msg').map((r) => r.msg.data);
}

test('resume with Last-Event-ID replays exactly the messages missed while the stream was down, then live ones', async (t) => {
  const { base, server } = await startServer(t);
  const client = await HttpClient.open(t, base, 'sse', await auth('sam'));
  await client.ok('sub', { channel: 'feed' });
  for (let i = 1; i <= 3; i++) await server.publish('feed', i);
  await until(() => published(client).length === 3, WAIT, 'three messages');
  const seen = client.ack;

  // Whether or not the server noticed the drop before these, they are replayed from Last-Event-ID.
  await client.stop();
  for (let i = 4; i <= 6; i++) await server.publish('feed', i);
  await sleep(50);
  await client.start(t); // sends Last-Event-ID: <seen>
  await until(() => published(client).length === 6, WAIT, 'the missed messages');
  await server.publish('feed', 7);
  await until(() => published(client).length === 7, WAIT, 'a live message');
  assert.deepEqual(published(client), [1, 2, 3, 4, 5, 6, 7]);
  // Sequence numbers continue without a gap or a repeat.
  const seqs = client.received.map((r) => r.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => seqs[0]! + i));
  assert.ok(seqs.includes(seen + 1));
});

test('a stream that asks for less than it was sent gets the rest again (the lastEventId query parameter works too)', async (t) => {
  const { base, server } = await startServer(t);
  const id = await openSession(t, base, 'sse', await auth('sue'));
  await post(base, id, [{ op: 'sub', id: 1, channel: 'feed' }]);
  const first = await SseReader.open(t, `${base}/rt/session/${id}/events`);
  await first.next(); // ok (seq 1)
  for (let i = 1; i <= 4; i++) await server.publish('feed', i);
  for (let i = 0; i < 4; i++) await first.next();
  assert.equal(first.lastEventId, '5');

  // Say only 3 arrived: 4 and 5 come again, on the new stream; the old one is ended (one stream at a time).
  const second = await SseReader.open(t, `${base}/rt/session/${id}/events?lastEventId=3`);
  const again = [await second.next(), await second.next()];
  assert.deepEqual(again.map((e) => [e.id, JSON.parse(e.data).data]), [['4', 3], ['5', 4]]);
  await within(first.end, WAIT, 'the replaced stream to end');
  // The header wins over the query parameter.
  const third = await SseReader.open(t, `${base}/rt/session/${id}/events?lastEventId=1`, { 'Last-Event-ID': '4' });
  assert.deepEqual([(await third.next()).id], ['5']);
  await server.publish('feed', 5);
  assert.equal(JSON.parse((await third.next()).data).data, 5);
  await within(second.end, WAIT, 'the second stream to end');
});

test('Last-Event-ID beyond what was sent or not a number: 400, and the session goes on', async (t) => {
  const { base } = await startServer(t);
  const id = await openSession(t, base, 'sse', await auth('x'));
  const ahead = await request(`${base}/rt/session/${id}/events`, { headers: { 'Last-Event-ID': '5' } });
  assert.equal(ahead.status, 400);
  assert.match(ahead.json().error, /never sent/);
  assert.equal((await request(`${base}/rt/session/${id}/events?lastEventId=abc`)).status, 400);
  assert.equal((await request(`${base}/rt/session/${id}/events`, { headers: { 'Last-Event-ID': '-1' } })).status, 400);
  await post(base, id, [{ op: 'ping' }]);
  const stream = await SseReader.open(t, `${base}/rt/session/${id}/events`);
  assert.deepEqual(JSON.parse((await stream.next()).data), { op: 'pong' });
});

test('keep-alive comments every sseKeepAliveMs and the configured retry', async (t) => {
  const { base } = await startServer(t, { config: { fallbacks: { sseKeepAliveMs: 40, sseRetryMs: 750 } } });
  const id = await openSession(t, base, 'sse', await auth('k'));
  const stream = await SseReader.open(t, `${base}/rt/session/${id}/events`);
  await stream.waitFor(() => stream.comments.length >= 3, WAIT, 'three keep-alive comments');
  assert.deepEqual(new Set(stream.comments), new Set(['keep-alive']));
  assert.deepEqual(stream.retries, [750]);
  assert.equal(stream.events.length, 0);
});

test('after the stream drops, the session lingers for graceMs (a reconnect keeps it), then closes as 1006: presence leave', async (t) => {
  const { base, url, server } = await startServer(t, {
    config: { fallbacks: { graceMs: 300 }, namespaces: [{ prefix: 'room', presence: 'full' }] },
  });
  const watcher = await connectAs(t, url, 'watcher');
  await watcher.ok('sub', { channel: 'room/1', presence: true });
  const client = await HttpClient.open(t, base, 'sse', await auth('gina'));
  await client.ok('sub', { channel: 'room/1', presence: true });
  const isGina = (m: Record<string, any>) => m.clients.some((c: { user: string }) => c.user === 'gina');
  await watcher.next((m) => m.op === 'join' && isGina(m), WAIT, 'gina joining');
  const codes: number[] = [];
  const original = server.hub.observer.connectionClosed.bind(server.hub.observer);
  server.hub.observer.connectionClosed = (kind: string, code: number) => {
    codes.push(code);
    original(kind, code);
  };

  // Dropped and back within the grace period: nothing happened.
  await client.stop();
  await sleep(150);
  await client.start(t);
  await sleep(250);
  assert.equal(server.hub.sessions.size, 2);
  await server.publish('room/1', 'still here');
  assert.equal((await client.nextOp('msg')).data, 'still here');

  // Dropped for good.
  const dropped = Date.now();
  await client.stop();
  await watcher.next((m) => m.op === 'leave' && isGina(m), WAIT, 'gina leaving');
  const after = Date.now() - dropped;
  assert.ok(after >= 250, `left after ${after} ms`);
  assert.deepEqual(codes, [1006]);
  assert.equal(server.hub.sessions.size, 1);
  const presence = await watcher.ok('presence', { channel: 'room/1' });
  assert.deepEqual(Object.values(presence.clients).map((c: any) => c.user), ['watcher']);
  assert.equal((await request(`${base}/rt/session/${client.id}/events`)).status, 404);
});

test('a session nobody ever streams from closes after the grace period too', async (t) => {
  const { base, server } = await startServer(t, { config: { fallbacks: { graceMs: 100 } } });
  await openSession(t, base, 'sse', await auth('ghost'));
  assert.equal(server.hub.sessions.size, 1);
  await until(() => server.hub.sessions.size === 0, WAIT, 'the session to expire');
});

/** An SSE session buffering 5 messages that was sent 10 (sequence numbers 2 to 11), its stream dropped. */
async function tenSentFiveBuffered(t: TestContext) {
  const { base, server } = await startServer(t, { config: { fallbacks: { bufferMessages: 5 } } });
  const client = await HttpClient.open(t, base, 'sse', await auth('lou'));
  await client.ok('sub', { channel: 'feed' });
  for (let i = 1; i <= 10; i++) await server.publish('feed', i);
  await until(() => published(client).length === 10, WAIT, 'ten messages');
  await client.stop();
  return { base, server, client };
}

test('a reconnect asking for messages no longer buffered gets the session closed (4003, resume point lost) and nothing else', async (t) => {
  const { base, server, client } = await tenSentFiveBuffered(t);
  // The last 5 delivered are still buffered: asking from seq 2 (the ok was 1) is too far back.
  const stream = await SseReader.open(t, `${base}/rt/session/${client.id}/events`, { 'Last-Event-ID': '2' });
  const event = await stream.next();
  const close = JSON.parse(event.data);
  assert.equal(close.op, 'close');
  assert.equal(close.code, 4003);
  assert.match(close.reason, /resume point lost.*since/);
  await within(stream.end, WAIT, 'the stream to end');
  assert.equal(stream.events.length, 1);
  await until(() => server.hub.sessions.size === 0, WAIT, 'the session to end');
});

test('a reconnect within the buffered window resumes even after older messages were dropped to make room', async (t) => {
  const { base, server, client } = await tenSentFiveBuffered(t);
  const stream = await SseReader.open(t, `${base}/rt/session/${client.id}/events`, { 'Last-Event-ID': '8' });
  assert.deepEqual([(await stream.next()).id, (await stream.next()).id, (await stream.next()).id], ['9', '10', '11']);
});
