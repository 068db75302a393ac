/**
 * Requests on one connection run in the order they came (docs/protocol.md,
 * "Requests and replies"): a client may pipeline `auth`, `sub` and `pub`
 * without waiting for replies, over WebSocket and in a long-polling batch;
 * an `rpc` does not hold up what follows; what is still queued when the
 * connection closes never runs; consecutive `pub`s to one channel go to the
 * broker without waiting for each other, and keep their order.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openSession, poll, post } from '../carriers/helpers.js';
import { MemoryBroker } from '../../../src/brokers/memory/memory-broker.js';
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

/** Holds every publish until `release()`; counts how many are waiting at once. */
class GatedPublishBroker extends MemoryBroker {
  waiting = 0;
  mostWaiting = 0;
  #gate: Promise<void>;
  #open!: () => void;
  constructor() {
    super();
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }
  release(): void {
    this.#open();
  }
  override publish(...args: Parameters<MemoryBroker['publish']>): ReturnType<MemoryBroker['publish']> {
    // Called in order, applied in order (the contract): the offset is taken now, the answer waits at the gate.
    const result = super.publish(...args);
    this.waiting++;
    this.mostWaiting = Math.max(this.mostWaiting, this.waiting);
    return this.#gate.then(() => {
      this.waiting--;
      return result;
    });
  }
}

test('consecutive pubs to one channel are at the broker together, acked in order; the next request waits for all of them', async (t) => {
  const broker = new GatedPublishBroker();
  const rt = await startRealtime(t, NAMESPACES, {}, { broker });
  const c = await rt.connect('alice');
  c.send({ op: 'sub', id: 1, channel: 'chat/run' });
  await c.waitFor((m) => m.id === 1, WAIT, 'the sub reply');
  for (let i = 0; i < 10; i++) c.send({ op: 'pub', id: 100 + i, channel: 'chat/run', data: i });
  // Refused inside the run (data deeper than limits.maxDataDepth): its error still waits for the acks before it.
  c.send({ op: 'pub', id: 150, channel: 'chat/run', data: JSON.parse('['.repeat(200) + ']'.repeat(200)) });
  c.send({ op: 'history', id: 200, channel: 'chat/run' });
  // Sequential handling would hold the second pub behind the first, which waits at the gate.
  await until(() => broker.waiting === 10, WAIT, 'all ten pubs at the broker at once');
  await sleep(50);
  assert.equal(
    c.received.some((m) => m.id === 200),
    false,
    'the history request waits for the run',
  );
  broker.release();
  await c.waitFor((m) => m.id === 200, WAIT, 'the history reply');
  assert.deepEqual(
    c.received.filter((m) => typeof m.id === 'number' && m.id >= 100).map((m) => `${m.op} ${m.id}`),
    [...Array.from({ length: 10 }, (_, i) => `ok ${100 + i}`), 'error 150', 'ok 200'],
    'replies in request order',
  );
  const acks = c.received.filter((m) => m.op === 'ok' && typeof m.id === 'number' && m.id >= 100 && m.id < 110);
  assert.deepEqual(
    acks.map((m) => [m.id, m.offset]),
    Array.from({ length: 10 }, (_, i) => [100 + i, i + 1]),
  );
  const history = c.received.find((m) => m.id === 200)!;
  assert.deepEqual(
    history.publications.map((p: { data: number }) => p.data),
    Array.from({ length: 10 }, (_, i) => i),
  );
  await until(() => c.received.filter((m) => m.op === 'msg').length === 10, WAIT, 'every publication live');
  assert.deepEqual(
    c.received.filter((m) => m.op === 'msg').map((m) => m.data),
    Array.from({ length: 10 }, (_, i) => i),
  );
});

test('a pub to another channel, or past the run limit, waits for the run before it', async (t) => {
  const broker = new GatedPublishBroker();
  const rt = await startRealtime(t, NAMESPACES, {}, { broker });
  const c = await rt.connect('alice');
  for (let i = 0; i < 40; i++) c.send({ op: 'pub', id: 100 + i, channel: 'chat/a', data: i });
  c.send({ op: 'pub', id: 300, channel: 'chat/b', data: 'b' });
  await until(() => broker.waiting === 32, WAIT, 'the first run (32) at the broker');
  await sleep(50);
  assert.equal(broker.mostWaiting, 32, 'no more than one run at a time');
  broker.release();
  const reply = await c.waitFor((m) => m.id === 300, WAIT, 'the pub on chat/b');
  assert.equal(reply.offset, 1);
  assert.deepEqual(
    c.received.filter((m) => m.op === 'ok' && m.id !== 1).map((m) => m.id),
    [...Array.from({ length: 40 }, (_, i) => 100 + i), 300],
    'acks in request order (after the auth reply, id 1)',
  );
});

test('volatile pubs are not pipelined: one at the broker at a time, in order', async (t) => {
  const broker = new GatedPublishBroker();
  const rt = await startRealtime(t, NAMESPACES, {}, { broker });
  const c = await rt.connect('alice');
  for (let i = 0; i < 3; i++) c.send({ op: 'pub', id: 100 + i, channel: 'chat/v', data: i, volatile: true });
  await until(() => broker.waiting === 1, WAIT, 'the first volatile pub at the broker');
  await sleep(50);
  assert.equal(broker.mostWaiting, 1);
  broker.release();
  await c.waitFor((m) => m.id === 102, WAIT, 'the last ack');
  assert.deepEqual(
    c.received.filter((m) => m.op === 'ok' && m.id !== 1).map((m) => m.id),
    [100, 101, 102],
  );
});
