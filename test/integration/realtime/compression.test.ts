/**
 * permessage-deflate on the realtime endpoint (`compression`): off by
 * default; when on, negotiated with client_no_context_takeover, large
 * messages compressed per connection in both directions, small ones framed
 * once for everyone; clients without the extension get the same messages.
 * Peers: our WebSocket and the `ws` package (an independent inflater).
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import WsWebSocket from 'ws';
import { connectAs, signToken, startServer, within } from './helpers.js';

/** Bytes the client's TCP socket has read so far (the wire, frames and all). */
function wireBytes(ws: unknown): number {
  return (ws as { socket: Socket }).socket.bytesRead;
}

/** A JSON-friendly payload of ~`n` bytes that compresses well. */
function bulky(n: number): { rows: Array<{ id: number; name: string; status: string }> } {
  const rows = [];
  for (let i = 0; rows.length * 48 < n; i++) rows.push({ id: i, name: `player-${i % 10}`, status: 'online and ready' });
  return { rows };
}

describe('compression on /rt', () => {
  test('off by default: a client that offers permessage-deflate gets no extension', async (t) => {
    const s = await startServer(t);
    const c = await connectAs(t, s.url, 'a', {}, { perMessageDeflate: true });
    assert.equal(c.ws.extensions, '');
  });

  test('on: negotiated with client_no_context_takeover; large messages are compressed on the wire both ways, small ones and non-deflate clients still get everything', async (t) => {
    const s = await startServer(t, { config: { compression: { enabled: true, threshold: 1024 } } });
    const zipped = await connectAs(t, s.url, 'zipped', {}, { perMessageDeflate: true });
    const plain = await connectAs(t, s.url, 'plain', {}, { perMessageDeflate: false });
    assert.match(zipped.ws.extensions, /^permessage-deflate(;|$)/);
    assert.match(zipped.ws.extensions, /client_no_context_takeover/);
    assert.equal(plain.ws.extensions, '');
    for (const c of [zipped, plain]) await c.ok('sub', { channel: 'room/1' });

    const data = bulky(32 * 1024);
    const size = JSON.stringify(data).length;
    const before = [wireBytes(zipped.ws), wireBytes(plain.ws)];
    await s.server.publish('room/1', data);
    for (const c of [zipped, plain]) assert.deepEqual((await c.nextOp('msg')).data, data);
    const zippedWire = wireBytes(zipped.ws) - before[0]!;
    const plainWire = wireBytes(plain.ws) - before[1]!;
    assert.ok(plainWire > size, `plain: ${plainWire} bytes on the wire for ${size} of JSON`);
    assert.ok(zippedWire < size / 5, `compressed: ${zippedWire} bytes on the wire for ${size} of JSON`);

    // Below the threshold: the same frame for both, uncompressed.
    const small = { text: 'hi' };
    const b2 = wireBytes(zipped.ws);
    await s.server.publish('room/1', small);
    for (const c of [zipped, plain]) assert.deepEqual((await c.nextOp('msg')).data, small);
    assert.ok(wireBytes(zipped.ws) - b2 > JSON.stringify(small).length);

    // Client to server: the zipped client publishes a large message compressed; the server inflates it.
    const fromClient = bulky(16 * 1024);
    await zipped.ok('pub', { channel: 'room/1', data: fromClient });
    for (const c of [zipped, plain]) assert.deepEqual((await c.nextOp('msg')).data, fromClient);
  });

  test('the ws package as a peer: it inflates what the server compresses and the server inflates what it sends', async (t) => {
    const s = await startServer(t, { config: { compression: { enabled: true } } });
    const token = await signToken('ws-user');
    const ws = new WsWebSocket(s.url, ['switchboard.v1.json'], { perMessageDeflate: true, headers: { Authorization: `Bearer ${token}` } });
    t.after(() => ws.terminate());
    const messages: Array<Record<string, unknown>> = [];
    ws.on('message', (raw) => messages.push(JSON.parse(String(raw)) as Record<string, unknown>));
    await within(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), 3000, 'ws to open');
    assert.match(ws.extensions, /permessage-deflate/);
    const waitFor = (pred: (m: Record<string, unknown>) => boolean, what: string) =>
      within(
        new Promise<Record<string, unknown>>((resolve) => {
          const check = () => {
            const m = messages.find(pred);
            if (m) resolve(m);
            else setTimeout(check, 5);
          };
          check();
        }),
        3000,
        what,
      );
    ws.send(JSON.stringify({ op: 'sub', id: 1, channel: 'room/2' }));
    await waitFor((m) => m.id === 1, 'the sub reply');
    const data = bulky(20 * 1024);
    ws.send(JSON.stringify({ op: 'pub', id: 2, channel: 'room/2', data }));
    await waitFor((m) => m.id === 2, 'the pub ack');
    const msg = await waitFor((m) => m.op === 'msg', 'the publication back');
    assert.deepEqual(msg.data, data);
  });
});
