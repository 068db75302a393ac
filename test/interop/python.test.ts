/**
 * Interop with Python's `websockets` (Debian's python3-websockets, 10.4) on
 * loopback: Switchboard's server with a Python client, and Switchboard's
 * client with a Python echo server, with and without permessage-deflate.
 *
 * The Python side runs as a child process (test/interop/py/): the client
 * script runs a scripted exchange and prints a JSON report; the server prints
 * its port, then one JSON line per closed connection. Each child is killed by
 * PID after its test, and exits by itself if the test process goes away.
 * Connections go through the sniffing proxy, to check the frames on the wire.
 *
 * Without Python's websockets these tests fail (they never skip): CI
 * installs python3-websockets (.ci/run).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { WebSocket, WebSocketServer } from '../../src/index.js';
import {
  type Endpoint,
  headerIn,
  opened,
  parseExtensions,
  PYTHON,
  PythonProcess,
  Recorder,
  requirePythonWebsockets,
  sha256,
  SniffProxy,
  WAIT,
  within,
  type WireFrame,
} from './helpers.js';

type Compression = 'none' | 'deflate';
const COMPRESSIONS: Compression[] = ['none', 'deflate'];

/** Python's websockets as the `describe()` of py/common.py summarizes a message. */
interface Summary {
  type: 'text' | 'binary';
  length: number;
  sha256: string;
  text?: string;
  hex?: string;
}

function summary(data: Buffer, isBinary: boolean): Summary {
  const s: Summary = { type: isBinary ? 'binary' : 'text', length: data.length, sha256: sha256(data) };
  if (data.length <= 64) {
    if (isBinary) s.hex = data.toString('hex');
    else s.text = data.toString();
  }
  return s;
}

/** Bound on a whole Python script run (start-up included). */
const PY_RUN = 15_000;

// ---------------------------------------------------------------------------
// Setup

/**
 * Switchboard's server (behind a sniffing proxy) for the Python client. It
 * echoes, except for the commands of py/client.py: "cmd:fragments" gets a
 * message in three fragments, "cmd:ping" a ping then "pong-received:<payload>".
 */
async function ourServer(t: TestContext, options: ConstructorParameters<typeof WebSocketServer>[0]) {
  const wss = new WebSocketServer({ ...options, port: 0, host: '127.0.0.1' });
  const connections: Recorder[] = [];
  let proxy: SniffProxy | null = null;
  t.after(async () => {
    for (const rec of connections) rec.ws.terminate();
    await within(new Promise<void>((resolve) => wss.close(() => resolve())), WAIT, 'the server to close').catch(() => {});
    await proxy?.close();
  });
  wss.on('connection', (ws) => {
    connections.push(new Recorder(ws as unknown as Endpoint));
    ws.on('message', (data, isBinary) => {
      const command = isBinary ? null : String(data);
      if (command === 'cmd:fragments') {
        ws.send('srv-frag-1 ', { fin: false });
        ws.send('srv-frag-2 ✓ ', { fin: false });
        ws.send('srv-frag-3', { fin: true });
      } else if (command === 'cmd:ping') {
        ws.once('pong', (payload: Buffer) => ws.send(`pong-received:${payload}`));
        ws.ping('srv-ping');
      } else {
        ws.send(data as Buffer, { binary: isBinary });
      }
    });
  });
  await within(new Promise<void>((resolve) => wss.once('listening', resolve)), WAIT, "the server's 'listening'");
  proxy = await SniffProxy.start((wss.address() as AddressInfo).port);
  return { wss, proxy, connections };
}

/** A Python echo server (py/echo_server.py) behind a sniffing proxy; killed after the test. */
async function pythonServer(t: TestContext, args: string[]) {
  const py = new PythonProcess('echo_server.py', args);
  let proxy: SniffProxy | null = null;
  t.after(async () => {
    await py.stop();
    await proxy?.close();
  });
  const first = await py.line(0, PY_RUN);
  const port = Number(first);
  assert.ok(Number.isInteger(port) && port > 0, `the Python server's first line is its port, got ${JSON.stringify(first)}`);
  proxy = await SniffProxy.start(port);
  return { py, proxy };
}

async function ourClient(t: TestContext, url: string, protocols: string[], perMessageDeflate: boolean): Promise<Recorder> {
  const ws = new WebSocket(url, protocols, { perMessageDeflate });
  t.after(() => ws.terminate());
  const rec = new Recorder(ws as unknown as Endpoint);
  await opened(ws as unknown as Endpoint);
  return rec;
}

/** RSV1 on the first frame of every message of at least 1 KiB when compressing, never otherwise, never on continuations. */
function checkRsv1(frames: WireFrame[], deflate: boolean, sender: string): void {
  let first = true;
  for (const f of frames) {
    if (!deflate || !first) assert.equal(f.rsv1, false, `${sender}: RSV1 on ${first ? 'a frame' : 'a continuation frame'}`);
    else if (f.length >= 1024) assert.equal(f.rsv1, true, `${sender}: a ${f.length}-byte message went uncompressed`);
    first = f.fin;
  }
}

// ---------------------------------------------------------------------------

describe('Python websockets peer', () => {
  test(`${PYTHON} can import websockets (the Python interop tests need it)`, () => {
    const version = requirePythonWebsockets();
    assert.match(version, /^\d+\.\d+/);
  });

  describe('Switchboard server, Python client', () => {
    for (const compression of COMPRESSIONS) {
      test(`scripted exchange, compression=${compression}`, async (t) => {
        requirePythonWebsockets();
        const deflate = compression === 'deflate';
        const { proxy, connections } = await ourServer(t, { perMessageDeflate: deflate });
        const py = new PythonProcess('client.py', [proxy.url, '--compression', compression]);
        t.after(() => py.stop());
        await py.expectSuccess(PY_RUN);
        const report = await py.json(0);

        // Negotiation, as Python saw it and as we did.
        assert.equal(report.subprotocol, null);
        const server = connections[0]!;
        assert.equal(connections.length, 1);
        if (deflate) {
          assert.deepEqual(report.extensions, ['PerMessageDeflate']);
          assert.deepEqual(parseExtensions(report.response_extensions), [{ name: 'permessage-deflate', params: {} }]);
          assert.deepEqual(parseExtensions(server.ws.extensions).map((e) => e.name), ['permessage-deflate']);
        } else {
          assert.deepEqual(report.extensions, []);
          assert.equal(report.response_extensions, null);
          assert.equal(server.ws.extensions, '');
        }

        // Every round trip came back identical.
        const labels = [
          'text',
          'binary',
          'empty text',
          'empty binary',
          '1 MiB of random bytes',
          '64 KiB of compressible text',
          'fragmented text',
          'fragmented binary',
        ];
        assert.deepEqual(report.steps.map((s: { label: string }) => s.label), labels);
        for (const step of report.steps) assert.deepEqual(step.got, step.sent, `${step.label}: echo from Switchboard`);
        assert.equal(report.server_fragments, 'srv-frag-1 srv-frag-2 ✓ srv-frag-3');
        assert.equal(report.pong_received, true);
        assert.equal(report.server_ping, 'pong-received:srv-ping');
        // Switchboard echoes the close code (without the reason).
        assert.equal(report.close_code, 4001);

        // What our server received, message by message.
        const received = server.messages.map((m) => summary(m.data, m.isBinary));
        assert.deepEqual(received, [
          ...report.steps.map((s: { sent: Summary }) => s.sent),
          summary(Buffer.from('cmd:fragments'), false),
          summary(Buffer.from('cmd:ping'), false),
        ]);
        assert.deepEqual(server.pings.map(String), ['py-ping']);
        assert.deepEqual(server.pongs.map(String), ['srv-ping']);
        assert.deepEqual(await server.waitClose(), { code: 4001, reason: 'python says bye ✓' });
        assert.deepEqual(server.errors, []);

        // On the wire: Python sends an iterable as one frame per item, then an
        // empty final continuation frame; we fragmented ours as asked.
        const wire = proxy.only;
        const up = wire.up.dataFrames;
        assert.deepEqual(
          up.map((f) => [f.opcode, f.fin]),
          [
            ...[[1, true], [2, true], [1, true], [2, true], [2, true], [1, true]],
            ...[[1, false], [0, false], [0, false], [0, true]],
            ...[[2, false], [0, false], [0, false], [0, true]],
            ...[[1, true], [1, true]],
          ],
        );
        checkRsv1(up, deflate, 'Python');
        const down = wire.down.dataFrames;
        assert.deepEqual(down.slice(8, 11).map((f) => [f.opcode, f.fin]), [[1, false], [0, false], [0, true]], 'our fragmented message');
        checkRsv1(down, deflate, 'Switchboard');
        assert.deepEqual(wire.up.closeFrames, [{ code: 4001, reason: 'python says bye ✓' }]);
        assert.deepEqual(wire.down.closeFrames, [{ code: 4001, reason: '' }]);
      });
    }

    test('the Python client offers subprotocols and Switchboard picks one', async (t) => {
      requirePythonWebsockets();
      const offered: string[][] = [];
      const { proxy, connections } = await ourServer(t, {
        handleProtocols: (protocols) => {
          offered.push([...protocols]);
          return protocols.has('chat') ? 'chat' : false;
        },
      });
      const py = new PythonProcess('client.py', [proxy.url, '--compression', 'none', '--subprotocol', 'superchat', '--subprotocol', 'chat', '--script', 'handshake']);
      t.after(() => py.stop());
      await py.expectSuccess(PY_RUN);
      const report = await py.json(0);
      assert.deepEqual(offered, [['superchat', 'chat']]);
      assert.equal(report.subprotocol, 'chat');
      assert.equal(connections[0]!.ws.protocol, 'chat');
      assert.equal(headerIn(proxy.only.down.head!, 'sec-websocket-protocol'), 'chat');
      assert.deepEqual(report.steps.map((s: { ok: boolean }) => s.ok), [true]);
      assert.equal(report.close_code, 1000);
      assert.deepEqual(await connections[0]!.waitClose(), { code: 1000, reason: 'done' });
    });
  });

  describe('Switchboard client, Python echo server', () => {
    const BLOCK = randomBytes(6144);
    const MESSAGES: Array<{ label: string; parts: Buffer[]; binary: boolean }> = [
      { label: 'text', parts: [Buffer.from('hello from node ✓')], binary: false },
      { label: 'binary', parts: [Buffer.from([0, 1, 2, 0x80, 0xff])], binary: true },
      { label: 'empty text', parts: [Buffer.alloc(0)], binary: false },
      { label: 'empty binary', parts: [Buffer.alloc(0)], binary: true },
      { label: '1 MiB of random bytes', parts: [randomBytes(1 << 20)], binary: true },
      { label: '64 KiB of compressible text', parts: [Buffer.from('node talks to python. '.repeat(3000))], binary: false },
      // The same 6 KiB twice: with context takeover the second copy may refer to
      // the first, but not beyond the 2^12 window Python's server imposes on
      // clients. (A reference within one message may escape the check: zlib
      // only enforces the window against data from earlier inflate calls.)
      { label: 'window probe, first copy', parts: [BLOCK], binary: true },
      { label: 'window probe, second copy', parts: [BLOCK], binary: true },
      { label: 'fragmented text', parts: ['frag-1 ', 'frag-2 ', 'frag-3 ✓'].map((s) => Buffer.from(s)), binary: false },
      { label: 'fragmented binary', parts: [Buffer.alloc(3000, 1), Buffer.alloc(3000, 2), Buffer.alloc(3000, 3)], binary: true },
    ];

    for (const compression of COMPRESSIONS) {
      test(`scripted exchange, compression=${compression}`, async (t) => {
        requirePythonWebsockets();
        const deflate = compression === 'deflate';
        const { py, proxy } = await pythonServer(t, ['--compression', compression]);
        const client = await ourClient(t, proxy.url, [], deflate);
        const wire = proxy.connections[0]!;

        // Negotiation: Python's server limits both windows to 2^12 by default.
        const expected = deflate ? [{ name: 'permessage-deflate', params: { server_max_window_bits: '12', client_max_window_bits: '12' } }] : [];
        assert.deepEqual(parseExtensions(headerIn(wire.down.head!, 'sec-websocket-extensions')), expected);
        assert.deepEqual(parseExtensions(client.ws.extensions), expected);
        assert.equal(client.ws.protocol, '');

        // Round trips.
        for (const m of MESSAGES) m.parts.forEach((p, i) => client.ws.send(p, { binary: m.binary, fin: i === m.parts.length - 1 }));
        const echoed = await client.waitMessages(MESSAGES.length);
        MESSAGES.forEach((m, i) => {
          assert.equal(echoed[i]!.isBinary, m.binary, `${m.label}: isBinary`);
          assert.ok(echoed[i]!.data.equals(Buffer.concat(m.parts)), `${m.label}: echoed content differs`);
        });

        // Python sends a fragmented message, and pings.
        client.ws.send('cmd:fragments', { binary: false });
        client.ws.send('cmd:ping', { binary: false });
        const more = (await client.waitMessages(MESSAGES.length + 2)).slice(MESSAGES.length);
        assert.deepEqual(more.map((m) => [String(m.data), m.isBinary]), [
          ['srv-frag-1 srv-frag-2 ✓ srv-frag-3', false],
          ['pong-received:py-srv-ping', false],
        ]);
        assert.deepEqual(client.pings.map(String), ['py-srv-ping']);

        // Our ping, with a payload.
        client.ws.ping('node ping ✓');
        await client.until(() => client.pongs.length === 1, 'the pong');
        assert.equal(String(client.pongs[0]), 'node ping ✓');

        // Client-initiated close: Python echoes code and reason.
        client.ws.close(4001, 'node says bye ✓');
        assert.deepEqual(await client.waitClose(), { code: 4001, reason: 'node says bye ✓' });
        assert.deepEqual(client.errors, []);

        // Python's account of the connection.
        const record = await py.json(1, PY_RUN);
        assert.equal(record.error, undefined, `the Python server failed: ${record.error}`);
        assert.deepEqual(record.received, [
          ...MESSAGES.map((m) => summary(Buffer.concat(m.parts), m.binary)),
          summary(Buffer.from('cmd:fragments'), false),
          summary(Buffer.from('cmd:ping'), false),
        ]);
        assert.deepEqual(record.pings_sent, ['py-srv-ping']);
        assert.equal(record.close_code, 4001);
        assert.equal(record.close_reason, 'node says bye ✓');
        assert.equal(record.subprotocol, null);
        if (deflate) assert.deepEqual(parseExtensions(record.request_extensions), [{ name: 'permessage-deflate', params: { client_max_window_bits: true } }]);
        else assert.equal(record.request_extensions, null);

        // On the wire.
        await client.until(() => wire.down.closeFrames.length === 1, "Python's close frame through the proxy");
        const up = wire.up.dataFrames;
        assert.deepEqual(
          up.slice(8, 14).map((f) => [f.opcode, f.fin]),
          [[1, false], [0, false], [0, true], [2, false], [0, false], [0, true]],
          'our fragmented messages',
        );
        checkRsv1(up, deflate, 'Switchboard');
        checkRsv1(wire.down.dataFrames, deflate, 'Python');
        assert.deepEqual(
          wire.down.dataFrames.slice(MESSAGES.length, MESSAGES.length + 4).map((f) => [f.opcode, f.fin]),
          [[1, false], [0, false], [0, false], [0, true]],
          "Python's fragmented message: one frame per item, then an empty final continuation",
        );
        assert.deepEqual(wire.up.closeFrames, [{ code: 4001, reason: 'node says bye ✓' }]);
        assert.deepEqual(wire.down.closeFrames, [{ code: 4001, reason: 'node says bye ✓' }]);
      });

      test(`server-initiated close, compression=${compression}`, async (t) => {
        requirePythonWebsockets();
        const { py, proxy } = await pythonServer(t, ['--compression', compression]);
        const client = await ourClient(t, proxy.url, [], compression === 'deflate');
        client.ws.send('before close', { binary: false });
        await client.waitMessages(1);
        client.ws.send('cmd:close', { binary: false });
        assert.deepEqual(await client.waitClose(), { code: 4002, reason: 'python server bye ✓' });
        const record = await py.json(1, PY_RUN);
        // Switchboard echoes the code, without the reason.
        assert.equal(record.close_code, 4002);
        assert.equal(record.close_reason, '');
        assert.deepEqual(proxy.only.down.closeFrames, [{ code: 4002, reason: 'python server bye ✓' }]);
        assert.deepEqual(proxy.only.up.closeFrames, [{ code: 4002, reason: '' }]);
        assert.deepEqual(client.errors, []);
      });
    }

    test('Switchboard offers subprotocols and the Python server picks one', async (t) => {
      requirePythonWebsockets();
      const { py, proxy } = await pythonServer(t, ['--compression', 'none', '--subprotocol', 'chat']);
      const client = await ourClient(t, proxy.url, ['superchat', 'chat'], false);
      assert.equal(client.ws.protocol, 'chat');
      client.ws.close(1000);
      assert.equal((await client.waitClose()).code, 1000);
      const record = await py.json(1, PY_RUN);
      assert.equal(record.subprotocol, 'chat');
    });
  });
});
