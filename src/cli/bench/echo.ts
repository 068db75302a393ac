/**
 * `switchboard bench echo`: C connections to an echo server, each keeping
 * `inflight` messages of `size` bytes outstanding (closed loop: one more
 * for each echo). Echoes on one connection come back in order, so each
 * keeps a ring of send times and an echo's round trip is now minus the
 * oldest. Phases: warm-up (nothing recorded), measure, drain (no more
 * sends; the echoes of messages sent in the window still count for
 * latency, so slow ones are not censored out of p99.9). The method of
 * bench/client.js, on our own client.
 *
 * `--workers W` splits the connections over W worker threads (each its own
 * event loop, so W cores), which start measuring together and whose
 * histograms add up.
 */
import { performance } from 'node:perf_hooks';
import type { WebSocket } from '../../transport/websocket.js';
import { bar, cpuPercent, openWebSocket, sleep, startWorker, type Progress } from './common.js';
import { LatencyHistogram, type HistogramData, type LatencySummary } from './histogram.js';

export interface EchoBenchOptions {
  url: string;
  connections: number;
  /** Message size in bytes. */
  size: number;
  inflight: number;
  durationMs: number;
  warmupMs: number;
  /** Binary frames (default) or text. */
  text: boolean;
  deflate: boolean;
  workers: number;
  timeoutMs: number;
  protocols: string[];
}

/** One worker's (or the only thread's) share. */
export interface EchoPart {
  opened: number;
  failures: Record<string, number>;
  received: number;
  bytes: number;
  mismatched: number;
  closedEarly: number;
  censored: number;
  hist: HistogramData;
  measureMs: number;
  cpuPct: number;
}

export interface EchoBenchResult {
  kind: 'echo';
  url: string;
  connections: number;
  opened: number;
  failures: Record<string, number>;
  size: number;
  inflight: number;
  workers: number;
  durationMs: number;
  /** Echoes received in the measured window. */
  messages: number;
  messagesPerSec: number;
  /** Payload bytes received per second / 1e6. */
  mbPerSec: number;
  latency: LatencySummary & { censored: number };
  /** Echoes whose length was not the message's. */
  mismatched: number;
  closedEarly: number;
  /** The load generator's CPU (all its threads), % of one core. */
  benchCpuPct: number;
}

/** What a worker and the main thread say to each other. */
type ToMain = { type: 'ready' } | { type: 'progress'; received: number } | { type: 'result'; part: EchoPart } | { type: 'error'; message: string };

const WARMUP = 0;
const MEASURE = 1;
const DRAIN = 2;

/**
 * The load of `connections` connections: connect, then `go()` (awaited
 * before the warm-up, so workers start together), warm up, measure, drain.
 */
export async function echoLoad(o: EchoBenchOptions, connections: number, go: () => Promise<void>, onProgress: (received: number) => void): Promise<EchoPart> {
  const payload = Buffer.alloc(o.size, 'x');
  const message: Buffer | string = o.text ? payload.toString() : payload;
  const N = o.inflight;
  const hist = new LatencyHistogram();
  const failures: Record<string, number> = {};
  let phase = WARMUP;
  let measureStart = Infinity;
  let received = 0;
  let bytes = 0;
  let mismatched = 0;
  let closedEarly = 0;
  let pendingTotal = 0;
  let drained: (() => void) | null = null;

  class Conn {
    readonly sentAt = new Float64Array(N);
    head = 0;
    tail = 0;
    pending = 0;
    closed = false;
    constructor(readonly ws: WebSocket) {
      ws.on('message', this.onMessage);
      ws.on('error', () => {});
      ws.once('close', this.onClose);
    }
    send(): void {
      this.sentAt[this.tail] = performance.now();
      this.tail = this.tail + 1 === N ? 0 : this.tail + 1;
      this.pending++;
      pendingTotal++;
      this.ws.send(message, { binary: !o.text });
    }
    readonly onMessage = (data: Buffer | string): void => {
      const now = performance.now();
      if (this.pending === 0) return;
      const sent = this.sentAt[this.head]!;
      this.head = this.head + 1 === N ? 0 : this.head + 1;
      this.pending--;
      pendingTotal--;
      const len = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
      if (len !== o.size) mismatched++;
      if (phase === MEASURE) {
        received++;
        bytes += len;
        if (sent >= measureStart) hist.recordMs(now - sent);
        this.send();
      } else if (phase === WARMUP) {
        this.send();
      } else {
        if (sent >= measureStart) hist.recordMs(now - sent);
        if (pendingTotal === 0) drained?.();
      }
    };
    readonly onClose = (): void => {
      this.closed = true;
      pendingTotal -= this.pending;
      this.pending = 0;
      if (phase !== DRAIN) closedEarly++;
      else if (pendingTotal === 0) drained?.();
    };
  }

  // Connect, 64 handshakes at a time.
  const conns: Conn[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(64, connections) }, async () => {
      while (next < connections) {
        next++;
        const r = await openWebSocket(o.url, o.protocols, { perMessageDeflate: o.deflate, handshakeTimeout: o.timeoutMs });
        if (r.ws) conns.push(new Conn(r.ws));
        else failures[r.error] = (failures[r.error] ?? 0) + 1;
      }
    }),
  );
  await go();
  const ticker = setInterval(() => onProgress(received), 250);
  for (const c of conns) for (let k = 0; k < N; k++) c.send();
  await sleep(o.warmupMs);
  phase = MEASURE;
  const cpu0 = process.cpuUsage();
  measureStart = performance.now();
  await sleep(o.durationMs);
  phase = DRAIN;
  const measureMs = performance.now() - measureStart;
  const cpuPct = cpuPercent(cpu0, measureMs);
  clearInterval(ticker);
  onProgress(received);
  if (pendingTotal > 0) {
    await Promise.race([new Promise<void>((resolve) => (drained = resolve)), sleep(Math.min(5000, o.timeoutMs))]);
  }
  // Messages sent in the window whose echo never came.
  let censored = 0;
  for (const c of conns) {
    for (let k = 0, j = c.head; k < c.pending; k++, j = j + 1 === N ? 0 : j + 1) if (c.sentAt[j]! >= measureStart) censored++;
  }
  for (const c of conns) c.ws.close(1000);
  await Promise.race([Promise.all(conns.map((c) => (c.closed ? null : new Promise((r) => c.ws.once('close', r))))), sleep(2000)]);
  for (const c of conns) if (!c.closed) c.ws.terminate();
  return { opened: conns.length, failures, received, bytes, mismatched, closedEarly, censored, hist: hist.data(), measureMs, cpuPct };
}

export async function runEchoBench(o: EchoBenchOptions, progress: Progress): Promise<EchoBenchResult> {
  const total = o.warmupMs + o.durationMs;
  let started = 0;
  const received: number[] = new Array(o.workers).fill(0);
  progress.start(() => {
    const n = received.reduce((a, b) => a + b, 0);
    const elapsed = started ? performance.now() - started : 0;
    return `echo ${bar(elapsed, total)} ${n} echoes${elapsed > o.warmupMs ? `, ${Math.round((n / (elapsed - o.warmupMs)) * 1000)} msgs/s` : ''}`;
  });
  let parts: EchoPart[];
  try {
    if (o.workers <= 1) {
      parts = [
        await echoLoad(
          o,
          o.connections,
          async () => void (started = performance.now()),
          (n) => (received[0] = n),
        ),
      ];
    } else {
      parts = await inWorkers(o, received, () => (started = performance.now()));
    }
  } finally {
    progress.stop();
  }
  const hist = new LatencyHistogram();
  for (const p of parts) hist.add(p.hist);
  const messages = parts.reduce((a, p) => a + p.received, 0);
  const bytes = parts.reduce((a, p) => a + p.bytes, 0);
  const measureMs = Math.max(...parts.map((p) => p.measureMs));
  const failures: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.failures)) failures[k] = (failures[k] ?? 0) + v;
  return {
    kind: 'echo',
    url: o.url,
    connections: o.connections,
    opened: parts.reduce((a, p) => a + p.opened, 0),
    failures,
    size: o.size,
    inflight: o.inflight,
    workers: o.workers,
    durationMs: measureMs,
    messages,
    messagesPerSec: measureMs > 0 ? (messages / measureMs) * 1000 : 0,
    mbPerSec: measureMs > 0 ? bytes / measureMs / 1000 : 0,
    latency: { ...hist.summary(), censored: parts.reduce((a, p) => a + p.censored, 0) },
    mismatched: parts.reduce((a, p) => a + p.mismatched, 0),
    closedEarly: parts.reduce((a, p) => a + p.closedEarly, 0),
    // process.cpuUsage() counts every thread: each worker measured the whole process over the window.
    benchCpuPct: Math.max(...parts.map((p) => p.cpuPct)),
  };
}

/** The connections spread over `o.workers` threads; they start the warm-up together once all connected. */
async function inWorkers(o: EchoBenchOptions, received: number[], onStart: () => void): Promise<EchoPart[]> {
  const shares = Array.from({ length: o.workers }, (_, i) => Math.floor(o.connections / o.workers) + (i < o.connections % o.workers ? 1 : 0));
  const workers = shares.map((connections) => startWorker('echo-worker', { options: o, connections }));
  let ready = 0;
  try {
    return await Promise.all(
      workers.map(
        (w, i) =>
          new Promise<EchoPart>((resolve, reject) => {
            w.on('message', (m: ToMain) => {
              if (m.type === 'ready' && ++ready === workers.length) {
                onStart();
                for (const x of workers) x.postMessage('go');
              } else if (m.type === 'progress') received[i] = m.received;
              else if (m.type === 'result') resolve(m.part);
              else if (m.type === 'error') reject(new Error(`worker ${i}: ${m.message}`));
            });
            w.once('error', (err) => reject(new Error(`worker ${i}: ${err.message}`)));
            w.once('exit', (code) => reject(new Error(`worker ${i} exited (${code}) without a result`)));
          }),
      ),
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

export type { ToMain as EchoWorkerMessage };
