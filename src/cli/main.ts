/**
 * `switchboard <command>`: echo (a plain echo server), connect (a wscat-like
 * client), serve (the demo server; the realtime server lands here next).
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { closeCodeMeaning } from '../protocol/close-code.js';
import { WebSocket } from '../transport/websocket.js';
import { WebSocketServer } from '../transport/websocket-server.js';
import { demoPage } from './demo-page.js';
import { randomBytes } from 'node:crypto';
import { ConfigError, loadConfig, type DeepPartial, type RealtimeConfig } from '../server/config.js';
import { createRealtimeServer } from '../server/realtime-server.js';

const USAGE = `Usage: switchboard <command> [options]

Commands:
  serve    [--config file.yaml] [--port 8080] [--host 127.0.0.1]
                                                  the realtime server (WebSocket /rt, /api, /metrics, /healthz, /readyz)
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

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      port: { type: 'string' },
      host: { type: 'string' },
    },
  });
  const overrides: DeepPartial<RealtimeConfig> = {};
  if (values.port !== undefined) overrides.port = parsePort(values.port);
  if (values.host !== undefined) overrides.host = values.host;
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
  const server = createRealtimeServer({ config, devTokens });
  if (devTokens) {
    server.logger.warn({}, 'no auth key configured: development mode (ephemeral secret, tokens for anyone at POST /dev/token, loopback only)');
  }
  // Before the server's own handler, which answers 404 for paths it does not serve.
  server.httpServer.prependListener('request', (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/' || path === '/index.html') res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(demoPage);
  });
  const address = await server.listen();
  process.stderr.write(`switchboard: http://${config.host}:${address.port}/  (WebSocket ${config.path}, metrics /metrics)\n`);
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      server.logger.info({ signal }, 'signal received');
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
