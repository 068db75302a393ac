/**
 * Attach mode: `createRealtimeServer({ server })` on an application's own
 * HTTP server (plain `node:http`, then Express). The realtime server takes
 * upgrades on its path and serves its routes through `handleRequest`; the
 * application keeps its own routes and upgrade handlers, and its server
 * stays up when the realtime server closes.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { test, type TestContext } from 'node:test';
import express from 'express';
import { WebSocketServer } from '../../../src/index.js';
import { createRealtimeServer, type RealtimeServer } from '../../../src/server/realtime-server.js';
import { api, captureLogger, connect, connectAs, httpRequest, listenApp, testConfig, upgrade, within, WAIT } from './helpers.js';

function attach(t: TestContext, server: http.Server): RealtimeServer {
  const rt = createRealtimeServer({ server, config: testConfig(), logger: captureLogger() });
  t.after(() => within(rt.close(), 5000, 'RealtimeServer#close'));
  return rt;
}

test('node:http: upgrades at /rt, the app keeps its routes and its own WebSocket endpoint, /api through handleRequest', async (t) => {
  let rt: RealtimeServer | null = null;
  const server = http.createServer((req, res) => {
    if (rt!.handleRequest(req, res)) return;
    if (req.url === '/hello') res.writeHead(200, { 'Content-Type': 'text/plain' }).end('hello from the app');
    else res.writeHead(404).end('app 404');
  });
  rt = attach(t, server);
  // The app's own WebSocket endpoint on the same server.
  const appWss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/app-ws') appWss.handleUpgrade(req, socket, head, (ws) => ws.send('app socket'));
  });
  t.after(() => new Promise<void>((resolve) => appWss.close(() => resolve())));
  const base = await listenApp(t, server);
  const url = `${base.replace('http', 'ws')}/rt`;

  const c = await connectAs(t, url, 'alice');
  await c.ok('sub', { channel: 'att/x' });
  const res = await api(base, '/api/publish', { channel: 'att/x', data: 'via api' });
  assert.equal(res.status, 200, res.text);
  assert.equal((await c.nextOp('msg')).data, 'via api');
  assert.equal((await httpRequest(base, '/hello')).text, 'hello from the app');
  assert.equal((await httpRequest(base, '/healthz')).status, 200);
  assert.equal((await httpRequest(base, '/nothing')).text, 'app 404');

  const appClient = await connect(t, `${base.replace('http', 'ws')}/app-ws`, { protocols: [] });
  // Not JSON: the protocol client keeps it as undecodable, with its bytes.
  const got = await appClient.next();
  assert.equal(Buffer.from(got.raw, 'hex').toString(), 'app socket');
});

test('attach mode: close() leaves the application server running; upgrades during the shutdown get 503', async (t) => {
  let rt: RealtimeServer | null = null;
  const server = http.createServer((req, res) => {
    if (rt!.handleRequest(req, res)) return;
    res.writeHead(200).end('app');
  });
  rt = attach(t, server);
  const base = await listenApp(t, server);
  const url = `${base.replace('http', 'ws')}/rt`;
  const lingering = await connectAs(t, url, 'a');
  lingering.ws.pause(); // keeps the shutdown going
  const closed = rt.close();
  const refused = await upgrade(base, '/rt');
  assert.equal(refused.status, 503);
  assert.equal(refused.headers['retry-after'], '5', 'Retry-After (docs/http-api.md: server shutting down)');
  assert.equal((await httpRequest(base, '/readyz')).status, 503);
  lingering.ws.resume();
  assert.equal((await lingering.closeOf()).code, 1001);
  await within(closed, 3000, 'close()');
  assert.equal((await httpRequest(base, '/anything')).text, 'app', 'the app server was closed');
});

test('Express: mounted as middleware, next() for the routes it does not serve', async (t) => {
  const app = express();
  let rt: RealtimeServer | null = null;
  app.get('/hello', (_req, res) => {
    res.type('text').send('hello from express');
  });
  app.use((req, res, next) => rt!.handleRequest(req, res) || next());
  app.use((_req, res) => {
    res.status(404).type('text').send('express 404');
  });
  const server = http.createServer(app);
  rt = attach(t, server);
  const base = await listenApp(t, server);
  const url = `${base.replace('http', 'ws')}/rt`;

  const c = await connectAs(t, url, 'alice');
  await c.ok('sub', { channel: 'ex/x' });
  const res = await api(base, '/api/publish', { channel: 'ex/x', data: { from: 'express' } });
  assert.equal(res.status, 200, res.text);
  assert.deepEqual((await c.nextOp('msg')).data, { from: 'express' });
  assert.equal((await httpRequest(base, '/hello')).text, 'hello from express');
  assert.equal((await httpRequest(base, '/metrics')).status, 200);
  const missing = await httpRequest(base, '/nope');
  assert.equal(missing.status, 404);
  assert.equal(missing.text, 'express 404');
  assert.equal((await api(base, '/api/stats')).json().connections, 1);
});

test('Express with express.json() in front: the API still reads the body', async (t) => {
  const app = express();
  let rt: RealtimeServer | null = null;
  app.use(express.json());
  app.use((req, res, next) => rt!.handleRequest(req, res) || next());
  const server = http.createServer(app);
  rt = attach(t, server);
  const base = await listenApp(t, server);
  const c = await connectAs(t, `${base.replace('http', 'ws')}/rt`, 'alice');
  await c.ok('sub', { channel: 'ex/y' });
  const res = await api(base, '/api/publish', { channel: 'ex/y', data: 'parsed first' });
  assert.equal(res.status, 200, res.text);
  assert.equal((await c.nextOp('msg', WAIT)).data, 'parsed first');
});
