/**
 * Every metric of src/server/metrics.ts against what its help says it counts
 * (issue #13: `switchboard_bytes_out_total` never counted deliveries). Real
 * traffic through a real server, then `/metrics` read over HTTP; exact values
 * wherever the traffic makes them known (the clients count what they sent
 * and received, byte for byte).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePki } from '../../support/tls.js';
import { api, connect, connectAs, httpRequest, sleep, startServer, until, upgrade, type RtClient, type TestServer } from './helpers.js';

/** One sample per series: `name{labels}` → value (labels as the text has them). */
type Samples = Map<string, number>;

async function scrape(s: TestServer, ca?: Buffer): Promise<{ text: string; samples: Samples }> {
  const res = await httpRequest(s.base, '/metrics', { ca });
  assert.equal(res.status, 200);
  const samples: Samples = new Map();
  for (const line of res.text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { text: res.text, samples };
}

function value(samples: Samples, series: string): number {
  const v = samples.get(series);
  assert.notEqual(v, undefined, `${series} is not exported`);
  return v!;
}

/** The one series of `name` whose labels match `labels` (for labels like `meaning` whose text the test does not spell). */
function valueMatching(samples: Samples, name: string, labels: RegExp): number {
  const found = [...samples].filter(([k]) => k.startsWith(`${name}{`) && labels.test(k));
  assert.equal(found.length, 1, `${name} ${labels}: ${JSON.stringify(found)}`);
  return found[0]![1];
}

/** Count what a client sends (messages and UTF-8 bytes) from now on; what it receives is in `raw`. */
function counted(c: RtClient): { sent: { messages: number; bytes: number } } {
  const sent = { messages: 0, bytes: 0 };
  const send = c.ws.send.bind(c.ws);
  (c.ws as { send: unknown }).send = (data: string | Buffer, ...rest: unknown[]) => {
    sent.messages++;
    sent.bytes += typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    return (send as (...a: unknown[]) => void)(data, ...rest);
  };
  return { sent };
}

const NAMESPACES = [{ prefix: 'm', presence: 'full', history: { size: 100, ttlMs: 0 } }];

describe('/metrics: each metric counts what its help says', () => {
  test('connections, closes, subscriptions, messages and bytes in and out, deliveries, latency, request errors: exact values for known traffic', async (t) => {
    const s = await startServer(t, { config: { namespaces: NAMESPACES } });
    // Every client counts from its first message: auth included.
    const clients: RtClient[] = [];
    const sentBy: Array<{ messages: number; bytes: number }> = [];
    const open = async (user: string | null): Promise<RtClient> => {
      const c = await connect(t, s.url);
      clients.push(c);
      sentBy.push(counted(c).sent);
      if (user) await c.auth(user);
      return c;
    };
    const a = await open('alice');
    const b = await open('bob');
    await a.ok('sub', { channel: 'm/room', presence: true });
    await b.ok('sub', { channel: 'm/room' });
    await b.ok('sub', { channel: 'm/+' }); // b gets each publication once: the pattern defers to its channel subscription
    const text = 'héllo ✓ 😀'; // multi-byte UTF-8: bytes are not UTF-16 units
    for (let i = 0; i < 3; i++) await a.ok('pub', { channel: 'm/room', data: { text, i } });
    await a.waitMessages('m/room', 3);
    await b.waitMessages('m/room', 3);
    await b.fails('rpc', { method: 'nope' }, 404);
    const anonymous = await open(null);
    await anonymous.fails('sub', { channel: 'm/room' }, 401); // "send auth first"
    await anonymous.close(1000);
    const bad = await open(null);
    bad.send({ op: 'sub', id: 1, channel: 'm/room' }); // counted in, then…
    bad.ws.send('not json'); // …closed with 4501
    assert.equal((await bad.closeOf()).code, 4501);
    // A last round trip on each open connection: every push sent before it has arrived.
    await a.ok('presence', { channel: 'm/room' });
    await b.ok('presence', { channel: 'm/room' });

    const { samples } = await scrape(s);
    assert.equal(value(samples, 'switchboard_connections{transport="websocket"}'), 2, 'open connections');
    assert.equal(value(samples, 'switchboard_connections_total{transport="websocket"}'), 4, 'connections opened');
    assert.equal(valueMatching(samples, 'switchboard_closes_total', /code="1000",meaning="normal/), 1);
    assert.equal(valueMatching(samples, 'switchboard_closes_total', /code="4501",meaning="bad request/), 1);
    assert.equal(value(samples, 'switchboard_subscriptions'), 3, 'a: m/room; b: m/room and m/+');

    const sentMessages = sentBy.reduce((n, x) => n + x.messages, 0);
    const sentBytes = sentBy.reduce((n, x) => n + x.bytes, 0);
    assert.equal(value(samples, 'switchboard_messages_in_total'), sentMessages, 'every message the clients sent');
    assert.equal(value(samples, 'switchboard_bytes_in_total'), sentBytes, 'their UTF-8 bytes');

    const received = clients.flatMap((c) => c.raw);
    assert.equal(value(samples, 'switchboard_messages_out_total'), received.length, 'every message the clients received: replies, presence pushes, deliveries');
    assert.equal(
      value(samples, 'switchboard_bytes_out_total'),
      received.reduce((n, raw) => n + raw.byteLength, 0),
      'their bytes, deliveries included',
    );

    assert.equal(value(samples, 'switchboard_deliveries_total'), 6, '3 publications × 2 subscribed connections');
    assert.equal(value(samples, 'switchboard_publish_to_delivery_seconds_count'), 3, 'once per publication fanned out');
    assert.equal(value(samples, 'switchboard_publish_to_delivery_seconds_bucket{le="+Inf"}'), 3);
    assert.ok(value(samples, 'switchboard_publish_to_delivery_seconds_sum') >= 0);
    assert.equal(value(samples, 'switchboard_request_errors_total{op="rpc",code="404"}'), 1);
    assert.equal(value(samples, 'switchboard_request_errors_total{op="sub",code="401"}'), 1);

    // Unsubscribing and leaving move the gauges back.
    await b.ok('unsub', { channel: 'm/+' });
    await b.close(1000);
    const after = (await scrape(s)).samples;
    assert.equal(value(after, 'switchboard_subscriptions'), 1);
    assert.equal(value(after, 'switchboard_connections{transport="websocket"}'), 1);
    assert.equal(valueMatching(after, 'switchboard_closes_total', /code="1000",/), 2);
  });

  test('bytes out count each delivery to a subscriber (JSON and MessagePack), not only replies: a publication through the HTTP API', async (t) => {
    const s = await startServer(t, { config: { namespaces: NAMESPACES } });
    const json = await connectAs(t, s.url, 'j');
    const packed = await connectAs(t, s.url, 'p', undefined, { protocols: ['switchboard.v1.msgpack'] });
    await json.ok('sub', { channel: 'm/feed' });
    await packed.ok('sub', { channel: 'm/feed' });
    const before = (await scrape(s)).samples;
    const rawBefore = json.raw.length + packed.raw.length;
    assert.equal((await api(s.base, '/api/publish', { channel: 'm/feed', data: { text: 'ünïcode', n: 1 } })).status, 200);
    await json.waitMessages('m/feed', 1);
    await packed.waitMessages('m/feed', 1);
    const after = (await scrape(s)).samples;
    const delivered = [json.raw.at(-1)!, packed.raw.at(-1)!];
    assert.equal(json.raw.length + packed.raw.length - rawBefore, 2, 'one message each, no reply (the publisher is the API)');
    assert.equal(packed.frameBinary.at(-1), true);
    const diff = (name: string) => value(after, name) - value(before, name);
    assert.equal(diff('switchboard_messages_out_total'), 2);
    assert.equal(
      diff('switchboard_bytes_out_total'),
      delivered.reduce((n, raw) => n + raw.byteLength, 0),
      'the bytes of both deliveries (it was 0: deliveries were not counted)',
    );
    assert.equal(diff('switchboard_deliveries_total'), 2);
    assert.equal(diff('switchboard_messages_in_total'), 0, 'an API publication is no realtime message in');
  });

  test('presence pushes (join/leave) count as messages out, with their bytes', async (t) => {
    const s = await startServer(t, { config: { namespaces: NAMESPACES } });
    const watcher = await connectAs(t, s.url, 'w');
    await watcher.ok('sub', { channel: 'm/p', presence: true });
    const before = (await scrape(s)).samples;
    const n = watcher.raw.length;
    const joiner = await connectAs(t, s.url, 'j');
    const joinerRawBefore = joiner.raw.length;
    await joiner.ok('sub', { channel: 'm/p', presence: true });
    await watcher.nextOp('join');
    await watcher.ok('presence', { channel: 'm/p' });
    const after = (await scrape(s)).samples;
    const out = [...watcher.raw.slice(n), ...joiner.raw.slice(joinerRawBefore)];
    // The joiner's auth exchange happened after `before` too: count its messages and bytes as well.
    const joinerAuth = joiner.raw.slice(0, joinerRawBefore);
    const diff = (name: string) => value(after, name) - value(before, name);
    assert.equal(diff('switchboard_messages_out_total'), out.length + joinerAuth.length);
    assert.equal(
      diff('switchboard_bytes_out_total'),
      [...out, ...joinerAuth].reduce((k, raw) => k + raw.byteLength, 0),
    );
  });

  test('dropped: a subscriber that stops reading is cut as a slow consumer (dropped_total{reason="slow-consumer"} 1, closes 4003 1)', async (t) => {
    const s = await startServer(t, { config: { namespaces: NAMESPACES, limits: { sendHighWaterMark: 64 * 1024 } } });
    const slow = await connectAs(t, s.url, 'slow');
    await slow.ok('sub', { channel: 'm/flood' });
    slow.ws.pause();
    const data = 'z'.repeat(8 * 1024);
    const cut = () => s.logs.some((l) => l.msg === 'slow consumer disconnected');
    for (let i = 0; i < 2000 && !cut(); i++) {
      for (let k = 0; k < 16; k++) void s.server.publish('m/flood', data);
      await sleep(5);
    }
    assert.ok(cut(), 'never cut');
    slow.ws.resume();
    assert.equal((await slow.closeOf(5000)).code, 4003);
    await until(() => s.server.hub.sessions.size === 0, 3000, 'the session to end');
    const { samples } = await scrape(s);
    assert.equal(value(samples, 'switchboard_dropped_total{reason="slow-consumer"}'), 1);
    assert.equal(valueMatching(samples, 'switchboard_closes_total', /code="4003",/), 1);
  });

  test('handshake rejections by status: a refused credential (401) and an unknown subprotocol (400)', async (t) => {
    const s = await startServer(t);
    const ws = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    const badToken = await upgrade(s.base, '/rt', { ...ws, Authorization: 'Bearer not-a-jwt' });
    const badProtocol = await upgrade(s.base, '/rt', { ...ws, 'Sec-WebSocket-Protocol': 'nope.v9' });
    const { samples } = await scrape(s);
    assert.equal(value(samples, `switchboard_handshake_rejections_total{status="${badToken.status}"}`), badToken.status === badProtocol.status ? 2 : 1);
    assert.equal(value(samples, `switchboard_handshake_rejections_total{status="${badProtocol.status}"}`), badToken.status === badProtocol.status ? 2 : 1);
    assert.deepEqual([badToken.status, badProtocol.status], [401, 400]);
  });

  test('a long-polling session is counted under transport="poll", its messages and bytes in and out too', async (t) => {
    const s = await startServer(t, { config: { namespaces: NAMESPACES } });
    const before = (await scrape(s)).samples;
    const opened = await httpRequest(s.base, '/rt/session', { body: { transport: 'poll' } });
    assert.equal(opened.status, 201, opened.text);
    const { session } = opened.json();
    const message = { op: 'ping' };
    const posted = await httpRequest(s.base, `/rt/session/${session}`, { body: [message] });
    assert.ok(posted.status < 300, posted.text);
    const polled = await httpRequest(s.base, `/rt/session/${session}/poll`);
    assert.equal(polled.status, 200, polled.text);
    const got = (polled.json().messages as Array<{ msg: unknown }>).map((m) => JSON.stringify(m.msg));
    const after = (await scrape(s)).samples;
    const diff = (name: string) => value(after, name) - (before.get(name) ?? 0);
    assert.equal(value(after, 'switchboard_connections{transport="poll"}'), 1);
    assert.equal(diff('switchboard_connections_total{transport="poll"}'), 1);
    assert.equal(diff('switchboard_messages_in_total'), 1);
    assert.equal(diff('switchboard_bytes_in_total'), Buffer.byteLength(JSON.stringify(message)));
    assert.deepEqual(got, ['{"op":"pong"}']);
    assert.equal(diff('switchboard_messages_out_total'), 1);
    assert.equal(diff('switchboard_bytes_out_total'), Buffer.byteLength(got[0]!));
    await httpRequest(s.base, `/rt/session/${session}`, { method: 'DELETE' });
  });

  test('TLS: reloads by result (one that took, one refused) and the expiry of the certificate served; no expiry without TLS', async (t) => {
    const pki = makePki();
    t.after(() => pki.dispose());
    const dir = join(pki.dir, 'live');
    mkdirSync(dir);
    const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
    copyFileSync(pki.serverA.cert, files.cert);
    copyFileSync(pki.serverA.key, files.key);
    const plain = await startServer(t);
    assert.doesNotMatch((await scrape(plain)).text, /switchboard_tls_certificate_expiry_seconds \d/);
    const started = await startServer(t, { config: { tls: files } });
    started.server.certificates!.close(); // reloads driven here only
    const s = { ...started, base: `https://localhost:${started.port}` };
    const expiry = (file: string) => Math.floor(Date.parse(new X509Certificate(readFileSync(file)).validTo) / 1000);
    assert.equal(value((await scrape(s, pki.caPem)).samples, 'switchboard_tls_certificate_expiry_seconds'), expiry(pki.serverA.cert));
    copyFileSync(pki.serverB.key, files.key);
    copyFileSync(pki.serverB.cert, files.cert);
    assert.equal(s.server.reloadCertificates().ok, true);
    copyFileSync(pki.serverA.key, files.key); // B's certificate with A's key: refused
    assert.equal(s.server.reloadCertificates().ok, false);
    const { samples } = await scrape(s, pki.caPem);
    assert.equal(value(samples, 'switchboard_tls_reloads_total{result="success"}'), 1);
    assert.equal(value(samples, 'switchboard_tls_reloads_total{result="failure"}'), 1);
    assert.equal(value(samples, 'switchboard_tls_certificate_expiry_seconds'), expiry(pki.serverB.cert), 'the expiry of the certificate that took, not of the refused pair');
    assert.notEqual(expiry(pki.serverA.cert), expiry(pki.serverB.cert));
  });

  test('broker up (1 with the memory broker), gaps refilled (0: the memory broker has no gaps), process CPU, RSS and event-loop lag', async (t) => {
    const s = await startServer(t);
    const { samples } = await scrape(s);
    assert.equal(value(samples, 'switchboard_broker_up'), 1);
    assert.equal(value(samples, 'switchboard_broker_gaps_refilled_total'), 0);
    assert.ok(value(samples, 'switchboard_process_cpu_user_seconds_total') > 0);
    assert.ok(value(samples, 'switchboard_process_resident_memory_bytes') > 1e6);
    assert.ok(value(samples, 'switchboard_nodejs_eventloop_lag_seconds') >= 0);
    // The delay gauges from the server's own sampler (src/server/loop-monitor.ts), under prom-client's names.
    for (const stat of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99']) assert.ok(value(samples, `switchboard_nodejs_eventloop_lag_${stat}_seconds`) >= 0);
  });
});
