/**
 * Limits through the real server, each with its documented answer
 * (docs/protocol.md "Limits and what they answer", "Requests and replies"),
 * and each without effect on a bystander connection: message size (1009),
 * message and byte rate (429, then 4004), subscriptions (430), connections
 * (503 / 429 with Retry-After before the upgrade), slow consumers (4003),
 * malformed input (4501) and invalid messages (400 with the id).
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { api, connect, connectAs, signToken, sleep, startServer, until, upgrade, type RtClient, type TestServer } from './helpers.js';

/** A subscribed bystander; `check()` asserts it still receives and answers. */
async function bystander(t: TestContext, s: TestServer): Promise<{ client: RtClient; check(): Promise<void> }> {
  const client = await connectAs(t, s.url, 'bystander');
  await client.ok('sub', { channel: 'side/room' });
  let n = 0;
  return {
    client,
    async check() {
      assert.equal(client.isClosed, false, 'the bystander was closed');
      const data = `still fine ${++n}`;
      await s.server.publish('side/room', data);
      assert.equal((await client.nextOp('msg')).data, data);
      await client.ok('rpc', { method: 'echo', data });
    },
  };
}

function withEcho(s: TestServer): TestServer {
  s.server.rpc('echo', (data) => data);
  return s;
}

describe('per-message limits', () => {
  test('a message over maxMessageSize: close 1009', async (t) => {
    const s = withEcho(await startServer(t, { config: { limits: { maxMessageSize: 1024 } } }));
    const other = await bystander(t, s);
    const c = await connectAs(t, s.url, 'alice');
    // Just under the limit is fine.
    const fits = JSON.stringify({ op: 'rpc', id: 1, method: 'echo', data: '' });
    assert.equal((await c.request('rpc', { method: 'echo', data: 'x'.repeat(1024 - fits.length) })).op, 'ok');
    c.send({ op: 'rpc', id: 2, method: 'echo', data: 'x'.repeat(2000) });
    assert.equal((await c.closeOf()).code, 1009);
    await other.check();
  });

  test('message rate: error 429 with the id, then close 4004 after 20 in a row', async (t) => {
    // Practically no refill during the test: the burst is all there is.
    const s = withEcho(await startServer(t, { config: { limits: { messageRate: { perSecond: 0.001, burst: 5 } } } }));
    const other = await bystander(t, s);
    const c = await connectAs(t, s.url, 'alice'); // auth: 1 of 5
    for (let i = 0; i < 4; i++) assert.equal((await c.request('rpc', { method: 'echo', data: i })).op, 'ok');
    const limited = await c.request('rpc', { method: 'echo', data: 'over' });
    assert.equal(limited.op, 'error');
    assert.equal(limited.code, 429);
    // 18 more limited messages keep the connection (19 in a row)...
    for (let i = 0; i < 18; i++) assert.equal((await c.request('rpc', { method: 'echo' })).code, 429);
    assert.equal(c.isClosed, false);
    // ...the 20th closes it.
    c.send({ op: 'rpc', id: 'last', method: 'echo' });
    assert.equal((await c.closeOf()).code, 4004);
    await other.check();
  });

  test('a flood is cut with 4004', async (t) => {
    const s = withEcho(await startServer(t, { config: { limits: { messageRate: { perSecond: 10, burst: 10 } } } }));
    const other = await bystander(t, s);
    const c = await connectAs(t, s.url, 'alice');
    for (let i = 0; i < 200; i++) c.send({ op: 'ping' });
    assert.equal((await c.closeOf()).code, 4004);
    assert.ok(c.received.some((m) => m.op === 'error' && m.code === 429), 'no 429 before the close');
    await other.check();
  });

  test('byte rate: error 429 once the bytes are spent, then 4004', async (t) => {
    const s = withEcho(
      await startServer(t, { config: { limits: { maxMessageSize: 1024, byteRate: { perSecond: 0.001, burst: 2048 } } } }),
    );
    const other = await bystander(t, s);
    const c = await connect(t, s.url, { headers: { Authorization: `Bearer ${await signToken('alice')}` } });
    const big = 'y'.repeat(900);
    assert.equal((await c.request('rpc', { method: 'echo', data: big })).op, 'ok');
    assert.equal((await c.request('rpc', { method: 'echo', data: big })).op, 'ok');
    const limited = await c.request('rpc', { method: 'echo', data: big });
    assert.equal(limited.op, 'error');
    assert.equal(limited.code, 429);
    for (let i = 0; i < 25; i++) c.send({ op: 'rpc', id: i, method: 'echo', data: big });
    assert.equal((await c.closeOf()).code, 4004);
    await other.check();
  });

  test('byte rate counts UTF-8 bytes, not characters', async (t) => {
    const s = withEcho(
      await startServer(t, { config: { limits: { maxMessageSize: 1024, byteRate: { perSecond: 0.001, burst: 2048 } } } }),
    );
    const c = await connect(t, s.url, { headers: { Authorization: `Bearer ${await signToken('alice')}` } });
    const wide = 'é'.repeat(450); // 900 bytes in 450 characters
    assert.equal((await c.request('rpc', { method: 'echo', data: wide })).op, 'ok');
    assert.equal((await c.request('rpc', { method: 'echo', data: wide })).op, 'ok');
    assert.equal((await c.request('rpc', { method: 'echo', data: wide })).code, 429);
  });

  test('maxSubscriptions: error 430; an unsub makes room again', async (t) => {
    const s = withEcho(await startServer(t, { config: { limits: { maxSubscriptions: 3 } } }));
    const other = await bystander(t, s);
    const c = await connectAs(t, s.url, 'alice');
    for (const ch of ['a/1', 'a/2', 'a/+']) await c.ok('sub', { channel: ch });
    const over = await c.request('sub', { channel: 'a/4' });
    assert.equal(over.op, 'error');
    assert.equal(over.code, 430);
    await c.ok('unsub', { channel: 'a/1' });
    await c.ok('sub', { channel: 'a/4' });
    assert.equal(c.isClosed, false);
    await other.check();
  });
});

describe('connection limits, before the upgrade', () => {
  test('maxConnections: HTTP 503 with Retry-After; room again after a close', async (t) => {
    const s = await startServer(t, { config: { limits: { maxConnections: 2 } } });
    const a = await connectAs(t, s.url, 'a');
    await connectAs(t, s.url, 'b');
    const refused = await upgrade(s.base, '/rt');
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['retry-after'], '5', 'Retry-After (docs/configuration.md: maxConnections)');
    // The open ones are not disturbed.
    await a.ok('sub', { channel: 'x/y' });
    a.ws.close(1000);
    await a.closeOf();
    await until(() => s.server.hub.sessions.size === 1, 2000, 'the server to see the close');
    assert.equal((await upgrade(s.base, '/rt')).status, 101);
  });

  test('concurrent handshakes with tokens never exceed maxConnections or maxConnectionsPerIp', async (t) => {
    // Token verification is asynchronous: the limits must hold for handshakes that overlap it.
    const rate = { perSecond: 1000, burst: 1000 };
    const s = await startServer(t, { config: { limits: { maxConnections: 5, connectionRatePerIp: rate } } });
    const headers = { Authorization: `Bearer ${await signToken('a')}` };
    const results = await Promise.allSettled(Array.from({ length: 60 }, () => connect(t, s.url, { headers })));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 5);
    assert.equal(s.server.hub.sessions.size, 5);
    const perIp = await startServer(t, { config: { limits: { maxConnectionsPerIp: 4, connectionRatePerIp: rate } } });
    const more = await Promise.allSettled(Array.from({ length: 60 }, () => connect(t, perIp.url, { headers })));
    assert.equal(more.filter((r) => r.status === 'fulfilled').length, 4);
  });

  test('maxConnectionsPerIp: 429 with Retry-After for that address only', async (t) => {
    const s = await startServer(t, { config: { limits: { maxConnectionsPerIp: 2 } } });
    const a = await connectAs(t, s.url, 'a');
    await connectAs(t, s.url, 'b');
    const refused = await upgrade(s.base, '/rt');
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['retry-after'], '5', 'Retry-After (docs/configuration.md: maxConnectionsPerIp)');
    // Another address (127.0.0.2 is loopback too) still connects.
    const c = await connectAs(t, s.url, 'c', {}, { localAddress: '127.0.0.2' });
    await c.ok('sub', { channel: 'x/y' });
    await a.ok('sub', { channel: 'x/y' });
  });

  test('trustedProxies: behind a trusted proxy, per-IP limits count the forwarded client address; an untrusted peer\'s X-Forwarded-For is ignored', async (t) => {
    const s = await startServer(t, { config: { limits: { maxConnectionsPerIp: 1 }, trustedProxies: ['127.0.0.1'] } });
    const via = (client: string) => ({ headers: { 'X-Forwarded-For': `198.51.100.1, ${client}` } });
    const a = await connectAs(t, s.url, 'a', {}, via('203.0.113.1'));
    await connectAs(t, s.url, 'b', {}, via('203.0.113.2'));
    // The same client again (whatever it wrote on the left): its one connection is taken.
    const again = await upgrade(s.base, '/rt', { 'X-Forwarded-For': '198.51.100.9, 203.0.113.1' });
    assert.equal(again.status, 429);
    // The proxy's own connections (no header) count under its address.
    await connectAs(t, s.url, 'proxy-itself');
    await a.ok('sub', { channel: 'x/y' });

    // 127.0.0.2 is not trusted: its header is ignored, it counts as itself.
    const untrusted = { localAddress: '127.0.0.2' };
    await connectAs(t, s.url, 'c', {}, { ...untrusted, headers: { 'X-Forwarded-For': '203.0.113.3' } });
    const spoofed = await upgrade(s.base, '/rt', { 'X-Forwarded-For': '203.0.113.4' }, untrusted);
    assert.equal(spoofed.status, 429, 'a second connection from 127.0.0.2 must be refused whatever its X-Forwarded-For');
  });

  test('connectionRatePerIp holds across the limiter sweep: a busy address gets no fresh burst', async (t) => {
    // 4 per second, bursts of 4: the limiter forgets idle addresses every second.
    const s = await startServer(t, { config: { limits: { connectionRatePerIp: { perSecond: 4, burst: 4 } } } });
    const started = Date.now();
    let accepted = 0;
    const attempt = async (n: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await upgrade(s.base, '/rt')).status);
      accepted += out.filter((x) => x === 101).length;
      return out;
    };
    assert.deepEqual(await attempt(5), [101, 101, 101, 101, 429]);
    await sleep(Math.max(0, started + 600 - Date.now()));
    await attempt(3);
    await sleep(Math.max(0, started + 1150 - Date.now()));
    await attempt(4); // after the sweep
    // A token bucket never grants more than burst + rate × elapsed.
    const bound = 4 + (4 * (Date.now() - started)) / 1000;
    assert.ok(accepted <= bound, `${accepted} connections accepted in ${Date.now() - started} ms (at most ${bound.toFixed(1)})`);
  });

  test('connectionRatePerIp: 429 with Retry-After when connecting too fast, per address', async (t) => {
    const s = await startServer(t, { config: { limits: { connectionRatePerIp: { perSecond: 0.001, burst: 3 } } } });
    const first = await connectAs(t, s.url, 'a');
    for (let i = 0; i < 2; i++) assert.equal((await upgrade(s.base, '/rt')).status, 101);
    const refused = await upgrade(s.base, '/rt');
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['retry-after'], '1', 'Retry-After (docs/configuration.md: connectionRatePerIp)');
    const other = await connectAs(t, s.url, 'b', {}, { localAddress: '127.0.0.2' });
    await other.ok('sub', { channel: 'x/y' });
    await first.ok('sub', { channel: 'x/y' });
  });
});

describe('slow consumers', () => {
  test('a client that stops reading is closed with 4003; a reader on the same channel gets everything', async (t) => {
    const s = await startServer(t, { config: { limits: { sendHighWaterMark: 256 * 1024 } } });
    const reader = await connectAs(t, s.url, 'reader');
    await reader.ok('sub', { channel: 'feed/x' });
    const slow = await connectAs(t, s.url, 'slow');
    await slow.ok('sub', { channel: 'feed/x' });
    slow.ws.pause();
    const data = 'z'.repeat(8 * 1024);
    let published = 0;
    // Publish (through the API for a start, then directly) until the server cuts the slow client.
    const res = await api(s.base, '/api/publish', { channel: 'feed/x', data });
    assert.equal(res.status, 200);
    published++;
    const cut = () => s.logs.some((l) => l.msg === 'slow consumer disconnected');
    const readerGot = () => reader.received.filter((m) => m.op === 'msg').length;
    while (!cut() && published < 20_000) {
      // Bursts well under the high-water mark, and the reader keeps up: only the paused client falls behind.
      for (let i = 0; i < 16; i++) void s.server.publish('feed/x', data);
      published += 16;
      await until(() => readerGot() >= published - 16 || reader.isClosed, 2000, 'the reader to keep up');
    }
    assert.ok(cut(), `not cut after ${published} messages`);
    // The reader kept up and got every message.
    const got = await reader.take('msg', published, 10_000);
    assert.deepEqual(
      got.map((m) => m.offset),
      Array.from({ length: published }, (_, i) => i + 1),
    );
    // The slow one sees 4003 once it reads again.
    slow.ws.resume();
    assert.equal((await slow.closeOf(5000)).code, 4003);
    assert.equal(s.logs.filter((l) => l.msg === 'slow consumer disconnected').length, 1, 'logged more than once');
    assert.equal(reader.isClosed, false);
    await reader.ok('pub', { channel: 'feed/x', data: 'after' });
  });
});

describe('bursts', () => {
  test('a burst larger than the high-water mark in one turn does not cut a client that keeps reading', async (t) => {
    const s = await startServer(t, { config: { limits: { sendHighWaterMark: 64 * 1024 } } });
    const reader = await connectAs(t, s.url, 'reader');
    await reader.ok('sub', { channel: 'feed/burst' });
    const data = 'b'.repeat(4 * 1024);
    // 64 publications of 4 KiB (256 KiB, four times the mark) delivered in one turn of the event loop.
    await Promise.all(Array.from({ length: 64 }, () => s.server.publish('feed/burst', data)));
    const got = await reader.take('msg', 64, 10_000);
    assert.deepEqual(
      got.map((m) => m.offset),
      Array.from({ length: 64 }, (_, i) => i + 1),
    );
    assert.equal(reader.isClosed, false);
    assert.equal(s.logs.some((l) => l.msg === 'slow consumer disconnected'), false);
  });
});

describe('bad input', () => {
  test('malformed JSON: close 4501, with a log line naming the connection', async (t) => {
    const s = withEcho(await startServer(t));
    const other = await bystander(t, s);
    const c = await connectAs(t, s.url, 'alice');
    c.ws.send('{"op": "sub", "id": 1, ');
    const { code, reason } = await c.closeOf();
    assert.equal(code, 4501);
    assert.match(reason, /JSON/);
    assert.ok(s.logs.some((l) => l.msg === 'undecodable message' && typeof l.conn === 'string'), 'no log line with the connection id');
    await other.check();
  });

  test('invalid message shapes: error 400 with the id; the connection stays', async (t) => {
    const s = withEcho(await startServer(t));
    const other = await bystander(t, s);
    const c = await connectAs(t, s.url, 'alice');
    const cases: Array<[object, RegExp]> = [
      [{ op: 'sub', id: 10 }, /channel/],
      [{ op: 'sub', id: 11, channel: 'a/b', extra: true }, /unknown field/],
      [{ op: 'pub', id: 12, channel: 'a/b' }, /data/],
      [{ op: 'sub', id: 13, channel: 'a/b', since: { offset: -1, epoch: 'x' } }, /since/],
      [{ op: 'history', id: 14, channel: 'a/b', limit: 'all' }, /limit/],
      [{ op: 'rpc', id: 15, method: 42 }, /method/],
      [{ op: 'sub', id: 'str-id', channel: 7 }, /channel/],
      [{ op: 'sub', id: 16, channel: 'a//b' }, /channel/],
      [{ op: 'frobnicate', id: 17 }, /unknown op/],
    ];
    for (const [message, why] of cases) {
      c.send(message);
      const id = (message as { id: unknown }).id;
      const reply = await c.next((m) => m.op === 'error' && m.id === id, undefined, `the error for ${JSON.stringify(message)}`);
      assert.equal(reply.code, 400, JSON.stringify(message));
      assert.match(reply.message, why, JSON.stringify(message));
    }
    // No usable id: an error without id.
    for (const message of [[1, 2], 'just a string', { op: 'sub', id: -1, channel: 'a/b' }, { op: 'nope' }]) {
      c.ws.send(JSON.stringify(message));
      const reply = await c.next((m) => m.op === 'error' && !('id' in m), undefined, `the error for ${JSON.stringify(message)}`);
      assert.equal(reply.code, 400, JSON.stringify(message));
    }
    assert.equal(c.isClosed, false);
    assert.equal((await c.request('sub', { channel: 'a/b' })).op, 'ok');
    await other.check();
  });
});
