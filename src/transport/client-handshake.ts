/**
 * The client side of the opening handshake (RFC 6455 §4.1): send the
 * Upgrade request over http/https, check the server's answer, then hand the
 * socket to the `WebSocket`.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { CloseCode } from '../protocol/close-code.js';
import { HandshakeError, MAX_REFUSAL_BODY_BYTES } from '../protocol/errors.js';
import { generateKey, validateUpgradeResponse } from '../protocol/handshake.js';
import {
  acceptDeflateResponse,
  buildDeflateOffer,
  type PerMessageDeflateOptions,
} from '../protocol/extensions/permessage-deflate.js';
import { PerMessageDeflateCodec } from './deflate.js';
import type { HeartbeatOptions, WebSocket } from './websocket.js';

export interface ClientOptions extends Omit<https.RequestOptions, 'headers' | 'timeout'> {
  /** Extra request headers. */
  headers?: Record<string, string | string[]>;
  /** Value of the Origin header (browsers always send one; Node clients only when asked). */
  origin?: string;
  /** Only 13 is defined (RFC 6455). */
  protocolVersion?: number;
  /** Offer permessage-deflate. Default true (as `ws`); `false` to offer nothing. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /** Max time for the opening handshake in ms. Default: no limit beyond the OS's. */
  handshakeTimeout?: number;
  /** Max size of a received message in bytes (after inflation). Default 100 MiB. */
  maxPayload?: number;
  skipUTF8Validation?: boolean;
  autoPong?: boolean;
  /** Ping the server periodically and terminate when it stops answering. */
  heartbeat?: HeartbeatOptions;
  /** Time to wait for the server's part of the closing handshake, in ms. Default 30 s. */
  closeTimeout?: number;
}

const kNoContent = Buffer.alloc(0);
/** How long a client waits for the body of a refused handshake (for {@link HandshakeError.body}) once the status is in, in ms. */
const REFUSAL_BODY_WAIT_MS = 1000;

export function connectClient(ws: WebSocket, address: string | URL, protocols: string[], options: ClientOptions): void {
  let url: URL;
  try {
    url = address instanceof URL ? address : new URL(address);
  } catch {
    throw new SyntaxError(`Invalid URL: ${String(address)}`);
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new SyntaxError(`The URL's protocol must be one of "ws:", "wss:", "http:" or "https:"`);
  }
  if (url.hash) throw new SyntaxError('The URL contains a fragment identifier');
  const version = options.protocolVersion ?? 13;
  if (version !== 13) throw new RangeError(`Unsupported protocol version: ${version} (supported versions: 13)`);
  const seen = new Set<string>();
  for (const p of protocols) {
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(p) || seen.has(p)) {
      throw new SyntaxError(`An invalid or duplicated subprotocol was specified: ${p}`);
    }
    seen.add(p);
  }

  const secure = url.protocol === 'wss:';
  const key = generateKey();
  const deflateOptions: PerMessageDeflateOptions | null =
    options.perMessageDeflate === false ? null : options.perMessageDeflate === true || options.perMessageDeflate === undefined ? {} : options.perMessageDeflate;

  const headers: Record<string, string | string[]> = {
    ...options.headers,
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': String(version),
    'Sec-WebSocket-Key': key,
  };
  if (protocols.length > 0) headers['Sec-WebSocket-Protocol'] = protocols.join(', ');
  if (deflateOptions) headers['Sec-WebSocket-Extensions'] = buildDeflateOffer(deflateOptions);
  if (options.origin) headers['Origin'] = options.origin;

  const {
    headers: _h,
    origin: _o,
    protocolVersion: _v,
    perMessageDeflate: _d,
    handshakeTimeout,
    maxPayload,
    skipUTF8Validation,
    autoPong,
    heartbeat,
    closeTimeout,
    ...requestOptions
  } = options;

  const request = (secure ? https : http).request({
    ...requestOptions,
    host: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port || (secure ? 443 : 80),
    path: `${url.pathname}${url.search}`,
    method: 'GET',
    headers,
    ...(secure ? { servername: requestOptions.servername ?? (isIp(url.hostname) ? '' : url.hostname) } : {}),
  });

  let done = false;
  let timer: NodeJS.Timeout | null = null;
  const finish = (): void => {
    done = true;
    ws._abortHandshake = null;
    if (timer) clearTimeout(timer);
  };
  const abort = (err: Error): void => {
    if (done) return;
    finish();
    ws._setState(2);
    request.destroy();
    ws.emitError(err);
    ws.emitClose(CloseCode.AbnormalClosure, kNoContent);
  };
  ws._abortHandshake = (reason: string) => abort(new Error(reason));

  if (handshakeTimeout && handshakeTimeout > 0) {
    timer = setTimeout(() => abort(new HandshakeError('WS_ERR_HANDSHAKE_TIMEOUT', 'Opening handshake has timed out', 0)), handshakeTimeout);
  }

  request.on('error', (err) => abort(err));
  request.on('response', (res) => {
    if (done) return;
    if (ws.listenerCount('unexpected-response') > 0) {
      finish();
      ws._setState(2);
      ws.emit('unexpected-response', request, res);
      ws.emitClose(CloseCode.AbnormalClosure, kNoContent);
      return;
    }
    // Keep the start of the body (why the server refused), bounded in size and time.
    const status = res.statusCode ?? 0;
    const chunks: Buffer[] = [];
    let size = 0;
    const refuse = (): void => {
      if (done) return;
      const err = new HandshakeError('WS_ERR_UNEXPECTED_STATUS', `Unexpected server response: ${status}`, status);
      err.body = Buffer.concat(chunks, size).subarray(0, MAX_REFUSAL_BODY_BYTES).toString('utf8');
      abort(err);
    };
    if (timer) clearTimeout(timer);
    timer = setTimeout(refuse, REFUSAL_BODY_WAIT_MS);
    res.on('data', (chunk: Buffer) => {
      if (done) return;
      chunks.push(chunk);
      size += chunk.length;
      if (size >= MAX_REFUSAL_BODY_BYTES) refuse();
    });
    res.on('end', refuse);
    res.on('error', refuse);
    res.on('close', refuse);
  });
  request.on('upgrade', (res: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (done) {
      socket.destroy();
      return;
    }
    ws.emit('upgrade', res);
    try {
      const result = validateUpgradeResponse(
        { statusCode: res.statusCode ?? 0, headers: res.headers },
        { key, protocols, extensionsOffered: deflateOptions !== null },
      );
      let codec: PerMessageDeflateCodec | null = null;
      let extensions = '';
      if (deflateOptions && result.extensions.length > 0) {
        const params = acceptDeflateResponse(result.extensions, deflateOptions);
        codec = new PerMessageDeflateCodec({
          role: 'client',
          params,
          maxPayload: maxPayload ?? 100 * 1024 * 1024,
          level: deflateOptions.level,
          memLevel: deflateOptions.memLevel,
          threshold: deflateOptions.threshold,
          concurrencyLimit: deflateOptions.concurrencyLimit,
          idleReleaseMs: deflateOptions.idleReleaseMs,
        });
        extensions = String(res.headers['sec-websocket-extensions'] ?? '');
      }
      finish();
      ws.setSocket(socket, head, {
        role: 'client',
        maxPayload,
        codec,
        skipUTF8Validation,
        autoPong,
        heartbeat,
        closeTimeout,
        protocol: result.protocol,
        extensions,
      });
    } catch (err) {
      socket.destroy();
      abort(err as Error);
      return;
    }
    ws.emit('open');
  });
  request.end();
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.startsWith('[');
}
