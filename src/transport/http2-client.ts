/**
 * The client side of WebSockets over HTTP/2 (RFC 8441): the extended
 * CONNECT on a stream of a shared h2 session, and the pool of those
 * sessions (one connection per origin carries many WebSockets, as a browser
 * does).
 *
 * `new WebSocket('wss://host/path', { http2: true })`:
 * 1. the pool gives a session to the origin, opening one if none has room;
 * 2. it waits for the server's first SETTINGS: without
 *    `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 8441 §3), or when the server does
 *    not speak h2 at all (ALPN), the origin is remembered as HTTP/1.1-only for
 *    a while and the handshake falls back to the HTTP/1.1 Upgrade
 *    (client-handshake.ts) on a connection of its own;
 * 3. else a CONNECT with `:protocol: websocket` goes out on a new stream; a
 *    2xx answer opens the WebSocket on that stream (the same `WebSocket`
 *    as over TCP), another status refuses it with the status and the start
 *    of the body, like an HTTP/1.1 refusal.
 *
 * A `createConnection` option (as for `https.request`: a proxy dialer)
 * makes the session's connection too, called as `https.request` calls it
 * (`_defaultAgent` tells https from http) with `ALPNProtocols: ['h2']`; the
 * session is opened once it answered, so WebSockets to one origin that
 * start together before the first session exists may each get their own.
 *
 * The `'upgrade'` event tells which protocol carries the connection: its
 * response has `httpVersion` `'2.0'` (an {@link Http2UpgradeResponse}) or
 * `'1.1'` (the `http.IncomingMessage` of the Upgrade).
 *
 * @see https://www.rfc-editor.org/rfc/rfc8441
 */
import { channel } from 'node:diagnostics_channel';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { HandshakeError } from '../protocol/errors.js';
import { buildConnectRequestHeaders, validateConnectResponse } from '../protocol/extended-connect.js';
import { buildDeflateOffer } from '../protocol/extensions/permessage-deflate.js';
import {
  checkClientTarget,
  clientDeflateCodec,
  connectClient,
  deflateOffer,
  HandshakeEnd,
  type ClientHandshake,
  type ClientHandshakeHandler,
  type ClientHandshakeOptions,
} from './client-handshake.js';
import type { PerMessageDeflateCodec } from './deflate.js';
import { resetWithCancel } from './http2.js';

const { NGHTTP2_CANCEL } = http2.constants;

/**
 * Names of the `node:diagnostics_channel`s on which the client reports the
 * steps of an RFC 8441 handshake, for tracing (`switchboard connect -v`).
 * Publishing is skipped when nobody subscribes. Observe what is published;
 * do not write to it or close it.
 */
export const HTTP2_CLIENT_CHANNELS = {
  /** {@link Http2SessionOpened}: the pool opens a new session (before its TLS and SETTINGS). */
  session: 'switchboard:http2-client:session',
  /** {@link Http2ConnectSent}: an extended CONNECT went out on a new stream. */
  connect: 'switchboard:http2-client:connect',
  /** {@link Http2FallbackTaken}: the handshake goes over HTTP/1.1 instead, and why. */
  fallback: 'switchboard:http2-client:fallback',
} as const;

/** Message on {@link HTTP2_CLIENT_CHANNELS}.session. */
export interface Http2SessionOpened {
  origin: string;
  session: http2.ClientHttp2Session;
}

/** Message on {@link HTTP2_CLIENT_CHANNELS}.connect. */
export interface Http2ConnectSent {
  origin: string;
  session: http2.ClientHttp2Session;
  stream: http2.ClientHttp2Stream;
  /** The request's headers, pseudo-headers first. */
  headers: http2.OutgoingHttpHeaders;
}

/** Message on {@link HTTP2_CLIENT_CHANNELS}.fallback. */
export interface Http2FallbackTaken {
  origin: string;
  /** Why, in words: no ENABLE_CONNECT_PROTOCOL in the server's SETTINGS, no h2 in ALPN, no SETTINGS in time, remembered... */
  reason: string;
}

const sessionChannel = channel(HTTP2_CLIENT_CHANNELS.session);
const connectChannel = channel(HTTP2_CLIENT_CHANNELS.connect);
const fallbackChannel = channel(HTTP2_CLIENT_CHANNELS.fallback);

/** Why a session that closed before SETTINGS could not carry WebSockets, from its error. */
function closedBeforeSettings(origin: string, err: NodeJS.ErrnoException | null): string {
  const code = err?.code ?? '';
  if (code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL') return 'the server does not offer h2 in ALPN (TLS alert no_application_protocol)';
  if (code === 'ERR_HTTP2_ERROR' && origin.startsWith('http:')) return `the server does not speak cleartext HTTP/2 (h2c with prior knowledge): ${err!.message}`;
  return `the HTTP/2 connection closed before the server's SETTINGS${err ? `: ${err.message}${code ? ` (${code})` : ''}` : ''}`;
}

/** How to open WebSockets over HTTP/2. */
export interface Http2ClientOptions {
  /** The pool whose sessions carry the WebSockets. Default: {@link defaultHttp2Pool} (process-wide). */
  pool?: Http2SessionPool;
}

/** The client handshake's options with `http2`. */
export interface Http2ClientHandshakeOptions extends ClientHandshakeOptions {
  /**
   * Open the WebSocket on an HTTP/2 stream (RFC 8441 extended CONNECT),
   * sharing one h2 session per origin with other WebSockets, and fall back to
   * the HTTP/1.1 Upgrade when the server does not advertise
   * `enableConnectProtocol` or does not speak h2. `wss:` negotiates h2 with
   * ALPN; `ws:` speaks cleartext h2 with prior knowledge (h2c). Default false.
   */
  http2?: boolean | Http2ClientOptions;
}

export interface Http2SessionPoolOptions {
  /** Close a session that carried no WebSocket for this many ms. Default 5000. */
  idleTimeout?: number;
  /** Give up on a server that sent no SETTINGS within this many ms (then HTTP/1.1). Default 10000. */
  settingsTimeout?: number;
  /** Remember an origin without RFC 8441 for this many ms (no new h2 attempt meanwhile). Default 60000. */
  fallbackMemory?: number;
}

/** A session lent to one WebSocket; `release()` once its stream closed. */
export interface Http2Lease {
  readonly session: http2.ClientHttp2Session;
  release(): void;
}

/** The TLS options that make two sessions to one origin different (others are per request). */
const TLS_KEYS = [
  'ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername', 'ciphers', 'minVersion', 'maxVersion',
  'checkServerIdentity', 'secureContext', 'family', 'localAddress', 'lookup',
] as const;

const objectIds = new WeakMap<object, number>();
let nextObjectId = 1;

function optionId(value: unknown): string {
  if (value === undefined) return '';
  if ((typeof value === 'object' && value !== null) || typeof value === 'function') {
    let id = objectIds.get(value);
    if (id === undefined) objectIds.set(value, (id = nextObjectId++));
    return `#${id}`;
  }
  return JSON.stringify(value);
}

class PooledSession {
  readonly session: http2.ClientHttp2Session;
  /** WebSockets on this session, and those about to open on it. */
  streams = 0;
  /** Resolves true once the server's SETTINGS allow extended CONNECT, false when it will not. */
  readonly ready: Promise<boolean>;
  /** Why not, once `ready` resolved false. */
  refusal = '';
  draining = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly idleTimeout: number;

  constructor(origin: string, session: http2.ClientHttp2Session, settingsTimeout: number, idleTimeout: number, onGone: () => void) {
    this.session = session;
    this.idleTimeout = idleTimeout;
    let lastError: Error | null = null;
    // A session error (reset connection, GOAWAY with an error) reaches the streams as their close: no throw here.
    session.on('error', (err) => (lastError = err));
    session.once('goaway', () => {
      this.draining = true;
      onGone();
    });
    session.once('close', () => {
      this.draining = true;
      this.clearIdle();
      onGone();
    });
    this.ready = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.refusal ||= `no SETTINGS from the server within ${settingsTimeout} ms`;
        resolve(false);
      }, settingsTimeout);
      timer.unref();
      session.once('remoteSettings', (settings) => {
        clearTimeout(timer);
        if (settings.enableConnectProtocol !== true) {
          this.refusal ||= "the server's SETTINGS do not enable extended CONNECT (no SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441 §3)";
        }
        resolve(settings.enableConnectProtocol === true);
      });
      session.once('close', () => {
        clearTimeout(timer);
        this.refusal ||= closedBeforeSettings(origin, lastError);
        resolve(false);
      });
    });
  }

  /** Whether a new WebSocket may go on this session (not draining, below the server's stream limit). */
  hasRoom(): boolean {
    if (this.draining || this.session.closed || this.session.destroyed) return false;
    const max = this.session.remoteSettings?.maxConcurrentStreams ?? 100;
    return this.streams < max;
  }

  take(): Http2Lease {
    this.streams++;
    this.clearIdle();
    this.session.ref();
    let released = false;
    return {
      session: this.session,
      release: () => {
        if (released) return;
        released = true;
        this.streams--;
        if (this.streams === 0) this.idle();
      },
    };
  }

  /** No WebSocket left: let the process exit, and close after the idle timeout. */
  idle(): void {
    if (this.session.destroyed) return;
    this.session.unref();
    this.clearIdle();
    this.idleTimer = setTimeout(() => {
      if (this.streams === 0) this.session.close();
    }, this.idleTimeout);
    this.idleTimer.unref();
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}

/**
 * HTTP/2 sessions shared by the WebSockets to one origin (scheme, host,
 * port, and the TLS options that make a connection differ: CA, client
 * certificate, `rejectUnauthorized`, servername...). A new session is opened
 * when the open ones are at the server's `maxConcurrentStreams` or draining
 * after a GOAWAY. Idle sessions do not keep the process alive and close
 * after `idleTimeout`.
 */
export class Http2SessionPool {
  private readonly sessions = new Map<string, PooledSession[]>();
  /** Origins (pool keys) that said no to RFC 8441, until when. */
  private readonly noExtendedConnect = new Map<string, number>();
  private readonly idleTimeout: number;
  private readonly settingsTimeout: number;
  private readonly fallbackMemory: number;

  constructor(options: Http2SessionPoolOptions = {}) {
    this.idleTimeout = options.idleTimeout ?? 5000;
    this.settingsTimeout = options.settingsTimeout ?? 10_000;
    this.fallbackMemory = options.fallbackMemory ?? 60_000;
  }

  /** Open sessions (every origin). */
  get size(): number {
    let n = 0;
    for (const list of this.sessions.values()) n += list.length;
    return n;
  }

  /**
   * A session to `origin` (`https://host:port` or `http://host:port`) whose
   * server allows extended CONNECT, or null when it does not (fall back to
   * HTTP/1.1). `tls` are the connection's TLS options.
   */
  async acquire(origin: string, tls: ClientHandshakeOptions): Promise<Http2Lease | null> {
    const key = `${origin}|${TLS_KEYS.map((k) => optionId((tls as Record<string, unknown>)[k])).join('|')}|${optionId(tls.createConnection)}`;
    const until = this.noExtendedConnect.get(key);
    if (until !== undefined) {
      if (until > Date.now()) {
        if (fallbackChannel.hasSubscribers) {
          const reason = `this origin did not allow RFC 8441 ${Math.round((this.fallbackMemory - (until - Date.now())) / 1000)} s ago (remembered for ${this.fallbackMemory / 1000} s)`;
          fallbackChannel.publish({ origin, reason } satisfies Http2FallbackTaken);
        }
        return null;
      }
      this.noExtendedConnect.delete(key);
    }
    const list = this.sessions.get(key) ?? [];
    this.sessions.set(key, list);
    let pooled = list.find((p) => p.hasRoom());
    if (!pooled) {
      const options: http2.SecureClientSessionOptions = { settings: { enablePush: false } };
      for (const k of TLS_KEYS) if ((tls as Record<string, unknown>)[k] !== undefined) (options as Record<string, unknown>)[k] = (tls as Record<string, unknown>)[k];
      let session: http2.ClientHttp2Session;
      if (tls.createConnection === undefined) session = http2.connect(origin, options);
      else {
        let socket: Duplex;
        try {
          socket = await dialWith(tls.createConnection, origin, options);
        } catch (err) {
          if (list.length === 0 && this.sessions.get(key) === list) this.sessions.delete(key);
          throw err;
        }
        session = http2.connect(origin, { ...options, createConnection: () => socket });
      }
      if (sessionChannel.hasSubscribers) sessionChannel.publish({ origin, session } satisfies Http2SessionOpened);
      const entry: PooledSession = new PooledSession(origin, session, this.settingsTimeout, this.idleTimeout, () => {
        const at = list.indexOf(entry);
        if (at !== -1) list.splice(at, 1);
        if (list.length === 0 && this.sessions.get(key) === list) this.sessions.delete(key);
      });
      list.push(entry);
      pooled = entry;
    }
    // Reserve the slot before the wait, so concurrent handshakes count against the stream limit.
    const lease = pooled.take();
    if (await pooled.ready) return lease;
    lease.release();
    if (fallbackChannel.hasSubscribers) fallbackChannel.publish({ origin, reason: pooled.refusal } satisfies Http2FallbackTaken);
    this.noExtendedConnect.set(key, Date.now() + this.fallbackMemory);
    pooled.session.close();
    return null;
  }

  /** Close every session (GOAWAY; WebSockets still open on them finish first). */
  close(): void {
    for (const list of this.sessions.values()) for (const p of list) p.session.close();
    this.sessions.clear();
    this.noExtendedConnect.clear();
  }
}

/**
 * The connection of a new session through the caller's `createConnection`,
 * called as `https.request` (or `http.request`, for h2c) would call it, asking
 * for h2 in ALPN. Rejects with the dialer's error (a proxy that refused).
 */
function dialWith(create: NonNullable<ClientHandshakeOptions['createConnection']>, origin: string, options: http2.SecureClientSessionOptions): Promise<Duplex> {
  const url = new URL(origin);
  const secure = url.protocol === 'https:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = Number(url.port || (secure ? 443 : 80));
  const args = { ...options, host, port, ...(secure ? { ALPNProtocols: ['h2'] } : {}), _defaultAgent: secure ? https.globalAgent : http.globalAgent };
  return new Promise<Duplex>((resolve, reject) => {
    let settled = false;
    const returned = create(args as http.ClientRequestArgs, (err: Error | null, socket?: Duplex) => {
      if (settled) return;
      settled = true;
      if (err || !socket) reject(err ?? new Error('createConnection gave no socket'));
      else resolve(socket);
    });
    if (returned && !settled) {
      settled = true;
      resolve(returned);
    }
  });
}

/** The process-wide pool used by `{ http2: true }`. */
export const defaultHttp2Pool = new Http2SessionPool();

/**
 * The answer to an extended CONNECT, shaped like the `http.IncomingMessage`
 * of an HTTP/1.1 Upgrade for `'upgrade'` listeners: `statusCode`, `headers`
 * (without pseudo-headers), `httpVersion` `'2.0'`; plus the `stream`.
 */
export class Http2UpgradeResponse {
  readonly statusCode: number;
  readonly statusMessage = '';
  readonly httpVersion = '2.0';
  readonly httpVersionMajor = 2;
  readonly httpVersionMinor = 0;
  readonly headers: http.IncomingHttpHeaders;
  readonly stream: http2.ClientHttp2Stream;
  /** The TLS socket under the session (its ALPN protocol is `h2`); null over cleartext h2. */
  readonly socket: TLSSocket | null;

  constructor(stream: http2.ClientHttp2Stream, headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader) {
    this.stream = stream;
    this.statusCode = Number(headers[':status'] ?? 0);
    const plain: http.IncomingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) if (!name.startsWith(':')) plain[name] = value as string | string[];
    this.headers = plain;
    const socket = stream.session?.socket as TLSSocket | undefined;
    this.socket = socket && socket.encrypted ? socket : null;
  }
}

/** Header names the client must not send on HTTP/2 (connection-specific) or that the handshake writes. */
const NOT_ON_H2 = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'te']);

/**
 * Start the opening handshake over HTTP/2, or over HTTP/1.1 when the server
 * does not allow extended CONNECT (see the module's doc). Throws
 * (synchronously) for an invalid URL, subprotocol list or version.
 */
export function connectHttp2Client(
  handler: ClientHandshakeHandler,
  address: string | URL,
  protocols: string[],
  options: Http2ClientHandshakeOptions,
): ClientHandshake {
  const { url, secure, servername } = checkClientTarget(address, protocols, options);
  const { http2: h2, ...rest } = options;
  const pool = (typeof h2 === 'object' ? h2.pool : undefined) ?? defaultHttp2Pool;
  const deflateOptions = deflateOffer(options);
  const started = Date.now();

  let fallback: ClientHandshake | null = null;
  let stream: http2.ClientHttp2Stream | null = null;
  const { handshakeTimeout } = options;
  const end = new HandshakeEnd(
    handshakeTimeout,
    () => {
      if (stream && !stream.closed) stream.close(NGHTTP2_CANCEL);
    },
    handler,
  );

  const origin = `${secure ? 'https' : 'http'}://${url.host}`;
  pool.acquire(origin, { ...rest, servername }).then(
    (lease) => {
      if (end.done) {
        lease?.release();
        return;
      }
      if (lease === null) {
        // No RFC 8441 at this origin: the HTTP/1.1 Upgrade, within what is left of the timeout.
        end.finish();
        const left = handshakeTimeout && handshakeTimeout > 0 ? Math.max(1, handshakeTimeout - (Date.now() - started)) : handshakeTimeout;
        try {
          fallback = connectClient(handler, url, protocols, { ...rest, handshakeTimeout: left });
        } catch (err) {
          handler.onRefused(err as Error);
        }
        return;
      }
      openStream(lease);
    },
    (err: Error) => end.abort(err),
  );

  function openStream(lease: Http2Lease): void {
    const headers: http2.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(rest.headers ?? {})) {
      const lower = name.toLowerCase();
      if (!NOT_ON_H2.has(lower) && !lower.startsWith('sec-websocket-') && !lower.startsWith(':')) headers[lower] = value;
    }
    Object.assign(
      headers,
      buildConnectRequestHeaders({
        path: `${url.pathname}${url.search}`,
        authority: url.host,
        scheme: secure ? 'https' : 'http',
        protocols,
        extensions: deflateOptions ? buildDeflateOffer(deflateOptions) : undefined,
        origin: options.origin,
      }),
    );
    let s: http2.ClientHttp2Stream;
    try {
      s = lease.session.request(headers, { endStream: false });
    } catch (err) {
      lease.release();
      end.abort(err as Error);
      return;
    }
    stream = s;
    if (connectChannel.hasSubscribers) connectChannel.publish({ origin, session: lease.session, stream: s, headers } satisfies Http2ConnectSent);
    s.once('close', lease.release);
    s.on('error', (err) => end.abort(err));
    let answered = false;
    s.once('close', () => {
      if (!answered) end.abort(new HandshakeError('WS_ERR_STREAM_CLOSED', `The HTTP/2 stream closed before the answer (RST_STREAM code ${s.rstCode ?? 'none'})`, 0));
    });
    s.once('response', (answer) => {
      if (end.done) return;
      answered = true;
      const response = new Http2UpgradeResponse(s, answer);
      const status = response.statusCode;
      if (status < 200 || status > 299) {
        end.readRefusal(s, status);
        return;
      }
      handler.onUpgradeResponse(response as unknown as http.IncomingMessage);
      // An 'upgrade' listener may have closed the WebSocket: the handshake ended there.
      if (end.done) return;
      let protocol = '';
      let codec: PerMessageDeflateCodec | null = null;
      let extensions = '';
      try {
        const result = validateConnectResponse(status, answer, { protocols, extensionsOffered: deflateOptions !== null });
        protocol = result.protocol;
        if (deflateOptions && result.extensions.length > 0) {
          codec = clientDeflateCodec(result.extensions, deflateOptions, options.maxPayload);
          extensions = String(response.headers['sec-websocket-extensions'] ?? '');
        }
      } catch (err) {
        end.abort(err as Error);
        return;
      }
      end.finish();
      resetWithCancel(s);
      handler.onUpgraded(s, Buffer.alloc(0), protocol, extensions, codec);
    });
  }

  return {
    abort: (reason: string) => {
      if (fallback) fallback.abort(reason);
      else end.abort(new Error(reason));
    },
  };
}
