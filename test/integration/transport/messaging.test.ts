/**
 * Messaging between our client and our server on loopback: echo of every
 * kind of message, fragments, binaryType, send callbacks, the WHATWG event
 * surface, and the attributes (protocol, extensions, readyState, url).
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { WebSocket, type ClientOptions, type WebSocketServer } from '../../../src/index.js';
import { closeOf, collectMessages, harness, waitEvent, within, WAIT } from './helpers.js';

/** Every connection echoes each message with its type. */
function echo(wss: WebSocketServer): void {
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
}

/** A client connected to a server that echoes. */
async function echoClient(t: TestContext, options?: ClientOptions): Promise<WebSocket> {
  const h = harness(t);
  const { wss, url } = await h.server();
  echo(wss);
  return h.open(url, options);
}

test('text and binary messages are echoed with their type', async (t) => {
  const ws = await echoClient(t);
  const got = collectMessages(ws, 2);
  ws.send('héllo ✓');
  ws.send(Buffer.from([0, 1, 2, 255]));
  const [[text, textIsBinary], [bin, binIsBinary]] = await got;
  assert.equal(textIsBinary, false);
  assert.ok(Buffer.isBuffer(text));
  assert.equal(String(text), 'héllo ✓');
  assert.equal(binIsBinary, true);
  assert.deepEqual(bin, Buffer.from([0, 1, 2, 255]));
});

test('send accepts strings, Buffers, ArrayBuffers, typed arrays and numbers', async (t) => {
  const ws = await echoClient(t);
  const got = collectMessages(ws, 4);
  const u16 = new Uint16Array([0x0102, 0x0304]);
  ws.send(new Uint8Array([9, 8, 7]).buffer);
  ws.send(u16.subarray(1));
  ws.send(42);
  ws.send(Buffer.from('as text'), { binary: false });
  const msgs = await got;
  assert.deepEqual(msgs[0], [Buffer.from([9, 8, 7]), true]);
  assert.deepEqual(msgs[1], [Buffer.from(u16.buffer, 2, 2), true]);
  assert.equal(String(msgs[2]![0]), '42');
  assert.equal(msgs[2]![1], false);
  assert.deepEqual([String(msgs[3]![0]), msgs[3]![1]], ['as text', false]);
});

test('empty text and binary messages arrive as empty messages', async (t) => {
  const ws = await echoClient(t);
  const got = collectMessages(ws, 3);
  ws.send('');
  ws.send(Buffer.alloc(0));
  ws.send('after');
  const msgs = await got;
  assert.deepEqual(
    msgs.map(([d, b]) => [(d as Buffer).length, b]),
    [
      [0, false],
      [0, true],
      [5, false],
    ],
  );
});

test('a 10 MiB message round trips intact', async (t) => {
  const ws = await echoClient(t, { perMessageDeflate: false });
  const big = Buffer.alloc(10 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
  const got = collectMessages(ws, 1, 20_000);
  ws.send(big);
  const [[data, isBinary]] = await got;
  assert.equal(isBinary, true);
  assert.equal((data as Buffer).length, big.length);
  assert.ok(big.equals(data as Buffer), 'payload differs');
});

test('1000 messages arrive in the order they were sent', async (t) => {
  const ws = await echoClient(t);
  const n = 1000;
  const got = collectMessages(ws, n, 10_000);
  for (let i = 0; i < n; i++) ws.send(i % 2 === 0 ? `m${i}` : Buffer.from(`b${i}`));
  const msgs = await got;
  assert.deepEqual(
    msgs.map(([d]) => String(d)),
    Array.from({ length: n }, (_, i) => (i % 2 === 0 ? `m${i}` : `b${i}`)),
  );
  assert.deepEqual(
    msgs.map(([, b]) => b),
    Array.from({ length: n }, (_, i) => i % 2 === 1),
  );
});

test('fragments sent with fin:false arrive as one message', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const serverGot = new Promise<Array<[Buffer, boolean]>>((resolve) => {
    wss.on('connection', (ws) => {
      const msgs: Array<[Buffer, boolean]> = [];
      ws.on('message', (data, isBinary) => {
        msgs.push([data as Buffer, isBinary]);
        if (msgs.length === 2) resolve(msgs);
      });
    });
  });
  const ws = await h.open(url);
  ws.send('hel', { fin: false });
  ws.send('lo ', { fin: false });
  ws.send('world', { fin: true });
  ws.send(Buffer.from([1]), { fin: false });
  ws.send(Buffer.from([2, 3]));
  const msgs = await within(serverGot, WAIT, 'two messages on the server');
  assert.deepEqual(
    msgs.map(([d, b]) => [d.toString('hex'), b]),
    [
      [Buffer.from('hello world').toString('hex'), false],
      ['010203', true],
    ],
  );
});

test('binaryType selects Buffer, ArrayBuffer or Buffer[] for binary messages; text stays a Buffer', async (t) => {
  const ws = await echoClient(t);
  assert.equal(ws.binaryType, 'nodebuffer');

  let got = collectMessages(ws, 1);
  ws.send(Buffer.from([1, 2, 3]));
  let [[data]] = await got;
  assert.ok(Buffer.isBuffer(data));

  ws.binaryType = 'arraybuffer';
  assert.equal(ws.binaryType, 'arraybuffer');
  got = collectMessages(ws, 2);
  ws.send(Buffer.from([4, 5, 6]));
  ws.send('text');
  const msgs = await got;
  assert.ok(msgs[0]![0] instanceof ArrayBuffer);
  assert.deepEqual(new Uint8Array(msgs[0]![0] as ArrayBuffer), new Uint8Array([4, 5, 6]));
  assert.ok(Buffer.isBuffer(msgs[1]![0]), 'text messages are Buffers whatever the binaryType');

  ws.binaryType = 'fragments';
  got = collectMessages(ws, 1);
  ws.send(Buffer.from([7, 8]));
  [[data]] = await got;
  assert.ok(Array.isArray(data));
  assert.deepEqual(Buffer.concat(data as Buffer[]), Buffer.from([7, 8]));

  ws.binaryType = 'bogus' as never;
  assert.equal(ws.binaryType, 'fragments', 'an unknown binaryType is ignored');
});

test('the send callback is called after the write, without an error', async (t) => {
  const ws = await echoClient(t);
  const results: Array<Error | null | undefined> = [];
  await within(
    new Promise<void>((resolve) => {
      ws.send('a', (err) => results.push(err));
      ws.send(Buffer.alloc(100_000), { binary: true }, (err) => {
        results.push(err);
        resolve();
      });
    }),
    WAIT,
    'the send callbacks',
  );
  assert.deepEqual(
    results.map((e) => e ?? null),
    [null, null],
  );
});

test('send after close: the callback gets an error and nothing throws', async (t) => {
  const h = harness(t);
  const { url } = await h.server();
  const ws = await h.open(url);
  ws.close(1000);
  assert.equal(ws.readyState, WebSocket.CLOSING);
  const err1 = await within(new Promise<Error | null | undefined>((resolve) => ws.send('late', resolve)), WAIT, 'callback (CLOSING)');
  assert.ok(err1 instanceof Error);
  assert.equal((err1 as Error & { code?: string }).code, 'WS_ERR_NOT_OPEN');
  await waitEvent(ws, 'close');
  assert.equal(ws.readyState, WebSocket.CLOSED);
  let returned: boolean | undefined;
  const err2 = await within(
    new Promise<Error | null | undefined>((resolve) => {
      returned = ws.send('later', resolve);
    }),
    WAIT,
    'callback (CLOSED)',
  );
  assert.equal(returned, false);
  assert.ok(err2 instanceof Error);
  assert.doesNotThrow(() => ws.send('no callback'));
  assert.doesNotThrow(() => ws.ping());
});

test('send while CONNECTING throws an InvalidStateError', async (t) => {
  const h = harness(t);
  const { url } = await h.server();
  const ws = h.client(url);
  assert.equal(ws.readyState, WebSocket.CONNECTING);
  assert.throws(() => ws.send('too early'), { code: 'WS_ERR_NOT_OPEN' });
  await waitEvent(ws, 'open');
});

test('WHATWG handlers: onopen, onmessage, onclose with a CloseEvent', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      ws.send(data, { binary: isBinary });
      if (String(data) === 'bye') ws.close(4001, 'server done');
    });
  });
  const ws = h.client(url);
  const events: unknown[] = [];
  const closed = new Promise<{ code: number; reason: string; wasClean: boolean; type: string }>((resolve) => {
    ws.onopen = (ev: { type: string; target: unknown }) => {
      events.push(['open', ev.type, ev.target === ws]);
      ws.send('hi');
      ws.send(Buffer.from([1, 2]));
      ws.send('bye');
    };
    ws.onmessage = (ev: { data: unknown; type: string }) => events.push(['message', ev.type, ev.data]);
    ws.onclose = (ev: { code: number; reason: string; wasClean: boolean; type: string }) => resolve(ev);
  });
  assert.equal(typeof ws.onopen, 'function');
  const ev = await within(closed, WAIT, 'onclose');
  assert.deepEqual(events, [
    ['open', 'open', true],
    ['message', 'message', 'hi'],
    ['message', 'message', Buffer.from([1, 2])],
    ['message', 'message', 'bye'],
  ]);
  assert.equal(ev.type, 'close');
  assert.equal(ev.code, 4001);
  assert.equal(ev.reason, 'server done');
  assert.equal(ev.wasClean, true);
});

test('onclose reports wasClean false for an abnormal closure', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  wss.on('connection', (ws) => ws.terminate());
  const ws = h.client(url);
  const ev = await within(
    new Promise<{ code: number; wasClean: boolean }>((resolve) => {
      ws.onclose = resolve;
    }),
    WAIT,
    'onclose',
  );
  assert.equal(ev.code, 1006);
  assert.equal(ev.wasClean, false);
});

test('setting an on-handler replaces the previous one; null removes it', async (t) => {
  const ws = await echoClient(t);
  const calls: string[] = [];
  const first = (): void => {
    calls.push('first');
  };
  ws.onmessage = first;
  ws.onmessage = () => calls.push('second');
  assert.notEqual(ws.onmessage, first);
  let got = collectMessages(ws, 1);
  ws.send('x');
  await got;
  ws.onmessage = null;
  assert.equal(ws.onmessage, null);
  got = collectMessages(ws, 1);
  ws.send('y');
  await got;
  assert.deepEqual(calls, ['second']);
});

test('addEventListener: once, handleEvent objects, duplicates and removeEventListener', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  echo(wss);
  const ws = h.client(url);
  const calls: string[] = [];
  const opened = new Promise<void>((resolve) => ws.addEventListener('open', () => resolve()));
  await within(opened, WAIT, 'open via addEventListener');

  const listener = (ev: { data: unknown }): void => {
    calls.push(`plain:${String(ev.data)}`);
  };
  ws.addEventListener('message', listener);
  ws.addEventListener('message', listener); // a duplicate is ignored
  ws.addEventListener('message', (ev: { data: unknown }) => calls.push(`once:${String(ev.data)}`), { once: true });
  const obj = { handleEvent: (ev: { data: unknown }) => calls.push(`obj:${String(ev.data)}`) };
  ws.addEventListener('message', obj);

  let got = collectMessages(ws, 1);
  ws.send('1');
  await got;
  ws.removeEventListener('message', obj);
  got = collectMessages(ws, 1);
  ws.send('2');
  await got;
  ws.removeEventListener('message', listener);
  got = collectMessages(ws, 1);
  ws.send('3');
  await got;
  assert.deepEqual(calls, ['plain:1', 'once:1', 'obj:1', 'plain:2']);

  const closeEvent = new Promise<{ code: number; reason: string; wasClean: boolean }>((resolve) =>
    ws.addEventListener('close', resolve, { once: true }),
  );
  ws.close(1000, 'done');
  const ev = await within(closeEvent, WAIT, 'close via addEventListener');
  // The CloseEvent carries the server's echo: the code (our core echoes the code only, §5.5.1).
  assert.deepEqual([ev.code, ev.wasClean], [1000, true]);
});

test('ws.protocol is the subprotocol chosen on both sides', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const serverWs = waitEvent<[WebSocket]>(wss, 'connection');
  const ws = await h.open(url, ['chat.v2', 'chat.v1']);
  assert.equal(ws.protocol, 'chat.v2');
  const [sws] = await serverWs;
  assert.equal(sws.protocol, 'chat.v2');
  const plain = await h.open(url);
  assert.equal(plain.protocol, '');
});

test('ws.extensions is empty without permessage-deflate and names it when negotiated', async (t) => {
  const h = harness(t);
  const off = await h.server();
  const a = await h.open(off.url);
  assert.equal(a.extensions, '', 'the server has deflate off by default');

  const on = await h.server({ perMessageDeflate: true });
  const serverWs = waitEvent<[WebSocket]>(on.wss, 'connection');
  const b = await h.open(on.url);
  assert.match(b.extensions, /^permessage-deflate/);
  const [sws] = await serverWs;
  assert.match(sws.extensions, /^permessage-deflate/);
  const c = await h.open(on.url, { perMessageDeflate: false });
  assert.equal(c.extensions, '');
});

test('readyState goes CONNECTING → OPEN → CLOSING → CLOSED on both sides', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const serverStates: number[] = [];
  const serverClosed = new Promise<void>((resolve) => {
    wss.on('connection', (sws) => {
      serverStates.push(sws.readyState);
      sws.on('close', () => {
        serverStates.push(sws.readyState);
        resolve();
      });
    });
  });
  const ws = h.client(url);
  const states = [ws.readyState];
  await waitEvent(ws, 'open');
  states.push(ws.readyState);
  const closed = waitEvent(ws, 'close');
  ws.close();
  states.push(ws.readyState);
  await closed;
  states.push(ws.readyState);
  await within(serverClosed, WAIT, 'server close');
  assert.deepEqual(states, [WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED]);
  assert.deepEqual(serverStates, [WebSocket.OPEN, WebSocket.CLOSED]);
  assert.deepEqual([WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED], [0, 1, 2, 3]);
  assert.deepEqual([ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED], [0, 1, 2, 3]);
});

test('url is the address given, path and query reach the server', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const conn = waitEvent<[WebSocket, import('node:http').IncomingMessage]>(wss, 'connection');
  const address = `${url}/room/1?token=abc`;
  const ws = await h.open(address);
  assert.equal(ws.url, address);
  const [sws, req] = await conn;
  assert.equal(req.url, '/room/1?token=abc');
  assert.equal(sws.url, '');
  const viaUrl = await h.open(new URL(`${url}/x`));
  assert.equal(viaUrl.url, `${url}/x`);
});

test('ping and pong carry their payload and are answered automatically', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const serverPong = new Promise<Buffer>((resolve) => {
    wss.on('connection', (sws) => {
      sws.on('pong', resolve);
      sws.ping('from-server');
    });
  });
  const ws = h.client(url);
  const clientPing = waitEvent<[Buffer]>(ws, 'ping');
  await waitEvent(ws, 'open');
  assert.equal(String((await clientPing)[0]), 'from-server');
  assert.equal(String(await within(serverPong, WAIT, 'pong on the server')), 'from-server');
  const pong = waitEvent<[Buffer]>(ws, 'pong');
  ws.ping(Buffer.from('from-client'));
  assert.equal(String((await pong)[0]), 'from-client');
  assert.throws(() => ws.ping(Buffer.alloc(126)), RangeError);
  ws.close();
  await closeOf(ws);
});
