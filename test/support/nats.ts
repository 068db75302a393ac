/**
 * A real nats-server (Debian's /usr/sbin/nats-server) for tests: JetStream
 * with a file store in a temp dir, on a free loopback port, stopped by PID
 * (./child-server.ts). Never the system service, never a fixed port; every
 * wait is bounded.
 *
 * `stop()` then `start()` brings the same server back on the same port with
 * the same store (a restart that keeps JetStream's state); `start({ fresh:
 * true })` gives it an empty store (JetStream lost everything).
 */
import { ChildServer, freePort, startOnFreePorts } from './child-server.js';

export { freePort } from './child-server.js';

export const NATS_SERVER_BIN = process.env['NATS_SERVER_BIN'] ?? '/usr/sbin/nats-server';

export class NatsServer extends ChildServer {
  #storeDir: string;

  private constructor(port: number) {
    super(port, 'nats-server', 20_000, 3000);
    this.#storeDir = this.tempDir('sb-nats-');
  }

  /** Start a server with JetStream (file store in a new temp dir) on a free port. */
  static async start(): Promise<NatsServer> {
    return startOnFreePorts(async () => {
      const server = new NatsServer(await freePort());
      await server.start();
      return server;
    });
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** (Re)start on the same port; `fresh`: with a new, empty store dir (JetStream lost its streams). */
  async start(options: { fresh?: boolean } = {}): Promise<void> {
    if (this.running) throw new Error('nats-server is already running');
    if (options.fresh) this.#storeDir = this.tempDir('sb-nats-');
    await this.launch(NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.#storeDir], 10_000);
  }

  /** Stop and remove every store dir this server used. */
  async destroy(): Promise<void> {
    await this.dispose();
  }
}
