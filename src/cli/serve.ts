/** `switchboard serve`: the realtime server with the demo pages. */
import cluster from 'node:cluster';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import {
  ConfigError,
  defaultConfig,
  loadConfig,
  mergeConfigLayers,
  MISSING_AUTH_KEY,
  resolveNamespace,
  type ConfigIssue,
  type DeepPartial,
  type LoadConfigOptions,
  type NamespaceConfig,
  type RealtimeConfig,
} from '../server/config/index.js';
import { DASHBOARD_CHANNEL, startDashboardFeed } from '../server/dashboard-feed.js';
import { createRealtimeServer } from '../server/realtime-server.js';
import { isLoopback } from '../server/client-address.js';
import { createStaticPages } from '../server/static-pages.js';
import { fdLimitWarning, openFilesLimit } from '../server/fd-limit.js';
import type { Logger } from '../realtime/transport.js';
import { HELP, parseCommandArgs, parsePort, UsageError } from './args.js';
import { ARENA_PATH, loadDevArena } from './dev-arena.js';
import { reportListening, runWorkers, workerIndex } from './workers.js';

/** The development secret the primary made, for its workers (they must all verify the tokens /dev/token signs). */
const DEV_SECRET_ENV = 'SWITCHBOARD_WORKER_DEV_SECRET';

/**
 * The namespaces of development mode, for the demo pages, when the
 * configuration names none: `chat/<room>` keeps the last 50 messages (an
 * hour) and full presence; `sys/...` is read-only for clients (the
 * dashboard feed publishes there) and keeps two minutes of snapshots, so a
 * dashboard opened now draws its charts from the history at once.
 */
export const DEV_NAMESPACES: readonly DeepPartial<NamespaceConfig>[] = Object.freeze([
  { prefix: 'chat', history: { size: 50, ttlMs: 3_600_000 }, presence: 'full', presenceBatchMs: 50 },
  { prefix: 'sys', history: { size: 120, ttlMs: 130_000 }, presence: 'off', clientPublish: false },
]);

export async function serve(args: string[]): Promise<number> {
  const parsed = parseCommandArgs('serve', {
    args,
    options: {
      ...HELP,
      config: { type: 'string', short: 'c' },
      port: { type: 'string' },
      host: { type: 'string' },
      'snapshot-file': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      workers: { type: 'string', short: 'w' },
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const overrides: DeepPartial<RealtimeConfig> = {};
  if (values.port !== undefined) overrides.port = parsePort(values.port);
  if (values.host !== undefined) overrides.host = values.host;
  if (values['snapshot-file'] !== undefined) overrides.broker = { snapshotFile: values['snapshot-file'] };
  const tls = { cert: values['tls-cert'], key: values['tls-key'], ca: values['tls-ca'] };
  if (tls.cert !== undefined || tls.key !== undefined || tls.ca !== undefined) overrides.tls = tls;
  if (values.workers !== undefined) {
    const n = Number(values.workers);
    if (!Number.isInteger(n) || n < 1 || n > 256) throw new UsageError(`--workers: a number of processes from 1 to 256, got '${values.workers}'`);
    overrides.workers = n;
  }
  let config: RealtimeConfig;
  let devTokens = false;
  try {
    config = loadConfig({ file: values.config, overrides });
  } catch (err) {
    // No key configured: on loopback, run in development mode with an
    // ephemeral secret and /dev/token, so `npm start` works out of the box.
    if (!(err instanceof ConfigError) || !err.issues.some(isMissingAuthKey)) throw err;
    if (!err.issues.every(isMissingAuthKey)) {
      // Other problems as well. Where development mode would apply once they are fixed
      // (loopback), the missing key is not one of them: report only the others.
      const host = configuredHost({ file: values.config, overrides });
      if (isLoopback(host)) throw new ConfigError(err.issues.filter((i) => !isMissingAuthKey(i)));
      throw new Error(`${err.message}\n\n${missingKeyAdvice(host)}`);
    }
    const probe = loadConfig({ file: values.config, overrides: { ...overrides, auth: { anonymous: true } } });
    if (!isLoopback(probe.host)) throw new Error(`${err.message}\n\n${missingKeyAdvice(probe.host)}`);
    devTokens = true;
    // Workers take their primary's secret: a token from one worker's /dev/token must pass on every worker.
    const secret = (cluster.isWorker && process.env[DEV_SECRET_ENV]) || randomBytes(32).toString('base64url');
    config = loadConfig({ file: values.config, overrides: { ...overrides, auth: { hmacSecret: secret } } });
  }
  if (cluster.isPrimary && config.workers > 1) {
    const shown = config.host.includes(':') ? `[${config.host}]` : config.host;
    return runWorkers({
      count: config.workers,
      args,
      env: devTokens ? { [DEV_SECRET_ENV]: config.auth.hmacSecret! } : {},
      shutdownTimeoutMs: config.shutdown.timeoutMs,
      logLevel: config.log.level,
      banner: (port, nodes) =>
        `switchboard: http://${shown}:${port}/  (${config.workers} workers on the ${config.broker.type} broker, nodes ${nodes.join(' ')}; chat demo; dashboard /dashboard, WebSocket ${config.path}, metrics /metrics per worker)\n`,
    });
  }
  const worker = workerIndex();
  // Development mode without namespaces of its own (only the default one): those of the demo pages.
  const devNamespaces = devTokens && config.namespaces.every((ns) => ns.prefix === '');
  // The arena game (examples/arena/, in a checkout only): its namespace, and volatile state
  // dropped rather than queued for a slow page unless the configuration says otherwise.
  const arena = devNamespaces ? await loadDevArena() : null;
  const slowConsumerSet = (mergeConfigLayers({ file: values.config, overrides })['limits'] as Record<string, unknown> | undefined)?.['slowConsumer'] !== undefined;
  const server = createRealtimeServer({
    config: devNamespaces
      ? {
          ...config,
          namespaces: [...config.namespaces, ...DEV_NAMESPACES, ...(arena ? [arena.namespace] : [])],
          ...(arena && !slowConsumerSet ? { limits: { ...config.limits, slowConsumer: 'drop-volatile' as const } } : {}),
        }
      : config,
    devTokens,
    // A worker of `serve --workers N` says which one it is in every log line and metric.
    ...(worker > 0 ? { logger: pino({ level: config.log.level, base: { service: 'switchboard', worker }, timestamp: pino.stdTimeFunctions.isoTime }) as unknown as Logger } : {}),
  });
  if (worker > 0) server.metrics.registry.setDefaultLabels({ worker: String(worker) });
  const game = arena?.start(server) ?? null;
  if (devTokens) {
    server.logger.warn({}, 'no auth key configured: development mode (ephemeral secret, tokens for anyone at POST /dev/token, loopback only)');
  }
  // The pages first; what they do not serve goes on to the server's own handler (its routes, else 404).
  // They answer asynchronously, so the server's handler must not run at all for their paths.
  // The arena's (under /arena only) before the demo pages, which claim every path with a file extension.
  const demoPages = createStaticPages({ realtimePath: server.config.path });
  const pages = game ? (req: http.IncomingMessage, res: http.ServerResponse) => game.pages(req, res) || demoPages(req, res) : demoPages;
  const httpServer = server.httpServer;
  const next = httpServer.listeners('request') as Array<(req: http.IncomingMessage, res: http.ServerResponse) => void>;
  httpServer.removeAllListeners('request');
  httpServer.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!pages(req, res)) for (const listener of next) listener.call(httpServer, req, res);
  });
  const fdWarning = fdLimitWarning(openFilesLimit(), server.config.limits.maxConnections);
  if (fdWarning) server.logger.warn({ openFilesLimit: fdWarning.openFilesLimit, needed: fdWarning.needed }, fdWarning.msg);
  let address: AddressInfo;
  try {
    address = await server.listen();
  } catch (err) {
    // The game's loop has not started, but its session listener is registered: let go of it too.
    game?.stop();
    throw new Error(listenFailure(err as NodeJS.ErrnoException, config.host, config.port));
  }
  // The game ticks from here on: nothing to publish to before the server listens.
  game?.run();
  // The dashboard's numbers, only where clients cannot forge them (a namespace without client publications).
  const feed = resolveNamespace(server.config, DASHBOARD_CHANNEL).clientPublish
    ? null
    : startDashboardFeed(server, { onError: (err) => server.logger.warn({ err: String(err) }, 'dashboard snapshot failed') });
  if (!feed) {
    server.logger.info({ channel: DASHBOARD_CHANNEL }, 'dashboard feed off: clients may publish to its channel (configure a namespace "sys" with clientPublish: false)');
  }
  if (worker > 0) reportListening(address.port, server.clusterNodeId);
  else {
    process.stderr.write(
      `switchboard: ${server.config.tls ? 'https' : 'http'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${address.port}/  (chat demo; dashboard /dashboard,${game ? ` game ${ARENA_PATH},` : ''} WebSocket ${server.config.path}, metrics /metrics${server.admin ? `, admin ${server.admin.path}/` : ''})\n`,
    );
  }
  return new Promise((resolve) => {
    let stopping = false;
    // Kept while stopping: a second signal (a worker gets one from its primary and, under systemd or a
    // terminal, one for the whole group) must not kill the process in the middle of its graceful shutdown.
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      server.logger.info({ signal }, 'signal received');
      feed?.stop();
      game?.stop();
      server.close().then(
        () => resolve(0),
        (err: Error) => {
          process.stderr.write(`switchboard: ${err.message}\n`);
          resolve(1);
        },
      );
    };
    // SIGHUP: read the TLS certificate and key again (the server also watches their directories).
    const reload = () => {
      if (server.certificates === null) server.logger.info({ signal: 'SIGHUP' }, 'SIGHUP: nothing to reload (no tls)');
      else server.reloadCertificates('SIGHUP');
    };
    process.on('SIGHUP', reload);
    const stopOn = (signal: string) => {
      process.removeListener('SIGHUP', reload);
      stop(signal);
    };
    process.on('SIGINT', stopOn);
    process.on('SIGTERM', stopOn);
    // A worker whose primary is gone (killed: no SIGTERM came) stops too, rather than serve on unsupervised.
    if (worker > 0) process.once('disconnect', () => stopOn('primary gone'));
  });
}

/**
 * What to do when `serve` has no key and `host` is not loopback: development mode (a throwaway
 * secret, tokens for anyone at /dev/token) would hand tokens to whoever reaches the port.
 */
function missingKeyAdvice(host: string | undefined): string {
  return [
    `No key to verify tokens with, and host ${host === undefined ? '(not a string)' : host} is not a loopback address.`,
    'Development mode (a secret made at each start, tokens for anyone at POST /dev/token) runs only on loopback',
    '(127.0.0.1, ::1, localhost), where nothing but this machine reaches the server; on any other interface',
    'anyone who reaches the port could get a token for any user. Set a key, for example:',
    '  export SWITCHBOARD_JWT_SECRET="$(openssl rand -base64 32)"     (auth.hmacSecret, at least 32 bytes)',
    '  or write a config file with one: switchboard init, then switchboard serve --config switchboard.yaml',
    '  or verify tokens your backend signs with a private key: auth.publicKey / auth.jwksFile',
    '  (or allow connections without a token: auth.anonymous: true, SWITCHBOARD_ANONYMOUS=true)',
  ].join('\n');
}

/** Why `serve` could not listen, in words, with what to do; without a stack trace. */
function listenFailure(err: NodeJS.ErrnoException, host: string, port: number): string {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  switch (err.code) {
    case 'EADDRINUSE':
      return (
        `port ${port} is in use on ${host} (EADDRINUSE): another process listens on ${where}.\n` +
        `Pick another port with --port (e.g. --port ${port === 65535 ? 8081 : port + 1}; --port 0 takes any free one; or port: in the config, SWITCHBOARD_PORT),\n` +
        `or stop the other process (lsof -iTCP:${port} -sTCP:LISTEN, or ss -ltnp, shows which).`
      );
    case 'EACCES':
      return `not allowed to listen on ${where} (EACCES): ports below 1024 need privileges; pick another with --port (e.g. --port 8080).`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${where} (EADDRNOTAVAIL): ${host} is not an address of this machine; pick one with --host (127.0.0.1, 0.0.0.0, ::1, ...).`;
    default:
      return err.message;
  }
}

export function isMissingAuthKey(issue: ConfigIssue): boolean {
  return issue.path === 'auth' && issue.message === MISSING_AUTH_KEY;
}

/** The host the configuration asks for (file, environment, flags, else the default), or undefined when it is not a string. */
function configuredHost(options: LoadConfigOptions): string | undefined {
  const host = mergeConfigLayers(options)['host'];
  if (host === undefined || host === null) return defaultConfig().host;
  return typeof host === 'string' ? host : undefined;
}
