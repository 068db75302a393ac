/**
 * The in-process realtime server of the tests: on 127.0.0.1, port 0 (or a
 * given port, to restart on), with the test secret and API key, heartbeats
 * off and quick shutdowns; a test's config is merged over that. Free of
 * node:test: the helpers that close a server after the test wrap these.
 */
import { createRealtimeServer, type RealtimeServer, type RealtimeServerOptions } from '../../src/server/realtime-server.js';
import { silentLogger, type Logger } from '../../src/realtime/transport.js';
import { SECRET } from './tokens.js';

/** API key of the test servers. */
export const API_KEY = 'test-api-key-0123456789';

/** A logger that keeps every line (level, message, bindings and fields). */
export interface CapturedLogger extends Logger {
  lines: Array<Record<string, unknown>>;
}

export function captureLogger(lines: Array<Record<string, unknown>> = [], bindings: object = {}): CapturedLogger {
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, msg, ...bindings, ...obj });
    };
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => captureLogger(lines, { ...bindings, ...more }),
  };
}

export { silentLogger };

/** Recursive merge of plain objects (arrays and scalars replace). */
export function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && b && typeof v === 'object' && typeof b === 'object' && !Array.isArray(v) && !Array.isArray(b)
        ? merge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** The config every test server starts from; a test's `config` is merged over it. */
export function testConfig(): RealtimeServerOptions['config'] {
  return {
    host: '127.0.0.1',
    port: 0,
    auth: { hmacSecret: SECRET },
    apiKey: API_KEY,
    heartbeat: { intervalMs: 0, timeoutMs: 1000 },
    shutdown: { timeoutMs: 2000, reconnectJitterMs: 1000 },
    log: { level: 'silent' },
  };
}

export type ServerOptions = Omit<RealtimeServerOptions, 'config'> & {
  /** Merged over {@link testConfig}. */
  config?: Record<string, unknown>;
  /** Keep every log line in `logs` (unless `logger` is given). Default true. */
  captureLogs?: boolean;
};

/** A realtime server with the test config (not listening yet: the hub works, `server.publish()` too), and its log lines. */
export function createTestServer(options: ServerOptions = {}): { server: RealtimeServer; logs: Array<Record<string, unknown>> } {
  const { captureLogs = true, config: over = {}, ...rest } = options;
  const logger = captureLogs ? captureLogger() : undefined;
  const config = merge(testConfig() as Record<string, unknown>, over);
  const server = createRealtimeServer({ logger, ...rest, config });
  return { server, logs: logger?.lines ?? [] };
}

export interface TestServer {
  server: RealtimeServer;
  port: number;
  /** `ws://127.0.0.1:<port>/rt` (the configured path). */
  url: string;
  /** `http://127.0.0.1:<port>`. */
  base: string;
  /** Every log line of the server (none without `captureLogs`). */
  logs: Array<Record<string, unknown>>;
}

/** The addresses of a listening server. */
export function addresses(server: RealtimeServer, port: number): { url: string; base: string } {
  return { url: `ws://127.0.0.1:${port}${server.config.path}`, base: `http://127.0.0.1:${port}` };
}

/**
 * A realtime server on 127.0.0.1, port 0, listening. `created` is called with
 * it before it listens (where a test helper registers its close).
 */
export async function launchServer(options: ServerOptions = {}, created: (server: RealtimeServer) => void = () => {}): Promise<TestServer> {
  const { server, logs } = createTestServer(options);
  created(server);
  const { port } = await server.listen();
  return { server, port, ...addresses(server, port), logs };
}
