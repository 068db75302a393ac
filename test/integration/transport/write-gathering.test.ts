/**
 * Frames written in one tick go to the socket together (WebSocket#onWrite):
 * small frames without a callback are gathered and handed to the socket as
 * one buffer when the tick ends; a large frame, a write with a callback and
 * the end of TCP first flush what was gathered. What the peer reads must be
 * exactly the frames, in the order they were sent.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { encodeServerFrame, Opcode } from '../../../src/protocol/index.js';
import type { WebSocket, WebSocketServer } from '../../../src/index.js';
import { harness, waitEvent, type Harness } from './helpers.js';

/** A raw client and the server side of its connection, with the server socket's write() calls counted. */
async function countedPair(h: Harness): Promise<{ raw: Awaited<ReturnType<Harness['rawWebSocket']>>['raw']; server: WebSocket; writes: () => number }> {
  const { wss, port } = await h.server({ perMessageDeflate: false });
  let writes = 0;
  const conn = waitEvent<[WebSocket, IncomingMessage]>(wss as WebSocketServer, 'connection');
  const { raw } = await h.rawWebSocket(port);
  const [server, req] = await conn;
  const socket = req.socket as net.Socket;
  const write = socket.write;
  socket.write = function (this: net.Socket, ...args: Parameters<net.Socket['write']>) {
    writes++;
    return write.apply(this, args);
  } as net.Socket['write'];
  return { raw, server, writes: () => writes };
}

test('small frames sent in one tick reach the socket in one write, in order, and count in bufferedAmount until then', async (t) => {
  const h = harness(t);
  const { raw, server, writes } = await countedPair(h);
  const shared = encodeServerFrame(Opcode.Text, Buffer.from('shared'));
  let expectedBytes = 0;
  for (let i = 0; i < 40; i++) {
    server.send(`m${i}`);
    expectedBytes += 2 + `m${i}`.length;
    if (i % 10 === 0) {
      server.sendFrame(shared);
      expectedBytes += shared.length;
    }
  }
  assert.equal(writes(), 0, 'nothing handed to the socket before the tick ends');
  assert.equal(server.bufferedAmount, expectedBytes, 'the gathered frames count in bufferedAmount');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(writes(), 1, 'one socket.write for the whole tick');
  const got: string[] = [];
  for (let i = 0; i < 44; i++) {
    const f = await raw.readFrame();
    assert.equal(f.opcode, Opcode.Text);
    assert.equal(f.masked, false);
    got.push(f.payload.toString());
  }
  const expected: string[] = [];
  for (let i = 0; i < 40; i++) {
    expected.push(`m${i}`);
    if (i % 10 === 0) expected.push('shared');
  }
  assert.deepEqual(got, expected);
});

test('a large frame, a send with a callback and the close go out after what was gathered before them', async (t) => {
  const h = harness(t);
  const { raw, server } = await countedPair(h);
  const big = Buffer.alloc(40 * 1024, 0x62);
  let called = false;
  server.send('a');
  server.send('b');
  server.send(big); // >= 1 KiB: written as it is, after a and b
  server.send('c');
  server.send('d', () => (called = true)); // a callback: c first, then d with it
  server.send('e');
  server.close(1000, 'bye'); // the close frame after e
  const frames = [];
  for (let i = 0; i < 7; i++) frames.push(await raw.readFrame());
  assert.deepEqual(
    frames.map((f) => [f.opcode, f.opcode === Opcode.Binary ? f.payload.length : f.payload.toString('latin1')]),
    [
      [Opcode.Text, 'a'],
      [Opcode.Text, 'b'],
      [Opcode.Binary, big.length],
      [Opcode.Text, 'c'],
      [Opcode.Text, 'd'],
      [Opcode.Text, 'e'],
      [Opcode.Close, '\x03\xe8bye'],
    ],
  );
  assert.ok(frames[2]!.payload.equals(big));
  assert.equal(called, true, "the callback ran once its frame was written");
});

test('more than 64 KiB of small frames in one tick all arrive, in order', async (t) => {
  const h = harness(t);
  const { raw, server } = await countedPair(h);
  const n = 200;
  const payload = (i: number) => `${i}:`.padEnd(1000, 'x');
  for (let i = 0; i < n; i++) server.send(payload(i));
  for (let i = 0; i < n; i++) {
    const f = await raw.readFrame();
    assert.equal(f.payload.toString(), payload(i));
  }
});

test('terminate() in the tick of a send drops what was gathered and does not throw', async (t) => {
  const h = harness(t);
  const { raw, server } = await countedPair(h);
  server.send('lost');
  server.terminate();
  assert.equal(server.bufferedAmount, 0);
  await raw.waitClosed();
});
