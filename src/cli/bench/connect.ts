/**
 * `switchboard bench connect`: open N WebSockets, at most C handshakes at a
 * time, hold them, close them. Reports handshakes/s over the opening phase,
 * handshake latency, failures by reason, connections the server dropped
 * while held, and — with `--pid` — the server's RSS before, at its peak
 * while the connections are held, and after they closed.
 */
import { performance } from 'node:perf_hooks';
import type { WebSocket } from '../../transport/websocket.js';
import { cpuPercent, openWebSocket, readRssKiB, sleep, type Progress, bar } from './common.js';
import { LatencyHistogram, type LatencySummary } from './histogram.js';

export interface ConnectBenchOptions {
  url: string;
  connections: number;
  concurrency: number;
  holdMs: number;
  /** Whole run bound: opening stops (the rest count as not attempted) past it. */
  durationMs: number;
  pid?: number;
  protocols: string[];
  deflate: boolean;
  timeoutMs: number;
}

export interface ConnectBenchResult {
  kind: 'connect';
  url: string;
  connections: number;
  concurrency: number;
  attempted: number;
  opened: number;
  failed: number;
  /** Failure reason → count. */
  failures: Record<string, number>;
  /** Opened / the time from the first attempt to the last handshake's end. */
  handshakesPerSec: number;
  openingMs: number;
  handshake: LatencySummary;
  heldMs: number;
  /** Open connections the server closed while they were held (close code → count). */
  droppedWhileHeld: Record<string, number>;
  /** The server's memory, with --pid. */
  server?: { pid: number; rssBeforeKiB: number; rssPeakKiB: number; rssAfterKiB: number; perConnectionKiB: number };
  /** This process's CPU while opening, % of one core. */
  benchCpuPct: number;
}

export async function runConnectBench(o: ConnectBenchOptions, progress: Progress): Promise<ConnectBenchResult> {
  const rss = (): number => {
    const v = readRssKiB(o.pid!);
    if (v instanceof Error) throw v;
    return v;
  };
  const rssBefore = o.pid !== undefined ? rss() : 0;
  let rssPeak = rssBefore;
  const hist = new LatencyHistogram();
  const failures: Record<string, number> = {};
  const dropped: Record<string, number> = {};
  const open = new Set<WebSocket>();
  let attempted = 0;
  let opened = 0;
  let failed = 0;
  let holding = false;
  const deadline = performance.now() + o.durationMs;

  progress.start(() => `connect ${bar(opened + failed, o.connections)} opened ${opened}, failed ${failed}${holding ? `, holding ${open.size}` : ''}`);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let lastEnd = t0;
  const worker = async (): Promise<void> => {
    while (attempted < o.connections && performance.now() < deadline) {
      attempted++;
      const t = performance.now();
      const r = await openWebSocket(o.url, o.protocols, { perMessageDeflate: o.deflate, handshakeTimeout: o.timeoutMs });
      lastEnd = performance.now();
      if (r.ws) {
        hist.recordMs(lastEnd - t);
        opened++;
        const ws = r.ws;
        open.add(ws);
        ws.on('error', () => {});
        ws.once('close', (code: number) => {
          if (open.delete(ws)) dropped[code] = (dropped[code] ?? 0) + 1;
        });
      } else {
        failed++;
        failures[r.error] = (failures[r.error] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.connections) }, worker));
  const openingMs = lastEnd - t0;
  const benchCpuPct = cpuPercent(cpu0, performance.now() - t0);

  // Hold (within the run's bound), sampling the server's memory.
  holding = true;
  const holdUntil = Math.min(performance.now() + o.holdMs, Math.max(deadline, performance.now()));
  const held0 = performance.now();
  while (performance.now() < holdUntil) {
    if (o.pid !== undefined) rssPeak = Math.max(rssPeak, rss());
    await sleep(Math.min(250, Math.max(0, holdUntil - performance.now())));
  }
  if (o.pid !== undefined) rssPeak = Math.max(rssPeak, rss());
  const heldMs = performance.now() - held0;
  const droppedWhileHeld = { ...dropped };

  // Close: a clean close each, bounded; what is left is cut.
  const closing = [...open];
  open.clear();
  await Promise.race([
    Promise.all(closing.map((ws) => new Promise<void>((resolve) => (ws.readyState === ws.CLOSED ? resolve() : (ws.once('close', () => resolve()), ws.close(1000)))))),
    sleep(5000),
  ]);
  for (const ws of closing) if (ws.readyState !== ws.CLOSED) ws.terminate();
  progress.stop();
  let server: ConnectBenchResult['server'];
  if (o.pid !== undefined) {
    await sleep(500); // the server frees the connections after their close
    const rssAfter = rss();
    server = { pid: o.pid, rssBeforeKiB: rssBefore, rssPeakKiB: rssPeak, rssAfterKiB: rssAfter, perConnectionKiB: opened > 0 ? (rssPeak - rssBefore) / opened : NaN };
  }
  return {
    kind: 'connect',
    url: o.url,
    connections: o.connections,
    concurrency: o.concurrency,
    attempted,
    opened,
    failed,
    failures,
    handshakesPerSec: openingMs > 0 ? (opened / openingMs) * 1000 : 0,
    openingMs,
    handshake: hist.summary(),
    heldMs,
    droppedWhileHeld,
    ...(server ? { server } : {}),
    benchCpuPct,
  };
}
