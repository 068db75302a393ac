/**
 * A real redis-server for tests: on a free loopback port, in a temp dir,
 * without persistence unless asked (`--save '' --appendonly no`), stopped by
 * its PID (SIGTERM, then SIGKILL after a bound). Never the system service,
 * never a fixed port; every wait bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from './wait.js';

export const REDIS_SERVER = process.env.SWITCHBOARD_REDIS_SERVER ?? '/usr/bin/redis-server';

/** A free loopback port (the OS picks one; closed again before we return). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface RedisServerOptions {
  /** `--appendonly yes --appendfsync always` (data survives a restart). Default false. */
  appendOnly?: boolean;
  /** More redis-server arguments. */
  args?: string[];
}

/** Whether something accepts TCP connections on the port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export class RedisServer {
  readonly dir: string;
  #child: ChildProcess | undefined;
  #log = '';

  private constructor(
    readonly port: number,
    readonly options: RedisServerOptions,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'sb-redis-'));
  }

  /** Start a server on a free port; resolves when it accepts connections. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), options);
    await server.startAgain();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Start the process again (after stop()) on the same port and dir: what persistence kept comes back. */
  async startAgain(timeoutMs = 10_000): Promise<void> {
    if (this.#child !== undefined) throw new Error('redis-server is running');
    const persistence = this.options.appendOnly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', this.dir, '--daemonize', 'no', ...(this.options.args ?? [])];
    const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#log = '';
    const keep = (chunk: Buffer): void => {
      this.#log = (this.#log + chunk.toString()).slice(-8000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let exited = false;
    child.once('exit', () => {
      exited = true;
      if (this.#child === child) this.#child = undefined;
    });
    const deadline = Date.now() + timeoutMs;
    while (!/Ready to accept connections/.test(this.#log) || !(await accepts(this.port))) {
      if (exited) throw new Error(`redis-server exited at start:\n${this.#log}`);
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`redis-server did not start within ${timeoutMs} ms:\n${this.#log}`);
      }
      await sleep(20);
    }
  }

  /** Stop by PID: SIGTERM (a clean shutdown: AOF flushed), SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = await Promise.race([exited.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)))]);
    clearTimeout(timer);
    if (killed) {
      child.kill('SIGKILL');
      await Promise.race([exited, sleep(2000)]);
    }
    this.#child = undefined;
  }

  /** Stop and start again (same port, same dir). */
  async restart(): Promise<void> {
    await this.stop();
    await this.startAgain();
  }

  /** Stop and remove the dir. */
  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The server's recent output, for failure messages. */
  get log(): string {
    return this.#log;
  }
}
