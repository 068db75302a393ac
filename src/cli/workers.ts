/**
 * `switchboard serve --workers N` (config `workers`): the primary process
 * forks N workers with `node:cluster`; they share the listening port (the
 * primary accepts and hands connections round-robin on Linux) and each is
 * a full node on the configured broker (Redis or NATS; the configuration
 * refuses the memory broker with N > 1). The primary serves no client.
 *
 * - A worker that dies is started again after a backoff (100 ms, doubling,
 *   at most 10 s), with a log line; its clients reconnect — to the other
 *   workers, through the shared port — and resume from their positions.
 *   Five deaths of one worker within a minute are a crash loop: everything
 *   stops with exit code 1 and a message saying so.
 * - A worker that exits before it ever listened at the start (a port in use,
 *   a broker that cannot be reached) stops the whole server: every worker
 *   would fail the same way.
 * - SIGTERM or SIGINT to the primary: every worker gets SIGTERM and shuts
 *   down gracefully (its clients get `closing` with a reconnect hint); the
 *   primary exits once all have exited (0 when all stopped cleanly), and
 *   SIGKILLs those still there `shutdown.timeoutMs` + 5 s later.
 *
 * Workers tell the primary when they listen (`{type: 'listening', port,
 * node}`); the primary prints the banner once all have.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { Logger } from '../realtime/transport.js';

export interface WorkerPoolOptions {
  /** Number of workers. */
  count: number;
  /** The `serve` arguments, passed to each worker as they are. */
  args: string[];
  /** More environment for the workers (the development secret they must share). */
  env?: Record<string, string>;
  /** `shutdown.timeoutMs`: how long workers take to stop gracefully. */
  shutdownTimeoutMs: number;
  /** `log.level`. */
  logLevel: string;
  /** The banner, once every worker listens: given the port and the workers' node ids. */
  banner(port: number, nodes: string[]): string;
}

/** What a worker sends the primary once it listens. */
export interface WorkerListening {
  type: 'listening';
  port: number;
  /** The worker's node id (its broker's, the first part of its fallback session ids). */
  node: string;
}

/** Deaths of one worker within {@link CRASH_WINDOW_MS} that count as a crash loop. */
export const CRASH_LOOP_DEATHS = 5;
export const CRASH_WINDOW_MS = 60_000;
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;

/** The environment variable that tells a worker its number (1-based). */
export const WORKER_INDEX_ENV = 'SWITCHBOARD_WORKER_INDEX';

interface Slot {
  index: number;
  worker: Worker | null;
  /** Listened at least once (the initial start is over for it). */
  started: boolean;
  node: string;
  /** Times of recent deaths. */
  deaths: number[];
  timer: NodeJS.Timeout | null;
}

/** This process's worker number under `serve --workers`, or 0 outside a pool. */
export function workerIndex(): number {
  if (!cluster.isWorker) return 0;
  const n = Number(process.env[WORKER_INDEX_ENV]);
  return Number.isSafeInteger(n) && n > 0 ? n : cluster.worker?.id ?? 0;
}

/** Tell the primary that this worker listens. */
export function reportListening(port: number, node: string): void {
  if (cluster.isWorker && process.send) process.send({ type: 'listening', port, node } satisfies WorkerListening);
}

/** The script a worker runs: worker.ts next to this module (worker.js once built). */
function workerScript(): string {
  const self = fileURLToPath(import.meta.url);
  return self.replace(/workers\.(ts|js)$/, 'worker.$1');
}

/** The primary's node options for the workers: its own, without a script given with -e / -p. */
function workerExecArgv(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') {
      i++;
      continue;
    }
    if (a.startsWith('--eval=') || a.startsWith('--print=')) continue;
    out.push(a);
  }
  return out;
}

/** Run the pool until SIGTERM/SIGINT (exit code 0 when every worker stopped cleanly) or a fatal failure (1). */
export function runWorkers(options: WorkerPoolOptions): Promise<number> {
  const logger = pino({ level: options.logLevel, base: { service: 'switchboard', role: 'primary' }, timestamp: pino.stdTimeFunctions.isoTime }) as unknown as Logger;
  cluster.setupPrimary({ exec: workerScript(), execArgv: workerExecArgv(), args: options.args });
  const slots: Slot[] = Array.from({ length: options.count }, (_, i) => ({ index: i + 1, worker: null, started: false, node: '', deaths: [], timer: null }));
  let stopping = false;
  let failed = false;
  let bannerShown = false;
  let port = 0;
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));

  const fork = (slot: Slot): void => {
    slot.timer = null;
    if (stopping) return;
    const worker = cluster.fork({ ...options.env, [WORKER_INDEX_ENV]: String(slot.index) });
    slot.worker = worker;
    worker.on('message', (m: Partial<WorkerListening>) => {
      if (m?.type !== 'listening') return;
      const restarted = slot.started;
      slot.started = true;
      slot.node = String(m.node ?? '');
      port = Number(m.port);
      if (restarted) logger.info({ worker: slot.index, pid: worker.process.pid, node: slot.node }, 'worker restarted and listening');
      if (!bannerShown && slots.every((s) => s.started)) {
        bannerShown = true;
        logger.info({ workers: options.count, port, pids: slots.map((s) => s.worker?.process.pid) }, 'all workers listening');
        process.stderr.write(options.banner(port, slots.map((s) => s.node)));
      }
    });
    worker.on('exit', (code, signal) => onExit(slot, worker, code, signal));
  };

  const stopAll = (why: string, code: number): void => {
    if (stopping) return;
    stopping = true;
    if (code !== 0) failed = true;
    logger.info({ why }, 'stopping workers');
    for (const slot of slots) {
      if (slot.timer) clearTimeout(slot.timer);
      slot.timer = null;
      slot.worker?.process.kill('SIGTERM');
    }
    const killer = setTimeout(() => {
      for (const slot of slots) {
        if (slot.worker && slot.worker.process.exitCode === null && slot.worker.process.signalCode === null) {
          logger.warn({ worker: slot.index, pid: slot.worker.process.pid }, 'worker did not stop in time: SIGKILL');
          slot.worker.process.kill('SIGKILL');
        }
      }
    }, options.shutdownTimeoutMs + 5000);
    killer.unref();
    checkAllExited();
  };

  const checkAllExited = (): void => {
    if (!stopping || slots.some((s) => s.worker !== null)) return;
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.removeListener(sig, onSignal);
    logger.info({}, 'all workers exited');
    finish(failed ? 1 : 0);
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    if (slot.worker === worker) slot.worker = null;
    if (stopping) {
      if (code !== 0 && code !== null) failed = true;
      logger.info({ worker: slot.index, pid: worker.process.pid, code, signal }, 'worker exited');
      checkAllExited();
      return;
    }
    if (!slot.started) {
      // At the start: the others would fail the same way (port, broker, configuration).
      logger.error({ worker: slot.index, pid: worker.process.pid, code, signal }, 'worker exited before it listened: stopping (see its error above)');
      process.stderr.write(`switchboard serve: worker ${slot.index} exited (${signal ?? `code ${code}`}) before it listened; stopping every worker\n`);
      stopAll('a worker failed to start', 1);
      return;
    }
    const now = Date.now();
    slot.deaths = slot.deaths.filter((t) => now - t < CRASH_WINDOW_MS);
    slot.deaths.push(now);
    if (slot.deaths.length >= CRASH_LOOP_DEATHS) {
      logger.error({ worker: slot.index, deaths: slot.deaths.length, windowMs: CRASH_WINDOW_MS, code, signal }, 'worker crash loop: stopping');
      process.stderr.write(
        `switchboard serve: worker ${slot.index} died ${slot.deaths.length} times within ${CRASH_WINDOW_MS / 1000} s (last: ${signal ?? `code ${code}`}): a crash loop; stopping every worker. See the workers' logs above.\n`,
      );
      stopAll('crash loop', 1);
      return;
    }
    const delay = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (slot.deaths.length - 1));
    logger.warn({ worker: slot.index, pid: worker.process.pid, code, signal, restartInMs: delay }, 'worker died: restarting it (its clients reconnect to the other workers)');
    slot.timer = setTimeout(() => fork(slot), delay);
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'signal received');
    stopAll(`signal ${signal}`, 0);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  for (const slot of slots) fork(slot);
  return done;
}
