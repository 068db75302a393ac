/**
 * The SSE and long-polling transports of the client (src/client/transports)
 * against a fake fetch and EventSource, exactly as docs/protocol.md
 * "Fallback transports" describes the wire: POST /rt/session, POST of JSON
 * arrays, the event stream, polls with ack, DELETE, `close` messages, and
 * HTTP failures mapped to close codes. Then the fallback rule (WebSocket →
 * SSE → poll) and the way back to WebSocket.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Client, type ClientOptions, type DisconnectedEvent } from '../../../src/client/index.js';
import { closeCodeForStatus } from '../../../src/client/transports/http-session.js';
import { httpEndpoint, webSocketUrl } from '../../../src/client/transports/transport.js';
import {
  accept,
  acceptSubs,
  fakeClock,
  FakeNetwork,
  fakeEventSourceClass,
  fakeFetch,
  fakeWebSocketClass,
  flush,
  makeClient,
  pollAnswer,
  reply,
  sessionOpened,
  type FetchCall,
  type Msg,
} from './fakes.js';

/** Connect; WebSocket fails twice (1006), so the client falls back to SSE, which opens. */
async function onSseAfterTwoFailures(
  client: { connect(): unknown },
  WS: { last: { drop(code: number): void } },
  ES: { last: { open(): void } },
  clock: { tick(ms: number): Promise<void> },
): Promise<void> {
  client.connect();
  await flush();
  WS.last.drop(1006);
  await clock.tick(100);
  WS.last.drop(1006);
  await clock.tick(100);
  ES.last.open();
  await flush();
}

/** Answers session creation with 201 and message POSTs with 204 (auto). */
function autoServer(call: FetchCall): { status: number; body?: unknown } | undefined {
  if (call.method === 'POST' && call.url.endsWith('/rt/session')) {
    return { status: 201, body: sessionOpened(`s${++sessions}`, (call.body as Msg).transport) };
  }
  if (call.method === 'POST' && /\/rt\/session\/s\d+$/.test(call.url)) return { status: 204 };
  if (call.method === 'DELETE') return { status: 204 };
  return undefined;
}
let sessions = 0;

function sseClient(options: ClientOptions = {}) {
  const http = fakeFetch(autoServer);
  const ES = fakeEventSourceClass();
  const client = new Client('ws://rt.test:8080/rt', {
    transports: ['sse'],
    EventSource: ES,
    fetch: http.fetch,
    network: null,
    token: 'tok',
    reconnect: { minDelayMs: 100, maxDelayMs: 100, jitter: 0 },
    ...options,
  });
  return { client, http, ES };
}

describe('URLs', () => {
  test('the WebSocket URL and the HTTP base of the fallbacks', () => {
    assert.equal(webSocketUrl('http://h:1/rt'), 'ws://h:1/rt');
    assert.equal(webSocketUrl('wss://h/rt'), 'wss://h/rt');
    assert.deepEqual(httpEndpoint('ws://h:8080/rt'), { base: 'http://h:8080/rt', query: '' });
    assert.deepEqual(httpEndpoint('wss://h/custom/path/?ticket=t1'), { base: 'https://h/custom/path', query: '?ticket=t1' });
    assert.deepEqual(httpEndpoint('https://h/rt#x'), { base: 'https://h/rt', query: '' });
  });

  test('HTTP statuses as close codes: 401 → 4500, 403 → 4502, 413 → 1009, 429/503 → 1013, others 1006', () => {
    assert.deepEqual(
      [401, 403, 404, 413, 429, 500, 503].map(closeCodeForStatus),
      [4500, 4502, 1006, 1009, 1013, 1006, 1013],
    );
  });
});

describe('WebSocket transport', () => {
  test("protocol 'msgpack': offers switchboard.v1.msgpack, and both directions travel as MessagePack in binary frames (binary data intact)", async () => {
    const h = makeClient('ws://rt.test/rt', { token: 'tok', protocol: 'msgpack' });
    const got: unknown[] = [];
    h.client.subscribe('chat/a', { onMessage: (p) => got.push(p.data) });
    const connected = h.client.connect();
    const ws = await accept(h);
    await connected;
    assert.deepEqual(ws.protocols, ['switchboard.v1.msgpack']);
    assert.equal(ws.protocol, 'switchboard.v1.msgpack');
    // Decoded with the MessagePack codec (a text frame would be a protocol violation of the fake).
    assert.deepEqual(ws.sent[0], { op: 'auth', id: 1, token: 'tok' });
    acceptSubs(ws);
    ws.receive({ op: 'msg', channel: 'chat/a', offset: 1, epoch: 'e1', data: new Uint8Array([0, 1, 255]), time: 1 });
    await flush();
    assert.deepEqual(got, [new Uint8Array([0, 1, 255])]);
    const acked = h.client.publish('chat/a', { bytes: new Uint8Array([7]) });
    await flush();
    const pub = ws.sentOps('pub')[0]!;
    assert.deepEqual(pub.data, { bytes: new Uint8Array([7]) });
    ws.receive(reply.pub(pub.id, 2, 'e1'));
    assert.deepEqual(await acked, { offset: 2, epoch: 'e1', duplicate: false });
    h.client.close();
  });
});

describe('SSE transport', () => {
  test('opens a session, streams events, POSTs client messages as arrays, ends with DELETE', async (t) => {
    fakeClock(t);
    const { client, http, ES } = sseClient();
    const got: unknown[] = [];
    client.subscribe('chat/a', { onMessage: (p) => got.push(p.data) });
    const connected = client.connect();
    await flush();
    const open = http.calls[0]!;
    assert.equal(open.method, 'POST');
    assert.equal(open.url, 'http://rt.test:8080/rt/session');
    assert.deepEqual(open.body, { transport: 'sse' });
    assert.equal(open.headers['Content-Type'], 'application/json');
    const session = `s${sessions}`;
    assert.equal(ES.last.url, `http://rt.test:8080/rt/session/${session}/events`);
    assert.equal(client.state, 'connecting', 'not open until the stream is');
    ES.last.open();
    await flush();
    assert.deepEqual(http.posted(), [{ op: 'auth', id: 1, token: 'tok' }]);
    assert.equal(http.calls[1]!.url, `http://rt.test:8080/rt/session/${session}`);
    ES.last.receive(reply.auth(1, { client: 'c1' }), 1);
    await connected;
    assert.equal(client.transport, 'sse');
    await flush();
    const sub = http.posted().find((m) => m.op === 'sub')!;
    ES.last.receive(reply.sub(sub.id, 'chat/a', { offset: 0, epoch: 'e' }), 2);
    ES.last.receive({ op: 'msg', channel: 'chat/a', offset: 1, epoch: 'e', data: 'hello', time: 1 }, 3);
    assert.deepEqual(got, ['hello']);
    // Messages sent in one tick travel in one POST, in order.
    const p1 = client.publish('chat/a', 1);
    const p2 = client.publish('chat/a', 2);
    await flush();
    const last = http.calls.filter((c) => c.method === 'POST').at(-1)!;
    assert.deepEqual(
      (last.body as Msg[]).map((m) => m.data),
      [1, 2],
    );
    for (const m of last.body as Msg[]) ES.last.receive(reply.pub(m.id, m.data + 1, 'e'));
    assert.deepEqual((await Promise.all([p1, p2])).map((r) => r.offset), [2, 3]);
    // A ping over SSE is answered with a pong over POST.
    ES.last.receive({ op: 'ping' });
    await flush();
    assert.deepEqual(http.posted().at(-1), { op: 'pong' });
    client.close();
    assert.equal(ES.last.closed, true);
    const del = http.calls.at(-1)!;
    assert.equal(del.method, 'DELETE');
    assert.equal(del.url, `http://rt.test:8080/rt/session/${session}`);
  });

  test('withCredentials: every request and the event stream send cookies cross-origin; without it, none asks to', async (t) => {
    const clock = fakeClock(t);
    for (const withCredentials of [true, false]) {
      const { client, http, ES } = sseClient({ withCredentials });
      client.connect();
      await clock.tick(0);
      ES.last.open();
      await clock.tick(0);
      client.subscribe('chat/a');
      await clock.tick(0);
      const credentials = http.calls.map((c) => c.credentials);
      assert.ok(http.calls.length >= 2, `session and a message POST: ${http.calls.map((c) => `${c.method} ${c.url}`).join(', ')}`);
      assert.deepEqual(new Set(credentials), new Set([withCredentials ? 'include' : undefined]));
      assert.deepEqual((ES.last as unknown as { init?: object }).init, withCredentials ? { withCredentials: true } : undefined);
      client.close();
      await clock.tick(0);
    }
  });

  test("a close message ends the session with its code (4503: no reconnect; 4003: reconnect with a new session)", async (t) => {
    const clock = fakeClock(t);
    const { client, http, ES } = sseClient({ token: undefined });
    const events: DisconnectedEvent[] = [];
    client.on('disconnected', (e) => events.push(e));
    client.connect();
    await flush();
    ES.last.open();
    await flush();
    assert.equal(client.state, 'connected');
    ES.last.receive({ op: 'close', code: 4003, reason: 'slow consumer' });
    await flush();
    assert.deepEqual(events.map((e) => [e.code, e.reason, e.willReconnect]), [[4003, 'slow consumer', true]]);
    assert.equal(http.pending('DELETE').length + http.calls.filter((c) => c.method === 'DELETE').length, 0, 'the server ended it: no DELETE');
    await clock.tick(100);
    assert.equal(ES.instances.length, 2, 'a new session and stream');
    ES.last.open();
    await flush();
    ES.last.receive({ op: 'close', code: 4503, reason: 'kicked' });
    await flush();
    assert.equal(client.state, 'disconnected');
    client.close();
  });

  test('the stream dropping: EventSource reconnects by itself within connectTimeoutMs; else a new session', async (t) => {
    const clock = fakeClock(t);
    const { client, ES } = sseClient({ token: undefined, connectTimeoutMs: 5000 });
    client.connect();
    await flush();
    ES.last.open();
    await flush();
    ES.last.error(); // CONNECTING: EventSource retries with Last-Event-ID
    await clock.tick(3000);
    ES.last.open();
    await clock.tick(5000);
    assert.equal(client.state, 'connected');
    assert.equal(ES.instances.length, 1);
    ES.last.error();
    await clock.tick(5000);
    assert.equal(client.state, 'reconnecting', 'did not come back in time');
    ES.last.error(true);
    await clock.tick(100);
    assert.equal(ES.instances.length, 2);
    client.close();
  });

  test('a stream that fails before it opens, or is closed for good (404), fails the attempt', async (t) => {
    fakeClock(t);
    const { client, ES } = sseClient({ token: undefined });
    const reconnecting: string[] = [];
    client.on('reconnecting', (e) => reconnecting.push(e.reason));
    client.connect();
    await flush();
    ES.last.error();
    await flush();
    assert.match(reconnecting[0]!, /before it opened/);
    client.close();
  });

  test('session creation refused: 401 → 4500, no reconnect; 503 → reconnect', async (t) => {
    fakeClock(t);
    const http = fakeFetch((call) => (call.method === 'POST' ? { status: 401, body: { error: 'invalid token' } } : undefined));
    const client = new Client('ws://rt.test/rt', { transports: ['sse'], EventSource: fakeEventSourceClass(), fetch: http.fetch, network: null });
    const events: DisconnectedEvent[] = [];
    client.on('disconnected', (e) => events.push(e));
    await assert.rejects(client.connect(), (err: { closeCode: number }) => err.closeCode === 4500);
    assert.match(events[0]!.reason, /HTTP 401/);
    assert.match(events[0]!.reason, /invalid token/);

    const busy = fakeFetch((call) => (call.method === 'POST' ? { status: 503 } : undefined));
    const c2 = new Client('ws://rt.test/rt', { transports: ['poll'], fetch: busy.fetch, network: null });
    const reconnecting: number[] = [];
    c2.on('reconnecting', (e) => reconnecting.push(e.code));
    c2.connect();
    await flush();
    assert.deepEqual(reconnecting, [1013]);
    c2.close();
  });

  test('a POST answered 404 (session expired): reconnect with a new session and resubscribe with since', async (t) => {
    const clock = fakeClock(t);
    let expire = false;
    const http = fakeFetch((call) => {
      if (expire && call.method === 'POST' && /session\/s\d+$/.test(call.url)) return { status: 404, body: { error: 'no such session' } };
      return autoServer(call);
    });
    const ES = fakeEventSourceClass();
    const client = new Client('ws://rt.test/rt', { transports: ['sse'], EventSource: ES, fetch: http.fetch, network: null, reconnect: { minDelayMs: 100, jitter: 0 } });
    client.subscribe('chat/a');
    client.connect();
    await flush();
    ES.last.open();
    await flush();
    const sub = http.posted().find((m) => m.op === 'sub')!;
    ES.last.receive(reply.sub(sub.id, 'chat/a', { offset: 4, epoch: 'e' }));
    expire = true;
    client.publish('chat/a', 'x').catch(() => {});
    await flush();
    await flush();
    assert.equal(client.state, 'reconnecting');
    expire = false;
    await clock.tick(100);
    ES.last.open();
    await flush();
    const resub = http.posted().filter((m) => m.op === 'sub').at(-1)!;
    assert.deepEqual(resub.since, { offset: 4, epoch: 'e' });
    client.close();
  });
});

describe('long-polling transport', () => {
  test('polls with ack, delivers each message once, polls again at once; POSTs client messages', async (t) => {
    fakeClock(t);
    const http = fakeFetch(autoServer);
    const client = new Client('ws://rt.test/rt', { transports: ['poll'], fetch: http.fetch, network: null, token: 'tok' });
    const got: unknown[] = [];
    client.subscribe('chat/a', { onMessage: (p) => got.push(p.data) });
    const connected = client.connect();
    await flush();
    assert.deepEqual(http.calls[0]!.body, { transport: 'poll' });
    const session = `s${sessions}`;
    const poll1 = http.pending('GET')[0]!;
    assert.equal(poll1.url, `http://rt.test/rt/session/${session}/poll?ack=0`);
    assert.deepEqual(http.posted(), [{ op: 'auth', id: 1, token: 'tok' }], 'open as soon as the session exists');
    poll1.respond(200, pollAnswer([[1, reply.auth(1, { client: 'c' })]]));
    await connected;
    await flush();
    const poll2 = http.pending('GET')[0]!;
    assert.match(poll2.url, /poll\?ack=1$/);
    const sub = http.posted().find((m) => m.op === 'sub')!;
    poll2.respond(
      200,
      pollAnswer([
        [2, reply.sub(sub.id, 'chat/a', { offset: 0, epoch: 'e' })],
        [3, { op: 'msg', channel: 'chat/a', offset: 1, epoch: 'e', data: 'a', time: 1 }],
      ]),
    );
    await flush();
    const poll3 = http.pending('GET')[0]!;
    assert.match(poll3.url, /poll\?ack=3$/);
    // A repeat of id 3 (a resent answer) is skipped; an empty answer (timeout) just polls again.
    poll3.respond(
      200,
      pollAnswer([
        [3, { op: 'msg', channel: 'chat/a', offset: 1, epoch: 'e', data: 'a', time: 1 }],
        [4, { op: 'msg', channel: 'chat/a', offset: 2, epoch: 'e', data: 'b', time: 1 }],
      ]),
    );
    await flush();
    http.pending('GET')[0]!.respond(200, pollAnswer([]));
    await flush();
    assert.match(http.pending('GET')[0]!.url, /poll\?ack=4$/);
    assert.deepEqual(got, ['a', 'b']);
    client.close();
    await flush();
    assert.equal(http.pending('GET').length, 0, 'the poll is aborted');
    assert.equal(http.calls.at(-1)!.method, 'DELETE');
  });

  test('a failed poll is retried once after a pause; two in a row drop the transport; 404 at once', async (t) => {
    const clock = fakeClock(t);
    const http = fakeFetch(autoServer);
    const client = new Client('ws://rt.test/rt', { transports: ['poll'], fetch: http.fetch, network: null, reconnect: { minDelayMs: 100, jitter: 0 } });
    client.connect();
    await flush();
    assert.equal(client.state, 'connected');
    http.pending('GET')[0]!.fail();
    await flush();
    assert.equal(http.pending('GET').length, 0);
    await clock.tick(1000);
    assert.equal(http.pending('GET').length, 1, 'retried after a pause');
    http.pending('GET')[0]!.respond(502);
    await flush();
    assert.equal(client.state, 'reconnecting');
    await clock.tick(100);
    assert.equal(client.state, 'connected');
    http.pending('GET')[0]!.respond(404, { error: 'no such session' });
    await flush();
    assert.equal(client.state, 'reconnecting');
    client.close();
  });

  test('a poll with no answer for pollTimeoutMs + 10 s counts as failed', async (t) => {
    const clock = fakeClock(t);
    const http = fakeFetch(autoServer);
    const client = new Client('ws://rt.test/rt', { transports: ['poll'], fetch: http.fetch, network: null, pingTimeoutMs: 3600_000 });
    client.connect();
    await flush();
    const first = http.pending('GET')[0]!;
    await clock.tick(35000);
    assert.equal(first.settled, true, 'aborted');
    await clock.tick(1000);
    assert.equal(http.pending('GET').length, 1, 'polling again');
    client.close();
  });
});

describe('fallback and the way back to WebSocket', () => {
  function fallbackClient(options: ClientOptions = {}) {
    const WS = fakeWebSocketClass();
    const ES = fakeEventSourceClass();
    const http = fakeFetch(autoServer);
    const client = new Client('ws://rt.test/rt', {
      WebSocket: WS,
      EventSource: ES,
      fetch: http.fetch,
      network: null,
      reconnect: { minDelayMs: 100, maxDelayMs: 100, jitter: 0 },
      ...options,
    });
    const switches: Array<[string, string]> = [];
    client.on('transport', (e) => switches.push([e.from, e.to]));
    return { client, WS, ES, http, switches };
  }

  test('attempts that fail while the device is offline do not count toward falling back', async (t) => {
    const clock = fakeClock(t);
    const network = new FakeNetwork();
    const { client, WS, switches } = fallbackClient({ network });
    client.connect();
    await flush();
    network.online = false; // the attempt was under way when the network went
    for (let i = 0; i < 3; i++) {
      WS.last.drop(1006);
      await flush();
      network.goOnline(); // retries at once
      network.online = false;
      await clock.tick(0);
      await flush();
    }
    assert.equal(WS.instances.length, 4, 'every attempt went over WebSocket');
    assert.deepEqual(switches, []);
    // Online, two failures do move on.
    network.online = true;
    WS.last.drop(1006);
    await clock.tick(100);
    WS.last.drop(1006);
    await flush();
    assert.deepEqual(switches, [['websocket', 'sse']]);
    client.close();
  });

  test('WebSocket failing twice before it opens: the client moves to SSE, then to poll, then back around', async (t) => {
    const clock = fakeClock(t);
    const { client, WS, ES, http, switches } = fallbackClient();
    assert.deepEqual(client.transports, ['websocket', 'sse', 'poll']);
    client.connect();
    await flush();
    WS.last.drop(1006);
    await clock.tick(100);
    WS.last.drop(1006);
    await flush();
    assert.deepEqual(switches, [['websocket', 'sse']]);
    assert.equal(client.preferredTransport, 'sse');
    await clock.tick(100);
    assert.equal(ES.instances.length, 1);
    ES.last.error(); // SSE blocked too (a buffering proxy)
    await clock.tick(100);
    ES.last.error();
    await flush();
    assert.deepEqual(switches.at(-1), ['sse', 'poll']);
    await clock.tick(100);
    assert.equal(client.state, 'connected');
    assert.equal(client.transport, 'poll');
    assert.equal(WS.instances.length, 2);
    void http;
    client.close();
  });

  test('a WebSocket that opened once is not given up: a drop after open does not count', async (t) => {
    const clock = fakeClock(t);
    const { client, WS, switches } = fallbackClient();
    client.connect();
    for (let i = 0; i < 4; i++) {
      await flush();
      WS.last.open();
      await flush();
      WS.last.drop(1006);
      await clock.tick(100);
    }
    assert.deepEqual(switches, []);
    assert.equal(WS.instances.length, 5);
    client.close();
  });

  test('on a fallback: WebSocket is probed after upgradeProbeDelayMs; when it opens the client moves back and resumes', async (t) => {
    const clock = fakeClock(t);
    const { client, WS, ES, http, switches } = fallbackClient({ transports: ['websocket', 'sse'], upgradeProbeDelayMs: 5000, upgradeIntervalMs: 60000, pingTimeoutMs: 3600_000 });
    const sub = client.subscribe('chat/a');
    await onSseAfterTwoFailures(client, WS, ES, clock);
    assert.equal(client.transport, 'sse');
    const subReq = http.posted().find((m) => m.op === 'sub')!;
    ES.last.receive(reply.sub(subReq.id, 'chat/a', { offset: 0, epoch: 'e' }));
    ES.last.receive({ op: 'msg', channel: 'chat/a', offset: 1, epoch: 'e', data: 1, time: 1 });

    // The first probe fails: the next one comes upgradeIntervalMs later.
    await clock.tick(5000);
    assert.equal(WS.instances.length, 3);
    WS.last.drop(1006);
    await clock.tick(59999);
    assert.equal(WS.instances.length, 3);
    await clock.tick(1);
    assert.equal(WS.instances.length, 4);
    // This one opens and answers the probe's ping: the probe is closed, the SSE session ends, a real WebSocket connection follows.
    WS.last.open();
    await flush();
    assert.deepEqual(WS.last.sent, [{ op: 'ping' }], 'the probe asks for a pong (no auth)');
    assert.equal(client.transport, 'sse', 'an open socket is not enough: frames must pass');
    WS.last.receive({ op: 'pong' });
    await flush();
    assert.equal(WS.instances[3]!.closedWith?.code, 1000);
    assert.deepEqual(switches.at(-1), ['sse', 'websocket']);
    assert.equal(ES.last.closed, true);
    assert.equal(http.calls.at(-1)!.method, 'DELETE');
    assert.equal(WS.instances.length, 5);
    WS.last.open();
    await flush();
    assert.equal(client.transport, 'websocket');
    assert.equal(client.state, 'connected');
    assert.deepEqual(WS.last.sentOps('sub')[0]!.since, { offset: 1, epoch: 'e' }, 'resumed where SSE left off');
    assert.equal(sub.state, 'pending');
    client.close();
  });

  test('after a fallback connection drops, WebSocket is tried first again once its last failure is old enough', async (t) => {
    const clock = fakeClock(t);
    const { client, WS, ES, switches } = fallbackClient({ transports: ['websocket', 'sse'], upgradeProbeDelayMs: 10_000_000, upgradeIntervalMs: 60000, pingTimeoutMs: 3600_000 });
    await onSseAfterTwoFailures(client, WS, ES, clock);
    ES.last.error(true); // dropped soon: WebSocket failed < 60 s ago, stay on SSE
    await clock.tick(100);
    assert.equal(ES.instances.length, 2);
    ES.last.open();
    await clock.tick(60000);
    ES.last.error(true); // dropped after a minute: try WebSocket first
    await flush();
    assert.deepEqual(switches.at(-1), ['sse', 'websocket']);
    await clock.tick(100);
    assert.equal(WS.instances.length, 3);
    // Still blocked: one failure is enough to go back to SSE.
    WS.last.drop(1006);
    await flush();
    assert.deepEqual(switches.at(-1), ['websocket', 'sse']);
    await clock.tick(100);
    assert.equal(ES.instances.length, 3);
    client.close();
  });

  test('connect() while reconnecting waits for the attempt under way instead of starting another', async (t) => {
    const clock = fakeClock(t);
    const { client, WS } = fallbackClient({ transports: ['websocket'] });
    client.connect();
    await flush();
    WS.last.open();
    await flush();
    WS.last.drop(1006);
    await flush();
    const again = client.connect();
    await flush();
    assert.equal(WS.instances.length, 1);
    await clock.tick(100);
    assert.equal(WS.instances.length, 2);
    WS.last.open();
    await again;
    client.close();
  });

  test('a WebSocket that opens but never carries the auth exchange (a proxy that passes the upgrade, not the frames) counts as blocked', async (t) => {
    const clock = fakeClock(t);
    const { client, WS, ES, switches } = fallbackClient({ transports: ['websocket', 'sse'], token: 'tok', connectTimeoutMs: 3000 });
    client.connect();
    for (let i = 0; i < 2; i++) {
      await flush();
      WS.last.open(); // the handshake passes; the auth reply never comes
      await clock.tick(3000);
      await clock.tick(100);
    }
    assert.deepEqual(switches, [['websocket', 'sse']]);
    assert.equal(ES.instances.length, 1);
    client.close();
  });

  test('the probe needs a pong: an open socket that carries nothing is not enough; after connectTimeoutMs the probe is dropped', async (t) => {
    const clock = fakeClock(t);
    const { client, WS, ES, switches } = fallbackClient({
      transports: ['websocket', 'sse'],
      upgradeProbeDelayMs: 5000,
      upgradeIntervalMs: 60000,
      connectTimeoutMs: 3000,
      pingTimeoutMs: 3600_000,
    });
    await onSseAfterTwoFailures(client, WS, ES, clock);
    await clock.tick(5000);
    const probe = WS.last;
    probe.open();
    await flush();
    assert.deepEqual(probe.sent, [{ op: 'ping' }]);
    const closedWith = (): { code?: number } | null => probe.closedWith;
    await clock.tick(2999);
    assert.equal(closedWith(), null);
    await clock.tick(1);
    assert.equal(closedWith()?.code, 1000, 'no pong in time: the probe failed');
    assert.equal(client.transport, 'sse');
    assert.deepEqual(switches, [['websocket', 'sse']]);
    await clock.tick(60000);
    assert.equal(WS.instances.length, 4, 'probed again upgradeIntervalMs later');
    client.close();
  });

  test('the move back to WebSocket: disconnected (1000, willReconnect) then reconnecting; an rpc in flight delays it', async (t) => {
    const clock = fakeClock(t);
    const { client, WS, ES, http } = fallbackClient({
      transports: ['websocket', 'sse'],
      upgradeProbeDelayMs: 5000,
      pingTimeoutMs: 3600_000,
      requestTimeoutMs: 60000,
    });
    const events: Array<string> = [];
    client.on('disconnected', (e) => events.push(`disconnected ${e.code} ${e.willReconnect}`));
    client.on('state', (s) => events.push(s));
    await onSseAfterTwoFailures(client, WS, ES, clock);
    const rpc = client.rpc('slow');
    await flush();
    const rpcReq = http.posted().find((m) => m.op === 'rpc')!;
    await clock.tick(5000);
    WS.last.open();
    WS.last.receive({ op: 'pong' });
    await flush();
    assert.equal(client.transport, 'sse', 'not while an rpc is in flight (it would be lost)');
    ES.last.receive(reply.rpc(rpcReq.id, 42));
    assert.equal(await rpc, 42);
    await clock.tick(1000);
    WS.last.open();
    WS.last.receive({ op: 'pong' });
    await flush();
    assert.deepEqual(events.slice(-3), ['connected', 'disconnected 1000 true', 'reconnecting']);
    WS.last.open();
    await flush();
    assert.equal(client.transport, 'websocket');
    assert.equal(client.state, 'connected');
    client.close();
  });

  test('transports this environment cannot run are skipped (no EventSource: no SSE)', () => {
    const c = new Client('ws://rt.test/rt', { WebSocket: fakeWebSocketClass(), EventSource: undefined, fetch: fakeFetch().fetch, network: null });
    assert.deepEqual(c.transports, ['websocket', 'poll']);
  });
});
