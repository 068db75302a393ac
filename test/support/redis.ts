/**
 * A real redis-server for tests: on a free loopback port, in a temp dir,
 * without persistence unless asked (`--save '' --appendonly no`), stopped by
 * its PID (SIGTERM, then SIGKILL after a bound; ./child-server.ts). Never the
 * system service, never a fixed port; every wait bounded.
 */
import { ChildServer, freePort } from './child-server.js';

export { freePort } from './child-server.js';

export const REDIS_SERVER = process.env.SWITCHBOARD_REDIS_SERVER ?? '/usr/bin/redis-server';

export interface RedisServerOptions {
  /** `--appendonly yes --appendfsync always` (data survives a restart). Default false. */
  appendOnly?: boolean;
  /** More redis-server arguments. */
  args?: string[];
}

export class RedisServer extends ChildServer {
  readonly dir: string;

  private constructor(
    port: number,
    readonly options: RedisServerOptions,
  ) {
    super(port, 'redis-server', 8000, 5000);
    this.dir = this.tempDir('sb-redis-');
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

  /** Start the process again (after stop()) on the same port and dir: what persistence kept comes back. */
  async startAgain(timeoutMs = 10_000): Promise<void> {
    const persistence = this.options.appendOnly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', this.dir, '--daemonize', 'no', ...(this.options.args ?? [])];
    await this.launch(REDIS_SERVER, args, timeoutMs, /Ready to accept connections/);
  }

  /** Stop and start again (same port, same dir). */
  async restart(): Promise<void> {
    await this.stop();
    await this.startAgain();
  }
}
