/**
 * The SDK in headless Chromium against `switchboard serve` with TLS: its
 * warm-up request gives the browser an h2 connection to the WebSocket's
 * origin, so the WebSocket runs over HTTP/2 (RFC 8441), and the SDK reports
 * what carries it.
 *
 * The page comes from another origin (a plain HTTP server on 127.0.0.1 that
 * serves it and dist/client.js), so nothing but the SDK's own requests
 * reaches the realtime server: without the warm-up, Chromium has no h2
 * connection there and opens the WebSocket with an HTTP/1.1 Upgrade (see
 * test/e2e/http2.test.ts). Evidence from both ends: the server's
 * `switchboard_websockets_total{http_version}`, Chromium's DevTools
 * handshake status (200 over h2, 101 over HTTP/1.1), and what the SDK says
 * (`transportInfo`: from the server's `auth` reply, or, anonymous, from the
 * warm-up's `nextHopProtocol`).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { makeTestCertificate, type TestCertificate } from '../support/certs.js';
import { SECRET, signToken } from '../support/tokens.js';
import { handshakeRecordingPage, killAll, launchBrowser, ROOT, startServe, websocketsTotal, type Serve, type TestBrowser } from './helpers.js';

let tc: TestCertificate;
let tb: TestBrowser;
/** The page's origin: an HTTP server of its own on 127.0.0.1. */
let pageServer: http.Server;
let pageOrigin: string;

before(async () => {
  tc = makeTestCertificate();
  tb = await launchBrowser();
  const bundle = readFileSync(join(ROOT, 'dist', 'client.js'));
  pageServer = http.createServer((req, res) => {
    if (req.url === '/client.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' }).end(
      '<!doctype html><title>sdk over h2</title><script type="module">import { Client } from "/client.js"; window.Client = Client;</script>',
    );
  });
  await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
});

after(async () => {
  await tb?.close();
  await new Promise<void>((resolve) => (pageServer ? pageServer.close(() => resolve()) : resolve()));
  killAll();
  tc?.remove();
});

/**
 * `serve` with TLS (h2 unless `http2: false`), the test secret, anonymous
 * connections allowed, any origin: started before the suite's tests, stopped
 * after them. Its `port` is known in the tests.
 */
function useTlsServe(name: string, http2: boolean): { port: number } {
  let serve: Serve | null = null;
  before(async () => {
    const config = join(tc.dir, `${name}.json`);
    writeFileSync(
      config,
      JSON.stringify({ tls: { cert: tc.certFile, key: tc.keyFile }, http2, allowedOrigins: ['*'], auth: { hmacSecret: SECRET, anonymous: true } }),
    );
    serve = await startServe(0, ['--config', config]);
  });
  after(() => serve?.stop());
  return {
    get port() {
      return serve!.port;
    },
  };
}

/** A fresh context (no connection to the realtime server yet) on the page's origin, DevTools handshake statuses recorded, the SDK loaded. */
async function sdkPage(): Promise<{ page: Page; statuses: number[] }> {
  const { page, statuses } = await handshakeRecordingPage(tb.browser);
  await page.goto(`${pageOrigin}/`);
  await page.waitForFunction(() => typeof (window as { Client?: unknown }).Client === 'function');
  return { page, statuses };
}

interface PageResult {
  info: unknown;
  connected: unknown;
  /** The warm-up requests the page made, with their protocol (Resource Timing). */
  warmups: Array<{ name: string; nextHopProtocol: string }>;
}

/** Connect the SDK in the page (WebSocket only), read what it reports, close it. */
function connectInPage(page: Page, url: string, options: { token?: string; warmup?: false }): Promise<PageResult> {
  return page.evaluate(
    async ({ url, options }) => {
      const { Client } = window as unknown as { Client: new (u: string, o: object) => any };
      const client = new Client(url, { transports: ['websocket'], ...options });
      let connected: any = null;
      client.on('connected', (e: any) => (connected = { transport: e.transport, httpProtocol: e.httpProtocol, httpProtocolSource: e.httpProtocolSource }));
      await client.connect();
      // Anonymous: no auth reply; the warm-up's protocol comes with its Resource Timing entry, a moment later.
      const deadline = Date.now() + 3000;
      while (client.transportInfo?.httpProtocolSource === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const info = client.transportInfo;
      client.close();
      // Chromium adds a request's Resource Timing entry some 70 ms after its answer, and the
      // WebSocket does not wait for it: with a token the SDK can be connected before it exists.
      // (No named function in here: tsx's __name helper does not exist in the page.)
      const entryDeadline = Date.now() + 3000;
      let entries: PerformanceResourceTiming[] = [];
      for (;;) {
        entries = (performance.getEntriesByType('resource') as PerformanceResourceTiming[]).filter((e) => e.name.endsWith('/healthz'));
        if (options.warmup === false || entries.length > 0 || Date.now() >= entryDeadline) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const warmups = entries.map((e) => ({ name: e.name, nextHopProtocol: e.nextHopProtocol }));
      return { info, connected, warmups };
    },
    { url, options },
  );
}

describe('the SDK in Chromium against serve over TLS', () => {
  const serve = useTlsServe('h2', true);

  test('with the warm-up (the default in a browser): the WebSocket runs over h2, the server saw an h2 CONNECT, the SDK reports h2', async () => {
    const url = `wss://localhost:${serve.port}/rt`;
    const before = await websocketsTotal(serve.port, tc.cert);
    const { page, statuses } = await sdkPage();
    const result = await connectInPage(page, url, { token: await signToken('alice') });
    const after = await websocketsTotal(serve.port, tc.cert);
    assert.deepEqual(after, { h2: before.h2 + 1, h1: before.h1 }, 'the server counted one WebSocket on an h2 stream');
    assert.deepEqual(statuses, [200], 'Chromium got a 200 (RFC 8441), not a 101');
    const expected = { transport: 'websocket', httpProtocol: 'h2', httpProtocolSource: 'server' };
    assert.deepEqual(result.info, expected);
    assert.deepEqual(result.connected, expected);
    assert.equal(result.warmups.length, 1, 'one warm-up request');
    assert.equal(result.warmups[0]!.name, `https://localhost:${serve.port}/healthz`);
    await page.context().close();
  });

  test('anonymous (no auth reply): the SDK reports h2 from the warm-up request', async () => {
    const before = await websocketsTotal(serve.port, tc.cert);
    const { page, statuses } = await sdkPage();
    const result = await connectInPage(page, `wss://localhost:${serve.port}/rt`, {});
    assert.deepEqual(await websocketsTotal(serve.port, tc.cert), { h2: before.h2 + 1, h1: before.h1 });
    assert.deepEqual(statuses, [200]);
    assert.deepEqual(result.warmups.map((w) => w.nextHopProtocol), ['h2']);
    assert.deepEqual(result.info, { transport: 'websocket', httpProtocol: 'h2', httpProtocolSource: 'warmup' });
    await page.context().close();
  });

  test('with warmup: false, a fresh page has no h2 connection to pool onto: HTTP/1.1, and the SDK says so', async () => {
    const before = await websocketsTotal(serve.port, tc.cert);
    const { page, statuses } = await sdkPage();
    const result = await connectInPage(page, `wss://localhost:${serve.port}/rt`, { token: await signToken('bob'), warmup: false });
    assert.deepEqual(await websocketsTotal(serve.port, tc.cert), { h2: before.h2, h1: before.h1 + 1 }, 'the server counted one HTTP/1.1 Upgrade');
    assert.deepEqual(statuses, [101]);
    assert.deepEqual(result.warmups, []);
    assert.deepEqual(result.info, { transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'server' });
    await page.context().close();
  });
});

describe('the SDK in Chromium against serve with http2: false', () => {
  const serve = useTlsServe('h1', false);

  test('the warm-up goes over HTTP/1.1, the WebSocket is an Upgrade, and the SDK reports http/1.1', async () => {
    const before = await websocketsTotal(serve.port, tc.cert);
    const url = `wss://localhost:${serve.port}/rt`;
    const { page, statuses } = await sdkPage();
    const withToken = await connectInPage(page, url, { token: await signToken('carol') });
    const anonymous = await connectInPage(page, url, {});
    assert.deepEqual(await websocketsTotal(serve.port, tc.cert), { h2: before.h2, h1: before.h1 + 2 });
    assert.deepEqual(statuses, [101, 101]);
    assert.deepEqual(withToken.info, { transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'server' });
    assert.deepEqual(anonymous.info, { transport: 'websocket', httpProtocol: 'http/1.1', httpProtocolSource: 'warmup' });
    assert.deepEqual(
      anonymous.warmups.map((w) => w.nextHopProtocol),
      ['http/1.1', 'http/1.1'],
    );
    await page.context().close();
  });
});
