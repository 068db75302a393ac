/**
 * The realtime server with TLS and HTTP/2 (the default with `tls`): one port
 * answers WebSockets over h2 extended CONNECT (RFC 8441) and HTTP/1.1
 * Upgrades (ALPN h2,http/1.1), with the same admission (origin, per-IP
 * limits counting h2 streams, 429/503 with Retry-After), the compatibility
 * layer's 405 trap defused, metrics that tell sessions from WebSockets, and
 * the graceful shutdown (1001 on every WebSocket, then GOAWAY).
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, test } from 'node:test';
import { Http2SessionPool } from '../../../src/index.js';
import { makeTestCertificate, type TestCertificate } from '../../support/certs.js';
import { connectHeaders, rawH2Request, rawH2Session } from '../../support/http2.js';
import { connectAs, startServer, WAIT, within } from './helpers.js';
import { waitEvent } from '../../support/wait.js';

let tc: TestCertificate;
before(() => {
  tc = makeTestCertificate();
});
after(() => tc?.remove());

function get(port: number, path: string): Promise<{ status: number; text: string; httpVersion: string }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: 'localhost', port, path, ca: tc.cert }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, httpVersion: res.httpVersion }));
      })
      .on('error', reject);
  });
}

/** The value of one metric line (`name{labels}`), 0 when absent. */
function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

test('TLS + h2: WebSockets over h2 and HTTP/1.1 on one port, the same admission, metrics by carrier, 1001 then GOAWAY', async (t) => {
  const { server, port } = await startServer(t, {
    config: {
      tls: { cert: tc.certFile, key: tc.keyFile },
      allowedOrigins: ['https://app.example'],
      limits: { maxConnectionsPerIp: 3, connectionRatePerIp: { perSecond: 100, burst: 100 } },
      namespaces: [{ prefix: '', anonymousSubscribe: false }],
    },
  });
  const pool = new Http2SessionPool({ idleTimeout: 200 });
  t.after(() => pool.close());
  const url = `wss://localhost:${port}/rt`;
  const authority = `localhost:${port}`;

  // The HTTP routes answer over h2 (compat layer) and HTTP/1.1 alike.
  const session = await rawH2Session(`https://localhost:${port}`, tc.cert);
  t.after(() => session.destroy());
  const health = await rawH2Request(session, { ':method': 'GET', ':path': '/healthz' });
  assert.equal(health.status, 200);
  assert.equal((await get(port, '/healthz')).httpVersion, '1.1');

  // The compat layer's 405 trap: a CONNECT for the WebSocket endpoint on the same session is ours.
  const raw = await rawH2Request(session, connectHeaders(authority, { ':path': '/rt', 'sec-websocket-protocol': 'switchboard.v1.json' }));
  assert.equal(raw.status, 200);
  assert.equal(raw.headers['sec-websocket-protocol'], 'switchboard.v1.json');

  const alice = await connectAs(t, url, 'alice', undefined, { ca: tc.cert, http2: { pool } });
  const bob = await connectAs(t, url, 'bob', undefined, { ca: tc.cert });
  await alice.ok('sub', { channel: 'room' });
  await bob.ok('pub', { channel: 'room', data: { text: 'h1 to h2' } });
  const [msg] = await alice.waitMessages('room', 1);
  assert.deepEqual(msg!.data, { text: 'h1 to h2' });

  // Per-IP limit (3): the raw stream, alice (h2) and bob (HTTP/1.1) count; a fourth over h2 is refused with 429.
  const refused = await rawH2Request({ origin: `https://localhost:${port}`, ca: tc.cert }, connectHeaders(authority, { ':path': '/rt' }));
  t.after(() => refused.session.destroy());
  assert.equal(refused.status, 429);
  assert.equal(refused.headers['retry-after'], '5');
  assert.match(refused.body, /too many connections from this address/);
  // Origin check, as for an Upgrade.
  const evil = await rawH2Request(session, connectHeaders(authority, { ':path': '/rt', origin: 'https://evil.example' }));
  assert.equal(evil.status, 403);
  // Unknown path, other :protocol.
  assert.equal((await rawH2Request(session, connectHeaders(authority, { ':path': '/nope' }))).status, 404);
  assert.equal((await rawH2Request(session, connectHeaders(authority, { ':path': '/rt', ':protocol': 'connect-udp' }))).status, 501);

  const metrics = await rawH2Request(session, { ':method': 'GET', ':path': '/metrics' });
  assert.equal(metric(metrics.body, 'switchboard_websockets{http_version="2"}'), 2);
  assert.equal(metric(metrics.body, 'switchboard_websockets{http_version="1.1"}'), 1);
  assert.ok(metric(metrics.body, 'switchboard_http2_sessions') >= 3, 'the raw session, the pool\'s, the refused one');
  assert.equal(metric(metrics.body, 'switchboard_handshake_rejections_total{status="429"}'), 1);

  // Graceful shutdown: every WebSocket gets 1001 whatever carries it; then the h2 sessions get GOAWAY.
  const goaway = waitEvent(session, 'goaway', 10_000);
  const aliceClosed = alice.closeOf();
  const bobClosed = bob.closeOf();
  const closing = server.close();
  assert.equal((await aliceClosed).code, 1001);
  assert.equal((await bobClosed).code, 1001);
  await goaway;
  await within(closing, 10_000, 'the server to close');
  void WAIT;
});

test('TLS with http2.enabled false: HTTPS only, and our h2 client falls back to the HTTP/1.1 Upgrade', async (t) => {
  const { port } = await startServer(t, { config: { tls: { cert: tc.certFile, key: tc.keyFile }, http2: { enabled: false } } });
  const pool = new Http2SessionPool({ idleTimeout: 200 });
  t.after(() => pool.close());
  const client = await connectAs(t, `wss://localhost:${port}/rt`, 'carol', undefined, { ca: tc.cert, http2: { pool } });
  assert.equal(client.ws.readyState, 1);
  assert.equal(pool.size, 0, 'no h2 session stays: the server does not speak h2');
});
