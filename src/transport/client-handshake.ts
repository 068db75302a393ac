/**
 * The client side of the opening handshake (RFC 6455 §4.1): send the
 * Upgrade request over http/https, check the server's answer, then hand the
 * socket to its {@link ClientHandshakeHandler} (the `WebSocket`, which this
 * module does not import). With `followRedirects`, 3xx answers are followed
 * (at most `maxRedirects`).
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import { HandshakeError, MAX_REFUSAL_BODY_BYTES } from '../protocol/errors.js';
import { generateKey, validateUpgradeResponse } from '../protocol/handshake.js';
import {
  acceptDeflateResponse,
  buildDeflateOffer,
  type PerMessageDeflateOptions,
} from '../protocol/extensions/permessage-deflate.js';
import { PerMessageDeflateCodec } from './deflate.js';

/** The options of the opening handshake; the rest of `https.RequestOptions` goes to the request. */
export interface ClientHandshakeOptions extends Omit<https.RequestOptions, 'headers' | 'timeout'> {
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
  /**
   * Follow a 3xx answer's `Location` (301, 302, 303, 307, 308). Default false
   * (as `ws`): the answer refuses the handshake (`WS_ERR_UNEXPECTED_STATUS`).
   */
  followRedirects?: boolean;
  /** Most redirects followed; one more fails the handshake with `WS_ERR_MAX_REDIRECTS`. Default 10 (as `ws`). */
  maxRedirects?: number;
}

/** A client URL checked and normalized (`http:`/`https:` → `ws:`/`wss:`). */
export interface ClientTarget {
  url: URL;
  secure: boolean;
  /** The TLS server name to send: the host, or none for an IP address. */
  servername: string;
}

/**
 * Check the URL, the subprotocol list and the version of a client handshake,
 * over HTTP/1.1 or HTTP/2. Throws (synchronously) `SyntaxError`/`RangeError`, as `ws` does.
 */
export function checkClientTarget(address: string | URL, protocols: string[], options: ClientHandshakeOptions): ClientTarget {
  const url = webSocketUrl(address);
  const version = options.protocolVersion ?? 13;
  if (version !== 13) throw new RangeError(`Unsupported protocol version: ${version} (supported versions: 13)`);
  const seen = new Set<string>();
  for (const p of protocols) {
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(p) || seen.has(p)) {
      throw new SyntaxError(`An invalid or duplicated subprotocol was specified: ${p}`);
    }
    seen.add(p);
  }
  return { url, secure: url.protocol === 'wss:', servername: serverName(url, options.servername) };
}

/** The TLS server name for `url`: the configured one, else the host (none for an IP address). */
function serverName(url: URL, configured: string | undefined): string {
  return configured ?? (isIp(url.hostname) ? '' : url.hostname);
}

/** The deflate offer options (`perMessageDeflate`: default on), or null for no offer. */
export function deflateOffer(options: ClientHandshakeOptions): PerMessageDeflateOptions | null {
  return options.perMessageDeflate === false ? null : options.perMessageDeflate === true || options.perMessageDeflate === undefined ? {} : options.perMessageDeflate;
}

/** The client's codec for an accepted permessage-deflate (extensions as the server's answer parsed them). */
export function clientDeflateCodec(
  accepted: Parameters<typeof acceptDeflateResponse>[0],
  deflateOptions: PerMessageDeflateOptions,
  maxPayload: number | undefined,
): PerMessageDeflateCodec {
  const params = acceptDeflateResponse(accepted, deflateOptions);
  return new PerMessageDeflateCodec({
    role: 'client',
    params,
    maxPayload: maxPayload ?? 100 * 1024 * 1024,
    level: deflateOptions.level,
    memLevel: deflateOptions.memLevel,
    threshold: deflateOptions.threshold,
    concurrencyLimit: deflateOptions.concurrencyLimit,
    idleReleaseMs: deflateOptions.idleReleaseMs,
  });
}

/** What the handshake tells the socket it opens for. Each handshake ends with exactly one of the last three calls. */
export interface ClientHandshakeHandler {
  /** A redirect is followed: `request` is the new request, to `url` (the 'redirect' event of `ws`). */
  onRedirect?(url: string, request: http.ClientRequest): void;
  /** The server answered 101; called before the answer is checked (the 'upgrade' event). */
  onUpgradeResponse(response: http.IncomingMessage): void;
  /**
   * The server answered without upgrading. Return true when the application
   * takes the response itself (the handshake then ends, without an error);
   * false to have it refused with its status and the start of its body.
   */
  onUnexpectedResponse(request: http.ClientRequest, response: http.IncomingMessage): boolean;
  /** The server accepted: the connection is open on `socket`; `head` holds bytes read past the HTTP head. */
  onUpgraded(socket: Duplex, head: Buffer, protocol: string, extensions: string, codec: PerMessageDeflateCodec | null): void;
  /** The handshake failed (refused, invalid answer, network error, timeout, or aborted). */
  onRefused(err: Error): void;
}

/** A handshake in progress. */
export interface ClientHandshake {
  /** Give up: the handler's `onRefused` gets an error with `reason`. No-op once the handshake ended. */
  abort(reason: string): void;
}

/** How long a client waits for the body of a refused handshake (for {@link HandshakeError.body}) once the status is in, in ms. */
const REFUSAL_BODY_WAIT_MS = 1000;

/** Default of {@link ClientHandshakeOptions.maxRedirects} (as `ws`). */
export const DEFAULT_MAX_REDIRECTS = 10;

/** The statuses whose `Location` a client following redirects goes to. */
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** A WebSocket URL from a ws/wss/http/https address; throws SyntaxError otherwise (RFC 6455 §3). */
function webSocketUrl(address: string | URL, base?: URL): URL {
  let url: URL;
  try {
    url = address instanceof URL ? new URL(address.href) : new URL(address, base);
  } catch {
    throw new SyntaxError(`Invalid URL: ${String(address)}`);
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new SyntaxError(`The URL's protocol must be one of "ws:", "wss:", "http:" or "https:"`);
  }
  if (url.hash) throw new SyntaxError('The URL contains a fragment identifier');
  return url;
}

/**
 * Start the opening handshake. Throws (synchronously) for an invalid URL,
 * subprotocol list or version. With `followRedirects`, a 3xx answer with a
 * `Location` starts the handshake again there (the handler's `onRedirect`
 * first); a redirect to another host, or from wss: to ws:, drops the
 * `Authorization` and `Cookie` headers and the `auth` option (as `ws` does).
 */
export function connectClient(
  handler: ClientHandshakeHandler,
  address: string | URL,
  protocols: string[],
  options: ClientHandshakeOptions,
): ClientHandshake {
  const firstUrl = checkClientTarget(address, protocols, options).url;
  const version = 13;
  const deflateOptions = deflateOffer(options);
  const {
    headers: extraHeaders,
    origin: _o,
    protocolVersion: _v,
    perMessageDeflate: _d,
    handshakeTimeout,
    maxPayload,
    followRedirects,
    maxRedirects = DEFAULT_MAX_REDIRECTS,
    ...firstRequestOptions
  } = options;
  /** Headers and request options of the next request (credentials dropped by a cross-host redirect). */
  let userHeaders: Record<string, string | string[]> = { ...extraHeaders };
  let requestOptions: Omit<https.RequestOptions, 'headers' | 'timeout'> = firstRequestOptions;
  let redirects = 0;
  let request: http.ClientRequest;

  const end = new HandshakeEnd(handshakeTimeout, () => request.destroy(), handler);

  /** One HTTP request of the handshake: the first, or one after a redirect. */
  const start = (url: URL): void => {
    const secure = url.protocol === 'wss:';
    const key = generateKey();
    const headers: Record<string, string | string[]> = {
      ...userHeaders,
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': String(version),
      'Sec-WebSocket-Key': key,
    };
    if (protocols.length > 0) headers['Sec-WebSocket-Protocol'] = protocols.join(', ');
    if (deflateOptions) headers['Sec-WebSocket-Extensions'] = buildDeflateOffer(deflateOptions);
    if (options.origin) headers['Origin'] = options.origin;

    request = (secure ? https : http).request({
      ...requestOptions,
      host: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
      port: url.port || (secure ? 443 : 80),
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers,
      ...(secure ? { servername: serverName(url, requestOptions.servername) } : {}),
    });
    const req = request;

    req.on('error', (err) => {
      if (req === request) end.abort(err);
    });
    req.on('response', (res) => {
      if (end.done || req !== request) return;
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      // RFC 6455 §4.1: "the client MAY redirect" on a 3xx; only when asked to (as `ws`).
      if (followRedirects && REDIRECT_STATUSES.has(status) && location) {
        res.resume();
        if (++redirects > maxRedirects) {
          end.abort(new HandshakeError('WS_ERR_MAX_REDIRECTS', `Maximum redirects exceeded (${maxRedirects})`, status));
          return;
        }
        let next: URL;
        try {
          next = webSocketUrl(location, url);
        } catch (err) {
          end.abort(err as Error);
          return;
        }
        req.destroy();
        if (next.host !== url.host || (url.protocol === 'wss:' && next.protocol === 'ws:')) {
          userHeaders = Object.fromEntries(Object.entries(userHeaders).filter(([name]) => !/^(authorization|cookie)$/i.test(name)));
          const { auth: _auth, ...rest } = requestOptions;
          requestOptions = rest;
        }
        start(next);
        handler.onRedirect?.(next.href, request);
        return;
      }
      if (handler.onUnexpectedResponse(req, res)) {
        end.finish();
        return;
      }
      end.readRefusal(res, status, flatHeaders(res.headers));
    });
    req.on('upgrade', (res: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      if (end.done || req !== request) {
        socket.destroy();
        return;
      }
      handler.onUpgradeResponse(res);
      // An 'upgrade' listener may have closed the socket: the handshake ended there, nothing opens.
      if (end.done) {
        socket.destroy();
        return;
      }
      let codec: PerMessageDeflateCodec | null = null;
      let extensions = '';
      let protocol = '';
      try {
        const result = validateUpgradeResponse(
          { statusCode: res.statusCode ?? 0, headers: res.headers },
          { key, protocols, extensionsOffered: deflateOptions !== null },
        );
        protocol = result.protocol;
        if (deflateOptions && result.extensions.length > 0) {
          codec = clientDeflateCodec(result.extensions, deflateOptions, maxPayload);
          extensions = String(res.headers['sec-websocket-extensions'] ?? '');
        }
      } catch (err) {
        socket.destroy();
        end.abort(err as Error);
        return;
      }
      end.finish();
      handler.onUpgraded(socket, head, protocol, extensions, codec);
    });
    req.end();
  };

  start(firstUrl);
  return { abort: (reason: string) => end.abort(new Error(reason)) };
}

/**
 * How a client handshake ends, once: {@link finish} when the handler has its
 * answer, {@link abort} when it is refused, cancelled or runs out of time
 * (`handshakeTimeout`, armed here). The HTTP/1.1 Upgrade and the RFC 8441
 * CONNECT (http2-client.ts) both end this way.
 */
export class HandshakeEnd {
  #done = false;
  #timer: NodeJS.Timeout | null = null;
  readonly #cancel: () => void;
  readonly #handler: Pick<ClientHandshakeHandler, 'onRefused'>;

  /** `cancel` drops the request or stream in flight; it runs before `handler.onRefused`. */
  constructor(handshakeTimeout: number | undefined, cancel: () => void, handler: Pick<ClientHandshakeHandler, 'onRefused'>) {
    this.#cancel = cancel;
    this.#handler = handler;
    if (handshakeTimeout && handshakeTimeout > 0) {
      this.#timer = setTimeout(() => this.abort(new HandshakeError('WS_ERR_HANDSHAKE_TIMEOUT', 'Opening handshake has timed out', 0)), handshakeTimeout);
    }
  }

  get done(): boolean {
    return this.#done;
  }

  finish(): void {
    this.#done = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  abort(err: Error): void {
    if (this.#done) return;
    this.finish();
    this.#cancel();
    this.#handler.onRefused(err);
  }

  /** A refusal (a status other than the one that opens): read its body for the error, in place of the handshake timeout. */
  readRefusal(body: Readable, status: number, headers?: Record<string, string>): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = readRefusal(body, status, (err) => this.abort(err), headers);
  }
}

/**
 * Keep the start of a refused handshake's body (why the server refused),
 * bounded in size ({@link MAX_REFUSAL_BODY_BYTES}) and time, then call `fail`
 * once with a `WS_ERR_UNEXPECTED_STATUS` error carrying the status, the
 * response headers and that text. Returns the timer of the wait (cleared when
 * the body ends first).
 */
function readRefusal(body: Readable, status: number, fail: (err: HandshakeError) => void, headers?: Record<string, string>): NodeJS.Timeout {
  const chunks: Buffer[] = [];
  let size = 0;
  let ended = false;
  const refuse = (): void => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    const err = new HandshakeError('WS_ERR_UNEXPECTED_STATUS', `Unexpected server response: ${status}`, status, headers);
    err.body = Buffer.concat(chunks, size).subarray(0, MAX_REFUSAL_BODY_BYTES).toString('utf8');
    fail(err);
  };
  const timer = setTimeout(refuse, REFUSAL_BODY_WAIT_MS);
  body.on('data', (chunk: Buffer) => {
    if (ended) return;
    chunks.push(chunk);
    size += chunk.length;
    if (size >= MAX_REFUSAL_BODY_BYTES) refuse();
  });
  body.on('end', refuse);
  body.on('error', refuse);
  body.on('close', refuse);
  return timer;
}

/** Response headers as one string each (repeated ones joined with ', '), for {@link HandshakeError.headers}. */
function flatHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  return out;
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.startsWith('[');
}
