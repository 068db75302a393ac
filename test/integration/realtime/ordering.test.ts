/**
 * Requests on one connection run in the order they came (docs/protocol.md,
 * "Requests and replies"): a client may pipeline `auth`, `sub` and `pub`
 * without waiting for replies, over WebSocket and in a long-polling batch;
 * an `rpc` does not hold up what follows; what is still queued when the
 * connection closes never runs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openSession, poll, post } from '../carriers/helpers.js';
import { connect, signToken, sleep, SlowHistoryBroker, startRealtime, until, WAIT, type Namespace } from './helpers.js';

const NAMESPACES: Namespace[] = [
  { prefix: 'chat', history: { size: 100, ttlMs: 0 } },
  { prefix: 'live' }, // no history
];

test('auth, sub and pub sent at once over WebSocket: answered in order, and the client gets its own publication', async (t) => {
  for (const channel of ['chat/pipe', 'live/pipe']) {
    const rt = await startRealtime(t, NAMESPACES);
    const c = await connect(t, rt.url);
    c.send({ op: 'auth', id: 1, token: await signToken('alice') });
    c.send({ op: 'sub', id: 2, channel });
    c.send({ op: 'pub', id: 3, channel, data: 'mine' });
    c.send({ op: 'history', id: 4, channel });
    await c.waitFor((m) => m.id === 4, WAIT, 'the fourth reply');
    await c.waitFor((m) => m.op === 'msg', WAIT, 'the publication');
    const seen = c.received.map((m) => (m.op === 'msg' ? `msg ${String(m.data)}` : `${m.op} ${m.id}`));
    // Replies in request order (the publication's own push may come before its ack).
    assert.deepEqual(seen.filter((x) => !x.startsWith('msg')), ['ok 1', 'ok 2', 'ok 3', 'ok 4'], `${channel}: ${JSON.stringify(c.received)}`);
    assert.ok(seen.includes('msg mine'), `${channel}: its own publication, live: ${JSON.stringify(seen)}`);
    const sub = c.received.find((m) => m.id === 2)!;
    assert.equal(sub.position.offset, 0, `${channel}: the sub ran before the pub`);
  }
});

test('the same in one long-polling batch: replies in request order, then the publication', async (t) => {
  const rt = await startRealtime(t, NAMESPACES);
  const base = `http://127.0.0.1:${rt.port}`;
  const id = await openSession(t, base, 'poll', { headers: { Authorization: `Bearer ${await signToken('pia')}` } });
  const batch = [
    { op: 'sub', id: 1, channel: 'chat/batch' },
    { op: 'pub', id: 2, channel: 'chat/batch', data: 'in the batch' },
    { op: 'bogus', id: 3 },
    { op: 'history', id: 4, channel: 'chat/batch' },
  ];
  assert.equal((await post(base, id, batch)).status, 204);
  const got: Array<{ id: number; msg: Record<string, unknown> }> = [];
  let ack = 0;
  const deadline = Date.now() + WAIT;
  while (!got.some((m) => m.msg.id === 4) && Date.now() < deadline) {
    const body = (await poll(base, id, ack)).json() as { messages: Array<{ id: number; msg: Record<string, unknown> }> };
    got.push(...body.messages);
    if (body.messages.length > 0) ack = body.messages.at(-1)!.id;
  }
  const seen = got.map(({ msg }) => (msg.op === 'msg' ? `msg ${String(msg.data)}` : `${String(msg.op)} ${String(msg.id)}`));
  // `bogus` is refused when it is read (validation), before the queue: its error may come first.
  assert.deepEqual(
    seen.filter((x) => x !== 'error 3' && !x.startsWith('msg')),
    ['ok 1', 'ok 2', 'ok 4'],
  );
  assert.ok(seen.includes('error 3'));
  assert.equal(seen.filter((x) => x === 'msg in the batch').length, 1, `its own publication, once: ${JSON.stringify(seen)}`);
});

test('an rpc that takes its time does not hold up the requests after it', async (t) => {
  const rt = await startRealtime(t, NAMESPACES);
  let release!: () => void;
  rt.server.rpc('slow', () => new Promise<string>((resolve) => (release = () => resolve('done'))));
  const c = await rt.connect('alice');
  c.send({ op: 'rpc', id: 10, method: 'slow' });
  c.send({ op: 'pub', id: 11, channel: 'chat/r', data: 1 });
  await c.waitFor((m) => m.id === 11, WAIT, 'the pub ack');
  assert.equal(c.received.some((m) => m.id === 10), false, 'the rpc is still running');
  release();
  const reply = await c.waitFor((m) => m.id === 10, WAIT, 'the rpc reply');
  assert.equal(reply.data, 'done');
});

test('what is still queued when the connection closes never runs', async (t) => {
  // history answers after 150 ms: the sub holds the queue, the pub waits behind it.
  const rt = await startRealtime(t, NAMESPACES, {}, { broker: new SlowHistoryBroker({ fixedMs: 150 }) });
  const c = await rt.connect('alice');
  c.send({ op: 'sub', id: 1, channel: 'chat/q', since: { offset: 0, epoch: 'x' } });
  c.send({ op: 'pub', id: 2, channel: 'chat/q', data: 'never' });
  await until(() => rt.server.hub.subscriptionCount === 1, WAIT, 'the sub to start');
  c.terminate();
  await until(() => rt.server.hub.sessions.size === 0, WAIT, 'the session to close');
  await sleep(300);
  const history = await rt.broker.history('chat/q');
  assert.equal(history.position.offset, 0, 'the queued pub was not published');
});

test('closed with 4004 for flooding: no publication was stored without its ack', async (t) => {
  const rt = await startRealtime(t, NAMESPACES, { limits: { messageRate: { perSecond: 50, burst: 100 } } });
  const c = await rt.connect('flood', { ignoreErrors: true });
  for (let i = 1; i <= 150; i++) c.send({ op: 'pub', id: 1000 + i, channel: 'chat/flood', data: i });
  const close = await c.closeOf();
  assert.equal(close.code, 4004);
  await sleep(100);
  const acked = c.received.filter((m) => m.op === 'ok' && typeof m.id === 'number' && m.id > 1000).length;
  const stored = (await rt.broker.history('chat/flood')).position.offset;
  assert.equal(stored, acked, `${stored} stored, ${acked} acked`);
});
