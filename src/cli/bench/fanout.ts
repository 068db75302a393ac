/**
 * `switchboard bench fanout`: N subscribers on one channel and publishers
 * that publish M publications at a fixed rate, all speaking the realtime
 * protocol (docs/protocol.md) on our WebSocket, in this one process so
 * that a publication's stamp and its delivery time come from the same
 * clock.
 *
 * Not through the SDK on purpose: the SDK drops repeats and resyncs gaps,
 * which would hide exactly what this counts. Each subscriber keeps a count
 * per offset (from the position its `sub` was confirmed at): an acked
 * offset it never got is lost, one it got twice is duplicated.
 *
 * Publishers: the server announces each connection's message budget in the
 * `auth` reply (`limits.messageRate`); the load is spread over enough
 * publisher connections to stay within it, so the server's rate limit is
 * not what gets measured.
 */
import { performance } from 'node:perf_hooks';
import { DEFAULT_MESSAGE_RATE, DEFAULT_SUBPROTOCOL } from '../../wire/messages.js';
import type { WebSocket } from '../../transport/websocket.js';
import { bar, cpuPercent, openWebSocket, sleep, startWorker, type Progress } from './common.js';
import { LatencyHistogram, type HistogramData, type LatencySummary } from './histogram.js';

export interface FanoutBenchOptions {
  url: string;
  channel: string;
  subscribers: number;
  publications: number;
  /** Publications per second. */
  rate: number;
  /** Publisher connections; 0: as many as the announced rate budget needs. */
  publishers: number;
  /** Bound of the publishing phase (publications not sent by then are not sent). */
  durationMs: number;
  /** How long to wait for the last deliveries after the last ack. */
  drainMs: number;
  /** Bound of connecting and subscribing everyone. */
  setupMs: number;
  /** Worker threads the subscribers are spread over (1: this thread). */
  workers: number;
  token: string | undefined;
  timeoutMs: number;
}

export interface FanoutBenchResult {
  kind: 'fanout';
  url: string;
  channel: string;
  subscribers: number;
  workers: number;
  /** Subscribers that could not connect or subscribe (reason → count). */
  failures: Record<string, number>;
  publishers: number;
  setupMs: number;
  publications: { requested: number; sent: number; acked: number; refused: number; firstRefusal?: string };
  rate: { requestedPerSec: number; achievedPerSec: number };
  deliveries: { expected: number; received: number; perSec: number };
  /** Acked publications a subscriber never received (summed over subscribers). */
  lost: number;
  /** Receipts of an offset a subscriber had already received. */
  duplicated: number;
  /** Deliveries with an offset outside what was published here, or of another epoch. */
  unexpected: number;
  /** Subscribers the server closed during the run (close code → count). */
  dropped: Record<string, number>;
  latency: LatencySummary;
  durationMs: number;
  benchCpuPct: number;
}

interface Subscriber {
  ws: WebSocket;
  base: number;
  epoch: string;
  seen: Uint8Array;
  ready: boolean;
  closed: boolean;
}

/**
 * A connection that spoke `auth` (when there is a token): its rate budget
 * from the reply (the default for anonymous connections, which get none).
 */
async function openClient(o: FanoutBenchOptions): Promise<{ ws: WebSocket; perSecond: number } | { error: string; retryAfterS?: number }> {
  const r = await openWebSocket(o.url, [DEFAULT_SUBPROTOCOL], { perMessageDeflate: false, handshakeTimeout: o.timeoutMs });
  if (!r.ws) return r;
  const ws = r.ws;
  ws.on('error', () => {});
  if (o.token === undefined) return { ws, perSecond: DEFAULT_MESSAGE_RATE.perSecond };
  const reply = await request(ws, { op: 'auth', id: 1, token: o.token }, o.timeoutMs);
  if ('error' in reply) {
    ws.terminate();
    return { error: `auth: ${reply.error}` };
  }
  const perSecond = Number((reply.ok['limits'] as { messageRate?: { perSecond?: unknown } } | undefined)?.messageRate?.perSecond);
  return { ws, perSecond: perSecond > 0 ? perSecond : DEFAULT_MESSAGE_RATE.perSecond };
}

/** Send one request and wait for its `ok` (or `error`, or the close). Only for setup, before the message listeners. */
function request(ws: WebSocket, message: Record<string, unknown>, timeoutMs: number): Promise<{ ok: Record<string, unknown> } | { error: string }> {
  return new Promise((resolve) => {
    const done = (r: { ok: Record<string, unknown> } | { error: string }): void => {
      clearTimeout(timer);
      ws.removeListener('message', onMessage);
      ws.removeListener('close', onClose);
      resolve(r);
    };
    const onMessage = (data: Buffer): void => {
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(String(data)) as Record<string, unknown>;
      } catch {
        return;
      }
      if (m['id'] !== message['id']) return;
      if (m['op'] === 'ok') done({ ok: m });
      else if (m['op'] === 'error') done({ error: `${String(m['code'])} ${String(m['message'])}` });
    };
    const onClose = (code: number, reason: Buffer): void => done({ error: `closed ${code}${reason.length ? ` ${reason}` : ''}` });
    const timer = setTimeout(() => done({ error: `no answer to ${String(message['op'])} within ${timeoutMs / 1000} s` }), timeoutMs);
    ws.on('message', onMessage);
    ws.once('close', onClose);
    ws.send(JSON.stringify(message));
  });
}

/** Open a connection, retrying refusals the server asks to retry (429/503) until `deadline`. */
async function openRetrying(o: FanoutBenchOptions, deadline: number): Promise<{ ws: WebSocket; perSecond: number } | { error: string }> {
  for (;;) {
    const r = await openClient(o);
    if ('ws' in r) return r;
    const retryable = r.error.startsWith('HTTP 429') || r.error.startsWith('HTTP 503');
    const wait = (('retryAfterS' in r && r.retryAfterS) || 1) * 1000;
    if (!retryable || performance.now() + wait > deadline) return r;
    await sleep(wait);
  }
}

const MSG_HEAD = Buffer.from('{"op":"msg",');
const OFFSET_KEY = Buffer.from('"offset":');
const EPOCH_KEY = Buffer.from('"epoch":"');
const STAMP_KEY = Buffer.from('"data":{"t":');

/**
 * Offset, epoch and stamp of a `msg` push, read off the bytes without
 * parsing the whole message (the load generator must cost less per
 * delivery than the server); a message of another shape goes through
 * JSON.parse. Null for anything but a `msg`.
 */
function readDelivery(data: Buffer): { offset: number; epoch: string; t: number } | null {
  if (data.length > MSG_HEAD.length && data.compare(MSG_HEAD, 0, MSG_HEAD.length, 0, MSG_HEAD.length) === 0) {
    const o = data.indexOf(OFFSET_KEY);
    const e = data.indexOf(EPOCH_KEY);
    const t = data.indexOf(STAMP_KEY);
    if (o !== -1 && e !== -1) {
      let offset = 0;
      for (let k = o + OFFSET_KEY.length; k < data.length && data[k]! >= 0x30 && data[k]! <= 0x39; k++) offset = offset * 10 + data[k]! - 0x30;
      const eStart = e + EPOCH_KEY.length;
      const epoch = data.toString('latin1', eStart, data.indexOf(0x22, eStart));
      const stamp = t === -1 ? NaN : parseFloat(data.toString('latin1', t + STAMP_KEY.length, t + STAMP_KEY.length + 24));
      return { offset, epoch, t: stamp };
    }
  }
  let m: { op?: unknown; offset?: unknown; epoch?: unknown; data?: { t?: unknown } };
  try {
    m = JSON.parse(String(data)) as typeof m;
  } catch {
    return null;
  }
  if (m.op !== 'msg') return null;
  return { offset: Number(m.offset), epoch: String(m.epoch), t: typeof m.data?.t === 'number' ? m.data.t : NaN };
}

/** What a group of subscribers reports at the end (one per worker thread, or the only one). */
export interface SubscriberReport {
  subscribed: number;
  failures: Record<string, number>;
  received: number;
  duplicated: number;
  unexpected: number;
  lost: number;
  dropped: Record<string, number>;
  hist: HistogramData;
  lastDeliveryAt: number;
  cpuPct: number;
}

/**
 * A group of subscribers on the channel: opened and subscribed by
 * `open()`, counting deliveries by offset, then `finish()` with the acked
 * offsets waits (bounded) for every delivery and says what was lost. Runs
 * in the main thread or in a worker thread (`--workers`).
 */
export class SubscriberGroup {
  readonly hist = new LatencyHistogram();
  readonly failures: Record<string, number> = {};
  readonly dropped: Record<string, number> = {};
  readonly subs: Subscriber[] = [];
  received = 0;
  duplicated = 0;
  unexpected = 0;
  /** Wall-clock ms (timeOrigin-based, comparable across threads) of the last delivery. */
  lastDeliveryAt = 0;
  #done = false;
  readonly #cpu0 = process.cpuUsage();
  readonly #t0 = performance.now();

  constructor(private readonly o: FanoutBenchOptions) {}

  /** Open and subscribe `count` subscribers, 32 at a time, before `deadline` (performance.now()). */
  async open(count: number, deadline: number): Promise<void> {
    let started = 0;
    const one = async (): Promise<void> => {
      while (started < count && performance.now() < deadline) {
        started++;
        const c = await openRetrying(this.o, deadline);
        if ('error' in c) {
          this.#fail(c.error);
          continue;
        }
        const reply = await request(c.ws, { op: 'sub', id: 2, channel: this.o.channel }, this.o.timeoutMs);
        if ('error' in reply) {
          this.#fail(`sub: ${reply.error}`);
          c.ws.terminate();
          continue;
        }
        const position = reply.ok['position'] as { offset: number; epoch: string } | undefined;
        const sub: Subscriber = { ws: c.ws, base: position?.offset ?? 0, epoch: position?.epoch ?? '', seen: new Uint8Array(this.o.publications), ready: true, closed: false };
        c.ws.on('message', (data: Buffer) => this.#onDelivery(sub, data));
        c.ws.once('close', (code: number) => {
          sub.closed = true;
          if (!this.#done) this.dropped[code] = (this.dropped[code] ?? 0) + 1;
        });
        this.subs.push(sub);
      }
    };
    await Promise.all(Array.from({ length: Math.min(32, count) }, one));
  }

  #fail(reason: string): void {
    this.failures[reason] = (this.failures[reason] ?? 0) + 1;
  }

  #onDelivery(sub: Subscriber, data: Buffer): void {
    const now = performance.timeOrigin + performance.now();
    const m = readDelivery(data);
    if (m === null) {
      if (data.length < 32 && String(data) === '{"op":"ping"}') sub.ws.send('{"op":"pong"}');
      return;
    }
    const i = m.offset - sub.base - 1;
    if (m.epoch !== sub.epoch || i < 0 || i >= this.o.publications) {
      this.unexpected++;
      return;
    }
    if (sub.seen[i]! > 0) {
      this.duplicated++;
      return;
    }
    sub.seen[i] = 1;
    this.received++;
    this.lastDeliveryAt = now;
    if (m.t === m.t) this.hist.recordMs(now - m.t);
  }

  /** Wait (at most `drainMs`) for every delivery of the acked offsets, count the lost ones, close everything. */
  async finish(ackedOffsets: readonly number[], drainMs: number): Promise<SubscriberReport> {
    const deadline = performance.now() + drainMs;
    const live = (): number => this.subs.filter((s) => !s.closed).length;
    while (this.received < ackedOffsets.length * live() && performance.now() < deadline) await sleep(5);
    const cpuPct = cpuPercent(this.#cpu0, performance.now() - this.#t0);
    this.#done = true;
    let lost = 0;
    for (const s of this.subs) {
      for (const offset of ackedOffsets) {
        const i = offset - s.base - 1;
        if (!(i >= 0 && i < this.o.publications) || s.seen[i] === 0) lost++;
      }
    }
    await closeAll(this.subs.map((s) => s.ws));
    return {
      subscribed: this.subs.length,
      failures: this.failures,
      received: this.received,
      duplicated: this.duplicated,
      unexpected: this.unexpected,
      lost,
      dropped: this.dropped,
      hist: this.hist.data(),
      lastDeliveryAt: this.lastDeliveryAt,
      cpuPct,
    };
  }
}

/** Close politely (bounded), then cut what is left. */
async function closeAll(sockets: WebSocket[]): Promise<void> {
  for (const ws of sockets) ws.close(1000);
  await Promise.race([Promise.all(sockets.map((ws) => (ws.readyState === ws.CLOSED ? null : new Promise((r) => ws.once('close', r))))), sleep(2000)]);
  for (const ws of sockets) if (ws.readyState !== ws.CLOSED) ws.terminate();
}

/** What a fan-out worker thread and the main thread say to each other. */
export type FanoutToMain =
  | { type: 'ready'; subscribed: number }
  | { type: 'progress'; received: number; subscribed: number }
  | { type: 'result'; report: SubscriberReport }
  | { type: 'error'; message: string };
export type FanoutToWorker = { type: 'finish'; ackedOffsets: number[]; drainMs: number };

/** The subscribers' side: in this thread, or spread over `o.workers` worker threads. */
interface SubscriberSide {
  /** Subscribed so far, and deliveries counted so far (for the progress line). */
  counts(): { subscribed: number; received: number };
  finish(ackedOffsets: number[], drainMs: number): Promise<SubscriberReport[]>;
}

async function openSubscribers(o: FanoutBenchOptions, deadline: number): Promise<SubscriberSide> {
  if (o.workers <= 1) {
    const group = new SubscriberGroup(o);
    await group.open(o.subscribers, deadline);
    return {
      counts: () => ({ subscribed: group.subs.length, received: group.received }),
      finish: async (acked, drainMs) => [await group.finish(acked, drainMs)],
    };
  }
  const shares = Array.from({ length: o.workers }, (_, i) => Math.floor(o.subscribers / o.workers) + (i < o.subscribers % o.workers ? 1 : 0));
  const counts = shares.map(() => ({ subscribed: 0, received: 0 }));
  const workers = shares.map((count) => startWorker('fanout-worker', { options: o, count, deadlineInMs: deadline - performance.now() }));
  const results = workers.map(
    (w, i) =>
      new Promise<SubscriberReport>((resolve, reject) => {
        w.on('message', (m: FanoutToMain) => {
          if (m.type === 'progress' || m.type === 'ready') Object.assign(counts[i]!, m.type === 'ready' ? { subscribed: m.subscribed } : m);
          if (m.type === 'result') resolve(m.report);
          if (m.type === 'error') reject(new Error(`worker ${i}: ${m.message}`));
        });
        w.once('error', (err) => reject(new Error(`worker ${i}: ${err.message}`)));
        w.once('exit', (code) => reject(new Error(`worker ${i} exited (${code}) without a result`)));
      }),
  );
  // Every worker subscribed (or failed) before anything is published.
  await Promise.all(workers.map((w) => new Promise<void>((resolve) => w.on('message', (m: FanoutToMain) => m.type === 'ready' && resolve()))).map((p, i) => Promise.race([p, results[i]!.then(() => {})])));
  return {
    counts: () => counts.reduce((a, c) => ({ subscribed: a.subscribed + c.subscribed, received: a.received + c.received }), { subscribed: 0, received: 0 }),
    async finish(ackedOffsets, drainMs) {
      for (const w of workers) w.postMessage({ type: 'finish', ackedOffsets, drainMs } satisfies FanoutToWorker);
      try {
        return await Promise.all(results);
      } finally {
        await Promise.all(workers.map((w) => w.terminate()));
      }
    },
  };
}

export async function runFanoutBench(o: FanoutBenchOptions, progress: Progress): Promise<FanoutBenchResult> {
  const M = o.publications;
  let sent = 0;
  let acked = 0;
  let refused = 0;
  let firstRefusal: string | undefined;
  let side: SubscriberSide | null = null;

  progress.start(() => {
    if (!side) return 'fanout: connecting and subscribing';
    const { subscribed, received } = side.counts();
    return `fanout ${bar(acked, M)} published ${acked}, delivered ${received} of ${acked * subscribed}`;
  });
  const t0 = performance.now();
  const setupDeadline = t0 + o.setupMs;
  const cpu0 = process.cpuUsage();
  side = await openSubscribers(o, setupDeadline);
  const subscribed = side.counts().subscribed;
  // Publishers: enough to keep each at half its announced budget (room for catch-up bursts after a stall).
  const pubs: Array<{ ws: WebSocket; perSecond: number }> = [];
  const failures: Record<string, number> = {};
  const first = subscribed > 0 ? await openRetrying(o, setupDeadline) : { error: 'no subscriber' };
  if ('ws' in first) {
    pubs.push(first);
    const wanted = o.publishers > 0 ? o.publishers : Math.max(1, Math.ceil(o.rate / (first.perSecond * 0.5)));
    while (pubs.length < wanted) {
      const c = await openRetrying(o, setupDeadline);
      if ('error' in c) {
        failures[`publisher: ${c.error}`] = (failures[`publisher: ${c.error}`] ?? 0) + 1;
        break;
      }
      pubs.push(c);
    }
  } else if (subscribed > 0) {
    failures[`publisher: ${first.error}`] = 1;
  }
  const setupMs = performance.now() - t0;

  // Publish at the rate: publication k is due at start + k / rate, round-robin over the publishers.
  const ackWaiters = new Map<number, true>();
  const ackedOffsets: number[] = [];
  let allAcked: (() => void) | null = null;
  for (const p of pubs) {
    p.ws.on('message', (data: Buffer) => {
      const m = JSON.parse(String(data)) as { op: string; id?: number; code?: number; message?: string; offset?: number };
      if (m.op === 'ping') {
        p.ws.send('{"op":"pong"}');
        return;
      }
      if (typeof m.id !== 'number' || !ackWaiters.delete(m.id)) return;
      if (m.op === 'ok') {
        acked++;
        ackedOffsets.push(Number(m.offset));
      } else {
        refused++;
        firstRefusal ??= `${m.code} ${m.message}`;
      }
      if (ackWaiters.size === 0) allAcked?.();
    });
  }
  const publishStart = performance.now();
  const publishStartWall = performance.timeOrigin + publishStart;
  const publishDeadline = publishStart + o.durationMs;
  if (pubs.length > 0) {
    while (sent < M && performance.now() < publishDeadline) {
      const due = Math.min(M, Math.floor(((performance.now() - publishStart) * o.rate) / 1000) + 1);
      while (sent < due) {
        const id = 100 + sent;
        ackWaiters.set(id, true);
        const t = performance.timeOrigin + performance.now();
        pubs[sent % pubs.length]!.ws.send(`{"op":"pub","id":${id},"channel":${JSON.stringify(o.channel)},"data":{"t":${t},"i":${sent}}}`);
        sent++;
      }
      await sleep(Math.max(1, Math.min(50, publishStart + ((sent * 1000) / o.rate) - performance.now())));
    }
  }
  const publishMs = performance.now() - publishStart;

  // Drain: every ack, then every delivery of what was acked (bounded).
  if (ackWaiters.size > 0) await Promise.race([new Promise<void>((resolve) => (allAcked = resolve)), sleep(o.drainMs)]);
  const reports = await side.finish(ackedOffsets, o.drainMs);
  await closeAll(pubs.map((p) => p.ws));
  // process.cpuUsage() counts every thread of the process, the workers' too.
  const benchCpuPct = cpuPercent(cpu0, performance.now() - t0);
  progress.stop();

  const hist = new LatencyHistogram();
  const dropped: Record<string, number> = {};
  for (const r of reports) {
    hist.add(r.hist);
    for (const [k, v] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.dropped)) dropped[k] = (dropped[k] ?? 0) + v;
  }
  const sum = (f: (r: SubscriberReport) => number): number => reports.reduce((a, r) => a + f(r), 0);
  const received = sum((r) => r.received);
  const lastDeliveryAt = Math.max(...reports.map((r) => r.lastDeliveryAt));
  const deliverySpan = Math.max(1, (lastDeliveryAt > 0 ? lastDeliveryAt : performance.timeOrigin + performance.now()) - publishStartWall);
  return {
    kind: 'fanout',
    url: o.url,
    channel: o.channel,
    subscribers: subscribed,
    workers: o.workers,
    failures,
    publishers: pubs.length,
    setupMs,
    publications: { requested: M, sent, acked, refused, ...(firstRefusal ? { firstRefusal } : {}) },
    rate: { requestedPerSec: o.rate, achievedPerSec: publishMs > 0 ? (sent / publishMs) * 1000 : 0 },
    deliveries: { expected: acked * subscribed, received, perSec: (received / deliverySpan) * 1000 },
    lost: sum((r) => r.lost),
    duplicated: sum((r) => r.duplicated),
    unexpected: sum((r) => r.unexpected),
    dropped,
    latency: hist.summary(),
    durationMs: publishMs,
    benchCpuPct,
  };
}
