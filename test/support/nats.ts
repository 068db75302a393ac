/**
 * A real nats-server (Debian's /usr/sbin/nats-server) for tests: JetStream
 * with a file store in a temp dir, on a free loopback port, stopped by PID.
 * Never the system service, never a fixed port; every wait is bounded.
 *
 * `stop()` then `start()` brings the same server back on the same port with
 * the same store (a restart that keeps JetStream's state); `start({ fresh:
 * true })` gives it an empty store (JetStream lost everything).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const NATS_SERVER_BIN = process.env['NATS_SERVER_BIN'] ?? '/usr/sbin/nats-server';

/** A port nobody listens on right now (the kernel's choice for port 0). */
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

/** Resolve once something accepts TCP connections on `port`, reject after `ms`. */
async function waitForPort(port: number, ms: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nats-server exited early (${child.exitCode ?? child.signalCode})`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nats-server did not listen on ${port} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export class NatsServer {
  #child: ChildProcess | undefined;
  #storeDir: string;
  readonly #dirs: string[] = [];
  #log = '';

  private constructor(
    readonly port: number,
    storeDir: string,
  ) {
    this.#storeDir = storeDir;
    this.#dirs.push(storeDir);
  }

  /** Start a server with JetStream (file store in a new temp dir) on a free port. */
  static async start(): Promise<NatsServer> {
    const server = new NatsServer(await freePort(), mkdtempSync(path.join(tmpdir(), 'sb-nats-')));
    await server.start();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** The server's output so far (for failure messages). */
  get log(): string {
    return this.#log;
  }

  /** (Re)start on the same port; `fresh`: with a new, empty store dir (JetStream lost its streams). */
  async start(options: { fresh?: boolean } = {}): Promise<void> {
    if (this.#child !== undefined) throw new Error('nats-server is already running');
    if (options.fresh) {
      this.#storeDir = mkdtempSync(path.join(tmpdir(), 'sb-nats-'));
      this.#dirs.push(this.#storeDir);
    }
    const child = spawn(NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.#storeDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer): void => {
      this.#log = (this.#log + chunk.toString()).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.#child = child;
    try {
      await waitForPort(this.port, 10_000, child);
    } catch (err) {
      await this.stop();
      throw new Error(`${(err as Error).message}\n${this.#log}`);
    }
  }

  /** Stop by PID: SIGTERM, then SIGKILL after `graceMs`. Resolves when the process is gone. */
  async stop(graceMs = 3000): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.#child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    process.kill(child.pid!, 'SIGTERM');
    const timer = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
    }, graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Stop and remove every store dir this server used. */
  async destroy(): Promise<void> {
    await this.stop();
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
  }
}
