/**
 * The client SDK falls back by itself when something between it and the
 * server breaks WebSocket — here a real HTTP proxy on loopback in front of
 * the real server, as a misconfigured reverse proxy would:
 * - it does not forward Upgrade (answers the handshake 400): the client moves
 *   on to SSE;
 * - it also buffers responses until they end (an SSE stream then never
 *   shows an event): the client moves on to long-polling.
 * A WebSocket client straight on the server is in the same channel both ways.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Client } from '../../../src/client/index.js';
import { FetchEventSource } from '../carriers/helpers.js';
import { createClient, nextEvent, signToken, startServer, until, within } from './helpers.js';

/** A reverse proxy to `target` that refuses upgrades; with `buffer`, it sends each response only once it has ended. */
async function brokenProxy(t: TestContext, target: number, options: { buffer: boolean }): Promise<{ url: string; upgradesRefused: () => number }> {
  let refused = 0;
  const proxy = http.createServer((req, res) => {
    const upstream = http.request(
      { host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers, agent: false },
      (answer) => {
        if (!options.buffer) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(Buffer.concat(chunks));
        });
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  proxy.on('upgrade', (_req, socket) => {
    refused++;
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        proxy.closeAllConnections();
        proxy.close(() => resolve());
      }),
  );
  return { url: `ws://127.0.0.1:${(proxy.address() as AddressInfo).port}/rt`, upgradesRefused: () => refused };
}

function sdkBehindProxy(t: TestContext, url: string, token: string): Client {
  return createClient(t, url, {
    token,
    transports: ['websocket', 'sse', 'poll'],
    EventSource: FetchEventSource as never,
    connectTimeoutMs: 1500,
    upgradeProbeDelayMs: 3_600_000, // no way back in this test: the proxy never lets WebSocket through
  });
}

for (const [buffer, expected] of [
  [false, 'sse'],
  [true, 'poll'],
] as const) {
  test(`behind a proxy that refuses WebSocket${buffer ? ' and buffers responses' : ''}: the client moves on to ${expected} by itself and chats with a WebSocket client`, async (t) => {
    const s = await startServer(t);
    const proxy = await brokenProxy(t, s.port, { buffer });
    const c = sdkBehindProxy(t, proxy.url, await signToken('behind-proxy'));
    const switches: string[] = [];
    c.on('transport', (e) => switches.push(`${e.from}>${e.to}`));
    const got: unknown[] = [];
    const sub = c.subscribe('chat/proxy', { onMessage: (p) => got.push(p.data) });
    const subscribed = nextEvent(sub, 'subscribed', 15_000);
    await within(c.connect(), 15_000, `connect through the proxy over ${expected}`);
    await subscribed;
    assert.equal(c.transport, expected);
    assert.deepEqual(switches, buffer ? ['websocket>sse', 'sse>poll'] : ['websocket>sse']);
    assert.equal(proxy.upgradesRefused(), 2, 'two refused handshakes before falling back (fallbackAfter)');

    // Straight on the server, a WebSocket client in the same channel.
    const direct = createClient(t, s.url, { token: await signToken('direct') });
    const directGot: unknown[] = [];
    const directSub = direct.subscribe('chat/proxy', { onMessage: (p) => directGot.push(p.data) });
    const directSubscribed = nextEvent(directSub, 'subscribed');
    await within(direct.connect(), 3000, 'the direct client');
    await directSubscribed;
    await c.publish('chat/proxy', `over ${expected}`);
    await direct.publish('chat/proxy', 'over websocket');
    await until(() => got.length === 2 && directGot.length === 2, 5000, 'both messages on both sides');
    assert.deepEqual(got, [`over ${expected}`, 'over websocket']);
    assert.deepEqual(directGot, [`over ${expected}`, 'over websocket']);
  });
}
