/**
 * RFC 8441 through a real proxy: HAProxy 2.6 (Debian's) with an h2 front and
 * an h2 back end (`alpn h2 ws h2`, test/support/proxies.ts `HaproxyH2`), our
 * WebSocketServer on a node:http2 server behind it.
 *
 * - our client over h2 → HAProxy's h2 front → our server over h2;
 * - our client over HTTP/1.1 → HAProxy → our server over h2 (HAProxy turns
 *   the Upgrade into an extended CONNECT).
 * Each side reports which HTTP version carried its WebSocket.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { test } from 'node:test';
import { Http2SessionPool, WebSocket, WebSocketServer } from '../../src/index.js';
import { makeTestCertificate } from '../support/certs.js';
import { HaproxyH2 } from '../support/proxies.js';
import { WAIT, waitEvent, within } from '../support/wait.js';
import '../support/leak-check.js';

test('HAProxy h2 front and back: our client over h2 and over HTTP/1.1, both reach our server as RFC 8441 streams', async (t) => {
  const tc = makeTestCertificate();
  t.after(() => tc.remove());
  const server = http2.createSecureServer({ allowHTTP1: true, cert: tc.cert, key: tc.key }, (_req, res) => res.end('ok'));
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (s) => sessions.push(s));
  const wss = new WebSocketServer({ server, perMessageDeflate: true });
  const seen: string[] = [];
  wss.on('connection', (ws, req) => {
    seen.push(`${req.httpVersion} ${req.url}`);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  await new Promise<void>((resolve) => (server as unknown as net.Server).listen(0, '127.0.0.1', resolve));
  const nodePort = (server.address() as net.AddressInfo).port;
  const proxy = await HaproxyH2.start(nodePort, tc.combinedFile);
  const pool = new Http2SessionPool({ idleTimeout: 200 });
  t.after(async () => {
    pool.close();
    await proxy.stop();
    await within(new Promise<void>((resolve) => wss.close(() => resolve())), WAIT, 'wss close').catch(() => {});
    for (const s of sessions) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function run(path: string, options: object): Promise<{ via: string; text: string; big: number; code: number }> {
    const ws = new WebSocket(`wss://localhost:${proxy.port}${path}`, { ca: tc.cert, ...options });
    const opened = waitEvent(ws, 'open', 10_000);
    const [response] = await waitEvent<[{ httpVersion: string }]>(ws, 'upgrade', 10_000).catch((err: Error) => {
      throw new Error(`${err.message}\nhaproxy output:\n${proxy.output}`);
    });
    await opened;
    const got = waitEvent<[Buffer]>(ws, 'message');
    ws.send(`hello via ${path}`);
    const text = String((await got)[0]);
    const bigGot = waitEvent<[Buffer]>(ws, 'message', 10_000);
    ws.send(Buffer.alloc(1024 * 1024, 7)); // beyond every flow-control window on both legs
    const big = (await bigGot)[0].length;
    const closed = waitEvent<[number]>(ws, 'close', 10_000);
    ws.close(1000);
    return { via: response.httpVersion, text, big, code: (await closed)[0] };
  }

  const h2front = await run('/h2-front', { http2: { pool } });
  assert.deepEqual(h2front, { via: '2.0', text: 'hello via /h2-front', big: 1024 * 1024, code: 1000 });
  const h1front = await run('/h1-front', {});
  assert.deepEqual(h1front, { via: '1.1', text: 'hello via /h1-front', big: 1024 * 1024, code: 1000 });
  // Behind HAProxy both arrived as extended CONNECTs on h2 streams.
  assert.deepEqual(seen, ['2.0 /h2-front', '2.0 /h1-front']);
});
