/** `switchboard echo`: a plain WebSocket echo server. */
import http from 'node:http';
import https from 'node:https';
import { readTlsMaterial, tlsServerOptions } from '../server/tls.js';
import { closeCodeMeaning } from '../protocol/close-code.js';
import { WebSocketServer } from '../transport/websocket-server.js';
import { HELP, parseCommandArgs, parsePort } from './args.js';

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

export async function echo(args: string[]): Promise<number> {
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
    ? https.createServer(echoTlsOptions(values['tls-cert']!, values['tls-key']!))
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

/** The serve command's checks and options (src/server/tls.ts): a bad pair is refused with the reason (a key of another certificate, no PEM, ...). */
function echoTlsOptions(cert: string, key: string) {
  const config = { cert, key, minVersion: 'TLSv1.2', clientCertificates: 'off' } as const;
  return tlsServerOptions(config, readTlsMaterial(config));
}
