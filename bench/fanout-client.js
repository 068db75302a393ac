// Fan-out load generator child: N subscribers and one publisher, all raw-TCP
// WebSocket connections (bench/lib/raw-ws.js), in this one process so that
// publish and delivery times come from the same clock (performance.now()).
// Started by bench/lib/fanout.js with one JSON argument:
//   { host, port, path, scenario: { channels, perChannel, window, rate },
//     warmupMs, durationMs, drainTimeoutMs, setupTimeoutMs, concurrency, probes }
// IPC (child -> parent): {type:'setup-done'} | {type:'sat-start'} | {type:'sat-end'}
//   | {type:'rate-start'} | {type:'rate-end'} | {type:'result', result} | {type:'error', message}
//
// Phases, on the same connections:
//   setup    connect and subscribe every subscriber, `concurrency` at a time
//   warm-up  closed loop (below), nothing recorded
//   sat      closed loop: at most `window` publishes in flight (published but
//            not yet delivered to every subscriber); a new one goes out as
//            soon as deliveries make room. Measures the saturated rate.
//   drain    no more publishes; wait (bounded) for every delivery
//   rate     open loop at `rate` publishes/s for the same duration: publish k
//            is stamped with its *intended* time start + k/rate, so a late
//            timer or a backed-up server shows up as latency
//   drain    again; then every subscriber's count is checked
//
// Latency is sampled on probe connections (every k-th subscriber, at most
// `probes` of them, spread evenly over the connection order, which is about
// the subscription order both servers loop in): they parse the "t" stamp of
// every message they get; the others only count frames.

import { performance } from 'node:perf_hooks';
import { LatencyHistogram } from './lib/histogram.js';
import { RawWebSocket } from './lib/raw-ws.js';
import { guardChildProcess } from './lib/child.js';

const cfg = JSON.parse(process.argv[2]);
const sc = cfg.scenario;
const CHANNELS = sc.channels;
const PER = sc.perChannel;
const N = CHANNELS * PER;
const LIMIT = sc.window * PER; // deliveries in flight in the closed loop
const PROBE_EVERY = Math.max(1, Math.ceil(N / cfg.probes));
/** Open loop: stop sending (and report it) past this many deliveries in flight. */
const OVERLOAD_DELIVERIES = 500_000;
/** At most this many publishes per pump turn (the closed loop reschedules itself when room is left). */
const MAX_BATCH = 256;

// Last-resort watchdog; run.js has its own timeouts too.
const fail = guardChildProcess('fan-out load generator', cfg.setupTimeoutMs + cfg.warmupMs + 2 * cfg.durationMs + 2 * cfg.drainTimeoutMs + 10_000);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- messages

const channelName = (c) => `bench/${c}`;
// 64 B of text next to the stamp, like a short chat message: data is about 90 B of JSON.
const FILLER = 'The quick brown fox jumps over the lazy dog. 0123456789 abcdefgh';
const PUB_HEAD = '{"op":"pub","id":';
const PUB_CHANNEL = Array.from({ length: CHANNELS }, (_, c) => `,"channel":"${channelName(c)}","data":{"t":`);
const PUB_TAIL = `,"text":"${FILLER}"}}`;
const T_KEY = Buffer.from('"t":');
const OP_ERROR = Buffer.from('"op":"error"');
const OP_OK = Buffer.from('"op":"ok"');

// ---------------------------------------------------------------- state

const SETUP = 0;
const WARMUP = 1;
const SAT = 2;
const DRAIN = 3;
const RATE = 4;
const DONE = 5;
let phase = SETUP;

let delivered = 0;
let deliveredBytes = 0;
let published = 0;
let acked = 0;
const publishedTo = new Float64Array(CHANNELS);
const stats = { closedEarly: 0, firstError: null, pubErrors: 0, firstPubError: null, mismatched: 0, verified: 0, unexpected: 0 };

// Publish stamps t belong to the window [from, to) of one histogram.
const histSat = new LatencyHistogram();
const histRate = new LatencyHistogram();
let satFrom = Infinity;
let satTo = Infinity;
let rateFrom = Infinity;
let rateTo = Infinity;

/** Closed loop: deliveries needed before the next publish may go out. */
let nextSendAt = Infinity;
let pumpScheduled = false;

let setupDone = null;
let setupFailed = null;
let started = 0;
let ready = 0;
/** @type {RawWebSocket[]} */
const subs = [];
/** @type {RawWebSocket} */
let publisher = null;

// ---------------------------------------------------------------- handler

function noteClose(conn, reason) {
  if (phase === DONE) return;
  stats.closedEarly++;
  stats.firstError ??= `${conn === publisher ? 'publisher' : `subscriber ${conn.index}`}: ${reason}`;
  if (phase === SETUP && setupFailed) setupFailed(new Error(stats.firstError));
}

function verify(conn, payload) {
  conn.checked = true;
  try {
    const m = JSON.parse(payload.toString('utf8'));
    if (m.op === 'msg' && m.channel === channelName(conn.channel) && typeof m.data?.t === 'number' && m.data.text === FILLER) stats.verified++;
    else stats.mismatched++;
  } catch {
    stats.mismatched++;
  }
}

function onSubscribed(conn, payload) {
  if (payload.indexOf(OP_OK) === -1) {
    noteClose(conn, `subscribe refused: ${payload.toString('utf8', 0, Math.min(payload.length, 200))}`);
    return;
  }
  conn.ready = true;
  conn.collect = conn.probe;
  ready++;
  if (ready === N) setupDone();
  else startMore();
}

const handler = {
  onOpen(conn) {
    if (conn === publisher) {
      conn.ready = true;
      startMore();
    } else {
      conn.sendText(`{"op":"sub","id":1,"channel":"${channelName(conn.channel)}"}`);
    }
  },

  onMessage(conn, payload, length) {
    if (conn === publisher) {
      acked++;
      if (payload.indexOf(OP_ERROR) !== -1) {
        stats.pubErrors++;
        stats.firstPubError ??= payload.toString('utf8', 0, Math.min(payload.length, 200));
      }
      return;
    }
    if (!conn.ready) {
      onSubscribed(conn, payload);
      return;
    }
    if (phase === SETUP) {
      stats.unexpected++;
      return;
    }
    delivered++;
    deliveredBytes += length;
    conn.received++;
    if (payload !== null) {
      // A probe: read the stamp without parsing the whole message.
      const now = performance.now();
      const k = payload.indexOf(T_KEY);
      const t = k === -1 ? NaN : parseFloat(payload.toString('latin1', k + 4, k + 24));
      if (!conn.checked) verify(conn, payload);
      if (t >= satFrom && t < satTo) histSat.recordMs(now - t);
      else if (t >= rateFrom && t < rateTo) histRate.recordMs(now - t);
      else if (!(t === t)) stats.mismatched++;
    }
    if (delivered >= nextSendAt && !pumpScheduled) {
      pumpScheduled = true;
      setImmediate(pumpClosed);
    }
  },

  onClose: noteClose,
};

// ---------------------------------------------------------------- setup

const target = { host: cfg.host, port: cfg.port, path: cfg.path };

function startMore() {
  while (started < N && started - ready < cfg.concurrency) {
    const conn = new RawWebSocket(target, handler, started);
    conn.channel = started % CHANNELS;
    conn.probe = started % PROBE_EVERY === 0;
    subs.push(conn);
    started++;
  }
}

// ---------------------------------------------------------------- publishing

/**
 * Send `count` publishes, each in a write of its own (as a publisher that
 * publishes one message at a time does). The server may still read several
 * at once when it is busy: that batching is the server's load, not ours.
 */
function publishBatch(count, stampOf) {
  for (let i = 0; i < count; i++) {
    const c = published % CHANNELS;
    publisher.sendTextBuffers([Buffer.from(PUB_HEAD + published + PUB_CHANNEL[c] + stampOf(i).toFixed(3) + PUB_TAIL)]);
    publishedTo[c]++;
    published++;
  }
}

/** Closed loop: fill the window. Runs at most once per event-loop turn (setImmediate). */
function pumpClosed() {
  pumpScheduled = false;
  if (phase !== WARMUP && phase !== SAT) {
    nextSendAt = Infinity;
    return;
  }
  const room = Math.floor((LIMIT - (published * PER - delivered)) / PER);
  if (room > 0) {
    const now = performance.now();
    publishBatch(Math.min(room, MAX_BATCH), () => now);
  }
  // The next publish may go when its deliveries fit in the window.
  nextSendAt = (published + 1) * PER - LIMIT;
  if (delivered >= nextSendAt) {
    pumpScheduled = true;
    setImmediate(pumpClosed);
  }
}

let ratePublished = 0;
let rateSkipped = 0;
let rateTotal = 0;

/** Open loop: send every publish whose intended time has come (1 ms timer). */
function pumpOpen() {
  if (phase !== RATE) return;
  const now = performance.now();
  const due = Math.min(rateTotal, Math.floor(((now - rateFrom) * sc.rate) / 1000) + 1);
  let n = due - ratePublished - rateSkipped;
  if (n > 0 && published * PER - delivered > OVERLOAD_DELIVERIES) {
    // The server (or this process) is far behind: stop adding, and say so.
    rateSkipped += n;
    n = 0;
  }
  while (n > 0) {
    const batch = Math.min(n, MAX_BATCH);
    const first = ratePublished + rateSkipped;
    publishBatch(batch, (i) => rateFrom + ((first + i) * 1000) / sc.rate);
    ratePublished += batch;
    n -= batch;
  }
  if (ratePublished + rateSkipped < rateTotal) setTimeout(pumpOpen, 1);
}

async function drain() {
  const deadline = performance.now() + cfg.drainTimeoutMs;
  while ((delivered < published * PER || acked < published) && stats.closedEarly === 0 && performance.now() < deadline) await sleep(2);
}

function mark() {
  return { t: performance.now(), delivered, bytes: deliveredBytes, published, cpu: process.cpuUsage() };
}

function windowOf(a, b, hist) {
  const ms = b.t - a.t;
  const cpuUs = b.cpu.user - a.cpu.user + (b.cpu.system - a.cpu.system);
  return {
    measureMs: ms,
    deliveries: b.delivered - a.delivered,
    bytes: b.bytes - a.bytes,
    publishes: b.published - a.published,
    cpuPct: (cpuUs / 1000 / ms) * 100,
    latency: hist.summary(),
  };
}

// ---------------------------------------------------------------- run

const setupStart = performance.now();
await new Promise((resolve, reject) => {
  setupDone = resolve;
  setupFailed = reject;
  const timer = setTimeout(
    () => reject(new Error(`setup timed out after ${cfg.setupTimeoutMs} ms: ${ready} of ${N} subscribers ready`)),
    cfg.setupTimeoutMs,
  );
  timer.unref();
  // The publisher first; subscribers start once it is open.
  publisher = new RawWebSocket(target, handler, -1);
});
const setupMs = performance.now() - setupStart;
process.send({ type: 'setup-done', setupMs });

phase = WARMUP;
pumpClosed();
await sleep(cfg.warmupMs);

phase = SAT;
satFrom = performance.now();
const sat0 = mark();
process.send({ type: 'sat-start' });
await sleep(cfg.durationMs);
const sat1 = mark();
satTo = sat1.t;
phase = DRAIN;
process.send({ type: 'sat-end' });
await drain();
const satBacklog = published * PER - delivered;

phase = RATE;
rateTotal = Math.max(1, Math.floor((sc.rate * cfg.durationMs) / 1000));
rateFrom = performance.now();
const rate0 = mark();
process.send({ type: 'rate-start' });
pumpOpen();
await sleep(cfg.durationMs);
const rate1 = mark();
rateTo = Infinity; // stamps are intended times: every publish of this phase counts
const rateBacklogAtEnd = published * PER - delivered;
phase = DRAIN;
process.send({ type: 'rate-end' });
await drain();
const missing = published * PER - delivered;

// Every subscriber must have received exactly what was published to its channel.
let wrongCounts = 0;
if (missing === 0 && stats.closedEarly === 0) {
  for (const conn of subs) if (conn.received !== publishedTo[conn.channel]) wrongCounts++;
}
phase = DONE;

const result = {
  setupMs,
  subscribers: N,
  probes: subs.filter((c) => c.probe).length,
  sat: { ...windowOf(sat0, sat1, histSat), backlogAfterDrain: satBacklog },
  rate: {
    ...windowOf(rate0, rate1, histRate),
    offeredPublishes: rateTotal,
    sentPublishes: ratePublished,
    skippedPublishes: rateSkipped,
    backlogAtEnd: rateBacklogAtEnd,
  },
  published,
  acked,
  missing,
  wrongCounts,
  bytesPerDelivery: delivered > 0 ? deliveredBytes / delivered : NaN,
  ...stats,
};
await new Promise((resolve) => process.send({ type: 'result', result }, resolve));
publisher.destroy();
for (const conn of subs) conn.destroy();
process.exit(0);
