/**
 * `switchboard <command>`: serve (the realtime server with the chat demo and
 * the dashboard pages), token (sign and check tokens), init (write a config
 * file), echo (a plain echo server), connect (a wscat-like client).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import https from 'node:https';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { extname } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { closeCodeMeaning } from '../protocol/close-code.js';
import { HandshakeError, MAX_REFUSAL_BODY_BYTES } from '../protocol/errors.js';
import { realtimeCloseCode } from '../wire/close-codes.js';
import { WebSocket } from '../transport/websocket.js';
import { WebSocketServer } from '../transport/websocket-server.js';
import { randomBytes } from 'node:crypto';
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
import type { AuthConfig } from '../realtime/auth.js';
import { configTemplate } from './init.js';
import { checkToken, HOW_TO_SET_A_KEY, parseChannelsOption, parseTtl, signToken } from './tokens.js';

/** Each command's synopsis and description, for `switchboard help` and `switchboard <command> --help`. */
const COMMANDS = {
  serve: {
    synopsis: '[--config file.yaml] [--port 8080] [--host 127.0.0.1] [--snapshot-file F]',
    description: [
      'the realtime server (WebSocket /rt, /api, /metrics, /healthz, /readyz)',
      'and its pages: chat demo at /, live dashboard at /dashboard;',
      '--snapshot-file keeps the in-memory history across restarts',
    ],
  },
  token: {
    synopsis: '--user U [--ttl 1h] [--channels C]... [--info JSON] [--config F]  |  --check TOKEN [--config F]',
    description: [
      'sign a token (HS256) with the configured auth.hmacSecret and print it;',
      '--ttl 90s|30m|1h|7d; --channels subscribe=chat/#,news/+ (repeatable) or the claim as JSON;',
      '--check says whether the server accepts a token and why not (- reads it from stdin):',
      'exit 0 valid, 1 refused; 2: no key, a bad configuration, or only a public key',
      '(auth.publicKey/jwksFile verify, they cannot sign: your backend signs with the private key)',
    ],
  },
  init: {
    synopsis: '[FILE] [--force]',
    description: [
      'write a commented YAML configuration (default switchboard.yaml) with a fresh',
      'hmacSecret and apiKey; an existing file is kept unless --force',
    ],
  },
  echo: {
    synopsis: '--port N [--host H] [--deflate] [--tls-cert F --tls-key F] [--max-payload BYTES]',
    description: ['plain WebSocket echo server (any path)'],
  },
  connect: {
    synopsis: 'URL [--protocol P]... [--header "K: V"]... [--no-deflate] [--insecure]',
    description: [
      'interactive client: lines from stdin are sent as text (also those typed before',
      'the connection is open); end of input closes with 1000 and exits 0',
    ],
  },
} as const;
type Command = keyof typeof COMMANDS;

const COLUMN = ' '.repeat(50);

const USAGE = `Usage: switchboard <command> [options]

Commands:
${(Object.keys(COMMANDS) as Command[]).map((name) => `  ${name.padEnd(8)} ${COMMANDS[name].synopsis}\n${COMMANDS[name].description.map((d) => `${COLUMN}${d}\n`).join('')}`).join('')}  help${' '.repeat(COLUMN.length - 6)}this text (and switchboard <command> --help)
  --version${' '.repeat(COLUMN.length - 11)}the version of switchboard
`;

function commandUsage(name: Command): string {
  const { synopsis, description } = COMMANDS[name];
  return `Usage: switchboard ${name} ${synopsis}\n\n${description.map((d) => `  ${d}\n`).join('')}`;
}

/** A mistake in the command line: reported with the command's usage, exit 2. */
class UsageError extends Error {}

/** Every command takes `--help` / `-h`. */
const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/**
 * `parseArgs` for a command (whose options include {@link HELP}). Returns
 * null after printing the command's usage for `--help`; an unknown option or
 * a missing value is a {@link UsageError}.
 */
function parseCommandArgs<T extends ParseArgsConfig>(command: Command, config: T): ReturnType<typeof parseArgs<T>> | null {
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(config);
  } catch (err) {
    // node:util's own errors (ERR_PARSE_ARGS_*: unknown option, missing value, unexpected argument).
    if (String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) throw new UsageError((err as Error).message);
    throw err;
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(commandUsage(command));
    return null;
  }
  return parsed;
}

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
      case 'token':
        return await token(rest);
      case 'init':
        return init(rest);
      case '--version':
      case '-v':
      case 'version':
        process.stdout.write(`switchboard ${packageVersion()}\n`);
        return 0;
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
    if (err instanceof UsageError && command in COMMANDS) process.stderr.write(`\n${commandUsage(command as Command)}`);
    return 2;
  }
}

function parsePort(value: string | undefined, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new UsageError('--port is required');
    return fallback;
  }
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`invalid port '${value}'`);
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
  const parsed = parseCommandArgs('echo', {
    args,
    options: {
      ...HELP,
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      deflate: { type: 'boolean', default: false },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'max-payload': { type: 'string' },
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
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
  // The WebSocketServer passes the HTTP server's errors on as its own: without a listener, a
  // busy port (EADDRINUSE) would be an unhandled 'error' event with a stack trace instead of
  // `switchboard echo: listen EADDRINUSE ...` and exit 2.
  await new Promise<void>((resolve, reject) => {
    wss.once('error', reject);
    server.listen(port, values.host, () => {
      wss.removeListener('error', reject);
      resolve();
    });
  });
  wss.on('error', (err: Error & { code?: string }) => log('error', { code: err.code, message: err.message }));
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
  const parsed = parseCommandArgs('serve', {
    args,
    options: {
      ...HELP,
      config: { type: 'string', short: 'c' },
      port: { type: 'string' },
      host: { type: 'string' },
      'snapshot-file': { type: 'string' },
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
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
  let address: AddressInfo;
  try {
    address = await server.listen();
  } catch (err) {
    throw new Error(listenFailure(err as NodeJS.ErrnoException, config.host, config.port));
  }
  // The dashboard's numbers, only where clients cannot forge them (a namespace without client publications).
  const feed = resolveNamespace(server.config, DASHBOARD_CHANNEL).clientPublish
    ? null
    : startDashboardFeed(server, { onError: (err) => server.logger.warn({ err: String(err) }, 'dashboard snapshot failed') });
  if (!feed) {
    server.logger.info({ channel: DASHBOARD_CHANNEL }, 'dashboard feed off: clients may publish to its channel (configure a namespace "sys" with clientPublish: false)');
  }
  process.stderr.write(
    `switchboard: http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${address.port}/  (chat demo; dashboard /dashboard, WebSocket ${server.config.path}, metrics /metrics)\n`,
  );
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      server.logger.info({ signal }, 'signal received');
      feed?.stop();
      server.close().then(
        () => resolve(0),
        (err: Error) => {
          process.stderr.write(`switchboard: ${err.message}\n`);
          resolve(1);
        },
      );
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
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

function isMissingAuthKey(issue: ConfigIssue): boolean {
  return issue.path === 'auth' && issue.message === MISSING_AUTH_KEY;
}

/** The host the configuration asks for (file, environment, flags, else the default), or undefined when it is not a string. */
function configuredHost(options: LoadConfigOptions): string | undefined {
  const host = mergeConfigLayers(options)['host'];
  if (host === undefined || host === null) return defaultConfig().host;
  return typeof host === 'string' ? host : undefined;
}

/** The version in package.json (two levels up from src/cli/ and from dist/cli/). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return String(pkg.version);
}

async function token(args: string[]): Promise<number> {
  const parsed = parseCommandArgs('token', {
    args,
    options: {
      ...HELP,
      config: { type: 'string', short: 'c' },
      user: { type: 'string', short: 'u' },
      ttl: { type: 'string' },
      channels: { type: 'string', multiple: true },
      info: { type: 'string' },
      check: { type: 'string' },
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  if (values.check !== undefined) {
    const extra = (['user', 'ttl', 'channels', 'info'] as const).find((k) => values[k] !== undefined);
    if (extra) throw new UsageError(`--check takes no --${extra} (only --config)`);
    const text = (values.check === '-' ? readFileSync(0, 'utf8') : values.check).trim();
    const result = await checkToken(tokenAuthConfig(values.config), text);
    process.stdout.write(`${result.lines.join('\n')}\n`);
    return result.valid ? 0 : 1;
  }
  if (values.user === undefined || values.user === '') throw new UsageError('--user is required (or --check TOKEN)');
  const ttlS = parseTtl(values.ttl ?? '1h');
  const channels = values.channels === undefined ? undefined : parseChannelsOption(values.channels);
  let info: unknown;
  if (values.info !== undefined) {
    try {
      info = JSON.parse(values.info);
    } catch (err) {
      throw new UsageError(`--info: not JSON (${(err as Error).message})`);
    }
  }
  const signed = await signToken(tokenAuthConfig(values.config), { user: values.user, ttlS, channels, info });
  process.stdout.write(`${signed.token}\n`);
  process.stderr.write(`token for ${signed.identity.user}, HS256, expires ${new Date(signed.identity.expiresAt).toISOString()}\n`);
  return 0;
}

/** The `auth` section of the configuration (file, environment), validated as `serve` would; no key is an error that says how to set one. */
function tokenAuthConfig(file: string | undefined): AuthConfig {
  try {
    return loadConfig({ file }).auth;
  } catch (err) {
    if (err instanceof ConfigError && err.issues.length > 0 && err.issues.every(isMissingAuthKey)) {
      throw new Error(
        `no key configured to sign or check tokens with: ${HOW_TO_SET_A_KEY}. ` +
          '(A server in development mode signs with a secret made at each start: its tokens come from POST /dev/token.)',
      );
    }
    throw err;
  }
}

function init(args: string[]): number {
  const parsed = parseCommandArgs('init', {
    args,
    allowPositionals: true,
    options: { ...HELP, force: { type: 'boolean', default: false } },
  });
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}' (one file)`);
  const file = positionals[0] ?? 'switchboard.yaml';
  const ext = extname(file).toLowerCase();
  if (ext !== '.yaml' && ext !== '.yml') throw new UsageError(`${file}: init writes YAML: name the file .yaml or .yml`);
  try {
    // 'wx': never replace a file that appeared meanwhile; 0600: it holds secrets.
    writeFileSync(file, configTemplate(), { flag: values.force ? 'w' : 'wx', mode: 0o600 });
    if (values.force) chmodSync(file, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new Error(`${file} exists: left as it is (--force replaces it, with new secrets)`);
    throw new Error(`cannot write ${file} (${code ?? (err as Error).message})`);
  }
  process.stdout.write(
    `wrote ${file}: a new hmacSecret and apiKey (keep the file private). Next:\n` +
      `  switchboard serve --config ${file}\n` +
      `  switchboard token --user alice --config ${file}\n`,
  );
  return 0;
}

async function connect(args: string[]): Promise<number> {
  const parsed = parseCommandArgs('connect', {
    args,
    allowPositionals: true,
    options: {
      ...HELP,
      protocol: { type: 'string', multiple: true },
      header: { type: 'string', multiple: true },
      'no-deflate': { type: 'boolean', default: false },
      insecure: { type: 'boolean', default: false },
    },
  });
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  const url = positionals[0];
  if (!url) throw new UsageError('a URL is required, e.g. switchboard connect ws://127.0.0.1:8080/ws');
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}' (one URL)`);
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new UsageError(`invalid --header '${h}' (expected "Name: value")`);
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
    /** Lines read while the connection is being opened: sent, in order, once it is open. */
    let queued: string[] | null = [];
    let inputEnded = false;
    let closing = false;
    // End of input: close with 1000 once what was read is sent (send() and close() keep their order).
    const closeNormally = (): void => {
      if (closing) return;
      closing = true;
      ws.close(1000);
    };
    rl.on('line', (line) => {
      if (queued) queued.push(line);
      else if (ws.readyState === WebSocket.OPEN && !closing) ws.send(line);
    });
    rl.on('close', () => {
      inputEnded = true;
      if (ws.readyState === WebSocket.OPEN) closeNormally();
    });
    ws.on('open', () => {
      process.stderr.write(`connected (protocol: ${ws.protocol || 'none'}, extensions: ${ws.extensions || 'none'})\n`);
      const lines = queued ?? [];
      queued = null;
      for (const line of lines) ws.send(line);
      if (inputEnded) closeNormally();
    });
    ws.on('message', (data, isBinary) => {
      process.stdout.write(isBinary ? `< [binary ${(data as Buffer).length} bytes] ${(data as Buffer).toString('hex').slice(0, 64)}\n` : `< ${String(data)}\n`);
    });
    ws.on('error', (err: Error) => process.stderr.write(`error: ${describeConnectError(err)}\n`));
    ws.on('close', (code: number, reason: Buffer) => {
      process.stderr.write(`closed: ${code} ${describeCloseCode(code)}${reason.length ? ` reason: ${reason}` : ''}\n`);
      queued = null;
      rl.close();
      // Stop reading stdin (a terminal or a pipe that stays open must not keep the process alive).
      process.stdin.destroy();
      resolve(code === 1000 || code === 1005 ? 0 : 1);
    });
  });
}

/**
 * A close code's meaning for `connect`: the realtime layer's codes
 * (4000-4999, docs/close-codes.md) by its table, whatever the URL (a 4xxx
 * code from another application is application-defined), else RFC 6455's.
 */
function describeCloseCode(code: number): string {
  const rt = realtimeCloseCode(code);
  if (rt) return `(${rt.meaning}; ${rt.advice}) (switchboard realtime protocol: ${rt.name})`;
  return `(${closeCodeMeaning(code)})`;
}

/** An error of `connect`: a refused handshake with its HTTP status and the start of the body the server sent. */
function describeConnectError(err: Error): string {
  if (err instanceof HandshakeError && err.code === 'WS_ERR_UNEXPECTED_STATUS') {
    const status = `${err.statusCode}${http.STATUS_CODES[err.statusCode] ? ` ${http.STATUS_CODES[err.statusCode]}` : ''}`;
    const body = (err.body ?? '').trim();
    const cut = Buffer.byteLength(err.body ?? '') >= MAX_REFUSAL_BODY_BYTES - 3 ? ' (first 1 KiB)' : '';
    return `the server refused the WebSocket upgrade: HTTP ${status}${body ? `\n  ${body.split(/\r?\n/).join('\n  ')}${cut}` : ' (no body)'}`;
  }
  return err.message;
}
