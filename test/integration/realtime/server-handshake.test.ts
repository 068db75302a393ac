/**
 * The realtime server's handshake (docs/protocol.md "Versions and
 * encodings", "Limits and what they answer"): the Origin check against
 * cross-site WebSocket hijacking, subprotocol negotiation (JSON, MessagePack,
 * none, unknown versions), and a plain `ws` client speaking the protocol.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { encode as pack, decode as unpack } from '@msgpack/msgpack';
import WsWebSocket from 'ws';
import { connect, connectAs, signToken, startServer, upgrade, within, WAIT } from './helpers.js';

describe('origin check', () => {
  test('a cross-origin browser handshake is refused with 403, even with a valid cookie', async (t) => {
    const { base, logs } = await startServer(t);
    const cookie = `sb_token=${await signToken('alice')}`;
    const res = await upgrade(base, '/rt', { Origin: 'https://evil.example', Cookie: cookie });
    assert.equal(res.status, 403);
    assert.match(res.text, /origin/i);
    assert.ok(logs.some((l) => l.msg === 'origin refused' && l.origin === 'https://evil.example'), 'no log line for the refusal');
    // Another port is another origin (the scheme is not compared: behind a TLS proxy the page is https).
    assert.equal((await upgrade(base, '/rt', { Origin: 'http://127.0.0.1:1' })).status, 403);
    assert.equal((await upgrade(base, '/rt', { Origin: 'null' })).status, 403);
  });

  test("same-origin pages and listed origins get 101; requests without Origin pass", async (t) => {
    const { base } = await startServer(t, { config: { allowedOrigins: ['https://app.example.com'] } });
    assert.equal((await upgrade(base, '/rt', { Origin: base })).status, 101, 'same origin');
    assert.equal((await upgrade(base, '/rt', { Origin: 'https://app.example.com' })).status, 101, 'listed');
    assert.equal((await upgrade(base, '/rt', { Origin: 'https://APP.example.com:443' })).status, 101, 'listed, normalized');
    assert.equal((await upgrade(base, '/rt', { Origin: 'https://app.example.com:8443' })).status, 403, 'other port');
    assert.equal((await upgrade(base, '/rt', { Origin: 'https://other.example.com' })).status, 403, 'unlisted');
    assert.equal((await upgrade(base, '/rt')).status, 101, 'no Origin');
  });

  test("allowedOrigins ['*'] lets every origin in", async (t) => {
    const { base } = await startServer(t, { config: { allowedOrigins: ['*'] } });
    assert.equal((await upgrade(base, '/rt', { Origin: 'https://evil.example' })).status, 101);
  });

  test('a client whose handshake was refused never reaches the hub; others keep working', async (t) => {
    const { url, server, base } = await startServer(t);
    const alice = await connectAs(t, url, 'alice');
    await alice.ok('sub', { channel: 'chat/a' });
    assert.equal((await upgrade(base, '/rt', { Origin: 'https://evil.example' })).status, 403);
    assert.equal(server.hub.sessions.size, 1);
    await server.publish('chat/a', 'still here');
    assert.equal((await alice.nextOp('msg')).data, 'still here');
  });
});

describe('half-open handshakes', () => {
  test('a request head that never completes is cut off at headersTimeout, checked every second (not every 30 s)', async (t) => {
    const { server, port } = await startServer(t);
    // Node reads headersTimeout at each check, so a short one here shows how often it checks.
    (server.httpServer as { headersTimeout: number }).headersTimeout = 300;
    const socket = net.connect(port, '127.0.0.1');
    t.after(() => socket.destroy());
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('GET /rt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
    // With Node's default connectionsCheckingInterval (30 s) the socket would still be open long after this.
    await within(closed, 5000, 'the server to close the half-open handshake');
    assert.match(answer, /^HTTP\/1\.1 408 /, 'closed by the headers timeout');
  });
});

describe('subprotocols', () => {
  test('switchboard.v1.json: text frames with one JSON object each', async (t) => {
    const { url } = await startServer(t);
    const c = await connectAs(t, url, 'alice', {}, { protocols: ['switchboard.v1.json'] });
    assert.equal(c.ws.protocol, 'switchboard.v1.json');
    await c.ok('sub', { channel: 'chat/a' });
    await c.ok('pub', { channel: 'chat/a', data: { n: 1 } });
    assert.deepEqual((await c.nextOp('msg')).data, { n: 1 });
    assert.ok(c.frameBinary.every((b) => b === false), 'a binary frame on the JSON protocol');
  });

  test('switchboard.v1.msgpack: binary frames with one MessagePack map each', async (t) => {
    const { url } = await startServer(t);
    const c = await connect(t, url, { protocols: ['switchboard.v1.msgpack'] });
    assert.equal(c.ws.protocol, 'switchboard.v1.msgpack');
    // Raw frames, encoded and decoded here with @msgpack/msgpack.
    const frames: Array<[Buffer, boolean]> = [];
    c.ws.on('message', (data: Buffer, isBinary: boolean) => frames.push([data, isBinary]));
    c.ws.send(pack({ op: 'auth', id: 1, token: await signToken('alice') }), { binary: true });
    const auth = await c.next((m) => m.id === 1);
    assert.equal(auth.op, 'ok');
    assert.equal(auth.user, 'alice');
    c.ws.send(pack({ op: 'sub', id: 2, channel: 'chat/a' }), { binary: true });
    await c.next((m) => m.id === 2 && m.op === 'ok');
    c.ws.send(pack({ op: 'pub', id: 3, channel: 'chat/a', data: { bytes: new Uint8Array([1, 2, 3]), n: 7 } }), { binary: true });
    await c.next((m) => m.id === 3 && m.op === 'ok');
    const msg = await c.nextOp('msg');
    assert.equal(msg.data.n, 7);
    assert.deepEqual([...msg.data.bytes], [1, 2, 3]);
    assert.ok(frames.length >= 4);
    for (const [data, isBinary] of frames) {
      assert.equal(isBinary, true);
      const decoded = unpack(data) as Record<string, unknown>;
      assert.equal(typeof decoded.op, 'string');
    }
  });

  test('a JSON text message on the MessagePack protocol is malformed: close 4501', async (t) => {
    const { url } = await startServer(t);
    const c = await connect(t, url, { protocols: ['switchboard.v1.msgpack'] });
    c.ws.send(JSON.stringify({ op: 'ping' }));
    assert.equal((await c.closeOf()).code, 4501);
  });

  test('both offered: the server picks the best it knows (its own order)', async (t) => {
    const { url } = await startServer(t);
    const c = await connect(t, url, { protocols: ['switchboard.v1.msgpack', 'switchboard.v1.json'] });
    assert.equal(c.ws.protocol, 'switchboard.v1.json');
    const d = await connect(t, url, { protocols: ['switchboard.v2.json', 'switchboard.v1.msgpack'] });
    assert.equal(d.ws.protocol, 'switchboard.v1.msgpack');
  });

  test('no subprotocol offered: JSON, and no Sec-WebSocket-Protocol in the answer', async (t) => {
    const { url, base } = await startServer(t);
    const c = await connect(t, url, { protocols: [] });
    assert.equal(c.ws.protocol, '');
    c.send({ op: 'auth', id: 1, token: await signToken('alice') });
    const reply = await c.next((m) => m.id === 1);
    assert.equal(reply.op, 'ok');
    assert.equal(c.frameBinary[0], false);
    const res = await upgrade(base, '/rt');
    assert.equal(res.status, 101);
    assert.equal(res.headers['sec-websocket-protocol'], undefined);
  });

  test('only unknown versions: HTTP 400 naming the supported ones, never a silent downgrade', async (t) => {
    const { base } = await startServer(t);
    const res = await upgrade(base, '/rt', { 'Sec-WebSocket-Protocol': 'switchboard.v2.json' });
    assert.equal(res.status, 400);
    assert.match(res.text, /switchboard\.v1\.json/);
    assert.match(res.text, /switchboard\.v1\.msgpack/);
    const other = await upgrade(base, '/rt', { 'Sec-WebSocket-Protocol': 'mqtt, switchboard.v2.msgpack' });
    assert.equal(other.status, 400);
  });

  test('an upgrade on another path is 404', async (t) => {
    const { base } = await startServer(t);
    assert.equal((await upgrade(base, '/elsewhere')).status, 404);
  });
});

describe('a plain WebSocket client', () => {
  test('the `ws` package speaks the protocol: auth, sub, pub, msg, app-level ping', async (t) => {
    const { url } = await startServer(t);
    const ws = new WsWebSocket(url, 'switchboard.v1.json');
    t.after(() => ws.terminate());
    const inbox: Array<Record<string, any>> = [];
    let wake: (() => void) | null = null;
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false);
      inbox.push(JSON.parse(String(data)));
      wake?.();
    });
    const next = (match: (m: Record<string, any>) => boolean): Promise<Record<string, any>> =>
      within(
        (async () => {
          for (;;) {
            const i = inbox.findIndex(match);
            if (i !== -1) return inbox.splice(i, 1)[0]!;
            await new Promise<void>((resolve) => (wake = resolve));
          }
        })(),
        WAIT,
        'a message on the ws client',
      );
    await within(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), WAIT, 'ws open');
    assert.equal(ws.protocol, 'switchboard.v1.json');
    ws.send(JSON.stringify({ op: 'auth', id: 'a1', token: await signToken('wsuser') }));
    assert.equal((await next((m) => m.id === 'a1')).user, 'wsuser');
    ws.send(JSON.stringify({ op: 'sub', id: 2, channel: 'chat/ws' }));
    assert.equal((await next((m) => m.id === 2)).op, 'ok');
    ws.send(JSON.stringify({ op: 'pub', id: 3, channel: 'chat/ws', data: 'from ws' }));
    assert.equal((await next((m) => m.id === 3)).offset, 1);
    const msg = await next((m) => m.op === 'msg');
    assert.equal(msg.data, 'from ws');
    assert.equal(msg.from.user, 'wsuser');
    ws.send(JSON.stringify({ op: 'ping' }));
    await next((m) => m.op === 'pong');
    ws.close(1000);
    await within(new Promise((resolve) => ws.once('close', resolve)), WAIT, 'ws close');
  });
});
