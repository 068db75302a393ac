/**
 * What the kinds of `switchboard bench` share: opening a WebSocket with its
 * failure in words, the server's RSS from /proc, the load generator's own
 * CPU use, and the progress line.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { Worker } from 'node:worker_threads';
import { HandshakeError } from '../../protocol/errors.js';
import { WebSocket, type ClientOptions } from '../../transport/websocket.js';

/** A WebSocket that opened, or why it did not (`HTTP 429 Too Many Requests`, `ECONNREFUSED`, …) and the server's Retry-After in s. */
export type Opened = { ws: WebSocket; error?: undefined } | { ws?: undefined; error: string; retryAfterS?: number };

/** Open a client WebSocket; resolves (never rejects) once it is open or failed. */
export function openWebSocket(url: string, protocols: string[], options: ClientOptions): Promise<Opened> {
  return new Promise((resolve) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, protocols, options);
    } catch (err) {
      resolve({ error: (err as Error).message });
      return;
    }
    const onError = (err: Error): void => {
      ws.removeListener('open', onOpen);
      resolve(describeOpenError(err));
    };
    const onOpen = (): void => {
      ws.removeListener('error', onError);
      resolve({ ws });
    };
    ws.once('error', onError);
    ws.once('open', onOpen);
  });
}

function describeOpenError(err: Error): { error: string; retryAfterS?: number } {
  if (err instanceof HandshakeError && err.code === 'WS_ERR_UNEXPECTED_STATUS') {
    const retry = Number(err.headers['retry-after']);
    const body = (err.body ?? '').trim().split(/\r?\n/)[0]?.slice(0, 80);
    return {
      error: `HTTP ${err.statusCode} ${http.STATUS_CODES[err.statusCode] ?? ''}${body ? ` (${body})` : ''}`.trim(),
      ...(Number.isFinite(retry) ? { retryAfterS: retry } : {}),
    };
  }
  const code = (err as NodeJS.ErrnoException).code;
  return { error: code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message };
}

/** Advice for failures that are the server's limits, not its capacity. */
export function limitAdvice(errors: Iterable<string>): string | null {
  for (const e of errors) {
    if (e.startsWith('HTTP 429') || e.startsWith('HTTP 503')) {
      return (
        'the server refused connections with its limits (429/503): a benchmark from one machine needs them raised ' +
        '(switchboard serve: limits.maxConnectionsPerIp, limits.connectionRatePerIp, limits.maxConnections)'
      );
    }
    if (e.includes('EMFILE')) return 'this process ran out of file descriptors: raise the limit (ulimit -n 65536)';
    if (e.includes('EADDRNOTAVAIL')) return 'out of local ports: widen net.ipv4.ip_local_port_range or use several client addresses';
  }
  return null;
}

/** A process's resident set size in KiB from /proc/PID/status (Linux), or an Error saying why not. */
export function readRssKiB(pid: number): number | Error {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return new Error(code === 'ENOENT' ? `no process ${pid} (or no /proc: --pid works on Linux)` : `cannot read /proc/${pid}/status (${code})`);
  }
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) : new Error(`/proc/${pid}/status has no VmRSS (a kernel thread?)`);
}

/** This process's CPU time since `from`, as a percentage of one core over `ms`. */
export function cpuPercent(from: NodeJS.CpuUsage, ms: number): number {
  const used = process.cpuUsage(from);
  return ms > 0 ? ((used.user + used.system) / 1000 / ms) * 100 : 0;
}

/**
 * A progress line on stderr, rewritten in place, only when stderr is a
 * terminal (never in logs or pipes). `stop()` clears it.
 */
export class Progress {
  readonly #enabled: boolean;
  #timer: NodeJS.Timeout | null = null;
  #shown = false;

  constructor(enabled = process.stderr.isTTY === true) {
    this.#enabled = enabled;
  }

  /** Redraw `line()` every 250 ms until `stop()`. */
  start(line: () => string): void {
    if (!this.#enabled) return;
    this.#timer = setInterval(() => {
      process.stderr.write(`\r\x1b[2K${line()}`);
      this.#shown = true;
    }, 250);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#shown) process.stderr.write('\r\x1b[2K');
    this.#shown = false;
  }
}

/** A bar of `width` cells for `done` of `total`. */
export function bar(done: number, total: number, width = 20): string {
  const f = total > 0 ? Math.min(1, done / total) : 0;
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${Math.round(f * 100)}%`;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A worker thread running `./<name>.js` of this folder. From source (src/
 * through tsx, as the tests run the CLI) the thread loads tsx first:
 * `--import tsx` of the main thread does not reach workers.
 */
export function startWorker(name: string, workerData: unknown): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, import.meta.url), { workerData });
  const api = import.meta.resolve('tsx/esm/api');
  const main = new URL(`./${name}.ts`, import.meta.url).href;
  const code = `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(main)}); })`;
  return new Worker(code, { eval: true, workerData });
}
