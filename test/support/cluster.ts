/**
 * A cluster of real `switchboard serve` nodes for tests: N child processes
 * (through tsx from src/cli/main.ts, so no build is needed; a node starts in
 * about 1.5 s), each on a free loopback port, all with one generated config
 * file (JWT secret, API key, namespaces with history and presence, the
 * broker). A node counts as started when it logged 'listening' and `/readyz`
 * answers 200.
 *
 * Nodes are stopped by PID: `stop()` (SIGTERM, SIGKILL after a bound),
 * `kill(sig)` (default SIGKILL, like a crash), `restart()` (same port, so a
 * client's URL list stays valid). `Cluster#stop()` belongs in `after`; a
 * process 'exit' hook SIGKILLs whatever is still running if a test file dies
 * before that. Every wait is bounded.
 *
 * Free of node:test (a helper module; the test registers the cleanup).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { merge } from './realtime-server.js';
import { signToken, type TokenOptions } from './tokens.js';
import { sleep, within } from './wait.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).href;

/** HMAC secret of the cluster's tokens (≥ 32 bytes). */
export const CLUSTER_SECRET = 'switchboard-cluster-test-secret-0123456789';
/** API key of every node (`Authorization: Bearer …`). */
export const CLUSTER_API_KEY = 'cluster-test-api-key-0123456789';

/**
 * Namespaces of the nodes: `chat/*` keeps 10,000 publications and has full
 * presence (join/leave at once, no batching); `arena/*` counts.
 */
export const CLUSTER_NAMESPACES = [
  { prefix: 'chat', history: { size: 10_000, ttlMs: 0 }, presence: 'full', presenceBatchMs: 0 },
  { prefix: 'arena', history: { size: 1000, ttlMs: 0 }, presence: 'counts' },
];

export type ClusterBroker =
  | { type: 'redis'; url: string }
  | { type: 'redis'; cluster: string[] }
  | { type: 'redis'; sentinels: string[]; name: string }
  | { type: 'nats'; servers: string[] };

export interface ClusterOptions {
  broker: ClusterBroker;
  /** Number of nodes. Default 3. */
  nodes?: number;
  /** Merged over the generated config (objects key by key; arrays and scalars replace). */
  config?: Record<string, unknown>;
  /** Bound on one node's start (tsx compiles on start; a 2-core machine starts three at once). Default 30 s. */
  startTimeoutMs?: number;
}

export type LogLine = Record<string, unknown>;

export interface HttpResult {
  status: number;
  text: string;
  json(): any;
}

/** The config every node starts from. */
export function clusterConfig(broker: ClusterBroker): Record<string, unknown> {
  return {
    host: '127.0.0.1',
    port: 0,
    auth: { hmacSecret: CLUSTER_SECRET },
    apiKey: CLUSTER_API_KEY,
    broker,
    namespaces: CLUSTER_NAMESPACES,
    // Pings every 5 s: a dead link is found within a test's time, and idle connections are not dropped.
    heartbeat: { intervalMs: 5000, timeoutMs: 5000 },
    shutdown: { timeoutMs: 2000, reconnectJitterMs: 200 },
    // Every test client comes from 127.0.0.1: the per-IP and per-connection limits must not be what a test measures.
    limits: {
      maxConnectionsPerIp: 10_000,
      connectionRatePerIp: { perSecond: 10_000, burst: 10_000 },
      messageRate: { perSecond: 10_000, burst: 10_000 },
      byteRate: { perSecond: 1 << 30, burst: 1 << 30 },
    },
    log: { level: 'info' },
  };
}


/** One HTTP request on a fresh connection (no keep-alive: nothing stays open after the test). */
export function httpRequest(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: unknown; ms?: number } = {},
): Promise<HttpResult> {
  const { method = options.body === undefined ? 'GET' : 'POST', ms = 5000 } = options;
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['Content-Type'] ??= 'application/json';
  }
  return within(
    new Promise<HttpResult>((resolve, reject) => {
      const req = http.request(new URL(path, base), { method, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, text, json: () => JSON.parse(text) });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    }),
    ms,
    `${method} ${base}${path}`,
  );
}

/** PIDs of nodes still running: SIGKILLed if the test process exits without stopping them. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

export class ClusterNode {
  /** 0 until the first start ('listening' tells); kept across restarts. */
  port = 0;
  /** Every JSON log line (pino, stdout) of every run of this node, oldest first (capped). */
  readonly logs: LogLine[] = [];
  /** stderr lines of every run (capped). */
  readonly stderr: string[] = [];
  #child: ChildProcess | undefined;
  #exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({ code: null, signal: null });
  #waiters: Array<() => void> = [];

  constructor(
    /** 1-based, as in "node 1". */
    readonly index: number,
    readonly configFile: string,
    readonly startTimeoutMs: number,
  ) {}

  /** `ws://127.0.0.1:<port>/rt`. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}/rt`;
  }

  /** `http://127.0.0.1:<port>`. */
  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    const c = this.#child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** Resolves with how the current (or last) run ended. */
  get exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.#exited;
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Start the process (port 0 the first time, then the same port) and wait until it is listening and ready. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`node ${this.index} is running`);
    const from = this.logs.length;
    const args = ['serve', '--config', this.configFile, '--port', String(this.port)];
    const code = `import(${JSON.stringify(MAIN)}).then(async (m) => { process.exitCode = await m.main(${JSON.stringify(args)}); })`;
    // Nothing from the environment of the test run configures the node.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_')));
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    live.add(child);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: LogLine;
      try {
        entry = JSON.parse(line) as LogLine;
      } catch {
        entry = { text: line };
      }
      this.logs.push(entry);
      if (this.logs.length > 20_000) this.logs.splice(0, 10_000);
      this.#wake();
    });
    createInterface({ input: child.stderr! }).on('line', (line) => {
      this.stderr.push(line);
      if (this.stderr.length > 2000) this.stderr.splice(0, 1000);
      this.#wake();
    });
    this.#exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.#wake();
        resolve({ code, signal });
      }),
    );
    try {
      const listening = await this.waitLog((l) => l.msg === 'listening', "the 'listening' log line", this.startTimeoutMs, from);
      this.port = listening.port as number;
      await this.waitReady(200, this.startTimeoutMs);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** The first log line at index ≥ `from` that `match` accepts; rejects when the process exits first or after `ms`. */
  waitLog(match: (l: LogLine) => boolean, what: string, ms = 10_000, from = 0): Promise<LogLine> {
    const child = this.#child;
    return within(
      new Promise<LogLine>((resolve, reject) => {
        const check = (): void => {
          const found = this.logs.slice(from).find(match);
          if (found) resolve(found);
          else if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
            reject(new Error(`node ${this.index} exited (${child?.exitCode ?? child?.signalCode}) before ${what}; stderr: ${this.stderr.slice(-10).join(' | ')}`));
          } else this.#waiters.push(check);
        };
        check();
      }),
      ms,
      `${what} of node ${this.index} (stderr: ${this.stderr.slice(-10).join(' | ')})`,
    );
  }

  /** Poll `/readyz` (every 50 ms) until it answers `status`; rejects after `ms`. */
  async waitReady(status = 200, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    let last = 'no answer';
    for (;;) {
      if (!this.running) throw new Error(`node ${this.index} exited while waiting for /readyz ${status}; stderr: ${this.stderr.slice(-10).join(' | ')}`);
      try {
        const res = await httpRequest(this.base, '/readyz', { ms: 2000 });
        if (res.status === status) return;
        last = `${res.status} ${res.text.trim()}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`node ${this.index}: /readyz did not answer ${status} within ${ms} ms (last: ${last})`);
      await sleep(50);
    }
  }

  /** `/readyz` status now. */
  async readyz(): Promise<number> {
    return (await httpRequest(this.base, '/readyz')).status;
  }

  /** Its open realtime connections of `transport`, from its own `/metrics` (0 when none was ever opened). */
  async openConnections(transport: 'websocket' | 'sse' | 'poll'): Promise<number> {
    const res = await httpRequest(this.base, '/metrics');
    if (res.status !== 200) throw new Error(`node ${this.index} /metrics answered ${res.status}`);
    const m = new RegExp(`^switchboard_connections\\{transport="${transport}"\\} (\\d+)$`, 'm').exec(res.text);
    return m ? Number(m[1]) : 0;
  }

  /** A request to the node's HTTP API (`/api/...`) with the API key. */
  api(path: string, body?: unknown, method?: string): Promise<HttpResult> {
    return httpRequest(this.base, path, { method, body, headers: { Authorization: `Bearer ${CLUSTER_API_KEY}` } });
  }

  /** Send `signal` to the process (default SIGKILL: a crash) and wait until it is gone (bounded). */
  async kill(signal: NodeJS.Signals = 'SIGKILL', ms = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const child = this.#child;
    if (child === undefined || !this.running) return this.#exited;
    process.kill(child.pid!, signal);
    return within(this.#exited, ms, `node ${this.index} (pid ${child.pid}) to exit after ${signal}`);
  }

  /** Stop by PID: SIGTERM (graceful shutdown), SIGKILL after `graceMs`. Resolves once the process is gone. */
  async stop(graceMs = 5000): Promise<void> {
    const child = this.#child;
    if (child === undefined || !this.running) return;
    process.kill(child.pid!, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.#exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (timedOut && this.running) {
      process.kill(child.pid!, 'SIGKILL');
      await within(this.#exited, 5000, `node ${this.index} (pid ${child.pid}) to exit after SIGKILL`);
    }
  }

  /** Stop (SIGTERM, or `kill` with the given signal first) and start again on the same port. */
  async restart(signal?: NodeJS.Signals): Promise<void> {
    if (signal !== undefined) await this.kill(signal);
    else await this.stop();
    await this.start();
  }

  /** The last log lines, for failure messages. */
  tail(n = 20): string {
    return [...this.logs.slice(-n).map((l) => JSON.stringify(l)), ...this.stderr.slice(-5)].join('\n');
  }
}

export class Cluster {
  private constructor(
    readonly nodes: ClusterNode[],
    readonly dir: string,
    readonly config: Record<string, unknown>,
  ) {}

  /** Start `options.nodes` nodes (3) at once; resolves when every one is listening and ready. Stops them all if one fails. */
  static async start(options: ClusterOptions): Promise<Cluster> {
    const dir = mkdtempSync(join(tmpdir(), 'sb-cluster-'));
    const config = merge(clusterConfig(options.broker), options.config ?? {});
    const file = join(dir, 'switchboard.json');
    writeFileSync(file, JSON.stringify(config, null, 2));
    const n = options.nodes ?? 3;
    const nodes = Array.from({ length: n }, (_, i) => new ClusterNode(i + 1, file, options.startTimeoutMs ?? 30_000));
    const cluster = new Cluster(nodes, dir, config);
    const started = await Promise.allSettled(nodes.map((node) => node.start()));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await cluster.stop();
      throw failed.reason;
    }
    return cluster;
  }

  /** Node `i`, 1-based. */
  node(i: number): ClusterNode {
    const node = this.nodes[i - 1];
    if (node === undefined) throw new Error(`no node ${i}`);
    return node;
  }

  /** Every node's WebSocket URL (a client's failover list). */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** An HS256 token for `sub` that every node accepts. */
  token(sub: string, options: Omit<TokenOptions, 'secret'> = {}): Promise<string> {
    return signToken(sub, { ...options, secret: CLUSTER_SECRET });
  }

  /** Stop every node by PID (SIGTERM, SIGKILL after `graceMs`) and remove the config dir. For `after`. */
  /** Restart every node that is not running (a scenario that killed one leaves the cluster whole again). */
  async heal(): Promise<void> {
    await Promise.all(this.nodes.filter((n) => !n.running).map((n) => n.start()));
  }

  async stop(graceMs = 3000): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop(graceMs)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
