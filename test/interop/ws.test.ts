/**
 * Interop with the `ws` package on loopback: Switchboard's server with a `ws`
 * client, and Switchboard's client with a `ws` server, with and without
 * permessage-deflate and its parameters offered from either side.
 *
 * Every connection goes through a sniffing proxy, so besides what each end
 * reports (`extensions`, `protocol`, events) the tests check what was on the
 * wire: the negotiated Sec-WebSocket-Extensions response, RSV1 on compressed
 * messages (and only on their first frame), fragmentation, masking and close
 * frame payloads.
 *
 * Compression parameters are checked by the receiving peer itself: both
 * implementations inflate with the negotiated window and reset their inflate
 * context when `*_no_context_takeover` was agreed, so a sender that ignores
 * either fails on the "window probe" message (repeats 3 KiB apart, beyond a
 * 2^10 window) or on the second, identical "context probe" message.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { describe, test, type TestContext } from 'node:test';
import { WebSocket as WsWebSocket, WebSocketServer as WsServer } from 'ws';
import { WebSocket as SbWebSocket, WebSocketServer as SbServer, type PerMessageDeflateOptions } from '../../src/index.js';
import {
  type Endpoint,
  headerIn,
  opened,
  parseExtensions,
  Recorder,
  type Received,
  SniffProxy,
  type SniffedConnection,
  WAIT,
  type WireFrame,
  within,
} from './helpers.js';

type Impl = 'switchboard' | 'ws';
type Deflate = boolean | PerMessageDeflateOptions;

interface Direction {
  server: Impl;
  client: Impl;
}

const DIRECTIONS: Direction[] = [
  { server: 'switchboard', client: 'ws' },
  { server: 'ws', client: 'switchboard' },
];

/** Default permessage-deflate threshold of both implementations, in bytes. */
const DEFAULT_THRESHOLD = 1024;

// ---------------------------------------------------------------------------
// Setup

interface PairOptions extends Direction {
  serverDeflate?: Deflate;
  clientDeflate?: Deflate;
  protocols?: string[];
  handleProtocols?: (protocols: Set<string>, req: IncomingMessage) => string | false;
  /** Server echoes every message back (default true). */
  echo?: boolean;
}

interface Pair {
  server: Recorder;
  client: Recorder;
  wire: SniffedConnection;
}

/**
 * A server of one implementation, a proxy in front of it, and a connected
 * client of the other; everything is torn down after the test.
 */
async function pair(t: TestContext, o: PairOptions): Promise<Pair> {
  const connections: Recorder[] = [];
  const serverOptions = {
    port: 0,
    host: '127.0.0.1',
    perMessageDeflate: o.serverDeflate ?? false,
    ...(o.handleProtocols ? { handleProtocols: o.handleProtocols } : {}),
  };
  const wss = o.server === 'switchboard' ? new SbServer(serverOptions) : new WsServer(serverOptions as ConstructorParameters<typeof WsServer>[0]);
  const wssEmitter = wss as unknown as import('node:events').EventEmitter;
  wssEmitter.on('connection', (ws: Endpoint) => {
    const rec = new Recorder(ws);
    connections.push(rec);
    if (o.echo ?? true) ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
  });
  let proxy: SniffProxy | null = null;
  let client: Endpoint | null = null;
  t.after(async () => {
    client?.terminate();
    for (const rec of connections) rec.ws.terminate();
    await within(new Promise<void>((resolve) => wss.close(() => resolve())), WAIT, 'the server to close').catch(() => {});
    await proxy?.close();
  });
  await within(new Promise<void>((resolve) => wssEmitter.once('listening', resolve)), WAIT, "the server's 'listening'");
  const port = (wss.address() as import('node:net').AddressInfo).port;
  proxy = await SniffProxy.start(port);

  const clientOptions = { perMessageDeflate: o.clientDeflate ?? false };
  client = (
    o.client === 'switchboard'
      ? new SbWebSocket(proxy.url, o.protocols ?? [], clientOptions)
      : new WsWebSocket(proxy.url, o.protocols ?? [], clientOptions as ConstructorParameters<typeof WsWebSocket>[2])
  ) as unknown as Endpoint;
  const clientRec = new Recorder(client);
  await opened(client);
  await clientRec.until(() => connections.length === 1, 'the server-side connection');
  // Let the proxy see the 101 response (the client has it, so the proxy has forwarded it).
  const wire = proxy.only;
  assert.ok(wire.up.head !== null && wire.down.head !== null, 'the proxy saw both HTTP heads');
  return { server: connections[0]!, client: clientRec, wire };
}

// ---------------------------------------------------------------------------
// Messages

interface Msg {
  label: string;
  binary: boolean;
  /** One part: a plain message; several: sent with `fin: false` on all but the last. */
  parts: Buffer[];
}

const whole = (m: Msg): Buffer => Buffer.concat(m.parts);
const text = (label: string, ...parts: string[]): Msg => ({ label, binary: false, parts: parts.map((p) => Buffer.from(p)) });
const binary = (label: string, ...parts: Buffer[]): Msg => ({ label, binary: true, parts });

const RANDOM_1MIB = randomBytes(1 << 20);
const COMPRESSIBLE = Buffer.from('Switchboard talks to ws over loopback. '.repeat(1700)); // ~65 KiB
const BLOCK = randomBytes(3072);
/** Repeats 3 KiB apart: a sender using a larger window than agreed (≤ 2^10) makes the receiver fail. */
const WINDOW_PROBE = Buffer.concat([BLOCK, BLOCK, BLOCK, BLOCK, BLOCK, BLOCK]);
/** Sent twice: the second copy references the first unless the sender resets its context. */
const CONTEXT_PROBE = randomBytes(1536).toString('base64'); // 2048 characters
const CHECK = Buffer.from('✓'); // 3 bytes: split across fragments below
const fill = (byte: number, n: number): Buffer => Buffer.from(`${String.fromCharCode(byte).repeat(64)}|`.repeat(Math.ceil(n / 65))).subarray(0, n);

/** What the client sends (the server echoes each one back whole). */
const CLIENT_MESSAGES: Msg[] = [
  text('short text', 'hello, interop'),
  text('unicode text', 'héllo wörld ✓ 🚀 — ünïcödé'),
  binary('short binary', Buffer.from([0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff])),
  text('empty text', ''),
  binary('empty binary', Buffer.alloc(0)),
  binary('1 MiB of random bytes', RANDOM_1MIB),
  text('65 KiB of compressible text', COMPRESSIBLE.toString()),
  binary('window probe', WINDOW_PROBE),
  text('context probe, first copy', CONTEXT_PROBE),
  text('context probe, second copy', CONTEXT_PROBE),
  text('fragmented text', 'frag-1 ', 'frag-2 ', 'frag-3'),
  { label: 'fragmented text, a character split across fragments', binary: false, parts: [Buffer.from('split: '), CHECK.subarray(0, 1), CHECK.subarray(1)] },
  binary('fragmented binary, 3 x 4 KiB', fill(0x41, 4096), fill(0x42, 4096), fill(0x43, 4096)),
  text('fragmented text, an empty middle fragment', 'before-', '', '-after'),
  binary('fragmented binary, an empty last fragment', fill(0x44, 2000), Buffer.alloc(0)),
];

/** What the server sends on its own, after the echoes. */
const SERVER_MESSAGES: Msg[] = [
  text('server: fragmented text', 'srv-1 ', 'srv-2 ✓ ', 'srv-3'),
  binary('server: fragmented binary, 3 x 4 KiB', fill(0x61, 4096), fill(0x62, 4096), fill(0x63, 4096)),
  text('server: empty text', ''),
];

function send(ws: Endpoint, m: Msg): void {
  m.parts.forEach((part, i) => ws.send(part, { binary: m.binary, fin: i === m.parts.length - 1 }));
}

function assertSame(got: Received, m: Msg): void {
  const expected = whole(m);
  assert.equal(got.isBinary, m.binary, `${m.label}: isBinary`);
  if (expected.length <= 256) {
    assert.deepEqual([...got.data], [...expected], `${m.label}: content`);
  } else {
    assert.equal(got.data.length, expected.length, `${m.label}: length`);
    assert.ok(got.data.equals(expected), `${m.label}: content differs`);
  }
}

/**
 * Check the data frames a peer sent for `msgs`, in order: opcodes, FIN,
 * masking, and RSV1 (set on the first frame of a compressed message only).
 * Switchboard compresses exactly the messages whose first fragment reaches
 * the threshold; `ws` compresses those at least (and smaller ones too unless
 * its no_context_takeover applies), so only the lower bound is checked.
 */
function checkFrames(frames: WireFrame[], msgs: Msg[], o: { sender: Impl; deflate: boolean; threshold: number; masked: boolean }): void {
  const expected = msgs.reduce((n, m) => n + m.parts.length, 0);
  assert.equal(frames.length, expected, `${o.sender} sent ${frames.length} data frames, expected ${expected}`);
  let k = 0;
  for (const m of msgs) {
    m.parts.forEach((part, i) => {
      const f = frames[k++]!;
      const what = `${m.label}, frame ${i + 1}/${m.parts.length} from ${o.sender}`;
      assert.equal(f.opcode, i > 0 ? 0 : m.binary ? 2 : 1, `${what}: opcode`);
      assert.equal(f.fin, i === m.parts.length - 1, `${what}: FIN`);
      assert.equal(f.masked, o.masked, `${what}: MASK`);
      if (!o.deflate || i > 0) {
        assert.equal(f.rsv1, false, `${what}: RSV1 must be clear`);
        return;
      }
      const first = m.parts[0]!;
      if (o.sender === 'switchboard') {
        assert.equal(f.rsv1, first.length >= o.threshold, `${what}: RSV1 (first fragment ${first.length} bytes, threshold ${o.threshold})`);
      } else if (first.length >= o.threshold) {
        assert.equal(f.rsv1, true, `${what}: RSV1`);
      }
      if (f.rsv1 && m.label.includes('compressible')) {
        assert.ok(f.length < first.length / 10, `${what}: ${first.length} bytes compressed to only ${f.length}`);
      }
      if (!f.rsv1 && m.parts.length === 1) assert.equal(f.length, first.length, `${what}: payload length`);
    });
  }
}

// ---------------------------------------------------------------------------
// The exchange

interface Variant {
  name: string;
  client: Deflate;
  server: Deflate;
  /** Parameters of the accepted permessage-deflate; null: not negotiated. */
  expect: Record<string, string | true> | null;
  threshold?: number;
}

const VARIANTS: Variant[] = [
  { name: 'without permessage-deflate', client: false, server: false, expect: null },
  { name: 'permessage-deflate offered, server has it off', client: true, server: false, expect: null },
  { name: 'server has permessage-deflate on, client offers none', client: false, server: true, expect: null },
  { name: 'permessage-deflate, default options', client: true, server: true, expect: {} },
  { name: 'permessage-deflate, threshold 0 (every message compressed)', client: { threshold: 0 }, server: { threshold: 0 }, expect: {}, threshold: 0 },
  { name: 'serverNoContextTakeover offered by the client', client: { serverNoContextTakeover: true }, server: true, expect: { server_no_context_takeover: true } },
  { name: 'serverNoContextTakeover set on the server', client: true, server: { serverNoContextTakeover: true }, expect: { server_no_context_takeover: true } },
  { name: 'clientNoContextTakeover offered by the client', client: { clientNoContextTakeover: true }, server: true, expect: { client_no_context_takeover: true } },
  { name: 'clientNoContextTakeover set on the server', client: true, server: { clientNoContextTakeover: true }, expect: { client_no_context_takeover: true } },
  { name: 'serverMaxWindowBits 10 offered by the client', client: { serverMaxWindowBits: 10 }, server: true, expect: { server_max_window_bits: '10' } },
  { name: 'serverMaxWindowBits 10 set on the server', client: true, server: { serverMaxWindowBits: 10 }, expect: { server_max_window_bits: '10' } },
  { name: 'clientMaxWindowBits 9 offered by the client', client: { clientMaxWindowBits: 9 }, server: true, expect: { client_max_window_bits: '9' } },
  { name: 'clientMaxWindowBits 9 set on the server', client: true, server: { clientMaxWindowBits: 9 }, expect: { client_max_window_bits: '9' } },
  // 8 bits: zlib cannot deflate with a 256-byte window and uses 9, which a 2^8 inflater still reads (see permessage-deflate.ts).
  { name: 'serverMaxWindowBits 8 and clientMaxWindowBits 8 offered by the client', client: { serverMaxWindowBits: 8, clientMaxWindowBits: 8 }, server: true, expect: { server_max_window_bits: '8', client_max_window_bits: '8' } },
  { name: 'serverMaxWindowBits 8 and clientMaxWindowBits 8 set on the server', client: true, server: { serverMaxWindowBits: 8, clientMaxWindowBits: 8 }, expect: { server_max_window_bits: '8', client_max_window_bits: '8' } },
];

async function exchange(t: TestContext, dir: Direction, v: Variant): Promise<void> {
  const { server, client, wire } = await pair(t, { ...dir, serverDeflate: v.server, clientDeflate: v.client });
  const deflate = v.expect !== null;
  const threshold = v.threshold ?? DEFAULT_THRESHOLD;

  // -- negotiation: on the wire and as each end reports it
  const answer = parseExtensions(headerIn(wire.down.head!, 'sec-websocket-extensions'));
  if (!deflate) {
    assert.deepEqual(answer, [], 'no Sec-WebSocket-Extensions in the response');
    assert.equal(client.ws.extensions, '', `${dir.client} client: extensions`);
    assert.equal(server.ws.extensions, '', `${dir.server} server: extensions`);
  } else {
    assert.deepEqual(answer, [{ name: 'permessage-deflate', params: v.expect }], 'the Sec-WebSocket-Extensions response');
    for (const [side, impl] of [[client, dir.client], [server, dir.server]] as const) {
      // `ws` reports extension names only; Switchboard the whole negotiated value.
      const reported = parseExtensions(side.ws.extensions);
      if (impl === 'ws') assert.deepEqual(reported.map((e) => e.name), ['permessage-deflate'], `${impl}: extensions`);
      else assert.deepEqual(reported, [{ name: 'permessage-deflate', params: v.expect }], `${impl}: extensions`);
    }
  }

  // -- client -> server, echoed back
  for (const m of CLIENT_MESSAGES) send(client.ws, m);
  const atServer = await server.waitMessages(CLIENT_MESSAGES.length);
  CLIENT_MESSAGES.forEach((m, i) => assertSame(atServer[i]!, m));
  const echoed = await client.waitMessages(CLIENT_MESSAGES.length);
  CLIENT_MESSAGES.forEach((m, i) => assertSame(echoed[i]!, m));

  // -- server -> client, fragmented and whole
  for (const m of SERVER_MESSAGES) send(server.ws, m);
  const fromServer = (await client.waitMessages(CLIENT_MESSAGES.length + SERVER_MESSAGES.length)).slice(CLIENT_MESSAGES.length);
  SERVER_MESSAGES.forEach((m, i) => assertSame(fromServer[i]!, m));

  // -- pings and pongs with payloads, both ways, and a ping between two fragments
  client.ws.ping('client ping ✓');
  client.ws.ping();
  await server.until(() => server.pings.length === 2, 'the client pings');
  await client.until(() => client.pongs.length === 2, 'the pongs to the client');
  assert.deepEqual(server.pings.map(String), ['client ping ✓', '']);
  assert.deepEqual(client.pongs.map(String), ['client ping ✓', '']);
  const big = 'p'.repeat(125);
  server.ws.ping(big);
  await client.until(() => client.pings.length === 1, 'the server ping');
  await server.until(() => server.pongs.length === 1, 'the pong to the server');
  assert.equal(String(client.pings[0]), big);
  assert.equal(String(server.pongs[0]), big);
  const interleaved = binary('fragmented binary with a ping in between', fill(0x45, 3000), fill(0x46, 3000));
  client.ws.send(interleaved.parts[0], { binary: true, fin: false });
  client.ws.ping('mid-message');
  client.ws.send(interleaved.parts[1], { binary: true, fin: true });
  const n = CLIENT_MESSAGES.length + 1;
  assertSame((await server.waitMessages(n))[n - 1]!, interleaved);
  assertSame((await client.waitMessages(n + SERVER_MESSAGES.length))[n + SERVER_MESSAGES.length - 1]!, interleaved);
  assert.equal(String(server.pings[2]), 'mid-message');

  // -- close, initiated by the client with a code and a reason
  client.ws.close(4001, 'client bye ✓');
  assert.deepEqual(await server.waitClose(), { code: 4001, reason: 'client bye ✓' });
  assert.equal((await client.waitClose()).code, 4001);

  // -- what was on the wire
  await client.until(() => wire.down.closeFrames.length === 1 && wire.up.closeFrames.length === 1, 'both close frames through the proxy');
  assert.deepEqual(wire.up.closeFrames, [{ code: 4001, reason: 'client bye ✓' }]);
  assert.equal(wire.down.closeFrames[0]!.code, 4001);
  checkFrames(wire.up.dataFrames, [...CLIENT_MESSAGES, interleaved], { sender: dir.client, deflate, threshold, masked: true });
  checkFrames(
    wire.down.dataFrames,
    [...CLIENT_MESSAGES.map((m) => ({ ...m, parts: [whole(m)] })), ...SERVER_MESSAGES, { ...interleaved, parts: [whole(interleaved)] }],
    { sender: dir.server, deflate, threshold, masked: false },
  );
  assert.deepEqual(server.errors, [], 'errors on the server side');
  assert.deepEqual(client.errors, [], 'errors on the client side');
}

for (const dir of DIRECTIONS) {
  describe(`${dir.server} server, ${dir.client} client`, () => {
    describe('messages, pings and close over each permessage-deflate configuration', () => {
      for (const v of VARIANTS) test(v.name, (t) => exchange(t, dir, v));
    });

    describe('subprotocols', () => {
      test('the server picks one of the offered subprotocols with handleProtocols', async (t) => {
        const offered: string[][] = [];
        const { server, client, wire } = await pair(t, {
          ...dir,
          protocols: ['v2.interop', 'v1.interop'],
          handleProtocols: (protocols) => {
            offered.push([...protocols]);
            return protocols.has('v1.interop') ? 'v1.interop' : false;
          },
        });
        assert.deepEqual(offered, [['v2.interop', 'v1.interop']]);
        const requested = headerIn(wire.up.head!, 'sec-websocket-protocol')?.split(',').map((p) => p.trim());
        assert.deepEqual(requested, ['v2.interop', 'v1.interop']);
        assert.equal(headerIn(wire.down.head!, 'sec-websocket-protocol'), 'v1.interop');
        assert.equal(client.ws.protocol, 'v1.interop');
        assert.equal(server.ws.protocol, 'v1.interop');
        client.ws.send('on v1', { binary: false });
        assert.equal(String((await client.waitMessages(1))[0]!.data), 'on v1');
      });

      test('without handleProtocols the server picks the first offered', async (t) => {
        const { server, client } = await pair(t, { ...dir, protocols: ['first.interop', 'second.interop'] });
        assert.equal(client.ws.protocol, 'first.interop');
        assert.equal(server.ws.protocol, 'first.interop');
      });

      test('no subprotocol offered: none selected', async (t) => {
        const { server, client, wire } = await pair(t, { ...dir });
        assert.equal(headerIn(wire.down.head!, 'sec-websocket-protocol'), undefined);
        assert.equal(client.ws.protocol, '');
        assert.equal(server.ws.protocol, '');
      });
    });

    describe('close codes and reasons', () => {
      const cases: Array<{ by: 'client' | 'server'; code?: number; reason?: string }> = [
        { by: 'client', code: 1000, reason: 'normal' },
        { by: 'client', code: 4001, reason: 'client bye ✓' },
        { by: 'client', code: 3000, reason: 'r'.repeat(123) },
        { by: 'client' },
        { by: 'server', code: 1000, reason: '' },
        { by: 'server', code: 1001, reason: 'going away' },
        { by: 'server', code: 4002, reason: 'server bye ✓' },
        { by: 'server', code: 1011, reason: 'internal error' },
        { by: 'server' },
      ];
      for (const c of cases) {
        const label = c.code === undefined ? 'no status code' : `${c.code} ${JSON.stringify(c.reason!.length > 20 ? `${c.reason!.slice(0, 10)}… (${c.reason!.length} bytes)` : c.reason)}`;
        test(`${c.by}-initiated close, ${label}`, async (t) => {
          const { server, client, wire } = await pair(t, { ...dir, serverDeflate: true, clientDeflate: true });
          const [initiator, responder] = c.by === 'client' ? [client, server] : [server, client];
          const [up, down] = c.by === 'client' ? [wire.up, wire.down] : [wire.down, wire.up];
          if (c.code === undefined) initiator.ws.close();
          else initiator.ws.close(c.code, c.reason);
          const code = c.code ?? 1005;
          assert.deepEqual(await responder.waitClose(), { code, reason: c.reason ?? '' }, `the ${c.by === 'client' ? 'server' : 'client'}'s close event`);
          assert.equal((await initiator.waitClose()).code, code, `the ${c.by}'s close event`);
          // The initiator's frame carries the code and reason; the answer echoes the code.
          await client.until(() => up.closeFrames.length === 1 && down.closeFrames.length === 1, 'both close frames through the proxy');
          assert.deepEqual(up.closeFrames, [{ code, reason: c.reason ?? '' }]);
          assert.equal(down.closeFrames[0]!.code, code);
          if (c.code === undefined) {
            assert.equal(up.frames.at(-1)!.length, 0, 'a close frame without a status code has an empty payload');
          }
          assert.equal(client.ws.readyState, 3);
          assert.equal(server.ws.readyState, 3);
          assert.deepEqual(server.errors, []);
          assert.deepEqual(client.errors, []);
        });
      }
    });

    for (const by of ['client', 'server'] as const) {
      test(`${by}-initiated close right after large compressed messages: they arrive first`, async (t) => {
        const { server, client } = await pair(t, { ...dir, serverDeflate: true, clientDeflate: true, echo: false });
        const [initiator, responder] = by === 'client' ? [client, server] : [server, client];
        const msgs = [binary('1 MiB of random bytes', RANDOM_1MIB), text('compressible text', COMPRESSIBLE.toString())];
        for (const m of msgs) send(initiator.ws, m);
        initiator.ws.close(4003, 'after the data');
        const got = await responder.waitMessages(2);
        msgs.forEach((m, i) => assertSame(got[i]!, m));
        assert.deepEqual(await responder.waitClose(), { code: 4003, reason: 'after the data' });
        assert.equal((await initiator.waitClose()).code, 4003);
        assert.equal(responder.messages.length, 2);
        assert.deepEqual(server.errors, []);
        assert.deepEqual(client.errors, []);
      });
    }

    test(`200 messages sent back to back by the ${dir.client} client, compression on`, async (t) => {
      const { server, client, wire } = await pair(t, { ...dir, serverDeflate: true, clientDeflate: true });
      assert.equal(parseExtensions(headerIn(wire.down.head!, 'sec-websocket-extensions'))[0]?.name, 'permessage-deflate');
      const msgs: Msg[] = [];
      for (let i = 0; i < 200; i++) {
        if (i % 3 === 0) msgs.push(binary(`#${i}`, Buffer.concat([Buffer.from(`#${i} `), fill(0x30 + (i % 10), 4096)])));
        else if (i % 3 === 1) msgs.push(text(`#${i}`, `message #${i}`));
        else msgs.push(text(`#${i}`, `#${i} ${randomBytes(900).toString('base64')}`));
      }
      for (const m of msgs) send(client.ws, m);
      const atServer = await server.waitMessages(200);
      msgs.forEach((m, i) => assertSame(atServer[i]!, m));
      const echoed = await client.waitMessages(200);
      msgs.forEach((m, i) => assertSame(echoed[i]!, m));
      assert.ok(wire.up.dataFrames.filter((f) => f.rsv1).length >= 133, 'the messages of 1 KiB or more went compressed');
      assert.deepEqual(server.errors, []);
      assert.deepEqual(client.errors, []);
    });
  });
}
