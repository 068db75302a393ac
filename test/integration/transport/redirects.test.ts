/**
 * The client follows redirects of the opening handshake when asked
 * (`followRedirects`, `maxRedirects`, as `ws`): real HTTP servers answering
 * 301/302/307 in front of a real WebSocketServer on loopback.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from '../../../src/index.js';
import { HandshakeError } from '../../../src/protocol/errors.js';
import { closeOf, harness, listen, waitEvent, type Harness } from './helpers.js';

/** An HTTP server answering each path of `routes` with `status` and `Location: to()`; every request is recorded. */
async function redirector(h: Harness, routes: Record<string, { status: number; to: () => string }>) {
  const requests: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req);
    const route = routes[req.url ?? ''];
    if (route) res.writeHead(route.status, { Location: route.to() }).end();
    else res.writeHead(404).end();
  });
  h.trackServer(server);
  return { port: await listen(server), requests };
}

test('followRedirects: 301 then 307 (relative and absolute Location, http: mapped to ws:) lead to the server; url and the redirect event follow', async (t) => {
  const h = harness(t);
  const { wss, port } = await h.server();
  const seen: string[] = [];
  wss.on('connection', (ws, req) => {
    seen.push(req.url ?? '');
    ws.on('message', (d) => ws.send(d));
  });
  const r = await redirector(h, {
    '/a': { status: 301, to: () => '/b?x=1' },
    '/b?x=1': { status: 307, to: () => `http://127.0.0.1:${port}/end` },
  });
  const ws = h.client(`ws://127.0.0.1:${r.port}/a`, { followRedirects: true });
  const redirects: string[] = [];
  ws.on('redirect', (url: string, request: http.ClientRequest) => {
    assert.equal(typeof request.getHeader, 'function');
    redirects.push(url);
  });
  await waitEvent(ws, 'open');
  assert.deepEqual(redirects, [`ws://127.0.0.1:${r.port}/b?x=1`, `ws://127.0.0.1:${port}/end`]);
  assert.equal(ws.url, `ws://127.0.0.1:${port}/end`);
  assert.deepEqual(seen, ['/end']);
  const echo = waitEvent<[Buffer]>(ws, 'message');
  ws.send('after two hops');
  assert.equal(String((await echo)[0]), 'after two hops');
});

test('without followRedirects a 3xx refuses the handshake with its status and Location', async (t) => {
  const h = harness(t);
  const r = await redirector(h, { '/': { status: 302, to: () => 'ws://elsewhere.invalid/' } });
  const ws = h.client(`ws://127.0.0.1:${r.port}/`);
  const error = waitEvent<[HandshakeError]>(ws, 'error');
  const [err] = await error;
  assert.equal(err.code, 'WS_ERR_UNEXPECTED_STATUS');
  assert.equal(err.statusCode, 302);
  assert.equal(err.headers.location, 'ws://elsewhere.invalid/');
});

test('maxRedirects: one hop more fails with WS_ERR_MAX_REDIRECTS; a loop ends there too', async (t) => {
  const h = harness(t);
  const r = await redirector(h, { '/loop': { status: 302, to: () => '/loop' } });
  const ws = h.client(`ws://127.0.0.1:${r.port}/loop`, { followRedirects: true, maxRedirects: 3 });
  const closed = closeOf(ws);
  const [err] = await waitEvent<[HandshakeError]>(ws, 'error');
  assert.equal(err.code, 'WS_ERR_MAX_REDIRECTS');
  assert.equal(err.message, 'Maximum redirects exceeded (3)');
  assert.equal((await closed)[0], 1006);
  assert.equal(r.requests.length, 4, 'the first request and 3 redirects');
});

test('a redirect to another host:port drops Authorization and Cookie (and the auth option); the same host:port keeps them', async (t) => {
  const h = harness(t);
  // One server for both: redirects and the WebSocket endpoint (/ws) on the same host:port.
  const wss = new WebSocketServer({ noServer: true });
  h.track(wss);
  const server = http.createServer();
  h.trackServer(server);
  const headers: http.IncomingHttpHeaders[] = [];
  const firstHops: http.IncomingHttpHeaders[] = [];
  let port = 0;
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (req.url === '/ws') {
      headers.push(req.headers);
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
      return;
    }
    firstHops.push(req.headers);
    const to = req.url === '/same' ? '/ws' : `ws://localhost:${port}/ws`;
    socket.end(`HTTP/1.1 302 Found\r\nLocation: ${to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  });
  port = await listen(server);
  const credentials = { headers: { Authorization: 'Bearer secret', Cookie: 'sid=1', 'X-Keep': 'yes' } };
  for (const [path, options] of [['/same', credentials], ['/other', credentials], ['/other', { auth: 'u:p' }]] as const) {
    const ws = h.client(`ws://127.0.0.1:${port}${path}`, { followRedirects: true, ...options });
    await waitEvent(ws, 'open');
  }
  assert.equal(headers[0]!.authorization, 'Bearer secret', 'same host:port: kept');
  assert.equal(headers[0]!.cookie, 'sid=1');
  assert.equal(headers[1]!.authorization, undefined, '127.0.0.1 → localhost: dropped');
  assert.equal(headers[1]!.cookie, undefined);
  assert.equal(headers[1]!['x-keep'], 'yes', 'other headers stay');
  assert.equal(headers[2]!.authorization, undefined, 'the auth option is dropped too');
  assert.equal(firstHops[2]!.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`, 'the first host got it');
});
