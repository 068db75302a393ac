/**
 * Headless Chromium and `switchboard serve` with TLS (h2 and HTTP/1.1 on one
 * port): what carries the browser's WebSocket.
 *
 * Chromium opens a WebSocket over HTTP/2 (RFC 8441) only on an h2
 * connection it already has to that origin, whose SETTINGS allow extended
 * CONNECT; it never opens a new connection for it. So:
 * - a page loaded from the server (its h2 connection is there) opens
 *   `wss://` to the same origin → an extended CONNECT on that connection;
 * - a fresh context (no connection) opening `wss://` → the HTTP/1.1 Upgrade.
 *
 * Evidence from both ends: the server's metrics (`switchboard_websockets_total`
 * by `http_version`, `switchboard_http2_sessions_total`) and Chromium's own
 * DevTools events (`Network.webSocketHandshakeResponseReceived`: status 200
 * over h2, 101 over HTTP/1.1). The certificate is self-signed (openssl, at
 * test time); the contexts ignore certificate errors.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { makeTestCertificate, type TestCertificate } from '../support/certs.js';
import { handshakeRecordingPage, killAll, launchBrowser, startServe, websocketsTotal, type Serve, type TestBrowser } from './helpers.js';

let tc: TestCertificate;
let serve: Serve;
let tb: TestBrowser;

before(async () => {
  tc = makeTestCertificate();
  const config = join(tc.dir, 'switchboard.json');
  writeFileSync(config, JSON.stringify({ tls: { cert: tc.certFile, key: tc.keyFile }, allowedOrigins: ['*'] }));
  serve = await startServe(0, ['--config', config]);
  tb = await launchBrowser();
});

after(async () => {
  await tb?.close();
  await serve?.stop();
  killAll();
  tc?.remove();
});

/** Open a WebSocket to the server's endpoint from the page; resolves with what the page saw. */
function openFromPage(page: Page, url: string): Promise<{ opened: boolean; protocol: string; code?: number }> {
  return page.evaluate(
    (u) =>
      new Promise((resolve) => {
        const ws = new WebSocket(u, 'switchboard.v1.json');
        ws.onopen = () => {
          const protocol = ws.protocol;
          ws.onclose = () => resolve({ opened: true, protocol });
          ws.close(1000);
        };
        ws.onclose = (e) => resolve({ opened: false, protocol: '', code: e.code });
      }),
    url,
  );
}

test('Chromium: a page of the server opens its WebSocket over HTTP/2 (extended CONNECT on the page\'s h2 connection)', async () => {
  const before = await websocketsTotal(serve.port, tc.cert);
  const { page, statuses } = await handshakeRecordingPage(tb.browser);
  const origin = `https://localhost:${serve.port}`;
  const response = await page.goto(`${origin}/healthz`);
  assert.equal(response?.status(), 200);
  // What the page itself was loaded with: the connection a WebSocket can pool onto.
  const navProtocol = await page.evaluate(() => (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).nextHopProtocol);
  assert.equal(navProtocol, 'h2');
  const result = await openFromPage(page, `wss://localhost:${serve.port}/rt`);
  assert.deepEqual(result, { opened: true, protocol: 'switchboard.v1.json' });
  assert.deepEqual(await websocketsTotal(serve.port, tc.cert), { h2: before.h2 + 1, h1: before.h1 }, 'the server counted one WebSocket carried by an h2 stream');
  assert.deepEqual(statuses, [200], 'Chromium saw a 200 answer (RFC 8441), not a 101');
  await page.context().close();
});

test('Chromium: a fresh context (no connection to the origin yet) opens its WebSocket over HTTP/1.1', async () => {
  const before = await websocketsTotal(serve.port, tc.cert);
  const { page, statuses } = await handshakeRecordingPage(tb.browser);
  // about:blank: nothing loaded from the server, so no h2 connection to pool onto.
  const result = await openFromPage(page, `wss://localhost:${serve.port}/rt`);
  assert.deepEqual(result, { opened: true, protocol: 'switchboard.v1.json' });
  assert.deepEqual(await websocketsTotal(serve.port, tc.cert), { h2: before.h2, h1: before.h1 + 1 }, 'the server counted one WebSocket over an HTTP/1.1 Upgrade');
  assert.deepEqual(statuses, [101], 'Chromium saw 101 Switching Protocols');
  await page.context().close();
});
