/**
 * The client SDK over HTTP/2 in Node, and what it reports about the carrier:
 * `new Client(url, { WebSocket, webSocketOptions: { http2 } })` opens its
 * WebSocket as an RFC 8441 stream of the realtime server's TLS port, and
 * `transportInfo` (and the `connected` event) say what carries it — from the
 * server's `auth` reply (`http`), else from our WebSocket's own handshake
 * (`httpVersion`). A server with `http2: false` gets the HTTP/1.1 fallback,
 * and the client says so. The warm-up request (`warmup`: on by default in
 * browsers only) goes to the WebSocket's origin before the WebSocket, and
 * never stops a connection when it fails or hangs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import { Http2SessionPool, WebSocket } from '../../../src/index.js';
import type { ClientOptions, FetchLike } from '../../../src/client/index.js';
import { makeTestCertificate, type TestCertificate } from '../../support/certs.js';
import { createClient, nextEvent, signToken, startServer, within, WAIT } from './helpers.js';

let tc: TestCertificate;
before(() => {
  tc = makeTestCertificate();
});
after(() => tc?.remove());

/** A realtime server with TLS on 127.0.0.1 (h2 unless `http2: false`); anonymous connections allowed; its wss:// URL. */
async function tlsServer(t: TestContext, http2 = true): Promise<{ url: string }> {
  const s = await startServer(t, { config: { tls: { cert: tc.certFile, key: tc.keyFile }, http2, auth: { anonymous: true } } });
  return { url: s.url.replace('ws://', 'wss://') };
}

/** Our client's options for an h2 WebSocket to the test server: its own pool (closed after the test), the test CA. */
function h2Options(t: TestContext): { webSocketOptions: object } {
  const pool = new Http2SessionPool({ idleTimeout: 100 });
  t.after(() => pool.close());
  return { webSocketOptions: { http2: { pool }, ca: tc.cert } };
}

describe('client SDK over HTTP/2 (Node)', () => {
  test('with a token: the WebSocket rides an h2 stream, and the server says so in its auth reply', async (t) => {
    const { url } = await tlsServer(t);
    const client = createClient(t, url, { token: await signToken('alice'), ...h2Options(t) });
    const connected = nextEvent(client, 'connected');
    await within(client.connect(), WAIT, 'connect');
    const event = await connected;
    assert.equal(event.transport, 'websocket');
    assert.equal(event.httpProtocol, 'h2');
    assert.equal(event.httpProtocolSource, 'server');
    assert.deepEqual(client.transportInfo, { transport: 'websocket', httpProtocol: 'h2', httpProtocolSource: 'server' });
    // The connection works end to end on the stream.
    const got: unknown[] = [];
    const sub = client.subscribe('chat/h2', { onMessage: (p) => got.push(p.data) });
    await nextEvent(sub, 'subscribed');
    await client.publish('chat/h2', { n: 1 });
    await within(
      new Promise<void>((resolve) => {
        const check = setInterval(() => got.length > 0 && (clearInterval(check), resolve()), 5);
      }),
      WAIT,
      'the publication back',
    );
    assert.deepEqual(got, [{ n: 1 }]);
    client.close();
    assert.equal(client.transportInfo, null, 'nothing carries a closed client');
  });

  test('anonymous (no auth reply): our WebSocket reports its own handshake', async (t) => {
    const { url } = await tlsServer(t);
    const client = createClient(t, url, h2Options(t));
    await within(client.connect(), WAIT, 'connect');
    assert.deepEqual(client.transportInfo, { transport: 'websocket', httpProtocol: 'h2', httpProtocolSource: 'websocket' });
  });

  test('without http2 on the client: HTTP/1.1, from the server and from the WebSocket', async (t) => {
    const { url } = await tlsServer(t);
    const withToken = createClient(t, url, { token: await signToken('bob'), webSocketOptions: { ca: tc.cert } });
    const anonymous = createClient(t, url, { webSocketOptions: { ca: tc.cert } });
    await within(Promise.all([withToken.connect(), anonymous.connect()]), WAIT, 'connect');
    assert.deepEqual(withToken.transportInfo, { transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'server' });
    assert.deepEqual(anonymous.transportInfo, { transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'websocket' });
  });

  test('a server with http2: false: the client asked for h2, fell back to HTTP/1.1, and says so', async (t) => {
    const { url } = await tlsServer(t, false);
    const withToken = createClient(t, url, { token: await signToken('carol'), ...h2Options(t) });
    const anonymous = createClient(t, url, h2Options(t));
    await within(Promise.all([withToken.connect(), anonymous.connect()]), WAIT, 'connect');
    assert.deepEqual(withToken.transportInfo, { transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'server' });
    assert.deepEqual(anonymous.transportInfo, { transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'websocket' });
  });

  test('long-polling: the server reports the HTTP version of the request that opened the session', async (t) => {
    const s = await startServer(t);
    const client = createClient(t, s.url, { token: await signToken('dave'), transports: ['poll'] });
    await within(client.connect(), WAIT, 'connect');
    assert.deepEqual(client.transportInfo, { transport: 'poll', httpProtocol: 'http/1.1', httpProtocolSource: 'server' });
  });
});

describe('the warm-up request', () => {
  test('goes to the WebSocket origin before the WebSocket: GET <path>, no-cors, credentialed, not cached', async (t) => {
    const s = await startServer(t, { config: { auth: { anonymous: true } } });
    const order: string[] = [];
    const calls: Array<{ url: string; init: unknown }> = [];
    const fetch: FetchLike = async (url, init) => {
      calls.push({ url, init: { ...init, signal: undefined } });
      order.push('warm-up sent');
      const res = await globalThis.fetch(url);
      order.push(`warm-up answered ${res.status}`);
      return res as unknown as Awaited<ReturnType<FetchLike>>;
    };
    class RecordingWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        order.push('WebSocket opened');
        super(url, protocols);
      }
    }
    const client = createClient(t, s.url, { warmup: '/healthz', fetch, WebSocket: RecordingWebSocket as unknown as ClientOptions['WebSocket'] });
    await within(client.connect(), WAIT, 'connect');
    const origin = s.url.replace('ws://', 'http://').replace(/\/rt$/, '');
    assert.deepEqual(calls, [{ url: `${origin}/healthz`, init: { method: 'GET', mode: 'no-cors', credentials: 'include', cache: 'no-store', signal: undefined } }]);
    assert.deepEqual(order, ['warm-up sent', 'warm-up answered 200', 'WebSocket opened'], 'the WebSocket waits for the warm-up');
    // Node's fetch has no Resource Timing entry to read, and nobody else said: unknown.
    assert.deepEqual(client.transportInfo, { transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'websocket' });
  });

  test('off by default in Node; a failing or hanging warm-up never stops the connection', async (t) => {
    const s = await startServer(t, { config: { auth: { anonymous: true } } });
    let calls = 0;
    const counting: FetchLike = async (url) => {
      calls++;
      return globalThis.fetch(url) as unknown as ReturnType<FetchLike>;
    };
    const byDefault = createClient(t, s.url, { fetch: counting });
    await within(byDefault.connect(), WAIT, 'connect');
    assert.equal(calls, 0, 'no warm-up in Node unless asked');

    const failing = createClient(t, s.url, { warmup: '/healthz', fetch: async () => Promise.reject(new TypeError('blocked by CSP')) });
    await within(failing.connect(), WAIT, 'connect with a failing warm-up');

    let aborted = false;
    const hanging: FetchLike = (_url, init) =>
      new Promise((_resolve, reject) =>
        init?.signal?.addEventListener('abort', () => {
          aborted = true;
          reject(new Error('aborted'));
        }),
      );
    // The warm-up waits at most half of connectTimeoutMs (and 3 s): here 500 ms.
    const slow = createClient(t, s.url, { warmup: '/healthz', fetch: hanging, connectTimeoutMs: 1000 });
    await within(slow.connect(), WAIT, 'connect with a hanging warm-up');
    assert.equal(aborted, true, 'the hanging warm-up was aborted');
  });

  test('a warmup that is not a path is refused', () => {
    assert.throws(() => createClient({ after() {} } as unknown as TestContext, 'ws://127.0.0.1:9/rt', { warmup: 'healthz' }), /RT_CLIENT_INVALID_ARGUMENT|warmup must be a path/);
  });
});
