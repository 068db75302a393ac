/**
 * What the real servers the tests start (redis-server in ./redis.ts,
 * nats-server in ./nats.ts) share: a free loopback port, a child process
 * whose output is kept for failure messages, a bounded wait until it
 * accepts connections, a stop by PID (SIGTERM, then SIGKILL after a bound)
 * and temp dirs removed at the end. Never a system service, never a fixed
 * port; every wait bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from './wait.js';

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

/**
 * A port found free may be taken before the server binds it (another test's
 * outgoing connection got it as its ephemeral port): start again on new
 * ports, a few times, when the server says so.
 */
export async function startOnFreePorts<T>(start: () => Promise<T>, attempts = 4): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= attempts || !/address already in use/i.test(String((err as Error)?.message ?? err))) throw err;
    }
  }
}

/** Whether something accepts TCP connections on the port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** One server program run as a child process on a fixed-for-its-life loopback port. */
export abstract class ChildServer {
  #child: ChildProcess | undefined;
  #log = '';
  readonly #dirs: string[] = [];

  protected constructor(
    readonly port: number,
    /** The program's name, for messages. */
    private readonly program: string,
    /** How much of its output `log` keeps, in characters. */
    private readonly logLimit: number,
    /** The default grace of `stop()` between SIGTERM and SIGKILL, in ms. */
    private readonly stopGraceMs: number,
  ) {}

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** The server's output since its last start (for failure messages). */
  get log(): string {
    return this.#log;
  }

  /** A new temp dir, removed by `dispose()`. */
  protected tempDir(prefix: string): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.#dirs.push(dir);
    return dir;
  }

  /**
   * Spawn `bin args` and resolve once it accepts connections on `port` (and,
   * with `ready`, once its output matches). Stops it and rejects, with its
   * output, when it exits first or after `timeoutMs`.
   */
  protected async launch(bin: string, args: string[], timeoutMs: number, ready?: RegExp): Promise<void> {
    if (this.#child !== undefined) throw new Error(`${this.program} is already running`);
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#log = '';
    const keep = (chunk: Buffer): void => {
      this.#log = (this.#log + chunk.toString()).slice(-this.logLimit);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.once('exit', () => {
      if (this.#child === child) this.#child = undefined;
    });
    const deadline = Date.now() + timeoutMs;
    while (!(ready?.test(this.#log) ?? true) || !(await accepts(this.port))) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${this.program} exited at start (${child.exitCode ?? child.signalCode}):\n${this.#log}`);
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`${this.program} did not start on port ${this.port} within ${timeoutMs} ms:\n${this.#log}`);
      }
      await sleep(20);
    }
  }

  /** Stop by PID: SIGTERM (a clean shutdown), SIGKILL after `graceMs`. Resolves when the process is gone. */
  async stop(graceMs = this.stopGraceMs): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    if (child.exitCode !== null || child.signalCode !== null) {
      this.#child = undefined;
      return;
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
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

  /** Stop and remove every temp dir this server used. */
  async dispose(): Promise<void> {
    await this.stop();
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
  }
}
