/**
 * `switchboard <command>`: serve (the realtime server with the chat demo and
 * the dashboard pages), echo (a plain echo server), connect (a wscat-like
 * client).
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { closeCodeMeaning } from '../protocol/close-code.js';
import { WebSocket } from '../transport/websocket.js';
import { WebSocketServer } from '../transport/websocket-server.js';
import { randomBytes } from 'node:crypto';
import { ConfigError, loadConfig, resolveNamespace, type DeepPartial, type NamespaceConfig, type RealtimeConfig } from '../server/config.js';
import { DASHBOARD_CHANNEL, startDashboardFeed } from '../server/dashboard-feed.js';
import { createRealtimeServer } from '../server/realtime-server.js';
import { createStaticPages } from '../server/static-pages.js';

const USAGE = `Usage: switchboard <command> [options]

Commands:
  serve    [--config file.yaml] [--port 8080] [--host 127.0.0.1] [--snapshot-file F]
                                                  the realtime server (WebSocket /rt, /api, /metrics, /healthz, /readyz)
                                                  and its pages: chat demo at /, live dashboard at /dashboard;
                                                  --snapshot-file keeps the in-memory history across restarts
  echo     --port N [--host H] [--deflate] [--tls-cert F --tls-key F] [--max-payload BYTES]
                                                  plain WebSocket echo server (any path)
  connect  URL [--protocol P]... [--header "K: V"]... [--no-deflate] [--insecure]
                                                  interactive client: lines from stdin are sent as text
  help                                            this text
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'echo':
        return await echo(rest);
      case 'serve':
        return await serve(rest);
      case 'connect':
        return await connect(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 1 : 0;
      default:
        process.stderr.write(`switchboard: unknown command '${command}'\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    process.stderr.write(`switchboard ${command}: ${(err as Error).message}\n`);
    return 2;
  }
}

function parsePort(value: string | undefined, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new Error('--port is required');
    return fallback;
  }
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port '${value}'`);
  return port;
}

function log(event: string, fields: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), event, ...fields }) + '\n');
}

/** Stop on SIGINT/SIGTERM: close clients with 1001, then exit. */
function closeOnSignal(wss: WebSocketServer, extra?: () => void): Promise<number> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      log('shutdown', { signal, clients: wss.clients.size });
      const force = setTimeout(() => resolve(0), 5000);
      force.unref();
      wss.close(() => {
        extra?.();
        clearTimeout(force);
        resolve(0);
      });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

async function echo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      deflate: { type: 'boolean', default: false },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'max-payload': { type: 'string' },
    },
  });
  const port = parsePort(values.port);
  const maxPayload = values['max-payload'] === undefined ? undefined : Number(values['max-payload']);
  if (maxPayload !== undefined && !(Number.isInteger(maxPayload) && maxPayload >= 0)) throw new Error('invalid --max-payload');
  const tls = values['tls-cert'] !== undefined || values['tls-key'] !== undefined;
  if (tls && !(values['tls-cert'] && values['tls-key'])) throw new Error('--tls-cert and --tls-key go together');

  const server = tls
    ? https.createServer({ cert: readFileSync(values['tls-cert']!), key: readFileSync(values['tls-key']!), minVersion: 'TLSv1.2' })
    : http.createServer();
  server.on('request', (_req, res) => {
    res.writeHead(426, { 'Content-Type': 'text/plain' }).end('WebSocket echo server: connect with a WebSocket client\n');
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: values.deflate, maxPayload });
  let nextId = 1;
  wss.on('connection', (ws, req) => {
    const id = nextId++;
    log('open', { id, remote: req.socket.remoteAddress, protocol: ws.protocol, extensions: ws.extensions });
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', (err: Error & { code?: string }) => log('error', { id, code: err.code, message: err.message }));
    ws.on('close', (code: number, reason: Buffer) => log('close', { id, code, meaning: closeCodeMeaning(code), reason: reason.toString() }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, values.host, () => resolve());
  });
  const address = server.address() as { port: number };
  log('listening', { url: `${tls ? 'wss' : 'ws'}://${values.host}:${address.port}/`, deflate: values.deflate });
  return closeOnSignal(wss, () => server.close());
}

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

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      port: { type: 'string' },
      host: { type: 'string' },
      'snapshot-file': { type: 'string' },
    },
  });
  const overrides: DeepPartial<RealtimeConfig> = {};
  if (values.port !== undefined) overrides.port = parsePort(values.port);
  if (values.host !== undefined) overrides.host = values.host;
  if (values['snapshot-file'] !== undefined) overrides.broker = { snapshotFile: values['snapshot-file'] };
  let config: RealtimeConfig;
  let devTokens = false;
  try {
    config = loadConfig({ file: values.config, overrides });
  } catch (err) {
    // No key configured: on loopback, run in development mode with an
    // ephemeral secret and /dev/token, so `npm start` works out of the box.
    if (!(err instanceof ConfigError) || !err.issues.every((i) => i.path === 'auth')) throw err;
    const probe = loadConfig({ file: values.config, overrides: { ...overrides, auth: { anonymous: true } } });
    if (!isLoopback(probe.host)) throw err;
    devTokens = true;
    config = loadConfig({ file: values.config, overrides: { ...overrides, auth: { hmacSecret: randomBytes(32).toString('base64url') } } });
  }
  // Development mode without namespaces of its own (only the default one): those of the demo pages.
  const devNamespaces = devTokens && config.namespaces.every((ns) => ns.prefix === '');
  const server = createRealtimeServer({
    config: devNamespaces ? { ...config, namespaces: [...config.namespaces, ...DEV_NAMESPACES] } : config,
    devTokens,
  });
  if (devTokens) {
    server.logger.warn({}, 'no auth key configured: development mode (ephemeral secret, tokens for anyone at POST /dev/token, loopback only)');
  }
  // The pages first; what they do not serve goes on to the server's own handler (its routes, else 404).
  // They answer asynchronously, so the server's handler must not run at all for their paths.
  const pages = createStaticPages({ realtimePath: server.config.path });
  const httpServer = server.httpServer;
  const next = httpServer.listeners('request') as Array<(req: http.IncomingMessage, res: http.ServerResponse) => void>;
  httpServer.removeAllListeners('request');
  httpServer.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!pages(req, res)) for (const listener of next) listener.call(httpServer, req, res);
  });
  const address = await server.listen();
  // The dashboard's numbers, only where clients cannot forge them (a namespace without client publications).
  const feed = resolveNamespace(server.config, DASHBOARD_CHANNEL).clientPublish
    ? null
    : startDashboardFeed(server, { onError: (err) => server.logger.warn({ err: String(err) }, 'dashboard snapshot failed') });
  if (!feed) {
    server.logger.info({ channel: DASHBOARD_CHANNEL }, 'dashboard feed off: clients may publish to its channel (configure a namespace "sys" with clientPublish: false)');
  }
  process.stderr.write(
    `switchboard: http://${config.host}:${address.port}/  (chat demo; dashboard /dashboard, WebSocket ${server.config.path}, metrics /metrics)\n`,
  );
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      server.logger.info({ signal }, 'signal received');
      feed?.stop();
      server.close().then(() => resolve(0), () => resolve(1));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

async function connect(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      protocol: { type: 'string', multiple: true },
      header: { type: 'string', multiple: true },
      'no-deflate': { type: 'boolean', default: false },
      insecure: { type: 'boolean', default: false },
    },
  });
  const url = positionals[0];
  if (!url) throw new Error('a URL is required, e.g. switchboard connect ws://127.0.0.1:8080/ws');
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new Error(`invalid --header '${h}' (expected "Name: value")`);
    headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
  }
  const ws = new WebSocket(url, values.protocol ?? [], {
    headers,
    perMessageDeflate: !values['no-deflate'],
    rejectUnauthorized: !values.insecure,
    handshakeTimeout: 10_000,
  });
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, terminal: false });
    ws.on('open', () => {
      process.stderr.write(`connected (protocol: ${ws.protocol || 'none'}, extensions: ${ws.extensions || 'none'})\n`);
      rl.on('line', (line) => ws.send(line));
      rl.on('close', () => ws.close(1000));
    });
    ws.on('message', (data, isBinary) => {
      process.stdout.write(isBinary ? `< [binary ${(data as Buffer).length} bytes] ${(data as Buffer).toString('hex').slice(0, 64)}\n` : `< ${String(data)}\n`);
    });
    ws.on('error', (err: Error) => process.stderr.write(`error: ${err.message}\n`));
    ws.on('close', (code: number, reason: Buffer) => {
      process.stderr.write(`closed: ${code} (${closeCodeMeaning(code)})${reason.length ? ` reason: ${reason}` : ''}\n`);
      rl.close();
      resolve(code === 1000 || code === 1005 ? 0 : 1);
    });
  });
}
