/** `switchboard connect`: an interactive WebSocket client (wscat-like). */
import http from 'node:http';
import { createInterface } from 'node:readline';
import { closeCodeMeaning } from '../protocol/close-code.js';
import { HandshakeError, MAX_REFUSAL_BODY_BYTES } from '../protocol/errors.js';
import { realtimeCloseCode } from '../wire/close-codes.js';
import { WebSocket } from '../transport/websocket.js';
import { HELP, parseCommandArgs, UsageError } from './args.js';

export async function connect(args: string[]): Promise<number> {
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
