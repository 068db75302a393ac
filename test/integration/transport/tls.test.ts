/**
 * wss:// with a self-signed certificate made at test time by openssl (the
 * test fails, never skips, if openssl is missing).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WebSocket, WebSocketServer } from '../../../src/index.js';
import { closeOf, harness, listen, waitEvent, type Harness } from './helpers.js';

let cert: Buffer;
let key: Buffer;
let dir: string;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'switchboard-tls-'));
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '1', '-subj', '/CN=localhost'],
    { cwd: dir, stdio: 'pipe', timeout: 30_000 },
  );
  cert = readFileSync(path.join(dir, 'c.pem'));
  key = readFileSync(path.join(dir, 'k.pem'));
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function tlsEchoServer(h: Harness, options: { perMessageDeflate?: boolean } = {}) {
  const server = https.createServer({ cert, key });
  h.trackServer(server);
  const wss = new WebSocketServer({ server, ...options });
  h.track(wss);
  const secure: boolean[] = [];
  wss.on('connection', (ws, req) => {
    secure.push(Boolean((req.socket as { encrypted?: boolean }).encrypted));
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const port = await listen(server);
  return { port, wss, secure };
}

async function echoOnce(ws: WebSocket, data: string | Buffer): Promise<Buffer> {
  const got = waitEvent<[Buffer]>(ws, 'message');
  ws.send(data);
  return (await got)[0];
}

test('wss:// with the CA: echo works, the server sees an encrypted socket', async (t) => {
  const h = harness(t);
  const { port, secure } = await tlsEchoServer(h);
  const ws = await h.open(`wss://localhost:${port}`, { ca: cert });
  assert.equal(ws.url, `wss://localhost:${port}`);
  assert.equal(String(await echoOnce(ws, 'over tls')), 'over tls');
  const big = Buffer.alloc(2 * 1024 * 1024, 7);
  assert.ok(big.equals(await echoOnce(ws, big)));
  assert.deepEqual(secure, [true]);
  const closed = closeOf(ws);
  ws.close(1000, 'done');
  assert.equal((await closed)[0], 1000);
});

test('wss:// with rejectUnauthorized: false and no CA: echo works', async (t) => {
  const h = harness(t);
  const { port } = await tlsEchoServer(h);
  const ws = await h.open(`wss://localhost:${port}`, { rejectUnauthorized: false });
  assert.equal(String(await echoOnce(ws, 'insecure but encrypted')), 'insecure but encrypted');
});

test('wss:// with permessage-deflate', async (t) => {
  const h = harness(t);
  const { port } = await tlsEchoServer(h, { perMessageDeflate: true });
  const ws = await h.open(`wss://localhost:${port}`, { ca: cert });
  assert.match(ws.extensions, /permessage-deflate/);
  const text = 'compressed and encrypted '.repeat(2000);
  assert.equal(String(await echoOnce(ws, text)), text);
});

test('wss:// without the CA: the client gets an error and close 1006', async (t) => {
  const h = harness(t);
  const { port, wss } = await tlsEchoServer(h);
  let connections = 0;
  wss.on('connection', () => connections++);
  const ws = h.client(`wss://localhost:${port}`);
  const errored = waitEvent<[Error & { code?: string }]>(ws, 'error');
  const closed = waitEvent<[number]>(ws, 'close');
  const [err] = await errored;
  assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
  assert.equal((await closed)[0], 1006);
  assert.equal(ws.readyState, WebSocket.CLOSED);
  assert.equal(connections, 0);
});

test('wss:// to a host name the certificate does not cover fails', async (t) => {
  const h = harness(t);
  const { port } = await tlsEchoServer(h);
  // The certificate is for CN=localhost; 127.0.0.1 is not in it.
  const ws = h.client(`wss://127.0.0.1:${port}`, { ca: cert });
  const errored = waitEvent<[Error & { code?: string }]>(ws, 'error');
  const closed = waitEvent<[number]>(ws, 'close');
  assert.equal((await errored)[0].code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  assert.equal((await closed)[0], 1006);
});

test('a ws:// client against a wss:// server fails cleanly', async (t) => {
  const h = harness(t);
  const { port } = await tlsEchoServer(h);
  const ws = h.client(`ws://localhost:${port}`, { handshakeTimeout: 2000 });
  ws.on('error', () => {});
  assert.equal((await waitEvent<[number]>(ws, 'close'))[0], 1006);
});
