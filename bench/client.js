// Load generator child. Started by bench/run.js with one JSON argument:
//   { impl, url, scenario: {kind, size, inflight, deflate, pool?}, connections,
//     warmupMs, durationMs, drainTimeoutMs, connectTimeoutMs, closeTimeoutMs }
// IPC (child -> parent): {type:'measure-start'} | {type:'measure-end'} | {type:'result', result} | {type:'error', message}
//
// Every connection keeps `inflight` messages outstanding: it sends that many
// at the start and one more for each echo it receives (closed loop, so memory
// is bounded by connections x inflight x size). Echoes on one connection come
// back in order, so each connection keeps a ring of send timestamps and the
// round-trip time of an echo is now - the oldest outstanding timestamp.
//
// Phases: warm-up (nothing recorded), measure (throughput counted, latency
// recorded for messages sent in the window), drain (no more sends; the
// latency of messages sent in the window but still in flight is recorded, so
// slow messages are not censored out of p99), done.

import { performance } from 'node:perf_hooks';
import { LatencyHistogram } from './lib/histogram.js';
import { loadImplementation } from './lib/impls.js';
import { scenarioMessages } from './lib/payloads.js';
import { guardChildProcess } from './lib/child.js';

const cfg = JSON.parse(process.argv[2]);
const { scenario } = cfg;

// Last-resort watchdog; run.js has its own timeouts too.
const fail = guardChildProcess('client', cfg.connectTimeoutMs + cfg.warmupMs + cfg.durationMs + cfg.drainTimeoutMs + cfg.closeTimeoutMs + 5000);

const WARMUP = 0;
const MEASURE = 1;
const DRAIN = 2;
const DONE = 3;
let phase = WARMUP;
let measureStart = Infinity;
/** Set while draining: called on every echo. */
let drainWaiter = null;
/** Set while closing: called on every 'close' event. */
let closeWaiter = null;

const { messages, lengths } = scenarioMessages(scenario);
const SEND_OPTS = { binary: scenario.kind !== 'json' };
const N = scenario.inflight;
const hist = new LatencyHistogram();
const stats = { received: 0, bytes: 0, mismatched: 0, unexpected: 0, verified: 0, errors: 0, closedEarly: 0, firstError: null };

function byteLength(data) {
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.byteLength, 0);
  return data.byteLength;
}

function sameBytes(data, expected) {
  const a = typeof expected === 'string' ? Buffer.from(expected) : expected;
  const b = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength);
  return a.equals(b);
}

class Conn {
  constructor(ws, index) {
    this.ws = ws;
    this.sentAt = new Float64Array(N);
    this.msgIndex = new Int32Array(N);
    this.head = 0;
    this.tail = 0;
    this.pending = 0;
    this.next = (index * 7) % messages.length;
    this.checked = false;
    this.closed = false;
    ws.on('message', this.onMessage.bind(this));
    ws.on('error', this.onError.bind(this));
    ws.on('close', this.onClose.bind(this));
  }

  send() {
    const i = this.next;
    this.next = i + 1 === messages.length ? 0 : i + 1;
    this.msgIndex[this.tail] = i;
    this.sentAt[this.tail] = performance.now();
    this.tail = this.tail + 1 === N ? 0 : this.tail + 1;
    this.pending++;
    this.ws.send(messages[i], SEND_OPTS);
  }

  onMessage(data) {
    const now = performance.now();
    if (this.pending === 0) {
      stats.unexpected++;
      return;
    }
    const sent = this.sentAt[this.head];
    const i = this.msgIndex[this.head];
    this.head = this.head + 1 === N ? 0 : this.head + 1;
    this.pending--;
    const len = byteLength(data);
    if (len !== lengths[i]) stats.mismatched++;
    else if (!this.checked) {
      // Compare the full content of the first echo on each connection.
      this.checked = true;
      if (sameBytes(data, messages[i])) stats.verified++;
      else stats.mismatched++;
    }
    if (phase === MEASURE) {
      stats.received++;
      stats.bytes += len;
      if (sent >= measureStart) hist.recordMs(now - sent);
      this.send();
    } else if (phase === WARMUP) {
      this.send();
    } else if (phase === DRAIN) {
      if (sent >= measureStart) hist.recordMs(now - sent);
      if (drainWaiter) drainWaiter();
    }
  }

  onError(err) {
    stats.errors++;
    stats.firstError ??= String(err && err.message);
  }

  onClose(code) {
    this.closed = true;
    if (phase < DRAIN) {
      stats.closedEarly++;
      stats.firstError ??= `connection closed during the run (code ${code})`;
    }
    if (closeWaiter) closeWaiter();
  }
}

function connectOne(WebSocket, index) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(cfg.url, { perMessageDeflate: !!scenario.deflate });
    const onError = (err) => reject(new Error(`connection ${index}: ${err && err.message}`));
    ws.once('error', onError);
    ws.once('open', () => {
      ws.off('error', onError);
      const ext = ws.extensions;
      const hasDeflate = typeof ext === 'string' && ext.includes('permessage-deflate');
      if (typeof ext === 'string' && hasDeflate !== !!scenario.deflate) {
        reject(new Error(`permessage-deflate ${scenario.deflate ? 'was not' : 'was'} negotiated (extensions: "${ext}")`));
        return;
      }
      resolve(ws);
    });
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { WebSocket, native } = await loadImplementation(cfg.impl);
const sockets = await withTimeout(
  Promise.all(Array.from({ length: cfg.connections }, (_, i) => connectOne(WebSocket, i))),
  cfg.connectTimeoutMs,
  `opening ${cfg.connections} connections`,
);
const conns = sockets.map((ws, i) => new Conn(ws, i));

// Warm-up: start the closed loop, discard everything measured.
for (const c of conns) for (let k = 0; k < N; k++) c.send();
await sleep(cfg.warmupMs);

phase = MEASURE;
hist.reset();
stats.received = 0;
stats.bytes = 0;
const cpu0 = process.cpuUsage();
measureStart = performance.now();
process.send({ type: 'measure-start' });
await sleep(cfg.durationMs);

phase = DRAIN;
const measureMs = performance.now() - measureStart;
const cpu = process.cpuUsage(cpu0);
process.send({ type: 'measure-end' });

// Wait (bounded) for the echoes of messages sent during the window.
const inFlight = () => conns.reduce((n, c) => n + (c.closed ? 0 : c.pending), 0);
await withTimeout(
  new Promise((resolve) => {
    drainWaiter = () => inFlight() === 0 && resolve();
    drainWaiter();
  }),
  cfg.drainTimeoutMs,
  'draining',
).catch(() => {});
drainWaiter = null;
// Messages sent in the window whose echo never came within the drain timeout.
const censored = conns.reduce((n, c) => {
  for (let k = 0, j = c.head; k < c.pending; k++, j = j + 1 === N ? 0 : j + 1) if (c.sentAt[j] >= measureStart) n++;
  return n;
}, 0);
phase = DONE;

const result = {
  native,
  measureMs,
  received: stats.received,
  bytes: stats.bytes,
  latency: { ...hist.summary(), censored },
  cpuPct: ((cpu.user + cpu.system) / 1000 / measureMs) * 100,
  mismatched: stats.mismatched,
  unexpected: stats.unexpected,
  verified: stats.verified,
  errors: stats.errors,
  closedEarly: stats.closedEarly,
  firstError: stats.firstError,
  messageBytes: lengths.reduce((a, b) => a + b, 0) / lengths.length,
};
await new Promise((resolve) => process.send({ type: 'result', result }, resolve));

// Close politely, then hard-stop whatever is left; the numbers are already sent.
for (const c of conns) c.ws.close(1000);
await withTimeout(
  new Promise((resolve) => {
    closeWaiter = () => conns.every((c) => c.closed) && resolve();
    closeWaiter();
  }),
  cfg.closeTimeoutMs,
  'closing',
).catch(() => {});
process.exit(0);
