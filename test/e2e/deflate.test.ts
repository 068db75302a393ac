/**
 * permessage-deflate (RFC 7692) between Chromium and us: Chromium's
 * implementation is independent of ours; it always offers
 * `permessage-deflate; client_max_window_bits` and keeps its compression
 * context between messages unless told not to.
 *
 * A counting TCP proxy (node:net) sits between the page and the server: it
 * counts the bytes of each direction and keeps them, so the test can read the
 * handshake and walk the frames (RSV1 = compressed message, payload sizes)
 * without trusting either end.
 *
 * 1. `switchboard echo --deflate` and a page that opens a plain WebSocket:
 *    large repetitive text, 50 similar JSON texts in a row (context takeover
 *    both ways), multi-byte UTF-8, incompressible and zero-filled binary,
 *    empty messages; every echo byte-identical, and the wire compressed.
 * 2. `switchboard serve` with `compression: { enabled: true }` and the chat
 *    page: a long message typed in one page arrives intact in the other, over
 *    compressed frames both ways.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import {
  WAIT_MS,
  killAll,
  launchBrowser,
  openChat,
  say,
  screenshot,
  startEcho,
  startServe,
  transport,
  waitForMessage,
  within,
  type Echo,
  type Serve,
  type TestBrowser,
} from './helpers.js';

// ---------------------------------------------------------------------------
// The counting proxy and a frame walker

/** One TCP connection through the proxy: every byte of each direction, in order. */
interface Tap {
  /** Page → server. */
  up: Buffer[];
  upBytes: number;
  /** Server → page. */
  down: Buffer[];
  downBytes: number;
}

interface Proxy {
  port: number;
  base: string;
  taps: Tap[];
  close(): Promise<void>;
}

async function startProxy(targetPort: number): Promise<Proxy> {
  const taps: Tap[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const tap: Tap = { up: [], upBytes: 0, down: [], downBytes: 0 };
    taps.push(tap);
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const [socket, other] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(socket);
      socket.on('error', () => other.destroy());
      socket.on('close', () => {
        sockets.delete(socket);
        other.destroy();
      });
    }
    // Counted before the other side gets them: when the page sees a message, its bytes are counted.
    client.on('data', (chunk: Buffer) => {
      tap.up.push(chunk);
      tap.upBytes += chunk.length;
    });
    upstream.on('data', (chunk: Buffer) => {
      tap.down.push(chunk);
      tap.downBytes += chunk.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    taps,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The taps that carry a WebSocket upgrade to `path`. */
function webSocketTaps(proxy: Proxy, path: string): Tap[] {
  return proxy.taps.filter((t) => t.up.length > 0 && Buffer.concat(t.up).subarray(0, 200).toString('latin1').startsWith(`GET ${path} `));
}

interface WireMessage {
  /** 1 text, 2 binary. */
  opcode: number;
  /** RSV1 on the first frame: a compressed message (RFC 7692 §6). */
  compressed: boolean;
  frames: number;
  /** Payload bytes as sent (compressed if `compressed`). */
  payload: number;
  /** Bytes on the wire, frame headers included. */
  wire: number;
  /** Offset of its first byte in the direction's byte stream. */
  start: number;
}

interface Wire {
  /** The HTTP request or response head. */
  head: string;
  messages: WireMessage[];
  /** Opcodes of the control frames. */
  controls: number[];
}

/** Split one direction's bytes into the HTTP head and the WebSocket messages (complete ones only). */
function parseWire(chunks: Buffer[]): Wire {
  const buf = Buffer.concat(chunks);
  const end = buf.indexOf('\r\n\r\n');
  assert.ok(end > 0, 'no HTTP head on the wire');
  const head = buf.subarray(0, end).toString('latin1');
  const messages: WireMessage[] = [];
  const controls: number[] = [];
  let current: WireMessage | null = null;
  let at = end + 4;
  while (buf.length - at >= 2) {
    const b0 = buf[at]!;
    const b1 = buf[at + 1]!;
    assert.equal(b0 & 0x30, 0, `RSV2/RSV3 set on a frame at ${at}`);
    let length = b1 & 0x7f;
    let header = 2;
    if (length === 126) {
      if (buf.length - at < 4) break;
      length = buf.readUInt16BE(at + 2);
      header = 4;
    } else if (length === 127) {
      if (buf.length - at < 10) break;
      length = Number(buf.readBigUInt64BE(at + 2));
      header = 10;
    }
    if (b1 & 0x80) header += 4; // masking key (page → server)
    if (buf.length - at < header + length) break;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (opcode >= 8) {
      controls.push(opcode);
    } else if (opcode === 0) {
      assert.ok(current, `continuation frame without a message at ${at}`);
      assert.equal(b0 & 0x40, 0, `RSV1 on a continuation frame at ${at}`);
      current.frames++;
      current.payload += length;
      current.wire += header + length;
    } else {
      assert.equal(current, null, `new data frame inside a fragmented message at ${at}`);
      current = { opcode, compressed: (b0 & 0x40) !== 0, frames: 1, payload: length, wire: header + length, start: at };
    }
    if (fin && opcode < 8) {
      messages.push(current!);
      current = null;
    }
    at += header + length;
  }
  return { head, messages, controls };
}

/** A header's value from an HTTP head (case-insensitive name), or ''. */
function headerOf(head: string, name: string): string {
  const line = head.split('\r\n').find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line ? line.slice(name.length + 1).trim() : '';
}

interface Mark {
  up: number;
  down: number;
}
const mark = (tap: Tap): Mark => ({ up: tap.upBytes, down: tap.downBytes });

/** What crossed a tap between two marks: bytes and the messages that started in between, per direction. */
function between(tap: Tap, from: Mark, to: Mark) {
  const inRange = (m: WireMessage, a: number, b: number) => m.start >= a && m.start < b;
  return {
    upBytes: to.up - from.up,
    downBytes: to.down - from.down,
    up: parseWire(tap.up).messages.filter((m) => inRange(m, from.up, to.up)),
    down: parseWire(tap.down).messages.filter((m) => inRange(m, from.down, to.down)),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * A blank page on a loopback origin of its own (another port than the echo
 * server's, so the WebSocket is cross-origin). Not about:blank: Chromium's
 * Local Network Access checks block a WebSocket from it to 127.0.0.1
 * (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS, close 1006).
 */
async function startBlankPage(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', Connection: 'close' }).end('<!doctype html><title>deflate echo</title><body></body>');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------
// The page side of test 1 (a string: tsx would add helpers to a function)

interface CaseResult {
  name: string;
  messages: number;
  /** Bytes sent (UTF-8 for text). */
  bytes: number;
  /** Empty when every echo was identical to what was sent, same type. */
  mismatches: string[];
  ms: number;
}

interface DeflateEchoPage {
  open(url: string): Promise<{ extensions: string; protocol: string }>;
  run(name: string): Promise<CaseResult>;
  close(): Promise<{ code: number; reason: string; wasClean: boolean }>;
}

declare global {
  interface Window {
    deflateEcho: DeflateEchoPage;
    /** Every WebSocket a chat page opened (the init script of test 2). */
    openedSockets: Array<{ url: string; extensions: string | null; protocol: string | null }>;
    switchboardChat: { channel: string; client: { publish(channel: string, data: unknown): Promise<unknown> } };
  }
}

const KB = 1024;
const REPETITIVE_BYTES = 200 * KB;
const JSON_COUNT = 50;
const MULTIBYTE_BYTES = 70 * KB;
const BINARY_BYTES = 100 * KB;

const PAGE_LIB = `(() => {
  const WAIT = ${WAIT_MS};
  // mulberry32: deterministic data, so a failing case can be replayed.
  function prng(seed) {
    return function () {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const utf8 = new TextEncoder();
  function word(rand) {
    let s = '';
    const n = 3 + Math.floor(rand() * 8);
    for (let i = 0; i < n; i++) s += String.fromCharCode(97 + Math.floor(rand() * 26));
    return s;
  }
  const CASES = {
    repetitive() {
      const line = 'The quick brown fox jumps over the lazy dog; switchboard permessage-deflate. ';
      return [line.repeat(Math.ceil(${REPETITIVE_BYTES} / line.length)).slice(0, ${REPETITIVE_BYTES})];
    },
    json() {
      // Similar to each other (one base record set, a few fields changed and a sequence number
      // per message), not very compressible on their own (random words): with context takeover
      // each message after the first is mostly a back reference into the previous one.
      const rand = prng(7);
      const base = Array.from({ length: 34 }, (_, id) => ({
        id,
        name: word(rand) + ' ' + word(rand),
        email: word(rand) + '@' + word(rand) + '.example',
        tags: [word(rand), word(rand)],
        score: Math.floor(rand() * 1e6),
      }));
      const texts = [];
      for (let seq = 0; seq < ${JSON_COUNT}; seq++) {
        const items = base.map((e) => ({ ...e }));
        for (let k = 0; k < 3; k++) items[Math.floor(rand() * items.length)].score = Math.floor(rand() * 1e6);
        texts.push(JSON.stringify({ seq, time: 1700000000000 + seq * 1000, note: word(rand), items }));
      }
      return texts;
    },
    multibyte() {
      const rand = prng(11);
      const pool = ['日本語の文章', '中文字符', '한국어', 'Ελληνικά', 'кириллица', 'ß', 'é', '€', '😀', '🚀', '👩‍💻', '🇫🇷', '𠀀', '𝄞', '\\u00a0', ' ', 'ascii ', '\\u200b', 'ﬁ', '漢字かな'];
      const sizes = pool.map((p) => utf8.encode(p).length);
      const parts = [];
      let bytes = 0;
      while (bytes < ${MULTIBYTE_BYTES}) {
        const i = Math.floor(rand() * pool.length);
        parts.push(pool[i]);
        bytes += sizes[i];
      }
      return [parts.join('')];
    },
    random() {
      const rand = prng(13);
      const b = new Uint8Array(${BINARY_BYTES});
      for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
      return [b];
    },
    zeros() {
      return [new Uint8Array(${BINARY_BYTES})];
    },
    emptyText() {
      return [''];
    },
    emptyBinary() {
      return [new Uint8Array(0)];
    },
  };

  let ws = null;
  const inbox = [];
  let waiter = null;
  let closed = null;
  function next(what) {
    if (inbox.length > 0) return Promise.resolve(inbox.shift());
    if (closed) return Promise.reject(new Error('no echo of ' + what + ': ' + closed));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiter = null;
        reject(new Error('no echo of ' + what + ' within ' + WAIT + ' ms (socket readyState ' + ws.readyState + ')'));
      }, WAIT);
      waiter = {
        message(data) {
          clearTimeout(timer);
          waiter = null;
          resolve(data);
        },
        closed() {
          clearTimeout(timer);
          waiter = null;
          reject(new Error('no echo of ' + what + ': ' + closed));
        },
      };
    });
  }
  function compare(sent, got) {
    if (typeof sent === 'string') {
      if (typeof got !== 'string') return 'expected text, got ' + Object.prototype.toString.call(got);
      if (got === sent) return null;
      let i = 0;
      while (i < sent.length && sent[i] === got[i]) i++;
      return 'text differs at UTF-16 index ' + i + ' (sent ' + sent.length + ', got ' + got.length + ' units)';
    }
    if (!(got instanceof ArrayBuffer)) return 'expected binary, got ' + typeof got;
    const g = new Uint8Array(got);
    if (g.length !== sent.length) return 'binary length ' + g.length + ' instead of ' + sent.length;
    for (let i = 0; i < g.length; i++) if (g[i] !== sent[i]) return 'byte ' + i + ' is ' + g[i] + ' instead of ' + sent[i];
    return null;
  }
  function show(row) {
    let table = document.getElementById('results');
    if (!table) {
      document.body.style.font = '14px sans-serif';
      document.body.innerHTML = '<h2>permessage-deflate echo: Chromium ⇄ switchboard echo --deflate</h2><p id="ext"></p>' +
        '<table id="results" border="1" cellpadding="4"><tr><th>case</th><th>messages</th><th>bytes</th><th>result</th><th>ms</th></tr></table>';
      table = document.getElementById('results');
      document.getElementById('ext').textContent = 'extensions: ' + (ws ? ws.extensions : '');
    }
    const tr = document.createElement('tr');
    for (const cell of row) {
      const td = document.createElement('td');
      td.textContent = String(cell);
      tr.append(td);
    }
    table.append(tr);
  }

  window.deflateEcho = {
    open(url) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no open within ' + WAIT + ' ms')), WAIT);
        ws = new WebSocket(url);
        ws.binaryType = 'arraybuffer';
        ws.onmessage = (e) => (waiter ? waiter.message(e.data) : inbox.push(e.data));
        ws.onopen = () => {
          clearTimeout(timer);
          resolve({ extensions: ws.extensions, protocol: ws.protocol });
        };
        ws.onclose = (e) => {
          clearTimeout(timer);
          closed = 'the socket closed with ' + e.code + (e.reason ? ' ' + e.reason : '');
          reject(new Error('closed before open: ' + e.code));
          if (waiter) waiter.closed();
        };
      });
    },
    async run(name) {
      const items = CASES[name]();
      const t0 = performance.now();
      for (const item of items) ws.send(item); // in a row: no waiting between them
      const mismatches = [];
      for (let i = 0; i < items.length; i++) {
        const why = compare(items[i], await next(name + '[' + i + ']'));
        if (why) mismatches.push(name + '[' + i + ']: ' + why);
      }
      const ms = Math.round(performance.now() - t0);
      const bytes = items.reduce((n, it) => n + (typeof it === 'string' ? utf8.encode(it).length : it.length), 0);
      if (inbox.length > 0) mismatches.push(name + ': ' + inbox.length + ' unexpected extra messages');
      show([name, items.length, bytes, mismatches.length === 0 ? 'identical' : mismatches.join('; '), ms]);
      return { name, messages: items.length, bytes, mismatches, ms };
    },
    close() {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no close within ' + WAIT + ' ms')), WAIT);
        ws.onclose = (e) => {
          clearTimeout(timer);
          resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
        };
        ws.close(1000, 'done');
      });
    },
  };
})();`;

/** Records every WebSocket the page opens, with its negotiated extensions once open (the SDK keeps its socket private). */
const RECORD_WEBSOCKETS = `(() => {
  const Real = window.WebSocket;
  window.openedSockets = [];
  window.WebSocket = class extends Real {
    constructor(url, protocols) {
      super(url, protocols);
      const record = { url: String(url), extensions: null, protocol: null };
      window.openedSockets.push(record);
      this.addEventListener('open', () => {
        record.extensions = this.extensions;
        record.protocol = this.protocol;
      });
    }
  };
})();`;

// ---------------------------------------------------------------------------

const env = {} as { browser: TestBrowser; echo: Echo; serve: Serve; dir: string; proxies: Proxy[]; blank: { url: string; close(): Promise<void> } };

before(async () => {
  env.proxies = [];
  env.dir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-deflate-'));
  env.browser = await launchBrowser();
});

after(async () => {
  await env.browser?.close();
  for (const p of env.proxies ?? []) await p.close().catch(() => {});
  await env.blank?.close();
  await env.echo?.stop();
  await env.serve?.stop();
  killAll();
  if (env.dir) rmSync(env.dir, { recursive: true, force: true });
});

test('echo --deflate: every echo to Chromium is byte-identical (repetitive 200 KB, 50 JSON texts in a row, multi-byte UTF-8, random and zero binary, empty), compressed on the wire both ways, with context takeover', { timeout: 90_000 }, async () => {
  // The bare command: it used to die at the first deflate connection (maxPayload: undefined overrode the default).
  env.echo = await startEcho(0, ['--deflate']);
  assert.ok(env.echo.port > 0, `echo --port 0 reported ${env.echo.url}`);
  const proxy = await startProxy(env.echo.port);
  env.proxies.push(proxy);

  const page = await env.browser.page();
  env.blank = await startBlankPage();
  await page.goto(env.blank.url); // cross-origin to the echo server, which checks no Origin
  await page.evaluate(PAGE_LIB);
  const opened = await within(page.evaluate((url) => window.deflateEcho.open(url), `ws://127.0.0.1:${proxy.port}/`), WAIT_MS + 1000, 'the echo WebSocket to open');
  assert.match(opened.extensions, /^permessage-deflate\b/, `negotiated extensions: "${opened.extensions}"`);

  const [tap] = webSocketTaps(proxy, '/');
  assert.ok(tap && proxy.taps.length === 1, `${proxy.taps.length} connections through the proxy`);
  const offer = headerOf(parseWire(tap.up).head, 'Sec-WebSocket-Extensions');
  const answer = headerOf(parseWire(tap.down).head, 'Sec-WebSocket-Extensions');
  assert.match(offer, /permessage-deflate/, `Chromium's offer: "${offer}"`);
  assert.match(answer, /^permessage-deflate\b/, `the server's answer: "${answer}"`);
  assert.doesNotMatch(answer, /no_context_takeover/, `context takeover both ways: "${answer}"`);
  assert.equal(answer, opened.extensions, 'the page sees what the server answered');
  console.log(`Chromium offered "${offer}", echo answered "${answer}"`);

  const measured: Record<string, ReturnType<typeof between> & CaseResult> = {};
  for (const name of ['repetitive', 'json', 'multibyte', 'random', 'zeros', 'emptyText', 'emptyBinary']) {
    const from = mark(tap);
    const result = await within(page.evaluate((n) => window.deflateEcho.run(n), name), 3 * WAIT_MS, `the echoes of "${name}"`);
    measured[name] = { ...result, ...between(tap, from, mark(tap)) };
    assert.deepEqual(result.mismatches, [], `echo of "${name}" differs`);
    assert.equal(measured[name].up.length, result.messages, `"${name}": messages page → server`);
    assert.equal(measured[name].down.length, result.messages, `"${name}": messages server → page`);
  }
  const summary = Object.values(measured).map((m) => ({
    name: m.name,
    messages: m.messages,
    bytes: m.bytes,
    upBytes: m.upBytes,
    downBytes: m.downBytes,
    upCompressed: m.up.filter((x) => x.compressed).length,
    downCompressed: m.down.filter((x) => x.compressed).length,
    ms: m.ms,
  }));
  console.log(JSON.stringify(summary));

  // Compressed: the 200 KB text crosses as a few KB each way, RSV1 set.
  const rep = measured.repetitive!;
  assert.equal(rep.bytes, REPETITIVE_BYTES);
  for (const [dir, bytes, msgs] of [['page → server', rep.upBytes, rep.up], ['server → page', rep.downBytes, rep.down]] as const) {
    assert.ok(msgs[0]!.compressed, `repetitive text not compressed ${dir}`);
    assert.ok(bytes < REPETITIVE_BYTES / 20, `repetitive text ${dir}: ${bytes} bytes on the wire for ${REPETITIVE_BYTES}`);
  }
  const zeros = measured.zeros!;
  assert.ok(zeros.upBytes < BINARY_BYTES / 20 && zeros.downBytes < BINARY_BYTES / 20, `zeros: ${zeros.upBytes} / ${zeros.downBytes} bytes for ${BINARY_BYTES}`);
  assert.ok(zeros.down[0]!.compressed, 'zeros not compressed server → page');
  // Incompressible: at least its size each way (the counter counts what really crossed).
  const random = measured.random!;
  assert.ok(random.upBytes >= BINARY_BYTES && random.downBytes >= BINARY_BYTES, `random: ${random.upBytes} / ${random.downBytes} bytes`);
  const multi = measured.multibyte!;
  assert.ok(multi.bytes >= MULTIBYTE_BYTES);
  assert.ok(multi.up[0]!.compressed && multi.down[0]!.compressed, 'multi-byte text not compressed both ways');
  assert.ok(multi.upBytes < multi.bytes && multi.downBytes < multi.bytes, `multi-byte: ${multi.upBytes} / ${multi.downBytes} bytes for ${multi.bytes}`);

  // Context takeover both ways: the JSON texts after the first refer back to earlier ones, so they
  // are a fraction of the first one's size (without takeover each would be about as big as the first).
  const json = measured.json!;
  assert.equal(json.messages, JSON_COUNT);
  assert.ok(json.bytes / JSON_COUNT > 3.5 * KB && json.bytes / JSON_COUNT < 4.5 * KB, `JSON texts of ${json.bytes / JSON_COUNT} bytes`);
  for (const [dir, msgs] of [['page → server', json.up], ['server → page', json.down]] as const) {
    assert.ok(msgs.every((m) => m.compressed && m.opcode === 1), `a JSON text not compressed ${dir}`);
    const first = msgs[0]!.payload;
    const rest = median(msgs.slice(1).map((m) => m.payload));
    console.log(`JSON ${dir}: first ${first} bytes, median of the next ${msgs.length - 1}: ${rest} bytes`);
    assert.ok(first > 1000, `first JSON text ${dir} compressed to ${first} bytes: the data is too compressible to show takeover`);
    assert.ok(rest < first / 4, `no context takeover ${dir}? first ${first} bytes, median of the others ${rest}`);
  }

  const closed = await within(page.evaluate(() => window.deflateEcho.close()), WAIT_MS + 1000, 'the close handshake');
  // (The reason is the server's: ours answers a close with the code only.)
  assert.deepEqual({ code: closed.code, wasClean: closed.wasClean }, { code: 1000, wasClean: true });
  await page.evaluate((s) => {
    document.getElementById('ext')!.textContent += ` · wire bytes (page→server / server→page): ${s}`;
  }, summary.map((s) => `${s.name} ${s.upBytes}/${s.downBytes}`).join(', '));
  await screenshot(page, 'deflate-echo');

  // The echo server saw one connection with the extension, closed normally, and no error.
  await within(
    (async () => {
      while (!env.echo.logs.some((l) => l.event === 'close')) await new Promise((r) => setTimeout(r, 20));
    })(),
    WAIT_MS,
    "echo's close log line",
  );
  const events = env.echo.logs.filter((l) => l.event !== 'listening');
  assert.equal(events.filter((e) => e.event === 'open').length, 1, JSON.stringify(events));
  assert.match(String(events.find((e) => e.event === 'open')!.extensions), /^permessage-deflate/);
  assert.deepEqual(
    env.echo.logs.filter((l) => l.event === 'error' || l.event === 'close').map((l) => [l.event, l.code]),
    [['close', 1000]],
  );
  assert.deepEqual(env.echo.stderr, []);
  assert.deepEqual(env.browser.errors, []);
});

test('serve with compression enabled: the chat page negotiates permessage-deflate; a long message typed in one page arrives intact in the other, over compressed frames both ways', { timeout: 90_000 }, async () => {
  const file = join(env.dir, 'switchboard.json');
  writeFileSync(file, JSON.stringify({ compression: { enabled: true } }));
  env.serve = await startServe(0, ['--config', file]);
  // One proxy per page: each carries exactly one page's connections.
  const proxyA = await startProxy(env.serve.port);
  const proxyB = await startProxy(env.serve.port);
  env.proxies.push(proxyA, proxyB);

  const pages: Page[] = [];
  for (let i = 0; i < 2; i++) {
    const page = await env.browser.page();
    await page.addInitScript({ content: RECORD_WEBSOCKETS });
    pages.push(page);
  }
  const [alice, bob] = pages as [Page, Page];
  await openChat(alice, proxyA.base, 'deflate', 'alice');
  await openChat(bob, proxyB.base, 'deflate', 'bob');
  for (const page of [alice, bob]) {
    assert.equal(await transport(page), 'websocket');
    const sockets = await page.evaluate(() => window.openedSockets);
    assert.equal(sockets.length, 1, JSON.stringify(sockets));
    assert.match(sockets[0]!.extensions ?? '', /^permessage-deflate\b/, `the chat socket's extensions: ${JSON.stringify(sockets)}`);
    assert.match(sockets[0]!.protocol ?? '', /^switchboard\.v1\./);
  }
  const [tapA] = webSocketTaps(proxyA, '/rt');
  const [tapB] = webSocketTaps(proxyB, '/rt');
  assert.ok(tapA && tapB, 'the pages\' WebSocket connections went through the proxies');
  const answer = headerOf(parseWire(tapA.down).head, 'Sec-WebSocket-Extensions');
  console.log(`Chromium offered "${headerOf(parseWire(tapA.up).head, 'Sec-WebSocket-Extensions')}", serve answered "${answer}"`);

  // The chat input takes 1000 characters (maxlength); in CJK and emoji that is well over the
  // 1024-byte compression threshold.
  const unit = '圧縮テキスト🙂中文字符한국어 deflate ';
  const long = `long ${unit.repeat(Math.floor(990 / unit.length))}end`;
  const longBytes = Buffer.byteLength(long);
  assert.ok(long.length <= 1000 && longBytes > 2 * 1024, `${long.length} characters, ${longBytes} bytes`);
  let fromA = mark(tapA);
  let fromB = mark(tapB);
  await say(alice, long);
  await waitForMessage(bob, long);
  await waitForMessage(alice, long);
  const typed = { a: between(tapA, fromA, mark(tapA)), b: between(tapB, fromB, mark(tapB)) };
  assert.equal(await alice.$eval('#text', (el) => (el as HTMLInputElement).value), '', 'the input was sent and cleared');
  // Alice's publish went compressed (Chromium deflated, we inflated); Bob's copy came compressed (we deflated, Chromium inflated).
  const publishUp = typed.a.up.filter((m) => m.compressed);
  const deliveredDown = typed.b.down.filter((m) => m.compressed);
  assert.ok(publishUp.length >= 1, `no compressed message page → server: ${JSON.stringify(typed.a.up)}`);
  assert.ok(deliveredDown.length >= 1, `no compressed message server → page: ${JSON.stringify(typed.b.down)}`);
  assert.ok(Math.max(...deliveredDown.map((m) => m.payload)) < longBytes, 'the delivered copy is smaller than the text');
  await screenshot(bob, 'deflate-chat'); // (CJK shows as boxes where no CJK font is installed)

  // Through the SDK of the same page: a 40 KB repetitive text (the chat input stops at 1000 characters),
  // far below 40 KB on both wires.
  const bigLine = 'Switchboard permessage-deflate through the chat page, 圧縮. ';
  const big = `big ${bigLine.repeat(Math.ceil(40 * KB / bigLine.length))}`.slice(0, 40 * KB);
  const bigBytes = Buffer.byteLength(big);
  fromA = mark(tapA);
  fromB = mark(tapB);
  await within(
    alice.evaluate((text) => window.switchboardChat.client.publish(window.switchboardChat.channel, { text }).then(() => true), big),
    WAIT_MS,
    'the ack of the 40 KB publication',
  );
  await waitForMessage(bob, big);
  const sdk = { a: between(tapA, fromA, mark(tapA)), b: between(tapB, fromB, mark(tapB)) };
  console.log(
    `serve: typed ${longBytes} B: alice → server ${typed.a.upBytes} B, server → bob ${typed.b.downBytes} B; ` +
      `SDK ${bigBytes} B: alice → server ${sdk.a.upBytes} B, server → bob ${sdk.b.downBytes} B`,
  );
  assert.ok(sdk.a.up.some((m) => m.compressed) && sdk.b.down.some((m) => m.compressed), 'the 40 KB text was not compressed both ways');
  assert.ok(sdk.a.upBytes < bigBytes / 10, `alice → server: ${sdk.a.upBytes} bytes for ${bigBytes}`);
  assert.ok(sdk.b.downBytes < bigBytes / 10, `server → bob: ${sdk.b.downBytes} bytes for ${bigBytes}`);

  // Nothing went wrong on the way: no warning on either page, no reconnect, no error in the server's log.
  for (const page of [alice, bob]) {
    const warnings = await page.$$eval('#messages li.sys.warn', (items) => items.map((li) => li.textContent ?? ''));
    assert.deepEqual(warnings, []);
    assert.equal(await page.evaluate(() => window.openedSockets.length), 1, 'the page reconnected');
  }
  assert.equal(webSocketTaps(proxyA, '/rt').length + webSocketTaps(proxyB, '/rt').length, 2);
  assert.deepEqual(env.serve.logs.filter((l) => typeof l.level === 'number' && l.level >= 50), []);
  await screenshot(bob, 'deflate-chat-40k');
  assert.deepEqual(env.browser.errors, []);
});
